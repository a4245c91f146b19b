/*
 * common.c: helpers shared by the benchmark tools (see common.h).
 */
#define _GNU_SOURCE /* memmem */
#include "common.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>

static const char *bench_program = "bench";

void bench_set_program(const char *name)
{
    bench_program = name;
}

static void bench_vmessage(const char *fmt, va_list ap, int err)
{
    fprintf(stderr, "%s: ", bench_program);
    vfprintf(stderr, fmt, ap);
    if (err)
        fprintf(stderr, ": %s", strerror(err));
    fputc('\n', stderr);
}

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bench_vmessage(fmt, ap, 0);
    va_end(ap);
    exit(1);
}

void bench_die_errno(const char *fmt, ...)
{
    int err = errno;
    va_list ap;
    va_start(ap, fmt);
    bench_vmessage(fmt, ap, err);
    va_end(ap);
    exit(1);
}

void *bench_alloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        bench_die("out of memory (%zu bytes)", size);
    return p;
}

void *bench_realloc(void *ptr, size_t size)
{
    void *p = realloc(ptr, size ? size : 1);
    if (p == NULL)
        bench_die("out of memory (%zu bytes)", size);
    return p;
}

uint64_t bench_parse_u64(const char *option, const char *text, uint64_t min, uint64_t max)
{
    if (text == NULL)
        bench_die("%s needs a value", option);
    char *end;
    errno = 0;
    unsigned long long value = strtoull(text, &end, 10);
    if (text[0] < '0' || text[0] > '9' || *end != '\0' || errno != 0 || value < min || value > max)
        bench_die("%s: '%s' is not a whole number from %llu to %llu", option, text,
                  (unsigned long long)min, (unsigned long long)max);
    return value;
}

void bench_unix_address(struct sockaddr_un *addr, const char *path)
{
    memset(addr, 0, sizeof *addr);
    addr->sun_family = AF_UNIX;
    size_t len = strlen(path);
    if (len == 0 || len >= sizeof addr->sun_path)
        bench_die("socket path '%s': a Unix socket path has 1 to %zu bytes", path,
                  sizeof addr->sun_path - 1);
    memcpy(addr->sun_path, path, len + 1);
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t bench_self_cpu_ns(void)
{
    /* getrusage, rather than the clock ticks of /proc/self/stat: the same
     * accounting, to the microsecond. */
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        bench_die_errno("getrusage");
    uint64_t us = (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000u +
                  (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
    return us * 1000u;
}

const char *bench_find_marker(const char *from, const char *end)
{
    static const char marker[] = BENCH_MARKER;
    if (from >= end)
        return NULL;
    return memmem(from, (size_t)(end - from), marker, sizeof marker - 1);
}

size_t bench_count_markers(const char *text, size_t len)
{
    size_t count = 0;
    const char *end = text + len;
    for (const char *p = bench_find_marker(text, end); p != NULL;
         p = bench_find_marker(p + sizeof BENCH_MARKER - 1, end))
        count++;
    return count;
}

const char *bench_payload_name(const json_t *payload)
{
    return json_string_value(json_object_get(payload, "event"));
}

json_t *bench_payload_properties(const json_t *payload)
{
    return json_object_get(payload, "properties");
}

/* The payload on line `line` of path, checked, or exit. */
static json_t *bench_payload_parse(const char *path, size_t line, const char *text)
{
    json_error_t error;
    json_t *payload = json_loads(text, JSON_REJECT_DUPLICATES, &error);
    if (payload == NULL)
        bench_die("%s:%zu: not JSON: %s", path, line, error.text);
    if (!json_is_object(payload))
        bench_die("%s:%zu: a payload is a JSON object, {\"event\", \"properties\"}", path, line);
    const char *key;
    json_t *value;
    json_object_foreach(payload, key, value)
    {
        if (strcmp(key, "event") != 0 && strcmp(key, "properties") != 0)
            bench_die("%s:%zu: unexpected key '%s' (a payload has only event and properties)", path,
                      line, key);
    }
    const char *name = bench_payload_name(payload);
    if (name == NULL || name[0] == '\0')
        bench_die("%s:%zu: \"event\" must be a non-empty string", path, line);
    json_t *properties = bench_payload_properties(payload);
    if (!json_is_object(properties))
        bench_die("%s:%zu: \"properties\" must be an object", path, line);
    if (json_object_get(properties, BENCH_MARKER_KEY) != NULL)
        bench_die("%s:%zu: the properties already hold '%s', which the benchmark adds", path, line,
                  BENCH_MARKER_KEY);
    return payload;
}

void bench_payloads_load(bench_payloads *out, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        bench_die_errno("cannot open the payload file %s", path);
    out->items = NULL;
    out->count = 0;
    char *text = NULL;
    size_t capacity = 0;
    size_t line = 0;
    ssize_t len;
    while ((len = getline(&text, &capacity, f)) >= 0) {
        line++;
        if (strspn(text, " \t\r\n") == (size_t)len)
            continue;
        out->items = bench_realloc(out->items, (out->count + 1) * sizeof(json_t *));
        out->items[out->count++] = bench_payload_parse(path, line, text);
    }
    if (ferror(f))
        bench_die_errno("cannot read the payload file %s", path);
    free(text);
    fclose(f);
    if (out->count == 0)
        bench_die("%s: no payload in the file", path);
}

void bench_payloads_free(bench_payloads *payloads)
{
    for (size_t i = 0; i < payloads->count; i++)
        json_decref(payloads->items[i]);
    free(payloads->items);
    payloads->items = NULL;
    payloads->count = 0;
}
