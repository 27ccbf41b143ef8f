/*
 * migration/codec.c - raw, zstd and auto framing of handover batches (format in codec.h).
 *
 * Why auto. On the machines corehub targets, zstd level 1 compresses about 300 MB/s per
 * core while loopback or a fast LAN moves GB/s, and a slow WAN moves far less (design §6).
 * With the compressor taking C raw bytes per second, the link draining L wire bytes per
 * second and a ratio R > 1, a raw lane moves L raw bytes per second and a compressing one
 * min(C, L * R). The second wins exactly when C > L: compress while the link is the
 * bottleneck, send raw while the compressor is (auto asks for C > 2 L, see
 * AUTO_LINK_FACTOR). auto keeps moving averages of C (bytes in
 * per CPU second of ZSTD_compress2, CLOCK_THREAD_CPUTIME_ID, so that a preempted thread
 * does not look slow) and R from the batches it compresses, and of L from
 * ch_codec_feedback, and decides before each batch, with a 20% hysteresis so that noise
 * does not flip it every batch. While it sends raw it still compresses one batch now and
 * then (after 8 batches, then 16, ... up to 256, reset on every switch) to keep C and R
 * fresh, so it can switch back. Batches that compress worse than 1.1x go raw.
 *
 * L is measured while the link holds a backlog, and a backlog may be a receiver that is
 * behind rather than a slow link. Measured while compressing, that receiver's pace in wire
 * bytes looks R times slower than it is, so compressing kept itself going: a loopback join
 * compressed to its end at half the raw rate (bench_migration, 100k x 4 KiB, 3 joins in
 * 5). So only samples taken while sending raw count, and while it compresses auto forgets
 * L after LINK_STALE batches and sends raw: a link that is really slow fills at once and
 * is measured again (a few raw batches in every LINK_STALE).
 *
 * Why the receiver is strict. A peer's header is checked against max_raw before anything
 * is allocated, a zstd payload must be exactly one frame whose declared content size is
 * the header's raw length, and it is decompressed into a buffer of exactly that length:
 * a hostile or broken peer can make us allocate at most max_raw, never more. XXH3 over
 * the raw bytes catches what zstd does not (it carries no checksum of its own here).
 */
#include "migration/codec.h"

#include "migration/le.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <xxhash.h>
#include <zstd.h>

#define BUF_ALIGN      64u
#define KEEP_BYTES     ((1u << 20) + (16u << 10)) /* buffers up to this stay; larger shrink */
#define EWMA_WEIGHT    0.25 /* weight of a new sample in the moving averages */
#define AUTO_HYST      1.2  /* a rate must beat the other by 20% to flip auto's choice */
#define AUTO_MIN_RATIO 1.1  /* below this ratio compression is not worth the CPU */
/* The link must be this much slower than the compressor before auto compresses: the model
 * C > L ignores that compressing also costs the receiver a decompression and the sender a
 * CPU its other work wants, and a link measured from a backlog may be a receiver that is
 * behind (measured on loopback, where both nodes share two CPUs: compressing there at
 * L ~ 0.75 C halved the throughput; a 1 Gbit/s link, L ~ 0.3 C, gained 1.7x). */
#define AUTO_LINK_FACTOR 2.0
#define PROBE_MIN        8u   /* raw batches before auto re-measures zstd ... */
#define PROBE_MAX        256u /* ... doubling after every probe that keeps raw, up to this */
#define LINK_STALE       64u  /* compressed batches without link news before L is forgotten */

/* An aligned buffer that grows to the largest request, and shrinks back to KEEP_BYTES
 * after a request above it, so that one oversize batch does not pin its memory. */
typedef struct abuf {
    uint8_t *p;
    size_t cap;
} abuf;

struct ch_codec {
    ch_codec_mode mode;
    int level;
    ZSTD_CCtx *cctx; /* NULL in mode none */
    abuf out;        /* compressed payloads */
    bool use_zstd;   /* auto: the current choice */
    uint32_t since_probe, probe_every;
    uint32_t since_link; /* auto: batches compressed since the last link sample */
    ch_codec_stats st;
};

struct ch_codec_rx {
    size_t max_raw;
    ZSTD_DCtx *dctx;
    abuf wire; /* payloads as received */
    abuf raw;  /* decompressed batches */
};

static int abuf_fit(abuf *b, size_t need)
{
    size_t want = need > KEEP_BYTES ? need : KEEP_BYTES;
    if (b->p && b->cap >= need && (b->cap <= KEEP_BYTES || need > KEEP_BYTES)) return 0;
    want = (want + BUF_ALIGN - 1) & ~(size_t)(BUF_ALIGN - 1);
    uint8_t *p = aligned_alloc(BUF_ALIGN, want);
    if (!p) return -ENOMEM;
    free(b->p);
    b->p = p;
    b->cap = want;
    return 0;
}

static void ewma(double *avg, double sample)
{
    *avg = *avg > 0 ? *avg + EWMA_WEIGHT * (sample - *avg) : sample;
}

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0) return 0;
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- configuration ------------------------------------------------------------------- */

static bool level_valid(long level)
{
    return level != 0 && level >= ZSTD_minCLevel() && level <= ZSTD_maxCLevel();
}

static int parse_level(const char *s, int *level)
{
    if (!*s) {
        *level = 1;
        return 0;
    }
    if (*s++ != ':' || !*s) return -EINVAL;
    char *end;
    long v = strtol(s, &end, 10);
    if (*end || !level_valid(v)) return -EINVAL;
    *level = (int)v;
    return 0;
}

int ch_codec_cfg_parse(const char *spec, ch_codec_cfg *cfg)
{
    if (!spec) return -EINVAL;
    cfg->level = 1;
    if (!strcmp(spec, "none")) {
        cfg->mode = CH_CODEC_MODE_NONE;
        return 0;
    }
    if (!strncmp(spec, "zstd", 4)) {
        cfg->mode = CH_CODEC_MODE_ZSTD;
        return parse_level(spec + 4, &cfg->level);
    }
    if (!strncmp(spec, "auto", 4)) {
        cfg->mode = CH_CODEC_MODE_AUTO;
        return parse_level(spec + 4, &cfg->level);
    }
    return -EINVAL;
}

/* ---- sending ------------------------------------------------------------------------- */

static int cctx_setup(ch_codec *c)
{
    c->cctx = ZSTD_createCCtx();
    if (!c->cctx) return -ENOMEM;
    if (ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_compressionLevel, c->level)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_contentSizeFlag, 1)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(c->cctx, ZSTD_c_checksumFlag, 0)))
        return -EINVAL;
    return 0;
}

int ch_codec_new(const ch_codec_cfg *cfg, ch_codec **out)
{
    *out = NULL;
    if (cfg->mode > CH_CODEC_MODE_AUTO) return -EINVAL;
    if (cfg->mode != CH_CODEC_MODE_NONE && !level_valid(cfg->level)) return -EINVAL;
    ch_codec *c = calloc(1, sizeof(*c));
    if (!c) return -ENOMEM;
    c->mode = cfg->mode;
    c->level = cfg->level;
    c->use_zstd = true; /* auto's first batch measures the compressor */
    c->probe_every = PROBE_MIN;
    int rc = c->mode == CH_CODEC_MODE_NONE ? 0 : cctx_setup(c);
    if (rc < 0) {
        ch_codec_free(c);
        return rc;
    }
    *out = c;
    return 0;
}

void ch_codec_free(ch_codec *c)
{
    if (!c) return;
    ZSTD_freeCCtx(c->cctx);
    free(c->out.p);
    free(c);
}

static bool auto_prefers_zstd(const ch_codec *c)
{
    if (c->st.compress_rate <= 0) return true; /* never measured: measure it */
    if (c->st.ratio < AUTO_MIN_RATIO) return false;
    if (c->st.link_rate <= 0) return false; /* it never held a backlog: it keeps up */
    double margin = c->use_zstd ? AUTO_HYST : 1.0 / AUTO_HYST;
    return c->st.compress_rate * margin > AUTO_LINK_FACTOR * c->st.link_rate;
}

static void auto_decide(ch_codec *c)
{
    bool z = auto_prefers_zstd(c);
    if (z == c->use_zstd) return;
    c->use_zstd = z;
    c->since_probe = 0;
    c->probe_every = PROBE_MIN;
}

/* auto: compress this batch? Raw lanes compress one batch now and then to re-measure. */
static bool auto_turn(ch_codec *c)
{
    if (c->use_zstd && ++c->since_link >= LINK_STALE && c->st.link_rate > 0) {
        c->st.link_rate = 0; /* no news for long: the link keeps up */
        auto_decide(c);
    }
    if (c->use_zstd) return true;
    if (++c->since_probe < c->probe_every) return false;
    c->since_probe = 0;
    if (c->probe_every < PROBE_MAX) c->probe_every *= 2;
    c->st.probes++;
    return true;
}

static bool wants_zstd(ch_codec *c)
{
    if (c->mode == CH_CODEC_MODE_NONE) return false;
    return c->mode == CH_CODEC_MODE_ZSTD || auto_turn(c);
}

/* Compresses into c->out; the payload switches to it when it is smaller than the batch. */
static void compress(ch_codec *c, const void *raw, size_t raw_len, ch_codec_out *out)
{
    if (abuf_fit(&c->out, ZSTD_compressBound(raw_len)) < 0) {
        c->st.zstd_errors++;
        return;
    }
    uint64_t t0 = cpu_ns();
    size_t n = ZSTD_compress2(c->cctx, c->out.p, c->out.cap, raw, raw_len);
    uint64_t t1 = cpu_ns();
    if (ZSTD_isError(n) || n == 0) {
        c->st.zstd_errors++;
        return;
    }
    if (t1 > t0) ewma(&c->st.compress_rate, (double)raw_len * 1e9 / (double)(t1 - t0));
    ewma(&c->st.ratio, (double)raw_len / (double)n);
    if (c->mode == CH_CODEC_MODE_AUTO) auto_decide(c);
    if (n >= raw_len) return;
    out->payload = c->out.p;
    out->payload_len = n;
    out->codec = CH_CODEC_ZSTD;
}

static void hdr_write(uint8_t *h, uint8_t codec, size_t raw_len, size_t wire_len, uint64_t hash)
{
    memset(h, 0, CH_CODEC_HDR);
    h[0] = codec;
    ch_le_put32(h + 4, (uint32_t)raw_len);
    ch_le_put32(h + 8, (uint32_t)wire_len);
    ch_le_put64(h + 16, hash);
}

int ch_codec_encode(ch_codec *c, const void *raw, size_t raw_len, ch_codec_out *out)
{
    if (!raw || raw_len == 0 || raw_len > UINT32_MAX) return -EINVAL;
    out->payload = raw;
    out->payload_len = raw_len;
    out->codec = CH_CODEC_RAW;
    if (wants_zstd(c)) compress(c, raw, raw_len, out);
    hdr_write(out->hdr, out->codec, raw_len, out->payload_len, XXH3_64bits(raw, raw_len));
    if (out->codec == CH_CODEC_ZSTD)
        c->st.batches_zstd++;
    else
        c->st.batches_raw++;
    c->st.bytes_raw += raw_len;
    c->st.bytes_wire += out->payload_len;
    return 0;
}

void ch_codec_feedback(ch_codec *c, uint64_t bytes, uint64_t ns)
{
    if (!bytes || !ns) return;
    if (c->mode == CH_CODEC_MODE_AUTO && c->use_zstd) return; /* wire bytes of a compressor */
    ewma(&c->st.link_rate, (double)bytes * 1e9 / (double)ns);
    c->since_link = 0;
    if (c->mode == CH_CODEC_MODE_AUTO) auto_decide(c);
}

void ch_codec_stats_get(const ch_codec *c, ch_codec_stats *s)
{
    *s = c->st;
    s->auto_zstd = c->mode == CH_CODEC_MODE_AUTO && c->use_zstd;
}

/* ---- receiving ----------------------------------------------------------------------- */

int ch_codec_hdr_parse(const void *p, size_t avail, size_t max_raw, ch_codec_hdr *h)
{
    if (avail < CH_CODEC_HDR) return -EAGAIN;
    const uint8_t *b = p;
    h->codec = b[0];
    h->raw_len = ch_le_get32(b + 4);
    h->wire_len = ch_le_get32(b + 8);
    h->hash = ch_le_get64(b + 16);
    if (b[1] || ch_le_get16(b + 2) || ch_le_get32(b + 12) || ch_le_get64(b + 24)) return -EBADMSG;
    if (h->codec != CH_CODEC_RAW && h->codec != CH_CODEC_ZSTD) return -EBADMSG;
    if (h->raw_len == 0 || h->wire_len == 0) return -EBADMSG;
    if (h->raw_len > max_raw) return -EMSGSIZE;
    if (h->codec == CH_CODEC_RAW && h->wire_len != h->raw_len) return -EBADMSG;
    if (h->codec == CH_CODEC_ZSTD && h->wire_len > h->raw_len) return -EBADMSG;
    return 0;
}

int ch_codec_rx_new(size_t max_raw, ch_codec_rx **out)
{
    *out = NULL;
    if (max_raw == 0 || max_raw > UINT32_MAX) return -EINVAL;
    ch_codec_rx *rx = calloc(1, sizeof(*rx));
    if (!rx) return -ENOMEM;
    rx->max_raw = max_raw;
    rx->dctx = ZSTD_createDCtx();
    if (!rx->dctx) {
        free(rx);
        return -ENOMEM;
    }
    *out = rx;
    return 0;
}

void ch_codec_rx_free(ch_codec_rx *rx)
{
    if (!rx) return;
    ZSTD_freeDCtx(rx->dctx);
    free(rx->wire.p);
    free(rx->raw.p);
    free(rx);
}

size_t ch_codec_rx_max(const ch_codec_rx *rx)
{
    return rx->max_raw;
}

uint8_t *ch_codec_rx_space(ch_codec_rx *rx, const ch_codec_hdr *h)
{
    if (h->wire_len == 0 || h->wire_len > rx->max_raw) return NULL;
    return abuf_fit(&rx->wire, h->wire_len) < 0 ? NULL : rx->wire.p;
}

/* Decompresses one zstd frame of exactly h->raw_len bytes of content into rx->raw. */
static int inflate(ch_codec_rx *rx, const ch_codec_hdr *h, const void *payload)
{
    /* UNKNOWN and ERROR are above any u32, so they fail this test too. */
    if (ZSTD_getFrameContentSize(payload, h->wire_len) != h->raw_len) return -EBADMSG;
    if (ZSTD_findFrameCompressedSize(payload, h->wire_len) != h->wire_len) return -EBADMSG;
    if (abuf_fit(&rx->raw, h->raw_len) < 0) return -ENOMEM;
    size_t n = ZSTD_decompressDCtx(rx->dctx, rx->raw.p, h->raw_len, payload, h->wire_len);
    if (ZSTD_isError(n) || n != h->raw_len) return -EBADMSG;
    return 0;
}

int ch_codec_rx_decode(ch_codec_rx *rx, const ch_codec_hdr *h, const void *payload,
                       const uint8_t **raw)
{
    *raw = NULL;
    if (!payload || h->raw_len == 0 || h->raw_len > rx->max_raw) return -EBADMSG;
    const uint8_t *bytes = payload;
    if (h->codec == CH_CODEC_ZSTD) {
        if (h->wire_len > h->raw_len) return -EBADMSG;
        int rc = inflate(rx, h, payload);
        if (rc < 0) return rc;
        bytes = rx->raw.p;
    } else if (h->codec != CH_CODEC_RAW || h->wire_len != h->raw_len) {
        return -EBADMSG;
    }
    if (XXH3_64bits(bytes, h->raw_len) != h->hash) return -EBADMSG;
    *raw = bytes;
    return 0;
}
