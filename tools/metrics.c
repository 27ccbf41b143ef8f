/*
 * tools/metrics.c - Prometheus exposition of a node's counters (see metrics.h).
 *
 * The text is rebuilt for every scrape from ch_node_core_stats_get, which only reads atomic
 * counters, so it is safe on the reactor that serves the request: a scrape costs a few
 * microseconds and never blocks the shard it runs next to.
 */
#include "metrics.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUEST_MAX 8192

typedef struct text {
    char *p;
    size_t len, cap;
    int err;
} text;

static void put(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(text *t, const char *fmt, ...)
{
    for (int tries = 0; tries < 2 && !t->err; tries++) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            t->err = -EINVAL;
            return;
        }
        if ((size_t)n < t->cap - t->len) {
            t->len += (size_t)n;
            return;
        }
        size_t cap = (t->cap + (size_t)n + 1) * 2;
        char *p = realloc(t->p, cap);
        if (!p) {
            t->err = -ENOMEM;
            return;
        }
        t->p = p;
        t->cap = cap;
    }
}

/* One counter or gauge of ch_node_stats, by its offset. */
typedef struct metric {
    const char *name, *type, *help;
    size_t off;
} metric;

#define M(field, name, type, help)                                                                 \
    {                                                                                              \
        name, type, help, offsetof(ch_node_stats, field)                                           \
    }
static const metric metrics[] = {
    M(processes, "corehub_processes", "gauge", "Processes alive now."),
    M(started, "corehub_processes_started_total", "counter", "First starts."),
    M(stopped, "corehub_processes_stopped_total", "counter", "Processes ended for good."),
    M(restarts, "corehub_restarts_total", "counter", "Restarts by policy."),
    M(crashes, "corehub_crashes_total", "counter", "Callbacks that failed."),
    M(messages, "corehub_messages_total", "counter", "Messages handled."),
    M(dead_letters, "corehub_dead_letters_total", "counter", "Messages for ids nowhere."),
    M(crash_restarts, "corehub_crash_restarts_total", "counter",
      "Processes of dead members restarted here from their specs (state lost)."),
    M(bad_frames, "corehub_bad_frames_total", "counter",
      "Connections closed or handover frames refused as malformed."),
    M(refused_peers, "corehub_refused_peers_total", "counter", "Handshakes refused."),
    M(rejoins, "corehub_rejoins_total", "counter",
      "Times the hub declared this node dead and it rejoined."),
    M(conflicts, "corehub_conflicts_total", "counter",
      "Two live instances of an id met here (a healed partition); the owner's was kept."),
    M(accept_pauses, "corehub_accept_pauses_total", "counter",
      "Times a listener paused accepting, out of descriptors or memory."),
    M(migrating, "corehub_migrating", "gauge", "Processes queued to move, frozen or unconfirmed."),
    M(migrated_out, "corehub_migrated_out_total", "counter", "Processes handed over, confirmed."),
    M(migrated_in, "corehub_migrated_in_total", "counter", "Processes installed by a migration."),
    M(migration_failures, "corehub_migration_failures_total", "counter",
      "Moves that failed or were not confirmed in time."),
    M(forwarded_messages, "corehub_forwarded_messages_total", "counter",
      "Messages forwarded behind their moving process."),
    M(held_messages, "corehub_held_messages_total", "counter",
      "Messages that reached a new owner first and waited."),
    M(handover_bytes_raw, "corehub_handover_raw_bytes_total", "counter",
      "Handover record bytes sent, before the codec."),
    M(handover_bytes_wire, "corehub_handover_wire_bytes_total", "counter",
      "Handover bytes sent, after the codec."),
    M(handover_frames_zstd, "corehub_handover_zstd_frames_total", "counter",
      "Handover frames sent compressed."),
    M(handover_frames_raw, "corehub_handover_raw_frames_total", "counter",
      "Handover frames sent raw."),
    M(handover_frames_lane, "corehub_handover_lane_frames_total", "counter",
      "Handover frames sent on a core's data lane rather than through the coordinator."),
    M(handover_lanes_lost, "corehub_handover_lanes_lost_total", "counter",
      "Data lanes that closed with handover frames unconfirmed (sent again)."),
};
#undef M

static uint64_t field(const ch_node_stats *s, size_t off)
{
    uint64_t v;
    memcpy(&v, (const char *)s + off, sizeof(v));
    return v;
}

/* Every reactor's counters are read once per scrape, then printed metric by metric. */
static void put_counters(text *t, ch_node *n, const ch_node_stats *all)
{
    unsigned cores = ch_node_cores(n), reactors = cores + (ch_node_port(n) > 0 ? 1u : 0u);
    ch_node_stats *per = calloc(reactors, sizeof(*per));
    if (!per) {
        t->err = -ENOMEM;
        return;
    }
    for (unsigned c = 0; c < reactors; c++)
        ch_node_core_stats_get(n, c, &per[c]);
    for (size_t m = 0; m < sizeof(metrics) / sizeof(metrics[0]); m++) {
        const metric *x = &metrics[m];
        put(t, "# HELP %s %s\n# TYPE %s %s\n", x->name, x->help, x->name, x->type);
        for (unsigned c = 0; c < reactors; c++) {
            if (c < cores)
                put(t, "%s{core=\"%u\"} %" PRIu64 "\n", x->name, c, field(&per[c], x->off));
            else
                put(t, "%s{core=\"coordinator\"} %" PRIu64 "\n", x->name, field(&per[c], x->off));
        }
        put(t, "%s{core=\"all\"} %" PRIu64 "\n", x->name, field(all, x->off));
    }
    free(per);
}

/* Bucket i holds pauses in [2^i, 2^(i+1)) microseconds: its upper bound is le. The sum is
 * estimated from the buckets (1.5 x the lower bound each), as the node keeps no exact one. */
static void put_pauses(text *t, const ch_node_stats *s)
{
    const char *name = "corehub_migration_pause_seconds";
    put(t, "# HELP %s Pause of each moved process, from its freeze to its confirmation.\n", name);
    put(t, "# TYPE %s histogram\n", name);
    uint64_t cum = 0;
    double sum = 0;
    for (unsigned b = 0; b < CH_PAUSE_BUCKETS; b++) {
        cum += s->pause_hist[b];
        sum += (double)s->pause_hist[b] * 1.5e-6 * (double)(1ull << b);
        put(t, "%s_bucket{le=\"%.6g\"} %" PRIu64 "\n", name, (double)(2ull << b) * 1e-6, cum);
    }
    put(t, "%s_bucket{le=\"+Inf\"} %" PRIu64 "\n%s_sum %.6f\n%s_count %" PRIu64 "\n", name, cum,
        name, sum, name, cum); /* The node's own quantiles are finer than these buckets (within
                                  1/32: core/hist.h). */
    const struct {
        const char *q;
        uint64_t us;
    } qs[] = {{"0.5", s->pause_p50_us}, {"0.99", s->pause_p99_us}, {"1", s->pause_max_us}};
    const char *qn = "corehub_migration_pause_quantile_seconds";
    put(t, "# HELP %s Pause quantiles (1: the longest), within 1/32 of the exact value.\n", qn);
    put(t, "# TYPE %s gauge\n", qn);
    for (size_t i = 0; i < sizeof(qs) / sizeof(qs[0]); i++)
        put(t, "%s{quantile=\"%s\"} %.6f\n", qn, qs[i].q, (double)qs[i].us * 1e-6);
}

static void put_hub(text *t, const ch_node_stats *s)
{
    put(t, "# HELP corehub_members Members alive or suspect, this node included.\n");
    put(t, "# TYPE corehub_members gauge\ncorehub_members %" PRIu64 "\n", s->members_alive);
    put(t, "# HELP corehub_ring_members Members that own a part of the ring.\n");
    put(t, "# TYPE corehub_ring_members gauge\ncorehub_ring_members %" PRIu64 "\n",
        s->ring_members);
    put(t, "# HELP corehub_ring_epoch The ring epoch.\n");
    put(t, "# TYPE corehub_ring_epoch gauge\ncorehub_ring_epoch %" PRIu64 "\n", s->epoch);
}

int metrics_render(ch_node *n, char **out, size_t *len)
{
    ch_node_stats all;
    int rc = ch_node_stats_get(n, &all);
    if (rc < 0) return rc;
    text t = {0};
    put_counters(&t, n, &all);
    put_pauses(&t, &all);
    put_hub(&t, &all);
    if (t.err) {
        free(t.p);
        return t.err;
    }
    *out = t.p;
    *len = t.len;
    return 0;
}

/* ---- HTTP --------------------------------------------------------------------------- */

struct metrics_server {
    ch_node *node;
    ch_server *srv;
};

static void respond(ch_sconn c, const char *status, const char *type, const char *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     status, type, len);
    if (ch_sconn_write(c, head, (size_t)n) == 0 && len) ch_sconn_write(c, body, len);
    ch_sconn_close(c, 1);
}

/* One request per connection: the answer, then the close. */
static long on_data(void *conn_ud, ch_sconn c, void *data, size_t len)
{
    metrics_server *m = conn_ud;
    const char *p = data;
    if (len >= 4 && memcmp(p, "GET ", 4) != 0) return -EPROTO;
    size_t end = 0;
    for (size_t i = 3; i < len && !end; i++)
        if (p[i] == '\n' && p[i - 1] == '\r' && p[i - 2] == '\n' && p[i - 3] == '\r') end = i + 1;
    if (!end) return len > REQUEST_MAX ? -EMSGSIZE : 0; /* wait for the whole head */
    const char *path = p + 4, *sp = memchr(path, ' ', end - 4);
    size_t plen = sp ? (size_t)(sp - path) : 0;
    if (!sp) return -EPROTO;
    if ((plen == 8 && memcmp(path, "/metrics", 8) == 0) || (plen == 1 && path[0] == '/')) {
        char *body;
        size_t blen;
        if (metrics_render(m->node, &body, &blen) < 0) {
            respond(c, "500 Internal Server Error", "text/plain", "", 0);
        } else {
            respond(c, "200 OK", "text/plain; version=0.0.4; charset=utf-8", body, blen);
            free(body);
        }
    } else {
        respond(c, "404 Not Found", "text/plain", "not found\n", 10);
    }
    return (long)len; /* anything after the head is ignored: the connection closes */
}

static int on_open(void *server_ud, ch_sconn c, void **conn_ud)
{
    (void)c;
    *conn_ud = server_ud;
    return 0;
}

int metrics_serve(ch_node *n, const char *addr, metrics_server **out)
{
    metrics_server *m = calloc(1, sizeof(*m));
    if (!m) return -ENOMEM;
    m->node = n;
    ch_server_config cfg;
    ch_server_config_init(&cfg);
    cfg.listen = addr;
    cfg.read_bytes = 4096;
    cfg.max_read_bytes = REQUEST_MAX;
    cfg.on_open = on_open;
    cfg.on_data = on_data;
    cfg.ud = m;
    int rc = ch_server_open(n, &cfg, &m->srv);
    if (rc < 0) {
        free(m);
        return rc;
    }
    *out = m;
    return 0;
}

int metrics_port(const metrics_server *m)
{
    return m ? ch_server_port(m->srv) : 0;
}

void metrics_close(metrics_server *m)
{
    if (!m) return;
    ch_server_close(m->srv);
    free(m);
}
