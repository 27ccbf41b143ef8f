/*
 * tests/lib/harness_suite.h - the Criterion side of the cluster harness: a suite whose
 * fixture gives each test a fresh harness H and cleans it up, also after a failed
 * assertion, tests whose verdict includes that no node died on its own, and assertions
 * about the hub (hub_checks.h).
 *
 *   HARNESS_SUITE(cluster, .timeout = 120);
 *   HARNESS_TEST(cluster, a_join_moves_processes) { hnode *n = node_spawn(&H, NULL); ... }
 */
#ifndef CH_TESTS_HARNESS_SUITE_H
#define CH_TESTS_HARNESS_SUITE_H

#include "cluster_harness.h"
#include "hub_checks.h"

#include <criterion/criterion.h>
#include <signal.h>

/* What HARNESS_SUITE_WITH may run before or after the harness. */
static inline void harness_suite_nothing(void) {}

/* For suites that write to sockets a node may have closed: an error, not a death. */
static inline void harness_suite_no_sigpipe(void)
{
    signal(SIGPIPE, SIG_IGN);
}

/* Declares `static ch_harness H` and the suite (the rest are TestSuite's options). */
#define HARNESS_SUITE(suite, ...)                                                                  \
    HARNESS_SUITE_WITH(suite, harness_suite_nothing, harness_suite_nothing, __VA_ARGS__)

/* The same, with before() run first in each test's init and after() first in its fini
 * (a suite's own setup and cleanup: firewall rules, signal dispositions). */
#define HARNESS_SUITE_WITH(suite, before, after, ...)                                              \
    static ch_harness H;                                                                           \
    static void suite##_harness_init(void)                                                         \
    {                                                                                              \
        before();                                                                                  \
        cr_assert_eq(harness_init(&H), 0, "harness_init");                                         \
    }                                                                                              \
    static void suite##_harness_fini(void)                                                         \
    {                                                                                              \
        after();                                                                                   \
        harness_fini(&H);                                                                          \
    }                                                                                              \
    TestSuite(suite, .init = suite##_harness_init, .fini = suite##_harness_fini, __VA_ARGS__)

/* A test whose verdict also requires that no node died on its own (a crash, a sanitizer
 * report): Criterion ignores assertions made in a fixture's fini. */
#define HARNESS_TEST(suite, name)                                                                  \
    static void name##_body(void);                                                                 \
    Test(suite, name)                                                                              \
    {                                                                                              \
        name##_body();                                                                             \
        cr_expect_eq(harness_check(&H), 0, "a node died on its own: its log is above");            \
    }                                                                                              \
    static void name##_body(void)

/* Asserts that every node of nodes[0..count) (NULL ones skipped) sees `alive` members
 * alive within timeout_ms. */
static inline void harness_assert_alive(hnode **nodes, int count, int alive, int timeout_ms)
{
    cr_assert(hub_wait_count(nodes, count, "alive", alive, timeout_ms),
              "every node sees %d members alive within %d ms", alive, timeout_ms);
}

#endif
