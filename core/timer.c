/*
 * core/timer.c - slab + binary heap of timer entries (see timer.h).
 */
#include "timer.h"

#include <stdlib.h>
#include <string.h>

void ch_timers_init(ch_timers *t)
{
    memset(t, 0, sizeof(*t));
    t->free_head = CH_TIMER_NONE;
}

void ch_timers_destroy(ch_timers *t)
{
    free(t->slots);
    free(t->heap);
    memset(t, 0, sizeof(*t));
}

static int grow(ch_timers *t)
{
    uint32_t cap = t->cap ? t->cap * 2 : 64;
    ch_timer *s = realloc(t->slots, sizeof(*s) * cap);
    if (!s) return -1;
    t->slots = s;
    uint32_t *h = realloc(t->heap, sizeof(*h) * cap);
    if (!h) return -1;
    t->heap = h;
    t->cap = cap;
    return 0;
}

static int before(const ch_timers *t, uint32_t i, uint32_t j)
{
    return t->slots[t->heap[i]].deadline < t->slots[t->heap[j]].deadline;
}

static void place(ch_timers *t, uint32_t i)
{
    t->slots[t->heap[i]].heap_idx = i;
}

static void swap(ch_timers *t, uint32_t i, uint32_t j)
{
    uint32_t x = t->heap[i];
    t->heap[i] = t->heap[j];
    t->heap[j] = x;
    place(t, i);
    place(t, j);
}

static void sift_up(ch_timers *t, uint32_t i)
{
    while (i > 0 && before(t, i, (i - 1) / 2)) {
        swap(t, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void sift_down(ch_timers *t, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < t->heap_len && before(t, l, m)) m = l;
        if (r < t->heap_len && before(t, r, m)) m = r;
        if (m == i) return;
        swap(t, i, m);
        i = m;
    }
}

static void disarm(ch_timers *t, ch_timer *e)
{
    uint32_t i = e->heap_idx;
    if (i == CH_TIMER_NONE) return;
    e->heap_idx = CH_TIMER_NONE;
    t->heap_len--;
    if (i == t->heap_len) return;
    t->heap[i] = t->heap[t->heap_len];
    place(t, i);
    sift_down(t, i);
    sift_up(t, i);
}

uint64_t ch_timers_add(ch_timers *t, uint64_t deadline, ch_timer **out)
{
    uint32_t slot = t->free_head;
    if (slot != CH_TIMER_NONE) {
        t->free_head = t->slots[slot].next;
    } else {
        if (t->nslots == t->cap && grow(t) < 0) return 0;
        slot = t->nslots++;
        t->slots[slot].gen = 0;
    }
    ch_timer *e = &t->slots[slot];
    uint32_t gen = e->gen + 1; /* odd: allocated */
    memset(e, 0, sizeof(*e));
    e->gen = gen;
    e->deadline = deadline;
    e->next = CH_TIMER_NONE;
    e->heap_idx = t->heap_len;
    t->heap[t->heap_len++] = slot;
    sift_up(t, e->heap_idx);
    *out = e;
    return ((uint64_t)gen << 32) | slot;
}

ch_timer *ch_timers_get(ch_timers *t, uint64_t id)
{
    uint32_t slot = (uint32_t)id;
    if (slot >= t->nslots) return NULL;
    ch_timer *e = &t->slots[slot];
    return e->gen == (uint32_t)(id >> 32) && (e->gen & 1) ? e : NULL;
}

uint64_t ch_timers_id(const ch_timers *t, const ch_timer *e)
{
    return ((uint64_t)e->gen << 32) | (uint32_t)(e - t->slots);
}

void ch_timers_free(ch_timers *t, ch_timer *e)
{
    disarm(t, e);
    e->gen++; /* even: free; stale ids no longer match */
    e->next = t->free_head;
    t->free_head = (uint32_t)(e - t->slots);
}

uint64_t ch_timers_next(const ch_timers *t)
{
    return t->heap_len ? t->slots[t->heap[0]].deadline : UINT64_MAX;
}

ch_timer *ch_timers_expired(ch_timers *t, uint64_t now)
{
    if (!t->heap_len) return NULL;
    ch_timer *e = &t->slots[t->heap[0]];
    if (e->deadline > now) return NULL;
    disarm(t, e);
    return e;
}

uint32_t ch_timers_armed(const ch_timers *t)
{
    return t->heap_len;
}
