/*
 * tools/callmany.h - one call to each of PREFIX0..PREFIX<COUNT-1>, many in flight.
 *
 * The `ctl check-*` commands read thousands of processes; one blocking ch_call after the
 * other would pay a round trip each. callmany keeps up to CALLMANY_WINDOW asynchronous
 * calls in flight and hands each answer to a check function that turns it into a verdict
 * on the spot, so that large replies (blobs) are never stored.
 *
 * The check function runs on reactor threads, one call at a time (callmany serializes
 * them), and must not block. It never runs after callmany_run returned, even when some
 * calls are still unanswered then (their late answers are dropped).
 */
#ifndef COREHUB_TOOLS_CALLMANY_H
#define COREHUB_TOOLS_CALLMANY_H

#include <corehub/corehub.h>

#include <stdint.h>

#define CALLMANY_WINDOW 256 /* calls in flight */

/* What a check says about one process. */
typedef struct callmany_item {
    int32_t verdict;  /* the check's verdict; CALLMANY_NO_ANSWER before an answer came */
    int32_t status;   /* the call's status (0, CH_ENOPROC, -ETIMEDOUT...) */
    int64_t value[2]; /* whatever the check wants to report (counts, an offset) */
} callmany_item;

#define CALLMANY_NO_ANSWER (-1)

/* Turns the answer to call i (status 0: reply holds len bytes) into item->verdict and
 * item->value. */
typedef void (*callmany_check)(void *ud, uint64_t i, int status, const void *reply, size_t len,
                               callmany_item *item);

/*
 * Calls PREFIX<i> with req for every i < count (each call times out after timeout_ms) and
 * fills items[count] (the caller's array). Blocks until every call was answered, or gives
 * up when no answer came for timeout_ms + a margin (the node is stuck or stopping: the
 * calls not made yet are not made). Returns the number of processes without an answer
 * (their items say CALLMANY_NO_ANSWER), or -ENOMEM.
 */
int64_t callmany_run(ch_node *n, const char *prefix, uint64_t count, const void *req,
                     size_t req_len, uint32_t timeout_ms, callmany_check check, void *ud,
                     callmany_item *items);

#endif
