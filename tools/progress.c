/*
 * tools/progress.c - the progress line (see progress.h).
 */
#include "progress.h"

#include "cli.h"

#include <stdio.h>
#include <unistd.h>

#define TTY_PERIOD_NS  200000000ull  /* 5 updates a second on a terminal */
#define PIPE_PERIOD_NS 5000000000ull /* one line every 5 s in a log */

static void print_line(const progress *pg, uint64_t done, uint64_t now, const char *end)
{
    double s = (double)(now - pg->t0_ns) / 1e9;
    double pct = pg->total ? 100.0 * (double)done / (double)pg->total : 100.0;
    fprintf(stderr, "%s  %-7s %llu/%llu %s (%.0f%%)  %.1f s  %.0f %s/s%s",
            pg->tty ? "\r\033[K" : "", pg->phase, (unsigned long long)done,
            (unsigned long long)pg->total, pg->unit, pct, s, s > 0 ? (double)done / s : 0.0,
            pg->unit, end);
    fflush(stderr);
}

void progress_begin(progress *pg, const char *phase, const char *unit, uint64_t total)
{
    pg->phase = phase;
    pg->unit = unit;
    pg->total = total;
    pg->tty = isatty(STDERR_FILENO);
    pg->next_check = 0;
    pg->t0_ns = cli_now_ns();
    pg->next_ns = pg->t0_ns + (pg->tty ? TTY_PERIOD_NS : PIPE_PERIOD_NS);
}

void progress_tick(progress *pg, uint64_t done)
{
    if (done < pg->next_check) return;
    pg->next_check = done + 1024;
    uint64_t now = cli_now_ns();
    if (now < pg->next_ns) return;
    pg->next_ns = now + (pg->tty ? TTY_PERIOD_NS : PIPE_PERIOD_NS);
    print_line(pg, done, now, pg->tty ? "" : "\n");
}

uint64_t progress_end(progress *pg, uint64_t done)
{
    uint64_t now = cli_now_ns();
    print_line(pg, done, now, "\n");
    return now - pg->t0_ns;
}
