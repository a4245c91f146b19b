/*
 * uuid: UUIDv7 generation (RFC 9562) and UUID text validation.
 *
 * An id carries the millisecond time it is made for in its first 48 bits,
 * so ids sort by time: the agent makes ids for events that arrive without
 * one at the time it receives them; the client library makes them at the
 * event's timestamp. A per-millisecond counter in the next 12 bits keeps
 * ids made in the same millisecond in order (past 4096 in one millisecond,
 * or if the clock steps back by up to a second, the time field runs ahead
 * of the clock so that ids stay strictly increasing). The rest is random
 * from a generator seeded by getrandom(), and seeded again in a child after
 * fork(), so that parent and child never make the same ids. Not
 * thread-safe: callers that share it between threads hold a lock around
 * uuid_v7.
 */
#ifndef PROTO_UUID_H
#define PROTO_UUID_H

#include "wire.h"

#include <stddef.h>
#include <stdint.h>

#define UUID_TEXT_LEN WIRE_UUID_TEXT_LEN

/* Write a new UUIDv7 for time `ms` as lower-case text plus NUL. */
void uuid_v7(int64_t ms, char out[UUID_TEXT_LEN + 1]);

/* 1 if s[0..len) is a UUID in 8-4-4-4-12 hex form (any case), else 0. */
int uuid_is_valid(const char *s, size_t len);

#endif
