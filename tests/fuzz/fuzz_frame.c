/*
 * tests/fuzz/fuzz_frame.c - libFuzzer target for the frame decoder and the handshake.
 *
 * Every input is read three ways, each with fresh state:
 * 1. as a byte stream: ch_frame_decode in a loop at the hard maximum, each BATCH walked;
 * 2. as a byte stream decoded at the handshake limit, each frame fed to an acceptor
 *    handshake (the path an unauthenticated peer controls);
 * 3. as chunks (fuzz_common.h) made into valid frames, fed to an acceptor and to an
 *    initiator, so that HELLO and AUTH payload decoding is exercised in depth;
 * 4. as a byte stream of sealed records, each opened in place (net/seal.h) by an
 *    acceptor holding fuzz_session, with each cipher this machine has, and walked.
 * The properties checked are those of the sanitizers (no out-of-bounds access, no UB, no
 * leak), the decoder's contract (a frame never claims more bytes than it was given),
 * authentication itself: without the cookie no input may complete a handshake, and the
 * opener's contract (a refusal leaves the counter where it was; success strips the tag;
 * a record's frames stay within it).
 */
#include "fuzz_common.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond)
{
    if (!cond) abort(); /* a broken contract: report it as a crash */
}

/* Walks every frame of the stream, and every frame of each batch. */
static void fuzz_stream(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        ch_frame f;
        int n = ch_frame_decode(data + off, size - off, CH_FRAME_MAX, &f);
        if (n <= 0) return;
        check((size_t)n <= size - off && (size_t)n == CH_FRAME_HDR + f.len);
        check(f.type > 0 && f.type < CH_F__COUNT);
        off += (size_t)n;
        if (f.type != CH_F_BATCH) continue;
        ch_frame inner;
        size_t pos = 0;
        while (ch_frame_batch_next(&f, &pos, &inner) == 1)
            check(pos <= f.len && inner.payload + inner.len <= f.payload + f.len);
    }
}

static int hs_new(ch_hs *hs, bool initiator, ch_wbuf *out)
{
    ch_hello mine = fuzz_hello(initiator ? 1 : 2, CH_ROLE_PEER);
    ch_wbuf_init(out);
    return ch_hs_init(hs, initiator, &mine, FUZZ_COOKIE, strlen(FUZZ_COOKIE));
}

/* Feeds the frames of a stream to hs until it refuses, finishes or runs out. */
static void hs_feed_stream(ch_hs *hs, ch_wbuf *out, const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        ch_frame f;
        int n = ch_frame_decode(data + off, size - off, CH_HS_FRAME_MAX, &f);
        if (n <= 0) return;
        off += (size_t)n;
        int rc = ch_hs_on_frame(hs, &f, out);
        check(rc < 0 || ch_hs_error(hs)[0] == '\0');
        check(rc != CH_HS_DONE); /* that would be a forged MAC */
        if (rc != CH_HS_CONTINUE) return;
        check(ch_hs_peer(hs) == NULL);
    }
}

static void fuzz_acceptor(const uint8_t *data, size_t size)
{
    ch_hs hs;
    ch_wbuf out;
    if (hs_new(&hs, false, &out) == 0) hs_feed_stream(&hs, &out, data, size);
    ch_hs_clear(&hs);
    ch_wbuf_free(&out);
}

/* Turns the input's chunks into valid frames in w. */
static void chunks_to_frames(const uint8_t *data, size_t size, ch_wbuf *w)
{
    size_t off = 0;
    while (size - off >= 3) {
        uint8_t type = data[off];
        size_t len = (size_t)data[off + 1] | (size_t)data[off + 2] << 8;
        off += 3;
        if (len > size - off) len = size - off;
        ch_frame_write(w, (enum ch_frame_type)type, 0, data + off, len);
        off += len;
    }
}

static void fuzz_chunks(const uint8_t *data, size_t size)
{
    ch_wbuf frames;
    ch_wbuf_init(&frames);
    chunks_to_frames(data, size, &frames);
    for (int initiator = 0; initiator < 2 && frames.err == 0; initiator++) {
        ch_hs hs;
        ch_wbuf out;
        if (hs_new(&hs, initiator, &out) == 0) {
            ch_hs_start(&hs, &out);
            hs_feed_stream(&hs, &out, frames.data, frames.len);
        }
        ch_hs_clear(&hs);
        ch_wbuf_free(&out);
    }
    ch_wbuf_free(&frames);
}

/* Opens every record of a copy of the stream, in order, until one is refused, and walks
 * the frames of each. */
static void fuzz_sealed(const uint8_t *data, size_t size, enum ch_seal_cipher cipher)
{
    ch_seal s;
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy || ch_seal_init(&s, cipher, fuzz_session, false) < 0) {
        free(copy);
        return;
    }
    memcpy(copy, data, size);
    for (size_t off = 0; off < size;) {
        ch_frame f;
        int n = ch_frame_decode_sealed(copy + off, size - off, CH_FRAME_MAX, &f);
        if (n <= 0) break;
        check((size_t)n <= size - off && (size_t)n == CH_FRAME_HDR + f.len);
        uint64_t before = s.rx.n;
        uint32_t len = f.len;
        int rc = ch_seal_record_open(&s, copy + off, &f);
        check(rc == 0 ? s.rx.n == before + 1 && f.len == len - CH_SEAL_TAG : s.rx.n == before);
        if (rc < 0) break;
        size_t pos = 0;
        ch_frame inner;
        while (ch_seal_record_next(&f, &pos, CH_FRAME_MAX, &inner) == 1)
            check(pos <= f.len && inner.payload + inner.len <= f.payload + f.len);
        off += (size_t)n;
    }
    ch_seal_wipe(&s);
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_stream(data, size);
    fuzz_sealed(data, size, CH_SEAL_CHACHA20POLY1305);
    if (ch_seal_caps() & CH_CAP_AES256GCM) fuzz_sealed(data, size, CH_SEAL_AES256GCM);
    fuzz_acceptor(data, size);
    fuzz_chunks(data, size);
    ch_hello h;
    ch_hello_decode(data, size, &h);
    return 0;
}
