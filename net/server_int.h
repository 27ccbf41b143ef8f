/*
 * net/server_int.h - the server skeleton's insides, shared by its files: net/server.c
 * (opening and closing servers), net/server_conn.c (a connection's input, output, closing,
 * and the accept loop) and net/sconn.c (connection slots and handles). The design is at
 * the top of net/server.c.
 */
#ifndef CH_NET_SERVER_INT_H
#define CH_NET_SERVER_INT_H

#include "server.h"

#include "net/tcp.h"

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

typedef struct sconn {
    ch_tcp tcp; /* the socket, its buffers and its close protocol (net/tcp.h) */
    struct part *part;
    uint32_t idx; /* slot */
    uint64_t gen;
    bool paused;    /* by ch_sconn_pause */
    bool throttled; /* the queue reached write_high */
    bool silent;    /* refused by on_open: no on_close */
    void *ud;
    struct sconn *next, *prev;
} sconn;

typedef struct part {
    ch_tcp_acceptor acc; /* pauses accepting when out of descriptors or memory */
    struct ch_server *s;
    ch_reactor *r;
    unsigned core;
    int lfd;
    bool closing, done;
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

static inline void count_conns(part *p, int d)
{
    unsigned v = atomic_load_explicit(&p->nconns, memory_order_relaxed);
    atomic_store_explicit(&p->nconns, v + (unsigned)d, memory_order_relaxed);
}

static inline size_t queued(const sconn *c)
{
    return ch_tcp_queued(&c->tcp);
}

/* No input while paused by the application or throttled by a full queue. */
static inline void sync_hold(sconn *c)
{
    c->tcp.hold = c->paused || c->throttled;
}

/* server_conn.c */
int srv_post_to(ch_node *n, unsigned core, void (*fn)(ch_node *, void *), void *ud, bool inbox);
/* On the owner reactor. force: queue even past write_high (posted writes). */
int srv_write_local(sconn *c, const void *data, size_t len, bool force);
/* A part of s on `core`, closed until started (s->node is set). */
void srv_part_init(part *p, ch_server *s, unsigned core);
void srv_part_start(ch_node *n, void *ud);
void srv_part_close(ch_node *n, void *ud);

/* sconn.c */
ch_srv_node *srv_node(ch_node *n);
ch_srv_node *srv_node_get(ch_node *n);
bool srv_slot_take(slot_table *t, sconn *c);
void srv_slot_give(slot_table *t, sconn *c);
ch_sconn srv_handle_of(const sconn *c);

#endif
