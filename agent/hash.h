/*
 * hash: one hash of a run of bytes for the agent's tables (the event
 * registry, the relay's addresses). Fast on short keys, read eight bytes
 * at a time; not for anything an attacker must not be able to collide (the
 * tables bound their probing).
 */
#ifndef TA_HASH_H
#define TA_HASH_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

uint64_t hash_bytes(const void *data, size_t len);

/* The ends of data[0..len) as two words, read without a call: its first
 * and last eight bytes; under eight, its first and last four (they
 * overlap); under four, its first, middle and last byte in *first (and 0
 * in *last). Every byte of a run of up to 16 is in one of them, so two runs
 * of the same length under 9 bytes with the same ends are the same, and a
 * test on the words' bytes (as UTF-8's high bits) covers the whole run. */
static inline void hash_ends(const void *data, size_t len, uint64_t *first, uint64_t *last)
{
    const unsigned char *p = data;
    if (len >= 8) {
        memcpy(first, p, 8);
        memcpy(last, p + len - 8, 8);
    } else if (len >= 4) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + len - 4, 4);
        *first = a;
        *last = b;
    } else {
        *first = len > 0 ? (uint64_t)p[0] | (uint64_t)p[len / 2] << 8 | (uint64_t)p[len - 1] << 16
                         : 0;
        *last = 0;
    }
}

#endif
