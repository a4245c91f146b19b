/*
 * timestamp: event times as milliseconds since the Unix epoch (UTC).
 *
 * Producers send times as integers, msgpack timestamps or RFC 3339 strings;
 * the backend wants ISO 8601 UTC with milliseconds. Both directions live here.
 * Accepted range: 1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z.
 */
#ifndef PROTO_TIMESTAMP_H
#define PROTO_TIMESTAMP_H

#include "wire.h"

#include <stddef.h>
#include <stdint.h>

#define TIMESTAMP_MAX_MS WIRE_TIMESTAMP_MAX_MS
#define TIMESTAMP_TEXT_LEN 24 /* "2026-11-28T12:00:00.123Z" */
#define TIMESTAMP_TEXT_MAX 40 /* "-292277022657-01-27T08:29:52.000Z" and shorter */

/* Write `ms` as "YYYY-MM-DDTHH:MM:SS.mmmZ" plus NUL into out (25 bytes).
 * Returns 0, or -1 if ms is outside the accepted range. */
int timestamp_format(int64_t ms, char out[TIMESTAMP_TEXT_LEN + 1]);
/* Write any time, `secs` seconds plus `millis` (0-999) milliseconds after
 * the epoch (negative: before it), as ISO 8601 plus NUL: the form above for
 * the years 0000 to 9999, outside them the expanded form with a sign and at
 * least six digits of year ("-000001-12-31T23:59:59.000Z", as JavaScript
 * writes them). Returns the length (at most TIMESTAMP_TEXT_MAX). */
size_t timestamp_format_any(int64_t secs, unsigned millis, char out[TIMESTAMP_TEXT_MAX + 1]);
/* The same for milliseconds since the epoch. */
size_t timestamp_format_ms_any(int64_t ms, char out[TIMESTAMP_TEXT_MAX + 1]);

/* A msgpack timestamp (ext type -1 of 4, 8 or 12 bytes) or a Fluent
 * EventTime (ext type 0, 8 bytes) -> seconds (negative: before 1970) and
 * nanoseconds. Returns 0, or -1 if the ext is neither or malformed
 * (nanoseconds of a billion or more). */
int timestamp_from_ext(int8_t type, const unsigned char *data, size_t len, int64_t *secs,
                       uint32_t *nanos);

/* Parse an RFC 3339 date-time ("2026-11-28T12:00:00Z",
 * "2026-11-28 12:00:00.123456+01:00", ...). Fractions beyond milliseconds are
 * truncated. Returns 0, or -1 if malformed or out of range. */
int timestamp_parse_rfc3339(const char *s, size_t len, int64_t *ms);
/* The same without the range check: any well-formed time of years 0000 to
 * 9999, before 1970 as negative milliseconds. */
int timestamp_parse_rfc3339_unbounded(const char *s, size_t len, int64_t *ms);

#endif
