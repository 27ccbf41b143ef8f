/*
 * core/inbox.h - a multi-producer single-consumer queue: how threads that are not this
 * node's reactors (application threads) reach a reactor. Intrusive and lock-free (one
 * atomic exchange per push); each producer's items come out in the order it pushed them.
 */
#ifndef CH_CORE_INBOX_H
#define CH_CORE_INBOX_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct ch_inbox_node {
    _Atomic(struct ch_inbox_node *) next;
} ch_inbox_node;

typedef struct ch_inbox {
    alignas(64) _Atomic(ch_inbox_node *) head; /* producers push here */
    _Atomic size_t bytes;                      /* queued bytes, for back-pressure */
    alignas(64) ch_inbox_node *tail;           /* the consumer pops here */
    ch_inbox_node stub;
} ch_inbox;

void ch_inbox_init(ch_inbox *q);
/* Any thread. Ownership of n moves to the consumer. */
void ch_inbox_push(ch_inbox *q, ch_inbox_node *n);
/* Consumer only. NULL when empty or when a producer is half-way through a push (the item
 * shows up on a later pop). */
ch_inbox_node *ch_inbox_pop(ch_inbox *q);
/* Consumer only: true when nothing has been pushed that was not popped. */
bool ch_inbox_empty(ch_inbox *q);

/* Back-pressure accounting: reserve before push (false: over limit, nothing reserved),
 * give back after the item is consumed. */
bool ch_inbox_charge(ch_inbox *q, size_t bytes, size_t limit);
void ch_inbox_discharge(ch_inbox *q, size_t bytes);

#endif
