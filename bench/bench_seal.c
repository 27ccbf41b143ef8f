/*
 * bench/bench_seal.c - what sealing frames (net/seal.h) costs, per cipher and frame size.
 *
 * For each payload size (100 B, 4 KiB, 64 KiB, 1 MiB) it fills a buffer of back-to-back
 * frames and measures, one side at a time, in MB/s of payload:
 *   baseline   what an unsealed frame costs today: ch_frame_header_write on the sender
 *              (XXH3 of the payload), ch_frame_decode on the receiver (XXH3 again);
 *   seal/open  ch_seal_frame on the sender, ch_frame_decode_sealed + ch_seal_open on
 *              the receiver, for AES-256-GCM (when the CPU has it) and ChaCha20-Poly1305;
 *   aead only  the bare libsodium encryption, for what framing adds, and
 *              XChaCha20-Poly1305 for comparison (seal.c does not use it: its random-nonce
 *              margin buys nothing with counter nonces). What a checksum over the sealed
 *              bytes would cost (seal.c writes 0 instead) is the baseline's XXH3 rate.
 * Every figure is the median of R runs with min and max; "x base" is the ratio to the
 * baseline of the same side measured in the same run. Not a test.
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
} what;

/* One pass over the buffer; returns the seconds it took. s is used by SEAL and OPEN. */
static double pass(frames *f, what w, ch_seal *s)
{
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
 * Measures one row: `reps` runs, each of enough passes to move run_bytes of payload. The
 * sealed rows alternate SEAL and OPEN passes (the receiver needs what the sender sealed,
 * in order), each timed on its own; plain rows do the same with write and decode.
 */
static void measure(frames *f, const opts *o, what a, what b, enum ch_seal_cipher cipher, stat3 *sa,
                    stat3 *sb)
{
    double va[MAX_REPS], vb[MAX_REPS];
    size_t passes = o->run_bytes / (f->count * f->size);
    if (passes == 0) passes = 1;
    ch_seal tx, rx;
    static const uint8_t session[32] = {42};
    if (cipher) {
        int rc = ch_seal_init(&tx, cipher, session, true);
        if (rc == 0) rc = ch_seal_init(&rx, cipher, session, false);
        if (rc < 0) die("ch_seal_init", rc);
    }
    for (unsigned r = 0; r < o->reps; r++) {
        double ta = 0, tb = 0;
        for (size_t p = 0; p < passes; p++) {
            ta += pass(f, a, &tx);
            if (sb) tb += pass(f, b, &rx);
        }
        double mb = (double)(passes * f->count * f->size) / 1e6;
        va[r] = mb / ta;
        if (sb) vb[r] = mb / tb;
    }
    *sa = summarize(va, o->reps);
    if (sb) *sb = summarize(vb, o->reps);
    if (cipher) {
        ch_seal_wipe(&tx);
        ch_seal_wipe(&rx);
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
          "  --reps R  runs per figure (default 7)\n"
          "  --mib M   MiB of payload per run (default 256)\n"
          "  --quick   3 runs of 32 MiB\n",
          stderr);
    exit(2);
}

static void parse(int argc, char **argv, opts *o)
{
    *o = (opts){.reps = 7, .run_bytes = 256u << 20};
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
    const size_t sizes[] = {100, 4096, 65536, 1u << 20};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        frames f = frames_new(sizes[k]);
        stat3 w, d, s, op;
        measure(&f, &o, PLAIN_WRITE, PLAIN_DECODE, 0, &w, &d);
        row(f.size, "baseline: write (XXH3)", w, 0);
        row(f.size, "baseline: decode (XXH3)", d, 0);
        if (aes) {
            measure(&f, &o, SEAL, OPEN, CH_SEAL_AES256GCM, &s, &op);
            row(f.size, "AES-256-GCM: seal", s, w.med);
            row(f.size, "AES-256-GCM: decode + open", op, d.med);
        }
        stat3 cs, cop;
        measure(&f, &o, SEAL, OPEN, CH_SEAL_CHACHA20POLY1305, &cs, &cop);
        row(f.size, "ChaCha20-Poly1305: seal", cs, w.med);
        row(f.size, "ChaCha20-Poly1305: decode + open", cop, d.med);
        stat3 x;
        if (aes) {
            measure(&f, &o, AEAD_AES, AEAD_AES, 0, &x, NULL);
            row(f.size, "aead only: AES-256-GCM", x, 0);
        }
        measure(&f, &o, AEAD_CHACHA, AEAD_CHACHA, 0, &x, NULL);
        row(f.size, "aead only: ChaCha20-Poly1305", x, 0);
        measure(&f, &o, AEAD_XCHACHA, AEAD_XCHACHA, 0, &x, NULL);
        row(f.size, "aead only: XChaCha20-Poly1305", x, 0);
        if (aes)
            printf("%8zu  AES-256-GCM / ChaCha20-Poly1305: seal %.2fx, open %.2fx\n", f.size,
                   s.med / cs.med, op.med / cop.med);
        printf("\n");
        free(f.b);
    }
    return 0;
}
