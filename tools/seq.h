/*
 * tools/seq.h - the "seq" process type, built into the corehub program: an order checker.
 *
 * It proves that a migration loses, doubles and reorders nothing: senders number their
 * messages 1, 2, 3... and the process checks, per sender, that each number follows the
 * last one it saw.
 *
 * State: one flat little-endian block, portable as is (the default handover carries it):
 *   u32 magic SEQ_MAGIC | u32 senders K | u64 total | u64 violations |
 *   K x (u64 sender | u64 last seq)                     (SEQ_HDR + K * SEQ_ENTRY bytes)
 * at most SEQ_MAX_SENDERS entries.
 * Casts: "s SENDER SEQ" (two decimal u64) or the binary form, SEQ_BIN_LEN bytes: a 0 byte,
 *        SENDER as u64 LE, SEQ as u64 LE. Each counts in total; SEQ is in order when it is
 *        the sender's last + 1 (a new sender's last is 0), anything else is a violation;
 *        either way SEQ becomes the sender's last. A sender beyond the table's
 *        SEQ_MAX_SENDERS is counted in total and as a violation (its order is unknown).
 *        Any other cast is ignored.
 * Calls: "get" replies "total=T violations=V senders=K"; "last SENDER" replies the
 *        sender's last seq as decimal (0 for an unknown sender); anything else gets no
 *        reply (-ENODATA).
 * Init argument: none (a non-empty one is refused).
 */
#ifndef COREHUB_TOOLS_SEQ_H
#define COREHUB_TOOLS_SEQ_H

#include <corehub/corehub.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SEQ_TYPE_NAME   "seq"
#define SEQ_MAGIC       0x31514553u /* "SEQ1" in little-endian bytes */
#define SEQ_HDR         24u
#define SEQ_ENTRY       16u
#define SEQ_MAX_SENDERS 64u
#define SEQ_BIN_LEN     17u

const ch_process_type *seq_type(void);

/* The pure state logic, for the type and for tests. */

typedef struct seq_summary {
    uint64_t total, violations;
    uint32_t senders;
} seq_summary;

/* Writes an empty state (SEQ_HDR bytes) to buf. */
void seq_state_init(void *buf);
/* Whether len bytes are a well-formed state; *out (may be NULL) gets its counters. */
bool seq_state_read(const void *state, size_t len, seq_summary *out);
/* The length the state needs to record `sender`: len, or len + SEQ_ENTRY for a new
 * sender while the table has room. The state must be well-formed. */
size_t seq_state_need(const void *state, size_t len, uint64_t sender);
/* Records one message in a well-formed state that has seq_state_need(...) bytes of room
 * (len is the state's current length; the entry of a new sender goes at offset len).
 * Returns the state's new length. */
size_t seq_state_record(void *state, size_t len, uint64_t sender, uint64_t seq);
/* The sender's last seq, 0 when the table does not hold it. */
uint64_t seq_state_last(const void *state, size_t len, uint64_t sender);
/* Parses a cast (text or binary); false when it is not one. */
bool seq_parse(const void *msg, size_t len, uint64_t *sender, uint64_t *seq);

#endif
