/*
 * net/server.h - what the node needs from the server skeleton (corehub/server.h).
 *
 * The node keeps, lazily, one ch_srv_node: its open servers and, per core, the table of
 * connection slots that ch_sconn handles point into. The table lives as long as the node,
 * so a handle kept after its connection (or its server) is gone still finds a slot whose
 * generation tells it so.
 */
#ifndef CH_NET_SERVER_H
#define CH_NET_SERVER_H

struct ch_node;

/* Closes every server of n and waits until their sockets and io_uring requests are gone.
 * ch_node_stop calls it while the reactors still run, before it shuts them down. */
void ch_srv_node_stop(struct ch_node *n);
/* Frees the servers left unclosed and the slot tables (ch_node_destroy). */
void ch_srv_node_free(struct ch_node *n);

#endif
