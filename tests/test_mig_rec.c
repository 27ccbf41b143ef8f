/*
 * tests/test_mig_rec.c - the typed migration records (migration/handover.h): every op's
 * named fields survive the trip through a ch_rec, and the fields an op does not use come
 * back zero, so that no field of one op leaks into another's meaning.
 */
#include <criterion/criterion.h>

#include "migration/handover.h"
#include "net/frame.h"

static ch_mig_msg trip(const ch_mig_msg *m, size_t len)
{
    ch_rec h = ch_mig_rec(m, len);
    cr_assert_eq(h.op, CH_OP_MIG);
    cr_assert_eq(h.len, len);
    return ch_mig_read(&h);
}

Test(mig_rec, ring_ops_carry_their_round)
{
    static int ring; /* any pointer stands for the ring */
    const uint8_t ops[] = {CH_MIG_RING, CH_MIG_SWITCHED, CH_MIG_SEALED,
                           CH_MIG_DONE, CH_MIG_UNHOLD,   CH_MIG_IMARK};
    for (size_t i = 0; i < sizeof(ops); i++) {
        ch_mig_msg m = {.op = ops[i], .round = 0x1122334455667788ull, .ptr = &ring};
        ch_mig_msg got = trip(&m, 24);
        cr_expect_eq(got.op, ops[i]);
        cr_expect_eq(got.round, m.round, "op %u", ops[i]);
        cr_expect_eq(got.node, 0, "op %u: no node", ops[i]);
        cr_expect_eq(got.ptr, &ring);
        cr_expect_eq(got.frame, 0);
    }
}

Test(mig_rec, a_mark_names_its_core_and_round)
{
    ch_mig_msg m = {.op = CH_MIG_MARK, .round = 42, .from_core = 7};
    ch_mig_msg got = trip(&m, 0);
    cr_expect_eq(got.round, 42);
    cr_expect_eq(got.from_core, 7);
    cr_expect_eq(got.frame, 0, "a core is no frame type");
}

Test(mig_rec, frames_carry_their_node_type_and_block)
{
    static char block[64];
    const uint8_t ops[] = {CH_MIG_OUT, CH_MIG_IN};
    for (size_t i = 0; i < sizeof(ops); i++) {
        ch_mig_msg m = {.op = ops[i], .frame = CH_F_MIG_ACK, .node = 0xabcdefull, .ptr = block};
        ch_mig_msg got = trip(&m, 8);
        cr_expect_eq(got.node, 0xabcdefull, "op %u", ops[i]);
        cr_expect_eq(got.frame, CH_F_MIG_ACK);
        cr_expect_eq(got.ptr, block);
        cr_expect_eq(got.round, 0, "op %u: no round", ops[i]);
        cr_expect_eq(got.from_core, 0);
    }
}

Test(mig_rec, gone_names_a_node_and_reply_nothing_else)
{
    ch_mig_msg gone = trip(&(ch_mig_msg){.op = CH_MIG_GONE, .node = 9}, 0);
    cr_expect_eq(gone.node, 9);
    cr_expect_eq(gone.round, 0);
    ch_mig_msg reply = trip(&(ch_mig_msg){.op = CH_MIG_REPLY}, 30);
    cr_expect_eq(reply.op, CH_MIG_REPLY);
    cr_expect_eq(reply.node | reply.round | reply.frame | reply.from_core, 0);
    cr_expect_null(reply.ptr);
}

Test(mig_rec, lanes_names_a_node_and_carries_its_block)
{
    uint16_t block[4];
    ch_mig_msg got = trip(&(ch_mig_msg){.op = CH_MIG_LANES, .node = 11, .ptr = block}, 0);
    cr_expect_eq(got.op, CH_MIG_LANES);
    cr_expect_eq(got.node, 11);
    cr_expect_eq(got.round, 0);
    cr_expect_eq(got.ptr, block);
}
