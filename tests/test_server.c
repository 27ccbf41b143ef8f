/*
 * tests/test_server.c - the server skeleton (corehub/server.h) in one process.
 *
 * A node serves on 127.0.0.1:0; the clients are plain blocking sockets in the test thread
 * (or a helper thread). The server's callbacks run on reactors: they record what they see
 * in atomics (th_check for invariants), and the test thread asserts. `sv.mode` picks what
 * the server does with its input.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "sock.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

TestSuite(server, .timeout = 120);

enum mode {
    ECHO,    /* writes back what it got */
    FRAMES,  /* u32 length + bytes; acks each whole frame with its length */
    BIG,     /* "G": answers BIG_BYTES of pattern, following the write queue's drains */
    ASYNC,   /* "A": calls the tp process "d1" ('D'), answers its reply when it comes */
    HOARD,   /* consumes nothing */
    FAIL,    /* "X" makes on_data fail with -EPROTO */
    QUIT,    /* "Q": queues QUIT_BYTES, then closes with a flush */
    ONEBYTE, /* consumes one byte per call, then pauses; the test resumes it */
};

#define BIG_BYTES  (8u << 20)
#define QUIT_BYTES (1u << 20)
#define MANY       200

typedef struct conn_state {
    ch_sconn h;
    size_t big_left; /* BIG: bytes still to queue */
    size_t big_off;
} conn_state;

typedef struct server_state {
    ch_node *n;
    ch_server *s;
    _Atomic int mode;
    atomic_int opens, closes, drains, eagains, throttles, partials, frames, bad_frames;
    atomic_int reason_counts[4]; /* 0, -ESHUTDOWN, other */
    _Atomic int last_reason;
    atomic_uint cores_seen; /* bit per core */
    _Atomic size_t consumed, max_queued;
    ch_sconn last; /* written by on_open before `opens` is released */
    atomic_int late_done, late_rc;
    atomic_int wr_rc, wr_done;
    _Atomic size_t write_high, write_low;
} server_state;

static server_state sv;

static void note_queue(ch_sconn h)
{
    size_t q = ch_sconn_queued(h), old = atomic_load(&sv.max_queued);
    while (q > old && !atomic_compare_exchange_weak(&sv.max_queued, &old, q)) {
    }
    if (q >= atomic_load(&sv.write_high)) atomic_fetch_add(&sv.throttles, 1);
}

static void pattern(uint8_t *p, size_t off, size_t len)
{
    for (size_t i = 0; i < len; i++)
        p[i] = th_pattern(off + i);
}

/* BIG: queues pattern bytes until the queue says -EAGAIN; on_drain calls it again. */
static void produce(conn_state *u)
{
    static _Thread_local uint8_t chunk[64 * 1024];
    while (u->big_left) {
        size_t n = u->big_left < sizeof(chunk) ? u->big_left : sizeof(chunk);
        pattern(chunk, u->big_off, n);
        int rc = ch_sconn_write(u->h, chunk, n);
        if (rc == -EAGAIN) {
            atomic_fetch_add(&sv.eagains, 1);
            return;
        }
        th_check(rc == 0);
        if (rc < 0) return;
        note_queue(u->h);
        u->big_left -= n;
        u->big_off += n;
    }
}

/* ASYNC: the tp process's answer, maybe after the connection is gone. */
static void on_late(void *ud, int status, const void *reply, size_t len)
{
    ch_sconn *h = ud;
    int rc = status == 0 ? ch_sconn_write(*h, reply, len) : status;
    atomic_store(&sv.late_rc, rc);
    atomic_fetch_add(&sv.late_done, 1);
    free(h);
}

static int on_open(void *server_ud, ch_sconn c, void **conn_ud)
{
    th_check(server_ud == &sv);
    th_check(ch_node_current_core(sv.n) == ch_sconn_core(c));
    th_check(ch_sconn_alive(c));
    conn_state *u = calloc(1, sizeof(*u));
    th_check(u != NULL);
    if (!u) return -ENOMEM;
    u->h = c;
    *conn_ud = u;
    atomic_fetch_or(&sv.cores_seen, 1u << ch_sconn_core(c));
    sv.last = c;
    atomic_fetch_add(&sv.opens, 1);
    return 0;
}

static long frames_data(ch_sconn c, uint8_t *d, size_t len)
{
    size_t off = 0;
    while (len - off >= 4) {
        uint32_t flen;
        memcpy(&flen, d + off, 4);
        if (len - off - 4 < flen) break;
        bool intact = true;
        for (uint32_t i = 0; i < flen; i++)
            intact &= d[off + 4 + i] == th_pattern(i + flen);
        atomic_fetch_add(intact ? &sv.frames : &sv.bad_frames, 1);
        th_check(ch_sconn_write(c, &flen, 4) == 0);
        off += 4 + flen;
    }
    if (off < len) atomic_fetch_add(&sv.partials, 1);
    return (long)off;
}

static long on_data(void *ud, ch_sconn c, void *data, size_t len)
{
    conn_state *u = ud;
    uint8_t *d = data;
    th_check(ch_node_current_core(sv.n) == ch_sconn_core(c));
    /* Reading stops while the queue is over the high mark: no input arrives then. */
    th_check(ch_sconn_queued(c) < atomic_load(&sv.write_high));
    long took = (long)len;
    switch (atomic_load(&sv.mode)) {
    case ECHO: {
        int rc = ch_sconn_write(c, data, len);
        th_check(rc == 0);
        note_queue(c);
        break;
    }
    case FRAMES:
        took = frames_data(c, d, len);
        break;
    case BIG:
        if (d[len - 1] == 'G') {
            u->big_left = BIG_BYTES;
            produce(u);
        }
        break;
    case ASYNC:
        for (size_t i = 0; i < len; i++) {
            if (d[i] != 'A') continue;
            ch_sconn *h = malloc(sizeof(*h));
            th_check(h != NULL);
            *h = c;
            int rc = ch_call_async(sv.n, "d1", CH_ID_CSTR, "D", 1, TH_CALL_MS, on_late, h);
            th_check(rc == 0);
        }
        break;
    case HOARD:
        took = 0;
        break;
    case FAIL:
        if (memchr(d, 'X', len)) return -EPROTO;
        break;
    case QUIT:
        if (memchr(d, 'Q', len)) {
            uint8_t *big = malloc(QUIT_BYTES);
            th_check(big != NULL);
            if (!big) return -ENOMEM;
            pattern(big, 0, QUIT_BYTES);
            th_check(ch_sconn_write(c, big, QUIT_BYTES) == 0);
            free(big);
            th_check(ch_sconn_close(c, 1) == 0);
            th_check(ch_sconn_write(c, "late", 4) == -ENOTCONN);
        }
        break;
    case ONEBYTE:
        th_check(ch_sconn_write(c, d, 1) == 0);
        took = 1;
        th_check(ch_sconn_pause(c) == 0);
        break;
    }
    atomic_fetch_add(&sv.consumed, (size_t)took);
    return took;
}

static void on_drain(void *ud, ch_sconn c)
{
    conn_state *u = ud;
    th_check(ch_sconn_queued(c) <= atomic_load(&sv.write_low));
    atomic_fetch_add(&sv.drains, 1);
    if (atomic_load(&sv.mode) == BIG) produce(u);
}

static void on_close(void *ud, ch_sconn c, int reason)
{
    conn_state *u = ud;
    th_check(!ch_sconn_alive(c));
    th_check(ch_sconn_write(c, "x", 1) == -ENOTCONN);
    atomic_fetch_add(&sv.reason_counts[reason == 0 ? 0 : reason == -ESHUTDOWN ? 1 : 2], 1);
    atomic_store(&sv.last_reason, reason);
    free(u);
    atomic_fetch_add(&sv.closes, 1);
}

/* A config with small buffers, so that tests reach the limits with little data. */
static ch_server_config config(void)
{
    ch_server_config cfg;
    ch_server_config_init(&cfg);
    cfg.listen = "127.0.0.1:0";
    cfg.read_bytes = 4096;
    cfg.max_read_bytes = 256 * 1024;
    cfg.write_high = 64 * 1024;
    cfg.write_low = 16 * 1024;
    cfg.on_open = on_open;
    cfg.on_data = on_data;
    cfg.on_drain = on_drain;
    cfg.on_close = on_close;
    cfg.ud = &sv;
    return cfg;
}

static void start_with(unsigned cores, enum mode mode, const ch_server_config *cfg)
{
    sv.n = th_node_new(cores);
    atomic_store(&sv.mode, mode);
    atomic_store(&sv.write_high, cfg->write_high);
    atomic_store(&sv.write_low, cfg->write_low);
    int rc = ch_server_open(sv.n, cfg, &sv.s);
    cr_assert_eq(rc, 0, "ch_server_open: %s", ch_strerror(rc));
    cr_assert_gt(ch_server_port(sv.s), 0);
}

static void start(unsigned cores, enum mode mode)
{
    ch_server_config cfg = config();
    start_with(cores, mode, &cfg);
}

static void finish(void)
{
    cr_assert_eq(ch_server_close(sv.s), 0);
    th_node_free(sv.n);
    th_assert_no_bad();
}

/* --- clients ------------------------------------------------------------------------------ */

static int client_bufsize(int port, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    if (rcvbuf) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    struct timeval tv = {.tv_sec = 20};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    cr_assert_eq(rc, 0, "connect: %s", strerror(errno));
    return fd;
}

static int client(void)
{
    return client_bufsize(ch_server_port(sv.s), 0);
}

/* --- behaviour ---------------------------------------------------------------------------- */

Test(server, echo_server_answers_each_connection)
{
    start(2, ECHO);
    int a = client(), b = client();
    char buf[32];
    for (int round = 0; round < 20; round++) {
        int len = snprintf(buf, sizeof(buf), "hello %d", round);
        th_send_all(round % 2 ? a : b, buf, (size_t)len);
        char got[32];
        th_recv_all(round % 2 ? a : b, got, (size_t)len);
        cr_assert_arr_eq(got, buf, (size_t)len);
    }
    cr_assert_eq(atomic_load(&sv.opens), 2);
    cr_assert(TH_WAIT(ch_server_conns(sv.s) == 2, TH_WAIT_MS));
    close(a);
    close(b);
    cr_assert(TH_WAIT(atomic_load(&sv.closes) == 2, TH_WAIT_MS));
    cr_assert_eq(atomic_load(&sv.reason_counts[0]), 2, "a peer's close is reason 0");
    cr_assert_eq(ch_server_conns(sv.s), 0);
    finish();
}

Test(server, partial_input_reaches_on_data_as_whole_frames)
{
    start(1, FRAMES);
    int fd = client();
    /* Frames of every size from 0 to 100 KiB: larger than the 4 KiB first buffer, so that
     * on_data sees partial frames and the buffer grows; sent in odd pieces across frames. */
    static const uint32_t sizes[] = {0, 1, 3, 4095, 4096, 4097, 100 * 1024, 17, 65536, 2};
    size_t total = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++)
        total += 4 + sizes[i];
    uint8_t *wire = malloc(total);
    cr_assert_not_null(wire);
    size_t off = 0;
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        memcpy(wire + off, &sizes[i], 4);
        for (uint32_t k = 0; k < sizes[i]; k++)
            wire[off + 4 + k] = th_pattern(k + sizes[i]);
        off += 4 + sizes[i];
    }
    for (size_t at = 0, step = 1; at < total; at += step, step = step * 3 % 7919 + 1)
        th_send_all(fd, wire + at, step < total - at ? step : total - at);
    for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
        uint32_t ack;
        th_recv_all(fd, &ack, 4);
        cr_assert_eq(ack, sizes[i], "frame %zu acked as %u bytes", i, ack);
    }
    cr_assert_eq(atomic_load(&sv.frames), (int)(sizeof(sizes) / sizeof(sizes[0])));
    cr_assert_eq(atomic_load(&sv.bad_frames), 0);
    cr_assert_gt(atomic_load(&sv.partials), 0, "some input ended inside a frame");
    free(wire);
    close(fd);
    finish();
}

Test(server, large_answers_leave_whole_through_partial_sends)
{
    start(1, BIG);
    int fd = client_bufsize(ch_server_port(sv.s), 8192); /* a slow, small reader */
    th_send_all(fd, "G", 1);
    uint8_t *got = malloc(BIG_BYTES);
    cr_assert_not_null(got);
    for (size_t off = 0; off < BIG_BYTES;) {
        size_t n = BIG_BYTES - off < 1000 ? BIG_BYTES - off : 1000;
        th_recv_all(fd, got + off, n);
        off += n;
    }
    for (size_t i = 0; i < BIG_BYTES; i++)
        if (got[i] != th_pattern(i)) cr_assert_fail("byte %zu differs", i);
    free(got);
    cr_assert_gt(atomic_load(&sv.eagains), 0, "the queue pushed back");
    cr_assert_gt(atomic_load(&sv.drains), 0, "and said when it drained");
    cr_assert_leq(atomic_load(&sv.max_queued), 64 * 1024 + 64 * 1024);
    close(fd);
    finish();
}

typedef struct pusher {
    int fd;
    size_t total;
    int err;
} pusher;

static void *push_all(void *arg)
{
    pusher *p = arg;
    static uint8_t chunk[64 * 1024];
    for (size_t off = 0; off < p->total;) {
        size_t n = p->total - off < sizeof(chunk) ? p->total - off : sizeof(chunk);
        pattern(chunk, off, n);
        ssize_t w = send(p->fd, chunk, n, MSG_NOSIGNAL);
        if (w <= 0) {
            p->err = errno ? errno : EIO;
            return NULL;
        }
        off += (size_t)w; /* a short send: the next chunk starts where this one stopped */
    }
    return NULL;
}

Test(server, a_client_that_does_not_read_cannot_grow_the_queue)
{
    start(1, ECHO);
    int fd = client_bufsize(ch_server_port(sv.s), 16384);
    /* The client pipelines 32 MiB of requests and reads no answer until the server has hit
     * its high mark; the server must stop reading rather than queue all of it. */
    pusher p = {.fd = fd, .total = 32u << 20};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, push_all, &p), 0);
    cr_assert(TH_WAIT(atomic_load(&sv.throttles) > 0, TH_LONG_WAIT_MS),
              "the queue never reached its high mark");
    uint8_t *got = malloc(64 * 1024);
    cr_assert_not_null(got);
    for (size_t off = 0; off < p.total;) {
        size_t n = p.total - off < 64 * 1024 ? p.total - off : 64 * 1024;
        th_recv_all(fd, got, n);
        for (size_t i = 0; i < n; i++)
            if (got[i] != th_pattern(off + i)) cr_assert_fail("echo byte %zu differs", off + i);
        off += n;
    }
    free(got);
    pthread_join(t, NULL);
    cr_assert_eq(p.err, 0, "push: %s", strerror(p.err));
    /* Bounded: the high mark plus one read buffer's worth, whatever the client sent. */
    cr_assert_leq(atomic_load(&sv.max_queued), 64 * 1024 + 256 * 1024);
    cr_assert_gt(atomic_load(&sv.drains), 0);
    close(fd);
    finish();
}

Test(server, an_answer_after_the_connection_closed_is_refused_safely)
{
    start(1, ASYNC);
    th_start(sv.n, "d1", CH_PERMANENT, NULL);
    /* First while the connection is open: the late answer reaches the client. */
    int fd = client();
    th_send_all(fd, "A", 1);
    cr_assert(TH_WAIT(atomic_load(&th.deferred) == 1, TH_WAIT_MS));
    cr_assert_eq(th_send(sv.n, "d1", CH_ID_CSTR, "Rlate", 5), 0);
    char got[4];
    th_recv_all(fd, got, 4);
    cr_assert_arr_eq(got, "late", 4);
    cr_assert(TH_WAIT(atomic_load(&sv.late_done) == 1, TH_WAIT_MS));
    cr_assert_eq(atomic_load(&sv.late_rc), 0);
    /* Then the client leaves before the answer: writing it is refused, nothing breaks. */
    th_send_all(fd, "A", 1);
    cr_assert(TH_WAIT(atomic_load(&th.deferred) == 2, TH_WAIT_MS));
    close(fd);
    cr_assert(TH_WAIT(atomic_load(&sv.closes) == 1, TH_WAIT_MS));
    cr_assert_eq(th_send(sv.n, "d1", CH_ID_CSTR, "Rgone", 5), 0);
    cr_assert(TH_WAIT(atomic_load(&sv.late_done) == 2, TH_WAIT_MS));
    cr_assert_eq(atomic_load(&sv.late_rc), -ENOTCONN);
    finish();
}

/* A process type that writes to a connection from its own core: a cast carries the
 * handle and the bytes. */
static int wr_handle(ch_proc *p, const ch_msg *m)
{
    if (m->kind != CH_MSG_CAST || m->len < sizeof(ch_sconn)) return CH_CONTINUE;
    ch_sconn h;
    memcpy(&h, m->data, sizeof(h));
    const char *text = (const char *)m->data + sizeof(h);
    atomic_store(&sv.wr_rc, ch_sconn_write(h, text, m->len - sizeof(h)));
    atomic_fetch_add(&sv.wr_done, 1);
    return CH_CONTINUE;
}

Test(server, a_process_on_another_core_answers_on_the_connection)
{
    ch_node_config nc = th_config(2);
    sv.n = th_node_create(&nc);
    ch_process_type wr = {.name = "wr", .handle = wr_handle};
    cr_assert_eq(ch_node_register_type(sv.n, &wr), 0);
    th_node_start(sv.n);
    ch_server_config cfg = config();
    atomic_store(&sv.mode, ECHO);
    atomic_store(&sv.write_high, cfg.write_high);
    atomic_store(&sv.write_low, cfg.write_low);
    cr_assert_eq(ch_server_open(sv.n, &cfg, &sv.s), 0);
    int fd = client();
    cr_assert(TH_WAIT(atomic_load(&sv.opens) == 1, TH_WAIT_MS));
    ch_sconn h = sv.last;
    char id[32];
    th_id_on_core(sv.n, "wr", (unsigned)(1 - ch_sconn_core(h)), id, sizeof(id));
    ch_child_spec spec = th_spec(id, "wr");
    th_start_spec(sv.n, &spec);
    uint8_t msg[sizeof(h) + 5];
    memcpy(msg, &h, sizeof(h));
    memcpy(msg + sizeof(h), "hello", 5);
    cr_assert_eq(th_send(sv.n, id, CH_ID_CSTR, msg, sizeof(msg)), 0);
    char got[5];
    th_recv_all(fd, got, 5);
    cr_assert_arr_eq(got, "hello", 5);
    cr_assert_eq(atomic_load(&sv.wr_rc), 0);
    close(fd);
    cr_assert(TH_WAIT(atomic_load(&sv.closes) == 1, TH_WAIT_MS));
    cr_assert_eq(th_send(sv.n, id, CH_ID_CSTR, msg, sizeof(msg)), 0);
    cr_assert(TH_WAIT(atomic_load(&sv.wr_done) == 2, TH_WAIT_MS));
    cr_assert_eq(atomic_load(&sv.wr_rc), -ENOTCONN, "a stale handle is refused");
    /* And from a foreign thread (this one). */
    cr_assert_eq(ch_sconn_write(h, "x", 1), -ENOTCONN);
    cr_assert_eq(ch_sconn_close(h, 0), -ENOTCONN);
    finish();
}

Test(server, many_connections_are_served_and_counted)
{
    start(2, ECHO);
    int fds[MANY];
    for (int i = 0; i < MANY; i++)
        fds[i] = client();
    for (int i = 0; i < MANY; i++) {
        char buf[16], got[16];
        int len = snprintf(buf, sizeof(buf), "ping %d", i);
        th_send_all(fds[i], buf, (size_t)len);
        th_recv_all(fds[i], got, (size_t)len);
        cr_assert_arr_eq(got, buf, (size_t)len);
    }
    cr_assert_eq(atomic_load(&sv.opens), MANY);
    cr_assert(TH_WAIT(ch_server_conns(sv.s) == MANY, TH_WAIT_MS));
    for (int i = 0; i < MANY; i++)
        close(fds[i]);
    cr_assert(TH_WAIT(atomic_load(&sv.closes) == MANY, TH_WAIT_MS));
    cr_assert_eq(ch_server_conns(sv.s), 0);
    finish();
}

Test(server, port_zero_puts_every_core_on_one_port)
{
    start(4, ECHO);
    int port = ch_server_port(sv.s);
    /* SO_REUSEPORT spreads connections by their addresses: 64 of them all landing on one
     * core of four would be a 4^-63 chance, or a part that never accepts. */
    int fds[64];
    for (int i = 0; i < 64; i++) {
        fds[i] = client();
        th_send_all(fds[i], "p", 1);
        char c;
        th_recv_all(fds[i], &c, 1);
    }
    cr_assert_gt(__builtin_popcount(atomic_load(&sv.cores_seen)), 1, "cores seen: %#x",
                 atomic_load(&sv.cores_seen));
    ch_server_config cfg = config();
    ch_server *other;
    cr_assert_eq(ch_server_open(sv.n, &cfg, &other), 0);
    cr_assert_neq(ch_server_port(other), port, "a second server gets a port of its own");
    cr_assert_eq(ch_server_close(other), 0);
    for (int i = 0; i < 64; i++)
        close(fds[i]);
    finish();
}

Test(server, closing_the_server_closes_every_connection)
{
    start(2, ECHO);
    int port = ch_server_port(sv.s);
    int fds[10];
    for (int i = 0; i < 10; i++)
        fds[i] = client();
    cr_assert(TH_WAIT(atomic_load(&sv.opens) == 10, TH_WAIT_MS));
    cr_assert_eq(ch_server_close(sv.s), 0);
    cr_assert_eq(atomic_load(&sv.closes), 10, "every on_close ran before close returned");
    cr_assert_eq(atomic_load(&sv.reason_counts[1]), 10, "reason -ESHUTDOWN");
    for (int i = 0; i < 10; i++) {
        cr_assert(th_closed_by_peer(fds[i]));
        close(fds[i]);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_neq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "nobody listens now");
    close(fd);
    th_node_free(sv.n);
    th_assert_no_bad();
}

Test(server, node_stop_closes_its_servers_first)
{
    start(2, ASYNC);
    th_start(sv.n, "d1", CH_PERMANENT, NULL);
    int fds[6];
    for (int i = 0; i < 6; i++) {
        fds[i] = client();
        th_send_all(fds[i], "A", 1); /* each leaves a call pending */
    }
    cr_assert(TH_WAIT(atomic_load(&th.deferred) == 6, TH_WAIT_MS));
    cr_assert_eq(ch_node_stop(sv.n), 0);
    cr_assert_eq(atomic_load(&sv.closes), 6);
    cr_assert_eq(atomic_load(&sv.reason_counts[1]), 6);
    cr_assert_eq(atomic_load(&sv.late_done), 6, "every pending call was answered (stopped)");
    for (int i = 0; i < 6; i++) {
        cr_assert(th_closed_by_peer(fds[i]));
        close(fds[i]);
    }
    cr_assert_eq(ch_server_close(sv.s), 0, "after the stop it only frees");
    ch_node_destroy(sv.n);
    th_assert_no_bad();
}

Test(server, a_node_destroyed_with_a_server_open_frees_it)
{
    start(1, ECHO);
    int fd = client();
    th_send_all(fd, "x", 1);
    char c;
    th_recv_all(fd, &c, 1);
    ch_node_destroy(sv.n); /* stops, closes the connection, frees the server */
    cr_assert_eq(atomic_load(&sv.closes), 1);
    cr_assert(th_closed_by_peer(fd));
    close(fd);
    th_assert_no_bad();
}

Test(server, input_that_is_never_consumed_is_bounded)
{
    start(1, HOARD);
    int fd = client();
    static uint8_t junk[512 * 1024];
    /* The server closes once 256 KiB sit unconsumed; the send may fail with it. */
    send(fd, junk, sizeof(junk), MSG_NOSIGNAL);
    cr_assert(TH_WAIT(atomic_load(&sv.closes) == 1, TH_WAIT_MS));
    cr_assert_eq(atomic_load(&sv.last_reason), -EMSGSIZE);
    cr_assert(th_closed_by_peer(fd));
    close(fd);
    finish();
}

Test(server, an_on_data_error_closes_the_connection)
{
    start(1, FAIL);
    int fd = client();
    th_send_all(fd, "abc", 3);
    th_send_all(fd, "X", 1);
    cr_assert(TH_WAIT(atomic_load(&sv.closes) == 1, TH_WAIT_MS));
    cr_assert_eq(atomic_load(&sv.last_reason), -EPROTO);
    cr_assert(th_closed_by_peer(fd));
    close(fd);
    /* The server still serves others. */
    atomic_store(&sv.mode, ECHO);
    fd = client();
    th_send_all(fd, "ok", 2);
    char got[2];
    th_recv_all(fd, got, 2);
    close(fd);
    finish();
}

Test(server, a_flushing_close_delivers_the_queue_then_ends)
{
    ch_server_config cfg = config();
    cfg.write_high = 4u << 20; /* the whole answer fits the queue */
    cfg.write_low = 1u << 20;
    start_with(1, QUIT, &cfg);
    int fd = client_bufsize(ch_server_port(sv.s), 8192);
    th_send_all(fd, "Q", 1);
    uint8_t *got = malloc(QUIT_BYTES);
    cr_assert_not_null(got);
    th_recv_all(fd, got, QUIT_BYTES);
    for (size_t i = 0; i < QUIT_BYTES; i++)
        if (got[i] != th_pattern(i)) cr_assert_fail("byte %zu differs", i);
    free(got);
    char c;
    cr_assert_eq(recv(fd, &c, 1, 0), 0, "EOF after the queued bytes");
    cr_assert(TH_WAIT(atomic_load(&sv.closes) == 1, TH_WAIT_MS));
    cr_assert_eq(atomic_load(&sv.last_reason), 0);
    close(fd);
    finish();
}

static void resume_last(ch_node *n, void *ud)
{
    (void)n;
    atomic_int *rc = ud;
    atomic_store(rc, ch_sconn_resume(sv.last));
}

Test(server, resume_hands_buffered_input_over_later)
{
    start(1, ONEBYTE);
    int fd = client();
    cr_assert(TH_WAIT(atomic_load(&sv.opens) == 1, TH_WAIT_MS));
    th_send_all(fd, "abcdef", 6);
    char got[6];
    for (int i = 0; i < 6; i++) {
        th_recv_all(fd, got + i, 1);
        if (i == 5) break;
        /* Paused after each byte: the rest waits in the buffer until a resume. */
        atomic_int rc = 1;
        cr_assert_eq(ch_node_post(sv.n, (unsigned)ch_sconn_core(sv.last), resume_last, &rc), 0);
        cr_assert(TH_WAIT(atomic_load(&rc) != 1, TH_WAIT_MS));
        cr_assert_eq(atomic_load(&rc), 0);
    }
    cr_assert_arr_eq(got, "abcdef", 6);
    cr_assert_eq(ch_sconn_resume(sv.last), -EPERM, "owner reactor only");
    close(fd);
    finish();
}

static void close_from_reactor(ch_node *n, void *ud)
{
    atomic_int *rc = ud;
    atomic_store(rc, ch_server_close(sv.s));
}

Test(server, misuse_is_refused)
{
    ch_server_config cfg = config();
    ch_server *s = NULL;
    ch_node_config nc = th_config(1);
    ch_node *idle = th_node_create(&nc);
    cr_assert_eq(ch_server_open(idle, &cfg, &s), CH_ESTOPPED, "not started");
    ch_node_destroy(idle);
    start(1, ECHO);
    cfg.on_data = NULL;
    cr_assert_eq(ch_server_open(sv.n, &cfg, &s), -EINVAL);
    cfg = config();
    cfg.write_low = cfg.write_high + 1;
    cr_assert_eq(ch_server_open(sv.n, &cfg, &s), -EINVAL);
    cfg = config();
    cfg.listen = "nonsense";
    cr_assert_eq(ch_server_open(sv.n, &cfg, &s), -EINVAL);
    ch_sconn zero = {{0}};
    cr_assert_eq(ch_sconn_write(zero, "x", 1), -ENOTCONN);
    cr_assert_eq(ch_sconn_close(zero, 1), -ENOTCONN);
    cr_assert_eq(ch_sconn_core(zero), -EINVAL);
    cr_assert_eq(ch_sconn_alive(zero), 0);
    atomic_int rc = 1;
    cr_assert_eq(ch_node_post(sv.n, 0, close_from_reactor, &rc), 0);
    cr_assert(TH_WAIT(atomic_load(&rc) != 1, TH_WAIT_MS));
    cr_assert_eq(atomic_load(&rc), CH_EWOULDBLOCK);
    finish();
}
