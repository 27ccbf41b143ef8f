/*
 * net/frame.c - frame header encoding, the incremental frame decoder, batches.
 *
 * The decoder is the first code that touches bytes from the network, so it trusts nothing:
 * it looks at a byte only once it is within `avail`, refuses a bad version, an unknown
 * type or an oversize length as soon as the header bytes that carry them are in (a peer
 * cannot make us wait for, or buffer, a payload we would refuse anyway), and verifies the
 * XXH3 checksum before handing out the payload (a sealed frame's checksum must be 0: its
 * AEAD tag, checked next by net/seal, is the stronger proof). It allocates nothing and
 * copies nothing:
 * the connection layer feeds it its receive buffer and consumes what it returns.
 */
#include "net/frame.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <xxhash.h>

static const char *const ch_frame_names[CH_F__COUNT] = {
    [CH_F_HELLO] = "HELLO",
    [CH_F_AUTH] = "AUTH",
    [CH_F_PING] = "PING",
    [CH_F_ACK] = "ACK",
    [CH_F_PING_REQ] = "PING_REQ",
    [CH_F_JOIN] = "JOIN",
    [CH_F_VIEW] = "VIEW",
    [CH_F_LEAVE] = "LEAVE",
    [CH_F_REG_DELTA] = "REG_DELTA",
    [CH_F_REG_DIGEST] = "REG_DIGEST",
    [CH_F_REG_SYNC_REQ] = "REG_SYNC_REQ",
    [CH_F_REG_SYNC] = "REG_SYNC",
    [CH_F_CAST] = "CAST",
    [CH_F_CALL] = "CALL",
    [CH_F_REPLY] = "REPLY",
    [CH_F_START_REQ] = "START_REQ",
    [CH_F_START_RESP] = "START_RESP",
    [CH_F_STOP_REQ] = "STOP_REQ",
    [CH_F_STOP_RESP] = "STOP_RESP",
    [CH_F_CTL_REQ] = "CTL_REQ",
    [CH_F_CTL_RESP] = "CTL_RESP",
    [CH_F_PARTITION_RESET] = "PARTITION_RESET",
    [CH_F_BATCH] = "BATCH",
    [CH_F_SEALED] = "SEALED",
    [CH_F_MIG_BARRIER] = "MIG_BARRIER",
    [CH_F_MIG_END] = "MIG_END",
    [CH_F_MIG_DATA] = "MIG_DATA",
    [CH_F_MIG_ACK] = "MIG_ACK",
    [CH_F_MIG_QUERY] = "MIG_QUERY",
    [CH_F_MIG_PIN] = "MIG_PIN",
    [CH_F_MIG_LANES] = "MIG_LANES",
};

const char *ch_frame_type_name(int type)
{
    if (type <= 0 || type >= CH_F__COUNT) return "?";
    return ch_frame_names[type];
}

static uint64_t ch_frame_sum(const void *payload, size_t len)
{
    static const uint8_t empty[1];
    return XXH3_64bits(len ? payload : empty, len);
}

static void ch_le_put(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t ch_le_get(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

void ch_frame_header_sealed(uint8_t out[CH_FRAME_HDR], enum ch_frame_type type, uint16_t flags,
                            uint32_t len)
{
    out[0] = CH_FRAME_VERSION;
    out[1] = (uint8_t)type;
    ch_le_put(out + 2, flags, 2);
    ch_le_put(out + 4, len, 4);
    ch_le_put(out + 8, 0, 8);
}

void ch_frame_header_write(uint8_t out[CH_FRAME_HDR], enum ch_frame_type type, uint16_t flags,
                           const void *payload, uint32_t len)
{
    ch_frame_header_sealed(out, type, flags, len);
    ch_le_put(out + 8, ch_frame_sum(payload, len), 8);
}

/* Checks the header fields that are within avail bytes. 0 or a negative error. */
static int ch_frame_check_header(const uint8_t *buf, size_t avail, uint32_t max_len)
{
    if (avail >= 1 && buf[0] != CH_FRAME_VERSION) return -EPROTO;
    if (avail >= 2 && (buf[1] == 0 || buf[1] >= CH_F__COUNT)) return -ENOMSG;
    if (avail >= 8 && ch_le_get(buf + 4, 4) > max_len) return -EMSGSIZE;
    return 0;
}

/* Both decoders: `sealed` frames carry 0 for a checksum and get no sum computed. */
static int ch_frame_decode_as(const uint8_t *buf, size_t avail, uint32_t max_len, ch_frame *out,
                              bool sealed)
{
    if (max_len == 0 || max_len > CH_FRAME_MAX) max_len = CH_FRAME_MAX;
    if (avail == 0) return 0;
    int rc = ch_frame_check_header(buf, avail, max_len);
    if (rc < 0 || avail < CH_FRAME_HDR) return rc;
    uint64_t sum = ch_le_get(buf + 8, 8);
    if (sealed && sum != 0) return -EBADMSG;
    uint32_t len = (uint32_t)ch_le_get(buf + 4, 4);
    if (avail - CH_FRAME_HDR < len) return 0;
    const uint8_t *payload = buf + CH_FRAME_HDR;
    if (!sealed && ch_frame_sum(payload, len) != sum) return -EBADMSG;
    *out = (ch_frame){
        .type = buf[1],
        .flags = (uint16_t)ch_le_get(buf + 2, 2),
        .len = len,
        .payload = payload,
    };
    return (int)(CH_FRAME_HDR + len);
}

int ch_frame_decode(const uint8_t *buf, size_t avail, uint32_t max_len, ch_frame *out)
{
    return ch_frame_decode_as(buf, avail, max_len, out, false);
}

int ch_frame_decode_sealed(const uint8_t *buf, size_t avail, uint32_t max_len, ch_frame *out)
{
    return ch_frame_decode_as(buf, avail, max_len, out, true);
}

size_t ch_frame_begin(ch_wbuf *w)
{
    size_t at = w->len;
    ch_wbuf_put_space(w, CH_FRAME_HDR);
    return at;
}

int ch_frame_end(ch_wbuf *w, size_t at, enum ch_frame_type type, uint16_t flags)
{
    if (w->err) return w->err;
    if (at > w->len || w->len - at < CH_FRAME_HDR) return ch_wbuf_fail(w, -EINVAL);
    size_t len = w->len - at - CH_FRAME_HDR;
    if (len > CH_FRAME_MAX) return ch_wbuf_fail(w, -EMSGSIZE);
    uint8_t *hdr = w->data + at;
    ch_frame_header_write(hdr, type, flags, hdr + CH_FRAME_HDR, (uint32_t)len);
    return 0;
}

int ch_frame_write(ch_wbuf *w, enum ch_frame_type type, uint16_t flags, const void *payload,
                   size_t len)
{
    if (len > CH_FRAME_MAX) return ch_wbuf_fail(w, -EMSGSIZE);
    size_t at = ch_frame_begin(w);
    ch_wbuf_put_bytes(w, payload, len);
    return ch_frame_end(w, at, type, flags);
}

int ch_frame_batch_next(const ch_frame *batch, size_t *pos, ch_frame *inner)
{
    if (*pos >= batch->len) return 0;
    int n = ch_frame_decode(batch->payload + *pos, batch->len - *pos, batch->len, inner);
    if (n == 0 || (n > 0 && inner->type == CH_F_BATCH)) return -EBADMSG;
    if (n < 0) return n;
    *pos += (size_t)n;
    return 1;
}
