/*
 * tools/progress.h - one progress line for a long phase of work, on stderr.
 *
 * On a terminal the line is rewritten in place a few times a second; elsewhere (CI logs,
 * pipes) a plain line is printed every few seconds so that logs stay short.
 */
#ifndef COREHUB_TOOLS_PROGRESS_H
#define COREHUB_TOOLS_PROGRESS_H

#include <stdint.h>

typedef struct progress {
    const char *phase; /* "start", "send", ... */
    const char *unit;  /* what is counted: "procs", "msgs" */
    uint64_t total;
    uint64_t t0_ns;      /* when the phase began */
    uint64_t next_ns;    /* earliest time of the next print */
    uint64_t next_check; /* item count at which to read the clock again */
    int tty;             /* stderr is a terminal: rewrite the line in place */
} progress;

void progress_begin(progress *pg, const char *phase, const char *unit, uint64_t total);
/* Cheap enough to call for every item: it reads the clock once per 1024 items. */
void progress_tick(progress *pg, uint64_t done);
/* Ends the line; returns the phase's duration in nanoseconds. */
uint64_t progress_end(progress *pg, uint64_t done);

#endif
