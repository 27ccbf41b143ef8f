/*
 * core/msg.h - the record every mailbox carries (core-to-core rings and foreign inboxes).
 *
 * Layout: a 32-byte header, the target id (if any), then the payload, which starts 32-byte
 * aligned when it is large (fast copies) and 8-byte aligned otherwise. A payload too large
 * for a ring record travels by pointer (CH_REC_INDIRECT): ownership of that heap block
 * moves to the receiver with the record.
 */
#ifndef CH_CORE_MSG_H
#define CH_CORE_MSG_H

#include <stddef.h>
#include <stdint.h>

enum ch_op {
    CH_OP_CAST = 1, /* id, payload */
    CH_OP_CALL,     /* id, payload; reply to (src_core, ref) */
    CH_OP_FCALL,    /* id, payload; a call from a foreign thread, ref = ch_fcall * */
    CH_OP_REPLY,    /* payload; ref = pending-call id on the receiving core; status */
    CH_OP_START,    /* ref = batch; payload = u32 child indices */
    CH_OP_STOP,     /* ref = batch; payload = u32 child indices */
    CH_OP_POST,     /* payload = ch_post */
    CH_OP_QUERY,    /* ref = ch_query */
    CH_OP_SHUTDOWN, /* terminate every process; ref = node */
    CH_OP_REG,      /* to the coordinator: a local registry insert or remove */
    CH_OP_MIG,      /* migration, between cores and coordinator: pad = enum ch_mig_op */
};

#define CH_REC_INDIRECT 1u
#define CH_REC_ROW      4u /* routed by the registry row: final, never forwarded again */

typedef struct ch_rec {
    uint32_t ring_size; /* owned by the ring */
    uint8_t op;
    uint8_t id_len;
    uint8_t flags;
    uint8_t pad;
    uint32_t len;      /* payload bytes */
    uint16_t src_core; /* CALL: the core that holds the pending call */
    uint16_t pad2;
    uint64_t ref; /* CALL: pending-call id; REPLY: the same; control ops: a pointer */
    uint64_t aux; /* CAST, CALL: the id's hash; REPLY: the status */
} ch_rec;

_Static_assert(sizeof(ch_rec) == 32, "record header is 32 bytes");

#define CH_REC_BIG 1024u /* payloads from this size start 32-byte aligned */

static inline size_t ch_rec_payload_off(size_t id_len, size_t len)
{
    size_t a = len >= CH_REC_BIG ? 32 : 8;
    return (sizeof(ch_rec) + id_len + a - 1) & ~(a - 1);
}

static inline const char *ch_rec_id(const ch_rec *r)
{
    return (const char *)(r + 1);
}

static inline void *ch_rec_payload(ch_rec *r)
{
    char *p = (char *)r + ch_rec_payload_off(r->id_len, r->len);
    return (r->flags & CH_REC_INDIRECT) ? *(void **)p : p;
}

#endif
