/*
 * frame: finds where each msgpack object ends in a connection's byte stream,
 * before msgpack-c's unpacker sees it.
 *
 * msgpack-c allocates an array or map as soon as it reads its header, sized
 * by the count the header claims; fed a partial object, a 5-byte header could
 * make it allocate gigabytes. The agent therefore hands the unpacker only
 * complete objects, whose counts are backed by real bytes. The scanner is
 * resumable: it remembers how far into the current object it got, so each
 * byte is examined once however the object is split across reads. It also
 * enforces the nesting limit and rejects bytes that are never valid msgpack.
 */
#ifndef TA_FRAME_H
#define TA_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* Same bound as msgpack-c's unpacker stack. */
#define FRAME_MAX_DEPTH 32

enum frame_status {
    FRAME_COMPLETE,   /* one whole object: *object_len bytes from the start */
    FRAME_INCOMPLETE, /* need more bytes */
    FRAME_INVALID,    /* a byte that is never valid msgpack (0xc1) */
    FRAME_TOO_DEEP,   /* nested more than FRAME_MAX_DEPTH levels */
};

struct frame_scanner {
    size_t pos; /* bytes of the current object already scanned */
    int depth;
    uint64_t remaining[FRAME_MAX_DEPTH]; /* elements still expected at each level */
};

void frame_reset(struct frame_scanner *s);
/* Scan the current object, whose bytes so far are data[0..len). On
 * FRAME_COMPLETE the scanner is reset for the next object. */
enum frame_status frame_scan(struct frame_scanner *s, const unsigned char *data, size_t len,
                             size_t *object_len);

#endif
