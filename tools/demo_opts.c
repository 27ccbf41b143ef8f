/*
 * tools/demo_opts.c - the command line of `corehub demo` (see demo.h): its usage text, its
 * options with their defaults and bounds, and the checks across options.
 */
#include "demo.h"

#include "cli.h"

#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#define MAX_PROCS       1000000ull      /* what one check command takes */
#define MAX_STATE_TOTAL (2ull << 30)    /* blobs x state bytes: 2 GiB of states */
#define MAX_STATE_BYTES (1048576u - 4u) /* a blob's "set" message within max_message */

static void usage(FILE *out)
{
    fprintf(out, "usage: corehub demo [--nodes N] [--procs N] [--blobs N] [--state-bytes S]\n"
                 "                    [--senders K] [--rate R] [--hold SEC] [--cores C]\n"
                 "                    [--codec SPEC] [--timeout SEC] [--keep] [--svg FILE]\n"
                 "\n"
                 "Starts a local hub of N 'corehub node' processes on 127.0.0.1, starts many\n"
                 "stateful processes, keeps K senders updating them, adds a node, removes another\n"
                 "gracefully, then checks that every state arrived intact and that no update was\n"
                 "lost, doubled or reordered. Prints a report; stops every node it started.\n"
                 "\n"
                 "  --nodes N        nodes to start with, 2..16 (default 3)\n"
                 "  --procs N        seq processes the senders update (default 100000; k, m work)\n"
                 "  --blobs N        blob processes, state only (default 10000; 0: none)\n"
                 "  --state-bytes S  bytes of state per blob (default 4096)\n"
                 "  --senders K      senders, each a pump on a node that stays (default 3)\n"
                 "  --rate R         updates per second per sender (default 100000; 0: unpaced)\n"
                 "  --hold SEC       the senders run alone before the join, between the join and\n"
                 "                   the leave, and after it (default 2)\n"
                 "  --cores C        reactor threads per node (default 1)\n"
                 "  --codec SPEC     handover codec: auto, none, zstd[:LEVEL] (default auto)\n"
                 "  --timeout SEC    deadline of every wait (default 120)\n"
                 "  --keep           keep the temporary directory (cookie, node logs)\n"
                 "  --svg FILE       draw the join's and the leave's processes moved over time\n"
                 "                   and their pause distribution into FILE (plain SVG)\n"
                 "  -h, --help       this text\n"
                 "\n"
                 "Exits 0 when every check passed, 1 otherwise, 2 on a bad command line, 128+N\n"
                 "when signal N stopped it (Ctrl-C: 130).\n");
}

static int check_opts(demo_opts *o)
{
    if (o->senders > 16 * (o->nodes - 1) || o->senders > MAX_SENDERS) {
        fprintf(stderr, "corehub demo: --senders: at most %u with %u nodes (16 per node)\n",
                16 * (o->nodes - 1) < MAX_SENDERS ? 16 * (o->nodes - 1) : MAX_SENDERS, o->nodes);
        return CLI_USAGE;
    }
    if (o->blobs * o->state_bytes > MAX_STATE_TOTAL) {
        fprintf(stderr, "corehub demo: --blobs x --state-bytes: at most %llu bytes\n",
                MAX_STATE_TOTAL);
        return CLI_USAGE;
    }
    return CLI_OK;
}

/* One option; CLI_OK, CLI_USAGE, or -1 for --help. */
static int parse_one(int c, demo_opts *o)
{
    uint64_t v = 0;
    switch (c) {
    case 'n':
        if (cli_parse_u64("--nodes", optarg, 2, MAX_NODES, &v)) return CLI_USAGE;
        o->nodes = (unsigned)v;
        return CLI_OK;
    case 'p':
        return cli_parse_u64("--procs", optarg, 1, MAX_PROCS, &o->procs) ? CLI_USAGE : CLI_OK;
    case 'b':
        return cli_parse_u64("--blobs", optarg, 0, MAX_PROCS, &o->blobs) ? CLI_USAGE : CLI_OK;
    case 'S':
        return cli_parse_u64("--state-bytes", optarg, 1, MAX_STATE_BYTES, &o->state_bytes)
                   ? CLI_USAGE
                   : CLI_OK;
    case 's':
        if (cli_parse_u64("--senders", optarg, 1, MAX_SENDERS, &v)) return CLI_USAGE;
        o->senders = (unsigned)v;
        return CLI_OK;
    case 'r':
        return cli_parse_u64("--rate", optarg, 0, 1000000000, &o->rate) ? CLI_USAGE : CLI_OK;
    case 'H':
        return cli_parse_u64("--hold", optarg, 0, 3600, &o->hold_s) ? CLI_USAGE : CLI_OK;
    case 'c':
        if (cli_parse_u64("--cores", optarg, 1, 1024, &v)) return CLI_USAGE;
        o->cores = (unsigned)v;
        return CLI_OK;
    case 'C':
        o->codec = optarg; /* the node checks it and refuses to start on a bad one */
        return CLI_OK;
    case 't':
        return cli_parse_u64("--timeout", optarg, 1, 86400, &o->timeout_s) ? CLI_USAGE : CLI_OK;
    case 'k':
        o->keep = 1;
        return CLI_OK;
    case 'G':
        o->svg = optarg;
        return CLI_OK;
    case 'h':
        usage(stdout);
        return -1;
    default: /* getopt_long has said what was wrong */
        fprintf(stderr, "Try 'corehub demo --help'.\n");
        return CLI_USAGE;
    }
}

int demo_parse_opts(int argc, char **argv, demo_opts *o)
{
    static const struct option longopts[] = {
        {"nodes", required_argument, NULL, 'n'},   {"procs", required_argument, NULL, 'p'},
        {"blobs", required_argument, NULL, 'b'},   {"state-bytes", required_argument, NULL, 'S'},
        {"senders", required_argument, NULL, 's'}, {"rate", required_argument, NULL, 'r'},
        {"hold", required_argument, NULL, 'H'},    {"cores", required_argument, NULL, 'c'},
        {"codec", required_argument, NULL, 'C'},   {"timeout", required_argument, NULL, 't'},
        {"keep", no_argument, NULL, 'k'},          {"svg", required_argument, NULL, 'G'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    *o = (demo_opts){.nodes = 3,
                     .procs = 100000,
                     .blobs = 10000,
                     .state_bytes = 4096,
                     .senders = 3,
                     .rate = 100000,
                     .hold_s = 2,
                     .cores = 1,
                     .timeout_s = 120};
    int c, rc;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1)
        if ((rc = parse_one(c, o)) != CLI_OK) return rc;
    if (optind < argc) {
        fprintf(stderr, "corehub demo: unexpected argument '%s'\n", argv[optind]);
        return CLI_USAGE;
    }
    return check_opts(o);
}
