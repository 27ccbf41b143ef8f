/*
 * tests/test_faults.c - a hub of real `corehub node` processes under the faults its users
 * meet: a node that stalls (SIGSTOP) for less and for more than the failure detection time,
 * a minority cut off from its majority, and a long life of joins and leaves. Each test is
 * the regression test of a defect the faults issue found; the random schedules live in
 * the fault suite.
 *
 * A stall's length is the fault itself, not a synchronisation: every wait for the hub
 * polls a condition with a deadline.
 */
#include "harness_suite.h"
#include "hub_checks.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SETTLE_MS 60000
#define PROCS     300
#define PROCS_S   "300"

static bool cut; /* iptables rules to remove */

static int iptables(const char *op, const char *from, const char *to)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "iptables -w %s INPUT -s %s -d %s -j DROP 2>/dev/null", op, from,
             to);
    return system(cmd);
}

/* Cuts (or heals) the traffic between two loopback addresses, both ways. */
static void partition(const char *a, const char *b, bool on)
{
    const char *op = on ? "-I" : "-D";
    cr_assert_eq(iptables(op, a, b), 0, "iptables %s", op);
    cr_assert_eq(iptables(op, b, a), 0, "iptables %s", op);
    cut = on;
}

static void heal(void)
{
    if (cut) {
        iptables("-D", "127.0.0.2", "127.0.0.3");
        iptables("-D", "127.0.0.3", "127.0.0.2");
    }
}

HARNESS_SUITE_WITH(faults, harness_suite_nothing, heal, .timeout = 240);

/* A node of the hub (seed NULL: the first) probing every probe_ms; listen NULL: 127.0.0.1. */
static hnode *spawn_at(const char *listen, hnode *seed, const char *probe_ms, const char *partition)
{
    const char *args[8];
    int k = 0;
    if (listen) {
        args[k++] = "--listen";
        args[k++] = listen;
    }
    args[k++] = "--probe-ms";
    args[k++] = probe_ms;
    if (partition) {
        args[k++] = "--partition";
        args[k++] = partition;
    }
    args[k] = NULL;
    hnode *n = node_spawn_member(&H, seed, NULL, args);
    cr_assert_not_null(n, "a node starts");
    return n;
}

static hnode *spawn(hnode *seed, const char *probe_ms, const char *partition)
{
    return spawn_at(NULL, seed, probe_ms, partition);
}

static void hub_of(hnode **n, int count, const char *probe_ms, const char *partition)
{
    n[0] = spawn(NULL, probe_ms, partition);
    for (int i = 1; i < count; i++)
        n[i] = spawn(n[0], probe_ms, partition);
    cr_assert(hub_wait_members(n, count, count, SETTLE_MS), "%d nodes form a hub", count);
}

static void stall(hnode *n, long ms)
{
    cr_assert_eq(kill(n->pid, SIGSTOP), 0);
    th_sleep_ms(ms);
    cr_assert_eq(kill(n->pid, SIGCONT), 0);
}

static void start_counters(hnode *n)
{
    cr_assert_eq(node_ctl_status(n, "start-many", "f", PROCS_S, "counter", NULL), 0);
}

static void assert_settled(hnode **n, int count)
{
    hub_instances in;
    cr_assert(hub_wait_settled(n, count, "f", PROCS, SETTLE_MS, &in),
              "every process runs once, on its owner: %ld missing, %ld on two nodes, %d silent",
              in.missing, in.doubled, in.errors);
}

/* Issue 9, point 1: suspicion expired in the tick that raised it (an unsigned wrap). */
Test(faults, a_stall_shorter_than_the_suspicion_time_kills_no_one)
{
    hnode *n[3];
    hub_of(n, 3, "500", NULL); /* suspicion: 4 x 500 ms */
    start_counters(n[0]);
    assert_settled(n, 3);
    stall(n[2], 1500);
    cr_assert(hub_wait_members(n, 3, 3, SETTLE_MS), "the stalled node is alive everywhere");
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(node_count_members(n[i], "dead"), 0, "node %d declared no one dead", i);
        cr_expect_eq(node_stat(n[i], "crash_restarts"), 0, "node %d restarted nothing", i);
        cr_expect_eq(node_stat(n[i], "rejoins"), 0, "node %d had no need to rejoin", i);
    }
    assert_settled(n, 3);
    cr_assert_eq(harness_check(&H), 0);
}

/* Issue 9, point 2: a stalled node declared dead came back and ran its stale processes
 * beside their replacements for good. */
Test(faults, a_node_declared_dead_rejoins_by_itself_and_no_id_runs_twice)
{
    hnode *n[3];
    hub_of(n, 3, "200", NULL);
    start_counters(n[0]);
    assert_settled(n, 3);
    long long held = node_stat(n[2], "processes");
    cr_assert_gt(held, 0);
    cr_assert_eq(kill(n[2]->pid, SIGSTOP), 0);
    cr_assert(hub_wait_count(&n[0], 1, "dead", 1, SETTLE_MS), "the stalled node is declared dead");
    cr_assert(hub_wait_count(&n[1], 1, "dead", 1, SETTLE_MS));
    hub_instances in;
    cr_assert(hub_wait_settled(n, 2, "f", PROCS, SETTLE_MS, &in),
              "the survivors restart its processes: %ld missing", in.missing);
    cr_assert_eq(kill(n[2]->pid, SIGCONT), 0);
    cr_assert(hub_wait_members(n, 3, 3, SETTLE_MS), "it rejoins without a restart");
    assert_settled(n, 3);
    cr_expect_geq(node_stat(n[2], "rejoins"), 1, "it knows it rejoined");
    cr_expect_eq(hub_stat_sum(n, 2, "crash_restarts"), held, "its processes restarted once");
    cr_assert_eq(harness_check(&H), 0);
}

/* Issue 9, point 2, the quorum side: a minority ran the majority's processes for a while,
 * reported casts as sent, and never rejoined without a restart. */
Test(faults, a_minority_stops_at_once_refuses_sends_and_rejoins_after_the_heal)
{
    hnode *n[3];
    hub_of(n, 3, "200", "majority");
    start_counters(n[0]);
    assert_settled(n, 3);
    cr_assert_eq(kill(n[1]->pid, SIGSTOP), 0);
    cr_assert_eq(kill(n[2]->pid, SIGSTOP), 0);
    cr_assert(hub_wait_stat(n, 1, "partitioned", 1, HUB_EXACTLY, SETTLE_MS, NULL),
              "the lone node enters partition mode");
    cr_expect_eq(node_stat(n[0], "processes"), 0, "it runs nothing");
    cr_expect_eq(node_stat(n[0], "crash_restarts"), 0, "not even the majority's processes");
    cr_expect_neq(node_ctl_status(n[0], "send", "f1", "1", NULL), 0, "a cast is refused");
    cr_assert_eq(kill(n[1]->pid, SIGCONT), 0);
    cr_assert_eq(kill(n[2]->pid, SIGCONT), 0);
    cr_assert(hub_wait_members(n, 3, 3, SETTLE_MS), "the three nodes are one hub again");
    cr_expect_eq(node_stat(n[0], "partitioned"), 0, "partition mode is over");
    assert_settled(n, 3);
    cr_assert_eq(harness_check(&H), 0);
}

/* Issue 9, point 4: the member table moved under the connections' pointers at the 9th
 * distinct member, and every leave from then on hung and lost state. */
Test(faults, twelve_joins_and_leaves_each_hand_everything_over)
{
    hnode *n[2];
    n[0] = spawn(NULL, "200", NULL);
    start_counters(n[0]);
    for (int cycle = 0; cycle < 12; cycle++) {
        n[1] = spawn(n[0], "200", NULL);
        cr_assert(hub_wait_members(n, 2, 2, SETTLE_MS), "cycle %d: the node joins", cycle);
        assert_settled(n, 2);
        cr_assert_eq(node_ctl_status(n[1], "leave", NULL), 0);
        cr_assert_eq(node_wait_exit(n[1], SETTLE_MS), 0, "cycle %d: the leave handed over all",
                     cycle);
        assert_settled(n, 1);
    }
    cr_expect_eq(node_stat(n[0], "crash_restarts"), 0, "no process restarted from its spec");
    int members = node_count_members(n[0], NULL);
    cr_expect(members >= 1 && members <= 1 + 12, "the member table holds its tombstones: %d",
              members);
    cr_assert_eq(harness_check(&H), 0);
}

/* A leave that starts right after a member was killed: the moves to the dead member fail at
 * once, and the leave gave up with them (exit 3, their state lost) instead of waiting for
 * the ring without the dead member, whose round moves them to the survivors. */
Test(faults, a_leave_just_after_a_member_died_hands_everything_to_the_survivors)
{
    hnode *n[3];
    hub_of(n, 3, "200", NULL);
    start_counters(n[0]);
    assert_settled(n, 3);
    cr_assert_gt(node_stat(n[1], "processes"), 0);
    long long dead_held = node_stat(n[2], "processes");
    cr_assert_eq(node_kill9(n[2]), 0);
    cr_assert_eq(node_ctl_status(n[1], "leave", NULL), 0);
    cr_assert_eq(node_wait_exit(n[1], SETTLE_MS), 0, "the leave handed everything over");
    assert_settled(n, 1);
    cr_expect_eq(node_stat(n[0], "crash_restarts"), dead_held,
                 "only the dead node's processes restarted from their specs");
    cr_assert_eq(harness_check(&H), 0);
}

/* A row that names a node which no longer holds the process (its removal lost while faults
 * crossed) made the id run nowhere for good while every registry said where it ran. Here
 * the node loses every removal (CH_FAULT=lose-removes) and five of its processes are
 * stopped: the registry audit restarts them through their owners, once each. */
Test(faults, a_row_without_its_process_is_restarted_by_the_registry_audit)
{
    hnode *n[2];
    n[0] = spawn(NULL, "200", NULL);
    static const char *const env[] = {"CH_FAULT=lose-removes", NULL};
    n[1] = node_spawn_member(&H, n[0], env, NULL);
    cr_assert_not_null(n[1]);
    cr_assert(hub_wait_members(n, 2, 2, SETTLE_MS));
    start_counters(n[0]);
    assert_settled(n, 2);
    char *text = NULL;
    int st = -1;
    cr_assert_eq(node_ctl(n[1], &st, &text, "procs", "--local", NULL), 0);
    cr_assert_eq(st, 0);
    const char *argv[8] = {"stop"};
    int k = 1;
    for (char *line = text; line && *line && k < 6; k++) { /* "ID ..." per line */
        argv[k] = line;
        line += strcspn(line, " \n");
        char *eol = strchr(line, '\n');
        *line = '\0';
        line = eol ? eol + 1 : NULL;
    }
    cr_assert_eq(k, 6, "the node holds five processes at least");
    char *out = NULL;
    cr_assert_eq(node_ctlv(n[1], &st, &out, k, argv), 0);
    cr_assert_eq(st, 0, "they stop: %s", out ? out : "");
    free(out);
    free(text);
    assert_settled(n, 2);
    cr_expect_eq(hub_stat_sum(n, 2, "crash_restarts"), 5, "each restarted once, from its spec");
    cr_expect(node_log_has(n[1], "rows named a process not here"), "the audit says so");
    cr_assert_eq(harness_check(&H), 0);
}

static bool both_run_everything(void *ud)
{
    hnode **n = ud;
    return node_stat(n[0], "processes") == PROCS && node_stat(n[1], "processes") == PROCS;
}

/* Issue 9, "membership that heals": after a divergence partition each side ran every id;
 * once healed, exactly one instance of each survives, the ring owner's. */
Test(faults, a_healed_divergence_partition_keeps_the_owners_instance_of_each_id)
{
    if (system("iptables -w -L INPUT -n >/dev/null 2>&1") != 0) cr_skip("iptables unavailable");
    hnode *n[2];
    n[0] = spawn_at("127.0.0.2:0", NULL, "200", NULL);
    n[1] = spawn_at("127.0.0.3:0", n[0], "200", NULL);
    cr_assert(hub_wait_members(n, 2, 2, SETTLE_MS));
    start_counters(n[0]);
    assert_settled(n, 2);
    partition("127.0.0.2", "127.0.0.3", true);
    cr_assert(hub_wait_count(n, 2, "dead", 1, SETTLE_MS), "each side declares the other dead");
    cr_assert(harness_wait(both_run_everything, n, SETTLE_MS), "each side runs every process");
    partition("127.0.0.2", "127.0.0.3", false);
    cr_assert(hub_wait_members(n, 2, 2, SETTLE_MS), "the two sides are one hub again");
    assert_settled(n, 2);
    cr_expect_eq(hub_stat_sum(n, 2, "conflicts"), PROCS, "every id met its twin once");
    cr_expect_geq(node_stat(n[0], "rejoins"), 1);
    cr_expect_geq(node_stat(n[1], "rejoins"), 1);
    cr_assert_eq(harness_check(&H), 0);
}
