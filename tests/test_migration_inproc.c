/*
 * tests/test_migration_inproc.c - migrations between nodes of one hub inside the test
 * process (each node with its own coordinator and listener on 127.0.0.1): HotSwap with
 * handover on a join and on a graceful leave, with and without senders busy during the
 * move; ColdSwap. tests/test_migration.c repeats the essentials with node processes.
 */
#include "inproc_hub.h"
#include "wait.h"

#include <corehub/corehub.h>

#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* State: u64 value, u64 casts seen in order, u64 order violations, u64 last seq. */
typedef struct cstate {
    uint64_t value, casts, violations, last;
} cstate;

static int c_init(ch_proc *p, const void *arg, size_t len, unsigned flags)
{
    (void)flags;
    cstate *s = ch_proc_state_resize(p, sizeof(*s));
    if (!s) return -ENOMEM;
    if (len == 8) memcpy(&s->value, arg, 8);
    return 0;
}

static int c_handle(ch_proc *p, const ch_msg *m)
{
    cstate *s = ch_proc_state(p, NULL);
    if (m->kind == CH_MSG_CAST && m->len == 8) { /* a sequence number from the sender */
        uint64_t seq;
        memcpy(&seq, m->data, 8);
        s->violations += seq != s->last + 1;
        s->last = seq;
        s->casts++;
    }
    if (m->kind == CH_MSG_CALL) ch_reply(p, m, s, sizeof(*s));
    return CH_CONTINUE;
}

static const ch_process_type ctype = {.name = "c", .init = c_init, .handle = c_handle};

/* A node of the hub of `seed` (NULL: the first), moving processes with strategy st. */
static ch_node *node_new(ch_node *seed, ch_migration_strategy st, int handover)
{
    ch_node_config c;
    ihub_config(&c);
    c.migration.strategy = st;
    c.migration.handover = handover;
    c.migration.batch_bytes = 64 * 1024;
    ch_node *n;
    int rc = ihub_node_start(&c, seed, &ctype, &n);
    cr_assert_eq(rc, 0, "a node starts: %s", ch_strerror(rc));
    return n;
}

#define NPROC 2000

/* Every node sees the others, nothing is migrating, and every process is on its owner. */
static bool settled(void *ud)
{
    ihub *h = ud;
    for (size_t i = 0; i < h->count; i++) {
        ch_node_stats s;
        if (ihub_alive(h->n[i]) != h->count || ch_node_stats_get(h->n[i], &s) < 0 || s.migrating)
            return false;
    }
    for (int i = 0; i < NPROC; i++) {
        char id[32];
        snprintf(id, sizeof(id), "c%d", i);
        uint64_t owner;
        ch_proc_info *info;
        if (ch_node_owner_of(h->n[0], id, CH_ID_CSTR, &owner) < 0) return false;
        if (ch_lookup(h->n[0], id, CH_ID_CSTR, &info) < 0) return false;
        bool ok = info->node == owner;
        ch_proc_info_free(info);
        if (!ok) return false;
    }
    return true;
}

static void start_all(ch_node *n)
{
    ch_child_spec *specs = calloc(NPROC, sizeof(*specs));
    char(*ids)[32] = calloc(NPROC, 32);
    uint64_t *vals = calloc(NPROC, 8);
    int *res = calloc(NPROC, sizeof(int));
    cr_assert(specs && ids && vals && res);
    for (int i = 0; i < NPROC; i++) {
        snprintf(ids[i], 32, "c%d", i);
        vals[i] = 1000 + (uint64_t)i;
        specs[i] = (ch_child_spec){
            .id = ids[i], .id_len = CH_ID_CSTR, .type = "c", .arg = &vals[i], .arg_len = 8};
    }
    ch_batch_opts o = {.timeout_ms = 20000};
    cr_assert_eq(ch_start_children(n, specs, NPROC, &o, res), 0);
    free(specs);
    free(ids);
    free(vals);
    free(res);
}

/* Every process holds its value (1000 + i: its init argument, so a ColdSwap move keeps
 * it too) and `casts` in-order casts; after a ColdSwap move, 0 casts (state reset). */
static void check_all(ch_node *n, bool coldswap, uint64_t casts)
{
    int reset = 0;
    for (int i = 0; i < NPROC; i++) {
        char id[32];
        snprintf(id, sizeof(id), "c%d", i);
        cstate s;
        size_t len;
        int rc = ch_call(n, id, CH_ID_CSTR, "get", 3, &s, sizeof(s), &len, 5000);
        cr_assert_eq(rc, 0, "call %s: %s", id, ch_strerror(rc));
        cr_assert_eq(len, sizeof(s));
        cr_assert_eq(s.value, 1000 + (uint64_t)i, "%s holds %llu", id, (unsigned long long)s.value);
        cr_assert_eq(s.violations, 0, "%s: %llu out of order", id,
                     (unsigned long long)s.violations);
        if (coldswap && s.casts == 0) {
            reset++;
            continue;
        }
        cr_assert_eq(s.casts, casts, "%s saw %llu casts, not %llu", id, (unsigned long long)s.casts,
                     (unsigned long long)casts);
    }
    if (coldswap) cr_assert_gt(reset, NPROC / 4, "only %d processes were reset", reset);
}

typedef struct sender {
    ch_node *n;
    uint64_t rounds;
    _Atomic int stop;
} sender;

/* One sender: rounds of one cast to every process, sequence numbers 1..rounds. */
static void *send_loop(void *arg)
{
    sender *s = arg;
    for (uint64_t r = 1; r <= s->rounds; r++) {
        for (int i = 0; i < NPROC; i++) {
            char id[32];
            snprintf(id, sizeof(id), "c%d", i);
            int rc;
            while ((rc = ch_send(s->n, id, CH_ID_CSTR, &r, 8)) == -EAGAIN)
                th_pause_us(100);
            if (rc != 0) {
                fprintf(stderr, "send %s: %s\n", id, ch_strerror(rc));
                return (void *)1;
            }
        }
    }
    return NULL;
}

static bool sent_all_landed(void *ud)
{
    /* every process saw every cast: checked by polling one sample process per core */
    ihub *h = ud;
    for (int i = 0; i < NPROC; i += 97) {
        char id[32];
        snprintf(id, sizeof(id), "c%d", i);
        cstate s;
        size_t len;
        if (ch_call(h->n[0], id, CH_ID_CSTR, "get", 3, &s, sizeof(s), &len, 5000) != 0)
            return false;
        if (s.casts != 30) return false;
    }
    return true;
}

Test(migration_inproc, hotswap_join_then_leave_keeps_every_state, .timeout = 120)
{
    ihub h = {.count = 1};
    h.n[0] = node_new(NULL, CH_MIGRATE_HOTSWAP, 1);
    start_all(h.n[0]);
    h.n[1] = node_new(h.n[0], CH_MIGRATE_HOTSWAP, 1);
    h.count = 2;
    cr_assert(wait_until(settled, &h, 30000), "the join did not settle");
    ch_node_stats s0, s1;
    ch_node_stats_get(h.n[0], &s0);
    ch_node_stats_get(h.n[1], &s1);
    cr_assert_gt(s1.migrated_in, NPROC / 4);
    cr_assert_eq(s0.migrated_out, s1.migrated_in);
    cr_assert_eq(s0.processes + s1.processes, NPROC);
    cr_assert_gt(s0.handover_bytes_raw, 0);
    check_all(h.n[0], false, 0);

    cr_assert_eq(ch_node_leave(h.n[0]), 0);
    ch_node_destroy(h.n[0]);
    h.n[0] = h.n[1];
    h.count = 1;
    cr_assert(wait_until(settled, &h, 30000), "the leave did not settle");
    ch_node_stats_get(h.n[0], &s1);
    cr_assert_eq(s1.processes, NPROC);
    check_all(h.n[0], false, 0);
    ch_node_destroy(h.n[0]);
}

Test(migration_inproc, senders_during_join_lose_and_reorder_nothing, .timeout = 120)
{
    ihub h = {.count = 1};
    h.n[0] = node_new(NULL, CH_MIGRATE_HOTSWAP, 1);
    start_all(h.n[0]);
    sender s = {.n = h.n[0], .rounds = 30};
    pthread_t t;
    pthread_create(&t, NULL, send_loop, &s);
    h.n[1] = node_new(h.n[0], CH_MIGRATE_HOTSWAP, 1);
    h.count = 2;
    void *ret;
    pthread_join(t, &ret);
    cr_assert_null(ret);
    cr_assert(wait_until(settled, &h, 30000), "the join did not settle");
    cr_assert(wait_until(sent_all_landed, &h, 10000));
    check_all(h.n[1], false, 30);
    ch_node_destroy(h.n[1]);
    ch_node_destroy(h.n[0]);
}

Test(migration_inproc, coldswap_restarts_fresh_on_the_new_owner, .timeout = 120)
{
    ihub h = {.count = 1};
    h.n[0] = node_new(NULL, CH_MIGRATE_COLDSWAP, 0);
    start_all(h.n[0]);
    for (int i = 0; i < NPROC; i++) {
        char id[32];
        uint64_t one = 1;
        snprintf(id, sizeof(id), "c%d", i);
        cr_assert_eq(ch_send(h.n[0], id, CH_ID_CSTR, &one, 8), 0);
    }
    h.n[1] = node_new(h.n[0], CH_MIGRATE_COLDSWAP, 0);
    h.count = 2;
    cr_assert(wait_until(settled, &h, 30000), "the join did not settle");
    check_all(h.n[0], true, 1);
    ch_node_destroy(h.n[1]);
    ch_node_destroy(h.n[0]);
}
