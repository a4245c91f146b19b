/*
 * metrics: the agent's operational counters (connections, bytes, acks,
 * batches, requests), beside the event ledger of account.c; and the one-line
 * summary of both that the agent logs when it stops.
 */
#ifndef TA_METRICS_H
#define TA_METRICS_H

#include <stddef.h>
#include <stdint.h>

enum metric {
    METRIC_CONNECTIONS_ACCEPTED,
    METRIC_CONNECTIONS_REFUSED,           /* over agent.max_connections */
    METRIC_CONNECTIONS_CLOSED_BAD_INPUT,  /* closed for bytes that break the framing */
    METRIC_BYTES_RECEIVED,
    METRIC_ACKS_SENT,
    METRIC_HEARTBEATS,                    /* Fluent Forward nil objects, ignored */
    METRIC_BATCHES_SEALED,
    METRIC_BATCHES_DELIVERED,
    METRIC_BATCHES_DROPPED,
    METRIC_REQUESTS_SENT,
    METRIC_REQUESTS_FAILED,               /* did not deliver: any answer but 2xx, or none */
    METRIC_REQUESTS_TIMED_OUT,            /* not answered within the timeout */
    METRIC_CONNECTIONS_PAUSED,            /* times a producer waited for room in the buffer */
    METRIC_BATCHES_SPLIT,                 /* halved after a 413 */
    METRIC_FORWARD_GROUP_MARKERS,         /* Fluent Bit group start/end entries, skipped */
    METRIC_BYTES_SENT,                    /* request bodies as sent (compressed or not) */
    METRIC_BYTES_SENT_UNCOMPRESSED,       /* the same bodies before compression */
    METRIC_ANSWERS_2XX,                   /* every request's answer, by status class */
    METRIC_ANSWERS_3XX,
    METRIC_ANSWERS_4XX,
    METRIC_ANSWERS_5XX,
    METRIC_ANSWERS_NONE,                  /* no answer: refused, reset, timed out */
    METRIC_CONNECTIONS_DENIED,            /* not in agent.allowed_uids / allowed_gids */
    METRIC_CONNECTIONS_CLOSED_IDLE,       /* held part of a message too long */
    METRIC_CONNECTIONS_CLOSED_UNREAD,     /* did not read its acknowledgements */
    METRIC_CONFIG_RELOADS,                /* configurations reloaded */
    METRIC_CONFIG_RELOAD_FAILURES,        /* reloads refused (the running one stayed) */
    METRIC_BATCHES_RETRIED,               /* put back in the queue after a failed request */
    METRIC_FAILED_3XX,                    /* the requests of METRIC_REQUESTS_FAILED, by */
    METRIC_FAILED_4XX,                    /* the status class of their answer */
    METRIC_FAILED_5XX,
    METRIC_FAILED_NONE,                   /* no answer: refused, reset, timed out */
    METRIC_COUNT
};

/* Backend request latency, in milliseconds: the histogram's upper bounds
 * (and +Inf after them). */
#define METRICS_LATENCY_BUCKETS 12
extern const int64_t metrics_latency_bounds_ms[METRICS_LATENCY_BUCKETS];

struct metrics_histogram {
    uint64_t le[METRICS_LATENCY_BUCKETS + 1]; /* cumulative: <= bound; the last is +Inf */
    uint64_t count;
    int64_t sum_ms;
};

void metrics_add(enum metric m, uint64_t n);
uint64_t metrics_get(enum metric m);
/* One answer (or failure) from the backend: its status class and latency.
 * status 0: no answer. */
void metrics_backend_answer(long status, int64_t latency_ms);
/* A request that did not deliver its batch: status is the backend's answer
 * (not 2xx), 0 for none. Counts METRIC_REQUESTS_FAILED and its class. */
void metrics_request_failed(long status);
const struct metrics_histogram *metrics_latency(void);
/* "connections_accepted", ... */
const char *metrics_name(enum metric m);
/* Forget everything (for tests). */
void metrics_reset(void);

/* One line "received=... delivered=... buffered=... dropped=N
 * dropped_<reason>=n ... received_<source>=n ... refused_<source>=n ... connections=...
 * connections_refused=... connections_closed_bad_input=... acks=...
 * bytes_received=... batches_retried=... ... log_lines_dropped=n". */
void metrics_format_summary(char *out, size_t outlen);

#endif
