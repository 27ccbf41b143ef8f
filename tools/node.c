/*
 * tools/node.c - `corehub node`: a node daemon hosting the built-in process types.
 *
 * Starts a clustered node (counter and blob types, the control handler of nodectl.c),
 * prints one line, `listening HOST:PORT node ID`, on stdout for whoever started it (tests
 * pass port 0 and read the real port from it), then waits. Logs go to stderr.
 *
 * Stopping: SIGTERM or SIGINT, or `corehub ctl leave`, asks for a graceful leave (the hub
 * adopts an epoch without this node, then the node stops) and the program exits 0. The
 * leave can take a few probe intervals; a second signal meanwhile stops the node at once
 * and the program exits 1. The signals are blocked in every thread and read from a
 * signalfd, so no code runs in a signal handler; the control thread wakes the main thread
 * through a pipe. The main thread performs the leave; a watchdog thread listens for the
 * second signal while it does.
 */
#define _GNU_SOURCE /* pipe2 */
#include "blob.h"
#include "cli.h"
#include "counter.h"
#include "nodectl.h"

#include <corehub/corehub.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

#define MAX_SEEDS 64

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
} node_opts;

typedef struct node_daemon {
    node_opts opt;
    void *cookie;
    size_t cookie_len;
    ch_node *node;
    nodectl ctl;
    int sig_fd;                 /* SIGTERM, SIGINT */
    int wake[2];                /* the control thread's requests (nodectl.h) */
    int quit_fd;                /* eventfd: tells the watchdog that the leave is over */
    char addr[CH_ADDR_MAX + 1]; /* HOST:PORT as announced */
    sigset_t sigs;              /* the signals this program reads from sig_fd */
} node_daemon;

static void usage(FILE *out)
{
    fprintf(out,
            "usage: corehub node --listen HOST:PORT [--seed HOST:PORT]... [--cores N]\n"
            "                    [--cookie-file F] [--hub ID] [--probe-ms N] [--sync-ms N]\n"
            "                    [--partition divergence|static:N|dynamic:PCT|majority]\n"
            "\n"
            "Runs a node of a hub, hosting the built-in process types (counter, blob), and\n"
            "prints 'listening HOST:PORT node ID' on stdout once it serves. 'corehub ctl'\n"
            "drives it. SIGTERM, SIGINT or 'ctl leave' leave the hub gracefully (exit 0); a\n"
            "second signal stops at once (exit 1).\n"
            "\n"
            "  --listen HOST:PORT  address for peers and control clients (port 0: any)\n"
            "  --seed HOST:PORT    a member to join the hub through (repeatable)\n"
            "  --cores N           reactor threads (default: every online CPU)\n"
            "  --cookie-file F     the hub's secret, mode 0600 (default: $COREHUB_COOKIE_FILE)\n"
            "  --hub ID            the hub's name (default corehub)\n"
            "  --probe-ms N        failure detection probe period (default 1000)\n"
            "  --sync-ms N         registry anti-entropy period (default 5000)\n"
            "  --partition S       partition strategy (default divergence)\n"
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

/* One option; CLI_OK, CLI_USAGE, or -1 for --help. */
static int parse_one(int c, node_opts *o)
{
    uint64_t v = 0;
    switch (c) {
    case 'l':
        o->listen = optarg;
        return CLI_OK;
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
        {"listen", required_argument, NULL, 'l'},  {"seed", required_argument, NULL, 's'},
        {"cores", required_argument, NULL, 'c'},   {"cookie-file", required_argument, NULL, 'k'},
        {"hub", required_argument, NULL, 'H'},     {"probe-ms", required_argument, NULL, 'p'},
        {"sync-ms", required_argument, NULL, 'y'}, {"partition", required_argument, NULL, 'P'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    int c, rc;
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
}

static int node_open(node_daemon *d)
{
    ch_node_config cfg;
    fill_config(d, &cfg);
    cfg.name = "node";
    int rc = ch_node_create(&cfg, &d->node);
    if (rc < 0) return rc;
    d->ctl = (nodectl){.node = d->node, .wake_fd = d->wake[1], .reply_cap = cfg.max_message};
    if ((rc = ch_node_register_type(d->node, counter_type())) < 0) return rc;
    if ((rc = ch_node_register_type(d->node, blob_type())) < 0) return rc;
    if ((rc = ch_node_set_ctl_handler(d->node, nodectl_handler, &d->ctl)) < 0) return rc;
    return ch_node_start(d->node);
}

/* The one line on stdout: the host as given, the port as bound. */
static void announce(node_daemon *d)
{
    const char *colon = strrchr(d->opt.listen, ':');
    int hlen = colon ? (int)(colon - d->opt.listen) : (int)strlen(d->opt.listen);
    snprintf(d->addr, sizeof(d->addr), "%.*s:%d", hlen, d->opt.listen, ch_node_port(d->node));
    printf("listening %s node %016" PRIx64 "\n", d->addr, ch_node_id(d->node));
    fflush(stdout);
}

/* ---- stop -------------------------------------------------------------------------------- */

enum { BY_SIGNAL = 0, BY_CTL = 1 };

/* Blocks until a signal or a `leave` request arrives: BY_SIGNAL, BY_CTL, or -1 when
 * polling failed. */
static int wait_for_leave(node_daemon *d)
{
    struct pollfd p[2] = {{.fd = d->sig_fd, .events = POLLIN},
                          {.fd = d->wake[0], .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0) {
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
    fflush(stderr);
    _exit(CLI_FAIL);
}

static int leave(node_daemon *d)
{
    pthread_t dog;
    int dog_rc = pthread_create(&dog, NULL, watchdog, d);
    if (dog_rc != 0) fprintf(stderr, "corehub node: no watchdog thread: %s\n", strerror(dog_rc));
    int rc = ch_node_leave(d->node);
    if (rc < 0) fprintf(stderr, "corehub node: leave: %s\n", ch_strerror(rc));
    if (dog_rc == 0) {
        uint64_t one = 1;
        /* An eventfd write of 1 only fails on a counter overflow: never here. Were it to,
         * the join below would wait forever, so fail loudly instead. */
        if (write(d->quit_fd, &one, sizeof(one)) != sizeof(one)) abort();
        pthread_join(dog, NULL);
    }
    return rc;
}

static void daemon_close(node_daemon *d)
{
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
        if (by >= 0 && leave(&d) == 0) code = CLI_OK;
    }
    daemon_close(&d);
    return code;
}
