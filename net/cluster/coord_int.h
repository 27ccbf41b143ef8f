/*
 * net/cluster/coord_int.h - what the coordinator's files share (not a public or a core-wide
 * interface): its state and the functions one part calls in another.
 *
 *   coord.c           sending to peers, ring and epochs, frame and record dispatch,
 *                     timers, boot, shutdown, the public cluster functions
 *   coord_member.c    views, failure detection, connections
 *   coord_heal.c      what departures and returns mean: crash restarts, partition mode,
 *                     rejoining after being declared dead
 *   coord_registry.c  the registry replica: deltas, digests, resyncs, queries
 *   coord_route.c     casts, calls and starts/stops for processes on other nodes
 *   coord_ctl.c       control requests, on their own thread
 *   coord_audit.c     the registry's self-audit against what the cores hold
 *
 * Everything here runs on the coordinator thread unless it says otherwise.
 */
#ifndef CH_NET_CLUSTER_COORD_INT_H
#define CH_NET_CLUSTER_COORD_INT_H

#include "coord.h"

#include "hashring.h"
#include "core/log.h"
#include "mtab.h"
#include "pins.h"
#include "regtab.h"
#include "core/supervisor.h"

#include "net/auth.h"
#include "net/frame.h"
#include "net/handshake.h"
#include "net/transport.h"
#include "net/wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#define MAX_HOPS     CH_MAX_HOPS
#define RELAY_MS     120000u /* a relayed call's entry outlives any caller's timeout */
#define HANDSHAKE_MS 5000u   /* a connection must authenticate within this */
#define DELTA_FLUSH  (64u * 1024)
#define CTL_MAX_ARGS 64

enum { REG_INSERT = 1, REG_REMOVE = 2 };

typedef struct ping_relay { /* a PING_REQ we serve: the ACK goes back to the requester */
    uint64_t seq, requester, their_seq;
} ping_relay;

typedef struct ctl_job ctl_job;

/* A peer's frame, handled by the concern that registered its type (coord_*_frames). */
typedef void (*coord_frame_fn)(ch_coord *c, ch_conn *conn, ch_rbuf *rb);
typedef struct coord_frame_entry {
    uint8_t type;
    coord_frame_fn fn;
} coord_frame_entry;
#define COORD_FRAMES(c, table) coord_frames_add((c), (table), sizeof(table) / sizeof(*(table)))
/* coord.c: registers handlers for their frame types */
void coord_frames_add(ch_coord *c, const coord_frame_entry *v, size_t n);

/* The coordinator, by concern: each part is written by its own file. */
struct ch_coord {
    ch_node *n;
    const ch_coord_round *round; /* the migration round (coord.h), installed at create */
    ch_reactor *r;
    ch_transport *t;
    ch_hello hello;
    ch_mtab mt;     /* membership (mtab.h; coord_member.c) */
    ch_regtab reg;  /* the registry replica (coord_registry.c) */
    uint64_t epoch; /* of the current ring (coord.c) */
    bool leaving;
    coord_frame_fn frames[CH_F__COUNT]; /* peer frame handlers, registered at create */
    bool f_lose_removes; /* CH_FAULT=lose-removes (tests): cores' removals never arrive */

    struct coord_probe { /* failure detection (coord_member.c) */
        size_t next;
        uint64_t seq;
        uint64_t target, sent_ns;
        bool acked, indirect;
        uint64_t last_tick_ns;      /* when tick last ran: a long gap is a stall of this node */
        uint64_t dial_any_until_ns; /* after a stall: dial every member, whatever its id */
        uint64_t stalled_ns;        /* when this node last woke from a stall (0: never) */
        uint64_t stall_inc;         /* ... and its incarnation before it: deaths claimed at or
                                       below it may date from that stall */
        uint64_t tick_inc;          /* its incarnation at the last tick (a view read on waking
                                       may raise it before the tick sees the stall) */
        ping_relay relays[16];
    } probe;

    struct coord_delta { /* registry changes not yet sent (coord_registry.c) */
        ch_wbuf buf;     /* REG_DELTA entries */
        uint32_t count;
        bool timer;
    } delta;

    struct coord_part {           /* the partition strategy (coord_heal.c) */
        size_t largest_seen;      /* MAJORITY / DYNAMIC quorum */
        uint64_t largest_seen_ns; /* when largest_seen was last observed */
        bool on;                  /* partition mode */
        ch_regrow **parked;       /* specs of local processes stopped by partition mode */
        size_t nparked;
    } part;

    ch_pinset pins; /* the hub's pins (coord_pins.c) */

    struct coord_mig {           /* the migration round of the current ring (coord_round.c) */
        uint64_t rh;             /* its hash */
        unsigned switched, done; /* cores that switched to it, that sent everything */
        bool barrier_sent, sealed, end_sent, unheld;
        uint64_t start_ns; /* when this node took the ring */
    } mig;
    uint16_t *lane_ports; /* each core's data lane port (NULL: no lanes; coord_round.c) */

    struct coord_keep {            /* casts kept while a round is open (coord_route.c) */
        ch_wbuf casts;             /* copies of casts sent to a new owner */
        bool full;                 /* past the bound: no more copies this round (said once) */
        ch_hashring *prev_ring;    /* the ring before the current one (retired, still valid) */
        ch_hashring *settled_ring; /* the ring of the last round that every participant
                                      confirmed (retired rings stay valid) */
    } keep;

    struct coord_audit {          /* the registry's self-audit (coord_audit.c) */
        uint32_t gen;             /* the current audit's mark on the processes */
        _Atomic unsigned pending; /* cores yet to answer (one answer may fail on a core) */
        uint64_t last_ns;         /* when the last one began */
        uint64_t dirty_ns;        /* the last ring change or rejoin (0: none yet) */
    } audit;

    struct coord_ctl { /* control requests, on a thread of their own (coord_ctl.c) */
        pthread_t thread;
        bool running;
        pthread_mutex_t mu;
        pthread_cond_t cv;
        ctl_job *head, *tail;
        bool quit;
        ch_ctl_handler handler;
        void *ud;
        uint64_t serial;
        struct ctl_conn { /* control connections alive now: answers find theirs by serial */
            uint64_t serial;
            ch_conn *conn;
        } * conns;
        size_t n;
    } ctl;
};

static inline ch_coord *coord_of(ch_reactor *r)
{
    return r->node->coord;
}

static inline uint64_t ms(uint32_t v)
{
    return (uint64_t)v * 1000000ull;
}

/* coord.c */
int coord_backlog(ch_coord *c, ch_mem *m, uint8_t type, const void *a, size_t alen, const void *b,
                  size_t blen);
void coord_backlog_flush(ch_mem *m);
void coord_backlog_free(ch_mem *m);
void coord_rebuild_ring(ch_coord *c, uint64_t seen_epoch);
void coord_run_cluster_hook(ch_coord *c, ch_hook_point point, uint64_t node);
void coord_send_all(ch_coord *c, uint8_t type, const ch_wbuf *w);
int coord_send_frame(ch_coord *c, uint64_t node, uint8_t type, const void *a, size_t alen,
                     const void *b, size_t blen);
int coord_send_to(ch_coord *c, uint64_t node, uint8_t type, const ch_wbuf *w);

/* coord_member.c */
void coord_after_merge(ch_coord *c, int bits, uint64_t seen_epoch, ch_mem *changed);
void coord_after_stall(ch_coord *c, uint64_t now, uint64_t gap);
void coord_dial(ch_coord *c, ch_mem *m, uint64_t now);
void coord_dial_all(ch_coord *c, uint64_t now);
void coord_expire_suspects(ch_coord *c, uint64_t now);
bool coord_get_member(ch_rbuf *rb, ch_mem *m);
int coord_merge_one(ch_coord *c, const ch_mem *m, uint64_t seen_epoch);
void coord_on_down(void *ud, ch_conn *conn, int reason);
void coord_on_up(void *ud, ch_conn *conn, const ch_hello *peer);
void coord_member_frames(ch_coord *c); /* JOIN, VIEW, PING, ACK, PING_REQ */
void coord_probe_indirect(ch_coord *c);
void coord_probe_round(ch_coord *c);
void coord_send_view(ch_coord *c, ch_conn *conn);

/* coord_heal.c */
void coord_check_partition(ch_coord *c);
void coord_expire_leavers(ch_coord *c, uint64_t now);
void coord_left_done(ch_coord *c, ch_mem *m);
void coord_member_gone(ch_coord *c, ch_mem *m);
void coord_on_partition_reset(ch_coord *c);
void coord_heal_frames(ch_coord *c); /* PARTITION_RESET */
void coord_rejoin(ch_coord *c, ch_mem *from, uint64_t declarer, bool mutual, bool from_partitioned,
                  uint64_t claim);
void coord_unpark(ch_coord *c);

/* coord_registry.c */
void coord_drop_rows_of(ch_coord *c, uint64_t owner, bool gone);
void coord_flush_delta(ch_coord *c);
void coord_on_local_reg(ch_coord *c, ch_rec *rec);
void coord_on_query(ch_coord *c, ch_rec *rec);
void coord_registry_frames(ch_coord *c); /* REG_* */
/* Passes a row to another owner node (its old placement is gone: registry-remove hook). */
void coord_reg_reassign(ch_coord *c, ch_regrow *row, uint64_t node);
/* Inserts or replaces a row (takes it). */
void coord_reg_put(ch_coord *c, ch_regrow *row);
void coord_send_digest(ch_coord *c, ch_conn *conn);

/* coord_route.c */
void coord_route_frames(ch_coord *c); /* CAST, CALL, REPLY, START_*, STOP_* */
void coord_on_out_batch(ch_coord *c, ch_rec *rec);
void coord_on_out_call(ch_coord *c, ch_rec *rec);
void coord_on_out_cast(ch_coord *c, ch_rec *rec);
void coord_on_out_fcall(ch_coord *c, ch_rec *rec);
/* The kept casts (handover.h, "a target that dies"): those for dead nodes that `ring` no
 * longer has are routed again by it; all go once every participant confirmed its moves. */
void coord_kept_reroute(ch_coord *c, const ch_hashring *ring);
void coord_kept_drop(ch_coord *c);

/* coord_pins.c: sends the pin set to a member that connected; merges a peer's. */
void coord_pins_send(ch_coord *c, ch_mem *m);
void coord_pins_frames(ch_coord *c); /* MIG_PIN */

/* coord_audit.c */
void coord_audit_dirty(ch_coord *c); /* the ring changed or this node rejoined */
void coord_audit_tick(ch_coord *c, uint64_t now);
/* coord_registry.c: forgets this node's row of an id, here and at every peer */
void coord_reg_drop_own(ch_coord *c, const char *id, size_t len);
/* coord_heal.c: starts rows[0..k) from their specs (hops 0: each on its ring owner) */
void coord_restart_rows(ch_coord *c, ch_regrow **rows, size_t k, uint8_t hops);
/* coord_pins.c: applies a pin here and tells the peers (ch_node_pin). */
int coord_pin_set(ch_coord *c, uint64_t hash, uint64_t node);

/* coord_ctl.c */
void coord_ctl_stop(ch_coord *c);

void *coord_ctl_main(void *arg);
void coord_on_ctl_req(ch_coord *c, ch_conn *conn, ch_rbuf *rb);

#endif
