/*
 * tests/fuzz/gen_corpus.c - writes the seed corpus of fuzz_frame into a directory.
 *
 * Run once when the wire format changes (`fuzz_corpus_gen tests/fuzz/corpus`) and commit
 * the files: valid HELLO, AUTH, PING and BATCH frames as a real handshake writes them,
 * truncated and corrupted variants, the same payloads in the fuzzer's chunk form, and
 * frames sealed with fuzz_session.
 */
#include "fuzz_common.h"

#include <errno.h>
#include <stdlib.h>

static const char *dir;
static int failures;

static void save(const char *name, const void *data, size_t len)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, len, f) != len || fclose(f) != 0) {
        fprintf(stderr, "gen_corpus: cannot write %s\n", path);
        failures++;
        return;
    }
    printf("%-28s %zu bytes\n", name, len);
}

/* A chunk: u8 type | u16 length | payload. */
static void put_chunk(ch_wbuf *w, uint8_t type, const void *p, size_t len)
{
    ch_wbuf_put_u8(w, type);
    ch_wbuf_put_u16(w, (uint16_t)len);
    ch_wbuf_put_bytes(w, p, len);
}

/* A real initiator's first two frames (HELLO, then AUTH over an acceptor's HELLO). */
static int real_session(uint8_t role, ch_wbuf *hello, ch_wbuf *auth)
{
    ch_hs i, a;
    ch_wbuf ia;
    ch_hello hi = fuzz_hello(1, role), ha = fuzz_hello(2, CH_ROLE_PEER);
    ch_wbuf_init(&ia);
    if (ch_hs_init(&i, true, &hi, FUZZ_COOKIE, strlen(FUZZ_COOKIE)) < 0 ||
        ch_hs_init(&a, false, &ha, FUZZ_COOKIE, strlen(FUZZ_COOKIE)) < 0)
        return -EINVAL;
    ch_hs_start(&i, hello);
    ch_hs_start(&a, &ia);
    ch_frame f;
    int rc = ch_frame_decode(ia.data, ia.len, 0, &f);
    if (rc > 0) rc = ch_hs_on_frame(&i, &f, auth);
    ch_hs_clear(&i);
    ch_hs_clear(&a);
    ch_wbuf_free(&ia);
    return rc;
}

static void frames(void)
{
    ch_wbuf hello, auth, w;
    ch_wbuf_init(&hello);
    ch_wbuf_init(&auth);
    ch_wbuf_init(&w);
    if (real_session(CH_ROLE_PEER, &hello, &auth) < 0) failures++;
    save("hello_peer", hello.data, hello.len);
    save("auth", auth.data, auth.len);
    ch_wbuf_put_bytes(&w, hello.data, hello.len);
    ch_wbuf_put_bytes(&w, auth.data, auth.len);
    save("hello_auth", w.data, w.len);
    save("hello_trunc_header", hello.data, 10);
    save("hello_trunc_payload", hello.data, hello.len - 5);
    ch_wbuf_reset(&w);
    ch_wbuf_put_bytes(&w, hello.data, hello.len);
    w.data[CH_FRAME_HDR + 3] ^= 0xff;
    save("hello_bad_sum", w.data, w.len);

    ch_wbuf_reset(&w);
    ch_frame_write(&w, CH_F_PING, 0, NULL, 0);
    save("ping", w.data, w.len);
    ch_wbuf_reset(&w);
    size_t at = ch_frame_begin(&w);
    ch_frame_write(&w, CH_F_PING, 0, NULL, 0);
    ch_frame_write(&w, CH_F_CAST, 0, "cast", 4);
    ch_frame_write(&w, CH_F_ACK, 1, "ack", 3);
    ch_frame_end(&w, at, CH_F_BATCH, 0);
    save("batch", w.data, w.len);
    ch_wbuf_free(&hello);
    ch_wbuf_free(&auth);
    ch_wbuf_free(&w);
}

/* Records an initiator sealed with fuzz_session (one frame, then three): the fuzzer's
 * sealed reading opens them. */
static void sealed(enum ch_seal_cipher cipher, const char *name)
{
    ch_seal s;
    if (ch_seal_init(&s, cipher, fuzz_session, true) < 0) return; /* no AES here: skip */
    ch_wbuf w;
    ch_wbuf_init(&w);
    static const char *const payloads[] = {"", "cast", "a somewhat longer sealed payload"};
    for (size_t r = 0, i = 0; r < 2; r++) {
        size_t at = ch_seal_record_begin(&w);
        for (size_t end = r == 0 ? 1 : 3; i < end; i++)
            if (ch_seal_record_put(&w, i == 1 ? CH_F_CAST : CH_F_PING, 0, payloads[i],
                                   strlen(payloads[i]), NULL, 0) < 0)
                failures++;
        if (ch_seal_record_end(&s, &w, at) < 0) failures++;
        if (r == 0) i = 0;
    }
    save(name, w.data, w.len);
    ch_seal_wipe(&s);
    ch_wbuf_free(&w);
}

static void chunks(void)
{
    ch_wbuf hello, auth, w;
    ch_wbuf_init(&hello);
    ch_wbuf_init(&auth);
    ch_wbuf_init(&w);
    if (real_session(CH_ROLE_LANE, &hello, &auth) < 0) failures++;
    const uint8_t *hp = hello.data + CH_FRAME_HDR, *ap = auth.data + CH_FRAME_HDR;
    size_t hl = hello.len - CH_FRAME_HDR, al = auth.len - CH_FRAME_HDR;
    put_chunk(&w, CH_F_HELLO, hp, hl);
    put_chunk(&w, CH_F_AUTH, ap, al);
    save("chunks_hello_lane_auth", w.data, w.len);
    ch_wbuf_reset(&w);
    put_chunk(&w, CH_F_HELLO, hp, hl - 7);
    save("chunks_hello_short", w.data, w.len);
    ch_wbuf_reset(&w);
    put_chunk(&w, CH_F_HELLO, hp, hl);
    put_chunk(&w, CH_F_CAST, "x", 1);
    save("chunks_hello_cast", w.data, w.len);
    ch_wbuf_free(&hello);
    ch_wbuf_free(&auth);
    ch_wbuf_free(&w);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    dir = argv[1];
    frames();
    chunks();
    sealed(CH_SEAL_CHACHA20POLY1305, "sealed_chacha");
    sealed(CH_SEAL_AES256GCM, "sealed_aes");
    return failures ? 1 : 0;
}
