/*
 * net/handshake.c - the HELLO/AUTH exchange that opens every connection.
 *
 * Design (see net/handshake.h for the wire format): both sides speak first, so the
 * exchange takes one round trip whichever side is slower, and the state machine has no
 * sockets in it, so tests drive two of them against each other in memory and the fuzzer
 * drives one with arbitrary frames.
 *
 * What each check buys:
 * - Each side's MAC covers both HELLO payloads as sent, and each holds a fresh random
 *   nonce: a recorded AUTH is useless on any other connection (replay).
 * - The MAC starts with the sender's side letter, 'I' or 'A', so an AUTH reflected back
 *   at its sender never verifies; a HELLO that echoes our own nonce is refused outright.
 * - Version and hub id are compared before any MAC work: a node of another hub or another
 *   protocol gets a precise refusal instead of a misleading "wrong cookie".
 * - Anything but HELLO then AUTH before the end is refused: nothing an unauthenticated
 *   peer sends reaches the layers above.
 * Every refusal leaves one line in hs->reason for the caller to log.
 */
#include "net/handshake.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum ch_hs_state {
    CH_HS_NEW = 0,    /* ch_hs_init done, our HELLO not yet written */
    CH_HS_HELLO_SENT, /* waiting for the peer's HELLO */
    CH_HS_AUTH_SENT,  /* peer's HELLO accepted, our AUTH written: waiting for theirs */
    CH_HS_OK,         /* the peer's AUTH verified */
    CH_HS_FAILED,
};

/* --- HELLO payload ---------------------------------------------------------------------- */

static bool ch_hello_printable(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return false;
    return true;
}

static bool ch_hello_valid(const ch_hello *h)
{
    return h->role >= CH_ROLE_PEER && h->role <= CH_ROLE_LANE &&
           ch_hello_printable(h->hub_id, sizeof(h->hub_id)) &&
           ch_hello_printable(h->addr, sizeof(h->addr));
}

int ch_hello_encode(ch_wbuf *w, const ch_hello *h)
{
    if (!ch_hello_valid(h)) return ch_wbuf_fail(w, -EINVAL);
    ch_wbuf_put_u8(w, h->version);
    ch_wbuf_put_str8(w, h->hub_id, strlen(h->hub_id));
    ch_wbuf_put_u64(w, h->node_id);
    ch_wbuf_put_u64(w, h->incarnation);
    ch_wbuf_put_u16(w, h->cores);
    ch_wbuf_put_str8(w, h->addr, strlen(h->addr));
    ch_wbuf_put_u8(w, h->role);
    if (h->role == CH_ROLE_LANE) ch_wbuf_put_u16(w, h->lane_core);
    return ch_wbuf_put_bytes(w, h->nonce, CH_NONCE_LEN);
}

int ch_hello_decode(const uint8_t *p, size_t len, ch_hello *h)
{
    ch_rbuf r;
    ch_rbuf_init(&r, p, len);
    *h = (ch_hello){0};
    h->version = ch_rbuf_get_u8(&r);
    if (!ch_rbuf_ok(&r)) return -EBADMSG;
    if (h->version != CH_PROTO_VERSION) return -EPROTO; /* the rest may have another shape */
    ch_rbuf_get_cstr8(&r, h->hub_id, sizeof(h->hub_id));
    h->node_id = ch_rbuf_get_u64(&r);
    h->incarnation = ch_rbuf_get_u64(&r);
    h->cores = ch_rbuf_get_u16(&r);
    ch_rbuf_get_cstr8(&r, h->addr, sizeof(h->addr));
    h->role = ch_rbuf_get_u8(&r);
    if (h->role < CH_ROLE_PEER || h->role > CH_ROLE_LANE) ch_rbuf_fail(&r);
    if (h->role == CH_ROLE_LANE) h->lane_core = ch_rbuf_get_u16(&r);
    ch_rbuf_copy(&r, h->nonce, CH_NONCE_LEN);
    return ch_rbuf_done(&r) ? 0 : -EBADMSG;
}

/* --- the state machine ------------------------------------------------------------------ */

/* Records the failure (the first one wins) and returns it. */
__attribute__((format(printf, 3, 4))) static int ch_hs_fail(ch_hs *hs, int err, const char *fmt,
                                                            ...)
{
    if (hs->state == CH_HS_FAILED) return hs->err;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(hs->reason, sizeof(hs->reason), fmt, ap);
    va_end(ap);
    hs->state = CH_HS_FAILED;
    hs->err = err;
    ch_auth_key_wipe(&hs->key);
    return err;
}

static uint8_t ch_hs_letter(bool initiator)
{
    return initiator ? 'I' : 'A';
}

/* The transcript `letter || HELLO(I) || HELLO(A)` as MAC parts. */
static void ch_hs_transcript(const ch_hs *hs, const uint8_t *letter, ch_auth_part parts[3])
{
    ch_auth_part mine = {hs->mine_raw, hs->mine_len};
    ch_auth_part peer = {hs->peer_raw, hs->peer_len};
    parts[0] = (ch_auth_part){letter, 1};
    parts[1] = hs->initiator ? mine : peer;
    parts[2] = hs->initiator ? peer : mine;
}

static int ch_hs_encode_mine(ch_hs *hs)
{
    ch_wbuf w;
    ch_wbuf_init(&w);
    int rc = ch_hello_encode(&w, &hs->mine);
    if (rc == 0 && w.len > sizeof(hs->mine_raw)) rc = -EINVAL;
    if (rc == 0) {
        memcpy(hs->mine_raw, w.data, w.len);
        hs->mine_len = w.len;
    }
    ch_wbuf_free(&w);
    return rc;
}

int ch_hs_init(ch_hs *hs, bool initiator, const ch_hello *mine, const void *cookie,
               size_t cookie_len)
{
    *hs = (ch_hs){.initiator = initiator, .mine = *mine};
    int rc = -EINVAL;
    if (cookie && cookie_len >= CH_COOKIE_MIN && ch_hello_valid(mine)) rc = 0;
    if (hs->mine.version == 0) hs->mine.version = CH_PROTO_VERSION;
    if (rc == 0) rc = ch_auth_nonce(hs->mine.nonce);
    if (rc == 0) rc = ch_auth_key_derive(&hs->key, cookie, cookie_len);
    if (rc == 0) rc = ch_hs_encode_mine(hs);
    if (rc < 0) {
        ch_hs_clear(hs); /* unusable: every later call fails */
        hs->err = rc;
    }
    return rc;
}

int ch_hs_start(ch_hs *hs, ch_wbuf *out)
{
    if (hs->state == CH_HS_FAILED) return hs->err;
    if (hs->state != CH_HS_NEW) return 0;
    int rc = ch_frame_write(out, CH_F_HELLO, 0, hs->mine_raw, hs->mine_len);
    if (rc < 0) return ch_hs_fail(hs, rc, "cannot write HELLO (%s)", strerror(-rc));
    hs->state = CH_HS_HELLO_SENT;
    return 0;
}

static int ch_hs_check_hello(ch_hs *hs, const ch_frame *f)
{
    int rc =
        f->len <= sizeof(hs->peer_raw) ? ch_hello_decode(f->payload, f->len, &hs->peer) : -EBADMSG;
    if (rc == -EPROTO)
        return ch_hs_fail(hs, rc, "peer speaks protocol version %u, this node %u", hs->peer.version,
                          CH_PROTO_VERSION);
    if (rc < 0) return ch_hs_fail(hs, -EBADMSG, "malformed HELLO (%" PRIu32 " bytes)", f->len);
    if (strcmp(hs->peer.hub_id, hs->mine.hub_id) != 0)
        return ch_hs_fail(hs, -EPERM, "node %016" PRIx64 " (%s) belongs to hub '%s', not '%s'",
                          hs->peer.node_id, hs->peer.addr, hs->peer.hub_id, hs->mine.hub_id);
    if (memcmp(hs->peer.nonce, hs->mine.nonce, CH_NONCE_LEN) == 0)
        return ch_hs_fail(hs, -EACCES, "peer echoed this node's HELLO (reflection)");
    memcpy(hs->peer_raw, f->payload, f->len);
    hs->peer_len = f->len;
    return 0;
}

static int ch_hs_on_hello(ch_hs *hs, const ch_frame *f, ch_wbuf *out)
{
    int rc = ch_hs_check_hello(hs, f);
    if (rc < 0) return rc;
    uint8_t letter = ch_hs_letter(hs->initiator), mac[CH_MAC_LEN];
    ch_auth_part parts[3];
    ch_hs_transcript(hs, &letter, parts);
    ch_auth_mac(&hs->key, parts, 3, mac);
    rc = ch_frame_write(out, CH_F_AUTH, 0, mac, sizeof(mac));
    if (rc < 0) return ch_hs_fail(hs, rc, "cannot write AUTH (%s)", strerror(-rc));
    hs->state = CH_HS_AUTH_SENT;
    return CH_HS_CONTINUE;
}

static int ch_hs_on_auth(ch_hs *hs, const ch_frame *f)
{
    if (f->len != CH_MAC_LEN)
        return ch_hs_fail(hs, -EBADMSG,
                          "malformed AUTH from node %016" PRIx64 " (%s): %" PRIu32 " bytes",
                          hs->peer.node_id, hs->peer.addr, f->len);
    uint8_t letter = ch_hs_letter(!hs->initiator);
    ch_auth_part parts[3];
    ch_hs_transcript(hs, &letter, parts);
    if (!ch_auth_verify(&hs->key, parts, 3, f->payload))
        return ch_hs_fail(hs, -EACCES,
                          "bad AUTH from node %016" PRIx64 " (%s): wrong cookie or tampering",
                          hs->peer.node_id, hs->peer.addr);
    hs->state = CH_HS_OK;
    return CH_HS_DONE;
}

int ch_hs_on_frame(ch_hs *hs, const ch_frame *f, ch_wbuf *out)
{
    if (hs->state == CH_HS_FAILED) return hs->err;
    if (hs->state == CH_HS_OK) return -EINVAL; /* the caller's frames are its own now */
    int rc = ch_hs_start(hs, out);
    if (rc < 0) return rc;
    if (f->type == CH_F_HELLO && hs->state == CH_HS_HELLO_SENT) return ch_hs_on_hello(hs, f, out);
    if (f->type == CH_F_AUTH && hs->state == CH_HS_AUTH_SENT) return ch_hs_on_auth(hs, f);
    return ch_hs_fail(hs, -EPROTO, "%s frame while waiting for %s", ch_frame_type_name(f->type),
                      hs->state == CH_HS_HELLO_SENT ? "HELLO" : "AUTH");
}

bool ch_hs_done(const ch_hs *hs)
{
    return hs->state == CH_HS_OK;
}

const char *ch_hs_error(const ch_hs *hs)
{
    return hs->state == CH_HS_FAILED ? hs->reason : "";
}

const ch_hello *ch_hs_peer(const ch_hs *hs)
{
    return hs->state == CH_HS_OK ? &hs->peer : NULL;
}

int ch_hs_session_key(const ch_hs *hs, uint8_t out[32])
{
    if (hs->state != CH_HS_OK) return -EINVAL;
    static const uint8_t letter = 'S';
    ch_auth_part parts[3];
    ch_hs_transcript(hs, &letter, parts);
    ch_auth_mac(&hs->key, parts, 3, out);
    return 0;
}

void ch_hs_clear(ch_hs *hs)
{
    ch_auth_key_wipe(&hs->key);
    *hs = (ch_hs){.state = CH_HS_FAILED, .err = -EINVAL};
}
