/*
 * tools/counter.h - the "counter" process type, built into the corehub program.
 *
 * State: one 64-bit count (8 bytes, little-endian, so a handover is portable as is).
 * Casts: "inc" adds 1; "add N" adds the decimal N (may be negative); an 8-byte message
 *        adds the little-endian int64 it holds (the demo's fast path). Text is tried
 *        first, so the 8 bytes "add 1234" mean what they say. Anything else is ignored.
 * Calls: "get" replies the count as signed decimal text; an empty request replies the
 *        count as 8 bytes little-endian (the demo's format); anything else gets no reply
 *        (the caller sees -ENODATA).
 * Init argument: empty (count 0), a decimal number, or 8 bytes little-endian.
 */
#ifndef COREHUB_TOOLS_COUNTER_H
#define COREHUB_TOOLS_COUNTER_H

#include <corehub/corehub.h>

#include <stdbool.h>

#define COUNTER_TYPE_NAME "counter"

const ch_process_type *counter_type(void);

/* Parses len bytes (not NUL-terminated) as a whole signed decimal int64. */
bool counter_parse_i64(const void *p, size_t len, int64_t *out);

#endif
