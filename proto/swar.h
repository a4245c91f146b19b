/*
 * swar: tests on the eight bytes of a uint64_t at once ("SIMD within a
 * register"), for scanning text a word at a time. Each answer has the high
 * bit (0x80) of every byte that passes the test set, and no other bit.
 *
 * The tests take the word's low seven bits of each byte (swar_low7): with
 * every byte below 0x80, adding to one byte never carries into the next,
 * so the answers are exact. Bytes of 0x80 and more are the caller's to
 * look at (swar_high).
 */
#ifndef TA_SWAR_H
#define TA_SWAR_H

#include <stdint.h>

#define SWAR_ONES UINT64_C(0x0101010101010101)
#define SWAR_HIGHS UINT64_C(0x8080808080808080)

/* The bytes of w at 0x80 or above. */
static inline uint64_t swar_high(uint64_t w)
{
    return w & SWAR_HIGHS;
}

/* w with the high bit of every byte cleared. */
static inline uint64_t swar_low7(uint64_t w)
{
    return w & ~SWAR_HIGHS;
}

/* The bytes of low7 equal to c (c below 0x80): a byte of low7 ^ c is below
 * 0x80, and adding 0x7f sets its high bit unless it is 0. */
static inline uint64_t swar_equal(uint64_t low7, unsigned char c)
{
    return ~((low7 ^ (c * SWAR_ONES)) + 0x7f * SWAR_ONES) & SWAR_HIGHS;
}

/* The bytes of low7 below n (n from 1 to 0x80): adding 0x80 - n sets the
 * high bit of those at n or above. */
static inline uint64_t swar_below(uint64_t low7, unsigned char n)
{
    return ~(low7 + (0x80u - n) * SWAR_ONES) & SWAR_HIGHS;
}

/* How many bytes an answer (above) marks. */
static inline unsigned swar_count(uint64_t answer)
{
    return (unsigned)(((answer >> 7) * SWAR_ONES) >> 56);
}

#endif
