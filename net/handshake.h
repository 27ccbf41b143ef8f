/*
 * net/handshake.h - the authenticated opening of every corehub connection, as a pure state
 * machine (no sockets: the caller moves the bytes).
 *
 *   initiator                                  acceptor
 *   HELLO(I) ---------------------------------->       both sides send HELLO at once
 *            <---------------------------------- HELLO(A)
 *   AUTH = HMAC(k, 'I' || HELLO(I) || HELLO(A)) ->     sent on receipt of the peer's HELLO
 *            <-- AUTH = HMAC(k, 'A' || HELLO(I) || HELLO(A))
 *
 * k = SHA-256(cookie); HELLO(x) is the payload as sent, nonce included, so a MAC is worth
 * nothing on another connection. A HELLO with another protocol version or hub id is
 * refused; so is a wrong MAC and any frame but HELLO/AUTH before the handshake is done.
 * Until then decode the connection's frames with max_len CH_HS_FRAME_MAX.
 *
 * HELLO payload: u8 version | str8 hub_id | u64 node_id | u64 incarnation | u16 cores |
 *                u8 caps | str8 listen addr | u8 role [| u16 lane core, role LANE only] |
 *                32-byte nonce
 * AUTH payload:  the 32-byte MAC
 *
 * Once the handshake is done every frame is sealed (net/seal.h) with keys derived from
 * ch_hs_session_key; the cipher follows from both sides' caps, which the AUTH MACs cover,
 * so a man in the middle cannot downgrade it. Version 2 is the first sealed protocol.
 */
#ifndef CH_NET_HANDSHAKE_H
#define CH_NET_HANDSHAKE_H

#include "net/auth.h"
#include "net/frame.h"
#include "net/wire.h"

#include <corehub/node.h>

#include <stdbool.h>
#include <stdint.h>

#define CH_PROTO_VERSION 3
#define CH_HS_FRAME_MAX  4096 /* payload limit of a connection until the handshake is done */
#define CH_HELLO_MAX                                                                               \
    (1 + 1 + CH_HUB_ID_MAX + 8 + 8 + 2 + 1 + 1 + CH_ADDR_MAX + 1 + 2 + CH_NONCE_LEN)

/* HELLO caps: what the sender can do. Unknown bits are ignored. */
#define CH_CAP_AES256GCM 0x01 /* AES-256-GCM in hardware (net/seal.h) */

enum ch_role {
    CH_ROLE_PEER = 1, /* coordinator to coordinator */
    CH_ROLE_CTL = 2,  /* a control client */
    CH_ROLE_LANE = 3, /* a data lane, from reactor `lane_core` of the sender */
};

typedef struct ch_hello {
    uint8_t version;                /* CH_PROTO_VERSION; 0 in ch_hs_init's `mine`: that */
    char hub_id[CH_HUB_ID_MAX + 1]; /* printable ASCII */
    uint64_t node_id;
    uint64_t incarnation;
    uint16_t cores;
    uint8_t caps;               /* CH_CAP_* */
    char addr[CH_ADDR_MAX + 1]; /* "HOST:PORT" the sender listens on, "" if none */
    uint8_t role;               /* enum ch_role */
    uint16_t lane_core;         /* CH_ROLE_LANE only */
    uint8_t nonce[CH_NONCE_LEN];
} ch_hello;

/* Appends h's payload to w: 0 or w's error (-EINVAL for an unencodable hello). */
int ch_hello_encode(ch_wbuf *w, const ch_hello *h);
/* 0, -EPROTO (version other than CH_PROTO_VERSION) or -EBADMSG (malformed). */
int ch_hello_decode(const uint8_t *p, size_t len, ch_hello *h);

enum { CH_HS_CONTINUE = 0, CH_HS_DONE = 1 };

typedef struct ch_hs {
    bool initiator;
    uint8_t state; /* private */
    int err;       /* sticky once failed */
    ch_auth_key key;
    ch_hello mine, peer;
    uint8_t mine_raw[CH_HELLO_MAX], peer_raw[CH_HELLO_MAX]; /* HELLO payloads, as sent */
    size_t mine_len, peer_len;
    char reason[224];
} ch_hs;

/* Prepares a handshake: copies mine (its nonce is generated here) and derives the key
 * from the cookie (cookie_len >= CH_COOKIE_MIN). 0, -EINVAL (bad hello or cookie), -EIO,
 * -ENOMEM. */
int ch_hs_init(ch_hs *hs, bool initiator, const ch_hello *mine, const void *cookie,
               size_t cookie_len);
/* Appends the HELLO frame, header included, to out. 0 or out's error. */
int ch_hs_start(ch_hs *hs, ch_wbuf *out);
/*
 * Feeds one frame received from the peer (ch_hs_start first if not yet done); frames to
 * send go to out. CH_HS_CONTINUE, CH_HS_DONE, or a negative error after which the
 * connection must be closed: -EPROTO (other version, or a frame out of place), -EPERM
 * (other hub), -EACCES (bad MAC: wrong cookie or tampering), -EBADMSG (malformed),
 * -ENOMEM. Errors are sticky; ch_hs_error says what happened.
 */
int ch_hs_on_frame(ch_hs *hs, const ch_frame *f, ch_wbuf *out);
bool ch_hs_done(const ch_hs *hs);
/* What went wrong, for one log line ("bad AUTH from node ...: wrong cookie or
 * tampering"); "" when nothing did. */
const char *ch_hs_error(const ch_hs *hs);
/* The peer's HELLO once the handshake is done; NULL before (nothing is trusted yet). */
const ch_hello *ch_hs_peer(const ch_hs *hs);
/* A 32-byte secret both sides share after the handshake, unique to this connection
 * (HMAC(k, 'S' || HELLO(I) || HELLO(A))), for a later per-frame MAC. 0 or -EINVAL. */
int ch_hs_session_key(const ch_hs *hs, uint8_t out[32]);
/* Wipes the key material; hs must be initialised again before any use. */
void ch_hs_clear(ch_hs *hs);

#endif
