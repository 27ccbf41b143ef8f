/*
 * bench/bench_cluster.c - remote calls and sends between two nodes on loopback, each node
 * in its own OS process, against raw TCP between the same two processes in the same run.
 *
 * The program forks before any thread exists (a child forked from a threaded process may
 * only call async-signal-safe functions). The child runs node B, which owns the "echo" and
 * "sink" processes the parent talks to, plus a raw TCP server for the baselines; the
 * parent runs node A and measures. One pipe carries B's ports and id to the parent, then
 * one byte once B sees both members; another tells the child to exit (a byte, or EOF when
 * the parent dies). The parent always reaps the child.
 *
 * Each repetition runs every measurement, corehub and its baseline side by side, so that
 * the noise of this shared machine hits both: design §6 states every target as a ratio
 * against a baseline measured in the same run.
 */
#define _GNU_SOURCE
#include <corehub/corehub.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "bench_cluster"
#include "bench_common.h"

#define MSG          64u                                /* request, reply and message bytes */
#define COOKIE       "bench-cluster-cookie-0123456789a" /* 32 bytes, same in both nodes */
#define COOKIE_LEN   32u
#define CALL_MS      5000u        /* per-call timeout */
#define JOIN_MS      15000u       /* both nodes see each other within this */
#define DRAIN_MS     60000u       /* every sent message counted within this */
#define STREAM_CHUNK (64u * 1024) /* raw stream baseline: bytes per write */
#define MAX_PLACE    64u          /* ids tried until one is owned by node B */

/* ---- parameters and results ---------------------------------------------------------- */

typedef struct params {
    unsigned reps;
    size_t calls, warmup; /* measured round trips, and warm-up ones before them */
    size_t msgs;          /* messages in each throughput run */
    unsigned cores;       /* reactors per node */
    int pin;
    uint32_t spin_us;
    unsigned only; /* bit g: run measurement g (--only, for profiling one of them) */
} params;

/* Table rows. Each measurement yields two consecutive rows (p50 and p99, or msg/s and
 * MB/s), so measurement g fills rows 2g and 2g + 1. */
enum {
    M_TCP_P50,
    M_TCP_P99,
    M_CALL_P50,
    M_CALL_P99,
    M_ASYNC_P50,
    M_ASYNC_P99,
    M_FREE_P50,
    M_FREE_P99,
    M_SPIN_P50,
    M_SPIN_P99,
    M_STREAM_RATE,
    M_STREAM_MBS,
    M_SEND_RATE,
    M_SEND_MBS,
    M_COUNT,
};

/* One row of the table: its baseline row (-1: none) and target ratio (0: none). */
typedef struct metric {
    const char *name;
    const char *unit;
    int baseline;
    double max_ratio;
} metric;

static const metric metrics[M_COUNT] = {
    [M_CALL_P50] = {"remote ch_call p50, foreign thread", "us", M_TCP_P50, 1.5},
    [M_CALL_P99] = {"remote ch_call p99, foreign thread", "us", M_TCP_P99, 0},
    [M_ASYNC_P50] = {"remote ch_call_async p50, on a reactor", "us", M_TCP_P50, 1.5},
    [M_ASYNC_P99] = {"remote ch_call_async p99, on a reactor", "us", M_TCP_P99, 0},
    [M_TCP_P50] = {"raw TCP ping-pong p50, blocking", "us", -1, 0},
    [M_TCP_P99] = {"raw TCP ping-pong p99, blocking", "us", -1, 0},
    [M_FREE_P50] = {"raw TCP ping-pong p50, blocking, unpinned", "us", -1, 0},
    [M_FREE_P99] = {"raw TCP ping-pong p99, blocking, unpinned", "us", -1, 0},
    [M_SPIN_P50] = {"raw TCP ping-pong p50, spinning", "us", -1, 0},
    [M_SPIN_P99] = {"raw TCP ping-pong p99, spinning", "us", -1, 0},
    [M_SEND_RATE] = {"remote ch_send throughput", "msg/s", M_STREAM_RATE, 0},
    [M_SEND_MBS] = {"remote ch_send payload rate", "MB/s", M_STREAM_MBS, 0},
    [M_STREAM_RATE] = {"raw TCP stream, 4-byte framed", "msg/s", -1, 0},
    [M_STREAM_MBS] = {"raw TCP stream payload rate", "MB/s", -1, 0},
};

#define N_MEASURES   (M_COUNT / 2)
#define ALL_MEASURES ((1u << N_MEASURES) - 1)

typedef struct results {
    double *v[M_COUNT]; /* v[m][rep] */
} results;

/* ---- small helpers ------------------------------------------------------------------- */

/* Reports a failed step once, and passes its code on. */
static int fail(const char *what, int rc)
{
    fprintf(stderr, "bench_cluster: %s: %s\n", what, ch_strerror(rc));
    return rc;
}

static void pause_us(long us)
{
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static int write_full(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == ENOTSOCK) n = write(fd, p, len); /* a pipe */
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Reads exactly len bytes; -EPIPE on EOF. `spin` polls a non-blocking read instead of
 * sleeping in the kernel (the spinning baseline). */
static int read_full(int fd, void *buf, size_t len, bool spin)
{
    uint8_t *p = buf;
    while (len) {
        ssize_t n = recv(fd, p, len, spin ? MSG_DONTWAIT : 0);
        if (n < 0 && errno == ENOTSOCK) n = read(fd, p, len); /* a pipe */
        if (n == 0) return -EPIPE;
        if (n < 0 && (errno == EINTR || (spin && errno == EAGAIN))) continue;
        if (n < 0) return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Waits until fd is readable or timeout_ms passes: 1, 0 on timeout, or -errno. */
static int wait_readable(int fd, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc;
    while ((rc = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    return rc < 0 ? -errno : rc;
}

/* The raw ping-pong baselines pin their two ends on two different CPUs: left to itself the
 * scheduler sometimes runs both on one CPU (a TCP wake-up is a "sync" one, which pulls the
 * wakee to the waker's CPU) and the figure jumps between two modes run to run. Across CPUs
 * is what two nodes of a hub pay, and what design 6's reference figure measured. */
static int pin_nth_cpu(unsigned nth, cpu_set_t *saved)
{
    if (sched_getaffinity(0, sizeof(*saved), saved) < 0) return -errno;
    if (CPU_COUNT(saved) < 2) return 0; /* one CPU: nothing to choose */
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, saved) || nth--) continue;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        return sched_setaffinity(0, sizeof(one), &one) < 0 ? -errno : 0;
    }
    return -EINVAL;
}

static void unpin(const cpu_set_t *saved)
{
    if (sched_setaffinity(0, sizeof(*saved), saved) < 0) perror("sched_setaffinity");
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of ns samples, in µs. Sorts v. */
static double percentile_us(uint64_t *v, size_t n, double q)
{
    qsort(v, n, sizeof(*v), cmp_u64);
    size_t rank = (size_t)ceil(q * (double)n);
    return (double)v[rank ? rank - 1 : 0] / 1000.0;
}

static void fill_pattern(uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 7 + 1);
}

/* ---- process types (registered on both nodes: a start may land on either) ------------ */

/* An 8-byte counter as the state, for both types. */
static int counter_init(ch_proc *p, const void *arg, size_t len, unsigned flags)
{
    return ch_proc_state_resize(p, sizeof(uint64_t)) ? 0 : -ENOMEM;
}

static void counter_bump(ch_proc *p)
{
    uint64_t *n = ch_proc_state(p, NULL);
    (*n)++;
}

/* echo: answers a call with its request bytes, counts casts. */
static int echo_handle(ch_proc *p, const ch_msg *m)
{
    if (m->kind == CH_MSG_CAST) counter_bump(p);
    if (m->kind != CH_MSG_CALL) return CH_CONTINUE;
    int rc = ch_reply(p, m, m->data, m->len);
    return rc < 0 ? rc : CH_CONTINUE;
}

/* sink: counts casts; a call answers the count so far. */
static int sink_handle(ch_proc *p, const ch_msg *m)
{
    if (m->kind == CH_MSG_CAST) counter_bump(p);
    if (m->kind != CH_MSG_CALL) return CH_CONTINUE;
    int rc = ch_reply(p, m, ch_proc_state(p, NULL), sizeof(uint64_t));
    return rc < 0 ? rc : CH_CONTINUE;
}

static const ch_process_type echo_type = {
    .name = "echo", .init = counter_init, .handle = echo_handle};
static const ch_process_type sink_type = {
    .name = "sink", .init = counter_init, .handle = sink_handle};

/* Creates and starts a clustered node on 127.0.0.1 (kernel-chosen port); seed NULL for B. */
static int node_open(const params *pr, const char *name, const char *seed, ch_node **out)
{
    ch_node_config c;
    ch_node_config_init(&c);
    c.name = name;
    c.cores = pr->cores;
    c.pin = pr->pin;
    c.spin_us = pr->spin_us;
    c.cluster.listen = "127.0.0.1:0";
    c.cluster.cookie = COOKIE;
    c.cluster.cookie_len = COOKIE_LEN;
    const char *seeds[1] = {seed};
    c.cluster.seeds = seed ? seeds : NULL;
    c.cluster.nseeds = seed ? 1 : 0;
    ch_node *n;
    int rc = ch_node_create(&c, &n); /* copies the seeds */
    if (rc) return rc;
    if ((rc = ch_node_type_register(n, &echo_type)) ||
        (rc = ch_node_type_register(n, &sink_type)) || (rc = ch_node_start(n))) {
        ch_node_destroy(n);
        return rc;
    }
    *out = n;
    return 0;
}

static size_t alive_members(ch_node *n)
{
    ch_member *m;
    size_t k, alive = 0;
    if (ch_node_members_get(n, &m, &k) < 0) return 0;
    for (size_t i = 0; i < k; i++)
        alive += m[i].state == CH_MEMBER_ALIVE;
    free(m);
    return alive;
}

/* Polls until n sees two alive members; the pause is on `fd` so that an exit request (or
 * the parent's death) interrupts it. Returns 0, -ETIMEDOUT, or -ECANCELED. */
static int wait_two_members(ch_node *n, int fd)
{
    uint64_t end = now_ns() + (uint64_t)JOIN_MS * 1000000u;
    while (alive_members(n) < 2) {
        if (now_ns() > end) return -ETIMEDOUT;
        if (fd >= 0 && wait_readable(fd, 10) != 0) return -ECANCELED;
        if (fd < 0) pause_us(10000);
    }
    return 0;
}

/* ---- the child: node B and the raw TCP server ----------------------------------------- */

typedef struct b_report {
    int32_t status; /* 0, or why the child gave up */
    int32_t cluster_port;
    int32_t raw_port;
    int32_t pad;
    uint64_t node_id;
} b_report;

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 16) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Ping-pong server: echoes MSG-byte pings until EOF. */
static int serve_pingpong(int fd, bool spin)
{
    uint8_t buf[MSG];
    for (;;) {
        int rc = read_full(fd, buf, MSG, spin);
        if (rc == -EPIPE) return 0;
        if (rc || (rc = write_full(fd, buf, MSG))) return rc;
    }
}

/* Counts [u32 len][len bytes] frames in buf; a zero length marks the end of a run: the
 * count goes back as a u64 and restarts. Returns the bytes consumed, or -errno. */
static ssize_t count_frames(int fd, const uint8_t *buf, size_t len, uint64_t *count)
{
    size_t off = 0;
    while (len - off >= 4) {
        uint32_t flen;
        memcpy(&flen, buf + off, 4);
        if (flen > (1u << 20)) return -EPROTO;
        if (flen == 0) {
            int rc = write_full(fd, count, sizeof(*count));
            if (rc) return rc;
            *count = 0;
        } else if (len - off - 4 < flen) {
            break;
        } else {
            (*count)++;
        }
        off += 4 + flen;
    }
    return (ssize_t)off;
}

/* Stream server: reads framed messages in large reads and counts them. */
static int serve_stream(int fd)
{
    size_t cap = 4 * STREAM_CHUNK, have = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) return -ENOMEM;
    uint64_t count = 0;
    int rc = 0;
    for (;;) {
        ssize_t n = recv(fd, buf + have, cap - have, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : 0;
            break;
        }
        have += (size_t)n;
        ssize_t used = count_frames(fd, buf, have, &count);
        if (used < 0) {
            rc = (int)used;
            break;
        }
        memmove(buf, buf + used, have - (size_t)used);
        have -= (size_t)used;
    }
    free(buf);
    return rc;
}

/* One connection: its first byte picks the mode. */
static void serve_conn(int fd)
{
    int one = 1;
    char mode;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        read_full(fd, &mode, 1, false) < 0)
        return;
    cpu_set_t saved;
    bool pinned = mode == 'P' || mode == 'S'; /* the client takes the first CPU */
    int rc = pinned ? pin_nth_cpu(1, &saved) : 0;
    if (rc == 0 && (mode == 'P' || mode == 'U' || mode == 'S'))
        rc = serve_pingpong(fd, mode == 'S');
    else if (rc == 0)
        rc = mode == 'T' ? serve_stream(fd) : -EPROTO;
    if (pinned) unpin(&saved);
    if (rc) fprintf(stderr, "child: raw connection (%c): %s\n", mode, strerror(-rc));
}

/* Serves raw connections one at a time until ctl becomes readable (exit request or EOF). */
static void serve_raw(int lfd, int ctl)
{
    for (;;) {
        struct pollfd p[2] = {{.fd = lfd, .events = POLLIN}, {.fd = ctl, .events = POLLIN}};
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            return;
        }
        if (p[1].revents) return;
        if (!(p[0].revents & POLLIN)) continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        serve_conn(fd);
        close(fd);
    }
}

static int child_main(const params *pr, pid_t parent, int report, int ctl)
{
    /* Dies with the parent, so that a crashed benchmark leaves no node behind. */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) return 1;
    b_report rep = {0};
    ch_node *b = NULL;
    int lfd = listen_loopback(&rep.raw_port);
    rep.status = lfd < 0 ? lfd : node_open(pr, "B", NULL, &b);
    if (b) {
        rep.cluster_port = ch_node_port(b);
        rep.node_id = ch_node_id(b);
    }
    if (write_full(report, &rep, sizeof(rep)) < 0 || rep.status) goto out;
    int rc = wait_two_members(b, ctl);
    char joined = rc ? 'X' : 'J';
    if (write_full(report, &joined, 1) < 0 || rc) goto out;
    serve_raw(lfd, ctl);
out:
    if (b) ch_node_destroy(b);
    if (lfd >= 0) close(lfd);
    return rep.status ? 1 : 0;
}

/* ---- the parent: node A and the measurements ------------------------------------------ */

typedef struct async_run async_run;

typedef struct bench {
    const params *pr;
    ch_node *a;
    b_report b;
    char echo_id[32], sink_id[32];
    uint64_t *lat; /* pr->calls samples */
    async_run *ar; /* the ch_call_async chain; lives until node A is gone */
} bench;

/* ch_registry_lookup until the id is in A's replica of the registry (it streams in from
 * B). */
static int owner_of(ch_node *n, const char *id, uint64_t *node)
{
    uint64_t end = now_ns() + (uint64_t)JOIN_MS * 1000000u;
    for (;;) {
        ch_proc_info *info;
        int rc = ch_registry_lookup(n, id, CH_ID_CSTR, &info);
        if (rc == 0) {
            *node = info->node;
            ch_proc_info_free(info);
            return 0;
        }
        if (rc != CH_ENOPROC || now_ns() > end) return rc;
        pause_us(1000);
    }
}

/* Starts "<type>-0", "<type>-1", ... from A until one lands on B (the ring decides). */
static int place_on_b(bench *bn, const char *type, char *id, size_t cap)
{
    for (unsigned i = 0; i < MAX_PLACE; i++) {
        snprintf(id, cap, "%s-%u", type, i);
        ch_child_spec spec = {.id = id, .id_len = CH_ID_CSTR, .type = type};
        int res, rc = ch_node_children_start(bn->a, &spec, 1, NULL, &res);
        if (rc) return rc == CH_EPARTIAL ? res : rc;
        uint64_t node;
        if ((rc = owner_of(bn->a, id, &node))) return rc;
        if (node == bn->b.node_id) return 0;
    }
    return -ENOENT;
}

/* K blocking calls from this (foreign) thread; lat NULL for the warm-up. */
static int run_calls(bench *bn, size_t count, uint64_t *lat)
{
    uint8_t req[MSG], rep[MSG];
    fill_pattern(req, MSG);
    for (size_t i = 0; i < count; i++) {
        req[0] = (uint8_t)i;
        size_t len;
        uint64_t t0 = now_ns();
        int rc = ch_call(bn->a, bn->echo_id, CH_ID_CSTR, req, MSG, rep, sizeof(rep), &len, CALL_MS);
        uint64_t t1 = now_ns();
        if (rc) return rc;
        if (len != MSG || memcmp(req, rep, MSG)) return -EBADMSG;
        if (lat) lat[i] = t1 - t0;
    }
    return 0;
}

static int measure_call(bench *bn, double *p50, double *p99)
{
    int rc = run_calls(bn, bn->pr->warmup, NULL);
    if (rc || (rc = run_calls(bn, bn->pr->calls, bn->lat))) return rc;
    *p50 = percentile_us(bn->lat, bn->pr->calls, 0.50);
    *p99 = percentile_us(bn->lat, bn->pr->calls, 0.99);
    return 0;
}

/* A chain of ch_call_async on A's reactor 0: each reply callback issues the next call. */
struct async_run {
    bench *bn;
    size_t total, done; /* calls to make (warm-up included), calls answered */
    uint64_t t0;        /* when the call in flight was issued */
    uint8_t req[MSG];
    int rc;
    bool finished;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static void async_finish(async_run *ar, int rc)
{
    pthread_mutex_lock(&ar->mu);
    ar->rc = rc;
    ar->finished = true;
    pthread_cond_signal(&ar->cv);
    pthread_mutex_unlock(&ar->mu);
}

static void async_reply(void *ud, int status, const void *reply, size_t len);

static void async_issue(async_run *ar)
{
    ar->req[0] = (uint8_t)ar->done;
    ar->t0 = now_ns();
    int rc = ch_call_async(ar->bn->a, ar->bn->echo_id, CH_ID_CSTR, ar->req, MSG, CALL_MS,
                           async_reply, ar);
    if (rc) async_finish(ar, rc);
}

static void async_reply(void *ud, int status, const void *reply, size_t len)
{
    async_run *ar = ud;
    uint64_t t1 = now_ns();
    if (status == 0 && (len != MSG || memcmp(reply, ar->req, MSG))) status = -EBADMSG;
    if (status) return async_finish(ar, status);
    size_t warm = ar->bn->pr->warmup;
    if (ar->done >= warm) ar->bn->lat[ar->done - warm] = t1 - ar->t0;
    if (++ar->done == ar->total) return async_finish(ar, 0);
    async_issue(ar);
}

static void async_begin(ch_node *n, void *ud)
{
    async_issue(ud);
}

/* Waits for the chain's end. On a timeout the chain may still run: the caller must stop
 * the node before `ar` goes away. */
static int async_wait(async_run *ar, uint32_t timeout_ms)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += timeout_ms / 1000;
    int rc = 0;
    pthread_mutex_lock(&ar->mu);
    while (!ar->finished && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&ar->cv, &ar->mu, &dl);
    int out = ar->finished ? ar->rc : -ETIMEDOUT;
    pthread_mutex_unlock(&ar->mu);
    return out;
}

static int measure_async(bench *bn, double *p50, double *p99)
{
    async_run *ar = bn->ar;
    ar->bn = bn;
    ar->total = bn->pr->warmup + bn->pr->calls;
    ar->done = 0;
    ar->finished = false;
    fill_pattern(ar->req, MSG);
    int rc = ch_node_post(bn->a, 0, async_begin, ar);
    if (rc || (rc = async_wait(ar, (uint32_t)(ar->total * 2 + 10000)))) return rc;
    *p50 = percentile_us(bn->lat, bn->pr->calls, 0.50);
    *p99 = percentile_us(bn->lat, bn->pr->calls, 0.99);
    return 0;
}

/* A raw connection to the child's server. Modes: 'P' blocking ping-pong across two CPUs,
 * 'U' the same unpinned, 'S' spinning across two CPUs, 'T' framed stream. */
static int raw_connect(int port, char mode)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1, rc = 0;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) < 0 ||
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        rc = -errno;
    if (rc == 0) rc = write_full(fd, &mode, 1);
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

static int pingpong(int fd, size_t count, bool spin, uint64_t *lat)
{
    uint8_t out[MSG], in[MSG];
    fill_pattern(out, MSG);
    for (size_t i = 0; i < count; i++) {
        uint64_t t0 = now_ns();
        int rc = write_full(fd, out, MSG);
        if (rc || (rc = read_full(fd, in, MSG, spin))) return rc;
        if (lat) lat[i] = now_ns() - t0;
    }
    return 0;
}

static int pingpong_run(bench *bn, char mode, double *p50, double *p99)
{
    bool spin = mode == 'S', pinned = mode != 'U';
    cpu_set_t saved;
    int rc = pinned ? pin_nth_cpu(0, &saved) : 0;
    if (rc) return rc;
    int fd = raw_connect(bn->b.raw_port, mode);
    if (fd >= 0) {
        rc = pingpong(fd, bn->pr->warmup, spin, NULL);
        if (rc == 0) rc = pingpong(fd, bn->pr->calls, spin, bn->lat);
        close(fd); /* the child's server goes back to accept */
    }
    if (pinned) unpin(&saved); /* this thread is also the foreign caller of ch_call */
    if (fd < 0) return fd;
    if (rc) return rc;
    *p50 = percentile_us(bn->lat, bn->pr->calls, 0.50);
    *p99 = percentile_us(bn->lat, bn->pr->calls, 0.99);
    return 0;
}

static int measure_blocking(bench *bn, double *p50, double *p99)
{
    return pingpong_run(bn, 'P', p50, p99);
}

static int measure_unpinned(bench *bn, double *p50, double *p99)
{
    return pingpong_run(bn, 'U', p50, p99);
}

static int measure_spinning(bench *bn, double *p50, double *p99)
{
    return pingpong_run(bn, 'S', p50, p99);
}

/* The sink's count, by a call (which also orders after this thread's earlier sends). */
static int sink_count(bench *bn, uint64_t *count)
{
    size_t len;
    int rc = ch_call(bn->a, bn->sink_id, CH_ID_CSTR, "n", 1, count, sizeof(*count), &len, CALL_MS);
    return rc ? rc : len == sizeof(*count) ? 0 : -EBADMSG;
}

/* Sends, retrying on a full mailbox: the pause lets the coordinator drain it. */
static int send_retry(bench *bn, const uint8_t *msg, uint64_t *retries)
{
    for (;;) {
        int rc = ch_send(bn->a, bn->sink_id, CH_ID_CSTR, msg, MSG);
        if (rc != -EAGAIN) return rc;
        (*retries)++;
        pause_us(20);
    }
}

/* Polls the sink until it counted `want`, or the deadline passes. */
static int sink_wait(bench *bn, uint64_t want)
{
    uint64_t end = now_ns() + (uint64_t)DRAIN_MS * 1000000u, got = 0;
    for (;;) {
        int rc = sink_count(bn, &got);
        if (rc) return rc;
        if (got == want) return 0;
        if (got > want) return -EPROTO;
        if (now_ns() > end) {
            fprintf(stderr, "sink counted %llu of %llu messages\n", (unsigned long long)got,
                    (unsigned long long)want);
            return -ETIMEDOUT;
        }
        pause_us(500);
    }
}

static int measure_send(bench *bn, double *rate, double *mbs)
{
    uint8_t msg[MSG];
    fill_pattern(msg, MSG);
    uint64_t base, retries = 0;
    int rc = sink_count(bn, &base);
    if (rc) return rc;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < bn->pr->msgs; i++)
        if ((rc = send_retry(bn, msg, &retries))) return rc;
    if ((rc = sink_wait(bn, base + bn->pr->msgs))) return rc;
    if (retries) fprintf(stderr, "ch_send: %llu retries on -EAGAIN\n", (unsigned long long)retries);
    double s = (double)(now_ns() - t0) / 1e9;
    *rate = (double)bn->pr->msgs / s;
    *mbs = *rate * MSG / 1e6;
    return 0;
}

/* Writes msgs framed messages in STREAM_CHUNK writes, then the end mark. */
static int stream_write(int fd, size_t msgs)
{
    static uint8_t chunk[STREAM_CHUNK];
    const size_t frame = 4 + MSG, per = STREAM_CHUNK / frame;
    uint8_t msg[MSG];
    uint32_t len = MSG;
    fill_pattern(msg, MSG);
    for (size_t sent = 0; sent < msgs;) {
        size_t k = msgs - sent < per ? msgs - sent : per;
        for (size_t i = 0; i < k; i++) { /* frame each message, as a sender would */
            memcpy(chunk + i * frame, &len, 4);
            memcpy(chunk + i * frame + 4, msg, MSG);
        }
        int rc = write_full(fd, chunk, k * frame);
        if (rc) return rc;
        sent += k;
    }
    uint32_t end = 0;
    return write_full(fd, &end, 4);
}

static int measure_stream(bench *bn, double *rate, double *mbs)
{
    int fd = raw_connect(bn->b.raw_port, 'T');
    if (fd < 0) return fd;
    uint64_t t0 = now_ns(), count = 0;
    int rc = stream_write(fd, bn->pr->msgs);
    if (rc == 0) rc = read_full(fd, &count, sizeof(count), false);
    double s = (double)(now_ns() - t0) / 1e9;
    close(fd);
    if (rc) return rc;
    if (count != bn->pr->msgs) return -EPROTO;
    *rate = (double)bn->pr->msgs / s;
    *mbs = *rate * MSG / 1e6;
    return 0;
}

/* The measurements, in the order a repetition runs them: each baseline right before
 * the corehub figure it is compared with. */
typedef struct measure {
    const char *name; /* for --only and errors */
    int (*run)(bench *bn, double *row0, double *row1);
    int row; /* its rows: row, row + 1 */
} measure;

static const measure measures[N_MEASURES] = {
    {"tcp", measure_blocking, M_TCP_P50},   {"call", measure_call, M_CALL_P50},
    {"async", measure_async, M_ASYNC_P50},  {"tcpfree", measure_unpinned, M_FREE_P50},
    {"spin", measure_spinning, M_SPIN_P50}, {"stream", measure_stream, M_STREAM_RATE},
    {"send", measure_send, M_SEND_RATE},
};

/* One repetition: every selected measurement once. */
static int run_rep(bench *bn, results *res, unsigned rep)
{
    for (unsigned g = 0; g < N_MEASURES; g++) {
        const measure *ms = &measures[g];
        if (!(bn->pr->only & (1u << g))) continue;
        if (ms->row != (int)(2 * g)) return fail(ms->name, -EINVAL); /* table out of order */
        int rc = ms->run(bn, &res->v[ms->row][rep], &res->v[ms->row + 1][rep]);
        if (rc) return fail(ms->name, rc);
    }
    fprintf(stderr, "rep %u/%u done\n", rep + 1, bn->pr->reps);
    return 0;
}

/* ---- report -------------------------------------------------------------------------- */

static void print_header(const params *pr)
{
    char cpu[128];
    struct utsname u;
    cpu_model(cpu, sizeof(cpu));
    if (uname(&u) < 0) snprintf(u.release, sizeof(u.release), "unknown");
    printf("# bench_cluster: two nodes in two processes on loopback\n");
    printf("machine: %ld CPUs online, %s, Linux %s\n", sysconf(_SC_NPROCESSORS_ONLN), cpu,
           u.release);
    printf("parameters: reps %u, %zu calls after %zu warm-up, %zu messages of %u B, "
           "%u core(s) per node, pin %d, spin %u us\n\n",
           pr->reps, pr->calls, pr->warmup, pr->msgs, MSG, pr->cores, pr->pin, pr->spin_us);
}

static double median(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static bool row_ran(const params *pr, int row)
{
    return pr->only & (1u << (row / 2));
}

/* A value in a fixed-width cell: rates without decimals. */
static void print_cell(double v, const char *unit)
{
    printf(strcmp(unit, "msg/s") == 0 ? " %11.0f |" : " %11.1f |", v);
}

/* Prints one row from its sorted values (v[0] the min) and every row's median. */
static void print_row(const results *res, const params *pr, int m, const double *med)
{
    const metric *mt = &metrics[m];
    const double *v = res->v[m];
    printf("| %-42s |", mt->name);
    print_cell(med[m], mt->unit);
    print_cell(v[0], mt->unit);
    print_cell(v[pr->reps - 1], mt->unit);
    printf(" %-5s |", mt->unit);
    if (mt->baseline < 0 || !row_ran(pr, mt->baseline)) {
        printf(" %11s | %6s | %-12s |\n", "-", "-", "-");
        return;
    }
    double ratio = med[m] / med[mt->baseline];
    print_cell(med[mt->baseline], mt->unit);
    printf(" %6.2f |", ratio);
    if (mt->max_ratio > 0)
        printf(" <= %.1f %-5s |\n", mt->max_ratio, ratio <= mt->max_ratio ? "ok" : "MISS");
    else
        printf(" %-12s |\n", "-");
}

static void print_table(results *res, const params *pr)
{
    double med[M_COUNT];
    for (int m = 0; m < M_COUNT; m++)
        med[m] = median(res->v[m], pr->reps); /* sorts: v[0] is the min, v[reps-1] the max */
    printf("| %-42s | %11s | %11s | %11s | %-5s | %11s | %6s | %-12s |\n", "metric", "median",
           "min", "max", "unit", "baseline", "ratio", "target");
    printf(
        "|--------------------------------------------|-------------|-------------|-------------|"
        "-------|-------------|--------|--------------|\n");
    for (int m = 0; m < M_COUNT; m++)
        if (row_ran(pr, m)) print_row(res, pr, m, med);
    printf("\nratio = median / median of the row's baseline, measured in the same run. Target "
           "(design 6): remote call p50 <= 1.5 x raw blocking TCP ping-pong p50.\n"
           "Raw ping-pong ends run pinned on two different CPUs, except the 'unpinned' rows.\n");
}

/* ---- parent orchestration ------------------------------------------------------------ */

/* Reads B's report, then waits for its "I see both members" byte (after A joined). */
static int read_report(int fd, b_report *rep)
{
    int rc = wait_readable(fd, JOIN_MS);
    if (rc <= 0) return rc ? rc : -ETIMEDOUT;
    if ((rc = read_full(fd, rep, sizeof(*rep), false))) return rc;
    return rep->status;
}

static int read_joined(int fd)
{
    char joined;
    int rc = wait_readable(fd, JOIN_MS);
    if (rc <= 0) return rc ? rc : -ETIMEDOUT;
    if ((rc = read_full(fd, &joined, 1, false))) return rc;
    return joined == 'J' ? 0 : -ETIMEDOUT;
}

/* Node A up, both nodes see each other, echo and sink placed on B. */
static int setup(bench *bn, int report)
{
    int rc = read_report(report, &bn->b);
    if (rc) return fail("node B", rc);
    char seed[32];
    snprintf(seed, sizeof(seed), "127.0.0.1:%d", bn->b.cluster_port);
    if ((rc = node_open(bn->pr, "A", seed, &bn->a))) return fail("node A", rc);
    if ((rc = wait_two_members(bn->a, -1)) || (rc = read_joined(report))) return fail("join", rc);
    if ((rc = place_on_b(bn, "echo", bn->echo_id, sizeof(bn->echo_id))) ||
        (rc = place_on_b(bn, "sink", bn->sink_id, sizeof(bn->sink_id))))
        return fail("placing processes on B", rc);
    return 0;
}

static int results_alloc(results *res, unsigned reps)
{
    for (int m = 0; m < M_COUNT; m++)
        if (!(res->v[m] = calloc(reps, sizeof(double)))) return -ENOMEM;
    return 0;
}

static void results_free(results *res)
{
    for (int m = 0; m < M_COUNT; m++)
        free(res->v[m]);
}

static int parent_run(const params *pr, int report)
{
    async_run ar = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    bench bn = {.pr = pr, .ar = &ar};
    results res = {0};
    int rc = results_alloc(&res, pr->reps);
    if (rc == 0 && !(bn.lat = calloc(pr->calls, sizeof(*bn.lat)))) rc = -ENOMEM;
    if (rc == 0) rc = setup(&bn, report);
    for (unsigned i = 0; rc == 0 && i < pr->reps; i++)
        rc = run_rep(&bn, &res, i);
    if (bn.a) {
        /* A leaves gracefully, so that B does not take the end for a failure. Then it goes,
         * before `ar` does: a timed-out chain may still run on it. */
        int lrc = ch_node_leave(bn.a);
        if (lrc) fail("leave", lrc);
        ch_node_destroy(bn.a);
    }
    if (rc == 0) print_table(&res, pr);
    free(bn.lat);
    results_free(&res);
    return rc;
}

/* Tells the child to exit and reaps it; SIGKILL after a grace period. */
static int reap_child(pid_t pid, int ctl)
{
    char q = 'q';
    ssize_t w = write(ctl, &q, 1);
    (void)w; /* EPIPE: the child is gone already; EOF on close tells it too */
    close(ctl);
    int st;
    for (int i = 0; i < 1000; i++) { /* 10 s */
        pid_t got = waitpid(pid, &st, WNOHANG);
        if (got == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (got < 0 && errno != EINTR) return -errno;
        pause_us(10000);
    }
    fprintf(stderr, "child %d did not exit: killed\n", (int)pid);
    kill(pid, SIGKILL);
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    return -ETIMEDOUT;
}

/* ---- options and main ---------------------------------------------------------------- */

static void usage(const char *argv0)
{
    fprintf(stderr,
            "usage: %s [--reps N] [--quick] [--calls K] [--msgs M] [--cores C] [--pin 0|1]\n"
            "          [--spin-us US] [--only tcp,call,async,...]\n"
            "  --reps N    repetitions, median with min/max (default 5)\n"
            "  --quick     smoke run: 2 reps, 2000 calls, 100000 messages\n"
            "  --calls K   measured round trips per run (default 20000, after 1000 warm-up)\n"
            "  --msgs M    messages per throughput run (default 1000000)\n"
            "  --cores C   reactors per node (default 1: two nodes share 2 CPUs)\n"
            "  --pin 0|1   pin reactors to CPUs (default 0)\n"
            "  --spin-us   reactor spin before sleeping (default: the node's, 50)\n"
            "  --only LIST run only these measurements (to profile one): tcp, call, async,\n"
            "              tcpfree, spin, stream, send\n",
            argv0);
}

static bool parse_num(const char *s, unsigned long long *out)
{
    char *end;
    errno = 0;
    unsigned long long v = s ? strtoull(s, &end, 10) : 0;
    if (!s || errno || *end || end == s) return false;
    *out = v;
    return true;
}

/* "call,send" -> the bits of those measurements; 0 for an unknown name. */
static unsigned parse_only(const char *list)
{
    unsigned mask = 0;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        unsigned g = 0;
        while (g < N_MEASURES && strcmp(tok, measures[g].name) != 0)
            g++;
        if (g == N_MEASURES) return 0;
        mask |= 1u << g;
    }
    return mask;
}

static int parse_args(int argc, char **argv, params *pr)
{
    *pr = (params){.reps = 5,
                   .calls = 20000,
                   .warmup = 1000,
                   .msgs = 1000000,
                   .cores = 1,
                   .spin_us = 50,
                   .only = ALL_MEASURES};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        unsigned long long x;
        if (strcmp(a, "--quick") == 0) {
            pr->reps = 2, pr->calls = 2000, pr->warmup = 200, pr->msgs = 100000;
            continue;
        }
        if (strcmp(a, "--only") == 0 && v) {
            if (!(pr->only = parse_only(v))) return -EINVAL;
            i++;
            continue;
        }
        if (!parse_num(v, &x)) return -EINVAL;
        i++;
        if (strcmp(a, "--reps") == 0 && x >= 1)
            pr->reps = (unsigned)x;
        else if (strcmp(a, "--calls") == 0 && x >= 1)
            pr->calls = x, pr->warmup = x / 20 ? x / 20 : 1;
        else if (strcmp(a, "--msgs") == 0 && x >= 1)
            pr->msgs = x;
        else if (strcmp(a, "--cores") == 0 && x >= 1 && x <= 64)
            pr->cores = (unsigned)x;
        else if (strcmp(a, "--pin") == 0 && x <= 1)
            pr->pin = (int)x;
        else if (strcmp(a, "--spin-us") == 0 && x <= 1000000)
            pr->spin_us = (uint32_t)x;
        else
            return -EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    params pr;
    if (parse_args(argc, argv, &pr) < 0) {
        usage(argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN); /* a dead peer shows as EPIPE, not a signal */
    if (!getenv("CH_LOG")) ch_log_level_set(CH_LOG_WARN);
    int report[2], ctl[2];
    if (pipe2(report, O_CLOEXEC) < 0 || pipe2(ctl, O_CLOEXEC) < 0) {
        perror("pipe");
        return 1;
    }
    pid_t parent = getpid();
    fflush(NULL);       /* nothing buffered twice */
    pid_t pid = fork(); /* before any thread exists: both sides start clean */
    if (pid < 0) {
        perror("fork");
        return 1;
    }
    if (pid == 0) {
        close(report[0]);
        close(ctl[1]);
        _exit(child_main(&pr, parent, report[1], ctl[0]));
    }
    close(report[1]);
    close(ctl[0]);
    print_header(&pr);
    fflush(stdout);
    int rc = parent_run(&pr, report[0]);
    int crc = reap_child(pid, ctl[1]);
    close(report[0]);
    if (crc) fprintf(stderr, "child exited with %d\n", crc);
    return rc || crc ? 1 : 0;
}
