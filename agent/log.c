/*
 * log: leveled, timestamped, rate-limitable messages on standard error
 * (see log.h). One line per message, written with a single write() so that
 * lines from a crashing or concurrent process never interleave mid-line.
 */
#include "log.h"

#include "clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum log_level log_threshold = LOG_INFO;
static const char *const log_level_names[] = {"error", "warn", "info", "debug"};

void log_set_level(enum log_level level)
{
    log_threshold = level;
}

int log_enabled(enum log_level level)
{
    return level <= log_threshold;
}

int log_level_parse(const char *name, enum log_level *out)
{
    for (int i = 0; i <= LOG_DEBUG; i++) {
        if (strcmp(name, log_level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    }
    return -1;
}

static void log_write(enum log_level level, const char *suffix, const char *fmt, va_list ap)
{
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(line, sizeof line, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(line + n, sizeof line - n, ".%03ldZ %s: ", ts.tv_nsec / 1000000,
                     log_level_names[level]);
    n += (size_t)m;
    m = vsnprintf(line + n, sizeof line - n, fmt, ap);
    n = m < 0 ? n : n + (size_t)m;
    if (n >= sizeof line - 64)
        n = sizeof line - 64; /* truncated; leave room for the suffix */
    n += (size_t)snprintf(line + n, sizeof line - n, "%s\n", suffix);
    ssize_t ignored = write(STDERR_FILENO, line, n);
    (void)ignored;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_write(level, "", fmt, ap);
    va_end(ap);
}

void log_limited(struct log_limit *limit, enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    int64_t now = clock_monotonic_ms();
    if (now - limit->window_start_ms >= LOG_LIMIT_WINDOW_MS) {
        limit->window_start_ms = now;
        limit->printed = 0;
    }
    if (limit->printed >= LOG_LIMIT_BURST) {
        limit->suppressed++;
        return;
    }
    limit->printed++;
    char suffix[80] = "";
    if (limit->suppressed > 0) {
        snprintf(suffix, sizeof suffix, " (%u similar messages suppressed)", limit->suppressed);
        limit->suppressed = 0;
    }
    va_list ap;
    va_start(ap, fmt);
    log_write(level, suffix, fmt, ap);
    va_end(ap);
}
