/*
 * tests/test_member.c - membership merge rules: every node must converge on the same table
 * whatever order views arrive in, and final states must never be undone.
 */
#include "core/member.h"

#include <criterion/criterion.h>
#include <string.h>

static ch_mem rec(uint64_t id, uint64_t inc, ch_member_state s)
{
    ch_mem m = {.id = id, .incarnation = inc, .state = (uint8_t)s, .cores = 2};
    strcpy(m.addr, "127.0.0.1:1");
    return m;
}

static ch_mtab table(uint64_t self)
{
    ch_mtab t;
    ch_mem me = rec(self, 0, CH_MEMBER_ALIVE);
    cr_assert_eq(ch_mtab_init(&t, &me), 0);
    return t;
}

Test(member, new_alive_member_changes_the_ring)
{
    ch_mtab t = table(1);
    ch_mem m = rec(2, 0, CH_MEMBER_ALIVE);
    int bits = ch_mtab_merge(&t, &m, 1);
    cr_assert(bits & CH_MT_CHANGED);
    cr_assert(bits & CH_MT_RING);
    cr_assert_eq(ch_mtab_ring_size(&t), 2);
    cr_assert_eq(ch_mtab_merge(&t, &m, 2), 0, "the same record again changes nothing");
    ch_mtab_free(&t);
}

Test(member, suspicion_does_not_change_the_ring_but_death_does)
{
    ch_mtab t = table(1);
    ch_mem m = rec(2, 0, CH_MEMBER_ALIVE);
    ch_mtab_merge(&t, &m, 1);
    m.state = CH_MEMBER_SUSPECT;
    int bits = ch_mtab_merge(&t, &m, 2);
    cr_assert(bits & CH_MT_CHANGED);
    cr_assert_not(bits & CH_MT_RING);
    m.state = CH_MEMBER_DEAD;
    bits = ch_mtab_merge(&t, &m, 3);
    cr_assert(bits & CH_MT_RING);
    cr_assert_eq(ch_mtab_ring_size(&t), 1);
    ch_mtab_free(&t);
}

Test(member, higher_incarnation_alive_clears_a_suspicion)
{
    ch_mtab t = table(1);
    ch_mem m = rec(2, 3, CH_MEMBER_SUSPECT);
    ch_mtab_merge(&t, &m, 1);
    ch_mem stale = rec(2, 3, CH_MEMBER_ALIVE);
    cr_assert_eq(ch_mtab_merge(&t, &stale, 2), 0, "same incarnation: suspicion wins");
    ch_mem refuted = rec(2, 4, CH_MEMBER_ALIVE);
    cr_assert(ch_mtab_merge(&t, &refuted, 3) & CH_MT_CHANGED);
    cr_assert_eq(ch_mtab_find(&t, 2)->state, CH_MEMBER_ALIVE);
    ch_mtab_free(&t);
}

Test(member, dead_and_left_are_final)
{
    ch_mtab t = table(1);
    ch_mem m = rec(2, 0, CH_MEMBER_LEFT);
    ch_mtab_merge(&t, &m, 1);
    ch_mem back = rec(2, 99, CH_MEMBER_ALIVE);
    cr_assert_eq(ch_mtab_merge(&t, &back, 2), 0);
    cr_assert_eq(ch_mtab_find(&t, 2)->state, CH_MEMBER_LEFT);
    cr_assert_eq(ch_mtab_ring_size(&t), 1);
    ch_mtab_free(&t);
}

Test(member, a_node_refutes_its_own_suspicion)
{
    ch_mtab t = table(7);
    ch_mem about_me = rec(7, 0, CH_MEMBER_SUSPECT);
    int bits = ch_mtab_merge(&t, &about_me, 1);
    cr_assert(bits & CH_MT_REFUTE);
    cr_assert_eq(ch_mtab_self(&t)->incarnation, 1);
    cr_assert_eq(ch_mtab_self(&t)->state, CH_MEMBER_ALIVE);
    ch_mtab_free(&t);
}

/* Two nodes receiving the same records in opposite orders end with the same table. */
Test(member, merge_order_does_not_matter)
{
    ch_mem recs[] = {rec(2, 0, CH_MEMBER_ALIVE),   rec(3, 0, CH_MEMBER_ALIVE),
                     rec(2, 0, CH_MEMBER_SUSPECT), rec(3, 1, CH_MEMBER_ALIVE),
                     rec(4, 0, CH_MEMBER_ALIVE),   rec(2, 0, CH_MEMBER_DEAD),
                     rec(4, 2, CH_MEMBER_SUSPECT)};
    size_t n = sizeof(recs) / sizeof(recs[0]);
    ch_mtab a = table(1), b = table(1);
    for (size_t i = 0; i < n; i++)
        ch_mtab_merge(&a, &recs[i], i);
    for (size_t i = n; i-- > 0;)
        ch_mtab_merge(&b, &recs[i], i);
    for (uint64_t id = 2; id <= 4; id++) {
        ch_mem *x = ch_mtab_find(&a, id), *y = ch_mtab_find(&b, id);
        cr_assert(x && y);
        cr_assert_eq(x->state, y->state, "member %llu", (unsigned long long)id);
        cr_assert_eq(x->incarnation, y->incarnation, "member %llu", (unsigned long long)id);
    }
    uint64_t ia[8], ib[8];
    size_t ka = ch_mtab_ring_ids(&a, ia), kb = ch_mtab_ring_ids(&b, ib);
    cr_assert_eq(ka, kb);
    cr_assert_arr_eq(ia, ib, ka * sizeof(uint64_t));
    ch_mtab_free(&a);
    ch_mtab_free(&b);
}
