/*
 * Faults at the edges of the libraries the agent uses, injected with the
 * linker's --wrap (see CMakeLists.txt): a timer that cannot be armed, an
 * unpacker out of memory, a listener that cannot be set up after the
 * socket file exists, a spool record that finds no memory to be queued in.
 * Each was mishandled once; each test failed then.
 */
#include "account.h"
#include "batch.h"
#include "check.h"
#include "support.h"
#include "config.h"
#include "conn.h"
#include "listener.h"
#include "metrics.h"
#include "pipeline.h"
#include "spool.h"

#include <errno.h>
#include <event2/listener.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* How many of the next calls fail. */
static int fail_event_add, fail_unpack, fail_evconnlistener, fail_buf_reserve;

/* A buf that must grow finds no memory (as buf_reserve fails: the buf
 * marked failed). */
int __real_buf_reserve(struct buf *b, size_t extra);
int __wrap_buf_reserve(struct buf *b, size_t extra)
{
    if (fail_buf_reserve > 0 && b->cap - b->len < extra) {
        fail_buf_reserve--;
        b->failed = 1;
        return -1;
    }
    return __real_buf_reserve(b, extra);
}

int __real_event_add(struct event *ev, const struct timeval *tv);
int __wrap_event_add(struct event *ev, const struct timeval *tv)
{
    if (fail_event_add > 0) {
        fail_event_add--;
        return -1;
    }
    return __real_event_add(ev, tv);
}

/* msgpack-c's zone asks for a new chunk: the stream's tree outgrew the
 * first one. */
void *__real_msgpack_zone_malloc_expand(msgpack_zone *zone, size_t size);
void *__wrap_msgpack_zone_malloc_expand(msgpack_zone *zone, size_t size)
{
    if (fail_unpack > 0) {
        fail_unpack--;
        return NULL;
    }
    return __real_msgpack_zone_malloc_expand(zone, size);
}

struct evconnlistener *__real_evconnlistener_new(struct event_base *base, evconnlistener_cb cb,
                                                 void *ptr, unsigned flags, int backlog,
                                                 evutil_socket_t fd);
struct evconnlistener *__wrap_evconnlistener_new(struct event_base *base, evconnlistener_cb cb,
                                                 void *ptr, unsigned flags, int backlog,
                                                 evutil_socket_t fd)
{
    if (fail_evconnlistener > 0) {
        fail_evconnlistener--;
        return NULL;
    }
    return __real_evconnlistener_new(base, cb, ptr, flags, backlog, fd);
}

/* A configuration, budget, batcher and pipeline; sealed batches are kept. */
struct fixture {
    struct config cfg;
    struct event_base *base;
    struct budget budget;
    struct batcher batcher;
    struct pipeline pipeline;
    struct batch *sealed;
    int nsealed;
};

static void on_sealed(struct batch *batch, void *arg)
{
    struct fixture *f = arg;
    f->nsealed++;
    if (f->sealed != NULL)
        batch_done(f->sealed, &f->budget, 1, 0);
    f->sealed = batch;
}

static int fixture_init(struct fixture *f, char *socket_path)
{
    char socket_env[200];
    snprintf(socket_env, sizeof socket_env, "TELEMETRY_AGENT_AGENT_SOCKET=%s",
             socket_path ? socket_path : "/nonexistent/agent.sock");
    char *env[] = {socket_env, NULL};
    memset(f, 0, sizeof *f);
    if (!CHECK(fresh_config(&f->cfg, env)))
        return 0;
    struct batch_limits limits = {.max_events = 100, .max_body_bytes = 1 << 20,
                                  .envelope_bytes = 100, .max_age_ms = 3600000,
                                  .max_event_bytes = 1 << 15};
    budget_init(&f->budget, 1 << 22);
    f->base = event_base_new();
    return CHECK(f->base != NULL) &&
           CHECK_EQ_INT(batcher_init(&f->batcher, f->base, &limits, &f->budget, on_sealed, f),
                        0) &&
           CHECK_EQ_INT(pipeline_init(&f->pipeline, &f->cfg, NULL, &f->batcher, NULL), 0);
}

static void fixture_destroy(struct fixture *f)
{
    if (f->sealed != NULL)
        batch_done(f->sealed, &f->budget, 1, 0);
    pipeline_destroy(&f->pipeline);
    batcher_destroy(&f->batcher);
    event_base_free(f->base);
    config_free(&f->cfg);
}

/* Regression: a batch's age timer that could not be armed (evtimer_add's
 * result was not checked) left the batch open for good, unsealed by age.
 * It is sealed at once instead. */
static void test_age_timer_not_armed(void)
{
    struct fixture f;
    if (!fixture_init(&f, NULL))
        return;
    size_t mark;
    struct buf *out = batcher_begin(&f.batcher, &mark);
    if (!CHECK(out != NULL))
        return;
    buf_append_str(out, "{\"event\":\"e\"}");
    fail_event_add = 1;
    CHECK_EQ_INT(batcher_commit(&f.batcher, mark), BATCH_ADDED);
    CHECK_EQ_INT(fail_event_add, 0);
    CHECK_EQ_INT(f.nsealed, 1);
    if (CHECK(f.sealed != NULL))
        CHECK_EQ_UINT(f.sealed->count, 1);
    CHECK(f.batcher.open == NULL);
    fixture_destroy(&f);
}

/* Every msgpack reply the agent wrote on fd until it closed it (or 2 s). */
static size_t read_replies(struct event_base *base, int fd, msgpack_unpacked *out, size_t max)
{
    msgpack_unpacker u;
    msgpack_unpacker_init(&u, 4096);
    size_t n = 0;
    for (int round = 0; round < 200; round++) {
        event_base_loop(base, EVLOOP_NONBLOCK);
        msgpack_unpacker_reserve_buffer(&u, 4096);
        ssize_t got = recv(fd, msgpack_unpacker_buffer(&u), 4096, MSG_DONTWAIT);
        if (got == 0)
            break;
        if (got < 0) {
            usleep(10000);
            continue;
        }
        msgpack_unpacker_buffer_consumed(&u, (size_t)got);
        while (n < max && msgpack_unpacker_next(&u, &out[n]) == MSGPACK_UNPACK_SUCCESS)
            n++;
    }
    msgpack_unpacker_destroy(&u);
    return n;
}

/* The str at key in map obj, as a NUL-terminated copy in out. */
static const char *map_str(const msgpack_object *obj, const char *key, char *out, size_t len)
{
    out[0] = '\0';
    for (uint32_t i = 0; obj->type == MSGPACK_OBJECT_MAP && i < obj->via.map.size; i++) {
        const msgpack_object_kv *kv = &obj->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == strlen(key) &&
            memcmp(kv->key.via.str.ptr, key, strlen(key)) == 0 &&
            kv->val.type == MSGPACK_OBJECT_STR)
            snprintf(out, len, "%.*s", (int)kv->val.via.str.size, kv->val.via.str.ptr);
    }
    return out;
}

/* Regression: when there was no memory for a message's tree, the
 * producer was told not_msgpack, and the client libraries then gave the
 * event up as a bad message. It is no_memory, a fault of the agent's: the
 * acknowledgements owed before it are still written. */
static void test_unpacker_out_of_memory_is_no_memory(void)
{
    struct fixture f;
    int fds[2];
    if (!fixture_init(&f, NULL) ||
        !CHECK_EQ_INT(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0))
        return;
    struct conn_set set;
    if (!CHECK_EQ_INT(conn_set_init(&set, f.base, &f.cfg, &f.pipeline), 0))
        return;
    struct peer peer;
    peer_identify(fds[0], &peer);
    if (!CHECK_EQ_INT(conn_open(&set, fds[0], &peer), 0))
        return;
    static const unsigned char first[] = "\x82\xa5" "event\xa1" "e\xa5" "chunk\xa1" "1";
    /* an array of 1,000 nils: 24 KB of tree, more than the zone's first chunk */
    unsigned char second[26 + 1000];
    memcpy(second, "\x82\xa5" "event\xa1" "e\xaa" "properties\x81\xa1" "a\xdc\x03\xe8", 26);
    memset(second + 26, 0xc0, 1000);
    CHECK_EQ_INT(send(fds[1], first, sizeof first - 1, 0), (ssize_t)(sizeof first - 1));
    msgpack_unpacked replies[4];
    for (int i = 0; i < 4; i++)
        msgpack_unpacked_init(&replies[i]);
    event_base_loop(f.base, EVLOOP_NONBLOCK);
    fail_unpack = 1;
    CHECK_EQ_INT(send(fds[1], second, sizeof second, 0), (ssize_t)sizeof second);
    size_t n = read_replies(f.base, fds[1], replies, 4);
    char text[64];
    if (CHECK_EQ_UINT(n, 2)) {
        CHECK_STR_EQ(map_str(&replies[0].data, "ack", text, sizeof text), "1");
        CHECK_STR_EQ(map_str(&replies[1].data, "error", text, sizeof text), "no_memory");
    }
    CHECK_EQ_UINT(set.count, 0); /* closed */
    for (int i = 0; i < 4; i++)
        msgpack_unpacked_destroy(&replies[i]);
    close(fds[1]);
    conn_set_drain(&set);
    conn_set_destroy(&set);
    fixture_destroy(&f);
}

/* Regression: when the listener could not be set up after bind() made the
 * socket file, the file was left behind. */
static void test_listener_failure_leaves_no_socket_file(void)
{
    char dir[] = "/tmp/ta-faults-XXXXXX";
    if (!CHECK(mkdtemp(dir) != NULL))
        return;
    char path[64];
    snprintf(path, sizeof path, "%s/agent.sock", dir);
    struct fixture f;
    if (!fixture_init(&f, path))
        return;
    char err[256];
    fail_evconnlistener = 1;
    struct listener *l = listener_open(f.base, &f.cfg, &f.pipeline, err, sizeof err);
    CHECK(l == NULL);
    CHECK_CONTAINS(err, path);
    struct stat st;
    CHECK_EQ_INT(stat(path, &st), -1);
    CHECK_EQ_INT(errno, ENOENT);
    /* and without the fault, the same path works */
    l = listener_open(f.base, &f.cfg, &f.pipeline, err, sizeof err);
    if (CHECK(l != NULL)) {
        CHECK_EQ_INT(stat(path, &st), 0);
        listener_free(l);
        CHECK_EQ_INT(stat(path, &st), -1);
    }
    fixture_destroy(&f);
    rmdir(dir);
}

/* Regression: a record the spool found no memory to queue was reported as
 * a full spool (SPOOL_FULL: "holds spool.max_bytes of undelivered
 * events"). It is SPOOL_NO_MEMORY, nothing of it is taken, and the records
 * around it are logged whole. */
static void test_a_record_without_memory_is_no_memory_and_not_taken(void)
{
    char dir[] = "/tmp/faults-spool-XXXXXX", err[256];
    if (!CHECK(mkdtemp(dir) != NULL))
        return;
    struct spool_recovery rec;
    struct spool *s = spool_open(dir, 1 << 24, 1 << 22, &rec, err, sizeof err);
    buf_free(&rec.state);
    if (!CHECK(s != NULL))
        return;
    static char big[65536];
    memset(big, 'x', sizeof big);
    struct spool_pos end;
    CHECK_EQ_INT(spool_append(s, "first", 5, &end), SPOOL_OK);
    fail_buf_reserve = 1;
    CHECK_EQ_INT(spool_append(s, big, sizeof big, &end), SPOOL_NO_MEMORY);
    CHECK_EQ_INT(fail_buf_reserve, 0); /* the fault was met */
    CHECK_EQ_INT(spool_append(s, "third", 5, &end), SPOOL_OK);
    CHECK_EQ_INT(spool_write(s), SPOOL_OK);
    CHECK_EQ_INT(spool_sync(s), SPOOL_OK);
    struct spool_pos at = spool_checkpoint(s);
    struct buf out = BUF_INIT;
    uint64_t lost = 0;
    static const char *const want[] = {"first", "third"};
    for (int i = 0; i < 2; i++)
        if (CHECK_EQ_INT(spool_read(s, &at, &out, &lost), 1))
            CHECK(out.len == 5 && memcmp(out.data, want[i], 5) == 0);
    CHECK_EQ_INT(spool_read(s, &at, &out, &lost), 0);
    CHECK_EQ_UINT(lost, 0);
    buf_free(&out);
    spool_close(s);
    CHECK_EQ_INT(tmp_dir_remove(dir), 0);
}

int main(void)
{
    RUN(test_age_timer_not_armed);
    RUN(test_unpacker_out_of_memory_is_no_memory);
    RUN(test_listener_failure_leaves_no_socket_file);
    RUN(test_a_record_without_memory_is_no_memory_and_not_taken);
    return check_finish();
}
