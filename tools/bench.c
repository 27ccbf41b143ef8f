/*
 * tools/bench.c - `corehub bench`: the benchmarks a user runs on their own machine, with the
 * baselines measured in the same run. `corehub bench migration` is bench/bench_migration.c
 * built into the program (CH_BENCH_COMMAND): two node processes, a join and a leave,
 * against the raw and zstd-1 pipelines between the same CPUs.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

int bench_migration_main(int argc, char **argv); /* bench/bench_migration.c */

static void usage(FILE *out)
{
    fprintf(out, "usage: corehub bench migration [OPTIONS]   (corehub bench migration --help)\n"
                 "  migration  processes moved per second by a join and a leave, and the pauses,\n"
                 "             against the raw and zstd-1 pipelines measured in the same run\n");
}

int cmd_bench(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "migration") != 0) {
        fprintf(stderr, "corehub bench: unknown benchmark '%s'\n", argv[1]);
        usage(stderr);
        return CLI_USAGE;
    }
    char prog[] = "corehub bench migration"; /* getopt's messages name it */
    argv[1] = prog;
    return bench_migration_main(argc - 1, argv + 1);
}
