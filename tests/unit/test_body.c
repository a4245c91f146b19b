/*
 * body: the request body of a batch, plain and gzipped. Gunzipped, a
 * gzipped body is byte for byte the plain one, for a batch of one small
 * event, of many, and of events that compress badly, and it is valid JSON
 * with the batch's events, the API key and sent_at. A plain body borrows
 * the batch's events, and reads the same in pieces of any size from any
 * place as made whole.
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
        struct body plain_body = BODY_INIT, gzip_body = BODY_INIT;
        struct buf *want = &plain_body.own, *got = &gzip_body.own;
        int64_t now_ms = INT64_C(1764756000123);
        if (CHECK_EQ_INT(body_build(plain, &batch, now_ms, &plain_body), 0) &&
            CHECK_EQ_INT(body_build(gzip, &batch, now_ms, &gzip_body), 0) &&
            CHECK(gzip_body.events == NULL) && CHECK_EQ_INT(body_flatten(&plain_body), 0)) {
            CHECK_EQ_UINT(body_last_plain_bytes(gzip), want->len);
            if (cases[c].events > 1)
                CHECK_LT(got->len, want->len);
            char *unzipped = malloc(want->len + 1);
            size_t unzipped_len = 0;
            if (CHECK(unzipped != NULL) &&
                CHECK_EQ_INT(libdeflate_gzip_decompress(inflater, got->data, got->len, unzipped,
                                                        want->len + 1, &unzipped_len),
                             LIBDEFLATE_SUCCESS) &&
                CHECK_EQ_UINT(unzipped_len, want->len))
                CHECK(memcmp(unzipped, want->data, want->len) == 0);
            free(unzipped);
            json_t *v = js_parse_buf(want);
            CHECK_EQ_UINT(json_array_size(json_object_get(v, "batch")), (size_t)cases[c].events);
            CHECK_STR_EQ(json_string_value(json_object_get(v, "sent_at")),
                         "2025-12-03T10:00:00.123Z");
            CHECK_STR_EQ(json_string_value(json_object_get(v, "api_key")), "key");
            json_decref(v);
        }
        body_free(&plain_body);
        body_free(&gzip_body);
        buf_free(&batch.events);
    }
    check_context(NULL);
    body_format_free(plain);
    body_format_free(gzip);
    libdeflate_free_decompressor(inflater);
}

static void test_a_plain_body_reads_in_pieces(void)
{
    struct body_format *f = body_format_new("key", 0);
    struct batch batch = {0};
    fill_batch(&batch, 40, 1);
    struct body body = BODY_INIT, whole = BODY_INIT;
    int64_t now_ms = INT64_C(1764756000123);
    if (!CHECK(f != NULL) || !CHECK_EQ_INT(body_build(f, &batch, now_ms, &body), 0) ||
        !CHECK_EQ_INT(body_build(f, &batch, now_ms, &whole), 0) ||
        !CHECK_EQ_INT(body_flatten(&whole), 0))
        goto done;
    /* the events are the batch's own, not a copy */
    CHECK(body.events == batch.events.data);
    CHECK_LT(body.own.len, 100);
    CHECK_EQ_UINT(body_len(&body), whole.own.len);
    CHECK_EQ_UINT(body_len(&body), body.own.len + batch.events.len);
    static const size_t pieces[] = {1, 7, 64, 1000, 1 << 20};
    char *read = malloc(whole.own.len + 1);
    for (size_t k = 0; read != NULL && k < sizeof pieces / sizeof pieces[0]; k++) {
        for (size_t from = 0; from < 70; from += 23) { /* in the head, the events */
            check_context("pieces of %zu from %zu", pieces[k], from);
            size_t at = from, n;
            while ((n = body_read(&body, at, read + at - from, pieces[k])) > 0)
                at += n;
            CHECK_EQ_UINT(at, whole.own.len);
            CHECK(memcmp(read, whole.own.data + from, whole.own.len - from) == 0);
        }
    }
    check_context(NULL);
    CHECK(read != NULL);
    free(read);
done:
    body_free(&body);
    body_free(&whole);
    buf_free(&batch.events);
    body_format_free(f);
}

int main(void)
{
    RUN(test_gzip_is_the_plain_body);
    RUN(test_a_plain_body_reads_in_pieces);
    return check_finish();
}
