/*
 * net/cluster/pins.h - processes pinned to a node (`ctl migrate ID NODE`, ch_node_pin).
 *
 * A pin overrides the ring for one id: the id's owner is the pinned node while that node
 * owns a part of the ring, and every routing decision (ch_route, the coordinators, the
 * migration planner) asks ch_owner, so a pin moves a process with the same protocol, and
 * the same promise, as a ring change.
 *
 * The coordinator keeps the mutable set (ch_pinset: every pin the hub agreed on, merged
 * last-writer-wins on (version, setter), so any node may set one and all converge) and
 * publishes immutable snapshots (ch_pins) that any thread reads through the node's atomic
 * pointer. Pins are keyed by the id's 64-bit hash, as all placement is.
 */
#ifndef CH_NET_CLUSTER_PINS_H
#define CH_NET_CLUSTER_PINS_H

#include <stddef.h>
#include <stdint.h>

typedef struct ch_pin {
    uint64_t hash;    /* the id's XXH3_64 */
    uint64_t node;    /* pinned node; 0: unpinned (kept so that the unpin wins merges) */
    uint64_t version; /* Lamport clock of the change */
    uint64_t setter;  /* the node that made it: breaks version ties */
} ch_pin;

/* An immutable snapshot: the pins with a node, sorted by hash. */
typedef struct ch_pins {
    size_t n;
    uint64_t digest; /* 0 for no pins: part of a migration round's identity */
    ch_pin v[];
} ch_pins;

/* The pinned node of hash, 0 when none (p may be NULL). */
uint64_t ch_pins_get(const ch_pins *p, uint64_t hash);

typedef struct ch_pinset {
    ch_pin *v;
    size_t n, cap;
    uint64_t clock; /* the highest version seen */
} ch_pinset;

void ch_pinset_free(ch_pinset *s);
/* Merges one pin: 1 when it changed the set, 0 when older or equal, -ENOMEM. */
int ch_pinset_merge(ch_pinset *s, const ch_pin *p);
/* The snapshot of the set (malloc'd; NULL on ENOMEM). */
ch_pins *ch_pinset_snapshot(const ch_pinset *s);

#endif
