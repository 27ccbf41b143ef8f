/*
 * tools/main.c - the corehub program: a table of subcommands.
 *
 * `corehub CMD [ARGS]` runs the subcommand CMD, which lives in its own file (demo.c,
 * version.c, ...) and parses its own ARGS. Adding one (`node`, `ctl`) means one file,
 * one prototype in cli.h and one row below.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const cli_command commands[] = {
    {"node", "run a node of a hub, hosting the built-in process types", cmd_node},
    {"ctl", "run a control command on a node (members, procs, call, leave, ...)", cmd_ctl},
    {"demo", "run a local hub under load through a join and a leave; check every update", cmd_demo},
    {"bench", "measure migration on this machine against raw baselines (bench migration)",
     cmd_bench},
    {"version", "print the corehub version", cmd_version},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
    fprintf(out, "usage: corehub COMMAND [OPTIONS]\n\ncommands:\n");
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'corehub COMMAND --help' describes a command's options.\n");
}

static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    const char *name = argv[1];
    if (!strcmp(name, "-h") || !strcmp(name, "--help") || !strcmp(name, "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(name, "--version")) name = "version";
    const cli_command *cmd = find_command(name);
    if (!cmd) {
        fprintf(stderr, "corehub: unknown command '%s'\n\n", name);
        usage(stderr);
        return CLI_USAGE;
    }
    /* getopt_long prefixes its messages with argv[0]: make it "corehub demo". */
    char prog[64];
    snprintf(prog, sizeof(prog), "corehub %s", cmd->name);
    argv[1] = prog;
    return cmd->run(argc - 1, argv + 1);
}
