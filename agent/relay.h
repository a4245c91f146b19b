/*
 * relay: browsers' events over HTTP ([relay] listen, path /analytics): the
 * shape Orchest's front end posts, checked and enriched like socket events
 * (pipeline.c, source "http").
 *
 *   POST  application/json or text/plain (navigator.sendBeacon), gzip
 *         allowed: one event {"event", "properties", ...}, an array of
 *         them, or {"batch": [...]}. 202 {"accepted": n, "rejected":
 *         [{"index": i, "reason": r}]}; 400 not JSON or not the shape; 413
 *         past relay.max_body_bytes; 415 another media type or encoding;
 *         429 with Retry-After past the client's rate (relay.rate_limit) or
 *         while the buffer (or spool) is full; 403 from a page of an origin
 *         that is not allowed.
 *   OPTIONS  CORS preflight for relay.cors_origins (cached a day); 204
 *         with Allow for a request from no page or the relay's own.
 *   other methods: 405 with Allow.
 *
 * Only an origin listed in relay.cors_origins gets CORS headers
 * (Access-Control-Allow-Origin, ...); a page of the relay's own origin may
 * always post and needs none; any other origin gets 403.
 *
 * A browser's distinct_id is dropped unless relay.trust_distinct_id. No
 * cookies or credentials are read or allowed.
 */
#ifndef TA_RELAY_H
#define TA_RELAY_H

#include "config.h"
#include "pipeline.h"

#include <event2/event.h>

struct relay;

/* Serve the relay on cfg->relay_listen (which must not be empty). Returns
 * NULL with a message in err. */
struct relay *relay_open(struct event_base *base, const struct config *cfg,
                         struct pipeline *pipeline, char *err, size_t errlen);
const char *relay_address(const struct relay *r);
/* Shutdown: accept no more connections, answer 503 on those open (the
 * answers already given still go out). */
void relay_stop(struct relay *r);
void relay_free(struct relay *r);

#endif
