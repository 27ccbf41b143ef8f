/*
 * tools/cli.c - small helpers shared by the corehub program's subcommands (see cli.h).
 */
#include "cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Reads an optional k (thousand) or m (million) suffix, for "--procs 1m". */
static uint64_t suffix_multiplier(char **end)
{
    switch (**end) {
    case 'k':
    case 'K':
        (*end)++;
        return 1000;
    case 'm':
    case 'M':
        (*end)++;
        return 1000000;
    default:
        return 1;
    }
}

int cli_parse_u64(const char *what, const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    /* strtoull accepts a sign and wraps negatives around: refuse them up front. */
    unsigned long long v = (s && *s >= '0' && *s <= '9') ? strtoull(s, &end, 10) : 0;
    if (!end || errno) goto bad;
    uint64_t mult = suffix_multiplier(&end);
    if (*end || (v && mult > UINT64_MAX / v)) goto bad;
    v *= mult;
    if (v < min || v > max) goto bad;
    *out = v;
    return 0;
bad:
    fprintf(stderr, "corehub: %s must be a number from %llu to %llu, not '%s'\n", what,
            (unsigned long long)min, (unsigned long long)max, s ? s : "");
    return -1;
}

uint64_t cli_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void cli_put_le64(void *dst, uint64_t v)
{
    unsigned char *d = dst;
    for (int i = 0; i < 8; i++)
        d[i] = (unsigned char)(v >> (8 * i));
}

uint64_t cli_get_le64(const void *src)
{
    const unsigned char *s = src;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)s[i] << (8 * i);
    return v;
}
