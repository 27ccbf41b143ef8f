/*
 * tests/test_node_limits.c - `corehub node` at the edge of its resources and of its
 * configuration: out of file descriptors, replies far larger than their requests, ports
 * that another node holds, seeds that never answer, leaves with nowhere to go. In each
 * case the node must say so once, clearly, and either keep serving or exit non-zero.
 *
 * Nodes are real processes on 127.0.0.1 started through the cluster harness. Waits poll a
 * condition with a deadline; the one fixed interval (watching a starved node's log and CPU
 * for OBSERVE_MS) is a measurement, not a synchronisation.
 */
#define _GNU_SOURCE
#include "harness_suite.h"
#include "sock.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_MS    15000
#define OBSERVE_MS 1000
#define FLOOD      100 /* connections, as in the report: `ulimit -n 64` and 100 clients */

HARNESS_SUITE_WITH(node_limits, harness_suite_no_sigpipe, harness_suite_nothing, .timeout = 120);

/* ---- looking at a node from outside ------------------------------------------------------ */

static long count_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long lines = 0;
    for (int ch; (ch = getc(f)) != EOF;)
        lines += ch == '\n';
    fclose(f);
    return lines;
}

typedef struct log_want {
    hnode *n;
    const char *text;
} log_want;

static bool log_says(void *ud)
{
    log_want *w = ud;
    return node_log_has(w->n, w->text);
}

#define WAIT_LOG(node, s)                                                                          \
    cr_assert(harness_wait(log_says, &(log_want){(node), (s)}, WAIT_MS), "no \"%s\" in %s", (s),   \
              (node)->log)

static int open_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    cr_assert_not_null(d, "%s: %s", path, strerror(errno));
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* user + system CPU time of pid, in clock ticks */
static long cpu_ticks(pid_t pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    size_t len = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[len] = '\0';
    const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    cr_assert_not_null(p);
    unsigned long utime = 0, stime = 0;
    /* after ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
     * utime stime */
    cr_assert_eq(
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime), 2);
    return (long)(utime + stime);
}

/* ---- out of file descriptors --------------------------------------------------------------- */

/* Leaves n a few descriptors, floods `port` with FLOOD connections, and checks that the
 * node pauses accepting (a bounded log, little CPU) rather than spinning, then that it
 * accepts again once the clients are gone. */
static void starve_and_recover(hnode *n, int port)
{
    int spare = open_fds(n->pid) + 4;
    struct rlimit lim = {.rlim_cur = (rlim_t)spare, .rlim_max = (rlim_t)spare};
    cr_assert_eq(prlimit(n->pid, RLIMIT_NOFILE, &lim, NULL), 0, "prlimit: %s", strerror(errno));
    int fds[FLOOD];
    for (int i = 0; i < FLOOD; i++)
        fds[i] = th_connect(port, 0); /* the kernel completes them: the backlog holds 512 */
    WAIT_LOG(n, "accept failed");

    long lines = count_lines(n->log), ticks = cpu_ticks(n->pid);
    th_sleep_ms(OBSERVE_MS); /* the measurement window */
    long more = count_lines(n->log) - lines;
    long busy_ms = (cpu_ticks(n->pid) - ticks) * 1000 / sysconf(_SC_CLK_TCK);
    cr_expect_leq(more, 10, "%ld log lines in %d ms while out of descriptors: see %s", more,
                  OBSERVE_MS, n->log);
    cr_expect_leq(busy_ms, OBSERVE_MS / 4, "%ld ms of CPU in %d ms while out of descriptors",
                  busy_ms, OBSERVE_MS);

    for (int i = 0; i < FLOOD; i++)
        close(fds[i]);
    WAIT_LOG(n, "accepting again");
}

typedef struct ctl_want {
    hnode *n;
} ctl_want;

static bool ctl_answers(void *ud)
{
    return node_ctl_status(((ctl_want *)ud)->n, "epoch", NULL) == 0;
}

Test(node_limits, out_of_descriptors_the_cluster_port_pauses_and_recovers)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    starve_and_recover(n, node_port(n));
    cr_assert(harness_wait(ctl_answers, &(ctl_want){n}, WAIT_MS), "ctl never answered again");
    cr_expect_geq(node_stat(n, "accept_pauses"), 1, "the pause is counted");
    cr_assert_eq(harness_check(&H), 0);
}

/* The server skeleton's loop (here the kv port) is the same loop. */
Test(node_limits, out_of_descriptors_a_server_port_pauses_and_recovers)
{
    hnode *n = node_spawn(&H, "--kv-port", "0", NULL);
    cr_assert_not_null(n);
    cr_assert_gt(n->kv_port, 0);
    starve_and_recover(n, n->kv_port);
    int fd = th_connect(n->kv_port, 0);
    struct timeval tv = {.tv_sec = WAIT_MS / 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    cr_assert_eq(send(fd, "PING\r\n", 6, MSG_NOSIGNAL), 6);
    char buf[16] = {0};
    cr_assert_eq(recv(fd, buf, 7, MSG_WAITALL), 7, "no answer to PING: %s", strerror(errno));
    cr_assert_str_eq(buf, "+PONG\r\n");
    close(fd);
    cr_assert_eq(harness_check(&H), 0);
}

static bool node_gone(void *ud)
{
    return !node_alive(ud);
}

/* ---- misconfiguration ------------------------------------------------------------------- */

#define RUN_MS 10000

/* Runs `corehub node --listen 127.0.0.1:0 --cookie-file C extra...` (later flags win) with
 * its stderr in H.dir/stderr-TAG; its exit status, or -1 when it was still running after
 * RUN_MS (then killed): a node that should have refused to start but serves. */
static int run_node(const char *tag, const char *const *extra, int nextra, char *err_path)
{
    snprintf(err_path, HARNESS_PATH_MAX, "%s/stderr-%s", H.dir, tag);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        const char *argv[32] = {CH_COREHUB_BIN, "node",          "--listen",
                                "127.0.0.1:0",  "--cookie-file", H.cookie_path};
        int n = 6;
        for (int i = 0; i < nextra && n < 31; i++)
            argv[n++] = extra[i];
        argv[n] = NULL;
        if (!freopen(err_path, "w", stderr) || !freopen("/dev/null", "w", stdout)) _exit(126);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    uint64_t deadline = th_now_ms() + RUN_MS;
    int ws = 0;
    while (waitpid(pid, &ws, WNOHANG) == 0) {
        if (th_now_ms() >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &ws, 0);
            return -1;
        }
        th_pause_us(20000); /* polling the child's exit */
    }
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

static bool path_has(const char *path, const char *s)
{
    hnode fake = {0};
    snprintf(fake.log, sizeof(fake.log), "%s", path);
    return node_log_has(&fake, s);
}

/* A second node asking for a port that a node holds (SO_REUSEPORT let it share the kv and
 * metrics ports before) refuses to start, saying why. */
Test(node_limits, a_port_in_use_is_refused_at_start)
{
    hnode *a = node_spawn(&H, "--kv-port", "0", "--metrics", "127.0.0.1:0", NULL);
    cr_assert_not_null(a);
    char kv[16], metrics[32], err[HARNESS_PATH_MAX];
    snprintf(kv, sizeof(kv), "%d", a->kv_port);
    snprintf(metrics, sizeof(metrics), "127.0.0.1:%lld", node_stat(a, "metrics_port"));
    const char *cases[][2] = {{"--kv-port", kv}, {"--metrics", metrics}, {"--listen", a->addr}};
    for (int i = 0; i < 3; i++) {
        char tag[8];
        snprintf(tag, sizeof(tag), "%d", i);
        int st = run_node(tag, cases[i], 2, err);
        cr_expect_eq(st, 1, "%s %s: exit %d", cases[i][0], cases[i][1], st);
        cr_expect(path_has(err, "Address already in use"), "%s %s: see %s", cases[i][0],
                  cases[i][1], err);
    }
    cr_assert_eq(harness_check(&H), 0);
}

/* A mistyped seed gave a hub of one, silently. */
Test(node_limits, no_seed_answering_within_seed_timeout_is_an_error)
{
    char err[HARNESS_PATH_MAX];
    const char *extra[] = {"--seed", "127.0.0.1:1", "--seed-timeout", "1"};
    int st = run_node("seed", extra, 4, err);
    cr_expect_eq(st, 1, "exit %d", st);
    cr_expect(path_has(err, "no seed answered within 1 s (--seed 127.0.0.1:1)"), "see %s", err);

    /* A node that joined in time stays past the deadline. */
    hnode *a = node_spawn(&H, NULL);
    cr_assert_not_null(a);
    hnode *b = node_spawn(&H, "--seed", a->addr, "--seed-timeout", "1", NULL);
    cr_assert_not_null(b);
    cr_assert(!harness_wait(node_gone, b, 2500), "a joined node exited: see %s", b->log);
    cr_assert_eq(harness_check(&H), 0);
}

/* SIGTERM on a node alone with processes said "moved 0 processes, 0 not moved" and exited
 * 0, although every process was stopped with its state. */
Test(node_limits, a_lone_node_that_leaves_says_it_moved_nothing_and_exits_3)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    cr_assert_eq(node_ctl_status(n, "start-counters", "c", "10", NULL), 0);
    cr_expect_eq(node_term(n, WAIT_MS), 3, "exit code");
    cr_expect(node_log_has(n, "left: moved 0 processes, 10 not moved (no other member"), "see %s",
              n->log);
    cr_assert_eq(harness_check(&H), 0);
}

/* A lone node with nothing to move still leaves cleanly. */
Test(node_limits, a_lone_empty_node_leaves_with_exit_0)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    cr_expect_eq(node_term(n, WAIT_MS), 0);
    cr_expect(node_log_has(n, "left: moved 0 processes, 0 not moved\n"), "see %s", n->log);
    cr_assert_eq(harness_check(&H), 0);
}
