/*
 * tools/metrics.h - a node's counters in the Prometheus text exposition format (0.0.4),
 * served over HTTP on the node's reactors (`corehub node --metrics HOST:PORT`) and printed
 * by `corehub ctl metrics`.
 *
 * Every counter comes per reactor (label core="0".."N-1", core="coordinator") and merged
 * (core="all"); the migration pause is one histogram for the node; the hub's size and
 * epoch are gauges. GET /metrics (or /) answers 200 with the text; any other path 404; a
 * request that is not HTTP, or larger than 8 KiB, closes the connection.
 */
#ifndef COREHUB_TOOLS_METRICS_H
#define COREHUB_TOOLS_METRICS_H

#include <corehub/corehub.h>

#include <stddef.h>

/* The exposition text: malloc'd, NUL-terminated (free it). 0 or -ENOMEM. Any thread,
 * reactors included (it reads counters only). */
int metrics_render(ch_node *n, char **out, size_t *len);

typedef struct metrics_server metrics_server;

/* Serves GET /metrics on addr ("HOST:PORT", port 0: any) on n's reactors. */
int metrics_serve(ch_node *n, const char *addr, metrics_server **out);
int metrics_port(const metrics_server *m);
/* Stops serving and frees (not on a reactor). NULL is a no-op. */
void metrics_close(metrics_server *m);

#endif
