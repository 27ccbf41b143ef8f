/*
 * net/transport_recv.c - a connection's input: the handshake, then sealed frames,
 * checked and handed to the transport's callbacks (design: net/transport.c).
 */
#define _GNU_SOURCE
#include "transport_int.h"

/* ---- receiving ---------------------------------------------------------------------- */

/* The handshake is done: derives the keys, then moves what waited for them into a record,
 * in order. */
static int go_up(ch_conn *c)
{
    int rc = ch_seal_init_hs(&c->seal, &c->hs);
    if (rc < 0) {
        CH_ERROR("no frame keys for %s: %s; closing", c->addr, strerror(-rc));
        return rc;
    }
    CH_DEBUG("%s is up, frames sealed with %s", c->addr, ch_seal_cipher_name(c->seal.cipher));
    c->up = true;
    ch_wbuf early = c->early;
    ch_wbuf_init(&c->early);
    ch_frame all = {.type = CH_F_SEALED, .len = (uint32_t)early.len, .payload = early.data};
    size_t pos = 0;
    ch_frame f;
    int k = 0;
    rc = early.err; /* a frame that could not wait: the order is broken, close */
    while (rc == 0 && (k = ch_seal_record_next(&all, &pos, CH_SEAL_FRAME_MAX, &f)) == 1)
        rc = tr_put_frame(c, f.type, f.flags, f.payload, f.len, NULL, 0);
    ch_wbuf_free(&early);
    return rc < 0 ? rc : k;
}

static int handshake_frame(ch_conn *c, const ch_frame *f)
{
    int rc = ch_hs_on_frame(&c->hs, f, &c->tcp.out);
    if (c->tcp.out.err) return c->tcp.out.err;
    ch_tcp_send(&c->tcp);
    if (rc < 0) {
        CH_WARN("handshake with %s refused: %s", c->addr, ch_hs_error(&c->hs));
        ch_counter_bump(&c->t->r->stats.refused_peers);
        return rc;
    }
    if (rc == CH_HS_DONE) {
        const ch_hello *p = ch_hs_peer(&c->hs);
        if (!c->initiator && p->addr[0]) snprintf(c->addr, sizeof(c->addr), "%s", p->addr);
        if ((rc = go_up(c)) < 0) return rc;
        if (c->t->cbs.on_up) c->t->cbs.on_up(c->t->cbs.ud, c, p);
        ch_tcp_send(&c->tcp);
    }
    return 0;
}

/* Opens a received record in place, then hands its frames to on_frame. Hot path. */
static int deliver_record(ch_conn *c, uint8_t *frame, ch_frame *rec)
{
    int rc = ch_seal_record_open(&c->seal, frame, rec);
    if (rc == -EBADMSG) {
        CH_WARN("record %llu from %s fails authentication (forged, altered, replayed or out "
                "of order): closing",
                (unsigned long long)c->seal.rx.n, c->addr);
    } else if (rc < 0) {
        CH_WARN("%s frame from %s where a sealed record was due: %s; closing",
                ch_frame_type_name(rec->type), c->addr, strerror(-rc));
    } else {
        size_t pos = 0;
        ch_frame f;
        while (!c->tcp.closing && (rc = ch_seal_record_next(rec, &pos, c->t->max_frame, &f)) == 1)
            if (c->t->cbs.on_frame) c->t->cbs.on_frame(c->t->cbs.ud, c, &f);
        if (rc >= 0 || c->tcp.closing) return 0;
        CH_WARN("bad frame in record %llu from %s: %s; closing",
                (unsigned long long)c->seal.rx.n - 1, c->addr, strerror(-rc));
    }
    ch_counter_bump(&c->t->r->stats.bad_frames);
    return rc;
}

/* Handles every complete frame in the buffer, then asks for room for the next one when it
 * is larger than the buffer; a negative return closes. */
int tr_on_data(ch_tcp *tcp)
{
    ch_conn *c = CONTAINER(tcp, ch_conn, tcp);
    int rc = 0;
    if (c->hold_until) return 0; /* its handshake has not begun: the input waits for it */
    while (!tcp->closing) {
        ch_frame f;
        uint8_t *frame = tcp->rbuf + tcp->rpos;
        size_t len = tcp->rlen - tcp->rpos;
        int n = c->up ? ch_frame_decode_sealed(frame, len, CH_FRAME_MAX, &f)
                      : ch_frame_decode(frame, len, CH_HS_FRAME_MAX, &f);
        if (n == 0) break;
        if (n < 0) {
            CH_WARN("bad frame from %s: %s; closing", c->addr, strerror(-n));
            ch_counter_bump(&c->t->r->stats.bad_frames);
            return n;
        }
        tcp->rpos += (size_t)n;
        rc = c->up ? deliver_record(c, frame, &f) : handshake_frame(c, &f);
        if (rc < 0) return rc;
    }
    if (tcp->rlen - tcp->rpos >= CH_FRAME_HDR) {
        uint32_t len;
        memcpy(&len, tcp->rbuf + tcp->rpos + 4, 4);
        tcp->want = CH_FRAME_HDR + (size_t)len; /* bounded: the decoder refused oversize */
    }
    return 0;
}

void tr_on_end(ch_tcp *tcp, int res, bool in_send)
{
    ch_conn *c = CONTAINER(tcp, ch_conn, tcp);
    size_t partial = tcp->rlen - tcp->rpos;
    if (in_send) {
        CH_WARN("send to %s failed: %s", c->addr, strerror(-res));
    } else if (res < 0) {
        CH_INFO("connection to %s lost: %s", c->addr, strerror(-res));
    } else if (partial) {
        CH_WARN("%s closed in the middle of a frame (%zu bytes); dropped", c->addr, partial);
        ch_counter_bump(&c->t->r->stats.bad_frames);
    }
    ch_conn_close(c, res);
}

/* Both sides speak first: each sends its HELLO as soon as the socket is connected. */
void tr_begin(ch_conn *c)
{
    ch_hello mine = c->t->self;
    mine.role = c->role;
    mine.caps = ch_seal_caps();
    int rc = ch_hs_init(&c->hs, c->initiator, &mine, c->t->cookie, c->t->cookie_len);
    if (rc == 0) rc = ch_hs_start(&c->hs, &c->tcp.out);
    if (rc < 0) {
        CH_ERROR("handshake with %s not started: %s", c->addr, strerror(-rc));
        ch_conn_close(c, rc);
        return;
    }
    ch_tcp_send(&c->tcp);
    ch_tcp_read(&c->tcp);
}
