/*
 * core/upcall.h - the runtime's calls into the layers above it. core/ is one node's
 * runtime and never includes a header of net/ (the coordinator: membership, ring,
 * registry replica, routing to other nodes) or migration/ (the handover engine). Where
 * the runtime must reach them (a message for an id that is not here, a message for a
 * process that is moving, a process that entered or left the registry), it calls through
 * this table, which the wiring file (core/node.c) installs on a clustered node. A node
 * without a cluster has none (ch_node.up is NULL) and keeps everything local.
 */
#ifndef CH_CORE_UPCALL_H
#define CH_CORE_UPCALL_H

#include "msg.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ch_reactor ch_reactor;
typedef struct ch_proc ch_proc;
typedef struct ch_node ch_node;

typedef struct ch_upcalls {
    /* ---- the coordinator (net/), on its reactor (index `cores`) ---- */
    /* A record for the coordinator; false: not one of its records. */
    bool (*coord_dispatch)(ch_reactor *r, ch_rec *rec);
    void (*coord_shutdown)(ch_reactor *r);
    /* A pending relay entry completed: answer the remote caller. */
    void (*relay_done)(ch_reactor *r, uint64_t peer, uint16_t core, uint64_t ref, int status,
                       const void *data, size_t len);
    /* A remote start/stop request completed or timed out. */
    void (*remote_batch_done)(ch_reactor *r, void *req, int status, const void *payload,
                              size_t len);

    /* ---- the coordinator, from any core ---- */
    /* A cast or call for an id that is not here: the registry row says where it lives. */
    void (*miss)(ch_reactor *r, ch_rec *rec, unsigned core, uint64_t ref);
    /* A local process entered or left the registry, or left by a confirmed move. */
    void (*reg_insert)(ch_reactor *r, const ch_proc *p);
    void (*reg_remove)(ch_reactor *r, const ch_proc *p);
    void (*reg_moved)(ch_reactor *r, const ch_proc *p, uint64_t node, uint16_t core);

    /* ---- routing, from any thread (hot path) ---- */
    /* Where a record for this id hash goes: a core here, or `cores` (the coordinator:
     * another node owns it). *stamp: the low bits of the ring's epoch it was routed by. */
    unsigned (*route_msg)(ch_node *n, uint64_t hash, uint16_t *stamp);
    /* The node an id hash is pinned to, or 0. */
    uint64_t (*pin_of)(ch_node *n, uint64_t hash);

    /* ---- the handover engine (migration/), on a core ---- */
    int (*ho_create)(ch_reactor *r);
    void (*ho_destroy)(ch_reactor *r);
    /* A CH_OP_MIG record (on the coordinator only after it shut down). */
    void (*ho_on_rec)(ch_reactor *r, ch_rec *rec);
    /* A cast or call for p (NULL: not here); true when the engine took it. */
    bool (*ho_intercept)(ch_reactor *r, ch_rec *rec, ch_proc *p, unsigned core, uint64_t ref);
    unsigned (*ho_turn)(ch_reactor *r); /* work done: the reactor turns again while > 0 */
    bool (*ho_busy)(const ch_reactor *r);
    /* p's terminate already ran (a ColdSwap move): it must not run twice. */
    bool (*ho_terminated)(const ch_proc *p);
    /* Where p, frozen here, is moving to: true and (node, core). */
    bool (*ho_target)(const ch_proc *p, uint64_t *node, uint16_t *core);
    /* p leaves the table while migrating (stopped, shut down). */
    void (*ho_proc_gone)(ch_reactor *r, ch_proc *p);
    /* A call forwarded in a lane completed: answer its caller. */
    void (*ho_reply_done)(ch_reactor *r, uint64_t node, uint16_t core, uint64_t ref, int status,
                          const void *data, size_t len);
} ch_upcalls;

#endif
