/*
 * net/cluster/coord.c - the coordinator (see coord.h; its parts are listed in coord_int.h): here,
 * sending to peers, the ring and its epochs, the dispatch of frames and records, timers,
 * boot and shutdown, and the public cluster functions. In short, the whole:
 *
 * Membership is SWIM-like over a full mesh of authenticated TCP connections: every probe
 * interval the coordinator pings one member round-robin; a member that does not answer in
 * time is pinged indirectly through two others, then suspected, then declared dead after
 * the suspicion timeout; a suspected member refutes by raising its incarnation. Views
 * (the whole member table) are pushed to every peer whenever they change and merge by the
 * rules in mtab.c, so every node converges on the same table. The ring is rebuilt when
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
#include "coord_int.h"

#include "pins.h"

/* ---- sending ------------------------------------------------------------------------ */

/* Frames for a member we know but are not connected to yet wait here, in order, until
 * the connection is up (a view can announce a member before either side dialled). */
int coord_backlog(ch_coord *c, ch_mem *m, uint8_t type, const void *a, size_t alen, const void *b,
                  size_t blen)
{
    if (!ch_mem_alive(m) || m->id == c->mt.self) return -EHOSTUNREACH;
    ch_wbuf *w = m->backlog;
    if (!w && !(w = m->backlog = calloc(1, sizeof(*w)))) return -ENOMEM;
    if (w->len + alen + blen > CH_CONN_MAX_QUEUE) return -ENOBUFS;
    uint8_t *hdr = ch_wbuf_put_space(w, CH_FRAME_HDR + alen + blen);
    if (!hdr) return -ENOMEM;
    if (alen) memcpy(hdr + CH_FRAME_HDR, a, alen);
    if (blen) memcpy(hdr + CH_FRAME_HDR + alen, b, blen);
    ch_frame_header_write(hdr, type, 0, hdr + CH_FRAME_HDR, (uint32_t)(alen + blen));
    m->next_dial_ns = 0;
    coord_dial(c, m, ch_now_ns());
    return 0;
}

void coord_backlog_free(ch_mem *m)
{
    ch_wbuf *w = m->backlog;
    if (w) ch_wbuf_free(w);
    free(w);
    m->backlog = NULL;
}

void coord_backlog_flush(ch_mem *m)
{
    ch_wbuf *w = m->backlog;
    if (w && w->len && m->conn) ch_conn_send_raw(m->conn, w->data, w->len);
    coord_backlog_free(m);
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
        ch_mem *m = c->mt.v[i];
        size_t q = m->conn ? ch_conn_queued(m->conn) : 0;
        if (m->backlog) q += ((ch_wbuf *)m->backlog)->len;
        if (q > worst) worst = q;
    }
    int was = atomic_load_explicit(&c->n->net_congested, memory_order_relaxed);
    int now = worst > QUEUE_HIGH || (was && worst > QUEUE_LOW);
    if (now != was) atomic_store_explicit(&c->n->net_congested, now, memory_order_relaxed);
}

int coord_send_frame(ch_coord *c, uint64_t node, uint8_t type, const void *a, size_t alen,
                     const void *b, size_t blen)
{
    ch_mem *m = ch_mtab_find(&c->mt, node);
    if (!m) return -EHOSTUNREACH;
    /* A connection the peer closed (its close not handled here yet, e.g. after a stall of
     * this node) takes nothing more: the frame waits in the backlog for the next one. */
    int rc = m->conn && ch_conn_open(m->conn) ? ch_conn_send2(m->conn, type, a, alen, b, blen)
                                              : coord_backlog(c, m, type, a, alen, b, blen);
    if (rc == 0 && m->conn && ch_conn_queued(m->conn) > QUEUE_HIGH)
        atomic_store_explicit(&c->n->net_congested, 1, memory_order_relaxed);
    return rc;
}

int coord_send_to(ch_coord *c, uint64_t node, uint8_t type, const ch_wbuf *w)
{
    if (w->err) return w->err;
    return coord_send_frame(c, node, type, w->data, w->len, NULL, 0);
}

void coord_send_all(ch_coord *c, uint8_t type, const ch_wbuf *w)
{
    if (w->err) return;
    for (size_t i = 0; i < c->mt.n; i++) {
        ch_mem *m = c->mt.v[i];
        if (m->conn && (ch_mem_alive(m) || m->left_pending))
            ch_conn_send(m->conn, type, w->data, w->len);
    }
}

/* ---- ring and epochs ---------------------------------------------------------------- */

uint64_t ch_owner(const ch_node *n, const ch_hashring *ring, uint64_t hash)
{
    uint64_t owner = n->id;
    ch_pins *pins = atomic_load_explicit(&((ch_node *)n)->pins, memory_order_acquire);
    uint64_t pin = pins ? ch_pins_get(pins, hash) : 0;
    if (pin && ring && ch_hashring_has(ring, pin)) return pin;
    if (ring) ch_hashring_owner(ring, hash, &owner);
    return owner;
}

unsigned ch_coord_route_msg(ch_node *n, uint64_t hash, uint16_t *stamp)
{
    *stamp = 0;
    ch_hashring *ring = atomic_load_explicit(&n->ring, memory_order_acquire);
    if (!ring) return ch_core_of(n, hash);
    *stamp = (uint16_t)ch_hashring_epoch(ring);
    return ch_owner(n, ring, hash) == n->id ? ch_core_of(n, hash) : n->cores;
}

uint64_t ch_coord_pin_of(ch_node *n, uint64_t hash)
{
    ch_pins *pins = atomic_load_explicit(&n->pins, memory_order_acquire);
    return pins ? ch_pins_get(pins, hash) : 0;
}

void coord_run_cluster_hook(ch_coord *c, ch_hook_point point, uint64_t node)
{
    if (!ch_hooks_any(&c->n->hooks, point)) return;
    ch_hook_event ev = {.point = point, .node = node, .epoch = c->epoch};
    ch_hooks_run(&c->n->hooks, &ev);
}

/* Publishes a ring for the current member set as epoch max(epoch, seen) + 1. The old
 * ring is retired, not freed: another thread may be reading it (freed at node destroy). */
void coord_rebuild_ring(ch_coord *c, uint64_t seen_epoch)
{
    ch_node *n = c->n;
    uint64_t *ids = malloc(c->mt.n * sizeof(*ids));
    if (!ids) {
        CH_ERROR("no memory to rebuild the ring; keeping epoch %llu", (unsigned long long)c->epoch);
        return;
    }
    size_t k = ch_mtab_ring_ids(&c->mt, ids);
    coord_audit_dirty(c);
    uint64_t epoch = (seen_epoch > c->epoch ? seen_epoch : c->epoch) + 1;
    ch_hashring *ring;
    uint32_t vnodes = n->cfg.cluster.vnodes;
    coord_run_cluster_hook(c, CH_HOOK_PRE_REDISTRIBUTION, 0);
    int rc = ch_hashring_build(ids, k, vnodes, epoch, &ring);
    free(ids);
    if (rc < 0) {
        CH_ERROR("ring rebuild failed: %s", ch_strerror(rc));
        return;
    }
    c->epoch = epoch;
    coord_kept_reroute(c, ring); /* before any thread routes by it (coord_route.c) */
    ch_hashring *old = atomic_exchange_explicit(&n->ring, ring, memory_order_acq_rel);
    if (old) ch_node_retire_ring(n, old);
    c->keep.prev_ring = old;
    if (!c->keep.settled_ring) c->keep.settled_ring = old;
    atomic_store(&n->epoch, epoch);
    CH_INFO("epoch %llu: %zu members", (unsigned long long)epoch, k);
    c->round->ring(c);
    coord_run_cluster_hook(c, CH_HOOK_POST_REDISTRIBUTION, 0);
    coord_check_partition(c);
}

/* ---- frames and records -------------------------------------------------------------- */

/* What a member declared dead may still say: everything but its registry rows, which
 * speak for processes the hub replaced (they count once it rejoined, and the registry's
 * anti-entropy brings them then), and a partition reset. Its membership frames must reach
 * us (it hears of its death and comes back); its clients' casts, calls and starts are the
 * application's. Its handover frames too: both sides of a healed partition are dead to
 * each other for a moment, and a dropped BARRIER or END left the round waiting for good
 * and a dropped lane frame stalled its lane; a process that comes in from a member the
 * hub replaced meets the replacement on the ring owner, where one survives (rule 4 in
 * coord_heal.c). */
static bool is_mig_frame(uint8_t type)
{
    return type >= CH_F_MIG_BARRIER && type <= CH_F_MIG_LANES;
}

static bool heard_from(const ch_mem *from, uint8_t type)
{
    if (ch_mem_alive(from) || from->left_pending) return true;
    bool registry = type >= CH_F_REG_DELTA && type <= CH_F_REG_SYNC;
    return !registry && type != CH_F_PARTITION_RESET;
}

void coord_frames_add(ch_coord *c, const coord_frame_entry *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        c->frames[v[i].type] = v[i].fn;
}

static void on_peer_frame(ch_coord *c, ch_conn *conn, const ch_frame *f)
{
    ch_rbuf rb;
    ch_rbuf_init(&rb, f->payload, f->len);
    if (!heard_from(ch_conn_ud(conn), f->type)) {
        CH_DEBUG("%s frame from %s dropped: its sender is dead here", ch_frame_type_name(f->type),
                 ch_conn_addr(conn));
        return;
    }
    coord_frame_fn fn = f->type < CH_F__COUNT ? c->frames[f->type] : NULL;
    if (fn)
        fn(c, conn, &rb);
    else if (is_mig_frame(f->type)) /* the round's (migration/coord_round.c) */
        c->round->on_frame(c, ch_conn_ud(conn), f->type, &rb);
    else
        CH_WARN("unexpected %s frame from %s", ch_frame_type_name(f->type), ch_conn_addr(conn));
}

static void on_frame(void *ud, ch_conn *conn, const ch_frame *f)
{
    ch_coord *c = ud;
    if (ch_conn_role(conn) == CH_ROLE_CTL) {
        if (f->type == CH_F_CTL_REQ) {
            ch_rbuf rb;
            ch_rbuf_init(&rb, f->payload, f->len);
            coord_on_ctl_req(c, conn, &rb);
        } else {
            ch_conn_close(conn, -EPROTO);
        }
        return;
    }
    ch_mem *from = ch_conn_ud(conn);
    if (!from) return; /* not yet a member: nothing else is trusted */
    from->heard_ns = ch_now_ns();
    if (from->id == c->probe.target) c->probe.acked = true; /* any frame proves it lives */
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
        coord_on_out_cast(c, rec);
        return true;
    case CH_OP_CALL:
        coord_on_out_call(c, rec);
        return true;
    case CH_OP_FCALL:
        coord_on_out_fcall(c, rec);
        return true;
    case CH_OP_START:
    case CH_OP_STOP:
        coord_on_out_batch(c, rec);
        return true;
    case CH_OP_QUERY:
        coord_on_query(c, rec);
        return true;
    case CH_OP_REG:
        coord_on_local_reg(c, rec);
        return true;
    case CH_OP_MIG:
        c->round->on_rec(c, rec);
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
        /* A seed that is slow to answer (stalled, overloaded) gets no second dial every
         * probe period: the first one's handshake deadline bounds the wait. */
        if (ch_transport_dialing(c->t, cc->seeds[i])) continue;
        if (ch_transport_connect(c->t, cc->seeds[i], CH_ROLE_PEER, NULL) < 0)
            CH_WARN("cannot coord_dial seed %s", cc->seeds[i]);
    }
}

/* Tombstones (DEAD and LEFT records) are kept this long: a node back from a stall or a
 * partition within it is told it was declared dead; one back later is a stranger. */
#define TOMBSTONE_MS 600000u

static void tick(ch_reactor *r, uint64_t round)
{
    ch_coord *c = coord_of(r);
    const ch_cluster_config *cc = &c->n->cfg.cluster;
    uint32_t period = cc->probe_interval_ms / 4 ? cc->probe_interval_ms / 4 : 1;
    uint32_t per_probe = 4, per_sync = cc->sync_interval_ms / period + 1;
    uint64_t gap = ch_ns_since(ch_now_ns(), c->probe.last_tick_ns);
    if (c->probe.last_tick_ns && gap > ms(cc->probe_interval_ms) * 2)
        coord_after_stall(c, ch_now_ns(), gap);
    if (round % per_probe == 0) coord_probe_round(c);
    /* Read after the probe round: it stamps suspicions and probes with the clock too. */
    uint64_t now = ch_now_ns();
    c->probe.last_tick_ns = now;
    if (c->probe.target && !c->probe.acked &&
        ch_ns_since(now, c->probe.sent_ns) > ms(cc->probe_timeout_ms))
        coord_probe_indirect(c);
    coord_expire_suspects(c, now);
    coord_expire_leavers(c, now);
    coord_unpark(c);
    if (round % per_probe == 0) ch_mtab_reap(&c->mt, now, ms(TOMBSTONE_MS));
    if (round % per_probe == 0) c->round->reannounce(c);
    coord_audit_tick(c, now);
    update_congestion(c);
    ch_transport_sweep(c->t, now, HANDSHAKE_MS * 1000000ull);
    coord_dial_all(c, now);
    if (round % per_probe == 0) dial_seeds(c);
    if (round % per_sync == per_sync - 1)
        for (size_t i = 0; i < c->mt.n; i++)
            if (c->mt.v[i]->conn) coord_send_digest(c, c->mt.v[i]->conn);
    c->probe.tick_inc = ch_mtab_self(&c->mt)->incarnation;
    if (!c->r->shut) ch_sup_timer_fn(r, period, tick, round + 1);
}

void ch_coord_boot(ch_node *n, void *ud)
{
    ch_coord *c = n->coord;
    ch_transport_start(c->t);
    c->round->ring(c); /* the cores take the first ring too: a round with no one else */
    dial_seeds(c);
    ch_sup_timer_fn(c->r, 1, tick, 1);
}

void ch_coord_shutdown(ch_reactor *r)
{
    ch_coord *c = coord_of(r);
    ch_hook_event ev = {.point = CH_HOOK_COORDINATOR_SHUTDOWN, .node = c->mt.self};
    ch_hooks_run(&c->n->hooks, &ev);
    coord_flush_delta(c);
    ch_transport_close_all(c->t);
    pthread_mutex_lock(&c->ctl.mu);
    c->ctl.quit = true;
    pthread_cond_signal(&c->ctl.cv);
    pthread_mutex_unlock(&c->ctl.mu);
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
    .on_up = coord_on_up, .on_frame = on_frame, .on_down = coord_on_down};

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

int ch_coord_create(ch_node *n, const ch_coord_round *round, ch_coord **out)
{
    const ch_cluster_config *cc = &n->cfg.cluster;
    if (!cc->cookie || cc->cookie_len < CH_COOKIE_MIN) {
        CH_ERROR("a clustered node needs a cookie of at least %d bytes", CH_COOKIE_MIN);
        return -EINVAL;
    }
    ch_coord *c = calloc(1, sizeof(*c));
    if (!c) return -ENOMEM;
    c->n = n;
    c->round = round;
    coord_member_frames(c); /* each concern registers the frame types it handles */
    coord_registry_frames(c);
    coord_route_frames(c);
    coord_pins_frames(c);
    coord_heal_frames(c);
    c->r = &n->reactors[n->cores];
    const char *fault = getenv("CH_FAULT"); /* tests: tests/test_faults.c */
    c->f_lose_removes = fault && strstr(fault, "lose-removes");
    ch_wbuf_init(&c->delta.buf);
    pthread_mutex_init(&c->ctl.mu, NULL);
    pthread_cond_init(&c->ctl.cv, NULL);
    int rc = ch_regtab_init(&c->reg);
    if (rc == 0)
        rc = ch_transport_create(c->r, cc->listen, &c->hello, cc->cookie, cc->cookie_len,
                                 CH_FRAME_MAX, &coord_cbs, &c->t);
    if (rc < 0) goto fail;
    const char *hold = fault ? strstr(fault, "hold-dials:") : NULL;
    if (hold) ch_transport_hold_dials(c->t, (unsigned)strtoul(hold + 11, NULL, 10));
    make_hello(c, cc, ch_transport_port(c->t));
    ch_transport_set_hello(c->t, &c->hello, c);
    if (c->round->setup) c->round->setup(c);
    ch_mem self = {.id = n->id, .cores = (uint16_t)n->cores, .state = CH_MEMBER_ALIVE};
    snprintf(self.addr, sizeof(self.addr), "%s", c->hello.addr);
    if ((rc = ch_mtab_init(&c->mt, &self)) < 0 || (rc = first_ring(c)) < 0) goto fail;
    c->part.largest_seen = 1;
    atomic_store(&n->members_alive, 1);
    rc = -pthread_create(&c->ctl.thread, NULL, coord_ctl_main, c);
    if (rc < 0) goto fail;
    c->ctl.running = true;
    *out = c;
    return 0;
fail:
    ch_coord_free(c);
    return rc;
}

void ch_coord_free(ch_coord *c)
{
    if (!c) return;
    coord_ctl_stop(c);
    ch_transport_free(c->t);
    free(c->lane_ports);
    for (size_t i = 0; i < c->mt.n; i++)
        coord_backlog_free(c->mt.v[i]);
    ch_mtab_free(&c->mt);
    ch_regtab_free(&c->reg);
    ch_pinset_free(&c->pins);
    ch_wbuf_free(&c->delta.buf);
    ch_wbuf_free(&c->keep.casts);
    for (size_t i = 0; i < c->part.nparked; i++)
        free(c->part.parked[i]);
    free(c->part.parked);
    free(c->ctl.conns);
    pthread_mutex_destroy(&c->ctl.mu);
    pthread_cond_destroy(&c->ctl.cv);
    free(c);
}

/* ---- public cluster API -------------------------------------------------------------- */

typedef struct coord_call {
    ch_waiter w;
    void (*fn)(ch_coord *, struct coord_call *);
    int rc;
    ch_member *members;
    size_t count;
    uint64_t pin_hash, pin_node; /* ch_node_pin */
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
        ch_mem *m = c->mt.v[i];
        ch_member *o = &cc->members[i];
        o->id = m->id;
        o->incarnation = m->incarnation;
        memcpy(o->addr, m->addr, sizeof(o->addr));
        o->cores = m->cores;
        o->state = (ch_member_state)m->state;
        o->drained = m->drained;
        o->self = m->id == c->mt.self;
    }
    cc->count = c->mt.n;
}

int ch_node_members_get(ch_node *n, ch_member **out, size_t *count)
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
    int bits = ch_mtab_set(&c->mt, me, CH_MEMBER_LEFT, ch_now_ns());
    coord_after_merge(c, bits, 0, NULL);
    (void)cc;
}

static void drain_fn(ch_coord *c, coord_call *cc)
{
    ch_mem *me = ch_mtab_self(&c->mt);
    if (me->drained || c->leaving) {
        cc->rc = -EALREADY;
        return;
    }
    me->drained = true;
    me->incarnation++; /* peers take the record with the flag over their copy */
    coord_after_merge(c, CH_MT_CHANGED | CH_MT_RING, 0, NULL);
}

static void leave_done_fn(ch_coord *c, coord_call *cc)
{
    cc->rc = c->round->leave_done(c);
}

/* Polls a coordinator condition until it holds or the deadline passes. 1, 0 on timeout,
 * or the stop's error. */
static int leave_wait(ch_node *n, void (*fn)(ch_coord *, coord_call *), uint64_t deadline)
{
    for (;;) {
        coord_call chk = {0};
        int r = on_coordinator(n, fn, &chk);
        if (r != 0) return r < 0 ? r : 1; /* stopped meanwhile, or done */
        if (ch_now_ns() >= deadline) return 0;
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL); /* a poll interval, not a synchronisation */
    }
}

int ch_node_leave(ch_node *n)
{
    if (!n) return -EINVAL;
    if (!n->coord) { /* no hub: nowhere to hand anything over */
        ch_node_stats st;
        if (ch_node_stats_get(n, &st) == 0) atomic_store(&n->left_behind, st.processes);
        return ch_node_stop(n);
    }
    ch_hashring *ring = atomic_load(&n->ring);
    bool alone = ring && ch_hashring_nodes(ring) == 1 && ch_hashring_has(ring, n->id);
    coord_call cc = {0};
    int rc = on_coordinator(n, leave_fn, &cc);
    if (rc < 0) return rc;
    /* Every process is handed over and confirmed (bounded by leave_wait_ms). That round
     * ends only once every peer adopted the ring without this node (its barrier), so the
     * peers saw the leave too; with no process to hand over, wait for that alone. */
    uint64_t now = ch_now_ns();
    int done = leave_wait(n, leave_done_fn, now + ms(n->cfg.migration.leave_wait_ms));
    ch_node_stats st;
    ch_node_stats_get(n, &st);
    if (!alone && (done != 1 || st.processes))
        CH_WARN("leaving with %llu processes not handed over", (unsigned long long)st.processes);
    atomic_store(&n->left_behind, st.processes); /* the moves that failed and then went count */
    rc = ch_node_stop(n);
    /* A hub of one has no one to hand over to: its leave is a stop. */
    return rc < 0 ? rc : (st.processes && !alone ? CH_EPARTIAL : 0);
}

int ch_node_drain(ch_node *n)
{
    if (!n) return -EINVAL;
    if (!n->coord) return CH_EPARTIAL; /* no one to hand over to */
    coord_call cc = {0};
    int rc = on_coordinator(n, drain_fn, &cc);
    if (rc < 0) return rc;
    int done = leave_wait(n, leave_done_fn, ch_now_ns() + ms(n->cfg.migration.leave_wait_ms));
    if (done < 0) return done;
    ch_node_stats st;
    ch_node_stats_get(n, &st);
    if (st.processes)
        CH_WARN("drained with %llu processes not handed over", (unsigned long long)st.processes);
    return st.processes ? CH_EPARTIAL : 0;
}

static void pin_fn(ch_coord *c, coord_call *cc)
{
    ch_hashring *ring = atomic_load(&c->n->ring);
    if (cc->pin_node && !(ring && ch_hashring_has(ring, cc->pin_node))) {
        cc->rc = -EHOSTUNREACH;
        return;
    }
    cc->rc = coord_pin_set(c, cc->pin_hash, cc->pin_node);
}

int ch_node_pin(ch_node *n, const char *id, size_t id_len, uint64_t node)
{
    if (!n) return -EINVAL;
    int rc = ch_id_check(id, &id_len);
    if (rc) return rc;
    if (!n->coord) return node && node != n->id ? -EHOSTUNREACH : 0;
    coord_call cc = {.pin_hash = ch_id_hash(id, id_len), .pin_node = node};
    return on_coordinator(n, pin_fn, &cc);
}

static void reset_fn(ch_coord *c, coord_call *cc)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u8(&w, 0);
    coord_send_all(c, CH_F_PARTITION_RESET, &w);
    ch_wbuf_free(&w);
    coord_on_partition_reset(c);
    (void)cc;
}

int ch_node_partition_reset(ch_node *n)
{
    coord_call cc = {0};
    return on_coordinator(n, reset_fn, &cc);
}

int ch_node_partitioned(ch_node *n)
{
    return n ? atomic_load(&n->partitioned) : -EINVAL;
}

int ch_node_owner_of(const ch_node *n, const char *id, size_t id_len, uint64_t *node)
{
    if (!n || !node) return -EINVAL;
    int rc = ch_id_check(id, &id_len);
    if (rc) return rc;
    ch_hashring *ring = n->coord ? atomic_load(&((ch_node *)n)->ring) : NULL;
    *node = ring ? ch_owner(n, ring, ch_id_hash(id, id_len)) : n->id;
    return 0;
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
