/*
 * producer.c: bench-producer, what one tlm_send costs the application that
 * calls it (client/telemetry.h). It sends the payloads as events, built
 * beforehand with the tlm_event_* calls, at a steady rate for some seconds,
 * times each tlm_send call alone with CLOCK_MONOTONIC, and prints
 *   {"calls", "ok", "dropped", "p50_ns", "p99_ns", "p999_ns", "max_ns", "mean_ns", "client"}
 * whether the agent is healthy, stopped (SIGSTOP) or absent: the driver
 * (bench.py) arranges which.
 *
 *   bench-producer --socket PATH --payloads FILE [--rate R] [--seconds S] [--flush-ms MS]
 *
 * --rate defaults to 20000 calls/s, --seconds to 3; --flush-ms (default 0)
 * is how long to wait at the end for the queued events to be written.
 */
#include "common.h"
#include "telemetry.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Add value under key (NULL inside an array) to the event being built. */
static tlm_status event_add_json(tlm_event *ev, const char *key, const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT: {
        tlm_status st = tlm_event_begin_map(ev, key);
        const char *k;
        json_t *item;
        json_object_foreach((json_t *)value, k, item)
        {
            if (st == TLM_OK)
                st = event_add_json(ev, k, item);
        }
        return st == TLM_OK ? tlm_event_end(ev) : st;
    }
    case JSON_ARRAY: {
        tlm_status st = tlm_event_begin_array(ev, key);
        size_t i;
        json_t *item;
        json_array_foreach(value, i, item)
        {
            if (st == TLM_OK)
                st = event_add_json(ev, NULL, item);
        }
        return st == TLM_OK ? tlm_event_end(ev) : st;
    }
    case JSON_STRING:
        return tlm_event_add_strn(ev, key, json_string_value(value), json_string_length(value));
    case JSON_INTEGER:
        return tlm_event_add_int(ev, key, json_integer_value(value));
    case JSON_REAL:
        return tlm_event_add_double(ev, key, json_real_value(value));
    case JSON_TRUE:
        return tlm_event_add_bool(ev, key, 1);
    case JSON_FALSE:
        return tlm_event_add_bool(ev, key, 0);
    case JSON_NULL:
        return tlm_event_add_null(ev, key);
    }
    return TLM_EINVAL;
}

static tlm_event *event_build(const json_t *payload)
{
    tlm_event *ev;
    tlm_status st = tlm_event_new(&ev, bench_payload_name(payload));
    if (st != TLM_OK)
        bench_die("tlm_event_new: %s", tlm_strerror(st));
    const char *key;
    json_t *value;
    json_object_foreach(bench_payload_properties(payload), key, value)
    {
        st = event_add_json(ev, key, value);
        if (st != TLM_OK)
            bench_die("building the event %s: %s", bench_payload_name(payload), tlm_strerror(st));
    }
    return ev;
}

static int compare_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

/* The q quantile of n sorted values: the ceil(q*n)-th smallest. */
static uint64_t quantile(const uint64_t *sorted, size_t n, double q)
{
    size_t rank = (size_t)(q * (double)n + 0.999999);
    if (rank == 0)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

static void sleep_until(uint64_t due_ns)
{
    struct timespec ts = {.tv_sec = (time_t)(due_ns / 1000000000u),
                          .tv_nsec = (long)(due_ns % 1000000000u)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

static void usage_exit(void)
{
    fputs("usage: bench-producer --socket PATH --payloads FILE [--rate R] [--seconds S]"
          " [--flush-ms MS]\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    bench_set_program("bench-producer");
    static const struct option longopts[] = {
        {"socket", required_argument, NULL, 's'},   {"payloads", required_argument, NULL, 'p'},
        {"rate", required_argument, NULL, 'r'},     {"seconds", required_argument, NULL, 't'},
        {"flush-ms", required_argument, NULL, 'f'}, {NULL, 0, NULL, 0}};
    const char *socket_path = NULL, *payload_path = NULL;
    uint64_t rate = 20000, seconds = 3, flush_ms = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 's':
            socket_path = optarg;
            break;
        case 'p':
            payload_path = optarg;
            break;
        case 'r':
            rate = bench_parse_u64("--rate", optarg, 1, 10000000);
            break;
        case 't':
            seconds = bench_parse_u64("--seconds", optarg, 1, 3600);
            break;
        case 'f':
            flush_ms = bench_parse_u64("--flush-ms", optarg, 0, 600000);
            break;
        default:
            usage_exit();
        }
    }
    if (optind != argc || socket_path == NULL || payload_path == NULL)
        usage_exit();

    bench_payloads payloads;
    bench_payloads_load(&payloads, payload_path);
    tlm_client *client;
    tlm_status st = tlm_open(&client, socket_path, NULL);
    if (st != TLM_OK)
        bench_die("tlm_open %s: %s", socket_path, tlm_strerror(st));

    size_t calls = (size_t)(rate * seconds);
    uint64_t *took = bench_alloc(calls * sizeof *took);
    uint64_t by_status[TLM_STATUS_COUNT_] = {0};
    uint64_t start = bench_now_ns();
    for (size_t i = 0; i < calls; i++) {
        tlm_event *ev = event_build(payloads.items[i % payloads.count]);
        sleep_until(start + (uint64_t)((double)i * 1e9 / (double)rate));
        uint64_t t0 = bench_now_ns();
        st = tlm_send(client, ev);
        took[i] = bench_now_ns() - t0;
        if ((unsigned)st >= TLM_STATUS_COUNT_)
            bench_die("tlm_send returned an unknown status %d", (int)st);
        by_status[st]++;
        tlm_event_free(ev);
    }
    uint64_t elapsed = bench_now_ns() - start;
    tlm_status flushed = flush_ms > 0 ? tlm_flush(client, (int)flush_ms) : TLM_OK;
    tlm_stats stats;
    tlm_get_stats(client, &stats);
    tlm_close(client);
    bench_payloads_free(&payloads);

    uint64_t total = 0;
    for (size_t i = 0; i < calls; i++)
        total += took[i];
    qsort(took, calls, sizeof *took, compare_u64);
    printf("{\"calls\": %zu, \"ok\": %" PRIu64 ", \"dropped\": %" PRIu64 ", \"p50_ns\": %" PRIu64
           ", \"p99_ns\": %" PRIu64 ", \"p999_ns\": %" PRIu64 ", \"max_ns\": %" PRIu64
           ", \"mean_ns\": %.1f, \"seconds\": %.3f, \"flushed\": %s"
           ", \"client\": {\"sent\": %" PRIu64 ", \"queued\": %" PRIu64
           ", \"dropped_queue_full\": %" PRIu64 ", \"connects\": %" PRIu64
           ", \"connect_failures\": %" PRIu64 "}}\n",
           calls, by_status[TLM_OK], (uint64_t)calls - by_status[TLM_OK],
           quantile(took, calls, 0.50), quantile(took, calls, 0.99), quantile(took, calls, 0.999),
           took[calls - 1], (double)total / (double)calls, (double)elapsed / 1e9,
           flushed == TLM_OK ? "true" : "false", stats.sent, stats.queued, stats.dropped_queue_full,
           stats.connects, stats.connect_failures);
    free(took);
    return 0;
}
