/*
 * bench/bench_common.h - what every benchmark shares: dying on an error with its name, and
 * reporting: the repetitions of one figure (median, min, max) and the machine's CPU model.
 * Header-only: each benchmark is one program built from one file; it defines BENCH_NAME
 * before including this.
 */
#ifndef CH_BENCH_COMMON_H
#define CH_BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <corehub/corehub.h>

#include <stdarg.h>
#include <stdint.h>
#include <time.h>

#ifndef MAX_REPS
#define MAX_REPS 100
#endif
#ifndef BENCH_NAME
#define BENCH_NAME "bench"
#endif

static void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

static inline void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(BENCH_NAME ": ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static inline void check_rc(int rc, const char *what, int line)
{
    if (rc < 0) die("line %d: %s: %s", line, what, ch_strerror(rc));
}

/* CHECK: corehub and -errno returns. CHECK_PT: pthread-style positive error numbers. */
#define CHECK(expr)    check_rc((expr), #expr, __LINE__)
#define CHECK_PT(expr) check_rc(-(expr), #expr, __LINE__)

typedef struct series {
    double v[MAX_REPS];
    unsigned n;
} series;

static inline void series_add(series *s, double x)
{
    if (s->n < MAX_REPS) s->v[s->n++] = x;
}

static inline int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Median, min, max of the repetitions; 0 for an empty series. */
static inline void series_stats(const series *s, double *med, double *lo, double *hi)
{
    double v[MAX_REPS];
    *med = *lo = *hi = 0;
    if (!s->n) return;
    memcpy(v, s->v, s->n * sizeof(double));
    qsort(v, s->n, sizeof(double), cmp_double);
    *med = s->n % 2 ? v[s->n / 2] : (v[s->n / 2 - 1] + v[s->n / 2]) / 2;
    *lo = v[0];
    *hi = v[s->n - 1];
}

static inline double series_median(const series *s)
{
    double med, lo, hi;
    series_stats(s, &med, &lo, &hi);
    return med;
}

static inline void cpu_model(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[256];
    while (fgets(line, sizeof(line), f)) {
        char *colon = strchr(line, ':');
        if (strncmp(line, "model name", 10) || !colon) continue;
        snprintf(out, cap, "%s", colon + 2);
        out[strcspn(out, "\n")] = 0;
        break;
    }
    fclose(f);
}

/* The load average, as /proc/loadavg gives it: others' work on this shared machine. */
static inline void load_avg(char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return;
    double l1, l5, l15;
    if (fscanf(f, "%lf %lf %lf", &l1, &l5, &l15) == 3)
        snprintf(out, cap, "%.2f %.2f %.2f", l1, l5, l15);
    fclose(f);
}

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

#endif
