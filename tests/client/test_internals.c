/*
 * The client's own parts, linked from its objects rather than through the
 * library's exported calls: what the I/O thread is woken for.
 */
#include "check.h"
#include "client.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/* Regression: the wake-up test compared fd numbers, and a reconnect can
 * reuse the number of the connection just closed: the I/O thread, asleep
 * in poll() on the old connection, was not woken and went on waiting on a
 * dead socket. A new connection is a new generation. */
static void test_reconnect_with_the_same_fd_number_wakes_the_thread(void)
{
    char dir[] = "/tmp/tlm-internals-XXXXXX";
    if (!CHECK(mkdtemp(dir) != NULL))
        return;
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s/agent.sock", dir);
    int listener = socket(AF_UNIX, SOCK_STREAM, 0);
    if (!CHECK_EQ_INT(bind(listener, (struct sockaddr *)&addr, sizeof addr), 0) ||
        !CHECK_EQ_INT(listen(listener, 8), 0))
        return;
    tlm_options opt;
    tlm_options_init(&opt);
    opt.no_thread = 1;
    tlm_client *c;
    if (!CHECK_EQ_INT(tlm_open(&c, addr.sun_path, &opt), TLM_OK))
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
    close(listener);
    unlink(addr.sun_path);
    rmdir(dir);
}

static struct tlm_entry *queued(struct tlm_queue *q, uint64_t seq)
{
    struct tlm_entry *e = tlm_queue_entry_new(1);
    e->seq = seq;
    e->len = 1;
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

int main(void)
{
    RUN(test_reconnect_with_the_same_fd_number_wakes_the_thread);
    RUN(test_requeue_keeps_order_and_flush_sees_it);
    return check_finish();
}
