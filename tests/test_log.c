/*
 * tests/test_log.c - logging: level, CH_LOG, sinks, and the line format
 * "2026-11-25T17:03:39.123Z WARN  [r1] message".
 */
#include "helpers.h"

#include <pthread.h>
#include <regex.h>

TestSuite(log, .timeout = 30);

#define LINES_MAX 64

static pthread_mutex_t lines_mu = PTHREAD_MUTEX_INITIALIZER;
static char lines[LINES_MAX][256];
static ch_log_level levels[LINES_MAX];
static int nlines;
static atomic_int sink_calls;
static atomic_int wrong_ud;
static int sink_marker;

static void capture(void *ud, ch_log_level level, const char *line)
{
    if (ud != &sink_marker) atomic_fetch_add(&wrong_ud, 1);
    pthread_mutex_lock(&lines_mu);
    if (nlines < LINES_MAX) {
        snprintf(lines[nlines], sizeof(lines[nlines]), "%s", line);
        levels[nlines] = level;
        nlines++;
    }
    pthread_mutex_unlock(&lines_mu);
    atomic_fetch_add(&sink_calls, 1);
}

/* Index of the first captured line containing `needle`, or -1. */
static int find_line(const char *needle)
{
    pthread_mutex_lock(&lines_mu);
    int found = -1;
    for (int i = 0; i < nlines && found < 0; i++)
        if (strstr(lines[i], needle)) found = i;
    pthread_mutex_unlock(&lines_mu);
    return found;
}

static void crash(ch_node *n, const char *id)
{
    char buf[4];
    size_t len;
    cr_assert_eq(th_call(n, id, "c", buf, sizeof(buf), &len), CH_ECRASHED);
}

Test(log, level_set_is_level_get)
{
    ch_log_set_level(CH_LOG_ERROR);
    cr_assert_eq(ch_log_get_level(), CH_LOG_ERROR);
    ch_log_set_level(CH_LOG_DEBUG);
    cr_assert_eq(ch_log_get_level(), CH_LOG_DEBUG);
    ch_log_set_level(CH_LOG_OFF);
    cr_assert_eq(ch_log_get_level(), CH_LOG_OFF);
}

Test(log, the_ch_log_variable_sets_the_initial_level)
{
    /* Criterion runs each test in a fresh process: the level was not read yet. */
    setenv("CH_LOG", "error", 1);
    cr_assert_eq(ch_log_get_level(), CH_LOG_ERROR);
}

Test(log, sink_receives_reactor_lines_in_the_documented_format)
{
    ch_log_set_level(CH_LOG_WARN);
    ch_log_set_sink(capture, &sink_marker);
    ch_node *n = th_node_new(2);
    char id[32];
    th_id_on_core(n, "boom", 1, id, sizeof(id));
    th_start(n, id, CH_TEMPORARY, NULL);
    crash(n, id);
    cr_assert(TH_WAIT(find_line(id) >= 0, TH_WAIT_MS), "no log line names the crashed %s", id);
    int i = find_line(id);
    cr_assert_eq(levels[i], CH_LOG_WARN, "a crash is logged at WARN, got level %d", levels[i]);
    regex_t re;
    cr_assert_eq(regcomp(&re,
                         "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z "
                         "WARN  \\[r1\\] [^\n]*$",
                         REG_EXTENDED | REG_NOSUB),
                 0);
    cr_assert_eq(regexec(&re, lines[i], 0, NULL, 0), 0, "line \"%s\" is not in the format",
                 lines[i]);
    regfree(&re);
    cr_assert_eq(find_line("INFO"), -1, "INFO lines pass a WARN level");
    cr_assert_eq(atomic_load(&wrong_ud), 0, "the sink gets its user data");
    th_node_free(n);
    ch_log_set_sink(NULL, NULL);
}

Test(log, lines_below_the_level_are_not_emitted)
{
    ch_log_set_level(CH_LOG_ERROR);
    ch_log_set_sink(capture, &sink_marker);
    ch_node *n = th_node_new(2);
    th_start(n, "quiet", CH_PERMANENT, NULL);
    th_start(n, "witness", CH_PERMANENT, NULL);
    crash(n, "quiet");
    cr_assert(TH_WAIT(th_incarnation(n, "quiet") == 1, TH_WAIT_MS));
    th_assert_serves(n, "witness");
    cr_assert_eq(find_line("quiet"), -1, "a WARN line passed an ERROR level");

    ch_log_set_level(CH_LOG_WARN);
    crash(n, "quiet");
    cr_assert(TH_WAIT(find_line("quiet") >= 0, TH_WAIT_MS), "the WARN line after lowering");
    th_node_free(n);
    ch_log_set_sink(NULL, NULL);
}

Test(log, null_sink_restores_stderr)
{
    ch_log_set_level(CH_LOG_WARN);
    ch_log_set_sink(capture, &sink_marker);
    ch_node *n = th_node_new(2);
    th_start(n, "a", CH_PERMANENT, NULL);
    crash(n, "a");
    cr_assert(TH_WAIT(atomic_load(&sink_calls) >= 1, TH_WAIT_MS));
    ch_log_set_sink(NULL, NULL);
    int before = atomic_load(&sink_calls);
    cr_assert(TH_WAIT(th_incarnation(n, "a") == 1, TH_WAIT_MS));
    crash(n, "a");
    cr_assert(TH_WAIT(th_incarnation(n, "a") == 2, TH_WAIT_MS));
    th_assert_serves(n, "a"); /* after the crash's log line, on the same core */
    cr_assert_eq(atomic_load(&sink_calls), before, "the removed sink was still called");
    th_node_free(n);
}
