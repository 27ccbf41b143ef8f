/*
 * tests/test_messaging.c - send, call, replies: ordering, blocking rules, timeouts,
 * deferred and truncated replies, dead letters.
 *
 * Types defined here besides "tp":
 *   "seq"  checks that each sender's sequence numbers strictly increase; a call answers its
 *          counters (seq_state).
 *   "fwd"  forwards every cast to the process named by its init argument.
 *   "pc"   on a cast pc_req, makes a ch_proc_call and records the CH_MSG_REPLY it gets.
 *   "blk"  on a call, tries every blocking function from its reactor and answers the codes.
 *   "flood" on a cast flood_req, sends seq casts to a target until the mailbox is full.
 */
#include "helpers.h"

#include <pthread.h>
#include <sched.h>

TestSuite(messaging, .timeout = 60);

/* --- "seq" ----------------------------------------------------------------------------- */

#define SENDERS 5 /* sender slots in a seq process (index 0: the test thread) */

typedef struct seq_msg {
    uint32_t sender;
    uint32_t seq; /* 1, 2, ... per sender */
} seq_msg;

typedef struct seq_state {
    uint64_t last[SENDERS];
    uint64_t count[SENDERS];
    uint64_t sum[SENDERS]; /* of the seqs handled */
    uint64_t violations;   /* a seq not above the sender's last one */
    uint64_t malformed;
} seq_state;

static atomic_int seq_violations; /* across all seq processes */

static int seq_init(ch_proc *p, const void *arg, size_t arg_len, unsigned flags)
{
    return ch_proc_state_resize(p, sizeof(seq_state)) ? 0 : -ENOMEM;
}

static int seq_handle(ch_proc *p, const ch_msg *m)
{
    size_t len;
    seq_state *st = ch_proc_state(p, &len);
    th_check(st != NULL && len == sizeof(*st));
    if (m->kind == CH_MSG_CALL) {
        th_check(ch_reply(p, m, st, sizeof(*st)) == 0);
        return CH_CONTINUE;
    }
    seq_msg sm;
    if (m->kind != CH_MSG_CAST || m->len != sizeof(sm)) {
        st->malformed++;
        return CH_CONTINUE;
    }
    memcpy(&sm, m->data, sizeof(sm));
    if (sm.sender >= SENDERS) {
        st->malformed++;
        return CH_CONTINUE;
    }
    if (sm.seq <= st->last[sm.sender]) {
        st->violations++;
        atomic_fetch_add(&seq_violations, 1);
    }
    st->last[sm.sender] = sm.seq;
    st->count[sm.sender]++;
    st->sum[sm.sender] += sm.seq;
    return CH_CONTINUE;
}

static seq_state seq_query(ch_node *n, const char *id)
{
    seq_state st;
    memset(&st, 0, sizeof(st));
    size_t len = 0;
    int rc = ch_call(n, id, CH_ID_CSTR, "Q", 1, &st, sizeof(st), &len, TH_CALL_MS);
    cr_assert_eq(rc, 0, "query %s: %s", id, ch_strerror(rc));
    cr_assert_eq(len, sizeof(st));
    return st;
}

static uint64_t seq_total(const seq_state *st)
{
    uint64_t t = 0;
    for (unsigned i = 0; i < SENDERS; i++)
        t += st->count[i];
    return t;
}

/* --- "fwd" ----------------------------------------------------------------------------- */

static atomic_int fwd_errors;

static int fwd_handle(ch_proc *p, const ch_msg *m)
{
    if (m->kind != CH_MSG_CAST) return CH_CONTINUE;
    size_t tlen;
    const char *target = ch_proc_state(p, &tlen);
    int rc = ch_send(ch_proc_node(p), target, tlen, m->data, m->len);
    if (rc != 0) atomic_fetch_add(&fwd_errors, 1);
    return CH_CONTINUE;
}

/* --- "pc" ------------------------------------------------------------------------------ */

typedef struct pc_req {
    uint64_t ref;
    uint32_t timeout_ms;
    uint32_t id_len;
    uint32_t req_len;
    /* followed by id bytes, then request bytes */
} pc_req;

typedef struct pc_reply {
    int status;
    uint64_t ref;
    size_t len;
    uint8_t *data; /* malloc'd copy */
    int core;      /* ch_node_current_core when it arrived */
    int proc_core; /* ch_proc_core */
    int call_rc;   /* what ch_proc_call returned */
} pc_reply;

#define PC_SLOTS 8
static pc_reply pc_replies[PC_SLOTS];
static atomic_int pc_count; /* slots filled (release) */
static atomic_int pc_call_rc;

static int pc_handle(ch_proc *p, const ch_msg *m)
{
    if (m->kind == CH_MSG_CAST) {
        pc_req r;
        th_check(m->len >= sizeof(r));
        memcpy(&r, m->data, sizeof(r));
        const char *id = (const char *)m->data + sizeof(r);
        int rc = ch_proc_call(p, id, r.id_len, id + r.id_len, r.req_len, r.timeout_ms, r.ref);
        atomic_store(&pc_call_rc, rc);
        return CH_CONTINUE;
    }
    if (m->kind != CH_MSG_REPLY) return CH_CONTINUE;
    int slot = atomic_load(&pc_count);
    th_check(slot < PC_SLOTS);
    if (slot >= PC_SLOTS) return CH_CONTINUE;
    pc_reply *out = &pc_replies[slot];
    out->status = m->status;
    out->ref = m->ref;
    out->len = m->len;
    out->data = malloc(m->len ? m->len : 1);
    if (m->len) memcpy(out->data, m->data, m->len);
    out->core = ch_node_current_core(ch_proc_node(p));
    out->proc_core = (int)ch_proc_core(p);
    atomic_store_explicit(&pc_count, slot + 1, memory_order_release);
    return CH_CONTINUE;
}

/* Has the "pc" process `pc_id` call `target` with `req`, waits for the CH_MSG_REPLY. */
static const pc_reply *pc_roundtrip(ch_node *n, const char *pc_id, const char *target,
                                    const void *req, size_t req_len, uint32_t timeout_ms,
                                    uint64_t ref)
{
    size_t id_len = strlen(target);
    size_t len = sizeof(pc_req) + id_len + req_len;
    uint8_t *msg = malloc(len);
    pc_req r = {.ref = ref,
                .timeout_ms = timeout_ms,
                .id_len = (uint32_t)id_len,
                .req_len = (uint32_t)req_len};
    memcpy(msg, &r, sizeof(r));
    memcpy(msg + sizeof(r), target, id_len);
    memcpy(msg + sizeof(r) + id_len, req, req_len);
    int before = atomic_load(&pc_count);
    atomic_store(&pc_call_rc, 1000);
    int rc = th_send(n, pc_id, CH_ID_CSTR, msg, len);
    free(msg);
    cr_assert_eq(rc, 0, "send to %s: %s", pc_id, ch_strerror(rc));
    cr_assert(TH_WAIT(atomic_load(&pc_call_rc) != 1000, TH_WAIT_MS), "pc never ran");
    cr_assert_eq(atomic_load(&pc_call_rc), 0, "ch_proc_call: %s",
                 ch_strerror(atomic_load(&pc_call_rc)));
    cr_assert(TH_WAIT(atomic_load_explicit(&pc_count, memory_order_acquire) > before,
                      timeout_ms + TH_WAIT_MS),
              "no CH_MSG_REPLY came back");
    cr_assert_eq(atomic_load(&pc_count), before + 1, "one call, one reply");
    return &pc_replies[before];
}

/* --- "blk" ----------------------------------------------------------------------------- */

enum { BLK_CALL, BLK_LOOKUP, BLK_LIST, BLK_START, BLK_STOP, BLK_N };

static void blk_try_all(ch_node *n, int *codes)
{
    char buf[8];
    size_t len;
    codes[BLK_CALL] = ch_call(n, "target", CH_ID_CSTR, "eping", 5, buf, sizeof(buf), &len, 1000);
    ch_proc_info *info = NULL;
    codes[BLK_LOOKUP] = ch_lookup(n, "target", CH_ID_CSTR, &info);
    if (codes[BLK_LOOKUP] == 0) ch_proc_info_free(info);
    ch_proc_list list = {0};
    codes[BLK_LIST] = ch_list(n, NULL, &list);
    if (codes[BLK_LIST] == 0) ch_proc_list_free(&list);
    ch_child_spec s = th_spec("from-reactor", TH_TYPE);
    ch_batch_opts o = {.timeout_ms = 1000};
    int res;
    codes[BLK_START] = ch_start_children(n, &s, 1, &o, &res);
    const char *id = "target";
    codes[BLK_STOP] = ch_stop_children(n, &id, NULL, 1, &o, &res);
}

static int blk_handle(ch_proc *p, const ch_msg *m)
{
    if (m->kind != CH_MSG_CALL) return CH_CONTINUE;
    int codes[BLK_N];
    blk_try_all(ch_proc_node(p), codes);
    th_check(ch_reply(p, m, codes, sizeof(codes)) == 0);
    return CH_CONTINUE;
}

/* --- "flood" --------------------------------------------------------------------------- */

typedef struct flood_req {
    uint32_t attempts; /* seqs 1..attempts are tried, each once */
    char target[32];
} flood_req;

static atomic_int flood_done;
static atomic_llong flood_ok;      /* sends that returned 0 */
static atomic_llong flood_ok_sum;  /* sum of their seqs */
static atomic_llong flood_eagain;  /* sends that returned -EAGAIN */
static atomic_int flood_other_err; /* any other code */

static int flood_handle(ch_proc *p, const ch_msg *m)
{
    flood_req fr;
    th_check(m->kind == CH_MSG_CAST && m->len == sizeof(fr));
    memcpy(&fr, m->data, sizeof(fr));
    for (uint32_t seq = 1; seq <= fr.attempts; seq++) {
        seq_msg sm = {.sender = 0, .seq = seq};
        int rc = ch_send(ch_proc_node(p), fr.target, CH_ID_CSTR, &sm, sizeof(sm));
        if (rc == 0) {
            atomic_fetch_add(&flood_ok, 1);
            atomic_fetch_add(&flood_ok_sum, seq);
        } else if (rc == -EAGAIN) {
            atomic_fetch_add(&flood_eagain, 1);
        } else {
            atomic_store(&flood_other_err, rc);
        }
    }
    atomic_store(&flood_done, 1);
    return CH_CONTINUE;
}

/* --- node with every type ---------------------------------------------------------------- */

static ch_node *msg_node_cfg(ch_node_config *cfg)
{
    ch_node *n = th_node_create(cfg);
    ch_process_type seq = {.name = "seq", .init = seq_init, .handle = seq_handle};
    ch_process_type fwd = {.name = "fwd", .init = th_tp_init, .handle = fwd_handle};
    ch_process_type pc = {.name = "pc", .handle = pc_handle};
    ch_process_type blk = {.name = "blk", .handle = blk_handle};
    ch_process_type flood = {.name = "flood", .handle = flood_handle};
    cr_assert_eq(ch_node_register_type(n, &flood), 0);
    cr_assert_eq(ch_node_register_type(n, &seq), 0);
    cr_assert_eq(ch_node_register_type(n, &fwd), 0);
    cr_assert_eq(ch_node_register_type(n, &pc), 0);
    cr_assert_eq(ch_node_register_type(n, &blk), 0);
    th_node_start(n);
    return n;
}

static ch_node *msg_node(unsigned cores)
{
    ch_node_config cfg = th_config(cores);
    return msg_node_cfg(&cfg);
}

static void start_typed(ch_node *n, const char *id, const char *type, const char *arg)
{
    ch_child_spec s = th_spec(id, type);
    s.arg = arg;
    s.arg_len = arg ? strlen(arg) : 0;
    th_start_spec(n, &s);
}

/* --- ordering ---------------------------------------------------------------------------- */

#define ORDER_THREADS    4
#define ORDER_PER_THREAD 20000u
#define ORDER_TARGETS    3

static const char *const order_targets[ORDER_TARGETS] = {"q0", "q1", "q2"};

typedef struct order_sender {
    ch_node *node;
    uint32_t sender;
    int error; /* first send error other than -EAGAIN */
} order_sender;

static void *order_send_thread(void *arg)
{
    order_sender *os = arg;
    for (uint32_t seq = 1; seq <= ORDER_PER_THREAD; seq++) {
        seq_msg m = {.sender = os->sender, .seq = seq};
        const char *id = order_targets[seq % ORDER_TARGETS];
        const uint64_t deadline = th_now_ms() + 30000;
        int rc;
        while ((rc = ch_send(os->node, id, CH_ID_CSTR, &m, sizeof(m))) == -EAGAIN &&
               th_now_ms() < deadline)
            sched_yield();
        if (rc != 0) {
            os->error = rc;
            return NULL;
        }
    }
    return NULL;
}

static uint64_t order_expected(unsigned target)
{
    uint64_t c = 0;
    for (uint32_t seq = 1; seq <= ORDER_PER_THREAD; seq++)
        c += seq % ORDER_TARGETS == target;
    return c;
}

Test(messaging, keeps_per_sender_order_under_concurrent_foreign_senders, .timeout = 120)
{
    ch_node *n = msg_node(2);
    for (unsigned t = 0; t < ORDER_TARGETS; t++)
        start_typed(n, order_targets[t], "seq", NULL);
    pthread_t threads[ORDER_THREADS];
    order_sender senders[ORDER_THREADS];
    for (unsigned i = 0; i < ORDER_THREADS; i++) {
        senders[i] = (order_sender){.node = n, .sender = i + 1};
        cr_assert_eq(pthread_create(&threads[i], NULL, order_send_thread, &senders[i]), 0);
    }
    for (unsigned i = 0; i < ORDER_THREADS; i++) {
        pthread_join(threads[i], NULL);
        cr_assert_eq(senders[i].error, 0, "sender %u: %s", i, ch_strerror(senders[i].error));
    }
    for (unsigned t = 0; t < ORDER_TARGETS; t++) {
        const uint64_t want = order_expected(t) * ORDER_THREADS;
        seq_state st;
        const uint64_t deadline = th_now_ms() + 30000;
        while (st = seq_query(n, order_targets[t]), seq_total(&st) < want) {
            cr_assert_lt(th_now_ms(), deadline, "%s handled %lu of %lu", order_targets[t],
                         (unsigned long)seq_total(&st), (unsigned long)want);
            th_poll_pause();
        }
        cr_assert_eq(st.violations, 0, "%s: %lu out-of-order messages", order_targets[t],
                     (unsigned long)st.violations);
        cr_assert_eq(st.malformed, 0);
        for (unsigned s = 1; s <= ORDER_THREADS; s++)
            cr_assert_eq(st.count[s], order_expected(t), "%s from sender %u: %lu, want %lu",
                         order_targets[t], s, (unsigned long)st.count[s],
                         (unsigned long)order_expected(t));
    }
    cr_assert_eq(atomic_load(&seq_violations), 0);
    th_assert_no_bad();
    th_node_free(n);
}

Test(messaging, a_call_after_casts_from_the_same_thread_sees_them_handled)
{
    ch_node *n = msg_node(2);
    start_typed(n, "q", "seq", NULL);
    for (uint32_t seq = 1; seq <= 1000; seq++) {
        seq_msg m = {.sender = 0, .seq = seq};
        cr_assert_eq(th_send(n, "q", CH_ID_CSTR, &m, sizeof(m)), 0);
    }
    seq_state st = seq_query(n, "q");
    cr_assert_eq(st.count[0], 1000, "the call overtook %lu casts",
                 (unsigned long)(1000 - st.count[0]));
    cr_assert_eq(st.violations, 0);
    th_node_free(n);
}

/* --- back-pressure ----------------------------------------------------------------------- */

Test(messaging, full_inbox_refuses_sends_with_eagain_and_loses_none_it_accepted)
{
    ch_node_config cfg = th_config(2);
    cfg.inbox_bytes = 64 * 1024;
    ch_node *n = msg_node_cfg(&cfg);
    char id[32];
    th_id_on_core(n, "q", 1, id, sizeof(id));
    start_typed(n, id, "seq", NULL);
    static th_gate gate;
    th_gate_close(n, &gate, 1);

    /* Core 1 is held: its inbox fills up and then refuses. */
    uint64_t ok = 0, ok_sum = 0, refused = 0;
    uint32_t seq = 0;
    while (refused < 100 && seq < 1000000) {
        seq_msg m = {.sender = 0, .seq = ++seq};
        int rc = ch_send(n, id, CH_ID_CSTR, &m, sizeof(m));
        cr_assert(rc == 0 || rc == -EAGAIN, "send %u: %s", seq, ch_strerror(rc));
        if (rc == 0) {
            ok++;
            ok_sum += seq;
        } else {
            refused++;
        }
    }
    th_gate_open(&gate);
    cr_assert_eq(refused, 100, "a held core's 64 KiB inbox never said -EAGAIN");
    cr_assert_gt(ok, 0);

    /* Once the core runs again, sends are accepted again. */
    for (int k = 0; k < 10; k++) {
        seq_msg m = {.sender = 0, .seq = ++seq};
        cr_assert_eq(th_send(n, id, CH_ID_CSTR, &m, sizeof(m)), 0);
        ok++;
        ok_sum += seq;
    }
    seq_state st;
    const uint64_t deadline = th_now_ms() + TH_WAIT_MS;
    while (st = seq_query(n, id), st.count[0] < ok && th_now_ms() < deadline)
        th_poll_pause();
    cr_assert_eq(st.count[0], ok, "handled %lu of the %lu accepted messages",
                 (unsigned long)st.count[0], (unsigned long)ok);
    cr_assert_eq(st.sum[0], ok_sum, "a refused message was delivered, or an accepted one lost");
    cr_assert_eq(st.violations, 0);
    th_node_free(n);
}

Test(messaging, full_core_to_core_mailbox_refuses_sends_with_eagain_and_loses_none_it_accepted)
{
    ch_node_config cfg = th_config(2);
    cfg.ring_bytes = 4096;
    ch_node *n = msg_node_cfg(&cfg);
    char src[32], dst[32];
    th_id_on_core(n, "src", 0, src, sizeof(src));
    th_id_on_core(n, "dst", 1, dst, sizeof(dst));
    start_typed(n, src, "flood", NULL);
    start_typed(n, dst, "seq", NULL);
    static th_gate gate;
    th_gate_close(n, &gate, 1);

    flood_req fr = {.attempts = 20000};
    snprintf(fr.target, sizeof(fr.target), "%s", dst);
    cr_assert_eq(th_send(n, src, CH_ID_CSTR, &fr, sizeof(fr)), 0);
    cr_assert(TH_WAIT(atomic_load(&flood_done), TH_WAIT_MS));
    th_gate_open(&gate);
    cr_assert_eq(atomic_load(&flood_other_err), 0, "%s",
                 ch_strerror(atomic_load(&flood_other_err)));
    cr_assert_gt(atomic_load(&flood_eagain), 0, "a held core's 4 KiB mailbox never filled");
    const uint64_t ok = (uint64_t)atomic_load(&flood_ok);
    cr_assert_gt(ok, 0);

    seq_state st;
    const uint64_t deadline = th_now_ms() + TH_WAIT_MS;
    while (st = seq_query(n, dst), st.count[0] < ok && th_now_ms() < deadline)
        th_poll_pause();
    cr_assert_eq(st.count[0], ok, "handled %lu of the %lu accepted messages",
                 (unsigned long)st.count[0], (unsigned long)ok);
    cr_assert_eq(st.sum[0], (uint64_t)atomic_load(&flood_ok_sum),
                 "a refused message was delivered, or an accepted one lost");
    cr_assert_eq(st.violations, 0);
    th_assert_no_bad();
    th_node_free(n);
}

Test(messaging, sends_from_a_callback_keep_order_while_the_mailbox_fills_and_drains)
{
    ch_node_config cfg = th_config(2);
    cfg.ring_bytes = 4096;
    ch_node *n = msg_node_cfg(&cfg);
    char src[32], dst[32];
    th_id_on_core(n, "src", 0, src, sizeof(src));
    th_id_on_core(n, "dst", 1, dst, sizeof(dst));
    start_typed(n, src, "flood", NULL);
    start_typed(n, dst, "seq", NULL);
    /* The consumer runs while the producer overflows its ring: space frees up under the
     * producer's feet, and later sends must still queue behind the spilled ones. */
    flood_req fr = {.attempts = 300000};
    snprintf(fr.target, sizeof(fr.target), "%s", dst);
    cr_assert_eq(th_send(n, src, CH_ID_CSTR, &fr, sizeof(fr)), 0);
    cr_assert(TH_WAIT(atomic_load(&flood_done), 3 * TH_WAIT_MS));
    cr_assert_eq(atomic_load(&flood_other_err), 0);
    const uint64_t ok = (uint64_t)atomic_load(&flood_ok);
    seq_state st;
    const uint64_t deadline = th_now_ms() + TH_WAIT_MS;
    while (st = seq_query(n, dst), st.count[0] < ok && th_now_ms() < deadline)
        th_poll_pause();
    cr_assert_eq(st.violations, 0, "%lu messages overtook earlier ones",
                 (unsigned long)st.violations);
    cr_assert_eq(st.count[0], ok, "handled %lu of the %lu accepted messages",
                 (unsigned long)st.count[0], (unsigned long)ok);
    cr_assert_eq(st.sum[0], (uint64_t)atomic_load(&flood_ok_sum));
    th_node_free(n);
}

/* Test thread -> A ("fwd") -> B ("seq"), A and B on the given cores. Sends in windows that
 * B confirms, so A's own sends never meet a full mailbox. */
static void forward_keeps_order(unsigned core_a, unsigned core_b)
{
    ch_node *n = msg_node(2);
    char a[32], b[32];
    th_id_on_core(n, "fa", core_a, a, sizeof(a));
    th_id_on_core(n, "fb", core_b, b, sizeof(b));
    start_typed(n, b, "seq", NULL);
    start_typed(n, a, "fwd", b);
    const uint32_t total = 10000, window = 256;
    for (uint32_t seq = 1; seq <= total; seq++) {
        seq_msg m = {.sender = 0, .seq = seq};
        cr_assert_eq(th_send(n, a, CH_ID_CSTR, &m, sizeof(m)), 0);
        if (seq % window == 0 || seq == total) {
            seq_state st;
            const uint64_t deadline = th_now_ms() + TH_WAIT_MS;
            while (st = seq_query(n, b), st.count[0] < seq) {
                cr_assert_lt(th_now_ms(), deadline, "B got %lu of %u (forward errors: %d)",
                             (unsigned long)st.count[0], seq, atomic_load(&fwd_errors));
                th_poll_pause();
            }
            cr_assert_eq(st.count[0], seq);
            cr_assert_eq(st.violations, 0, "forwarded messages out of order");
        }
    }
    cr_assert_eq(atomic_load(&fwd_errors), 0);
    th_node_free(n);
}

Test(messaging, sends_from_a_callback_to_another_core_keep_order)
{
    forward_keeps_order(0, 1);
}

Test(messaging, sends_from_a_callback_to_the_same_core_keep_order)
{
    forward_keeps_order(1, 1);
}

/* --- blocking rules ---------------------------------------------------------------------- */

static void assert_all_wouldblock(const int *codes)
{
    static const char *const names[BLK_N] = {"ch_call", "ch_lookup", "ch_list", "ch_start_children",
                                             "ch_stop_children"};
    for (int i = 0; i < BLK_N; i++)
        cr_assert_eq(codes[i], CH_EWOULDBLOCK, "%s on a reactor returned %s (%d)", names[i],
                     ch_strerror(codes[i]), codes[i]);
}

Test(messaging, blocking_calls_from_a_process_return_ewouldblock)
{
    ch_node *n = msg_node(2);
    th_start(n, "target", CH_PERMANENT, NULL);
    start_typed(n, "blk", "blk", NULL);
    int codes[BLK_N];
    size_t len = 0;
    int rc = ch_call(n, "blk", CH_ID_CSTR, "go", 2, codes, sizeof(codes), &len, TH_CALL_MS);
    cr_assert_eq(rc, 0, "%s", ch_strerror(rc));
    cr_assert_eq(len, sizeof(codes));
    assert_all_wouldblock(codes);
    /* Nothing was done behind the refusals. */
    cr_assert_lt(th_incarnation(n, "from-reactor"), 0);
    th_assert_serves(n, "target");
    th_node_free(n);
}

typedef struct blk_post {
    ch_node *node;
    int codes[BLK_N];
    atomic_int done;
} blk_post;

static void blk_post_fn(ch_node *n, void *ud)
{
    blk_post *bp = ud;
    blk_try_all(n, bp->codes);
    atomic_store_explicit(&bp->done, 1, memory_order_release);
}

Test(messaging, blocking_calls_from_a_posted_function_return_ewouldblock)
{
    ch_node *n = msg_node(2);
    th_start(n, "target", CH_PERMANENT, NULL);
    static blk_post bp;
    bp.node = n;
    cr_assert_eq(ch_node_post(n, 0, blk_post_fn, &bp), 0);
    cr_assert(TH_WAIT(atomic_load_explicit(&bp.done, memory_order_acquire), TH_WAIT_MS));
    assert_all_wouldblock(bp.codes);
    th_assert_serves(n, "target");
    th_node_free(n);
}

static atomic_int stop_from_reactor_rc = 1000;

static void stop_from_reactor(ch_node *n, void *ud)
{
    atomic_store(&stop_from_reactor_rc, ch_node_stop(n));
}

Test(messaging, node_stop_from_a_reactor_returns_ewouldblock)
{
    ch_node *n = msg_node(2);
    th_start(n, "target", CH_PERMANENT, NULL);
    cr_assert_eq(ch_node_post(n, 1, stop_from_reactor, NULL), 0);
    cr_assert(TH_WAIT(atomic_load(&stop_from_reactor_rc) != 1000, TH_WAIT_MS));
    cr_assert_eq(atomic_load(&stop_from_reactor_rc), CH_EWOULDBLOCK);
    th_assert_serves(n, "target");
    th_node_free(n);
}

/* --- ch_proc_call ------------------------------------------------------------------------ */

Test(messaging, proc_call_reply_comes_back_as_a_reply_message_with_the_ref)
{
    ch_node *n = msg_node(2);
    char caller[32], callee[32];
    th_id_on_core(n, "caller", 0, caller, sizeof(caller));
    th_id_on_core(n, "callee", 1, callee, sizeof(callee));
    start_typed(n, caller, "pc", NULL);
    th_start(n, callee, CH_PERMANENT, NULL);
    const pc_reply *r = pc_roundtrip(n, caller, callee, "ehello", 6, TH_CALL_MS, 0xC0FFEE);
    cr_assert_eq(r->status, 0, "%s", ch_strerror(r->status));
    cr_assert_eq(r->ref, 0xC0FFEE);
    cr_assert_eq(r->len, 5);
    cr_assert_arr_eq(r->data, "hello", 5);
    cr_assert_eq(r->core, 0, "the reply runs on the caller's reactor");
    cr_assert_eq(r->proc_core, 0);

    /* A second call with another ref gets its own answer. */
    r = pc_roundtrip(n, caller, callee, "eworld!", 7, TH_CALL_MS, 7);
    cr_assert_eq(r->ref, 7);
    cr_assert_eq(r->len, 6);
    cr_assert_arr_eq(r->data, "world!", 6);
    th_node_free(n);
}

Test(messaging, proc_call_to_an_unknown_id_replies_enoproc)
{
    ch_node *n = msg_node(2);
    start_typed(n, "caller", "pc", NULL);
    const pc_reply *r = pc_roundtrip(n, "caller", "nobody", "eX", 2, TH_CALL_MS, 11);
    cr_assert_eq(r->status, CH_ENOPROC, "%s", ch_strerror(r->status));
    cr_assert_eq(r->ref, 11);
    cr_assert_eq(r->len, 0);
    th_node_free(n);
}

Test(messaging, proc_call_to_a_process_that_never_answers_replies_etimedout)
{
    ch_node *n = msg_node(2);
    start_typed(n, "caller", "pc", NULL);
    th_start(n, "mute", CH_PERMANENT, NULL);
    const pc_reply *r = pc_roundtrip(n, "caller", "mute", "d", 1, 200, 12);
    cr_assert_eq(r->status, -ETIMEDOUT, "%s", ch_strerror(r->status));
    cr_assert_eq(r->ref, 12);
    cr_assert_eq(r->len, 0);
    th_node_free(n);
}

Test(messaging, proc_call_to_a_process_that_returns_without_reply_replies_enodata)
{
    ch_node *n = msg_node(2);
    start_typed(n, "caller", "pc", NULL);
    th_start(n, "lazy", CH_PERMANENT, NULL);
    const pc_reply *r = pc_roundtrip(n, "caller", "lazy", "z", 1, TH_CALL_MS, 13);
    cr_assert_eq(r->status, -ENODATA, "%s", ch_strerror(r->status));
    cr_assert_eq(r->ref, 13);
    th_node_free(n);
}

Test(messaging, proc_call_to_a_process_that_crashes_replies_ecrashed)
{
    ch_node *n = msg_node(2);
    start_typed(n, "caller", "pc", NULL);
    th_start(n, "fragile", CH_TEMPORARY, NULL);
    const pc_reply *r = pc_roundtrip(n, "caller", "fragile", "c", 1, TH_CALL_MS, 14);
    cr_assert_eq(r->status, CH_ECRASHED, "%s", ch_strerror(r->status));
    cr_assert_eq(r->ref, 14);
    th_node_free(n);
}

/* --- ch_call_async ----------------------------------------------------------------------- */

typedef struct async_reply {
    ch_node *node;
    int status;
    size_t len;
    char data[64];
    int core;
    atomic_int calls;
    atomic_int done; /* release: the fields above are written */
} async_reply;

static void on_async_reply(void *ud, int status, const void *reply, size_t len)
{
    async_reply *ar = ud;
    ar->status = status;
    ar->len = len;
    if (len) memcpy(ar->data, reply, len < sizeof(ar->data) ? len : sizeof(ar->data));
    ar->core = ch_node_current_core(ar->node);
    atomic_fetch_add(&ar->calls, 1);
    atomic_store_explicit(&ar->done, 1, memory_order_release);
}

static void wait_async(async_reply *ar)
{
    cr_assert(TH_WAIT(atomic_load_explicit(&ar->done, memory_order_acquire), 2 * TH_WAIT_MS),
              "the reply function never ran");
}

Test(messaging, call_async_from_a_foreign_thread_answers_on_the_target_reactor)
{
    ch_node *n = msg_node(2);
    char id[32];
    th_id_on_core(n, "t", 1, id, sizeof(id));
    th_start(n, id, CH_PERMANENT, NULL);
    static async_reply ar;
    ar.node = n;
    cr_assert_eq(ch_call_async(n, id, CH_ID_CSTR, "easync", 6, TH_CALL_MS, on_async_reply, &ar), 0);
    wait_async(&ar);
    cr_assert_eq(ar.status, 0, "%s", ch_strerror(ar.status));
    cr_assert_eq(ar.len, 5);
    cr_assert_arr_eq(ar.data, "async", 5);
    cr_assert_eq(ar.core, 1, "ran on core %d", ar.core);
    cr_assert_eq(atomic_load(&ar.calls), 1);
    th_node_free(n);
}

typedef struct async_from_reactor {
    async_reply ar;
    const char *target;
    atomic_int rc;
} async_from_reactor;

static void call_async_from_post(ch_node *n, void *ud)
{
    async_from_reactor *afr = ud;
    atomic_store(&afr->rc, ch_call_async(n, afr->target, CH_ID_CSTR, "efrom-core", 10, TH_CALL_MS,
                                         on_async_reply, &afr->ar));
}

Test(messaging, call_async_from_a_reactor_answers_on_the_calling_reactor)
{
    ch_node *n = msg_node(2);
    char id[32];
    th_id_on_core(n, "t", 1, id, sizeof(id));
    th_start(n, id, CH_PERMANENT, NULL);
    static async_from_reactor afr;
    afr.ar.node = n;
    afr.target = id;
    atomic_store(&afr.rc, 1000);
    cr_assert_eq(ch_node_post(n, 0, call_async_from_post, &afr), 0);
    wait_async(&afr.ar);
    cr_assert_eq(atomic_load(&afr.rc), 0);
    cr_assert_eq(afr.ar.status, 0);
    cr_assert_eq(afr.ar.len, 9);
    cr_assert_arr_eq(afr.ar.data, "from-core", 9);
    cr_assert_eq(afr.ar.core, 0, "ran on core %d, the call was made on core 0", afr.ar.core);
    th_node_free(n);
}

Test(messaging, call_async_to_an_unknown_id_reports_enoproc)
{
    ch_node *n = msg_node(2);
    static async_reply ar;
    ar.node = n;
    int rc = ch_call_async(n, "nobody", CH_ID_CSTR, "e", 1, TH_CALL_MS, on_async_reply, &ar);
    if (rc == 0) {
        wait_async(&ar);
        cr_assert_eq(ar.status, CH_ENOPROC, "%s", ch_strerror(ar.status));
    } else {
        cr_assert_eq(rc, CH_ENOPROC, "%s", ch_strerror(rc));
    }
    th_node_free(n);
}

Test(messaging, call_async_times_out_when_the_process_never_replies)
{
    ch_node *n = msg_node(2);
    th_start(n, "mute", CH_PERMANENT, NULL);
    static async_reply ar;
    ar.node = n;
    cr_assert_eq(ch_call_async(n, "mute", CH_ID_CSTR, "d", 1, 200, on_async_reply, &ar), 0);
    wait_async(&ar);
    cr_assert_eq(ar.status, -ETIMEDOUT, "%s", ch_strerror(ar.status));
    th_assert_serves(n, "mute");
    cr_assert_eq(atomic_load(&ar.calls), 1);
    th_node_free(n);
}

/* --- ch_call: timeouts and replies --------------------------------------------------------- */

Test(messaging, call_times_out_when_the_process_never_replies)
{
    ch_node *n = msg_node(2);
    th_start(n, "mute", CH_PERMANENT, NULL);
    char buf[8];
    size_t len = 0;
    uint64_t t0 = th_now_ns();
    int rc = ch_call(n, "mute", CH_ID_CSTR, "d", 1, buf, sizeof(buf), &len, 300);
    uint64_t ms = (th_now_ns() - t0) / 1000000u;
    cr_assert_eq(rc, -ETIMEDOUT, "%s", ch_strerror(rc));
    cr_assert_geq(ms, 250, "timed out after %lu ms, before the 300 ms deadline", (unsigned long)ms);
    cr_assert_lt(ms, TH_WAIT_MS, "took %lu ms", (unsigned long)ms);
    th_assert_serves(n, "mute");
    th_node_free(n);
}

Test(messaging, call_with_timeout_zero_uses_the_node_call_timeout)
{
    ch_node_config cfg = th_config(2);
    cfg.call_timeout_ms = 300;
    ch_node *n = msg_node_cfg(&cfg);
    th_start(n, "mute", CH_PERMANENT, NULL);
    char buf[8];
    size_t len = 0;
    uint64_t t0 = th_now_ns();
    int rc = ch_call(n, "mute", CH_ID_CSTR, "d", 1, buf, sizeof(buf), &len, 0);
    uint64_t ms = (th_now_ns() - t0) / 1000000u;
    cr_assert_eq(rc, -ETIMEDOUT, "%s", ch_strerror(rc));
    cr_assert_geq(ms, 250, "timed out after %lu ms", (unsigned long)ms);
    cr_assert_lt(ms, TH_WAIT_MS, "took %lu ms: not the node's 300 ms", (unsigned long)ms);
    th_node_free(n);
}

Test(messaging, late_reply_after_a_timeout_does_not_reach_a_later_call)
{
    ch_node *n = msg_node(2);
    th_start(n, "slow", CH_PERMANENT, NULL);
    char buf[16];
    size_t len = 0;
    cr_assert_eq(ch_call(n, "slow", CH_ID_CSTR, "D", 1, buf, sizeof(buf), &len, 200), -ETIMEDOUT);
    cr_assert(TH_WAIT(atomic_load(&th.deferred), TH_WAIT_MS));
    cr_assert_eq(th_send(n, "slow", CH_ID_CSTR, "Rstale", 6), 0);
    cr_assert(TH_WAIT(atomic_load(&th.reply_send_rc) != 1000, TH_WAIT_MS));
    cr_assert_eq(th_call(n, "slow", "efresh", buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, 5);
    cr_assert_arr_eq(buf, "fresh", 5);
    th_node_free(n);
}

Test(messaging, handle_returning_without_reply_gives_enodata)
{
    ch_node *n = msg_node(2);
    th_start(n, "lazy", CH_PERMANENT, NULL);
    char buf[8];
    size_t len = 99;
    int rc = ch_call(n, "lazy", CH_ID_CSTR, "z", 1, buf, sizeof(buf), &len, TH_CALL_MS);
    cr_assert_eq(rc, -ENODATA, "%s", ch_strerror(rc));
    cr_assert_eq(len, 0, "an empty reply");
    th_assert_serves(n, "lazy");
    th_node_free(n);
}

typedef struct replier {
    ch_node *node;
    int rc;
} replier;

/* Answers the deferred call once the process says it deferred it. */
static void *deferred_replier(void *arg)
{
    replier *r = arg;
    const uint64_t deadline = th_now_ms() + TH_WAIT_MS;
    while (!atomic_load(&th.deferred) && th_now_ms() < deadline)
        th_poll_pause();
    r->rc = th_send(r->node, "later", CH_ID_CSTR, "Rdeferred answer", 16);
    return NULL;
}

Test(messaging, deferred_reply_is_delivered_when_the_process_sends_it)
{
    ch_node *n = msg_node(2);
    th_start(n, "later", CH_PERMANENT, NULL);
    replier r = {.node = n, .rc = 1000};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, deferred_replier, &r), 0);
    char buf[32];
    size_t len = 0;
    int rc = ch_call(n, "later", CH_ID_CSTR, "D", 1, buf, sizeof(buf), &len, TH_CALL_MS);
    pthread_join(t, NULL);
    cr_assert_eq(r.rc, 0);
    cr_assert_eq(rc, 0, "%s", ch_strerror(rc));
    cr_assert_eq(len, 15);
    cr_assert_arr_eq(buf, "deferred answer", 15);
    cr_assert_eq(atomic_load(&th.reply_send_rc), 0);

    th_assert_serves(n, "later");
    th_node_free(n);
}

typedef struct bg_call {
    ch_node *node;
    const char *id;
    const char *req;
    int rc;
    char reply[32];
    size_t len;
} bg_call;

static void *bg_call_thread(void *arg)
{
    bg_call *c = arg;
    c->rc = ch_call(c->node, c->id, CH_ID_CSTR, c->req, strlen(c->req), c->reply, sizeof(c->reply),
                    &c->len, TH_CALL_MS);
    return NULL;
}

Test(messaging, a_spent_reply_token_does_not_answer_a_later_call)
{
    ch_node *n = msg_node(2);
    th_start(n, "later", CH_PERMANENT, NULL);
    /* First deferred call, answered. */
    replier r = {.node = n, .rc = 1000};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, deferred_replier, &r), 0);
    char buf[32];
    size_t len = 0;
    cr_assert_eq(ch_call(n, "later", CH_ID_CSTR, "D", 1, buf, sizeof(buf), &len, TH_CALL_MS), 0);
    pthread_join(t, NULL);

    /* Second deferred call, pending while the first (spent) token answers again. */
    static bg_call c;
    c = (bg_call){.node = n, .id = "later", .req = "D", .rc = 1000};
    cr_assert_eq(pthread_create(&t, NULL, bg_call_thread, &c), 0);
    cr_assert(TH_WAIT(atomic_load(&th.deferred) == 2, TH_WAIT_MS));
    atomic_store(&th.reply_send_rc, 1000);
    cr_assert_eq(th_send(n, "later", CH_ID_CSTR, "Ostale", 6), 0);
    cr_assert(TH_WAIT(atomic_load(&th.reply_send_rc) != 1000, TH_WAIT_MS));
    cr_assert_eq(th_send(n, "later", CH_ID_CSTR, "Rsecond answer", 14), 0);
    pthread_join(t, NULL);
    cr_assert_eq(c.rc, 0, "%s", ch_strerror(c.rc));
    cr_assert_eq(c.len, 13);
    cr_assert_arr_eq(c.reply, "second answer", 13, "the spent token answered the later call");
    th_assert_serves(n, "later");
    th_node_free(n);
}

Test(messaging, second_reply_to_one_call_returns_einval)
{
    ch_node *n = msg_node(2);
    th_start(n, "twice", CH_PERMANENT, NULL);
    char buf[8];
    size_t len = 0;
    cr_assert_eq(th_call(n, "twice", "2", buf, sizeof(buf), &len), 0);
    cr_assert_eq(len, 3);
    cr_assert_arr_eq(buf, "one", 3);
    cr_assert_eq(atomic_load(&th.second_reply_rc), -EINVAL);
    th_node_free(n);
}

Test(messaging, reply_larger_than_the_buffer_is_truncated_with_its_full_length)
{
    ch_node *n = msg_node(2);
    th_start(n, "big", CH_PERMANENT, NULL);
    uint8_t req[5] = {'b'};
    uint32_t want = 1000;
    memcpy(req + 1, &want, sizeof(want));
    uint8_t buf[100];
    size_t len = 0;
    int rc = ch_call(n, "big", CH_ID_CSTR, req, sizeof(req), buf, sizeof(buf), &len, TH_CALL_MS);
    cr_assert_eq(rc, CH_ETRUNCATED, "%s", ch_strerror(rc));
    cr_assert_eq(len, 1000, "*reply_len is the full size, got %zu", len);
    for (size_t i = 0; i < sizeof(buf); i++)
        cr_assert_eq(buf[i], th_pattern(i), "byte %zu", i);
    th_node_free(n);
}

Test(messaging, large_messages_up_to_max_message_arrive_intact, .timeout = 120)
{
    ch_node *n = msg_node(2);
    char caller[32], callee[32];
    th_id_on_core(n, "caller", 0, caller, sizeof(caller));
    th_id_on_core(n, "callee", 1, callee, sizeof(callee));
    start_typed(n, caller, "pc", NULL);
    th_start(n, callee, CH_PERMANENT, NULL);
    /* 512 KiB: larger than a core-to-core ring record, within max_message (1 MiB). */
    const size_t size = 512 * 1024;
    uint8_t *req = malloc(size + 1);
    uint8_t *reply = malloc(size);
    req[0] = 'e';
    for (size_t i = 0; i < size; i++)
        req[1 + i] = th_pattern(i);
    size_t len = 0;
    int rc = ch_call(n, callee, CH_ID_CSTR, req, size + 1, reply, size, &len, TH_CALL_MS);
    cr_assert_eq(rc, 0, "foreign call: %s", ch_strerror(rc));
    cr_assert_eq(len, size);
    cr_assert_arr_eq(reply, req + 1, size, "foreign call echo differs");

    const pc_reply *r = pc_roundtrip(n, caller, callee, req, size + 1, TH_CALL_MS, 99);
    cr_assert_eq(r->status, 0, "core-to-core call: %s", ch_strerror(r->status));
    cr_assert_eq(r->len, size);
    cr_assert_arr_eq(r->data, req + 1, size, "core-to-core echo differs");
    free(req);
    free(reply);
    th_node_free(n);
}

Test(messaging, messages_for_unknown_ids_are_counted_as_dead_letters)
{
    ch_node *n = msg_node(2);
    th_start(n, "alive", CH_PERMANENT, NULL);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(th_send(n, "nobody", CH_ID_CSTR, "z", 1), 0,
                     "a send to nobody is still queued");
    cr_assert_eq(th_send(n, "alive", CH_ID_CSTR, "z", 1), 0);
    cr_assert(TH_WAIT(th_stats(n).dead_letters >= 5, TH_WAIT_MS), "dead letters: %lu",
              (unsigned long)th_stats(n).dead_letters);
    cr_assert(TH_WAIT(atomic_load(&th.casts) == 1, TH_WAIT_MS));
    cr_assert_eq(th_stats(n).dead_letters, 5);
    char buf[4];
    size_t len;
    cr_assert_eq(th_call(n, "nobody", "eX", buf, sizeof(buf), &len), CH_ENOPROC);
    th_node_free(n);
}
