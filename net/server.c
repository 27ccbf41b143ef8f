/*
 * net/server.c - the server skeleton: TCP servers on the reactors (corehub/server.h);
 * opening and closing them. A connection's life is net/server_conn.c, its slot and handle
 * net/sconn.c, the types they share net/server_int.h; the socket engine under them is
 * net/tcp.c, shared with the peer transport.
 *
 * A server has one part per core: a listening socket bound with SO_REUSEPORT, its accept
 * request and its connections. A part is touched only by its reactor; the thread that opens
 * or closes the server talks to it by posting functions (CH_OP_POST) and waits for the
 * parts to report, through a waiter, that their last socket request completed.
 *
 * A connection is a ch_tcp of the engine net/tcp.h, which owns its socket requests,
 * buffers and close protocol (a connection frees itself at the end of one of its own
 * completions). What the server adds: on_data sees everything unconsumed and says how much
 * it took; a full buffer it took nothing of grows up to max_read_bytes; reading stops while
 * the output queue is at write_high or above (or the application paused) and resumes below
 * write_low; input handed over after a resume waits for a completion, so that on_data
 * never runs from inside a call of the application.
 *
 * Handles index a per-core slot table that the node owns (net/server.h): chunks of slots
 * that are allocated once and never move, so another thread may read a slot's generation
 * at any time.
 */
#define _GNU_SOURCE
#include "server_int.h"

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
    else if ((rc = ch_tcp_bound_port(fd)) > 0)
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
        if (i == 0 && (s->port = ch_tcp_bound_port(fd)) < 0) return s->port;
        ch_backoff_name(&s->parts[i].acc.backoff, "server on port", s->port);
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
        srv_part_init(&s->parts[i], s, i);
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
        if (srv_post_to(n, i, srv_part_start, &s->parts[i], true) < 0)
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
        while (srv_post_to(s->node, i, srv_part_close, &s->parts[i], true) < 0)
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
