/*
 * net/cluster/regtab.c - registry replica table (see regtab.h).
 */
#include "regtab.h"

#include "core/ptable.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

ch_regrow *ch_regrow_new(uint64_t node, uint16_t core, uint32_t incarnation, const char *id,
                         size_t id_len, const char *type, size_t type_len, const char *tag,
                         size_t tag_len, uint8_t restart, uint32_t shutdown_ms, const void *arg,
                         size_t arg_len, const void *meta, size_t meta_len)
{
    if (id_len == 0 || id_len > CH_ID_MAX || type_len > CH_TYPE_NAME_MAX || tag_len > CH_TAG_MAX ||
        meta_len > CH_META_MAX || arg_len > UINT32_MAX / 2)
        return NULL;
    ch_regrow *r = malloc(sizeof(*r) + id_len + type_len + tag_len + 3 + arg_len + meta_len);
    if (!r) return NULL;
    r->hash = XXH3_64bits(id, id_len);
    r->node = node;
    r->core = core;
    r->incarnation = incarnation;
    r->restart = restart;
    r->shutdown_ms = shutdown_ms;
    r->id_len = (uint8_t)id_len;
    r->type_len = (uint8_t)type_len;
    r->tag_len = (uint8_t)tag_len;
    r->arg_len = (uint32_t)arg_len;
    r->meta_len = (uint32_t)meta_len;
    char *at = r->data;
    memcpy(at, id, id_len);
    at[id_len] = '\0';
    at += id_len + 1;
    if (type_len) memcpy(at, type, type_len);
    at[type_len] = '\0';
    at += type_len + 1;
    if (tag_len) memcpy(at, tag, tag_len);
    at[tag_len] = '\0';
    at += tag_len + 1;
    if (arg_len) memcpy(at, arg, arg_len);
    if (meta_len) memcpy(at + arg_len, meta, meta_len);
    return r;
}

static size_t row_size(const ch_regrow *r)
{
    return sizeof(*r) + r->id_len + r->type_len + r->tag_len + 3 + r->arg_len + r->meta_len;
}

ch_regrow *ch_regrow_dup(const ch_regrow *r)
{
    ch_regrow *copy = malloc(row_size(r));
    if (copy) memcpy(copy, r, row_size(r));
    return copy;
}

uint64_t ch_regrow_digest(const ch_regrow *r)
{
    return r->hash ^ ((uint64_t)r->incarnation * 0x9E3779B97F4A7C15ull) ^ r->core;
}

ch_proc_info *ch_regrow_info(const ch_regrow *r)
{
    size_t size =
        sizeof(ch_proc_info) + r->id_len + r->type_len + r->tag_len + 3 + r->arg_len + r->meta_len;
    ch_proc_info *info = malloc(size);
    if (!info) return NULL;
    char *at = (char *)(info + 1);
    size_t n = r->id_len + 1u + r->type_len + 1u + r->tag_len + 1u;
    memcpy(at, r->data, n + r->arg_len + r->meta_len);
    info->id = at;
    info->id_len = r->id_len;
    info->type = at + r->id_len + 1;
    info->tag = info->type + r->type_len + 1;
    info->arg = r->arg_len ? at + n : NULL;
    info->arg_len = r->arg_len;
    info->meta = r->meta_len ? at + n + r->arg_len : NULL;
    info->meta_len = r->meta_len;
    info->restart = (ch_restart)r->restart;
    info->shutdown_ms = r->shutdown_ms;
    info->incarnation = r->incarnation;
    info->core = r->core;
    info->node = r->node;
    return info;
}

static size_t slot_of(const ch_regtab *t, uint64_t hash)
{
    unsigned bits = (unsigned)__builtin_ctzll(t->cap);
    return (size_t)(((hash ^ t->seed) * 0x9E3779B97F4A7C15ull) >> (64 - bits));
}

int ch_regtab_init(ch_regtab *t)
{
    t->cap = 1024;
    t->count = 0;
    t->seed = ch_table_seed(t);
    t->slots = calloc(t->cap, sizeof(*t->slots));
    return t->slots ? 0 : -ENOMEM;
}

void ch_regtab_free(ch_regtab *t)
{
    for (size_t i = 0; t->slots && i < t->cap; i++)
        free(t->slots[i]);
    free(t->slots);
    t->slots = NULL;
}

ch_regrow *ch_regtab_find(const ch_regtab *t, uint64_t hash, const char *id, size_t len)
{
    for (size_t i = slot_of(t, hash);; i = (i + 1) & (t->cap - 1)) {
        ch_regrow *r = t->slots[i];
        if (!r) return NULL;
        if (r->hash == hash && r->id_len == len && memcmp(r->data, id, len) == 0) return r;
    }
}

static void place(ch_regrow **slots, size_t cap, size_t i, ch_regrow *r)
{
    while (slots[i])
        i = (i + 1) & (cap - 1);
    slots[i] = r;
}

static int grow(ch_regtab *t)
{
    ch_regtab b = {.cap = t->cap * 2, .count = t->count, .seed = t->seed};
    b.slots = calloc(b.cap, sizeof(*b.slots));
    if (!b.slots) return -ENOMEM;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i]) place(b.slots, b.cap, slot_of(&b, t->slots[i]->hash), t->slots[i]);
    free(t->slots);
    *t = b;
    return 0;
}

int ch_regtab_put(ch_regtab *t, ch_regrow *row, ch_regrow **old)
{
    *old = NULL;
    size_t mask = t->cap - 1;
    for (size_t i = slot_of(t, row->hash); t->slots[i]; i = (i + 1) & mask) {
        ch_regrow *r = t->slots[i];
        if (r->hash == row->hash && r->id_len == row->id_len &&
            memcmp(r->data, row->data, r->id_len) == 0) {
            *old = r;
            t->slots[i] = row;
            return 0;
        }
    }
    if ((t->count + 1) * 4 > t->cap * 3 && grow(t) < 0) return -ENOMEM;
    place(t->slots, t->cap, slot_of(t, row->hash), row);
    t->count++;
    return 0;
}

void ch_regtab_remove(ch_regtab *t, ch_regrow *row)
{
    size_t mask = t->cap - 1, i = slot_of(t, row->hash);
    while (t->slots[i] != row) {
        if (!t->slots[i]) return;
        i = (i + 1) & mask;
    }
    for (size_t j = (i + 1) & mask; t->slots[j]; j = (j + 1) & mask) {
        size_t home = slot_of(t, t->slots[j]->hash);
        if (((j - home) & mask) >= ((j - i) & mask)) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i] = NULL;
    t->count--;
}
