/*
 * net/wire.h - bounds-checked little-endian encoding of wire messages.
 *
 * Writer: a growable buffer with a sticky error. Every put returns 0 or the first error
 * the buffer met (-ENOMEM, -EINVAL for a string or blob too long for its length prefix,
 * -EMSGSIZE for an oversize frame); after an error puts do nothing, so an encoder may
 * check once at the end.
 *
 * Reader: a cursor over a const span with a sticky error flag. A get that would read past
 * the end, or after an earlier error, sets the flag and returns zeros (an empty span for
 * the variable-size gets), so a decoder never reads out of bounds whatever the input and
 * checks ch_rbuf_ok() (or ch_rbuf_done(), which also refuses trailing bytes) once.
 */
#ifndef CH_NET_WIRE_H
#define CH_NET_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct ch_wbuf {
    uint8_t *data; /* malloc'd, owned by the buffer */
    size_t len;    /* bytes written */
    size_t cap;    /* bytes allocated */
    int err;       /* 0 or the first error (negative), sticky */
} ch_wbuf;

void ch_wbuf_init(ch_wbuf *w);
void ch_wbuf_free(ch_wbuf *w);
/* Empties the buffer and clears its error; keeps the memory. */
void ch_wbuf_reset(ch_wbuf *w);
/* Makes room for n more bytes (0 or the sticky error). */
int ch_wbuf_reserve(ch_wbuf *w, size_t n);
/* Appends n bytes for the caller to fill; NULL on error. The pointer is valid until the
 * next put. */
uint8_t *ch_wbuf_put_space(ch_wbuf *w, size_t n);
/* Sets the sticky error (when none is set yet) and returns the buffer's error. */
int ch_wbuf_fail(ch_wbuf *w, int err);

int ch_wbuf_put_u8(ch_wbuf *w, uint8_t v);
int ch_wbuf_put_u16(ch_wbuf *w, uint16_t v);
int ch_wbuf_put_u32(ch_wbuf *w, uint32_t v);
int ch_wbuf_put_u64(ch_wbuf *w, uint64_t v);
int ch_wbuf_put_bytes(ch_wbuf *w, const void *p, size_t n);
/* u8 length + bytes; -EINVAL when n > 255. */
int ch_wbuf_put_str8(ch_wbuf *w, const void *s, size_t n);
/* u32 length + bytes; -EINVAL when n > UINT32_MAX. */
int ch_wbuf_put_blob32(ch_wbuf *w, const void *p, size_t n);

/* A view into a reader's input: valid as long as that input is. */
typedef struct ch_span {
    const uint8_t *p; /* never NULL */
    size_t len;
} ch_span;

typedef struct ch_rbuf {
    const uint8_t *p;
    size_t len;
    size_t pos;
    bool err;
} ch_rbuf;

void ch_rbuf_init(ch_rbuf *r, const void *p, size_t len);
/* No error so far. */
bool ch_rbuf_ok(const ch_rbuf *r);
/* No error and every byte consumed. */
bool ch_rbuf_done(const ch_rbuf *r);
/* Bytes left (0 after an error). */
size_t ch_rbuf_left(const ch_rbuf *r);
/* Marks the input malformed (a decoder's own check failed). */
void ch_rbuf_fail(ch_rbuf *r);

uint8_t ch_rbuf_get_u8(ch_rbuf *r);
uint16_t ch_rbuf_get_u16(ch_rbuf *r);
uint32_t ch_rbuf_get_u32(ch_rbuf *r);
uint64_t ch_rbuf_get_u64(ch_rbuf *r);
/* The next n bytes, or an empty span on error. */
ch_span ch_rbuf_get_bytes(ch_rbuf *r, size_t n);
/* Copies the next n bytes into dst (zeros on error). */
void ch_rbuf_copy(ch_rbuf *r, void *dst, size_t n);
ch_span ch_rbuf_get_str8(ch_rbuf *r);
ch_span ch_rbuf_get_blob32(ch_rbuf *r);
/* A str8 copied into dst as a C string: fails (dst = "") when it does not fit in cap - 1
 * bytes or holds a byte outside printable ASCII (0x20..0x7e), so that it can go into a
 * log line as is. Returns its length. */
size_t ch_rbuf_get_cstr8(ch_rbuf *r, char *dst, size_t cap);

#endif
