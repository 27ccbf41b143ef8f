/*
 * core/supervisor.c - process lifecycle on the owner reactor (see supervisor.h).
 *
 * Everything here runs on one reactor thread and touches only that reactor's data; the
 * only shared objects are batches and queries, whose slots each core writes disjointly
 * before it signals completion with an atomic.
 */
#include "supervisor.h"

#include "log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Counters have a single writer (this reactor): a plain load and store, no locked add. */
static void count(_Atomic uint64_t *c, int64_t d)
{
    uint64_t v = atomic_load_explicit(c, memory_order_relaxed);
    atomic_store_explicit(c, v + (uint64_t)d, memory_order_relaxed);
}

static void hook_proc(ch_reactor *r, ch_hook_point point, ch_proc *p, ch_reason reason)
{
    ch_hooks *h = &r->node->hooks;
    if (r->node->up) { /* the hub's registry follows every local change */
        if (point == CH_HOOK_REGISTRY_REMOVE)
            r->node->up->reg_remove(r, p);
        else
            r->node->up->reg_insert(r, p);
    }
    if (!ch_hooks_any(h, point)) return;
    ch_hook_event ev = {.point = point,
                        .id = ch_spec_id(p->spec),
                        .id_len = p->spec->id_len,
                        .core = r->core,
                        .incarnation = p->incarnation,
                        .reason = reason};
    ch_hooks_run(h, &ev);
}

/* ---- timers and pending calls -------------------------------------------------------- */

static void unlink_timer(ch_reactor *r, ch_proc *p, uint32_t slot)
{
    uint32_t *at = &p->timers;
    while (*at != CH_TIMER_NONE && *at != slot)
        at = &r->timers.slots[*at].next;
    if (*at == slot) *at = r->timers.slots[slot].next;
}

/* Drops every timer and pending call of p: they die with the incarnation. */
static void drop_timers(ch_reactor *r, ch_proc *p)
{
    while (p->timers != CH_TIMER_NONE) {
        ch_timer *e = &r->timers.slots[p->timers];
        p->timers = e->next;
        free(e->b);
        ch_timers_free(&r->timers, e);
    }
    for (uint32_t i = 0; p->pending_calls && i < r->timers.nslots; i++) {
        ch_timer *e = &r->timers.slots[i];
        if ((e->gen & 1) && e->kind == CH_TK_CALL_PROC && e->a == p) {
            ch_timers_free(&r->timers, e);
            p->pending_calls--;
        }
    }
}

uint64_t ch_sup_pending(ch_reactor *r, uint32_t kind, void *a, void *b, uint64_t c,
                        uint32_t timeout_ms)
{
    if (!timeout_ms) timeout_ms = r->node->cfg.call_timeout_ms;
    ch_timer *e;
    uint64_t id = ch_timers_add(&r->timers, ch_now_ns() + (uint64_t)timeout_ms * 1000000, &e);
    if (!id) return 0;
    e->kind = kind;
    e->a = a;
    e->b = b;
    e->c = c;
    return id;
}

uint64_t ch_sup_pending_foreign(ch_reactor *r, ch_fcall *c)
{
    return ch_sup_pending(r, CH_TK_CALL_FOREIGN, NULL, c, 0, c->timeout_ms);
}

int ch_sup_call(ch_reactor *r, uint32_t kind, void *a, void *b, uint64_t c, uint32_t timeout_ms,
                const char *id, size_t id_len, const void *req, size_t len)
{
    ch_node *n = r->node;
    uint64_t hash = ch_id_hash(id, id_len);
    uint64_t pid = ch_sup_pending(r, kind, a, b, c, timeout_ms);
    if (!pid) return -ENOMEM;
    ch_rec h = {.op = CH_OP_CALL,
                .id_len = (uint8_t)id_len,
                .len = (uint32_t)len,
                .src_core = (uint16_t)r->core,
                .ref = pid,
                .aux = hash};
    unsigned dst = ch_route_msg(n, hash, &h.pad2);
    int rc = ch_reactor_post(n, dst, &h, id, req, true);
    if (rc < 0) ch_timers_free(&r->timers, ch_timers_get(&r->timers, pid));
    return rc < 0 ? rc : 0;
}

void ch_sup_complete_call(ch_reactor *r, ch_timer *e, int status, const void *data, size_t len)
{
    uint32_t kind = e->kind, elen = e->len;
    void *a = e->a, *b = e->b;
    uint64_t c = e->c;
    ch_timers_free(&r->timers, e); /* before user code, which may add timers */
    if (kind == CH_TK_CALL_PROC) {
        ch_proc *p = a;
        p->pending_calls--;
        if (p->mig) return; /* frozen: it runs nothing more here */
        ch_msg m = {.kind = CH_MSG_REPLY, .data = data, .len = len, .ref = c, .status = status};
        ch_sup_deliver(r, p, &m, 0, 0);
    } else if (kind == CH_TK_CALL_FN) {
        ch_reply_fn fn = (ch_reply_fn)(uintptr_t)a;
        fn(b, status, data, len);
    } else if (kind == CH_TK_CALL_FOREIGN) {
        ch_fcall_complete(b, status, data, len);
    } else if (kind == CH_TK_RELAY) {
        r->node->up->relay_done(r, (uint64_t)(uintptr_t)b, (uint16_t)elen, c, status, data, len);
    } else if (kind == CH_TK_MIGREPLY) {
        r->node->up->ho_reply_done(r, (uint64_t)(uintptr_t)b, (uint16_t)elen, c, status, data, len);
    } else if (kind == CH_TK_REMOTE) {
        r->node->up->remote_batch_done(r, a, status ? status : -ETIMEDOUT, NULL, 0);
    }
}

uint64_t ch_sup_timer_fn(ch_reactor *r, uint32_t delay_ms, ch_timer_fn fn, uint64_t arg)
{
    ch_timer *e;
    uint64_t id = ch_timers_add(&r->timers, ch_now_ns() + (uint64_t)delay_ms * 1000000, &e);
    if (!id) return 0;
    e->kind = CH_TK_FN;
    e->a = (void *)(uintptr_t)fn;
    e->c = arg;
    return id;
}

static void fire_proc_timer(ch_reactor *r, ch_timer *e)
{
    ch_proc *p = e->a;
    uint32_t slot = (uint32_t)(e - r->timers.slots);
    uint64_t id = ch_timers_id(&r->timers, e);
    void *data = e->b;
    size_t len = e->len;
    unlink_timer(r, p, slot);
    ch_timers_free(&r->timers, e);
    ch_msg m = {.kind = CH_MSG_TIMER, .data = data, .len = len, .ref = id};
    ch_sup_deliver(r, p, &m, 0, 0);
    free(data);
}

unsigned ch_sup_fire_timers(ch_reactor *r, uint64_t now)
{
    unsigned n = 0;
    ch_timer *e;
    while (n < r->node->cfg.batch && (e = ch_timers_expired(&r->timers, now))) {
        if (e->kind == CH_TK_PROC) {
            fire_proc_timer(r, e);
        } else if (e->kind == CH_TK_FN) {
            ch_timer_fn fn = (ch_timer_fn)(uintptr_t)e->a;
            uint64_t arg = e->c;
            ch_timers_free(&r->timers, e);
            fn(r, arg);
        } else {
            ch_sup_complete_call(r, e, -ETIMEDOUT, NULL, 0);
        }
        n++;
    }
    return n;
}

/* ---- lifecycle ---------------------------------------------------------------------- */

static int run_init(ch_proc *p, unsigned flags)
{
    const ch_process_type *t = &p->spec->type->cb;
    if (!t->init) return 0;
    return t->init(p, ch_spec_arg(p->spec), p->spec->arg_len, flags);
}

static void run_terminate(ch_reactor *r, ch_proc *p, ch_reason reason)
{
    const ch_process_type *t = &p->spec->type->cb;
    bool ran = p->mig && r->node->up->ho_terminated(p); /* a ColdSwap move already ran it */
    if (t->terminate && !ran) {
        uint64_t t0 = ch_now_ns();
        t->terminate(p, reason);
        uint64_t budget = (uint64_t)p->spec->shutdown_ms * 1000000;
        if (ch_now_ns() - t0 > budget) {
            count(&r->stats.slow_terminates, 1);
            CH_WARN("terminate of %.*s overran its %u ms budget", p->spec->id_len,
                    ch_spec_id(p->spec), p->spec->shutdown_ms);
        }
    }
    drop_timers(r, p);
    ch_proc_state_clear(p);
}

static void remove_proc(ch_reactor *r, ch_proc *p, ch_reason reason)
{
    if (p->mig) r->node->up->ho_proc_gone(r, p);
    ch_ptable_remove(&r->procs, p);
    hook_proc(r, CH_HOOK_REGISTRY_REMOVE, p, reason);
    count(&r->stats.processes, -1);
    count(&r->stats.stopped, 1);
    free(p->spec);
    free(p);
}

static bool wants_restart(const ch_proc *p, ch_reason reason)
{
    switch (p->spec->restart) {
    case CH_PERMANENT:
        return true;
    case CH_TRANSIENT:
        return reason == CH_REASON_CRASH;
    default:
        return false;
    }
}

/* One more restart on this core within the intensity window? Records it if so. */
static bool intensity_allows(ch_reactor *r)
{
    uint32_t max = r->node->cfg.restart_intensity;
    if (!max) return false;
    uint64_t now = ch_now_ns(), period = (uint64_t)r->node->cfg.restart_period_ms * 1000000;
    uint64_t oldest = r->restarts[r->restart_pos];
    if (oldest && now - oldest < period) return false;
    r->restarts[r->restart_pos] = now;
    r->restart_pos = (r->restart_pos + 1) % max;
    return true;
}

/* p ended (exit or crash): restart it by its policy, or remove it. */
static void ended(ch_reactor *r, ch_proc *p, ch_reason reason)
{
    run_terminate(r, p, reason);
    while (wants_restart(p, reason)) {
        if (!intensity_allows(r)) {
            count(&r->stats.intensity_exceeded, 1);
            CH_ERROR("%.*s not restarted: more than %u restarts in %u ms on core %u",
                     p->spec->id_len, ch_spec_id(p->spec), r->node->cfg.restart_intensity,
                     r->node->cfg.restart_period_ms, r->core);
            break;
        }
        p->incarnation++;
        count(&r->stats.restarts, 1);
        int rc = run_init(p, CH_INIT_RESTART);
        if (rc == 0) {
            hook_proc(r, CH_HOOK_PROCESS_RESTARTED, p, reason);
            return;
        }
        CH_WARN("%.*s failed to restart: %s", p->spec->id_len, ch_spec_id(p->spec),
                ch_strerror(rc));
        count(&r->stats.crashes, 1);
        drop_timers(r, p);
        ch_proc_state_clear(p);
        reason = CH_REASON_CRASH;
    }
    remove_proc(r, p, reason);
}

static void stop_proc(ch_reactor *r, ch_proc *p, ch_reason reason)
{
    run_terminate(r, p, reason);
    remove_proc(r, p, reason);
}

static int default_handle(ch_proc *p, const ch_msg *m)
{
    if (m->kind == CH_MSG_CALL) ch_reply(p, m, NULL, 0);
    return CH_CONTINUE;
}

/* Hot path: one message into one process. */
void ch_sup_deliver(ch_reactor *r, ch_proc *p, const ch_msg *m, unsigned core, uint64_t ref)
{
    struct ch_dispatch d = {.msg = m, .core = core, .ref = ref};
    struct ch_dispatch *prev = r->cur;
    r->cur = &d;
    const ch_process_type *t = &p->spec->type->cb;
    int rc = t->handle ? t->handle(p, m) : default_handle(p, m);
    r->cur = prev;
    count(&r->stats.messages, 1);
    if (m->kind == CH_MSG_CALL && !d.answered)
        ch_reactor_reply(r, core, ref, rc < 0 ? CH_ECRASHED : -ENODATA, NULL, 0);
    if (rc == CH_CONTINUE) return;
    if (rc < 0) {
        count(&r->stats.crashes, 1);
        CH_WARN("%.*s crashed: %s", p->spec->id_len, ch_spec_id(p->spec), ch_strerror(rc));
    }
    ended(r, p, rc < 0 ? CH_REASON_CRASH : CH_REASON_NORMAL);
}

/* Creates a process from spec (taken) and runs its init, then alter with the handed-over
 * bytes when given: 0 with *out, CH_ESTOPPED, CH_EALREADY, -ENOMEM or CH_EINIT (the spec
 * is freed on every error). */
static int create(ch_reactor *r, ch_spec *spec, uint32_t incarnation, unsigned flags,
                  ch_alter_fn alter, const void *state, size_t len, ch_proc **out)
{
    int rc = r->shut ? CH_ESTOPPED : CH_EALREADY;
    ch_proc *p = NULL;
    if (r->shut || ch_ptable_find(&r->procs, spec->hash, ch_spec_id(spec), spec->id_len)) goto fail;
    rc = -ENOMEM;
    if (!(p = calloc(1, sizeof(*p)))) goto fail;
    *p = (ch_proc){.hash = spec->hash,
                   .spec = spec,
                   .r = r,
                   .timers = CH_TIMER_NONE,
                   .incarnation = incarnation};
    if (ch_ptable_insert(&r->procs, p) < 0) goto fail;
    rc = run_init(p, flags);
    if (rc == 0 && alter) rc = alter(p, state, len);
    if (rc != 0) {
        CH_DEBUG("%.*s refused to start: %s", spec->id_len, ch_spec_id(spec), ch_strerror(rc));
        drop_timers(r, p);
        ch_proc_state_clear(p);
        ch_ptable_remove(&r->procs, p);
        rc = CH_EINIT;
        goto fail;
    }
    count(&r->stats.processes, 1);
    hook_proc(r, CH_HOOK_REGISTRY_INSERT, p, CH_REASON_NORMAL);
    *out = p;
    return 0;
fail:
    free(p);
    free(spec);
    return rc;
}

int ch_sup_start(ch_reactor *r, ch_spec *spec)
{
    ch_proc *p;
    int rc = create(r, spec, 0, 0, NULL, NULL, 0, &p);
    if (rc == 0) count(&r->stats.started, 1);
    return rc;
}

void ch_sup_start_batch(ch_reactor *r, ch_batch *b, const uint32_t *idx, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        ch_spec *spec = b->specs[idx[i]];
        b->specs[idx[i]] = NULL;
        b->results[idx[i]] = ch_sup_start(r, spec);
        if (b->crash && b->results[idx[i]] == 0) {
            count(&r->stats.crash_restarts, 1);
            CH_DEBUG("crash restart of %.*s", (int)spec->id_len, ch_spec_id(spec)); /* its own */
        }
    }
    ch_batch_core_done(b);
}

void ch_sup_stop_batch(ch_reactor *r, ch_batch *b, const uint32_t *idx, size_t n)
{
    ch_spec **keys = b->rolling_back ? b->keys : b->specs;
    int *results = b->rolling_back ? b->scratch : b->results;
    for (size_t i = 0; i < n; i++) {
        const ch_spec *k = keys[idx[i]];
        ch_proc *p = r->shut ? NULL : ch_ptable_find(&r->procs, k->hash, ch_spec_id(k), k->id_len);
        results[idx[i]] = p ? 0 : (r->shut ? CH_ESTOPPED : CH_ENOPROC);
        if (p) stop_proc(r, p, CH_REASON_STOPPED);
    }
    ch_batch_core_done(b);
}

/* ---- migration (migration/handover.c) ------------------------------------------------- */

void ch_sup_freeze(ch_reactor *r, ch_proc *p)
{
    drop_timers(r, p); /* a frozen process runs nothing; its timers die with the instance */
}

void ch_sup_terminate(ch_reactor *r, ch_proc *p, ch_reason reason)
{
    run_terminate(r, p, reason);
}

void ch_sup_migrated(ch_reactor *r, ch_proc *p, bool terminated)
{
    if (!terminated) run_terminate(r, p, CH_REASON_MIGRATED);
    /* The row follows the process rather than vanishing: were the target to die before its
     * own row reached the hub, no one would know to restart it (a crash of the target). */
    uint64_t node;
    uint16_t core;
    const ch_upcalls *up = r->node->up;
    bool moved = up && p->mig && up->ho_target(p, &node, &core) && node != r->node->id;
    if (p->mig) up->ho_proc_gone(r, p);
    ch_ptable_remove(&r->procs, p);
    if (moved) up->reg_moved(r, p, node, core);
    hook_proc(r, CH_HOOK_REGISTRY_REMOVE, p, CH_REASON_MIGRATED);
    count(&r->stats.processes, -1);
    free(p->spec);
    free(p);
}

int ch_sup_reinit(ch_reactor *r, ch_proc *p)
{
    int rc = run_init(p, CH_INIT_RESTART);
    if (rc == 0) return 0;
    CH_WARN("%.*s failed to start again after a failed move: %s", p->spec->id_len,
            ch_spec_id(p->spec), ch_strerror(rc));
    drop_timers(r, p);
    ch_proc_state_clear(p);
    remove_proc(r, p, CH_REASON_CRASH);
    return CH_EINIT;
}

int ch_sup_install(ch_reactor *r, ch_spec *spec, uint32_t incarnation, ch_alter_fn alter,
                   const void *state, size_t len, ch_proc **out)
{
    return create(r, spec, incarnation, CH_INIT_MIGRATED, alter, state, len, out);
}

static void stop_all(ch_reactor *r)
{
    ch_ptable *t = &r->procs;
    /* Removal shifts later entries back into slot i, so look at slot i again. */
    for (size_t i = 0; i < t->cap; i++)
        while (t->slots[i].p)
            stop_proc(r, t->slots[i].p, CH_REASON_SHUTDOWN);
}

static void fail_pending_calls(ch_reactor *r)
{
    for (uint32_t i = 0; i < r->timers.nslots; i++) {
        ch_timer *e = &r->timers.slots[i];
        if (!(e->gen & 1) || e->kind == CH_TK_PROC) continue;
        if (e->kind == CH_TK_FN)
            ch_timers_free(&r->timers, e);
        else
            ch_sup_complete_call(r, e, CH_ESTOPPED, NULL, 0);
    }
}

void ch_sup_shutdown(ch_reactor *r)
{
    if (r->shut) return;
    stop_all(r);
    r->shut = true;
    fail_pending_calls(r);
    ch_node_shut_ack(r->node);
}

void ch_sup_list(ch_reactor *r, const char *tag, ch_proc_list *list)
{
    ch_ptable *t = &r->procs;
    if (r->shut || !t->count) return;
    list->items = calloc(t->count, sizeof(*list->items));
    if (!list->items) return;
    for (size_t i = 0; i < t->cap; i++) {
        ch_proc *p = t->slots[i].p;
        if (!p || (tag && strcmp(tag, ch_spec_tag(p->spec)) != 0)) continue;
        ch_proc_info *info = ch_info_new(p);
        if (info) list->items[list->count++] = info;
    }
}
