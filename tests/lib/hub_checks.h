/*
 * tests/lib/hub_checks.h - what multi-node tests assert about a whole hub of real nodes
 * (cluster_harness.h): membership agreement, one live instance per id, placement, counter
 * sums. Every wait polls with a deadline; none sleeps as a synchronisation.
 */
#ifndef CH_TESTS_HUB_CHECKS_H
#define CH_TESTS_HUB_CHECKS_H

#include "cluster_harness.h"

#include <stdbool.h>

#define HUB_MAX 16

/* Where the processes PREFIX0..PREFIX<n-1> run, from every node's `procs --local`. */
typedef struct hub_instances {
    long per_node[HUB_MAX];
    long missing, doubled; /* ids running nowhere, ids running on two nodes or more */
    int errors;            /* nodes that did not answer */
} hub_instances;

/* Fills *in; true when every id of the range runs exactly once in the hub. */
bool hub_each_once(hnode **nodes, int count, const char *prefix, long n, hub_instances *in);
/* Whether every node answers and counts `alive` members alive and none suspect. */
bool hub_members_are(hnode **nodes, int count, int alive);
/* Waits up to timeout_ms for hub_members_are. */
bool hub_wait_members(hnode **nodes, int count, int alive, int timeout_ms);
/* Waits up to timeout_ms until every id of the range runs exactly once and on its ring
 * owner (`placement` on every node) and no node has a migration running; *in says how it
 * ended. */
bool hub_wait_settled(hnode **nodes, int count, const char *prefix, long n, int timeout_ms,
                      hub_instances *in);
/* The sum of a `stats` counter over the nodes (a node that does not answer adds -1). */
long long hub_stat_sum(hnode **nodes, int count, const char *key);

#endif
