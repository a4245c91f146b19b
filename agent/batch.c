/*
 * batch: open batch, sealing triggers and the buffer bound (see batch.h).
 */
#include "batch.h"

#include "account.h"
#include "json.h"
#include "log.h"
#include "metrics.h"

#include <stdlib.h>

/* Below this, a batch's buffer grows from empty (doubling is cheap there). */
#define BATCH_PRESIZE_MIN 4096

static void batcher_age_cb(evutil_socket_t fd, short what, void *arg);

int batcher_init(struct batcher *b, struct event_base *base, const struct batch_limits *limits,
                 struct budget *budget, batch_sealed_fn on_sealed, void *arg)
{
    b->base = base;
    b->limits = *limits;
    b->budget = budget;
    b->open = NULL;
    b->last_len = 0;
    b->on_sealed = on_sealed;
    b->arg = arg;
    b->age_timer = evtimer_new(base, batcher_age_cb, b);
    return b->age_timer ? 0 : -1;
}

struct batch_limits batch_limits_for(const struct config *cfg, size_t envelope_bytes,
                                     int spooled)
{
    struct batch_limits limits = {
        .max_events = (uint32_t)cfg->batch_max_events,
        .max_body_bytes = (size_t)cfg->batch_max_bytes,
        .envelope_bytes = envelope_bytes,
        .max_age_ms = cfg->batch_max_age_ms,
        /* events from the spool were checked when they were accepted */
        .max_event_bytes = spooled ? SIZE_MAX : (size_t)cfg->max_event_bytes,
        .drop_when_full = !spooled && cfg->buffer_overflow == OVERFLOW_DROP_NEWEST,
    };
    return limits;
}

void batcher_set_limits(struct batcher *b, const struct batch_limits *limits)
{
    batcher_seal(b);
    b->limits = *limits;
}

static void batch_free(struct batch *batch)
{
    buf_free(&batch->events);
    free(batch);
}

/* Charge the budget for what the batch has allocated now. */
static void batch_recharge(struct batch *batch, struct budget *budget)
{
    size_t now = batch->events.cap + BATCH_OVERHEAD_BYTES;
    if (now > batch->charged)
        budget_charge(budget, now - batch->charged);
    else if (now < batch->charged)
        budget_release(budget, batch->charged - now);
    batch->charged = now;
}

void batch_done(struct batch *batch, struct budget *budget, int delivered,
                enum drop_reason reason)
{
    struct batch_ticket *t = batch->ticket;
    budget_release(budget, batch->charged);
    metrics_add(delivered ? METRIC_BATCHES_DELIVERED : METRIC_BATCHES_DROPPED, 1);
    if (t != NULL) {
        if (delivered)
            t->delivered += batch->count;
        else
            t->dropped[reason] += batch->count;
    } else if (delivered) {
        account_delivered(batch->count);
    } else {
        account_dropped(reason, batch->count);
    }
    batch_free(batch);
    if (t != NULL && --t->parts == 0)
        t->done(t);
}

void batch_release(struct batch *batch, struct budget *budget)
{
    budget_release(budget, batch->charged);
    batch_free(batch);
}

void batcher_destroy(struct batcher *b)
{
    if (b->open != NULL && b->open->count > 0)
        batch_done(b->open, b->budget, 0, DROP_SHUTDOWN);
    else if (b->open != NULL)
        batch_free(b->open);
    b->open = NULL;
    if (b->age_timer)
        event_free(b->age_timer);
    b->age_timer = NULL;
}

/* A new open batch, its buffer made as large as the last sealed one was
 * and an eighth (capped by the batch limit): a burst's batches are not
 * grown by doubling, copied a dozen times on the way. The buffer is charged
 * to the budget with the first event, so it takes at most the room the
 * budget has left; where events are dropped when the buffer is full, at
 * most half of it, so that capacity charged ahead of the events does not
 * refuse them. */
static struct batch *batcher_new_batch(struct batcher *b)
{
    struct batch *batch = calloc(1, sizeof *batch);
    if (batch == NULL)
        return NULL;
    size_t want = b->last_len + b->last_len / 8;
    size_t room = budget_room(b->budget);
    if (b->limits.drop_when_full)
        room /= 2;
    if (want > room)
        want = room;
    if (want > b->limits.max_body_bytes)
        want = b->limits.max_body_bytes;
    if (want > BATCH_PRESIZE_MIN && buf_reserve_exact(&batch->events, want) < 0)
        buf_rollback(&batch->events, 0); /* out of memory: it grows as it goes */
    return batch;
}

struct buf *batcher_begin(struct batcher *b, size_t *mark)
{
    if (b->open == NULL && (b->open = batcher_new_batch(b)) == NULL)
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
        buf_rollback(&b->open->events, mark);
}

void batcher_seal(struct batcher *b)
{
    struct batch *batch = b->open;
    if (batch == NULL || batch->count == 0)
        return;
    b->open = NULL;
    b->last_len = batch->events.len;
    evtimer_del(b->age_timer);
    buf_shrink(&batch->events);
    batch_recharge(batch, b->budget);
    metrics_add(METRIC_BATCHES_SEALED, 1);
    b->on_sealed(batch, b->arg);
}

static void batcher_age_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    batcher_seal(arg);
}

/* Account for one more event in the open batch. */
static void batcher_count_event(struct batcher *b)
{
    struct batch *batch = b->open;
    batch_recharge(batch, b->budget);
    if (b->origin != NULL) {
        batch->end = b->origin->end;
        batch->lost += b->origin->lost;
        batch->spool_bytes += b->origin->bytes;
    } else {
        account_buffered();
    }
    if (batch->count++ == 0) {
        struct timeval tv = {b->limits.max_age_ms / 1000, (b->limits.max_age_ms % 1000) * 1000};
        if (evtimer_add(b->age_timer, &tv) < 0) {
            log_error("cannot arm the batch age timer: sealing the batch at once");
            batcher_seal(b);
            return;
        }
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
    if (b->limits.drop_when_full && !budget_fits(b->budget, size + 1)) {
        batcher_abort(b, mark);
        return BATCH_BUFFER_FULL;
    }
    if (batch->count > 0 &&
        b->limits.envelope_bytes + batch->events.len > b->limits.max_body_bytes) {
        /* The event does not fit: it opens the next batch. */
        b->last_len = mark; /* the batch as it is sealed, without the event */
        struct batch *next = batcher_new_batch(b);
        if (next == NULL || buf_append(&next->events, batch->events.data + start, size) < 0) {
            if (next != NULL)
                buf_free(&next->events);
            free(next);
            batcher_abort(b, mark);
            return BATCH_BUFFER_FULL;
        }
        buf_truncate(&batch->events, mark);
        batcher_seal(b);
        b->open = next;
    }
    batcher_count_event(b);
    return BATCH_ADDED;
}

/* Where the JSON objects of events end: the offset just past the object
 * number `nth` (from 1), or 0 if there are fewer. Events are the agent's
 * own JSON: braces and commas count only outside strings. */
static size_t batch_event_end(const struct buf *events, uint32_t nth)
{
    struct json_nesting n = {0};
    uint32_t seen = 0;
    for (size_t i = 0; i < events->len; i++)
        if (json_nesting_step(&n, events->data[i]) < 0 && n.depth == 0 && ++seen == nth)
            return i + 1;
    return 0;
}

int batch_split(struct batch *batch, struct budget *budget, struct batch **second)
{
    uint32_t keep = batch->count / 2;
    size_t end = keep > 0 ? batch_event_end(&batch->events, keep) : 0;
    if (end == 0 || end + 1 >= batch->events.len)
        return -1;
    struct batch *rest = calloc(1, sizeof *rest);
    if (rest == NULL ||
        buf_append(&rest->events, batch->events.data + end + 1, batch->events.len - end - 1) < 0) {
        free(rest);
        return -1;
    }
    rest->count = batch->count - keep;
    batch->count = keep;
    rest->ticket = batch->ticket;
    if (rest->ticket != NULL)
        rest->ticket->parts++;
    buf_truncate(&batch->events, end);
    buf_shrink(&batch->events);
    batch_recharge(batch, budget);
    batch_recharge(rest, budget);
    *second = rest;
    return 0;
}
