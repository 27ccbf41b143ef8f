/*
 * migration/handover.c - the migration engine of one core (protocol in handover.h): its
 * life cycle, its plumbing to the coordinator and the other cores, and the entry points,
 * which hand each record and message to the part that handles it (files in ho_int.h).
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
#include "migration/ho_int.h"

#include "net/cluster/coord.h"
#include "net/lane.h"
#include "core/log.h"
#include "core/supervisor.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- small containers ---------------------------------------------------------------- */

int ch__ho_bytes_put(ho_bytes *b, const void *a, size_t alen, const void *c, size_t clen)
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

/* ---- talking to the coordinator and the other cores ---------------------------------- */

static bool names_node(uint8_t op)
{
    return op == CH_MIG_OUT || op == CH_MIG_IN || op == CH_MIG_GONE || op == CH_MIG_LANES;
}

ch_rec ch_mig_rec(const ch_mig_msg *m, size_t len)
{
    return (ch_rec){.op = CH_OP_MIG,
                    .pad = m->op,
                    .aux = names_node(m->op) ? m->node : m->round,
                    .ref = (uint64_t)(uintptr_t)m->ptr,
                    .src_core = m->op == CH_MIG_MARK ? m->from_core : m->frame,
                    .len = (uint32_t)len};
}

ch_mig_msg ch_mig_read(const ch_rec *rec)
{
    ch_mig_msg m = {.op = rec->pad, .ptr = (void *)(uintptr_t)rec->ref};
    if (names_node(m.op))
        m.node = rec->aux;
    else
        m.round = rec->aux;
    if (m.op == CH_MIG_MARK)
        m.from_core = rec->src_core;
    else
        m.frame = (uint8_t)rec->src_core;
    return m;
}

void ch__ho_post(ch_reactor *r, unsigned dst, const ch_mig_msg *m, const void *payload, size_t len)
{
    ch_rec h = ch_mig_rec(m, len);
    int rc = ch_reactor_post(r->node, dst, &h, NULL, payload, false);
    if (rc < 0) CH_ERROR("migration record to %u lost: %s", dst, ch_strerror(rc));
}

/* Hands a frame (heap block, ownership moves) to the coordinator for node. */
void ch__ho_send_block(ch_reactor *r, uint64_t node, uint8_t type, uint8_t *block, size_t len)
{
    uint64_t l = len;
    ch_mig_msg m = {.op = CH_MIG_OUT, .frame = type, .node = node, .ptr = block};
    ch__ho_post(r, r->node->cores, &m, &l, 8);
}

void ch__ho_send_wbuf(ch_reactor *r, uint64_t node, uint8_t type, ch_wbuf *w)
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
    ch__ho_send_block(r, node, type, block, w->len);
}

/* ---- routes and the process table ---------------------------------------------------- */

uint64_t ch__ho_owner_of(const ch_ho *h, uint64_t hash)
{
    return h->ring ? ch_owner(h->r->node, h->ring, hash) : h->r->node->id;
}

/* Sends a message on through the coordinator, routed by the registry row (final), or by
 * the ring (by_ring: the row may lag, e.g. right after a confirmed move). */
void ch__ho_route_via(ch_reactor *r, bool by_ring, uint8_t op, const char *id, size_t id_len,
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

void ch__ho_deliver(ch_reactor *r, ch_proc *p, uint8_t op, const void *data, size_t len,
                    unsigned core, uint64_t ref)
{
    ch_msg m = {.kind = op == CH_OP_CAST ? CH_MSG_CAST : CH_MSG_CALL, .data = data, .len = len};
    ch_sup_deliver(r, p, &m, core, ref);
}

/* The processes in migration state `state` (for or from `node`; 0: any), at most max of
 * them, in a malloc'd array (NULL and *n 0 when there are none or no memory). */
ch_proc **ch__ho_procs_in(ch_ho *h, uint8_t state, uint64_t node, size_t max, size_t *n)
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

/* ---- entry points -------------------------------------------------------------------- */

/* A node is gone: our frames to it come back, its processes' streams here are over. */
static void on_gone(ch_ho *h, uint64_t node)
{
    if (h->wire) ch_lanes_drop_peer(h->wire, node); /* what they carried comes back below */
    ch__ho_early_drop(h, node);
    ch__ho_source_gone(h, node);
    size_t n;
    ch_proc **v = ch__ho_procs_in(h, MP_AWAIT_END, node, h->await_end, &n);
    for (size_t i = 0; i < n; i++)
        ch__ho_end_await(h, v[i]);
    free(v);
    ho_update_gauge(h);
}

/* A frame from node m->node, in the block the coordinator or a lane copied it into. */
void ch__ho_on_in(ch_ho *h, const ch_mig_msg *m, size_t len)
{
    uint8_t *block = m->ptr;
    const uint8_t *f = block + CH_MIG_IN_OFF;
    if (m->frame == CH_F_MIG_DATA)
        block = ch__ho_on_data(h, m->node, f, (size_t)len, block) ? NULL : block;
    else if (m->frame == CH_F_MIG_ACK)
        ch__ho_on_ack(h, m->node, block, f, (size_t)len);
    else if (m->frame == CH_F_MIG_QUERY)
        ch__ho_on_query(h, m->node, f, (size_t)len);
    free(block);
}

void ch_ho_on_rec(ch_reactor *r, ch_rec *rec)
{
    ch_ho *h = r->ho;
    ch_mig_msg m = ch_mig_read(rec);
    if (!h) {
        if (m.op == CH_MIG_IN || m.op == CH_MIG_LANES) free(m.ptr);
        return;
    }
    switch (m.op) {
    case CH_MIG_RING:
        if (h->wire) ch_lanes_start(h->wire); /* the first ring comes when the node boots */
        ch__ho_on_ring(h, &m, rec);
        break;
    case CH_MIG_MARK:
        if (m.from_core < r->node->cores) h->mark_rh[m.from_core] = m.round;
        ch__ho_check_sealed(h);
        break;
    case CH_MIG_SEALED:
        h->sealed_rh = m.round;
        ch__ho_check_sealed(h);
        break;
    case CH_MIG_IMARK:
        h->imark_rh = m.round;
        ch__ho_check_sealed(h);
        break;
    case CH_MIG_UNHOLD:
        ch__ho_on_unhold(h, m.round);
        break;
    case CH_MIG_GONE:
        on_gone(h, m.node);
        break;
    case CH_MIG_IN: {
        uint64_t len;
        memcpy(&len, ch_rec_payload(rec), 8);
        ch__ho_on_in(h, &m, (size_t)len);
        break;
    }
    case CH_MIG_LANES:
        ch__ho_on_lanes(h, &m);
        free(m.ptr);
        break;
    default:
        CH_ERROR("unknown migration record %u", m.op);
    }
    ho_update_gauge(h);
}

bool ch_ho_intercept(ch_reactor *r, ch_rec *rec, ch_proc *p, unsigned core, uint64_t ref)
{
    ch_ho *h = r->ho;
    if (!h || r->shut) return false;
    uint8_t op = rec->op == CH_OP_CAST ? CH_OP_CAST : CH_OP_CALL;
    if (p && rec->op == CH_OP_CAST && ch__ho_kept_back(h, rec, p)) return ch__ho_hold_late(h, rec);
    if (p && p->mig && p->mig->state == MP_FROZEN) {
        ch__ho_forward(h, p, op, ch_rec_payload(rec), rec->len, core, ref);
        return true;
    }
    if (p && p->mig) /* installed, its forwarded messages not all here yet */
        return ch__ho_hold(h, rec, core, ref);
    if (p || (rec->flags & CH_REC_ROW)) return false;
    /* Not here, and it belongs here: it may be on its way. Held while this core's round
     * is open, and also while the coordinator already routes by a ring whose RING record
     * this core has not taken yet (bouncing it back to the old owner now could let it
     * overtake its sender's later messages). */
    ch_hashring *live = atomic_load_explicit(&r->node->ring, memory_order_acquire);
    if ((h->holding || live != h->ring) && live && ch_owner(r->node, live, rec->aux) == r->node->id)
        return ch__ho_hold(h, rec, core, ref);
    return false;
}

void ch_ho_proc_gone(ch_reactor *r, ch_proc *p)
{
    ch_ho *h = r->ho;
    ch_mig_proc *m = p->mig;
    p->mig = NULL;
    if (h && m->state == MP_FROZEN) h->frozen--;
    if (h && m->state == MP_AWAIT_END) {
        h->await_end--;
        if (m->aw) ch__ho_ackwait_step(h, m->aw);
    }
    free(m);
}

/* ---- life cycle ---------------------------------------------------------------------- */

/* CH_FAULT: comma-separated faults for tests (see tests/test_migration.c). */
static void read_faults(ch_ho *h)
{
    const char *f = getenv("CH_FAULT");
    if (!f) return;
    h->f_no_confirm = strstr(f, "no-confirm") != NULL;
    const char *c = strstr(f, "corrupt-frame:"), *s = strstr(f, "stall-target:");
    const char *l = strstr(f, "lane-cut:");
    if (c) h->f_corrupt = (uint32_t)strtoul(c + 14, NULL, 10);
    if (l) h->f_lane_cut = (uint32_t)strtoul(l + 9, NULL, 10);
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
    if (rc == 0) rc = ch_codec_rx_new(ho_batch_limit(), &h->rx);
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
    for (ho_sent *s = h->sent_head, *next; s; s = next) {
        next = s->next;
        free(s->raw);
        free(s);
    }
    for (size_t i = 0; i < h->nlanes; i++)
        ch_hbatch_free(&h->lanes[i].b);
    ch__ho_held_free(h);
    while (h->nspare)
        free(h->spare[--h->nspare]);
    ch_lanes_free(h->wire);
    ch__ho_early_drop(h, 0);
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
