/*
 * net/cluster/coord.h - the coordinator: membership, ring epochs, the registry replica, and the
 * routing of work to other nodes. It runs as one more reactor (index `cores`) that owns no
 * processes, so it reuses the reactor loop, mailboxes and timers; its io_uring carries the
 * node's TCP connections (net/transport).
 *
 * The cluster layer (net/cluster/) sits on the runtime (core/) and the transport (net/):
 * the runtime reaches it only through the table the wiring file (core/node.c) installs
 * (core/upcall.h), which points at the ch_coord_* functions below.
 */
#ifndef CH_NET_CLUSTER_COORD_H
#define CH_NET_CLUSTER_COORD_H

#include "core/node.h"

typedef struct ch_coord ch_coord;
struct ch_mem;
struct ch_rbuf;

/* The migration round, the coordinator's half of the handover protocol (migration/,
 * coord_round.h): the coordinator calls it through this table, which the wiring file
 * passes to ch_coord_create. Every entry runs on the coordinator thread. */
typedef struct ch_coord_round {
    /* Before the threads start, once the node's hello is made: sets up what the cores
     * need from the coordinator (their data lanes). */
    void (*setup)(ch_coord *c);
    void (*ring)(ch_coord *c);                /* a new ring or pin set: a new round */
    void (*on_rec)(ch_coord *c, ch_rec *rec); /* a core's CH_OP_MIG record */
    /* A handover frame (BARRIER, END or a lane's) from a member. */
    void (*on_frame)(ch_coord *c, struct ch_mem *from, uint8_t type, struct ch_rbuf *rb);
    void (*on_up)(ch_coord *c, struct ch_mem *m); /* a participant connected (again) */
    void (*reannounce)(ch_coord *c);              /* every probe period */
    void (*gone)(ch_coord *c, uint64_t node);     /* a member died or hung up after leaving */
    /* 1 when a leaving node handed everything over (or has no one to hand to), else 0. */
    int (*leave_done)(ch_coord *c);
} ch_coord_round;

/* Before the threads start: binds the listener, builds the first (one-member) ring. */
int ch_coord_create(ch_node *n, const ch_coord_round *round, ch_coord **out);
/* On the coordinator thread, once: accept, dial the seeds, arm the timers. */
void ch_coord_boot(ch_node *n, void *ud);
/* A record that reached the coordinator reactor. */
bool ch_coord_dispatch(ch_reactor *r, ch_rec *rec); /* false: not a coordinator record */
/* Shutdown on the coordinator thread: hook, close connections, fail what waits. */
void ch_coord_shutdown(ch_reactor *r);
/* After the io_uring is gone. */
void ch_coord_free(ch_coord *c);

/* ch_route_msg of a clustered node (node.h; upcall.h route_msg): by the current ring and
 * pins. Any thread. Hot path. */
unsigned ch_coord_route_msg(ch_node *n, uint64_t hash, uint16_t *stamp);
/* The node an id hash is pinned to, or 0 (upcall.h pin_of). Any thread. */
uint64_t ch_coord_pin_of(ch_node *n, uint64_t hash);
/* The node that owns an id hash: its pin (net/cluster/pins.h) while the pinned node is on the
 * ring, else the ring's owner (this node on an empty ring). Any thread. */
uint64_t ch_owner(const ch_node *n, const struct ch_hashring *ring, uint64_t hash);

/* From reactors: a local process entered or left the registry. */
void ch_coord_local_insert(ch_reactor *r, const ch_proc *p);
void ch_coord_local_remove(ch_reactor *r, const ch_proc *p);
/* p left this node for (node, core) by a confirmed move: its row names its new place at once,
 * so that every replica has it even if the target dies before its own row went out. */
void ch_coord_local_moved(ch_reactor *r, const ch_proc *p, uint64_t node, uint16_t core);
/* From reactors: a cast or call for an id that is not here; the coordinator forwards it
 * to where the registry says it lives, or answers CH_ENOPROC. */
void ch_coord_miss(ch_reactor *r, ch_rec *rec, unsigned core, uint64_t ref);
/* A pending relay entry completed (reply, timeout or shutdown): answer the remote caller. */
void ch_coord_relay_done(ch_reactor *r, uint64_t peer, uint16_t core, uint64_t ref, int status,
                         const void *data, size_t len);
/* A remote start/stop request completed or timed out. */
void ch_coord_remote_batch_done(ch_reactor *r, void *req, int status, const void *payload,
                                size_t len);

#endif
