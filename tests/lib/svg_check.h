/*
 * tests/lib/svg_check.h - reading back an SVG file that tools/svg.c wrote: is it
 * well-formed XML with an <svg> root, and what does it hold (elements, points). Enough of
 * an XML reader to catch what a writer gets wrong (an unescaped label, a tag left open, a
 * broken UTF-8 sequence); it does not validate against the SVG schema. Plain C without
 * Criterion.
 */
#ifndef CH_TESTS_SVG_CHECK_H
#define CH_TESTS_SVG_CHECK_H

#include <stdbool.h>
#include <stddef.h>

/* A whole file, NUL-terminated (free it); NULL when it cannot be read. */
char *svgc_read_file(const char *path, size_t *len);

/* Whether text (len bytes) is one <svg> element, first thing in it, with nothing but
 * whitespace after: valid UTF-8, tags that nest and close, quoted attribute values, no
 * raw '<' in text or values, and '&' only in the five named entities or a numeric one.
 * When not, why gets the first problem and its offset. */
bool svgc_well_formed(const char *text, size_t len, char *why, size_t cap);

/* How many times needle occurs in text. */
size_t svgc_count(const char *text, const char *needle);

/* The coordinate pairs in the points attribute of the k-th (from 0) start tag that begins
 * with `start` (e.g. "<polyline class=\"moved\""), or -1 when there is no such tag. */
long svgc_points(const char *text, const char *start, size_t k);

#endif
