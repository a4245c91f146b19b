/*
 * retry: delivery policy (see retry.h).
 */
#define _GNU_SOURCE /* strptime, timegm */
#include "retry.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum retry_verdict retry_classify(int transport_ok, long status)
{
    if (!transport_ok)
        return RETRY_AGAIN; /* connection failed, reset or timed out */
    if (status >= 200 && status <= 299)
        return RETRY_DELIVERED;
    if (status == 408 || status == 429 || status >= 500)
        return RETRY_AGAIN;
    if (status >= 300 && status <= 399)
        return RETRY_AGAIN; /* a redirect curl could not follow: never a reason to drop */
    if (status == 401 || status == 403 || status == 404 || status == 407)
        return RETRY_MISCONFIGURED;
    if (status == 413)
        return RETRY_SPLIT;
    return RETRY_DROP;
}

int64_t retry_backoff_ms(uint32_t attempt, int64_t initial_ms, int64_t max_ms, uint64_t random)
{
    int64_t ceiling = initial_ms;
    for (uint32_t i = 1; i < attempt && ceiling < max_ms; i++)
        ceiling *= 2;
    if (ceiling > max_ms)
        ceiling = max_ms;
    if (ceiling <= initial_ms)
        return initial_ms;
    return initial_ms + (int64_t)(random % (uint64_t)(ceiling - initial_ms + 1));
}

static int64_t retry_clamp(int64_t ms)
{
    if (ms < 0)
        return 0;
    return ms > RETRY_AFTER_MAX_MS ? RETRY_AFTER_MAX_MS : ms;
}

int retry_parse_after(const char *value, int64_t now_wall_ms, int64_t *delay_ms)
{
    while (isspace((unsigned char)*value))
        value++;
    if (isdigit((unsigned char)*value)) {
        int64_t secs = 0;
        const char *p = value;
        while (isdigit((unsigned char)*p)) {
            if (secs < RETRY_AFTER_MAX_MS)
                secs = secs * 10 + (*p - '0');
            p++;
        }
        while (isspace((unsigned char)*p))
            p++;
        if (*p != '\0')
            return -1;
        *delay_ms = retry_clamp(secs * 1000);
        return 0;
    }
    /* HTTP-date: IMF-fixdate, or the obsolete RFC 850 and asctime forms. */
    static const char *const formats[] = {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT",
                                          "%a %b %e %H:%M:%S %Y"};
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *end = strptime(value, formats[i], &tm);
        if (end == NULL)
            continue;
        while (isspace((unsigned char)*end))
            end++;
        if (*end != '\0')
            continue;
        time_t when = timegm(&tm);
        *delay_ms = retry_clamp((int64_t)when * 1000 - now_wall_ms);
        return 0;
    }
    return -1;
}
