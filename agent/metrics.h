/*
 * metrics: the agent's counters.
 *
 * Every event that arrives leaves by exactly one door, so at any moment
 *     received = delivered + buffered + sum of dropped[reason]
 * where buffered is what sits in batches not yet confirmed by the backend.
 * Rejections by validation are drops with their own reasons.
 */
#ifndef TA_METRICS_H
#define TA_METRICS_H

#include <stdint.h>
#include <stdio.h>

enum drop_reason {
    /* rejected by validation (decode.c, encode.c) */
    DROP_UNSUPPORTED_SHAPE, /* not a map: no event there */
    DROP_MISSING_EVENT,
    DROP_BAD_EVENT,         /* event name not a string, empty or too long */
    DROP_UNKNOWN_EVENT,     /* not in the registry */
    DROP_BAD_PROPERTIES,
    DROP_BAD_TIMESTAMP,
    DROP_BAD_UUID,
    DROP_BAD_DISTINCT_ID,
    DROP_UNKNOWN_KEY,
    DROP_DUPLICATE_KEY,
    DROP_BAD_CHUNK,         /* an acknowledgement id that is not a short string */
    DROP_BAD_FORWARD,       /* a Fluent Forward message of the wrong shape */
    DROP_TOO_LARGE,
    /* dropped after validation */
    DROP_DISABLED,          /* agent.enabled = false */
    DROP_BUFFER_FULL,
    DROP_BACKEND_REJECTED,  /* 4xx other than 408 and 429 */
    DROP_RETRY_EXPIRED,     /* backend.retry_max_elapsed_ms passed */
    DROP_SHUTDOWN,          /* still undelivered when the shutdown grace ran out */
    DROP_REASON_COUNT
};

struct metrics {
    uint64_t events_received;
    uint64_t events_delivered;
    uint64_t events_buffered; /* a gauge */
    uint64_t events_dropped[DROP_REASON_COUNT];
    uint64_t batches_sealed;
    uint64_t batches_delivered;
    uint64_t batches_dropped;
    uint64_t requests_sent;
    uint64_t requests_failed; /* retried or dropped */
    uint64_t connections_accepted;
    uint64_t connections_refused; /* over agent.max_connections */
    uint64_t connections_closed_bad_input;
    uint64_t bytes_received;
    uint64_t acks_sent;
    uint64_t heartbeats; /* Fluent Forward nil objects, ignored */
};

extern struct metrics metrics;

const char *metrics_drop_reason_name(enum drop_reason reason);
uint64_t metrics_dropped_total(void);
/* One line "received=... delivered=... buffered=... dropped=N dropped_<reason>=n ...
 * connections=... connections_refused=... connections_closed_bad_input=... acks=...". */
void metrics_format_summary(char *out, size_t outlen);

#endif
