/*
 * net/transport.c - authenticated peer connections (see transport.h) on the TCP engine
 * (net/tcp.h): a connection's output, sealing and closing. Input and the handshake are
 * net/transport_recv.c; connect, accept and the transport itself net/transport_dial.c;
 * shared types net/transport_int.h.
 *
 * After the handshake, frames are written once, in plain, into the open record at the end
 * of the engine's output buffer (net/seal.h); the record is sealed in place when the buffer
 * is handed to the socket (the engine's on_flush) or when it reaches CH_SEAL_RECORD_TARGET,
 * so one AEAD call covers what one send carries. Frames queued before the handshake is
 * done wait in `early` (the HELLO and AUTH must go first, in clear) and move into a record,
 * in order, the moment the keys exist, before on_up can queue more. Received records are
 * opened in place in the receive buffer and their frames handed to on_frame one by one; a
 * record that fails its tag closes the connection. Nothing a peer sends reaches on_frame
 * unless it was sealed with this connection's keys, which only a holder of the cookie can
 * derive.
 */
#define _GNU_SOURCE
#include "transport_int.h"

static int end_record(ch_conn *c);

/* ---- connections -------------------------------------------------------------------- */

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
    ch_tcp_fini(&c->tcp);
    ch_wbuf_free(&c->early);
    ch_seal_wipe(&c->seal);
    ch_hs_clear(&c->hs);
    free(c);
}

static void on_closed(ch_tcp *tcp)
{
    ch_conn *c = CONTAINER(tcp, ch_conn, tcp);
    ch_transport *t = c->t;
    if (t->cbs.on_down) t->cbs.on_down(t->cbs.ud, c, tcp->reason);
    tr_conn_destroy(c);
}

static int on_flush(ch_tcp *tcp)
{
    ch_conn *c = CONTAINER(tcp, ch_conn, tcp);
    return c->rec_open ? end_record(c) : 0;
}

static void sample_link(ch_conn *c);

static void on_sent(ch_tcp *tcp, size_t bytes, uint64_t send_ns)
{
    sample_link(CONTAINER(tcp, ch_conn, tcp));
}

static void on_connected(ch_tcp *tcp, int res)
{
    ch_conn *c = CONTAINER(tcp, ch_conn, tcp);
    if (res < 0)
        CH_DEBUG("connect to %s failed: %s", c->addr, strerror(-res));
    else if (c->t->hold_ns)
        c->hold_until = ch_now_ns() + c->t->hold_ns; /* ch_transport_sweep begins it */
    else
        tr_begin(c);
}

static const ch_tcp_ops conn_ops = {
    .on_data = tr_on_data,
    .on_end = tr_on_end,
    .on_flush = on_flush,
    .on_sent = on_sent,
    .on_connected = on_connected,
    .on_closed = on_closed,
};

static const ch_tcp_cfg conn_cfg = {.rbuf_first = RBUF_MIN};

ch_conn *tr_conn_new(ch_transport *t, int fd, bool initiator, uint8_t role)
{
    ch_conn *c = calloc(1, sizeof(*c));
    if (!c || ch_tcp_init(&c->tcp, t->r, fd, &conn_ops, &conn_cfg) < 0) {
        free(c);
        close(fd);
        return NULL;
    }
    c->t = t;
    c->initiator = initiator;
    c->role = role;
    c->born_ns = ch_now_ns();
    ch_wbuf_init(&c->early);
    c->next = t->conns;
    if (t->conns) t->conns->prev = c;
    t->conns = c;
    return c;
}

/* An orderly close (reason 0 or -ESHUTDOWN) lets queued output leave first: reading stops
 * now, writing when the queue is empty (last answers, the leave announcement). Any other
 * close is immediate. Either way the requests in flight complete, and the last one frees
 * the connection. */
void ch_conn_close(ch_conn *c, int reason)
{
    if (c->tcp.closing) return;
    CH_DEBUG("closing the connection with %s: %s", c->addr, reason ? strerror(-reason) : "done");
    ch_tcp_close(&c->tcp, reason, reason == 0 || reason == -ESHUTDOWN);
}

bool ch_conn_open(const ch_conn *c)
{
    return !c->tcp.closing && !c->retiring;
}

void ch_conn_retire(ch_conn *c)
{
    if (c->tcp.closing || c->retiring) return;
    CH_DEBUG("retiring the connection with %s: another one of the pair stays", c->addr);
    c->retiring = true;
    c->retire_ns = ch_now_ns();
    ch_tcp_end_write(&c->tcp);
}

#define LINK_SAMPLE_NS 1000000u
/* Samples the socket's send queue (bytes the kernel holds, not yet acknowledged by the
 * peer) after a send. While the queue stays non-empty the link sets the pace, and what it
 * drains meanwhile measures it (a 1 Gbit/s link shows ~120 MB/s). A send that leaves no
 * queue behind says only that the link keeps up: it is not timed, as the time from its
 * submission to its completion is the reactor's (a busy reactor, a deferred completion),
 * not the link's, and made loopback look slower than a compressor. So a link that never
 * held a backlog reports nothing, which the codec takes for a link that keeps up. */
static void sample_link(ch_conn *c)
{
    /* One sample per LINK_SAMPLE_NS at most: not a syscall per send on a connection that
     * carries calls one at a time. Skipped samples lose nothing: drained bytes add up. */
    uint64_t now = ch_now_ns();
    if (now - c->sample_ns < LINK_SAMPLE_NS) return;
    int outq = 0;
    if (ioctl(c->tcp.fd, SIOCOUTQ, &outq) < 0 || outq < 0) return;
    uint64_t drained = c->tcp.written - (uint64_t)outq;
    if (c->backlog && drained > c->drained) {
        c->link_bytes += drained - c->drained;
        c->link_ns += now - c->sample_ns;
    }
    c->drained = drained;
    c->sample_ns = now;
    c->backlog = outq > 0;
}

/* Makes room for queued bytes, or cuts off a peer that stopped reading. */
static int check_queue(ch_conn *c, size_t more)
{
    if (c->tcp.closing) return -ENOTCONN;
    if (c->tcp.out.len + c->early.len + more <= CH_CONN_MAX_QUEUE) return 0;
    CH_WARN("%s stopped reading (%zu bytes queued): closing", c->addr,
            c->tcp.out.len + c->early.len);
    ch_conn_close(c, -ENOBUFS);
    return -ENOBUFS;
}

/* Seals the open record in place: it may go out now. On failure the connection closes. */
static int end_record(ch_conn *c)
{
    c->rec_open = false;
    int rc = ch_seal_record_end(&c->seal, &c->tcp.out, c->rec_at);
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
        size_t filled = c->tcp.out.len - c->rec_at - CH_FRAME_HDR;
        if (filled > 0 && filled + more > CH_SEAL_RECORD_TARGET && end_record(c) < 0)
            return -ENOTCONN;
    }
    if (!c->rec_open) {
        c->rec_at = ch_seal_record_begin(&c->tcp.out);
        c->rec_open = true;
    }
    return ch_seal_record_put(&c->tcp.out, type, flags, a, alen, b, blen);
}

static int queue_frame(ch_conn *c, uint8_t type, const void *a, size_t alen, const void *b,
                       size_t blen)
{
    size_t len = alen + blen;
    if (c->tcp.closing) return -ENOTCONN;
    if (c->retiring) return -ESHUTDOWN;
    if (len > c->t->max_frame || len > CH_SEAL_FRAME_MAX) return -EMSGSIZE;
    int rc = check_queue(c, CH_FRAME_HDR + len);
    if (rc == 0) rc = tr_put_frame(c, type, 0, a, alen, b, blen);
    if (rc == 0) ch_tcp_send(&c->tcp);
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
    return c->early.len + ch_tcp_queued(&c->tcp);
}

uint64_t ch_conn_acked(const ch_conn *c, bool *waiting)
{
    int outq = 0;
    if (c->tcp.fd < 0 || ioctl(c->tcp.fd, SIOCOUTQ, &outq) < 0 || outq < 0) outq = 0;
    *waiting = outq > 0 || ch_conn_queued(c) > 0;
    return c->tcp.written - (uint64_t)outq;
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
    if (c->tcp.closing) return -ENOTCONN;
    if (c->retiring) return -ESHUTDOWN;
    const uint8_t *p = frames;
    int rc = check_raw(c, p, len);
    if (rc == 0) rc = check_queue(c, len);
    for (size_t off = 0; off < len && rc == 0;) {
        ch_frame f;
        off += (size_t)ch_frame_decode(p + off, len - off, CH_SEAL_FRAME_MAX, &f); /* > 0 */
        rc = tr_put_frame(c, f.type, f.flags, f.payload, f.len, NULL, 0);
    }
    if (rc == 0) ch_tcp_send(&c->tcp);
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
