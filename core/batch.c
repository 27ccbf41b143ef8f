/*
 * core/batch.c - ch_node_children_start and ch_node_children_stop: one request split by
 * owner core.
 *
 * The calling thread validates every child (alter hook, type, id) and builds its spec,
 * then sends each involved core one record listing that core's children. Each core writes
 * its children's results into disjoint slots and decrements `pending`; the core that
 * brings it to zero finishes the batch (rollback phase, post hook, completion). A rollback
 * is a second phase of the same batch: stops for the children that did start.
 */
#include "log.h"
#include "node.h"
#include "supervisor.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void ch_batch_put(ch_batch *b)
{
    if (atomic_fetch_sub(&b->refs, 1) != 1) return;
    for (size_t i = 0; i < b->count; i++) {
        free(b->specs[i]);
        if (b->keys) free(b->keys[i]);
    }
    free(b->specs);
    free(b->keys);
    free(b->results);
    free(b->scratch);
    free(b->hook_specs);
    free(b->hook_arena);
    if (b->waited) ch_waiter_destroy(&b->w);
    free(b);
}

static ch_batch *batch_new(ch_node *n, uint8_t op, size_t count, const ch_batch_opts *o)
{
    ch_batch *b = calloc(1, sizeof(*b));
    if (!b) return NULL;
    b->node = n;
    b->op = op;
    b->count = count;
    b->rollback = op == CH_OP_START && o->rollback;
    b->on_done = o->on_done;
    b->ud = o->ud;
    atomic_init(&b->refs, 1);
    b->specs = calloc(count ? count : 1, sizeof(*b->specs));
    b->results = calloc(count ? count : 1, sizeof(*b->results));
    if (b->rollback) {
        b->keys = calloc(count ? count : 1, sizeof(*b->keys));
        b->scratch = calloc(count ? count : 1, sizeof(*b->scratch));
    }
    if (!b->on_done && ch_waiter_init(&b->w) == 0) {
        b->waited = true;
        atomic_init(&b->refs, 2);
    }
    bool ok = b->specs && b->results && (!b->rollback || (b->keys && b->scratch));
    if (ok && (b->on_done || b->waited)) return b;
    atomic_init(&b->refs, 1);
    ch_batch_put(b);
    return NULL;
}

/* The core a child goes to: its own core here, or the coordinator when another node owns
 * it (unless the request already travelled too far: then here, wherever it belongs). */
static unsigned destination(const ch_batch *b, const ch_spec *key)
{
    if (b->hops >= CH_MAX_HOPS) return (unsigned)(key->hash % b->node->cores);
    return ch_route(b->node, key->hash);
}

/* A phase with no child to route still completes on a reactor, as on_done promises: an
 * empty part to core 0 (a blocking caller just completes here, it is waiting anyway). */
static void complete_on_reactor(ch_batch *b, uint8_t op)
{
    atomic_store(&b->pending, 1);
    ch_rec h = {.op = op, .len = 0, .ref = (uint64_t)(uintptr_t)b};
    if (!b->on_done || ch_reactor_post(b->node, 0, &h, NULL, NULL, false) < 0)
        ch_batch_core_done(b);
}

/* Sends each core the indices of the children it owns among those in `keys`. */
static void dispatch_phase(ch_batch *b, uint8_t op, ch_spec **keys)
{
    ch_node *n = b->node;
    unsigned cores = n->nreactors; /* the coordinator takes the children of other nodes */
    size_t count = b->count ? b->count : 1;
    size_t *per = calloc(cores + 1, sizeof(*per)), *fill = calloc(cores, sizeof(*fill));
    uint32_t *idx = calloc(count, sizeof(*idx));
    unsigned *dst = calloc(count, sizeof(*dst));
    if (!per || !fill || !idx || !dst) {
        /* No memory to route: fail the children of this phase here. */
        for (size_t i = 0; i < b->count; i++)
            if (keys[i] && op == CH_OP_START) b->results[i] = -ENOMEM;
        complete_on_reactor(b, op);
        goto out;
    }
    for (size_t i = 0; i < b->count; i++)
        if (keys[i]) per[(dst[i] = destination(b, keys[i])) + 1]++;
    unsigned involved = 0;
    for (unsigned c = 0; c < cores; c++) {
        involved += per[c + 1] > 0;
        per[c + 1] += per[c]; /* per[c] becomes core c's first index */
    }
    for (size_t i = 0; i < b->count; i++)
        if (keys[i]) idx[per[dst[i]] + fill[dst[i]]++] = (uint32_t)i;
    atomic_store(&b->pending, involved ? involved : 1);
    if (!involved) {
        complete_on_reactor(b, op);
        goto out;
    }
    for (unsigned c = 0; c < cores; c++) {
        size_t k = per[c + 1] - per[c];
        if (!k) continue;
        ch_rec h = {.op = op, .len = (uint32_t)(k * 4), .ref = (uint64_t)(uintptr_t)b};
        int rc = ch_reactor_post(n, c, &h, NULL, idx + per[c], false);
        if (rc < 0) {
            CH_ERROR("batch part for core %u not sent: %s", c, ch_strerror(rc));
            for (size_t j = per[c]; j < per[c + 1] && !b->rolling_back; j++)
                b->results[idx[j]] = rc;
            ch_batch_core_done(b);
        }
    }
out:
    free(fill);
    free(per);
    free(idx);
    free(dst);
}

static void finish(ch_batch *b)
{
    ch_hooks *h = &b->node->hooks;
    if (b->hook_specs && ch_hooks_any(h, CH_HOOK_POST_CHILDREN_START)) {
        ch_hook_event ev = {.point = CH_HOOK_POST_CHILDREN_START,
                            .specs = b->hook_specs,
                            .count = b->count,
                            .results = b->results};
        ch_hooks_run(h, &ev);
    }
    if (b->on_done)
        b->on_done(b->ud, b->results, b->count);
    else
        ch_waiter_signal(&b->w);
    ch_batch_put(b);
}

static bool needs_rollback(const ch_batch *b)
{
    bool failed = false, started = false;
    for (size_t i = 0; i < b->count; i++) {
        failed |= b->results[i] != 0;
        started |= b->results[i] == 0;
    }
    return failed && started;
}

void ch_batch_core_done(ch_batch *b)
{
    if (atomic_fetch_sub_explicit(&b->pending, 1, memory_order_acq_rel) != 1) return;
    if (!b->rollback || b->rolling_back || !needs_rollback(b)) {
        finish(b);
        return;
    }
    b->rolling_back = true;
    for (size_t i = 0; i < b->count; i++) {
        if (b->results[i] == 0) {
            b->results[i] = CH_EROLLEDBACK;
        } else {
            free(b->keys[i]); /* nothing to undo for this child */
            b->keys[i] = NULL;
        }
    }
    dispatch_phase(b, CH_OP_STOP, b->keys);
}

/* ---- building the batch on the calling thread ---------------------------------------- */

static int id_only(const char *id, size_t id_len, ch_spec **out)
{
    ch_child_spec cs = {.id = id, .id_len = id_len};
    return ch_spec_new(&cs, NULL, out);
}

static int prepare_child(ch_batch *b, size_t i, ch_child_spec *cs)
{
    const ch_ptype *type = ch_node_find_type(b->node, cs->type);
    if (!type) {
        CH_WARN("start refused: unknown process type '%s'", cs->type ? cs->type : "(null)");
        return CH_EUNKNOWN_TYPE;
    }
    if (!cs->shutdown_ms) cs->shutdown_ms = b->node->cfg.shutdown_ms;
    int rc = ch_spec_new(cs, type, &b->specs[i]);
    if (rc) return rc;
    if (b->rollback && (rc = id_only(ch_spec_id(b->specs[i]), b->specs[i]->id_len, &b->keys[i]))) {
        free(b->specs[i]);
        b->specs[i] = NULL;
    }
    return rc;
}

/* Deep copy of the (altered) specs for the post-start hook, which may run after the
 * caller's arrays are gone. */
static int copy_for_hook(ch_batch *b, const ch_child_spec *cs)
{
    size_t bytes = 0;
    for (size_t i = 0; i < b->count; i++) {
        bytes += cs[i].id_len + 1 + (cs[i].type ? strlen(cs[i].type) : 0) + 1 + cs[i].arg_len +
                 cs[i].meta_len + (cs[i].tag ? strlen(cs[i].tag) : 0) + 1;
    }
    b->hook_specs = calloc(b->count ? b->count : 1, sizeof(*b->hook_specs));
    b->hook_arena = malloc(bytes ? bytes : 1);
    if (!b->hook_specs || !b->hook_arena) return -ENOMEM;
    char *at = b->hook_arena;
#define DUP(dst, src, len)                                                                         \
    do {                                                                                           \
        if (src) memcpy(at, src, len);                                                             \
        dst = at;                                                                                  \
        at += len;                                                                                 \
    } while (0)
    for (size_t i = 0; i < b->count; i++) {
        ch_child_spec *d = &b->hook_specs[i];
        *d = cs[i];
        DUP(d->id, cs[i].id, d->id_len);
        *at++ = '\0';
        DUP(d->type, cs[i].type, cs[i].type ? strlen(cs[i].type) + 1 : 0);
        if (!cs[i].type) *at++ = '\0';
        DUP(d->arg, cs[i].arg, cs[i].arg_len);
        DUP(d->meta, cs[i].meta, cs[i].meta_len);
        DUP(d->tag, cs[i].tag, cs[i].tag ? strlen(cs[i].tag) + 1 : 0);
        if (!cs[i].tag) *at++ = '\0';
    }
#undef DUP
    return 0;
}

/* Hooks and the copies for them see an id's length, never CH_ID_CSTR. A NUL-terminated id
 * longer than CH_ID_MAX measures CH_ID_MAX + 1 and is refused like any other. */
static void resolve_id_len(ch_child_spec *cs)
{
    if (cs->id_len == CH_ID_CSTR) cs->id_len = cs->id ? strnlen(cs->id, CH_ID_MAX + 1) : 0;
}

static void run_alter(ch_node *n, ch_child_spec *cs)
{
    ch_hook_event ev = {.point = CH_HOOK_CHILD_ALTER, .spec = cs, .count = 1};
    ch_hooks_run(&n->hooks, &ev);
}

/* Alter hook, validation and specs for every child, then the pre-start hook. */
static int build_start(ch_batch *b, const ch_child_spec *specs)
{
    ch_node *n = b->node;
    ch_child_spec *cs = malloc((b->count ? b->count : 1) * sizeof(*cs));
    if (!cs) return -ENOMEM;
    memcpy(cs, specs, b->count * sizeof(*cs));
    bool alter = ch_hooks_any(&n->hooks, CH_HOOK_CHILD_ALTER);
    for (size_t i = 0; i < b->count; i++) {
        resolve_id_len(&cs[i]);
        if (alter) run_alter(n, &cs[i]);
        resolve_id_len(&cs[i]); /* the alter hook may give a new id */
        b->results[i] = prepare_child(b, i, &cs[i]);
    }
    if (ch_hooks_any(&n->hooks, CH_HOOK_PRE_CHILDREN_START)) {
        ch_hook_event ev = {.point = CH_HOOK_PRE_CHILDREN_START, .specs = cs, .count = b->count};
        ch_hooks_run(&n->hooks, &ev);
    }
    int rc = 0;
    if (ch_hooks_any(&n->hooks, CH_HOOK_POST_CHILDREN_START)) rc = copy_for_hook(b, cs);
    free(cs);
    return rc;
}

static int build_stop(ch_batch *b, const char *const *ids, const size_t *id_lens)
{
    for (size_t i = 0; i < b->count; i++) {
        b->results[i] = id_only(ids[i], id_lens ? id_lens[i] : CH_ID_CSTR, &b->specs[i]);
        if (b->results[i] == -ENOMEM) return -ENOMEM;
    }
    return 0;
}

static int wait_batch(ch_batch *b, uint32_t timeout_ms, int *results)
{
    int rc = ch_waiter_wait(&b->w, timeout_ms);
    bool all_ok = true;
    for (size_t i = 0; i < b->count; i++) {
        int r = rc ? -ETIMEDOUT : b->results[i];
        if (results) results[i] = r;
        all_ok &= r == 0;
    }
    ch_batch_put(b);
    return rc ? rc : (all_ok ? 0 : CH_EPARTIAL);
}

static int run_batch(ch_node *n, uint8_t op, size_t count, const ch_batch_opts *opts, int *results,
                     const ch_child_spec *specs, const char *const *ids, const size_t *id_lens,
                     uint8_t hops)
{
    ch_batch_opts o = {0};
    if (opts) o = *opts;
    bool crash = hops & CH_HOPS_CRASH;
    hops &= (uint8_t)~CH_HOPS_CRASH;
    if (!o.on_done && ch_node_on_reactor(n)) return CH_EWOULDBLOCK;
    if (op == CH_OP_START && hops < CH_MAX_HOPS && atomic_load(&n->partitioned))
        return CH_EPARTITIONED;
    int rc = ch_node_api_enter(n);
    if (rc) return rc;
    ch_batch *b = batch_new(n, op, count, &o);
    if (!b) {
        ch_node_api_leave(n);
        return -ENOMEM;
    }
    b->hops = hops;
    b->crash = crash;
    rc = op == CH_OP_START ? build_start(b, specs) : build_stop(b, ids, id_lens);
    if (rc < 0) {
        if (b->waited) ch_batch_put(b);
        ch_batch_put(b);
        ch_node_api_leave(n);
        return rc;
    }
    dispatch_phase(b, op, b->specs);
    ch_node_api_leave(n);
    if (o.on_done) return 0;
    return wait_batch(b, o.timeout_ms ? o.timeout_ms : n->cfg.start_timeout_ms, results);
}

int ch_node_children_start(ch_node *n, const ch_child_spec *specs, size_t count,
                           const ch_batch_opts *opts, int *results)
{
    if (!n || (count && !specs)) return -EINVAL;
    return run_batch(n, CH_OP_START, count, opts, results, specs, NULL, NULL, 0);
}

int ch_node_children_stop(ch_node *n, const char *const *ids, const size_t *id_lens, size_t count,
                          const ch_batch_opts *opts, int *results)
{
    if (!n || (count && !ids)) return -EINVAL;
    return run_batch(n, CH_OP_STOP, count, opts, results, NULL, ids, id_lens, 0);
}

int ch_batch_submit(ch_node *n, uint8_t op, const ch_child_spec *specs, size_t count,
                    const char *const *ids, const size_t *id_lens, uint8_t hops,
                    ch_batch_done on_done, void *ud)
{
    ch_batch_opts o = {.on_done = on_done, .ud = ud};
    return run_batch(n, op, count, &o, NULL, specs, ids, id_lens, hops);
}
