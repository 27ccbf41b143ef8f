/*
 * tests/test_tools_seq.c - the corehub program's "seq" process type (tools/seq.c), the
 * witness of the migration tests: its state logic on plain buffers (order, violations,
 * the sender table's bound, the portable byte layout that a handover carries as is), its
 * message parsing, and the type itself in a node of this process.
 *
 * tools/seq.c is compiled into this test (tests/CMakeLists.txt): the program has no
 * library of its own.
 */
#include "helpers.h"
#include "seq.h"

#include <criterion/criterion.h>

TestSuite(tools_seq, .timeout = 30);

/* A state buffer with room for every sender. */
typedef struct seq_buf {
    unsigned char b[SEQ_HDR + SEQ_MAX_SENDERS * SEQ_ENTRY];
    size_t len;
} seq_buf;

static void buf_init(seq_buf *s)
{
    memset(s->b, 0xee, sizeof(s->b)); /* what the table does not use must not matter */
    seq_state_init(s->b);
    s->len = SEQ_HDR;
}

static void record(seq_buf *s, uint64_t sender, uint64_t seq)
{
    size_t need = seq_state_need(s->b, s->len, sender);
    cr_assert_leq(need, sizeof(s->b));
    s->len = seq_state_record(s->b, s->len, sender, seq);
    cr_assert_eq(s->len, need, "the state grows by what seq_state_need said");
}

static seq_summary summary(const seq_buf *s)
{
    seq_summary sum;
    cr_assert(seq_state_read(s->b, s->len, &sum), "a well-formed state");
    return sum;
}

Test(tools_seq, numbers_in_order_per_sender_are_no_violation)
{
    seq_buf s;
    buf_init(&s);
    for (uint64_t r = 1; r <= 5; r++)
        for (uint64_t sender = 10; sender < 13; sender++)
            record(&s, sender, r); /* three senders interleaved */
    seq_summary sum = summary(&s);
    cr_expect_eq(sum.total, 15);
    cr_expect_eq(sum.violations, 0);
    cr_expect_eq(sum.senders, 3);
    cr_expect_eq(s.len, SEQ_HDR + 3 * SEQ_ENTRY);
    cr_expect_eq(seq_state_last(s.b, s.len, 11), 5);
    cr_expect_eq(seq_state_last(s.b, s.len, 99), 0, "an unknown sender's last is 0");
}

Test(tools_seq, a_gap_a_repeat_and_a_late_start_are_each_one_violation)
{
    seq_buf s;
    buf_init(&s);
    record(&s, 1, 1);
    record(&s, 1, 3); /* gap: 2 lost */
    record(&s, 1, 4); /* follows the 3 recorded */
    record(&s, 1, 4); /* doubled */
    record(&s, 2, 2); /* a sender's first number must be 1 */
    record(&s, 1, 2); /* reordered */
    seq_summary sum = summary(&s);
    cr_expect_eq(sum.total, 6);
    cr_expect_eq(sum.violations, 4);
    cr_expect_eq(seq_state_last(s.b, s.len, 1), 2, "the last number is recorded anyway");
}

Test(tools_seq, a_sender_past_the_table_counts_as_a_violation)
{
    seq_buf s;
    buf_init(&s);
    for (uint64_t sender = 0; sender < SEQ_MAX_SENDERS; sender++)
        record(&s, sender, 1);
    cr_expect_eq(seq_state_need(s.b, s.len, 1000), s.len, "a full table does not grow");
    record(&s, 1000, 1);
    record(&s, 1000, 2);
    seq_summary sum = summary(&s);
    cr_expect_eq(sum.senders, SEQ_MAX_SENDERS);
    cr_expect_eq(sum.total, SEQ_MAX_SENDERS + 2);
    cr_expect_eq(sum.violations, 2, "its order cannot be checked");
    cr_expect_eq(seq_state_last(s.b, s.len, 1000), 0);
}

/* The layout is the wire format of a handover: fixed, little-endian, flat. */
Test(tools_seq, state_bytes_are_a_fixed_little_endian_layout)
{
    seq_buf s;
    buf_init(&s);
    record(&s, 0x0102030405060708ull, 1);
    record(&s, 0x0102030405060708ull, 3);
    static const unsigned char want[SEQ_HDR + SEQ_ENTRY] = {
        'S', 'E', 'Q', '1', 1, 0, 0, 0, /* magic, senders */
        2,   0,   0,   0,   0, 0, 0, 0, /* total */
        1,   0,   0,   0,   0, 0, 0, 0, /* violations */
        8,   7,   6,   5,   4, 3, 2, 1, /* sender */
        3,   0,   0,   0,   0, 0, 0, 0, /* last */
    };
    cr_assert_eq(s.len, sizeof(want));
    cr_expect_arr_eq(s.b, want, sizeof(want));
}

Test(tools_seq, copied_bytes_carry_on_where_the_original_stopped)
{
    seq_buf a, b;
    buf_init(&a);
    for (uint64_t r = 1; r <= 100; r++)
        record(&a, 7, r);
    buf_init(&b);
    memcpy(b.b, a.b, a.len); /* what the default prepare/alter handover does */
    b.len = a.len;
    record(&b, 7, 101);
    record(&b, 8, 1);
    seq_summary sum = summary(&b);
    cr_expect_eq(sum.total, 102);
    cr_expect_eq(sum.violations, 0);
}

Test(tools_seq, malformed_states_are_refused)
{
    seq_buf s;
    buf_init(&s);
    record(&s, 1, 1);
    cr_expect(seq_state_read(s.b, s.len, NULL));
    cr_expect_not(seq_state_read(s.b, s.len - 1, NULL), "cut short");
    cr_expect_not(seq_state_read(s.b, s.len + SEQ_ENTRY, NULL), "longer than its table");
    cr_expect_not(seq_state_read(s.b, 8, NULL), "shorter than the header");
    cr_expect_not(seq_state_read(NULL, 0, NULL), "empty");
    s.b[0] = 'X';
    cr_expect_not(seq_state_read(s.b, s.len, NULL), "wrong magic");
    buf_init(&s);
    s.b[4] = SEQ_MAX_SENDERS + 1;
    cr_expect_not(seq_state_read(s.b, SEQ_HDR + (SEQ_MAX_SENDERS + 1) * SEQ_ENTRY, NULL),
                  "more senders than the bound");
}

Test(tools_seq, casts_parse_as_text_or_binary)
{
    uint64_t sender = 0, seq = 0;
    cr_expect(seq_parse("s 12 345", 8, &sender, &seq));
    cr_expect_eq(sender, 12);
    cr_expect_eq(seq, 345);
    unsigned char bin[SEQ_BIN_LEN] = {0, 1, 0, 0, 0, 0, 0, 0, 0x80, 2, 1, 0, 0, 0, 0, 0, 0};
    cr_expect(seq_parse(bin, sizeof(bin), &sender, &seq));
    cr_expect_eq(sender, 0x8000000000000001ull);
    cr_expect_eq(seq, 0x102);
    static const char *const bad[] = {"s 1",    "s 1 ",  "s  1 2",  "s x 2", "s 1 2x",
                                      "s -1 2", "t 1 2", "s 1 2 3", "s12 3", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_not(seq_parse(bad[i], strlen(bad[i]), &sender, &seq), "'%s'", bad[i]);
    bin[0] = 's';
    cr_expect_not(seq_parse(bin, sizeof(bin), &sender, &seq), "binary starts with a 0 byte");
}

/* ---- the type in a node ---------------------------------------------------------------- */

static ch_node *seq_node(void)
{
    ch_node_config cfg = th_config(2);
    ch_node *n = th_node_create(&cfg);
    int rc = ch_node_register_type(n, seq_type());
    cr_assert_eq(rc, 0, "register seq: %s", ch_strerror(rc));
    th_node_start(n);
    return n;
}

static void expect_reply(ch_node *n, const char *id, const char *req, const char *want)
{
    char buf[128];
    size_t len = 0;
    int rc = th_call(n, id, req, buf, sizeof(buf) - 1, &len);
    cr_assert_eq(rc, 0, "call %s '%s': %s", id, req, ch_strerror(rc));
    buf[len] = '\0';
    cr_expect_str_eq(buf, want, "call %s '%s'", id, req);
}

static void send_text(ch_node *n, const char *id, const char *msg)
{
    cr_assert_eq(th_send(n, id, CH_ID_CSTR, msg, strlen(msg)), 0);
}

Test(tools_seq, a_seq_process_counts_checks_and_answers)
{
    ch_node *n = seq_node();
    ch_child_spec spec = th_spec("q", SEQ_TYPE_NAME);
    th_start_spec(n, &spec);
    expect_reply(n, "q", "get", "total=0 violations=0 senders=0");
    send_text(n, "q", "s 1 1");
    send_text(n, "q", "s 1 2");
    unsigned char bin[SEQ_BIN_LEN] = {0, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0};
    cr_assert_eq(th_send(n, "q", CH_ID_CSTR, bin, sizeof(bin)), 0); /* sender 2, seq 1 */
    send_text(n, "q", "s 1 4");                                     /* 3 is missing */
    send_text(n, "q", "not a seq message");                         /* ignored */
    /* One thread's messages are handled in order: the call comes after the casts. */
    expect_reply(n, "q", "get", "total=4 violations=1 senders=2");
    expect_reply(n, "q", "last 1", "4");
    expect_reply(n, "q", "last 2", "1");
    expect_reply(n, "q", "last 3", "0");
    char buf[8];
    size_t len = 0;
    cr_expect_eq(th_call(n, "q", "what", buf, sizeof(buf), &len), -ENODATA);
    th_node_free(n);
}

Test(tools_seq, a_seq_process_refuses_an_init_argument)
{
    ch_node *n = seq_node();
    ch_child_spec spec = th_spec("q", SEQ_TYPE_NAME);
    spec.arg = "x";
    spec.arg_len = 1;
    ch_batch_opts o = {.timeout_ms = TH_WAIT_MS};
    int res = 0;
    ch_start_children(n, &spec, 1, &o, &res);
    cr_expect_eq(res, CH_EINIT);
    th_node_free(n);
}
