/*
 * tools/pump.h - background senders of numbered messages, for `ctl pump` (a node's load
 * generator while processes migrate).
 *
 * A pump is one thread of the node process, outside the reactors, so its messages to one
 * process take one path and keep their order. For r in 1..rounds it sends "s SENDER r"
 * (the seq type's cast, seq.h) to PREFIX0..PREFIX<COUNT-1> with ch_send, retrying while a
 * mailbox is full (-EAGAIN queues nothing) and counting any other error as a failed send.
 * A round that ends before round_ms passed waits for the rest (pacing, so that a pump lasts
 * through a migration instead of flooding it). A node stopping (CH_ESTOPPED) ends the pump.
 *
 * After pump_stop every pump finishes the round it is in, then ends: each process has then
 * received the same rounds from it, so the expected count per process is the sum of the
 * pumps' `rounds`. Functions may be called from any thread; the set owns its threads.
 */
#ifndef COREHUB_TOOLS_PUMP_H
#define COREHUB_TOOLS_PUMP_H

#include <corehub/corehub.h>

#include <stdint.h>

#define PUMP_MAX 16 /* pumps per node, over its life */

typedef struct pump_set pump_set;

typedef struct pump_params {
    const char *prefix; /* copied */
    uint64_t count;     /* processes PREFIX0..PREFIX<count-1> */
    uint64_t rounds;
    uint64_t sender;
    uint32_t round_ms; /* the shortest a round may take; 0: as fast as it goes */
} pump_params;

typedef struct pump_totals {
    unsigned pumps, running;
    uint64_t rounds; /* whole rounds sent, summed over the pumps */
    uint64_t sent, failed;
    int first_error; /* of the failed sends; 0 when none */
} pump_totals;

int pump_set_new(pump_set **out);
/* Stops every pump now (mid-round) and joins the threads; pump_start is refused from then
 * on, the totals stay readable. Call it before the node is destroyed: pumps call into it.
 * NULL is fine. */
void pump_set_close(pump_set *ps);
/* Closes the set if needed and frees it, once nothing else can use it. NULL is fine. */
void pump_set_free(pump_set *ps);

/* Starts a pump on node n; *handle numbers it from 1. -EBUSY past PUMP_MAX pumps, or
 * once the set is closing; -ENOMEM, or pthread_create's error. */
int pump_start(pump_set *ps, ch_node *n, const pump_params *p, unsigned *handle);
/* Asks every pump to end after the round it is in. */
void pump_stop(pump_set *ps);
/* Waits up to timeout_ms for every pump to end: 0, or -ETIMEDOUT. *out gets the totals
 * either way. */
int pump_wait(pump_set *ps, uint32_t timeout_ms, pump_totals *out);
/* The totals now. */
void pump_totals_get(pump_set *ps, pump_totals *out);

#endif
