/*
 * bench/bench_migration.c - whole migrations between two nodes against the raw handover
 * pipelines measured in the same run (design §3 and §6, issue 4).
 *
 * Two nodes, each in an OS process of its own, forked from this program before any node,
 * thread or io_uring exists. The parent never creates a node: it forks two fresh workers
 * for every run, drives them through a SOCK_SEQPACKET socketpair each (one command, one
 * reply), and measures. Every process of the run is of type "mstate": its state is S bytes
 * of JSON-like text (bench_pipe.h's states, zstd-1 ratio about 3.8), deterministic per id,
 * stamped with its index and with the node that started it, and migrates with the default
 * prepare_handover and alter_handover. Scenarios:
 *   join:  node A starts N processes alone; node B joins through A. Timed from B's
 *          ch_node_start until both nodes' `migrating` is 0 and A's `migrated_out` equals
 *          the number of ids B owns on the new ring (about half).
 *   leave: A and B up, each starts the ids it owns (N spread); A calls ch_node_leave.
 *          Timed until B holds all N and counted A's share in `migrated_in`.
 * After each run B checks every state it owns with a cast that compares the whole state
 * with what the id's starting node generated; a process restarted from its spec instead of
 * moved carries the wrong node's stamp and fails the check. Right after each run, with no
 * node left, the raw and zstd-1 pipelines of bench_pipe.h move the same number of states of
 * the same size and content between the same two CPUs over the same kind of link; the table
 * shows the ratio of migration throughput to the better one, against design §6's targets.
 *
 * --veth runs the nodes (and the baselines' two ends) in two network namespaces joined by
 * a veth pair shaped to 1 Gbit/s by tc tbf, to show what compression buys on a slow link;
 * without root or a working `ip netns` it says so and exits 0.
 *
 * --svg FILE draws where the time went (tools/svg.h): the parent samples the moved count
 * at every poll of a run, and each table row's median repetition becomes a line of
 * processes moved over time and a histogram of its source node's pauses.
 *
 * Every wait has a deadline: an engine that never finishes a migration ends the run with
 * the counters it reached, not a hang. This is not a test: it stops at the first failure.
 */
#define _GNU_SOURCE /* setns, CPU_SET */
#include <corehub/corehub.h>

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#ifdef CH_BENCH_COMMAND /* built into the program as `corehub bench migration` (tools/bench.c) */
#define BENCH_NAME "corehub bench migration"
#define BENCH_MAIN bench_migration_main
int bench_migration_main(int argc, char **argv);
#else
#define BENCH_NAME "bench_migration"
#define BENCH_MAIN main
#endif
#include "bench_common.h"
#include "bench_pipe.h"
#include "svg.h"

#define TYPE_NAME     "mstate"
#define STAMP_LEN     16 /* a state starts with {"A":0000000042, (starting node, index) */
#define COOKIE_LEN    32
#define MAX_LIST      8
#define START_BATCH   4096u        /* specs per ch_node_children_start */
#define POLL_MIN_NS   200000u      /* stats poll period while a migration runs: elapsed/200 */
#define POLL_MAX_NS   5000000u     /* within these bounds (error and cost both ~0.5%) */
#define SETUP_MS      180000u      /* node start, process starts, verification: each */
#define SETTLE_MS     10000u       /* counters agree after the timed part */
#define QUIT_MS       10000u       /* a worker exits within this, else SIGKILL */
#define DEFAULT_CAP   (2ull << 30) /* bytes of state per run: larger combinations are skipped */
#define BASE_ONE_PASS (64.0 * (1 << 20)) /* state bytes above which one baseline pass will do */
#define VETH_NET      "10.201.0."
#define LOOPBACK      "127.0.0.1"
#define SC_JOIN       0
#define SC_LEAVE      1
#define SC_COUNT      2
#define NODE_A        0
#define NODE_B        1

static const char *const scenario_name[SC_COUNT] = {"join", "leave"};

/* ---- parameters ---------------------------------------------------------------------- */

typedef struct params {
    unsigned reps;
    size_t ns[MAX_LIST], sizes[MAX_LIST];
    unsigned n_ns, n_sizes;
    const char *codecs[MAX_LIST];
    unsigned n_codecs;
    unsigned scenarios;                 /* bit SC_*: run it */
    unsigned cores;                     /* reactors per node */
    bool pin_nodes;                     /* node A's process on SENDER_CPU, B's on RECVER_CPU */
    uint64_t max_bytes;                 /* N * S above this: skipped */
    uint32_t timeout_s;                 /* a migration's deadline; 0: from its bytes */
    size_t batch_bytes, inflight_bytes; /* 0: the node's defaults */
    bool veth;
    bool baselines_only; /* no nodes: the pipelines over N/2 states (to check a link) */
    bool no_lanes;       /* handover frames through the coordinators, not on data lanes */
    const char *rate;    /* --veth: tc rate */
    const char *svg;     /* --svg: the charts' file; NULL: none */
} params;

static void usage(FILE *f)
{
    fputs("usage: " BENCH_NAME " [--quick] [--reps R] [--n LIST] [--sizes LIST]\n"
          "         [--codecs LIST] [--scenarios join,leave] [--cores C] [--no-pin]\n"
          "         [--max-bytes B] [--timeout S] [--batch B] [--inflight B]\n"
          "         [--veth [--rate RATE]] [--baselines-only] [--no-lanes] [--svg FILE]\n"
          "  --n LIST        processes per run (default 10000,100000,1000000; k and m suffixes)\n"
          "  --sizes LIST    state bytes (default 100,4096,65536; K, M suffixes are binary;\n"
          "                  at least 16)\n"
          "  --codecs LIST   migration codecs, one row each (default auto; none, zstd:1, ...)\n"
          "  --scenarios L   join, leave or both (default both)\n"
          "  --reps R        repetitions: medians with min and max (default 3)\n"
          "  --quick         smoke run: N 10000, sizes 100 and 4096, 1 repetition\n"
          "  --cores C       reactors per node (default 1)\n"
          "  --no-pin        do not confine node A to CPU 0 and node B to CPU 1 (never\n"
          "                  confined with --cores above 1)\n"
          "  --max-bytes B   skip combinations with more than B bytes of state (default 2G)\n"
          "  --timeout S     seconds a migration may take (default 20, + 1 per 20 MB of state\n"
          "                  and per 20000 processes)\n"
          "  --batch B       migration batch_bytes, and the baselines' batch (default: the\n"
          "                  node's, 256K)\n"
          "  --inflight B    migration inflight_bytes (default: the node's, 1M)\n"
          "  --veth          the two nodes in two network namespaces joined by a veth pair\n"
          "                  shaped by tc tbf (root and `ip` needed, else skipped with exit 0)\n"
          "  --rate RATE     --veth: the link's rate in tc syntax (default 1gbit)\n"
          "  --baselines-only  no nodes: only the two pipelines over N/2 states each\n"
          "  --no-lanes      handover frames through the coordinators, not on the cores' data\n"
          "                  lanes (the path before lanes, to compare)\n"
          "  --svg FILE      also draw processes moved over time and the pause distribution\n"
          "                  of every table row (its median repetition) into FILE, plain SVG\n",
          f);
}

/* A count or a byte size with an optional suffix: k, m, g times `unit`, unit^2, unit^3. */
static bool parse_scaled(const char *s, uint64_t unit, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *s == '-') return false;
    uint64_t mul = 1;
    switch (*end) {
    case 'g':
    case 'G':
        mul *= unit; /* fall through */
    case 'm':
    case 'M':
        mul *= unit; /* fall through */
    case 'k':
    case 'K':
        mul *= unit;
        end++;
        break;
    default:
        break;
    }
    if (*end || (mul > 1 && v > UINT64_MAX / mul)) return false;
    *out = v * mul;
    return true;
}

static void parse_list(const char *opt, const char *s, uint64_t unit, uint64_t min, size_t *out,
                       unsigned *n)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "%s", s);
    *n = 0;
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        if (*n == MAX_LIST) die("%s: at most %d values", opt, MAX_LIST);
        if (!parse_scaled(t, unit, &v) || v < min || v > UINT32_MAX)
            die("%s: '%s' is not a number from %llu up", opt, t, (unsigned long long)min);
        out[(*n)++] = (size_t)v;
    }
    if (!*n) die("%s: empty list", opt);
}

/* Splits the codec list in place (argv outlives the run). */
static void parse_codecs(char *s, params *p)
{
    p->n_codecs = 0;
    for (char *save, *t = strtok_r(s, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (p->n_codecs == MAX_LIST) die("--codecs: at most %d values", MAX_LIST);
        if (strncmp(t, "auto", 4) && strncmp(t, "none", 4) && strncmp(t, "zstd", 4))
            die("--codecs: '%s' is not auto, none, zstd[:LEVEL] or auto:LEVEL", t);
        p->codecs[p->n_codecs++] = t;
    }
    if (!p->n_codecs) die("--codecs: empty list");
}

static unsigned parse_scenarios(const char *s)
{
    unsigned mask = 0;
    char buf[64];
    snprintf(buf, sizeof(buf), "%s", s);
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = 0;
        while (k < SC_COUNT && strcmp(t, scenario_name[k]))
            k++;
        if (k == SC_COUNT) die("--scenarios: unknown scenario '%s' (join, leave)", t);
        mask |= 1u << k;
    }
    return mask;
}

static uint64_t parse_one(const char *opt, const char *s, uint64_t unit, uint64_t min, uint64_t max)
{
    uint64_t v;
    if (!parse_scaled(s, unit, &v) || v < min || v > max) die("%s: bad value '%s'", opt, s);
    return v;
}

static void parse_args(int argc, char **argv, params *p)
{
    bool quick = false, reps_set = false, n_set = false, sizes_set = false;
    *p = (params){.reps = 3,
                  .scenarios = 3,
                  .cores = 1,
                  .pin_nodes = true,
                  .max_bytes = DEFAULT_CAP,
                  .rate = "1gbit"};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--quick")) {
            quick = true;
        } else if (!strcmp(a, "--veth")) {
            p->veth = true;
        } else if (!strcmp(a, "--no-pin")) {
            p->pin_nodes = false;
        } else if (!strcmp(a, "--baselines-only")) {
            p->baselines_only = true;
        } else if (!strcmp(a, "--no-lanes")) {
            p->no_lanes = true;
        } else if (!v) {
            usage(stderr);
            exit(2);
        } else if (++i, !strcmp(a, "--reps")) {
            p->reps = (unsigned)parse_one(a, v, 1000, 1, MAX_REPS);
            reps_set = true;
        } else if (!strcmp(a, "--n")) {
            parse_list(a, v, 1000, 1, p->ns, &p->n_ns);
            n_set = true;
        } else if (!strcmp(a, "--sizes")) {
            parse_list(a, v, 1024, STAMP_LEN, p->sizes, &p->n_sizes);
            sizes_set = true;
        } else if (!strcmp(a, "--codecs")) {
            parse_codecs(argv[i], p);
        } else if (!strcmp(a, "--scenarios")) {
            p->scenarios = parse_scenarios(v);
        } else if (!strcmp(a, "--cores")) {
            p->cores = (unsigned)parse_one(a, v, 1000, 1, 64);
        } else if (!strcmp(a, "--max-bytes")) {
            p->max_bytes = parse_one(a, v, 1024, 1, UINT64_MAX);
        } else if (!strcmp(a, "--timeout")) {
            p->timeout_s = (uint32_t)parse_one(a, v, 1000, 1, 86400);
        } else if (!strcmp(a, "--batch")) {
            p->batch_bytes = parse_one(a, v, 1024, 64 << 10, 1 << 20);
        } else if (!strcmp(a, "--inflight")) {
            p->inflight_bytes = parse_one(a, v, 1024, 64 << 10, 1ull << 32);
        } else if (!strcmp(a, "--rate")) {
            p->rate = v;
        } else if (!strcmp(a, "--svg")) {
            p->svg = v;
        } else {
            usage(stderr);
            exit(2);
        }
    }
    if (!n_set) {
        static const size_t def[] = {10000, 100000, 1000000};
        p->n_ns = quick ? 1 : 3;
        memcpy(p->ns, def, sizeof(def));
    }
    if (!sizes_set) {
        static const size_t def[] = {100, 4096, 65536};
        p->n_sizes = quick ? 2 : 3;
        memcpy(p->sizes, def, sizeof(def));
    }
    if (!p->n_codecs) p->codecs[p->n_codecs++] = "auto";
    if (quick && !reps_set) p->reps = 1;
    if (p->cores > 1) p->pin_nodes = false; /* a node's reactors would share one CPU */
}

/* ---- the process type: S bytes of text, stamped with the starting node and the index --- */

typedef struct content {
    const dataset *d;       /* the states (inherited from the parent at fork) */
    char origin;            /* this node's letter: fresh starts stamp it into their state */
    _Atomic uint64_t ok;    /* verification casts that found their state intact */
    _Atomic uint64_t wrong; /* ... that did not */
} content;

static char node_letter(int role)
{
    return role == NODE_A ? 'A' : 'B';
}

/* {"A":0000000042, */
static void stamp(uint8_t out[STAMP_LEN], char origin, size_t index)
{
    memcpy(out, "{\"", 2);
    out[2] = (uint8_t)origin;
    memcpy(out + 3, "\":", 2);
    for (int k = 14; k >= 5; k--, index /= 10)
        out[k] = (uint8_t)('0' + index % 10);
    out[15] = ',';
}

/* The index in a "p-0000000042" id (bench_pipe.h's ids), or -1. */
static long id_index(const char *id, size_t len)
{
    if (len != ID_LEN || id[0] != 'p' || id[1] != '-') return -1;
    long v = 0;
    for (size_t k = 2; k < ID_LEN; k++) {
        if (id[k] < '0' || id[k] > '9') return -1;
        v = v * 10 + (id[k] - '0');
    }
    return v;
}

static bool state_intact(const content *c, const uint8_t *s, size_t len, char origin, size_t index)
{
    uint8_t st[STAMP_LEN];
    stamp(st, origin, index);
    return len == c->d->size && !memcmp(s, st, STAMP_LEN) &&
           !memcmp(s + STAMP_LEN, ds_state(c->d, index) + STAMP_LEN, len - STAMP_LEN);
}

static int mstate_init(ch_proc *p, const void *arg, size_t arg_len, unsigned flags)
{
    (void)arg, (void)arg_len;
    if (flags & CH_INIT_MIGRATED) return 0; /* alter_handover brings the state */
    const content *c = ch_proc_type_ud(p);
    size_t len;
    const char *id = ch_proc_id(p, &len);
    long index = id_index(id, len);
    if (index < 0 || (size_t)index >= c->d->n) return -EINVAL;
    uint8_t *s = ch_proc_state_resize(p, c->d->size);
    if (!s) return -ENOMEM;
    memcpy(s, ds_state(c->d, (size_t)index), c->d->size);
    /* The node that runs init, not the spec: a restart from the spec elsewhere shows. */
    stamp(s, c->origin, (size_t)index);
    return 0;
}

/* "V" + the letter of the node that started it: checks the whole state. A cast counts the
 * answer in the type's counters, a call answers 1 (intact) or 0. */
static int mstate_handle(ch_proc *p, const ch_msg *m)
{
    content *c = ch_proc_type_ud(p);
    const uint8_t *req = m->data;
    if (m->len != 2 || req[0] != 'V') return CH_CONTINUE;
    size_t len, slen;
    const char *id = ch_proc_id(p, &len);
    long index = id_index(id, len);
    const uint8_t *s = ch_proc_state(p, &slen);
    bool ok = index >= 0 && (size_t)index < c->d->n && s &&
              state_intact(c, s, slen, (char)req[1], (size_t)index);
    if (m->kind == CH_MSG_CALL) {
        uint8_t answer = ok;
        int rc = ch_reply(p, m, &answer, 1);
        return rc < 0 ? rc : CH_CONTINUE;
    }
    if (m->kind == CH_MSG_CAST) atomic_fetch_add(ok ? &c->ok : &c->wrong, 1);
    return CH_CONTINUE;
}

/* ---- the link: loopback, or two network namespaces joined by a shaped veth pair ------- */

typedef struct netns_env {
    bool on;
    char name[2][32]; /* namespaces of node A and node B */
    char veth[2][16]; /* the pair's ends, one in each */
    char addr[2][16]; /* their addresses */
    int fd[2];        /* the namespaces, open: the baseline's sockets are made in them */
    int self_fd;      /* the parent's own namespace */
    char ip_path[64]; /* the `ip` program */
} netns_env;

/* ---- the run's shared context: set by the parent before it forks ---------------------- */

typedef struct bench {
    const params *pr;
    netns_env ns;
    uint8_t cookie[COOKIE_LEN];   /* random per program run, shared by both nodes */
    const dataset *d;             /* the current combination's states; d->n processes */
    const char *codec;            /* the current run's migration codec */
    size_t batch, inflight;       /* the nodes' batch_bytes (the baselines' too), inflight_bytes */
    uint32_t timeout_ms;          /* the current run's migration deadline */
    FILE *svg;                    /* --svg, open from the start: a bad path fails at once */
    svg_run *drawn[SVG_MAX_RUNS]; /* --svg: the rows' median runs, in the order they ran */
    size_t nrows;                 /* rows run: those past SVG_MAX_RUNS are not drawn */
} bench;

static const char *node_addr(const bench *b, int role)
{
    return b->ns.on ? b->ns.addr[role] : LOOPBACK;
}

/* ---- worker protocol: one command, one reply (two for OP_LEAVE) ------------------------ */

enum worker_op {
    OP_OPEN,   /* create and start the node; seed_port 0: first node */
    OP_START,  /* start processes: arg 1 every id, 0 the ids this node owns */
    OP_STATS,  /* the node's counters; arg 1: count alive members too */
    OP_OWNED,  /* how many ids this node owns (-EAGAIN until it sees both members) */
    OP_VERIFY, /* check every owned id's state; arg: deadline in ms */
    OP_LEAVE,  /* ch_node_leave: one reply before, one after */
    OP_QUIT,
};

typedef struct cmd {
    int32_t op;
    int32_t seed_port;
    uint64_t arg;
} cmd;

typedef struct reply {
    int32_t status; /* 0 or a negative code */
    int32_t port;
    uint64_t node_id, epoch, alive;
    uint64_t t_ns;    /* the worker's CLOCK_MONOTONIC when it acted or read its counters */
    uint64_t count;   /* started, owned, or verification casts sent */
    uint64_t ok, bad; /* verification */
    ch_node_stats st;
} reply;

/* ---- the worker: one node in a forked process ----------------------------------------- */

typedef struct worker_ctx {
    const bench *b;
    int role;
    int fd;
    ch_node *node;
    uint64_t self;    /* the node's id */
    uint8_t *started; /* bitmap of ids this node started (the others came by migration) */
    char listen[48], seed[48];
    content ct;
} worker_ctx;

static void pause_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Polls cost the nodes' CPUs a little and bound the timing error: both stay near 0.5% of
 * the time elapsed since t0. */
static void poll_pause(uint64_t t0)
{
    uint64_t p = (now_ns() - t0) / 200;
    pause_ns(p < POLL_MIN_NS ? POLL_MIN_NS : p > POLL_MAX_NS ? POLL_MAX_NS : p);
}

static bool owned_here(worker_ctx *w, size_t i)
{
    uint64_t owner;
    return ch_node_owner_of(w->node, ds_id(w->b->d, i), ID_LEN, &owner) == 0 && owner == w->self;
}

static bool started_here(const worker_ctx *w, size_t i)
{
    return w->started[i / 8] & (1u << (i % 8));
}

static int op_open(worker_ctx *w, const cmd *c, reply *r)
{
    const bench *b = w->b;
    const params *pr = b->pr;
    ch_node_config cfg;
    ch_node_config_init(&cfg);
    snprintf(w->listen, sizeof(w->listen), "%s:0", node_addr(b, w->role));
    snprintf(w->seed, sizeof(w->seed), "%s:%d", node_addr(b, NODE_A), c->seed_port);
    const char *seeds[1] = {w->seed};
    cfg.name = w->role == NODE_A ? "A" : "B";
    cfg.cores = pr->cores;
    cfg.pin = 0; /* the worker's process is confined to its CPU instead (--no-pin: free) */
    cfg.cluster.listen = w->listen;
    cfg.cluster.seeds = c->seed_port ? seeds : NULL;
    cfg.cluster.nseeds = c->seed_port ? 1 : 0;
    cfg.cluster.cookie = b->cookie;
    cfg.cluster.cookie_len = COOKIE_LEN;
    cfg.migration.strategy = CH_MIGRATE_HOTSWAP;
    cfg.migration.handover = 1;
    cfg.migration.codec = b->codec;
    cfg.migration.leave_wait_ms = b->timeout_ms;
    cfg.migration.batch_bytes = b->batch;
    cfg.migration.inflight_bytes = b->inflight;
    cfg.migration.lanes = !b->pr->no_lanes;
    int rc = ch_node_create(&cfg, &w->node);
    if (rc) return rc;
    ch_process_type type = {
        .name = TYPE_NAME, .init = mstate_init, .handle = mstate_handle, .ud = &w->ct};
    if ((rc = ch_node_type_register(w->node, &type))) return rc;
    r->t_ns = now_ns(); /* a joining node's "start of join" */
    if ((rc = ch_node_start(w->node))) return rc;
    w->self = ch_node_id(w->node);
    r->node_id = w->self;
    r->port = ch_node_port(w->node);
    return 0;
}

static int start_batch(worker_ctx *w, ch_child_spec *specs, int *results, size_t k)
{
    ch_batch_opts o = {.timeout_ms = SETUP_MS};
    int rc = k ? ch_node_children_start(w->node, specs, k, &o, results) : 0;
    for (size_t i = 0; rc == CH_EPARTIAL && i < k; i++)
        if (results[i]) return results[i]; /* the first child's reason says more */
    return rc;
}

static int op_start(worker_ctx *w, const cmd *c, reply *r)
{
    const dataset *d = w->b->d;
    ch_child_spec *specs = calloc(START_BATCH, sizeof(*specs));
    int *results = calloc(START_BATCH, sizeof(*results));
    int rc = specs && results ? 0 : -ENOMEM;
    size_t k = 0;
    for (size_t i = 0; rc == 0 && i < d->n; i++) {
        if (!c->arg && !owned_here(w, i)) continue;
        specs[k++] = (ch_child_spec){.id = ds_id(d, i), .id_len = ID_LEN, .type = TYPE_NAME};
        w->started[i / 8] |= (uint8_t)(1u << (i % 8));
        r->count++;
        if (k == START_BATCH) rc = start_batch(w, specs, results, k), k = 0;
    }
    if (rc == 0) rc = start_batch(w, specs, results, k);
    free(specs);
    free(results);
    return rc;
}

static size_t alive_members(ch_node *n)
{
    ch_member *m;
    size_t k, alive = 0;
    if (ch_node_members_get(n, &m, &k) < 0) return 0;
    for (size_t i = 0; i < k; i++)
        alive += m[i].state == CH_MEMBER_ALIVE;
    free(m);
    return alive;
}

static int op_stats(worker_ctx *w, const cmd *c, reply *r)
{
    r->t_ns = now_ns();
    int rc = ch_node_stats_get(w->node, &r->st);
    r->epoch = ch_node_epoch(w->node);
    if (c->arg) r->alive = alive_members(w->node);
    return rc;
}

static int op_owned(worker_ctx *w, reply *r)
{
    if (alive_members(w->node) < 2) return -EAGAIN; /* the ring has this node alone yet */
    for (size_t i = 0; i < w->b->d->n; i++)
        r->count += owned_here(w, i);
    return 0;
}

/* Sends, retrying while the node's inbox is full (back-pressure, not a synchronisation). */
static int send_retry(ch_node *n, const char *id, const uint8_t *msg, uint64_t deadline)
{
    for (;;) {
        int rc = ch_send(n, id, ID_LEN, msg, 2);
        if (rc != -EAGAIN) return rc;
        if (now_ns() > deadline) return -ETIMEDOUT;
        pause_ns(20000);
    }
}

/* Every id this node owns gets "V" + the letter of the node that started it. */
static int op_verify(worker_ctx *w, const cmd *c, reply *r)
{
    uint64_t deadline = now_ns() + c->arg * 1000000u;
    atomic_store(&w->ct.ok, 0);
    atomic_store(&w->ct.wrong, 0);
    for (size_t i = 0; i < w->b->d->n; i++) {
        if (!owned_here(w, i)) continue;
        int origin = started_here(w, i) ? w->role : !w->role;
        uint8_t msg[2] = {'V', (uint8_t)node_letter(origin)};
        int rc = send_retry(w->node, ds_id(w->b->d, i), msg, deadline);
        if (rc) return rc;
        r->count++;
    }
    for (;;) {
        r->ok = atomic_load(&w->ct.ok);
        r->bad = atomic_load(&w->ct.wrong);
        if (r->ok + r->bad >= r->count) return 0;
        if (now_ns() > deadline) return -ETIMEDOUT;
        pause_ns(1000000);
    }
}

static int send_reply(int fd, const reply *r)
{
    ssize_t k;
    while ((k = send(fd, r, sizeof(*r), MSG_NOSIGNAL)) < 0 && errno == EINTR) {
    }
    return k == (ssize_t)sizeof(*r) ? 0 : -EPIPE;
}

/* Two replies: the moment the leave starts, then its result with the final counters (the
 * node is stopped then, its counters still readable). */
static int op_leave(worker_ctx *w, reply *r)
{
    r->t_ns = now_ns();
    if (send_reply(w->fd, r) < 0) return -EPIPE;
    memset(r, 0, sizeof(*r));
    int rc = ch_node_leave(w->node);
    r->t_ns = now_ns();
    r->epoch = ch_node_epoch(w->node);
    int src = ch_node_stats_get(w->node, &r->st);
    return rc ? rc : src;
}

static int worker_do(worker_ctx *w, const cmd *c, reply *r)
{
    if (c->op != OP_OPEN && !w->node) return CH_ESTOPPED;
    switch (c->op) {
    case OP_OPEN:
        return w->node ? -EALREADY : op_open(w, c, r);
    case OP_START:
        return op_start(w, c, r);
    case OP_STATS:
        return op_stats(w, c, r);
    case OP_OWNED:
        return op_owned(w, r);
    case OP_VERIFY:
        return op_verify(w, c, r);
    case OP_LEAVE:
        return op_leave(w, r);
    default:
        return -EINVAL;
    }
}

/* Enters node `role`'s namespace (--veth) and CPU, before any thread exists. */
static int worker_enter(const worker_ctx *w)
{
    const bench *b = w->b;
    if (b->ns.on && setns(b->ns.fd[w->role], CLONE_NEWNET) < 0) return -errno;
    if (!b->pr->pin_nodes) return 0;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(w->role == NODE_A ? SENDER_CPU : RECVER_CPU, &set);
    return sched_setaffinity(0, sizeof(set), &set) < 0 ? -errno : 0;
}

/* The worker's life: commands until OP_QUIT or the parent's end. It then exits without
 * stopping its node: the kernel tears the threads and rings down, and a graceful stop of
 * a million processes would only slow the next run. */
static int worker_main(worker_ctx *w, pid_t parent)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent) return 1;
    int setup = worker_enter(w);
    w->started = calloc(w->b->d->n / 8 + 1, 1);
    if (!w->started) setup = -ENOMEM;
    for (;;) {
        cmd c;
        ssize_t k = recv(w->fd, &c, sizeof(c), 0);
        if (k < 0 && errno == EINTR) continue;
        if (k != (ssize_t)sizeof(c) || c.op == OP_QUIT) break;
        reply r = {0};
        r.status = setup ? setup : worker_do(w, &c, &r);
        if (send_reply(w->fd, &r) < 0) break;
    }
    ch_log_level_set(CH_LOG_OFF); /* the peer's departure is no news */
    return 0;
}

/* ---- the parent's side of a worker ---------------------------------------------------- */

typedef struct worker {
    pid_t pid; /* 0: none */
    int fd;
    const char *name; /* "node A", "node B" */
} worker;

static worker g_workers[2]; /* the live ones, reaped at exit whatever happens */

static void worker_kill(worker *w)
{
    if (w->pid <= 0) return;
    kill(w->pid, SIGKILL);
    while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR) {
    }
    close(w->fd);
    w->pid = 0;
}

static void workers_kill_all(void)
{
    worker_kill(&g_workers[0]);
    worker_kill(&g_workers[1]);
}

static worker *worker_spawn(const bench *b, int role)
{
    worker *w = &g_workers[role];
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        die("socketpair: %s", strerror(errno));
    pid_t parent = getpid();
    fflush(NULL); /* nothing buffered twice */
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(sv[0]);
        for (int k = 0; k < 2; k++) /* the other worker's line: its end of file is ours alone */
            if (g_workers[k].pid > 0) close(g_workers[k].fd);
        worker_ctx ctx = {.b = b, .role = role, .fd = sv[1]};
        ctx.ct.d = b->d;
        ctx.ct.origin = node_letter(role);
        _exit(worker_main(&ctx, parent));
    }
    close(sv[1]);
    *w = (worker){.pid = pid, .fd = sv[0], .name = role == NODE_A ? "node A" : "node B"};
    return w;
}

/* Reaps a worker that was asked to exit: waits until `end`, then kills it. */
static void worker_reap(worker *w, uint64_t end)
{
    while (w->pid > 0 && now_ns() < end) {
        int st;
        pid_t got = waitpid(w->pid, &st, WNOHANG);
        if (got == w->pid) {
            if (!WIFEXITED(st) || WEXITSTATUS(st))
                fprintf(stderr, BENCH_NAME ": %s exited abnormally (status 0x%x)\n", w->name, st);
            close(w->fd);
            w->pid = 0;
            return;
        }
        pause_ns(2000000);
    }
    if (w->pid <= 0) return;
    fprintf(stderr, BENCH_NAME ": %s did not exit within %u ms: killed\n", w->name, QUIT_MS);
    worker_kill(w);
}

/* Asks both workers to exit at once (so that neither watches the other vanish), waits
 * QUIT_MS, then kills what is left. */
static void workers_end(worker *a, worker *b)
{
    cmd c = {.op = OP_QUIT};
    worker *w[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        ssize_t n = w[k]->pid > 0 ? send(w[k]->fd, &c, sizeof(c), MSG_NOSIGNAL) : 0;
        (void)n; /* a worker that is gone already is reaped below all the same */
    }
    uint64_t end = now_ns() + (uint64_t)QUIT_MS * 1000000u;
    worker_reap(a, end);
    worker_reap(b, end);
}

static const char *op_name(int op)
{
    static const char *const names[] = {"open", "start", "stats", "owned", "verify", "leave"};
    return op >= 0 && op < OP_QUIT ? names[op] : "?";
}

/* Waits for the worker's next reply: 0 with *r filled, -ETIMEDOUT, or -EPIPE (it died). */
static int worker_wait(worker *w, reply *r, uint32_t timeout_ms)
{
    struct pollfd p = {.fd = w->fd, .events = POLLIN};
    int rc;
    while ((rc = poll(&p, 1, (int)timeout_ms)) < 0 && errno == EINTR) {
    }
    if (rc < 0) return -errno;
    if (rc == 0) return -ETIMEDOUT;
    ssize_t k = recv(w->fd, r, sizeof(*r), 0);
    if (k == 0 || (k < 0 && errno == ECONNRESET)) return -EPIPE;
    if (k < 0) return -errno;
    return k == (ssize_t)sizeof(*r) ? 0 : -EPROTO;
}

static void worker_send(worker *w, int op, int seed_port, uint64_t arg)
{
    cmd c = {.op = op, .seed_port = seed_port, .arg = arg};
    if (send(w->fd, &c, sizeof(c), MSG_NOSIGNAL) != (ssize_t)sizeof(c))
        die("%s: %s: the worker is gone (%s)", w->name, op_name(op), strerror(errno));
}

/* Waits for the reply to `op` and dies, saying which, on any failure. */
static void worker_expect(worker *w, int op, reply *r, uint32_t timeout_ms)
{
    int rc = worker_wait(w, r, timeout_ms);
    if (rc == -ETIMEDOUT) die("%s: %s: no answer within %u ms", w->name, op_name(op), timeout_ms);
    if (rc)
        die("%s: %s: %s", w->name, op_name(op), rc == -EPIPE ? "the worker died" : ch_strerror(rc));
    if (r->status) die("%s: %s: %s", w->name, op_name(op), ch_strerror(r->status));
}

static void ask(worker *w, int op, int seed_port, uint64_t arg, reply *r, uint32_t timeout_ms)
{
    worker_send(w, op, seed_port, arg);
    worker_expect(w, op, r, timeout_ms);
}

/* ---- one migration -------------------------------------------------------------------- */

typedef struct mig_result {
    double secs;          /* the timed part */
    uint64_t moved;       /* processes that changed node */
    ch_node_stats before; /* the source node's counters before the migration ... */
    ch_node_stats after;  /* ... and after it */
    double leave_secs;    /* leave: until ch_node_leave returned */
    uint64_t verified;    /* states found intact on B */
    svg_run *trace;       /* --svg: processes moved at each poll; NULL: not drawn */
} mig_result;

/* --svg: `moved` processes had moved at the worker's time t (t0: the run's start). */
static void trace_point(mig_result *m, uint64_t t0, uint64_t t, uint64_t moved)
{
    if (m->trace) svg_run_add(m->trace, t > t0 ? (double)(t - t0) / 1e9 : 0, (double)moved);
}

static const char *size_name(size_t size, char *buf, size_t cap)
{
    if (size >= (1 << 20) && size % (1 << 20) == 0)
        snprintf(buf, cap, "%zu MiB", size >> 20);
    else if (size >= 1024 && size % 1024 == 0)
        snprintf(buf, cap, "%zu KiB", size / 1024);
    else
        snprintf(buf, cap, "%zu B", size);
    return buf;
}

static void run_label(const bench *b, int sc, char *out, size_t cap)
{
    char sz[32];
    snprintf(out, cap, "%s N=%zu S=%s codec %s", scenario_name[sc], b->d->n,
             size_name(b->d->size, sz, sizeof(sz)), b->codec);
}

static void describe(const char *name, const reply *r, char *out, size_t cap)
{
    const ch_node_stats *s = &r->st;
    snprintf(out, cap,
             "%s: processes %llu, migrating %llu, migrated out %llu, in %llu, failures %llu, "
             "epoch %llu",
             name, (unsigned long long)s->processes, (unsigned long long)s->migrating,
             (unsigned long long)s->migrated_out, (unsigned long long)s->migrated_in,
             (unsigned long long)s->migration_failures, (unsigned long long)r->epoch);
}

static bool migration_counters_idle(const ch_node_stats *s)
{
    return !s->migrating && !s->migrated_out && !s->migrated_in && !s->migration_failures &&
           !s->handover_bytes_raw;
}

/* The deadline passed: says how far the migration got (ra NULL: A could not answer, it was
 * inside ch_node_leave), then ends the program. */
static void __attribute__((noreturn))
migration_timeout(const bench *b, int sc, const reply *ra, const reply *rb)
{
    char label[96], da[256] = "A: inside ch_node_leave, no counters", db[256];
    run_label(b, sc, label, sizeof(label));
    if (ra) describe("A", ra, da, sizeof(da));
    describe("B", rb, db, sizeof(db));
    bool idle = (!ra || migration_counters_idle(&ra->st)) && migration_counters_idle(&rb->st);
    die("%s: the migration did not finish within %.1f s\n  %s\n  %s%s", label, b->timeout_ms / 1e3,
        da, db,
        idle ? "\n  no migration counter moved: is the migration engine (issue 4) in this "
               "build?"
             : "");
}

/* Waits (SETTLE_MS) until both nodes together hold exactly N processes and B counted
 * `moved` arrivals since `b_in0`: nothing lost, nothing doubled. */
static void settle(const bench *b, int sc, worker *a, worker *bw, uint64_t b_in0, uint64_t moved)
{
    uint64_t end = now_ns() + (uint64_t)SETTLE_MS * 1000000u;
    reply ra = {0}, rb;
    for (;;) {
        if (a) ask(a, OP_STATS, 0, 0, &ra, SETUP_MS);
        ask(bw, OP_STATS, 0, 0, &rb, SETUP_MS);
        if (ra.st.processes + rb.st.processes == b->d->n && rb.st.migrated_in - b_in0 == moved)
            return;
        if (now_ns() > end) break;
        pause_ns(POLL_MAX_NS);
    }
    char label[96], da[256] = "", db[256];
    run_label(b, sc, label, sizeof(label));
    if (a) describe("A", &ra, da, sizeof(da));
    describe("B", &rb, db, sizeof(db));
    die("%s: %llu processes moved, but after %u ms the nodes still disagree with N=%zu:\n"
        "  %s\n  %s",
        label, (unsigned long long)moved, SETTLE_MS, b->d->n, da, db);
}

/* B checks every state it owns; all `want` must be intact. */
static uint64_t verify(const bench *b, int sc, worker *bw, uint64_t want)
{
    reply r;
    char label[96];
    run_label(b, sc, label, sizeof(label));
    worker_send(bw, OP_VERIFY, 0, SETUP_MS);
    int rc = worker_wait(bw, &r, SETUP_MS + 5000);
    if (rc) die("%s: verification: %s", label, ch_strerror(rc));
    if (r.status || r.count != want || r.ok != want)
        die("%s: verification: %llu of %llu states intact, %llu wrong, %llu unanswered "
            "(B owns %llu ids)%s%s",
            label, (unsigned long long)r.ok, (unsigned long long)want, (unsigned long long)r.bad,
            (unsigned long long)(r.count - r.ok - r.bad), (unsigned long long)r.count,
            r.status ? ": " : "", r.status ? ch_strerror(r.status) : "");
    return r.ok;
}

/* Join: A holds every process alone, B joins through A. */
static void run_join(const bench *b, mig_result *res)
{
    const size_t n = b->d->n;
    reply ra, rb, open_b, owned;
    worker *a = worker_spawn(b, NODE_A), *bw = worker_spawn(b, NODE_B);
    ask(a, OP_OPEN, 0, 0, &ra, SETUP_MS);
    int port = ra.port;
    ask(a, OP_START, 0, 1, &ra, SETUP_MS);
    ask(a, OP_STATS, 0, 0, &ra, SETUP_MS);
    if (ra.st.processes != n)
        die("join: A runs %llu of %zu processes", (unsigned long long)ra.st.processes, n);
    res->before = ra.st;
    ask(bw, OP_OPEN, port, 0, &open_b, b->timeout_ms);
    uint64_t t0 = open_b.t_ns, deadline = t0 + (uint64_t)b->timeout_ms * 1000000u, want = 0;
    bool want_known = false;
    trace_point(res, t0, t0, 0);
    for (;;) {
        ask(a, OP_STATS, 0, 0, &ra, SETUP_MS);
        ask(bw, OP_STATS, 0, 0, &rb, SETUP_MS);
        uint64_t out = ra.st.migrated_out - res->before.migrated_out;
        trace_point(res, t0, ra.t_ns > rb.t_ns ? ra.t_ns : rb.t_ns, out);
        if (!ra.st.migrating && !rb.st.migrating && out) {
            if (!want_known) { /* once, when it looks done: it costs a pass over every id */
                worker_send(bw, OP_OWNED, 0, 0);
                int rc = worker_wait(bw, &owned, SETUP_MS);
                if (rc || (owned.status && owned.status != -EAGAIN))
                    die("join: node B: owned: %s", ch_strerror(rc ? rc : owned.status));
                want_known = owned.status == 0; /* -EAGAIN: B does not see A yet */
                want = owned.count;
            }
            if (want_known && out == want) break;
            if (want_known && out > want)
                die("join: A reports %llu processes moved out, B owns %llu ids",
                    (unsigned long long)out, (unsigned long long)want);
        }
        if (now_ns() > deadline) migration_timeout(b, SC_JOIN, &ra, &rb);
        poll_pause(t0);
    }
    res->secs = (double)((ra.t_ns > rb.t_ns ? ra.t_ns : rb.t_ns) - t0) / 1e9;
    res->moved = want;
    settle(b, SC_JOIN, a, bw, 0, want);
    ask(a, OP_STATS, 0, 0, &ra, SETUP_MS);
    res->after = ra.st;
    res->verified = verify(b, SC_JOIN, bw, want);
    workers_end(a, bw);
}

/* Both nodes up and agreeing on a ring of two, each starts the ids it owns. */
static void spread(const bench *b, worker *a, worker *bw)
{
    reply ra, rb;
    uint64_t end = now_ns() + (uint64_t)SETUP_MS * 1000000u;
    for (;;) {
        ask(a, OP_STATS, 0, 1, &ra, SETUP_MS);
        ask(bw, OP_STATS, 0, 1, &rb, SETUP_MS);
        if (ra.alive == 2 && rb.alive == 2 && ra.epoch == rb.epoch) break;
        if (now_ns() > end)
            die("leave: the two nodes did not see each other within %u ms", SETUP_MS);
        pause_ns(2000000);
    }
    worker_send(a, OP_START, 0, 0); /* both at once */
    worker_send(bw, OP_START, 0, 0);
    worker_expect(a, OP_START, &ra, SETUP_MS);
    worker_expect(bw, OP_START, &rb, SETUP_MS);
    if (ra.count + rb.count != b->d->n)
        die("leave: A owns %llu ids and B %llu, not %zu: their rings differ",
            (unsigned long long)ra.count, (unsigned long long)rb.count, b->d->n);
}

/* Collects A's ch_node_leave result if it came already: fatal unless it returned 0. */
static void leave_returned(worker *a, reply *done, bool *have)
{
    struct pollfd p = {.fd = a->fd, .events = POLLIN};
    if (*have || poll(&p, 1, 0) != 1) return;
    worker_expect(a, OP_LEAVE, done, SETUP_MS);
    *have = true;
}

/* Leave: N spread over A and B, then A leaves. */
static void run_leave(const bench *b, mig_result *res)
{
    const size_t n = b->d->n;
    reply ra, rb, start, done = {0};
    bool have_done = false;
    worker *a = worker_spawn(b, NODE_A), *bw = worker_spawn(b, NODE_B);
    ask(a, OP_OPEN, 0, 0, &ra, SETUP_MS);
    ask(bw, OP_OPEN, ra.port, 0, &rb, SETUP_MS);
    spread(b, a, bw);
    settle(b, SC_LEAVE, a, bw, 0, 0); /* nothing moves while the ring stands still */
    ask(a, OP_STATS, 0, 0, &ra, SETUP_MS);
    ask(bw, OP_STATS, 0, 0, &rb, SETUP_MS);
    res->before = ra.st;
    uint64_t k = ra.st.processes, b_in0 = rb.st.migrated_in;
    ask(a, OP_LEAVE, 0, 0, &start, SETUP_MS);
    uint64_t t0 = start.t_ns, deadline = t0 + (uint64_t)b->timeout_ms * 1000000u;
    trace_point(res, t0, t0, 0);
    for (;;) {
        ask(bw, OP_STATS, 0, 0, &rb, SETUP_MS);
        trace_point(res, t0, rb.t_ns, rb.st.migrated_in - b_in0);
        if (rb.st.processes == n && rb.st.migrated_in - b_in0 == k && !rb.st.migrating) break;
        leave_returned(a, &done, &have_done);
        if (now_ns() > deadline) migration_timeout(b, SC_LEAVE, have_done ? &done : NULL, &rb);
        poll_pause(t0);
    }
    res->secs = (double)(rb.t_ns - t0) / 1e9;
    res->moved = k;
    if (!have_done) /* ch_node_leave also waits for the peers to adopt the new epoch */
        worker_expect(a, OP_LEAVE, &done, b->timeout_ms + 15000);
    res->after = done.st;
    res->leave_secs = (double)(done.t_ns - t0) / 1e9;
    settle(b, SC_LEAVE, NULL, bw, b_in0, k);
    res->verified = verify(b, SC_LEAVE, bw, n);
    workers_end(a, bw);
}

/* ---- the baselines: the same states, the same CPUs, the same kind of link ------------- */

/* A connected TCP pair whose receiving end lives in node B's namespace and whose sending
 * end lives in node A's: a socket stays in the namespace it was made in. */
static void tcp_pair_veth(const netns_env *e, int *tx, int *rx)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof(a);
    if (inet_pton(AF_INET, e->addr[NODE_B], &a.sin_addr) != 1) die("bad address");
    if (setns(e->fd[NODE_B], CLONE_NEWNET) < 0) die("setns: %s", strerror(errno));
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) < 0)
        die("listen in %s: %s", e->name[NODE_B], strerror(errno));
    if (setns(e->fd[NODE_A], CLONE_NEWNET) < 0) die("setns: %s", strerror(errno));
    *tx = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (setns(e->self_fd, CLONE_NEWNET) < 0) die("setns back: %s", strerror(errno));
    if (*tx < 0 || connect(*tx, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("connect across the veth pair: %s", strerror(errno));
    *rx = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    if (*rx < 0) die("accept: %s", strerror(errno));
    close(l);
}

/* One pass of one baseline over the dataset's first n states: states per second. */
static double baseline_pass(const bench *b, size_t n, bool zstd)
{
    pipe_run r = {.d = b->d, .n = n, .batch = b->batch, .zstd = zstd};
    if (b->ns.on)
        tcp_pair_veth(&b->ns, &r.fd_tx, &r.fd_rx);
    else
        tcp_pair(&r.fd_tx, &r.fd_rx);
    pipe_run_threads(&r, base_sender, base_receiver, zstd ? "zstd-1 baseline" : "raw baseline");
    close(r.fd_tx);
    close(r.fd_rx);
    return (double)n * 1e9 / (double)(r.t1 - r.t0);
}

/* A baseline over n states: the median of 1, 3 or 7 passes, more the fewer the bytes, since
 * a pass of a few hundred KB lasts less than one of this shared machine's hiccups. */
static double baseline(const bench *b, size_t n, bool zstd)
{
    double bytes = (double)n * (double)b->d->size;
    unsigned passes = bytes >= BASE_ONE_PASS ? 1 : bytes >= BASE_ONE_PASS / 8 ? 3 : 7;
    series s = {.n = 0};
    for (unsigned i = 0; i < passes; i++)
        series_add(&s, baseline_pass(b, n, zstd));
    return series_median(&s);
}

/* ---- --veth: two namespaces, a veth pair, tc tbf on both ends ------------------------- */

static pid_t g_parent;       /* cleanups run in the parent only, never in a worker */
static char *g_ns_del[2][5]; /* "ip netns del NAME", prepared for the signal handler */
static bool g_ns_made[2];

/* Runs argv[0] (an absolute path) and returns its exit status, or -1. Async-signal-safe:
 * the signal handler's cleanup runs it too. */
static int run_prog(char *const argv[], bool quiet)
{
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        if (fd >= 0) {
            dup2(fd, 1);
            if (quiet) dup2(fd, 2);
        }
        execve(argv[0], argv, environ);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* `ip ARGS`, ARGS split on spaces; 0 when it succeeded. */
static int ip_cmd(const netns_env *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int ip_cmd(const netns_env *e, const char *fmt, ...)
{
    char buf[256], *argv[24] = {(char *)e->ip_path};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    int k = 1;
    for (char *save, *t = strtok_r(buf, " ", &save); t && k < 23; t = strtok_r(NULL, " ", &save))
        argv[k++] = t;
    argv[k] = NULL;
    return run_prog(argv, false);
}

static void netns_cleanup(void)
{
    if (getpid() != g_parent) return;
    workers_kill_all(); /* their namespaces go when their last process does */
    for (int k = 0; k < 2; k++)
        if (g_ns_made[k]) run_prog(g_ns_del[k], true), g_ns_made[k] = false;
}

static void on_signal(int sig)
{
    netns_cleanup();
    _exit(128 + sig);
}

static void __attribute__((noreturn)) veth_skip(const char *why)
{
    printf("# bench_migration --veth: skipped: %s\n", why);
    fflush(stdout);
    exit(0); /* the atexit handler removes what was made */
}

static bool find_prog(const char *name, char *out, size_t cap)
{
    static const char *const dirs[] = {"/usr/sbin", "/sbin", "/usr/bin", "/bin"};
    for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
        snprintf(out, cap, "%s/%s", dirs[i], name);
        if (access(out, X_OK) == 0) return true;
    }
    return false;
}

/* The pair, its addresses, lo up and the rate limit on each end (both directions). */
static int veth_link(const netns_env *e, const char *rate)
{
    if (ip_cmd(e, "link add %s netns %s type veth peer name %s netns %s", e->veth[0], e->name[0],
               e->veth[1], e->name[1]))
        return -1;
    for (int k = 0; k < 2; k++) {
        if (ip_cmd(e, "-n %s link set lo up", e->name[k]) ||
            ip_cmd(e, "-n %s addr add %s/24 dev %s", e->name[k], e->addr[k], e->veth[k]) ||
            ip_cmd(e, "-n %s link set %s up", e->name[k], e->veth[k]) ||
            ip_cmd(e, "netns exec %s tc qdisc add dev %s root tbf rate %s burst 256kb latency 20ms",
                   e->name[k], e->veth[k], rate))
            return -1;
    }
    return 0;
}

static void netns_setup(netns_env *e, const params *pr)
{
    if (geteuid() != 0)
        veth_skip("creating network namespaces needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN)");
    if (!find_prog("ip", e->ip_path, sizeof(e->ip_path)))
        veth_skip("the `ip` program (iproute2) is not installed");
    int pid = (int)getpid();
    for (int k = 0; k < 2; k++) {
        snprintf(e->name[k], sizeof(e->name[k]), "chmig-%c-%d", "ab"[k], pid);
        snprintf(e->veth[k], sizeof(e->veth[k]), "chm%c%d", "ab"[k], pid);
        snprintf(e->addr[k], sizeof(e->addr[k]), VETH_NET "%d", k + 1);
        char *const del[5] = {e->ip_path, "netns", "del", e->name[k], NULL};
        memcpy(g_ns_del[k], del, sizeof(del));
    }
    for (int k = 0; k < 2; k++) {
        if (ip_cmd(e, "netns add %s", e->name[k]))
            veth_skip("`ip netns add` failed: network namespaces are not permitted here");
        g_ns_made[k] = true;
    }
    if (veth_link(e, pr->rate))
        veth_skip("could not set up the shaped veth pair (see the `ip`/`tc` error above; "
                  "needs veth and the tbf qdisc)");
    for (int k = 0; k < 2; k++) {
        char path[64];
        snprintf(path, sizeof(path), "/run/netns/%s", e->name[k]);
        if ((e->fd[k] = open(path, O_RDONLY | O_CLOEXEC)) < 0)
            veth_skip("cannot open the namespaces under /run/netns");
    }
    if ((e->self_fd = open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)) < 0)
        die("/proc/self/ns/net: %s", strerror(errno));
    e->on = true;
}

/* ---- results and the table ------------------------------------------------------------ */

typedef struct row {
    bool ran;
    series rate;                /* processes moved per second */
    series st_mbs;              /* state bytes moved per second */
    series raw_mbs, wire_mbs;   /* the source's handover bytes per second */
    series ratio;               /* raw / wire */
    series fz, fr;              /* frames sent compressed, raw */
    series p50, p99;            /* the source's pause percentiles, µs */
    series moved, leave_secs;   /* */
    series base_raw, base_zstd; /* baseline states per second, same count and size */
} row;

static row *row_at(row *rows, const params *pr, unsigned sc, unsigned si, unsigned ni, unsigned ci)
{
    return &rows[((sc * pr->n_sizes + si) * pr->n_ns + ni) * pr->n_codecs + ci];
}

static void record(row *rw, const mig_result *m, size_t size, double base_raw, double base_zstd)
{
    const ch_node_stats *a = &m->before, *z = &m->after;
    double s = m->secs > 0 ? m->secs : 1e-9,
           raw = (double)(z->handover_bytes_raw - a->handover_bytes_raw),
           wire = (double)(z->handover_bytes_wire - a->handover_bytes_wire);
    rw->ran = true;
    series_add(&rw->rate, (double)m->moved / s);
    series_add(&rw->st_mbs, (double)m->moved * (double)size / s / 1e6);
    series_add(&rw->raw_mbs, raw / s / 1e6);
    series_add(&rw->wire_mbs, wire / s / 1e6);
    series_add(&rw->ratio, wire > 0 ? raw / wire : 0);
    series_add(&rw->fz, (double)(z->handover_frames_zstd - a->handover_frames_zstd));
    series_add(&rw->fr, (double)(z->handover_frames_raw - a->handover_frames_raw));
    series_add(&rw->p50, (double)z->pause_p50_us); /* fresh nodes: this migration's alone */
    series_add(&rw->p99, (double)z->pause_p99_us);
    series_add(&rw->moved, (double)m->moved);
    series_add(&rw->leave_secs, m->leave_secs);
    series_add(&rw->base_raw, base_raw);
    series_add(&rw->base_zstd, base_zstd);
}

static void progress(const bench *b, int sc, unsigned rep, const mig_result *m, double br,
                     double bz)
{
    char label[96];
    const ch_node_stats *a = &m->before, *z = &m->after;
    double s = m->secs, st = (double)m->moved * (double)b->d->size;
    double raw = (double)(z->handover_bytes_raw - a->handover_bytes_raw),
           wire = (double)(z->handover_bytes_wire - a->handover_bytes_wire);
    run_label(b, sc, label, sizeof(label));
    fprintf(stderr,
            "%s rep %u/%u: %llu moved in %.3f s (%.1f k/s, %.1f MB/s of state), raw %.1f MB, "
            "wire %.1f MB, frames %llu zstd / %llu raw (%llu on data lanes), pause p50 %.2f "
            "p99 %.2f max %.2f ms",
            label, rep + 1, b->pr->reps, (unsigned long long)m->moved, s,
            (double)m->moved / s / 1e3, st / s / 1e6, raw / 1e6, wire / 1e6,
            (unsigned long long)(z->handover_frames_zstd - a->handover_frames_zstd),
            (unsigned long long)(z->handover_frames_raw - a->handover_frames_raw),
            (unsigned long long)(z->handover_frames_lane - a->handover_frames_lane),
            (double)z->pause_p50_us / 1e3, (double)z->pause_p99_us / 1e3,
            (double)z->pause_max_us / 1e3);
    if (sc == SC_LEAVE) fprintf(stderr, ", ch_node_leave returned after %.3f s", m->leave_secs);
    fprintf(stderr, "; baselines raw %.1f, zstd-1 %.1f MB/s of state; verified %llu\n",
            br * (double)b->d->size / 1e6, bz * (double)b->d->size / 1e6,
            (unsigned long long)m->verified);
}

static double tput_target(size_t size)
{
    return size >= 4096 ? 0.6 : 0.4;
}

#define PAUSE_TARGET_US 10000.0
#define PAUSE_TARGET_N  100000u

static void print_row(const bench *b, unsigned sc, size_t n, size_t size, const char *codec,
                      const row *r)
{
    char sz[32], span[40], frames[32], pause[32], tgt[24], ptgt[24];
    double med, lo, hi;
    series_stats(&r->rate, &med, &lo, &hi);
    double br = series_median(&r->base_raw), bz = series_median(&r->base_zstd);
    double best = br > bz ? br : bz, vs = best > 0 ? med / best : 0;
    double p99 = series_median(&r->p99);
    snprintf(span, sizeof(span), "%.1f-%.1f", lo / 1e3, hi / 1e3);
    snprintf(frames, sizeof(frames), "%.0f/%.0f", series_median(&r->fz), series_median(&r->fr));
    snprintf(pause, sizeof(pause), "%.2f/%.2f", series_median(&r->p50) / 1e3, p99 / 1e3);
    if (b->ns.on) {
        snprintf(tgt, sizeof(tgt), "n/a (veth)");
        snprintf(ptgt, sizeof(ptgt), "n/a (veth)");
    } else {
        double t = tput_target(size);
        snprintf(tgt, sizeof(tgt), ">=%.1f %s", t, vs >= t ? "ok" : "MISSED");
        if (n >= PAUSE_TARGET_N)
            snprintf(ptgt, sizeof(ptgt), "<=10ms %s", p99 <= PAUSE_TARGET_US ? "ok" : "MISSED");
        else
            snprintf(ptgt, sizeof(ptgt), "-");
    }
    printf("| %-8s | %8zu | %-6s | %-7s | %7.0f | %8.1f | %-13s | %8.1f | %8.1f | %9.1f | %5.2f "
           "| %-11s | %-13s | %8.1f | %9.1f | %7.2f | %-12s | %-13s |\n",
           scenario_name[sc], n, size_name(size, sz, sizeof(sz)), codec, series_median(&r->moved),
           med / 1e3, span, series_median(&r->st_mbs), series_median(&r->raw_mbs),
           series_median(&r->wire_mbs), series_median(&r->ratio), frames, pause,
           br * (double)size / 1e6, bz * (double)size / 1e6, vs, tgt, ptgt);
}

static void print_table(const bench *b, row *rows)
{
    const params *pr = b->pr;
    printf("\n| %-8s | %8s | %-6s | %-7s | %7s | %8s | %-13s | %8s | %8s | %9s | %5s | %-11s "
           "| %-13s | %8s | %9s | %7s | %-12s | %-13s |\n",
           "scenario", "N", "S", "codec", "moved", "k proc/s", "min-max", "MB/s st", "MB/s raw",
           "MB/s wire", "ratio", "frames z/r", "pause ms", "base raw", "base zstd", "vs best",
           "target", "pause p99");
    printf("|----------|----------|--------|---------|---------|----------|---------------|------"
           "----|----------|-----------|-------|-------------|---------------|----------|-------"
           "----|---------|--------------|---------------|\n");
    for (unsigned sc = 0; sc < SC_COUNT; sc++)
        for (unsigned si = 0; si < pr->n_sizes; si++)
            for (unsigned ni = 0; ni < pr->n_ns; ni++)
                for (unsigned ci = 0; ci < pr->n_codecs; ci++) {
                    const row *r = row_at(rows, pr, sc, si, ni, ci);
                    if (r->ran) print_row(b, sc, pr->ns[ni], pr->sizes[si], pr->codecs[ci], r);
                }
    printf(
        "\nk proc/s: thousands of processes moved per second, median of the repetitions "
        "(min-max).\n"
        "  join: from B's ch_node_start until both nodes' `migrating` is 0 and A's `migrated_out`\n"
        "  equals the ids B owns; leave: from A's ch_node_leave until B holds all N and counted\n"
        "  A's share in `migrated_in`. Every moved state is checked whole on B afterwards.\n"
        "MB/s st: state bytes moved per second; MB/s raw, wire: the source node's\n"
        "  handover_bytes_raw and handover_bytes_wire over the same time; ratio: raw / wire;\n"
        "  frames z/r: frames sent compressed / raw (the codec chosen); pause ms: the source's\n"
        "  pause_p50_us / pause_p99_us (freeze to confirmation), medians of the repetitions.\n"
        "base raw, base zstd: the raw and the zstd-1 pipeline (bench_pipe.h: serialize, send over\n"
        "  TCP on the same link, receive, copy out), MB/s of state, run after each migration\n"
        "  with the same number of states, of the same size and content, between the CPUs the\n"
        "  two nodes ran on (median of 7 passes below 8 MiB, 3 below 64 MiB, else 1).\n"
        "vs best: migration processes/s over the better baseline's states/s (medians). Targets\n"
        "  (design §6, loopback): vs best >= 0.6 at 4 KiB and 64 KiB, >= 0.4 at 100 B; pause\n"
        "  p99 <= 10 ms in runs of N >= %u processes.\n",
        PAUSE_TARGET_N);
}

static void print_header(const bench *b)
{
    const params *pr = b->pr;
    char model[128], load[64], sz[32];
    struct utsname u;
    cpu_model(model, sizeof(model));
    load_avg(load, sizeof(load));
    if (uname(&u) < 0) snprintf(u.release, sizeof(u.release), "unknown");
    printf("# bench_migration: corehub %d.%d.%d, migrations between two nodes (join, graceful "
           "leave) vs raw and zstd-1 pipelines\n",
           COREHUB_VERSION_MAJOR, COREHUB_VERSION_MINOR, COREHUB_VERSION_PATCH);
    printf("machine: nproc %ld, cpu \"%s\", Linux %s, load %s; zstd %s\n",
           sysconf(_SC_NPROCESSORS_ONLN), model, u.release, load, ZSTD_versionString());
    if (b->ns.on)
        printf("link: veth pair %s <-> %s between namespaces %s and %s, tc tbf rate %s on both "
               "ends\n",
               b->ns.addr[0], b->ns.addr[1], b->ns.name[0], b->ns.name[1], pr->rate);
    else
        printf("link: loopback TCP\n");
    char inflight[32];
    printf("nodes: one OS process each, %u core(s) each, %s; HotSwap with handover, batch %s, "
           "in flight %s per core, frames %s\n",
           pr->cores,
           pr->pin_nodes ? "node A on CPU 0 and node B on CPU 1 as the baselines' sender and "
                           "receiver"
                         : "unpinned",
           size_name(b->batch, sz, sizeof(sz)), size_name(b->inflight, inflight, sizeof(inflight)),
           pr->no_lanes ? "through the coordinators" : "on the cores' data lanes");
    printf("params: reps %u, N", pr->reps);
    for (unsigned i = 0; i < pr->n_ns; i++)
        printf("%s%zu", i ? "," : " ", pr->ns[i]);
    printf(", S");
    for (unsigned i = 0; i < pr->n_sizes; i++)
        printf("%s%s", i ? "," : " ", size_name(pr->sizes[i], sz, sizeof(sz)));
    printf(", codecs");
    for (unsigned i = 0; i < pr->n_codecs; i++)
        printf("%s%s", i ? "," : " ", pr->codecs[i]);
    printf(", scenarios%s%s, cap %.2f GiB of state per run, states JSON-like (zstd-1 ~3.8x)\n",
           pr->scenarios & 1 ? " join" : "", pr->scenarios & 2 ? " leave" : "",
           (double)pr->max_bytes / (1 << 30));
    for (unsigned si = 0; si < pr->n_sizes; si++)
        for (unsigned ni = 0; ni < pr->n_ns; ni++)
            if ((uint64_t)pr->ns[ni] * pr->sizes[si] > pr->max_bytes)
                printf("skipped: N=%zu x %s (%.2f GiB of state > the cap; --max-bytes)\n",
                       pr->ns[ni], size_name(pr->sizes[si], sz, sizeof(sz)),
                       (double)pr->ns[ni] * (double)pr->sizes[si] / (1 << 30));
    fflush(stdout);
}

/* ---- main ----------------------------------------------------------------------------- */

/* 20 s, plus 1 s per 20 MB of state and per 20 000 processes: ample for an engine near its
 * targets, short enough that one which never finishes does not hold the machine long. */
static uint32_t timeout_for(const params *pr, size_t n, size_t size)
{
    if (pr->timeout_s) return pr->timeout_s * 1000u;
    double s = 20 + (double)n * (double)size / 20e6 + (double)n / 20000;
    return (uint32_t)(s * 1e3);
}

/* --baselines-only: the two pipelines over half the states, as a join would move. */
static void baselines_alone(const bench *b, unsigned rep)
{
    char sz[32];
    size_t n = b->d->n / 2 ? b->d->n / 2 : 1;
    double br = baseline(b, n, false), bz = baseline(b, n, true), mb = (double)b->d->size / 1e6;
    fprintf(stderr,
            "baselines N/2=%zu S=%s rep %u/%u: raw %.1f k st/s %.1f MB/s, zstd-1 %.1f k st/s "
            "%.1f MB/s of state\n",
            n, size_name(b->d->size, sz, sizeof(sz)), rep + 1, b->pr->reps, br / 1e3, br * mb,
            bz / 1e3, bz * mb);
}

/* ---- --svg: where the time went ------------------------------------------------------ */

/* One run per repetition, codec and scenario of a combination; NULL without --svg. */
static svg_run *traces_alloc(const bench *b)
{
    const params *pr = b->pr;
    if (!b->svg || pr->baselines_only) return NULL;
    svg_run *t = calloc((size_t)pr->reps * pr->n_codecs * SC_COUNT, sizeof(*t));
    if (!t) die("--svg: out of memory");
    return t;
}

static size_t trace_index(const params *pr, unsigned rep, unsigned ci, int sc)
{
    return ((size_t)rep * pr->n_codecs + ci) * SC_COUNT + (size_t)sc;
}

/* The run of a repetition, codec and scenario, emptied and named; NULL without --svg. */
static svg_run *trace_at(const bench *b, svg_run *traces, unsigned rep, unsigned ci, int sc)
{
    if (!traces) return NULL;
    svg_run *t = &traces[trace_index(b->pr, rep, ci, sc)];
    char label[96];
    run_label(b, sc, label, sizeof(label));
    svg_run_init(t, "%s", label);
    return t;
}

/* The source node's pauses. Its node was fresh, so its quantiles are this run's alone. */
static void trace_pauses(svg_run *t, const mig_result *m)
{
    if (!t) return;
    for (unsigned i = 0; i < CH_PAUSE_BUCKETS; i++)
        t->pause[i] = m->after.pause_hist[i] - m->before.pause_hist[i];
    t->p50_us = m->after.pause_p50_us;
    t->p99_us = m->after.pause_p99_us;
    t->max_us = m->after.pause_max_us;
}

/* The repetition whose rate is the median (of an even count, nearest the middle). */
static unsigned median_rep(const series *rate)
{
    double med = series_median(rate), best = INFINITY;
    unsigned k = 0;
    for (unsigned i = 0; i < rate->n; i++)
        if (fabs(rate->v[i] - med) < best) best = fabs(rate->v[i] - med), k = i;
    return k;
}

/* Each row of the combination keeps its median repetition's run for the file. */
static void traces_keep(bench *b, row *rows, const svg_run *traces, unsigned si, unsigned ni)
{
    const params *pr = b->pr;
    for (unsigned ci = 0; traces && ci < pr->n_codecs; ci++)
        for (int sc = 0; sc < SC_COUNT; sc++) {
            if (!(pr->scenarios & (1u << sc)) || b->nrows++ >= SVG_MAX_RUNS) continue;
            unsigned k = median_rep(&row_at(rows, pr, (unsigned)sc, si, ni, ci)->rate);
            svg_run *t = malloc(sizeof(*t));
            if (!t) die("--svg: out of memory");
            *t = traces[trace_index(pr, k, ci, sc)];
            size_t len = strlen(t->label);
            if (pr->reps > 1)
                snprintf(t->label + len, sizeof(t->label) - len, ", rep %u of %u (median)", k + 1,
                         pr->reps);
            b->drawn[b->nrows - 1] = t;
        }
}

static void write_svg(bench *b)
{
    const params *pr = b->pr;
    char sub[256];
    snprintf(sub, sizeof(sub),
             "%s, %u core(s) per node; from B's start (join) or A's ch_node_leave (leave)%s",
             b->ns.on ? "veth" : "loopback TCP", pr->cores,
             pr->reps > 1 ? "; each row's median repetition" : "");
    size_t n = b->nrows < SVG_MAX_RUNS ? b->nrows : SVG_MAX_RUNS;
    svg_doc doc = {.title = BENCH_NAME ": processes moved and pauses per run",
                   .subtitle = sub,
                   .runs = (const svg_run *const *)b->drawn,
                   .nruns = b->nrows};
    int rc = svg_write(b->svg, &doc);
    if (fclose(b->svg) != 0 && !rc) rc = -errno;
    b->svg = NULL;
    for (size_t k = 0; k < n; k++)
        free(b->drawn[k]);
    if (rc) die("--svg %s: %s", pr->svg, strerror(-rc));
    printf("charts: %s (processes moved over time, pause distribution)\n", pr->svg);
}

/* Every repetition of every codec and scenario over N processes of `size` bytes. */
static void run_combo(bench *b, row *rows, unsigned si, unsigned ni)
{
    const params *pr = b->pr;
    dataset d;
    dataset_init(&d, pr->sizes[si], pr->ns[ni]);
    b->d = &d;
    b->timeout_ms = timeout_for(pr, d.n, d.size);
    svg_run *traces = traces_alloc(b);
    for (unsigned rep = 0; pr->baselines_only && rep < pr->reps; rep++)
        baselines_alone(b, rep);
    for (unsigned rep = 0; !pr->baselines_only && rep < pr->reps; rep++)
        for (unsigned ci = 0; ci < pr->n_codecs; ci++)
            for (unsigned sc = 0; sc < SC_COUNT; sc++) {
                if (!(pr->scenarios & (1u << sc))) continue;
                b->codec = pr->codecs[ci];
                mig_result m = {.trace = trace_at(b, traces, rep, ci, (int)sc)};
                if (sc == SC_JOIN)
                    run_join(b, &m);
                else
                    run_leave(b, &m);
                double br = baseline(b, m.moved, false), bz = baseline(b, m.moved, true);
                record(row_at(rows, pr, sc, si, ni, ci), &m, d.size, br, bz);
                progress(b, (int)sc, rep, &m, br, bz);
                trace_pauses(m.trace, &m);
            }
    traces_keep(b, rows, traces, si, ni);
    free(traces);
    b->d = NULL;
    dataset_free(&d);
}

static void on_exit_cleanup(void)
{
    netns_cleanup();
}

static void install_cleanup(void)
{
    g_parent = getpid();
    if (atexit(on_exit_cleanup)) die("atexit failed");
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    int sigs[] = {SIGINT, SIGTERM, SIGHUP};
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        if (sigaction(sigs[i], &sa, NULL) < 0) die("sigaction: %s", strerror(errno));
    signal(SIGPIPE, SIG_IGN); /* a dead worker shows as EPIPE */
}

int BENCH_MAIN(int argc, char **argv)
{
    params pr;
    parse_args(argc, argv, &pr);
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
        fprintf(stderr, BENCH_NAME ": needs at least 2 CPUs\n");
        return 77; /* skipped, as a test would say */
    }
    static bench b; /* workers read it after fork: it lives as long as the program */
    b.pr = &pr;
    if (pr.svg && !(b.svg = fopen(pr.svg, "we"))) die("--svg %s: %s", pr.svg, strerror(errno));
    b.ns.fd[0] = b.ns.fd[1] = b.ns.self_fd = -1;
    ch_node_config def; /* the node's defaults, for what the command line leaves alone */
    ch_node_config_init(&def);
    b.batch = pr.batch_bytes ? pr.batch_bytes : def.migration.batch_bytes;
    b.inflight = pr.inflight_bytes ? pr.inflight_bytes : def.migration.inflight_bytes;
    if (getrandom(b.cookie, sizeof(b.cookie), 0) != (ssize_t)sizeof(b.cookie))
        die("getrandom: %s", strerror(errno));
    if (!getenv("CH_LOG")) ch_log_level_set(CH_LOG_WARN);
    install_cleanup();
    if (pr.veth) netns_setup(&b.ns, &pr);
    print_header(&b);
    row *rows = calloc((size_t)SC_COUNT * pr.n_sizes * pr.n_ns * pr.n_codecs, sizeof(*rows));
    if (!rows) die("out of memory");
    for (unsigned si = 0; si < pr.n_sizes; si++)
        for (unsigned ni = 0; ni < pr.n_ns; ni++)
            if ((uint64_t)pr.ns[ni] * pr.sizes[si] <= pr.max_bytes) run_combo(&b, rows, si, ni);
    if (!pr.baselines_only) print_table(&b, rows);
    if (b.svg) write_svg(&b);
    char load[64];
    load_avg(load, sizeof(load));
    printf("load average at the end: %s (a shared machine: compare ratios, not absolutes)\n", load);
    free(rows);
    return 0;
}
