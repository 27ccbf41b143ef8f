/*
 * migration/le.h - little-endian loads and stores for the handover stream's fixed headers.
 *
 * Inline on purpose: the batch reader and writer touch a dozen header fields per record on
 * the hot path, where net/wire.h's out-of-line cursor calls would cost more than the copy
 * of a 100-byte state. Callers check bounds once per header before using these.
 */
#ifndef CH_MIGRATION_LE_H
#define CH_MIGRATION_LE_H

#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
#define CH_LE16(v) __builtin_bswap16(v)
#define CH_LE32(v) __builtin_bswap32(v)
#define CH_LE64(v) __builtin_bswap64(v)
#else
#define CH_LE16(v) (v)
#define CH_LE32(v) (v)
#define CH_LE64(v) (v)
#endif

static inline void ch_le_put16(uint8_t *p, uint16_t v)
{
    v = CH_LE16(v);
    memcpy(p, &v, sizeof(v));
}

static inline void ch_le_put32(uint8_t *p, uint32_t v)
{
    v = CH_LE32(v);
    memcpy(p, &v, sizeof(v));
}

static inline void ch_le_put64(uint8_t *p, uint64_t v)
{
    v = CH_LE64(v);
    memcpy(p, &v, sizeof(v));
}

static inline uint16_t ch_le_get16(const uint8_t *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof(v));
    return CH_LE16(v);
}

static inline uint32_t ch_le_get32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof(v));
    return CH_LE32(v);
}

static inline uint64_t ch_le_get64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return CH_LE64(v);
}

#endif
