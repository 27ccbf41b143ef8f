/*
 * core/log.h - one line per event, to stderr or a sink (see corehub/common.h).
 */
#ifndef CH_CORE_LOG_H
#define CH_CORE_LOG_H

#include <corehub/common.h>

/* Names the calling thread in log lines ("r0", "coord", ...); at most 15 bytes. */
void ch_log_thread_name(const char *name);
void ch_log(ch_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int ch_log_enabled(ch_log_level level);

#define CH_DEBUG(...) (ch_log_enabled(CH_LOG_DEBUG) ? ch_log(CH_LOG_DEBUG, __VA_ARGS__) : (void)0)
#define CH_INFO(...)  ch_log(CH_LOG_INFO, __VA_ARGS__)
#define CH_WARN(...)  ch_log(CH_LOG_WARN, __VA_ARGS__)
#define CH_ERROR(...) ch_log(CH_LOG_ERROR, __VA_ARGS__)

#endif
