/*
 * pipeline: object -> validated, enriched, batched event (see pipeline.h).
 */
#include "pipeline.h"

#include "clock.h"
#include "log.h"

void pipeline_init(struct pipeline *p, const struct config *cfg, const struct registry *registry,
                   struct batcher *batcher)
{
    p->cfg = cfg;
    p->registry = registry;
    p->batcher = batcher;
    p->defaults.properties = cfg->properties;
    p->defaults.distinct_id = cfg->distinct_id;
    p->reject_log = (struct log_limit){0};
    p->full_log = (struct log_limit){0};
}

static void pipeline_drop(struct pipeline *p, enum drop_reason reason, const char *peer,
                          const char *detail)
{
    metrics.events_dropped[reason]++;
    struct log_limit *limit = reason == DROP_BUFFER_FULL ? &p->full_log : &p->reject_log;
    log_limited(limit, LOG_WARN, "%s: event dropped (%s): %s", peer,
                metrics_drop_reason_name(reason), detail);
}

void pipeline_handle(struct pipeline *p, const msgpack_object *obj, const char *peer)
{
    metrics.events_received++;
    if (!p->cfg->enabled) {
        metrics.events_dropped[DROP_DISABLED]++; /* accepted and discarded, by design */
        return;
    }
    struct event ev;
    enum drop_reason reason;
    char detail[256];
    if (decode_event(obj, p->registry, &ev, &reason, detail, sizeof detail) < 0) {
        pipeline_drop(p, reason, peer, detail);
        return;
    }
    size_t mark;
    struct buf *out = batcher_begin(p->batcher, &mark);
    if (out == NULL) {
        pipeline_drop(p, DROP_BUFFER_FULL, peer, "out of memory");
        return;
    }
    enum encode_status rc = encode_event(out, &ev, &p->defaults, clock_wall_ms());
    if (rc != ENCODE_OK) {
        batcher_abort(p->batcher, mark);
        if (rc == ENCODE_TOO_DEEP)
            pipeline_drop(p, DROP_TOO_LARGE, peer, "properties nested too deeply");
        else
            pipeline_drop(p, DROP_BUFFER_FULL, peer, "out of memory");
        return;
    }
    switch (batcher_commit(p->batcher, mark)) {
    case BATCH_ADDED:
        break;
    case BATCH_EVENT_TOO_LARGE:
        snprintf(detail, sizeof detail, "event '%.*s' encodes to more than %lld bytes "
                 "(events.max_event_bytes)", (int)(ev.name_len > 64 ? 64 : ev.name_len), ev.name,
                 (long long)p->cfg->max_event_bytes);
        pipeline_drop(p, DROP_TOO_LARGE, peer, detail);
        break;
    case BATCH_BUFFER_FULL:
        snprintf(detail, sizeof detail, "undelivered batches fill buffer.max_bytes = %lld",
                 (long long)p->cfg->buffer_max_bytes);
        pipeline_drop(p, DROP_BUFFER_FULL, peer, detail);
        break;
    }
}
