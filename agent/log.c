/*
 * log: leveled, timestamped, rate-limitable messages on standard error
 * (see log.h). One line per message, queued whole, so that lines never
 * interleave mid-line.
 */
#include "log.h"

#include "clock.h"
#include "json.h"
#include "writer.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

/* set on the event loop (at start, on reload), read from every thread */
static atomic_int log_threshold = LOG_INFO;
static atomic_int log_json;
static const char *const log_level_names[] = {"error", "warn", "info", "debug"};
static struct writer *log_writer;
static int log_writer_failed;
static atomic_uint_fast64_t log_dropped, log_dropped_reported;

void log_set_level(enum log_level level)
{
    atomic_store_explicit(&log_threshold, (int)level, memory_order_relaxed);
}

void log_set_json(int json)
{
    atomic_store_explicit(&log_json, json, memory_order_relaxed);
}

static int log_enabled(enum log_level level)
{
    return (int)level <= atomic_load_explicit(&log_threshold, memory_order_relaxed);
}

uint64_t log_lines_dropped(void)
{
    return atomic_load(&log_dropped);
}

/* One whole line for msg (which may be cut to fit): "2026-11-28T12:00:00.123Z
 * warn: msg\n", or its JSON object. Returns its length. */
static size_t log_line(char *line, size_t size, enum log_level level, const char *msg,
                       const struct log_field *fields)
{
    struct timespec ts;
    struct tm tm;
    char when[40];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(when + n, sizeof when - n, ".%03ldZ", ts.tv_nsec / 1000000);
    if (!atomic_load_explicit(&log_json, memory_order_relaxed)) {
        int m = snprintf(line, size, "%s %s: %s\n", when, log_level_names[level], msg);
        if (m < 0)
            return 0;
        if ((size_t)m >= size) { /* cut, and still one line */
            line[size - 2] = '\n';
            return size - 1;
        }
        return (size_t)m;
    }
    struct buf out = buf_borrow(line, size); /* size fits msg escaped (6 bytes a byte at most) */
    buf_append_str(&out, "{\"ts\":\"");
    buf_append_str(&out, when);
    buf_append_str(&out, "\",\"level\":\"");
    buf_append_str(&out, log_level_names[level]);
    buf_append_str(&out, "\",\"msg\":");
    json_write_string(&out, msg, strlen(msg));
    for (const struct log_field *f = fields; f != NULL && f->key != NULL; f++) {
        buf_append_str(&out, ",\"");
        buf_append_str(&out, f->key);
        buf_append_str(&out, "\":");
        if (f->text != NULL) {
            json_write_string(&out, f->text, strlen(f->text));
        } else {
            char number[24];
            snprintf(number, sizeof number, "%lld", f->number);
            buf_append_str(&out, number);
        }
    }
    buf_append_str(&out, "}\n");
    return out.failed ? 0 : out.len;
}

/* On the writer's thread, whenever its queue is empty again: say how many
 * lines were lost since the last time it said so. */
static void log_drained(void *arg)
{
    (void)arg;
    uint64_t dropped = atomic_load(&log_dropped);
    uint64_t reported = atomic_load(&log_dropped_reported);
    if (dropped == reported)
        return;
    atomic_store(&log_dropped_reported, dropped);
    char msg[128], line[256];
    snprintf(msg, sizeof msg, "%llu log lines were not written: standard error was not being read",
             (unsigned long long)(dropped - reported));
    size_t n = log_line(line, sizeof line, LOG_WARN, msg, NULL);
    if (writer_submit_copy(log_writer, line, n) < 0)
        atomic_store(&log_dropped_reported, reported); /* say it next time */
}

static void log_submit(const char *line, size_t len)
{
    if (log_writer == NULL && !log_writer_failed) {
        log_writer = writer_new(STDERR_FILENO, NULL, LOG_QUEUE_BYTES);
        log_writer_failed = log_writer == NULL;
        if (log_writer != NULL)
            writer_on_drained(log_writer, log_drained, NULL);
    }
    if (log_writer == NULL || writer_submit_copy(log_writer, line, len) < 0)
        atomic_fetch_add(&log_dropped, 1);
}

#define LOG_MAX_FIELDS 16

static void log_write(enum log_level level, const struct log_field *fields, unsigned suppressed,
                      const char *fmt, va_list ap)
{
    char msg[LOG_LINE_MAX], line[LOG_LINE_MAX * 7 + 128];
    int m = vsnprintf(msg, sizeof msg, fmt, ap);
    size_t n = m < 0 ? 0 : (size_t)m;
    if (n >= sizeof msg - 64)
        n = sizeof msg - 64; /* truncated; leave room for the suffix */
    struct log_field all[LOG_MAX_FIELDS + 2];
    size_t k = 0;
    for (const struct log_field *f = fields; f != NULL && f->key != NULL && k < LOG_MAX_FIELDS;)
        all[k++] = *f++;
    if (suppressed > 0) {
        snprintf(msg + n, sizeof msg - n, " (%u similar messages suppressed)", suppressed);
        all[k++] = (struct log_field)LOG_NUMBER("suppressed", suppressed);
    }
    all[k] = (struct log_field){NULL, NULL, 0};
    n = log_line(line, sizeof line, level, msg, all);
    if (n > 0)
        log_submit(line, n);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (!log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_write(level, NULL, 0, fmt, ap);
    va_end(ap);
}

/* Whether limit lets a line through now; *suppressed: how many it held
 * back since the last. */
static int log_pass(struct log_limit *limit, unsigned *suppressed)
{
    *suppressed = 0;
    if (limit == NULL)
        return 1;
    int64_t now = clock_monotonic_ms();
    if (now - limit->window_start_ms >= LOG_LIMIT_WINDOW_MS) {
        limit->window_start_ms = now;
        limit->printed = 0;
    }
    if (limit->printed >= LOG_LIMIT_BURST) {
        limit->suppressed++;
        return 0;
    }
    limit->printed++;
    *suppressed = limit->suppressed;
    limit->suppressed = 0;
    return 1;
}

void log_with(struct log_limit *limit, enum log_level level, const struct log_field *fields,
              const char *fmt, ...)
{
    unsigned suppressed;
    if (!log_enabled(level) || !log_pass(limit, &suppressed))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_write(level, fields, suppressed, fmt, ap);
    va_end(ap);
}

const char *log_escape(char *out, size_t outlen, const char *s, size_t len, size_t max_chars)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0, chars = 0, i = 0;
    while (i < len && chars < max_chars) {
        size_t seq = p[i] >= 0x80 ? json_utf8_sequence_length(p + i, len - i) : 1;
        int plain = p[i] >= 0x20 && p[i] != 0x7f && p[i] != '\\' && seq > 0;
        size_t need = plain ? seq : 4;
        if (o + need + 4 > outlen)
            break;
        if (plain) {
            memcpy(out + o, p + i, seq);
            o += seq;
            i += seq;
        } else {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[p[i] >> 4];
            out[o++] = hex[p[i] & 15];
            i++;
        }
        chars++;
    }
    if (i < len && o + 4 <= outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}

void log_flush(int timeout_ms)
{
    if (log_writer != NULL)
        writer_flush(log_writer, timeout_ms);
}

void log_close(int timeout_ms)
{
    log_flush(timeout_ms);
    writer_free(log_writer);
    log_writer = NULL;
}
