/*
 * sender: the backend's health and the order of batches, against a fake
 * transport whose answers the test gives one by one: a 413 split whose
 * halves fail in reverse order, probing after a backoff, requests that time
 * out together, the budget returning to zero, and the counters of failed
 * requests (by the class of their answer) and of batches put back.
 */
#include "account.h"
#include "batch.h"
#include "body.h"
#include "check.h"
#include "config.h"
#include "metrics.h"
#include "sender.h"
#include "support.h"

#include <stdlib.h>
#include <string.h>

#define MAX_POSTS 32

/* One request the sender posted, waiting for the test's answer. */
struct post {
    transport_done_fn done;
    void *arg;
    long timeout_ms;
    int ids[8]; /* the "i" of its events */
    char api_key[32];
    int count;
    int answered;
};

struct fake_transport {
    struct transport base;
    struct post posts[MAX_POSTS];
    int nposts;
    int retargets;
};

static int fake_post(struct transport *t, struct body *body, long timeout_ms,
                     transport_done_fn done, void *arg)
{
    struct fake_transport *f = (struct fake_transport *)t;
    if (!CHECK_LT(f->nposts, MAX_POSTS))
        exit(1);
    struct post *p = &f->posts[f->nposts++];
    *p = (struct post){.done = done, .arg = arg, .timeout_ms = timeout_ms};
    if (!CHECK_EQ_INT(body_flatten(body), 0))
        exit(1);
    json_t *root = js_parse_buf(&body->own);
    json_t *batch = json_object_get(root, "batch");
    const char *key = json_string_value(json_object_get(root, "api_key"));
    snprintf(p->api_key, sizeof p->api_key, "%s", key ? key : "");
    for (size_t k = 0; k < json_array_size(batch) && k < 8; k++)
        p->ids[p->count++] = (int)json_integer_value(json_object_get(json_array_get(batch, k), "i"));
    json_decref(root);
    body_free(body);
    return 0;
}

static void fake_free(struct transport *t)
{
    (void)t; /* owned by the test */
}

static int fake_retarget(struct transport *t, const struct config *cfg)
{
    (void)cfg;
    ((struct fake_transport *)t)->retargets++;
    return 0;
}

static const struct transport_ops fake_ops = {fake_post, fake_retarget, fake_free};

struct fixture {
    struct config cfg;
    struct event_base *base;
    struct budget budget;
    struct batcher batcher;
    struct sender *sender;
    struct fake_transport transport;
    int next_id;
};

static int fixture_init(struct fixture *f, char **env)
{
    memset(f, 0, sizeof *f);
    if (!CHECK(fresh_config(&f->cfg, env)))
        return 0;
    budget_init(&f->budget, 1 << 20);
    f->base = event_base_new();
    f->transport.base.ops = &fake_ops;
    f->sender = sender_new(f->base, &f->cfg, &f->budget, &f->transport.base,
                           body_format_new(NULL, 0));
    struct batch_limits limits = {.max_events = 4, .max_body_bytes = 1 << 20,
                                  .envelope_bytes = 100, .max_age_ms = 3600000,
                                  .max_event_bytes = 1000};
    f->next_id = 1;
    return CHECK(f->sender != NULL) &&
           CHECK_EQ_INT(batcher_init(&f->batcher, f->base, &limits, &f->budget, sender_submit,
                                     f->sender), 0);
}

static void fixture_destroy(struct fixture *f)
{
    batcher_destroy(&f->batcher);
    sender_free(f->sender);
    event_base_free(f->base);
    config_free(&f->cfg);
}

/* n events {"i": next_id...}: with max_events 4, every 4th seals a batch. */
static void add_events(struct fixture *f, int n)
{
    for (int k = 0; k < n; k++) {
        size_t mark;
        struct buf *out = batcher_begin(&f->batcher, &mark);
        char text[32];
        snprintf(text, sizeof text, "{\"i\":%d}", f->next_id++);
        buf_append_str(out, text);
        account_received(SOURCE_NATIVE);
        CHECK_EQ_INT(batcher_commit(&f->batcher, mark), BATCH_ADDED);
    }
}

static void answer(struct fixture *f, int post, int ok, long status, int timed_out)
{
    struct post *p = &f->transport.posts[post];
    if (!CHECK(!p->answered))
        return;
    p->answered = 1;
    struct transport_result r = {.transport_ok = ok, .status = status, .timed_out = timed_out};
    if (!ok)
        snprintf(r.error, sizeof r.error, "%s", timed_out ? "timed out" : "refused");
    p->done(&r, p->arg);
}

static void check_post(struct fixture *f, int post, int first, int count)
{
    check_context("post %d", post);
    if (CHECK_LT(post, f->transport.nposts) &&
        CHECK_EQ_INT(f->transport.posts[post].count, count))
        for (int k = 0; k < count; k++)
            CHECK_EQ_INT(f->transport.posts[post].ids[k], first + k);
    check_context(NULL);
}

/* Let the backoff timer fire. */
static void wait_backoff(struct fixture *f)
{
    struct timeval tv = {0, 50 * 1000};
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
}

static char *quick_retries[] = {"TELEMETRY_AGENT_BACKEND_URL=http://127.0.0.1:9/batch",
                                "TELEMETRY_AGENT_API_KEY=k",
                                "TELEMETRY_AGENT_BACKEND_RETRY_INITIAL_MS=1",
                                "TELEMETRY_AGENT_BACKEND_RETRY_MAX_MS=2", NULL};

/* A 413 halves the batch; the halves then fail in reverse order and the
 * backend backs off: the probe sends the first half first, and once it
 * passes the rest follows in order. */
static void test_split_halves_keep_their_order(void)
{
    struct fixture f;
    if (!fixture_init(&f, quick_retries))
        return;
    add_events(&f, 8); /* batches 1-4 and 5-8, both posted */
    check_post(&f, 0, 1, 4);
    check_post(&f, 1, 5, 4);
    answer(&f, 0, 1, 413, 0);
    check_post(&f, 2, 1, 2); /* A */
    check_post(&f, 3, 3, 2); /* B */
    CHECK_EQ_UINT(metrics_get(METRIC_BATCHES_SPLIT), 1);
    answer(&f, 3, 1, 503, 0); /* B fails first: the backend backs off */
    answer(&f, 2, 1, 503, 0);
    answer(&f, 1, 1, 503, 0);
    CHECK_EQ_INT(f.transport.nposts, 4); /* nothing while backing off */
    wait_backoff(&f);
    CHECK_EQ_INT(f.transport.nposts, 5); /* one probe */
    check_post(&f, 4, 1, 2);
    answer(&f, 4, 1, 200, 0);
    CHECK_EQ_INT(f.transport.nposts, 7); /* up again: the rest, in order */
    check_post(&f, 5, 3, 2);
    check_post(&f, 6, 5, 4);
    answer(&f, 5, 1, 200, 0);
    answer(&f, 6, 1, 200, 0);
    CHECK_EQ_UINT(account_now()->delivered, 8);
    /* the 413 and the three 503s failed; only the 503s put a batch back */
    CHECK_EQ_UINT(metrics_get(METRIC_REQUESTS_FAILED), 4);
    CHECK_EQ_UINT(metrics_get(METRIC_FAILED_4XX), 1);
    CHECK_EQ_UINT(metrics_get(METRIC_FAILED_5XX), 3);
    CHECK_EQ_UINT(metrics_get(METRIC_FAILED_NONE), 0);
    CHECK_EQ_UINT(metrics_get(METRIC_BATCHES_RETRIED), 3);
    CHECK_EQ_UINT(metrics_get(METRIC_ANSWERS_2XX), 3);
    CHECK_EQ_UINT(sender_pending(f.sender), 0);
    CHECK_EQ_UINT(f.budget.used, 0);
    fixture_destroy(&f);
}

/* Requests that time out together double the timeout once, not once each. */
static void test_timeouts_together_double_once(void)
{
    char *env[] = {"TELEMETRY_AGENT_BACKEND_URL=http://127.0.0.1:9/batch", "TELEMETRY_AGENT_API_KEY=k",
                   "TELEMETRY_AGENT_BACKEND_RETRY_INITIAL_MS=1",
                   "TELEMETRY_AGENT_BACKEND_RETRY_MAX_MS=2",
                   "TELEMETRY_AGENT_BACKEND_TIMEOUT_MS=1000", NULL};
    struct fixture f;
    if (!fixture_init(&f, env))
        return;
    add_events(&f, 12);
    CHECK_EQ_INT(f.transport.nposts, 3);
    for (int k = 0; k < 3; k++)
        CHECK_EQ_INT(f.transport.posts[k].timeout_ms, 1000);
    for (int k = 0; k < 3; k++)
        answer(&f, k, 0, 0, 1);
    CHECK_EQ_UINT(metrics_get(METRIC_REQUESTS_TIMED_OUT), 3);
    CHECK_EQ_UINT(metrics_get(METRIC_FAILED_NONE), 3);
    CHECK_EQ_UINT(metrics_get(METRIC_BATCHES_RETRIED), 3);
    wait_backoff(&f);
    if (CHECK_EQ_INT(f.transport.nposts, 4))
        CHECK_EQ_INT(f.transport.posts[3].timeout_ms, 2000);
    check_post(&f, 3, 1, 4);
    answer(&f, 3, 1, 200, 0);
    for (int k = 4; k < f.transport.nposts; k++)
        answer(&f, k, 1, 200, 0);
    CHECK_EQ_UINT(account_now()->delivered, 12);
    CHECK_EQ_UINT(f.budget.used, 0);
    fixture_destroy(&f);
}

/* A reload while the backend is refused for a wrong key: the new key goes
 * out at once, with the batch that waited, not after
 * backend.misconfigured_retry_ms. */
static void test_reconfigure_ends_a_backoff(void)
{
    struct fixture f;
    if (!fixture_init(&f, quick_retries))
        return;
    add_events(&f, 4);
    answer(&f, 0, 1, 401, 0);
    wait_backoff(&f); /* misconfigured: 30 s, so nothing within the wait */
    CHECK_EQ_INT(f.transport.nposts, 1);
    CHECK_EQ_INT(sender_reconfigure(f.sender, body_format_new("new-key", 0)), 0);
    CHECK_EQ_INT(f.transport.retargets, 1);
    if (CHECK_EQ_INT(f.transport.nposts, 2))
        CHECK_STR_EQ(f.transport.posts[1].api_key, "new-key");
    check_post(&f, 1, 1, 4);
    answer(&f, 1, 1, 200, 0);
    CHECK_EQ_UINT(account_now()->delivered, 4);
    CHECK_EQ_UINT(f.budget.used, 0);
    fixture_destroy(&f);
}

int main(void)
{
    RUN(test_split_halves_keep_their_order);
    RUN(test_timeouts_together_double_once);
    RUN(test_reconfigure_ends_a_backoff);
    return check_finish();
}
