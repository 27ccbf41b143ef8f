/*
 * migration/codec.h - a handover lane's codec: how one batch goes on the wire and back.
 *
 * Each batch becomes one frame, a 32-byte header and a payload, decodable on its own:
 *   u8 codec (0 raw, 1 zstd) | u8 0 | u16 0 | u32 raw length | u32 wire length | u32 0 |
 *   u64 XXH3_64 of the raw bytes | u64 0                                  (little-endian)
 * then wire-length bytes: the raw batch, or one zstd frame that declares its content size.
 * The header is 32 bytes so that a receiver reading header and payload into one aligned
 * buffer keeps the payload aligned (a raw batch is then used in place).
 *
 * Sending side, ch_codec (one per lane, its reactor only): `none`, `zstd:LEVEL` (one reused
 * ZSTD_CCtx) or `auto`, which picks raw or zstd per batch from what it measures (the
 * compressor's speed per CPU second and its ratio) and what the caller tells it about the
 * link (ch_codec_feedback). A batch that zstd does not shrink goes raw in every mode.
 *
 * Receiving side, ch_codec_rx (one per receiving lane): parses and checks headers against
 * its max_raw before a payload byte is read, decompresses with one reused ZSTD_DCtx into a
 * buffer it owns, never larger than max_raw, and verifies the XXH3.
 */
#ifndef CH_MIGRATION_CODEC_H
#define CH_MIGRATION_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CH_CODEC_HDR 32u

enum ch_codec_wire {
    CH_CODEC_RAW = 0,  /* the payload is the batch */
    CH_CODEC_ZSTD = 1, /* the payload is one zstd frame */
};

typedef enum ch_codec_mode {
    CH_CODEC_MODE_NONE = 0,
    CH_CODEC_MODE_ZSTD = 1,
    CH_CODEC_MODE_AUTO = 2,
} ch_codec_mode;

typedef struct ch_codec_cfg {
    ch_codec_mode mode;
    int level; /* zstd level for MODE_ZSTD and MODE_AUTO */
} ch_codec_cfg;

/* Parses "none", "zstd", "zstd:LEVEL", "auto" or "auto:LEVEL" (level: 1 when omitted,
 * ZSTD_minCLevel()..ZSTD_maxCLevel(), 0 excluded). 0 or -EINVAL. */
int ch_codec_cfg_parse(const char *spec, ch_codec_cfg *cfg);

/* --- sending ------------------------------------------------------------------------- */

typedef struct ch_codec ch_codec;

/* One encoded batch: send hdr then payload. */
typedef struct ch_codec_out {
    uint8_t hdr[CH_CODEC_HDR];
    const uint8_t *payload; /* the raw batch itself, or the codec's buffer: valid until the
                             * next encode */
    size_t payload_len;
    uint8_t codec; /* enum ch_codec_wire, as in hdr */
} ch_codec_out;

/* What the codec saw, for metrics and tests. Rates in bytes per second, 0 when unknown. */
typedef struct ch_codec_stats {
    uint64_t batches_raw, batches_zstd; /* frames sent each way */
    uint64_t bytes_raw, bytes_wire;     /* batch bytes in, payload bytes out */
    uint64_t probes;                    /* auto: batches compressed to re-measure zstd */
    uint64_t zstd_errors;               /* compressions that failed (the batch went raw) */
    double compress_rate;               /* raw bytes per CPU second of compression */
    double ratio;                       /* raw / compressed */
    double link_rate;                   /* wire bytes per second the link drains */
    bool auto_zstd;                     /* auto: the current choice */
} ch_codec_stats;

/* 0, -EINVAL (bad cfg) or -ENOMEM. */
int ch_codec_new(const ch_codec_cfg *cfg, ch_codec **out);
void ch_codec_free(ch_codec *c);

/*
 * Encodes one batch of raw_len (1..UINT32_MAX) bytes. Returns 0, or -EINVAL. Compression
 * failures are not errors: the batch goes raw and stats.zstd_errors counts it. Hot path;
 * it allocates only when a batch is larger than every one before (the output buffer, sized
 * with ZSTD_compressBound, follows the batch size and shrinks back after an oversize one).
 */
int ch_codec_encode(ch_codec *c, const void *raw, size_t raw_len, ch_codec_out *out);

/*
 * Tells auto how fast the link drains: `bytes` of wire data left the socket in `ns`
 * nanoseconds of the link being busy (while the socket had data queued). Idle time must
 * not count: wall time between batches measures the sender, not the link, and would keep
 * a compressing lane compressing. auto compresses while the link is slower than the
 * compressor (see codec.c); a link that never reported a backlog keeps up, and gets raw.
 */
void ch_codec_feedback(ch_codec *c, uint64_t bytes, uint64_t ns);
void ch_codec_stats_get(const ch_codec *c, ch_codec_stats *s);

/* --- receiving ----------------------------------------------------------------------- */

typedef struct ch_codec_hdr {
    uint8_t codec; /* enum ch_codec_wire */
    uint32_t raw_len;
    uint32_t wire_len;
    uint64_t hash; /* XXH3_64 of the raw bytes */
} ch_codec_hdr;

/*
 * Parses the header at p (avail bytes). Returns 0, -EAGAIN (fewer than CH_CODEC_HDR bytes),
 * -EMSGSIZE (raw length over max_raw) or -EBADMSG (unknown codec, non-zero reserved
 * field, zero raw length, a raw payload whose wire length differs from its raw length, a
 * zstd payload longer than the raw batch).
 */
int ch_codec_hdr_parse(const void *p, size_t avail, size_t max_raw, ch_codec_hdr *h);

typedef struct ch_codec_rx ch_codec_rx;

/* max_raw: the largest batch accepted (the sender's limit), 1..UINT32_MAX. */
int ch_codec_rx_new(size_t max_raw, ch_codec_rx **out);
void ch_codec_rx_free(ch_codec_rx *rx);
size_t ch_codec_rx_max(const ch_codec_rx *rx);

/* A 64-byte aligned buffer of h->wire_len bytes to receive the payload into, owned by rx
 * and valid until the next rx_space. NULL on -ENOMEM. */
uint8_t *ch_codec_rx_space(ch_codec_rx *rx, const ch_codec_hdr *h);

/*
 * Decodes the payload (h->wire_len bytes) of a parsed header. On 0, *raw points to the
 * h->raw_len bytes of the batch: the payload itself for a raw frame, else rx's own aligned
 * buffer, valid until the next decode. Returns -EBADMSG for a payload that is not exactly
 * one zstd frame declaring h->raw_len bytes of content, that fails to decompress to that
 * size, or whose XXH3 differs; -ENOMEM. Never writes more than h->raw_len bytes.
 */
int ch_codec_rx_decode(ch_codec_rx *rx, const ch_codec_hdr *h, const void *payload,
                       const uint8_t **raw);

#endif
