/*
 * body: the request body of a batch, plain and gzipped. Gunzipped, a
 * gzipped body is byte for byte the plain one, for a batch of one small
 * event, of many, and of events that compress badly, and it is valid JSON
 * with the batch's events, the API key and sent_at.
 */
#include "body.h"
#include "check.h"
#include "support.h"

#include <libdeflate.h>
#include <stdlib.h>
#include <string.h>

/* A batch of n events; with noise, each carries random characters that
 * deflate cannot shrink much. */
static void fill_batch(struct batch *batch, int n, int noise)
{
    srand(11);
    batch->count = (uint32_t)n;
    for (int i = 0; i < n; i++) {
        if (i > 0)
            buf_append_char(&batch->events, ',');
        buf_append_str(&batch->events, "{\"event\":\"e\",\"properties\":{\"i\":");
        char num[32];
        snprintf(num, sizeof num, "%d,\"s\":\"", i);
        buf_append_str(&batch->events, num);
        for (int k = 0; noise && k < 200; k++)
            buf_append_char(&batch->events, (char)('a' + rand() % 26));
        buf_append_str(&batch->events, "\"}}");
    }
}

static void test_gzip_is_the_plain_body(void)
{
    static const struct {
        int events, noise;
    } cases[] = {{1, 0}, {500, 0}, {2000, 1}};
    struct libdeflate_decompressor *inflater = libdeflate_alloc_decompressor();
    struct body_format *plain = body_format_new("key", 0), *gzip = body_format_new("key", 1);
    if (!CHECK(inflater != NULL && plain != NULL && gzip != NULL))
        return;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        check_context("%d events, noise %d", cases[c].events, cases[c].noise);
        struct batch batch = {0};
        fill_batch(&batch, cases[c].events, cases[c].noise);
        struct buf want = BUF_INIT, got = BUF_INIT;
        int64_t now_ms = INT64_C(1764756000123);
        if (CHECK_EQ_INT(body_build(plain, &batch, now_ms, &want), 0) &&
            CHECK_EQ_INT(body_build(gzip, &batch, now_ms, &got), 0)) {
            CHECK_EQ_UINT(body_last_plain_bytes(gzip), want.len);
            if (cases[c].events > 1)
                CHECK_LT(got.len, want.len);
            char *unzipped = malloc(want.len + 1);
            size_t unzipped_len = 0;
            if (CHECK(unzipped != NULL) &&
                CHECK_EQ_INT(libdeflate_gzip_decompress(inflater, got.data, got.len, unzipped,
                                                        want.len + 1, &unzipped_len),
                             LIBDEFLATE_SUCCESS) &&
                CHECK_EQ_UINT(unzipped_len, want.len))
                CHECK(memcmp(unzipped, want.data, want.len) == 0);
            free(unzipped);
            json_t *v = js_parse_buf(&want);
            CHECK_EQ_UINT(json_array_size(json_object_get(v, "batch")), (size_t)cases[c].events);
            CHECK_STR_EQ(json_string_value(json_object_get(v, "sent_at")),
                         "2025-12-03T10:00:00.123Z");
            CHECK_STR_EQ(json_string_value(json_object_get(v, "api_key")), "key");
            json_decref(v);
        }
        buf_free(&want);
        buf_free(&got);
        buf_free(&batch.events);
    }
    check_context(NULL);
    body_format_free(plain);
    body_format_free(gzip);
    libdeflate_free_decompressor(inflater);
}

int main(void)
{
    RUN(test_gzip_is_the_plain_body);
    return check_finish();
}
