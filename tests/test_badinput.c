/*
 * tests/test_badinput.c - bad ids, bad specs, oversize messages, a stopped node: each is
 * refused with its documented code, and the node keeps serving normal calls afterwards.
 */
#include "helpers.h"

TestSuite(badinput, .timeout = 60);

static void on_reply_unused(void *ud, int status, const void *reply, size_t len)
{
    atomic_fetch_add((atomic_int *)ud, 1);
}

static void on_done_unused(void *ud, const int *results, size_t count) {}

static void post_unused(ch_node *n, void *ud) {}

/* Every by-id entry point refuses the id (id, id_len) with CH_EBADID. */
static void assert_id_refused(ch_node *n, const char *id, size_t id_len)
{
    char buf[8];
    size_t len;
    static atomic_int replies;
    cr_assert_eq(ch_send(n, id, id_len, "z", 1), CH_EBADID);
    cr_assert_eq(ch_call(n, id, id_len, "eX", 2, buf, sizeof(buf), &len, TH_CALL_MS), CH_EBADID);
    cr_assert_eq(ch_call_async(n, id, id_len, "eX", 2, TH_CALL_MS, on_reply_unused, &replies),
                 CH_EBADID);
    ch_proc_info *info = NULL;
    cr_assert_eq(ch_lookup(n, id, id_len, &info), CH_EBADID);
    cr_assert_eq(ch_node_core_of(n, id, id_len), CH_EBADID);

    ch_child_spec s = th_spec(id, TH_TYPE);
    s.id_len = id_len;
    int res = 12345;
    ch_batch_opts o = {.timeout_ms = TH_WAIT_MS};
    cr_assert_eq(ch_start_children(n, &s, 1, &o, &res), CH_EPARTIAL);
    cr_assert_eq(res, CH_EBADID, "start result %s", ch_strerror(res));
    cr_assert_eq(atomic_load(&replies), 0, "a refused call_async never answers");
}

Test(badinput, empty_id_is_refused_with_ebadid)
{
    ch_node *n = th_node_new(2);
    th_start(n, "ok", CH_PERMANENT, NULL);
    assert_id_refused(n, "", 0);
    th_assert_serves(n, "ok");
    cr_assert_eq(th_stats(n).processes, 1);
    th_node_free(n);
}

/* A length of 0 once meant "NUL-terminated": an id buffer without a NUL was read past its
 * end (the kv service's empty key). 0 is an empty id now, whatever the buffer holds. */
Test(badinput, id_length_zero_is_refused_whatever_the_buffer_holds)
{
    ch_node *n = th_node_new(2);
    th_start(n, "ok", CH_PERMANENT, NULL);
    const char unterminated[3] = {'a', 'b', 'c'};
    assert_id_refused(n, unterminated, 0);
    assert_id_refused(n, "ok", 0);
    ch_proc_info *info = NULL;
    cr_assert_eq(ch_lookup(n, "ok", 2, &info), 0, "the same id with its length");
    ch_proc_info_free(info);
    cr_assert_eq(ch_lookup(n, "ok", CH_ID_CSTR, &info), 0, "and NUL-terminated, explicitly");
    ch_proc_info_free(info);
    th_assert_serves(n, "ok");
    th_node_free(n);
}

Test(badinput, id_of_256_bytes_is_refused_and_255_accepted)
{
    ch_node *n = th_node_new(2);
    th_start(n, "ok", CH_PERMANENT, NULL);
    char id[CH_ID_MAX + 2];
    memset(id, 'L', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    cr_assert_eq(strlen(id), 256);
    assert_id_refused(n, id, 256);
    assert_id_refused(n, id, CH_ID_CSTR); /* the same, NUL-terminated */
    th_assert_serves(n, "ok");

    /* 255 bytes is the longest id. */
    id[CH_ID_MAX] = '\0';
    th_start(n, id, CH_PERMANENT, NULL);
    char reply[CH_ID_MAX + 1];
    size_t len = 0;
    cr_assert_eq(th_call(n, id, "i", reply, sizeof(reply), &len), 0);
    cr_assert_eq(len, CH_ID_MAX);
    cr_assert_arr_eq(reply, id, CH_ID_MAX);
    th_assert_serves(n, id);
    th_node_free(n);
}

Test(badinput, unknown_type_is_refused_and_the_node_serves)
{
    ch_node *n = th_node_new(2);
    th_start(n, "ok", CH_PERMANENT, NULL);
    ch_child_spec s = th_spec("typo", "tp ");
    int res = 12345;
    ch_batch_opts o = {.timeout_ms = TH_WAIT_MS};
    cr_assert_eq(ch_start_children(n, &s, 1, &o, &res), CH_EPARTIAL);
    cr_assert_eq(res, CH_EUNKNOWN_TYPE);
    th_assert_serves(n, "ok");
    th_node_free(n);
}

static int start_result(ch_node *n, const ch_child_spec *s)
{
    int res = 12345;
    ch_batch_opts o = {.timeout_ms = TH_WAIT_MS};
    int rc = ch_start_children(n, s, 1, &o, &res);
    cr_assert(rc == 0 || rc == CH_EPARTIAL, "batch: %s", ch_strerror(rc));
    cr_assert_eq(rc == 0, res == 0);
    return res;
}

Test(badinput, bad_specs_are_refused_with_einval)
{
    ch_node *n = th_node_new(2);
    th_start(n, "ok", CH_PERMANENT, NULL);

    ch_child_spec s = th_spec("no-type", NULL);
    int res = start_result(n, &s);
    cr_assert(res == -EINVAL || res == CH_EUNKNOWN_TYPE, "NULL type: %s", ch_strerror(res));

    static char meta[CH_META_MAX + 1];
    s = th_spec("big-meta", TH_TYPE);
    s.meta = meta;
    s.meta_len = CH_META_MAX + 1;
    cr_assert_eq(start_result(n, &s), -EINVAL, "metadata over CH_META_MAX");
    s.meta_len = CH_META_MAX;
    cr_assert_eq(start_result(n, &s), 0, "metadata of CH_META_MAX bytes");

    char tag[CH_TAG_MAX + 2];
    memset(tag, 't', sizeof(tag) - 1);
    tag[sizeof(tag) - 1] = '\0';
    s = th_spec("long-tag", TH_TYPE);
    s.tag = tag;
    cr_assert_eq(start_result(n, &s), -EINVAL, "tag over CH_TAG_MAX");
    tag[CH_TAG_MAX] = '\0';
    cr_assert_eq(start_result(n, &s), 0, "tag of CH_TAG_MAX bytes");

    s = th_spec("bad-restart", TH_TYPE);
    s.restart = (ch_restart)42;
    cr_assert_eq(start_result(n, &s), -EINVAL, "restart policy 42");

    ch_proc_info *info = NULL;
    cr_assert_eq(ch_lookup(n, "bad-restart", CH_ID_CSTR, &info), CH_ENOPROC);
    th_assert_serves(n, "ok");
    th_assert_serves(n, "big-meta");
    th_node_free(n);
}

Test(badinput, messages_over_max_message_are_refused_with_emsgsize)
{
    ch_node_config cfg = th_config(2);
    cfg.max_message = 1024;
    ch_node *n = th_node_create(&cfg);
    th_node_start(n);
    th_start(n, "ok", CH_PERMANENT, NULL);
    static uint8_t msg[2048];
    msg[0] = 'e';
    for (size_t i = 1; i < sizeof(msg); i++)
        msg[i] = th_pattern(i);
    uint8_t reply[2048];
    size_t len = 0;
    static atomic_int replies;

    cr_assert_eq(ch_send(n, "ok", CH_ID_CSTR, msg, 1025), CH_EMSGSIZE);
    cr_assert_eq(ch_call(n, "ok", CH_ID_CSTR, msg, 1025, reply, sizeof(reply), &len, TH_CALL_MS),
                 CH_EMSGSIZE);
    cr_assert_eq(
        ch_call_async(n, "ok", CH_ID_CSTR, msg, 1025, TH_CALL_MS, on_reply_unused, &replies),
        CH_EMSGSIZE);
    cr_assert_eq(ch_send(n, "ok", CH_ID_CSTR, msg, sizeof(msg)), CH_EMSGSIZE);
    th_assert_serves(n, "ok");

    /* Exactly max_message is fine, both ways. */
    cr_assert_eq(th_send(n, "ok", CH_ID_CSTR, msg, 1024), 0);
    cr_assert_eq(ch_call(n, "ok", CH_ID_CSTR, msg, 1024, reply, sizeof(reply), &len, TH_CALL_MS),
                 0);
    cr_assert_eq(len, 1023);
    cr_assert_arr_eq(reply, msg + 1, 1023);

    /* A reply over max_message is refused to the process, and the caller is not left
     * waiting for its timeout. */
    uint8_t req[5] = {'b'};
    uint32_t big = 1025;
    memcpy(req + 1, &big, sizeof(big));
    uint64_t t0 = th_now_ms();
    int rc = ch_call(n, "ok", CH_ID_CSTR, req, sizeof(req), reply, sizeof(reply), &len, TH_CALL_MS);
    cr_assert_eq(atomic_load(&th.big_reply_rc), CH_EMSGSIZE, "ch_reply of 1025 bytes: %s",
                 ch_strerror(atomic_load(&th.big_reply_rc)));
    cr_assert(rc == CH_EMSGSIZE || rc == -ENODATA, "call got %s", ch_strerror(rc));
    cr_assert_lt(th_now_ms() - t0, TH_CALL_MS / 2);
    cr_assert_eq(atomic_load(&replies), 0);
    th_assert_serves(n, "ok");
    th_node_free(n);
}

/* Every entry point of a node that is not running returns CH_ESTOPPED. */
static void assert_all_stopped(ch_node *n)
{
    char buf[8];
    size_t len;
    static atomic_int replies;
    cr_assert_eq(ch_send(n, "ok", CH_ID_CSTR, "z", 1), CH_ESTOPPED);
    cr_assert_eq(ch_call(n, "ok", CH_ID_CSTR, "eX", 2, buf, sizeof(buf), &len, TH_CALL_MS),
                 CH_ESTOPPED);
    cr_assert_eq(ch_call_async(n, "ok", CH_ID_CSTR, "eX", 2, TH_CALL_MS, on_reply_unused, &replies),
                 CH_ESTOPPED);
    ch_proc_info *info = NULL;
    cr_assert_eq(ch_lookup(n, "ok", CH_ID_CSTR, &info), CH_ESTOPPED);
    ch_proc_list list = {0};
    cr_assert_eq(ch_list(n, NULL, &list), CH_ESTOPPED);
    ch_child_spec s = th_spec("new", TH_TYPE);
    int res;
    ch_batch_opts o = {.timeout_ms = TH_WAIT_MS};
    cr_assert_eq(ch_start_children(n, &s, 1, &o, &res), CH_ESTOPPED);
    ch_batch_opts ao = {.on_done = on_done_unused};
    cr_assert_eq(ch_start_children(n, &s, 1, &ao, NULL), CH_ESTOPPED);
    const char *id = "ok";
    cr_assert_eq(ch_stop_children(n, &id, NULL, 1, &o, &res), CH_ESTOPPED);
    cr_assert_eq(ch_node_post(n, 0, post_unused, NULL), CH_ESTOPPED);
    cr_assert_eq(atomic_load(&replies), 0);
}

Test(badinput, calls_on_a_stopped_node_return_estopped)
{
    ch_node *n = th_node_new(2);
    th_start(n, "ok", CH_PERMANENT, NULL);
    th_assert_serves(n, "ok");
    cr_assert_eq(ch_node_stop(n), 0);
    assert_all_stopped(n);
    cr_assert_eq(ch_node_stop(n), 0);
    ch_node_destroy(n);
}

Test(badinput, calls_on_a_node_not_yet_started_return_estopped)
{
    ch_node_config cfg = th_config(2);
    ch_node *n = th_node_create(&cfg);
    assert_all_stopped(n);
    th_node_start(n); /* refusals before start left no trace */
    th_start(n, "ok", CH_PERMANENT, NULL);
    th_assert_serves(n, "ok");
    th_node_free(n);
}

/* --- ch_strerror ----------------------------------------------------------------------- */

Test(strerror, names_every_corehub_code_distinctly)
{
    const int codes[] = {CH_EUNKNOWN_TYPE, CH_EALREADY, CH_ENOPROC,     CH_EINIT,       CH_ESTOPPED,
                         CH_EBADID,        CH_EMSGSIZE, CH_EWOULDBLOCK, CH_EROLLEDBACK, CH_ECRASHED,
                         CH_ETRUNCATED,    CH_EPARTIAL, CH_EPARTITIONED};
    const size_t count = sizeof(codes) / sizeof(codes[0]);
    for (size_t i = 0; i < count; i++) {
        const char *s = ch_strerror(codes[i]);
        cr_assert_not_null(s, "code %d", codes[i]);
        cr_assert_gt(strlen(s), 0, "code %d", codes[i]);
        for (size_t j = 0; j < i; j++)
            cr_assert_str_neq(s, ch_strerror(codes[j]), "codes %d and %d share \"%s\"", codes[i],
                              codes[j], s);
    }
}

Test(strerror, names_errno_codes_and_survives_unknown_ones)
{
    const int codes[] = {0,        -EINVAL, -ENOMEM, -EAGAIN, -ETIMEDOUT,
                         -ENODATA, -EBUSY,  -EEXIST, -ENOENT};
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        const char *s = ch_strerror(codes[i]);
        cr_assert_not_null(s, "code %d", codes[i]);
        cr_assert_gt(strlen(s), 0, "code %d", codes[i]);
    }
    cr_assert_str_neq(ch_strerror(-ETIMEDOUT), ch_strerror(-EAGAIN));
    cr_assert_str_neq(ch_strerror(-ETIMEDOUT), ch_strerror(CH_ECRASHED));
    cr_assert_not_null(ch_strerror(-99999));
    cr_assert_not_null(ch_strerror(12345));
    cr_assert_not_null(ch_strerror(INT32_MIN));
}
