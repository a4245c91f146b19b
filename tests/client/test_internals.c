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

int main(void)
{
    RUN(test_reconnect_with_the_same_fd_number_wakes_the_thread);
    return check_finish();
}
