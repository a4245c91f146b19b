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
    METRIC_REQUESTS_FAILED,               /* answered with a retry, or not answered */
    METRIC_REQUESTS_TIMED_OUT,            /* not answered within the timeout */
    METRIC_CONNECTIONS_PAUSED,            /* times a producer waited for room in the buffer */
    METRIC_BATCHES_SPLIT,                 /* halved after a 413 */
    METRIC_FORWARD_GROUP_MARKERS,         /* Fluent Bit group start/end entries, skipped */
    METRIC_COUNT
};

void metrics_add(enum metric m, uint64_t n);
uint64_t metrics_get(enum metric m);
/* "connections_accepted", ... */
const char *metrics_name(enum metric m);
/* Forget everything (for tests). */
void metrics_reset(void);

/* One line "received=... delivered=... buffered=... dropped=N
 * dropped_<reason>=n ... received_<source>=n ... connections=...
 * connections_refused=... connections_closed_bad_input=... acks=...
 * bytes_received=... ... log_lines_dropped=n". */
void metrics_format_summary(char *out, size_t outlen);

#endif
