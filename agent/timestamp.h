/*
 * timestamp: event times as milliseconds since the Unix epoch (UTC).
 *
 * Producers send times as integers, msgpack timestamps or RFC 3339 strings;
 * the backend wants ISO 8601 UTC with milliseconds. Both directions live here.
 * Accepted range: 1970-01-01T00:00:00.000Z to 9999-12-31T23:59:59.999Z.
 */
#ifndef TA_TIMESTAMP_H
#define TA_TIMESTAMP_H

#include <stddef.h>
#include <stdint.h>

#define TIMESTAMP_MAX_MS INT64_C(253402300799999)
#define TIMESTAMP_TEXT_LEN 24 /* "2026-11-28T12:00:00.123Z" */

/* Write `ms` as "YYYY-MM-DDTHH:MM:SS.mmmZ" plus NUL into out (25 bytes).
 * Returns 0, or -1 if ms is outside the accepted range. */
int timestamp_format(int64_t ms, char out[TIMESTAMP_TEXT_LEN + 1]);

/* Parse an RFC 3339 date-time ("2026-11-28T12:00:00Z",
 * "2026-11-28 12:00:00.123456+01:00", ...). Fractions beyond milliseconds are
 * truncated. Returns 0, or -1 if malformed or out of range. */
int timestamp_parse_rfc3339(const char *s, size_t len, int64_t *ms);
/* The same without the range check: any well-formed time of years 0000 to
 * 9999, before 1970 as negative milliseconds. */
int timestamp_parse_rfc3339_unbounded(const char *s, size_t len, int64_t *ms);

/* Days since 1970-01-01 of a proleptic Gregorian date. */
int64_t timestamp_days_from_civil(int64_t year, unsigned month, unsigned day);

#endif
