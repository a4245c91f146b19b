/*
 * retry: what each response means, backoff bounds and jitter, and
 * Retry-After in every form.
 */
#include "check.h"
#include "retry.h"

static const char *verdict_name(enum retry_verdict v)
{
    switch (v) {
    case RETRY_DELIVERED: return "delivered";
    case RETRY_AGAIN: return "again";
    case RETRY_MISCONFIGURED: return "misconfigured";
    case RETRY_SPLIT: return "split";
    case RETRY_DROP: return "drop";
    }
    return "?";
}

static void test_classify(void)
{
    static const struct {
        long status;
        enum retry_verdict want;
    } cases[] = {
        {200, RETRY_DELIVERED}, {204, RETRY_DELIVERED}, {299, RETRY_DELIVERED},
        {100, RETRY_DROP},      {199, RETRY_DROP},      {300, RETRY_AGAIN},
        {301, RETRY_AGAIN},     {308, RETRY_AGAIN},     {399, RETRY_AGAIN},
        {400, RETRY_DROP},      {401, RETRY_MISCONFIGURED}, {403, RETRY_MISCONFIGURED},
        {404, RETRY_MISCONFIGURED}, {407, RETRY_MISCONFIGURED}, {402, RETRY_DROP},
        {405, RETRY_DROP},      {422, RETRY_DROP},
        {413, RETRY_SPLIT},     {499, RETRY_DROP},      {408, RETRY_AGAIN},
        {429, RETRY_AGAIN},     {500, RETRY_AGAIN},     {503, RETRY_AGAIN},
        {599, RETRY_AGAIN},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        check_context("HTTP %ld", cases[i].status);
        CHECK_STR_EQ(verdict_name(retry_classify(1, cases[i].status)), verdict_name(cases[i].want));
    }
    check_context(NULL);
    /* no response at all: always try again, whatever status is left over */
    CHECK_STR_EQ(verdict_name(retry_classify(0, 0)), "again");
    CHECK_STR_EQ(verdict_name(retry_classify(0, 200)), "again");
    CHECK_STR_EQ(verdict_name(retry_classify(0, 400)), "again");
}

/* splitmix64, so the "random" values are the same on every run. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* The documented ceiling: min(max, initial * 2^(attempt-1)). */
static int64_t ceiling_of(uint32_t attempt, int64_t initial, int64_t max)
{
    int64_t c = initial;
    for (uint32_t i = 1; i < attempt && c < max; i++)
        c *= 2;
    return c < max ? c : max;
}

/* For every attempt 1..20: all delays within [initial, ceiling], and both
 * ends of the range reached (within 1% of its width), so the jitter really
 * spans it. */
static void check_backoff(int64_t initial, int64_t max)
{
    uint64_t state = (uint64_t)initial * 31 + (uint64_t)max;
    for (uint32_t attempt = 1; attempt <= 20; attempt++) {
        int64_t ceiling = ceiling_of(attempt, initial, max);
        int64_t lowest = INT64_MAX, highest = INT64_MIN;
        check_context("initial %lld, max %lld, attempt %u", (long long)initial, (long long)max,
                      attempt);
        for (int i = 0; i < 20000; i++) {
            int64_t d = retry_backoff_ms(attempt, initial, max, next_random(&state));
            lowest = d < lowest ? d : lowest;
            highest = d > highest ? d : highest;
        }
        int64_t slack = (ceiling - initial) / 100;
        CHECK_GE(lowest, initial);
        CHECK_LE(lowest, initial + slack);
        CHECK_LE(highest, ceiling);
        CHECK_GE(highest, ceiling - slack);
        CHECK_LE(highest, max);
        /* the extreme random values land on the ends of the range */
        CHECK_EQ_INT(retry_backoff_ms(attempt, initial, max, 0), initial);
        uint64_t top = (uint64_t)(ceiling - initial);
        CHECK_EQ_INT(retry_backoff_ms(attempt, initial, max, top), ceiling);
        int64_t any = retry_backoff_ms(attempt, initial, max, UINT64_MAX);
        CHECK(any >= initial && any <= ceiling);
    }
    check_context(NULL);
}

static void test_backoff(void)
{
    check_backoff(500, 30000);
    check_backoff(100, 1000);
    check_backoff(1, 3600000);
    check_backoff(250, 250); /* no room for jitter: always the initial delay */
}

static void test_backoff_first_attempt(void)
{
    for (uint64_t r = 0; r < 1000; r++)
        if (!CHECK_EQ_INT(retry_backoff_ms(1, 500, 30000, r * UINT64_C(0x12345678901)), 500))
            break;
}

/* Parse value at `now`; CHECK it succeeds with `want` ms. */
static void check_after(const char *value, int64_t now, int64_t want)
{
    int64_t delay = -12345;
    check_context("Retry-After '%s'", value);
    if (CHECK_EQ_INT(retry_parse_after(value, now, &delay), 0))
        CHECK_EQ_INT(delay, want);
    check_context(NULL);
}

static void check_after_malformed(const char *value)
{
    int64_t delay = -12345;
    check_context("Retry-After '%s'", value);
    CHECK_EQ_INT(retry_parse_after(value, 0, &delay), -1);
    check_context(NULL);
}

static void test_after_seconds(void)
{
    check_after("2", 0, 2000);
    check_after("  10 ", 0, 10000);
    check_after("0", 0, 0);
    check_after("3600", 0, 3600000);
    check_after("3601", 0, RETRY_AFTER_MAX_MS);
    check_after("99999999999999999999999999999999", 0, RETRY_AFTER_MAX_MS);
    check_after("007", 0, 7000);
    check_after_malformed("abc");
    check_after_malformed("1.5");
    check_after_malformed("-1");
    check_after_malformed("+5");
    check_after_malformed("5s");
    check_after_malformed("5 5");
    check_after_malformed("");
    check_after_malformed("   ");
}

/* 2023-11-14T22:13:20Z, a Tuesday */
#define NOW_MS INT64_C(1700000000000)

static void test_after_dates(void)
{
    check_after("Tue, 14 Nov 2023 22:13:30 GMT", NOW_MS, 10000);
    check_after("Tue, 14 Nov 2023 22:13:30 GMT", NOW_MS + 250, 9750);
    check_after("Tuesday, 14-Nov-23 22:13:30 GMT", NOW_MS, 10000);  /* RFC 850 */
    check_after("Tue Nov 14 22:13:30 2023", NOW_MS, 10000);         /* asctime */
    /* asctime pads a one-digit day with a space; 2023-11-01T00:00:00Z */
    check_after("Wed Nov  1 00:00:10 2023", INT64_C(1698796800000), 10000);
    check_after("Wed, 15 Nov 2023 00:13:20 GMT", NOW_MS, RETRY_AFTER_MAX_MS); /* 2 hours */
    check_after("Tue, 14 Nov 2023 22:13:20 GMT", NOW_MS, 0);  /* now */
    check_after("Tue, 14 Nov 2023 22:13:19 GMT", NOW_MS, 0);  /* a second ago */
    check_after("Sun, 06 Nov 1994 08:49:37 GMT", NOW_MS, 0);  /* the past */
    check_after("Sunday, 06-Nov-94 08:49:37 GMT", NOW_MS, 0);
    check_after("Sun Nov  6 08:49:37 1994", NOW_MS, 0);
    check_after_malformed("Tue, 14 Nov 2023 22:13:30");
    check_after_malformed("Tue, 14 Nov 2023 22:13:30 GMT garbage");
    check_after_malformed("2023-11-14T22:13:30Z");
    check_after_malformed("Tue, 14 Foo 2023 22:13:30 GMT");
}

int main(void)
{
    RUN(test_classify);
    RUN(test_backoff);
    RUN(test_backoff_first_attempt);
    RUN(test_after_seconds);
    RUN(test_after_dates);
    return check_finish();
}
