/*
 * tools/node.c - `corehub node`: a node daemon hosting the built-in process types.
 *
 * Starts a clustered node (counter, blob and seq types, the migration options of its
 * flags, counting hooks and the control handler of nodectl.c), prints one line,
 * `listening HOST:PORT node ID`, on stdout for whoever started it (tests pass port 0 and
 * read the real port from it), then waits. Logs go to stderr.
 *
 * Stopping: SIGTERM or SIGINT, or `corehub ctl leave`, asks for a graceful leave (the hub
 * adopts an epoch without this node, every process is handed over, then the node stops).
 * The program then prints `left: moved N processes, F not moved` on stderr and exits 0
 * when everything moved, EXIT_NOT_MOVED otherwise. The leave can take a while; a second
 * signal meanwhile stops the node at once and the program exits 1. The signals are blocked in every
 * thread and read from a signalfd, so no code runs in a signal handler; the control thread wakes
 * the main thread through a pipe. The main thread performs the leave; a watchdog thread listens for
 * the second signal while it does.
 */
#define _GNU_SOURCE /* pipe2 */
#include "blob.h"
#include "cli.h"
#include "counter.h"
#include "kv.h"
#include "metrics.h"
#include "nodectl.h"
#include "seq.h"

#include <corehub/corehub.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define MAX_SEEDS      64
#define EXIT_NOT_MOVED 3 /* left, but some processes did not move */

typedef struct node_opts {
    const char *listen;
    const char *seeds[MAX_SEEDS];
    size_t nseeds;
    unsigned cores; /* 0: the node's default */
    const char *cookie_file;
    const char *hub;
    uint32_t probe_ms, sync_ms; /* 0: the node's defaults */
    ch_partition_strategy partition;
    uint32_t quorum_size, quorum_percent;
    ch_migration_config mig; /* the library's defaults, then the flags */
    const char *metrics;     /* --metrics HOST:PORT, or NULL */
    int kv_port;             /* --kv-port: the Redis-protocol service (kv.h); -1: none */
    uint64_t kv_reply_limit; /* --kv-reply-limit */
    uint64_t seed_timeout_s; /* --seed-timeout: 0 waits forever */
} node_opts;

typedef struct node_daemon {
    node_opts opt;
    void *cookie;
    size_t cookie_len;
    ch_node *node;
    metrics_server *metrics; /* --metrics */
    kv_service *kv;          /* --kv-port */
    nodectl ctl;
    int sig_fd;                 /* SIGTERM, SIGINT */
    int wake[2];                /* the control thread's requests (nodectl.h) */
    int quit_fd;                /* eventfd: tells the watchdog that the leave is over */
    char addr[CH_ADDR_MAX + 1]; /* HOST:PORT as announced */
    sigset_t sigs;              /* the signals this program reads from sig_fd */
    ch_node_stats before;       /* when the leave began: the report counts from there */
    atomic_bool reported;       /* the `left:` line was printed (main thread or watchdog) */
} node_daemon;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: corehub node --listen HOST:PORT [--seed HOST:PORT]... [--cores N]\n"
            "                    [--seed-timeout S] [--cookie-file F] [--hub ID] [--probe-ms N]\n"
            "                    [--sync-ms N]\n"
            "                    [--partition divergence|static:N|dynamic:PCT|majority]\n"
            "                    [--strategy coldswap|hotswap] [--handover] [--confirm-handover]\n"
            "                    [--retention MS] [--child-timeout MS] [--leave-wait MS]\n"
            "                    [--codec SPEC] [--batch-bytes N] [--inflight-bytes N]\n"
            "                    [--lanes|--no-lanes]\n"
            "                    [--metrics HOST:PORT] [--kv-port PORT] [--kv-reply-limit BYTES]\n"
            "\n"
            "Runs a node of a hub, hosting the built-in process types (counter, blob, seq, kv),\n"
            "and prints 'listening HOST:PORT node ID' on stdout once it serves. 'corehub ctl'\n"
            "drives it. SIGTERM, SIGINT or 'ctl leave' leave the hub gracefully: every process\n"
            "is handed over, then the node prints 'left: moved N processes, F not moved' on\n"
            "stderr (F: every process it held that was not handed over, stopped with its\n"
            "state; all of them when it was alone) and exits 0 when F is 0, 3 when some did\n"
            "not move, 1 when the leave failed. A second signal stops at once (exit 1, after\n"
            "the same line). A port in use, or no seed answering in time, is an error (1).\n"
            "\n"
            "  --listen HOST:PORT  address for peers and control clients (port 0: any)\n"
            "  --seed HOST:PORT    a member to join the hub through (repeatable)\n"
            "  --seed-timeout S    exit 1 when no seed answered within S seconds (30; 0: wait\n"
            "                      forever)\n"
            "  --cores N           reactor threads (default: every online CPU)\n"
            "  --cookie-file F     the hub's secret, mode 0600 (default: $COREHUB_COOKIE_FILE)\n"
            "  --hub ID            the hub's name (default corehub)\n"
            "  --probe-ms N        failure detection probe period (default 1000)\n"
            "  --sync-ms N         registry anti-entropy period (default 5000)\n"
            "  --partition S       partition strategy (default divergence)\n"
            "  --strategy S        migration strategy: coldswap (default; the state restarts)\n"
            "                      or hotswap (the process moves)\n"
            "  --handover          hotswap: the state moves along\n"
            "  --confirm-handover  hotswap: the new node confirms each process once it ran\n"
            "                      its forwarded messages\n"
            "  --retention MS      how long the old node waits for a confirmation (5000)\n"
            "  --child-timeout MS  how long the new node holds early messages (30000)\n"
            "  --leave-wait MS     graceful leave: the longest wait for confirmations (30000)\n"
            "  --codec SPEC        handover codec: auto, none, zstd[:LEVEL], auto:LEVEL (auto)\n"
            "  --batch-bytes N     handover frame size, 65536..1048576 (262144)\n"
            "  --inflight-bytes N  handover bytes unconfirmed per core (1048576)\n"
            "  --lanes             handover frames on each core's data lanes to the peer\n"
            "                      cores (a port per core on the --listen host; the\n"
            "                      default); --no-lanes: through the coordinators\n"
            "  --metrics HOST:PORT serve Prometheus metrics over HTTP at /metrics (port 0:\n"
            "                      any; `ctl stats` tells metrics_port)\n"
            "  --kv-port PORT      serve the Redis protocol on the --listen host, each key a\n"
            "                      'kv' process (port 0: any; the listening line then ends\n"
            "                      with 'kv HOST:PORT')\n"
            "  --kv-reply-limit B  bytes of answers a kv client may hold before it is closed\n"
            "                      (67108864, at least 1048576; reading its commands pauses\n"
            "                      at an eighth of it)\n"
            "  -h, --help          this text\n");
}

/* "divergence", "static:N", "dynamic:PCT" or "majority". */
static int parse_partition(const char *s, node_opts *o)
{
    uint64_t v = 0;
    if (strcmp(s, "divergence") == 0) {
        o->partition = CH_PARTITION_DIVERGENCE;
    } else if (strcmp(s, "majority") == 0) {
        o->partition = CH_PARTITION_MAJORITY_QUORUM;
    } else if (strncmp(s, "static:", 7) == 0) {
        if (cli_parse_u64("--partition static:N", s + 7, 1, 1024, &v)) return -1;
        o->partition = CH_PARTITION_STATIC_QUORUM;
        o->quorum_size = (uint32_t)v;
    } else if (strncmp(s, "dynamic:", 8) == 0) {
        if (cli_parse_u64("--partition dynamic:PCT", s + 8, 1, 100, &v)) return -1;
        o->partition = CH_PARTITION_DYNAMIC_QUORUM;
        o->quorum_percent = (uint32_t)v;
    } else {
        fprintf(stderr,
                "corehub node: --partition must be divergence, static:N, dynamic:PCT "
                "or majority, not '%s'\n",
                s);
        return -1;
    }
    return 0;
}

/* "auto", "none", "zstd" or "auto"/"zstd" + ":LEVEL"; the node checks the level's range. */
static int parse_codec(const char *s, node_opts *o)
{
    const char *colon = strchr(s, ':');
    size_t name = colon ? (size_t)(colon - s) : strlen(s);
    bool ok = (name == 4 && strncmp(s, "auto", 4) == 0) ||
              (name == 4 && strncmp(s, "zstd", 4) == 0) || (!colon && strcmp(s, "none") == 0);
    if (ok && colon) {
        const char *l = colon + 1 + (colon[1] == '-');
        ok = *l != '\0' && strlen(l) <= 3 && strspn(l, "0123456789") == strlen(l);
    }
    if (!ok) {
        fprintf(stderr,
                "corehub node: --codec must be auto, none, zstd, zstd:LEVEL or auto:LEVEL, "
                "not '%s'\n",
                s);
        return -1;
    }
    o->mig.codec = s;
    return 0;
}

static int parse_strategy(const char *s, node_opts *o)
{
    if (strcmp(s, "coldswap") == 0) {
        o->mig.strategy = CH_MIGRATE_COLDSWAP;
    } else if (strcmp(s, "hotswap") == 0) {
        o->mig.strategy = CH_MIGRATE_HOTSWAP;
    } else {
        fprintf(stderr, "corehub node: --strategy must be coldswap or hotswap, not '%s'\n", s);
        return -1;
    }
    return 0;
}

/* Long options without a short form. */
enum {
    OPT_STRATEGY = 256,
    OPT_HANDOVER,
    OPT_CONFIRM,
    OPT_RETENTION,
    OPT_CHILD_TIMEOUT,
    OPT_LEAVE_WAIT,
    OPT_CODEC,
    OPT_BATCH_BYTES,
    OPT_INFLIGHT_BYTES,
    OPT_NO_LANES,
    OPT_LANES,
};

#define MS_MAX 3600000 /* an hour: the bound of every millisecond flag */

/* A migration option; CLI_OK or CLI_USAGE. */
static int parse_migration(int c, node_opts *o)
{
    uint64_t v = 0;
    ch_migration_config *m = &o->mig;
    switch (c) {
    case OPT_STRATEGY:
        return parse_strategy(optarg, o) ? CLI_USAGE : CLI_OK;
    case OPT_HANDOVER:
        m->handover = 1;
        return CLI_OK;
    case OPT_CONFIRM:
        m->confirm_handover = 1;
        return CLI_OK;
    case OPT_NO_LANES:
    case OPT_LANES:
        m->lanes = c == OPT_LANES;
        return CLI_OK;
    case OPT_CODEC:
        return parse_codec(optarg, o) ? CLI_USAGE : CLI_OK;
    case OPT_RETENTION:
    case OPT_CHILD_TIMEOUT:
    case OPT_LEAVE_WAIT: {
        static const char *const names[] = {"--retention", "--child-timeout", "--leave-wait"};
        if (cli_parse_u64(names[c - OPT_RETENTION], optarg, 1, MS_MAX, &v)) return CLI_USAGE;
        uint32_t *f[] = {&m->retention_ms, &m->child_timeout_ms, &m->leave_wait_ms};
        *f[c - OPT_RETENTION] = (uint32_t)v;
        return CLI_OK;
    }
    case OPT_BATCH_BYTES:
        if (cli_parse_u64("--batch-bytes", optarg, 65536, 1048576, &v)) return CLI_USAGE;
        m->batch_bytes = (size_t)v;
        return CLI_OK;
    case OPT_INFLIGHT_BYTES:
        if (cli_parse_u64("--inflight-bytes", optarg, 65536, (uint64_t)1 << 36, &v))
            return CLI_USAGE;
        m->inflight_bytes = (size_t)v;
        return CLI_OK;
    default:
        return CLI_USAGE;
    }
}

/* One option; CLI_OK, CLI_USAGE, or -1 for --help. */
static int parse_one(int c, node_opts *o)
{
    if (c >= OPT_STRATEGY) return parse_migration(c, o);
    uint64_t v = 0;
    switch (c) {
    case 'l':
        o->listen = optarg;
        return CLI_OK;
    case 'M':
        o->metrics = optarg;
        return CLI_OK;
    case 'K':
        if (cli_parse_u64("--kv-port", optarg, 0, 65535, &v)) return CLI_USAGE;
        o->kv_port = (int)v;
        return CLI_OK;
    case 'T':
        return cli_parse_u64("--seed-timeout", optarg, 0, 86400, &o->seed_timeout_s) ? CLI_USAGE
                                                                                     : CLI_OK;
    case 'R':
        return cli_parse_u64("--kv-reply-limit", optarg, KV_REPLY_LIMIT_MIN, SIZE_MAX,
                             &o->kv_reply_limit)
                   ? CLI_USAGE
                   : CLI_OK;
    case 's':
        if (o->nseeds == MAX_SEEDS) {
            fprintf(stderr, "corehub node: at most %d --seed\n", MAX_SEEDS);
            return CLI_USAGE;
        }
        o->seeds[o->nseeds++] = optarg;
        return CLI_OK;
    case 'c':
        if (cli_parse_u64("--cores", optarg, 1, 1024, &v)) return CLI_USAGE;
        o->cores = (unsigned)v;
        return CLI_OK;
    case 'k':
        o->cookie_file = optarg;
        return CLI_OK;
    case 'H':
        o->hub = optarg;
        return CLI_OK;
    case 'p':
        if (cli_parse_u64("--probe-ms", optarg, 10, 600000, &v)) return CLI_USAGE;
        o->probe_ms = (uint32_t)v;
        return CLI_OK;
    case 'y':
        if (cli_parse_u64("--sync-ms", optarg, 10, 3600000, &v)) return CLI_USAGE;
        o->sync_ms = (uint32_t)v;
        return CLI_OK;
    case 'P':
        return parse_partition(optarg, o) ? CLI_USAGE : CLI_OK;
    case 'h':
        usage(stdout);
        return -1;
    default: /* getopt_long has said what was wrong */
        fprintf(stderr, "Try 'corehub node --help'.\n");
        return CLI_USAGE;
    }
}

static int parse_opts(int argc, char **argv, node_opts *o)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"seed", required_argument, NULL, 's'},
        {"cores", required_argument, NULL, 'c'},
        {"cookie-file", required_argument, NULL, 'k'},
        {"hub", required_argument, NULL, 'H'},
        {"probe-ms", required_argument, NULL, 'p'},
        {"sync-ms", required_argument, NULL, 'y'},
        {"partition", required_argument, NULL, 'P'},
        {"strategy", required_argument, NULL, OPT_STRATEGY},
        {"handover", no_argument, NULL, OPT_HANDOVER},
        {"confirm-handover", no_argument, NULL, OPT_CONFIRM},
        {"retention", required_argument, NULL, OPT_RETENTION},
        {"child-timeout", required_argument, NULL, OPT_CHILD_TIMEOUT},
        {"leave-wait", required_argument, NULL, OPT_LEAVE_WAIT},
        {"codec", required_argument, NULL, OPT_CODEC},
        {"batch-bytes", required_argument, NULL, OPT_BATCH_BYTES},
        {"inflight-bytes", required_argument, NULL, OPT_INFLIGHT_BYTES},
        {"no-lanes", no_argument, NULL, OPT_NO_LANES},
        {"lanes", no_argument, NULL, OPT_LANES},
        {"metrics", required_argument, NULL, 'M'},
        {"kv-port", required_argument, NULL, 'K'},
        {"kv-reply-limit", required_argument, NULL, 'R'},
        {"seed-timeout", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    ch_node_config defaults;
    ch_node_config_init(&defaults);
    o->mig = defaults.migration;
    int c, rc;
    o->kv_port = -1;
    o->kv_reply_limit = KV_REPLY_LIMIT_DEFAULT;
    o->seed_timeout_s = 30;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
        if ((rc = parse_one(c, o)) != CLI_OK) return rc;
    if (optind < argc) {
        fprintf(stderr, "corehub node: unexpected argument '%s'\n", argv[optind]);
        return CLI_USAGE;
    }
    if (!o->listen) {
        fprintf(stderr, "corehub node: --listen HOST:PORT is required\n");
        return CLI_USAGE;
    }
    if (o->hub && (!*o->hub || strlen(o->hub) > CH_HUB_ID_MAX)) {
        fprintf(stderr, "corehub node: --hub must be 1 to %d bytes\n", CH_HUB_ID_MAX);
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* ---- start ------------------------------------------------------------------------------- */

static int read_cookie(node_daemon *d)
{
    const char *path = d->opt.cookie_file ? d->opt.cookie_file : getenv("COREHUB_COOKIE_FILE");
    if (!path || !*path) {
        fprintf(stderr, "corehub node: no cookie: pass --cookie-file FILE or set "
                        "COREHUB_COOKIE_FILE (a secret of 16+ bytes, mode 0600)\n");
        return -1;
    }
    int rc = ch_cookie_read(path, &d->cookie, &d->cookie_len);
    if (rc == 0) return 0;
    if (rc == -EPERM)
        fprintf(stderr, "corehub node: cookie file %s is readable by others: chmod 600 it\n", path);
    else if (rc == -EINVAL)
        fprintf(stderr, "corehub node: cookie file %s: not a file of 16 bytes or more\n", path);
    else
        fprintf(stderr, "corehub node: cookie file %s: %s\n", path, ch_strerror(rc));
    return -1;
}

/* Blocked here, before any thread exists, the signals stay blocked in every thread the
 * node creates: they can only be read from sig_fd. */
static int open_fds(node_daemon *d)
{
    sigemptyset(&d->sigs);
    sigaddset(&d->sigs, SIGTERM);
    sigaddset(&d->sigs, SIGINT);
    if (pthread_sigmask(SIG_BLOCK, &d->sigs, NULL) != 0) return -1;
    signal(SIGPIPE, SIG_IGN); /* a closed stdout must not kill the node */
    d->sig_fd = signalfd(-1, &d->sigs, SFD_CLOEXEC);
    /* Non-blocking: a control request must never wait on a main thread busy leaving. */
    if (d->sig_fd < 0 || pipe2(d->wake, O_CLOEXEC | O_NONBLOCK) < 0) return -1;
    d->quit_fd = eventfd(0, EFD_CLOEXEC);
    return d->quit_fd < 0 ? -1 : 0;
}

static void fill_config(const node_daemon *d, ch_node_config *cfg)
{
    ch_node_config_init(cfg);
    const node_opts *o = &d->opt;
    if (o->cores) cfg->cores = o->cores;
    ch_cluster_config *cc = &cfg->cluster;
    cc->listen = o->listen;
    cc->seeds = o->seeds;
    cc->nseeds = o->nseeds;
    cc->cookie = d->cookie;
    cc->cookie_len = d->cookie_len;
    if (o->hub) cc->hub_id = o->hub;
    if (o->probe_ms) {
        cc->probe_interval_ms = o->probe_ms;
        cc->probe_timeout_ms = o->probe_ms / 2 ? o->probe_ms / 2 : 1;
    }
    if (o->sync_ms) cc->sync_interval_ms = o->sync_ms;
    cc->partition = o->partition;
    if (o->quorum_size) cc->quorum_size = o->quorum_size;
    if (o->quorum_percent) cc->quorum_percent = o->quorum_percent;
    cfg->migration = o->mig;
}

/* ---- migration hooks: counted for `ctl stats` (nodectl.h) ------------------------------- */

static void on_children_migrated(void *ud, ch_hook_event *ev)
{
    nodectl_hooks *h = ud;
    atomic_fetch_add(&h->migrated_events, 1);
    atomic_fetch_add(&h->migrated_ids, ev->count);
}

static void on_migration_failed(void *ud, ch_hook_event *ev)
{
    (void)ev;
    nodectl_hooks *h = ud;
    atomic_fetch_add(&h->failed, 1);
}

static void on_pre_children_redistribution(void *ud, ch_hook_event *ev)
{
    nodectl_hooks *h = ud;
    atomic_fetch_add(&h->redist_events, 1);
    atomic_fetch_add(&h->redist_ids, ev->count);
}

static int register_hooks(node_daemon *d)
{
    static const struct {
        ch_hook_point point;
        const char *id;
        ch_hook_fn fn;
    } hooks[] = {
        {CH_HOOK_CHILDREN_MIGRATED, "corehub-node-migrated", on_children_migrated},
        {CH_HOOK_MIGRATION_FAILED, "corehub-node-failed", on_migration_failed},
        {CH_HOOK_PRE_CHILDREN_REDISTRIBUTION, "corehub-node-redistribution",
         on_pre_children_redistribution},
    };
    for (size_t i = 0; i < sizeof(hooks) / sizeof(hooks[0]); i++) {
        int rc =
            ch_hook_register(d->node, hooks[i].point, hooks[i].id, 0, hooks[i].fn, &d->ctl.hooks);
        if (rc < 0) return rc;
    }
    return 0;
}

/* The Redis-protocol service on the --listen host, when asked for. */
static int open_kv(node_daemon *d)
{
    if (d->opt.kv_port < 0) return 0;
    const char *colon = strrchr(d->opt.listen, ':');
    int hlen = colon ? (int)(colon - d->opt.listen) : (int)strlen(d->opt.listen);
    char addr[CH_ADDR_MAX + 1];
    snprintf(addr, sizeof(addr), "%.*s:%d", hlen, d->opt.listen, d->opt.kv_port);
    int rc = kv_open(d->node, addr, (size_t)d->opt.kv_reply_limit, &d->kv);
    if (rc < 0)
        fprintf(stderr, "corehub node: --kv-port %d: %s\n", d->opt.kv_port, ch_strerror(rc));
    return rc;
}

static int node_open(node_daemon *d)
{
    ch_node_config cfg;
    fill_config(d, &cfg);
    cfg.name = "node";
    int rc = ch_node_create(&cfg, &d->node);
    if (rc < 0) return rc;
    if ((rc = nodectl_init(&d->ctl, d->node, d->wake[1], cfg.max_message)) < 0) return rc;
    const ch_process_type *types[] = {counter_type(), blob_type(), seq_type(), kv_type()};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if ((rc = ch_node_type_register(d->node, types[i])) < 0) return rc;
    if ((rc = register_hooks(d)) < 0) return rc;
    if ((rc = ch_node_ctl_handler_set(d->node, nodectl_handler, &d->ctl)) < 0) return rc;
    if ((rc = ch_node_start(d->node)) < 0) return rc;
    if (d->opt.metrics && (rc = metrics_serve(d->node, d->opt.metrics, &d->metrics)) < 0) {
        fprintf(stderr, "corehub node: --metrics %s: %s\n", d->opt.metrics, ch_strerror(rc));
        return rc;
    }
    atomic_store(&d->ctl.metrics_port, metrics_port(d->metrics));
    return open_kv(d);
}

/* The one line on stdout: the host as given, the port as bound. */
static void announce(node_daemon *d)
{
    const char *colon = strrchr(d->opt.listen, ':');
    int hlen = colon ? (int)(colon - d->opt.listen) : (int)strlen(d->opt.listen);
    snprintf(d->addr, sizeof(d->addr), "%.*s:%d", hlen, d->opt.listen, ch_node_port(d->node));
    printf("listening %s node %016" PRIx64, d->addr, ch_node_id(d->node));
    if (d->kv) printf(" kv %.*s:%d", hlen, d->opt.listen, kv_port(d->kv));
    printf("\n");
    fflush(stdout);
}

/* ---- stop -------------------------------------------------------------------------------- */

enum { BY_SIGNAL = 0, BY_CTL = 1, NO_SEED = 2 };

#define SEED_POLL_MS 100 /* how often a node that waits for its seeds looks at its members */

/* Whether the node still waits for a seed to answer: seeds were given and no other member
 * is known yet. Through the public API (the node's own view of the hub). */
static bool waits_for_seed(node_daemon *d)
{
    ch_node_stats s;
    return d->opt.nseeds > 0 && ch_node_stats_get(d->node, &s) == 0 && s.members_alive < 2;
}

/* The poll timeout while a seed is awaited (-1: none), or 0 with *expired set. */
static int seed_wait_ms(node_daemon *d, uint64_t deadline_ns, bool *expired)
{
    *expired = false;
    if (!deadline_ns || !waits_for_seed(d)) return -1; /* joined, or no deadline */
    uint64_t now = cli_now_ns();
    if (now >= deadline_ns) { /* compared, never subtracted past: no unsigned wrap */
        *expired = true;
        return 0;
    }
    uint64_t left_ms = (deadline_ns - now) / 1000000 + 1;
    return left_ms < SEED_POLL_MS ? (int)left_ms : SEED_POLL_MS;
}

static void say_no_seed(const node_daemon *d)
{
    fprintf(stderr, "corehub node: no seed answered within %" PRIu64 " s (--seed",
            d->opt.seed_timeout_s);
    for (size_t i = 0; i < d->opt.nseeds; i++)
        fprintf(stderr, " %s", d->opt.seeds[i]);
    fprintf(stderr, "): check the addresses, the cookie and --hub; stopping "
                    "(--seed-timeout 0 waits forever)\n");
}

/* Blocks until a signal or a `leave` request arrives: BY_SIGNAL, BY_CTL, NO_SEED when
 * seeds were given and none answered within --seed-timeout, or -1 when polling failed. */
static int wait_for_leave(node_daemon *d)
{
    struct pollfd p[2] = {{.fd = d->sig_fd, .events = POLLIN},
                          {.fd = d->wake[0], .events = POLLIN}};
    uint64_t deadline_ns = d->opt.seed_timeout_s && d->opt.nseeds
                               ? cli_now_ns() + d->opt.seed_timeout_s * 1000000000u
                               : 0;
    for (;;) {
        bool expired;
        int timeout_ms = seed_wait_ms(d, deadline_ns, &expired);
        if (expired) {
            say_no_seed(d);
            return NO_SEED;
        }
        if (timeout_ms < 0) deadline_ns = 0; /* joined: the deadline no longer applies */
        int ready = poll(p, 2, timeout_ms);
        if (ready == 0) continue;
        if (ready < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        struct signalfd_siginfo si;
        if ((p[0].revents & POLLIN) && read(d->sig_fd, &si, sizeof(si)) == sizeof(si)) {
            fprintf(stderr, "corehub node: %s: leaving the hub\n", strsignal((int)si.ssi_signo));
            return BY_SIGNAL;
        }
        char b;
        if ((p[1].revents & POLLIN) && read(d->wake[0], &b, 1) == 1 && b == NODECTL_WAKE_LEAVE) {
            fprintf(stderr, "corehub node: leave requested: leaving the hub\n");
            return BY_CTL;
        }
    }
}

/*
 * Makes sure the answer to `ctl leave` left before the leave stops the node: the control
 * thread posts that answer only after its handler returned, which can be after this
 * thread woke and began to stop the node. The control thread runs requests in order, so
 * once our own request is answered, the earlier answer was sent before it. Best effort: a
 * failure only risks that one answer.
 */
static void flush_ctl_answers(node_daemon *d)
{
    ch_ctl *c = NULL;
    const char *argv[] = {"epoch"};
    int status = 0;
    char *text = NULL;
    int rc = ch_ctl_open(d->addr, d->opt.hub, d->cookie, d->cookie_len, 2000, &c);
    if (rc == 0) rc = ch_ctl_exec(c, 1, argv, &status, &text);
    if (rc < 0) fprintf(stderr, "corehub node: flushing control answers: %s\n", ch_strerror(rc));
    free(text);
    ch_ctl_close(c);
}

/*
 * One line on stderr, `left: moved N processes, F not moved`, from the node's counters
 * since the leave began (they stay readable after the node stopped): N processes handed
 * over and confirmed, F the processes it still held when it stopped (they were stopped
 * here, state and all). `finished`: ch_node_leave returned and counted them; otherwise (a
 * second signal cut it short) F is every process held when the leave began and not
 * confirmed elsewhere, or the moves that failed if more. Counting F from the failed moves
 * alone missed the processes that never left, and counted a move that failed while its
 * target died and then went to the target's successor; a node alone in its hub, with
 * nowhere to move them, said "0 not moved". Printed once, by whichever thread ends the
 * leave. Returns F.
 */
static uint64_t report_leave(node_daemon *d, bool finished)
{
    ch_node_stats s;
    int rc = ch_node_stats_get(d->node, &s);
    if (rc < 0) {
        fprintf(stderr, "corehub node: left, without statistics: %s\n", ch_strerror(rc));
        return 1; /* unknown: not "everything moved" */
    }
    uint64_t moved = s.migrated_out - d->before.migrated_out;
    uint64_t held = d->before.processes,
             failed = s.migration_failures - d->before.migration_failures;
    uint64_t not_moved = held > moved ? held - moved : 0;
    if (failed + s.migrating > not_moved) not_moved = failed + s.migrating; /* started later */
    if (finished) not_moved = s.left_behind;
    bool alone = d->before.members_alive < 2 && not_moved > 0;
    if (!atomic_exchange(&d->reported, true))
        fprintf(stderr,
                "corehub node: left: moved %" PRIu64 " processes, %" PRIu64 " not moved%s\n", moved,
                not_moved,
                alone ? " (no other member to take them: stopped here, their state lost)" : "");
    return not_moved;
}

/* While the main thread leaves: a second signal stops the node now. The process exits
 * from here, because the main thread may still be inside ch_node_leave's bounded wait. */
static void *watchdog(void *arg)
{
    node_daemon *d = arg;
    struct pollfd p[2] = {{.fd = d->sig_fd, .events = POLLIN},
                          {.fd = d->quit_fd, .events = POLLIN}};
    while (poll(p, 2, -1) < 0 && errno == EINTR) {
    }
    if (p[1].revents & POLLIN) return NULL; /* the leave is over */
    fprintf(stderr, "corehub node: second signal: stopping now\n");
    int rc = ch_node_stop(d->node);
    if (rc < 0) fprintf(stderr, "corehub node: stop: %s\n", ch_strerror(rc));
    report_leave(d, false);
    fflush(stderr);
    _exit(CLI_FAIL);
}

/* The leave, and the program's exit code: CLI_OK when every process moved,
 * EXIT_NOT_MOVED when some did not, CLI_FAIL when the leave itself failed. */
static int leave(node_daemon *d)
{
    if (ch_node_stats_get(d->node, &d->before) < 0) memset(&d->before, 0, sizeof(d->before));
    pthread_t dog;
    int dog_rc = pthread_create(&dog, NULL, watchdog, d);
    if (dog_rc != 0) fprintf(stderr, "corehub node: no watchdog thread: %s\n", strerror(dog_rc));
    int rc = ch_node_leave(d->node);
    if (rc < 0 && rc != CH_EPARTIAL) fprintf(stderr, "corehub node: leave: %s\n", ch_strerror(rc));
    uint64_t not_moved = report_leave(d, rc >= 0 || rc == CH_EPARTIAL);
    if (dog_rc == 0) {
        uint64_t one = 1;
        /* An eventfd write of 1 only fails on a counter overflow: never here. Were it to,
         * the join below would wait forever, so fail loudly instead. */
        if (write(d->quit_fd, &one, sizeof(one)) != sizeof(one)) abort();
        pthread_join(dog, NULL);
    }
    if (rc < 0 && rc != CH_EPARTIAL) return CLI_FAIL;
    return rc == CH_EPARTIAL || not_moved ? EXIT_NOT_MOVED : CLI_OK;
}

static void daemon_close(node_daemon *d)
{
    nodectl_close(&d->ctl);    /* the pumps call into the node */
    metrics_close(d->metrics); /* a server goes before its node */
    kv_close(d->kv);
    if (d->node) ch_node_destroy(d->node); /* joins the control thread too */
    nodectl_free(&d->ctl);
    int fds[] = {d->sig_fd, d->wake[0], d->wake[1], d->quit_fd};
    for (size_t i = 0; i < sizeof(fds) / sizeof(fds[0]); i++)
        if (fds[i] >= 0) close(fds[i]);
    if (d->cookie) explicit_bzero(d->cookie, d->cookie_len);
    free(d->cookie);
}

int cmd_node(int argc, char **argv)
{
    node_daemon d = {.sig_fd = -1, .wake = {-1, -1}, .quit_fd = -1};
    int rc = parse_opts(argc, argv, &d.opt);
    if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
    if (read_cookie(&d) < 0) {
        daemon_close(&d);
        return CLI_USAGE;
    }
    int code = CLI_FAIL;
    if (open_fds(&d) < 0) {
        fprintf(stderr, "corehub node: signals: %s\n", strerror(errno));
    } else if ((rc = node_open(&d)) < 0) {
        fprintf(stderr, "corehub node: cannot start on %s: %s\n", d.opt.listen, ch_strerror(rc));
    } else {
        announce(&d);
        int by = wait_for_leave(&d);
        if (by == BY_CTL) flush_ctl_answers(&d);
        if (by == BY_SIGNAL || by == BY_CTL) code = leave(&d);
    }
    daemon_close(&d);
    return code;
}
