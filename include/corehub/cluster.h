/*
 * corehub/cluster.h - nodes forming a hub: membership, the ring, the replicated registry.
 *
 * A node with `cluster.listen` set runs a coordinator thread that listens on that TCP
 * address, joins the hub through `cluster.seeds`, authenticates every peer with the hub's
 * cookie, detects failures, and keeps the consistent-hash ring and a replica of the whole
 * hub's registry. ch_send, ch_call, ch_start_children, ch_stop_children and ch_lookup then
 * work for any id on any node. Without `listen` the node is a hub of one.
 *
 * Every change of membership yields a new ring epoch (epochs only grow).
 */
#ifndef COREHUB_CLUSTER_H
#define COREHUB_CLUSTER_H

#include <corehub/common.h>
#include <corehub/node.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Reads a cookie file: its bytes less trailing white space. Refuses files shorter than 16
 * bytes or readable by others than the owner (-EPERM). *out is malloc'd. */
CH_API int ch_cookie_read(const char *path, void **out, size_t *len);

typedef enum ch_member_state {
    CH_MEMBER_ALIVE = 0,
    CH_MEMBER_SUSPECT = 1,
    CH_MEMBER_DEAD = 2,
    CH_MEMBER_LEFT = 3,
} ch_member_state;

typedef struct ch_member {
    uint64_t id;          /* a node's identity; a restarted node has a new one */
    uint64_t incarnation; /* SWIM incarnation: grows when the member refutes a suspicion */
    char addr[CH_ADDR_MAX + 1];
    unsigned cores;
    ch_member_state state;
    int self;    /* this node */
    int drained; /* alive, out of the ring (ch_node_drain) */
} ch_member;

/* This node's id (0 before start), listening port (0 when not clustered), ring epoch. */
CH_API uint64_t ch_node_id(const ch_node *n);
CH_API int ch_node_port(const ch_node *n);
CH_API uint64_t ch_node_epoch(const ch_node *n);

/* The node the ring currently places `id` on (this node's view; the process may still
 * live elsewhere during a change: ch_lookup says where it is). 0 or CH_EBADID. */
CH_API int ch_node_owner_of(const ch_node *n, const char *id, size_t id_len, uint64_t *node);

/* Every member this node knows, itself included. Blocks briefly. *out: free() it. */
CH_API int ch_members(ch_node *n, ch_member **out, size_t *count);

/* Leaves the hub gracefully: announces it, waits (bounded) until the peers adopted the
 * epoch without this node, then stops the node. */
CH_API int ch_node_leave(ch_node *n);

/* Drains this node: it leaves the ring, hands every process over to the others (as a
 * graceful leave does, migration config) and stays up, serving calls and routing. Blocks
 * until every process is confirmed or leave_wait_ms passed: 0, CH_EPARTIAL (some did not
 * move: they stay here), -EALREADY (drained before), CH_ESTOPPED. A drained node stays out
 * of the ring until it stops. */
CH_API int ch_node_drain(ch_node *n);

/* Pins the process `id` to `node` (a member in the ring; 0 unpins): from now on its owner is
 * that node instead of its ring owner, so it migrates there with the migration config's
 * strategy and guarantees, and stays there across ring changes while that node is on the
 * ring (else its ring owner holds it). The pin is kept by every node (ch_proc_info.pin)
 * and given to nodes that join later. Returns once the pin is set here and sent to the
 * peers (the move itself follows): 0, -EHOSTUNREACH (node is not a ring member), CH_EBADID,
 * CH_ESTOPPED, -ENOMEM. Blocks briefly. */
CH_API int ch_node_pin(ch_node *n, const char *id, size_t id_len, uint64_t node);

/* 1 in partition mode, 0 otherwise. */
CH_API int ch_is_partitioned(ch_node *n);
/* MAJORITY_QUORUM: forget the largest cluster seen, on every reachable node. */
CH_API int ch_partition_reset(ch_node *n);

/* Lists processes on this node only (ch_list lists the whole hub). */
CH_API int ch_list_local(ch_node *n, const char *tag, ch_proc_list *out);

/* --- control channel: the `corehub ctl` client and the node side -------------------- */

/* The node side: runs handler(ud, argc, argv, reply) on a dedicated control thread (not a
 * reactor: blocking calls are fine there) for each authenticated control request. The
 * handler writes its answer with ch_ctl_reply and returns an exit status (0 ok). */
typedef struct ch_ctl_reply ch_ctl_reply;
CH_API int ch_ctl_reply_append(ch_ctl_reply *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
typedef int (*ch_ctl_handler)(void *ud, int argc, char **argv, ch_ctl_reply *reply);
CH_API int ch_node_set_ctl_handler(ch_node *n, ch_ctl_handler handler, void *ud);

/* The client side, with blocking sockets (for tools, never on a reactor). */
typedef struct ch_ctl ch_ctl;
CH_API int ch_ctl_open(const char *addr, const char *hub_id, const void *cookie, size_t cookie_len,
                       uint32_t timeout_ms, ch_ctl **out);
/* Sends argv, waits for the answer: *status is the handler's status, *text its output
 * (malloc'd, NUL-terminated; free it). */
CH_API int ch_ctl_exec(ch_ctl *c, int argc, const char *const *argv, int *status, char **text);
CH_API void ch_ctl_close(ch_ctl *c);

#ifdef __cplusplus
}
#endif
#endif
