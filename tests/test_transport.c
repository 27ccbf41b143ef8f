/*
 * tests/test_transport.c - what travels on a transport connection (net/transport.h): only
 * sealed frames from a peer that completed the handshake ever reach on_frame.
 *
 * A one-core node (no cluster) lends its reactor: transport A listens on 127.0.0.1 and
 * records every frame it is given; transport B, on the same reactor, dials it like a
 * coordinator would. Attackers are a plain blocking socket in the test thread, which runs
 * the handshake itself (ch_hs) when it has the cookie and seals with ch_seal when it
 * means to. Callbacks run on the reactor: they only record, in atomics, and the test
 * thread asserts.
 */
#define _GNU_SOURCE /* memmem */
#include "helpers.h"
#include "sock.h"

#include "net/seal.h"
#include "net/transport.h"

#include <sys/socket.h>
#include <unistd.h>

TestSuite(transport, .timeout = 60);

#define HUB       "transport-test"
#define COOKIE    "transport-test-cookie-0123456789"
#define MAX_FRAME (1u << 20)
#define NRECORD   16
#define BIG       (256u << 10)

/* --- the fixture: two transports on a node's reactor ------------------------------------ */

typedef struct seen {
    uint8_t type;
    uint32_t len;
    bool intact; /* the payload is frame_payload(position, len) */
} seen;

typedef struct end {
    ch_transport *t;
    _Atomic int ups, downs, frames;
    seen rec[NRECORD]; /* written on the reactor before `frames` is released */
    ch_conn *conn;     /* the last connection that came up (reactor only) */
} end;

typedef struct fixture {
    ch_node *n;
    end a, b;
    _Atomic int port;     /* A's, once listening */
    _Atomic int setup_rc; /* 1 until the setup ran */
    _Atomic int closed;
    _Atomic bool greet;     /* A sends the secret to each connection that comes up */
    _Atomic int up_send_rc; /* the first failure of a send from on_up, 0 if none */
    _Atomic int oversize_rc;
} fixture;

static fixture fx;

static const char secret[] = "SECRET-MARKER-that-must-never-show-on-the-wire";

/* The payload of the frame at `position` in a test's sequence. */
static void frame_payload(uint8_t *p, size_t len, unsigned position)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)(i * 7 + position * 13 + 1);
}

static void up_send(ch_conn *c, uint8_t type, const void *p, size_t len)
{
    int rc = ch_conn_send(c, type, p, len), none = 0;
    if (rc < 0) atomic_compare_exchange_strong(&fx.up_send_rc, &none, rc);
}

static void on_up(void *ud, ch_conn *c, const ch_hello *peer)
{
    end *e = ud;
    e->conn = c;
    if (e == &fx.a && atomic_load(&fx.greet)) up_send(c, CH_F_CAST, secret, sizeof(secret));
    if (e == &fx.b) { /* after the early frames: position 5, the largest allowed frame */
        static uint8_t big[MAX_FRAME + 1];
        frame_payload(big, MAX_FRAME, 5);
        up_send(c, CH_F_CALL, big, MAX_FRAME);
        atomic_store(&fx.oversize_rc, ch_conn_send(c, CH_F_CALL, big, MAX_FRAME + 1));
    }
    atomic_fetch_add(&e->ups, 1);
}

static void on_frame(void *ud, ch_conn *c, const ch_frame *f)
{
    end *e = ud;
    int k = atomic_load_explicit(&e->frames, memory_order_relaxed);
    if (k < NRECORD) {
        static uint8_t want[MAX_FRAME];
        frame_payload(want, f->len, (unsigned)k);
        e->rec[k] = (seen){f->type, f->len, memcmp(f->payload, want, f->len) == 0};
    }
    atomic_store_explicit(&e->frames, k + 1, memory_order_release);
}

static void on_down(void *ud, ch_conn *c, int reason)
{
    end *e = ud;
    if (e->conn == c) e->conn = NULL;
    atomic_fetch_add(&e->downs, 1);
}

static const ch_transport_cbs cbs = {.on_up = on_up, .on_frame = on_frame, .on_down = on_down};

static ch_hello self_hello(uint64_t id)
{
    ch_hello h = {.node_id = id, .incarnation = 1, .cores = 1, .role = CH_ROLE_PEER};
    snprintf(h.hub_id, sizeof(h.hub_id), "%s", HUB);
    return h;
}

static int make_end(ch_reactor *r, end *e, const char *listen, uint64_t id)
{
    ch_hello h = self_hello(id);
    ch_transport_cbs c = cbs;
    c.ud = e;
    int rc = ch_transport_create(r, listen, &h, COOKIE, strlen(COOKIE), MAX_FRAME, &c, &e->t);
    return rc < 0 ? rc : ch_transport_start(e->t);
}

/* Queues frames 0..4 on a connection that is not up yet: they must wait, then go sealed
 * and in order. Frame 5 follows from on_up. */
static int send_early(ch_conn *c)
{
    static uint8_t p[BIG];
    int rc = 0;
    frame_payload(p, 0, 0);
    rc |= ch_conn_send(c, CH_F_CAST, p, 0);
    frame_payload(p, 100, 1);
    rc |= ch_conn_send2(c, CH_F_CAST, p, 40, p + 40, 60);
    ch_wbuf raw; /* 2 and 3: whole plain frames, as the coordinator's backlog holds them */
    ch_wbuf_init(&raw);
    frame_payload(p, 1000, 2);
    ch_frame_write(&raw, CH_F_REG_DELTA, 0, p, 1000);
    frame_payload(p, 3, 3);
    ch_frame_write(&raw, CH_F_PING, 0, p, 3);
    rc |= raw.err ? raw.err : ch_conn_send_raw(c, raw.data, raw.len);
    ch_wbuf_free(&raw);
    frame_payload(p, BIG, 4);
    rc |= ch_conn_send(c, CH_F_CAST, p, BIG);
    return rc;
}

static void setup_on_reactor(ch_node *n, void *ud)
{
    bool dial = ud != NULL;
    ch_reactor *r = ch_reactor_self();
    int rc = make_end(r, &fx.a, "127.0.0.1:0", 1);
    if (rc == 0 && dial) rc = make_end(r, &fx.b, NULL, 2);
    if (rc == 0) atomic_store(&fx.port, ch_transport_port(fx.a.t));
    if (rc == 0 && dial) {
        char addr[64];
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", ch_transport_port(fx.a.t));
        ch_conn *c;
        rc = ch_transport_connect(fx.b.t, addr, CH_ROLE_PEER, &c);
        if (rc == 0) rc = send_early(c);
    }
    atomic_store(&fx.setup_rc, rc);
}

static void close_on_reactor(ch_node *n, void *ud)
{
    if (fx.a.t) ch_transport_close_all(fx.a.t);
    if (fx.b.t) ch_transport_close_all(fx.b.t);
    atomic_store(&fx.closed, 1);
}

static bool setup_done(void *ud)
{
    return atomic_load(&fx.setup_rc) != 1;
}

static bool is_closed(void *ud)
{
    return atomic_load(&fx.closed) != 0;
}

static void fixture_up(bool dial)
{
    atomic_store(&fx.setup_rc, 1);
    fx.n = th_node_new(1);
    cr_assert_eq(ch_node_post(fx.n, 0, setup_on_reactor, dial ? &fx : NULL), 0);
    cr_assert(wait_until(setup_done, NULL, TH_WAIT_MS));
    cr_assert_eq(atomic_load(&fx.setup_rc), 0, "setup: %s", strerror(-atomic_load(&fx.setup_rc)));
}

/* Closes on the reactor, stops the node, then frees the transports (their io_uring is gone
 * by then, as ch_transport_free wants). */
static void fixture_down(void)
{
    cr_assert_eq(ch_node_post(fx.n, 0, close_on_reactor, NULL), 0);
    cr_assert(wait_until(is_closed, NULL, TH_WAIT_MS));
    th_node_free(fx.n);
    ch_transport_free(fx.a.t);
    ch_transport_free(fx.b.t);
}

typedef struct at_least {
    _Atomic int *v;
    int want;
} at_least;

static bool reached(void *ud)
{
    at_least *a = ud;
    return atomic_load(a->v) >= a->want;
}

static void wait_count(_Atomic int *v, int want)
{
    at_least a = {v, want};
    cr_assert(wait_until(reached, &a, TH_WAIT_MS), "waited for %d, have %d", want, atomic_load(v));
}

/* --- a client on a plain socket ---------------------------------------------------------- */

typedef struct client {
    int fd;
    uint8_t buf[64 << 10];
    size_t len;      /* bytes in buf */
    size_t consumed; /* of which the frame client_read returned last */
    ch_hs hs;
    ch_seal seal;
    ch_wbuf out;
} client;

static void client_open(client *c)
{
    c->fd = th_connect(fx.port, TH_WAIT_MS / 1000);
    c->len = c->consumed = 0;
    ch_wbuf_init(&c->out);
    c->seal = (ch_seal){0};
}

static void client_close(client *c)
{
    close(c->fd);
    ch_hs_clear(&c->hs);
    ch_seal_wipe(&c->seal);
    ch_wbuf_free(&c->out);
}

static void client_write(client *c, const void *p, size_t len)
{
    /* The server may already have closed: a refused write is part of what is tested. */
    ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
    (void)n;
}

static void client_flush(client *c)
{
    client_write(c, c->out.data, c->out.len);
    ch_wbuf_reset(&c->out);
}

/* Reads the next whole frame (after the handshake: record) into *f; its bytes stay at the
 * start of c->buf until the next call. Its size, 0 at end of stream, or a negative error. */
static int client_read(client *c, ch_frame *f)
{
    memmove(c->buf, c->buf + c->consumed, c->len - c->consumed);
    c->len -= c->consumed;
    c->consumed = 0;
    for (;;) {
        uint32_t max = sizeof(c->buf) - CH_FRAME_HDR;
        int n = c->seal.cipher ? ch_frame_decode_sealed(c->buf, c->len, max, f)
                               : ch_frame_decode(c->buf, c->len, max, f);
        if (n != 0) {
            if (n > 0) c->consumed = (size_t)n;
            return n;
        }
        ssize_t got = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
        if (got <= 0) return got == 0 || errno == ECONNRESET ? 0 : -errno;
        c->len += (size_t)got;
    }
}

static void client_hs_init(client *c, const char *cookie)
{
    ch_hello h = self_hello(77);
    h.role = CH_ROLE_CTL;
    h.caps = ch_seal_caps();
    cr_assert_eq(ch_hs_init(&c->hs, true, &h, cookie, strlen(cookie)), 0);
    cr_assert_eq(ch_hs_start(&c->hs, &c->out), 0);
}

/* Runs the whole handshake; its last ch_hs_on_frame result, or 0 at end of stream. */
static int client_handshake(client *c, const char *cookie)
{
    client_hs_init(c, cookie);
    client_flush(c);
    for (;;) {
        ch_frame f;
        int n = client_read(c, &f);
        if (n <= 0) return n;
        int rc = ch_hs_on_frame(&c->hs, &f, &c->out);
        client_flush(c);
        if (rc != CH_HS_CONTINUE) {
            if (rc == CH_HS_DONE) cr_assert_eq(ch_seal_init_hs(&c->seal, &c->hs), 0);
            return rc;
        }
    }
}

/* A sealed record of `n` CAST frames with these payloads, to send (and maybe again). */
static ch_wbuf sealed_record(ch_seal *s, const void *const *p, const size_t *len, size_t n)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    size_t at = ch_seal_record_begin(&w);
    for (size_t k = 0; k < n; k++)
        cr_assert_eq(ch_seal_record_put(&w, CH_F_CAST, 0, p[k], len[k], NULL, 0), 0);
    cr_assert_eq(ch_seal_record_end(s, &w, at), 0);
    return w;
}

static ch_wbuf sealed_frame(ch_seal *s, const void *p, size_t len)
{
    return sealed_record(s, &p, &len, 1);
}

static ch_node_stats stats(void)
{
    ch_node_stats s;
    cr_assert_eq(ch_node_stats_get(fx.n, &s), 0);
    return s;
}

/* --- tests ------------------------------------------------------------------------------- */

Test(transport, frames_queued_before_the_handshake_arrive_sealed_and_in_order)
{
    fixture_up(true);
    wait_count(&fx.a.frames, 6);
    cr_assert_eq(atomic_load(&fx.a.ups), 1);
    cr_assert_eq(atomic_load(&fx.b.ups), 1);
    const seen want[6] = {{CH_F_CAST, 0, true},         {CH_F_CAST, 100, true},
                          {CH_F_REG_DELTA, 1000, true}, {CH_F_PING, 3, true},
                          {CH_F_CAST, BIG, true},       {CH_F_CALL, MAX_FRAME, true}};
    for (int k = 0; k < 6; k++) {
        cr_assert_eq(fx.a.rec[k].type, want[k].type, "frame %d", k);
        cr_assert_eq(fx.a.rec[k].len, want[k].len, "frame %d", k);
        cr_assert(fx.a.rec[k].intact, "frame %d arrived intact and in its place", k);
    }
    cr_assert_eq(atomic_load(&fx.up_send_rc), 0);
    cr_assert_eq(atomic_load(&fx.oversize_rc), -EMSGSIZE, "one byte over the limit");
    cr_assert_eq(stats().bad_frames, 0);
    cr_assert_eq(atomic_load(&fx.a.frames), 6, "nothing else arrived");
    fixture_down();
}

Test(transport, a_client_that_skips_the_handshake_gets_no_frame_processed)
{
    fixture_up(false);
    client c;
    uint8_t frame[CH_FRAME_HDR + 5];
    ch_frame_header_write(frame, CH_F_CAST, 0, "hello", 5);
    memcpy(frame + CH_FRAME_HDR, "hello", 5);

    /* 1. No handshake at all: a plain frame first. */
    client_open(&c);
    client_write(&c, frame, sizeof(frame));
    cr_assert(th_closed_by_peer(c.fd));
    client_close(&c);

    /* 2. A valid HELLO, then a frame instead of the AUTH. */
    client_open(&c);
    client_hs_init(&c, COOKIE);
    client_flush(&c);
    client_write(&c, frame, sizeof(frame));
    cr_assert(th_closed_by_peer(c.fd));
    client_close(&c);

    /* 3. The wrong cookie: HELLO, a wrong AUTH, then frames. */
    client_open(&c);
    cr_assert_leq(client_handshake(&c, "not-the-cookie-of-this-hub!"), 0);
    client_write(&c, frame, sizeof(frame));
    cr_assert(th_closed_by_peer(c.fd));
    client_close(&c);

    /* 4. Says nothing and leaves. */
    client_open(&c);
    client_close(&c);

    cr_assert_eq(atomic_load(&fx.a.ups), 0, "nobody came up");
    cr_assert_eq(atomic_load(&fx.a.frames), 0, "no frame reached on_frame");
    cr_assert_geq(stats().refused_peers, 3);
    fixture_down();
}

Test(transport, a_plain_frame_after_the_handshake_closes_the_connection)
{
    fixture_up(false);
    client c;
    client_open(&c);
    cr_assert_eq(client_handshake(&c, COOKIE), CH_HS_DONE);
    wait_count(&fx.a.ups, 1);
    ch_wbuf plain;
    ch_wbuf_init(&plain);
    cr_assert_eq(ch_frame_write(&plain, CH_F_CAST, 0, "plain", 5), 0);
    client_write(&c, plain.data, plain.len);
    cr_assert(th_closed_by_peer(c.fd));
    client_close(&c);
    ch_wbuf_free(&plain);
    wait_count(&fx.a.downs, 1);
    cr_assert_eq(atomic_load(&fx.a.frames), 0);
    cr_assert_eq(stats().bad_frames, 1, "counted once");
    fixture_down();
}

Test(transport, a_frame_sealed_with_the_wrong_direction_key_closes_the_connection)
{
    fixture_up(false);
    client c;
    client_open(&c);
    cr_assert_eq(client_handshake(&c, COOKIE), CH_HS_DONE);
    /* The client seals as if it were the acceptor: the server's own direction. */
    uint8_t key[32];
    cr_assert_eq(ch_hs_session_key(&c.hs, key), 0);
    ch_seal wrong;
    cr_assert_eq(ch_seal_init(&wrong, c.seal.cipher, key, false), 0);
    ch_wbuf f = sealed_frame(&wrong, "reflected", 9);
    client_write(&c, f.data, f.len);
    cr_assert(th_closed_by_peer(c.fd));
    client_close(&c);
    ch_wbuf_free(&f);
    wait_count(&fx.a.downs, 1);
    cr_assert_eq(atomic_load(&fx.a.frames), 0);
    cr_assert_eq(stats().bad_frames, 1);
    fixture_down();
}

Test(transport, a_replayed_record_closes_the_connection)
{
    fixture_up(false);
    client c;
    client_open(&c);
    cr_assert_eq(client_handshake(&c, COOKIE), CH_HS_DONE);
    uint8_t p0[10], p1[300];
    frame_payload(p0, sizeof(p0), 0);
    frame_payload(p1, sizeof(p1), 1);
    const void *ps[2] = {p0, p1};
    const size_t lens[2] = {sizeof(p0), sizeof(p1)};
    ch_wbuf f = sealed_record(&c.seal, ps, lens, 2);
    client_write(&c, f.data, f.len);
    wait_count(&fx.a.frames, 2);
    cr_assert(fx.a.rec[0].intact && fx.a.rec[1].intact, "both frames are processed, in order");
    client_write(&c, f.data, f.len); /* the same bytes again */
    cr_assert(th_closed_by_peer(c.fd));
    client_close(&c);
    ch_wbuf_free(&f);
    wait_count(&fx.a.downs, 1);
    cr_assert_eq(atomic_load(&fx.a.frames), 2, "the replay was not");
    cr_assert_eq(stats().bad_frames, 1);
    fixture_down();
}

Test(transport, a_sealed_frame_outside_a_record_closes_the_connection)
{
    fixture_up(false);
    client c;
    client_open(&c);
    cr_assert_eq(client_handshake(&c, COOKIE), CH_HS_DONE);
    uint8_t b[CH_FRAME_HDR + 4 + CH_SEAL_TAG];
    memcpy(b + CH_FRAME_HDR, "cast", 4);
    cr_assert_eq(ch_seal_frame(&c.seal, b, CH_F_CAST, 0, 4), 0); /* right key, no record */
    client_write(&c, b, sizeof(b));
    cr_assert(th_closed_by_peer(c.fd));
    client_close(&c);
    wait_count(&fx.a.downs, 1);
    cr_assert_eq(atomic_load(&fx.a.frames), 0);
    cr_assert_eq(stats().bad_frames, 1);
    fixture_down();
}

Test(transport, frames_on_the_wire_are_encrypted)
{
    atomic_store(&fx.greet, true);
    fixture_up(false);
    client c;
    client_open(&c);
    cr_assert_eq(client_handshake(&c, COOKIE), CH_HS_DONE);
    ch_frame rec, f;
    cr_assert_gt(client_read(&c, &rec), 0);
    cr_assert_eq(rec.type, CH_F_SEALED);
    cr_assert_eq(rec.len, CH_FRAME_HDR + sizeof(secret) + CH_SEAL_TAG, "one frame in it");
    cr_assert_null(memmem(c.buf, c.len, "SECRET", 6), "the payload does not show");
    cr_assert_eq(ch_seal_record_open(&c.seal, c.buf, &rec), 0);
    size_t pos = 0;
    cr_assert_eq(ch_seal_record_next(&rec, &pos, 0, &f), 1);
    cr_assert_eq(f.type, CH_F_CAST);
    cr_assert_eq(f.len, sizeof(secret));
    cr_assert_arr_eq(f.payload, secret, sizeof(secret));
    cr_assert_eq(ch_seal_record_next(&rec, &pos, 0, &f), 0);
    cr_assert_eq(atomic_load(&fx.up_send_rc), 0);
    client_close(&c);
    fixture_down();
}

/* --- dials in progress ------------------------------------------------------------------- */

static struct {
    int silent_port;
    _Atomic int step; /* 1 while a step runs on the reactor */
    _Atomic bool to_silent, to_a_before, to_a_after;
} dl;

static void dial_both(ch_node *n, void *ud)
{
    char silent[64], a[64];
    snprintf(silent, sizeof(silent), "127.0.0.1:%d", dl.silent_port);
    snprintf(a, sizeof(a), "127.0.0.1:%d", ch_transport_port(fx.a.t));
    int rc = make_end(ch_reactor_self(), &fx.b, NULL, 2);
    atomic_store(&dl.to_a_before, ch_transport_dialing(fx.b.t, a));
    if (rc == 0) rc = ch_transport_connect(fx.b.t, silent, CH_ROLE_PEER, NULL);
    if (rc == 0) rc = ch_transport_connect(fx.b.t, a, CH_ROLE_PEER, NULL);
    atomic_store(&dl.step, rc);
}

static void look(ch_node *n, void *ud)
{
    char silent[64], a[64];
    snprintf(silent, sizeof(silent), "127.0.0.1:%d", dl.silent_port);
    snprintf(a, sizeof(a), "127.0.0.1:%d", ch_transport_port(fx.a.t));
    atomic_store(&dl.to_silent, ch_transport_dialing(fx.b.t, silent));
    atomic_store(&dl.to_a_after, ch_transport_dialing(fx.b.t, a));
    atomic_store(&dl.step, 0);
}

static bool step_done(void *ud)
{
    return atomic_load(&dl.step) != 1;
}

/* A peer that accepts (the kernel does) and never answers: the dial to it stays in
 * progress; the one to A finishes its handshake and is in progress no more. */
Test(transport, a_dial_is_in_progress_until_its_handshake_is_done)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof(sa);
    cr_assert(lfd >= 0 && bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
              listen(lfd, 4) == 0);
    cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    dl.silent_port = ntohs(sa.sin_port);
    fixture_up(false);
    atomic_store(&dl.step, 1);
    cr_assert_eq(ch_node_post(fx.n, 0, dial_both, NULL), 0);
    cr_assert(wait_until(step_done, NULL, TH_WAIT_MS));
    cr_assert_eq(atomic_load(&dl.step), 0);
    cr_assert_not(atomic_load(&dl.to_a_before), "nothing dialled yet");
    wait_count(&fx.b.ups, 1); /* the dial to A came up */
    atomic_store(&dl.step, 1);
    cr_assert_eq(ch_node_post(fx.n, 0, look, NULL), 0);
    cr_assert(wait_until(step_done, NULL, TH_WAIT_MS));
    cr_assert(atomic_load(&dl.to_silent), "the silent peer's dial is still in progress");
    cr_assert_not(atomic_load(&dl.to_a_after), "A's is done");
    fixture_down();
    close(lfd);
}
