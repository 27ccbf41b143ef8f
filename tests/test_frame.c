/*
 * tests/test_frame.c - frame headers, the incremental decoder and batches (net/frame.h).
 *
 * The decoder must return a frame only when all of it is there, 0 when it needs more
 * (reading nothing past `avail`), and refuse a bad header as soon as the bytes that show it
 * have arrived.
 */
#include <criterion/criterion.h>

#include "net/frame.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

/* A frame of `type` with payload "payload-<n>" of n+8 bytes, appended to w. */
static void put_frame(ch_wbuf *w, enum ch_frame_type type, size_t n)
{
    char p[300];
    memset(p, 'a' + (int)(n % 26), sizeof(p));
    memcpy(p, "payload-", 8);
    cr_assert_eq(ch_frame_write(w, type, (uint16_t)n, p, n + 8), 0);
}

/* The decoder on a heap copy of exactly `avail` bytes, so ASan sees any read past them. */
static int decode_exact(const uint8_t *buf, size_t avail, uint32_t max, ch_frame *f, uint8_t **copy)
{
    *copy = malloc(avail ? avail : 1);
    cr_assert_not_null(*copy);
    memcpy(*copy, buf, avail);
    return ch_frame_decode(*copy, avail, max, f);
}

Test(frame, header_layout_is_the_documented_one)
{
    uint8_t h[CH_FRAME_HDR];
    ch_frame_header_write(h, CH_F_CAST, 0x0102, "abc", 3);
    cr_assert_eq(h[0], CH_FRAME_VERSION);
    cr_assert_eq(h[1], CH_F_CAST);
    cr_assert_eq(h[2] | h[3] << 8, 0x0102);
    cr_assert_eq(h[4] | h[5] << 8 | h[6] << 16 | (uint32_t)h[7] << 24, 3);
    uint64_t sum = 0;
    for (int i = 0; i < 8; i++)
        sum |= (uint64_t)h[8 + i] << (8 * i);
    cr_assert_eq(sum, XXH3_64bits("abc", 3));
}

Test(frame, type_numbers_are_fixed)
{
    cr_assert_eq(CH_F_HELLO, 1);
    cr_assert_eq(CH_F_PING, 3);
    cr_assert_eq(CH_F_CAST, 13);
    cr_assert_eq(CH_F_PARTITION_RESET, 22);
    cr_assert_eq(CH_F_BATCH, 23);
    cr_assert_eq(CH_F_SEALED, 24);
    cr_assert_eq(CH_F_MIG_BARRIER, 25);
    cr_assert_eq(CH_F_MIG_QUERY, 29);
    cr_assert_eq(CH_F_MIG_PIN, 30);
    cr_assert_eq(CH_F_MIG_LANES, 31); /* new types only ever go at the end */
    cr_assert_eq(CH_F__COUNT, 32);
    cr_assert_str_eq(ch_frame_type_name(CH_F_REG_SYNC_REQ), "REG_SYNC_REQ");
    cr_assert_str_eq(ch_frame_type_name(0), "?");
    cr_assert_str_eq(ch_frame_type_name(CH_F__COUNT), "?");
}

Test(frame, round_trip)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    put_frame(&w, CH_F_CALL, 5);
    ch_frame f;
    cr_assert_eq(ch_frame_decode(w.data, w.len, 0, &f), (int)w.len);
    cr_assert_eq(f.type, CH_F_CALL);
    cr_assert_eq(f.flags, 5);
    cr_assert_eq(f.len, 13);
    cr_assert_eq(f.payload, w.data + CH_FRAME_HDR);
    cr_assert_arr_eq(f.payload, "payload-", 8);
    ch_wbuf_free(&w);
}

Test(frame, empty_payload_round_trips)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    cr_assert_eq(ch_frame_write(&w, CH_F_PING, 0, NULL, 0), 0);
    ch_frame f;
    cr_assert_eq(ch_frame_decode(w.data, w.len, 0, &f), CH_FRAME_HDR);
    cr_assert_eq(f.type, CH_F_PING);
    cr_assert_eq(f.len, 0);
    ch_wbuf_free(&w);
}

Test(frame, truncated_header_needs_more)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    put_frame(&w, CH_F_PING, 0);
    for (size_t n = 0; n < CH_FRAME_HDR; n++) {
        ch_frame f;
        uint8_t *copy;
        cr_assert_eq(decode_exact(w.data, n, 0, &f, &copy), 0, "%zu header bytes", n);
        free(copy);
    }
    ch_wbuf_free(&w);
}

Test(frame, truncated_payload_needs_more)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    put_frame(&w, CH_F_REPLY, 100);
    for (size_t n = CH_FRAME_HDR; n < w.len; n++) {
        ch_frame f;
        uint8_t *copy;
        cr_assert_eq(decode_exact(w.data, n, 0, &f, &copy), 0, "%zu of %zu bytes", n, w.len);
        free(copy);
    }
    ch_wbuf_free(&w);
}

Test(frame, bad_version_is_refused_from_the_first_byte)
{
    uint8_t h[CH_FRAME_HDR];
    ch_frame_header_write(h, CH_F_PING, 0, NULL, 0);
    h[0] = 2;
    ch_frame f;
    cr_assert_eq(ch_frame_decode(h, 1, 0, &f), -EPROTO);
    cr_assert_eq(ch_frame_decode(h, sizeof(h), 0, &f), -EPROTO);
    h[0] = 0;
    cr_assert_eq(ch_frame_decode(h, sizeof(h), 0, &f), -EPROTO);
}

Test(frame, unknown_type_is_refused)
{
    uint8_t h[CH_FRAME_HDR];
    ch_frame f;
    const int bad[] = {0, CH_F__COUNT, 200, 255};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ch_frame_header_write(h, CH_F_PING, 0, NULL, 0);
        h[1] = (uint8_t)bad[i];
        cr_assert_eq(ch_frame_decode(h, 2, 0, &f), -ENOMSG, "type %d, 2 bytes", bad[i]);
        cr_assert_eq(ch_frame_decode(h, sizeof(h), 0, &f), -ENOMSG, "type %d", bad[i]);
    }
}

Test(frame, every_known_type_decodes)
{
    for (int t = CH_F_HELLO; t < CH_F__COUNT; t++) {
        uint8_t h[CH_FRAME_HDR];
        ch_frame f;
        ch_frame_header_write(h, (enum ch_frame_type)t, 0, NULL, 0);
        cr_assert_eq(ch_frame_decode(h, sizeof(h), 0, &f), CH_FRAME_HDR, "type %d", t);
        cr_assert_eq(f.type, t);
    }
}

Test(frame, oversize_length_is_refused_from_the_header_alone)
{
    uint8_t h[CH_FRAME_HDR];
    ch_frame f;
    /* The header claims CH_FRAME_MAX + 1 bytes; none of them is there. */
    ch_frame_header_write(h, CH_F_CAST, 0, NULL, 0);
    uint32_t len = CH_FRAME_MAX + 1;
    memcpy(h + 4, &(uint8_t[]){len, len >> 8, len >> 16, len >> 24}, 4);
    cr_assert_eq(ch_frame_decode(h, 8, 0, &f), -EMSGSIZE);
    cr_assert_eq(ch_frame_decode(h, sizeof(h), UINT32_MAX, &f), -EMSGSIZE,
                 "a connection limit cannot exceed the hard maximum");
    memset(h + 4, 0xff, 4);
    cr_assert_eq(ch_frame_decode(h, sizeof(h), 0, &f), -EMSGSIZE);
}

Test(frame, connection_limit_is_enforced)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    put_frame(&w, CH_F_CAST, 92); /* 100-byte payload */
    ch_frame f;
    cr_assert_eq(ch_frame_decode(w.data, 8, 99, &f), -EMSGSIZE);
    cr_assert_eq(ch_frame_decode(w.data, w.len, 100, &f), (int)w.len);
    ch_wbuf_free(&w);
}

Test(frame, largest_frame_is_accepted)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    size_t at = ch_frame_begin(&w);
    uint8_t *p = ch_wbuf_put_space(&w, CH_FRAME_MAX);
    cr_assert_not_null(p);
    memset(p, 0x5a, CH_FRAME_MAX);
    cr_assert_eq(ch_frame_end(&w, at, CH_F_REG_SYNC, 0), 0);
    ch_frame f;
    cr_assert_eq(ch_frame_decode(w.data, w.len, 0, &f), CH_FRAME_HDR + CH_FRAME_MAX);
    cr_assert_eq(f.len, CH_FRAME_MAX);
    ch_wbuf_free(&w);
}

Test(frame, writing_an_oversize_frame_fails)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    cr_assert_eq(ch_frame_write(&w, CH_F_CAST, 0, "", (size_t)CH_FRAME_MAX + 1), -EMSGSIZE);
    cr_assert_eq(w.len, 0);
    ch_wbuf_free(&w);
}

Test(frame, bad_checksum_is_refused)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    put_frame(&w, CH_F_CAST, 10);
    ch_frame f;
    w.data[CH_FRAME_HDR + 3] ^= 1; /* payload */
    cr_assert_eq(ch_frame_decode(w.data, w.len, 0, &f), -EBADMSG);
    w.data[CH_FRAME_HDR + 3] ^= 1;
    w.data[12] ^= 0x80; /* checksum */
    cr_assert_eq(ch_frame_decode(w.data, w.len, 0, &f), -EBADMSG);
    ch_wbuf_free(&w);
}

Test(frame, sealed_frames_carry_no_checksum)
{
    uint8_t b[CH_FRAME_HDR + 40];
    memset(b + CH_FRAME_HDR, 0xab, 40);
    ch_frame_header_sealed(b, CH_F_CAST, 0x0203, 40);
    ch_frame f;
    cr_assert_eq(ch_frame_decode_sealed(b, sizeof(b), 0, &f), (int)sizeof(b));
    cr_assert_eq(f.type, CH_F_CAST);
    cr_assert_eq(f.flags, 0x0203);
    cr_assert_eq(f.len, 40);
    cr_assert_eq(f.payload, b + CH_FRAME_HDR);
    cr_assert_eq(ch_frame_decode_sealed(b, sizeof(b) - 1, 0, &f), 0, "needs the payload");
    cr_assert_eq(ch_frame_decode(b, sizeof(b), 0, &f), -EBADMSG, "0 is no XXH3 of it");

    /* A frame with a checksum is no sealed frame: refused once the header is in. */
    ch_frame_header_write(b, CH_F_CAST, 0, b + CH_FRAME_HDR, 40);
    cr_assert_eq(ch_frame_decode_sealed(b, CH_FRAME_HDR - 1, 0, &f), 0);
    cr_assert_eq(ch_frame_decode_sealed(b, CH_FRAME_HDR, 0, &f), -EBADMSG);

    /* The header checks are the same as for any frame. */
    ch_frame_header_sealed(b, CH_F_CAST, 0, 40);
    cr_assert_eq(ch_frame_decode_sealed(b, 8, 39, &f), -EMSGSIZE);
    b[1] = CH_F__COUNT;
    cr_assert_eq(ch_frame_decode_sealed(b, 2, 0, &f), -ENOMSG);
    b[0] = CH_FRAME_VERSION + 1;
    cr_assert_eq(ch_frame_decode_sealed(b, 1, 0, &f), -EPROTO);
}

Test(frame, stream_fed_byte_by_byte_yields_every_frame)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    const int types[] = {CH_F_HELLO, CH_F_PING, CH_F_CAST, CH_F_REG_SYNC, CH_F_ACK};
    for (size_t i = 0; i < 5; i++)
        put_frame(&w, (enum ch_frame_type)types[i], i * 50);
    cr_assert_eq(ch_frame_write(&w, CH_F_LEAVE, 0, NULL, 0), 0);

    /* A receive buffer that grows one byte at a time, consumed as frames complete. */
    size_t have = 0, off = 0, got = 0;
    while (have < w.len) {
        have++;
        for (;;) {
            ch_frame f;
            uint8_t *copy;
            int n = decode_exact(w.data + off, have - off, 0, &f, &copy);
            free(copy);
            cr_assert_geq(n, 0, "error %d at byte %zu", n, have);
            if (n == 0) break;
            cr_assert_eq(f.type, got < 5 ? types[got] : CH_F_LEAVE);
            cr_assert_eq(f.len, got < 5 ? got * 50 + 8 : 0);
            off += (size_t)n;
            got++;
        }
    }
    cr_assert_eq(got, 6);
    cr_assert_eq(off, w.len);
    ch_wbuf_free(&w);
}

Test(frame, batch_carries_several_frames)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    size_t at = ch_frame_begin(&w);
    for (size_t i = 0; i < 3; i++)
        put_frame(&w, CH_F_CAST, i);
    cr_assert_eq(ch_frame_end(&w, at, CH_F_BATCH, 0), 0);

    ch_frame batch, inner;
    cr_assert_eq(ch_frame_decode(w.data, w.len, 0, &batch), (int)w.len);
    cr_assert_eq(batch.type, CH_F_BATCH);
    size_t pos = 0, n = 0;
    int rc;
    while ((rc = ch_frame_batch_next(&batch, &pos, &inner)) == 1) {
        cr_assert_eq(inner.type, CH_F_CAST);
        cr_assert_eq(inner.flags, n);
        n++;
    }
    cr_assert_eq(rc, 0);
    cr_assert_eq(n, 3);
    ch_wbuf_free(&w);
}

Test(frame, batch_with_a_truncated_or_nested_frame_is_malformed)
{
    ch_wbuf inner;
    ch_wbuf_init(&inner);
    put_frame(&inner, CH_F_CAST, 4);
    ch_wbuf w;
    ch_wbuf_init(&w);
    cr_assert_eq(ch_frame_write(&w, CH_F_BATCH, 0, inner.data, inner.len - 1), 0);
    ch_frame batch, f;
    size_t pos = 0;
    cr_assert_gt(ch_frame_decode(w.data, w.len, 0, &batch), 0);
    cr_assert_eq(ch_frame_batch_next(&batch, &pos, &f), -EBADMSG);

    ch_wbuf_reset(&w);
    cr_assert_eq(ch_frame_write(&w, CH_F_BATCH, 0, NULL, 0), 0);
    ch_wbuf nested;
    ch_wbuf_init(&nested);
    cr_assert_eq(ch_frame_write(&nested, CH_F_BATCH, 0, w.data, w.len), 0);
    pos = 0;
    cr_assert_gt(ch_frame_decode(nested.data, nested.len, 0, &batch), 0);
    cr_assert_eq(ch_frame_batch_next(&batch, &pos, &f), -EBADMSG);
    ch_wbuf_free(&nested);
    ch_wbuf_free(&w);
    ch_wbuf_free(&inner);
}

Test(frame, end_without_a_begun_header_is_refused)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u8(&w, 1);
    cr_assert_eq(ch_frame_end(&w, 0, CH_F_PING, 0), -EINVAL);
    ch_wbuf_free(&w);
}
