/*
 * tools/counter.c - the "counter" process type (see counter.h).
 *
 * The demo uses it to prove that no update is lost: every cast adds to the count, and a
 * call reads it back, so the final count is an exact checksum of the updates delivered.
 * `corehub ctl send/call` drive it with text ("inc", "add 5", "get"). The state is kept
 * little-endian so that the default handover (state bytes as they are) carries it
 * between nodes of any byte order.
 */
#include "counter.h"

#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

bool counter_parse_i64(const void *p, size_t len, int64_t *out)
{
    const char *s = p;
    bool neg = len > 0 && s[0] == '-';
    size_t i = neg ? 1 : 0;
    if (i == len || len > 20) return false;
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10) return false;
        v = v * 10 + d;
    }
    /* Two's complement by hand: negating INT64_MIN as an int64 would overflow. */
    *out = (int64_t)(neg ? (uint64_t)0 - v : v);
    return true;
}

/* A text cast, "inc" or "add N": true with *delta set when msg is one. */
static bool text_delta(const ch_msg *msg, int64_t *delta)
{
    const char *s = msg->data;
    if (msg->len == 3 && memcmp(s, "inc", 3) == 0) {
        *delta = 1;
        return true;
    }
    return msg->len > 4 && memcmp(s, "add ", 4) == 0 &&
           counter_parse_i64(s + 4, msg->len - 4, delta);
}

static int counter_init(ch_proc *p, const void *arg, size_t arg_len, unsigned flags)
{
    int64_t v = 0;
    bool text = arg_len > 0 && counter_parse_i64(arg, arg_len, &v);
    if (!text && arg_len != 0 && arg_len != 8) return -EINVAL;
    void *state = ch_proc_state_resize(p, 8); /* zero-filled */
    if (!state) return -ENOMEM;
    if (text)
        cli_put_le64(state, (uint64_t)v);
    else if (arg_len == 8)
        cli_put_le64(state, cli_get_le64(arg));
    return 0;
}

static void counter_reply(ch_proc *p, const ch_msg *msg, uint64_t count)
{
    /* If the reply cannot be sent the caller gets -ENODATA; crashing would also lose the
     * count, so carry on either way. */
    if (msg->len == 0) {
        unsigned char reply[8];
        cli_put_le64(reply, count);
        (void)ch_reply(p, msg, reply, sizeof(reply));
    } else if (msg->len == 3 && memcmp(msg->data, "get", 3) == 0) {
        char text[24];
        int n = snprintf(text, sizeof(text), "%" PRId64, (int64_t)count);
        (void)ch_reply(p, msg, text, (size_t)n);
    }
}

/* Hot path: one cast per update. */
static int counter_handle(ch_proc *p, const ch_msg *msg)
{
    size_t len = 0;
    void *state = ch_proc_state(p, &len);
    /* A state of another size can only come from a foreign handover: refuse to guess. */
    if (!state || len != 8) return -EINVAL;
    uint64_t count = cli_get_le64(state);
    int64_t delta = 0;
    switch (msg->kind) {
    case CH_MSG_CAST:
        /* Casts come from users too (`ctl send`): ignore what is not an update. */
        if (text_delta(msg, &delta))
            cli_put_le64(state, count + (uint64_t)delta);
        else if (msg->len == 8)
            cli_put_le64(state, count + cli_get_le64(msg->data));
        return CH_CONTINUE;
    case CH_MSG_CALL:
        counter_reply(p, msg, count);
        return CH_CONTINUE;
    default:
        return CH_CONTINUE;
    }
}

static const ch_process_type counter = {
    .name = COUNTER_TYPE_NAME,
    .init = counter_init,
    .handle = counter_handle,
};

const ch_process_type *counter_type(void)
{
    return &counter;
}
