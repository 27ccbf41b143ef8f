/*
 * net/wire.c - the little-endian writer and reader every wire message goes through.
 *
 * Why a module of its own: every frame payload that corehub decodes comes from a peer that
 * may be broken or hostile. Funnelling every read through ch_rbuf, which checks each access
 * against the span and turns any overrun into a sticky error, means a decoder written later
 * cannot read out of bounds even if it forgets a length check; at worst it sees zeros and
 * the message is refused. The writer mirrors it with a sticky error so that encoders stay
 * straight-line code with one check at the end.
 *
 * Byte order is explicit (shifts), so the encoding does not depend on the host.
 */
#include "net/wire.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t ch_wire_empty[1];

/* --- writer ---------------------------------------------------------------------------- */

void ch_wbuf_init(ch_wbuf *w)
{
    *w = (ch_wbuf){0};
}

void ch_wbuf_free(ch_wbuf *w)
{
    free(w->data);
    *w = (ch_wbuf){0};
}

void ch_wbuf_reset(ch_wbuf *w)
{
    w->len = 0;
    w->err = 0;
}

int ch_wbuf_fail(ch_wbuf *w, int err)
{
    if (w->err == 0) w->err = err;
    return w->err;
}

int ch_wbuf_reserve(ch_wbuf *w, size_t n)
{
    if (w->err) return w->err;
    if (n <= w->cap - w->len) return 0;
    if (n > SIZE_MAX / 2 - w->len) return ch_wbuf_fail(w, -ENOMEM);
    size_t cap = w->cap ? w->cap : 64;
    while (cap < w->len + n)
        cap *= 2;
    uint8_t *data = realloc(w->data, cap);
    if (!data) return ch_wbuf_fail(w, -ENOMEM);
    w->data = data;
    w->cap = cap;
    return 0;
}

uint8_t *ch_wbuf_put_space(ch_wbuf *w, size_t n)
{
    if (ch_wbuf_reserve(w, n)) return NULL;
    uint8_t *p = w->data + w->len;
    w->len += n;
    return p;
}

/* Appends the n low bytes of v, least significant first. */
static int ch_wbuf_put_le(ch_wbuf *w, uint64_t v, unsigned n)
{
    uint8_t *p = ch_wbuf_put_space(w, n);
    if (!p) return w->err;
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
    return 0;
}

int ch_wbuf_put_u8(ch_wbuf *w, uint8_t v)
{
    return ch_wbuf_put_le(w, v, 1);
}

int ch_wbuf_put_u16(ch_wbuf *w, uint16_t v)
{
    return ch_wbuf_put_le(w, v, 2);
}

int ch_wbuf_put_u32(ch_wbuf *w, uint32_t v)
{
    return ch_wbuf_put_le(w, v, 4);
}

int ch_wbuf_put_u64(ch_wbuf *w, uint64_t v)
{
    return ch_wbuf_put_le(w, v, 8);
}

int ch_wbuf_put_bytes(ch_wbuf *w, const void *p, size_t n)
{
    uint8_t *dst = ch_wbuf_put_space(w, n);
    if (!dst) return w->err;
    if (n) memcpy(dst, p, n);
    return 0;
}

int ch_wbuf_put_str8(ch_wbuf *w, const void *s, size_t n)
{
    if (n > UINT8_MAX) return ch_wbuf_fail(w, -EINVAL);
    ch_wbuf_put_u8(w, (uint8_t)n);
    return ch_wbuf_put_bytes(w, s, n);
}

int ch_wbuf_put_blob32(ch_wbuf *w, const void *p, size_t n)
{
    if (n > UINT32_MAX) return ch_wbuf_fail(w, -EINVAL);
    ch_wbuf_put_u32(w, (uint32_t)n);
    return ch_wbuf_put_bytes(w, p, n);
}

/* --- reader ---------------------------------------------------------------------------- */

void ch_rbuf_init(ch_rbuf *r, const void *p, size_t len)
{
    *r = (ch_rbuf){.p = p ? p : ch_wire_empty, .len = p ? len : 0};
}

bool ch_rbuf_ok(const ch_rbuf *r)
{
    return !r->err;
}

bool ch_rbuf_done(const ch_rbuf *r)
{
    return !r->err && r->pos == r->len;
}

size_t ch_rbuf_left(const ch_rbuf *r)
{
    return r->err ? 0 : r->len - r->pos;
}

void ch_rbuf_fail(ch_rbuf *r)
{
    r->err = true;
}

/* The next n bytes, or NULL (and the error set) when fewer are left. */
static const uint8_t *ch_rbuf_take(ch_rbuf *r, size_t n)
{
    if (r->err || n > r->len - r->pos) {
        r->err = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->pos;
    r->pos += n;
    return p;
}

static uint64_t ch_rbuf_get_le(ch_rbuf *r, unsigned n)
{
    const uint8_t *p = ch_rbuf_take(r, n);
    uint64_t v = 0;
    if (!p) return 0;
    for (unsigned i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

uint8_t ch_rbuf_get_u8(ch_rbuf *r)
{
    return (uint8_t)ch_rbuf_get_le(r, 1);
}

uint16_t ch_rbuf_get_u16(ch_rbuf *r)
{
    return (uint16_t)ch_rbuf_get_le(r, 2);
}

uint32_t ch_rbuf_get_u32(ch_rbuf *r)
{
    return (uint32_t)ch_rbuf_get_le(r, 4);
}

uint64_t ch_rbuf_get_u64(ch_rbuf *r)
{
    return ch_rbuf_get_le(r, 8);
}

ch_span ch_rbuf_get_bytes(ch_rbuf *r, size_t n)
{
    const uint8_t *p = ch_rbuf_take(r, n);
    if (!p) return (ch_span){ch_wire_empty, 0};
    return (ch_span){p, n};
}

void ch_rbuf_copy(ch_rbuf *r, void *dst, size_t n)
{
    const uint8_t *p = ch_rbuf_take(r, n);
    if (n == 0) return;
    if (p)
        memcpy(dst, p, n);
    else
        memset(dst, 0, n);
}

ch_span ch_rbuf_get_str8(ch_rbuf *r)
{
    size_t n = ch_rbuf_get_u8(r);
    return ch_rbuf_get_bytes(r, n);
}

ch_span ch_rbuf_get_blob32(ch_rbuf *r)
{
    size_t n = ch_rbuf_get_u32(r);
    return ch_rbuf_get_bytes(r, n);
}

static bool ch_wire_printable(ch_span s)
{
    for (size_t i = 0; i < s.len; i++)
        if (s.p[i] < 0x20 || s.p[i] > 0x7e) return false;
    return true;
}

size_t ch_rbuf_get_cstr8(ch_rbuf *r, char *dst, size_t cap)
{
    ch_span s = ch_rbuf_get_str8(r);
    if (cap == 0) {
        r->err = true;
        return 0;
    }
    dst[0] = '\0';
    if (r->err || s.len >= cap || !ch_wire_printable(s)) {
        r->err = true;
        return 0;
    }
    memcpy(dst, s.p, s.len);
    dst[s.len] = '\0';
    return s.len;
}
