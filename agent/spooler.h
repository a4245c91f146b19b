/*
 * spooler: the disk spool in the running agent ([spool] dir set).
 *
 *   pipeline --stage--> spool thread: append, write, fsync --durable--> acks
 *                       spool thread: read --records--> batcher --> sender
 *   sender --batch done--> tickets, in log order --> checkpoint + counters
 *
 * The spool (spool.c) belongs to one thread of its own, so the event loop
 * never waits for the disk. The loop stages each accepted event (already
 * enriched: the bytes on disk are what the backend gets); the thread
 * appends what was staged in one go, writes it, and makes it durable as
 * spool.fsync says (always, every fsync_interval_ms, or never), then tells
 * the loop how far the log is durable: a producer's acknowledgement waits
 * for that (conn.c). The thread also reads the log ahead of the sender,
 * while the memory budget has room, so a backlog lives on disk, not in
 * memory. Each sealed batch gets a ticket; when the tickets at the head of
 * the log are done (delivered, or dropped for good and counted) the
 * checkpoint moves past them, together with the event counters, so that
 * received = delivered + buffered + dropped holds across restarts.
 *
 * A write that fails (a full disk, an I/O error) or a spool at
 * spool.max_bytes leaves the staged events in memory, retried: the memory
 * budget fills and buffer.overflow applies, and it goes on by itself when
 * the disk takes writes again. A loud line says so, at most every 30 s.
 */
#ifndef TA_SPOOLER_H
#define TA_SPOOLER_H

#include "batch.h"
#include "budget.h"
#include "config.h"
#include "sender.h"

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

struct spooler;

/* Open cfg->spool_dir (recovering it, and the counters saved with it) and
 * start the spool thread. memory is the buffer.max_bytes budget. Returns
 * NULL with a message in err (the directory is another agent's, of a newer
 * format, not writable). */
struct spooler *spooler_open(struct event_base *base, const struct config *cfg,
                             struct budget *memory, char *err, size_t errlen);
/* Start feeding the log to batcher, whose sealed batches go to sender. */
void spooler_feed(struct spooler *sp, struct batcher *batcher, struct sender *sender);
/* The batcher's on_sealed callback in spool mode (arg: the spooler). */
void spooler_sealed(struct batch *batch, void *arg);

/* Stage one event's JSON. may_refuse (buffer.overflow = drop_newest):
 * refused when the spool has no room for it or the memory for staging is
 * full. Returns 0, or
 * -1 when refused or out of memory. */
int spooler_stage(struct spooler *sp, const void *json, size_t len, int may_refuse);
/* The disk's budget (spool.max_bytes), and the memory events not yet on
 * disk may take (half of buffer.max_bytes: the other half is for batches,
 * so that a backlog can always be delivered): producers wait on them as
 * on the memory's. */
struct budget *spooler_disk(struct spooler *sp);
struct budget *spooler_staging(struct spooler *sp);
/* Is there no room for new events (spool mode)? */
int spooler_full(const struct spooler *sp);
/* Everything staged so far is durable once spooler_durable() reaches this. */
uint64_t spooler_staged(const struct spooler *sp);
uint64_t spooler_durable(const struct spooler *sp);
/* What the operator endpoints show of the spool. */
struct spooler_state {
    uint64_t bytes;          /* segment files on disk, from the checkpoint's on */
    uint64_t segments;
    uint64_t undelivered;    /* events in it the backend has not confirmed */
    int64_t oldest_ms;       /* the oldest of them was accepted at or after this (wall
                              * clock, ms); 0 when there are none */
    int failing;             /* writes fail (a full disk, an I/O error) */
};
void spooler_state(const struct spooler *sp, struct spooler_state *out);

/* Call fn(arg) each time more of the log becomes durable. */
void spooler_on_durable(struct spooler *sp, void (*fn)(void *arg), void *arg);

/* Shutdown: make what is staged durable now, waiting up to timeout_ms
 * (durable callbacks run before it returns). Returns 0, or -1 if not all
 * of it could be. */
int spooler_flush(struct spooler *sp, int timeout_ms);
/* Shutdown: from now on, seal each batch as soon as the log is read out. */
void spooler_stopping(struct spooler *sp);
/* Stop the thread after a last write and checkpoint (with the counters);
 * what is not delivered stays in the spool for the next start. */
void spooler_close(struct spooler *sp);

#endif
