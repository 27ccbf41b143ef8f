/*
 * net/cluster/coord_member.c - membership: views pushed on every change and gossiped with each
 * probe, merged by the rules of mtab.c; SWIM-like failure detection (ping, indirect
 * ping through two members, suspicion, death); the connections between coordinators; and
 * what a member's departure means: its processes restart on their new owners, and the
 * partition strategy decides whether this node may go on serving.
 */
#include "coord_int.h"

/* A member connected (again): it gets the pins, and the round's announcements. */
static void member_up(ch_coord *c, ch_mem *m)
{
    coord_pins_send(c, m);
    c->round->on_up(c, m);
}

static void send_view_all(ch_coord *c);

/* ---- views -------------------------------------------------------------------------- */

#define MEMBER_DRAINED     0x80 /* in a member record's state byte */
#define MEMBER_PARTITIONED 0x40 /* ... of the sender's own record: it is in partition mode */

static void put_member(ch_coord *c, ch_wbuf *w, const ch_mem *m)
{
    uint8_t flags = (m->drained ? MEMBER_DRAINED : 0) |
                    (m->id == c->mt.self && c->part.on ? MEMBER_PARTITIONED : 0);
    ch_wbuf_put_u64(w, m->id);
    ch_wbuf_put_u64(w, m->incarnation);
    ch_wbuf_put_u64(w, m->rejoin_inc);
    ch_wbuf_put_u64(w, m->state == CH_MEMBER_DEAD ? m->dead_by : 0);
    ch_wbuf_put_u8(w, (uint8_t)(m->state | flags));
    ch_wbuf_put_u16(w, m->cores);
    ch_wbuf_put_str8(w, m->addr, strlen(m->addr));
}

bool coord_get_member(ch_rbuf *rb, ch_mem *m)
{
    memset(m, 0, sizeof(*m));
    m->id = ch_rbuf_get_u64(rb);
    m->incarnation = ch_rbuf_get_u64(rb);
    m->rejoin_inc = ch_rbuf_get_u64(rb);
    m->dead_by = ch_rbuf_get_u64(rb);
    uint8_t state = ch_rbuf_get_u8(rb);
    m->state = state & (uint8_t) ~(MEMBER_DRAINED | MEMBER_PARTITIONED);
    m->drained = state & MEMBER_DRAINED;
    m->partitioned = state & MEMBER_PARTITIONED;
    m->cores = ch_rbuf_get_u16(rb);
    ch_rbuf_get_cstr8(rb, m->addr, sizeof(m->addr));
    return ch_rbuf_ok(rb);
}

static void encode_view(ch_coord *c, ch_wbuf *w)
{
    ch_wbuf_put_u64(w, c->epoch);
    ch_wbuf_put_u32(w, (uint32_t)c->mt.n);
    for (size_t i = 0; i < c->mt.n; i++)
        put_member(c, w, c->mt.v[i]);
}

void coord_send_view(ch_coord *c, ch_conn *conn)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    encode_view(c, &w);
    if (!w.err) ch_conn_send(conn, CH_F_VIEW, w.data, w.len);
    ch_wbuf_free(&w);
}

static void send_view_all(ch_coord *c)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    encode_view(c, &w);
    coord_send_all(c, CH_F_VIEW, &w);
    ch_wbuf_free(&w);
}

static void member_added(ch_coord *c, ch_mem *m)
{
    CH_INFO("member %016llx (%s) joined", (unsigned long long)m->id, m->addr);
    coord_run_cluster_hook(c, CH_HOOK_POST_CLUSTER_JOIN, m->id);
    bool revived = m->revived;
    m->revived = false;
    if (revived && m->conn) { /* back from the dead on a connection it already has */
        coord_backlog_flush(m);
        member_up(c, m);
        coord_send_digest(c, m->conn);
    }
}

/* Applies a merge result: ring, hooks, refutation, propagation. */
void coord_after_merge(ch_coord *c, int bits, uint64_t seen_epoch, ch_mem *changed)
{
    if (bits & CH_MT_RING) {
        if (changed && ch_mem_in_ring(changed))
            coord_run_cluster_hook(c, CH_HOOK_PRE_CLUSTER_JOIN, changed->id);
        if (changed && !ch_mem_in_ring(changed))
            coord_run_cluster_hook(c, CH_HOOK_PRE_CLUSTER_LEAVE, changed->id);
        coord_rebuild_ring(c, seen_epoch);
        if (changed && ch_mem_in_ring(changed)) member_added(c, changed);
        if (changed && !ch_mem_in_ring(changed)) coord_member_gone(c, changed);
    } else if (seen_epoch > c->epoch) {
        c->epoch = seen_epoch; /* same members, a peer counted more changes: adopt */
        atomic_store(&c->n->epoch, seen_epoch);
    }
    if (bits & CH_MT_CHANGED) send_view_all(c);
    size_t alive = 0;
    for (size_t i = 0; i < c->mt.n; i++)
        alive += ch_mem_alive(c->mt.v[i]);
    atomic_store(&c->n->members_alive, alive);
}

/* A death claimed by others of a member this node hears from right now is news to check,
 * not a verdict: it becomes a suspicion here, which the member refutes if it lives (and
 * this node's own timer confirms if it does not). Without this, a healed partition's
 * claims make each side restart its own members' processes (a death spreads by gossip). */
static bool heard_lately(const ch_coord *c, const ch_mem *e, uint64_t now)
{
    return e->conn && e->heard_ns && ch_mem_alive(e) &&
           ch_ns_since(now, e->heard_ns) < 2 * ms(c->n->cfg.cluster.probe_interval_ms);
}

int coord_merge_one(ch_coord *c, const ch_mem *m, uint64_t seen_epoch)
{
    uint64_t now = ch_now_ns();
    ch_mem *e = m->state == CH_MEMBER_DEAD ? ch_mtab_find(&c->mt, m->id) : NULL;
    ch_mem claim;
    if (e && e->id != c->mt.self && heard_lately(c, e, now)) {
        claim = *m;
        claim.state = CH_MEMBER_SUSPECT;
        m = &claim;
    }
    int bits = ch_mtab_merge(&c->mt, m, now);
    if (bits & CH_MT_RING) {
        coord_after_merge(c, bits & ~CH_MT_CHANGED, seen_epoch, ch_mtab_find(&c->mt, m->id));
        bits &= ~CH_MT_RING;
    }
    return bits;
}

/* Did this node declare `declarer` dead too (now, or before a rejoin that came first)? The
 * window covers a healed partition: the declarer's rejoin may reach us, relayed, before its
 * own view that lists us dead, which waits for its dial (up to 8 probe periods). Asked
 * before the view merges: the view may bring the declarer back. */
static bool declared_mutually(ch_coord *c, uint64_t declarer)
{
    ch_mem *d = declarer ? ch_mtab_find(&c->mt, declarer) : NULL;
    uint64_t window = 16 * ms(c->n->cfg.cluster.probe_interval_ms);
    return d && d->id != c->mt.self && ch_mem_recently_dead(d, ch_now_ns(), window);
}

static void on_view(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    ch_mem *from = ch_conn_ud(conn);
    bool mutual = false, from_partitioned = false;
    uint64_t claim = 0;    /* the incarnation a death of ours is claimed at */
    uint64_t declarer = 0; /* ... and who declared it */
    uint64_t epoch = ch_rbuf_get_u64(rb);
    uint32_t count = ch_rbuf_get_u32(rb);
    int bits = 0;
    for (uint32_t i = 0; i < count && ch_rbuf_ok(rb); i++) {
        ch_mem m;
        if (!coord_get_member(rb, &m)) break;
        if (from && m.id == from->id) from_partitioned = m.partitioned;
        if (m.id == c->mt.self && m.state == CH_MEMBER_DEAD) {
            /* Judged by who declared it, not by who relays it: a node that joined after a
             * healed partition passes on both sides' claims. An old peer may not say. */
            claim = m.incarnation;
            declarer = m.dead_by ? m.dead_by : from ? from->id : 0;
            mutual = declared_mutually(c, declarer);
        }
        bits |= coord_merge_one(c, &m, epoch);
    }
    if (!ch_rbuf_ok(rb)) CH_WARN("malformed VIEW from %s ignored", ch_conn_addr(conn));
    if (from && declarer != from->id) from_partitioned = false; /* a relay's mode says nothing */
    if (bits & CH_MT_REJOIN) coord_rejoin(c, from, declarer, mutual, from_partitioned, claim);
    coord_after_merge(c, bits, epoch, NULL);
    /* Views go to the living; one we declared dead too must still hear our refutation. */
    if ((bits & CH_MT_REJOIN) && from && from->conn && !ch_mem_alive(from))
        coord_send_view(c, from->conn);
}

/* ---- failure detection -------------------------------------------------------------- */

static uint64_t suspicion_ns(ch_coord *c)
{
    const ch_cluster_config *cc = &c->n->cfg.cluster;
    uint64_t f = 1; /* max(1, floor(log10(n + 1))), as memberlist scales suspicion */
    for (size_t x = ch_mtab_ring_size(&c->mt) + 1; x >= 100; x /= 10)
        f++;
    return cc->suspicion_mult * f * ms(cc->probe_interval_ms);
}

static void send_ping(ch_coord *c, uint64_t target, uint64_t seq)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u64(&w, seq);
    coord_send_to(c, target, CH_F_PING, &w);
    ch_wbuf_free(&w);
}

static void suspect(ch_coord *c, ch_mem *m, const char *why)
{
    if (m->state != CH_MEMBER_ALIVE) return;
    CH_WARN("member %016llx (%s) suspected: %s", (unsigned long long)m->id, m->addr, why);
    int bits = ch_mtab_set(&c->mt, m, CH_MEMBER_SUSPECT, ch_now_ns());
    coord_after_merge(c, bits, 0, m);
}

/* The probe of the last period: no answer at all → suspect; then start the next one. */
void coord_probe_round(ch_coord *c)
{
    ch_mem *prev = c->probe.target ? ch_mtab_find(&c->mt, c->probe.target) : NULL;
    if (prev && !c->probe.acked) suspect(c, prev, "no answer to direct or indirect pings");
    c->probe.target = 0;
    size_t n = c->mt.n;
    for (size_t k = 0; k < n; k++) {
        ch_mem *m = c->mt.v[(c->probe.next + k) % n];
        if (m->id == c->mt.self || !ch_mem_alive(m)) continue;
        c->probe.next = (c->probe.next + k + 1) % n;
        c->probe.target = m->id;
        c->probe.acked = false;
        c->probe.indirect = false;
        c->probe.sent_ns = ch_now_ns();
        send_ping(c, m->id, ++c->probe.seq);
        if (m->conn)
            coord_send_view(c, m->conn); /* gossip: views converge even if a push was lost */
        return;
    }
}

/* Direct ping timed out: ask two other members to ping the target for us. */
void coord_probe_indirect(ch_coord *c)
{
    if (!c->probe.target || c->probe.acked || c->probe.indirect) return;
    c->probe.indirect = true;
    int asked = 0;
    for (size_t i = 0; i < c->mt.n && asked < 2; i++) {
        ch_mem *m = c->mt.v[i];
        if (m->id == c->mt.self || m->id == c->probe.target || !m->conn) continue;
        if (m->state != CH_MEMBER_ALIVE) continue;
        ch_wbuf w;
        ch_wbuf_init(&w);
        ch_wbuf_put_u64(&w, c->probe.seq);
        ch_wbuf_put_u64(&w, c->probe.target);
        coord_send_to(c, m->id, CH_F_PING_REQ, &w);
        ch_wbuf_free(&w);
        asked++;
    }
}

static void on_ping(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint64_t seq = ch_rbuf_get_u64(rb);
    if (!ch_rbuf_ok(rb)) return;
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u64(&w, seq);
    if (!w.err) ch_conn_send(conn, CH_F_ACK, w.data, w.len);
    ch_wbuf_free(&w);
}

static void on_ack(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint64_t seq = ch_rbuf_get_u64(rb);
    if (!ch_rbuf_ok(rb)) return;
    if (seq == c->probe.seq) c->probe.acked = true;
    for (size_t i = 0; i < sizeof(c->probe.relays) / sizeof(c->probe.relays[0]); i++) {
        ping_relay *p = &c->probe.relays[i];
        if (!p->seq || p->seq != seq) continue;
        ch_wbuf w;
        ch_wbuf_init(&w);
        ch_wbuf_put_u64(&w, p->their_seq);
        coord_send_to(c, p->requester, CH_F_ACK, &w);
        ch_wbuf_free(&w);
        p->seq = 0;
    }
    (void)conn;
}

static void on_ping_req(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint64_t their = ch_rbuf_get_u64(rb), target = ch_rbuf_get_u64(rb);
    ch_mem *from = ch_conn_ud(conn);
    if (!ch_rbuf_ok(rb) || !from) return;
    static const size_t slots = sizeof(c->probe.relays) / sizeof(c->probe.relays[0]);
    ping_relay *p = &c->probe.relays[(c->probe.seq + 1) % slots];
    p->seq = ++c->probe.seq + (1ull << 62); /* never equal to our own probes */
    p->requester = from->id;
    p->their_seq = their;
    send_ping(c, target, p->seq);
}

/* Suspects whose suspicion lasted long enough are declared dead. */
void coord_expire_suspects(ch_coord *c, uint64_t now)
{
    uint64_t limit = suspicion_ns(c);
    for (size_t i = 0; i < c->mt.n; i++) {
        ch_mem *m = c->mt.v[i];
        if (m->state != CH_MEMBER_SUSPECT || ch_ns_since(now, m->since_ns) < limit) continue;
        CH_WARN("member %016llx (%s) declared dead", (unsigned long long)m->id, m->addr);
        int bits = ch_mtab_set(&c->mt, m, CH_MEMBER_DEAD, now);
        m->dead_by = c->mt.self;
        coord_after_merge(c, bits, 0, m);
    }
}

/* This coordinator did not run for `gap` (SIGSTOP, a starved CPU, a paused VM): what it
 * measured meanwhile says nothing about its peers, so every suspicion starts over and the
 * current probe is dropped. The peers may have declared it dead in the meantime: it dials
 * every member now rather than waiting to be dialled, so it hears that soon. */
void coord_after_stall(ch_coord *c, uint64_t now, uint64_t gap)
{
    CH_WARN("coordinator stalled for %llu ms: suspicions start over",
            (unsigned long long)(gap / 1000000));
    for (size_t i = 0; i < c->mt.n; i++) {
        ch_mem *m = c->mt.v[i];
        if (m->state == CH_MEMBER_SUSPECT) m->since_ns = now;
        m->next_dial_ns = 0;
    }
    c->probe.target = 0;
    c->probe.dial_any_until_ns = now + suspicion_ns(c);
    /* Too short for a death: a claim that comes now is older (a partition), and says
     * nothing about this stall. */
    if (gap < suspicion_ns(c)) return;
    c->probe.stalled_ns = now;
    c->probe.stall_inc =
        c->probe.tick_inc; /* a death claimed at a rejoin's new one is a new death */
}

/* ---- connections -------------------------------------------------------------------- */

/* One connection per pair: the node with the smaller id dials, the other waits for it (its
 * frames wait in the backlog). Were both to dial, one of the two connections would be
 * closed with whatever was already sent on it (see prefer), and a migration sends from the
 * first moment. Seeds are dialled by address, whatever their id. A leaving node dials
 * everyone: a member that joined meanwhile never dials a node gone. A member declared dead
 * is dialled too, whatever its id, with a growing pause: it must hear that it was declared
 * dead (it then rejoins), and it may not dial us. After a stall this node dials everyone. */
static bool dial_due(ch_coord *c, const ch_mem *m, uint64_t now)
{
    if (m->id == c->mt.self || !m->addr[0]) return false;
    if (m->state == CH_MEMBER_DEAD) return true;
    if (!ch_mem_alive(m)) return false;
    return m->id > c->mt.self || c->leaving || now < c->probe.dial_any_until_ns;
}

void coord_dial(ch_coord *c, ch_mem *m, uint64_t now)
{
    if (m->conn || m->dialing || now < m->next_dial_ns || !dial_due(c, m, now)) return;
    uint64_t pause = ms(c->n->cfg.cluster.probe_interval_ms);
    if (m->state == CH_MEMBER_DEAD) pause <<= m->dead_dials < 3 ? m->dead_dials++ : 3;
    m->next_dial_ns = now + pause;
    ch_conn *conn;
    if (ch_transport_connect(c->t, m->addr, CH_ROLE_PEER, &conn) == 0) {
        m->dialing = conn;
        ch_conn_set_ud(conn, NULL);
    }
}

void coord_dial_all(ch_coord *c, uint64_t now)
{
    for (size_t i = 0; i < c->mt.n; i++)
        coord_dial(c, c->mt.v[i], now);
}

static void send_join(ch_coord *c, ch_conn *conn)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    put_member(c, &w, ch_mtab_self(&c->mt));
    if (!w.err) ch_conn_send(conn, CH_F_JOIN, w.data, w.len);
    ch_wbuf_free(&w);
}

/* Of two connections between the same pair, both ends keep the one dialled by the node
 * with the smaller id; of two dialled by the same node (a dial by address and one to the
 * member, or one left from a member gone from that address), the one whose dialling port
 * is smaller. Both ends must choose the same one whatever order the two came up in: were
 * each to keep a different one, both would close, with the frames already sent on them. */
static bool prefer(ch_coord *c, ch_conn *fresh, ch_conn *old, uint64_t peer)
{
    uint64_t fresh_by = ch_conn_initiator(fresh) ? c->mt.self : peer;
    uint64_t old_by = ch_conn_initiator(old) ? c->mt.self : peer;
    if (fresh_by != old_by) return fresh_by < old_by;
    return ch_conn_dial_port(fresh) < ch_conn_dial_port(old);
}

static void ctl_up(ch_coord *c, ch_conn *conn)
{
    struct ctl_conn *v = realloc(c->ctl.conns, (c->ctl.n + 1) * sizeof(*v));
    if (!v) {
        ch_conn_close(conn, -ENOMEM);
        return;
    }
    c->ctl.conns = v;
    v[c->ctl.n++] = (struct ctl_conn){++c->ctl.serial, conn};
    ch_conn_set_ud(conn, (void *)(uintptr_t)c->ctl.serial);
}

/* A member still leaving (handing its processes over) that this node learned of only as
 * gone, e.g. a newcomer: it takes part until it hangs up. */
static void leaver_up(ch_coord *c, ch_mem *m, ch_conn *conn)
{
    m->conn = conn;
    m->left_pending = true;
    ch_conn_set_ud(conn, m);
    coord_backlog_flush(m);
    member_up(c, m);
    coord_send_view(c, conn);
    coord_send_digest(c, conn);
}

/* The connection of a pair that the other one replaces: both ends stop writing on it but
 * read what was sent on it until then (frames of the member's, ud stays), then it closes. */
static void retire(ch_mem *m, ch_conn *conn)
{
    ch_conn_set_ud(conn, m);
    m->retired++;
    ch_conn_retire(conn);
}

/* Keeps one connection per member: false when `conn` lost to the one it has. (A dial made
 * for a member that left or died, whose address a newcomer took, may be one of the two:
 * both ends choose by prefer and retire the other, so no frame is lost either way.) */
static bool take_conn(ch_coord *c, ch_mem *m, ch_conn *conn, uint64_t peer)
{
    for (size_t i = 0; i < c->mt.n; i++)
        if (c->mt.v[i]->dialing == conn) c->mt.v[i]->dialing = NULL;
    if (!m || !m->conn) return true;
    if (!prefer(c, conn, m->conn, peer)) {
        retire(m, conn); /* both sides keep the same one of the two */
        return false;
    }
    ch_conn *old = m->conn;
    m->conn = NULL;
    retire(m, old);
    return true;
}

void coord_on_up(void *ud, ch_conn *conn, const ch_hello *peer)
{
    ch_coord *c = ud;
    if (peer->role == CH_ROLE_CTL) {
        ctl_up(c, conn);
        return;
    }
    if (peer->role != CH_ROLE_PEER || peer->node_id == c->mt.self) {
        ch_conn_close(conn, -EPROTO);
        return;
    }
    ch_mem rec = {
        .id = peer->node_id, .incarnation = 0, .cores = peer->cores, .state = CH_MEMBER_ALIVE};
    snprintf(rec.addr, sizeof(rec.addr), "%s", peer->addr);
    ch_mem *m = ch_mtab_find(&c->mt, peer->node_id);
    if (m && m->state == CH_MEMBER_LEFT && !m->left_handled) {
        /* Still handing over: a second connection of the pair is kept or retired by the
         * rule both ends apply (prefer). Refused, it was the one the leaver kept, and the
         * leaver, left with none, handed nothing more over (CI on 48aa4d6). */
        if (take_conn(c, m, conn, peer->node_id)) leaver_up(c, m, conn);
        return;
    }
    if (m && m->state == CH_MEMBER_LEFT) {
        CH_WARN("refusing %s: member %016llx already left the hub", peer->addr,
                (unsigned long long)peer->node_id);
        ch_conn_close(conn, -EPERM);
        return;
    }
    if (!take_conn(c, m, conn, peer->node_id)) return;
    send_join(c, conn);
    if (m && m->state == CH_MEMBER_DEAD) {
        /* It hears its death in our view and rejoins with a higher incarnation; until
         * then only its membership frames count (coord.c). */
        m->conn = conn;
        ch_conn_set_ud(conn, m);
        coord_send_view(c, conn);
        return;
    }
    int bits = 0;
    if (!m) { /* a newcomer: its record goes in first, the ring change after (below) */
        bits = ch_mtab_merge(&c->mt, &rec, ch_now_ns());
        m = ch_mtab_find(&c->mt, peer->node_id);
        if (!m) {
            ch_conn_close(conn, -ENOMEM);
            return;
        }
    }
    /* The connection is the member's before anything is sent to it: frames for it (a
     * migration starts with the ring change) take this connection, and nothing dials a
     * second one that would replace it and drop what was sent on the first. */
    m->conn = conn;
    m->revived = false;
    ch_conn_set_ud(conn, m);
    coord_backlog_flush(m);
    if (bits & CH_MT_RING) coord_after_merge(c, bits & ~CH_MT_CHANGED, 0, m);
    member_up(c, m);
    send_view_all(c); /* everyone learns of the newcomer, the newcomer of everyone */
    coord_send_digest(c, conn);
}

static ch_mem *mem_of_conn(ch_coord *c, ch_conn *conn)
{
    for (size_t i = 0; i < c->mt.n; i++)
        if (c->mt.v[i]->conn == conn || c->mt.v[i]->dialing == conn) return c->mt.v[i];
    return NULL;
}

void coord_on_down(void *ud, ch_conn *conn, int reason)
{
    ch_coord *c = ud;
    for (size_t i = 0; i < c->ctl.n; i++)
        if (c->ctl.conns[i].conn == conn) c->ctl.conns[i] = c->ctl.conns[--c->ctl.n];
    ch_mem *m = mem_of_conn(c, conn);
    if (!m) {
        ch_mem *r = ch_conn_role(conn) == CH_ROLE_PEER ? ch_conn_ud(conn) : NULL;
        if (r && r->retired) r->retired--; /* a retired connection of r's is gone */
        return;
    }
    bool was_up = m->conn == conn, was_dial = m->dialing == conn;
    if (m->conn == conn) m->conn = NULL;
    if (m->dialing == conn) m->dialing = NULL;
    if (was_up && m->state == CH_MEMBER_ALIVE && !c->leaving)
        suspect(c, m, reason ? strerror(-reason) : "connection closed");
    /* A leaver hung up: its handover is over. Unless our own dial to it is still in its
     * handshake: the leaver may have kept that one as the pair's and retired this one
     * (its end of the write side reads as a hang-up here), and its handover goes on there.
     * Taken for over, its rows were adopted while it still sent, and its connections were
     * refused from then on (`test_migration`, under load). */
    if ((was_up || was_dial) && m->left_pending && !m->conn && !m->dialing) coord_left_done(c, m);
}

/* ---- frames ------------------------------------------------------------------------- */

static void on_join(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    ch_mem m;
    if (coord_get_member(rb, &m)) coord_after_merge(c, coord_merge_one(c, &m, 0), 0, NULL);
    coord_send_view(c, conn);
}

void coord_member_frames(ch_coord *c)
{
    static const coord_frame_entry frames[] = {
        {CH_F_JOIN, on_join}, {CH_F_VIEW, on_view},         {CH_F_PING, on_ping},
        {CH_F_ACK, on_ack},   {CH_F_PING_REQ, on_ping_req},
    };
    COORD_FRAMES(c, frames);
}
