/*
 * sender: delivers sealed batches to the backend, one owner from seal to
 * confirmation.
 *
 * Sealed batches wait in order in the ready queue; the backend's health
 * (one state for all batches: up, backing off, or probed by one request)
 * decides how many are sent at once, up to backend.max_in_flight. Each
 * attempt builds the body around the batch's stored events (body.c; only
 * sent_at changes between attempts), charges it to the budget while it is
 * in flight, and posts it through the transport (transport.h). retry.c
 * judges each answer: delivered; retried after a backend-wide backoff;
 * kept and retried slowly on a configuration error; split in two on 413;
 * or dropped and counted. The delivery state of a batch is the sender's,
 * not the batch's.
 */
#ifndef TA_SENDER_H
#define TA_SENDER_H

#include "batch.h"
#include "body.h"
#include "budget.h"
#include "config.h"
#include "transport.h"

#include <event2/event.h>

struct sender;

/* The sender takes over transport and format. */
struct sender *sender_new(struct event_base *base, const struct config *cfg,
                          struct budget *budget, struct transport *transport,
                          struct body_format *format);
void sender_free(struct sender *s);

/* After a reload changed the configuration the sender reads: send later
 * requests with format (taken over, also on failure) to the backend as
 * configured now, and end a backoff at once. Returns 0, or -1 when the
 * transport could not follow (out of memory: nothing changed). */
int sender_reconfigure(struct sender *s, struct body_format *format);

/* Take a sealed batch (the batcher's on_sealed callback; arg is the sender). */
void sender_submit(struct batch *batch, void *arg);

/* Shutdown: end a backoff now and send what waits, as fast as the
 * backend's answers allow. */
void sender_hurry(struct sender *s);
/* Batches not yet delivered or dropped: queued or in flight. */
unsigned sender_pending(const struct sender *s);
/* Call idle(arg) whenever the sender becomes empty (for shutdown). */
void sender_on_idle(struct sender *s, void (*idle)(void *arg), void *arg);
/* What the operator endpoints show of the sender. */
struct sender_state {
    unsigned in_flight;      /* requests being sent */
    unsigned waiting;        /* batches waiting to be sent */
    const char *health;      /* "up", "backing_off" or "probing" */
    uint32_t failures;       /* failed answers in a row */
    char last_error[400];    /* the last failure ("" if none) */
    int64_t last_error_ms;   /* ... when (wall clock, ms), 0 if none */
};
void sender_state(const struct sender *s, struct sender_state *out);

/* Drop everything still pending as DROP_SHUTDOWN (batches from the spool
 * are only let go: they stay on disk). Returns events dropped. */
uint64_t sender_abandon(struct sender *s);

#endif
