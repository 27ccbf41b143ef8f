/*
 * corehub/server.h - serve your own TCP protocol on the node's reactors.
 *
 * A server listens on HOST:PORT with one accepting socket per core (SO_REUSEPORT: the
 * kernel spreads new connections over the cores). A connection belongs to the core that
 * accepted it: every socket operation is an io_uring request on that core's reactor, and
 * every callback of that connection runs there, one at a time, next to that core's
 * processes. Nothing blocks a reactor.
 *
 *   on_open   a connection arrived: give it your per-connection user data
 *   on_data   bytes arrived, in the server's own buffer: consume the whole frames you can,
 *             return how many bytes you consumed; the rest is kept and handed to you
 *             again, followed by the next bytes, so a parser only ever sees whole frames
 *   on_drain  the write queue, which had reached the high mark, fell to the low mark
 *   on_close  the connection is gone (reason below); free your user data here
 *
 * Writing: ch_sconn_write queues bytes (one copy) that leave in order. The queue is bounded:
 * once it holds write_high bytes or more, writes return -EAGAIN (nothing queued) and the
 * server stops reading the connection, so a client that pipelines requests without reading
 * the answers cannot grow the node's memory; when the peer has read enough for the queue
 * to fall to write_low or below, on_drain runs and reading resumes.
 *
 * A connection is named by a ch_sconn, a small value that stays safe to keep and use after
 * the connection is gone (it carries a generation number: a stale handle gets -ENOTCONN,
 * it never reaches freed memory). That is how an answer that comes later, from a
 * ch_call_async reply callback or from a process callback on another core, finds its
 * connection. A handle must not outlive its node (ch_node_destroy).
 *
 * Close reasons given to on_close: 0 the peer closed its side or ch_sconn_close(c, 1)
 * finished its flush, -ESHUTDOWN the server or the node is closing, -EMSGSIZE the peer
 * sent more than max_read_bytes that on_data did not consume, the negative value on_data
 * returned or that ch_sconn_close was given, or a socket error (-ECONNRESET, -EPIPE...).
 *
 * Lifecycle: ch_server_open on a running node, ch_server_close to stop serving and free the
 * server. ch_node_stop (and ch_node_leave, which ends in it) closes every server of the
 * node and every connection first, before its reactors stop; ch_server_close is still
 * needed afterwards to free the server, and must come before ch_node_destroy.
 */
#ifndef COREHUB_SERVER_H
#define COREHUB_SERVER_H

#include <corehub/common.h>
#include <corehub/process.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ch_server ch_server;

/* A connection handle: copy it, keep it, use it from any thread (see the functions). */
typedef struct ch_sconn {
    uint64_t w[3];
} ch_sconn;

typedef struct ch_server_config {
    const char *listen;    /* "HOST:PORT"; port 0: the kernel chooses (ch_server_port) */
    unsigned backlog;      /* listen backlog of each core's socket; default 512 */
    size_t read_bytes;     /* first size of a connection's read buffer; default 16 KiB */
    size_t max_read_bytes; /* largest input kept unconsumed; more closes the connection
                              with -EMSGSIZE; default 1 MiB */
    size_t write_high;     /* queued bytes from which writes get -EAGAIN; default 1 MiB */
    size_t write_low;      /* on_drain once the queue falls to this; default 256 KiB */
    unsigned max_conns;    /* connections per core; more are refused (closed at once);
                              0: no limit (the default) */
    /* A connection arrived (on its core). Set *conn_ud; return 0, or a negative code to
     * refuse it (it is closed without on_close). NULL: accept, conn_ud NULL. */
    int (*on_open)(void *server_ud, ch_sconn c, void **conn_ud);
    /* Required. data/len: every unconsumed byte so far (data may be modified in place).
     * Returns the bytes consumed (0..len), or a negative code to close the connection at
     * once with that reason. */
    long (*on_data)(void *conn_ud, ch_sconn c, void *data, size_t len);
    /* The queue fell to write_low after it had reached write_high. May be NULL. */
    void (*on_drain)(void *conn_ud, ch_sconn c);
    /* The connection is closed and its handle dead: the last callback. May be NULL. */
    void (*on_close)(void *conn_ud, ch_sconn c, int reason);
    void *ud; /* server_ud for on_open */
} ch_server_config;

/* Fills every field with its default (listen NULL, no callbacks). */
CH_API void ch_server_config_init(ch_server_config *cfg);

/*
 * Binds one listening socket per core of n (the first to cfg->listen, the others to the
 * port the first got) and starts accepting on every core (posted to each: it returns
 * without waiting for them). The config is copied, its listen string too. Returns 0 with
 * *out set, -EINVAL (n, cfg or out NULL, bad config or address), CH_ESTOPPED (n is not
 * running), -ENOMEM, or the bind/listen error (-EADDRINUSE...). From any thread.
 */
CH_API int ch_server_open(ch_node *n, const ch_server_config *cfg, ch_server **out);

/* The port the server listens on (the kernel's choice for port 0); -EINVAL for NULL. Any
 * thread. */
CH_API int ch_server_port(const ch_server *s);

/* Connections open now, over every core (a moment's view); 0 for NULL. Any thread. */
CH_API unsigned ch_server_conns(const ch_server *s);

/*
 * Stops accepting, closes every connection at once (on_close with -ESHUTDOWN, on each
 * connection's core), waits until every socket and io_uring request of the server is
 * gone, then frees it. Blocks: not on a reactor thread (CH_EWOULDBLOCK, nothing done).
 * After ch_node_stop it only frees. NULL is a no-op.
 */
CH_API int ch_server_close(ch_server *s);

/*
 * Queues len bytes for the connection (copied).
 * On the connection's reactor: 0, -EAGAIN when write_high bytes or more are queued
 * already (nothing queued; on_drain tells when to try again), -ENOTCONN when the
 * connection is gone or closing, -ENOMEM.
 * On any other thread: the bytes are copied and posted to the connection's reactor, where
 * they are queued on arrival even past write_high (there is nobody to tell -EAGAIN to
 * then), or dropped if the connection is gone by then. Returns 0 once posted, -ENOTCONN
 * when the connection is already known to be gone, CH_ESTOPPED, -ENOMEM.
 */
CH_API int ch_sconn_write(ch_sconn c, const void *data, size_t len);

/*
 * Closes the connection. flush != 0: stops reading now, lets the queued bytes leave, then
 * closes (reason 0); flush == 0: closes at once (reason -ECONNABORTED). Either way writes
 * fail from now on and on_close follows once the socket's requests are done. From another
 * thread, the close is posted to the connection's reactor. 0, or -ENOTCONN when it is
 * gone or closing already.
 */
CH_API int ch_sconn_close(ch_sconn c, int flush);

/* Stops handing input to on_data (and reading once the buffer is full) until
 * ch_sconn_resume; resume hands over what is buffered, on a later turn of the reactor,
 * never from inside the call. On the connection's reactor only: 0, -ENOTCONN, -EPERM on
 * another thread. */
CH_API int ch_sconn_pause(ch_sconn c);
CH_API int ch_sconn_resume(ch_sconn c);

/* Bytes queued and not yet written to the socket. On the connection's reactor only: 0
 * when the connection is gone, and 0 on any other thread. */
CH_API size_t ch_sconn_queued(ch_sconn c);

/* The core that owns the connection (from any thread; -EINVAL for a zero handle). */
CH_API int ch_sconn_core(ch_sconn c);

/* Whether the handle names a connection that is open (not gone, not closing). Exact on
 * the connection's reactor, a moment's view elsewhere. */
CH_API int ch_sconn_alive(ch_sconn c);

/* The peer's address as "HOST:PORT" into buf (NUL-terminated, truncated to cap). On the
 * connection's reactor only: 0, -ENOTCONN, -EPERM. */
CH_API int ch_sconn_peer(ch_sconn c, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif
#endif
