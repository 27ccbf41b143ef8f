/*
 * net/transport.h - authenticated TCP connections driven by one reactor's io_uring.
 *
 * The coordinator owns a transport: a listening socket and its connections to peers (and
 * to control clients). Every socket operation is an io_uring request completed on the
 * owner reactor; nothing here blocks. A connection first runs the handshake (net/handshake)
 * and reads no other frame until the peer proved it holds the cookie. Every frame after it
 * travels in a sealed record (net/seal.h: encrypted and authenticated with keys unique to
 * the connection and direction, one record per send): a record that fails its tag closes
 * the connection (stats.bad_frames). Frames may be queued before the handshake is done;
 * they leave sealed, in order, once it is. Frames sent during one reactor turn leave in one send; a
 * peer that stops reading is cut off once its queue passes CH_CONN_MAX_QUEUE instead of growing
 * without bound.
 */
#ifndef CH_NET_TRANSPORT_H
#define CH_NET_TRANSPORT_H

#include "core/reactor.h"
#include "net/frame.h"
#include "net/handshake.h"
#include "net/tcp.h" /* ch_addr_parse */

#define CH_CONN_MAX_QUEUE (64u << 20)

typedef struct ch_conn ch_conn;
typedef struct ch_transport ch_transport;

typedef struct ch_transport_cbs {
    void *ud;
    /* The handshake completed: the peer is authenticated. */
    void (*on_up)(void *ud, ch_conn *c, const ch_hello *peer);
    /* One frame from an authenticated peer; the payload is valid during the call. */
    void (*on_frame)(void *ud, ch_conn *c, const ch_frame *f);
    /* The connection closed (reason: 0 EOF, or a negative code); c is freed after. */
    void (*on_down)(void *ud, ch_conn *c, int reason);
} ch_transport_cbs;

/* Binds `listen` ("HOST:PORT", port 0 for any) now, accepts once started. The hello is
 * this node's (role and nonce are set per connection). */
int ch_transport_create(ch_reactor *r, const char *listen, const ch_hello *self, const void *cookie,
                        size_t cookie_len, uint32_t max_frame, const ch_transport_cbs *cbs,
                        ch_transport **out);
/* Replaces this node's hello and the callbacks' user data (before start). */
void ch_transport_set_hello(ch_transport *t, const ch_hello *self, void *ud);
/* Starts accepting (on the reactor thread). */
int ch_transport_start(ch_transport *t);
int ch_transport_port(const ch_transport *t);
/* Connects to addr with `role`; the outcome arrives as on_up or on_down. */
int ch_transport_connect(ch_transport *t, const char *addr, uint8_t role, ch_conn **out);
/* Closes connections whose handshake is not done deadline_ns after they opened (a peer
 * that connects and says nothing must not hold a socket forever). */
void ch_transport_sweep(ch_transport *t, uint64_t now, uint64_t deadline_ns);
/* True while a connection this transport dialled to addr has not finished its handshake
 * (a dial that would only add a second one waits for it). */
bool ch_transport_dialing(const ch_transport *t, const char *addr);
/* Fault injection (tests): each connection this transport dials starts its handshake `ms`
 * after it connected (at a sweep), so that the peer's own dial can overtake it. */
void ch_transport_hold_dials(ch_transport *t, unsigned ms);
/* Closes every connection and the listener (on the reactor thread). */
void ch_transport_close_all(ch_transport *t);
/* Frees what is left, after the reactor's io_uring is gone. */
void ch_transport_free(ch_transport *t);

/* Queues one frame (payload at most max_frame and CH_SEAL_FRAME_MAX bytes, else -EMSGSIZE).
 * -ENOTCONN when closing, -ENOBUFS when the peer stopped reading (the connection is then
 * closed), -ENOMEM. */
int ch_conn_send(ch_conn *c, uint8_t type, const void *payload, size_t len);
/* Queues one frame whose payload is the concatenation of two parts (saves a copy). */
int ch_conn_send2(ch_conn *c, uint8_t type, const void *a, size_t alen, const void *b, size_t blen);
/* The link's pace when it is the bottleneck: bytes it drained while the kernel held a
 * backlog of this connection's bytes, and for how long (both 0 on a link that keeps up).
 * For the handover codec's choice (migration/codec.h). */
void ch_conn_link(const ch_conn *c, uint64_t *bytes, uint64_t *ns);
/* Bytes queued on the connection and not yet written to the socket. */
size_t ch_conn_queued(const ch_conn *c);
/* Bytes the peer acknowledged so far (written to the socket minus what the kernel still
 * holds), and in *waiting whether any byte waits (queued here, or not acknowledged): a
 * connection that waits while the count stands still is not moving. */
uint64_t ch_conn_acked(const ch_conn *c, bool *waiting);
/* Queues bytes that already are whole plain frames (ch_frame_write's): each is queued
 * like a ch_conn_send frame. -EINVAL when they are not whole valid frames (nothing is queued),
 * or ch_conn_send's errors. Not a hot path: each payload is copied once more. */
int ch_conn_send_raw(ch_conn *c, const void *frames, size_t len);
void ch_conn_close(ch_conn *c, int reason);
/* Retires a connection that lost to another one of the same pair: nothing more is queued
 * on it (sends fail with -ESHUTDOWN), what is queued still goes out, then its write side
 * closes; it keeps reading, so that whatever the peer sent on it arrives, until the peer,
 * which retires it too, closes its own side (or RETIRE_MS passed). */
void ch_conn_retire(ch_conn *c);
/* Whether frames may still be queued on c (not closing, not retired). */
bool ch_conn_open(const ch_conn *c);
void ch_conn_set_ud(ch_conn *c, void *ud);
void *ch_conn_ud(const ch_conn *c);
const ch_hello *ch_conn_peer(const ch_conn *c); /* NULL before the handshake is done */
bool ch_conn_initiator(const ch_conn *c);
/* The port the dialling end's socket has (ours if we dialled, the peer's otherwise): both
 * ends of one connection see the same number, so it tells two connections of one pair
 * apart in the same way at both ends. 0 when unknown. */
unsigned ch_conn_dial_port(const ch_conn *c);
uint8_t ch_conn_role(const ch_conn *c);
const char *ch_conn_addr(const ch_conn *c);

#endif
