/*
 * tests/lib/cluster_harness.h - real `corehub node` processes for multi-node tests.
 *
 * A harness owns a temporary directory with the hub's cookie (mode 0600) and every node
 * process a test spawns. Each node runs `corehub node --listen 127.0.0.1:0 --cores 1
 * --cookie-file COOKIE [extra args]` (later args win, so extras may override --cores);
 * the harness reads its `listening` line for the address and id, and sends its stderr to
 * a log file in the directory. Tests drive nodes through the control channel (node_ctl).
 * A node started with --kv-port ends that line with `kv HOST:PORT`: hnode.kv_port.
 *
 * Cleanup is the point: call harness_init in a Criterion fixture's init and harness_fini
 * in its fini (harness_suite.h declares such a suite), which runs after a failed assertion
 * too; fini SIGKILLs and reaps every node still running. A node also dies with the test
 * process (PR_SET_PDEATHSIG), for a test that crashes before its fini.
 *
 * Environment: CH_HARNESS_LOGS=1 lets nodes log to the test's stderr instead of files;
 * CH_HARNESS_KEEP=1 keeps the directory (its path is printed) for post-mortems.
 *
 * Functions return 0 or a negative errno-style code unless they say otherwise; none of
 * them asserts, so that they also serve in setup and teardown code.
 */
#ifndef CH_TESTS_CLUSTER_HARNESS_H
#define CH_TESTS_CLUSTER_HARNESS_H

#include <corehub/corehub.h>

#include "wait.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define HARNESS_MAX_NODES 48 /* spawns per harness: the fault suite restarts and churns */
#define HARNESS_MAX_ARGS  32
#define HARNESS_MAX_ENV   8
#define HARNESS_SPAWN_MS  10000 /* for the `listening` line; generous for sanitizers */
#define HARNESS_CTL_MS    10000 /* connect, handshake and each answer */
#define HARNESS_DIR_MAX   192   /* the directory, so that the paths of its files fit */
#define HARNESS_PATH_MAX  256
#define HARNESS_POLL_MS   5     /* between two looks: each may ask a node over its channel */
#define HARNESS_PROBE_MS  "200" /* members' failure detection: about a second */

typedef struct ch_harness ch_harness;

typedef struct hnode {
    ch_harness *h;
    int index;                  /* spawn order, names the log file: node-INDEX.log */
    pid_t pid;                  /* 0 once reaped */
    int wstatus;                /* waitpid's status, once reaped */
    char addr[CH_ADDR_MAX + 1]; /* "127.0.0.1:PORT", from the listening line */
    uint64_t id;                /* the node id, from the listening line */
    int kv_port;                /* its Redis-protocol port (--kv-port), 0 without one */
    char log[HARNESS_PATH_MAX];
} hnode;

struct ch_harness {
    char dir[HARNESS_DIR_MAX];
    char cookie_path[HARNESS_PATH_MAX];
    void *cookie; /* the bytes node_ctl authenticates with */
    size_t cookie_len;
    const char *hub; /* node_ctl's hub id; NULL: the default, as for nodes without --hub */
    hnode nodes[HARNESS_MAX_NODES];
    int nnodes;
    int deaths; /* see harness_check */
    bool keep;  /* fini keeps the directory (a failed check wants the logs) */
};

/* Makes the directory and a fresh random cookie. */
int harness_init(ch_harness *h);
/* Kills and reaps every node still running and removes the directory with every file in
 * it (a test may put its own files there; no subdirectories), unless a node died on its
 * own: then it is kept for its logs. Idempotent. */
void harness_fini(ch_harness *h);
/* How many nodes died on their own so far: gone although the test neither stopped them
 * nor watched them exit (node_term, node_wait_exit, node_alive, node_kill9). Each such
 * death (a crash, a sanitizer report) is told once on stderr with the end of its log.
 * A test's last assertion: Criterion ignores a fixture's fini when it decides the verdict. */
int harness_check(ch_harness *h);

/* Spawns a node with extra arguments (a NULL-terminated list) and waits for its listening
 * line. NULL on failure (the child, if any, is killed and reaped). */
hnode *node_spawn(ch_harness *h, ...) __attribute__((sentinel));
hnode *node_spawnv(ch_harness *h, const char *const *extra, int nextra);
/* The same with environment variables for that node alone: env is a NULL-terminated list
 * of "NAME=VALUE" added to the test's environment (replacing a variable of the same name),
 * e.g. {"CH_FAULT=no-confirm", NULL}. At most HARNESS_MAX_ENV of them. */
hnode *node_spawn_env(ch_harness *h, const char *const *env, const char *const *extra, int nextra);
/* Spawns a member of the hub of `seed`: `--probe-ms HARNESS_PROBE_MS`, extra (a
 * NULL-terminated list, or NULL; it may override the probe), then `--seed` and seed's
 * address unless seed is NULL (the first node of a hub); env as for node_spawn_env (NULL:
 * none). */
hnode *node_spawn_member(ch_harness *h, const hnode *seed, const char *const *env,
                         const char *const *extra);
/* Spawns `count` members into n[], the first the seed of the others, each with extra (as
 * for node_spawn_member). 0, or -ECHILD when one did not start (fini reaps the others). */
int harness_spawn_hub(ch_harness *h, hnode **n, int count, const char *const *extra);

/* Runs a control command (a NULL-terminated argv) on n: *status is the node's status, *text
 * its answer (malloc'd: free it). 0, or ch_ctl_open's / ch_ctl_exec's error. */
int node_ctl(hnode *n, int *status, char **text, ...) __attribute__((sentinel));
int node_ctlv(hnode *n, int *status, char **text, int argc, const char *const *argv);
/* The same with the NULL-terminated list of a variadic function; -E2BIG when too long. */
int node_ctl_va(hnode *n, int *status, char **text, va_list ap);
/* A control connection to n, for many commands (ch_ctl_exec, then ch_ctl_close). */
int node_ctl_open(hnode *n, ch_ctl **c);
/* The same, for a command whose text does not matter: returns its status, or the
 * negative error of the channel. */
int node_ctl_status(hnode *n, ...) __attribute__((sentinel));
/* The same, for a command that lists things: how many lines its answer has, or -1 when it
 * failed. */
long node_ctl_lines(hnode *n, ...) __attribute__((sentinel));

/* The port of n's listener (from its address). */
int node_port(const hnode *n);
/* Whether a line of n's log holds s. */
bool node_log_has(const hnode *n, const char *s);
/* The value of `key` in n's `ctl stats`, or -1. */
long long node_stat(hnode *n, const char *key);
/* The value of `key` in the text of a `stats` answer, or -1. */
long long harness_stat_value(const char *stats, const char *key);

/* Members of n's view in `state` ("alive", "left", ...; NULL: any), or a negative error. */
int node_count_members(hnode *n, const char *state);

/* SIGKILL, then reap. */
int node_kill9(hnode *n);
/* SIGTERM, then wait up to timeout_ms: the exit code (0..255), -EINTR when a signal
 * killed it, -ETIMEDOUT when it was still running (it is then SIGKILLed and reaped). */
int node_term(hnode *n, int timeout_ms);
/* Waits up to timeout_ms for n to exit by itself; same returns as node_term. */
int node_wait_exit(hnode *n, int timeout_ms);
/* Whether n is still running (reaps it if it is not). */
bool node_alive(hnode *n);

/* th_poll_until every HARNESS_POLL_MS: the way tests wait for nodes to converge, never a
 * bare sleep. */
bool harness_wait(bool (*cond)(void *ud), void *ud, int timeout_ms);

#endif
