/*
 * tests/lib/wait.c - time and waiting (see wait.h).
 */
#include "wait.h"

#include <errno.h>
#include <time.h>

uint64_t th_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t th_now_ms(void)
{
    return th_now_ns() / 1000000u;
}

void th_pause_us(uint32_t us)
{
    struct timespec ts = {us / 1000000u, (long)(us % 1000000u) * 1000L};
    nanosleep(&ts, NULL);
}

void th_poll_pause(void)
{
    th_pause_us(TH_POLL_US);
}

void th_sleep_ms(uint32_t ms)
{
    struct timespec ts = {ms / 1000u, (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

bool th_poll_until(bool (*cond)(void *ud), void *ud, uint32_t timeout_ms, uint32_t poll_us)
{
    const uint64_t deadline = th_now_ms() + timeout_ms;
    for (;;) {
        if (cond(ud)) return true;
        if (th_now_ms() >= deadline) return cond(ud);
        th_pause_us(poll_us);
    }
}

bool wait_until(bool (*cond)(void *ud), void *ud, uint32_t timeout_ms)
{
    return th_poll_until(cond, ud, timeout_ms, TH_POLL_US);
}
