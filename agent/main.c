/*
 * main: command line, signals and wiring.
 *
 *   listener -> pipeline -> batcher -> sender
 *
 * Start-up fails early and clearly (config, registry, socket). Shutdown on
 * SIGTERM or SIGINT: stop accepting, read what connections already sent,
 * seal the open batch, deliver for up to agent.shutdown_grace_ms, report
 * what could not be delivered, exit 0. A second signal ends the wait.
 */
#include "batch.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "metrics.h"
#include "pipeline.h"
#include "registry.h"
#include "sender.h"
#include "version.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

struct agent {
    struct config cfg;
    struct event_base *base;
    struct registry *registry;
    struct batcher batcher;
    struct pipeline pipeline;
    int pipeline_ready;
    struct sender *sender;
    struct listener *listener;
    struct event *sigterm_ev, *sigint_ev, *grace_ev;
    int stopping;
};

static void main_usage(FILE *out)
{
    fprintf(out,
            "usage: telemetry-agent [-c FILE] [--check-config] [--print-default-config]\n"
            "                       [--version] [--help]\n"
            "\n"
            "Receives msgpack analytics events on a Unix socket, validates, enriches and\n"
            "batches them, and delivers the batches to an HTTP backend.\n"
            "\n"
            "  -c, --config FILE        read settings from FILE (INI); without it the\n"
            "                           built-in defaults are used\n"
            "  --check-config           validate the configuration and exit\n"
            "  --print-default-config   print the documented default configuration\n"
            "  --version                print the version and exit\n"
            "  -h, --help               show this help\n"
            "\n"
            "Settings can also be given as TELEMETRY_AGENT_<SECTION>_<KEY> environment\n"
            "variables; the API key as %s.\n",
            CONFIG_API_KEY_ENV);
}

static void main_finish(struct agent *a)
{
    event_base_loopexit(a->base, NULL);
}

static void main_idle_cb(void *arg)
{
    struct agent *a = arg;
    if (a->stopping)
        main_finish(a);
}

static void main_grace_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct agent *a = arg;
    log_warn("shutdown grace of %lld ms is over", (long long)a->cfg.shutdown_grace_ms);
    main_finish(a);
}

static void main_signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct agent *a = arg;
    if (a->stopping) {
        log_warn("second %s: stopping now", sig == SIGINT ? "SIGINT" : "SIGTERM");
        main_finish(a);
        return;
    }
    a->stopping = 1;
    log_info("%s: shutting down; delivering buffered events for up to %lld ms",
             sig == SIGINT ? "SIGINT" : "SIGTERM", (long long)a->cfg.shutdown_grace_ms);
    listener_shutdown(a->listener);
    batcher_seal(&a->batcher);
    sender_on_idle(a->sender, main_idle_cb, a);
    if (sender_pending(a->sender) == 0) {
        main_finish(a);
        return;
    }
    struct timeval tv = {a->cfg.shutdown_grace_ms / 1000, (a->cfg.shutdown_grace_ms % 1000) * 1000};
    evtimer_add(a->grace_ev, &tv);
}

static int main_start(struct agent *a)
{
    char err[CONFIG_ERR_LEN];
    a->base = event_base_new();
    if (a->base == NULL || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("cannot initialise the event loop or libcurl");
        return -1;
    }
    struct batch_limits limits = {
        .max_events = (uint32_t)a->cfg.batch_max_events,
        .max_body_bytes = (size_t)a->cfg.batch_max_bytes,
        .envelope_bytes = sender_envelope_bytes(&a->cfg),
        .max_age_ms = a->cfg.batch_max_age_ms,
        .max_event_bytes = (size_t)a->cfg.max_event_bytes,
        .buffer_max_bytes = (size_t)a->cfg.buffer_max_bytes,
    };
    if (batcher_init(&a->batcher, a->base, &limits, sender_submit, NULL) < 0)
        return -1;
    a->sender = sender_new(a->base, &a->cfg, &a->batcher);
    if (a->sender == NULL) {
        log_error("cannot set up the backend sender");
        return -1;
    }
    a->batcher.arg = a->sender;
    if (pipeline_init(&a->pipeline, &a->cfg, a->registry, &a->batcher) < 0) {
        log_error("out of memory");
        return -1;
    }
    a->pipeline_ready = 1;
    /* Signals first: once the socket answers, a SIGTERM must mean shutdown. */
    a->sigterm_ev = evsignal_new(a->base, SIGTERM, main_signal_cb, a);
    a->sigint_ev = evsignal_new(a->base, SIGINT, main_signal_cb, a);
    a->grace_ev = evtimer_new(a->base, main_grace_cb, a);
    if (!a->sigterm_ev || !a->sigint_ev || !a->grace_ev || evsignal_add(a->sigterm_ev, NULL) < 0 ||
        evsignal_add(a->sigint_ev, NULL) < 0)
        return -1;
    a->listener = listener_open(a->base, &a->cfg, &a->pipeline, err, sizeof err);
    if (a->listener == NULL) {
        log_error("%s", err);
        return -1;
    }
    return 0;
}

static void main_stop(struct agent *a)
{
    if (a->listener)
        listener_free(a->listener);
    if (a->sender) {
        batcher_seal(&a->batcher);
        uint64_t lost = sender_abandon(a->sender);
        if (lost > 0)
            log_error("%llu events could not be delivered before exit",
                      (unsigned long long)lost);
        else
            log_info("all buffered events were delivered");
        sender_free(a->sender);
    }
    batcher_destroy(&a->batcher);
    if (a->pipeline_ready)
        pipeline_destroy(&a->pipeline);
    char summary[1024];
    metrics_format_summary(summary, sizeof summary);
    log_info("stopped: %s", summary);
    if (a->sigterm_ev)
        event_free(a->sigterm_ev);
    if (a->sigint_ev)
        event_free(a->sigint_ev);
    if (a->grace_ev)
        event_free(a->grace_ev);
    if (a->base)
        event_base_free(a->base);
    registry_free(a->registry);
    config_free(&a->cfg);
    curl_global_cleanup();
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'C'},
        {"print-default-config", no_argument, NULL, 'P'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config_path = NULL;
    int check_only = 0, opt;
    while ((opt = getopt_long(argc, argv, "c:h", options, NULL)) != -1) {
        switch (opt) {
        case 'c': config_path = optarg; break;
        case 'C': check_only = 1; break;
        case 'P': config_print_defaults(stdout); return 0;
        case 'V': printf("%s %s\n", TELEMETRY_NAME, TELEMETRY_VERSION); return 0;
        case 'h': main_usage(stdout); return 0;
        default: main_usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "telemetry-agent: unexpected argument '%s'\n", argv[optind]);
        main_usage(stderr);
        return 2;
    }

    static struct agent agent;
    struct agent *a = &agent;
    char err[CONFIG_ERR_LEN];
    if (config_load(&a->cfg, config_path, environ, err, sizeof err) < 0) {
        fprintf(stderr, "telemetry-agent: configuration error: %s\n", err);
        return 1;
    }
    log_set_level((enum log_level)a->cfg.log_level);
    if (a->cfg.registry[0] != '\0' &&
        (a->registry = registry_load(a->cfg.registry, err, sizeof err)) == NULL) {
        fprintf(stderr, "telemetry-agent: configuration error: %s\n", err);
        config_free(&a->cfg);
        return 1;
    }
    if (check_only) {
        printf("%s: configuration OK\n", config_path ? config_path : "built-in defaults");
        registry_free(a->registry);
        config_free(&a->cfg);
        return 0;
    }
    signal(SIGPIPE, SIG_IGN);
    int rc = 1;
    if (main_start(a) == 0) {
        log_info("%s %s listening on %s; %s; backend %s%s", TELEMETRY_NAME, TELEMETRY_VERSION,
                 a->cfg.socket, a->registry ? "event names checked against the registry" :
                 "any event name accepted", a->cfg.url, a->cfg.enabled ? "" : " (disabled: events are discarded)");
        event_base_dispatch(a->base);
        rc = 0;
    }
    main_stop(a);
    return rc;
}
