/*
 * core/coord_member.c - membership: views pushed on every change and gossiped with each
 * probe, merged by the rules of member.c; SWIM-like failure detection (ping, indirect
 * ping through two members, suspicion, death); the connections between coordinators; and
 * what a member's departure means: its processes restart on their new owners, and the
 * partition strategy decides whether this node may go on serving.
 */
#include "coord_int.h"

static void send_view_all(ch_coord *c);
static void on_member_gone(ch_coord *c, ch_mem *m);
static void left_done(ch_coord *c, ch_mem *m);

/* ---- views -------------------------------------------------------------------------- */

#define MEMBER_DRAINED 0x80 /* in a member record's state byte */

static void put_member(ch_wbuf *w, const ch_mem *m)
{
    ch_wbuf_put_u64(w, m->id);
    ch_wbuf_put_u64(w, m->incarnation);
    ch_wbuf_put_u8(w, (uint8_t)(m->state | (m->drained ? MEMBER_DRAINED : 0)));
    ch_wbuf_put_u16(w, m->cores);
    ch_wbuf_put_str8(w, m->addr, strlen(m->addr));
}

bool coord_get_member(ch_rbuf *rb, ch_mem *m)
{
    memset(m, 0, sizeof(*m));
    m->id = ch_rbuf_get_u64(rb);
    m->incarnation = ch_rbuf_get_u64(rb);
    uint8_t state = ch_rbuf_get_u8(rb);
    m->state = state & (uint8_t)~MEMBER_DRAINED;
    m->drained = state & MEMBER_DRAINED;
    m->cores = ch_rbuf_get_u16(rb);
    ch_rbuf_get_cstr8(rb, m->addr, sizeof(m->addr));
    return ch_rbuf_ok(rb);
}

static void encode_view(ch_coord *c, ch_wbuf *w)
{
    ch_wbuf_put_u64(w, c->epoch);
    ch_wbuf_put_u32(w, (uint32_t)c->mt.n);
    for (size_t i = 0; i < c->mt.n; i++)
        put_member(w, &c->mt.v[i]);
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
        if (changed && !ch_mem_in_ring(changed)) on_member_gone(c, changed);
    } else if (seen_epoch > c->epoch) {
        c->epoch = seen_epoch; /* same members, a peer counted more changes: adopt */
        atomic_store(&c->n->epoch, seen_epoch);
    }
    if (bits & CH_MT_CHANGED) send_view_all(c);
    size_t alive = 0;
    for (size_t i = 0; i < c->mt.n; i++)
        alive += ch_mem_alive(&c->mt.v[i]);
    atomic_store(&c->n->members_alive, alive);
}

int coord_merge_one(ch_coord *c, const ch_mem *m, uint64_t seen_epoch)
{
    uint64_t now = ch_now_ns();
    int bits = ch_mtab_merge(&c->mt, m, now);
    if (bits & CH_MT_RING) {
        coord_after_merge(c, bits & ~CH_MT_CHANGED, seen_epoch, ch_mtab_find(&c->mt, m->id));
        bits &= ~CH_MT_RING;
    }
    return bits;
}

void coord_on_view(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint64_t epoch = ch_rbuf_get_u64(rb);
    uint32_t count = ch_rbuf_get_u32(rb);
    int bits = 0;
    for (uint32_t i = 0; i < count && ch_rbuf_ok(rb); i++) {
        ch_mem m;
        if (!coord_get_member(rb, &m)) break;
        bits |= coord_merge_one(c, &m, epoch);
    }
    if (!ch_rbuf_ok(rb)) CH_WARN("malformed VIEW from %s ignored", ch_conn_addr(conn));
    coord_after_merge(c, bits, epoch, NULL);
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
    ch_mem *prev = c->probe_target ? ch_mtab_find(&c->mt, c->probe_target) : NULL;
    if (prev && !c->probe_acked) suspect(c, prev, "no answer to direct or indirect pings");
    c->probe_target = 0;
    size_t n = c->mt.n;
    for (size_t k = 0; k < n; k++) {
        ch_mem *m = &c->mt.v[(c->probe_next + k) % n];
        if (m->id == c->mt.self || !ch_mem_alive(m)) continue;
        c->probe_next = (c->probe_next + k + 1) % n;
        c->probe_target = m->id;
        c->probe_acked = false;
        c->probe_indirect = false;
        c->probe_sent_ns = ch_now_ns();
        send_ping(c, m->id, ++c->probe_seq);
        if (m->conn)
            coord_send_view(c, m->conn); /* gossip: views converge even if a push was lost */
        return;
    }
}

/* Direct ping timed out: ask two other members to ping the target for us. */
void coord_probe_indirect(ch_coord *c)
{
    if (!c->probe_target || c->probe_acked || c->probe_indirect) return;
    c->probe_indirect = true;
    int asked = 0;
    for (size_t i = 0; i < c->mt.n && asked < 2; i++) {
        ch_mem *m = &c->mt.v[i];
        if (m->id == c->mt.self || m->id == c->probe_target || !m->conn) continue;
        if (m->state != CH_MEMBER_ALIVE) continue;
        ch_wbuf w;
        ch_wbuf_init(&w);
        ch_wbuf_put_u64(&w, c->probe_seq);
        ch_wbuf_put_u64(&w, c->probe_target);
        coord_send_to(c, m->id, CH_F_PING_REQ, &w);
        ch_wbuf_free(&w);
        asked++;
    }
}

void coord_on_ping(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint64_t seq = ch_rbuf_get_u64(rb);
    if (!ch_rbuf_ok(rb)) return;
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u64(&w, seq);
    if (!w.err) ch_conn_send(conn, CH_F_ACK, w.data, w.len);
    ch_wbuf_free(&w);
}

void coord_on_ack(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint64_t seq = ch_rbuf_get_u64(rb);
    if (!ch_rbuf_ok(rb)) return;
    if (seq == c->probe_seq) c->probe_acked = true;
    for (size_t i = 0; i < sizeof(c->relays) / sizeof(c->relays[0]); i++) {
        ping_relay *p = &c->relays[i];
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

void coord_on_ping_req(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint64_t their = ch_rbuf_get_u64(rb), target = ch_rbuf_get_u64(rb);
    ch_mem *from = ch_conn_ud(conn);
    if (!ch_rbuf_ok(rb) || !from) return;
    static const size_t slots = sizeof(c->relays) / sizeof(c->relays[0]);
    ping_relay *p = &c->relays[(c->probe_seq + 1) % slots];
    p->seq = ++c->probe_seq + (1ull << 62); /* never equal to our own probes */
    p->requester = from->id;
    p->their_seq = their;
    send_ping(c, target, p->seq);
}

/* Suspects whose suspicion lasted long enough are declared dead. */
void coord_expire_suspects(ch_coord *c, uint64_t now)
{
    uint64_t limit = suspicion_ns(c);
    for (size_t i = 0; i < c->mt.n; i++) {
        ch_mem *m = &c->mt.v[i];
        if (m->state != CH_MEMBER_SUSPECT || now - m->since_ns < limit) continue;
        CH_WARN("member %016llx (%s) declared dead", (unsigned long long)m->id, m->addr);
        int bits = ch_mtab_set(&c->mt, m, CH_MEMBER_DEAD, now);
        coord_after_merge(c, bits, 0, m);
    }
}

/* ---- connections -------------------------------------------------------------------- */

void coord_dial(ch_coord *c, ch_mem *m, uint64_t now)
{
    if (m->conn || m->dialing || !m->addr[0] || now < m->next_dial_ns) return;
    if (!ch_mem_alive(m) || m->id == c->mt.self) return;
    /* One connection per pair: the node with the smaller id dials, the other waits for it
     * (its frames wait in the backlog). Were both to dial, one of the two connections would
     * be closed with whatever was already sent on it (see prefer), and a migration sends
     * from the first moment. Seeds are dialled by address, whatever their id. A leaving
     * node dials everyone: a member that joined meanwhile never dials a node gone. */
    if (m->id < c->mt.self && !c->leaving) return;
    ch_conn *conn;
    m->next_dial_ns = now + ms(c->n->cfg.cluster.probe_interval_ms);
    if (ch_transport_connect(c->t, m->addr, CH_ROLE_PEER, &conn) == 0) {
        m->dialing = conn;
        ch_conn_set_ud(conn, NULL);
    }
}

void coord_dial_all(ch_coord *c, uint64_t now)
{
    for (size_t i = 0; i < c->mt.n; i++)
        coord_dial(c, &c->mt.v[i], now);
}

static void send_join(ch_coord *c, ch_conn *conn)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    put_member(&w, ch_mtab_self(&c->mt));
    if (!w.err) ch_conn_send(conn, CH_F_JOIN, w.data, w.len);
    ch_wbuf_free(&w);
}

/* Of two connections between the same pair, both ends keep the one dialled by the node
 * with the smaller id. */
static bool prefer(ch_coord *c, ch_conn *fresh, ch_conn *old, uint64_t peer)
{
    uint64_t fresh_by = ch_conn_initiator(fresh) ? c->mt.self : peer;
    uint64_t old_by = ch_conn_initiator(old) ? c->mt.self : peer;
    return fresh_by < old_by;
}

void coord_on_up(void *ud, ch_conn *conn, const ch_hello *peer)
{
    ch_coord *c = ud;
    if (peer->role == CH_ROLE_CTL) {
        struct ctl_conn *v = realloc(c->ctl_conns, (c->nctl + 1) * sizeof(*v));
        if (!v) {
            ch_conn_close(conn, -ENOMEM);
            return;
        }
        c->ctl_conns = v;
        v[c->nctl++] = (struct ctl_conn){++c->ctl_serial, conn};
        ch_conn_set_ud(conn, (void *)(uintptr_t)c->ctl_serial);
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
    if (m && m->state == CH_MEMBER_LEFT && !m->conn && !m->left_handled) {
        /* A member still leaving (handing its processes over) that this node learned of
         * only as gone, e.g. a newcomer: it takes part until it hangs up. */
        m->conn = conn;
        m->left_pending = true;
        ch_conn_set_ud(conn, m);
        coord_backlog_flush(m);
        coord_mig_on_up(c, m);
        coord_send_view(c, conn);
        coord_send_digest(c, conn);
        return;
    }
    if (m && (m->state == CH_MEMBER_DEAD || m->state == CH_MEMBER_LEFT)) {
        CH_WARN("refusing %s: member %016llx already left the hub", peer->addr,
                (unsigned long long)peer->node_id);
        ch_conn_close(conn, -EPERM);
        return;
    }
    if (m && m->conn && !prefer(c, conn, m->conn, peer->node_id)) {
        ch_conn_close(conn, -EALREADY); /* both sides keep the same one of the two */
        return;
    }
    if (m && m->conn) {
        ch_conn *old = m->conn;
        m->conn = NULL;
        ch_conn_set_ud(old, NULL);
        ch_conn_close(old, -EALREADY);
    }
    if (m && m->dialing == conn) m->dialing = NULL;
    send_join(c, conn);
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
    ch_conn_set_ud(conn, m);
    coord_backlog_flush(m);
    if (bits & CH_MT_RING) coord_after_merge(c, bits & ~CH_MT_CHANGED, 0, m);
    coord_mig_on_up(c, m);
    send_view_all(c); /* everyone learns of the newcomer, the newcomer of everyone */
    coord_send_digest(c, conn);
}

static ch_mem *mem_of_conn(ch_coord *c, ch_conn *conn)
{
    for (size_t i = 0; i < c->mt.n; i++)
        if (c->mt.v[i].conn == conn || c->mt.v[i].dialing == conn) return &c->mt.v[i];
    return NULL;
}

void coord_on_down(void *ud, ch_conn *conn, int reason)
{
    ch_coord *c = ud;
    for (size_t i = 0; i < c->nctl; i++)
        if (c->ctl_conns[i].conn == conn) c->ctl_conns[i] = c->ctl_conns[--c->nctl];
    ch_mem *m = mem_of_conn(c, conn);
    if (!m) return;
    bool was_up = m->conn == conn;
    if (m->conn == conn) m->conn = NULL;
    if (m->dialing == conn) m->dialing = NULL;
    if (was_up && m->state == CH_MEMBER_ALIVE && !c->leaving)
        suspect(c, m, reason ? strerror(-reason) : "connection closed");
    if (was_up && m->left_pending) left_done(c, m);
}

/* ---- crash restarts and partition mode ----------------------------------------------- */

static void count_restarts(ch_coord *c, uint64_t k)
{
    _Atomic uint64_t *s = &c->r->stats.crash_restarts;
    atomic_store_explicit(s, atomic_load_explicit(s, memory_order_relaxed) + k,
                          memory_order_relaxed);
}

static void restarts_done(void *ud, const int *results, size_t count)
{
    size_t ok = 0;
    for (size_t i = 0; i < count; i++)
        ok += results[i] == 0;
    CH_INFO("restarted %zu of %zu processes from their specs", ok, count);
}

/* Starts rows[0..k) here from their specs (state is lost: counted). */
static void restart_rows(ch_coord *c, ch_regrow **rows, size_t k)
{
    if (!k) return;
    ch_child_spec *specs = calloc(k, sizeof(*specs));
    if (!specs) {
        CH_ERROR("no memory to restart %zu processes", k);
        return;
    }
    for (size_t i = 0; i < k; i++) {
        ch_regrow *r = rows[i];
        specs[i] = (ch_child_spec){.id = ch_regrow_id(r),
                                   .id_len = r->id_len,
                                   .type = ch_regrow_type(r),
                                   .arg = ch_regrow_arg(r),
                                   .arg_len = r->arg_len,
                                   .restart = (ch_restart)r->restart,
                                   .shutdown_ms = r->shutdown_ms,
                                   .meta = ch_regrow_meta(r),
                                   .meta_len = r->meta_len,
                                   .tag = ch_regrow_tag(r)};
    }
    count_restarts(c, k);
    ch_batch_submit(c->n, CH_OP_START, specs, k, NULL, NULL, MAX_HOPS, restarts_done, NULL);
    free(specs);
}

/* The rows a gone member still owns pass to their new owners, restarted from their specs:
 * this node restarts the ones it owns now, and labels the others with their owner. Should
 * that owner be gone too before it restarted them (suspect when this member left, dead
 * soon after), its own departure passes them on again, so no process is forgotten. */
static void adopt_rows(ch_coord *c, ch_mem *m)
{
    ch_hashring *ring = atomic_load(&c->n->ring);
    ch_regrow **mine = malloc((c->reg.count + 1) * sizeof(*mine));
    size_t k = 0;
    for (size_t i = 0; mine && i < c->reg.cap; i++) {
        ch_regrow *r = c->reg.slots[i];
        if (!r || r->node != m->id) continue;
        uint64_t owner = ring ? ch_owner(c->n, ring, r->hash) : c->mt.self;
        coord_reg_reassign(c, r, owner);
        if (owner == c->mt.self) mine[k++] = r;
    }
    if (!c->partitioned) restart_rows(c, mine, k);
    free(mine);
    coord_mig_gone(c, m->id);
}

/* A member left the ring. A dead one's processes restart from their specs at once. One
 * that left gracefully hands them over first (migration): what it still owns when it
 * hangs up (it could not hand it over) restarts then, see coord_on_down. */
static void on_member_gone(ch_coord *c, ch_mem *m)
{
    CH_INFO("member %016llx (%s) %s", (unsigned long long)m->id, m->addr,
            m->state == CH_MEMBER_LEFT ? "left"
            : ch_mem_alive(m)          ? "drained"
                                       : "is dead");
    coord_run_cluster_hook(c, CH_HOOK_POST_CLUSTER_LEAVE, m->id);
    if (ch_mem_alive(m)) return; /* drained: it hands its processes over, and stays */
    if (m->state == CH_MEMBER_LEFT && m->conn) {
        m->left_pending = true;
        return;
    }
    adopt_rows(c, m);
    coord_backlog_free(m);
    if (m->conn) ch_conn_close(m->conn, 0);
}

/* A member that left gracefully hung up: its handover is over. */
static void left_done(ch_coord *c, ch_mem *m)
{
    m->left_pending = false;
    m->left_handled = true;
    adopt_rows(c, m);
    coord_backlog_free(m);
}

/* A leaving member that never hangs up is cut off after its handover's bound. */
void coord_expire_leavers(ch_coord *c, uint64_t now)
{
    uint64_t bound = ms(c->n->cfg.migration.leave_wait_ms) + ms(10000);
    for (size_t i = 0; i < c->mt.n; i++) {
        ch_mem *m = &c->mt.v[i];
        if (m->left_pending && m->conn && now - m->since_ns > bound) ch_conn_close(m->conn, 0);
    }
}

static bool quorum_lost(ch_coord *c, size_t alive, uint64_t now)
{
    const ch_cluster_config *cc = &c->n->cfg.cluster;
    switch (cc->partition) {
    case CH_PARTITION_STATIC_QUORUM:
        return alive < cc->quorum_size;
    case CH_PARTITION_DYNAMIC_QUORUM:
        if (alive >= c->largest_seen || now - c->largest_seen_ns > ms(cc->quorum_window_ms)) {
            c->largest_seen = alive;
            c->largest_seen_ns = now;
        }
        return (c->largest_seen - alive) * 100 > (size_t)cc->quorum_percent * c->largest_seen;
    case CH_PARTITION_MAJORITY_QUORUM:
        if (alive > c->largest_seen) c->largest_seen = alive;
        return alive * 2 <= c->largest_seen;
    default:
        return false;
    }
}

static void enter_partition(ch_coord *c)
{
    CH_WARN("partition mode: quorum lost; stopping local processes");
    c->partitioned = true;
    atomic_store(&c->n->partitioned, 1);
    size_t k = 0;
    ch_regrow **parked = malloc((c->reg.count + 1) * sizeof(*parked));
    const char **ids = malloc((c->reg.count + 1) * sizeof(*ids));
    size_t *lens = malloc((c->reg.count + 1) * sizeof(*lens));
    for (size_t i = 0; parked && ids && lens && i < c->reg.cap; i++) {
        ch_regrow *r = c->reg.slots[i];
        if (!r || r->node != c->mt.self) continue;
        ch_regrow *copy = ch_regrow_new(r->node, r->core, r->incarnation, ch_regrow_id(r),
                                        r->id_len, ch_regrow_type(r), r->type_len, ch_regrow_tag(r),
                                        r->tag_len, r->restart, r->shutdown_ms, ch_regrow_arg(r),
                                        r->arg_len, ch_regrow_meta(r), r->meta_len);
        if (!copy) continue;
        parked[k] = copy;
        ids[k] = ch_regrow_id(copy);
        lens[k++] = copy->id_len;
    }
    if (k) ch_batch_submit(c->n, CH_OP_STOP, NULL, k, ids, lens, MAX_HOPS, restarts_done, NULL);
    free(ids);
    free(lens);
    c->parked = parked;
    c->nparked = k;
}

static void leave_partition(ch_coord *c)
{
    CH_INFO("partition mode over: restarting %zu local processes", c->nparked);
    c->partitioned = false;
    atomic_store(&c->n->partitioned, 0);
    restart_rows(c, c->parked, c->nparked);
    for (size_t i = 0; i < c->nparked; i++)
        free(c->parked[i]);
    free(c->parked);
    c->parked = NULL;
    c->nparked = 0;
}

void coord_check_partition(ch_coord *c)
{
    bool lost = quorum_lost(c, ch_mtab_ring_size(&c->mt), ch_now_ns());
    if (lost && !c->partitioned) enter_partition(c);
    if (!lost && c->partitioned) leave_partition(c);
}

void coord_on_partition_reset(ch_coord *c)
{
    c->largest_seen = ch_mtab_ring_size(&c->mt);
    c->largest_seen_ns = ch_now_ns();
    coord_check_partition(c);
}
