/*
 * tools/cli.h - what the corehub program's subcommands share.
 *
 * The program is a table of subcommands (main.c); each lives in its own file and has the
 * signature of cli_command.run: it gets argv with argv[0] naming the subcommand, parses
 * its own options and returns the process exit code (CLI_OK, CLI_FAIL, CLI_USAGE).
 * Everything here uses the public API only: <corehub/corehub.h>.
 */
#ifndef COREHUB_TOOLS_CLI_H
#define COREHUB_TOOLS_CLI_H

#include <stdint.h>

enum {
    CLI_OK = 0,    /* did what was asked */
    CLI_FAIL = 1,  /* ran, and found or hit a problem (the output says which) */
    CLI_USAGE = 2, /* bad command line; nothing was done */
};

typedef struct cli_command {
    const char *name;
    const char *summary; /* one line for `corehub --help` */
    int (*run)(int argc, char **argv);
} cli_command;

/* The subcommands, one file each. */
int cmd_demo(int argc, char **argv);
int cmd_node(int argc, char **argv);
int cmd_ctl(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Parses a whole decimal number in [min, max] (an optional k/m suffix multiplies by 1000 /
 * 1000000). Returns 0, or -1 after printing why to stderr, naming `what`. */
int cli_parse_u64(const char *what, const char *s, uint64_t min, uint64_t max, uint64_t *out);

/* Monotonic clock in nanoseconds. */
uint64_t cli_now_ns(void);

/* Little-endian 64-bit encoding, the wire format of the built-in process types. */
void cli_put_le64(void *dst, uint64_t v);
uint64_t cli_get_le64(const void *src);

#endif
