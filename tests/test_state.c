/*
 * tests/test_state.c - a process's state block (resize, set, free, reset on restart), the
 * type's user data, and the default callbacks of a type that only has a name.
 *
 * The "st" type:
 *   'g'              state as {u8 is_null, bytes...}
 *   'r' u32 len      resize; answers like 'g'
 *   'w' u32 off, b   write b at off (must fit)
 *   'S' u32 len      replace with a malloc'd block of len 'S' bytes, freed by counting_free
 *   'N'              replace with a static block the process must not free (free_fn NULL)
 *   'u'              ch_proc_type_ud as a pointer
 *   'c'              crash
 */
#include "helpers.h"

TestSuite(state, .timeout = 30);

static atomic_int frees;          /* counting_free calls */
static atomic_int init_saw_empty; /* inits that found NULL/0 state */
static atomic_int init_saw_state; /* inits that found something */
static char static_state[8] = "static!";
static int type_marker;

static void counting_free(void *p)
{
    atomic_fetch_add(&frees, 1);
    free(p);
}

static int st_init(ch_proc *p, const void *arg, size_t arg_len, unsigned flags)
{
    size_t len = 99;
    void *s = ch_proc_state(p, &len);
    if (s == NULL && len == 0)
        atomic_fetch_add(&init_saw_empty, 1);
    else
        atomic_fetch_add(&init_saw_state, 1);
    return 0;
}

static void answer_state(ch_proc *p, const ch_msg *m)
{
    size_t len = 0;
    const uint8_t *s = ch_proc_state(p, &len);
    uint8_t *out = malloc(len + 1);
    out[0] = s == NULL;
    if (len) memcpy(out + 1, s, len);
    th_check(ch_reply(p, m, out, len + 1) == 0);
    free(out);
}

static int st_handle(ch_proc *p, const ch_msg *m)
{
    if (m->kind != CH_MSG_CALL || m->len == 0) return CH_CONTINUE;
    const uint8_t *d = m->data;
    uint32_t a = 0;
    if (m->len >= 5) memcpy(&a, d + 1, sizeof(a));
    switch (d[0]) {
    case 'g':
        answer_state(p, m);
        break;
    case 'r':
        th_check(ch_proc_state_resize(p, a) != NULL);
        answer_state(p, m);
        break;
    case 'w': {
        size_t len;
        uint8_t *s = ch_proc_state(p, &len);
        th_check(a + (m->len - 5) <= len);
        memcpy(s + a, d + 5, m->len - 5);
        th_check(ch_reply(p, m, NULL, 0) == 0);
        break;
    }
    case 'S': {
        uint8_t *block = malloc(a);
        memset(block, 'S', a);
        ch_proc_state_set(p, block, a, counting_free);
        th_check(ch_reply(p, m, NULL, 0) == 0);
        break;
    }
    case 'N':
        ch_proc_state_set(p, static_state, sizeof(static_state), NULL);
        th_check(ch_reply(p, m, NULL, 0) == 0);
        break;
    case 'u': {
        void *ud = ch_proc_type_ud(p);
        th_check(ch_reply(p, m, &ud, sizeof(ud)) == 0);
        break;
    }
    case 'c':
        return -EIO;
    }
    return CH_CONTINUE;
}

static ch_node *st_node(void)
{
    ch_node_config cfg = th_config(2);
    ch_node *n = th_node_create(&cfg);
    ch_process_type st = {.name = "st", .init = st_init, .handle = st_handle, .ud = &type_marker};
    ch_process_type bare = {.name = "bare"};
    cr_assert_eq(ch_node_register_type(n, &st), 0);
    cr_assert_eq(ch_node_register_type(n, &bare), 0);
    th_node_start(n);
    ch_child_spec s = th_spec("s", "st");
    th_start_spec(n, &s);
    return n;
}

/* Sends an op with a u32 operand and optional bytes; returns the reply length. */
static size_t st_op(ch_node *n, char op, uint32_t a, const void *bytes, size_t blen, uint8_t *reply,
                    size_t cap)
{
    uint8_t req[64] = {(uint8_t)op};
    memcpy(req + 1, &a, sizeof(a));
    cr_assert_leq(blen, sizeof(req) - 5);
    if (blen) memcpy(req + 5, bytes, blen);
    size_t len = 0;
    int rc = ch_call(n, "s", CH_ID_CSTR, req, 5 + blen, reply, cap, &len, TH_CALL_MS);
    cr_assert_eq(rc, 0, "op %c: %s", op, ch_strerror(rc));
    return len;
}

static const uint8_t ZEROS[64];

Test(state, a_new_process_has_an_empty_state)
{
    ch_node *n = st_node();
    uint8_t r[8];
    cr_assert_eq(st_op(n, 'g', 0, NULL, 0, r, sizeof(r)), 1);
    cr_assert_eq(r[0], 1, "ch_proc_state is NULL when empty");
    cr_assert_eq(atomic_load(&init_saw_empty), 1);
    cr_assert_eq(atomic_load(&init_saw_state), 0);
    th_node_free(n);
}

Test(state, resize_keeps_contents_and_zero_fills_growth)
{
    ch_node *n = st_node();
    uint8_t r[64];
    cr_assert_eq(st_op(n, 'r', 8, NULL, 0, r, sizeof(r)), 9);
    cr_assert_eq(r[0], 0);
    cr_assert_arr_eq(r + 1, ZEROS, 8);
    st_op(n, 'w', 0, "abcdefgh", 8, r, sizeof(r));
    cr_assert_eq(st_op(n, 'r', 16, NULL, 0, r, sizeof(r)), 17);
    cr_assert_arr_eq(r + 1, "abcdefgh", 8);
    cr_assert_arr_eq(r + 9, ZEROS, 8, "growth is zero-filled");
    cr_assert_eq(st_op(n, 'r', 4, NULL, 0, r, sizeof(r)), 5);
    cr_assert_arr_eq(r + 1, "abcd", 4);
    cr_assert_eq(st_op(n, 'r', 12, NULL, 0, r, sizeof(r)), 13);
    cr_assert_arr_eq(r + 1, "abcd", 4);
    cr_assert_arr_eq(r + 5, ZEROS, 8, "bytes cut by a shrink do not come back");
    cr_assert_eq(st_op(n, 'g', 0, NULL, 0, r, sizeof(r)), 13, "the state persists");
    th_assert_no_bad();
    th_node_free(n);
}

Test(state, state_set_frees_the_old_state_and_the_framework_frees_the_last)
{
    ch_node *n = st_node();
    uint8_t r[64];
    st_op(n, 'S', 10, NULL, 0, r, sizeof(r));
    cr_assert_eq(atomic_load(&frees), 0);
    st_op(n, 'S', 20, NULL, 0, r, sizeof(r));
    cr_assert_eq(atomic_load(&frees), 1, "the replaced state was freed with its free_fn");
    cr_assert_eq(st_op(n, 'g', 0, NULL, 0, r, sizeof(r)), 21);
    cr_assert_eq(r[1], 'S');
    cr_assert_eq(th_stop(n, "s"), 0);
    cr_assert_eq(atomic_load(&frees), 2, "the state is freed after terminate");
    th_node_free(n);
}

Test(state, state_without_free_function_is_never_freed_and_can_be_resized)
{
    ch_node *n = st_node();
    uint8_t r[64];
    st_op(n, 'N', 0, NULL, 0, r, sizeof(r));
    cr_assert_eq(st_op(n, 'r', 16, NULL, 0, r, sizeof(r)), 17);
    cr_assert_arr_eq(r + 1, "static!", 8);
    cr_assert_arr_eq(r + 9, ZEROS, 8);
    cr_assert_str_eq(static_state, "static!", "the process's own block was not written");
    st_op(n, 'N', 0, NULL, 0, r, sizeof(r));
    st_op(n, 'S', 4, NULL, 0, r, sizeof(r)); /* replaces the static block: not freed */
    cr_assert_eq(th_stop(n, "s"), 0);
    cr_assert_eq(atomic_load(&frees), 1);
    th_node_free(n);
}

Test(state, a_restarted_process_starts_from_an_empty_state)
{
    ch_node *n = st_node();
    uint8_t r[64];
    st_op(n, 'S', 10, NULL, 0, r, sizeof(r));
    size_t len;
    cr_assert_eq(ch_call(n, "s", CH_ID_CSTR, "c", 1, r, sizeof(r), &len, TH_CALL_MS), CH_ECRASHED);
    cr_assert(TH_WAIT(th_incarnation(n, "s") == 1, TH_WAIT_MS));
    cr_assert_eq(atomic_load(&frees), 1, "the crashed incarnation's state was freed");
    cr_assert_eq(atomic_load(&init_saw_empty), 2);
    cr_assert_eq(atomic_load(&init_saw_state), 0, "init of the restart saw the old state");
    cr_assert_eq(st_op(n, 'g', 0, NULL, 0, r, sizeof(r)), 1);
    cr_assert_eq(r[0], 1);
    th_node_free(n);
}

Test(state, type_user_data_reaches_the_process)
{
    ch_node *n = st_node();
    void *ud = NULL;
    uint8_t r[sizeof(void *)];
    cr_assert_eq(st_op(n, 'u', 0, NULL, 0, r, sizeof(r)), sizeof(void *));
    memcpy(&ud, r, sizeof(ud));
    cr_assert_eq(ud, &type_marker);
    th_node_free(n);
}

Test(state, a_type_with_only_a_name_gets_the_default_callbacks)
{
    ch_node *n = st_node();
    ch_child_spec s = th_spec("bare", "bare");
    s.arg = "xyz";
    s.arg_len = 3;
    th_start_spec(n, &s);
    cr_assert_eq(th_send(n, "bare", CH_ID_CSTR, "ignored", 7), 0);
    char buf[8];
    size_t len = 99;
    int rc = ch_call(n, "bare", CH_ID_CSTR, "anything", 8, buf, sizeof(buf), &len, TH_CALL_MS);
    cr_assert_eq(rc, 0, "default handle answers calls: %s", ch_strerror(rc));
    cr_assert_eq(len, 0, "with an empty reply");
    cr_assert_eq(th_stop(n, "bare"), 0);
    cr_assert_eq(th_stats(n).crashes, 0);
    th_node_free(n);
}
