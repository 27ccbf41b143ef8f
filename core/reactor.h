/*
 * core/reactor.h - one reactor thread per core: its io_uring, its mailboxes, its shard of
 * processes, its timers.
 *
 * The loop: reap completions, drain the inbound mailboxes (a bounded batch per source for
 * fairness), fire due timers, publish outbound records and wake sleeping consumers. When
 * idle it spins (up to spin_us, adapting to how soon work came back after past sleeps;
 * not at all when the node has more reactors than CPUs), then sleeps in io_uring until an
 * eventfd wake-up, a completion or the next timer. Nothing in a reactor is touched by another
 * thread except the mailboxes' shared positions, its inbox and its `sleeping` flag.
 */
#ifndef CH_CORE_REACTOR_H
#define CH_CORE_REACTOR_H

#include "hist.h"
#include "inbox.h"
#include "msg.h"
#include "proc.h"
#include "ptable.h"
#include "mbox.h"
#include "timer.h"

#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

/* A record that did not fit its ring; kept in order until the ring has room. */
typedef struct ch_ovf {
    struct ch_ovf *next;
    size_t size;
    alignas(32) uint8_t rec[];
} ch_ovf;

typedef struct ch_outq {
    ch_ovf *head, *tail;
    size_t bytes;
} ch_outq;

/* An io_uring operation in flight: embed it in the object that owns the operation and
 * pass it as the SQE's user data; cb runs on the reactor when the CQE arrives. */
typedef struct ch_io ch_io;
struct ch_reactor;
typedef void (*ch_io_cb)(struct ch_reactor *r, ch_io *io, int res, uint32_t flags);
struct ch_io {
    ch_io_cb cb;
};

/* Per-core counters: written by the owner reactor only, read by anyone (relaxed). */
typedef struct ch_counters {
    _Atomic uint64_t processes, started, stopped, restarts, crashes, messages, dead_letters,
        intensity_exceeded, slow_terminates, crash_restarts, bad_frames, refused_peers, rejoins,
        conflicts, accept_pauses; /* accept_pauses: an accept loop out of descriptors or memory */
    /* migration */
    _Atomic uint64_t migrating, migrated_out, migrated_in, migration_failures, forwarded_messages,
        held_messages, handover_bytes_raw, handover_bytes_wire, handover_frames_zstd,
        handover_frames_raw, handover_frames_lane, handover_lanes_lost;
    _Atomic uint64_t pause[CH_HIST_BUCKETS]; /* pauses of moved processes, us (hist.h) */
    _Atomic uint64_t pause_max;              /* the longest, us */
} ch_counters;

/* Adds one to a counter of the calling reactor (its only writer: no atomic add needed). */
static inline void ch_counter_bump(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

typedef struct ch_reactor {
    struct ch_node *node;
    unsigned core;
    pthread_t thread;
    struct io_uring uring;
    int efd;          /* wake-up eventfd */
    uint64_t efd_buf; /* target of the pending read on efd */
    bool efd_armed;
    alignas(64) _Atomic int sleeping;
    ch_inbox inbox; /* from foreign threads */
    ch_mbox **in;   /* in[src]: records from reactor src */
    ch_mbox **out;  /* out[dst]: records to reactor dst (out[core] is the local queue) */
    ch_outq *ovf;   /* ovf[dst]: records waiting for room in out[dst] */
    bool *dirty;    /* dirty[dst]: out[dst] has unpublished records */
    ch_ptable procs;
    ch_timers timers;
    struct ch_dispatch *cur; /* the call being handled, for ch_reply */
    uint64_t *restarts;      /* ring buffer of restart times for the intensity limit */
    uint32_t restart_pos;
    struct ch_ho *ho; /* the migration engine (clustered cores only) */
    bool shut;        /* processes terminated; refuse new ones */
    bool uring_ready;
    bool uring_disabled; /* created disabled: the reactor's thread enables it (reactor.c) */
    bool running;        /* the thread was spawned and not yet joined */
    _Atomic bool quit;   /* leave the loop */
    ch_counters stats;
} ch_reactor;

/* An SQE from r's ring (submitting first when the queue is full), NULL only if the
 * kernel refuses to take more. Set its user data with ch_reactor_sqe_io. */
struct io_uring_sqe *ch_reactor_sqe(ch_reactor *r);
static inline void ch_reactor_sqe_io(struct io_uring_sqe *sqe, ch_io *io)
{
    io_uring_sqe_set_data(sqe, io);
}

/* The reactor of the calling thread, NULL on foreign threads. */
ch_reactor *ch_reactor_self(void);

int ch_reactor_init(ch_reactor *r, struct ch_node *n, unsigned core);
void ch_reactor_destroy(ch_reactor *r);
int ch_reactor_spawn(ch_reactor *r);
/* Makes the thread leave its loop and joins it. */
void ch_reactor_stop(ch_reactor *r);
/* After every reactor thread is joined: runs r's turns on the calling thread until r has
 * nothing left; returns the work done (the node repeats until every reactor returns 0). */
unsigned ch_reactor_drain(ch_reactor *r);
void ch_reactor_wake(ch_reactor *r);

/*
 * Sends one record to core `dst` from whatever thread this is: through this reactor's
 * ring (or its overflow queue) on a reactor thread, through dst's inbox elsewhere.
 * `user`: a ch_send from the application, which gets -EAGAIN under back-pressure;
 * framework records are always queued. Hot path.
 */
int ch_reactor_post(struct ch_node *n, unsigned dst, const ch_rec *h, const void *id,
                    const void *payload, bool user);
/* Posts through dst's inbox whatever thread this is: the record comes after every record
 * application threads pushed there before (the migration's marker, handover.h). */
int ch_reactor_post_inbox(struct ch_node *n, unsigned dst, const ch_rec *h, const void *payload);
/* The same for a record with an id (a cast the coordinator routes again, coord_route.c). */
int ch_reactor_post_inbox_id(struct ch_node *n, unsigned dst, const ch_rec *h, const void *id,
                             const void *payload);
/* Publishes every dirty outbound ring and wakes sleeping consumers; returns how many rings
 * it published. */
unsigned ch_reactor_flush(ch_reactor *r);

/* Delivering to processes (reactor.c). */
void ch_reactor_reply(ch_reactor *r, unsigned core, uint64_t ref, int status, const void *data,
                      size_t len);
uint64_t ch_now_ns(void);
/* How long ago `then` was at `now`, 0 when `then` is later (a timestamp taken by another
 * thread, or after `now` was read): never an unsigned wrap into "very long ago". */
static inline uint64_t ch_ns_since(uint64_t now, uint64_t then)
{
    return now > then ? now - then : 0;
}

#endif
