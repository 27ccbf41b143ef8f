/*
 * tools/pump.c - background senders of numbered messages (see pump.h).
 *
 * One mutex and one condition variable per set guard what the pumps and the control
 * thread share: the pumps' flags (stop, done) and the end of each thread. The counters
 * a pump bumps for every message are atomics, so the hot loop takes no lock.
 */
#define _GNU_SOURCE
#include "pump.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_MIN_NS 50000ull
#define BACKOFF_MAX_NS 1000000ull

typedef struct pump {
    pump_set *set;
    ch_node *node;
    pump_params p;
    char prefix[CH_ID_MAX + 1];
    pthread_t thread;
    bool started, joined;
    bool stop_round; /* under set->mu: end after the current round */
    bool done;       /* under set->mu */
    _Atomic uint64_t rounds, sent, failed;
    _Atomic int first_error;
} pump;

struct pump_set {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* CLOCK_MONOTONIC: a pump ended, or a stop was asked */
    _Atomic bool stop_now;
    bool closing;
    unsigned npumps;
    pump pumps[PUMP_MAX];
};

static void monotonic_after(struct timespec *ts, uint64_t ns)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ns += (uint64_t)ts->tv_nsec;
    ts->tv_sec += (time_t)(ns / 1000000000u);
    ts->tv_nsec = (long)(ns % 1000000000u);
}

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int pump_set_new(pump_set **out)
{
    pump_set *ps = calloc(1, sizeof(*ps));
    if (!ps) return -ENOMEM;
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_mutex_init(&ps->mu, NULL);
    pthread_cond_init(&ps->cv, &ca);
    pthread_condattr_destroy(&ca);
    *out = ps;
    return 0;
}

/* Hot path: one send, retried while the mailbox is full. */
static int send_one(pump *pu, const char *id, const char *msg, size_t len)
{
    uint64_t backoff = BACKOFF_MIN_NS;
    for (;;) {
        int rc = ch_send(pu->node, id, CH_ID_CSTR, msg, len);
        if (rc != -EAGAIN || atomic_load(&pu->set->stop_now)) return rc;
        struct timespec ts = {0, (long)backoff};
        nanosleep(&ts, NULL); /* back-off while the reactors drain */
        if (backoff < BACKOFF_MAX_NS) backoff *= 2;
    }
}

/* One round; false when the pump must end now (the node stopped, or the set closes). */
static bool pump_round(pump *pu, uint64_t r)
{
    char id[CH_ID_MAX + 22], msg[64]; /* the prefix, up to 20 digits, the NUL */
    int len = snprintf(msg, sizeof(msg), "s %" PRIu64 " %" PRIu64, pu->p.sender, r);
    for (uint64_t i = 0; i < pu->p.count; i++) {
        if (atomic_load_explicit(&pu->set->stop_now, memory_order_relaxed)) return false;
        snprintf(id, sizeof(id), "%s%" PRIu64, pu->prefix, i);
        int rc = send_one(pu, id, msg, (size_t)len);
        if (rc == 0) {
            atomic_fetch_add_explicit(&pu->sent, 1, memory_order_relaxed);
            continue;
        }
        int none = 0;
        atomic_compare_exchange_strong(&pu->first_error, &none, rc);
        atomic_fetch_add_explicit(&pu->failed, 1, memory_order_relaxed);
        if (rc == CH_ESTOPPED) return false;
    }
    return true;
}

/* Waits out the rest of a paced round; false when a stop came meanwhile. */
static bool pace(pump *pu, uint64_t round_start)
{
    pump_set *ps = pu->set;
    uint64_t end = round_start + (uint64_t)pu->p.round_ms * 1000000u, now = now_ns();
    pthread_mutex_lock(&ps->mu);
    while (!pu->stop_round && !atomic_load(&ps->stop_now) && now < end) {
        struct timespec ts;
        monotonic_after(&ts, end - now);
        pthread_cond_timedwait(&ps->cv, &ps->mu, &ts);
        now = now_ns();
    }
    bool go_on = !pu->stop_round && !atomic_load(&ps->stop_now);
    pthread_mutex_unlock(&ps->mu);
    return go_on;
}

static void *pump_main(void *arg)
{
    pump *pu = arg;
    pump_set *ps = pu->set;
    for (uint64_t r = 1; r <= pu->p.rounds; r++) {
        uint64_t t0 = now_ns();
        if (!pump_round(pu, r)) break;
        atomic_fetch_add(&pu->rounds, 1);
        if (r < pu->p.rounds && !pace(pu, t0)) break;
    }
    pthread_mutex_lock(&ps->mu);
    pu->done = true;
    pthread_cond_broadcast(&ps->cv);
    pthread_mutex_unlock(&ps->mu);
    return NULL;
}

int pump_start(pump_set *ps, ch_node *n, const pump_params *p, unsigned *handle)
{
    if (strlen(p->prefix) > CH_ID_MAX - 20) return -EINVAL;
    pthread_mutex_lock(&ps->mu);
    int rc = -EBUSY;
    if (ps->closing || ps->npumps == PUMP_MAX) goto out;
    pump *pu = &ps->pumps[ps->npumps];
    *pu = (pump){.set = ps, .node = n, .p = *p};
    memcpy(pu->prefix, p->prefix, strlen(p->prefix) + 1);
    pu->p.prefix = pu->prefix;
    rc = -pthread_create(&pu->thread, NULL, pump_main, pu);
    if (rc < 0) goto out;
    pu->started = true;
    *handle = ++ps->npumps;
out:
    pthread_mutex_unlock(&ps->mu);
    return rc;
}

void pump_stop(pump_set *ps)
{
    pthread_mutex_lock(&ps->mu);
    for (unsigned i = 0; i < ps->npumps; i++)
        ps->pumps[i].stop_round = true; /* pumps started later run until the next stop */
    pthread_cond_broadcast(&ps->cv);
    pthread_mutex_unlock(&ps->mu);
}

/* With ps->mu held. */
static void totals_locked(pump_set *ps, pump_totals *t)
{
    *t = (pump_totals){.pumps = ps->npumps};
    for (unsigned i = 0; i < ps->npumps; i++) {
        pump *pu = &ps->pumps[i];
        t->running += !pu->done;
        t->rounds += atomic_load(&pu->rounds);
        t->sent += atomic_load(&pu->sent);
        t->failed += atomic_load(&pu->failed);
        if (!t->first_error) t->first_error = atomic_load(&pu->first_error);
    }
}

void pump_totals_get(pump_set *ps, pump_totals *out)
{
    pthread_mutex_lock(&ps->mu);
    totals_locked(ps, out);
    pthread_mutex_unlock(&ps->mu);
}

/* Joins the threads that ended (they exit right after they said so). */
static void join_done_locked(pump_set *ps)
{
    for (unsigned i = 0; i < ps->npumps; i++) {
        pump *pu = &ps->pumps[i];
        if (pu->started && pu->done && !pu->joined) {
            pthread_join(pu->thread, NULL);
            pu->joined = true;
        }
    }
}

int pump_wait(pump_set *ps, uint32_t timeout_ms, pump_totals *out)
{
    struct timespec deadline;
    monotonic_after(&deadline, (uint64_t)timeout_ms * 1000000u);
    pthread_mutex_lock(&ps->mu);
    totals_locked(ps, out);
    while (out->running > 0 && pthread_cond_timedwait(&ps->cv, &ps->mu, &deadline) != ETIMEDOUT)
        totals_locked(ps, out);
    totals_locked(ps, out);
    join_done_locked(ps);
    pthread_mutex_unlock(&ps->mu);
    return out->running ? -ETIMEDOUT : 0;
}

void pump_set_close(pump_set *ps)
{
    if (!ps) return;
    pthread_mutex_lock(&ps->mu);
    ps->closing = true;
    atomic_store(&ps->stop_now, true);
    pthread_cond_broadcast(&ps->cv);
    pump_totals t;
    totals_locked(ps, &t);
    while (t.running > 0) {
        pthread_cond_wait(&ps->cv, &ps->mu);
        totals_locked(ps, &t);
    }
    join_done_locked(ps);
    pthread_mutex_unlock(&ps->mu);
}

void pump_set_free(pump_set *ps)
{
    if (!ps) return;
    pump_set_close(ps);
    pthread_mutex_destroy(&ps->mu);
    pthread_cond_destroy(&ps->cv);
    free(ps);
}
