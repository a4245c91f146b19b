/*
 * forward: Fluent Forward protocol v1 messages -> events.
 *
 * Any Fluent client (fluent-logger for Python, Go, Java, Ruby, Node; Docker's
 * fluentd log driver) can write to the agent's socket. A Forward message is
 * a msgpack array; native events are maps, so the first byte tells them
 * apart. The modes, told apart by the second element:
 *     Message                  [tag, time, record, option?]
 *     Forward                  [tag, [[time, record], ...], option?]
 *     PackedForward            [tag, bin|str of concatenated [time, record], option?]
 *     CompressedPackedForward  the same, gzip-compressed, option.compressed = "gzip"
 * An entry is [time, record], or [[time, metadata], record] as Fluent Bit
 * 2.1 and later send it (the metadata map is not part of the event and is
 * left out). time is integer (or float) seconds or an EventTime (ext 0).
 * Each record
 * becomes one event: its name is record["event"] when present, otherwise the
 * tag without forward.tag_prefix; its properties are the record without the
 * keys event, uuid and distinct_id, which are used as in native events.
 * option.chunk asks for an acknowledgement (see proto/PROTOCOL.md).
 */
#ifndef TA_FORWARD_H
#define TA_FORWARD_H

#include "buf.h"
#include "decode.h"
#include "stream.h"

#include <msgpack.h>

struct libdeflate_decompressor;

struct forward_decoder {
    const char *tag_prefix;
    size_t tag_prefix_len;
    const struct registry *registry; /* NULL: any name */
    size_t max_unpacked;             /* bound on a message's packed entries, after gunzip */
    struct stream packed;            /* PackedForward entries, one reused buffer */
    struct libdeflate_decompressor *inflater;
};

/* Called once per entry: ev is the event, or NULL when the entry is refused
 * (r says why). */
typedef void (*forward_entry_fn)(void *arg, const struct analytics_event *ev,
                                 const struct refusal *r);

int forward_init(struct forward_decoder *d, const char *tag_prefix,
                 const struct registry *registry, size_t max_unpacked);
void forward_destroy(struct forward_decoder *d);
/* Name records without an 'event' key from tags without tag_prefix (kept,
 * not copied). */
void forward_set_tag_prefix(struct forward_decoder *d, const char *tag_prefix);

/* Decode the Forward message msg (an array), calling fn for each entry in
 * order. *chunk is set to option.chunk (NULL: no acknowledgement asked).
 * Returns 0, or -1 when the message itself is malformed: r says why, and
 * entries after the fault are not reported. */
int forward_decode(struct forward_decoder *d, const msgpack_object *msg,
                   const msgpack_object **chunk, forward_entry_fn fn, void *arg,
                   struct refusal *r);

#endif
