/*
 * tests/lib/wait.h - time and waiting, for every test: a monotonic clock, pauses, and
 * polling a condition with a deadline, which is how a test waits (never a sleep as a
 * synchronisation). Plain C without Criterion, so that the programs Criterion cannot
 * host (tsan_hub, the fault suite) share it too.
 *
 * How often a wait looks depends on what a look costs. A condition that reads memory is
 * looked at every TH_POLL_US (wait_until, TH_WAIT). One that asks a node process over its
 * control channel costs a connection: cluster_harness.h polls every HARNESS_POLL_MS. One
 * that asks in-process nodes costs their coordinators a request: inproc_hub.h polls every
 * IHUB_POLL_MS.
 */
#ifndef CH_TESTS_WAIT_H
#define CH_TESTS_WAIT_H

#include <stdbool.h>
#include <stdint.h>

#define TH_POLL_US 200u /* between two looks at a condition that reads memory */

/* Monotonic time. */
uint64_t th_now_ns(void);
uint64_t th_now_ms(void);

/* Sleeps about `us` microseconds: the interval between two looks at a condition. */
void th_pause_us(uint32_t us);
/* th_pause_us(TH_POLL_US). */
void th_poll_pause(void);
/* Sleeps the whole of `ms` milliseconds, resumed after a signal: the length of a fault or
 * of a measurement window, never a synchronisation. */
void th_sleep_ms(uint32_t ms);

/* Looks at cond(ud) every poll_us until it holds or timeout_ms passed, and once more at
 * the deadline; returns its last value. */
bool th_poll_until(bool (*cond)(void *ud), void *ud, uint32_t timeout_ms, uint32_t poll_us);

/* th_poll_until every TH_POLL_US: for a condition that reads memory. */
bool wait_until(bool (*cond)(void *ud), void *ud, uint32_t timeout_ms);

#endif
