/*
 * net/cluster/coord_route.c - work for processes that live on other nodes: casts and calls leave
 * as frames to the node the registry (or the ring) names, and a call's reply finds its way
 * back through a relay entry in the receiving coordinator's timer table; starts and stops
 * go out as one request per node, and come back as per-child results. A node whose view is
 * stale forwards, at most MAX_HOPS times.
 */
#include "coord_int.h"

/* ---- where an id lives --------------------------------------------------------------- */

/* Where a message goes. By the ring, first: every node switches rings at a point the
 * migration protocol knows (handover.h), which keeps each sender's order across a move.
 * By the registry row when the ring owner did not have the id (a process placed off its
 * ring owner, or refused by it): 0 when the row names no other node. */
static uint64_t ring_owner(ch_coord *c, uint64_t hash)
{
    return ch_owner(c->n, atomic_load(&c->n->ring), hash);
}

static uint64_t row_node(ch_coord *c, uint64_t hash, const char *id, size_t len)
{
    ch_regrow *row = ch_regtab_find(&c->reg, hash, id, len);
    return row && row->node != c->mt.self ? row->node : 0;
}

/* Where a process lives for a stop: its row's node, else its ring owner. */
static uint64_t where(ch_coord *c, uint64_t hash, const char *id, size_t len)
{
    ch_regrow *row = ch_regtab_find(&c->reg, hash, id, len);
    return row ? row->node : ring_owner(c, hash);
}

#define HOPS_ROW 0x80u /* in a CAST/CALL frame's hops: routed by the row, deliver there */

/* A message from a peer that still routes by the previous ring, for an id this node owned
 * there: it goes to the local core, which forwards it behind the process if that is moving
 * (in order with what the sender sent before), rather than straight to the new owner,
 * where it could overtake them. */
static bool old_owner_here(ch_coord *c, uint8_t hops, uint64_t hash)
{
    uint64_t prev = 0;
    if (!hops || !c->keep.prev_ring || ch_hashring_owner(c->keep.prev_ring, hash, &prev) < 0)
        return false;
    return prev == c->mt.self;
}

static void dead_letter(ch_coord *c, const char *id, size_t len, const char *why)
{
    ch_counters *s = &c->r->stats;
    atomic_store_explicit(&s->dead_letters,
                          atomic_load_explicit(&s->dead_letters, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    CH_DEBUG("dead letter for %.*s: %s", (int)len, id, why);
}

/* Delivers to the local owner core; `final` records are not routed again on a miss. */
static void to_local_core(ch_coord *c, uint8_t op, bool final, const char *id, size_t len,
                          uint64_t hash, const void *data, size_t dlen, unsigned src_core,
                          uint64_t ref)
{
    ch_rec h = {.op = op,
                .id_len = (uint8_t)len,
                .flags = final ? CH_REC_ROW : 0,
                .len = (uint32_t)dlen,
                .src_core = (uint16_t)src_core,
                .ref = ref,
                .aux = hash};
    ch_reactor_post(c->n, (unsigned)(hash % c->n->cores), &h, id, data, false);
}

/* The end of a CAST or CALL header: u8 id length, the id, u32 payload length. */
static size_t put_tail(uint8_t *hdr, size_t k, const char *id, size_t len, size_t dlen)
{
    hdr[k++] = (uint8_t)len;
    memcpy(hdr + k, id, len);
    k += len;
    uint32_t l32 = (uint32_t)dlen;
    memcpy(hdr + k, &l32, 4);
    return k + 4;
}

static int send_cast(ch_coord *c, uint64_t node, uint8_t hops, const char *id, size_t len,
                     const void *data, size_t dlen)
{
    uint8_t hdr[2 + CH_ID_MAX + 4];
    hdr[0] = hops;
    size_t k = put_tail(hdr, 1, id, len, dlen);
    return coord_send_frame(c, node, CH_F_CAST, hdr, k, data, dlen);
}

static int send_call(ch_coord *c, uint64_t node, uint8_t hops, uint16_t core, uint64_t ref,
                     const char *id, size_t len, const void *data, size_t dlen)
{
    uint8_t hdr[1 + 2 + 8 + 1 + CH_ID_MAX + 4];
    size_t k = 0;
    hdr[k++] = hops;
    memcpy(hdr + k, &core, 2);
    k += 2;
    memcpy(hdr + k, &ref, 8);
    k = put_tail(hdr, k + 8, id, len, dlen);
    return coord_send_frame(c, node, CH_F_CALL, hdr, k, data, dlen);
}

static void fail_call(ch_coord *c, unsigned core, uint64_t ref, int status)
{
    ch_reactor_reply(c->r, core, ref, status, NULL, 0);
}

static bool is_dead(ch_coord *c, uint64_t node)
{
    const ch_mem *m = ch_mtab_find(&c->mt, node);
    return !m || m->state == CH_MEMBER_DEAD;
}

/* by_row: the ring owner did not have it; `hops` may carry HOPS_ROW (from a peer). */
/* The owner by the ring a local sender routed with (its stamp, ch_route_msg): the
 * previous ring if that is the one, so that a message posted just before this node's
 * ring changed still goes to the old owner, in order with its sender's earlier ones (it
 * is forwarded from there behind the process). Peers' messages (stamp 0): this ring. A
 * dead old owner has nothing to forward behind: then this ring too. */
static uint64_t owner_for(ch_coord *c, uint16_t stamp, uint64_t hash)
{
    ch_hashring *cur = atomic_load(&c->n->ring);
    if (stamp && c->keep.prev_ring && cur && stamp != (uint16_t)ch_hashring_epoch(cur) &&
        stamp == (uint16_t)ch_hashring_epoch(c->keep.prev_ring)) {
        uint64_t old = ch_owner(c->n, c->keep.prev_ring, hash);
        if (!is_dead(c, old)) return old;
    }
    return ring_owner(c, hash);
}

/* Where a cast or call goes, for both (they differ only in what they send and how they
 * fail): to a local core (final: routed by the row, never routed again), nowhere (the row
 * names no other node), or to *node with *hops. */
enum { TO_LOCAL, TO_LOCAL_FINAL, TO_NOWHERE, TO_NODE };

static int decide(ch_coord *c, uint8_t *hops, bool by_row, uint16_t stamp, const char *id,
                  size_t len, uint64_t hash, uint64_t *node)
{
    if (*hops & HOPS_ROW) return TO_LOCAL_FINAL;
    if (by_row) {
        if (!(*node = row_node(c, hash, id, len))) return TO_NOWHERE;
        *hops |= HOPS_ROW;
        return TO_NODE;
    }
    *node = owner_for(c, stamp, hash);
    if (*node == c->mt.self || *hops >= MAX_HOPS || old_owner_here(c, *hops, hash)) return TO_LOCAL;
    return TO_NODE;
}

/* ---- casts kept while a round is open (design: migration/handover.h) ------------------- */

#define KEPT_MAX (256u << 20) /* bytes of copies per node; past it, a target's crash may lose */

/* A cast to `node` is kept when node is a new owner of its id and the round is open: this
 * node's own moves or a peer's are not all confirmed yet. New since the last settled ring,
 * not only since the previous one: when a ring change (another member's death) comes
 * while a target is down but not yet declared dead, the target is the previous ring's
 * owner too, and its processes' casts still need a way back to their sources. */
static bool keep_wanted(ch_coord *c, uint64_t node, uint64_t hash)
{
    if (!c->keep.settled_ring || (c->mig.unheld && c->mig.end_sent)) return false;
    return ch_owner(c->n, c->keep.settled_ring, hash) != node;
}

/* Entry: u64 node | str8 id | blob32 data, in send order. */
static void keep_cast(ch_coord *c, uint64_t node, uint64_t hash, const char *id, size_t len,
                      const void *data, size_t dlen)
{
    if (c->keep.full || !keep_wanted(c, node, hash)) return;
    if (c->keep.casts.len + 13 + len + dlen > KEPT_MAX) {
        c->keep.full = true;
        CH_WARN("over %u MiB of casts kept for moving processes: no more this round (a "
                "target's crash may lose the next ones)",
                KEPT_MAX >> 20);
        return;
    }
    ch_wbuf_put_u64(&c->keep.casts, node);
    ch_wbuf_put_str8(&c->keep.casts, id, len);
    ch_wbuf_put_blob32(&c->keep.casts, data, dlen);
    if (c->keep.casts.err) {
        CH_ERROR("no memory to keep casts for moving processes: %s",
                 ch_strerror(c->keep.casts.err));
        ch_wbuf_reset(&c->keep.casts);
        c->keep.full = true;
    }
}

void coord_kept_drop(ch_coord *c)
{
    ch_wbuf_free(&c->keep.casts);
    c->keep.full = false;
}

static void route_cast(ch_coord *c, uint8_t hops, bool by_row, uint16_t stamp, const char *id,
                       size_t len, uint64_t hash, const void *data, size_t dlen)
{
    uint64_t node = 0;
    int to = decide(c, &hops, by_row, stamp, id, len, hash, &node);
    if (to == TO_LOCAL || to == TO_LOCAL_FINAL)
        to_local_core(c, CH_OP_CAST, to == TO_LOCAL_FINAL, id, len, hash, data, dlen, 0, 0);
    else if (to == TO_NOWHERE)
        dead_letter(c, id, len, "nowhere");
    else if (send_cast(c, node, hops, id, len, data, dlen) < 0)
        dead_letter(c, id, len, "owner unreachable");
    else
        keep_cast(c, node, hash, id, len, data, dlen);
}

/* One kept cast, routed again by `ring`. One for this node goes through its core's inbox:
 * before the ring is published, it is then ahead of every cast application threads route
 * by that ring (a pump on this node), as it was when sent. */
static void reroute(ch_coord *c, const ch_hashring *ring, ch_span id, ch_span data)
{
    uint64_t hash = XXH3_64bits(id.p, id.len), owner = ch_owner(c->n, ring, hash);
    if (owner != c->mt.self) {
        if (send_cast(c, owner, 0, (const char *)id.p, id.len, data.p, data.len) < 0)
            dead_letter(c, (const char *)id.p, id.len, "owner unreachable");
        return;
    }
    ch_rec h = {
        .op = CH_OP_CAST, .id_len = (uint8_t)id.len, .len = (uint32_t)data.len, .aux = hash};
    if (ch_reactor_post_inbox_id(c->n, (unsigned)(hash % c->n->cores), &h, id.p, data.p) < 0)
        dead_letter(c, (const char *)id.p, id.len, "mailbox full");
}

/* The casts kept for dead nodes that `ring` no longer has go again, in the order they were
 * sent: those for processes a dead target never confirmed reach their source, which still
 * runs them (never frozen, or thawed), behind what the same sender sent there before the
 * move (one connection, FIFO) and ahead of what it sends by `ring`. Called before `ring`
 * is published (coord_rebuild_ring), and when a member is declared gone. */
void coord_kept_reroute(ch_coord *c, const ch_hashring *ring)
{
    if (!c->keep.casts.len || !ring) return;
    ch_wbuf old = c->keep.casts;
    ch_wbuf_init(&c->keep.casts); /* the others stay, in order */
    ch_rbuf rb;
    ch_rbuf_init(&rb, old.data, old.len);
    size_t again = 0;
    while (ch_rbuf_left(&rb)) {
        uint64_t to = ch_rbuf_get_u64(&rb);
        ch_span id = ch_rbuf_get_str8(&rb), data = ch_rbuf_get_blob32(&rb);
        if (!ch_rbuf_ok(&rb)) break;
        if (!ch_hashring_has(ring, to) && is_dead(c, to)) {
            reroute(c, ring, id, data);
            again++;
            continue;
        }
        ch_wbuf_put_u64(&c->keep.casts, to);
        ch_wbuf_put_str8(&c->keep.casts, id.p, id.len);
        ch_wbuf_put_blob32(&c->keep.casts, data.p, data.len);
    }
    ch_wbuf_free(&old);
    if (again)
        CH_INFO("%zu casts sent to a node that died while processes moved: routed again", again);
}

static void route_call(ch_coord *c, uint8_t hops, bool by_row, uint16_t stamp, const char *id,
                       size_t len, uint64_t hash, const void *data, size_t dlen, unsigned core,
                       uint64_t ref)
{
    uint64_t node = 0;
    int to = decide(c, &hops, by_row, stamp, id, len, hash, &node), rc;
    if (to == TO_LOCAL || to == TO_LOCAL_FINAL)
        to_local_core(c, CH_OP_CALL, to == TO_LOCAL_FINAL, id, len, hash, data, dlen, core, ref);
    else if (to == TO_NOWHERE)
        fail_call(c, core, ref, CH_ENOPROC);
    else if ((rc = send_call(c, node, hops, (uint16_t)core, ref, id, len, data, dlen)) < 0)
        fail_call(c, core, ref, rc);
}

/* Records from this node's threads for processes elsewhere. */
void coord_on_out_cast(ch_coord *c, ch_rec *rec)
{
    route_cast(c, 0, rec->flags & CH_REC_ROW, rec->pad2, ch_rec_id(rec), rec->id_len, rec->aux,
               ch_rec_payload(rec), rec->len);
}

void coord_on_out_call(ch_coord *c, ch_rec *rec)
{
    route_call(c, 0, rec->flags & CH_REC_ROW, rec->pad2, ch_rec_id(rec), rec->id_len, rec->aux,
               ch_rec_payload(rec), rec->len, rec->src_core, rec->ref);
}

void coord_on_out_fcall(ch_coord *c, ch_rec *rec)
{
    ch_fcall *fc = (ch_fcall *)(uintptr_t)rec->ref;
    uint64_t pid = ch_sup_pending_foreign(c->r, fc);
    if (!pid) {
        ch_fcall_complete(fc, -ENOMEM, NULL, 0);
        return;
    }
    route_call(c, 0, false, rec->pad2, ch_rec_id(rec), rec->id_len, rec->aux, ch_rec_payload(rec),
               rec->len, c->r->core, pid);
}

void ch_coord_miss(ch_reactor *r, ch_rec *rec, unsigned core, uint64_t ref)
{
    ch_rec h = *rec;
    h.op = rec->op == CH_OP_CAST ? CH_OP_CAST : CH_OP_CALL;         /* an FCALL has its entry now */
    h.flags = (uint8_t)((h.flags & ~CH_REC_INDIRECT) | CH_REC_ROW); /* by the row now */
    h.src_core = (uint16_t)core;
    h.ref = ref;
    ch_reactor_post(r->node, r->node->cores, &h, ch_rec_id(rec), ch_rec_payload(rec), false);
}

/* Frames from peers. */
static void on_cast_frame(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint8_t hops = ch_rbuf_get_u8(rb);
    ch_span id = ch_rbuf_get_str8(rb), data = ch_rbuf_get_blob32(rb);
    if (!ch_rbuf_done(rb) || id.len == 0) return;
    if (data.len > c->n->cfg.max_message)
        return dead_letter(c, (const char *)id.p, id.len, "too large");
    route_cast(c, (uint8_t)(hops + 1), false, 0, (const char *)id.p, id.len,
               XXH3_64bits(id.p, id.len), data.p, data.len);
}

static void on_call_frame(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint8_t hops = ch_rbuf_get_u8(rb);
    uint16_t core = ch_rbuf_get_u16(rb);
    uint64_t ref = ch_rbuf_get_u64(rb);
    ch_span id = ch_rbuf_get_str8(rb), data = ch_rbuf_get_blob32(rb);
    ch_mem *from = ch_conn_ud(conn);
    if (!ch_rbuf_done(rb) || id.len == 0 || !from) return;
    uint64_t relay =
        ch_sup_pending(c->r, CH_TK_RELAY, NULL, (void *)(uintptr_t)from->id, ref, RELAY_MS);
    if (!relay) return;
    ch_timer *e = ch_timers_get(&c->r->timers, relay);
    e->len = core;
    if (data.len > c->n->cfg.max_message) {
        fail_call(c, c->r->core, relay, CH_EMSGSIZE);
        return;
    }
    route_call(c, (uint8_t)(hops + 1), false, 0, (const char *)id.p, id.len,
               XXH3_64bits(id.p, id.len), data.p, data.len, c->r->core, relay);
}

void ch_coord_relay_done(ch_reactor *r, uint64_t peer, uint16_t core, uint64_t ref, int status,
                         const void *data, size_t len)
{
    ch_coord *c = coord_of(r);
    uint8_t hdr[2 + 8 + 4 + 4];
    int32_t st = status;
    uint32_t l32 = (uint32_t)len;
    memcpy(hdr, &core, 2);
    memcpy(hdr + 2, &ref, 8);
    memcpy(hdr + 10, &st, 4);
    memcpy(hdr + 14, &l32, 4);
    coord_send_frame(c, peer, CH_F_REPLY, hdr, sizeof(hdr), data, len); /* the caller may be gone */
}

static void on_reply_frame(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint16_t core = ch_rbuf_get_u16(rb);
    uint64_t ref = ch_rbuf_get_u64(rb);
    int32_t status = (int32_t)ch_rbuf_get_u32(rb);
    ch_span data = ch_rbuf_get_blob32(rb);
    if (!ch_rbuf_done(rb) || core > c->n->cores) return;
    ch_rec h = {
        .op = CH_OP_REPLY, .len = (uint32_t)data.len, .ref = ref, .aux = (uint64_t)(int64_t)status};
    ch_reactor_post(c->n, core, &h, NULL, data.p, false);
}

/* ---- remote starts and stops --------------------------------------------------------- */

typedef struct rbatch { /* this node's coordinator part of a batch */
    ch_batch *b;
    unsigned remaining; /* node requests not answered */
} rbatch;

typedef struct rreq { /* one request to one node */
    rbatch *parent;
    uint64_t node;
    uint8_t op;
    uint32_t n;
    uint32_t idx[];
} rreq;

/* Children a peer confirms it started enter our replica at once, so that a lookup made
 * right after a blocking start finds them; the peer's own registry delta, which may come
 * later, replaces these rows with the same content. */
static void note_started(ch_coord *c, const rreq *q, const int *results)
{
    ch_batch *b = q->parent->b;
    ch_mem *m = ch_mtab_find(&c->mt, q->node);
    if (q->op != CH_OP_START || b->rolling_back || !m || !m->cores) return;
    for (uint32_t i = 0; i < q->n; i++) {
        const ch_spec *s = b->specs[q->idx[i]];
        if (results[q->idx[i]] != 0 || !s || !s->type) continue;
        ch_regrow *row = ch_regrow_new(q->node, (uint16_t)(s->hash % m->cores), 0, ch_spec_id(s),
                                       s->id_len, s->type->name, strlen(s->type->name),
                                       ch_spec_tag(s), s->tag_len, s->restart, s->shutdown_ms,
                                       ch_spec_arg(s), s->arg_len, ch_spec_meta(s), s->meta_len);
        if (row) coord_reg_put(c, row);
    }
}

static void rbatch_step(rbatch *rb)
{
    if (--rb->remaining) return;
    ch_batch *b = rb->b;
    free(rb);
    ch_batch_core_done(b);
}

static int *batch_results(ch_batch *b)
{
    return b->rolling_back ? b->scratch : b->results;
}

void ch_coord_remote_batch_done(ch_reactor *r, void *req, int status, const void *payload,
                                size_t len)
{
    rreq *q = req;
    int *results = batch_results(q->parent->b);
    ch_rbuf rb;
    ch_rbuf_init(&rb, payload, len);
    uint32_t n = status ? 0 : ch_rbuf_get_u32(&rb);
    if (!status && n != q->n) status = -EBADMSG;
    for (uint32_t i = 0; i < q->n; i++) {
        int32_t v = status ? status : (int32_t)ch_rbuf_get_u32(&rb);
        results[q->idx[i]] = ch_rbuf_ok(&rb) ? v : -EBADMSG;
    }
    note_started(coord_of(r), q, results);
    rbatch *parent = q->parent;
    free(q);
    rbatch_step(parent);
}

static void put_spec(ch_wbuf *w, const ch_spec *s)
{
    ch_wbuf_put_str8(w, ch_spec_id(s), s->id_len);
    ch_wbuf_put_str8(w, s->type ? s->type->name : "", s->type ? strlen(s->type->name) : 0);
    ch_wbuf_put_u8(w, s->restart);
    ch_wbuf_put_u32(w, s->shutdown_ms);
    ch_wbuf_put_blob32(w, ch_spec_arg(s), s->arg_len);
    ch_wbuf_put_blob32(w, ch_spec_meta(s), s->meta_len);
    ch_wbuf_put_str8(w, ch_spec_tag(s), s->tag_len);
}

/* Sends the children idx[0..n) of b to `node` as one request. */
static void send_request(ch_coord *c, rbatch *rb, uint8_t op, uint64_t node, const uint32_t *idx,
                         uint32_t n)
{
    ch_batch *b = rb->b;
    int *results = batch_results(b);
    ch_spec **keys = b->rolling_back ? b->keys : b->specs;
    rreq *q = malloc(sizeof(*q) + n * sizeof(uint32_t));
    uint64_t id =
        q ? ch_sup_pending(c->r, CH_TK_REMOTE, q, NULL, 0, c->n->cfg.start_timeout_ms) : 0;
    int rc = id ? 0 : -ENOMEM;
    ch_wbuf w;
    ch_wbuf_init(&w);
    if (id) {
        q->parent = rb;
        q->node = node;
        q->op = op;
        q->n = n;
        memcpy(q->idx, idx, n * sizeof(uint32_t));
        ch_wbuf_put_u64(&w, id);
        ch_wbuf_put_u8(&w, (uint8_t)((b->hops + 1) | (b->crash ? CH_HOPS_CRASH : 0)));
        ch_wbuf_put_u32(&w, n);
        for (uint32_t i = 0; i < n; i++)
            put_spec(&w, keys[idx[i]]);
        rc = coord_send_to(c, node, op == CH_OP_START ? CH_F_START_REQ : CH_F_STOP_REQ, &w);
        if (rc < 0) ch_timers_free(&c->r->timers, ch_timers_get(&c->r->timers, id));
    }
    ch_wbuf_free(&w);
    if (rc == 0) return;
    for (uint32_t i = 0; i < n; i++)
        results[idx[i]] = rc == -ENOTCONN ? -EHOSTUNREACH : rc;
    free(q);
    rbatch_step(rb);
}

static uint64_t owner_of(ch_coord *c, uint8_t op, const ch_spec *s)
{
    if (op == CH_OP_STOP) return where(c, s->hash, ch_spec_id(s), s->id_len);
    return ring_owner(c, s->hash);
}

static void forwarded_hook(ch_coord *c, const ch_spec *s, uint64_t node)
{
    if (!ch_hooks_any(&c->n->hooks, CH_HOOK_FORWARDED_MIGRATION)) return;
    ch_hook_event ev = {.point = CH_HOOK_FORWARDED_MIGRATION,
                        .id = ch_spec_id(s),
                        .id_len = s->id_len,
                        .node = node,
                        .epoch = c->epoch};
    ch_hooks_run(&c->n->hooks, &ev);
}

/* CH_OP_START / CH_OP_STOP at the coordinator: the children other nodes own. */
void coord_on_out_batch(ch_coord *c, ch_rec *rec)
{
    ch_batch *b = (ch_batch *)(uintptr_t)rec->ref;
    const uint32_t *idx = ch_rec_payload(rec);
    uint32_t n = rec->len / 4;
    ch_spec **keys = b->rolling_back ? b->keys : b->specs;
    rbatch *rb = calloc(1, sizeof(*rb));
    uint64_t *owner = malloc(n * sizeof(*owner) + 1);
    uint32_t *group = malloc(n * sizeof(*group) + 1);
    if (!rb || !owner || !group) {
        for (uint32_t i = 0; i < n; i++)
            batch_results(b)[idx[i]] = -ENOMEM;
        free(rb), free(owner), free(group);
        ch_batch_core_done(b);
        return;
    }
    rb->b = b;
    rb->remaining = 1; /* released below, once every request is out */
    for (uint32_t i = 0; i < n; i++)
        owner[i] = owner_of(c, rec->op, keys[idx[i]]);
    for (uint32_t i = 0; i < n; i++) {
        if (owner[i] == 0) continue;
        uint64_t node = owner[i];
        uint32_t k = 0;
        for (uint32_t j = i; j < n; j++)
            if (owner[j] == node) {
                group[k++] = idx[j];
                owner[j] = 0;
                if (b->hops && rec->op == CH_OP_START) forwarded_hook(c, keys[idx[j]], node);
            }
        rb->remaining++;
        send_request(c, rb, rec->op, node, group, k);
    }
    free(owner);
    free(group);
    rbatch_step(rb);
}

typedef struct remote_done {
    uint64_t peer, req;
    uint8_t resp;
    uint32_t n;
    int results[];
} remote_done;

static void send_remote_done(ch_node *n, void *ud)
{
    remote_done *d = ud;
    ch_coord *c = n->coord;
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u64(&w, d->req);
    ch_wbuf_put_u32(&w, d->n);
    for (uint32_t i = 0; i < d->n; i++)
        ch_wbuf_put_u32(&w, (uint32_t)d->results[i]);
    coord_send_to(c, d->peer, d->resp, &w);
    ch_wbuf_free(&w);
    free(d);
}

/* Completion of a batch run for a peer: runs on a reactor thread, so hand the answer to
 * the coordinator, which owns the connection. */
static void remote_batch_finished(void *ud, const int *results, size_t count)
{
    remote_done *d = ud;
    memcpy(d->results, results, count * sizeof(int));
    ch_post post = {.fn = send_remote_done, .ud = d};
    ch_rec h = {.op = CH_OP_POST, .len = sizeof(post)};
    ch_node *n = ch_reactor_self()->node;
    if (ch_reactor_post(n, n->cores, &h, NULL, &post, false) < 0) free(d);
}

static void on_batch_req(ch_coord *c, ch_conn *conn, ch_rbuf *rb, bool start)
{
    ch_mem *from = ch_conn_ud(conn);
    uint64_t req = ch_rbuf_get_u64(rb);
    uint8_t hops = ch_rbuf_get_u8(rb);
    uint32_t n = ch_rbuf_get_u32(rb);
    if (!ch_rbuf_ok(rb) || !from || n > ch_rbuf_left(rb)) return;
    ch_child_spec *specs = calloc(n ? n : 1, sizeof(*specs));
    remote_done *d = malloc(sizeof(*d) + (n ? n : 1) * sizeof(int));
    char(*types)[CH_TYPE_NAME_MAX + 1] = calloc(n ? n : 1, sizeof(*types));
    char(*tags)[CH_TAG_MAX + 1] = calloc(n ? n : 1, sizeof(*tags));
    if (!specs || !d || !types || !tags) goto out;
    for (uint32_t i = 0; i < n && ch_rbuf_ok(rb); i++) {
        ch_span id = ch_rbuf_get_str8(rb);
        ch_rbuf_get_cstr8(rb, types[i], sizeof(types[i]));
        specs[i].id = (const char *)id.p;
        specs[i].id_len = id.len ? id.len : CH_ID_MAX + 1; /* 0 would mean strlen */
        specs[i].type = types[i];
        specs[i].restart = (ch_restart)ch_rbuf_get_u8(rb);
        specs[i].shutdown_ms = ch_rbuf_get_u32(rb);
        ch_span arg = ch_rbuf_get_blob32(rb), meta = ch_rbuf_get_blob32(rb);
        specs[i].arg = arg.p, specs[i].arg_len = arg.len;
        specs[i].meta = meta.p, specs[i].meta_len = meta.len;
        ch_rbuf_get_cstr8(rb, tags[i], sizeof(tags[i]));
        specs[i].tag = tags[i];
    }
    if (!ch_rbuf_ok(rb)) {
        CH_WARN("malformed %s from %s ignored", start ? "START_REQ" : "STOP_REQ",
                ch_conn_addr(conn));
        goto out;
    }
    d->peer = from->id;
    d->req = req;
    d->resp = start ? CH_F_START_RESP : CH_F_STOP_RESP;
    d->n = n;
    const char **ids = (const char **)types; /* reuse: stop needs only ids and lengths */
    size_t *lens = NULL;
    int rc;
    if (start) {
        rc = ch_batch_submit(c->n, CH_OP_START, specs, n, NULL, NULL, hops, remote_batch_finished,
                             d);
    } else {
        lens = malloc((n ? n : 1) * sizeof(*lens));
        ids = malloc((n ? n : 1) * sizeof(*ids));
        for (uint32_t i = 0; lens && ids && i < n; i++) {
            ids[i] = specs[i].id;
            lens[i] = specs[i].id_len;
        }
        rc = lens && ids ? ch_batch_submit(c->n, CH_OP_STOP, NULL, n, ids, lens, hops,
                                           remote_batch_finished, d)
                         : -ENOMEM;
        free(lens);
        free(ids);
    }
    if (rc == 0) d = NULL; /* the batch owns it now */
    if (rc < 0 && d) {
        for (uint32_t i = 0; i < n; i++)
            d->results[i] = rc;
        send_remote_done(c->n, d);
        d = NULL;
    }
out:
    free(specs);
    free(d);
    free(types);
    free(tags);
}

static void on_batch_resp(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint64_t req = ch_rbuf_get_u64(rb);
    ch_timer *e = ch_rbuf_ok(rb) ? ch_timers_get(&c->r->timers, req) : NULL;
    if (!e || e->kind != CH_TK_REMOTE) return;
    void *q = e->a;
    ch_timers_free(&c->r->timers, e);
    ch_coord_remote_batch_done(c->r, q, 0, rb->p + rb->pos, ch_rbuf_left(rb));
}

/* ---- frames ------------------------------------------------------------------------- */

static void on_start_req(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    on_batch_req(c, conn, rb, true);
}

static void on_stop_req(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    on_batch_req(c, conn, rb, false);
}

void coord_route_frames(ch_coord *c)
{
    static const coord_frame_entry frames[] = {
        {CH_F_CAST, on_cast_frame},      {CH_F_CALL, on_call_frame},
        {CH_F_REPLY, on_reply_frame},    {CH_F_START_REQ, on_start_req},
        {CH_F_STOP_REQ, on_stop_req},    {CH_F_START_RESP, on_batch_resp},
        {CH_F_STOP_RESP, on_batch_resp},
    };
    COORD_FRAMES(c, frames);
}
