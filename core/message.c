/*
 * core/message.c - the message API: ch_send, ch_call and ch_call_async from any thread.
 * A message goes to its id's owner core here (routing is a function of the id) or to the
 * coordinator when another node owns the id; a blocking call waits on a heap object it
 * shares, by reference count, with the reactor that completes it.
 */
#include "node.h"

#include "log.h"
#include "supervisor.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* A node in partition mode runs nothing and reaches no one it may trust (coord_heal.c):
 * a message sent through it would be lost, so the sender is told at once. */
static bool in_partition(ch_node *n)
{
    return atomic_load_explicit(&n->partitioned, memory_order_relaxed) != 0;
}

int ch_send(ch_node *n, const char *id, size_t id_len, const void *data, size_t len)
{
    if (!n || (len && !data)) return -EINVAL;
    int rc = ch_id_check(id, &id_len);
    if (rc) return rc;
    if (len > n->cfg.max_message) return CH_EMSGSIZE;
    if (in_partition(n)) return CH_EPARTITIONED;
    uint64_t hash = ch_id_hash(id, id_len);
    ch_rec h = {.op = CH_OP_CAST, .id_len = (uint8_t)id_len, .len = (uint32_t)len, .aux = hash};
    if (ch_node_on_reactor(n)) {
        /* Hot path. A reactor's records are drained before it exits, so it needs no
         * in-flight count, only the state (a shared counter would bounce between cores). */
        unsigned dst = ch_route_msg(n, hash, &h.pad2);
        if (dst == n->cores && atomic_load_explicit(&n->net_congested, memory_order_relaxed))
            return -EAGAIN; /* the links to other nodes are backed up */
        if (atomic_load_explicit(&n->state, memory_order_relaxed) != CH_NODE_RUNNING)
            return CH_ESTOPPED;
        return ch_reactor_post(n, dst, &h, id, data, true);
    }
    /* Routed inside the in-flight bracket: a migration waits for the calls that may have
     * routed by the previous ring before it seals (migration/coord_round.c). */
    if ((rc = ch_node_api_enter(n))) return rc;
    unsigned dst = ch_route_msg(n, hash, &h.pad2);
    if (dst == n->cores && atomic_load_explicit(&n->net_congested, memory_order_relaxed))
        rc = -EAGAIN; /* the links to other nodes are backed up */
    else
        rc = ch_reactor_post(n, dst, &h, id, data, true);
    ch_node_api_leave(n);
    return rc;
}

void ch_fcall_put(ch_fcall *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1) return;
    if (!c->fn) ch_waiter_destroy(&c->w);
    free(c->reply);
    free(c);
}

void ch_fcall_complete(ch_fcall *c, int status, const void *data, size_t len)
{
    if (c->fn) {
        c->fn(c->ud, status, data, len);
        ch_fcall_put(c);
        return;
    }
    if (len && (c->reply = malloc(len))) {
        memcpy(c->reply, data, len);
        c->reply_len = len;
    } else if (len) {
        status = -ENOMEM;
    }
    c->status = status;
    ch_waiter_signal(&c->w);
    ch_fcall_put(c);
}

static int check_call(ch_node *n, const char *id, size_t *id_len, const void *req, size_t len)
{
    if (!n || (len && !req)) return -EINVAL;
    int rc = ch_id_check(id, id_len);
    if (rc) return rc;
    if (len > n->cfg.max_message) return CH_EMSGSIZE;
    return in_partition(n) ? CH_EPARTITIONED : 0;
}

/* Posts a call from a foreign thread; the target core tracks its timeout. */
static int post_fcall(ch_node *n, const char *id, size_t id_len, const void *req, size_t len,
                      ch_fcall *c)
{
    int rc = ch_node_api_enter(n);
    if (rc) return rc;
    uint64_t hash = ch_id_hash(id, id_len);
    ch_rec h = {.op = CH_OP_FCALL,
                .id_len = (uint8_t)id_len,
                .len = (uint32_t)len,
                .ref = (uint64_t)(uintptr_t)c,
                .aux = hash};
    unsigned dst = ch_route_msg(n, hash, &h.pad2);
    rc = ch_reactor_post(n, dst, &h, id, req, true);
    ch_node_api_leave(n);
    return rc;
}

static void copy_reply(const ch_fcall *c, void *reply, size_t cap, size_t *reply_len, int *rc)
{
    if (reply_len) *reply_len = c->reply_len;
    size_t n = c->reply_len < cap ? c->reply_len : cap;
    if (n && reply) memcpy(reply, c->reply, n);
    if (c->reply_len > cap) *rc = CH_ETRUNCATED;
}

int ch_call(ch_node *n, const char *id, size_t id_len, const void *req, size_t len, void *reply,
            size_t reply_cap, size_t *reply_len, uint32_t timeout_ms)
{
    if (reply_len) *reply_len = 0; /* defined on every error path */
    int rc = check_call(n, id, &id_len, req, len);
    if (rc) return rc;
    if (ch_node_on_reactor(n)) return CH_EWOULDBLOCK;
    if (!timeout_ms) timeout_ms = n->cfg.call_timeout_ms;
    ch_fcall *c = calloc(1, sizeof(*c));
    if (!c) return -ENOMEM;
    if ((rc = ch_waiter_init(&c->w))) {
        free(c);
        return rc;
    }
    atomic_init(&c->refs, 2); /* this thread and the reactor */
    c->timeout_ms = timeout_ms;
    if ((rc = post_fcall(n, id, id_len, req, len, c)) < 0) {
        ch_waiter_destroy(&c->w);
        free(c);
        return rc;
    }
    /* The reactor enforces the timeout; the margin only covers a reactor stuck in a
     * callback, so that the caller never waits much longer than it asked. */
    bool local = ch_route(n, ch_id_hash(id, id_len)) < n->cores;
    rc = ch_waiter_wait_spin(&c->w, timeout_ms + 100, local ? 20000 : 0);
    if (rc == 0) {
        rc = c->status;
        if (rc == 0) copy_reply(c, reply, reply_cap, reply_len, &rc);
    }
    ch_fcall_put(c);
    return rc;
}

int ch_call_async(ch_node *n, const char *id, size_t id_len, const void *req, size_t len,
                  uint32_t timeout_ms, ch_reply_fn fn, void *ud)
{
    int rc = check_call(n, id, &id_len, req, len);
    if (rc) return rc;
    if (!fn) return -EINVAL;
    ch_reactor *r = ch_reactor_self();
    if (r && r->node == n) {
        if ((rc = ch_node_api_enter(n))) return rc;
        rc = ch_sup_call(r, CH_TK_CALL_FN, (void *)(uintptr_t)fn, ud, 0, timeout_ms, id, id_len,
                         req, len);
        ch_node_api_leave(n);
        return rc;
    }
    ch_fcall *c = calloc(1, sizeof(*c));
    if (!c) return -ENOMEM;
    atomic_init(&c->refs, 1);
    c->timeout_ms = timeout_ms ? timeout_ms : n->cfg.call_timeout_ms;
    c->fn = fn;
    c->ud = ud;
    if ((rc = post_fcall(n, id, id_len, req, len, c)) < 0) free(c);
    return rc;
}
