/*
 * corehub/common.h - visibility, error codes and logging shared by every public header.
 *
 * Every public function returns 0 (or a count) on success and a negative code on failure:
 * either a negated errno value (-EINVAL, -ENOMEM, -EAGAIN, -ETIMEDOUT, ...) or one of the
 * CH_E* codes below, which sit far outside the errno range. ch_strerror() names both.
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
CH_API void ch_log_set_level(ch_log_level level);
CH_API ch_log_level ch_log_get_level(void);
CH_API void ch_log_set_sink(ch_log_sink sink, void *ud); /* NULL restores stderr */

#ifdef __cplusplus
}
#endif
#endif
