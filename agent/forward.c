/*
 * forward: Fluent Forward messages to events (see forward.h).
 *
 * The message is checked as a whole first (tag, option, the container of
 * entries); then each entry is turned into an analytics event that points into
 * the message, exactly like a native event, and handed to the caller. A bad
 * entry is refused alone; the message's other entries still count.
 */
#include "forward.h"

#include "metrics.h"

#include "timestamp.h"

#include <libdeflate.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define FORWARD_PACKED_INITIAL (16 * 1024)
#define FORWARD_INFLATE_GUESS 4 /* first guess of the gunzipped size, times the input */

void forward_set_tag_prefix(struct forward_decoder *d, const char *tag_prefix)
{
    d->tag_prefix = tag_prefix;
    d->tag_prefix_len = strlen(tag_prefix);
}

int forward_init(struct forward_decoder *d, const char *tag_prefix,
                 const struct registry *registry, size_t max_unpacked)
{
    forward_set_tag_prefix(d, tag_prefix);
    d->registry = registry;
    d->max_unpacked = max_unpacked;
    d->inflater = NULL;
    return stream_init(&d->packed, FORWARD_PACKED_INITIAL, max_unpacked);
}

void forward_destroy(struct forward_decoder *d)
{
    stream_destroy(&d->packed);
    libdeflate_free_decompressor(d->inflater);
}

/* Forward's time: integer or float seconds, or an EventTime. */
static int forward_time(const msgpack_object *t, int64_t *ms)
{
    switch (t->type) {
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (t->via.u64 > (uint64_t)(TIMESTAMP_MAX_MS / 1000))
            return -1;
        *ms = (int64_t)t->via.u64 * 1000;
        return 0;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        /* anything before year 10000, so within 9999's last second too */
        if (!isfinite(t->via.f64) || t->via.f64 < 0 ||
            t->via.f64 >= (double)(TIMESTAMP_MAX_MS / 1000 + 1))
            return -1;
        /* to the nearest microsecond first: 1.001 is 1001 ms, not 1000 */
        *ms = llround(t->via.f64 * 1e6) / 1000;
        if (*ms > TIMESTAMP_MAX_MS)
            *ms = TIMESTAMP_MAX_MS;
        return 0;
    case MSGPACK_OBJECT_EXT:
        return t->via.ext.type == 0 ? decode_timestamp(t, ms) : -1;
    default:
        return -1;
    }
}

static const msgpack_object *forward_map_get(const msgpack_object_map *map, const char *key)
{
    for (uint32_t i = 0; i < map->size; i++)
        if (decode_str_is(&map->ptr[i].key, key))
            return &map->ptr[i].val;
    return NULL;
}

/* Fluent Bit 2.1 and later write an entry's time as [time, metadata]. */
static int forward_is_time_with_metadata(const msgpack_object *time)
{
    return time->type == MSGPACK_OBJECT_ARRAY && time->via.array.size == 2 &&
           (time->via.array.ptr[1].type == MSGPACK_OBJECT_MAP ||
            time->via.array.ptr[1].type == MSGPACK_OBJECT_NIL);
}

/* Fluent Bit frames groups of records (OpenTelemetry resources and scopes)
 * with markers: entries [[-1 or -2, metadata], attributes], the time an
 * integer or an EventTime of those seconds. They are not events. */
static int forward_is_group_marker(const msgpack_object *time)
{
    if (!forward_is_time_with_metadata(time))
        return 0;
    const msgpack_object *t = &time->via.array.ptr[0];
    if (t->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return t->via.i64 == -1 || t->via.i64 == -2;
    if (t->type != MSGPACK_OBJECT_EXT || t->via.ext.type != 0 || t->via.ext.size != 8)
        return 0;
    const unsigned char *p = (const unsigned char *)t->via.ext.ptr;
    uint32_t secs = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
    return secs == UINT32_MAX || secs == UINT32_MAX - 1;
}

/* One [time, record] pair (or Message mode's time and record) -> event. */
static int forward_event(const struct forward_decoder *d, const msgpack_object *tag,
                         const msgpack_object *time, const msgpack_object *record,
                         struct analytics_event *ev, struct refusal *r)
{
    if (forward_is_time_with_metadata(time))
        time = &time->via.array.ptr[0]; /* the metadata is not part of the event */
    if (forward_time(time, &ev->timestamp_ms) < 0)
        return refuse(r, DROP_BAD_TIMESTAMP, "the entry's time is not seconds since the epoch "
                      "or an EventTime, from 1970 to 9999");
    if (record->type != MSGPACK_OBJECT_MAP)
        return refuse(r, DROP_BAD_PROPERTIES, "the entry's record is not a map (msgpack type %d)",
                      record->type);
    const msgpack_object_map *map = &record->via.map;
    const msgpack_object *name = forward_map_get(map, WIRE_KEY_EVENT);
    if (name != NULL && name->type != MSGPACK_OBJECT_STR)
        return refuse(r, DROP_BAD_EVENT, "the record's 'event' is not a string");
    if (name != NULL) {
        ev->name = name->via.str.ptr;
        ev->name_len = name->via.str.size;
    } else {
        ev->name = tag->via.str.ptr;
        ev->name_len = tag->via.str.size;
        if (d->tag_prefix_len > 0 && ev->name_len >= d->tag_prefix_len &&
            memcmp(ev->name, d->tag_prefix, d->tag_prefix_len) == 0) {
            ev->name += d->tag_prefix_len;
            ev->name_len -= d->tag_prefix_len;
        }
    }
    if (decode_event_name(ev->name, ev->name_len, d->registry, r) < 0 ||
        decode_uuid(forward_map_get(map, WIRE_KEY_UUID), ev, r) < 0 ||
        decode_distinct_id(forward_map_get(map, WIRE_KEY_DISTINCT_ID), ev, r) < 0)
        return -1;
    ev->properties = map;
    ev->properties_are_record = 1;
    return 0;
}

/* Decode one entry and report it. */
static void forward_entry(const struct forward_decoder *d, const msgpack_object *tag,
                          const msgpack_object *time, const msgpack_object *record,
                          forward_entry_fn fn, void *arg)
{
    struct analytics_event ev;
    struct refusal r;
    if (forward_is_group_marker(time)) {
        metrics_add(METRIC_FORWARD_GROUP_MARKERS, 1);
        return;
    }
    if (forward_event(d, tag, time, record, &ev, &r) < 0)
        fn(arg, NULL, &r);
    else
        fn(arg, &ev, NULL);
}

static void forward_pair(const struct forward_decoder *d, const msgpack_object *tag,
                         const msgpack_object *pair, forward_entry_fn fn, void *arg)
{
    if (pair->type != MSGPACK_OBJECT_ARRAY || pair->via.array.size != 2) {
        struct refusal r;
        refuse(&r, DROP_BAD_FORWARD, "an entry is not a [time, record] array");
        fn(arg, NULL, &r);
        return;
    }
    forward_entry(d, tag, &pair->via.array.ptr[0], &pair->via.array.ptr[1], fn, arg);
}

/* Gunzip every member of data into the packed stream, at most max_unpacked
 * bytes in all. */
static int forward_gunzip(struct forward_decoder *d, const char *data, size_t len,
                          struct refusal *r)
{
    if (d->inflater == NULL && (d->inflater = libdeflate_alloc_decompressor()) == NULL)
        return refuse(r, DROP_BUFFER_FULL, "out of memory for decompression");
    size_t total = 0, guess = len * FORWARD_INFLATE_GUESS;
    while (len > 0) {
        size_t room = guess < d->max_unpacked - total ? guess : d->max_unpacked - total;
        size_t capacity, used_in, used_out;
        char *space = stream_reserve(&d->packed, room, &capacity);
        if (space == NULL)
            return refuse(r, DROP_BUFFER_FULL, "out of memory for decompression");
        if (capacity > d->max_unpacked - total)
            capacity = d->max_unpacked - total;
        enum libdeflate_result rc = libdeflate_gzip_decompress_ex(d->inflater, data, len, space,
                                                                  capacity, &used_in, &used_out);
        if (rc == LIBDEFLATE_INSUFFICIENT_SPACE) {
            if (capacity >= d->max_unpacked - total)
                return refuse(r, DROP_TOO_LARGE, "the gzip-compressed entries unpack to more "
                              "than agent.max_message_bytes = %zu", d->max_unpacked);
            guess = capacity * 2;
            continue;
        }
        if (rc != LIBDEFLATE_SUCCESS)
            return refuse(r, DROP_BAD_FORWARD, "the entries are not valid gzip data");
        stream_consumed(&d->packed, used_out);
        total += used_out;
        data += used_in;
        len -= used_in;
    }
    return 0;
}

static int forward_packed(struct forward_decoder *d, const msgpack_object *tag,
                          const msgpack_object *entries, int gzipped, forward_entry_fn fn,
                          void *arg, struct refusal *r)
{
    const char *data = entries->type == MSGPACK_OBJECT_BIN ? entries->via.bin.ptr
                                                            : entries->via.str.ptr;
    size_t len = entries->type == MSGPACK_OBJECT_BIN ? entries->via.bin.size
                                                     : entries->via.str.size;
    stream_clear(&d->packed);
    if (gzipped) {
        if (forward_gunzip(d, data, len, r) < 0)
            return -1;
    } else if (stream_append(&d->packed, data, len) < 0) {
        return refuse(r, DROP_BUFFER_FULL, "out of memory for the packed entries");
    }
    for (uint32_t n = 0;; n++) {
        msgpack_object pair;
        switch (stream_next(&d->packed, &pair)) {
        case STREAM_OBJECT:
            forward_pair(d, tag, &pair, fn, arg);
            continue;
        case STREAM_NEED_MORE:
            if (stream_pending(&d->packed) == 0)
                return 0;
            return refuse(r, DROP_BAD_FORWARD, "the packed entries end inside entry %u", n + 1);
        case STREAM_NO_MEMORY:
            stream_clear(&d->packed);
            return refuse(r, DROP_BUFFER_FULL, "out of memory for packed entry %u", n + 1);
        case STREAM_TOO_LARGE:
        case STREAM_INVALID:
        case STREAM_TOO_DEEP:
            break;
        }
        stream_clear(&d->packed);
        return refuse(r, DROP_BAD_FORWARD, "packed entry %u is not valid msgpack (or nested "
                      "deeper than %d levels)", n + 1, WIRE_MAX_DEPTH);
    }
}

/* The option map (or nil): its chunk and whether the entries are gzipped. */
static int forward_option(const msgpack_object *opt, const msgpack_object **chunk, int *gzipped,
                          struct refusal *r)
{
    *gzipped = 0;
    if (opt == NULL || opt->type == MSGPACK_OBJECT_NIL)
        return 0;
    if (opt->type != MSGPACK_OBJECT_MAP)
        return refuse(r, DROP_BAD_FORWARD, "the option is not a map (msgpack type %d)",
                      opt->type);
    const msgpack_object *c = forward_map_get(&opt->via.map, WIRE_KEY_CHUNK);
    if (c != NULL && !decode_chunk_is_valid(c))
        return refuse(r, DROP_BAD_CHUNK, "option 'chunk' is not a string of 1 to %d bytes",
                      WIRE_CHUNK_MAX);
    *chunk = c;
    const msgpack_object *compressed = forward_map_get(&opt->via.map, "compressed");
    if (compressed != NULL && decode_str_is(compressed, "gzip"))
        *gzipped = 1;
    else if (compressed != NULL && !decode_str_is(compressed, "text"))
        return refuse(r, DROP_BAD_FORWARD,
                      "option 'compressed' is neither \"gzip\" nor \"text\"");
    return 0;
}

/* Message mode: the second element (msg has at least two) is a time, not
 * entries (an array, or packed entries in a bin or str); or a time with
 * metadata, [time, metadata], followed by a record. */
static int forward_is_message_mode(const msgpack_object *msg)
{
    const msgpack_object *second = &msg->via.array.ptr[1];
    if (second->type == MSGPACK_OBJECT_ARRAY)
        return msg->via.array.size >= 3 && msg->via.array.ptr[2].type == MSGPACK_OBJECT_MAP &&
               forward_is_time_with_metadata(second) &&
               second->via.array.ptr[0].type != MSGPACK_OBJECT_ARRAY;
    return second->type != MSGPACK_OBJECT_BIN && second->type != MSGPACK_OBJECT_STR;
}

/* The chunk of a message too broken to decode: when its last element is
 * where an option would be and has a valid chunk, the refusal can still be
 * acknowledged. (Never a Message-mode record's "chunk" key: a producer that
 * asked for nothing must not be sent replies it will not read.) */
static const msgpack_object *forward_salvage_chunk(const msgpack_object *msg)
{
    uint32_t n = msg->via.array.size;
    const msgpack_object *item = msg->via.array.ptr;
    if (n < 3 || n > 4 || item[n - 1].type != MSGPACK_OBJECT_MAP)
        return NULL;
    if (n == 3 && forward_is_message_mode(msg)) /* [tag, time, record]: no option */
        return NULL;
    const msgpack_object *last = &item[n - 1];
    const msgpack_object *c = forward_map_get(&last->via.map, WIRE_KEY_CHUNK);
    return c != NULL && decode_chunk_is_valid(c) ? c : NULL;
}

int forward_decode(struct forward_decoder *d, const msgpack_object *msg,
                   const msgpack_object **chunk, forward_entry_fn fn, void *arg,
                   struct refusal *r)
{
    *chunk = forward_salvage_chunk(msg);
    uint32_t n = msg->via.array.size;
    const msgpack_object *item = msg->via.array.ptr;
    if (n < 2 || n > 4 || item[0].type != MSGPACK_OBJECT_STR || item[0].via.str.size == 0)
        return refuse(r, DROP_BAD_FORWARD, "an array that is not a Forward message "
                      "[tag, time, record, option?], [tag, entries, option?] or "
                      "[tag, packed entries, option?]");
    const msgpack_object *tag = &item[0];
    int message_mode = forward_is_message_mode(msg);
    if ((message_mode && n < 3) || (!message_mode && n > 3))
        return refuse(r, DROP_BAD_FORWARD, "a Forward message with %u elements: Message mode "
                      "has 3 or 4, Forward and PackedForward modes 2 or 3", n);
    int option_at = message_mode ? 3 : 2, gzipped;
    if (forward_option(n > (uint32_t)option_at ? &item[option_at] : NULL, chunk, &gzipped, r) < 0)
        return -1;
    if (message_mode) {
        forward_entry(d, tag, &item[1], &item[2], fn, arg);
        return 0;
    }
    if (item[1].type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < item[1].via.array.size; i++)
            forward_pair(d, tag, &item[1].via.array.ptr[i], fn, arg);
        return 0;
    }
    return forward_packed(d, tag, &item[1], gzipped, fn, arg, r);
}
