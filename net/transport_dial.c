/*
 * net/transport_dial.c - connections made (connect, with a deadline) and taken (accept,
 * with back-off when out of descriptors), and the transport's own life (design:
 * net/transport.c).
 */
#define _GNU_SOURCE
#include "transport_int.h"

/* ---- connect and accept ------------------------------------------------------------- */

/* A TCP socket for addr ("HOST:PORT"), whose parsed address goes to *sa: the fd, or
 * -errno (a bad address is -EINVAL). */
static int tcp_socket(const char *addr, struct sockaddr_storage *sa, socklen_t *len)
{
    int rc = ch_addr_parse(addr, sa, len);
    if (rc) return rc;
    int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    return fd < 0 ? -errno : fd;
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
    int fd = tcp_socket(addr, &sa, &len);
    if (fd < 0) return fd;
    bind_to_listen_ip(t, fd, sa.ss_family);
    ch_conn *c = tr_conn_new(t, fd, true, role);
    if (!c) return -ENOMEM;
    snprintf(c->addr, sizeof(c->addr), "%s", addr);
    c->sa = sa;
    c->salen = len;
    int rc = ch_tcp_connect(&c->tcp, (struct sockaddr *)&c->sa, c->salen);
    if (rc < 0) {
        tr_conn_destroy(c);
        return rc;
    }
    if (out) *out = c;
    return 0;
}

static void on_accept(ch_tcp_acceptor *a, int fd)
{
    ch_transport *t = CONTAINER(a, ch_transport, acc);
    /* our side speaks in the transport's role: a node, or a core's data lane */
    ch_conn *c = tr_conn_new(t, fd, false, t->self.role ? t->self.role : CH_ROLE_PEER);
    if (!c) return;
    snprintf(c->addr, sizeof(c->addr), "fd %d", fd);
    tr_begin(c);
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
    t->lfd = -1;
    if (listen) {
        int fd = ch_tcp_listen(listen, 512, &t->port);
        if (fd < 0) {
            CH_ERROR("cannot listen on %s: %s", listen, strerror(-fd));
            free(t->cookie);
            free(t);
            return fd;
        }
        t->lfd = fd;
        ch_tcp_acceptor_init(&t->acc, r, fd, on_accept);
        ch_backoff_name(&t->acc.backoff, "cluster port", t->port);
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
    if (t->lfd >= 0) ch_tcp_acceptor_start(&t->acc);
    return 0;
}

int ch_transport_port(const ch_transport *t)
{
    return t->port;
}

void ch_transport_close_all(ch_transport *t)
{
    if (t->lfd >= 0)
        ch_tcp_acceptor_stop(&t->acc); /* the fd stays until free: an accept
                                        * in flight still names it */
    for (ch_conn *c = t->conns; c; c = c->next)
        ch_conn_close(c, -ESHUTDOWN);
}

void ch_transport_free(ch_transport *t)
{
    if (!t) return;
    if (t->lfd >= 0) close(t->lfd);
    while (t->conns)
        tr_conn_destroy(t->conns);
    explicit_bzero(t->cookie, t->cookie_len);
    free(t->cookie);
    free(t);
}

void ch_transport_sweep(ch_transport *t, uint64_t now, uint64_t deadline_ns)
{
    for (ch_conn *c = t->conns; c; c = c->next) {
        if (c->hold_until && now >= c->hold_until && !c->tcp.closing) {
            c->hold_until = 0;
            tr_begin(c);
        }
        if (c->retiring && !c->tcp.closing &&
            ch_ns_since(now, c->retire_ns) > RETIRE_MS * 1000000ull)
            ch_conn_close(c, -ETIMEDOUT);
        /* born after `now` (dialled during this tick) is young, not ancient */
        if (c->up || c->tcp.closing || c->born_ns >= now || now - c->born_ns < deadline_ns)
            continue;
        CH_WARN("%s did not finish its handshake in time: closing", c->addr);
        ch_counter_bump(&t->r->stats.refused_peers);
        ch_conn_close(c, -ETIMEDOUT);
    }
}

bool ch_transport_dialing(const ch_transport *t, const char *addr)
{
    for (const ch_conn *c = t->conns; c; c = c->next)
        if (c->initiator && !c->up && !c->tcp.closing && strcmp(c->addr, addr) == 0) return true;
    return false;
}

void ch_transport_hold_dials(ch_transport *t, unsigned ms)
{
    t->hold_ns = ms * 1000000ull;
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
    int fd = c->tcp.fd;
    int rc = c->initiator ? getsockname(fd, (struct sockaddr *)&sa, &len)
                          : getpeername(fd, (struct sockaddr *)&sa, &len);
    if (fd < 0 || rc < 0) return 0;
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
