/*
 * Partial writes: with events far larger than the socket buffer and a reader
 * that drains it slowly, the client's writes come up short all the time; the
 * bytes the agent side reads must still be exactly the concatenation of
 * whole events, in order. And when the agent side drops the connection in
 * the middle of an event, the next connection starts with a whole event.
 */
#include "check.h"
#include "fake.h"
#include "telemetry.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EVENTS 40
#define PAD 50000

struct seen {
    int64_t first, last;
    int count, gaps, bad_shape;
};

static void note(const msgpack_object *obj, void *arg)
{
    struct seen *s = arg;
    int64_t i = fake_event_i(obj);
    const msgpack_object *pad = fake_map_get(fake_map_get(obj, "properties"), "pad");
    if (pad == NULL || pad->type != MSGPACK_OBJECT_STR || pad->via.str.size != PAD ||
        pad->via.str.ptr[0] != 'a' + i % 26 || pad->via.str.ptr[PAD - 1] != 'a' + i % 26)
        s->bad_shape++;
    if (s->count == 0)
        s->first = i;
    else if (i != s->last + 1)
        s->gaps++;
    s->last = i;
    s->count++;
}

/* Listen at s, open a client with room for everything, queue EVENTS big
 * events (far more than the socket buffer takes). */
static tlm_client *start_burst(struct fake_socket *s)
{
    fake_socket_init(s);
    if (!CHECK_EQ_INT(fake_socket_listen(s), 0))
        return NULL;
    tlm_client *c = fake_client(s->path, (tlm_options){.queue_bytes = 8 << 20});
    if (CHECK(c != NULL))
        CHECK_EQ_INT(fake_send_range(c, 0, EVENTS, PAD), 0);
    return c;
}

/* Read slowly, in small pieces, until every event is in. */
static void test_short_writes(void)
{
    struct fake_socket s;
    tlm_client *c = start_burst(&s);
    if (c == NULL)
        return;
    tlm_stats st;
    tlm_get_stats(c, &st);
    CHECK_GT(st.queued, 0); /* the socket took only part of 2 MB */
    int fd = fake_socket_accept(&s, 2000);
    if (!CHECK_GE(fd, 0))
        return;
    struct fake_bytes b = {0};
    for (int k = 0; k < 300; k++) { /* 3 KB pieces, about 1 MB in all */
        fake_read(fd, &b, 3001, 100);
        usleep(500);
    }
    size_t used;
    for (int64_t end = fake_now_ms() + 5000; fake_now_ms() < end;) {
        fake_read(fd, &b, 0, 50);
        if (fake_objects(b.data, b.len, &used, NULL, NULL) == EVENTS)
            break;
    }
    struct seen seen = {0};
    CHECK_EQ_INT(fake_objects(b.data, b.len, &used, note, &seen), EVENTS);
    CHECK_EQ_UINT(used, b.len);
    CHECK_EQ_INT(seen.first, 0);
    CHECK_EQ_INT(seen.gaps, 0);
    CHECK_EQ_INT(seen.bad_shape, 0);
    CHECK_EQ_INT(tlm_flush(c, 2000), TLM_OK);
    tlm_get_stats(c, &st);
    CHECK_EQ_UINT(st.sent, EVENTS);
    CHECK_EQ_UINT(st.queued, 0);
    CHECK_EQ_UINT(st.connects, 1);
    fake_bytes_free(&b);
    close(fd);
    tlm_close(c);
    fake_socket_cleanup(&s);
}

/* The first connection is closed 1.5 events in; the second one must begin
 * with a whole event and carry whole events to the end. */
static void test_reset_mid_event(void)
{
    struct fake_socket s;
    tlm_client *c = start_burst(&s);
    if (c == NULL)
        return;
    int fd = fake_socket_accept(&s, 2000);
    if (!CHECK_GE(fd, 0))
        return;
    struct fake_bytes first = {0};
    size_t want = PAD * 3 / 2;
    while (first.len < want && fake_read(fd, &first, want - first.len, 1000) > 0)
        ;
    size_t used;
    CHECK_EQ_UINT(first.len, want);
    CHECK_EQ_INT(fake_objects(first.data, first.len, &used, NULL, NULL), 1);
    CHECK_LT(used, first.len); /* the connection ends inside event 1 */
    close(fd);

    fd = fake_socket_accept(&s, 3000);
    if (!CHECK_GE(fd, 0))
        return;
    struct fake_bytes second = {0};
    struct seen seen = {0};
    for (int64_t end = fake_now_ms() + 5000; fake_now_ms() < end;) {
        fake_read(fd, &second, 0, 50);
        seen = (struct seen){0};
        if (fake_objects(second.data, second.len, &used, note, &seen) > 0 &&
            seen.last == EVENTS - 1)
            break;
    }
    CHECK_GT(seen.count, 0);
    CHECK_EQ_UINT(used, second.len); /* whole events only */
    CHECK_GE(seen.first, 1);         /* event 1 or later, from its first byte */
    CHECK_EQ_INT(seen.last, EVENTS - 1);
    CHECK_EQ_INT(seen.gaps, 0);
    CHECK_EQ_INT(seen.bad_shape, 0);
    CHECK_EQ_INT(tlm_flush(c, 2000), TLM_OK);
    tlm_stats st;
    tlm_get_stats(c, &st);
    CHECK_EQ_UINT(st.connects, 2);
    CHECK_EQ_UINT(st.disconnects, 1);
    CHECK_EQ_UINT(st.sent, EVENTS);
    CHECK_EQ_UINT(st.sent + st.queued, st.attempted);
    fake_bytes_free(&first);
    fake_bytes_free(&second);
    close(fd);
    tlm_close(c);
    fake_socket_cleanup(&s);
}

int main(void)
{
    RUN(test_short_writes);
    RUN(test_reset_mid_event);
    return check_finish();
}
