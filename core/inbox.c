/*
 * core/inbox.c - intrusive MPSC queue (D. Vyukov's algorithm). Producers exchange the head
 * and then link the previous head to their node; between those two steps the chain is
 * broken, which the consumer sees as "empty for now" and retries on its next turn.
 */
#include "inbox.h"

void ch_inbox_init(ch_inbox *q)
{
    atomic_init(&q->stub.next, NULL);
    atomic_init(&q->head, &q->stub);
    atomic_init(&q->bytes, 0);
    q->tail = &q->stub;
}

void ch_inbox_push(ch_inbox *q, ch_inbox_node *n)
{
    atomic_store_explicit(&n->next, NULL, memory_order_relaxed);
    ch_inbox_node *prev = atomic_exchange_explicit(&q->head, n, memory_order_acq_rel);
    atomic_store_explicit(&prev->next, n, memory_order_release);
}

ch_inbox_node *ch_inbox_pop(ch_inbox *q)
{
    ch_inbox_node *tail = q->tail;
    ch_inbox_node *next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (tail == &q->stub) {
        if (!next) return NULL;
        q->tail = next;
        tail = next;
        next = atomic_load_explicit(&tail->next, memory_order_acquire);
    }
    if (next) {
        q->tail = next;
        return tail;
    }
    if (tail != atomic_load_explicit(&q->head, memory_order_acquire)) return NULL;
    ch_inbox_push(q, &q->stub);
    next = atomic_load_explicit(&tail->next, memory_order_acquire);
    if (!next) return NULL;
    q->tail = next;
    return tail;
}

bool ch_inbox_empty(ch_inbox *q)
{
    return q->tail == &q->stub && atomic_load(&q->head) == &q->stub;
}

bool ch_inbox_charge(ch_inbox *q, size_t bytes, size_t limit)
{
    size_t old = atomic_fetch_add_explicit(&q->bytes, bytes, memory_order_relaxed);
    if (old + bytes <= limit || old == 0) return true; /* one item always fits */
    atomic_fetch_sub_explicit(&q->bytes, bytes, memory_order_relaxed);
    return false;
}

void ch_inbox_discharge(ch_inbox *q, size_t bytes)
{
    atomic_fetch_sub_explicit(&q->bytes, bytes, memory_order_relaxed);
}
