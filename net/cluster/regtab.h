/*
 * net/cluster/regtab.h - the coordinator's replica of the hub's registry: one row per process id
 * anywhere in the hub, with the spec needed to restart it elsewhere.
 *
 * Owned by the coordinator thread. Open addressing on the id hash (high bits, like the
 * process table), backward-shift deletion. Each member's rows also feed a digest (count
 * and XOR of row hashes) that anti-entropy compares between nodes.
 */
#ifndef CH_NET_CLUSTER_REGTAB_H
#define CH_NET_CLUSTER_REGTAB_H

#include <corehub/node.h>

#include <stddef.h>
#include <stdint.h>

typedef struct ch_regrow {
    uint64_t hash; /* XXH3_64 of the id */
    uint64_t node; /* owner node */
    uint32_t incarnation;
    uint32_t shutdown_ms;
    uint32_t arg_len, meta_len;
    uint16_t core;
    uint8_t restart;
    uint8_t id_len, type_len, tag_len;
    char data[]; /* id NUL type NUL tag NUL arg meta */
} ch_regrow;

static inline const char *ch_regrow_id(const ch_regrow *r)
{
    return r->data;
}
static inline const char *ch_regrow_type(const ch_regrow *r)
{
    return r->data + r->id_len + 1;
}
static inline const char *ch_regrow_tag(const ch_regrow *r)
{
    return ch_regrow_type(r) + r->type_len + 1;
}
static inline const void *ch_regrow_arg(const ch_regrow *r)
{
    return ch_regrow_tag(r) + r->tag_len + 1;
}
static inline const void *ch_regrow_meta(const ch_regrow *r)
{
    return (const char *)ch_regrow_arg(r) + r->arg_len;
}

/* Builds a row (copies every part). NULL on ENOMEM or a part over its limit. */
ch_regrow *ch_regrow_new(uint64_t node, uint16_t core, uint32_t incarnation, const char *id,
                         size_t id_len, const char *type, size_t type_len, const char *tag,
                         size_t tag_len, uint8_t restart, uint32_t shutdown_ms, const void *arg,
                         size_t arg_len, const void *meta, size_t meta_len);
/* A copy of a row (one allocation). NULL on ENOMEM. */
ch_regrow *ch_regrow_dup(const ch_regrow *r);
/* The row's contribution to its owner's digest. */
uint64_t ch_regrow_digest(const ch_regrow *r);
/* A public info (one allocation; free with ch_proc_info_free). */
ch_proc_info *ch_regrow_info(const ch_regrow *r);

typedef struct ch_regtab {
    ch_regrow **slots;
    size_t cap, count;
    uint64_t seed; /* mixed into every slot index, see regtab.c */
} ch_regtab;

int ch_regtab_init(ch_regtab *t);
void ch_regtab_free(ch_regtab *t); /* frees the rows too */
ch_regrow *ch_regtab_find(const ch_regtab *t, uint64_t hash, const char *id, size_t len);
/* Inserts or replaces (the old row is returned through *old, or NULL). Takes the row. */
int ch_regtab_put(ch_regtab *t, ch_regrow *row, ch_regrow **old);
/* Unlinks the row (does not free it). */
void ch_regtab_remove(ch_regtab *t, ch_regrow *row);

#endif
