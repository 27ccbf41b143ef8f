/*
 * net/transport.c - TCP connections on a reactor's io_uring (see transport.h).
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
#include "transport.h"

#include "core/backoff.h"
#include "core/log.h"
#include "net/seal.h"
#include "net/wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RBUF_MIN (64u * 1024)

struct ch_conn {
    ch_io rio, sio, cio; /* receive, send, connect */
    ch_transport *t;
    int fd;
    int inflight; /* io_uring requests not yet completed */
    bool initiator, up, closing, sending_now;
    bool retiring, wr_shut; /* ch_conn_retire: no new output; write side closed once empty */
    uint64_t retire_ns;
    bool draining;                /* closing gracefully: queued output still goes out first */
    uint64_t send_ns;             /* when the send in flight was submitted */
    uint64_t written;             /* bytes handed to the socket so far */
    uint64_t drained, sample_ns;  /* of those, delivered by the kernel at the last sample */
    bool backlog;                 /* the kernel still held unsent bytes at that sample */
    uint64_t link_bytes, link_ns; /* the link's pace: bytes and time, see sample_link */
    uint8_t role;
    int reason; /* why it closed */
    uint8_t *rbuf;
    size_t rlen, rcap;
    ch_wbuf out, wire; /* queued frames; frames on the wire */
    size_t wire_off;   /* bytes of `wire` already sent */
    ch_wbuf early;     /* frames queued before the handshake was done (record format) */
    size_t rec_at;     /* offset in `out` of the open record */
    bool rec_open;     /* frames go into the record at rec_at, not yet sealed */
    ch_hs hs;
    ch_seal seal; /* keys, once up */
    void *ud;
    uint64_t born_ns; /* for the handshake deadline */
    ch_conn *next, *prev;
    struct sockaddr_storage sa;
    socklen_t salen;
    char addr[CH_ADDR_MAX + 1];
};

struct ch_transport {
    ch_io aio;          /* accept */
    ch_backoff backoff; /* pauses accepting when out of descriptors or memory */
    ch_reactor *r;
    int lfd;
    int port;
    bool accepting;
    ch_hello self;
    uint8_t *cookie;
    size_t cookie_len;
    uint32_t max_frame;
    ch_transport_cbs cbs;
    ch_conn *conns;
};

#define CONTAINER(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

static void conn_maybe_free(ch_conn *c);
static int end_record(ch_conn *c);
static void kick_send(ch_conn *c);
static void arm_recv(ch_conn *c);

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

static void tune_socket(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- connections -------------------------------------------------------------------- */

static ch_conn *conn_new(ch_transport *t, int fd, bool initiator, uint8_t role)
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

static void conn_destroy(ch_conn *c)
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

static void conn_maybe_free(ch_conn *c)
{
    if (!c->closing || c->inflight > 0) return;
    ch_transport *t = c->t;
    if (t->cbs.on_down) t->cbs.on_down(t->cbs.ud, c, c->reason);
    conn_destroy(c);
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
    if (c->draining) kick_send(c);
}

static bool may_send(const ch_conn *c)
{
    return !c->closing || c->draining;
}

static void drained(ch_conn *c);

#define RETIRE_MS 10000u /* a retired connection the peer never closes is closed after this */

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

static void kick_send(ch_conn *c)
{
    if (c->sending_now || !may_send(c) || c->out.len == 0) return;
    if (c->rec_open && end_record(c) < 0) return;
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

static void on_sent(ch_reactor *r, ch_io *io, int res, uint32_t flags)
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
            kick_send(c);
        }
        drained(c);
    }
    conn_maybe_free(c);
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
static int end_record(ch_conn *c)
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
static int put_frame(ch_conn *c, uint8_t type, uint16_t flags, const void *a, size_t alen,
                     const void *b, size_t blen)
{
    if (!c->up) return ch_seal_record_put(&c->early, type, flags, a, alen, b, blen);
    size_t more = CH_FRAME_HDR + alen + blen;
    if (c->rec_open) {
        size_t filled = c->out.len - c->rec_at - CH_FRAME_HDR;
        if (filled > 0 && filled + more > CH_SEAL_RECORD_TARGET && end_record(c) < 0)
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
    if (rc == 0) rc = put_frame(c, type, 0, a, alen, b, blen);
    if (rc == 0) kick_send(c);
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
        rc = put_frame(c, f.type, f.flags, f.payload, f.len, NULL, 0);
    }
    if (rc == 0) kick_send(c);
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
        rc = put_frame(c, f.type, f.flags, f.payload, f.len, NULL, 0);
    ch_wbuf_free(&early);
    return rc < 0 ? rc : k;
}

static int handshake_frame(ch_conn *c, const ch_frame *f)
{
    int rc = ch_hs_on_frame(&c->hs, f, &c->out);
    if (c->out.err) return c->out.err;
    kick_send(c);
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
        kick_send(c);
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
            arm_recv(c);
    }
    conn_maybe_free(c);
}

static void arm_recv(ch_conn *c)
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
static void begin(ch_conn *c)
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
    c->sio.cb = on_sent;
    kick_send(c);
    arm_recv(c);
}

/* ---- connect and accept ------------------------------------------------------------- */

static void on_connected(ch_reactor *r, ch_io *io, int res, uint32_t flags)
{
    ch_conn *c = CONTAINER(io, ch_conn, cio);
    c->inflight--;
    if (res < 0 && !c->closing) {
        CH_DEBUG("connect to %s failed: %s", c->addr, strerror(-res));
        ch_conn_close(c, res);
    } else if (!c->closing) {
        tune_socket(c->fd);
        begin(c);
    }
    conn_maybe_free(c);
}

/* Outgoing peer connections leave from the node's own listen IP (port 0: any), when that
 * IP is a specific one of the peer's family. Then a node's traffic carries its address
 * both ways, so that firewall rules can tell nodes apart (several nodes on 127.0.0.N of one
 * machine: the fault suite partitions them) and a peer sees where a connection comes from.
 * A wildcard listener, or none, keeps the kernel's choice. Best effort: a failed bind
 * leaves the socket unbound. */
static void bind_to_listen_ip(const ch_transport *t, int fd, int family)
{
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    if (t->lfd < 0 || getsockname(t->lfd, (struct sockaddr *)&local, &len) < 0 ||
        local.ss_family != family)
        return;
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&local;
        if (in->sin_addr.s_addr == htonl(INADDR_ANY)) return;
        in->sin_port = 0;
    } else if (family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&local;
        if (IN6_IS_ADDR_UNSPECIFIED(&in6->sin6_addr)) return;
        in6->sin6_port = 0;
    } else {
        return;
    }
    int one = 1; /* the port is picked at connect time, per 4-tuple: no port per bind */
    (void)setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    (void)bind(fd, (struct sockaddr *)&local, len);
}

int ch_transport_connect(ch_transport *t, const char *addr, uint8_t role, ch_conn **out)
{
    struct sockaddr_storage sa;
    socklen_t len;
    int rc = ch_addr_parse(addr, &sa, &len);
    if (rc) return rc;
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    bind_to_listen_ip(t, fd, sa.ss_family);
    ch_conn *c = conn_new(t, fd, true, role);
    if (!c) {
        close(fd);
        return -ENOMEM;
    }
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    c->sa = sa;
    c->salen = len;
    c->cio.cb = on_connected;
    struct io_uring_sqe *sqe = ch_reactor_sqe(t->r);
    if (!sqe) {
        conn_destroy(c);
        return -EBUSY;
    }
    io_uring_prep_connect(sqe, fd, (struct sockaddr *)&c->sa, c->salen);
    ch_reactor_sqe_io(sqe, &c->cio);
    c->inflight++;
    if (out) *out = c;
    return 0;
}

static void arm_accept(ch_transport *t);

static void accept_later(ch_reactor *r, uint64_t arg)
{
    arm_accept((ch_transport *)(uintptr_t)arg);
}

static void on_accept(ch_reactor *r, ch_io *io, int res, uint32_t flags)
{
    ch_transport *t = CONTAINER(io, ch_transport, aio);
    t->accepting = false;
    if (t->lfd < 0) {
        if (res >= 0) close(res);
        return;
    }
    if (res >= 0) {
        ch_backoff_ok(&t->backoff);
        ch_conn *c = conn_new(t, res, false, CH_ROLE_PEER); /* our side speaks as a node */
        if (!c) {
            close(res);
        } else {
            tune_socket(res);
            snprintf(c->addr, sizeof(c->addr), "fd %d", res);
            begin(c);
            conn_maybe_free(c);
        }
    } else if (res != -ECANCELED && !ch_backoff_transient(res) &&
               ch_backoff_pause(&t->backoff, res)) {
        return; /* out of descriptors or memory: accepting again at once would spin */
    }
    arm_accept(t);
}

static void arm_accept(ch_transport *t)
{
    if (t->lfd < 0 || t->accepting || ch_backoff_pending(&t->backoff)) return;
    struct io_uring_sqe *sqe = ch_reactor_sqe(t->r);
    if (!sqe) {
        if (!ch_backoff_pause(&t->backoff, -EBUSY))
            CH_ERROR("cluster port %d: cannot accept (no SQE, no timer)", t->port);
        return;
    }
    io_uring_prep_accept(sqe, t->lfd, NULL, NULL, SOCK_CLOEXEC);
    ch_reactor_sqe_io(sqe, &t->aio);
    t->accepting = true;
}

static int listen_on(const char *addr, int *port)
{
    struct sockaddr_storage sa;
    socklen_t len;
    int rc = ch_addr_parse(addr, &sa, &len);
    if (rc) return rc;
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 512) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    struct sockaddr_storage got;
    socklen_t glen = sizeof(got);
    getsockname(fd, (struct sockaddr *)&got, &glen);
    *port = ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                            : ((struct sockaddr_in *)&got)->sin_port);
    return fd;
}

int ch_transport_create(ch_reactor *r, const char *listen, const ch_hello *self, const void *cookie,
                        size_t cookie_len, uint32_t max_frame, const ch_transport_cbs *cbs,
                        ch_transport **out)
{
    ch_transport *t = calloc(1, sizeof(*t));
    if (!t) return -ENOMEM;
    t->cookie = malloc(cookie_len ? cookie_len : 1);
    if (!t->cookie) {
        free(t);
        return -ENOMEM;
    }
    memcpy(t->cookie, cookie, cookie_len);
    t->cookie_len = cookie_len;
    t->r = r;
    t->self = *self;
    t->max_frame = max_frame && max_frame < CH_FRAME_MAX ? max_frame : CH_FRAME_MAX;
    t->cbs = *cbs;
    t->aio.cb = on_accept;
    t->lfd = -1;
    ch_backoff_init(&t->backoff, r, accept_later, (uint64_t)(uintptr_t)t);
    if (listen) {
        int fd = listen_on(listen, &t->port);
        if (fd < 0) {
            CH_ERROR("cannot listen on %s: %s", listen, strerror(-fd));
            free(t->cookie);
            free(t);
            return fd;
        }
        t->lfd = fd;
        ch_backoff_name(&t->backoff, "cluster port", t->port);
    }
    *out = t;
    return 0;
}

void ch_transport_set_hello(ch_transport *t, const ch_hello *self, void *ud)
{
    t->self = *self;
    t->cbs.ud = ud;
}

int ch_transport_start(ch_transport *t)
{
    arm_accept(t);
    return 0;
}

int ch_transport_port(const ch_transport *t)
{
    return t->port;
}

void ch_transport_close_all(ch_transport *t)
{
    ch_backoff_cancel(&t->backoff);
    if (t->lfd >= 0) {
        shutdown(t->lfd, SHUT_RDWR);
        close(t->lfd);
        t->lfd = -1;
    }
    for (ch_conn *c = t->conns; c; c = c->next)
        ch_conn_close(c, -ESHUTDOWN);
}

void ch_transport_free(ch_transport *t)
{
    if (!t) return;
    if (t->lfd >= 0) close(t->lfd);
    while (t->conns)
        conn_destroy(t->conns);
    explicit_bzero(t->cookie, t->cookie_len);
    free(t->cookie);
    free(t);
}

void ch_transport_sweep(ch_transport *t, uint64_t now, uint64_t deadline_ns)
{
    for (ch_conn *c = t->conns; c; c = c->next) {
        if (c->retiring && !c->closing && ch_ns_since(now, c->retire_ns) > RETIRE_MS * 1000000ull)
            ch_conn_close(c, -ETIMEDOUT);
        /* born after `now` (dialled during this tick) is young, not ancient */
        if (c->up || c->closing || c->born_ns >= now || now - c->born_ns < deadline_ns) continue;
        CH_WARN("%s did not finish its handshake in time: closing", c->addr);
        ch_counter_bump(&t->r->stats.refused_peers);
        ch_conn_close(c, -ETIMEDOUT);
    }
}

void ch_conn_set_ud(ch_conn *c, void *ud)
{
    c->ud = ud;
}

void *ch_conn_ud(const ch_conn *c)
{
    return c->ud;
}

const ch_hello *ch_conn_peer(const ch_conn *c)
{
    return c->up ? ch_hs_peer(&c->hs) : NULL;
}

bool ch_conn_initiator(const ch_conn *c)
{
    return c->initiator;
}

unsigned ch_conn_dial_port(const ch_conn *c)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    int rc = c->initiator ? getsockname(c->fd, (struct sockaddr *)&sa, &len)
                          : getpeername(c->fd, (struct sockaddr *)&sa, &len);
    if (c->fd < 0 || rc < 0) return 0;
    if (sa.ss_family == AF_INET) return ntohs(((struct sockaddr_in *)&sa)->sin_port);
    if (sa.ss_family == AF_INET6) return ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
    return 0;
}

uint8_t ch_conn_role(const ch_conn *c)
{
    return c->up ? ch_hs_peer(&c->hs)->role : c->role;
}

const char *ch_conn_addr(const ch_conn *c)
{
    return c->addr;
}
