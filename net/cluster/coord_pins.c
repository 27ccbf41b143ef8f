/*
 * net/cluster/coord_pins.c - the hub's pins (`ctl migrate ID NODE`, ch_node_pin): a pin
 * set replicated to every member (last writer wins per id, pins.h), published to the
 * node's threads as a snapshot they route by. A new pin set is a new migration round.
 */
#include "coord_int.h"

static void put_pin(ch_wbuf *w, const ch_pin *p)
{
    ch_wbuf_put_u64(w, p->hash);
    ch_wbuf_put_u64(w, p->node);
    ch_wbuf_put_u64(w, p->version);
    ch_wbuf_put_u64(w, p->setter);
}

void coord_pins_send(ch_coord *c, ch_mem *m)
{
    if (!c->pins.n || !m->conn) return;
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u32(&w, (uint32_t)c->pins.n);
    for (size_t i = 0; i < c->pins.n; i++)
        put_pin(&w, &c->pins.v[i]);
    coord_send_to(c, m->id, CH_F_MIG_PIN, &w);
    ch_wbuf_free(&w);
}

/* A new pin set: threads route by it from now on, and it is a new migration round. */
static void publish_pins(ch_coord *c)
{
    ch_pins *snap = ch_pinset_snapshot(&c->pins);
    if (!snap) {
        CH_ERROR("no memory to publish the pins: keeping the old ones");
        return;
    }
    if (!snap->n) { /* routing skips the lookup when there is nothing to find */
        free(snap);
        snap = NULL;
    }
    ch_pins *old = atomic_exchange(&c->n->pins, snap);
    if (old) ch_node_retire_pins(c->n, old);
    c->round->ring(c); /* a new pin set is a new round */
}

int coord_pin_set(ch_coord *c, uint64_t hash, uint64_t node)
{
    ch_pin p = {.hash = hash, .node = node, .version = c->pins.clock + 1, .setter = c->mt.self};
    int rc = ch_pinset_merge(&c->pins, &p);
    if (rc < 0) return rc;
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u32(&w, 1);
    put_pin(&w, &p);
    coord_send_all(c, CH_F_MIG_PIN, &w);
    ch_wbuf_free(&w);
    publish_pins(c);
    return 0;
}

static void on_pins(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint32_t n = ch_rbuf_get_u32(rb);
    bool changed = false;
    for (uint32_t i = 0; i < n && ch_rbuf_ok(rb); i++) {
        ch_pin p = {.hash = ch_rbuf_get_u64(rb),
                    .node = ch_rbuf_get_u64(rb),
                    .version = ch_rbuf_get_u64(rb),
                    .setter = ch_rbuf_get_u64(rb)};
        if (ch_rbuf_ok(rb) && ch_pinset_merge(&c->pins, &p) > 0) changed = true;
    }
    if (changed) publish_pins(c);
}

void coord_pins_frames(ch_coord *c)
{
    static const coord_frame_entry frames[] = {
        {CH_F_MIG_PIN, on_pins},
    };
    COORD_FRAMES(c, frames);
}
