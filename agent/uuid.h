/*
 * uuid: UUIDv7 generation (RFC 9562) and UUID text validation.
 *
 * Agent-made ids carry the event's millisecond timestamp in their first 48
 * bits, so ids sort by time; a per-millisecond counter in the next 12 bits
 * keeps ids made in the same millisecond in order (past 4096 in one
 * millisecond, or if the clock steps back by up to a second, the timestamp
 * field runs ahead of the clock so that ids stay strictly increasing). The rest is random from a
 * generator seeded by getrandom(), and seeded again in a child after fork(),
 * so that parent and child never make the same ids. Not thread-safe: callers
 * that share it between threads hold a lock around uuid_v7.
 */
#ifndef TA_UUID_H
#define TA_UUID_H

#include <stddef.h>
#include <stdint.h>

#define UUID_TEXT_LEN 36

/* Write a new UUIDv7 for time `ms` as lower-case text plus NUL. */
void uuid_v7(int64_t ms, char out[UUID_TEXT_LEN + 1]);

/* 1 if s[0..len) is a UUID in 8-4-4-4-12 hex form (any case), else 0. */
int uuid_is_valid(const char *s, size_t len);

#endif
