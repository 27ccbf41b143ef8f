/*
 * tests/test_node.c - node lifecycle, type registration, placement, posts, stats.
 */
#include "helpers.h"

#include <pthread.h>
#include <unistd.h>
#include <xxhash.h>

TestSuite(node, .timeout = 30);

Test(node, config_init_sets_the_documented_defaults)
{
    ch_node_config cfg;
    memset(&cfg, 0xAB, sizeof(cfg));
    ch_node_config_init(&cfg);
    cr_assert_not_null(cfg.name);
    cr_assert_str_eq(cfg.name, "node");
    cr_assert_eq(cfg.cores, (unsigned)sysconf(_SC_NPROCESSORS_ONLN));
    cr_assert_eq(cfg.pin, 1);
    cr_assert_eq(cfg.ring_bytes, 256u * 1024u);
    cr_assert_eq(cfg.inbox_bytes, 8u * 1024u * 1024u);
    cr_assert_eq(cfg.max_message, 1024u * 1024u);
    cr_assert_eq(cfg.spin_us, 50);
    cr_assert_eq(cfg.batch, 256);
    cr_assert_eq(cfg.restart_intensity, 100);
    cr_assert_eq(cfg.restart_period_ms, 4000);
    cr_assert_eq(cfg.shutdown_ms, 5000);
    cr_assert_eq(cfg.call_timeout_ms, 5000);
    cr_assert_eq(cfg.start_timeout_ms, 5000);
}

Test(node, create_start_stop_destroy_runs_a_node_that_serves)
{
    ch_node_config cfg = th_config(2);
    ch_node *n = th_node_create(&cfg);
    cr_assert_eq(ch_node_cores(n), 2);
    th_node_start(n);
    th_start(n, "p", CH_PERMANENT, NULL);
    th_assert_serves(n, "p");
    cr_assert_eq(ch_node_stop(n), 0);
    ch_node_destroy(n);
}

Test(node, destroy_frees_a_node_that_never_started)
{
    ch_node_config cfg = th_config(2);
    ch_node *n = th_node_create(&cfg);
    ch_node_destroy(n);
}

Test(node, destroy_stops_a_running_node)
{
    ch_node *n = th_node_new(2);
    th_start(n, "p", CH_PERMANENT, NULL);
    ch_node_destroy(n);
    cr_assert_eq(atomic_load(&th.terminates[CH_REASON_SHUTDOWN]), 1,
                 "destroy terminated the process");
}

Test(node, stop_is_idempotent)
{
    ch_node *n = th_node_new(2);
    cr_assert_eq(ch_node_stop(n), 0);
    cr_assert_eq(ch_node_stop(n), 0);
    cr_assert_eq(ch_send(n, "p", CH_ID_CSTR, "x", 1), CH_ESTOPPED);
    ch_node_destroy(n);
}

static void *stop_thread(void *arg)
{
    return (void *)(intptr_t)ch_node_stop(arg);
}

Test(node, concurrent_stops_all_return_and_terminate_each_process_once)
{
    ch_node *n = th_node_new(2);
    for (int i = 0; i < 50; i++) {
        char id[8];
        snprintf(id, sizeof(id), "c%d", i);
        th_start(n, id, CH_PERMANENT, NULL);
    }
    pthread_t t[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_create(&t[i], NULL, stop_thread, n), 0);
    int rc = ch_node_stop(n);
    for (int i = 0; i < 3; i++) {
        void *ret;
        pthread_join(t[i], &ret);
        cr_assert_eq((int)(intptr_t)ret, 0);
    }
    cr_assert_eq(rc, 0);
    cr_assert_eq(atomic_load(&th.terminates[CH_REASON_SHUTDOWN]), 50);
    ch_node_destroy(n);
}

Test(node, two_nodes_run_side_by_side_in_one_process)
{
    ch_node *a = th_node_new(2);
    ch_node *b = th_node_new(1);
    th_start(a, "same", CH_PERMANENT, "on a");
    th_start(b, "same", CH_PERMANENT, "on b");
    char buf[8];
    size_t len;
    cr_assert_eq(th_call(a, "same", "s", buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, 4);
    cr_assert_arr_eq(buf, "on a", 4);
    cr_assert_eq(th_call(b, "same", "s", buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, 4);
    cr_assert_arr_eq(buf, "on b", 4);
    th_node_free(a);
    th_assert_serves(b, "same");
    th_node_free(b);
}

Test(node, register_type_after_start_returns_ebusy)
{
    ch_node *n = th_node_new(2);
    ch_process_type t = {.name = "late"};
    cr_assert_eq(ch_node_register_type(n, &t), -EBUSY);
    ch_child_spec s = th_spec("p", "late");
    int res = 0;
    ch_batch_opts o = {.timeout_ms = TH_WAIT_MS};
    ch_start_children(n, &s, 1, &o, &res);
    cr_assert_eq(res, CH_EUNKNOWN_TYPE, "a refused type is not registered");
    th_node_free(n);
}

Test(node, register_duplicate_type_returns_eexist)
{
    ch_node_config cfg = th_config(2);
    ch_node *n = th_node_create(&cfg);
    ch_process_type t = {.name = TH_TYPE};
    cr_assert_eq(ch_node_register_type(n, &t), -EEXIST);
    ch_process_type other = {.name = "other"};
    cr_assert_eq(ch_node_register_type(n, &other), 0);
    cr_assert_eq(ch_node_register_type(n, &other), -EEXIST);
    th_node_start(n);
    /* The first registration of "tp" is the one in force. */
    th_start(n, "p", CH_PERMANENT, "arg");
    char buf[8];
    size_t len;
    cr_assert_eq(th_call(n, "p", "s", buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, 3);
    th_node_free(n);
}

Test(node, register_type_with_a_bad_name_returns_einval)
{
    ch_node_config cfg = th_config(1);
    ch_node *n = th_node_create(&cfg);
    ch_process_type t = {.name = NULL};
    cr_assert_eq(ch_node_register_type(n, &t), -EINVAL);
    t.name = "";
    cr_assert_eq(ch_node_register_type(n, &t), -EINVAL);
    char longname[CH_TYPE_NAME_MAX + 2];
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    t.name = longname;
    cr_assert_eq(ch_node_register_type(n, &t), -EINVAL, "%d bytes is too long",
                 CH_TYPE_NAME_MAX + 1);
    longname[CH_TYPE_NAME_MAX] = '\0';
    cr_assert_eq(ch_node_register_type(n, &t), 0, "%d bytes is fine", CH_TYPE_NAME_MAX);
    ch_node_destroy(n);
}

Test(node, register_type_copies_the_struct_and_its_name)
{
    ch_node_config cfg = th_config(2);
    ch_node *n = NULL;
    cr_assert_eq(ch_node_create(&cfg, &n), 0);
    char name[8] = "copied";
    ch_process_type t = th_tp_type();
    t.name = name;
    cr_assert_eq(ch_node_register_type(n, &t), 0);
    memset(name, 'X', sizeof(name) - 1);
    memset(&t, 0, sizeof(t));
    th_node_start(n);
    ch_child_spec s = th_spec("p", "copied");
    th_start_spec(n, &s);
    th_assert_serves(n, "p");
    th_node_free(n);
}

Test(node, core_of_is_xxh3_of_the_id_modulo_cores)
{
    for (unsigned cores = 1; cores <= 4; cores++) {
        ch_node *n = th_node_new(cores);
        cr_assert_eq(ch_node_cores(n), cores);
        for (unsigned k = 0; k < 1000; k++) {
            char id[32];
            int len = snprintf(id, sizeof(id), "proc-%u", k * 7919u);
            int want = (int)(XXH3_64bits(id, (size_t)len) % cores);
            cr_assert_eq(ch_node_core_of(n, id, (size_t)len), want, "%s on %u cores", id, cores);
            cr_assert_eq(ch_node_core_of(n, id, CH_ID_CSTR), want, "NUL-terminated %s", id);
        }
        /* An id with an embedded NUL hashes all its bytes. */
        const char odd[] = {'a', '\0', 'b'};
        cr_assert_eq(ch_node_core_of(n, odd, 3), (int)(XXH3_64bits(odd, 3) % cores));
        th_node_free(n);
    }
}

Test(node, processes_live_on_the_core_core_of_names)
{
    ch_node *n = th_node_new(4); /* more cores than CPUs */
    for (unsigned k = 0; k < 64; k++) {
        char id[16];
        snprintf(id, sizeof(id), "c%u", k);
        th_start(n, id, CH_PERMANENT, NULL);
        int where[2] = {-7, -7};
        size_t len = 0;
        cr_assert_eq(th_call(n, id, "k", where, sizeof(where), &len), 0);
        cr_assert_eq(len, sizeof(where));
        cr_assert_eq(where[0], ch_node_core_of(n, id, CH_ID_CSTR), "ch_proc_core of %s", id);
        cr_assert_eq(where[1], where[0], "%s's callbacks run on its core's reactor", id);
    }
    th_node_free(n);
}

/* --- ch_node_post ------------------------------------------------------------------------ */

typedef struct post_probe {
    ch_node *node;
    ch_node *other; /* a second node: its current_core must be -1 on our reactors */
    atomic_int seen_core;
    atomic_int seen_other;
    atomic_int done;
} post_probe;

static void post_record_core(ch_node *n, void *ud)
{
    post_probe *pp = ud;
    th_check(n == pp->node);
    atomic_store(&pp->seen_core, ch_node_current_core(n));
    atomic_store(&pp->seen_other, pp->other ? ch_node_current_core(pp->other) : -1);
    atomic_store(&pp->done, 1);
}

Test(node, post_runs_the_function_on_the_requested_core)
{
    ch_node *n = th_node_new(4);
    ch_node *other = th_node_new(2);
    cr_assert_eq(ch_node_current_core(n), -1, "the test thread is not a reactor");
    static post_probe probes[4];
    for (unsigned c = 0; c < 4; c++) {
        probes[c].node = n;
        probes[c].other = other;
        atomic_store(&probes[c].seen_core, -2);
        atomic_store(&probes[c].seen_other, -2);
        cr_assert_eq(ch_node_post(n, c, post_record_core, &probes[c]), 0);
    }
    for (unsigned c = 0; c < 4; c++) {
        cr_assert(TH_WAIT(atomic_load(&probes[c].done), TH_WAIT_MS), "post to core %u ran", c);
        cr_assert_eq(atomic_load(&probes[c].seen_core), (int)c);
        cr_assert_eq(atomic_load(&probes[c].seen_other), -1,
                     "another node's reactor is not one of ours");
    }
    th_assert_no_bad();
    th_node_free(other);
    th_node_free(n);
}

static atomic_long post_last;
static atomic_long post_count;
static atomic_int post_out_of_order;

static void post_in_order(ch_node *n, void *ud)
{
    long v = (long)(intptr_t)ud;
    if (v != atomic_load(&post_last) + 1) atomic_fetch_add(&post_out_of_order, 1);
    atomic_store(&post_last, v);
    atomic_fetch_add(&post_count, 1);
}

Test(node, posts_from_one_thread_run_in_the_order_posted)
{
    ch_node *n = th_node_new(2);
    const long total = 20000;
    for (long v = 1; v <= total; v++) {
        int rc;
        const uint64_t deadline = th_now_ms() + TH_WAIT_MS;
        while ((rc = ch_node_post(n, 1, post_in_order, (void *)(intptr_t)v)) == -EAGAIN &&
               th_now_ms() < deadline)
            th_poll_pause();
        cr_assert_eq(rc, 0, "post %ld: %s", v, ch_strerror(rc));
    }
    cr_assert(TH_WAIT(atomic_load(&post_count) == total, TH_WAIT_MS), "ran %ld of %ld",
              atomic_load(&post_count), total);
    cr_assert_eq(atomic_load(&post_out_of_order), 0);
    th_node_free(n);
}

static void post_noop(ch_node *n, void *ud) {}

Test(node, post_to_a_core_that_does_not_exist_fails)
{
    ch_node *n = th_node_new(2);
    cr_assert_lt(ch_node_post(n, 2, post_noop, NULL), 0);
    cr_assert_lt(ch_node_post(n, 1000, post_noop, NULL), 0);
    th_node_free(n);
}

/* --- stop ---------------------------------------------------------------------------- */

Test(node, stop_terminates_every_process_with_reason_shutdown)
{
    ch_node *n = th_node_new(2);
    enum { COUNT = 1000 };
    static char ids[COUNT][16];
    static ch_child_spec specs[COUNT];
    static int results[COUNT];
    for (unsigned i = 0; i < COUNT; i++) {
        snprintf(ids[i], sizeof(ids[i]), "s%u", i);
        specs[i] = th_spec(ids[i], TH_TYPE);
        specs[i].restart = i % 3; /* every policy: none restarts on shutdown */
    }
    ch_batch_opts o = {.timeout_ms = TH_WAIT_MS};
    cr_assert_eq(ch_start_children(n, specs, COUNT, &o, results), 0);
    cr_assert_eq(atomic_load(&th.inits), COUNT);
    cr_assert_eq(ch_node_stop(n), 0);
    cr_assert_eq(atomic_load(&th.terminates[CH_REASON_SHUTDOWN]), COUNT);
    int others = atomic_load(&th.terminates[CH_REASON_NORMAL]) +
                 atomic_load(&th.terminates[CH_REASON_CRASH]) +
                 atomic_load(&th.terminates[CH_REASON_STOPPED]) +
                 atomic_load(&th.terminates[CH_REASON_MIGRATED]);
    cr_assert_eq(others, 0);
    cr_assert_eq(atomic_load(&th.inits), COUNT, "nothing restarted during shutdown");
    ch_node_destroy(n);
}

/* A blocking call waiting on a process when the node stops is answered, not abandoned. */
typedef struct pending_call {
    ch_node *node;
    atomic_int rc;
} pending_call;

static void *call_mute_process(void *arg)
{
    pending_call *pc = arg;
    char buf[8];
    size_t len;
    atomic_store(&pc->rc,
                 ch_call(pc->node, "mute", CH_ID_CSTR, "D", 1, buf, sizeof(buf), &len, 60000));
    return NULL;
}

Test(node, stop_answers_calls_still_waiting_with_estopped)
{
    ch_node *n = th_node_new(2);
    th_start(n, "mute", CH_PERMANENT, NULL);
    static pending_call pc;
    pc.node = n;
    atomic_store(&pc.rc, 1000);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, call_mute_process, &pc), 0);
    cr_assert(TH_WAIT(atomic_load(&th.deferred) == 1, TH_WAIT_MS));
    cr_assert_eq(ch_node_stop(n), 0);
    /* The call's own timeout is 60 s, the test's 30 s: only the stop can answer it. */
    pthread_join(t, NULL);
    cr_assert_eq(atomic_load(&pc.rc), CH_ESTOPPED, "%s", ch_strerror(atomic_load(&pc.rc)));
    ch_node_destroy(n);
}

static void slow_terminate(ch_proc *p, ch_reason reason)
{
    th_sleep_ms(30); /* work that overruns a 5 ms budget */
}

Test(node, terminate_overrunning_its_shutdown_budget_is_counted)
{
    ch_node_config cfg = th_config(2);
    ch_node *n = th_node_create(&cfg);
    ch_process_type slow = {.name = "slow", .terminate = slow_terminate};
    cr_assert_eq(ch_node_register_type(n, &slow), 0);
    th_node_start(n);
    ch_child_spec s = th_spec("slow", "slow");
    s.shutdown_ms = 5;
    th_start_spec(n, &s);
    ch_child_spec quick = th_spec("quick", "slow");
    quick.shutdown_ms = 60000;
    th_start_spec(n, &quick);
    cr_assert_eq(th_stop(n, "slow"), 0);
    cr_assert_eq(th_stop(n, "quick"), 0);
    cr_assert_eq(th_stats(n).slow_terminates, 1);
    th_node_free(n);
}

/* --- stats --------------------------------------------------------------------------- */

Test(node, stats_count_processes_starts_stops_and_messages)
{
    ch_node *n = th_node_new(2);
    ch_node_stats s = th_stats(n);
    cr_assert_eq(s.processes, 0);
    cr_assert_eq(s.started, 0);
    cr_assert_eq(s.messages, 0);

    char ids[10][8];
    for (unsigned i = 0; i < 10; i++) {
        snprintf(ids[i], sizeof(ids[i]), "st%u", i);
        th_start(n, ids[i], CH_PERMANENT, NULL);
    }
    s = th_stats(n);
    cr_assert_eq(s.processes, 10);
    cr_assert_eq(s.started, 10);

    for (unsigned i = 0; i < 10; i++)
        for (unsigned k = 0; k < 5; k++)
            cr_assert_eq(th_send(n, ids[i], CH_ID_CSTR, "z", 1), 0);
    cr_assert(TH_WAIT(th_stats(n).messages >= 50, TH_WAIT_MS));
    cr_assert(TH_WAIT(atomic_load(&th.casts) == 50, TH_WAIT_MS));
    s = th_stats(n);
    cr_assert_eq(s.messages, 50, "handled messages: %lu", (unsigned long)s.messages);

    for (unsigned i = 0; i < 3; i++)
        cr_assert_eq(th_stop(n, ids[i]), 0);
    s = th_stats(n);
    cr_assert_eq(s.processes, 7);
    cr_assert_eq(s.started, 10);
    cr_assert_eq(s.stopped, 3);
    cr_assert_eq(s.restarts, 0);
    cr_assert_eq(s.crashes, 0);
    cr_assert_eq(s.dead_letters, 0);
    cr_assert_eq(s.intensity_exceeded, 0);
    th_node_free(n);
}
