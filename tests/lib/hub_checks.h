/*
 * tests/lib/hub_checks.h - what multi-node tests assert about a whole hub of real nodes
 * (cluster_harness.h): membership agreement, registries, one live instance per id,
 * placement, counter sums. Every wait polls with a deadline (harness_wait); none sleeps
 * as a synchronisation.
 *
 * A hub is an array of nodes; a NULL entry is a node the test stopped, and the checks of
 * members, registries and stats skip it.
 */
#ifndef CH_TESTS_HUB_CHECKS_H
#define CH_TESTS_HUB_CHECKS_H

#include "cluster_harness.h"

#include <stdbool.h>

#define HUB_MAX 16

/* ---- members ---------------------------------------------------------------------------- */

/* Whether every node counts `want` members in `state` ("alive", "dead", ...). */
bool hub_count_is(hnode **nodes, int count, const char *state, int want);
/* Waits up to timeout_ms for hub_count_is. */
bool hub_wait_count(hnode **nodes, int count, const char *state, int want, int timeout_ms);
/* Whether every node counts `alive` members alive and none suspect. */
bool hub_members_are(hnode **nodes, int count, int alive);
/* Waits up to timeout_ms for hub_members_are. */
bool hub_wait_members(hnode **nodes, int count, int alive, int timeout_ms);

/* ---- registries and stats ---------------------------------------------------------------- */

/* Waits up to timeout_ms until every node's registry (`procs`) lists `procs` processes. */
bool hub_wait_listed(hnode **nodes, int count, long procs, int timeout_ms);
/* Waits up to timeout_ms until the nodes run `procs` processes in all (`procs --local`). */
bool hub_wait_running(hnode **nodes, int count, long procs, int timeout_ms);

/* The sum of a `stats` counter over the nodes (a node that does not answer adds -1). */
long long hub_stat_sum(hnode **nodes, int count, const char *key);
typedef enum { HUB_EXACTLY, HUB_AT_LEAST } hub_cmp;
/* Waits up to timeout_ms until hub_stat_sum is `want` (HUB_EXACTLY) or more (HUB_AT_LEAST);
 * *last (when not NULL) gets the last sum seen. */
bool hub_wait_stat(hnode **nodes, int count, const char *key, long long want, hub_cmp cmp,
                   int timeout_ms, long long *last);

/* ---- where processes run ------------------------------------------------------------------ */

/* Where the processes PREFIX0..PREFIX<n-1> run, from every node's `procs --local`. */
typedef struct hub_instances {
    long per_node[HUB_MAX];
    long missing, doubled; /* ids running nowhere, ids running on two nodes or more */
    int errors;            /* nodes that did not answer */
} hub_instances;

/* Fills *in; true when every id of the range runs exactly once in the hub. */
bool hub_each_once(hnode **nodes, int count, const char *prefix, long n, hub_instances *in);
/* Waits up to timeout_ms until every id of the range runs exactly once and on its ring
 * owner (`placement` on every node) and no node has a migration running; *in says how it
 * ended. */
bool hub_wait_settled(hnode **nodes, int count, const char *prefix, long n, int timeout_ms,
                      hub_instances *in);

#endif
