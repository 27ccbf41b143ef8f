/*
 * migration/ho_source.c - the source side of a move: the queue of ids the ring placed
 * elsewhere, one lane per (target node, target core) with an open batch each, freezing a
 * process just in time to write it into its lane, and forwarding the messages that reach
 * it while frozen behind it, in arrival order. A full batch is sent as a frame and kept
 * (ho_settle.c decides what becomes of it).
 */
#include "migration/ho_int.h"

#include "core/log.h"
#include "core/supervisor.h"
#include "migration/le.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define TURN_PROCS 512u /* processes frozen per turn at most: the core keeps serving */

static const ch_mig_member *member(const ch_ho *h, uint64_t id)
{
    for (size_t i = 0; i < h->nmembers; i++)
        if (h->members[i].id == id) return &h->members[i];
    return NULL;
}

void ch__ho_fail_hook(ch_ho *h, ch_proc *p, uint64_t node, int status)
{
    ho_count(&h->r->stats.migration_failures, 1);
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

/* Queues one id to move (u64 hash | u8 len | id). */
int ch__ho_enqueue(ch_ho *h, uint64_t hash, const char *id, uint8_t len)
{
    uint8_t hdr[9];
    ch_le_put64(hdr, hash);
    hdr[8] = len;
    int rc = ch__ho_bytes_put(&h->queue, hdr, 9, id, len);
    if (rc == 0) h->queued++;
    return rc;
}

/* ---- lanes and frames ---------------------------------------------------------------- */

static ho_lane *get_lane(ch_ho *h, uint64_t node, uint16_t core)
{
    for (size_t i = 0; i < h->nlanes; i++)
        if (h->lanes[i].node == node && h->lanes[i].core == core) return &h->lanes[i];
    ho_lane *v = realloc(h->lanes, (h->nlanes + 1) * sizeof(*v));
    if (!v) return NULL;
    h->lanes = v;
    ho_lane *l = &v[h->nlanes];
    if (ch_hbatch_init(&l->b, h->cfg->batch_bytes, ho_batch_limit()) < 0) return NULL;
    l->node = node;
    l->core = core;
    l->seq = 0;
    l->fresh = true;
    h->nlanes++;
    return l;
}

/* One frame for the wire: lane header, codec header, payload (a heap block). */
static uint8_t *encode(ch_ho *h, const ho_sent *s, const uint8_t *raw, size_t raw_len, size_t *flen)
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
    ho_count(&st->handover_bytes_raw, (int64_t)raw_len);
    ho_count(&st->handover_bytes_wire, (int64_t)out.payload_len);
    ho_count(out.codec == CH_CODEC_ZSTD ? &st->handover_frames_zstd : &st->handover_frames_raw, 1);
    if (h->f_corrupt && ++h->frames_out == h->f_corrupt) { /* fault injection (tests) */
        block[*flen - 1 - out.payload_len / 2] ^= 0x5a;
        CH_WARN("fault injected: frame %u to %016llx corrupted", s->seq,
                (unsigned long long)s->node);
    }
    return block;
}

int ch__ho_transmit(ch_ho *h, ho_sent *s)
{
    size_t flen;
    uint8_t *block = encode(h, s, s->raw, s->raw_len, &flen);
    if (!block) return -ENOMEM;
    s->sent_ns = ch_now_ns();
    CH_DEBUG("handover frame %u to %016llx core %u: %zu bytes", s->seq, (unsigned long long)s->node,
             s->core, flen);
    ch__ho_send_frame(h, s, CH_F_MIG_DATA, block, flen);
    return 0;
}

static int flush_lane(ch_ho *h, ho_lane *l)
{
    if (!l->b.count) return 0;
    ho_sent *s = calloc(1, sizeof(*s));
    if (!s) return -ENOMEM;
    *s = (ho_sent){.node = l->node, .core = l->core, .seq = ++l->seq, .first = l->fresh};
    l->fresh = false;
    bool oversize = l->b.cap != l->b.capacity; /* its buffer is not a spare's size */
    uint8_t *fresh = h->nspare ? h->spare[--h->nspare] : NULL;
    if (!(s->raw = ch_hbatch_take(&l->b, fresh, &s->raw_len))) {
        if (fresh) h->spare[h->nspare++] = fresh;
        free(s);
        return -ENOMEM;
    }
    s->spare_ok = !oversize;
    if (ch__ho_transmit(h, s) < 0) CH_WARN("frame %u not sent yet (no memory): retried", s->seq);
    if (h->sent_tail)
        h->sent_tail->next = s;
    else
        h->sent_head = s;
    h->sent_tail = s;
    h->inflight += s->raw_len;
    ch__ho_arm_tick(h);
    return 0;
}

void ch__ho_flush_all(ch_ho *h)
{
    for (size_t i = 0; i < h->nlanes; i++)
        flush_lane(h, &h->lanes[i]);
}

/* A record that did not fit (-ENOSPC) goes in after the lane's batch was sent. */
static bool retry_after_flush(ch_ho *h, ho_lane *l, int rc)
{
    return rc == -ENOSPC && flush_lane(h, l) == 0;
}

int ch__ho_put_end(ch_ho *h, uint64_t node, uint16_t core, const char *id, size_t len)
{
    ho_lane *l = get_lane(h, node, core);
    if (!l) return -ENOMEM;
    int rc = ch_hbatch_put_end(&l->b, id, len);
    if (retry_after_flush(h, l, rc)) rc = ch_hbatch_put_end(&l->b, id, len);
    if (rc == 0 && ch_hbatch_full(&l->b)) flush_lane(h, l);
    return rc;
}

/* Frees a settled frame, keeping its buffer for a next batch (no page faults per frame). */
void ch__ho_sent_free(ch_ho *h, ho_sent *s)
{
    if (s->spare_ok && h->nspare < sizeof(h->spare) / sizeof(h->spare[0]))
        h->spare[h->nspare++] = s->raw;
    else
        free(s->raw);
    free(s);
}

/* ---- freezing and forwarding --------------------------------------------------------- */

static bool hot_state(const ch_ho *h)
{
    return h->cfg->strategy == CH_MIGRATE_HOTSWAP && h->cfg->handover;
}

static int default_prepare(ch_proc *p, ch_buf *out)
{
    return p->state_len ? ch_buf_append(out, p->state, p->state_len) : 0;
}

/* Writes p's PROC record. -ENOSPC: the batch must go first; other < 0: p cannot move. */
static int put_proc(ch_ho *h, ho_lane *l, ch_proc *p)
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
    uint64_t node = ch__ho_owner_of(h, hash);
    const ch_mig_member *mb = member(h, node);
    if (!p || p->mig || node == r->node->id || !mb || !mb->cores) {
        h->queue.pos += 9 + len;
        h->queued--;
        return 0;
    }
    uint16_t core = (uint16_t)(hash % mb->cores);
    ho_lane *l = get_lane(h, node, core);
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
        ch__ho_fail_hook(h, p, node, rc);
        free(m);
        return 0;
    }
    freeze(h, p, m, node, core);
    if (h->sealed) { /* no sender can still reach it here: its stream ends at once */
        p->mig->ended = true;
        ch__ho_put_end(h, node, core, id, len);
    } else {
        uint8_t hdr[11];
        ch_le_put64(hdr, node);
        ch_le_put16(hdr + 8, core);
        hdr[10] = (uint8_t)len;
        if (ch__ho_bytes_put(&h->unended, hdr, 11, id, len) < 0) {
            p->mig->ended = true; /* no memory to remember it: end its stream now */
            ch__ho_put_end(h, node, core, id, len);
        }
    }
    if (ch_hbatch_full(&l->b)) flush_lane(h, l);
    return 1;
}

void ch__ho_forward(ch_ho *h, ch_proc *p, uint8_t op, const void *data, size_t len, unsigned core,
                    uint64_t ref)
{
    ch_reactor *r = h->r;
    ch_mig_proc *m = p->mig;
    const char *id = ch_spec_id(p->spec);
    if (m->ended) {
        /* Its stream is closed: a message still reaching it here (routed by an old ring,
         * or back from a target that does not have it yet) waits for the outcome of the
         * move, which releases it: to the thawed process here, or on to its new place. */
        if (ch__ho_hold_msg(h, p->hash, id, p->spec->id_len, op, data, len, core, ref)) return;
        ch__ho_route_via(r, ch__ho_owner_of(h, p->hash) != r->node->id, op, id, p->spec->id_len,
                         p->hash, data, len, core, ref);
        return;
    }
    ho_lane *l = get_lane(h, m->node, m->core);
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
    ho_count(&r->stats.forwarded_messages, 1);
    if (ch_hbatch_full(&l->b)) flush_lane(h, l);
}

/* ---- entry points -------------------------------------------------------------------- */

unsigned ch_ho_turn(ch_reactor *r)
{
    ch_ho *h = r->ho;
    if (!h || r->shut) return 0;
    unsigned moved = 0;
    size_t bound = h->cfg->inflight_bytes;
    while (!ho_bytes_empty(&h->queue) && h->inflight < bound && moved < TURN_PROCS) {
        int rc = move_one(h);
        if (rc < 0) break;
        moved += (unsigned)rc;
    }
    if (ho_bytes_empty(&h->queue)) {
        ho_bytes_clear(&h->queue);
        if (moved) ch__ho_flush_all(h); /* the tail of the queue leaves now, not at the seal */
    }
    ch__ho_try_done(h);
    if (moved) ho_update_gauge(h);
    return moved;
}

bool ch_ho_busy(const ch_reactor *r)
{
    const ch_ho *h = r->ho;
    return h && !r->shut && !ho_bytes_empty(&h->queue) && h->inflight < h->cfg->inflight_bytes;
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
