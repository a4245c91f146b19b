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
    } else {
        uint64_t first, last;
        hash_ends(data, len, &first, &last);
        w = first << 32 | last;
    }
    h = (h ^ w) * UINT64_C(0xff51afd7ed558ccd);
    h ^= h >> 29;
    return h;
}
