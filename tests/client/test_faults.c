/*
 * Faults on the client's side of the socket: an agent (or whatever listens
 * at the path) that writes back far more than replies, and an allocation
 * that fails after part of an event is already on the wire. Sending must
 * stay quick, and the stream must never carry a torn event followed by
 * another one.
 *
 * Linked with -Wl,--wrap=malloc: __wrap_malloc below fails one allocation
 * on request and passes every other one through.
 */
#include "check.h"
#include "fake.h"
#include "telemetry.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);

static size_t fail_malloc_from; /* __atomic; 0: never. The next malloc of at least this fails */

void *__wrap_malloc(size_t size)
{
    size_t from = __atomic_load_n(&fail_malloc_from, __ATOMIC_RELAXED);
    if (from != 0 && size >= from &&
        __atomic_compare_exchange_n(&fail_malloc_from, &from, 0, 0, __ATOMIC_RELAXED,
                                    __ATOMIC_RELAXED))
        return NULL;
    return __real_malloc(size);
}

struct flood {
    int fd;
    int stop; /* __atomic */
};

/* Write nil objects (valid msgpack, no reply) at the client as fast as it
 * takes them, and throw away what it writes. */
static void *flood_thread(void *arg)
{
    struct flood *f = arg;
    unsigned char nils[65536], sink[65536];
    memset(nils, 0xc0, sizeof nils);
    while (!__atomic_load_n(&f->stop, __ATOMIC_RELAXED)) {
        struct pollfd p = {f->fd, POLLIN | POLLOUT, 0};
        if (poll(&p, 1, 10) <= 0)
            continue;
        if ((p.revents & POLLOUT) != 0 &&
            send(f->fd, nils, sizeof nils, MSG_NOSIGNAL | MSG_DONTWAIT) < 0 && errno != EAGAIN)
            break;
        while (recv(f->fd, sink, sizeof sink, MSG_DONTWAIT) > 0)
            ;
    }
    return NULL;
}

/* While the peer floods the connection, every tlm_send still returns at
 * once: reading what the peer writes must not hold the client's lock for as
 * long as the bytes keep coming. */
static void flood_run(int reliable)
{
    struct fake_socket s;
    if (!CHECK_EQ_INT(fake_socket_init(&s), 0) || !CHECK_EQ_INT(fake_socket_listen(&s), 0))
        return;
    tlm_client *c = fake_client(s.path, (tlm_options){.reliable = reliable});
    if (!CHECK(c != NULL))
        return;
    CHECK_EQ_INT(fake_send_indexed(c, 0, 10), TLM_OK);
    struct flood f = {fake_socket_accept(&s, 2000), 0};
    if (!CHECK_GE(f.fd, 0))
        return;
    pthread_t th;
    pthread_create(&th, NULL, flood_thread, &f);
    int64_t slowest = 0, end = fake_now_ms() + 1500;
    int sends = 0, failed = 0;
    while (fake_now_ms() < end) {
        int64_t t0 = fake_now_ms();
        failed += fake_send_indexed(c, ++sends, 10) != TLM_OK;
        int64_t took = fake_now_ms() - t0;
        slowest = took > slowest ? took : slowest;
        fake_sleep_ms(1);
    }
    __atomic_store_n(&f.stop, 1, __ATOMIC_RELAXED);
    pthread_join(th, NULL);
    CHECK_EQ_INT(failed, 0);
    CHECK_GT(sends, 50);
    CHECK_LT(slowest, 100); /* it was the whole flood, or hundreds of ms */
    tlm_close(c);
    close(f.fd);
    fake_socket_cleanup(&s);
}

static void test_reply_flood_fire_and_forget(void)
{
    flood_run(0);
}

static void test_reply_flood_reliable(void)
{
    flood_run(1);
}

#define BIG_PAD 600000 /* an event the socket buffer cannot take in one write */

/* Without the I/O thread a send writes straight to the socket. The socket
 * takes only part of a big event, then the copy of its rest cannot be
 * allocated: the send fails with TLM_ENOMEM, and the connection carrying
 * the torn event must be closed, so that the next event starts a stream of
 * its own instead of continuing the torn one. */
static void test_enomem_after_partial_write(void)
{
    struct fake_socket s;
    if (!CHECK_EQ_INT(fake_socket_init(&s), 0) || !CHECK_EQ_INT(fake_socket_listen(&s), 0))
        return;
    tlm_client *c =
        fake_client(s.path, (tlm_options){.queue_bytes = 8 << 20, .no_thread = 1});
    if (!CHECK(c != NULL))
        return;
    CHECK_EQ_INT(fake_send_indexed(c, 0, 10), TLM_OK);
    int fd = fake_socket_accept(&s, 2000);
    if (!CHECK_GE(fd, 0))
        return;
    tlm_event *big;
    if (!CHECK_EQ_INT(tlm_event_new(&big, "debug-ping"), TLM_OK))
        return;
    tlm_event_add_int(big, "i", 1);
    char *pad = malloc(BIG_PAD);
    memset(pad, 'b', BIG_PAD);
    tlm_event_add_strn(big, "pad", pad, BIG_PAD);
    free(pad);
    const void *data;
    size_t len;
    CHECK_EQ_INT(tlm_event_encode(big, &data, &len), TLM_OK); /* tlm_send allocates no more */
    __atomic_store_n(&fail_malloc_from, (size_t)BIG_PAD, __ATOMIC_RELAXED);
    CHECK_EQ_INT(tlm_send(c, big), TLM_ENOMEM);
    CHECK_EQ_UINT(__atomic_load_n(&fail_malloc_from, __ATOMIC_RELAXED), 0); /* it did fail */
    tlm_event_free(big);
    CHECK_EQ_INT(fake_send_indexed(c, 2, 10), TLM_OK);

    /* the first connection: event 0, part of event 1, then its end */
    struct fake_bytes first = {0};
    fake_read(fd, &first, 0, 300);
    char probe;
    CHECK_EQ_INT(recv(fd, &probe, 1, MSG_DONTWAIT), 0); /* closed by the client */
    size_t used;
    CHECK_EQ_INT(fake_objects(first.data, first.len, &used, NULL, NULL), 1);
    CHECK_LT(used, first.len); /* a torn event 1, and nothing after it */
    close(fd);

    /* event 2 on a connection of its own, whole */
    fd = fake_socket_accept(&s, 2000);
    if (CHECK_GE(fd, 0)) {
        struct fake_bytes second = {0};
        fake_read(fd, &second, 0, 300);
        CHECK_EQ_INT(fake_objects(second.data, second.len, &used, NULL, NULL), 1);
        CHECK_EQ_UINT(used, second.len);
        fake_bytes_free(&second);
        close(fd);
    }
    tlm_stats st;
    tlm_get_stats(c, &st);
    CHECK_EQ_UINT(st.attempted, 3);
    CHECK_EQ_UINT(st.sent, 2);
    CHECK_EQ_UINT(st.dropped_queue_full, 1);
    CHECK_EQ_UINT(st.queued, 0);
    fake_bytes_free(&first);
    tlm_close(c);
    fake_socket_cleanup(&s);
}

int main(void)
{
    RUN(test_reply_flood_fire_and_forget);
    RUN(test_reply_flood_reliable);
    RUN(test_enomem_after_partial_write);
    return check_finish();
}
