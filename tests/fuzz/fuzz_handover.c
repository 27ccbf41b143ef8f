/*
 * tests/fuzz/fuzz_handover.c - libFuzzer target for what a peer's handover stream puts in
 * front of the receiver: a codec header, its payload (raw or zstd), and the batch of
 * records inside. Whatever the bytes, parsing must fail cleanly or yield records whose
 * every pointer lies inside the buffer; nothing may crash, leak or allocate past the limit.
 */
#include "migration/hbatch.h"
#include "migration/codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_RAW (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void walk(const uint8_t *buf, size_t len)
{
    uint32_t count = 0;
    int valid = ch_hbatch_validate(buf, len, &count) == 0;
    ch_hbatch_reader r;
    ch_hbatch_reader_init(&r, buf, len);
    ch_hbatch_rec rec;
    uint32_t seen = 0;
    int rc;
    while ((rc = ch_hbatch_read(&r, &rec)) == 1) {
        if (rec.id < (const char *)buf || rec.id + rec.id_len > (const char *)buf + len) abort();
        if (rec.data && (rec.data < buf || rec.data + rec.len > buf + len)) abort();
        seen++;
    }
    if (valid && (rc != 0 || seen != count)) abort(); /* validate and read must agree */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The input itself as a decompressed batch (aligned copy, as the receiver has). */
    uint8_t *copy = aligned_alloc(64, (size + 63) & ~(size_t)63);
    if (!copy) return 0;
    if (size) memcpy(copy, data, size);
    walk(copy, size);
    free(copy);

    /* The input as a codec frame: header, then payload. */
    ch_codec_hdr h;
    if (ch_codec_hdr_parse(data, size, MAX_RAW, &h) != 0) return 0;
    if (size - CH_CODEC_HDR < h.wire_len) return 0;
    ch_codec_rx *rx;
    if (ch_codec_rx_new(MAX_RAW, &rx) != 0) return 0;
    uint8_t *space = ch_codec_rx_space(rx, &h);
    const uint8_t *raw = NULL;
    if (space) {
        memcpy(space, data + CH_CODEC_HDR, h.wire_len);
        if (ch_codec_rx_decode(rx, &h, space, &raw) == 0) walk(raw, h.raw_len);
    }
    ch_codec_rx_free(rx);
    return 0;
}
