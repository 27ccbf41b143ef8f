/*
 * tests/test_demo.c - `corehub demo` as a newcomer runs it: the program itself, with small
 * numbers, starting its own node processes. The report must say that nothing was lost,
 * and the demo must leave nothing behind (no node process, no temporary directory),
 * also when Ctrl-C stops it halfway.
 *
 * Each test points TMPDIR at a fresh directory of its own: the demo makes its directory
 * there, and every node it starts has that path on its command line (its cookie file), so
 * /proc tells which of its nodes still run.
 */
#define _GNU_SOURCE
#include "svg_check.h"
#include "wait.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEMO_MS   90000 /* a small demo, under ASan on a loaded 2-core machine */
#define NODES_MS  20000 /* until its nodes run */
#define REPORT_KB 64

static char tmp[128];

static void setup(void)
{
    snprintf(tmp, sizeof(tmp), "/tmp/corehub-test-demo-XXXXXX");
    cr_assert_not_null(mkdtemp(tmp), "mkdtemp: %s", strerror(errno));
    setenv("TMPDIR", tmp, 1);
}

/* Whatever a failed test left: the directory and anything in it (one level deep). */
static void teardown(void)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
}

TestSuite(demo, .init = setup, .fini = teardown, .timeout = 180);

/* A running demo: its pid and the read end of its stdout. */
typedef struct demo_run {
    pid_t pid;
    int out;
} demo_run;

/* Starts `corehub demo ARGS...` (NULL-terminated) with its stdout on a pipe. */
static demo_run demo_start(const char *const *args)
{
    const char *argv[32] = {CH_COREHUB_BIN, "demo"};
    int n = 2;
    for (; args[n - 2]; n++)
        argv[n] = args[n - 2];
    argv[n] = NULL;
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    demo_run r = {.pid = fork(), .out = p[0]};
    cr_assert_geq(r.pid, 0, "fork");
    if (r.pid == 0) {
        dup2(p[1], STDOUT_FILENO);
        execv(argv[0], (char *const *)argv);
        _exit(127);
    }
    close(p[1]);
    return r;
}

/* Reads its report until it exits (within DEMO_MS); returns the exit code, 128 + N for a
 * signal. *report gets stdout (free it). */
static int demo_finish(demo_run *r, char **report)
{
    size_t cap = REPORT_KB * 1024, len = 0;
    char *buf = malloc(cap + 1);
    cr_assert_not_null(buf);
    uint64_t deadline = th_now_ms() + DEMO_MS;
    for (;;) {
        uint64_t now = th_now_ms();
        cr_assert_lt(now, deadline, "the demo ends within %d ms", DEMO_MS);
        struct pollfd pf = {.fd = r->out, .events = POLLIN};
        if (poll(&pf, 1, (int)(deadline - now)) <= 0) continue;
        ssize_t got = read(r->out, buf + len, cap - len);
        if (got <= 0) break; /* EOF: the demo exited (its nodes do not hold its stdout) */
        len += (size_t)got;
        cr_assert_lt(len, cap, "a short report");
    }
    buf[len] = '\0';
    close(r->out);
    int status = 0;
    while (waitpid(r->pid, &status, 0) < 0 && errno == EINTR) {
    }
    *report = buf;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* How many processes have our TMPDIR on their command line: the demo's nodes. */
static int nodes_left(void)
{
    int count = 0;
    DIR *proc = opendir("/proc");
    cr_assert_not_null(proc);
    for (struct dirent *e; (e = readdir(proc)) != NULL;) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9' || atoi(e->d_name) == getpid()) continue;
        char path[300], cmd[4096];
        snprintf(path, sizeof(path), "/proc/%s/cmdline", e->d_name);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        ssize_t n = read(fd, cmd, sizeof(cmd) - 1);
        close(fd);
        for (ssize_t i = 0; i < n; i++)
            if (cmd[i] == '\0') cmd[i] = ' ';
        if (n > 0 && (cmd[n] = '\0', strstr(cmd, tmp) && strstr(cmd, " node "))) count++;
    }
    closedir(proc);
    return count;
}

static bool dir_empty(const char *path)
{
    DIR *dir = opendir(path);
    cr_assert_not_null(dir);
    int entries = 0;
    for (struct dirent *e; (e = readdir(dir)) != NULL;)
        entries += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(dir);
    return entries == 0;
}

static void expect_line(const char *report, const char *text)
{
    cr_expect(strstr(report, text) != NULL, "the report says '%s':\n%s", text, report);
}

/* --svg: a line each for the join and the leave, and the join's pauses at least (the
 * leaving node may exit before the demo reads its pauses). */
static void expect_charts(const char *path)
{
    size_t len;
    char *text = svgc_read_file(path, &len), why[256];
    cr_assert_not_null(text, "the demo wrote %s", path);
    cr_expect(svgc_well_formed(text, len, why, sizeof(why)), "%s: %s", path, why);
    cr_expect_eq(svgc_count(text, "<polyline class=\"moved\""), 2);
    cr_expect_geq(svgc_points(text, "<polyline class=\"moved\"", 0), 2, "the join's line");
    cr_expect_geq(svgc_points(text, "<polyline class=\"moved\"", 1), 2, "the leave's line");
    cr_expect_geq(svgc_count(text, "class=\"bar\""), 1);
    cr_expect_geq(svgc_count(text, "<line class=\"mark\""), 3);
    cr_expect_neq(strstr(text, ">join: node 3 joins nodes 0-2</text>"), NULL);
    cr_expect_neq(strstr(text, ">leave: node 2 leaves</text>"), NULL);
    free(text);
}

Test(demo, moves_processes_under_load_and_reports_that_nothing_was_lost)
{
    char svg[160];
    snprintf(svg, sizeof(svg), "%s/demo.svg", tmp);
    const char *const args[] = {"--procs",       "3000", "--blobs", "300",
                                "--state-bytes", "1024", "--hold",  "1",
                                "--svg",         svg,    NULL};
    demo_run r = demo_start(args);
    char *report = NULL;
    int code = demo_finish(&r, &report);
    cr_expect_eq(code, 0, "the demo exits 0:\n%s", report);
    expect_line(report, "3 nodes on 127.0.0.1");
    expect_line(report, "  join      moved ");
    expect_line(report, "  leave     moved ");
    expect_line(report, "lost updates = 0, doubled = 0, order violations = 0 (3000 seq");
    expect_line(report, "300 blobs of 1024 bytes: all intact");
    expect_line(report, "0 misplaced, 0 missing; 3300 processes running on 3 nodes");
    expect_line(report, "  result    OK");
    expect_line(report, "  charts    ");
    expect_charts(svg);
    cr_expect_eq(unlink(svg), 0);
    cr_expect_eq(nodes_left(), 0, "every node stopped");
    cr_expect(dir_empty(tmp), "the demo removed its directory");
    free(report);
}

#define NODES_POLL_US 20000 /* each look reads every process's command line */

static bool nodes_at_least(void *want)
{
    return nodes_left() >= *(int *)want;
}

static bool nodes_running(int want)
{
    return th_poll_until(nodes_at_least, &want, NODES_MS, NODES_POLL_US);
}

Test(demo, ctrl_c_stops_every_node_and_removes_the_directory)
{
    /* Long enough a hold that the interrupt comes while the senders run. */
    static const char *const args[] = {"--procs", "2000", "--blobs", "0", "--hold", "60", NULL};
    demo_run r = demo_start(args);
    cr_assert(nodes_running(3), "the demo starts its three nodes");
    th_sleep_ms(300);
    kill(r.pid, SIGINT);
    char *report = NULL;
    int code = demo_finish(&r, &report);
    cr_expect_eq(code, 128 + SIGINT, "the demo exits 130 on Ctrl-C:\n%s", report);
    cr_expect(strstr(report, "result") == NULL, "no report after an interrupt");
    cr_expect_eq(nodes_left(), 0, "every node stopped");
    cr_expect(dir_empty(tmp), "the demo removed its directory");
    free(report);
}

Test(demo, refuses_a_bad_command_line)
{
    static const char *const args[] = {"--nodes", "1", NULL};
    demo_run r = demo_start(args);
    char *report = NULL;
    cr_expect_eq(demo_finish(&r, &report), 2, "usage error");
    cr_expect(dir_empty(tmp), "nothing was created");
    free(report);
}
