/*
 * core/backoff.h - an accept loop that pauses when the process runs out of resources.
 *
 * accept fails with EMFILE, ENFILE, ENOMEM or ENOBUFS while the connection it could not
 * take stays in the backlog, so accepting again at once fails again at once: a busy loop
 * with a log line per turn. Both accept loops (net/transport.c, net/server.c) run
 * through this instead. The first such failure starts an episode: one log line, the
 * reactor's accept_pauses counter, and pauses of CH_BACKOFF_MIN_MS doubling up to
 * CH_BACKOFF_MAX_MS between attempts; the first accept that succeeds ends the episode
 * with one more line. The pause is a reactor timer, not an io_uring request: a loop that
 * cannot get an SQE for its accept pauses the same way instead of stopping for good.
 *
 * A backoff belongs to one accept loop and is used on its reactor only.
 */
#ifndef CH_CORE_BACKOFF_H
#define CH_CORE_BACKOFF_H

#include "supervisor.h" /* ch_timer_fn */

#include <stdbool.h>
#include <stdint.h>

#define CH_BACKOFF_MIN_MS 10u
#define CH_BACKOFF_MAX_MS 1000u

typedef struct ch_backoff {
    ch_reactor *r;
    ch_timer_fn retry; /* runs on r when a pause ends: it arms the accept again */
    uint64_t arg;      /* for retry */
    char what[48];     /* names the loop in the log: "cluster port 7001" */
    uint64_t timer;    /* the pending pause's timer id, 0: none */
    uint32_t delay_ms; /* the next pause; 0: no episode */
    uint64_t failures; /* in this episode */
} ch_backoff;

void ch_backoff_init(ch_backoff *b, ch_reactor *r, ch_timer_fn retry, uint64_t arg);
/* Names the loop for the log (once its port is known). */
void ch_backoff_name(ch_backoff *b, const char *what, int port);
/* Whether a failed accept (res < 0) may simply be tried again at once: a connection that
 * went away before we took it, a signal. */
bool ch_backoff_transient(int res);
/* Pauses the loop after a failure (res: the accept's result, or -EBUSY when no SQE was to
 * be had): retry runs later. False only when not even a timer could be allocated: then the
 * caller tries again at once rather than never. */
bool ch_backoff_pause(ch_backoff *b, int res);
/* An accept succeeded: ends the episode, if any. */
void ch_backoff_ok(ch_backoff *b);
/* Whether a pause is pending (its retry will run). */
bool ch_backoff_pending(const ch_backoff *b);
/* Drops a pending pause (the loop closes): retry will not run. */
void ch_backoff_cancel(ch_backoff *b);

#endif
