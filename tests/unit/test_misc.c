/*
 * The smaller pieces: timestamps, UUIDs, number formatting, word-at-a-time
 * byte tests, the [properties] tree, and config_load (defaults, INI errors,
 * environment, the API key).
 */
#include "check.h"
#include "config.h"
#include "json.h"
#include "memlimit.h"
#include "props.h"
#include "support.h"
#include "swar.h"
#include "timestamp.h"
#include "uuid.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

/* 2023-11-14T22:13:20Z */
#define T_MS INT64_C(1700000000000)

static uint64_t rng_state = 42;

/* splitmix64: the same "random" values on every run */
static uint64_t next_random(void)
{
    uint64_t z = (rng_state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* ---- timestamps ------------------------------------------------------ */

static void check_format(int64_t ms, const char *want)
{
    char text[TIMESTAMP_TEXT_LEN + 1];
    check_context("%lld ms", (long long)ms);
    if (CHECK_EQ_INT(timestamp_format(ms, text), 0))
        CHECK_STR_EQ(text, want);
    check_context(NULL);
}

static void check_parse(const char *text, int64_t want)
{
    int64_t ms = -7;
    check_context("'%s'", text);
    if (CHECK_EQ_INT(timestamp_parse_rfc3339(text, strlen(text), &ms), 0))
        CHECK_EQ_INT(ms, want);
    check_context(NULL);
}

static void check_parse_fails(const char *text)
{
    int64_t ms = -7;
    check_context("'%s'", text);
    CHECK_EQ_INT(timestamp_parse_rfc3339(text, strlen(text), &ms), -1);
    CHECK_EQ_INT(ms, -7);
    check_context(NULL);
}

static void test_timestamp_format(void)
{
    check_format(0, "1970-01-01T00:00:00.000Z");
    check_format(T_MS + 123, "2023-11-14T22:13:20.123Z");
    check_format(INT64_C(1709164800000) + 45296789, "2024-02-29T12:34:56.789Z");
    check_format(INT64_C(951868799999), "2000-02-29T23:59:59.999Z");
    check_format(TIMESTAMP_MAX_MS, "9999-12-31T23:59:59.999Z");
    char text[TIMESTAMP_TEXT_LEN + 1];
    CHECK_EQ_INT(timestamp_format(-1, text), -1);
    CHECK_EQ_INT(timestamp_format(TIMESTAMP_MAX_MS + 1, text), -1);
    CHECK_EQ_INT(timestamp_format(INT64_MIN, text), -1);
}

/* Against the C library's calendar, over the whole range. */
static void test_timestamp_matches_gmtime(void)
{
    for (int i = 0; i < 20000; i++) {
        int64_t ms = (int64_t)(next_random() % (uint64_t)(TIMESTAMP_MAX_MS + 1));
        time_t secs = (time_t)(ms / 1000);
        struct tm tm;
        char want[64], got[TIMESTAMP_TEXT_LEN + 1];
        gmtime_r(&secs, &tm);
        size_t n = strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(want + n, sizeof want - n, ".%03dZ", (int)(ms % 1000));
        check_context("%lld ms", (long long)ms);
        if (!CHECK_EQ_INT(timestamp_format(ms, got), 0) || !CHECK_STR_EQ(got, want))
            break;
    }
    check_context(NULL);
}

static void test_timestamp_round_trip(void)
{
    for (int i = 0; i < 20000; i++) {
        int64_t ms = (int64_t)(next_random() % (uint64_t)(TIMESTAMP_MAX_MS + 1));
        char text[TIMESTAMP_TEXT_LEN + 1];
        int64_t back = -1;
        check_context("%lld ms", (long long)ms);
        if (!CHECK_EQ_INT(timestamp_format(ms, text), 0) ||
            !CHECK_EQ_INT(timestamp_parse_rfc3339(text, TIMESTAMP_TEXT_LEN, &back), 0) ||
            !CHECK_EQ_INT(back, ms))
            break;
    }
    check_context(NULL);
}

static void test_timestamp_parse(void)
{
    check_parse("2024-02-29T00:00:00Z", INT64_C(1709164800000));
    check_parse("2000-02-29T23:59:59.999Z", INT64_C(951868799999));
    check_parse("9999-12-31T23:59:59.999Z", TIMESTAMP_MAX_MS);
    check_parse("9999-12-31T23:59:59.999999Z", TIMESTAMP_MAX_MS);
    check_parse("1970-01-01T00:00:00Z", 0);
    check_parse("1970-01-01T00:00:00-00:01", 60000);
    check_parse("2023-11-15T09:43:20+11:30", T_MS);
    check_parse("2023-11-14T22:13:20.1Z", T_MS + 100);
    /* a leap second is the last millisecond of its minute, whatever its fraction */
    check_parse("2016-12-31T23:59:60Z", INT64_C(1483228799999));
    check_parse("2016-12-31T23:59:60.5Z", INT64_C(1483228799999));
}

static void test_timestamp_parse_invalid(void)
{
    static const char *const bad[] = {
        "2023-02-29T00:00:00Z", "1900-02-29T00:00:00Z", "2024-02-30T00:00:00Z",
        "2023-04-31T00:00:00Z", "2023-13-01T00:00:00Z", "2023-00-10T00:00:00Z",
        "2023-11-00T00:00:00Z", "2023-11-14T24:00:00Z", "2023-11-14T23:60:00Z",
        "2023-11-14T23:59:61Z", "2023-11-14T22:13:20+24:00", "2023-11-14T22:13:20+01:60",
        "1969-12-31T23:59:59.999Z", "1970-01-01T00:00:00+00:01", "9999-12-31T23:59:59.999-00:01",
        "0000-01-01T00:00:00Z", "23-11-14T22:13:20Z", "2023-11-14T22:13Z", "2023-11-14T22:13:20",
        "2023-11-14T22:13:20.Z", "2023-11-14T22:13:20ZZ", "2023-11-14X22:13:20Z",
        "2023-1-14T22:13:20Z", "+2023-11-14T22:13:20Z", "",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        check_parse_fails(bad[i]);
    /* the length given is the whole string: no reading past it */
    int64_t ms;
    CHECK_EQ_INT(timestamp_parse_rfc3339("2023-11-14T22:13:20Z", 19, &ms), -1);
}

/* Without the range check (telemetry-send's --timestamp, whose range the
 * client library checks): times outside 1970..9999 parse, malformed ones
 * still do not. */
static void test_timestamp_parse_unbounded(void)
{
    int64_t ms = 0;
    CHECK_EQ_INT(timestamp_parse_rfc3339_unbounded("1969-12-31T23:59:59Z", 20, &ms), 0);
    CHECK_EQ_INT(ms, -1000);
    CHECK_EQ_INT(timestamp_parse_rfc3339_unbounded("9999-12-31T23:59:59.999-00:01", 29, &ms), 0);
    CHECK_EQ_INT(ms, TIMESTAMP_MAX_MS + 60000);
    CHECK_EQ_INT(timestamp_parse_rfc3339_unbounded("2023-11-14T22:13:20.5+01:00", 27, &ms), 0);
    CHECK_EQ_INT(ms, T_MS - 3600000 + 500);
    CHECK_EQ_INT(timestamp_parse_rfc3339_unbounded("2024-02-30T00:00:00Z", 20, &ms), -1);
    CHECK_EQ_INT(timestamp_parse_rfc3339_unbounded("2023-11-14T24:00:00Z", 20, &ms), -1);
}

/* ---- uuid ------------------------------------------------------------ */

static void test_uuid_v7_format(void)
{
    const int64_t times[] = {0, 1, T_MS, TIMESTAMP_MAX_MS, (INT64_C(1) << 48) - 1};
    for (size_t i = 0; i < sizeof times / sizeof times[0]; i++) {
        char id[UUID_TEXT_LEN + 1];
        uuid_v7(times[i], id);
        check_context("%lld ms: %s", (long long)times[i], id);
        CHECK_STR_EQ(uuid_v7_problem(id, times[i]), NULL);
        CHECK(uuid_is_valid(id, strlen(id)));
    }
    check_context(NULL);
}

/* The 48-bit millisecond field of a UUIDv7's text. */
static int64_t uuid_ms(const char *id)
{
    char hex[13];
    memcpy(hex, id, 8);
    memcpy(hex + 8, id + 9, 4);
    hex[12] = '\0';
    return strtoll(hex, NULL, 16);
}

/* Ids made in one millisecond sort in the order they were made, past the
 * 4096 the 12-bit counter holds (the time field then runs a little ahead). */
static void test_uuid_v7_order(void)
{
    char prev[UUID_TEXT_LEN + 1], id[UUID_TEXT_LEN + 1];
    uuid_v7(T_MS, prev);
    for (int i = 0; i < 10000; i++) {
        uuid_v7(T_MS, id);
        check_context("id %d: %s after %s", i, id, prev);
        if (!CHECK_LT(strcmp(prev, id), 0))
            break;
        memcpy(prev, id, sizeof id);
    }
    check_context(NULL);
    CHECK_GE(uuid_ms(prev), T_MS);
    CHECK_LE(uuid_ms(prev), T_MS + 4);
    uuid_v7(T_MS + 10, id); /* a later millisecond sorts after all of them */
    CHECK_LT(strcmp(prev, id), 0);
    CHECK_STR_EQ(uuid_v7_problem(id, T_MS + 10), NULL);
    /* the random tail differs between ids */
    char a[UUID_TEXT_LEN + 1], b[UUID_TEXT_LEN + 1];
    uuid_v7(T_MS + 20, a);
    uuid_v7(T_MS + 20, b);
    CHECK(memcmp(a + 19, b + 19, 17) != 0);
}

static void test_uuid_v7_clock_steps(void)
{
    char a[UUID_TEXT_LEN + 1], b[UUID_TEXT_LEN + 1];
    uuid_v7(T_MS + 60000, a);
    uuid_v7(T_MS + 59990, b); /* a small step back: still after the last id */
    CHECK_LT(strcmp(a, b), 0);
    CHECK_EQ_INT(uuid_ms(b), T_MS + 60000);
    uuid_v7(T_MS, b); /* a big one (the clock was set): the new time */
    CHECK_STR_EQ(uuid_v7_problem(b, T_MS), NULL);
}

/* A child after fork() makes other ids than its parent, even for the same
 * millisecond: it does not go on with the parent's random state. */
static void test_uuid_v7_fork(void)
{
    char mine[UUID_TEXT_LEN + 1], childs[UUID_TEXT_LEN + 1] = "";
    int fds[2];
    uuid_v7(T_MS, mine); /* seeded before the fork */
    if (!CHECK_EQ_INT(pipe(fds), 0))
        return;
    pid_t pid = fork();
    if (pid == 0) {
        uuid_v7(T_MS + 5000, childs);
        _exit(write(fds[1], childs, UUID_TEXT_LEN) == UUID_TEXT_LEN ? 0 : 1);
    }
    uuid_v7(T_MS + 5000, mine);
    close(fds[1]);
    CHECK_EQ_INT(read(fds[0], childs, UUID_TEXT_LEN), UUID_TEXT_LEN);
    close(fds[0]);
    int status = -1;
    CHECK_EQ_INT(waitpid(pid, &status, 0), pid);
    CHECK_EQ_INT(status, 0);
    /* same time field; the random tails must differ */
    CHECK(memcmp(mine, childs, 13) == 0);
    CHECK(memcmp(mine + 14, childs + 14, UUID_TEXT_LEN - 14) != 0);
}

static void test_uuid_is_valid(void)
{
    static const char *const good[] = {
        "018bcfe5-6a00-7abc-8def-0123456789ab", "018BCFE5-6A00-7ABC-8DEF-0123456789AB",
        "00000000-0000-0000-0000-000000000000", "ffffffff-ffff-ffff-ffff-ffffffffffff",
    };
    static const char *const bad[] = {
        "018bcfe5-6a00-7abc-8def-0123456789a",   "018bcfe5-6a00-7abc-8def-0123456789abc",
        "018bcfe5x6a00-7abc-8def-0123456789ab",  "018bcfe5-6a00-7abc-8def0-123456789ab",
        "018bcfe5-6a00-7abc-8def-0123456789ag",  "018bcfe5-6a00-7abc-8def-012345678 ab",
        "{18bcfe5-6a00-7abc-8def-0123456789ab}", "",
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        check_context("'%s'", good[i]);
        CHECK_EQ_INT(uuid_is_valid(good[i], strlen(good[i])), 1);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        check_context("'%s'", bad[i]);
        CHECK_EQ_INT(uuid_is_valid(bad[i], strlen(bad[i])), 0);
    }
    check_context(NULL);
    /* only the given length counts */
    CHECK_EQ_INT(uuid_is_valid(good[0], 35), 0);
    CHECK_EQ_INT(uuid_is_valid("018bcfe5-6a00-7abc-8def-0123456789abXYZ", 36), 1);
}

/* ---- numbers --------------------------------------------------------- */

static struct buf text_buf;

/* What json_write_double writes for v, valid until the next call. */
static const char *double_text(double v)
{
    buf_truncate(&text_buf, 0);
    if (json_write_double(&text_buf, v) < 0 || buf_append_char(&text_buf, '\0') < 0)
        return "(out of memory)";
    return text_buf.data;
}

static void test_write_double(void)
{
    CHECK_STR_EQ(double_text(0.1), "0.1");
    CHECK_STR_EQ(double_text(1.5), "1.5");
    CHECK_STR_EQ(double_text(-0.25), "-0.25");
    CHECK_STR_EQ(double_text(100), "100.0"); /* still a float in JSON */
    CHECK_STR_EQ(double_text(-3), "-3.0");
    CHECK_STR_EQ(double_text(0), "0.0");
    CHECK_STR_EQ(double_text(1e21), "1e+21");
    CHECK_STR_EQ(double_text(0.1 + 0.2), "0.30000000000000004");
    CHECK_STR_EQ(double_text(NAN), "null");
    CHECK_STR_EQ(double_text(INFINITY), "null");
    CHECK_STR_EQ(double_text(-INFINITY), "null");
    const double hard[] = {1.0 / 3.0, DBL_MAX, -DBL_MAX, DBL_MIN, 5e-324, 9007199254740993.0,
                           123456789012345678.0, 2.2250738585072011e-308};
    for (size_t i = 0; i < sizeof hard / sizeof hard[0]; i++) {
        const char *text = double_text(hard[i]);
        check_context("%.17g -> %s", hard[i], text);
        CHECK(strtod(text, NULL) == hard[i]);
        json_t *v = js_parse(text, strlen(text));
        CHECK(json_is_real(v) && json_number_value(v) == hard[i]);
        json_decref(v);
    }
    check_context(NULL);
}

/* What json_write_double wrote before its short-decimal path: the first
 * of %.15g, %.16g, %.17g that reads back as v, with ".0" on an integer. */
static void double_text_by_printf(double v, char *text, size_t size)
{
    for (int digits = 15; digits <= 17; digits++) {
        snprintf(text, size, "%.*g", digits, v);
        if (strtod(text, NULL) == v)
            break;
    }
    if (strspn(text, "-0123456789") == strlen(text))
        strncat(text, ".0", size - strlen(text) - 1);
}

/* Decimals of up to 15 digits (money, percentages, versions, timings) are
 * written without printf: the same text as with it, at every scale. */
static void test_write_double_short_decimals_as_printf(void)
{
    static const double powers[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
                                    1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17};
    const double edges[] = {1e-4, 9.9999e-5, 1e15, 999999999999999.0, 999999999999999.9,
                            0.30000000000000004, 1e-5, 123.456, 0.1, 0.7, 2.675, 1.005,
                            4503599627370497.5, 0.0001234, 100.0, -0.5, 12345678901234.5};
    char want[64];
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        double_text_by_printf(edges[i], want, sizeof want);
        check_context("%.17g", edges[i]);
        CHECK_STR_EQ(double_text(edges[i]), want);
    }
    for (int i = 0; i < 200000; i++) {
        uint64_t r = next_random();
        /* m of 1 to 17 digits over 10^k, k from 0 to 17, either sign */
        uint64_t m = (r >> 8) % (uint64_t)powers[1 + (r & 15)];
        double v = (double)m / powers[(r >> 4) % 18] * ((r >> 63) ? -1 : 1);
        if (i % 4 == 3) { /* and doubles next to them */
            uint64_t bits;
            memcpy(&bits, &v, sizeof bits);
            bits += (r >> 60 & 1) ? 1 : -1;
            memcpy(&v, &bits, sizeof v);
        }
        if (!isfinite(v))
            continue;
        double_text_by_printf(v, want, sizeof want);
        check_context("%.17g (%a)", v, v);
        if (!CHECK_STR_EQ(double_text(v), want))
            break;
    }
    check_context(NULL);
}

static void test_write_double_round_trip(void)
{
    for (int i = 0; i < 20000; i++) {
        uint64_t bits = next_random();
        double v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v))
            continue;
        const char *text = double_text(v);
        check_context("%a -> %s", v, text);
        if (!CHECK(strtod(text, NULL) == v) || !CHECK_LE(strlen(text), 24))
            break;
    }
    check_context(NULL);
}

/* ---- properties ------------------------------------------------------ */

/* The encoded value of a leaf at a dotted path, or NULL. */
static const char *props_leaf(const struct props_node *root, const char *dotted)
{
    const struct props_node *node = root;
    const char *p = dotted;
    while (node != NULL) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        node = props_child(node, p, len);
        if (dot == NULL)
            return node ? node->json : NULL;
        p = dot + 1;
    }
    return NULL;
}

static void check_props_value(const char *value, const char *want_json)
{
    struct props_node *root = props_new();
    char err[256] = "";
    check_context("value '%s'", value);
    if (CHECK_EQ_INT(props_add(root, "k", value, err, sizeof err), 0)) {
        const char *json = props_leaf(root, "k");
        CHECK_STR_EQ(json, want_json);
        json_t *v = json ? js_parse(json, strlen(json)) : NULL;
        CHECK(v != NULL);
        json_decref(v);
    }
    check_context(NULL);
    props_free(root);
}

static void test_props_values(void)
{
    check_props_value("true", "true");
    check_props_value("false", "false");
    check_props_value("null", "null");
    check_props_value("4", "4");
    check_props_value("-1.5e+3", "-1.5e+3");
    check_props_value("\"quoted\"", "\"quoted\"");
    check_props_value("\"a\\\"b\\u00e9\"", "\"a\\\"b\\u00e9\"");
    check_props_value("plain text", "\"plain text\"");
    check_props_value("say \"hi\"", "\"say \\\"hi\\\"\"");
    check_props_value("", "\"\"");
    check_props_value("True", "\"True\"");
    check_props_value("01", "\"01\"");
    check_props_value("1.", "\"1.\"");
    check_props_value(".5", "\".5\"");
    check_props_value("+1", "\"+1\"");
    check_props_value("NaN", "\"NaN\"");
    check_props_value("\"open", "\"\\\"open\"");
    check_props_value("\"a\"b\"", "\"\\\"a\\\"b\\\"\"");
    check_props_value("\"bad \\x\"", "\"\\\"bad \\\\x\\\"\"");
    check_props_value("v2023.06.1", "\"v2023.06.1\"");
}

/* props_add(key) must fail with a message naming the key; the tree keeps
 * what it had. */
static void check_props_add_fails(struct props_node *root, const char *key, const char *value)
{
    char err[256] = "";
    check_context("key '%s'", key);
    CHECK_EQ_INT(props_add(root, key, value, err, sizeof err), -1);
    CHECK_CONTAINS(err, key);
    check_context(NULL);
}

static void test_props_errors(void)
{
    struct props_node *root = props_new();
    char err[256];
    CHECK_EQ_INT(props_add(root, "a", "1", err, sizeof err), 0);
    CHECK_EQ_INT(props_add(root, "x.y", "2", err, sizeof err), 0);
    check_props_add_fails(root, "a.b", "2");   /* a already has a value */
    check_props_add_fails(root, "a.b.c", "2");
    check_props_add_fails(root, "x", "3");     /* x already has children */
    check_props_add_fails(root, "a", "4");     /* set twice */
    check_props_add_fails(root, "x.y", "5");
    CHECK_STR_EQ(props_leaf(root, "a"), "1");
    CHECK_STR_EQ(props_leaf(root, "x.y"), "2");
    CHECK_EQ_UINT(root->nchildren, 2);
    /* siblings are fine */
    CHECK_EQ_INT(props_add(root, "x.z", "6", err, sizeof err), 0);
    CHECK_STR_EQ(props_leaf(root, "x.z"), "6");

    check_props_add_fails(root, "a..b", "1");
    check_props_add_fails(root, "p..q", "1");
    check_props_add_fails(root, ".a", "1");
    check_props_add_fails(root, "b.", "1");
    check_props_add_fails(root, "", "1");
    props_free(root);
}

/* ---- config ---------------------------------------------------------- */

static char *no_env[] = {NULL};

static void test_config_defaults(void)
{
    struct config cfg;
    char err[CONFIG_ERR_LEN] = "";
    /* the process environment is not consulted: only envp */
    setenv("TELEMETRY_AGENT_BATCH_MAX_EVENTS", "9", 1);
    int rc = config_load(&cfg, NULL, no_env, err, sizeof err);
    unsetenv("TELEMETRY_AGENT_BATCH_MAX_EVENTS");
    if (!CHECK_EQ_INT(rc, 0)) {
        fprintf(stderr, "    %s\n", err);
        return;
    }
    CHECK_EQ_INT(cfg.enabled, 1);
    CHECK_STR_EQ(cfg.socket, "/run/telemetry/agent.sock");
    CHECK_EQ_INT(cfg.socket_mode, 0660);
    CHECK_EQ_INT(cfg.batch_max_events, 500);
    CHECK_EQ_INT(cfg.batch_max_bytes, 524288);
    CHECK_EQ_INT(cfg.batch_max_age_ms, 1000);
    CHECK_EQ_INT(cfg.max_event_bytes, 32768);
    CHECK_EQ_INT(cfg.buffer_max_bytes, 8 * 1024 * 1024);
    CHECK_EQ_INT(cfg.buffer_overflow, OVERFLOW_BLOCK);
    CHECK_STR_EQ(cfg.url, "stdout");
    CHECK_STR_EQ(cfg.api_key, "");
    CHECK_EQ_INT(cfg.gzip, 1);
    CHECK_EQ_INT(cfg.retry_initial_ms, 500);
    CHECK_EQ_INT(cfg.retry_max_ms, 30000);
    char host[256] = "";
    gethostname(host, sizeof host - 1);
    CHECK_STR_EQ(cfg.distinct_id, host);
    CHECK_STR_EQ(props_leaf(cfg.properties, "$lib"), "\"telemetry-agent\"");
    CHECK(props_leaf(cfg.properties, "$lib_version") != NULL);
    config_free(&cfg);

    CHECK_EQ_INT(config_load(&cfg, NULL, NULL, err, sizeof err), 0); /* envp may be NULL */
    config_free(&cfg);
}

/* Load `ini` (written to a temporary file) with `envp`. Returns config_load's
 * result; on success the caller frees cfg. *path_out, if given, receives the
 * file's path (free with tmp_file_remove). */
static int load_ini(struct config *cfg, const char *ini, char **envp, char *err, size_t errlen,
                    char **path_out)
{
    char *path = tmp_file(ini);
    if (!CHECK(path != NULL))
        return -2;
    err[0] = '\0';
    int rc = config_load(cfg, path, envp, err, errlen);
    if (path_out != NULL)
        *path_out = path;
    else
        tmp_file_remove(path);
    return rc;
}

static void test_config_file(void)
{
    struct config cfg;
    char err[CONFIG_ERR_LEN];
    const char *ini = "; a comment\n"
                      "# another\n"
                      "[batch]\n"
                      "max_events = 10   ; inline comment\n"
                      "max_bytes = 1MiB\n"
                      "\n"
                      "[events]\n"
                      "max_event_bytes = 16KiB\n"
                      "registry =\n"
                      "[agent]\n"
                      "enabled = off\n"
                      "socket_mode = 0600\n"
                      "distinct_id = box-1\n"
                      "[properties]\n"
                      "app.version = v1.2\n"
                      "app.gpus = 2\n";
    if (!CHECK_EQ_INT(load_ini(&cfg, ini, no_env, err, sizeof err, NULL), 0)) {
        fprintf(stderr, "    %s\n", err);
        return;
    }
    CHECK_EQ_INT(cfg.batch_max_events, 10);
    CHECK_EQ_INT(cfg.batch_max_bytes, 1048576);
    CHECK_EQ_INT(cfg.max_event_bytes, 16384);
    CHECK_STR_EQ(cfg.registry, "");
    CHECK_EQ_INT(cfg.enabled, 0);
    CHECK_EQ_INT(cfg.socket_mode, 0600);
    CHECK_STR_EQ(cfg.distinct_id, "box-1");
    CHECK_STR_EQ(props_leaf(cfg.properties, "app.version"), "\"v1.2\"");
    CHECK_STR_EQ(props_leaf(cfg.properties, "app.gpus"), "2");
    CHECK(props_leaf(cfg.properties, "$lib") != NULL);
    config_free(&cfg);
}

/* `ini` must be refused with an error naming the file, `line` and `key`,
 * and saying what is allowed (if `allowed`). */
static void check_ini_error(const char *what, const char *ini, int line, const char *key,
                            int allowed)
{
    struct config cfg;
    char err[CONFIG_ERR_LEN];
    char *path = NULL;
    check_context("%s", what);
    if (CHECK_EQ_INT(load_ini(&cfg, ini, no_env, err, sizeof err, &path), -1) && path != NULL) {
        char where[4200];
        snprintf(where, sizeof where, "%s:%d: ", path, line);
        CHECK_CONTAINS(err, where);
        if (key != NULL)
            CHECK_CONTAINS(err, key);
        if (allowed)
            CHECK_CONTAINS(err, "allowed");
    } else if (path != NULL) {
        config_free(&cfg);
    }
    tmp_file_remove(path);
    check_context(NULL);
}

static void test_config_errors(void)
{
    check_ini_error("unknown section", "[agent]\nenabled = true\n[colours]\nred = 1\n", 3,
                    "colours", 1);
    check_ini_error("unknown section without keys", "[batch]\nmax_events = 5\n\n[empty]\n", 4,
                    "empty", 1);
    check_ini_error("unknown key", "[batch]\nmax_events = 10\ncolour = red\n", 3, "colour", 1);
    check_ini_error("key of another section", "[agent]\nmax_events = 10\n", 2, "max_events", 1);
    check_ini_error("max_events = 0", "[batch]\nmax_events = 0\n", 2, "max_events", 1);
    check_ini_error("max_events = abc", "[batch]\n\n; note\nmax_events = abc\n", 4, "max_events",
                    1);
    check_ini_error("max_events too big", "[batch]\nmax_events = 100001\n", 2, "max_events", 1);
    check_ini_error("bad boolean", "[agent]\nenabled = maybe\n", 2, "enabled", 1);
    check_ini_error("bad choice", "[agent]\nlog_level = loud\n", 2, "log_level", 1);
    check_ini_error("bad size suffix", "[batch]\nmax_bytes = 1TB\n", 2, "max_bytes", 1);
    check_ini_error("bad octal mode", "[agent]\nsocket_mode = 0999\n", 2, "socket_mode", 1);
    check_ini_error("property with an empty part", "[properties]\na..b = 1\n", 2, "a..b", 1);
    check_ini_error("duplicate key", "[batch]\nmax_events = 10\nmax_age_ms = 5\nmax_events = 20\n",
                    4, "max_events", 1);
    check_ini_error("not an INI line", "[batch]\nmax_events = 10\nthis is not ini\n", 3, NULL, 1);
    check_ini_error("unclosed section", "[batch\nmax_events = 10\n", 1, NULL, 1);

    struct config cfg;
    char err[CONFIG_ERR_LEN];
    CHECK_EQ_INT(config_load(&cfg, "/nonexistent/agent.ini", no_env, err, sizeof err), -1);
    CHECK_CONTAINS(err, "/nonexistent/agent.ini");
}

/* Settings that are each fine but not together (or not in that form):
 * refused with a message naming `key` and what is allowed. */
static void check_config_refused(const char *what, const char *ini, const char *key)
{
    struct config cfg;
    char err[CONFIG_ERR_LEN];
    check_context("%s", what);
    if (CHECK_EQ_INT(load_ini(&cfg, ini, no_env, err, sizeof err, NULL), -1)) {
        CHECK_CONTAINS(err, key);
        CHECK_CONTAINS(err, "allowed");
    } else {
        config_free(&cfg);
    }
    check_context(NULL);
}

static void test_config_cross_checks(void)
{
    check_config_refused("url scheme", "[backend]\nurl = ftp://host/batch\n", "url");
    check_config_refused("relative socket", "[agent]\nsocket = agent.sock\n", "socket");
    check_config_refused("event larger than half a batch",
                         "[batch]\nmax_bytes = 64KiB\n[events]\nmax_event_bytes = 33KiB\n",
                         "max_event_bytes");
    check_config_refused("buffer smaller than a batch",
                         "[batch]\nmax_bytes = 1MiB\n[buffer]\nmax_bytes = 512KiB\n",
                         "[buffer] max_bytes");
    check_config_refused("retry_max_ms below retry_initial_ms",
                         "[backend]\nretry_initial_ms = 5000\nretry_max_ms = 1000\n",
                         "retry_max_ms");

    /* the limits themselves are allowed */
    struct config cfg;
    char err[CONFIG_ERR_LEN];
    const char *edge = "[batch]\nmax_bytes = 64KiB\n[events]\nmax_event_bytes = 32KiB\n"
                       "[buffer]\nmax_bytes = 64KiB\n"
                       "[backend]\nretry_initial_ms = 1000\nretry_max_ms = 1000\n";
    if (CHECK_EQ_INT(load_ini(&cfg, edge, no_env, err, sizeof err, NULL), 0))
        config_free(&cfg);
    else
        fprintf(stderr, "    %s\n", err);
    /* a disabled agent needs no API key, whatever the URL */
    if (CHECK_EQ_INT(load_ini(&cfg, "[agent]\nenabled = false\n[backend]\nurl = https://x/b\n",
                              no_env, err, sizeof err, NULL), 0))
        config_free(&cfg);
    else
        fprintf(stderr, "    %s\n", err);
}

static void test_config_env(void)
{
    struct config cfg;
    char err[CONFIG_ERR_LEN];
    char *env[] = {"PATH=/bin", "TELEMETRY_AGENT_SERVICE_HOST=10.0.0.1",
                   "TELEMETRY_AGENT_BATCH_MAX_EVENTS=7", "TELEMETRY_AGENT_AGENT_ENABLED=no", NULL};
    if (CHECK_EQ_INT(load_ini(&cfg, "[batch]\nmax_events = 10\n", env, err, sizeof err, NULL), 0)) {
        CHECK_EQ_INT(cfg.batch_max_events, 7); /* the environment beats the file */
        CHECK_EQ_INT(cfg.enabled, 0);
        config_free(&cfg);
    }
    char *bad[] = {"TELEMETRY_AGENT_BATCH_MAX_EVENTS=lots", NULL};
    CHECK_EQ_INT(config_load(&cfg, NULL, bad, err, sizeof err), -1);
    CHECK_CONTAINS(err, "TELEMETRY_AGENT_BATCH_MAX_EVENTS");
    CHECK_CONTAINS(err, "lots");
    CHECK_CONTAINS(err, "allowed");
}

/* Regression: a TELEMETRY_AGENT_ variable that names no setting (a typo)
 * was ignored silently. It is refused like an unknown key in the file;
 * the variables Kubernetes sets for a Service named telemetry-agent are
 * not settings and are left alone. */
static void test_config_env_unknown_refused(void)
{
    struct config cfg;
    char err[CONFIG_ERR_LEN];
    const char *typos[] = {"TELEMETRY_AGENT_BATCH_MAX_EVENT=7", "TELEMETRY_AGENT_BATCHMAXEVENTS=7",
                           "TELEMETRY_AGENT_PROPERTIES_X=1", "TELEMETRY_AGENT_=1",
                           "TELEMETRY_AGENT_APIKEY=k"};
    for (size_t i = 0; i < sizeof typos / sizeof typos[0]; i++) {
        char *env[] = {(char *)typos[i], NULL};
        check_context("%s", typos[i]);
        if (!CHECK_EQ_INT(config_load(&cfg, NULL, env, err, sizeof err), -1)) {
            config_free(&cfg);
            continue;
        }
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(strchr(typos[i], '=') - typos[i]), typos[i]);
        CHECK_CONTAINS(err, name);
        CHECK_CONTAINS(err, "no such setting");
        CHECK_CONTAINS(err, "allowed");
    }
    check_context(NULL);
    char *service[] = {"TELEMETRY_AGENT_SERVICE_HOST=10.0.0.1",
                       "TELEMETRY_AGENT_SERVICE_PORT=9464",
                       "TELEMETRY_AGENT_SERVICE_PORT_METRICS=9464",
                       "TELEMETRY_AGENT_PORT=tcp://10.0.0.1:9464",
                       "TELEMETRY_AGENT_PORT_9464_TCP=tcp://10.0.0.1:9464",
                       "TELEMETRY_AGENT_PORT_9464_TCP_PROTO=tcp",
                       "TELEMETRY_AGENT_PORT_9464_TCP_PORT=9464",
                       "TELEMETRY_AGENT_PORT_9464_TCP_ADDR=10.0.0.1",
                       "TELEMETRY_AGENT_RELAY_SERVICE_HOST=10.0.0.2", NULL};
    if (CHECK_EQ_INT(config_load(&cfg, NULL, service, err, sizeof err), 0))
        config_free(&cfg);
    else
        fprintf(stderr, "    %s\n", err);
    /* a name longer than the check's buffer (found by fuzzing: it read past
     * the buffer's end) */
    char long_name[400];
    snprintf(long_name, sizeof long_name, "TELEMETRY_AGENT_%0250d_PORT=1", 0);
    char *very_long[] = {long_name, NULL};
    if (CHECK_EQ_INT(config_load(&cfg, NULL, very_long, err, sizeof err), 0))
        config_free(&cfg);
}

/* [properties] entries from the environment: one a variable, key=value;
 * they replace the same key from the file and add others. */
static void test_config_env_properties(void)
{
    struct config cfg;
    char err[CONFIG_ERR_LEN];
    char *env[] = {"TELEMETRY_AGENT_PROPERTY_VERSION=app_properties.orchest_version=v2023.06.1",
                   "TELEMETRY_AGENT_PROPERTY_GPUS=system_properties.gpu_count=2",
                   "TELEMETRY_AGENT_PROPERTY_EQ=note=a=b", NULL};
    const char *ini = "[properties]\napp_properties.orchest_version = old\nkept = 1\n";
    if (CHECK_EQ_INT(load_ini(&cfg, ini, env, err, sizeof err, NULL), 0)) {
        CHECK_STR_EQ(props_leaf(cfg.properties, "app_properties.orchest_version"),
                     "\"v2023.06.1\"");
        CHECK_STR_EQ(props_leaf(cfg.properties, "system_properties.gpu_count"), "2");
        CHECK_STR_EQ(props_leaf(cfg.properties, "note"), "\"a=b\"");
        CHECK_STR_EQ(props_leaf(cfg.properties, "kept"), "1");
        config_free(&cfg);
    } else {
        fprintf(stderr, "    %s\n", err);
    }
    const char *bad[] = {"TELEMETRY_AGENT_PROPERTY_X=novalue", "TELEMETRY_AGENT_PROPERTY_X==v",
                         "TELEMETRY_AGENT_PROPERTY_X=a..b=1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *one[] = {(char *)bad[i], NULL};
        check_context("%s", bad[i]);
        if (CHECK_EQ_INT(config_load(&cfg, NULL, one, err, sizeof err), -1)) {
            CHECK_CONTAINS(err, "TELEMETRY_AGENT_PROPERTY_X");
            CHECK_CONTAINS(err, "allowed");
        } else {
            config_free(&cfg);
        }
    }
    check_context(NULL);
}

/* Regression: "1 MiB" (a space before the unit) was refused although
 * "1MiB" was accepted. Every documented form of a byte count is accepted. */
static void test_config_size_forms(void)
{
    static const struct {
        const char *text;
        int64_t want;
    } forms[] = {{"65536", 65536},       {"64KiB", 65536},     {"64 KiB", 65536},
                 {"64K", 65536},         {"64 k", 65536},      {"1MiB", 1048576},
                 {"1 MiB", 1048576},     {"1M", 1048576},      {"1\tM", 1048576},
                 {"1 GiB", 1073741824},  {"1G", 1073741824}};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        struct config cfg;
        char err[CONFIG_ERR_LEN], ini[128];
        snprintf(ini, sizeof ini, "[batch]\nmax_bytes = 64KiB\n[events]\nmax_event_bytes = 16KiB\n"
                 "[buffer]\nmax_bytes = %s\n", forms[i].text);
        check_context("%s", forms[i].text);
        if (CHECK_EQ_INT(load_ini(&cfg, ini, no_env, err, sizeof err, NULL), 0)) {
            CHECK_EQ_INT(cfg.buffer_max_bytes, forms[i].want);
            config_free(&cfg);
        } else {
            fprintf(stderr, "    %s\n", err);
        }
    }
    const char *refused[] = {"1 MB", "1 TiB", "MiB", "1 M iB", "1.5MiB", "-1MiB", "1 MiB x"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        char ini[128];
        snprintf(ini, sizeof ini, "[buffer]\nmax_bytes = %s\n", refused[i]);
        check_ini_error(refused[i], ini, 2, "max_bytes", 1);
    }
    check_context(NULL);
}

#define SECRET "phc_s3cr3t-Key-123"

/* The key reaches the config, and a URL other than stdout needs one. */
static void test_config_api_key(void)
{
    struct config cfg;
    char err[CONFIG_ERR_LEN];
    char *env[] = {"TELEMETRY_AGENT_API_KEY=" SECRET,
                   "TELEMETRY_AGENT_BACKEND_URL=http://collector:8000/batch", NULL};
    if (CHECK_EQ_INT(config_load(&cfg, NULL, env, err, sizeof err), 0)) {
        CHECK_STR_EQ(cfg.api_key, SECRET);
        CHECK_STR_EQ(cfg.url, "http://collector:8000/batch");
        config_free(&cfg);
    }
    char *no_key[] = {"TELEMETRY_AGENT_BACKEND_URL=http://collector:8000/batch", NULL};
    CHECK_EQ_INT(config_load(&cfg, NULL, no_key, err, sizeof err), -1);
    CHECK_CONTAINS(err, "api_key");
    CHECK_CONTAINS(err, "allowed");

    /* from a file, surrounding white space dropped */
    char *key_file = tmp_file("  " SECRET "\n\n");
    char ini[4200];
    snprintf(ini, sizeof ini, "[backend]\nurl = https://x/batch\napi_key_file = %s\n", key_file);
    if (CHECK_EQ_INT(load_ini(&cfg, ini, no_env, err, sizeof err, NULL), 0)) {
        CHECK_STR_EQ(cfg.api_key, SECRET);
        config_free(&cfg);
    }
    /* ... but not from both */
    snprintf(ini, sizeof ini, "[backend]\napi_key = " SECRET "\napi_key_file = %s\n", key_file);
    CHECK_EQ_INT(load_ini(&cfg, ini, no_env, err, sizeof err, NULL), -1);
    CHECK_CONTAINS(err, "api_key_file");
    CHECK_NOT_CONTAINS(err, SECRET);
    char *env_key[] = {"TELEMETRY_AGENT_API_KEY=" SECRET, NULL};
    snprintf(ini, sizeof ini, "[backend]\napi_key_file = %s\n", key_file);
    CHECK_EQ_INT(load_ini(&cfg, ini, env_key, err, sizeof err, NULL), -1);
    CHECK_NOT_CONTAINS(err, SECRET);
    tmp_file_remove(key_file);
}

/* Whatever goes wrong, the key itself is never in the message. */
static void check_secret_hidden(const char *what, const char *ini, char **envp)
{
    struct config cfg;
    char err[CONFIG_ERR_LEN];
    check_context("%s", what);
    if (CHECK_EQ_INT(load_ini(&cfg, ini, envp, err, sizeof err, NULL), -1)) {
        CHECK(err[0] != '\0');
        CHECK_NOT_CONTAINS(err, SECRET);
        CHECK_NOT_CONTAINS(err, "s3cr3t");
    } else {
        config_free(&cfg);
    }
    check_context(NULL);
}

static void test_config_secret_never_shown(void)
{
    char *env_key[] = {"TELEMETRY_AGENT_API_KEY=" SECRET, NULL};
    char *env_key_bad_url[] = {"TELEMETRY_AGENT_API_KEY=" SECRET,
                               "TELEMETRY_AGENT_BACKEND_URL=ftp://x", NULL};
    char *env_key_bad_value[] = {"TELEMETRY_AGENT_BACKEND_API_KEY=" SECRET,
                                 "TELEMETRY_AGENT_BATCH_MAX_EVENTS=-1", NULL};
    check_secret_hidden("bad url", "[backend]\napi_key = " SECRET "\nurl = ftp://x\n", no_env);
    check_secret_hidden("bad url from the environment", "", env_key_bad_url);
    check_secret_hidden("another bad value", "", env_key_bad_value);
    check_secret_hidden("api_key twice", "[backend]\napi_key = " SECRET "\napi_key = " SECRET "\n",
                        no_env);
    check_secret_hidden("api_key in an unknown section", "[secrets]\napi_key = " SECRET "\n",
                        no_env);
    check_secret_hidden("api_key in the wrong section", "[agent]\napi_key = " SECRET "\n", no_env);
    check_secret_hidden("api_key without '='", "[backend]\napi_key " SECRET "\n", no_env);
    check_secret_hidden("api_key then a bad value",
                        "[backend]\napi_key = " SECRET "\ntimeout_ms = 1\n", env_key);
}

/* Write text to dir/rel, making the directories on the way. */
static void put_file(const char *dir, const char *rel, const char *text)
{
    char path[512], cmd[600];
    snprintf(path, sizeof path, "%s/%s", dir, rel);
    snprintf(cmd, sizeof cmd, "mkdir -p \"$(dirname '%s')\"", path);
    CHECK_EQ_INT(system(cmd), 0);
    FILE *f = fopen(path, "w");
    if (!CHECK(f != NULL))
        return;
    fputs(text, f);
    fclose(f);
}

/* The container's memory limit from fake cgroup files, v2 and v1. */
static void test_memory_limit_from_the_cgroup(void)
{
    char dir[] = "/tmp/ta-cgroup-XXXXXX", proc[600];
    if (!CHECK(mkdtemp(dir) != NULL))
        return;
    snprintf(proc, sizeof proc, "%s/proc-cgroup", dir);
    put_file(dir, "proc-cgroup", "0::/kubepods/pod1/agent\n");
    put_file(dir, "root/kubepods/pod1/agent/memory.max", "67108864\n");
    char root[600];
    snprintf(root, sizeof root, "%s/root", dir);
    CHECK_EQ_INT(memlimit_bytes(proc, root), 67108864);
    put_file(dir, "root/kubepods/pod1/agent/memory.max", "max\n");
    CHECK_EQ_INT(memlimit_bytes(proc, root), -1);
    put_file(dir, "proc-cgroup", "12:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n");
    put_file(dir, "root/memory/docker/abc/memory.limit_in_bytes", "134217728\n");
    CHECK_EQ_INT(memlimit_bytes(proc, root), 134217728);
    put_file(dir, "root/memory/docker/abc/memory.limit_in_bytes", "9223372036854771712\n");
    CHECK_EQ_INT(memlimit_bytes(proc, root), -1); /* v1's "no limit" */
    CHECK_EQ_INT(memlimit_bytes("/nonexistent/cgroup", root), -1);
    CHECK_EQ_INT(tmp_dir_remove(dir), 0);
}

/* What config_reconcile reported, one "section.name from->to restart" line
 * each. */
static char reconcile_log[2048];

static void note_change(void *arg, const char *section, const char *name, const char *from,
                        const char *to, int needs_restart)
{
    (void)arg;
    size_t n = strlen(reconcile_log);
    snprintf(reconcile_log + n, sizeof reconcile_log - n, "%s.%s %s->%s%s\n", section,
             name ? name : "*", from ? from : "", to ? to : "", needs_restart ? " restart" : "");
}

/* Load running from `before` and next from `after`, and reconcile them. */
static int reconcile_ini(struct config *running, struct config *next, const char *before,
                         const char *after, char *err, size_t errlen)
{
    reconcile_log[0] = '\0';
    if (!CHECK_EQ_INT(load_ini(running, before, no_env, err, errlen, NULL), 0))
        return -2;
    if (!CHECK_EQ_INT(load_ini(next, after, no_env, err, errlen, NULL), 0)) {
        config_free(running);
        return -2;
    }
    return config_reconcile(running, next, note_change, NULL, err, errlen);
}

static void test_config_reconcile(void)
{
    struct config running, next;
    char err[CONFIG_ERR_LEN];
    const char *before = "[agent]\nsocket = /tmp/a.sock\n[batch]\nmax_events = 100\n"
                         "[backend]\nurl = http://127.0.0.1:1/batch\napi_key = old\n"
                         "[properties]\nteam = a\n";
    const char *after = "[agent]\nsocket = /tmp/b.sock\n[batch]\nmax_events = 7\n"
                        "[backend]\nurl = http://user:pw@127.0.0.1:2/batch\napi_key = new\n"
                        "[properties]\nteam = b\n";
    int changed = reconcile_ini(&running, &next, before, after, err, sizeof err);
    if (changed == -2)
        return;
    CHECK_EQ_INT(changed, 4); /* max_events, url, api_key, properties */
    CHECK_CONTAINS(reconcile_log, "agent.socket /tmp/a.sock->/tmp/b.sock restart\n");
    CHECK_CONTAINS(reconcile_log, "batch.max_events 100->7\n");
    CHECK_CONTAINS(reconcile_log, "backend.url http://127.0.0.1:1/batch->http://***@127.0.0.1:2");
    CHECK_CONTAINS(reconcile_log, "backend.api_key ***->***\n");
    CHECK_CONTAINS(reconcile_log, "properties.* ->\n");
    CHECK_NOT_CONTAINS(reconcile_log, "new");
    CHECK_STR_EQ(running.socket, "/tmp/a.sock"); /* kept until restart */
    CHECK_EQ_INT(running.batch_max_events, 7);
    CHECK_STR_EQ(running.api_key, "new");
    CHECK_STR_EQ(next.api_key, "old"); /* next holds what was replaced */
    CHECK_STR_EQ(props_child(running.properties, "team", 4)->json, "\"b\"");
    CHECK_STR_EQ(props_child(next.properties, "team", 4)->json, "\"a\"");
    config_free(&running);
    config_free(&next);

    /* From printing to sending changes the transport: a restart. */
    changed = reconcile_ini(&running, &next, "[backend]\nurl = stdout\n",
                            "[backend]\nurl = http://127.0.0.1:1/batch\napi_key = k\n", err,
                            sizeof err);
    if (changed == -2)
        return;
    CHECK_EQ_INT(changed, 1); /* the key only */
    CHECK_CONTAINS(reconcile_log, "backend.url stdout->http://127.0.0.1:1/batch restart\n");
    CHECK_STR_EQ(running.url, "stdout");
    config_free(&running);
    config_free(&next);

    /* Checked with the running values of what needs a restart: a batch
     * larger than the buffer that keeps its size is refused, and nothing
     * changes. */
    changed = reconcile_ini(&running, &next, "[batch]\nmax_events = 100\n",
                            "[batch]\nmax_events = 5\nmax_bytes = 32MiB\n"
                            "[buffer]\nmax_bytes = 64MiB\n", err, sizeof err);
    if (changed == -2)
        return;
    CHECK_EQ_INT(changed, -1);
    CHECK_CONTAINS(err, "[buffer] max_bytes = 8388608 is not allowed");
    CHECK_CONTAINS(err, "change only at restart");
    CHECK_EQ_INT(running.batch_max_events, 100);
    CHECK_EQ_INT(running.buffer_max_bytes, 8388608);
    CHECK_STR_EQ(reconcile_log, "");
    config_free(&running);
    config_free(&next);

    /* The same file again: nothing changes. */
    changed = reconcile_ini(&running, &next, before, before, err, sizeof err);
    if (changed == -2)
        return;
    CHECK_EQ_INT(changed, 0);
    CHECK_STR_EQ(reconcile_log, "");
    config_free(&running);
    config_free(&next);
}

/* swar.h's word-at-a-time tests agree with the same test made on each byte,
 * whatever its neighbours (no carry or borrow leaks between bytes). */
static void test_swar_matches_each_byte(void)
{
    static const unsigned char chars[] = {'"', '\\', '@', '.', ':', 0x00, 0x01, 0x7f};
    static const unsigned char limits[] = {0x01, 0x20, 0x7f, 0x80};
    unsigned wrong = 0;
    for (unsigned a = 0; a < 256; a++) {
        for (unsigned b = 0; b < 256; b++) {
            uint64_t w = 0;
            for (int k = 0; k < 8; k++) /* a and b in turn (each pair comes both ways) */
                w |= (uint64_t)(k % 2 == 0 ? a : b) << (8 * k);
            uint64_t low7 = swar_low7(w);
            for (size_t c = 0; c < sizeof chars; c++) {
                uint64_t got = swar_equal(low7, chars[c]), want = 0;
                unsigned count = 0;
                for (int k = 0; k < 8; k++)
                    if (((w >> (8 * k)) & 0x7f) == chars[c]) {
                        want |= UINT64_C(0x80) << (8 * k);
                        count++;
                    }
                wrong += got != want;
                wrong += swar_count(got) != count;
            }
            for (size_t n = 0; n < sizeof limits; n++) {
                uint64_t got = swar_below(low7, limits[n]), want = 0;
                for (int k = 0; k < 8; k++)
                    if (((w >> (8 * k)) & 0x7f) < limits[n])
                        want |= UINT64_C(0x80) << (8 * k);
                wrong += got != want;
            }
            uint64_t want_high = 0;
            for (int k = 0; k < 8; k++)
                if ((w >> (8 * k)) & 0x80)
                    want_high |= UINT64_C(0x80) << (8 * k);
            wrong += swar_high(w) != want_high;
        }
    }
    CHECK_EQ_UINT(wrong, 0);
}

int main(void)
{
    RUN(test_memory_limit_from_the_cgroup);
    RUN(test_timestamp_format);
    RUN(test_timestamp_matches_gmtime);
    RUN(test_timestamp_round_trip);
    RUN(test_timestamp_parse);
    RUN(test_timestamp_parse_invalid);
    RUN(test_timestamp_parse_unbounded);
    RUN(test_uuid_v7_format);
    RUN(test_uuid_v7_order);
    RUN(test_uuid_v7_clock_steps);
    RUN(test_uuid_v7_fork);
    RUN(test_uuid_is_valid);
    RUN(test_swar_matches_each_byte);
    RUN(test_write_double);
    RUN(test_write_double_short_decimals_as_printf);
    RUN(test_write_double_round_trip);
    RUN(test_props_values);
    RUN(test_props_errors);
    RUN(test_config_defaults);
    RUN(test_config_file);
    RUN(test_config_errors);
    RUN(test_config_cross_checks);
    RUN(test_config_env);
    RUN(test_config_env_unknown_refused);
    RUN(test_config_env_properties);
    RUN(test_config_size_forms);
    RUN(test_config_api_key);
    RUN(test_config_secret_never_shown);
    RUN(test_config_reconcile);
    buf_free(&text_buf);
    return check_finish();
}
