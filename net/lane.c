/*
 * net/lane.c - a core's data lanes (see lane.h): a transport on the core's reactor, its
 * peers' lane ports, the lanes it dialled, and their back-off.
 */
#define _GNU_SOURCE
#include "lane.h"

#include "core/log.h"
#include "core/supervisor.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LANE_SWEEP_MS     1000u /* handshake deadline checks */
#define LANE_HANDSHAKE_MS 5000u /* a lane connection that says nothing is closed after this */
#define LANE_RETRY_MIN_MS 50u   /* a lane that failed is dialled again after this, doubling */
#define LANE_RETRY_MAX_MS 5000u
#define LANE_PORTS_MAX    1024u /* cores of one peer */
#define LANE_STILL_SWEEPS 2u    /* a lane that waits this many sweeps without progress closes */

/* What a lane this core dialled is (the connection's user data, freed with it). */
typedef struct lane_ref {
    uint64_t node;
    uint16_t core;
    bool dropped; /* its peer was dropped: nobody is told it closed */
    struct lane_ref *next, *prev;
} lane_ref;

typedef struct lane_out {
    ch_conn *c; /* NULL: none */
    bool up;
    uint32_t fails;    /* dials in a row that never came up */
    uint64_t retry_ns; /* no dial before this */
    uint64_t acked;    /* ch_conn_acked at the last sweep */
    uint32_t still;    /* sweeps in a row that found bytes waiting and none acknowledged */
} lane_out;

typedef struct lane_peer {
    uint64_t node;
    char host[CH_ADDR_MAX + 1];
    uint16_t *ports;
    lane_out *out; /* per peer core */
    unsigned n;
} lane_peer;

struct ch_lanes {
    ch_reactor *r;
    ch_transport *t;
    uint16_t core;
    ch_lanes_cbs cbs;
    lane_peer *peers; /* reallocated: never keep a pointer across calls */
    size_t npeers;
    lane_ref *refs; /* of every dialled lane not yet closed: freed with the lanes at the end */
    bool started;
};

static void ref_free(ch_lanes *l, lane_ref *ref)
{
    if (ref->prev)
        ref->prev->next = ref->next;
    else
        l->refs = ref->next;
    if (ref->next) ref->next->prev = ref->prev;
    free(ref);
}

static void dial_all(ch_lanes *l, lane_peer *p);

static lane_peer *peer_of(const ch_lanes *l, uint64_t node)
{
    for (size_t i = 0; i < l->npeers; i++)
        if (l->peers[i].node == node) return &l->peers[i];
    return NULL;
}

/* ---- the transport's callbacks ---------------------------------------------------------- */

static void on_up(void *ud, ch_conn *c, const ch_hello *peer)
{
    ch_lanes *l = ud;
    if (peer->role != CH_ROLE_LANE) {
        CH_WARN("lane port of core %u: a %s connection refused", l->core,
                peer->role == CH_ROLE_PEER ? "node" : "control");
        ch_conn_close(c, -EPROTO);
        return;
    }
    lane_ref *ref = ch_conn_ud(c);
    if (!ref && !peer_of(l, peer->node_id)) {
        /* The cookie proves a node of the hub, not a member: only a node whose lanes the
         * coordinator announced here may send on one (a member that dialled before that
         * announcement came dials again after its back-off). */
        CH_WARN("lane port of core %u: a lane from %016llx, not a member here, refused", l->core,
                (unsigned long long)peer->node_id);
        ch_counter_bump(&l->r->stats.refused_peers);
        ch_conn_close(c, -EPERM);
        return;
    }
    lane_peer *p = ref ? peer_of(l, ref->node) : NULL;
    if (!ref || !p || ref->core >= p->n || p->out[ref->core].c != c) return; /* inbound */
    if (peer->node_id != ref->node) {
        CH_WARN("lane to %016llx answered by %016llx: closed", (unsigned long long)ref->node,
                (unsigned long long)peer->node_id);
        ch_conn_close(c, -EPROTO);
        return;
    }
    p->out[ref->core].up = true;
    p->out[ref->core].fails = 0;
}

static void on_frame(void *ud, ch_conn *c, const ch_frame *f)
{
    ch_lanes *l = ud;
    const ch_hello *peer = ch_conn_peer(c);
    if (ch_conn_ud(c) || !peer) return; /* frames come only on lanes peers dialled */
    l->cbs.on_frame(l->cbs.ud, peer->node_id, f->type, f->payload, f->len);
}

static uint64_t retry_delay_ns(uint32_t fails)
{
    uint64_t ms = LANE_RETRY_MIN_MS;
    for (uint32_t i = 1; i < fails && ms < LANE_RETRY_MAX_MS; i++)
        ms *= 2;
    return (ms < LANE_RETRY_MAX_MS ? ms : LANE_RETRY_MAX_MS) * 1000000ull;
}

static void on_down(void *ud, ch_conn *c, int reason)
{
    ch_lanes *l = ud;
    lane_ref *ref = ch_conn_ud(c);
    if (!ref) return; /* inbound */
    lane_peer *p = ref->dropped ? NULL : peer_of(l, ref->node);
    if (p && ref->core < p->n && p->out[ref->core].c == c) {
        lane_out *o = &p->out[ref->core];
        if (!o->up) o->fails++;
        o->retry_ns = ch_now_ns() + retry_delay_ns(o->fails);
        o->c = NULL;
        o->up = false;
        CH_DEBUG("lane from core %u to %016llx core %u closed: %s", l->core,
                 (unsigned long long)ref->node, ref->core, reason ? strerror(-reason) : "EOF");
        l->cbs.on_down(l->cbs.ud, ref->node, ref->core);
    }
    ref_free(l, ref);
}

static const ch_transport_cbs lane_cbs = {.on_up = on_up, .on_frame = on_frame, .on_down = on_down};

/* ---- life ------------------------------------------------------------------------------- */

int ch_lanes_create(ch_reactor *r, const char *host, const ch_hello *self, const void *cookie,
                    size_t cookie_len, const ch_lanes_cbs *cbs, ch_lanes **out)
{
    ch_lanes *l = calloc(1, sizeof(*l));
    if (!l) return -ENOMEM;
    l->r = r;
    l->core = (uint16_t)r->core;
    l->cbs = *cbs;
    ch_hello h = *self;
    h.role = CH_ROLE_LANE;
    h.lane_core = l->core;
    char listen[CH_ADDR_MAX + 8];
    snprintf(listen, sizeof(listen), "%s:0", host);
    ch_transport_cbs tc = lane_cbs;
    tc.ud = l;
    int rc = ch_transport_create(r, listen, &h, cookie, cookie_len, CH_FRAME_MAX, &tc, &l->t);
    if (rc < 0) {
        free(l);
        return rc;
    }
    *out = l;
    return 0;
}

int ch_lanes_port(const ch_lanes *l)
{
    return ch_transport_port(l->t);
}

/* A lane whose bytes wait while the peer acknowledges none of them, sweep after sweep, is
 * closed: a partition or a stalled peer left its TCP connection backing off (seconds
 * between retransmissions after a few of them), and what it carries is better sent again
 * the other way (on_down) than left behind the back-off. A peer merely slow to read still
 * acknowledges what its kernel takes. */
static void check_still(ch_lanes *l)
{
    for (size_t i = 0; i < l->npeers; i++) {
        lane_peer *p = &l->peers[i];
        for (unsigned k = 0; k < p->n; k++) {
            lane_out *o = &p->out[k];
            if (!o->c || !o->up) continue;
            bool waiting;
            uint64_t acked = ch_conn_acked(o->c, &waiting);
            o->still = waiting && acked == o->acked ? o->still + 1 : 0;
            o->acked = acked;
            if (o->still < LANE_STILL_SWEEPS) continue;
            CH_WARN("data lane from core %u to %016llx core %u has not moved for %u ms: closed",
                    l->core, (unsigned long long)p->node, k, LANE_STILL_SWEEPS * LANE_SWEEP_MS);
            o->still = 0;
            ch_conn_close(o->c, -ETIMEDOUT);
        }
    }
}

static void sweep(ch_reactor *r, uint64_t arg)
{
    ch_lanes *l = (ch_lanes *)(uintptr_t)arg;
    ch_transport_sweep(l->t, ch_now_ns(), LANE_HANDSHAKE_MS * 1000000ull);
    check_still(l);
    if (!r->shut) ch_sup_timer_fn(r, LANE_SWEEP_MS, sweep, arg);
}

void ch_lanes_start(ch_lanes *l)
{
    if (l->started) return;
    l->started = true;
    ch_transport_start(l->t);
    for (size_t i = 0; i < l->npeers; i++)
        dial_all(l, &l->peers[i]);
    ch_sup_timer_fn(l->r, LANE_SWEEP_MS, sweep, (uint64_t)(uintptr_t)l);
}

static void peer_close(lane_peer *p)
{
    for (unsigned i = 0; i < p->n; i++) {
        if (!p->out[i].c) continue;
        lane_ref *ref = ch_conn_ud(p->out[i].c);
        if (ref) ref->dropped = true;
        ch_conn_close(p->out[i].c, -ECONNABORTED);
    }
    free(p->ports);
    free(p->out);
}

void ch_lanes_free(ch_lanes *l)
{
    if (!l) return;
    for (size_t i = 0; i < l->npeers; i++) {
        free(l->peers[i].ports);
        free(l->peers[i].out);
    }
    free(l->peers);
    ch_transport_free(l->t);
    while (l->refs)
        ref_free(l, l->refs);
    free(l);
}

/* ---- peers ------------------------------------------------------------------------------ */

static bool same_peer(const lane_peer *p, const char *host, const uint16_t *ports, unsigned n)
{
    return p->n == n && !strcmp(p->host, host) && !memcmp(p->ports, ports, n * sizeof(*ports));
}

int ch_lanes_set_peer(ch_lanes *l, uint64_t node, const char *host, const uint16_t *ports,
                      unsigned n)
{
    if (n == 0 || n > LANE_PORTS_MAX || strlen(host) > CH_ADDR_MAX) return -EINVAL;
    lane_peer *old = peer_of(l, node);
    if (old && same_peer(old, host, ports, n)) return 0;
    lane_peer p = {.node = node, .n = n};
    snprintf(p.host, sizeof(p.host), "%s", host);
    p.ports = malloc(n * sizeof(*p.ports));
    p.out = calloc(n, sizeof(*p.out));
    if (!p.ports || !p.out) {
        free(p.ports);
        free(p.out);
        return -ENOMEM;
    }
    memcpy(p.ports, ports, n * sizeof(*ports));
    if (old) {
        peer_close(old);
        *old = p;
        dial_all(l, old);
        return 0;
    }
    lane_peer *v = realloc(l->peers, (l->npeers + 1) * sizeof(*v));
    if (!v) {
        free(p.ports);
        free(p.out);
        return -ENOMEM;
    }
    l->peers = v;
    l->peers[l->npeers++] = p;
    dial_all(l, &l->peers[l->npeers - 1]);
    return 0;
}

void ch_lanes_drop_peer(ch_lanes *l, uint64_t node)
{
    lane_peer *p = peer_of(l, node);
    if (!p) return;
    peer_close(p);
    *p = l->peers[--l->npeers];
}

/* ---- sending ---------------------------------------------------------------------------- */

static void dial(ch_lanes *l, lane_peer *p, uint16_t core)
{
    lane_out *o = &p->out[core];
    if (o->c || ch_now_ns() < o->retry_ns || !l->started) return;
    lane_ref *ref = malloc(sizeof(*ref));
    if (!ref) return;
    *ref = (lane_ref){.node = p->node, .core = core, .next = l->refs};
    char addr[CH_ADDR_MAX + 8];
    snprintf(addr, sizeof(addr), "%s:%u", p->host, p->ports[core]);
    ch_conn *c;
    int rc = ch_transport_connect(l->t, addr, CH_ROLE_LANE, &c);
    if (rc < 0) {
        free(ref);
        o->fails++;
        o->retry_ns = ch_now_ns() + retry_delay_ns(o->fails);
        return;
    }
    if (l->refs) l->refs->prev = ref;
    l->refs = ref;
    ch_conn_set_ud(c, ref);
    o->c = c;
    CH_DEBUG("lane from core %u to %016llx core %u: dialling %s", l->core,
             (unsigned long long)p->node, core, addr);
}

/* Lanes are dialled as soon as a peer's ports are known, not at their first frame: a
 * handover lane keeps the way its first unconfirmed frame took (migration/ho_lane.c). */
static void dial_all(ch_lanes *l, lane_peer *p)
{
    for (unsigned i = 0; i < p->n; i++)
        dial(l, p, (uint16_t)i);
}

int ch_lanes_send(ch_lanes *l, uint64_t node, uint16_t core, uint8_t type, const void *a,
                  size_t alen, const void *b, size_t blen)
{
    lane_peer *p = peer_of(l, node);
    if (!p || core >= p->n) return -ENOENT;
    lane_out *o = &p->out[core];
    if (!o->c || !o->up || !ch_conn_open(o->c)) {
        dial(l, p, core);
        return -ENOTCONN;
    }
    return ch_conn_send2(o->c, type, a, alen, b, blen);
}

void ch_lanes_reset(ch_lanes *l, uint64_t node, uint16_t core)
{
    lane_peer *p = peer_of(l, node);
    if (p && core < p->n && p->out[core].c) ch_conn_close(p->out[core].c, -ECONNRESET);
}

void ch_lanes_link(const ch_lanes *l, uint64_t node, uint16_t core, uint64_t *bytes, uint64_t *ns)
{
    const lane_peer *p = peer_of(l, node);
    *bytes = *ns = 0;
    if (p && core < p->n && p->out[core].c && p->out[core].up)
        ch_conn_link(p->out[core].c, bytes, ns);
}
