/*
 * tools/demo.c - `corehub demo`: the local demonstration and self-check of a node.
 *
 * Creates one node on every core (or --cores), registers the counter type, starts --procs
 * counters in batches with ch_start_children, sends --msgs casts of +1 to every counter
 * with ch_send, then reads every count back with ch_call. The counts are a checksum of
 * delivery: one that is not exactly --msgs means an update was lost or applied twice, and
 * the demo exits non-zero. It uses the public API only, as an application would.
 * Later issues grow it into the multi-node demo of design.md §5 (join, leave, handover).
 */
#include "cli.h"
#include "counter.h"
#include "progress.h"

#include <corehub/corehub.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ID_STRIDE      32             /* "counter-" + up to 20 digits + NUL */
#define RETRY_NS       10000000000ull /* give up on a full mailbox after 10 s */
#define START_TIMEOUT  60000          /* ms per blocking batch; generous for sanitizers */
#define MAX_PROCS      10000000ull    /* ids and latencies take 40 bytes a process */
#define MAX_MISMATCHES 5              /* wrong counts printed one by one */

typedef struct demo_opts {
    uint64_t procs;
    uint64_t msgs;  /* casts per process */
    unsigned cores; /* 0: the node's default, every online CPU */
    uint32_t batch; /* children per ch_start_children call */
} demo_opts;

typedef struct demo {
    demo_opts opt;
    ch_node *node;
    int started;       /* ch_node_start succeeded: stop it at the end */
    char *ids;         /* opt.procs ids, ID_STRIDE bytes each, NUL-terminated */
    uint64_t *call_ns; /* latency of each verification call */
    uint64_t start_ns, send_ns, verify_ns;
    uint64_t start_failed;
    uint64_t send_failed, retries;      /* retries: -EAGAIN answers, retried */
    uint64_t exact, wrong, call_failed; /* verification outcome per process */
    int64_t lost;                       /* updates missing over all counters (< 0: extra) */
    const char *err_what;               /* the first error, for the report */
    int err_code;
} demo;

static void usage(FILE *out)
{
    fprintf(out, "usage: corehub demo [--procs N] [--msgs M] [--cores C] [--batch B]\n"
                 "\n"
                 "Starts N counter processes on a local node, sends each M updates, then\n"
                 "reads every counter back and checks that no update was lost.\n"
                 "\n"
                 "  --procs N   processes to start (default 100000; k and m suffixes work)\n"
                 "  --msgs M    updates sent to each process (default 10)\n"
                 "  --cores C   reactor threads (default: every online CPU)\n"
                 "  --batch B   processes per ch_start_children call (default 10000)\n"
                 "  -h, --help  this text\n"
                 "\n"
                 "Exits 0 when every count is exact, 1 otherwise, 2 on a bad command line.\n");
}

/* Returns CLI_OK, CLI_USAGE, or -1 when --help was shown (nothing left to do). */
static int parse_opts(int argc, char **argv, demo_opts *o)
{
    static const struct option longopts[] = {
        {"procs", required_argument, NULL, 'p'}, {"msgs", required_argument, NULL, 'm'},
        {"cores", required_argument, NULL, 'c'}, {"batch", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},        {NULL, 0, NULL, 0},
    };
    *o = (demo_opts){.procs = 100000, .msgs = 10, .cores = 0, .batch = 10000};
    uint64_t v = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'p':
            if (cli_parse_u64("--procs", optarg, 1, MAX_PROCS, &o->procs)) return CLI_USAGE;
            break;
        case 'm':
            if (cli_parse_u64("--msgs", optarg, 0, 1000000000, &o->msgs)) return CLI_USAGE;
            break;
        case 'c':
            if (cli_parse_u64("--cores", optarg, 1, 1024, &v)) return CLI_USAGE;
            o->cores = (unsigned)v;
            break;
        case 'b':
            if (cli_parse_u64("--batch", optarg, 1, 1000000, &v)) return CLI_USAGE;
            o->batch = (uint32_t)v;
            break;
        case 'h':
            usage(stdout);
            return -1;
        default: /* getopt_long has said what was wrong */
            fprintf(stderr, "Try 'corehub demo --help'.\n");
            return CLI_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "corehub demo: unexpected argument '%s'\n", argv[optind]);
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* Keeps the first error for the report; the later ones are usually its consequences. */
static void note_error(demo *d, const char *what, int code)
{
    if (d->err_what) return;
    d->err_what = what;
    d->err_code = code;
}

static const char *id_of(const demo *d, uint64_t i)
{
    return d->ids + i * ID_STRIDE;
}

static int make_ids(demo *d)
{
    d->ids = malloc(d->opt.procs * ID_STRIDE);
    d->call_ns = calloc(d->opt.procs, sizeof(*d->call_ns));
    if (!d->ids || !d->call_ns) return -ENOMEM;
    for (uint64_t i = 0; i < d->opt.procs; i++)
        snprintf(d->ids + i * ID_STRIDE, ID_STRIDE, "counter-%" PRIu64, i);
    return 0;
}

static int node_open(demo *d)
{
    ch_node_config cfg;
    ch_node_config_init(&cfg);
    cfg.name = "demo";
    if (d->opt.cores) cfg.cores = d->opt.cores;
    int rc = ch_node_create(&cfg, &d->node);
    if (rc < 0) return rc;
    rc = ch_node_register_type(d->node, counter_type());
    if (rc < 0) return rc;
    rc = ch_node_start(d->node);
    d->started = rc == 0;
    return rc;
}

/* -EAGAIN means a full mailbox and nothing queued: wait a little so the reactors drain,
 * yielding first (cheap) and sleeping later (a saturated 2-core machine needs the CPU
 * for the reactors). Returns -1 when the retry budget is spent. */
static int backoff(demo *d, unsigned attempt, uint64_t *deadline)
{
    d->retries++;
    if (attempt == 0)
        *deadline = cli_now_ns() + RETRY_NS;
    else if (cli_now_ns() > *deadline)
        return -1;
    if (attempt < 16) {
        sched_yield();
    } else {
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
    return 0;
}

/* Starts children [first, first + count). Returns 0, or a code that stops the demo. */
static int start_batch(demo *d, uint64_t first, size_t count, ch_child_spec *specs, int *results)
{
    for (size_t i = 0; i < count; i++) {
        specs[i] = (ch_child_spec){.id = id_of(d, first + i), .type = COUNTER_TYPE_NAME};
        results[i] = -ETIMEDOUT; /* what an unfilled slot means after a timeout */
    }
    ch_batch_opts opts = {.timeout_ms = START_TIMEOUT};
    int rc = ch_start_children(d->node, specs, count, &opts, results);
    if (rc != 0 && rc != CH_EPARTIAL && rc != -ETIMEDOUT) return rc;
    for (size_t i = 0; i < count; i++) {
        if (results[i] == 0) continue;
        d->start_failed++;
        note_error(d, "start", results[i]);
    }
    return 0;
}

static int start_all(demo *d)
{
    ch_child_spec *specs = calloc(d->opt.batch, sizeof(*specs));
    int *results = calloc(d->opt.batch, sizeof(*results));
    int rc = (specs && results) ? 0 : -ENOMEM;
    progress pg;
    progress_begin(&pg, "start", "procs", d->opt.procs);
    for (uint64_t done = 0; rc == 0 && done < d->opt.procs;) {
        uint64_t left = d->opt.procs - done;
        size_t n = left < d->opt.batch ? (size_t)left : d->opt.batch;
        rc = start_batch(d, done, n, specs, results);
        done += n;
        progress_tick(&pg, done);
    }
    d->start_ns = progress_end(&pg, d->opt.procs);
    free(specs);
    free(results);
    return rc;
}

/* Hot path of the demo: one cast of +1. */
static void send_one(demo *d, uint64_t i)
{
    unsigned char msg[8];
    uint64_t deadline = 0;
    cli_put_le64(msg, 1);
    for (unsigned attempt = 0;; attempt++) {
        int rc = ch_send(d->node, id_of(d, i), 0, msg, sizeof(msg));
        if (rc == 0) return;
        if (rc == -EAGAIN && backoff(d, attempt, &deadline) == 0) continue;
        d->send_failed++;
        note_error(d, "send", rc);
        return;
    }
}

/* Round after round over every process, so that every core has work all the time. */
static void send_all(demo *d)
{
    progress pg;
    uint64_t done = 0;
    progress_begin(&pg, "send", "msgs", d->opt.procs * d->opt.msgs);
    for (uint64_t m = 0; m < d->opt.msgs; m++) {
        for (uint64_t i = 0; i < d->opt.procs; i++) {
            send_one(d, i);
            progress_tick(&pg, ++done);
        }
    }
    d->send_ns = progress_end(&pg, done);
}

static int call_one(demo *d, uint64_t i, uint64_t *count)
{
    unsigned char reply[8];
    size_t len = 0;
    uint64_t deadline = 0;
    for (unsigned attempt = 0;; attempt++) {
        uint64_t t0 = cli_now_ns();
        int rc = ch_call(d->node, id_of(d, i), 0, "", 0, reply, sizeof(reply), &len, 0);
        d->call_ns[i] = cli_now_ns() - t0;
        if (rc == -EAGAIN && backoff(d, attempt, &deadline) == 0) continue;
        if (rc == 0 && len != sizeof(reply)) rc = -EPROTO;
        if (rc == 0) *count = cli_get_le64(reply);
        return rc;
    }
}

/* Calls come after every cast from this same thread, so each count must be final. */
static void verify_one(demo *d, uint64_t i)
{
    uint64_t count = 0;
    int rc = call_one(d, i, &count);
    if (rc < 0) {
        d->call_failed++;
        note_error(d, "call", rc);
        return;
    }
    if (count == d->opt.msgs) {
        d->exact++;
        return;
    }
    if (d->wrong++ < MAX_MISMATCHES)
        fprintf(stderr, "corehub demo: %s counted %" PRIu64 ", expected %" PRIu64 "\n", id_of(d, i),
                count, d->opt.msgs);
    d->lost += (int64_t)(d->opt.msgs - count);
}

static void verify_all(demo *d)
{
    progress pg;
    progress_begin(&pg, "verify", "calls", d->opt.procs);
    for (uint64_t i = 0; i < d->opt.procs; i++) {
        verify_one(d, i);
        progress_tick(&pg, i + 1);
    }
    d->verify_ns = progress_end(&pg, d->opt.procs);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The p-th percentile (0..100) of sorted values, nearest rank. */
static uint64_t percentile(const uint64_t *sorted, uint64_t n, unsigned p)
{
    uint64_t rank = (n * p + 99) / 100;
    return sorted[rank ? rank - 1 : 0];
}

static double per_s(uint64_t count, uint64_t ns)
{
    return ns ? (double)count * 1e9 / (double)ns : 0.0;
}

static int demo_ok(const demo *d)
{
    return !d->start_failed && !d->send_failed && !d->call_failed && !d->wrong;
}

static void report(demo *d)
{
    uint64_t n = d->opt.procs, msgs = n * d->opt.msgs;
    qsort(d->call_ns, n, sizeof(*d->call_ns), cmp_u64);
    printf("\ncorehub demo: %" PRIu64 " processes on %u cores, %" PRIu64 " updates each\n", n,
           ch_node_cores(d->node), d->opt.msgs);
    printf("  start   %10" PRIu64 " procs  %8.3f s  %12.0f procs/s  (%" PRIu64 " failed)\n", n,
           (double)d->start_ns / 1e9, per_s(n, d->start_ns), d->start_failed);
    printf("  send    %10" PRIu64 " msgs   %8.3f s  %12.0f msgs/s   (%" PRIu64 " failed, %" PRIu64
           " retries)\n",
           msgs, (double)d->send_ns / 1e9, per_s(msgs, d->send_ns), d->send_failed, d->retries);
    printf("  call    %10" PRIu64 " calls  %8.3f s  p50 %.1f us  p99 %.1f us  (%" PRIu64
           " failed)\n",
           n, (double)d->verify_ns / 1e9, (double)percentile(d->call_ns, n, 50) / 1e3,
           (double)percentile(d->call_ns, n, 99) / 1e3, d->call_failed);
    ch_node_stats st;
    if (ch_node_stats_get(d->node, &st) == 0)
        printf("  node    %" PRIu64 " alive, %" PRIu64 " messages handled, %" PRIu64
               " dead letters, %" PRIu64 " crashes, %" PRIu64 " restarts\n",
               st.processes, st.messages, st.dead_letters, st.crashes, st.restarts);
    if (d->err_what) printf("  first error: %s: %s\n", d->err_what, ch_strerror(d->err_code));
    printf("  verified: %s  %" PRIu64 "/%" PRIu64 " exact, %" PRIu64 " wrong, %" PRId64
           " updates lost\n",
           demo_ok(d) ? "OK" : "FAILED", d->exact, n, d->wrong, d->lost);
}

/* Runs the phases; a failure that leaves nothing to verify returns its code. */
static int run(demo *d)
{
    int rc = make_ids(d);
    if (rc < 0) return rc;
    rc = node_open(d);
    if (rc < 0) return rc;
    rc = start_all(d);
    if (rc < 0) return rc;
    send_all(d);
    verify_all(d);
    report(d);
    return 0;
}

int cmd_demo(int argc, char **argv)
{
    demo d = {0};
    int rc = parse_opts(argc, argv, &d.opt);
    if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
    rc = run(&d);
    if (rc < 0) fprintf(stderr, "corehub demo: %s\n", ch_strerror(rc));
    int code = (rc == 0 && demo_ok(&d)) ? CLI_OK : CLI_FAIL;
    int src = d.started ? ch_node_stop(d.node) : 0;
    if (src < 0) fprintf(stderr, "corehub demo: stopping the node: %s\n", ch_strerror(src));
    if (d.node) ch_node_destroy(d.node);
    free(d.ids);
    free(d.call_ns);
    return code;
}
