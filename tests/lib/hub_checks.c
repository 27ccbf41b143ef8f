/*
 * tests/lib/hub_checks.c - assertions about a hub of real nodes (see hub_checks.h).
 */
#include "hub_checks.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The index i of a `procs --local` line "PREFIX<i> TYPE NODE CORE", or -1. */
static long id_index(const char *line, const char *prefix, long n)
{
    size_t plen = strlen(prefix);
    if (strncmp(line, prefix, plen) != 0) return -1;
    const char *digits = line + plen;
    if (*digits < '0' || *digits > '9') return -1;
    char *after = NULL;
    long i = strtol(digits, &after, 10);
    return i < n && after && *after == ' ' ? i : -1;
}

static void count_local(hnode *node, const char *prefix, long n, long *mine, unsigned char *seen,
                        int *errors)
{
    int st = 0;
    char *text = NULL;
    if (node_ctl(node, &st, &text, "procs", "--local", NULL) != 0 || st != 0) {
        ++*errors;
        free(text);
        return;
    }
    for (char *line = text; line && *line;) {
        char *end = strchr(line, '\n');
        if (end) *end = '\0';
        long i = id_index(line, prefix, n);
        if (i >= 0) {
            ++*mine;
            if (seen[i] < 255) seen[i]++;
        }
        line = end ? end + 1 : NULL;
    }
    free(text);
}

bool hub_each_once(hnode **nodes, int count, const char *prefix, long n, hub_instances *in)
{
    memset(in, 0, sizeof(*in));
    unsigned char *seen = calloc((size_t)n + 1, 1);
    if (!seen) {
        in->errors = 1;
        return false;
    }
    for (int k = 0; k < count && k < HUB_MAX; k++)
        count_local(nodes[k], prefix, n, &in->per_node[k], seen, &in->errors);
    for (long i = 0; i < n; i++) {
        in->missing += seen[i] == 0;
        in->doubled += seen[i] > 1;
    }
    free(seen);
    return !in->errors && !in->missing && !in->doubled;
}

bool hub_count_is(hnode **nodes, int count, const char *state, int want)
{
    for (int i = 0; i < count; i++)
        if (nodes[i] && node_count_members(nodes[i], state) != want) return false;
    return true;
}

typedef struct count_wait {
    hnode **nodes;
    int count;
    const char *state;
    int want;
} count_wait;

static bool count_ok(void *ud)
{
    count_wait *w = ud;
    return hub_count_is(w->nodes, w->count, w->state, w->want);
}

bool hub_wait_count(hnode **nodes, int count, const char *state, int want, int timeout_ms)
{
    count_wait w = {nodes, count, state, want};
    return harness_wait(count_ok, &w, timeout_ms);
}

bool hub_members_are(hnode **nodes, int count, int alive)
{
    for (int i = 0; i < count; i++)
        if (nodes[i] && (node_count_members(nodes[i], "alive") != alive ||
                         node_count_members(nodes[i], "suspect") != 0))
            return false;
    return true;
}

static bool members_ok(void *ud)
{
    count_wait *w = ud;
    return hub_members_are(w->nodes, w->count, w->want);
}

bool hub_wait_members(hnode **nodes, int count, int alive, int timeout_ms)
{
    count_wait w = {nodes, count, "alive", alive};
    return harness_wait(members_ok, &w, timeout_ms);
}

typedef struct procs_wait {
    hnode **nodes;
    int count;
    long procs;
} procs_wait;

static bool listed_ok(void *ud)
{
    procs_wait *w = ud;
    for (int i = 0; i < w->count; i++)
        if (w->nodes[i] && node_ctl_lines(w->nodes[i], "procs", NULL) != w->procs) return false;
    return true;
}

bool hub_wait_listed(hnode **nodes, int count, long procs, int timeout_ms)
{
    procs_wait w = {nodes, count, procs};
    return harness_wait(listed_ok, &w, timeout_ms);
}

static bool running_ok(void *ud)
{
    procs_wait *w = ud;
    long sum = 0;
    for (int i = 0; i < w->count; i++)
        if (w->nodes[i]) sum += node_ctl_lines(w->nodes[i], "procs", "--local", NULL);
    return sum == w->procs;
}

bool hub_wait_running(hnode **nodes, int count, long procs, int timeout_ms)
{
    procs_wait w = {nodes, count, procs};
    return harness_wait(running_ok, &w, timeout_ms);
}

long long hub_stat_sum(hnode **nodes, int count, const char *key)
{
    long long sum = 0;
    for (int i = 0; i < count; i++)
        if (nodes[i]) sum += node_stat(nodes[i], key);
    return sum;
}

typedef struct stat_wait {
    hnode **nodes;
    int count;
    const char *key;
    long long want;
    hub_cmp cmp;
    long long last;
} stat_wait;

static bool stat_ok(void *ud)
{
    stat_wait *w = ud;
    w->last = hub_stat_sum(w->nodes, w->count, w->key);
    return w->cmp == HUB_AT_LEAST ? w->last >= w->want : w->last == w->want;
}

bool hub_wait_stat(hnode **nodes, int count, const char *key, long long want, hub_cmp cmp,
                   int timeout_ms, long long *last)
{
    stat_wait w = {nodes, count, key, want, cmp, -1};
    bool ok = harness_wait(stat_ok, &w, timeout_ms);
    if (last) *last = w.last;
    return ok;
}

typedef struct settle_wait {
    hnode **nodes;
    int count;
    const char *prefix;
    long n;
    hub_instances *in;
} settle_wait;

static bool placed(settle_wait *w)
{
    char n[32];
    snprintf(n, sizeof(n), "%ld", w->n);
    for (int i = 0; i < w->count; i++)
        if (node_ctl_status(w->nodes[i], "placement", w->prefix, n, NULL) != 0) return false;
    return true;
}

static bool settled(void *ud)
{
    settle_wait *w = ud;
    if (hub_stat_sum(w->nodes, w->count, "migrating") != 0) return false;
    return hub_each_once(w->nodes, w->count, w->prefix, w->n, w->in) && placed(w);
}

bool hub_wait_settled(hnode **nodes, int count, const char *prefix, long n, int timeout_ms,
                      hub_instances *in)
{
    settle_wait w = {nodes, count, prefix, n, in};
    return harness_wait(settled, &w, timeout_ms);
}
