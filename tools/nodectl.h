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

#include <corehub/corehub.h>

#include <stddef.h>

enum {
    NODECTL_OK = 0,
    NODECTL_USAGE = 1,
    NODECTL_NOT_FOUND = 3,
    NODECTL_FAILED = 4,
};

typedef struct nodectl {
    ch_node *node;
    int wake_fd;      /* `leave` writes NODECTL_WAKE_LEAVE here for the main thread */
    char *reply;      /* `call`'s reply buffer, allocated on first use */
    size_t reply_cap; /* the node's max_message */
} nodectl;

#define NODECTL_WAKE_LEAVE 'L'

int nodectl_handler(void *ud, int argc, char **argv, ch_ctl_reply *reply);
/* Frees the context's buffers (after the node stopped: no handler runs any more). */
void nodectl_free(nodectl *c);

#endif
