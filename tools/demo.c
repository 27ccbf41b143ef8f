/*
 * tools/demo.c - `corehub demo`: a local cluster that moves its processes under load and
 * proves that nothing was lost.
 *
 * The demo starts --nodes `corehub node` processes on 127.0.0.1 (demo_cluster.h: kernel-
 * chosen ports, a private cookie, logs in a temporary directory), starts --procs seq
 * processes (seq.h: per-sender order checkers) and --blobs blobs of --state-bytes each,
 * and keeps --senders pumps (pump.h) updating every seq process, each from a node that
 * stays. Under that load a node joins and the hub settles, then another node leaves
 * gracefully (`ctl leave`; it must exit 0 having moved everything) and the hub settles
 * again. Then the senders stop after a whole round, and the nodes' own checks judge every
 * state: each seq process must have received exactly the sum of the pumps' rounds with no
 * order violation (nothing lost, doubled or reordered), each blob must hold its content,
 * and every process must sit on its ring owner, once.
 *
 * Everything goes through the control channel, as an operator's tools would. The main
 * thread sequences the phases; every wait has a deadline (--timeout), watches for Ctrl-C
 * and for a node that dies, and keeps the progress line going. This file runs the phases;
 * demo_opts.c reads the command line; demo_check.c judges the outcome and writes the
 * report (stdout); the exit code is 0 only when every check passed.
 */
#include "demo.h"

#include "cli.h"

#include <corehub/corehub.h>

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PUMP_ROUNDS      "1000000000" /* until told to stop */
#define SAMPLE_MS        10           /* between looks at a leaving node */
#define SAMPLE_CALL_MS   1000         /* a leaving node's stats may never come */
#define EXIT_INTERRUPTED 128          /* plus the signal's number, as a shell reports it */

/* ---- small helpers ------------------------------------------------------------------- */

uint64_t demo_deadline(const demo *d)
{
    return cli_now_ns() + d->opt.timeout_s * 1000000000ull;
}

void demo_fail(demo *d, const char *fmt, ...)
{
    if (d->failure[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->failure, sizeof(d->failure), fmt, ap);
    va_end(ap);
}

static void tick(void *ud)
{
    demo *d = ud;
    d->pg.next_check = 0; /* read the clock now: the hook runs a few times a second */
    progress_tick(&d->pg, d->pg_done);
}

void demo_phase_begin(demo *d, const char *name, const char *unit, uint64_t total)
{
    d->pg_done = 0;
    d->pg_open = true;
    progress_begin(&d->pg, name, unit, total);
}

void demo_phase_end(demo *d, uint64_t done)
{
    d->pg_done = done;
    d->pg_open = false;
    progress_end(&d->pg, done);
}

/* ---- reading the nodes -------------------------------------------------------------- */

void demo_parse_stats(const char *text, node_stats *s)
{
    static const struct {
        const char *key;
        size_t off;
    } keys[] = {
        {"processes", offsetof(node_stats, processes)},
        {"migrating", offsetof(node_stats, migrating)},
        {"migrated_out", offsetof(node_stats, migrated_out)},
        {"migrated_in", offsetof(node_stats, migrated_in)},
        {"migration_failures", offsetof(node_stats, migration_failures)},
        {"crash_restarts", offsetof(node_stats, crash_restarts)},
        {"handover_bytes_raw", offsetof(node_stats, bytes_raw)},
        {"handover_bytes_wire", offsetof(node_stats, bytes_wire)},
        {"pause_p50_us", offsetof(node_stats, pause_p50)},
        {"pause_p99_us", offsetof(node_stats, pause_p99)},
    };
    memset(s, 0, sizeof(*s));
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        dc_text_u64(text, keys[i].key, (uint64_t *)((char *)s + keys[i].off));
}

/* One command on every running node at once; calls[i] is node i's (node -1: not run). */
static int run_on_all(demo *d, dc_call *calls, const char *const *argv, uint64_t dl)
{
    dc_call run[DC_MAX_NODES];
    int n = 0;
    for (int i = 0; i < d->cl.nnodes; i++) {
        calls[i] = (dc_call){.node = -1};
        if (!dc_running(&d->cl, i)) continue;
        run[n] = (dc_call){.node = i};
        for (int k = 0; argv[k] && k < DC_MAX_ARGS - 1; k++)
            run[n].argv[k] = argv[k];
        n++;
    }
    int rc = dc_call_run(&d->cl, run, n, dl);
    for (int k = 0; rc == 0 && k < n; k++)
        if (run[k].rc < 0 || run[k].status != 0) {
            snprintf(d->cl.error, sizeof(d->cl.error), "node %d: %s: %s", run[k].node, argv[0],
                     run[k].rc < 0 ? ch_strerror(run[k].rc)
                     : run[k].text ? run[k].text
                                   : "");
            rc = -EPROTO;
        }
    if (rc < 0) {
        dc_call_free(run, n);
        return rc;
    }
    for (int k = 0; k < n; k++)
        calls[run[k].node] = run[k]; /* the caller frees the answers */
    return 0;
}

/* `stats` of every running node; s[i] is node i's (zeros for the others). */
static int poll_stats(demo *d, node_stats *s, uint64_t dl)
{
    static const char *const argv[] = {"stats", NULL};
    dc_call calls[DC_MAX_NODES];
    memset(s, 0, sizeof(*s) * DC_MAX_NODES);
    int rc = run_on_all(d, calls, argv, dl);
    if (rc < 0) return rc;
    for (int i = 0; i < d->cl.nnodes; i++)
        if (calls[i].node >= 0) demo_parse_stats(calls[i].text, &s[i]);
    for (int i = 0; i < d->cl.nnodes; i++)
        if (calls[i].node >= 0) dc_call_free(&calls[i], 1);
    return 0;
}

/* Processes that arrived on the running nodes since the move began (d->base). */
static uint64_t moved_in(const demo *d, const node_stats *now)
{
    uint64_t moved = 0;
    for (int i = 0; i < d->cl.nnodes; i++)
        if (dc_running(&d->cl, i)) moved += now[i].migrated_in - d->base[i].migrated_in;
    return moved;
}

/* Sleeps ms as dc_sleep does. While a move is traced (--svg), it looks at the nodes every
 * SAMPLE_MS meanwhile: a join lasts a few of the waits' polls, too few points for a line. */
static int nap(demo *d, unsigned ms, uint64_t dl)
{
    uint64_t end = cli_now_ns() + ms * 1000000ull;
    while (d->trace) {
        node_stats s[DC_MAX_NODES];
        uint64_t now = cli_now_ns();
        if (now >= end) return 0;
        unsigned left = (unsigned)((end - now) / 1000000u);
        int rc = dc_sleep(&d->cl, left < SAMPLE_MS ? left : SAMPLE_MS, dl);
        if (rc == 0) rc = poll_stats(d, s, dl);
        if (rc < 0) return rc;
        demo_svg_point(d, d->trace, moved_in(d, s));
    }
    return dc_sleep(&d->cl, ms, dl);
}

/* How many `members` lines say alive. */
static int count_alive(const char *text)
{
    int alive = 0;
    for (const char *line = text; line && *line;) {
        char state[16] = "";
        if (sscanf(line, "%*s %*s %15s", state) == 1 && strcmp(state, "alive") == 0) alive++;
        line = strchr(line, '\n');
        if (line) line++;
    }
    return alive;
}

int demo_running_nodes(const demo *d)
{
    int n = 0;
    for (int i = 0; i < d->cl.nnodes; i++)
        n += dc_running(&d->cl, i);
    return n;
}

/* Until every running node sees exactly the running nodes alive. */
static int wait_members(demo *d, uint64_t dl)
{
    static const char *const argv[] = {"members", NULL};
    int want = demo_running_nodes(d);
    for (;;) {
        dc_call calls[DC_MAX_NODES];
        int rc = run_on_all(d, calls, argv, dl), agree = 0;
        if (rc < 0) return rc;
        for (int i = 0; i < d->cl.nnodes; i++)
            if (calls[i].node >= 0) {
                agree += count_alive(calls[i].text) == want;
                dc_call_free(&calls[i], 1);
            }
        if (agree == want) return 0;
        if ((rc = nap(d, POLL_MS / 2, dl)) < 0) return rc;
    }
}

/* ---- phases -------------------------------------------------------------------------- */

static int start_nodes(demo *d)
{
    uint64_t dl = demo_deadline(d);
    demo_phase_begin(d, "nodes", "nodes", d->opt.nodes);
    int rc = dc_spawn(&d->cl, NULL, dl);
    if (rc < 0) return rc;
    d->pg_done = 1;
    rc = dc_spawn_many(&d->cl, (int)d->opt.nodes - 1, d->cl.nodes[0].addr, dl);
    if (rc < 0) return rc;
    d->pg_done = d->opt.nodes;
    rc = wait_members(d, dl);
    demo_phase_end(d, d->opt.nodes);
    return rc;
}

/* "started N failed F": whether all N started. */
static bool all_started(const char *text, uint64_t want)
{
    unsigned long long started = 0, failed = 1;
    return text && sscanf(text, "started %llu failed %llu", &started, &failed) == 2 &&
           started == want && failed == 0;
}

static int start_procs(demo *d)
{
    uint64_t dl = demo_deadline(d);
    dc_call calls[2] = {
        {.node = 0, .argv = {"start-many", SEQ_PREFIX, d->procs_s, "seq"}},
        {.node = 1, .argv = {"start-blobs", BLOB_PREFIX, d->blobs_s, d->state_s}},
    };
    int n = d->opt.blobs ? 2 : 1;
    demo_phase_begin(d, "start", "procs", d->total);
    int rc = dc_call_run(&d->cl, calls, n, dl);
    demo_phase_end(d, rc == 0 ? d->total : 0);
    for (int i = 0; rc == 0 && i < n; i++) {
        uint64_t want = i ? d->opt.blobs : d->opt.procs;
        if (calls[i].rc < 0 || calls[i].status != 0 || !all_started(calls[i].text, want)) {
            snprintf(d->cl.error, sizeof(d->cl.error), "%s: %s", calls[i].argv[0],
                     calls[i].rc < 0 ? ch_strerror(calls[i].rc) : calls[i].text);
            rc = -EPROTO;
        }
    }
    dc_call_free(calls, n);
    return rc;
}

static int sender_node(const demo *d, unsigned k)
{
    return (int)(k % (d->opt.nodes - 1)); /* the nodes that stay: 0 .. nodes-2 */
}

/* "pumps P running R rounds X sent S failed F". */
typedef struct pump_view {
    unsigned long long pumps, running, rounds, sent, failed;
} pump_view;

static bool parse_pumps(const char *text, pump_view *v)
{
    return text && sscanf(text, "pumps %llu running %llu rounds %llu sent %llu failed %llu",
                          &v->pumps, &v->running, &v->rounds, &v->sent, &v->failed) == 5;
}

/* `cmd` on every node that runs a sender; for pumps and pump-wait, v[i] gets node i's
 * answer (v NULL: the answer does not matter, pump-stop). */
static int pumps_on_senders(demo *d, const char *cmd, const char *arg, pump_view *v, uint64_t dl)
{
    dc_call calls[MAX_NODES];
    int n = 0;
    for (unsigned k = 0; k < d->opt.senders && k < d->opt.nodes - 1; k++)
        calls[n++] = (dc_call){.node = sender_node(d, k), .argv = {cmd, arg}};
    int rc = dc_call_run(&d->cl, calls, n, dl);
    for (int i = 0; rc == 0 && i < n; i++) {
        pump_view scratch, *out = v ? &v[calls[i].node] : &scratch;
        if (calls[i].rc < 0 || (v && !parse_pumps(calls[i].text, out))) {
            snprintf(d->cl.error, sizeof(d->cl.error), "node %d: %s: %s", calls[i].node, cmd,
                     calls[i].rc < 0 ? ch_strerror(calls[i].rc) : calls[i].text);
            rc = -EPROTO;
        }
    }
    dc_call_free(calls, n);
    return rc;
}

static unsigned pumps_of_node(const demo *d, int node)
{
    unsigned n = 0;
    for (unsigned k = 0; k < d->opt.senders; k++)
        n += sender_node(d, k) == node;
    return n;
}

/* Starts the senders and waits until each sent one whole round. */
static int start_senders(demo *d)
{
    uint64_t dl = demo_deadline(d);
    char ids[MAX_SENDERS][12];
    demo_phase_begin(d, "senders", "senders", d->opt.senders);
    d->pump_t0 = cli_now_ns();
    for (unsigned k = 0; k < d->opt.senders; k++) {
        snprintf(ids[k], sizeof(ids[k]), "%u", k + 1);
        int rc = dc_ctl(&d->cl, sender_node(d, k), dl, NULL, "pump", SEQ_PREFIX, d->procs_s,
                        PUMP_ROUNDS, ids[k], d->round_ms_s, NULL);
        if (rc < 0) return rc;
    }
    for (;;) {
        pump_view v[DC_MAX_NODES];
        int rc = pumps_on_senders(d, "pumps", NULL, v, dl);
        if (rc < 0) return rc;
        unsigned ready = 0;
        for (int i = 0; i < (int)d->opt.nodes - 1; i++)
            if (pumps_of_node(d, i) && v[i].rounds >= pumps_of_node(d, i))
                ready += pumps_of_node(d, i);
        d->pg_done = ready;
        if (ready == d->opt.senders) break;
        if ((rc = dc_sleep(&d->cl, POLL_MS / 2, dl)) < 0) return rc;
    }
    demo_phase_end(d, d->opt.senders);
    return 0;
}

/* The senders alone for --hold seconds: the hub under load, before and after a change. */
static int hold(demo *d)
{
    if (!d->opt.hold_s) return 0;
    uint64_t dl = demo_deadline(d), end = cli_now_ns() + d->opt.hold_s * 1000000000ull;
    demo_phase_begin(d, "load", "updates", d->opt.senders * d->opt.rate * d->opt.hold_s);
    for (uint64_t first = UINT64_MAX; cli_now_ns() < end;) {
        pump_view v[DC_MAX_NODES];
        int rc = pumps_on_senders(d, "pumps", NULL, v, dl);
        if (rc < 0) return rc;
        uint64_t sent = 0;
        for (int i = 0; i < (int)d->opt.nodes - 1; i++)
            sent += pumps_of_node(d, i) ? v[i].sent : 0;
        if (first == UINT64_MAX) first = sent;
        d->pg_done = sent - first;
        if (!d->opt.rate) d->pg.total = d->pg_done;
        uint64_t left_ms = (end - cli_now_ns()) / 1000000u;
        if ((rc = dc_sleep(&d->cl, left_ms < POLL_MS ? (unsigned)left_ms : POLL_MS, dl)) < 0)
            return rc;
    }
    demo_phase_end(d, d->pg_done);
    return 0;
}

/* Whether two polls saw the same processes and moves on every node. */
static bool same_moves(const node_stats *a, const node_stats *b, int n)
{
    for (int i = 0; i < n; i++)
        if (a[i].processes != b[i].processes || a[i].migrated_in != b[i].migrated_in ||
            a[i].migrated_out != b[i].migrated_out)
            return false;
    return true;
}

/*
 * Until the hub is at rest: no node has a process on its way, the nodes hold every
 * process once between them (their counts add up), and two polls in a row saw the same.
 * *quiet_at gets the time of the first of those polls. With a joiner, the joiner must
 * have received some (a ring change takes a moment to start the moves); the final checks
 * then prove that each process sits on its ring owner.
 */
static int wait_settled(demo *d, int joiner, node_stats *now, uint64_t *quiet_at, uint64_t dl)
{
    node_stats prev[DC_MAX_NODES];
    bool prev_quiet = false;
    int n = d->cl.nnodes;
    for (;;) {
        uint64_t t = cli_now_ns(), sum = 0, migrating = 0;
        int rc = poll_stats(d, now, dl);
        if (rc < 0) return rc;
        for (int i = 0; i < n; i++) {
            sum += now[i].processes;
            migrating += now[i].migrating;
        }
        uint64_t moved = moved_in(d, now);
        if (d->trace) demo_svg_point(d, d->trace, moved);
        if (joiner >= 0) {
            d->pg_done = moved;
            d->pg.total = moved + migrating;
        }
        bool started = joiner < 0 || now[joiner].migrated_in > 0 || d->total < 100;
        bool quiet = migrating == 0 && sum == d->total && started;
        if (quiet && prev_quiet && same_moves(prev, now, n)) return 0;
        if (quiet && !(prev_quiet && same_moves(prev, now, n))) *quiet_at = t;
        prev_quiet = quiet;
        memcpy(prev, now, sizeof(prev));
        if ((rc = nap(d, POLL_MS, dl)) < 0) return rc;
    }
}

static void note_pause(demo *d, const node_stats *s)
{
    if (s->pause_p50 > d->pause_p50) d->pause_p50 = s->pause_p50;
    if (s->pause_p99 > d->pause_p99) d->pause_p99 = s->pause_p99;
}

static int join_node(demo *d)
{
    uint64_t dl = demo_deadline(d), quiet_at = 0;
    node_stats now[DC_MAX_NODES];
    int rc = poll_stats(d, d->base, dl);
    if (rc < 0) return rc;
    demo_phase_begin(d, "join", "procs", d->total / (d->opt.nodes + 1));
    if ((rc = demo_svg_begin(d, &d->svg_join, -1, dl)) < 0) return rc;
    uint64_t t0 = cli_now_ns();
    if ((rc = dc_spawn(&d->cl, d->cl.nodes[0].addr, dl)) < 0) return rc;
    d->joiner = rc;
    d->base[d->joiner] = (node_stats){0};
    d->trace = d->svg ? &d->svg_join : NULL;
    if ((rc = wait_members(d, dl)) < 0) return rc;
    if ((rc = wait_settled(d, d->joiner, now, &quiet_at, dl)) < 0) return rc;
    d->trace = NULL;
    if ((rc = demo_svg_end(d, &d->svg_join, true, dl)) < 0) return rc;
    for (int i = 0; i < d->cl.nnodes; i++) {
        d->join.moved += now[i].migrated_in - d->base[i].migrated_in;
        d->join.bytes_raw += now[i].bytes_raw - d->base[i].bytes_raw;
        d->join.bytes_wire += now[i].bytes_wire - d->base[i].bytes_wire;
        if (i != d->joiner) note_pause(d, &now[i]);
    }
    d->join.ns = quiet_at - t0;
    demo_phase_end(d, d->join.moved);
    return 0;
}

/* The `left: moved N processes, F not moved` line of the leaving node's log. */
static void read_left_line(demo *d, const dc_node *n)
{
    d->left_moved = d->left_not_moved = -1;
    FILE *f = fopen(n->log, "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof(line), f)) {
        const char *at = strstr(line, "left: moved ");
        if (at)
            sscanf(at, "left: moved %ld processes, %ld not moved", &d->left_moved,
                   &d->left_not_moved);
    }
    fclose(f);
}

/*
 * Samples the leaving node until it exits: its counters vanish with it, so its last
 * answer is what the report can tell of its bytes and pauses. Once a sample shows every
 * process moved and none on its way, it is final: then only the exit is awaited.
 */
static int follow_leave(demo *d, node_stats *last, uint64_t dl)
{
    int L = d->leaver;
    bool final = false;
    for (;;) {
        if (!final) {
            dc_call calls[2] = {
                {.node = L, .argv = {"stats"}, .timeout_ms = SAMPLE_CALL_MS},
                {.node = L, .argv = {"metrics"}, .timeout_ms = SAMPLE_CALL_MS},
            };
            int n = d->svg ? 2 : 1; /* --svg: its pauses too, for any look may be the last */
            int rc = dc_call_run(&d->cl, calls, n, dl);
            if (rc < 0) return rc;
            if (calls[0].rc == 0 && calls[0].status == 0) demo_parse_stats(calls[0].text, last);
            if (n == 2) demo_svg_pauses(d, &calls[1]);
            dc_call_free(calls, n);
            d->pg_done = last->migrated_out - d->base[L].migrated_out;
            demo_svg_point(d, &d->svg_leave, d->pg_done);
            final = d->pg_done >= d->base[L].processes && last->migrating == 0;
        }
        int rc = dc_wait_exit(&d->cl, L, SAMPLE_MS, dl, &d->leave_code);
        if (rc != 0) return rc < 0 ? rc : 0;
    }
}

static int leave_node(demo *d)
{
    uint64_t dl = demo_deadline(d), quiet_at = 0;
    node_stats last, now[DC_MAX_NODES];
    int L = d->leaver = (int)d->opt.nodes - 1, rc = poll_stats(d, d->base, dl);
    if (rc < 0) return rc;
    last = d->base[L];
    demo_phase_begin(d, "leave", "procs", d->base[L].processes);
    dc_expect_exit(&d->cl, L);
    if ((rc = demo_svg_begin(d, &d->svg_leave, L, dl)) < 0) return rc;
    uint64_t t0 = cli_now_ns();
    if ((rc = dc_ctl(&d->cl, L, dl, NULL, "leave", NULL)) < 0) return rc;
    if ((rc = follow_leave(d, &last, dl)) < 0) return rc;
    d->leave.ns = cli_now_ns() - t0; /* the node exits once its handover ended */
    read_left_line(d, &d->cl.nodes[L]);
    uint64_t sampled = last.migrated_out - d->base[L].migrated_out;
    d->leave.moved = d->left_moved >= 0 ? (uint64_t)d->left_moved : sampled;
    d->leave.bytes_raw = last.bytes_raw - d->base[L].bytes_raw;
    d->leave.bytes_wire = last.bytes_wire - d->base[L].bytes_wire;
    d->leave.partial = sampled != d->leave.moved;
    demo_svg_point(d, &d->svg_leave, d->leave.moved); /* by its exit, per its `left:` line */
    demo_svg_end(d, &d->svg_leave, false, dl);        /* from its last look: it is gone */
    note_pause(d, &last);
    if (d->leave_code != 0)
        demo_fail(d, "the leaving node exited with status %d (0: everything moved)", d->leave_code);
    if (d->left_not_moved != 0)
        demo_fail(d, "the leaving node reports %ld processes not moved", d->left_not_moved);
    d->pg_done = d->leave.moved;
    if ((rc = wait_members(d, dl)) < 0) return rc;
    if ((rc = wait_settled(d, -1, now, &quiet_at, dl)) < 0) return rc;
    demo_phase_end(d, d->leave.moved);
    return 0;
}

/* Stops the senders after their round; d->want becomes what each seq process got. */
static int stop_senders(demo *d)
{
    uint64_t dl = demo_deadline(d);
    char wait_ms[24];
    pump_view v[DC_MAX_NODES] = {0};
    demo_phase_begin(d, "stop", "senders", d->opt.senders);
    int rc = pumps_on_senders(d, "pumps", NULL, v, dl);
    for (int i = 0; rc == 0 && i < (int)d->opt.nodes - 1; i++)
        if (v[i].running != pumps_of_node(d, i))
            demo_fail(d, "node %d: %llu of its %u senders stopped early", i,
                      pumps_of_node(d, i) - v[i].running, pumps_of_node(d, i));
    if (rc == 0) rc = pumps_on_senders(d, "pump-stop", NULL, NULL, dl);
    snprintf(wait_ms, sizeof(wait_ms), "%" PRIu64, d->opt.timeout_s * 1000);
    if (rc == 0) rc = pumps_on_senders(d, "pump-wait", wait_ms, v, dl);
    if (rc < 0) return rc;
    d->pump_ns = cli_now_ns() - d->pump_t0;
    for (int i = 0; i < (int)d->opt.nodes - 1; i++) {
        if (v[i].running) demo_fail(d, "node %d: %llu senders did not stop", i, v[i].running);
        if (v[i].sent != v[i].rounds * d->opt.procs)
            demo_fail(d, "node %d: senders sent %llu, not whole rounds", i, v[i].sent);
        d->rounds += v[i].rounds;
        d->sent += v[i].sent;
        d->send_failed += v[i].failed;
    }
    if (d->send_failed) demo_fail(d, "%" PRIu64 " updates could not be sent", d->send_failed);
    d->want = d->rounds; /* each round of each sender updates every process once */
    demo_phase_end(d, d->opt.senders);
    return 0;
}

/* ---- the program ---------------------------------------------------------------------- */

static void prepare(demo *d)
{
    const demo_opts *o = &d->opt;
    d->total = o->procs + o->blobs;
    d->joiner = d->leaver = -1;
    snprintf(d->procs_s, sizeof(d->procs_s), "%" PRIu64, o->procs);
    snprintf(d->blobs_s, sizeof(d->blobs_s), "%" PRIu64, o->blobs);
    snprintf(d->state_s, sizeof(d->state_s), "%" PRIu64, o->state_bytes);
    /* A round updates every process once; at R updates/s it lasts procs / R seconds. */
    uint64_t round_ms = o->rate ? o->procs * 1000 / o->rate : 0;
    snprintf(d->round_ms_s, sizeof(d->round_ms_s), "%" PRIu64, o->rate && !round_ms ? 1 : round_ms);
    snprintf(d->cores_s, sizeof(d->cores_s), "%u", o->cores);
    const char *args[] = {"--cores", d->cores_s, "--strategy", "hotswap", "--handover"};
    for (size_t i = 0; i < sizeof(args) / sizeof(args[0]); i++)
        d->cl.node_args[d->cl.nnode_args++] = args[i];
    if (o->codec) {
        d->cl.node_args[d->cl.nnode_args++] = "--codec";
        d->cl.node_args[d->cl.nnode_args++] = o->codec;
    }
    d->cl.tick = tick;
    d->cl.tick_ud = d;
}

static int run(demo *d)
{
    int (*const phases[])(demo *) = {start_nodes,  start_procs,   start_senders, hold,
                                     join_node,    hold,          leave_node,    hold,
                                     stop_senders, demo_check_all};
    for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
        int rc = phases[i](d);
        if (rc < 0) {
            if (d->pg_open) progress_end(&d->pg, d->pg_done);
            return rc;
        }
    }
    return 0;
}

int cmd_demo(int argc, char **argv)
{
    static demo d; /* large; and the progress hook holds on to it */
    memset(&d, 0, sizeof(d));
    int rc = demo_parse_opts(argc, argv, &d.opt);
    if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
    if ((rc = demo_svg_open(&d)) < 0) {
        fprintf(stderr, "corehub demo: --svg %s: %s\n", d.opt.svg, strerror(-rc));
        return CLI_FAIL;
    }
    rc = dc_open(&d.cl);
    if (rc < 0) {
        fprintf(stderr, "corehub demo: cannot set up: %s\n", ch_strerror(rc));
        dc_close(&d.cl, false, false);
        demo_svg_write(&d);
        return CLI_FAIL;
    }
    prepare(&d);
    demo_print_plan(&d);
    rc = run(&d);
    int svg_rc = demo_svg_write(&d); /* what it saw, also of a demo that failed */
    if (rc < 0)
        fprintf(stderr, "corehub demo: %s: %s\n", d.pg.phase ? d.pg.phase : "setup",
                d.cl.error[0] ? d.cl.error : ch_strerror(rc));
    else
        demo_report(&d);
    if (svg_rc < 0) fprintf(stderr, "corehub demo: --svg %s: %s\n", d.opt.svg, strerror(-svg_rc));
    if (svg_rc == 0 && rc == 0 && d.opt.svg) printf("  charts    %s\n", d.opt.svg);
    bool failed = rc < 0 || d.failure[0];
    dc_close(&d.cl, d.opt.keep, failed && rc != DC_EINTR);
    if (rc == DC_EINTR) return EXIT_INTERRUPTED + d.cl.signo;
    return failed || svg_rc < 0 ? CLI_FAIL : CLI_OK;
}
