/*
 * bench/bench_sendzc.c - does IORING_OP_SEND_ZC (and with a registered buffer) move large
 * frames faster than IORING_OP_SEND on this machine? Issue 11 asks to try zero-copy sends
 * and registered buffers for large handover frames and keep them only where they measure
 * faster. One io_uring sender streams TOTAL bytes in frames of one size over a loopback TCP
 * connection, IN_FLIGHT frames at once (default 8), to a thread that recv()s them; each mode's rate
 * is compared with plain SEND measured in the same run, modes alternating per repetition.
 *
 * A zero-copy send lends its buffer to the kernel until a notification says it is free;
 * only then is the buffer written again (the engine would have to keep each frame that
 * long). Loopback and veth deliver to a local socket, which must copy the pages anyway.
 */
#define _GNU_SOURCE
#define BENCH_NAME "bench_sendzc"
#include "bench_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#define QD_MAX   8u
#define TOTAL_MB 1024u

enum mode { M_SEND, M_ZC, M_ZC_FIXED, M__COUNT };
static const char *const MODE_NAME[M__COUNT] = {"send", "send_zc", "send_zc+fixed"};

typedef struct rx {
    int fd;
    uint64_t want;
} rx;

static void *receiver(void *arg)
{
    rx *x = arg;
    static uint8_t buf[1 << 20];
    uint64_t got = 0;
    while (got < x->want) {
        ssize_t n = recv(x->fd, buf, sizeof(buf), 0);
        if (n <= 0) die("recv: %s", n ? strerror(errno) : "EOF");
        got += (uint64_t)n;
    }
    return NULL;
}

/* A connected loopback TCP pair: *snd dials, *rcv accepted. */
static void tcp_pair(int *snd, int *rcv)
{
    int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof(a);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&a, &al))
        die("listen: %s", strerror(errno));
    *snd = socket(AF_INET, SOCK_STREAM, 0);
    if (*snd < 0 || connect(*snd, (struct sockaddr *)&a, sizeof(a)))
        die("connect: %s", strerror(errno));
    *rcv = accept(l, NULL, NULL);
    if (*rcv < 0) die("accept: %s", strerror(errno));
    setsockopt(*snd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    close(l);
}

typedef struct slot {
    size_t off;    /* bytes of the frame sent so far */
    bool sending;  /* a send of it is in flight */
    unsigned lent; /* zero copy: sends whose pages the kernel holds until their notification */
} slot;

static unsigned in_flight = QD_MAX; /* frames at once; 2 is the TCP engine's double buffer */

static void submit(struct io_uring *u, int fd, enum mode m, uint8_t *buf, size_t len, unsigned i,
                   size_t off)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(u);
    if (!sqe) die("no sqe");
    if (m == M_SEND)
        io_uring_prep_send(sqe, fd, buf + off, len - off, 0);
    else if (m == M_ZC)
        io_uring_prep_send_zc(sqe, fd, buf + off, len - off, 0, 0);
    else
        io_uring_prep_send_zc_fixed(sqe, fd, buf + off, len - off, 0, 0, i);
    sqe->user_data = i;
}

static void send_from(struct io_uring *u, int fd, enum mode m, uint8_t *buf, size_t len, slot *sl,
                      unsigned i)
{
    sl->sending = true;
    sl->lent += m != M_SEND;
    submit(u, fd, m, buf, len, i, sl->off);
}

/* Streams `frames` frames of len bytes; returns the seconds until the receiver had all. */
static double run(enum mode m, size_t len, uint64_t frames, uint8_t *bufs[QD_MAX])
{
    int s, r;
    tcp_pair(&s, &r);
    struct io_uring u;
    CHECK(io_uring_queue_init(2 * in_flight, &u, 0));
    struct iovec iov[QD_MAX];
    for (unsigned i = 0; i < in_flight; i++)
        iov[i] = (struct iovec){bufs[i], len};
    if (m == M_ZC_FIXED) CHECK(io_uring_register_buffers(&u, iov, in_flight));
    rx x = {.fd = r, .want = frames * len};
    pthread_t th;
    uint64_t t0 = now_ns();
    CHECK_PT(pthread_create(&th, NULL, receiver, &x));
    slot sl[QD_MAX] = {0};
    uint64_t started = 0, done = 0;
    for (unsigned i = 0; i < in_flight && started < frames; i++, started++)
        send_from(&u, s, m, bufs[i], len, &sl[i], i);
    while (done < frames) {
        io_uring_submit(&u);
        struct io_uring_cqe *cqe;
        CHECK(io_uring_wait_cqe(&u, &cqe));
        unsigned i = (unsigned)cqe->user_data;
        int res = cqe->res;
        uint32_t flags = cqe->flags;
        io_uring_cqe_seen(&u, cqe);
        if (flags & IORING_CQE_F_NOTIF) {
            sl[i].lent--; /* the pages of one send are ours again */
        } else {
            if (res < 0) die("%s: %s", MODE_NAME[m], strerror(-res));
            sl[i].off += (size_t)res;
            sl[i].sending = false;
            if (m != M_SEND && !(flags & IORING_CQE_F_MORE)) sl[i].lent--; /* no notification */
            if (sl[i].off < len) { /* a short send: the rest of the frame */
                send_from(&u, s, m, bufs[i], len, &sl[i], i);
                continue;
            }
        }
        if (sl[i].sending || sl[i].lent || sl[i].off < len) continue;
        done++;
        sl[i].off = 0;
        if (started < frames) { /* the buffer is free: the next frame goes from it */
            bufs[i][0]++;       /* written, as a new frame would be */
            send_from(&u, s, m, bufs[i], len, &sl[i], i);
            started++;
        }
    }
    CHECK_PT(pthread_join(th, NULL));
    double secs = (double)(now_ns() - t0) / 1e9;
    io_uring_queue_exit(&u);
    close(s);
    close(r);
    return secs;
}

int main(int argc, char **argv)
{
    unsigned reps = argc > 1 ? (unsigned)atoi(argv[1]) : 5;
    in_flight = argc > 2 ? (unsigned)atoi(argv[2]) : QD_MAX;
    if (reps < 1 || reps > MAX_REPS || in_flight < 1 || in_flight > QD_MAX)
        die("usage: bench_sendzc [REPS [IN_FLIGHT]] (reps 1..%d, default 5; frames in flight "
            "1..%u, default %u)",
            MAX_REPS, QD_MAX, QD_MAX);
    static const size_t sizes[] = {64u << 10, 256u << 10, 1u << 20};
    char cpu[128], load[64];
    cpu_model(cpu, sizeof(cpu));
    printf("# bench_sendzc: %u MiB per run over loopback TCP, %u frames in flight, %u reps "
           "(modes alternate)\n# cpu: %s\n",
           TOTAL_MB, in_flight, reps, cpu);
    printf("| frame   | mode          | GB/s (median) | min-max     | vs send |\n"
           "|---------|---------------|---------------|-------------|---------|\n");
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t len = sizes[k];
        uint8_t *bufs[QD_MAX];
        for (unsigned i = 0; i < in_flight; i++) {
            bufs[i] = aligned_alloc(4096, len);
            if (!bufs[i]) die("no memory");
            memset(bufs[i], (int)i, len);
        }
        series s[M__COUNT] = {0};
        uint64_t frames = ((uint64_t)TOTAL_MB << 20) / len;
        for (unsigned rep = 0; rep < reps; rep++)
            for (int m = 0; m < M__COUNT; m++)
                series_add(&s[m],
                           (double)(frames * len) / run((enum mode)m, len, frames, bufs) / 1e9);
        double base = series_median(&s[M_SEND]);
        for (int m = 0; m < M__COUNT; m++) {
            double med, lo, hi;
            series_stats(&s[m], &med, &lo, &hi);
            printf("| %4zu KiB | %-13s | %13.2f | %5.2f-%-5.2f | %7.2f |\n", len >> 10,
                   MODE_NAME[m], med, lo, hi, med / base);
        }
        for (unsigned i = 0; i < in_flight; i++)
            free(bufs[i]);
    }
    load_avg(load, sizeof(load));
    printf("load average at the end: %s (a shared machine: compare ratios, not absolutes)\n", load);
    return 0;
}
