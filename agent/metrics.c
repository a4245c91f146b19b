/*
 * metrics: counters and the exit summary (see metrics.h).
 */
#include "metrics.h"

#include "account.h"
#include "log.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

static uint64_t counters[METRIC_COUNT];

static const char *const metric_names[METRIC_COUNT] = {
    [METRIC_CONNECTIONS_ACCEPTED] = "connections_accepted",
    [METRIC_CONNECTIONS_REFUSED] = "connections_refused",
    [METRIC_CONNECTIONS_CLOSED_BAD_INPUT] = "connections_closed_bad_input",
    [METRIC_BYTES_RECEIVED] = "bytes_received",
    [METRIC_ACKS_SENT] = "acks_sent",
    [METRIC_HEARTBEATS] = "heartbeats",
    [METRIC_BATCHES_SEALED] = "batches_sealed",
    [METRIC_BATCHES_DELIVERED] = "batches_delivered",
    [METRIC_BATCHES_DROPPED] = "batches_dropped",
    [METRIC_REQUESTS_SENT] = "requests_sent",
    [METRIC_REQUESTS_FAILED] = "requests_failed",
    [METRIC_REQUESTS_TIMED_OUT] = "requests_timed_out",
    [METRIC_CONNECTIONS_PAUSED] = "connections_paused",
    [METRIC_BATCHES_SPLIT] = "batches_split",
    [METRIC_FORWARD_GROUP_MARKERS] = "forward_group_markers",
    [METRIC_BYTES_SENT] = "bytes_sent",
    [METRIC_BYTES_SENT_UNCOMPRESSED] = "bytes_sent_uncompressed",
    [METRIC_ANSWERS_2XX] = "answers_2xx",
    [METRIC_ANSWERS_3XX] = "answers_3xx",
    [METRIC_ANSWERS_4XX] = "answers_4xx",
    [METRIC_ANSWERS_5XX] = "answers_5xx",
    [METRIC_ANSWERS_NONE] = "answers_none",
    [METRIC_CONNECTIONS_DENIED] = "connections_denied",
    [METRIC_CONNECTIONS_CLOSED_IDLE] = "connections_closed_idle",
    [METRIC_CONNECTIONS_CLOSED_UNREAD] = "connections_closed_unread",
    [METRIC_CONFIG_RELOADS] = "config_reloads",
    [METRIC_CONFIG_RELOAD_FAILURES] = "config_reload_failures",
    [METRIC_BATCHES_RETRIED] = "batches_retried",
    [METRIC_FAILED_3XX] = "requests_failed_3xx",
    [METRIC_FAILED_4XX] = "requests_failed_4xx",
    [METRIC_FAILED_5XX] = "requests_failed_5xx",
    [METRIC_FAILED_NONE] = "requests_failed_none",
};

const int64_t metrics_latency_bounds_ms[METRICS_LATENCY_BUCKETS] = {
    5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000};

static struct metrics_histogram latency;

void metrics_backend_answer(long status, int64_t latency_ms)
{
    enum metric m = status >= 200 && status < 300   ? METRIC_ANSWERS_2XX
                    : status >= 300 && status < 400 ? METRIC_ANSWERS_3XX
                    : status >= 400 && status < 500 ? METRIC_ANSWERS_4XX
                    : status >= 500 && status < 600 ? METRIC_ANSWERS_5XX
                                                    : METRIC_ANSWERS_NONE;
    counters[m]++;
    for (int i = 0; i < METRICS_LATENCY_BUCKETS; i++)
        if (latency_ms <= metrics_latency_bounds_ms[i])
            latency.le[i]++;
    latency.le[METRICS_LATENCY_BUCKETS]++;
    latency.count++;
    latency.sum_ms += latency_ms;
}

void metrics_request_failed(long status)
{
    enum metric m = status >= 300 && status < 400   ? METRIC_FAILED_3XX
                    : status >= 400 && status < 500 ? METRIC_FAILED_4XX
                    : status >= 500 && status < 600 ? METRIC_FAILED_5XX
                                                    : METRIC_FAILED_NONE;
    counters[METRIC_REQUESTS_FAILED]++;
    counters[m]++;
}

const struct metrics_histogram *metrics_latency(void)
{
    return &latency;
}

void metrics_add(enum metric m, uint64_t n)
{
    counters[m] += n;
}

uint64_t metrics_get(enum metric m)
{
    return counters[m];
}

const char *metrics_name(enum metric m)
{
    return (unsigned)m < METRIC_COUNT ? metric_names[m] : "unknown";
}

void metrics_reset(void)
{
    memset(counters, 0, sizeof counters);
    memset(&latency, 0, sizeof latency);
}

void metrics_format_summary(char *out, size_t outlen)
{
    const struct account *a = account_now();
    size_t n = (size_t)snprintf(out, outlen,
                                "received=%" PRIu64 " delivered=%" PRIu64 " buffered=%" PRIu64
                                " dropped=%" PRIu64,
                                account_received_total(), a->delivered, a->buffered,
                                account_dropped_total());
    for (int i = 0; i < DROP_REASON_COUNT && n < outlen; i++)
        if (a->dropped[i] > 0)
            n += (size_t)snprintf(out + n, outlen - n, " dropped_%s=%" PRIu64,
                                  reason_name((enum drop_reason)i), a->dropped[i]);
    for (int i = 0; i < SOURCE_COUNT && n < outlen; i++)
        if (a->received[i] > 0)
            n += (size_t)snprintf(out + n, outlen - n, " received_%s=%" PRIu64,
                                  account_source_name((enum event_source)i), a->received[i]);
    for (int i = 0; i < SOURCE_COUNT && n < outlen; i++)
        if (a->refused[i] > 0)
            n += (size_t)snprintf(out + n, outlen - n, " refused_%s=%" PRIu64,
                                  account_source_name((enum event_source)i), a->refused[i]);
    if (n < outlen)
        n += (size_t)snprintf(out + n, outlen - n,
                              " connections=%" PRIu64 " connections_refused=%" PRIu64
                              " connections_closed_bad_input=%" PRIu64 " acks=%" PRIu64,
                              counters[METRIC_CONNECTIONS_ACCEPTED],
                              counters[METRIC_CONNECTIONS_REFUSED],
                              counters[METRIC_CONNECTIONS_CLOSED_BAD_INPUT],
                              counters[METRIC_ACKS_SENT]);
    static const enum metric more[] = {METRIC_BYTES_RECEIVED, METRIC_HEARTBEATS,
                                       METRIC_BATCHES_DELIVERED, METRIC_BATCHES_DROPPED,
                                       METRIC_BATCHES_RETRIED, METRIC_REQUESTS_SENT, METRIC_REQUESTS_FAILED,
                                       METRIC_REQUESTS_TIMED_OUT, METRIC_CONNECTIONS_PAUSED,
                                       METRIC_BATCHES_SPLIT, METRIC_FORWARD_GROUP_MARKERS};
    for (size_t i = 0; i < sizeof more / sizeof more[0] && n < outlen; i++)
        n += (size_t)snprintf(out + n, outlen - n, " %s=%" PRIu64, metrics_name(more[i]),
                              counters[more[i]]);
    if (log_lines_dropped() > 0 && n < outlen)
        snprintf(out + n, outlen - n, " log_lines_dropped=%" PRIu64, log_lines_dropped());
}
