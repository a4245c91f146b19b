/*
 * floor.c: bench-floor, the two floors the agent's figures are compared with.
 *
 *   bench-floor --socket PATH --events N
 *       Listen on a Unix stream socket as the agent does, take bench-loadgen's
 *       connections, read everything and unpack every message with msgpack-c
 *       (msgpack_unpacker_next), counting events (a map: one; a Forward
 *       message: its entries). Once N are counted, print
 *       {"events", "cpu_ms", "wall_ms", "connections", "bytes"} and exit:
 *       the least CPU any reader of the same bytes spends.
 *
 *   bench-floor --compress FILE [--ms MS]
 *       FILE is a plain JSON batch body (the sink's /sample). Gzip it again
 *       and again for MS milliseconds of CPU (default 1000) with libdeflate level 1, then
 *       with ISA-L igzip level 1, and print the CPU ns per body and per event
 *       (events: occurrences of "bench_t":) and the compressed sizes.
 */
#define _GNU_SOURCE /* accept4 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#ifdef BENCH_HAVE_ISAL
#include <isa-l/igzip_lib.h>
#endif
#include <libdeflate.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define FLOOR_READ_BYTES (256 * 1024)
#define FLOOR_MAX_CONNECTIONS 10000
#define FLOOR_EPOLL_EVENTS 256
#define FLOOR_MAX_SAMPLE_BYTES (256 * 1024 * 1024)

/* ------------------------------------------------------------ unpacking */

struct reader {
    int fd;
    size_t slot; /* its index in the table of open readers */
    msgpack_unpacker unpacker;
};

/* The open connections, so that those still open at the end are freed. */
struct reader_table {
    struct reader **items;
    size_t count;
};

/* Events in one message: a native event is a map; a Forward message
 * [tag, entries, option?] holds an array of entries (Forward mode), packed
 * entries in a bin or str (PackedForward), or one record (Message mode). */
static uint64_t floor_message_events(const msgpack_object *message)
{
    if (message->type == MSGPACK_OBJECT_MAP)
        return 1;
    if (message->type != MSGPACK_OBJECT_ARRAY || message->via.array.size < 2)
        return 0;
    const msgpack_object *entries = &message->via.array.ptr[1];
    if (entries->type == MSGPACK_OBJECT_ARRAY)
        return entries->via.array.size;
    if (entries->type != MSGPACK_OBJECT_BIN && entries->type != MSGPACK_OBJECT_STR)
        return 1;
    const char *data =
        entries->type == MSGPACK_OBJECT_BIN ? entries->via.bin.ptr : entries->via.str.ptr;
    size_t len =
        entries->type == MSGPACK_OBJECT_BIN ? entries->via.bin.size : entries->via.str.size;
    uint64_t count = 0;
    size_t off = 0;
    msgpack_unpacked entry;
    msgpack_unpacked_init(&entry);
    while (msgpack_unpack_next(&entry, data, len, &off) == MSGPACK_UNPACK_SUCCESS)
        count++;
    msgpack_unpacked_destroy(&entry);
    return count;
}

/* Read what the connection has; its events are added to *events. Returns 0
 * once the peer closed it. */
static int reader_read(struct reader *r, msgpack_unpacked *result, uint64_t *events,
                       uint64_t *bytes)
{
    if (!msgpack_unpacker_reserve_buffer(&r->unpacker, FLOOR_READ_BYTES))
        bench_die("out of memory for the unpacker's buffer");
    ssize_t n = read(r->fd, msgpack_unpacker_buffer(&r->unpacker),
                     msgpack_unpacker_buffer_capacity(&r->unpacker));
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR)
            return 1;
        bench_die_errno("read");
    }
    if (n == 0) {
        if (msgpack_unpacker_message_size(&r->unpacker) > 0)
            bench_die("short data: a connection closed in the middle of a message");
        return 0;
    }
    *bytes += (uint64_t)n;
    msgpack_unpacker_buffer_consumed(&r->unpacker, (size_t)n);
    msgpack_unpack_return ret;
    while ((ret = msgpack_unpacker_next(&r->unpacker, result)) == MSGPACK_UNPACK_SUCCESS)
        *events += floor_message_events(&result->data);
    if (ret == MSGPACK_UNPACK_PARSE_ERROR)
        bench_die("a connection sent bytes that are not msgpack");
    if (ret == MSGPACK_UNPACK_NOMEM_ERROR)
        bench_die("out of memory unpacking");
    return 1;
}

static int floor_listen(const char *path)
{
    struct sockaddr_un addr;
    bench_unix_address(&addr, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        bench_die_errno("socket");
    if (unlink(path) != 0 && errno != ENOENT)
        bench_die_errno("cannot remove the old %s", path);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
        bench_die_errno("cannot bind %s", path);
    if (listen(fd, 4096) != 0)
        bench_die_errno("listen");
    return fd;
}

/* Take every pending connection, each with its own unpacker, into epoll. */
static void floor_accept(int listener, int epoll_fd, struct reader_table *open, size_t *accepted)
{
    for (;;) {
        int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED)
                return;
            bench_die_errno("accept");
        }
        if (open->count == FLOOR_MAX_CONNECTIONS)
            bench_die("more than %d connections at once", FLOOR_MAX_CONNECTIONS);
        struct reader *r = bench_alloc(sizeof *r);
        r->fd = fd;
        r->slot = open->count;
        open->items[open->count++] = r;
        if (!msgpack_unpacker_init(&r->unpacker, FLOOR_READ_BYTES))
            bench_die("out of memory for an unpacker");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = r};
        if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0)
            bench_die_errno("epoll_ctl");
        (*accepted)++;
    }
}

static void reader_free(struct reader *r, struct reader_table *open)
{
    struct reader *last = open->items[--open->count];
    open->items[r->slot] = last;
    last->slot = r->slot;
    close(r->fd); /* also takes it out of the epoll set */
    msgpack_unpacker_destroy(&r->unpacker);
    free(r);
}

static int floor_unpack(const char *path, uint64_t target)
{
    int listener = floor_listen(path);
    int epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd < 0)
        bench_die_errno("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL}; /* NULL: the listener */
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, listener, &ev) != 0)
        bench_die_errno("epoll_ctl");
    struct reader_table open = {.items =
                                    bench_alloc(FLOOR_MAX_CONNECTIONS * sizeof(struct reader *))};
    size_t accepted = 0;
    uint64_t events = 0, bytes = 0, first_byte_ns = 0;
    msgpack_unpacked result;
    msgpack_unpacked_init(&result);
    struct epoll_event ready[FLOOR_EPOLL_EVENTS];
    uint64_t cpu_start = bench_self_cpu_ns();
    while (events < target) {
        int n = epoll_wait(epoll_fd, ready, FLOOR_EPOLL_EVENTS, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            bench_die_errno("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            struct reader *r = ready[i].data.ptr;
            if (r == NULL) {
                floor_accept(listener, epoll_fd, &open, &accepted);
                continue;
            }
            if (first_byte_ns == 0)
                first_byte_ns = bench_now_ns();
            if (!reader_read(r, &result, &events, &bytes))
                reader_free(r, &open);
        }
    }
    uint64_t wall_ns = bench_now_ns() - first_byte_ns;
    uint64_t cpu_ns = bench_self_cpu_ns() - cpu_start;
    msgpack_unpacked_destroy(&result);
    while (open.count > 0)
        reader_free(open.items[0], &open);
    free(open.items);
    close(epoll_fd);
    close(listener);
    unlink(path);
    printf("{\"events\": %" PRIu64 ", \"cpu_ms\": %.3f, \"wall_ms\": %.3f, \"connections\": %zu"
           ", \"bytes\": %" PRIu64 "}\n",
           events, (double)cpu_ns / 1e6, (double)wall_ns / 1e6, accepted, bytes);
    return 0;
}

/* ------------------------------------------------------------ compression */

static uint64_t thread_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned char *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        bench_die_errno("cannot open %s", path);
    if (st.st_size <= 0 || st.st_size > FLOOR_MAX_SAMPLE_BYTES)
        bench_die("%s: %lld bytes; a sample body has 1 to %d", path, (long long)st.st_size,
                  FLOOR_MAX_SAMPLE_BYTES);
    *len = (size_t)st.st_size;
    unsigned char *data = bench_alloc(*len);
    size_t done = 0;
    while (done < *len) {
        ssize_t n = read(fd, data + done, *len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            bench_die_errno("cannot read %s", path);
        done += (size_t)n;
    }
    close(fd);
    return data;
}

typedef size_t (*compress_fn)(void *state, const unsigned char *in, size_t len, unsigned char *out,
                              size_t cap);

static size_t libdeflate_compress(void *state, const unsigned char *in, size_t len,
                                  unsigned char *out, size_t cap)
{
    size_t n = libdeflate_gzip_compress(state, in, len, out, cap);
    if (n == 0)
        bench_die("libdeflate: the output did not fit %zu bytes", cap);
    return n;
}

#ifdef BENCH_HAVE_ISAL
static size_t igzip_compress(void *state, const unsigned char *in, size_t len, unsigned char *out,
                             size_t cap)
{
    struct isal_zstream *z = state;
    isal_deflate_reset(z);
    z->next_in = (uint8_t *)in;
    z->avail_in = (uint32_t)len;
    z->next_out = out;
    z->avail_out = (uint32_t)cap;
    int ret = isal_deflate(z);
    if (ret != COMP_OK || z->internal_state.state != ZSTATE_END)
        bench_die("igzip: isal_deflate failed (%d)", ret);
    return z->total_out;
}
#endif

/* Compress again and again for `seconds`; print one JSON member. */
static void compress_measure(const char *name, compress_fn fn, void *state, const unsigned char *in,
                             size_t len, uint64_t events, double seconds,
                             struct libdeflate_decompressor *check)
{
    size_t cap = len * 2 + 65536;
    unsigned char *out = bench_alloc(cap);
    unsigned char *back = bench_alloc(len);
    size_t size = fn(state, in, len, out, cap); /* warm up, and check the result */
    size_t back_len = 0;
    if (libdeflate_gzip_decompress(check, out, size, back, len, &back_len) != LIBDEFLATE_SUCCESS ||
        back_len != len || memcmp(back, in, len) != 0)
        bench_die("%s: the compressed body does not gunzip to the original", name);
    uint64_t iterations = 0;
    uint64_t start = thread_cpu_ns(), now;
    do {
        fn(state, in, len, out, cap);
        iterations++;
        now = thread_cpu_ns();
    } while (now - start < (uint64_t)(seconds * 1e9) || iterations < 3);
    double per_body = (double)(now - start) / (double)iterations;
    printf("\"%s\": {\"ns_per_body\": %.1f, \"ns_per_event\": %.1f, \"compressed_bytes\": %zu"
           ", \"ratio\": %.3f, \"iterations\": %" PRIu64 "}",
           name, per_body, per_body / (double)events, size, (double)len / (double)size, iterations);
    free(out);
    free(back);
}

static int floor_compress(const char *path, double seconds)
{
    size_t len;
    unsigned char *body = read_file(path, &len);
    uint64_t events = bench_count_markers((const char *)body, len);
    if (events == 0)
        bench_die("%s: no \"%s\" in it: not a batch body from the benchmark", path,
                  BENCH_MARKER_KEY);
    if (len > UINT32_MAX / 2)
        bench_die("%s: too large for igzip's 32-bit lengths", path);
    struct libdeflate_compressor *deflater = libdeflate_alloc_compressor(1);
    struct libdeflate_decompressor *inflater = libdeflate_alloc_decompressor();
    if (deflater == NULL || inflater == NULL)
        bench_die("out of memory for libdeflate");
    printf("{\"plain_bytes\": %zu, \"events\": %" PRIu64 ", ", len, events);
    compress_measure("libdeflate_1", libdeflate_compress, deflater, body, len, events, seconds,
                     inflater);
#ifdef BENCH_HAVE_ISAL
    struct isal_zstream z;
    isal_deflate_init(&z);
    z.level = 1;
    z.level_buf_size = ISAL_DEF_LVL1_DEFAULT;
    z.level_buf = bench_alloc(z.level_buf_size);
    z.gzip_flag = IGZIP_GZIP;
    z.end_of_stream = 1;
    z.flush = NO_FLUSH;
    printf(", ");
    compress_measure("igzip_1", igzip_compress, &z, body, len, events, seconds, inflater);
    free(z.level_buf);
#else
    printf(", \"igzip_1\": null");
#endif
    printf("}\n");
    libdeflate_free_compressor(deflater);
    libdeflate_free_decompressor(inflater);
    free(body);
    return 0;
}

/* ------------------------------------------------------------ main */

static void usage_exit(void)
{
    fputs("usage: bench-floor --socket PATH --events N\n"
          "       bench-floor --compress FILE [--ms MILLISECONDS]\n",
          stderr);
    exit(2);
}

int main(int argc, char **argv)
{
    bench_set_program("bench-floor");
    static const struct option longopts[] = {{"socket", required_argument, NULL, 's'},
                                             {"events", required_argument, NULL, 'n'},
                                             {"compress", required_argument, NULL, 'c'},
                                             {"ms", required_argument, NULL, 't'},
                                             {NULL, 0, NULL, 0}};
    const char *socket_path = NULL, *sample = NULL;
    uint64_t events = 0;
    double seconds = 1.0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 's':
            socket_path = optarg;
            break;
        case 'n':
            events = bench_parse_u64("--events", optarg, 1, UINT64_C(1) << 40);
            break;
        case 'c':
            sample = optarg;
            break;
        case 't':
            seconds = (double)bench_parse_u64("--ms", optarg, 1, 3600000) / 1000.0;
            break;
        default:
            usage_exit();
        }
    }
    if (optind != argc || (socket_path == NULL) == (sample == NULL))
        usage_exit();
    if (socket_path != NULL) {
        if (events == 0)
            usage_exit();
        return floor_unpack(socket_path, events);
    }
    return floor_compress(sample, seconds);
}
