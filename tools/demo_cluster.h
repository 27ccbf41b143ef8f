/*
 * tools/demo_cluster.h - the local cluster of `corehub demo`: child `corehub node`
 * processes, their temporary directory, the control calls to them, and waits that watch
 * for Ctrl-C and for nodes that die.
 *
 * A cluster owns a private temporary directory (mode 0700) holding the hub's cookie
 * (random, mode 0600) and one log file per node (its stderr). Every node is this same
 * program run as `corehub node --listen 127.0.0.1:0 --cookie-file COOKIE ARGS...`; the
 * cluster reads its `listening HOST:PORT node ID` line for the kernel-chosen port. Nodes
 * run in a process group of their own (a terminal's Ctrl-C reaches the demo only, which
 * then stops them), and die with the demo if it is killed (PR_SET_PDEATHSIG).
 *
 * Waiting: dc_open blocks SIGINT, SIGTERM and SIGHUP and reads them from a signalfd; every
 * function that waits (spawning, control calls, sleeps, a node's exit) polls that
 * signalfd, a pidfd per running node, and its own deadline, and calls the progress hook
 * about five times a second. A wait ends early with DC_EINTR when a signal came, with
 * DC_EDIED when a node exited that was not expected to (dc_expect_exit), and with
 * -ETIMEDOUT at its deadline; cluster->error then says what happened, in words.
 *
 * Control calls run on worker threads (the control channel blocks), several at once when
 * asked, so that the caller's thread stays free to watch. When a wait fails while calls
 * are out, every node is killed first (so that their sockets close and the calls return),
 * then the workers are joined: a failed wait ends the demo, and nothing is left running.
 *
 * Functions return 0 or a negative code (DC_* or -errno) unless they say otherwise. One
 * thread (the demo's main thread) uses a cluster.
 */
#ifndef COREHUB_TOOLS_DEMO_CLUSTER_H
#define COREHUB_TOOLS_DEMO_CLUSTER_H

#include <corehub/corehub.h>

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define DC_MAX_NODES 17  /* 16 to start with and the one that joins */
#define DC_MAX_ARGS  24  /* per node command line, and per control call */
#define DC_DIR_MAX   224 /* the directory, so that the paths of its files fit */
#define DC_PATH_MAX  320
#define DC_MAX_CALLS 64    /* control calls at once */
#define DC_EINTR     -1001 /* a signal asked the demo to stop (dc_cluster.signo) */
#define DC_EDIED     -1002 /* a node exited unexpectedly (dc_cluster.error says which) */

typedef struct dc_node {
    int index;                  /* spawn order; names the log: node-INDEX.log */
    pid_t pid;                  /* 0 once reaped */
    int pidfd;                  /* readable once the process exited; -1 once reaped */
    int wstatus;                /* waitpid's status, once reaped */
    bool expect_exit;           /* its exit is awaited (a leave), not a failure */
    bool died;                  /* it exited unexpectedly: its whole log is evidence */
    char addr[CH_ADDR_MAX + 1]; /* "127.0.0.1:PORT", from the listening line */
    uint64_t id;                /* the node id, from the listening line */
    char log[DC_PATH_MAX];
} dc_node;

typedef struct dc_cluster {
    char dir[DC_DIR_MAX]; /* the temporary directory; "" when there is none */
    char cookie_path[DC_PATH_MAX];
    void *cookie; /* what control calls authenticate with */
    size_t cookie_len;
    char exe[DC_PATH_MAX];              /* this program, which the nodes run */
    const char *node_args[DC_MAX_ARGS]; /* given to every node after the fixed ones */
    int nnode_args;
    dc_node nodes[DC_MAX_NODES];
    int nnodes;
    int sig_fd;             /* SIGINT, SIGTERM, SIGHUP */
    sigset_t old_mask;      /* the mask before dc_open, restored by dc_close and in children */
    int signo;              /* the signal that interrupted a wait, 0 when none */
    char error[512];        /* what made the last wait fail */
    void (*tick)(void *ud); /* progress hook, called while waiting; may be NULL */
    void *tick_ud;
} dc_cluster;

/* One control command for one node. argv is NULL-terminated (at most DC_MAX_ARGS - 1
 * words). After dc_call_run: rc is the channel's result (0, or a negative code from
 * ch_ctl_open/ch_ctl_exec), status the command's status and text its answer (malloc'd or
 * NULL; dc_call_free frees it). */
typedef struct dc_call {
    int node;
    const char *argv[DC_MAX_ARGS];
    uint32_t timeout_ms; /* 0: whatever is left until the deadline */
    int rc, status;
    char *text;
} dc_call;

/* Blocks the signals, makes the directory (under $TMPDIR or /tmp) and the cookie. */
int dc_open(dc_cluster *c);
/* Kills (SIGKILL) and reaps every node still running and removes the directory, unless
 * keep. When show_logs, prints the end of every node's log to stderr first (more of it
 * for a node that died: a sanitizer's report). Restores the signal mask. Idempotent. */
void dc_close(dc_cluster *c, bool keep, bool show_logs);

/* Spawns one node (joining through seed unless NULL) and waits for its listening line.
 * Returns its index, or a negative code. */
int dc_spawn(dc_cluster *c, const char *seed, uint64_t deadline_ns);
/* Spawns count nodes at once, all joining through seed; 0 or a negative code. */
int dc_spawn_many(dc_cluster *c, int count, const char *seed, uint64_t deadline_ns);

/* Whether node i runs (spawned and not reaped). */
bool dc_running(const dc_cluster *c, int i);
/* Marks node i's coming exit as expected: it no longer fails waits. */
void dc_expect_exit(dc_cluster *c, int i);
/* Waits until node i exited (it must be expected to) or up to ms: 1 exited and reaped
 * (*code: its exit code, or 128 + the signal that killed it), 0 still running, or a
 * failure of the wait. */
int dc_wait_exit(dc_cluster *c, int i, unsigned ms, uint64_t deadline_ns, int *code);

/* Runs the calls (at most DC_MAX_CALLS) at once and waits for all of them; 0 when they all returned
 * (each with its own rc and status), or a failure of the wait (the nodes are dead by then). */
int dc_call_run(dc_cluster *c, dc_call *calls, int n, uint64_t deadline_ns);
void dc_call_free(dc_call *calls, int n);
/* One call; 0 when the command ran with status 0 (*text, when not NULL, gets its answer:
 * free it), a failure of the wait, or -EPROTO when the channel failed or the status was
 * not 0 (cluster->error then holds the answer). */
int dc_ctl(dc_cluster *c, int node, uint64_t deadline_ns, char **text, ...)
    __attribute__((sentinel));

/* Sleeps ms, watching like every wait; 0 or a failure. With ms 0 it only looks at what
 * is pending (a signal, a death), for loops that block in other ways. */
int dc_sleep(dc_cluster *c, unsigned ms, uint64_t deadline_ns);

/* The value after "KEY " at the start of a line of text (a `stats` answer); false when
 * there is none. */
bool dc_text_u64(const char *text, const char *key, uint64_t *out);

#endif
