/*
 * core/log.c - logging. The level and sink are process-wide because log lines come from
 * every thread of every node in the process; both are atomics so that changing them at run
 * time is race-free. A line is formatted on the stack and written with one call, so lines
 * from different threads never interleave.
 */
#include "log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

static _Atomic int level = -1; /* -1: not read from CH_LOG yet */
/* The sink and its user data change together: one immutable pair behind one atomic
 * pointer. A replaced pair is not freed, since another thread may be using it (a program
 * sets its sink a handful of times). */
typedef struct sink_pair {
    ch_log_sink fn;
    void *ud;
    struct sink_pair *older; /* keeps every pair reachable */
} sink_pair;
static _Atomic(sink_pair *) sink;
static _Atomic(sink_pair *) every_pair;
static _Thread_local char thread_name[16];

static int level_from_env(void)
{
    static const char *names[] = {"debug", "info", "warn", "error", "off"};
    const char *s = getenv("CH_LOG");
    if (s)
        for (int i = 0; i < 5; i++)
            if (strcasecmp(s, names[i]) == 0) return i;
    return CH_LOG_INFO;
}

ch_log_level ch_log_level_get(void)
{
    int l = atomic_load_explicit(&level, memory_order_relaxed);
    if (l < 0) {
        l = level_from_env();
        atomic_store_explicit(&level, l, memory_order_relaxed);
    }
    return (ch_log_level)l;
}

void ch_log_level_set(ch_log_level l)
{
    atomic_store_explicit(&level, (int)l, memory_order_relaxed);
}

void ch_log_sink_set(ch_log_sink s, void *ud)
{
    sink_pair *p = NULL;
    if (s && !(p = malloc(sizeof(*p)))) return; /* keep the old sink rather than none */
    if (p) {
        *p = (sink_pair){s, ud, NULL};
        p->older = atomic_exchange(&every_pair, p);
    }
    atomic_store(&sink, p);
}

void ch_log_thread_name(const char *name)
{
    snprintf(thread_name, sizeof(thread_name), "%s", name);
}

int ch_log_enabled(ch_log_level l)
{
    return l >= ch_log_level_get() && l < CH_LOG_OFF;
}

void ch_log(ch_log_level l, const char *fmt, ...)
{
    static const char *tags[] = {"DEBUG", "INFO ", "WARN ", "ERROR"};
    if (!ch_log_enabled(l)) return;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s [%s] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, tags[l], thread_name[0] ? thread_name : "main");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof(line) - 2) len = sizeof(line) - 2;
    sink_pair *s = atomic_load(&sink);
    if (s) {
        line[len] = '\0';
        s->fn(s->ud, l, line);
        return;
    }
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
