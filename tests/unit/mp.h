/*
 * mp: building msgpack test inputs with msgpack-c's own packer.
 *
 * mp_pack() appends values described by a small format string, in the spirit
 * of jansson's json_pack():
 *
 *     {  }   a map; its size is the number of items inside divided by two
 *     [  ]   an array
 *     s      const char *            str (NUL-terminated)
 *     S      const char *, size_t    str of that many bytes
 *     i      int                     integer
 *     I      int64_t                 integer
 *     U      uint64_t                integer
 *     d      double                  float64
 *     f      double                  float32
 *     b      int                     boolean
 *     n                              nil
 *     x      const void *, size_t    bin
 *     e      int, const void *, size_t   ext of that type
 *     T      int64_t, unsigned       msgpack timestamp (ext -1) of seconds and
 *                                    nanoseconds, packed by msgpack_pack_timestamp
 *     Spaces, ':' and ',' are ignored, so "{s:s, s:I}" reads like JSON.
 *
 * mp_build() starts over, packs, and unpacks the result with
 * msgpack_unpack_next() into exactly one msgpack_object, owned by the struct
 * mp until the next mp_build/mp_reset/mp_free. Any misuse (a format error, or
 * bytes msgpack-c will not unpack) is a bug in the test itself: it prints why
 * and exits with status 2.
 */
#ifndef UNIT_MP_H
#define UNIT_MP_H

#include <msgpack.h>
#include <stddef.h>
#include <stdint.h>

struct mp {
    msgpack_sbuffer sbuf; /* the packed bytes: sbuf.data, sbuf.size */
    msgpack_packer pk;
    msgpack_unpacked unpacked;
};

void mp_init(struct mp *m);
void mp_reset(struct mp *m);
void mp_free(struct mp *m);

void mp_pack(struct mp *m, const char *fmt, ...);
/* Append raw bytes, for headers the packer would never choose. */
void mp_raw(struct mp *m, const void *data, size_t len);
/* Unpack the whole buffer as exactly one object. */
const msgpack_object *mp_unpack(struct mp *m);
/* mp_reset + mp_pack + mp_unpack. */
const msgpack_object *mp_build(struct mp *m, const char *fmt, ...);

/* Store v big-endian in n bytes at p (for ext payloads). */
void mp_put_be(unsigned char *p, uint64_t v, size_t n);

#endif
