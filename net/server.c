/*
 * net/server.c - the server skeleton: TCP servers on the reactors (corehub/server.h).
 *
 * A server has one part per core: a listening socket bound with SO_REUSEPORT, its accept
 * request and its connections. A part is touched only by its reactor; the thread that opens
 * or closes the server talks to it by posting functions (CH_OP_POST) and waits for the
 * parts to report, through a waiter, that their last socket request completed.
 *
 * A connection always frees itself at the end of one of its own completions (recv, send or
 * a no-op used to defer work), once no request of it is in flight, so neither the kernel
 * nor a callback further up the stack can touch it after. Closing is: shut the socket
 * down, cancel what is in flight, and wait for those completions.
 *
 * Input goes into the connection's buffer at its end; on_data sees everything unconsumed
 * and says how much it took. The rest moves to the front, and the buffer grows or shrinks,
 * only while no recv is in flight (the kernel writes past the end then); until then the
 * start of the unconsumed bytes just moves forward. Input handed over outside a recv
 * completion (after a resume) waits for a no-op completion, so that on_data never runs
 * from inside a call of the application.
 *
 * Output is double-buffered like net/transport.c: writes append to `out` while `wire` is
 * on the socket; when the send completes the buffers swap. Reading stops while the queue is
 * at write_high or above and resumes below write_low.
 *
 * Handles index a per-core slot table that the node owns (net/server.h): chunks of slots
 * that are allocated once and never move, so another thread may read a slot's generation
 * at any time.
 */
#define _GNU_SOURCE
#include "server.h"

#include "net/transport.h" /* ch_addr_parse */

#include "core/backoff.h"
#include "core/log.h"
#include "core/node.h"

#include <corehub/server.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK_BITS  12
#define CHUNK_SLOTS (1u << CHUNK_BITS)
#define CHUNKS      1024u         /* 4 M connection slots per core */
#define WIRE_KEEP   (256u * 1024) /* an idle write buffer larger than this is freed */

#define CONTAINER(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

typedef struct slot {
    _Atomic uint64_t gen; /* odd while a connection holds the slot */
    struct sconn *c;      /* owner reactor only */
} slot;

typedef struct slot_table {
    _Atomic(slot *) chunk[CHUNKS];
    uint32_t used; /* slots handed out at least once */
    uint32_t *free, nfree, capfree;
} slot_table;

enum { SRV_OPEN, SRV_STOPPING, SRV_STOPPED };

typedef struct ch_srv_node {
    pthread_mutex_t mu;
    pthread_cond_t cv;     /* a server reached SRV_STOPPED */
    struct ch_server *all; /* every server not yet freed */
    unsigned cores;
    slot_table tables[];
} ch_srv_node;

typedef struct wbuf {
    uint8_t *data;
    size_t len, cap;
} wbuf;

typedef struct sconn {
    ch_io rio, sio, nio; /* recv, send, no-op */
    struct part *part;
    int fd;
    uint32_t idx; /* slot */
    uint64_t gen;
    int inflight;   /* io_uring requests not completed */
    bool closing;   /* no more input for on_data, no more writes */
    bool flushing;  /* closing gracefully: the queue still leaves */
    bool reading;   /* a recv is in flight */
    bool sending;   /* a send is in flight */
    bool nop;       /* the no-op is in flight */
    bool paused;    /* by ch_sconn_pause */
    bool throttled; /* the queue reached write_high */
    bool silent;    /* refused by on_open: no on_close */
    int reason;
    uint8_t *rbuf;
    size_t rpos, rlen, rcap; /* unconsumed input is rbuf[rpos..rlen) */
    wbuf out, wire;          /* queued; on the socket */
    size_t wire_off;         /* bytes of `wire` already sent */
    void *ud;
    struct sconn *next, *prev;
} sconn;

typedef struct part {
    ch_io aio;          /* accept */
    ch_backoff backoff; /* pauses accepting when out of descriptors or memory */
    struct ch_server *s;
    ch_reactor *r;
    unsigned core;
    int lfd;
    bool accepting, closing, done;
    sconn *conns;
    _Atomic unsigned nconns;
} part;

struct ch_server {
    ch_node *node;
    ch_server_config cfg;
    int port;
    int state; /* SRV_*, under the ch_srv_node's mu */
    unsigned nparts;
    part *parts;
    _Atomic unsigned live; /* parts still closing */
    ch_waiter closed;
    struct ch_server *next, *prev;
};

/* A write or close posted from another thread. */
typedef struct remote_op {
    ch_sconn h;
    int close; /* 0: write; 1: close with flush; 2: close now */
    size_t len;
    uint8_t data[];
} remote_op;

static void conn_maybe_free(sconn *c);
static void conn_close(sconn *c, int reason, bool flush);
static void arm_recv(sconn *c);
static void deliver(sconn *c);
static void kick_send(sconn *c);
static void arm_accept(part *p);

/* ---- slots and handles ------------------------------------------------------------------ */

static ch_srv_node *srv_node(ch_node *n)
{
    return atomic_load_explicit(&n->srv, memory_order_acquire);
}

static ch_srv_node *srv_node_get(ch_node *n)
{
    ch_srv_node *sn = srv_node(n);
    if (sn) return sn;
    sn = calloc(1, sizeof(*sn) + n->cores * sizeof(slot_table));
    if (!sn) return NULL;
    sn->cores = n->cores;
    pthread_mutex_init(&sn->mu, NULL);
    pthread_cond_init(&sn->cv, NULL);
    ch_srv_node *expected = NULL;
    if (atomic_compare_exchange_strong(&n->srv, &expected, sn)) return sn;
    pthread_cond_destroy(&sn->cv);
    pthread_mutex_destroy(&sn->mu);
    free(sn);
    return expected; /* another thread won */
}

static slot *slot_at(slot_table *t, uint32_t idx)
{
    slot *chunk = atomic_load_explicit(&t->chunk[idx >> CHUNK_BITS], memory_order_acquire);
    return chunk ? &chunk[idx & (CHUNK_SLOTS - 1)] : NULL;
}

/* A free slot for c; false when the table is full or memory is short. */
static bool slot_take(slot_table *t, sconn *c)
{
    uint32_t idx;
    if (t->nfree) {
        idx = t->free[--t->nfree];
    } else {
        if (t->used == CHUNKS * CHUNK_SLOTS) return false;
        idx = t->used;
        if (!atomic_load_explicit(&t->chunk[idx >> CHUNK_BITS], memory_order_relaxed)) {
            slot *chunk = calloc(CHUNK_SLOTS, sizeof(*chunk));
            if (!chunk) return false;
            atomic_store_explicit(&t->chunk[idx >> CHUNK_BITS], chunk, memory_order_release);
        }
        t->used++;
    }
    slot *s = slot_at(t, idx);
    s->c = c;
    c->idx = idx;
    c->gen = atomic_load_explicit(&s->gen, memory_order_relaxed) + 1;
    atomic_store_explicit(&s->gen, c->gen, memory_order_release);
    return true;
}

static void slot_give(slot_table *t, sconn *c)
{
    slot *s = slot_at(t, c->idx);
    atomic_store_explicit(&s->gen, c->gen + 1, memory_order_release);
    s->c = NULL;
    if (t->nfree == t->capfree) {
        uint32_t cap = t->capfree ? t->capfree * 2 : 64;
        uint32_t *v = realloc(t->free, cap * sizeof(*v));
        if (!v) return; /* the slot is lost, the table stays sound */
        t->free = v;
        t->capfree = cap;
    }
    t->free[t->nfree++] = c->idx;
}

static ch_sconn handle_of(const sconn *c)
{
    ch_sconn h = {
        {(uint64_t)(uintptr_t)c->part->s->node, ((uint64_t)c->part->core << 32) | c->idx, c->gen}};
    return h;
}

static ch_node *handle_node(ch_sconn h, unsigned *core, uint32_t *idx)
{
    ch_node *n = (ch_node *)(uintptr_t)h.w[0];
    *core = (unsigned)(h.w[1] >> 32);
    *idx = (uint32_t)h.w[1];
    if (!n || !(h.w[2] & 1) || *core >= n->cores) return NULL;
    return n;
}

/* The slot a handle names, when its generation still matches; any thread. */
static slot *handle_slot(ch_sconn h, ch_node **np, unsigned *core)
{
    uint32_t idx;
    ch_node *n = handle_node(h, core, &idx);
    ch_srv_node *sn = n ? srv_node(n) : NULL;
    if (!sn || idx >= CHUNKS * CHUNK_SLOTS) return NULL;
    slot *s = slot_at(&sn->tables[*core], idx);
    if (!s || atomic_load_explicit(&s->gen, memory_order_acquire) != h.w[2]) return NULL;
    if (np) *np = n;
    return s;
}

/* The connection, on its own reactor: NULL when gone; *elsewhere set when the caller is
 * not that reactor (NULL then too). */
static sconn *handle_conn(ch_sconn h, bool *elsewhere)
{
    ch_node *n = NULL;
    unsigned core = 0;
    slot *s = handle_slot(h, &n, &core);
    ch_reactor *self = ch_reactor_self();
    *elsewhere = n && self != &n->reactors[core];
    if (!s || *elsewhere) return NULL;
    return s->c;
}

/* ---- small helpers ---------------------------------------------------------------------- */

static void count_conns(part *p, int d)
{
    unsigned v = atomic_load_explicit(&p->nconns, memory_order_relaxed);
    atomic_store_explicit(&p->nconns, v + (unsigned)d, memory_order_relaxed);
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

/* Runs fn(n, ud) on core's reactor. inbox: through its inbox whatever thread this is, so
 * that posts from threads that know of each other keep their order (a part's start before
 * its close, even when the server was opened on a reactor thread). */
static int post_to(ch_node *n, unsigned core, void (*fn)(ch_node *, void *), void *ud, bool inbox)
{
    ch_post post = {.fn = fn, .ud = ud};
    ch_rec h = {.op = CH_OP_POST, .len = sizeof(post)};
    if (inbox) return ch_reactor_post_inbox(n, core, &h, &post);
    return ch_reactor_post(n, core, &h, NULL, &post, false);
}

static size_t queued(const sconn *c)
{
    return c->out.len + (c->wire.len - c->wire_off);
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
    ch_sconn h = handle_of(c);
    slot_give(&srv_node(s->node)->tables[p->core], c); /* the handle dies first */
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
static void schedule_nop(sconn *c)
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

static void conn_close(sconn *c, int reason, bool flush)
{
    if (c->closing) return;
    c->closing = true;
    c->reason = reason;
    c->flushing = flush && queued(c) > 0;
    ch_reactor *r = c->part->r;
    shutdown(c->fd, c->flushing ? SHUT_RD : SHUT_RDWR);
    if (c->reading) cancel_io(r, &c->rio);
    if (c->sending && !c->flushing) cancel_io(r, &c->sio);
    if (c->flushing) kick_send(c);
    if (c->inflight == 0) schedule_nop(c); /* freed from a completion, not from here */
}

/* ---- output ----------------------------------------------------------------------------- */

static void send_wire(sconn *c)
{
    struct io_uring_sqe *sqe = ch_reactor_sqe(c->part->r);
    if (!sqe) {
        c->flushing = false;
        conn_close(c, -EBUSY, false);
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
    if (s->cfg.on_drain) s->cfg.on_drain(c->ud, handle_of(c));
    deliver(c);
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
        conn_close(c, res, false);
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
static int write_local(sconn *c, const void *data, size_t len, bool force)
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
static void deliver(sconn *c)
{
    ch_server *s = c->part->s;
    if (c->closing) return;
    bool offered = false;
    if (c->rlen > c->rpos && !c->paused && !c->throttled) {
        size_t len = c->rlen - c->rpos;
        long n = s->cfg.on_data(c->ud, handle_of(c), c->rbuf + c->rpos, len);
        if (n < 0 || (size_t)n > len) {
            if (n >= 0) CH_ERROR("server: on_data consumed %ld of %zu bytes: closing", n, len);
            conn_close(c, n < 0 ? (int)n : -EINVAL, false);
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
            conn_close(c, rc, false);
            return;
        }
    }
    arm_recv(c);
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
        deliver(c);
    } else if (res == -EAGAIN || res == -EINTR || res == -ENOBUFS) {
        arm_recv(c);
    } else {
        conn_close(c, res, false); /* 0: the peer closed its side */
    }
    conn_maybe_free(c);
}

static void arm_recv(sconn *c)
{
    if (c->closing || c->reading || c->paused || c->throttled || c->rlen == c->rcap) return;
    struct io_uring_sqe *sqe = ch_reactor_sqe(c->part->r);
    if (!sqe) {
        conn_close(c, -EBUSY, false);
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
    deliver(c);
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
    if (!c || !slot_take(&srv_node(s->node)->tables[p->core], c)) {
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
    int rc = s->cfg.on_open ? s->cfg.on_open(s->cfg.ud, handle_of(c), &c->ud) : 0;
    if (rc < 0) {
        c->silent = true;
        conn_close(c, rc, false);
        return;
    }
    arm_recv(c);
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

static void part_start(ch_node *n, void *ud)
{
    part *p = ud;
    if (!p->closing) arm_accept(p); /* a close that overtook the start: nothing to do */
}

static void part_close(ch_node *n, void *ud)
{
    part *p = ud;
    if (p->closing) return;
    p->closing = true;
    if (p->accepting) {
        shutdown(p->lfd, SHUT_RDWR);
        cancel_io(p->r, &p->aio);
    }
    ch_backoff_cancel(&p->backoff);
    for (sconn *c = p->conns; c; c = c->next)
        conn_close(c, -ESHUTDOWN, false);
    part_maybe_done(p);
}

/* ---- opening ---------------------------------------------------------------------------- */

void ch_server_config_init(ch_server_config *cfg)
{
    if (!cfg) return;
    memset(cfg, 0, sizeof(*cfg));
    cfg->backlog = 512;
    cfg->read_bytes = 16 * 1024;
    cfg->max_read_bytes = 1024 * 1024;
    cfg->write_high = 1024 * 1024;
    cfg->write_low = 256 * 1024;
}

static int check_config(const ch_server_config *c)
{
    if (!c->listen || !c->on_data || c->read_bytes == 0 || c->max_read_bytes < c->read_bytes)
        return -EINVAL;
    if (c->write_high == 0 || c->write_low > c->write_high || c->backlog == 0) return -EINVAL;
    return 0;
}

static void set_port(struct sockaddr_storage *sa, int port)
{
    if (sa->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)sa)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)sa)->sin_port = htons((uint16_t)port);
}

static int bound_port(int fd)
{
    struct sockaddr_storage got;
    socklen_t len = sizeof(got);
    if (getsockname(fd, (struct sockaddr *)&got, &len) < 0) return -errno;
    return ntohs(got.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&got)->sin6_port
                                           : ((struct sockaddr_in *)&got)->sin_port);
}

/* One listening socket on sa (SO_REUSEPORT, so that every core can have one). */
static int listen_one(const struct sockaddr_storage *sa, socklen_t len, unsigned backlog)
{
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0 ||
        bind(fd, (const struct sockaddr *)sa, len) < 0 || listen(fd, (int)backlog) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

/*
 * Claims the address for this server alone and sets its port in sa (the kernel's choice
 * for port 0). SO_REUSEPORT lets any socket of the same user join a port's group, so a
 * second node asked for the same port would bind it too, and clients would alternate
 * between two unrelated hubs. A plain bind (no SO_REUSEPORT) conflicts with every socket
 * on the port, so it fails with EADDRINUSE when anyone holds it; the group binds right
 * after the probe closes. We keep a group per core rather than one shared socket because
 * the kernel spreads a group's connections evenly over its sockets, and each core must
 * accept its share. The window between the probe and the group is a few system calls: a
 * second node would have to start in the same microseconds, as the same user, to slip in.
 */
static int claim_port(struct sockaddr_storage *sa, socklen_t len)
{
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1, rc = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)); /* TIME_WAIT is no owner */
    if (bind(fd, (const struct sockaddr *)sa, len) < 0)
        rc = -errno;
    else if ((rc = bound_port(fd)) > 0)
        set_port(sa, rc);
    close(fd);
    return rc < 0 ? rc : 0;
}

/* Binds every part's socket to the port claim_port found free. */
static int bind_parts(ch_server *s)
{
    struct sockaddr_storage sa;
    socklen_t len;
    int rc = ch_addr_parse(s->cfg.listen, &sa, &len);
    if (rc < 0 || (rc = claim_port(&sa, len)) < 0) return rc;
    for (unsigned i = 0; i < s->nparts; i++) {
        int fd = listen_one(&sa, len, s->cfg.backlog);
        if (fd < 0) return fd;
        s->parts[i].lfd = fd;
        if (i == 0 && (s->port = bound_port(fd)) < 0) return s->port;
        ch_backoff_name(&s->parts[i].backoff, "server on port", s->port);
    }
    return 0;
}

static void server_free(ch_server *s)
{
    for (unsigned i = 0; s->parts && i < s->nparts; i++)
        if (s->parts[i].lfd >= 0) close(s->parts[i].lfd);
    ch_waiter_destroy(&s->closed);
    free((char *)s->cfg.listen);
    free(s->parts);
    free(s);
}

static ch_server *server_new(ch_node *n, const ch_server_config *cfg)
{
    ch_server *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    if (ch_waiter_init(&s->closed) < 0) {
        free(s);
        return NULL;
    }
    s->node = n;
    s->cfg = *cfg;
    s->nparts = n->cores;
    s->cfg.listen = strdup(cfg->listen);
    s->parts = calloc(s->nparts, sizeof(*s->parts));
    for (unsigned i = 0; s->parts && i < s->nparts; i++) {
        part *p = &s->parts[i];
        p->s = s;
        p->core = i;
        p->r = &n->reactors[i];
        p->lfd = -1;
        p->aio.cb = on_accept;
        ch_backoff_init(&p->backoff, p->r, accept_later, (uint64_t)(uintptr_t)p);
    }
    if (!s->cfg.listen || !s->parts) {
        server_free(s);
        return NULL;
    }
    return s;
}

int ch_server_open(ch_node *n, const ch_server_config *cfg, ch_server **out)
{
    if (!n || !cfg || !out) return -EINVAL;
    int rc = check_config(cfg);
    if (rc < 0) return rc;
    if ((rc = ch_node_api_enter(n)) < 0) return rc;
    ch_srv_node *sn = srv_node_get(n);
    ch_server *s = sn ? server_new(n, cfg) : NULL;
    rc = s ? bind_parts(s) : -ENOMEM;
    if (rc < 0) {
        if (s) CH_ERROR("server: cannot listen on %s: %s", cfg->listen, strerror(-rc));
        if (s) server_free(s);
        ch_node_api_leave(n);
        return rc;
    }
    pthread_mutex_lock(&sn->mu);
    s->next = sn->all;
    if (sn->all) sn->all->prev = s;
    sn->all = s;
    pthread_mutex_unlock(&sn->mu);
    atomic_store(&s->live, s->nparts);
    /* These posts reach each inbox before any close that a later stop posts (the node's
     * stop waits for this call to leave its bracket). A post fails only without memory:
     * the part then simply does not accept. */
    for (unsigned i = 0; i < s->nparts; i++)
        if (post_to(n, i, part_start, &s->parts[i], true) < 0)
            CH_ERROR("server on port %d: core %u does not accept", s->port, i);
    ch_node_api_leave(n);
    CH_INFO("server listening on %s (port %d, %u cores)", s->cfg.listen, s->port, s->nparts);
    *out = s;
    return 0;
}

int ch_server_port(const ch_server *s)
{
    return s ? s->port : -EINVAL;
}

unsigned ch_server_conns(const ch_server *s)
{
    unsigned n = 0;
    for (unsigned i = 0; s && i < s->nparts; i++)
        n += atomic_load_explicit(&s->parts[i].nconns, memory_order_relaxed);
    return n;
}

/* ---- closing ---------------------------------------------------------------------------- */

/* Posts the close to every part and waits for them, with the reactors running. */
static void server_stop(ch_server *s)
{
    for (unsigned i = 0; i < s->nparts; i++)
        while (post_to(s->node, i, part_close, &s->parts[i], true) < 0)
            sched_yield(); /* no memory for an envelope: nothing else closes the part */
    while (ch_waiter_wait(&s->closed, 5000) == -ETIMEDOUT)
        CH_WARN("server on port %d: still waiting for its connections to close", s->port);
}

/* Marks s stopping under mu; returns whether this caller must stop it. */
static bool claim_stop(ch_srv_node *sn, ch_server *s)
{
    if (s->state != SRV_OPEN) return false;
    s->state = SRV_STOPPING;
    return true;
}

static void mark_stopped(ch_srv_node *sn, ch_server *s)
{
    pthread_mutex_lock(&sn->mu);
    s->state = SRV_STOPPED;
    pthread_cond_broadcast(&sn->cv);
    pthread_mutex_unlock(&sn->mu);
}

int ch_server_close(ch_server *s)
{
    if (!s) return 0;
    ch_node *n = s->node;
    if (ch_node_on_reactor(n)) return CH_EWOULDBLOCK;
    ch_srv_node *sn = srv_node(n);
    pthread_mutex_lock(&sn->mu);
    bool mine = claim_stop(sn, s);
    pthread_mutex_unlock(&sn->mu);
    if (mine) {
        server_stop(s);
        mark_stopped(sn, s);
    }
    pthread_mutex_lock(&sn->mu);
    while (s->state != SRV_STOPPED)
        pthread_cond_wait(&sn->cv, &sn->mu); /* the node's stop is closing it */
    if (s->prev)
        s->prev->next = s->next;
    else
        sn->all = s->next;
    if (s->next) s->next->prev = s->prev;
    pthread_mutex_unlock(&sn->mu);
    CH_INFO("server on port %d closed", s->port);
    server_free(s);
    return 0;
}

void ch_srv_node_stop(ch_node *n)
{
    ch_srv_node *sn = srv_node(n);
    if (!sn) return;
    for (;;) {
        ch_server *todo = NULL;
        pthread_mutex_lock(&sn->mu);
        for (ch_server *s = sn->all; s && !todo; s = s->next)
            if (claim_stop(sn, s)) todo = s;
        while (!todo) { /* nothing left to claim: wait for closes under way elsewhere */
            bool busy = false;
            for (ch_server *s = sn->all; s; s = s->next)
                busy |= s->state == SRV_STOPPING;
            if (!busy) break;
            pthread_cond_wait(&sn->cv, &sn->mu);
        }
        pthread_mutex_unlock(&sn->mu);
        if (!todo) return;
        server_stop(todo);
        mark_stopped(sn, todo);
    }
}

void ch_srv_node_free(ch_node *n)
{
    ch_srv_node *sn = srv_node(n);
    if (!sn) return;
    while (sn->all) {
        ch_server *s = sn->all;
        sn->all = s->next;
        server_free(s);
    }
    for (unsigned i = 0; i < sn->cores; i++) {
        slot_table *t = &sn->tables[i];
        for (unsigned k = 0; k < CHUNKS; k++)
            free(atomic_load(&t->chunk[k]));
        free(t->free);
    }
    pthread_cond_destroy(&sn->cv);
    pthread_mutex_destroy(&sn->mu);
    free(sn);
    atomic_store(&n->srv, NULL);
}

/* ---- connection handles ----------------------------------------------------------------- */

static void remote_run(ch_node *n, void *ud)
{
    remote_op *op = ud;
    bool elsewhere;
    sconn *c = handle_conn(op->h, &elsewhere);
    if (c && op->close)
        conn_close(c, op->close == 1 ? 0 : -ECONNABORTED, op->close == 1);
    else if (c)
        write_local(c, op->data, op->len, true);
    free(op);
}

/* Posts a write (close 0) or a close to the connection's reactor. */
static int post_remote(ch_sconn h, int close, const void *data, size_t len)
{
    ch_node *n = NULL;
    unsigned core = 0;
    if (!handle_slot(h, &n, &core)) return -ENOTCONN;
    remote_op *op = malloc(sizeof(*op) + len);
    if (!op) return -ENOMEM;
    op->h = h;
    op->close = close;
    op->len = len;
    if (len) memcpy(op->data, data, len);
    int rc = ch_node_api_enter(n);
    if (rc == 0) {
        rc = post_to(n, core, remote_run, op, false);
        ch_node_api_leave(n);
    }
    if (rc < 0) free(op);
    return rc;
}

int ch_sconn_write(ch_sconn h, const void *data, size_t len)
{
    if (len && !data) return -EINVAL;
    bool elsewhere;
    sconn *c = handle_conn(h, &elsewhere);
    if (c) return write_local(c, data, len, false);
    return elsewhere ? post_remote(h, 0, data, len) : -ENOTCONN;
}

int ch_sconn_close(ch_sconn h, int flush)
{
    bool elsewhere;
    sconn *c = handle_conn(h, &elsewhere);
    if (elsewhere) return post_remote(h, flush ? 1 : 2, NULL, 0);
    if (!c || c->closing) return -ENOTCONN;
    conn_close(c, flush ? 0 : -ECONNABORTED, flush != 0);
    return 0;
}

/* The connection for an owner-only function: 0 with *out, -ENOTCONN or -EPERM. */
static int owner_conn(ch_sconn h, sconn **out)
{
    bool elsewhere;
    *out = handle_conn(h, &elsewhere);
    if (elsewhere) return -EPERM;
    return *out && !(*out)->closing ? 0 : -ENOTCONN;
}

int ch_sconn_pause(ch_sconn h)
{
    sconn *c;
    int rc = owner_conn(h, &c);
    if (rc == 0) c->paused = true;
    return rc;
}

int ch_sconn_resume(ch_sconn h)
{
    sconn *c;
    int rc = owner_conn(h, &c);
    if (rc < 0 || !c->paused) return rc;
    c->paused = false;
    if (c->rlen > c->rpos && !c->throttled)
        schedule_nop(c); /* on_data must not run from inside the caller */
    else
        arm_recv(c);
    return 0;
}

size_t ch_sconn_queued(ch_sconn h)
{
    bool elsewhere;
    sconn *c = handle_conn(h, &elsewhere);
    return c ? queued(c) : 0;
}

int ch_sconn_core(ch_sconn h)
{
    unsigned core;
    uint32_t idx;
    return handle_node(h, &core, &idx) ? (int)core : -EINVAL;
}

int ch_sconn_alive(ch_sconn h)
{
    bool elsewhere;
    sconn *c = handle_conn(h, &elsewhere);
    if (elsewhere) return handle_slot(h, NULL, &(unsigned){0}) != NULL;
    return c && !c->closing;
}

int ch_sconn_peer(ch_sconn h, char *buf, size_t cap)
{
    sconn *c;
    int rc = owner_conn(h, &c);
    if (rc < 0) return rc;
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    if (getpeername(c->fd, (struct sockaddr *)&sa, &len) < 0) return -errno;
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (sa.ss_family == AF_INET6) {
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&sa)->sin6_addr, host, sizeof(host));
        port = ntohs(((struct sockaddr_in6 *)&sa)->sin6_port);
        if (cap) snprintf(buf, cap, "[%s]:%d", host, port);
    } else {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&sa)->sin_addr, host, sizeof(host));
        port = ntohs(((struct sockaddr_in *)&sa)->sin_port);
        if (cap) snprintf(buf, cap, "%s:%d", host, port);
    }
    return 0;
}
