/*
 * tools/nodectl.c - the control commands of `corehub node` (see nodectl.h).
 *
 * One function per command, found in a table by name; each checks its arguments, makes
 * the public API calls and writes its answer through ctlout in the form asked for. The
 * client sends `--json` as argv[1] when its user asked for JSON; the dispatcher takes it
 * off before a command sees its arguments.
 *
 * Nothing here may crash the node on bad input: every argument is checked, every id is
 * escaped on output, and a reply that would outgrow a control frame is cut short with an
 * error instead (the node would otherwise drop the whole answer).
 */
#include "nodectl.h"

#include "metrics.h"

#include "ctlout.h"
#include "nodectl_load.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define START_BATCH      1000
#define START_MANY_MAX   10000000ull
#define BATCH_TIMEOUT_MS 30000
#define SEND_RETRY_NS    1000000000ull /* give up on a full mailbox after 1 s */
#define REPLY_BUDGET     (8u << 20)    /* bytes of listing per reply, far below a frame */
#define MAX_ARGS         64

typedef struct command {
    const char *name;
    const char *args; /* for usage lines */
    int min, max;     /* argument count, the command itself excluded; max -1: any */
    int (*run)(nodectl *c, const ctlout *o, int argc, char **argv);
    const char *summary;
} command;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A whole decimal number in [1, max]: the only form a count may take. */
int nodectl_parse_count(const char *s, uint64_t max, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s) return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (max - (uint64_t)(*s - '0')) / 10) return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v == 0) return -1;
    *out = v;
    return 0;
}

/* argv[from..argc) joined by single spaces, so that `send c1 add 5` needs no quotes.
 * malloc'd; NULL on -ENOMEM. */
static char *join_args(int argc, char **argv, int from, size_t *len)
{
    size_t n = 0;
    for (int i = from; i < argc; i++)
        n += strlen(argv[i]) + 1;
    char *s = malloc(n + 1);
    if (!s) return NULL;
    size_t at = 0;
    for (int i = from; i < argc; i++) {
        if (i > from) s[at++] = ' ';
        size_t l = strlen(argv[i]);
        memcpy(s + at, argv[i], l);
        at += l;
    }
    s[at] = '\0';
    *len = at;
    return s;
}

/* Status for a failed API call: a missing process is "not found", the rest a failure. */
static int fail_code(const ctlout *o, int rc, const char *what, const char *id)
{
    int status = rc == CH_ENOPROC ? NODECTL_NOT_FOUND : NODECTL_FAILED;
    return ctlout_fail(o, status, "%s %s: %s", what, id, ch_strerror(rc));
}

/* ---- members ---------------------------------------------------------------------------- */

static const char *state_name(ch_member_state s)
{
    switch (s) {
    case CH_MEMBER_ALIVE:
        return "alive";
    case CH_MEMBER_SUSPECT:
        return "suspect";
    case CH_MEMBER_DEAD:
        return "dead";
    case CH_MEMBER_LEFT:
        return "left";
    default:
        return "unknown";
    }
}

static int cmp_member(const void *a, const void *b)
{
    uint64_t x = ((const ch_member *)a)->id, y = ((const ch_member *)b)->id;
    return (x > y) - (x < y);
}

static void put_member(const ctlout *o, const ch_member *m, bool first)
{
    if (!o->json) {
        ch_ctl_reply_append(o->r, "%016" PRIx64 " ", m->id);
        ctlout_text_str(o->r, m->addr, strlen(m->addr));
        ch_ctl_reply_append(o->r, " %s %u%s%s\n", state_name(m->state), m->cores,
                            m->drained ? " drained" : "", m->self ? " self" : "");
        return;
    }
    ch_ctl_reply_append(o->r, "%s{\"id\":\"%016" PRIx64 "\",\"addr\":", first ? "" : ",", m->id);
    ctlout_json_str(o->r, m->addr, strlen(m->addr));
    ch_ctl_reply_append(o->r,
                        ",\"state\":\"%s\",\"cores\":%u,\"incarnation\":%" PRIu64
                        ",\"drained\":%s,\"self\":%s}",
                        state_name(m->state), m->cores, m->incarnation,
                        m->drained ? "true" : "false", m->self ? "true" : "false");
}

static int cmd_members(nodectl *c, const ctlout *o, int argc, char **argv)
{
    ch_member *m = NULL;
    size_t count = 0;
    int rc = ch_node_members_get(c->node, &m, &count);
    if (rc < 0) {
        free(m);
        return ctlout_fail(o, NODECTL_FAILED, "members: %s", ch_strerror(rc));
    }
    qsort(m, count, sizeof(*m), cmp_member);
    if (o->json) ch_ctl_reply_append(o->r, "[");
    for (size_t i = 0; i < count; i++)
        put_member(o, &m[i], i == 0);
    if (o->json) ch_ctl_reply_append(o->r, "]\n");
    free(m);
    return NODECTL_OK;
}

/* ---- procs, lookup ------------------------------------------------------------------------ */

static int cmp_info(const void *a, const void *b)
{
    const ch_proc_info *x = *(ch_proc_info *const *)a, *y = *(ch_proc_info *const *)b;
    size_t n = x->id_len < y->id_len ? x->id_len : y->id_len;
    int d = memcmp(x->id, y->id, n);
    return d ? d : (x->id_len > y->id_len) - (x->id_len < y->id_len);
}

static void put_proc(const ctlout *o, const ch_proc_info *p, bool first)
{
    if (o->json) ch_ctl_reply_append(o->r, "%s{\"id\":", first ? "" : ",");
    ctlout_str(o, p->id, p->id_len);
    ch_ctl_reply_append(o->r, o->json ? ",\"type\":" : " ");
    ctlout_str(o, p->type, strlen(p->type));
    if (!o->json) {
        ch_ctl_reply_append(o->r, " %016" PRIx64 " %u\n", p->node, p->core);
        return;
    }
    ch_ctl_reply_append(o->r, ",\"node\":\"%016" PRIx64 "\",\"core\":%u,\"tag\":", p->node,
                        p->core);
    ctlout_json_str(o->r, p->tag, strlen(p->tag));
    ch_ctl_reply_append(o->r, "}");
}

/* Writes the listing, stopping at the reply budget; returns how many were left out. */
static size_t put_procs(const ctlout *o, const ch_proc_list *l)
{
    size_t bytes = 0, i = 0;
    if (o->json) ch_ctl_reply_append(o->r, "[");
    for (; i < l->count; i++) {
        const ch_proc_info *p = l->items[i];
        bytes += p->id_len * 6 + strlen(p->type) * 6 + strlen(p->tag) * 6 + 64; /* worst */
        if (bytes > REPLY_BUDGET) break;
        put_proc(o, p, i == 0);
    }
    if (o->json) ch_ctl_reply_append(o->r, "]\n");
    return l->count - i;
}

static int procs_args(const ctlout *o, int argc, char **argv, bool *local, const char **tag)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--local") == 0)
            *local = true;
        else if (strcmp(argv[i], "--tag") == 0 && i + 1 < argc)
            *tag = argv[++i];
        else
            return ctlout_fail(o, NODECTL_USAGE, "usage: procs [--local] [--tag T]");
    }
    return NODECTL_OK;
}

static int cmd_procs(nodectl *c, const ctlout *o, int argc, char **argv)
{
    bool local = false;
    const char *tag = NULL;
    int st = procs_args(o, argc, argv, &local, &tag);
    if (st != NODECTL_OK) return st;
    ch_proc_list l = {0};
    int rc = local ? ch_registry_list_local(c->node, tag, &l) : ch_registry_list(c->node, tag, &l);
    if (rc < 0) return ctlout_fail(o, NODECTL_FAILED, "procs: %s", ch_strerror(rc));
    qsort(l.items, l.count, sizeof(*l.items), cmp_info);
    size_t left = put_procs(o, &l);
    ch_proc_list_free(&l);
    if (!left) return NODECTL_OK;
    /* JSON stays one array: the status alone says that it is incomplete. */
    if (!o->json)
        ch_ctl_reply_append(o->r, "error: %zu more not shown (reply limit: use --tag)\n", left);
    return NODECTL_FAILED;
}

static int cmd_lookup(nodectl *c, const ctlout *o, int argc, char **argv)
{
    ch_proc_info *p = NULL;
    int rc = ch_registry_lookup(c->node, argv[1], CH_ID_CSTR, &p);
    if (rc < 0) return fail_code(o, rc, "lookup", argv[1]);
    if (o->json) ch_ctl_reply_append(o->r, "{\"id\":");
    ctlout_str(o, p->id, p->id_len);
    ch_ctl_reply_append(o->r, o->json ? ",\"type\":" : " ");
    ctlout_str(o, p->type, strlen(p->type));
    ch_ctl_reply_append(o->r,
                        o->json ? ",\"node\":\"%016" PRIx64
                                  "\",\"core\":%u,\"incarnation\":%" PRIu32 ",\"tag\":"
                                : " %016" PRIx64 " %u %" PRIu32 " ",
                        p->node, p->core, p->incarnation);
    ctlout_str(o, p->tag, strlen(p->tag));
    if (o->json)
        ch_ctl_reply_append(o->r, ",\"pin\":\"%016" PRIx64 "\"}\n", p->pin);
    else
        ch_ctl_reply_append(o->r, p->pin ? " pin %016" PRIx64 "\n" : "\n", p->pin);
    ch_proc_info_free(p);
    return NODECTL_OK;
}

/* ---- migrate ---------------------------------------------------------------------------- */

#define MIGRATE_WAIT_MS 30000u

static bool parse_node(const char *s, uint64_t *node)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 16);
    if (errno || end == s || *end) return false;
    *node = v;
    return true;
}

/* Pins ID to NODE (a member id as `members` prints it; "0" unpins), then waits until the
 * registry shows it there (bounded): the move runs with the hub's migration protocol. */
static int cmd_migrate(nodectl *c, const ctlout *o, int argc, char **argv)
{
    (void)argc;
    uint64_t node;
    if (!parse_node(argv[2], &node))
        return ctlout_fail(o, NODECTL_USAGE, "migrate: NODE must be a member id (hex)");
    int rc = ch_node_pin(c->node, argv[1], CH_ID_CSTR, node);
    if (rc < 0) return fail_code(o, rc, "migrate", argv[1]);
    uint64_t want = node, end = now_ns() + (uint64_t)MIGRATE_WAIT_MS * 1000000;
    ch_proc_info *p = NULL;
    do {
        ch_proc_info_free(p);
        p = NULL;
        rc = ch_registry_lookup(c->node, argv[1], CH_ID_CSTR, &p);
        if (rc == 0 && !want) want = p->node; /* unpinned: wherever it is is fine */
        if (rc == 0 && p->node == want) break;
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL); /* a poll interval: the registry follows the move */
    } while (now_ns() < end);
    if (rc < 0) return fail_code(o, rc, "migrate", argv[1]);
    bool there = p->node == want;
    ch_proc_info_free(p);
    if (!there)
        return ctlout_fail(o, NODECTL_FAILED, "migrate %s: not on %016" PRIx64 " in time", argv[1],
                           want);
    ch_ctl_reply_append(
        o->r, o->json ? "{\"id\":\"%s\",\"node\":\"%016" PRIx64 "\"}\n" : "%s on %016" PRIx64 "\n",
        argv[1], want);
    return NODECTL_OK;
}

/* ---- start, start-many, stop ------------------------------------------------------------ */

static int cmd_start(nodectl *c, const ctlout *o, int argc, char **argv)
{
    ch_child_spec spec = {.id = argv[1], .id_len = CH_ID_CSTR, .type = argv[2]};
    if (argc > 3) {
        spec.arg = argv[3];
        spec.arg_len = strlen(argv[3]);
    }
    int result = -ETIMEDOUT;
    ch_batch_opts opts = {.timeout_ms = BATCH_TIMEOUT_MS};
    int rc = ch_node_children_start(c->node, &spec, 1, &opts, &result);
    if (rc == 0 || rc == CH_EPARTIAL) rc = result;
    if (rc < 0) return ctlout_fail(o, NODECTL_FAILED, "start %s: %s", argv[1], ch_strerror(rc));
    if (!o->json) {
        ch_ctl_reply_append(o->r, "started ");
        ctlout_text_str(o->r, argv[1], strlen(argv[1]));
        ch_ctl_reply_append(o->r, "\n");
        return NODECTL_OK;
    }
    ch_ctl_reply_append(o->r, "{\"id\":");
    ctlout_json_str(o->r, argv[1], strlen(argv[1]));
    ch_ctl_reply_append(o->r, ",\"started\":true}\n");
    return NODECTL_OK;
}

typedef struct start_many {
    const char *prefix, *type;
    bool index_arg; /* child i's init argument is i in decimal */
    size_t stride;  /* bytes per id in ids */
    char *ids;
    char (*args)[24]; /* index_arg: the arguments */
    ch_child_spec *specs;
    int *results;
    nodectl_started *out;
} start_many;

static void start_many_batch(nodectl *c, start_many *s, uint64_t first, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        char *id = s->ids + i * s->stride;
        snprintf(id, s->stride, "%s%" PRIu64, s->prefix, first + i);
        s->specs[i] = (ch_child_spec){.id = id, .id_len = CH_ID_CSTR, .type = s->type};
        if (s->index_arg) {
            int n = snprintf(s->args[i], sizeof(s->args[i]), "%" PRIu64, first + i);
            s->specs[i].arg = s->args[i];
            s->specs[i].arg_len = (size_t)n;
        }
        s->results[i] = -ETIMEDOUT; /* what an unfilled slot means after a timeout */
    }
    ch_batch_opts opts = {.timeout_ms = BATCH_TIMEOUT_MS};
    int rc = ch_node_children_start(c->node, s->specs, count, &opts, s->results);
    for (size_t i = 0; i < count; i++) {
        int r = (rc == 0 || rc == CH_EPARTIAL || rc == -ETIMEDOUT) ? s->results[i] : rc;
        if (r == 0) {
            s->out->started++;
            continue;
        }
        if (!s->out->failed++) s->out->first_error = r;
    }
}

int nodectl_start_range(nodectl *c, const char *prefix, uint64_t count, const char *type,
                        bool index_arg, nodectl_started *out)
{
    *out = (nodectl_started){0};
    start_many s = {.prefix = prefix,
                    .type = type,
                    .index_arg = index_arg,
                    .stride = strlen(prefix) + 21,
                    .out = out};
    s.ids = malloc(START_BATCH * s.stride);
    s.args = index_arg ? malloc(START_BATCH * sizeof(*s.args)) : NULL;
    s.specs = calloc(START_BATCH, sizeof(*s.specs));
    s.results = calloc(START_BATCH, sizeof(*s.results));
    int rc = -ENOMEM;
    if (!s.ids || !s.specs || !s.results || (index_arg && !s.args)) goto out;
    for (uint64_t done = 0; done < count; done += START_BATCH) {
        uint64_t left = count - done;
        start_many_batch(c, &s, done, left < START_BATCH ? (size_t)left : START_BATCH);
    }
    rc = 0;
out:
    free(s.ids);
    free(s.args);
    free(s.specs);
    free(s.results);
    return rc;
}

void nodectl_put_started(const ctlout *o, const nodectl_started *s, bool close_json)
{
    const char *err = s->failed ? ch_strerror(s->first_error) : NULL;
    if (!o->json) {
        ch_ctl_reply_append(o->r, "started %" PRIu64 " failed %" PRIu64 "\n", s->started,
                            s->failed);
        if (err) ch_ctl_reply_append(o->r, "first error: %s\n", err);
        return;
    }
    ch_ctl_reply_append(o->r, "{\"started\":%" PRIu64 ",\"failed\":%" PRIu64, s->started,
                        s->failed);
    if (err) {
        ch_ctl_reply_append(o->r, ",\"first_error\":");
        ctlout_json_str(o->r, err, strlen(err));
    }
    if (close_json) ch_ctl_reply_append(o->r, "}\n");
}

/* start-many PREFIX COUNT TYPE, and start-counters PREFIX COUNT (type counter, counter i
 * starting at i). */
static int start_range_cmd(nodectl *c, const ctlout *o, const char *prefix, const char *count_s,
                           const char *type, bool index_arg)
{
    uint64_t count = 0;
    if (strlen(prefix) > CH_ID_MAX || nodectl_parse_count(count_s, START_MANY_MAX, &count) < 0)
        return ctlout_fail(o, NODECTL_USAGE, "usage: %s (COUNT 1..%llu, PREFIX up to %d bytes)",
                           index_arg ? "start-counters PREFIX COUNT"
                                     : "start-many PREFIX COUNT TYPE",
                           START_MANY_MAX, CH_ID_MAX);
    nodectl_started s;
    int rc = nodectl_start_range(c, prefix, count, type, index_arg, &s);
    if (rc < 0) return ctlout_fail(o, NODECTL_FAILED, "start: %s", ch_strerror(rc));
    nodectl_put_started(o, &s, true);
    return s.failed ? NODECTL_FAILED : NODECTL_OK;
}

static int cmd_start_many(nodectl *c, const ctlout *o, int argc, char **argv)
{
    return start_range_cmd(c, o, argv[1], argv[2], argv[3], false);
}

static int cmd_start_counters(nodectl *c, const ctlout *o, int argc, char **argv)
{
    return start_range_cmd(c, o, argv[1], argv[2], "counter", true);
}

static void put_stop(const ctlout *o, const char *id, int r, bool first)
{
    if (!o->json) {
        ch_ctl_reply_append(o->r, r == 0 ? "stopped " : "error: ");
        ctlout_text_str(o->r, id, strlen(id));
        ch_ctl_reply_append(o->r, r == 0 ? "\n" : ": %s\n", ch_strerror(r));
        return;
    }
    ch_ctl_reply_append(o->r, "%s{\"id\":", first ? "" : ",");
    ctlout_json_str(o->r, id, strlen(id));
    ch_ctl_reply_append(o->r, ",\"stopped\":%s", r == 0 ? "true" : "false");
    if (r != 0) {
        ch_ctl_reply_append(o->r, ",\"error\":");
        ctlout_json_str(o->r, ch_strerror(r), strlen(ch_strerror(r)));
    }
    ch_ctl_reply_append(o->r, "}");
}

static int cmd_stop(nodectl *c, const ctlout *o, int argc, char **argv)
{
    size_t n = (size_t)argc - 1;
    int results[MAX_ARGS];
    for (size_t i = 0; i < n; i++)
        results[i] = -ETIMEDOUT;
    ch_batch_opts opts = {.timeout_ms = BATCH_TIMEOUT_MS};
    int rc = ch_node_children_stop(c->node, (const char *const *)argv + 1, NULL, n, &opts, results);
    int st = NODECTL_OK;
    if (o->json) ch_ctl_reply_append(o->r, "[");
    for (size_t i = 0; i < n; i++) {
        int r = (rc == 0 || rc == CH_EPARTIAL || rc == -ETIMEDOUT) ? results[i] : rc;
        put_stop(o, argv[i + 1], r, i == 0);
        if (r == CH_ENOPROC && st == NODECTL_OK) st = NODECTL_NOT_FOUND;
        if (r != 0 && r != CH_ENOPROC) st = NODECTL_FAILED;
    }
    if (o->json) ch_ctl_reply_append(o->r, "]\n");
    return st;
}

/* ---- send, call ---------------------------------------------------------------------------- */

/* -EAGAIN means a full mailbox and nothing queued: retry a little, as the API asks. */
int nodectl_send_retry(ch_node *n, const char *id, const void *msg, size_t len)
{
    uint64_t deadline = now_ns() + SEND_RETRY_NS;
    for (;;) {
        int rc = ch_send(n, id, CH_ID_CSTR, msg, len);
        if (rc != -EAGAIN || now_ns() > deadline) return rc;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL); /* back-off while the reactors drain */
    }
}

static int cmd_send(nodectl *c, const ctlout *o, int argc, char **argv)
{
    size_t len = 0;
    char *msg = join_args(argc, argv, 2, &len);
    if (!msg) return ctlout_fail(o, NODECTL_FAILED, "send: %s", ch_strerror(-ENOMEM));
    int rc = nodectl_send_retry(c->node, argv[1], msg, len);
    free(msg);
    if (rc < 0) return fail_code(o, rc, "send", argv[1]);
    ch_ctl_reply_append(o->r, o->json ? "{\"sent\":true}\n" : "sent\n");
    return NODECTL_OK;
}

static int call_buffer(nodectl *c)
{
    if (c->reply) return 0;
    c->reply = malloc(c->reply_cap);
    return c->reply ? 0 : -ENOMEM;
}

static int cmd_call(nodectl *c, const ctlout *o, int argc, char **argv)
{
    size_t len = 0, got = 0;
    char *msg = join_args(argc, argv, 2, &len);
    int rc = msg ? call_buffer(c) : -ENOMEM;
    if (rc == 0)
        rc = ch_call(c->node, argv[1], CH_ID_CSTR, msg, len, c->reply, c->reply_cap, &got, 0);
    free(msg);
    if (rc == -ENODATA)
        return ctlout_fail(o, NODECTL_FAILED, "call %s: no reply (a request the type ignores?)",
                           argv[1]);
    if (rc < 0) return fail_code(o, rc, "call", argv[1]);
    if (!o->json) {
        ctlout_raw(o->r, c->reply, got);
        ch_ctl_reply_append(o->r, "\n");
        return NODECTL_OK;
    }
    ch_ctl_reply_append(o->r, "{\"id\":");
    ctlout_json_str(o->r, argv[1], strlen(argv[1]));
    ch_ctl_reply_append(o->r, ",\"reply\":");
    ctlout_json_str(o->r, c->reply, got);
    ch_ctl_reply_append(o->r, "}\n");
    return NODECTL_OK;
}

/* ---- stats, epoch, partition-reset, leave, help ----------------------------------------- */

static void put_stat(const ctlout *o, const char *name, uint64_t v, bool first)
{
    if (o->json)
        ch_ctl_reply_append(o->r, "%s\"%s\":%" PRIu64, first ? "{" : ",", name, v);
    else
        ch_ctl_reply_append(o->r, "%s %" PRIu64 "\n", name, v);
}

static int cmd_stats(nodectl *c, const ctlout *o, int argc, char **argv)
{
    ch_node_stats s;
    nodectl_hooks *h = &c->hooks;
    int rc = ch_node_stats_get(c->node, &s);
    if (rc < 0) return ctlout_fail(o, NODECTL_FAILED, "stats: %s", ch_strerror(rc));
    const struct {
        const char *name;
        uint64_t v;
    } rows[] = {
        {"processes", s.processes},
        {"started", s.started},
        {"stopped", s.stopped},
        {"restarts", s.restarts},
        {"crashes", s.crashes},
        {"messages", s.messages},
        {"dead_letters", s.dead_letters},
        {"intensity_exceeded", s.intensity_exceeded},
        {"slow_terminates", s.slow_terminates},
        {"crash_restarts", s.crash_restarts},
        {"rejoins", s.rejoins},
        {"conflicts", s.conflicts},
        {"bad_frames", s.bad_frames},
        {"refused_peers", s.refused_peers},
        {"accept_pauses", s.accept_pauses},
        {"migrating", s.migrating},
        {"migrated_out", s.migrated_out},
        {"migrated_in", s.migrated_in},
        {"migration_failures", s.migration_failures},
        {"forwarded_messages", s.forwarded_messages},
        {"held_messages", s.held_messages},
        {"handover_bytes_raw", s.handover_bytes_raw},
        {"handover_bytes_wire", s.handover_bytes_wire},
        {"handover_frames_zstd", s.handover_frames_zstd},
        {"handover_frames_raw", s.handover_frames_raw},
        {"handover_frames_lane", s.handover_frames_lane},
        {"handover_lanes_lost", s.handover_lanes_lost},
        {"pause_p50_us", s.pause_p50_us},
        {"pause_p99_us", s.pause_p99_us},
        {"pause_max_us", s.pause_max_us},
        {"hook_children_migrated", atomic_load(&h->migrated_events)},
        {"hook_children_migrated_ids", atomic_load(&h->migrated_ids)},
        {"hook_migration_failed", atomic_load(&h->failed)},
        {"hook_pre_children_redistribution", atomic_load(&h->redist_events)},
        {"hook_pre_children_redistribution_ids", atomic_load(&h->redist_ids)},
        {"epoch", ch_node_epoch(c->node)},
        {"partitioned", ch_node_partitioned(c->node) == 1},
        {"port", (uint64_t)ch_node_port(c->node)},
        {"metrics_port", (uint64_t)atomic_load(&c->metrics_port)},
        {"cores", ch_node_cores(c->node)},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        put_stat(o, rows[i].name, rows[i].v, i == 0);
    if (o->json)
        ch_ctl_reply_append(o->r, ",\"node\":\"%016" PRIx64 "\"}\n", ch_node_id(c->node));
    else
        ch_ctl_reply_append(o->r, "node %016" PRIx64 "\n", ch_node_id(c->node));
    return NODECTL_OK;
}

static int cmd_epoch(nodectl *c, const ctlout *o, int argc, char **argv)
{
    ch_ctl_reply_append(o->r, o->json ? "{\"epoch\":%" PRIu64 "}\n" : "%" PRIu64 "\n",
                        ch_node_epoch(c->node));
    return NODECTL_OK;
}

static int cmd_partition_reset(nodectl *c, const ctlout *o, int argc, char **argv)
{
    int rc = ch_node_partition_reset(c->node);
    if (rc < 0) return ctlout_fail(o, NODECTL_FAILED, "partition-reset: %s", ch_strerror(rc));
    ch_ctl_reply_append(o->r, o->json ? "{\"ok\":true}\n" : "partition reset\n");
    return NODECTL_OK;
}

/* The leave itself stops the node, which would cut this reply off: the main thread does
 * it once woken, and this handler returns first so that its answer goes out. */
static int cmd_leave(nodectl *c, const ctlout *o, int argc, char **argv)
{
    char b = NODECTL_WAKE_LEAVE;
    /* A full pipe holds wake-ups enough: the main thread is leaving already. */
    if (write(c->wake_fd, &b, 1) != 1 && errno != EAGAIN)
        return ctlout_fail(o, NODECTL_FAILED, "leave: cannot wake the main thread");
    ch_ctl_reply_append(o->r, o->json ? "{\"leaving\":true}\n" : "leaving\n");
    return NODECTL_OK;
}

/* Blocks the control thread while the node hands its processes over (bounded by the
 * node's leave wait): the answer says how it went. */
static int cmd_drain(nodectl *c, const ctlout *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    ch_node_stats before, after;
    int rc = ch_node_stats_get(c->node, &before);
    if (rc == 0 && (rc = ch_node_drain(c->node)) == CH_EPARTIAL) rc = 1;
    if (rc >= 0 && ch_node_stats_get(c->node, &after) < 0) rc = -EIO; /* cannot count: say so */
    if (rc < 0) return ctlout_fail(o, NODECTL_FAILED, "drain: %s", ch_strerror(rc));
    /* The node stays up: what it still holds did not move, however the moves ended. */
    uint64_t moved = after.migrated_out - before.migrated_out;
    ch_ctl_reply_append(o->r,
                        o->json ? "{\"drained\":true,\"moved\":%" PRIu64 ",\"left\":%" PRIu64 "}\n"
                                : "drained: moved %" PRIu64 " processes, %" PRIu64 " not moved\n",
                        moved, after.processes);
    return rc == 0 && after.processes == 0 ? NODECTL_OK : NODECTL_FAILED;
}

/* The Prometheus text, as --metrics serves it (--json: the same text in a string). */
static int cmd_metrics(nodectl *c, const ctlout *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    char *text;
    size_t len;
    int rc = metrics_render(c->node, &text, &len);
    if (rc < 0) return ctlout_fail(o, NODECTL_FAILED, "metrics: %s", ch_strerror(rc));
    if (o->json) {
        ch_ctl_reply_append(o->r, "{\"metrics\":");
        ctlout_json_str(o->r, text, len);
        ch_ctl_reply_append(o->r, "}\n");
    } else {
        ch_ctl_reply_append(o->r, "%s", text);
    }
    free(text);
    return NODECTL_OK;
}

static int cmd_help(nodectl *c, const ctlout *o, int argc, char **argv);

static const command commands[] = {
    {"members", "", 0, 0, cmd_members, "every member: ID ADDR STATE CORES [drained] [self]"},
    {"metrics", "", 0, 0, cmd_metrics, "the Prometheus text (as --metrics serves it)"},
    {"drain", "", 0, 0, cmd_drain, "hands every process over, leaves the ring, stays up"},
    {"procs", "[--local] [--tag T]", 0, 3, cmd_procs, "processes: ID TYPE NODE CORE"},
    {"lookup", "ID", 1, 1, cmd_lookup, "one process: ID TYPE NODE CORE INCARNATION TAG [pin NODE]"},
    {"migrate", "ID NODE", 2, 2, cmd_migrate, "pins ID to NODE (0: unpins) and waits for it"},
    {"start", "ID TYPE [ARG]", 2, 3, cmd_start, "starts a process"},
    {"start-many", "PREFIX COUNT TYPE", 3, 3, cmd_start_many, "starts PREFIX0..PREFIX<COUNT-1>"},
    {"start-counters", "PREFIX COUNT", 2, 2, cmd_start_counters,
     "starts counters PREFIX0..PREFIX<COUNT-1>, PREFIX<i> holding i"},
    {"start-blobs", "PREFIX COUNT SIZE", 3, 3, nodectl_cmd_start_blobs,
     "starts blobs holding SIZE bytes of content made from their id"},
    {"stop", "ID...", 1, MAX_ARGS - 1, cmd_stop, "stops processes"},
    {"send", "ID MSG...", 2, -1, cmd_send, "casts MSG (the words joined by spaces)"},
    {"call", "ID MSG...", 2, -1, cmd_call, "calls with MSG and prints the reply"},
    {"send-many", "PREFIX COUNT MSG...", 3, -1, nodectl_cmd_send_many,
     "casts MSG to PREFIX0..PREFIX<COUNT-1>"},
    {"pump", "PREFIX COUNT ROUNDS SENDER [ROUND_MS]", 4, 5, nodectl_cmd_pump,
     "background thread: 's SENDER r' to each, r = 1..ROUNDS"},
    {"pump-stop", "", 0, 0, nodectl_cmd_pump_stop, "this node's pumps end after their round"},
    {"pump-wait", "[TIMEOUT_MS]", 0, 1, nodectl_cmd_pump_wait,
     "waits for this node's pumps: rounds, sent, failed"},
    {"pumps", "", 0, 0, nodectl_cmd_pumps, "this node's pumps now"},
    {"check-seq", "PREFIX COUNT EXPECTED_TOTAL", 3, 3, nodectl_cmd_check_seq,
     "every seq process: that total, no order violation"},
    {"check-counters", "PREFIX COUNT [ADD [ALT]]", 2, 4, nodectl_cmd_check_counters,
     "counter PREFIX<i> holds i + ADD (or i + ALT)"},
    {"check-blobs", "PREFIX COUNT SIZE", 3, 3, nodectl_cmd_check_blobs,
     "every blob holds its start-blobs content"},
    {"placement", "PREFIX COUNT", 2, 2, nodectl_cmd_placement,
     "processes not on their ring owner, and missing ones"},
    {"stats", "", 0, 0, cmd_stats, "the node's counters, epoch, partition state, id, port"},
    {"epoch", "", 0, 0, cmd_epoch, "the ring epoch"},
    {"partition-reset", "", 0, 0, cmd_partition_reset, "forgets the largest cluster seen"},
    {"leave", "", 0, 0, cmd_leave, "leaves the hub gracefully, then the node exits"},
    {"help", "", 0, 0, cmd_help, "this list"},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static void put_help(ch_ctl_reply *r)
{
    ch_ctl_reply_append(r, "commands (add --json before the command for JSON):\n");
    for (size_t i = 0; i < NCOMMANDS; i++) {
        char lhs[64];
        snprintf(lhs, sizeof(lhs), "%s %s", commands[i].name, commands[i].args);
        ch_ctl_reply_append(r, "  %-34s %s\n", lhs, commands[i].summary);
    }
}

static int cmd_help(nodectl *c, const ctlout *o, int argc, char **argv)
{
    put_help(o->r);
    return NODECTL_OK;
}

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0) return &commands[i];
    return NULL;
}

int nodectl_handler(void *ud, int argc, char **argv, ch_ctl_reply *reply)
{
    nodectl *c = ud;
    ctlout o = {.r = reply};
    char *args[MAX_ARGS];
    int n = 0;
    for (int i = 0; i < argc && n < MAX_ARGS; i++) {
        if (i == 1 && strcmp(argv[i], "--json") == 0)
            o.json = true;
        else
            args[n++] = argv[i];
    }
    const command *cmd = n > 0 ? find_command(args[0]) : NULL;
    if (!cmd && o.json)
        return ctlout_fail(&o, NODECTL_USAGE, "unknown command '%s' (try help)", n ? args[0] : "");
    if (!cmd) {
        ctlout_fail(&o, NODECTL_USAGE, "unknown command '%s'", n ? args[0] : "");
        put_help(reply);
        return NODECTL_USAGE;
    }
    int nargs = n - 1;
    if (nargs < cmd->min || (cmd->max >= 0 && nargs > cmd->max))
        return ctlout_fail(&o, NODECTL_USAGE, "usage: %s %s", cmd->name, cmd->args);
    return cmd->run(c, &o, n, args);
}

int nodectl_init(nodectl *c, ch_node *node, int wake_fd, size_t reply_cap)
{
    *c = (nodectl){.node = node, .wake_fd = wake_fd, .reply_cap = reply_cap};
    return pump_set_new(&c->pumps);
}

void nodectl_close(nodectl *c)
{
    pump_set_close(c->pumps);
}

void nodectl_free(nodectl *c)
{
    pump_set_free(c->pumps);
    c->pumps = NULL;
    free(c->reply);
    c->reply = NULL;
}
