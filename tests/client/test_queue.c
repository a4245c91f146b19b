/*
 * The queue and its bound: with no agent, events queue up to queue_bytes,
 * then are dropped and counted; sent + dropped + queued = attempted always.
 * When the agent appears, the I/O thread connects and drains the queue in
 * order with no call from the application. Also: events too large, no
 * SIGPIPE when the agent goes away, the no_thread mode, bounded reconnect
 * attempts, a full listen backlog, and many threads sharing one client.
 */
#include "check.h"
#include "fake.h"
#include "telemetry.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void check_accounting(tlm_client *c)
{
    tlm_stats st;
    if (!CHECK_EQ_INT(tlm_get_stats(c, &st), TLM_OK))
        return;
    uint64_t dropped = st.dropped_queue_full + st.dropped_too_large + st.dropped_invalid +
                       st.dropped_rejected + st.dropped_connection;
    CHECK_EQ_UINT(st.sent + dropped + st.queued, st.attempted);
}

struct order {
    int64_t next;
    int bad;
};

static void expect_next(const msgpack_object *obj, void *arg)
{
    struct order *o = arg;
    if (fake_event_i(obj) != o->next)
        o->bad++;
    o->next++;
}

/* Accept one connection and read it until it is quiet for 300 ms: events
 * 0..n-1 in order, nothing else. */
static void accept_in_order(struct fake_socket *s, int timeout_ms, int n)
{
    int fd = fake_socket_accept(s, timeout_ms);
    if (!CHECK_GE(fd, 0))
        return;
    struct fake_bytes b = {0};
    struct order ord = {0, 0};
    size_t used;
    fake_read(fd, &b, 0, 300);
    CHECK_EQ_INT(fake_objects(b.data, b.len, &used, expect_next, &ord), n);
    CHECK_EQ_UINT(used, b.len);
    CHECK_EQ_INT(ord.bad, 0);
    fake_bytes_free(&b);
    close(fd);
}

static void test_bound_then_drain(void)
{
    struct fake_socket s;
    if (!CHECK_EQ_INT(fake_socket_init(&s), 0))
        return;
    tlm_options o;
    tlm_options_init(&o);
    o.queue_bytes = 16 * 1024;
    o.reconnect_max_ms = 100;
    tlm_client *c;
    if (!CHECK_EQ_INT(tlm_open(&c, s.path, &o), TLM_OK))
        return;
    int ok = 0, full = 0;
    for (int i = 0; i < 40; i++) {
        tlm_status st = fake_send_indexed(c, ok, 1000); /* ~1.1 KB each */
        if (st == TLM_OK)
            ok++;
        else if (CHECK_EQ_INT(st, TLM_EQUEUE_FULL))
            full++;
    }
    tlm_stats st;
    tlm_get_stats(c, &st);
    /* the thread tries to connect, on its own */
    for (int64_t end = fake_now_ms() + 2000; st.connect_failures == 0 && fake_now_ms() < end;) {
        fake_sleep_ms(5);
        tlm_get_stats(c, &st);
    }
    CHECK_GE(ok, 13);
    CHECK_LE(ok, 15);
    CHECK_EQ_INT(ok + full, 40);
    CHECK_EQ_UINT(st.queued, (uint64_t)ok);
    CHECK_LE(st.queued_bytes, o.queue_bytes);
    CHECK_GT(st.queued_bytes + 1100, o.queue_bytes); /* the next one did not fit */
    CHECK_EQ_UINT(st.dropped_queue_full, (uint64_t)full);
    CHECK_EQ_UINT(st.attempted, 40);
    CHECK_EQ_UINT(st.sent, 0);
    CHECK_GE(st.connect_failures, 1);
    check_accounting(c);

    /* the agent comes up: the client's own thread delivers, in order */
    if (!CHECK_EQ_INT(fake_socket_listen(&s), 0))
        return;
    int fd = fake_socket_accept(&s, 3000);
    if (CHECK_GE(fd, 0)) {
        struct fake_bytes b = {0};
        struct order ord = {0, 0};
        size_t used;
        for (int64_t end = fake_now_ms() + 3000; fake_now_ms() < end;) {
            fake_read(fd, &b, 0, 100);
            if (fake_objects(b.data, b.len, &used, NULL, NULL) == ok)
                break;
        }
        CHECK_EQ_INT(fake_objects(b.data, b.len, &used, expect_next, &ord), ok);
        CHECK_EQ_UINT(used, b.len);
        CHECK_EQ_INT(ord.bad, 0);
        fake_bytes_free(&b);
        close(fd);
    }
    for (int64_t end = fake_now_ms() + 2000; fake_now_ms() < end; fake_sleep_ms(10)) {
        tlm_get_stats(c, &st);
        if (st.queued == 0)
            break;
    }
    CHECK_EQ_UINT(st.queued, 0);
    CHECK_EQ_UINT(st.sent, (uint64_t)ok);
    CHECK_EQ_UINT(st.connects, 1);
    check_accounting(c);
    tlm_close(c);
    fake_socket_cleanup(&s);
}

static void test_too_large(void)
{
    struct fake_socket s;
    fake_socket_init(&s);
    tlm_options o;
    tlm_options_init(&o);
    o.max_event_bytes = 2000;
    tlm_client *c;
    if (!CHECK_EQ_INT(tlm_open(&c, s.path, &o), TLM_OK))
        return;
    CHECK_EQ_INT(fake_send_indexed(c, 0, 1800), TLM_OK);
    CHECK_EQ_INT(fake_send_indexed(c, 1, 2000), TLM_ETOOLARGE);
    tlm_close(c);
    tlm_options_init(&o);
    o.queue_bytes = 1000; /* an event that could never be held */
    if (!CHECK_EQ_INT(tlm_open(&c, s.path, &o), TLM_OK))
        return;
    CHECK_EQ_INT(fake_send_indexed(c, 0, 1000), TLM_ETOOLARGE);
    CHECK_EQ_INT(fake_send_indexed(c, 1, 10), TLM_OK);
    tlm_stats st;
    tlm_get_stats(c, &st);
    CHECK_EQ_UINT(st.dropped_too_large, 1);
    CHECK_EQ_UINT(st.queued, 1);
    check_accounting(c);
    tlm_close(c);
    fake_socket_cleanup(&s);
}

/* The agent accepts, then goes away: writes fail with EPIPE, never SIGPIPE. */
static void test_no_sigpipe(void)
{
    signal(SIGPIPE, SIG_DFL); /* SIGPIPE would kill the test */
    struct fake_socket s;
    fake_socket_init(&s);
    if (!CHECK_EQ_INT(fake_socket_listen(&s), 0))
        return;
    tlm_client *c;
    if (!CHECK_EQ_INT(tlm_open(&c, s.path, NULL), TLM_OK))
        return;
    CHECK_EQ_INT(fake_send_indexed(c, 0, 10), TLM_OK);
    int fd = fake_socket_accept(&s, 2000);
    CHECK_GE(fd, 0);
    fake_socket_unlisten(&s);
    close(fd);
    for (int i = 1; i < 200; i++)
        CHECK_EQ_INT(fake_send_indexed(c, i, 100), TLM_OK);
    tlm_stats st;
    tlm_get_stats(c, &st);
    /* the thread's writes find the connection gone, on its own */
    for (int64_t end = fake_now_ms() + 2000; st.disconnects == 0 && fake_now_ms() < end;) {
        fake_sleep_ms(5);
        tlm_get_stats(c, &st);
    }
    CHECK_GE(st.disconnects, 1);
    CHECK_GE(st.queued, 1); /* the rest wait for an agent */
    check_accounting(c);
    CHECK_EQ_INT(tlm_flush(c, 50), TLM_ETIMEOUT);
    tlm_close(c);
    fake_socket_cleanup(&s);
}

/* no_thread: nothing moves between calls; tlm_flush drains. */
static void test_no_thread(void)
{
    struct fake_socket s;
    fake_socket_init(&s);
    tlm_client *c = fake_client(s.path, (tlm_options){.no_thread = 1});
    if (!CHECK(c != NULL))
        return;
    CHECK_EQ_INT(fake_send_range(c, 0, 5, 10), 0);
    CHECK_EQ_INT(fake_socket_listen(&s), 0);
    CHECK_EQ_INT(fake_socket_accept(&s, 300), -1); /* nobody connects by itself */
    CHECK_EQ_INT(tlm_flush(c, 2000), TLM_OK);
    accept_in_order(&s, 1000, 5);
    tlm_stats st;
    tlm_get_stats(c, &st);
    CHECK_EQ_UINT(st.sent, 5);
    CHECK_EQ_UINT(st.queued, 0);
    CHECK_EQ_INT(tlm_poll(c), TLM_OK);
    tlm_close(c);
    fake_socket_cleanup(&s);
}

/* With no agent, attempts are paced by the backoff, not a tight loop. */
static void test_backoff(void)
{
    struct fake_socket s;
    fake_socket_init(&s);
    tlm_client *c =
        fake_client(s.path, (tlm_options){.reconnect_min_ms = 50, .reconnect_max_ms = 200});
    if (!CHECK(c != NULL))
        return;
    CHECK_EQ_INT(fake_send_indexed(c, 0, 10), TLM_OK);
    fake_sleep_ms(1000);
    tlm_stats st;
    tlm_get_stats(c, &st);
    /* delays of 25-50, 50-100, then 100-200 ms: about 8 attempts a second */
    CHECK_GE(st.connect_failures, 3);
    CHECK_LE(st.connect_failures, 25);
    CHECK_EQ_UINT(st.connects, 0);
    tlm_close(c);
    fake_socket_cleanup(&s);
}

/* The agent's listen backlog is full: connect() on the client's non-blocking
 * socket fails at once (EAGAIN), sends return at once and queue, attempts
 * are paced, and the events go out once the agent accepts again. */
static void test_backlog_full(void)
{
    struct fake_socket s;
    if (!CHECK_EQ_INT(fake_socket_init(&s), 0))
        return;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, s.path, sizeof s.path);
    s.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!CHECK_EQ_INT(bind(s.fd, (struct sockaddr *)&addr, sizeof addr), 0) ||
        !CHECK_EQ_INT(listen(s.fd, 0), 0))
        return;
    int waiting[4], nwaiting = 0; /* connections filling the backlog */
    while (nwaiting < 4) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
            CHECK_EQ_INT(errno, EAGAIN);
            close(fd);
            break;
        }
        waiting[nwaiting++] = fd;
    }
    CHECK_LT(nwaiting, 4);
    tlm_client *c =
        fake_client(s.path, (tlm_options){.reconnect_min_ms = 20, .reconnect_max_ms = 50});
    if (!CHECK(c != NULL))
        return;
    int64_t t0 = fake_now_ms();
    CHECK_EQ_INT(fake_send_range(c, 0, 50, 10), 0);
    CHECK_LT(fake_now_ms() - t0, 500);
    fake_sleep_ms(200);
    tlm_stats st;
    tlm_get_stats(c, &st);
    CHECK_EQ_UINT(st.connects, 0);
    CHECK_GE(st.connect_failures, 2);
    CHECK_LE(st.connect_failures, 40);
    CHECK_EQ_UINT(st.queued, 50);
    for (int k = 0; k < nwaiting; k++) { /* the agent takes the ones ahead */
        int fd = fake_socket_accept(&s, 1000);
        CHECK_GE(fd, 0);
        close(fd);
        close(waiting[k]);
    }
    accept_in_order(&s, 2000, 50);
    CHECK_EQ_INT(tlm_flush(c, 1000), TLM_OK);
    check_accounting(c);
    tlm_close(c);
    fake_socket_cleanup(&s);
}

#define THREADS 8
#define PER_THREAD 500

struct sender {
    tlm_client *c;
    int t;
    int failures;
};

static void *send_many(void *arg)
{
    struct sender *s = arg;
    for (int k = 0; k < PER_THREAD; k++)
        if (fake_send_indexed(s->c, (int64_t)s->t * 100000 + k, 50) != TLM_OK)
            s->failures++;
    return NULL;
}

static struct fake_agent agent;

static void test_threads_share_a_client(void)
{
    if (!CHECK_EQ_INT(fake_agent_start(&agent, NULL, NULL), 0))
        return;
    tlm_client *c = fake_client(agent.sock.path, (tlm_options){.queue_bytes = 4 << 20});
    if (!CHECK(c != NULL))
        return;
    pthread_t th[THREADS];
    struct sender s[THREADS];
    for (int t = 0; t < THREADS; t++) {
        s[t] = (struct sender){c, t, 0};
        pthread_create(&th[t], NULL, send_many, &s[t]);
    }
    for (int t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        CHECK_EQ_INT(s[t].failures, 0);
    }
    CHECK_EQ_INT(tlm_flush(c, 10000), TLM_OK);
    CHECK_EQ_INT(fake_agent_wait(&agent, THREADS * PER_THREAD, 10000), THREADS * PER_THREAD);
    int n;
    struct fake_message *log = fake_agent_log(&agent, &n);
    int next[THREADS] = {0}, bad = 0;
    for (int k = 0; k < n; k++) {
        int t = (int)(log[k].i / 100000);
        if (t < 0 || t >= THREADS || log[k].i % 100000 != next[t]++)
            bad++;
    }
    CHECK_EQ_INT(bad, 0);
    free(log);
    tlm_stats st;
    tlm_get_stats(c, &st);
    CHECK_EQ_UINT(st.sent, THREADS * PER_THREAD);
    CHECK_EQ_UINT(st.attempted, THREADS * PER_THREAD);
    check_accounting(c);
    tlm_close(c);
    fake_agent_stop(&agent);
    CHECK_EQ_INT(agent.torn, 0);
}

int main(void)
{
    RUN(test_bound_then_drain);
    RUN(test_too_large);
    RUN(test_no_sigpipe);
    RUN(test_no_thread);
    RUN(test_backoff);
    RUN(test_backlog_full);
    RUN(test_threads_share_a_client);
    return check_finish();
}
