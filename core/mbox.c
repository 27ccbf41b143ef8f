/*
 * core/mbox.c - the mailbox, an SPSC ring buffer of variable-size records (see mbox.h).
 *
 * Positions grow without wrapping (size_t never overflows in practice); the offset in the
 * buffer is pos & (cap - 1). A record that would straddle the end of the buffer is
 * preceded by a padding record that fills the end, so every record is contiguous.
 * Each side keeps a cached copy of the other side's position and reloads it only when the
 * cache says "full" or "empty", which keeps the shared cache lines quiet.
 */
#include "mbox.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PAD_FLAG 0x80000000u

static size_t round_up(size_t n, size_t a)
{
    return (n + a - 1) & ~(a - 1);
}

int ch_mbox_init(ch_mbox *r, size_t cap)
{
    size_t c = 4096;
    while (c < cap) {
        if (c > ((size_t)1 << 30)) return -EINVAL;
        c <<= 1;
    }
    memset(r, 0, sizeof(*r));
    r->buf = aligned_alloc(64, c);
    if (!r->buf) return -ENOMEM;
    r->cap = c;
    r->pbuf = r->buf;
    r->pcap = c;
    atomic_init(&r->pub_tail, 0);
    atomic_init(&r->pub_head, 0);
    return 0;
}

void ch_mbox_destroy(ch_mbox *r)
{
    free(r->buf);
    r->buf = NULL;
}

static bool has_room(ch_mbox *r, size_t need)
{
    if (r->tail + need - r->head_cache <= r->pcap) return true;
    r->head_cache = atomic_load_explicit(&r->pub_head, memory_order_acquire);
    return r->tail + need - r->head_cache <= r->pcap;
}

void *ch_mbox_reserve(ch_mbox *r, size_t size)
{
    size = round_up(size < 8 ? 8 : size, CH_RING_ALIGN);
    if (size > ch_mbox_max_record(r)) return NULL;
    size_t off = r->tail & (r->pcap - 1);
    size_t to_end = r->pcap - off;
    size_t need = size <= to_end ? size : to_end + size;
    if (!has_room(r, need)) return NULL;
    if (size > to_end) {
        /* Pad out the end so the record starts at offset 0. */
        *(uint32_t *)(r->pbuf + off) = (uint32_t)to_end | PAD_FLAG;
        r->tail += to_end;
        off = 0;
    }
    uint8_t *rec = r->pbuf + off;
    *(uint32_t *)rec = (uint32_t)size;
    r->tail += size;
    return rec;
}

bool ch_mbox_publish(ch_mbox *r)
{
    size_t old = atomic_load_explicit(&r->pub_tail, memory_order_relaxed);
    if (old == r->tail) return false;
    atomic_store_explicit(&r->pub_tail, r->tail, memory_order_release);
    return true;
}

void *ch_mbox_peek(ch_mbox *r, size_t *size)
{
    for (;;) {
        if (r->head == r->tail_cache) {
            r->tail_cache = atomic_load_explicit(&r->pub_tail, memory_order_acquire);
            if (r->head == r->tail_cache) return NULL;
        }
        uint8_t *rec = r->buf + (r->head & (r->cap - 1));
        uint32_t hdr = *(uint32_t *)rec;
        if (hdr & PAD_FLAG) {
            r->head += hdr & ~PAD_FLAG;
            continue;
        }
        *size = hdr;
        return rec;
    }
}

void ch_mbox_next(ch_mbox *r)
{
    uint8_t *rec = r->buf + (r->head & (r->cap - 1));
    r->head += *(uint32_t *)rec;
}

void ch_mbox_release(ch_mbox *r)
{
    atomic_store_explicit(&r->pub_head, r->head, memory_order_release);
}

bool ch_mbox_empty(ch_mbox *r)
{
    size_t t = atomic_load_explicit(&r->pub_tail, memory_order_acquire);
    return t == r->head;
}
