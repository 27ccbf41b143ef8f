/*
 * tools/nodectl.h - the control commands of `corehub node` (what `corehub ctl` runs).
 *
 * nodectl_handler is the node's ch_ctl_handler: it runs on the node's control thread, one
 * request at a time, so it may block in the public API and keeps its scratch buffers in
 * the context without locks. Statuses: NODECTL_OK, NODECTL_USAGE, NODECTL_NOT_FOUND,
 * NODECTL_FAILED (2 is left to the client: it could not reach or authenticate the node).
 */
#ifndef COREHUB_TOOLS_NODECTL_H
#define COREHUB_TOOLS_NODECTL_H

#include "pump.h"

#include <corehub/corehub.h>

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

enum {
    NODECTL_OK = 0,
    NODECTL_USAGE = 1,
    NODECTL_NOT_FOUND = 3,
    NODECTL_FAILED = 4,
};

/* What the node's migration hooks saw (node.c registers them), for `stats`: hooks are C
 * callbacks, so this is how tests outside the process observe them. */
typedef struct nodectl_hooks {
    _Atomic uint64_t migrated_events; /* CH_HOOK_CHILDREN_MIGRATED calls */
    _Atomic uint64_t migrated_ids;    /* ids they listed */
    _Atomic uint64_t failed;          /* CH_HOOK_MIGRATION_FAILED calls */
    _Atomic uint64_t redist_events;   /* CH_HOOK_PRE_CHILDREN_REDISTRIBUTION calls */
    _Atomic uint64_t redist_ids;      /* the counts they announced */
} nodectl_hooks;

typedef struct nodectl {
    ch_node *node;
    _Atomic int metrics_port; /* --metrics' port, 0 when not served (set after start) */
    int wake_fd;              /* `leave` writes NODECTL_WAKE_LEAVE here for the main thread */
    char *reply;              /* `call`'s reply buffer, allocated on first use */
    size_t reply_cap;         /* the node's max_message */
    pump_set *pumps;          /* `pump`'s background senders */
    nodectl_hooks hooks;
} nodectl;

#define NODECTL_WAKE_LEAVE 'L'

/* Before the node starts serving control requests. 0 or -ENOMEM. */
int nodectl_init(nodectl *c, ch_node *node, int wake_fd, size_t reply_cap);
int nodectl_handler(void *ud, int argc, char **argv, ch_ctl_reply *reply);
/* Ends the background work (pumps) that calls into the node: before ch_node_destroy. */
void nodectl_close(nodectl *c);
/* Frees the context's buffers (after the node stopped: no handler runs any more). */
void nodectl_free(nodectl *c);

#endif
