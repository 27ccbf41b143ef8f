/*
 * migration/hbatch.c - building and reading handover batches (layout in hbatch.h).
 *
 * Why this shape. The handover stream is bounded by copies and compression (design §6), so
 * a batch is one flat buffer that the codec takes as is, and a state travels with at most
 * one copy on each side: prepare_handover writes it straight into the batch through a
 * ch_buf view (proc_begin/proc_end), and the receiver copies it out of an aligned slot.
 * Alignment to 32 bytes is a property of offsets, so it survives the trip: a receiver that
 * decompresses into an aligned buffer sees every state aligned.
 *
 * The view works with core's ch_buf as it is: its data is the batch's own malloc'd base
 * and its len the state's offset, so ch_buf_reserve lands in place and, when a state
 * outgrows the buffer, reallocates the whole batch (earlier records included) instead of
 * writing outside it. The batch takes the buffer back in proc_end.
 *
 * The reader trusts nothing: each record's lengths are checked against the record's
 * rec_len and rec_len against the buffer's end before a byte of the record is used, and
 * padding and reserved fields must be zero, so that one input has one meaning.
 */
#include "migration/hbatch.h"

#include "core/proc.h" /* struct ch_buf */
#include "migration/le.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define BUF_ALIGN 64u /* buffer base: a cache line, which is also 32-byte aligned */
#define PROC_HDR  32u
#define MSG_HDR   32u
#define END_HDR   8u

static inline size_t align32(size_t n)
{
    return (n + (CH_HBATCH_ALIGN - 1)) & ~(size_t)(CH_HBATCH_ALIGN - 1);
}

static uint8_t *buf_alloc(size_t cap)
{
    return aligned_alloc(BUF_ALIGN, (cap + BUF_ALIGN - 1) & ~(size_t)(BUF_ALIGN - 1));
}

/* ---- life cycle ---------------------------------------------------------------------- */

int ch_hbatch_init(ch_hbatch *b, size_t capacity, size_t limit)
{
    memset(b, 0, sizeof(*b));
    if (capacity < CH_HBATCH_CAP_MIN || capacity > CH_HBATCH_CAP_MAX) return -EINVAL;
    capacity &= ~(size_t)(CH_HBATCH_ALIGN - 1);
    if (!limit) limit = CH_HBATCH_LIMIT_DEFAULT;
    if (limit < capacity || limit > CH_HBATCH_LIMIT_MAX) return -EINVAL;
    b->buf = buf_alloc(capacity);
    if (!b->buf) return -ENOMEM;
    b->cap = b->capacity = capacity;
    b->limit = limit & ~(size_t)(CH_HBATCH_ALIGN - 1);
    return 0;
}

/* Takes the buffer back from an open view, which may have moved it. */
static void view_close(ch_hbatch *b)
{
    ch_buf *v = b->view;
    b->buf = v->data;
    b->cap = v->cap;
    v->data = NULL;
    v->len = v->cap = 0;
    b->view = NULL;
}

void ch_hbatch_free(ch_hbatch *b)
{
    if (b->view) view_close(b);
    free(b->buf);
    memset(b, 0, sizeof(*b));
}

void ch_hbatch_reset(ch_hbatch *b)
{
    if (b->view) view_close(b);
    b->len = 0;
    b->count = 0;
    bool aligned = ((uintptr_t)b->buf & (BUF_ALIGN - 1)) == 0;
    if (b->cap == b->capacity && aligned) return;
    uint8_t *fresh = buf_alloc(b->capacity);
    if (!fresh) return; /* keep the big one: still correct, given back at a later reset */
    free(b->buf);
    b->buf = fresh;
    b->cap = b->capacity;
}

uint8_t *ch_hbatch_take(ch_hbatch *b, uint8_t *fresh, size_t *len)
{
    if (b->view) return NULL;
    if (!fresh && !(fresh = buf_alloc(b->capacity))) return NULL;
    uint8_t *full = b->buf;
    *len = b->len;
    b->buf = fresh;
    b->cap = b->capacity;
    b->len = 0;
    b->count = 0;
    return full;
}

/* ---- adding records ------------------------------------------------------------------ */

/* An empty batch takes a record larger than its room: a buffer of its own size. */
static int grow_empty(ch_hbatch *b, size_t size)
{
    if (size > b->limit) return -EMSGSIZE;
    if (size <= b->cap) return 0;
    uint8_t *big = buf_alloc(size);
    if (!big) return -ENOMEM;
    free(b->buf);
    b->buf = big;
    b->cap = size;
    return 0;
}

/* Room for a record of `size` bytes (a multiple of 32) at the end of the batch. */
static int make_room(ch_hbatch *b, size_t size)
{
    if (b->view) return -EBUSY;
    if (b->len + size <= b->capacity) return 0;
    if (b->count) return -ENOSPC;
    return grow_empty(b, size);
}

static bool proc_valid(const ch_hbatch_proc *p)
{
    if (p->id_len < 1 || p->id_len > CH_ID_MAX || !p->id) return false;
    if (p->type_len < 1 || p->type_len > CH_TYPE_NAME_MAX || !p->type) return false;
    if (p->tag_len > CH_TAG_MAX || (p->tag_len && !p->tag)) return false;
    if (p->meta_len > CH_META_MAX || (p->meta_len && !p->meta)) return false;
    if (p->arg_len > CH_HBATCH_LIMIT_MAX || (p->arg_len && !p->arg)) return false;
    return p->restart <= CH_TEMPORARY && !(p->flags & ~CH_HPROC_FLAGS);
}

/* Bytes from a PROC record's start to its state slot. */
static size_t proc_slot(const ch_hbatch_proc *p)
{
    return align32(PROC_HDR + p->id_len + p->type_len + p->tag_len + p->arg_len + p->meta_len);
}

/* Zeroes the 32 bytes that end at a state slot, before the variable fields that end
 * inside them are written: one fixed-size store instead of a variable-length memset of
 * the padding. Every slot is at least 64 bytes into its record, past the fixed header. */
static inline void zero_pad_before(uint8_t *slot)
{
    memset(slot - CH_HBATCH_ALIGN, 0, CH_HBATCH_ALIGN);
}

static uint8_t *put_var(uint8_t *at, const void *src, size_t n)
{
    if (n) memcpy(at, src, n);
    return at + n;
}

/* Writes a PROC record's header, variable fields and padding up to its state slot. The
 * lengths of the state (and the record) are written once the state is known. */
static void proc_write_head(uint8_t *rec, const ch_hbatch_proc *p, size_t slot)
{
    rec[0] = CH_HREC_PROC;
    rec[1] = (uint8_t)p->id_len;
    rec[2] = (uint8_t)p->type_len;
    rec[3] = (uint8_t)p->tag_len;
    rec[8] = p->restart;
    rec[9] = p->flags;
    ch_le_put16(rec + 10, 0);
    ch_le_put32(rec + 12, p->shutdown_ms);
    ch_le_put32(rec + 16, p->incarnation);
    ch_le_put32(rec + 20, (uint32_t)p->arg_len);
    ch_le_put32(rec + 24, (uint32_t)p->meta_len);
    zero_pad_before(rec + slot);
    uint8_t *at = rec + PROC_HDR;
    at = put_var(at, p->id, p->id_len);
    at = put_var(at, p->type, p->type_len);
    at = put_var(at, p->tag, p->tag_len);
    at = put_var(at, p->arg, p->arg_len);
    put_var(at, p->meta, p->meta_len);
}

/* Fills in a record's lengths and trailing padding and adds it to the batch. */
static void commit(ch_hbatch *b, size_t rec_len, size_t len_field, uint32_t data_len)
{
    uint8_t *rec = b->buf + b->len;
    size_t end = align32(rec_len);
    ch_le_put32(rec + 4, (uint32_t)rec_len);
    if (len_field) ch_le_put32(rec + len_field, data_len);
    /* Trailing padding: a fixed-size store when the buffer has room past the record (the
     * bytes past its end are free space), else exactly the padding. */
    if (b->len + rec_len + CH_HBATCH_ALIGN <= b->cap)
        memset(rec + rec_len, 0, CH_HBATCH_ALIGN);
    else
        memset(rec + rec_len, 0, end - rec_len);
    b->len += end;
    b->count++;
}

int ch_hbatch_put_proc(ch_hbatch *b, const ch_hbatch_proc *p, const void *state, size_t len)
{
    if (!proc_valid(p) || (len && !state)) return -EINVAL;
    size_t slot = proc_slot(p);
    if (len > CH_HBATCH_LIMIT_MAX || slot > CH_HBATCH_LIMIT_MAX) return -EMSGSIZE;
    int rc = make_room(b, align32(slot + len));
    if (rc < 0) return rc;
    uint8_t *rec = b->buf + b->len;
    proc_write_head(rec, p, slot);
    if (len) memcpy(rec + slot, state, len);
    commit(b, slot + len, 28, (uint32_t)len);
    return 0;
}

int ch_hbatch_put_msg(ch_hbatch *b, const ch_hbatch_msg *m, const void *payload, size_t len)
{
    if (m->id_len < 1 || m->id_len > CH_ID_MAX || !m->id || (len && !payload)) return -EINVAL;
    if (m->kind != CH_MSG_CAST && m->kind != CH_MSG_CALL) return -EINVAL;
    if (m->kind == CH_MSG_CAST && (m->reply_node || m->reply_core || m->reply_ref)) return -EINVAL;
    if (len > CH_HBATCH_LIMIT_MAX) return -EMSGSIZE;
    size_t slot = align32(MSG_HDR + m->id_len);
    int rc = make_room(b, align32(slot + len));
    if (rc < 0) return rc;
    uint8_t *rec = b->buf + b->len;
    rec[0] = CH_HREC_MSG;
    rec[1] = (uint8_t)m->id_len;
    rec[2] = m->kind;
    rec[3] = 0;
    ch_le_put64(rec + 8, m->reply_node);
    ch_le_put64(rec + 16, m->reply_ref);
    ch_le_put16(rec + 24, m->reply_core);
    ch_le_put16(rec + 26, 0);
    zero_pad_before(rec + slot);
    memcpy(rec + MSG_HDR, m->id, m->id_len);
    if (len) memcpy(rec + slot, payload, len);
    commit(b, slot + len, 28, (uint32_t)len);
    return 0;
}

int ch_hbatch_put_end(ch_hbatch *b, const char *id, size_t id_len)
{
    if (id_len < 1 || id_len > CH_ID_MAX || !id) return -EINVAL;
    int rc = make_room(b, align32(END_HDR + id_len));
    if (rc < 0) return rc;
    uint8_t *rec = b->buf + b->len;
    rec[0] = CH_HREC_END;
    rec[1] = (uint8_t)id_len;
    ch_le_put16(rec + 2, 0);
    memcpy(rec + END_HDR, id, id_len);
    commit(b, END_HDR + id_len, 0, 0);
    return 0;
}

/* ---- a state written in place -------------------------------------------------------- */

int ch_hbatch_proc_begin(ch_hbatch *b, const ch_hbatch_proc *p, size_t state_hint, ch_buf *view)
{
    if (!proc_valid(p)) return -EINVAL;
    size_t slot = proc_slot(p);
    if (state_hint > CH_HBATCH_LIMIT_MAX || slot > CH_HBATCH_LIMIT_MAX) return -EMSGSIZE;
    int rc = make_room(b, align32(slot + state_hint));
    if (rc < 0) return rc;
    proc_write_head(b->buf + b->len, p, slot);
    b->open_slot = b->len + slot;
    view->data = b->buf;
    view->len = b->open_slot;
    view->cap = b->cap;
    b->view = view;
    return 0;
}

int ch_hbatch_proc_end(ch_hbatch *b)
{
    if (!b->view) return -EINVAL;
    size_t end = b->view->len;
    view_close(b);
    if (end < b->open_slot) return -EINVAL; /* the view was rewound: not ch_buf's doing */
    size_t state_len = end - b->open_slot;
    size_t rec_len = end - b->len;
    /* The batch's capacities are multiples of 32 and ch_buf_reserve doubles them, so the
     * trailing padding always fits; the check keeps that an assumption we verify. */
    if (align32(end) > b->cap) return -EINVAL;
    if (state_len > CH_HBATCH_LIMIT_MAX || align32(rec_len) > b->limit) return -EMSGSIZE;
    commit(b, rec_len, 28, (uint32_t)state_len);
    return 0;
}

void ch_hbatch_proc_abort(ch_hbatch *b)
{
    if (b->view) view_close(b);
}

/* ---- reading ------------------------------------------------------------------------- */

void ch_hbatch_reader_init(ch_hbatch_reader *r, const void *buf, size_t len)
{
    r->buf = buf;
    r->len = buf ? len : 0;
    r->pos = 0;
    r->err = false;
}

/* n < 32 bytes of padding at p are zero. */
static inline bool pad_zero(const uint8_t *p, size_t n)
{
    static const uint8_t zeros[CH_HBATCH_ALIGN];
    return n == 0 || memcmp(p, zeros, n) == 0;
}

/* A PROC record of rec_len bytes (already within the buffer). */
static bool read_proc(const uint8_t *p, size_t rec_len, ch_hbatch_rec *rec)
{
    if (rec_len < PROC_HDR || (p[9] & ~CH_HPROC_FLAGS) || ch_le_get16(p + 10)) return false;
    ch_hbatch_proc *h = &rec->proc;
    h->id_len = p[1];
    h->type_len = p[2];
    h->tag_len = p[3];
    h->restart = p[8];
    h->flags = p[9];
    h->shutdown_ms = ch_le_get32(p + 12);
    h->incarnation = ch_le_get32(p + 16);
    h->arg_len = ch_le_get32(p + 20);
    h->meta_len = ch_le_get32(p + 24);
    rec->len = ch_le_get32(p + 28);
    if (!h->id_len || !h->type_len || h->type_len > CH_TYPE_NAME_MAX) return false;
    if (h->tag_len > CH_TAG_MAX || h->meta_len > CH_META_MAX || h->restart > CH_TEMPORARY)
        return false;
    /* u32 + u32 + small fields: no overflow in 64 bits, and the slot must fit rec_len. */
    uint64_t vars =
        (uint64_t)PROC_HDR + h->id_len + h->type_len + h->tag_len + h->arg_len + h->meta_len;
    uint64_t slot = (vars + (CH_HBATCH_ALIGN - 1)) & ~(uint64_t)(CH_HBATCH_ALIGN - 1);
    if (slot + rec->len != rec_len || !pad_zero(p + vars, (size_t)(slot - vars))) return false;
    h->id = (const char *)p + PROC_HDR;
    h->type = h->id + h->id_len;
    h->tag = h->type + h->type_len;
    h->arg = h->tag + h->tag_len;
    h->meta = (const uint8_t *)h->arg + h->arg_len;
    rec->id = h->id;
    rec->id_len = h->id_len;
    rec->data = p + slot;
    return true;
}

static bool read_msg(const uint8_t *p, size_t rec_len, ch_hbatch_rec *rec)
{
    if (rec_len < MSG_HDR || p[3] || ch_le_get16(p + 26)) return false;
    ch_hbatch_msg *m = &rec->msg;
    m->id_len = p[1];
    m->kind = p[2];
    m->reply_node = ch_le_get64(p + 8);
    m->reply_ref = ch_le_get64(p + 16);
    m->reply_core = ch_le_get16(p + 24);
    rec->len = ch_le_get32(p + 28);
    if (!m->id_len || (m->kind != CH_MSG_CAST && m->kind != CH_MSG_CALL)) return false;
    if (m->kind == CH_MSG_CAST && (m->reply_node || m->reply_ref || m->reply_core)) return false;
    size_t slot = align32(MSG_HDR + m->id_len);
    if ((uint64_t)slot + rec->len != rec_len) return false;
    if (!pad_zero(p + MSG_HDR + m->id_len, slot - MSG_HDR - m->id_len)) return false;
    m->id = (const char *)p + MSG_HDR;
    rec->id = m->id;
    rec->id_len = m->id_len;
    rec->data = p + slot;
    return true;
}

static bool read_end(const uint8_t *p, size_t rec_len, ch_hbatch_rec *rec)
{
    if (rec_len < END_HDR || ch_le_get16(p + 2)) return false;
    rec->id_len = p[1];
    if (!rec->id_len || rec_len != END_HDR + rec->id_len) return false;
    rec->id = (const char *)p + END_HDR;
    rec->data = NULL;
    rec->len = 0;
    return true;
}

static int read_fail(ch_hbatch_reader *r)
{
    r->err = true;
    return -EBADMSG;
}

int ch_hbatch_read(ch_hbatch_reader *r, ch_hbatch_rec *rec)
{
    if (r->err) return -EBADMSG;
    if (r->pos == r->len) return 0;
    const uint8_t *p = r->buf + r->pos;
    size_t left = r->len - r->pos;
    if (left < END_HDR) return read_fail(r);
    size_t rec_len = ch_le_get32(p + 4);
    if (rec_len > left || align32(rec_len) > left) return read_fail(r);
    rec->kind = (ch_hbatch_kind)p[0];
    bool ok = false;
    if (p[0] == CH_HREC_PROC)
        ok = read_proc(p, rec_len, rec);
    else if (p[0] == CH_HREC_MSG)
        ok = read_msg(p, rec_len, rec);
    else if (p[0] == CH_HREC_END)
        ok = read_end(p, rec_len, rec);
    if (!ok || !pad_zero(p + rec_len, align32(rec_len) - rec_len)) return read_fail(r);
    r->pos += align32(rec_len);
    return 1;
}

int ch_hbatch_validate(const void *buf, size_t len, uint32_t *count)
{
    ch_hbatch_reader r;
    ch_hbatch_rec rec;
    uint32_t n = 0;
    int rc;
    ch_hbatch_reader_init(&r, buf, len);
    while ((rc = ch_hbatch_read(&r, &rec)) > 0)
        n++;
    if (rc < 0) return rc;
    if (count) *count = n;
    return 0;
}
