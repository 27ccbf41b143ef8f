/*
 * tools/ctlout.h - writing a control reply (ch_ctl_reply) as text or as JSON.
 *
 * The node's control handler (nodectl.c) answers every command in two forms: text for
 * people and scripts (one record per line, fields separated by spaces) and JSON (one
 * object or array) for programs. Values that come from users, process ids above all, may
 * hold any byte: these helpers quote and escape them so that neither form can be broken
 * by an id with a space, a newline, a quote or invalid UTF-8 in it.
 */
#ifndef COREHUB_TOOLS_CTLOUT_H
#define COREHUB_TOOLS_CTLOUT_H

#include <corehub/corehub.h>

#include <stdbool.h>
#include <stddef.h>

typedef struct ctlout {
    ch_ctl_reply *r;
    bool json;
} ctlout;

/* A JSON string literal, quotes included: valid UTF-8 passes through, control characters
 * and bytes that are not UTF-8 become \u00XX. 0 or -ENOMEM. */
int ctlout_json_str(ch_ctl_reply *r, const void *s, size_t len);
/* A text field: as is when it is printable ASCII without spaces, quotes or backslashes
 * (and not empty), else "quoted" with C escapes. 0 or -ENOMEM. */
int ctlout_text_str(ch_ctl_reply *r, const void *s, size_t len);
/* The form's string: ctlout_json_str or ctlout_text_str. */
int ctlout_str(const ctlout *o, const void *s, size_t len);
/* Bytes exactly as they are, NUL bytes included. */
int ctlout_raw(ch_ctl_reply *r, const void *p, size_t len);
/* An error message in the reply's form ("error: MSG\n" or {"error":"MSG"}); returns
 * status, so that a handler can `return ctlout_fail(o, 4, ...)`. */
int ctlout_fail(const ctlout *o, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
