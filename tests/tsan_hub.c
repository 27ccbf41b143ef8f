/*
 * tests/tsan_hub.c - a three-node hub in one process, driven from two application threads:
 * starts, casts and calls across nodes, registry queries, a node stopped without leaving
 * (its processes restart on the others) and a graceful leave. Exits 0 when every check
 * holds. Its purpose is to give ThreadSanitizer every thread of every layer at once.
 */
#include "inproc_hub.h"
#include "wait.h"

#include <corehub/corehub.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROCS   600
#define WAIT_MS 20000

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "tsan_hub: FAILED: %s\n", what);
        failures++;
    }
}

/* Whether what(n) is `want` on nodes[0..count) within WAIT_MS. */
static int wait_for(ch_node **nodes, size_t count, size_t (*what)(ch_node *), size_t want)
{
    return ihub_wait_all(nodes, count, what, want, WAIT_MS);
}

typedef struct sender {
    ch_node *via;
    _Atomic int errors;
} sender;

static void *send_all(void *arg)
{
    sender *s = arg;
    char id[16];
    for (int i = 0; i < PROCS; i++) {
        snprintf(id, sizeof(id), "t%d", i);
        int rc;
        while ((rc = ch_send(s->via, id, CH_ID_CSTR, "+", 1)) == -EAGAIN)
            th_pause_us(1000);
        if (rc) atomic_fetch_add(&s->errors, 1);
    }
    return NULL;
}

static int counts_are(ch_node *n, uint64_t want)
{
    char id[16];
    for (int i = 0; i < PROCS; i++) {
        snprintf(id, sizeof(id), "t%d", i);
        uint64_t v = 0;
        size_t len;
        uint64_t end = th_now_ms() + 10000;
        while (ch_call(n, id, CH_ID_CSTR, "?", 1, &v, sizeof(v), &len, 5000) == 0 && v != want &&
               th_now_ms() < end)
            th_pause_us(2000);
        if (v != want) return 0;
    }
    return 1;
}

int main(void)
{
    ch_log_set_level(getenv("CH_LOG") ? ch_log_get_level() : CH_LOG_WARN);
    ihub h;
    if (ihub_up(&h, 3, NULL, &ihub_counter) < 0) {
        fprintf(stderr, "tsan_hub: cannot start a node\n");
        return 1;
    }
    ch_node **n = h.n;
    check(wait_for(n, 3, ihub_alive, 3), "three members");

    check(ihub_start_range(n[0], "t", PROCS, IHUB_COUNTER, NULL) == 0, "start across the hub");
    check(wait_for(n, 3, ihub_listed, PROCS), "every registry lists every process");

    sender s[2] = {{.via = n[1]}, {.via = n[2]}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, send_all, &s[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    check(atomic_load(&s[0].errors) + atomic_load(&s[1].errors) == 0, "sends accepted");
    check(counts_are(n[0], 2), "every process got both senders' casts");

    ch_node_destroy(n[2]); /* no leave: a crash for the others */
    n[2] = NULL;
    check(wait_for(n, 2, ihub_alive, 2), "the stopped node is declared dead");
    check(wait_for(n, 2, ihub_listed, PROCS), "its processes restart on the survivors");
    check(ch_node_leave(n[1]) == 0, "graceful leave");
    check(wait_for(n, 1, ihub_alive, 1), "the last node is alone");
    check(wait_for(n, 1, ihub_listed, PROCS), "and runs every process");
    ihub_down(&h);
    if (failures) return 1;
    printf("tsan_hub: all checks passed\n");
    return 0;
}
