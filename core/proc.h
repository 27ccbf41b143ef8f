/*
 * core/proc.h - a process as its owner reactor keeps it: spec, state, timers.
 *
 * The spec is one allocation holding the id and every byte a restart or a registry query
 * needs; it is built on the calling thread and handed, with ownership, to the owner core.
 */
#ifndef CH_CORE_PROC_H
#define CH_CORE_PROC_H

#include <corehub/corehub.h>

#include <stdbool.h>

struct ch_reactor;

/* A registered process type. */
typedef struct ch_ptype {
    ch_process_type cb;
    char name[CH_TYPE_NAME_MAX + 1];
} ch_ptype;

typedef struct ch_spec {
    const ch_ptype *type;
    uint64_t hash; /* XXH3_64 of the id */
    uint32_t arg_len;
    uint32_t meta_len;
    uint32_t shutdown_ms;
    uint8_t restart;
    uint8_t id_len;
    uint8_t tag_len;
    char data[]; /* id, NUL, tag, NUL, arg, meta */
} ch_spec;

static inline const char *ch_spec_id(const ch_spec *s)
{
    return s->data;
}
static inline const char *ch_spec_tag(const ch_spec *s)
{
    return s->data + s->id_len + 1;
}
static inline const void *ch_spec_arg(const ch_spec *s)
{
    return s->data + s->id_len + 1 + s->tag_len + 1;
}
static inline const void *ch_spec_meta(const ch_spec *s)
{
    return (const char *)ch_spec_arg(s) + s->arg_len;
}

/* Builds a spec from a public child spec. Returns 0 or a per-child error code. */
int ch_spec_new(const ch_child_spec *cs, const ch_ptype *type, ch_spec **out);

struct ch_proc {
    uint64_t hash; /* = spec->hash, kept here for the table's probe */
    ch_spec *spec;
    struct ch_reactor *r;
    void *state;
    void (*state_free)(void *);
    size_t state_len;
    uint32_t incarnation;
    uint32_t timers;         /* first timer entry of this process, CH_TIMER_NONE if none */
    uint32_t pending_calls;  /* calls this process made that await a reply */
    uint32_t audit;          /* the registry audit that last saw it (net/cluster/coord_audit.c) */
    struct ch_mig_proc *mig; /* NULL unless migrating: opaque here (migration/ho_int.h) */
};

/* Frees the state with its free function. */
void ch_proc_state_clear(ch_proc *p);

/* Validates an id given with the public convention (*len CH_ID_CSTR: NUL-terminated, then
 * measured into *len; 0 is refused). */
int ch_id_check(const char *id, size_t *len);
uint64_t ch_id_hash(const char *id, size_t len);

/* The handover buffer (prepare_handover's output): a growable byte block. */
struct ch_buf {
    uint8_t *data;
    size_t len, cap;
};

#endif
