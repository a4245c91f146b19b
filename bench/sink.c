/*
 * sink.c: bench-sink, the benchmark's HTTP backend. It takes the agent's
 * (or Fluent Bit's) POSTed batches on 127.0.0.1, gunzips them with
 * libdeflate when they say Content-Encoding: gzip, and counts events as the
 * occurrences of "bench_t": in the body. An event whose bench_t is not 0
 * was stamped by bench-loadgen with CLOCK_MONOTONIC when it was written:
 * now - bench_t goes into a latency histogram. It answers 200 {} (503 in
 * outage mode, counting nothing), and keeps the first plain body since the
 * last reset for the compressor floor.
 *
 *   bench-sink [--port P]     (0, the default: any free port)
 *
 * The first line on stdout is {"port": P}. Control endpoints:
 *   GET  /stats             every figure, as JSON, with the sink's own CPU
 *   POST /reset             zero the figures and forget the kept body
 *   POST /outage?on=1|0     answer batches 503 (1) or 200 (0)
 *   GET  /sample            the kept plain body (404 before one came)
 * Any other POST is a batch. SIGTERM or SIGINT stops it (exit 0).
 */
#include "common.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <getopt.h>
#include <inttypes.h>
#include <libdeflate.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define SINK_MAX_PLAIN_BYTES (256u * 1024 * 1024) /* largest body after gunzip */

/* Latency histogram, log-linear: values below 2^SINK_SUB_BITS exactly, above
 * in 2^(SINK_SUB_BITS-1) steps per power of two (under 1/64 error). */
#define SINK_SUB_BITS 7
#define SINK_HALF (1u << (SINK_SUB_BITS - 1))
#define SINK_BUCKETS ((64 - SINK_SUB_BITS + 2) * SINK_HALF)

struct figures {
    uint64_t requests;          /* batches answered 200 */
    uint64_t rejected_requests; /* batches answered 503 (outage) */
    uint64_t bad_requests;      /* bodies that did not gunzip */
    uint64_t events;
    uint64_t wire_bytes;     /* request bodies as received */
    uint64_t plain_bytes;    /* after gunzip */
    uint64_t first_event_ns; /* CLOCK_MONOTONIC when the first / last event was counted */
    uint64_t last_event_ns;
    uint64_t latency_count;
    uint64_t latency_max;
    uint64_t latency[SINK_BUCKETS];
    uint64_t cpu_at_reset_ns;
};

struct sink {
    struct event_base *base;
    struct evhttp *http;
    struct libdeflate_decompressor *inflater;
    unsigned char *plain; /* gunzip output, reused */
    size_t plain_capacity;
    struct evbuffer *sample; /* the first plain body since the reset */
    int outage;
    struct figures fig;
};

/* ------------------------------------------------------------ histogram */

static size_t latency_bucket(uint64_t v)
{
    if (v < 2 * SINK_HALF)
        return (size_t)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - (SINK_SUB_BITS - 1);
    return (size_t)(shift + 1) * SINK_HALF + (size_t)(v >> shift) - SINK_HALF;
}

/* The middle of a bucket's range of values. */
static uint64_t latency_bucket_value(size_t index)
{
    if (index < 2 * SINK_HALF)
        return index;
    unsigned shift = (unsigned)(index / SINK_HALF) - 1;
    uint64_t low = (uint64_t)(index % SINK_HALF + SINK_HALF) << shift;
    return low + ((UINT64_C(1) << shift) - 1) / 2;
}

static void latency_record(struct figures *f, uint64_t v)
{
    f->latency[latency_bucket(v)]++;
    f->latency_count++;
    if (v > f->latency_max)
        f->latency_max = v;
}

/* The value at quantile q (0 < q <= 1): the smallest bucket holding at least
 * ceil(q * count) of the values; 0 with no values. */
static uint64_t latency_quantile(const struct figures *f, double q)
{
    if (f->latency_count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)f->latency_count + 0.999999);
    if (rank == 0)
        rank = 1;
    uint64_t seen = 0;
    for (size_t i = 0; i < SINK_BUCKETS; i++) {
        seen += f->latency[i];
        if (seen >= rank) {
            uint64_t v = latency_bucket_value(i);
            return v < f->latency_max ? v : f->latency_max;
        }
    }
    return f->latency_max;
}

/* ------------------------------------------------------------ batches */

/* body gunzipped into sink->plain; its length, or SIZE_MAX if it is not gzip. */
static size_t sink_gunzip(struct sink *s, const unsigned char *body, size_t len)
{
    size_t want = len * 4;
    if (len >= 18) { /* the gzip trailer's ISIZE: the plain size mod 2^32 */
        const unsigned char *t = body + len - 4;
        size_t isize = (size_t)t[0] | (size_t)t[1] << 8 | (size_t)t[2] << 16 | (size_t)t[3] << 24;
        if (isize > want)
            want = isize;
    }
    for (;;) {
        if (want > SINK_MAX_PLAIN_BYTES)
            return SIZE_MAX;
        if (s->plain_capacity < want) {
            s->plain = bench_realloc(s->plain, want);
            s->plain_capacity = want;
        }
        size_t out = 0;
        enum libdeflate_result r =
            libdeflate_gzip_decompress(s->inflater, body, len, s->plain, s->plain_capacity, &out);
        if (r == LIBDEFLATE_SUCCESS)
            return out;
        if (r != LIBDEFLATE_INSUFFICIENT_SPACE)
            return SIZE_MAX;
        want = s->plain_capacity * 2 + 4096;
    }
}

/* Count the events of a plain body and time the stamped ones. */
static void sink_count(struct sink *s, const char *text, size_t len)
{
    uint64_t now = bench_now_ns();
    const char *end = text + len;
    uint64_t events = 0;
    for (const char *p = bench_find_marker(text, end); p != NULL; p = bench_find_marker(p, end)) {
        p += sizeof BENCH_MARKER - 1;
        while (p < end && *p == ' ')
            p++;
        uint64_t stamp = 0;
        while (p < end && *p >= '0' && *p <= '9')
            stamp = stamp * 10 + (uint64_t)(*p++ - '0');
        events++;
        if (stamp != 0)
            latency_record(&s->fig, now > stamp ? now - stamp : 0);
    }
    if (events > 0) {
        if (s->fig.events == 0)
            s->fig.first_event_ns = now;
        s->fig.last_event_ns = now;
        s->fig.events += events;
    }
}

static void sink_reply(struct evhttp_request *req, int code, const char *reason, const char *json)
{
    struct evbuffer *out = evbuffer_new();
    if (out == NULL)
        bench_die("out of memory");
    evbuffer_add(out, json, strlen(json));
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, code, reason, out);
    evbuffer_free(out);
}

static void sink_batch(struct sink *s, struct evhttp_request *req)
{
    if (s->outage) {
        s->fig.rejected_requests++;
        sink_reply(req, 503, "Service Unavailable", "{\"error\": \"outage\"}");
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const unsigned char *body = evbuffer_pullup(in, -1);
    if (body == NULL && len > 0)
        bench_die("out of memory (a body of %zu bytes)", len);
    const char *encoding =
        evhttp_find_header(evhttp_request_get_input_headers(req), "Content-Encoding");
    const unsigned char *plain = body;
    size_t plain_len = len;
    if (encoding != NULL && strcmp(encoding, "gzip") == 0) {
        plain_len = sink_gunzip(s, body, len);
        if (plain_len == SIZE_MAX) {
            s->fig.bad_requests++;
            sink_reply(req, 400, "Bad Request", "{\"error\": \"not gzip\"}");
            return;
        }
        plain = s->plain;
    }
    s->fig.requests++;
    s->fig.wire_bytes += len;
    s->fig.plain_bytes += plain_len;
    if (evbuffer_get_length(s->sample) == 0 && plain_len > 0)
        evbuffer_add(s->sample, plain, plain_len);
    sink_count(s, (const char *)plain, plain_len);
    sink_reply(req, 200, "OK", "{}");
}

/* ------------------------------------------------------------ control */

static void sink_stats(struct sink *s, struct evhttp_request *req)
{
    const struct figures *f = &s->fig;
    char json[1024];
    snprintf(json, sizeof json,
             "{\"requests\": %" PRIu64 ", \"rejected_requests\": %" PRIu64
             ", \"bad_requests\": %" PRIu64 ", \"events\": %" PRIu64 ", \"wire_bytes\": %" PRIu64
             ", \"plain_bytes\": %" PRIu64 ", \"first_event_ns\": %" PRIu64
             ", \"last_event_ns\": %" PRIu64 ", \"latency_ns\": {\"count\": %" PRIu64
             ", \"p50\": %" PRIu64 ", \"p99\": %" PRIu64 ", \"p999\": %" PRIu64
             ", \"max\": %" PRIu64 "}, \"cpu_ms\": %.3f, \"outage\": %d, \"sample_bytes\": %zu}",
             f->requests, f->rejected_requests, f->bad_requests, f->events, f->wire_bytes,
             f->plain_bytes, f->first_event_ns, f->last_event_ns, f->latency_count,
             latency_quantile(f, 0.50), latency_quantile(f, 0.99), latency_quantile(f, 0.999),
             f->latency_max, (double)(bench_self_cpu_ns() - f->cpu_at_reset_ns) / 1e6, s->outage,
             evbuffer_get_length(s->sample));
    sink_reply(req, 200, "OK", json);
}

static void sink_reset(struct sink *s)
{
    memset(&s->fig, 0, sizeof s->fig);
    s->fig.cpu_at_reset_ns = bench_self_cpu_ns();
    evbuffer_drain(s->sample, evbuffer_get_length(s->sample));
}

static void sink_outage(struct sink *s, struct evhttp_request *req)
{
    struct evkeyvalq query = {0};
    const char *q = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    const char *on = NULL;
    if (q != NULL && evhttp_parse_query_str(q, &query) == 0)
        on = evhttp_find_header(&query, "on");
    int valid = on != NULL && (strcmp(on, "0") == 0 || strcmp(on, "1") == 0);
    if (valid)
        s->outage = on[0] == '1';
    evhttp_clear_headers(&query);
    if (valid)
        sink_reply(req, 200, "OK", "{}");
    else
        sink_reply(req, 400, "Bad Request", "{\"error\": \"use /outage?on=1 or on=0\"}");
}

static void sink_sample(struct sink *s, struct evhttp_request *req)
{
    if (evbuffer_get_length(s->sample) == 0) {
        sink_reply(req, 404, "Not Found", "{\"error\": \"no batch received yet\"}");
        return;
    }
    struct evbuffer *out = evbuffer_new();
    if (out == NULL || evbuffer_add_buffer_reference(out, s->sample) != 0)
        bench_die("out of memory");
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", "application/json");
    evhttp_send_reply(req, 200, "OK", out);
    evbuffer_free(out);
}

static void sink_request_cb(struct evhttp_request *req, void *arg)
{
    struct sink *s = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    if (path == NULL)
        path = "";
    if (method == EVHTTP_REQ_GET && strcmp(path, "/stats") == 0)
        sink_stats(s, req);
    else if (method == EVHTTP_REQ_GET && strcmp(path, "/sample") == 0)
        sink_sample(s, req);
    else if (method == EVHTTP_REQ_POST && strcmp(path, "/reset") == 0) {
        sink_reset(s);
        sink_reply(req, 200, "OK", "{}");
    } else if (method == EVHTTP_REQ_POST && strcmp(path, "/outage") == 0)
        sink_outage(s, req);
    else if (method == EVHTTP_REQ_POST)
        sink_batch(s, req);
    else
        sink_reply(req, 404, "Not Found", "{\"error\": \"no such endpoint\"}");
}

static void sink_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct sink *s = arg;
    /* said, so that a sink stopped by someone else is seen to be */
    fprintf(stderr, "bench-sink: stopping on %s\n", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    event_base_loopexit(s->base, NULL);
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv)
{
    bench_set_program("bench-sink");
    static const struct option longopts[] = {{"port", required_argument, NULL, 'p'},
                                             {NULL, 0, NULL, 0}};
    uint16_t port = 0;
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        if (ch != 'p') {
            fputs("usage: bench-sink [--port P]\n", stderr);
            return 2;
        }
        port = (uint16_t)bench_parse_u64("--port", optarg, 0, 65535);
    }
    if (optind != argc) {
        fputs("usage: bench-sink [--port P]\n", stderr);
        return 2;
    }

    static struct sink s; /* static: the histogram is large */
    s.base = event_base_new();
    s.http = s.base ? evhttp_new(s.base) : NULL;
    s.inflater = libdeflate_alloc_decompressor();
    s.sample = evbuffer_new();
    if (s.http == NULL || s.inflater == NULL || s.sample == NULL)
        bench_die("cannot set up libevent / libdeflate");
    sink_reset(&s);
    evhttp_set_allowed_methods(s.http, EVHTTP_REQ_GET | EVHTTP_REQ_POST);
    evhttp_set_gencb(s.http, sink_request_cb, &s);
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(s.http, "127.0.0.1", port);
    if (bound == NULL)
        bench_die_errno("cannot listen on 127.0.0.1:%u", (unsigned)port);
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;
    if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&addr, &addr_len) != 0)
        bench_die_errno("getsockname");
    printf("{\"port\": %u}\n", (unsigned)ntohs(addr.sin_port));
    if (fflush(stdout) != 0)
        bench_die_errno("stdout");

    struct event *term = evsignal_new(s.base, SIGTERM, sink_signal_cb, &s);
    struct event *intr = evsignal_new(s.base, SIGINT, sink_signal_cb, &s);
    if (term == NULL || intr == NULL || event_add(term, NULL) != 0 || event_add(intr, NULL) != 0)
        bench_die("cannot set up the signal handlers");
    if (event_base_dispatch(s.base) < 0)
        bench_die("the event loop failed");

    event_free(term);
    event_free(intr);
    evhttp_free(s.http);
    evbuffer_free(s.sample);
    libdeflate_free_decompressor(s.inflater);
    free(s.plain);
    event_base_free(s.base);
    return 0;
}
