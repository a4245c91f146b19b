/*
 * conn: producer connections: each one's state machine, the set of open
 * ones, and the replies they send (acknowledgements and the last error).
 *
 * Each connection's stream of msgpack objects (stream.c) goes, one object
 * at a time, to the pipeline. Messages that ask for an acknowledgement get
 * it written back on the same connection, in order; a producer that does
 * not read its acknowledgements is not read from until it does, so they
 * cannot pile up. A connection that sends something that is not msgpack,
 * or a message over agent.max_message_bytes, is read no further and closed
 * once the acknowledgements it is owed and a last {"error", "detail"} reply
 * are written; no other is affected. So is one whose producer stops
 * sending (a half-close): it may still be reading.
 */
#ifndef TA_CONN_H
#define TA_CONN_H

#include "buf.h"
#include "config.h"
#include "log.h"
#include "pipeline.h"

#include <event2/event.h>
#include <sys/queue.h>

struct conn;

/* What the connections share: where they hand their messages, and the set
 * of those open. */
struct conn_set {
    struct event_base *base;
    const struct config *cfg;
    struct pipeline *pipeline;
    TAILQ_HEAD(, conn) open;
    unsigned count;
    uint64_t next_id;
    struct log_limit log;
};

void conn_set_init(struct conn_set *set, struct event_base *base, const struct config *cfg,
                   struct pipeline *pipeline);
/* Serve a connection accepted on fd (taken over). Returns 0, or -1 when
 * out of memory (fd closed). */
int conn_open(struct conn_set *set, int fd);
/* Read what every open connection has already sent, write the replies the
 * socket takes, then close them all. */
void conn_set_drain(struct conn_set *set);

/* Append the acknowledgement a message's result calls for: nothing when no
 * chunk was asked for or some event was deferred (the producer resends).
 * Returns 1 if a reply was written, 0 if none is due, -1 when out of
 * memory (out as it was). */
int conn_reply_ack(const struct pipeline_result *result, struct buf *out);
/* Append the last reply on a connection the agent closes or refuses:
 * {"error": reason, "detail": detail}. Returns 0, or -1 when out of memory. */
int conn_reply_error(struct buf *out, const char *reason, const char *detail);

#endif
