/*
 * ratelimit: token buckets per address (see ratelimit.h).
 */
#include "ratelimit.h"

#include "hash.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define RATELIMIT_PROBES 8 /* slots looked at for an address */

void ratelimit_init(struct ratelimit *rl, double per_second, double burst)
{
    memset(rl, 0, sizeof *rl);
    rl->per_second = per_second;
    rl->burst = burst < 1 ? 1 : burst;
}

/* addr's slot: found, a free one, or the least recently used of those probed. */
static struct ratelimit_slot *ratelimit_slot(struct ratelimit *rl, const char *addr, int64_t now)
{
    uint32_t h = (uint32_t)hash_bytes(addr, strlen(addr));
    struct ratelimit_slot *oldest = NULL;
    for (int i = 0; i < RATELIMIT_PROBES; i++) {
        struct ratelimit_slot *s = &rl->slots[(h + (uint32_t)i) % RATELIMIT_SLOTS];
        if (strcmp(s->addr, addr) == 0)
            return s;
        if (s->addr[0] == '\0' || oldest == NULL || s->last_ms < oldest->last_ms)
            oldest = s;
        if (s->addr[0] == '\0')
            break;
    }
    snprintf(oldest->addr, sizeof oldest->addr, "%s", addr);
    oldest->tokens = rl->burst;
    oldest->last_ms = now;
    return oldest;
}

int ratelimit_take(struct ratelimit *rl, const char *addr, unsigned n, int64_t now_ms,
                   int *retry_after_s)
{
    if (rl->per_second <= 0)
        return 0;
    struct ratelimit_slot *s = ratelimit_slot(rl, addr, now_ms);
    double elapsed = (double)(now_ms - s->last_ms) / 1000.0;
    s->tokens = fmin(rl->burst, s->tokens + (elapsed > 0 ? elapsed : 0) * rl->per_second);
    s->last_ms = now_ms;
    double need = fmin((double)n, rl->burst); /* the caller refuses more than a burst */
    if (s->tokens >= need) {
        s->tokens -= need;
        return 0;
    }
    double wait = ceil((need - s->tokens) / rl->per_second);
    *retry_after_s = wait < 1 ? 1 : (int)wait;
    return -1;
}
