/*
 * tests/test_seal.c - per-frame authenticated encryption (net/seal.h).
 *
 * Two ch_seal, an initiator's and an acceptor's, share a session key as two ends of a
 * connection would; frames sealed by one are decoded and opened by the other in memory.
 * Attacks are played by editing, replaying, reordering or reflecting those bytes. Every
 * test runs with each cipher this machine has.
 */
#define _GNU_SOURCE /* memmem */
#include <criterion/criterion.h>

#include "net/handshake.h"
#include "net/seal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COOKIE "0123456789abcdef-seal-cookie"

static const uint8_t session[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31};

/* The ciphers to test: ChaCha20-Poly1305 always, AES-256-GCM where the CPU has it. */
static size_t ciphers(enum ch_seal_cipher out[2])
{
    size_t n = 0;
    out[n++] = CH_SEAL_CHACHA20POLY1305;
    if (ch_seal_caps() & CH_CAP_AES256GCM) out[n++] = CH_SEAL_AES256GCM;
    return n;
}

/* Both ends of one connection. */
typedef struct ends {
    ch_seal i, a; /* initiator, acceptor */
} ends;

static void ends_init(ends *e, enum ch_seal_cipher cipher)
{
    cr_assert_eq(ch_seal_init(&e->i, cipher, session, true), 0);
    cr_assert_eq(ch_seal_init(&e->a, cipher, session, false), 0);
}

/* One sealed frame in a buffer of its own. */
typedef struct sealed {
    uint8_t *b;
    size_t len; /* header + ciphertext + tag */
} sealed;

static sealed seal(ch_seal *s, enum ch_frame_type type, uint16_t flags, const void *p, size_t n)
{
    sealed f = {malloc(CH_FRAME_HDR + n + CH_SEAL_TAG), CH_FRAME_HDR + n + CH_SEAL_TAG};
    cr_assert_not_null(f.b);
    if (n) memcpy(f.b + CH_FRAME_HDR, p, n);
    cr_assert_eq(ch_seal_frame(s, f.b, type, flags, n), 0);
    return f;
}

static sealed copy(sealed f)
{
    sealed c = {malloc(f.len), f.len};
    cr_assert_not_null(c.b);
    memcpy(c.b, f.b, f.len);
    return c;
}

/* Decodes f as the transport would, then opens it: ch_seal_open's result, or the
 * decoder's error. */
static int open_as(ch_seal *s, sealed f, ch_frame *out)
{
    int n = ch_frame_decode_sealed(f.b, f.len, 0, out);
    if (n <= 0) return n < 0 ? n : -EAGAIN;
    cr_assert_eq((size_t)n, f.len, "one whole frame");
    return ch_seal_open(s, f.b, out);
}

static void pattern(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 31 + seed);
}

Test(seal, frames_round_trip_in_both_directions)
{
    enum ch_seal_cipher cs[2];
    static uint8_t msg[70000];
    pattern(msg, sizeof(msg), 7);
    const size_t sizes[] = {0, 1, 15, 16, 17, 100, 4096, 65536, sizeof(msg)};
    for (size_t k = 0, nc = ciphers(cs); k < nc; k++) {
        ends e;
        ends_init(&e, cs[k]);
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
            size_t n = sizes[i];
            bool to_acceptor = i % 2 == 0;
            sealed f = seal(to_acceptor ? &e.i : &e.a, CH_F_CAST, (uint16_t)(0x100 + i), msg, n);
            cr_assert_eq(f.len, CH_FRAME_HDR + n + CH_SEAL_TAG);
            static const uint8_t zero[8];
            cr_assert_arr_eq(f.b + 8, zero, 8, "a sealed frame's checksum is 0");
            if (n >= 16)
                cr_assert(memcmp(f.b + CH_FRAME_HDR, msg, n) != 0, "the payload is encrypted");
            ch_frame got;
            cr_assert_eq(open_as(to_acceptor ? &e.a : &e.i, f, &got), 0, "%s, %zu bytes",
                         ch_seal_cipher_name(cs[k]), n);
            cr_assert_eq(got.type, CH_F_CAST);
            cr_assert_eq(got.flags, 0x100 + i);
            cr_assert_eq(got.len, n);
            cr_assert_eq(got.payload, f.b + CH_FRAME_HDR, "opened in place");
            if (n) cr_assert_arr_eq(got.payload, msg, n);
            free(f.b);
        }
        cr_assert_eq(e.i.tx.n, 5);
        cr_assert_eq(e.a.rx.n, 5);
        cr_assert_eq(e.a.tx.n, 4);
        cr_assert_eq(e.i.rx.n, 4);
        ch_seal_wipe(&e.i);
        ch_seal_wipe(&e.a);
    }
}

Test(seal, sealing_the_same_payload_twice_gives_different_bytes)
{
    enum ch_seal_cipher cs[2];
    for (size_t k = 0, nc = ciphers(cs); k < nc; k++) {
        ends e;
        ends_init(&e, cs[k]);
        sealed f1 = seal(&e.i, CH_F_PING, 0, "same bytes", 10);
        sealed f2 = seal(&e.i, CH_F_PING, 0, "same bytes", 10);
        cr_assert(memcmp(f1.b + CH_FRAME_HDR, f2.b + CH_FRAME_HDR, 10 + CH_SEAL_TAG) != 0,
                  "the counter is the nonce: equal plaintexts do not show");
        free(f1.b);
        free(f2.b);
    }
}

Test(seal, altered_ciphertext_header_or_tag_is_refused)
{
    enum ch_seal_cipher cs[2];
    uint8_t msg[300];
    pattern(msg, sizeof(msg), 3);
    for (size_t k = 0, nc = ciphers(cs); k < nc; k++) {
        ends e;
        ends_init(&e, cs[k]);
        sealed good = seal(&e.i, CH_F_CALL, 5, msg, sizeof(msg));
        /* Single-bit flips all over the payload (ciphertext then tag). */
        for (size_t at = CH_FRAME_HDR; at < good.len; at += 7) {
            sealed bad = copy(good);
            bad.b[at] ^= (uint8_t)(1u << (at % 8));
            ch_frame f;
            cr_assert_eq(open_as(&e.a, bad, &f), -EBADMSG, "%s: byte %zu",
                         ch_seal_cipher_name(cs[k]), at);
            free(bad.b);
        }
        /* The header: type, flags, length (shorter: the tag moves), checksum (must be 0). */
        sealed bad = copy(good);
        bad.b[1] = CH_F_CAST;
        ch_frame f;
        cr_assert_eq(open_as(&e.a, bad, &f), -EBADMSG, "type changed");
        free(bad.b);
        bad = copy(good);
        bad.b[2] ^= 1;
        cr_assert_eq(open_as(&e.a, bad, &f), -EBADMSG, "flags changed");
        free(bad.b);
        bad = copy(good);
        bad.len -= 1;
        bad.b[4] = (uint8_t)(bad.b[4] - 1); /* length - 1 (no borrow: 316 = 0x13c) */
        cr_assert_eq(open_as(&e.a, bad, &f), -EBADMSG, "truncated by one byte");
        free(bad.b);
        bad = copy(good);
        bad.b[15] = 0x80;
        cr_assert_eq(open_as(&e.a, bad, &f), -EBADMSG, "checksum field set");
        free(bad.b);
        cr_assert_eq(e.a.rx.n, 0, "the counter moves only on success");
        /* The genuine frame still opens: refusals consumed nothing. */
        cr_assert_eq(open_as(&e.a, good, &f), 0);
        cr_assert_arr_eq(f.payload, msg, sizeof(msg));
        free(good.b);
    }
}

Test(seal, frame_shorter_than_a_tag_is_refused)
{
    enum ch_seal_cipher cs[2];
    for (size_t k = 0, nc = ciphers(cs); k < nc; k++) {
        ends e;
        ends_init(&e, cs[k]);
        for (size_t n = 0; n < CH_SEAL_TAG; n++) {
            uint8_t b[CH_FRAME_HDR + CH_SEAL_TAG] = {0};
            ch_frame_header_sealed(b, CH_F_PING, 0, (uint32_t)n);
            sealed f = {b, CH_FRAME_HDR + n};
            ch_frame got;
            cr_assert_eq(open_as(&e.a, f, &got), -EBADMSG, "%zu bytes", n);
        }
    }
}

Test(seal, replayed_or_reordered_frames_are_refused)
{
    enum ch_seal_cipher cs[2];
    for (size_t k = 0, nc = ciphers(cs); k < nc; k++) {
        ends e;
        ends_init(&e, cs[k]);
        sealed f0 = seal(&e.i, CH_F_CAST, 0, "first", 5);
        sealed f1 = seal(&e.i, CH_F_CAST, 0, "second", 6);
        sealed f2 = seal(&e.i, CH_F_CAST, 0, "third", 5);
        sealed c0 = copy(f0), c1 = copy(f1);
        ch_frame f;
        cr_assert_eq(open_as(&e.a, c1, &f), -EBADMSG, "frame 1 before frame 0");
        cr_assert_eq(open_as(&e.a, f0, &f), 0);
        cr_assert_eq(open_as(&e.a, c0, &f), -EBADMSG, "frame 0 replayed");
        cr_assert_eq(open_as(&e.a, f2, &f), -EBADMSG, "frame 1 dropped");
        cr_assert_eq(open_as(&e.a, f1, &f), 0);
        cr_assert_arr_eq(f.payload, "second", 6);
        free(f0.b);
        free(f1.b);
        free(f2.b);
        free(c0.b);
        free(c1.b);
    }
}

Test(seal, frames_under_another_key_are_refused)
{
    enum ch_seal_cipher cs[2];
    size_t nc = ciphers(cs);
    for (size_t k = 0; k < nc; k++) {
        ends e;
        ends_init(&e, cs[k]);
        /* Reflected: the initiator's own frame fed back to it (its rx key is the
         * acceptor's tx key, never its own). */
        sealed f = seal(&e.i, CH_F_CAST, 0, "mine", 4);
        sealed again = copy(f), third = copy(f); /* a refusal may wipe the bytes */
        ch_frame got;
        cr_assert_eq(open_as(&e.i, f, &got), -EBADMSG, "reflected to its sender");
        /* Another connection (another session key). */
        uint8_t other_key[32];
        memcpy(other_key, session, sizeof(other_key));
        other_key[0] ^= 0x80;
        ch_seal other;
        cr_assert_eq(ch_seal_init(&other, cs[k], other_key, false), 0);
        cr_assert_eq(open_as(&other, again, &got), -EBADMSG, "another connection's key");
        /* The same direction's key was still right: */
        cr_assert_eq(open_as(&e.a, third, &got), 0);
        cr_assert_arr_eq(got.payload, "mine", 4);
        free(f.b);
        free(again.b);
        free(third.b);
    }
    if (nc == 2) { /* one key never serves both ciphers */
        ch_seal aes, chacha;
        cr_assert_eq(ch_seal_init(&aes, CH_SEAL_AES256GCM, session, true), 0);
        cr_assert_eq(ch_seal_init(&chacha, CH_SEAL_CHACHA20POLY1305, session, false), 0);
        sealed f = seal(&aes, CH_F_CAST, 0, "cipher", 6);
        ch_frame got;
        cr_assert_eq(open_as(&chacha, f, &got), -EBADMSG);
        free(f.b);
    }
}

Test(seal, limits_and_misuse_are_refused)
{
    ch_seal s = {0};
    uint8_t b[CH_FRAME_HDR + 8 + CH_SEAL_TAG] = {0};
    cr_assert_eq(ch_seal_frame(&s, b, CH_F_PING, 0, 8), -EINVAL, "not initialised");
    cr_assert_eq(ch_seal_init(&s, (enum ch_seal_cipher)9, session, true), -EINVAL);
    cr_assert_eq(ch_seal_init(&s, CH_SEAL_CHACHA20POLY1305, session, true), 0);
    cr_assert_eq(ch_seal_frame(&s, b, CH_F_PING, 0, (size_t)CH_SEAL_PLAIN_MAX + 1), -EMSGSIZE);
    s.tx.n = UINT64_MAX;
    cr_assert_eq(ch_seal_frame(&s, b, CH_F_PING, 0, 8), -EOVERFLOW, "a nonce is never reused");
    s.tx.n = 0;
    cr_assert_eq(ch_seal_frame(&s, b, CH_F_PING, 0, 8), 0);
    ch_frame f;
    cr_assert_gt(ch_frame_decode_sealed(b, sizeof(b), 0, &f), 0);
    f.payload = b; /* not the frame's payload */
    cr_assert_eq(ch_seal_open(&s, b, &f), -EINVAL);
    ch_seal_wipe(&s);
    cr_assert_gt(ch_frame_decode_sealed(b, sizeof(b), 0, &f), 0);
    cr_assert_eq(ch_seal_open(&s, b, &f), -EINVAL, "wiped");
}

Test(seal, cipher_choice_is_symmetric)
{
    cr_assert_eq(ch_seal_choose(CH_CAP_AES256GCM, CH_CAP_AES256GCM), CH_SEAL_AES256GCM);
    cr_assert_eq(ch_seal_choose(CH_CAP_AES256GCM, 0), CH_SEAL_CHACHA20POLY1305);
    cr_assert_eq(ch_seal_choose(0, CH_CAP_AES256GCM), CH_SEAL_CHACHA20POLY1305);
    cr_assert_eq(ch_seal_choose(0, 0), CH_SEAL_CHACHA20POLY1305);
    cr_assert_eq(ch_seal_choose(0xfe, 0xff), CH_SEAL_CHACHA20POLY1305, "unknown bits ignored");
    cr_assert_eq(ch_seal_choose(0xff, 0xff), CH_SEAL_AES256GCM);
    cr_assert_str_eq(ch_seal_cipher_name(CH_SEAL_AES256GCM), "AES-256-GCM");
    cr_assert_str_eq(ch_seal_cipher_name(0), "?");
}

/* --- keys from a real handshake ---------------------------------------------------------- */

typedef struct side {
    ch_hs hs;
    ch_wbuf out;
    int rc;
} side;

static void side_init(side *s, bool initiator, uint64_t node, uint8_t caps)
{
    ch_hello h = {.node_id = node, .cores = 2, .caps = caps, .role = CH_ROLE_PEER};
    snprintf(h.hub_id, sizeof(h.hub_id), "corehub");
    ch_wbuf_init(&s->out);
    s->rc = 0;
    cr_assert_eq(ch_hs_init(&s->hs, initiator, &h, COOKIE, strlen(COOKIE)), 0);
    cr_assert_eq(ch_hs_start(&s->hs, &s->out), 0);
}

/* Moves what `from` wrote to `to`; `edit`, if set, may change each frame first. */
static void deliver(side *from, side *to, void (*edit)(uint8_t *frame, size_t len))
{
    ch_wbuf bytes = from->out;
    ch_wbuf_init(&from->out);
    for (size_t off = 0; off < bytes.len && to->rc >= 0;) {
        ch_frame f;
        if (edit) edit(bytes.data + off, bytes.len - off);
        int n = ch_frame_decode(bytes.data + off, bytes.len - off, CH_HS_FRAME_MAX, &f);
        cr_assert_gt(n, 0);
        off += (size_t)n;
        to->rc = ch_hs_on_frame(&to->hs, &f, &to->out);
    }
    ch_wbuf_free(&bytes);
}

static void handshake(side *i, side *a, void (*edit)(uint8_t *, size_t))
{
    while ((i->out.len || a->out.len) && i->rc >= 0 && a->rc >= 0) {
        deliver(i, a, edit);
        deliver(a, i, NULL);
    }
}

static void sides_free(side *i, side *a)
{
    ch_hs_clear(&i->hs);
    ch_hs_clear(&a->hs);
    ch_wbuf_free(&i->out);
    ch_wbuf_free(&a->out);
}

Test(seal, keys_from_a_handshake_agree_on_both_sides)
{
    uint8_t local = ch_seal_caps();
    const uint8_t caps[][2] = {{local, local}, {local, 0}, {0, local}, {0, 0}};
    for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
        side i, a;
        side_init(&i, true, 1, caps[k][0]);
        side_init(&a, false, 2, caps[k][1]);
        handshake(&i, &a, NULL);
        cr_assert_eq(i.rc, CH_HS_DONE);
        cr_assert_eq(a.rc, CH_HS_DONE);
        ch_seal si, sa;
        cr_assert_eq(ch_seal_init_hs(&si, &i.hs), 0);
        cr_assert_eq(ch_seal_init_hs(&sa, &a.hs), 0);
        cr_assert_eq(si.cipher, sa.cipher, "both sides pick the same cipher");
        cr_assert_eq(si.cipher, ch_seal_choose(caps[k][0], caps[k][1]));
        sealed f = seal(&si, CH_F_JOIN, 0, "hello acceptor", 14);
        ch_frame got;
        cr_assert_eq(open_as(&sa, f, &got), 0, "%s", ch_seal_cipher_name(si.cipher));
        free(f.b);
        f = seal(&sa, CH_F_VIEW, 0, "hello initiator", 15);
        cr_assert_eq(open_as(&si, f, &got), 0);
        free(f.b);
        sides_free(&i, &a);
    }
}

Test(seal, unfinished_handshake_gives_no_keys)
{
    side i, a;
    side_init(&i, true, 1, 0);
    side_init(&a, false, 2, 0);
    ch_seal s;
    cr_assert_eq(ch_seal_init_hs(&s, &i.hs), -EINVAL);
    deliver(&i, &a, NULL); /* a has i's HELLO, not its AUTH */
    cr_assert_eq(ch_seal_init_hs(&s, &a.hs), -EINVAL);
    sides_free(&i, &a);
}

/* A man in the middle clears the initiator's AES capability (the caps byte follows
 * version, hub id, node id, incarnation and cores) and fixes the checksum. */
static void strip_caps(uint8_t *frame, size_t len)
{
    if (frame[1] != CH_F_HELLO) return;
    size_t hub_len = frame[CH_FRAME_HDR + 1];
    uint8_t *caps = frame + CH_FRAME_HDR + 1 + 1 + hub_len + 8 + 8 + 2;
    cr_assert_lt((size_t)(caps - frame), len);
    *caps = 0;
    uint32_t n = (uint32_t)frame[4] | (uint32_t)frame[5] << 8;
    ch_frame_header_write(frame, CH_F_HELLO, 0, frame + CH_FRAME_HDR, n);
}

Test(seal, a_downgraded_cipher_fails_the_handshake)
{
    side i, a;
    side_init(&i, true, 1, CH_CAP_AES256GCM);
    side_init(&a, false, 2, CH_CAP_AES256GCM);
    handshake(&i, &a, strip_caps);
    cr_assert(i.rc == -EACCES || a.rc == -EACCES, "the AUTH MACs cover the caps: %d %d", i.rc,
              a.rc);
    cr_assert(!ch_hs_done(&i.hs) || !ch_hs_done(&a.hs));
    sides_free(&i, &a);
}

/* --- records ------------------------------------------------------------------------------ */

/* Seals a record of `n` frames into w (reset first); frame k has sizes[k] bytes of
 * pattern(k) and type CAST, flags k. */
static void seal_record(ch_seal *s, ch_wbuf *w, const size_t *sizes, size_t n)
{
    static uint8_t p[70000];
    ch_wbuf_reset(w);
    size_t at = ch_seal_record_begin(w);
    for (size_t k = 0; k < n; k++) {
        pattern(p, sizes[k], (unsigned)k);
        cr_assert_eq(ch_seal_record_put(w, CH_F_CAST, (uint16_t)k, p, sizes[k] / 2,
                                        p + sizes[k] / 2, sizes[k] - sizes[k] / 2),
                     0);
    }
    cr_assert_eq(ch_seal_record_end(s, w, at), 0);
}

/* Decodes and opens the record in w as the transport would: ch_seal_record_open's result
 * or the decoder's error. */
static int open_record(ch_seal *s, ch_wbuf *w, ch_frame *rec)
{
    int n = ch_frame_decode_sealed(w->data, w->len, 0, rec);
    if (n <= 0) return n < 0 ? n : -EAGAIN;
    cr_assert_eq((size_t)n, w->len);
    return ch_seal_record_open(s, w->data, rec);
}

Test(seal, records_carry_their_frames_in_order)
{
    enum ch_seal_cipher cs[2];
    const size_t sizes[] = {0, 1, 100, 4096, 70000, 3};
    const size_t n = sizeof(sizes) / sizeof(sizes[0]);
    for (size_t k = 0, nc = ciphers(cs); k < nc; k++) {
        ends e;
        ends_init(&e, cs[k]);
        ch_wbuf w;
        ch_wbuf_init(&w);
        for (int round = 0; round < 3; round++) {
            seal_record(&e.i, &w, sizes, n);
            cr_assert_eq(w.data[1], CH_F_SEALED);
            cr_assert_null(memmem(w.data, w.len, "\x01\x0d\x02\x00", 4), "no inner header shows");
            ch_frame rec, f;
            cr_assert_eq(open_record(&e.a, &w, &rec), 0, "%s", ch_seal_cipher_name(cs[k]));
            size_t pos = 0, got = 0;
            int rc;
            static uint8_t want[70000];
            while ((rc = ch_seal_record_next(&rec, &pos, 0, &f)) == 1) {
                cr_assert_lt(got, n);
                cr_assert_eq(f.type, CH_F_CAST);
                cr_assert_eq(f.flags, got);
                cr_assert_eq(f.len, sizes[got]);
                pattern(want, sizes[got], (unsigned)got);
                if (f.len) cr_assert_arr_eq(f.payload, want, f.len, "frame %zu", got);
                got++;
            }
            cr_assert_eq(rc, 0);
            cr_assert_eq(got, n);
        }
        cr_assert_eq(e.a.rx.n, 3, "one nonce per record");
        ch_wbuf_free(&w);
    }
}

Test(seal, a_sealed_frame_that_is_no_record_is_refused)
{
    ends e;
    ends_init(&e, CH_SEAL_CHACHA20POLY1305);
    sealed f = seal(&e.i, CH_F_CAST, 0, "not a record", 12);
    ch_frame got;
    cr_assert_gt(ch_frame_decode_sealed(f.b, f.len, 0, &got), 0);
    cr_assert_eq(ch_seal_record_open(&e.a, f.b, &got), -EPROTO);
    cr_assert_eq(e.a.rx.n, 0);
    free(f.b);
}

/* Seals `plain` (len bytes) as a record's plaintext, whatever it holds, and opens it. */
static void seal_raw_record(ends *e, const void *plain, size_t len, ch_frame *rec, ch_wbuf *w)
{
    ch_wbuf_reset(w);
    size_t at = ch_seal_record_begin(w);
    cr_assert_eq(ch_wbuf_put_bytes(w, plain, len), 0);
    cr_assert_eq(ch_seal_record_end(&e->i, w, at), 0);
    cr_assert_eq(open_record(&e->a, w, rec), 0);
}

Test(seal, a_record_with_a_bad_frame_inside_is_refused)
{
    ends e;
    ends_init(&e, CH_SEAL_CHACHA20POLY1305);
    ch_wbuf w, plain;
    ch_wbuf_init(&w);
    ch_wbuf_init(&plain);
    ch_frame rec, f;
    size_t pos;

    /* A truncated frame: one good frame, then 5 bytes of a header. */
    cr_assert_eq(ch_seal_record_put(&plain, CH_F_PING, 0, "ok", 2, NULL, 0), 0);
    cr_assert_eq(ch_seal_record_put(&plain, CH_F_PING, 0, "cut", 3, NULL, 0), 0);
    seal_raw_record(&e, plain.data, plain.len - 3 - CH_FRAME_HDR + 5, &rec, &w);
    pos = 0;
    cr_assert_eq(ch_seal_record_next(&rec, &pos, 0, &f), 1);
    cr_assert_eq(ch_seal_record_next(&rec, &pos, 0, &f), -EBADMSG, "truncated");

    /* A record in a record. */
    ch_wbuf_reset(&plain);
    cr_assert_eq(ch_seal_record_put(&plain, CH_F_SEALED, 0, "x", 1, NULL, 0), 0);
    seal_raw_record(&e, plain.data, plain.len, &rec, &w);
    pos = 0;
    cr_assert_eq(ch_seal_record_next(&rec, &pos, 0, &f), -EBADMSG, "nested");

    /* A frame with a checksum, an unknown type, one over the reader's limit. */
    ch_wbuf_reset(&plain);
    cr_assert_eq(ch_frame_write(&plain, CH_F_CAST, 0, "summed", 6), 0);
    seal_raw_record(&e, plain.data, plain.len, &rec, &w);
    pos = 0;
    cr_assert_eq(ch_seal_record_next(&rec, &pos, 0, &f), -EBADMSG, "checksum in a record");
    ch_wbuf_reset(&plain);
    cr_assert_eq(ch_seal_record_put(&plain, CH_F__COUNT, 0, "?", 1, NULL, 0), 0);
    seal_raw_record(&e, plain.data, plain.len, &rec, &w);
    pos = 0;
    cr_assert_eq(ch_seal_record_next(&rec, &pos, 0, &f), -ENOMSG, "unknown type");
    ch_wbuf_reset(&plain);
    cr_assert_eq(ch_seal_record_put(&plain, CH_F_CAST, 0, "0123456789", 10, NULL, 0), 0);
    seal_raw_record(&e, plain.data, plain.len, &rec, &w);
    pos = 0;
    cr_assert_eq(ch_seal_record_next(&rec, &pos, 9, &f), -EMSGSIZE, "over the limit");

    /* An empty record is fine: nothing in it. */
    seal_raw_record(&e, NULL, 0, &rec, &w);
    pos = 0;
    cr_assert_eq(ch_seal_record_next(&rec, &pos, 0, &f), 0);
    ch_wbuf_free(&w);
    ch_wbuf_free(&plain);
}

Test(seal, record_size_limits_hold)
{
    ends e;
    ends_init(&e, CH_SEAL_CHACHA20POLY1305);
    ch_wbuf w;
    ch_wbuf_init(&w);
    uint8_t *big = calloc(1, CH_SEAL_FRAME_MAX + 1);
    cr_assert_not_null(big);
    size_t at = ch_seal_record_begin(&w);
    cr_assert_eq(ch_seal_record_put(&w, CH_F_CAST, 0, big, CH_SEAL_FRAME_MAX + 1, NULL, 0),
                 -EMSGSIZE);
    cr_assert_eq(w.len, at + CH_FRAME_HDR, "nothing appended");
    cr_assert_eq(w.err, 0, "the buffer stays usable");
    cr_assert_eq(ch_seal_record_put(&w, CH_F_CAST, 0, big, CH_SEAL_FRAME_MAX, NULL, 0), 0);
    cr_assert_eq(ch_seal_record_end(&e.i, &w, at), 0, "the largest frame fits a record");
    cr_assert_eq(w.len, CH_FRAME_HDR + CH_FRAME_MAX);
    ch_frame rec, f;
    cr_assert_eq(open_record(&e.a, &w, &rec), 0);
    size_t pos = 0;
    cr_assert_eq(ch_seal_record_next(&rec, &pos, 0, &f), 1);
    cr_assert_eq(f.len, CH_SEAL_FRAME_MAX);

    /* Two frames that do not fit one record together: refused, and cut from w. */
    ch_wbuf_reset(&w);
    at = ch_seal_record_begin(&w);
    cr_assert_eq(ch_seal_record_put(&w, CH_F_CAST, 0, big, CH_SEAL_FRAME_MAX, NULL, 0), 0);
    cr_assert_eq(ch_seal_record_put(&w, CH_F_CAST, 0, "x", 1, NULL, 0), 0);
    uint64_t n = e.i.tx.n;
    cr_assert_eq(ch_seal_record_end(&e.i, &w, at), -EMSGSIZE);
    cr_assert_eq(w.len, at, "nothing unsealed stays");
    cr_assert_eq(e.i.tx.n, n);
    free(big);
    ch_wbuf_free(&w);
}
