/*
 * batch: open batch, sealing triggers and the buffer bound (see batch.h).
 */
#include "batch.h"

#include "clock.h"

#include <stdlib.h>

static void batcher_age_cb(evutil_socket_t fd, short what, void *arg);

int batcher_init(struct batcher *b, struct event_base *base, const struct batch_limits *limits,
                 batch_sealed_fn on_sealed, void *arg)
{
    b->base = base;
    b->limits = *limits;
    b->open = NULL;
    b->buffered_bytes = 0;
    b->on_sealed = on_sealed;
    b->arg = arg;
    b->age_timer = evtimer_new(base, batcher_age_cb, b);
    return b->age_timer ? 0 : -1;
}

static void batch_free(struct batch *batch)
{
    if (batch->retry_timer)
        event_free(batch->retry_timer);
    buf_free(&batch->events);
    free(batch);
}

void batcher_destroy(struct batcher *b)
{
    if (b->open != NULL && b->open->count > 0)
        batcher_release(b, b->open, 0, DROP_SHUTDOWN);
    else if (b->open != NULL)
        batch_free(b->open);
    b->open = NULL;
    if (b->age_timer)
        event_free(b->age_timer);
    b->age_timer = NULL;
}

struct buf *batcher_begin(struct batcher *b, size_t *mark)
{
    if (b->open == NULL && (b->open = calloc(1, sizeof *b->open)) == NULL)
        return NULL;
    struct buf *events = &b->open->events;
    *mark = events->len;
    if (b->open->count > 0 && buf_append_char(events, ',') < 0)
        return NULL;
    return events;
}

void batcher_abort(struct batcher *b, size_t mark)
{
    if (b->open)
        buf_truncate(&b->open->events, mark);
}

void batcher_seal(struct batcher *b)
{
    struct batch *batch = b->open;
    if (batch == NULL || batch->count == 0)
        return;
    b->open = NULL;
    evtimer_del(b->age_timer);
    metrics.batches_sealed++;
    b->on_sealed(batch, b->arg);
}

static void batcher_age_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    batcher_seal(arg);
}

/* Account for one more event of `size` bytes in the open batch. */
static void batcher_count_event(struct batcher *b, size_t size)
{
    struct batch *batch = b->open;
    b->buffered_bytes += size;
    metrics.events_buffered++;
    if (batch->count++ == 0) {
        batch->opened_ms = clock_monotonic_ms();
        struct timeval tv = {b->limits.max_age_ms / 1000, (b->limits.max_age_ms % 1000) * 1000};
        evtimer_add(b->age_timer, &tv);
    }
    if (batch->count >= b->limits.max_events)
        batcher_seal(b);
}

enum batch_add batcher_commit(struct batcher *b, size_t mark)
{
    struct batch *batch = b->open;
    size_t start = mark + (batch->count > 0); /* skip the separator */
    size_t size = batch->events.len - start;
    if (size > b->limits.max_event_bytes) {
        batcher_abort(b, mark);
        return BATCH_EVENT_TOO_LARGE;
    }
    if (b->buffered_bytes + size + 1 > b->limits.buffer_max_bytes) {
        batcher_abort(b, mark);
        return BATCH_BUFFER_FULL;
    }
    if (batch->count > 0 &&
        b->limits.envelope_bytes + batch->events.len > b->limits.max_body_bytes) {
        /* The event does not fit: it opens the next batch. */
        struct batch *next = calloc(1, sizeof *next);
        if (next == NULL || buf_append(&next->events, batch->events.data + start, size) < 0) {
            free(next);
            batcher_abort(b, mark);
            return BATCH_BUFFER_FULL;
        }
        buf_truncate(&batch->events, mark);
        batcher_seal(b);
        b->open = next;
    } else if (batch->count > 0) {
        b->buffered_bytes += 1; /* the separator */
    }
    batcher_count_event(b, size);
    return BATCH_ADDED;
}

void batcher_release(struct batcher *b, struct batch *batch, int delivered,
                     enum drop_reason reason)
{
    size_t bytes = batch->events.len;
    b->buffered_bytes = bytes > b->buffered_bytes ? 0 : b->buffered_bytes - bytes;
    metrics.events_buffered -= batch->count;
    if (delivered) {
        metrics.events_delivered += batch->count;
        metrics.batches_delivered++;
    } else {
        metrics.events_dropped[reason] += batch->count;
        metrics.batches_dropped++;
    }
    batch_free(batch);
}
