/*
 * tests/tsan_hub.c - a three-node hub in one process, driven from two application threads:
 * starts, casts and calls across nodes, registry queries, a node stopped without leaving
 * (its processes restart on the others) and a graceful leave. Exits 0 when every check
 * holds. Its purpose is to give ThreadSanitizer every thread of every layer at once.
 */
#include <corehub/corehub.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PROCS 600

static const char cookie[] = "tsan-hub-cookie-0123456789abcdef";

static int counter_init(ch_proc *p, const void *arg, size_t len, unsigned flags)
{
    (void)arg, (void)len, (void)flags;
    return ch_proc_state_resize(p, 8) ? 0 : -12;
}

static int counter_handle(ch_proc *p, const ch_msg *m)
{
    uint64_t *n = ch_proc_state(p, NULL);
    if (m->kind == CH_MSG_CAST) (*n)++;
    if (m->kind == CH_MSG_CALL) ch_reply(p, m, n, sizeof(*n));
    return CH_CONTINUE;
}

static const ch_process_type counter = {
    .name = "counter", .init = counter_init, .handle = counter_handle};

static int failures;

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "tsan_hub: FAILED: %s\n", what);
        failures++;
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void pause_ms(long ms) /* a poll interval inside deadline loops, not a sync */
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

static ch_node *node_new(const char *seed)
{
    ch_node_config c;
    ch_node_config_init(&c);
    c.cores = 2;
    c.pin = 0;
    c.cluster.listen = "127.0.0.1:0";
    c.cluster.cookie = cookie;
    c.cluster.cookie_len = sizeof(cookie) - 1;
    c.cluster.probe_interval_ms = 200;
    c.cluster.probe_timeout_ms = 100;
    c.cluster.suspicion_mult = 5;
    c.cluster.sync_interval_ms = 300;
    const char *seeds[1] = {seed};
    if (seed) {
        c.cluster.seeds = seeds;
        c.cluster.nseeds = 1;
    }
    ch_node *n = NULL;
    if (ch_node_create(&c, &n) < 0 || ch_node_register_type(n, &counter) < 0 ||
        ch_node_start(n) < 0) {
        fprintf(stderr, "tsan_hub: cannot start a node\n");
        exit(1);
    }
    return n;
}

static size_t alive(ch_node *n)
{
    ch_member *m;
    size_t k, a = 0;
    if (ch_members(n, &m, &k) < 0) return 0;
    for (size_t i = 0; i < k; i++)
        a += m[i].state == CH_MEMBER_ALIVE;
    free(m);
    return a;
}

static size_t listed(ch_node *n)
{
    ch_proc_list l;
    if (ch_list(n, NULL, &l) < 0) return 0;
    size_t k = l.count;
    ch_proc_list_free(&l);
    return k;
}

static int wait_for(ch_node **nodes, size_t count, size_t (*fn)(ch_node *), size_t want)
{
    for (uint64_t end = now_ms() + 20000; now_ms() < end; pause_ms(20)) {
        size_t ok = 0;
        for (size_t i = 0; i < count; i++)
            ok += fn(nodes[i]) == want;
        if (ok == count) return 1;
    }
    return 0;
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
        while ((rc = ch_send(s->via, id, CH_ID_CSTR, "+", 1)) == -11)
            pause_ms(1);
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
        uint64_t end = now_ms() + 10000;
        while (ch_call(n, id, CH_ID_CSTR, "?", 1, &v, sizeof(v), &len, 5000) == 0 && v != want &&
               now_ms() < end)
            pause_ms(2);
        if (v != want) return 0;
    }
    return 1;
}

int main(void)
{
    ch_log_set_level(getenv("CH_LOG") ? ch_log_get_level() : CH_LOG_WARN);
    ch_node *n[3];
    n[0] = node_new(NULL);
    char seed[64];
    snprintf(seed, sizeof(seed), "127.0.0.1:%d", ch_node_port(n[0]));
    n[1] = node_new(seed);
    n[2] = node_new(seed);
    check(wait_for(n, 3, alive, 3), "three members");

    ch_child_spec specs[PROCS];
    char ids[PROCS][16];
    int res[PROCS];
    for (int i = 0; i < PROCS; i++) {
        snprintf(ids[i], sizeof(ids[i]), "t%d", i);
        specs[i] = (ch_child_spec){.id = ids[i], .id_len = CH_ID_CSTR, .type = "counter"};
    }
    check(ch_start_children(n[0], specs, PROCS, NULL, res) == 0, "start across the hub");
    check(wait_for(n, 3, listed, PROCS), "every registry lists every process");

    sender s[2] = {{.via = n[1]}, {.via = n[2]}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, send_all, &s[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    check(atomic_load(&s[0].errors) + atomic_load(&s[1].errors) == 0, "sends accepted");
    check(counts_are(n[0], 2), "every process got both senders' casts");

    ch_node_destroy(n[2]); /* no leave: a crash for the others */
    check(wait_for(n, 2, alive, 2), "the stopped node is declared dead");
    check(wait_for(n, 2, listed, PROCS), "its processes restart on the survivors");
    check(ch_node_leave(n[1]) == 0, "graceful leave");
    check(wait_for(n, 1, alive, 1), "the last node is alone");
    check(wait_for(n, 1, listed, PROCS), "and runs every process");
    ch_node_destroy(n[1]);
    ch_node_destroy(n[0]);
    if (failures) return 1;
    printf("tsan_hub: all checks passed\n");
    return 0;
}
