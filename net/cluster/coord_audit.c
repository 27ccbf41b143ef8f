/*
 * net/cluster/coord_audit.c - the registry's self-audit: a node is the authority on the rows that
 * name it, and checks them against what its cores hold.
 *
 * The registry is replicated by deltas, so a row can outlive its process or a process its
 * row when faults cross: a stop whose REMOVE a peer dropped while this node was dead to it,
 * a row adopted for a restart that never ran, a stale instance stopped on a rejoin after a
 * peer had relabelled its row. Such an id then runs nowhere while every registry says where
 * it runs, and nothing ever restarts it. So, for a while after each change of the ring or
 * a rejoin (a quiet hub pays nothing), once the migration round is over, the coordinator
 * hands each core the ids its rows place there. The core answers with the ids it does not
 * hold, and registers again any process it holds that was not in the list. Each row that
 * still names that core afterwards is dropped (here and at every peer) and its process is
 * restarted from its spec through its ring owner, which refuses it if it runs already: a
 * crash restart, counted as one.
 */
#include "coord_int.h"

#include "core/proc.h"

#define AUDIT_WINDOW_MS 60000u /* audits go on this long after the last membership change */
#define AUDIT_PERIODS   8u     /* probe periods between two audits */

typedef struct audit_job {
    ch_coord *c;
    unsigned core;
    uint32_t gen;
    ch_wbuf ids;       /* u8 length + id, for each row that names this node and core */
    ch_wbuf missing;   /* the core's answer, in the same form */
    size_t registered; /* processes the core registered again */
} audit_job;

static void job_free(audit_job *j)
{
    ch_wbuf_free(&j->ids);
    ch_wbuf_free(&j->missing);
    free(j);
}

/* ---- on the coordinator: the answer -------------------------------------------------- */

/* Drops rows[0..k) here and at every peer, and restarts their processes from copies. */
static void restart_orphans(ch_coord *c, ch_regrow **rows, size_t k)
{
    ch_regrow **copies = malloc((k + 1) * sizeof(*copies));
    size_t n = 0;
    for (size_t i = 0; copies && i < k; i++) {
        ch_regrow *copy = ch_regrow_dup(rows[i]);
        if (!copy) continue; /* the row stays: the next audit tries again */
        copies[n++] = copy;
        coord_reg_drop_own(c, ch_regrow_id(copy), copy->id_len);
    }
    coord_restart_rows(c, copies, n, 0);
    for (size_t i = 0; i < n; i++)
        free(copies[i]);
    free(copies);
}

static void audit_answer(ch_node *node, void *ud)
{
    audit_job *j = ud;
    ch_coord *c = j->c;
    atomic_fetch_sub(&c->audit.pending, 1);
    ch_regrow **rows = malloc((j->missing.len + 1) * sizeof(*rows));
    size_t k = 0;
    ch_rbuf rb;
    ch_rbuf_init(&rb, j->missing.data, j->missing.len);
    while (rows && !c->r->shut && ch_rbuf_left(&rb)) { /* a stopping node restarts nothing */
        ch_span id = ch_rbuf_get_str8(&rb);
        if (!ch_rbuf_ok(&rb)) break;
        ch_regrow *r = ch_regtab_find(&c->reg, ch_id_hash((const char *)id.p, id.len),
                                      (const char *)id.p, id.len);
        if (r && r->node == c->mt.self && r->core == j->core) rows[k++] = r; /* still ours */
    }
    if (k || j->registered)
        CH_WARN("registry audit of core %u: %zu rows named a process not here (restarted "
                "through their owners), %zu processes here had no row (registered again)",
                j->core, k, j->registered);
    if (k) restart_orphans(c, rows, k);
    free(rows);
    job_free(j);
    (void)node;
}

/* ---- on a core ------------------------------------------------------------------------- */

static void answer(ch_node *n, audit_job *j)
{
    ch_post post = {.fn = audit_answer, .ud = j};
    ch_rec h = {.op = CH_OP_POST, .len = sizeof(post)};
    if (ch_reactor_post(n, n->cores, &h, NULL, &post, false) < 0) {
        CH_ERROR("registry audit answer of core %u lost", j->core);
        atomic_fetch_sub(&j->c->audit.pending, 1); /* the next audit asks again */
        job_free(j);
    }
}

static void audit_core(ch_node *n, void *ud)
{
    audit_job *j = ud;
    ch_reactor *r = &n->reactors[j->core];
    ch_rbuf rb;
    ch_rbuf_init(&rb, j->ids.data, j->ids.len);
    while (!r->shut && ch_rbuf_left(&rb)) {
        ch_span id = ch_rbuf_get_str8(&rb);
        if (!ch_rbuf_ok(&rb)) break;
        const char *s = (const char *)id.p;
        ch_proc *p = ch_ptable_find(&r->procs, ch_id_hash(s, id.len), s, id.len);
        if (p)
            p->audit = j->gen;
        else
            ch_wbuf_put_str8(&j->missing, s, id.len);
    }
    for (size_t i = 0; !r->shut && i < r->procs.cap; i++) {
        ch_proc *p = r->procs.slots[i].p;
        if (!p || p->audit == j->gen || p->mig) continue; /* a moving one's row moves with it */
        p->audit = j->gen;
        ch_coord_local_insert(r, p);
        j->registered++;
    }
    if (j->missing.err) ch_wbuf_reset(&j->missing); /* no memory: nothing restarts this time */
    answer(n, j);
}

/* ---- on the coordinator: when and what ----------------------------------------------- */

void coord_audit_dirty(ch_coord *c)
{
    c->audit.dirty_ns = ch_now_ns();
}

static bool due(const ch_coord *c, uint64_t now)
{
    const struct coord_audit *a = &c->audit;
    uint64_t period = AUDIT_PERIODS * ms(c->n->cfg.cluster.probe_interval_ms);
    if (!a->dirty_ns || atomic_load(&a->pending) || c->part.on || c->leaving || c->r->shut)
        return false;
    if (ch_ns_since(now, a->dirty_ns) > ms(AUDIT_WINDOW_MS)) return false;
    if (a->last_ns && ch_ns_since(now, a->last_ns) < period) return false;
    return c->mig.rh && c->mig.unheld && c->mig.end_sent; /* no move half done */
}

static audit_job **make_jobs(ch_coord *c)
{
    unsigned cores = c->n->cores;
    audit_job **jobs = calloc(cores, sizeof(*jobs));
    for (unsigned i = 0; jobs && i < cores; i++) {
        if (!(jobs[i] = calloc(1, sizeof(*jobs[i])))) break;
        *jobs[i] = (audit_job){.c = c, .core = i, .gen = c->audit.gen};
        ch_wbuf_init(&jobs[i]->ids);
        ch_wbuf_init(&jobs[i]->missing);
    }
    for (size_t i = 0; jobs && i < c->reg.cap; i++) {
        const ch_regrow *r = c->reg.slots[i];
        if (r && r->node == c->mt.self && r->core < cores && jobs[r->core])
            ch_wbuf_put_str8(&jobs[r->core]->ids, ch_regrow_id(r), r->id_len);
    }
    return jobs;
}

void coord_audit_tick(ch_coord *c, uint64_t now)
{
    if (!due(c, now)) return;
    c->audit.last_ns = now;
    if (++c->audit.gen == 0) c->audit.gen = 1; /* 0 is every new process's mark */
    audit_job **jobs = make_jobs(c);
    for (unsigned i = 0; i < c->n->cores; i++) {
        audit_job *j = jobs ? jobs[i] : NULL;
        if (!j) continue; /* no memory: that core waits for the next audit */
        if (j->ids.err) {
            job_free(j);
            continue;
        }
        ch_post post = {.fn = audit_core, .ud = j};
        ch_rec h = {.op = CH_OP_POST, .len = sizeof(post)};
        atomic_fetch_add(&c->audit.pending, 1);
        if (ch_reactor_post(c->n, i, &h, NULL, &post, false) < 0) {
            atomic_fetch_sub(&c->audit.pending, 1);
            job_free(j);
        }
    }
    free(jobs);
}
