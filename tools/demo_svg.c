/*
 * tools/demo_svg.c - `corehub demo --svg FILE` (see demo.h): the join's and the leave's
 * processes moved over time and their pauses, drawn by svg.h.
 *
 * Progress comes from the `stats` polls the demo makes anyway: the join's while it waits
 * for the hub to settle (sampled every SAMPLE_MS in between, demo_nap), the leave's while
 * it follows the leaving node. Pauses come from each source node's `metrics` text, whose
 * histogram holds the node's log2 pause buckets since it started: a move's pauses are the
 * buckets at its end less those at its start. The nodes' own quantiles cover every move
 * since they started (the leaving node moved processes in the join too), so the marks are
 * estimated from the move's own buckets, and its max is the nodes' longest pause, capped
 * by the move's top bucket; the legend shows them as estimates (~).
 */
#include "demo.h"

#include "cli.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define BUCKET_KEY "corehub_migration_pause_seconds_bucket{le=\""
#define MAX_KEY    "corehub_migration_pause_quantile_seconds{quantile=\"1\"} "

int demo_svg_open(demo *d)
{
    unsigned n = d->opt.nodes;
    if (!d->opt.svg) return 0;
    d->svg = fopen(d->opt.svg, "we");
    if (!d->svg) return -errno;
    svg_run_init(&d->svg_join, "join: node %u joins nodes 0-%u", n, n - 1);
    svg_run_init(&d->svg_leave, "leave: node %u leaves", n - 1); /* the last of the first */
    return 0;
}

/* The buckets and the longest pause in a node's `metrics` text (tools/metrics.c): the
 * histogram's cumulative counts in bucket order, and the quantile="1" gauge. */
static bool parse_pauses(const char *text, uint64_t hist[CH_PAUSE_BUCKETS], uint64_t *max_us)
{
    const char *p = text;
    uint64_t prev = 0;
    for (unsigned i = 0; i < CH_PAUSE_BUCKETS; i++) {
        unsigned long long cum;
        if (!p || !(p = strstr(p, BUCKET_KEY))) return false;
        p = strstr(p, "} ");
        if (!p || sscanf(p + 2, "%llu", &cum) != 1 || cum < prev) return false;
        hist[i] = cum - prev;
        prev = cum;
    }
    const char *m = strstr(text, MAX_KEY);
    double s;
    if (!m || sscanf(m + strlen(MAX_KEY), "%lf", &s) != 1 || !(s >= 0)) return false;
    *max_us = (uint64_t)llround(s * 1e6);
    return true;
}

/* The pauses of the nodes marked in d->pause_src, each in d->pause_now (all at once). */
static int read_pauses(demo *d, uint64_t dl)
{
    dc_call calls[DC_MAX_NODES];
    int n = 0;
    for (int i = 0; i < d->cl.nnodes; i++)
        if (d->pause_src[i] && dc_running(&d->cl, i))
            calls[n++] = (dc_call){.node = i, .argv = {"metrics"}};
    if (!n) return 0;
    int rc = dc_call_run(&d->cl, calls, n, dl);
    for (int k = 0; rc == 0 && k < n; k++)
        demo_svg_pauses(d, &calls[k]);
    dc_call_free(calls, n);
    return rc;
}

void demo_svg_pauses(demo *d, const dc_call *call)
{
    int i = call->node;
    pauses_view v;
    if (call->rc < 0 || call->status != 0 || !call->text) return;
    if (parse_pauses(call->text, v.hist, &v.max_us)) d->pause_now[i] = v;
}

int demo_svg_begin(demo *d, svg_run *run, int source, uint64_t dl)
{
    if (!d->svg) return 0;
    for (int i = 0; i < d->cl.nnodes; i++) {
        d->pause_src[i] = source < 0 ? dc_running(&d->cl, i) : i == source;
        d->pause_now[i] = (pauses_view){0};
    }
    int rc = read_pauses(d, dl);
    memcpy(d->pause_base, d->pause_now, sizeof(d->pause_base));
    d->trace_t0 = cli_now_ns(); /* the caller's move starts right after */
    demo_svg_point(d, run, 0);
    return rc;
}

void demo_svg_point(demo *d, svg_run *run, uint64_t moved)
{
    uint64_t now = cli_now_ns();
    if (d->svg)
        svg_run_add(run, now > d->trace_t0 ? (double)(now - d->trace_t0) / 1e9 : 0, (double)moved);
}

/* The move's pauses: its sources' buckets now less at its start, and estimated marks. */
static void close_run(demo *d, svg_run *run)
{
    uint64_t max = 0;
    for (int i = 0; i < d->cl.nnodes; i++) {
        if (!d->pause_src[i]) continue;
        const pauses_view *now = &d->pause_now[i], *base = &d->pause_base[i];
        for (unsigned b = 0; b < CH_PAUSE_BUCKETS; b++) /* a look that failed reads 0 */
            run->pause[b] += now->hist[b] > base->hist[b] ? now->hist[b] - base->hist[b] : 0;
        if (now->max_us > max) max = now->max_us;
    }
    unsigned top = CH_PAUSE_BUCKETS;
    while (top > 0 && !run->pause[top - 1])
        top--;
    uint64_t cap = top ? (2ull << (top - 1)) - 1 : 0; /* the top bucket's last value */
    run->max_us = max < cap ? max : cap;
    uint64_t p50 = svg_pause_quantile(run->pause, 50), p99 = svg_pause_quantile(run->pause, 99);
    run->p50_us = p50 < run->max_us ? p50 : run->max_us; /* an estimate, the max is known */
    run->p99_us = p99 < run->max_us ? p99 : run->max_us;
    run->approx = true;
}

int demo_svg_end(demo *d, svg_run *run, bool read_now, uint64_t dl)
{
    if (!d->svg) return 0;
    int rc = read_now ? read_pauses(d, dl) : 0;
    close_run(d, run);
    svg_run_trim(run); /* the waits for a settled hub, after the last move */
    return rc;
}

int demo_svg_write(demo *d)
{
    if (!d->svg) return 0;
    const demo_opts *o = &d->opt;
    char sub[256];
    snprintf(sub, sizeof(sub),
             "%u nodes, %" PRIu64 " seq + %" PRIu64 " blobs of %" PRIu64 " B, %u senders; from "
             "the new node's spawn (join) or `ctl leave` (leave)",
             o->nodes, o->procs, o->blobs, o->state_bytes, o->senders);
    const svg_run *runs[] = {&d->svg_join, &d->svg_leave};
    svg_doc doc = {.title = "corehub demo: processes moved by the join and the leave, and pauses",
                   .subtitle = sub,
                   .runs = runs,
                   .nruns = 2};
    int rc = svg_write(d->svg, &doc);
    if (fclose(d->svg) != 0 && !rc) rc = -errno;
    d->svg = NULL;
    return rc;
}
