/*
 * tools/kv.h - a key-value service speaking the Redis protocol, where each key is a process.
 *
 * `corehub node --kv-port PORT` serves it, so that redis-cli and redis-benchmark can drive a
 * corehub hub. Any node answers for any key: a key is a process of type "kv" (which every
 * node registers) whose id is KV_ID_PREFIX followed by the key, wherever the hub placed it; the
 * service calls it with ch_call_async, never blocking a reactor, and answers each connection's
 * requests in the order they came, however their calls complete (pipelining).
 *
 * Commands: PING, ECHO, GET, SET, DEL, EXISTS, INCR, INCRBY, DECR, DECRBY, APPEND,
 * STRLEN, MGET, MSET, INFO, COMMAND (COUNT, DOCS, INFO, LIST), CONFIG GET, SELECT 0,
 * QUIT. A write (SET, MSET, INCR*, DECR*, APPEND) to a missing key starts its process,
 * with the write as the process's init argument, so the key appears with its value at
 * once; GET of a missing key is nil; DEL ends the process. MSET sets its keys one by one
 * (not atomically). Keys are 0 to KV_KEY_MAX bytes, values at most KV_MAX_VALUE.
 *
 * The "kv" process keeps the value as its state, the bytes themselves (a number is its
 * decimal text, as in Redis), so the default HotSwap handover carries it as it is.
 */
#ifndef COREHUB_TOOLS_KV_H
#define COREHUB_TOOLS_KV_H

#include <corehub/corehub.h>

#define KV_TYPE_NAME "kv"
#define KV_MAX_VALUE (512u * 1024) /* a value, like one RESP argument */
/* A key's process id is this byte then the key: Redis accepts the empty key, a process id
 * is never empty. `corehub ctl call :KEY get` reads a key's value. */
#define KV_ID_PREFIX ':'
#define KV_KEY_MAX   (CH_ID_MAX - 1)
/* The bytes of answers one connection may hold before it is closed (--kv-reply-limit);
 * reading its commands pauses at an eighth of it. */
#define KV_REPLY_LIMIT_DEFAULT (64u * 1024 * 1024)
#define KV_REPLY_LIMIT_MIN     (1u * 1024 * 1024)

/* The "kv" process type: register it on every node of the hub. */
const ch_process_type *kv_type(void);

typedef struct kv_service kv_service;

/* Serves the protocol on `listen` ("HOST:PORT", port 0: any) on every core of the running
 * node n; a connection holding more than reply_limit bytes of answers (at least
 * KV_REPLY_LIMIT_MIN) is closed. 0 or a negative code (-EINVAL, ch_server_open's). */
int kv_open(ch_node *n, const char *listen, size_t reply_limit, kv_service **out);
/* The port it listens on. */
int kv_port(const kv_service *kv);
/* Closes every connection and frees the service; before ch_node_destroy, not on a reactor.
 * NULL is a no-op. */
void kv_close(kv_service *kv);

#endif
