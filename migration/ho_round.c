/*
 * migration/ho_round.c - one round per ring (handover.h steps 1, 2 and 5): planning the
 * moves when the ring arrives, marking the switch to every core, sealing once every core's
 * MARK, the coordinator's SEALED and the inbox's IMARK for the ring are here (casts kept
 * back wait for that), DONE once every frame is confirmed, UNHOLD once every participant
 * is done, and the tick that asks about unconfirmed frames and releases messages held too
 * long.
 */
#include "migration/ho_int.h"

#include "net/cluster/coord.h"
#include "core/log.h"
#include "core/supervisor.h"
#include "migration/le.h"

#include <stdlib.h>
#include <string.h>

#define TICK_MS 100u

/* Queues every local process the ring places elsewhere. */
void ch__ho_plan(ch_ho *h)
{
    ch_reactor *r = h->r;
    if (r->shut || !h->ring) return;
    ch_ptable *t = &r->procs;
    for (size_t i = 0; i < t->cap; i++) {
        ch_proc *p = t->slots[i].p;
        if (!p || p->mig || ch__ho_owner_of(h, p->hash) == r->node->id) continue;
        if (ch__ho_enqueue(h, p->hash, ch_spec_id(p->spec), p->spec->id_len) < 0) {
            CH_ERROR("no memory to plan migrations on core %u", r->core);
            return;
        }
    }
    ho_update_gauge(h);
}

void ch__ho_on_ring(ch_ho *h, const ch_mig_msg *m, ch_rec *rec)
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
    h->ring = m->ptr;
    h->rh = m->round;
    h->sealed = h->done_sent = false;
    h->holding = true;
    h->holding_since = ch_now_ns();
    /* Every message this core sent before this point is ahead of these in each mailbox. */
    ch_mig_msg mark = {.op = CH_MIG_MARK, .round = h->rh, .from_core = (uint16_t)r->core};
    for (unsigned c = 0; c < r->node->cores; c++)
        ch__ho_post(r, c, &mark, NULL, 0);
    ch_mig_msg switched = {.op = CH_MIG_SWITCHED, .round = h->rh};
    ch__ho_post(r, r->node->cores, &switched, NULL, 0);
    ho_bytes_clear(&h->queue);
    h->queued = 0;
    ch__ho_plan(h);
    ch_hooks *hk = &r->node->hooks;
    if (!ch_hooks_any(hk, CH_HOOK_PRE_CHILDREN_REDISTRIBUTION)) return;
    for (size_t i = 0; i < h->nmembers; i++) { /* how many each target is about to get */
        size_t k = 0;
        for (size_t pos = h->queue.pos; pos < h->queue.len; pos += 9 + h->queue.p[pos + 8])
            k += ch__ho_owner_of(h, ch_le_get64(h->queue.p + pos)) == h->members[i].id;
        ch_hook_event ev = {.point = CH_HOOK_PRE_CHILDREN_REDISTRIBUTION,
                            .node = h->members[i].id,
                            .core = r->core,
                            .count = k};
        if (k) ch_hooks_run(hk, &ev);
    }
}

void ch__ho_check_sealed(ch_ho *h)
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
        ch__ho_put_end(h, ch_le_get64(e), ch_le_get16(e + 8), id, len);
        if (p && p->mig && p->mig->state == MP_FROZEN) {
            p->mig->ended = true;
            if (p->mig->settled) ch__ho_retire(h, p); /* confirmed before its stream ended */
        }
        pos += 11 + len;
    }
    ho_bytes_clear(&h->unended);
    ch__ho_flush_all(h);
    if (h->hcount) ch__ho_release_held(h, REL_PRESENT); /* what ch__ho_kept_back held */
}

/* DONE (then END to every peer) once every record is sent and every frame confirmed: the
 * peers keep copies of their casts to this round's targets until then (handover.h). */
void ch__ho_try_done(ch_ho *h)
{
    if (!h->sealed || h->done_sent || !ho_bytes_empty(&h->queue)) return;
    ch__ho_flush_all(h);
    if (h->sent_head) return;
    h->done_sent = true;
    ch_mig_msg done = {.op = CH_MIG_DONE, .round = h->rh};
    ch__ho_post(h->r, h->r->node->cores, &done, NULL, 0);
}

void ch__ho_on_unhold(ch_ho *h, uint64_t rh)
{
    if (rh != h->rh) return;
    h->holding = false;
    if (h->await_end) { /* every source finished: nothing more comes for these */
        size_t n;
        ch_proc **v = ch__ho_procs_in(h, MP_AWAIT_END, 0, h->await_end, &n);
        for (size_t i = 0; i < n; i++)
            ch__ho_end_await(h, v[i]);
        free(v);
    }
    ch__ho_release_held(h, REL_ALL);
}

/* A message a local thread routed straight here by the ring after one whose target died
 * (stamped, and not by the ring before) for p, which was to move to that target and stays:
 * what the same thread sent before went by the coordinator (to the target, then routed
 * again here), so it waits until the round seals, when all of that is here. */
bool ch__ho_kept_back(const ch_ho *h, const ch_rec *rec, const ch_proc *p)
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

/* ---- the tick ------------------------------------------------------------------------ */

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
    for (ho_sent *s = h->sent_head; s; s = s->next)
        if (now - s->sent_ns > retention) ch__ho_send_query(h, s);
    if (h->hcount) ch__ho_release_held(h, REL_OLD);
    if (h->frozen && !h->sent_head && ch_log_enabled(CH_LOG_DEBUG)) debug_frozen(h);
    ho_update_gauge(h);
    ch__ho_arm_tick(h);
}

void ch__ho_arm_tick(ch_ho *h)
{
    bool watch = h->frozen && ch_log_enabled(CH_LOG_DEBUG); /* debug_frozen, no more */
    if (h->tick_armed || (!h->sent_head && !h->hcount && !watch)) return;
    h->tick_armed = ch_sup_timer_fn(h->r, TICK_MS, tick, 0) != 0;
}
