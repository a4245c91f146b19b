/*
 * Fuzz target: bytes a producer writes on its connection, all the way to
 * the JSON batch the backend would get. The bytes go through the same
 * stream framing, pipeline (native events and Fluent Forward messages,
 * validation, enrichment, the default [privacy] rules plus a hash key and a
 * regular expression, agent.tag_peer) and batcher as on a real connection,
 * split in two writes at a place the input chooses. Each sealed batch must
 * be valid JSON with no repeated key, the acknowledgements must be msgpack,
 * and every byte charged to the buffer must be released. The stream's own
 * one-pass builder must also build every whole object exactly as msgpack-c's
 * unpacker does, and nothing else.
 */
#include "conn.h"
#include "harness.h"
#include "stream.h"

#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static struct harness h;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char *env[] = {"TELEMETRY_AGENT_EVENTS_REGISTRY=",
                   "TELEMETRY_AGENT_AGENT_TAG_PEER=true",
                   "TELEMETRY_AGENT_PRIVACY_HASH_KEYS=user_*",
                   "TELEMETRY_AGENT_PRIVACY_HASH_KEY=a-key-of-sixteen-bytes",
                   "TELEMETRY_AGENT_PRIVACY_REDACT_REGEX=sk-[a-z0-9]{4,}",
                   "TELEMETRY_AGENT_BATCH_MAX_EVENTS=7", NULL};
    harness_init(&h, env);
    return 0;
}

/* msgpack_object_equal, except that a float is compared by its bits (NaN
 * is not equal to itself). */
static int same_tree(const msgpack_object *a, const msgpack_object *b)
{
    if (a->type != b->type)
        return 0;
    switch (a->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return memcmp(&a->via.f64, &b->via.f64, sizeof a->via.f64) == 0;
    case MSGPACK_OBJECT_ARRAY:
        if (a->via.array.size != b->via.array.size)
            return 0;
        for (uint32_t i = 0; i < a->via.array.size; i++)
            if (!same_tree(&a->via.array.ptr[i], &b->via.array.ptr[i]))
                return 0;
        return 1;
    case MSGPACK_OBJECT_MAP:
        if (a->via.map.size != b->via.map.size)
            return 0;
        for (uint32_t i = 0; i < a->via.map.size; i++)
            if (!same_tree(&a->via.map.ptr[i].key, &b->via.map.ptr[i].key) ||
                !same_tree(&a->via.map.ptr[i].val, &b->via.map.ptr[i].val))
                return 0;
        return 1;
    default:
        return msgpack_object_equal(*a, *b);
    }
}

/* The first object of the input, built by stream_unpack and by msgpack-c:
 * when the scanner finds it whole, both must build the same tree of the
 * same length; when not, stream_unpack must not build one. */
static void check_against_msgpack_c(const uint8_t *data, size_t size)
{
    size_t whole = 0, built_len = 0;
    enum scan_status scanned = scan_object(data, size, &whole);
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 1024))
        abort();
    msgpack_object built;
    enum stream_status st = stream_unpack(data, size, &zone, &built, &built_len);
    if (scanned != SCAN_COMPLETE) {
        if (st == STREAM_OBJECT)
            abort(); /* built what the scanner says is not a whole object */
        msgpack_zone_destroy(&zone);
        return;
    }
    msgpack_unpacked want;
    msgpack_unpacked_init(&want);
    size_t off = 0;
    if (st != STREAM_OBJECT || built_len != whole ||
        msgpack_unpack_next(&want, (const char *)data, size, &off) != MSGPACK_UNPACK_SUCCESS ||
        off != whole || !same_tree(&built, &want.data))
        abort();
    msgpack_unpacked_destroy(&want);
    msgpack_zone_destroy(&zone);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check_against_msgpack_c(data, size);
    static const char tags[] = "\"$peer_uid\":1000,\"$peer_gid\":1000,\"$peer_comm\":\"fuzz\"";
    struct stream in;
    if (stream_init(&in, 64, (size_t)h.cfg.max_message_bytes) < 0)
        abort();
    size_t split = size > 0 ? data[0] % (size + 1) : 0;
    struct buf acks = BUF_INIT;
    for (int part = 0; part < 2; part++) {
        const uint8_t *p = part == 0 ? data : data + split;
        size_t n = part == 0 ? split : size - split;
        if (stream_append(&in, p, n) < 0)
            break;
        msgpack_object obj;
        enum stream_status st;
        while ((st = stream_next(&in, &obj)) == STREAM_OBJECT) {
            struct pipeline_result res;
            pipeline_handle(&h.pipeline, &obj, "fuzz", tags, &res);
            conn_reply_ack(&res, &acks);
        }
        if (st != STREAM_NEED_MORE)
            break; /* the connection would be closed here */
    }
    harness_settle(&h); /* every batch checked */
    size_t off = 0;
    msgpack_unpacked reply;
    msgpack_unpacked_init(&reply);
    while (off < acks.len)
        if (msgpack_unpack_next(&reply, acks.data, acks.len, &off) != MSGPACK_UNPACK_SUCCESS)
            abort(); /* an acknowledgement a client could not read */
    msgpack_unpacked_destroy(&reply);
    buf_free(&acks);
    stream_destroy(&in);
    return 0;
}
