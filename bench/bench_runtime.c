/*
 * bench/bench_runtime.c - benchmark of the runtime foundation (design.md §6).
 *
 * On one node with every core it measures what §6 sets targets for:
 *   1. local start rate: N trivial processes started with ch_node_children_start, in batches
 *      kept in flight a few at a time so that every reactor stays busy;
 *   2. memory per idle process: RSS growth over those N processes (8-byte ids, no state);
 *      1 and 2 run on a fresh node in a fresh (forked) process per repetition;
 *   3. ch_send throughput, same core and cross core, from a sender that runs on a reactor,
 *      next to its baseline: the raw SPSC ring (core/mbox.h) between two threads pinned to
 *      the same two CPUs, moving the same 16-byte records, and, as a diagnostic, moving
 *      records as large as ch_send's;
 *   4. call round trips: ch_call from a foreign thread, ch_call_async and ch_proc_call from
 *      a reactor to a process on the other core.
 * Every measurement runs R times; the table shows the median with min and max and the ratio
 * to its target or to the baseline measured in the same run. This is not a test: it stops
 * only when the runtime returns an error or loses messages, since no figure means anything
 * then.
 */
#define _GNU_SOURCE /* CPU_SET, pthread_setaffinity_np */
#include <corehub/corehub.h>

#include "core/msg.h"
#include "core/mbox.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdalign.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BENCH_NAME "bench_runtime"
#include "bench_common.h"

#define MAX_REPS     100
#define ID_BYTES     8   /* process ids of the start and memory runs */
#define MSG_BYTES    16  /* payload of every message, call and ring record */
#define START_WINDOW 4   /* start batches in flight at once */
#define SEND_SPINS   256 /* -EAGAIN retries before a sender gives its reactor a turn */
#define RING_PUBLISH 64  /* ring baseline: records per publish and per release */
#define WAIT_S       120 /* longest wait for any one run before we call it lost */
#define WARM_DIV     10  /* send and ring runs first move msgs/WARM_DIV untimed records */
#define SENDER_CORE  0   /* send and call drivers run here ... */
#define OTHER_CORE   1   /* ... and this is the "other core" */

/* --- options ------------------------------------------------------------------------- */

typedef struct bench_opts {
    unsigned reps;
    size_t procs; /* processes per start run */
    size_t batch; /* children per ch_node_children_start call */
    size_t msgs;  /* messages per send run (and per ring run) */
    size_t calls; /* timed calls per call run */
    size_t chunk; /* messages a posted sender sends before it re-posts itself */
    bool quick;
    bool verbose; /* print every repetition as it ends */
} bench_opts;

static void usage(int code)
{
    fputs("usage: bench_runtime [--reps R] [--procs N] [--batch B] [--msgs M] [--calls K]\n"
          "                     [--chunk C] [--quick] [--verbose]\n"
          "  --quick    small sizes for a smoke run (explicit sizes still win)\n"
          "  --verbose  print every repetition, not only the summary\n",
          code ? stderr : stdout);
    exit(code);
}

static size_t parse_count(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > ((size_t)1 << 40))
        die("%s: not a positive count: '%s'", opt, s);
    return (size_t)v;
}

/* Fills every size the command line left at 0: --quick picks small ones. */
static void apply_defaults(bench_opts *o)
{
    if (!o->reps) o->reps = o->quick ? 3 : 5;
    if (!o->procs) o->procs = o->quick ? 20000 : 1000000;
    if (!o->batch) o->batch = 10000;
    if (!o->msgs) o->msgs = o->quick ? 200000 : 2000000;
    if (!o->calls) o->calls = o->quick ? 2000 : 20000;
    if (!o->chunk) o->chunk = 256;
}

static void parse_opts(int argc, char **argv, bench_opts *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick")) {
            o->quick = true;
            continue;
        }
        if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            o->verbose = true;
            continue;
        }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) usage(0);
        if (i + 1 >= argc) usage(2);
        size_t v = parse_count(a, argv[++i]);
        if (!strcmp(a, "--reps"))
            o->reps = v > MAX_REPS ? MAX_REPS : (unsigned)v;
        else if (!strcmp(a, "--procs"))
            o->procs = v;
        else if (!strcmp(a, "--batch"))
            o->batch = v;
        else if (!strcmp(a, "--msgs"))
            o->msgs = v;
        else if (!strcmp(a, "--calls"))
            o->calls = v;
        else if (!strcmp(a, "--chunk"))
            o->chunk = v;
        else
            usage(2);
    }
    apply_defaults(o);
    if (o->procs >= ((size_t)1 << 28)) die("--procs: at most %d (8-byte ids)", (1 << 28) - 1);
}

/* --- small helpers ------------------------------------------------------------------- */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#else
    atomic_signal_fence(memory_order_seq_cst);
#endif
}

static void sleep_us(unsigned us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    if (!p) die("out of memory (%zu x %zu bytes)", n, size);
    return p;
}

/* Waits for a post on s, at most WAIT_S seconds. Returns 0 or -ETIMEDOUT. */
static int sem_wait_bounded(sem_t *s)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += WAIT_S;
    for (;;) {
        if (sem_timedwait(s, &dl) == 0) return 0;
        if (errno == ETIMEDOUT) return -ETIMEDOUT;
        if (errno != EINTR) die("sem_timedwait: %s", strerror(errno));
    }
}

static void pin_self(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    CHECK_PT(pthread_setaffinity_np(pthread_self(), sizeof(set), &set));
}

static size_t rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) die("/proc/self/statm: %s", strerror(errno));
    unsigned long size, resident;
    int got = fscanf(f, "%lu %lu", &size, &resident);
    fclose(f);
    if (got != 2) die("/proc/self/statm: unexpected format");
    return (size_t)resident * (size_t)sysconf(_SC_PAGESIZE);
}

/* --- series of repetitions ----------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of n samples (sorts them), in microseconds. */
static double percentile_us(uint64_t *ns, size_t n, unsigned pct)
{
    qsort(ns, n, sizeof(*ns), cmp_u64);
    size_t rank = (n * pct + 99) / 100;
    return (double)ns[rank ? rank - 1 : 0] / 1e3;
}

/* --- what the runs share with the processes ------------------------------------------ */

/* One send run: the sender's fields are touched by the sender reactor only, the receiver's
 * by the receiver's reactor only, each group on its own cache lines so that the cross-core
 * case measures the runtime, not false sharing in the benchmark. Main reads them after
 * `done`. */
typedef struct send_run {
    ch_node *node;
    unsigned sender_core;
    const char *id; /* the receiver */
    size_t id_len;
    uint64_t warm;  /* untimed messages first: caches, pages and queues warm up */
    uint64_t total; /* warm + timed */
    size_t chunk;
    alignas(64) uint64_t sent;         /* sender: messages queued so far */
    uint64_t start_ns;                 /* sender: when the first timed message left */
    uint64_t eagain;                   /* sender: -EAGAIN answers */
    uint64_t reposts;                  /* sender: chunks */
    alignas(64) _Atomic uint64_t seen; /* receiver: messages handled */
    uint64_t disorder;                 /* receiver: messages out of sequence */
    uint64_t end_ns;                   /* receiver: when the last one arrived */
    alignas(64) _Atomic int error;     /* first error of either side */
    sem_t done;
} send_run;

/* One call run: a closed loop, one call in flight, driven by a single thread at a time. */
typedef struct call_run {
    ch_node *node;
    const char *id; /* the echo process */
    size_t id_len;
    size_t warm, count; /* untimed, then timed calls */
    size_t answered;
    uint64_t t0;   /* when the call in flight left */
    uint64_t *lat; /* count round trips, ns */
    _Atomic int error;
    sem_t done;
} call_run;

typedef struct bench_ctx {
    send_run send;
    call_run call;
    char rx_id[2][32];  /* a counter process on SENDER_CORE and one on OTHER_CORE */
    char echo_id[32];   /* on OTHER_CORE */
    char driver_id[32]; /* on SENDER_CORE */
} bench_ctx;

/* Records the first error and wakes main, which reports it. */
static void fail_once(_Atomic int *slot, sem_t *done, int rc)
{
    int none = 0;
    if (atomic_compare_exchange_strong(slot, &none, rc)) sem_post(done);
}

/* --- process types ------------------------------------------------------------------- */

/* Hot path: counts casts and checks that they arrive in the order sent. One writer, so a
 * plain load and store of the atomic, no locked add. */
static int counter_handle(ch_proc *p, const ch_msg *m)
{
    send_run *s = ch_proc_type_ud(p);
    if (m->kind != CH_MSG_CAST || m->len != MSG_BYTES) return CH_CONTINUE;
    uint64_t seq;
    memcpy(&seq, m->data, sizeof(seq));
    uint64_t seen = atomic_load_explicit(&s->seen, memory_order_relaxed);
    if (seq != seen) s->disorder++;
    atomic_store_explicit(&s->seen, seen + 1, memory_order_relaxed);
    if (seen + 1 == s->total) {
        s->end_ns = now_ns();
        sem_post(&s->done);
    }
    return CH_CONTINUE;
}

/* Answers every call with its own request. A failed reply makes the call fail visibly. */
static int echo_handle(ch_proc *p, const ch_msg *m)
{
    if (m->kind != CH_MSG_CALL) return CH_CONTINUE;
    int rc = ch_reply(p, m, m->data, m->len);
    return rc < 0 ? rc : CH_CONTINUE;
}

/* Takes the answer to the call in flight. Returns true when another call should follow. */
static bool call_answered(call_run *c, int status, size_t len)
{
    uint64_t rtt = now_ns() - c->t0;
    if (status >= 0 && len != MSG_BYTES) status = -EPROTO;
    if (status < 0) {
        fail_once(&c->error, &c->done, status);
        return false;
    }
    if (c->answered >= c->warm) c->lat[c->answered - c->warm] = rtt;
    if (++c->answered < c->warm + c->count) return true;
    sem_post(&c->done);
    return false;
}

/* Driver of the ch_proc_call run: a cast starts the loop, each reply issues the next call. */
static int driver_handle(ch_proc *p, const ch_msg *m)
{
    call_run *c = ch_proc_type_ud(p);
    if (m->kind == CH_MSG_REPLY) {
        if (!call_answered(c, m->status, m->len)) return CH_CONTINUE;
    } else if (m->kind != CH_MSG_CAST) {
        return CH_CONTINUE;
    }
    static const uint8_t req[MSG_BYTES];
    c->t0 = now_ns();
    int rc = ch_proc_call(p, c->id, c->id_len, req, sizeof(req), 0, c->answered);
    if (rc < 0) fail_once(&c->error, &c->done, rc);
    return CH_CONTINUE;
}

static void register_types(ch_node *n, bench_ctx *b)
{
    const ch_process_type types[] = {
        {.name = "empty"}, /* default callbacks, empty state */
        {.name = "counter", .handle = counter_handle, .ud = b ? &b->send : NULL},
        {.name = "echo", .handle = echo_handle},
        {.name = "driver", .handle = driver_handle, .ud = b ? &b->call : NULL},
    };
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        CHECK(ch_node_type_register(n, &types[i]));
}

/* --- nodes --------------------------------------------------------------------------- */

static ch_node *node_new(bench_ctx *b)
{
    ch_node_config cfg;
    ch_node_config_init(&cfg);
    cfg.name = "bench";
    ch_node *n;
    CHECK(ch_node_create(&cfg, &n));
    register_types(n, b);
    CHECK(ch_node_start(n));
    return n;
}

static void node_free(ch_node *n)
{
    CHECK(ch_node_stop(n));
    ch_node_destroy(n);
}

/* Writes into out the first "<prefix>-<k>" whose owner core is `core`. */
static void id_on_core(ch_node *n, const char *prefix, unsigned core, char out[32])
{
    for (unsigned k = 0; k < 100000; k++) {
        int len = snprintf(out, 32, "%s-%u", prefix, k);
        int at = ch_node_core_of(n, out, (size_t)len);
        CHECK(at);
        if ((unsigned)at == core) return;
    }
    die("no id of prefix %s maps to core %u", prefix, core);
}

/* Blocking start of one child per id, every one must start. */
static void start_named(ch_node *n, const char *type, const char *const *ids, size_t count)
{
    ch_child_spec specs[8];
    int results[8];
    if (count > 8) die("start_named: too many children");
    for (size_t i = 0; i < count; i++)
        specs[i] = (ch_child_spec){.id = ids[i], .id_len = CH_ID_CSTR, .type = type};
    int rc = ch_node_children_start(n, specs, count, NULL, results);
    for (size_t i = 0; rc == CH_EPARTIAL && i < count; i++)
        if (results[i] < 0) die("start %s: %s", ids[i], ch_strerror(results[i]));
    CHECK(rc);
}

static void post_retry(ch_node *n, unsigned core, void (*fn)(ch_node *, void *), void *ud)
{
    int rc;
    while ((rc = ch_node_post(n, core, fn, ud)) == -EAGAIN)
        sleep_us(50);
    CHECK(rc);
}

static void send_retry(ch_node *n, const char *id, const void *data, size_t len)
{
    int rc;
    while ((rc = ch_send(n, id, CH_ID_CSTR, data, len)) == -EAGAIN)
        sleep_us(50);
    CHECK(rc);
}

/* --- 1 and 2: start rate and memory per process -------------------------------------- */

/* Completions of asynchronous start batches, signalled from the reactors. */
typedef struct start_track {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t done;      /* batches completed */
    size_t failed;    /* children whose result was not 0 */
    int first_error;  /* result of the first failed child */
    uint64_t last_ns; /* when the latest batch completed */
} start_track;

static void start_done(void *ud, const int *results, size_t count)
{
    start_track *t = ud;
    size_t bad = 0;
    int first = 0;
    for (size_t i = 0; i < count; i++) {
        if (!results[i]) continue;
        if (!bad++) first = results[i];
    }
    uint64_t now = now_ns();
    CHECK_PT(pthread_mutex_lock(&t->mu));
    t->done++;
    t->failed += bad;
    if (!t->first_error) t->first_error = first;
    t->last_ns = now;
    CHECK_PT(pthread_cond_signal(&t->cv));
    CHECK_PT(pthread_mutex_unlock(&t->mu));
}

/* Blocks until at least `target` batches completed. */
static void track_wait(start_track *t, size_t target)
{
    struct timespec dl;
    clock_gettime(CLOCK_REALTIME, &dl);
    dl.tv_sec += WAIT_S;
    CHECK_PT(pthread_mutex_lock(&t->mu));
    while (t->done < target) {
        int rc = pthread_cond_timedwait(&t->cv, &t->mu, &dl);
        if (rc == ETIMEDOUT) die("start: only %zu of %zu batches completed", t->done, target);
        CHECK_PT(rc);
    }
    CHECK_PT(pthread_mutex_unlock(&t->mu));
}

/* count ids of ID_BYTES each, back to back: the prefix then the index in 7 hex digits. */
static char *make_ids(char prefix, size_t count)
{
    static const char hex[] = "0123456789abcdef";
    char *ids = xcalloc(count, ID_BYTES);
    for (size_t i = 0; i < count; i++) {
        char *id = ids + i * ID_BYTES;
        id[0] = prefix;
        for (size_t d = ID_BYTES - 1, v = i; d > 0; d--, v >>= 4)
            id[d] = hex[v & 15];
    }
    return ids;
}

static void fill_specs(ch_child_spec *specs, const char *ids, size_t count)
{
    for (size_t i = 0; i < count; i++)
        specs[i] = (ch_child_spec){.id = ids + i * ID_BYTES, .id_len = ID_BYTES, .type = "empty"};
}

/* Posts one asynchronous batch; a full inbox makes us wait for the reactors, not fail. */
static void submit_batch(ch_node *n, const ch_child_spec *specs, size_t count, start_track *t,
                         size_t issued)
{
    const ch_batch_opts opts = {.on_done = start_done, .ud = t};
    int rc;
    while ((rc = ch_node_children_start(n, specs, count, &opts, NULL)) == -EAGAIN) {
        if (t->done < issued)
            track_wait(t, t->done + 1);
        else
            sleep_us(50);
    }
    CHECK(rc);
}

/* Starts procs children in batches, START_WINDOW batches in flight, and waits for all. */
static void start_all(ch_node *n, const char *ids, size_t procs, size_t batch, start_track *t)
{
    ch_child_spec *specs = xcalloc(batch, sizeof(*specs));
    size_t issued = 0;
    for (size_t first = 0; first < procs; first += batch) {
        size_t count = procs - first < batch ? procs - first : batch;
        fill_specs(specs, ids + first * ID_BYTES, count); /* specs are copied by the call */
        if (issued >= START_WINDOW) track_wait(t, issued - START_WINDOW + 1);
        submit_batch(n, specs, count, t, issued);
        issued++;
    }
    track_wait(t, issued);
    free(specs);
    if (t->failed)
        die("start: %zu children failed, first: %s", t->failed, ch_strerror(t->first_error));
}

/* Starts and stops one batch, so that the measured run finds queues and pools warm. */
static void warm_up(ch_node *n, const char *ids, size_t count)
{
    ch_child_spec *specs = xcalloc(count, sizeof(*specs));
    const char **stop_ids = xcalloc(count, sizeof(*stop_ids));
    size_t *lens = xcalloc(count, sizeof(*lens));
    int *results = xcalloc(count, sizeof(*results));
    fill_specs(specs, ids, count);
    CHECK(ch_node_children_start(n, specs, count, NULL, results));
    for (size_t i = 0; i < count; i++) {
        stop_ids[i] = ids + i * ID_BYTES;
        lens[i] = ID_BYTES;
    }
    CHECK(ch_node_children_stop(n, stop_ids, lens, count, NULL, results));
    free(results);
    free(lens);
    free(stop_ids);
    free(specs);
}

static void expect_processes(ch_node *n, uint64_t want)
{
    ch_node_stats st;
    CHECK(ch_node_stats_get(n, &st));
    if (st.processes != want)
        fprintf(stderr, "warning: node reports %" PRIu64 " processes, expected %" PRIu64 "\n",
                st.processes, want);
}

typedef struct results {
    series start_rate;  /* processes/s, whole node */
    series mem;         /* bytes per process */
    series send_same;   /* msgs/s */
    series send_cross;  /* msgs/s */
    series ring;        /* msgs/s */
    series ring_big;    /* msgs/s, records as large as ch_send's */
    series cross_ratio; /* send_cross / ring, rep by rep */
    series call_p50, call_p99, async_p50, async_p99, pcall_p50, pcall_p99; /* µs */
    unsigned cores;
    size_t rec_bytes; /* ring bytes of one ch_send record in the cross-core case */
    uint64_t eagain[2], reposts[2], sent[2]; /* summed over reps: same core, cross core */
} results;

/* What one start repetition measured. */
typedef struct start_sample {
    double rate; /* processes/s, whole node */
    double mem;  /* RSS bytes per process */
    unsigned cores;
} start_sample;

/* One repetition on a fresh node: the time to start every child, and the RSS they add. */
static start_sample start_rep(const bench_opts *o, const char *ids, const char *warm_ids)
{
    ch_node *n = node_new(NULL);
    start_sample s = {.cores = ch_node_cores(n)};
    warm_up(n, warm_ids, o->batch < o->procs ? o->batch : o->procs);
    start_track t = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER};
    size_t rss0 = rss_bytes();
    uint64_t t0 = now_ns();
    start_all(n, ids, o->procs, o->batch, &t);
    size_t rss1 = rss_bytes();
    expect_processes(n, o->procs);
    s.rate = (double)o->procs * 1e9 / (double)(t.last_ns - t0);
    s.mem = ((double)rss1 - (double)rss0) / (double)o->procs;
    node_free(n);
    return s;
}

/*
 * Runs start_rep in a child process so that every repetition starts from a pristine heap:
 * in one process the blocks freed by the previous node are reused and hide the memory a
 * new node takes. No thread is alive at this point, so fork is safe.
 */
static start_sample start_rep_forked(const bench_opts *o, const char *ids, const char *warm_ids)
{
    int fds[2];
    fflush(stdout); /* or a child that dies would print our buffered lines again */
    if (pipe(fds) < 0) die("pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) die("fork: %s", strerror(errno));
    if (pid == 0) {
        close(fds[0]);
        start_sample s = start_rep(o, ids, warm_ids);
        _exit(write(fds[1], &s, sizeof(s)) == (ssize_t)sizeof(s) ? 0 : 1);
    }
    close(fds[1]);
    start_sample s;
    ssize_t got;
    while ((got = read(fds[0], &s, sizeof(s))) < 0 && errno == EINTR) {
    }
    close(fds[0]);
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) die("waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) || got != (ssize_t)sizeof(s))
        die("start repetition failed (child status 0x%x)", status);
    return s;
}

static void bench_start(const bench_opts *o, results *r)
{
    char *ids = make_ids('p', o->procs);
    char *warm_ids = make_ids('w', o->batch);
    for (unsigned i = 0; i < o->reps; i++) {
        start_sample s = start_rep_forked(o, ids, warm_ids);
        series_add(&r->start_rate, s.rate);
        series_add(&r->mem, s.mem);
        r->cores = s.cores;
        if (o->verbose)
            printf("start rep %u: %.3f M/s, %.1f B/process\n", i + 1, s.rate / 1e6, s.mem);
    }
    free(warm_ids);
    free(ids);
}

/* --- 3a: the raw SPSC ring baseline -------------------------------------------------- */

typedef struct ring_run {
    ch_mbox ring;
    size_t rec_bytes;  /* reserved per record, ring header included */
    uint64_t warm;     /* untimed records first */
    uint64_t total;    /* warm + timed */
    _Atomic int ready; /* both threads pinned and waiting */
    uint64_t t_start;  /* producer: first timed record */
    uint64_t t_end;    /* consumer: last record */
    uint64_t disorder; /* consumer */
} ring_run;

static void ring_rendezvous(ring_run *rr)
{
    atomic_fetch_add(&rr->ready, 1);
    while (atomic_load(&rr->ready) < 2)
        cpu_relax();
}

/* Hot path: reserve and write each record, publish every RING_PUBLISH. */
static void *ring_producer(void *ud)
{
    ring_run *rr = ud;
    pin_self(SENDER_CORE);
    ring_rendezvous(rr);
    for (uint64_t i = 0; i < rr->total; i++) {
        if (i == rr->warm) rr->t_start = now_ns();
        uint8_t *rec;
        while (!(rec = ch_mbox_reserve(&rr->ring, rr->rec_bytes))) {
            ch_mbox_publish(&rr->ring); /* full: make sure the consumer sees it all */
            cpu_relax();
        }
        uint8_t msg[MSG_BYTES] = {0};
        memcpy(msg, &i, sizeof(i));
        memcpy(rec + 4, msg, MSG_BYTES);
        if (i % RING_PUBLISH == RING_PUBLISH - 1) ch_mbox_publish(&rr->ring);
    }
    ch_mbox_publish(&rr->ring);
    return NULL;
}

/* Hot path: peek/next each record, release every RING_PUBLISH or when the ring runs dry. */
static void *ring_consumer(void *ud)
{
    ring_run *rr = ud;
    pin_self(OTHER_CORE);
    ring_rendezvous(rr);
    uint64_t seen = 0;
    while (seen < rr->total) {
        size_t size;
        uint8_t *rec = ch_mbox_peek(&rr->ring, &size);
        if (!rec) {
            ch_mbox_release(&rr->ring);
            cpu_relax();
            continue;
        }
        uint64_t seq;
        memcpy(&seq, rec + 4, sizeof(seq));
        rr->disorder += seq != seen;
        ch_mbox_next(&rr->ring);
        if (++seen % RING_PUBLISH == 0) ch_mbox_release(&rr->ring);
    }
    ch_mbox_release(&rr->ring);
    rr->t_end = now_ns();
    return NULL;
}

static double ring_rep(size_t msgs, size_t ring_bytes, size_t rec_bytes)
{
    ring_run rr = {
        .rec_bytes = rec_bytes, .warm = msgs / WARM_DIV, .total = msgs + msgs / WARM_DIV};
    CHECK(ch_mbox_init(&rr.ring, ring_bytes));
    pthread_t prod, cons;
    CHECK_PT(pthread_create(&cons, NULL, ring_consumer, &rr));
    CHECK_PT(pthread_create(&prod, NULL, ring_producer, &rr));
    CHECK_PT(pthread_join(prod, NULL));
    CHECK_PT(pthread_join(cons, NULL));
    ch_mbox_destroy(&rr.ring);
    if (rr.disorder) die("ring baseline: %" PRIu64 " records out of order", rr.disorder);
    return (double)msgs * 1e9 / (double)(rr.t_end - rr.t_start);
}

/* --- 3b: ch_send from a reactor ------------------------------------------------------ */

static int send_one(send_run *s)
{
    uint8_t msg[MSG_BYTES] = {0};
    memcpy(msg, &s->sent, sizeof(s->sent));
    return ch_send(s->node, s->id, s->id_len, msg, sizeof(msg));
}

/*
 * Runs on the sender's reactor: sends one chunk, then re-posts itself. While a posted
 * function runs its reactor does nothing else, so it must return now and then to let the
 * reactor drain its local queue (same core) and flush its outbound rings (cross core). A
 * full mailbox gets SEND_SPINS quick retries, then the same treatment.
 */
static void send_chunk(ch_node *n, void *ud)
{
    send_run *s = ud;
    uint64_t end = s->sent + s->chunk < s->total ? s->sent + s->chunk : s->total;
    unsigned spins = 0;
    while (s->sent < end) {
        if (s->sent == s->warm && !s->start_ns) s->start_ns = now_ns();
        int rc = send_one(s);
        if (rc == 0) {
            s->sent++;
            spins = 0;
            continue;
        }
        if (rc != -EAGAIN) {
            fail_once(&s->error, &s->done, rc);
            return;
        }
        s->eagain++;
        if (++spins > SEND_SPINS) break;
        cpu_relax();
    }
    if (s->sent == s->total) return;
    s->reposts++;
    int rc = ch_node_post(n, s->sender_core, send_chunk, s);
    if (rc < 0) fail_once(&s->error, &s->done, rc);
}

/* One run of msgs messages to the receiver on rx_core; returns msgs/s. */
static double send_rep(bench_ctx *b, ch_node *n, unsigned rx_core, const bench_opts *o, results *r)
{
    send_run *s = &b->send;
    s->node = n;
    s->sender_core = SENDER_CORE;
    s->id = b->rx_id[rx_core == SENDER_CORE ? 0 : 1];
    s->id_len = strlen(s->id);
    s->warm = o->msgs / WARM_DIV;
    s->total = s->warm + o->msgs;
    s->chunk = o->chunk;
    s->sent = s->start_ns = s->eagain = s->reposts = s->disorder = s->end_ns = 0;
    atomic_store(&s->seen, 0);
    atomic_store(&s->error, 0);
    post_retry(n, SENDER_CORE, send_chunk, s);
    if (sem_wait_bounded(&s->done) < 0)
        die("send to core %u: receiver saw %" PRIu64 " of %" PRIu64 " messages in %d s", rx_core,
            atomic_load(&s->seen), s->total, WAIT_S);
    if (atomic_load(&s->error)) die("ch_send: %s", ch_strerror(atomic_load(&s->error)));
    if (s->disorder) die("send: %" PRIu64 " messages out of order", s->disorder);
    unsigned k = rx_core == SENDER_CORE ? 0 : 1;
    r->eagain[k] += s->eagain;
    r->reposts[k] += s->reposts;
    r->sent[k] += s->total;
    return (double)o->msgs * 1e9 / (double)(s->end_ns - s->start_ns);
}

/* --- 4: call round trips ------------------------------------------------------------- */

static void call_reset(bench_ctx *b, ch_node *n, const bench_opts *o, uint64_t *lat)
{
    call_run *c = &b->call;
    c->node = n;
    c->id = b->echo_id;
    c->id_len = strlen(b->echo_id);
    c->warm = o->calls / 10 + 1;
    c->count = o->calls;
    c->answered = 0;
    c->lat = lat;
    atomic_store(&c->error, 0);
}

static void call_finish(call_run *c, const char *what, series *p50, series *p99)
{
    if (sem_wait_bounded(&c->done) < 0)
        die("%s: %zu of %zu calls answered in %d s", what, c->answered, c->warm + c->count, WAIT_S);
    if (atomic_load(&c->error)) die("%s: %s", what, ch_strerror(atomic_load(&c->error)));
    series_add(p50, percentile_us(c->lat, c->count, 50));
    series_add(p99, percentile_us(c->lat, c->count, 99));
}

/* ch_call from this (foreign, unpinned) thread to the echo process. */
static void call_foreign_rep(bench_ctx *b, ch_node *n, const bench_opts *o, uint64_t *lat,
                             results *r)
{
    static const uint8_t req[MSG_BYTES];
    uint8_t reply[64];
    size_t warm = o->calls / 10 + 1;
    for (size_t i = 0; i < warm + o->calls; i++) {
        size_t len;
        uint64_t t0 = now_ns();
        CHECK(ch_call(n, b->echo_id, CH_ID_CSTR, req, sizeof(req), reply, sizeof(reply), &len, 0));
        uint64_t rtt = now_ns() - t0;
        if (len != MSG_BYTES) die("ch_call: reply of %zu bytes, expected %d", len, MSG_BYTES);
        if (i >= warm) lat[i - warm] = rtt;
    }
    series_add(&r->call_p50, percentile_us(lat, o->calls, 50));
    series_add(&r->call_p99, percentile_us(lat, o->calls, 99));
}

static void async_issue(call_run *c);

static void async_reply(void *ud, int status, const void *reply, size_t len)
{
    call_run *c = ud;
    if (call_answered(c, status, len)) async_issue(c);
}

static void async_issue(call_run *c)
{
    static const uint8_t req[MSG_BYTES];
    c->t0 = now_ns();
    int rc = ch_call_async(c->node, c->id, c->id_len, req, sizeof(req), 0, async_reply, c);
    if (rc < 0) fail_once(&c->error, &c->done, rc);
}

static void async_start(ch_node *n, void *ud)
{
    async_issue(ud);
}

/* ch_call_async from a function posted to SENDER_CORE to the echo process on OTHER_CORE. */
static void call_async_rep(bench_ctx *b, ch_node *n, const bench_opts *o, uint64_t *lat, results *r)
{
    call_reset(b, n, o, lat);
    post_retry(n, SENDER_CORE, async_start, &b->call);
    call_finish(&b->call, "ch_call_async", &r->async_p50, &r->async_p99);
}

/* ch_proc_call from the driver process on SENDER_CORE to the echo process on OTHER_CORE. */
static void proc_call_rep(bench_ctx *b, ch_node *n, const bench_opts *o, uint64_t *lat, results *r)
{
    call_reset(b, n, o, lat);
    send_retry(n, b->driver_id, "go", 2);
    call_finish(&b->call, "ch_proc_call", &r->pcall_p50, &r->pcall_p99);
}

/* --- 3 and 4 on one node ------------------------------------------------------------- */

static void place_processes(bench_ctx *b, ch_node *n)
{
    id_on_core(n, "rx", SENDER_CORE, b->rx_id[0]);
    id_on_core(n, "rx", OTHER_CORE, b->rx_id[1]);
    id_on_core(n, "echo", OTHER_CORE, b->echo_id);
    id_on_core(n, "driver", SENDER_CORE, b->driver_id);
    start_named(n, "counter", (const char *const[]){b->rx_id[0], b->rx_id[1]}, 2);
    start_named(n, "echo", (const char *const[]){b->echo_id}, 1);
    start_named(n, "driver", (const char *const[]){b->driver_id}, 1);
}

static void check_node_stats(ch_node *n)
{
    ch_node_stats st;
    CHECK(ch_node_stats_get(n, &st));
    if (st.dead_letters || st.crashes)
        fprintf(stderr, "warning: %" PRIu64 " dead letters, %" PRIu64 " crashes\n", st.dead_letters,
                st.crashes);
}

static void print_node_rep(const results *r, unsigned i)
{
    printf("node rep %u: ring %.2f, ring %zu B %.2f, cross %.2f, same %.2f M msg/s; call p50/p99 "
           "%.2f/%.2f, async %.2f/%.2f, proc %.2f/%.2f us\n",
           i + 1, r->ring.v[i] / 1e6, r->rec_bytes, r->ring_big.v[i] / 1e6,
           r->send_cross.v[i] / 1e6, r->send_same.v[i] / 1e6, r->call_p50.v[i], r->call_p99.v[i],
           r->async_p50.v[i], r->async_p99.v[i], r->pcall_p50.v[i], r->pcall_p99.v[i]);
    fflush(stdout);
}

/* Repetitions interleave the cases, baseline included, so that a noisy neighbour on this
 * shared machine hits them all alike. The node's reactors sleep while the baseline runs
 * (nothing is sent to them), so it runs on the same two CPUs undisturbed. */
static void bench_node(const bench_opts *o, results *r)
{
    bench_ctx *b = aligned_alloc(64, sizeof(*b)); /* its cache-line groups must hold */
    if (!b) die("out of memory");
    memset(b, 0, sizeof(*b));
    if (sem_init(&b->send.done, 0, 0) || sem_init(&b->call.done, 0, 0))
        die("sem_init: %s", strerror(errno));
    uint64_t *lat = xcalloc(o->calls, sizeof(*lat));
    ch_node_config cfg;
    ch_node_config_init(&cfg); /* the baseline ring has the size of the node's mailboxes */
    ch_node *n = node_new(b);
    place_processes(b, n);
    /* A diagnostic second baseline: the raw ring moving records the size of the ones
     * ch_send writes (header, id, payload), which tells the cost of the record format
     * apart from the cost of the code around it. */
    r->rec_bytes = ch_rec_payload_off(strlen(b->rx_id[1]), MSG_BYTES) + MSG_BYTES;
    for (unsigned i = 0; i < o->reps; i++) {
        double ring = ring_rep(o->msgs, cfg.ring_bytes, 4 + MSG_BYTES);
        series_add(&r->ring_big, ring_rep(o->msgs, cfg.ring_bytes, r->rec_bytes));
        double cross = send_rep(b, n, OTHER_CORE, o, r);
        series_add(&r->ring, ring);
        series_add(&r->send_cross, cross);
        series_add(&r->cross_ratio, cross / ring);
        series_add(&r->send_same, send_rep(b, n, SENDER_CORE, o, r));
        call_foreign_rep(b, n, o, lat, r);
        call_async_rep(b, n, o, lat, r);
        proc_call_rep(b, n, o, lat, r);
        if (o->verbose) print_node_rep(r, i);
    }
    check_node_stats(n);
    node_free(n);
    free(lat);
    sem_destroy(&b->call.done);
    sem_destroy(&b->send.done);
    free(b);
}

/* --- report -------------------------------------------------------------------------- */

static void print_header(const bench_opts *o)
{
    char model[128], load[64];
    struct utsname u;
    ch_node_config cfg;
    cpu_model(model, sizeof(model));
    load_avg(load, sizeof(load));
    if (uname(&u) < 0) die("uname: %s", strerror(errno));
    ch_node_config_init(&cfg);
    printf("# bench_runtime: corehub %d.%d.%d runtime foundation\n", COREHUB_VERSION_MAJOR,
           COREHUB_VERSION_MINOR, COREHUB_VERSION_PATCH);
    printf("machine: nproc %ld, cpu \"%s\", kernel %s %s, load %s\n", sysconf(_SC_NPROCESSORS_ONLN),
           model, u.sysname, u.release, load);
    long cores = cfg.cores ? (long)cfg.cores : sysconf(_SC_NPROCESSORS_ONLN);
    printf("node: cores %ld, ring %zu B, batch %u, spin %u us, pin %d\n", cores, cfg.ring_bytes,
           cfg.batch, cfg.spin_us, cfg.pin);
    printf("params: reps %u, procs %zu (ids %d B, empty state), start batch %zu x %d in "
           "flight, msgs %zu x %d B, send chunk %zu, calls %zu%s\n\n",
           o->reps, o->procs, ID_BYTES, o->batch, START_WINDOW, o->msgs, MSG_BYTES, o->chunk,
           o->calls, o->quick ? " (quick)" : "");
}

/* One table row; values are divided by `scale` before printing. */
static void print_row(const char *metric, const series *s, double scale, const char *unit,
                      const char *target, const char *verdict)
{
    double med, lo, hi;
    series_stats(s, &med, &lo, &hi);
    printf("| %-38s | %9.3f | %9.3f | %9.3f | %-7s | %-12s | %-10s |\n", metric, med / scale,
           lo / scale, hi / scale, unit, target, verdict);
}

static void verdict(char *out, size_t cap, double ratio, bool ok)
{
    snprintf(out, cap, "%.2f %s", ratio, ok ? "ok" : "MISS");
}

static void print_throughput_rows(const results *r)
{
    char v[32];
    series per_core = r->start_rate;
    for (unsigned i = 0; i < per_core.n; i++)
        per_core.v[i] /= r->cores ? r->cores : 1;
    double rate = series_median(&per_core) / 1e6;
    print_row("local start rate, node", &r->start_rate, 1e6, "M/s", "-", "");
    verdict(v, sizeof(v), rate, rate >= 1.0);
    print_row("local start rate, per core", &per_core, 1e6, "M/s", ">= 1 M/s", v);
    double mem = series_median(&r->mem);
    verdict(v, sizeof(v), mem / 256, mem <= 256);
    print_row("memory per idle process", &r->mem, 1, "B", "<= 256 B", v);
    print_row("ch_send same core (reactor)", &r->send_same, 1e6, "M msg/s", "-", "");
    print_row("raw SPSC ring cross core (baseline)", &r->ring, 1e6, "M msg/s", "baseline", "1.00");
    double ratio = series_median(&r->send_cross) / series_median(&r->ring);
    verdict(v, sizeof(v), ratio, ratio >= 0.5);
    print_row("ch_send cross core (reactor)", &r->send_cross, 1e6, "M msg/s", ">= 0.5 ring", v);
    /* The same ratio rep by rep: each pair ran back to back, so it shrugs off the noise
     * that moves both figures of a repetition alike. */
    ratio = series_median(&r->cross_ratio);
    verdict(v, sizeof(v), ratio, ratio >= 0.5);
    print_row("ch_send cross / ring, per repetition", &r->cross_ratio, 1, "x", ">= 0.5", v);
    char metric[64];
    snprintf(metric, sizeof(metric), "raw ring, ch_send-sized records (%zu B)", r->rec_bytes);
    ratio = series_median(&r->send_cross) / series_median(&r->ring_big);
    snprintf(v, sizeof(v), "%.2f", ratio);
    print_row(metric, &r->ring_big, 1e6, "M msg/s", "diagnostic", v);
}

static void print_latency_rows(const results *r)
{
    print_row("ch_call foreign thread p50", &r->call_p50, 1, "us", "-", "");
    print_row("ch_call foreign thread p99", &r->call_p99, 1, "us", "-", "");
    print_row("ch_call_async reactor->other core p50", &r->async_p50, 1, "us", "-", "");
    print_row("ch_call_async reactor->other core p99", &r->async_p99, 1, "us", "-", "");
    print_row("ch_proc_call process->other core p50", &r->pcall_p50, 1, "us", "-", "");
    print_row("ch_proc_call process->other core p99", &r->pcall_p99, 1, "us", "-", "");
}

static void print_table(const results *r)
{
    printf("| %-38s | %9s | %9s | %9s | %-7s | %-12s | %-10s |\n", "metric", "median", "min", "max",
           "unit", "target", "ratio/ok");
    printf("|%.40s|%.11s|%.11s|%.11s|%.9s|%.14s|%.12s|\n",
           "----------------------------------------", "-----------", "-----------", "-----------",
           "---------", "--------------", "------------");
    print_throughput_rows(r);
    print_latency_rows(r);
    putchar('\n');
    for (unsigned k = 0; k < 2; k++) {
        double per_k = 1e3 / (double)(r->sent[k] ? r->sent[k] : 1);
        printf("%s sender: %.1f EAGAIN and %.1f re-posts per 1000 messages\n",
               k ? "cross-core" : "same-core", per_k * (double)r->eagain[k],
               per_k * (double)r->reposts[k]);
    }
    char load[64];
    load_avg(load, sizeof(load));
    printf("load average at the end: %s (a shared machine: compare ratios, not absolutes)\n", load);
}

int main(int argc, char **argv)
{
    bench_opts o;
    parse_opts(argc, argv, &o);
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
        fprintf(stderr, "bench_runtime: needs at least 2 CPUs\n");
        return 77; /* skipped, as a test would say */
    }
    if (!getenv("CH_LOG")) ch_log_level_set(CH_LOG_WARN); /* keep the report readable */
    print_header(&o);
    fflush(stdout);
    results *r = xcalloc(1, sizeof(*r));
    bench_start(&o, r);
    bench_node(&o, r);
    print_table(r);
    free(r);
    return 0;
}
