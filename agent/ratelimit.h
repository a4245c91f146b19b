/*
 * ratelimit: token buckets per client address (relay.rate_limit events a
 * second, relay.rate_burst at once), in a table of fixed size: a client
 * seen least recently makes room for a new one, so memory stays bounded
 * however many addresses send.
 */
#ifndef TA_RATELIMIT_H
#define TA_RATELIMIT_H

#include <stdint.h>

#define RATELIMIT_SLOTS 4096
#define RATELIMIT_ADDR_LEN 64

struct ratelimit_slot {
    char addr[RATELIMIT_ADDR_LEN]; /* "" when free */
    double tokens;
    int64_t last_ms;
};

struct ratelimit {
    double per_second; /* 0: no limit */
    double burst;
    struct ratelimit_slot slots[RATELIMIT_SLOTS];
};

void ratelimit_init(struct ratelimit *rl, double per_second, double burst);
/* May addr send n events now (at now_ms)? Returns 0 and takes them, or -1
 * with *retry_after_s set to when it may (at least 1 s). */
int ratelimit_take(struct ratelimit *rl, const char *addr, unsigned n, int64_t now_ms,
                   int *retry_after_s);

#endif
