/*
 * tools/resp.c - RESP2 requests and replies (see resp.h).
 *
 * The parser remembers how far it got into an incomplete command, as offsets from the
 * command's start (the server may move its buffer between calls): a command that arrives
 * in pieces costs one look at each byte of its headers, however it is cut.
 */
#include "resp.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HEADER_MAX 32 /* "*<count>\r\n" or "$<len>\r\n" */

bool resp_to_i64(const void *p, size_t len, int64_t *out)
{
    const char *s = p;
    bool neg = len > 0 && s[0] == '-';
    size_t i = neg ? 1 : 0;
    if (i == len || len - i > 19) return false;
    if (s[i] == '0' && (len - i > 1 || neg)) return false; /* "0" only; no "-0", "007" */
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (v > (limit - d) / 10) return false;
        v = v * 10 + d;
    }
    *out = (int64_t)(neg ? (uint64_t)0 - v : v); /* two's complement by hand */
    return true;
}

bool resp_is(const resp_arg *arg, const char *s)
{
    size_t n = strlen(s);
    return arg->len == n && strncasecmp((const char *)arg->p, s, n) == 0;
}

/* ---- parsing ---------------------------------------------------------------------------- */

void resp_parser_init(resp_parser *ps)
{
    memset(ps, 0, sizeof(*ps));
    ps->count = -1;
}

void resp_parser_free(resp_parser *ps)
{
    free(ps->v);
    free(ps->off);
    resp_parser_init(ps);
}

static void restart(resp_parser *ps)
{
    ps->pos = 0;
    ps->count = -1;
    ps->total = 0;
}

static int push_arg(resp_parser *ps, size_t off, size_t len)
{
    if (ps->n == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 16;
        resp_arg *v = realloc(ps->v, cap * sizeof(*v));
        if (!v) return -ENOMEM;
        ps->v = v;
        ps->cap = cap;
    }
    if (ps->n == ps->off_cap) {
        size_t cap = ps->off_cap ? ps->off_cap * 2 : 16;
        size_t *o = realloc(ps->off, cap * sizeof(*o));
        if (!o) return -ENOMEM;
        ps->off = o;
        ps->off_cap = cap;
    }
    ps->off[ps->n] = off;
    ps->v[ps->n++] = (resp_arg){NULL, len};
    return 0;
}

/* The arguments point into buf now that the command is whole. */
static int done(resp_parser *ps, const uint8_t *buf, size_t end, size_t *used)
{
    for (size_t i = 0; i < ps->n; i++)
        ps->v[i].p = buf + ps->off[i];
    *used = end;
    restart(ps);
    return RESP_DONE;
}

static int fail(resp_parser *ps, const char **err, const char *why)
{
    *err = why;
    restart(ps);
    return RESP_ERROR;
}

/* A "<prefix><number>\r\n" header at buf[*off]: RESP_DONE with *v, RESP_MORE, RESP_ERROR. */
static int header(const uint8_t *buf, size_t len, size_t *off, int64_t *v)
{
    size_t start = *off + 1, end = start;
    while (end < len && end - start < HEADER_MAX && buf[end] != '\r')
        end++;
    if (end == len) return RESP_MORE;
    if (buf[end] != '\r') return RESP_ERROR; /* too long */
    if (end + 1 == len) return RESP_MORE;
    if (buf[end + 1] != '\n' || !resp_to_i64(buf + start, end - start, v)) return RESP_ERROR;
    *off = end + 2;
    return RESP_DONE;
}

/* One argument at ps->pos: RESP_DONE once it is whole (ps->pos moves past it). */
static int parse_bulk(resp_parser *ps, const uint8_t *buf, size_t len, const char **err)
{
    size_t off = ps->pos;
    if (off == len) return RESP_MORE;
    if (buf[off] != '$') return fail(ps, err, "expected '$' before a bulk string");
    int64_t blen;
    int rc = header(buf, len, &off, &blen);
    if (rc == RESP_MORE) return RESP_MORE;
    if (rc != RESP_DONE || blen < 0 || blen > (int64_t)RESP_MAX_BULK)
        return fail(ps, err, "invalid bulk length");
    if (ps->total + (size_t)blen > RESP_MAX_COMMAND) return fail(ps, err, "command too large");
    if (len - off < (size_t)blen + 2) return RESP_MORE; /* its header is parsed again then */
    if (buf[off + blen] != '\r' || buf[off + blen + 1] != '\n')
        return fail(ps, err, "bulk string not terminated by CRLF");
    if (push_arg(ps, off, (size_t)blen) < 0) return fail(ps, err, "out of memory");
    ps->total += (size_t)blen;
    ps->pos = off + (size_t)blen + 2;
    return RESP_DONE;
}

static int parse_multibulk(resp_parser *ps, const uint8_t *buf, size_t len, size_t *used,
                           const char **err)
{
    if (ps->count < 0) {
        size_t off = 0;
        int64_t count;
        int rc = header(buf, len, &off, &count);
        if (rc == RESP_MORE) return RESP_MORE;
        if (rc != RESP_DONE || count > (int64_t)RESP_MAX_ARGS)
            return fail(ps, err, "invalid multibulk length");
        ps->count = count > 0 ? count : 0; /* <= 0: an empty command */
        ps->pos = off;
        ps->n = 0;
    }
    while ((int64_t)ps->n < ps->count) {
        int rc = parse_bulk(ps, buf, len, err);
        if (rc != RESP_DONE) return rc;
    }
    return done(ps, buf, ps->pos, used);
}

/* A line of words separated by blanks (no quoting), as typed on a terminal. ps->pos is how
 * far earlier calls looked for its end. */
static int parse_inline(resp_parser *ps, const uint8_t *buf, size_t len, size_t *used,
                        const char **err)
{
    size_t limit = len < RESP_MAX_INLINE ? len : RESP_MAX_INLINE;
    const uint8_t *nl = ps->pos < limit ? memchr(buf + ps->pos, '\n', limit - ps->pos) : NULL;
    if (!nl) {
        if (len >= RESP_MAX_INLINE) return fail(ps, err, "too big inline request");
        ps->pos = limit;
        return RESP_MORE;
    }
    size_t end = (size_t)(nl - buf);
    ps->n = 0;
    for (size_t i = 0; i < end;) {
        while (i < end && isspace(buf[i]))
            i++;
        size_t start = i;
        while (i < end && !isspace(buf[i]))
            i++;
        if (i == start) continue;
        if (ps->n == RESP_MAX_ARGS || push_arg(ps, start, i - start) < 0)
            return fail(ps, err, "too many arguments");
    }
    return done(ps, buf, end + 1, used);
}

int resp_parse(resp_parser *ps, const uint8_t *buf, size_t len, size_t *used, const char **err)
{
    *err = "";
    if (ps->count < 0 && ps->pos == 0) ps->n = 0;
    if (len == 0) return RESP_MORE;
    if (buf[0] == '*') return parse_multibulk(ps, buf, len, used, err);
    return parse_inline(ps, buf, len, used, err);
}

/* ---- replies ---------------------------------------------------------------------------- */

void resp_buf_init(resp_buf *b)
{
    b->p = b->small;
    b->len = 0;
    b->cap = sizeof(b->small);
    b->oom = false;
}

void resp_buf_free(resp_buf *b)
{
    if (b->p != b->small) free(b->p);
    resp_buf_init(b);
}

static bool reserve(resp_buf *b, size_t more)
{
    if (b->oom) return false;
    if (b->cap - b->len >= more) return true;
    size_t cap = b->cap * 2;
    while (cap - b->len < more)
        cap *= 2;
    uint8_t *p = b->p == b->small ? malloc(cap) : realloc(b->p, cap);
    if (!p) {
        b->oom = true;
        return false;
    }
    if (b->p == b->small) memcpy(p, b->small, b->len);
    b->p = p;
    b->cap = cap;
    return true;
}

void resp_raw(resp_buf *b, const void *p, size_t len)
{
    if (!reserve(b, len)) return;
    if (len) memcpy(b->p + b->len, p, len);
    b->len += len;
}

static void line(resp_buf *b, char type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void line(resp_buf *b, char type, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof(text)) n = sizeof(text) - 1;
    for (int i = 0; i < n; i++) /* a reply line must stay one line */
        if (text[i] == '\r' || text[i] == '\n') text[i] = ' ';
    resp_raw(b, &type, 1);
    resp_raw(b, text, (size_t)n);
    resp_raw(b, "\r\n", 2);
}

void resp_status(resp_buf *b, const char *s)
{
    line(b, '+', "%s", s);
}

void resp_error(resp_buf *b, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    line(b, '-', "%s", text);
}

void resp_int(resp_buf *b, int64_t v)
{
    line(b, ':', "%" PRId64, v);
}

void resp_bulk(resp_buf *b, const void *p, size_t len)
{
    line(b, '$', "%zu", len);
    resp_raw(b, p, len);
    resp_raw(b, "\r\n", 2);
}

void resp_bulk_str(resp_buf *b, const char *s)
{
    resp_bulk(b, s, strlen(s));
}

void resp_nil(resp_buf *b)
{
    resp_raw(b, "$-1\r\n", 5);
}

void resp_array(resp_buf *b, size_t n)
{
    line(b, '*', "%zu", n);
}
