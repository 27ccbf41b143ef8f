/*
 * net/cluster/pins.c - the pin set and its snapshots (see pins.h).
 *
 * Pins are few (an operator's explicit moves), so the set is a plain array and a snapshot
 * a sorted one: lookups are a binary search, and ch_route skips even that while a node has
 * no pin at all (a NULL snapshot).
 */
#include "pins.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

uint64_t ch_pins_get(const ch_pins *p, uint64_t hash)
{
    if (!p) return 0;
    size_t lo = 0, hi = p->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (p->v[mid].hash < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < p->n && p->v[lo].hash == hash ? p->v[lo].node : 0;
}

void ch_pinset_free(ch_pinset *s)
{
    free(s->v);
    memset(s, 0, sizeof(*s));
}

static bool newer(const ch_pin *a, const ch_pin *b)
{
    return a->version > b->version || (a->version == b->version && a->setter > b->setter);
}

int ch_pinset_merge(ch_pinset *s, const ch_pin *p)
{
    if (p->version > s->clock) s->clock = p->version;
    for (size_t i = 0; i < s->n; i++) {
        if (s->v[i].hash != p->hash) continue;
        if (!newer(p, &s->v[i])) return 0;
        s->v[i] = *p;
        return 1;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        ch_pin *v = realloc(s->v, cap * sizeof(*v));
        if (!v) return -ENOMEM;
        s->v = v;
        s->cap = cap;
    }
    s->v[s->n++] = *p;
    return 1;
}

static int by_hash(const void *a, const void *b)
{
    uint64_t x = ((const ch_pin *)a)->hash, y = ((const ch_pin *)b)->hash;
    return (x > y) - (x < y);
}

ch_pins *ch_pinset_snapshot(const ch_pinset *s)
{
    ch_pins *p = malloc(sizeof(*p) + (s->n + 1) * sizeof(ch_pin));
    if (!p) return NULL;
    p->n = 0;
    p->digest = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (!s->v[i].node) continue;
        p->v[p->n++] = s->v[i];
        uint64_t pair[2] = {s->v[i].hash, s->v[i].node};
        p->digest ^= XXH3_64bits(pair, sizeof(pair));
    }
    qsort(p->v, p->n, sizeof(ch_pin), by_hash);
    return p;
}
