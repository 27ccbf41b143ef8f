/*
 * core/hist.c - quantiles of a log-linear histogram (see hist.h).
 */
#include "hist.h"

uint64_t ch_hist_quantile(const uint64_t *h, unsigned q)
{
    uint64_t total = 0, seen = 0;
    for (unsigned i = 0; i < CH_HIST_BUCKETS; i++)
        total += h[i];
    if (!total) return 0;
    uint64_t want = (total * q + 99) / 100;
    if (!want) want = 1;
    for (unsigned i = 0; i < CH_HIST_BUCKETS; i++)
        if ((seen += h[i]) >= want) return ch_hist_value(i);
    return 0;
}
