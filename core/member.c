/*
 * core/member.c - membership table and merge rules (see member.h).
 */
#include "member.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int ch_mtab_init(ch_mtab *t, const ch_mem *self)
{
    memset(t, 0, sizeof(*t));
    t->cap = 8;
    t->v = calloc(t->cap, sizeof(*t->v));
    if (!t->v) return -ENOMEM;
    t->v[0] = *self;
    t->n = 1;
    t->self = self->id;
    return 0;
}

void ch_mtab_free(ch_mtab *t)
{
    free(t->v);
    t->v = NULL;
}

ch_mem *ch_mtab_find(ch_mtab *t, uint64_t id)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->v[i].id == id) return &t->v[i];
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
    if (t->n == t->cap) {
        ch_mem *v = realloc(t->v, t->cap * 2 * sizeof(*v));
        if (!v) return 0; /* the member shows up again in a later view */
        t->v = v;
        t->cap *= 2;
    }
    ch_mem *e = &t->v[t->n++];
    memset(e, 0, sizeof(*e));
    e->id = m->id;
    e->incarnation = m->incarnation;
    e->cores = m->cores;
    e->state = m->state;
    e->drained = m->drained;
    e->since_ns = now;
    memcpy(e->addr, m->addr, sizeof(e->addr));
    e->addr[CH_ADDR_MAX] = '\0';
    return CH_MT_CHANGED | (ch_mem_in_ring(e) ? CH_MT_RING : 0);
}

int ch_mtab_set(ch_mtab *t, ch_mem *m, ch_member_state s, uint64_t now)
{
    (void)t;
    if (m->state == s || final(m->state)) return 0;
    bool was = ch_mem_in_ring(m);
    m->state = (uint8_t)s;
    m->since_ns = now;
    /* A drained member that ends is gone too: what it still held must be adopted. */
    bool ring = was != ch_mem_in_ring(m) || (m->drained && final(m->state));
    return CH_MT_CHANGED | (ring ? CH_MT_RING : 0);
}

/* A peer says something about this node: only a suspicion needs an answer. */
static int merge_self(ch_mem *me, const ch_mem *m)
{
    if (m->state == CH_MEMBER_SUSPECT && m->incarnation >= me->incarnation) {
        me->incarnation = m->incarnation + 1;
        return CH_MT_CHANGED | CH_MT_REFUTE;
    }
    return 0;
}

int ch_mtab_merge(ch_mtab *t, const ch_mem *m, uint64_t now)
{
    if (m->id == 0 || m->state > CH_MEMBER_LEFT) return 0;
    ch_mem *e = ch_mtab_find(t, m->id);
    if (!e) return add(t, m, now);
    if (e->id == t->self) return merge_self(e, m);
    if (final(e->state)) return 0;
    if (final(m->state)) return ch_mtab_set(t, e, (ch_member_state)m->state, now);
    if (m->incarnation > e->incarnation) {
        e->incarnation = m->incarnation;
        int bits = CH_MT_CHANGED;
        bool was = ch_mem_in_ring(e);
        e->drained = m->drained;
        if (was != ch_mem_in_ring(e)) bits |= CH_MT_RING;
        if (e->state != m->state) bits |= ch_mtab_set(t, e, (ch_member_state)m->state, now);
        return bits;
    }
    if (m->incarnation == e->incarnation && m->state == CH_MEMBER_SUSPECT &&
        e->state == CH_MEMBER_ALIVE)
        return ch_mtab_set(t, e, CH_MEMBER_SUSPECT, now);
    return 0;
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
        if (ch_mem_in_ring(&t->v[i])) out[k++] = t->v[i].id;
    qsort(out, k, sizeof(*out), cmp_u64);
    return k;
}

size_t ch_mtab_ring_size(const ch_mtab *t)
{
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++)
        k += ch_mem_in_ring(&t->v[i]);
    return k;
}
