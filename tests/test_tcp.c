/*
 * tests/test_tcp.c - the TCP engine under the server skeleton and the transport
 * (net/tcp.h): input growth and alignment, a flushing close, ending the write side while
 * reading on, held input, and the accept loop's stop.
 *
 * A one-core node lends its reactor: the engine's listener and connections live there, and
 * the test thread is a plain blocking client (tests/lib/sock.h). Hooks run on the reactor
 * and only record, in atomics; the test thread asserts.
 */
#include "helpers.h"
#include "sock.h"

#include "net/tcp.h"

#include <stdlib.h>
#include <unistd.h>

TestSuite(tcp, .timeout = 60);

#define FIRST   4096u
#define BIG_MSG (1u << 20)
#define FLUSH   (8u << 20)

typedef enum { MODE_MSGS, MODE_FLUSH, MODE_END_WRITE, MODE_HOLD } mode;

typedef struct conn {
    ch_tcp tcp;
} conn;

static struct {
    ch_node *n;
    mode mode;
    ch_tcp_acceptor acc;
    int lfd;
    _Atomic int port, ready, quiet, closed, ends, msgs, bad, misaligned, late;
    _Atomic size_t rcap_seen[8]; /* rcap when message k arrived */
    _Atomic size_t max_rcap;
    _Atomic bool inside_read, data_inside_read, held_once;
    conn *c; /* reactor only */
} fx;

static uint8_t pattern(size_t i, unsigned k)
{
    return (uint8_t)(i * 31 + k * 7 + 3);
}

/* ---- the engine's side, on the reactor ---------------------------------------------------- */

/* MODE_MSGS: u32 length, then that many pattern bytes; asks for room for a whole one. */
static int take_msgs(ch_tcp *t)
{
    for (;;) {
        size_t have = t->rlen - t->rpos;
        if (have < 4) return 0;
        uint32_t len;
        memcpy(&len, t->rbuf + t->rpos, 4);
        if (have < 4 + (size_t)len) {
            t->want = 4 + (size_t)len;
            return 0;
        }
        int k = atomic_load(&fx.msgs);
        const uint8_t *p = t->rbuf + t->rpos + 4;
        for (size_t i = 0; i < len; i++)
            if (p[i] != pattern(i, (unsigned)k)) {
                atomic_fetch_add(&fx.bad, 1);
                break;
            }
        if (k < 8) atomic_store(&fx.rcap_seen[k], t->rcap);
        t->rpos += 4 + (size_t)len;
        atomic_fetch_add(&fx.msgs, 1);
    }
}

static int on_data(ch_tcp *t)
{
    if ((uintptr_t)t->rbuf % 64) atomic_fetch_add(&fx.misaligned, 1);
    if (t->rcap > atomic_load(&fx.max_rcap)) atomic_store(&fx.max_rcap, t->rcap);
    if (atomic_load(&fx.inside_read)) atomic_store(&fx.data_inside_read, true);
    if (fx.mode == MODE_HOLD && !atomic_load(&fx.held_once)) {
        atomic_store(&fx.held_once, true); /* take nothing, and pause */
        t->hold = true;
        return 0;
    }
    if (fx.mode == MODE_END_WRITE || fx.mode == MODE_HOLD) {
        atomic_fetch_add(&fx.late, (int)(t->rlen - t->rpos));
        t->rpos = t->rlen;
        return 0;
    }
    return take_msgs(t);
}

static void on_end(ch_tcp *t, int res, bool in_send)
{
    atomic_fetch_add(&fx.ends, 1);
    ch_tcp_close(t, res, false);
}

static void on_closed(ch_tcp *t)
{
    conn *c = (conn *)t;
    if (fx.c == c) fx.c = NULL;
    ch_tcp_fini(t);
    free(c);
    atomic_fetch_add(&fx.closed, 1);
}

static const ch_tcp_ops ops = {.on_data = on_data, .on_end = on_end, .on_closed = on_closed};

static void start_mode(ch_tcp *t)
{
    static uint8_t big[FLUSH];
    if (fx.mode == MODE_FLUSH) {
        for (size_t i = 0; i < FLUSH; i++)
            big[i] = pattern(i, 1);
        if (ch_tcp_write(t, big, FLUSH) < 0) atomic_fetch_add(&fx.bad, 1);
        ch_tcp_close(t, 0, true);
    } else if (fx.mode == MODE_END_WRITE) {
        if (ch_tcp_write(t, "bye", 3) < 0) atomic_fetch_add(&fx.bad, 1);
        ch_tcp_end_write(t);
        if (ch_tcp_write(t, "x", 1) != -ENOTCONN) atomic_fetch_add(&fx.bad, 1);
    }
}

static void on_accept(ch_tcp_acceptor *a, int fd)
{
    conn *c = calloc(1, sizeof(*c));
    ch_tcp_cfg cfg = {.rbuf_first = FIRST, .rbuf_keep = FIRST};
    if (!c || ch_tcp_init(&c->tcp, a->r, fd, &ops, &cfg) < 0) {
        free(c);
        close(fd);
        atomic_fetch_add(&fx.bad, 1);
        return;
    }
    fx.c = c;
    start_mode(&c->tcp);
    if (!c->tcp.closing) ch_tcp_read(&c->tcp);
}

static void on_quiet(ch_tcp_acceptor *a)
{
    atomic_fetch_add(&fx.quiet, 1);
}

static void setup(ch_node *n, void *ud)
{
    int port = 0;
    fx.lfd = ch_tcp_listen("127.0.0.1:0", 16, &port);
    if (fx.lfd < 0) {
        atomic_store(&fx.ready, fx.lfd);
        return;
    }
    ch_tcp_acceptor_init(&fx.acc, ch_reactor_self(), fx.lfd, on_accept);
    fx.acc.on_quiet = on_quiet;
    ch_tcp_acceptor_start(&fx.acc);
    atomic_store(&fx.port, port);
    atomic_store(&fx.ready, 1);
}

static void stop(ch_node *n, void *ud)
{
    ch_tcp_acceptor_stop(&fx.acc);
    ch_tcp_acceptor_stop(&fx.acc); /* twice: nothing more */
    if (fx.c) ch_tcp_close(&fx.c->tcp, -ESHUTDOWN, false);
}

static void release(ch_node *n, void *ud)
{
    if (!fx.c) return;
    fx.c->tcp.hold = false;
    atomic_store(&fx.inside_read, true);
    ch_tcp_read(&fx.c->tcp);
    atomic_store(&fx.inside_read, false);
}

/* ---- the test thread ---------------------------------------------------------------------- */

typedef struct goal {
    _Atomic int *v;
    int n;
} goal;

static bool reached(void *ud)
{
    const goal *g = ud;
    return atomic_load(g->v) >= g->n;
}

static void wait_for(_Atomic int *v, int n)
{
    goal g = {v, n};
    cr_assert(wait_until(reached, &g, TH_WAIT_MS), "waited for %d, have %d", n, atomic_load(v));
}

static bool held(void *ud)
{
    return atomic_load(&fx.held_once);
}

static int up(mode m)
{
    memset((void *)&fx, 0, sizeof(fx));
    fx.mode = m;
    fx.n = th_node_new(1);
    cr_assert_eq(ch_node_post(fx.n, 0, setup, NULL), 0);
    wait_for(&fx.ready, 1);
    return th_connect(atomic_load(&fx.port), 10);
}

static void down(int fd)
{
    if (fd >= 0) close(fd);
    cr_assert_eq(ch_node_post(fx.n, 0, stop, NULL), 0);
    wait_for(&fx.quiet, 1);
    th_node_free(fx.n);
    close(fx.lfd);
    cr_assert_eq(atomic_load(&fx.quiet), 1, "on_quiet runs once");
    cr_assert_eq(atomic_load(&fx.bad), 0);
}

static void send_msg(int fd, uint32_t len, unsigned k)
{
    uint8_t *b = malloc(4 + (size_t)len);
    cr_assert_not_null(b);
    memcpy(b, &len, 4);
    for (size_t i = 0; i < len; i++)
        b[4 + i] = pattern(i, k);
    th_send_all(fd, b, 4 + (size_t)len);
    free(b);
}

Test(tcp, input_grows_to_what_on_data_asks_stays_aligned_and_shrinks_back)
{
    int fd = up(MODE_MSGS);
    send_msg(fd, 100, 0);
    send_msg(fd, BIG_MSG, 1);
    wait_for(&fx.msgs, 2);
    send_msg(fd, 10, 2);
    wait_for(&fx.msgs, 3);
    cr_assert_eq(atomic_load(&fx.misaligned), 0, "the input buffer is 64-byte aligned");
    cr_assert_geq(atomic_load(&fx.max_rcap), 4 + BIG_MSG, "it grew to a whole message");
    cr_assert_eq(atomic_load(&fx.rcap_seen[0]), FIRST);
    cr_assert_eq(atomic_load(&fx.rcap_seen[2]), FIRST, "it shrank back once empty");
    down(fd);
}

Test(tcp, a_flushing_close_sends_everything_queued_then_the_fin)
{
    int fd = up(MODE_FLUSH);
    uint8_t *got = malloc(FLUSH);
    cr_assert_not_null(got);
    th_recv_all(fd, got, FLUSH);
    size_t wrong = 0;
    for (size_t i = 0; i < FLUSH; i++)
        wrong += got[i] != pattern(i, 1);
    free(got);
    cr_assert_eq(wrong, 0);
    char b;
    cr_assert_eq(recv(fd, &b, 1, 0), 0, "then EOF");
    wait_for(&fx.closed, 1);
    down(fd);
    cr_assert_eq(atomic_load(&fx.closed), 1);
}

Test(tcp, ending_the_write_side_keeps_reading)
{
    int fd = up(MODE_END_WRITE);
    char b[8];
    th_recv_all(fd, b, 3);
    cr_assert_eq(memcmp(b, "bye", 3), 0);
    cr_assert_eq(recv(fd, b, 1, 0), 0, "the write side ended");
    th_send_all(fd, "late", 4);
    wait_for(&fx.late, 4);
    shutdown(fd, SHUT_WR);
    wait_for(&fx.closed, 1);
    cr_assert_eq(atomic_load(&fx.ends), 1, "the peer's EOF reached on_end");
    down(fd);
}

Test(tcp, held_input_reaches_on_data_from_a_completion_after_the_release)
{
    int fd = up(MODE_HOLD);
    th_send_all(fd, "abc", 3);
    cr_assert(wait_until(held, NULL, TH_WAIT_MS));
    cr_assert_eq(ch_node_post(fx.n, 0, release, NULL), 0);
    wait_for(&fx.late, 3);
    cr_assert_not(atomic_load(&fx.data_inside_read), "not from inside ch_tcp_read");
    down(fd);
}
