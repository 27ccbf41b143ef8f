/*
 * tools/seq.c - the "seq" process type (see seq.h).
 *
 * The migration tests' witness: `ctl pump` threads send numbered messages from several
 * senders while processes move, and `ctl check-seq` then asks every process whether it
 * saw each sender's numbers complete and in order. The state is one flat little-endian
 * block so that the default handover (the bytes as they are) carries it; the logic works
 * on plain buffers (seq_state_*) so that tests check it without a node.
 */
#include "seq.h"

#include "cli.h"
#include "counter.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

enum { OFF_MAGIC = 0, OFF_SENDERS = 4, OFF_TOTAL = 8, OFF_VIOLATIONS = 16 };

static void put_le32(unsigned char *d, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        d[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_le32(const unsigned char *s)
{
    return (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24;
}

void seq_state_init(void *buf)
{
    unsigned char *s = buf;
    memset(s, 0, SEQ_HDR);
    put_le32(s + OFF_MAGIC, SEQ_MAGIC);
}

bool seq_state_read(const void *state, size_t len, seq_summary *out)
{
    const unsigned char *s = state;
    if (!s || len < SEQ_HDR || get_le32(s + OFF_MAGIC) != SEQ_MAGIC) return false;
    uint32_t k = get_le32(s + OFF_SENDERS);
    if (k > SEQ_MAX_SENDERS || len != SEQ_HDR + (size_t)k * SEQ_ENTRY) return false;
    if (out)
        *out = (seq_summary){.total = cli_get_le64(s + OFF_TOTAL),
                             .violations = cli_get_le64(s + OFF_VIOLATIONS),
                             .senders = k};
    return true;
}

/* The entry of sender, or NULL. */
static unsigned char *find_entry(const unsigned char *s, uint64_t sender)
{
    uint32_t k = get_le32(s + OFF_SENDERS);
    for (uint32_t i = 0; i < k; i++) {
        const unsigned char *e = s + SEQ_HDR + (size_t)i * SEQ_ENTRY;
        if (cli_get_le64(e) == sender) return (unsigned char *)e;
    }
    return NULL;
}

size_t seq_state_need(const void *state, size_t len, uint64_t sender)
{
    const unsigned char *s = state;
    if (find_entry(s, sender) || get_le32(s + OFF_SENDERS) == SEQ_MAX_SENDERS) return len;
    return len + SEQ_ENTRY;
}

/* Hot path: one call per message. */
size_t seq_state_record(void *state, size_t len, uint64_t sender, uint64_t seq)
{
    unsigned char *s = state;
    uint32_t k = get_le32(s + OFF_SENDERS);
    unsigned char *e = find_entry(s, sender);
    bool in_order = false;
    if (e) {
        in_order = seq == cli_get_le64(e + 8) + 1;
    } else if (k < SEQ_MAX_SENDERS) {
        e = s + len; /* the caller made room: seq_state_need */
        cli_put_le64(e, sender);
        put_le32(s + OFF_SENDERS, k + 1);
        len += SEQ_ENTRY;
        in_order = seq == 1;
    }
    if (e) cli_put_le64(e + 8, seq);
    cli_put_le64(s + OFF_TOTAL, cli_get_le64(s + OFF_TOTAL) + 1);
    if (!in_order) cli_put_le64(s + OFF_VIOLATIONS, cli_get_le64(s + OFF_VIOLATIONS) + 1);
    return len;
}

uint64_t seq_state_last(const void *state, size_t len, uint64_t sender)
{
    (void)len;
    const unsigned char *e = find_entry(state, sender);
    return e ? cli_get_le64(e + 8) : 0;
}

/* A whole decimal u64 in [p, p + len). */
static bool parse_u64(const char *p, size_t len, uint64_t *out)
{
    int64_t v = 0;
    if (len == 0 || p[0] == '-' || !counter_parse_i64(p, len, &v)) {
        /* counter_parse_i64 stops at INT64_MAX: sequence numbers never get there. */
        return false;
    }
    *out = (uint64_t)v;
    return true;
}

bool seq_parse(const void *msg, size_t len, uint64_t *sender, uint64_t *seq)
{
    const char *s = msg;
    if (len == SEQ_BIN_LEN && s[0] == 0) {
        *sender = cli_get_le64(s + 1);
        *seq = cli_get_le64(s + 9);
        return true;
    }
    if (len < 5 || s[0] != 's' || s[1] != ' ') return false;
    const char *a = s + 2, *end = s + len;
    const char *sp = memchr(a, ' ', (size_t)(end - a));
    if (!sp) return false;
    return parse_u64(a, (size_t)(sp - a), sender) && parse_u64(sp + 1, (size_t)(end - sp - 1), seq);
}

static int seq_init(ch_proc *p, const void *arg, size_t arg_len, unsigned flags)
{
    (void)arg, (void)flags;
    if (arg_len != 0) return -EINVAL;
    void *state = ch_proc_state_resize(p, SEQ_HDR);
    if (!state) return -ENOMEM;
    seq_state_init(state);
    return 0;
}

static void seq_cast(ch_proc *p, const ch_msg *msg)
{
    uint64_t sender = 0, seq = 0;
    size_t len = 0;
    if (!seq_parse(msg->data, msg->len, &sender, &seq)) return;
    void *state = ch_proc_state(p, &len);
    size_t need = seq_state_need(state, len, sender);
    /* Out of memory: the message cannot be recorded, and check-seq will say so (its
     * total falls short); crashing would lose everything counted so far. */
    if (need != len && !(state = ch_proc_state_resize(p, need))) return;
    seq_state_record(state, len, sender, seq);
}

static void seq_call(ch_proc *p, const ch_msg *msg, const seq_summary *sum)
{
    char text[96];
    int n = -1;
    const char *s = msg->data;
    uint64_t sender = 0;
    if (msg->len == 3 && memcmp(s, "get", 3) == 0) {
        n = snprintf(text, sizeof(text),
                     "total=%" PRIu64 " violations=%" PRIu64 " senders=%" PRIu32, sum->total,
                     sum->violations, sum->senders);
    } else if (msg->len > 5 && memcmp(s, "last ", 5) == 0 &&
               parse_u64(s + 5, msg->len - 5, &sender)) {
        size_t len = 0;
        const void *state = ch_proc_state(p, &len);
        n = snprintf(text, sizeof(text), "%" PRIu64, seq_state_last(state, len, sender));
    }
    if (n > 0) (void)ch_reply(p, msg, text, (size_t)n); /* a lost reply: the caller sees it */
}

static int seq_handle(ch_proc *p, const ch_msg *msg)
{
    size_t len = 0;
    seq_summary sum;
    /* A state of another shape can only come from a foreign handover: refuse to guess. */
    const void *state = ch_proc_state(p, &len);
    if (!seq_state_read(state, len, &sum)) return -EINVAL;
    if (msg->kind == CH_MSG_CAST)
        seq_cast(p, msg);
    else if (msg->kind == CH_MSG_CALL)
        seq_call(p, msg, &sum);
    return CH_CONTINUE;
}

static const ch_process_type seq = {
    .name = SEQ_TYPE_NAME,
    .init = seq_init,
    .handle = seq_handle,
};

const ch_process_type *seq_type(void)
{
    return &seq;
}
