/*
 * fake: a fake agent socket and acking server for the client tests (see
 * fake.h). Helpers report problems by return value; the tests check them.
 */
#define _GNU_SOURCE /* SO_PEERCRED */
#include "fake.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int64_t fake_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void fake_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

int fake_socket_init(struct fake_socket *s)
{
    snprintf(s->dir, sizeof s->dir, "/tmp/tlm-test-XXXXXX");
    s->fd = -1;
    if (mkdtemp(s->dir) == NULL)
        return -1;
    snprintf(s->path, sizeof s->path, "%.40s/agent.sock", s->dir);
    return 0;
}

int fake_socket_listen(struct fake_socket *s)
{
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    memcpy(addr.sun_path, s->path, sizeof s->path);
    s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s->fd < 0)
        return -1;
    if (bind(s->fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(s->fd, 64) != 0) {
        close(s->fd);
        s->fd = -1;
        return -1;
    }
    return 0;
}

void fake_socket_unlisten(struct fake_socket *s)
{
    if (s->fd >= 0)
        close(s->fd);
    s->fd = -1;
    unlink(s->path);
}

void fake_socket_cleanup(struct fake_socket *s)
{
    fake_socket_unlisten(s);
    rmdir(s->dir);
}

int fake_socket_accept(struct fake_socket *s, int timeout_ms)
{
    struct pollfd p = {s->fd, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1)
        return -1;
    return accept4(s->fd, NULL, NULL, SOCK_CLOEXEC);
}

static int fake_bytes_reserve(struct fake_bytes *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < extra)
        cap *= 2;
    unsigned char *p = realloc(b->data, cap);
    if (p == NULL)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

void fake_bytes_free(struct fake_bytes *b)
{
    free(b->data);
    memset(b, 0, sizeof *b);
}

size_t fake_read(int fd, struct fake_bytes *b, size_t max, int idle_ms)
{
    size_t total = 0;
    while (max == 0 || total < max) {
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, idle_ms) != 1)
            break;
        size_t want = 65536;
        if (max != 0 && max - total < want)
            want = max - total;
        if (fake_bytes_reserve(b, want) != 0)
            break;
        ssize_t n = read(fd, b->data + b->len, want);
        if (n <= 0)
            break;
        b->len += (size_t)n;
        total += (size_t)n;
    }
    return total;
}

long fake_objects(const unsigned char *data, size_t len, size_t *used,
                  void (*fn)(const msgpack_object *obj, void *arg), void *arg)
{
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    size_t off = 0;
    long count = 0;
    for (;;) {
        size_t at = off;
        msgpack_unpack_return rc = msgpack_unpack_next(&u, (const char *)data, len, &off);
        if (rc == MSGPACK_UNPACK_SUCCESS || rc == MSGPACK_UNPACK_EXTRA_BYTES) {
            if (fn != NULL)
                fn(&u.data, arg);
            count++;
            continue;
        }
        off = at;
        if (rc != MSGPACK_UNPACK_CONTINUE)
            count = -1;
        break;
    }
    msgpack_unpacked_destroy(&u);
    *used = off;
    return count;
}

const msgpack_object *fake_map_get(const msgpack_object *map, const char *key)
{
    if (map == NULL || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t n = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
            memcmp(k->via.str.ptr, key, n) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

int64_t fake_event_i(const msgpack_object *ev)
{
    const msgpack_object *i = fake_map_get(fake_map_get(ev, "properties"), "i");
    if (i == NULL || i->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return -1;
    return (int64_t)i->via.u64;
}

tlm_status fake_send_indexed(tlm_client *c, int64_t i, size_t pad)
{
    tlm_event *ev;
    tlm_status st = tlm_event_new(&ev, "debug-ping");
    if (st != TLM_OK)
        return st;
    tlm_event_add_int(ev, "i", i);
    if (pad > 0) {
        char *p = malloc(pad);
        if (p == NULL) {
            tlm_event_free(ev);
            return TLM_ENOMEM;
        }
        memset(p, 'a' + (int)(i % 26), pad);
        tlm_event_add_strn(ev, "pad", p, pad);
        free(p);
    }
    st = tlm_send(c, ev);
    tlm_event_free(ev);
    return st;
}

int fake_send_range(tlm_client *c, int64_t from, int64_t to, size_t pad)
{
    int failed = 0;
    for (int64_t i = from; i < to; i++)
        failed += fake_send_indexed(c, i, pad) != TLM_OK;
    return failed;
}

uint64_t fake_dropped(const tlm_stats *st)
{
    return st->dropped_queue_full + st->dropped_too_large + st->dropped_invalid +
           st->dropped_rejected + st->dropped_connection;
}

tlm_client *fake_client(const char *path, tlm_options o)
{
    if (o.reconnect_max_ms == 0)
        o.reconnect_max_ms = 100;
    tlm_client *c;
    return tlm_open(&c, path, &o) == TLM_OK ? c : NULL;
}

/* ------------------------------------------------------------ fake agent */

#define FAKE_CONNS 32

struct fake_conn {
    int fd;
    int num;
    pid_t pid;
    struct fake_bytes in;
};

struct fake_walk {
    struct fake_agent *a;
    struct fake_conn *conn;
    int close; /* the policy said to close */
};

static void fake_reply(int fd, const msgpack_object *chunk, enum fake_action act)
{
    int reject = act == FAKE_REJECT, defer = act == FAKE_DEFER;
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, reject ? 3 : defer ? 2 : 1);
    if (defer)
        msgpack_pack_str_with_body(&pk, "deferred", 8);
    else
        msgpack_pack_str_with_body(&pk, "ack", 3);
    msgpack_pack_object(&pk, *chunk);
    if (defer) {
        msgpack_pack_str_with_body(&pk, "reason", 6);
        msgpack_pack_str_with_body(&pk, "buffer_full", 11);
    }
    if (reject) {
        msgpack_pack_str_with_body(&pk, "rejected", 8);
        msgpack_pack_uint32(&pk, 1);
        msgpack_pack_str_with_body(&pk, "reason", 6);
        msgpack_pack_str_with_body(&pk, "unknown_event", 13);
    }
    if (write(fd, sb.data, sb.size) != (ssize_t)sb.size) {
        /* the client went away: nothing to answer */
    }
    msgpack_sbuffer_destroy(&sb);
}

void fake_write_error(int fd, const char *error)
{
    char detail[96];
    int dlen = snprintf(detail, sizeof detail, "fake: %s", error);
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "error", 5);
    msgpack_pack_str_with_body(&pk, error, strlen(error));
    msgpack_pack_str_with_body(&pk, "detail", 6);
    msgpack_pack_str_with_body(&pk, detail, (size_t)dlen);
    if (send(fd, sb.data, sb.size, MSG_NOSIGNAL) != (ssize_t)sb.size) {
        /* the client went away: nothing to tell it */
    }
    msgpack_sbuffer_destroy(&sb);
}

static void fake_message(const msgpack_object *obj, void *arg)
{
    struct fake_walk *w = arg;
    struct fake_agent *a = w->a;
    if (w->close)
        return; /* after a close, the rest of the read is never seen */
    struct fake_message m = {.conn = w->conn->num, .pid = w->conn->pid, .i = fake_event_i(obj)};
    const msgpack_object *chunk = fake_map_get(obj, "chunk");
    if (chunk != NULL && chunk->type == MSGPACK_OBJECT_STR && chunk->via.str.size < 65)
        memcpy(m.chunk, chunk->via.str.ptr, chunk->via.str.size);
    pthread_mutex_lock(&a->lock);
    for (int k = 0; k < a->nlog; k++)
        m.seen += a->log[k].i == m.i;
    if (a->nlog < FAKE_LOG_MAX)
        a->log[a->nlog++] = m;
    pthread_mutex_unlock(&a->lock);
    enum fake_action act = a->policy != NULL ? a->policy(&m, a->policy_arg) : FAKE_ACK;
    if (act == FAKE_ERROR) {
        pthread_mutex_lock(&a->lock);
        const char *error = a->error;
        pthread_mutex_unlock(&a->lock);
        fake_write_error(w->conn->fd, error);
    }
    if (act == FAKE_CLOSE || act == FAKE_ERROR) {
        w->close = 1;
        return;
    }
    if (chunk != NULL && act != FAKE_SILENT)
        fake_reply(w->conn->fd, chunk, act);
}

static void fake_conn_end(struct fake_agent *a, struct fake_conn *c)
{
    pthread_mutex_lock(&a->lock);
    a->torn += c->in.len > 0;
    pthread_mutex_unlock(&a->lock);
    close(c->fd);
    c->fd = -1;
    fake_bytes_free(&c->in);
}

/* Read what one connection has; handle its complete messages. */
static void fake_conn_read(struct fake_agent *a, struct fake_conn *c)
{
    if (a->read_delay_us > 0)
        usleep((useconds_t)a->read_delay_us);
    if (fake_bytes_reserve(&c->in, 65536) != 0)
        return;
    ssize_t n = read(c->fd, c->in.data + c->in.len, 65536);
    if (n <= 0) {
        fake_conn_end(a, c);
        return;
    }
    c->in.len += (size_t)n;
    struct fake_walk w = {a, c, 0};
    size_t used;
    long count = fake_objects(c->in.data, c->in.len, &used, fake_message, &w);
    memmove(c->in.data, c->in.data + used, c->in.len - used);
    c->in.len -= used;
    if (count < 0 || w.close) {
        c->in.len = 0; /* a deliberate close is not a torn stream */
        fake_conn_end(a, c);
    }
}

static void fake_agent_accept(struct fake_agent *a, struct fake_conn *conns)
{
    int fd = accept4(a->sock.fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0)
        return;
    pthread_mutex_lock(&a->lock);
    int refuse = a->refuse > 0;
    const char *error = a->refuse_error;
    if (refuse) {
        a->refuse--;
        a->conns++;
    }
    pthread_mutex_unlock(&a->lock);
    if (refuse) {
        if (error != NULL)
            fake_write_error(fd, error);
        close(fd);
        pthread_mutex_lock(&a->lock);
        a->refused++; /* once it is closed */
        pthread_mutex_unlock(&a->lock);
        return;
    }
    for (int k = 0; k < FAKE_CONNS; k++) {
        if (conns[k].fd >= 0)
            continue;
        struct ucred cred;
        socklen_t cl = sizeof cred;
        conns[k] = (struct fake_conn){.fd = fd};
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0)
            conns[k].pid = cred.pid;
        pthread_mutex_lock(&a->lock);
        conns[k].num = ++a->conns;
        pthread_mutex_unlock(&a->lock);
        return;
    }
    close(fd);
}

static void *fake_agent_thread(void *arg)
{
    struct fake_agent *a = arg;
    struct fake_conn conns[FAKE_CONNS];
    for (int k = 0; k < FAKE_CONNS; k++)
        conns[k] = (struct fake_conn){.fd = -1};
    for (;;) {
        pthread_mutex_lock(&a->lock);
        int stop = a->stop;
        pthread_mutex_unlock(&a->lock);
        if (stop)
            break;
        struct pollfd p[FAKE_CONNS + 1];
        p[0] = (struct pollfd){a->sock.fd, POLLIN, 0};
        for (int k = 0; k < FAKE_CONNS; k++)
            p[k + 1] = (struct pollfd){conns[k].fd, POLLIN, 0};
        if (poll(p, FAKE_CONNS + 1, 20) <= 0)
            continue;
        if (p[0].revents != 0)
            fake_agent_accept(a, conns);
        for (int k = 0; k < FAKE_CONNS; k++)
            if (conns[k].fd >= 0 && p[k + 1].revents != 0)
                fake_conn_read(a, &conns[k]);
    }
    for (int k = 0; k < FAKE_CONNS; k++)
        if (conns[k].fd >= 0)
            fake_conn_end(a, &conns[k]);
    return NULL;
}

int fake_agent_start_at(struct fake_agent *a, const struct fake_socket *s,
                        enum fake_action (*policy)(const struct fake_message *m, void *arg),
                        void *arg)
{
    a->stop = 0;
    a->nlog = a->conns = a->torn = 0;
    a->refuse = a->refused = 0;
    a->refuse_error = NULL;
    a->error = "too_large";
    a->policy = policy;
    a->policy_arg = arg;
    a->sock = *s;
    pthread_mutex_init(&a->lock, NULL);
    if (fake_socket_listen(&a->sock) != 0)
        return -1;
    return pthread_create(&a->thread, NULL, fake_agent_thread, a) == 0 ? 0 : -1;
}

int fake_agent_start(struct fake_agent *a,
                     enum fake_action (*policy)(const struct fake_message *m, void *arg),
                     void *arg)
{
    struct fake_socket s;
    if (fake_socket_init(&s) != 0)
        return -1;
    return fake_agent_start_at(a, &s, policy, arg);
}

void fake_agent_stop(struct fake_agent *a)
{
    pthread_mutex_lock(&a->lock);
    a->stop = 1;
    pthread_mutex_unlock(&a->lock);
    pthread_join(a->thread, NULL);
    fake_socket_cleanup(&a->sock);
    pthread_mutex_destroy(&a->lock);
}

void fake_agent_refuse(struct fake_agent *a, int n, const char *error)
{
    pthread_mutex_lock(&a->lock);
    a->refuse = n;
    a->refuse_error = error;
    pthread_mutex_unlock(&a->lock);
}

void fake_agent_error(struct fake_agent *a, const char *error)
{
    pthread_mutex_lock(&a->lock);
    a->error = error;
    pthread_mutex_unlock(&a->lock);
}

int fake_agent_wait(struct fake_agent *a, int n, int timeout_ms)
{
    int64_t end = fake_now_ms() + timeout_ms;
    for (;;) {
        pthread_mutex_lock(&a->lock);
        int have = a->nlog;
        pthread_mutex_unlock(&a->lock);
        if (have >= n || fake_now_ms() >= end)
            return have;
        fake_sleep_ms(5);
    }
}

struct fake_message *fake_agent_log(struct fake_agent *a, int *n)
{
    pthread_mutex_lock(&a->lock);
    struct fake_message *copy = malloc(sizeof *copy * (size_t)(a->nlog + 1));
    if (copy != NULL)
        memcpy(copy, a->log, sizeof *copy * (size_t)a->nlog);
    *n = copy != NULL ? a->nlog : 0;
    pthread_mutex_unlock(&a->lock);
    return copy;
}
