/*
 * bench/bench_pipe.h - the raw handover pipelines that design §6 states its handover targets
 * against ("the better of the raw and the zstd-1 pipeline over the same bytes"), shared by
 * bench_handover_pipe (which measures the migration modules against them) and
 * bench_migration (which measures whole migrations between two nodes against them):
 *   - the states: JSON-like text with repeated keys and pseudo-random numbers (fixed seed)
 *     that zstd-1 shrinks about 3-4x, in a pool of distinct states reused past POOL_BYTES;
 *   - the baseline: a sender thread serializes states (memcpy, id + length + bytes, packed)
 *     into batches, optionally compresses each batch with one reused ZSTD_CCtx (level 1),
 *     sends it over a TCP socket; a receiver thread decompresses with one reused ZSTD_DCtx
 *     and copies every state out to a slot of its own.
 * Header-only, like bench_common.h: include that one first (it dies on errors with the
 * program's BENCH_NAME). Functions are static inline so that a program may leave some
 * unused.
 */
#ifndef CH_BENCH_PIPE_H
#define CH_BENCH_PIPE_H

#include "bench_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#define ID_LEN     12          /* "p-0000000042": ids of the baseline's states */
#define POOL_BYTES (64u << 20) /* distinct source states, reused past this */
#define DST_BYTES  (64u << 20) /* receiver's destination slots, reused past this */
#define BASE_HDR   8           /* baseline frame: u32 raw length, u32 wire length */
#define SENDER_CPU 0
#define RECVER_CPU 1

/* --- small helpers ------------------------------------------------------------------- */

static inline void *xalloc(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) & ~(size_t)63);
    if (!p) die("out of memory (%zu bytes)", n);
    return p;
}

static inline uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static inline void pin_self(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    CHECK_PT(pthread_setaffinity_np(pthread_self(), sizeof(set), &set));
}

static inline void put32(uint8_t *p, uint32_t v)
{
    memcpy(p, &v, 4); /* the benchmark runs both ends on one machine */
}

static inline uint32_t get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* --- the states ---------------------------------------------------------------------- */

typedef struct dataset {
    size_t size;   /* bytes per state */
    size_t n;      /* states per run */
    uint8_t *pool; /* source states, at malloc-like (16-byte) strides */
    size_t stride, pool_states;
    uint8_t *dst; /* receiver's slots, 64-byte aligned as a fresh state would be */
    size_t dst_stride, dst_slots;
    char *ids; /* n ids of ID_LEN bytes */
} dataset;

/* One JSON-like object: the keys repeat, the numbers do not. */
static inline int json_item(char *out, size_t cap, uint64_t *rng)
{
    uint64_t a = rng_next(rng), b = rng_next(rng), c = rng_next(rng);
    return snprintf(out, cap,
                    "{\"id\":%u,\"name\":\"user_%u\",\"balance\":%u.%02u,\"visits\":%u,"
                    "\"active\":%s,\"tags\":[\"t%u\",\"t%u\"],\"session\":\"%016llx%06x\","
                    "\"updated\":17%08u},",
                    (unsigned)a, (unsigned)(a >> 40) % 100000, (unsigned)(b % 100000),
                    (unsigned)(b >> 20) % 100, (unsigned)(b >> 28) % 1000,
                    (b >> 40) & 1 ? "true" : "false", (unsigned)(b >> 44) % 16,
                    (unsigned)(b >> 50) % 16, (unsigned long long)c, (unsigned)(a ^ b) & 0xffffff,
                    (unsigned)(a >> 8) % 100000000);
}

static inline void fill_json(uint8_t *p, size_t len, uint64_t seed)
{
    char item[256];
    size_t at = 0;
    while (at < len) {
        int n = json_item(item, sizeof(item), &seed);
        size_t take = (size_t)n < len - at ? (size_t)n : len - at;
        memcpy(p + at, item, take);
        at += take;
    }
}

/* States of `size` bytes for runs of up to n states. The pool's bytes depend on the size
 * only: two datasets of one size agree on every state they both hold. */
static inline void dataset_init(dataset *d, size_t size, size_t n)
{
    d->size = size;
    d->n = n;
    d->stride = (size + 15) & ~(size_t)15;
    d->pool_states = POOL_BYTES / d->stride < n ? POOL_BYTES / d->stride : n;
    d->pool = xalloc(d->pool_states * d->stride);
    fill_json(d->pool, d->pool_states * d->stride, 0x9e3779b97f4a7c15ull ^ size);
    d->dst_stride = (size + 63) & ~(size_t)63;
    d->dst_slots = DST_BYTES / d->dst_stride < n ? DST_BYTES / d->dst_stride : n;
    d->dst = xalloc(d->dst_slots * d->dst_stride);
    memset(d->dst, 0, d->dst_slots * d->dst_stride);
    d->ids = xalloc(n * ID_LEN + 1);
    for (size_t i = 0; i < n; i++) {
        char id[32];
        snprintf(id, sizeof(id), "p-%010u", (unsigned)(i % 1000000000u));
        memcpy(d->ids + i * ID_LEN, id, ID_LEN);
    }
}

static inline void dataset_free(dataset *d)
{
    free(d->pool);
    free(d->dst);
    free(d->ids);
}

static inline const uint8_t *ds_state(const dataset *d, size_t i)
{
    return d->pool + (i % d->pool_states) * d->stride;
}

static inline uint8_t *ds_dst(const dataset *d, size_t i)
{
    return d->dst + (i % d->dst_slots) * d->dst_stride;
}

static inline const char *ds_id(const dataset *d, size_t i)
{
    return d->ids + i * ID_LEN;
}

/* --- sockets ------------------------------------------------------------------------- */

static inline void tcp_pair(int *tx, int *rx)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof(a);
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 1) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &alen) < 0)
        die("listen on loopback: %s", strerror(errno));
    *tx = socket(AF_INET, SOCK_STREAM, 0);
    if (*tx < 0 || connect(*tx, (struct sockaddr *)&a, sizeof(a)) < 0)
        die("connect: %s", strerror(errno));
    *rx = accept(l, NULL, NULL);
    if (*rx < 0) die("accept: %s", strerror(errno));
    close(l);
}

static inline void writev_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) die("send: %s", strerror(errno));
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++, n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
}

static inline void send_all(int fd, const void *p, size_t len)
{
    struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
    writev_all(fd, &iov, 1);
}

/* Reads exactly len bytes. false on a clean end of stream before the first byte. */
static inline bool recv_all(int fd, void *p, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t r = recv(fd, (uint8_t *)p + got, len - got, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) die("recv: %s", strerror(errno));
        if (r == 0 && got == 0) return false;
        if (r == 0) die("recv: stream ended inside a frame");
        got += (size_t)r;
    }
    return true;
}

/* --- one run of one pipeline --------------------------------------------------------- */

typedef struct pipe_run {
    const dataset *d;
    size_t n;     /* states to move: the dataset's first n */
    size_t batch; /* batch capacity in bytes */
    bool zstd;    /* baseline: compress each batch with zstd-1 */
    int kind;     /* the including program's name for the pipeline */
    int fd_tx, fd_rx;
    pthread_barrier_t start;
    uint64_t t0, t1;         /* the sender's start, the receiver's end */
    uint64_t cpu_tx, cpu_rx; /* CPU time of each thread during the run */
    uint64_t wire_bytes;     /* headers and payloads sent */
    uint64_t batches, zbatches;
    size_t received; /* states copied out */
} pipe_run;

/* Baseline frame buffer: BASE_HDR bytes, then records. */
static inline size_t base_cap(const pipe_run *r)
{
    size_t rec = 1 + ID_LEN + 4 + r->d->size;
    return BASE_HDR + (rec > r->batch ? rec : r->batch);
}

static inline void base_flush(pipe_run *r, uint8_t *buf, size_t len, ZSTD_CCtx *cc, uint8_t *zbuf)
{
    uint8_t *frame = buf;
    size_t wire = len;
    if (cc) {
        wire = ZSTD_compress2(cc, zbuf + BASE_HDR, ZSTD_compressBound(len), buf + BASE_HDR, len);
        if (ZSTD_isError(wire)) die("ZSTD_compress2: %s", ZSTD_getErrorName(wire));
        frame = zbuf;
        r->zbatches++;
    }
    put32(frame, (uint32_t)len);
    put32(frame + 4, (uint32_t)wire);
    send_all(r->fd_tx, frame, BASE_HDR + wire);
    r->wire_bytes += BASE_HDR + wire;
    r->batches++;
}

/* The baseline's sender thread: serialize, (compress,) send; then shut the socket. */
static inline void *base_sender(void *arg)
{
    pipe_run *r = arg;
    const dataset *d = r->d;
    size_t cap = base_cap(r), rec = 1 + ID_LEN + 4 + d->size, len = 0;
    uint8_t *buf = xalloc(cap), *zbuf = NULL;
    ZSTD_CCtx *cc = NULL;
    if (r->zstd) {
        cc = ZSTD_createCCtx();
        zbuf = xalloc(BASE_HDR + ZSTD_compressBound(cap));
        if (!cc || ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1)))
            die("zstd context");
    }
    pin_self(SENDER_CPU);
    pthread_barrier_wait(&r->start);
    r->t0 = now_ns();
    uint64_t cpu0 = cpu_ns();
    for (size_t i = 0; i < r->n; i++) {
        if (len && BASE_HDR + len + rec > cap) {
            base_flush(r, buf, len, cc, zbuf);
            len = 0;
        }
        uint8_t *p = buf + BASE_HDR + len;
        p[0] = ID_LEN;
        memcpy(p + 1, ds_id(d, i), ID_LEN);
        put32(p + 1 + ID_LEN, (uint32_t)d->size);
        memcpy(p + 5 + ID_LEN, ds_state(d, i), d->size);
        len += rec;
    }
    if (len) base_flush(r, buf, len, cc, zbuf);
    shutdown(r->fd_tx, SHUT_WR);
    r->cpu_tx = cpu_ns() - cpu0;
    ZSTD_freeCCtx(cc);
    free(zbuf);
    free(buf);
    return NULL;
}

/* Copies every state of one baseline batch out; returns the next state's index. */
static inline size_t base_unpack(const dataset *d, const uint8_t *p, size_t len, size_t k)
{
    size_t pos = 0;
    while (pos < len) {
        if (len - pos < 5 + ID_LEN || p[pos] != ID_LEN) die("baseline: bad record");
        size_t sl = get32(p + pos + 1 + ID_LEN);
        if (sl > len - pos - 5 - ID_LEN || k >= d->n) die("baseline: bad record length");
        if (memcmp(p + pos + 1, ds_id(d, k), ID_LEN)) die("baseline: state %zu out of order", k);
        memcpy(ds_dst(d, k), p + pos + 5 + ID_LEN, sl);
        pos += 5 + ID_LEN + sl;
        k++;
    }
    return k;
}

/* The baseline's receiver thread: receive, (decompress,) copy every state out. */
static inline void *base_receiver(void *arg)
{
    pipe_run *r = arg;
    size_t cap = base_cap(r) - BASE_HDR;
    uint8_t hdr[BASE_HDR], *wire = xalloc(ZSTD_compressBound(cap)), *raw = xalloc(cap);
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    if (!dc) die("zstd context");
    pin_self(RECVER_CPU);
    pthread_barrier_wait(&r->start);
    uint64_t cpu0 = cpu_ns();
    size_t k = 0;
    while (recv_all(r->fd_rx, hdr, BASE_HDR)) {
        size_t raw_len = get32(hdr), wire_len = get32(hdr + 4);
        if (raw_len > cap || wire_len > ZSTD_compressBound(cap)) die("baseline: bad frame");
        recv_all(r->fd_rx, wire, wire_len);
        const uint8_t *batch = wire;
        if (r->zstd) {
            size_t n = ZSTD_decompressDCtx(dc, raw, cap, wire, wire_len);
            if (ZSTD_isError(n) || n != raw_len) die("baseline: decompression failed");
            batch = raw;
        }
        k = base_unpack(r->d, batch, raw_len, k);
    }
    r->t1 = now_ns();
    r->cpu_rx = cpu_ns() - cpu0;
    r->received = k;
    ZSTD_freeDCtx(dc);
    free(wire);
    free(raw);
    return NULL;
}

/* Runs a pipeline's two threads over r's connected sockets, both starting together, and
 * dies unless every state arrived and the last one intact. The caller closes the sockets. */
static inline void pipe_run_threads(pipe_run *r, void *(*sender)(void *), void *(*receiver)(void *),
                                    const char *name)
{
    pthread_t tx, rx;
    memset(ds_dst(r->d, r->n - 1), 0, r->d->size);
    CHECK_PT(pthread_barrier_init(&r->start, NULL, 2));
    CHECK_PT(pthread_create(&rx, NULL, receiver, r));
    CHECK_PT(pthread_create(&tx, NULL, sender, r));
    CHECK_PT(pthread_join(tx, NULL));
    CHECK_PT(pthread_join(rx, NULL));
    pthread_barrier_destroy(&r->start);
    if (r->received != r->n) die("%s: %zu of %zu states arrived", name, r->received, r->n);
    if (memcmp(ds_dst(r->d, r->n - 1), ds_state(r->d, r->n - 1), r->d->size))
        die("%s: the last state arrived corrupted", name);
}

#endif
