/*
 * pipeline: what happens to each msgpack object a producer sends, between
 * the connection that read it and the batch it lands in: count it, check
 * it (decode.c), encode and enrich it into the open batch (encode.c,
 * batch.c), and count and log whatever is refused.
 */
#ifndef TA_PIPELINE_H
#define TA_PIPELINE_H

#include "batch.h"
#include "config.h"
#include "encode.h"
#include "registry.h"

#include <msgpack.h>

struct pipeline {
    const struct config *cfg;
    const struct registry *registry; /* NULL: any name */
    struct batcher *batcher;
    struct encode_defaults defaults;
    struct log_limit reject_log, full_log;
};

void pipeline_init(struct pipeline *p, const struct config *cfg, const struct registry *registry,
                   struct batcher *batcher);
/* Handle one complete object; `peer` names the connection in log lines. */
void pipeline_handle(struct pipeline *p, const msgpack_object *obj, const char *peer);

#endif
