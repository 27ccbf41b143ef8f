/*
 * tests/test_lane.c - a core's data lanes (net/lane.h): frames go on the lane a core
 * dialled and arrive named by the sending node; a lane port refuses a node connection; a
 * reset reports on_down and the lane is dialled again; a dropped peer's lanes close
 * without on_down; nothing is sent before the peer's ports are known.
 *
 * A one-core node lends its reactor: two lane endpoints on it stand for core 0 of node 1
 * and core 0 of node 2. Callbacks run on the reactor and only record, in atomics; the test
 * thread asserts.
 */
#include "helpers.h"

#include "net/lane.h"

TestSuite(lane, .timeout = 60);

#define HUB    "lane-test"
#define COOKIE "lane-test-cookie-0123456789abcdef"

typedef struct end {
    ch_lanes *l;
    uint64_t id;
    _Atomic int frames, downs, bad;
    _Atomic uint64_t last_from;
} end;

static struct {
    ch_node *n, *n2; /* n2: b's node, when the test stalls it */
    end a, b;
    ch_transport *intruder; /* dials a lane port as a node would */
    _Atomic int step_rc, intruder_downs;
} fx;

static void on_frame(void *ud, uint64_t node, uint8_t type, const uint8_t *p, size_t len)
{
    end *e = ud;
    if (type == CH_F_MIG_ACK) return; /* the stall test's flood */
    if (type != CH_F_MIG_DATA || len != 5 || memcmp(p, "hello", 5)) atomic_fetch_add(&e->bad, 1);
    atomic_store(&e->last_from, node);
    atomic_fetch_add(&e->frames, 1);
}

static void on_down(void *ud, uint64_t node, uint16_t core)
{
    end *e = ud;
    atomic_fetch_add(&e->downs, 1);
}

static void intruder_down(void *ud, ch_conn *c, int reason)
{
    atomic_fetch_add(&fx.intruder_downs, 1);
}

static ch_hello hello_of(uint64_t id)
{
    ch_hello h = {.node_id = id, .incarnation = 1, .cores = 1, .role = CH_ROLE_PEER};
    snprintf(h.hub_id, sizeof(h.hub_id), "%s", HUB);
    return h;
}

static int make_end(ch_reactor *r, end *e, uint64_t id)
{
    e->id = id;
    ch_hello h = hello_of(id);
    ch_lanes_cbs cbs = {.ud = e, .on_frame = on_frame, .on_down = on_down};
    int rc = ch_lanes_create(r, "127.0.0.1", &h, COOKIE, strlen(COOKIE), &cbs, &e->l);
    if (rc == 0) ch_lanes_start(e->l);
    return rc;
}

/* Each end learns the other's port. */
static int introduce(void)
{
    uint16_t pa = (uint16_t)ch_lanes_port(fx.a.l), pb = (uint16_t)ch_lanes_port(fx.b.l);
    int rc = ch_lanes_set_peer(fx.a.l, fx.b.id, "127.0.0.1", &pb, 1);
    return rc ? rc : ch_lanes_set_peer(fx.b.l, fx.a.id, "127.0.0.1", &pa, 1);
}

static void setup(ch_node *n, void *ud)
{
    ch_reactor *r = ch_reactor_self();
    int rc = make_end(r, &fx.a, 1);
    if (rc == 0 && !fx.n2) rc = make_end(r, &fx.b, 2);
    /* before the ports are known: nothing to send on */
    if (rc == 0 && ch_lanes_send(fx.a.l, 2, 0, CH_F_MIG_DATA, "x", 1, NULL, 0) != -ENOENT)
        rc = -EPROTO;
    if (rc == 0) rc = introduce();
    atomic_store(&fx.step_rc, rc);
}

/* Sends "hello" from a to b and from b to a: 0 once both lanes took it, -ENOTCONN while
 * one is still coming up. */
static void send_both(ch_node *n, void *ud)
{
    int rc = ch_lanes_send(fx.a.l, 2, 0, CH_F_MIG_DATA, "hel", 3, "lo", 2);
    if (rc == 0 && !fx.n2) /* b on another node's reactor: only that one may touch it */
        rc = ch_lanes_send(fx.b.l, 1, 0, CH_F_MIG_DATA, "hello", 5, NULL, 0);
    atomic_store(&fx.step_rc, rc);
}

/* b to a only: a dropped b, not the other way round. */
static void send_b(ch_node *n, void *ud)
{
    atomic_store(&fx.step_rc, ch_lanes_send(fx.b.l, 1, 0, CH_F_MIG_DATA, "hello", 5, NULL, 0));
}

static void reset_a(ch_node *n, void *ud)
{
    ch_lanes_reset(fx.a.l, 2, 0);
    atomic_store(&fx.step_rc, 0);
}

static void drop_b(ch_node *n, void *ud)
{
    ch_lanes_drop_peer(fx.a.l, 2);
    int rc = ch_lanes_send(fx.a.l, 2, 0, CH_F_MIG_DATA, "hello", 5, NULL, 0);
    atomic_store(&fx.step_rc, rc == -ENOENT ? 0 : -EPROTO);
}

static uint8_t intruder_role = CH_ROLE_PEER;

static void intrude(ch_node *n, void *ud)
{
    ch_hello h = hello_of(3);
    h.role = intruder_role;
    ch_transport_cbs cbs = {.on_down = intruder_down};
    char addr[64];
    snprintf(addr, sizeof(addr), "127.0.0.1:%d", ch_lanes_port(fx.b.l));
    int rc = ch_transport_create(ch_reactor_self(), NULL, &h, COOKIE, strlen(COOKIE), 1 << 20, &cbs,
                                 &fx.intruder);
    if (rc == 0) rc = ch_transport_connect(fx.intruder, addr, intruder_role, NULL);
    atomic_store(&fx.step_rc, rc);
}

static void setup_b(ch_node *n, void *ud)
{
    atomic_store(&fx.step_rc, make_end(ch_reactor_self(), &fx.b, 2));
}

/* Queues 32 MiB on a's lane to b: more than the two kernels' buffers hold. */
static void flood(ch_node *n, void *ud)
{
    static uint8_t chunk[1 << 20];
    int rc = 0;
    for (int i = 0; i < 32 && rc == 0; i++)
        rc = ch_lanes_send(fx.a.l, 2, 0, CH_F_MIG_ACK, chunk, sizeof(chunk), NULL, 0);
    atomic_store(&fx.step_rc, rc);
}

/* A stall of b's reactor (a fault, not a synchronisation): it reads nothing meanwhile. */
static void stall_b(ch_node *n, void *ud)
{
    th_sleep_ms(4500);
}

/* ---- the test thread ------------------------------------------------------------------- */

static void run_step(void (*fn)(ch_node *, void *))
{
    atomic_store(&fx.step_rc, 1);
    cr_assert_eq(ch_node_post(fx.n, 0, fn, NULL), 0);
    cr_assert(TH_WAIT(atomic_load(&fx.step_rc) != 1, TH_WAIT_MS));
}

/* Sends both ways until both lanes are up (they come up in the background). */
static void send_when_up(void)
{
    uint64_t deadline = th_now_ms() + TH_WAIT_MS;
    do {
        run_step(send_both);
        if (atomic_load(&fx.step_rc) == 0) return;
        cr_assert_eq(atomic_load(&fx.step_rc), -ENOTCONN, "%s",
                     strerror(-atomic_load(&fx.step_rc)));
        th_poll_pause();
    } while (th_now_ms() < deadline);
    cr_assert_fail("the lanes never came up");
}

static void run_on(ch_node *n, void (*fn)(ch_node *, void *))
{
    atomic_store(&fx.step_rc, 1);
    cr_assert_eq(ch_node_post(n, 0, fn, NULL), 0);
    cr_assert(TH_WAIT(atomic_load(&fx.step_rc) != 1, TH_WAIT_MS));
}

static void up_on(bool two_nodes)
{
    memset((void *)&fx, 0, sizeof(fx));
    fx.n = th_node_new(1);
    if (two_nodes) {
        fx.n2 = th_node_new(1);
        run_on(fx.n2, setup_b);
        cr_assert_eq(atomic_load(&fx.step_rc), 0);
    }
    run_step(setup);
    cr_assert_eq(atomic_load(&fx.step_rc), 0, "setup: %s", strerror(-atomic_load(&fx.step_rc)));
}

static void up(void)
{
    up_on(false);
}

static void down(void)
{
    th_node_free(fx.n); /* the io_uring is gone: the lanes may be freed */
    if (fx.n2) th_node_free(fx.n2);
    ch_lanes_free(fx.a.l);
    ch_lanes_free(fx.b.l);
    ch_transport_free(fx.intruder);
    cr_assert_eq(atomic_load(&fx.a.bad) + atomic_load(&fx.b.bad), 0);
}

Test(lane, frames_go_on_the_lane_each_core_dialled_named_by_their_node)
{
    up();
    send_when_up();
    cr_assert(
        TH_WAIT(atomic_load(&fx.a.frames) == 1 && atomic_load(&fx.b.frames) == 1, TH_WAIT_MS));
    cr_assert_eq(atomic_load(&fx.b.last_from), 1);
    cr_assert_eq(atomic_load(&fx.a.last_from), 2);
    down();
}

Test(lane, a_reset_lane_reports_down_and_is_dialled_again)
{
    up();
    send_when_up();
    run_step(reset_a);
    cr_assert(TH_WAIT(atomic_load(&fx.a.downs) == 1, TH_WAIT_MS), "on_down ran");
    send_when_up(); /* after the retry pause */
    cr_assert(TH_WAIT(atomic_load(&fx.b.frames) == 2, TH_WAIT_MS), "the new lane carries");
    down();
}

Test(lane, a_dropped_peer_lanes_close_without_on_down)
{
    up();
    send_when_up();
    run_step(drop_b);
    cr_assert_eq(atomic_load(&fx.step_rc), 0, "nothing is sent to a dropped peer");
    run_step(send_b);
    cr_assert_eq(atomic_load(&fx.step_rc), 0, "b's lane to a still carries");
    cr_assert(TH_WAIT(atomic_load(&fx.a.frames) == 2, TH_WAIT_MS), "and a takes it");
    cr_assert_eq(atomic_load(&fx.a.downs), 0, "no on_down for a dropped peer's lanes");
    down();
}

Test(lane, a_lane_port_refuses_a_node_connection)
{
    up();
    run_step(intrude);
    cr_assert_eq(atomic_load(&fx.step_rc), 0);
    cr_assert(TH_WAIT(atomic_load(&fx.intruder_downs) == 1, TH_WAIT_MS), "refused");
    cr_assert_eq(atomic_load(&fx.b.frames), 0);
    down();
}

/* Node 3 holds the cookie, but b was never told of its lanes: a member it is not. */
Test(lane, a_lane_port_refuses_a_lane_from_a_node_it_does_not_know)
{
    up();
    intruder_role = CH_ROLE_LANE;
    run_step(intrude);
    cr_assert_eq(atomic_load(&fx.step_rc), 0);
    cr_assert(TH_WAIT(atomic_load(&fx.intruder_downs) == 1, TH_WAIT_MS), "refused");
    cr_assert_eq(atomic_load(&fx.b.frames), 0);
    send_when_up(); /* the lanes of the nodes b knows still come up */
    cr_assert(TH_WAIT(atomic_load(&fx.b.frames) == 1, TH_WAIT_MS));
    down();
}

Test(lane, a_lane_that_stops_moving_is_closed_and_reported)
{
    up_on(true);
    send_when_up();
    cr_assert_eq(ch_node_post(fx.n2, 0, stall_b, NULL), 0);
    run_step(flood);
    cr_assert_eq(atomic_load(&fx.step_rc), 0);
    cr_assert(TH_WAIT(atomic_load(&fx.a.downs) == 1, TH_WAIT_MS), "closed while b stalls");
    down();
}
