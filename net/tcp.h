/*
 * net/tcp.h - the one io_uring TCP engine under both the server skeleton (net/server*) and
 * the peer transport (net/transport*): a connection's socket requests, its input buffer,
 * its double-buffered output and its close protocol, and an accept loop. What a byte
 * means (frames, sealing, the handshake, slots and handles) stays with the owner, which
 * embeds a ch_tcp and reacts to the hooks below.
 *
 * Everything runs on the owner's reactor: every socket operation is an io_uring request
 * completed there, and nothing blocks.
 *
 * Life: a connection always frees itself at the end of one of its own completions (recv,
 * send, connect, or a no-op used to defer work), once none of its requests is in flight,
 * so neither the kernel nor a hook further up the stack can touch it after. Closing is:
 * shut the socket down, cancel what is in flight, wait for those completions, then
 * on_closed, where the owner calls ch_tcp_fini and frees its object. A close that lets
 * queued output leave first (flush) shuts only the read side, sends what is queued, then
 * shuts the write side.
 *
 * Input goes into `rbuf` at its end; on_data sees rbuf[rpos, rlen) and advances rpos by
 * what it took. The rest moves to the front, and the buffer grows (to `want`) or shrinks
 * (back to the config's `rbuf_keep` once empty) only while no recv is in flight, since the
 * kernel writes past the end then. The buffer is 64-byte aligned, so that what starts at
 * its front is too.
 *
 * Output is double-buffered: writes append to `out` while `wire` is on the socket; when
 * the send completes the buffers swap, so every send carries all that was queued since the
 * last one. Just before a swap, on_flush may finish what `out` holds (the transport seals
 * its open record there, so one AEAD call covers what one send carries).
 */
#ifndef CH_NET_TCP_H
#define CH_NET_TCP_H

#include "core/backoff.h"
#include "core/reactor.h"
#include "net/wire.h"

#include <corehub/node.h> /* CH_ADDR_MAX */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

typedef struct ch_tcp ch_tcp;

typedef struct ch_tcp_ops {
    /* New input in rbuf[rpos, rlen): take what is whole by advancing rpos; set `want` to
     * the bytes the next unit needs when that is more than the buffer holds. A negative
     * return closes the connection with that reason. Never runs while `hold` is set. */
    int (*on_data)(ch_tcp *t);
    /* The stream ended: res is the recv's 0 (the peer closed its side) or error, or a
     * failed send's error (in_send). The owner closes, with or without a flush. */
    void (*on_end)(ch_tcp *t, int res, bool in_send);
    /* Optional: `out` is about to go to the socket. A negative return closes. */
    int (*on_flush)(ch_tcp *t);
    /* Optional: a send of `bytes`, submitted at send_ns, completed; `out` may take more. */
    void (*on_sent)(ch_tcp *t, size_t bytes, uint64_t send_ns);
    /* Optional: the connect finished with res (0: connected; then reading starts). */
    void (*on_connected)(ch_tcp *t, int res);
    /* Closed and quiet: the owner calls ch_tcp_fini and frees its object. */
    void (*on_closed)(ch_tcp *t);
} ch_tcp_ops;

typedef struct ch_tcp_cfg {
    size_t rbuf_first; /* the input buffer's first size */
    size_t rbuf_keep;  /* an empty input buffer above this shrinks back to rbuf_first; 0 never */
    size_t wire_keep;  /* an emptied output buffer above this is freed; 0 never */
} ch_tcp_cfg;

struct ch_tcp {
    ch_io rio, sio, xio; /* recv, send, connect or no-op */
    ch_reactor *r;
    const ch_tcp_ops *ops;
    ch_tcp_cfg cfg;
    int fd;
    int inflight;   /* io_uring requests not completed */
    int reason;     /* why it closed */
    bool closing;   /* no more input for on_data; output only while flushing */
    bool flushing;  /* closing with a flush: the queue still leaves */
    bool end_write; /* shut the write side once the queue is empty (flush, retire) */
    bool wr_shut;   /* the write side is shut */
    bool reading, sending, xbusy, connecting;
    bool hold; /* owner's: no on_data and no recv while set (paused, throttled) */
    uint8_t *rbuf;
    size_t rpos, rlen, rcap; /* unconsumed input is rbuf[rpos, rlen) */
    size_t want;             /* on_data's: the buffer size it needs next, 0 none */
    ch_wbuf out, wire;       /* queued; on the socket */
    size_t wire_off;         /* bytes of `wire` already sent */
    uint64_t send_ns;        /* when the send in flight was submitted */
    uint64_t written;        /* bytes handed to the socket so far */
};

/* Sets up t on fd (owned from now on, closed by ch_tcp_fini): 0 or -ENOMEM (fd stays the
 * caller's then). Nothing is in flight until ch_tcp_read or ch_tcp_connect. */
int ch_tcp_init(ch_tcp *t, ch_reactor *r, int fd, const ch_tcp_ops *ops, const ch_tcp_cfg *cfg);
/* Frees the buffers and closes the socket: from on_closed, or once the reactor's io_uring
 * is gone. */
void ch_tcp_fini(ch_tcp *t);
/* Connects to sa; on_connected reports, then reading starts by itself on success. */
int ch_tcp_connect(ch_tcp *t, const struct sockaddr *sa, socklen_t len);
/* Starts or resumes input: buffered input goes to on_data from a completion of t's own
 * (never from inside the caller), else a recv is armed. */
void ch_tcp_read(ch_tcp *t);
/* Hands buffered input to on_data, then reads on: from a completion only. */
void ch_tcp_deliver(ch_tcp *t);
/* Appends to `out` and sends: 0, -ENOTCONN (closing or write side ended) or -ENOMEM. */
int ch_tcp_write(ch_tcp *t, const void *data, size_t len);
/* Sends what `out` holds, unless a send is in flight (its completion sends the rest). */
void ch_tcp_send(ch_tcp *t);
/* Closes: with flush, queued output leaves first. Idempotent. */
void ch_tcp_close(ch_tcp *t, int reason, bool flush);
/* Shuts the write side once the queue is empty, and keeps reading. */
void ch_tcp_end_write(ch_tcp *t);
/* Whether output may still be queued on t. */
static inline bool ch_tcp_writable(const ch_tcp *t)
{
    return (!t->closing || t->flushing) && !t->end_write;
}
/* Bytes queued and not yet written to the socket. */
static inline size_t ch_tcp_queued(const ch_tcp *t)
{
    return t->out.len + (t->wire.len - t->wire_off);
}
void ch_tcp_nodelay(int fd);

/* An accept loop on a listening socket, pausing (core/backoff.h) when out of resources. */
typedef struct ch_tcp_acceptor ch_tcp_acceptor;
struct ch_tcp_acceptor {
    ch_io aio;
    ch_backoff backoff;
    ch_reactor *r;
    int lfd; /* the caller's; the acceptor never closes it */
    bool accepting, stopped;
    /* A connection came in (fd is the callee's). */
    void (*on_accept)(ch_tcp_acceptor *a, int fd);
    /* Optional: the accept in flight when it stopped completed. A stop with none in flight
     * (accepting false) is quiet at once, and this does not run. */
    void (*on_quiet)(ch_tcp_acceptor *a);
};

void ch_tcp_acceptor_init(ch_tcp_acceptor *a, ch_reactor *r, int lfd,
                          void (*on_accept)(ch_tcp_acceptor *, int));
void ch_tcp_acceptor_start(ch_tcp_acceptor *a);
/* Stops accepting; never calls back from inside (see on_quiet). */
void ch_tcp_acceptor_stop(ch_tcp_acceptor *a);

/* Parses "HOST:PORT" (numeric or resolvable host; "[v6]:PORT"). */
int ch_addr_parse(const char *addr, struct sockaddr_storage *sa, socklen_t *len);
/* A listening TCP socket on addr ("HOST:PORT"), port 0 for any: the fd or -errno; *port
 * gets the bound port. */
int ch_tcp_listen(const char *addr, unsigned backlog, int *port);
/* The port a socket is bound to (getsockname), or -errno. */
int ch_tcp_bound_port(int fd);

#endif
