/*
 * tests/test_hist.c - the log-linear histogram of pauses (core/hist.h): every value lands in
 * a bucket whose midpoint is within 1/32 of it, buckets are ordered, and quantiles read
 * back within that error.
 */
#include "core/hist.h"

#include <criterion/criterion.h>
#include <stdint.h>

static double rel_error(uint64_t v)
{
    uint64_t got = ch_hist_value(ch_hist_index(v));
    double d = got > v ? (double)(got - v) : (double)(v - got);
    return v ? d / (double)v : d;
}

Test(hist, small_values_are_exact)
{
    for (uint64_t v = 0; v < CH_HIST_SUB; v++) {
        cr_expect_eq(ch_hist_index(v), v);
        cr_expect_eq(ch_hist_value(ch_hist_index(v)), v);
    }
}

Test(hist, every_value_is_within_a_32nd_of_its_bucket)
{
    uint64_t worst_v = 0;
    double worst = 0;
    for (uint64_t v = 1; v < (1ull << 36); v = v + 1 + v / 97) {
        double e = rel_error(v);
        if (e > worst) worst = e, worst_v = v;
    }
    for (unsigned o = 4; o < 36; o++) { /* both edges of every power of two */
        uint64_t p = 1ull << o;
        double e = rel_error(p - 1) > rel_error(p) ? rel_error(p - 1) : rel_error(p);
        if (e > worst) worst = e, worst_v = p;
    }
    cr_expect_leq(worst, 1.0 / 32 + 1e-12, "worst relative error %.4f at %llu", worst,
                  (unsigned long long)worst_v);
}

Test(hist, a_value_lies_in_its_bucket_and_buckets_are_ordered)
{
    unsigned last = 0;
    for (uint64_t v = 0; v < (1ull << 30); v = v + 1 + v / 61) {
        unsigned i = ch_hist_index(v);
        uint64_t width, lower = ch_hist_lower(i, &width);
        cr_assert(lower <= v && v < lower + width, "%llu outside bucket %u [%llu, +%llu)",
                  (unsigned long long)v, i, (unsigned long long)lower, (unsigned long long)width);
        cr_assert_geq(i, last, "buckets out of order at %llu", (unsigned long long)v);
        cr_assert_lt(i, CH_HIST_BUCKETS);
        last = i;
    }
}

Test(hist, values_past_the_range_share_the_last_bucket)
{
    cr_expect_eq(ch_hist_index(1ull << CH_HIST_OCTAVES), CH_HIST_BUCKETS - 1);
    cr_expect_eq(ch_hist_index(UINT64_MAX), CH_HIST_BUCKETS - 1);
    cr_expect_lt(ch_hist_index((1ull << CH_HIST_OCTAVES) - 1), CH_HIST_BUCKETS);
}

Test(hist, quantiles_read_back_within_the_bucket_error)
{
    static uint64_t h[CH_HIST_BUCKETS];
    cr_expect_eq(ch_hist_quantile(h, 99), 0, "empty: 0");
    for (uint64_t v = 1; v <= 100000; v++)
        h[ch_hist_index(v)]++;
    struct {
        unsigned q;
        double want;
    } cases[] = {{1, 1000}, {50, 50000}, {99, 99000}, {100, 100000}};
    for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
        double got = (double)ch_hist_quantile(h, cases[k].q);
        double e =
            (got > cases[k].want ? got - cases[k].want : cases[k].want - got) / cases[k].want;
        cr_expect_leq(e, 1.0 / 32 + 1e-9, "p%u: %.0f for %.0f", cases[k].q, got, cases[k].want);
    }
}

Test(hist, a_single_pause_is_every_quantile)
{
    static uint64_t h[CH_HIST_BUCKETS];
    h[ch_hist_index(8000)] = 1; /* one pause of 8 ms */
    cr_expect_eq(ch_hist_quantile(h, 0), ch_hist_quantile(h, 100));
    cr_expect_leq(rel_error(8000), 1.0 / 32);
}

Test(hist, log2_summary_matches_the_power_of_two)
{
    cr_expect_eq(ch_hist_log2(ch_hist_index(0)), 0);
    cr_expect_eq(ch_hist_log2(ch_hist_index(1)), 0);
    cr_expect_eq(ch_hist_log2(ch_hist_index(3)), 1);
    for (unsigned o = 2; o < 32; o++) {
        cr_expect_eq(ch_hist_log2(ch_hist_index(1ull << o)), o, "2^%u", o);
        cr_expect_eq(ch_hist_log2(ch_hist_index((2ull << o) - 1)), o, "2^%u+", o);
    }
    cr_expect_eq(ch_hist_log2(ch_hist_index(1ull << 34)), 31, "clamped");
}
