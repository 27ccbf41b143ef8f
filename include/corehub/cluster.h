/*
 * corehub/cluster.h - nodes forming a hub: membership, the ring, the replicated registry.
 *
 * A node with `cluster.listen` set runs a coordinator thread that listens on that TCP
 * address, joins the hub through `cluster.seeds`, authenticates every peer with the hub's
 * cookie, detects failures, and keeps the consistent-hash ring and a replica of the whole
 * hub's registry. ch_send, ch_call, ch_node_children_start, ch_node_children_stop and
 * ch_registry_lookup then work for any id on any node. Without `listen` the node is a hub
 * of one.
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

/* Reads a cookie file: its bytes less trailing white space. Returns 0 with *out
 * (malloc'd, the caller frees it; a NUL follows the *len bytes, not counted) and *len;
 * -EINVAL (an argument NULL, not a regular file, or under 16 bytes once trimmed), -EPERM
 * (any permission for group or others), -EFBIG (over 64 KiB), or the error of open/read
 * (-ENOENT, -EACCES...), with *out and *len untouched. Any thread; blocks on the file. */
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

/* This node's id, drawn at random by ch_node_create (never 0; 0 for n NULL); the port it
 * listens on for its hub (bound by ch_node_create; 0 when not clustered); its ring epoch
 * (1 from ch_node_create on a clustered node, then growing; 0 when not clustered). Any
 * thread; reads only. */
CH_API uint64_t ch_node_id(const ch_node *n);
CH_API int ch_node_port(const ch_node *n);
CH_API uint64_t ch_node_epoch(const ch_node *n);

/* The node the ring currently places `id` on, or its pin (this node's view; the process
 * may still live elsewhere during a change: ch_registry_lookup says where it is); this
 * node's own id when not clustered. 0 with *node, CH_EBADID, -EINVAL (n or node NULL).
 * Any thread; does not block. */
CH_API int ch_node_owner_of(const ch_node *n, const char *id, size_t id_len, uint64_t *node);

/* Every member this node knows, itself included, with its state as this node sees it.
 * Asks the coordinator and waits for it (briefly): not on a reactor thread. Returns 0 with
 * *out (malloc'd: free() it) and *count; on error *out is NULL and *count 0 (when they are
 * not NULL): -EINVAL (an argument NULL, or n not clustered), CH_EWOULDBLOCK, CH_ESTOPPED,
 * -ENOMEM. */
CH_API int ch_node_members_get(ch_node *n, ch_member **out, size_t *count);

/* Leaves the hub gracefully: announces it, hands every process over to its new owners
 * (the migration config), waits until each is confirmed and the peers adopted the epoch
 * without this node, at most migration.leave_wait_ms, then stops the node
 * (ch_node_stop). Blocks: not on a reactor thread (CH_EWOULDBLOCK). 0; CH_EPARTIAL
 * (stopped with processes not handed over: the peers restart them from their specs;
 * counted in `left_behind`); -EINVAL (n NULL); CH_ESTOPPED (a clustered node not
 * running). A node without a cluster, or alone in its hub, has no one to hand over to:
 * it stops and returns 0. */
CH_API int ch_node_leave(ch_node *n);

/* Drains this node: it leaves the ring, hands every process over to the others (as a
 * graceful leave does, migration config) and stays up, serving calls and routing. Blocks
 * (not on a reactor thread: CH_EWOULDBLOCK) until every process is confirmed or
 * leave_wait_ms passed: 0, CH_EPARTIAL (some did not move: they stay here; always so for a
 * node without a cluster, which has no one to hand over to), -EALREADY (drained or
 * leaving before), -EINVAL (n NULL), CH_ESTOPPED. A drained node stays out of the ring
 * until it stops. */
CH_API int ch_node_drain(ch_node *n);

/* Pins the process `id` to `node` (a member in the ring; 0 unpins): from now on its owner is
 * that node instead of its ring owner, so it migrates there with the migration config's
 * strategy and guarantees, and stays there across ring changes while that node is on the
 * ring (else its ring owner holds it). The pin is kept by every node (ch_proc_info.pin)
 * and given to nodes that join later. Returns once the pin is set here and sent to the
 * peers (the move itself follows): 0, -EHOSTUNREACH (node is not a ring member), CH_EBADID,
 * -EINVAL (n NULL), CH_ESTOPPED, -ENOMEM. Blocks briefly: not on a reactor thread
 * (CH_EWOULDBLOCK). Without a cluster: 0 for node 0 or this node, else -EHOSTUNREACH. */
CH_API int ch_node_pin(ch_node *n, const char *id, size_t id_len, uint64_t node);

/* 1 in partition mode, 0 otherwise (always 0 without a cluster), -EINVAL for n NULL. Any
 * thread; does not block. */
CH_API int ch_node_partitioned(ch_node *n);
/* MAJORITY_QUORUM: forget the largest cluster seen, on this node and every node it
 * reaches (sent to them; returns without waiting for them). Waits for the coordinator
 * (briefly): not on a reactor thread. 0, -EINVAL (n NULL or not clustered),
 * CH_EWOULDBLOCK, CH_ESTOPPED, -ENOMEM. */
CH_API int ch_node_partition_reset(ch_node *n);

/* Lists the processes running on this node's cores only (ch_registry_list lists the
 * whole hub), with the same filter, blocking, ownership and returns as ch_registry_list. */
CH_API int ch_registry_list_local(ch_node *n, const char *tag, ch_proc_list *out);

/* --- control channel: the `corehub ctl` client and the node side -------------------- */

/* The node side: runs handler(ud, argc, argv, reply) on a dedicated control thread (not a
 * reactor: blocking calls are fine there) for each authenticated control request, one at
 * a time in arrival order; argv (argc 1..64 NUL-terminated strings) is valid during the
 * call only. The handler writes its answer with ch_ctl_reply_append and returns an exit
 * status (0 ok), which the client gets with the text. Without a handler a request gets
 * status 127 and "no control handler on this node"; an answer too large for one frame
 * (about 16 MiB) is replaced by status 4 and an error line. */
typedef struct ch_ctl_reply ch_ctl_reply;
/* Appends printf-formatted text to the answer (from the handler, with the reply it got).
 * 0, -EINVAL (a format error), -ENOMEM. */
CH_API int ch_ctl_reply_append(ch_ctl_reply *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
typedef int (*ch_ctl_handler)(void *ud, int argc, char **argv, ch_ctl_reply *reply);
/* Installs the handler (NULL: none). Before ch_node_start only: 0, -EINVAL (n NULL or not
 * clustered), -EBUSY (started or stopped). */
CH_API int ch_node_ctl_handler_set(ch_node *n, ch_ctl_handler handler, void *ud);

/* The client side: one TCP connection, authenticated like a peer, whose calls block the
 * calling thread (for tools: never on a reactor, which it would stall; it does not
 * check). A ch_ctl is used by one thread at a time. */
typedef struct ch_ctl ch_ctl;
/*
 * Connects to the node listening on addr ("HOST:PORT", its cluster.listen) and runs the
 * handshake with hub_id (NULL: "corehub") and the hub's cookie (copied for the handshake,
 * not kept). Blocks for at most timeout_ms (0: 5000 ms) in all, connect and handshake
 * together; the same timeout then bounds each ch_ctl_exec. Returns 0 with *out, else
 * *out NULL (left untouched by the -EINVAL of a NULL or short argument) and:
 *   -EINVAL     addr, out or cookie NULL, cookie_len under 16, hub_id empty or over
 *               CH_HUB_ID_MAX bytes, addr not a resolvable HOST:PORT
 *   -ETIMEDOUT  no connection or no finished handshake within the timeout
 *   -EACCES     refused: wrong cookie (the node hangs up without saying why)
 *   -EPERM      the node belongs to another hub (or -EACCES if it hangs up first)
 *   -EPROTO     another protocol version; -EBADMSG a malformed or tampered frame
 *   -ENOMEM, or the connect error (-ECONNREFUSED, -ENETUNREACH...)
 */
CH_API int ch_ctl_open(const char *addr, const char *hub_id, const void *cookie, size_t cookie_len,
                       uint32_t timeout_ms, ch_ctl **out);
/* Sends argv (argc 1..64 strings), waits for the answer, at most the open's timeout:
 * *status is the handler's status, *text its output (malloc'd, NUL-terminated; free it).
 * 0; -EINVAL (bad arguments), -EMSGSIZE (request too large), -ENOMEM: the channel stays
 * usable; -ETIMEDOUT, -ECONNRESET (the node closed it), -EPROTO, -EBADMSG or another
 * socket error: the channel is dead, and every later call returns -ETIMEDOUT (after a
 * timeout) or -ENOTCONN. *text is NULL after any error but -EINVAL. */
CH_API int ch_ctl_exec(ch_ctl *c, int argc, const char *const *argv, int *status, char **text);
/* Closes the connection and frees c. NULL: nothing. */
CH_API void ch_ctl_close(ch_ctl *c);

#ifdef __cplusplus
}
#endif
#endif
