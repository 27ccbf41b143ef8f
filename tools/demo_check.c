/*
 * tools/demo_check.c - the verdict of `corehub demo` (see demo.h): the nodes' own checks
 * judge every state once the senders stopped, and the report says what happened.
 *
 * check-seq runs on node 0 until it passes or late updates had time to land; when it
 * fails for good, every seq process is asked for its count, to tell lost updates from
 * doubled ones. check-blobs, placement (on the node that joined) and every node's
 * process count run at once. The report goes to stdout.
 */
#include "demo.h"

#include "cli.h"

#include <corehub/corehub.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double mb(uint64_t bytes)
{
    return (double)bytes / 1e6;
}

static double secs(uint64_t ns)
{
    return (double)ns / 1e9;
}

static double per_s(uint64_t count, uint64_t ns)
{
    return ns ? (double)count * 1e9 / (double)ns : 0.0;
}

/* ---- checks ---------------------------------------------------------------------------- */

/* A check command's answer: `ok COUNT`, or `bad B of COUNT missing M errors E ...` and
 * the first problems, one per line. */
static void read_check(check_result *r, const dc_call *call)
{
    unsigned long long bad = 0, count = 0, missing = 0, errors = 0;
    *r = (check_result){.ran = true};
    const char *t = call->text ? call->text : "";
    if (call->rc < 0) {
        r->errors = 1;
        snprintf(r->first, sizeof(r->first), "%s", ch_strerror(call->rc));
        return;
    }
    r->ok = call->status == 0 && strncmp(t, "ok ", 3) == 0;
    if (sscanf(t, "bad %llu of %llu missing %llu errors %llu", &bad, &count, &missing, &errors) ==
        4) {
        r->bad = bad;
        r->missing = missing;
        r->errors = errors;
    }
    const char *second = strchr(t, '\n');
    if (!r->ok)
        snprintf(r->first, sizeof(r->first), "%.*s",
                 (int)strcspn(second && second[1] ? second + 1 : t, "\n"),
                 second && second[1] ? second + 1 : t);
}

/* check-seq until it passes or the late updates had time to land; the last answer. */
static int check_seq(demo *d, uint64_t dl)
{
    char want[24];
    snprintf(want, sizeof(want), "%" PRIu64, d->want);
    uint64_t give_up = cli_now_ns() + LATE_UPDATES_MS * 1000000ull;
    for (;;) {
        dc_call call = {.node = 0, .argv = {"check-seq", SEQ_PREFIX, d->procs_s, want}};
        int rc = dc_call_run(&d->cl, &call, 1, dl);
        if (rc < 0) return rc;
        read_check(&d->seq, &call);
        const char *v = call.text ? strstr(call.text, " violations ") : NULL;
        unsigned long long violations = 0;
        if (v && sscanf(v, " violations %llu", &violations) == 1) d->violations = violations;
        dc_call_free(&call, 1);
        if (d->seq.ok || cli_now_ns() > give_up) return 0;
        if ((rc = dc_sleep(&d->cl, POLL_MS * 2, dl)) < 0) return rc;
    }
}

/* One seq process's `get` answer added to the loss counts. */
static void count_seq_answer(demo *d, int status, const char *text)
{
    unsigned long long total = 0, violations = 0;
    if (status == 3) { /* not found: every update it should have had is lost */
        d->lost += (int64_t)d->want;
    } else if (status == 0 && text &&
               sscanf(text, "total=%llu violations=%llu", &total, &violations) == 2) {
        if (total < d->want) d->lost += (int64_t)(d->want - total);
        if (total > d->want) d->doubled += (int64_t)(total - d->want);
    }
}

/*
 * After a failed check-seq: asks every seq process for its count, one control call each
 * (seconds for 100 000), to tell lost updates from doubled ones. Runs on this thread with
 * a look at signals and deaths every 1024 calls; stops at the deadline (lost and doubled
 * then stay unknown).
 */
static int scan_seq(demo *d, uint64_t dl)
{
    ch_ctl *ctl = NULL;
    d->lost = d->doubled = 0;
    demo_phase_begin(d, "scan", "procs", d->opt.procs);
    int rc = ch_ctl_open(d->cl.nodes[0].addr, NULL, d->cl.cookie, d->cl.cookie_len, 10000, &ctl);
    for (uint64_t i = 0; rc == 0 && i < d->opt.procs; i++) {
        if (i % 1024 == 0 && ((rc = dc_sleep(&d->cl, 0, dl)) < 0 || cli_now_ns() > dl)) break;
        char id[32];
        snprintf(id, sizeof(id), SEQ_PREFIX "%" PRIu64, i);
        const char *argv[] = {"call", id, "get"};
        int status = 0;
        char *text = NULL;
        rc = ch_ctl_exec(ctl, 3, argv, &status, &text);
        if (rc == 0) count_seq_answer(d, status, text);
        free(text);
        d->scanned = i + 1;
        d->pg_done = i + 1;
    }
    ch_ctl_close(ctl);
    demo_phase_end(d, d->scanned);
    if (d->scanned < d->opt.procs) d->lost = d->doubled = -1;
    return rc == DC_EINTR || rc == DC_EDIED ? rc : 0;
}

/* "misplaced M missing X errors E of COUNT", added to the sums. */
static void read_placement(demo *d, const dc_call *call)
{
    unsigned long long misplaced = 0, missing = 0, errors = 0;
    if (call->rc < 0 || !call->text ||
        sscanf(call->text, "misplaced %llu missing %llu errors %llu", &misplaced, &missing,
               &errors) != 3) {
        d->place_errors++;
        return;
    }
    d->misplaced += misplaced;
    d->unplaced += missing;
    d->place_errors += errors;
}

/*
 * The blobs' contents (on node 0), placement (on the node that joined: its registry is the
 * one rebuilt from the others'), and how many processes each node runs, at once. Placement
 * looks every id up one by one (tens of microseconds each), so it runs on one node only;
 * the instance counts of every node add up to the total only if each process runs once.
 */
static int check_rest(demo *d, uint64_t dl)
{
    dc_call calls[DC_MAX_NODES + 3];
    int n = 0, blob_call = -1;
    if (d->opt.blobs) {
        blob_call = n;
        calls[n++] =
            (dc_call){.node = 0, .argv = {"check-blobs", BLOB_PREFIX, d->blobs_s, d->state_s}};
        calls[n++] = (dc_call){.node = d->joiner, .argv = {"placement", BLOB_PREFIX, d->blobs_s}};
    }
    calls[n++] = (dc_call){.node = d->joiner, .argv = {"placement", SEQ_PREFIX, d->procs_s}};
    for (int i = 0; i < d->cl.nnodes; i++)
        if (dc_running(&d->cl, i)) calls[n++] = (dc_call){.node = i, .argv = {"stats"}};
    int rc = dc_call_run(&d->cl, calls, n, dl);
    for (int k = 0; rc == 0 && k < n; k++) {
        if (k == blob_call) {
            read_check(&d->blob, &calls[k]);
        } else if (strcmp(calls[k].argv[0], "placement") == 0) {
            read_placement(d, &calls[k]);
        } else {
            node_stats s = {0};
            if (calls[k].rc == 0) demo_parse_stats(calls[k].text, &s);
            d->instances += s.processes;
            d->crash_restarts += s.crash_restarts;
            d->migration_failures += s.migration_failures;
        }
    }
    dc_call_free(calls, n);
    return rc;
}

int demo_check_all(demo *d)
{
    uint64_t dl = demo_deadline(d);
    demo_phase_begin(d, "check", "procs", d->total);
    int rc = check_seq(d, dl);
    if (rc == 0) rc = check_rest(d, dl);
    demo_phase_end(d, rc == 0 ? d->total : 0);
    if (rc < 0) return rc;
    if (!d->seq.ok) rc = scan_seq(d, dl);
    if (!d->seq.ok) demo_fail(d, "seq processes: %s", d->seq.first);
    if (d->blob.ran && !d->blob.ok) demo_fail(d, "blobs: %s", d->blob.first);
    if (d->misplaced || d->unplaced || d->place_errors)
        demo_fail(d, "placement: %" PRIu64 " misplaced, %" PRIu64 " missing, %" PRIu64 " errors",
                  d->misplaced, d->unplaced, d->place_errors);
    if (d->instances != d->total)
        demo_fail(d, "the nodes run %" PRIu64 " processes, not %" PRIu64, d->instances, d->total);
    return rc;
}

/* ---- report -------------------------------------------------------------------------- */

void demo_print_plan(const demo *d)
{
    printf("corehub demo: %u nodes on 127.0.0.1 (%u core%s each), %" PRIu64 " seq processes",
           d->opt.nodes, d->opt.cores, d->opt.cores == 1 ? "" : "s", d->opt.procs);
    if (d->opt.blobs)
        printf(" + %" PRIu64 " blobs of %" PRIu64 " bytes", d->opt.blobs, d->opt.state_bytes);
    printf(", %u senders", d->opt.senders);
    if (d->opt.rate)
        printf(" at %" PRIu64 " updates/s each\n", d->opt.rate);
    else
        printf(", unpaced\n");
    fflush(stdout);
}

static void print_move(const char *name, const move_result *m)
{
    const char *ge = m->partial ? ">= " : "";
    printf("  %-9s moved %" PRIu64 " processes in %.2f s (%.0f/s), %s%.1f MB raw, %s%.1f MB on "
           "the wire%s\n",
           name, m->moved, secs(m->ns), per_s(m->moved, m->ns), ge, mb(m->bytes_raw), ge,
           mb(m->bytes_wire), m->partial ? " (the leaving node's last sample)" : "");
}

static void print_loss(const demo *d)
{
    if (d->seq.ok) {
        printf("  lost updates = 0, doubled = 0, order violations = 0 (%" PRIu64
               " seq processes, %" PRIu64 " updates each)\n",
               d->opt.procs, d->want);
        return;
    }
    if (d->lost >= 0)
        printf("  lost updates = %" PRId64 ", doubled = %" PRId64 ", order violations = %" PRIu64
               "\n",
               d->lost, d->doubled, d->violations);
    else
        printf("  lost updates = ?, doubled = ? (scanned %" PRIu64 " of %" PRIu64
               "), order violations = %" PRIu64 "\n",
               d->scanned, d->opt.procs, d->violations);
    printf("  seq check: %" PRIu64 " processes wrong, %" PRIu64 " missing; first: %s\n", d->seq.bad,
           d->seq.missing, d->seq.first);
}

void demo_report(const demo *d)
{
    printf("\ncorehub demo report\n");
    print_move("join", &d->join);
    print_move("leave", &d->leave);
    printf("  pause     p50 %.1f ms, p99 %.1f ms per moved process (freeze to confirmation; "
           "worst node, within 1/32)\n",
           (double)d->pause_p50 / 1e3, (double)d->pause_p99 / 1e3);
    printf("  updates   %" PRIu64 " sent by %u senders in %.1f s (%.0f/s), %" PRIu64 " failed\n",
           d->sent, d->opt.senders, secs(d->pump_ns), per_s(d->sent, d->pump_ns), d->send_failed);
    print_loss(d);
    if (d->blob.ran)
        printf("  states    %" PRIu64 " blobs of %" PRIu64 " bytes: %s\n", d->opt.blobs,
               d->opt.state_bytes, d->blob.ok ? "all intact" : d->blob.first);
    printf("  placement %" PRIu64 " misplaced, %" PRIu64 " missing; %" PRIu64
           " processes running on %d nodes (%" PRIu64 " expected), %" PRIu64
           " restarted from spec, %" PRIu64 " failed moves\n",
           d->misplaced, d->unplaced, d->instances, demo_running_nodes(d), d->total,
           d->crash_restarts, d->migration_failures);
    if (d->failure[0])
        printf("  result    FAILED: %s\n", d->failure);
    else
        printf("  result    OK: nothing lost, nothing doubled, every state intact\n");
    fflush(stdout);
}
