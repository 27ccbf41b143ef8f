/*
 * tools/blob.c - the "blob" process type (see blob.h).
 *
 * A process whose state is an arbitrary byte string, to exercise state of any size from
 * the command line (`corehub ctl send b1 "append ..."`) and in cluster tests: the state
 * is the bytes themselves, so the default handover carries it unchanged.
 */
#include "blob.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

/* Whether msg is `word` alone or `word` + ' ' + rest; *rest gets what follows. */
static bool blob_verb(const ch_msg *msg, const char *word, const char **rest, size_t *rest_len)
{
    size_t n = strlen(word);
    if (msg->len < n || memcmp(msg->data, word, n) != 0) return false;
    if (msg->len > n && ((const char *)msg->data)[n] != ' ') return false;
    size_t skip = msg->len > n ? n + 1 : n;
    *rest = (const char *)msg->data + skip;
    *rest_len = msg->len - skip;
    return true;
}

static int blob_init(ch_proc *p, const void *arg, size_t arg_len, unsigned flags)
{
    if (arg_len > BLOB_MAX) return -EMSGSIZE;
    if (arg_len == 0) return 0;
    void *state = ch_proc_state_resize(p, arg_len);
    if (!state) return -ENOMEM;
    memcpy(state, arg, arg_len);
    return 0;
}

/* Replaces the state with bytes (at = 0) or appends them (at = the current length). A
 * failed resize keeps the old state: the update is lost, the process is not. */
static void blob_write(ch_proc *p, size_t at, const char *bytes, size_t len)
{
    if (at + len > BLOB_MAX) return;
    char *state = ch_proc_state_resize(p, at + len);
    if (state && len) memcpy(state + at, bytes, len);
}

static void blob_cast(ch_proc *p, const ch_msg *msg)
{
    const char *rest;
    size_t rest_len, len = 0;
    ch_proc_state(p, &len);
    if (blob_verb(msg, "set", &rest, &rest_len))
        blob_write(p, 0, rest, rest_len);
    else if (blob_verb(msg, "append", &rest, &rest_len))
        blob_write(p, len, rest, rest_len);
}

static void blob_call(ch_proc *p, const ch_msg *msg)
{
    size_t len = 0;
    const void *state = ch_proc_state(p, &len);
    if (msg->len == 3 && memcmp(msg->data, "get", 3) == 0) {
        (void)ch_reply(p, msg, state ? state : "", len);
    } else if (msg->len == 3 && memcmp(msg->data, "len", 3) == 0) {
        char text[24];
        int n = snprintf(text, sizeof(text), "%zu", len);
        (void)ch_reply(p, msg, text, (size_t)n);
    }
}

static int blob_handle(ch_proc *p, const ch_msg *msg)
{
    if (msg->kind == CH_MSG_CAST)
        blob_cast(p, msg);
    else if (msg->kind == CH_MSG_CALL)
        blob_call(p, msg);
    return CH_CONTINUE;
}

/* ---- content for tests and benchmarks ------------------------------------------------- */

static uint64_t fnv1a(const char *s, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    return h;
}

/* xorshift64*: small, fast, and the same everywhere. */
static uint64_t next_rand(uint64_t *x)
{
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 0x2545f4914f6cdd1dull;
}

static const char *const names[] = {"alice", "bob",   "carol",  "dave",  "erin",    "frank",
                                    "grace", "heidi", "ivan",   "judy",  "mallory", "oscar",
                                    "peggy", "trent", "victor", "walter"};
static const char *const cities[] = {"Lisbon", "Oslo",  "Quito", "Accra", "Hanoi",
                                     "Lima",   "Perth", "Turin", "Dakar", "Kyoto"};
static const char *const tags[] = {"red", "green", "blue", "fast", "slow", "new", "old", "vip"};

#define PICK(arr, r) (arr)[(r) % (sizeof(arr) / sizeof((arr)[0]))]

void blob_content(const char *id, size_t id_len, void *out, size_t size)
{
    uint64_t x = fnv1a(id, id_len) | 1; /* xorshift must not start at 0 */
    char *dst = out, rec[256];
    for (uint64_t n = 0; size > 0; n++) {
        uint64_t r = next_rand(&x), q = next_rand(&x), t = next_rand(&x);
        int len =
            snprintf(rec, sizeof(rec),
                     "{\"rec\":%" PRIu64 ",\"user\":\"%s\",\"city\":\"%s\",\"ts\":%" PRIu64
                     ",\"session\":\"%016" PRIx64 "\",\"score\":%" PRIu64 ",\"amount\":%" PRIu64
                     ".%02" PRIu64 ",\"active\":%s,\"tags\":[\"%s\",\"%s\"]}\n",
                     n, PICK(names, r), PICK(cities, r >> 8), 1700000000 + (q >> 40) % 86400, t,
                     (q >> 8) % 100000, (q >> 24) % 10000, q % 100,
                     (r >> 16) & 1 ? "true" : "false", PICK(tags, r >> 20), PICK(tags, r >> 24));
        size_t take = (size_t)len < size ? (size_t)len : size;
        memcpy(dst, rec, take);
        dst += take;
        size -= take;
    }
}

static const ch_process_type blob = {
    .name = BLOB_TYPE_NAME,
    .init = blob_init,
    .handle = blob_handle,
};

const ch_process_type *blob_type(void)
{
    return &blob;
}
