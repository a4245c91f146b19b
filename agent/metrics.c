/*
 * metrics: counters and their names (see metrics.h).
 */
#include "metrics.h"

#include <inttypes.h>

struct metrics metrics;

static const char *const drop_reason_names[DROP_REASON_COUNT] = {
    [DROP_UNSUPPORTED_SHAPE] = "unsupported_shape",
    [DROP_MISSING_EVENT] = "missing_event",
    [DROP_BAD_EVENT] = "bad_event",
    [DROP_UNKNOWN_EVENT] = "unknown_event",
    [DROP_BAD_PROPERTIES] = "bad_properties",
    [DROP_BAD_TIMESTAMP] = "bad_timestamp",
    [DROP_BAD_UUID] = "bad_uuid",
    [DROP_BAD_DISTINCT_ID] = "bad_distinct_id",
    [DROP_UNKNOWN_KEY] = "unknown_key",
    [DROP_DUPLICATE_KEY] = "duplicate_key",
    [DROP_BAD_CHUNK] = "bad_chunk",
    [DROP_BAD_FORWARD] = "bad_forward",
    [DROP_TOO_LARGE] = "too_large",
    [DROP_DISABLED] = "disabled",
    [DROP_BUFFER_FULL] = "buffer_full",
    [DROP_BACKEND_REJECTED] = "backend_rejected",
    [DROP_RETRY_EXPIRED] = "retry_expired",
    [DROP_SHUTDOWN] = "shutdown",
};

const char *metrics_drop_reason_name(enum drop_reason reason)
{
    return reason < DROP_REASON_COUNT ? drop_reason_names[reason] : "unknown";
}

uint64_t metrics_dropped_total(void)
{
    uint64_t total = 0;
    for (int i = 0; i < DROP_REASON_COUNT; i++)
        total += metrics.events_dropped[i];
    return total;
}

void metrics_format_summary(char *out, size_t outlen)
{
    size_t n = (size_t)snprintf(out, outlen,
                                "received=%" PRIu64 " delivered=%" PRIu64 " buffered=%" PRIu64
                                " dropped=%" PRIu64,
                                metrics.events_received, metrics.events_delivered,
                                metrics.events_buffered, metrics_dropped_total());
    for (int i = 0; i < DROP_REASON_COUNT && n < outlen; i++)
        if (metrics.events_dropped[i] > 0)
            n += (size_t)snprintf(out + n, outlen - n, " dropped_%s=%" PRIu64,
                                  drop_reason_names[i], metrics.events_dropped[i]);
    if (n < outlen)
        snprintf(out + n, outlen - n,
                 " connections=%" PRIu64 " connections_refused=%" PRIu64
                 " connections_closed_bad_input=%" PRIu64 " acks=%" PRIu64,
                 metrics.connections_accepted, metrics.connections_refused,
                 metrics.connections_closed_bad_input, metrics.acks_sent);
}
