/*
 * batcher: sealing on max_events, max_body_bytes and max_age_ms; rollback of
 * events that are too large or do not fit the buffer; the counters kept by
 * batch_done. Sealed batches go to a fake sender that keeps them.
 */
#include "account.h"
#include "batch.h"
#include "check.h"
#include "clock.h"
#include "metrics.h"
#include "support.h"

#include <stdlib.h>
#include <string.h>

#define MAX_SEALED 64

struct fixture {
    struct event_base *base;
    struct budget budget;
    struct batcher b;
    struct batch *sealed[MAX_SEALED]; /* not yet released */
    int64_t sealed_at_ms[MAX_SEALED];
    int nsealed;
};

static void on_sealed(struct batch *batch, void *arg)
{
    struct fixture *f = arg;
    if (!CHECK_LT(f->nsealed, MAX_SEALED))
        exit(1);
    f->sealed_at_ms[f->nsealed] = clock_monotonic_ms();
    f->sealed[f->nsealed++] = batch;
}

static const struct batch_limits roomy = {
    .max_events = 1000,
    .max_body_bytes = 1 << 20,
    .envelope_bytes = 50,
    .max_age_ms = 3600000,
    .max_event_bytes = 1000,
};

#define ROOMY_BUFFER (1 << 22)

/* A batcher on a fresh event base, with the counters zeroed. The base uses
 * the precise monotonic clock, so timers never fire before they are due. */
static int fixture_init(struct fixture *f, const struct batch_limits *limits,
                        size_t buffer_max_bytes)
{
    memset(f, 0, sizeof *f);
    account_reset();
    metrics_reset();
    budget_init(&f->budget, buffer_max_bytes);
    struct event_config *cfg = event_config_new();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
    f->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    return CHECK(f->base != NULL) &&
           CHECK_EQ_INT(batcher_init(&f->b, f->base, limits, &f->budget, on_sealed, f), 0);
}

/* Deliver whatever the fake sender still holds, then tear down. */
static void fixture_destroy(struct fixture *f)
{
    for (int i = 0; i < f->nsealed; i++)
        if (f->sealed[i] != NULL)
            batch_done(f->sealed[i], &f->budget, 1, DROP_SHUTDOWN);
    batcher_destroy(&f->b);
    event_base_free(f->base);
}

/* Encode event `id` as a JSON object of exactly `size` bytes (at least 16)
 * and commit it. */
static enum batch_add add_event(struct fixture *f, int id, size_t size)
{
    size_t mark;
    struct buf *out = batcher_begin(&f->b, &mark);
    if (!CHECK(out != NULL))
        exit(1);
    size_t start = out->len;
    char head[32];
    buf_append(out, head, (size_t)snprintf(head, sizeof head, "{\"i\":%d,\"p\":\"", id));
    while (out->len - start < size - 2)
        buf_append_char(out, 'x');
    buf_append_str(out, "\"}");
    return batcher_commit(&f->b, mark);
}

/* The "i" of every event in a batch, parsed with jansson as the JSON array
 * the sender would send. Returns how many, or -1 if it is not such an array. */
static int batch_ids(const struct batch *batch, int *ids, int max)
{
    struct buf text = BUF_INIT;
    buf_append_char(&text, '[');
    buf_append(&text, batch->events.data, batch->events.len);
    buf_append_char(&text, ']');
    json_t *array = js_parse_buf(&text);
    buf_free(&text);
    int n = json_is_array(array) ? (int)json_array_size(array) : -1;
    for (int i = 0; i < n && i < max; i++) {
        json_t *id = json_object_get(json_array_get(array, (size_t)i), "i");
        ids[i] = json_is_integer(id) ? (int)json_integer_value(id) : -1;
    }
    json_decref(array);
    return n;
}

/* CHECK that `batch` holds the events first_id, first_id+1, ... (count of
 * them), in order. */
static void check_batch_holds(const struct batch *batch, int first_id, int count)
{
    int ids[MAX_SEALED * 4];
    if (!CHECK(batch != NULL) || !CHECK_EQ_UINT(batch->count, count))
        return;
    if (!CHECK_EQ_INT(batch_ids(batch, ids, (int)(sizeof ids / sizeof ids[0])), count))
        return;
    for (int i = 0; i < count; i++)
        CHECK_EQ_INT(ids[i], first_id + i);
}

static void test_seal_on_max_events(void)
{
    struct fixture f;
    struct batch_limits limits = roomy;
    limits.max_events = 3;
    if (!fixture_init(&f, &limits, ROOMY_BUFFER))
        return;
    for (int i = 0; i < 7; i++) {
        CHECK_EQ_INT(add_event(&f, i, 40), BATCH_ADDED);
        CHECK_EQ_INT(f.nsealed, (i + 1) / 3);
    }
    check_batch_holds(f.sealed[0], 0, 3);
    check_batch_holds(f.sealed[1], 3, 3);
    check_batch_holds(f.b.open, 6, 1);
    CHECK_EQ_UINT(metrics_get(METRIC_BATCHES_SEALED), 2);
    CHECK_EQ_UINT(account_now()->buffered, 7);

    batcher_seal(&f.b);
    CHECK_EQ_INT(f.nsealed, 3);
    check_batch_holds(f.sealed[2], 6, 1);
    batcher_seal(&f.b); /* nothing open: nothing sealed */
    CHECK_EQ_INT(f.nsealed, 3);
    CHECK_EQ_UINT(metrics_get(METRIC_BATCHES_SEALED), 3);
    fixture_destroy(&f);
}

/* Events of 60 bytes, envelope 50: four of them make a body of
 * 50 + 4 * 60 + 3 commas = 293 bytes. */
static void check_body_limit(size_t max_body_bytes, int per_batch)
{
    struct fixture f;
    struct batch_limits limits = roomy;
    limits.max_body_bytes = max_body_bytes;
    check_context("max_body_bytes %zu", max_body_bytes);
    if (!fixture_init(&f, &limits, ROOMY_BUFFER))
        return;
    for (int i = 0; i < 3 * per_batch + 1; i++) {
        CHECK_EQ_INT(add_event(&f, i, 60), BATCH_ADDED);
        /* the event that does not fit seals the batch and opens the next */
        CHECK_EQ_INT(f.nsealed, i / per_batch);
        CHECK_EQ_UINT(f.b.open ? f.b.open->count : 0, i % per_batch + 1);
    }
    for (int k = 0; k < f.nsealed; k++) {
        check_batch_holds(f.sealed[k], k * per_batch, per_batch);
        CHECK_LE(limits.envelope_bytes + f.sealed[k]->events.len, max_body_bytes);
        CHECK_GT(limits.envelope_bytes + f.sealed[k]->events.len + 1 + 60, max_body_bytes);
    }
    check_batch_holds(f.b.open, 3 * per_batch, 1);
    CHECK_EQ_UINT(account_now()->buffered, 3 * per_batch + 1);
    check_context(NULL);
    fixture_destroy(&f);
}

static void test_seal_on_body_bytes(void)
{
    check_body_limit(293, 4); /* exactly full */
    check_body_limit(292, 3);
    check_body_limit(400, 5);
}

static void test_seal_on_age(void)
{
    struct fixture f;
    struct batch_limits limits = roomy;
    limits.max_age_ms = 60;
    if (!fixture_init(&f, &limits, ROOMY_BUFFER))
        return;
    for (int round = 0; round < 2; round++) {
        check_context("batch %d", round);
        int64_t before = clock_monotonic_ms();
        CHECK_EQ_INT(add_event(&f, round, 40), BATCH_ADDED);
        CHECK_EQ_INT(add_event(&f, 10 + round, 40), BATCH_ADDED);
        CHECK_EQ_INT(f.nsealed, round);
        /* returns once the age timer has run (or at once if none is pending) */
        CHECK_EQ_INT(event_base_loop(f.base, EVLOOP_ONCE), 0);
        if (!CHECK_EQ_INT(f.nsealed, round + 1))
            break;
        int64_t elapsed = f.sealed_at_ms[round] - before;
        CHECK_GE(elapsed, limits.max_age_ms);
        CHECK_LT(elapsed, limits.max_age_ms + 5000);
        CHECK_EQ_UINT(f.sealed[round]->count, 2);
    }
    check_context(NULL);
    /* nothing open: no timer left, the loop has nothing to wait for */
    CHECK_EQ_INT(event_base_loop(f.base, EVLOOP_ONCE), 1);
    fixture_destroy(&f);
}

/* A copy of the open batch's bytes, to show a refused event left no trace. */
struct snapshot {
    char data[4096];
    size_t len;
    uint32_t count;
    size_t buffered_bytes;
    uint64_t events_buffered;
};

static void take_snapshot(const struct fixture *f, struct snapshot *s)
{
    const struct batch *open = f->b.open;
    s->len = open ? open->events.len : 0;
    if (s->len > 0)
        memcpy(s->data, open->events.data, s->len);
    s->count = open ? open->count : 0;
    s->buffered_bytes = f->budget.used;
    s->events_buffered = account_now()->buffered;
}

static void check_unchanged(const struct fixture *f, const struct snapshot *s)
{
    const struct batch *open = f->b.open;
    size_t len = open ? open->events.len : 0;
    if (CHECK_EQ_UINT(len, s->len) && len > 0)
        CHECK_MEM_EQ(open->events.data, len, s->data, s->len);
    CHECK_EQ_UINT(open ? open->count : 0, s->count);
    CHECK_EQ_UINT(f->budget.used, s->buffered_bytes);
    CHECK_EQ_UINT(account_now()->buffered, s->events_buffered);
}

static void test_event_too_large(void)
{
    struct fixture f;
    struct batch_limits limits = roomy;
    limits.max_event_bytes = 100;
    if (!fixture_init(&f, &limits, ROOMY_BUFFER))
        return;
    struct snapshot s;
    take_snapshot(&f, &s);
    CHECK_EQ_INT(add_event(&f, 0, 101), BATCH_EVENT_TOO_LARGE); /* as the first event */
    check_unchanged(&f, &s);

    CHECK_EQ_INT(add_event(&f, 1, 50), BATCH_ADDED);
    take_snapshot(&f, &s);
    CHECK_EQ_INT(add_event(&f, 2, 101), BATCH_EVENT_TOO_LARGE); /* after another */
    check_unchanged(&f, &s);

    CHECK_EQ_INT(add_event(&f, 3, 100), BATCH_ADDED); /* the limit itself is allowed */
    batcher_seal(&f.b);
    if (CHECK_EQ_INT(f.nsealed, 1)) {
        int ids[4];
        CHECK_EQ_INT(batch_ids(f.sealed[0], ids, 4), 2);
        CHECK(ids[0] == 1 && ids[1] == 3);
    }
    fixture_destroy(&f);
}

static void test_abort(void)
{
    struct fixture f;
    if (!fixture_init(&f, &roomy, ROOMY_BUFFER))
        return;
    CHECK_EQ_INT(add_event(&f, 0, 40), BATCH_ADDED);
    struct snapshot s;
    take_snapshot(&f, &s);
    size_t mark;
    struct buf *out = batcher_begin(&f.b, &mark);
    if (CHECK(out != NULL))
        buf_append_str(out, "{\"half\":");
    batcher_abort(&f.b, mark);
    check_unchanged(&f, &s);
    fixture_destroy(&f);
}

/* Bytes held by batches not yet released, open one included. */
/* What the held batches have allocated: the budget must say exactly this. */
static size_t held_bytes(const struct fixture *f)
{
    size_t total = f->b.open ? f->b.open->events.cap + BATCH_OVERHEAD_BYTES : 0;
    for (int i = 0; i < f->nsealed; i++)
        if (f->sealed[i] != NULL)
            total += f->sealed[i]->events.cap + BATCH_OVERHEAD_BYTES;
    return total;
}

/* Release sealed batch i as the sender would. */
static void release(struct fixture *f, int i, int delivered, enum drop_reason reason)
{
    batch_done(f->sealed[i], &f->budget, delivered, reason);
    f->sealed[i] = NULL;
}

/* buffer.overflow = drop_newest: past the bound events are refused, and the
 * budget charges what the batches have allocated, not what they hold. */
static void test_buffer_full(void)
{
    struct fixture f;
    struct batch_limits limits = roomy;
    limits.max_events = 2;
    limits.drop_when_full = 1;
    const size_t buffer_max_bytes = 1200;
    if (!fixture_init(&f, &limits, buffer_max_bytes))
        return;
    int added = 0;
    enum batch_add rc;
    struct snapshot s;
    for (;;) {
        take_snapshot(&f, &s);
        rc = add_event(&f, added, 60);
        if (rc != BATCH_ADDED || added > 100)
            break;
        added++;
        CHECK_EQ_UINT(f.budget.used, held_bytes(&f));
    }
    CHECK_EQ_INT(rc, BATCH_BUFFER_FULL);
    CHECK_GT(added, 2);
    CHECK_LE(f.budget.used, buffer_max_bytes + limits.max_body_bytes);
    check_unchanged(&f, &s);
    CHECK_EQ_UINT(account_now()->buffered, added);
    CHECK_EQ_UINT(f.budget.peak, f.budget.used);

    /* the sender delivers the first batch: there is room again */
    uint32_t first = f.sealed[0]->count;
    release(&f, 0, 1, DROP_SHUTDOWN);
    CHECK_EQ_UINT(f.budget.used, held_bytes(&f));
    CHECK_EQ_UINT(account_now()->delivered, first);
    CHECK_EQ_UINT(metrics_get(METRIC_BATCHES_DELIVERED), 1);
    CHECK_EQ_UINT(account_now()->buffered, added - first);
    CHECK_EQ_UINT(account_now()->dropped[DROP_SHUTDOWN], 0);
    CHECK_EQ_INT(add_event(&f, added, 60), BATCH_ADDED);
    added++;

    /* and drops the second */
    uint32_t second = f.sealed[1]->count;
    release(&f, 1, 0, DROP_BACKEND_REJECTED);
    CHECK_EQ_UINT(account_now()->dropped[DROP_BACKEND_REJECTED], second);
    CHECK_EQ_UINT(metrics_get(METRIC_BATCHES_DROPPED), 1);
    CHECK_EQ_UINT(account_now()->delivered, first);
    /* every event is delivered, dropped or still buffered */
    CHECK_EQ_UINT(account_now()->buffered + account_now()->delivered + account_dropped_total(),
                  added);
    fixture_destroy(&f);
}

static int rooms_called;
static void count_room(void *arg)
{
    (void)arg;
    rooms_called++;
}

/* buffer.overflow = block: the batcher always takes the event (the caller
 * waited for room before it); the budget says it is full, and calls back
 * once when usage is down to three quarters. */
static void test_block_takes_and_calls_back(void)
{
    struct fixture f;
    struct batch_limits limits = roomy;
    limits.max_events = 2;
    const size_t buffer_max_bytes = 1200;
    if (!fixture_init(&f, &limits, buffer_max_bytes))
        return;
    f.budget.on_room = count_room;
    rooms_called = 0;
    int added = 0;
    while (!budget_full(&f.budget) && added < 100)
        CHECK_EQ_INT(add_event(&f, added++, 60), BATCH_ADDED);
    CHECK_EQ_INT(add_event(&f, added++, 60), BATCH_ADDED); /* taken, full or not */
    CHECK_EQ_UINT(f.budget.used, held_bytes(&f));
    budget_wait(&f.budget);
    for (int i = 0; i < f.nsealed && rooms_called == 0; i++) {
        release(&f, i, 1, 0);
        CHECK_EQ_UINT(f.budget.used, held_bytes(&f));
        if (rooms_called == 0)
            CHECK_GT(f.budget.used, buffer_max_bytes - buffer_max_bytes / 4);
    }
    CHECK_EQ_INT(rooms_called, 1);
    CHECK_LE(f.budget.used, buffer_max_bytes - buffer_max_bytes / 4);
    for (int i = 0; i < f.nsealed; i++)
        if (f.sealed[i] != NULL)
            release(&f, i, 1, 0);
    CHECK_EQ_INT(rooms_called, 1); /* once per wait */
    fixture_destroy(&f);
}

/* A 413 halves a batch: each half holds its events whole, in order, even
 * when their strings hold braces, commas and escaped quotes, and the budget
 * follows. */
static void test_split(void)
{
    struct fixture f;
    struct batch_limits limits = roomy;
    limits.max_events = 5;
    if (!fixture_init(&f, &limits, ROOMY_BUFFER))
        return;
    static const char *const tricky[] = {"{\"i\":0,\"p\":\"},{\"}", "{\"i\":1,\"p\":[1,{\"a\":2}]}",
                                         "{\"i\":2,\"p\":\"\\\"},\"}", "{\"i\":3}",
                                         "{\"i\":4,\"p\":\"\\\\\"}"};
    for (int i = 0; i < 5; i++) {
        size_t mark;
        struct buf *out = batcher_begin(&f.b, &mark);
        buf_append_str(out, tricky[i]);
        CHECK_EQ_INT(batcher_commit(&f.b, mark), BATCH_ADDED);
    }
    if (!CHECK_EQ_INT(f.nsealed, 1))
        return;
    struct batch *rest = NULL;
    CHECK_EQ_INT(batch_split(f.sealed[0], &f.budget, &rest), 0);
    check_batch_holds(f.sealed[0], 0, 2);
    check_batch_holds(rest, 2, 3);
    CHECK_EQ_UINT(f.budget.used,
                  held_bytes(&f) + (rest ? rest->events.cap + BATCH_OVERHEAD_BYTES : 0));
    struct batch *one = NULL;
    CHECK_EQ_INT(batch_split(rest, &f.budget, &one), 0);
    check_batch_holds(rest, 2, 1);
    check_batch_holds(one, 3, 2);
    struct batch *none = NULL;
    CHECK_EQ_INT(batch_split(rest, &f.budget, &none), -1); /* one event cannot be halved */
    CHECK(none == NULL);
    batch_done(rest, &f.budget, 1, 0);
    batch_done(one, &f.budget, 1, 0);
    fixture_destroy(&f);
    CHECK_EQ_UINT(account_now()->delivered, 5);
    CHECK_EQ_UINT(f.budget.used, 0);
}

/* Shutting down drops the open batch's events as DROP_SHUTDOWN, and counts
 * a dropped batch only if it held any. */
static void test_destroy_counts_open_batch(void)
{
    struct fixture f;
    if (!fixture_init(&f, &roomy, ROOMY_BUFFER))
        return;
    CHECK_EQ_INT(add_event(&f, 0, 40), BATCH_ADDED);
    CHECK_EQ_INT(add_event(&f, 1, 40), BATCH_ADDED);
    fixture_destroy(&f);
    CHECK_EQ_UINT(account_now()->dropped[DROP_SHUTDOWN], 2);
    CHECK_EQ_UINT(account_now()->buffered, 0);
    CHECK_EQ_UINT(metrics_get(METRIC_BATCHES_DROPPED), 1);

    /* an open batch whose only event was refused holds nothing to count */
    if (!fixture_init(&f, &roomy, ROOMY_BUFFER))
        return;
    CHECK_EQ_INT(add_event(&f, 0, 2000), BATCH_EVENT_TOO_LARGE);
    fixture_destroy(&f);
    CHECK_EQ_UINT(metrics_get(METRIC_BATCHES_DROPPED), 0);
    CHECK_EQ_UINT(account_dropped_total(), 0);
}

/* A new batch's buffer starts as large as the last sealed one and an
 * eighth, exactly (no growing by doubling on the way), within the room the
 * budget has left, and half of it where events are dropped when full. */
static void test_presize(void)
{
    struct fixture f;
    struct batch_limits limits = roomy;
    limits.max_events = 10;
    if (!fixture_init(&f, &limits, ROOMY_BUFFER))
        return;
    int id = 0;
    for (int i = 0; i < 10; i++)
        CHECK_EQ_INT(add_event(&f, id++, 900), BATCH_ADDED);
    if (!CHECK_EQ_INT(f.nsealed, 1))
        return;
    size_t last = f.sealed[0]->events.len;
    CHECK_EQ_INT(add_event(&f, id++, 900), BATCH_ADDED);
    CHECK_EQ_UINT(f.b.open->events.cap, last + last / 8);
    for (int i = 1; i < 9; i++) { /* filled without growing */
        CHECK_EQ_INT(add_event(&f, id++, 900), BATCH_ADDED);
        CHECK_EQ_UINT(f.b.open->events.cap, last + last / 8);
    }
    CHECK_EQ_INT(add_event(&f, id++, 900), BATCH_ADDED);
    CHECK_EQ_UINT(f.sealed[1]->events.cap, last); /* shrunk to fit when sealed */
    CHECK_EQ_UINT(f.budget.used, held_bytes(&f));
    fixture_destroy(&f);

    /* little room left: the buffer takes the room, and half of it when dropping */
    limits.max_events = 20;
    for (int drop = 0; drop <= 1; drop++) {
        limits.drop_when_full = drop;
        if (!fixture_init(&f, &limits, ROOMY_BUFFER))
            return;
        for (int i = 0; i < 20; i++)
            CHECK_EQ_INT(add_event(&f, i, 900), BATCH_ADDED);
        const size_t room = 12000;
        size_t taken = f.budget.max - f.budget.used - room;
        budget_charge(&f.budget, taken);
        CHECK_EQ_INT(add_event(&f, 20, 900), BATCH_ADDED);
        CHECK_EQ_UINT(f.b.open->events.cap, drop ? room / 2 : room);
        budget_release(&f.budget, taken);
        CHECK_EQ_UINT(f.budget.used, held_bytes(&f));
        fixture_destroy(&f);
    }
}

int main(void)
{
    RUN(test_seal_on_max_events);
    RUN(test_seal_on_body_bytes);
    RUN(test_seal_on_age);
    RUN(test_event_too_large);
    RUN(test_abort);
    RUN(test_buffer_full);
    RUN(test_block_takes_and_calls_back);
    RUN(test_split);
    RUN(test_destroy_counts_open_batch);
    RUN(test_presize);
    return check_finish();
}
