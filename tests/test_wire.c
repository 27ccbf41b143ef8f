/*
 * tests/test_wire.c - the bounds-checked little-endian writer and reader (net/wire.h).
 */
#include <criterion/criterion.h>

#include "net/wire.h"

#include <errno.h>
#include <string.h>

Test(wire, round_trips_every_type)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u8(&w, 0xab);
    ch_wbuf_put_u16(&w, 0xbeef);
    ch_wbuf_put_u32(&w, 0xdeadbeefu);
    ch_wbuf_put_u64(&w, 0x0123456789abcdefull);
    ch_wbuf_put_bytes(&w, "xyz", 3);
    ch_wbuf_put_str8(&w, "hub", 3);
    ch_wbuf_put_blob32(&w, "blob!", 5);
    cr_assert_eq(ch_wbuf_put_str8(&w, "", 0), 0);
    cr_assert_eq(w.err, 0);
    cr_assert_eq(w.len, 1 + 2 + 4 + 8 + 3 + 4 + 9 + 1);

    ch_rbuf r;
    ch_rbuf_init(&r, w.data, w.len);
    cr_assert_eq(ch_rbuf_get_u8(&r), 0xab);
    cr_assert_eq(ch_rbuf_get_u16(&r), 0xbeef);
    cr_assert_eq(ch_rbuf_get_u32(&r), 0xdeadbeefu);
    cr_assert_eq(ch_rbuf_get_u64(&r), 0x0123456789abcdefull);
    char xyz[3];
    ch_rbuf_copy(&r, xyz, 3);
    cr_assert_arr_eq(xyz, "xyz", 3);
    ch_span s = ch_rbuf_get_str8(&r);
    cr_assert(s.len == 3 && memcmp(s.p, "hub", 3) == 0);
    ch_span b = ch_rbuf_get_blob32(&r);
    cr_assert(b.len == 5 && memcmp(b.p, "blob!", 5) == 0);
    cr_assert_eq(ch_rbuf_get_str8(&r).len, 0);
    cr_assert(ch_rbuf_done(&r));
    ch_wbuf_free(&w);
}

Test(wire, encoding_is_little_endian)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    ch_wbuf_put_u32(&w, 0x04030201u);
    ch_wbuf_put_u16(&w, 0x0605);
    cr_assert_arr_eq(w.data, ((uint8_t[]){1, 2, 3, 4, 5, 6}), 6);
    ch_wbuf_free(&w);
}

Test(wire, writer_grows_past_its_first_allocation)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    for (uint32_t i = 0; i < 100000; i++)
        ch_wbuf_put_u32(&w, i);
    cr_assert_eq(w.err, 0);
    cr_assert_eq(w.len, 400000);
    ch_rbuf r;
    ch_rbuf_init(&r, w.data, w.len);
    for (uint32_t i = 0; i < 100000; i++)
        cr_assert_eq(ch_rbuf_get_u32(&r), i);
    cr_assert(ch_rbuf_done(&r));
    ch_wbuf_free(&w);
}

Test(wire, too_long_str8_is_a_sticky_error)
{
    char big[256] = {0};
    ch_wbuf w;
    ch_wbuf_init(&w);
    cr_assert_eq(ch_wbuf_put_str8(&w, big, 255), 0);
    size_t len = w.len;
    cr_assert_eq(ch_wbuf_put_str8(&w, big, 256), -EINVAL);
    cr_assert_eq(ch_wbuf_put_u8(&w, 1), -EINVAL, "puts after an error keep failing");
    cr_assert_eq(w.len, len, "and write nothing");
    ch_wbuf_reset(&w);
    cr_assert_eq(ch_wbuf_put_u8(&w, 1), 0, "reset clears the error");
    ch_wbuf_free(&w);
}

Test(wire, impossible_reservation_fails_with_enomem)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    cr_assert_eq(ch_wbuf_reserve(&w, SIZE_MAX - 8), -ENOMEM);
    cr_assert_null(ch_wbuf_put_space(&w, 1));
    cr_assert_eq(w.err, -ENOMEM);
    ch_wbuf_free(&w);
}

Test(wire, short_read_sets_the_error_and_returns_zeros)
{
    const uint8_t in[3] = {1, 2, 3};
    ch_rbuf r;
    ch_rbuf_init(&r, in, sizeof(in));
    cr_assert_eq(ch_rbuf_get_u32(&r), 0);
    cr_assert_not(ch_rbuf_ok(&r));
    cr_assert_eq(ch_rbuf_get_u8(&r), 0, "sticky: even a byte that is there reads as 0");
    cr_assert_eq(ch_rbuf_left(&r), 0);
}

Test(wire, length_prefix_past_the_end_gives_an_empty_span)
{
    const uint8_t str[] = {200, 'a', 'b'};
    ch_rbuf r;
    ch_rbuf_init(&r, str, sizeof(str));
    ch_span s = ch_rbuf_get_str8(&r);
    cr_assert_eq(s.len, 0);
    cr_assert_not_null(s.p);
    cr_assert_not(ch_rbuf_ok(&r));

    const uint8_t blob[] = {0xff, 0xff, 0xff, 0xff, 'x'};
    ch_rbuf_init(&r, blob, sizeof(blob));
    cr_assert_eq(ch_rbuf_get_blob32(&r).len, 0);
    cr_assert_not(ch_rbuf_ok(&r));
}

Test(wire, failed_copy_zeroes_the_destination)
{
    uint8_t dst[4] = {9, 9, 9, 9};
    ch_rbuf r;
    ch_rbuf_init(&r, "ab", 2);
    ch_rbuf_copy(&r, dst, sizeof(dst));
    cr_assert_arr_eq(dst, ((uint8_t[]){0, 0, 0, 0}), 4);
    cr_assert_not(ch_rbuf_ok(&r));
}

Test(wire, trailing_bytes_are_not_done)
{
    ch_rbuf r;
    ch_rbuf_init(&r, "abc", 3);
    ch_rbuf_get_u16(&r);
    cr_assert(ch_rbuf_ok(&r));
    cr_assert_not(ch_rbuf_done(&r));
    cr_assert_eq(ch_rbuf_left(&r), 1);
}

Test(wire, empty_or_null_input_reads_as_short)
{
    ch_rbuf r;
    ch_rbuf_init(&r, NULL, 10);
    cr_assert_eq(ch_rbuf_left(&r), 0);
    cr_assert(ch_rbuf_done(&r));
    cr_assert_eq(ch_rbuf_get_u8(&r), 0);
    cr_assert_not(ch_rbuf_ok(&r));
}

Test(wire, cstr8_copies_a_printable_string)
{
    const uint8_t in[] = {5, 'h', 'e', 'l', 'l', 'o'};
    char dst[8];
    ch_rbuf r;
    ch_rbuf_init(&r, in, sizeof(in));
    cr_assert_eq(ch_rbuf_get_cstr8(&r, dst, sizeof(dst)), 5);
    cr_assert_str_eq(dst, "hello");
    cr_assert(ch_rbuf_done(&r));
}

Test(wire, cstr8_refuses_too_long_or_unprintable_strings)
{
    const uint8_t long_in[] = {5, 'h', 'e', 'l', 'l', 'o'};
    const uint8_t nul_in[] = {3, 'a', 0, 'b'};
    const uint8_t esc_in[] = {2, 0x1b, '['};
    const uint8_t *cases[] = {long_in, nul_in, esc_in};
    const size_t lens[] = {sizeof(long_in), sizeof(nul_in), sizeof(esc_in)};
    for (size_t i = 0; i < 3; i++) {
        char dst[5] = "zzzz";
        ch_rbuf r;
        ch_rbuf_init(&r, cases[i], lens[i]);
        cr_assert_eq(ch_rbuf_get_cstr8(&r, dst, sizeof(dst)), 0, "case %zu", i);
        cr_assert_str_eq(dst, "", "case %zu", i);
        cr_assert_not(ch_rbuf_ok(&r), "case %zu", i);
    }
}

Test(wire, decoder_check_failure_is_sticky)
{
    ch_rbuf r;
    ch_rbuf_init(&r, "abcd", 4);
    ch_rbuf_fail(&r);
    cr_assert_eq(ch_rbuf_get_u8(&r), 0);
    cr_assert_not(ch_rbuf_done(&r));
}
