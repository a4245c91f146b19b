/*
 * pack: the small msgpack encoder and reader libtelemetry needs, so that the
 * library depends on nothing but libc and pthreads.
 *
 * Writing appends to a struct tlm_pack_buf. A failed allocation sets the
 * buffer's `failed` flag and later appends do nothing, so a caller packs a
 * whole object and checks once. Integers take their smallest encoding,
 * doubles are always float64.
 *
 * Reading works on complete bytes: tlm_pack_item() decodes the header of one
 * element (and the payload of a scalar), tlm_pack_scan() finds where one
 * object ends, enforcing a nesting limit the same way the agent does (a
 * container opened at the limit is too deep, even an empty one).
 */
#ifndef TLM_PACK_H
#define TLM_PACK_H

#include <stddef.h>
#include <stdint.h>

struct tlm_pack_buf {
    unsigned char *data;
    size_t len;
    size_t cap;
    int failed; /* an allocation failed: the contents are incomplete */
};

/* Room for extra more bytes; returns 0, or -1 (and sets failed). */
int tlm_pack_reserve(struct tlm_pack_buf *b, size_t extra);
void tlm_pack_append(struct tlm_pack_buf *b, const void *data, size_t len);
void tlm_pack_free(struct tlm_pack_buf *b);

void tlm_pack_nil(struct tlm_pack_buf *b);
void tlm_pack_bool(struct tlm_pack_buf *b, int value);
void tlm_pack_int(struct tlm_pack_buf *b, int64_t value);
void tlm_pack_uint(struct tlm_pack_buf *b, uint64_t value);
void tlm_pack_double(struct tlm_pack_buf *b, double value);
void tlm_pack_str(struct tlm_pack_buf *b, const char *s, size_t len);
void tlm_pack_bin(struct tlm_pack_buf *b, const void *data, size_t len);
void tlm_pack_ext(struct tlm_pack_buf *b, int8_t type, const void *data, size_t len);
void tlm_pack_array(struct tlm_pack_buf *b, uint32_t count);
void tlm_pack_map(struct tlm_pack_buf *b, uint32_t count);

/* Bytes of the smallest map/array header for count elements (1, 3 or 5). */
size_t tlm_pack_container_header_len(uint32_t count);
/* Write that header at p (which has room for it). */
void tlm_pack_put_container_header(unsigned char *p, uint32_t count, int is_map);

enum tlm_pack_type {
    TLM_PACK_NIL,
    TLM_PACK_BOOL,
    TLM_PACK_INT, /* negative integers */
    TLM_PACK_UINT,
    TLM_PACK_FLOAT,
    TLM_PACK_STR,
    TLM_PACK_BIN,
    TLM_PACK_EXT,
    TLM_PACK_ARRAY,
    TLM_PACK_MAP,
};

/* One decoded element. For str, bin and ext, ptr/len is the payload; for
 * arrays and maps, len is the number of elements (a map's pairs). */
struct tlm_pack_item {
    enum tlm_pack_type type;
    int64_t i;
    uint64_t u;
    double d;
    int boolean;
    int8_t ext_type;
    const unsigned char *ptr;
    uint32_t len;
    size_t size; /* bytes taken: header + payload (containers: header only) */
};

/* Decode the element at p. Returns 1, 0 if the bytes end inside it, or -1
 * for a byte that is never msgpack (0xc1). */
int tlm_pack_item(const unsigned char *p, size_t avail, struct tlm_pack_item *it);

enum tlm_pack_scan_status {
    TLM_PACK_COMPLETE,   /* one object of *object_len bytes */
    TLM_PACK_INCOMPLETE, /* the bytes end inside the object */
    TLM_PACK_INVALID,    /* not msgpack */
    TLM_PACK_TOO_DEEP,   /* more than max_depth levels of maps and arrays */
};

/* Find the end of the object at the start of p. max_depth is at most 64. */
enum tlm_pack_scan_status tlm_pack_scan(const unsigned char *p, size_t len, int max_depth,
                                        size_t *object_len);

/* Is the item the str `s`? */
int tlm_pack_item_is_str(const struct tlm_pack_item *it, const char *s);

/* Append to out the complete map `map` (mlen bytes, already scanned) with
 * one more entry, key "chunk" and the str value chunk. Returns 0, or -1 if
 * `map` is not a map with fewer than 2^32-1 entries, or has a "chunk" key
 * at its top level. */
int tlm_pack_map_add_chunk(struct tlm_pack_buf *out, const unsigned char *map, size_t mlen,
                           const char *chunk, size_t chunk_len);

#endif
