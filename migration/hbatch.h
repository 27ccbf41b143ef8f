/*
 * migration/hbatch.h - one batch of handover records in one contiguous, aligned buffer.
 *
 * A handover lane fills a batch with records, hands its bytes to the codec, sends them and
 * resets it. Three record kinds: PROC (a process moving, with its state), MSG (a message
 * forwarded behind its process), END (no more forwarded messages for that id).
 *
 * Layout. Every record starts 32-byte aligned and takes a multiple of 32 bytes; its state
 * or payload also starts 32-byte aligned, so prepare_handover writes into the batch in
 * place and the receiver copies out at full speed (design §6). All fields little-endian:
 *   PROC  u8 kind=1 | u8 id_len | u8 type_len | u8 tag_len | u32 rec_len | u8 restart |
 *         u8 flags | u16 0 | u32 shutdown_ms | u32 incarnation | u32 arg_len | u32 meta_len |
 *         u32 state_len | id | type | tag | arg | meta | 0-pad to 32 | state | 0-pad to 32
 *   MSG   u8 kind=2 | u8 id_len | u8 msg kind (0 cast, 1 call) | u8 0 | u32 rec_len |
 *         u64 reply node | u64 reply ref | u16 reply core | u16 0 | u32 payload_len |
 *         id | 0-pad to 32 | payload | 0-pad to 32
 *   END   u8 kind=3 | u8 id_len | u16 0 | u32 rec_len | id | 0-pad to 32
 * rec_len counts from the record's first byte to its last meaningful one (trailing pad
 * excluded). A cast carries a zero reply route. The reader refuses anything else.
 *
 * Size. A batch holds up to `capacity` bytes (CH_HBATCH_CAP_MIN..CH_HBATCH_CAP_MAX).
 * Records never straddle batches: a record that does not fit a non-empty batch is refused
 * with -ENOSPC (send this batch, reset, add it again); a record larger than the capacity
 * gets a batch of its own, grown up to `limit` bytes, which the next reset gives back.
 *
 * Not thread-safe: a batch belongs to its lane's reactor. No call allocates except a
 * record larger than the room left in an empty batch, and the reset after it.
 */
#ifndef CH_MIGRATION_HBATCH_H
#define CH_MIGRATION_HBATCH_H

#include <corehub/process.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CH_HBATCH_ALIGN         32u         /* records, states and payloads start here */
#define CH_HBATCH_CAP_MIN       (64u << 10) /* smallest configurable capacity */
#define CH_HBATCH_CAP_MAX       (1u << 20)  /* largest configurable capacity */
#define CH_HBATCH_CAP_DEFAULT   (256u << 10)
#define CH_HBATCH_LIMIT_DEFAULT (64u << 20) /* largest batch: one oversize record */
#define CH_HBATCH_LIMIT_MAX     0xffffffe0u /* the codec frame counts bytes in a u32 */

typedef enum ch_hbatch_kind {
    CH_HREC_PROC = 1,
    CH_HREC_MSG = 2,
    CH_HREC_END = 3,
} ch_hbatch_kind;

/* What a PROC record says about its process, besides the state. */
typedef struct ch_hbatch_proc {
    const char *id; /* 1..CH_ID_MAX bytes, not NUL-terminated */
    size_t id_len;
    const char *type; /* 1..CH_TYPE_NAME_MAX bytes */
    size_t type_len;
    const char *tag; /* 0..CH_TAG_MAX bytes */
    size_t tag_len;
    const void *arg; /* the spec's init argument */
    size_t arg_len;
    const void *meta; /* 0..CH_META_MAX bytes */
    size_t meta_len;
    uint32_t shutdown_ms;
    uint32_t incarnation;
    uint8_t restart; /* a ch_restart value */
    uint8_t flags;   /* CH_HPROC_* */
} ch_hbatch_proc;

#define CH_HPROC_STATE                                                                             \
    1u /* the record carries a handed-over state (HotSwap handover),                               \
        * even an empty one: the receiver calls alter_handover */
#define CH_HPROC_FLAGS CH_HPROC_STATE

/* What a MSG record says about its message, besides the payload. */
typedef struct ch_hbatch_msg {
    const char *id; /* the destination process, 1..CH_ID_MAX bytes */
    size_t id_len;
    uint8_t kind;        /* CH_MSG_CAST or CH_MSG_CALL */
    uint64_t reply_node; /* where a call's answer goes; all 0 for a cast */
    uint16_t reply_core;
    uint64_t reply_ref;
} ch_hbatch_msg;

typedef struct ch_hbatch {
    uint8_t *buf;     /* owned; 32-byte aligned except after an oversize growth */
    size_t len;       /* bytes of whole records, a multiple of 32 */
    size_t cap;       /* bytes allocated (>= capacity) */
    size_t capacity;  /* a batch is full past this many bytes */
    size_t limit;     /* no batch, even with one oversize record, grows past this */
    uint32_t count;   /* records */
    ch_buf *view;     /* the open PROC record's state view, see ch_hbatch_proc_begin */
    size_t open_slot; /* offset of the open record's state */
} ch_hbatch;

/* capacity: CH_HBATCH_CAP_MIN..CH_HBATCH_CAP_MAX (rounded down to 32); limit: capacity..
 * CH_HBATCH_LIMIT_MAX, 0 for CH_HBATCH_LIMIT_DEFAULT. 0, -EINVAL or -ENOMEM. */
int ch_hbatch_init(ch_hbatch *b, size_t capacity, size_t limit);
void ch_hbatch_free(ch_hbatch *b);
/* Takes the batch's records away (a buffer of *len bytes the caller now owns and frees)
 * and gives the batch an empty buffer: `fresh` (one that a take returned, when its
 * batch had no oversize record: at least `capacity` bytes, 64-byte aligned), or a new
 * one when fresh is NULL. NULL (batch unchanged) on -ENOMEM or while a record is open. */
uint8_t *ch_hbatch_take(ch_hbatch *b, uint8_t *fresh, size_t *len);
/* Empties the batch for the next one (its bytes were sent); gives back an oversize buffer.
 * Closes an open record first, discarding it. */
void ch_hbatch_reset(ch_hbatch *b);

/* The records: len bytes at data, valid until the next call that changes the batch. */
static inline const uint8_t *ch_hbatch_data(const ch_hbatch *b)
{
    return b->buf;
}
static inline size_t ch_hbatch_len(const ch_hbatch *b)
{
    return b->len;
}
/* Bytes a record may still take without the batch going over its capacity. */
static inline size_t ch_hbatch_room(const ch_hbatch *b)
{
    return b->len < b->capacity ? b->capacity - b->len : 0;
}
/* True when the batch should be sent before another record goes in. */
static inline bool ch_hbatch_full(const ch_hbatch *b)
{
    return b->len >= b->capacity;
}

/*
 * Adding records. Each returns 0, or with the batch unchanged: -EINVAL (a field out of its
 * range), -ENOSPC (the record does not fit this non-empty batch: send it, reset, retry),
 * -EMSGSIZE (the record alone is larger than the limit), -ENOMEM, -EBUSY (a PROC record
 * is open). Hot path.
 */
int ch_hbatch_put_proc(ch_hbatch *b, const ch_hbatch_proc *p, const void *state, size_t len);
int ch_hbatch_put_msg(ch_hbatch *b, const ch_hbatch_msg *m, const void *payload, size_t len);
int ch_hbatch_put_end(ch_hbatch *b, const char *id, size_t id_len);

/*
 * Writing a state in place (no copy besides prepare_handover's own):
 *
 *     ch_buf view;
 *     rc = ch_hbatch_proc_begin(b, &p, state_hint, &view);   // -ENOSPC: flush first
 *     rc = type->prepare_handover(proc, &view);              // writes into the batch
 *     rc < 0 ? ch_hbatch_proc_abort(b) : (rc = ch_hbatch_proc_end(b));
 *
 * begin writes the record's header and points `view` at the aligned state slot: the
 * ch_buf_* calls land in the batch. state_hint is the state size the caller expects
 * (the process's current state size; 0 when unknown): a record that would not fit with it
 * is refused with -ENOSPC, unless the batch is empty, where it grows. A state that
 * outgrows the hint still succeeds: ch_buf_reserve reallocates the whole batch buffer,
 * records before it included, and the batch is then full. Until end or abort, the view
 * owns the buffer: no other call on the batch (they return -EBUSY), and never free the
 * view. end returns 0 or -EMSGSIZE (the record is over the limit and dropped).
 */
int ch_hbatch_proc_begin(ch_hbatch *b, const ch_hbatch_proc *p, size_t state_hint, ch_buf *view);
int ch_hbatch_proc_end(ch_hbatch *b);
void ch_hbatch_proc_abort(ch_hbatch *b);

/* --- reading a received batch ----------------------------------------------------------- */

/* One record; every pointer points into the reader's buffer. */
typedef struct ch_hbatch_rec {
    ch_hbatch_kind kind;
    const char *id; /* every kind */
    size_t id_len;
    ch_hbatch_proc proc; /* PROC only (unspecified for other kinds) */
    ch_hbatch_msg msg;   /* MSG only (unspecified for other kinds) */
    const uint8_t *data; /* PROC: state; MSG: payload (32-byte aligned if the buffer is);
                          * END: NULL */
    size_t len;
} ch_hbatch_rec;

typedef struct ch_hbatch_reader {
    const uint8_t *buf;
    size_t len;
    size_t pos; /* next record */
    bool err;   /* sticky: the batch is malformed */
} ch_hbatch_reader;

/* buf: a decompressed batch, ideally 32-byte aligned (ch_codec_rx's buffers are). */
void ch_hbatch_reader_init(ch_hbatch_reader *r, const void *buf, size_t len);
/* Returns 1 with *rec set, 0 at the end of the batch, or -EBADMSG (and -EBADMSG for every
 * call after) when the next record is malformed: it never reads outside the buffer. Only
 * the structure is checked; the receiver validates ids and type names as for any start.
 * Hot path. */
int ch_hbatch_read(ch_hbatch_reader *r, ch_hbatch_rec *rec);
/* Checks a whole batch before any record is applied: 0 with *count records, or -EBADMSG. */
int ch_hbatch_validate(const void *buf, size_t len, uint32_t *count);

#endif
