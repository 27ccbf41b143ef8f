/*
 * migration/ho_target.c - the target side of a move. A frame is checked whole (lane
 * order, codec header, checksum, record structure) before anything of it is applied; then
 * each process is installed, its forwarded messages run, and its END releases what was
 * held for it (ho_held.c). The frame is confirmed on arrival, or with confirm_handover
 * once every process of it got its END. Per source lane the last frame applied is kept,
 * so that a repeat is confirmed again and never applied twice, and frames that come before
 * the one they follow (a lane's frames take the data lane or the coordinator, which keep
 * no order between them: ho_lane.c) wait, bounded, until it came.
 */
#include "migration/ho_int.h"

#include "core/log.h"
#include "core/supervisor.h"
#include "migration/le.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A target-side frame whose confirmation waits for its processes' END records. */
struct ho_ackwait {
    uint64_t node;
    uint16_t src_core;
    uint32_t seq;
    uint32_t pending;
    ch_wbuf fails; /* str8 id, i32 status */
    uint32_t nfails;
};

static struct ho_seen *seen_of(ch_ho *h, uint64_t node, uint16_t core, bool add)
{
    for (size_t i = 0; i < h->nseen; i++)
        if (h->seen[i].node == node && h->seen[i].core == core) return &h->seen[i];
    struct ho_seen *v = add ? realloc(h->seen, (h->nseen + 1) * sizeof(*v)) : NULL;
    if (!v) return NULL;
    h->seen = v;
    v[h->nseen] = (struct ho_seen){.node = node, .core = core};
    return &v[h->nseen++];
}

static void send_ack(ch_ho *h, uint64_t node, uint16_t src_core, uint8_t kind, uint32_t seq,
                     const ch_wbuf *list, uint32_t n)
{
    struct ho_seen *sn = kind == ACK_RESOLVE ? seen_of(h, node, src_core, false) : NULL;
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
    ch__ho_send_ack(h, node, src_core, &w);
    ch_wbuf_free(&w);
}

void ch__ho_ackwait_step(ch_ho *h, ho_ackwait *aw)
{
    if (--aw->pending) return;
    if (!h->f_no_confirm)
        send_ack(h, aw->node, aw->src_core, ACK_CONFIRM, aw->seq, &aw->fails, aw->nfails);
    ch_wbuf_free(&aw->fails);
    free(aw);
}

/* p's stream is complete: it runs what waited for it, and moves on if the ring says so. */
void ch__ho_end_await(ch_ho *h, ch_proc *p)
{
    ch_mig_proc *m = p->mig;
    p->mig = NULL;
    h->await_end--;
    if (m->aw) ch__ho_ackwait_step(h, m->aw);
    free(m);
    ho_idref k = ho_id_of(p);
    ch__ho_release_id(h, k.hash, k.id, k.len, false);
    if (ch__ho_owner_of(h, k.hash) != h->r->node->id)
        ch__ho_enqueue(h, k.hash, k.id, k.len); /* moved on */
}

/* ---- installing ---------------------------------------------------------------------- */

/* A live instance of the id runs here already, and another comes in: two live instances
 * met (a healed divergence partition, net/cluster/coord_heal.c rule 4). The one here, on the ring
 * owner, stays; the type may merge the other's state into it. CH_EALREADY tells the source
 * that the target has the process, so the other instance ends there. */
static int keep_over(ch_ho *h, ch_proc *keep, const ch_hbatch_rec *rec, uint64_t node)
{
    ch_reactor *r = h->r;
    const ch_process_type *cb = &keep->spec->type->cb;
    bool state = rec->proc.flags & CH_HPROC_STATE;
    ho_count(&r->stats.conflicts, 1);
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

static int install(ch_ho *h, const ch_hbatch_rec *rec, uint64_t node, uint16_t src_core,
                   ho_ackwait *aw)
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
        ho_count(&r->stats.migrated_out, 1);
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
    ho_count(&r->stats.migrated_in, 1);
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
        ch__ho_forward(h, p, op, rec->data, rec->len, core, ref);
    else if (p)
        ch__ho_deliver(r, p, op, rec->data, rec->len, core, ref);
    else if (!r->shut)
        ch__ho_route_via(r, false, op, rec->id, rec->id_len, hash, rec->data, rec->len, core, ref);
}

static void on_end_rec(ch_ho *h, const ch_hbatch_rec *rec)
{
    uint64_t hash = ch_id_hash(rec->id, rec->id_len);
    ch_proc *p = ch_ptable_find(&h->r->procs, hash, rec->id, rec->id_len);
    if (p && p->mig && p->mig->state == MP_AWAIT_END)
        ch__ho_end_await(h, p);
    else
        ch__ho_release_id(h, hash, rec->id, rec->id_len, false);
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
    ho_ackwait *aw = calloc(1, sizeof(*aw));
    if (!aw) confirm_late = false; /* then it is confirmed on arrival */
    ch_wbuf fails;
    ch_wbuf_init(&fails);
    uint32_t nfails = 0;
    if (aw) *aw = (ho_ackwait){.node = node, .src_core = src_core, .seq = seq, .pending = 1};
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
            ch__ho_ackwait_step(h, aw); /* drops the frame's own count */
        else
            free(aw);
    }
}

/* ---- frames and queries -------------------------------------------------------------- */

/* ---- frames that come early ------------------------------------------------------------ */

#define EARLY_MAX       64u         /* frames held per source lane */
#define EARLY_MAX_BYTES (64u << 20) /* their bytes */

/* Drops sn's early frames that are no longer ahead of the last applied one (all: every
 * one). */
static void early_prune(struct ho_seen *sn, bool all)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < sn->nearly; i++) {
        struct ho_early *e = &sn->early[i];
        if (all || (int32_t)(e->seq - sn->seq) <= 0) {
            sn->early_bytes -= e->len;
            free(e->block);
        } else {
            sn->early[k++] = *e;
        }
    }
    sn->nearly = k;
    if (!k) {
        free(sn->early);
        sn->early = NULL;
    }
}

void ch__ho_early_drop(ch_ho *h, uint64_t node)
{
    for (size_t i = 0; i < h->nseen; i++)
        if (!node || h->seen[i].node == node) early_prune(&h->seen[i], true);
}

/* Keeps a frame that came before the one it follows (the two ways a lane's frames take,
 * data lane and coordinator, do not keep their order between them): true when its block
 * was kept (a borrowed frame is copied into a block of its own). */
static bool early_keep(ch_ho *h, struct ho_seen *sn, uint32_t seq, const uint8_t *f, size_t len,
                       uint8_t *block)
{
    for (uint32_t i = 0; i < sn->nearly; i++)
        if (sn->early[i].seq == seq) return false; /* a copy: the first one stays */
    if (sn->nearly == EARLY_MAX || sn->early_bytes + len > EARLY_MAX_BYTES) {
        CH_WARN("handover frame %u from %016llx core %u came early and is dropped (%u held): "
                "the source's retention query settles it",
                seq, (unsigned long long)sn->node, sn->core, sn->nearly);
        return false;
    }
    struct ho_early *v = realloc(sn->early, (sn->nearly + 1) * sizeof(*v));
    if (!v) return false;
    sn->early = v;
    uint8_t *kept = block ? block : ch_ho_in_block(f, len, (const uint64_t[2]){0, 0});
    if (!kept) return false; /* no memory: the source's retention query settles it */
    v[sn->nearly++] = (struct ho_early){.seq = seq, .block = kept, .len = len};
    sn->early_bytes += len;
    return block != NULL;
}

/* The early frame that follows the last applied one, taken out of sn, or NULL. */
static uint8_t *early_next(struct ho_seen *sn, size_t *len)
{
    for (uint32_t i = 0; i < sn->nearly; i++) {
        if (sn->early[i].seq != sn->seq + 1) continue;
        uint8_t *block = sn->early[i].block;
        *len = sn->early[i].len;
        sn->early_bytes -= *len;
        sn->early[i] = sn->early[--sn->nearly];
        return block;
    }
    return NULL;
}

/* ---- frames and queries -------------------------------------------------------------- */

/* Checks one frame that follows the last applied one and applies it. */
static void apply_frame(ch_ho *h, uint64_t node, uint16_t src_core, uint32_t seq, const uint8_t *f,
                        size_t len)
{
    ch_reactor *r = h->r;
    h->frames_in++;
    ch_codec_hdr ch;
    const uint8_t *raw;
    uint32_t nrec;
    int rc = ch_codec_hdr_parse(f + CH_MIG_LANE_HDR, len - CH_MIG_LANE_HDR, ho_batch_limit(), &ch);
    if (rc == 0 && ch.wire_len != len - CH_MIG_LANE_HDR - CH_CODEC_HDR) rc = -EBADMSG;
    if (rc == 0) rc = ch_codec_rx_decode(h->rx, &ch, f + CH_MIG_LANE_HDR + CH_CODEC_HDR, &raw);
    if (rc == 0) rc = ch_hbatch_validate(raw, ch.raw_len, &nrec);
    if (rc < 0) {
        CH_WARN("handover frame %u from %016llx refused: %s", seq, (unsigned long long)node,
                ch_strerror(rc));
        ho_count(&r->stats.bad_frames, 1);
        send_ack(h, node, src_core, ACK_BADFRAME, seq, NULL, 0);
        return;
    }
    struct ho_seen *sn = seen_of(h, node, src_core, false);
    if (sn) sn->seq = seq;
    apply(h, raw, ch.raw_len, node, src_core, seq);
}

bool ch__ho_on_data(ch_ho *h, uint64_t node, const uint8_t *f, size_t len, uint8_t *block)
{
    if (len < CH_MIG_LANE_HDR + CH_CODEC_HDR) return false;
    uint16_t src_core = ch_le_get16(f);
    uint32_t seq = ch_le_get32(f + 4);
    if (h->f_stall && h->frames_in >= h->f_stall) return false; /* fault injection (tests) */
    struct ho_seen *sn = seen_of(h, node, src_core, true);
    if (!sn) return false; /* no memory: the source's retention query settles it */
    CH_DEBUG("handover frame %u from %016llx core %u (last applied %u)", seq,
             (unsigned long long)node, src_core, sn->seq);
    /* The lane (re)started: the source took its frames back from this node, declared gone
     * there (which this node may never have noticed). Taken for repeats of frames applied
     * before, its first frames were confirmed unapplied and their processes lost. */
    /* A lane's numbering goes on across restarts (ho_settle.c), so a first frame at or
     * below what was applied is a copy of one applied before (sent again after its data
     * lane closed), not a restart: taken for one, it would apply its frames twice. */
    if ((ch_le_get16(f + 2) & CH_MIG_LANE_FIRST) && (int32_t)(seq - sn->seq) > 0) {
        sn->seq = seq - 1;
        early_prune(sn, false);
    }
    if ((int32_t)(seq - sn->seq) <= 0) { /* applied before: its confirmation was lost */
        send_ack(h, node, src_core, ACK_CONFIRM, seq, NULL, 0);
        return false;
    }
    if (seq != sn->seq + 1) return early_keep(h, sn, seq, f, len, block);
    apply_frame(h, node, src_core, seq, f, len);
    /* Then whatever came early and follows now, in order (a refused frame stops it: the
     * source sends again from there, and the copies count as repeats). */
    uint8_t *next;
    size_t nlen;
    while ((sn = seen_of(h, node, src_core, false)) && sn->seq == seq &&
           (next = early_next(sn, &nlen))) {
        seq = sn->seq + 1;
        apply_frame(h, node, src_core, seq, next + CH_MIG_IN_OFF, nlen);
        free(next);
    }
    return false;
}

/* Retention expired on the source: which of these ids are here? */
void ch__ho_on_query(ch_ho *h, uint64_t node, const uint8_t *p, size_t len)
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
    struct ho_seen *sn = seen_of(h, node, src_core, true);
    if (sn && (int32_t)(seq - sn->seq) > 0) sn->seq = seq;
    if (sn) early_prune(sn, true); /* the later ones are asked about too, in order */
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
    ch_mig_msg m = {.op = CH_MIG_REPLY};
    if (!w.err) ch__ho_post(r, r->node->cores, &m, w.data, w.len);
    ch_wbuf_free(&w);
}
