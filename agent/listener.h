/*
 * listener: the producers' Unix socket and their connections.
 *
 * Creates the socket safely (parent directory made, a stale socket replaced
 * only if no agent answers on it, permissions never wider than configured),
 * accepts up to agent.max_connections, and reads each connection's stream of
 * msgpack objects (stream.c), each of which goes to the pipeline. Messages
 * that ask for an acknowledgement get it written back on the same
 * connection, in order; a producer that does not read its acknowledgements
 * is not read from until it does, so they cannot pile up. A connection that
 * sends something that is not msgpack, or a message over
 * agent.max_message_bytes, is read no further and closed once the
 * acknowledgements it is owed are written; no other is affected. So is one
 * whose producer stops sending (a half-close): it may still be reading.
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
