/*
 * tests/test_hashring.c - the consistent-hash ring (net/cluster/hashring.h).
 *
 * Deterministic: node ids and hashes come from splitmix64 with fixed seeds, and the ids
 * placed in the balance and movement tests are XXH3_64 of "id-0" .. "id-199999", the same
 * hash the node uses for a process id. A reference ring built here from the documented point
 * formula checks owners and successors by brute force, so a change of the formula (which
 * would split a hub of mixed versions) fails a test.
 */
#include <criterion/criterion.h>

#include "net/cluster/hashring.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#define NIDS 200000

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void make_nodes(uint64_t *ids, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        ids[i] = splitmix(&seed);
}

/* XXH3_64 of "id-0" .. "id-199999", computed once per test process. */
static const uint64_t *id_hashes(void)
{
    static uint64_t h[NIDS];
    static int done;
    if (done) return h;
    for (int i = 0; i < NIDS; i++) {
        char b[32];
        int len = snprintf(b, sizeof(b), "id-%d", i);
        h[i] = XXH3_64bits(b, (size_t)len);
    }
    done = 1;
    return h;
}

static ch_hashring *build(const uint64_t *ids, size_t n, uint32_t vnodes)
{
    ch_hashring *r = NULL;
    cr_assert_eq(ch_hashring_build(ids, n, vnodes, 1, &r), 0, "build of %zu nodes", n);
    cr_assert_not_null(r);
    return r;
}

static uint64_t owner_of(const ch_hashring *r, uint64_t hash)
{
    uint64_t node = 0;
    cr_assert_eq(ch_hashring_owner(r, hash, &node), 0);
    return node;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Index of a member in the ring's sorted ids. */
static size_t node_index(const ch_hashring *r, uint64_t node)
{
    const uint64_t *ids = ch_hashring_node_ids(r);
    const uint64_t *at = bsearch(&node, ids, ch_hashring_nodes(r), sizeof(*ids), cmp_u64);
    cr_assert_not_null(at, "owner %016llx is not a member", (unsigned long long)node);
    return (size_t)(at - ids);
}

/* --- the reference ring: the documented formula, sorted, searched linearly ------------ */

typedef struct ref_point {
    uint64_t pos;
    uint64_t node;
} ref_point;

static int cmp_ref(const void *a, const void *b)
{
    const ref_point *x = a, *y = b;
    if (x->pos != y->pos) return (x->pos > y->pos) - (x->pos < y->pos);
    return (x->node > y->node) - (x->node < y->node);
}

/* XXH3_64 of the node id and the vnode index, 16 little-endian bytes. */
static uint64_t ref_pos(uint64_t node, uint64_t vnode)
{
    unsigned char b[16];
    for (int i = 0; i < 8; i++) {
        b[i] = (unsigned char)(node >> (8 * i));
        b[8 + i] = (unsigned char)(vnode >> (8 * i));
    }
    return XXH3_64bits(b, sizeof(b));
}

static ref_point *ref_build(const uint64_t *ids, size_t n, uint32_t vnodes)
{
    ref_point *p = malloc(n * vnodes * sizeof(*p));
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++)
        for (uint32_t v = 0; v < vnodes; v++)
            p[i * vnodes + v] = (ref_point){ref_pos(ids[i], v), ids[i]};
    qsort(p, n * vnodes, sizeof(*p), cmp_ref);
    return p;
}

static size_t ref_owner_point(const ref_point *p, size_t np, uint64_t hash)
{
    for (size_t i = 0; i < np; i++)
        if (p[i].pos >= hash) return i;
    return 0;
}

/* --- tests ------------------------------------------------------------------------------ */

Test(hashring, same_members_in_any_order_give_identical_owners)
{
    enum { N = 16 };
    uint64_t sorted[N], reversed[N], shuffled[N];
    make_nodes(sorted, N, 42);
    qsort(sorted, N, sizeof(sorted[0]), cmp_u64);
    for (size_t i = 0; i < N; i++)
        reversed[i] = shuffled[N - 1 - i] = sorted[i];
    uint64_t seed = 7;
    for (size_t i = N - 1; i > 0; i--) {
        size_t j = (size_t)(splitmix(&seed) % (i + 1));
        uint64_t t = shuffled[i];
        shuffled[i] = shuffled[j];
        shuffled[j] = t;
    }
    ch_hashring *a = build(sorted, N, CH_HASHRING_DEFAULT_VNODES);
    ch_hashring *b = build(reversed, N, CH_HASHRING_DEFAULT_VNODES);
    ch_hashring *c = build(shuffled, N, CH_HASHRING_DEFAULT_VNODES);

    cr_assert_arr_eq(ch_hashring_node_ids(a), sorted, sizeof(sorted));
    cr_assert_arr_eq(ch_hashring_node_ids(b), sorted, sizeof(sorted));
    cr_assert_arr_eq(ch_hashring_node_ids(c), sorted, sizeof(sorted));
    for (int i = 0; i < 100000; i++) {
        uint64_t h = splitmix(&seed), o = owner_of(a, h);
        cr_assert_eq(owner_of(b, h), o, "hash %016llx", (unsigned long long)h);
        cr_assert_eq(owner_of(c, h), o, "hash %016llx", (unsigned long long)h);
    }
    ch_hashring_free(a);
    ch_hashring_free(b);
    ch_hashring_free(c);
}

Test(hashring, owner_is_the_node_of_the_first_point_at_or_after_the_hash)
{
    enum { N = 5, V = 64 };
    uint64_t ids[N];
    make_nodes(ids, N, 3);
    ch_hashring *r = build(ids, N, V);
    ref_point *ref = ref_build(ids, N, V);
    uint64_t seed = 11;
    for (int i = 0; i < 20000; i++) {
        uint64_t h = splitmix(&seed);
        cr_assert_eq(owner_of(r, h), ref[ref_owner_point(ref, N * V, h)].node);
    }
    for (size_t i = 0; i < N * V; i++) { /* on a point, and just past it */
        uint64_t on = ref[i].pos, past = ref[i].pos + 1;
        cr_assert_eq(owner_of(r, on), ref[ref_owner_point(ref, N * V, on)].node);
        cr_assert_eq(owner_of(r, past), ref[ref_owner_point(ref, N * V, past)].node);
    }
    free(ref);
    ch_hashring_free(r);
}

Test(hashring, hash_above_the_last_point_wraps_to_the_first_points_node)
{
    enum { N = 4, V = 32 };
    uint64_t ids[N];
    make_nodes(ids, N, 5);
    ch_hashring *r = build(ids, N, V);
    ref_point *ref = ref_build(ids, N, V);
    const ref_point *first = &ref[0], *last = &ref[N * V - 1];
    cr_assert_neq(first->node, last->node, "pick a seed where the wrap changes owners");
    cr_assert_lt(last->pos, UINT64_MAX);

    cr_assert_eq(owner_of(r, last->pos), last->node);
    cr_assert_eq(owner_of(r, last->pos + 1), first->node);
    cr_assert_eq(owner_of(r, UINT64_MAX), first->node);
    cr_assert_eq(owner_of(r, 0), first->node);
    uint64_t succ[N] = {0};
    cr_assert_eq(ch_hashring_successors(r, UINT64_MAX, 1, succ), 1);
    cr_assert_eq(succ[0], first->node);
    free(ref);
    ch_hashring_free(r);
}

/*
 * Bound: with 256 vnodes, the busiest node's load over the mean stayed below 1.27 for
 * every one of 200 random member sets at each of these sizes (mean 1.05 at 3 nodes, 1.16
 * at 64; see hashring.h); 1.3 leaves room for this fixed set and fails for a clearly
 * worse ring, such as 64 vnodes (mean 1.30 at 64 nodes).
 */
Test(hashring, default_vnodes_keep_every_node_within_1_3_of_the_mean_load)
{
    static const size_t sizes[] = {3, 4, 8, 16, 32, 64};
    const uint64_t *h = id_hashes();
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t n = sizes[s], load[64] = {0}, max = 0;
        uint64_t ids[64];
        make_nodes(ids, n, 1000 + n);
        ch_hashring *r = build(ids, n, CH_HASHRING_DEFAULT_VNODES);
        for (int i = 0; i < NIDS; i++)
            load[node_index(r, owner_of(r, h[i]))]++;
        for (size_t i = 0; i < n; i++)
            max = load[i] > max ? load[i] : max;
        double ratio = (double)max / ((double)NIDS / (double)n);
        cr_log_info("%zu nodes x %u vnodes: max/mean %.3f", n, CH_HASHRING_DEFAULT_VNODES, ratio);
        cr_assert_leq(ratio, 1.3, "%zu nodes: max/mean %.3f", n, ratio);
        ch_hashring_free(r);
    }
}

Test(hashring, adding_a_node_moves_about_its_share_and_only_to_it)
{
    const uint64_t *h = id_hashes();
    for (size_t n = 3; n <= 32; n++) {
        uint64_t ids[33];
        make_nodes(ids, n + 1, 2000 + n);
        ch_hashring *before = build(ids, n, CH_HASHRING_DEFAULT_VNODES);
        ch_hashring *after = build(ids, n + 1, CH_HASHRING_DEFAULT_VNODES);
        size_t moved = 0;
        for (int i = 0; i < NIDS; i++) {
            uint64_t a = owner_of(before, h[i]), b = owner_of(after, h[i]);
            if (a == b) continue;
            cr_assert_eq(b, ids[n], "n=%zu: id-%d moved to an old node", n, i);
            moved++;
        }
        double share = (double)moved / NIDS * (double)(n + 1); /* 1.0: exactly 1/(n+1) */
        cr_assert(share >= 0.5 && share <= 1.6, "%zu -> %zu nodes: moved %.2f x 1/(n+1)", n, n + 1,
                  share);
        ch_hashring_free(before);
        ch_hashring_free(after);
    }
}

/* The orphans go to their next distinct node clockwise, which is what the old ring gave as
 * their second successor: the replica the leaver's processes already had. */
Test(hashring, removing_a_node_moves_only_its_ids_to_their_next_successor)
{
    const uint64_t *h = id_hashes();
    for (size_t n = 3; n <= 32; n++) {
        uint64_t ids[32], rest[32];
        make_nodes(ids, n, 3000 + n);
        size_t gone = n / 2, m = 0;
        for (size_t i = 0; i < n; i++)
            if (i != gone) rest[m++] = ids[i];
        ch_hashring *before = build(ids, n, CH_HASHRING_DEFAULT_VNODES);
        ch_hashring *after = build(rest, m, CH_HASHRING_DEFAULT_VNODES);
        cr_assert_not(ch_hashring_has(after, ids[gone]));
        for (int i = 0; i < NIDS; i++) {
            uint64_t a = owner_of(before, h[i]), b = owner_of(after, h[i]);
            if (a != ids[gone]) {
                cr_assert_eq(b, a, "n=%zu: id-%d moved off a remaining node", n, i);
                continue;
            }
            uint64_t succ[2] = {0};
            cr_assert_eq(ch_hashring_successors(before, h[i], 2, succ), 2);
            cr_assert_eq(b, succ[1], "n=%zu: id-%d", n, i);
        }
        ch_hashring_free(before);
        ch_hashring_free(after);
    }
}

Test(hashring, successors_are_distinct_owner_first_clockwise_and_capped_at_the_node_count)
{
    enum { N = 6, V = 16, WANT = N + 3 };
    uint64_t ids[N];
    make_nodes(ids, N, 9);
    ch_hashring *r = build(ids, N, V);
    ref_point *ref = ref_build(ids, N, V);
    uint64_t seed = 13;
    for (int k = 0; k < 5000; k++) {
        uint64_t hash = splitmix(&seed), out[WANT], expect[N];
        size_t want = (size_t)k % (WANT + 1), ne = 0;
        for (size_t i = ref_owner_point(ref, N * V, hash), s = 0; s < N * V && ne < N; s++) {
            uint64_t node = ref[(i + s) % (N * V)].node;
            int seen = 0;
            for (size_t j = 0; j < ne; j++)
                seen |= expect[j] == node;
            if (!seen) expect[ne++] = node;
        }
        size_t got = ch_hashring_successors(r, hash, want, out);
        cr_assert_eq(got, want < N ? want : N);
        cr_assert_arr_eq(out, expect, got * sizeof(out[0]), "want %zu", want);
        if (got) cr_assert_eq(out[0], owner_of(r, hash));
    }
    free(ref);
    ch_hashring_free(r);
}

Test(hashring, successors_of_a_ring_of_more_than_64_nodes_are_distinct)
{
    enum { N = 150, V = 8 }; /* node indices collide modulo 64 */
    uint64_t ids[N], out[N + 1];
    make_nodes(ids, N, 21);
    ch_hashring *r = build(ids, N, V);
    uint64_t seed = 17;
    for (int k = 0; k < 50; k++) {
        uint64_t hash = splitmix(&seed);
        cr_assert_eq(ch_hashring_successors(r, hash, N + 1, out), N);
        cr_assert_eq(out[0], owner_of(r, hash));
        qsort(out, N, sizeof(out[0]), cmp_u64);
        cr_assert_arr_eq(out, ch_hashring_node_ids(r), N * sizeof(out[0]));
    }
    ch_hashring_free(r);
}

Test(hashring, empty_ring_has_no_owner)
{
    ch_hashring *r = build(NULL, 0, CH_HASHRING_DEFAULT_VNODES);
    uint64_t node = 77, out[2] = {0};
    cr_assert_eq(ch_hashring_owner(r, 0, &node), -ENOENT);
    cr_assert_eq(ch_hashring_owner(r, UINT64_MAX, &node), -ENOENT);
    cr_assert_eq(ch_hashring_successors(r, 123, 2, out), 0);
    cr_assert_eq(ch_hashring_nodes(r), 0);
    cr_assert_not(ch_hashring_has(r, 0));
    cr_assert_eq(ch_hashring_epoch(r), 1);
    ch_hashring_free(r);
}

Test(hashring, duplicate_node_ids_are_rejected)
{
    uint64_t ids[] = {5, 9, 1, 9};
    ch_hashring *r = (ch_hashring *)&r; /* build must reset it */
    cr_assert_eq(ch_hashring_build(ids, 4, 16, 1, &r), -EINVAL);
    cr_assert_null(r);
}

Test(hashring, zero_vnodes_or_missing_ids_are_rejected)
{
    uint64_t ids[] = {5, 9};
    ch_hashring *r = NULL;
    cr_assert_eq(ch_hashring_build(ids, 2, 0, 1, &r), -EINVAL);
    cr_assert_eq(ch_hashring_build(NULL, 2, 16, 1, &r), -EINVAL);
    cr_assert_eq(ch_hashring_build(ids, 2, 16, 1, NULL), -EINVAL);
    cr_assert_eq(ch_hashring_build(ids, 2, UINT32_MAX, 1, &r), -EINVAL);
    cr_assert_null(r);
}

Test(hashring, reports_its_epoch_and_sorted_members)
{
    uint64_t ids[] = {300, UINT64_MAX, 0, 42};
    const uint64_t sorted[] = {0, 42, 300, UINT64_MAX};
    ch_hashring *r = NULL;
    cr_assert_eq(ch_hashring_build(ids, 4, 8, 99, &r), 0);
    cr_assert_eq(ch_hashring_epoch(r), 99);
    cr_assert_eq(ch_hashring_nodes(r), 4);
    cr_assert_arr_eq(ch_hashring_node_ids(r), sorted, sizeof(sorted));
    for (size_t i = 0; i < 4; i++)
        cr_assert(ch_hashring_has(r, ids[i]));
    cr_assert_not(ch_hashring_has(r, 1));
    cr_assert_not(ch_hashring_has(r, 43));
    cr_assert_not(ch_hashring_has(r, UINT64_MAX - 1));
    ch_hashring_free(r);
}

Test(hashring, single_node_owns_everything)
{
    uint64_t id = 123456789, out[3] = {0};
    ch_hashring *r = build(&id, 1, CH_HASHRING_DEFAULT_VNODES);
    uint64_t seed = 1;
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(owner_of(r, splitmix(&seed)), id);
    cr_assert_eq(ch_hashring_successors(r, 5, 3, out), 1);
    cr_assert_eq(out[0], id);
    ch_hashring_free(r);
}
