/*
 * net/cluster/coord_heal.c - what a member's departure or return means for the processes: crash
 * restarts, partition mode, and a node's rejoin after the hub declared it dead.
 *
 * The rules (README "Guarantees" says the same to users):
 *
 * 1. A member that dies (suspected, not refuted within the suspicion time) leaves the
 *    ring; the new ring owners restart its processes from their specs (state reset,
 *    counted in crash_restarts). A node restarts a dead member's processes only while it
 *    hears from a quorum of the members (ALIVE ones: a suspect does not count) under the
 *    hub's partition strategy; otherwise it parks their specs. The divergence strategy
 *    has no quorum: it always restarts (availability first, duplicates healed by rule 4).
 *
 * 2. Partition mode (the quorum strategies): a node whose ring lost its quorum stops its
 *    local processes at once, parks their specs, refuses starts and sends
 *    (CH_EPARTITIONED), and runs nothing for anyone. When a quorum is back, parked specs are
 *    started again through the ring: each start goes to the id's owner, where an id that
 *    already runs is refused as a duplicate, so a parked process never runs twice.
 *
 * 3. Rejoin: a node that hears it was declared dead (a view listing it DEAD at or above its
 *    incarnation) raises its incarnation and comes back ALIVE; its peers take it back into
 *    the ring. The claim names its declarer, the member whose detector found this node
 *    dead (a node that joined later only relays it). If the declarer is a member this node
 *    did not declare dead itself (so this node was the one cut off: a one-sided
 *    partition) and, when it is the sender, not in partition mode, or this node woke from
 *    a stall of its own a moment before (its tick ran late), or it is in partition mode
 *    itself, the hub has restarted this node's processes elsewhere: it stops every local process
 * and forgets its parked specs before it comes back, so none of its stale instances runs beside its
 * replacement. Processes that were started here while it was cut off and that the hub never heard
 *    of go with them.
 *
 * 4. Two live instances of one id can still meet after a divergence partition heals (each
 *    side ran the id). When the rings merge, the instance that is not on the ring owner
 *    migrates to it and the owner's instance survives; the type's resolve_conflict
 *    callback, if any, merges the loser's state into it (migration/handover.c).
 */
#include "coord_int.h"

/* ---- restarts ------------------------------------------------------------------------- */

static void count_stat(_Atomic uint64_t *s, uint64_t k)
{
    atomic_store_explicit(s, atomic_load_explicit(s, memory_order_relaxed) + k,
                          memory_order_relaxed);
}

/* Says what restarted (the cores that started them counted them: CH_HOPS_CRASH); a start
 * refused as a duplicate restarted nothing. */
static void restarts_done(void *ud, const int *results, size_t count)
{
    size_t ok = 0, dup = 0;
    int other = 0; /* the first other outcome, for the log */
    for (size_t i = 0; i < count; i++) {
        ok += results[i] == 0;
        dup += results[i] == CH_EALREADY;
        if (results[i] && results[i] != CH_EALREADY && !other) other = results[i];
    }
    (void)ud;
    CH_INFO("restarted %zu of %zu processes from their specs (%zu already running%s%s)", ok, count,
            dup, other ? "; the others: " : "", other ? ch_strerror(other) : "");
}

static void stops_done(void *ud, const int *results, size_t count)
{
    size_t ok = 0;
    for (size_t i = 0; i < count; i++)
        ok += results[i] == 0;
    CH_INFO("stopped %zu of %zu local processes", ok, count);
    (void)ud;
}

static ch_child_spec spec_of(ch_regrow *r)
{
    return (ch_child_spec){.id = ch_regrow_id(r),
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

/* Starts rows[0..k) from their specs (state is lost: counted). hops CH_MAX_HOPS starts them
 * here; 0 sends each to its ring owner, which refuses an id it already runs. */
void coord_restart_rows(ch_coord *c, ch_regrow **rows, size_t k, uint8_t hops)
{
    if (!k) return;
    ch_child_spec *specs = calloc(k, sizeof(*specs));
    if (!specs) {
        CH_ERROR("no memory to restart %zu processes", k);
        return;
    }
    for (size_t i = 0; i < k; i++)
        specs[i] = spec_of(rows[i]);
    int rc = ch_batch_submit(c->n, CH_OP_START, specs, k, NULL, NULL, hops | CH_HOPS_CRASH,
                             restarts_done, c);
    if (rc < 0) CH_ERROR("restart of %zu processes failed: %s", k, ch_strerror(rc));
    free(specs);
}

/* ---- parked specs ------------------------------------------------------------------------ */

/* Keeps copies of rows[0..k) to start once this node hears from a quorum again. */
static void park_rows(ch_coord *c, ch_regrow **rows, size_t k)
{
    if (!k) return;
    ch_regrow **v = realloc(c->part.parked, (c->part.nparked + k) * sizeof(*v));
    if (!v) {
        CH_ERROR("no memory to park %zu processes: they restart when their owner adopts them", k);
        return;
    }
    c->part.parked = v;
    for (size_t i = 0; i < k; i++) {
        ch_regrow *copy = ch_regrow_dup(rows[i]);
        if (copy) c->part.parked[c->part.nparked++] = copy;
    }
}

static void drop_parked(ch_coord *c)
{
    for (size_t i = 0; i < c->part.nparked; i++)
        free(c->part.parked[i]);
    free(c->part.parked);
    c->part.parked = NULL;
    c->part.nparked = 0;
}

/* ---- quorum --------------------------------------------------------------------------- */

/* Does `count` members make a quorum under the hub's strategy (largest_seen as it is)? */
static bool quorum_holds(const ch_coord *c, size_t count)
{
    const ch_cluster_config *cc = &c->n->cfg.cluster;
    switch (cc->partition) {
    case CH_PARTITION_STATIC_QUORUM:
        return count >= cc->quorum_size;
    case CH_PARTITION_DYNAMIC_QUORUM:
        return count >= c->part.largest_seen ||
               (c->part.largest_seen - count) * 100 <=
                   (size_t)cc->quorum_percent * c->part.largest_seen;
    case CH_PARTITION_MAJORITY_QUORUM:
        return count * 2 > c->part.largest_seen;
    default:
        return true;
    }
}

/* Records the ring's size in the largest membership seen (the quorum's reference). */
static void observe_size(ch_coord *c, size_t size, uint64_t now)
{
    const ch_cluster_config *cc = &c->n->cfg.cluster;
    if (cc->partition == CH_PARTITION_DYNAMIC_QUORUM) {
        if (size >= c->part.largest_seen ||
            ch_ns_since(now, c->part.largest_seen_ns) > ms(cc->quorum_window_ms)) {
            c->part.largest_seen = size;
            c->part.largest_seen_ns = now;
        }
    } else if (size > c->part.largest_seen) {
        c->part.largest_seen = size;
    }
}

/* May this node restart processes of the dead now (rule 1)? */
static bool may_restart(const ch_coord *c)
{
    return !c->part.on && quorum_holds(c, ch_mtab_alive_size(&c->mt));
}

/* ---- departures ------------------------------------------------------------------------- */

/* The rows a gone member still owns pass to their new owners, restarted from their specs:
 * this node restarts the ones it owns now, and sends a start for each of the others to its
 * owner. The owner may not have the row (a node that joined while the member was only
 * suspected never received its rows), and a start for an id already running is refused as
 * a duplicate, so each process restarts once whoever asks first. Without a quorum they are
 * parked instead. Should an owner be gone too before it restarted them, its own departure
 * passes them on again, so no process is forgotten. */
static void adopt_rows(ch_coord *c, ch_mem *m)
{
    ch_hashring *ring = atomic_load(&c->n->ring);
    ch_regrow **mine = malloc((c->reg.count + 1) * sizeof(*mine));
    ch_regrow **theirs = malloc((c->reg.count + 1) * sizeof(*theirs));
    size_t k = 0, j = 0;
    if (!mine || !theirs)
        CH_ERROR("no memory to adopt the processes of %016llx: they restart when their owners "
                 "adopt them",
                 (unsigned long long)m->id);
    for (size_t i = 0; mine && theirs && i < c->reg.cap; i++) {
        ch_regrow *r = c->reg.slots[i];
        if (!r || r->node != m->id) continue;
        uint64_t owner = ring ? ch_owner(c->n, ring, r->hash) : c->mt.self;
        coord_reg_reassign(c, r, owner);
        if (owner == c->mt.self)
            mine[k++] = r;
        else
            theirs[j++] = r;
    }
    if (may_restart(c)) {
        coord_restart_rows(c, mine, k, CH_MAX_HOPS);
        coord_restart_rows(c, theirs, j, 0);
    } else if (k + j) {
        park_rows(c, mine, k);
        park_rows(c, theirs, j);
        CH_WARN("no quorum: %zu processes of %016llx parked until one is back", k + j,
                (unsigned long long)m->id);
    }
    free(mine);
    free(theirs);
    c->round->gone(c, m->id);
}

/* A member left the ring. A dead one's processes restart from their specs at once. One
 * that left gracefully hands them over first (migration): what it still owns when it
 * hangs up (it could not hand it over) restarts then, see coord_on_down. */
void coord_member_gone(ch_coord *c, ch_mem *m)
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
    /* A connection still up stays: a member declared dead while it stalled reads there, as
     * soon as it runs again, that it was, and its clients' casts keep arriving on it (only
     * its membership and client frames count until it rejoined, coord.c). */
    if (m->conn) coord_send_view(c, m->conn);
}

/* A member that left gracefully hung up: its handover is over. */
void coord_left_done(ch_coord *c, ch_mem *m)
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
        ch_mem *m = c->mt.v[i];
        if (m->left_pending && m->conn && ch_ns_since(now, m->since_ns) > bound)
            ch_conn_close(m->conn, 0);
    }
}

/* ---- partition mode --------------------------------------------------------------------- */

/* The rows of this node's own processes (pointers into the registry, valid until the
 * coordinator next changes it). */
static size_t own_rows(ch_coord *c, ch_regrow ***out)
{
    ch_regrow **v = malloc((c->reg.count + 1) * sizeof(*v));
    size_t k = 0;
    for (size_t i = 0; v && i < c->reg.cap; i++) {
        ch_regrow *r = c->reg.slots[i];
        if (r && r->node == c->mt.self) v[k++] = r;
    }
    *out = v;
    return v ? k : 0;
}

/* Stops every local process (the registry's rows of this node); returns how many. */
static size_t stop_local(ch_coord *c, bool park)
{
    ch_regrow **rows;
    size_t k = own_rows(c, &rows);
    const char **ids = malloc((k + 1) * sizeof(*ids));
    size_t *lens = malloc((k + 1) * sizeof(*lens));
    if (!rows || !ids || !lens) {
        CH_ERROR("no memory to stop the local processes");
        k = 0;
    }
    if (park) park_rows(c, rows, k);
    for (size_t i = 0; i < k; i++) {
        ids[i] = ch_regrow_id(rows[i]);
        lens[i] = rows[i]->id_len;
    }
    if (k) ch_batch_submit(c->n, CH_OP_STOP, NULL, k, ids, lens, MAX_HOPS, stops_done, NULL);
    free(ids);
    free(lens);
    free(rows);
    return k;
}

static void set_partitioned(ch_coord *c, bool on)
{
    c->part.on = on;
    atomic_store(&c->n->partitioned, on ? 1 : 0);
}

static void enter_partition(ch_coord *c)
{
    CH_WARN("partition mode: quorum lost; stopping local processes");
    set_partitioned(c, true);
    stop_local(c, true);
}

void coord_check_partition(ch_coord *c)
{
    size_t size = ch_mtab_ring_size(&c->mt);
    observe_size(c, size, ch_now_ns());
    bool lost = !quorum_holds(c, size);
    if (lost && !c->part.on) enter_partition(c);
    if (!lost && c->part.on) {
        CH_INFO("partition mode over: %zu parked processes start once a quorum answers",
                c->part.nparked);
        set_partitioned(c, false);
    }
}

/* Every tick: parked specs start, through their ring owners, once a quorum answers. */
void coord_unpark(ch_coord *c)
{
    if (!c->part.nparked || !may_restart(c)) return;
    CH_INFO("quorum: starting %zu parked processes on their owners", c->part.nparked);
    coord_restart_rows(c, c->part.parked, c->part.nparked, 0);
    drop_parked(c);
}

void coord_on_partition_reset(ch_coord *c)
{
    c->part.largest_seen = ch_mtab_ring_size(&c->mt);
    c->part.largest_seen_ns = ch_now_ns();
    coord_check_partition(c);
}

/* ---- rejoin ------------------------------------------------------------------------------ */

/* A view from `from` said this node is dead at incarnation `claim`, as `declarer` found
 * (rule 3). The incarnation is already raised (mtab.c); the view this node sends next
 * brings it back. `mutual`: this node declared the declarer dead too (it is, or came back
 * from it a moment ago): a healed partition, where each side replaced the other, rather
 * than this node cut off alone. */
void coord_rejoin(ch_coord *c, ch_mem *from, uint64_t declarer, bool mutual, bool from_partitioned,
                  uint64_t claim)
{
    if (c->leaving) return;
    /* A stall of this node's own is the surest sign that it, not the hub, was cut off: a
     * death claimed at the incarnation it had when it woke (or below) dates from it. */
    uint64_t window = 16 * ms(c->n->cfg.cluster.probe_interval_ms);
    bool stalled = c->probe.stalled_ns && claim <= c->probe.stall_inc &&
                   ch_ns_since(ch_now_ns(), c->probe.stalled_ns) < window;
    bool stale = from && !from_partitioned && (stalled || !mutual || c->part.on);
    count_stat(&c->r->stats.rejoins, 1);
    coord_audit_dirty(c);
    size_t stopped = stale ? stop_local(c, false) : 0;
    CH_WARN("declared dead by %016llx (told by %016llx): rejoining as incarnation %llu%s",
            (unsigned long long)declarer, (unsigned long long)(from ? from->id : 0),
            (unsigned long long)ch_mtab_self(&c->mt)->incarnation,
            stale ? " (the hub replaced this node's processes: stopping them)" : "");
    if (!stale) return;
    if (stopped || c->part.nparked)
        CH_WARN("stopped %zu stale processes, forgot %zu parked ones", stopped, c->part.nparked);
    drop_parked(c);
}

static void on_partition_reset(ch_coord *c, ch_conn *conn, ch_rbuf *rb)
{
    coord_on_partition_reset(c);
}

void coord_heal_frames(ch_coord *c)
{
    static const coord_frame_entry frames[] = {
        {CH_F_PARTITION_RESET, on_partition_reset},
    };
    COORD_FRAMES(c, frames);
}
