/*
 * tests/test_cluster_inproc.c - several nodes of one hub inside the test process, each
 * with its own coordinator and TCP listener on 127.0.0.1 (kernel-chosen ports). Faster to
 * set up than node processes, so the membership, registry, routing, crash and partition
 * logic is exercised here in detail; tests/test_cluster_*.c repeat the essentials with
 * real `corehub node` processes.
 */
#include "inproc_hub.h"
#include "wait.h"

#include <corehub/corehub.h>

#include <errno.h>
#include <stdatomic.h>

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONVERGE_MS 10000

typedef struct opts {
    ch_partition_strategy partition;
    uint32_t quorum;
} opts;

static ch_node_config config(const opts *o)
{
    ch_node_config c;
    ihub_config(&c);
    if (o) {
        c.cluster.partition = o->partition;
        c.cluster.quorum_size = o->quorum;
    }
    return c;
}

static ch_node *node_new(ch_node *seed, const opts *o)
{
    ch_node_config c = config(o);
    ch_node *n;
    int rc = ihub_node_start(&c, seed, &ihub_counter, &n);
    cr_assert_eq(rc, 0, "a node starts: %s", ch_strerror(rc));
    return n;
}

/* Whether every node still there sees `alive` members alive. */
static bool wait_members(ihub *h, size_t alive)
{
    return ihub_wait_all(h->n, h->count, ihub_alive, alive, CONVERGE_MS);
}

/* Whether every registry still there lists `procs` processes. */
static bool wait_listed(ihub *h, size_t procs)
{
    return ihub_wait_all(h->n, h->count, ihub_listed, procs, CONVERGE_MS);
}

static void hub_up(ihub *h, size_t count, const opts *o)
{
    ch_node_config c = config(o);
    int rc = ihub_up(h, count, &c, &ihub_counter);
    cr_assert_eq(rc, 0, "the nodes start: %s", ch_strerror(rc));
    cr_assert(wait_members(h, count), "every node sees %zu members", count);
}

static void start_many(ch_node *n, size_t count, const char *prefix)
{
    int *res = calloc(count, sizeof(int));
    cr_assert_not_null(res);
    int rc = ihub_start_range(n, prefix, count, IHUB_COUNTER, res);
    for (size_t i = 0; rc && i < count; i++)
        cr_assert_eq(res[i], 0, "%s%zu: %s", prefix, i, ch_strerror(res[i]));
    cr_assert_eq(rc, 0, "%s", ch_strerror(rc));
    free(res);
}

Test(cluster_inproc, processes_land_on_ring_owners_and_registries_agree, .timeout = 60)
{
    ihub h;
    hub_up(&h, 3, NULL);
    start_many(h.n[0], 3000, "p");
    cr_assert(wait_listed(&h, 3000), "every registry lists 3000");
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
    ihub_down(&h);
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
    ihub h;
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
        cr_assert(ihub_wait(count_is, &cc, CONVERGE_MS),
                  "%s got every send from every node: %llu (%s)", id, (unsigned long long)cc.got,
                  ch_strerror(cc.rc));
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
    ihub_down(&h);
}

Test(cluster_inproc, lookup_finds_remote_processes, .timeout = 60)
{
    ihub h;
    hub_up(&h, 2, NULL);
    start_many(h.n[0], 200, "r");
    cr_assert(wait_listed(&h, 200));
    for (size_t i = 0; i < 200; i++) {
        char id[32];
        snprintf(id, sizeof(id), "r%zu", i);
        ch_proc_info *info;
        cr_assert_eq(ch_lookup(h.n[1], id, CH_ID_CSTR, &info), 0, "%s", id);
        cr_assert_str_eq(info->type, "counter");
        cr_assert(info->node == ch_node_id(h.n[0]) || info->node == ch_node_id(h.n[1]));
        ch_proc_info_free(info);
    }
    ihub_down(&h);
}

static bool stats_restarted(void *ud)
{
    ihub *h = ud;
    uint64_t total = 0;
    for (size_t i = 0; i < h->count; i++) {
        ch_node_stats s;
        if (h->n[i] && ch_node_stats_get(h->n[i], &s) == 0) total += s.crash_restarts;
    }
    return total > 0;
}

Test(cluster_inproc, a_dead_members_processes_restart_on_the_survivors, .timeout = 60)
{
    ihub h;
    hub_up(&h, 3, NULL);
    start_many(h.n[0], 900, "d");
    cr_assert(wait_listed(&h, 900));
    /* Stopping a node without leaving looks like a crash to the others. */
    ch_node_destroy(h.n[2]);
    h.n[2] = NULL;
    cr_assert(wait_members(&h, 2), "survivors declare it dead");
    cr_assert(ihub_wait(stats_restarted, &h, CONVERGE_MS));
    cr_assert(wait_listed(&h, 900), "every process is back, once");
    for (size_t i = 0; i < 900; i += 7) {
        char id[32];
        snprintf(id, sizeof(id), "d%zu", i);
        uint64_t v;
        size_t len;
        cr_assert_eq(ch_call(h.n[i % 2], id, CH_ID_CSTR, "get", 3, &v, sizeof(v), &len, 5000), 0,
                     "%s", id);
    }
    ihub_down(&h);
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
    ihub h;
    hub_up(&h, 3, &o);
    cr_assert_eq(ch_is_partitioned(h.n[0]), 0);
    ch_node_destroy(h.n[2]);
    h.n[2] = NULL;
    cr_assert(ihub_wait(partitioned, h.n[0], CONVERGE_MS));
    ch_child_spec s = {.id = "late", .id_len = CH_ID_CSTR, .type = IHUB_COUNTER};
    int r;
    cr_assert_eq(ch_start_children(h.n[0], &s, 1, NULL, &r), CH_EPARTITIONED);
    ihub_down(&h);
}

Test(cluster_inproc, majority_quorum_reset_leaves_partition_mode, .timeout = 60)
{
    opts o = {.partition = CH_PARTITION_MAJORITY_QUORUM};
    ihub h;
    hub_up(&h, 2, &o);
    ch_node_destroy(h.n[1]);
    h.n[1] = NULL;
    cr_assert(ihub_wait(partitioned, h.n[0], CONVERGE_MS), "1 of 2 is no majority");
    cr_assert_eq(ch_partition_reset(h.n[0]), 0);
    cr_assert(ihub_wait(not_partitioned, h.n[0], CONVERGE_MS), "the reset forgets the larger hub");
    ihub_down(&h);
}

Test(cluster_inproc, graceful_leave_hands_processes_to_the_others, .timeout = 60)
{
    ihub h;
    hub_up(&h, 3, NULL);
    start_many(h.n[0], 600, "g");
    cr_assert(wait_listed(&h, 600));
    cr_assert_eq(ch_node_leave(h.n[2]), 0);
    ch_node_destroy(h.n[2]);
    h.n[2] = NULL;
    cr_assert(wait_members(&h, 2));
    cr_assert(wait_listed(&h, 600), "every process lives on a survivor");
    ihub_down(&h);
}

/* Starts a process whose ring owner is `n`, and checks that it runs there. */
static void id_owned_by(ihub *h, ch_node *n, char *id, size_t cap)
{
    uint64_t owner = 0;
    for (int i = 0; owner != ch_node_id(n); i++) {
        snprintf(id, cap, "own%d", i);
        cr_assert_eq(ch_node_owner_of(h->n[0], id, CH_ID_CSTR, &owner), 0);
    }
    ch_child_spec s = {.id = id, .id_len = CH_ID_CSTR, .type = IHUB_COUNTER};
    int r;
    cr_assert_eq(ch_start_children(h->n[0], &s, 1, NULL, &r), 0);
    ch_proc_info *info;
    cr_assert_eq(ch_lookup(h->n[0], id, CH_ID_CSTR, &info), 0);
    cr_assert_eq(info->node, ch_node_id(n), "it runs on the owner the ring named");
    ch_proc_info_free(info);
}

Test(cluster_inproc, a_remote_call_times_out_when_the_process_never_answers, .timeout = 60)
{
    ihub h;
    hub_up(&h, 2, NULL);
    char id[32];
    id_owned_by(&h, h.n[1], id, sizeof(id));
    uint64_t v;
    size_t len;
    uint64_t t0 = th_now_ms();
    cr_assert_eq(ch_call(h.n[0], id, CH_ID_CSTR, "stall", 5, &v, sizeof(v), &len, 300), -ETIMEDOUT);
    cr_assert_geq(th_now_ms() - t0, 250, "it waited for its timeout");
    cr_assert_eq(ch_call(h.n[0], id, CH_ID_CSTR, "get", 3, &v, sizeof(v), &len, 5000), 0,
                 "the process still serves");
    ihub_down(&h);
}

Test(cluster_inproc, stops_reach_processes_on_other_nodes, .timeout = 60)
{
    ihub h;
    hub_up(&h, 3, NULL);
    start_many(h.n[0], 300, "s");
    cr_assert(wait_listed(&h, 300));
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
    cr_assert(wait_listed(&h, 0), "every registry forgets them");
    cr_assert_eq(ch_stop_children(h.n[2], ids, NULL, 1, NULL, res), CH_EPARTIAL);
    cr_assert_eq(res[0], CH_ENOPROC);
    ihub_down(&h);
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
    ihub h = {.n = {a, node_new(a, NULL)}, .count = 2};
    cr_assert(wait_members(&h, 2));
    cr_assert_eq(atomic_load(&joins), 1, "one member joined");
    cr_assert_geq(atomic_load(&redistributions), 1, "the ring changed");
    uint64_t epoch = ch_node_epoch(a);
    cr_assert_eq(ch_node_leave(h.n[1]), 0);
    cr_assert(ihub_wait(saw_leave, NULL, CONVERGE_MS), "the leave is seen");
    cr_assert_gt(ch_node_epoch(a), epoch, "a leave is a new epoch");
    ihub_down(&h);
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
    ihub h;
    hub_up(&h, 2, NULL);
    start_many(h.n[0], 400, "ae");
    cr_assert(wait_listed(&h, 400));
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
    cr_assert(ihub_wait(forgotten, &f, CONVERGE_MS));
    cr_assert_eq(f.before, own, "node 1 had node 0's %zu rows", own);
    cr_assert_eq(f.after, 0, "and lost them");
    cr_assert(wait_listed(&h, 400), "the digests differ, the rows come back");
    ihub_down(&h);
}

Test(cluster_inproc, owner_of_names_the_ring_owner_and_refuses_bad_ids, .timeout = 60)
{
    ihub h;
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
    ihub_down(&h);
}
