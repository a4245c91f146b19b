/*
 * pipeline: object -> validated, enriched, batched events (see pipeline.h).
 */
#include "pipeline.h"

#include "clock.h"
#include "log.h"

#include <string.h>

int pipeline_init(struct pipeline *p, const struct config *cfg, const struct registry *registry,
                  struct batcher *batcher)
{
    p->cfg = cfg;
    p->registry = registry;
    p->batcher = batcher;
    p->defaults.properties = cfg->properties;
    p->defaults.distinct_id = cfg->distinct_id;
    p->reject_log = (struct log_limit){0};
    p->full_log = (struct log_limit){0};
    return forward_init(&p->forward, cfg->forward_tag_prefix, registry,
                        (size_t)cfg->max_message_bytes);
}

void pipeline_destroy(struct pipeline *p)
{
    forward_destroy(&p->forward);
}

/* An event leaves here: count and log it, and note it for the ack. */
static void pipeline_drop(struct pipeline *p, enum drop_reason reason, const char *peer,
                          const char *detail, struct pipeline_result *res)
{
    metrics.events_dropped[reason]++;
    if (reason == DROP_BUFFER_FULL) {
        res->deferred++;
    } else if (res->rejected++ == 0) {
        res->reason = reason;
    }
    struct log_limit *limit = reason == DROP_BUFFER_FULL ? &p->full_log : &p->reject_log;
    log_limited(limit, LOG_WARN, "%s: event dropped (%s): %s", peer,
                metrics_drop_reason_name(reason), detail);
}

/* Encode a valid event into the open batch. */
static void pipeline_accept(struct pipeline *p, const struct event *ev, const char *peer,
                            struct pipeline_result *res)
{
    char detail[256];
    if (!p->cfg->enabled) {
        metrics.events_dropped[DROP_DISABLED]++; /* accepted and discarded, by design */
        res->accepted++;
        return;
    }
    size_t mark;
    struct buf *out = batcher_begin(p->batcher, &mark);
    if (out == NULL) {
        pipeline_drop(p, DROP_BUFFER_FULL, peer, "out of memory", res);
        return;
    }
    enum encode_status rc = encode_event(out, ev, &p->defaults, clock_wall_ms());
    if (rc != ENCODE_OK) {
        batcher_abort(p->batcher, mark);
        if (rc == ENCODE_TOO_DEEP)
            pipeline_drop(p, DROP_TOO_LARGE, peer, "properties nested too deeply", res);
        else
            pipeline_drop(p, DROP_BUFFER_FULL, peer, "out of memory", res);
        return;
    }
    switch (batcher_commit(p->batcher, mark)) {
    case BATCH_ADDED:
        res->accepted++;
        break;
    case BATCH_EVENT_TOO_LARGE:
        snprintf(detail, sizeof detail, "event '%.*s' encodes to more than %lld bytes "
                 "(events.max_event_bytes)", (int)(ev->name_len > 64 ? 64 : ev->name_len),
                 ev->name, (long long)p->cfg->max_event_bytes);
        pipeline_drop(p, DROP_TOO_LARGE, peer, detail, res);
        break;
    case BATCH_BUFFER_FULL:
        snprintf(detail, sizeof detail, "undelivered batches fill buffer.max_bytes = %lld",
                 (long long)p->cfg->buffer_max_bytes);
        pipeline_drop(p, DROP_BUFFER_FULL, peer, detail, res);
        break;
    }
}

struct pipeline_forward_ctx {
    struct pipeline *p;
    const char *peer;
    struct pipeline_result *res;
};

static void pipeline_forward_entry_cb(void *arg, const struct event *ev, enum drop_reason reason,
                                      const char *detail)
{
    struct pipeline_forward_ctx *ctx = arg;
    metrics.events_received++;
    if (ev == NULL)
        pipeline_drop(ctx->p, reason, ctx->peer, detail, ctx->res);
    else
        pipeline_accept(ctx->p, ev, ctx->peer, ctx->res);
}

void pipeline_handle(struct pipeline *p, const msgpack_object *obj, const char *peer,
                     struct pipeline_result *res)
{
    *res = (struct pipeline_result){0};
    struct event ev;
    enum drop_reason reason;
    char detail[256];
    if (obj->type == MSGPACK_OBJECT_NIL) { /* a Forward client's heartbeat */
        metrics.heartbeats++;
        return;
    }
    if (obj->type == MSGPACK_OBJECT_ARRAY) {
        struct pipeline_forward_ctx ctx = {p, peer, res};
        if (forward_decode(&p->forward, obj, &res->chunk, pipeline_forward_entry_cb, &ctx, &reason,
                           detail, sizeof detail) < 0) {
            metrics.events_received++; /* the rest of the message, as one event */
            pipeline_drop(p, reason, peer, detail, res);
        }
        return;
    }
    metrics.events_received++;
    if (decode_event(obj, p->registry, &ev, &res->chunk, &reason, detail, sizeof detail) < 0)
        pipeline_drop(p, reason, peer, detail, res);
    else
        pipeline_accept(p, &ev, peer, res);
}

static int pipeline_pack_cb(void *data, const char *bytes, size_t len)
{
    return buf_append(data, bytes, len);
}

static int pipeline_pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    return msgpack_pack_str(pk, len) || msgpack_pack_str_body(pk, s, len);
}

int pipeline_write_ack(const struct pipeline_result *res, struct buf *out)
{
    if (res->chunk == NULL || res->deferred > 0)
        return 0;
    size_t mark = out->len;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, pipeline_pack_cb);
    const char *reason = metrics_drop_reason_name(res->reason);
    int rc = msgpack_pack_map(&pk, res->rejected > 0 ? 3 : 1) ||
             pipeline_pack_str(&pk, "ack", 3) ||
             pipeline_pack_str(&pk, res->chunk->via.str.ptr, res->chunk->via.str.size);
    if (rc == 0 && res->rejected > 0)
        rc = pipeline_pack_str(&pk, "rejected", 8) || msgpack_pack_uint32(&pk, res->rejected) ||
             pipeline_pack_str(&pk, "reason", 6) ||
             pipeline_pack_str(&pk, reason, strlen(reason));
    if (rc != 0) {
        buf_truncate(out, mark);
        return -1;
    }
    metrics.acks_sent++;
    return 1;
}

int pipeline_write_error(struct buf *out, const char *reason, const char *detail)
{
    size_t mark = out->len;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, pipeline_pack_cb);
    if (msgpack_pack_map(&pk, 2) || pipeline_pack_str(&pk, "error", 5) ||
        pipeline_pack_str(&pk, reason, strlen(reason)) || pipeline_pack_str(&pk, "detail", 6) ||
        pipeline_pack_str(&pk, detail, strlen(detail))) {
        buf_truncate(out, mark);
        return -1;
    }
    return 0;
}
