/*
 * net/tcp.c - the io_uring TCP engine (see tcp.h): a connection's requests, input buffer,
 * output buffers and close protocol; the accept loop; listening sockets and addresses.
 */
#define _GNU_SOURCE
#include "tcp.h"

#include "core/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONTAINER(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))
#define RBUF_ALIGN                  64u

static void on_recv(ch_reactor *r, ch_io *io, int res, uint32_t flags);
static void on_sent(ch_reactor *r, ch_io *io, int res, uint32_t flags);
static void on_nop(ch_reactor *r, ch_io *io, int res, uint32_t flags);
static void on_connect(ch_reactor *r, ch_io *io, int res, uint32_t flags);

/* ---- life --------------------------------------------------------------------------------- */

static uint8_t *rbuf_alloc(size_t cap)
{
    return aligned_alloc(RBUF_ALIGN, (cap + RBUF_ALIGN - 1) & ~(size_t)(RBUF_ALIGN - 1));
}

int ch_tcp_init(ch_tcp *t, ch_reactor *r, int fd, const ch_tcp_ops *ops, const ch_tcp_cfg *cfg)
{
    memset(t, 0, sizeof(*t));
    t->rbuf = rbuf_alloc(cfg->rbuf_first);
    if (!t->rbuf) return -ENOMEM;
    t->r = r;
    t->ops = ops;
    t->cfg = *cfg;
    t->fd = fd;
    t->rcap = cfg->rbuf_first;
    t->rio.cb = on_recv;
    t->sio.cb = on_sent;
    ch_wbuf_init(&t->out);
    ch_wbuf_init(&t->wire);
    return 0;
}

void ch_tcp_fini(ch_tcp *t)
{
    if (t->fd >= 0) close(t->fd);
    t->fd = -1;
    free(t->rbuf);
    t->rbuf = NULL;
    ch_wbuf_free(&t->out);
    ch_wbuf_free(&t->wire);
}

/* Ends every completion of t: hands t to its owner once closed and quiet. t may be freed
 * on return. */
static void maybe_closed(ch_tcp *t)
{
    if (t->closing && t->inflight == 0) t->ops->on_closed(t);
}

/* Cancels an operation in flight; the cancel's own completion carries user data 0, which
 * the reactor ignores. */
static void cancel_io(ch_reactor *r, ch_io *io)
{
    struct io_uring_sqe *sqe = ch_reactor_sqe(r);
    if (!sqe) return; /* the shutdown that goes with it completes the request anyway */
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)io, 0);
    io_uring_sqe_set_data64(sqe, 0);
}

/* Defers work to a completion of t's own: handing buffered input over, or freeing t when a
 * close found nothing in flight. */
static void defer(ch_tcp *t)
{
    if (t->xbusy) return;
    struct io_uring_sqe *sqe = ch_reactor_sqe(t->r);
    if (!sqe) {
        CH_ERROR("tcp: no submission entry for a connection: leaking it");
        return;
    }
    io_uring_prep_nop(sqe);
    t->xio.cb = on_nop;
    ch_reactor_sqe_io(sqe, &t->xio);
    t->xbusy = true;
    t->inflight++;
}

static void on_nop(ch_reactor *r, ch_io *io, int res, uint32_t flags)
{
    ch_tcp *t = CONTAINER(io, ch_tcp, xio);
    t->inflight--;
    t->xbusy = false;
    ch_tcp_deliver(t);
    maybe_closed(t);
}

void ch_tcp_close(ch_tcp *t, int reason, bool flush)
{
    if (t->closing) return;
    t->closing = true;
    t->reason = reason;
    t->flushing = flush && ch_tcp_queued(t) > 0 && !t->wr_shut;
    if (t->flushing) t->end_write = true;
    if (t->fd >= 0) shutdown(t->fd, t->flushing ? SHUT_RD : SHUT_RDWR);
    if (t->reading) cancel_io(t->r, &t->rio);
    if (t->sending && !t->flushing) cancel_io(t->r, &t->sio);
    if (t->connecting) cancel_io(t->r, &t->xio);
    if (t->flushing) ch_tcp_send(t);
    if (t->inflight == 0) defer(t); /* freed from a completion, not from here */
}

/* ---- output ------------------------------------------------------------------------------- */

static bool may_send(const ch_tcp *t)
{
    return !t->closing || t->flushing;
}

static void submit_send(ch_tcp *t)
{
    struct io_uring_sqe *sqe = ch_reactor_sqe(t->r);
    if (!sqe) {
        t->flushing = false;
        ch_tcp_close(t, -EBUSY, false);
        return;
    }
    io_uring_prep_send(sqe, t->fd, t->wire.data + t->wire_off, t->wire.len - t->wire_off,
                       MSG_NOSIGNAL);
    ch_reactor_sqe_io(sqe, &t->sio);
    t->send_ns = ch_now_ns();
    t->sending = true;
    t->inflight++;
}

/* The queue is empty: a pending end of the write side happens now. */
static void check_drained(ch_tcp *t)
{
    if (!t->end_write || t->wr_shut || t->sending || t->out.len || t->fd < 0) return;
    t->wr_shut = true;
    t->flushing = false;
    shutdown(t->fd, SHUT_WR);
}

void ch_tcp_send(ch_tcp *t)
{
    if (t->sending || !may_send(t) || t->connecting || t->out.len == 0) return;
    if (t->ops->on_flush && t->ops->on_flush(t) < 0) return; /* it closed t */
    ch_wbuf tmp = t->wire;
    t->wire = t->out;
    t->out = tmp;
    ch_wbuf_reset(&t->out);
    t->wire_off = 0;
    submit_send(t);
}

static void on_sent(ch_reactor *r, ch_io *io, int res, uint32_t flags)
{
    ch_tcp *t = CONTAINER(io, ch_tcp, sio);
    t->inflight--;
    t->sending = false;
    if (!may_send(t)) {
        /* closed without a flush: nothing more leaves */
    } else if (res == -EAGAIN || res == -EINTR) {
        submit_send(t);
    } else if (res < 0) {
        t->flushing = false;
        if (t->closing)
            ch_tcp_close(t, res, false);
        else
            t->ops->on_end(t, res, true);
    } else {
        t->wire_off += (size_t)res;
        t->written += (uint64_t)res;
        if (t->wire_off < t->wire.len) { /* partial: the rest, before anything newer */
            submit_send(t);
        } else {
            ch_wbuf_reset(&t->wire);
            t->wire_off = 0;
            if (t->cfg.wire_keep && t->wire.cap > t->cfg.wire_keep) {
                ch_wbuf_free(&t->wire);
                ch_wbuf_init(&t->wire);
            }
            if (t->ops->on_sent) t->ops->on_sent(t, (size_t)res, t->send_ns);
            ch_tcp_send(t);
            check_drained(t);
        }
    }
    maybe_closed(t);
}

int ch_tcp_write(ch_tcp *t, const void *data, size_t len)
{
    if (!ch_tcp_writable(t)) return -ENOTCONN;
    if (len == 0) return 0;
    if (ch_wbuf_reserve(&t->out, len) < 0) {
        t->out.err = 0; /* nothing was queued; the buffer stays usable */
        return -ENOMEM;
    }
    memcpy(t->out.data + t->out.len, data, len);
    t->out.len += len;
    ch_tcp_send(t);
    return 0;
}

void ch_tcp_end_write(ch_tcp *t)
{
    if (t->closing || t->end_write) return;
    t->end_write = true;
    check_drained(t);
}

/* ---- input -------------------------------------------------------------------------------- */

/* Moves the buffer to a new allocation of cap bytes (aligned; realloc would not keep it so). */
static int resize(ch_tcp *t, size_t cap)
{
    uint8_t *b = rbuf_alloc(cap);
    if (!b) return -ENOMEM;
    memcpy(b, t->rbuf, t->rlen);
    free(t->rbuf);
    t->rbuf = b;
    t->rcap = cap;
    return 0;
}

/* With no recv in flight: unconsumed input to the front, then the size on_data asked for,
 * or back to the first size once empty, so that idle connections stay small. */
static int reshape(ch_tcp *t)
{
    if (t->rpos) {
        memmove(t->rbuf, t->rbuf + t->rpos, t->rlen - t->rpos);
        t->rlen -= t->rpos;
        t->rpos = 0;
    }
    if (t->want > t->rcap) {
        size_t want = t->want;
        t->want = 0;
        return resize(t, want);
    }
    if (!t->rlen && t->cfg.rbuf_keep && t->rcap > t->cfg.rbuf_keep)
        (void)resize(t, t->cfg.rbuf_first);
    return 0;
}

static void arm_recv(ch_tcp *t)
{
    if (t->closing || t->reading || t->connecting || t->hold || t->rlen == t->rcap) return;
    struct io_uring_sqe *sqe = ch_reactor_sqe(t->r);
    if (!sqe) {
        ch_tcp_close(t, -EBUSY, false);
        return;
    }
    io_uring_prep_recv(sqe, t->fd, t->rbuf + t->rlen, t->rcap - t->rlen, 0);
    ch_reactor_sqe_io(sqe, &t->rio);
    t->reading = true;
    t->inflight++;
}

void ch_tcp_deliver(ch_tcp *t)
{
    if (t->closing) return;
    if (t->rlen > t->rpos && !t->hold) {
        int rc = t->ops->on_data(t);
        if (rc < 0) ch_tcp_close(t, rc, false);
        if (t->closing) return;
    }
    if (t->reading) return; /* the recv in flight brings more */
    int rc = reshape(t);
    if (rc < 0) {
        ch_tcp_close(t, rc, false);
        return;
    }
    arm_recv(t);
}

void ch_tcp_read(ch_tcp *t)
{
    if (t->rlen > t->rpos && !t->hold)
        defer(t); /* on_data must not run from inside the caller */
    else
        arm_recv(t);
}

static void on_recv(ch_reactor *r, ch_io *io, int res, uint32_t flags)
{
    ch_tcp *t = CONTAINER(io, ch_tcp, rio);
    t->inflight--;
    t->reading = false;
    if (t->closing) {
        /* nothing more is read */
    } else if (res > 0) {
        t->rlen += (size_t)res;
        ch_tcp_deliver(t);
    } else if (res == -EAGAIN || res == -EINTR || res == -ENOBUFS) {
        arm_recv(t);
    } else {
        t->ops->on_end(t, res, false); /* 0: the peer closed its side */
    }
    maybe_closed(t);
}

/* ---- connect ------------------------------------------------------------------------------ */

int ch_tcp_connect(ch_tcp *t, const struct sockaddr *sa, socklen_t len)
{
    struct io_uring_sqe *sqe = ch_reactor_sqe(t->r);
    if (!sqe) return -EBUSY;
    io_uring_prep_connect(sqe, t->fd, sa, len);
    t->xio.cb = on_connect;
    ch_reactor_sqe_io(sqe, &t->xio);
    t->xbusy = true;
    t->connecting = true;
    t->inflight++;
    return 0;
}

static void on_connect(ch_reactor *r, ch_io *io, int res, uint32_t flags)
{
    ch_tcp *t = CONTAINER(io, ch_tcp, xio);
    t->inflight--;
    t->xbusy = false;
    t->connecting = false;
    if (!t->closing) {
        if (res == 0) ch_tcp_nodelay(t->fd);
        if (t->ops->on_connected) t->ops->on_connected(t, res);
        if (res < 0 && !t->closing) ch_tcp_close(t, res, false);
        if (!t->closing) {
            ch_tcp_send(t); /* what was queued while connecting */
            arm_recv(t);
        }
    }
    maybe_closed(t);
}

void ch_tcp_nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

/* ---- accepting ---------------------------------------------------------------------------- */

static void arm_accept(ch_tcp_acceptor *a);

static void accept_later(ch_reactor *r, uint64_t arg)
{
    arm_accept((ch_tcp_acceptor *)(uintptr_t)arg);
}

static void on_accept(ch_reactor *r, ch_io *io, int res, uint32_t flags)
{
    ch_tcp_acceptor *a = CONTAINER(io, ch_tcp_acceptor, aio);
    a->accepting = false;
    if (a->stopped) {
        if (res >= 0) close(res);
        if (a->on_quiet) a->on_quiet(a);
        return;
    }
    if (res >= 0) {
        ch_backoff_ok(&a->backoff);
        ch_tcp_nodelay(res);
        a->on_accept(a, res);
    } else if (res != -ECANCELED && !ch_backoff_transient(res) &&
               ch_backoff_pause(&a->backoff, res)) {
        return; /* out of descriptors or memory: accepting again at once would spin */
    }
    arm_accept(a);
}

static void arm_accept(ch_tcp_acceptor *a)
{
    if (a->stopped || a->accepting || a->lfd < 0 || ch_backoff_pending(&a->backoff)) return;
    struct io_uring_sqe *sqe = ch_reactor_sqe(a->r);
    if (!sqe) {
        if (!ch_backoff_pause(&a->backoff, -EBUSY))
            CH_ERROR("%s: cannot accept (no SQE, no timer)", a->backoff.what);
        return;
    }
    io_uring_prep_accept(sqe, a->lfd, NULL, NULL, SOCK_CLOEXEC);
    ch_reactor_sqe_io(sqe, &a->aio);
    a->accepting = true;
}

void ch_tcp_acceptor_init(ch_tcp_acceptor *a, ch_reactor *r, int lfd,
                          void (*on_accept_fn)(ch_tcp_acceptor *, int))
{
    memset(a, 0, sizeof(*a));
    a->r = r;
    a->lfd = lfd;
    a->aio.cb = on_accept;
    a->on_accept = on_accept_fn;
    ch_backoff_init(&a->backoff, r, accept_later, (uint64_t)(uintptr_t)a);
}

void ch_tcp_acceptor_start(ch_tcp_acceptor *a)
{
    arm_accept(a);
}

void ch_tcp_acceptor_stop(ch_tcp_acceptor *a)
{
    if (a->stopped) return;
    a->stopped = true;
    ch_backoff_cancel(&a->backoff);
    if (a->accepting) {
        shutdown(a->lfd, SHUT_RDWR);
        cancel_io(a->r, &a->aio);
    }
}

/* ---- addresses and listening sockets ----------------------------------------------------- */

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

int ch_tcp_bound_port(int fd)
{
    struct sockaddr_storage got;
    socklen_t len = sizeof(got);
    if (getsockname(fd, (struct sockaddr *)&got, &len) < 0) return -errno;
    return ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                           : ((struct sockaddr_in *)&got)->sin_port);
}

int ch_tcp_listen(const char *addr, unsigned backlog, int *port)
{
    struct sockaddr_storage sa;
    socklen_t len;
    int rc = ch_addr_parse(addr, &sa, &len);
    if (rc) return rc;
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, (int)backlog) < 0) {
        rc = -errno;
        close(fd);
        return rc;
    }
    rc = ch_tcp_bound_port(fd);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    *port = rc;
    return fd;
}
