/*
 * Regression tests for bugs found in agent/ and fixed: uuid order past 4096
 * ids in a millisecond, config messages that must say what is allowed, long
 * config lines, a 1023-byte API key file, empty containers at the nesting
 * limit, an empty open batch at shutdown, and float Forward times in the last
 * second of 9999. Each case is its own ctest (unit_regression_<name>); run
 * one with: test_regressions <name>.
 */
#include "batch.h"
#include "body.h"
#include "check.h"
#include "config.h"
#include "encode.h"
#include "json.h"
#include "metrics.h"
#include "forward.h"
#include "scan.h"
#include "mp.h"
#include "props.h"
#include "registry.h"
#include "support.h"
#include "timestamp.h"
#include "uuid.h"

#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

/* uuid.h: "a per-millisecond counter ... keeps ids made in the same
 * millisecond in order". Was: when the 12-bit counter reached 0xfff,
 * uuid_v7() restarted it at a random value below 0x400, so the next id sorted
 * before the previous one (after 3073 to 4096 ids in one millisecond). */
static void uuid_order_after_counter_overflow(void)
{
    char prev[UUID_TEXT_LEN + 1], id[UUID_TEXT_LEN + 1];
    uuid_v7(INT64_C(1700000000000), prev);
    for (int i = 1; i < 5000; i++) {
        uuid_v7(INT64_C(1700000000000), id);
        check_context("id %d: %s after %s", i, id, prev);
        if (!CHECK_LT(strcmp(prev, id), 0))
            break;
        memcpy(prev, id, sizeof id);
    }
}

/* Load `ini`; returns config_load's result and the message in err. */
static int load(const char *ini, char *err, size_t errlen)
{
    struct config cfg;
    char *env[] = {NULL};
    char *path = tmp_file(ini);
    if (!CHECK(path != NULL))
        return -2;
    int rc = config_load(&cfg, path, env, err, errlen);
    if (rc == 0)
        config_free(&cfg);
    tmp_file_remove(path);
    return rc;
}

/* config.h: the error names "file, line, key, value and what is allowed".
 * Was: "[batch] max_events is set twice (continuation lines are not
 * supported)", which said nothing about what is allowed. */
static void config_duplicate_key_says_allowed(void)
{
    char err[CONFIG_ERR_LEN];
    if (CHECK_EQ_INT(load("[batch]\nmax_events = 10\nmax_events = 20\n", err, sizeof err), -1)) {
        CHECK_CONTAINS(err, "max_events");
        CHECK_CONTAINS(err, "allowed");
    }
}

/* Was: "not an INI line (expected [section], key = value, or a ;
 * comment)", without "allowed". */
static void config_not_ini_line_says_allowed(void)
{
    char err[CONFIG_ERR_LEN];
    if (CHECK_EQ_INT(load("[batch]\nmax_events = 10\nthis is not ini\n", err, sizeof err), -1))
        CHECK_CONTAINS(err, "allowed");
}

/* inih reads lines of at most INI_MAX_LINE bytes. A longer comment is
 * skipped whole; a longer setting is refused with a clear message. Was: the
 * line was cut and its tail read as a line of its own, so a valid file with
 * a long comment was refused as "not an INI line" on the wrong line. */
static void config_long_lines(void)
{
    char ini[1024], err[CONFIG_ERR_LEN] = "";
    char filler[301];
    memset(filler, 'x', 300);
    filler[300] = '\0';
    snprintf(ini, sizeof ini, "; %s\n[batch]\nmax_events = 10\n", filler);
    check_context("comment of 302 bytes");
    if (!CHECK_EQ_INT(load(ini, err, sizeof err), 0))
        fprintf(stderr, "    %s\n", err);

    snprintf(ini, sizeof ini, "[properties]\nlong = %s\n", filler);
    check_context("property value of 300 bytes");
    if (CHECK_EQ_INT(load(ini, err, sizeof err), -1)) {
        CHECK_CONTAINS(err, ":2:");
        CHECK_CONTAINS(err, "longer than");
        CHECK_CONTAINS(err, "allowed");
    }
}

/* Was: fread of sizeof key - 1 = 1023 bytes, then too_long = !feof(f): a
 * file of exactly 1023 bytes had not hit EOF yet and was refused as "file
 * too large (allowed: one key of 1 to 1023 bytes)". */
static void config_api_key_file_of_1023_bytes(void)
{
    char key[1024];
    memset(key, 'k', 1022);
    key[1022] = '\n';
    key[1023] = '\0';
    char *key_path = tmp_file(key);
    char ini[4200], err[CONFIG_ERR_LEN] = "";
    snprintf(ini, sizeof ini, "[backend]\napi_key_file = %s\n", key_path);
    if (!CHECK_EQ_INT(load(ini, err, sizeof err), 0))
        fprintf(stderr, "    %s\n", err);
    tmp_file_remove(key_path);
}

/* scan.h (was frame.h): "Same bound as msgpack-c's unpacker stack". msgpack-c refuses any
 * container header at depth 33, even an empty one (start_container checks
 * the stack before looking at the count). Was: frame_scan treated an empty
 * container as a scalar and called the object complete, so the listener
 * closed the connection as "msgpack the decoder refused" instead of "nested
 * deeper than 32 levels". */
static void scan_empty_container_33_deep(void)
{
    unsigned char data[WIRE_MAX_DEPTH + 1];
    memset(data, 0x91, WIRE_MAX_DEPTH);
    data[WIRE_MAX_DEPTH] = 0x90; /* [[[ ... [] ... ]]] */
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    int unpacked = msgpack_unpack_next(&up, (const char *)data, sizeof data, &off) ==
                   MSGPACK_UNPACK_SUCCESS;
    msgpack_unpacked_destroy(&up);
    struct scanner s;
    size_t object_len;
    scanner_reset(&s);
    enum scan_status st = scanner_run(&s, data, sizeof data, &object_len);
    CHECK_EQ_INT(unpacked, 0);
    CHECK_EQ_INT(st, SCAN_TOO_DEEP);
}

static void ignore_sealed(struct batch *batch, void *arg)
{
    (void)batch;
    (void)arg;
}

/* Was: batcher_destroy released the open batch even when it held no event
 * (one was begun and rolled back), counting a dropped batch of zero
 * events. */
static void batch_destroy_counts_empty_batch(void)
{
    struct event_base *base = event_base_new();
    struct batch_limits limits = {10, 1 << 20, 10, 1000, 100, 0};
    struct budget budget;
    struct batcher b;
    budget_init(&budget, 1 << 20);
    metrics_reset();
    if (!CHECK(base != NULL) ||
        !CHECK_EQ_INT(batcher_init(&b, base, &limits, &budget, ignore_sealed, NULL), 0))
        return;
    size_t mark;
    struct buf *out = batcher_begin(&b, &mark);
    if (CHECK(out != NULL))
        buf_append_str(out, "{\"x\":1}");
    batcher_abort(&b, mark);
    batcher_destroy(&b);
    event_base_free(base);
    CHECK_EQ_UINT(metrics_get(METRIC_BATCHES_DROPPED), 0);
}

/* props.c: a lone surrogate escape is not valid JSON; strict parsers would
 * refuse every batch carrying it. A proper pair is fine. */
static void props_lone_surrogate_refused(void)
{
    CHECK_EQ_INT(props_is_json_scalar("\"\\ud800\""), 0);
    CHECK_EQ_INT(props_is_json_scalar("\"\\udc00\""), 0);
    CHECK_EQ_INT(props_is_json_scalar("\"\\ud83d\\u0041\""), 0);
    CHECK_EQ_INT(props_is_json_scalar("\"\\ud83d\\ude00\""), 1);
    char err[256];
    struct props_node *root = props_new();
    if (CHECK(root != NULL) && CHECK_EQ_INT(props_add(root, "k", "\"\\ud800\"", err, sizeof err), 0)) {
        const struct props_node *k = props_child(root, "k", 1);
        /* kept as plain text, so it is escaped into a valid string */
        json_t *parsed = k && k->json ? js_parse(k->json, strlen(k->json)) : NULL;
        CHECK(parsed != NULL);
        json_decref(parsed);
    }
    props_free(root);
}

/* registry.c: a line longer than the read buffer used to be split, its tail
 * read as an event name. A long comment is skipped; a long name refused. */
static void registry_long_lines(void)
{
    char text[1300], err[512];
    int n = snprintf(text, sizeof text, "# ");
    memset(text + n, 'x', 1100);
    snprintf(text + n + 1100, sizeof text - (size_t)n - 1100, "tail\nproject:created\n");
    char *path = tmp_file(text);
    struct registry *r = path ? registry_load(path, err, sizeof err) : NULL;
    if (CHECK(r != NULL)) {
        CHECK_EQ_UINT(registry_count(r), 1);
        CHECK(registry_contains(r, "project:created", 15));
    }
    registry_free(r);
    tmp_file_remove(path);
    path = tmp_file(text + 2); /* the same line without the '#' */
    r = path ? registry_load(path, err, sizeof err) : NULL;
    if (CHECK(r == NULL)) {
        CHECK_CONTAINS(err, "line 1");
        CHECK_CONTAINS(err, "allowed");
    }
    registry_free(r);
    tmp_file_remove(path);
}

/* One Forward entry's outcome: its time, or -1 if it was refused. */
static void forward_entry_time(void *arg, const struct analytics_event *ev,
                               const struct refusal *r)
{
    (void)r;
    *(int64_t *)arg = ev != NULL ? ev->timestamp_ms : -1;
}

/* forward.h: a Forward time is seconds "from 1970 to 9999". Was: float
 * seconds past 253402300799.0 were refused, so a time within the last second
 * of 9999 (accepted as an integer) was dropped as bad_timestamp. */
static void forward_float_time_last_second_of_9999(void)
{
    const double last = (double)(TIMESTAMP_MAX_MS / 1000);
    const struct {
        double secs;
        int64_t want_ms; /* -1: refused */
    } cases[] = {
        {last, TIMESTAMP_MAX_MS - 999},
        {last + 0.5, TIMESTAMP_MAX_MS - 499},
        {nextafter(last + 1, 0), TIMESTAMP_MAX_MS},
        {last + 1, -1},
    };
    struct forward_decoder d;
    struct mp m;
    if (!CHECK_EQ_INT(forward_init(&d, "", NULL, 1024), 0))
        return;
    mp_init(&m);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const msgpack_object *chunk;
        struct refusal r;
        int64_t ms = -2;
        check_context("%.17g seconds", cases[i].secs);
        CHECK_EQ_INT(forward_decode(&d, mp_build(&m, "[s, d, {}]", "t", cases[i].secs), &chunk,
                                    forward_entry_time, &ms, &r),
                     0);
        CHECK_EQ_INT(ms, cases[i].want_ms);
    }
    mp_free(&m);
    forward_destroy(&d);
}


/* json.c: "the shortest text that reads back as the same float". Was: a
 * float32 was printed through double, so 0.1f became 0.10000000149011612. */
static void float32_shortest_text(void)
{
    const float values[] = {0.1f, 1.1f, -2.5f, 3.4028235e38f, 1.17549435e-38f, 1e-45f,
                            16777216.0f, 0.3f, 100.0f, 123456.79f};
    const char *want[] = {"0.1", "1.1", "-2.5", "3.4028235e+38", "1.1754944e-38", "1e-45",
                          "16777216.0", "0.3", "100.0", "123456.79"};
    struct buf out = BUF_INIT;
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        buf_rollback(&out, 0);
        json_write_float(&out, values[i]);
        buf_append_char(&out, '\0');
        check_context("%.9g", (double)values[i]);
        CHECK_STR_EQ(out.data, want[i]);
    }
    /* any float32: reads back the same, and no shorter text would */
    uint32_t bits = 0x12345678;
    for (int i = 0; i < 20000; i++) {
        bits = bits * 1664525u + 1013904223u;
        float v;
        memcpy(&v, &bits, sizeof v);
        if (!isfinite(v))
            continue;
        buf_rollback(&out, 0);
        json_write_float(&out, v);
        buf_append_char(&out, '\0');
        check_context("bits %08x: %s", bits, out.data);
        if (!CHECK(strtof(out.data, NULL) == v))
            break;
        /* as many significant digits as the value needs, or as its whole part has */
        int need = 1;
        char probe[400];
        while (need < 9 && (snprintf(probe, sizeof probe, "%.*g", need, (double)v),
                            strtof(probe, NULL) != v))
            need++;
        int whole = fabsf(v) >= 1 ? (int)floor(log10(fabs((double)v))) + 1 : 0;
        int digits = 0, leading = 1;
        for (const char *c = out.data; *c && *c != 'e'; c++) {
            leading = leading && (*c == '0' || *c == '.' || *c == '-');
            digits += !leading && *c >= '0' && *c <= '9';
        }
        if (strcmp(out.data + strlen(out.data) - 2, ".0") == 0 && digits > 1)
            digits--; /* the ".0" that keeps a float a float */
        if (!CHECK_LE(digits, need > whole ? need : whole))
            break;
    }
    check_context(NULL);
    buf_free(&out);
}

/* PROTOCOL.md: "timestamp exts as ISO 8601 strings". Was: a msgpack
 * timestamp before 1970 (negative seconds, timestamp 96) was written as
 * base64. Years past 9999 take the expanded form. */
static void ext_timestamp_before_1970_is_iso8601(void)
{
    struct mp m;
    mp_init(&m);
    const struct {
        int64_t secs;
        unsigned nanos;
        const char *want;
    } cases[] = {
        {-1, 0, "\"1969-12-31T23:59:59.000Z\""},
        {-86400 * 365, 500000000, "\"1969-01-01T00:00:00.500Z\""},
        {-62167219200, 0, "\"0000-01-01T00:00:00.000Z\""},
        {-62167219201, 0, "\"-000001-12-31T23:59:59.000Z\""},
        {253402300800, 0, "\"+010000-01-01T00:00:00.000Z\""},
    };
    struct buf out = BUF_INIT;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        buf_rollback(&out, 0);
        check_context("%lld s", (long long)cases[i].secs);
        CHECK_EQ_INT(encode_value(&out, mp_build(&m, "T", cases[i].secs, cases[i].nanos), 0), 0);
        buf_append_char(&out, '\0');
        CHECK_STR_EQ(out.data, cases[i].want);
    }
    check_context(NULL);
    buf_free(&out);
    mp_free(&m);
}

/* body.c: sent_at. Was: timestamp_format's failure for a clock outside
 * 1970..9999 went unchecked, and uninitialised stack bytes went into the
 * request body. Any clock gives valid JSON with an ISO 8601 sent_at. */
static void body_sent_at_clock_out_of_range(void)
{
    struct batch batch = {.count = 1};
    buf_append_str(&batch.events, "{\"event\":\"e\"}");
    struct body_format *f = body_format_new("key", 0);
    const struct {
        int64_t now_ms;
        const char *want;
    } cases[] = {
        {-5000, "1969-12-31T23:59:55.000Z"},
        {INT64_C(253402300800000), "+010000-01-01T00:00:00.000Z"},
        {0, "1970-01-01T00:00:00.000Z"},
    };
    struct body body = BODY_INIT;
    for (size_t i = 0; f != NULL && i < sizeof cases / sizeof cases[0]; i++) {
        check_context("%lld ms", (long long)cases[i].now_ms);
        if (!CHECK_EQ_INT(body_build(f, &batch, cases[i].now_ms, &body), 0) ||
            !CHECK_EQ_INT(body_flatten(&body), 0))
            continue;
        json_t *v = js_parse_buf(&body.own);
        CHECK_STR_EQ(json_string_value(json_object_get(v, "sent_at")), cases[i].want);
        json_decref(v);
    }
    check_context(NULL);
    CHECK(f != NULL);
    body_format_free(f);
    body_free(&body);
    buf_free(&batch.events);
}

static const struct {
    const char *name;
    void (*fn)(void);
} regressions[] = {
    {"uuid_order_after_counter_overflow", uuid_order_after_counter_overflow},
    {"config_duplicate_key_says_allowed", config_duplicate_key_says_allowed},
    {"config_not_ini_line_says_allowed", config_not_ini_line_says_allowed},
    {"config_long_lines", config_long_lines},
    {"config_api_key_file_of_1023_bytes", config_api_key_file_of_1023_bytes},
    {"scan_empty_container_33_deep", scan_empty_container_33_deep},
    {"batch_destroy_counts_empty_batch", batch_destroy_counts_empty_batch},
    {"props_lone_surrogate_refused", props_lone_surrogate_refused},
    {"registry_long_lines", registry_long_lines},
    {"forward_float_time_last_second_of_9999", forward_float_time_last_second_of_9999},
    {"float32_shortest_text", float32_shortest_text},
    {"ext_timestamp_before_1970_is_iso8601", ext_timestamp_before_1970_is_iso8601},
    {"body_sent_at_clock_out_of_range", body_sent_at_clock_out_of_range},
};

int main(int argc, char **argv)
{
    int ran = 0;
    for (size_t i = 0; i < sizeof regressions / sizeof regressions[0]; i++) {
        if (argc > 1 && strcmp(argv[1], regressions[i].name) != 0)
            continue;
        check_test_ = regressions[i].name;
        check_context(NULL);
        int before = check_failures_;
        regressions[i].fn();
        printf("%-4s %s\n", check_failures_ == before ? "ok" : "FAIL", regressions[i].name);
        fflush(stdout);
        ran++;
    }
    if (ran == 0) {
        fprintf(stderr, "no regression named '%s'\n", argc > 1 ? argv[1] : "");
        return 2;
    }
    return check_finish();
}
