/*
 * migration/ho_settle.c - what becomes of each frame the source sent. Confirmed: its
 * processes' old instances go (once their streams ended). Refused as damaged: the lane
 * sends again from it. Unconfirmed past retention_ms: the source asks the target which
 * of its processes it holds. Its target gone: it is replayed here, its processes thaw and
 * move again under the new ring, its forwarded messages run here in order.
 */
#include "migration/ho_int.h"

#include "core/log.h"
#include "core/supervisor.h"
#include "migration/le.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void note_pause(ch_ho *h, uint64_t t0)
{
    uint64_t us = ch_ns_since(ch_now_ns(), t0) / 1000;
    ch_counters *s = &h->r->stats;
    ho_count(&s->pause[ch_hist_index(us)], 1);
    if (us > atomic_load_explicit(&s->pause_max, memory_order_relaxed))
        atomic_store_explicit(&s->pause_max, us, memory_order_relaxed); /* its only writer */
}

/* ---- thawing and retiring ------------------------------------------------------------ */

/* The old instance keeps serving here: the move failed. What waited for the outcome runs
 * here, unless `later` collects the id: then the caller releases it once the messages
 * forwarded before it (a dead target's frames, replayed) ran. */
static void thaw_to(ch_ho *h, ch_proc *p, ho_bytes *later)
{
    ch_mig_proc *m = p->mig;
    bool terminated = m->terminated;
    free(m);
    p->mig = NULL;
    h->frozen--;
    ho_idref k = ho_id_of(p);
    if (terminated) ch_sup_reinit(h->r, p); /* ColdSwap: fresh from its spec (or gone) */
    uint8_t hdr[9];
    ch_le_put64(hdr, k.hash);
    hdr[8] = k.len;
    if (!later || ch__ho_bytes_put(later, hdr, 9, k.id, k.len) < 0)
        ch__ho_release_id(h, k.hash, k.id, k.len, false);
}

static void thaw(ch_ho *h, ch_proc *p)
{
    thaw_to(h, p, NULL);
}

/* The old instance of a process its target has: it goes, and what waited for the move's
 * outcome follows it to its new place. */
void ch__ho_retire(ch_ho *h, ch_proc *p)
{
    ho_idref k = ho_id_of(p);
    ch_sup_migrated(h->r, p, p->mig->terminated); /* frozen-- in ch_ho_proc_gone */
    ch__ho_release_id(h, k.hash, k.id, k.len, true);
}

/* ---- confirmations ------------------------------------------------------------------- */

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

/* One process of a confirmed (or resolved) frame; true when it moved. */
static bool settle_proc(ch_ho *h, const ho_sent *s, uint8_t kind, ch_proc *p, int st)
{
    ch_reactor *r = h->r;
    if (kind == ACK_RESOLVE) ho_count(&r->stats.migration_failures, 1); /* not confirmed */
    if (st == 0 || st == CH_EALREADY) { /* the target has it: ours goes */
        bool moved = st == 0 && kind == ACK_CONFIRM;
        if (moved) {
            note_pause(h, p->mig->t0);
            ho_count(&r->stats.migrated_out, 1);
        } else if (st) {
            ch__ho_fail_hook(h, p, s->node, st);
        }
        /* Until its stream ends, messages may still reach it here (from senders that did
         * not switch yet): it stays, frozen, to forward them behind it (design §3 step 5). */
        if (p->mig->ended)
            ch__ho_retire(h, p);
        else
            p->mig->settled = true;
        return moved;
    }
    CH_WARN("%.*s not taken by %016llx (%s): it stays here", p->spec->id_len, ch_spec_id(p->spec),
            (unsigned long long)s->node, ch_strerror(st));
    if (kind == ACK_CONFIRM) ch__ho_fail_hook(h, p, s->node, st); /* refused: it stays */
    thaw(h, p);
    /* Never arrived (a lost connection): it moves again. */
    if (kind == ACK_RESOLVE &&
        p == ch_ptable_find(&r->procs, p->hash, ch_spec_id(p->spec), p->spec->id_len))
        ch__ho_enqueue(h, p->hash, ch_spec_id(p->spec), p->spec->id_len);
    return false;
}

/* Settles every process of a confirmed (or resolved) frame. */
static void settle(ch_ho *h, ho_sent *s, uint8_t kind, bool applied, ch_rbuf list, uint32_t n)
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
        ch__ho_deliver(r, p, rec.msg.kind == CH_MSG_CAST ? CH_OP_CAST : CH_OP_CALL, rec.data,
                       rec.len, rec.msg.reply_core, rec.msg.reply_ref);
    }
}

static ho_sent *unlink_sent(ch_ho *h, uint64_t node, uint16_t core, uint32_t seq)
{
    ho_sent *prev = NULL;
    for (ho_sent *s = h->sent_head; s; prev = s, s = s->next) {
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
static void link_feedback(ch_ho *h, uint64_t node, const uint8_t *link)
{
    uint64_t t[2];
    memcpy(t, link, sizeof(t));
    struct ho_link *l = NULL;
    for (unsigned i = 0; i < h->nlinks && !l; i++)
        if (h->links[i].node == node) l = &h->links[i];
    if (!l) {
        l = &h->links[h->nlinks < 8 ? h->nlinks++ : 7];
        *l = (struct ho_link){.node = node, .bytes = t[0], .ns = t[1]};
        return;
    }
    if (t[0] > l->bytes && t[1] > l->ns) ch_codec_feedback(h->codec, t[0] - l->bytes, t[1] - l->ns);
    if (t[0] >= l->bytes) { /* a new connection starts its totals over */
        l->bytes = t[0];
        l->ns = t[1];
    } else {
        *l = (struct ho_link){.node = node, .bytes = t[0], .ns = t[1]};
    }
}

void ch__ho_on_ack(ch_ho *h, uint64_t node, const uint8_t *link, const uint8_t *p, size_t len)
{
    link_feedback(h, node, link);
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
        for (ho_sent *s = h->sent_head; s; s = s->next)
            if (s->node == node && s->core == core && (int32_t)(s->seq - seq) >= 0)
                ch__ho_transmit(h, s);
        return;
    }
    ho_sent *s = unlink_sent(h, node, core, seq);
    if (!s) return; /* settled already (a resolution crossed the confirmation) */
    /* The target applies a lane's frames in order: none after this one was applied either
     * (a lost connection took them all). Ask about them now, ahead of the frames that the
     * processes thawed below will fill: the target's answers move its lane past them. */
    if (kind == ACK_RESOLVE && !applied)
        for (ho_sent *t = h->sent_head; t; t = t->next)
            if (t->node == node && t->core == core && (int32_t)(t->seq - seq) > 0)
                ch__ho_send_query(h, t);
    settle(h, s, kind, applied, rb, n);
    ch__ho_sent_free(h, s);
}

void ch__ho_send_query(ch_ho *h, ho_sent *s)
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
    uint8_t *block = w.err ? NULL : malloc(w.len);
    if (block) {
        memcpy(block, w.data, w.len);
        ch__ho_send_frame(h, s, CH_F_MIG_QUERY, block, w.len); /* its frame's way */
    } else {
        CH_ERROR("migration query not sent: %s", ch_strerror(w.err ? w.err : -ENOMEM));
    }
    ch_wbuf_free(&w);
    s->sent_ns = ch_now_ns();
}

/* ---- a gone target ------------------------------------------------------------------- */

/* Replays one kept batch after its target is gone: processes thaw, messages run here. The
 * ids thawed go to `later`: what waited for them came after every forwarded message. */
static void replay(ch_ho *h, uint64_t node, const uint8_t *raw, size_t len, ho_bytes *later)
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
                ch__ho_fail_hook(h, p, node, -EHOSTUNREACH); /* it did not move: it stays, then */
                thaw_to(h, p, later);                        /* moves again under the new ring */
            }
        } else if (rec.kind == CH_HREC_MSG) {
            uint8_t op = rec.msg.kind == CH_MSG_CAST ? CH_OP_CAST : CH_OP_CALL;
            if (p && !p->mig)
                ch__ho_deliver(r, p, op, rec.data, rec.len, rec.msg.reply_core, rec.msg.reply_ref);
            else if (!r->shut)
                ch__ho_route_via(r, false, op, rec.id, rec.id_len, hash, rec.data, rec.len,
                                 rec.msg.reply_core, rec.msg.reply_ref);
        }
    }
}

/* Processes the gone node had confirmed but whose streams had not ended (their frames are
 * settled, so no replay thaws them): their END can no longer go, and they waited for it
 * forever ("settled 1 ended 0", the hub never settled). They stay here with the state they
 * had when they froze, and move again under the new ring; the messages the node applied
 * after that died with it, so each counts as a crash restart. Should the node come back
 * with its copy, the two meet on the ring owner and one survives (coord_heal.c rule 4). */
static void thaw_confirmed(ch_ho *h, uint64_t node, ho_bytes *later)
{
    size_t n;
    ch_proc **v = ch__ho_procs_in(h, MP_FROZEN, node, h->frozen, &n);
    for (size_t i = 0; i < n; i++) {
        ch__ho_fail_hook(h, v[i], node, -EHOSTUNREACH);
        thaw_to(h, v[i], later);
    }
    ho_count(&h->r->stats.crash_restarts, (int64_t)n);
    free(v);
}

/* Runs what waited for each thawed id of `later` (u64 hash | u8 len | id), then frees it. */
static void release_later(ch_ho *h, ho_bytes *later)
{
    for (size_t pos = later->pos; pos < later->len; pos += 9 + later->p[pos + 8])
        ch__ho_release_id(h, ch_le_get64(later->p + pos), (const char *)later->p + pos + 9,
                          later->p[pos + 8], false);
    free(later->p);
}

/* Everything sent to `node` and not confirmed comes back to life here, then moves anew. */
void ch__ho_source_gone(ch_ho *h, uint64_t node)
{
    ho_bytes later = {0};
    for (ho_sent *next, *prev = NULL, *cur = h->sent_head; cur; cur = next) {
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
        ho_lane *l = &h->lanes[i];
        if (l->node != node) continue;
        replay(h, node, ch_hbatch_data(&l->b), ch_hbatch_len(&l->b), &later);
        ch_hbatch_reset(&l->b); /* cannot fail: the numbering must go on (ho_target.c) */
        /* The lane starts again, numbering on: an ack of a frame taken back (late, from a
         * target that was not gone after all) then matches no frame sent later, and its
         * first frame (CH_MIG_LANE_FIRST) is numbered above every one sent before. */
        l->fresh = true;
    }
    thaw_confirmed(h, node, &later);
    release_later(h, &later);
    ho_bytes kept = {0};
    for (size_t pos = h->unended.pos; pos < h->unended.len;) {
        const uint8_t *e = h->unended.p + pos;
        size_t n = 11 + e[10];
        if (ch_le_get64(e) != node) ch__ho_bytes_put(&kept, e, n, NULL, 0);
        pos += n;
    }
    free(h->unended.p);
    h->unended = kept;
    ch__ho_plan(h);
}
