/*
 * decode: one msgpack object from a producer -> a validated struct event.
 *
 * The event is a view: its pointers point into the msgpack object (and so
 * into the connection's buffer) and live only until the object is released.
 * Nothing is copied here; encode.c writes the event out once.
 */
#ifndef TA_DECODE_H
#define TA_DECODE_H

#include "metrics.h"
#include "registry.h"

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

#define EVENT_NAME_MAX 200
#define EVENT_DISTINCT_ID_MAX 200

struct event {
    const char *name;
    size_t name_len;
    const msgpack_object_map *properties; /* NULL: none */
    int64_t timestamp_ms;                 /* -1: not given */
    const char *uuid;                     /* NULL: not given */
    const char *distinct_id;              /* NULL: not given */
    size_t distinct_id_len;
};

/* Validate a native event (a map with event, properties, timestamp, uuid,
 * distinct_id). registry may be NULL (any name). Returns 0, or -1 with the
 * drop reason and a short description of what was wrong in detail. */
int decode_event(const msgpack_object *obj, const struct registry *registry, struct event *ev,
                 enum drop_reason *reason, char *detail, size_t detail_len);

/* Decode a timestamp in any accepted form into milliseconds. Returns 0 or -1. */
int decode_timestamp(const msgpack_object *obj, int64_t *ms);

#endif
