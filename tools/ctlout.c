/*
 * tools/ctlout.c - text and JSON forms of a control reply (see ctlout.h).
 *
 * Escaping builds the whole escaped string in one buffer and appends it with a single
 * ch_ctl_reply_append: a blob's value can be a megabyte, and one formatted append per
 * byte would be slow for no reason.
 */
#include "ctlout.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 when it is not one.
 * Overlong forms, surrogates and code points past U+10FFFF are refused. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
    if (c > 0xf4 || len == 0 || len > n) return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80) return 0;
    if (c == 0xe0 && s[1] < 0xa0) return 0; /* overlong */
    if (c == 0xed && s[1] > 0x9f) return 0; /* surrogate */
    if (c == 0xf0 && s[1] < 0x90) return 0; /* overlong */
    if (c == 0xf4 && s[1] > 0x8f) return 0; /* past U+10FFFF */
    return len;
}

static int append_buf(ch_ctl_reply *r, const char *buf, size_t len)
{
    if (len > INT_MAX) return -EMSGSIZE;
    return ch_ctl_reply_append(r, "%.*s", (int)len, buf);
}

/* One byte in a quoted string: the escapes JSON and C share, and for other control and
 * non-ASCII bytes `other` (JSON "\\u%04x", C "\\x%02x"). */
static size_t escape_byte(char *d, unsigned char c, const char *other)
{
    switch (c) {
    case '"':
        return (size_t)sprintf(d, "\\\"");
    case '\\':
        return (size_t)sprintf(d, "\\\\");
    case '\n':
        return (size_t)sprintf(d, "\\n");
    case '\t':
        return (size_t)sprintf(d, "\\t");
    case '\r':
        return (size_t)sprintf(d, "\\r");
    default:
        if (c < 0x20 || c >= 0x7f) return (size_t)sprintf(d, other, c);
        *d = (char)c;
        return 1;
    }
}

static size_t json_escape_byte(char *d, unsigned char c)
{
    return escape_byte(d, c, "\\u%04x");
}

int ctlout_json_str(ch_ctl_reply *r, const void *s, size_t len)
{
    const unsigned char *p = s;
    char *buf = malloc(len * 6 + 3); /* "\u00XX" is the longest form of one byte */
    if (!buf) return -ENOMEM;
    size_t at = 0;
    buf[at++] = '"';
    for (size_t i = 0; i < len;) {
        size_t seq = p[i] >= 0x80 ? utf8_seq(p + i, len - i) : 0;
        if (seq) {
            memcpy(buf + at, p + i, seq);
            at += seq;
            i += seq;
        } else {
            at += json_escape_byte(buf + at, p[i++]);
        }
    }
    buf[at++] = '"';
    int rc = append_buf(r, buf, at);
    free(buf);
    return rc;
}

static bool text_plain(const unsigned char *p, size_t len)
{
    if (len == 0) return false;
    for (size_t i = 0; i < len; i++)
        if (p[i] <= ' ' || p[i] >= 0x7f || p[i] == '"' || p[i] == '\\') return false;
    return true;
}

static size_t c_escape_byte(char *d, unsigned char c)
{
    return escape_byte(d, c, "\\x%02x");
}

int ctlout_text_str(ch_ctl_reply *r, const void *s, size_t len)
{
    const unsigned char *p = s;
    if (text_plain(p, len)) return append_buf(r, s, len);
    char *buf = malloc(len * 4 + 3); /* "\xHH" */
    if (!buf) return -ENOMEM;
    size_t at = 0;
    buf[at++] = '"';
    for (size_t i = 0; i < len; i++)
        at += c_escape_byte(buf + at, p[i]);
    buf[at++] = '"';
    int rc = append_buf(r, buf, at);
    free(buf);
    return rc;
}

int ctlout_str(const ctlout *o, const void *s, size_t len)
{
    return o->json ? ctlout_json_str(o->r, s, len) : ctlout_text_str(o->r, s, len);
}

int ctlout_raw(ch_ctl_reply *r, const void *p, size_t len)
{
    const char *s = p;
    while (len > 0) {
        const char *nul = memchr(s, '\0', len);
        size_t run = nul ? (size_t)(nul - s) : len;
        int rc = run ? append_buf(r, s, run) : 0;
        if (rc == 0 && nul) rc = ch_ctl_reply_append(r, "%c", '\0');
        if (rc < 0) return rc;
        run += nul ? 1 : 0;
        s += run;
        len -= run;
    }
    return 0;
}

int ctlout_fail(const ctlout *o, int status, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!o->json) {
        ch_ctl_reply_append(o->r, "error: %s\n", msg);
        return status;
    }
    ch_ctl_reply_append(o->r, "{\"error\":");
    ctlout_json_str(o->r, msg, strlen(msg));
    ch_ctl_reply_append(o->r, ",\"status\":%d}\n", status);
    return status;
}
