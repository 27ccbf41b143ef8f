/*
 * tools/kv.c - the Redis-protocol key-value service (see kv.h).
 *
 * Two halves. The "kv" process type holds one key's value and applies the service's
 * requests to it: a small binary protocol, [KV_MAGIC][op][operand], answered with
 * [KV_MAGIC][status][result]. The service side runs on the server skeleton
 * (corehub/server.h): each connection parses RESP commands into a queue of requests; a
 * request becomes one operation per key, each a ch_call_async to the key's process from
 * the connection's reactor (its answer comes back to that same reactor). Answers are
 * written in the queue's order as the requests at its head complete, so pipelined
 * commands are answered in order while their calls run in parallel.
 *
 * A write to a missing key (its call fails with CH_ENOPROC) starts the key's process with
 * the write itself as init argument; if another client created it meanwhile
 * (CH_EALREADY), the write is simply called again. A start completes on whatever reactor
 * finishes the batch, so its answer is posted back to the connection's reactor.
 *
 * Lifetimes: a request is shared by its connection's queue and by the operations in
 * flight (an atomic count, because a start's completion may run on another reactor). When
 * the connection closes, its requests are orphaned (conn = NULL) and the last operation to
 * come back frees them; nothing of an orphan touches the connection or the service.
 *
 * Bounds: a connection holds at most KV_MAX_PENDING unanswered requests (then the server
 * stops reading it until half of them are answered), and the server's write queue stops
 * reading a client that does not read its answers. Answers are bounded in bytes too, as
 * Redis's client-output-buffer-limit does, because a small request can ask for a lot (an
 * MGET naming one 512 KiB key 2000 times asks for 1 GiB): `held` counts the bytes of
 * values and answers a connection keeps until the server takes them. Above the soft limit
 * (reply_limit / 8), or while the operations in flight could bring it past the hard limit,
 * no new command is read, so a pipelining client is throttled; past the hard limit
 * (reply_limit) the connection is closed, with one line on stderr and a counter.
 */
#define _GNU_SOURCE
#include "kv.h"

#include "cli.h"
#include "resp.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define KV_MAGIC       0xC7
#define KV_MAX_PENDING 256u  /* unanswered requests per connection */
#define KV_ATTEMPTS    16    /* calls of one write racing with creations and deletions */
#define KV_EAGAIN_MAX  1000  /* turns an operation waits for room in a mailbox */
#define KV_CALL_MS     30000 /* a call's deadline: a key in the middle of a move may take a while */

/* Operations of the process protocol. */
enum {
    OP_GET = 'g',
    OP_SET = 's',
    OP_INCR = 'i', /* operand: int64 little-endian delta */
    OP_APPEND = 'a',
    OP_STRLEN = 'l',
    OP_EXISTS = 'x',
    OP_DEL = 'd', /* the process answers, then exits */
};

/* Statuses of its answers. */
enum { ST_OK = 0, ST_NOTINT = 1, ST_OVERFLOW = 2, ST_TOOBIG = 3, ST_NOMEM = 4 };

/* ---- the "kv" process type -------------------------------------------------------------- */

/* Sets the state to the decimal text of v. */
static int put_number(ch_proc *p, int64_t v)
{
    char text[24];
    int n = snprintf(text, sizeof(text), "%" PRId64, v);
    uint8_t *s = ch_proc_state_resize(p, (size_t)n);
    if (!s) return ST_NOMEM;
    memcpy(s, text, (size_t)n);
    return ST_OK;
}

static int write_set(ch_proc *p, const uint8_t *arg, size_t len)
{
    if (len > KV_MAX_VALUE) return ST_TOOBIG;
    if (len == 0) {
        ch_proc_state_resize(p, 0);
        return ST_OK;
    }
    uint8_t *s = ch_proc_state_resize(p, len);
    if (!s) return ST_NOMEM;
    memcpy(s, arg, len);
    return ST_OK;
}

static int write_append(ch_proc *p, const uint8_t *arg, size_t len, int64_t *num)
{
    size_t cur = 0;
    ch_proc_state(p, &cur);
    if (cur + len > KV_MAX_VALUE) return ST_TOOBIG;
    uint8_t *s = len ? ch_proc_state_resize(p, cur + len) : ch_proc_state(p, &cur);
    if (len && !s) return ST_NOMEM;
    if (len) memcpy(s + cur, arg, len);
    *num = (int64_t)(cur + len);
    return ST_OK;
}

/* fresh: the key is being created, so it counts from 0 (an existing empty string is not a
 * number, as in Redis). */
static int write_incr(ch_proc *p, const uint8_t *arg, size_t len, bool fresh, int64_t *num)
{
    if (len != 8) return ST_NOTINT;
    int64_t delta = (int64_t)cli_get_le64(arg), v = 0;
    size_t cur = 0;
    const void *s = ch_proc_state(p, &cur);
    if (!fresh && !resp_to_i64(s, cur, &v)) return ST_NOTINT;
    if ((delta > 0 && v > INT64_MAX - delta) || (delta < 0 && v < INT64_MIN - delta))
        return ST_OVERFLOW;
    *num = v + delta;
    return put_number(p, *num);
}

/* Applies a write; *num is what INCR and APPEND answer. A status, never a crash: a crash
 * would restart the process from its spec and lose the value. */
static int kv_write(ch_proc *p, uint8_t op, const uint8_t *arg, size_t len, bool fresh,
                    int64_t *num)
{
    switch (op) {
    case OP_SET:
        return write_set(p, arg, len);
    case OP_APPEND:
        return write_append(p, arg, len, num);
    case OP_INCR:
        return write_incr(p, arg, len, fresh, num);
    default:
        return -EINVAL;
    }
}

/* The init argument is the write that created the key. */
static int kv_init(ch_proc *p, const void *arg, size_t arg_len, unsigned flags)
{
    (void)flags; /* a migrated instance gets its state from alter_handover right after */
    const uint8_t *a = arg;
    if (arg_len == 0) return 0;
    int64_t num = 0;
    if (arg_len < 2 || a[0] != KV_MAGIC) return -EINVAL;
    return kv_write(p, a[1], a + 2, arg_len - 2, true, &num) == ST_OK ? 0 : -EINVAL;
}

static void answer(ch_proc *p, const ch_msg *m, uint8_t status, const void *data, size_t len)
{
    uint8_t small[256];
    uint8_t *out = len + 2 <= sizeof(small) ? small : malloc(len + 2);
    if (!out) {
        uint8_t oom[2] = {KV_MAGIC, ST_NOMEM};
        (void)ch_reply(p, m, oom, sizeof(oom));
        return;
    }
    out[0] = KV_MAGIC;
    out[1] = status;
    if (len) memcpy(out + 2, data, len);
    (void)ch_reply(p, m, out, len + 2); /* a lost reply: the caller times out */
    if (out != small) free(out);
}

static void answer_num(ch_proc *p, const ch_msg *m, int status, int64_t num)
{
    uint8_t le[8];
    cli_put_le64(le, (uint64_t)num);
    answer(p, m, (uint8_t)status, le, status == ST_OK ? 8 : 0);
}

static int kv_handle(ch_proc *p, const ch_msg *m)
{
    if (m->kind != CH_MSG_CALL) return CH_CONTINUE;
    const uint8_t *d = m->data;
    size_t len = 0;
    void *state = ch_proc_state(p, &len);
    if (m->len == 3 && memcmp(d, "get", 3) == 0) { /* `corehub ctl call KEY get` */
        (void)ch_reply(p, m, state, len);
        return CH_CONTINUE;
    }
    if (m->len < 2 || d[0] != KV_MAGIC) return CH_CONTINUE; /* no reply: -ENODATA */
    int64_t num = 0;
    switch (d[1]) {
    case OP_GET:
        answer(p, m, ST_OK, state, len);
        break;
    case OP_STRLEN:
        answer_num(p, m, ST_OK, (int64_t)len);
        break;
    case OP_EXISTS:
        answer(p, m, ST_OK, NULL, 0);
        break;
    case OP_DEL:
        answer(p, m, ST_OK, NULL, 0);
        return CH_EXIT; /* transient: not restarted, removed from the registry */
    default: {
        int st = kv_write(p, d[1], d + 2, m->len - 2, false, &num);
        if (st >= 0) answer_num(p, m, st, num);
        break;
    }
    }
    return CH_CONTINUE;
}

static const ch_process_type kv_process = {
    .name = KV_TYPE_NAME,
    .init = kv_init,
    .handle = kv_handle,
};

const ch_process_type *kv_type(void)
{
    return &kv_process;
}

/* ---- the service: connections, requests, operations -------------------------------------- */

typedef struct kv_stats {
    _Atomic uint64_t conns, commands, errors, cut; /* cut: closed past the reply limit */
    char pad[64 - 4 * sizeof(uint64_t)];
} kv_stats;

struct kv_service {
    ch_node *node;
    ch_server *srv;
    uint64_t started_ns;
    size_t reply_limit; /* hard limit of a connection's held bytes; soft: 1/8 of it */
    unsigned cores;
    kv_stats *stats; /* per core, written by that core only */
};

typedef struct kcmd kcmd;
typedef struct kreq kreq;

typedef struct kconn {
    kv_service *kv;
    ch_sconn h;
    unsigned core;
    resp_parser ps;
    kreq *head, *tail;
    unsigned pending;   /* requests in the queue */
    size_t ops_out;     /* operations not finished */
    size_t held;        /* bytes of values and answers not yet taken by the server */
    struct kkeys *keys; /* keys with an operation in flight (see "one key at a time") */
    bool paused;        /* reading paused: too many requests or bytes (must_wait) */
    bool quitting;      /* QUIT or a protocol error: no more commands */
    bool cut;           /* closed past the reply limit: answers are dropped */
} kconn;

enum { RES_NONE, RES_VALUE, RES_NUM, RES_NIL, RES_ERR };

typedef struct kop {
    kreq *req;
    const char *key;    /* the process id: KV_ID_PREFIX then the key (kv.h) */
    size_t key_len;     /* of the id: at least 1 */
    const uint8_t *msg; /* [KV_MAGIC][op][operand] */
    size_t msg_len;
    uint16_t attempts, eagains;
    uint64_t hash;     /* of the key */
    bool lined;        /* in its key's line (see op_start) */
    struct kop *after; /* the next operation of the connection on the same key */
    int start_rc;      /* written on the reactor that completed the start, read after the post */
    int res;           /* RES_* */
    int err;           /* RES_ERR: a negative code, or KV_E* below */
    int64_t num;       /* RES_NUM */
    uint8_t *val;      /* RES_VALUE: a copy, for commands of several keys */
    size_t val_len;
} kop;

struct kreq {
    kreq *next;
    kconn *conn; /* NULL once the connection is gone */
    ch_node *node;
    unsigned core;
    _Atomic int refs; /* the queue's, and one per operation in flight */
    const kcmd *cmd;
    bool done, close_after;
    uint32_t nops, left; /* operations, and those not finished */
    size_t held;         /* of its connection's held bytes, those of this request */
    resp_buf reply;
    kop ops[];
};

/* Errors of our own, beside the negative codes of the API. */
enum { KV_EWRONGTYPE = -20001, KV_ENOTINT = -20002, KV_EOVERFLOW = -20003, KV_ETOOBIG = -20004 };

typedef void (*kcmd_run)(kconn *k, const kcmd *c, const resp_arg *a, size_t n);
typedef void (*kcmd_fill)(kconn *k, resp_buf *b, const resp_arg *a, size_t n);

struct kcmd {
    const char *name;
    int arity;             /* Redis's convention: N exactly, -N at least N */
    int first, last, step; /* key positions, for COMMAND */
    const char *flags;     /* space-separated, for COMMAND */
    uint8_t op;            /* key commands: the operation on each key... */
    kcmd_run run;          /* ...and the builder of their request */
    kcmd_fill fill;        /* the others: their answer, at once */
    bool closes;           /* the connection closes after the answer (QUIT) */
};

static void flush(kconn *k);
/* Counters have one writer, the connection's reactor. */
static void bump(_Atomic uint64_t *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

static void req_free(kreq *r)
{
    for (uint32_t i = 0; i < r->nops; i++)
        free(r->ops[i].val);
    resp_buf_free(&r->reply);
    free(r);
}

static void req_unref(kreq *r)
{
    if (atomic_fetch_sub(&r->refs, 1) == 1) req_free(r);
}

/* A request with room for nops operations and `arena` bytes of keys and operands; queued
 * on k. */
static kreq *req_new(kconn *k, const kcmd *cmd, uint32_t nops, size_t arena)
{
    kreq *r = calloc(1, sizeof(*r) + nops * sizeof(kop) + arena);
    if (!r) return NULL;
    r->conn = k;
    r->node = k->kv->node;
    r->core = k->core;
    r->cmd = cmd;
    r->nops = r->left = nops;
    atomic_init(&r->refs, 1);
    resp_buf_init(&r->reply);
    if (k->tail)
        k->tail->next = r;
    else
        k->head = r;
    k->tail = r;
    k->pending++;
    return r;
}

/* The answer is ready. It leaves with the next flush, which every entry point (kv_data,
 * the answers of calls and starts) runs last: requests are freed only there, never under
 * the feet of code that walks the queue. */
static void complete(kreq *r)
{
    r->done = true;
    if (r->reply.oom) { /* the answer could not be built: say so rather than cut it */
        resp_buf_free(&r->reply);
        resp_error(&r->reply, "ERR out of memory building the reply");
    }
    if (r->reply.len && r->reply.p[0] == '-') bump(&r->conn->kv->stats[r->core].errors);
}

/* Whether the connection must stop reading commands (resuming: with hysteresis, so that
 * it does not flap). The operations in flight count at the largest value they may bring. */
static bool must_wait(const kconn *k, bool resuming)
{
    size_t limit = k->kv->reply_limit, soft = limit / 8;
    unsigned max_pending = resuming ? KV_MAX_PENDING / 2 : KV_MAX_PENDING - 1;
    if (k->pending > max_pending || k->held >= (resuming ? soft / 2 : soft)) return true;
    return k->ops_out && k->ops_out > (limit - soft) / KV_MAX_VALUE; /* one request may run */
}

/* Counts len more bytes held for r's connection; false (and the connection is cut) when
 * that would pass the hard limit. */
static bool hold(kreq *r, size_t len)
{
    kconn *k = r->conn;
    if (k->cut) return false;
    if (k->held + len > k->kv->reply_limit) {
        k->cut = true;
        k->quitting = true;
        bump(&k->kv->stats[k->core].cut);
        char peer[CH_ADDR_MAX + 1] = "?";
        ch_sconn_peer(k->h, peer, sizeof(peer));
        fprintf(stderr,
                "corehub node: kv: closing %s: its answers pass %zu bytes (--kv-reply-limit)\n",
                peer, k->kv->reply_limit);
        ch_sconn_close(k->h, 0);
        return false;
    }
    k->held += len;
    r->held += len;
    return true;
}

/* Writes every answered request at the head of the queue, in order. */
static void flush(kconn *k)
{
    while (k->head && k->head->done) {
        kreq *r = k->head;
        int rc = ch_sconn_write(k->h, r->reply.p, r->reply.len);
        if (rc == -EAGAIN) return; /* on_drain calls again */
        if (rc < 0) return;        /* closing: on_close frees the queue */
        k->head = r->next;
        if (!k->head) k->tail = NULL;
        k->pending--;
        k->held -= r->held; /* the server's write queue has it now, bounded by write_high */
        bool last = r->close_after;
        req_unref(r);
        if (last) {
            ch_sconn_close(k->h, 1);
            return;
        }
    }
    if (k->paused && !must_wait(k, true)) {
        k->paused = false;
        ch_sconn_resume(k->h);
    }
}

/* ---- answers of the operations ------------------------------------------------------------- */

static void error_text(resp_buf *b, int err)
{
    switch (err) {
    case KV_EWRONGTYPE:
        resp_error(b, "WRONGTYPE Operation against a key holding the wrong kind of value");
        break;
    case KV_ENOTINT:
        resp_error(b, "ERR value is not an integer or out of range");
        break;
    case KV_EOVERFLOW:
        resp_error(b, "ERR increment or decrement would overflow");
        break;
    case KV_ETOOBIG:
        resp_error(b, "ERR string exceeds maximum allowed size (proto-max-bulk-len)");
        break;
    case CH_EBADID:
        resp_error(b, "ERR invalid key: a key is 0 to %d bytes", KV_KEY_MAX);
        break;
    case -ENOMEM:
        resp_error(b, "ERR out of memory");
        break;
    default:
        resp_error(b, "ERR corehub: %s", ch_strerror(err));
        break;
    }
}

/* The first failed operation, if any; except_type: not counting WRONGTYPE. */
static const kop *first_error(const kreq *r, bool except_type)
{
    for (uint32_t i = 0; i < r->nops; i++)
        if (r->ops[i].res == RES_ERR && !(except_type && r->ops[i].err == KV_EWRONGTYPE))
            return &r->ops[i];
    return NULL;
}

/* Every operation finished: the command's answer. */
static void answer_request(kreq *r)
{
    resp_buf *b = &r->reply;
    uint8_t op = r->cmd->op;
    bool mget = op == OP_GET && r->nops > 1;
    const kop *bad = first_error(r, mget);
    if (bad) {
        error_text(b, bad->err);
    } else if (mget) { /* a key of another type reads as nil, as in Redis */
        resp_array(b, r->nops);
        for (uint32_t i = 0; i < r->nops; i++) {
            kop *o = &r->ops[i];
            if (o->res == RES_VALUE)
                resp_bulk(b, o->val, o->val_len);
            else
                resp_nil(b);
            free(o->val); /* in the answer now: held once, not twice */
            o->val = NULL;
        }
        if (b->len > r->held) (void)hold(r, b->len - r->held); /* the headers */
    } else if (op == OP_GET) {
        if (r->ops[0].res == RES_NIL) resp_nil(b); /* else written by the call's answer */
    } else if (op == OP_SET) {
        resp_status(b, "OK");
    } else if (op == OP_DEL || op == OP_EXISTS) {
        int64_t count = 0;
        for (uint32_t i = 0; i < r->nops; i++)
            count += r->ops[i].res != RES_NIL;
        resp_int(b, count);
    } else { /* INCR*, DECR*, APPEND, STRLEN */
        resp_int(b, r->ops[0].res == RES_NIL ? 0 : r->ops[0].num);
    }
    complete(r);
}

/* ---- one key at a time ----------------------------------------------------------------------
 *
 * Calls from one reactor to one process arrive in the order they were made, but not around
 * a creation: a call that finds no process takes a detour through the registry, and the
 * write that found none starts the process while calls made after it are on their way. So a
 * connection has at most one operation in flight per key: the others wait in line behind
 * it, in the order of the commands, and go when it finished. Different keys go in parallel.
 * The line is a small open-addressing table of keys in flight, per connection.
 */

typedef struct kline {
    uint64_t hash; /* 0: a free slot */
    kop *first;    /* in flight */
    kop *last;     /* the end of the line */
} kline;

typedef struct kkeys {
    size_t cap, used; /* cap: a power of two */
    kline slot[];
} kkeys;

static uint64_t key_hash(const char *key, size_t len)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)key[i]) * 1099511628211ull;
    return h ? h : 1;
}

static bool same_key(const kop *a, const kop *b)
{
    return a->hash == b->hash && a->key_len == b->key_len &&
           memcmp(a->key, b->key, a->key_len) == 0;
}

static kline *line_find(kkeys *t, const kop *o)
{
    for (size_t i = o->hash & (t->cap - 1);; i = (i + 1) & (t->cap - 1))
        if (!t->slot[i].hash || same_key(t->slot[i].first, o)) return &t->slot[i];
}

static bool keys_grow(kconn *k)
{
    kkeys *old = k->keys;
    size_t cap = old ? old->cap * 2 : 16;
    kkeys *t = calloc(1, sizeof(*t) + cap * sizeof(kline));
    if (!t) return false;
    t->cap = cap;
    for (size_t i = 0; old && i < old->cap; i++) {
        if (!old->slot[i].hash) continue;
        *line_find(t, old->slot[i].first) = old->slot[i];
        t->used++;
    }
    free(old);
    k->keys = t;
    return true;
}

/* Removes a line, shifting back the entries its slot displaced (no tombstones). */
static void line_remove(kkeys *t, kline *l)
{
    size_t mask = t->cap - 1, hole = (size_t)(l - t->slot);
    t->slot[hole].hash = 0;
    t->used--;
    for (size_t i = (hole + 1) & mask; t->slot[i].hash; i = (i + 1) & mask) {
        size_t home = t->slot[i].hash & mask;
        bool movable = hole <= i ? (home <= hole || home > i) : (home <= hole && home > i);
        if (!movable) continue;
        t->slot[hole] = t->slot[i];
        t->slot[i].hash = 0;
        hole = i;
    }
}

static void op_call(kop *o);
static void op_fail(kop *o, int err);

/* Calls o now, or queues it behind the operation in flight on its key. */
static void op_start(kop *o)
{
    kconn *k = o->req->conn;
    o->hash = key_hash(o->key, o->key_len);
    if ((!k->keys || k->keys->used * 2 >= k->keys->cap) && !keys_grow(k)) {
        op_fail(o, -ENOMEM);
        return;
    }
    kline *l = line_find(k->keys, o);
    o->lined = true;
    if (l->hash) { /* wait in line */
        l->last->after = o;
        l->last = o;
        return;
    }
    *l = (kline){o->hash, o, o};
    k->keys->used++;
    op_call(o);
}

/* o's result is in: the next in line on its key goes. */
static void op_next(kop *o)
{
    kconn *k = o->req->conn;
    kline *l = line_find(k->keys, o);
    kop *next = o->after;
    if (!next) {
        line_remove(k->keys, l);
        return;
    }
    l->first = next;
    op_call(next);
}

static void op_finished(kop *o)
{
    kreq *r = o->req;
    r->conn->ops_out--;
    if (o->lined) op_next(o);
    if (--r->left == 0) answer_request(r);
}

static void op_fail(kop *o, int err)
{
    o->res = RES_ERR;
    o->err = err;
    op_finished(o);
}

static int status_error(uint8_t st)
{
    switch (st) {
    case ST_NOTINT:
        return KV_ENOTINT;
    case ST_OVERFLOW:
        return KV_EOVERFLOW;
    case ST_TOOBIG:
        return KV_ETOOBIG;
    default:
        return -ENOMEM;
    }
}

/* A [KV_MAGIC][status][result] answer. */
static void op_answered(kop *o, const uint8_t *p, size_t len)
{
    kreq *r = o->req;
    uint8_t op = o->msg[1];
    if (len < 2 || p[0] != KV_MAGIC) {
        op_fail(o, KV_EWRONGTYPE);
        return;
    }
    if (p[1] != ST_OK) {
        op_fail(o, status_error(p[1]));
        return;
    }
    p += 2;
    len -= 2;
    if (op == OP_GET && !hold(r, len)) {
        op_fail(o, -ENOBUFS); /* the connection is cut: nobody reads the answer */
        return;
    }
    if (op == OP_GET && r->nops == 1) { /* straight into the answer: no copy */
        resp_bulk(&r->reply, p, len);
        o->res = RES_VALUE;
    } else if (op == OP_GET) {
        o->val = malloc(len ? len : 1);
        if (!o->val) {
            op_fail(o, -ENOMEM);
            return;
        }
        if (len) memcpy(o->val, p, len);
        o->val_len = len;
        o->res = RES_VALUE;
    } else if (op == OP_INCR || op == OP_APPEND || op == OP_STRLEN) {
        if (len != 8) {
            op_fail(o, KV_EWRONGTYPE);
            return;
        }
        o->num = (int64_t)cli_get_le64(p);
        o->res = RES_NUM;
    } else {
        o->res = RES_NUM; /* SET, EXISTS, DEL: it was there */
    }
    op_finished(o);
}

/* The key was created by our start: the answer follows from the write alone. */
static void op_created(kop *o)
{
    uint8_t op = o->msg[1];
    const uint8_t *operand = o->msg + 2;
    o->res = RES_NUM;
    if (op == OP_INCR)
        o->num = (int64_t)cli_get_le64(operand);
    else if (op == OP_APPEND)
        o->num = (int64_t)(o->msg_len - 2);
    op_finished(o);
}

/* On the connection's reactor, after the start's completion was posted back. */
static void started_here(ch_node *n, void *ud)
{
    (void)n;
    kop *o = ud;
    kreq *r = o->req;
    kconn *k = r->conn;
    if (k && o->start_rc == 0)
        op_created(o);
    else if (k && o->start_rc == CH_EALREADY)
        op_call(o); /* created meanwhile by someone else: write to it */
    else if (k)
        op_fail(o, o->start_rc);
    req_unref(r);
    if (k) flush(k);
}

/* On whichever reactor finished the start. */
static void on_started(void *ud, const int *results, size_t count)
{
    kop *o = ud;
    o->start_rc = count == 1 ? results[0] : -EINVAL;
    if (ch_node_post(o->req->node, o->req->core, started_here, o) < 0)
        req_unref(o->req); /* the node is stopping: the connection goes too */
}

static void op_create(kop *o)
{
    kreq *r = o->req;
    ch_child_spec spec = {.id = o->key,
                          .id_len = o->key_len,
                          .type = KV_TYPE_NAME,
                          .arg = o->msg,
                          .arg_len = o->msg_len,
                          .restart = CH_TRANSIENT}; /* DEL's exit ends it for good */
    ch_batch_opts opts = {.on_done = on_started, .ud = o};
    atomic_fetch_add(&r->refs, 1);
    int rc = ch_node_children_start(r->node, &spec, 1, &opts, NULL);
    if (rc < 0) {
        atomic_fetch_sub(&r->refs, 1); /* the queue still holds it */
        op_fail(o, rc);
    }
}

static bool creates(uint8_t op)
{
    return op == OP_SET || op == OP_INCR || op == OP_APPEND;
}

static void replied(kop *o, int status, const void *reply, size_t len)
{
    uint8_t op = o->msg[1];
    if (status == 0) {
        op_answered(o, reply, len);
    } else if (status == CH_ENOPROC && creates(op)) {
        op_create(o);
    } else if (status == CH_ENOPROC) {
        o->res = RES_NIL;
        op_finished(o);
    } else if (status == -ENODATA) {
        op_fail(o, KV_EWRONGTYPE); /* a process of another type */
    } else {
        op_fail(o, status);
    }
}

static void on_reply(void *ud, int status, const void *reply, size_t len)
{
    kop *o = ud;
    kreq *r = o->req;
    kconn *k = r->conn; /* NULL: orphaned, nobody waits for the answer */
    if (k) replied(o, status, reply, len);
    req_unref(r);
    if (k) flush(k);
}

static void call_later(ch_node *n, void *ud)
{
    (void)n;
    kop *o = ud;
    kreq *r = o->req;
    kconn *k = r->conn;
    if (k) op_call(o);
    req_unref(r);
    if (k) flush(k);
}

static void op_call(kop *o)
{
    kreq *r = o->req;
    if (++o->attempts > KV_ATTEMPTS) {
        op_fail(o, -EBUSY); /* created and deleted under our feet, again and again */
        return;
    }
    atomic_fetch_add(&r->refs, 1);
    int rc =
        ch_call_async(r->node, o->key, o->key_len, o->msg, o->msg_len, KV_CALL_MS, on_reply, o);
    if (rc == 0) return;
    if (rc == -EAGAIN && ++o->eagains < KV_EAGAIN_MAX) {
        o->attempts--; /* a full mailbox: try again on the next turn */
        if (ch_node_post(r->node, r->core, call_later, o) == 0) return;
    }
    atomic_fetch_sub(&r->refs, 1);
    op_fail(o, rc);
}

/* ---- commands -------------------------------------------------------------------------- */

/* Queues a request answered at once by fill. last: the connection closes after it. */
static void immediate(kconn *k, const kcmd *cmd, kcmd_fill fill, const resp_arg *a, size_t n,
                      bool last)
{
    kreq *r = req_new(k, cmd, 0, 0);
    if (!r) {
        ch_sconn_close(k->h, 0); /* no memory to answer in order: give up the connection */
        k->quitting = true;
        return;
    }
    r->close_after = last;
    if (last) k->quitting = true;
    fill(k, &r->reply, a, n);
    complete(r);
}

static void fill_text_error(kconn *k, resp_buf *b, const resp_arg *a, size_t n)
{
    (void)k, (void)n;
    resp_error(b, "%.*s", (int)a->len, (const char *)a->p);
}

static void reply_error(kconn *k, bool last, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reply_error(kconn *k, bool last, const char *fmt, ...)
{
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    int len = vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    resp_arg arg = {(const uint8_t *)text, len < 0 ? 0 : (size_t)len};
    if (arg.len >= sizeof(text)) arg.len = sizeof(text) - 1;
    immediate(k, NULL, fill_text_error, &arg, 1, last);
}

/* Builds the request of a key command: one operation per key (`stride` arguments apart from
 * argument 1), each with its message: [KV_MAGIC][op][operand]. operand_at: where the
 * operand is relative to the key (0: none); delta: INCR's operand instead. */
static void key_command(kconn *k, const kcmd *cmd, const resp_arg *a, size_t n, size_t stride,
                        size_t operand_at, const int64_t *delta)
{
    uint32_t nops = (uint32_t)((n - 1) / stride);
    size_t arena = 0;
    for (size_t i = 1; i < n; i += stride)
        arena += 1 + a[i].len + 2 + (delta ? 8 : operand_at ? a[i + operand_at].len : 0);
    kreq *r = req_new(k, cmd, nops, arena);
    if (!r) {
        ch_sconn_close(k->h, 0);
        k->quitting = true;
        return;
    }
    k->ops_out += nops;
    uint8_t *at = (uint8_t *)&r->ops[nops];
    for (uint32_t j = 0; j < nops; j++) {
        const resp_arg *key = &a[1 + j * stride];
        kop *o = &r->ops[j];
        o->req = r;
        o->key = (const char *)at; /* the process id: the prefix, then the key */
        *at++ = KV_ID_PREFIX;
        if (key->len) memcpy(at, key->p, key->len);
        o->key_len = key->len + 1;
        at += key->len;
        o->msg = at;
        *at++ = KV_MAGIC;
        *at++ = cmd->op;
        if (delta) {
            cli_put_le64(at, (uint64_t)*delta);
            at += 8;
        } else if (operand_at) {
            const resp_arg *v = key + operand_at;
            if (v->len) memcpy(at, v->p, v->len);
            at += v->len;
        }
        o->msg_len = (size_t)(at - o->msg);
    }
    for (uint32_t j = 0; j < nops; j++)
        op_start(&r->ops[j]);
}

/* GET, MGET, DEL, EXISTS, STRLEN: keys only. */
static void cmd_keys(kconn *k, const kcmd *c, const resp_arg *a, size_t n)
{
    key_command(k, c, a, n, 1, 0, NULL);
}

/* SET, MSET, APPEND: key value pairs. */
static void cmd_pairs(kconn *k, const kcmd *c, const resp_arg *a, size_t n)
{
    if (c->op == OP_SET && c->step == 1 && n != 3) { /* SET EX, NX, KEEPTTL... */
        reply_error(k, false, "ERR syntax error (SET takes no options here)");
        return;
    }
    if (n % 2 == 0) {
        reply_error(k, false, "ERR wrong number of arguments for '%s' command", c->name);
        return;
    }
    key_command(k, c, a, n, 2, 1, NULL);
}

/* INCR, DECR (n == 2), INCRBY, DECRBY (n == 3). */
static void cmd_incr(kconn *k, const kcmd *c, const resp_arg *a, size_t n)
{
    bool decr = c->name[0] == 'd';
    int64_t delta = 1;
    if (n == 3 && !resp_to_i64(a[2].p, a[2].len, &delta)) {
        reply_error(k, false, "ERR value is not an integer or out of range");
        return;
    }
    if (decr && delta == INT64_MIN) {
        reply_error(k, false, "ERR decrement would overflow");
        return;
    }
    if (decr) delta = -delta;
    key_command(k, c, a, 2, 1, 0, &delta);
}

static void fill_ping(kconn *k, resp_buf *b, const resp_arg *a, size_t n)
{
    if (n > 2)
        resp_error(b, "ERR wrong number of arguments for 'ping' command");
    else if (n == 2)
        resp_bulk(b, a[1].p, a[1].len);
    else
        resp_status(b, "PONG");
}

static void fill_echo(kconn *k, resp_buf *b, const resp_arg *a, size_t n)
{
    resp_bulk(b, a[1].p, a[1].len);
}

static void fill_ok(kconn *k, resp_buf *b, const resp_arg *a, size_t n)
{
    resp_status(b, "OK");
}

static void fill_select(kconn *k, resp_buf *b, const resp_arg *a, size_t n)
{
    if (a[1].len == 1 && a[1].p[0] == '0')
        resp_status(b, "OK");
    else
        resp_error(b, "ERR DB index is out of range");
}

/* CONFIG GET: the two settings redis-benchmark asks for at start, answered as "off". */
static void fill_config(kconn *k, resp_buf *b, const resp_arg *a, size_t n)
{
    static const char *const names[] = {"save", "appendonly"};
    static const char *const values[] = {"", "no"};
    if (!resp_is(&a[1], "get") || n != 3) {
        resp_error(b, "ERR CONFIG %.*s is not supported here", (int)(a[1].len > 32 ? 32 : a[1].len),
                   (const char *)a[1].p);
        return;
    }
    char pat[128];
    snprintf(pat, sizeof(pat), "%.*s", (int)(a[2].len < 127 ? a[2].len : 127),
             (const char *)a[2].p);
    bool hit[2];
    size_t hits = 0;
    for (size_t i = 0; i < 2; i++)
        hits += hit[i] = fnmatch(pat, names[i], FNM_CASEFOLD) == 0;
    resp_array(b, hits * 2);
    for (size_t i = 0; i < 2; i++) {
        if (!hit[i]) continue;
        resp_bulk_str(b, names[i]);
        resp_bulk_str(b, values[i]);
    }
}

static void fill_info(kconn *k, resp_buf *b, const resp_arg *a, size_t n);
static void fill_command(kconn *k, resp_buf *b, const resp_arg *a, size_t n);

static const kcmd commands[] = {
    {"get", 2, 1, 1, 1, "readonly fast", OP_GET, cmd_keys, NULL, false},
    {"set", -3, 1, 1, 1, "write denyoom", OP_SET, cmd_pairs, NULL, false},
    {"del", -2, 1, -1, 1, "write", OP_DEL, cmd_keys, NULL, false},
    {"exists", -2, 1, -1, 1, "readonly fast", OP_EXISTS, cmd_keys, NULL, false},
    {"incr", 2, 1, 1, 1, "write denyoom fast", OP_INCR, cmd_incr, NULL, false},
    {"incrby", 3, 1, 1, 1, "write denyoom fast", OP_INCR, cmd_incr, NULL, false},
    {"decr", 2, 1, 1, 1, "write denyoom fast", OP_INCR, cmd_incr, NULL, false},
    {"decrby", 3, 1, 1, 1, "write denyoom fast", OP_INCR, cmd_incr, NULL, false},
    {"append", 3, 1, 1, 1, "write denyoom fast", OP_APPEND, cmd_pairs, NULL, false},
    {"strlen", 2, 1, 1, 1, "readonly fast", OP_STRLEN, cmd_keys, NULL, false},
    {"mget", -2, 1, -1, 1, "readonly fast", OP_GET, cmd_keys, NULL, false},
    {"mset", -3, 1, -1, 2, "write denyoom", OP_SET, cmd_pairs, NULL, false},
    {"ping", -1, 0, 0, 0, "fast", 0, NULL, fill_ping, false},
    {"echo", 2, 0, 0, 0, "fast", 0, NULL, fill_echo, false},
    {"info", -1, 0, 0, 0, "loading stale", 0, NULL, fill_info, false},
    {"command", -1, 0, 0, 0, "loading stale", 0, NULL, fill_command, false},
    {"config", -2, 0, 0, 0, "admin loading stale", 0, NULL, fill_config, false},
    {"select", 2, 0, 0, 0, "loading stale fast", 0, NULL, fill_select, false},
    {"quit", -1, 0, 0, 0, "fast", 0, NULL, fill_ok, true},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const kcmd *find_command(const resp_arg *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (resp_is(name, commands[i].name)) return &commands[i];
    return NULL;
}

/* ---- INFO and COMMAND -------------------------------------------------------------------- */

static void fill_info(kconn *k, resp_buf *b, const resp_arg *a, size_t n)
{
    const resp_arg *section = n > 1 ? &a[1] : NULL;
    kv_service *kv = k->kv;
    uint64_t conns = 0, cmds = 0, errs = 0, cut = 0;
    for (unsigned i = 0; i < kv->cores; i++) {
        conns += atomic_load_explicit(&kv->stats[i].conns, memory_order_relaxed);
        cmds += atomic_load_explicit(&kv->stats[i].commands, memory_order_relaxed);
        errs += atomic_load_explicit(&kv->stats[i].errors, memory_order_relaxed);
        cut += atomic_load_explicit(&kv->stats[i].cut, memory_order_relaxed);
    }
    bool all = !section || resp_is(section, "all") || resp_is(section, "default") ||
               resp_is(section, "everything");
    char text[1024];
    int len = 0;
#define ADD(...) len += snprintf(text + len, sizeof(text) - (size_t)len, __VA_ARGS__)
    if (all || resp_is(section, "server")) {
        /* redis_version: what clients may assume of the protocol (RESP2, Redis 7 commands). */
        ADD("# Server\r\nredis_version:7.0.0\r\ncorehub_version:%d.%d.%d\r\n"
            "redis_mode:standalone\r\nos:Linux\r\narch_bits:%zu\r\nprocess_id:%ld\r\n"
            "tcp_port:%d\r\nuptime_in_seconds:%" PRIu64 "\r\ncorehub_node:%016" PRIx64 "\r\n"
            "corehub_cores:%u\r\n\r\n",
            COREHUB_VERSION_MAJOR, COREHUB_VERSION_MINOR, COREHUB_VERSION_PATCH, sizeof(void *) * 8,
            (long)getpid(), ch_server_port(kv->srv), (cli_now_ns() - kv->started_ns) / 1000000000u,
            ch_node_id(kv->node), kv->cores);
    }
    if (all || resp_is(section, "clients"))
        ADD("# Clients\r\nconnected_clients:%u\r\n\r\n", ch_server_conns(kv->srv));
    if (all || resp_is(section, "stats"))
        ADD("# Stats\r\ntotal_connections_received:%" PRIu64 "\r\ntotal_commands_processed:%" PRIu64
            "\r\ntotal_error_replies:%" PRIu64
            "\r\nclient_output_buffer_limit_disconnections:%" PRIu64 "\r\n",
            conns, cmds, errs, cut);
#undef ADD
    if (len > (int)sizeof(text) - 1) len = (int)sizeof(text) - 1;
    resp_bulk(b, text, (size_t)len);
}

static size_t count_words(const char *s)
{
    size_t n = 0;
    for (; *s; s += strspn(s, " "))
        n++, s += strcspn(s, " ");
    return n;
}

/* One command's entry as COMMAND INFO gives it (the first six fields of Redis's). */
static void command_entry(resp_buf *b, const kcmd *c)
{
    resp_array(b, 6);
    resp_bulk_str(b, c->name);
    resp_int(b, c->arity);
    resp_array(b, count_words(c->flags));
    for (const char *f = c->flags; *f; f += strspn(f, " ")) {
        size_t len = strcspn(f, " ");
        char flag[32];
        snprintf(flag, sizeof(flag), "%.*s", (int)len, f);
        resp_status(b, flag);
        f += len;
    }
    resp_int(b, c->first);
    resp_int(b, c->last);
    resp_int(b, c->step);
}

/* COMMAND [INFO name...] lists commands; COUNT, LIST; DOCS: a map of name -> summary,
 * flattened (RESP2). */
static void fill_command(kconn *k, resp_buf *b, const resp_arg *a, size_t n)
{
    bool named = n > 2; /* INFO and DOCS may name commands */
    size_t count = named ? n - 2 : NCOMMANDS;
    if (n == 1 || resp_is(&a[1], "info")) {
        resp_array(b, count);
        for (size_t i = 0; i < count; i++) {
            const kcmd *c = named ? find_command(&a[2 + i]) : &commands[i];
            if (c)
                command_entry(b, c);
            else
                resp_raw(b, "*-1\r\n", 5);
        }
    } else if (resp_is(&a[1], "count")) {
        resp_int(b, (int64_t)NCOMMANDS);
    } else if (resp_is(&a[1], "list")) {
        resp_array(b, NCOMMANDS);
        for (size_t i = 0; i < NCOMMANDS; i++)
            resp_bulk_str(b, commands[i].name);
    } else if (resp_is(&a[1], "docs")) {
        size_t known = 0;
        for (size_t i = 0; i < count; i++)
            known += !named || find_command(&a[2 + i]) != NULL;
        resp_array(b, known * 2);
        for (size_t i = 0; i < count; i++) {
            const kcmd *c = named ? find_command(&a[2 + i]) : &commands[i];
            if (!c) continue;
            resp_bulk_str(b, c->name);
            resp_array(b, 4);
            resp_bulk_str(b, "summary");
            resp_bulk_str(b, c->op ? "a key-value command (one process per key)" : "a command");
            resp_bulk_str(b, "group");
            resp_bulk_str(b, c->op ? "string" : "server");
        }
    } else {
        resp_error(b, "ERR unknown subcommand '%.*s'. Try COMMAND HELP.",
                   (int)(a[1].len > 32 ? 32 : a[1].len), (const char *)a[1].p);
    }
}

/* ---- connections ----------------------------------------------------------------------- */

/* A printable copy of an argument for an error message. */
static void printable(char *out, size_t cap, const resp_arg *a)
{
    size_t n = a->len < cap - 1 ? a->len : cap - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = a->p[i] >= 0x20 && a->p[i] < 0x7f && a->p[i] != '\'' ? (char)a->p[i] : '?';
    out[n] = '\0';
}

static void run_command(kconn *k, const resp_arg *a, size_t n)
{
    bump(&k->kv->stats[k->core].commands);
    const kcmd *c = find_command(&a[0]);
    if (!c) { /* Redis's words, so that clients recognise the error */
        char name[64], args[128] = "", word[32];
        printable(name, sizeof(name), &a[0]);
        for (size_t i = 1, len = 0; i < n && i < 4; i++) {
            printable(word, sizeof(word), &a[i]);
            len += (size_t)snprintf(args + len, sizeof(args) - len, "'%s' ", word);
        }
        reply_error(k, false, "ERR unknown command '%s', with args beginning with: %s", name, args);
        return;
    }
    if ((c->arity > 0 && n != (size_t)c->arity) || (c->arity < 0 && n < (size_t)-c->arity)) {
        reply_error(k, false, "ERR wrong number of arguments for '%s' command", c->name);
        return;
    }
    if (c->fill)
        immediate(k, c, c->fill, a, n, c->closes);
    else
        c->run(k, c, a, n);
}

static long kv_data(void *ud, ch_sconn c, void *data, size_t len)
{
    kconn *k = ud;
    const uint8_t *d = data;
    size_t off = 0;
    while (!k->quitting && off < len) {
        if (must_wait(k, false)) { /* answer some before reading on */
            k->paused = true;
            ch_sconn_pause(c);
            break;
        }
        size_t used = 0;
        const char *err;
        int rc = resp_parse(&k->ps, d + off, len - off, &used, &err);
        if (rc == RESP_MORE) break;
        if (rc == RESP_ERROR) { /* answer, then close: the stream cannot be resynced */
            reply_error(k, true, "ERR Protocol error: %s", err);
            break;
        }
        off += used;
        if (k->ps.n) run_command(k, k->ps.v, k->ps.n);
    }
    flush(k);
    return k->quitting ? (long)len : (long)off; /* after QUIT, the rest is ignored */
}

static int kv_conn_open(void *server_ud, ch_sconn c, void **conn_ud)
{
    kv_service *kv = server_ud;
    kconn *k = calloc(1, sizeof(*k));
    if (!k) return -ENOMEM;
    k->kv = kv;
    k->h = c;
    k->core = (unsigned)ch_sconn_core(c);
    resp_parser_init(&k->ps);
    bump(&kv->stats[k->core].conns);
    *conn_ud = k;
    return 0;
}

static void kv_drain(void *ud, ch_sconn c)
{
    (void)c;
    flush(ud);
}

static void kv_conn_close(void *ud, ch_sconn c, int reason)
{
    (void)c, (void)reason;
    kconn *k = ud;
    for (kreq *r = k->head, *next; r; r = next) {
        next = r->next;
        r->conn = NULL; /* operations still in flight free it when they come back */
        req_unref(r);
    }
    resp_parser_free(&k->ps);
    free(k->keys);
    free(k);
}

/* ---- the service ------------------------------------------------------------------------- */

int kv_open(ch_node *n, const char *listen, size_t reply_limit, kv_service **out)
{
    if (reply_limit < KV_REPLY_LIMIT_MIN) return -EINVAL;
    kv_service *kv = calloc(1, sizeof(*kv));
    if (!kv) return -ENOMEM;
    kv->node = n;
    kv->reply_limit = reply_limit;
    kv->cores = ch_node_cores(n);
    kv->started_ns = cli_now_ns();
    kv->stats = aligned_alloc(64, kv->cores * sizeof(kv_stats));
    if (!kv->stats) {
        free(kv);
        return -ENOMEM;
    }
    memset(kv->stats, 0, kv->cores * sizeof(kv_stats));
    ch_server_config cfg;
    ch_server_config_init(&cfg);
    cfg.listen = listen;
    /* One whole command must fit: its arguments plus their headers. */
    cfg.max_read_bytes = RESP_MAX_COMMAND + RESP_MAX_ARGS * 32 + RESP_MAX_INLINE;
    cfg.on_open = kv_conn_open;
    cfg.on_data = kv_data;
    cfg.on_drain = kv_drain;
    cfg.on_close = kv_conn_close;
    cfg.ud = kv;
    int rc = ch_server_open(n, &cfg, &kv->srv);
    if (rc < 0) {
        free(kv->stats);
        free(kv);
        return rc;
    }
    *out = kv;
    return 0;
}

int kv_port(const kv_service *kv)
{
    return ch_server_port(kv->srv);
}

void kv_close(kv_service *kv)
{
    if (!kv) return;
    ch_server_close(kv->srv); /* every connection's on_close ran: requests are orphans */
    free(kv->stats);
    free(kv);
}
