/*
 * loadgen.c: bench-loadgen, the benchmark's load generator. It writes N
 * pre-encoded msgpack events over C Unix-socket connections to the agent (or
 * to bench-floor, or to Fluent Bit's forward input), as fast as it can or
 * paced at a total rate, and prints one JSON line:
 *   {"events", "first_write_ns", "last_write_ns", "connections", "format", ...}
 *
 *   bench-loadgen --socket PATH --events N --payloads FILE [--connections C]
 *       [--format native|forward] [--forward-entries K] [--rate R] [--threads T]
 *
 * Native: one msgpack map {"event", "properties"} a message. Forward: Fluent
 * Forward mode, ["bench", [[EventTime, record] x K]], each record
 * {"event": name, ...properties}. Every event's properties end in
 * "bench_t": a uint64 always in its 9-byte form (0xcf + 8 bytes), 0 in
 * burst mode; paced (--rate), it is set to CLOCK_MONOTONIC ns in a private
 * copy of the message just before the message is written, so the sink can
 * measure latency. Everything is encoded before the clock starts: in burst
 * mode each connection writes straight from one shared, cyclic block of
 * messages. Up to 4 threads each drive their share of the connections, with
 * non-blocking sockets and poll().
 */
#define _GNU_SOURCE /* ppoll */
#include "common.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <msgpack.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define LOADGEN_MAX_THREADS 4
#define LOADGEN_MAX_CONNECTIONS 10000
#define LOADGEN_BLOCK_BYTES (256 * 1024) /* least size of the native cyclic block */
#define LOADGEN_CONNECT_TIMEOUT_NS (5 * 1000000000ull)
#define LOADGEN_FORWARD_TAG "bench"

/* One message in an encoded stream: its bytes, its events and its markers. */
struct unit {
    size_t offset; /* in the stream's data */
    size_t length;
    size_t events;
    size_t mark_first; /* its markers: stream.marks[mark_first .. + mark_count) */
    size_t mark_count;
};

/* Encoded messages back to back. marks[] are the data offsets of the 8 value
 * bytes of each event's bench_t. */
struct stream {
    msgpack_sbuffer buf;
    struct unit *units;
    size_t unit_count;
    size_t *marks;
    size_t mark_count;
    uint64_t events;
};

enum loadgen_format { FORMAT_NATIVE, FORMAT_FORWARD };

struct options {
    const char *socket_path;
    const char *payload_path;
    uint64_t events;
    unsigned connections;
    enum loadgen_format format;
    unsigned forward_entries;
    uint64_t rate; /* events/s in all; 0: as fast as possible */
    unsigned threads;
};

struct conn {
    int fd;
    unsigned index;       /* 0 .. connections-1: its phase in the paced schedule */
    uint64_t events;      /* events it sends in all */
    uint64_t block_units; /* messages it writes from the shared block */
    struct stream tail;   /* forward: a last, shorter message (unit_count 0 or 1) */
    uint64_t units_total; /* block_units + tail.unit_count */
    int finished;
    uint64_t bytes_sent;
    /* burst mode */
    uint64_t block_bytes; /* bytes of the cyclic block it writes */
    uint64_t block_done;
    size_t tail_done;
    /* paced mode: the message being written, from a private copy */
    uint64_t units_done;
    uint64_t events_released;
    uint8_t *scratch;
    size_t scratch_len;
    size_t scratch_done;
};

struct worker {
    pthread_t thread;
    const struct options *opt;
    const struct stream *block;
    struct conn **conns;
    size_t conn_count;
    struct pollfd *pfds;  /* the connections polled ... */
    struct conn **polled; /* ... and which each one is */
    uint64_t start_ns;    /* paced: time zero of the schedule */
    uint64_t first_write_ns;
    uint64_t last_write_ns;
    uint64_t bytes;
};

/* ------------------------------------------------------------ encoding */

static void stream_init(struct stream *s)
{
    msgpack_sbuffer_init(&s->buf);
    s->units = NULL;
    s->unit_count = 0;
    s->marks = NULL;
    s->mark_count = 0;
    s->events = 0;
}

static void stream_destroy(struct stream *s)
{
    msgpack_sbuffer_destroy(&s->buf);
    free(s->units);
    free(s->marks);
    stream_init(s);
}

static void pack_string(msgpack_packer *pk, const char *text, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, text, len);
}

static void pack_json(msgpack_packer *pk, const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_OBJECT: {
        msgpack_pack_map(pk, json_object_size(value));
        const char *key;
        json_t *item;
        json_object_foreach((json_t *)value, key, item)
        {
            pack_string(pk, key, strlen(key));
            pack_json(pk, item);
        }
        break;
    }
    case JSON_ARRAY: {
        msgpack_pack_array(pk, json_array_size(value));
        size_t i;
        json_t *item;
        json_array_foreach(value, i, item) pack_json(pk, item);
        break;
    }
    case JSON_STRING:
        pack_string(pk, json_string_value(value), json_string_length(value));
        break;
    case JSON_INTEGER:
        msgpack_pack_int64(pk, json_integer_value(value));
        break;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(value));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    case JSON_NULL:
        msgpack_pack_nil(pk);
        break;
    }
}

/* The properties' key/value pairs, then "bench_t": 0xcf + 8 zero bytes
 * (its offset recorded in s->marks). The caller packed the map header. */
static void pack_properties_and_marker(struct stream *s, msgpack_packer *pk,
                                       const json_t *properties)
{
    const char *key;
    json_t *item;
    json_object_foreach((json_t *)properties, key, item)
    {
        pack_string(pk, key, strlen(key));
        pack_json(pk, item);
    }
    pack_string(pk, BENCH_MARKER_KEY, strlen(BENCH_MARKER_KEY));
    static const char fixed_uint64[9] = {(char)0xcf};
    s->marks = bench_realloc(s->marks, (s->mark_count + 1) * sizeof *s->marks);
    s->marks[s->mark_count++] = s->buf.size + 1;
    msgpack_sbuffer_write(&s->buf, fixed_uint64, sizeof fixed_uint64);
    s->events++;
}

static void stream_begin_unit(struct stream *s)
{
    s->units = bench_realloc(s->units, (s->unit_count + 1) * sizeof *s->units);
    struct unit *u = &s->units[s->unit_count];
    u->offset = s->buf.size;
    u->mark_first = s->mark_count;
    u->events = s->events;
}

static void stream_end_unit(struct stream *s)
{
    struct unit *u = &s->units[s->unit_count++];
    u->length = s->buf.size - u->offset;
    u->mark_count = s->mark_count - u->mark_first;
    u->events = s->events - u->events;
}

/* A native event: {"event": name, "properties": {..., "bench_t": 0}}. */
static void stream_add_native(struct stream *s, const json_t *payload)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s->buf, msgpack_sbuffer_write);
    const char *name = bench_payload_name(payload);
    const json_t *properties = bench_payload_properties(payload);
    stream_begin_unit(s);
    msgpack_pack_map(&pk, 2);
    pack_string(&pk, "event", 5);
    pack_string(&pk, name, strlen(name));
    pack_string(&pk, "properties", 10);
    msgpack_pack_map(&pk, json_object_size(properties) + 1);
    pack_properties_and_marker(s, &pk, properties);
    stream_end_unit(s);
}

/* A Forward-mode message of `entries` records, payloads[first % count] on. */
static void stream_add_forward(struct stream *s, const bench_payloads *payloads, uint64_t first,
                               size_t entries)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, &s->buf, msgpack_sbuffer_write);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    unsigned char event_time[8];
    for (int i = 0; i < 4; i++) {
        event_time[i] = (unsigned char)((uint64_t)now.tv_sec >> (24 - 8 * i));
        event_time[4 + i] = (unsigned char)((uint64_t)now.tv_nsec >> (24 - 8 * i));
    }
    stream_begin_unit(s);
    msgpack_pack_array(&pk, 2);
    pack_string(&pk, LOADGEN_FORWARD_TAG, strlen(LOADGEN_FORWARD_TAG));
    msgpack_pack_array(&pk, entries);
    for (size_t i = 0; i < entries; i++) {
        const json_t *payload = payloads->items[(first + i) % payloads->count];
        const char *name = bench_payload_name(payload);
        const json_t *properties = bench_payload_properties(payload);
        msgpack_pack_array(&pk, 2);
        msgpack_pack_ext(&pk, sizeof event_time, 0); /* Fluent EventTime */
        msgpack_pack_ext_body(&pk, event_time, sizeof event_time);
        msgpack_pack_map(&pk, json_object_size(properties) + 2);
        pack_string(&pk, "event", 5);
        pack_string(&pk, name, strlen(name));
        pack_properties_and_marker(s, &pk, properties);
    }
    stream_end_unit(s);
}

/* The block every connection writes cyclically: native, whole rounds of the
 * payloads up to at least LOADGEN_BLOCK_BYTES; forward, one message per
 * payload (count * K entries: a whole number of rounds). */
static void block_build(struct stream *block, const struct options *opt,
                        const bench_payloads *payloads)
{
    stream_init(block);
    if (opt->format == FORMAT_NATIVE) {
        while (block->buf.size < LOADGEN_BLOCK_BYTES)
            for (size_t i = 0; i < payloads->count; i++)
                stream_add_native(block, payloads->items[i]);
    } else {
        for (size_t m = 0; m < payloads->count; m++)
            stream_add_forward(block, payloads, (uint64_t)m * opt->forward_entries,
                               opt->forward_entries);
    }
}

/* Which messages conn writes: whole messages from the block, and in forward
 * mode a shorter last one for the remainder. */
static void conn_plan(struct conn *c, const struct options *opt, const struct stream *block,
                      const bench_payloads *payloads)
{
    uint64_t per_unit = opt->format == FORMAT_NATIVE ? 1 : opt->forward_entries;
    c->block_units = c->events / per_unit;
    stream_init(&c->tail);
    uint64_t rest = c->events % per_unit;
    if (rest > 0)
        stream_add_forward(&c->tail, payloads, c->block_units * per_unit, rest);
    c->units_total = c->block_units + c->tail.unit_count;
    if (block->unit_count == 0)
        bench_die("nothing to send: the block of messages is empty");
    uint64_t rounds = c->block_units / block->unit_count;
    uint64_t extra = c->block_units % block->unit_count;
    c->block_bytes = rounds * block->buf.size + (extra ? block->units[extra].offset : 0);
}

/* ------------------------------------------------------------ connections */

static int connect_with_retry(const char *path)
{
    struct sockaddr_un addr;
    bench_unix_address(&addr, path);
    uint64_t deadline = bench_now_ns() + LOADGEN_CONNECT_TIMEOUT_NS;
    for (;;) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            bench_die_errno("socket");
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0)
            return fd;
        int err = errno;
        close(fd);
        int transient = err == ENOENT || err == ECONNREFUSED || err == EAGAIN;
        if (!transient || bench_now_ns() > deadline) {
            errno = err;
            bench_die_errno("cannot connect to %s%s", path,
                            transient ? " (gave up after 5 s)" : "");
        }
        struct timespec pause = {0, 20 * 1000000};
        nanosleep(&pause, NULL);
    }
}

/* Exit, saying what the peer wrote last on the connection if anything (the
 * agent's {"error": ...} reply). */
static void conn_fail(const struct conn *c, const char *what, int err)
{
    char reply[256];
    ssize_t n = recv(c->fd, reply, sizeof reply - 1, MSG_DONTWAIT);
    size_t len = n > 0 ? (size_t)n : 0;
    for (size_t i = 0; i < len; i++)
        if (reply[i] < 0x20 || reply[i] > 0x7e)
            reply[i] = '.';
    reply[len] = '\0';
    bench_die("connection %u: %s%s%s after %" PRIu64 " bytes%s%s", c->index, what, err ? ": " : "",
              err ? strerror(err) : "", c->bytes_sent, len ? "; the peer wrote: " : "", reply);
}

/* Send what can be sent of [data, data+len) now: bytes written (0 when the
 * socket is full). */
static size_t conn_send(struct conn *c, const uint8_t *data, size_t len)
{
    for (;;) {
        ssize_t n = send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) {
            c->bytes_sent += (uint64_t)n;
            return (size_t)n;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        conn_fail(c, "write failed", errno);
    }
}

/* Burst mode: write as much as the socket takes. 1 when everything is written. */
static int conn_write_burst(struct conn *c, const struct stream *block, uint64_t *bytes)
{
    while (c->block_done < c->block_bytes) {
        size_t at = (size_t)(c->block_done % block->buf.size);
        uint64_t left = c->block_bytes - c->block_done;
        size_t chunk = block->buf.size - at < left ? block->buf.size - at : (size_t)left;
        size_t n = conn_send(c, (const uint8_t *)block->buf.data + at, chunk);
        if (n == 0)
            return 0;
        c->block_done += n;
        *bytes += n;
    }
    while (c->tail_done < c->tail.buf.size) {
        size_t n = conn_send(c, (const uint8_t *)c->tail.buf.data + c->tail_done,
                             c->tail.buf.size - c->tail_done);
        if (n == 0)
            return 0;
        c->tail_done += n;
        *bytes += n;
    }
    return 1;
}

/* Paced mode: the next message to write, and the stream it lives in. */
static const struct unit *conn_next_unit(const struct conn *c, const struct stream *block,
                                         const struct stream **from)
{
    if (c->units_done < c->block_units) {
        *from = block;
        return &block->units[c->units_done % block->unit_count];
    }
    *from = &c->tail;
    return &c->tail.units[0];
}

/* When the next message is due: when its last event is, event k of
 * connection i being due at start + (k * C + i) / rate. */
static uint64_t conn_due_ns(const struct conn *c, const struct worker *w,
                            const struct stream *block)
{
    const struct stream *from;
    const struct unit *u = conn_next_unit(c, block, &from);
    uint64_t last_event = c->events_released + u->events - 1;
    double slot = (double)last_event * w->opt->connections + c->index;
    return w->start_ns + (uint64_t)(slot * 1e9 / (double)w->opt->rate);
}

/* Copy the next message and stamp its bench_t values with now. */
static void conn_release(struct conn *c, const struct stream *block)
{
    const struct stream *from;
    const struct unit *u = conn_next_unit(c, block, &from);
    memcpy(c->scratch, from->buf.data + u->offset, u->length);
    uint64_t now = bench_now_ns();
    for (size_t m = 0; m < u->mark_count; m++) {
        uint8_t *value = c->scratch + (from->marks[u->mark_first + m] - u->offset);
        for (int b = 0; b < 8; b++)
            value[b] = (uint8_t)(now >> (56 - 8 * b));
    }
    c->scratch_len = u->length;
    c->scratch_done = 0;
    c->events_released += u->events;
}

/* ------------------------------------------------------------ workers */

static void worker_poll(struct worker *w, size_t count, uint64_t wake_ns)
{
    struct timespec timeout, *tp = NULL;
    if (wake_ns != UINT64_MAX) {
        uint64_t now = bench_now_ns();
        uint64_t wait = wake_ns > now ? wake_ns - now : 0;
        timeout.tv_sec = (time_t)(wait / 1000000000u);
        timeout.tv_nsec = (long)(wait % 1000000000u);
        tp = &timeout;
    }
    if (ppoll(w->pfds, count, tp, NULL) < 0 && errno != EINTR)
        bench_die_errno("poll");
    for (size_t i = 0; i < count; i++)
        if (w->pfds[i].revents & (POLLERR | POLLHUP | POLLNVAL))
            conn_fail(w->polled[i], "the peer closed the connection", 0);
}

static void worker_add_polled(struct worker *w, size_t *count, struct conn *c)
{
    w->pfds[*count] = (struct pollfd){.fd = c->fd, .events = POLLOUT};
    w->polled[(*count)++] = c;
}

static void worker_run_burst(struct worker *w)
{
    size_t count = 0;
    for (size_t i = 0; i < w->conn_count; i++)
        if (!w->conns[i]->finished)
            worker_add_polled(w, &count, w->conns[i]);
    for (size_t i = 0; i < count; i++)
        w->pfds[i].revents = POLLOUT; /* a new connection has room: write at once */
    w->first_write_ns = bench_now_ns();
    while (count > 0) {
        size_t still = 0;
        for (size_t i = 0; i < count; i++) {
            struct conn *c = w->polled[i];
            if ((w->pfds[i].revents & POLLOUT) && conn_write_burst(c, w->block, &w->bytes))
                c->finished = 1;
            else
                worker_add_polled(w, &still, c);
        }
        count = still;
        if (count > 0)
            worker_poll(w, count, UINT64_MAX);
    }
    w->last_write_ns = bench_now_ns();
}

/* Paced mode, one connection: release and write its messages that are due.
 * Returns 1 if it waits for room in the socket; *next_due is lowered to the
 * time its next message is due. */
static int worker_step_paced(struct worker *w, struct conn *c, uint64_t *next_due)
{
    for (;;) {
        if (c->scratch_done == c->scratch_len) {
            if (c->units_done == c->units_total) {
                c->finished = 1;
                return 0;
            }
            uint64_t due = conn_due_ns(c, w, w->block);
            if (due > bench_now_ns()) {
                if (due < *next_due)
                    *next_due = due;
                return 0;
            }
            conn_release(c, w->block);
            if (w->first_write_ns == 0)
                w->first_write_ns = bench_now_ns();
        }
        size_t n = conn_send(c, c->scratch + c->scratch_done, c->scratch_len - c->scratch_done);
        c->scratch_done += n;
        w->bytes += n;
        if (c->scratch_done < c->scratch_len)
            return 1;
        c->units_done++;
        w->last_write_ns = bench_now_ns();
    }
}

static void worker_run_paced(struct worker *w)
{
    for (;;) {
        uint64_t next_due = UINT64_MAX;
        size_t count = 0, pending = 0;
        for (size_t i = 0; i < w->conn_count; i++) {
            struct conn *c = w->conns[i];
            if (c->finished)
                continue;
            if (worker_step_paced(w, c, &next_due))
                worker_add_polled(w, &count, c);
            pending += !c->finished;
        }
        if (pending == 0)
            break;
        worker_poll(w, count, next_due);
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    if (w->opt->rate == 0)
        worker_run_burst(w);
    else
        worker_run_paced(w);
    return NULL;
}

/* ------------------------------------------------------------ main */

static void usage_exit(void)
{
    fputs("usage: bench-loadgen --socket PATH --events N --payloads FILE [--connections C]\n"
          "         [--format native|forward] [--forward-entries K] [--rate EVENTS_PER_S]\n"
          "         [--threads T]\n",
          stderr);
    exit(2);
}

static void options_parse(struct options *opt, int argc, char **argv)
{
    static const struct option longopts[] = {{"socket", required_argument, NULL, 's'},
                                             {"events", required_argument, NULL, 'n'},
                                             {"connections", required_argument, NULL, 'c'},
                                             {"format", required_argument, NULL, 'f'},
                                             {"forward-entries", required_argument, NULL, 'k'},
                                             {"rate", required_argument, NULL, 'r'},
                                             {"payloads", required_argument, NULL, 'p'},
                                             {"threads", required_argument, NULL, 't'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    *opt = (struct options){.connections = 1, .format = FORMAT_NATIVE, .forward_entries = 100};
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 's':
            opt->socket_path = optarg;
            break;
        case 'n':
            opt->events = bench_parse_u64("--events", optarg, 1, UINT64_C(1) << 40);
            break;
        case 'c':
            opt->connections =
                (unsigned)bench_parse_u64("--connections", optarg, 1, LOADGEN_MAX_CONNECTIONS);
            break;
        case 'f':
            if (strcmp(optarg, "native") == 0)
                opt->format = FORMAT_NATIVE;
            else if (strcmp(optarg, "forward") == 0)
                opt->format = FORMAT_FORWARD;
            else
                bench_die("--format: '%s' is neither native nor forward", optarg);
            break;
        case 'k':
            opt->forward_entries =
                (unsigned)bench_parse_u64("--forward-entries", optarg, 1, 100000);
            break;
        case 'r':
            opt->rate = bench_parse_u64("--rate", optarg, 0, 100000000);
            break;
        case 'p':
            opt->payload_path = optarg;
            break;
        case 't':
            opt->threads = (unsigned)bench_parse_u64("--threads", optarg, 1, LOADGEN_MAX_THREADS);
            break;
        default:
            usage_exit();
        }
    }
    if (optind != argc || opt->socket_path == NULL || opt->payload_path == NULL || opt->events == 0)
        usage_exit();
    if (opt->threads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        opt->threads =
            cpus > 0 && cpus < LOADGEN_MAX_THREADS ? (unsigned)cpus : LOADGEN_MAX_THREADS;
    }
    if (opt->threads > opt->connections)
        opt->threads = opt->connections;
}

int main(int argc, char **argv)
{
    bench_set_program("bench-loadgen");
    struct options opt;
    options_parse(&opt, argc, argv);

    bench_payloads payloads;
    bench_payloads_load(&payloads, opt.payload_path);
    struct stream block;
    block_build(&block, &opt, &payloads);
    size_t largest_unit = 0;
    for (size_t i = 0; i < block.unit_count; i++)
        if (block.units[i].length > largest_unit)
            largest_unit = block.units[i].length;

    struct conn *conns = bench_alloc(opt.connections * sizeof *conns);
    for (unsigned i = 0; i < opt.connections; i++) {
        struct conn *c = &conns[i];
        *c = (struct conn){.index = i,
                           .events =
                               opt.events / opt.connections + (i < opt.events % opt.connections)};
        conn_plan(c, &opt, &block, &payloads);
        c->finished = c->units_total == 0;
        if (opt.rate > 0)
            c->scratch = bench_alloc(largest_unit);
    }
    bench_payloads_free(&payloads);
    for (unsigned i = 0; i < opt.connections; i++)
        conns[i].fd = connect_with_retry(opt.socket_path);

    struct worker workers[LOADGEN_MAX_THREADS];
    uint64_t cpu_start = bench_self_cpu_ns();
    uint64_t start = bench_now_ns();
    for (unsigned t = 0; t < opt.threads; t++) {
        struct worker *w = &workers[t];
        *w = (struct worker){.opt = &opt, .block = &block, .start_ns = start};
        w->conns = bench_alloc((opt.connections / opt.threads + 1) * sizeof(struct conn *));
        for (unsigned i = t; i < opt.connections; i += opt.threads)
            w->conns[w->conn_count++] = &conns[i];
        w->pfds = bench_alloc(w->conn_count * sizeof *w->pfds);
        w->polled = bench_alloc(w->conn_count * sizeof(struct conn *));
    }
    for (unsigned t = 0; t < opt.threads; t++) {
        int err = pthread_create(&workers[t].thread, NULL, worker_main, &workers[t]);
        if (err != 0) {
            errno = err;
            bench_die_errno("pthread_create");
        }
    }
    uint64_t first = UINT64_MAX, last = 0, bytes = 0;
    for (unsigned t = 0; t < opt.threads; t++) {
        pthread_join(workers[t].thread, NULL);
        struct worker *w = &workers[t];
        if (w->first_write_ns != 0 && w->first_write_ns < first)
            first = w->first_write_ns;
        if (w->last_write_ns > last)
            last = w->last_write_ns;
        bytes += w->bytes;
        free(w->conns);
        free(w->pfds);
        free(w->polled);
    }
    uint64_t cpu_ns = bench_self_cpu_ns() - cpu_start;
    for (unsigned i = 0; i < opt.connections; i++) {
        close(conns[i].fd);
        stream_destroy(&conns[i].tail);
        free(conns[i].scratch);
    }
    free(conns);
    stream_destroy(&block);
    printf("{\"events\": %" PRIu64 ", \"first_write_ns\": %" PRIu64 ", \"last_write_ns\": %" PRIu64
           ", \"connections\": %u, \"format\": \"%s\", \"forward_entries\": %u"
           ", \"rate\": %" PRIu64 ", \"threads\": %u, \"bytes\": %" PRIu64 ", \"cpu_ms\": %.3f}\n",
           opt.events, first, last, opt.connections,
           opt.format == FORMAT_NATIVE ? "native" : "forward", opt.forward_entries, opt.rate,
           opt.threads, bytes, (double)cpu_ns / 1e6);
    if (fflush(stdout) != 0)
        bench_die_errno("stdout");
    return 0;
}
