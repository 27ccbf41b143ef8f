/*
 * corehub/node.h - a node: `cores` reactor threads, each owning a shard of processes.
 *
 * Lifecycle: ch_node_config_init -> ch_node_create -> ch_node_type_register (every type,
 * before start) -> ch_node_start -> ... -> ch_node_stop -> ch_node_destroy.
 *
 * Placement: a process id's owner core is XXH3_64(id) % cores; the registry row of an id
 * lives on that core too. Every function below may be called from any thread, including
 * from inside process callbacks, unless it says it blocks: blocking functions return
 * CH_EWOULDBLOCK on a reactor thread instead of deadlocking it.
 */
#ifndef COREHUB_NODE_H
#define COREHUB_NODE_H

#include <corehub/common.h>
#include <corehub/process.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CH_ADDR_MAX   63 /* "HOST:PORT" */
#define CH_HUB_ID_MAX 63

/* Partition strategies, with ProcessHub's semantics. In partition mode a node stops its
 * local processes (keeping their specs) and refuses starts; leaving it restarts them. */
typedef enum ch_partition_strategy {
    CH_PARTITION_DIVERGENCE = 0,      /* never partitioned: each side carries on (default) */
    CH_PARTITION_STATIC_QUORUM = 1,   /* partitioned while fewer than quorum_size nodes */
    CH_PARTITION_DYNAMIC_QUORUM = 2,  /* partitioned when more than quorum_percent of the
                                         largest cluster seen recently is gone */
    CH_PARTITION_MAJORITY_QUORUM = 3, /* partitioned without a strict majority of the
                                         largest cluster seen (ch_node_partition_reset
                                         forgets it) */
} ch_partition_strategy;

typedef struct ch_cluster_config {
    const char *hub_id;       /* nodes of one hub share it; default "corehub" */
    const char *listen;       /* "HOST:PORT" (port 0: kernel-chosen); NULL: no cluster */
    const char *const *seeds; /* "HOST:PORT" of nodes to join through */
    size_t nseeds;
    const void *cookie;         /* the hub's shared secret (see ch_cookie_read) */
    size_t cookie_len;          /* at least 16 bytes */
    uint32_t probe_interval_ms; /* failure detection probe period; default 1000 */
    uint32_t probe_timeout_ms;  /* a probe's answer deadline; default 500 */
    uint32_t suspicion_mult;    /* suspicion lasts mult * log10(n+1) * probe interval; 4 */
    uint32_t sync_interval_ms;  /* registry anti-entropy period; default 5000 */
    uint32_t vnodes;            /* virtual nodes per member on the ring; default 256 */
    uint32_t replicas;          /* replication factor (distinct successors); default 1 */
    ch_partition_strategy partition;
    uint32_t quorum_size;      /* STATIC_QUORUM: nodes needed; default 1 */
    uint32_t quorum_percent;   /* DYNAMIC_QUORUM: % of the largest recent cluster that
                                  may be lost before partition mode; default 50 */
    uint32_t quorum_window_ms; /* DYNAMIC_QUORUM: how long "recent" is; default 60000 */
} ch_cluster_config;

/* How processes move when the ring changes (design §3). ProcessHub's names and defaults. */
typedef enum ch_migration_strategy {
    CH_MIGRATE_COLDSWAP = 0, /* terminate on the old node, fresh init on the new one */
    CH_MIGRATE_HOTSWAP = 1,  /* the same freeze and forwarding; with `handover`, the state
                                travels (prepare_handover -> alter_handover) */
} ch_migration_strategy;

typedef struct ch_migration_config {
    ch_migration_strategy strategy; /* default CH_MIGRATE_COLDSWAP */
    int handover;                   /* HotSwap: carry the state; default 0 */
    int confirm_handover;           /* HotSwap: the new node confirms each process only once it
                                       ran its forwarded messages, and children_migrated waits for
                                       those confirmations; default 0 (confirmed on arrival) */
    uint32_t retention_ms;          /* how long the old node keeps a frozen process waiting for
                                       its confirmation before it resolves the move; 5000 */
    uint32_t child_timeout_ms;      /* how long the new node holds messages that reached it
                                       before the process did; then they take the normal path
                                       (logged, counted); default 30000 */
    uint32_t leave_wait_ms;         /* graceful leave: how long the node waits for every process
                                       to be confirmed before it exits anyway; default 30000 */
    const char *codec;              /* "auto" (default), "none", "zstd[:LEVEL]", "auto:LEVEL" */
    size_t batch_bytes;    /* records per frame before it is sent: 64 KiB..1 MiB; 256 KiB */
    size_t inflight_bytes; /* raw bytes sent and not confirmed, per core; default 1 MiB */
    int lanes;             /* 1 (default): handover frames travel on each core's own
                              data lanes to the peer cores; 0: through the coordinators */
} ch_migration_config;

typedef struct ch_node_config {
    const char *name;           /* for logs; default "node" */
    unsigned cores;             /* reactor threads; default: online CPUs */
    int pin;                    /* pin reactor i to CPU i % online; default 1 */
    size_t ring_bytes;          /* each core-to-core mailbox ring; default 256 KiB */
    size_t inbox_bytes;         /* bytes queued from foreign threads per core; default 8 MiB */
    size_t max_message;         /* largest message or reply; default 1 MiB */
    uint32_t spin_us;           /* longest spin of an idle reactor before it sleeps (it
                               adapts below; 0 with more reactors than CPUs); 50 */
    uint32_t batch;             /* messages a reactor takes from one source per turn; 256 */
    uint32_t restart_intensity; /* restarts allowed per core in restart_period_ms; 100 */
    uint32_t restart_period_ms; /* default 4000 */
    uint32_t shutdown_ms;       /* default shutdown budget of a child; 5000 */
    uint32_t call_timeout_ms;   /* timeout when a call passes 0; default 5000 */
    uint32_t start_timeout_ms;  /* blocking start/stop wait when opts give 0; default 5000 */
    ch_cluster_config cluster;  /* see corehub/cluster.h */
    ch_migration_config migration;
} ch_node_config;

/*
 * Fills *cfg with the defaults: zeroes every field, then sets each to the default its
 * comment above names. `cores` becomes the number of online CPUs (1 when the system does
 * not say); the strings it sets (name "node", cluster.hub_id "corehub", migration.codec
 * "auto") are static. Left 0 or NULL: cluster.listen (no cluster), seeds, nseeds, cookie,
 * cookie_len, migration.handover and migration.confirm_handover. Start every config with
 * it and change what you need, so that fields added later get their defaults too. Any
 * thread; it touches nothing but *cfg.
 */
CH_API void ch_node_config_init(ch_node_config *cfg);

/*
 * Creates a node, not started, from cfg (NULL: the defaults of ch_node_config_init). It
 * allocates the mailboxes and sets up each reactor's io_uring (the threads start in
 * ch_node_start). A clustered node (cluster.listen set) also checks its cookie, binds and
 * listens on cluster.listen (ch_node_port answers from here on) and starts its control
 * thread. The node's id (ch_node_id) is drawn here, at random.
 *
 * Nothing of cfg is kept by reference: the struct is copied, and so are the strings and
 * bytes it points to (name, truncated to 31 bytes; cluster.hub_id, cluster.listen, the
 * seeds array and each seed string, a NULL seed becoming ""; the cookie bytes), so the
 * caller may free or reuse all of them once this returns. migration.codec is read during
 * the call only. No process type is registered yet (ch_node_type_register).
 *
 * Returns 0 with *out set, or an error with *out untouched:
 *   -EINVAL   out NULL, or a field out of range: cores 0 or over 1024, ring_bytes outside
 *             4 KiB..1 GiB, max_message 0 or over UINT32_MAX / 2, batch 0,
 *             restart_period_ms 0, an unknown partition strategy, a migration.codec that
 *             does not parse; clustered: probe_interval_ms or vnodes 0, hub_id NULL, empty
 *             or over CH_HUB_ID_MAX bytes, cookie NULL or under 16 bytes, listen not a
 *             resolvable HOST:PORT
 *   -ENOMEM
 *   or what the system refused: io_uring set-up (-EPERM, -ENOSYS, -ENOMEM...), an
 *   eventfd, the listening socket (-EADDRINUSE, -EACCES...), the control thread (-EAGAIN).
 * Any thread.
 */
CH_API int ch_node_create(const ch_node_config *cfg, ch_node **out);
/* Registers a process type: the struct is copied (callbacks and ud by value) and its name
 * too, so `type` may go once this returns. Before ch_node_start only, and not concurrently
 * with another registration on n or with ch_node_start (nothing locks the type table).
 * 0, -EINVAL (n, type or name NULL; name empty or over CH_TYPE_NAME_MAX bytes), -EEXIST
 * (name registered already), -EBUSY (the node was started, or stopped), -ENOMEM. */
CH_API int ch_node_type_register(ch_node *n, const ch_process_type *type);
/*
 * Starts the node: one thread per reactor core (pinned to a CPU when cfg.pin), plus the
 * coordinator's on a clustered node. Returns once every thread is created, without
 * waiting for them to run: from then on the node takes calls (ch_send, starts... are
 * queued until their reactor runs). A clustered node then joins its hub in the
 * background (it dials cluster.seeds and retries until one answers): it is a hub of one
 * until then, and this does not wait for it.
 * Returns 0; -EINVAL (n NULL); -EBUSY when the node was started before (a second call,
 * even after ch_node_stop: a node starts once); or the error of creating a thread
 * (-EAGAIN...), logged, after which the node is stopped (threads already started are
 * joined) and takes no more calls (CH_ESTOPPED). Any thread.
 */
CH_API int ch_node_start(ch_node *n);
/* Closes every server of the node, terminates every process (reason CH_REASON_SHUTDOWN,
 * terminate callbacks running on their reactors while every reactor still runs), fails
 * calls still waiting for an answer with CH_ESTOPPED, then joins the reactor threads and
 * runs what is left in their mailboxes on the calling thread. Blocks. Idempotent: 0 each
 * time (also for a node never started). Calls from then on return CH_ESTOPPED. -EINVAL
 * (n NULL), CH_EWOULDBLOCK on one of n's reactor threads (a process callback, a hook run
 * there). */
CH_API int ch_node_stop(ch_node *n);
/* Stops the node if needed and frees it; every ch_server of the node must have been
 * closed first (ch_server_close). NULL: nothing. Not from the node's own threads (a
 * process callback): refused there, with an error logged. */
CH_API void ch_node_destroy(ch_node *n);

/* The number of reactor cores that run processes (cfg.cores; a clustered node's
 * coordinator thread is not one of them), fixed at ch_node_create; 0 for NULL. Any
 * thread, at any time of the node's life. */
CH_API unsigned ch_node_cores(const ch_node *n);
/* The core a process id lives on (a function of the id and the core count: it need not
 * exist), or CH_EBADID, -EINVAL for n NULL. Any thread. */
CH_API int ch_node_core_of(const ch_node *n, const char *id, size_t id_len);
/* The reactor core of the calling thread, or -1 when it is not one of n's cores (another
 * thread, or the coordinator's). */
CH_API int ch_node_current_core(const ch_node *n);
/* Runs fn(n, ud) on reactor `core`'s thread, soon, in order with the caller's other posts.
 * This is how an application runs its own code next to a shard. Returns 0, and then fn
 * runs exactly once (a post still queued when the node stops runs during ch_node_stop, on
 * its thread, with ch_node_current_core giving `core`); -EINVAL (n or fn NULL, core >=
 * cores), CH_ESTOPPED, -ENOMEM. Never -EAGAIN: posts are not bounded by the mailboxes.
 * Any thread. */
CH_API int ch_node_post(ch_node *n, unsigned core, void (*fn)(ch_node *, void *), void *ud);

/* --- children ----------------------------------------------------------------------- */

typedef struct ch_child_spec {
    const char *id;       /* 1..CH_ID_MAX bytes */
    size_t id_len;        /* bytes of id, or CH_ID_CSTR: NUL-terminated (0: refused) */
    const char *type;     /* a registered type name */
    const void *arg;      /* handed to init; copied */
    size_t arg_len;       /* */
    ch_restart restart;   /* default CH_PERMANENT */
    uint32_t shutdown_ms; /* 0: the node's shutdown_ms */
    const void *meta;     /* opaque metadata, up to CH_META_MAX bytes; copied */
    size_t meta_len;      /* */
    const char *tag;      /* NULL or up to CH_TAG_MAX bytes, for ch_registry_list queries */
} ch_child_spec;

/* Completion of an asynchronous batch: results[i] is child i's outcome. Runs on a reactor
 * thread; the arrays are valid during the call only. */
typedef void (*ch_batch_done)(void *ud, const int *results, size_t count);

typedef struct ch_batch_opts {
    uint32_t timeout_ms;   /* blocking form: wait at most this long (0: node default) */
    int rollback;          /* start: on any failure, stop the children that started */
    ch_batch_done on_done; /* set: asynchronous, returns at once; NULL: blocking */
    void *ud;              /* for on_done */
} ch_batch_opts;

/*
 * Starts `count` children (specs are copied, strings and bytes included: the caller's
 * arrays may go once this returns). Per child result: 0 started, CH_EALREADY,
 * CH_EUNKNOWN_TYPE, CH_EINIT, CH_EBADID, -EINVAL (bad spec), CH_EROLLEDBACK, -ETIMEDOUT,
 * -ENOMEM, CH_ESTOPPED (its core stopped meanwhile), or for a child that another node
 * owns, the error of the way there (-EHOSTUNREACH...).
 * Blocking form: fills results[count] (results may be NULL) and returns 0 when every
 * child started, CH_EPARTIAL otherwise, -ETIMEDOUT when the deadline passed (children may
 * still start later). Asynchronous form: returns 0 once posted; `results` is not used,
 * on_done gets them (exactly once, when 0 was returned; never otherwise). opts NULL:
 * blocking with defaults. Before anything is posted: -EINVAL (n NULL, specs NULL with
 * count > 0), CH_EWOULDBLOCK (blocking form on a reactor thread), CH_EPARTITIONED,
 * CH_ESTOPPED, -ENOMEM; then no child starts and on_done does not run.
 * Hooks: CH_HOOK_CHILD_ALTER then CH_HOOK_PRE_CHILDREN_START run on the calling thread,
 * CH_HOOK_POST_CHILDREN_START on the thread that completes the batch.
 */
CH_API int ch_node_children_start(ch_node *n, const ch_child_spec *specs, size_t count,
                                  const ch_batch_opts *opts, int *results);
/* Stops children by id (id_lens NULL: every id NUL-terminated; else id_lens[i] is id i's
 * id_len, as everywhere; the ids are copied). Each stopped child's terminate runs with
 * CH_REASON_STOPPED. Per child: 0, CH_ENOPROC, CH_EBADID, CH_ESTOPPED (the node stopped
 * meanwhile), -EHOSTUNREACH (its node is gone), -ENOMEM. Same blocking and asynchronous
 * forms and returns as ch_node_children_start, but for CH_EPARTITIONED: stops are taken in
 * partition mode too. */
CH_API int ch_node_children_stop(ch_node *n, const char *const *ids, const size_t *id_lens,
                                 size_t count, const ch_batch_opts *opts, int *results);

/* --- messages ----------------------------------------------------------------------- */

/*
 * Sends `data` (len bytes, copied) to the process `id` (id_len bytes, or CH_ID_CSTR:
 * NUL-terminated; the same for every (id, id_len) pair of the API), fire and forget.
 * Messages from one thread to one process are handled in the order sent. Any thread,
 * reactors included; never blocks. Returns 0 once queued, -EAGAIN when the mailbox toward
 * that core is full or, for an id on another node, the links to other nodes are backed up
 * (nothing was queued: retry later), -EINVAL (n NULL, data NULL with len > 0),
 * CH_EMSGSIZE (len over max_message), CH_EBADID, CH_EPARTITIONED, CH_ESTOPPED, -ENOMEM.
 * A message for an id that does not exist is counted as a dead letter (ch_node_stats_get).
 */
CH_API int ch_send(ch_node *n, const char *id, size_t id_len, const void *data, size_t len);

/*
 * Calls `id` with req (len bytes, copied) and waits for the answer, at most timeout_ms
 * (0: the node's call_timeout_ms). Blocks: not on a reactor thread (CH_EWOULDBLOCK; use
 * ch_proc_call or ch_call_async there). Copies up to reply_cap bytes into reply and sets
 * *reply_len (may be NULL) to the full reply size: CH_ETRUNCATED when it did not fit;
 * *reply_len is 0 after any other error. Returns 0, -ETIMEDOUT, CH_ENOPROC, CH_ECRASHED
 * (the process crashed on it), -ENODATA (it returned without replying), -EAGAIN (the
 * mailbox toward its core is full: nothing was sent), -EINVAL (n NULL, req NULL with
 * len > 0), CH_EMSGSIZE (the request or the reply over max_message), CH_EBADID,
 * CH_EPARTITIONED, CH_ESTOPPED (the node is not running or stopped before the answer),
 * -ENOMEM, or for an id on another node the error of the way there (-EHOSTUNREACH...).
 */
CH_API int ch_call(ch_node *n, const char *id, size_t id_len, const void *req, size_t len,
                   void *reply, size_t reply_cap, size_t *reply_len, uint32_t timeout_ms);

/* The answer to an asynchronous call: status 0 with the reply (len bytes, valid during the
 * call only), or a negative status with no bytes. Where it runs: see ch_call_async. */
typedef void (*ch_reply_fn)(void *ud, int status, const void *reply, size_t len);
/*
 * Calls `id` with req (len bytes, copied) without waiting: fn(ud, ...) gets the answer.
 * From any thread, reactors included. timeout_ms 0: the node's call_timeout_ms.
 *
 * Returns 0 once the call is on its way; fn then runs exactly once, with status 0 and the
 * reply, or with -ETIMEDOUT, CH_ENOPROC, CH_ECRASHED (the process crashed on it),
 * -ENODATA (it returned without replying), CH_EMSGSIZE (the reply was over max_message),
 * CH_ESTOPPED (the node stopped before the answer), -ENOMEM, or for an id on another node
 * the error of the way there (-EHOSTUNREACH...).
 * Any other return is an error, nothing was sent and fn never runs: -EINVAL (n or fn
 * NULL, req NULL with len > 0), CH_EBADID, CH_EMSGSIZE (req over max_message),
 * CH_EPARTITIONED, CH_ESTOPPED, -EAGAIN (the mailbox toward the id's core is full: retry
 * later), -ENOMEM.
 *
 * Where fn runs. Called on one of n's reactors: on that reactor's thread, on a later turn
 * (never inside this call). Called from any other thread: on the reactor that took the
 * call, the id's core on this node, or the coordinator's thread when another node owns
 * the id; never on the calling thread, and possibly before ch_call_async has returned,
 * so ud must be ready before the call. A call still waiting when the node stops gets
 * CH_ESTOPPED, on that reactor or on the thread running ch_node_stop. fn must not block.
 */
CH_API int ch_call_async(ch_node *n, const char *id, size_t id_len, const void *req, size_t len,
                         uint32_t timeout_ms, ch_reply_fn fn, void *ud);

/* --- registry ----------------------------------------------------------------------- */

typedef struct ch_proc_info {
    const char *id; /* NUL-terminated copy (ids may hold other NULs: use id_len) */
    size_t id_len;
    const char *type;
    const void *arg; /* the spec's init argument */
    size_t arg_len;
    const void *meta;
    size_t meta_len;
    const char *tag; /* "" when none */
    ch_restart restart;
    uint32_t shutdown_ms;
    uint32_t incarnation; /* restarts so far */
    unsigned core;        /* owner core on its node */
    uint64_t node;        /* owner node id (ch_node_id) */
    uint64_t pin;         /* the node it is pinned to (ch_node_pin), 0 when none */
} ch_proc_info;

/* Looks an id up: the process's spec and where it runs. Asks the id's core when this
 * node owns the id, else (or when it is not there) this node's replica of the hub's
 * registry. Blocks, at most the node's call_timeout_ms: not on a reactor thread. Returns
 * 0 with *out, one allocation that the caller owns (free it with ch_proc_info_free);
 * CH_ENOPROC, CH_EBADID, -EINVAL (n or out NULL), CH_EWOULDBLOCK, CH_ESTOPPED,
 * -ETIMEDOUT, -ENOMEM, and *out untouched. */
CH_API int ch_registry_lookup(ch_node *n, const char *id, size_t id_len, ch_proc_info **out);
/* Frees what ch_registry_lookup gave. NULL: nothing. Any thread. */
CH_API void ch_proc_info_free(ch_proc_info *info);

typedef struct ch_proc_list {
    size_t count;
    ch_proc_info **items;
} ch_proc_list;
/* Lists every process of the hub (a clustered node answers from its replica of the hub's
 * registry; a node of its own lists its cores), or those whose tag equals `tag` exactly
 * (NULL: all), in no particular order. Blocks, at most the node's call_timeout_ms: not on a
 * reactor thread. Empties *out first, then returns 0 with it filled (the caller owns the
 * items: ch_proc_list_free), or -EINVAL (n or out NULL), CH_EWOULDBLOCK, CH_ESTOPPED,
 * -ETIMEDOUT, -ENOMEM with *out empty. */
CH_API int ch_registry_list(ch_node *n, const char *tag, ch_proc_list *out);
/* Frees the items of a list and empties it (the ch_proc_list itself is the caller's).
 * NULL: nothing. Any thread. */
CH_API void ch_proc_list_free(ch_proc_list *list);

/* --- hooks -------------------------------------------------------------------------- */

typedef enum ch_hook_point {
    CH_HOOK_CHILD_ALTER = 0,           /* before each child start; may change ev->spec */
    CH_HOOK_PRE_CHILDREN_START = 1,    /* specs, count */
    CH_HOOK_POST_CHILDREN_START = 2,   /* specs, count, results */
    CH_HOOK_REGISTRY_INSERT = 3,       /* id, core, incarnation; on the owner reactor */
    CH_HOOK_REGISTRY_REMOVE = 4,       /* id, core, reason; on the owner reactor */
    CH_HOOK_PROCESS_RESTARTED = 5,     /* id, core, incarnation (new); on the owner reactor */
    CH_HOOK_PRE_CLUSTER_JOIN = 6,      /* node: a member is about to be added */
    CH_HOOK_POST_CLUSTER_JOIN = 7,     /* node: a member was added */
    CH_HOOK_PRE_CLUSTER_LEAVE = 8,     /* node: a member is about to be removed */
    CH_HOOK_POST_CLUSTER_LEAVE = 9,    /* node: a member was removed (left or dead) */
    CH_HOOK_PRE_REDISTRIBUTION = 10,   /* node: the ring is about to change (epoch) */
    CH_HOOK_POST_REDISTRIBUTION = 11,  /* node: the ring changed (epoch) */
    CH_HOOK_COORDINATOR_SHUTDOWN = 12, /* the coordinator is stopping */
    CH_HOOK_FORWARDED_MIGRATION = 13,  /* id, node: a start reached a non-owner and was
                                          forwarded to node */
    CH_HOOK_CHILDREN_MIGRATED = 14,    /* node (target), ids, id_lens, count, core: these
                                          processes moved to node and node confirmed them
                                          (one call per confirmed batch, on the old owner
                                          core; with confirm_handover, after the new
                                          instances ran their forwarded messages) */
    CH_HOOK_MIGRATION_FAILED = 15,     /* id, node (target), status: a process did not move
                                          (it stays here, or restarts from its spec); on
                                          its owner reactor */
    CH_HOOK_PRE_CHILDREN_REDISTRIBUTION = 16, /* node (target), count: a core is about to
                                                 hand `count` processes to node */
    CH_HOOK_CONFLICT = 17, /* id, core, node (the other instance's): two live instances met
                              and the one here stayed (see resolve_conflict) */
    CH_HOOK_POINTS = 18,
} ch_hook_point;

typedef struct ch_hook_event {
    ch_hook_point point;
    ch_child_spec *spec;        /* CHILD_ALTER: the child about to start (mutable) */
    const ch_child_spec *specs; /* PRE/POST_CHILDREN_START */
    size_t count;               /* */
    const int *results;         /* POST_CHILDREN_START */
    const char *id;             /* REGISTRY_*, PROCESS_RESTARTED */
    size_t id_len;              /* */
    unsigned core;              /* */
    uint32_t incarnation;       /* */
    ch_reason reason;           /* REGISTRY_REMOVE */
    uint64_t node;              /* cluster hooks: the member concerned */
    uint64_t epoch;             /* cluster hooks: the ring epoch */
    const char *const *ids;     /* CHILDREN_MIGRATED: the ids (not NUL-terminated) */
    const size_t *id_lens;      /* */
    int status;                 /* MIGRATION_FAILED: why (a negative code) */
} ch_hook_event;

typedef void (*ch_hook_fn)(void *ud, ch_hook_event *ev);

/* Registers fn on a hook point under hook_id (1..63 bytes, copied; unique per point).
 * Handlers of a point run highest priority first, in registration order among equals, on
 * the thread that the point's comment names (one that runs on a reactor must not block).
 * At boot or at run time, from any thread (a run already under way may miss a handler
 * added meanwhile).
 * 0, -EINVAL (n, hook_id or fn NULL, unknown point, hook_id empty or too long), -EEXIST,
 * -ENOMEM. */
CH_API int ch_hook_register(ch_node *n, ch_hook_point point, const char *hook_id, int priority,
                            ch_hook_fn fn, void *ud);
/* Removes the handler registered under hook_id: 0, -ENOENT when no such handler, -EINVAL
 * (n or hook_id NULL, unknown point), -ENOMEM. A handler may still run once after this
 * returns if it was already under way on a reactor. Any thread. */
CH_API int ch_hook_cancel(ch_node *n, ch_hook_point point, const char *hook_id);

/* --- statistics --------------------------------------------------------------------- */

#define CH_PAUSE_BUCKETS 32

typedef struct ch_node_stats {
    uint64_t processes;          /* alive now */
    uint64_t started;            /* first starts */
    uint64_t stopped;            /* ended for good (stopped, exited, not restarted) */
    uint64_t restarts;           /* restarts by policy */
    uint64_t crashes;            /* handle/init failures */
    uint64_t messages;           /* handled messages */
    uint64_t dead_letters;       /* messages for ids that did not exist */
    uint64_t intensity_exceeded; /* crashes left unrestarted by the intensity limit */
    uint64_t slow_terminates;    /* terminate callbacks that overran shutdown_ms */
    uint64_t crash_restarts;     /* processes of dead members restarted here from specs, or
                                    taken back from a dead target that had confirmed them
                                    (what it applied since died with it) */
    uint64_t bad_frames;         /* connections closed for a malformed or truncated frame */
    uint64_t refused_peers;      /* handshakes refused (cookie, hub, version) or too slow */
    uint64_t rejoins;            /* times the hub declared this node dead and it came back */
    uint64_t conflicts;          /* two live instances of an id met here; one was kept */
    /* Migration (design §3). */
    uint64_t migrating;           /* now: processes queued to move, frozen or unconfirmed */
    uint64_t migrated_out;        /* processes handed to another node and confirmed */
    uint64_t migrated_in;         /* processes installed here by a migration */
    uint64_t migration_failures;  /* moves that did not happen (kept or restarted) */
    uint64_t forwarded_messages;  /* messages sent down a lane behind their process */
    uint64_t held_messages;       /* messages that reached the new node first and waited */
    uint64_t handover_bytes_raw;  /* record bytes sent (states, forwarded messages) */
    uint64_t handover_bytes_wire; /* the same after the codec */
    uint64_t handover_frames_zstd, handover_frames_raw; /* frames sent each way */
    uint64_t handover_frames_lane; /* of those, sent on a core's data lane (the rest went
                                      through the coordinators) */
    uint64_t handover_lanes_lost;  /* data lanes that closed with frames unconfirmed (sent
                                      again through the coordinator) */
    uint64_t pause_p50_us, pause_p99_us, pause_max_us; /* per moved process, on the old
                                          node: from its freeze to its confirmation; p50
                                          and p99 within 1/32 (a log-linear histogram,
                                          16 buckets per power of two), max exact */
    uint64_t pause_hist[CH_PAUSE_BUCKETS]; /* pause_hist[i]: pauses in [2^i, 2^(i+1)) us */
    /* The hub as this node sees it. */
    uint64_t members_alive; /* members alive or suspect, this node included */
    uint64_t ring_members;  /* members that own a part of the ring */
    uint64_t epoch;         /* ring epoch */
    uint64_t accept_pauses; /* times a listener paused accepting: out of descriptors or memory */
    uint64_t left_behind;   /* processes still here when a leave ended: stopped with the node,
                               state and all (a move that failed and was then retried and
                               confirmed is not among them) */
} ch_node_stats;

/* Sums every core's counters (the coordinator's included) into *out. Each counter is
 * exact per core, the sum a moment's view. 0, or -EINVAL (n or out NULL). Any thread, also
 * after ch_node_stop. */
CH_API int ch_node_stats_get(ch_node *n, ch_node_stats *out);
/* One reactor's counters: core 0..cores-1, or `cores` for the coordinator of a clustered
 * node (it counts what crosses the network). -EINVAL for another core. Any thread. */
CH_API int ch_node_core_stats_get(ch_node *n, unsigned core, ch_node_stats *out);

#ifdef __cplusplus
}
#endif
#endif
