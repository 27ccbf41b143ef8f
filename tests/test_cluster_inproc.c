/*
 * tests/test_cluster_inproc.c - several nodes of one hub inside the test process, each
 * with its own coordinator and TCP listener on 127.0.0.1 (kernel-chosen ports). Faster to
 * set up than node processes, so the membership, registry, routing, crash and partition
 * logic is exercised here in detail; tests/test_cluster_*.c repeat the essentials with
 * real `corehub node` processes.
 */
#include <corehub/corehub.h>

#include <errno.h>
#include <stdatomic.h>

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char cookie[] = "in-process-test-cookie-0123456789";

static int counter_init(ch_proc *p, const void *arg, size_t len, unsigned flags)
{
    return ch_proc_state_resize(p, 8) ? 0 : -12;
}

static int counter_handle(ch_proc *p, const ch_msg *m)
{
    uint64_t *n = ch_proc_state(p, NULL);
    if (m->kind == CH_MSG_CAST) (*n)++;
    if (m->kind == CH_MSG_CALL && m->len == 5 && memcmp(m->data, "stall", 5) == 0) {
        ch_reply_token t; /* never answered: the caller's timeout must end the call */
        ch_reply_defer(p, m, &t);
        return CH_CONTINUE;
    }
    if (m->kind == CH_MSG_CALL) ch_reply(p, m, n, sizeof(*n));
    return CH_CONTINUE;
}

static const ch_process_type counter = {
    .name = "counter", .init = counter_init, .handle = counter_handle};

typedef struct opts {
    ch_partition_strategy partition;
    uint32_t quorum;
} opts;

static ch_node *node_new(const char *seed, const opts *o)
{
    ch_node_config c;
    ch_node_config_init(&c);
    c.cores = 2;
    c.pin = 0;
    c.cluster.listen = "127.0.0.1:0";
    c.cluster.cookie = cookie;
    c.cluster.cookie_len = sizeof(cookie) - 1;
    /* Fast, but with room for a loaded 2-core machine under ASan: a false death is final. */
    c.cluster.probe_interval_ms = 200;
    c.cluster.probe_timeout_ms = 100;
    c.cluster.suspicion_mult = 5;
    c.cluster.sync_interval_ms = 300;
    if (o) {
        c.cluster.partition = o->partition;
        c.cluster.quorum_size = o->quorum;
    }
    const char *seeds[1] = {seed};
    if (seed) {
        c.cluster.seeds = seeds;
        c.cluster.nseeds = 1;
    }
    ch_node *n;
    cr_assert_eq(ch_node_create(&c, &n), 0);
    cr_assert_eq(ch_node_register_type(n, &counter), 0);
    cr_assert_eq(ch_node_start(n), 0);
    return n;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Polls cond until it holds or timeout_ms passes (the sleep is a poll interval). */
static bool wait_until(bool (*cond)(void *), void *ud, uint64_t timeout_ms)
{
    uint64_t end = now_ms() + timeout_ms;
    while (now_ms() < end) {
        if (cond(ud)) return true;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    return cond(ud);
}

typedef struct hub {
    ch_node *n[4];
    size_t count;
    size_t want; /* members alive expected by each running node */
} hub;

static size_t alive_members(ch_node *n)
{
    ch_member *m;
    size_t k, alive = 0;
    if (ch_members(n, &m, &k) < 0) return 0;
    for (size_t i = 0; i < k; i++)
        alive += m[i].state == CH_MEMBER_ALIVE;
    free(m);
    return alive;
}

static bool all_see_all(void *ud)
{
    hub *h = ud;
    for (size_t i = 0; i < h->count; i++)
        if (h->n[i] && alive_members(h->n[i]) != h->want) return false;
    return true;
}

static void hub_up(hub *h, size_t count, const opts *o)
{
    memset(h, 0, sizeof(*h));
    h->n[0] = node_new(NULL, o);
    char seed[64];
    snprintf(seed, sizeof(seed), "127.0.0.1:%d", ch_node_port(h->n[0]));
    for (size_t i = 1; i < count; i++)
        h->n[i] = node_new(seed, o);
    h->count = h->want = count;
    cr_assert(wait_until(all_see_all, h, 10000), "every node sees %zu members", count);
}

static void hub_down(hub *h)
{
    for (size_t i = h->count; i-- > 0;)
        ch_node_destroy(h->n[i]);
}

static void start_many(ch_node *n, size_t count, const char *prefix)
{
    ch_child_spec *specs = calloc(count, sizeof(*specs));
    char(*ids)[32] = calloc(count, sizeof(*ids));
    int *res = calloc(count, sizeof(int));
    for (size_t i = 0; i < count; i++) {
        snprintf(ids[i], sizeof(ids[i]), "%s%zu", prefix, i);
        specs[i].id = ids[i];
        specs[i].id_len = CH_ID_CSTR;
        specs[i].type = "counter";
    }
    int rc = ch_start_children(n, specs, count, NULL, res);
    for (size_t i = 0; rc && i < count; i++)
        cr_assert_eq(res[i], 0, "%s: %s", ids[i], ch_strerror(res[i]));
    cr_assert_eq(rc, 0, "%s", ch_strerror(rc));
    free(specs);
    free(ids);
    free(res);
}

typedef struct count_check {
    hub *h;
    size_t want;
} count_check;

static bool registries_agree(void *ud)
{
    count_check *c = ud;
    for (size_t i = 0; i < c->h->count; i++) {
        if (!c->h->n[i]) continue;
        ch_proc_list l;
        if (ch_list(c->h->n[i], NULL, &l) < 0) return false;
        size_t k = l.count;
        ch_proc_list_free(&l);
        if (k != c->want) return false;
    }
    return true;
}

Test(cluster_inproc, processes_land_on_ring_owners_and_registries_agree, .timeout = 60)
{
    hub h;
    hub_up(&h, 3, NULL);
    start_many(h.n[0], 3000, "p");
    count_check cc = {&h, 3000};
    cr_assert(wait_until(registries_agree, &cc, 10000), "every registry lists 3000");
    size_t local_total = 0;
    for (size_t i = 0; i < 3; i++) {
        ch_proc_list l;
        cr_assert_eq(ch_list_local(h.n[i], NULL, &l), 0);
        cr_assert_gt(l.count, 500, "node %zu owns a fair share", i);
        for (size_t j = 0; j < l.count; j++)
            cr_assert_eq(l.items[j]->node, ch_node_id(h.n[i]));
        local_total += l.count;
        ch_proc_list_free(&l);
    }
    cr_assert_eq(local_total, 3000, "each process lives on exactly one node");
    hub_down(&h);
}

typedef struct call_check {
    ch_node *n;
    const char *id;
    uint64_t want, got;
    int rc;
} call_check;

static bool count_is(void *ud)
{
    call_check *c = ud;
    size_t len;
    c->rc = ch_call(c->n, c->id, CH_ID_CSTR, "get", 3, &c->got, sizeof(c->got), &len, 5000);
    return c->rc == 0 && c->got == c->want;
}

Test(cluster_inproc, sends_and_calls_reach_processes_on_every_node, .timeout = 60)
{
    hub h;
    hub_up(&h, 3, NULL);
    start_many(h.n[1], 600, "q");
    char id[32];
    for (size_t i = 0; i < 600; i++) {
        snprintf(id, sizeof(id), "q%zu", i);
        for (size_t k = 0; k < 3; k++) {
            int rc = ch_send(h.n[k], id, CH_ID_CSTR, "x", 1);
            cr_assert_eq(rc, 0, "%s via node %zu: %s", id, k, ch_strerror(rc));
        }
    }
    /* Sends through three nodes take three paths: no order between them, so poll. */
    for (size_t i = 0; i < 600; i++) {
        snprintf(id, sizeof(id), "q%zu", i);
        call_check cc = {.n = h.n[i % 3], .id = id, .want = 3};
        cr_assert(wait_until(count_is, &cc, 10000), "%s got every send from every node: %llu (%s)",
                  id, (unsigned long long)cc.got, ch_strerror(cc.rc));
    }
    uint64_t v;
    size_t len;
    cr_assert_eq(ch_call(h.n[0], "nobody", CH_ID_CSTR, "get", 3, &v, sizeof(v), &len, 2000),
                 CH_ENOPROC);
    for (size_t k = 0; k < 3; k++) { /* every frame between nodes was sealed and opened */
        ch_node_stats s;
        cr_assert_eq(ch_node_stats_get(h.n[k], &s), 0);
        cr_assert_eq(s.bad_frames, 0, "node %zu", k);
    }
    hub_down(&h);
}

Test(cluster_inproc, lookup_finds_remote_processes, .timeout = 60)
{
    hub h;
    hub_up(&h, 2, NULL);
    start_many(h.n[0], 200, "r");
    count_check cc = {&h, 200};
    cr_assert(wait_until(registries_agree, &cc, 10000));
    for (size_t i = 0; i < 200; i++) {
        char id[32];
        snprintf(id, sizeof(id), "r%zu", i);
        ch_proc_info *info;
        cr_assert_eq(ch_lookup(h.n[1], id, CH_ID_CSTR, &info), 0, "%s", id);
        cr_assert_str_eq(info->type, "counter");
        cr_assert(info->node == ch_node_id(h.n[0]) || info->node == ch_node_id(h.n[1]));
        ch_proc_info_free(info);
    }
    hub_down(&h);
}

static bool stats_restarted(void *ud)
{
    hub *h = ud;
    uint64_t total = 0;
    for (size_t i = 0; i < h->count; i++) {
        ch_node_stats s;
        if (h->n[i] && ch_node_stats_get(h->n[i], &s) == 0) total += s.crash_restarts;
    }
    return total > 0;
}

Test(cluster_inproc, a_dead_members_processes_restart_on_the_survivors, .timeout = 60)
{
    hub h;
    hub_up(&h, 3, NULL);
    start_many(h.n[0], 900, "d");
    count_check cc = {&h, 900};
    cr_assert(wait_until(registries_agree, &cc, 10000));
    /* Stopping a node without leaving looks like a crash to the others. */
    ch_node_destroy(h.n[2]);
    h.n[2] = NULL;
    h.want = 2;
    cr_assert(wait_until(all_see_all, &h, 10000), "survivors declare it dead");
    cr_assert(wait_until(stats_restarted, &h, 10000));
    cr_assert(wait_until(registries_agree, &cc, 10000), "every process is back, once");
    for (size_t i = 0; i < 900; i += 7) {
        char id[32];
        snprintf(id, sizeof(id), "d%zu", i);
        uint64_t v;
        size_t len;
        cr_assert_eq(ch_call(h.n[i % 2], id, CH_ID_CSTR, "get", 3, &v, sizeof(v), &len, 5000), 0,
                     "%s", id);
    }
    hub_down(&h);
}

static bool partitioned(void *ud)
{
    return ch_is_partitioned(ud) == 1;
}

static bool not_partitioned(void *ud)
{
    return ch_is_partitioned(ud) == 0;
}

Test(cluster_inproc, static_quorum_enters_partition_mode_and_refuses_starts, .timeout = 60)
{
    opts o = {.partition = CH_PARTITION_STATIC_QUORUM, .quorum = 3};
    hub h;
    hub_up(&h, 3, &o);
    cr_assert_eq(ch_is_partitioned(h.n[0]), 0);
    ch_node_destroy(h.n[2]);
    h.n[2] = NULL;
    cr_assert(wait_until(partitioned, h.n[0], 10000));
    ch_child_spec s = {.id = "late", .id_len = CH_ID_CSTR, .type = "counter"};
    int r;
    cr_assert_eq(ch_start_children(h.n[0], &s, 1, NULL, &r), CH_EPARTITIONED);
    hub_down(&h);
}

Test(cluster_inproc, majority_quorum_reset_leaves_partition_mode, .timeout = 60)
{
    opts o = {.partition = CH_PARTITION_MAJORITY_QUORUM};
    hub h;
    hub_up(&h, 2, &o);
    ch_node_destroy(h.n[1]);
    h.n[1] = NULL;
    cr_assert(wait_until(partitioned, h.n[0], 10000), "1 of 2 is no majority");
    cr_assert_eq(ch_partition_reset(h.n[0]), 0);
    cr_assert(wait_until(not_partitioned, h.n[0], 10000), "the reset forgets the larger hub");
    hub_down(&h);
}

Test(cluster_inproc, graceful_leave_hands_processes_to_the_others, .timeout = 60)
{
    hub h;
    hub_up(&h, 3, NULL);
    start_many(h.n[0], 600, "g");
    count_check cc = {&h, 600};
    cr_assert(wait_until(registries_agree, &cc, 10000));
    cr_assert_eq(ch_node_leave(h.n[2]), 0);
    ch_node_destroy(h.n[2]);
    h.n[2] = NULL;
    h.want = 2;
    cr_assert(wait_until(all_see_all, &h, 10000));
    cr_assert(wait_until(registries_agree, &cc, 10000), "every process lives on a survivor");
    hub_down(&h);
}

/* Starts a process whose ring owner is `n`, and checks that it runs there. */
static void id_owned_by(hub *h, ch_node *n, char *id, size_t cap)
{
    uint64_t owner = 0;
    for (int i = 0; owner != ch_node_id(n); i++) {
        snprintf(id, cap, "own%d", i);
        cr_assert_eq(ch_node_owner_of(h->n[0], id, CH_ID_CSTR, &owner), 0);
    }
    ch_child_spec s = {.id = id, .id_len = CH_ID_CSTR, .type = "counter"};
    int r;
    cr_assert_eq(ch_start_children(h->n[0], &s, 1, NULL, &r), 0);
    ch_proc_info *info;
    cr_assert_eq(ch_lookup(h->n[0], id, CH_ID_CSTR, &info), 0);
    cr_assert_eq(info->node, ch_node_id(n), "it runs on the owner the ring named");
    ch_proc_info_free(info);
}

Test(cluster_inproc, a_remote_call_times_out_when_the_process_never_answers, .timeout = 60)
{
    hub h;
    hub_up(&h, 2, NULL);
    char id[32];
    id_owned_by(&h, h.n[1], id, sizeof(id));
    uint64_t v;
    size_t len;
    uint64_t t0 = now_ms();
    cr_assert_eq(ch_call(h.n[0], id, CH_ID_CSTR, "stall", 5, &v, sizeof(v), &len, 300), -ETIMEDOUT);
    cr_assert_geq(now_ms() - t0, 250, "it waited for its timeout");
    cr_assert_eq(ch_call(h.n[0], id, CH_ID_CSTR, "get", 3, &v, sizeof(v), &len, 5000), 0,
                 "the process still serves");
    hub_down(&h);
}

Test(cluster_inproc, stops_reach_processes_on_other_nodes, .timeout = 60)
{
    hub h;
    hub_up(&h, 3, NULL);
    start_many(h.n[0], 300, "s");
    count_check cc = {&h, 300};
    cr_assert(wait_until(registries_agree, &cc, 10000));
    const char *ids[300];
    char buf[300][16];
    for (int i = 0; i < 300; i++) {
        snprintf(buf[i], sizeof(buf[i]), "s%d", i);
        ids[i] = buf[i];
    }
    int res[300];
    cr_assert_eq(ch_stop_children(h.n[1], ids, NULL, 300, NULL, res), 0);
    for (int i = 0; i < 300; i++)
        cr_assert_eq(res[i], 0, "%s: %s", ids[i], ch_strerror(res[i]));
    cc.want = 0;
    cr_assert(wait_until(registries_agree, &cc, 10000), "every registry forgets them");
    cr_assert_eq(ch_stop_children(h.n[2], ids, NULL, 1, NULL, res), CH_EPARTIAL);
    cr_assert_eq(res[0], CH_ENOPROC);
    hub_down(&h);
}

static _Atomic int joins, leaves, redistributions;

static void on_cluster_hook(void *ud, ch_hook_event *ev)
{
    (void)ud;
    if (ev->point == CH_HOOK_POST_CLUSTER_JOIN) atomic_fetch_add(&joins, 1);
    if (ev->point == CH_HOOK_POST_CLUSTER_LEAVE) atomic_fetch_add(&leaves, 1);
    if (ev->point == CH_HOOK_POST_REDISTRIBUTION) atomic_fetch_add(&redistributions, 1);
}

static bool saw_leave(void *ud)
{
    (void)ud;
    return atomic_load(&leaves) >= 1;
}

Test(cluster_inproc, cluster_hooks_fire_on_join_and_leave, .timeout = 60)
{
    ch_node *a = node_new(NULL, NULL);
    cr_assert_eq(ch_hook_register(a, CH_HOOK_POST_CLUSTER_JOIN, "j", 0, on_cluster_hook, NULL), 0);
    cr_assert_eq(ch_hook_register(a, CH_HOOK_POST_CLUSTER_LEAVE, "l", 0, on_cluster_hook, NULL), 0);
    cr_assert_eq(ch_hook_register(a, CH_HOOK_POST_REDISTRIBUTION, "r", 0, on_cluster_hook, NULL),
                 0);
    char seed[64];
    snprintf(seed, sizeof(seed), "127.0.0.1:%d", ch_node_port(a));
    hub h = {.n = {a, node_new(seed, NULL)}, .count = 2, .want = 2};
    cr_assert(wait_until(all_see_all, &h, 10000));
    cr_assert_eq(atomic_load(&joins), 1, "one member joined");
    cr_assert_geq(atomic_load(&redistributions), 1, "the ring changed");
    uint64_t epoch = ch_node_epoch(a);
    cr_assert_eq(ch_node_leave(h.n[1]), 0);
    cr_assert(wait_until(saw_leave, NULL, 10000), "the leave is seen");
    cr_assert_gt(ch_node_epoch(a), epoch, "a leave is a new epoch");
    hub_down(&h);
}

/* ---- anti-entropy: a replica that lost rows gets them back from their owner ---------- */

#include "net/cluster/coord_int.h"

typedef struct forget {
    ch_node *owner;
    size_t before, after; /* the owner's rows in the replica around the drop */
    _Atomic int done;
} forget;

static size_t rows_of(ch_coord *c, uint64_t owner)
{
    size_t k = 0;
    for (size_t i = 0; i < c->reg.cap; i++)
        k += c->reg.slots[i] && c->reg.slots[i]->node == owner;
    return k;
}

static void forget_rows(ch_node *n, void *ud)
{
    forget *f = ud;
    uint64_t owner = ch_node_id(f->owner);
    f->before = rows_of(n->coord, owner);
    coord_drop_rows_of(n->coord, owner, false);
    f->after = rows_of(n->coord, owner);
    atomic_store(&f->done, 1);
}

static bool forgotten(void *ud)
{
    return atomic_load(&((forget *)ud)->done) == 1;
}

Test(cluster_inproc, anti_entropy_repairs_a_replica_that_lost_rows, .timeout = 60)
{
    hub h;
    hub_up(&h, 2, NULL);
    start_many(h.n[0], 400, "ae");
    count_check cc = {&h, 400};
    cr_assert(wait_until(registries_agree, &cc, 10000));
    size_t own;
    ch_proc_list l;
    cr_assert_eq(ch_list_local(h.n[0], NULL, &l), 0);
    own = l.count;
    ch_proc_list_free(&l);
    cr_assert_gt(own, 0);
    /* Make node 1 forget node 0's rows, on its coordinator thread (its only writer). */
    forget f = {.owner = h.n[0]};
    ch_post post = {.fn = forget_rows, .ud = &f};
    ch_rec rec = {.op = CH_OP_POST, .len = sizeof(post)};
    cr_assert_eq(ch_reactor_post(h.n[1], h.n[1]->cores, &rec, NULL, &post, false), 0);
    cr_assert(wait_until(forgotten, &f, 10000));
    cr_assert_eq(f.before, own, "node 1 had node 0's %zu rows", own);
    cr_assert_eq(f.after, 0, "and lost them");
    cr_assert(wait_until(registries_agree, &cc, 10000), "the digests differ, the rows come back");
    hub_down(&h);
}

Test(cluster_inproc, owner_of_names_the_ring_owner_and_refuses_bad_ids, .timeout = 60)
{
    hub h;
    hub_up(&h, 3, NULL);
    uint64_t seen[3] = {0}, owner;
    char id[32];
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof(id), "o%d", i);
        uint64_t a, b;
        cr_assert_eq(ch_node_owner_of(h.n[0], id, CH_ID_CSTR, &a), 0);
        cr_assert_eq(ch_node_owner_of(h.n[2], id, CH_ID_CSTR, &b), 0);
        cr_assert_eq(a, b, "%s: every node computes the same owner", id);
        for (int k = 0; k < 3; k++)
            if (a == ch_node_id(h.n[k])) seen[k]++;
    }
    for (int k = 0; k < 3; k++)
        cr_assert_gt(seen[k], 0, "node %d owns some ids", k);
    cr_assert_eq(ch_node_owner_of(h.n[0], "", CH_ID_CSTR, &owner), CH_EBADID);
    hub_down(&h);
}
