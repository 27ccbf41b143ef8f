/*
 * core/node.h - the node as the runtime sees it, and the requests that cross threads.
 *
 * A request from one thread to reactors (a batch start, a lookup, a call from a foreign
 * thread) is a heap object whose pointer travels in a record. It is reference counted
 * between the thread that waits for it and the reactor that completes it, because a
 * waiter may give up (timeout) before the reactor finishes.
 */
#ifndef CH_CORE_NODE_H
#define CH_CORE_NODE_H

#include "hook.h"
#include "proc.h"
#include "reactor.h"
#include "upcall.h"

#include <pthread.h>
#include <stdatomic.h>

enum ch_node_state { CH_NODE_CREATED, CH_NODE_RUNNING, CH_NODE_STOPPING, CH_NODE_STOPPED };

struct ch_hashring;
struct ch_coord;
struct ch_srv_node;

struct ch_node {
    ch_node_config cfg;
    ch_ptype *types;
    unsigned ntypes;
    unsigned cores;     /* reactors that own processes */
    uint64_t core_mask; /* cores - 1 when cores is a power of two, else 0 */
    unsigned nreactors; /* cores, plus the coordinator (index `cores`) when clustered */
    ch_reactor *reactors;
    ch_mbox *mboxes;        /* mailboxes: mboxes[src * nreactors + dst] */
    uint64_t id;            /* this node's identity in the hub: random, new at every start */
    struct ch_coord *coord; /* NULL without a cluster */
    const ch_upcalls *up;   /* the layers above (upcall.h): NULL without a cluster */
    _Atomic(struct ch_hashring *) ring; /* the current epoch's ring, any thread reads */
    _Atomic(struct ch_pins *) pins;     /* pinned ids (net/cluster/pins.h), NULL when none */
    struct ch_pins **retired_pins;      /* replaced snapshots, freed at destroy */
    size_t nretired_pins;
    _Atomic uint64_t epoch;
    _Atomic uint64_t members_alive; /* the coordinator's count, for ch_node_stats */
    _Atomic uint64_t left_behind;   /* processes still here when ch_node_leave stopped it */
    _Atomic int partitioned;
    _Atomic int net_congested;    /* a peer connection's queue is over its high mark */
    struct ch_hashring **retired; /* rings replaced while threads may still read them */
    size_t nretired;
    char *cluster_strings; /* the node's copies of the cluster config's strings and cookie */
    ch_hooks hooks;
    _Atomic(struct ch_srv_node *) srv; /* servers and their connection slots (server.h) */
    _Atomic int state;
    /* Written by every application thread's API call: its own line, away from the fields
     * that every send reads. */
    alignas(64) _Atomic long inflight; /* API calls between their state check and post */
    alignas(64) _Atomic unsigned shut_acks;
    pthread_mutex_t stop_lock; /* serialises ch_node_stop callers */
    char name[32];
};

/* The core here that owns an id hash: hash % cores, without a division when cores is a
 * power of two (hot path). */
static inline unsigned ch_core_of(const ch_node *n, uint64_t hash)
{
    return (unsigned)(n->core_mask || n->cores == 1 ? hash & n->core_mask : hash % n->cores);
}

/* Where a record for this id hash goes: its core here, or the coordinator (index `cores`:
 * another node owns it). Any thread. Hot path. */
unsigned ch_route(ch_node *n, uint64_t hash);
/* The same for a message: *stamp gets the low bits of the epoch of the ring it was routed
 * by, which the record carries (ch_rec.pad2), so that the coordinator sends a message for
 * another node where its sender meant it to go, even once its own ring has changed. */
unsigned ch_route_msg(ch_node *n, uint64_t hash, uint16_t *stamp);

/* A one-shot completion a thread can wait on with a deadline. */
typedef struct ch_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;          /* under mu */
    _Atomic int ready; /* set last by the signaller: after it, the waiter may be freed */
} ch_waiter;

int ch_waiter_init(ch_waiter *w);
void ch_waiter_destroy(ch_waiter *w);
void ch_waiter_signal(ch_waiter *w);
/* 0 when signalled, -ETIMEDOUT when timeout_ms passed first. spin_ns: how long to poll
 * before sleeping (worth it only when the answer comes from this machine's own cores). */
int ch_waiter_wait(ch_waiter *w, uint32_t timeout_ms);
int ch_waiter_wait_spin(ch_waiter *w, uint32_t timeout_ms, uint64_t spin_ns);

/* A call from a foreign thread: completed by the target core's pending-call entry. */
typedef struct ch_fcall {
    _Atomic int refs;
    uint32_t timeout_ms;
    ch_reply_fn fn; /* async form */
    void *ud;
    ch_waiter w; /* blocking form */
    int status;
    void *reply;
    size_t reply_len;
} ch_fcall;

void ch_fcall_complete(ch_fcall *c, int status, const void *data, size_t len);
void ch_fcall_put(ch_fcall *c);

/* A batch of starts or stops spread over the cores. */
typedef struct ch_batch {
    _Atomic int refs;
    _Atomic unsigned pending; /* cores still working on the current phase */
    ch_node *node;
    uint8_t op; /* CH_OP_START or CH_OP_STOP */
    bool rollback;
    bool rolling_back;
    size_t count;
    ch_spec **specs; /* per child; the owner core takes a start spec */
    ch_spec **keys;  /* rollback: id-only copies of the start specs */
    int *results;
    int *scratch;              /* results of the rollback stops (ignored) */
    ch_child_spec *hook_specs; /* deep copy for POST_CHILDREN_START, when hooked */
    char *hook_arena;
    ch_batch_done on_done;
    void *ud;
    ch_waiter w;
    bool waited;  /* a thread waits (blocking form) */
    uint8_t hops; /* forwards between nodes so far */
    bool crash;   /* crash restarts (CH_HOPS_CRASH): each core counts the ones it starts */
} ch_batch;

/* Called by a core when it finished its part of the batch's current phase. */
void ch_batch_core_done(ch_batch *b);
void ch_batch_put(ch_batch *b);

/* A registry query (lookup or list), answered by every core involved. */
typedef struct ch_query {
    _Atomic int refs;
    _Atomic unsigned pending;
    ch_waiter w;
    bool list;
    unsigned cores;         /* slots in per_core */
    const ch_spec *key;     /* lookup */
    const char *tag;        /* list filter, NULL for all */
    int status;             /* lookup */
    ch_proc_info *info;     /* lookup */
    ch_proc_list *per_core; /* list: one per core */
} ch_query;

void ch_query_core_done(ch_query *q);
ch_proc_info *ch_info_new(const ch_proc *p);

/* Function posted with ch_node_post. */
typedef struct ch_post {
    void (*fn)(ch_node *, void *);
    void *ud;
} ch_post;

const ch_ptype *ch_node_find_type(const ch_node *n, const char *name);
/* True on any of n's reactor threads (cores and coordinator), where nothing may block. */
bool ch_node_on_reactor(const ch_node *n);
/* Keeps a replaced ring (or pin snapshot) until the node is destroyed (coordinator thread
 * only): another thread may still be reading it. */
void ch_node_retire_ring(ch_node *n, struct ch_hashring *ring);
void ch_node_retire_pins(ch_node *n, struct ch_pins *pins);

/* Starts or stops children on behalf of the runtime (crash restarts, peers' requests):
 * asynchronous, from any thread; hops counts forwards between nodes (at the limit the
 * children are started here, wherever the ring says they belong). */
int ch_batch_submit(ch_node *n, uint8_t op, const ch_child_spec *specs, size_t count,
                    const char *const *ids, const size_t *id_lens, uint8_t hops,
                    ch_batch_done on_done, void *ud);
#define CH_MAX_HOPS 4
/* Or'ed into ch_batch_submit's hops (and carried in START_REQ): the starts restart lost
 * processes from their specs, and the node where each one starts counts it in
 * crash_restarts (its requester may never hear back). */
#define CH_HOPS_CRASH 0x80u

/* Brackets an API call that posts work: fails with CH_ESTOPPED unless the node runs. */
int ch_node_api_enter(ch_node *n);
void ch_node_api_leave(ch_node *n);
/* A reactor finished terminating its processes at shutdown. */
void ch_node_shut_ack(ch_node *n);

#endif
