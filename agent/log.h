/*
 * log: leveled, timestamped messages on standard error that never block
 * the agent.
 *
 * Lines go through a writer thread (writer.c) with a bounded queue: a
 * standard error that nobody reads costs at most LOG_QUEUE_BYTES, the lines
 * past it are counted, and once the stream drains one line says how many
 * were lost. Messages about events from outside (bad input, backend errors)
 * go through a struct log_limit so that a flood produces a handful of lines
 * and a count of what was suppressed, never one line per event; text that
 * comes from outside is escaped with log_escape first.
 *
 * Lines are text ("2026-11-28T12:00:00.123Z warn: message") or, for
 * cluster log collectors, JSON: one object a line, {"ts": ..., "level":
 * ..., "msg": ...} and the line's fields. Fields name what a collector
 * filters or counts by (the peer, a drop's reason, the backend's status,
 * the counters at exit); the message says the same in words, so text lines
 * leave them out. A rate-limited line that follows suppressed ones has the
 * field "suppressed".
 */
#ifndef TA_LOG_H
#define TA_LOG_H

#include <stddef.h>
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
#define LOG_QUEUE_BYTES (256 * 1024)

void log_set_level(enum log_level level);
/* Lines as JSON objects (1) or text (0, the default). */
void log_set_json(int json);

/* One field of a JSON line: a string (text != NULL) or a whole number.
 * The key is a constant of the agent's, never text from outside. */
struct log_field {
    const char *key;
    const char *text;
    long long number;
};
#define LOG_TEXT(k, v) {(k), (v), 0}
#define LOG_NUMBER(k, v) {(k), NULL, (long long)(v)}
/* A field list for log_with(), ended for it. */
#define LOG_FIELDS(...) ((const struct log_field[]){__VA_ARGS__, {NULL, NULL, 0}})

void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A line with fields (LOG_FIELDS(...)), through limit when not NULL. */
void log_with(struct log_limit *limit, enum log_level level, const struct log_field *fields,
              const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* A line through limit (see struct log_limit), without fields. */
#define log_limited(limit, level, ...) log_with((limit), (level), NULL, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

/* Text from outside (an event name, a key), made safe for a log line: at
 * most max_chars characters of s[0..len), with control characters,
 * backslashes and bytes that are not UTF-8 written as \xNN, and "..." when
 * cut. Returns out (NUL-terminated; outlen >= 4 * max_chars + 4 fits all). */
const char *log_escape(char *out, size_t outlen, const char *s, size_t len, size_t max_chars);

/* Lines not written because the queue was full, since the start. */
uint64_t log_lines_dropped(void);
/* Wait up to timeout_ms for the queued lines to be written (at exit). */
void log_flush(int timeout_ms);
/* Write what can be written within timeout_ms, then stop the thread. */
void log_close(int timeout_ms);

#endif
