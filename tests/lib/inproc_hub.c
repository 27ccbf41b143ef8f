/*
 * tests/lib/inproc_hub.c - hubs of in-process nodes (see inproc_hub.h).
 */
#include "inproc_hub.h"

#include "wait.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char cookie[] = "in-process-hub-cookie-0123456789";

/* ---- the counter type ---------------------------------------------------------------- */

static int counter_init(ch_proc *p, const void *arg, size_t len, unsigned flags)
{
    (void)arg, (void)len, (void)flags;
    return ch_proc_state_resize(p, sizeof(uint64_t)) ? 0 : -ENOMEM;
}

static int counter_handle(ch_proc *p, const ch_msg *m)
{
    uint64_t *n = ch_proc_state(p, NULL);
    if (m->kind == CH_MSG_CAST) (*n)++;
    if (m->kind == CH_MSG_CALL && m->len == 5 && memcmp(m->data, "stall", 5) == 0) {
        ch_reply_token t; /* never answered */
        ch_reply_defer(p, m, &t);
        return CH_CONTINUE;
    }
    if (m->kind == CH_MSG_CALL) ch_reply(p, m, n, sizeof(*n));
    return CH_CONTINUE;
}

const ch_process_type ihub_counter = {
    .name = IHUB_COUNTER, .init = counter_init, .handle = counter_handle};

/* ---- nodes ------------------------------------------------------------------------------ */

void ihub_config(ch_node_config *c)
{
    ch_node_config_init(c);
    c->cores = 2;
    c->pin = 0;
    c->cluster.listen = "127.0.0.1:0";
    c->cluster.cookie = cookie;
    c->cluster.cookie_len = sizeof(cookie) - 1;
    c->cluster.probe_interval_ms = 200;
    c->cluster.probe_timeout_ms = 100;
    c->cluster.suspicion_mult = 5;
    c->cluster.sync_interval_ms = 300;
}

int ihub_node_start(const ch_node_config *c, ch_node *seed, const ch_process_type *type,
                    ch_node **out)
{
    ch_node_config cfg = *c;
    char addr[32];
    const char *seeds[1] = {addr};
    cfg.cluster.seeds = NULL;
    cfg.cluster.nseeds = 0;
    if (seed) {
        snprintf(addr, sizeof(addr), "127.0.0.1:%d", ch_node_port(seed));
        cfg.cluster.seeds = seeds;
        cfg.cluster.nseeds = 1;
    }
    ch_node *n = NULL;
    *out = NULL;
    int rc = ch_node_create(&cfg, &n);
    if (rc < 0) return rc;
    rc = ch_node_register_type(n, type);
    if (rc == 0) rc = ch_node_start(n);
    if (rc < 0) {
        ch_node_destroy(n);
        return rc;
    }
    *out = n;
    return 0;
}

int ihub_up(ihub *h, size_t count, const ch_node_config *c, const ch_process_type *type)
{
    ch_node_config dflt;
    if (!c) {
        ihub_config(&dflt);
        c = &dflt;
    }
    memset(h, 0, sizeof(*h));
    if (count == 0 || count > IHUB_MAX) return -EINVAL;
    for (size_t i = 0; i < count; i++) {
        int rc = ihub_node_start(c, i ? h->n[0] : NULL, type, &h->n[i]);
        h->count = i + 1;
        if (rc < 0) {
            ihub_down(h);
            return rc;
        }
    }
    return 0;
}

void ihub_down(ihub *h)
{
    for (size_t i = h->count; i-- > 0;) {
        if (h->n[i]) ch_node_destroy(h->n[i]);
        h->n[i] = NULL;
    }
    h->count = 0;
}

/* ---- looking at a hub ------------------------------------------------------------------ */

size_t ihub_alive(ch_node *n)
{
    ch_member *m;
    size_t k, alive = 0;
    if (ch_members(n, &m, &k) < 0) return IHUB_NONE;
    for (size_t i = 0; i < k; i++)
        alive += m[i].state == CH_MEMBER_ALIVE;
    free(m);
    return alive;
}

size_t ihub_listed(ch_node *n)
{
    ch_proc_list l;
    if (ch_list(n, NULL, &l) < 0) return IHUB_NONE;
    size_t k = l.count;
    ch_proc_list_free(&l);
    return k;
}

bool ihub_all(ch_node *const *nodes, size_t count, size_t (*what)(ch_node *), size_t want)
{
    for (size_t i = 0; i < count; i++)
        if (nodes[i] && what(nodes[i]) != want) return false;
    return true;
}

bool ihub_wait(bool (*cond)(void *ud), void *ud, uint32_t timeout_ms)
{
    return th_poll_until(cond, ud, timeout_ms, IHUB_POLL_MS * 1000u);
}

typedef struct all_look {
    ch_node *const *nodes;
    size_t count;
    size_t (*what)(ch_node *);
    size_t want;
} all_look;

static bool all_now(void *ud)
{
    all_look *l = ud;
    return ihub_all(l->nodes, l->count, l->what, l->want);
}

bool ihub_wait_all(ch_node *const *nodes, size_t count, size_t (*what)(ch_node *), size_t want,
                   uint32_t timeout_ms)
{
    all_look l = {nodes, count, what, want};
    return ihub_wait(all_now, &l, timeout_ms);
}

/* ---- processes ------------------------------------------------------------------------- */

int ihub_start_range(ch_node *n, const char *prefix, size_t count, const char *type, int *res)
{
    ch_child_spec *specs = calloc(count, sizeof(*specs));
    char(*ids)[32] = calloc(count, sizeof(*ids));
    int *own = res ? NULL : calloc(count, sizeof(int));
    int rc = -ENOMEM;
    if (specs && ids && (res || own)) {
        for (size_t i = 0; i < count; i++) {
            snprintf(ids[i], sizeof(ids[i]), "%s%zu", prefix, i);
            specs[i] = (ch_child_spec){.id = ids[i], .id_len = CH_ID_CSTR, .type = type};
        }
        rc = ch_start_children(n, specs, count, NULL, res ? res : own);
    }
    free(specs);
    free(ids);
    free(own);
    return rc;
}
