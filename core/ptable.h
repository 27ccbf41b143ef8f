/*
 * core/ptable.h - a reactor's process table: open addressing on the id's XXH3 hash.
 *
 * Owned by one reactor. Linear probing with backward-shift deletion, so there are no
 * tombstones and lookups stay short however many processes come and go.
 */
#ifndef CH_CORE_PTABLE_H
#define CH_CORE_PTABLE_H

#include "proc.h"

#include <stddef.h>
#include <stdint.h>

typedef struct ch_pslot {
    uint64_t hash; /* = p->hash, probed without touching the process */
    ch_proc *p;    /* NULL: empty */
} ch_pslot;

typedef struct ch_ptable {
    ch_pslot *slots;
    size_t cap; /* power of two */
    size_t count;
    uint64_t seed; /* mixed into every slot index, see ptable.c */
} ch_ptable;

/* A random seed for a hash table's slot index. Each table has its own: a table fed in
 * another table's slot order (a registry resync, a migration's stream) would otherwise
 * receive its keys sorted by home slot and pile them into one run of linear probing. */
uint64_t ch_table_seed(const void *t);

int ch_ptable_init(ch_ptable *t);
void ch_ptable_destroy(ch_ptable *t);
ch_proc *ch_ptable_find(const ch_ptable *t, uint64_t hash, const char *id, size_t len);
/* -ENOMEM when it cannot grow. The id must not be present. */
int ch_ptable_insert(ch_ptable *t, ch_proc *p);
void ch_ptable_remove(ch_ptable *t, ch_proc *p);

#endif
