/*
 * encode: a validated event -> its JSON object in the backend's batch
 * format, appended straight to the open batch's buffer.
 *
 * This is where enrichment happens, in the same single pass: the [properties]
 * tree is merged into the event's own properties (the event's keys win), and
 * a missing uuid, timestamp or distinct_id is filled in. The uuid and
 * timestamp written here are final: retries resend these same bytes.
 */
#ifndef TA_ENCODE_H
#define TA_ENCODE_H

#include "buf.h"
#include "decode.h"
#include "privacy.h"
#include "props.h"

#include <msgpack.h>
#include <stdint.h>

/* Nesting deeper than this (counting the event map) is refused. The
 * scanner already refuses more than WIRE_MAX_DEPTH levels; this is a second
 * guard so the recursion here is bounded whatever the input. */
#define ENCODE_MAX_DEPTH 40

/* encode_value's answers for a map that has the same key twice, and for a
 * key that is not a string and writes as more than ENCODE_MAX_KEY_BYTES. */
#define ENCODE_REPEATED_KEY (-2)
#define ENCODE_KEY_TOO_LONG (-3)
#define ENCODE_MAX_KEY_BYTES 4096

struct encode_defaults {
    const struct props_node *properties; /* root of the added properties; may be NULL */
    const char *distinct_id;             /* for events without one */
    const char *peer_tags;               /* JSON members written over the producer's own
                                          * $peer_* properties (peer.h), or NULL */
    struct privacy *privacy;             /* the [privacy] rules for the event's own
                                          * properties (privacy.h), or NULL */
};

/* Append {"event":..,"properties":{..},"distinct_id":..,"timestamp":..,"uuid":..}.
 * now_ms is the receive time, used when the event has no timestamp and for a
 * new UUIDv7. Returns 0, or -1 with r filled in (too_large: nested too
 * deeply; buffer_full: out of memory); the buffer may then hold a partial
 * object and a failed append: the caller rolls it back. */
int encode_event(struct buf *out, const struct analytics_event *ev,
                 const struct encode_defaults *defaults, int64_t now_ms, struct refusal *r);

/* Append any msgpack value as JSON (maps with non-string keys get them
 * stringified). Returns 0, ENCODE_REPEATED_KEY when a map has two keys that
 * become the same name, ENCODE_KEY_TOO_LONG, or -1 when nested deeper than ENCODE_MAX_DEPTH (out
 * of memory shows in out->failed). Exposed for tests. */
int encode_value(struct buf *out, const msgpack_object *obj, int depth);

#endif
