/*
 * pipeline: what happens to each msgpack object a producer sends, between
 * the connection that read it and the batch it lands in: tell native events
 * (maps) from Fluent Forward messages (arrays, forward.c), count every event
 * in it, check each (decode.c), encode and enrich it into the open batch
 * (encode.c, batch.c) or, with the disk spool, into the spool (spooler.c),
 * count and log whatever is refused, and say what the producer's
 * acknowledgement must report (the connection writes it, once the spool
 * has made the events durable).
 */
#ifndef TA_PIPELINE_H
#define TA_PIPELINE_H

#include "account.h"
#include "batch.h"
#include "config.h"
#include "encode.h"
#include "forward.h"
#include "log.h"
#include "registry.h"
#include "spooler.h"

#include <msgpack.h>

struct pipeline {
    const struct config *cfg;
    const struct registry *registry; /* NULL: any name */
    struct batcher *batcher;
    struct spooler *spooler;  /* NULL: events go straight to the batcher */
    struct buf scratch;       /* spool mode: one event's JSON */
    struct encode_defaults defaults;
    struct forward_decoder forward;
    struct log_limit reject_log, full_log;
    int64_t pass_ms; /* the wall clock read once per pass over a connection's input
                      * (pipeline_begin_pass); -1: not read in this pass yet */
};

/* The outcome of one message, for its acknowledgement. */
struct pipeline_result {
    const msgpack_object *chunk; /* the id to acknowledge; NULL: none asked */
    uint32_t accepted;           /* taken into the buffer (or discarded by design) */
    uint32_t rejected;           /* refused for good: resending cannot help */
    uint32_t deferred;           /* refused for now (buffer full): worth resending */
    enum drop_reason reason;     /* why the first one was rejected */
    int forward;                 /* a Fluent Forward message (else a native event) */
    enum event_source source;    /* where its events came from */
};

/* Events go to spooler, or (NULL) to batcher. Returns 0, or -1 when out
 * of memory. The [privacy] rules and their counts live here. */
int pipeline_init(struct pipeline *p, const struct config *cfg, const struct registry *registry,
                  struct batcher *batcher, struct spooler *spooler);
/* After a reload: check names against registry (NULL: any) and enrich
 * with the properties, distinct_id and forward.tag_prefix that p's
 * configuration holds now. */
void pipeline_reconfigure(struct pipeline *p, const struct registry *registry);
void pipeline_destroy(struct pipeline *p);
/* The [privacy] rules in force (NULL: none), for their counts. */
const struct privacy *pipeline_privacy(const struct pipeline *p);
/* A connection's new pass over its input begins: the events handled
 * until the next pass are stamped with one reading of the wall clock (it
 * is read for the first that needs it), as received together. */
void pipeline_begin_pass(struct pipeline *p);
/* Handle one complete object; `peer` names the connection in log lines,
 * peer_tags are its $peer_* properties (peer.h) for agent.tag_peer. The
 * caller begins a pass first. */
void pipeline_handle(struct pipeline *p, const msgpack_object *obj, const char *peer,
                     const char *peer_tags, struct pipeline_result *result);
/* Handle one event in the native shape (a map) that came from source, in
 * a pass of its own. */
void pipeline_handle_event(struct pipeline *p, const msgpack_object *obj,
                           enum event_source source, const char *peer,
                           struct pipeline_result *result);

#endif
