/*
 * net/cluster/coord_registry.c - the coordinator's replica of the hub's registry. Local cores
 * report inserts and removals; they are applied here and streamed to every peer in
 * batched REG_DELTA frames. Every sync interval each node sends a digest (count and XOR)
 * of its own rows; a peer whose replica disagrees asks for the full set (anti-entropy).
 */
#include "coord_int.h"

/* ---- registry replica --------------------------------------------------------------- */

static void digest_apply(ch_coord *c, const ch_regrow *row, int sign)
{
    ch_mem *m = ch_mtab_find(&c->mt, row->node);
    if (!m) return;
    m->reg_count += (uint64_t)sign;
    m->reg_xor ^= ch_regrow_digest(row);
}

/* Two nodes claim one id while it moves: the old owner's row (in a snapshot or delta that
 * crossed the new owner's) must not replace the new owner's. The row on the id's ring
 * owner wins; between two others, the newer write. */
static bool replaces(ch_coord *c, const ch_regrow *row)
{
    ch_regrow *cur = ch_regtab_find(&c->reg, row->hash, ch_regrow_id(row), row->id_len);
    if (!cur || cur->node == row->node) return true;
    ch_hashring *ring = atomic_load(&c->n->ring);
    uint64_t owner = ring ? ch_owner(c->n, ring, row->hash) : 0;
    return cur->node != owner || row->node == owner;
}

void coord_reg_put(ch_coord *c, ch_regrow *row)
{
    ch_regrow *old;
    if (!replaces(c, row)) {
        free(row);
        return;
    }
    if (ch_regtab_put(&c->reg, row, &old) < 0) {
        free(row);
        return;
    }
    if (old) {
        digest_apply(c, old, -1);
        free(old);
    }
    digest_apply(c, row, +1);
}

static void reg_del(ch_coord *c, uint64_t node, const char *id, size_t len)
{
    ch_regrow *row = ch_regtab_find(&c->reg, XXH3_64bits(id, len), id, len);
    if (!row || row->node != node) return; /* already replaced by a newer owner */
    ch_regtab_remove(&c->reg, row);
    digest_apply(c, row, -1);
    free(row);
}

/* A REG_REMOVE entry, as cores post it and deltas carry it. */
static void put_remove(ch_wbuf *w, uint64_t node, const char *id, size_t len)
{
    ch_wbuf_put_u8(w, REG_REMOVE);
    ch_wbuf_put_u64(w, node);
    ch_wbuf_put_str8(w, id, len);
}

static void put_row(ch_wbuf *w, const ch_regrow *r)
{
    ch_wbuf_put_u64(w, r->node);
    ch_wbuf_put_u16(w, r->core);
    ch_wbuf_put_u32(w, r->incarnation);
    ch_wbuf_put_str8(w, ch_regrow_id(r), r->id_len);
    ch_wbuf_put_str8(w, ch_regrow_type(r), r->type_len);
    ch_wbuf_put_u8(w, r->restart);
    ch_wbuf_put_u32(w, r->shutdown_ms);
    ch_wbuf_put_blob32(w, ch_regrow_arg(r), r->arg_len);
    ch_wbuf_put_blob32(w, ch_regrow_meta(r), r->meta_len);
    ch_wbuf_put_str8(w, ch_regrow_tag(r), r->tag_len);
}

static ch_regrow *get_row(ch_rbuf *rb)
{
    uint64_t node = ch_rbuf_get_u64(rb);
    uint16_t core = ch_rbuf_get_u16(rb);
    uint32_t inc = ch_rbuf_get_u32(rb);
    ch_span id = ch_rbuf_get_str8(rb), type = ch_rbuf_get_str8(rb);
    uint8_t restart = ch_rbuf_get_u8(rb);
    uint32_t shutdown = ch_rbuf_get_u32(rb);
    ch_span arg = ch_rbuf_get_blob32(rb), meta = ch_rbuf_get_blob32(rb), tag = ch_rbuf_get_str8(rb);
    if (!ch_rbuf_ok(rb)) return NULL;
    ch_regrow *r = ch_regrow_new(node, core, inc, (const char *)id.p, id.len, (const char *)type.p,
                                 type.len, (const char *)tag.p, tag.len, restart, shutdown, arg.p,
                                 arg.len, meta.p, meta.len);
    if (!r) ch_rbuf_fail(rb);
    return r;
}

void coord_flush_delta(ch_coord *c)
{
    if (!c->delta.count) return;
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u32(&w, c->delta.count);
    ch_wbuf_put_bytes(&w, c->delta.buf.data, c->delta.buf.len);
    coord_send_all(c, CH_F_REG_DELTA, &w);
    ch_wbuf_free(&w);
    ch_wbuf_reset(&c->delta.buf);
    c->delta.count = 0;
}

static void delta_timer(ch_reactor *r, uint64_t arg)
{
    ch_coord *c = coord_of(r);
    c->delta.timer = false;
    coord_flush_delta(c);
}

static void schedule_flush(ch_coord *c)
{
    if (c->delta.buf.len >= DELTA_FLUSH) coord_flush_delta(c);
    if (c->delta.timer || !c->delta.count) return;
    c->delta.timer = ch_sup_timer_fn(c->r, 2, delta_timer, 0) != 0;
    if (!c->delta.timer) coord_flush_delta(c);
}

/* Forgets this node's row of an id here, and at every peer as a core's removal would. */
void coord_reg_drop_own(ch_coord *c, const char *id, size_t len)
{
    reg_del(c, c->mt.self, id, len);
    put_remove(&c->delta.buf, c->mt.self, id, len); /* out as a core's own removal goes */
    c->delta.count++;
    schedule_flush(c);
}

/* A local core's REG record: payload = u8 op + row (insert) or u8 op + u64 node + id. */
void coord_on_local_reg(ch_coord *c, ch_rec *rec)
{
    ch_rbuf rb;
    ch_rbuf_init(&rb, ch_rec_payload(rec), rec->len);
    uint8_t op = ch_rbuf_get_u8(&rb);
    if (op == REG_INSERT) {
        ch_regrow *row = get_row(&rb);
        if (row) coord_reg_put(c, row);
    } else {
        uint64_t node = ch_rbuf_get_u64(&rb);
        ch_span id = ch_rbuf_get_str8(&rb);
        if (ch_rbuf_ok(&rb)) reg_del(c, node, (const char *)id.p, id.len);
    }
    if (!ch_rbuf_ok(&rb)) return;
    ch_wbuf_put_bytes(&c->delta.buf, ch_rec_payload(rec), rec->len);
    c->delta.count++;
    schedule_flush(c);
}

static void post_reg(ch_reactor *r, const ch_wbuf *w)
{
    if (w->err) {
        CH_ERROR("registry update not encoded: %s", ch_strerror(w->err));
        return;
    }
    ch_rec h = {.op = CH_OP_REG, .len = (uint32_t)w->len};
    ch_reactor_post(r->node, r->node->cores, &h, NULL, w->data, false);
}

static void post_row(ch_reactor *r, const ch_proc *p, uint64_t node, uint16_t core)
{
    const ch_spec *s = p->spec;
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u8(&w, REG_INSERT);
    ch_wbuf_put_u64(&w, node);
    ch_wbuf_put_u16(&w, core);
    ch_wbuf_put_u32(&w, p->incarnation);
    ch_wbuf_put_str8(&w, ch_spec_id(s), s->id_len);
    ch_wbuf_put_str8(&w, s->type->name, strlen(s->type->name));
    ch_wbuf_put_u8(&w, s->restart);
    ch_wbuf_put_u32(&w, s->shutdown_ms);
    ch_wbuf_put_blob32(&w, ch_spec_arg(s), s->arg_len);
    ch_wbuf_put_blob32(&w, ch_spec_meta(s), s->meta_len);
    ch_wbuf_put_str8(&w, ch_spec_tag(s), s->tag_len);
    post_reg(r, &w);
    ch_wbuf_free(&w);
}

void ch_coord_local_insert(ch_reactor *r, const ch_proc *p)
{
    post_row(r, p, r->node->id, (uint16_t)r->core);
}

void ch_coord_local_moved(ch_reactor *r, const ch_proc *p, uint64_t node, uint16_t core)
{
    post_row(r, p, node, core);
}

void ch_coord_local_remove(ch_reactor *r, const ch_proc *p)
{
    if (r->node->coord->f_lose_removes) return; /* set before the cores run: read-only */
    ch_wbuf w;
    ch_wbuf_init(&w);
    put_remove(&w, r->node->id, ch_spec_id(p->spec), p->spec->id_len);
    post_reg(r, &w);
    ch_wbuf_free(&w);
}

static void on_reg_delta(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint32_t count = ch_rbuf_get_u32(rb);
    for (uint32_t i = 0; i < count && ch_rbuf_ok(rb); i++) {
        uint8_t op = ch_rbuf_get_u8(rb);
        if (op == REG_INSERT) {
            ch_regrow *row = get_row(rb);
            if (row) coord_reg_put(c, row);
        } else if (op == REG_REMOVE) {
            uint64_t node = ch_rbuf_get_u64(rb);
            ch_span id = ch_rbuf_get_str8(rb);
            if (ch_rbuf_ok(rb)) reg_del(c, node, (const char *)id.p, id.len);
        } else {
            ch_rbuf_fail(rb);
        }
    }
    if (!ch_rbuf_ok(rb)) CH_WARN("malformed REG_DELTA from %s ignored", ch_conn_addr(conn));
}

void coord_send_digest(ch_coord *c, ch_conn *conn)
{
    /* The digest counts every local change: the peer must have them all first, or a busy
     * node (a migration changes thousands of rows a second) would look out of sync at
     * every digest and pay a full resync each time. */
    coord_flush_delta(c);
    ch_mem *me = ch_mtab_self(&c->mt);
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u64(&w, me->id);
    ch_wbuf_put_u64(&w, me->reg_count);
    ch_wbuf_put_u64(&w, me->reg_xor);
    if (!w.err) ch_conn_send(conn, CH_F_REG_DIGEST, w.data, w.len);
    ch_wbuf_free(&w);
}

static void on_reg_digest(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint64_t owner = ch_rbuf_get_u64(rb), count = ch_rbuf_get_u64(rb), x = ch_rbuf_get_u64(rb);
    ch_mem *m = ch_mtab_find(&c->mt, owner);
    if (!ch_rbuf_ok(rb) || !m || owner == c->mt.self) return;
    if (m->reg_count == count && m->reg_xor == x) return;
    CH_DEBUG("registry rows of %016llx differ (%llu vs %llu): resync", (unsigned long long)owner,
             (unsigned long long)m->reg_count, (unsigned long long)count);
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u64(&w, owner);
    if (!w.err) ch_conn_send(conn, CH_F_REG_SYNC_REQ, w.data, w.len);
    ch_wbuf_free(&w);
}

static void on_reg_sync_req(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint64_t owner = ch_rbuf_get_u64(rb);
    if (!ch_rbuf_ok(rb) || owner != c->mt.self) return;
    coord_flush_delta(c); /* keep deltas ordered before the snapshot */
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u64(&w, owner);
    size_t at = w.len;
    ch_wbuf_put_u32(&w, 0);
    uint32_t k = 0;
    for (size_t i = 0; i < c->reg.cap; i++) {
        ch_regrow *r = c->reg.slots[i];
        if (r && r->node == owner) {
            put_row(&w, r);
            k++;
        }
    }
    if (!w.err) {
        memcpy(w.data + at, &k, 4); /* little-endian hosts only, like the rest */
        ch_conn_send(conn, CH_F_REG_SYNC, w.data, w.len);
    }
    ch_wbuf_free(&w);
}

static void hook_row_removed(ch_coord *c, const ch_regrow *r)
{
    if (!ch_hooks_any(&c->n->hooks, CH_HOOK_REGISTRY_REMOVE)) return;
    ch_hook_event ev = {.point = CH_HOOK_REGISTRY_REMOVE,
                        .id = ch_regrow_id(r),
                        .id_len = r->id_len,
                        .core = r->core,
                        .incarnation = r->incarnation,
                        .reason = CH_REASON_STOPPED,
                        .node = r->node,
                        .epoch = c->epoch};
    ch_hooks_run(&c->n->hooks, &ev);
}

void coord_reg_reassign(ch_coord *c, ch_regrow *row, uint64_t node)
{
    hook_row_removed(c, row);
    digest_apply(c, row, -1);
    ch_mem *m = ch_mtab_find(&c->mt, node);
    row->node = node;
    row->core = (uint16_t)(m && m->cores ? row->hash % m->cores : 0);
    digest_apply(c, row, +1);
}

/* Forgets every row of a member; `gone`: it left the hub, so each removal is an event. */
void coord_drop_rows_of(ch_coord *c, uint64_t owner, bool gone)
{
    for (size_t i = 0; i < c->reg.cap;) {
        ch_regrow *r = c->reg.slots[i];
        if (r && r->node == owner) {
            ch_regtab_remove(&c->reg, r); /* may shift another row into slot i */
            digest_apply(c, r, -1);
            if (gone) hook_row_removed(c, r);
            free(r);
            continue;
        }
        i++;
    }
}

static void on_reg_sync(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint64_t owner = ch_rbuf_get_u64(rb);
    uint32_t count = ch_rbuf_get_u32(rb);
    if (!ch_rbuf_ok(rb) || owner == c->mt.self || !ch_mtab_find(&c->mt, owner)) return;
    coord_drop_rows_of(c, owner, false);
    for (uint32_t i = 0; i < count && ch_rbuf_ok(rb); i++) {
        ch_regrow *row = get_row(rb);
        if (row && row->node == owner)
            coord_reg_put(c, row);
        else
            free(row);
    }
    if (!ch_rbuf_ok(rb)) CH_WARN("malformed REG_SYNC from %s", ch_conn_addr(conn));
}

/* ---- registry queries at the coordinator --------------------------------------------- */

void coord_on_query(ch_coord *c, ch_rec *rec)
{
    ch_query *q = (ch_query *)(uintptr_t)rec->ref;
    if (!q->list) {
        const ch_spec *k = q->key;
        ch_regrow *r = ch_regtab_find(&c->reg, k->hash, ch_spec_id(k), k->id_len);
        q->status = r ? 0 : CH_ENOPROC;
        if (r && !(q->info = ch_regrow_info(r))) q->status = -ENOMEM;
        if (q->info) q->info->pin = ch_pins_get(atomic_load(&c->n->pins), r->hash);
        ch_query_core_done(q);
        return;
    }
    ch_proc_list *l = &q->per_core[0];
    l->items = calloc(c->reg.count + 1, sizeof(*l->items));
    for (size_t i = 0; l->items && i < c->reg.cap; i++) {
        ch_regrow *r = c->reg.slots[i];
        if (!r || (q->tag && strcmp(q->tag, ch_regrow_tag(r)) != 0)) continue;
        ch_proc_info *info = ch_regrow_info(r);
        if (info) info->pin = ch_pins_get(atomic_load(&c->n->pins), r->hash);
        if (info) l->items[l->count++] = info;
    }
    ch_query_core_done(q);
}

void coord_registry_frames(ch_coord *c)
{
    static const coord_frame_entry frames[] = {
        {CH_F_REG_DELTA, on_reg_delta},
        {CH_F_REG_DIGEST, on_reg_digest},
        {CH_F_REG_SYNC_REQ, on_reg_sync_req},
        {CH_F_REG_SYNC, on_reg_sync},
    };
    COORD_FRAMES(c, frames);
}
