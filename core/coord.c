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
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>

#define MAX_HOPS     4
#define RELAY_MS     120000u /* a relayed call's entry outlives any caller's timeout */
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
};

struct ctl_job {
    ctl_job *next;
    ch_coord *c;
    ch_conn *conn;
    uint64_t serial; /* the connection's serial when the job was made */
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

static ch_conn *conn_to(ch_coord *c, uint64_t node)
{
    ch_mem *m = ch_mtab_find(&c->mt, node);
    return m && m->conn ? m->conn : NULL;
}

static int send_to(ch_coord *c, uint64_t node, uint8_t type, const ch_wbuf *w)
{
    if (w->err) return w->err;
    ch_conn *conn = conn_to(c, node);
    if (!conn) return -ENOTCONN;
    return ch_conn_send(conn, type, w->data, w->len);
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
    unsigned local = (unsigned)(hash % n->cores);
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
    for (size_t i = 0; i < c->mt.n; i++) put_member(w, &c->mt.v[i]);
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
        if (changed && ch_mem_in_ring(changed)) run_cluster_hook(c, CH_HOOK_PRE_CLUSTER_JOIN, changed->id);
        if (changed && !ch_mem_in_ring(changed)) run_cluster_hook(c, CH_HOOK_PRE_CLUSTER_LEAVE, changed->id);
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
            if (peer) peer->next_dial_ns = UINT64_MAX; /* marks "saw our leave" */
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
    double f = log10((double)ch_mtab_ring_size(&c->mt) + 1.0);
    if (f < 1.0) f = 1.0;
    return (uint64_t)(cc->suspicion_mult * f * (double)ms(cc->probe_interval_ms));
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
    /* One connection per pair: the node with the smaller id dials. */
    if (m->id > c->mt.self) return;
    ch_conn *conn;
    m->next_dial_ns = now + ms(c->n->cfg.cluster.probe_interval_ms);
    if (ch_transport_connect(c->t, m->addr, CH_ROLE_PEER, &conn) == 0) {
        m->dialing = conn;
        ch_conn_set_ud(conn, NULL);
    }
}

static void dial_all(ch_coord *c, uint64_t now)
{
    for (size_t i = 0; i < c->mt.n; i++) dial(c, &c->mt.v[i], now);
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

static void on_up(void *ud, ch_conn *conn, const ch_hello *peer)
{
    ch_coord *c = ud;
    if (peer->role == CH_ROLE_CTL) {
        ch_conn_set_ud(conn, (void *)(uintptr_t)++c->ctl_serial);
        return;
    }
    if (peer->role != CH_ROLE_PEER || peer->node_id == c->mt.self) {
        ch_conn_close(conn, -EPROTO);
        return;
    }
    ch_mem rec = {.id = peer->node_id, .incarnation = 0, .cores = peer->cores, .state = CH_MEMBER_ALIVE};
    snprintf(rec.addr, sizeof(rec.addr), "%s", peer->addr);
    ch_mem *m = ch_mtab_find(&c->mt, peer->node_id);
    if (m && (m->state == CH_MEMBER_DEAD || m->state == CH_MEMBER_LEFT)) {
        CH_WARN("refusing %s: member %016llx already left the hub", peer->addr,
                (unsigned long long)peer->node_id);
        ch_conn_close(conn, -EPERM);
        return;
    }
    if (m && m->conn) { /* a second connection to the same peer: keep the first */
        ch_conn_close(conn, -EALREADY);
        return;
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
    send_view(c, conn);
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

static void drop_rows_of(ch_coord *c, uint64_t owner)
{
    for (size_t i = 0; i < c->reg.cap;) {
        ch_regrow *r = c->reg.slots[i];
        if (r && r->node == owner) {
            ch_regtab_remove(&c->reg, r); /* may shift another row into slot i */
            digest_apply(c, r, -1);
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
    drop_rows_of(c, owner);
    for (uint32_t i = 0; i < count && ch_rbuf_ok(rb); i++) {
        ch_regrow *row = get_row(rb);
        if (row && row->node == owner) reg_put(c, row);
        else free(row);
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
    ch_conn *conn = conn_to(c, node);
    if (!conn) return -EHOSTUNREACH;
    uint8_t hdr[2 + CH_ID_MAX + 4];
    size_t k = 0;
    hdr[k++] = hops;
    hdr[k++] = (uint8_t)len;
    memcpy(hdr + k, id, len);
    k += len;
    uint32_t l32 = (uint32_t)dlen;
    memcpy(hdr + k, &l32, 4);
    k += 4;
    return ch_conn_send2(conn, CH_F_CAST, hdr, k, data, dlen);
}

static int send_call(ch_coord *c, uint64_t node, uint8_t hops, uint16_t core, uint64_t ref,
                     const char *id, size_t len, const void *data, size_t dlen)
{
    ch_conn *conn = conn_to(c, node);
    if (!conn) return -EHOSTUNREACH;
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
    return ch_conn_send2(conn, CH_F_CALL, hdr, k, data, dlen);
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
    if (send_cast(c, node, hops, id, len, data, dlen) < 0) dead_letter(c, id, len, "owner unreachable");
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
    if (data.len > c->n->cfg.max_message) return dead_letter(c, (const char *)id.p, id.len, "too large");
    route_cast(c, (uint8_t)(hops + 1), false, (const char *)id.p, id.len,
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
    uint64_t relay = ch_sup_pending(c->r, CH_TK_RELAY, NULL, (void *)(uintptr_t)from->id, ref,
                                    RELAY_MS);
    if (!relay) return;
    ch_timer *e = ch_timers_get(&c->r->timers, relay);
    e->len = core;
    if (data.len > c->n->cfg.max_message) {
        fail_call(c, c->r->core, relay, CH_EMSGSIZE);
        return;
    }
    route_call(c, (uint8_t)(hops + 1), false, (const char *)id.p, id.len,
               XXH3_64bits(id.p, id.len), data.p, data.len, c->r->core, relay);
}

void ch_coord_relay_done(ch_reactor *r, uint64_t peer, uint16_t core, uint64_t ref, int status,
                         const void *data, size_t len)
{
    ch_coord *c = coord_of(r);
    ch_conn *conn = conn_to(c, peer);
    if (!conn) return; /* the caller's node is gone; its call fails there */
    uint8_t hdr[2 + 8 + 4 + 4];
    int32_t st = status;
    uint32_t l32 = (uint32_t)len;
    memcpy(hdr, &core, 2);
    memcpy(hdr + 2, &ref, 8);
    memcpy(hdr + 10, &st, 4);
    memcpy(hdr + 14, &l32, 4);
    ch_conn_send2(conn, CH_F_REPLY, hdr, sizeof(hdr), data, len);
}

static void on_reply_frame(ch_coord *c, ch_rbuf *rb)
{
    uint16_t core = ch_rbuf_get_u16(rb);
    uint64_t ref = ch_rbuf_get_u64(rb);
    int32_t status = (int32_t)ch_rbuf_get_u32(rb);
    ch_span data = ch_rbuf_get_blob32(rb);
    if (!ch_rbuf_done(rb) || core > c->n->cores) return;
    ch_rec h = {.op = CH_OP_REPLY, .len = (uint32_t)data.len, .ref = ref, .aux = (uint64_t)(int64_t)status};
    ch_reactor_post(c->n, core, &h, NULL, data.p, false);
}
