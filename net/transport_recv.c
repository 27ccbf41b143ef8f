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
    int rc = ch_hs_on_frame(&c->hs, f, &c->out);
    if (c->out.err) return c->out.err;
    tr_kick_send(c);
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
        tr_kick_send(c);
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
        while (!c->closing && (rc = ch_seal_record_next(rec, &pos, c->t->max_frame, &f)) == 1)
            if (c->t->cbs.on_frame) c->t->cbs.on_frame(c->t->cbs.ud, c, &f);
        if (rc >= 0 || c->closing) return 0;
        CH_WARN("bad frame in record %llu from %s: %s; closing",
                (unsigned long long)c->seal.rx.n - 1, c->addr, strerror(-rc));
    }
    ch_counter_bump(&c->t->r->stats.bad_frames);
    return rc;
}

/* Handles every complete frame in the buffer; returns a negative code to close. */
static int parse_frames(ch_conn *c)
{
    size_t off = 0;
    int rc = 0;
    while (!c->closing) {
        ch_frame f;
        uint8_t *frame = c->rbuf + off;
        int n = c->up ? ch_frame_decode_sealed(frame, c->rlen - off, CH_FRAME_MAX, &f)
                      : ch_frame_decode(frame, c->rlen - off, CH_HS_FRAME_MAX, &f);
        if (n == 0) break;
        if (n < 0) {
            CH_WARN("bad frame from %s: %s; closing", c->addr, strerror(-n));
            ch_counter_bump(&c->t->r->stats.bad_frames);
            rc = n;
            break;
        }
        off += (size_t)n;
        if (!c->up) {
            if ((rc = handshake_frame(c, &f)) < 0) break;
        } else if ((rc = deliver_record(c, frame, &f)) < 0) {
            break;
        }
    }
    memmove(c->rbuf, c->rbuf + off, c->rlen - off);
    c->rlen -= off;
    return rc;
}

/* Grows the buffer when the frame at its start is larger than the free room. */
static int ensure_room(ch_conn *c)
{
    size_t need = RBUF_MIN;
    if (c->rlen >= CH_FRAME_HDR) {
        uint32_t len;
        memcpy(&len, c->rbuf + 4, 4);
        need = CH_FRAME_HDR + (size_t)len; /* bounded: the decoder refused oversize */
    }
    if (need <= c->rcap && c->rlen < c->rcap) return 0;
    size_t cap = need > c->rcap ? need : c->rcap * 2;
    uint8_t *b = realloc(c->rbuf, cap);
    if (!b) return -ENOMEM;
    c->rbuf = b;
    c->rcap = cap;
    return 0;
}

static void on_recv(ch_reactor *r, ch_io *io, int res, uint32_t flags)
{
    ch_conn *c = CONTAINER(io, ch_conn, rio);
    c->inflight--;
    if (res <= 0 && !c->closing) {
        if (res < 0) CH_INFO("connection to %s lost: %s", c->addr, strerror(-res));
        if (res == 0 && c->rlen) {
            CH_WARN("%s closed in the middle of a frame (%zu bytes); dropped", c->addr, c->rlen);
            ch_counter_bump(&c->t->r->stats.bad_frames);
        }
        ch_conn_close(c, res);
    } else if (res > 0 && !c->closing) {
        c->rlen += (size_t)res;
        int rc = parse_frames(c);
        if (rc == 0) rc = ensure_room(c);
        if (rc < 0)
            ch_conn_close(c, rc);
        else
            tr_arm_recv(c);
    }
    tr_conn_maybe_free(c);
}

void tr_arm_recv(ch_conn *c)
{
    if (c->closing) return;
    struct io_uring_sqe *sqe = ch_reactor_sqe(c->t->r);
    if (!sqe) {
        ch_conn_close(c, -EBUSY);
        return;
    }
    io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    ch_reactor_sqe_io(sqe, &c->rio);
    c->inflight++;
}

/* Both sides speak first: each sends its HELLO as soon as the socket is connected. */
void tr_begin(ch_conn *c)
{
    ch_hello mine = c->t->self;
    mine.role = c->role;
    mine.caps = ch_seal_caps();
    int rc = ch_hs_init(&c->hs, c->initiator, &mine, c->t->cookie, c->t->cookie_len);
    if (rc == 0) rc = ch_hs_start(&c->hs, &c->out);
    if (rc < 0) {
        CH_ERROR("handshake with %s not started: %s", c->addr, strerror(-rc));
        ch_conn_close(c, rc);
        return;
    }
    c->rio.cb = on_recv;
    c->sio.cb = tr_on_sent;
    tr_kick_send(c);
    tr_arm_recv(c);
}
