/*
 * migration/coord_round.c - the coordinator's part of a migration (protocol in
 * migration/handover.h): it announces each ring to the cores, turns "every core switched"
 * into a BARRIER to every participant, turns every participant's BARRIER into SEALED for
 * the cores and every participant's END into UNHOLD, and carries the lanes' frames between
 * its cores and the peers.
 *
 * Participants of a round: the members of the ring other than this node, plus members
 * that left gracefully and are still connected (they hand their processes over). A
 * member that dies stops counting, so a round never waits for the dead. A BARRIER or END
 * carries the hash of the sender's ring and only the last one per member counts: two
 * nodes agree on a round when they agree on the ring, whatever their epoch numbers.
 */
#include "coord_round.h"

#include "net/cluster/coord_int.h"

#include "migration/handover.h"
#include "migration/le.h"

static bool participant(const ch_coord *c, const ch_mem *m)
{
    if (m->id == c->mt.self || m->state == CH_MEMBER_DEAD) return false;
    return ch_mem_alive(m) || (m->state == CH_MEMBER_LEFT && m->left_pending);
}

static void post(ch_coord *c, unsigned core, const ch_mig_msg *m, const void *payload, size_t len)
{
    ch_rec h = ch_mig_rec(m, len);
    int rc = ch_reactor_post(c->n, core, &h, NULL, payload, false);
    if (rc < 0) CH_ERROR("migration record to core %u lost: %s", core, ch_strerror(rc));
}

static void post_all(ch_coord *c, const ch_mig_msg *m)
{
    for (unsigned i = 0; i < c->n->cores; i++)
        post(c, i, m, NULL, 0);
}

static void send_hash(ch_coord *c, ch_mem *m, uint8_t type, uint64_t rh)
{
    uint8_t b[8];
    ch_le_put64(b, rh); /* as ch_rbuf_get_u64 reads it */
    coord_send_frame(c, m->id, type, b, 8, NULL, 0);
}

static void send_hash_all(ch_coord *c, uint8_t type, uint64_t rh)
{
    for (size_t i = 0; i < c->mt.n; i++)
        if (participant(c, c->mt.v[i])) send_hash(c, c->mt.v[i], type, rh);
}

/* A new ring is out (coord_rebuild_ring): every core switches to it and plans. */
static void ring(ch_coord *c)
{
    uint64_t *ids = malloc((c->mt.n + 1) * sizeof(*ids));
    ch_mig_member *v = malloc((c->mt.n + 1) * sizeof(*v));
    if (!ids || !v) {
        CH_ERROR("no memory to announce the ring to the cores");
        free(ids);
        free(v);
        return;
    }
    size_t k = ch_mtab_ring_ids(&c->mt, ids);
    for (size_t i = 0; i < k; i++) {
        ch_mem *m = ch_mtab_find(&c->mt, ids[i]);
        v[i] = (ch_mig_member){.id = ids[i], .cores = m ? m->cores : 0};
    }
    /* A round is a ring and a pin set: nodes agree on a round when they agree on both. */
    ch_pins *pins = atomic_load(&c->n->pins);
    uint64_t rh = XXH3_64bits(ids, k * sizeof(*ids)) ^ (pins ? pins->digest : 0);
    c->mig = (struct coord_mig){.rh = rh ? rh : 1, .start_ns = ch_now_ns()};
    CH_DEBUG("round %016llx: a ring of %zu members", (unsigned long long)c->mig.rh, k);
    ch_hashring *ring = atomic_load(&c->n->ring);
    for (unsigned i = 0; i < c->n->cores; i++)
        post(c, i, &(ch_mig_msg){.op = CH_MIG_RING, .round = c->mig.rh, .ptr = ring}, v,
             k * sizeof(*v));
    free(ids);
    free(v);
}

static void check(ch_coord *c)
{
    struct coord_mig *g = &c->mig;
    if (!g->rh) return;
    bool barriers = true, ends = true;
    for (size_t i = 0; i < c->mt.n; i++) {
        const ch_mem *m = c->mt.v[i];
        if (!participant(c, m)) continue;
        barriers &= m->mig_barrier == g->rh;
        ends &= m->mig_end == g->rh;
    }
    if (g->barrier_sent && barriers && !g->sealed) {
        CH_DEBUG("round %016llx sealed", (unsigned long long)g->rh);
        g->sealed = true;
        post_all(c, &(ch_mig_msg){.op = CH_MIG_SEALED, .round = g->rh});
    }
    if (ends && !g->unheld) {
        CH_DEBUG("round %016llx over%s", (unsigned long long)g->rh,
                 g->end_sent ? "" : " (this node's END to come)");
        g->unheld = true;
        post_all(c, &(ch_mig_msg){.op = CH_MIG_UNHOLD, .round = g->rh});
    }
    /* Every participant, this node too, has every move of the round confirmed: a target's
     * crash from now on is a crash of processes it owns, no longer a loss of casts for
     * processes that stay on their sources. */
    if (g->unheld && g->end_sent) {
        c->keep.settled_ring = atomic_load(&c->n->ring);
        if (c->keep.casts.len || c->keep.full) coord_kept_drop(c);
    }
}

/* The host part of "HOST:PORT" (brackets of an IPv6 host kept) into out. */
static void host_of(const char *addr, char *out, size_t cap)
{
    const char *colon = strrchr(addr, ':');
    int n = colon ? (int)(colon - addr) : (int)strlen(addr);
    snprintf(out, cap, "%.*s", n, addr);
}

/* Every core opens its data lanes on the cluster's listen host; a core that cannot sends
 * through the coordinator (its port stays 0, which peers take as "none"). */
static void setup(ch_coord *c)
{
    const ch_cluster_config *cc = &c->n->cfg.cluster;
    if (!c->n->cfg.migration.lanes) return;
    c->lane_ports = calloc(c->n->cores, sizeof(*c->lane_ports));
    if (!c->lane_ports) return;
    char host[CH_ADDR_MAX + 1];
    host_of(cc->listen, host, sizeof(host));
    for (unsigned i = 0; i < c->n->cores; i++) {
        int port =
            ch_ho_lanes_open(&c->n->reactors[i], host, &c->hello, cc->cookie, cc->cookie_len);
        if (port < 0) CH_WARN("core %u has no data lanes: %s", i, ch_strerror(port));
        c->lane_ports[i] = port > 0 ? (uint16_t)port : 0;
    }
}

/* Tells m where our cores take data lanes. */
static void send_lanes(ch_coord *c, ch_mem *m)
{
    uint16_t n = (uint16_t)c->n->cores;
    uint8_t b[2 + 2 * 1024];
    if (!c->lane_ports || n > 1024) return;
    ch_le_put16(b, n);
    for (unsigned i = 0; i < n; i++)
        ch_le_put16(b + 2 + 2 * i, c->lane_ports[i]);
    coord_send_frame(c, m->id, CH_F_MIG_LANES, b, 2 + 2 * (size_t)n, NULL, 0);
}

/* A peer's lane ports: every core learns them (a port 0 is a core without lanes: the
 * whole peer is then reached through the coordinator). */
static void on_lanes(ch_coord *c, ch_mem *from, ch_rbuf *rb)
{
    uint16_t n = ch_rbuf_get_u16(rb);
    if (!ch_rbuf_ok(rb) || n == 0 || n > 1024 || ch_rbuf_left(rb) != 2 * (size_t)n) {
        CH_WARN("bad MIG_LANES frame from %s", from->addr);
        return;
    }
    size_t bytes = sizeof(ch_mig_lanes) + n * sizeof(uint16_t);
    for (unsigned core = 0; core < c->n->cores; core++) {
        ch_mig_lanes *b = malloc(bytes);
        if (!b) {
            CH_ERROR("no memory for the lanes of %s", from->addr);
            return;
        }
        b->node = from->id;
        b->n = n;
        host_of(from->addr, b->host, sizeof(b->host));
        ch_rbuf r = *rb;
        bool all = true;
        for (unsigned i = 0; i < n; i++)
            all &= (b->ports[i] = ch_rbuf_get_u16(&r)) != 0;
        if (!all) { /* a peer core without lanes: none are used */
            free(b);
            return;
        }
        ch_rec h = ch_mig_rec(&(ch_mig_msg){.op = CH_MIG_LANES, .node = from->id, .ptr = b}, 0);
        if (ch_reactor_post(c->n, core, &h, NULL, NULL, false) < 0) free(b);
    }
}

static void on_up(ch_coord *c, ch_mem *m)
{
    send_lanes(c, m);
    if (!participant(c, m)) return;
    if (c->mig.barrier_sent) send_hash(c, m, CH_F_MIG_BARRIER, c->mig.rh);
    if (c->mig.end_sent) send_hash(c, m, CH_F_MIG_END, c->mig.rh);
}

/* Every probe period: this node's BARRIER and END of the current round again, to every
 * participant. An announcement sent once could be lost for good: with the backlog of a
 * member declared dead (freed), or to a member that was dead here when it sent its own and
 * is back on the same connection; its round then waited forever ("migrates 767") until
 * the next ring. Only the last announcement per member counts, so a repeat changes nothing
 * where it arrived before, and costs 8 bytes; a round a minute old stops repeating (a member
 * that comes back later changes the ring, or connects again: on_up). */
static void reannounce(ch_coord *c)
{
    const struct coord_mig *g = &c->mig;
    if (!g->rh || !g->barrier_sent || ch_ns_since(ch_now_ns(), g->start_ns) > ms(60000)) return;
    for (size_t i = 0; i < c->mt.n; i++) {
        ch_mem *m = c->mt.v[i];
        if (!participant(c, m) || !m->conn) continue;
        send_hash(c, m, CH_F_MIG_BARRIER, g->rh);
        if (g->end_sent) send_hash(c, m, CH_F_MIG_END, g->rh);
    }
}

/* The cores take back what they sent to the dead node first: the casts kept for it then
 * find their processes thawed (or still queued) on their sources. */
static void gone(ch_coord *c, uint64_t node)
{
    post_all(c, &(ch_mig_msg){.op = CH_MIG_GONE, .node = node});
    coord_kept_reroute(c, atomic_load(&c->n->ring)); /* what coord_rebuild_ring left */
    check(c);
}

static void on_out(ch_coord *c, const ch_mig_msg *m, ch_rec *rec)
{
    uint64_t len;
    memcpy(&len, ch_rec_payload(rec), 8);
    /* A frame for a node that is gone is dropped: its core keeps the batch and takes it
     * back when told the node is gone. */
    int rc = coord_send_frame(c, m->node, m->frame, m->ptr, (size_t)len, NULL, 0);
    if (rc < 0)
        CH_DEBUG("migration frame to %016llx not sent: %s", (unsigned long long)m->node,
                 ch_strerror(rc));
    free(m->ptr);
}

static void on_reply(ch_coord *c, ch_rec *rec)
{
    ch_rbuf rb;
    ch_rbuf_init(&rb, ch_rec_payload(rec), rec->len);
    uint64_t node = ch_rbuf_get_u64(&rb);
    uint16_t core = ch_rbuf_get_u16(&rb);
    uint64_t ref = ch_rbuf_get_u64(&rb);
    int32_t status = (int32_t)ch_rbuf_get_u32(&rb);
    if (!ch_rbuf_ok(&rb)) return;
    size_t off = rec->len - ch_rbuf_left(&rb);
    ch_coord_relay_done(c->r, node, core, ref, status, (const uint8_t *)ch_rec_payload(rec) + off,
                        ch_rbuf_left(&rb));
}

/* Every core switched. Application threads route inside an in-flight bracket (node.c):
 * once none is in flight, every one that may have routed by the old ring has posted, and a
 * marker pushed into each core's inbox now comes after all of those. Then every thread
 * here routes by the new ring, and the BARRIER tells the peers. (The ring exchange and the
 * bracket's increment are both locked read-modify-writes, so one of the two threads sees
 * the other's write.) */
static void after_switch(ch_reactor *r, uint64_t rh)
{
    ch_coord *c = coord_of(r);
    struct coord_mig *g = &c->mig;
    if (rh != g->rh || g->barrier_sent || r->shut) return;
    if (atomic_load(&c->n->inflight) != 0) {
        ch_sup_timer_fn(r, 1, after_switch, rh); /* calls last a microsecond: soon */
        return;
    }
    /* The coordinator's own inbox too: the BARRIER leaves once it has routed every remote
     * message application threads posted before (by the old ring, as they were stamped). */
    for (unsigned i = 0; i <= c->n->cores; i++) {
        ch_rec h = ch_mig_rec(&(ch_mig_msg){.op = CH_MIG_IMARK, .round = rh}, 0);
        if (ch_reactor_post_inbox(c->n, i, &h, NULL) < 0)
            CH_ERROR("migration marker for reactor %u lost", i);
    }
}

static void on_own_marker(ch_coord *c, uint64_t rh)
{
    struct coord_mig *g = &c->mig;
    if (rh != g->rh || g->barrier_sent) return;
    g->barrier_sent = true;
    CH_DEBUG("round %016llx: every core switched, BARRIER sent", (unsigned long long)g->rh);
    send_hash_all(c, CH_F_MIG_BARRIER, g->rh);
    check(c);
}

static void on_rec(ch_coord *c, ch_rec *rec)
{
    struct coord_mig *g = &c->mig;
    ch_mig_msg m = ch_mig_read(rec);
    switch (m.op) {
    case CH_MIG_SWITCHED:
        if (m.round != g->rh || ++g->switched < c->n->cores) break;
        after_switch(c->r, g->rh);
        break;
    case CH_MIG_DONE:
        if (m.round != g->rh || ++g->done < c->n->cores) break;
        g->end_sent = true;
        send_hash_all(c, CH_F_MIG_END, g->rh);
        check(c);
        break;
    case CH_MIG_OUT:
        on_out(c, &m, rec);
        break;
    case CH_MIG_REPLY:
        on_reply(c, rec);
        break;
    case CH_MIG_IMARK:
        on_own_marker(c, m.round);
        break;
    default:
        CH_ERROR("unexpected migration record %u at the coordinator", m.op);
    }
}

/* A lane frame from a peer goes to the core it names (ch_ho_frame_core). */
static void to_core(ch_coord *c, ch_mem *from, uint8_t type, ch_rbuf *rb)
{
    size_t len = ch_rbuf_left(rb);
    const uint8_t *p = ch_rbuf_get_bytes(rb, len).p;
    int core = p ? ch_ho_frame_core(type, p, len, c->n->cores) : -EINVAL;
    if (core < 0) {
        CH_WARN("%s frame from %s refused", ch_frame_type_name(type), from->addr);
        return;
    }
    uint64_t link[2] = {0, 0}; /* what our link to `from` took: the source's codec feedback */
    if (type == CH_F_MIG_ACK && from->conn) ch_conn_link(from->conn, &link[0], &link[1]);
    uint8_t *block = ch_ho_in_block(p, len, link);
    if (!block) {
        CH_ERROR("no memory for a migration frame from %s", from->addr);
        return;
    }
    uint64_t l = len;
    ch_rec h = ch_mig_rec(
        &(ch_mig_msg){.op = CH_MIG_IN, .frame = type, .node = from->id, .ptr = block}, sizeof(l));
    if (ch_reactor_post(c->n, (unsigned)core, &h, NULL, &l, false) < 0) free(block);
}

static void on_frame(ch_coord *c, ch_mem *from, uint8_t type, ch_rbuf *rb)
{
    if (type == CH_F_MIG_BARRIER || type == CH_F_MIG_END) {
        uint64_t rh = ch_rbuf_get_u64(rb);
        if (!ch_rbuf_done(rb)) return;
        if ((type == CH_F_MIG_BARRIER ? from->mig_barrier : from->mig_end) != rh)
            CH_DEBUG("%s %016llx from %016llx (ours %016llx)", ch_frame_type_name(type),
                     (unsigned long long)rh, (unsigned long long)from->id,
                     (unsigned long long)c->mig.rh);
        if (type == CH_F_MIG_BARRIER)
            from->mig_barrier = rh;
        else
            from->mig_end = rh;
        check(c);
        return;
    }
    if (type == CH_F_MIG_LANES)
        on_lanes(c, from, rb);
    else
        to_core(c, from, type, rb);
}

/* A leave (or drain) is over when its round ended and nothing is in flight, unless
 * processes are left whose moves failed while a member of the ring is suspected: a move to
 * a target that just died fails at once, and the ring without it, soon, starts a round
 * that moves them to their new owners. With no one to hand over to it is over at once,
 * unless members declared dead are still connected: a partition just healed, and they
 * come back (or this node does) within moments. */
static int leave_done(ch_coord *c)
{
    bool peers = false, suspect = false, returning = false;
    for (size_t i = 0; i < c->mt.n; i++) {
        const ch_mem *m = c->mt.v[i];
        peers |= participant(c, m) && m->conn;
        suspect |= m->state == CH_MEMBER_SUSPECT && ch_mem_in_ring(m);
        returning |= m->state == CH_MEMBER_DEAD && m->conn;
    }
    if (!peers) return returning ? 0 : 1;
    if (!c->mig.end_sent) return 0;
    uint64_t held = 0;
    for (unsigned i = 0; i < c->n->cores; i++) {
        const ch_reactor *r = &c->n->reactors[i];
        if (atomic_load_explicit(&r->stats.migrating, memory_order_relaxed)) return 0;
        held += atomic_load_explicit(&r->stats.processes, memory_order_relaxed);
    }
    return held && suspect ? 0 : 1;
}

const ch_coord_round ch_coord_round_ops = {
    .setup = setup,
    .ring = ring,
    .on_rec = on_rec,
    .on_frame = on_frame,
    .on_up = on_up,
    .reannounce = reannounce,
    .gone = gone,
    .leave_done = leave_done,
};
