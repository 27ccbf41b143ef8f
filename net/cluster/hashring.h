/*
 * net/cluster/hashring.h - the consistent-hash ring that places process ids on nodes.
 *
 * A process id with hash h = XXH3_64(id) lives on ch_hashring_owner(ring, h); its replicas
 * live on the next distinct nodes clockwise (ch_hashring_successors). Each member node puts
 * `vnodes` points on the ring, at XXH3_64 of the 16 bytes (node id, vnode index), both
 * little-endian uint64; equal points order by node id. So every node computes the identical
 * ring from the same member set, in any input order, on any architecture: changing this
 * formula splits a hub whose nodes run different versions.
 *
 * A ring is immutable once built: any thread may read it without locks. The coordinator
 * builds one per membership epoch, publishes it through an atomic pointer and frees the
 * old one once no reader can hold it. A ring is one allocation.
 *
 * Balance: the busiest node's load over the mean, 200 000 ids ("id-%d"), 200 random member
 * sets, mean / 99th percentile (tests/test_hashring.c asserts <= 1.3 for the default):
 *
 *     nodes:           3            8            16           32           64
 *     128 vnodes   1.07 / 1.21  1.13 / 1.31  1.15 / 1.31  1.19 / 1.34  1.23 / 1.43
 *     256 vnodes   1.05 / 1.16  1.09 / 1.19  1.11 / 1.20  1.13 / 1.21  1.16 / 1.25
 *     512 vnodes   1.04 / 1.10  1.06 / 1.14  1.08 / 1.14  1.10 / 1.16  1.12 / 1.18
 *
 * At 64 nodes, 128 vnodes leave 22% of member sets above 1.25; 256 keeps 99% at or below
 * it for the same lookup time (16 ns; 20 ns at 512) and 256 KiB a ring (16 bytes a point).
 * Adding a node moves 1/(n+1) of the ids on average (0.8x to 1.25x of it), all to it.
 */
#ifndef CH_NET_CLUSTER_HASHRING_H
#define CH_NET_CLUSTER_HASHRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Virtual nodes per member for the cluster configuration's default (see the table). */
#define CH_HASHRING_DEFAULT_VNODES 256u

typedef struct ch_hashring ch_hashring;

/* Builds the ring of n distinct node ids (any order; n may be 0: an empty ring) with
 * `vnodes` points each (at least 1); epoch is kept for ch_hashring_epoch. *out belongs to
 * the caller: ch_hashring_free it. -EINVAL on a duplicate id, vnodes 0, n x vnodes above
 * UINT32_MAX or NULL arguments (*out is then NULL); -ENOMEM. */
int ch_hashring_build(const uint64_t *node_ids, size_t n, uint32_t vnodes, uint64_t epoch,
                      ch_hashring **out);
void ch_hashring_free(ch_hashring *r); /* NULL is fine */

/* Hot path, no allocation: *node = the node of the first point >= hash, wrapping past the
 * last point to the first. -ENOENT on an empty ring. */
int ch_hashring_owner(const ch_hashring *r, uint64_t hash, uint64_t *node);

/* Up to `want` distinct nodes clockwise from hash's owner, owner first, written to out.
 * Returns how many: min(want, node count). No allocation; walks at most one turn of the
 * ring (a few points a node for a small replication factor). */
size_t ch_hashring_successors(const ch_hashring *r, uint64_t hash, size_t want, uint64_t *out);

uint64_t ch_hashring_epoch(const ch_hashring *r);
size_t ch_hashring_nodes(const ch_hashring *r);            /* member count */
bool ch_hashring_has(const ch_hashring *r, uint64_t node); /* a member? */
/* The members in ascending order; ch_hashring_nodes(r) entries, valid while r lives. */
const uint64_t *ch_hashring_node_ids(const ch_hashring *r);

#endif
