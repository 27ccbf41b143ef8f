/*
 * tests/lib/inproc_hub.h - hubs of several nodes inside the test process, each node with
 * its own coordinator and TCP listener on 127.0.0.1 (a kernel-chosen port). Faster to set
 * up than node processes (cluster_harness.h), so that tests exercise the cluster and
 * migration logic in detail with them, and ThreadSanitizer sees every thread of every
 * node at once (tsan_hub).
 *
 * Every node of such a hub shares one cookie and probes fast, with room for a loaded
 * 2-core machine under a sanitizer: a false death is final. The nodes join through the
 * first node's listener. Waits poll every IHUB_POLL_MS: each look asks every node.
 *
 * Plain C without Criterion: functions return 0 or a negative error code unless they say
 * otherwise, and tests assert on that.
 */
#ifndef CH_TESTS_INPROC_HUB_H
#define CH_TESTS_INPROC_HUB_H

#include <corehub/corehub.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IHUB_MAX     4         /* nodes in one ihub */
#define IHUB_POLL_MS 10        /* between two looks at a hub */
#define IHUB_NONE    SIZE_MAX  /* what a node that did not answer reports */
#define IHUB_COUNTER "counter" /* ihub_counter's name */

/* "counter": an 8-byte count that each cast adds one to and each call answers, except the
 * call "stall", whose reply is deferred and never sent (the caller's timeout must end it). */
extern const ch_process_type ihub_counter;

/* The settings every in-process node shares: 2 cores, not pinned, a cluster listener on
 * 127.0.0.1:0, the hub's cookie, a probe every 200 ms (100 ms to answer, suspicion for 5
 * periods), a registry sync every 300 ms. Tests change what they need before starting. */
void ihub_config(ch_node_config *c);

/* Creates and starts a node from c with `type` registered, joining the hub of `seed`
 * (NULL: the first node of a hub; c's own seeds are not used). On error *out is NULL and
 * nothing is left running. */
int ihub_node_start(const ch_node_config *c, ch_node *seed, const ch_process_type *type,
                    ch_node **out);

/* A hub: n[0] is the seed of the others; a NULL slot is a node gone. */
typedef struct ihub {
    ch_node *n[IHUB_MAX];
    size_t count; /* slots in use */
} ihub;

/* Starts `count` nodes from c (NULL: ihub_config's) with `type` registered; it does not
 * wait for them to see each other. On error the nodes started are destroyed. */
int ihub_up(ihub *h, size_t count, const ch_node_config *c, const ch_process_type *type);
/* Destroys every node still there, the last first. */
void ihub_down(ihub *h);

/* What one node reports, or IHUB_NONE. */
size_t ihub_alive(ch_node *n);  /* members alive in its view */
size_t ihub_listed(ch_node *n); /* processes its registry lists */

/* th_poll_until every IHUB_POLL_MS: for a condition that asks the hub's nodes. */
bool ihub_wait(bool (*cond)(void *ud), void *ud, uint32_t timeout_ms);

/* Whether what(n) is `want` for each node of nodes[0..count) that is not NULL. */
bool ihub_all(ch_node *const *nodes, size_t count, size_t (*what)(ch_node *), size_t want);
/* Polls ihub_all until it holds or timeout_ms passed; its last value. */
bool ihub_wait_all(ch_node *const *nodes, size_t count, size_t (*what)(ch_node *), size_t want,
                   uint32_t timeout_ms);

/* Starts the children PREFIX0..PREFIX<count-1> of `type` through n (no init argument, the
 * node's default options): ch_start_children's code. res (count ints, or NULL) gets each
 * child's result. */
int ihub_start_range(ch_node *n, const char *prefix, size_t count, const char *type, int *res);

#endif
