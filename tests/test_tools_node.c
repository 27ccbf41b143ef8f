/*
 * tests/test_tools_node.c - `corehub node` and `corehub ctl` as users run them: real node
 * processes on 127.0.0.1 with kernel-chosen ports, driven through the control channel
 * (ch_ctl_*) and, once, through the `corehub ctl` program itself.
 *
 * Every node is spawned through the cluster harness, whose fixture teardown kills and
 * reaps whatever a test left running, also after a failed assertion.
 */
#define _GNU_SOURCE
#include "harness_suite.h"
#include "hub_checks.h"
#include "sock.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define CTL(n, st, txt, ...) node_ctl((n), (st), (txt), __VA_ARGS__, NULL)
#define CONVERGE_MS          8000
#define EXIT_MS              8000

HARNESS_SUITE(tools_node, .timeout = 30);

#define NODE_TEST(name) HARNESS_TEST(tools_node, name)

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* Runs a command that must succeed and returns its text (free it). */
static char *ctl_ok(hnode *n, const char *const *argv, int argc)
{
    int status = -1;
    char *text = NULL;
    int rc = node_ctlv(n, &status, &text, argc, argv);
    cr_assert_eq(rc, 0, "%s: %s", argv[0], ch_strerror(rc));
    cr_assert_eq(status, 0, "%s: status %d: %s", argv[0], status, text);
    return text;
}

#define CTL_OK(n, ...)                                                                             \
    ctl_ok((n), (const char *const[]){__VA_ARGS__},                                                \
           (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)))

static void expect_text(hnode *n, const char *want, const char *const *argv, int argc)
{
    char *text = ctl_ok(n, argv, argc);
    cr_expect_str_eq(text, want, "%s", argv[0]);
    free(text);
}

#define EXPECT_TEXT(n, want, ...)                                                                  \
    expect_text((n), (want), (const char *const[]){__VA_ARGS__},                                   \
                (int)(sizeof((const char *const[]){__VA_ARGS__}) / sizeof(const char *)))

/* ---- one node ---------------------------------------------------------------------------- */

NODE_TEST(one_node_starts_calls_looks_up_and_counts)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    EXPECT_TEXT(n, "started c1\n", "start", "c1", "counter");
    EXPECT_TEXT(n, "sent\n", "send", "c1", "add", "41");
    EXPECT_TEXT(n, "sent\n", "send", "c1", "inc");
    EXPECT_TEXT(n, "42\n", "call", "c1", "get");
    EXPECT_TEXT(n, "sent\n", "send", "c1", "add -50"); /* one argument works as well */
    EXPECT_TEXT(n, "-8\n", "call", "c1", "get");

    char *text = CTL_OK(n, "lookup", "c1");
    cr_expect(starts_with(text, "c1 counter "), "lookup: %s", text);
    free(text);
    text = CTL_OK(n, "stats");
    cr_expect(strstr(text, "processes 1\n") != NULL, "stats: %s", text);
    char want[64];
    snprintf(want, sizeof(want), "node %016llx\n", (unsigned long long)n->id);
    cr_expect(strstr(text, want) != NULL, "stats: %s", text);
    free(text);
    text = CTL_OK(n, "stats", "--json"); /* --json is argv[1], as the client sends it */
    cr_expect(strstr(text, "{\"processes\":1,") == text, "stats --json: %s", text);
    free(text);
}

NODE_TEST(blob_stores_sets_and_appends_bytes)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    EXPECT_TEXT(n, "started b1\n", "start", "b1", "blob", "hello");
    EXPECT_TEXT(n, "sent\n", "send", "b1", "append", " world");
    EXPECT_TEXT(n, "hello world\n", "call", "b1", "get");
    EXPECT_TEXT(n, "11\n", "call", "b1", "len");
    EXPECT_TEXT(n, "sent\n", "send", "b1", "set", "x\"y");
    EXPECT_TEXT(n, "{\"id\":\"b1\",\"reply\":\"x\\\"y\"}\n", "call", "--json", "b1", "get");
}

NODE_TEST(statuses_say_usage_not_found_and_failure)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    cr_expect_eq(node_ctl_status(n, "no-such-command", NULL), 1);
    cr_expect_eq(node_ctl_status(n, "lookup", NULL), 1);
    cr_expect_eq(node_ctl_status(n, "start-many", "p", "zero", "counter", NULL), 1);
    cr_expect_eq(node_ctl_status(n, "lookup", "ghost", NULL), 3);
    cr_expect_eq(node_ctl_status(n, "call", "ghost", "get", NULL), 3);
    cr_expect_eq(node_ctl_status(n, "stop", "ghost", NULL), 3);
    cr_expect_eq(node_ctl_status(n, "start", "t1", "no-such-type", NULL), 4);
    cr_expect_eq(node_ctl_status(n, "start", "t1", "counter", NULL), 0);
    cr_expect_eq(node_ctl_status(n, "start", "t1", "counter", NULL), 4); /* already running */
    cr_expect_eq(node_ctl_status(n, "stop", "t1", NULL), 0);
}

NODE_TEST(start_many_starts_every_id_and_procs_lists_them)
{
    hnode *n = node_spawn(&H, "--cores", "2", NULL);
    cr_assert_not_null(n);
    EXPECT_TEXT(n, "started 2500 failed 0\n", "start-many", "w", "2500", "counter");
    int status = 0;
    char *text = NULL;
    cr_assert_eq(CTL(n, &status, &text, "start-many", "w", "10", "counter"), 0);
    cr_expect_eq(status, 4, "re-starting running ids fails");
    cr_expect(starts_with(text, "started 0 failed 10\n"), "%s", text);
    free(text);
    text = CTL_OK(n, "procs", "--local");
    size_t lines = 0;
    for (const char *p = text; (p = strchr(p, '\n')) != NULL; p++)
        lines++;
    cr_expect_eq(lines, 2500);
    cr_expect(strstr(text, "\nw2499 counter ") != NULL);
    free(text);
}

NODE_TEST(json_escapes_ids_that_text_would_break)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    EXPECT_TEXT(n, "started \"a b\\\"c\\n\"\n", "start", "a b\"c\n", "blob");
    char *text = CTL_OK(n, "procs", "--json");
    cr_expect(starts_with(text, "[{\"id\":\"a b\\\"c\\n\",\"type\":\"blob\","), "%s", text);
    free(text);
}

/* ---- load and check commands (the migration tests' tools) -------------------------------- */

NODE_TEST(counters_with_known_states_are_started_updated_and_checked)
{
    hnode *n = node_spawn(&H, "--cores", "2", NULL);
    cr_assert_not_null(n);
    EXPECT_TEXT(n, "started 2000 failed 0\n", "start-counters", "k", "2000");
    EXPECT_TEXT(n, "1234\n", "call", "k1234", "get");
    EXPECT_TEXT(n, "ok 2000\n", "check-counters", "k", "2000");
    EXPECT_TEXT(n, "sent 2000 failed 0\n", "send-many", "k", "2000", "add", "3");
    EXPECT_TEXT(n, "ok 2000\n", "check-counters", "k", "2000", "3");
    EXPECT_TEXT(n, "ok 2000 exact 0 alt 2000\n", "check-counters", "k", "2000", "0", "3");

    int status = 0;
    char *text = NULL;
    cr_assert_eq(CTL(n, &status, &text, "check-counters", "k", "2000"), 0);
    cr_expect_eq(status, 4);
    cr_expect(starts_with(text, "bad 2000 of 2000 missing 0 errors 0\nk0: holds 3 (want 0)\n"),
              "%s", text);
    free(text);
    EXPECT_TEXT(n, "sent\n", "send", "k5", "add", "1");
    cr_assert_eq(CTL(n, &status, &text, "check-counters", "k", "2002", "3"), 0);
    cr_expect_eq(status, 4);
    cr_expect_str_eq(text, "bad 3 of 2002 missing 2 errors 0\nk5: holds 9 (want 8)\n"
                           "k2000: missing\nk2001: missing\n");
    free(text);
    text = CTL_OK(n, "check-counters", "--json", "k", "3", "3");
    cr_expect_str_eq(text, "{\"count\":3,\"ok\":true,\"bad\":0,\"missing\":0,\"errors\":0,"
                           "\"first\":[]}\n");
    free(text);
    cr_expect_eq(node_ctl_status(n, "start-counters", "k", "0", NULL), 1);
    cr_expect_eq(node_ctl_status(n, "check-counters", "k", "10", "x", NULL), 1);
}

NODE_TEST(blobs_get_content_made_from_their_id_and_are_checked_byte_by_byte)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    EXPECT_TEXT(n, "started 300 failed 0\n", "start-blobs", "b", "300", "4096");
    EXPECT_TEXT(n, "4096\n", "call", "b17", "len");
    EXPECT_TEXT(n, "ok 300\n", "check-blobs", "b", "300", "4096");
    char *b0 = CTL_OK(n, "call", "b0", "get");
    char *b1 = CTL_OK(n, "call", "b1", "get");
    cr_expect(starts_with(b0, "{\"rec\":0,\"user\":\""), "realistic text: %.80s", b0);
    cr_expect(strcmp(b0, b1) != 0, "each id has its own content");
    free(b0);
    free(b1);
    EXPECT_TEXT(n, "sent\n", "send", "b7", "append", "x");
    int status = 0;
    char *text = NULL;
    cr_assert_eq(CTL(n, &status, &text, "check-blobs", "b", "300", "4096"), 0);
    cr_expect_eq(status, 4);
    cr_expect_str_eq(text, "bad 1 of 300 missing 0 errors 0\n"
                           "b7: 4097 bytes (want 4096), first difference at byte 4096\n");
    free(text);
    cr_expect_eq(node_ctl_status(n, "start-blobs", "b", "1", "2000000", NULL), 1);
}

typedef struct pumped {
    hnode *n;
    const char *want;
} pumped;

static bool pumps_say(void *ud)
{
    pumped *p = ud;
    int status = -1;
    char *text = NULL;
    bool found = CTL(p->n, &status, &text, "pumps") == 0 && strstr(text, p->want) != NULL;
    free(text);
    return found;
}

NODE_TEST(pumps_send_numbered_rounds_and_check_seq_verifies_them)
{
    hnode *n = node_spawn(&H, "--cores", "2", NULL);
    cr_assert_not_null(n);
    EXPECT_TEXT(n, "started 200 failed 0\n", "start-many", "q", "200", "seq");
    EXPECT_TEXT(n, "pump 1\n", "pump", "q", "200", "20", "1");
    EXPECT_TEXT(n, "pump 2\n", "pump", "q", "200", "20", "2", "5");
    EXPECT_TEXT(n, "pumps 2 running 0 rounds 40 sent 8000 failed 0\n", "pump-wait", "10000");
    EXPECT_TEXT(n, "ok 200\n", "check-seq", "q", "200", "40");
    EXPECT_TEXT(n, "total=40 violations=0 senders=2\n", "call", "q3", "get");
    EXPECT_TEXT(n, "20\n", "call", "q3", "last", "2");

    EXPECT_TEXT(n, "sent\n", "send", "q3", "s 1 7"); /* out of order */
    int status = 0;
    char *text = NULL;
    cr_assert_eq(CTL(n, &status, &text, "check-seq", "q", "200", "40"), 0);
    cr_expect_eq(status, 4);
    cr_expect_str_eq(text, "bad 1 of 200 missing 0 errors 0 violations 1 short 0 over 1\n"
                           "q3: total 41 (want 40), violations 1\n");
    free(text);

    /* An endless pump ends after its round when told to: whole rounds only. */
    EXPECT_TEXT(n, "pump 3\n", "pump", "q", "200", "1000000", "3", "10");
    pumped p = {n, "running 1 "};
    cr_expect(harness_wait(pumps_say, &p, CONVERGE_MS), "the third pump runs");
    EXPECT_TEXT(n, "stopping\n", "pump-stop");
    text = CTL_OK(n, "pump-wait", "5000");
    unsigned pumps = 0, running = 9;
    unsigned long long rounds = 0, sent = 0, failed = 9;
    cr_expect_eq(sscanf(text, "pumps %u running %u rounds %llu sent %llu failed %llu", &pumps,
                        &running, &rounds, &sent, &failed),
                 5, "%s", text);
    free(text);
    cr_expect_eq(pumps, 3);
    cr_expect_eq(running, 0);
    cr_expect_eq(failed, 0);
    cr_expect_gt(rounds, 40);
    cr_expect_eq(sent, rounds * 200, "whole rounds");
    cr_expect_eq(node_ctl_status(n, "pump", "q", "200", "0", "1", NULL), 1, "ROUNDS 0");
    cr_expect_eq(node_ctl_status(n, "pump", "q", "200", "1", "x", NULL), 1, "SENDER x");
}

NODE_TEST(pump_wait_times_out_while_a_pump_runs)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    EXPECT_TEXT(n, "started 10 failed 0\n", "start-many", "q", "10", "seq");
    EXPECT_TEXT(n, "pump 1\n", "pump", "q", "10", "1000000", "1", "100");
    int status = 0;
    char *text = NULL;
    cr_assert_eq(CTL(n, &status, &text, "pump-wait", "50"), 0);
    cr_expect_eq(status, 4);
    cr_expect(strstr(text, "running 1 ") && strstr(text, "error: timed out, 1 running\n"), "%s",
              text);
    free(text);
    text = CTL_OK(n, "pumps", "--json");
    cr_expect(starts_with(text, "{\"pumps\":1,\"running\":1,"), "%s", text);
    free(text);
    /* The node leaves with the pump still running: it ends with the node. Alone, the
     * node has nowhere to move its 10 processes: exit 3, they did not move. */
    EXPECT_TEXT(n, "leaving\n", "leave");
    cr_expect_eq(node_wait_exit(n, EXIT_MS), 3);
}

NODE_TEST(placement_finds_every_process_on_its_owner_and_reports_missing_ones)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    EXPECT_TEXT(n, "started 500 failed 0\n", "start-counters", "p", "500");
    EXPECT_TEXT(n, "misplaced 0 missing 0 errors 0 of 500\n", "placement", "p", "500");
    int status = 0;
    char *text = NULL;
    cr_assert_eq(CTL(n, &status, &text, "placement", "p", "502"), 0);
    cr_expect_eq(status, 4);
    cr_expect_str_eq(text, "misplaced 0 missing 2 errors 0 of 502\np500: missing\np501: missing\n");
    free(text);
    text = CTL_OK(n, "placement", "--json", "p", "500");
    cr_expect_str_eq(text, "{\"count\":500,\"misplaced\":0,\"missing\":0,\"errors\":0,"
                           "\"first\":[]}\n");
    free(text);
}

NODE_TEST(stats_list_the_migration_counters_and_hook_counts)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    static const char *const rows[] = {
        "migrating",
        "migrated_out",
        "migrated_in",
        "migration_failures",
        "forwarded_messages",
        "held_messages",
        "handover_bytes_raw",
        "handover_bytes_wire",
        "handover_frames_zstd",
        "handover_frames_raw",
        "handover_frames_lane",
        "handover_lanes_lost",
        "pause_p50_us",
        "pause_p99_us",
        "pause_max_us",
        "hook_children_migrated",
        "hook_children_migrated_ids",
        "hook_migration_failed",
        "hook_pre_children_redistribution",
        "hook_pre_children_redistribution_ids",
    };
    char *text = CTL_OK(n, "stats");
    char *json = CTL_OK(n, "stats", "--json");
    char want[96];
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        snprintf(want, sizeof(want), "\n%s 0\n", rows[i]);
        cr_expect(strstr(text, want) != NULL, "stats: %s", rows[i]);
        snprintf(want, sizeof(want), ",\"%s\":0", rows[i]);
        cr_expect(strstr(json, want) != NULL, "stats --json: %s", rows[i]);
    }
    free(text);
    free(json);
}

/* Runs `corehub node` with these arguments (and a cookie) and returns its exit status;
 * for command lines that must be refused before the node starts. */
static int node_exit_status(const char *a1, const char *a2)
{
    char *argv[] = {CH_COREHUB_BIN, "node",     "--listen", "127.0.0.1:0", "--cookie-file",
                    H.cookie_path,  (char *)a1, (char *)a2, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    cr_assert_eq(posix_spawn(&pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    int ws = 0;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

NODE_TEST(migration_flags_are_accepted_and_bad_values_refused)
{
    hnode *n =
        node_spawn(&H, "--strategy", "hotswap", "--handover", "--confirm-handover", "--retention",
                   "500", "--child-timeout", "2000", "--leave-wait", "4000", "--codec", "zstd:3",
                   "--batch-bytes", "65536", "--inflight-bytes", "1048576", NULL);
    cr_assert_not_null(n, "every migration flag is accepted");
    EXPECT_TEXT(n, "1\n", "epoch");
    hnode *cold = node_spawn(&H, "--strategy", "coldswap", "--codec", "auto:-5", NULL);
    cr_assert_not_null(cold);
    hnode *none = node_spawn(&H, "--codec", "none", NULL);
    cr_assert_not_null(none);

    static const char *const bad[][2] = {
        {"--strategy", "warm"},  {"--codec", "lz4"},         {"--codec", "zstd:"},
        {"--codec", "none:1"},   {"--codec", "zstd:x"},      {"--batch-bytes", "1000"},
        {"--batch-bytes", "2m"}, {"--inflight-bytes", "10"}, {"--retention", "0"},
        {"--leave-wait", "-5"},  {"--child-timeout", "x"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_eq(node_exit_status(bad[i][0], bad[i][1]), 2, "%s %s", bad[i][0], bad[i][1]);
    cr_expect_eq(node_exit_status("--handover", "extra"), 2, "a stray argument");
}

NODE_TEST(a_leaving_node_prints_what_it_moved)
{
    if (getenv("CH_HARNESS_LOGS")) cr_skip_test("node logs go to stderr, not to files");
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    EXPECT_TEXT(n, "leaving\n", "leave");
    cr_expect_eq(node_wait_exit(n, EXIT_MS), 0);
    cr_expect(node_log_has(n, "left: moved 0 processes, 0 not moved\n"), "see %s", n->log);
}

/* ---- two nodes -------------------------------------------------------------------------- */

typedef struct pair {
    hnode *a, *b;
} pair;

static void spawn_pair(pair *p)
{
    p->a = node_spawn_member(&H, NULL, NULL, NULL); /* quick convergence and leave */
    cr_assert_not_null(p->a);
    p->b = node_spawn_member(&H, p->a, NULL, NULL);
    cr_assert_not_null(p->b);
    hnode *both[] = {p->a, p->b};
    harness_assert_alive(both, 2, 2, CONVERGE_MS);
}

NODE_TEST(two_nodes_see_each_other_and_call_across)
{
    pair p;
    spawn_pair(&p);
    EXPECT_TEXT(p.a, "started 20 failed 0\n", "start-many", "k", "20", "counter");
    /* With 20 ids on a ring of two, some live on each node: B's calls cross the wire. */
    char id[8];
    for (int i = 0; i < 20; i++) {
        snprintf(id, sizeof(id), "k%d", i);
        EXPECT_TEXT(p.b, "sent\n", "send", id, "add", "3");
        EXPECT_TEXT(p.b, "3\n", "call", id, "get");
    }
    cr_expect(hub_wait_listed(&p.b, 1, 20, CONVERGE_MS), "B's registry replica is short");
    char *text = CTL_OK(p.b, "members");
    char want[128];
    snprintf(want, sizeof(want), "%016llx %s alive 1\n", (unsigned long long)p.a->id, p.a->addr);
    cr_expect(strstr(text, want) != NULL, "members: %s", text);
    free(text);
}

NODE_TEST(sigterm_leaves_the_hub_and_exits_0)
{
    pair p;
    spawn_pair(&p);
    cr_expect_eq(node_term(p.b, EXIT_MS), 0);
    cr_expect(hub_wait_count(&p.a, 1, "alive", 1, CONVERGE_MS), "A still counts B alive");
    cr_expect_eq(node_ctl_status(p.a, "epoch", NULL), 0, "A serves on");
    cr_expect_eq(node_term(p.a, EXIT_MS), 0, "the last member leaves too");
}

NODE_TEST(ctl_leave_answers_then_the_node_exits_0)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    EXPECT_TEXT(n, "leaving\n", "leave");
    cr_expect_eq(node_wait_exit(n, EXIT_MS), 0);
}

/* ---- refusals --------------------------------------------------------------------------- */

NODE_TEST(wrong_cookie_is_refused_and_the_node_serves_on)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    static const char wrong[] = "not-the-hub-cookie-0123456789";
    ch_ctl *c = NULL;
    cr_expect_eq(ch_ctl_open(n->addr, NULL, wrong, sizeof(wrong) - 1, 5000, &c), -EACCES);
    cr_expect_null(c);
    int rc = ch_ctl_open(n->addr, "another-hub", H.cookie, H.cookie_len, 5000, &c);
    cr_expect(rc == -EPERM || rc == -EACCES, "other hub: %s", ch_strerror(rc));
    EXPECT_TEXT(n, "1\n", "epoch");
}

NODE_TEST(garbage_bytes_are_refused_and_the_node_serves_on)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    int fd = th_connect(node_port(n), 0);
    char junk[512];
    memset(junk, 0xa5, sizeof(junk));
    cr_expect_eq(send(fd, junk, sizeof(junk), MSG_NOSIGNAL), (ssize_t)sizeof(junk));
    close(fd);
    EXPECT_TEXT(n, "1\n", "epoch");
}

/* ---- --metrics: Prometheus over HTTP, scraped with curl ---------------------------------- */

/* Runs curl on the node's metrics port: its output (malloc'd) and *code the HTTP status. */
static char *scrape(int port, const char *path, int *code)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "curl -s -m 10 -w '\\nHTTP_CODE %%{http_code}\\n' http://127.0.0.1:%d%s", port, path);
    FILE *f = popen(cmd, "r");
    cr_assert_not_null(f, "curl");
    size_t cap = 1 << 16, len = 0;
    char *out = malloc(cap);
    cr_assert_not_null(out);
    size_t got;
    while ((got = fread(out + len, 1, cap - len - 1, f)) > 0)
        if ((len += got) == cap - 1 && !(out = realloc(out, cap *= 2))) cr_assert_fail("memory");
    out[len] = '\0';
    cr_assert_eq(pclose(f), 0, "curl failed: %s", out);
    const char *c = strstr(out, "HTTP_CODE ");
    *code = c ? atoi(c + 10) : -1;
    return out;
}

NODE_TEST(metrics_are_served_to_curl_in_prometheus_format)
{
    hnode *n = node_spawn(&H, "--metrics", "127.0.0.1:0", "--cores", "2", NULL);
    cr_assert_not_null(n);
    EXPECT_TEXT(n, "started 50 failed 0\n", "start-many", "m", "50", "counter");
    char *stats = CTL_OK(n, "stats");
    const char *at = strstr(stats, "metrics_port ");
    cr_assert_not_null(at, "%s", stats);
    int port = atoi(at + 13);
    free(stats);
    cr_assert_gt(port, 0);
    int code;
    char *text = scrape(port, "/metrics", &code);
    cr_expect_eq(code, 200);
    cr_expect(strstr(text, "# TYPE corehub_processes gauge\n"), "%s", text);
    cr_expect(strstr(text, "corehub_processes{core=\"all\"} 50\n"), "%s", text);
    cr_expect(strstr(text, "corehub_processes{core=\"0\"} "), "per core");
    cr_expect(strstr(text, "corehub_processes{core=\"coordinator\"} 0\n"), "coordinator");
    cr_expect(strstr(text, "# TYPE corehub_migration_pause_seconds histogram\n"), "histogram");
    cr_expect(strstr(text, "corehub_migration_pause_seconds_bucket{le=\"+Inf\"} 0\n"), "+Inf");
    cr_expect(
        strstr(text, "corehub_migration_pause_quantile_seconds{quantile=\"0.99\"} 0.000000\n"),
        "p99");
    cr_expect(strstr(text, "corehub_members 1\n"), "members");
    free(text);
    text = scrape(port, "/elsewhere", &code);
    cr_expect_eq(code, 404);
    free(text);
    /* Not HTTP: the connection is closed, the node serves on (and so does the endpoint). */
    int fd = th_connect(port, 0);
    cr_expect_eq(send(fd, "garbage\r\n\r\n", 11, MSG_NOSIGNAL), 11);
    char b[16];
    cr_expect_eq(recv(fd, b, sizeof(b), 0), 0, "closed without an answer");
    close(fd);
    text = scrape(port, "/metrics", &code);
    cr_expect_eq(code, 200);
    free(text);
    char *same = CTL_OK(n, "metrics");
    cr_expect(starts_with(same, "# HELP corehub_processes "), "%s", same);
    free(same);
}

/* The node answers on the control thread later than it read the request: the answer
 * must not touch the connection of a client that has gone meanwhile. */
NODE_TEST(client_hanging_up_before_the_answer_leaves_the_node_serving)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    ch_ctl *c = NULL;
    cr_assert_eq(ch_ctl_open(n->addr, NULL, H.cookie, H.cookie_len, 5000, &c), 0);
    ch_ctl_close(c);
    cr_assert_eq(ch_ctl_open(n->addr, NULL, H.cookie, H.cookie_len, 20, &c), 0);
    const char *argv[] = {"start-many", "h", "100000", "counter"};
    int status = 0;
    char *text = NULL;
    cr_expect_eq(ch_ctl_exec(c, 4, argv, &status, &text), -ETIMEDOUT);
    ch_ctl_close(c); /* gone before the answer */
    cr_expect(hub_wait_stat(&n, 1, "processes", 100000, HUB_EXACTLY, 20000, NULL));
    EXPECT_TEXT(n, "1\n", "epoch");
}

NODE_TEST(node_without_cookie_refuses_to_start)
{
    char *argv[] = {CH_COREHUB_BIN, "node", "--listen", "127.0.0.1:0", NULL};
    char *envp[] = {"PATH=/usr/bin:/bin", NULL}; /* and no COREHUB_COOKIE_FILE */
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    cr_assert_eq(posix_spawn(&pid, argv[0], &fa, NULL, argv, envp), 0);
    posix_spawn_file_actions_destroy(&fa);
    int ws = 0;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    cr_expect(WIFEXITED(ws) && WEXITSTATUS(ws) == 2, "status %#x", ws);
}

/* A bound socket: listening (accepts, never answers) or not (connections are refused). */
static int local_socket(bool listening, char *addr, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(sa);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    if (listening) cr_assert_eq(listen(fd, 4), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    snprintf(addr, cap, "127.0.0.1:%d", ntohs(sa.sin_port));
    return fd;
}

Test(tools_node, ctl_open_reports_refusal_silence_and_bad_arguments)
{
    char addr[64];
    ch_ctl *c = NULL;
    int fd = local_socket(false, addr, sizeof(addr));
    cr_expect_eq(ch_ctl_open(addr, NULL, H.cookie, H.cookie_len, 2000, &c), -ECONNREFUSED);
    close(fd);
    fd = local_socket(true, addr, sizeof(addr));
    uint64_t t0 = th_now_ms();
    cr_expect_eq(ch_ctl_open(addr, NULL, H.cookie, H.cookie_len, 200, &c), -ETIMEDOUT);
    cr_expect_lt(th_now_ms() - t0, 2000, "the timeout bounds the handshake");
    close(fd);
    cr_expect_eq(ch_ctl_open("no-port", NULL, H.cookie, H.cookie_len, 200, &c), -EINVAL);
    cr_expect_eq(ch_ctl_open(addr, NULL, "short", 5, 200, &c), -EINVAL);
    cr_expect_null(c);
}

NODE_TEST(ctl_exec_refuses_bad_argument_lists)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    ch_ctl *c = NULL;
    cr_assert_eq(ch_ctl_open(n->addr, NULL, H.cookie, H.cookie_len, 5000, &c), 0);
    const char *many[65];
    for (int i = 0; i < 65; i++)
        many[i] = "epoch";
    int status = 0;
    char *text = NULL;
    cr_expect_eq(ch_ctl_exec(c, 65, many, &status, &text), -EINVAL);
    cr_expect_eq(ch_ctl_exec(c, 0, many, &status, &text), -EINVAL);
    const char *with_null[] = {"lookup", NULL};
    cr_expect_eq(ch_ctl_exec(c, 2, with_null, &status, &text), -EINVAL);
    cr_expect_eq(ch_ctl_exec(c, 1, many, &status, &text), 0, "the channel is still in step");
    cr_expect_str_eq(text, "1\n");
    free(text);
    ch_ctl_close(c);
}

/* ---- the corehub ctl program ----------------------------------------------------------- */

/* Runs `corehub ctl --node ADDR --cookie-file F args...`; stdout into out (cap bytes). */
static int run_ctl(const char *addr, const char *cookie, char *out, size_t cap, const char *a1,
                   const char *a2, const char *a3)
{
    char *argv[] = {CH_COREHUB_BIN, "ctl",      "--node",   (char *)addr, "--cookie-file",
                    (char *)cookie, (char *)a1, (char *)a2, (char *)a3,   NULL};
    int pipefd[2];
    cr_assert_eq(pipe(pipefd), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
    posix_spawn_file_actions_addopen(&fa, STDERR_FILENO, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addclose(&fa, pipefd[0]);
    pid_t pid;
    cr_assert_eq(posix_spawn(&pid, argv[0], &fa, NULL, argv, environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    size_t len = 0;
    for (ssize_t got; len < cap - 1 && (got = read(pipefd[0], out + len, cap - 1 - len)) > 0;)
        len += (size_t)got;
    out[len] = '\0';
    close(pipefd[0]);
    int ws = 0;
    cr_assert_eq(waitpid(pid, &ws, 0), pid);
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

NODE_TEST(ctl_program_prints_the_answer_and_exits_with_its_status)
{
    hnode *n = node_spawn(&H, NULL);
    cr_assert_not_null(n);
    char out[256], wrong[HARNESS_PATH_MAX + 16];
    cr_expect_eq(run_ctl(n->addr, H.cookie_path, out, sizeof(out), "start", "c", "counter"), 0);
    cr_expect_eq(run_ctl(n->addr, H.cookie_path, out, sizeof(out), "call", "c", "get"), 0);
    cr_expect_str_eq(out, "0\n");
    cr_expect_eq(run_ctl(n->addr, H.cookie_path, out, sizeof(out), "lookup", "nope", NULL), 3);

    snprintf(wrong, sizeof(wrong), "%s/wrong-cookie", H.dir);
    int fd = open(wrong, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, "0123456789abcdef-wrong", 22), 22);
    close(fd);
    cr_expect_eq(run_ctl(n->addr, wrong, out, sizeof(out), "epoch", NULL, NULL), 2);
    cr_expect_str_eq(out, "");
    unlink(wrong);
}
