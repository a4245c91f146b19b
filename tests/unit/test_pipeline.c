/*
 * pipeline_handle + conn_reply_ack on real objects, with a real batcher:
 * the acknowledgement each message calls for (decoded with msgpack-c and
 * checked exactly), what lands in the batch, and the counters, which must
 * always add up: received = buffered + delivered + dropped.
 */
#include "account.h"
#include "batch.h"
#include "check.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "metrics.h"
#include "mp.h"
#include "pack.h"
#include "pipeline.h"
#include "support.h"

#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

/* 2023-11-14T22:13:20Z */
#define T_SECS INT64_C(1700000000)
#define MAX_SEALED 8

static struct mp m, pe;

struct fixture {
    struct config cfg;
    struct event_base *base;
    struct budget budget;
    struct batcher b;
    struct pipeline p;
    struct batch *sealed[MAX_SEALED];
    int nsealed;
    struct buf replies;
};

static void on_sealed(struct batch *batch, void *arg)
{
    struct fixture *f = arg;
    if (!CHECK_LT(f->nsealed, MAX_SEALED))
        exit(1);
    f->sealed[f->nsealed++] = batch;
}

/* The default configuration with forward.tag_prefix "app.", a batcher that
 * never seals on its own, a pipeline, and the counters zeroed. */
static int fixture_init(struct fixture *f, size_t buffer_max_bytes, size_t max_event_bytes)
{
    char err[CONFIG_ERR_LEN];
    char *env[] = {"TELEMETRY_AGENT_FORWARD_TAG_PREFIX=app.",
                   "TELEMETRY_AGENT_BUFFER_OVERFLOW=drop_newest", NULL};
    memset(f, 0, sizeof *f);
    account_reset();
    metrics_reset();
    budget_init(&f->budget, buffer_max_bytes);
    if (!CHECK_EQ_INT(config_load(&f->cfg, NULL, env, err, sizeof err), 0)) {
        fprintf(stderr, "    %s\n", err);
        return 0;
    }
    struct batch_limits limits = {
        .max_events = 1000,
        .max_body_bytes = 1 << 20,
        .envelope_bytes = 100,
        .max_age_ms = 3600000,
        .max_event_bytes = max_event_bytes,
        .drop_when_full = f->cfg.buffer_overflow == OVERFLOW_DROP_NEWEST,
    };
    f->base = event_base_new();
    return CHECK(f->base != NULL) &&
           CHECK_EQ_INT(batcher_init(&f->b, f->base, &limits, &f->budget, on_sealed, f), 0) &&
           CHECK_EQ_INT(pipeline_init(&f->p, &f->cfg, NULL, &f->b, NULL), 0);
}

static void fixture_destroy(struct fixture *f)
{
    for (int i = 0; i < f->nsealed; i++)
        batch_done(f->sealed[i], &f->budget, 1, DROP_SHUTDOWN);
    pipeline_destroy(&f->p);
    batcher_destroy(&f->b);
    event_base_free(f->base);
    config_free(&f->cfg);
    buf_free(&f->replies);
}

/* received = buffered + delivered + dropped, and received is `want`. */
static void check_counters(uint64_t want_received)
{
    CHECK_EQ_UINT(account_received_total(), want_received);
    CHECK(account_balanced());
}

/* Handle obj and write its acknowledgement to a fresh reply buffer. CHECK
 * the reply: none when chunk is NULL, else exactly {"ack": chunk} or, when
 * rejected > 0, {"ack": chunk, "rejected": rejected, "reason": reason}. */
static void check_reply(struct fixture *f, const msgpack_object *obj, const char *chunk,
                        uint32_t rejected, const char *reason)
{
    struct pipeline_result res;
    uint64_t acks = metrics_get(METRIC_ACKS_SENT);
    buf_rollback(&f->replies, 0);
    pipeline_handle(&f->p, obj, "test", NULL, &res);
    int rc = conn_reply_ack(&res, &f->replies);
    if (chunk == NULL) {
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_UINT(f->replies.len, 0);
        CHECK_EQ_UINT(metrics_get(METRIC_ACKS_SENT), acks);
        return;
    }
    CHECK_EQ_UINT(metrics_get(METRIC_ACKS_SENT), acks + 1);
    if (!CHECK_EQ_INT(rc, 1))
        return;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    if (CHECK_EQ_INT(msgpack_unpack_next(&up, f->replies.data, f->replies.len, &off),
                     MSGPACK_UNPACK_SUCCESS) &&
        CHECK_EQ_UINT(off, f->replies.len) && CHECK(up.data.type == MSGPACK_OBJECT_MAP) &&
        CHECK_EQ_UINT(up.data.via.map.size, rejected > 0 ? 3 : 1)) {
        const msgpack_object_kv *kv = up.data.via.map.ptr;
        CHECK(decode_str_is(&kv[0].key, "ack"));
        CHECK(decode_str_is(&kv[0].val, chunk));
        if (rejected > 0) {
            CHECK(decode_str_is(&kv[1].key, "rejected"));
            if (CHECK(kv[1].val.type == MSGPACK_OBJECT_POSITIVE_INTEGER))
                CHECK_EQ_UINT(kv[1].val.via.u64, rejected);
            CHECK(decode_str_is(&kv[2].key, "reason"));
            if (CHECK(kv[2].val.type == MSGPACK_OBJECT_STR))
                CHECK_MEM_EQ(kv[2].val.via.str.ptr, kv[2].val.via.str.size, reason,
                             strlen(reason));
        }
    }
    msgpack_unpacked_destroy(&up);
}

/* The names of the events in the open batch, comma-separated. */
static void check_batch_names(struct fixture *f, const char *want)
{
    char names[512] = "";
    struct buf text = BUF_INIT;
    buf_append_char(&text, '[');
    if (f->b.open != NULL)
        buf_append(&text, f->b.open->events.data, f->b.open->events.len);
    buf_append_char(&text, ']');
    json_t *array = js_parse_buf(&text);
    buf_free(&text);
    if (CHECK(json_is_array(array)))
        for (size_t i = 0; i < json_array_size(array); i++) {
            const char *name =
                json_string_value(json_object_get(json_array_get(array, i), "event"));
            size_t n = strlen(names);
            snprintf(names + n, sizeof names - n, "%s%s", n ? "," : "", name ? name : "?");
        }
    json_decref(array);
    CHECK_STR_EQ(names, want);
}

static void test_native(void)
{
    struct fixture f;
    if (!fixture_init(&f, 1 << 20, 32768))
        return;
    check_reply(&f, mp_build(&m, "{s:s, s:s}", "event", "page_view", "chunk", "n1"), "n1", 0, NULL);
    check_counters(1);
    /* chunk first, and a chunk of 64 bytes */
    char chunk[WIRE_CHUNK_MAX + 1];
    memset(chunk, 'c', WIRE_CHUNK_MAX);
    chunk[WIRE_CHUNK_MAX] = '\0';
    check_reply(&f, mp_build(&m, "{s:s, s:s, s:{s:i}}", "chunk", chunk, "event", "signup",
                             "properties", "k", 1), chunk, 0, NULL);
    check_counters(2);
    /* refused: acknowledged, with the reason */
    check_reply(&f, mp_build(&m, "{s:s, s:s, s:i}", "event", "e", "chunk", "n2", "colour", 1), "n2",
                1, "unknown_key");
    check_reply(&f, mp_build(&m, "{s:s, s:i}", "chunk", "n3", "event", 5), "n3", 1, "bad_event");
    check_reply(&f, mp_build(&m, "{s:s, s:s}", "chunk", "n4", "timestamp", "soon"), "n4", 1,
                "missing_event");
    check_counters(5);
    /* no chunk, or one that cannot be echoed: nothing written */
    check_reply(&f, mp_build(&m, "{s:s}", "event", "quiet"), NULL, 0, NULL);
    check_reply(&f, mp_build(&m, "{s:s, s:i}", "event", "quiet", "colour", 1), NULL, 0, NULL);
    check_reply(&f, mp_build(&m, "{s:s, s:i}", "event", "e", "chunk", 7), NULL, 0, NULL);
    check_reply(&f, mp_build(&m, "{s:s, s:s}", "event", "e", "chunk", ""), NULL, 0, NULL);
    check_reply(&f, mp_build(&m, "[i]", 1), NULL, 0, NULL); /* an array, not Forward */
    check_reply(&f, mp_build(&m, "s", "text"), NULL, 0, NULL);
    check_counters(11);
    CHECK_EQ_UINT(account_now()->buffered, 3);
    CHECK_EQ_UINT(account_now()->dropped[DROP_UNKNOWN_KEY], 2);
    CHECK_EQ_UINT(account_now()->dropped[DROP_BAD_CHUNK], 2);
    CHECK_EQ_UINT(account_now()->dropped[DROP_BAD_FORWARD], 1);
    CHECK_EQ_UINT(account_now()->dropped[DROP_UNSUPPORTED_SHAPE], 1);
    CHECK_EQ_UINT(metrics_get(METRIC_ACKS_SENT), 5);
    check_batch_names(&f, "page_view,signup,quiet");
    fixture_destroy(&f);
}

static void test_forward(void)
{
    struct fixture f;
    if (!fixture_init(&f, 1 << 20, 32768))
        return;
    check_reply(&f, mp_build(&m, "[s, I, {s:i}, {s:s}]", "app.view", T_SECS, "k", 1, "chunk", "m1"),
                "m1", 0, NULL);
    check_counters(1);
    /* two good entries and three bad: the first bad one names the reason */
    check_reply(&f,
                mp_build(&m, "[s, [[I, {}], [I, []], [i, {}], [I, {s:s}], i], {s:s}]", "app.mixed",
                         T_SECS, T_SECS, -1, T_SECS, "event", "named", 3, "chunk", "f1"),
                "f1", 3, "bad_properties");
    check_counters(6);
    CHECK_EQ_UINT(account_now()->dropped[DROP_BAD_PROPERTIES], 1);
    CHECK_EQ_UINT(account_now()->dropped[DROP_BAD_TIMESTAMP], 1);
    CHECK_EQ_UINT(account_now()->dropped[DROP_BAD_FORWARD], 1);
    /* all accepted, packed */
    mp_reset(&pe);
    for (int i = 0; i < 3; i++)
        mp_pack(&pe, "[I, {s:i}]", T_SECS + i, "i", i);
    check_reply(&f, mp_build(&m, "[s, x, {s:s}]", "app.packed", pe.sbuf.data, pe.sbuf.size, "chunk",
                             "p1"),
                "p1", 0, NULL);
    check_counters(9);
    /* cut short after two entries: they count, the rest is one rejection */
    check_reply(&f, mp_build(&m, "[s, x, {s:s}]", "app.cut", pe.sbuf.data, pe.sbuf.size - 1,
                             "chunk", "p2"),
                "p2", 1, "bad_forward");
    check_counters(12);
    /* refused as a whole, but the chunk is known: acknowledged */
    check_reply(&f, mp_build(&m, "[s, x, {s:s, s:s}]", "app.z", pe.sbuf.data, pe.sbuf.size,
                             "compressed", "zstd", "chunk", "z1"),
                "z1", 1, "bad_forward");
    check_counters(13);
    /* no chunk, a bad chunk, a malformed message: nothing */
    check_reply(&f, mp_build(&m, "[s, I, {}]", "app.quiet", T_SECS), NULL, 0, NULL);
    check_reply(&f, mp_build(&m, "[s, I, {}, {s:i}]", "app.x", T_SECS, "chunk", 1), NULL, 0, NULL);
    check_reply(&f, mp_build(&m, "[s, I]", "app.x", T_SECS), NULL, 0, NULL);
    check_reply(&f, mp_build(&m, "[s, [], {s:s}]", "app.x", "chunk", "e1"), "e1", 0, NULL);
    check_counters(16);
    CHECK_EQ_UINT(account_now()->dropped[DROP_BAD_CHUNK], 1);
    CHECK_EQ_UINT(account_now()->buffered, 9);
    CHECK_EQ_UINT(account_now()->dropped[DROP_BAD_FORWARD], 4);
    check_batch_names(&f, "view,mixed,named,packed,packed,packed,cut,cut,quiet");
    fixture_destroy(&f);
}

/* A Forward heartbeat is not an event: not counted, never answered. */
static void test_heartbeat(void)
{
    struct fixture f;
    if (!fixture_init(&f, 1 << 20, 32768))
        return;
    check_reply(&f, mp_build(&m, "n"), NULL, 0, NULL);
    check_reply(&f, mp_build(&m, "n"), NULL, 0, NULL);
    CHECK_EQ_UINT(metrics_get(METRIC_HEARTBEATS), 2);
    check_counters(0);
    fixture_destroy(&f);
}

/* With buffer.overflow = drop_newest and the buffer full, a native event
 * is answered {"deferred": chunk, "reason": "buffer_full"} (its producer
 * resends soon); a Forward message gets no reply at all, even when some
 * other entry was rejected for good (a Fluent client resends it whole). */
static void test_buffer_full(void)
{
    struct fixture f;
    if (!fixture_init(&f, 64, 32768)) /* no event fits */
        return;
    struct pipeline_result res;
    buf_rollback(&f.replies, 0);
    pipeline_handle(&f.p, mp_build(&m, "{s:s, s:s}", "event", "e", "chunk", "b1"), "test", NULL,
                    &res);
    CHECK_EQ_INT(conn_reply_ack(&res, &f.replies), 1);
    struct buf want = BUF_INIT;
    pack_map(&want, 2);
    pack_cstr(&want, "deferred");
    pack_cstr(&want, "b1");
    pack_cstr(&want, "reason");
    pack_cstr(&want, "buffer_full");
    CHECK_MEM_EQ(f.replies.data, f.replies.len, want.data, want.len);
    buf_free(&want);
    CHECK_EQ_UINT(metrics_get(METRIC_ACKS_SENT), 0);
    check_counters(1);
    CHECK_EQ_UINT(account_now()->dropped[DROP_BUFFER_FULL], 1);
    check_reply(&f, mp_build(&m, "[s, [[I, n], [I, {}]], {s:s}]", "app.e", T_SECS, T_SECS, "chunk",
                             "b2"),
                NULL, 0, NULL);
    check_counters(3);
    CHECK_EQ_UINT(account_now()->dropped[DROP_BUFFER_FULL], 2);
    CHECK_EQ_UINT(account_now()->dropped[DROP_BAD_PROPERTIES], 1);
    /* a refusal alone is still acknowledged */
    check_reply(&f, mp_build(&m, "{s:s, s:i}", "chunk", "b3", "event", 1), "b3", 1, "bad_event");
    check_counters(4);
    CHECK_EQ_UINT(account_now()->buffered, 0);
    fixture_destroy(&f);
}

/* An event over events.max_event_bytes is rejected for good. */
static void test_event_too_large(void)
{
    struct fixture f;
    if (!fixture_init(&f, 1 << 20, 300))
        return;
    char text[400];
    memset(text, 'x', sizeof text);
    check_reply(&f, mp_build(&m, "{s:s, s:s, s:{s:S}}", "event", "e", "chunk", "t1", "properties",
                             "text", text, sizeof text),
                "t1", 1, "too_large");
    check_reply(&f, mp_build(&m, "[s, [[I, {s:S}], [I, {}]], {s:s}]", "app.e", T_SECS, "text", text,
                             sizeof text, T_SECS, "chunk", "t2"),
                "t2", 1, "too_large");
    check_counters(3);
    CHECK_EQ_UINT(account_now()->dropped[DROP_TOO_LARGE], 2);
    CHECK_EQ_UINT(account_now()->buffered, 1);
    fixture_destroy(&f);
}

/* agent.enabled = false: events are accepted and discarded, and counted. */
static void test_disabled(void)
{
    struct fixture f;
    if (!fixture_init(&f, 1 << 20, 32768))
        return;
    f.cfg.enabled = 0;
    check_reply(&f, mp_build(&m, "{s:s, s:s}", "event", "e", "chunk", "d1"), "d1", 0, NULL);
    check_reply(&f, mp_build(&m, "[s, [[I, {}], [I, n]], {s:s}]", "app.e", T_SECS, T_SECS, "chunk",
                             "d2"),
                "d2", 1, "bad_properties");
    check_counters(3);
    CHECK_EQ_UINT(account_now()->dropped[DROP_DISABLED], 2);
    CHECK_EQ_UINT(account_now()->buffered, 0);
    fixture_destroy(&f);
}

/* Replies to several messages follow each other in the buffer, in order. */
static void test_replies_in_order(void)
{
    struct fixture f;
    if (!fixture_init(&f, 1 << 20, 32768))
        return;
    struct pipeline_result res;
    static const char *const chunks[] = {"r1", NULL, "r3", "r4"};
    for (int i = 0; i < 4; i++) {
        if (chunks[i] != NULL)
            mp_build(&m, "{s:s, s:s}", "event", i == 2 ? "" : "e", "chunk", chunks[i]);
        else
            mp_build(&m, "{s:s}", "event", "e");
        pipeline_handle(&f.p, mp_unpack(&m), "test", NULL, &res);
        CHECK_EQ_INT(conn_reply_ack(&res, &f.replies), chunks[i] != NULL);
    }
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        if (chunks[i] == NULL)
            continue;
        check_context("reply to message %d", i + 1);
        if (CHECK_EQ_INT(msgpack_unpack_next(&up, f.replies.data, f.replies.len, &off),
                         MSGPACK_UNPACK_SUCCESS) &&
            CHECK(up.data.type == MSGPACK_OBJECT_MAP))
            CHECK(decode_str_is(&up.data.via.map.ptr[0].val, chunks[i]));
        CHECK_EQ_UINT(up.data.via.map.size, i == 2 ? 3 : 1);
    }
    check_context(NULL);
    CHECK_EQ_UINT(off, f.replies.len);
    msgpack_unpacked_destroy(&up);
    check_counters(4);
    fixture_destroy(&f);
}

int main(void)
{
    log_set_level(LOG_ERROR); /* the refusals are meant */
    mp_init(&m);
    mp_init(&pe);
    RUN(test_native);
    RUN(test_forward);
    RUN(test_heartbeat);
    RUN(test_buffer_full);
    RUN(test_event_too_large);
    RUN(test_disabled);
    RUN(test_replies_in_order);
    mp_free(&pe);
    mp_free(&m);
    return check_finish();
}
