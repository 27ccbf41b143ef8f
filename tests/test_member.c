/*
 * tests/test_member.c - membership merge rules: every node must converge on the same table
 * whatever order views arrive in, and final states must never be undone.
 */
#include "net/cluster/mtab.h"

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

Test(member, a_dead_member_comes_back_with_a_higher_incarnation)
{
    ch_mtab t = table(1);
    ch_mem m = rec(2, 3, CH_MEMBER_DEAD);
    ch_mtab_merge(&t, &m, 1);
    cr_assert_eq(ch_mtab_ring_size(&t), 1);
    ch_mem same = rec(2, 3, CH_MEMBER_ALIVE);
    cr_assert_eq(ch_mtab_merge(&t, &same, 2), 0, "at one incarnation death beats life");
    ch_mem refuted = rec(2, 4, CH_MEMBER_ALIVE);
    cr_assert_eq(ch_mtab_merge(&t, &refuted, 3), 0,
                 "refuting a suspicion is not enough: it must have heard of its death");
    ch_mem back = rec(2, 4, CH_MEMBER_ALIVE);
    back.rejoin_inc = 4;
    int bits = ch_mtab_merge(&t, &back, 3);
    cr_assert(bits & CH_MT_RING);
    cr_assert_eq(ch_mtab_find(&t, 2)->state, CH_MEMBER_ALIVE);
    cr_assert(ch_mtab_find(&t, 2)->revived);
    cr_assert_eq(ch_mtab_ring_size(&t), 2);
    ch_mtab_free(&t);
}

/* A stalled node refutes the suspicion it reads first, then hears of its death at the
 * incarnation below: it must still rejoin. */
Test(member, a_death_below_our_incarnation_is_news_until_we_rejoined)
{
    ch_mtab t = table(7);
    ch_mem suspicion = rec(7, 0, CH_MEMBER_SUSPECT);
    ch_mtab_merge(&t, &suspicion, 1);
    cr_assert_eq(ch_mtab_self(&t)->incarnation, 1);
    ch_mem death = rec(7, 0, CH_MEMBER_DEAD);
    cr_assert(ch_mtab_merge(&t, &death, 2) & CH_MT_REJOIN);
    cr_assert_eq(ch_mtab_self(&t)->incarnation, 2);
    cr_assert_eq(ch_mtab_self(&t)->rejoin_inc, 2);
    ch_mtab_free(&t);
}

Test(member, left_stays_left_whatever_the_incarnation)
{
    ch_mtab t = table(1);
    ch_mem m = rec(2, 0, CH_MEMBER_ALIVE);
    ch_mtab_merge(&t, &m, 1);
    ch_mem left = rec(2, 0, CH_MEMBER_LEFT);
    cr_assert(ch_mtab_merge(&t, &left, 2) & CH_MT_RING);
    ch_mem dead = rec(2, 5, CH_MEMBER_DEAD);
    cr_assert_eq(ch_mtab_merge(&t, &dead, 3), 0);
    cr_assert_eq(ch_mtab_find(&t, 2)->state, CH_MEMBER_LEFT);
    ch_mtab_free(&t);
}

Test(member, a_node_told_it_is_dead_refutes_above_the_claim_and_rejoins)
{
    ch_mtab t = table(7);
    ch_mem about_me = rec(7, 4, CH_MEMBER_DEAD);
    int bits = ch_mtab_merge(&t, &about_me, 1);
    cr_assert(bits & CH_MT_REFUTE);
    cr_assert(bits & CH_MT_REJOIN);
    cr_assert_eq(ch_mtab_self(&t)->incarnation, 5);
    cr_assert_eq(ch_mtab_self(&t)->state, CH_MEMBER_ALIVE);
    ch_mem older = rec(7, 4, CH_MEMBER_DEAD);
    cr_assert_eq(ch_mtab_merge(&t, &older, 2), 0, "a death we rejoined from is old news");
    cr_assert_eq(ch_mtab_self(&t)->rejoin_inc, 5);
    ch_mem again = rec(7, 5, CH_MEMBER_DEAD);
    cr_assert(ch_mtab_merge(&t, &again, 3) & CH_MT_REJOIN, "a second death is news");
    cr_assert_eq(ch_mtab_self(&t)->incarnation, 6);
    ch_mtab_free(&t);
}

Test(member, a_peer_that_refuted_wins_over_its_tombstone_everywhere)
{
    /* One node saw the death, another the refutation first: both end ALIVE at 1. */
    ch_mem dead = rec(2, 0, CH_MEMBER_DEAD), back = rec(2, 1, CH_MEMBER_ALIVE);
    back.rejoin_inc = 1;
    ch_mtab a = table(1), b = table(3);
    ch_mtab_merge(&a, &dead, 1);
    ch_mtab_merge(&a, &back, 2);
    ch_mtab_merge(&b, &back, 1);
    ch_mtab_merge(&b, &dead, 2);
    cr_assert_eq(ch_mtab_find(&a, 2)->state, CH_MEMBER_ALIVE);
    cr_assert_eq(ch_mtab_find(&b, 2)->state, CH_MEMBER_ALIVE);
    cr_assert_eq(ch_mtab_find(&a, 2)->incarnation, ch_mtab_find(&b, 2)->incarnation);
    ch_mtab_free(&a);
    ch_mtab_free(&b);
}

/* Connections keep a pointer to their member: growing the table must not move records. */
Test(member, records_stay_where_they_are_while_the_table_grows)
{
    ch_mtab t = table(1);
    ch_mem m = rec(2, 0, CH_MEMBER_ALIVE);
    ch_mtab_merge(&t, &m, 1);
    ch_mem *two = ch_mtab_find(&t, 2);
    for (uint64_t id = 3; id < 40; id++) {
        ch_mem x = rec(id, 0, CH_MEMBER_ALIVE);
        ch_mtab_merge(&t, &x, id);
    }
    cr_assert_eq(ch_mtab_find(&t, 2), two);
    cr_assert_eq(two->id, 2);
    cr_assert_eq(ch_mtab_ring_size(&t), 39);
    ch_mtab_free(&t);
}

Test(member, old_tombstones_are_forgotten_unless_in_use)
{
    ch_mtab t = table(1);
    for (uint64_t id = 2; id <= 4; id++) {
        ch_mem x = rec(id, 0, CH_MEMBER_DEAD);
        ch_mtab_merge(&t, &x, 100);
    }
    ch_mem alive = rec(5, 0, CH_MEMBER_ALIVE);
    ch_mtab_merge(&t, &alive, 100);
    int token;
    ch_mtab_find(&t, 3)->conn = &token; /* a connection still points at it */
    cr_assert_eq(ch_mtab_reap(&t, 150, 100), 0, "not old enough yet");
    cr_assert_eq(ch_mtab_reap(&t, 201, 100), 2);
    cr_assert_null(ch_mtab_find(&t, 2));
    cr_assert_not_null(ch_mtab_find(&t, 3));
    cr_assert_not_null(ch_mtab_find(&t, 5), "the living stay");
    cr_assert_not_null(ch_mtab_self(&t));
    ch_mtab_free(&t);
}

Test(member, tombstones_and_members_are_bounded)
{
    ch_mtab t = table(1);
    for (uint64_t id = 2; id < 2 + CH_MTAB_TOMBSTONES + 50; id++) {
        ch_mem x = rec(id, 0, CH_MEMBER_LEFT);
        ch_mtab_merge(&t, &x, id);
    }
    ch_mtab_reap(&t, 1000, UINT64_MAX / 2);
    cr_assert_eq(t.n, 1 + CH_MTAB_TOMBSTONES);
    cr_assert_null(ch_mtab_find(&t, 2), "the oldest go first");
    for (uint64_t id = 100000; id < 100000 + CH_MTAB_MAX + 10; id++) {
        ch_mem x = rec(id, 0, CH_MEMBER_ALIVE);
        ch_mtab_merge(&t, &x, 2000);
    }
    cr_assert_eq(t.n, CH_MTAB_MAX);
    ch_mtab_free(&t);
}

Test(member, a_death_keeps_the_name_of_its_declarer_through_relays)
{
    /* Node 3 joins late and learns from node 2 that node 4 is dead, as node 2 found: it
     * must pass on node 2's name, not its own, so that node 4 judges its declarer. */
    ch_mtab t = table(3);
    ch_mem dead = rec(4, 1, CH_MEMBER_DEAD);
    dead.dead_by = 2;
    ch_mtab_merge(&t, &dead, 1);
    cr_assert_eq(ch_mtab_find(&t, 4)->dead_by, 2, "a new record keeps its declarer");

    ch_mtab u = table(3);
    ch_mem alive = rec(4, 1, CH_MEMBER_ALIVE);
    ch_mtab_merge(&u, &alive, 1);
    ch_mtab_merge(&u, &dead, 2);
    cr_assert_eq(ch_mtab_find(&u, 4)->dead_by, 2, "worse news at one incarnation keeps it");

    ch_mtab v = table(3);
    ch_mtab_merge(&v, &alive, 1);
    ch_mem newer = rec(4, 2, CH_MEMBER_DEAD);
    newer.dead_by = 5;
    ch_mtab_merge(&v, &newer, 2);
    cr_assert_eq(ch_mtab_find(&v, 4)->dead_by, 5, "a newer death names its own declarer");
    ch_mtab_free(&t);
    ch_mtab_free(&u);
    ch_mtab_free(&v);
}
