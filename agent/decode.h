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
#define EVENT_CHUNK_MAX 64

struct event {
    const char *name;
    size_t name_len;
    const msgpack_object_map *properties; /* NULL: none */
    int64_t timestamp_ms;                 /* -1: not given */
    const char *uuid;                     /* NULL: not given */
    const char *distinct_id;              /* NULL: not given */
    size_t distinct_id_len;
    int properties_are_record; /* a Forward record: leave out event, uuid, distinct_id */
};

/* Validate a native event (a map with event, properties, timestamp, uuid,
 * distinct_id and chunk). registry may be NULL (any name). Returns 0, or -1
 * with the drop reason and a short description of what was wrong in detail.
 * *chunk is set to the message's acknowledgement id (NULL: none asked), even
 * when the event is refused, as long as the id itself is valid. */
int decode_event(const msgpack_object *obj, const struct registry *registry, struct event *ev,
                 const msgpack_object **chunk, enum drop_reason *reason, char *detail,
                 size_t detail_len);

/* Check an event name against the length limit and the registry. */
int decode_event_name(const char *name, size_t len, const struct registry *registry,
                      enum drop_reason *reason, char *detail, size_t detail_len);
/* Check an optional uuid / distinct_id value and store it in ev. */
int decode_uuid(const msgpack_object *u, struct event *ev, enum drop_reason *reason, char *detail,
                size_t detail_len);
int decode_distinct_id(const msgpack_object *d, struct event *ev, enum drop_reason *reason,
                       char *detail, size_t detail_len);
/* Is obj a valid acknowledgement id (a str of 1 to EVENT_CHUNK_MAX bytes)? */
int decode_chunk_is_valid(const msgpack_object *obj);
/* Is obj the str `name`? */
int decode_str_is(const msgpack_object *obj, const char *name);

/* Decode a timestamp in any accepted form into milliseconds. Returns 0 or -1. */
int decode_timestamp(const msgpack_object *obj, int64_t *ms);

#endif
