/*
 * tests/test_timer.c - process timers: delivery, cancellation, order, lifetime.
 *
 * The "tm" type handles the opcodes below and hands any other message to "tp":
 *   'T' u32 delay, data  start a timer; answers tm_started
 *   'A'                  start "A" (50 ms) and "B" (150 ms), cancel A twice; answers tm_pair
 *   'M'                  start "3" (60 ms), "1" (20 ms), "2" (40 ms) in one callback
 *   'C' u64 id           cancel; answers the code
 *   'K' u32 n            start n timers, i-th after 1 + i % 50 ms with data "k<i>"
 * Every CH_MSG_TIMER it gets is appended to `fired`.
 */
#include "helpers.h"

TestSuite(timer, .timeout = 60);

typedef struct tm_started {
    int rc;
    uint64_t timer_id;
} tm_started;

typedef struct tm_pair {
    int start_a, start_b;
    int cancel_first, cancel_second;
    uint64_t id_a, id_b;
} tm_pair;

typedef struct fired_timer {
    char proc[16];
    uint64_t ref;
    char data[16];
    size_t len;
    uint32_t incarnation;
    uint64_t at_ns;
} fired_timer;

#define FIRED_MAX 16
static fired_timer fired[FIRED_MAX];
static atomic_int fired_count; /* release: fired[0..count) are written */

static atomic_int many_fired;
static atomic_int many_bad;
static unsigned char many_seen[2000];

static int fired_now(void)
{
    return atomic_load_explicit(&fired_count, memory_order_acquire);
}

static void record_timer(ch_proc *p, const ch_msg *m)
{
    int i = atomic_load(&fired_count);
    th_check(i < FIRED_MAX);
    if (i >= FIRED_MAX) return;
    fired_timer *f = &fired[i];
    size_t len;
    const char *id = ch_proc_id(p, &len);
    memcpy(f->proc, id, len < sizeof(f->proc) - 1 ? len : sizeof(f->proc) - 1);
    f->ref = m->ref;
    f->len = m->len;
    if (m->len) memcpy(f->data, m->data, m->len < sizeof(f->data) ? m->len : sizeof(f->data));
    f->incarnation = ch_proc_incarnation(p);
    f->at_ns = th_now_ns();
    atomic_store_explicit(&fired_count, i + 1, memory_order_release);
}

static int tm_handle(ch_proc *p, const ch_msg *m)
{
    if (m->kind == CH_MSG_TIMER && m->len >= 2 && ((const char *)m->data)[0] == 'k') {
        char data[16] = {0};
        memcpy(data, m->data, m->len < 15 ? m->len : 15);
        unsigned i = (unsigned)atoi(data + 1);
        if (i >= sizeof(many_seen) || many_seen[i]++) atomic_fetch_add(&many_bad, 1);
        atomic_fetch_add(&many_fired, 1);
        return CH_CONTINUE;
    }
    if (m->kind == CH_MSG_TIMER) {
        record_timer(p, m);
        return CH_CONTINUE;
    }
    if (m->len == 0) return th_tp_handle(p, m);
    const char *d = m->data;
    switch (d[0]) {
    case 'T': {
        uint32_t delay;
        th_check(m->len >= 5);
        memcpy(&delay, d + 1, sizeof(delay));
        char data[16]; /* the timer must copy its data: this buffer dies now */
        size_t len = m->len - 5 < sizeof(data) ? m->len - 5 : sizeof(data);
        memcpy(data, d + 5, len);
        tm_started st = {0};
        st.rc = ch_timer_start(p, delay, data, len, &st.timer_id);
        memset(data, '#', sizeof(data));
        th_answer(p, m, &st, sizeof(st));
        return CH_CONTINUE;
    }
    case 'A': {
        tm_pair r = {0};
        r.start_a = ch_timer_start(p, 50, "A", 1, &r.id_a);
        r.start_b = ch_timer_start(p, 150, "B", 1, &r.id_b);
        r.cancel_first = ch_timer_cancel(p, r.id_a);
        r.cancel_second = ch_timer_cancel(p, r.id_a);
        th_answer(p, m, &r, sizeof(r));
        return CH_CONTINUE;
    }
    case 'M': {
        uint64_t id;
        int rc = ch_timer_start(p, 60, "3", 1, &id);
        rc |= ch_timer_start(p, 20, "1", 1, &id);
        rc |= ch_timer_start(p, 40, "2", 1, &id);
        th_answer(p, m, &rc, sizeof(rc));
        return CH_CONTINUE;
    }
    case 'K': {
        uint32_t count;
        memcpy(&count, d + 1, sizeof(count));
        int rc = 0;
        for (uint32_t i = 0; i < count; i++) {
            char data[16];
            int len = snprintf(data, sizeof(data), "k%u", i);
            uint64_t id;
            rc |= ch_timer_start(p, 1 + i % 50, data, (size_t)len, &id);
        }
        th_answer(p, m, &rc, sizeof(rc));
        return CH_CONTINUE;
    }
    case 'C': {
        uint64_t id;
        th_check(m->len == 9);
        memcpy(&id, d + 1, sizeof(id));
        int rc = ch_timer_cancel(p, id);
        th_answer(p, m, &rc, sizeof(rc));
        return CH_CONTINUE;
    }
    default:
        return th_tp_handle(p, m);
    }
}

static ch_node *tm_node(void)
{
    ch_node_config cfg = th_config(2);
    ch_node *n = th_node_create(&cfg);
    ch_process_type tm = th_tp_type();
    tm.name = "tm";
    tm.handle = tm_handle;
    cr_assert_eq(ch_node_register_type(n, &tm), 0);
    th_node_start(n);
    return n;
}

static void tm_start(ch_node *n, const char *id, ch_restart restart)
{
    ch_child_spec s = th_spec(id, "tm");
    s.restart = restart;
    th_start_spec(n, &s);
}

/* Has `id` start a timer; returns its id. */
static uint64_t timer_start(ch_node *n, const char *id, uint32_t delay_ms, const char *data)
{
    uint8_t req[32];
    size_t dlen = strlen(data);
    cr_assert_leq(dlen, sizeof(req) - 5);
    req[0] = 'T';
    memcpy(req + 1, &delay_ms, sizeof(delay_ms));
    memcpy(req + 5, data, dlen);
    tm_started st = {.rc = 1000};
    size_t len = 0;
    int rc = ch_call(n, id, CH_ID_CSTR, req, 5 + dlen, &st, sizeof(st), &len, TH_CALL_MS);
    cr_assert_eq(rc, 0, "call %s: %s", id, ch_strerror(rc));
    cr_assert_eq(len, sizeof(st));
    cr_assert_eq(st.rc, 0, "ch_timer_start: %s", ch_strerror(st.rc));
    return st.timer_id;
}

static int timer_cancel(ch_node *n, const char *id, uint64_t timer_id)
{
    uint8_t req[9] = {'C'};
    memcpy(req + 1, &timer_id, sizeof(timer_id));
    int code = 1000;
    size_t len = 0;
    cr_assert_eq(
        ch_call(n, id, CH_ID_CSTR, req, sizeof(req), &code, sizeof(code), &len, TH_CALL_MS), 0);
    return code;
}

static void wait_fired(int count)
{
    cr_assert(TH_WAIT(fired_now() >= count, TH_WAIT_MS), "%d timer(s) fired, want %d", fired_now(),
              count);
}

static void assert_fired(int i, const char *proc, const char *data)
{
    cr_assert_str_eq(fired[i].proc, proc, "timer %d fired on %s", i, fired[i].proc);
    cr_assert_eq(fired[i].len, strlen(data));
    cr_assert_arr_eq(fired[i].data, data, strlen(data), "timer %d carried %.*s", i,
                     (int)fired[i].len, fired[i].data);
}

Test(timer, delivers_a_timer_message_with_its_data_after_the_delay)
{
    ch_node *n = tm_node();
    tm_start(n, "clock", CH_PERMANENT);
    uint64_t t0 = th_now_ns();
    uint64_t id = timer_start(n, "clock", 100, "tick");
    wait_fired(1);
    assert_fired(0, "clock", "tick");
    cr_assert_eq(fired[0].ref, id, "ref is the timer id");
    uint64_t ms = (fired[0].at_ns - t0) / 1000000u;
    cr_assert_geq(ms, 50, "a 100 ms timer fired after %lu ms", (unsigned long)ms);

    /* It fires once: a later timer is the only other delivery. */
    uint64_t id2 = timer_start(n, "clock", 20, "tock");
    cr_assert_neq(id2, id, "timer ids are distinct");
    wait_fired(2);
    assert_fired(1, "clock", "tock");
    cr_assert_eq(fired[1].ref, id2);
    cr_assert_eq(fired_now(), 2);
    th_assert_no_bad();
    th_node_free(n);
}

Test(timer, cancelled_timer_is_never_delivered)
{
    ch_node *n = tm_node();
    tm_start(n, "clock", CH_PERMANENT);
    tm_pair r;
    size_t len = 0;
    cr_assert_eq(ch_call(n, "clock", CH_ID_CSTR, "A", 1, &r, sizeof(r), &len, TH_CALL_MS), 0);
    cr_assert_eq(len, sizeof(r));
    cr_assert_eq(r.start_a, 0);
    cr_assert_eq(r.start_b, 0);
    cr_assert_neq(r.id_a, r.id_b);
    cr_assert_eq(r.cancel_first, 0);
    cr_assert_eq(r.cancel_second, -ENOENT, "a second cancel: %s", ch_strerror(r.cancel_second));
    /* B's deadline is 100 ms after A's: had A survived, it would arrive first. */
    wait_fired(1);
    assert_fired(0, "clock", "B");
    cr_assert_eq(fired[0].ref, r.id_b);
    /* One more timer after B, to give a stray A every chance to show up. */
    timer_start(n, "clock", 50, "C");
    wait_fired(2);
    assert_fired(1, "clock", "C");
    cr_assert_eq(fired_now(), 2);
    th_node_free(n);
}

Test(timer, cancel_of_a_fired_timer_returns_enoent)
{
    ch_node *n = tm_node();
    tm_start(n, "clock", CH_PERMANENT);
    uint64_t id = timer_start(n, "clock", 10, "x");
    wait_fired(1);
    cr_assert_eq(timer_cancel(n, "clock", id), -ENOENT);
    cr_assert_eq(timer_cancel(n, "clock", id + 1000), -ENOENT, "an unknown id");
    th_node_free(n);
}

Test(timer, timers_fire_in_deadline_order)
{
    ch_node *n = tm_node();
    tm_start(n, "clock", CH_PERMANENT);
    int rc = 1000;
    size_t len = 0;
    cr_assert_eq(ch_call(n, "clock", CH_ID_CSTR, "M", 1, &rc, sizeof(rc), &len, TH_CALL_MS), 0);
    cr_assert_eq(rc, 0);
    wait_fired(3);
    assert_fired(0, "clock", "1");
    assert_fired(1, "clock", "2");
    assert_fired(2, "clock", "3");
    th_node_free(n);
}

Test(timer, timers_of_different_processes_are_delivered_to_their_owner)
{
    ch_node *n = tm_node();
    char a[32], b[32];
    th_id_on_core(n, "ta", 0, a, sizeof(a));
    th_id_on_core(n, "tb", 1, b, sizeof(b));
    tm_start(n, a, CH_PERMANENT);
    tm_start(n, b, CH_PERMANENT);
    timer_start(n, a, 30, "for a");
    timer_start(n, b, 150, "for b");
    wait_fired(2);
    assert_fired(0, a, "for a");
    assert_fired(1, b, "for b");
    th_node_free(n);
}

Test(timer, many_timers_all_fire_once_with_their_data)
{
    ch_node *n = tm_node();
    tm_start(n, "clock", CH_PERMANENT);
    uint8_t req[5] = {'K'};
    uint32_t count = 2000;
    memcpy(req + 1, &count, sizeof(count));
    int rc = 1000;
    size_t len = 0;
    cr_assert_eq(
        ch_call(n, "clock", CH_ID_CSTR, req, sizeof(req), &rc, sizeof(rc), &len, TH_CALL_MS), 0);
    cr_assert_eq(rc, 0);
    cr_assert(TH_WAIT(atomic_load(&many_fired) >= 2000, TH_WAIT_MS), "%d of 2000 fired",
              atomic_load(&many_fired));
    /* A sentinel after them all: nothing more arrives. */
    timer_start(n, "clock", 100, "end");
    wait_fired(1);
    cr_assert_eq(atomic_load(&many_fired), 2000);
    cr_assert_eq(atomic_load(&many_bad), 0, "a timer fired twice or with wrong data");
    th_node_free(n);
}

Test(timer, a_process_cannot_cancel_another_process_timer)
{
    ch_node *n = tm_node();
    char a[32], b[32];
    th_id_on_core(n, "ta", 1, a, sizeof(a));
    th_id_on_core(n, "tb", 1, b, sizeof(b)); /* same core: same timer id space */
    tm_start(n, a, CH_PERMANENT);
    tm_start(n, b, CH_PERMANENT);
    uint64_t id = timer_start(n, a, 100, "mine");
    cr_assert_eq(timer_cancel(n, b, id), -ENOENT);
    wait_fired(1);
    assert_fired(0, a, "mine");
    th_node_free(n);
}

Test(timer, timers_die_with_a_stopped_process)
{
    ch_node *n = tm_node();
    tm_start(n, "doomed", CH_PERMANENT);
    tm_start(n, "witness", CH_PERMANENT);
    timer_start(n, "doomed", 200, "ghost");
    cr_assert_eq(th_stop(n, "doomed"), 0);
    /* The witness's timer is due after the doomed one would have been. */
    timer_start(n, "witness", 400, "alive");
    wait_fired(1);
    assert_fired(0, "witness", "alive");
    cr_assert_eq(fired_now(), 1);
    th_assert_serves(n, "witness");
    th_node_free(n);
}

Test(timer, timers_die_with_the_incarnation_when_a_process_restarts)
{
    ch_node *n = tm_node();
    tm_start(n, "phoenix", CH_PERMANENT);
    timer_start(n, "phoenix", 200, "old");
    cr_assert_eq(th_send(n, "phoenix", CH_ID_CSTR, "c", 1), 0);
    cr_assert(TH_WAIT(th_incarnation(n, "phoenix") == 1, TH_WAIT_MS));
    timer_start(n, "phoenix", 400, "new");
    wait_fired(1);
    assert_fired(0, "phoenix", "new");
    cr_assert_eq(fired[0].incarnation, 1);
    cr_assert_eq(fired_now(), 1, "the old incarnation's timer was delivered too");
    th_node_free(n);
}

Test(timer, node_stop_with_pending_timers_is_clean)
{
    ch_node *n = tm_node();
    for (int i = 0; i < 20; i++) {
        char id[8];
        snprintf(id, sizeof(id), "t%d", i);
        tm_start(n, id, CH_PERMANENT);
        timer_start(n, id, 5000 + (uint32_t)i, "late");
    }
    th_node_free(n);
    cr_assert_eq(fired_now(), 0);
    cr_assert_eq(atomic_load(&th.terminates[CH_REASON_SHUTDOWN]), 20);
}
