/*
 * bench/bench_handover_pipe.c - the handover data plane against its baselines (design §6).
 *
 * The handover targets of §6 are ratios to "the better of the raw and the zstd-1 pipeline
 * over the same bytes". This program measures those two baselines on this machine, and the
 * same pipelines built from migration/hbatch.h and migration/codec.h, so that the modules'
 * own overhead shows as a ratio measured in the same run:
 *   a. raw baseline: a sender thread serializes N states (memcpy, id + length + bytes,
 *      packed) into batches, sends them over a loopback TCP socket to a receiver thread,
 *      which copies every state out to its own slot;
 *   b. zstd-1 baseline: the same, each batch compressed with one reused ZSTD_CCtx (level 1)
 *      and decompressed with one reused ZSTD_DCtx (both baselines and the states live in
 *      bench_pipe.h, shared with bench_migration);
 *   c. modules: PROC records written in place through ch_hbatch_proc_begin + ch_buf_append
 *      (what the default prepare_handover does), framed by ch_codec (none, zstd:1, auto
 *      with send-time feedback), received with ch_codec_rx and read with ch_hbatch_read.
 * States are JSON-like text with repeated keys and pseudo-random numbers (fixed seed) that
 * zstd-1 shrinks about 3-4x. Sender and receiver are pinned to CPUs 0 and 1. Every pipeline
 * runs R times, interleaved so that the machine's noise hits them alike; the table shows
 * medians with min and max, the ratio to the baseline measured in the same run, and the CPU
 * time each thread spent per state, which a shared machine disturbs less than the rates.
 * A second table measures, on one thread and without sockets: zstd-1 compression and
 * decompression alone, XXH3, the two record formats' own cost (build, then read and copy
 * out), and memcpy as a function of (dst - src) % 4096. That last one is the "alignment"
 * effect of §6: on this CPU glibc's memcpy uses REP MOVSB from 2 KiB on, which runs 2-20x
 * slower when the destination sits 1..31 bytes past the source modulo a page (glibc
 * BZ 30994); 32-byte alignment of both sides rules those distances out.
 * This is not a test: it stops only when a pipeline loses or corrupts a state.
 */
#define _GNU_SOURCE /* CPU_SET, pthread_setaffinity_np */
#include <corehub/corehub.h>

#include "core/proc.h" /* struct ch_buf: the in-place view */
#include "migration/hbatch.h"
#include "migration/codec.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>
#include <zstd.h>

#define BENCH_NAME "bench_handover_pipe"
#include "bench_common.h"
#include "bench_pipe.h"

#define MAX_REPS   100
#define SOLO_BYTES (64u << 20) /* bytes of 4 KiB states for the one-thread figures */
#define TYPE_NAME  "bench"

/* --- options ------------------------------------------------------------------------- */

enum pipe_kind { P_RAW, P_ZSTD, P_MOD_NONE, P_MOD_ZSTD, P_MOD_AUTO, P__COUNT };

/* --pipes names, in the table's order. */
static const char *const pipe_key[P__COUNT] = {"raw", "zstd", "mod-none", "mod-zstd", "mod-auto"};

static const char *const pipe_name[P__COUNT] = {"raw baseline", "zstd-1 baseline",
                                                "modules, codec none", "modules, codec zstd:1",
                                                "modules, codec auto"};

typedef struct bench_opts {
    unsigned reps;
    size_t n;       /* states per run; 0: per size defaults */
    size_t batch;   /* batch capacity in bytes */
    size_t size;    /* only this state size; 0: 100 B, 4 KiB and 64 KiB */
    unsigned pipes; /* bit k: run pipeline k */
    bool quick;
    bool verbose;
} bench_opts;

static void usage(int code)
{
    fputs("usage: bench_handover_pipe [--reps R] [--n N] [--batch BYTES] [--size BYTES]\n"
          "                           [--pipes L] [--quick] [--verbose]\n"
          "  --n N        states per run for every size (default 100000 for 100 B and 4 KiB,\n"
          "               10000 for 64 KiB; --quick divides them by 10)\n"
          "  --batch B    batch capacity, 65536..1048576 (default 262144)\n"
          "  --size S     only states of S bytes (default: 100, 4096 and 65536)\n"
          "  --pipes L    comma-separated subset of raw,zstd,mod-none,mod-zstd,mod-auto\n"
          "               (a module pipeline's ratio needs its baselines)\n",
          code ? stderr : stdout);
    exit(code);
}

static size_t parse_count(const char *opt, const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || v == 0 || v > ((size_t)1 << 32))
        die("%s: not a positive count: '%s'", opt, s);
    return (size_t)v;
}

static unsigned parse_pipes(const char *list)
{
    unsigned bits = 0;
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", list);
    for (char *save, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int k = 0;
        while (k < P__COUNT && strcmp(t, pipe_key[k]))
            k++;
        if (k == P__COUNT) die("--pipes: unknown pipeline '%s'", t);
        bits |= 1u << k;
    }
    return bits;
}

static void parse_opts(int argc, char **argv, bench_opts *o)
{
    memset(o, 0, sizeof(*o));
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--quick")) {
            o->quick = true;
        } else if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) {
            o->verbose = true;
        } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(0);
        } else if (i + 1 < argc && !strcmp(a, "--reps")) {
            size_t v = parse_count(a, argv[++i]);
            o->reps = v > MAX_REPS ? MAX_REPS : (unsigned)v;
        } else if (i + 1 < argc && !strcmp(a, "--n")) {
            o->n = parse_count(a, argv[++i]);
        } else if (i + 1 < argc && !strcmp(a, "--batch")) {
            o->batch = parse_count(a, argv[++i]);
        } else if (i + 1 < argc && !strcmp(a, "--pipes")) {
            o->pipes = parse_pipes(argv[++i]);
        } else if (i + 1 < argc && !strcmp(a, "--size")) {
            o->size = parse_count(a, argv[++i]);
        } else {
            usage(2);
        }
    }
    if (!o->reps) o->reps = o->quick ? 3 : 5;
    if (!o->pipes) o->pipes = (1u << P__COUNT) - 1;
    if (!o->batch) o->batch = CH_HBATCH_CAP_DEFAULT;
    if (o->batch < CH_HBATCH_CAP_MIN || o->batch > CH_HBATCH_CAP_MAX)
        die("--batch: %u..%u bytes", CH_HBATCH_CAP_MIN, CH_HBATCH_CAP_MAX);
}

/* --- the modules' pipeline ----------------------------------------------------------- */

static void mod_flush(pipe_run *r, ch_hbatch *b, ch_codec *c)
{
    ch_codec_out out;
    CHECK(ch_codec_encode(c, ch_hbatch_data(b), ch_hbatch_len(b), &out));
    struct iovec iov[2] = {{out.hdr, CH_CODEC_HDR}, {(void *)out.payload, out.payload_len}};
    uint64_t t = now_ns();
    writev_all(r->fd_tx, iov, 2);
    /* A blocking send's duration: short while the socket has room (a fast link), the
     * receiver's pace once it is full. */
    ch_codec_feedback(c, CH_CODEC_HDR + out.payload_len, now_ns() - t);
    r->wire_bytes += CH_CODEC_HDR + out.payload_len;
    r->batches++;
    r->zbatches += out.codec == CH_CODEC_ZSTD;
    ch_hbatch_reset(b);
}

static ch_codec *mod_codec(enum pipe_kind kind)
{
    ch_codec_cfg cfg;
    ch_codec *c;
    const char *spec = kind == P_MOD_NONE ? "none" : kind == P_MOD_ZSTD ? "zstd:1" : "auto";
    CHECK(ch_codec_cfg_parse(spec, &cfg));
    CHECK(ch_codec_new(&cfg, &c));
    return c;
}

/* One PROC record, its state written in place as the default prepare_handover does. */
static void mod_put(pipe_run *r, ch_hbatch *b, ch_codec *c, ch_hbatch_proc *p, size_t i)
{
    ch_buf view;
    p->id = ds_id(r->d, i);
    int rc = ch_hbatch_proc_begin(b, p, r->d->size, &view);
    if (rc == -ENOSPC) {
        mod_flush(r, b, c);
        rc = ch_hbatch_proc_begin(b, p, r->d->size, &view);
    }
    CHECK(rc);
    CHECK(ch_buf_append(&view, ds_state(r->d, i), r->d->size));
    CHECK(ch_hbatch_proc_end(b));
    if (ch_hbatch_full(b)) mod_flush(r, b, c);
}

static void *mod_sender(void *arg)
{
    pipe_run *r = arg;
    ch_hbatch b;
    CHECK(ch_hbatch_init(&b, r->batch, 0));
    ch_codec *c = mod_codec((enum pipe_kind)r->kind);
    ch_hbatch_proc p = {.id_len = ID_LEN,
                        .type = TYPE_NAME,
                        .type_len = strlen(TYPE_NAME),
                        .shutdown_ms = 5000,
                        .restart = CH_PERMANENT};
    pin_self(SENDER_CPU);
    pthread_barrier_wait(&r->start);
    r->t0 = now_ns();
    uint64_t cpu0 = cpu_ns();
    for (size_t i = 0; i < r->n; i++)
        mod_put(r, &b, c, &p, i);
    if (ch_hbatch_len(&b)) mod_flush(r, &b, c);
    shutdown(r->fd_tx, SHUT_WR);
    r->cpu_tx = cpu_ns() - cpu0;
    ch_codec_free(c);
    ch_hbatch_free(&b);
    return NULL;
}

static size_t mod_unpack(const dataset *d, const uint8_t *raw, size_t len, size_t k)
{
    ch_hbatch_reader rd;
    ch_hbatch_rec rec;
    int rc;
    ch_hbatch_reader_init(&rd, raw, len);
    while ((rc = ch_hbatch_read(&rd, &rec)) == 1) {
        if (rec.kind != CH_HREC_PROC || k >= d->n || rec.id_len != ID_LEN)
            die("modules: unexpected record");
        if (memcmp(rec.id, ds_id(d, k), ID_LEN)) die("modules: state %zu out of order", k);
        memcpy(ds_dst(d, k), rec.data, rec.len);
        k++;
    }
    CHECK(rc);
    return k;
}

static void *mod_receiver(void *arg)
{
    pipe_run *r = arg;
    ch_codec_rx *rx;
    uint8_t hdr[CH_CODEC_HDR];
    CHECK(ch_codec_rx_new(CH_HBATCH_LIMIT_DEFAULT, &rx));
    pin_self(RECVER_CPU);
    pthread_barrier_wait(&r->start);
    uint64_t cpu0 = cpu_ns();
    size_t k = 0;
    while (recv_all(r->fd_rx, hdr, CH_CODEC_HDR)) {
        ch_codec_hdr h;
        const uint8_t *raw;
        CHECK(ch_codec_hdr_parse(hdr, CH_CODEC_HDR, ch_codec_rx_max(rx), &h));
        uint8_t *space = ch_codec_rx_space(rx, &h);
        if (!space) die("modules: no memory for a %u-byte payload", h.wire_len);
        recv_all(r->fd_rx, space, h.wire_len);
        CHECK(ch_codec_rx_decode(rx, &h, space, &raw));
        k = mod_unpack(r->d, raw, h.raw_len, k);
    }
    r->t1 = now_ns();
    r->cpu_rx = cpu_ns() - cpu0;
    r->received = k;
    ch_codec_rx_free(rx);
    return NULL;
}

/* --- runs and results ---------------------------------------------------------------- */

typedef struct pipe_result {
    series rate;           /* states per second */
    series wire;           /* wire bytes per second */
    series ratio;          /* state bytes / wire bytes */
    series zfrac;          /* share of batches compressed */
    series cpu_tx, cpu_rx; /* CPU ns per state, sender and receiver */
} pipe_result;

/* Runs one pipeline once and checks that every state arrived intact. */
static void run_once(const dataset *d, const bench_opts *o, enum pipe_kind kind, pipe_result *pr)
{
    pipe_run r = {.d = d, .n = d->n, .batch = o->batch, .kind = kind, .zstd = kind == P_ZSTD};
    bool base = kind == P_RAW || kind == P_ZSTD;
    tcp_pair(&r.fd_tx, &r.fd_rx);
    pipe_run_threads(&r, base ? base_sender : mod_sender, base ? base_receiver : mod_receiver,
                     pipe_name[kind]);
    close(r.fd_tx);
    close(r.fd_rx);
    double s = (double)(r.t1 - r.t0) / 1e9;
    series_add(&pr->rate, (double)d->n / s);
    series_add(&pr->wire, (double)r.wire_bytes / s);
    series_add(&pr->ratio, (double)d->n * (double)d->size / (double)r.wire_bytes);
    series_add(&pr->zfrac, r.batches ? (double)r.zbatches / (double)r.batches : 0);
    series_add(&pr->cpu_tx, (double)r.cpu_tx / (double)d->n);
    series_add(&pr->cpu_rx, (double)r.cpu_rx / (double)d->n);
    if (o->verbose)
        printf("  %zu B %-22s %9.1f k states/s, %8.1f MB/s wire, %zu batches\n", d->size,
               pipe_name[kind], (double)d->n / s / 1e3, (double)r.wire_bytes / s / 1e6,
               (size_t)r.batches);
}

static size_t states_for(const bench_opts *o, size_t size)
{
    size_t n = o->n ? o->n : size >= (64u << 10) ? 10000 : 100000;
    return o->quick && !o->n ? n / 10 : n;
}

/* --- one thread, no socket ----------------------------------------------------------- */

typedef struct solo_result {
    series comp, decomp, xxh; /* bytes per second */
    double ratio;
    series copy[5];      /* memcpy by (dst - src) % 4096 */
    series fmt[2][2][2]; /* ns per state: [100 B, 4 KiB][baseline, modules][pack, unpack] */
} solo_result;

static const size_t copy_delta[5] = {0, 8, 16, 32, 64};

/* Baseline batches of 4 KiB states, the input of the one-thread figures. */
static size_t solo_batches(const bench_opts *o, uint8_t **buf)
{
    dataset d;
    size_t n = SOLO_BYTES / 4096, len = 0;
    dataset_init(&d, 4096, n);
    *buf = xalloc(n * (4096 + 1 + ID_LEN + 4));
    for (size_t i = 0; i < n; i++) {
        uint8_t *p = *buf + len;
        p[0] = ID_LEN;
        memcpy(p + 1, ds_id(&d, i), ID_LEN);
        put32(p + 1 + ID_LEN, 4096);
        memcpy(p + 5 + ID_LEN, ds_state(&d, i), 4096);
        len += 4096 + 5 + ID_LEN;
    }
    dataset_free(&d);
    (void)o;
    return len;
}

static void solo_codec(const bench_opts *o, const uint8_t *in, size_t len, solo_result *s)
{
    size_t nb = (len + o->batch - 1) / o->batch, bound = ZSTD_compressBound(o->batch);
    uint8_t *z = xalloc(nb * bound), *back = xalloc(o->batch);
    size_t *zl = xalloc(nb * sizeof(size_t)), zsum = 0;
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_DCtx *dc = ZSTD_createDCtx();
    if (!cc || !dc || ZSTD_isError(ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1)))
        die("zstd context");
    uint64_t t = now_ns();
    for (size_t i = 0; i < nb; i++) {
        size_t bl = i + 1 < nb ? o->batch : len - i * o->batch;
        zl[i] = ZSTD_compress2(cc, z + i * bound, bound, in + i * o->batch, bl);
        if (ZSTD_isError(zl[i])) die("ZSTD_compress2: %s", ZSTD_getErrorName(zl[i]));
        zsum += zl[i];
    }
    series_add(&s->comp, (double)len * 1e9 / (double)(now_ns() - t));
    t = now_ns();
    for (size_t i = 0; i < nb; i++) {
        size_t r = ZSTD_decompressDCtx(dc, back, o->batch, z + i * bound, zl[i]);
        if (ZSTD_isError(r)) die("ZSTD_decompressDCtx: %s", ZSTD_getErrorName(r));
    }
    series_add(&s->decomp, (double)len * 1e9 / (double)(now_ns() - t));
    s->ratio = (double)len / (double)zsum;
    t = now_ns();
    volatile uint64_t h = XXH3_64bits(in, len);
    (void)h;
    series_add(&s->xxh, (double)len * 1e9 / (double)(now_ns() - t));
    ZSTD_freeCCtx(cc);
    ZSTD_freeDCtx(dc);
    free(zl);
    free(back);
    free(z);
}

/* Baseline format without a socket: pack a batch, copy it out, next; ns spent in each. */
static void fmt_base(const dataset *d, size_t batch, uint64_t ns[2])
{
    size_t rec = 1 + ID_LEN + 4 + d->size, len = 0, k = 0;
    uint8_t *buf = xalloc(batch + rec);
    uint64_t t = now_ns(), u;
    for (size_t i = 0; i <= d->n; i++) {
        if (len && (i == d->n || len + rec > batch)) {
            ns[0] += (u = now_ns()) - t;
            k = base_unpack(d, buf, len, k);
            ns[1] += (t = now_ns()) - u;
            len = 0;
        }
        if (i == d->n) break;
        uint8_t *p = buf + len;
        p[0] = ID_LEN;
        memcpy(p + 1, ds_id(d, i), ID_LEN);
        put32(p + 1 + ID_LEN, (uint32_t)d->size);
        memcpy(p + 5 + ID_LEN, ds_state(d, i), d->size);
        len += rec;
    }
    if (k != d->n) die("format baseline: %zu of %zu states", k, d->n);
    free(buf);
}

/* The modules' format without a socket or codec: in-place PROC records, then the reader. */
static void fmt_modules(const dataset *d, size_t batch, uint64_t ns[2])
{
    ch_hbatch b;
    ch_buf view;
    size_t k = 0;
    ch_hbatch_proc p = {.id_len = ID_LEN, .type = TYPE_NAME, .type_len = strlen(TYPE_NAME)};
    CHECK(ch_hbatch_init(&b, batch, 0));
    uint64_t t = now_ns(), u;
    for (size_t i = 0; i <= d->n; i++) {
        p.id = i < d->n ? ds_id(d, i) : "x";
        int rc = i < d->n ? ch_hbatch_proc_begin(&b, &p, d->size, &view) : -ENOSPC;
        if (rc == -ENOSPC) {
            ns[0] += (u = now_ns()) - t;
            k = mod_unpack(d, ch_hbatch_data(&b), ch_hbatch_len(&b), k);
            ns[1] += (t = now_ns()) - u;
            ch_hbatch_reset(&b);
            if (i == d->n) break;
            rc = ch_hbatch_proc_begin(&b, &p, d->size, &view);
        }
        CHECK(rc);
        CHECK(ch_buf_append(&view, ds_state(d, i), d->size));
        CHECK(ch_hbatch_proc_end(&b));
    }
    if (k != d->n) die("format modules: %zu of %zu states", k, d->n);
    ch_hbatch_free(&b);
}

static void solo_format(const bench_opts *o, const dataset *d, series out[2][2])
{
    uint64_t ns[2][2] = {{0}};
    fmt_base(d, o->batch, ns[0]);
    fmt_modules(d, o->batch, ns[1]);
    for (int f = 0; f < 2; f++)
        for (int ph = 0; ph < 2; ph++)
            series_add(&out[f][ph], (double)ns[f][ph] / (double)d->n);
}

/* memcpy of 4 KiB blocks, cache-resident, with dst - src = delta modulo 4096. */
static void solo_copy(solo_result *s)
{
    enum { BLOCK = 4096, BLOCKS = 32, ROUNDS = 2000 };
    uint8_t *src = xalloc(BLOCKS * 8192), *dst = xalloc(BLOCKS * 8192 + 128);
    memset(src, 'x', BLOCKS * 8192);
    memset(dst, 0, BLOCKS * 8192 + 128);
    for (size_t k = 0; k < 5; k++) {
        /* src and dst are both 64-aligned: the same page offset plus delta. */
        size_t off = ((uintptr_t)src - (uintptr_t)dst) & 4095;
        uint8_t *d0 = dst + off + copy_delta[k];
        uint64_t t = now_ns();
        for (int r = 0; r < ROUNDS; r++)
            for (size_t b = 0; b < BLOCKS; b++)
                memcpy(d0 + b * 4096, src + b * 8192, BLOCK);
        __asm__ __volatile__("" : : "r"(d0) : "memory");
        series_add(&s->copy[k], (double)BLOCK * BLOCKS * ROUNDS * 1e9 / (double)(now_ns() - t));
    }
    free(src);
    free(dst);
}

/* --- report -------------------------------------------------------------------------- */

static void print_header(const bench_opts *o, const size_t *sizes, size_t nsizes)
{
    char model[128], load[64];
    struct utsname u;
    cpu_model(model, sizeof(model));
    load_avg(load, sizeof(load));
    if (uname(&u) < 0) die("uname: %s", strerror(errno));
    printf("# bench_handover_pipe: corehub %d.%d.%d handover data plane vs raw and zstd-1 "
           "pipelines\n",
           COREHUB_VERSION_MAJOR, COREHUB_VERSION_MINOR, COREHUB_VERSION_PATCH);
    printf("machine: nproc %ld, cpu \"%s\", kernel %s %s, load %s\n", sysconf(_SC_NPROCESSORS_ONLN),
           model, u.sysname, u.release, load);
    printf("libs: zstd %s, xxhash %u; sender on cpu %d, receiver on cpu %d, loopback TCP\n",
           ZSTD_versionString(), XXH_versionNumber(), SENDER_CPU, RECVER_CPU);
    printf("params: reps %u, batch %zu B, states", o->reps, o->batch);
    for (size_t i = 0; i < nsizes; i++)
        printf(" %zu x %zu B", states_for(o, sizes[i]), sizes[i]);
    printf(" (JSON-like, fixed seed)%s\n\n", o->quick ? " (quick)" : "");
}

static const char *size_name(size_t size, char *buf, size_t cap)
{
    if (size >= 1024 && size % 1024 == 0)
        snprintf(buf, cap, "%zu KiB", size / 1024);
    else
        snprintf(buf, cap, "%zu B", size);
    return buf;
}

/* The baseline a pipeline is compared with: its own kind, or the better of both. */
static double baseline_of(double raw, double zstd, enum pipe_kind k)
{
    if (k == P_MOD_NONE) return raw;
    if (k == P_MOD_ZSTD) return zstd;
    return raw > zstd ? raw : zstd;
}

/* The ratio of the medians, and the median of each repetition's ratio: the runs of one
 * repetition ran back to back, so the second shrugs off noise that lasts a repetition. */
static void vs_baseline(const pipe_result *pr, enum pipe_kind k, double *of_medians,
                        double *per_rep)
{
    series r = {.n = 0};
    double raw = series_median(&pr[P_RAW].rate), z = series_median(&pr[P_ZSTD].rate);
    *of_medians = series_median(&pr[k].rate) / baseline_of(raw, z, k);
    for (unsigned i = 0; i < pr[k].rate.n; i++) {
        double base = baseline_of(pr[P_RAW].rate.v[i], pr[P_ZSTD].rate.v[i], k);
        series_add(&r, pr[k].rate.v[i] / base);
    }
    *per_rep = series_median(&r);
}

/* The baselines a module pipeline is compared with ran as often as it did. */
static bool has_baseline(const pipe_result *pr, enum pipe_kind k)
{
    unsigned n = pr[k].rate.n;
    bool raw = pr[P_RAW].rate.n == n, z = pr[P_ZSTD].rate.n == n;
    return k == P_MOD_NONE ? raw : k == P_MOD_ZSTD ? z : raw && z;
}

/* Label for the vs-baseline column of a pipeline. */
static void vs_label(const pipe_result *pr, enum pipe_kind k, char *out, size_t cap)
{
    static const char *const vs[P__COUNT] = {"", "", "raw", "zstd-1", "better"};
    double of_medians, per_rep;
    if (k < P_MOD_NONE) {
        snprintf(out, cap, "baseline");
    } else if (!has_baseline(pr, k)) {
        snprintf(out, cap, "- (baseline not run)");
    } else {
        vs_baseline(pr, k, &of_medians, &per_rep);
        snprintf(out, cap, "%.2f %.2f / %s", of_medians, per_rep, vs[k]);
    }
}

static void print_size_rows(size_t size, const pipe_result *pr)
{
    char sz[32], metric[64], ratio[40];
    size_name(size, sz, sizeof(sz));
    for (int k = 0; k < P__COUNT; k++) {
        double med, lo, hi;
        if (!pr[k].rate.n) continue; /* not run (--pipes) */
        series_stats(&pr[k].rate, &med, &lo, &hi);
        snprintf(metric, sizeof(metric), "%s %s", sz, pipe_name[k]);
        vs_label(pr, (enum pipe_kind)k, ratio, sizeof(ratio));
        printf("| %-32s | %9.1f | %9.1f | %9.1f | %8.1f | %8.1f | %5.2f | %4.0f%% | %7.0f | "
               "%7.0f | %-20s |\n",
               metric, med / 1e3, lo / 1e3, hi / 1e3, med * (double)size / 1e6,
               series_median(&pr[k].wire) / 1e6, series_median(&pr[k].ratio),
               100 * series_median(&pr[k].zfrac), series_median(&pr[k].cpu_tx),
               series_median(&pr[k].cpu_rx), ratio);
    }
}

static void print_pipe_table(const size_t *sizes, size_t nsizes, pipe_result (*pr)[P__COUNT])
{
    printf("| %-32s | %9s | %9s | %9s | %8s | %8s | %5s | %5s | %7s | %7s | %-20s |\n", "pipeline",
           "k st/s", "min", "max", "MB/s st", "MB/s wi", "ratio", "zstd", "tx ns", "rx ns",
           "vs baseline");
    printf("|%.34s|%.11s|%.11s|%.11s|%.10s|%.10s|%.7s|%.7s|%.9s|%.9s|%.22s|\n",
           "----------------------------------", "-----------", "-----------", "-----------",
           "----------", "----------", "-------", "-------", "---------", "---------",
           "----------------------");
    for (size_t i = 0; i < nsizes; i++)
        print_size_rows(sizes[i], pr[i]);
    printf("k st/s: thousands of states per second, median of the repetitions (min, max);\n"
           "MB/s st: state bytes; MB/s wi: bytes on the socket, headers included; ratio: state\n"
           "bytes / wire bytes; zstd: share of batches sent compressed; tx ns, rx ns: CPU time\n"
           "of the sending and the receiving thread per state (steadier than the rates on a\n"
           "shared machine). vs baseline: median over the baseline's median, then the median\n"
           "of the per-repetition ratios (auto: over the better of the two baselines). Design\n"
           "§6 asks the whole handover for >= 0.6 of the better baseline at 4 and 64 KiB and\n"
           ">= 0.4 at 100 B.\n\n");
}

static void solo_row(const char *metric, const series *s, double scale, const char *unit)
{
    double med, lo, hi;
    series_stats(s, &med, &lo, &hi);
    printf("| %-44s | %9.2f | %9.2f | %9.2f | %-5s |\n", metric, med / scale, lo / scale,
           hi / scale, unit);
}

static void print_solo_table(const bench_opts *o, const solo_result *s)
{
    char metric[64];
    printf("one thread, %u MiB of 4 KiB states in %zu-byte batches (zstd-1 ratio %.2f):\n",
           SOLO_BYTES >> 20, o->batch, s->ratio);
    printf("| %-44s | %9s | %9s | %9s | %-5s |\n", "metric", "median", "min", "max", "unit");
    printf("|%.46s|%.11s|%.11s|%.11s|%.7s|\n", "----------------------------------------------",
           "-----------", "-----------", "-----------", "-------");
    solo_row("zstd-1 compress (raw bytes in)", &s->comp, 1e6, "MB/s");
    solo_row("zstd-1 decompress (raw bytes out)", &s->decomp, 1e6, "MB/s");
    solo_row("XXH3_64", &s->xxh, 1e9, "GB/s");
    for (size_t k = 0; k < 5; k++) {
        snprintf(metric, sizeof(metric), "memcpy 4 KiB in cache, (dst-src)%%4096 = %zu",
                 copy_delta[k]);
        solo_row(metric, &s->copy[k], 1e9, "GB/s");
    }
    static const char *const fmt_rows[2][2] = {
        {"baseline serialize", "baseline copy out"},
        {"modules proc_begin/append/end", "modules read + copy out"}};
    for (int f = 0; f < 2; f++)
        for (int w = 0; w < 2; w++)
            for (int ph = 0; ph < 2; ph++) {
                snprintf(metric, sizeof(metric), "%s, %s", f ? "4 KiB" : "100 B", fmt_rows[w][ph]);
                solo_row(metric, &s->fmt[f][w][ph], 1, "ns/st");
            }
    char load[64];
    load_avg(load, sizeof(load));
    printf("\nload average at the end: %s (a shared 2-vCPU machine: compare ratios, not "
           "absolutes)\n",
           load);
}

int main(int argc, char **argv)
{
    size_t sizes[] = {100, 4096, 65536}, nsizes = sizeof(sizes) / sizeof(sizes[0]);
    bench_opts o;
    parse_opts(argc, argv, &o);
    if (o.size) {
        sizes[0] = o.size;
        nsizes = 1;
    }
    if (sysconf(_SC_NPROCESSORS_ONLN) < 2) {
        fprintf(stderr, "bench_handover_pipe: needs at least 2 CPUs\n");
        return 77; /* skipped, as a test would say */
    }
    print_header(&o, sizes, nsizes);
    fflush(stdout);
    pipe_result(*pr)[P__COUNT] = calloc(nsizes, sizeof(*pr));
    solo_result *solo = calloc(1, sizeof(*solo));
    if (!pr || !solo) die("out of memory");
    for (size_t i = 0; i < nsizes; i++) {
        dataset d;
        dataset_init(&d, sizes[i], states_for(&o, sizes[i]));
        for (unsigned rep = 0; rep < o.reps; rep++)
            for (int k = 0; k < P__COUNT; k++)
                if (o.pipes & (1u << k)) run_once(&d, &o, (enum pipe_kind)k, &pr[i][k]);
        dataset_free(&d);
    }
    uint8_t *in;
    size_t len = solo_batches(&o, &in);
    dataset fd[2];
    dataset_init(&fd[0], 100, states_for(&o, 100));
    dataset_init(&fd[1], 4096, states_for(&o, 4096));
    pin_self(SENDER_CPU);
    for (unsigned rep = 0; rep < o.reps; rep++) {
        solo_codec(&o, in, len, solo);
        solo_copy(solo);
        for (int f = 0; f < 2; f++)
            solo_format(&o, &fd[f], solo->fmt[f]);
    }
    dataset_free(&fd[0]);
    dataset_free(&fd[1]);
    free(in);
    print_pipe_table(sizes, nsizes, pr);
    print_solo_table(&o, solo);
    free(solo);
    free(pr);
    return 0;
}
