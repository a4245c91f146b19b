/*
 * timestamp: ISO 8601 formatting and RFC 3339 parsing (see timestamp.h).
 * Calendar arithmetic is done here rather than with timegm()/gmtime() so the
 * result never depends on the process's time zone or the C library's range.
 */
#include "timestamp.h"

#include "scan.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

/* Days since 1970-01-01 of a proleptic Gregorian date. */
static int64_t timestamp_days_from_civil(int64_t year, unsigned month, unsigned day)
{
    year -= month <= 2;
    int64_t era = (year >= 0 ? year : year - 399) / 400;
    int64_t yoe = year - era * 400;
    int64_t doy = (153 * (month > 2 ? month - 3 : month + 9) + 2) / 5 + day - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void timestamp_civil_from_days(int64_t days, int64_t *year, unsigned *month, unsigned *day)
{
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *day = (unsigned)(doy - (153 * mp + 2) / 5 + 1);
    *month = (unsigned)(mp < 10 ? mp + 3 : mp - 9);
    *year = yoe + era * 400 + (*month <= 2);
}

/* Write v in width digits, zero-padded, at p. */
static void timestamp_put(char *p, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
}

size_t timestamp_format_any(int64_t secs, unsigned millis, char out[TIMESTAMP_TEXT_MAX + 1])
{
    /* Events of one second share all but the milliseconds: the text up to
     * them is kept from the last call (per thread). */
    static _Thread_local int have_last;
    static _Thread_local int64_t last_secs;
    static _Thread_local char last[TIMESTAMP_TEXT_MAX + 1];
    static _Thread_local size_t last_len;
    if (!have_last || secs != last_secs) {
        int64_t days = secs / 86400, rem = secs % 86400;
        if (rem < 0) { /* floor, not truncation, before 1970 */
            rem += 86400;
            days--;
        }
        int64_t year;
        unsigned month, day;
        timestamp_civil_from_days(days, &year, &month, &day);
        size_t n;
        if (year >= 0 && year <= 9999) {
            timestamp_put(last, (unsigned)year, 4);
            n = 4;
        } else { /* room for any values, so the compiler sees no truncation */
            char text[32];
            n = (size_t)snprintf(text, sizeof text, "%+07lld", (long long)year);
            if (n > TIMESTAMP_TEXT_MAX - 20)
                n = TIMESTAMP_TEXT_MAX - 20;
            memcpy(last, text, n);
        }
        char *p = last + n; /* -MM-DDTHH:MM:SS. */
        p[0] = '-';
        timestamp_put(p + 1, month, 2);
        p[3] = '-';
        timestamp_put(p + 4, day, 2);
        p[6] = 'T';
        timestamp_put(p + 7, (unsigned)(rem / 3600), 2);
        p[9] = ':';
        timestamp_put(p + 10, (unsigned)(rem / 60 % 60), 2);
        p[12] = ':';
        timestamp_put(p + 13, (unsigned)(rem % 60), 2);
        p[15] = '.';
        last_len = n + 16;
        last_secs = secs;
        have_last = 1;
    }
    memcpy(out, last, last_len);
    timestamp_put(out + last_len, millis % 1000, 3);
    out[last_len + 3] = 'Z';
    out[last_len + 4] = '\0';
    return last_len + 4;
}

size_t timestamp_format_ms_any(int64_t ms, char out[TIMESTAMP_TEXT_MAX + 1])
{
    int64_t millis = ms % 1000;
    if (millis < 0)
        millis += 1000;
    return timestamp_format_any((ms - millis) / 1000, (unsigned)millis, out);
}

int timestamp_format(int64_t ms, char out[TIMESTAMP_TEXT_LEN + 1])
{
    if (ms < 0 || ms > TIMESTAMP_MAX_MS)
        return -1;
    char text[TIMESTAMP_TEXT_MAX + 1];
    timestamp_format_ms_any(ms, text);
    memcpy(out, text, TIMESTAMP_TEXT_LEN + 1);
    return 0;
}

int timestamp_from_ext(int8_t type, const unsigned char *p, size_t n, int64_t *secs,
                       uint32_t *nanos)
{
    uint64_t s, ns;
    if (type == 0 && n == 8) { /* EventTime: uint32 seconds, uint32 nanoseconds */
        s = scan_be(p, 4);
        ns = scan_be(p + 4, 4);
    } else if (type == -1 && n == 4) { /* timestamp 32: uint32 seconds */
        s = scan_be(p, 4);
        ns = 0;
    } else if (type == -1 && n == 8) { /* timestamp 64: 30-bit nanoseconds, 34-bit seconds */
        uint64_t v = scan_be(p, 8);
        s = v & UINT64_C(0x3ffffffff);
        ns = v >> 34;
    } else if (type == -1 && n == 12) { /* timestamp 96: uint32 nanoseconds, int64 seconds */
        ns = scan_be(p, 4);
        s = scan_be(p + 4, 8);
    } else {
        return -1;
    }
    if (ns >= 1000000000)
        return -1;
    *secs = (int64_t)s; /* two's complement: timestamp 96 counts before 1970 too */
    *nanos = (uint32_t)ns;
    return 0;
}

/* Read exactly `n` digits at s[*pos]. */
static int timestamp_digits(const char *s, size_t len, size_t *pos, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (*pos >= len || s[*pos] < '0' || s[*pos] > '9')
            return -1;
        v = v * 10 + (s[(*pos)++] - '0');
    }
    *out = v;
    return 0;
}

static int timestamp_expect(const char *s, size_t len, size_t *pos, const char *allowed)
{
    if (*pos >= len)
        return -1;
    for (const char *a = allowed; *a; a++) {
        if (s[*pos] == *a) {
            (*pos)++;
            return 0;
        }
    }
    return -1;
}

static int timestamp_days_in_month(int year, int month)
{
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return days[month - 1] + (month == 2 && leap);
}

int timestamp_parse_rfc3339_unbounded(const char *s, size_t len, int64_t *ms)
{
    size_t p = 0;
    int year, month, day, hour, minute, second, millis = 0;
    if (timestamp_digits(s, len, &p, 4, &year) || timestamp_expect(s, len, &p, "-") ||
        timestamp_digits(s, len, &p, 2, &month) || timestamp_expect(s, len, &p, "-") ||
        timestamp_digits(s, len, &p, 2, &day) || timestamp_expect(s, len, &p, "Tt ") ||
        timestamp_digits(s, len, &p, 2, &hour) || timestamp_expect(s, len, &p, ":") ||
        timestamp_digits(s, len, &p, 2, &minute) || timestamp_expect(s, len, &p, ":") ||
        timestamp_digits(s, len, &p, 2, &second))
        return -1;
    if (month < 1 || month > 12 || day < 1 || day > timestamp_days_in_month(year, month) ||
        hour > 23 || minute > 59 || second > 60)
        return -1;
    if (second == 60) /* a leap second is folded into the last millisecond of its minute */
        second = 59, millis = 999;
    if (p < len && s[p] == '.') {
        p++;
        int digits = 0;
        int frac = 0;
        while (p < len && s[p] >= '0' && s[p] <= '9') {
            if (digits < 3)
                frac = frac * 10 + (s[p] - '0');
            digits++;
            p++;
        }
        if (digits == 0)
            return -1;
        for (int d = digits; d < 3; d++)
            frac *= 10;
        if (millis == 0)
            millis = frac;
    }
    int offset_min = 0;
    if (timestamp_expect(s, len, &p, "Zz") != 0) {
        int sign = p < len && s[p] == '-' ? -1 : 1;
        int oh, om;
        if (timestamp_expect(s, len, &p, "+-") || timestamp_digits(s, len, &p, 2, &oh) ||
            timestamp_expect(s, len, &p, ":") || timestamp_digits(s, len, &p, 2, &om) ||
            oh > 23 || om > 59)
            return -1;
        offset_min = sign * (oh * 60 + om);
    }
    if (p != len)
        return -1;
    int64_t days = timestamp_days_from_civil(year, (unsigned)month, (unsigned)day);
    int64_t secs = days * 86400 + hour * 3600 + minute * 60 + second - (int64_t)offset_min * 60;
    *ms = secs * 1000 + millis;
    return 0;
}

int timestamp_parse_rfc3339(const char *s, size_t len, int64_t *ms)
{
    int64_t result;
    if (timestamp_parse_rfc3339_unbounded(s, len, &result) < 0 || result < 0 ||
        result > TIMESTAMP_MAX_MS)
        return -1;
    *ms = result;
    return 0;
}
