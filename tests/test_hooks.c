/*
 * tests/test_hooks.c - hook registration, priority, cancellation, and what each hook point
 * sees (alter, pre/post children start, registry insert/remove).
 */
#include "helpers.h"

#include <pthread.h>

TestSuite(hooks, .timeout = 60);

/* --- an event log that several reactors may append to at once ------------------------------ */

typedef struct logged {
    ch_hook_point point;
    int tag; /* the handler's ud */
    char id[32];
    size_t id_len;
    unsigned core;
    uint32_t incarnation;
    ch_reason reason;
    int current_core;
    int on_test_thread;
    size_t count;
    char ids[4][16]; /* PRE/POST: the specs' ids */
    char types[4][16];
    int results[4]; /* POST */
} logged;

#define LOG_MAX 64
static logged hook_log[LOG_MAX];
static atomic_int log_next; /* slots claimed */
static atomic_int log_done; /* slots written (release) */
static ch_node *log_node;
static pthread_t test_thread;

static int logged_now(void)
{
    return atomic_load_explicit(&log_done, memory_order_acquire);
}

static void copy_id(char *dst, size_t cap, const char *id, size_t len)
{
    if (len >= cap) len = cap - 1;
    if (len) memcpy(dst, id, len);
    dst[len] = '\0';
}

static void log_event(void *ud, ch_hook_event *ev)
{
    int i = atomic_fetch_add(&log_next, 1);
    th_check(i < LOG_MAX);
    if (i >= LOG_MAX) return;
    logged *l = &hook_log[i];
    l->point = ev->point;
    l->tag = (int)(intptr_t)ud;
    l->current_core = log_node ? ch_node_current_core(log_node) : -9;
    l->on_test_thread = pthread_equal(pthread_self(), test_thread);
    switch (ev->point) {
    case CH_HOOK_PRE_CHILDREN_START:
    case CH_HOOK_POST_CHILDREN_START:
        l->count = ev->count;
        for (size_t k = 0; k < ev->count && k < 4; k++) {
            copy_id(l->ids[k], sizeof(l->ids[k]), ev->specs[k].id, ev->specs[k].id_len);
            copy_id(l->types[k], sizeof(l->types[k]), ev->specs[k].type, strlen(ev->specs[k].type));
            if (ev->point == CH_HOOK_POST_CHILDREN_START) l->results[k] = ev->results[k];
        }
        break;
    case CH_HOOK_CHILD_ALTER:
        copy_id(l->id, sizeof(l->id), ev->spec->id, ev->spec->id_len);
        break;
    default:
        copy_id(l->id, sizeof(l->id), ev->id, ev->id_len);
        l->id_len = ev->id_len;
        l->core = ev->core;
        l->incarnation = ev->incarnation;
        l->reason = ev->reason;
        break;
    }
    atomic_fetch_add_explicit(&log_done, 1, memory_order_release);
}

/* Index of the first logged event at `point` for `id` from index `from`, or -1. */
static int find_event(ch_hook_point point, const char *id, int from)
{
    int n = logged_now();
    for (int i = from; i < n; i++)
        if (hook_log[i].point == point && strcmp(hook_log[i].id, id) == 0) return i;
    return -1;
}

static ch_node *hook_node_created(void)
{
    test_thread = pthread_self();
    ch_node_config cfg = th_config(2);
    ch_node *n = th_node_create(&cfg);
    log_node = n;
    return n;
}

static ch_node *hook_node(void)
{
    ch_node *n = hook_node_created();
    th_node_start(n);
    return n;
}

static void start_one(ch_node *n, const char *id)
{
    th_start(n, id, CH_PERMANENT, NULL);
}

/* --- priority, cancel, duplicates -------------------------------------------------------- */

Test(hooks, handlers_of_a_point_run_highest_priority_first)
{
    ch_node *n = hook_node_created();
    /* Registered at boot, in no particular order. */
    cr_assert_eq(
        ch_hook_register(n, CH_HOOK_PRE_CHILDREN_START, "low", 1, log_event, (void *)(intptr_t)1),
        0);
    cr_assert_eq(ch_hook_register(n, CH_HOOK_PRE_CHILDREN_START, "high", 10, log_event,
                                  (void *)(intptr_t)10),
                 0);
    cr_assert_eq(
        ch_hook_register(n, CH_HOOK_PRE_CHILDREN_START, "neg", -3, log_event, (void *)(intptr_t)-3),
        0);
    cr_assert_eq(
        ch_hook_register(n, CH_HOOK_PRE_CHILDREN_START, "mid", 5, log_event, (void *)(intptr_t)5),
        0);
    th_node_start(n);
    start_one(n, "p");
    cr_assert_eq(logged_now(), 4);
    const int want[4] = {10, 5, 1, -3};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(hook_log[i].tag, want[i], "handler %d was priority %d, want %d", i,
                     hook_log[i].tag, want[i]);
    th_node_free(n);
}

Test(hooks, a_cancelled_handler_no_longer_runs)
{
    ch_node *n = hook_node();
    /* Registered at run time. */
    cr_assert_eq(
        ch_hook_register(n, CH_HOOK_PRE_CHILDREN_START, "a", 3, log_event, (void *)(intptr_t)3), 0);
    cr_assert_eq(
        ch_hook_register(n, CH_HOOK_PRE_CHILDREN_START, "b", 2, log_event, (void *)(intptr_t)2), 0);
    cr_assert_eq(
        ch_hook_register(n, CH_HOOK_PRE_CHILDREN_START, "c", 1, log_event, (void *)(intptr_t)1), 0);
    start_one(n, "p1");
    cr_assert_eq(logged_now(), 3);
    cr_assert_eq(ch_hook_cancel(n, CH_HOOK_PRE_CHILDREN_START, "b"), 0);
    start_one(n, "p2");
    cr_assert_eq(logged_now(), 5);
    cr_assert_eq(hook_log[3].tag, 3);
    cr_assert_eq(hook_log[4].tag, 1);
    cr_assert_eq(ch_hook_cancel(n, CH_HOOK_PRE_CHILDREN_START, "b"), -ENOENT);
    cr_assert_eq(ch_hook_cancel(n, CH_HOOK_PRE_CHILDREN_START, "never"), -ENOENT);
    cr_assert_eq(ch_hook_cancel(n, CH_HOOK_POST_CHILDREN_START, "a"), -ENOENT, "ids are per point");
    /* The id is free again after a cancel. */
    cr_assert_eq(
        ch_hook_register(n, CH_HOOK_PRE_CHILDREN_START, "b", 2, log_event, (void *)(intptr_t)22),
        0);
    start_one(n, "p3");
    cr_assert_eq(logged_now(), 8);
    cr_assert_eq(hook_log[6].tag, 22);
    th_node_free(n);
}

Test(hooks, duplicate_hook_id_on_a_point_returns_eexist)
{
    ch_node *n = hook_node();
    cr_assert_eq(
        ch_hook_register(n, CH_HOOK_PRE_CHILDREN_START, "dup", 0, log_event, (void *)(intptr_t)1),
        0);
    cr_assert_eq(
        ch_hook_register(n, CH_HOOK_PRE_CHILDREN_START, "dup", 7, log_event, (void *)(intptr_t)2),
        -EEXIST);
    cr_assert_eq(
        ch_hook_register(n, CH_HOOK_POST_CHILDREN_START, "dup", 0, log_event, (void *)(intptr_t)3),
        0, "the same id on another point is fine");
    start_one(n, "p");
    cr_assert(TH_WAIT(logged_now() == 2, TH_WAIT_MS));
    cr_assert_eq(hook_log[0].tag, 1, "the refused handler did not replace the first");
    th_node_free(n);
}

Test(hooks, register_on_an_invalid_point_fails)
{
    ch_node *n = hook_node();
    cr_assert_lt(ch_hook_register(n, CH_HOOK_POINTS, "x", 0, log_event, NULL), 0);
    cr_assert_lt(ch_hook_register(n, (ch_hook_point)-1, "x", 0, log_event, NULL), 0);
    cr_assert_lt(ch_hook_register(n, CH_HOOK_PRE_CHILDREN_START, "x", 0, NULL, NULL), 0);
    th_node_free(n);
}

/* --- alter --------------------------------------------------------------------------------- */

static const char ALTERED_META[] = "new meta";

static void alter_child(void *ud, ch_hook_event *ev)
{
    ch_child_spec *s = ev->spec;
    size_t len = s->id_len; /* hooks see the length, never CH_ID_CSTR */
    if (len != 8 || memcmp(s->id, "alter-me", 8) != 0) return;
    s->arg = "altered arg";
    s->arg_len = 11;
    s->meta = ALTERED_META;
    s->meta_len = sizeof(ALTERED_META) - 1;
    s->tag = "altered";
}

Test(hooks, alter_hook_changes_arg_meta_and_tag_before_the_child_starts)
{
    ch_node *n = hook_node();
    cr_assert_eq(ch_hook_register(n, CH_HOOK_CHILD_ALTER, "alter", 0, alter_child, NULL), 0);
    cr_assert_eq(ch_hook_register(n, CH_HOOK_CHILD_ALTER, "log", -1, log_event, NULL), 0);
    ch_child_spec specs[2] = {th_spec("alter-me", TH_TYPE), th_spec("leave-me", TH_TYPE)};
    for (int i = 0; i < 2; i++) {
        specs[i].arg = "original";
        specs[i].arg_len = 8;
        specs[i].meta = "m";
        specs[i].meta_len = 1;
        specs[i].tag = "orig";
    }
    int res[2] = {1, 1};
    ch_batch_opts o = {.timeout_ms = TH_WAIT_MS};
    cr_assert_eq(ch_start_children(n, specs, 2, &o, res), 0);
    cr_assert_str_eq(specs[0].tag, "orig", "the caller's spec is not modified");

    cr_assert_eq(logged_now(), 2, "alter runs once per child");
    cr_assert_neq(find_event(CH_HOOK_CHILD_ALTER, "alter-me", 0), -1);
    cr_assert_neq(find_event(CH_HOOK_CHILD_ALTER, "leave-me", 0), -1);

    char buf[32];
    size_t len = 0;
    cr_assert_eq(th_call(n, "alter-me", "s", buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, 11, "init got the altered argument");
    cr_assert_arr_eq(buf, "altered arg", 11);
    ch_proc_info *info = NULL;
    cr_assert_eq(ch_lookup(n, "alter-me", CH_ID_CSTR, &info), 0);
    cr_assert_str_eq(info->tag, "altered");
    cr_assert_eq(info->meta_len, sizeof(ALTERED_META) - 1);
    cr_assert_arr_eq(info->meta, ALTERED_META, sizeof(ALTERED_META) - 1);
    cr_assert_eq(info->arg_len, 11);
    ch_proc_info_free(info);

    cr_assert_eq(ch_lookup(n, "leave-me", CH_ID_CSTR, &info), 0);
    cr_assert_str_eq(info->tag, "orig");
    cr_assert_arr_eq(info->arg, "original", 8);
    ch_proc_info_free(info);

    ch_proc_list l = {0};
    cr_assert_eq(ch_list(n, "altered", &l), 0);
    cr_assert_eq(l.count, 1);
    ch_proc_list_free(&l);
    th_node_free(n);
}

/* --- pre/post children start ------------------------------------------------------------- */

Test(hooks, pre_and_post_children_start_see_the_specs_and_the_results)
{
    ch_node *n = hook_node();
    cr_assert_eq(ch_hook_register(n, CH_HOOK_PRE_CHILDREN_START, "pre", 0, log_event, NULL), 0);
    cr_assert_eq(ch_hook_register(n, CH_HOOK_POST_CHILDREN_START, "post", 0, log_event, NULL), 0);
    ch_child_spec specs[3] = {th_spec("h0", TH_TYPE), th_spec("h1", "nope"),
                              th_spec("h2", TH_TYPE)};
    specs[2].arg = "refuse";
    specs[2].arg_len = 6;
    int res[3];
    ch_batch_opts o = {.timeout_ms = TH_WAIT_MS};
    cr_assert_eq(ch_start_children(n, specs, 3, &o, res), CH_EPARTIAL);
    cr_assert(TH_WAIT(logged_now() == 2, TH_WAIT_MS), "%d hook events", logged_now());

    const logged *pre = &hook_log[0], *post = &hook_log[1];
    cr_assert_eq(pre->point, CH_HOOK_PRE_CHILDREN_START);
    cr_assert_eq(pre->count, 3);
    cr_assert_str_eq(pre->ids[0], "h0");
    cr_assert_str_eq(pre->ids[1], "h1");
    cr_assert_str_eq(pre->ids[2], "h2");
    cr_assert_str_eq(pre->types[1], "nope");
    cr_assert(pre->on_test_thread, "pre runs on the calling thread");

    cr_assert_eq(post->point, CH_HOOK_POST_CHILDREN_START);
    cr_assert_eq(post->count, 3);
    cr_assert_str_eq(post->ids[0], "h0");
    cr_assert_str_eq(post->ids[2], "h2");
    cr_assert_eq(post->results[0], 0);
    cr_assert_eq(post->results[1], CH_EUNKNOWN_TYPE);
    cr_assert_eq(post->results[2], CH_EINIT);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(post->results[i], res[i], "hook and caller agree on child %d", i);
    th_node_free(n);
}

static atomic_int async_done;

static void on_async_done(void *ud, const int *results, size_t count)
{
    atomic_store(&async_done, 1);
}

Test(hooks, post_children_start_fires_for_an_async_batch)
{
    ch_node *n = hook_node();
    cr_assert_eq(ch_hook_register(n, CH_HOOK_PRE_CHILDREN_START, "pre", 0, log_event, NULL), 0);
    cr_assert_eq(ch_hook_register(n, CH_HOOK_POST_CHILDREN_START, "post", 0, log_event, NULL), 0);
    ch_child_spec specs[2] = {th_spec("async", TH_TYPE), th_spec("async", TH_TYPE)};
    ch_batch_opts o = {.on_done = on_async_done};
    cr_assert_eq(ch_start_children(n, specs, 2, &o, NULL), 0);
    cr_assert(TH_WAIT(logged_now() == 2 && atomic_load(&async_done), TH_WAIT_MS));
    cr_assert_eq(hook_log[0].point, CH_HOOK_PRE_CHILDREN_START);
    cr_assert(hook_log[0].on_test_thread, "pre runs on the calling thread");
    const logged *post = &hook_log[1];
    cr_assert_eq(post->point, CH_HOOK_POST_CHILDREN_START);
    cr_assert_eq(post->count, 2);
    cr_assert((post->results[0] == 0 && post->results[1] == CH_EALREADY) ||
                  (post->results[0] == CH_EALREADY && post->results[1] == 0),
              "results %d %d", post->results[0], post->results[1]);
    th_node_free(n);
}

/* --- registry insert/remove ---------------------------------------------------------------- */

static void register_registry_hooks(ch_node *n)
{
    cr_assert_eq(ch_hook_register(n, CH_HOOK_REGISTRY_INSERT, "ins", 0, log_event, NULL), 0);
    cr_assert_eq(ch_hook_register(n, CH_HOOK_REGISTRY_REMOVE, "rem", 0, log_event, NULL), 0);
}

Test(hooks, registry_insert_fires_on_the_owner_reactor_when_a_child_starts)
{
    ch_node *n = hook_node();
    register_registry_hooks(n);
    start_one(n, "ins-a");
    start_one(n, "ins-b");
    cr_assert(TH_WAIT(logged_now() >= 2, TH_WAIT_MS));
    const char *ids[2] = {"ins-a", "ins-b"};
    for (int k = 0; k < 2; k++) {
        int i = find_event(CH_HOOK_REGISTRY_INSERT, ids[k], 0);
        cr_assert_neq(i, -1, "no insert for %s", ids[k]);
        int core = ch_node_core_of(n, ids[k], CH_ID_CSTR);
        cr_assert_eq(hook_log[i].id_len, 5);
        cr_assert_eq((int)hook_log[i].core, core);
        cr_assert_eq(hook_log[i].incarnation, 0);
        cr_assert_eq(hook_log[i].current_core, core, "ran on core %d, owner is %d",
                     hook_log[i].current_core, core);
    }
    cr_assert_eq(find_event(CH_HOOK_REGISTRY_REMOVE, "ins-a", 0), -1);
    th_node_free(n);
}

Test(hooks, registry_remove_fires_with_the_reason_when_a_child_ends)
{
    ch_node *n = hook_node();
    register_registry_hooks(n);
    start_one(n, "stopped");
    th_start(n, "exits", CH_TEMPORARY, NULL);
    cr_assert_eq(th_stop(n, "stopped"), 0);
    cr_assert_eq(th_send(n, "exits", CH_ID_CSTR, "x", 1), 0);
    cr_assert(TH_WAIT(find_event(CH_HOOK_REGISTRY_REMOVE, "stopped", 0) >= 0 &&
                          find_event(CH_HOOK_REGISTRY_REMOVE, "exits", 0) >= 0,
                      TH_WAIT_MS),
              "remove events missing");
    int i = find_event(CH_HOOK_REGISTRY_REMOVE, "stopped", 0);
    cr_assert_eq(hook_log[i].reason, CH_REASON_STOPPED);
    cr_assert_eq((int)hook_log[i].core, ch_node_core_of(n, "stopped", CH_ID_CSTR));
    cr_assert_eq(hook_log[i].current_core, ch_node_core_of(n, "stopped", CH_ID_CSTR));
    i = find_event(CH_HOOK_REGISTRY_REMOVE, "exits", 0);
    cr_assert_eq(hook_log[i].reason, CH_REASON_NORMAL);
    cr_assert_eq(hook_log[i].current_core, ch_node_core_of(n, "exits", CH_ID_CSTR));
    th_assert_no_bad();
    th_node_free(n);
}
