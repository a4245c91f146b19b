/*
 * pack: a small msgpack writer on struct buf, so that the client library
 * depends on nothing but libc and pthreads, and the agent writes its
 * replies with the same code.
 *
 * Appends follow buf's sticky failure: pack a whole object, then check
 * b->failed once. Integers take their smallest encoding; doubles are always
 * float64.
 */
#ifndef PROTO_PACK_H
#define PROTO_PACK_H

#include "buf.h"

#include <stddef.h>
#include <stdint.h>

void pack_nil(struct buf *b);
void pack_bool(struct buf *b, int value);
void pack_int(struct buf *b, int64_t value);
void pack_uint(struct buf *b, uint64_t value);
void pack_double(struct buf *b, double value);
void pack_str(struct buf *b, const char *s, size_t len);
/* A NUL-terminated string. */
void pack_cstr(struct buf *b, const char *s);
void pack_bin(struct buf *b, const void *data, size_t len);
void pack_ext(struct buf *b, int8_t type, const void *data, size_t len);
void pack_array(struct buf *b, uint32_t count);
void pack_map(struct buf *b, uint32_t count);

/* Bytes of the smallest map/array header for count elements (1, 3 or 5). */
size_t pack_container_header_len(uint32_t count);
/* Write that header at p (which has room for it). */
void pack_put_container_header(unsigned char *p, uint32_t count, int is_map);

/* Append to out the complete map `map` (mlen bytes, already scanned) with
 * one more entry, key "chunk" and the str value chunk. Returns 0, or -1 if
 * `map` is not a map with fewer than 2^32-1 entries, or has a "chunk" key
 * at its top level, or out failed. */
int pack_map_add_chunk(struct buf *out, const unsigned char *map, size_t mlen, const char *chunk,
                       size_t chunk_len);

#endif
