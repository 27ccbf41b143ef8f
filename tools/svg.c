/*
 * tools/svg.c - the migration charts as a plain SVG file (see svg.h).
 *
 * The file is written top to bottom in one pass: a title, the chart of processes moved
 * over time (linear axes, seconds or milliseconds, counts), the chart of pauses (a log
 * axis in ms, the share of each run's pauses per log2 bucket), then the legend. Both
 * charts scale to the largest run, so runs of one file compare at a glance; a run keeps
 * its colour (and, past the palette, a dash pattern) in every part. Coordinates are
 * printed with one decimal: a pixel's tenth is all a reader can see.
 */
#include "svg.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <string.h>

#define WIDTH      960
#define PAD_L      84.0  /* room for the y tick labels and the y axis title */
#define PAD_R      36.0  /* room for the last x tick label */
#define HEAD_H     64.0  /* title and subtitle */
#define PLOT_H     280.0 /* one plot's box */
#define CHART_H    376.0 /* a chart: its title above the box, tick labels and title below */
#define LEGEND_ROW 32.0  /* a run: its label, its figures under it */
#define MARK_TEXTS 3     /* up to this many runs, the marks are named in the chart itself */

static const char *const palette[] = {"#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
                                      "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#7f7f7f"};
#define NCOLORS (sizeof(palette) / sizeof(palette[0]))
static const char *const dashes[] = {"none", "6 3", "2 2"};

/* ---- runs ------------------------------------------------------------------------------ */

void svg_run_init(svg_run *r, const char *fmt, ...)
{
    memset(r, 0, sizeof(*r));
    r->stride = 1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->label, sizeof(r->label), fmt, ap);
    va_end(ap);
}

/* Full: every other point goes, and from now on one in twice as many is kept. The points
 * kept were offered at multiples of the stride, so the survivors are at multiples of the
 * new one: the spacing stays even. */
static void thin(svg_run *r)
{
    size_t k = 0;
    for (size_t i = 0; i < r->npts; i += 2)
        r->pts[k++] = r->pts[i];
    r->npts = k;
    r->stride *= 2;
}

void svg_run_add(svg_run *r, double t, double moved)
{
    if (!isfinite(t) || !isfinite(moved)) return;
    svg_point p = {t, moved};
    if (r->added++ % r->stride == 0) {
        r->pts[r->npts++] = p;
        if (r->npts == sizeof(r->pts) / sizeof(r->pts[0])) thin(r);
    }
    r->last = p;
}

/* Whether the last point offered is among the kept ones (else it is drawn after them). */
static bool last_kept(const svg_run *r)
{
    return (r->added - 1) % r->stride == 0;
}

void svg_run_trim(svg_run *r)
{
    if (!r->added) return;
    size_t j = 0;
    while (j < r->npts && r->pts[j].moved < r->last.moved)
        j++;
    if (j == r->npts) return; /* only the last point reached it */
    r->npts = j + 1;
    r->last = r->pts[j];
    r->added = (uint64_t)j * r->stride + 1; /* the last point is a kept one */
}

static uint64_t pause_total(const svg_run *r)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < CH_PAUSE_BUCKETS; i++)
        n += r->pause[i];
    return n;
}

uint64_t svg_pause_quantile(const uint64_t pause[CH_PAUSE_BUCKETS], unsigned q)
{
    uint64_t total = 0, seen = 0;
    for (unsigned i = 0; i < CH_PAUSE_BUCKETS; i++)
        total += pause[i];
    if (!total) return 0;
    double want = (double)total * (q > 100 ? 100 : q) / 100.0;
    if (want < 1) want = 1;
    for (unsigned i = 0; i < CH_PAUSE_BUCKETS; i++) {
        if (!pause[i] || (double)(seen + pause[i]) < want) {
            seen += pause[i];
            continue;
        }
        double within = (want - (double)seen - 0.5) / (double)pause[i]; /* 0..1 in the bucket */
        return (uint64_t)llround(ldexp(1.0, (int)i) * exp2(within < 0 ? 0 : within));
    }
    return 1ull << (CH_PAUSE_BUCKETS - 1);
}

/* ---- text ------------------------------------------------------------------------------ */

/* The length of the well-formed UTF-8 sequence at s, or 0 (an XML reader rejects the file
 * at the first broken one): no overlong forms, surrogates, U+FFFE/U+FFFF or code points
 * past U+10FFFF. */
static size_t utf8_len(const unsigned char *s)
{
    size_t n = s[0] >= 0xf5 ? 0 : s[0] >= 0xf0 ? 4 : s[0] >= 0xe0 ? 3 : s[0] >= 0xc2 ? 2 : 0;
    for (size_t k = 1; k < n; k++)
        if ((s[k] & 0xc0) != 0x80) return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
        (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
        return 0;
    if (s[0] == 0xef && s[1] == 0xbf && s[2] >= 0xbe) return 0;
    return n;
}

/* s as XML character data or attribute value: markup escaped, control characters and
 * broken UTF-8 as '?'. */
static void put_escaped(FILE *f, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p;) {
        size_t n = *p >= 0x80 ? utf8_len(p) : 1;
        if (*p == '&')
            fputs("&amp;", f);
        else if (*p == '<')
            fputs("&lt;", f);
        else if (*p == '>')
            fputs("&gt;", f);
        else if (*p == '"')
            fputs("&quot;", f);
        else if (*p == '\'')
            fputs("&apos;", f);
        else if (n == 0 || (*p < 0x20 && *p != '\t'))
            fputc('?', f);
        else
            fwrite(p, 1, n, f);
        p += n ? n : 1;
    }
}

/* <text> at (x, y) with extra attributes (trusted, ours), its content escaped. */
static void put_text(FILE *f, double x, double y, const char *attrs, const char *s)
{
    fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" %s>", x, y, attrs);
    put_escaped(f, s);
    fputs("</text>\n", f);
}

/* A tick's count, in the unit that suits the axis's top: 0, 5k, 10k rather than 10000. */
static void fmt_count(char *b, size_t cap, double v, double top)
{
    if (v == 0)
        snprintf(b, cap, "0");
    else if (top >= 1e6)
        snprintf(b, cap, "%gM", v / 1e6);
    else if (top >= 1e4)
        snprintf(b, cap, "%gk", v / 1e3);
    else
        snprintf(b, cap, "%g", v);
}

/* ---- axes ------------------------------------------------------------------------------ */

/* A plot's box in pixels and the data range it shows; log: x is logarithmic. */
typedef struct frame {
    double left, right, top, bottom;
    double x_lo, x_hi, y_hi; /* y starts at 0 */
    bool log;
} frame;

static double px_x(const frame *fr, double v)
{
    double a = fr->x_lo, b = fr->x_hi;
    if (fr->log) {
        v = log10(v > a ? v : a);
        a = log10(a);
        b = log10(b);
    }
    double u = (v - a) / (b - a);
    return fr->left + (u < 0 ? 0 : u > 1 ? 1 : u) * (fr->right - fr->left);
}

static double px_y(const frame *fr, double v)
{
    double u = v / fr->y_hi;
    return fr->bottom - (u < 0 ? 0 : u > 1 ? 1 : u) * (fr->bottom - fr->top);
}

/* A step of 1, 2 or 5 times a power of ten that cuts span into about `want` parts. */
static double nice_step(double span, int want)
{
    double raw = span / want, mag = pow(10, floor(log10(raw))), r = raw / mag;
    return (r <= 1 ? 1 : r <= 2 ? 2 : r <= 5 ? 5 : 10) * mag;
}

/* How many steps reach hi from 0: at most a few dozen, whatever the data. */
static int ticks(double hi, double step)
{
    double k = hi / step;
    return k > 0 && k < 40 ? (int)llround(k) : 0;
}

/* The box, its chart title, the y grid with labels and the y axis title. */
static void put_frame(FILE *f, const frame *fr, const char *title, const char *y_title,
                      double y_step, bool counts)
{
    put_text(f, fr->left, fr->top - 12, "font-size=\"14\" font-weight=\"bold\"", title);
    for (int i = 0; i <= ticks(fr->y_hi, y_step); i++) {
        char b[32];
        double v = i * y_step, y = px_y(fr, v);
        if (counts)
            fmt_count(b, sizeof(b), v, fr->y_hi);
        else
            snprintf(b, sizeof(b), "%g", v);
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n",
                fr->left, y, fr->right, y);
        put_text(f, fr->left - 6, y + 4, "text-anchor=\"end\"", b);
    }
    fprintf(f,
            "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" "
            "stroke=\"#333\"/>\n",
            fr->left, fr->top, fr->right - fr->left, fr->bottom - fr->top);
    double cy = (fr->top + fr->bottom) / 2;
    char attrs[96];
    snprintf(attrs, sizeof(attrs), "text-anchor=\"middle\" transform=\"rotate(-90 %.1f %.1f)\"",
             PAD_L - 58, cy);
    put_text(f, PAD_L - 58, cy, attrs, y_title);
}

/* An x tick: a grid line and its label under the box. */
static void put_x_tick(FILE *f, const frame *fr, double x, const char *label)
{
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#ddd\"/>\n", x,
            fr->top, x, fr->bottom);
    put_text(f, x, fr->bottom + 16, "text-anchor=\"middle\"", label);
}

static void put_x_title(FILE *f, const frame *fr, const char *title)
{
    put_text(f, (fr->left + fr->right) / 2, fr->bottom + 34, "text-anchor=\"middle\"", title);
}

static void put_empty_note(FILE *f, const frame *fr, const char *note)
{
    put_text(f, (fr->left + fr->right) / 2, (fr->top + fr->bottom) / 2,
             "text-anchor=\"middle\" fill=\"#888\"", note);
}

static void stroke_attrs(char *b, size_t cap, size_t k)
{
    snprintf(b, cap, "stroke=\"%s\" stroke-dasharray=\"%s\"", palette[k % NCOLORS],
             dashes[(k / NCOLORS) % (sizeof(dashes) / sizeof(dashes[0]))]);
}

/* ---- chart 1: processes moved over time ------------------------------------------------ */

static void moved_range(const svg_doc *d, size_t n, double *t_max, double *y_max)
{
    *t_max = *y_max = 0;
    for (size_t k = 0; k < n; k++) {
        const svg_run *r = d->runs[k];
        for (size_t i = 0; i < r->npts; i++) {
            if (r->pts[i].t > *t_max) *t_max = r->pts[i].t;
            if (r->pts[i].moved > *y_max) *y_max = r->pts[i].moved;
        }
        if (r->added && r->last.t > *t_max) *t_max = r->last.t;
        if (r->added && r->last.moved > *y_max) *y_max = r->last.moved;
    }
}

static void put_point(FILE *f, const frame *fr, svg_point p, double scale)
{
    fprintf(f, "%.1f,%.1f ", px_x(fr, p.t * scale), px_y(fr, p.moved));
}

static void put_moved_line(FILE *f, const frame *fr, const svg_run *r, size_t k, double scale)
{
    char st[96];
    if (!r->added) return;
    stroke_attrs(st, sizeof(st), k);
    fprintf(f, "<polyline class=\"moved\" fill=\"none\" stroke-width=\"1.8\" %s points=\"", st);
    for (size_t i = 0; i < r->npts; i++)
        put_point(f, fr, r->pts[i], scale);
    if (!last_kept(r)) put_point(f, fr, r->last, scale);
    fputs("\"><title>", f);
    put_escaped(f, r->label);
    fputs("</title></polyline>\n", f);
    fprintf(f, "<circle class=\"end\" cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
            px_x(fr, r->last.t * scale), px_y(fr, r->last.moved), palette[k % NCOLORS]);
}

static void chart_moved(FILE *f, const svg_doc *d, size_t n, double top)
{
    double t_max, y_max;
    moved_range(d, n, &t_max, &y_max);
    bool ms = t_max < 2; /* short runs read better in milliseconds */
    double scale = ms ? 1e3 : 1, span = t_max > 0 ? t_max * scale : 1;
    double x_step = nice_step(span, 8), y_step = nice_step(y_max > 0 ? y_max : 1, 5);
    frame fr = {.left = PAD_L, .right = WIDTH - PAD_R, .top = top + 30, .x_lo = 0};
    fr.bottom = fr.top + PLOT_H;
    fr.x_hi = ceil(span / x_step - 1e-9) * x_step;
    fr.y_hi = ceil((y_max > 0 ? y_max : 1) / y_step - 1e-9) * y_step;
    put_frame(f, &fr, "Processes moved over time", "processes moved", y_step, true);
    for (int i = 0; i <= ticks(fr.x_hi, x_step); i++) {
        char b[32];
        snprintf(b, sizeof(b), "%g", i * x_step);
        put_x_tick(f, &fr, px_x(&fr, i * x_step), b);
    }
    put_x_title(f, &fr, ms ? "time since the change (ms)" : "time since the change (s)");
    for (size_t k = 0; k < n; k++)
        put_moved_line(f, &fr, d->runs[k], k, scale);
    if (y_max <= 0 && t_max <= 0) put_empty_note(f, &fr, "no progress recorded");
}

/* ---- chart 2: pause distribution --------------------------------------------------------- */

static void widen(double v, double *lo, double *hi)
{
    if (v <= 0) return;
    if (v < *lo) *lo = v;
    if (v > *hi) *hi = v;
}

/* The pauses' range in us, widened to whole decades; false when there are none. */
static bool pause_range(const svg_doc *d, size_t n, double *lo, double *hi, double *share)
{
    *lo = INFINITY, *hi = 0, *share = 0;
    for (size_t k = 0; k < n; k++) {
        const svg_run *r = d->runs[k];
        uint64_t total = pause_total(r);
        for (unsigned i = 0; total && i < CH_PAUSE_BUCKETS; i++) {
            if (!r->pause[i]) continue;
            widen(ldexp(1.0, (int)i), lo, hi);
            widen(ldexp(1.0, (int)i + 1), lo, hi);
            double s = 100.0 * (double)r->pause[i] / (double)total;
            if (s > *share) *share = s;
        }
        widen((double)r->p50_us, lo, hi);
        widen((double)r->p99_us, lo, hi);
        widen((double)r->max_us, lo, hi);
    }
    bool any = *hi > 0;
    if (!any) *lo = 10, *hi = 1e5; /* an empty chart still shows a sensible axis */
    *lo = pow(10, floor(log10(*lo)));
    *hi = pow(10, ceil(log10(*hi)));
    if (*hi <= *lo) *hi = *lo * 10;
    return any;
}

/* Run k: a bar over each of its buckets' whole width, light and outlined, so that runs
 * that share a bucket show through one another and every bar sits where its pauses lie. */
static void put_bars(FILE *f, const frame *fr, const svg_run *r, size_t k)
{
    uint64_t total = pause_total(r);
    const char *c = palette[k % NCOLORS];
    for (unsigned i = 0; total && i < CH_PAUSE_BUCKETS; i++) {
        if (!r->pause[i]) continue;
        double share = 100.0 * (double)r->pause[i] / (double)total;
        double x0 = px_x(fr, ldexp(1.0, (int)i)), x1 = px_x(fr, ldexp(1.0, (int)i + 1));
        double y = px_y(fr, share);
        fprintf(f,
                "<rect class=\"bar\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                "fill=\"%s\" fill-opacity=\"0.2\" stroke=\"%s\" stroke-width=\"1.5\"><title>",
                x0, y, x1 - x0, fr->bottom - y, c, c);
        put_escaped(f, r->label);
        fprintf(f, ": %g-%g ms: %llu pauses (%.1f%%)</title></rect>\n", ldexp(1e-3, (int)i),
                ldexp(1e-3, (int)i + 1), (unsigned long long)r->pause[i], share);
    }
}

static const char *const mark_name[] = {"p50", "p99", "max"};
static const char *const mark_dash[] = {"2 3", "6 3", "none"};

/* A run's p50, p99 and max: vertical lines, dotted, dashed and solid; named in the chart
 * when the runs are few (each name on a row of its own: they are often close). */
static void put_marks(FILE *f, const frame *fr, const svg_run *r, size_t k, size_t n)
{
    const uint64_t v[] = {r->p50_us, r->p99_us, r->max_us};
    for (int m = 0; m < 3; m++) {
        if (!v[m]) continue;
        double x = px_x(fr, (double)v[m]);
        fprintf(f,
                "<line class=\"mark\" x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                "stroke=\"%s\" stroke-width=\"1.5\" stroke-dasharray=\"%s\"><title>",
                x, fr->top, x, fr->bottom, palette[k % NCOLORS], mark_dash[m]);
        put_escaped(f, r->label);
        fprintf(f, ": %s %s%.3f ms</title></line>\n", mark_name[m], r->approx ? "~" : "",
                (double)v[m] / 1e3);
        if (n > MARK_TEXTS) continue;
        char attrs[64];
        snprintf(attrs, sizeof(attrs), "font-size=\"10\" fill=\"%s\"", palette[k % NCOLORS]);
        put_text(f, x + 2, fr->top + 10 + 11 * (double)(k * 3 + (size_t)m), attrs, mark_name[m]);
    }
}

/* Ticks in us labelled in ms: every decade, and 2x and 5x too while decades are few. */
static void put_log_ticks(FILE *f, const frame *fr)
{
    static const double mult[] = {1, 2, 5};
    int decades = ticks(log10(fr->x_hi / fr->x_lo), 1);
    for (int i = 0; i <= decades; i++)
        for (int m = 0; m < (decades <= 4 ? 3 : 1); m++) {
            double us = fr->x_lo * pow(10, i) * mult[m];
            if (us > fr->x_hi * (1 + 1e-9)) break;
            char b[32];
            if (us >= 1e6) /* 10000000 ms reads worse than 10000 s */
                snprintf(b, sizeof(b), "%g s", us / 1e6);
            else
                snprintf(b, sizeof(b), "%g", us / 1e3);
            put_x_tick(f, fr, px_x(fr, us), b);
        }
}

static void chart_pauses(FILE *f, const svg_doc *d, size_t n, double top)
{
    double lo, hi, share;
    bool any = pause_range(d, n, &lo, &hi, &share);
    double y_step = nice_step(share > 0 ? share : 100, 5);
    frame fr = {.left = PAD_L, .right = WIDTH - PAD_R, .top = top + 30, .log = true};
    fr.bottom = fr.top + PLOT_H;
    fr.x_lo = lo, fr.x_hi = hi;
    fr.y_hi = ceil((share > 0 ? share : 100) / y_step - 1e-9) * y_step;
    put_frame(f, &fr, "Pause per moved process (freeze to confirmation)",
              "share of the run's pauses (%)", y_step, false);
    put_log_ticks(f, &fr);
    put_x_title(f, &fr,
                "pause (ms, log scale); bars: each run's share per log2 bucket; "
                "lines: p50 dotted, p99 dashed, max solid");
    for (size_t k = 0; k < n; k++)
        put_bars(f, &fr, d->runs[k], k);
    for (size_t k = 0; k < n; k++)
        put_marks(f, &fr, d->runs[k], k, n);
    if (!any) put_empty_note(f, &fr, "no pauses recorded");
}

/* ---- legend and file ----------------------------------------------------------------- */

/* A run's entry: its swatch and label, and its figures under them. */
static void put_legend_row(FILE *f, const svg_run *r, size_t k, double y)
{
    char st[96], s[256];
    stroke_attrs(st, sizeof(st), k);
    fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke-width=\"2.5\" %s/>\n",
            PAD_L, y - 4, PAD_L + 24, y - 4, st);
    put_text(f, PAD_L + 32, y, "class=\"label\"", r->label);
    const char *ap = r->approx ? "~" : "";
    snprintf(s, sizeof(s),
             "moved %.0f in %.3f s | %llu pauses: p50 %s%.2f, p99 %s%.2f, max %s%.2f ms",
             r->added ? r->last.moved : 0.0, r->added ? r->last.t : 0.0,
             (unsigned long long)pause_total(r), ap, (double)r->p50_us / 1e3, ap,
             (double)r->p99_us / 1e3, ap, (double)r->max_us / 1e3);
    put_text(f, PAD_L + 32, y + 14, "font-size=\"11\" fill=\"#555\"", s);
}

int svg_write(FILE *f, const svg_doc *d)
{
    if (!f || !d || (d->nruns && !d->runs)) return -EINVAL;
    size_t n = d->nruns < SVG_MAX_RUNS ? d->nruns : SVG_MAX_RUNS;
    for (size_t k = 0; k < n; k++)
        if (!d->runs[k]) return -EINVAL;
    double legend = HEAD_H + 2 * CHART_H + 34; /* the first entry's baseline */
    double height = legend + LEGEND_ROW * (double)(n + (d->nruns > n)) + 8;
    fprintf(f,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%.0f\" "
            "viewBox=\"0 0 %d %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
            WIDTH, height, WIDTH, height);
    fputs("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n", f);
    put_text(f, PAD_L, 28, "font-size=\"17\" font-weight=\"bold\"", d->title ? d->title : "");
    if (d->subtitle) put_text(f, PAD_L, 48, "fill=\"#555\"", d->subtitle);
    chart_moved(f, d, n, HEAD_H);
    chart_pauses(f, d, n, HEAD_H + CHART_H);
    for (size_t k = 0; k < n; k++)
        put_legend_row(f, d->runs[k], k, legend + LEGEND_ROW * (double)k);
    if (d->nruns > n) {
        char note[96];
        snprintf(note, sizeof(note), "%zu more runs not drawn (at most %d per file)", d->nruns - n,
                 SVG_MAX_RUNS);
        put_text(f, PAD_L, legend + LEGEND_ROW * (double)n, "fill=\"#555\"", note);
    }
    fputs("</svg>\n", f);
    return ferror(f) ? -EIO : 0;
}
