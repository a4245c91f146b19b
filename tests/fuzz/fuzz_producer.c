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
#include "account.h"
#include "batch.h"
#include "budget.h"
#include "config.h"
#include "conn.h"
#include "pipeline.h"
#include "stream.h"

#include <jansson.h>
#include <msgpack.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct event_base *base;
static struct config cfg;
static struct budget budget;
static struct batcher batcher;
static struct pipeline pipeline;

/* The sender's place: check the batch, then let it go as delivered. */
static void check_batch(struct batch *batch, void *arg)
{
    (void)arg;
    size_t len = batch->events.len + 2;
    char *text = malloc(len);
    if (text == NULL)
        abort();
    text[0] = '[';
    memcpy(text + 1, batch->events.data, batch->events.len);
    text[len - 1] = ']';
    json_error_t err;
    /* integers as reals: JSON has no bound on them, jansson's are 64-bit signed */
    json_t *root = json_loadb(text, len,
                              JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL,
                              &err);
    /* "\u0000" in a key is valid JSON that jansson cannot hold: not a fault */
    int jansson_limit = root == NULL && strstr(err.text, "NUL byte in object key") != NULL;
    if (!jansson_limit && (root == NULL || json_array_size(root) != batch->count)) {
        /* the agent would send the backend something broken */
        fprintf(stderr, "batch of %u events: %s\n%.*s\n", batch->count,
                root ? "a different number of events" : err.text, (int)len, text);
        abort();
    }
    json_decref(root);
    free(text);
    batch_done(batch, &budget, 1, 0);
}

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
    char err[CONFIG_ERR_LEN];
    log_set_level(LOG_ERROR);
    if (config_load(&cfg, NULL, env, err, sizeof err) < 0)
        abort();
    base = event_base_new();
    budget_init(&budget, (size_t)cfg.buffer_max_bytes);
    struct batch_limits limits = batch_limits_for(&cfg, 200, 0);
    if (base == NULL || batcher_init(&batcher, base, &limits, &budget, check_batch, NULL) < 0 ||
        pipeline_init(&pipeline, &cfg, NULL, &batcher, NULL) < 0)
        abort();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char tags[] = "\"$peer_uid\":1000,\"$peer_gid\":1000,\"$peer_comm\":\"fuzz\"";
    struct stream in;
    if (stream_init(&in, 64, (size_t)cfg.max_message_bytes) < 0)
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
            pipeline_handle(&pipeline, &obj, "fuzz", tags, &res);
            conn_reply_ack(&res, &acks);
        }
        if (st != STREAM_NEED_MORE)
            break; /* the connection would be closed here */
    }
    batcher_seal(&batcher);
    size_t off = 0;
    msgpack_unpacked reply;
    msgpack_unpacked_init(&reply);
    while (off < acks.len)
        if (msgpack_unpack_next(&reply, acks.data, acks.len, &off) != MSGPACK_UNPACK_SUCCESS)
            abort(); /* an acknowledgement a client could not read */
    msgpack_unpacked_destroy(&reply);
    buf_free(&acks);
    stream_destroy(&in);
    if (budget.used != 0)
        abort(); /* bytes charged and never released */
    return 0;
}
