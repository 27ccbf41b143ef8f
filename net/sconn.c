/*
 * net/sconn.c - connection slots and the ch_sconn handles that index them, usable from
 * any thread (design: net/server.c).
 */
#define _GNU_SOURCE
#include "server_int.h"

/* ---- slots and handles ------------------------------------------------------------------ */

ch_srv_node *srv_node(ch_node *n)
{
    return atomic_load_explicit(&n->srv, memory_order_acquire);
}

ch_srv_node *srv_node_get(ch_node *n)
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
bool srv_slot_take(slot_table *t, sconn *c)
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

void srv_slot_give(slot_table *t, sconn *c)
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

ch_sconn srv_handle_of(const sconn *c)
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

/* ---- connection handles ----------------------------------------------------------------- */

static void remote_run(ch_node *n, void *ud)
{
    remote_op *op = ud;
    bool elsewhere;
    sconn *c = handle_conn(op->h, &elsewhere);
    if (c && op->close)
        ch_tcp_close(&c->tcp, op->close == 1 ? 0 : -ECONNABORTED, op->close == 1);
    else if (c)
        srv_write_local(c, op->data, op->len, true);
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
        rc = srv_post_to(n, core, remote_run, op, false);
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
    if (c) return srv_write_local(c, data, len, false);
    return elsewhere ? post_remote(h, 0, data, len) : -ENOTCONN;
}

int ch_sconn_close(ch_sconn h, int flush)
{
    bool elsewhere;
    sconn *c = handle_conn(h, &elsewhere);
    if (elsewhere) return post_remote(h, flush ? 1 : 2, NULL, 0);
    if (!c || c->tcp.closing) return -ENOTCONN;
    ch_tcp_close(&c->tcp, flush ? 0 : -ECONNABORTED, flush != 0);
    return 0;
}

/* The connection for an owner-only function: 0 with *out, -ENOTCONN or -EPERM. */
static int owner_conn(ch_sconn h, sconn **out)
{
    bool elsewhere;
    *out = handle_conn(h, &elsewhere);
    if (elsewhere) return -EPERM;
    return *out && !(*out)->tcp.closing ? 0 : -ENOTCONN;
}

int ch_sconn_pause(ch_sconn h)
{
    sconn *c;
    int rc = owner_conn(h, &c);
    if (rc == 0) {
        c->paused = true;
        sync_hold(c);
    }
    return rc;
}

int ch_sconn_resume(ch_sconn h)
{
    sconn *c;
    int rc = owner_conn(h, &c);
    if (rc < 0 || !c->paused) return rc;
    c->paused = false;
    sync_hold(c);
    ch_tcp_read(&c->tcp); /* buffered input reaches on_data from a completion, not here */
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
    return c && !c->tcp.closing;
}

int ch_sconn_peer(ch_sconn h, char *buf, size_t cap)
{
    sconn *c;
    int rc = owner_conn(h, &c);
    if (rc < 0) return rc;
    struct sockaddr_storage sa;
    socklen_t len = sizeof(sa);
    if (getpeername(c->tcp.fd, (struct sockaddr *)&sa, &len) < 0) return -errno;
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
