/*
 * retry: the delivery policy, as pure functions.
 *
 * What a response means (delivered, retry, drop), how long to wait before
 * the next attempt (exponential backoff with full jitter, never below the
 * initial delay so nothing is retried in a tight loop), and how to read a
 * Retry-After header (delta-seconds or an HTTP date), which acts as a floor.
 */
#ifndef TA_RETRY_H
#define TA_RETRY_H

#include <stdint.h>

/* A Retry-After asking for more than this is held to it (the sender holds
 * it to backend.retry_after_max_ms, which is at most this). */
#define RETRY_AFTER_MAX_MS INT64_C(3600000)

enum retry_verdict {
    RETRY_DELIVERED,
    RETRY_AGAIN,         /* the backend is unwell: back off, then try again */
    RETRY_MISCONFIGURED, /* a wrong key or URL: keep the batch, retry slowly */
    RETRY_SPLIT,         /* too large for the backend: halve the batch */
    RETRY_DROP,          /* the backend refuses this batch for good */
};

/* transport_ok: the request completed and an HTTP status was read. 2xx is
 * delivered; 408, 429, 5xx, an unfollowed 3xx and no answer are retried;
 * 401, 403, 404 and 407 are configuration errors; 413 splits the batch;
 * other statuses drop the batch. */
enum retry_verdict retry_classify(int transport_ok, long status);

/* Delay before attempt number `attempt` + 1, after `attempt` (>= 1) failed:
 * uniform in [initial, min(max, initial * 2^(attempt-1))], using `random`
 * as the source of the jitter. */
int64_t retry_backoff_ms(uint32_t attempt, int64_t initial_ms, int64_t max_ms, uint64_t random);

/* Parse a Retry-After value. Returns 0 with the delay in *delay_ms (0 for a
 * date in the past, at most RETRY_AFTER_MAX_MS), or -1 if malformed. */
int retry_parse_after(const char *value, int64_t now_wall_ms, int64_t *delay_ms);

#endif
