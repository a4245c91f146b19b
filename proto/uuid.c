/*
 * uuid: UUIDv7 generation and validation (see uuid.h).
 */
#include "uuid.h"

#include <pthread.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static uint64_t uuid_rng_state; /* 0: not seeded (yet, or since fork()) */
static int64_t uuid_last_ms = -1;
static unsigned uuid_counter;

/* A child process must not repeat its parent's ids: it seeds afresh. */
static void uuid_forget_seed(void)
{
    uuid_rng_state = 0;
}

/* splitmix64: fast, good enough for the random bits of an id (not a secret). */
static uint64_t uuid_random64(void)
{
    if (uuid_rng_state == 0) {
        static int fork_handler_set;
        if (!fork_handler_set)
            fork_handler_set = pthread_atfork(NULL, NULL, uuid_forget_seed) == 0;
        if (getrandom(&uuid_rng_state, sizeof uuid_rng_state, 0) != sizeof uuid_rng_state)
            uuid_rng_state = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&uuid_rng_state;
        uuid_rng_state |= 1;
    }
    uint64_t z = (uuid_rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* The two hex digits of every byte, "00" to "ff": one copy a byte. */
#define UUID_ROW(d) d "0" d "1" d "2" d "3" d "4" d "5" d "6" d "7" \
                    d "8" d "9" d "a" d "b" d "c" d "d" d "e" d "f"
static const char uuid_digit_pairs[] =
    UUID_ROW("0") UUID_ROW("1") UUID_ROW("2") UUID_ROW("3") UUID_ROW("4") UUID_ROW("5")
    UUID_ROW("6") UUID_ROW("7") UUID_ROW("8") UUID_ROW("9") UUID_ROW("a") UUID_ROW("b")
    UUID_ROW("c") UUID_ROW("d") UUID_ROW("e") UUID_ROW("f");

void uuid_v7(int64_t ms, char out[UUID_TEXT_LEN + 1])
{
    uint8_t b[16];
    uint64_t rnd = uuid_random64();
    if (ms > uuid_last_ms || ms < uuid_last_ms - 1000) { /* later, or the clock was reset */
        uuid_last_ms = ms;
        uuid_counter = (unsigned)(uuid_random64() & 0x3ff); /* leave room to count up */
    } else if (uuid_counter < 0xfff) {
        uuid_counter++; /* same millisecond, or a small step back */
    } else {
        uuid_last_ms++; /* counter exhausted: borrow the next millisecond */
        uuid_counter = 0;
    }
    ms = uuid_last_ms;
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)((uint64_t)ms >> (40 - 8 * i));
    b[6] = (uint8_t)(0x70 | (uuid_counter >> 8));
    b[7] = (uint8_t)uuid_counter;
    for (int i = 8; i < 16; i++)
        b[i] = (uint8_t)(rnd >> (8 * (i - 8)));
    b[8] = (uint8_t)(0x80 | (b[8] & 0x3f));
    /* where each byte's two digits go in 8-4-4-4-12 */
    static const unsigned char at[16] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};
    for (int i = 0; i < 16; i++)
        memcpy(out + at[i], uuid_digit_pairs + 2 * b[i], 2);
    out[8] = out[13] = out[18] = out[23] = '-';
    out[UUID_TEXT_LEN] = '\0';
}

int uuid_is_valid(const char *s, size_t len)
{
    if (len != UUID_TEXT_LEN)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) {
            return 0;
        }
    }
    return 1;
}
