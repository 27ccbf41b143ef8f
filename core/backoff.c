/*
 * core/backoff.c - pauses of an accept loop out of resources (see backoff.h).
 */
#include "backoff.h"

#include "log.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void ch_backoff_init(ch_backoff *b, ch_reactor *r, ch_timer_fn retry, uint64_t arg)
{
    memset(b, 0, sizeof(*b));
    b->r = r;
    b->retry = retry;
    b->arg = arg;
    snprintf(b->what, sizeof(b->what), "a listener");
}

void ch_backoff_name(ch_backoff *b, const char *what, int port)
{
    snprintf(b->what, sizeof(b->what), "%s %d", what, port);
}

bool ch_backoff_transient(int res)
{
    return res == -EAGAIN || res == -EINTR || res == -ECONNABORTED || res == -EPROTO;
}

static void on_pause_end(ch_reactor *r, uint64_t arg)
{
    ch_backoff *b = (ch_backoff *)(uintptr_t)arg;
    b->timer = 0;
    b->retry(r, b->arg);
}

bool ch_backoff_pause(ch_backoff *b, int res)
{
    if (b->timer) return true; /* already paused: the pending retry covers this one too */
    if (b->delay_ms == 0) {
        /* One line per episode: a line per failure is what filled disks before. */
        CH_WARN("%s: accept failed: %s; pausing accepts (%u ms, doubling up to %u ms) until "
                "it succeeds",
                b->what, strerror(-res), CH_BACKOFF_MIN_MS, CH_BACKOFF_MAX_MS);
        ch_counter_bump(&b->r->stats.accept_pauses);
        b->delay_ms = CH_BACKOFF_MIN_MS;
    }
    b->failures++;
    b->timer = ch_sup_timer_fn(b->r, b->delay_ms, on_pause_end, (uint64_t)(uintptr_t)b);
    b->delay_ms = b->delay_ms * 2 < CH_BACKOFF_MAX_MS ? b->delay_ms * 2 : CH_BACKOFF_MAX_MS;
    return b->timer != 0;
}

void ch_backoff_ok(ch_backoff *b)
{
    if (b->delay_ms == 0) return;
    CH_INFO("%s: accepting again after %llu failed attempts", b->what,
            (unsigned long long)b->failures);
    b->delay_ms = 0;
    b->failures = 0;
}

bool ch_backoff_pending(const ch_backoff *b)
{
    return b->timer != 0;
}

void ch_backoff_cancel(ch_backoff *b)
{
    if (!b->timer) return;
    ch_timer *e = ch_timers_get(&b->r->timers, b->timer);
    if (e) ch_timers_free(&b->r->timers, e);
    b->timer = 0;
}
