/*
 * core/waiter.c - a one-shot completion a thread waits on with a deadline (node.h): the
 * blocking API calls post a record and wait here for the reactor that answers.
 */
#include "node.h"

#include <errno.h>
#include <time.h>

int ch_waiter_init(ch_waiter *w)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(&w->cv, &a);
    pthread_condattr_destroy(&a);
    if (rc) return -rc;
    rc = pthread_mutex_init(&w->mu, NULL);
    if (rc) {
        pthread_cond_destroy(&w->cv);
        return -rc;
    }
    w->done = 0;
    atomic_init(&w->ready, 0);
    return 0;
}

void ch_waiter_destroy(ch_waiter *w)
{
    pthread_cond_destroy(&w->cv);
    pthread_mutex_destroy(&w->mu);
}

void ch_waiter_signal(ch_waiter *w)
{
    pthread_mutex_lock(&w->mu);
    w->done = 1;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    atomic_store_explicit(&w->ready, 1, memory_order_release); /* the last touch of w */
}

static inline void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Answers often come back within microseconds, and waking a sleeping thread costs tens of
 * them here: spin a little before sleeping. */
static bool spin_for(ch_waiter *w, uint64_t ns)
{
    uint64_t end = ch_now_ns() + ns;
    do {
        for (int i = 0; i < 64; i++) {
            if (atomic_load_explicit(&w->ready, memory_order_acquire)) return true;
            relax();
        }
    } while (ch_now_ns() < end);
    return false;
}

int ch_waiter_wait(ch_waiter *w, uint32_t timeout_ms)
{
    return ch_waiter_wait_spin(w, timeout_ms, 0);
}

int ch_waiter_wait_spin(ch_waiter *w, uint32_t timeout_ms, uint64_t spin_ns)
{
    struct timespec dl;
    clock_gettime(CLOCK_MONOTONIC, &dl);
    dl.tv_sec += timeout_ms / 1000;
    dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (dl.tv_nsec >= 1000000000) {
        dl.tv_sec++;
        dl.tv_nsec -= 1000000000;
    }
    if (spin_ns && spin_for(w, spin_ns)) return 0;
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    while (!w->done && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&w->cv, &w->mu, &dl);
    int done = w->done;
    pthread_mutex_unlock(&w->mu);
    if (!done) return -ETIMEDOUT;
    while (!atomic_load_explicit(&w->ready, memory_order_acquire))
        relax(); /* nanoseconds */
    return 0;
}
