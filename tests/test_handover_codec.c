/*
 * tests/test_handover_codec.c - the handover codec (migration/codec.h): raw and zstd frames
 * round trip with their XXH3 checked, the receiver refuses corrupted payloads, malformed
 * headers and decompression bombs, and `auto` follows the link feedback it is given.
 */
#include <criterion/criterion.h>

#include "migration/hbatch.h"
#include "migration/codec.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define MAX_RAW (1u << 20)

/* JSON-like text with repeated keys and pseudo-random numbers: compresses 3-4x. */
static uint8_t *json_like(size_t len, uint32_t seed)
{
    uint8_t *p = malloc(len + 128);
    cr_assert_not_null(p);
    size_t n = 0;
    while (n < len) {
        seed = seed * 1103515245u + 12345u;
        n += (size_t)snprintf((char *)p + n, 128, "{\"user\":%u,\"score\":%u,\"ok\":true},",
                              seed >> 8, (seed >> 3) % 100000);
    }
    return p;
}

static uint8_t *random_bytes(size_t len, uint32_t seed)
{
    uint8_t *p = malloc(len);
    cr_assert_not_null(p);
    for (size_t i = 0; i < len; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
    return p;
}

static ch_codec *codec_new(const char *spec)
{
    ch_codec_cfg cfg;
    ch_codec *c;
    cr_assert_eq(ch_codec_cfg_parse(spec, &cfg), 0, "%s", spec);
    cr_assert_eq(ch_codec_new(&cfg, &c), 0);
    return c;
}

/* Receives one frame as a peer would: header, then payload into rx's space. */
static int receive(ch_codec_rx *rx, const ch_codec_out *out, const uint8_t **raw)
{
    ch_codec_hdr h;
    int rc = ch_codec_hdr_parse(out->hdr, CH_CODEC_HDR, ch_codec_rx_max(rx), &h);
    if (rc < 0) return rc;
    cr_assert_eq(h.wire_len, out->payload_len);
    uint8_t *space = ch_codec_rx_space(rx, &h);
    cr_assert_not_null(space);
    memcpy(space, out->payload, h.wire_len);
    return ch_codec_rx_decode(rx, &h, space, raw);
}

/* --- configuration -------------------------------------------------------------------- */

Test(handover_codec, specs_parse_and_bad_ones_are_refused)
{
    ch_codec_cfg cfg;
    cr_assert_eq(ch_codec_cfg_parse("none", &cfg), 0);
    cr_assert_eq(cfg.mode, CH_CODEC_MODE_NONE);
    cr_assert_eq(ch_codec_cfg_parse("zstd", &cfg), 0);
    cr_assert(cfg.mode == CH_CODEC_MODE_ZSTD && cfg.level == 1);
    cr_assert_eq(ch_codec_cfg_parse("zstd:7", &cfg), 0);
    cr_assert_eq(cfg.level, 7);
    cr_assert_eq(ch_codec_cfg_parse("auto", &cfg), 0);
    cr_assert(cfg.mode == CH_CODEC_MODE_AUTO && cfg.level == 1);
    cr_assert_eq(ch_codec_cfg_parse("auto:-3", &cfg), 0);
    cr_assert_eq(cfg.level, -3);
    static const char *bad[] = {"",      "zip",    "zstd:",   "zstd:0", "zstd:99",
                                "zstd3", "auto:x", "zstd:1x", "none:1", "ZSTD"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(ch_codec_cfg_parse(bad[i], &cfg), -EINVAL, "'%s'", bad[i]);
    cr_assert_eq(ch_codec_cfg_parse(NULL, &cfg), -EINVAL);
    ch_codec *c;
    cfg = (ch_codec_cfg){.mode = CH_CODEC_MODE_ZSTD, .level = 0};
    cr_assert_eq(ch_codec_new(&cfg, &c), -EINVAL);
    cfg = (ch_codec_cfg){.mode = 7, .level = 1};
    cr_assert_eq(ch_codec_new(&cfg, &c), -EINVAL);
}

/* --- round trips ---------------------------------------------------------------------- */

Test(handover_codec, zstd_round_trip_checks_the_content_hash)
{
    enum { LEN = 256 << 10 };
    uint8_t *raw = json_like(LEN, 1);
    ch_codec *c = codec_new("zstd:1");
    ch_codec_rx *rx;
    cr_assert_eq(ch_codec_rx_new(MAX_RAW, &rx), 0);
    ch_codec_out out;
    cr_assert_eq(ch_codec_encode(c, raw, LEN, &out), 0);
    cr_assert_eq(out.codec, CH_CODEC_ZSTD);
    cr_assert_eq(out.hdr[0], CH_CODEC_ZSTD);
    cr_assert_lt(out.payload_len, LEN / 2, "ratio %.2f", (double)LEN / (double)out.payload_len);
    const uint8_t *back;
    cr_assert_eq(receive(rx, &out, &back), 0);
    cr_assert_arr_eq(back, raw, LEN);
    cr_assert_eq((uintptr_t)back % 32, 0);

    out.hdr[16] ^= 1; /* the XXH3 no longer matches what the payload holds */
    cr_assert_eq(receive(rx, &out, &back), -EBADMSG);
    cr_assert_null(back);
    ch_codec_stats st;
    ch_codec_stats_get(c, &st);
    cr_assert(st.batches_zstd == 1 && st.bytes_raw == LEN && st.bytes_wire == out.payload_len);
    cr_assert(st.compress_rate > 0 && st.ratio > 2);
    ch_codec_rx_free(rx);
    ch_codec_free(c);
    free(raw);
}

Test(handover_codec, raw_frames_carry_the_batch_itself)
{
    enum { LEN = 100000 };
    uint8_t *raw = json_like(LEN, 2);
    ch_codec *c = codec_new("none");
    ch_codec_rx *rx;
    cr_assert_eq(ch_codec_rx_new(MAX_RAW, &rx), 0);
    ch_codec_out out;
    cr_assert_eq(ch_codec_encode(c, raw, LEN, &out), 0);
    cr_assert(out.codec == CH_CODEC_RAW && out.payload == raw && out.payload_len == LEN);
    const uint8_t *back;
    cr_assert_eq(receive(rx, &out, &back), 0);
    cr_assert_arr_eq(back, raw, LEN);
    uint8_t *flipped = malloc(LEN);
    cr_assert_not_null(flipped);
    memcpy(flipped, raw, LEN);
    flipped[LEN / 2] ^= 0x20;
    out.payload = flipped;
    cr_assert_eq(receive(rx, &out, &back), -EBADMSG, "a raw frame is checked too");
    cr_assert_eq(ch_codec_encode(c, raw, 0, &out), -EINVAL);
    free(flipped);
    ch_codec_rx_free(rx);
    ch_codec_free(c);
    free(raw);
}

Test(handover_codec, a_batch_zstd_cannot_shrink_goes_raw)
{
    enum { LEN = 64 << 10 };
    uint8_t *raw = random_bytes(LEN, 3);
    ch_codec *c = codec_new("zstd:1");
    ch_codec_out out;
    cr_assert_eq(ch_codec_encode(c, raw, LEN, &out), 0);
    cr_assert(out.codec == CH_CODEC_RAW && out.payload == raw && out.payload_len == LEN);
    ch_codec_free(c);
    free(raw);
}

Test(handover_codec, a_batch_survives_the_codec_with_its_records_aligned)
{
    ch_hbatch b;
    cr_assert_eq(ch_hbatch_init(&b, 256 << 10, 0), 0);
    uint8_t *states = json_like(200 * 1000, 4);
    ch_hbatch_proc p = {.id = "p", .id_len = 1, .type = "t", .type_len = 1};
    for (size_t i = 0; i < 200; i++) {
        char id[16];
        p.id_len = (size_t)snprintf(id, sizeof(id), "p%zu", i);
        p.id = id;
        cr_assert_eq(ch_hbatch_put_proc(&b, &p, states + i * 1000, 1000), 0);
    }
    ch_codec *c = codec_new("zstd:1");
    ch_codec_rx *rx;
    cr_assert_eq(ch_codec_rx_new(MAX_RAW, &rx), 0);
    ch_codec_out out;
    cr_assert_eq(ch_codec_encode(c, ch_hbatch_data(&b), ch_hbatch_len(&b), &out), 0);
    const uint8_t *back;
    cr_assert_eq(receive(rx, &out, &back), 0);
    ch_hbatch_reader r;
    ch_hbatch_rec rec;
    ch_hbatch_reader_init(&r, back, ch_hbatch_len(&b));
    for (size_t i = 0; i < 200; i++) {
        cr_assert_eq(ch_hbatch_read(&r, &rec), 1);
        cr_assert_eq((uintptr_t)rec.data % 32, 0);
        cr_assert_eq(rec.len, 1000);
        cr_assert_arr_eq(rec.data, states + i * 1000, 1000);
    }
    cr_assert_eq(ch_hbatch_read(&r, &rec), 0);
    ch_codec_rx_free(rx);
    ch_codec_free(c);
    ch_hbatch_free(&b);
    free(states);
}

/* --- hostile input -------------------------------------------------------------------- */

Test(handover_codec, corrupted_compressed_payloads_are_refused)
{
    enum { LEN = 128 << 10 };
    uint8_t *raw = json_like(LEN, 5);
    ch_codec *c = codec_new("zstd:1");
    ch_codec_rx *rx;
    cr_assert_eq(ch_codec_rx_new(MAX_RAW, &rx), 0);
    ch_codec_out out;
    cr_assert_eq(ch_codec_encode(c, raw, LEN, &out), 0);
    cr_assert_eq(out.codec, CH_CODEC_ZSTD);
    size_t wire = out.payload_len;
    uint8_t *bad = malloc(wire);
    cr_assert_not_null(bad);
    ch_codec_hdr h;
    cr_assert_eq(ch_codec_hdr_parse(out.hdr, CH_CODEC_HDR, MAX_RAW, &h), 0);
    srand(777);
    for (int it = 0; it < 300; it++) {
        memcpy(bad, out.payload, wire);
        int flips = 1 + rand() % 3;
        for (int f = 0; f < flips; f++)
            bad[(size_t)rand() % wire] ^= (uint8_t)(1 + rand() % 255);
        const uint8_t *back;
        int rc = ch_codec_rx_decode(rx, &h, bad, &back);
        /* Never wrong bytes: either refused, or (a flip zstd ignores) exactly the batch. */
        cr_assert(rc == -EBADMSG || (rc == 0 && !memcmp(back, raw, LEN)), "it %d: %d", it, rc);
    }
    memcpy(bad, out.payload, wire);
    ch_codec_hdr shorter = h;
    shorter.wire_len = (uint32_t)(wire - 1);
    const uint8_t *back;
    cr_assert_eq(ch_codec_rx_decode(rx, &shorter, bad, &back), -EBADMSG, "truncated frame");
    free(bad);
    ch_codec_rx_free(rx);
    ch_codec_free(c);
    free(raw);
}

/* A frame header as a peer could write it. */
static void put_hdr(uint8_t *h, uint8_t codec, uint32_t raw_len, uint32_t wire_len, uint64_t hash)
{
    memset(h, 0, CH_CODEC_HDR);
    h[0] = codec;
    memcpy(h + 4, &raw_len, 4);
    memcpy(h + 8, &wire_len, 4);
    memcpy(h + 16, &hash, 8);
}

Test(handover_codec, malformed_headers_are_refused_before_any_payload)
{
    uint8_t h[CH_CODEC_HDR];
    ch_codec_hdr out;
    put_hdr(h, CH_CODEC_ZSTD, 1000, 500, 42);
    cr_assert_eq(ch_codec_hdr_parse(h, CH_CODEC_HDR, MAX_RAW, &out), 0);
    cr_assert(out.codec == CH_CODEC_ZSTD && out.raw_len == 1000 && out.wire_len == 500);
    cr_assert_eq(out.hash, 42);
    cr_assert_eq(ch_codec_hdr_parse(h, CH_CODEC_HDR - 1, MAX_RAW, &out), -EAGAIN);
    for (size_t at = 1; at < CH_CODEC_HDR; at++) {
        if ((at >= 4 && at < 12) || (at >= 16 && at < 24)) continue; /* the fields */
        put_hdr(h, CH_CODEC_ZSTD, 1000, 500, 42);
        h[at] = 1;
        cr_assert_eq(ch_codec_hdr_parse(h, CH_CODEC_HDR, MAX_RAW, &out), -EBADMSG, "byte %zu", at);
    }
    put_hdr(h, 2, 1000, 1000, 0);
    cr_assert_eq(ch_codec_hdr_parse(h, CH_CODEC_HDR, MAX_RAW, &out), -EBADMSG, "codec");
    put_hdr(h, CH_CODEC_RAW, 0, 0, 0);
    cr_assert_eq(ch_codec_hdr_parse(h, CH_CODEC_HDR, MAX_RAW, &out), -EBADMSG, "empty");
    put_hdr(h, CH_CODEC_RAW, 1000, 999, 0);
    cr_assert_eq(ch_codec_hdr_parse(h, CH_CODEC_HDR, MAX_RAW, &out), -EBADMSG, "raw sizes");
    put_hdr(h, CH_CODEC_ZSTD, 1000, 1001, 0);
    cr_assert_eq(ch_codec_hdr_parse(h, CH_CODEC_HDR, MAX_RAW, &out), -EBADMSG, "zstd grew");
    put_hdr(h, CH_CODEC_RAW, MAX_RAW + 1, MAX_RAW + 1, 0);
    cr_assert_eq(ch_codec_hdr_parse(h, CH_CODEC_HDR, MAX_RAW, &out), -EMSGSIZE);
    put_hdr(h, CH_CODEC_ZSTD, UINT32_MAX, 100, 0);
    cr_assert_eq(ch_codec_hdr_parse(h, CH_CODEC_HDR, MAX_RAW, &out), -EMSGSIZE);
}

/* Compresses len zero bytes into a fresh buffer, optionally without its content size. */
static uint8_t *zeros_frame(size_t len, bool content_size, size_t *wire)
{
    uint8_t *zeros = calloc(1, len);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    size_t cap = ZSTD_compressBound(len);
    uint8_t *out = malloc(cap);
    cr_assert(zeros && cc && out);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_contentSizeFlag, content_size);
    ZSTD_CCtx_setPledgedSrcSize(cc, content_size ? len : ZSTD_CONTENTSIZE_UNKNOWN);
    ZSTD_outBuffer o = {out, cap, 0};
    ZSTD_inBuffer in = {zeros, len, 0};
    cr_assert_eq(ZSTD_compressStream2(cc, &o, &in, ZSTD_e_end), 0);
    *wire = o.pos;
    ZSTD_freeCCtx(cc);
    free(zeros);
    return out;
}

Test(handover_codec, decompression_bombs_are_refused)
{
    ch_codec_rx *rx;
    cr_assert_eq(ch_codec_rx_new(MAX_RAW, &rx), 0);
    uint8_t h[CH_CODEC_HDR];
    ch_codec_hdr hdr;
    const uint8_t *back;
    size_t wire;
    uint8_t *bomb = zeros_frame(64u << 20, true, &wire); /* 64 MiB of content, a few KiB */
    cr_assert_lt(wire, 64u << 10);

    put_hdr(h, CH_CODEC_ZSTD, 64u << 20, (uint32_t)wire, 0); /* honest header: too big */
    cr_assert_eq(ch_codec_hdr_parse(h, CH_CODEC_HDR, MAX_RAW, &hdr), -EMSGSIZE);

    put_hdr(h, CH_CODEC_ZSTD, 64u << 10, (uint32_t)wire, 0); /* lying header: small */
    cr_assert_eq(ch_codec_hdr_parse(h, CH_CODEC_HDR, MAX_RAW, &hdr), 0);
    cr_assert_eq(ch_codec_rx_decode(rx, &hdr, bomb, &back), -EBADMSG);
    free(bomb);

    /* A frame that does not declare its content size is refused too. */
    bomb = zeros_frame(64u << 10, false, &wire);
    put_hdr(h, CH_CODEC_ZSTD, 64u << 10, (uint32_t)wire, 0);
    cr_assert_eq(ch_codec_hdr_parse(h, CH_CODEC_HDR, MAX_RAW, &hdr), 0);
    cr_assert_eq(ch_codec_rx_decode(rx, &hdr, bomb, &back), -EBADMSG);
    free(bomb);

    /* Two honest frames back to back declare less than they hold. */
    size_t w1;
    uint8_t *one = zeros_frame(32u << 10, true, &w1);
    uint8_t two[2048];
    cr_assert_leq(2 * w1, sizeof(two));
    memcpy(two, one, w1);
    memcpy(two + w1, one, w1);
    put_hdr(h, CH_CODEC_ZSTD, 32u << 10, (uint32_t)(2 * w1), 0);
    cr_assert_eq(ch_codec_hdr_parse(h, CH_CODEC_HDR, MAX_RAW, &hdr), 0);
    cr_assert_eq(ch_codec_rx_decode(rx, &hdr, two, &back), -EBADMSG);
    free(one);
    ch_codec_rx_free(rx);
}

/* --- auto ----------------------------------------------------------------------------- */

/* Encodes one batch and returns the codec it went with. */
static uint8_t encode_one(ch_codec *c, const uint8_t *raw, size_t len)
{
    ch_codec_out out;
    cr_assert_eq(ch_codec_encode(c, raw, len, &out), 0);
    return out.codec;
}

#define FAST_LINK 1000000000000000ull /* bytes in one second: 1 PB/s */
#define SLOW_LINK 1000ull             /* 1 KB/s */
#define SECOND    1000000000ull

Test(handover_codec, auto_sends_raw_on_a_fast_link_and_compresses_on_a_slow_one)
{
    enum { LEN = 256 << 10 };
    uint8_t *raw = json_like(LEN, 6);
    ch_codec *c = codec_new("auto");
    ch_codec_stats st;
    cr_assert_eq(encode_one(c, raw, LEN), CH_CODEC_ZSTD, "no news from the link: measure");

    ch_codec_feedback(c, FAST_LINK, SECOND);
    ch_codec_stats_get(c, &st);
    cr_assert_not(st.auto_zstd);
    cr_assert_eq(encode_one(c, raw, LEN), CH_CODEC_RAW);

    for (int i = 0; i < 200; i++) /* the average forgets the fast link */
        ch_codec_feedback(c, SLOW_LINK, SECOND);
    ch_codec_stats_get(c, &st);
    cr_assert(st.auto_zstd, "link %.0f B/s, compressor %.0f B/s", st.link_rate, st.compress_rate);
    cr_assert_eq(encode_one(c, raw, LEN), CH_CODEC_ZSTD);

    ch_codec_feedback(c, FAST_LINK, SECOND); /* while compressing: a pace in wire bytes */
    ch_codec_stats_get(c, &st);
    cr_assert(st.auto_zstd, "a sample taken while compressing does not count");
    int back = 0;
    while (back < 64 && encode_one(c, raw, LEN) == CH_CODEC_ZSTD)
        back++;
    cr_assert_lt(back, 64, "and back to raw once the slow sample is stale");
    ch_codec_feedback(c, FAST_LINK, SECOND);
    cr_assert_eq(encode_one(c, raw, LEN), CH_CODEC_RAW, "and raw it stays on a fast link");
    ch_codec_free(c);
    free(raw);
}

Test(handover_codec, auto_sends_raw_to_a_link_that_never_held_a_backlog)
{
    enum { LEN = 256 << 10 };
    uint8_t *raw = json_like(LEN, 8);
    ch_codec *c = codec_new("auto");
    cr_assert_eq(encode_one(c, raw, LEN), CH_CODEC_ZSTD, "the first batch measures zstd");
    cr_assert_eq(encode_one(c, raw, LEN), CH_CODEC_RAW, "no backlog reported: it keeps up");
    ch_codec_free(c);
    free(raw);
}

/* An auto codec that measured zstd on one batch of raw, then heard that the link moves
 * `link` bytes a second. */
static ch_codec *auto_told(const uint8_t *raw, size_t len, uint64_t link)
{
    ch_codec *c = codec_new("auto");
    encode_one(c, raw, len);
    ch_codec_feedback(c, link, SECOND);
    return c;
}

/* A slow sample taken once, then no news while compressing (the link keeps up with the
 * compressed stream): auto forgets it and tries raw, and a link that is slow indeed says
 * so again at once. */
Test(handover_codec, auto_forgets_a_slow_link_that_stopped_reporting_and_tries_raw)
{
    enum { LEN = 64 << 10 };
    uint8_t *raw = json_like(LEN, 9);
    ch_codec *c = auto_told(raw, LEN, SLOW_LINK);
    int first_raw = -1;
    for (int i = 0; i < 200 && first_raw < 0; i++)
        if (encode_one(c, raw, LEN) == CH_CODEC_RAW) first_raw = i;
    cr_assert_geq(first_raw, 16, "it compresses while the sample is fresh (%d)", first_raw);
    cr_assert_lt(first_raw, 128, "and tries raw once it is stale (%d)", first_raw);
    for (int i = 0; i < 10; i++) /* raw now: its samples count */
        ch_codec_feedback(c, SLOW_LINK, SECOND);
    cr_assert_eq(encode_one(c, raw, LEN), CH_CODEC_ZSTD, "slow again: it compresses again");
    ch_codec_free(c);
    free(raw);
}

Test(handover_codec, auto_keeps_measuring_zstd_while_it_sends_raw)
{
    enum { LEN = 64 << 10 };
    uint8_t *raw = json_like(LEN, 7);
    ch_codec *c = auto_told(raw, LEN, FAST_LINK);
    size_t zstd = 0;
    for (int i = 0; i < 100; i++)
        zstd += encode_one(c, raw, LEN) == CH_CODEC_ZSTD;
    ch_codec_stats st;
    ch_codec_stats_get(c, &st);
    cr_assert_geq(st.probes, 3, "probes %llu", (unsigned long long)st.probes);
    cr_assert_eq(zstd, st.probes, "each probe sends its compressed batch");
    cr_assert_lt(zstd, 10, "probes back off while raw keeps winning");
    ch_codec_free(c);
    free(raw);
}

Test(handover_codec, auto_sends_incompressible_batches_raw_even_on_a_slow_link)
{
    enum { LEN = 64 << 10 };
    uint8_t *raw = random_bytes(LEN, 8);
    ch_codec *c = codec_new("auto");
    ch_codec_feedback(c, SLOW_LINK, SECOND);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(encode_one(c, raw, LEN), CH_CODEC_RAW);
    ch_codec_stats st;
    ch_codec_stats_get(c, &st);
    cr_assert_not(st.auto_zstd);
    cr_assert_lt(st.ratio, 1.1);
    ch_codec_free(c);
    free(raw);
}

Test(handover_codec, an_oversize_batch_round_trips_and_so_does_a_small_one_after_it)
{
    enum { BIG = 8u << 20, SMALL = 64u << 10 };
    uint8_t *big = json_like(BIG, 9);
    ch_codec *c = codec_new("zstd:1");
    ch_codec_rx *rx;
    cr_assert_eq(ch_codec_rx_new(16u << 20, &rx), 0);
    ch_codec_out out;
    const uint8_t *back;
    cr_assert_eq(ch_codec_encode(c, big, BIG, &out), 0);
    cr_assert_eq(receive(rx, &out, &back), 0);
    cr_assert_arr_eq(back, big, BIG);
    cr_assert_eq(ch_codec_encode(c, big, SMALL, &out), 0);
    cr_assert_eq(receive(rx, &out, &back), 0);
    cr_assert_arr_eq(back, big, SMALL);
    ch_codec_rx_free(rx);
    ch_codec_free(c);
    free(big);
}
