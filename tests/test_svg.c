/*
 * tests/test_svg.c - the migration charts (tools/svg.h): given runs of known points and
 * pause buckets, the file is well-formed SVG with one line per run, one point per point
 * recorded and one bar per bucket that holds pauses; labels cannot break it; empty input
 * still makes a valid file; a long run is thinned to the bound and keeps its end.
 *
 * The suite bench_output reads the file that `corehub bench migration --svg` wrote in the
 * CTest case before it (corehub_bench_migration_svg sets CH_BENCH_SVG); run alone, it
 * skips.
 */
#include "svg.h"
#include "svg_check.h"

#include <criterion/criterion.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MOVED "<polyline class=\"moved\""

/* The file svg_write makes of runs, NUL-terminated (free it). */
static char *render(const char *title, const svg_run *const *runs, size_t n, size_t *len)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    cr_assert_not_null(f);
    svg_doc doc = {.title = title, .subtitle = "a subtitle", .runs = runs, .nruns = n};
    cr_assert_eq(svg_write(f, &doc), 0);
    cr_assert_eq(fclose(f), 0);
    if (len) *len = size;
    return text;
}

static void expect_well_formed(const char *text)
{
    char why[256];
    cr_expect(svgc_well_formed(text, strlen(text), why, sizeof(why)), "%s", why);
    cr_expect_eq(strncmp(text, "<svg", 4), 0, "starts with <svg");
    size_t n = strlen(text);
    cr_expect(n >= 7 && !strcmp(text + n - 7, "</svg>\n"), "ends with </svg>");
}

Test(svg, draws_a_line_per_run_a_point_per_point_and_a_bar_per_bucket)
{
    static svg_run join, leave;
    svg_run_init(&join, "join N=%d", 2000);
    svg_run_init(&leave, "leave N=%d", 2000);
    for (int i = 0; i < 3; i++)
        svg_run_add(&join, i * 0.001, i * 500.0);
    for (int i = 0; i < 5; i++)
        svg_run_add(&leave, i * 0.002, i * 250.0);
    join.pause[11] = 10, join.pause[12] = 30; /* 2-4 ms and 4-8 ms */
    leave.pause[3] = 1, leave.pause[10] = 5, leave.pause[20] = 1;
    join.p50_us = 4100, join.p99_us = 7900, join.max_us = 8000;
    leave.p50_us = 1500; /* p99 and max unknown: not marked */
    const svg_run *runs[] = {&join, &leave};
    char *text = render("moves", runs, 2, NULL);
    expect_well_formed(text);
    cr_expect_eq(svgc_count(text, MOVED), 2);
    cr_expect_eq(svgc_points(text, MOVED, 0), 3);
    cr_expect_eq(svgc_points(text, MOVED, 1), 5);
    cr_expect_eq(svgc_count(text, "<rect class=\"bar\""), 5);
    cr_expect_eq(svgc_count(text, "<line class=\"mark\""), 4);
    cr_expect_neq(strstr(text, "class=\"label\">join N=2000</text>"), NULL, "the join's label");
    cr_expect_neq(strstr(text, ">moved 1000 in 0.002 s | 40 pauses: p50 4.10, p99 7.90, max 8.00"),
                  NULL, "the legend gives the join's figures");
    cr_expect_neq(strstr(text, "time since the change (ms)"), NULL, "short runs in ms");
    free(text);
}

Test(svg, escapes_labels_so_that_none_breaks_the_file)
{
    static svg_run r;
    svg_run_init(&r, "<b>&\"x\"'y' %s ctl\x01 bad\xff\xfe \xed\xa0\x80 caf\xc3\xa9", "</svg>");
    svg_run_add(&r, 0, 0);
    svg_run_add(&r, 1, 10);
    r.pause[5] = 1;
    const svg_run *runs[] = {&r};
    char *text = render("a <title> & more", runs, 1, NULL);
    expect_well_formed(text);
    cr_expect_neq(strstr(text, "&lt;b&gt;&amp;&quot;x&quot;&apos;y&apos; &lt;/svg&gt; ctl? bad??"),
                  NULL, "markup escaped, a control character and broken UTF-8 replaced");
    cr_expect_neq(strstr(text, "caf\xc3\xa9"), NULL, "valid UTF-8 kept");
    cr_expect_neq(strstr(text, "a &lt;title&gt; &amp; more"), NULL);
    cr_expect_eq(svgc_count(text, "</svg>"), 1);
    free(text);
}

Test(svg, no_runs_and_empty_runs_still_make_a_valid_file)
{
    char *text = render(NULL, NULL, 0, NULL);
    expect_well_formed(text);
    cr_expect_eq(svgc_count(text, MOVED), 0);
    cr_expect_eq(svgc_count(text, "class=\"bar\""), 0);
    cr_expect_neq(strstr(text, "no progress recorded"), NULL);
    cr_expect_neq(strstr(text, "no pauses recorded"), NULL);
    free(text);

    static svg_run empty, flat;
    svg_run_init(&empty, "nothing");
    svg_run_init(&flat, "one point at zero");
    svg_run_add(&flat, 0, 0);
    svg_run_add(&flat, NAN, 5); /* ignored */
    svg_run_add(&flat, 1, INFINITY);
    cr_expect_eq(flat.added, 1, "points that are not finite are ignored");
    const svg_run *runs[] = {&empty, &flat};
    text = render("", runs, 2, NULL);
    expect_well_formed(text);
    cr_expect_eq(svgc_count(text, MOVED), 1, "a run without points draws no line");
    cr_expect_eq(svgc_points(text, MOVED, 0), 1);
    cr_expect_eq(svgc_count(text, "class=\"bar\""), 0);
    free(text);
}

Test(svg, a_long_run_is_thinned_evenly_to_the_bound_and_keeps_its_end)
{
    static svg_run r;
    svg_run_init(&r, "a million polls");
    const int n = 1000000;
    for (int i = 0; i < n; i++)
        svg_run_add(&r, i * 1e-3, i);
    cr_expect_lt(r.npts, SVG_MAX_POINTS);
    for (size_t i = 1; i < r.npts; i++) /* evenly: every stride-th poll */
        cr_assert_eq(r.pts[i].moved - r.pts[i - 1].moved, (double)r.stride, "gap at %zu", i);
    const svg_run *runs[] = {&r};
    char *text = render("long", runs, 1, NULL);
    expect_well_formed(text);
    long pts = svgc_points(text, MOVED, 0);
    cr_expect_leq(pts, SVG_MAX_POINTS);
    cr_expect_geq(pts, SVG_MAX_POINTS / 2);
    cr_expect_neq(strstr(text, "moved 999999 in 999.999 s"), NULL, "the last poll counts");
    free(text);
}

Test(svg, a_trimmed_run_ends_where_its_count_was_first_reached)
{
    static svg_run r;
    svg_run_init(&r, "moves, then polls that see nothing more");
    for (int i = 0; i <= 2000; i++) /* 500 moved by t = 0.5 s, then flat until 2 s */
        svg_run_add(&r, i * 1e-3, i < 500 ? i : 500);
    svg_run_trim(&r);
    cr_expect_eq(r.last.moved, 500);
    cr_expect_leq(r.last.t, 0.5 + r.stride * 1e-3, "ends at %.3f s", r.last.t);
    cr_expect_geq(r.last.t, 0.5);
    const svg_run *runs[] = {&r};
    char *text = render("trimmed", runs, 1, NULL);
    expect_well_formed(text);
    cr_expect_eq(svgc_points(text, MOVED, 0), (long)r.npts, "the last point drawn once");
    free(text);
    svg_run_add(&r, 3, 600); /* a run goes on after a trim */
    cr_expect_eq(r.last.moved, 600);
}

Test(svg, more_runs_than_the_bound_are_counted_not_drawn_and_the_file_stays_small)
{
    enum { RUNS = SVG_MAX_RUNS + 6 };
    svg_run *r = calloc(RUNS, sizeof(*r));
    const svg_run *runs[RUNS];
    cr_assert_not_null(r);
    for (int k = 0; k < RUNS; k++) {
        svg_run_init(&r[k], "run %d", k);
        for (int i = 0; i < 5000; i++)
            svg_run_add(&r[k], i * 1e-2, (double)i * (k + 1));
        for (unsigned b = 0; b < CH_PAUSE_BUCKETS; b++)
            r[k].pause[b] = b + 1;
        r[k].p50_us = 1u << 15, r[k].p99_us = 1u << 25, r[k].max_us = 1u << 30;
        runs[k] = &r[k];
    }
    size_t len;
    char *text = render("many", runs, RUNS, &len);
    expect_well_formed(text);
    cr_expect_eq(svgc_count(text, MOVED), SVG_MAX_RUNS);
    cr_expect_eq(svgc_count(text, "class=\"bar\""), SVG_MAX_RUNS * CH_PAUSE_BUCKETS);
    cr_expect_neq(strstr(text, "6 more runs not drawn"), NULL);
    cr_expect_lt(len, 1u << 20, "%zu bytes", len);
    free(text);
    free(r);
}

Test(svg, a_failed_write_is_reported)
{
    static svg_run r;
    svg_run_init(&r, "x");
    svg_run_add(&r, 0, 0);
    const svg_run *runs[] = {&r};
    FILE *f = fopen("/dev/full", "w");
    cr_assert_not_null(f);
    setvbuf(f, NULL, _IONBF, 0);
    svg_doc doc = {.title = "t", .runs = runs, .nruns = 1};
    cr_expect_eq(svg_write(f, &doc), -EIO);
    fclose(f);
    cr_expect_eq(svg_write(NULL, &doc), -EINVAL);
    const svg_run *holes[] = {NULL};
    doc.runs = holes;
    cr_expect_eq(svg_write(stdout, &doc), -EINVAL, "a NULL run");
}

Test(svg, pause_quantiles_are_estimated_within_their_bucket)
{
    uint64_t h[CH_PAUSE_BUCKETS] = {0};
    cr_expect_eq(svg_pause_quantile(h, 50), 0, "empty");
    h[10] = 100; /* [1024, 2048) us */
    for (unsigned q = 1; q <= 100; q += 33) {
        uint64_t v = svg_pause_quantile(h, q);
        cr_expect(v >= 1024 && v < 2048, "p%u %llu", q, (unsigned long long)v);
    }
    cr_expect_lt(svg_pause_quantile(h, 10), svg_pause_quantile(h, 90), "ordered by rank");
    h[20] = 1; /* one long pause in 101 */
    cr_expect_lt(svg_pause_quantile(h, 99), 2048);
    cr_expect_geq(svg_pause_quantile(h, 100), 1u << 20);
}

/* The reader that the tests above trust: it must refuse what an XML reader refuses. */
Test(svg, the_reader_refuses_what_is_not_well_formed)
{
    static const char *const bad[] = {
        "<g></g>",          "<svg><g></svg>",          "<svg a=b/>",
        "<svg>&foo;</svg>", "<svg>a<b</svg>",          "<svg></svg>x",
        "<svg>\xff</svg>",  "<svg a=\"<\"/>",          "<svg><g>",
        "<svg>&#;</svg>",   "<svg>\xed\xa0\x80</svg>",
    };
    char why[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_not(svgc_well_formed(bad[i], strlen(bad[i]), why, sizeof(why)), "%s", bad[i]);
    const char *good = "<svg a=\"1\" b='&amp;'><g/><text>&#38;&#x26;&lt;\xc3\xa9</text></svg>\n";
    cr_expect(svgc_well_formed(good, strlen(good), why, sizeof(why)), "%s", why);
}

Test(bench_output, the_benchmark_draws_its_join_and_leave)
{
    const char *path = getenv("CH_BENCH_SVG");
    if (!path) cr_skip_test("CH_BENCH_SVG is not set: corehub_bench_migration_svg sets it");
    size_t len;
    char *text = svgc_read_file(path, &len), why[256];
    cr_assert_not_null(text, "%s: cannot read it", path);
    cr_expect(svgc_well_formed(text, len, why, sizeof(why)), "%s: %s", path, why);
    cr_expect_eq(svgc_count(text, MOVED), 2, "a line for the join, one for the leave");
    for (size_t k = 0; k < 2; k++)
        cr_expect_geq(svgc_points(text, MOVED, k), 2, "run %zu: its start and its end", k);
    cr_expect_geq(svgc_count(text, "class=\"bar\""), 2, "each run paused its processes");
    cr_expect_eq(svgc_count(text, "<line class=\"mark\""), 6, "p50, p99, max of each");
    cr_expect_neq(strstr(text, ">join N=2000 S=100 B codec none"), NULL);
    cr_expect_neq(strstr(text, ">leave N=2000 S=100 B codec none"), NULL);
    free(text);
}
