/*
 * tools/counter.h - the "counter" process type, built into the corehub program.
 *
 * State: one uint64 count (8 bytes, little-endian, so a handover is portable as is).
 * Cast: adds the little-endian int64 in an 8-byte message; other sizes are ignored.
 * Call: replies with the current count, 8 bytes little-endian.
 * Init argument: empty (count 0) or 8 bytes, the initial count.
 */
#ifndef COREHUB_TOOLS_COUNTER_H
#define COREHUB_TOOLS_COUNTER_H

#include <corehub/corehub.h>

#define COUNTER_TYPE_NAME "counter"

const ch_process_type *counter_type(void);

#endif
