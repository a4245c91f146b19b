/*
 * http: HTTP POSTs through libcurl's multi interface, driven by the libevent
 * loop (curl_multi_socket_action with socket and timer callbacks).
 *
 * No call here blocks. Connections are kept alive and reused by the multi
 * handle's connection cache. The caller limits how many requests are in
 * flight; this module only runs them and reports each outcome once.
 */
#ifndef TA_HTTP_H
#define TA_HTTP_H

#include "buf.h"

#include <event2/event.h>

#define HTTP_BODY_START_LEN 256

struct http_result {
    int transport_ok;            /* an HTTP status was read */
    long status;
    char error[256];             /* curl's message when !transport_ok */
    char retry_after[64];        /* the Retry-After header, or "" */
    char body_start[HTTP_BODY_START_LEN]; /* start of the response body */
};

typedef void (*http_done_fn)(const struct http_result *result, void *arg);

struct http;

/* headers: NULL-terminated "Name: value" lines added to every request. */
struct http *http_new(struct event_base *base, const char *const *headers, long timeout_ms);
/* POST body (taken over: freed when done) to url; done is called exactly once,
 * later, from the event loop. Returns 0, or -1 (body freed, done not called). */
int http_post(struct http *h, const char *url, struct buf *body, http_done_fn done, void *arg);
/* Abort every request in flight without calling done; then free. */
void http_free(struct http *h);

#endif
