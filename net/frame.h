/*
 * net/frame.h - the unit of every corehub connection: a 16-byte header and a payload.
 *
 * Header, little-endian:  u8 version | u8 type | u16 flags | u32 payload length |
 *                         u64 XXH3_64 of the payload
 * A payload is at most CH_FRAME_MAX bytes, and at most the connection's own limit, which
 * the decoder judges from the header alone, before the payload arrives. Flags belong to the
 * frame type. A CH_F_BATCH payload is a sequence of whole frames (no nested batches).
 *
 * After the handshake every frame travels inside a CH_F_SEALED record (net/seal.h), and
 * sealed frames, the record and the frames in it, have 0 in place of the checksum: the
 * record's AEAD tag covers them all, and a sum of the ciphertext would cost a pass over the
 * bytes for nothing (a sum of the plaintext would leak it). The frames inside a BATCH
 * keep their checksums.
 */
#ifndef CH_NET_FRAME_H
#define CH_NET_FRAME_H

#include "net/wire.h"

#include <stddef.h>
#include <stdint.h>

#define CH_FRAME_VERSION 1
#define CH_FRAME_HDR     16
#define CH_FRAME_MAX     (16u << 20)

enum ch_frame_type {
    CH_F_HELLO = 1,
    CH_F_AUTH,
    CH_F_PING,
    CH_F_ACK,
    CH_F_PING_REQ,
    CH_F_JOIN,
    CH_F_VIEW,
    CH_F_LEAVE,
    CH_F_REG_DELTA,
    CH_F_REG_DIGEST,
    CH_F_REG_SYNC_REQ,
    CH_F_REG_SYNC,
    CH_F_CAST,
    CH_F_CALL,
    CH_F_REPLY,
    CH_F_START_REQ,
    CH_F_START_RESP,
    CH_F_STOP_REQ,
    CH_F_STOP_RESP,
    CH_F_CTL_REQ,
    CH_F_CTL_RESP,
    CH_F_PARTITION_RESET,
    CH_F_BATCH,  /* several small frames packed in one */
    CH_F_SEALED, /* a record: the frames of one send, encrypted (net/seal.h) */
    /* Migration (migration/handover.h, migration/coord_round.c). */
    CH_F_MIG_BARRIER, /* u64 ring hash: the sender's threads all route by that ring */
    CH_F_MIG_END,     /* u64 ring hash: the sender sent every record of that change */
    CH_F_MIG_DATA,    /* lane header, codec frame: a batch of handover records */
    CH_F_MIG_ACK,     /* confirmations, refusals, resolutions for one lane frame */
    CH_F_MIG_QUERY,   /* retention expired: which of these ids does the target hold? */
    CH_F_MIG_PIN,     /* u32 n, n x (u64 hash, u64 node, u64 version, u64 setter): pins */
    CH_F_MIG_LANES,   /* u16 n, n x u16: the data lane port of each of the sender's cores */
    CH_F__COUNT
};

/* A decoded frame: payload points into the decoder's input. */
typedef struct ch_frame {
    uint8_t type; /* a valid enum ch_frame_type */
    uint16_t flags;
    uint32_t len;
    const uint8_t *payload;
} ch_frame;

/* Fills a header for `payload` (len bytes, at most CH_FRAME_MAX). */
void ch_frame_header_write(uint8_t out[CH_FRAME_HDR], enum ch_frame_type type, uint16_t flags,
                           const void *payload, uint32_t len);

/* Fills the header of a sealed frame: checksum 0, len counting the payload's tag. */
void ch_frame_header_sealed(uint8_t out[CH_FRAME_HDR], enum ch_frame_type type, uint16_t flags,
                            uint32_t len);

/*
 * Decodes the frame at the start of buf (avail bytes; never reads past them). max_len is the
 * connection's payload limit (0 or above CH_FRAME_MAX: CH_FRAME_MAX). Returns the frame's
 * total size (> 0) with *out set, 0 when more bytes are needed, or: -EPROTO bad version,
 * -ENOMSG unknown type, -EMSGSIZE length over the limit, -EBADMSG checksum mismatch. The
 * first three are detected as soon as the bytes holding them arrive. Hot path.
 */
int ch_frame_decode(const uint8_t *buf, size_t avail, uint32_t max_len, ch_frame *out);
/* The same for a sealed frame: -EBADMSG when the checksum field is not 0 (as soon as the
 * header is in), no sum computed; the payload is still sealed (ch_seal_open). Hot path. */
int ch_frame_decode_sealed(const uint8_t *buf, size_t avail, uint32_t max_len, ch_frame *out);

/* Appends a whole frame (header + payload) to w. 0 or w's sticky error (-EMSGSIZE when
 * len > CH_FRAME_MAX). */
int ch_frame_write(ch_wbuf *w, enum ch_frame_type type, uint16_t flags, const void *payload,
                   size_t len);

/* Encoding a payload in place: at = ch_frame_begin(w), put the payload, then
 * ch_frame_end(w, at, type, flags) fills the header over the bytes written since. */
size_t ch_frame_begin(ch_wbuf *w);
int ch_frame_end(ch_wbuf *w, size_t at, enum ch_frame_type type, uint16_t flags);

/* Iterates a CH_F_BATCH frame: *pos starts at 0. Returns 1 with *inner set, 0 at the end,
 * or a negative error (-EBADMSG for a truncated or nested batch, or ch_frame_decode's). */
int ch_frame_batch_next(const ch_frame *batch, size_t *pos, ch_frame *inner);

/* "HELLO", "CAST", ... for log lines; "?" for an unknown type. */
const char *ch_frame_type_name(int type);

#endif
