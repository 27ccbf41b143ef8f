/*
 * tools/callmany.c - one call to each of many processes, many in flight (see callmany.h).
 *
 * The control thread makes the calls; their answers arrive on reactor threads. Both sides
 * share a small context under one mutex, counted by references: the control thread holds
 * one, each call in flight another, and whoever drops the last frees it. So an answer that
 * comes after callmany_run gave up finds the context still there, sees that it was
 * abandoned, and only drops its reference: it never touches the caller's items or check.
 */
#include "callmany.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ANSWER_MARGIN_MS 5000 /* beyond a call's own timeout, before it counts as lost */
#define EAGAIN_PAUSE_NS  200000

typedef struct shared {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t inflight;
    uint64_t refs;
    bool abandoned; /* callmany_run returned: answers are dropped */
    callmany_check check;
    void *ud;
    callmany_item *items;
} shared;

typedef struct slot {
    shared *s;
    uint64_t i;
} slot;

static void unref_locked(shared *s, bool *last)
{
    *last = --s->refs == 0;
}

static void shared_free(shared *s)
{
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

/* On a reactor thread. */
static void on_answer(void *ud, int status, const void *reply, size_t len)
{
    slot *sl = ud;
    shared *s = sl->s;
    bool last = false;
    pthread_mutex_lock(&s->mu);
    if (!s->abandoned) {
        callmany_item *it = &s->items[sl->i];
        it->status = status;
        s->check(s->ud, sl->i, status, reply, len, it);
    }
    s->inflight--;
    unref_locked(s, &last);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    free(sl);
    if (last) shared_free(s);
}

static void deadline_in(struct timespec *ts, uint32_t ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

/* Makes call i, retrying while a mailbox is full; with s->mu held, released while it
 * waits. A call that cannot be made gets its verdict at once. */
static void call_one(ch_node *n, shared *s, const char *id, uint64_t i, const void *req,
                     size_t req_len, uint32_t timeout_ms)
{
    slot *sl = malloc(sizeof(*sl));
    int rc = sl ? 0 : -ENOMEM;
    if (sl) *sl = (slot){s, i};
    while (rc == 0) {
        s->inflight++;
        s->refs++;
        pthread_mutex_unlock(&s->mu);
        rc = ch_call_async(n, id, CH_ID_CSTR, req, req_len, timeout_ms, on_answer, sl);
        pthread_mutex_lock(&s->mu);
        if (rc == 0) return;
        s->inflight--;
        s->refs--; /* never the last: this thread holds one */
        if (rc != -EAGAIN) break;
        pthread_mutex_unlock(&s->mu);
        struct timespec pause = {0, EAGAIN_PAUSE_NS};
        nanosleep(&pause, NULL); /* the reactors drain meanwhile */
        pthread_mutex_lock(&s->mu);
        rc = 0;
    }
    free(sl);
    s->items[i].status = rc;
    s->check(s->ud, i, rc, NULL, 0, &s->items[i]);
}

int64_t callmany_run(ch_node *n, const char *prefix, uint64_t count, const void *req,
                     size_t req_len, uint32_t timeout_ms, callmany_check check, void *ud,
                     callmany_item *items)
{
    shared *s = calloc(1, sizeof(*s));
    if (!s) return -ENOMEM;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->refs = 1;
    s->check = check;
    s->ud = ud;
    s->items = items;
    for (uint64_t i = 0; i < count; i++)
        items[i] = (callmany_item){.verdict = CALLMANY_NO_ANSWER, .status = -ETIMEDOUT};
    char id[CH_ID_MAX + 1];
    struct timespec deadline;
    bool stuck = false; /* no answer came for a whole call timeout: stop calling */
    pthread_mutex_lock(&s->mu);
    for (uint64_t i = 0; i < count && !stuck; i++) {
        deadline_in(&deadline, timeout_ms + ANSWER_MARGIN_MS);
        while (s->inflight >= CALLMANY_WINDOW && !stuck)
            stuck = pthread_cond_timedwait(&s->cv, &s->mu, &deadline) == ETIMEDOUT;
        if (stuck) break;
        snprintf(id, sizeof(id), "%s%" PRIu64, prefix, i);
        call_one(n, s, id, i, req, req_len, timeout_ms);
    }
    deadline_in(&deadline, timeout_ms + ANSWER_MARGIN_MS);
    while (s->inflight > 0 && pthread_cond_timedwait(&s->cv, &s->mu, &deadline) != ETIMEDOUT) {
    }
    int64_t lost = 0;
    for (uint64_t i = 0; i < count; i++)
        lost += items[i].verdict == CALLMANY_NO_ANSWER;
    s->abandoned = true;
    bool last = false;
    unref_locked(s, &last);
    pthread_mutex_unlock(&s->mu);
    if (last) shared_free(s);
    return lost;
}
