/*
 * bench/bench_seal.c - what sealing frames (net/seal.h) costs, per cipher and frame size.
 *
 * For each payload size (100 B, 4 KiB, 64 KiB, 1 MiB) it fills a buffer of back-to-back
 * frames and measures, one side at a time, in MB/s of payload:
 *   baseline   what an unsealed frame costs today: ch_frame_header_write on the sender
 *              (XXH3 of the payload), ch_frame_decode on the receiver (XXH3 again);
 *   seal/open  ch_seal_frame on the sender, ch_frame_decode_sealed + ch_seal_open on
 *              the receiver, for AES-256-GCM (when the CPU has it) and ChaCha20-Poly1305:
 *              one AEAD call per frame;
 *   records    what the transport does: the frames copied into records of about
 *              CH_SEAL_RECORD_TARGET bytes, one AEAD call per record (put+seal), then
 *              each record opened and its frames walked (open+walk);
 *   aead only  the bare libsodium encryption, for what framing adds, and
 *              XChaCha20-Poly1305 for comparison (seal.c does not use it: its random-nonce
 *              margin buys nothing with counter nonces). What a checksum over the sealed
 *              bytes would cost (seal.c writes 0 instead) is the baseline's XXH3 rate.
 * Every figure is the median of R runs with min and max, the variants measured round-robin
 * (see measure); "x base" is the ratio to the baseline of the same side measured in the
 * same run. Not a test.
 */
#define _GNU_SOURCE
#include "net/frame.h"
#include "net/seal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define MAX_REPS 64

typedef struct opts {
    unsigned reps;
    size_t run_bytes; /* payload bytes per run */
} opts;

static void die(const char *what, int rc)
{
    fprintf(stderr, "bench_seal: %s: %s\n", what, strerror(rc < 0 ? -rc : rc));
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A buffer of `count` frames of `size`-byte payloads, each with room for a tag. */
typedef struct frames {
    uint8_t *b;
    size_t size, stride, count;
} frames;

static frames frames_new(size_t size)
{
    frames f = {.size = size, .stride = CH_FRAME_HDR + size + CH_SEAL_TAG};
    size_t want = 4u << 20; /* 4 MiB of frames: the order of a reactor's output buffer */
    f.count = want / f.stride ? want / f.stride : 1;
    f.b = aligned_alloc(64, (f.count * f.stride + 63) / 64 * 64);
    if (!f.b) die("aligned_alloc", -ENOMEM);
    for (size_t i = 0; i < f.count * f.stride; i++)
        f.b[i] = (uint8_t)(i * 131 + 7);
    return f;
}

typedef enum what {
    PLAIN_WRITE,
    PLAIN_DECODE,
    SEAL,
    OPEN,
    AEAD_AES,
    AEAD_CHACHA,
    AEAD_XCHACHA,
    REC_SEAL,
    REC_OPEN,
} what;

/* Records as the transport writes them: the frames' payloads copied into records of about
 * CH_SEAL_RECORD_TARGET bytes, each sealed once; read back by opening each record and
 * walking its frames. */
static ch_wbuf recs;

static double record_seal_pass(frames *f, ch_seal *s)
{
    double t0 = now_s();
    ch_wbuf_reset(&recs);
    size_t at = 0;
    bool open = false;
    for (size_t i = 0; i < f->count; i++) {
        if (open && recs.len - at + f->size > CH_SEAL_RECORD_TARGET) {
            int rc = ch_seal_record_end(s, &recs, at);
            if (rc < 0) die("ch_seal_record_end", rc);
            open = false;
        }
        if (!open) {
            at = ch_seal_record_begin(&recs);
            open = true;
        }
        const uint8_t *p = f->b + i * f->stride + CH_FRAME_HDR;
        int rc = ch_seal_record_put(&recs, CH_F_CAST, 0, p, f->size, NULL, 0);
        if (rc < 0) die("ch_seal_record_put", rc);
    }
    int rc = open ? ch_seal_record_end(s, &recs, at) : 0;
    if (rc < 0) die("ch_seal_record_end", rc);
    return now_s() - t0;
}

static double record_open_pass(frames *f, ch_seal *s)
{
    double t0 = now_s();
    size_t frames_seen = 0;
    for (size_t off = 0; off < recs.len;) {
        ch_frame rec, inner;
        int n = ch_frame_decode_sealed(recs.data + off, recs.len - off, 0, &rec);
        int rc = n > 0 ? ch_seal_record_open(s, recs.data + off, &rec) : -EBADMSG;
        if (rc < 0) die("record refused", rc);
        size_t pos = 0;
        while ((rc = ch_seal_record_next(&rec, &pos, 0, &inner)) == 1)
            frames_seen++;
        if (rc < 0) die("bad frame in a record", rc);
        off += (size_t)n;
    }
    if (frames_seen != f->count) die("frames lost in records", -EPROTO);
    return now_s() - t0;
}

/* One pass over the buffer; returns the seconds it took. s is used by the sealed kinds. */
static double pass(frames *f, what w, ch_seal *s)
{
    if (w == REC_SEAL) return record_seal_pass(f, s);
    if (w == REC_OPEN) return record_open_pass(f, s);
    static const uint8_t key[32] = {7};
    static crypto_aead_aes256gcm_state aes;
    static int aes_ready;
    uint8_t nonce[24] = {0};
    if (w == AEAD_AES && !aes_ready) aes_ready = crypto_aead_aes256gcm_beforenm(&aes, key) == 0;
    double t0 = now_s();
    for (size_t i = 0; i < f->count; i++) {
        uint8_t *fr = f->b + i * f->stride, *body = fr + CH_FRAME_HDR;
        ch_frame got;
        int rc = 0;
        switch (w) {
        case PLAIN_WRITE:
            ch_frame_header_write(fr, CH_F_CAST, 0, body, (uint32_t)f->size);
            break;
        case PLAIN_DECODE:
            rc = ch_frame_decode(fr, f->stride, 0, &got) > 0 ? 0 : -EBADMSG;
            break;
        case SEAL:
            rc = ch_seal_frame(s, fr, CH_F_CAST, 0, f->size);
            break;
        case OPEN:
            rc = ch_frame_decode_sealed(fr, f->stride, 0, &got) > 0 ? ch_seal_open(s, fr, &got)
                                                                    : -EBADMSG;
            break;
        case AEAD_AES:
            nonce[0] = (uint8_t)i;
            rc = crypto_aead_aes256gcm_encrypt_detached_afternm(body, body + f->size, NULL, body,
                                                                f->size, fr, 8, NULL, nonce, &aes);
            break;
        case AEAD_CHACHA:
            nonce[0] = (uint8_t)i;
            rc = crypto_aead_chacha20poly1305_ietf_encrypt_detached(
                body, body + f->size, NULL, body, f->size, fr, 8, NULL, nonce, key);
            break;
        case AEAD_XCHACHA:
            nonce[0] = (uint8_t)i;
            rc = crypto_aead_xchacha20poly1305_ietf_encrypt_detached(
                body, body + f->size, NULL, body, f->size, fr, 8, NULL, nonce, key);
            break;
        case REC_SEAL:
        case REC_OPEN:
            break;
        }
        if (rc != 0) die("frame refused", rc < 0 ? rc : -EIO);
    }
    return now_s() - t0;
}

typedef struct stat3 {
    double med, min, max; /* MB/s */
} stat3;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static stat3 summarize(double *v, unsigned n)
{
    qsort(v, n, sizeof(*v), cmp_double);
    return (stat3){v[n / 2], v[0], v[n - 1]};
}

/*
 * One variant: a pass kind for the sender (a) and, for two-sided variants, one for the
 * receiver (b), which needs what the sender just produced, in order. Its figures are MB/s
 * per run, each side timed on its own.
 */
typedef struct variant {
    const char *name_a, *name_b; /* name_b NULL: one-sided */
    what a, b;
    enum ch_seal_cipher cipher; /* 0: no ch_seal */
    ch_seal tx, rx;
    double va[MAX_REPS], vb[MAX_REPS];
    stat3 sa, sb;
} variant;

static void variant_run(variant *v, frames *f, size_t passes, unsigned rep)
{
    double ta = 0, tb = 0;
    for (size_t p = 0; p < passes; p++) {
        ta += pass(f, v->a, &v->tx);
        if (v->name_b) tb += pass(f, v->b, &v->rx);
    }
    double mb = (double)(passes * f->count * f->size) / 1e6;
    v->va[rep] = mb / ta;
    if (v->name_b) v->vb[rep] = mb / tb;
}

/*
 * Measures every variant `reps` times, round-robin: the machine is shared and its speed
 * drifts, so each repetition runs every variant back to back and the drift falls on all of
 * them alike (the ratios are then meaningful even when the absolute figures move).
 */
static void measure(frames *f, const opts *o, variant *vs, size_t nv)
{
    static const uint8_t session[32] = {42};
    size_t passes = o->run_bytes / (f->count * f->size);
    if (passes == 0) passes = 1;
    for (size_t i = 0; i < nv; i++) {
        if (!vs[i].cipher) continue;
        int rc = ch_seal_init(&vs[i].tx, vs[i].cipher, session, true);
        if (rc == 0) rc = ch_seal_init(&vs[i].rx, vs[i].cipher, session, false);
        if (rc < 0) die("ch_seal_init", rc);
    }
    for (unsigned r = 0; r < o->reps; r++)
        for (size_t i = 0; i < nv; i++)
            variant_run(&vs[i], f, passes, r);
    for (size_t i = 0; i < nv; i++) {
        vs[i].sa = summarize(vs[i].va, o->reps);
        if (vs[i].name_b) vs[i].sb = summarize(vs[i].vb, o->reps);
        ch_seal_wipe(&vs[i].tx);
        ch_seal_wipe(&vs[i].rx);
    }
}

static void row(size_t size, const char *name, stat3 s, double base)
{
    double fps = s.med * 1e6 / (double)size;
    printf("%8zu  %-30s %8.0f  [%6.0f .. %6.0f]  %10.0f", size, name, s.med, s.min, s.max, fps);
    if (base > 0)
        printf("  %6.3f\n", s.med / base);
    else
        printf("       -\n");
}

static void machine(void)
{
    struct utsname u;
    char model[128] = "?";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof(line), f)) {
            char *colon = strchr(line, ':');
            if (strncmp(line, "model name", 10) == 0 && colon) {
                snprintf(model, sizeof(model), "%s", colon + 2);
                model[strcspn(model, "\n")] = '\0';
                break;
            }
        }
        fclose(f);
    }
    if (uname(&u) < 0) snprintf(u.release, sizeof(u.release), "?");
    printf("machine: %s, %ld CPUs, Linux %s, libsodium %s, AES-256-GCM in hardware: %s\n", model,
           sysconf(_SC_NPROCESSORS_ONLN), u.release, sodium_version_string(),
           (ch_seal_caps() & CH_CAP_AES256GCM) ? "yes" : "no");
}

static void usage(void)
{
    fputs("usage: bench_seal [--reps R] [--mib M] [--quick]\n"
          "  --reps R  runs per figure (default 9)\n"
          "  --mib M   MiB of payload per run (default 128)\n"
          "  --quick   3 runs of 32 MiB\n",
          stderr);
    exit(2);
}

static void parse(int argc, char **argv, opts *o)
{
    *o = (opts){.reps = 9, .run_bytes = 128u << 20};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--quick") == 0) {
            *o = (opts){.reps = 3, .run_bytes = 32u << 20};
        } else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc) {
            o->reps = (unsigned)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(argv[i], "--mib") == 0 && i + 1 < argc) {
            o->run_bytes = (size_t)strtoul(argv[++i], NULL, 10) << 20;
        } else {
            usage();
        }
    }
    if (o->reps == 0 || o->reps > MAX_REPS || o->run_bytes == 0) usage();
}

int main(int argc, char **argv)
{
    opts o;
    parse(argc, argv, &o);
    if (sodium_init() < 0) die("sodium_init", -EIO);
    bool aes = ch_seal_caps() & CH_CAP_AES256GCM;
    machine();
    printf("%u runs of %zu MiB of payload per figure, 4 MiB of frames per pass; MB/s of "
           "payload, one side (one core)\n\n",
           o.reps, o.run_bytes >> 20);
    printf("%8s  %-30s %8s  %18s  %10s  %6s\n", "payload", "", "MB/s", "[min .. max]", "frames/s",
           "x base");
    ch_wbuf_init(&recs);
    const size_t sizes[] = {100, 4096, 65536, 1u << 20};
    enum { PLAIN, AES, CHACHA, REC_AES, REC_CHACHA, RAW_AES, RAW_CHACHA, RAW_XCHACHA, NV };
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        frames f = frames_new(sizes[k]);
        variant vs[NV] = {
            [PLAIN] = {"baseline: write (XXH3)", "baseline: decode (XXH3)", PLAIN_WRITE,
                       PLAIN_DECODE},
            [AES] = {"AES-256-GCM: seal", "AES-256-GCM: decode + open", SEAL, OPEN,
                     CH_SEAL_AES256GCM},
            [CHACHA] = {"ChaCha20-Poly1305: seal", "ChaCha20-Poly1305: decode + open", SEAL, OPEN,
                        CH_SEAL_CHACHA20POLY1305},
            [REC_AES] = {"AES-256-GCM: records, put+seal", "AES-256-GCM: records, open+walk",
                         REC_SEAL, REC_OPEN, CH_SEAL_AES256GCM},
            [REC_CHACHA] = {"ChaCha20: records, put+seal", "ChaCha20: records, open+walk", REC_SEAL,
                            REC_OPEN, CH_SEAL_CHACHA20POLY1305},
            [RAW_AES] = {"aead only: AES-256-GCM", NULL, AEAD_AES},
            [RAW_CHACHA] = {"aead only: ChaCha20-Poly1305", NULL, AEAD_CHACHA},
            [RAW_XCHACHA] = {"aead only: XChaCha20-Poly1305", NULL, AEAD_XCHACHA},
        };
        variant *use[NV];
        size_t nv = 0;
        for (size_t i = 0; i < NV; i++)
            if (aes || (i != AES && i != REC_AES && i != RAW_AES)) use[nv++] = &vs[i];
        variant run[NV];
        for (size_t i = 0; i < nv; i++)
            run[i] = *use[i];
        measure(&f, &o, run, nv);
        for (size_t i = 0; i < nv; i++)
            *use[i] = run[i];
        double wbase = vs[PLAIN].sa.med, dbase = vs[PLAIN].sb.med;
        for (size_t i = 0; i < nv; i++) {
            bool sealed = use[i]->cipher != 0;
            row(f.size, use[i]->name_a, use[i]->sa, sealed ? wbase : 0);
            if (use[i]->name_b) row(f.size, use[i]->name_b, use[i]->sb, sealed ? dbase : 0);
        }
        if (aes)
            printf("%8zu  AES-256-GCM / ChaCha20-Poly1305: seal %.2fx, open %.2fx; records %.2fx, "
                   "%.2fx\n",
                   f.size, vs[AES].sa.med / vs[CHACHA].sa.med, vs[AES].sb.med / vs[CHACHA].sb.med,
                   vs[REC_AES].sa.med / vs[REC_CHACHA].sa.med,
                   vs[REC_AES].sb.med / vs[REC_CHACHA].sb.med);
        printf("\n");
        free(f.b);
    }
    ch_wbuf_free(&recs);
    return 0;
}
