/*
 * net/lane.h - a core's data lanes: authenticated, sealed TCP connections that a reactor
 * owns, to the cores of the other nodes, so that bulk data (handover frames) goes from
 * the core that makes it to the core that uses it without crossing either coordinator.
 *
 * Each core listens on a port of its own (the node's cluster IP, a kernel-chosen port);
 * the coordinators tell each other their cores' ports, and each core learns its peers'
 * (ch_lanes_set_peer). A core sends only on lanes it dialled: one per (peer node, peer
 * core), opened on first use through the normal handshake (cookie challenge, keys per
 * direction, role CH_ROLE_LANE), so every frame one core sends to one peer core travels
 * on one connection, in order. It receives on the lanes its peers dialled. Each direction
 * is sealed on the core that sends.
 *
 * A lane that is not up makes ch_lanes_send fail (-ENOTCONN) at once, and is dialled in the
 * background (with back-off after failures); the caller sends another way meanwhile. A
 * lane that closes reports on_down: whatever was queued on it may be lost, and the caller
 * decides what to send again. Everything runs on the owner reactor.
 */
#ifndef CH_NET_LANE_H
#define CH_NET_LANE_H

#include "net/handshake.h"
#include "net/transport.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct ch_lanes ch_lanes;

typedef struct ch_lanes_cbs {
    void *ud;
    /* A frame from `node` on a lane it dialled; the payload is valid during the call. */
    void (*on_frame)(void *ud, uint64_t node, uint8_t type, const uint8_t *p, size_t len);
    /* This core's lane to (node, core) closed (or could not open after it was used). */
    void (*on_down)(void *ud, uint64_t node, uint16_t core);
} ch_lanes_cbs;

/* Before the reactor runs, from any thread: binds host:0 (host: the node's cluster listen
 * address without its port). self: the node's hello (role and lane_core are set here). */
int ch_lanes_create(ch_reactor *r, const char *host, const ch_hello *self, const void *cookie,
                    size_t cookie_len, const ch_lanes_cbs *cbs, ch_lanes **out);
int ch_lanes_port(const ch_lanes *l);
/* On the reactor: starts accepting and the handshake sweep. */
void ch_lanes_start(ch_lanes *l);
/* The lane ports of node's cores, reachable at host ("HOST", no port): replaces what was
 * known of it (its lanes close when the ports changed). */
int ch_lanes_set_peer(ch_lanes *l, uint64_t node, const char *host, const uint16_t *ports,
                      unsigned n);
/* node is gone: its lanes close (on_down does not run for them). */
void ch_lanes_drop_peer(ch_lanes *l, uint64_t node);
/* Queues one frame of payload a || b on the lane to (node, core): 0, or -ENOTCONN when it
 * is not up (dialled meanwhile), -ENOENT when node's lanes are unknown, or
 * ch_conn_send2's errors. */
int ch_lanes_send(ch_lanes *l, uint64_t node, uint16_t core, uint8_t type, const void *a,
                  size_t alen, const void *b, size_t blen);
/* Closes this core's lane to (node, core) at once: what is queued on it may be lost, and
 * on_down reports it (fault injection, a lane that misbehaves). */
void ch_lanes_reset(ch_lanes *l, uint64_t node, uint16_t core);
/* The link pace of the lane to (node, core) (ch_conn_link), zeros when it is not up. */
void ch_lanes_link(const ch_lanes *l, uint64_t node, uint16_t core, uint64_t *bytes, uint64_t *ns);
/* After the reactor's io_uring is gone. */
void ch_lanes_free(ch_lanes *l);

#endif
