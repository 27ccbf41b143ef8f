/*
 * core/mbox.h - the mailbox: a bounded single-producer single-consumer queue of
 * variable-size records (a ring buffer; "ring" alone names the consistent-hash ring).
 *
 * The mailbox between two threads. Records are written in place (no allocation per
 * message) at 32-byte aligned addresses, so that large payload copies run at full speed.
 * The first 4 bytes of every record belong to the ring (its size); the caller's header
 * starts after them. The producer batches: records become visible to the consumer only at
 * ch_mbox_publish; the consumer batches its frees the same way with ch_mbox_release.
 */
#ifndef CH_CORE_MBOX_H
#define CH_CORE_MBOX_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CH_RING_ALIGN 32u

typedef struct ch_mbox {
    alignas(64) _Atomic size_t pub_tail; /* written by the producer, release */
    alignas(64) _Atomic size_t pub_head; /* written by the consumer, release */
    /* Each side has its own read-only copy of buf and cap on its own cache line, so that
     * neither reads a line the other one writes on every record. */
    alignas(64) size_t tail; /* producer: next write position */
    size_t head_cache;       /* producer: last head it saw */
    uint8_t *pbuf;           /* producer: = buf */
    size_t pcap;             /* producer: = cap */
    alignas(64) size_t head; /* consumer: next read position */
    size_t tail_cache;       /* consumer: last tail it saw */
    uint8_t *buf;
    size_t cap; /* power of two */
} ch_mbox;

/* cap: bytes, rounded up to a power of two, at least 4 KiB. */
int ch_mbox_init(ch_mbox *r, size_t cap);
void ch_mbox_destroy(ch_mbox *r);
/* The largest record a ring of this capacity takes (the producer's question). */
static inline size_t ch_mbox_max_record(const ch_mbox *r)
{
    return r->pcap / 4;
}

/* Producer: room for a record of `size` bytes (the 4-byte ring header included), 32-byte
 * aligned, or NULL when the ring is full now. The record is committed at once. Hot path. */
void *ch_mbox_reserve(ch_mbox *r, size_t size);
/* Producer: makes every reserved record visible. Returns true if any was new. */
bool ch_mbox_publish(ch_mbox *r);
/* Producer: bytes reserved but not yet published. */
static inline size_t ch_mbox_unpublished(const ch_mbox *r)
{
    return r->tail - atomic_load_explicit(&r->pub_tail, memory_order_relaxed);
}

/* Consumer: the next record and its size, or NULL when none is visible. Hot path. */
void *ch_mbox_peek(ch_mbox *r, size_t *size);
/* Consumer: done with the record peek returned (its bytes may be reused after release). */
void ch_mbox_next(ch_mbox *r);
/* Consumer: gives consumed space back to the producer. */
void ch_mbox_release(ch_mbox *r);
/* Consumer: true when nothing is visible to read (acquire load). */
bool ch_mbox_empty(ch_mbox *r);

#endif
