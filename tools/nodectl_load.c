/*
 * tools/nodectl_load.c - the node's load and verification commands (see nodectl_load.h).
 *
 * Load: start-blobs (start-many and start-counters live with start in nodectl.c),
 * send-many, and the pumps (pump.h). Checks: check-seq, check-counters, check-blobs call
 * every process of a range through callmany and judge each answer as it arrives; they
 * share one report: `ok COUNT`, or `bad B of COUNT missing M errors E` and the first few
 * problems, one per line (status 4). placement compares where the registry says each
 * process lives with its ring owner.
 */
#include "nodectl_load.h"

#include "blob.h"
#include "callmany.h"
#include "counter.h"
#include "pump.h"
#include "seq.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RANGE_MAX         10000000ull /* ids per command */
#define CHECK_MAX         1000000ull  /* ids per check (an item each) */
#define CHECK_CALL_MS     10000
#define FIRST_PROBLEMS    5
#define PUMP_WAIT_MS      30000u
#define PUMP_WAIT_MAX_MS  3600000ull
#define PUMP_ROUNDS_MAX   1000000000000ull
#define PUMP_ROUND_MS_MAX 3600000ull
#define ID_ROOM           20 /* decimal digits a range appends to its prefix */

/* PREFIX and COUNT of a range command; NODECTL_OK or a usage failure. */
static int parse_range(const ctlout *o, const char *prefix, const char *count_s, uint64_t max,
                       uint64_t *count, const char *usage)
{
    if (!*prefix || strlen(prefix) > CH_ID_MAX - ID_ROOM ||
        nodectl_parse_count(count_s, max, count) < 0)
        return ctlout_fail(o, NODECTL_USAGE, "usage: %s (COUNT 1..%" PRIu64 ", PREFIX 1..%d bytes)",
                           usage, max, CH_ID_MAX - ID_ROOM);
    return NODECTL_OK;
}

/* A whole decimal number in [0, max]. 0 or -1. */
static int parse_u64_max(const char *s, uint64_t max, uint64_t *out)
{
    if (strcmp(s, "0") == 0) {
        *out = 0;
        return 0;
    }
    return nodectl_parse_count(s, max, out);
}

static void range_id(char *id, size_t cap, const char *prefix, uint64_t i)
{
    snprintf(id, cap, "%s%" PRIu64, prefix, i);
}

/* ---- start-blobs, send-many ------------------------------------------------------------- */

typedef struct send_totals {
    uint64_t sent, failed;
    int first_error;
} send_totals;

static void count_send(send_totals *t, int rc)
{
    if (rc == 0) {
        t->sent++;
        return;
    }
    if (!t->failed++) t->first_error = rc;
}

/* Gives each blob its content with a "set" cast: the content is state only, not the
 * spec's argument, so a blob restarted from its spec (a crash) comes back empty, and a
 * check tells a moved state from a reset one. */
static void set_blobs(nodectl *c, const char *prefix, uint64_t count, size_t size, send_totals *t,
                      char *msg)
{
    char id[CH_ID_MAX + 1];
    memcpy(msg, "set ", 4);
    for (uint64_t i = 0; i < count; i++) {
        range_id(id, sizeof(id), prefix, i);
        blob_content(id, strlen(id), msg + 4, size);
        count_send(t, nodectl_send_retry(c->node, id, msg, size + 4));
    }
}

int nodectl_cmd_start_blobs(nodectl *c, const ctlout *o, int argc, char **argv)
{
    (void)argc;
    uint64_t count = 0, size = 0;
    size_t max = (c->reply_cap < BLOB_MAX ? c->reply_cap : BLOB_MAX) - 4; /* "set " */
    int st = parse_range(o, argv[1], argv[2], RANGE_MAX, &count, "start-blobs PREFIX COUNT SIZE");
    if (st != NODECTL_OK) return st;
    if (nodectl_parse_count(argv[3], max, &size) < 0)
        return ctlout_fail(o, NODECTL_USAGE, "start-blobs: SIZE must be 1..%zu", max);
    char *msg = malloc(size + 4);
    nodectl_started s;
    int rc = msg ? nodectl_start_range(c, argv[1], count, BLOB_TYPE_NAME, false, &s) : -ENOMEM;
    if (rc < 0) {
        free(msg);
        return ctlout_fail(o, NODECTL_FAILED, "start-blobs: %s", ch_strerror(rc));
    }
    send_totals t = {0};
    set_blobs(c, argv[1], count, (size_t)size, &t, msg);
    free(msg);
    nodectl_put_started(o, &s, false);
    if (o->json)
        ch_ctl_reply_append(o->r, ",\"unset\":%" PRIu64 "}\n", t.failed);
    else if (t.failed)
        ch_ctl_reply_append(o->r, "error: %" PRIu64 " blobs did not get their content: %s\n",
                            t.failed, ch_strerror(t.first_error));
    return s.failed || t.failed ? NODECTL_FAILED : NODECTL_OK;
}

static void put_send_totals(const ctlout *o, const send_totals *t)
{
    const char *err = t->failed ? ch_strerror(t->first_error) : NULL;
    if (!o->json) {
        ch_ctl_reply_append(o->r, "sent %" PRIu64 " failed %" PRIu64 "\n", t->sent, t->failed);
        if (err) ch_ctl_reply_append(o->r, "first error: %s\n", err);
        return;
    }
    ch_ctl_reply_append(o->r, "{\"sent\":%" PRIu64 ",\"failed\":%" PRIu64, t->sent, t->failed);
    if (err) {
        ch_ctl_reply_append(o->r, ",\"first_error\":");
        ctlout_json_str(o->r, err, strlen(err));
    }
    ch_ctl_reply_append(o->r, "}\n");
}

int nodectl_cmd_send_many(nodectl *c, const ctlout *o, int argc, char **argv)
{
    uint64_t count = 0;
    int st = parse_range(o, argv[1], argv[2], RANGE_MAX, &count, "send-many PREFIX COUNT MSG...");
    if (st != NODECTL_OK) return st;
    size_t len = 0;
    for (int i = 3; i < argc; i++)
        len += strlen(argv[i]) + 1;
    char *msg = malloc(len);
    if (!msg) return ctlout_fail(o, NODECTL_FAILED, "send-many: %s", ch_strerror(-ENOMEM));
    len = 0;
    for (int i = 3; i < argc; i++) { /* the words joined by single spaces, as `send` does */
        size_t l = strlen(argv[i]);
        if (i > 3) msg[len++] = ' ';
        memcpy(msg + len, argv[i], l);
        len += l;
    }
    send_totals t = {0};
    char id[CH_ID_MAX + 1];
    for (uint64_t i = 0; i < count; i++) {
        range_id(id, sizeof(id), argv[1], i);
        count_send(&t, nodectl_send_retry(c->node, id, msg, len));
    }
    free(msg);
    put_send_totals(o, &t);
    return t.failed ? NODECTL_FAILED : NODECTL_OK;
}

/* ---- pumps ------------------------------------------------------------------------------ */

int nodectl_cmd_pump(nodectl *c, const ctlout *o, int argc, char **argv)
{
    static const char usage[] = "pump PREFIX COUNT ROUNDS SENDER [ROUND_MS]";
    pump_params p = {.prefix = argv[1]};
    uint64_t round_ms = 0;
    int st = parse_range(o, argv[1], argv[2], RANGE_MAX, &p.count, usage);
    if (st != NODECTL_OK) return st;
    if (nodectl_parse_count(argv[3], PUMP_ROUNDS_MAX, &p.rounds) < 0 ||
        parse_u64_max(argv[4], UINT64_MAX, &p.sender) < 0 ||
        (argc > 5 && parse_u64_max(argv[5], PUMP_ROUND_MS_MAX, &round_ms) < 0))
        return ctlout_fail(o, NODECTL_USAGE,
                           "usage: %s (ROUNDS 1..%llu, SENDER a u64, ROUND_MS 0..%llu)", usage,
                           PUMP_ROUNDS_MAX, PUMP_ROUND_MS_MAX);
    p.round_ms = (uint32_t)round_ms;
    unsigned handle = 0;
    int rc = pump_start(c->pumps, c->node, &p, &handle);
    if (rc == -EBUSY)
        return ctlout_fail(o, NODECTL_FAILED, "pump: at most %d pumps per node, or stopping",
                           PUMP_MAX);
    if (rc < 0) return ctlout_fail(o, NODECTL_FAILED, "pump: %s", ch_strerror(rc));
    ch_ctl_reply_append(o->r, o->json ? "{\"pump\":%u}\n" : "pump %u\n", handle);
    return NODECTL_OK;
}

int nodectl_cmd_pump_stop(nodectl *c, const ctlout *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    pump_stop(c->pumps);
    ch_ctl_reply_append(o->r, o->json ? "{\"stopping\":true}\n" : "stopping\n");
    return NODECTL_OK;
}

static void put_pump_totals(const ctlout *o, const pump_totals *t, bool timed_out)
{
    const char *err = t->failed ? ch_strerror(t->first_error) : NULL;
    if (!o->json) {
        ch_ctl_reply_append(
            o->r, "pumps %u running %u rounds %" PRIu64 " sent %" PRIu64 " failed %" PRIu64 "\n",
            t->pumps, t->running, t->rounds, t->sent, t->failed);
        if (err) ch_ctl_reply_append(o->r, "first error: %s\n", err);
        if (timed_out) ch_ctl_reply_append(o->r, "error: timed out, %u running\n", t->running);
        return;
    }
    ch_ctl_reply_append(o->r,
                        "{\"pumps\":%u,\"running\":%u,\"rounds\":%" PRIu64 ",\"sent\":%" PRIu64
                        ",\"failed\":%" PRIu64 ",\"timed_out\":%s",
                        t->pumps, t->running, t->rounds, t->sent, t->failed,
                        timed_out ? "true" : "false");
    if (err) {
        ch_ctl_reply_append(o->r, ",\"first_error\":");
        ctlout_json_str(o->r, err, strlen(err));
    }
    ch_ctl_reply_append(o->r, "}\n");
}

int nodectl_cmd_pump_wait(nodectl *c, const ctlout *o, int argc, char **argv)
{
    uint64_t ms = PUMP_WAIT_MS;
    if (argc > 1 && parse_u64_max(argv[1], PUMP_WAIT_MAX_MS, &ms) < 0)
        return ctlout_fail(o, NODECTL_USAGE, "usage: pump-wait [TIMEOUT_MS] (0..%llu)",
                           PUMP_WAIT_MAX_MS);
    pump_totals t;
    int rc = pump_wait(c->pumps, (uint32_t)ms, &t);
    put_pump_totals(o, &t, rc == -ETIMEDOUT);
    return rc < 0 || t.failed ? NODECTL_FAILED : NODECTL_OK;
}

int nodectl_cmd_pumps(nodectl *c, const ctlout *o, int argc, char **argv)
{
    (void)argc, (void)argv;
    pump_totals t;
    pump_totals_get(c->pumps, &t);
    put_pump_totals(o, &t, false);
    return NODECTL_OK;
}

/* ---- checks ----------------------------------------------------------------------------- */

enum {
    V_OK = 0,      /* as expected */
    V_ALT = 1,     /* as the alternative expectation (check-counters ALT) */
    V_BAD = 2,     /* answered, wrongly */
    V_MISSING = 3, /* no such process */
    V_ERROR = 4,   /* the call failed otherwise */
};

typedef struct checker checker;
struct checker {
    const char *prefix;
    uint64_t count;
    callmany_item *items;
    /* the expectation */
    uint64_t want_total;     /* check-seq */
    int64_t add, alt;        /* check-counters */
    bool has_alt;            /* */
    size_t size;             /* check-blobs */
    unsigned char *expected; /* check-blobs: scratch for one blob's content */
    uint64_t violations;     /* check-seq: summed over the answers */
    void (*describe)(const checker *k, const callmany_item *it, char *buf, size_t cap);
};

/* The verdict for a failed call; true when the call failed. */
static bool failed_call(int status, callmany_item *it)
{
    if (status == 0) return false;
    it->verdict = status == CH_ENOPROC ? V_MISSING : V_ERROR;
    return true;
}

static void seq_check(void *ud, uint64_t i, int status, const void *reply, size_t len,
                      callmany_item *it)
{
    (void)i;
    checker *k = ud;
    if (failed_call(status, it)) return;
    char text[96];
    unsigned long long total = 0, violations = 0;
    unsigned senders = 0;
    size_t n = len < sizeof(text) - 1 ? len : sizeof(text) - 1;
    memcpy(text, reply, n);
    text[n] = '\0';
    bool parsed =
        sscanf(text, "total=%llu violations=%llu senders=%u", &total, &violations, &senders) == 3;
    it->value[0] = (int64_t)total;
    it->value[1] = parsed ? (int64_t)violations : -1;
    k->violations += violations;
    it->verdict = parsed && total == k->want_total && violations == 0 ? V_OK : V_BAD;
}

static void seq_describe(const checker *k, const callmany_item *it, char *buf, size_t cap)
{
    if (it->value[1] < 0)
        snprintf(buf, cap, "not a seq answer");
    else
        snprintf(buf, cap, "total %" PRId64 " (want %" PRIu64 "), violations %" PRId64,
                 it->value[0], k->want_total, it->value[1]);
}

static void counter_check(void *ud, uint64_t i, int status, const void *reply, size_t len,
                          callmany_item *it)
{
    checker *k = ud;
    if (failed_call(status, it)) return;
    int64_t got = 0;
    bool parsed = counter_parse_i64(reply, len, &got);
    it->value[0] = got;
    it->value[1] = parsed ? 0 : -1;
    if (parsed && got == (int64_t)i + k->add)
        it->verdict = V_OK;
    else if (parsed && k->has_alt && got == (int64_t)i + k->alt)
        it->verdict = V_ALT;
    else
        it->verdict = V_BAD;
}

static void counter_describe(const checker *k, const callmany_item *it, char *buf, size_t cap)
{
    uint64_t i = (uint64_t)(it - k->items);
    if (it->value[1] < 0)
        snprintf(buf, cap, "not a counter answer");
    else if (k->has_alt)
        snprintf(buf, cap, "holds %" PRId64 " (want %" PRId64 " or %" PRId64 ")", it->value[0],
                 (int64_t)i + k->add, (int64_t)i + k->alt);
    else
        snprintf(buf, cap, "holds %" PRId64 " (want %" PRId64 ")", it->value[0],
                 (int64_t)i + k->add);
}

static void blob_check(void *ud, uint64_t i, int status, const void *reply, size_t len,
                       callmany_item *it)
{
    checker *k = ud;
    if (failed_call(status, it)) return;
    char id[CH_ID_MAX + 1];
    range_id(id, sizeof(id), k->prefix, i);
    blob_content(id, strlen(id), k->expected, k->size);
    const unsigned char *got = reply;
    size_t n = len < k->size ? len : k->size, at = 0;
    while (at < n && got[at] == k->expected[at])
        at++;
    it->value[0] = (int64_t)len;
    it->value[1] = (int64_t)at;
    it->verdict = len == k->size && at == len ? V_OK : V_BAD;
}

static void blob_describe(const checker *k, const callmany_item *it, char *buf, size_t cap)
{
    snprintf(buf, cap, "%" PRId64 " bytes (want %zu), first difference at byte %" PRId64,
             it->value[0], k->size, it->value[1]);
}

typedef struct check_counts {
    uint64_t ok, alt, bad, missing, errors;
    uint64_t short_, over; /* check-seq: processes with fewer updates than sent (lost or
                              reset), with more (doubled) */
} check_counts;

static void problem_text(const checker *k, const callmany_item *it, char *buf, size_t cap)
{
    if (it->verdict == V_MISSING)
        snprintf(buf, cap, "missing");
    else if (it->verdict == CALLMANY_NO_ANSWER)
        snprintf(buf, cap, "no answer");
    else if (it->verdict == V_ERROR)
        snprintf(buf, cap, "call failed: %s", ch_strerror(it->status));
    else
        k->describe(k, it, buf, cap);
}

/* The first few problems: "ID: what\n" lines, or JSON objects. */
static void put_problems(const ctlout *o, const checker *k)
{
    char id[CH_ID_MAX + 1], what[160];
    unsigned shown = 0;
    if (o->json) ch_ctl_reply_append(o->r, ",\"first\":[");
    for (uint64_t i = 0; i < k->count && shown < FIRST_PROBLEMS; i++) {
        const callmany_item *it = &k->items[i];
        if (it->verdict == V_OK || it->verdict == V_ALT) continue;
        range_id(id, sizeof(id), k->prefix, i);
        problem_text(k, it, what, sizeof(what));
        if (o->json) ch_ctl_reply_append(o->r, "%s{\"id\":", shown ? "," : "");
        ctlout_str(o, id, strlen(id));
        if (o->json) {
            ch_ctl_reply_append(o->r, ",\"problem\":");
            ctlout_json_str(o->r, what, strlen(what));
            ch_ctl_reply_append(o->r, "}");
        } else {
            ch_ctl_reply_append(o->r, ": %s\n", what);
        }
        shown++;
    }
    if (o->json) ch_ctl_reply_append(o->r, "]");
}

static int check_report(const ctlout *o, const checker *k, bool seq)
{
    check_counts n = {0};
    for (uint64_t i = 0; i < k->count; i++) {
        int v = k->items[i].verdict;
        n.ok += v == V_OK;
        n.alt += v == V_ALT;
        n.bad += v == V_BAD;
        n.missing += v == V_MISSING;
        n.errors += v == V_ERROR || v == CALLMANY_NO_ANSWER;
        bool counted = seq && v == V_BAD && k->items[i].value[1] >= 0;
        n.short_ += counted && (uint64_t)k->items[i].value[0] < k->want_total;
        n.over += counted && (uint64_t)k->items[i].value[0] > k->want_total;
    }
    uint64_t wrong = n.bad + n.missing + n.errors;
    if (o->json) {
        ch_ctl_reply_append(o->r,
                            "{\"count\":%" PRIu64 ",\"ok\":%s,\"bad\":%" PRIu64
                            ",\"missing\":%" PRIu64 ",\"errors\":%" PRIu64,
                            k->count, wrong ? "false" : "true", wrong, n.missing, n.errors);
        if (k->has_alt)
            ch_ctl_reply_append(o->r, ",\"exact\":%" PRIu64 ",\"alt\":%" PRIu64, n.ok, n.alt);
        if (seq)
            ch_ctl_reply_append(
                o->r, ",\"violations\":%" PRIu64 ",\"short\":%" PRIu64 ",\"over\":%" PRIu64,
                k->violations, n.short_, n.over);
        put_problems(o, k);
        ch_ctl_reply_append(o->r, "}\n");
    } else if (!wrong) {
        ch_ctl_reply_append(o->r, "ok %" PRIu64, k->count);
        if (k->has_alt) ch_ctl_reply_append(o->r, " exact %" PRIu64 " alt %" PRIu64, n.ok, n.alt);
        ch_ctl_reply_append(o->r, "\n");
    } else {
        ch_ctl_reply_append(o->r,
                            "bad %" PRIu64 " of %" PRIu64 " missing %" PRIu64 " errors %" PRIu64,
                            wrong, k->count, n.missing, n.errors);
        if (k->has_alt) ch_ctl_reply_append(o->r, " exact %" PRIu64 " alt %" PRIu64, n.ok, n.alt);
        if (seq)
            ch_ctl_reply_append(o->r, " violations %" PRIu64 " short %" PRIu64 " over %" PRIu64,
                                k->violations, n.short_, n.over);
        ch_ctl_reply_append(o->r, "\n");
        put_problems(o, k);
    }
    return wrong ? NODECTL_FAILED : NODECTL_OK;
}

/* Calls every process of the range with req and reports. */
static int run_check(nodectl *c, const ctlout *o, checker *k, const char *req, callmany_check fn,
                     bool seq)
{
    k->items = malloc(k->count * sizeof(*k->items));
    if (!k->items) return ctlout_fail(o, NODECTL_FAILED, "check: %s", ch_strerror(-ENOMEM));
    int64_t lost = callmany_run(c->node, k->prefix, k->count, req, strlen(req), CHECK_CALL_MS, fn,
                                k, k->items);
    int st = lost < 0 ? ctlout_fail(o, NODECTL_FAILED, "check: %s", ch_strerror((int)lost))
                      : check_report(o, k, seq);
    free(k->items);
    return st;
}

int nodectl_cmd_check_seq(nodectl *c, const ctlout *o, int argc, char **argv)
{
    (void)argc;
    static const char usage[] = "check-seq PREFIX COUNT EXPECTED_TOTAL";
    checker k = {.prefix = argv[1], .describe = seq_describe};
    int st = parse_range(o, argv[1], argv[2], CHECK_MAX, &k.count, usage);
    if (st != NODECTL_OK) return st;
    if (parse_u64_max(argv[3], UINT64_MAX, &k.want_total) < 0)
        return ctlout_fail(o, NODECTL_USAGE, "usage: %s", usage);
    return run_check(c, o, &k, "get", seq_check, true);
}

/* A signed decimal argument. */
static bool parse_i64_arg(const char *s, int64_t *out)
{
    return counter_parse_i64(s, strlen(s), out);
}

int nodectl_cmd_check_counters(nodectl *c, const ctlout *o, int argc, char **argv)
{
    static const char usage[] = "check-counters PREFIX COUNT [ADD [ALT]]";
    checker k = {.prefix = argv[1], .describe = counter_describe};
    int st = parse_range(o, argv[1], argv[2], CHECK_MAX, &k.count, usage);
    if (st != NODECTL_OK) return st;
    if ((argc > 3 && !parse_i64_arg(argv[3], &k.add)) ||
        (argc > 4 && !parse_i64_arg(argv[4], &k.alt)))
        return ctlout_fail(o, NODECTL_USAGE, "usage: %s (ADD and ALT: signed decimals)", usage);
    k.has_alt = argc > 4;
    return run_check(c, o, &k, "get", counter_check, false);
}

int nodectl_cmd_check_blobs(nodectl *c, const ctlout *o, int argc, char **argv)
{
    (void)argc;
    checker k = {.prefix = argv[1], .describe = blob_describe};
    uint64_t size = 0;
    int st = parse_range(o, argv[1], argv[2], CHECK_MAX, &k.count, "check-blobs PREFIX COUNT SIZE");
    if (st != NODECTL_OK) return st;
    if (nodectl_parse_count(argv[3], BLOB_MAX, &size) < 0)
        return ctlout_fail(o, NODECTL_USAGE, "check-blobs: SIZE must be 1..%u", BLOB_MAX);
    k.size = (size_t)size;
    k.expected = malloc(k.size);
    if (!k.expected) return ctlout_fail(o, NODECTL_FAILED, "check-blobs: %s", ch_strerror(-ENOMEM));
    st = run_check(c, o, &k, "get", blob_check, false);
    free(k.expected);
    return st;
}

/* ---- placement -------------------------------------------------------------------------- */

typedef struct placement {
    uint64_t misplaced, missing, errors;
    unsigned shown;
    struct {
        char id[CH_ID_MAX + 1];
        char what[96];
    } first[FIRST_PROBLEMS];
} placement;

/* Where id lives against its ring owner; a problem is counted, the first few kept. */
static void place_one(nodectl *c, const char *id, placement *pl)
{
    ch_proc_info *p = NULL;
    uint64_t owner = 0;
    char what[96] = "";
    int rc = ch_registry_lookup(c->node, id, CH_ID_CSTR, &p);
    if (rc == 0) rc = ch_node_owner_of(c->node, id, CH_ID_CSTR, &owner);
    if (rc == CH_ENOPROC) {
        pl->missing++;
        snprintf(what, sizeof(what), "missing");
    } else if (rc < 0) {
        pl->errors++;
        snprintf(what, sizeof(what), "lookup failed: %s", ch_strerror(rc));
    } else if (p->node != owner) {
        pl->misplaced++;
        snprintf(what, sizeof(what), "on %016" PRIx64 ", ring owner %016" PRIx64, p->node, owner);
    }
    ch_proc_info_free(p);
    if (!what[0] || pl->shown == FIRST_PROBLEMS) return;
    snprintf(pl->first[pl->shown].id, sizeof(pl->first[0].id), "%s", id);
    memcpy(pl->first[pl->shown++].what, what, sizeof(what));
}

static void put_placement(const ctlout *o, const placement *pl, uint64_t count)
{
    if (o->json)
        ch_ctl_reply_append(o->r,
                            "{\"count\":%" PRIu64 ",\"misplaced\":%" PRIu64 ",\"missing\":%" PRIu64
                            ",\"errors\":%" PRIu64 ",\"first\":[",
                            count, pl->misplaced, pl->missing, pl->errors);
    else
        ch_ctl_reply_append(
            o->r, "misplaced %" PRIu64 " missing %" PRIu64 " errors %" PRIu64 " of %" PRIu64 "\n",
            pl->misplaced, pl->missing, pl->errors, count);
    for (unsigned i = 0; i < pl->shown; i++) {
        const char *id = pl->first[i].id, *what = pl->first[i].what;
        if (o->json) ch_ctl_reply_append(o->r, "%s{\"id\":", i ? "," : "");
        ctlout_str(o, id, strlen(id));
        if (!o->json) {
            ch_ctl_reply_append(o->r, ": %s\n", what);
            continue;
        }
        ch_ctl_reply_append(o->r, ",\"problem\":");
        ctlout_json_str(o->r, what, strlen(what));
        ch_ctl_reply_append(o->r, "}");
    }
    if (o->json) ch_ctl_reply_append(o->r, "]}\n");
}

int nodectl_cmd_placement(nodectl *c, const ctlout *o, int argc, char **argv)
{
    (void)argc;
    uint64_t count = 0;
    int st = parse_range(o, argv[1], argv[2], RANGE_MAX, &count, "placement PREFIX COUNT");
    if (st != NODECTL_OK) return st;
    placement *pl = calloc(1, sizeof(*pl));
    if (!pl) return ctlout_fail(o, NODECTL_FAILED, "placement: %s", ch_strerror(-ENOMEM));
    char id[CH_ID_MAX + 1];
    for (uint64_t i = 0; i < count; i++) {
        range_id(id, sizeof(id), argv[1], i);
        place_one(c, id, pl);
    }
    put_placement(o, pl, count);
    st = pl->misplaced || pl->missing || pl->errors ? NODECTL_FAILED : NODECTL_OK;
    free(pl);
    return st;
}
