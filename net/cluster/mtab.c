/*
 * net/cluster/mtab.c - membership table and merge rules (see mtab.h).
 */
#include "mtab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ch_mtab_init(ch_mtab *t, const ch_mem *self)
{
    memset(t, 0, sizeof(*t));
    t->cap = 8;
    t->v = calloc(t->cap, sizeof(*t->v));
    ch_mem *me = malloc(sizeof(*me));
    if (!t->v || !me) {
        free(t->v);
        free(me);
        t->v = NULL;
        return -ENOMEM;
    }
    *me = *self;
    t->v[0] = me;
    t->n = 1;
    t->self = self->id;
    return 0;
}

void ch_mtab_free(ch_mtab *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i]);
    free(t->v);
    t->v = NULL;
    t->n = 0;
}

ch_mem *ch_mtab_find(ch_mtab *t, uint64_t id)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i]->id == id) return t->v[i];
    return NULL;
}

ch_mem *ch_mtab_self(ch_mtab *t)
{
    return ch_mtab_find(t, t->self);
}

bool ch_mem_alive(const ch_mem *m)
{
    return m->state == CH_MEMBER_ALIVE || m->state == CH_MEMBER_SUSPECT;
}

bool ch_mem_recently_dead(const ch_mem *m, uint64_t now, uint64_t window_ns)
{
    if (m->state == CH_MEMBER_DEAD) return true;
    return m->revived_ns && now >= m->revived_ns && now - m->revived_ns < window_ns;
}

bool ch_mem_in_ring(const ch_mem *m)
{
    return ch_mem_alive(m) && !m->drained;
}

static bool final(uint8_t s)
{
    return s == CH_MEMBER_DEAD || s == CH_MEMBER_LEFT;
}

static int add(ch_mtab *t, const ch_mem *m, uint64_t now)
{
    if (t->n >= CH_MTAB_MAX) return 0; /* bounded: the member shows up again in a view */
    if (t->n == t->cap) {
        ch_mem **v = realloc(t->v, t->cap * 2 * sizeof(*v));
        if (!v) return 0; /* the member shows up again in a later view */
        t->v = v;
        t->cap *= 2;
    }
    ch_mem *e = calloc(1, sizeof(*e));
    if (!e) return 0;
    e->id = m->id;
    e->incarnation = m->incarnation;
    e->rejoin_inc = m->rejoin_inc;
    e->dead_by = m->state == CH_MEMBER_DEAD ? m->dead_by : 0;
    e->cores = m->cores;
    e->state = m->state;
    e->drained = m->drained;
    e->since_ns = now;
    memcpy(e->addr, m->addr, sizeof(e->addr));
    e->addr[CH_ADDR_MAX] = '\0';
    t->v[t->n++] = e;
    return CH_MT_CHANGED | (ch_mem_in_ring(e) ? CH_MT_RING : 0);
}

int ch_mtab_set(ch_mtab *t, ch_mem *m, ch_member_state s, uint64_t now)
{
    (void)t;
    if (m->state == s || m->state == CH_MEMBER_LEFT) return 0;
    bool was = ch_mem_in_ring(m), was_final = final(m->state);
    m->state = (uint8_t)s;
    m->since_ns = now;
    if (was_final && !final(m->state)) { /* back: a dead member's dials end */
        m->dead_dials = 0;
        m->revived = true;
        m->revived_ns = now;
    }
    /* A drained member that ends is gone too: what it still held must be adopted. */
    bool ring = was != ch_mem_in_ring(m) || (m->drained && final(m->state) && !was_final);
    return CH_MT_CHANGED | (ring ? CH_MT_RING : 0);
}

/* A peer says something about this node. Only the node itself raises its incarnation, so
 * a suspicion or a death claimed at our incarnation (or above it) is refuted by an
 * incarnation above the claim; a death also means the hub replaced us meanwhile. */
static int merge_self(ch_mem *me, const ch_mem *m)
{
    if (me->state == CH_MEMBER_LEFT) return 0;
    if (m->state == CH_MEMBER_DEAD && m->incarnation >= me->rejoin_inc) {
        /* A death we had not heard of (a refutation of the suspicion before it may have
         * raised our incarnation past the claim already). */
        uint64_t top = m->incarnation > me->incarnation ? m->incarnation : me->incarnation;
        me->incarnation = me->rejoin_inc = top + 1;
        return CH_MT_CHANGED | CH_MT_REFUTE | CH_MT_REJOIN;
    }
    if (m->incarnation < me->incarnation) return 0;
    if (m->state == CH_MEMBER_SUSPECT) {
        me->incarnation = m->incarnation + 1;
        return CH_MT_CHANGED | CH_MT_REFUTE;
    }
    if (m->incarnation > me->incarnation) { /* cannot happen unless a table lost ours */
        me->incarnation = m->incarnation + 1;
        return CH_MT_CHANGED;
    }
    return 0;
}

/* How bad a state is, for two records of one incarnation: the worse news wins. */
static int badness(uint8_t s)
{
    return s == CH_MEMBER_ALIVE ? 0 : s == CH_MEMBER_SUSPECT ? 1 : 2;
}

/* A record with a higher incarnation: it replaces ours, state included (a DEAD member
 * that refuted its death comes back). */
static int take_newer(ch_mtab *t, ch_mem *e, const ch_mem *m, uint64_t now)
{
    bool was = ch_mem_in_ring(e);
    if (e->state == CH_MEMBER_DEAD && m->state != CH_MEMBER_DEAD && m->rejoin_inc <= e->incarnation)
        return 0; /* it has not heard of its death yet: it comes back when it has */
    e->incarnation = m->incarnation;
    if (m->rejoin_inc > e->rejoin_inc) e->rejoin_inc = m->rejoin_inc;
    if (m->state == CH_MEMBER_DEAD) e->dead_by = m->dead_by;
    e->drained = m->drained;
    if (e->state != m->state) {
        int bits = ch_mtab_set(t, e, (ch_member_state)m->state, now);
        return bits | (was != ch_mem_in_ring(e) ? CH_MT_RING : 0);
    }
    return CH_MT_CHANGED | (was != ch_mem_in_ring(e) ? CH_MT_RING : 0);
}

int ch_mtab_merge(ch_mtab *t, const ch_mem *m, uint64_t now)
{
    if (m->id == 0 || m->state > CH_MEMBER_LEFT) return 0;
    ch_mem *e = ch_mtab_find(t, m->id);
    if (!e) return add(t, m, now);
    if (e->id == t->self) return merge_self(e, m);
    if (e->state == CH_MEMBER_LEFT) return 0;
    if (m->state == CH_MEMBER_LEFT) return ch_mtab_set(t, e, CH_MEMBER_LEFT, now);
    if (m->incarnation > e->incarnation) return take_newer(t, e, m, now);
    if (m->incarnation == e->incarnation && badness(m->state) > badness(e->state)) {
        if (m->state == CH_MEMBER_DEAD) e->dead_by = m->dead_by;
        return ch_mtab_set(t, e, (ch_member_state)m->state, now);
    }
    return 0;
}

static bool in_use(const ch_mtab *t, const ch_mem *m)
{
    return m->id == t->self || m->conn || m->dialing || m->retired || m->backlog || m->left_pending;
}

/* The oldest unused tombstone, or SIZE_MAX. */
static size_t oldest_tombstone(const ch_mtab *t, size_t *count)
{
    size_t at = SIZE_MAX;
    *count = 0;
    for (size_t i = 0; i < t->n; i++) {
        const ch_mem *m = t->v[i];
        if (!final(m->state)) continue;
        ++*count;
        if (!in_use(t, m) && (at == SIZE_MAX || m->since_ns < t->v[at]->since_ns)) at = i;
    }
    return at;
}

static void drop_at(ch_mtab *t, size_t i)
{
    free(t->v[i]);
    t->v[i] = t->v[--t->n];
}

size_t ch_mtab_reap(ch_mtab *t, uint64_t now, uint64_t keep_ns)
{
    size_t freed = 0;
    for (size_t i = 0; i < t->n;) {
        const ch_mem *m = t->v[i];
        bool old = now > m->since_ns && now - m->since_ns > keep_ns;
        if (final(m->state) && old && !in_use(t, m)) {
            drop_at(t, i);
            freed++;
            continue;
        }
        i++;
    }
    size_t count, at;
    while ((at = oldest_tombstone(t, &count)) != SIZE_MAX && count > CH_MTAB_TOMBSTONES) {
        drop_at(t, at);
        freed++;
    }
    return freed;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

size_t ch_mtab_ring_ids(const ch_mtab *t, uint64_t *out)
{
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++)
        if (ch_mem_in_ring(t->v[i])) out[k++] = t->v[i]->id;
    qsort(out, k, sizeof(*out), cmp_u64);
    return k;
}

size_t ch_mtab_ring_size(const ch_mtab *t)
{
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++)
        k += ch_mem_in_ring(t->v[i]);
    return k;
}

size_t ch_mtab_alive_size(const ch_mtab *t)
{
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++)
        k += ch_mem_in_ring(t->v[i]) && t->v[i]->state == CH_MEMBER_ALIVE;
    return k;
}
