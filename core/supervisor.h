/*
 * core/supervisor.h - a reactor's processes: start, message delivery, crash and exit
 * handling by restart policy and intensity, timers, pending calls, shutdown.
 *
 * Restart intensity is counted per core: a core allows restart_intensity restarts in any
 * restart_period_ms window. A process whose restart would exceed it is not restarted: it is
 * removed (logged, counted in intensity_exceeded, registry-remove hook) and every other
 * process keeps running. Unlike OTP, a crash loop does not take the node down, because the
 * other shards' processes are healthy and a node restart would lose their state.
 */
#ifndef CH_CORE_SUPERVISOR_H
#define CH_CORE_SUPERVISOR_H

#include "node.h"
#include "reactor.h"

/* Kinds of timer entries (ch_timer.kind). */
enum {
    CH_TK_PROC = 1,     /* a process timer: a = proc, b = data (len) */
    CH_TK_CALL_PROC,    /* a call by a process: a = proc, c = its ref */
    CH_TK_CALL_FN,      /* ch_call_async on a reactor: a = fn, b = ud */
    CH_TK_CALL_FOREIGN, /* a call from a foreign thread: b = ch_fcall */
    CH_TK_RELAY,        /* coordinator: a peer's call; b = peer id, c = its ref, len = core */
    CH_TK_REMOTE,       /* coordinator: a start/stop request to a peer; a = the request */
    CH_TK_FN,           /* a function to run: a = ch_timer_fn, c = its argument */
    CH_TK_MIGREPLY,     /* a call forwarded in a lane: b = the caller's node, c = its ref,
                           len = its core */
};

typedef void (*ch_timer_fn)(ch_reactor *r, uint64_t arg);
/* Runs fn(r, arg) on r after delay_ms; returns the timer id, 0 on ENOMEM. */
uint64_t ch_sup_timer_fn(ch_reactor *r, uint32_t delay_ms, ch_timer_fn fn, uint64_t arg);

/* Runs handle for one message; for a call, (core, ref) is where the reply goes. */
void ch_sup_deliver(ch_reactor *r, ch_proc *p, const ch_msg *m, unsigned core, uint64_t ref);
/* Starts one child; takes the spec. Returns 0 or the child's result code. */
int ch_sup_start(ch_reactor *r, ch_spec *spec);
void ch_sup_start_batch(ch_reactor *r, ch_batch *b, const uint32_t *idx, size_t n);
void ch_sup_stop_batch(ch_reactor *r, ch_batch *b, const uint32_t *idx, size_t n);
/* Terminates every process and every pending call; acknowledges to the node. */
void ch_sup_shutdown(ch_reactor *r);
unsigned ch_sup_fire_timers(ch_reactor *r, uint64_t now);
/* Registers a pending call that expires after timeout_ms; returns its id, 0 on ENOMEM. */
uint64_t ch_sup_pending(ch_reactor *r, uint32_t kind, void *a, void *b, uint64_t c,
                        uint32_t timeout_ms);
uint64_t ch_sup_pending_foreign(ch_reactor *r, ch_fcall *c);
/* A call from this reactor: registers its pending entry (kind, a, b, c as for
 * ch_sup_pending) and posts the request to the id's owner, here or through the coordinator.
 * 0, -ENOMEM, or the post's error (the entry is gone again then). The caller checked id. */
int ch_sup_call(ch_reactor *r, uint32_t kind, void *a, void *b, uint64_t c, uint32_t timeout_ms,
                const char *id, size_t id_len, const void *req, size_t len);
/* Completes a pending call (reply, timeout or shutdown) and frees its entry. */
void ch_sup_complete_call(ch_reactor *r, ch_timer *e, int status, const void *data, size_t len);
/* Appends an info for each process (with that tag, if tag) to list. */
/* Migration (migration/handover.c). freeze: the process stops running (timers dropped).
 * terminate: runs terminate and clears the state (ColdSwap, at freeze). migrated: the
 * move is confirmed: terminate (unless it already ran) and remove, no restart, registry
 * remove. reinit: a ColdSwap move failed, the old instance starts again from its spec.
 * install: starts a migrated process (init with CH_INIT_MIGRATED, then alter with the
 * handed-over bytes unless alter is NULL); takes spec; 0, CH_EALREADY, CH_EINIT,
 * CH_ESTOPPED, -ENOMEM. */
typedef int (*ch_alter_fn)(ch_proc *p, const void *bytes, size_t len);
void ch_sup_freeze(ch_reactor *r, ch_proc *p);
void ch_sup_terminate(ch_reactor *r, ch_proc *p, ch_reason reason);
void ch_sup_migrated(ch_reactor *r, ch_proc *p, bool terminated);
int ch_sup_reinit(ch_reactor *r, ch_proc *p);
int ch_sup_install(ch_reactor *r, ch_spec *spec, uint32_t incarnation, ch_alter_fn alter,
                   const void *state, size_t len, ch_proc **out);

void ch_sup_list(ch_reactor *r, const char *tag, ch_proc_list *list);

/* The call being handled on this reactor, for ch_reply. */
struct ch_dispatch {
    const ch_msg *msg;
    unsigned core;
    uint64_t ref;
    bool answered;
};

#endif
