/*
 * core/hook.h - hook handlers per hook point, readable from every thread without a lock.
 *
 * Each point holds an immutable, priority-sorted array behind an atomic pointer. A change
 * (rare) builds a new array under a mutex and swaps it in; the old one is retired, not
 * freed, because a reactor may still be walking it. Retired arrays are freed with the set.
 */
#ifndef CH_CORE_HOOK_H
#define CH_CORE_HOOK_H

#include <corehub/node.h>

#include <pthread.h>
#include <stdatomic.h>

typedef struct ch_hook_list ch_hook_list;

typedef struct ch_hooks {
    _Atomic(ch_hook_list *) points[CH_HOOK_POINTS];
    ch_hook_list *retired; /* under lock */
    pthread_mutex_t lock;
} ch_hooks;

int ch_hooks_init(ch_hooks *h);
void ch_hooks_destroy(ch_hooks *h);
int ch_hooks_register(ch_hooks *h, ch_hook_point point, const char *id, int priority, ch_hook_fn fn,
                      void *ud);
int ch_hooks_cancel(ch_hooks *h, ch_hook_point point, const char *id);
/* Runs every handler of ev->point, highest priority first. */
void ch_hooks_run(ch_hooks *h, ch_hook_event *ev);
/* True when the point has handlers (lets callers skip building an event). */
int ch_hooks_any(ch_hooks *h, ch_hook_point point);

#endif
