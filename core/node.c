/*
 * core/node.c - the node: configuration, lifecycle (create, start, stop, destroy), the
 * posting of functions to reactors, and statistics. Messages are core/message.c, child
 * batches core/batch.c, registry queries core/registry.c.
 *
 * It is the wiring file, the one file that assembles a node from its layers: the only
 * core/ file that includes net/ or migration/ headers. It installs the table through
 * which the runtime reaches them (core/upcall.h).
 */
#include "node.h"

#include "migration/coord_round.h"
#include "migration/handover.h"

#include "net/cluster/coord.h"
#include "net/cluster/hashring.h"
#include "log.h"
#include "net/server.h"
#include "supervisor.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/random.h>
#include <unistd.h>

/* ---- the layers above (upcall.h) ------------------------------------------------------- */

/* A migration record: a core's engine takes it; one that reached a coordinator that shut
 * down carries a frame it owns. */
static void mig_on_rec(ch_reactor *r, ch_rec *rec)
{
    ch_mig_msg m = ch_mig_read(rec);
    if (r->core < r->node->cores)
        ch_ho_on_rec(r, rec);
    else if (m.op == CH_MIG_OUT)
        free(m.ptr);
}

static const ch_upcalls cluster_upcalls = {
    .coord_dispatch = ch_coord_dispatch,
    .coord_shutdown = ch_coord_shutdown,
    .relay_done = ch_coord_relay_done,
    .remote_batch_done = ch_coord_remote_batch_done,
    .miss = ch_coord_miss,
    .reg_insert = ch_coord_local_insert,
    .reg_remove = ch_coord_local_remove,
    .reg_moved = ch_coord_local_moved,
    .route_msg = ch_coord_route_msg,
    .pin_of = ch_coord_pin_of,
    .ho_create = ch_ho_create,
    .ho_destroy = ch_ho_destroy,
    .ho_on_rec = mig_on_rec,
    .ho_intercept = ch_ho_intercept,
    .ho_turn = ch_ho_turn,
    .ho_busy = ch_ho_busy,
    .ho_terminated = ch_ho_terminated,
    .ho_target = ch_ho_target,
    .ho_proc_gone = ch_ho_proc_gone,
    .ho_reply_done = ch_ho_reply_done,
};

unsigned ch_route_msg(ch_node *n, uint64_t hash, uint16_t *stamp)
{
    if (n->up) return n->up->route_msg(n, hash, stamp);
    *stamp = 0;
    return ch_core_of(n, hash);
}

unsigned ch_route(ch_node *n, uint64_t hash)
{
    uint16_t stamp;
    return ch_route_msg(n, hash, &stamp);
}

/* ---- config and lifecycle ----------------------------------------------------------- */

void ch_node_config_init(ch_node_config *c)
{
    memset(c, 0, sizeof(*c));
    c->name = "node";
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    c->cores = cpus > 0 ? (unsigned)cpus : 1;
    c->pin = 1;
    c->ring_bytes = 256 * 1024;
    c->inbox_bytes = 8 * 1024 * 1024;
    c->max_message = 1024 * 1024;
    c->spin_us = 50;
    c->batch = 256;
    c->restart_intensity = 100;
    c->restart_period_ms = 4000;
    c->shutdown_ms = 5000;
    c->call_timeout_ms = 5000;
    c->start_timeout_ms = 5000;
    c->cluster.hub_id = "corehub";
    c->cluster.probe_interval_ms = 1000;
    c->cluster.probe_timeout_ms = 500;
    c->cluster.suspicion_mult = 4;
    c->cluster.sync_interval_ms = 5000;
    c->cluster.vnodes = CH_HASHRING_DEFAULT_VNODES;
    c->cluster.replicas = 1;
    c->cluster.partition = CH_PARTITION_DIVERGENCE;
    c->cluster.quorum_size = 1;
    c->cluster.quorum_percent = 50;
    c->cluster.quorum_window_ms = 60000;
    c->migration.strategy = CH_MIGRATE_COLDSWAP;
    c->migration.retention_ms = 5000;
    c->migration.child_timeout_ms = 30000;
    c->migration.leave_wait_ms = 30000;
    c->migration.codec = "auto";
    c->migration.batch_bytes = 256 * 1024;
    c->migration.inflight_bytes = 1024 * 1024;
    c->migration.lanes = 1; /* the fault soak passed 100 of 100 with them (README) */
}

static int check_config(const ch_node_config *c)
{
    if (c->cores == 0 || c->cores > 1024) return -EINVAL;
    if (c->ring_bytes < 4096 || c->ring_bytes > ((size_t)1 << 30)) return -EINVAL;
    if (c->max_message == 0 || c->max_message > UINT32_MAX / 2) return -EINVAL;
    if (c->batch == 0 || c->restart_period_ms == 0) return -EINVAL;
    const ch_cluster_config *cc = &c->cluster;
    if (cc->listen && (cc->probe_interval_ms == 0 || cc->vnodes == 0 || !cc->hub_id ||
                       strlen(cc->hub_id) == 0 || strlen(cc->hub_id) > CH_HUB_ID_MAX))
        return -EINVAL;
    if ((unsigned)cc->partition > CH_PARTITION_MAJORITY_QUORUM) return -EINVAL;
    return 0;
}

static void free_node(ch_node *n)
{
    for (unsigned i = 0; n->reactors && i < n->nreactors; i++)
        ch_reactor_destroy(&n->reactors[i]);
    ch_coord_free(n->coord); /* after the io_uring that carried its sockets is gone */
    ch_srv_node_free(n);
    for (unsigned i = 0; n->mboxes && i < n->nreactors * n->nreactors; i++)
        ch_mbox_destroy(&n->mboxes[i]);
    for (size_t i = 0; i < n->nretired; i++)
        ch_hashring_free(n->retired[i]);
    free(n->retired);
    for (size_t i = 0; i < n->nretired_pins; i++)
        free(n->retired_pins[i]);
    free(n->retired_pins);
    free(atomic_load(&n->pins));
    free(n->cluster_strings);
    ch_hashring_free(atomic_load(&n->ring));
    free(n->reactors);
    free(n->mboxes);
    free(n->types);
    ch_hooks_destroy(&n->hooks);
    pthread_mutex_destroy(&n->stop_lock);
    free(n);
}

static void *zalloc_lines(size_t bytes)
{
    bytes = (bytes + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, bytes ? bytes : 64);
    if (p) memset(p, 0, bytes);
    return p;
}

/* The caller's config may point at strings that die after ch_node_create returns: keep
 * copies of every one of them, in one block. */
static int copy_cluster_config(ch_node *n)
{
    ch_cluster_config *cc = &n->cfg.cluster;
    size_t bytes = cc->cookie_len + sizeof(char *) * (cc->nseeds + 1);
    const char *strs[] = {cc->hub_id, cc->listen};
    for (size_t i = 0; i < 2; i++)
        bytes += strs[i] ? strlen(strs[i]) + 1 : 0;
    for (size_t i = 0; i < cc->nseeds; i++)
        bytes += cc->seeds && cc->seeds[i] ? strlen(cc->seeds[i]) + 1 : 1;
    char *blk = malloc(bytes);
    if (!blk) return -ENOMEM;
    const char **seeds = (const char **)blk;
    char *at = blk + sizeof(char *) * (cc->nseeds + 1);
    for (size_t i = 0; i < cc->nseeds; i++) {
        const char *s = cc->seeds && cc->seeds[i] ? cc->seeds[i] : "";
        seeds[i] = strcpy(at, s);
        at += strlen(s) + 1;
    }
    if (cc->hub_id) cc->hub_id = strcpy(at, cc->hub_id), at += strlen(at) + 1;
    if (cc->listen) cc->listen = strcpy(at, cc->listen), at += strlen(at) + 1;
    if (cc->cookie_len && cc->cookie) cc->cookie = memcpy(at, cc->cookie, cc->cookie_len);
    cc->seeds = seeds;
    n->cluster_strings = blk;
    return 0;
}

/* A random node id. CH_FAULT=id-below:HEX (tests) draws until the id is below HEX: a test
 * of who dials whom (the smaller id dials) then knows the order of its nodes' ids. */
static uint64_t draw_id(void)
{
    const char *f = getenv("CH_FAULT");
    const char *below = f ? strstr(f, "id-below:") : NULL;
    uint64_t limit = below ? strtoull(below + 9, NULL, 16) : 0, id = 0;
    while (getrandom(&id, sizeof(id), 0) != sizeof(id) || id == 0) {
    }
    /* 1..limit-1 in one draw (a redraw until below a small limit would never end) */
    return limit >= 2 ? 1 + id % (limit - 1) : id;
}

int ch_node_create(const ch_node_config *cfg, ch_node **out)
{
    ch_node_config def;
    if (!cfg) {
        ch_node_config_init(&def);
        cfg = &def;
    }
    if (!out) return -EINVAL;
    int rc = check_config(cfg);
    if (rc) return rc;
    ch_node *n = zalloc_lines(sizeof(*n)); /* its hot fields sit on lines of their own */
    if (!n) return -ENOMEM;
    n->cfg = *cfg;
    snprintf(n->name, sizeof(n->name), "%s", cfg->name ? cfg->name : "node");
    n->cfg.name = n->name;
    if ((rc = copy_cluster_config(n)) < 0) {
        free(n);
        return rc;
    }
    n->cores = cfg->cores;
    n->core_mask = (cfg->cores & (cfg->cores - 1)) == 0 ? cfg->cores - 1 : 0;
    n->nreactors = cfg->cores + (cfg->cluster.listen ? 1 : 0);
    n->id = draw_id();
    atomic_init(&n->state, CH_NODE_CREATED);
    pthread_mutex_init(&n->stop_lock, NULL);
    rc = ch_hooks_init(&n->hooks);
    if (rc) {
        pthread_mutex_destroy(&n->stop_lock);
        free(n);
        return rc;
    }
    n->up = cfg->cluster.listen ? &cluster_upcalls : NULL; /* before the reactors' init */
    unsigned nr = n->nreactors;
    /* Cache-line aligned: the rings' and reactors' fields are laid out on separate lines
     * for the threads that write them, which only holds if each struct starts on one. */
    n->mboxes = zalloc_lines((size_t)nr * nr * sizeof(*n->mboxes));
    n->reactors = zalloc_lines(nr * sizeof(*n->reactors));
    rc = -ENOMEM;
    if (!n->mboxes || !n->reactors) goto fail;
    for (unsigned i = 0; i < nr * nr; i++)
        if ((rc = ch_mbox_init(&n->mboxes[i], cfg->ring_bytes)) < 0) goto fail;
    for (unsigned i = 0; i < nr; i++)
        if ((rc = ch_reactor_init(&n->reactors[i], n, i)) < 0) goto fail;
    if (cfg->cluster.listen && (rc = ch_coord_create(n, &ch_coord_round_ops, &n->coord)) < 0)
        goto fail;
    *out = n;
    return 0;
fail:
    free_node(n);
    return rc;
}

const ch_ptype *ch_node_find_type(const ch_node *n, const char *name)
{
    for (unsigned i = 0; name && i < n->ntypes; i++)
        if (strcmp(n->types[i].name, name) == 0) return &n->types[i];
    return NULL;
}

int ch_node_type_register(ch_node *n, const ch_process_type *type)
{
    if (!n || !type || !type->name) return -EINVAL;
    size_t len = strlen(type->name);
    if (len == 0 || len > CH_TYPE_NAME_MAX) return -EINVAL;
    if (atomic_load(&n->state) != CH_NODE_CREATED) return -EBUSY;
    if (ch_node_find_type(n, type->name)) return -EEXIST;
    ch_ptype *t = realloc(n->types, (n->ntypes + 1) * sizeof(*t));
    if (!t) return -ENOMEM;
    n->types = t;
    t[n->ntypes].cb = *type;
    memcpy(t[n->ntypes].name, type->name, len + 1);
    t[n->ntypes].cb.name = t[n->ntypes].name;
    n->ntypes++;
    return 0;
}

int ch_node_start(ch_node *n)
{
    if (!n) return -EINVAL;
    if (atomic_load(&n->state) != CH_NODE_CREATED) return -EBUSY;
    atomic_store(&n->state, CH_NODE_RUNNING);
    for (unsigned i = 0; i < n->nreactors; i++) {
        int rc = ch_reactor_spawn(&n->reactors[i]);
        if (rc < 0) {
            CH_ERROR("cannot start reactor %u: %s", i, strerror(-rc));
            ch_node_stop(n);
            return rc;
        }
    }
    if (n->coord) {
        ch_post post = {.fn = ch_coord_boot, .ud = NULL};
        ch_rec h = {.op = CH_OP_POST, .len = sizeof(post)};
        ch_reactor_post(n, n->cores, &h, NULL, &post, false);
        CH_INFO("%s %016llx started on %u cores, listening on port %d", n->name,
                (unsigned long long)n->id, n->cores, ch_node_port(n));
    } else {
        CH_INFO("%s started on %u cores", n->name, n->cores);
    }
    return 0;
}

int ch_node_api_enter(ch_node *n)
{
    atomic_fetch_add(&n->inflight, 1);
    if (atomic_load(&n->state) == CH_NODE_RUNNING) return 0;
    atomic_fetch_sub(&n->inflight, 1);
    return CH_ESTOPPED;
}

void ch_node_api_leave(ch_node *n)
{
    atomic_fetch_sub(&n->inflight, 1);
}

void ch_node_shut_ack(ch_node *n)
{
    atomic_fetch_add(&n->shut_acks, 1);
}

static void wait_for(ch_node *n, _Atomic long *v, long want)
{
    (void)n;
    while (atomic_load(v) != want)
        sched_yield();
}

/* Shuts reactors [from, to) down (their processes terminated) and waits for their acks. */
static void shut_reactors(ch_node *n, unsigned from, unsigned to)
{
    unsigned want = atomic_load(&n->shut_acks);
    ch_rec h = {.op = CH_OP_SHUTDOWN};
    for (unsigned i = from; i < to; i++)
        if (n->reactors[i].running && ch_reactor_post(n, i, &h, NULL, NULL, false) == 0) want++;
    while (atomic_load(&n->shut_acks) < want) {
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL); /* a poll interval, not a synchronisation */
    }
}

/* Phase 1: every reactor terminates its processes while all threads still run, so that
 * terminate callbacks may still talk to each other's cores. Phase 2: join, then drain
 * whatever is left in the mailboxes on this thread. */
int ch_node_stop(ch_node *n)
{
    if (!n) return -EINVAL;
    if (ch_node_on_reactor(n)) return CH_EWOULDBLOCK;
    pthread_mutex_lock(&n->stop_lock);
    int prev = atomic_exchange(&n->state, CH_NODE_STOPPING);
    if (prev == CH_NODE_STOPPED || prev == CH_NODE_CREATED) {
        atomic_store(&n->state, CH_NODE_STOPPED);
        pthread_mutex_unlock(&n->stop_lock);
        return 0;
    }
    wait_for(n, &n->inflight, 0);
    ch_srv_node_stop(n); /* servers close their sockets while the reactors still run */
    unsigned nr = n->nreactors;
    /* The coordinator goes first: peers must see this node vanish with its processes
     * still registered (a node stopped without ch_node_leave is restarted elsewhere, like
     * a crash), not watch its registry empty out. */
    if (n->coord) shut_reactors(n, n->cores, nr);
    shut_reactors(n, 0, n->cores);
    for (unsigned i = 0; i < nr; i++)
        ch_reactor_stop(&n->reactors[i]);
    for (unsigned i = 0; i < nr; i++)
        n->reactors[i].shut = true;
    unsigned work;
    do {
        work = 0;
        for (unsigned i = 0; i < nr; i++)
            work += ch_reactor_drain(&n->reactors[i]);
    } while (work);
    atomic_store(&n->state, CH_NODE_STOPPED);
    pthread_mutex_unlock(&n->stop_lock);
    CH_INFO("%s stopped", n->name);
    return 0;
}

void ch_node_destroy(ch_node *n)
{
    if (!n) return;
    if (ch_node_on_reactor(n)) { /* it would free the thread it runs on */
        CH_ERROR("ch_node_destroy called on one of the node's own threads: refused");
        return;
    }
    ch_node_stop(n);
    free_node(n);
}

unsigned ch_node_cores(const ch_node *n)
{
    return n ? n->cores : 0;
}

int ch_node_core_of(const ch_node *n, const char *id, size_t id_len)
{
    if (!n) return -EINVAL;
    int rc = ch_id_check(id, &id_len);
    if (rc) return rc;
    return (int)(ch_id_hash(id, id_len) % n->cores);
}

int ch_node_current_core(const ch_node *n)
{
    ch_reactor *r = ch_reactor_self();
    return r && r->node == n && r->core < n->cores ? (int)r->core : -1;
}

bool ch_node_on_reactor(const ch_node *n)
{
    ch_reactor *r = ch_reactor_self();
    return r && r->node == n; /* a core or the coordinator: neither may block */
}

void ch_node_retire_ring(ch_node *n, struct ch_hashring *ring)
{
    struct ch_hashring **v = realloc(n->retired, (n->nretired + 1) * sizeof(*v));
    if (!v) {
        CH_ERROR("cannot retire ring: leaking it");
        return;
    }
    n->retired = v;
    v[n->nretired++] = ring;
}

void ch_node_retire_pins(ch_node *n, struct ch_pins *pins)
{
    struct ch_pins **v = realloc(n->retired_pins, (n->nretired_pins + 1) * sizeof(*v));
    if (!v) {
        CH_ERROR("cannot retire a pin snapshot: leaking it");
        return;
    }
    n->retired_pins = v;
    v[n->nretired_pins++] = pins;
}

int ch_node_post(ch_node *n, unsigned core, void (*fn)(ch_node *, void *), void *ud)
{
    if (!n || !fn || core >= n->cores) return -EINVAL;
    int rc = ch_node_api_enter(n);
    if (rc) return rc;
    ch_post post = {.fn = fn, .ud = ud};
    ch_rec h = {.op = CH_OP_POST, .len = sizeof(post)};
    rc = ch_reactor_post(n, core, &h, NULL, &post, false);
    ch_node_api_leave(n);
    return rc;
}

/* ---- node statistics ---------------------------------------------------------------- */

/* Pauses of moved processes: the reactors' fine histograms summed (hist.h), then read. */
typedef struct pauses {
    uint64_t h[CH_HIST_BUCKETS];
    uint64_t max;
} pauses;

static void add_pauses(pauses *p, const ch_counters *c)
{
    for (unsigned i = 0; i < CH_HIST_BUCKETS; i++)
        p->h[i] += atomic_load_explicit(&c->pause[i], memory_order_relaxed);
    uint64_t max = atomic_load_explicit(&c->pause_max, memory_order_relaxed);
    if (max > p->max) p->max = max;
}

static void put_pauses(ch_node_stats *out, const pauses *p)
{
    out->pause_p50_us = ch_hist_quantile(p->h, 50);
    out->pause_p99_us = ch_hist_quantile(p->h, 99);
    out->pause_max_us = p->max;
    for (unsigned i = 0; i < CH_HIST_BUCKETS; i++)
        out->pause_hist[ch_hist_log2(i)] += p->h[i];
}

static void add_reactor(ch_node_stats *out, const ch_counters *c)
{
#define SUM(f) out->f += atomic_load_explicit(&c->f, memory_order_relaxed)
    SUM(processes);
    SUM(started);
    SUM(stopped);
    SUM(restarts);
    SUM(crashes);
    SUM(messages);
    SUM(dead_letters);
    SUM(intensity_exceeded);
    SUM(slow_terminates);
    SUM(crash_restarts);
    SUM(rejoins);
    SUM(conflicts);
    SUM(bad_frames);
    SUM(refused_peers);
    SUM(accept_pauses);
    SUM(migrating);
    SUM(migrated_out);
    SUM(migrated_in);
    SUM(migration_failures);
    SUM(forwarded_messages);
    SUM(held_messages);
    SUM(handover_bytes_raw);
    SUM(handover_bytes_wire);
    SUM(handover_frames_zstd);
    SUM(handover_frames_raw);
    SUM(handover_frames_lane);
    SUM(handover_lanes_lost);
#undef SUM
}

static void finish_stats(ch_node *n, ch_node_stats *out, const pauses *p)
{
    put_pauses(out, p);
    ch_hashring *ring = n->coord ? atomic_load(&n->ring) : NULL;
    out->ring_members = ring ? ch_hashring_nodes(ring) : 1;
    out->members_alive = n->coord ? atomic_load(&n->members_alive) : 1;
    out->epoch = n->coord ? atomic_load(&n->epoch) : 0;
    out->left_behind = atomic_load(&n->left_behind);
}

/* Sums reactors [from, to) into *out. The pause histogram sum (4 KiB) lives on the stack:
 * a statistics call never fails for want of memory. */
static void collect(ch_node *n, unsigned from, unsigned to, ch_node_stats *out)
{
    pauses p = {0};
    memset(out, 0, sizeof(*out));
    for (unsigned i = from; i < to; i++) {
        add_reactor(out, &n->reactors[i].stats);
        add_pauses(&p, &n->reactors[i].stats);
    }
    finish_stats(n, out, &p);
}

int ch_node_stats_get(ch_node *n, ch_node_stats *out)
{
    if (!n || !out) return -EINVAL;
    collect(n, 0, n->nreactors, out);
    return 0;
}

int ch_node_core_stats_get(ch_node *n, unsigned core, ch_node_stats *out)
{
    if (!n || !out || core >= n->nreactors) return -EINVAL;
    collect(n, core, core + 1, out);
    return 0;
}

int ch_hook_register(ch_node *n, ch_hook_point point, const char *hook_id, int priority,
                     ch_hook_fn fn, void *ud)
{
    return n ? ch_hooks_register(&n->hooks, point, hook_id, priority, fn, ud) : -EINVAL;
}

int ch_hook_cancel(ch_node *n, ch_hook_point point, const char *hook_id)
{
    return n ? ch_hooks_cancel(&n->hooks, point, hook_id) : -EINVAL;
}
