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

bool hub_members_are(hnode **nodes, int count, int alive)
{
    for (int i = 0; i < count; i++) {
        if (node_count_members(nodes[i], "alive") != alive) return false;
        if (node_count_members(nodes[i], "suspect") != 0) return false;
    }
    return true;
}

typedef struct members_wait {
    hnode **nodes;
    int count, alive;
} members_wait;

static bool members_ok(void *ud)
{
    members_wait *w = ud;
    return hub_members_are(w->nodes, w->count, w->alive);
}

bool hub_wait_members(hnode **nodes, int count, int alive, int timeout_ms)
{
    members_wait w = {nodes, count, alive};
    return harness_wait(members_ok, &w, timeout_ms);
}

long long hub_stat_sum(hnode **nodes, int count, const char *key)
{
    long long sum = 0;
    for (int i = 0; i < count; i++)
        sum += node_stat(nodes[i], key);
    return sum;
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
