/*
 * The client's own parts, linked from its objects rather than through the
 * library's exported calls: what the I/O thread is woken for, that a send
 * does not wait for the lock the thread works under, and the pool of
 * touched memory the thread keeps for senders' entries.
 */
#define _GNU_SOURCE /* pthread_timedjoin_np */
#include "check.h"
#include "client.h"
#include "scan.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* A listening socket in a new temporary directory, as the agent's. */
struct agent_socket {
    char dir[32];
    struct sockaddr_un addr;
    int fd;
};

static int agent_listen(struct agent_socket *a)
{
    snprintf(a->dir, sizeof a->dir, "/tmp/tlm-internals-XXXXXX");
    if (!CHECK(mkdtemp(a->dir) != NULL))
        return 0;
    a->addr = (struct sockaddr_un){.sun_family = AF_UNIX};
    snprintf(a->addr.sun_path, sizeof a->addr.sun_path, "%s/agent.sock", a->dir);
    a->fd = socket(AF_UNIX, SOCK_STREAM, 0);
    return CHECK_EQ_INT(bind(a->fd, (struct sockaddr *)&a->addr, sizeof a->addr), 0) &&
           CHECK_EQ_INT(listen(a->fd, 8), 0);
}

static void agent_unlisten(struct agent_socket *a)
{
    close(a->fd);
    unlink(a->addr.sun_path);
    rmdir(a->dir);
}

/* Regression: the wake-up test compared fd numbers, and a reconnect can
 * reuse the number of the connection just closed: the I/O thread, asleep
 * in poll() on the old connection, was not woken and went on waiting on a
 * dead socket. A new connection is a new generation. */
static void test_reconnect_with_the_same_fd_number_wakes_the_thread(void)
{
    struct agent_socket a;
    if (!agent_listen(&a))
        return;
    tlm_options opt;
    tlm_options_init(&opt);
    opt.no_thread = 1;
    tlm_client *c;
    if (!CHECK_EQ_INT(tlm_open(&c, a.addr.sun_path, &opt), TLM_OK))
        return;
    pthread_mutex_lock(&c->lock);
    struct tlm_plan before, after;
    if (CHECK_EQ_INT(tlm_conn_open(c, 0), 0)) {
        int first_fd = c->fd;
        tlm_conn_plan(c, 0, &before);
        CHECK(!tlm_plan_changed(&before, &before));
        tlm_conn_drop(c, 0, TLM_CONN_BROKEN);
        if (CHECK_EQ_INT(tlm_conn_open(c, 0), 0)) {
            CHECK_EQ_INT(c->fd, first_fd); /* the same number, another socket */
            tlm_conn_plan(c, 0, &after);
            CHECK(tlm_plan_changed(&before, &after));
        }
    }
    /* and the other reasons to wake it */
    struct tlm_plan more = before;
    more.events |= POLLOUT;
    CHECK(tlm_plan_changed(&before, &more));
    struct tlm_plan sooner = before;
    sooner.deadline = before.deadline - 1;
    CHECK(tlm_plan_changed(&before, &sooner));
    struct tlm_plan fewer = more;
    fewer.events = POLLIN;
    CHECK(!tlm_plan_changed(&more, &fewer));
    pthread_mutex_unlock(&c->lock);
    tlm_close(c);
    agent_unlisten(&a);
}

static struct tlm_entry *queued(struct tlm_queue *q, uint64_t seq)
{
    struct tlm_entry *e = tlm_queue_entry_new(NULL, 1);
    e->seq = seq;
    e->len = 1;
    CHECK_EQ_INT(tlm_queue_reserve(q, e->len, 100), 0);
    tlm_queue_push(q, e);
    return e;
}

/* A deferred entry goes back to the write cursor, behind entries written
 * after it: the queue is then out of seq order, and "is everything before
 * seq N gone?" must still see it (a flush must not return early). */
static void test_requeue_keeps_order_and_flush_sees_it(void)
{
    struct tlm_queue q;
    tlm_queue_init(&q);
    struct tlm_entry *a = queued(&q, 1), *b = queued(&q, 2), *c = queued(&q, 3);
    queued(&q, 4);
    q.next = TAILQ_NEXT(c, link); /* 1, 2, 3 written; 4 not yet */
    CHECK_EQ_INT(tlm_queue_done_before(&q, 1), 1);
    CHECK_EQ_INT(tlm_queue_done_before(&q, 2), 0);
    tlm_queue_requeue(&q, a); /* 1 deferred */
    tlm_queue_requeue(&q, c); /* then 3 */
    static const uint64_t order[] = {2, 1, 3, 4};
    int k = 0;
    struct tlm_entry *e;
    TAILQ_FOREACH(e, &q.entries, link)
        CHECK_EQ_UINT(e->seq, order[k++]);
    CHECK(q.next == a); /* writing resumes with 1, then 3, then 4 */
    CHECK_EQ_UINT(q.displaced, 2);
    tlm_queue_remove(&q, b); /* 2 acked */
    CHECK_EQ_INT(tlm_queue_done_before(&q, 2), 0); /* 1 is still there */
    tlm_queue_remove(&q, a);
    CHECK_EQ_INT(tlm_queue_done_before(&q, 2), 1);
    CHECK_EQ_INT(tlm_queue_done_before(&q, 4), 0);
    CHECK_EQ_UINT(q.displaced, 1);
    tlm_queue_remove(&q, c);
    CHECK_EQ_UINT(q.displaced, 0); /* sorted again: 4 */
    CHECK_EQ_INT(tlm_queue_done_before(&q, 4), 1);
    tlm_queue_clear(&q);
}

#define HANDED_OVER 50

struct sender {
    tlm_client *c;
    int ok; /* sends that returned TLM_OK */
};

static void *send_events(void *arg)
{
    struct sender *s = arg;
    for (int i = 0; i < HANDED_OVER; i++) {
        tlm_event *ev;
        if (tlm_event_new(&ev, "debug-ping") != TLM_OK)
            continue;
        tlm_event_add_int(ev, "i", i);
        s->ok += tlm_send(s->c, ev) == TLM_OK;
        tlm_event_free(ev);
    }
    return NULL;
}

/* Complete msgpack objects in fd's bytes until it is quiet for 300 ms. */
static int objects_read(int fd)
{
    static unsigned char data[1 << 16];
    size_t len = 0;
    struct pollfd pfd = {fd, POLLIN, 0};
    while (len < sizeof data && poll(&pfd, 1, 300) == 1) {
        ssize_t n = read(fd, data + len, sizeof data - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    int objects = 0;
    size_t used = 0, objlen;
    while (scan_object(data + used, len - used, &objlen) == SCAN_COMPLETE) {
        used += objlen;
        objects++;
    }
    return used == len ? objects : -1;
}

/* While the I/O thread runs, a send only hands the event over under a lock
 * of its own: it does not wait for the client's lock, which the thread
 * holds while it works (and a busy machine may preempt it there). Held
 * here by the test, the sends still return at once; the thread writes
 * them, in order, once it has the lock again. */
static void test_send_does_not_wait_for_the_threads_lock(void)
{
    struct agent_socket a;
    if (!agent_listen(&a))
        return;
    tlm_client *c;
    if (!CHECK_EQ_INT(tlm_open(&c, a.addr.sun_path, NULL), TLM_OK))
        return;
    struct sender first = {c, 0};
    send_events(&first); /* starts the thread, which connects */
    int conn = accept(a.fd, NULL, NULL);
    CHECK_GE(conn, 0);
    CHECK_EQ_INT(tlm_flush(c, 5000), TLM_OK);
    CHECK_EQ_INT(objects_read(conn), HANDED_OVER);

    pthread_mutex_lock(&c->lock); /* as the thread at work */
    struct sender second = {c, 0};
    pthread_t t;
    if (CHECK_EQ_INT(pthread_create(&t, NULL, send_events, &second), 0)) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 10;
        int joined = pthread_timedjoin_np(t, NULL, &until);
        CHECK_EQ_INT(joined, 0); /* else the sends wait for the lock */
        pthread_mutex_unlock(&c->lock);
        if (joined != 0)
            pthread_join(t, NULL);
    } else {
        pthread_mutex_unlock(&c->lock);
    }
    CHECK_EQ_INT(second.ok, HANDED_OVER);
    CHECK_EQ_INT(tlm_flush(c, 5000), TLM_OK);
    CHECK_EQ_INT(objects_read(conn), HANDED_OVER);
    tlm_stats st;
    CHECK_EQ_INT(tlm_get_stats(c, &st), TLM_OK);
    CHECK_EQ_UINT(st.attempted, 2 * HANDED_OVER);
    CHECK_EQ_UINT(st.sent, 2 * HANDED_OVER);
    CHECK_EQ_UINT(st.queued, 0);
    tlm_close(c);
    close(conn);
    agent_unlisten(&a);
}

/* Carvings come from one slab until it is full; a slab whose carvings are
 * all released goes back to the ready list, touched, for the next; large
 * entries and an empty pool are left to malloc. */
static void test_pool_carves_and_recycles_slabs(void)
{
    struct tlm_pool p;
    if (!CHECK_EQ_INT(tlm_pool_init(&p), 0))
        return;
    struct tlm_slab *slab = NULL;
    CHECK(tlm_pool_alloc(&p, 100, &slab) == NULL); /* nothing ready yet */
    CHECK_EQ_UINT(tlm_pool_refill(&p), 0);
    CHECK_EQ_UINT(p.nready, TLM_POOL_READY);
    CHECK(tlm_pool_alloc(&p, TLM_POOL_SLAB_BYTES / 4 + 1, &slab) == NULL); /* large */
    enum { MOST = TLM_POOL_SLAB_BYTES / 1008 + 1 }; /* 1,000 bytes take 1,008 */
    unsigned char *mem[MOST];
    struct tlm_slab *from[MOST];
    int per_slab = -1; /* carvings the first slab held */
    for (int i = 0; i < MOST && per_slab < 0; i++) {
        mem[i] = tlm_pool_alloc(&p, 1000, &from[i]);
        if (!CHECK(mem[i] != NULL))
            return;
        memset(mem[i], i, 1000);
        CHECK_EQ_UINT((uintptr_t)mem[i] % 16, 0);
        if (i > 0 && from[i] != from[0])
            per_slab = i;
        else if (i > 0)
            CHECK(mem[i] == mem[i - 1] + 1008);
    }
    /* all of the slab but its header */
    if (!CHECK(per_slab >= TLM_POOL_SLAB_BYTES / 1008 - 1))
        return;
    CHECK_EQ_UINT(p.taken, 2);
    CHECK_EQ_UINT(p.nready, TLM_POOL_READY - 2);
    for (int i = 0; i < per_slab; i++) {
        CHECK_EQ_INT(mem[i][999], i);
        tlm_pool_release(from[i]);
    }
    CHECK_EQ_UINT(p.nready, TLM_POOL_READY - 1); /* the first slab is back */
    tlm_pool_release(from[per_slab]); /* the current slab stays current */
    CHECK_EQ_UINT(p.nready, TLM_POOL_READY - 1);
    CHECK_EQ_UINT(tlm_pool_refill(&p), 2);
    CHECK_EQ_UINT(p.nready, TLM_POOL_READY);
    tlm_pool_destroy(&p);
}

/* With the agent absent, the thread keeps touched slabs ready, and queued
 * events are carved from them rather than from fresh memory. */
static void test_queued_events_use_the_pool(void)
{
    char dir[] = "/tmp/tlm-internals-XXXXXX";
    if (!CHECK(mkdtemp(dir) != NULL))
        return;
    char path[64];
    snprintf(path, sizeof path, "%s/absent.sock", dir);
    tlm_client *c;
    if (!CHECK_EQ_INT(tlm_open(&c, path, NULL), TLM_OK))
        return;
    struct sender s = {c, 0};
    send_events(&s); /* starts the thread */
    for (int i = 0; i < 200; i++) {
        pthread_mutex_lock(&c->pool.lock);
        unsigned ready = c->pool.nready;
        pthread_mutex_unlock(&c->pool.lock);
        if (ready == TLM_POOL_READY)
            break;
        usleep(10000);
    }
    send_events(&s);
    CHECK_EQ_INT(s.ok, 2 * HANDED_OVER);
    pthread_mutex_lock(&c->lock);
    pthread_mutex_lock(&c->inbox_lock);
    int carved = 0, held = 0;
    struct tlm_entry *e;
    TAILQ_FOREACH(e, &c->queue.entries, link)
    carved += e->slab != NULL, held++;
    TAILQ_FOREACH(e, &c->inbox, link)
    carved += e->slab != NULL, held++;
    pthread_mutex_unlock(&c->inbox_lock);
    pthread_mutex_unlock(&c->lock);
    CHECK_EQ_INT(held, 2 * HANDED_OVER);
    CHECK_GE(carved, HANDED_OVER); /* at least the second half */
    tlm_close(c);
    rmdir(dir);
}

int main(void)
{
    RUN(test_reconnect_with_the_same_fd_number_wakes_the_thread);
    RUN(test_requeue_keeps_order_and_flush_sees_it);
    RUN(test_send_does_not_wait_for_the_threads_lock);
    RUN(test_pool_carves_and_recycles_slabs);
    RUN(test_queued_events_use_the_pool);
    return check_finish();
}
