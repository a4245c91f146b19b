/*
 * batch: the open batch that events are encoded into, and the bound on all
 * undelivered batches.
 *
 * An event is encoded straight into the open batch's buffer between
 * batcher_begin() and batcher_commit(); commit checks the event's size, the
 * buffer bound and the batch limits, rolling the bytes back if the event is
 * refused. A batch is sealed at batch.max_events, before its body would pass
 * batch.max_bytes, or batch.max_age_ms after its first event; sealed batches
 * go to the on_sealed callback (the sender). A batch's bytes count against
 * buffer.max_bytes from the moment they are encoded until batcher_release().
 */
#ifndef TA_BATCH_H
#define TA_BATCH_H

#include "buf.h"
#include "metrics.h"

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct batch {
    TAILQ_ENTRY(batch) entry; /* free for the current owner's list */
    struct buf events;        /* JSON objects separated by commas */
    uint32_t count;
    int64_t opened_ms;        /* monotonic time of the first event */
    /* delivery state, kept by the sender */
    void *owner;
    uint32_t attempts;
    int64_t first_attempt_ms;
    struct event *retry_timer;
};

TAILQ_HEAD(batch_list, batch);

struct batch_limits {
    uint32_t max_events;
    size_t max_body_bytes;  /* whole request body, envelope included */
    size_t envelope_bytes;  /* body bytes besides the events */
    int64_t max_age_ms;
    size_t max_event_bytes;
    size_t buffer_max_bytes;
};

enum batch_add {
    BATCH_ADDED,
    BATCH_EVENT_TOO_LARGE, /* rolled back */
    BATCH_BUFFER_FULL,     /* rolled back */
};

typedef void (*batch_sealed_fn)(struct batch *batch, void *arg);

struct batcher {
    struct event_base *base;
    struct batch_limits limits;
    struct batch *open;
    struct event *age_timer;
    size_t buffered_bytes;
    batch_sealed_fn on_sealed;
    void *arg;
};

int batcher_init(struct batcher *b, struct event_base *base, const struct batch_limits *limits,
                 batch_sealed_fn on_sealed, void *arg);
void batcher_destroy(struct batcher *b);

/* Start an event: returns the open batch's buffer, and in *mark where to roll
 * back to. NULL if out of memory. */
struct buf *batcher_begin(struct batcher *b, size_t *mark);
/* Finish the event begun at mark. */
enum batch_add batcher_commit(struct batcher *b, size_t mark);
/* Forget the event begun at mark. */
void batcher_abort(struct batcher *b, size_t mark);
/* Seal the open batch now if it holds any event. */
void batcher_seal(struct batcher *b);
/* The batch left the agent: delivered (reason ignored) or dropped for reason.
 * Updates the counters and frees it. */
void batcher_release(struct batcher *b, struct batch *batch, int delivered,
                     enum drop_reason reason);

#endif
