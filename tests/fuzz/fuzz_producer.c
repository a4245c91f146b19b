/*
 * Fuzz target: bytes a producer writes on its connection, all the way to
 * the JSON batch the backend would get. The bytes go through the same
 * stream framing, pipeline (native events and Fluent Forward messages,
 * validation, enrichment, the default [privacy] rules plus a hash key and a
 * regular expression, agent.tag_peer) and batcher as on a real connection,
 * split in two writes at a place the input chooses. Each sealed batch must
 * be valid JSON with no repeated key, the acknowledgements must be msgpack,
 * and every byte charged to the buffer must be released.
 */
#include "conn.h"
#include "harness.h"
#include "stream.h"

#include <msgpack.h>
#include <stdint.h>
#include <stdlib.h>

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
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
