/*
 * net/server_conn.c - a server connection's life on its reactor, on the TCP engine
 * (net/tcp.h): opening, closing and freeing, output with its high and low marks, input
 * handed to on_data, and each part's accept loop (design: net/server.c).
 */
#define _GNU_SOURCE
#include "server_int.h"

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
    if (!p->closing || p->done || p->acc.accepting || p->conns) return;
    p->done = true;
    if (p->lfd >= 0) close(p->lfd);
    p->lfd = -1;
    ch_server *s = p->s;
    if (atomic_fetch_sub(&s->live, 1) == 1) ch_waiter_signal(&s->closed);
}

/* The engine is done with c: the handle dies first, then the application hears of it. */
static void conn_closed(ch_tcp *t)
{
    sconn *c = CONTAINER(t, sconn, tcp);
    part *p = c->part;
    ch_server *s = p->s;
    ch_sconn h = srv_handle_of(c);
    srv_slot_give(&srv_node(s->node)->tables[p->core], c);
    if (!c->silent && s->cfg.on_close) s->cfg.on_close(c->ud, h, t->reason);
    if (c->prev)
        c->prev->next = c->next;
    else
        p->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    count_conns(p, -1);
    ch_tcp_fini(t);
    free(c);
    part_maybe_done(p);
}

static void conn_end(ch_tcp *t, int res, bool in_send)
{
    if (in_send) CH_DEBUG("server: send failed: %s", strerror(-res));
    ch_tcp_close(t, res, false); /* 0: the peer closed its side */
}

/* ---- output ----------------------------------------------------------------------------- */

/* A send completed: below write_low, the application may write again and input flows. */
static void conn_sent(ch_tcp *t, size_t bytes, uint64_t send_ns)
{
    sconn *c = CONTAINER(t, sconn, tcp);
    ch_server *s = c->part->s;
    if (!c->throttled || t->closing || queued(c) > s->cfg.write_low) return;
    c->throttled = false;
    sync_hold(c);
    if (s->cfg.on_drain) s->cfg.on_drain(c->ud, srv_handle_of(c));
    ch_tcp_deliver(t);
}

int srv_write_local(sconn *c, const void *data, size_t len, bool force)
{
    ch_server *s = c->part->s;
    if (c->tcp.closing) return -ENOTCONN;
    if (!force && queued(c) >= s->cfg.write_high) {
        c->throttled = true;
        sync_hold(c);
        return -EAGAIN;
    }
    int rc = ch_tcp_write(&c->tcp, data, len);
    if (rc == 0 && queued(c) >= s->cfg.write_high) { /* stop reading */
        c->throttled = true;
        sync_hold(c);
    }
    return rc;
}

/* ---- input ------------------------------------------------------------------------------ */

/* Offers the unconsumed input to on_data. A full buffer that on_data took nothing of grows,
 * up to max_read_bytes: the application needs more to make progress. */
static int conn_data(ch_tcp *t)
{
    sconn *c = CONTAINER(t, sconn, tcp);
    ch_server *s = c->part->s;
    size_t len = t->rlen - t->rpos;
    long n = s->cfg.on_data(c->ud, srv_handle_of(c), t->rbuf + t->rpos, len);
    if (n < 0 || (size_t)n > len) {
        if (n >= 0) CH_ERROR("server: on_data consumed %ld of %zu bytes: closing", n, len);
        return n < 0 ? (int)n : -EINVAL;
    }
    if (t->closing) return 0;
    t->rpos += (size_t)n;
    if (len - (size_t)n < t->rcap || t->hold) return 0;
    size_t max = s->cfg.max_read_bytes;
    if (t->rcap >= max) return -EMSGSIZE;
    t->want = t->rcap * 2 < max ? t->rcap * 2 : max;
    return 0;
}

/* ---- accepting -------------------------------------------------------------------------- */

static const ch_tcp_ops conn_ops = {
    .on_data = conn_data,
    .on_end = conn_end,
    .on_sent = conn_sent,
    .on_closed = conn_closed,
};

static void conn_open(ch_tcp_acceptor *a, int fd)
{
    part *p = CONTAINER(a, part, acc);
    ch_server *s = p->s;
    unsigned n = atomic_load_explicit(&p->nconns, memory_order_relaxed);
    ch_tcp_cfg cfg = {
        .rbuf_first = s->cfg.read_bytes, .rbuf_keep = s->cfg.read_bytes, .wire_keep = WIRE_KEEP};
    sconn *c = NULL;
    if (!s->cfg.max_conns || n < s->cfg.max_conns) c = calloc(1, sizeof(*c));
    if (c && ch_tcp_init(&c->tcp, p->r, fd, &conn_ops, &cfg) < 0) {
        free(c);
        c = NULL;
    }
    if (!c || !srv_slot_take(&srv_node(s->node)->tables[p->core], c)) {
        CH_WARN("server on port %d: connection refused (%s)", s->port,
                c ? "no slot" : "limit or memory");
        if (c) ch_tcp_fini(&c->tcp);
        free(c);
        if (!c) close(fd);
        return;
    }
    c->part = p;
    c->next = p->conns;
    if (p->conns) p->conns->prev = c;
    p->conns = c;
    count_conns(p, 1);
    int rc = s->cfg.on_open ? s->cfg.on_open(s->cfg.ud, srv_handle_of(c), &c->ud) : 0;
    if (rc < 0) {
        c->silent = true;
        ch_tcp_close(&c->tcp, rc, false);
        return;
    }
    ch_tcp_read(&c->tcp);
}

static void accept_quiet(ch_tcp_acceptor *a)
{
    part_maybe_done(CONTAINER(a, part, acc));
}

/* ---- parts: started and closed on their reactor ------------------------------------------ */

void srv_part_start(ch_node *n, void *ud)
{
    part *p = ud;
    if (p->closing) return; /* a close that overtook the start: nothing to do */
    p->acc.lfd = p->lfd;
    ch_tcp_acceptor_start(&p->acc);
}

void srv_part_close(ch_node *n, void *ud)
{
    part *p = ud;
    if (p->closing) return;
    p->closing = true;
    ch_tcp_acceptor_stop(&p->acc);
    for (sconn *c = p->conns; c; c = c->next)
        ch_tcp_close(&c->tcp, -ESHUTDOWN, false);
    part_maybe_done(p);
}

void srv_part_init(part *p, ch_server *s, unsigned core)
{
    p->s = s;
    p->core = core;
    p->r = &s->node->reactors[core];
    p->lfd = -1;
    ch_tcp_acceptor_init(&p->acc, p->r, -1, conn_open);
    p->acc.on_quiet = accept_quiet;
}
