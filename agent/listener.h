/*
 * listener: the producers' Unix socket and their connections.
 *
 * Creates the socket safely (parent directory made, a stale socket replaced
 * only if no agent answers on it, permissions never wider than configured),
 * accepts up to agent.max_connections, and reads each connection's stream of
 * msgpack objects: frame.c finds whole objects, msgpack-c's streaming
 * unpacker decodes them (one reused zone per connection), and each goes to
 * the pipeline. A connection that sends something that is not msgpack, or a
 * message over agent.max_message_bytes, is closed; no other is affected.
 */
#ifndef TA_LISTENER_H
#define TA_LISTENER_H

#include "config.h"
#include "pipeline.h"

#include <event2/event.h>

struct listener;

/* Returns NULL with a message in err. */
struct listener *listener_open(struct event_base *base, const struct config *cfg,
                               struct pipeline *pipeline, char *err, size_t errlen);
/* Stop accepting and remove the socket file; read what every open
 * connection has already sent, then close them all. */
void listener_shutdown(struct listener *l);
void listener_free(struct listener *l);

#endif
