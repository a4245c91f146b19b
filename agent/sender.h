/*
 * sender: delivers sealed batches to the backend, one owner from seal to
 * confirmation.
 *
 * A sealed batch waits in the ready queue until one of backend.max_in_flight
 * request slots is free. Each attempt builds the body around the batch's
 * stored events (body.c; only sent_at changes between attempts) and posts
 * it through the transport (transport.h). The outcome is judged by retry.c:
 * a delivered batch ends as delivered, a rejected one is dropped and
 * counted, a failed one waits out its backoff and goes back to the front of
 * the queue. The delivery state of a batch (attempts, timer) is the
 * sender's, not the batch's.
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

/* Take a sealed batch (the batcher's on_sealed callback; arg is the sender). */
void sender_submit(struct batch *batch, void *arg);

/* Batches not yet delivered or dropped: queued, in flight or in backoff. */
unsigned sender_pending(const struct sender *s);
/* Call idle(arg) whenever the sender becomes empty (for shutdown). */
void sender_on_idle(struct sender *s, void (*idle)(void *arg), void *arg);
/* Drop everything still pending as DROP_SHUTDOWN. Returns events dropped. */
uint64_t sender_abandon(struct sender *s);

#endif
