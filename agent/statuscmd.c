/*
 * statuscmd: `telemetry-agent status [-c FILE] [--url URL]`, for a person
 * at a shell in the pod: asks the running agent's /status (on [http]
 * listen, from the same configuration) and prints it as a short table.
 */
#include "statuscmd.h"

#include "buf.h"
#include "config.h"
#include "httpd.h"

#include <curl/curl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define STATUS_TIMEOUT_MS 5000
#define STATUS_MAX_BYTES (1024 * 1024)

static size_t status_collect(char *data, size_t size, size_t n, void *arg)
{
    struct buf *body = arg;
    if (body->len + size * n > STATUS_MAX_BYTES || buf_append(body, data, size * n) < 0)
        return 0;
    return size * n;
}

/* The URL of /status from the listen address: a wildcard address is asked
 * on loopback. */
static int status_url(const char *listen, char *url, size_t len)
{
    char host[64], err[200];
    int port;
    if (httpd_parse_listen(listen, host, sizeof host, &port, err, sizeof err) < 0 || port == 0)
        return -1;
    int v6 = strchr(host, ':') != NULL;
    const char *h = strcmp(host, "0.0.0.0") == 0 ? "127.0.0.1" : strcmp(host, "::") == 0 ? "::1"
                                                                                          : host;
    snprintf(url, len, v6 ? "http://[%s]:%d/status" : "http://%s:%d/status", h, port);
    return 0;
}

static long long status_int(json_t *obj, const char *path)
{
    char key[64];
    const char *dot;
    while ((dot = strchr(path, '.')) != NULL && obj != NULL) {
        snprintf(key, sizeof key, "%.*s", (int)(dot - path), path);
        obj = json_object_get(obj, key);
        path = dot + 1;
    }
    json_t *v = obj ? json_object_get(obj, path) : NULL;
    return json_is_integer(v) ? (long long)json_integer_value(v) : 0;
}

static const char *status_str(json_t *obj, const char *key, const char *none)
{
    json_t *v = obj ? json_object_get(obj, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : none;
}

static void status_print(json_t *st)
{
    json_t *events = json_object_get(st, "events"), *backend = json_object_get(st, "backend");
    json_t *spool = json_object_get(st, "spool"), *rate = json_object_get(st, "delivered_per_second");
    long long up = status_int(st, "uptime_seconds");
    printf("agent       %s, up %lldh%02lldm%02llds, %s%s\n", status_str(st, "version", "?"),
           up / 3600, up / 60 % 60, up % 60,
           json_is_true(json_object_get(st, "ready")) ? "ready" : "NOT READY: ",
           status_str(st, "not_ready_because", ""));
    printf("events      received %lld, delivered %lld (%.1f/s over the last minute), "
           "buffered %lld, dropped %lld\n",
           status_int(events, "received"), status_int(events, "delivered"),
           json_is_number(rate) ? json_number_value(rate) : 0.0, status_int(events, "buffered"),
           status_int(events, "dropped"));
    const char *reason;
    json_t *n;
    json_object_foreach(json_object_get(events, "dropped_by_reason"), reason, n)
        printf("              dropped as %s: %lld\n", reason, (long long)json_integer_value(n));
    printf("backend     %s: %s, %lld requests in flight, %lld batches waiting\n",
           status_str(backend, "url", "?"), status_str(backend, "state", "?"),
           status_int(backend, "requests_in_flight"), status_int(backend, "batches_waiting"));
    printf("last error  %s%s%s\n", status_str(backend, "last_error", "none"),
           json_is_string(json_object_get(backend, "last_error_at")) ? " at " : "",
           status_str(backend, "last_error_at", ""));
    printf("buffer      %lld of %lld bytes\n", status_int(st, "buffer.bytes"),
           status_int(st, "buffer.max_bytes"));
    if (json_is_object(spool))
        printf("spool       %s: %lld events undelivered, %lld bytes in %lld files (of %lld), "
               "oldest undelivered from %s%s\n",
               status_str(spool, "dir", "?"), status_int(spool, "undelivered"),
               status_int(spool, "bytes"), status_int(spool, "segments"),
               status_int(spool, "max_bytes"), status_str(spool, "oldest_undelivered_at", "-"),
               json_is_true(json_object_get(spool, "failing")) ? "; WRITES FAIL" : "");
    else
        printf("spool       none (events are kept in memory)\n");
    printf("connections %lld open, %lld refused\n", status_int(st, "connections.open"),
           status_int(st, "connections.refused"));
}

int status_command(int argc, char **argv, char **envp)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"url", required_argument, NULL, 'u'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL, *given_url = NULL;
    int opt;
    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:", options, NULL)) != -1) {
        if (opt == 'c')
            config_path = optarg;
        else if (opt == 'u')
            given_url = optarg;
        else {
            fprintf(stderr, "usage: telemetry-agent status [-c FILE] [--url URL]\n");
            return 2;
        }
    }
    struct config cfg;
    char err[CONFIG_ERR_LEN], url[256];
    if (given_url != NULL) {
        snprintf(url, sizeof url, "%s/status", given_url);
    } else {
        if (config_load(&cfg, config_path, envp, err, sizeof err) < 0) {
            fprintf(stderr, "telemetry-agent status: configuration error: %s\n", err);
            return 1;
        }
        int ok = status_url(cfg.http_listen, url, sizeof url) == 0;
        if (!ok)
            fprintf(stderr, "telemetry-agent status: [http] listen = '%s' gives no address to "
                    "ask (it is empty, or its port is 0: give the agent's with --url "
                    "http://HOST:PORT)\n", cfg.http_listen);
        config_free(&cfg);
        if (!ok)
            return 1;
    }
    struct buf body = BUF_INIT;
    long code = 0;
    CURL *curl = curl_easy_init();
    CURLcode rc = CURLE_FAILED_INIT;
    if (curl != NULL) {
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)STATUS_TIMEOUT_MS);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, status_collect);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
        rc = curl_easy_perform(curl);
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
        curl_easy_cleanup(curl);
    }
    if (rc != CURLE_OK || code != 200) {
        fprintf(stderr, "telemetry-agent status: cannot reach the agent at %s: %s\n", url,
                rc != CURLE_OK ? curl_easy_strerror(rc) : "it did not answer 200");
        buf_free(&body);
        return 1;
    }
    json_error_t jerr;
    json_t *st = json_loadb(body.data, body.len, 0, &jerr);
    buf_free(&body);
    if (!json_is_object(st)) {
        fprintf(stderr, "telemetry-agent status: %s answered something that is not its status: "
                "%s\n", url, jerr.text);
        json_decref(st);
        return 1;
    }
    status_print(st);
    json_decref(st);
    return 0;
}
