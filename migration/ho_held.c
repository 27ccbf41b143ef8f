/*
 * migration/ho_held.c - messages held on a core, per id, in arrival order: for a process
 * frozen here whose stream is closed (until the outcome of its move), for a process
 * installed here whose forwarded messages are not all here yet (until its END), for an id
 * that belongs here by the new ring but has not arrived (while the round is open, bounded
 * by child_timeout_ms), and, apart from those, casts kept back until the round seals
 * (ch__ho_kept_back). Released, each queue runs on the process, follows it behind its
 * stream when it is frozen, or is routed on through the coordinator.
 */
#include "migration/ho_int.h"

#include "core/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct held_msg {
    struct held_msg *next;
    uint8_t op; /* CH_OP_CAST or CH_OP_CALL */
    uint16_t core;
    uint64_t ref;
    uint32_t len;
    uint8_t data[];
} held_msg;

struct ho_held_q {
    struct ho_held_q *next; /* bucket chain */
    uint64_t hash;
    uint64_t first_ns;
    held_msg *head, *tail;
    bool late; /* kept back until the round seals (ch__ho_kept_back), apart from the others */
    uint8_t id_len;
    char id[];
};

static ho_held_q **held_slot_of(ch_ho *h, uint64_t hash, const char *id, size_t len, bool late)
{
    ho_held_q **at = &h->held[hash & (h->hcap - 1)];
    while (*at && !((*at)->hash == hash && (*at)->late == late && (*at)->id_len == len &&
                    !memcmp((*at)->id, id, len)))
        at = &(*at)->next;
    return at;
}

static ho_held_q **held_slot(ch_ho *h, uint64_t hash, const char *id, size_t len)
{
    return held_slot_of(h, hash, id, len, false);
}

static int held_grow(ch_ho *h)
{
    size_t cap = h->hcap ? h->hcap * 2 : 256;
    ho_held_q **tab = calloc(cap, sizeof(*tab));
    if (!tab) return -ENOMEM;
    for (size_t i = 0; i < h->hcap; i++) {
        for (ho_held_q *q = h->held[i], *next; q; q = next) {
            next = q->next;
            q->next = tab[q->hash & (cap - 1)];
            tab[q->hash & (cap - 1)] = q;
        }
    }
    free(h->held);
    h->held = tab;
    h->hcap = cap;
    return 0;
}

static bool hold_in(ch_ho *h, bool late, uint64_t hash, const char *id, size_t id_len, uint8_t op,
                    const void *data, size_t len, unsigned core, uint64_t ref)
{
    if (h->hcount >= h->hcap / 2 && held_grow(h) < 0) return false;
    ho_held_q **at = held_slot_of(h, hash, id, id_len, late);
    ho_held_q *q = *at;
    if (!q) {
        if (!(q = calloc(1, sizeof(*q) + id_len))) return false;
        q->hash = hash;
        q->late = late;
        q->id_len = (uint8_t)id_len;
        memcpy(q->id, id, id_len);
        q->first_ns = ch_now_ns();
        *at = q;
        h->hcount++;
    }
    held_msg *m = malloc(sizeof(*m) + len);
    if (!m) return false; /* an empty queue stays: harmless, released with the others */
    *m = (held_msg){.op = op == CH_OP_CAST ? CH_OP_CAST : CH_OP_CALL,
                    .core = (uint16_t)core,
                    .ref = ref,
                    .len = (uint32_t)len};
    if (len) memcpy(m->data, data, len);
    if (q->tail)
        q->tail->next = m;
    else
        q->head = m;
    q->tail = m;
    ho_count(&h->r->stats.held_messages, 1);
    ch__ho_arm_tick(h);
    return true;
}

bool ch__ho_hold_msg(ch_ho *h, uint64_t hash, const char *id, size_t id_len, uint8_t op,
                     const void *data, size_t len, unsigned core, uint64_t ref)
{
    return hold_in(h, false, hash, id, id_len, op, data, len, core, ref);
}

bool ch__ho_hold_late(ch_ho *h, ch_rec *rec)
{
    return hold_in(h, true, rec->aux, ch_rec_id(rec), rec->id_len, rec->op, ch_rec_payload(rec),
                   rec->len, 0, 0);
}

bool ch__ho_hold(ch_ho *h, ch_rec *rec, unsigned core, uint64_t ref)
{
    return ch__ho_hold_msg(h, rec->aux, ch_rec_id(rec), rec->id_len, rec->op, ch_rec_payload(rec),
                           rec->len, core, ref);
}

/* Runs (or routes on) what was held for one id, in arrival order. */
static void release_q(ch_ho *h, ho_held_q *q, bool by_ring)
{
    ch_reactor *r = h->r;
    held_msg *m = q->head;
    q->head = q->tail = NULL;
    while (m) {
        held_msg *next = m->next;
        ch_proc *p = r->shut ? NULL : ch_ptable_find(&r->procs, q->hash, q->id, q->id_len);
        if (p && p->mig && p->mig->state == MP_FROZEN)
            ch__ho_forward(h, p, m->op, m->data, m->len, m->core, m->ref);
        else if (p)
            ch__ho_deliver(r, p, m->op, m->data, m->len, m->core, m->ref);
        else if (!r->shut)
            ch__ho_route_via(r, by_ring, m->op, q->id, q->id_len, q->hash, m->data, m->len, m->core,
                             m->ref);
        free(m);
        m = next;
    }
}

void ch__ho_release_id(ch_ho *h, uint64_t hash, const char *id, size_t len, bool by_ring)
{
    if (!h->hcap) return;
    ho_held_q **at = held_slot(h, hash, id, len);
    ho_held_q *q = *at;
    if (!q) return;
    *at = q->next;
    h->hcount--;
    release_q(h, q, by_ring);
    free(q);
}

/* Whether ch__ho_release_held leaves q where it is. */
static bool keep_held(const ch_ho *h, const ho_held_q *q, int which, uint64_t now)
{
    uint64_t limit = (uint64_t)h->cfg->child_timeout_ms * 1000000;
    bool young = now - q->first_ns < limit; /* first_ns is never later than now */
    if (q->late) return which == REL_OLD && !h->sealed && young; /* sealed: the older are here */
    ch_proc *p = ch_ptable_find(&h->r->procs, q->hash, q->id, q->id_len);
    if (p && p->mig) return true; /* released by the outcome of its move */
    return which == REL_PRESENT || (which == REL_OLD && young);
}

/* Releases every held queue (REL_ALL: UNHOLD), those older than the child timeout
 * (REL_OLD), or those kept back (REL_PRESENT: sealed); those of a process whose move is
 * still under way here wait for its outcome, unless kept back. The queues are taken out first: a
 * message released now may be held again, in a new queue. */
void ch__ho_release_held(ch_ho *h, int which)
{
    bool all = which != REL_OLD;
    uint64_t now = ch_now_ns();
    ho_held_q *out = NULL;
    for (size_t i = 0; i < h->hcap; i++) {
        ho_held_q **at = &h->held[i];
        while (*at) {
            ho_held_q *q = *at;
            if (keep_held(h, q, which, now)) {
                at = &q->next;
                continue;
            }
            if (!all)
                CH_WARN("messages for %.*s held %u ms without the process: sent on", q->id_len,
                        q->id, h->cfg->child_timeout_ms);
            *at = q->next;
            h->hcount--;
            q->next = out;
            out = q;
        }
    }
    while (out) {
        ho_held_q *q = out;
        out = q->next;
        release_q(h, q, false);
        free(q);
    }
}

/* Frees every held queue and the table (the engine is going away). */
void ch__ho_held_free(ch_ho *h)
{
    for (size_t i = 0; i < h->hcap; i++) {
        for (ho_held_q *q = h->held[i], *nq; q; q = nq) {
            nq = q->next;
            for (held_msg *m = q->head, *nm; m; m = nm) {
                nm = m->next;
                free(m);
            }
            free(q);
        }
    }
    free(h->held);
}
