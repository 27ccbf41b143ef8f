/*
 * core/timer.h - a reactor's timers: a slab of entries and a binary min-heap on deadline.
 *
 * An entry is named by a 64-bit id (slot | generation << 32), so a stale id (the timer
 * already fired or was cancelled) is recognised instead of touching a reused slot. Besides
 * process timers, pending calls live here: a call waiting for its reply is a timer entry
 * whose expiry is the call's timeout. Owned by one reactor; never shared.
 */
#ifndef CH_CORE_TIMER_H
#define CH_CORE_TIMER_H

#include <stdint.h>

#define CH_TIMER_NONE UINT32_MAX

typedef struct ch_timer {
    uint64_t deadline; /* CLOCK_MONOTONIC ns */
    uint32_t heap_idx; /* CH_TIMER_NONE when not armed */
    uint32_t gen;      /* odd while allocated */
    uint32_t next;     /* free list, or the owner's list of timers */
    uint32_t len;      /* bytes at b, for kinds that carry data */
    uint32_t kind;     /* the reactor's meaning */
    void *a, *b;       /* the reactor's meaning */
    uint64_t c;        /* the reactor's meaning */
} ch_timer;

typedef struct ch_timers {
    ch_timer *slots;
    uint32_t nslots, cap;
    uint32_t free_head;
    uint32_t *heap;
    uint32_t heap_len;
} ch_timers;

void ch_timers_init(ch_timers *t);
void ch_timers_destroy(ch_timers *t);
/* Allocates and arms an entry; returns its id (never 0), 0 on -ENOMEM. The entry pointer
 * is valid until the next add. */
uint64_t ch_timers_add(ch_timers *t, uint64_t deadline, ch_timer **out);
/* The live entry with this id, or NULL. */
ch_timer *ch_timers_get(ch_timers *t, uint64_t id);
uint64_t ch_timers_id(const ch_timers *t, const ch_timer *e);
/* Disarms (if armed) and frees the entry. */
void ch_timers_free(ch_timers *t, ch_timer *e);
/* Earliest armed deadline, UINT64_MAX when none. */
uint64_t ch_timers_next(const ch_timers *t);
/* Disarms and returns the earliest entry due at `now`, NULL when none; free it after use. */
ch_timer *ch_timers_expired(ch_timers *t, uint64_t now);
uint32_t ch_timers_armed(const ch_timers *t);

#endif
