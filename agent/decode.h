/*
 * decode: one msgpack object from a producer -> a validated analytics
 * event.
 *
 * The event is a view: its pointers point into the msgpack object (and so
 * into the connection's buffer) and live only until the object is released.
 * Nothing is copied here; encode.c writes the event out once.
 */
#ifndef TA_DECODE_H
#define TA_DECODE_H

#include "reason.h"
#include "registry.h"
#include "wire.h"

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

struct analytics_event {
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
 * with the refusal filled in. *chunk is set to the message's
 * acknowledgement id (NULL: none asked), even when the event is refused, as
 * long as the id itself is valid. */
int decode_event(const msgpack_object *obj, const struct registry *registry,
                 struct analytics_event *ev, const msgpack_object **chunk, struct refusal *r);

/* Check an event name against the length limit and the registry. */
int decode_event_name(const char *name, size_t len, const struct registry *registry,
                      struct refusal *r);
/* Check an optional uuid / distinct_id value and store it in ev. */
int decode_uuid(const msgpack_object *u, struct analytics_event *ev, struct refusal *r);
int decode_distinct_id(const msgpack_object *d, struct analytics_event *ev, struct refusal *r);
/* Is obj a valid acknowledgement id (a str of 1 to WIRE_CHUNK_MAX bytes)? */
int decode_chunk_is_valid(const msgpack_object *obj);
/* Is obj the str `name`? */
int decode_str_is(const msgpack_object *obj, const char *name);

/* Decode a timestamp in any accepted form into milliseconds from 1970 to
 * 9999. Returns 0 or -1. */
int decode_timestamp(const msgpack_object *obj, int64_t *ms);

#endif
