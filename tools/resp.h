/*
 * tools/resp.h - the Redis serialization protocol, version 2 (RESP2): requests in, replies
 * out, for the key-value service (kv.h).
 *
 * Requests are arrays of bulk strings ("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"), or inline
 * commands (a line of words, as a person types them). The parser takes whatever bytes
 * arrived and either finds one whole command at their start, says that more bytes are
 * needed, or names the protocol error; it never reads past `len`, and every length is
 * bounded (RESP_MAX_BULK, RESP_MAX_ARGS, RESP_MAX_INLINE, RESP_MAX_COMMAND), so no input
 * can make it allocate without bound.
 *
 * Replies are built in a resp_buf, which holds small replies in place (no allocation for
 * "+OK" or an integer) and grows on the heap for the others.
 */
#ifndef COREHUB_TOOLS_RESP_H
#define COREHUB_TOOLS_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RESP_MAX_BULK    (512u * 1024)      /* one argument */
#define RESP_MAX_ARGS    8192u              /* arguments of one command */
#define RESP_MAX_INLINE  (64u * 1024)       /* one inline command line */
#define RESP_MAX_COMMAND (4u * 1024 * 1024) /* the arguments of one command, summed */

typedef struct resp_arg {
    const uint8_t *p; /* into the input buffer: valid while it is */
    size_t len;
} resp_arg;

/* A parser: the arguments of the last command, and how far it got into an incomplete one,
 * so that a command arriving in many pieces is not parsed again from its start each time
 * (which a client trickling bytes could turn into quadratic work). */
typedef struct resp_parser {
    resp_arg *v; /* the arguments, once RESP_DONE */
    size_t n, cap;
    size_t *off; /* while incomplete: where each argument starts (buffers may move) */
    size_t off_cap;
    size_t pos;    /* bytes of the incomplete command parsed so far */
    int64_t count; /* its argument count; -1 before its header */
    size_t total;  /* its argument bytes so far */
} resp_parser;

enum { RESP_MORE = 0, RESP_DONE = 1, RESP_ERROR = -1 };

void resp_parser_init(resp_parser *ps);
void resp_parser_free(resp_parser *ps);

/* Parses the command at the start of buf. RESP_DONE: ps->v[0..ps->n) are its arguments
 * (pointing into buf) and *used its bytes (ps->n may be 0: an empty line or array, to
 * skip). RESP_MORE: nothing whole yet; the next call must pass the same command's bytes
 * again, from the same start, with more after them. RESP_ERROR: *err says what is wrong
 * ("invalid bulk length"...); the connection cannot be resynchronised. */
int resp_parse(resp_parser *ps, const uint8_t *buf, size_t len, size_t *used, const char **err);

typedef struct resp_buf {
    uint8_t *p; /* `small` until the reply outgrows it */
    size_t len, cap;
    bool oom; /* an append failed: the reply is incomplete */
    uint8_t small[48];
} resp_buf;

/* A resp_buf must not be copied once initialised (p may point into it). */
void resp_buf_init(resp_buf *b);
void resp_buf_free(resp_buf *b);
void resp_raw(resp_buf *b, const void *p, size_t len);
void resp_status(resp_buf *b, const char *s);      /* +s */
void resp_error(resp_buf *b, const char *fmt, ...) /* -text */
    __attribute__((format(printf, 2, 3)));
void resp_int(resp_buf *b, int64_t v);                  /* :v */
void resp_bulk(resp_buf *b, const void *p, size_t len); /* $len bytes */
void resp_bulk_str(resp_buf *b, const char *s);
void resp_nil(resp_buf *b);             /* $-1 */
void resp_array(resp_buf *b, size_t n); /* *n, n elements follow */

/* Whether arg equals the ASCII word `s`, ignoring case. */
bool resp_is(const resp_arg *arg, const char *s);
/* Parses a whole signed decimal int64 as Redis does (no sign but '-', no leading zero, no
 * spaces). */
bool resp_to_i64(const void *p, size_t len, int64_t *out);

#endif
