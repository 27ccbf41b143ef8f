/*
 * core/ptable.c - open-addressing process table (see ptable.h).
 *
 * Every id on one core has the same hash modulo the core count, so the slot index must come
 * from the hash's high bits (Fibonacci hashing), not from its low bits. Each slot keeps the
 * hash next to the pointer, so a probe compares hashes without touching the process (a
 * cache miss per probed process otherwise, the start path's main cost).
 */
#include "ptable.h"

#include <errno.h>
#include <stdatomic.h>
#include <sys/random.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>

uint64_t ch_table_seed(const void *t)
{
    static _Atomic uint64_t counter;
    uint64_t x = 0; /* random: forked node processes share addresses and counters */
    if (getrandom(&x, sizeof(x), GRND_NONBLOCK) != sizeof(x)) x = (uint64_t)clock();
    x ^= (uint64_t)(uintptr_t)t ^ (atomic_fetch_add(&counter, 1) * 0x9E3779B97F4A7C15ull);
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    return x ^ (x >> 33);
}

static size_t slot_of(const ch_ptable *t, uint64_t hash)
{
    unsigned bits = (unsigned)__builtin_ctzll(t->cap);
    return (size_t)(((hash ^ t->seed) * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

int ch_ptable_init(ch_ptable *t)
{
    t->cap = 1024;
    t->count = 0;
    t->seed = ch_table_seed(t);
    t->slots = calloc(t->cap, sizeof(*t->slots));
    return t->slots ? 0 : -ENOMEM;
}

void ch_ptable_destroy(ch_ptable *t)
{
    free(t->slots);
    t->slots = NULL;
}

/* Most ids are short: compare them in two overlapping words instead of calling memcmp. */
static inline bool same_bytes(const char *a, const char *b, size_t n)
{
    if (n < 8 || n > 16) return memcmp(a, b, n) == 0;
    uint64_t a0, a1, b0, b1;
    memcpy(&a0, a, 8);
    memcpy(&b0, b, 8);
    memcpy(&a1, a + n - 8, 8);
    memcpy(&b1, b + n - 8, 8);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
}

static bool same(const ch_pslot *s, uint64_t hash, const char *id, size_t len)
{
    return s->hash == hash && s->p->spec->id_len == len &&
           same_bytes(ch_spec_id(s->p->spec), id, len);
}

ch_proc *ch_ptable_find(const ch_ptable *t, uint64_t hash, const char *id, size_t len)
{
    size_t mask = t->cap - 1;
    for (size_t i = slot_of(t, hash);; i = (i + 1) & mask) {
        const ch_pslot *s = &t->slots[i];
        if (!s->p) return NULL;
        if (same(s, hash, id, len)) return s->p;
    }
}

static void put(ch_pslot *slots, size_t cap, size_t start, ch_proc *p)
{
    size_t i = start;
    while (slots[i].p)
        i = (i + 1) & (cap - 1);
    slots[i] = (ch_pslot){p->hash, p};
}

static int grow(ch_ptable *t)
{
    size_t cap = t->cap * 2;
    ch_pslot *slots = calloc(cap, sizeof(*slots));
    if (!slots) return -ENOMEM;
    ch_ptable bigger = {.slots = slots, .cap = cap, .count = t->count, .seed = t->seed};
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].p) put(slots, cap, slot_of(&bigger, t->slots[i].hash), t->slots[i].p);
    free(t->slots);
    *t = bigger;
    return 0;
}

int ch_ptable_insert(ch_ptable *t, ch_proc *p)
{
    if ((t->count + 1) * 4 > t->cap * 3 && grow(t) < 0) return -ENOMEM;
    put(t->slots, t->cap, slot_of(t, p->hash), p);
    t->count++;
    return 0;
}

void ch_ptable_remove(ch_ptable *t, ch_proc *p)
{
    size_t mask = t->cap - 1;
    size_t i = slot_of(t, p->hash);
    while (t->slots[i].p != p) {
        if (!t->slots[i].p) return;
        i = (i + 1) & mask;
    }
    /* Backward shift: pull later entries of the probe run into the hole. */
    for (size_t j = (i + 1) & mask; t->slots[j].p; j = (j + 1) & mask) {
        size_t home = slot_of(t, t->slots[j].hash);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i] = (ch_pslot){0, NULL};
    t->count--;
}
