/*
 * tests/test_restart.c - restart policies, incarnations, restart intensity, crashes.
 *
 * A "tp" process crashes on 'c' (handle returns -EIO) and exits normally on 'x' (CH_EXIT).
 */
#include "helpers.h"

TestSuite(restart, .timeout = 60);

/* Waits until `id` runs as incarnation `inc`. */
static void wait_incarnation(ch_node *n, const char *id, int64_t inc)
{
    cr_assert(TH_WAIT(th_incarnation(n, id) == inc, TH_WAIT_MS), "%s: incarnation %ld, want %ld",
              id, (long)th_incarnation(n, id), (long)inc);
}

/* Waits until `id` ended for good: not registered and counted as stopped. */
static void wait_gone(ch_node *n, const char *id, uint64_t stopped)
{
    cr_assert(TH_WAIT(th_stats(n).stopped >= stopped && th_incarnation(n, id) < 0, TH_WAIT_MS),
              "%s still runs (incarnation %ld)", id, (long)th_incarnation(n, id));
}

static uint32_t call_incarnation(ch_node *n, const char *id)
{
    uint32_t inc = UINT32_MAX;
    size_t len = 0;
    int rc = th_call(n, id, "n", &inc, sizeof(inc), &len);
    cr_assert_eq(rc, 0, "%s: %s", id, ch_strerror(rc));
    cr_assert_eq(len, sizeof(inc));
    return inc;
}

Test(restart, permanent_process_restarts_after_a_crash)
{
    ch_node *n = th_node_new(2);
    th_start(n, "perm", CH_PERMANENT, "my arg");
    cr_assert_eq(th_send(n, "perm", CH_ID_CSTR, "c", 1), 0);
    wait_incarnation(n, "perm", 1);
    cr_assert_eq(call_incarnation(n, "perm"), 1);
    cr_assert_eq(atomic_load(&th.terminates[CH_REASON_CRASH]), 1);
    cr_assert_eq(atomic_load(&th.init_restarts), 1, "init got CH_INIT_RESTART");
    cr_assert_eq(atomic_load(&th.inits), 2);

    /* Restarted from its spec: same argument. */
    char buf[16];
    size_t len = 0;
    cr_assert_eq(th_call(n, "perm", "s", buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, 6);
    cr_assert_arr_eq(buf, "my arg", 6);

    ch_node_stats s = th_stats(n);
    cr_assert_eq(s.restarts, 1);
    cr_assert_eq(s.crashes, 1);
    cr_assert_eq(s.processes, 1);
    cr_assert_eq(s.started, 1, "a restart is not a first start");
    cr_assert_eq(s.stopped, 0);
    th_node_free(n);
}

Test(restart, permanent_process_restarts_after_a_normal_exit)
{
    ch_node *n = th_node_new(2);
    th_start(n, "perm", CH_PERMANENT, NULL);
    cr_assert_eq(th_send(n, "perm", CH_ID_CSTR, "x", 1), 0);
    wait_incarnation(n, "perm", 1);
    cr_assert_eq(call_incarnation(n, "perm"), 1);
    cr_assert_eq(atomic_load(&th.terminates[CH_REASON_NORMAL]), 1);
    cr_assert_eq(atomic_load(&th.terminates[CH_REASON_CRASH]), 0);
    cr_assert_eq(atomic_load(&th.init_restarts), 1);
    ch_node_stats s = th_stats(n);
    cr_assert_eq(s.restarts, 1);
    cr_assert_eq(s.crashes, 0, "a normal exit is not a crash");
    th_node_free(n);
}

Test(restart, incarnation_increments_with_every_restart)
{
    ch_node *n = th_node_new(2);
    th_start(n, "again", CH_PERMANENT, NULL);
    cr_assert_eq(call_incarnation(n, "again"), 0);
    for (int64_t k = 1; k <= 5; k++) {
        cr_assert_eq(th_send(n, "again", CH_ID_CSTR, k % 2 ? "c" : "x", 1), 0);
        wait_incarnation(n, "again", k);
        cr_assert_eq(call_incarnation(n, "again"), (uint32_t)k);
    }
    cr_assert_eq(atomic_load(&th.init_restarts), 5);
    th_node_free(n);
}

Test(restart, transient_process_restarts_after_a_crash)
{
    ch_node *n = th_node_new(2);
    th_start(n, "trans", CH_TRANSIENT, NULL);
    cr_assert_eq(th_send(n, "trans", CH_ID_CSTR, "c", 1), 0);
    wait_incarnation(n, "trans", 1);
    cr_assert_eq(atomic_load(&th.init_restarts), 1);
    th_assert_serves(n, "trans");
    th_node_free(n);
}

Test(restart, transient_process_is_not_restarted_after_a_normal_exit)
{
    ch_node *n = th_node_new(2);
    th_start(n, "trans", CH_TRANSIENT, NULL);
    th_start(n, "sibling", CH_PERMANENT, NULL);
    cr_assert_eq(th_send(n, "trans", CH_ID_CSTR, "x", 1), 0);
    wait_gone(n, "trans", 1);
    cr_assert_eq(atomic_load(&th.terminates[CH_REASON_NORMAL]), 1);
    cr_assert_eq(atomic_load(&th.init_restarts), 0);
    ch_node_stats s = th_stats(n);
    cr_assert_eq(s.restarts, 0);
    cr_assert_eq(s.stopped, 1);
    cr_assert_eq(s.processes, 1);
    char buf[4];
    size_t len;
    cr_assert_eq(th_call(n, "trans", "eX", buf, sizeof(buf), &len), CH_ENOPROC);
    th_assert_serves(n, "sibling");
    th_node_free(n);
}

Test(restart, temporary_process_is_never_restarted)
{
    ch_node *n = th_node_new(2);
    th_start(n, "tmp-crash", CH_TEMPORARY, NULL);
    th_start(n, "tmp-exit", CH_TEMPORARY, NULL);
    th_start(n, "sibling", CH_PERMANENT, NULL);
    cr_assert_eq(th_send(n, "tmp-crash", CH_ID_CSTR, "c", 1), 0);
    cr_assert_eq(th_send(n, "tmp-exit", CH_ID_CSTR, "x", 1), 0);
    wait_gone(n, "tmp-crash", 2);
    wait_gone(n, "tmp-exit", 2);
    cr_assert_eq(atomic_load(&th.init_restarts), 0);
    cr_assert_eq(atomic_load(&th.inits), 3);
    ch_node_stats s = th_stats(n);
    cr_assert_eq(s.restarts, 0);
    cr_assert_eq(s.crashes, 1);
    cr_assert_eq(s.stopped, 2);
    cr_assert_eq(s.processes, 1);
    /* The siblings are undisturbed. */
    th_assert_serves(n, "sibling");
    cr_assert_eq(call_incarnation(n, "sibling"), 0);
    th_node_free(n);
}

Test(restart, a_restarted_process_keeps_its_spec)
{
    ch_node *n = th_node_new(2);
    ch_child_spec s = th_spec("keeper", TH_TYPE);
    s.arg = "A";
    s.arg_len = 1;
    s.meta = "M";
    s.meta_len = 1;
    s.tag = "T";
    th_start_spec(n, &s);
    cr_assert_eq(th_send(n, "keeper", CH_ID_CSTR, "c", 1), 0);
    wait_incarnation(n, "keeper", 1);
    ch_proc_info *info = NULL;
    cr_assert_eq(ch_lookup(n, "keeper", CH_ID_CSTR, &info), 0);
    cr_assert_eq(info->arg_len, 1);
    cr_assert_arr_eq(info->arg, "A", 1);
    cr_assert_eq(info->meta_len, 1);
    cr_assert_arr_eq(info->meta, "M", 1);
    cr_assert_str_eq(info->tag, "T");
    cr_assert_eq(info->restart, CH_PERMANENT);
    cr_assert_eq((int)info->core, ch_node_core_of(n, "keeper", CH_ID_CSTR));
    ch_proc_info_free(info);
    char buf[4];
    size_t len;
    cr_assert_eq(th_call(n, "keeper", "g", buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, 1);
    cr_assert_eq(buf[0], 'T');
    th_node_free(n);
}

/* --- the restart hook -------------------------------------------------------------------- */

typedef struct restart_seen {
    ch_node *node;
    char id[32];
    size_t id_len;
    unsigned core;
    uint32_t incarnation;
    int current_core;
    atomic_int count; /* release: the fields are written */
} restart_seen;

static void on_restarted(void *ud, ch_hook_event *ev)
{
    restart_seen *rs = ud;
    th_check(ev->point == CH_HOOK_PROCESS_RESTARTED);
    rs->id_len = ev->id_len < sizeof(rs->id) ? ev->id_len : sizeof(rs->id);
    memcpy(rs->id, ev->id, rs->id_len);
    rs->core = ev->core;
    rs->incarnation = ev->incarnation;
    rs->current_core = ch_node_current_core(rs->node);
    atomic_fetch_add_explicit(&rs->count, 1, memory_order_release);
}

Test(restart, restart_hook_fires_with_the_new_incarnation_on_the_owner_reactor)
{
    ch_node *n = th_node_new(2);
    static restart_seen rs;
    rs.node = n;
    cr_assert_eq(ch_hook_register(n, CH_HOOK_PROCESS_RESTARTED, "watch", 0, on_restarted, &rs), 0);
    th_start(n, "hooked", CH_PERMANENT, NULL);
    cr_assert_eq(atomic_load(&rs.count), 0, "a first start is not a restart");
    cr_assert_eq(th_send(n, "hooked", CH_ID_CSTR, "c", 1), 0);
    cr_assert(TH_WAIT(atomic_load_explicit(&rs.count, memory_order_acquire) >= 1, TH_WAIT_MS),
              "the restart hook never fired");
    cr_assert_eq(rs.id_len, 6);
    cr_assert_arr_eq(rs.id, "hooked", 6);
    cr_assert_eq(rs.incarnation, 1);
    int core = ch_node_core_of(n, "hooked", CH_ID_CSTR);
    cr_assert_eq((int)rs.core, core);
    cr_assert_eq(rs.current_core, core, "the hook ran on core %d", rs.current_core);
    wait_incarnation(n, "hooked", 1);
    cr_assert_eq(atomic_load(&rs.count), 1);
    th_assert_no_bad();
    th_node_free(n);
}

/* --- restart intensity ----------------------------------------------------------------- */

Test(restart, exceeding_restart_intensity_leaves_the_process_down_and_the_node_serving)
{
    ch_node_config cfg = th_config(2);
    cfg.restart_intensity = 3;
    cfg.restart_period_ms = 600000; /* the whole test is one period, however slow */
    ch_node *n = th_node_create(&cfg);
    th_node_start(n);
    char crasher[32], neighbour[32], other[32];
    th_id_on_core(n, "crasher", 0, crasher, sizeof(crasher));
    th_id_on_core(n, "neighbour", 0, neighbour, sizeof(neighbour));
    th_id_on_core(n, "other", 1, other, sizeof(other));
    th_start(n, crasher, CH_PERMANENT, NULL);
    th_start(n, neighbour, CH_PERMANENT, NULL);
    th_start(n, other, CH_PERMANENT, NULL);

    /* Crash it once per incarnation: 3 restarts are allowed, the 4th crash is one too many. */
    for (int64_t inc = 0; inc < 3; inc++) {
        cr_assert_eq(th_send(n, crasher, CH_ID_CSTR, "c", 1), 0);
        wait_incarnation(n, crasher, inc + 1);
    }
    cr_assert_eq(th_stats(n).intensity_exceeded, 0, "3 restarts are within the intensity");
    cr_assert_eq(th_send(n, crasher, CH_ID_CSTR, "c", 1), 0);
    cr_assert(TH_WAIT(th_stats(n).intensity_exceeded >= 1, TH_WAIT_MS),
              "intensity_exceeded never counted");
    ch_proc_info *info = NULL;
    cr_assert(TH_WAIT(ch_lookup(n, crasher, CH_ID_CSTR, &info) == CH_ENOPROC, TH_WAIT_MS),
              "the crasher is still registered");
    char buf[4];
    size_t len;
    cr_assert_eq(th_call(n, crasher, "eX", buf, sizeof(buf), &len), CH_ENOPROC);

    ch_node_stats s = th_stats(n);
    cr_assert_eq(s.restarts, 3);
    cr_assert_eq(s.crashes, 4);
    cr_assert_eq(s.intensity_exceeded, 1);
    cr_assert_eq(s.processes, 2);
    cr_assert_eq(atomic_load(&th.init_restarts), 3);

    /* Everything else keeps working, on the same core and on the other. */
    th_assert_serves(n, neighbour);
    th_assert_serves(n, other);
    cr_assert_eq(call_incarnation(n, neighbour), 0);
    char fresh[32];
    th_id_on_core(n, "fresh", 0, fresh, sizeof(fresh));
    th_start(n, fresh, CH_PERMANENT, NULL);
    th_assert_serves(n, fresh);
    th_node_free(n);
}

Test(restart, restart_intensity_is_counted_per_core)
{
    ch_node_config cfg = th_config(2);
    cfg.restart_intensity = 3;
    cfg.restart_period_ms = 600000;
    ch_node *n = th_node_create(&cfg);
    th_node_start(n);
    char a[32], b[32];
    th_id_on_core(n, "a", 0, a, sizeof(a));
    th_id_on_core(n, "b", 1, b, sizeof(b));
    th_start(n, a, CH_PERMANENT, NULL);
    th_start(n, b, CH_PERMANENT, NULL);
    for (int64_t inc = 0; inc < 3; inc++) {
        cr_assert_eq(th_send(n, a, CH_ID_CSTR, "c", 1), 0);
        wait_incarnation(n, a, inc + 1);
    }
    /* Core 0 used its 3 restarts; core 1 has all of its own. */
    for (int64_t inc = 0; inc < 3; inc++) {
        cr_assert_eq(th_send(n, b, CH_ID_CSTR, "c", 1), 0);
        wait_incarnation(n, b, inc + 1);
    }
    cr_assert_eq(th_stats(n).intensity_exceeded, 0);
    th_node_free(n);
}

Test(restart, restarts_are_allowed_again_once_the_period_has_passed)
{
    ch_node_config cfg = th_config(2);
    cfg.restart_intensity = 2;
    cfg.restart_period_ms = 300;
    ch_node *n = th_node_create(&cfg);
    th_node_start(n);
    th_start(n, "p", CH_PERMANENT, NULL);
    for (int64_t inc = 0; inc < 2; inc++) {
        cr_assert_eq(th_send(n, "p", CH_ID_CSTR, "c", 1), 0);
        wait_incarnation(n, "p", inc + 1);
    }
    /* Let the window slide past both restarts (waiting on the clock is the behaviour under
     * test here, not a synchronisation). */
    const uint64_t until = th_now_ms() + 3 * cfg.restart_period_ms;
    while (th_now_ms() < until)
        th_poll_pause();
    cr_assert_eq(th_send(n, "p", CH_ID_CSTR, "c", 1), 0);
    wait_incarnation(n, "p", 3);
    cr_assert_eq(th_stats(n).intensity_exceeded, 0);
    th_node_free(n);
}

/* --- crash during a call --------------------------------------------------------------- */

Test(restart, crash_on_a_call_returns_ecrashed_to_the_caller)
{
    ch_node *n = th_node_new(2);
    th_start(n, "boom", CH_PERMANENT, NULL);
    char buf[8];
    size_t len = 0;
    int rc = th_call(n, "boom", "c", buf, sizeof(buf), &len);
    cr_assert_eq(rc, CH_ECRASHED, "%s", ch_strerror(rc));
    wait_incarnation(n, "boom", 1);
    th_assert_serves(n, "boom");
    th_node_free(n);
}

Test(restart, crash_of_a_temporary_process_on_a_call_returns_ecrashed_then_enoproc)
{
    ch_node *n = th_node_new(2);
    th_start(n, "once", CH_TEMPORARY, NULL);
    char buf[8];
    size_t len = 0;
    cr_assert_eq(th_call(n, "once", "c", buf, sizeof(buf), &len), CH_ECRASHED);
    wait_gone(n, "once", 1);
    cr_assert_eq(th_call(n, "once", "eX", buf, sizeof(buf), &len), CH_ENOPROC);
    th_node_free(n);
}

Test(restart, exit_on_a_call_without_reply_returns_enodata)
{
    ch_node *n = th_node_new(2);
    th_start(n, "quit", CH_TEMPORARY, NULL);
    char buf[8];
    size_t len = 0;
    int rc = th_call(n, "quit", "x", buf, sizeof(buf), &len);
    cr_assert_eq(rc, -ENODATA, "%s", ch_strerror(rc));
    wait_gone(n, "quit", 1);
    th_node_free(n);
}
