/*
 * common.h: what the benchmark tools (bench-loadgen, bench-sink, bench-floor,
 * bench-producer) share: fatal errors, checked number arguments, clocks and
 * CPU time, the "bench_t" marker every benchmark event carries, and the
 * payload file (ndjson of {"event", "properties"} objects).
 */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

/* The key every benchmark event carries in its properties; the sink counts
 * events as the occurrences of BENCH_MARKER in the JSON it receives. */
#define BENCH_MARKER_KEY "bench_t"
#define BENCH_MARKER "\"" BENCH_MARKER_KEY "\":"

/* Name used in messages (set once by main). */
void bench_set_program(const char *name);

/* Print "PROGRAM: message" on stderr and exit 1. */
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* As bench_die, with ": strerror(errno)" appended. */
void bench_die_errno(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* malloc / realloc that exit on failure. */
void *bench_alloc(size_t size);
void *bench_realloc(void *ptr, size_t size);

/* The unsigned decimal number of option `option`, between min and max, or exit. */
uint64_t bench_parse_u64(const char *option, const char *text, uint64_t min, uint64_t max);

/* *addr = the Unix socket address of path, or exit (a path too long for it). */
struct sockaddr_un;
void bench_unix_address(struct sockaddr_un *addr, const char *path);

/* CLOCK_MONOTONIC now, in nanoseconds. */
uint64_t bench_now_ns(void);

/* user + system CPU time of this process (all its threads) so far, in ns. */
uint64_t bench_self_cpu_ns(void);

/* The first occurrence of BENCH_MARKER in [from, end), or NULL. */
const char *bench_find_marker(const char *from, const char *end);

/* How many times BENCH_MARKER occurs in the len bytes at text. */
size_t bench_count_markers(const char *text, size_t len);

/* The payload file: one JSON object a line, {"event": name, "properties": {...}},
 * blank lines skipped. Exits with a message naming the line on any fault
 * (unreadable file, bad JSON, other keys, a properties map that already has
 * BENCH_MARKER_KEY, no payload at all). The caller json_decref()s each one. */
typedef struct bench_payloads {
    json_t **items;
    size_t count;
} bench_payloads;

void bench_payloads_load(bench_payloads *out, const char *path);
void bench_payloads_free(bench_payloads *payloads);

/* The event name and properties of a loaded payload. */
const char *bench_payload_name(const json_t *payload);
json_t *bench_payload_properties(const json_t *payload);

#endif
