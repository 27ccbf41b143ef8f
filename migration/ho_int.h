/*
 * migration/ho_int.h - what the handover engine's files share (handover.h is the engine's
 * interface; this is not): the engine's state and the functions one part calls in another.
 *
 *   handover.c   the engine of one core: create and destroy, the test faults (CH_FAULT),
 *                talking to the coordinator and the other cores, and the entry points that
 *                dispatch records and messages to the parts below
 *   ho_source.c  the source: the queue of ids to move, lanes, frames, freezing, forwarding
 *   ho_settle.c  the source: what becomes of a frame sent (confirmation, retention query,
 *                refusal, a gone target's replay), thawing what did not move
 *   ho_target.c  the target: checking and applying frames, installing, confirming
 *   ho_held.c    the target: messages held per id until its process is here (or is not)
 *   ho_round.c   a round: planning on a new ring, sealing, DONE, UNHOLD, the tick
 *   ho_lane.c    the core's data lanes: which way a frame leaves, lane frames in
 *
 * Names: a function that one file calls in another is ch__ho_* (internal to the library),
 * a small helper inlined here is ho_*, everything else is static in its file.
 *
 * Every function runs on the core's own reactor thread.
 */
#ifndef CH_MIGRATION_HO_INT_H
#define CH_MIGRATION_HO_INT_H

#include "migration/handover.h"

#include "net/cluster/hashring.h"
#include "core/node.h"
#include "migration/hbatch.h"
#include "migration/codec.h"
#include "net/frame.h"
#include "net/wire.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

enum { MP_FROZEN = 1, MP_AWAIT_END = 2 };                    /* ch_mig_proc.state */
enum { ACK_CONFIRM = 0, ACK_RESOLVE = 1, ACK_BADFRAME = 2 }; /* a MIG_ACK's kind */
enum { REL_OLD, REL_ALL, REL_PRESENT };                      /* ch__ho_release_held */

typedef struct ho_ackwait ho_ackwait; /* ho_target.c */
typedef struct ho_held_q ho_held_q;   /* ho_held.c */

/* A process's migration state (p->mig), on the source (FROZEN) or the target (AWAIT_END). */
struct ch_mig_proc {
    uint8_t state;
    bool ended;      /* source: the END record is written (or owed no more) */
    bool terminated; /* source, ColdSwap: terminate already ran */
    bool settled;    /* source: the target has it; the old instance goes once ended */
    uint16_t core;   /* FROZEN: target core; AWAIT_END: source core */
    uint64_t node;   /* FROZEN: target node; AWAIT_END: source node */
    uint64_t t0;     /* FROZEN: when it froze */
    ho_ackwait *aw;  /* AWAIT_END: its frame's confirmation, when confirm_handover */
};

typedef struct ho_lane {
    uint64_t node;
    uint16_t core;
    uint32_t seq; /* frames numbered per lane from 1: the target applies them in order */
    bool fresh;   /* its next frame is its first since it (re)started (CH_MIG_LANE_FIRST) */
    ch_hbatch b;
} ho_lane;

typedef struct ho_sent {
    struct ho_sent *next;
    uint64_t node;
    uint16_t core;
    uint32_t seq;
    uint8_t *raw;
    size_t raw_len;
    uint64_t sent_ns;
    bool first; /* its lane's first frame since the lane (re)started */
    bool queried;
    bool spare_ok; /* raw may serve as another batch's buffer */
    bool via_lane; /* last sent on the data lane (else through the coordinator) */
} ho_sent;

/* A growable byte array of packed entries read from `pos`. */
typedef struct ho_bytes {
    uint8_t *p;
    size_t len, cap, pos;
} ho_bytes;

/* A process's id, copied: for what runs after the process may be gone. */
typedef struct ho_idref {
    uint64_t hash;
    uint8_t len;
    char id[CH_ID_MAX];
} ho_idref;

/* The engine of one core (r->ho). */
typedef struct ch_ho {
    ch_reactor *r;
    const ch_migration_config *cfg;
    ch_hashring *ring;
    ch_hashring *prev_ring; /* the ring before it (retired, still valid) */
    bool shrunk;            /* the ring lost a member the previous one had */
    uint64_t rh;
    ch_mig_member *members;
    size_t nmembers;
    uint64_t *mark_rh; /* per core: the last ring it marked */
    uint64_t sealed_rh, imark_rh;
    bool sealed, done_sent;
    bool holding;
    uint64_t holding_since;
    /* source */
    ho_bytes queue;   /* u64 hash | u8 len | id */
    ho_bytes unended; /* u64 node | u16 core | u8 len | id */
    ho_lane *lanes;
    size_t nlanes;
    ho_sent *sent_head, *sent_tail;
    size_t inflight;
    ch_codec *codec;
    uint64_t frozen, queued;
    struct ho_link { /* per target: the link totals last fed to the codec */
        uint64_t node, bytes, ns;
    } links[8];
    unsigned nlinks;
    uint8_t *spare[8]; /* batch buffers of `capacity` bytes back from confirmed frames */
    unsigned nspare;
    /* target */
    ch_codec_rx *rx;
    ho_held_q **held;
    size_t hcap, hcount;
    uint64_t await_end;
    struct ho_seen { /* per source lane: the last frame applied, and frames come early */
        uint64_t node;
        uint32_t core, seq;
        struct ho_early { /* a frame that came before the one it follows (ho_target.c) */
            uint32_t seq;
            uint8_t *block; /* as ch__ho_on_data takes it */
            size_t len;
        } * early;
        uint32_t nearly;
        size_t early_bytes;
    } * seen;
    size_t nseen;
    bool tick_armed;
    struct ch_lanes *wire; /* this core's data lanes (net/lane.h), NULL: none */
    /* faults injected by tests (CH_FAULT) */
    bool f_no_confirm;
    uint32_t f_corrupt, f_stall, frames_out, frames_in;
    uint32_t f_lane_cut, lane_frames; /* every f_lane_cut-th frame on a lane, the lane closes */
} ch_ho;

static inline void ho_count(_Atomic uint64_t *c, int64_t d)
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
    atomic_store_explicit(c, v + (uint64_t)d, memory_order_relaxed);
}

static inline size_t ho_batch_limit(void)
{
    return (CH_FRAME_MAX - 4096) & ~(size_t)(CH_HBATCH_ALIGN - 1);
}

static inline void ho_bytes_clear(ho_bytes *b)
{
    b->len = b->pos = 0;
}

static inline bool ho_bytes_empty(const ho_bytes *b)
{
    return b->pos >= b->len;
}

static inline void ho_update_gauge(ch_ho *h)
{
    atomic_store_explicit(&h->r->stats.migrating, h->frozen + h->queued, memory_order_relaxed);
}

static inline ho_idref ho_id_of(const ch_proc *p)
{
    ho_idref r = {.hash = p->hash, .len = p->spec->id_len};
    memcpy(r.id, ch_spec_id(p->spec), r.len);
    return r;
}

/* handover.c */
int ch__ho_bytes_put(ho_bytes *b, const void *a, size_t alen, const void *c, size_t clen);
void ch__ho_post(ch_reactor *r, unsigned dst, const ch_mig_msg *m, const void *payload, size_t len);
void ch__ho_send_block(ch_reactor *r, uint64_t node, uint8_t type, uint8_t *block, size_t len);
void ch__ho_send_wbuf(ch_reactor *r, uint64_t node, uint8_t type, ch_wbuf *w);
uint64_t ch__ho_owner_of(const ch_ho *h, uint64_t hash);
void ch__ho_route_via(ch_reactor *r, bool by_ring, uint8_t op, const char *id, size_t id_len,
                      uint64_t hash, const void *data, size_t len, unsigned core, uint64_t ref);
void ch__ho_deliver(ch_reactor *r, ch_proc *p, uint8_t op, const void *data, size_t len,
                    unsigned core, uint64_t ref);
ch_proc **ch__ho_procs_in(ch_ho *h, uint8_t state, uint64_t node, size_t max, size_t *n);
/* A lane frame for this core, in its block (m->ptr, freed here), len bytes after the
 * block's CH_MIG_IN_OFF. */
void ch__ho_on_in(ch_ho *h, const ch_mig_msg *m, size_t len);

/* ho_lane.c */
/* Sends one of s's frames (DATA or QUERY; block is consumed) the way its lane takes. */
void ch__ho_send_frame(ch_ho *h, ho_sent *s, uint8_t type, uint8_t *block, size_t len);
/* Sends a confirmation to (node, core): on the data lane when it is up. */
void ch__ho_send_ack(ch_ho *h, uint64_t node, uint16_t core, ch_wbuf *w);
void ch__ho_on_lanes(ch_ho *h, const ch_mig_msg *m);

/* ho_source.c */
int ch__ho_enqueue(ch_ho *h, uint64_t hash, const char *id, uint8_t len);
void ch__ho_fail_hook(ch_ho *h, ch_proc *p, uint64_t node, int status);
void ch__ho_forward(ch_ho *h, ch_proc *p, uint8_t op, const void *data, size_t len, unsigned core,
                    uint64_t ref);
int ch__ho_transmit(ch_ho *h, ho_sent *s);
int ch__ho_put_end(ch_ho *h, uint64_t node, uint16_t core, const char *id, size_t len);
void ch__ho_flush_all(ch_ho *h);
void ch__ho_sent_free(ch_ho *h, ho_sent *s);

/* ho_settle.c */
/* link: the 16 bytes of link totals a received frame carries (ch_ho_in_block). */
void ch__ho_on_ack(ch_ho *h, uint64_t node, const uint8_t *link, const uint8_t *p, size_t len);
void ch__ho_send_query(ch_ho *h, ho_sent *s);
void ch__ho_retire(ch_ho *h, ch_proc *p);
void ch__ho_source_gone(ch_ho *h, uint64_t node);

/* ho_target.c */
/* A DATA frame f of len bytes, inside `block` at CH_MIG_IN_OFF, or borrowed (block NULL:
 * a lane's receive buffer, decoded in place and copied only to be kept). True when the
 * block was kept (an early frame), else the caller frees it. */
bool ch__ho_on_data(ch_ho *h, uint64_t node, const uint8_t *f, size_t len, uint8_t *block);
/* Frees the early frames of every lane from node (or of all lanes: node 0). */
void ch__ho_early_drop(ch_ho *h, uint64_t node);
void ch__ho_on_query(ch_ho *h, uint64_t node, const uint8_t *p, size_t len);
void ch__ho_ackwait_step(ch_ho *h, ho_ackwait *aw);
void ch__ho_end_await(ch_ho *h, ch_proc *p);

/* ho_held.c */
bool ch__ho_hold(ch_ho *h, ch_rec *rec, unsigned core, uint64_t ref);
bool ch__ho_hold_msg(ch_ho *h, uint64_t hash, const char *id, size_t id_len, uint8_t op,
                     const void *data, size_t len, unsigned core, uint64_t ref);
bool ch__ho_hold_late(ch_ho *h, ch_rec *rec);
void ch__ho_release_id(ch_ho *h, uint64_t hash, const char *id, size_t len, bool by_ring);
void ch__ho_release_held(ch_ho *h, int which);
void ch__ho_held_free(ch_ho *h);

/* ho_round.c */
void ch__ho_on_ring(ch_ho *h, const ch_mig_msg *m, ch_rec *rec);
void ch__ho_on_unhold(ch_ho *h, uint64_t rh);
void ch__ho_plan(ch_ho *h);
void ch__ho_check_sealed(ch_ho *h);
void ch__ho_try_done(ch_ho *h);
bool ch__ho_kept_back(const ch_ho *h, const ch_rec *rec, const ch_proc *p);
void ch__ho_arm_tick(ch_ho *h);

#endif
