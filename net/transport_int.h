/*
 * net/transport_int.h - the transport's insides, shared by its files: net/transport.c
 * (a connection's output, sealing and closing), net/transport_recv.c (input, the
 * handshake, frames) and net/transport_dial.c (connect, accept, the transport itself).
 * The design is at the top of net/transport.c.
 */
#ifndef CH_NET_TRANSPORT_INT_H
#define CH_NET_TRANSPORT_INT_H

#include "transport.h"

#include "core/log.h"
#include "net/seal.h"
#include "net/wire.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define RBUF_MIN (64u * 1024)

struct ch_conn {
    ch_tcp tcp; /* the socket, its buffers and its close protocol (net/tcp.h) */
    ch_transport *t;
    bool initiator, up;
    bool retiring; /* ch_conn_retire: no new output; write side closed once empty */
    uint64_t retire_ns;
    uint64_t drained, sample_ns;  /* bytes the kernel delivered, at the last sample */
    bool backlog;                 /* the kernel still held unsent bytes at that sample */
    uint64_t link_bytes, link_ns; /* the link's pace: bytes and time, see sample_link */
    uint8_t role;
    ch_wbuf early; /* frames queued before the handshake was done (record format) */
    size_t rec_at; /* offset in the output of the open record */
    bool rec_open; /* frames go into the record at rec_at, not yet sealed */
    ch_hs hs;
    ch_seal seal; /* keys, once up */
    void *ud;
    uint64_t born_ns;    /* for the handshake deadline */
    uint64_t hold_until; /* a dial whose handshake waits (ch_transport_hold_dials) */
    ch_conn *next, *prev;
    struct sockaddr_storage sa;
    socklen_t salen;
    char addr[CH_ADDR_MAX + 1];
};

struct ch_transport {
    ch_tcp_acceptor acc; /* on the listener, when there is one */
    ch_reactor *r;
    int lfd;
    int port;
    ch_hello self;
    uint8_t *cookie;
    size_t cookie_len;
    uint32_t max_frame;
    ch_transport_cbs cbs;
    ch_conn *conns;
    uint64_t hold_ns; /* tests: dialled connections start their handshake this late */
};

#define CONTAINER(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

#define RETIRE_MS 10000u /* a retired connection the peer never closes is closed after this */

/* transport.c */
/* A connection on fd (owned from now on, also on failure: NULL then). */
ch_conn *tr_conn_new(ch_transport *t, int fd, bool initiator, uint8_t role);
void tr_conn_destroy(ch_conn *c);
/* Queues one frame (in the open record once up, else in `early`). */
int tr_put_frame(ch_conn *c, uint8_t type, uint16_t flags, const void *a, size_t alen,
                 const void *b, size_t blen);
/* transport_recv.c */
int tr_on_data(ch_tcp *tcp);
void tr_on_end(ch_tcp *tcp, int res, bool in_send);
void tr_begin(ch_conn *c); /* a connection is open: the handshake starts */

#endif
