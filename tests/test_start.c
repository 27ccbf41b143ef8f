/*
 * tests/test_start.c - starting and stopping children: batches, per-child results,
 * rollback, the asynchronous form, metadata, tags, lookup and list.
 */
#include "helpers.h"

TestSuite(start, .timeout = 60);

static ch_batch_opts blocking(void)
{
    ch_batch_opts o = {.timeout_ms = TH_WAIT_MS};
    return o;
}

Test(start, starts_100k_processes_across_cores_and_each_answers_its_own_id, .timeout = 280)
{
    ch_node *n = th_node_new(2);
    enum { TOTAL = 100000, BATCH = 1000 };
    static char ids[TOTAL][12];
    static ch_child_spec specs[BATCH];
    static int results[BATCH];
    static uint32_t index[TOTAL];
    for (uint32_t i = 0; i < TOTAL; i++) {
        snprintf(ids[i], sizeof(ids[i]), "p%06u", i);
        index[i] = i;
    }
    ch_batch_opts o = {.timeout_ms = TH_LONG_WAIT_MS};
    for (uint32_t b = 0; b < TOTAL; b += BATCH) {
        for (uint32_t k = 0; k < BATCH; k++) {
            specs[k] = th_spec(ids[b + k], TH_TYPE);
            specs[k].arg = &index[b + k];
            specs[k].arg_len = sizeof(uint32_t);
            results[k] = 12345;
        }
        int rc = ch_start_children(n, specs, BATCH, &o, results);
        cr_assert_eq(rc, 0, "batch at %u: %s", b, ch_strerror(rc));
        for (uint32_t k = 0; k < BATCH; k++)
            cr_assert_eq(results[k], 0, "%s: %s", ids[b + k], ch_strerror(results[k]));
    }
    ch_node_stats s = th_stats(n);
    cr_assert_eq(s.processes, TOTAL);
    cr_assert_eq(s.started, TOTAL);
    cr_assert_eq(atomic_load(&th.inits), TOTAL);

    for (uint32_t i = 0; i < TOTAL; i++) {
        char reply[16];
        size_t len = 0;
        int rc = th_call(n, ids[i], "i", reply, sizeof(reply), &len);
        cr_assert_eq(rc, 0, "call %s: %s", ids[i], ch_strerror(rc));
        cr_assert_eq(len, strlen(ids[i]), "%s answered %zu bytes", ids[i], len);
        cr_assert_arr_eq(reply, ids[i], len, "%s answered another id", ids[i]);
        if (i % 997 == 0) { /* and its state is its own init argument */
            uint32_t got = UINT32_MAX;
            cr_assert_eq(th_call(n, ids[i], "s", &got, sizeof(got), &len), 0);
            cr_assert_eq(len, sizeof(got));
            cr_assert_eq(got, i);
        }
    }
    cr_assert_eq(atomic_load(&th.calls), TOTAL + TOTAL / 997 + 1);
    th_node_free(n);
}

Test(start, duplicate_id_in_a_later_batch_reports_ealready_and_keeps_the_original)
{
    ch_node *n = th_node_new(2);
    ch_child_spec first[2] = {th_spec("a", TH_TYPE), th_spec("b", TH_TYPE)};
    first[0].arg = "original";
    first[0].arg_len = 8;
    int res[2] = {1, 1};
    ch_batch_opts o = blocking();
    cr_assert_eq(ch_start_children(n, first, 2, &o, res), 0);

    ch_child_spec second[2] = {th_spec("c", TH_TYPE), th_spec("a", TH_TYPE)};
    second[1].arg = "impostor";
    second[1].arg_len = 8;
    res[0] = res[1] = 1;
    cr_assert_eq(ch_start_children(n, second, 2, &o, res), CH_EPARTIAL);
    cr_assert_eq(res[0], 0);
    cr_assert_eq(res[1], CH_EALREADY, "got %s", ch_strerror(res[1]));

    char buf[16];
    size_t len;
    cr_assert_eq(th_call(n, "a", "s", buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, 8);
    cr_assert_arr_eq(buf, "original", 8);
    cr_assert_eq(th_incarnation(n, "a"), 0);
    th_assert_serves(n, "c");
    cr_assert_eq(atomic_load(&th.inits), 3);
    cr_assert_eq(th_stats(n).processes, 3);
    th_node_free(n);
}

Test(start, duplicate_id_within_one_batch_starts_once)
{
    ch_node *n = th_node_new(2);
    ch_child_spec specs[2] = {th_spec("twin", TH_TYPE), th_spec("twin", TH_TYPE)};
    int res[2] = {1, 1};
    ch_batch_opts o = blocking();
    cr_assert_eq(ch_start_children(n, specs, 2, &o, res), CH_EPARTIAL);
    cr_assert((res[0] == 0 && res[1] == CH_EALREADY) || (res[0] == CH_EALREADY && res[1] == 0),
              "results %d %d", res[0], res[1]);
    cr_assert_eq(atomic_load(&th.inits), 1);
    th_assert_serves(n, "twin");
    th_node_free(n);
}

Test(start, unknown_type_reports_eunknown_type_and_siblings_start)
{
    ch_node *n = th_node_new(2);
    ch_child_spec specs[3] = {th_spec("u0", TH_TYPE), th_spec("u1", "no-such-type"),
                              th_spec("u2", TH_TYPE)};
    int res[3] = {1, 1, 1};
    ch_batch_opts o = blocking();
    cr_assert_eq(ch_start_children(n, specs, 3, &o, res), CH_EPARTIAL);
    cr_assert_eq(res[0], 0);
    cr_assert_eq(res[1], CH_EUNKNOWN_TYPE, "got %s", ch_strerror(res[1]));
    cr_assert_eq(res[2], 0);
    ch_proc_info *info = NULL;
    cr_assert_eq(ch_lookup(n, "u1", CH_ID_CSTR, &info), CH_ENOPROC);
    th_assert_serves(n, "u0");
    th_assert_serves(n, "u2");
    th_node_free(n);
}

Test(start, init_refusing_reports_einit_and_leaves_no_process)
{
    ch_node *n = th_node_new(2);
    ch_child_spec specs[3] = {th_spec("i0", TH_TYPE), th_spec("i1", TH_TYPE),
                              th_spec("i2", TH_TYPE)};
    specs[1].arg = "refuse please";
    specs[1].arg_len = 13;
    int res[3] = {1, 1, 1};
    ch_batch_opts o = blocking();
    cr_assert_eq(ch_start_children(n, specs, 3, &o, res), CH_EPARTIAL);
    cr_assert_eq(res[0], 0);
    cr_assert_eq(res[1], CH_EINIT, "got %s", ch_strerror(res[1]));
    cr_assert_eq(res[2], 0);
    cr_assert_eq(atomic_load(&th.init_refusals), 1);
    ch_proc_info *info = NULL;
    cr_assert_eq(ch_lookup(n, "i1", CH_ID_CSTR, &info), CH_ENOPROC);
    char buf[4];
    size_t len;
    cr_assert_eq(th_call(n, "i1", "eping", buf, sizeof(buf), &len), CH_ENOPROC);
    cr_assert_eq(th_stats(n).processes, 2);
    /* A refused init is not a running process: terminate is not owed. */
    cr_assert_eq(atomic_load(&th.terminates[CH_REASON_CRASH]) +
                     atomic_load(&th.terminates[CH_REASON_STOPPED]),
                 0);
    th_assert_serves(n, "i0");
    th_node_free(n);
}

Test(start, rollback_stops_the_children_that_started)
{
    ch_node *n = th_node_new(2);
    enum { COUNT = 10, BAD = 6 };
    char ids[COUNT][8];
    ch_child_spec specs[COUNT];
    int res[COUNT];
    for (unsigned i = 0; i < COUNT; i++) {
        snprintf(ids[i], sizeof(ids[i]), "rb%u", i);
        specs[i] = th_spec(ids[i], TH_TYPE);
        res[i] = 12345;
    }
    specs[BAD].arg = "refuse";
    specs[BAD].arg_len = 6;
    ch_batch_opts o = blocking();
    o.rollback = 1;
    cr_assert_eq(ch_start_children(n, specs, COUNT, &o, res), CH_EPARTIAL);
    for (unsigned i = 0; i < COUNT; i++) {
        int want = i == BAD ? CH_EINIT : CH_EROLLEDBACK;
        cr_assert_eq(res[i], want, "%s: got %s, want %s", ids[i], ch_strerror(res[i]),
                     ch_strerror(want));
        ch_proc_info *info = NULL;
        cr_assert_eq(ch_lookup(n, ids[i], CH_ID_CSTR, &info), CH_ENOPROC, "%s still registered",
                     ids[i]);
    }
    /* Every child whose init ran was terminated again, as stopped. */
    cr_assert_eq(atomic_load(&th.terminates[CH_REASON_STOPPED]), atomic_load(&th.inits));
    cr_assert_eq(th_stats(n).processes, 0);

    /* The ids are free again: the same batch without the bad child starts. */
    specs[BAD].arg = NULL;
    specs[BAD].arg_len = 0;
    cr_assert_eq(ch_start_children(n, specs, COUNT, &o, res), 0);
    for (unsigned i = 0; i < COUNT; i++)
        cr_assert_eq(res[i], 0);
    th_assert_serves(n, ids[BAD]);
    th_node_free(n);
}

Test(start, rollback_never_stops_a_process_that_was_running_before_the_batch)
{
    ch_node *n = th_node_new(2);
    th_start(n, "exists", CH_PERMANENT, "old");
    ch_child_spec specs[2] = {th_spec("newcomer", TH_TYPE), th_spec("exists", TH_TYPE)};
    int res[2] = {1, 1};
    ch_batch_opts o = blocking();
    o.rollback = 1;
    cr_assert_eq(ch_start_children(n, specs, 2, &o, res), CH_EPARTIAL);
    cr_assert_eq(res[0], CH_EROLLEDBACK);
    cr_assert_eq(res[1], CH_EALREADY);
    cr_assert_lt(th_incarnation(n, "newcomer"), 0);
    cr_assert_eq(th_incarnation(n, "exists"), 0, "the pre-existing process was touched");
    char buf[8];
    size_t len;
    cr_assert_eq(th_call(n, "exists", "s", buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, 3);
    cr_assert_arr_eq(buf, "old", 3);
    cr_assert_eq(atomic_load(&th.terminates[CH_REASON_STOPPED]), 1, "only the newcomer stopped");
    th_node_free(n);
}

Test(start, rollback_with_no_failure_keeps_every_child)
{
    ch_node *n = th_node_new(2);
    ch_child_spec specs[3] = {th_spec("k0", TH_TYPE), th_spec("k1", TH_TYPE),
                              th_spec("k2", TH_TYPE)};
    int res[3] = {1, 1, 1};
    ch_batch_opts o = blocking();
    o.rollback = 1;
    cr_assert_eq(ch_start_children(n, specs, 3, &o, res), 0);
    cr_assert_eq(res[0] | res[1] | res[2], 0);
    cr_assert_eq(atomic_load(&th.terminates[CH_REASON_STOPPED]), 0);
    th_assert_serves(n, "k1");
    th_node_free(n);
}

/* --- asynchronous form ----------------------------------------------------------------- */

typedef struct async_done {
    ch_node *node;
    atomic_int calls; /* on_done invocations */
    atomic_int core;  /* ch_node_current_core inside on_done */
    size_t count;
    int results[8];
    atomic_int ready; /* results/count written (release) */
} async_done;

static void on_batch_done(void *ud, const int *results, size_t count)
{
    async_done *d = ud;
    atomic_store(&d->core, ch_node_current_core(d->node));
    d->count = count;
    for (size_t i = 0; i < count && i < 8; i++)
        d->results[i] = results[i];
    atomic_fetch_add(&d->calls, 1);
    atomic_store_explicit(&d->ready, 1, memory_order_release);
}

Test(start, async_start_returns_at_once_and_reports_on_done_from_a_reactor)
{
    ch_node *n = th_node_new(2);
    static async_done d;
    d.node = n;
    atomic_store(&d.core, -2);
    ch_child_spec specs[3] = {th_spec("a0", TH_TYPE), th_spec("a1", "no-such-type"),
                              th_spec("a2", TH_TYPE)};
    ch_batch_opts o = {.on_done = on_batch_done, .ud = &d};
    cr_assert_eq(ch_start_children(n, specs, 3, &o, NULL), 0);
    cr_assert(TH_WAIT(atomic_load_explicit(&d.ready, memory_order_acquire), TH_WAIT_MS),
              "on_done never ran");
    cr_assert_eq(d.count, 3);
    cr_assert_eq(d.results[0], 0);
    cr_assert_eq(d.results[1], CH_EUNKNOWN_TYPE);
    cr_assert_eq(d.results[2], 0);
    int core = atomic_load(&d.core);
    cr_assert(core >= 0 && core < 2, "on_done ran on core %d, not a reactor", core);
    th_assert_serves(n, "a0");
    th_assert_serves(n, "a2");
    cr_assert_eq(atomic_load(&d.calls), 1, "on_done runs once");
    th_node_free(n);
}

Test(start, async_stop_reports_per_child_results_on_done)
{
    ch_node *n = th_node_new(2);
    th_start(n, "x0", CH_PERMANENT, NULL);
    th_start(n, "x1", CH_PERMANENT, NULL);
    static async_done d;
    d.node = n;
    const char *ids[3] = {"x0", "ghost", "x1"};
    ch_batch_opts o = {.on_done = on_batch_done, .ud = &d};
    cr_assert_eq(ch_stop_children(n, ids, NULL, 3, &o, NULL), 0);
    cr_assert(TH_WAIT(atomic_load_explicit(&d.ready, memory_order_acquire), TH_WAIT_MS));
    cr_assert_eq(d.count, 3);
    cr_assert_eq(d.results[0], 0);
    cr_assert_eq(d.results[1], CH_ENOPROC);
    cr_assert_eq(d.results[2], 0);
    cr_assert(TH_WAIT(th_incarnation(n, "x0") < 0 && th_incarnation(n, "x1") < 0, TH_WAIT_MS));
    cr_assert_eq(atomic_load(&th.terminates[CH_REASON_STOPPED]), 2);
    th_node_free(n);
}

Test(start, async_batch_whose_children_all_fail_validation_completes_on_a_reactor)
{
    ch_node *n = th_node_new(2);
    static async_done d;
    d.node = n;
    atomic_store(&d.core, -2);
    ch_child_spec specs[2] = {th_spec("v0", "no-such-type"), th_spec("", TH_TYPE)};
    ch_batch_opts o = {.on_done = on_batch_done, .ud = &d};
    cr_assert_eq(ch_start_children(n, specs, 2, &o, NULL), 0);
    cr_assert(TH_WAIT(atomic_load_explicit(&d.ready, memory_order_acquire), TH_WAIT_MS));
    cr_assert_eq(d.count, 2);
    cr_assert_eq(d.results[0], CH_EUNKNOWN_TYPE);
    cr_assert_eq(d.results[1], CH_EBADID);
    int core = atomic_load(&d.core);
    cr_assert(core >= 0 && core < 2,
              "on_done ran on the calling thread (core %d), not on a reactor thread", core);
    th_node_free(n);
}

/* --- stop ---------------------------------------------------------------------------- */

Test(start, stop_children_reports_zero_or_enoproc_per_child)
{
    ch_node *n = th_node_new(2);
    th_start(n, "s0", CH_PERMANENT, NULL);
    th_start(n, "s1", CH_TRANSIENT, NULL);
    th_start(n, "keep", CH_PERMANENT, NULL);
    const char *ids[3] = {"s0", "nobody", "s1"};
    int res[3] = {1, 1, 1};
    ch_batch_opts o = blocking();
    cr_assert_eq(ch_stop_children(n, ids, NULL, 3, &o, res), CH_EPARTIAL);
    cr_assert_eq(res[0], 0);
    cr_assert_eq(res[1], CH_ENOPROC);
    cr_assert_eq(res[2], 0);
    cr_assert_eq(atomic_load(&th.terminates[CH_REASON_STOPPED]), 2);

    /* A stopped permanent child is not restarted. */
    ch_proc_info *info = NULL;
    cr_assert_eq(ch_lookup(n, "s0", CH_ID_CSTR, &info), CH_ENOPROC);
    cr_assert_eq(ch_lookup(n, "s1", CH_ID_CSTR, &info), CH_ENOPROC);
    cr_assert_eq(atomic_load(&th.init_restarts), 0);

    /* Stopping again finds nothing; stopping only live ones returns 0. */
    cr_assert_eq(ch_stop_children(n, ids, NULL, 1, &o, res), CH_EPARTIAL);
    cr_assert_eq(res[0], CH_ENOPROC);
    const char *live = "keep";
    cr_assert_eq(ch_stop_children(n, &live, NULL, 1, &o, res), 0);
    cr_assert_eq(res[0], 0);
    cr_assert_eq(th_stats(n).processes, 0);
    th_node_free(n);
}

Test(start, stop_children_honours_id_lengths)
{
    ch_node *n = th_node_new(2);
    th_start(n, "ab", CH_PERMANENT, NULL);
    th_start(n, "abc", CH_PERMANENT, NULL);
    const char *ids[1] = {"abcdef"};
    size_t lens[1] = {3};
    int res[1] = {1};
    ch_batch_opts o = blocking();
    cr_assert_eq(ch_stop_children(n, ids, lens, 1, &o, res), 0);
    cr_assert_eq(res[0], 0);
    cr_assert_lt(th_incarnation(n, "abc"), 0);
    th_assert_serves(n, "ab");
    th_node_free(n);
}

/* --- registry: metadata, tags, lookup, list ------------------------------------------------ */

static const uint8_t META_A[] = {1, 0, 2, 0, 3, 255}; /* metadata is bytes, NULs included */

Test(start, metadata_and_tag_are_stored_and_visible_to_lookup_and_the_process)
{
    ch_node *n = th_node_new(2);
    ch_child_spec s = th_spec("meta", TH_TYPE);
    s.arg = "argument";
    s.arg_len = 8;
    s.meta = META_A;
    s.meta_len = sizeof(META_A);
    s.tag = "blue";
    s.restart = CH_TRANSIENT;
    s.shutdown_ms = 1234;
    th_start_spec(n, &s);

    ch_proc_info *info = NULL;
    cr_assert_eq(ch_lookup(n, "meta", CH_ID_CSTR, &info), 0);
    cr_assert_not_null(info);
    cr_assert_eq(info->id_len, 4);
    cr_assert_str_eq(info->id, "meta");
    cr_assert_str_eq(info->type, TH_TYPE);
    cr_assert_eq(info->arg_len, 8);
    cr_assert_arr_eq(info->arg, "argument", 8);
    cr_assert_eq(info->meta_len, sizeof(META_A));
    cr_assert_arr_eq(info->meta, META_A, sizeof(META_A));
    cr_assert_str_eq(info->tag, "blue");
    cr_assert_eq(info->restart, CH_TRANSIENT);
    cr_assert_eq(info->shutdown_ms, 1234);
    cr_assert_eq(info->incarnation, 0);
    cr_assert_eq((int)info->core, ch_node_core_of(n, "meta", CH_ID_CSTR));
    ch_proc_info_free(info);

    uint8_t buf[64];
    size_t len = 0;
    cr_assert_eq(th_call(n, "meta", "m", buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, sizeof(META_A));
    cr_assert_arr_eq(buf, META_A, sizeof(META_A));
    cr_assert_eq(th_call(n, "meta", "g", buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, 4);
    cr_assert_arr_eq(buf, "blue", 4);
    th_node_free(n);
}

Test(start, child_without_tag_or_metadata_reports_empty_ones)
{
    ch_node *n = th_node_new(2);
    th_start(n, "plain", CH_PERMANENT, NULL);
    ch_proc_info *info = NULL;
    cr_assert_eq(ch_lookup(n, "plain", CH_ID_CSTR, &info), 0);
    cr_assert_not_null(info->tag);
    cr_assert_str_eq(info->tag, "");
    cr_assert_eq(info->meta_len, 0);
    cr_assert_eq(info->arg_len, 0);
    cr_assert_eq(info->restart, CH_PERMANENT);
    ch_proc_info_free(info);
    char buf[8];
    size_t len = 99;
    cr_assert_eq(th_call(n, "plain", "g", buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, 0);
    th_node_free(n);
}

Test(start, spec_strings_and_bytes_are_copied_at_start)
{
    ch_node *n = th_node_new(2);
    char id[8] = "copy", tag[8] = "red", arg[8] = "abc", meta[8] = "xyz";
    ch_child_spec s = th_spec(id, TH_TYPE);
    s.tag = tag;
    s.arg = arg;
    s.arg_len = 3;
    s.meta = meta;
    s.meta_len = 3;
    th_start_spec(n, &s);
    memset(id + 1, '#', 3);
    memset(tag, '#', 3);
    memset(arg, '#', 3);
    memset(meta, '#', 3);
    ch_proc_info *info = NULL;
    cr_assert_eq(ch_lookup(n, "copy", CH_ID_CSTR, &info), 0);
    cr_assert_str_eq(info->tag, "red");
    cr_assert_arr_eq(info->arg, "abc", 3);
    cr_assert_arr_eq(info->meta, "xyz", 3);
    ch_proc_info_free(info);
    th_node_free(n);
}

static bool list_has(const ch_proc_list *l, const char *id)
{
    for (size_t i = 0; i < l->count; i++)
        if (l->items[i]->id_len == strlen(id) && memcmp(l->items[i]->id, id, strlen(id)) == 0)
            return true;
    return false;
}

Test(start, list_returns_every_process_or_those_with_a_tag)
{
    ch_node *n = th_node_new(2);
    enum { COUNT = 40 };
    char ids[COUNT][8];
    for (unsigned i = 0; i < COUNT; i++) {
        snprintf(ids[i], sizeof(ids[i]), "l%u", i);
        ch_child_spec s = th_spec(ids[i], TH_TYPE);
        s.tag = i % 4 == 0 ? "blue" : i % 4 == 1 ? "red" : NULL;
        th_start_spec(n, &s);
    }
    ch_proc_list all = {0};
    cr_assert_eq(ch_list(n, NULL, &all), 0);
    cr_assert_eq(all.count, COUNT);
    for (unsigned i = 0; i < COUNT; i++)
        cr_assert(list_has(&all, ids[i]), "%s missing from the full list", ids[i]);
    ch_proc_list_free(&all);

    ch_proc_list blue = {0};
    cr_assert_eq(ch_list(n, "blue", &blue), 0);
    cr_assert_eq(blue.count, COUNT / 4);
    for (size_t i = 0; i < blue.count; i++)
        cr_assert_str_eq(blue.items[i]->tag, "blue");
    for (unsigned i = 0; i < COUNT; i += 4)
        cr_assert(list_has(&blue, ids[i]));
    ch_proc_list_free(&blue);

    ch_proc_list green = {0};
    cr_assert_eq(ch_list(n, "green", &green), 0);
    cr_assert_eq(green.count, 0);
    ch_proc_list_free(&green);

    /* A stopped child leaves the list. */
    cr_assert_eq(th_stop(n, ids[0]), 0);
    cr_assert_eq(ch_list(n, "blue", &blue), 0);
    cr_assert_eq(blue.count, COUNT / 4 - 1);
    cr_assert_not(list_has(&blue, ids[0]));
    ch_proc_list_free(&blue);
    th_node_free(n);
}

Test(start, list_works_when_some_cores_have_no_process)
{
    ch_node *n = th_node_new(4);
    char id[32];
    th_id_on_core(n, "only", 2, id, sizeof(id));
    ch_child_spec s = th_spec(id, TH_TYPE);
    s.tag = "lonely";
    th_start_spec(n, &s);
    ch_proc_list l = {0};
    cr_assert_eq(ch_list(n, NULL, &l), 0);
    cr_assert_eq(l.count, 1);
    cr_assert_str_eq(l.items[0]->id, id);
    ch_proc_list_free(&l);
    cr_assert_eq(ch_list(n, "lonely", &l), 0);
    cr_assert_eq(l.count, 1);
    ch_proc_list_free(&l);
    cr_assert_eq(th_stop(n, id), 0);
    cr_assert_eq(ch_list(n, NULL, &l), 0);
    cr_assert_eq(l.count, 0, "an empty node lists nothing");
    ch_proc_list_free(&l);
    th_node_free(n);
}

Test(start, lookup_of_an_unknown_id_returns_enoproc)
{
    ch_node *n = th_node_new(2);
    ch_proc_info *info = NULL;
    cr_assert_eq(ch_lookup(n, "never-started", CH_ID_CSTR, &info), CH_ENOPROC);
    th_start(n, "never", CH_PERMANENT, NULL);
    cr_assert_eq(ch_lookup(n, "never-started", CH_ID_CSTR, &info), CH_ENOPROC, "no prefix match");
    cr_assert_eq(ch_lookup(n, "never-started", 5, &info), 0, "id_len counts");
    ch_proc_info_free(info);
    th_node_free(n);
}

Test(start, ids_with_embedded_nuls_are_distinct_processes)
{
    ch_node *n = th_node_new(2);
    const char id1[] = {'a', '\0', 'b'};
    const char id2[] = {'a', '\0', 'c'};
    ch_child_spec specs[3] = {th_spec("a", TH_TYPE), th_spec(id1, TH_TYPE), th_spec(id2, TH_TYPE)};
    specs[1].id_len = 3;
    specs[2].id_len = 3;
    int res[3] = {1, 1, 1};
    ch_batch_opts o = blocking();
    cr_assert_eq(ch_start_children(n, specs, 3, &o, res), 0);
    cr_assert_eq(res[0] | res[1] | res[2], 0);
    char buf[8];
    size_t len = 0;
    cr_assert_eq(ch_call(n, id1, 3, "i", 1, buf, sizeof(buf), &len, TH_CALL_MS), 0);
    cr_assert_eq(len, 3);
    cr_assert_arr_eq(buf, id1, 3);
    ch_proc_info *info = NULL;
    cr_assert_eq(ch_lookup(n, id2, 3, &info), 0);
    cr_assert_eq(info->id_len, 3);
    cr_assert_arr_eq(info->id, id2, 3);
    ch_proc_info_free(info);
    th_node_free(n);
}
