/*
 * corehub/common.h - what every public header shares: visibility, error codes, logging,
 * and the rule the public names follow (with the aliases of the names that broke it).
 *
 * Every public function returns 0 (or a count) on success and a negative code on failure:
 * either a negated errno value (-EINVAL, -ENOMEM, -EAGAIN, -ETIMEDOUT, ...) or one of the
 * CH_E* codes below, which sit far outside the errno range. ch_strerror() names both.
 *
 * Names. A public function is ch_<object>_<verb>, with an optional part between and an
 * optional variant after: ch_<object>[_<part>]_<verb>[_<variant>].
 *   object   what the function acts on: a handle type without its ch_ (node, proc, server,
 *            sconn, ctl, ctl_reply, buf, proc_info, proc_list, node_config, server_config),
 *            or a facility with no handle type of its own, whose owner, if any, is the
 *            first argument (hook and registry: the node; timer: the process; log;
 *            cookie). Grep ch_<object>_ to find everything about one object.
 *   part     the piece of the object concerned: ch_proc_state_set, ch_node_children_start,
 *            ch_node_partition_reset, ch_log_level_set.
 *   verb     what is done: create, destroy, open, close, start, stop, register, cancel,
 *            set, get, append, list, lookup...
 *   variant  how, when one verb comes in two forms: ch_call_async, ch_registry_list_local.
 *
 * Queries that only read are named by what they answer, without a verb: ch_node_id,
 * ch_node_cores, ch_proc_state, ch_node_owner_of, ch_node_partitioned, ch_sconn_peer. They
 * take the verb `get` when the answer is a snapshot of many values copied out, into the
 * caller's struct or a new array (ch_node_stats_get, ch_node_core_stats_get,
 * ch_node_members_get), or when the bare name is a type's (ch_log_level_get).
 *
 * Short by design: the message verbs ch_send, ch_call, ch_call_async and ch_reply (with
 * ch_reply_defer and ch_reply_send, whose object is the deferred reply) name no object:
 * they address a process by its id, which is no handle, the node passed first only
 * carries them there, and they are what a program writes most. ch_strerror keeps the
 * name of the C library's strerror(3), whose job it does for corehub's codes.
 *
 * Types are ch_<noun> (ch_node_config, ch_proc_info), constants and enum values CH_UPPER.
 */
#ifndef COREHUB_COMMON_H
#define COREHUB_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(CH_BUILDING_LIBRARY)
#define CH_API __attribute__((visibility("default")))
#else
#define CH_API
#endif

/* corehub's own error codes (negative, disjoint from -errno). */
enum {
    CH_EUNKNOWN_TYPE = -10001, /* the process type is not registered on this node */
    CH_EALREADY = -10002,      /* a process with this id is already running */
    CH_ENOPROC = -10003,       /* no process with this id */
    CH_EINIT = -10004,         /* the type's init callback refused the start */
    CH_ESTOPPED = -10005,      /* the node is not running (not started, or stopped) */
    CH_EBADID = -10006,        /* id empty or longer than CH_ID_MAX bytes */
    CH_EMSGSIZE = -10007,      /* message larger than the node's max_message */
    CH_EWOULDBLOCK = -10008,   /* blocking call made on a reactor thread (would deadlock) */
    CH_EROLLEDBACK = -10009,   /* started, then stopped again because the batch rolled back */
    CH_ECRASHED = -10010,      /* the process crashed while handling the request */
    CH_ETRUNCATED = -10011,    /* the reply did not fit the caller's buffer */
    CH_EPARTIAL = -10012,      /* some children of a batch failed: see its results; a leave
                                  that did not hand everything over */
    CH_EPARTITIONED = -10013,  /* the node is in partition mode: starts, sends and calls are
                                  refused */
};

/* Returns a static, human-readable description of any code a corehub function returned:
 * "success" for 0, strerror's text for -errno, "unknown error" for anything else. Any
 * thread. */
CH_API const char *ch_strerror(int code);

typedef enum ch_log_level {
    CH_LOG_DEBUG = 0,
    CH_LOG_INFO = 1,
    CH_LOG_WARN = 2,
    CH_LOG_ERROR = 3,
    CH_LOG_OFF = 4,
} ch_log_level;

/*
 * Logging: one line per event, to stderr by default, as
 * "2026-11-25T17:03:39.123Z WARN  [r1] message". The level is process-wide (the CH_LOG
 * environment variable, "debug".."off", sets the initial one; default "info"). A sink
 * replaces stderr; it may be called from any corehub thread, concurrently, and must be
 * thread-safe. It gets the line NUL-terminated, without its newline, valid during the call
 * only (lines are cut at about 1 KiB).
 * The three functions may be called from any thread at any time, before any node exists
 * too; a change applies to every node of the process at once. A sink replaced while a
 * thread is logging may still get that one line; replaced sinks are not freed (a few bytes
 * each). If the memory for a new sink cannot be had, the old one stays.
 */
typedef void (*ch_log_sink)(void *ud, ch_log_level level, const char *line);
CH_API void ch_log_level_set(ch_log_level level);
CH_API ch_log_level ch_log_level_get(void);
CH_API void ch_log_sink_set(ch_log_sink sink, void *ud); /* NULL restores stderr */

/* --- aliases (old names) ---------------------------------------------------------------
 *
 * The names these functions had before they followed the rule above. Each is a macro for
 * the new name, so source written with the old names compiles unchanged and calls the same
 * function. The library exports only the new names (a binary linked against the old
 * symbols must be rebuilt). New code uses the new names; define CH_NO_OLD_NAMES before
 * including a corehub header to hide these (the library itself does).
 */
#ifndef CH_NO_OLD_NAMES
#define ch_node_register_type   ch_node_type_register
#define ch_node_set_ctl_handler ch_node_ctl_handler_set
#define ch_node_core_stats      ch_node_core_stats_get
#define ch_start_children       ch_node_children_start
#define ch_stop_children        ch_node_children_stop
#define ch_members              ch_node_members_get
#define ch_is_partitioned       ch_node_partitioned
#define ch_partition_reset      ch_node_partition_reset
#define ch_lookup               ch_registry_lookup
#define ch_list                 ch_registry_list
#define ch_list_local           ch_registry_list_local
#define ch_log_get_level        ch_log_level_get
#define ch_log_set_level        ch_log_level_set
#define ch_log_set_sink         ch_log_sink_set
#endif

#ifdef __cplusplus
}
#endif
#endif
