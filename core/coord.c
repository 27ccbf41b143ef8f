/*
 * core/coord.c - the coordinator (see coord.h).
 *
 * Membership is SWIM-like over a full mesh of authenticated TCP connections: every probe
 * interval the coordinator pings one member round-robin; a member that does not answer in
 * time is pinged indirectly through two others, then suspected, then declared dead after
 * the suspicion timeout; a suspected member refutes by raising its incarnation. Views
 * (the whole member table) are pushed to every peer whenever they change and merge by the
 * rules in member.c, so every node converges on the same table. The ring is rebuilt when
 * the set of ring members changes; each rebuild is a new epoch, max(seen) + 1.
 *
 * The registry replica holds a row for every process of the hub. Local cores report their
 * inserts and removals; the coordinator applies them and streams them to every peer in
 * batched REG_DELTA frames. Every sync interval each node sends a digest of its own rows;
 * a peer whose replica disagrees asks for the full set (anti-entropy).
 *
 * Work for processes on other nodes (casts, calls, starts, stops) arrives here as records
 * and leaves as frames to the owner node; a call's reply finds its way back through a
 * relay entry in the receiving coordinator's timer table.
 */
#include "coord.h"

#include "hashring.h"
#include "log.h"
#include "member.h"
#include "regtab.h"
#include "supervisor.h"

#include "net/auth.h"
#include "net/frame.h"
#include "net/handshake.h"
#include "net/transport.h"
#include "net/wire.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#define MAX_HOPS     CH_MAX_HOPS
#define RELAY_MS     120000u /* a relayed call's entry outlives any caller's timeout */
#define HANDSHAKE_MS 5000u   /* a connection must authenticate within this */
#define DELTA_FLUSH  (64u * 1024)
#define CTL_MAX_ARGS 64

enum { REG_INSERT = 1, REG_REMOVE = 2 };

typedef struct ping_relay { /* a PING_REQ we serve: the ACK goes back to the requester */
    uint64_t seq, requester, their_seq;
} ping_relay;

typedef struct ctl_job ctl_job;

struct ch_coord {
    ch_node *n;
    ch_reactor *r;
    ch_transport *t;
    ch_mtab mt;
    ch_regtab reg;
    ch_hello hello;
    uint64_t epoch;
    size_t probe_next;
    uint64_t probe_seq;
    uint64_t probe_target, probe_sent_ns;
    bool probe_acked, probe_indirect;
    ping_relay relays[16];
    ch_wbuf delta; /* REG_DELTA entries not yet sent */
    uint32_t delta_count;
    bool delta_timer;
    size_t largest_seen;      /* MAJORITY / DYNAMIC quorum */
    uint64_t largest_seen_ns; /* when largest_seen was last observed */
    bool partitioned;
    ch_regrow **parked; /* specs of local processes stopped by partition mode */
    size_t nparked;
    ch_waiter *leave_waiter; /* set while ch_node_leave waits */
    bool leaving;
    /* control requests: handled on a thread of their own */
    pthread_t ctl_thread;
    bool ctl_running;
    pthread_mutex_t ctl_mu;
    pthread_cond_t ctl_cv;
    ctl_job *ctl_head, *ctl_tail;
    bool ctl_quit;
    ch_ctl_handler ctl_handler;
    void *ctl_ud;
    uint64_t ctl_serial;
    struct ctl_conn { /* control connections alive now: answers find theirs by serial */
        uint64_t serial;
        ch_conn *conn;
    } * ctl_conns;
    size_t nctl;
};

struct ctl_job {
    ctl_job *next;
    ch_coord *c;
    uint64_t serial; /* the control connection's serial (see ctl_conns) */
    int argc;
    char **argv;
    char *argbuf;
    int status;
    ch_wbuf out;
};

struct ch_ctl_reply {
    ch_wbuf *w;
};

static void send_view_all(ch_coord *c);
static void rebuild_ring(ch_coord *c, uint64_t seen_epoch);
static void check_partition(ch_coord *c);
static void on_member_gone(ch_coord *c, ch_mem *m);

static ch_coord *coord_of(ch_reactor *r)
{
    return r->node->coord;
}

/* ---- sending ------------------------------------------------------------------------ */

static void dial(ch_coord *c, ch_mem *m, uint64_t now);

/* Frames for a member we know but are not connected to yet wait here, in order, until
 * the connection is up (a view can announce a member before either side dialled). */
static int backlog(ch_coord *c, ch_mem *m, uint8_t type, const void *a, size_t alen, const void *b,
                   size_t blen)
{
    if (!ch_mem_in_ring(m) || m->id == c->mt.self) return -EHOSTUNREACH;
    ch_wbuf *w = m->backlog;
    if (!w && !(w = m->backlog = calloc(1, sizeof(*w)))) return -ENOMEM;
    if (w->len + alen + blen > CH_CONN_MAX_QUEUE) return -ENOBUFS;
    uint8_t *hdr = ch_wbuf_put_space(w, CH_FRAME_HDR + alen + blen);
    if (!hdr) return -ENOMEM;
    if (alen) memcpy(hdr + CH_FRAME_HDR, a, alen);
    if (blen) memcpy(hdr + CH_FRAME_HDR + alen, b, blen);
    ch_frame_header_write(hdr, type, 0, hdr + CH_FRAME_HDR, (uint32_t)(alen + blen));
    m->next_dial_ns = 0;
    dial(c, m, ch_now_ns());
    return 0;
}

static void backlog_free(ch_mem *m)
{
    ch_wbuf *w = m->backlog;
    if (w) ch_wbuf_free(w);
    free(w);
    m->backlog = NULL;
}

static void backlog_flush(ch_mem *m)
{
    ch_wbuf *w = m->backlog;
    if (w && w->len && m->conn) ch_conn_send_raw(m->conn, w->data, w->len);
    backlog_free(m);
}

/* Back-pressure toward the application: when a peer reads slower than we write, new
 * ch_send calls for remote ids get -EAGAIN (node.c) until the queues drain, rather than
 * the queue growing until the connection must be cut. */
#define QUEUE_HIGH (16u << 20)
#define QUEUE_LOW  (4u << 20)

static void update_congestion(ch_coord *c)
{
    size_t worst = 0;
    for (size_t i = 0; i < c->mt.n; i++) {
        ch_mem *m = &c->mt.v[i];
        size_t q = m->conn ? ch_conn_queued(m->conn) : 0;
        if (m->backlog) q += ((ch_wbuf *)m->backlog)->len;
        if (q > worst) worst = q;
    }
    int was = atomic_load_explicit(&c->n->net_congested, memory_order_relaxed);
    int now = worst > QUEUE_HIGH || (was && worst > QUEUE_LOW);
    if (now != was) atomic_store_explicit(&c->n->net_congested, now, memory_order_relaxed);
}

static int send_frame(ch_coord *c, uint64_t node, uint8_t type, const void *a, size_t alen,
                      const void *b, size_t blen)
{
    ch_mem *m = ch_mtab_find(&c->mt, node);
    if (!m) return -EHOSTUNREACH;
    int rc = m->conn ? ch_conn_send2(m->conn, type, a, alen, b, blen)
                     : backlog(c, m, type, a, alen, b, blen);
    if (rc == 0 && m->conn && ch_conn_queued(m->conn) > QUEUE_HIGH)
        atomic_store_explicit(&c->n->net_congested, 1, memory_order_relaxed);
    return rc;
}

static int send_to(ch_coord *c, uint64_t node, uint8_t type, const ch_wbuf *w)
{
    if (w->err) return w->err;
    return send_frame(c, node, type, w->data, w->len, NULL, 0);
}

static void send_all(ch_coord *c, uint8_t type, const ch_wbuf *w)
{
    if (w->err) return;
    for (size_t i = 0; i < c->mt.n; i++) {
        ch_mem *m = &c->mt.v[i];
        if (m->conn && ch_mem_in_ring(m)) ch_conn_send(m->conn, type, w->data, w->len);
    }
}

/* ---- ring and epochs ---------------------------------------------------------------- */

unsigned ch_route(ch_node *n, uint64_t hash)
{
    /* hash % cores, without a division when cores is a power of two (hot path) */
    unsigned local =
        (unsigned)(n->core_mask || n->cores == 1 ? hash & n->core_mask : hash % n->cores);
    if (!n->coord) return local;
    ch_hashring *ring = atomic_load_explicit(&n->ring, memory_order_acquire);
    uint64_t owner;
    if (!ring || ch_hashring_owner(ring, hash, &owner) < 0 || owner == n->id) return local;
    return n->cores;
}

static void run_cluster_hook(ch_coord *c, ch_hook_point point, uint64_t node)
{
    if (!ch_hooks_any(&c->n->hooks, point)) return;
    ch_hook_event ev = {.point = point, .node = node, .epoch = c->epoch};
    ch_hooks_run(&c->n->hooks, &ev);
}

/* Publishes a ring for the current member set as epoch max(epoch, seen) + 1. The old
 * ring is retired, not freed: another thread may be reading it (freed at node destroy). */
static void rebuild_ring(ch_coord *c, uint64_t seen_epoch)
{
    ch_node *n = c->n;
    uint64_t *ids = malloc(c->mt.n * sizeof(*ids));
    if (!ids) {
        CH_ERROR("no memory to rebuild the ring; keeping epoch %llu", (unsigned long long)c->epoch);
        return;
    }
    size_t k = ch_mtab_ring_ids(&c->mt, ids);
    uint64_t epoch = (seen_epoch > c->epoch ? seen_epoch : c->epoch) + 1;
    ch_hashring *ring;
    uint32_t vnodes = n->cfg.cluster.vnodes;
    run_cluster_hook(c, CH_HOOK_PRE_REDISTRIBUTION, 0);
    int rc = ch_hashring_build(ids, k, vnodes, epoch, &ring);
    free(ids);
    if (rc < 0) {
        CH_ERROR("ring rebuild failed: %s", ch_strerror(rc));
        return;
    }
    c->epoch = epoch;
    ch_hashring *old = atomic_exchange_explicit(&n->ring, ring, memory_order_acq_rel);
    if (old) ch_node_retire_ring(n, old);
    atomic_store(&n->epoch, epoch);
    CH_INFO("epoch %llu: %zu members", (unsigned long long)epoch, k);
    run_cluster_hook(c, CH_HOOK_POST_REDISTRIBUTION, 0);
    check_partition(c);
}

/* ---- views -------------------------------------------------------------------------- */

static void put_member(ch_wbuf *w, const ch_mem *m)
{
    ch_wbuf_put_u64(w, m->id);
    ch_wbuf_put_u64(w, m->incarnation);
    ch_wbuf_put_u8(w, m->state);
    ch_wbuf_put_u16(w, m->cores);
    ch_wbuf_put_str8(w, m->addr, strlen(m->addr));
}

static bool get_member(ch_rbuf *rb, ch_mem *m)
{
    memset(m, 0, sizeof(*m));
    m->id = ch_rbuf_get_u64(rb);
    m->incarnation = ch_rbuf_get_u64(rb);
    m->state = ch_rbuf_get_u8(rb);
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

static void send_view(ch_coord *c, ch_conn *conn)
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
    send_all(c, CH_F_VIEW, &w);
    ch_wbuf_free(&w);
}

static void member_added(ch_coord *c, ch_mem *m)
{
    CH_INFO("member %016llx (%s) joined", (unsigned long long)m->id, m->addr);
    run_cluster_hook(c, CH_HOOK_POST_CLUSTER_JOIN, m->id);
}

/* Applies a merge result: ring, hooks, refutation, propagation. */
static void after_merge(ch_coord *c, int bits, uint64_t seen_epoch, ch_mem *changed)
{
    if (bits & CH_MT_RING) {
        if (changed && ch_mem_in_ring(changed))
            run_cluster_hook(c, CH_HOOK_PRE_CLUSTER_JOIN, changed->id);
        if (changed && !ch_mem_in_ring(changed))
            run_cluster_hook(c, CH_HOOK_PRE_CLUSTER_LEAVE, changed->id);
        rebuild_ring(c, seen_epoch);
        if (changed && ch_mem_in_ring(changed)) member_added(c, changed);
        if (changed && !ch_mem_in_ring(changed)) on_member_gone(c, changed);
    } else if (seen_epoch > c->epoch) {
        c->epoch = seen_epoch; /* same members, a peer counted more changes: adopt */
        atomic_store(&c->n->epoch, seen_epoch);
    }
    if (bits & CH_MT_CHANGED) send_view_all(c);
}

static int merge_one(ch_coord *c, const ch_mem *m, uint64_t seen_epoch)
{
    uint64_t now = ch_now_ns();
    int bits = ch_mtab_merge(&c->mt, m, now);
    if (bits & CH_MT_RING) {
        after_merge(c, bits & ~CH_MT_CHANGED, seen_epoch, ch_mtab_find(&c->mt, m->id));
        bits &= ~CH_MT_RING;
    }
    return bits;
}

static void on_view(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    uint64_t epoch = ch_rbuf_get_u64(rb);
    uint32_t count = ch_rbuf_get_u32(rb);
    int bits = 0;
    for (uint32_t i = 0; i < count && ch_rbuf_ok(rb); i++) {
        ch_mem m;
        if (!get_member(rb, &m)) break;
        bits |= merge_one(c, &m, epoch);
        if (m.id == c->mt.self && c->leaving && m.state == CH_MEMBER_LEFT && c->leave_waiter) {
            ch_mem *peer = ch_conn_ud(conn);
            if (peer) peer->saw_leave = true;
        }
    }
    if (!ch_rbuf_ok(rb)) CH_WARN("malformed VIEW from %s ignored", ch_conn_addr(conn));
    after_merge(c, bits, epoch, NULL);
}

/* ---- failure detection -------------------------------------------------------------- */

static uint64_t ms(uint32_t v)
{
    return (uint64_t)v * 1000000ull;
}

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
    send_to(c, target, CH_F_PING, &w);
    ch_wbuf_free(&w);
}

static void suspect(ch_coord *c, ch_mem *m, const char *why)
{
    if (m->state != CH_MEMBER_ALIVE) return;
    CH_WARN("member %016llx (%s) suspected: %s", (unsigned long long)m->id, m->addr, why);
    int bits = ch_mtab_set(&c->mt, m, CH_MEMBER_SUSPECT, ch_now_ns());
    after_merge(c, bits, 0, m);
}

/* The probe of the last period: no answer at all → suspect; then start the next one. */
static void probe_round(ch_coord *c)
{
    ch_mem *prev = c->probe_target ? ch_mtab_find(&c->mt, c->probe_target) : NULL;
    if (prev && !c->probe_acked) suspect(c, prev, "no answer to direct or indirect pings");
    c->probe_target = 0;
    size_t n = c->mt.n;
    for (size_t k = 0; k < n; k++) {
        ch_mem *m = &c->mt.v[(c->probe_next + k) % n];
        if (m->id == c->mt.self || !ch_mem_in_ring(m)) continue;
        c->probe_next = (c->probe_next + k + 1) % n;
        c->probe_target = m->id;
        c->probe_acked = false;
        c->probe_indirect = false;
        c->probe_sent_ns = ch_now_ns();
        send_ping(c, m->id, ++c->probe_seq);
        if (m->conn) send_view(c, m->conn); /* gossip: views converge even if a push was lost */
        return;
    }
}

/* Direct ping timed out: ask two other members to ping the target for us. */
static void probe_indirect(ch_coord *c)
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
        send_to(c, m->id, CH_F_PING_REQ, &w);
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
    if (seq == c->probe_seq) c->probe_acked = true;
    for (size_t i = 0; i < sizeof(c->relays) / sizeof(c->relays[0]); i++) {
        ping_relay *p = &c->relays[i];
        if (!p->seq || p->seq != seq) continue;
        ch_wbuf w;
        ch_wbuf_init(&w);
        ch_wbuf_put_u64(&w, p->their_seq);
        send_to(c, p->requester, CH_F_ACK, &w);
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
    static const size_t slots = sizeof(c->relays) / sizeof(c->relays[0]);
    ping_relay *p = &c->relays[(c->probe_seq + 1) % slots];
    p->seq = ++c->probe_seq + (1ull << 62); /* never equal to our own probes */
    p->requester = from->id;
    p->their_seq = their;
    send_ping(c, target, p->seq);
}

/* Suspects whose suspicion lasted long enough are declared dead. */
static void expire_suspects(ch_coord *c, uint64_t now)
{
    uint64_t limit = suspicion_ns(c);
    for (size_t i = 0; i < c->mt.n; i++) {
        ch_mem *m = &c->mt.v[i];
        if (m->state != CH_MEMBER_SUSPECT || now - m->since_ns < limit) continue;
        CH_WARN("member %016llx (%s) declared dead", (unsigned long long)m->id, m->addr);
        int bits = ch_mtab_set(&c->mt, m, CH_MEMBER_DEAD, now);
        after_merge(c, bits, 0, m);
    }
}

/* ---- connections -------------------------------------------------------------------- */

static void dial(ch_coord *c, ch_mem *m, uint64_t now)
{
    if (m->conn || m->dialing || !m->addr[0] || now < m->next_dial_ns) return;
    if (!ch_mem_in_ring(m) || m->id == c->mt.self) return;
    /* One connection per pair: the node with the larger id dials, unless frames wait. */
    if (m->id > c->mt.self && !m->backlog) return;
    ch_conn *conn;
    m->next_dial_ns = now + ms(c->n->cfg.cluster.probe_interval_ms);
    if (ch_transport_connect(c->t, m->addr, CH_ROLE_PEER, &conn) == 0) {
        m->dialing = conn;
        ch_conn_set_ud(conn, NULL);
    }
}

static void dial_all(ch_coord *c, uint64_t now)
{
    for (size_t i = 0; i < c->mt.n; i++)
        dial(c, &c->mt.v[i], now);
}

static void send_join(ch_coord *c, ch_conn *conn)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    put_member(&w, ch_mtab_self(&c->mt));
    if (!w.err) ch_conn_send(conn, CH_F_JOIN, w.data, w.len);
    ch_wbuf_free(&w);
}

static void send_digest(ch_coord *c, ch_conn *conn);

/* Of two connections between the same pair, both ends keep the one dialled by the node
 * with the smaller id. */
static bool prefer(ch_coord *c, ch_conn *fresh, ch_conn *old, uint64_t peer)
{
    uint64_t fresh_by = ch_conn_initiator(fresh) ? c->mt.self : peer;
    uint64_t old_by = ch_conn_initiator(old) ? c->mt.self : peer;
    return fresh_by < old_by;
}

static void on_up(void *ud, ch_conn *conn, const ch_hello *peer)
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
    if (!m) {
        merge_one(c, &rec, 0);
        m = ch_mtab_find(&c->mt, peer->node_id);
        if (!m) {
            ch_conn_close(conn, -ENOMEM);
            return;
        }
    }
    m->conn = conn;
    ch_conn_set_ud(conn, m);
    backlog_flush(m);
    send_view_all(c); /* everyone learns of the newcomer, the newcomer of everyone */
    send_digest(c, conn);
}

static ch_mem *mem_of_conn(ch_coord *c, ch_conn *conn)
{
    for (size_t i = 0; i < c->mt.n; i++)
        if (c->mt.v[i].conn == conn || c->mt.v[i].dialing == conn) return &c->mt.v[i];
    return NULL;
}

static void on_down(void *ud, ch_conn *conn, int reason)
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
}

/* ---- registry replica --------------------------------------------------------------- */

static void digest_apply(ch_coord *c, const ch_regrow *row, int sign)
{
    ch_mem *m = ch_mtab_find(&c->mt, row->node);
    if (!m) return;
    m->reg_count += (uint64_t)sign;
    m->reg_xor ^= ch_regrow_digest(row);
}

static void reg_put(ch_coord *c, ch_regrow *row)
{
    ch_regrow *old;
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

static void flush_delta(ch_coord *c)
{
    if (!c->delta_count) return;
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u32(&w, c->delta_count);
    ch_wbuf_put_bytes(&w, c->delta.data, c->delta.len);
    send_all(c, CH_F_REG_DELTA, &w);
    ch_wbuf_free(&w);
    ch_wbuf_reset(&c->delta);
    c->delta_count = 0;
}

static void delta_timer(ch_reactor *r, uint64_t arg)
{
    ch_coord *c = coord_of(r);
    c->delta_timer = false;
    flush_delta(c);
}

static void schedule_flush(ch_coord *c)
{
    if (c->delta.len >= DELTA_FLUSH) flush_delta(c);
    if (c->delta_timer || !c->delta_count) return;
    c->delta_timer = ch_sup_timer_fn(c->r, 2, delta_timer, 0) != 0;
    if (!c->delta_timer) flush_delta(c);
}

/* A local core's REG record: payload = u8 op + row (insert) or u8 op + u64 node + id. */
static void on_local_reg(ch_coord *c, ch_rec *rec)
{
    ch_rbuf rb;
    ch_rbuf_init(&rb, ch_rec_payload(rec), rec->len);
    uint8_t op = ch_rbuf_get_u8(&rb);
    if (op == REG_INSERT) {
        ch_regrow *row = get_row(&rb);
        if (row) reg_put(c, row);
    } else {
        uint64_t node = ch_rbuf_get_u64(&rb);
        ch_span id = ch_rbuf_get_str8(&rb);
        if (ch_rbuf_ok(&rb)) reg_del(c, node, (const char *)id.p, id.len);
    }
    if (!ch_rbuf_ok(&rb)) return;
    ch_wbuf_put_bytes(&c->delta, ch_rec_payload(rec), rec->len);
    c->delta_count++;
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

void ch_coord_local_insert(ch_reactor *r, const ch_proc *p)
{
    const ch_spec *s = p->spec;
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u8(&w, REG_INSERT);
    ch_wbuf_put_u64(&w, r->node->id);
    ch_wbuf_put_u16(&w, (uint16_t)r->core);
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

void ch_coord_local_remove(ch_reactor *r, const ch_proc *p)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u8(&w, REG_REMOVE);
    ch_wbuf_put_u64(&w, r->node->id);
    ch_wbuf_put_str8(&w, ch_spec_id(p->spec), p->spec->id_len);
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
            if (row) reg_put(c, row);
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

static void send_digest(ch_coord *c, ch_conn *conn)
{
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
    flush_delta(c); /* keep deltas ordered before the snapshot */
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

/* Forgets every row of a member; `gone`: it left the hub, so each removal is an event. */
static void drop_rows_of(ch_coord *c, uint64_t owner, bool gone)
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
    drop_rows_of(c, owner, false);
    for (uint32_t i = 0; i < count && ch_rbuf_ok(rb); i++) {
        ch_regrow *row = get_row(rb);
        if (row && row->node == owner)
            reg_put(c, row);
        else
            free(row);
    }
    if (!ch_rbuf_ok(rb)) CH_WARN("malformed REG_SYNC from %s", ch_conn_addr(conn));
}

/* ---- where an id lives --------------------------------------------------------------- */

/* The registry row's node if there is one, else the ring owner (self on an empty ring). */
static uint64_t where(ch_coord *c, uint64_t hash, const char *id, size_t len)
{
    ch_regrow *row = ch_regtab_find(&c->reg, hash, id, len);
    if (row) return row->node;
    uint64_t owner = c->mt.self;
    ch_hashring *ring = atomic_load(&c->n->ring);
    if (ring) ch_hashring_owner(ring, hash, &owner);
    return owner;
}

static void dead_letter(ch_coord *c, const char *id, size_t len, const char *why)
{
    ch_counters *s = &c->r->stats;
    atomic_store_explicit(&s->dead_letters,
                          atomic_load_explicit(&s->dead_letters, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    CH_DEBUG("dead letter for %.*s: %s", (int)len, id, why);
}

/* Delivers to the local owner core; `final` records are not forwarded again on a miss. */
static void to_local_core(ch_coord *c, uint8_t op, const char *id, size_t len, uint64_t hash,
                          const void *data, size_t dlen, unsigned src_core, uint64_t ref)
{
    ch_rec h = {.op = op,
                .id_len = (uint8_t)len,
                .flags = CH_REC_MISS,
                .len = (uint32_t)dlen,
                .src_core = (uint16_t)src_core,
                .ref = ref,
                .aux = hash};
    ch_reactor_post(c->n, (unsigned)(hash % c->n->cores), &h, id, data, false);
}

static int send_cast(ch_coord *c, uint64_t node, uint8_t hops, const char *id, size_t len,
                     const void *data, size_t dlen)
{
    uint8_t hdr[2 + CH_ID_MAX + 4];
    size_t k = 0;
    hdr[k++] = hops;
    hdr[k++] = (uint8_t)len;
    memcpy(hdr + k, id, len);
    k += len;
    uint32_t l32 = (uint32_t)dlen;
    memcpy(hdr + k, &l32, 4);
    k += 4;
    return send_frame(c, node, CH_F_CAST, hdr, k, data, dlen);
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
    k += 8;
    hdr[k++] = (uint8_t)len;
    memcpy(hdr + k, id, len);
    k += len;
    uint32_t l32 = (uint32_t)dlen;
    memcpy(hdr + k, &l32, 4);
    k += 4;
    return send_frame(c, node, CH_F_CALL, hdr, k, data, dlen);
}

static void fail_call(ch_coord *c, unsigned core, uint64_t ref, int status)
{
    ch_reactor_reply(c->r, core, ref, status, NULL, 0);
}

static void route_cast(ch_coord *c, uint8_t hops, bool final, const char *id, size_t len,
                       uint64_t hash, const void *data, size_t dlen)
{
    uint64_t node = where(c, hash, id, len);
    if (node == c->mt.self || hops >= MAX_HOPS) {
        if (final)
            dead_letter(c, id, len, "not on its node");
        else
            to_local_core(c, CH_OP_CAST, id, len, hash, data, dlen, 0, 0);
        return;
    }
    if (send_cast(c, node, hops, id, len, data, dlen) < 0)
        dead_letter(c, id, len, "owner unreachable");
}

static void route_call(ch_coord *c, uint8_t hops, bool final, const char *id, size_t len,
                       uint64_t hash, const void *data, size_t dlen, unsigned core, uint64_t ref)
{
    uint64_t node = where(c, hash, id, len);
    if (node == c->mt.self || hops >= MAX_HOPS) {
        if (final)
            fail_call(c, core, ref, CH_ENOPROC);
        else
            to_local_core(c, CH_OP_CALL, id, len, hash, data, dlen, core, ref);
        return;
    }
    int rc = send_call(c, node, hops, (uint16_t)core, ref, id, len, data, dlen);
    if (rc < 0) fail_call(c, core, ref, rc);
}

/* Records from this node's threads for processes elsewhere. */
static void on_out_cast(ch_coord *c, ch_rec *rec)
{
    route_cast(c, 0, rec->flags & CH_REC_MISS, ch_rec_id(rec), rec->id_len, rec->aux,
               ch_rec_payload(rec), rec->len);
}

static void on_out_call(ch_coord *c, ch_rec *rec)
{
    route_call(c, 0, rec->flags & CH_REC_MISS, ch_rec_id(rec), rec->id_len, rec->aux,
               ch_rec_payload(rec), rec->len, rec->src_core, rec->ref);
}

static void on_out_fcall(ch_coord *c, ch_rec *rec)
{
    ch_fcall *fc = (ch_fcall *)(uintptr_t)rec->ref;
    uint64_t pid = ch_sup_pending_foreign(c->r, fc);
    if (!pid) {
        ch_fcall_complete(fc, -ENOMEM, NULL, 0);
        return;
    }
    route_call(c, 0, false, ch_rec_id(rec), rec->id_len, rec->aux, ch_rec_payload(rec), rec->len,
               c->r->core, pid);
}

void ch_coord_miss(ch_reactor *r, ch_rec *rec, unsigned core, uint64_t ref)
{
    ch_rec h = *rec;
    h.op = rec->op == CH_OP_CAST ? CH_OP_CAST : CH_OP_CALL; /* an FCALL has its entry now */
    h.flags = (uint8_t)((h.flags & ~CH_REC_INDIRECT) | CH_REC_MISS);
    h.src_core = (uint16_t)core;
    h.ref = ref;
    ch_reactor_post(r->node, r->node->cores, &h, ch_rec_id(rec), ch_rec_payload(rec), false);
}

/* Frames from peers. */
static void on_cast_frame(ch_coord *c, ch_rbuf *rb)
{
    uint8_t hops = ch_rbuf_get_u8(rb);
    ch_span id = ch_rbuf_get_str8(rb), data = ch_rbuf_get_blob32(rb);
    if (!ch_rbuf_done(rb) || id.len == 0) return;
    if (data.len > c->n->cfg.max_message)
        return dead_letter(c, (const char *)id.p, id.len, "too large");
    route_cast(c, (uint8_t)(hops + 1), false, (const char *)id.p, id.len, XXH3_64bits(id.p, id.len),
               data.p, data.len);
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
    route_call(c, (uint8_t)(hops + 1), false, (const char *)id.p, id.len, XXH3_64bits(id.p, id.len),
               data.p, data.len, c->r->core, relay);
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
    send_frame(c, peer, CH_F_REPLY, hdr, sizeof(hdr), data, len); /* the caller may be gone */
}

static void on_reply_frame(ch_coord *c, ch_rbuf *rb)
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
    uint32_t n;
    uint32_t idx[];
} rreq;

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
        q->n = n;
        memcpy(q->idx, idx, n * sizeof(uint32_t));
        ch_wbuf_put_u64(&w, id);
        ch_wbuf_put_u8(&w, (uint8_t)(b->hops + 1));
        ch_wbuf_put_u32(&w, n);
        for (uint32_t i = 0; i < n; i++)
            put_spec(&w, keys[idx[i]]);
        rc = send_to(c, node, op == CH_OP_START ? CH_F_START_REQ : CH_F_STOP_REQ, &w);
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
    uint64_t owner = c->mt.self;
    ch_hashring *ring = atomic_load(&c->n->ring);
    if (ring) ch_hashring_owner(ring, s->hash, &owner);
    return owner;
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
static void on_out_batch(ch_coord *c, ch_rec *rec)
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
    send_to(c, d->peer, d->resp, &w);
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

static void on_batch_resp(ch_coord *c, ch_rbuf *rb)
{
    uint64_t req = ch_rbuf_get_u64(rb);
    ch_timer *e = ch_rbuf_ok(rb) ? ch_timers_get(&c->r->timers, req) : NULL;
    if (!e || e->kind != CH_TK_REMOTE) return;
    void *q = e->a;
    ch_timers_free(&c->r->timers, e);
    ch_coord_remote_batch_done(c->r, q, 0, rb->p + rb->pos, ch_rbuf_left(rb));
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

/* A member left the ring (dead or left): its processes restart on their new owners, from
 * their specs; this node restarts those it now owns, and every node forgets the rows. */
static void on_member_gone(ch_coord *c, ch_mem *m)
{
    CH_INFO("member %016llx (%s) %s", (unsigned long long)m->id, m->addr,
            m->state == CH_MEMBER_LEFT ? "left" : "is dead");
    run_cluster_hook(c, CH_HOOK_POST_CLUSTER_LEAVE, m->id);
    ch_hashring *ring = atomic_load(&c->n->ring);
    ch_regrow **mine = malloc((c->reg.count + 1) * sizeof(*mine));
    size_t k = 0;
    for (size_t i = 0; mine && i < c->reg.cap; i++) {
        ch_regrow *r = c->reg.slots[i];
        uint64_t owner;
        if (!r || r->node != m->id) continue;
        if (ring && ch_hashring_owner(ring, r->hash, &owner) == 0 && owner == c->mt.self)
            mine[k++] = r;
    }
    if (!c->partitioned) restart_rows(c, mine, k);
    free(mine);
    drop_rows_of(c, m->id, true);
    backlog_free(m);
    if (m->conn) ch_conn_close(m->conn, 0);
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

static void check_partition(ch_coord *c)
{
    bool lost = quorum_lost(c, ch_mtab_ring_size(&c->mt), ch_now_ns());
    if (lost && !c->partitioned) enter_partition(c);
    if (!lost && c->partitioned) leave_partition(c);
}

static void on_partition_reset(ch_coord *c)
{
    c->largest_seen = ch_mtab_ring_size(&c->mt);
    c->largest_seen_ns = ch_now_ns();
    check_partition(c);
}

/* ---- registry queries at the coordinator --------------------------------------------- */

static void on_query(ch_coord *c, ch_rec *rec)
{
    ch_query *q = (ch_query *)(uintptr_t)rec->ref;
    if (!q->list) {
        const ch_spec *k = q->key;
        ch_regrow *r = ch_regtab_find(&c->reg, k->hash, ch_spec_id(k), k->id_len);
        q->status = r ? 0 : CH_ENOPROC;
        if (r && !(q->info = ch_regrow_info(r))) q->status = -ENOMEM;
        ch_query_core_done(q);
        return;
    }
    ch_proc_list *l = &q->per_core[0];
    l->items = calloc(c->reg.count + 1, sizeof(*l->items));
    for (size_t i = 0; l->items && i < c->reg.cap; i++) {
        ch_regrow *r = c->reg.slots[i];
        if (!r || (q->tag && strcmp(q->tag, ch_regrow_tag(r)) != 0)) continue;
        ch_proc_info *info = ch_regrow_info(r);
        if (info) l->items[l->count++] = info;
    }
    ch_query_core_done(q);
}

/* ---- control requests ---------------------------------------------------------------- */

int ch_ctl_reply_append(ch_ctl_reply *r, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n < 0) return -EINVAL;
    if ((size_t)n < sizeof(line)) return ch_wbuf_put_bytes(r->w, line, (size_t)n);
    char *big = malloc((size_t)n + 1);
    if (!big) return -ENOMEM;
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    int rc = ch_wbuf_put_bytes(r->w, big, (size_t)n);
    free(big);
    return rc;
}

static void ctl_job_free(ctl_job *j)
{
    free(j->argv);
    free(j->argbuf);
    ch_wbuf_free(&j->out);
    free(j);
}

/* Back on the coordinator: answer on the connection if it is still there. */
static void ctl_answer(ch_node *n, void *ud)
{
    ctl_job *j = ud;
    ch_coord *c = n->coord;
    ch_conn *conn = NULL; /* the connection may have closed while the handler ran */
    for (size_t i = 0; i < c->nctl; i++)
        if (c->ctl_conns[i].serial == j->serial) conn = c->ctl_conns[i].conn;
    if (conn) {
        ch_wbuf w;
        ch_wbuf_init(&w);
        ch_wbuf_put_u32(&w, (uint32_t)j->status);
        if (j->out.err || j->out.len > CH_FRAME_MAX - 64) { /* the answer must reach the client */
            ch_wbuf_reset(&w);
            ch_wbuf_put_u32(&w, 4);
            static const char msg[] = "error: the answer is too large to send\n";
            ch_wbuf_put_blob32(&w, msg, sizeof(msg) - 1);
        } else {
            ch_wbuf_put_blob32(&w, j->out.data ? j->out.data : (const uint8_t *)"", j->out.len);
        }
        if (!w.err) ch_conn_send(conn, CH_F_CTL_RESP, w.data, w.len);
        ch_wbuf_free(&w);
    }
    ctl_job_free(j);
}

static void *ctl_main(void *arg)
{
    ch_coord *c = arg;
    ch_log_thread_name("ctl");
    pthread_mutex_lock(&c->ctl_mu);
    for (;;) {
        while (!c->ctl_head && !c->ctl_quit)
            pthread_cond_wait(&c->ctl_cv, &c->ctl_mu);
        if (!c->ctl_head) break;
        ctl_job *j = c->ctl_head;
        c->ctl_head = j->next;
        if (!c->ctl_head) c->ctl_tail = NULL;
        pthread_mutex_unlock(&c->ctl_mu);
        ch_ctl_reply reply = {.w = &j->out};
        if (c->ctl_handler)
            j->status = c->ctl_handler(c->ctl_ud, j->argc, j->argv, &reply);
        else
            j->status = 127, ch_ctl_reply_append(&reply, "no control handler on this node\n");
        ch_post post = {.fn = ctl_answer, .ud = j};
        ch_rec h = {.op = CH_OP_POST, .len = sizeof(post)};
        if (ch_reactor_post(c->n, c->n->cores, &h, NULL, &post, false) < 0) ctl_job_free(j);
        pthread_mutex_lock(&c->ctl_mu);
    }
    pthread_mutex_unlock(&c->ctl_mu);
    return NULL;
}

static ctl_job *ctl_parse(ch_rbuf *rb)
{
    uint32_t argc = ch_rbuf_get_u32(rb);
    if (!ch_rbuf_ok(rb) || argc == 0 || argc > CTL_MAX_ARGS) return NULL;
    ctl_job *j = calloc(1, sizeof(*j));
    if (!j) return NULL;
    ch_wbuf_init(&j->out);
    j->argv = calloc(argc + 1, sizeof(char *));
    j->argbuf = malloc(ch_rbuf_left(rb) + argc + 1);
    size_t at = 0;
    for (uint32_t i = 0; j->argv && j->argbuf && i < argc; i++) {
        ch_span s = ch_rbuf_get_blob32(rb);
        if (!ch_rbuf_ok(rb) || memchr(s.p, '\0', s.len)) break;
        memcpy(j->argbuf + at, s.p, s.len);
        j->argbuf[at + s.len] = '\0';
        j->argv[i] = j->argbuf + at;
        at += s.len + 1;
        j->argc = (int)i + 1;
    }
    if (j->argc != (int)argc || !ch_rbuf_done(rb)) {
        ctl_job_free(j);
        return NULL;
    }
    return j;
}

static void on_ctl_req(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    ctl_job *j = ctl_parse(rb);
    if (!j) {
        CH_WARN("malformed control request from %s: closing", ch_conn_addr(conn));
        ch_conn_close(conn, -EBADMSG);
        return;
    }
    j->c = c;
    j->serial = (uintptr_t)ch_conn_ud(conn);
    pthread_mutex_lock(&c->ctl_mu);
    if (c->ctl_tail)
        c->ctl_tail->next = j;
    else
        c->ctl_head = j;
    c->ctl_tail = j;
    pthread_cond_signal(&c->ctl_cv);
    pthread_mutex_unlock(&c->ctl_mu);
}

int ch_node_set_ctl_handler(ch_node *n, ch_ctl_handler handler, void *ud)
{
    if (!n || !n->coord) return -EINVAL;
    if (atomic_load(&n->state) != CH_NODE_CREATED) return -EBUSY;
    n->coord->ctl_handler = handler;
    n->coord->ctl_ud = ud;
    return 0;
}

/* ---- frames and records -------------------------------------------------------------- */

static void on_peer_frame(ch_coord *c, ch_conn *conn, const ch_frame *f)
{
    ch_rbuf rb;
    ch_rbuf_init(&rb, f->payload, f->len);
    switch (f->type) {
    case CH_F_JOIN: {
        ch_mem m;
        if (get_member(&rb, &m)) after_merge(c, merge_one(c, &m, 0), 0, NULL);
        send_view(c, conn);
        break;
    }
    case CH_F_VIEW:
        on_view(c, conn, &rb);
        break;
    case CH_F_PING:
        on_ping(c, conn, &rb);
        break;
    case CH_F_ACK:
        on_ack(c, conn, &rb);
        break;
    case CH_F_PING_REQ:
        on_ping_req(c, conn, &rb);
        break;
    case CH_F_REG_DELTA:
        on_reg_delta(c, conn, &rb);
        break;
    case CH_F_REG_DIGEST:
        on_reg_digest(c, conn, &rb);
        break;
    case CH_F_REG_SYNC_REQ:
        on_reg_sync_req(c, conn, &rb);
        break;
    case CH_F_REG_SYNC:
        on_reg_sync(c, conn, &rb);
        break;
    case CH_F_CAST:
        on_cast_frame(c, &rb);
        break;
    case CH_F_CALL:
        on_call_frame(c, conn, &rb);
        break;
    case CH_F_REPLY:
        on_reply_frame(c, &rb);
        break;
    case CH_F_START_REQ:
        on_batch_req(c, conn, &rb, true);
        break;
    case CH_F_STOP_REQ:
        on_batch_req(c, conn, &rb, false);
        break;
    case CH_F_START_RESP:
    case CH_F_STOP_RESP:
        on_batch_resp(c, &rb);
        break;
    case CH_F_PARTITION_RESET:
        on_partition_reset(c);
        break;
    default:
        CH_WARN("unexpected %s frame from %s", ch_frame_type_name(f->type), ch_conn_addr(conn));
    }
}

static void on_frame(void *ud, ch_conn *conn, const ch_frame *f)
{
    ch_coord *c = ud;
    if (ch_conn_role(conn) == CH_ROLE_CTL) {
        if (f->type == CH_F_CTL_REQ) {
            ch_rbuf rb;
            ch_rbuf_init(&rb, f->payload, f->len);
            on_ctl_req(c, conn, &rb);
        } else {
            ch_conn_close(conn, -EPROTO);
        }
        return;
    }
    ch_mem *from = ch_conn_ud(conn);
    if (!from) return; /* not yet a member: nothing else is trusted */
    if (from->id == c->probe_target) c->probe_acked = true; /* any frame proves it lives */
    if (f->type == CH_F_BATCH) {
        size_t pos = 0;
        ch_frame inner;
        while (ch_frame_batch_next(f, &pos, &inner) == 1)
            on_peer_frame(c, conn, &inner);
        return;
    }
    on_peer_frame(c, conn, f);
}

bool ch_coord_dispatch(ch_reactor *r, ch_rec *rec)
{
    ch_coord *c = coord_of(r);
    switch (rec->op) {
    case CH_OP_CAST:
        on_out_cast(c, rec);
        return true;
    case CH_OP_CALL:
        on_out_call(c, rec);
        return true;
    case CH_OP_FCALL:
        on_out_fcall(c, rec);
        return true;
    case CH_OP_START:
    case CH_OP_STOP:
        on_out_batch(c, rec);
        return true;
    case CH_OP_QUERY:
        on_query(c, rec);
        return true;
    case CH_OP_REG:
        on_local_reg(c, rec);
        return true;
    default:
        return false;
    }
}

/* ---- timers, boot, shutdown ---------------------------------------------------------- */

static void dial_seeds(ch_coord *c)
{
    const ch_cluster_config *cc = &c->n->cfg.cluster;
    if (ch_mtab_ring_size(&c->mt) > 1) return; /* joined: the view does the rest */
    for (size_t i = 0; i < cc->nseeds; i++) {
        if (!cc->seeds[i] || strcmp(cc->seeds[i], c->hello.addr) == 0) continue;
        if (ch_transport_connect(c->t, cc->seeds[i], CH_ROLE_PEER, NULL) < 0)
            CH_WARN("cannot dial seed %s", cc->seeds[i]);
    }
}

static void tick(ch_reactor *r, uint64_t round)
{
    ch_coord *c = coord_of(r);
    const ch_cluster_config *cc = &c->n->cfg.cluster;
    uint64_t now = ch_now_ns();
    uint32_t period = cc->probe_interval_ms / 4 ? cc->probe_interval_ms / 4 : 1;
    uint32_t per_probe = 4, per_sync = cc->sync_interval_ms / period + 1;
    if (round % per_probe == 0) probe_round(c);
    if (c->probe_target && !c->probe_acked && now - c->probe_sent_ns > ms(cc->probe_timeout_ms))
        probe_indirect(c);
    expire_suspects(c, now);
    update_congestion(c);
    ch_transport_sweep(c->t, now, HANDSHAKE_MS * 1000000ull);
    dial_all(c, now);
    if (round % per_probe == 0) dial_seeds(c);
    if (round % per_sync == per_sync - 1)
        for (size_t i = 0; i < c->mt.n; i++)
            if (c->mt.v[i].conn) send_digest(c, c->mt.v[i].conn);
    if (!c->r->shut) ch_sup_timer_fn(r, period, tick, round + 1);
}

void ch_coord_boot(ch_node *n, void *ud)
{
    ch_coord *c = n->coord;
    ch_transport_start(c->t);
    dial_seeds(c);
    ch_sup_timer_fn(c->r, 1, tick, 1);
}

void ch_coord_shutdown(ch_reactor *r)
{
    ch_coord *c = coord_of(r);
    ch_hook_event ev = {.point = CH_HOOK_COORDINATOR_SHUTDOWN, .node = c->mt.self};
    ch_hooks_run(&c->n->hooks, &ev);
    flush_delta(c);
    ch_transport_close_all(c->t);
    pthread_mutex_lock(&c->ctl_mu);
    c->ctl_quit = true;
    pthread_cond_signal(&c->ctl_cv);
    pthread_mutex_unlock(&c->ctl_mu);
    if (c->leave_waiter) ch_waiter_signal(c->leave_waiter);
    c->leave_waiter = NULL;
}

/* A node starts as a hub of one: epoch 1. */
static int first_ring(ch_coord *c)
{
    uint64_t id = c->mt.self;
    ch_hashring *ring;
    int rc = ch_hashring_build(&id, 1, c->n->cfg.cluster.vnodes, 1, &ring);
    if (rc < 0) return rc;
    c->epoch = 1;
    atomic_store(&c->n->ring, ring);
    atomic_store(&c->n->epoch, 1);
    return 0;
}

static const ch_transport_cbs coord_cbs = {
    .on_up = on_up, .on_frame = on_frame, .on_down = on_down};

static int make_hello(ch_coord *c, const ch_cluster_config *cc, int port)
{
    ch_hello *h = &c->hello;
    memset(h, 0, sizeof(*h));
    snprintf(h->hub_id, sizeof(h->hub_id), "%s", cc->hub_id ? cc->hub_id : "corehub");
    h->node_id = c->n->id;
    h->incarnation = 0;
    h->cores = (uint16_t)c->n->cores;
    const char *colon = strrchr(cc->listen, ':');
    int hl = colon ? (int)(colon - cc->listen) : (int)strlen(cc->listen);
    snprintf(h->addr, sizeof(h->addr), "%.*s:%d", hl, cc->listen, port);
    return 0;
}

int ch_coord_create(ch_node *n, ch_coord **out)
{
    const ch_cluster_config *cc = &n->cfg.cluster;
    if (!cc->cookie || cc->cookie_len < CH_COOKIE_MIN) {
        CH_ERROR("a clustered node needs a cookie of at least %d bytes", CH_COOKIE_MIN);
        return -EINVAL;
    }
    ch_coord *c = calloc(1, sizeof(*c));
    if (!c) return -ENOMEM;
    c->n = n;
    c->r = &n->reactors[n->cores];
    ch_wbuf_init(&c->delta);
    pthread_mutex_init(&c->ctl_mu, NULL);
    pthread_cond_init(&c->ctl_cv, NULL);
    int rc = ch_regtab_init(&c->reg);
    if (rc == 0)
        rc = ch_transport_create(c->r, cc->listen, &c->hello, cc->cookie, cc->cookie_len,
                                 CH_FRAME_MAX, &coord_cbs, &c->t);
    if (rc < 0) goto fail;
    make_hello(c, cc, ch_transport_port(c->t));
    ch_transport_set_hello(c->t, &c->hello, c);
    ch_mem self = {.id = n->id, .cores = (uint16_t)n->cores, .state = CH_MEMBER_ALIVE};
    snprintf(self.addr, sizeof(self.addr), "%s", c->hello.addr);
    if ((rc = ch_mtab_init(&c->mt, &self)) < 0 || (rc = first_ring(c)) < 0) goto fail;
    c->largest_seen = 1;
    rc = -pthread_create(&c->ctl_thread, NULL, ctl_main, c);
    if (rc < 0) goto fail;
    c->ctl_running = true;
    *out = c;
    return 0;
fail:
    ch_coord_free(c);
    return rc;
}

void ch_coord_free(ch_coord *c)
{
    if (!c) return;
    if (c->ctl_running) {
        pthread_mutex_lock(&c->ctl_mu);
        c->ctl_quit = true;
        pthread_cond_signal(&c->ctl_cv);
        pthread_mutex_unlock(&c->ctl_mu);
        pthread_join(c->ctl_thread, NULL);
    }
    while (c->ctl_head) {
        ctl_job *j = c->ctl_head;
        c->ctl_head = j->next;
        ctl_job_free(j);
    }
    ch_transport_free(c->t);
    for (size_t i = 0; i < c->mt.n; i++)
        backlog_free(&c->mt.v[i]);
    ch_mtab_free(&c->mt);
    ch_regtab_free(&c->reg);
    ch_wbuf_free(&c->delta);
    for (size_t i = 0; i < c->nparked; i++)
        free(c->parked[i]);
    free(c->parked);
    free(c->ctl_conns);
    pthread_mutex_destroy(&c->ctl_mu);
    pthread_cond_destroy(&c->ctl_cv);
    free(c);
}

/* ---- public cluster API -------------------------------------------------------------- */

typedef struct coord_call {
    ch_waiter w;
    void (*fn)(ch_coord *, struct coord_call *);
    int rc;
    ch_member *members;
    size_t count;
} coord_call;

static void run_coord_call(ch_node *n, void *ud)
{
    coord_call *cc = ud;
    cc->fn(n->coord, cc);
    ch_waiter_signal(&cc->w);
}

/* Runs fn on the coordinator thread and waits (from a foreign thread). The call object
 * stays valid because the coordinator always runs posted functions before it exits. */
static int on_coordinator(ch_node *n, void (*fn)(ch_coord *, coord_call *), coord_call *cc)
{
    if (!n || !n->coord) return -EINVAL;
    if (ch_reactor_self() && ch_reactor_self()->node == n) return CH_EWOULDBLOCK;
    int rc = ch_waiter_init(&cc->w);
    if (rc) return rc;
    cc->fn = fn;
    if ((rc = ch_node_api_enter(n)) == 0) {
        ch_post post = {.fn = run_coord_call, .ud = cc};
        ch_rec h = {.op = CH_OP_POST, .len = sizeof(post)};
        rc = ch_reactor_post(n, n->cores, &h, NULL, &post, false);
        ch_node_api_leave(n);
    }
    if (rc == 0)
        while (ch_waiter_wait(&cc->w, 60000) != 0) {
        }
    ch_waiter_destroy(&cc->w);
    return rc ? rc : cc->rc;
}

static void members_fn(ch_coord *c, coord_call *cc)
{
    cc->members = calloc(c->mt.n, sizeof(*cc->members));
    if (!cc->members) {
        cc->rc = -ENOMEM;
        return;
    }
    for (size_t i = 0; i < c->mt.n; i++) {
        ch_mem *m = &c->mt.v[i];
        ch_member *o = &cc->members[i];
        o->id = m->id;
        o->incarnation = m->incarnation;
        memcpy(o->addr, m->addr, sizeof(o->addr));
        o->cores = m->cores;
        o->state = (ch_member_state)m->state;
        o->self = m->id == c->mt.self;
    }
    cc->count = c->mt.n;
}

int ch_members(ch_node *n, ch_member **out, size_t *count)
{
    if (!out || !count) return -EINVAL;
    coord_call cc = {0};
    int rc = on_coordinator(n, members_fn, &cc);
    *out = cc.members;
    *count = cc.count;
    return rc;
}

static void leave_fn(ch_coord *c, coord_call *cc)
{
    ch_mem *me = ch_mtab_self(&c->mt);
    c->leaving = true;
    for (size_t i = 0; i < c->mt.n; i++)
        c->mt.v[i].saw_leave = false;
    int bits = ch_mtab_set(&c->mt, me, CH_MEMBER_LEFT, ch_now_ns());
    after_merge(c, bits, 0, NULL);
    (void)cc;
}

static void leave_check_fn(ch_coord *c, coord_call *cc)
{
    cc->rc = 1;
    for (size_t i = 0; i < c->mt.n; i++) {
        ch_mem *m = &c->mt.v[i];
        if (m->id != c->mt.self && m->conn && ch_mem_in_ring(m) && !m->saw_leave) cc->rc = 0;
    }
}

int ch_node_leave(ch_node *n)
{
    if (!n) return -EINVAL;
    if (!n->coord) return ch_node_stop(n);
    coord_call cc = {0};
    int rc = on_coordinator(n, leave_fn, &cc);
    if (rc < 0) return rc;
    /* Wait (bounded) until every connected peer has seen this node leave. */
    uint64_t deadline = ch_now_ns() + ms(n->cfg.cluster.probe_interval_ms) * 5;
    while (ch_now_ns() < deadline) {
        coord_call chk = {0};
        int r = on_coordinator(n, leave_check_fn, &chk);
        if (r < 0) break; /* stopped meanwhile */
        if (r != 1) {
            struct timespec ts = {0, 5000000};
            nanosleep(&ts, NULL); /* a poll interval, not a synchronisation */
            continue;
        }
        break;
    }
    return ch_node_stop(n);
}

static void reset_fn(ch_coord *c, coord_call *cc)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u8(&w, 0);
    send_all(c, CH_F_PARTITION_RESET, &w);
    ch_wbuf_free(&w);
    on_partition_reset(c);
    (void)cc;
}

int ch_partition_reset(ch_node *n)
{
    coord_call cc = {0};
    return on_coordinator(n, reset_fn, &cc);
}

int ch_is_partitioned(ch_node *n)
{
    return n ? atomic_load(&n->partitioned) : -EINVAL;
}

uint64_t ch_node_id(const ch_node *n)
{
    return n ? n->id : 0;
}

int ch_node_port(const ch_node *n)
{
    return n && n->coord ? ch_transport_port(n->coord->t) : 0;
}

uint64_t ch_node_epoch(const ch_node *n)
{
    return n ? atomic_load(&((ch_node *)n)->epoch) : 0;
}
