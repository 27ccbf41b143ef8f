/*
 * corehub/process.h - process types and what a process's callbacks may do.
 *
 * A process is a lightweight actor: a string id (1..CH_ID_MAX bytes), a registered type
 * (the callbacks below), a state and a stream of messages. All of a process's callbacks run
 * on its owner reactor thread, one at a time, never concurrently with themselves. The
 * `ch_proc *` handle they receive is valid only during that callback.
 */
#ifndef COREHUB_PROCESS_H
#define COREHUB_PROCESS_H

#include <corehub/common.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CH_ID_MAX 255 /* bytes in a process id */
/* An id_len that says "id is NUL-terminated": every function taking (id, id_len) accepts
 * it. A length is never guessed otherwise: 0 is an empty id, refused with CH_EBADID (a
 * length of 0 that meant "NUL-terminated" read past buffers holding no NUL). */
#define CH_ID_CSTR       ((size_t)-1)
#define CH_TYPE_NAME_MAX 63   /* bytes in a process type name */
#define CH_TAG_MAX       63   /* bytes in a tag */
#define CH_META_MAX      1024 /* bytes of metadata per child */

typedef struct ch_node ch_node;
typedef struct ch_proc ch_proc;
typedef struct ch_buf ch_buf;

/* Restart policy, as in OTP: what happens when a process ends. */
typedef enum ch_restart {
    CH_PERMANENT = 0, /* always restarted (crash or normal exit) */
    CH_TRANSIENT = 1, /* restarted only after a crash */
    CH_TEMPORARY = 2, /* never restarted */
} ch_restart;

/* Flags passed to init. */
#define CH_INIT_RESTART  1u /* restarted by its policy after it ended */
#define CH_INIT_MIGRATED 2u /* started here by a migration; alter_handover may follow */

/* What handle returns: CH_CONTINUE, CH_EXIT (normal exit), or a negative code (a crash). */
#define CH_CONTINUE 0
#define CH_EXIT     1

/* Why terminate is called. */
typedef enum ch_reason {
    CH_REASON_NORMAL = 0,   /* handle returned CH_EXIT */
    CH_REASON_CRASH = 1,    /* handle returned a negative code */
    CH_REASON_STOPPED = 2,  /* ch_node_children_stop, or a rolled-back start */
    CH_REASON_SHUTDOWN = 3, /* the node is stopping */
    CH_REASON_MIGRATED = 4, /* the process now lives on another node */
} ch_reason;

typedef enum ch_msg_kind {
    CH_MSG_CAST = 0,  /* ch_send: no reply expected */
    CH_MSG_CALL = 1,  /* ch_call and friends: answer with ch_reply or ch_reply_defer */
    CH_MSG_TIMER = 2, /* a timer of this process fired; ref is its timer id */
    CH_MSG_REPLY = 3, /* the answer to this process's ch_proc_call; ref is the caller's ref */
} ch_msg_kind;

typedef struct ch_msg {
    ch_msg_kind kind;
    const void *data; /* valid during handle only */
    size_t len;
    uint64_t ref; /* CH_MSG_TIMER: timer id; CH_MSG_REPLY: the ref given to ch_proc_call */
    int status;   /* CH_MSG_REPLY: 0, -ETIMEDOUT, CH_ENOPROC, CH_ECRASHED, ... */
} ch_msg;

/*
 * A process type. Every node of a hub registers the same types by name before it starts.
 * Only `name` is required; a missing callback gets the default named below.
 */
typedef struct ch_process_type {
    const char *name; /* 1..CH_TYPE_NAME_MAX bytes */
    /* Builds the state from the spec's argument. Return 0, or a negative code to refuse
     * the start (the child's result becomes CH_EINIT). Default: empty state. */
    int (*init)(ch_proc *p, const void *arg, size_t arg_len, unsigned flags);
    /* Handles one message. Return CH_CONTINUE, CH_EXIT, or a negative code (a crash).
     * Default: ignore casts, answer calls with an empty reply. */
    int (*handle)(ch_proc *p, const ch_msg *msg);
    /* Releases what the process holds outside its state. The state itself is freed by the
     * framework afterwards. Default: nothing. Should return within the child's shutdown_ms;
     * an overrun is logged and counted. */
    void (*terminate)(ch_proc *p, ch_reason reason);
    /* Serializes the state for a HotSwap handover. Default: the state bytes as they are. */
    int (*prepare_handover)(ch_proc *p, ch_buf *out);
    /* Merges handed-over bytes into the new instance's state (after init). Default: the
     * bytes become the state. */
    int (*alter_handover)(ch_proc *p, const void *bytes, size_t len);
    /* Two live instances of this process met (both sides of a healed divergence partition
     * ran it): p, the instance on the id's ring owner, stays; `other` is the other
     * instance's handed-over state (its prepare_handover bytes; NULL and 0 when it moved
     * without state), and the other instance ends (CH_REASON_MIGRATED). Merge what p should
     * keep of it. A negative return is logged and changes nothing else. Default: p keeps
     * its own state. Counted as `conflicts`; CH_HOOK_CONFLICT runs. */
    int (*resolve_conflict)(ch_proc *p, const void *other, size_t len);
    void *ud; /* type-wide user data, see ch_proc_type_ud */
} ch_process_type;

/* --- identity ----------------------------------------------------------------------- */

/* Every function below that takes a ch_proc * is called from a callback of that process
 * (on its owner reactor), with the handle the callback received; none of them locks. The
 * pointers that the identity functions return point into the process's own copy of its
 * spec: they stay the same across restarts and die when the process ends for good or
 * moves to another node. */

/* The id, len bytes (len may be NULL). The bytes are followed by a NUL, but an id may hold
 * NULs itself: use len. */
CH_API const char *ch_proc_id(const ch_proc *p, size_t *len);
/* The node that runs p: the one to pass to ch_send, ch_call_async... from a callback. */
CH_API ch_node *ch_proc_node(const ch_proc *p);
/* The core (0..ch_node_cores - 1) whose reactor owns p and runs its callbacks. */
CH_API unsigned ch_proc_core(const ch_proc *p);
CH_API uint32_t ch_proc_incarnation(const ch_proc *p); /* 0 at first start, +1 per restart */
/* The spec's metadata, read-only, with its size in *len (len may be NULL): NULL and 0
 * when the spec had none. Valid as said above; copy what must live longer. */
CH_API const void *ch_proc_meta(const ch_proc *p, size_t *len);
CH_API const char *ch_proc_tag(const ch_proc *p); /* NUL-terminated; "" when none */
/* The `ud` of p's process type, as given to ch_node_type_register (the pointer only:
 * corehub never reads, frees or synchronises what it points to, and every process of the
 * type, on every core, gets the same one). */
CH_API void *ch_proc_type_ud(const ch_proc *p);

/* --- state -------------------------------------------------------------------------- */

/* The state: a byte block the process owns. NULL with *len 0 when empty. */
CH_API void *ch_proc_state(const ch_proc *p, size_t *len);
/* Resizes the state (contents kept up to the smaller size, growth zero-filled) and returns
 * it; NULL on -ENOMEM with the old state untouched. len 0 empties the state (NULL). */
CH_API void *ch_proc_state_resize(ch_proc *p, size_t len);
/* Replaces the state with `data` (ownership moves to the process; freed with free_fn,
 * which may be NULL for memory the process must not free). The old state is freed. */
CH_API void ch_proc_state_set(ch_proc *p, void *data, size_t len, void (*free_fn)(void *));

/* --- messages ----------------------------------------------------------------------- */

/* Answers the CH_MSG_CALL being handled (data copied). 0; -EINVAL when `call` is not the
 * call that handle is running on (at most one reply per call: a second one is refused);
 * CH_EMSGSIZE (len over max_message; the call stays unanswered). A call that handle
 * neither answers nor defers gets an empty reply with status -ENODATA (CH_ECRASHED when
 * handle crashed). */
CH_API int ch_reply(ch_proc *p, const ch_msg *call, const void *data, size_t len);

/* A deferred reply: lets the process answer a call later, from any of its callbacks. */
typedef struct ch_reply_token {
    uint64_t w[3];
} ch_reply_token;
/* A token answers its call once: later answers, and answers after the caller's timeout,
 * are dropped. A process that ends with a deferred call unanswered lets that caller time
 * out (it does not know whom it owed an answer).
 * ch_reply_defer, in handle, takes the call being handled: 0 with *token filled (a plain
 * value the process may keep in its state), -EINVAL (token NULL, or `call` is not the call
 * being handled, or it was answered already). ch_reply_send answers it later (data
 * copied), from any callback of the process: 0 (also when the answer is then dropped),
 * -EINVAL (not a token), CH_EMSGSIZE (len over max_message; the token stays usable). */
CH_API int ch_reply_defer(ch_proc *p, const ch_msg *call, ch_reply_token *token);
CH_API int ch_reply_send(ch_proc *p, const ch_reply_token *token, const void *data, size_t len);

/*
 * Calls another process without blocking: the answer comes back to this process as a
 * CH_MSG_REPLY message carrying `ref`, with status 0 and the reply bytes, or with
 * status -ETIMEDOUT / CH_ENOPROC / CH_ECRASHED / -ENODATA and no bytes. timeout_ms 0 means
 * the node's call_timeout_ms. The call dies with the incarnation: a process that restarts
 * or ends before the answer never gets it. Returns 0 (the reply message will come),
 * CH_EBADID, CH_EMSGSIZE (len over max_message), -EAGAIN (the mailbox toward the id's
 * core is full: nothing sent), -ENOMEM.
 */
CH_API int ch_proc_call(ch_proc *p, const char *id, size_t id_len, const void *req, size_t len,
                        uint32_t timeout_ms, uint64_t ref);

/* --- timers ------------------------------------------------------------------------- */

/* Delivers `data` (copied) back to this process as a CH_MSG_TIMER after delay_ms. The
 * timer dies with the process incarnation. *timer_id (timer_id may be NULL) identifies it
 * for ch_timer_cancel. 0, -EINVAL (data NULL with len > 0), CH_EMSGSIZE (len over
 * max_message), -ENOMEM. */
CH_API int ch_timer_start(ch_proc *p, uint32_t delay_ms, const void *data, size_t len,
                          uint64_t *timer_id);
/* Returns 0, or -ENOENT when the timer already fired or was cancelled. */
CH_API int ch_timer_cancel(ch_proc *p, uint64_t timer_id);

/* --- handover buffer (prepare_handover's output) ------------------------------------ */

/* The ch_buf handed to prepare_handover belongs to the framework and is valid during that
 * call only; what the callback appends to it is the state sent to the new node. */

/* Appends len bytes of data (copied; data may be NULL when len is 0). The buffer grows as
 * needed, its capacity doubling (from 256 bytes when it has none), so appends cost
 * amortised O(1); growing may move the buffer (a pointer from ch_buf_reserve is then
 * stale). 0, or -ENOMEM with b unchanged. */
CH_API int ch_buf_append(ch_buf *b, const void *data, size_t len);
/* Room for len more bytes at the end, grown as ch_buf_append does: write into it, then
 * ch_buf_commit what was written. NULL when the memory cannot be had (b unchanged). The
 * pointer is valid until the next ch_buf_reserve or ch_buf_append. */
CH_API void *ch_buf_reserve(ch_buf *b, size_t len);
/* Adds len bytes written into the last reservation to the buffer; len must not exceed the
 * size reserved (not checked). */
CH_API void ch_buf_commit(ch_buf *b, size_t len);

#ifdef __cplusplus
}
#endif
#endif
