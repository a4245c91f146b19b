/*
 * hash: one hash of a run of bytes (see hash.h).
 */
#include "hash.h"

#include <string.h>

uint64_t hash_bytes(const void *data, size_t len)
{
    /* eight bytes at a time, each word mixed in by a multiplication; the
     * last bytes read as whole (overlapping) words, never byte by byte */
    const unsigned char *p = data;
    uint64_t h = len * UINT64_C(0x9e3779b97f4a7c15), w = 0;
    size_t left = len;
    for (; left > 8; p += 8, left -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * UINT64_C(0xff51afd7ed558ccd);
        h ^= h >> 32;
    }
    if (len >= 8) {
        memcpy(&w, (const unsigned char *)data + len - 8, 8);
    } else if (left >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + left - 4, 4);
        w = (uint64_t)a << 32 | b;
    } else if (left > 0) {
        w = (uint64_t)p[0] << 16 | (uint64_t)p[left / 2] << 8 | p[left - 1];
    }
    h = (h ^ w) * UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 29;
    return h;
}
