/*
 * tests/lib/svg_check.c - reading back an SVG file (see svg_check.h).
 *
 * The reader walks the text once with a stack of open element names. It is written apart
 * from tools/svg.c on purpose (UTF-8 through iconv, entities by table): a check that
 * shared the writer's code would share its mistakes.
 */
#include "svg_check.h"

#include <errno.h>
#include <iconv.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 32
#define MAX_NAME  32

char *svgc_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n < cap) continue;
        char *bigger = realloc(buf, 2 * cap + 1);
        if (!bigger) free(buf);
        buf = bigger, cap *= 2;
    }
    fclose(f);
    if (!buf) return NULL;
    buf[n] = '\0';
    if (len) *len = n;
    return buf;
}

/* Whether text is valid UTF-8: iconv refuses anything else (EILSEQ, EINVAL). */
static bool valid_utf8(const char *text, size_t len)
{
    iconv_t cd = iconv_open("UTF-8", "UTF-8");
    if (cd == (iconv_t)-1) return false;
    char out[4096], *in = (char *)text;
    size_t left = len, rc = 0;
    while (left && rc != (size_t)-1) {
        char *o = out;
        size_t room = sizeof(out);
        rc = iconv(cd, &in, &left, &o, &room);
        if (rc == (size_t)-1 && errno == E2BIG) rc = 0; /* the output was full: go on */
    }
    iconv_close(cd);
    return rc != (size_t)-1;
}

typedef struct reader {
    const char *text, *p;
    char stack[MAX_DEPTH][MAX_NAME];
    int depth;
    char *why;
    size_t cap;
} reader;

static bool fail(reader *r, const char *fmt, ...)
{
    char msg[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    snprintf(r->why, r->cap, "at offset %td: %s", r->p - r->text, msg);
    return false;
}

static void skip_space(reader *r)
{
    while (*r->p == ' ' || *r->p == '\n' || *r->p == '\t' || *r->p == '\r')
        r->p++;
}

static bool name_char(char c, bool first)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && ((c >= '0' && c <= '9') || c == '-' || c == '.'));
}

static bool read_name(reader *r, char out[MAX_NAME])
{
    size_t n = 0;
    if (!name_char(*r->p, true)) return fail(r, "a name expected");
    while (name_char(*r->p, false) && n < MAX_NAME - 1)
        out[n++] = *r->p++;
    out[n] = '\0';
    return name_char(*r->p, false) ? fail(r, "name too long") : true;
}

/* At '&': one of the five entities, or &#DIGITS; or &#xHEX;. */
static bool read_entity(reader *r)
{
    static const char *const named[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"};
    for (size_t i = 0; i < sizeof(named) / sizeof(named[0]); i++)
        if (!strncmp(r->p, named[i], strlen(named[i]))) {
            r->p += strlen(named[i]);
            return true;
        }
    const char *q = r->p + 2;
    bool hex = r->p[1] == '#' && *q == 'x';
    if (r->p[1] != '#') return fail(r, "a bare '&'");
    q += hex;
    const char *digits = q;
    while ((*q >= '0' && *q <= '9') || (hex && strchr("abcdefABCDEF", *q) && *q))
        q++;
    if (q == digits || *q != ';') return fail(r, "a broken character reference");
    r->p = q + 1;
    return true;
}

/* Character data, or an attribute value up to `end` (a quote): no '<', '&' escaped. */
static bool read_chars(reader *r, char end)
{
    while (*r->p && *r->p != end && *r->p != '<') {
        if (*r->p != '&')
            r->p++;
        else if (!read_entity(r))
            return false;
    }
    if (end != '<' && *r->p != end) return fail(r, "an attribute value not closed");
    return true;
}

static bool read_attrs(reader *r, bool *self_closing)
{
    for (;;) {
        skip_space(r);
        if (*r->p == '>' || !strncmp(r->p, "/>", 2)) {
            *self_closing = *r->p == '/';
            r->p += *self_closing ? 2 : 1;
            return true;
        }
        char name[MAX_NAME];
        if (!read_name(r, name)) return false;
        skip_space(r);
        if (*r->p++ != '=') return fail(r, "'=' expected after %s", name);
        skip_space(r);
        char q = *r->p++;
        if (q != '"' && q != '\'') return fail(r, "the value of %s is not quoted", name);
        if (!read_chars(r, q)) return false;
        r->p++;
    }
}

static bool start_tag(reader *r)
{
    char name[MAX_NAME];
    bool self_closing = false;
    r->p++;
    if (!read_name(r, name) || !read_attrs(r, &self_closing)) return false;
    if (r->depth == 0 && strcmp(name, "svg")) return fail(r, "the root is <%s>, not <svg>", name);
    if (self_closing) return true;
    if (r->depth == MAX_DEPTH) return fail(r, "nested too deep");
    snprintf(r->stack[r->depth++], MAX_NAME, "%s", name);
    return true;
}

static bool end_tag(reader *r)
{
    char name[MAX_NAME];
    r->p += 2;
    if (!read_name(r, name)) return false;
    skip_space(r);
    if (*r->p++ != '>') return fail(r, "'>' expected after </%s", name);
    if (r->depth == 0 || strcmp(r->stack[r->depth - 1], name))
        return fail(r, "</%s> closes <%s>", name, r->depth ? r->stack[r->depth - 1] : "nothing");
    r->depth--;
    return true;
}

bool svgc_well_formed(const char *text, size_t len, char *why, size_t cap)
{
    reader r = {.text = text, .p = text, .why = why, .cap = cap};
    snprintf(why, cap, "well-formed");
    if (strlen(text) != len) return fail(&r, "a NUL byte inside");
    if (!valid_utf8(text, len)) return fail(&r, "not valid UTF-8");
    if (strncmp(text, "<svg", 4)) return fail(&r, "does not start with <svg");
    do {
        bool ok = r.p[0] != '<' ? read_chars(&r, '<') : r.p[1] == '/' ? end_tag(&r) : start_tag(&r);
        if (!ok) return false;
        if (!*r.p && r.depth) return fail(&r, "<%s> is never closed", r.stack[r.depth - 1]);
    } while (r.depth);
    skip_space(&r);
    return *r.p ? fail(&r, "more after </svg>") : true;
}

size_t svgc_count(const char *text, const char *needle)
{
    size_t n = 0, len = strlen(needle);
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += len)
        n++;
    return n;
}

long svgc_points(const char *text, const char *start, size_t k)
{
    const char *p = text;
    for (size_t i = 0; p && (p = strstr(p, start)) != NULL && i < k; i++)
        p += strlen(start);
    if (!p) return -1;
    const char *end = strchr(p, '>'), *pts = strstr(p, " points=\"");
    if (!end || !pts || pts > end) return -1;
    long pairs = 0;
    for (const char *q = pts + 9; *q && *q != '"'; q++)
        pairs += *q == ',';
    return pairs;
}
