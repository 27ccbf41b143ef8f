/*
 * core/proc.c - what a process's callbacks may do (corehub/process.h): identity, state,
 * replies, calls, timers, the handover buffer; plus specs and registry infos.
 *
 * These functions run on the process's owner reactor (they take the ch_proc handle that
 * only callbacks receive), so they touch reactor data without synchronisation.
 */
#include "proc.h"

#include "log.h"
#include "node.h"
#include "supervisor.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#define XXH_INLINE_ALL /* the hash of every send: no call into the shared library */
#include <xxhash.h>

/* ---- ids and specs ------------------------------------------------------------------ */

int ch_id_check(const char *id, size_t *len)
{
    if (!id) return CH_EBADID;
    if (*len == CH_ID_CSTR) *len = strnlen(id, CH_ID_MAX + 1);
    return *len >= 1 && *len <= CH_ID_MAX ? 0 : CH_EBADID;
}

uint64_t ch_id_hash(const char *id, size_t len)
{
    return XXH3_64bits(id, len);
}

int ch_spec_new(const ch_child_spec *cs, const ch_ptype *type, ch_spec **out)
{
    size_t id_len = cs->id_len;
    int rc = ch_id_check(cs->id, &id_len);
    if (rc) return rc;
    size_t tag_len = cs->tag ? strnlen(cs->tag, CH_TAG_MAX + 1) : 0;
    if (tag_len > CH_TAG_MAX || cs->meta_len > CH_META_MAX || cs->arg_len > UINT32_MAX)
        return -EINVAL;
    if ((cs->arg_len && !cs->arg) || (cs->meta_len && !cs->meta)) return -EINVAL;
    if ((unsigned)cs->restart > CH_TEMPORARY) return -EINVAL;
    ch_spec *s = malloc(sizeof(*s) + id_len + 1 + tag_len + 1 + cs->arg_len + cs->meta_len);
    if (!s) return -ENOMEM;
    s->type = type;
    s->hash = ch_id_hash(cs->id, id_len);
    s->arg_len = (uint32_t)cs->arg_len;
    s->meta_len = (uint32_t)cs->meta_len;
    s->shutdown_ms = cs->shutdown_ms;
    s->restart = (uint8_t)cs->restart;
    s->id_len = (uint8_t)id_len;
    s->tag_len = (uint8_t)tag_len;
    memcpy(s->data, cs->id, id_len);
    s->data[id_len] = '\0';
    char *tag = s->data + id_len + 1;
    if (tag_len) memcpy(tag, cs->tag, tag_len);
    tag[tag_len] = '\0';
    if (cs->arg_len) memcpy((void *)ch_spec_arg(s), cs->arg, cs->arg_len);
    if (cs->meta_len) memcpy((void *)ch_spec_meta(s), cs->meta, cs->meta_len);
    *out = s;
    return 0;
}

ch_proc_info *ch_info_new(const ch_proc *p)
{
    const ch_spec *s = p->spec;
    size_t tlen = strlen(s->type->name);
    size_t size =
        sizeof(ch_proc_info) + s->id_len + 1 + tlen + 1 + s->tag_len + 1 + s->arg_len + s->meta_len;
    ch_proc_info *info = malloc(size);
    if (!info) return NULL;
    char *at = (char *)(info + 1);
    info->id = memcpy(at, ch_spec_id(s), s->id_len + 1u);
    info->id_len = s->id_len;
    at += s->id_len + 1;
    info->type = memcpy(at, s->type->name, tlen + 1);
    at += tlen + 1;
    info->tag = memcpy(at, ch_spec_tag(s), s->tag_len + 1u);
    at += s->tag_len + 1;
    info->arg = s->arg_len ? memcpy(at, ch_spec_arg(s), s->arg_len) : NULL;
    info->arg_len = s->arg_len;
    at += s->arg_len;
    info->meta = s->meta_len ? memcpy(at, ch_spec_meta(s), s->meta_len) : NULL;
    info->meta_len = s->meta_len;
    info->restart = (ch_restart)s->restart;
    info->shutdown_ms = s->shutdown_ms;
    info->incarnation = p->incarnation;
    info->core = p->r->core;
    info->node = p->r->node->id;
    info->pin = p->r->node->up ? p->r->node->up->pin_of(p->r->node, p->hash) : 0;
    return info;
}

void ch_proc_info_free(ch_proc_info *info)
{
    free(info);
}

#define STATE_ALIGNED_FROM 2048 /* bytes */

/* ---- identity and state ------------------------------------------------------------- */

const char *ch_proc_id(const ch_proc *p, size_t *len)
{
    if (len) *len = p->spec->id_len;
    return ch_spec_id(p->spec);
}

ch_node *ch_proc_node(const ch_proc *p)
{
    return p->r->node;
}

unsigned ch_proc_core(const ch_proc *p)
{
    return p->r->core;
}

uint32_t ch_proc_incarnation(const ch_proc *p)
{
    return p->incarnation;
}

const void *ch_proc_meta(const ch_proc *p, size_t *len)
{
    if (len) *len = p->spec->meta_len;
    return p->spec->meta_len ? ch_spec_meta(p->spec) : NULL;
}

const char *ch_proc_tag(const ch_proc *p)
{
    return ch_spec_tag(p->spec);
}

void *ch_proc_type_ud(const ch_proc *p)
{
    return p->spec->type->cb.ud;
}

void *ch_proc_state(const ch_proc *p, size_t *len)
{
    if (len) *len = p->state_len;
    return p->state;
}

void ch_proc_state_clear(ch_proc *p)
{
    if (p->state && p->state_free) p->state_free(p->state);
    p->state = NULL;
    p->state_free = NULL;
    p->state_len = 0;
}

void *ch_proc_state_resize(ch_proc *p, size_t len)
{
    if (len == 0) {
        ch_proc_state_clear(p);
        return NULL;
    }
    if ((p->state && p->state_free != free) || len >= STATE_ALIGNED_FROM) {
        /* A new block: memory the process handed over cannot be realloc'd, and a large
         * state starts 64-byte aligned (memcpy into a block that is not runs many times
         * slower here, which handover copies would pay). */
        void *copy =
            len >= STATE_ALIGNED_FROM ? aligned_alloc(64, (len + 63) & ~(size_t)63) : malloc(len);
        if (!copy) return NULL;
        size_t keep = p->state_len < len ? p->state_len : len;
        if (keep) memcpy(copy, p->state, keep);
        memset((char *)copy + keep, 0, len - keep);
        ch_proc_state_clear(p);
        p->state = copy;
        p->state_free = free;
        p->state_len = len;
        return copy;
    }
    void *s = realloc(p->state, len);
    if (!s) return NULL;
    if (len > p->state_len) memset((char *)s + p->state_len, 0, len - p->state_len);
    p->state = s;
    p->state_free = free;
    p->state_len = len;
    return s;
}

void ch_proc_state_set(ch_proc *p, void *data, size_t len, void (*free_fn)(void *))
{
    if (data == p->state) {
        p->state_len = len;
        p->state_free = free_fn;
        return;
    }
    ch_proc_state_clear(p);
    p->state = data;
    p->state_len = len;
    p->state_free = free_fn;
}

/* ---- replies and calls -------------------------------------------------------------- */

static struct ch_dispatch *current_call(ch_proc *p, const ch_msg *call)
{
    struct ch_dispatch *d = p->r->cur;
    if (!d || d->msg != call || call->kind != CH_MSG_CALL || d->answered) return NULL;
    return d;
}

int ch_reply(ch_proc *p, const ch_msg *call, const void *data, size_t len)
{
    struct ch_dispatch *d = current_call(p, call);
    if (!d) return -EINVAL;
    if (len > p->r->node->cfg.max_message) return CH_EMSGSIZE;
    d->answered = true;
    ch_reactor_reply(p->r, d->core, d->ref, 0, data, len);
    return 0;
}

#define TOKEN_MAGIC 0x63687265706c79ull /* "chreply" */

int ch_reply_defer(ch_proc *p, const ch_msg *call, ch_reply_token *token)
{
    struct ch_dispatch *d = current_call(p, call);
    if (!d || !token) return -EINVAL;
    d->answered = true;
    token->w[0] = d->core;
    token->w[1] = d->ref;
    token->w[2] = TOKEN_MAGIC;
    return 0;
}

int ch_reply_send(ch_proc *p, const ch_reply_token *token, const void *data, size_t len)
{
    if (!token || token->w[2] != TOKEN_MAGIC || token->w[0] >= p->r->node->cores) return -EINVAL;
    if (len > p->r->node->cfg.max_message) return CH_EMSGSIZE;
    ch_reactor_reply(p->r, (unsigned)token->w[0], token->w[1], 0, data, len);
    return 0;
}

int ch_proc_call(ch_proc *p, const char *id, size_t id_len, const void *req, size_t len,
                 uint32_t timeout_ms, uint64_t ref)
{
    ch_reactor *r = p->r;
    ch_node *n = r->node;
    int rc = ch_id_check(id, &id_len);
    if (rc) return rc;
    if (len > n->cfg.max_message) return CH_EMSGSIZE;
    rc = ch_sup_call(r, CH_TK_CALL_PROC, p, NULL, ref, timeout_ms, id, id_len, req, len);
    if (rc < 0) return rc;
    p->pending_calls++;
    return 0;
}

/* ---- timers ------------------------------------------------------------------------- */

int ch_timer_start(ch_proc *p, uint32_t delay_ms, const void *data, size_t len, uint64_t *timer_id)
{
    ch_reactor *r = p->r;
    if (len > r->node->cfg.max_message) return CH_EMSGSIZE;
    void *copy = NULL;
    if (len) {
        if (!data || !(copy = malloc(len))) return data ? -ENOMEM : -EINVAL;
        memcpy(copy, data, len);
    }
    ch_timer *e;
    uint64_t id = ch_timers_add(&r->timers, ch_now_ns() + (uint64_t)delay_ms * 1000000, &e);
    if (!id) {
        free(copy);
        return -ENOMEM;
    }
    e->kind = CH_TK_PROC;
    e->a = p;
    e->b = copy;
    e->len = (uint32_t)len;
    e->next = p->timers;
    p->timers = (uint32_t)id;
    if (timer_id) *timer_id = id;
    return 0;
}

int ch_timer_cancel(ch_proc *p, uint64_t timer_id)
{
    ch_reactor *r = p->r;
    ch_timer *e = ch_timers_get(&r->timers, timer_id);
    if (!e || e->kind != CH_TK_PROC || e->a != p) return -ENOENT;
    uint32_t *at = &p->timers;
    while (*at != (uint32_t)timer_id)
        at = &r->timers.slots[*at].next;
    *at = e->next;
    free(e->b);
    ch_timers_free(&r->timers, e);
    return 0;
}

/* ---- handover buffer ---------------------------------------------------------------- */

void *ch_buf_reserve(ch_buf *b, size_t len)
{
    if (b->cap - b->len < len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < len) {
            if (cap > SIZE_MAX / 2) return NULL;
            cap *= 2;
        }
        uint8_t *d = realloc(b->data, cap);
        if (!d) return NULL;
        b->data = d;
        b->cap = cap;
    }
    return b->data + b->len;
}

void ch_buf_commit(ch_buf *b, size_t len)
{
    b->len += len;
}

int ch_buf_append(ch_buf *b, const void *data, size_t len)
{
    void *at = ch_buf_reserve(b, len);
    if (!at) return -ENOMEM;
    if (len) memcpy(at, data, len);
    b->len += len;
    return 0;
}
