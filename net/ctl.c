/*
 * net/ctl.c - the client side of the control channel (ch_ctl_*, see corehub/cluster.h).
 *
 * `corehub ctl` and the cluster tests talk to a node through this: one blocking TCP
 * connection, authenticated with the same handshake as a peer (net/handshake) but with
 * role CH_ROLE_CTL, then request/response pairs, in sealed records like every frame after
 * a handshake (net/seal.h; the client is the initiator):
 *
 *   CH_F_CTL_REQ   u32 argc | argc x blob32 argument        client -> node
 *   CH_F_CTL_RESP  u32 status | blob32 text                 node -> client
 *
 * The node runs the request on its control thread (net/cluster/coord.c, "control requests").
 * This runs in tools, never on a reactor, so plain sockets are fine; but a node that
 * hangs must not hang its client, so the socket is non-blocking and every connect, read
 * and write waits in poll() for what is left of one deadline per call.
 */
#include <corehub/cluster.h>

#include "net/frame.h"
#include "net/handshake.h"
#include "net/seal.h"
#include "net/transport.h"
#include "net/wire.h"

#include "core/log.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CTL_DEFAULT_TIMEOUT_MS 5000
#define CTL_MAX_ARGS           64 /* the node refuses more (net/cluster/coord.c) */
#define CTL_RBUF_MIN           (16u << 10)

struct ch_ctl {
    int fd;
    uint32_t timeout_ms;
    int err;         /* sticky: after a timeout a late answer would pair with the next request */
    uint8_t *rbuf;   /* received bytes not yet consumed */
    size_t rlen;     /* bytes in rbuf */
    size_t rcap;     /* bytes allocated */
    size_t consumed; /* bytes of the frame handed out last, dropped on the next read */
    ch_seal seal;    /* this connection's keys, once the handshake is done */
    ch_frame rec;    /* the opened record at the start of rbuf, while frames are left */
    size_t rec_pos;  /* next frame in rec */
    bool in_rec;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t deadline_after(uint32_t ms)
{
    return now_ns() + (uint64_t)ms * 1000000u;
}

/* Waits until fd is ready for `events` or the deadline passes: 0 or -ETIMEDOUT. */
static int wait_fd(int fd, short events, uint64_t deadline)
{
    for (;;) {
        uint64_t now = now_ns();
        if (now >= deadline) return -ETIMEDOUT;
        uint64_t left_ms = (deadline - now + 999999) / 1000000;
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, left_ms > 60000 ? 60000 : (int)left_ms);
        if (n > 0) return 0; /* ready, or an error the next call will report */
        if (n < 0 && errno != EINTR) return -errno;
    }
}

static int send_all(ch_ctl *c, const uint8_t *p, size_t len, uint64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
        int rc = wait_fd(c->fd, POLLOUT, deadline);
        if (rc < 0) return rc;
    }
    return 0;
}

/* Room for the frame at the start of the buffer (its header says how much), or for a
 * first read. The decoder has already refused a length over the limit. */
static int ensure_room(ch_ctl *c)
{
    size_t need = CTL_RBUF_MIN;
    if (c->rlen >= CH_FRAME_HDR) {
        ch_rbuf r;
        ch_rbuf_init(&r, c->rbuf + 4, 4);
        need = CH_FRAME_HDR + (size_t)ch_rbuf_get_u32(&r);
    }
    if (need <= c->rcap && c->rlen < c->rcap) return 0;
    size_t cap = need > c->rcap ? need : c->rcap * 2;
    uint8_t *b = realloc(c->rbuf, cap);
    if (!b) return -ENOMEM;
    c->rbuf = b;
    c->rcap = cap;
    return 0;
}

/* Receives more bytes: 0, -ECONNRESET at end of stream, -ETIMEDOUT, -errno. */
static int recv_some(ch_ctl *c, uint64_t deadline)
{
    int rc = ensure_room(c);
    if (rc < 0) return rc;
    for (;;) {
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (n > 0) {
            c->rlen += (size_t)n;
            return 0;
        }
        if (n == 0) return -ECONNRESET;
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) return -errno;
        if ((rc = wait_fd(c->fd, POLLIN, deadline)) < 0) return rc;
    }
}

/* The next frame of the opened record: 1, 0 when it has no more, or a negative error. */
static int next_in_record(ch_ctl *c, uint32_t max_len, ch_frame *f)
{
    int k = ch_seal_record_next(&c->rec, &c->rec_pos, max_len, f);
    if (k <= 0) c->in_rec = false;
    return k;
}

/* The next whole frame; once the handshake is done, the next frame of the sealed records
 * (one that fails its tag: -EBADMSG). Its payload stays valid until the next call. */
static int read_frame(ch_ctl *c, uint32_t max_len, ch_frame *f, uint64_t deadline)
{
    bool sealed = c->seal.cipher != 0;
    for (;;) {
        if (c->in_rec) {
            int k = next_in_record(c, max_len, f);
            if (k != 0) return k < 0 ? k : 0;
        }
        if (c->consumed) {
            memmove(c->rbuf, c->rbuf + c->consumed, c->rlen - c->consumed);
            c->rlen -= c->consumed;
            c->consumed = 0;
        }
        int n = !c->rbuf ? 0
                : sealed ? ch_frame_decode_sealed(c->rbuf, c->rlen, CH_FRAME_MAX, f)
                         : ch_frame_decode(c->rbuf, c->rlen, max_len, f);
        if (n < 0) return n;
        if (n == 0) {
            int rc = recv_some(c, deadline);
            if (rc < 0) return rc;
            continue;
        }
        c->consumed = (size_t)n;
        if (!sealed) return 0;
        int rc = ch_seal_record_open(&c->seal, c->rbuf, f);
        if (rc < 0) return rc;
        c->rec = *f;
        c->rec_pos = 0;
        c->in_rec = true;
    }
}

static int connect_to(ch_ctl *c, const char *addr, uint64_t deadline)
{
    struct sockaddr_storage sa;
    socklen_t salen;
    int rc = ch_addr_parse(addr, &sa, &salen);
    if (rc < 0) return rc;
    c->fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) return -errno;
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(c->fd, (struct sockaddr *)&sa, salen) == 0) return 0;
    if (errno != EINPROGRESS) return -errno;
    if ((rc = wait_fd(c->fd, POLLOUT, deadline)) < 0) return rc;
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) return -errno;
    return -err;
}

/* The node hangs up on a client whose AUTH does not verify (or whose HELLO it refuses)
 * without saying why: at this stage a closed connection means "refused". */
static int refused(int rc)
{
    return rc == -ECONNRESET || rc == -EPIPE ? -EACCES : rc;
}

static int flush_wbuf(ch_ctl *c, ch_wbuf *w, uint64_t deadline)
{
    if (w->err) return w->err;
    int rc = send_all(c, w->data, w->len, deadline);
    ch_wbuf_reset(w);
    return rc;
}

/* Runs the handshake, then derives the connection's keys from it. */
static int handshake_loop(ch_ctl *c, ch_hs *hs, ch_wbuf *out, uint64_t deadline)
{
    int rc = ch_hs_start(hs, out);
    if (rc == 0) rc = refused(flush_wbuf(c, out, deadline));
    while (rc == 0) {
        ch_frame f;
        if ((rc = refused(read_frame(c, CH_HS_FRAME_MAX, &f, deadline))) < 0) break;
        int st = ch_hs_on_frame(hs, &f, out);
        /* Our AUTH goes out even when theirs completed the exchange. */
        if ((rc = refused(flush_wbuf(c, out, deadline))) < 0) break;
        if (st < 0) {
            CH_DEBUG("control handshake refused: %s", ch_hs_error(hs));
            rc = st;
        } else if (st == CH_HS_DONE) {
            return ch_seal_init_hs(&c->seal, hs);
        }
    }
    return rc;
}

static int handshake(ch_ctl *c, const char *hub_id, const void *cookie, size_t cookie_len,
                     uint64_t deadline)
{
    ch_hello mine = {.role = CH_ROLE_CTL, .caps = ch_seal_caps()};
    const char *hub = hub_id ? hub_id : "corehub";
    if (strlen(hub) == 0 || strlen(hub) > CH_HUB_ID_MAX) return -EINVAL;
    memcpy(mine.hub_id, hub, strlen(hub) + 1);
    ch_hs *hs = malloc(sizeof(*hs)); /* a few hundred bytes of keys: not on the stack */
    if (!hs) return -ENOMEM;
    ch_wbuf out;
    ch_wbuf_init(&out);
    int rc = ch_hs_init(hs, true, &mine, cookie, cookie_len);
    if (rc == 0) rc = handshake_loop(c, hs, &out, deadline);
    ch_hs_clear(hs);
    free(hs);
    ch_wbuf_free(&out);
    return rc;
}

int ch_ctl_open(const char *addr, const char *hub_id, const void *cookie, size_t cookie_len,
                uint32_t timeout_ms, ch_ctl **out)
{
    if (!addr || !out || !cookie || cookie_len < CH_COOKIE_MIN) return -EINVAL;
    *out = NULL;
    ch_ctl *c = calloc(1, sizeof(*c));
    if (!c) return -ENOMEM;
    c->fd = -1;
    c->timeout_ms = timeout_ms ? timeout_ms : CTL_DEFAULT_TIMEOUT_MS;
    uint64_t deadline = deadline_after(c->timeout_ms);
    int rc = connect_to(c, addr, deadline);
    if (rc == 0) rc = handshake(c, hub_id, cookie, cookie_len, deadline);
    if (rc < 0) {
        ch_ctl_close(c);
        return rc;
    }
    *out = c;
    return 0;
}

/* Writes the request into w as a sealed record of one frame (-EMSGSIZE when it is too
 * large: the counter does not move then, the channel stays usable). */
static int encode_request(ch_ctl *c, ch_wbuf *w, int argc, const char *const *argv)
{
    size_t at = ch_seal_record_begin(w);
    ch_wbuf_put_space(w, CH_FRAME_HDR);
    ch_wbuf_put_u32(w, (uint32_t)argc);
    for (int i = 0; i < argc; i++)
        ch_wbuf_put_blob32(w, argv[i], strlen(argv[i]));
    if (w->err) return w->err;
    size_t len = w->len - at - 2 * CH_FRAME_HDR;
    if (len > CH_SEAL_FRAME_MAX) return -EMSGSIZE;
    ch_frame_header_sealed(w->data + at + CH_FRAME_HDR, CH_F_CTL_REQ, 0, (uint32_t)len);
    return ch_seal_record_end(&c->seal, w, at);
}

static int decode_response(const ch_frame *f, int *status, char **text)
{
    if (f->type != CH_F_CTL_RESP) return -EPROTO;
    ch_rbuf r;
    ch_rbuf_init(&r, f->payload, f->len);
    uint32_t st = ch_rbuf_get_u32(&r);
    ch_span s = ch_rbuf_get_blob32(&r);
    if (!ch_rbuf_done(&r)) return -EBADMSG;
    char *t = malloc(s.len + 1);
    if (!t) return -ENOMEM;
    memcpy(t, s.p, s.len);
    t[s.len] = '\0';
    *status = (int)(int32_t)st; /* the handler's int, as the node sent it */
    *text = t;
    return 0;
}

static bool args_ok(int argc, const char *const *argv)
{
    if (argc <= 0 || argc > CTL_MAX_ARGS || !argv) return false;
    for (int i = 0; i < argc; i++)
        if (!argv[i]) return false;
    return true;
}

int ch_ctl_exec(ch_ctl *c, int argc, const char *const *argv, int *status, char **text)
{
    if (!c || !status || !text || !args_ok(argc, argv)) return -EINVAL;
    *text = NULL;
    if (c->err) return c->err;
    uint64_t deadline = deadline_after(c->timeout_ms);
    ch_wbuf w;
    ch_wbuf_init(&w);
    int rc = encode_request(c, &w, argc, argv);
    if (rc == 0) rc = send_all(c, w.data, w.len, deadline);
    ch_wbuf_free(&w);
    ch_frame f;
    if (rc == 0) rc = read_frame(c, CH_FRAME_MAX, &f, deadline);
    if (rc == 0) rc = decode_response(&f, status, text);
    /* Anything but a bad argument leaves the stream in an unknown place: refuse reuse. */
    if (rc < 0 && rc != -ENOMEM && rc != -EMSGSIZE)
        c->err = rc == -ETIMEDOUT ? -ETIMEDOUT : -ENOTCONN;
    return rc;
}

void ch_ctl_close(ch_ctl *c)
{
    if (!c) return;
    if (c->fd >= 0) close(c->fd);
    ch_seal_wipe(&c->seal);
    free(c->rbuf);
    free(c);
}
