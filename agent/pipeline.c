/*
 * pipeline: object -> validated, enriched, batched events (see pipeline.h).
 */
#include "pipeline.h"

#include "account.h"
#include "clock.h"
#include "metrics.h"

#include <stdio.h>

int pipeline_init(struct pipeline *p, const struct config *cfg, const struct registry *registry,
                  struct batcher *batcher, struct spooler *spooler)
{
    p->cfg = cfg;
    p->registry = registry;
    p->batcher = batcher;
    p->spooler = spooler;
    p->scratch = (struct buf)BUF_INIT;
    p->defaults.properties = cfg->properties;
    p->defaults.distinct_id = cfg->distinct_id;
    p->reject_log = (struct log_limit){0};
    p->full_log = (struct log_limit){0};
    p->pass_ms = -1;
    char err[200];
    p->defaults.privacy = privacy_new(cfg, NULL, err, sizeof err);
    if (p->defaults.privacy == NULL && err[0] != '\0')
        return -1;
    return forward_init(&p->forward, cfg->forward_tag_prefix, registry,
                        (size_t)cfg->max_message_bytes);
}

void pipeline_reconfigure(struct pipeline *p, const struct registry *registry)
{
    p->registry = registry;
    p->defaults.properties = p->cfg->properties;
    p->defaults.distinct_id = p->cfg->distinct_id;
    p->forward.registry = registry;
    forward_set_tag_prefix(&p->forward, p->cfg->forward_tag_prefix);
    char err[200];
    struct privacy *privacy = privacy_new(p->cfg, p->defaults.privacy, err, sizeof err);
    if (privacy == NULL && err[0] != '\0') {
        log_error("reload: %s; the [privacy] rules stay as they were", err);
        return;
    }
    privacy_free(p->defaults.privacy);
    p->defaults.privacy = privacy;
}

const struct privacy *pipeline_privacy(const struct pipeline *p)
{
    return p->defaults.privacy;
}

void pipeline_destroy(struct pipeline *p)
{
    forward_destroy(&p->forward);
    buf_free(&p->scratch);
    privacy_free(p->defaults.privacy);
    p->defaults.privacy = NULL;
}

void pipeline_begin_pass(struct pipeline *p)
{
    p->pass_ms = -1;
}

/* The wall clock of this pass: the receive time of its events. */
static int64_t pipeline_now(struct pipeline *p)
{
    if (p->pass_ms < 0)
        p->pass_ms = clock_wall_ms();
    return p->pass_ms;
}

/* An event leaves here: count and log it, and note it for the ack. */
static void pipeline_drop(struct pipeline *p, const struct refusal *r, const char *peer,
                          struct pipeline_result *res)
{
    account_refused(res->source, r->reason);
    if (r->reason == DROP_BUFFER_FULL) {
        res->deferred++;
    } else if (res->rejected++ == 0) {
        res->reason = r->reason;
    }
    struct log_limit *limit = r->reason == DROP_BUFFER_FULL ? &p->full_log : &p->reject_log;
    log_with(limit, LOG_WARN,
             LOG_FIELDS(LOG_TEXT("peer", peer), LOG_TEXT("reason", reason_name(r->reason))),
             "%s: event dropped (%s): %s", peer, reason_name(r->reason),
                r->detail);
}

static void pipeline_too_large(struct pipeline *p, const struct analytics_event *ev,
                               struct refusal *r)
{
    char name[128];
    refuse(r, DROP_TOO_LARGE, "event '%s' encodes to more than %lld bytes (events.max_event_bytes)",
           log_escape(name, sizeof name, ev->name, ev->name_len, 24),
           (long long)p->cfg->max_event_bytes);
}

/* Spool mode: encode a valid event and stage it for the spool. */
static void pipeline_spool(struct pipeline *p, const struct analytics_event *ev,
                           const char *peer, struct pipeline_result *res)
{
    struct refusal r;
    buf_rollback(&p->scratch, 0);
    if (encode_event(&p->scratch, ev, &p->defaults, pipeline_now(p), &r) < 0) {
        pipeline_drop(p, &r, peer, res);
        return;
    }
    if (p->scratch.len > (size_t)p->cfg->max_event_bytes) {
        pipeline_too_large(p, ev, &r);
        pipeline_drop(p, &r, peer, res);
        return;
    }
    if (spooler_stage(p->spooler, p->scratch.data, p->scratch.len,
                      p->cfg->buffer_overflow == OVERFLOW_DROP_NEWEST) < 0) {
        refuse(&r, DROP_BUFFER_FULL, "undelivered events fill spool.max_bytes = %lld or the "
               "memory for writing them (buffer.max_bytes = %lld)",
               (long long)p->cfg->spool_max_bytes, (long long)p->cfg->buffer_max_bytes);
        pipeline_drop(p, &r, peer, res);
        return;
    }
    account_buffered();
    res->accepted++;
}

/* Encode a valid event into the open batch (or the spool). */
static void pipeline_accept(struct pipeline *p, const struct analytics_event *ev,
                            const char *peer, struct pipeline_result *res)
{
    struct refusal r;
    if (p->spooler != NULL && p->cfg->enabled) {
        pipeline_spool(p, ev, peer, res);
        return;
    }
    if (!p->cfg->enabled) {
        account_refused(res->source, DROP_DISABLED); /* accepted and discarded, by design */
        res->accepted++;
        return;
    }
    if (p->batcher->limits.drop_when_full && budget_full(p->batcher->budget)) {
        refuse(&r, DROP_BUFFER_FULL, "undelivered events fill buffer.max_bytes = %lld",
               (long long)p->cfg->buffer_max_bytes);
        pipeline_drop(p, &r, peer, res);
        return;
    }
    size_t mark;
    struct buf *out = batcher_begin(p->batcher, &mark);
    if (out == NULL) {
        refuse(&r, DROP_BUFFER_FULL, "out of memory");
        pipeline_drop(p, &r, peer, res);
        return;
    }
    if (encode_event(out, ev, &p->defaults, pipeline_now(p), &r) < 0) {
        batcher_abort(p->batcher, mark);
        pipeline_drop(p, &r, peer, res);
        return;
    }
    switch (batcher_commit(p->batcher, mark)) {
    case BATCH_ADDED:
        res->accepted++;
        return;
    case BATCH_EVENT_TOO_LARGE:
        pipeline_too_large(p, ev, &r);
        break;
    case BATCH_BUFFER_FULL:
        refuse(&r, DROP_BUFFER_FULL, "undelivered events fill buffer.max_bytes = %lld",
               (long long)p->cfg->buffer_max_bytes);
        break;
    }
    pipeline_drop(p, &r, peer, res);
}

struct pipeline_forward_ctx {
    struct pipeline *p;
    const char *peer;
    struct pipeline_result *res;
};

static void pipeline_forward_entry_cb(void *arg, const struct analytics_event *ev,
                                      const struct refusal *r)
{
    struct pipeline_forward_ctx *ctx = arg;
    account_received(SOURCE_FORWARD);
    if (ev == NULL)
        pipeline_drop(ctx->p, r, ctx->peer, ctx->res);
    else
        pipeline_accept(ctx->p, ev, ctx->peer, ctx->res);
}

/* One event in the native shape, within the current pass. */
static void pipeline_event(struct pipeline *p, const msgpack_object *obj,
                           enum event_source source, const char *peer,
                           struct pipeline_result *res)
{
    struct analytics_event ev;
    struct refusal r;
    *res = (struct pipeline_result){.source = source};
    account_received(source);
    if (decode_event(obj, p->registry, &ev, &res->chunk, &r) < 0)
        pipeline_drop(p, &r, peer, res);
    else
        pipeline_accept(p, &ev, peer, res);
}

void pipeline_handle(struct pipeline *p, const msgpack_object *obj, const char *peer,
                     const char *peer_tags, struct pipeline_result *res)
{
    *res = (struct pipeline_result){0};
    struct refusal r;
    if (obj->type == MSGPACK_OBJECT_NIL) { /* a Forward client's heartbeat */
        metrics_add(METRIC_HEARTBEATS, 1);
        return;
    }
    p->defaults.peer_tags = p->cfg->tag_peer ? peer_tags : NULL; /* for this message only */
    if (obj->type == MSGPACK_OBJECT_ARRAY) {
        struct pipeline_forward_ctx ctx = {p, peer, res};
        res->forward = 1;
        res->source = SOURCE_FORWARD;
        if (forward_decode(&p->forward, obj, &res->chunk, pipeline_forward_entry_cb, &ctx, &r) <
            0) {
            account_received(SOURCE_FORWARD); /* the rest of the message, as one event */
            pipeline_drop(p, &r, peer, res);
        }
    } else {
        pipeline_event(p, obj, SOURCE_NATIVE, peer, res);
    }
    p->defaults.peer_tags = NULL;
}

void pipeline_handle_event(struct pipeline *p, const msgpack_object *obj,
                           enum event_source source, const char *peer,
                           struct pipeline_result *res)
{
    pipeline_begin_pass(p);
    pipeline_event(p, obj, source, peer, res);
}
