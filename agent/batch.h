/*
 * batch: the open batch that events are encoded into, and sealing.
 *
 * A batch is content only: JSON events separated by commas, and how many.
 * An event is encoded straight into the open batch's buffer between
 * batcher_begin() and batcher_commit(); commit checks the event's size, the
 * buffer bound (budget.c) and the batch limits, rolling the bytes back if
 * the event is refused. A batch is sealed at batch.max_events, before its
 * body would pass batch.max_bytes, or batch.max_age_ms after its first
 * event; a sealed batch goes to the on_sealed callback the batcher was
 * made with (the sender), which owns it from then on and ends it with
 * batch_done(). What a batch has allocated (its buffer's capacity, trimmed
 * to its length when sealed) counts against the budget from the moment an
 * event is encoded until batch_done(). With drop_when_full an event that
 * does not fit the budget is refused; otherwise the caller has waited for
 * room before the event and the event is always taken.
 *
 * With the disk spool (spooler.c) events reach the batcher from the log:
 * the feeder says where each came from (batcher.origin), a batch knows
 * where in the log it ends, and its delivery is reported to its ticket
 * rather than counted here: the log is confirmed in order, so a batch's
 * events are counted delivered when every batch before it is done too.
 */
#ifndef TA_BATCH_H
#define TA_BATCH_H

#include "budget.h"
#include "buf.h"
#include "config.h"
#include "reason.h"
#include "spool.h"

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

/* What a batch costs besides its events' bytes: the struct, the sender's
 * record of it and the allocator's headers. Charged too, so that many tiny
 * batches (batch.max_events = 1) stay within the bound. */
#define BATCH_OVERHEAD_BYTES 256

/* Spool mode: what becomes of a sealed batch (and of its halves after a
 * split), reported to the spooler instead of being counted at once. */
struct batch_ticket {
    unsigned parts;                       /* batches of it not yet done */
    uint64_t delivered;
    uint64_t dropped[DROP_REASON_COUNT];
    void (*done)(struct batch_ticket *t); /* every part is done */
};

/* Spool mode: where the event being fed comes from in the log. */
struct batch_origin {
    struct spool_pos end; /* where its record ends */
    uint64_t lost;        /* records before it that corruption took */
    uint64_t bytes;       /* its record's size on disk */
};

struct batch {
    struct buf events; /* JSON objects separated by commas */
    uint32_t count;
    size_t charged;    /* bytes charged to the budget */
    /* spool mode */
    struct spool_pos end;        /* where its last event's record ends */
    uint64_t lost;               /* records lost to corruption among its events */
    uint64_t spool_bytes;        /* its records' size on disk */
    struct batch_ticket *ticket; /* set when sealed */
};

struct batch_limits {
    uint32_t max_events;
    size_t max_body_bytes;  /* whole request body, envelope included */
    size_t envelope_bytes;  /* body bytes besides the events */
    int64_t max_age_ms;
    size_t max_event_bytes;
    int drop_when_full;     /* buffer.overflow = drop_newest */
};

/* The limits cfg sets, for bodies with envelope_bytes besides the events;
 * spooled: events come from the disk spool. */
struct batch_limits batch_limits_for(const struct config *cfg, size_t envelope_bytes,
                                     int spooled);

enum batch_add {
    BATCH_ADDED,
    BATCH_EVENT_TOO_LARGE, /* rolled back */
    BATCH_BUFFER_FULL,     /* rolled back */
};

typedef void (*batch_sealed_fn)(struct batch *batch, void *arg);

struct batcher {
    struct event_base *base;
    struct batch_limits limits;
    struct budget *budget;
    struct batch *open;
    struct event *age_timer;
    batch_sealed_fn on_sealed;
    void *arg;
    const struct batch_origin *origin; /* spool mode: set by the feeder for each event
                                        * (which was counted when it was spooled) */
    size_t last_len; /* of the last batch sealed: the next one starts that large */
};

int batcher_init(struct batcher *b, struct event_base *base, const struct batch_limits *limits,
                 struct budget *budget, batch_sealed_fn on_sealed, void *arg);
/* Seal the open batch, and make later ones with limits (a reload). */
void batcher_set_limits(struct batcher *b, const struct batch_limits *limits);
/* Drop the open batch (as shutdown) and free the batcher's resources. */
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

/* Split a batch of two or more events in two halves: batch keeps the
 * first, *second gets the rest. Returns 0, or -1 when out of memory
 * (batch unchanged). */
int batch_split(struct batch *batch, struct budget *budget, struct batch **second);

/* The batch leaves the agent: delivered, or dropped for reason. Counts its
 * events (or tells its ticket), releases its bytes from the budget and
 * frees it. */
void batch_done(struct batch *batch, struct budget *budget, int delivered,
                enum drop_reason reason);
/* Free a batch that stays in the spool (shutdown): nothing is counted and
 * its ticket is not done. */
void batch_release(struct batch *batch, struct budget *budget);

#endif
