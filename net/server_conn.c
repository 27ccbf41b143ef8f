/*
 * net/server_conn.c - a server connection's life on its reactor: closing and freeing,
 * output, input, and each part's accept loop (design: net/server.c).
 */
#define _GNU_SOURCE
#include "server_int.h"

static void conn_maybe_free(sconn *c);
static void kick_send(sconn *c);
static void arm_accept(part *p);

/* Cancels an operation in flight; the cancel's own completion carries user data 0, which
 * the reactor ignores. */
void srv_cancel_io(ch_reactor *r, ch_io *io)
{
    struct io_uring_sqe *sqe = ch_reactor_sqe(r);
    if (!sqe) return; /* the shutdown that goes with it completes the request anyway */
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)io, 0);
    io_uring_sqe_set_data64(sqe, 0);
}

/* Runs fn(n, ud) on core's reactor. inbox: through its inbox whatever thread this is, so
 * that posts from threads that know of each other keep their order (a part's start before
 * its close, even when the server was opened on a reactor thread). */
int srv_post_to(ch_node *n, unsigned core, void (*fn)(ch_node *, void *), void *ud, bool inbox)
{
    ch_post post = {.fn = fn, .ud = ud};
    ch_rec h = {.op = CH_OP_POST, .len = sizeof(post)};
    if (inbox) return ch_reactor_post_inbox(n, core, &h, &post);
    return ch_reactor_post(n, core, &h, NULL, &post, false);
}

/* ---- closing and freeing ---------------------------------------------------------------- */

/* A part is done closing once its listener and every connection are gone. Signalling is
 * the last touch: the closing thread may free the server right after. */
static void part_maybe_done(part *p)
{
    if (!p->closing || p->done || p->accepting || p->conns) return;
    p->done = true;
    if (p->lfd >= 0) close(p->lfd);
    p->lfd = -1;
    ch_server *s = p->s;
    if (atomic_fetch_sub(&s->live, 1) == 1) ch_waiter_signal(&s->closed);
}

static void conn_free(sconn *c)
{
    part *p = c->part;
    ch_server *s = p->s;
    ch_sconn h = srv_handle_of(c);
    srv_slot_give(&srv_node(s->node)->tables[p->core], c); /* the handle dies first */
    if (!c->silent && s->cfg.on_close) s->cfg.on_close(c->ud, h, c->reason);
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    count_conns(p, -1);
    close(c->fd);
    free(c->rbuf);
    free(c->out.data);
    free(c->wire.data);
    free(c);
    part_maybe_done(p);
}

/* Called at the end of every completion of c: frees it once closed and quiet. */
static void conn_maybe_free(sconn *c)
{
    if (c->closing && c->inflight == 0) conn_free(c);
}

/* Defers work to a completion of c's own: handing buffered input over, or freeing c when a
 * close found nothing in flight. */
void srv_schedule_nop(sconn *c)
{
    if (c->nop) return;
    struct io_uring_sqe *sqe = ch_reactor_sqe(c->part->r);
    if (!sqe) {
        CH_ERROR("server: no submission entry for a connection: leaking it");
        return;
    }
    io_uring_prep_nop(sqe);
    ch_reactor_sqe_io(sqe, &c->nio);
    c->nop = true;
    c->inflight++;
}

void srv_conn_close(sconn *c, int reason, bool flush)
{
    if (c->closing) return;
    c->closing = true;
    c->reason = reason;
    c->flushing = flush && queued(c) > 0;
    ch_reactor *r = c->part->r;
    shutdown(c->fd, c->flushing ? SHUT_RD : SHUT_RDWR);
    if (c->reading) srv_cancel_io(r, &c->rio);
    if (c->sending && !c->flushing) srv_cancel_io(r, &c->sio);
    if (c->flushing) kick_send(c);
    if (c->inflight == 0) srv_schedule_nop(c); /* freed from a completion, not from here */
}

/* ---- output ----------------------------------------------------------------------------- */

static void send_wire(sconn *c)
{
    struct io_uring_sqe *sqe = ch_reactor_sqe(c->part->r);
    if (!sqe) {
        c->flushing = false;
        srv_conn_close(c, -EBUSY, false);
        return;
    }
    io_uring_prep_send(sqe, c->fd, c->wire.data + c->wire_off, c->wire.len - c->wire_off,
                       MSG_NOSIGNAL);
    ch_reactor_sqe_io(sqe, &c->sio);
    c->sending = true;
    c->inflight++;
}

static void kick_send(sconn *c)
{
    if (c->sending || c->out.len == 0 || (c->closing && !c->flushing)) return;
    wbuf tmp = c->wire;
    c->wire = c->out;
    c->out = tmp;
    c->out.len = 0;
    c->wire_off = 0;
    send_wire(c);
}

/* A flush finished: the peer gets its FIN; the connection frees itself once the requests
 * still in flight (the recv that SHUT_RD ended) complete. */
static void flushed(sconn *c)
{
    if (!c->flushing || c->sending || queued(c)) return;
    c->flushing = false;
    shutdown(c->fd, SHUT_WR);
}

static void unthrottle(sconn *c)
{
    ch_server *s = c->part->s;
    if (!c->throttled || c->closing || queued(c) > s->cfg.write_low) return;
    c->throttled = false;
    if (s->cfg.on_drain) s->cfg.on_drain(c->ud, srv_handle_of(c));
    srv_deliver(c);
}

static void on_sent(ch_reactor *r, ch_io *io, int res, uint32_t flags)
{
    sconn *c = CONTAINER(io, sconn, sio);
    c->inflight--;
    c->sending = false;
    if (c->closing && !c->flushing) {
        conn_maybe_free(c);
        return;
    }
    if (res == -EAGAIN || res == -EINTR) {
        send_wire(c);
    } else if (res < 0) {
        c->flushing = false;
        if (!c->closing) CH_DEBUG("server: send failed: %s", strerror(-res));
        srv_conn_close(c, res, false);
    } else {
        c->wire_off += (size_t)res;
        if (c->wire_off < c->wire.len) { /* partial: the rest, before anything newer */
            send_wire(c);
        } else {
            c->wire.len = c->wire_off = 0;
            if (c->wire.cap > WIRE_KEEP) {
                free(c->wire.data);
                c->wire = (wbuf){0};
            }
            kick_send(c);
            flushed(c);
            unthrottle(c);
        }
    }
    conn_maybe_free(c);
}

static int append(wbuf *b, const void *data, size_t len)
{
    if (b->cap - b->len < len) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap - b->len < len)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) return -ENOMEM;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

/* On the owner reactor. force: queue even past write_high (posted writes). */
int srv_write_local(sconn *c, const void *data, size_t len, bool force)
{
    ch_server *s = c->part->s;
    if (c->closing) return -ENOTCONN;
    if (!force && queued(c) >= s->cfg.write_high) {
        c->throttled = true;
        return -EAGAIN;
    }
    if (len == 0) return 0;
    int rc = append(&c->out, data, len);
    if (rc < 0) return rc;
    kick_send(c);
    if (queued(c) >= s->cfg.write_high) c->throttled = true; /* stop reading */
    return 0;
}

/* ---- input ------------------------------------------------------------------------------ */

/* The buffer is full and on_data took nothing: make it larger, up to max_read_bytes. */
static int grow(sconn *c)
{
    size_t max = c->part->s->cfg.max_read_bytes;
    if (c->rcap >= max) return -EMSGSIZE;
    size_t cap = c->rcap * 2 < max ? c->rcap * 2 : max;
    uint8_t *b = realloc(c->rbuf, cap);
    if (!b) return -ENOMEM;
    c->rbuf = b;
    c->rcap = cap;
    return 0;
}

/* With no recv in flight: unconsumed input to the front; after a large frame, back to the
 * first size, so that idle connections stay small. */
static void compact(sconn *c)
{
    if (c->rpos) {
        memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
        c->rlen -= c->rpos;
        c->rpos = 0;
    }
    size_t first = c->part->s->cfg.read_bytes;
    if (c->rlen || c->rcap <= first) return;
    uint8_t *b = realloc(c->rbuf, first);
    if (!b) return;
    c->rbuf = b;
    c->rcap = first;
}

/* Hands the unconsumed input to on_data, then reads on. */
void srv_deliver(sconn *c)
{
    ch_server *s = c->part->s;
    if (c->closing) return;
    bool offered = false;
    if (c->rlen > c->rpos && !c->paused && !c->throttled) {
        size_t len = c->rlen - c->rpos;
        long n = s->cfg.on_data(c->ud, srv_handle_of(c), c->rbuf + c->rpos, len);
        if (n < 0 || (size_t)n > len) {
            if (n >= 0) CH_ERROR("server: on_data consumed %ld of %zu bytes: closing", n, len);
            srv_conn_close(c, n < 0 ? (int)n : -EINVAL, false);
            return;
        }
        if (c->closing) return;
        c->rpos += (size_t)n;
        offered = true;
    }
    if (c->reading) return; /* the recv in flight brings more */
    compact(c);
    if (offered && c->rlen == c->rcap && !c->paused && !c->throttled) {
        int rc = grow(c); /* on_data saw a full buffer and took nothing of it */
        if (rc < 0) {
            srv_conn_close(c, rc, false);
            return;
        }
    }
    srv_arm_recv(c);
}

static void on_recv(ch_reactor *r, ch_io *io, int res, uint32_t flags)
{
    sconn *c = CONTAINER(io, sconn, rio);
    c->inflight--;
    c->reading = false;
    if (c->closing) {
        conn_maybe_free(c);
        return;
    }
    if (res > 0) {
        c->rlen += (size_t)res;
        srv_deliver(c);
    } else if (res == -EAGAIN || res == -EINTR || res == -ENOBUFS) {
        srv_arm_recv(c);
    } else {
        srv_conn_close(c, res, false); /* 0: the peer closed its side */
    }
    conn_maybe_free(c);
}

void srv_arm_recv(sconn *c)
{
    if (c->closing || c->reading || c->paused || c->throttled || c->rlen == c->rcap) return;
    struct io_uring_sqe *sqe = ch_reactor_sqe(c->part->r);
    if (!sqe) {
        srv_conn_close(c, -EBUSY, false);
        return;
    }
    io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
    ch_reactor_sqe_io(sqe, &c->rio);
    c->reading = true;
    c->inflight++;
}

static void on_nop(ch_reactor *r, ch_io *io, int res, uint32_t flags)
{
    sconn *c = CONTAINER(io, sconn, nio);
    c->inflight--;
    c->nop = false;
    srv_deliver(c);
    conn_maybe_free(c);
}

/* ---- accepting -------------------------------------------------------------------------- */

static void tune(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void conn_open(part *p, int fd)
{
    ch_server *s = p->s;
    unsigned n = atomic_load_explicit(&p->nconns, memory_order_relaxed);
    sconn *c = NULL;
    if (!s->cfg.max_conns || n < s->cfg.max_conns) c = calloc(1, sizeof(*c));
    if (c && !(c->rbuf = malloc(s->cfg.read_bytes))) {
        free(c);
        c = NULL;
    }
    if (!c || !srv_slot_take(&srv_node(s->node)->tables[p->core], c)) {
        CH_WARN("server on port %d: connection refused (%s)", s->port,
                c ? "no slot" : "limit or memory");
        if (c) free(c->rbuf);
        free(c);
        close(fd);
        return;
    }
    tune(fd);
    c->part = p;
    c->fd = fd;
    c->rcap = s->cfg.read_bytes;
    c->rio.cb = on_recv;
    c->sio.cb = on_sent;
    c->nio.cb = on_nop;
    c->next = p->conns;
    if (p->conns) p->conns->prev = c;
    p->conns = c;
    count_conns(p, 1);
    int rc = s->cfg.on_open ? s->cfg.on_open(s->cfg.ud, srv_handle_of(c), &c->ud) : 0;
    if (rc < 0) {
        c->silent = true;
        srv_conn_close(c, rc, false);
        return;
    }
    srv_arm_recv(c);
}

static void accept_later(ch_reactor *r, uint64_t arg)
{
    arm_accept((part *)(uintptr_t)arg);
}

static void on_accept(ch_reactor *r, ch_io *io, int res, uint32_t flags)
{
    part *p = CONTAINER(io, part, aio);
    p->accepting = false;
    if (p->closing) {
        if (res >= 0) close(res);
        part_maybe_done(p);
        return;
    }
    if (res >= 0) {
        ch_backoff_ok(&p->backoff);
        conn_open(p, res);
    } else if (!ch_backoff_transient(res) && ch_backoff_pause(&p->backoff, res)) {
        return; /* out of descriptors or memory: accepting again at once would spin */
    }
    arm_accept(p);
}

static void arm_accept(part *p)
{
    if (p->closing || p->accepting || p->lfd < 0 || ch_backoff_pending(&p->backoff)) return;
    struct io_uring_sqe *sqe = ch_reactor_sqe(p->r);
    if (!sqe) {
        if (!ch_backoff_pause(&p->backoff, -EBUSY))
            CH_ERROR("server on port %d: cannot accept (no SQE, no timer)", p->s->port);
        return;
    }
    io_uring_prep_accept(sqe, p->lfd, NULL, NULL, SOCK_CLOEXEC);
    ch_reactor_sqe_io(sqe, &p->aio);
    p->accepting = true;
}

/* ---- parts: started and closed on their reactor ------------------------------------------ */

void srv_part_start(ch_node *n, void *ud)
{
    part *p = ud;
    if (!p->closing) arm_accept(p); /* a close that overtook the start: nothing to do */
}

void srv_part_close(ch_node *n, void *ud)
{
    part *p = ud;
    if (p->closing) return;
    p->closing = true;
    if (p->accepting) {
        shutdown(p->lfd, SHUT_RDWR);
        srv_cancel_io(p->r, &p->aio);
    }
    ch_backoff_cancel(&p->backoff);
    for (sconn *c = p->conns; c; c = c->next)
        srv_conn_close(c, -ESHUTDOWN, false);
    part_maybe_done(p);
}

void srv_part_init(part *p, ch_server *s, unsigned core)
{
    p->s = s;
    p->core = core;
    p->r = &s->node->reactors[core];
    p->lfd = -1;
    p->aio.cb = on_accept;
    ch_backoff_init(&p->backoff, p->r, accept_later, (uint64_t)(uintptr_t)p);
}
