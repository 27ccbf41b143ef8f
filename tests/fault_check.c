/*
 * tests/fault_check.c - the fault suite's invariants, checked once the hub has healed (see
 * fault.h).
 *
 * Each invariant prints one verdict line with its numbers, and for a failure the first few
 * ids with what is wrong and where they live, so that a failing schedule says what to look
 * for in which node's log. The state checks ask every process itself (one `call ID get`
 * each over one control connection): check-seq and check-blobs only show five problems,
 * and each problem must be weighed against the faults that could explain it.
 *
 * The seq witness (tools/seq.c) counts the messages it got and the ones that broke a
 * sender's order. A state that a crash reset starts counting again from the next message,
 * which looks like a gap: only the exposure records can tell a legitimate reset from a
 * loss, so a short or out-of-order seq state passes only when its id was exposed. More
 * messages than were sent is a duplicate, never legitimate.
 */
#define _GNU_SOURCE
#include "fault.h"

#include "blob.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIRST        5     /* problems shown per invariant */
#define SEQ_DRAIN_MS 5000  /* casts sent before pump-wait returned may still be queued */
#define ASK_MS       15000 /* per range: a call to a hung process waits seconds */
#define PUMP_WAIT    "20000"
#define ST_NOT_FOUND 3 /* nodectl's status for a missing process */

typedef struct verdicts {
    int failed;
} verdicts;

static void verdict(fx_hub *x, verdicts *v, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void verdict(fx_hub *x, verdicts *v, bool ok, const char *fmt, ...)
{
    char line[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fx_log(x, "%s %s", ok ? "[ok]  " : "[FAIL]", line);
    v->failed += !ok;
}

/* ---- pumps ------------------------------------------------------------------------------ */

void fx_pumps_stop(fx_hub *x, fx_pumps *p)
{
    *p = (fx_pumps){.ok = true};
    for (int s = 0; s < x->npumps; s++)
        fx_ctl(x, s, NULL, "pump-stop", NULL);
    for (int s = 0; s < x->npumps; s++) {
        char *text = NULL;
        unsigned pumps = 0, running = 0;
        uint64_t rounds = 0, sent = 0, failed = 0;
        int st = fx_ctl(x, s, &text, "pump-wait", PUMP_WAIT, NULL);
        bool parsed =
            st >= 0 && text &&
            sscanf(text, "pumps %u running %u rounds %" SCNu64 " sent %" SCNu64 " failed %" SCNu64,
                   &pumps, &running, &rounds, &sent, &failed) == 5;
        if (!parsed || running) {
            fx_log(x, "  slot %d: pump-wait answered %d: %s", s, st, text ? text : "");
            p->ok = false;
        }
        p->rounds += rounds;
        p->sent += sent;
        p->failed += failed;
        free(text);
    }
    fx_log(x, "pumps stopped: %" PRIu64 " rounds, %" PRIu64 " sent, %" PRIu64 " failed", p->rounds,
           p->sent, p->failed);
}

/* ---- nodes answer ------------------------------------------------------------------------ */

static void check_nodes(fx_hub *x, verdicts *v)
{
    int up = 0, answer = 0;
    for (int k = 0; k < x->nslots; k++) {
        if (!fx_up(x, k)) continue;
        up++;
        int st = fx_ctl(x, k, NULL, "epoch", NULL);
        answer += st == 0;
        if (st != 0) fx_log(x, "  slot %d (pid %d) does not answer: %d", k, x->slot[k].n->pid, st);
    }
    int deaths = harness_check(&x->h);
    verdict(x, v, up == answer && deaths == 0,
            "nodes answer: %d of %d up slots; %d died on their own", answer, up, deaths);
}

/* ---- one instance per id ----------------------------------------------------------------- */

typedef struct instances {
    uint8_t *count;     /* per id (seq ids, then blob ids): nodes holding it */
    int8_t (*where)[2]; /* the first two slots */
} instances;

/* Counts slot k's `procs --local` into in. */
static int count_local(fx_hub *x, int k, instances *in)
{
    char *text = NULL;
    int st = fx_ctl(x, k, &text, "procs", "--local", NULL);
    for (const char *line = st == 0 ? text : NULL; line && *line;) {
        size_t len = strcspn(line, " \n");
        uint64_t i;
        bool known = fx_id_index(line, len, FX_SEQ_PREFIX, x->nseq, &i);
        if (!known && fx_id_index(line, len, FX_BLOB_PREFIX, x->nblob, &i)) {
            i += x->nseq;
            known = true;
        }
        if (known && in->count[i] < 2) in->where[i][in->count[i]] = (int8_t)k;
        if (known && in->count[i] < UINT8_MAX) in->count[i]++;
        line = strchr(line, '\n');
        if (line) line++;
    }
    free(text);
    return st;
}

static void id_name(const fx_hub *x, uint64_t i, char *buf, size_t cap)
{
    if (i < x->nseq)
        snprintf(buf, cap, FX_SEQ_PREFIX "%" PRIu64, i);
    else
        snprintf(buf, cap, FX_BLOB_PREFIX "%" PRIu64, i - x->nseq);
}

static void check_instances(fx_hub *x, verdicts *v, instances *in)
{
    uint64_t n = x->nseq + x->nblob, twice = 0, none = 0;
    int unlisted = 0;
    for (int k = 0; k < x->nslots; k++)
        if (fx_up(x, k) && count_local(x, k, in) != 0) unlisted++;
    for (uint64_t i = 0; i < n; i++) {
        char id[32];
        none += in->count[i] == 0;
        if (in->count[i] < 2) continue;
        if (twice++ < FIRST) {
            id_name(x, i, id, sizeof(id));
            fx_log(x, "  %s lives on %u nodes: slots %d and %d...", id, in->count[i],
                   in->where[i][0], in->where[i][1]);
        }
    }
    verdict(x, v, twice == 0 && unlisted == 0,
            "one instance per id: %" PRIu64 " ids, %" PRIu64 " on two or more nodes, %" PRIu64
            " on none, %d nodes did not list",
            n, twice, none, unlisted);
}

/* ---- placement ---------------------------------------------------------------------------- */

/* Runs `placement PREFIX COUNT` on slot k; adds its problems to *bad. */
static void place_range(fx_hub *x, int k, const char *prefix, uint64_t count, uint64_t *bad)
{
    char cnt[24], *text = NULL;
    snprintf(cnt, sizeof(cnt), "%" PRIu64, count);
    int st = fx_ctl(x, k, &text, "placement", prefix, cnt, NULL);
    uint64_t mis = 0, missing = 0, errors = 0;
    if (st < 0 || !text ||
        sscanf(text, "misplaced %" SCNu64 " missing %" SCNu64 " errors %" SCNu64, &mis, &missing,
               &errors) != 3) {
        fx_log(x, "  slot %d: placement %s answered %d", k, prefix, st);
        (*bad)++;
    } else if (st != 0) {
        fx_log(x, "  slot %d: placement %s: %s", k, prefix, text);
    }
    *bad += mis + missing + errors;
    free(text);
}

static void check_placement(fx_hub *x, verdicts *v)
{
    uint64_t bad = 0;
    int nodes = 0;
    for (int k = 0; k < x->nslots; k++) {
        if (!fx_up(x, k)) continue;
        nodes++;
        place_range(x, k, FX_SEQ_PREFIX, x->nseq, &bad);
        place_range(x, k, FX_BLOB_PREFIX, x->nblob, &bad);
    }
    verdict(x, v, bad == 0,
            "placement: %d nodes' registries, %" PRIu64 " ids, %" PRIu64
            " misplaced, missing or unanswered (summed over nodes)",
            nodes, x->nseq + x->nblob, bad);
}

/* ---- states ------------------------------------------------------------------------------- */

typedef struct tally {
    uint64_t exact, reset, reordered, lost_ids, lost_msgs, doubled, missing, errors;
    unsigned shown;
    const uint8_t *copies; /* per id of the range: nodes holding it (NULL: unknown) */
} tally;

/* Asks each process of a range for its state through one control connection to slot k,
 * giving each answer to judge. */
typedef void (*judge_fn)(fx_hub *x, uint64_t i, int st, const char *text, tally *t, void *ud);

static void ask_each(fx_hub *x, int k, uint64_t from, uint64_t count, judge_fn judge, tally *t,
                     void *ud)
{
    hnode *n = x->slot[k].n;
    ch_ctl *c = NULL;
    uint64_t deadline = th_now_ms() + ASK_MS, unasked = 0;
    for (uint64_t i = from; i < from + count; i++) {
        char id[32], *text = NULL;
        if (th_now_ms() >= deadline) { /* the rest count as unanswered */
            judge(x, i - from, -ETIME, NULL, t, ud);
            unasked++;
            continue;
        }
        int st = 0, rc = c ? 0 : node_ctl_open(n, &c);
        id_name(x, i, id, sizeof(id));
        const char *argv[] = {"call", id, "get"};
        if (rc == 0) rc = ch_ctl_exec(c, 3, argv, &st, &text);
        if (rc < 0) { /* a broken channel: the next id opens another */
            ch_ctl_close(c);
            c = NULL;
            st = rc;
        }
        judge(x, i - from, st, text, t, ud);
        free(text);
    }
    ch_ctl_close(c);
    if (unasked) fx_log(x, "  %" PRIu64 " ids not asked: %d s spent", unasked, ASK_MS / 1000);
}

static bool show(tally *t)
{
    return t->shown++ < FIRST;
}

static void judge_seq(fx_hub *x, uint64_t i, int st, const char *text, tally *t, void *ud)
{
    uint64_t want = *(const uint64_t *)ud, total = 0, violations = 0;
    unsigned senders = 0;
    bool parsed = st == 0 && sscanf(text, "total=%" SCNu64 " violations=%" SCNu64 " senders=%u",
                                    &total, &violations, &senders) == 3;
    const char *what = NULL;
    if (st == ST_NOT_FOUND)
        what = "missing", t->missing++;
    else if (!parsed)
        what = "no answer", t->errors++;
    else if (total == want && violations == 0)
        t->exact++;
    else if (total > want)
        what = "more updates than sent (doubled)", t->doubled++;
    else if (total == want && (x->exposed_seq[i] || x->exposed_all))
        t->reordered++; /* every update, some out of order: not promised across a crash */
    else if (x->exposed_seq[i] || x->exposed_all)
        t->reset++;
    else
        what = "lost or reordered, and no crash-like fault exposed it", t->lost_ids++,
        t->lost_msgs += want - total;
    if (what && show(t))
        fx_log(x,
               "  " FX_SEQ_PREFIX "%" PRIu64 ": %s (total %" PRIu64 " of %" PRIu64
               ", violations %" PRIu64 ", senders %u; status %d; on %d nodes)",
               i, what, total, want, violations, senders, st, t->copies ? t->copies[i] : -1);
}

/* check-seq until it passes or stops changing: casts still queued when pump-wait
 * returned arrive in the meantime. */
static void seq_drained(fx_hub *x, uint64_t want)
{
    char cnt[24], total[24];
    snprintf(cnt, sizeof(cnt), "%" PRIu64, x->nseq);
    snprintf(total, sizeof(total), "%" PRIu64, want);
    uint64_t deadline = th_now_ms() + SEQ_DRAIN_MS;
    while (fx_ctl(x, 0, NULL, "check-seq", FX_SEQ_PREFIX, cnt, total, NULL) != 0 &&
           th_now_ms() < deadline) {
        th_pause_us(200000); /* a poll interval */
    }
}

static void check_seq(fx_hub *x, verdicts *v, const fx_pumps *p, tally *t)
{
    uint64_t want = p->rounds;
    seq_drained(x, want);
    ask_each(x, 0, 0, x->nseq, judge_seq, t, &want);
    bool explained = t->lost_msgs <= p->failed;
    verdict(x, v, t->doubled == 0 && t->missing == 0 && t->errors == 0 && explained,
            "seq updates: %" PRIu64 " ids want %" PRIu64 " each: exact %" PRIu64
            ", reset by a crash-like fault %" PRIu64 ", reordered across one %" PRIu64
            ", lost %" PRIu64 " ids (%" PRIu64 " msgs; pumps reported %" PRIu64
            " failed sends), doubled %" PRIu64 ", missing %" PRIu64 ", no answer %" PRIu64,
            x->nseq, want, t->exact, t->reset, t->reordered, t->lost_ids, t->lost_msgs, p->failed,
            t->doubled, t->missing, t->errors);
}

static void judge_blob(fx_hub *x, uint64_t i, int st, const char *text, tally *t, void *ud)
{
    unsigned char *want = ud;
    char id[32];
    snprintf(id, sizeof(id), FX_BLOB_PREFIX "%" PRIu64, i);
    blob_content(id, strlen(id), want, FX_BLOB_SIZE);
    size_t len = text ? strlen(text) : 0; /* the content, then the newline `call` adds */
    bool exact = st == 0 && len == FX_BLOB_SIZE + 1 && memcmp(text, want, FX_BLOB_SIZE) == 0;
    const char *what = NULL;
    if (st == ST_NOT_FOUND)
        what = "missing", t->missing++;
    else if (st != 0)
        what = "no answer", t->errors++;
    else if (exact)
        t->exact++;
    else if (x->exposed_blob[i] || x->exposed_all)
        t->reset++;
    else
        what = "content changed, and no crash-like fault exposed it", t->lost_ids++;
    if (what && show(t))
        fx_log(x, "  %s: %s (%zu bytes; status %d; on %d nodes)", id, what, len ? len - 1 : 0, st,
               t->copies ? t->copies[i] : -1);
}

static void check_blobs(fx_hub *x, verdicts *v, tally *t)
{
    unsigned char want[FX_BLOB_SIZE];
    ask_each(x, 0, x->nseq, x->nblob, judge_blob, t, want);
    verdict(x, v, t->lost_ids == 0 && t->missing == 0 && t->errors == 0,
            "blob states: %" PRIu64 " ids: exact %" PRIu64 ", reset by a crash-like fault %" PRIu64
            ", changed unexposed %" PRIu64 ", missing %" PRIu64 ", no answer %" PRIu64,
            x->nblob, t->exact, t->reset, t->lost_ids, t->missing, t->errors);
}

/* ---- crash restarts, leaves ------------------------------------------------------------ */

static void check_restarts(fx_hub *x, verdicts *v, uint64_t resets)
{
    uint64_t restarts = x->restarts_of_dead;
    for (int k = 0; k < x->nslots; k++) {
        char *text = NULL;
        if (fx_up(x, k) && fx_ctl(x, k, &text, "stats", NULL) == 0)
            restarts += fx_stat(text, "crash_restarts");
        free(text);
    }
    if (x->exposed_all) { /* casts that went to the other side's copies count as "reset" */
        verdict(x, v, true,
                "crash restarts cover resets: not judged after a partition (%" PRIu64
                " ids short, %" PRIu64 " crash restarts)",
                resets, restarts);
        return;
    }
    verdict(x, v, resets <= restarts,
            "crash restarts cover resets: %" PRIu64 " ids reset, %" PRIu64
            " crash restarts counted (%" PRIu64 " by nodes since killed)",
            resets, restarts, x->restarts_of_dead);
}

int fx_check(fx_hub *x, const fx_pumps *p, bool settled, const char *settle_why)
{
    verdicts v = {0};
    verdict(x, &v, settled, "hub settled%s%s", settled ? "" : ": ", settled ? "" : settle_why);
    verdict(x, &v, p->ok, "pumps ended and answered");
    check_nodes(x, &v);
    instances in = {calloc(x->nseq + x->nblob, 1), calloc(x->nseq + x->nblob, 2)};
    bool listed = in.count && in.where;
    if (listed) check_instances(x, &v, &in);
    check_placement(x, &v);
    tally ts = {.copies = listed ? in.count : NULL};
    tally tb = {.copies = listed ? in.count + x->nseq : NULL};
    check_seq(x, &v, p, &ts);
    check_blobs(x, &v, &tb);
    free(in.count);
    free(in.where);
    check_restarts(x, &v, ts.reset + tb.reset);
    verdict(x, &v, x->leave_failures == 0 && x->drain_failures == 0,
            "planned leaves and drains complete: %d of %d leaves, %d of %d drains",
            x->leaves - x->leave_failures, x->leaves, x->drains - x->drain_failures, x->drains);
    return v.failed;
}
