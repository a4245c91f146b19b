/*
 * ops: the operator endpoints on [http] listen, for the people and the
 * machines that run the agent (never exposed to browsers: the relay has a
 * listener of its own).
 *
 *   GET /metrics   Prometheus text format 0.0.4, names telemetry_agent_*
 *   GET /healthz   200 "ok" from the event loop itself: a wedged loop fails it
 *   GET /readyz    200 once the socket listens (after the spool's recovery);
 *                  503 with the reason while stopping, or while the backlog
 *                  is above http.ready_max_backlog
 *   GET /status    the same figures as JSON (`telemetry-agent status` prints
 *                  them for a person)
 *
 * Every figure is read from where the agent keeps it (account.c, metrics.c,
 * the budget, the sender, the spooler, the connections): nothing is
 * counted twice.
 */
#ifndef TA_OPS_H
#define TA_OPS_H

#include "budget.h"
#include "config.h"
#include "listener.h"
#include "pipeline.h"
#include "sender.h"
#include "spooler.h"

#include <event2/event.h>

/* Where the endpoints read their figures. */
struct ops_sources {
    const struct config *cfg;
    const struct budget *budget;
    struct sender *sender;
    struct spooler *spooler;   /* NULL without a spool */
    struct listener **listener; /* the socket's; *listener NULL until it listens */
    const int *stopping;
    const struct pipeline *pipeline; /* its [privacy] rules' counts */
};

struct ops;

/* Serve the endpoints on cfg->http_listen (which must not be empty).
 * Returns NULL with a message in err. */
struct ops *ops_open(struct event_base *base, const struct ops_sources *src, char *err,
                     size_t errlen);
/* "HOST:PORT" it listens on. */
const char *ops_address(const struct ops *o);
void ops_free(struct ops *o);

#endif
