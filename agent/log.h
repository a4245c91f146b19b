/*
 * log: leveled, timestamped messages on standard error.
 *
 * Messages about events from outside (bad input, backend errors) go through a
 * struct log_limit so that a flood produces a handful of lines and a count of
 * what was suppressed, never one line per event.
 */
#ifndef TA_LOG_H
#define TA_LOG_H

#include <stdint.h>

enum log_level { LOG_ERROR, LOG_WARN, LOG_INFO, LOG_DEBUG };

/* Per-call-site rate limit: at most LOG_LIMIT_BURST lines per window. */
struct log_limit {
    int64_t window_start_ms;
    unsigned printed;
    unsigned suppressed;
};

#define LOG_LIMIT_BURST 5
#define LOG_LIMIT_WINDOW_MS 10000

void log_set_level(enum log_level level);
int log_enabled(enum log_level level);
/* Parse "error", "warn", "info", "debug". Returns 0 or -1. */
int log_level_parse(const char *name, enum log_level *out);

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void log_limited(struct log_limit *limit, enum log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
