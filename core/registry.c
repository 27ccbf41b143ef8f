/*
 * core/registry.c - registry queries: lookup by id and listing (optionally by tag).
 *
 * Each core keeps the rows of the ids it owns (its process table), so a lookup asks one
 * core and a list asks every core, each filling its own slot of the answer. The query is
 * shared by reference count between the waiting thread and each core it was sent to,
 * because the waiter may give up first.
 */
#include "log.h"
#include "node.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void free_list_items(ch_proc_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->count = 0;
}

static void query_put(ch_query *q)
{
    if (atomic_fetch_sub(&q->refs, 1) != 1) return;
    free(q->info);
    for (unsigned i = 0; q->per_core && i < q->cores; i++)
        free_list_items(&q->per_core[i]);
    free(q->per_core);
    free((void *)q->key);
    free((void *)q->tag);
    ch_waiter_destroy(&q->w);
    free(q);
}

void ch_query_core_done(ch_query *q)
{
    if (atomic_fetch_sub_explicit(&q->pending, 1, memory_order_acq_rel) == 1)
        ch_waiter_signal(&q->w);
    query_put(q);
}

static ch_query *query_new(unsigned cores)
{
    ch_query *q = calloc(1, sizeof(*q));
    if (!q) return NULL;
    if (ch_waiter_init(&q->w)) {
        free(q);
        return NULL;
    }
    atomic_init(&q->refs, 1);
    atomic_init(&q->pending, cores);
    q->cores = cores;
    return q;
}

/* Sends the query to `core` and takes a reference for it. */
static int send_query(ch_node *n, ch_query *q, unsigned core)
{
    atomic_fetch_add(&q->refs, 1);
    ch_rec h = {.op = CH_OP_QUERY, .ref = (uint64_t)(uintptr_t)q};
    int rc = ch_reactor_post(n, core, &h, NULL, NULL, false);
    if (rc < 0) ch_query_core_done(q);
    return rc;
}

static int begin(ch_node *n)
{
    if (!n) return -EINVAL;
    if (ch_node_on_reactor(n)) return CH_EWOULDBLOCK;
    return ch_node_api_enter(n);
}

int ch_registry_lookup(ch_node *n, const char *id, size_t id_len, ch_proc_info **out)
{
    if (!out) return -EINVAL;
    int rc = ch_id_check(id, &id_len);
    if (rc) return rc;
    if ((rc = begin(n))) return rc;
    ch_query *q = query_new(1);
    ch_spec *key = NULL;
    ch_child_spec cs = {.id = id, .id_len = id_len};
    if (!q || (rc = ch_spec_new(&cs, NULL, &key))) {
        ch_node_api_leave(n);
        if (q) query_put(q);
        return q ? rc : -ENOMEM;
    }
    q->key = key;
    rc = send_query(n, q, ch_route(n, key->hash));
    ch_node_api_leave(n);
    if (rc == 0) rc = ch_waiter_wait(&q->w, n->cfg.call_timeout_ms);
    if (rc == 0 && (rc = q->status) == 0) {
        *out = q->info;
        q->info = NULL;
    }
    query_put(q);
    return rc;
}

static int merge(ch_query *q, ch_proc_list *out)
{
    size_t total = 0;
    for (unsigned i = 0; i < q->cores; i++)
        total += q->per_core[i].count;
    out->items = calloc(total ? total : 1, sizeof(*out->items));
    if (!out->items) return -ENOMEM;
    for (unsigned i = 0; i < q->cores; i++) {
        ch_proc_list *l = &q->per_core[i];
        if (l->count) memcpy(out->items + out->count, l->items, l->count * sizeof(*l->items));
        out->count += l->count;
        free(l->items);
        l->items = NULL;
        l->count = 0;
    }
    return 0;
}

/* Asks `slots` reactors (the cores, or the coordinator alone) and merges their answers. */
static int list_from(ch_node *n, const char *tag, ch_proc_list *out, bool hub)
{
    if (!out) return -EINVAL;
    out->count = 0;
    out->items = NULL;
    int rc = begin(n);
    if (rc) return rc;
    unsigned slots = hub ? 1 : n->cores;
    ch_query *q = query_new(slots);
    if (q) q->per_core = calloc(slots, sizeof(*q->per_core));
    if (q) q->list = true;
    if (!q || !q->per_core || (tag && !(q->tag = strdup(tag)))) {
        ch_node_api_leave(n);
        if (q) query_put(q);
        return -ENOMEM;
    }
    if (hub)
        send_query(n, q, n->cores);
    else
        for (unsigned c = 0; c < n->cores; c++)
            send_query(n, q, c);
    ch_node_api_leave(n);
    rc = ch_waiter_wait(&q->w, n->cfg.call_timeout_ms);
    if (rc == 0) rc = merge(q, out);
    query_put(q);
    return rc;
}

int ch_registry_list(ch_node *n, const char *tag, ch_proc_list *out)
{
    return list_from(n, tag, out, n && n->coord);
}

int ch_registry_list_local(ch_node *n, const char *tag, ch_proc_list *out)
{
    return list_from(n, tag, out, false);
}

void ch_proc_list_free(ch_proc_list *list)
{
    if (list) free_list_items(list);
}
