/*
 * scan: reading msgpack without building anything: one element at a time
 * (scan_item), and where each whole object ends in a byte stream (the
 * resumable scanner), with the protocol's nesting limit.
 *
 * The agent frames its producers' streams with the scanner before
 * msgpack-c's unpacker sees them: msgpack-c allocates an array or map as
 * soon as it reads its header, sized by the count the header claims, so a
 * 5-byte header of a partial object could make it allocate gigabytes; a
 * complete object's counts are backed by real bytes. The scanner is
 * resumable: it remembers how far into the current object it got, so each
 * byte is examined once however the object is split across reads. The
 * client library reads the agent's replies with the same code.
 */
#ifndef PROTO_SCAN_H
#define PROTO_SCAN_H

#include "wire.h"

#include <stddef.h>
#include <stdint.h>

enum scan_type {
    SCAN_NIL,
    SCAN_BOOL,
    SCAN_INT, /* negative integers */
    SCAN_UINT,
    SCAN_FLOAT,
    SCAN_STR,
    SCAN_BIN,
    SCAN_EXT,
    SCAN_ARRAY,
    SCAN_MAP,
};

/* One decoded element. For str, bin and ext, ptr/len is the payload; for
 * arrays and maps, len is the number of elements (a map's pairs). */
struct scan_item {
    enum scan_type type;
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
int scan_item(const unsigned char *p, size_t avail, struct scan_item *it);
/* Is the item the str `s`? */
int scan_item_is_str(const struct scan_item *it, const char *s);
/* The n (at most 8) bytes at p as a big-endian unsigned number. */
uint64_t scan_be(const unsigned char *p, size_t n);

enum scan_status {
    SCAN_COMPLETE,   /* one whole object: *object_len bytes from the start */
    SCAN_INCOMPLETE, /* need more bytes */
    SCAN_INVALID,    /* a byte that is never valid msgpack (0xc1) */
    SCAN_TOO_DEEP,   /* more than WIRE_MAX_DEPTH levels of maps and arrays */
};

struct scanner {
    size_t pos; /* bytes of the current object already scanned */
    int depth;
    uint64_t remaining[WIRE_MAX_DEPTH]; /* elements still expected at each level */
};

void scanner_reset(struct scanner *s);
/* Scan the current object, whose bytes so far are data[0..len). On
 * SCAN_COMPLETE the scanner is reset for the next object. A container
 * opened at the limit is too deep, even an empty one (as msgpack-c). */
enum scan_status scanner_run(struct scanner *s, const unsigned char *data, size_t len,
                             size_t *object_len);
/* The same for one object known to be whole or not at all. */
enum scan_status scan_object(const unsigned char *data, size_t len, size_t *object_len);

#endif
