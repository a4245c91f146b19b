/*
 * Reliable mode against a fake acking agent: every event carries a chunk and
 * is held until acked; a missing ack means a resend on a new connection
 * after the ack timeout; a rejected reply drops the event (counted, never
 * resent); a connection closed mid-stream means every unacked event is
 * resent, in order; tlm_flush waits for the acks or times out; the bound
 * covers unacked + queued events; and acks are matched however the replies
 * are split, among objects that answer nothing.
 */
#include "check.h"
#include "fake.h"
#include "telemetry.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct fake_agent agent;

static tlm_client *open_reliable(size_t queue_bytes, unsigned ack_timeout_ms)
{
    tlm_client *c = fake_client(agent.sock.path, (tlm_options){.reliable = 1,
                                                               .queue_bytes = queue_bytes,
                                                               .ack_timeout_ms = ack_timeout_ms});
    CHECK(c != NULL);
    return c;
}

static void check_accounting(tlm_client *c, tlm_stats *st)
{
    tlm_get_stats(c, st);
    uint64_t dropped = st->dropped_queue_full + st->dropped_too_large + st->dropped_invalid +
                       st->dropped_rejected + st->dropped_connection;
    CHECK_EQ_UINT(st->acked + dropped + st->queued, st->attempted);
}

/* Each i of 0..n_events-1 came exactly once, with a chunk. */
static void check_each_arrived_once(int n_events)
{
    int n, chunkless = 0, other = 0;
    struct fake_message *log = fake_agent_log(&agent, &n);
    int *times = calloc((size_t)n_events, sizeof *times);
    for (int k = 0; k < n; k++) {
        if (log[k].i >= 0 && log[k].i < n_events)
            times[log[k].i]++;
        else
            other++;
        chunkless += log[k].chunk[0] == '\0';
    }
    CHECK_EQ_INT(chunkless, 0);
    CHECK_EQ_INT(other, 0);
    for (int i = 0; i < n_events; i++) {
        check_context("event %d", i);
        CHECK_EQ_INT(times[i], 1);
    }
    check_context(NULL);
    free(times);
    free(log);
}

#define N 100

static void test_all_acked(void)
{
    if (!CHECK_EQ_INT(fake_agent_start(&agent, NULL, NULL), 0))
        return;
    tlm_client *c = open_reliable(0, 2000);
    CHECK_EQ_INT(fake_send_range(c, 0, N, 100), 0);
    CHECK_EQ_INT(tlm_flush(c, 5000), TLM_OK);
    tlm_stats st;
    check_accounting(c, &st);
    CHECK_EQ_UINT(st.acked, N);
    CHECK_EQ_UINT(st.queued, 0);
    CHECK_EQ_UINT(st.resent, 0);
    check_each_arrived_once(N);
    tlm_close(c);
    fake_agent_stop(&agent);
}

/* Event 5 gets no reply the first time: it is resent on a new connection
 * once the ack timeout passes. */
static enum fake_action silent_on_first_5(const struct fake_message *m, void *arg)
{
    (void)arg;
    return m->i == 5 && m->seen == 0 ? FAKE_SILENT : FAKE_ACK;
}

static void test_missing_ack_resent(void)
{
    if (!CHECK_EQ_INT(fake_agent_start(&agent, silent_on_first_5, NULL), 0))
        return;
    tlm_client *c = open_reliable(0, 300);
    CHECK_EQ_INT(fake_send_range(c, 0, 10, 100), 0);
    int64_t t0 = fake_now_ms();
    CHECK_EQ_INT(tlm_flush(c, 5000), TLM_OK);
    CHECK_GE(fake_now_ms() - t0, 250); /* it waited for the ack timeout */
    tlm_stats st;
    check_accounting(c, &st);
    CHECK_EQ_UINT(st.acked, 10);
    CHECK_GE(st.resent, 1);
    CHECK_GE(st.disconnects, 1);
    int n;
    struct fake_message *log = fake_agent_log(&agent, &n);
    int resends = 0;
    for (int k = 0; k < n; k++) {
        if (log[k].i == 5 && log[k].seen == 1) {
            resends++;
            CHECK_GE(log[k].conn, 2); /* on a new connection */
        }
    }
    CHECK_EQ_INT(resends, 1);
    free(log);
    tlm_close(c);
    fake_agent_stop(&agent);
}

/* The agent's buffer is full: event 0 is deferred three times while the
 * later ones are taken. It is written again on the same connection after
 * a pause that doubles from 50 ms while deferrals come without an ack in
 * between, and a flush returns only once it is
 * acked, although every entry written after it was acked before. */
static enum fake_action defer_0_three_times(const struct fake_message *m, void *arg)
{
    (void)arg;
    return m->i == 0 && m->seen < 3 ? FAKE_DEFER : FAKE_ACK;
}

static void test_deferred_resent_after_a_pause(void)
{
    if (!CHECK_EQ_INT(fake_agent_start(&agent, defer_0_three_times, NULL), 0))
        return;
    tlm_client *c = open_reliable(0, 5000);
    int64_t t0 = fake_now_ms();
    CHECK_EQ_INT(fake_send_range(c, 0, 10, 100), 0);
    CHECK_EQ_INT(tlm_flush(c, 5000), TLM_OK);
    int64_t took = fake_now_ms() - t0;
    /* pauses of 50, 50 (the acks of 1..9 reset it) and 100 ms, each timed
     * from the I/O thread's clock reading, which may be a turn early: at
     * least half of them; resending at once would take a few ms */
    CHECK_GE(took, 100);
    CHECK_LT(took, 4000); /* not the 5 s ack timeout */
    tlm_stats st;
    check_accounting(c, &st);
    CHECK_EQ_UINT(st.acked, 10);
    CHECK_EQ_UINT(st.queued, 0);
    CHECK_EQ_UINT(st.deferred, 3);
    CHECK_EQ_UINT(st.disconnects, 0);
    int n;
    struct fake_message *log = fake_agent_log(&agent, &n);
    int zeros = 0;
    for (int k = 0; k < n; k++) {
        zeros += log[k].i == 0;
        CHECK_EQ_INT(log[k].conn, 1);
    }
    CHECK_EQ_INT(zeros, 4);
    free(log);
    tlm_close(c);
    fake_agent_stop(&agent);
}

/* Every third event is refused: counted as rejected, never resent. */
static enum fake_action reject_every_third(const struct fake_message *m, void *arg)
{
    (void)arg;
    return m->i % 3 == 0 ? FAKE_REJECT : FAKE_ACK;
}

static void test_rejected_not_resent(void)
{
    if (!CHECK_EQ_INT(fake_agent_start(&agent, reject_every_third, NULL), 0))
        return;
    tlm_client *c = open_reliable(0, 2000);
    CHECK_EQ_INT(fake_send_range(c, 0, 30, 10), 0);
    CHECK_EQ_INT(tlm_flush(c, 5000), TLM_OK);
    fake_sleep_ms(100);
    tlm_stats st;
    check_accounting(c, &st);
    CHECK_EQ_UINT(st.dropped_rejected, 10);
    CHECK_EQ_UINT(st.acked, 20);
    CHECK_EQ_UINT(st.resent, 0);
    CHECK_STR_EQ(st.last_reject_reason, "unknown_event");
    check_each_arrived_once(30);
    tlm_close(c);
    fake_agent_stop(&agent);
}

/* The agent closes the first connection when event 50 arrives (without
 * acking it): 50 and everything after it that was not acked come again, in
 * order, on the next connection. */
static enum fake_action close_at_50(const struct fake_message *m, void *arg)
{
    (void)arg;
    return m->i == 50 && m->conn == 1 ? FAKE_CLOSE : FAKE_ACK;
}

static void test_close_mid_stream(void)
{
    if (!CHECK_EQ_INT(fake_agent_start(&agent, close_at_50, NULL), 0))
        return;
    tlm_client *c = open_reliable(0, 5000);
    CHECK_EQ_INT(fake_send_range(c, 0, N, 2000), 0);
    CHECK_EQ_INT(tlm_flush(c, 5000), TLM_OK);
    tlm_stats st;
    check_accounting(c, &st);
    CHECK_EQ_UINT(st.acked, N);
    CHECK_GE(st.disconnects, 1);
    CHECK_GE(st.resent, 1);
    int n;
    struct fake_message *log = fake_agent_log(&agent, &n);
    int64_t prev = -1;
    int first_on_2 = -1, unordered = 0, acked_on_1 = 0;
    for (int k = 0; k < n; k++) {
        if (log[k].conn == 1 && log[k].i < 50)
            acked_on_1++;
        if (log[k].conn != 2)
            continue;
        if (first_on_2 < 0)
            first_on_2 = (int)log[k].i;
        else if (log[k].i != prev + 1)
            unordered++;
        prev = log[k].i;
    }
    CHECK_EQ_INT(acked_on_1, 50);
    CHECK_EQ_INT(first_on_2, 50); /* the oldest unacked event first */
    CHECK_EQ_INT(prev, N - 1);
    CHECK_EQ_INT(unordered, 0);
    free(log);
    tlm_close(c);
    fake_agent_stop(&agent);
    CHECK_EQ_INT(agent.torn, 0); /* read once its thread is gone */
}

static enum fake_action never_ack(const struct fake_message *m, void *arg)
{
    (void)m;
    (void)arg;
    return FAKE_SILENT;
}

/* No acks at all: flush gives up at its timeout; the events stay held, and
 * held bytes count against the bound. */
static void test_flush_timeout_and_bound(void)
{
    if (!CHECK_EQ_INT(fake_agent_start(&agent, never_ack, NULL), 0))
        return;
    tlm_client *c = open_reliable(8 * 1024, 10000);
    int ok = 0, full = 0;
    for (int i = 0; i < 20; i++) {
        tlm_status st = fake_send_indexed(c, i, 1000);
        ok += st == TLM_OK;
        full += st == TLM_EQUEUE_FULL;
    }
    CHECK_GE(ok, 6);
    CHECK_LE(ok, 7);
    CHECK_EQ_INT(ok + full, 20);
    CHECK_EQ_INT(fake_agent_wait(&agent, ok, 2000), ok); /* written, just never acked */
    int64_t t0 = fake_now_ms();
    CHECK_EQ_INT(tlm_flush(c, 300), TLM_ETIMEOUT);
    int64_t waited = fake_now_ms() - t0;
    CHECK_GE(waited, 290);
    CHECK_LT(waited, 3000);
    CHECK_EQ_INT(tlm_flush(c, 0), TLM_ETIMEOUT);
    tlm_stats st;
    check_accounting(c, &st);
    CHECK_EQ_UINT(st.queued, (uint64_t)ok);
    CHECK_LE(st.queued_bytes, 8 * 1024);
    CHECK_EQ_UINT(st.sent, (uint64_t)ok);
    CHECK_EQ_UINT(st.acked, 0);
    CHECK_EQ_UINT(st.dropped_queue_full, (uint64_t)full);
    tlm_close(c);
    fake_agent_stop(&agent);
}

/* Sent while no agent listens: held, then delivered and acked once it does. */
static void test_agent_late(void)
{
    struct fake_socket s;
    if (!CHECK_EQ_INT(fake_socket_init(&s), 0))
        return;
    tlm_client *c = fake_client(s.path, (tlm_options){.reliable = 1});
    if (!CHECK(c != NULL))
        return;
    CHECK_EQ_INT(fake_send_range(c, 0, 10, 10), 0);
    CHECK_EQ_INT(tlm_flush(c, 200), TLM_ETIMEOUT);
    if (!CHECK_EQ_INT(fake_agent_start_at(&agent, &s, NULL, NULL), 0))
        return;
    CHECK_EQ_INT(tlm_flush(c, 5000), TLM_OK);
    tlm_stats st;
    check_accounting(c, &st);
    CHECK_EQ_UINT(st.acked, 10);
    CHECK_EQ_UINT(st.connects, 1);
    check_each_arrived_once(10);
    tlm_close(c);
    fake_agent_stop(&agent);
}

struct chunks {
    char id[10][65];
    int n;
};

static void note_chunk(const msgpack_object *obj, void *arg)
{
    struct chunks *ch = arg;
    const msgpack_object *chunk = fake_map_get(obj, "chunk");
    if (ch->n < 10 && chunk != NULL && chunk->type == MSGPACK_OBJECT_STR &&
        chunk->via.str.size < 65)
        memcpy(ch->id[ch->n++], chunk->via.str.ptr, chunk->via.str.size);
}

/* Replies split anywhere (here: one byte per write) and mixed with objects
 * that are no reply to anything (nil, an array, a map without "ack", an ack
 * that is not a str, an ack for a chunk never sent): every real ack is
 * matched, nothing else counts, and the connection stays up. */
static void test_odd_replies(void)
{
    struct fake_socket s;
    if (!CHECK_EQ_INT(fake_socket_init(&s), 0) || !CHECK_EQ_INT(fake_socket_listen(&s), 0))
        return;
    tlm_client *c = fake_client(s.path, (tlm_options){.reliable = 1, .ack_timeout_ms = 5000});
    CHECK_EQ_INT(fake_send_range(c, 0, 10, 10), 0);
    int fd = fake_socket_accept(&s, 2000);
    if (!CHECK_GE(fd, 0))
        return;
    struct fake_bytes in = {0};
    size_t used;
    for (int64_t end = fake_now_ms() + 2000; fake_now_ms() < end;)
        if (fake_read(fd, &in, 0, 50) == 0 && fake_objects(in.data, in.len, &used, NULL, NULL) == 10)
            break;
    struct chunks ch = {0};
    CHECK_EQ_INT(fake_objects(in.data, in.len, &used, note_chunk, &ch), 10);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    for (int k = 0; k < ch.n; k++) {
        msgpack_pack_nil(&pk);
        msgpack_pack_array(&pk, 1);
        msgpack_pack_int(&pk, k);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "x", 1);
        msgpack_pack_int(&pk, k);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "ack", 3);
        msgpack_pack_int(&pk, k);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "ack", 3);
        msgpack_pack_str_with_body(&pk, "never-sent", 10);
        msgpack_pack_map(&pk, 1);
        msgpack_pack_str_with_body(&pk, "ack", 3);
        msgpack_pack_str_with_body(&pk, ch.id[k], strlen(ch.id[k]));
    }
    for (size_t k = 0; k < sb.size; k++) {
        CHECK_EQ_INT(write(fd, sb.data + k, 1), 1);
        if (k % 8 == 0)
            fake_sleep_ms(1);
    }
    msgpack_sbuffer_destroy(&sb);
    CHECK_EQ_INT(tlm_flush(c, 3000), TLM_OK);
    tlm_stats st;
    check_accounting(c, &st);
    CHECK_EQ_UINT(st.acked, 10);
    CHECK_EQ_UINT(st.resent, 0);
    CHECK_EQ_UINT(st.disconnects, 0);
    CHECK_EQ_UINT(st.connects, 1);
    fake_bytes_free(&in);
    close(fd);
    tlm_close(c);
    fake_socket_cleanup(&s);
}

int main(void)
{
    RUN(test_all_acked);
    RUN(test_missing_ack_resent);
    RUN(test_deferred_resent_after_a_pause);
    RUN(test_rejected_not_resent);
    RUN(test_close_mid_stream);
    RUN(test_flush_timeout_and_bound);
    RUN(test_agent_late);
    RUN(test_odd_replies);
    return check_finish();
}
