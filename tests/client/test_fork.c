/*
 * fork(): the child must not write on the parent's connection; it gets its
 * own, an empty queue and zero counters. fork() while other threads are in
 * the middle of tlm_* calls must not leave the child deadlocked.
 */
#include "check.h"
#include "fake.h"
#include "telemetry.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static struct fake_agent agent;

/* Let the fake agent's thread, which has just handled a message, get back
 * to its poll(): with AddressSanitizer a child forked while another thread
 * is inside malloc or free can hang in its first allocation (see
 * test_fork_under_contention), which is not what these tests are about. */
static void quiet_agent(void)
{
    fake_sleep_ms(100);
}

/* Run fn in a child; its exit status (or 128 + signal). The child has
 * timeout_s seconds before SIGALRM ends it. */
static int in_child(int (*fn)(tlm_client *c), tlm_client *c, unsigned timeout_s)
{
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGALRM, SIG_DFL);
        alarm(timeout_s);
        _exit(fn(c));
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int child_sends(tlm_client *c)
{
    tlm_stats st;
    tlm_get_stats(c, &st);
    if (st.attempted != 0 || st.queued != 0 || st.connects != 0)
        return 10; /* the parent's counters or queue came along */
    if (fake_send_indexed(c, 1000 + getpid() % 1000, 10) != TLM_OK)
        return 11;
    if (tlm_flush(c, 3000) != TLM_OK)
        return 12;
    tlm_get_stats(c, &st);
    if (st.sent != 1 || st.connects != 1)
        return 13;
    tlm_close(c);
    return 0;
}

static void test_child_gets_its_own_connection(void)
{
    if (!CHECK_EQ_INT(fake_agent_start(&agent, NULL, NULL), 0))
        return;
    tlm_client *c;
    if (!CHECK_EQ_INT(tlm_open(&c, agent.sock.path, NULL), TLM_OK))
        return;
    CHECK_EQ_INT(fake_send_indexed(c, 1, 10), TLM_OK);
    CHECK_EQ_INT(tlm_flush(c, 2000), TLM_OK);
    CHECK_EQ_INT(fake_agent_wait(&agent, 1, 2000), 1);
    quiet_agent();
    CHECK_EQ_INT(in_child(child_sends, c, 10), 0);
    CHECK_EQ_INT(fake_send_indexed(c, 2, 10), TLM_OK); /* the parent's connection still works */
    CHECK_EQ_INT(tlm_flush(c, 2000), TLM_OK);
    CHECK_EQ_INT(fake_agent_wait(&agent, 3, 2000), 3);
    int n;
    struct fake_message *log = fake_agent_log(&agent, &n);
    pid_t me = getpid();
    int parent_conn = -1;
    for (int k = 0; k < n; k++) {
        check_context("message %d: i %jd on connection %d from pid %d", k, (intmax_t)log[k].i,
                      log[k].conn, (int)log[k].pid);
        if (log[k].i < 1000) {
            CHECK_EQ_INT(log[k].pid, me);
            if (parent_conn < 0)
                parent_conn = log[k].conn;
            CHECK_EQ_INT(log[k].conn, parent_conn); /* one connection, across the fork */
        } else {
            CHECK(log[k].pid != me);
            CHECK(log[k].conn != parent_conn);
        }
    }
    check_context(NULL);
    free(log);
    tlm_stats st;
    tlm_get_stats(c, &st);
    CHECK_EQ_UINT(st.sent, 2);
    CHECK_EQ_UINT(st.connects, 1);
    CHECK_EQ_UINT(st.disconnects, 0);
    tlm_close(c);
    fake_agent_stop(&agent);
    CHECK_EQ_INT(agent.torn, 0);
}

/* Reliable: what the parent holds unacked is not the child's. */
static enum fake_action never_ack(const struct fake_message *m, void *arg)
{
    (void)m;
    (void)arg;
    return FAKE_SILENT;
}

static int child_reliable(tlm_client *c)
{
    tlm_stats st;
    tlm_get_stats(c, &st);
    if (st.queued != 0 || st.queued_bytes != 0 || st.attempted != 0)
        return 10;
    if (fake_send_indexed(c, 2000, 10) != TLM_OK)
        return 11;
    /* the child's own thread writes it; it is never acknowledged */
    if (tlm_flush(c, 300) != TLM_ETIMEOUT)
        return 13;
    tlm_get_stats(c, &st);
    return st.queued == 1 && st.sent == 1 ? 0 : 12;
}

static void test_child_does_not_inherit_queue(void)
{
    if (!CHECK_EQ_INT(fake_agent_start(&agent, never_ack, NULL), 0))
        return;
    tlm_options o;
    tlm_options_init(&o);
    o.reliable = 1;
    tlm_client *c;
    if (!CHECK_EQ_INT(tlm_open(&c, agent.sock.path, &o), TLM_OK))
        return;
    for (int i = 0; i < 5; i++)
        CHECK_EQ_INT(fake_send_indexed(c, i, 10), TLM_OK);
    CHECK_EQ_INT(fake_agent_wait(&agent, 5, 2000), 5);
    quiet_agent();
    CHECK_EQ_INT(in_child(child_reliable, c, 10), 0);
    CHECK_EQ_INT(fake_agent_wait(&agent, 6, 2000), 6);
    int n;
    struct fake_message *log = fake_agent_log(&agent, &n);
    int from_child = 0;
    for (int k = 0; k < n; k++)
        from_child += log[k].pid != getpid();
    CHECK_EQ_INT(from_child, 1); /* the child's one event, none of the parent's */
    free(log);
    tlm_stats st;
    tlm_get_stats(c, &st);
    CHECK_EQ_UINT(st.queued, 5);
    tlm_close(c);
    fake_agent_stop(&agent);
}

struct hammer {
    tlm_client *c;
    int stop; /* __atomic */
    int64_t n;
};

static void *hammer(void *arg)
{
    struct hammer *h = arg;
    while (!__atomic_load_n(&h->stop, __ATOMIC_RELAXED)) {
        fake_send_indexed(h->c, h->n++ % 1000, 200);
        if (h->n % 64 == 0)
            tlm_flush(h->c, 0);
    }
    return NULL;
}

static int child_quick(tlm_client *c)
{
    if (fake_send_indexed(c, 5000, 10) != TLM_OK)
        return 11;
    if (tlm_flush(c, 3000) != TLM_OK)
        return 12;
    tlm_close(c);
    return 0;
}

/* Four threads keep the client's lock busy while the main thread forks.
 * Its own ctest, registered only in builds without AddressSanitizer: GCC's
 * libasan does not lock its allocator around fork(), so a child forked while
 * another thread is inside malloc can hang in malloc, whatever the library
 * does (glibc's malloc is safe). */
static void test_fork_under_contention(void)
{
    if (!CHECK_EQ_INT(fake_agent_start(&agent, NULL, NULL), 0))
        return;
    tlm_client *c;
    if (!CHECK_EQ_INT(tlm_open(&c, agent.sock.path, NULL), TLM_OK))
        return;
    struct hammer h[4];
    pthread_t th[4];
    for (int t = 0; t < 4; t++) {
        h[t] = (struct hammer){c, 0, 0};
        pthread_create(&th[t], NULL, hammer, &h[t]);
    }
    int failed = 0;
    for (int k = 0; k < 30; k++) {
        int rc = in_child(child_quick, c, 10);
        if (rc != 0) {
            failed++;
            fprintf(stderr, "child %d ended with %d\n", k, rc);
        }
    }
    CHECK_EQ_INT(failed, 0);
    for (int t = 0; t < 4; t++) {
        __atomic_store_n(&h[t].stop, 1, __ATOMIC_RELAXED);
        pthread_join(th[t], NULL);
    }
    CHECK_EQ_INT(tlm_flush(c, 5000), TLM_OK);
    tlm_stats st;
    tlm_get_stats(c, &st);
    CHECK_GT(st.sent, 0);
    CHECK_EQ_UINT(st.sent + st.dropped_queue_full + st.queued, st.attempted);
    tlm_close(c);
    fake_agent_stop(&agent);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "contention") == 0) {
        RUN(test_fork_under_contention);
    } else {
        RUN(test_child_gets_its_own_connection);
        RUN(test_child_does_not_inherit_queue);
    }
    return check_finish();
}
