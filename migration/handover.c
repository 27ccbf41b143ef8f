/*
 * migration/handover.c - the migration engine of one core (protocol in handover.h).
 *
 * Source side: a queue of ids to move (planned on each ring), lanes with an open batch
 * each, frames sent and kept until confirmed, ids whose END record is still owed.
 * Target side: a codec receiver, messages held per id, processes awaiting their END.
 *
 * Why a frozen process stays in the process table: messages that reach it must find it to
 * be forwarded in order, and if its target fails it simply thaws, state intact. Why the
 * raw batch is kept until confirmed: it names every process of the frame (to terminate on
 * confirmation, or to thaw on failure) and holds the forwarded messages a dead target took
 * with it, which are replayed here in order.
 */
#include "migration/handover.h"

#include "net/cluster/coord.h"
#include "net/cluster/hashring.h"
#include "core/log.h"
#include "core/node.h"
#include "core/supervisor.h"
#include "migration/hbatch.h"
#include "migration/codec.h"
#include "migration/le.h"
#include "net/frame.h"
#include "net/wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

enum { MP_FROZEN = 1, MP_AWAIT_END = 2 };
enum { ACK_CONFIRM = 0, ACK_RESOLVE = 1, ACK_BADFRAME = 2 };

#define TICK_MS    100u
#define TURN_PROCS 512u /* processes frozen per turn at most: the core keeps serving */

struct ch_mig_proc {
    uint8_t state;
    bool ended;      /* source: the END record is written (or owed no more) */
    bool terminated; /* source, ColdSwap: terminate already ran */
    bool settled;    /* source: the target has it; the old instance goes once ended */
    uint16_t core;   /* FROZEN: target core; AWAIT_END: source core */
    uint64_t node;   /* FROZEN: target node; AWAIT_END: source node */
    uint64_t t0;     /* FROZEN: when it froze */
    struct ackwait *aw;
};

/* A target-side frame whose confirmation waits for its processes' END records. */
typedef struct ackwait {
    uint64_t node;
    uint16_t src_core;
    uint32_t seq;
    uint32_t pending;
    ch_wbuf fails; /* str8 id, i32 status */
    uint32_t nfails;
} ackwait;

typedef struct lane {
    uint64_t node;
    uint16_t core;
    uint32_t seq; /* frames numbered per lane from 1: the target applies them in order */
    bool fresh;   /* its next frame is its first since it (re)started (CH_MIG_LANE_FIRST) */
    ch_hbatch b;
} lane;

typedef struct sent {
    struct sent *next;
    uint64_t node;
    uint16_t core;
    uint32_t seq;
    uint8_t *raw;
    size_t raw_len;
    uint64_t sent_ns;
    bool first; /* its lane's first frame since the lane (re)started */
    bool queried;
    bool spare_ok; /* raw may serve as another batch's buffer */
} sent;

/* Frees a settled frame, keeping its buffer for a next batch (no page faults per frame). */
static void sent_free(struct ch_ho *h, sent *s);

typedef struct held_msg {
    struct held_msg *next;
    uint8_t op; /* CH_OP_CAST or CH_OP_CALL */
    uint16_t core;
    uint64_t ref;
    uint32_t len;
    uint8_t data[];
} held_msg;

typedef struct held_q {
    struct held_q *next; /* bucket chain */
    uint64_t hash;
    uint64_t first_ns;
    held_msg *head, *tail;
    bool late; /* kept back until the round seals (kept_back), apart from the others */
    uint8_t id_len;
    char id[];
} held_q;

/* A growable byte array of packed entries read from `pos`. */
typedef struct bytes {
    uint8_t *p;
    size_t len, cap, pos;
} bytes_t;

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
    bytes_t queue;   /* u64 hash | u8 len | id */
    bytes_t unended; /* u64 node | u16 core | u8 len | id */
    lane *lanes;
    size_t nlanes;
    sent *sent_head, *sent_tail;
    size_t inflight;
    ch_codec *codec;
    uint64_t frozen, queued;
    struct link { /* per target: the link totals last fed to the codec */
        uint64_t node, bytes, ns;
    } links[8];
    unsigned nlinks;
    uint8_t *spare[8]; /* batch buffers of `capacity` bytes back from confirmed frames */
    unsigned nspare;
    /* target */
    ch_codec_rx *rx;
    held_q **held;
    size_t hcap, hcount;
    uint64_t await_end;
    struct seen { /* per source lane: the last frame applied (frames arrive in order) */
        uint64_t node;
        uint32_t core, seq;
    } * seen;
    size_t nseen;
    bool tick_armed;
    /* faults injected by tests (CH_FAULT) */
    bool f_no_confirm;
    uint32_t f_corrupt, f_stall, frames_out, frames_in;
} ch_ho;

static void count(_Atomic uint64_t *c, int64_t d)
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
    atomic_store_explicit(c, v + (uint64_t)d, memory_order_relaxed);
}

static size_t batch_limit(void)
{
    return (CH_FRAME_MAX - 4096) & ~(size_t)(CH_HBATCH_ALIGN - 1);
}

/* ---- small containers ---------------------------------------------------------------- */

static int bytes_put(bytes_t *b, const void *a, size_t alen, const void *c, size_t clen)
{
    if (b->len + alen + clen > b->cap) {
        if (b->pos) { /* compact first: the queue is read from the front */
            memmove(b->p, b->p + b->pos, b->len - b->pos);
            b->len -= b->pos;
            b->pos = 0;
        }
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + alen + clen)
            cap *= 2;
        if (cap != b->cap) {
            uint8_t *p = realloc(b->p, cap);
            if (!p) return -ENOMEM;
            b->p = p;
            b->cap = cap;
        }
    }
    memcpy(b->p + b->len, a, alen);
    if (clen) memcpy(b->p + b->len + alen, c, clen);
    b->len += alen + clen;
    return 0;
}

static void bytes_clear(bytes_t *b)
{
    b->len = b->pos = 0;
}

static bool bytes_empty(const bytes_t *b)
{
    return b->pos >= b->len;
}

/* ---- talking to the coordinator and the other cores ----------------------------------- */

static void post_mig(ch_reactor *r, unsigned dst, uint8_t op, uint64_t aux, uint64_t ref,
                     uint16_t src_core, const void *payload, size_t len)
{
    ch_rec h = {.op = CH_OP_MIG,
                .pad = op,
                .aux = aux,
                .ref = ref,
                .src_core = src_core,
                .len = (uint32_t)len};
    int rc = ch_reactor_post(r->node, dst, &h, NULL, payload, false);
    if (rc < 0) CH_ERROR("migration record to %u lost: %s", dst, ch_strerror(rc));
}

/* Hands a frame (heap block, ownership moves) to the coordinator for node. */
static void send_block(ch_reactor *r, uint64_t node, uint8_t type, uint8_t *block, size_t len)
{
    uint64_t l = len;
    post_mig(r, r->node->cores, CH_MIG_OUT, node, (uint64_t)(uintptr_t)block, type, &l, 8);
}

static void send_wbuf(ch_reactor *r, uint64_t node, uint8_t type, ch_wbuf *w)
{
    if (w->err) {
        CH_ERROR("migration frame not encoded: %s", ch_strerror(w->err));
        return;
    }
    uint8_t *block = malloc(w->len ? w->len : 1);
    if (!block) {
        CH_ERROR("no memory for a migration frame");
        return;
    }
    memcpy(block, w->data, w->len);
    send_block(r, node, type, block, w->len);
}

static const ch_mig_member *member(const ch_ho *h, uint64_t id)
{
    for (size_t i = 0; i < h->nmembers; i++)
        if (h->members[i].id == id) return &h->members[i];
    return NULL;
}

static uint64_t owner_of(const ch_ho *h, uint64_t hash)
{
    return h->ring ? ch_owner(h->r->node, h->ring, hash) : h->r->node->id;
}

/* ---- metrics ------------------------------------------------------------------------- */

static void note_pause(ch_ho *h, uint64_t t0)
{
    uint64_t us = (ch_now_ns() - t0) / 1000;
    unsigned b = 0;
    while (us > 1 && b < CH_PAUSE_BUCKETS - 1) {
        us >>= 1;
        b++;
    }
    count(&h->r->stats.pause_us[b], 1);
}

static void fail_hook(ch_ho *h, ch_proc *p, uint64_t node, int status)
{
    count(&h->r->stats.migration_failures, 1);
    ch_hooks *hk = &h->r->node->hooks;
    if (!ch_hooks_any(hk, CH_HOOK_MIGRATION_FAILED)) return;
    ch_hook_event ev = {.point = CH_HOOK_MIGRATION_FAILED,
                        .id = ch_spec_id(p->spec),
                        .id_len = p->spec->id_len,
                        .core = h->r->core,
                        .node = node,
                        .status = status};
    ch_hooks_run(hk, &ev);
}

static void update_gauge(ch_ho *h)
{
    atomic_store_explicit(&h->r->stats.migrating, h->frozen + h->queued, memory_order_relaxed);
}

/* Queues one id to move (u64 hash | u8 len | id). */
static int enqueue(ch_ho *h, uint64_t hash, const char *id, uint8_t len)
{
    uint8_t hdr[9];
    ch_le_put64(hdr, hash);
    hdr[8] = len;
    int rc = bytes_put(&h->queue, hdr, 9, id, len);
    if (rc == 0) h->queued++;
    return rc;
}

/* ---- holding messages on the target ---------------------------------------------------- */

static held_q **held_slot_of(ch_ho *h, uint64_t hash, const char *id, size_t len, bool late)
{
    held_q **at = &h->held[hash & (h->hcap - 1)];
    while (*at && !((*at)->hash == hash && (*at)->late == late && (*at)->id_len == len &&
                    !memcmp((*at)->id, id, len)))
        at = &(*at)->next;
    return at;
}

static held_q **held_slot(ch_ho *h, uint64_t hash, const char *id, size_t len)
{
    return held_slot_of(h, hash, id, len, false);
}

static int held_grow(ch_ho *h)
{
    size_t cap = h->hcap ? h->hcap * 2 : 256;
    held_q **tab = calloc(cap, sizeof(*tab));
    if (!tab) return -ENOMEM;
    for (size_t i = 0; i < h->hcap; i++) {
        for (held_q *q = h->held[i], *next; q; q = next) {
            next = q->next;
            q->next = tab[q->hash & (cap - 1)];
            tab[q->hash & (cap - 1)] = q;
        }
    }
    free(h->held);
    h->held = tab;
    h->hcap = cap;
    return 0;
}

static void arm_tick(ch_ho *h);

static bool hold_in(ch_ho *h, bool late, uint64_t hash, const char *id, size_t id_len, uint8_t op,
                    const void *data, size_t len, unsigned core, uint64_t ref)
{
    if (h->hcount >= h->hcap / 2 && held_grow(h) < 0) return false;
    held_q **at = held_slot_of(h, hash, id, id_len, late);
    held_q *q = *at;
    if (!q) {
        if (!(q = calloc(1, sizeof(*q) + id_len))) return false;
        q->hash = hash;
        q->late = late;
        q->id_len = (uint8_t)id_len;
        memcpy(q->id, id, id_len);
        q->first_ns = ch_now_ns();
        *at = q;
        h->hcount++;
    }
    held_msg *m = malloc(sizeof(*m) + len);
    if (!m) return false; /* an empty queue stays: harmless, released with the others */
    *m = (held_msg){.op = op == CH_OP_CAST ? CH_OP_CAST : CH_OP_CALL,
                    .core = (uint16_t)core,
                    .ref = ref,
                    .len = (uint32_t)len};
    if (len) memcpy(m->data, data, len);
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    count(&h->r->stats.held_messages, 1);
    arm_tick(h);
    return true;
}

static bool hold_msg(ch_ho *h, uint64_t hash, const char *id, size_t id_len, uint8_t op,
                     const void *data, size_t len, unsigned core, uint64_t ref)
{
    return hold_in(h, false, hash, id, id_len, op, data, len, core, ref);
}

static bool hold_late(ch_ho *h, ch_rec *rec)
{
    return hold_in(h, true, rec->aux, ch_rec_id(rec), rec->id_len, rec->op, ch_rec_payload(rec),
                   rec->len, 0, 0);
}

static bool hold(ch_ho *h, ch_rec *rec, unsigned core, uint64_t ref)
{
    return hold_msg(h, rec->aux, ch_rec_id(rec), rec->id_len, rec->op, ch_rec_payload(rec),
                    rec->len, core, ref);
}

/* Sends a message on through the coordinator, routed by the registry row (final), or by
 * the ring (by_ring: the row may lag, e.g. right after a confirmed move). */
static void route_via(ch_reactor *r, bool by_ring, uint8_t op, const char *id, size_t id_len,
                      uint64_t hash, const void *data, size_t len, unsigned core, uint64_t ref)
{
    ch_rec h = {.op = op,
                .id_len = (uint8_t)id_len,
                .flags = by_ring ? 0 : CH_REC_ROW,
                .len = (uint32_t)len,
                .src_core = (uint16_t)core,
                .ref = ref,
                .aux = hash};
    ch_reactor_post(r->node, r->node->cores, &h, id, data, false);
}

static void deliver(ch_reactor *r, ch_proc *p, uint8_t op, const void *data, size_t len,
                    unsigned core, uint64_t ref)
{
    ch_msg m = {.kind = op == CH_OP_CAST ? CH_MSG_CAST : CH_MSG_CALL, .data = data, .len = len};
    ch_sup_deliver(r, p, &m, core, ref);
}

static void forward(ch_ho *h, ch_proc *p, uint8_t op, const void *data, size_t len, unsigned core,
                    uint64_t ref);

/* Runs (or routes on) what was held for one id, in arrival order. */
static void release_q(ch_ho *h, held_q *q, bool by_ring)
{
    ch_reactor *r = h->r;
    held_msg *m = q->head;
    q->head = q->tail = NULL;
    while (m) {
        held_msg *next = m->next;
        ch_proc *p = r->shut ? NULL : ch_ptable_find(&r->procs, q->hash, q->id, q->id_len);
        if (p && p->mig && p->mig->state == MP_FROZEN)
            forward(h, p, m->op, m->data, m->len, m->core, m->ref);
        else if (p)
            deliver(r, p, m->op, m->data, m->len, m->core, m->ref);
        else if (!r->shut)
            route_via(r, by_ring, m->op, q->id, q->id_len, q->hash, m->data, m->len, m->core,
                      m->ref);
        free(m);
        m = next;
    }
}

/* A process's id, copied: for what runs after the process may be gone. */
typedef struct idref {
    uint64_t hash;
    uint8_t len;
    char id[CH_ID_MAX];
} idref;

static idref id_of(const ch_proc *p)
{
    idref r = {.hash = p->hash, .len = p->spec->id_len};
    memcpy(r.id, ch_spec_id(p->spec), r.len);
    return r;
}

static void release_id(ch_ho *h, uint64_t hash, const char *id, size_t len, bool by_ring)
{
    if (!h->hcap) return;
    held_q **at = held_slot(h, hash, id, len);
    held_q *q = *at;
    if (!q) return;
    *at = q->next;
    h->hcount--;
    release_q(h, q, by_ring);
    free(q);
}

enum { REL_OLD, REL_ALL, REL_PRESENT };

/* Whether release_held leaves q where it is. */

static bool keep_held(const ch_ho *h, const held_q *q, int which, uint64_t now)
{
    uint64_t limit = (uint64_t)h->cfg->child_timeout_ms * 1000000;
    bool young = now - q->first_ns < limit; /* first_ns is never later than now */
    if (q->late) return which == REL_OLD && !h->sealed && young; /* sealed: the older are here */
    ch_proc *p = ch_ptable_find(&h->r->procs, q->hash, q->id, q->id_len);
    if (p && p->mig) return true; /* released by the outcome of its move */
    return which == REL_PRESENT || (which == REL_OLD && young);
}

/* Releases every held queue (REL_ALL: UNHOLD), those older than the child timeout
 * (REL_OLD), or those kept back (REL_PRESENT: sealed); those of a process whose move is
 * still under way here wait for its outcome, unless kept back. The queues are taken out first: a
 * message released now may be held again, in a new queue. */
static void release_held(ch_ho *h, int which)
{
    bool all = which != REL_OLD;
    uint64_t now = ch_now_ns();
    held_q *out = NULL;
    for (size_t i = 0; i < h->hcap; i++) {
        held_q **at = &h->held[i];
        while (*at) {
            held_q *q = *at;
            if (keep_held(h, q, which, now)) {
                at = &q->next;
                continue;
            }
            if (!all)
                CH_WARN("messages for %.*s held %u ms without the process: sent on", q->id_len,
                        q->id, h->cfg->child_timeout_ms);
            *at = q->next;
            h->hcount--;
            q->next = out;
            out = q;
        }
    }
    while (out) {
        held_q *q = out;
        out = q->next;
        release_q(h, q, false);
        free(q);
    }
}

/* ---- the source: lanes and frames ----------------------------------------------------- */

static lane *get_lane(ch_ho *h, uint64_t node, uint16_t core)
{
    for (size_t i = 0; i < h->nlanes; i++)
        if (h->lanes[i].node == node && h->lanes[i].core == core) return &h->lanes[i];
    lane *v = realloc(h->lanes, (h->nlanes + 1) * sizeof(*v));
    if (!v) return NULL;
    h->lanes = v;
    lane *l = &v[h->nlanes];
    if (ch_hbatch_init(&l->b, h->cfg->batch_bytes, batch_limit()) < 0) return NULL;
    l->node = node;
    l->core = core;
    l->seq = 0;
    l->fresh = true;
    h->nlanes++;
    return l;
}

/* One frame for the wire: lane header, codec header, payload (a heap block). */
static uint8_t *encode(ch_ho *h, const sent *s, const uint8_t *raw, size_t raw_len, size_t *flen)
{
    ch_codec_out out;
    if (ch_codec_encode(h->codec, raw, raw_len, &out) < 0) return NULL;
    *flen = CH_MIG_LANE_HDR + CH_CODEC_HDR + out.payload_len;
    uint8_t *block = malloc(*flen);
    if (!block) return NULL;
    ch_le_put16(block, (uint16_t)h->r->core);
    ch_le_put16(block + 2, (uint16_t)(s->core | (s->first ? CH_MIG_LANE_FIRST : 0)));
    ch_le_put32(block + 4, s->seq);
    ch_le_put64(block + 8, h->rh);
    memcpy(block + CH_MIG_LANE_HDR, out.hdr, CH_CODEC_HDR);
    memcpy(block + CH_MIG_LANE_HDR + CH_CODEC_HDR, out.payload, out.payload_len);
    ch_counters *st = &h->r->stats;
    count(&st->handover_bytes_raw, (int64_t)raw_len);
    count(&st->handover_bytes_wire, (int64_t)out.payload_len);
    count(out.codec == CH_CODEC_ZSTD ? &st->handover_frames_zstd : &st->handover_frames_raw, 1);
    if (h->f_corrupt && ++h->frames_out == h->f_corrupt) { /* fault injection (tests) */
        block[*flen - 1 - out.payload_len / 2] ^= 0x5a;
        CH_WARN("fault injected: frame %u to %016llx corrupted", s->seq,
                (unsigned long long)s->node);
    }
    return block;
}

static int transmit(ch_ho *h, sent *s)
{
    size_t flen;
    uint8_t *block = encode(h, s, s->raw, s->raw_len, &flen);
    if (!block) return -ENOMEM;
    s->sent_ns = ch_now_ns();
    CH_DEBUG("handover frame %u to %016llx core %u: %zu bytes", s->seq, (unsigned long long)s->node,
             s->core, flen);
    send_block(h->r, s->node, CH_F_MIG_DATA, block, flen);
    return 0;
}

static int flush_lane(ch_ho *h, lane *l)
{
    if (!l->b.count) return 0;
    sent *s = calloc(1, sizeof(*s));
    if (!s) return -ENOMEM;
    *s = (sent){.node = l->node, .core = l->core, .seq = ++l->seq, .first = l->fresh};
    l->fresh = false;
    bool oversize = l->b.cap != l->b.capacity; /* its buffer is not a spare's size */
    uint8_t *fresh = h->nspare ? h->spare[--h->nspare] : NULL;
    if (!(s->raw = ch_hbatch_take(&l->b, fresh, &s->raw_len))) {
        if (fresh) h->spare[h->nspare++] = fresh;
        free(s);
        return -ENOMEM;
    }
    s->spare_ok = !oversize;
    if (transmit(h, s) < 0) CH_WARN("frame %u not sent yet (no memory): retried", s->seq);
    if (h->sent_tail)
        h->sent_tail->next = s;
    else
        h->sent_head = s;
    h->sent_tail = s;
    h->inflight += s->raw_len;
    arm_tick(h);
    return 0;
}

static void flush_all(ch_ho *h)
{
    for (size_t i = 0; i < h->nlanes; i++)
        flush_lane(h, &h->lanes[i]);
}

/* A record that did not fit (-ENOSPC) goes in after the lane's batch was sent. */
static bool retry_after_flush(ch_ho *h, lane *l, int rc)
{
    return rc == -ENOSPC && flush_lane(h, l) == 0;
}

static int put_end(ch_ho *h, uint64_t node, uint16_t core, const char *id, size_t len)
{
    lane *l = get_lane(h, node, core);
    if (!l) return -ENOMEM;
    int rc = ch_hbatch_put_end(&l->b, id, len);
    if (retry_after_flush(h, l, rc)) rc = ch_hbatch_put_end(&l->b, id, len);
    if (rc == 0 && ch_hbatch_full(&l->b)) flush_lane(h, l);
    return rc;
}

static void sent_free(ch_ho *h, sent *s)
{
    if (s->spare_ok && h->nspare < sizeof(h->spare) / sizeof(h->spare[0]))
        h->spare[h->nspare++] = s->raw;
    else
        free(s->raw);
    free(s);
}

/* ---- the source: freezing and forwarding ------------------------------------------------ */

static bool hot_state(const ch_ho *h)
{
    return h->cfg->strategy == CH_MIGRATE_HOTSWAP && h->cfg->handover;
}

static int default_prepare(ch_proc *p, ch_buf *out)
{
    return p->state_len ? ch_buf_append(out, p->state, p->state_len) : 0;
}

static int default_alter(ch_proc *p, const void *bytes, size_t len)
{
    if (!len) {
        ch_proc_state_resize(p, 0);
        return 0;
    }
    void *s = ch_proc_state_resize(p, len);
    if (!s) return -ENOMEM;
    memcpy(s, bytes, len);
    return 0;
}

/* Writes p's PROC record. -ENOSPC: the batch must go first; other < 0: p cannot move. */
static int put_proc(ch_ho *h, lane *l, ch_proc *p)
{
    const ch_spec *sp = p->spec;
    ch_hbatch_proc hp = {.id = ch_spec_id(sp),
                         .id_len = sp->id_len,
                         .type = sp->type->name,
                         .type_len = strlen(sp->type->name),
                         .tag = ch_spec_tag(sp),
                         .tag_len = sp->tag_len,
                         .arg = ch_spec_arg(sp),
                         .arg_len = sp->arg_len,
                         .meta = ch_spec_meta(sp),
                         .meta_len = sp->meta_len,
                         .shutdown_ms = sp->shutdown_ms,
                         .incarnation = p->incarnation,
                         .restart = sp->restart,
                         .flags = hot_state(h) ? CH_HPROC_STATE : 0};
    if (!hot_state(h)) return ch_hbatch_put_proc(&l->b, &hp, NULL, 0);
    ch_buf view;
    int rc = ch_hbatch_proc_begin(&l->b, &hp, p->state_len, &view);
    if (rc < 0) return rc;
    const ch_process_type *t = &sp->type->cb;
    rc = t->prepare_handover ? t->prepare_handover(p, &view) : default_prepare(p, &view);
    if (rc < 0) {
        ch_hbatch_proc_abort(&l->b);
        return rc == -ENOSPC ? -EIO : rc; /* the callback's own error, never "flush" */
    }
    return ch_hbatch_proc_end(&l->b);
}

static void freeze(ch_ho *h, ch_proc *p, ch_mig_proc *m, uint64_t node, uint16_t core)
{
    *m = (ch_mig_proc){.state = MP_FROZEN, .core = core, .node = node, .t0 = ch_now_ns()};
    p->mig = m;
    h->frozen++;
    ch_sup_freeze(h->r, p);
    if (h->cfg->strategy == CH_MIGRATE_COLDSWAP) {
        ch_sup_terminate(h->r, p, CH_REASON_MIGRATED);
        m->terminated = true;
    }
}

/* Moves the next queued process into its lane. 1: one moved, 0: skipped, < 0: stop. */
static int move_one(ch_ho *h)
{
    ch_reactor *r = h->r;
    const uint8_t *e = h->queue.p + h->queue.pos;
    uint64_t hash = ch_le_get64(e);
    size_t len = e[8];
    const char *id = (const char *)e + 9;
    ch_proc *p = r->shut ? NULL : ch_ptable_find(&r->procs, hash, id, len);
    uint64_t node = owner_of(h, hash);
    const ch_mig_member *mb = member(h, node);
    if (!p || p->mig || node == r->node->id || !mb || !mb->cores) {
        h->queue.pos += 9 + len;
        h->queued--;
        return 0;
    }
    uint16_t core = (uint16_t)(hash % mb->cores);
    lane *l = get_lane(h, node, core);
    ch_mig_proc *m = l ? malloc(sizeof(*m)) : NULL; /* first: a record out means frozen */
    if (!m) return -ENOMEM;
    /* The record is written before the freeze, but nothing runs in between. */
    int rc = put_proc(h, l, p);
    if (rc == -ENOSPC && (rc = flush_lane(h, l)) == 0) rc = put_proc(h, l, p);
    if (rc == -ENOMEM) { /* try again later */
        free(m);
        return rc;
    }
    h->queue.pos += 9 + len;
    h->queued--;
    if (rc < 0) {
        CH_WARN("%.*s cannot move to %016llx: %s; it stays here", (int)len, id,
                (unsigned long long)node, ch_strerror(rc));
        fail_hook(h, p, node, rc);
        free(m);
        return 0;
    }
    freeze(h, p, m, node, core);
    if (h->sealed) { /* no sender can still reach it here: its stream ends at once */
        p->mig->ended = true;
        put_end(h, node, core, id, len);
    } else {
        uint8_t hdr[11];
        ch_le_put64(hdr, node);
        ch_le_put16(hdr + 8, core);
        hdr[10] = (uint8_t)len;
        if (bytes_put(&h->unended, hdr, 11, id, len) < 0) {
            p->mig->ended = true; /* no memory to remember it: end its stream now */
            put_end(h, node, core, id, len);
        }
    }
    if (ch_hbatch_full(&l->b)) flush_lane(h, l);
    return 1;
}

static void forward(ch_ho *h, ch_proc *p, uint8_t op, const void *data, size_t len, unsigned core,
                    uint64_t ref)
{
    ch_reactor *r = h->r;
    ch_mig_proc *m = p->mig;
    const char *id = ch_spec_id(p->spec);
    if (m->ended) {
        /* Its stream is closed: a message still reaching it here (routed by an old ring,
         * or back from a target that does not have it yet) waits for the outcome of the
         * move, which releases it: to the thawed process here, or on to its new place. */
        if (hold_msg(h, p->hash, id, p->spec->id_len, op, data, len, core, ref)) return;
        route_via(r, owner_of(h, p->hash) != r->node->id, op, id, p->spec->id_len, p->hash, data,
                  len, core, ref);
        return;
    }
    lane *l = get_lane(h, m->node, m->core);
    ch_hbatch_msg hm = {.id = id,
                        .id_len = p->spec->id_len,
                        .kind = op == CH_OP_CAST ? CH_MSG_CAST : CH_MSG_CALL,
                        .reply_node = op == CH_OP_CAST ? 0 : r->node->id,
                        .reply_core = op == CH_OP_CAST ? 0 : (uint16_t)core,
                        .reply_ref = op == CH_OP_CAST ? 0 : ref};
    int rc = l ? ch_hbatch_put_msg(&l->b, &hm, data, len) : -ENOMEM;
    if (l && retry_after_flush(h, l, rc)) rc = ch_hbatch_put_msg(&l->b, &hm, data, len);
    if (rc < 0) {
        CH_ERROR("message for migrating %.*s not forwarded: %s", p->spec->id_len, id,
                 ch_strerror(rc));
        if (op != CH_OP_CAST) ch_reactor_reply(r, core, ref, rc, NULL, 0);
        return;
    }
    count(&r->stats.forwarded_messages, 1);
    if (ch_hbatch_full(&l->b)) flush_lane(h, l);
}

/* ---- the source: sealing, confirmations, failures --------------------------------------- */

static void retire(ch_ho *h, ch_proc *p);

static void check_sealed(ch_ho *h)
{
    if (h->sealed || !h->rh || h->sealed_rh != h->rh || h->imark_rh != h->rh) {
        if (!h->sealed)
            CH_DEBUG("core %u: round %016llx not sealed (sealed %016llx, imark %016llx)",
                     h->r->core, (unsigned long long)h->rh, (unsigned long long)h->sealed_rh,
                     (unsigned long long)h->imark_rh);
        return;
    }
    for (unsigned c = 0; c < h->r->node->cores; c++)
        if (h->mark_rh[c] != h->rh) return;
    CH_DEBUG("core %u: round %016llx sealed: %zu frozen, %zu queued", h->r->core,
             (unsigned long long)h->rh, (size_t)h->frozen, (size_t)h->queued);
    h->sealed = true;
    /* Every sender routes by the new ring now: the streams of frozen processes end. */
    for (size_t pos = h->unended.pos; pos < h->unended.len;) {
        const uint8_t *e = h->unended.p + pos;
        size_t len = e[10];
        const char *id = (const char *)e + 11;
        ch_proc *p = ch_ptable_find(&h->r->procs, ch_id_hash(id, len), id, len);
        put_end(h, ch_le_get64(e), ch_le_get16(e + 8), id, len);
        if (p && p->mig && p->mig->state == MP_FROZEN) {
            p->mig->ended = true;
            if (p->mig->settled) retire(h, p); /* confirmed before its stream ended */
        }
        pos += 11 + len;
    }
    bytes_clear(&h->unended);
    flush_all(h);
    if (h->hcount) release_held(h, REL_PRESENT); /* what kept_back held */
}

/* DONE (then END to every peer) once every record is sent and every frame confirmed: the
 * peers keep copies of their casts to this round's targets until then (handover.h). */
static void try_done(ch_ho *h)
{
    if (!h->sealed || h->done_sent || !bytes_empty(&h->queue)) return;
    flush_all(h);
    if (h->sent_head) return;
    h->done_sent = true;
    post_mig(h->r, h->r->node->cores, CH_MIG_DONE, h->rh, 0, 0, NULL, 0);
}

/* The old instance keeps serving here: the move failed. What waited for the outcome runs
 * here, unless `later` collects the id: then the caller releases it once the messages
 * forwarded before it (a dead target's frames, replayed) ran. */
static void thaw_to(ch_ho *h, ch_proc *p, bytes_t *later)
{
    ch_mig_proc *m = p->mig;
    bool terminated = m->terminated;
    free(m);
    p->mig = NULL;
    h->frozen--;
    idref k = id_of(p);
    if (terminated) ch_sup_reinit(h->r, p); /* ColdSwap: fresh from its spec (or gone) */
    uint8_t hdr[9];
    ch_le_put64(hdr, k.hash);
    hdr[8] = k.len;
    if (!later || bytes_put(later, hdr, 9, k.id, k.len) < 0)
        release_id(h, k.hash, k.id, k.len, false);
}

static void thaw(ch_ho *h, ch_proc *p)
{
    thaw_to(h, p, NULL);
}

static void run_migrated_hook(ch_ho *h, uint64_t node, const char **ids, const size_t *lens,
                              size_t n)
{
    ch_hooks *hk = &h->r->node->hooks;
    if (!n || !ch_hooks_any(hk, CH_HOOK_CHILDREN_MIGRATED)) return;
    ch_hook_event ev = {.point = CH_HOOK_CHILDREN_MIGRATED,
                        .node = node,
                        .core = h->r->core,
                        .ids = ids,
                        .id_lens = lens,
                        .count = n};
    ch_hooks_run(hk, &ev);
}

/* The status a confirmation gives id: 0 unless it is in the refusal list. */
static int status_of(ch_rbuf list, uint32_t n, const char *id, size_t len)
{
    for (uint32_t i = 0; i < n; i++) {
        ch_span s = ch_rbuf_get_str8(&list);
        int32_t st = (int32_t)ch_rbuf_get_u32(&list);
        if (!ch_rbuf_ok(&list)) break;
        if (s.len == len && memcmp(s.p, id, len) == 0) return st;
    }
    return 0;
}

/* The old instance of a process its target has: it goes, and what waited for the move's
 * outcome follows it to its new place. */
static void retire(ch_ho *h, ch_proc *p)
{
    idref k = id_of(p);
    ch_sup_migrated(h->r, p, p->mig->terminated); /* frozen-- in ch_ho_proc_gone */
    release_id(h, k.hash, k.id, k.len, true);
}

/* One process of a confirmed (or resolved) frame; true when it moved. */
static bool settle_proc(ch_ho *h, const sent *s, uint8_t kind, ch_proc *p, int st)
{
    ch_reactor *r = h->r;
    if (kind == ACK_RESOLVE) count(&r->stats.migration_failures, 1); /* not confirmed */
    if (st == 0 || st == CH_EALREADY) { /* the target has it: ours goes */
        bool moved = st == 0 && kind == ACK_CONFIRM;
        if (moved) {
            note_pause(h, p->mig->t0);
            count(&r->stats.migrated_out, 1);
        } else if (st) {
            fail_hook(h, p, s->node, st);
        }
        /* Until its stream ends, messages may still reach it here (from senders that did
         * not switch yet): it stays, frozen, to forward them behind it (design §3 step 5). */
        if (p->mig->ended)
            retire(h, p);
        else
            p->mig->settled = true;
        return moved;
    }
    CH_WARN("%.*s not taken by %016llx (%s): it stays here", p->spec->id_len, ch_spec_id(p->spec),
            (unsigned long long)s->node, ch_strerror(st));
    if (kind == ACK_CONFIRM) fail_hook(h, p, s->node, st); /* refused: it stays */
    thaw(h, p);
    /* Never arrived (a lost connection): it moves again. */
    if (kind == ACK_RESOLVE &&
        p == ch_ptable_find(&r->procs, p->hash, ch_spec_id(p->spec), p->spec->id_len))
        enqueue(h, p->hash, ch_spec_id(p->spec), p->spec->id_len);
    return false;
}

/* Settles every process of a confirmed (or resolved) frame. */
static void settle(ch_ho *h, sent *s, uint8_t kind, bool applied, ch_rbuf list, uint32_t n)
{
    ch_reactor *r = h->r;
    ch_hbatch_reader rd;
    ch_hbatch_rec rec;
    ch_hbatch_reader_init(&rd, s->raw, s->raw_len);
    /* The ids for children_migrated, only when someone listens (every record is >= 32 B). */
    bool hooked = ch_hooks_any(&r->node->hooks, CH_HOOK_CHILDREN_MIGRATED);
    const char **ids = hooked ? malloc(s->raw_len / 32 * sizeof(*ids) + 1) : NULL;
    size_t *lens = hooked ? malloc(s->raw_len / 32 * sizeof(*lens) + 1) : NULL, k = 0;
    while (ch_hbatch_read(&rd, &rec) == 1) {
        if (rec.kind != CH_HREC_PROC) continue;
        int st = status_of(list, n, rec.id, rec.id_len);
        ch_proc *p = ch_ptable_find(&r->procs, ch_id_hash(rec.id, rec.id_len), rec.id, rec.id_len);
        if (!p || !p->mig || p->mig->state != MP_FROZEN || p->mig->node != s->node) continue;
        if (settle_proc(h, s, kind, p, st) && ids && lens) {
            ids[k] = rec.id; /* points into s->raw, alive until the frame is freed */
            lens[k++] = rec.id_len;
        }
    }
    run_migrated_hook(h, s->node, ids, lens, k);
    free(ids);
    free(lens);
    if (kind != ACK_RESOLVE || applied) return;
    /* The target never saw this frame's forwarded messages: they run here, in order. */
    ch_hbatch_reader_init(&rd, s->raw, s->raw_len);
    while (ch_hbatch_read(&rd, &rec) == 1) {
        uint64_t hash = ch_id_hash(rec.id, rec.id_len);
        ch_proc *p = ch_ptable_find(&r->procs, hash, rec.id, rec.id_len);
        if (rec.kind != CH_HREC_MSG || !p || p->mig) continue;
        deliver(r, p, rec.msg.kind == CH_MSG_CAST ? CH_OP_CAST : CH_OP_CALL, rec.data, rec.len,
                rec.msg.reply_core, rec.msg.reply_ref);
    }
}

static sent *unlink_sent(ch_ho *h, uint64_t node, uint16_t core, uint32_t seq)
{
    sent *prev = NULL;
    for (sent *s = h->sent_head; s; prev = s, s = s->next) {
        if (s->node != node || s->core != core || s->seq != seq) continue;
        if (prev)
            prev->next = s->next;
        else
            h->sent_head = s->next;
        if (h->sent_tail == s) h->sent_tail = prev;
        h->inflight -= s->raw_len;
        return s;
    }
    return NULL;
}

/* auto compresses while the link is slower than the compressor: tell it the link's pace. */
static void link_feedback(ch_ho *h, uint64_t node, const uint8_t *block)
{
    uint64_t t[2];
    memcpy(t, block, sizeof(t));
    struct link *l = NULL;
    for (unsigned i = 0; i < h->nlinks && !l; i++)
        if (h->links[i].node == node) l = &h->links[i];
    if (!l) {
        l = &h->links[h->nlinks < 8 ? h->nlinks++ : 7];
        *l = (struct link){.node = node, .bytes = t[0], .ns = t[1]};
        return;
    }
    if (t[0] > l->bytes && t[1] > l->ns) ch_codec_feedback(h->codec, t[0] - l->bytes, t[1] - l->ns);
    if (t[0] >= l->bytes) { /* a new connection starts its totals over */
        l->bytes = t[0];
        l->ns = t[1];
    } else {
        *l = (struct link){.node = node, .bytes = t[0], .ns = t[1]};
    }
}

static void send_query(ch_ho *h, sent *s);

static void on_ack(ch_ho *h, uint64_t node, const uint8_t *block, const uint8_t *p, size_t len)
{
    link_feedback(h, node, block);
    ch_rbuf rb;
    ch_rbuf_init(&rb, p, len);
    ch_rbuf_get_u16(&rb); /* our core: the coordinator routed it here by it */
    uint8_t kind = ch_rbuf_get_u8(&rb);
    bool applied = ch_rbuf_get_u8(&rb);
    uint32_t seq = ch_rbuf_get_u32(&rb);
    uint16_t core = ch_rbuf_get_u16(&rb);
    ch_rbuf_get_u16(&rb);
    uint32_t n = ch_rbuf_get_u32(&rb);
    if (!ch_rbuf_ok(&rb)) return;
    CH_DEBUG("handover ack %u (%s%s) from %016llx core %u, %u entries", seq,
             kind == ACK_CONFIRM   ? "confirm"
             : kind == ACK_RESOLVE ? "resolve"
                                   : "bad frame",
             applied ? ", applied" : "", (unsigned long long)node, core, n);
    if (kind == ACK_BADFRAME) { /* go back: this frame and every later one of its lane */
        CH_WARN("frame %u to %016llx core %u refused as damaged: the lane sends again from it", seq,
                (unsigned long long)node, core);
        for (sent *s = h->sent_head; s; s = s->next)
            if (s->node == node && s->core == core && (int32_t)(s->seq - seq) >= 0) transmit(h, s);
        return;
    }
    sent *s = unlink_sent(h, node, core, seq);
    if (!s) return; /* settled already (a resolution crossed the confirmation) */
    /* The target applies a lane's frames in order: none after this one was applied either
     * (a lost connection took them all). Ask about them now, ahead of the frames that the
     * processes thawed below will fill: the target's answers move its lane past them. */
    if (kind == ACK_RESOLVE && !applied)
        for (sent *t = h->sent_head; t; t = t->next)
            if (t->node == node && t->core == core && (int32_t)(t->seq - seq) > 0) send_query(h, t);
    settle(h, s, kind, applied, rb, n);
    sent_free(h, s);
}

/* Replays one kept batch after its target is gone: processes thaw, messages run here. The
 * ids thawed go to `later`: what waited for them came after every forwarded message. */
static void replay(ch_ho *h, uint64_t node, const uint8_t *raw, size_t len, bytes_t *later)
{
    ch_reactor *r = h->r;
    ch_hbatch_reader rd;
    ch_hbatch_rec rec;
    ch_hbatch_reader_init(&rd, raw, len);
    while (ch_hbatch_read(&rd, &rec) == 1) {
        uint64_t hash = ch_id_hash(rec.id, rec.id_len);
        ch_proc *p = r->shut ? NULL : ch_ptable_find(&r->procs, hash, rec.id, rec.id_len);
        if (rec.kind == CH_HREC_PROC) {
            if (p && p->mig && p->mig->state == MP_FROZEN) {
                fail_hook(h, p, node, -EHOSTUNREACH); /* it did not move: it stays, then */
                thaw_to(h, p, later);                 /* moves again under the new ring */
            }
        } else if (rec.kind == CH_HREC_MSG) {
            uint8_t op = rec.msg.kind == CH_MSG_CAST ? CH_OP_CAST : CH_OP_CALL;
            if (p && !p->mig)
                deliver(r, p, op, rec.data, rec.len, rec.msg.reply_core, rec.msg.reply_ref);
            else if (!r->shut)
                route_via(r, false, op, rec.id, rec.id_len, hash, rec.data, rec.len,
                          rec.msg.reply_core, rec.msg.reply_ref);
        }
    }
}

static void plan(ch_ho *h);

/* The processes in migration state `state` (for or from `node`; 0: any), at most max of
 * them, in a malloc'd array (NULL and *n 0 when there are none or no memory). */
static ch_proc **procs_in(ch_ho *h, uint8_t state, uint64_t node, size_t max, size_t *n)
{
    ch_ptable *t = &h->r->procs;
    ch_proc **v = max ? malloc(max * sizeof(*v)) : NULL;
    *n = 0;
    for (size_t i = 0; v && i < t->cap && *n < max; i++) {
        ch_proc *p = t->slots[i].p;
        if (p && p->mig && p->mig->state == state && (!node || p->mig->node == node)) v[(*n)++] = p;
    }
    return v;
}

/* Processes the gone node had confirmed but whose streams had not ended (their frames are
 * settled, so no replay thaws them): their END can no longer go, and they waited for it
 * forever ("settled 1 ended 0", the hub never settled). They stay here with the state they
 * had when they froze, and move again under the new ring; the messages the node applied
 * after that died with it, so each counts as a crash restart. Should the node come back
 * with its copy, the two meet on the ring owner and one survives (coord_heal.c rule 4). */
static void thaw_confirmed(ch_ho *h, uint64_t node, bytes_t *later)
{
    size_t n;
    ch_proc **v = procs_in(h, MP_FROZEN, node, h->frozen, &n);
    for (size_t i = 0; i < n; i++) {
        fail_hook(h, v[i], node, -EHOSTUNREACH);
        thaw_to(h, v[i], later);
    }
    count(&h->r->stats.crash_restarts, (int64_t)n);
    free(v);
}

/* Runs what waited for each thawed id of `later` (u64 hash | u8 len | id), then frees it. */
static void release_later(ch_ho *h, bytes_t *later)
{
    for (size_t pos = later->pos; pos < later->len; pos += 9 + later->p[pos + 8])
        release_id(h, ch_le_get64(later->p + pos), (const char *)later->p + pos + 9,
                   later->p[pos + 8], false);
    free(later->p);
}

/* Everything sent to `node` and not confirmed comes back to life here, then moves anew. */
static void source_gone(ch_ho *h, uint64_t node)
{
    bytes_t later = {0};
    for (sent *next, *prev = NULL, *cur = h->sent_head; cur; cur = next) {
        next = cur->next;
        if (cur->node != node) {
            prev = cur;
            continue;
        }
        if (prev)
            prev->next = next;
        else
            h->sent_head = next;
        if (h->sent_tail == cur) h->sent_tail = prev;
        h->inflight -= cur->raw_len;
        replay(h, node, cur->raw, cur->raw_len, &later);
        free(cur->raw);
        free(cur);
    }
    for (size_t i = 0; i < h->nlanes; i++) {
        lane *l = &h->lanes[i];
        if (l->node != node) continue;
        replay(h, node, ch_hbatch_data(&l->b), ch_hbatch_len(&l->b), &later);
        ch_hbatch_free(&l->b);
        /* The lane starts again, numbering on: an ack of a frame taken back (late, from a
         * target that was not gone after all) then matches no frame sent later. */
        l->fresh = true;
        if (ch_hbatch_init(&l->b, h->cfg->batch_bytes, batch_limit()) < 0)
            h->lanes[i--] = h->lanes[--h->nlanes]; /* no memory: a new lane, from 1 */
    }
    thaw_confirmed(h, node, &later);
    release_later(h, &later);
    bytes_t kept = {0};
    for (size_t pos = h->unended.pos; pos < h->unended.len;) {
        const uint8_t *e = h->unended.p + pos;
        size_t n = 11 + e[10];
        if (ch_le_get64(e) != node) bytes_put(&kept, e, n, NULL, 0);
        pos += n;
    }
    free(h->unended.p);
    h->unended = kept;
    plan(h);
}

static struct seen *seen_of(ch_ho *h, uint64_t node, uint16_t core, bool add)
{
    for (size_t i = 0; i < h->nseen; i++)
        if (h->seen[i].node == node && h->seen[i].core == core) return &h->seen[i];
    struct seen *v = add ? realloc(h->seen, (h->nseen + 1) * sizeof(*v)) : NULL;
    if (!v) return NULL;
    h->seen = v;
    v[h->nseen] = (struct seen){.node = node, .core = core};
    return &v[h->nseen++];
}

/* ---- the target: installing --------------------------------------------------------- */

static void send_ack(ch_ho *h, uint64_t node, uint16_t src_core, uint8_t kind, uint32_t seq,
                     const ch_wbuf *list, uint32_t n)
{
    struct seen *sn = kind == ACK_RESOLVE ? seen_of(h, node, src_core, false) : NULL;
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u16(&w, src_core);
    ch_wbuf_put_u8(&w, kind);
    ch_wbuf_put_u8(&w, sn && (int32_t)(sn->seq - seq) >= 0); /* resolve: frame applied */
    ch_wbuf_put_u32(&w, seq);
    ch_wbuf_put_u16(&w, (uint16_t)h->r->core); /* the lane: (source core, this core) */
    ch_wbuf_put_u16(&w, 0);
    ch_wbuf_put_u32(&w, n);
    if (list && list->len) ch_wbuf_put_bytes(&w, list->data, list->len);
    send_wbuf(h->r, node, CH_F_MIG_ACK, &w);
    ch_wbuf_free(&w);
}

static void ackwait_step(ch_ho *h, ackwait *aw)
{
    if (--aw->pending) return;
    if (!h->f_no_confirm)
        send_ack(h, aw->node, aw->src_core, ACK_CONFIRM, aw->seq, &aw->fails, aw->nfails);
    ch_wbuf_free(&aw->fails);
    free(aw);
}

/* p's stream is complete: it runs what waited for it, and moves on if the ring says so. */
static void end_await(ch_ho *h, ch_proc *p)
{
    ch_mig_proc *m = p->mig;
    p->mig = NULL;
    h->await_end--;
    if (m->aw) ackwait_step(h, m->aw);
    free(m);
    idref k = id_of(p);
    release_id(h, k.hash, k.id, k.len, false);
    if (owner_of(h, k.hash) != h->r->node->id) enqueue(h, k.hash, k.id, k.len); /* moved on */
}

/* A live instance of the id runs here already, and another comes in: two live instances
 * met (a healed divergence partition, net/cluster/coord_heal.c rule 4). The one here, on the ring
 * owner, stays; the type may merge the other's state into it. CH_EALREADY tells the source
 * that the target has the process, so the other instance ends there. */
static int keep_over(ch_ho *h, ch_proc *keep, const ch_hbatch_rec *rec, uint64_t node)
{
    ch_reactor *r = h->r;
    const ch_process_type *cb = &keep->spec->type->cb;
    bool state = rec->proc.flags & CH_HPROC_STATE;
    count(&r->stats.conflicts, 1);
    if (cb->resolve_conflict) {
        int rc = cb->resolve_conflict(keep, state ? rec->data : NULL, state ? rec->len : 0);
        if (rc < 0)
            CH_WARN("%.*s: resolve_conflict failed: %s", keep->spec->id_len, ch_spec_id(keep->spec),
                    ch_strerror(rc));
    }
    ch_hooks *hk = &r->node->hooks;
    if (ch_hooks_any(hk, CH_HOOK_CONFLICT)) {
        ch_hook_event ev = {.point = CH_HOOK_CONFLICT,
                            .id = ch_spec_id(keep->spec),
                            .id_len = keep->spec->id_len,
                            .core = r->core,
                            .incarnation = keep->incarnation,
                            .node = node};
        ch_hooks_run(hk, &ev);
    }
    return CH_EALREADY;
}

static int install(ch_ho *h, const ch_hbatch_rec *rec, uint64_t node, uint16_t src_core,
                   ackwait *aw)
{
    ch_reactor *r = h->r;
    const ch_hbatch_proc *hp = &rec->proc;
    char tname[CH_TYPE_NAME_MAX + 1], tag[CH_TAG_MAX + 1];
    memcpy(tname, hp->type, hp->type_len);
    tname[hp->type_len] = '\0';
    memcpy(tag, hp->tag, hp->tag_len);
    tag[hp->tag_len] = '\0';
    const ch_ptype *type = ch_node_find_type(r->node, tname);
    if (!type) return CH_EUNKNOWN_TYPE;
    ch_child_spec cs = {.id = hp->id,
                        .id_len = hp->id_len,
                        .type = tname,
                        .arg = hp->arg,
                        .arg_len = hp->arg_len,
                        .restart = (ch_restart)hp->restart,
                        .shutdown_ms = hp->shutdown_ms,
                        .meta = hp->meta,
                        .meta_len = hp->meta_len,
                        .tag = tag};
    ch_spec *spec;
    int rc = ch_spec_new(&cs, type, &spec);
    if (rc < 0) return rc;
    ch_proc *old = ch_ptable_find(&r->procs, spec->hash, hp->id, hp->id_len);
    if (old && !old->mig) {
        free(spec);
        return keep_over(h, old, rec, node);
    }
    if (old && old->mig && old->mig->state == MP_FROZEN) {
        /* It went away from here and comes back: its old instance is over. */
        count(&r->stats.migrated_out, 1);
        ch_sup_migrated(r, old, old->mig->terminated);
    }
    ch_alter_fn alter = NULL;
    if (hp->flags & CH_HPROC_STATE)
        alter = type->cb.alter_handover ? type->cb.alter_handover : default_alter;
    ch_proc *p;
    if ((rc = ch_sup_install(r, spec, hp->incarnation, alter, rec->data, rec->len, &p)) < 0)
        return rc;
    ch_mig_proc *m = calloc(1, sizeof(*m));
    if (m) {
        *m = (ch_mig_proc){.state = MP_AWAIT_END, .node = node, .core = src_core, .aw = aw};
        p->mig = m;
        h->await_end++;
        if (aw) aw->pending++;
    }
    count(&r->stats.migrated_in, 1);
    return 0;
}

static void on_msg_rec(ch_ho *h, const ch_hbatch_rec *rec)
{
    ch_reactor *r = h->r;
    uint64_t hash = ch_id_hash(rec->id, rec->id_len);
    ch_proc *p = r->shut ? NULL : ch_ptable_find(&r->procs, hash, rec->id, rec->id_len);
    uint8_t op = rec->msg.kind == CH_MSG_CAST ? CH_OP_CAST : CH_OP_CALL;
    unsigned core = 0;
    uint64_t ref = 0;
    if (op == CH_OP_CALL && rec->msg.reply_node == r->node->id) {
        core = rec->msg.reply_core;
        ref = rec->msg.reply_ref;
    } else if (op == CH_OP_CALL) { /* the answer goes back to the caller's node */
        ref = ch_sup_pending(r, CH_TK_MIGREPLY, NULL, (void *)(uintptr_t)rec->msg.reply_node,
                             rec->msg.reply_ref, 0);
        if (!ref) return;
        ch_timers_get(&r->timers, ref)->len = rec->msg.reply_core;
        core = r->core;
    }
    if (p && p->mig && p->mig->state == MP_FROZEN)
        forward(h, p, op, rec->data, rec->len, core, ref);
    else if (p)
        deliver(r, p, op, rec->data, rec->len, core, ref);
    else if (!r->shut)
        route_via(r, false, op, rec->id, rec->id_len, hash, rec->data, rec->len, core, ref);
}

static void on_end_rec(ch_ho *h, const ch_hbatch_rec *rec)
{
    uint64_t hash = ch_id_hash(rec->id, rec->id_len);
    ch_proc *p = ch_ptable_find(&h->r->procs, hash, rec->id, rec->id_len);
    if (p && p->mig && p->mig->state == MP_AWAIT_END)
        end_await(h, p);
    else
        release_id(h, hash, rec->id, rec->id_len, false);
}

static void fail_entry(ch_wbuf *w, uint32_t *n, const char *id, size_t len, int status)
{
    ch_wbuf_put_str8(w, id, len);
    ch_wbuf_put_u32(w, (uint32_t)status);
    (*n)++;
}

/* Applies one checked batch from (node, src_core). */
static void apply(ch_ho *h, const uint8_t *raw, size_t len, uint64_t node, uint16_t src_core,
                  uint32_t seq)
{
    bool confirm_late = h->cfg->confirm_handover;
    ackwait *aw = calloc(1, sizeof(*aw));
    if (!aw) confirm_late = false; /* then it is confirmed on arrival */
    ch_wbuf fails;
    ch_wbuf_init(&fails);
    uint32_t nfails = 0;
    if (aw) *aw = (ackwait){.node = node, .src_core = src_core, .seq = seq, .pending = 1};
    ch_hbatch_reader rd;
    ch_hbatch_rec rec;
    ch_hbatch_reader_init(&rd, raw, len);
    while (ch_hbatch_read(&rd, &rec) == 1) {
        if (rec.kind == CH_HREC_PROC) {
            int rc = install(h, &rec, node, src_core, confirm_late ? aw : NULL);
            if (rc < 0)
                fail_entry(confirm_late ? &aw->fails : &fails, confirm_late ? &aw->nfails : &nfails,
                           rec.id, rec.id_len, rc);
        } else if (rec.kind == CH_HREC_MSG) {
            on_msg_rec(h, &rec);
        } else {
            on_end_rec(h, &rec);
        }
    }
    if (!confirm_late && !h->f_no_confirm)
        send_ack(h, node, src_core, ACK_CONFIRM, seq, &fails, nfails);
    ch_wbuf_free(&fails);
    if (aw) {
        if (confirm_late)
            ackwait_step(h, aw); /* drops the frame's own count */
        else
            free(aw);
    }
}

static void on_data(ch_ho *h, uint64_t node, uint8_t *block, size_t len)
{
    ch_reactor *r = h->r;
    const uint8_t *f = block + CH_MIG_IN_OFF;
    if (len < CH_MIG_LANE_HDR + CH_CODEC_HDR) return;
    uint16_t src_core = ch_le_get16(f);
    uint32_t seq = ch_le_get32(f + 4);
    if (h->f_stall && h->frames_in >= h->f_stall) return; /* fault injection (tests) */
    struct seen *sn = seen_of(h, node, src_core, true);
    if (!sn) return; /* no memory: the source's retention query settles it */
    CH_DEBUG("handover frame %u from %016llx core %u (last applied %u)", seq,
             (unsigned long long)node, src_core, sn->seq);
    /* The lane (re)started: the source took its frames back from this node, declared gone
     * there (which this node may never have noticed). Taken for repeats of frames applied
     * before, its first frames were confirmed unapplied and their processes lost. */
    if (ch_le_get16(f + 2) & CH_MIG_LANE_FIRST) sn->seq = seq - 1;
    if ((int32_t)(seq - sn->seq) <= 0) { /* applied before: its confirmation was lost */
        send_ack(h, node, src_core, ACK_CONFIRM, seq, NULL, 0);
        return;
    }
    if (seq != sn->seq + 1) return; /* after a refused frame: it comes again, in order */
    h->frames_in++;
    ch_codec_hdr ch;
    const uint8_t *raw;
    uint32_t nrec;
    int rc = ch_codec_hdr_parse(f + CH_MIG_LANE_HDR, len - CH_MIG_LANE_HDR, batch_limit(), &ch);
    if (rc == 0 && ch.wire_len != len - CH_MIG_LANE_HDR - CH_CODEC_HDR) rc = -EBADMSG;
    if (rc == 0) rc = ch_codec_rx_decode(h->rx, &ch, f + CH_MIG_LANE_HDR + CH_CODEC_HDR, &raw);
    if (rc == 0) rc = ch_hbatch_validate(raw, ch.raw_len, &nrec);
    if (rc < 0) {
        CH_WARN("handover frame %u from %016llx refused: %s", seq, (unsigned long long)node,
                ch_strerror(rc));
        count(&r->stats.bad_frames, 1);
        send_ack(h, node, src_core, ACK_BADFRAME, seq, NULL, 0);
        return;
    }
    sn->seq = seq;
    apply(h, raw, ch.raw_len, node, src_core, seq);
}

/* Retention expired on the source: which of these ids are here? */
static void on_query(ch_ho *h, uint64_t node, const uint8_t *p, size_t len)
{
    ch_rbuf rb;
    ch_rbuf_init(&rb, p, len);
    uint16_t src_core = ch_rbuf_get_u16(&rb);
    ch_rbuf_get_u16(&rb);
    uint32_t seq = ch_rbuf_get_u32(&rb), n = ch_rbuf_get_u32(&rb);
    CH_DEBUG("handover query %u from %016llx core %u: %u ids", seq, (unsigned long long)node,
             src_core, n);
    ch_wbuf w;
    ch_wbuf_init(&w);
    uint32_t k = 0;
    for (uint32_t i = 0; i < n && ch_rbuf_ok(&rb); i++) {
        ch_span id = ch_rbuf_get_str8(&rb);
        if (!ch_rbuf_ok(&rb) || !id.len) break;
        bool here = ch_ptable_find(&h->r->procs, ch_id_hash((const char *)id.p, id.len),
                                   (const char *)id.p, id.len) != NULL;
        fail_entry(&w, &k, (const char *)id.p, id.len, here ? 0 : CH_ENOPROC);
    }
    send_ack(h, node, src_core, ACK_RESOLVE, seq, &w, k);
    ch_wbuf_free(&w);
    /* Not applied: the source takes that frame back (and asks about every later one, in
     * order), so the lane goes on after it; were it to come yet, it would count as old. */
    struct seen *sn = seen_of(h, node, src_core, true);
    if (sn && (int32_t)(seq - sn->seq) > 0) sn->seq = seq;
}

static void send_query(ch_ho *h, sent *s)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u16(&w, (uint16_t)h->r->core);
    ch_wbuf_put_u16(&w, s->core);
    ch_wbuf_put_u32(&w, s->seq);
    size_t count_at = w.len;
    ch_wbuf_put_u32(&w, 0);
    uint32_t n = 0;
    ch_hbatch_reader rd;
    ch_hbatch_rec rec;
    ch_hbatch_reader_init(&rd, s->raw, s->raw_len);
    while (ch_hbatch_read(&rd, &rec) == 1) {
        if (rec.kind != CH_HREC_PROC) continue;
        ch_wbuf_put_str8(&w, rec.id, rec.id_len);
        n++;
    }
    if (!w.err) ch_le_put32(w.data + count_at, n);
    CH_WARN("frame %u to %016llx unconfirmed after %u ms: asking which processes it holds", s->seq,
            (unsigned long long)s->node, h->cfg->retention_ms);
    send_wbuf(h->r, s->node, CH_F_MIG_QUERY, &w);
    ch_wbuf_free(&w);
    s->sent_ns = ch_now_ns();
}

/* ---- rings, gone nodes, ticks --------------------------------------------------------- */

/* Queues every local process the ring places elsewhere. */
static void plan(ch_ho *h)
{
    ch_reactor *r = h->r;
    if (r->shut || !h->ring) return;
    ch_ptable *t = &r->procs;
    for (size_t i = 0; i < t->cap; i++) {
        ch_proc *p = t->slots[i].p;
        if (!p || p->mig || owner_of(h, p->hash) == r->node->id) continue;
        if (enqueue(h, p->hash, ch_spec_id(p->spec), p->spec->id_len) < 0) {
            CH_ERROR("no memory to plan migrations on core %u", r->core);
            return;
        }
    }
    update_gauge(h);
}

static void on_ring(ch_ho *h, ch_rec *rec)
{
    ch_reactor *r = h->r;
    size_t n = rec->len / sizeof(ch_mig_member);
    ch_mig_member *v = malloc(rec->len ? rec->len : 1);
    if (!v) {
        CH_ERROR("no memory for ring members on core %u", r->core);
        return;
    }
    memcpy(v, ch_rec_payload(rec), rec->len);
    h->shrunk = false;
    for (size_t i = 0; i < h->nmembers; i++) {
        bool kept = false;
        for (size_t j = 0; j < n && !kept; j++)
            kept = v[j].id == h->members[i].id;
        h->shrunk |= !kept;
    }
    free(h->members);
    h->members = v;
    h->nmembers = n;
    h->prev_ring = h->ring;
    h->ring = (ch_hashring *)(uintptr_t)rec->ref;
    h->rh = rec->aux;
    h->sealed = h->done_sent = false;
    h->holding = true;
    h->holding_since = ch_now_ns();
    /* Every message this core sent before this point is ahead of these in each mailbox. */
    for (unsigned c = 0; c < r->node->cores; c++)
        post_mig(r, c, CH_MIG_MARK, h->rh, 0, (uint16_t)r->core, NULL, 0);
    post_mig(r, r->node->cores, CH_MIG_SWITCHED, h->rh, 0, 0, NULL, 0);
    bytes_clear(&h->queue);
    h->queued = 0;
    plan(h);
    ch_hooks *hk = &r->node->hooks;
    if (!ch_hooks_any(hk, CH_HOOK_PRE_CHILDREN_REDISTRIBUTION)) return;
    for (size_t i = 0; i < h->nmembers; i++) { /* how many each target is about to get */
        size_t k = 0;
        for (size_t pos = h->queue.pos; pos < h->queue.len; pos += 9 + h->queue.p[pos + 8])
            k += owner_of(h, ch_le_get64(h->queue.p + pos)) == h->members[i].id;
        ch_hook_event ev = {.point = CH_HOOK_PRE_CHILDREN_REDISTRIBUTION,
                            .node = h->members[i].id,
                            .core = r->core,
                            .count = k};
        if (k) ch_hooks_run(hk, &ev);
    }
}

static void on_unhold(ch_ho *h, uint64_t rh)
{
    if (rh != h->rh) return;
    h->holding = false;
    if (h->await_end) { /* every source finished: nothing more comes for these */
        size_t n;
        ch_proc **v = procs_in(h, MP_AWAIT_END, 0, h->await_end, &n);
        for (size_t i = 0; i < n; i++)
            end_await(h, v[i]);
        free(v);
    }
    release_held(h, REL_ALL);
}

/* A node is gone: our frames to it come back, its processes' streams here are over. */
static void on_gone(ch_ho *h, uint64_t node)
{
    source_gone(h, node);
    size_t n;
    ch_proc **v = procs_in(h, MP_AWAIT_END, node, h->await_end, &n);
    for (size_t i = 0; i < n; i++)
        end_await(h, v[i]);
    free(v);
    update_gauge(h);
}

/* Debug: processes frozen with no frame in flight (they wait for their round to seal). */
static void debug_frozen(ch_ho *h)
{
    ch_ptable *t = &h->r->procs;
    unsigned shown = 0;
    for (size_t i = 0; i < t->cap && shown < 3; i++) {
        ch_proc *p = t->slots[i].p;
        if (!p || !p->mig || p->mig->state != MP_FROZEN) continue;
        shown++;
        CH_DEBUG("%.*s frozen for %016llx: settled %d ended %d (round %016llx sealed %d, "
                 "%zu frozen)",
                 p->spec->id_len, ch_spec_id(p->spec), (unsigned long long)p->mig->node,
                 p->mig->settled, p->mig->ended, (unsigned long long)h->rh, h->sealed,
                 (size_t)h->frozen);
    }
}

static void tick(ch_reactor *r, uint64_t arg)
{
    (void)arg;
    ch_ho *h = r->ho;
    h->tick_armed = false;
    if (r->shut) return;
    uint64_t now = ch_now_ns(), retention = (uint64_t)h->cfg->retention_ms * 1000000;
    for (sent *s = h->sent_head; s; s = s->next)
        if (now - s->sent_ns > retention) send_query(h, s);
    if (h->hcount) release_held(h, REL_OLD);
    if (h->frozen && !h->sent_head && ch_log_enabled(CH_LOG_DEBUG)) debug_frozen(h);
    update_gauge(h);
    arm_tick(h);
}

static void arm_tick(ch_ho *h)
{
    bool watch = h->frozen && ch_log_enabled(CH_LOG_DEBUG); /* debug_frozen, no more */
    if (h->tick_armed || (!h->sent_head && !h->hcount && !watch)) return;
    h->tick_armed = ch_sup_timer_fn(h->r, TICK_MS, tick, 0) != 0;
}

/* ---- entry points ---------------------------------------------------------------------- */

void ch_ho_on_rec(ch_reactor *r, ch_rec *rec)
{
    ch_ho *h = r->ho;
    if (!h) {
        if (rec->pad == CH_MIG_IN) free((void *)(uintptr_t)rec->ref);
        return;
    }
    switch (rec->pad) {
    case CH_MIG_RING:
        on_ring(h, rec);
        break;
    case CH_MIG_MARK:
        if (rec->src_core < r->node->cores) h->mark_rh[rec->src_core] = rec->aux;
        check_sealed(h);
        break;
    case CH_MIG_SEALED:
        h->sealed_rh = rec->aux;
        check_sealed(h);
        break;
    case CH_MIG_IMARK:
        h->imark_rh = rec->aux;
        check_sealed(h);
        break;
    case CH_MIG_UNHOLD:
        on_unhold(h, rec->aux);
        break;
    case CH_MIG_GONE:
        on_gone(h, rec->aux);
        break;
    case CH_MIG_IN: {
        uint8_t *block = (uint8_t *)(uintptr_t)rec->ref;
        uint64_t len;
        memcpy(&len, ch_rec_payload(rec), 8);
        const uint8_t *f = block + CH_MIG_IN_OFF;
        if (rec->src_core == CH_F_MIG_DATA)
            on_data(h, rec->aux, block, (size_t)len);
        else if (rec->src_core == CH_F_MIG_ACK)
            on_ack(h, rec->aux, block, f, (size_t)len);
        else if (rec->src_core == CH_F_MIG_QUERY)
            on_query(h, rec->aux, f, (size_t)len);
        free(block);
        break;
    }
    default:
        CH_ERROR("unknown migration record %u", rec->pad);
    }
    update_gauge(h);
}

/* A message a local thread routed straight here by the ring after one whose target died
 * (stamped, and not by the ring before) for p, which was to move to that target and stays:
 * what the same thread sent before went by the coordinator (to the target, then routed
 * again here), so it waits until the round seals, when all of that is here. */
static bool kept_back(const ch_ho *h, const ch_rec *rec, const ch_proc *p)
{
    if (!rec->pad2 || (p->mig && p->mig->state != MP_FROZEN)) return false;
    /* The thread may route by a ring whose RING record this core has not taken yet. */
    ch_hashring *live = atomic_load_explicit(&h->r->node->ring, memory_order_acquire);
    const ch_hashring *before = live != h->ring ? h->ring : h->prev_ring;
    if (!live || !before || (live == h->ring && (h->sealed || !h->shrunk))) return false;
    if (rec->pad2 == (uint16_t)ch_hashring_epoch(before)) return false;
    uint64_t was = ch_owner(h->r->node, before, p->hash);
    return was != h->r->node->id && !ch_hashring_has(live, was);
}

bool ch_ho_intercept(ch_reactor *r, ch_rec *rec, ch_proc *p, unsigned core, uint64_t ref)
{
    ch_ho *h = r->ho;
    if (!h || r->shut) return false;
    uint8_t op = rec->op == CH_OP_CAST ? CH_OP_CAST : CH_OP_CALL;
    if (p && rec->op == CH_OP_CAST && kept_back(h, rec, p)) return hold_late(h, rec);
    if (p && p->mig && p->mig->state == MP_FROZEN) {
        forward(h, p, op, ch_rec_payload(rec), rec->len, core, ref);
        return true;
    }
    if (p && p->mig) /* installed, its forwarded messages not all here yet */
        return hold(h, rec, core, ref);
    if (p || (rec->flags & CH_REC_ROW)) return false;
    /* Not here, and it belongs here: it may be on its way. Held while this core's round
     * is open, and also while the coordinator already routes by a ring whose RING record
     * this core has not taken yet (bouncing it back to the old owner now could let it
     * overtake its sender's later messages). */
    ch_hashring *live = atomic_load_explicit(&r->node->ring, memory_order_acquire);
    if ((h->holding || live != h->ring) && live && ch_owner(r->node, live, rec->aux) == r->node->id)
        return hold(h, rec, core, ref);
    return false;
}

unsigned ch_ho_turn(ch_reactor *r)
{
    ch_ho *h = r->ho;
    if (!h || r->shut) return 0;
    unsigned moved = 0;
    size_t bound = h->cfg->inflight_bytes;
    while (!bytes_empty(&h->queue) && h->inflight < bound && moved < TURN_PROCS) {
        int rc = move_one(h);
        if (rc < 0) break;
        moved += (unsigned)rc;
    }
    if (bytes_empty(&h->queue)) {
        bytes_clear(&h->queue);
        if (moved) flush_all(h); /* the tail of the queue leaves now, not at the seal */
    }
    try_done(h);
    if (moved) update_gauge(h);
    return moved;
}

bool ch_ho_busy(const ch_reactor *r)
{
    const ch_ho *h = r->ho;
    return h && !r->shut && !bytes_empty(&h->queue) && h->inflight < h->cfg->inflight_bytes;
}

bool ch_ho_terminated(const ch_proc *p)
{
    return p->mig && p->mig->state == MP_FROZEN && p->mig->terminated;
}

bool ch_ho_target(const ch_proc *p, uint64_t *node, uint16_t *core)
{
    if (!p->mig || p->mig->state != MP_FROZEN) return false;
    *node = p->mig->node;
    *core = p->mig->core;
    return true;
}

void ch_ho_proc_gone(ch_reactor *r, ch_proc *p)
{
    ch_ho *h = r->ho;
    ch_mig_proc *m = p->mig;
    p->mig = NULL;
    if (h && m->state == MP_FROZEN) h->frozen--;
    if (h && m->state == MP_AWAIT_END) {
        h->await_end--;
        if (m->aw) ackwait_step(h, m->aw);
    }
    free(m);
}

void ch_ho_reply_done(ch_reactor *r, uint64_t node, uint16_t core, uint64_t ref, int status,
                      const void *data, size_t len)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u64(&w, node);
    ch_wbuf_put_u16(&w, core);
    ch_wbuf_put_u64(&w, ref);
    ch_wbuf_put_u32(&w, (uint32_t)status);
    ch_wbuf_put_bytes(&w, data, len);
    if (!w.err) {
        ch_rec hd = {.op = CH_OP_MIG, .pad = CH_MIG_REPLY, .len = (uint32_t)w.len};
        ch_reactor_post(r->node, r->node->cores, &hd, NULL, w.data, false);
    }
    ch_wbuf_free(&w);
}

/* ---- life cycle ------------------------------------------------------------------------ */

/* CH_FAULT: comma-separated faults for tests (see tests/test_migration.c). */
static void read_faults(ch_ho *h)
{
    const char *f = getenv("CH_FAULT");
    if (!f) return;
    h->f_no_confirm = strstr(f, "no-confirm") != NULL;
    const char *c = strstr(f, "corrupt-frame:"), *s = strstr(f, "stall-target:");
    if (c) h->f_corrupt = (uint32_t)strtoul(c + 14, NULL, 10);
    if (s) h->f_stall = (uint32_t)strtoul(s + 13, NULL, 10);
}

int ch_ho_create(ch_reactor *r)
{
    ch_ho *h = calloc(1, sizeof(*h));
    if (!h) return -ENOMEM;
    h->r = r;
    h->cfg = &r->node->cfg.migration;
    ch_codec_cfg cc;
    int rc = ch_codec_cfg_parse(h->cfg->codec ? h->cfg->codec : "auto", &cc);
    if (rc == 0) rc = ch_codec_new(&cc, &h->codec);
    if (rc == 0) rc = ch_codec_rx_new(batch_limit(), &h->rx);
    if (rc == 0 && !(h->mark_rh = calloc(r->node->cores, sizeof(*h->mark_rh)))) rc = -ENOMEM;
    if (rc < 0) {
        ch_codec_free(h->codec);
        ch_codec_rx_free(h->rx);
        free(h);
        return rc;
    }
    read_faults(h);
    r->ho = h;
    return 0;
}

void ch_ho_destroy(ch_reactor *r)
{
    ch_ho *h = r->ho;
    if (!h) return;
    for (sent *s = h->sent_head, *next; s; s = next) {
        next = s->next;
        free(s->raw);
        free(s);
    }
    for (size_t i = 0; i < h->nlanes; i++)
        ch_hbatch_free(&h->lanes[i].b);
    for (size_t i = 0; i < h->hcap; i++) {
        for (held_q *q = h->held[i], *nq; q; q = nq) {
            nq = q->next;
            for (held_msg *m = q->head, *nm; m; m = nm) {
                nm = m->next;
                free(m);
            }
            free(q);
        }
    }
    while (h->nspare)
        free(h->spare[--h->nspare]);
    free(h->held);
    free(h->seen);
    free(h->lanes);
    free(h->queue.p);
    free(h->unended.p);
    free(h->members);
    free(h->mark_rh);
    ch_codec_free(h->codec);
    ch_codec_rx_free(h->rx);
    free(h);
    r->ho = NULL;
}
