/*
 * listener: the producers' Unix socket: accepts connections (sockfile.c
 * makes the file) up to agent.max_connections and hands each to conn.c.
 * One over the limit is told {"error": "max_connections"} and closed.
 */
#ifndef TA_LISTENER_H
#define TA_LISTENER_H

#include "config.h"
#include "pipeline.h"

#include <event2/event.h>

struct listener;

/* Returns NULL with a message in err (and no socket file left behind). */
struct listener *listener_open(struct event_base *base, const struct config *cfg,
                               struct pipeline *pipeline, char *err, size_t errlen);
/* Stop accepting and remove the socket file; read what every open
 * connection has already sent, then close them all. */
void listener_shutdown(struct listener *l);
/* Producer connections open now; does it still accept new ones? */
unsigned listener_connections(const struct listener *l);
int listener_accepting(const struct listener *l);
void listener_free(struct listener *l);

#endif
