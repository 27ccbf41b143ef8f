/*
 * tests/test_cluster.c - the hub with real `corehub node` processes on 127.0.0.1 (kernel-
 * chosen ports), driven through the control channel: joins, placement and registry
 * agreement, remote calls from every node, a kill -9, each partition strategy, a node with
 * the wrong cookie, and a client that sends garbage instead of frames.
 *
 * Nodes probe every 200 ms so that failures are detected in about a second; every wait is
 * a poll with a deadline (harness_wait), never a bare sleep.
 */
#include "harness_suite.h"
#include "hub_checks.h"
#include "sock.h"

#include "net/frame.h"

#include <errno.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CTL(n, st, txt, ...) node_ctl((n), (st), (txt), __VA_ARGS__, NULL)
#define CONVERGE_MS          15000

HARNESS_SUITE(cluster, .timeout = 120);

/* A node of the hub of seed (NULL: the first), with up to two more arguments. */
static hnode *spawn_hub_node(hnode *seed, const char *extra1, const char *extra2)
{
    const char *const extra[] = {extra1, extra2, NULL};
    hnode *n = node_spawn_member(&H, seed, NULL, extra);
    cr_assert_not_null(n, "a node starts");
    return n;
}

static void start_many(hnode *n, const char *prefix, const char *count)
{
    int st;
    char *text = NULL;
    cr_assert_eq(CTL(n, &st, &text, "start-many", prefix, count, "counter"), 0);
    cr_assert_eq(st, 0, "start-many: %s", text ? text : "");
    free(text);
}

static void hub_of(hnode **n, int count)
{
    cr_assert_eq(harness_spawn_hub(&H, n, count, NULL), 0, "the nodes start");
    harness_assert_alive(n, count, count, CONVERGE_MS);
}

Test(cluster, four_nodes_place_10000_processes_on_their_owners_and_agree)
{
    hnode *n[4];
    hub_of(n, 4);
    start_many(n[0], "p", "10000");
    cr_assert(hub_wait_listed(n, 4, 10000, CONVERGE_MS), "every registry lists 10000");
    cr_assert(hub_wait_running(n, 4, 10000, CONVERGE_MS), "each process runs on one node");
    for (int i = 0; i < 4; i++)
        cr_assert_gt(node_ctl_lines(n[i], "procs", "--local", NULL), 1500,
                     "node %d owns a fair share", i);
    cr_assert_eq(harness_check(&H), 0);
}

Test(cluster, calls_from_every_node_reach_every_process)
{
    hnode *n[3];
    hub_of(n, 3);
    start_many(n[1], "c", "300");
    char id[16];
    for (int i = 0; i < 300; i++) {
        snprintf(id, sizeof(id), "c%d", i);
        for (int k = 0; k < 3; k++)
            cr_assert_eq(node_ctl_status(n[k], "send", id, "inc", NULL), 0);
    }
    for (int i = 0; i < 300; i += 3) {
        snprintf(id, sizeof(id), "c%d", i);
        for (int k = 0; k < 3; k++) {
            int st;
            char *text = NULL;
            /* The three sends took three paths: poll until all arrived. */
            uint64_t end = th_now_ms() + 10000;
            do {
                free(text);
                text = NULL;
                cr_assert_eq(CTL(n[k], &st, &text, "call", id, "get"), 0);
            } while (st == 0 && atoi(text) != 3 && th_now_ms() < end);
            cr_assert_eq(st, 0, "call %s from node %d", id, k);
            cr_assert_eq(atoi(text), 3, "%s counted every send from every node: %s", id, text);
            free(text);
        }
    }
    cr_assert_eq(harness_check(&H), 0);
}

/* stat a (+ stat b) has reached `want`. */
typedef struct stats_sum {
    hnode *n;
    const char *a, *b;
    long long want;
} stats_sum;

static bool sum_reaches(void *ud)
{
    stats_sum *s = ud;
    return node_stat(s->n, s->a) + (s->b ? node_stat(s->n, s->b) : 0) >= s->want;
}

Test(cluster, kill_9_restarts_the_dead_nodes_processes_on_the_survivors)
{
    hnode *n[3];
    hub_of(n, 3);
    start_many(n[0], "k", "3000");
    cr_assert(hub_wait_running(n, 3, 3000, CONVERGE_MS));
    /* Only replicated rows can be restarted: a crash loses what it had not announced. */
    cr_assert(hub_wait_listed(n, 3, 3000, CONVERGE_MS));
    long lost = node_ctl_lines(n[2], "procs", "--local", NULL);
    cr_assert_gt(lost, 0);
    cr_assert_eq(node_kill9(n[2]), 0);
    n[2] = NULL;
    cr_assert(hub_wait_count(n, 2, "dead", 1, CONVERGE_MS), "the survivors declare it dead");
    cr_assert(hub_wait_running(n, 2, 3000, CONVERGE_MS), "every process runs again, once");
    cr_assert(hub_wait_listed(n, 2, 3000, CONVERGE_MS), "registries forget the dead rows");
    cr_assert_eq(node_stat(n[0], "crash_restarts") + node_stat(n[1], "crash_restarts"), lost,
                 "each lost process restarted exactly once");
    cr_assert_eq(harness_check(&H), 0);
}

/* Spawns `count` nodes with a partition strategy, kills `kill` of them, checks the
 * survivor enters partition mode; then `heal` brings it back. */
static void partition_case(const char *strategy, int count, int kill, void (*heal)(hnode **, int))
{
    hnode *n[6];
    const char *const extra[] = {"--partition", strategy, NULL};
    cr_assert_eq(harness_spawn_hub(&H, n, count, extra), 0, "%s: the nodes start", strategy);
    harness_assert_alive(n, count, count, CONVERGE_MS);
    cr_assert_eq(node_stat(n[0], "partitioned"), 0, "%s: a whole hub is not partitioned", strategy);
    for (int i = count - kill; i < count; i++) {
        cr_assert_eq(node_kill9(n[i]), 0);
        n[i] = NULL;
    }
    cr_assert(hub_wait_stat(n, 1, "partitioned", 1, HUB_EXACTLY, CONVERGE_MS, NULL),
              "%s: partition mode", strategy);
    cr_assert_eq(node_ctl_status(n[0], "start", "late", "counter", NULL), 4,
                 "%s: starts are refused in partition mode", strategy);
    heal(n, count);
    cr_assert(hub_wait_stat(n, 1, "partitioned", 0, HUB_EXACTLY, CONVERGE_MS, NULL),
              "%s: partition mode is over", strategy);
    cr_assert_eq(node_ctl_status(n[0], "start", "later", "counter", NULL), 0);
    cr_assert_eq(harness_check(&H), 0);
}

static void rejoin_static(hnode **n, int count)
{
    for (int i = 0; i < count; i++)
        if (!n[i]) n[i] = spawn_hub_node(n[0], "--partition", "static:3");
}

static void rejoin_dynamic(hnode **n, int count)
{
    for (int i = 0; i < count; i++)
        if (!n[i]) n[i] = spawn_hub_node(n[0], "--partition", "dynamic:40");
}

static void reset_majority(hnode **n, int count)
{
    (void)count;
    cr_assert_eq(node_ctl_status(n[0], "partition-reset", NULL), 0);
}

Test(cluster, static_quorum_enters_and_leaves_partition_mode)
{
    partition_case("static:3", 3, 1, rejoin_static);
}

Test(cluster, dynamic_quorum_enters_and_leaves_partition_mode)
{
    partition_case("dynamic:40", 3, 2, rejoin_dynamic);
}

Test(cluster, majority_quorum_enters_partition_mode_and_reset_leaves_it)
{
    partition_case("majority", 3, 2, reset_majority);
}

Test(cluster, a_node_with_the_wrong_cookie_cannot_join)
{
    hnode *n[2];
    hub_of(n, 2);
    char path[HARNESS_PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/other-cookie", H.dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("a-completely-different-secret-cookie", f);
    fclose(f);
    chmod(path, 0600);
    hnode *intruder = spawn_hub_node(n[0], "--cookie-file", path);
    stats_sum refused = {n[0], "refused_peers", NULL, 1};
    cr_assert(harness_wait(sum_reaches, &refused, CONVERGE_MS), "the seed refused the handshake");
    cr_assert_eq(node_count_members(n[0], NULL), 2, "the hub does not list the intruder");
    cr_assert_eq(node_count_members(n[1], NULL), 2);
    cr_assert(node_alive(intruder));
    cr_assert_eq(harness_check(&H), 0);
}

/* ---- garbage on the wire ------------------------------------------------------------- */

/* Sends bytes, then waits for the node to close the connection (read returns 0 or an
 * error; the receive timeout bounds the wait). */
static bool sent_and_closed(const hnode *n, const void *bytes, size_t len, bool then_close)
{
    int fd = th_connect(node_port(n), 10);
    ssize_t w = write(fd, bytes, len);
    cr_assert_eq(w, (ssize_t)len);
    if (then_close) {
        close(fd);
        return true;
    }
    /* The node may first send its HELLO; then it must hang up. */
    bool closed = th_closed_by_peer(fd);
    close(fd);
    return closed;
}

static void header(uint8_t *out, uint8_t version, uint8_t type, uint32_t len, uint64_t sum)
{
    out[0] = version;
    out[1] = type;
    out[2] = out[3] = 0;
    memcpy(out + 4, &len, 4);
    memcpy(out + 8, &sum, 8);
}

typedef struct serving {
    hnode *n;
} serving;

static bool still_serves(hnode *n)
{
    return node_ctl_status(n, "start", "alive-check", "counter", NULL) >= 0 &&
           node_ctl_status(n, "call", "alive-check", "get", NULL) == 0;
}

Test(cluster, garbage_frames_close_the_connection_and_the_node_keeps_serving)
{
    hnode *n = spawn_hub_node(NULL, NULL, NULL);
    uint8_t junk[64];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 37 + 11);
    uint8_t f[CH_FRAME_HDR + 8];
    memset(f, 0, sizeof(f));

    cr_assert(sent_and_closed(n, junk, sizeof(junk), false), "random bytes");
    header(f, 9, CH_F_HELLO, 8, 0);
    cr_assert(sent_and_closed(n, f, sizeof(f), false), "a bad version");
    header(f, CH_FRAME_VERSION, 200, 8, 0);
    cr_assert(sent_and_closed(n, f, sizeof(f), false), "an unknown type");
    header(f, CH_FRAME_VERSION, CH_F_HELLO, 0x7fffffff, 0);
    cr_assert(sent_and_closed(n, f, CH_FRAME_HDR, false), "a huge length");
    header(f, CH_FRAME_VERSION, CH_F_HELLO, 8, 12345);
    cr_assert(sent_and_closed(n, f, sizeof(f), false), "a bad checksum");
    header(f, CH_FRAME_VERSION, CH_F_CAST, 8, 0);
    cr_assert(sent_and_closed(n, f, sizeof(f), false), "a frame before the handshake");
    cr_assert(sent_and_closed(n, f, CH_FRAME_HDR + 3, true), "a truncated frame, then gone");

    cr_assert(still_serves(n), "the node serves a proper client after all that");
    stats_sum counted = {n, "bad_frames", "refused_peers", 6};
    cr_assert(harness_wait(sum_reaches, &counted, 5000), "each bad connection is counted");
    cr_assert_eq(harness_check(&H), 0);
}
