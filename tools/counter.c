/*
 * tools/counter.c - the "counter" process type (see counter.h).
 *
 * The demo uses it to prove that no update is lost: every cast adds to the count, and a
 * call reads it back, so the final count is an exact checksum of the updates delivered.
 * The state is kept little-endian so that the default handover (state bytes as they are)
 * carries it between nodes of any byte order.
 */
#include "counter.h"

#include "cli.h"

#include <errno.h>

static int counter_init(ch_proc *p, const void *arg, size_t arg_len, unsigned flags)
{
    if (arg_len != 0 && arg_len != 8) return -EINVAL;
    void *state = ch_proc_state_resize(p, 8); /* zero-filled */
    if (!state) return -ENOMEM;
    if (arg_len == 8) cli_put_le64(state, cli_get_le64(arg));
    return 0;
}

/* Hot path: one cast per update. */
static int counter_handle(ch_proc *p, const ch_msg *msg)
{
    size_t len = 0;
    void *state = ch_proc_state(p, &len);
    /* A state of another size can only come from a foreign handover: refuse to guess. */
    if (!state || len != 8) return -EINVAL;
    uint64_t count = cli_get_le64(state);
    switch (msg->kind) {
    case CH_MSG_CAST:
        /* Wrong-sized casts come from users (`ctl send`): ignore, do not crash. */
        if (msg->len == 8) cli_put_le64(state, count + cli_get_le64(msg->data));
        return CH_CONTINUE;
    case CH_MSG_CALL: {
        unsigned char reply[8];
        cli_put_le64(reply, count);
        /* If the reply cannot be sent the caller gets -ENODATA; crashing would also
         * lose the count, so carry on. */
        (void)ch_reply(p, msg, reply, sizeof(reply));
        return CH_CONTINUE;
    }
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
