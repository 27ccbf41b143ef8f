/*
 * tests/lib/helpers.h - what the tests of one in-process node share: a node factory, "tp", a
 * scriptable process type, and TH_WAIT, waiting on an expression with a deadline (wait.h
 * has the rest of waiting).
 *
 * Criterion forks each test, so the globals below start at zero in every test. Process
 * callbacks run on reactor threads, where a Criterion assertion must not be used (it would
 * unwind the wrong thread): they record what they see in atomics (th_check) and the test
 * thread asserts on those.
 *
 * The "tp" type. Its state is a copy of the init argument. init refuses (-EPERM) when the
 * argument starts with "refuse". A message is an opcode byte followed by its operands; calls
 * are answered, casts only run the effect:
 *   'e' rest      echo rest               'i'       own id
 *   's'           the state (init arg)    'n'       incarnation (uint32_t)
 *   'm'           the metadata            'g'       the tag
 *   'k'           {ch_proc_core, ch_node_current_core} as two ints
 *   'b' u32 len   len bytes of th_pattern(i); ch_reply's code goes to th.big_reply_rc
 *   'c'           crash (returns -EIO)    'x'       normal exit (CH_EXIT)
 *   'z'           return without replying 'd'       defer the reply, never answer
 *   'D'           defer into th_token (the previous token moves to th_token_prev)
 *   'R' rest      (cast) answer th_token with rest; the code goes to th.reply_send_rc
 *   'O' rest      (cast) answer th_token_prev with rest; the code goes to th.reply_send_rc
 *   '2'           reply twice: the second ch_reply's code goes to th.second_reply_rc
 */
#ifndef CH_TESTS_HELPERS_H
#define CH_TESTS_HELPERS_H

#include <criterion/criterion.h>
#include <corehub/corehub.h>

#include "wait.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TH_TYPE         "tp"
#define TH_WAIT_MS      10000u /* deadline for what should take milliseconds */
#define TH_CALL_MS      10000u /* call timeout for calls that should succeed */
#define TH_LONG_WAIT_MS 60000u /* deadline for bulk work (100k processes...) */

/* --- waiting -------------------------------------------------------------------------- */

/* wait_until for an expression: TH_WAIT(atomic_load(&x) == 3, TH_WAIT_MS) is true or false. */
#define TH_WAIT(expr, timeout_ms)                                                                  \
    __extension__({                                                                                \
        const uint64_t th__deadline = th_now_ms() + (timeout_ms);                                  \
        while (!(expr) && th_now_ms() < th__deadline)                                              \
            th_poll_pause();                                                                       \
        (bool)(expr);                                                                              \
    })

/* --- what reactor-side code saw -------------------------------------------------------- */

typedef struct th_counters {
    atomic_int inits;           /* successful init calls */
    atomic_int init_restarts;   /* ... of which had CH_INIT_RESTART */
    atomic_int init_refusals;   /* init calls that refused */
    atomic_int terminates[5];   /* by ch_reason */
    atomic_int casts;           /* CH_MSG_CAST handled by tp */
    atomic_int calls;           /* CH_MSG_CALL handled by tp */
    atomic_int deferred;        /* times 'D' stored a token in th_token */
    atomic_int reply_send_rc;   /* last ch_reply_send code of 'R' (+1000 when unset) */
    atomic_int second_reply_rc; /* second ch_reply of '2' */
    atomic_int big_reply_rc;    /* ch_reply of 'b' (+1000 when unset) */
    atomic_int bad;             /* failed th_check on a reactor thread */
    atomic_int bad_line;        /* line of the first one */
} th_counters;

static th_counters th;
/* Written and read by the 'D'/'R'/'O' process only. */
static ch_reply_token th_token;      /* the latest deferred call */
static ch_reply_token th_token_prev; /* the one before it */

#define th_check(cond)                                                                             \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            int th__zero = 0;                                                                      \
            atomic_compare_exchange_strong(&th.bad_line, &th__zero, __LINE__);                     \
            atomic_fetch_add(&th.bad, 1);                                                          \
        }                                                                                          \
    } while (0)

/* Asserts, on the test thread, that no reactor-side check failed. */
#define th_assert_no_bad()                                                                         \
    cr_assert_eq(atomic_load(&th.bad), 0, "%d reactor-side check(s) failed, first at line %d",     \
                 atomic_load(&th.bad), atomic_load(&th.bad_line))

static inline uint8_t th_pattern(size_t i)
{
    return (uint8_t)(i * 7u + 3u);
}

/* --- the "tp" process type ------------------------------------------------------------- */

static inline int th_tp_init(ch_proc *p, const void *arg, size_t arg_len, unsigned flags)
{
    if (arg_len >= 6 && memcmp(arg, "refuse", 6) == 0) {
        atomic_fetch_add(&th.init_refusals, 1);
        return -EPERM;
    }
    if (arg_len) {
        void *s = ch_proc_state_resize(p, arg_len);
        if (!s) return -ENOMEM;
        memcpy(s, arg, arg_len);
    }
    atomic_fetch_add(&th.inits, 1);
    if (flags & CH_INIT_RESTART) atomic_fetch_add(&th.init_restarts, 1);
    return 0;
}

static inline void th_tp_terminate(ch_proc *p, ch_reason reason)
{
    if ((unsigned)reason < 5) atomic_fetch_add(&th.terminates[reason], 1);
}

/* Answers a call (a cast gets nothing). */
static inline void th_answer(ch_proc *p, const ch_msg *m, const void *data, size_t len)
{
    if (m->kind != CH_MSG_CALL) return;
    int rc = ch_reply(p, m, data, len);
    th_check(rc == 0);
}

static inline int th_tp_handle(ch_proc *p, const ch_msg *m)
{
    if (m->kind == CH_MSG_CAST)
        atomic_fetch_add(&th.casts, 1);
    else if (m->kind == CH_MSG_CALL)
        atomic_fetch_add(&th.calls, 1);
    else
        return CH_CONTINUE;
    if (m->len == 0) {
        th_answer(p, m, NULL, 0);
        return CH_CONTINUE;
    }
    const char *d = m->data;
    const char *rest = d + 1;
    size_t rlen = m->len - 1;
    size_t len;
    switch (d[0]) {
    case 'e':
        th_answer(p, m, rest, rlen);
        break;
    case 'i': {
        const char *id = ch_proc_id(p, &len);
        th_answer(p, m, id, len);
        break;
    }
    case 's': {
        void *s = ch_proc_state(p, &len);
        th_answer(p, m, s, len);
        break;
    }
    case 'n': {
        uint32_t inc = ch_proc_incarnation(p);
        th_answer(p, m, &inc, sizeof(inc));
        break;
    }
    case 'm': {
        const void *meta = ch_proc_meta(p, &len);
        th_answer(p, m, meta, len);
        break;
    }
    case 'g': {
        const char *tag = ch_proc_tag(p);
        th_check(tag != NULL);
        th_answer(p, m, tag, tag ? strlen(tag) : 0);
        break;
    }
    case 'k': {
        int cores[2] = {(int)ch_proc_core(p), ch_node_current_core(ch_proc_node(p))};
        th_answer(p, m, cores, sizeof(cores));
        break;
    }
    case 'b': {
        uint32_t n = 0;
        th_check(rlen == sizeof(n));
        memcpy(&n, rest, sizeof(n));
        uint8_t *big = malloc(n ? n : 1);
        th_check(big != NULL);
        if (!big) return -ENOMEM;
        for (size_t i = 0; i < n; i++)
            big[i] = th_pattern(i);
        if (m->kind == CH_MSG_CALL) atomic_store(&th.big_reply_rc, ch_reply(p, m, big, n));
        free(big);
        break;
    }
    case 'c':
        return -EIO;
    case 'x':
        return CH_EXIT;
    case 'z':
        break;
    case 'd': {
        ch_reply_token tok;
        th_check(ch_reply_defer(p, m, &tok) == 0);
        break;
    }
    case 'D':
        th_token_prev = th_token;
        th_check(ch_reply_defer(p, m, &th_token) == 0);
        atomic_fetch_add(&th.deferred, 1);
        break;
    case 'R':
        atomic_store(&th.reply_send_rc, ch_reply_send(p, &th_token, rest, rlen));
        break;
    case 'O':
        atomic_store(&th.reply_send_rc, ch_reply_send(p, &th_token_prev, rest, rlen));
        break;
    case '2':
        th_answer(p, m, "one", 3);
        atomic_store(&th.second_reply_rc, ch_reply(p, m, "two", 3));
        break;
    default:
        th_check(!"unknown tp opcode");
        break;
    }
    return CH_CONTINUE;
}

static inline ch_process_type th_tp_type(void)
{
    ch_process_type t = {
        .name = TH_TYPE,
        .init = th_tp_init,
        .handle = th_tp_handle,
        .terminate = th_tp_terminate,
        .ud = &th,
    };
    return t;
}

/* --- nodes ----------------------------------------------------------------------------- */

/* A config for tests: `cores` reactors, never pinned (the machine is shared). */
static inline ch_node_config th_config(unsigned cores)
{
    ch_node_config cfg;
    ch_node_config_init(&cfg);
    cfg.name = "test";
    cfg.cores = cores;
    cfg.pin = 0;
    return cfg;
}

/* Creates a node with the "tp" type registered, not started yet. */
static inline ch_node *th_node_create(const ch_node_config *cfg)
{
    atomic_store(&th.reply_send_rc, 1000);
    atomic_store(&th.big_reply_rc, 1000);
    ch_node *n = NULL;
    int rc = ch_node_create(cfg, &n);
    cr_assert_eq(rc, 0, "ch_node_create: %s", ch_strerror(rc));
    cr_assert_not_null(n);
    ch_process_type t = th_tp_type();
    rc = ch_node_register_type(n, &t);
    cr_assert_eq(rc, 0, "register tp: %s", ch_strerror(rc));
    return n;
}

static inline void th_node_start(ch_node *n)
{
    int rc = ch_node_start(n);
    cr_assert_eq(rc, 0, "ch_node_start: %s", ch_strerror(rc));
}

/* Creates and starts a node of `cores` reactors with "tp" registered. */
static inline ch_node *th_node_new(unsigned cores)
{
    ch_node_config cfg = th_config(cores);
    ch_node *n = th_node_create(&cfg);
    th_node_start(n);
    return n;
}

static inline void th_node_free(ch_node *n)
{
    int rc = ch_node_stop(n);
    cr_assert_eq(rc, 0, "ch_node_stop: %s", ch_strerror(rc));
    ch_node_destroy(n);
}

static inline ch_node_stats th_stats(ch_node *n)
{
    ch_node_stats s;
    memset(&s, 0, sizeof(s));
    int rc = ch_node_stats_get(n, &s);
    cr_assert_eq(rc, 0, "ch_node_stats_get: %s", ch_strerror(rc));
    return s;
}

/* --- a gate that holds a reactor ------------------------------------------------------- */

/* Posted with ch_node_post, th_gate_hold keeps its reactor busy until the test opens the
 * gate (or 30 s pass): a deterministic way to make a core's mailboxes fill up. */
typedef struct th_gate {
    atomic_int entered;
    atomic_int open;
} th_gate;

static inline void th_gate_hold(ch_node *n, void *ud)
{
    th_gate *g = ud;
    atomic_store(&g->entered, 1);
    const uint64_t deadline = th_now_ms() + 30000;
    while (!atomic_load(&g->open) && th_now_ms() < deadline)
        th_poll_pause();
}

/* Holds reactor `core` until th_gate_open. */
static inline void th_gate_close(ch_node *n, th_gate *g, unsigned core)
{
    cr_assert_eq(ch_node_post(n, core, th_gate_hold, g), 0);
    cr_assert(TH_WAIT(atomic_load(&g->entered), TH_WAIT_MS), "core %u never ran the gate", core);
}

static inline void th_gate_open(th_gate *g)
{
    atomic_store(&g->open, 1);
}

/* --- processes ------------------------------------------------------------------------- */

static inline ch_child_spec th_spec(const char *id, const char *type)
{
    ch_child_spec s;
    memset(&s, 0, sizeof(s));
    s.id = id;
    s.id_len = CH_ID_CSTR;
    s.type = type;
    s.restart = CH_PERMANENT;
    return s;
}

/* Starts one child and asserts it started. */
static inline void th_start_spec(ch_node *n, const ch_child_spec *spec)
{
    ch_batch_opts o = {.timeout_ms = TH_WAIT_MS};
    int res = 12345;
    int rc = ch_start_children(n, spec, 1, &o, &res);
    cr_assert_eq(rc, 0, "start %s: %s", spec->id, ch_strerror(rc));
    cr_assert_eq(res, 0, "start %s: result %s", spec->id, ch_strerror(res));
}

/* Starts a "tp" child with this restart policy and NUL-terminated init argument. */
static inline void th_start(ch_node *n, const char *id, ch_restart restart, const char *arg)
{
    ch_child_spec s = th_spec(id, TH_TYPE);
    s.restart = restart;
    s.arg = arg;
    s.arg_len = arg ? strlen(arg) : 0;
    th_start_spec(n, &s);
}

static inline int th_stop(ch_node *n, const char *id)
{
    ch_batch_opts o = {.timeout_ms = TH_WAIT_MS};
    int res = 12345;
    int rc = ch_stop_children(n, &id, NULL, 1, &o, &res);
    return rc == 0 || rc == CH_EPARTIAL ? res : rc;
}

/* ch_call with a NUL-terminated request; the reply must fit `cap`. */
static inline int th_call(ch_node *n, const char *id, const char *req, void *reply, size_t cap,
                          size_t *reply_len)
{
    size_t dummy;
    return ch_call(n, id, CH_ID_CSTR, req, strlen(req), reply, cap, reply_len ? reply_len : &dummy,
                   TH_CALL_MS);
}

/* Asserts that `id` answers an echo call: the node still serves. */
static inline void th_assert_serves(ch_node *n, const char *id)
{
    char buf[16];
    size_t len = 0;
    int rc = th_call(n, id, "eping", buf, sizeof(buf), &len);
    cr_assert_eq(rc, 0, "echo call to %s: %s", id, ch_strerror(rc));
    cr_assert_eq(len, 4);
    cr_assert_arr_eq(buf, "ping", 4);
}

/* Sends a cast, retrying while the mailbox is full (-EAGAIN), up to a deadline. */
static inline int th_send(ch_node *n, const char *id, size_t id_len, const void *data, size_t len)
{
    const uint64_t deadline = th_now_ms() + TH_WAIT_MS;
    for (;;) {
        int rc = ch_send(n, id, id_len, data, len);
        if (rc != -EAGAIN || th_now_ms() >= deadline) return rc;
        th_poll_pause();
    }
}

/* The incarnation of `id` as the registry sees it, or -1 when it is not running. */
static inline int64_t th_incarnation(ch_node *n, const char *id)
{
    ch_proc_info *info = NULL;
    int rc = ch_lookup(n, id, CH_ID_CSTR, &info);
    if (rc != 0) return -1;
    int64_t inc = info->incarnation;
    ch_proc_info_free(info);
    return inc;
}

/* Writes into buf (cap >= 32) the first id "<prefix><k>" that lives on `core`. */
static inline void th_id_on_core(ch_node *n, const char *prefix, unsigned core, char *buf,
                                 size_t cap)
{
    for (unsigned k = 0; k < 100000; k++) {
        snprintf(buf, cap, "%s%u", prefix, k);
        if (ch_node_core_of(n, buf, CH_ID_CSTR) == (int)core) return;
    }
    cr_assert_fail("no id with prefix %s on core %u", prefix, core);
}

#endif
