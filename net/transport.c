/*
 * net/transport.c - TCP connections on a reactor's io_uring (see transport.h): addresses,
 * a connection's output and closing. Input and the handshake are net/transport_recv.c;
 * connect, accept and the transport itself net/transport_dial.c; shared types
 * net/transport_int.h.
 *
 * A connection always has at least one io_uring request in flight while it lives (its
 * receive, or its connect), so closing is: shut the socket down, let the requests complete
 * with an error, and free the connection when the last one returns. Callbacks never see a
 * connection freed under them, because freeing happens only at the end of a completion.
 *
 * Output is double-buffered: frames are appended to `out` while `wire` is on the socket;
 * when the send completes the buffers swap, so every send carries all the frames queued
 * since the last one.
 *
 * After the handshake, frames are written once, in plain, into the open record at the end
 * of `out` (net/seal.h); the record is sealed in place when it is handed to the socket
 * (kick_send) or when it reaches CH_SEAL_RECORD_TARGET, so one AEAD call covers what one
 * send carries. Frames queued before the handshake is done wait in `early` (the HELLO and
 * AUTH must go first, in clear) and move into a record, in order, the moment the keys
 * exist, before on_up can queue more. Received records are opened in place in the receive
 * buffer and their frames handed to on_frame one by one; a record that fails its tag
 * closes the connection. Nothing a peer sends reaches on_frame unless it was sealed with
 * this connection's keys, which only a holder of the cookie can derive.
 */
#define _GNU_SOURCE
#include "transport_int.h"

/* ---- addresses ---------------------------------------------------------------------- */

int ch_addr_parse(const char *addr, struct sockaddr_storage *sa, socklen_t *len)
{
    if (!addr) return -EINVAL;
    const char *colon = strrchr(addr, ':');
    if (!colon || colon == addr || strlen(colon + 1) == 0) return -EINVAL;
    char host[CH_ADDR_MAX + 1];
    size_t hlen = (size_t)(colon - addr);
    if (hlen >= sizeof(host)) return -EINVAL;
    memcpy(host, addr, hlen);
    host[hlen] = '\0';
    if (host[0] == '[' && hlen > 2 && host[hlen - 1] == ']') { /* [::1]:port */
        memmove(host, host + 1, hlen - 2);
        host[hlen - 2] = '\0';
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, colon + 1, &hints, &res);
    if (rc) return -EINVAL;
    memcpy(sa, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

void tr_tune_socket(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- connections -------------------------------------------------------------------- */

ch_conn *tr_conn_new(ch_transport *t, int fd, bool initiator, uint8_t role)
{
    ch_conn *c = calloc(1, sizeof(*c));
    if (!c) return NULL;
    c->rbuf = malloc(RBUF_MIN);
    if (!c->rbuf) {
        free(c);
        return NULL;
    }
    c->rcap = RBUF_MIN;
    c->t = t;
    c->fd = fd;
    c->initiator = initiator;
    c->role = role;
    c->born_ns = ch_now_ns();
    ch_wbuf_init(&c->out);
    ch_wbuf_init(&c->wire);
    ch_wbuf_init(&c->early);
    c->next = t->conns;
    if (t->conns) t->conns->prev = c;
    t->conns = c;
    return c;
}

static void conn_unlink(ch_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else if (c->t->conns == c)
        c->t->conns = c->next;
    if (c->next) c->next->prev = c->prev;
}

void tr_conn_destroy(ch_conn *c)
{
    conn_unlink(c);
    if (c->fd >= 0) close(c->fd);
    ch_wbuf_free(&c->out);
    ch_wbuf_free(&c->wire);
    ch_wbuf_free(&c->early);
    ch_seal_wipe(&c->seal);
    ch_hs_clear(&c->hs);
    free(c->rbuf);
    free(c);
}

void tr_conn_maybe_free(ch_conn *c)
{
    if (!c->closing || c->inflight > 0) return;
    ch_transport *t = c->t;
    if (t->cbs.on_down) t->cbs.on_down(t->cbs.ud, c, c->reason);
    tr_conn_destroy(c);
}

/* An orderly close (reason 0 or -ESHUTDOWN) lets queued output leave first: reading stops
 * now, writing when the queue is empty (last answers, the leave announcement). Any other
 * close is immediate. Either way the requests in flight complete, and the last one frees
 * the connection. */
void ch_conn_close(ch_conn *c, int reason)
{
    if (c->closing) return;
    CH_DEBUG("closing the connection with %s: %s", c->addr, reason ? strerror(-reason) : "done");
    c->closing = true;
    c->reason = reason;
    bool orderly = reason == 0 || reason == -ESHUTDOWN;
    c->draining = orderly && (c->sending_now || c->out.len);
    if (c->fd >= 0) shutdown(c->fd, c->draining ? SHUT_RD : SHUT_RDWR);
    if (c->draining) tr_kick_send(c);
}

static bool may_send(const ch_conn *c)
{
    return !c->closing || c->draining;
}

static void drained(ch_conn *c);

bool ch_conn_open(const ch_conn *c)
{
    return !c->closing && !c->retiring;
}

void ch_conn_retire(ch_conn *c)
{
    if (c->closing || c->retiring) return;
    CH_DEBUG("retiring the connection with %s: another one of the pair stays", c->addr);
    c->retiring = true;
    c->retire_ns = ch_now_ns();
    drained(c);
}

static void drained(ch_conn *c)
{
    if (c->retiring && !c->wr_shut && !c->sending_now && !c->out.len && c->fd >= 0) {
        c->wr_shut = true;
        shutdown(c->fd, SHUT_WR);
    }
    if (!c->draining || c->sending_now || c->out.len) return;
    c->draining = false;
    if (c->fd >= 0) shutdown(c->fd, SHUT_WR);
}

void tr_kick_send(ch_conn *c)
{
    if (c->sending_now || !may_send(c) || c->out.len == 0) return;
    if (c->rec_open && tr_end_record(c) < 0) return;
    ch_wbuf tmp = c->wire;
    c->wire = c->out;
    c->out = tmp;
    ch_wbuf_reset(&c->out);
    c->wire_off = 0;
    struct io_uring_sqe *sqe = ch_reactor_sqe(c->t->r);
    if (!sqe) {
        ch_conn_close(c, -EBUSY);
        return;
    }
    io_uring_prep_send(sqe, c->fd, c->wire.data, c->wire.len, MSG_NOSIGNAL);
    ch_reactor_sqe_io(sqe, &c->sio);
    c->send_ns = ch_now_ns();
    c->sending_now = true;
    c->inflight++;
}

#define LINK_SAMPLE_NS 1000000u

/* Samples the socket's send queue (bytes the kernel holds, not yet acknowledged by the
 * peer) after a send of `sent` bytes submitted at send_ns. While the queue stays non-empty
 * the link sets the pace, and what it drains meanwhile measures it (a 1 Gbit/s link shows
 * ~120 MB/s); a send that leaves no queue behind shows a link that keeps up, at the pace
 * of that send (loopback: GB/s). */
static void sample_link(ch_conn *c, uint64_t sent, uint64_t send_ns)
{
    /* One sample per LINK_SAMPLE_NS at most: not a syscall per send on a connection that
     * carries calls one at a time. Skipped samples lose nothing: drained bytes add up. */
    uint64_t now = ch_now_ns();
    if (now - c->sample_ns < LINK_SAMPLE_NS) return;
    int outq = 0;
    if (ioctl(c->fd, SIOCOUTQ, &outq) < 0 || outq < 0) return;
    uint64_t drained = c->written - (uint64_t)outq;
    if (c->backlog && drained > c->drained) {
        c->link_bytes += drained - c->drained;
        c->link_ns += now - c->sample_ns;
    } else if (!c->backlog && outq == 0 && now > send_ns) {
        c->link_bytes += sent;
        c->link_ns += now - send_ns;
    }
    c->drained = drained;
    c->sample_ns = now;
    c->backlog = outq > 0;
}

void tr_on_sent(ch_reactor *r, ch_io *io, int res, uint32_t flags)
{
    ch_conn *c = CONTAINER(io, ch_conn, sio);
    c->inflight--;
    c->sending_now = false;
    if (res < 0 && may_send(c)) {
        if (!c->closing) CH_WARN("send to %s failed: %s", c->addr, strerror(-res));
        c->draining = false;
        if (!c->closing) ch_conn_close(c, res);
    } else if (res >= 0 && may_send(c)) {
        c->wire_off += (size_t)res;
        c->written += (uint64_t)res;
        sample_link(c, (uint64_t)res, c->send_ns);
        if (c->wire_off < c->wire.len) { /* partial: the rest, before anything newer */
            struct io_uring_sqe *sqe = ch_reactor_sqe(r);
            if (sqe) {
                io_uring_prep_send(sqe, c->fd, c->wire.data + c->wire_off,
                                   c->wire.len - c->wire_off, MSG_NOSIGNAL);
                ch_reactor_sqe_io(sqe, &c->sio);
                c->send_ns = ch_now_ns();
                c->sending_now = true;
                c->inflight++;
            } else {
                ch_conn_close(c, -EBUSY);
            }
        } else {
            ch_wbuf_reset(&c->wire);
            c->wire_off = 0;
            tr_kick_send(c);
        }
        drained(c);
    }
    tr_conn_maybe_free(c);
}

/* Makes room for queued bytes, or cuts off a peer that stopped reading. */
static int check_queue(ch_conn *c, size_t more)
{
    if (c->closing) return -ENOTCONN;
    if (c->out.len + c->early.len + more <= CH_CONN_MAX_QUEUE) return 0;
    CH_WARN("%s stopped reading (%zu bytes queued): closing", c->addr, c->out.len + c->early.len);
    ch_conn_close(c, -ENOBUFS);
    return -ENOBUFS;
}

/* Seals the open record in place: it may go out now. On failure the connection closes. */
int tr_end_record(ch_conn *c)
{
    c->rec_open = false;
    int rc = ch_seal_record_end(&c->seal, &c->out, c->rec_at);
    if (rc < 0) {
        CH_ERROR("cannot seal a record to %s: %s; closing", c->addr, strerror(-rc));
        ch_conn_close(c, rc);
    }
    return rc;
}

/* Appends one frame of payload a || b to the open record (opening one, and first sealing
 * a full one, as needed), or to `early` before the keys exist. Hot path: one copy. */
int tr_put_frame(ch_conn *c, uint8_t type, uint16_t flags, const void *a, size_t alen,
                 const void *b, size_t blen)
{
    if (!c->up) return ch_seal_record_put(&c->early, type, flags, a, alen, b, blen);
    size_t more = CH_FRAME_HDR + alen + blen;
    if (c->rec_open) {
        size_t filled = c->out.len - c->rec_at - CH_FRAME_HDR;
        if (filled > 0 && filled + more > CH_SEAL_RECORD_TARGET && tr_end_record(c) < 0)
            return -ENOTCONN;
    }
    if (!c->rec_open) {
        c->rec_at = ch_seal_record_begin(&c->out);
        c->rec_open = true;
    }
    return ch_seal_record_put(&c->out, type, flags, a, alen, b, blen);
}

static int queue_frame(ch_conn *c, uint8_t type, const void *a, size_t alen, const void *b,
                       size_t blen)
{
    size_t len = alen + blen;
    if (c->closing) return -ENOTCONN;
    if (c->retiring) return -ESHUTDOWN;
    if (len > c->t->max_frame || len > CH_SEAL_FRAME_MAX) return -EMSGSIZE;
    int rc = check_queue(c, CH_FRAME_HDR + len);
    if (rc == 0) rc = tr_put_frame(c, type, 0, a, alen, b, blen);
    if (rc == 0) tr_kick_send(c);
    return rc;
}

/* Records (open or sealed) not yet written, and frames waiting for the keys. */
void ch_conn_link(const ch_conn *c, uint64_t *bytes, uint64_t *ns)
{
    *bytes = c->link_bytes;
    *ns = c->link_ns;
}

size_t ch_conn_queued(const ch_conn *c)
{
    return c->early.len + c->out.len + (c->wire.len - c->wire_off);
}

/* Checks that `frames` holds whole, valid frames, each small enough for a record:
 * 0, -EMSGSIZE or -EINVAL. */
static int check_raw(const ch_conn *c, const uint8_t *frames, size_t len)
{
    for (size_t off = 0; off < len;) {
        ch_frame f;
        int n = ch_frame_decode(frames + off, len - off, CH_SEAL_FRAME_MAX, &f);
        if (n == -EMSGSIZE || (n > 0 && f.len > c->t->max_frame)) return -EMSGSIZE;
        if (n <= 0) return -EINVAL; /* truncated or malformed: nothing is queued */
        off += (size_t)n;
    }
    return 0;
}

/* Each frame is queued again through put_frame: a cold path (a backlog flushed once when
 * its connection comes up), where checking every frame first costs nothing that matters. */
int ch_conn_send_raw(ch_conn *c, const void *frames, size_t len)
{
    if (c->closing) return -ENOTCONN;
    if (c->retiring) return -ESHUTDOWN;
    const uint8_t *p = frames;
    int rc = check_raw(c, p, len);
    if (rc == 0) rc = check_queue(c, len);
    for (size_t off = 0; off < len && rc == 0;) {
        ch_frame f;
        off += (size_t)ch_frame_decode(p + off, len - off, CH_SEAL_FRAME_MAX, &f); /* > 0 */
        rc = tr_put_frame(c, f.type, f.flags, f.payload, f.len, NULL, 0);
    }
    if (rc == 0) tr_kick_send(c);
    return rc;
}

int ch_conn_send(ch_conn *c, uint8_t type, const void *payload, size_t len)
{
    return queue_frame(c, type, payload, len, NULL, 0);
}

int ch_conn_send2(ch_conn *c, uint8_t type, const void *a, size_t alen, const void *b, size_t blen)
{
    return queue_frame(c, type, a, alen, b, blen);
}
