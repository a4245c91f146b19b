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
 *
 * Flow control (buffer.overflow = block): before each message the budget is
 * asked for room; when there is none the connection stops reading and
 * waits, in arrival order with the others, until the budget has room again
 * (see budget.h). Acknowledgements it owes are written while it waits. The
 * producer's writes then fill the socket buffer, and its client library
 * queues or its blocking write waits: nothing is dropped.
 *
 * With the disk spool, an acknowledgement is held until the spool has made
 * the message's events durable (spooler.h), and every reply after it waits
 * behind it, so replies keep their order. The spool's budgets (the
 * memory for events not yet on disk, and spool.max_bytes on disk) pause
 * producers as the memory's does.
 */
#ifndef TA_CONN_H
#define TA_CONN_H

#include "buf.h"
#include "config.h"
#include "log.h"
#include "peer.h"
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
    struct budget *budget;
    struct spooler *spooler;     /* NULL: no spool */
    struct budget *gates[3];     /* the budgets a new message needs room in: the
                                  * memory's, and with a spool its two */
    unsigned ngates;
    TAILQ_HEAD(, conn) open;
    TAILQ_HEAD(, conn) holding;  /* with replies held for the spool */
    TAILQ_HEAD(, conn) waiting;  /* paused for room in the budget, oldest first */
    struct event *resume_ev;     /* activated when the budget has room again */
    int draining;                /* shutdown: read what was sent, room or not */
    unsigned count;
    uint64_t next_id;
    struct log_limit log;
};

/* Returns 0, or -1 when out of memory. */
int conn_set_init(struct conn_set *set, struct event_base *base, const struct config *cfg,
                  struct pipeline *pipeline);
/* Serve a connection accepted on fd (taken over). Returns 0, or -1 when
 * out of memory (fd closed). */
int conn_open(struct conn_set *set, int fd, const struct peer *peer);
/* Read what every open connection has already sent, write the replies the
 * socket takes, then close them all. */
void conn_set_drain(struct conn_set *set);
/* Free what conn_set_init made (after conn_set_drain). */
void conn_set_destroy(struct conn_set *set);

/* Append the acknowledgement a message's result calls for: nothing when no
 * chunk was asked for; {"deferred": chunk, "reason": "buffer_full"} when a
 * native event was not taken for want of room (the producer resends it
 * soon); nothing for a Forward message with a deferred entry (Fluent
 * clients resend after their ack timeout).
 * Returns 1 if a reply was written, 0 if none is due, -1 when out of
 * memory (out as it was). */
int conn_reply_ack(const struct pipeline_result *result, struct buf *out);
/* Append the last reply on a connection the agent closes or refuses:
 * {"error": reason, "detail": detail}. Returns 0, or -1 when out of memory. */
int conn_reply_error(struct buf *out, const char *reason, const char *detail);

#endif
