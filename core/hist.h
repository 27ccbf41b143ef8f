/*
 * core/hist.h - a log-linear histogram of microsecond values, HdrHistogram's layout in
 * miniature: values below 16 have a bucket each; above, each power of two is cut into 16
 * buckets of equal width. A bucket's midpoint is within 1/32 (3.1%) of every value in it,
 * which is what a p99 pause needs (log2 buckets could only say 8, 16, 33, 66 ms...).
 * Values from 2^CH_HIST_OCTAVES microseconds (19 hours) on share the last bucket.
 *
 * Pure functions; the counters that use them are the reactors' (ch_counters.pause).
 */
#ifndef CH_CORE_HIST_H
#define CH_CORE_HIST_H

#include <stddef.h>
#include <stdint.h>

#define CH_HIST_SUB_BITS 4
#define CH_HIST_SUB      (1u << CH_HIST_SUB_BITS) /* buckets per power of two */
#define CH_HIST_OCTAVES  36u
#define CH_HIST_BUCKETS  (CH_HIST_SUB + (CH_HIST_OCTAVES - CH_HIST_SUB_BITS) * CH_HIST_SUB)

/* The bucket of value v. */
static inline unsigned ch_hist_index(uint64_t v)
{
    if (v < CH_HIST_SUB) return (unsigned)v;
    unsigned o = 63u - (unsigned)__builtin_clzll(v); /* v's power of two, >= SUB_BITS */
    if (o >= CH_HIST_OCTAVES) return CH_HIST_BUCKETS - 1;
    unsigned sub = (unsigned)(v >> (o - CH_HIST_SUB_BITS)) & (CH_HIST_SUB - 1);
    return CH_HIST_SUB + (o - CH_HIST_SUB_BITS) * CH_HIST_SUB + sub;
}

/* The lowest value of bucket i, and its width. */
static inline uint64_t ch_hist_lower(unsigned i, uint64_t *width)
{
    if (i < CH_HIST_SUB) {
        *width = 1;
        return i;
    }
    unsigned o = (i - CH_HIST_SUB) / CH_HIST_SUB + CH_HIST_SUB_BITS;
    unsigned sub = (i - CH_HIST_SUB) % CH_HIST_SUB;
    *width = 1ull << (o - CH_HIST_SUB_BITS);
    return (uint64_t)(CH_HIST_SUB + sub) << (o - CH_HIST_SUB_BITS);
}

/* The value that stands for bucket i: its midpoint (exact below 16). */
static inline uint64_t ch_hist_value(unsigned i)
{
    uint64_t width, lower = ch_hist_lower(i, &width);
    return lower + width / 2;
}

/* The value at quantile q (0..100) of the counts h[0..CH_HIST_BUCKETS), 0 when empty: the
 * midpoint of the bucket that holds the ceil(total * q / 100)-th value. */
uint64_t ch_hist_quantile(const uint64_t *h, unsigned q);

/* The power of two (0..31, clamped) that holds bucket i's values, for log2 summaries. */
static inline unsigned ch_hist_log2(unsigned i)
{
    uint64_t width, lower = ch_hist_lower(i, &width);
    unsigned o = lower < 2 ? 0 : 63u - (unsigned)__builtin_clzll(lower);
    return o < 32 ? o : 31;
}

#endif
