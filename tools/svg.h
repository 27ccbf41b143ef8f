/*
 * tools/svg.h - where a migration's time went, as one plain SVG file: a chart of the
 * processes moved over time (a line per run), a chart of the pause per moved process (a
 * histogram per run over log2 buckets of microseconds, on a log axis in ms, with p50, p99
 * and max marked), and a legend with each run's figures. `corehub bench migration --svg`
 * and `corehub demo --svg` write it; any browser shows it, no other tool is needed.
 *
 * A run records its progress while it goes (svg_run_add: no allocation, no I/O, fit for
 * a polling loop) and keeps at most SVG_MAX_POINTS points however long it lasts: when full,
 * every other point goes and only every second one offered from then on is kept, so the
 * points stay evenly spread over the run, and its last point is always drawn. A file draws
 * at most SVG_MAX_RUNS runs, which bounds it to about half a megabyte. Every text is
 * escaped; no label can break the file.
 */
#ifndef COREHUB_TOOLS_SVG_H
#define COREHUB_TOOLS_SVG_H

#include <corehub/corehub.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SVG_MAX_POINTS 1024 /* drawn per run, its last point included */
#define SVG_MAX_RUNS   24   /* drawn per file: more are counted in a note */
#define SVG_LABEL_MAX  128

typedef struct svg_point {
    double t;     /* seconds since the change began (a join's start, a leave's call) */
    double moved; /* processes moved by then */
} svg_point;

typedef struct svg_run {
    char label[SVG_LABEL_MAX];
    svg_point pts[SVG_MAX_POINTS - 1]; /* every stride-th point added, from the first */
    size_t npts;
    uint64_t added;                   /* points offered */
    uint64_t stride;                  /* keep one in `stride` of them */
    svg_point last;                   /* the latest offered: the run's end so far */
    uint64_t pause[CH_PAUSE_BUCKETS]; /* pauses in [2^i, 2^(i+1)) us (ch_node_stats') */
    uint64_t p50_us, p99_us, max_us;  /* marked on the pause chart; 0: not marked */
    bool approx;                      /* the marks were estimated from the buckets */
} svg_run;

typedef struct svg_doc {
    const char *title;          /* the file's first line */
    const char *subtitle;       /* a smaller second line; NULL: none */
    const svg_run *const *runs; /* their order sets their colours */
    size_t nruns;               /* runs there were: the first SVG_MAX_RUNS are read and drawn,
                                   the others only counted in a note */
} svg_doc;

/* Empties r and names it (printf-style, cut at SVG_LABEL_MAX - 1 bytes). */
void svg_run_init(svg_run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Records that `moved` processes had moved t seconds into the run. A point that is not
 * finite is ignored. */
void svg_run_add(svg_run *r, double t, double moved);
/* Drops the run's flat end: the points after the first kept one that reached the final
 * count. For a caller that goes on polling after the last move (to see that nothing else
 * moves), so that the line ends where the moves did. */
void svg_run_trim(svg_run *r);
/* The pause at quantile q (0..100) of log2 buckets, estimated: the bucket that holds the
 * q-th percentile, interpolated on a log scale by rank (within a factor of two of the
 * truth). 0 when empty. For callers whose node quantiles cover more than the run. */
uint64_t svg_pause_quantile(const uint64_t pause[CH_PAUSE_BUCKETS], unsigned q);

/* Writes the whole file to f: 0, -EINVAL (doc, or a run, NULL), or -EIO when a write
 * failed. The caller opens and closes f (open it early: a bad path then fails at once). */
int svg_write(FILE *f, const svg_doc *doc);

#endif
