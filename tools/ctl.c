/*
 * tools/ctl.c - `corehub ctl`: runs one control command on a node and prints its answer.
 *
 * The command and its arguments go to the node as they are (the node's control handler,
 * nodectl.c, parses them), so this file only knows how to reach and authenticate: the
 * options before the command are the client's, everything from the command on is the
 * node's. The answer's text goes to stdout untouched and its status becomes the exit code;
 * exit code 2 is reserved for "the node was never asked" (usage, connection, handshake).
 */
#include "cli.h"

#include <corehub/corehub.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CTL_ARGS_MAX 64 /* what the node accepts in one request */

typedef struct ctl_opts {
    const char *node;
    const char *cookie_file;
    const char *hub;
    uint32_t timeout_ms;
    int json;
} ctl_opts;

static void usage(FILE *out)
{
    fprintf(out, "usage: corehub ctl --node HOST:PORT [--cookie-file F] [--hub ID] [--timeout MS]\n"
                 "                   [--json] CMD [ARGS...]\n"
                 "\n"
                 "Runs CMD on a node and prints its answer; exits with the command's status\n"
                 "(0 ok, 1 usage, 3 not found, 4 failed) or 2 when the node could not be asked.\n"
                 "\n"
                 "  --node HOST:PORT  the node's --listen address\n"
                 "  --cookie-file F   the hub's secret (default: $COREHUB_COOKIE_FILE)\n"
                 "  --hub ID          the hub's name (default corehub)\n"
                 "  --timeout MS      for connecting and for the answer (default 10000)\n"
                 "  --json            the answer as JSON\n"
                 "  -h, --help        this text\n"
                 "\n"
                 "commands: members, procs [--local] [--tag T], lookup ID, start ID TYPE [ARG],\n"
                 "  start-many PREFIX COUNT TYPE, stop ID..., send ID MSG, call ID MSG, stats,\n"
                 "  epoch, partition-reset, leave, help ('corehub ctl --node A help' says more);\n"
                 "  for migrations: start-counters, start-blobs, send-many, pump, pump-stop,\n"
                 "  pump-wait, pumps, check-seq, check-counters, check-blobs, placement\n");
}

/* One option; CLI_OK, CLI_USAGE, or -1 for --help. */
static int parse_one(int c, ctl_opts *o)
{
    uint64_t v = 0;
    switch (c) {
    case 'n':
        o->node = optarg;
        return CLI_OK;
    case 'k':
        o->cookie_file = optarg;
        return CLI_OK;
    case 'H':
        o->hub = optarg;
        return CLI_OK;
    case 't':
        if (cli_parse_u64("--timeout", optarg, 1, 3600000, &v)) return CLI_USAGE;
        o->timeout_ms = (uint32_t)v;
        return CLI_OK;
    case 'j':
        o->json = 1;
        return CLI_OK;
    case 'h':
        usage(stdout);
        return -1;
    default: /* getopt_long has said what was wrong */
        fprintf(stderr, "Try 'corehub ctl --help'.\n");
        return CLI_USAGE;
    }
}

/* Options stop at the command ("+"): `procs --local` belongs to the node. */
static int parse_opts(int argc, char **argv, ctl_opts *o)
{
    static const struct option longopts[] = {
        {"node", required_argument, NULL, 'n'},
        {"cookie-file", required_argument, NULL, 'k'},
        {"hub", required_argument, NULL, 'H'},
        {"timeout", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    *o = (ctl_opts){.timeout_ms = 10000};
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "+h", longopts, NULL)) != -1)
        if ((rc = parse_one(c, o)) != CLI_OK) return rc;
    if (!o->node || optind >= argc) {
        fprintf(stderr, "corehub ctl: %s\n",
                !o->node ? "--node HOST:PORT is required" : "which command? (try 'help')");
        return CLI_USAGE;
    }
    if (argc - optind + o->json > CTL_ARGS_MAX) {
        fprintf(stderr, "corehub ctl: at most %d arguments\n", CTL_ARGS_MAX);
        return CLI_USAGE;
    }
    return CLI_OK;
}

static const char *open_error(int rc)
{
    switch (rc) {
    case -EACCES:
        return "handshake refused (wrong cookie or hub?)";
    case -EPERM:
        return "handshake refused: the node belongs to another hub (--hub?)";
    case -ECONNREFUSED:
        return "connection refused (is a node listening there?)";
    case -ETIMEDOUT:
        return "timed out";
    case -EINVAL:
        return "bad address (HOST:PORT)";
    default:
        return ch_strerror(rc);
    }
}

static int load_cookie(const ctl_opts *o, void **cookie, size_t *len)
{
    const char *path = o->cookie_file ? o->cookie_file : getenv("COREHUB_COOKIE_FILE");
    if (!path || !*path) {
        fprintf(stderr, "corehub ctl: no cookie: pass --cookie-file FILE or set "
                        "COREHUB_COOKIE_FILE\n");
        return -1;
    }
    int rc = ch_cookie_read(path, cookie, len);
    if (rc < 0) {
        fprintf(stderr, "corehub ctl: cookie file %s: %s\n", path,
                rc == -EPERM ? "readable by others (chmod 600 it)" : ch_strerror(rc));
        return -1;
    }
    return 0;
}

/* The node's argv: the command, --json when asked (as argv[1]), the arguments. */
static void build_args(const ctl_opts *o, int argc, char **argv, const char **out, int *n)
{
    *n = 0;
    out[(*n)++] = argv[optind];
    if (o->json) out[(*n)++] = "--json";
    for (int i = optind + 1; i < argc; i++)
        out[(*n)++] = argv[i];
}

static int run(const ctl_opts *o, int argc, char **argv, const void *cookie, size_t cookie_len)
{
    ch_ctl *c = NULL;
    int rc = ch_ctl_open(o->node, o->hub, cookie, cookie_len, o->timeout_ms, &c);
    if (rc < 0) {
        fprintf(stderr, "corehub ctl: %s: %s\n", o->node, open_error(rc));
        return CLI_USAGE;
    }
    const char *args[CTL_ARGS_MAX];
    int n = 0, status = 0;
    char *text = NULL;
    build_args(o, argc, argv, args, &n);
    rc = ch_ctl_exec(c, n, args, &status, &text);
    ch_ctl_close(c);
    if (rc < 0) {
        fprintf(stderr, "corehub ctl: %s: %s\n", o->node,
                rc == -ETIMEDOUT ? "no answer in time (--timeout?)" : ch_strerror(rc));
        return CLI_USAGE;
    }
    fputs(text, stdout);
    free(text);
    if (fflush(stdout) != 0) return CLI_FAIL;
    /* An exit code is 8 bits: keep odd statuses from wrapping to 0 ("ok"). */
    return status >= 0 && status < 256 ? status : CLI_FAIL;
}

int cmd_ctl(int argc, char **argv)
{
    ctl_opts o;
    int rc = parse_opts(argc, argv, &o);
    if (rc != CLI_OK) return rc < 0 ? CLI_OK : rc;
    void *cookie = NULL;
    size_t cookie_len = 0;
    if (load_cookie(&o, &cookie, &cookie_len) < 0) return CLI_USAGE;
    rc = run(&o, argc, argv, cookie, cookie_len);
    explicit_bzero(cookie, cookie_len);
    free(cookie);
    return rc;
}
