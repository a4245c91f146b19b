/*
 * Fuzz target: the browser relay's request body, through the real relay on
 * a loopback port: the input is the body of a POST (its first byte chooses
 * identity or gzip Content-Encoding and Content-Type application/json or
 * text/plain). The relay must answer with one of its statuses and a JSON
 * body, and the events it takes must make valid batches (harness.c).
 */
#include "harness.h"
#include "relay.h"

#include <arpa/inet.h>
#include <event2/event.h>
#include <jansson.h>
#include <libdeflate.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct harness h;
static struct relay *relay;
static struct sockaddr_in address;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char *env[] = {"TELEMETRY_AGENT_EVENTS_REGISTRY=", "TELEMETRY_AGENT_RELAY_LISTEN=127.0.0.1:0",
                   "TELEMETRY_AGENT_RELAY_RATE_LIMIT=0", "TELEMETRY_AGENT_RELAY_MAX_BODY_BYTES=65536",
                   "TELEMETRY_AGENT_BATCH_MAX_EVENTS=5", NULL};
    harness_init(&h, env);
    char err[CONFIG_ERR_LEN];
    relay = relay_open(h.base, &h.cfg, &h.pipeline, err, sizeof err);
    if (relay == NULL) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    const char *at = relay_address(relay); /* "127.0.0.1:PORT" */
    address.sin_family = AF_INET;
    address.sin_port = htons((uint16_t)atoi(strrchr(at, ':') + 1));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return 0;
}

/* The whole answer to request (the relay closes or answers once). */
static size_t exchange(const char *request, size_t len, char *answer, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0)
        abort();
    connect(fd, (struct sockaddr *)&address, sizeof address);
    size_t sent = 0, got = 0;
    /* by the clock, not by rounds: the relay's sweep (a timer) must get to
     * free finished connections however fast or slow the machine is */
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > 10)
            break;
        event_base_loop(h.base, EVLOOP_NONBLOCK);
        poll(&(struct pollfd){fd, POLLIN, 0}, 1, 1);
        if (sent < len) {
            ssize_t n = send(fd, request + sent, len - sent, MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
        }
        ssize_t n = recv(fd, answer + got, cap - 1 - got, 0);
        if (n > 0)
            got += (size_t)n;
        answer[got] = '\0';
        const char *end = strstr(answer, "\r\n\r\n");
        const char *length = strstr(answer, "Content-Length: ");
        if (n == 0 || (end && length && got >= (size_t)(end + 4 - answer) +
                                                    strtoul(length + 16, NULL, 10)))
            break;
    }
    close(fd);
    event_base_loop(h.base, EVLOOP_NONBLOCK);
    return got;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > 60000)
        return 0;
    int gzip = data[0] & 1, plain = data[0] & 2;
    const uint8_t *body = data + 1;
    size_t body_len = size - 1;
    uint8_t *packed = NULL;
    if (gzip) { /* the body as a browser would compress it */
        struct libdeflate_compressor *c = libdeflate_alloc_compressor(1);
        size_t bound = libdeflate_gzip_compress_bound(c, body_len);
        packed = malloc(bound);
        body_len = libdeflate_gzip_compress(c, body, body_len, packed, bound);
        body = packed;
        libdeflate_free_compressor(c);
    }
    size_t cap = body_len + 512;
    char *request = malloc(cap);
    int head = snprintf(request, cap,
                        "POST %s HTTP/1.1\r\nHost: relay\r\nContent-Type: %s\r\n%s"
                        "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                        h.cfg.relay_path, plain ? "text/plain" : "application/json",
                        gzip ? "Content-Encoding: gzip\r\n" : "", body_len);
    memcpy(request + head, body, body_len);
    char answer[16384];
    size_t got = exchange(request, (size_t)head + body_len, answer, sizeof answer);
    int status = 0;
    if (got < 12 || sscanf(answer, "HTTP/1.1 %d", &status) != 1 ||
        (status != 202 && status != 400 && status != 413 && status != 415 && status != 503)) {
        fprintf(stderr, "unexpected answer: %.*s\n", (int)got, answer);
        abort();
    }
    const char *json = strstr(answer, "\r\n\r\n");
    json_error_t err;
    json_t *v = json ? json_loads(json + 4, 0, &err) : NULL;
    if (v == NULL) {
        fprintf(stderr, "the answer's body is not JSON: %.*s\n", (int)got, answer);
        abort();
    }
    json_decref(v);
    harness_settle(&h);
    free(request);
    free(packed);
    return 0;
}
