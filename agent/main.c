/*
 * main: command line, signals and wiring.
 *
 *   listener -> conn -> pipeline -> batcher -> sender -> transport
 *
 * or, with [spool] dir set,
 *
 *   listener -> conn -> pipeline -> spooler (disk) -> batcher -> sender -> transport
 *
 * Each stage is made before the one that feeds it, and is handed to it:
 * nothing is patched after construction. Start-up fails early and clearly
 * (config, registry, socket). Shutdown on SIGTERM, SIGINT or SIGQUIT: stop
 * accepting, read what connections already sent, seal the open batch,
 * deliver for up to agent.shutdown_grace_ms, report what could not be
 * delivered (with a spool: what stays on disk for the next start), exit 0.
 * A second signal ends the wait. SIGHUP reloads the configuration
 * (reload.c). Every other signal a process manager or a person may send is
 * logged and ignored.
 */
#define _GNU_SOURCE /* sigabbrev_np */
#include "account.h"
#include "batch.h"
#include "body.h"
#include "budget.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "memlimit.h"
#include "metrics.h"
#include "ops.h"
#include "pipeline.h"
#include "registry.h"
#include "relay.h"
#include "reload.h"
#include "sender.h"
#include "spooler.h"
#include "statuscmd.h"
#include "transport.h"
#include "version.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <jansson.h>
#include <msgpack.h>
#include <getopt.h>
#include <limits.h>
#include <malloc.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define MAIN_LOG_FLUSH_MS 2000 /* at exit, how long the last lines may wait for stderr */
#define MAIN_FDS_BESIDES_CONNECTIONS 64 /* listener, backend connections, pipes, files */
#define MAIN_MMAP_THRESHOLD (4 * 1024 * 1024) /* larger blocks (a spool segment read whole) are mmapped */

extern char **environ;

/* Signals that end the agent gracefully, and those it logs and ignores. */
static const int main_stop_signals[] = {SIGTERM, SIGINT, SIGQUIT};
static const int main_ignored_signals[] = {SIGUSR1, SIGUSR2, SIGALRM, SIGVTALRM,
                                           SIGPROF, SIGIO, SIGPWR, SIGXCPU, SIGSTKFLT};
#define MAIN_NSTOP (sizeof main_stop_signals / sizeof main_stop_signals[0])
#define MAIN_NIGNORED (sizeof main_ignored_signals / sizeof main_ignored_signals[0])

struct agent {
    struct config cfg;
    struct event_base *base;
    struct registry *registry;
    struct budget budget;
    struct sender *sender;
    struct spooler *spooler; /* NULL: no disk spool */
    struct batcher batcher;
    int batcher_ready;
    struct pipeline pipeline;
    int pipeline_ready;
    struct listener *listener;
    struct ops *ops;         /* the operator endpoints, or NULL */
    struct relay *relay;     /* the browser relay, or NULL */
    struct reloader *reloader;
    const char *config_path; /* NULL: built-in defaults */
    struct event *stop_ev[MAIN_NSTOP], *ignored_ev[MAIN_NIGNORED], *grace_ev;
    int stopping;
};

static void main_usage(FILE *out)
{
    fprintf(out,
            "usage: telemetry-agent [-c FILE] [--check-config] [--print-default-config]\n"
            "                       [--version] [--help]\n"
            "       telemetry-agent status [-c FILE] [--url http://HOST:PORT]\n"
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

/* Nothing left to deliver: nothing queued for the backend and, with a
 * spool, nothing left in it either. */
static int main_delivered_all(const struct agent *a)
{
    return sender_pending(a->sender) == 0 && (a->spooler == NULL || account_now()->buffered == 0);
}

static void main_idle_cb(void *arg)
{
    struct agent *a = arg;
    if (a->stopping && main_delivered_all(a))
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

static void main_stop_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct agent *a = arg;
    if (a->stopping) {
        log_warn("second SIG%s: stopping now", sigabbrev_np(sig));
        main_finish(a);
        return;
    }
    a->stopping = 1;
    log_info("SIG%s: shutting down; delivering buffered events for up to %lld ms",
             sigabbrev_np(sig), (long long)a->cfg.shutdown_grace_ms);
    listener_shutdown(a->listener);
    relay_stop(a->relay); /* browsers' requests are refused from now on */
    if (a->spooler != NULL)
        spooler_stopping(a->spooler);
    batcher_seal(&a->batcher);
    sender_hurry(a->sender);
    sender_on_idle(a->sender, main_idle_cb, a);
    if (main_delivered_all(a)) {
        main_finish(a);
        return;
    }
    struct timeval tv = {a->cfg.shutdown_grace_ms / 1000, (a->cfg.shutdown_grace_ms % 1000) * 1000};
    if (evtimer_add(a->grace_ev, &tv) < 0) {
        log_error("cannot arm the shutdown grace timer: stopping now");
        main_finish(a);
    }
}

static void main_ignored_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    (void)arg;
    log_warn("SIG%s: ignored", sigabbrev_np(sig));
}

/* Handle the signals of the two lists on the loop. Returns 0 or -1. */
static int main_watch_signals(struct agent *a)
{
    for (size_t i = 0; i < MAIN_NSTOP; i++) {
        a->stop_ev[i] = evsignal_new(a->base, main_stop_signals[i], main_stop_cb, a);
        if (a->stop_ev[i] == NULL || evsignal_add(a->stop_ev[i], NULL) < 0)
            return -1;
    }
    for (size_t i = 0; i < MAIN_NIGNORED; i++) {
        a->ignored_ev[i] = evsignal_new(a->base, main_ignored_signals[i], main_ignored_cb, a);
        if (a->ignored_ev[i] == NULL || evsignal_add(a->ignored_ev[i], NULL) < 0)
            return -1;
    }
    return 0;
}

/* Signals nobody needs to hear about: a closed pipe or a file too large
 * shows as a write error; real-time signals mean nothing to the agent. */
static void main_ignore_quiet_signals(void)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGXFSZ, SIG_IGN);
    signal(SIGHUP, SIG_IGN); /* until the reloader hears it: start-up may take a while */
    for (int sig = SIGRTMIN; sig <= SIGRTMAX; sig++)
        signal(sig, SIG_IGN);
}

/* Room for agent.max_connections descriptors and the agent's own: raise
 * the soft limit as far as needed (and allowed), or say why not. */
static void main_raise_fd_limit(const struct config *cfg)
{
    rlim_t http = (cfg->relay_listen[0] ? (rlim_t)cfg->relay_max_connections : 0) +
                  (cfg->http_listen[0] ? (rlim_t)cfg->http_max_connections : 0);
    rlim_t besides = MAIN_FDS_BESIDES_CONNECTIONS + http;
    rlim_t need = (rlim_t)cfg->max_connections + besides;
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) < 0 || lim.rlim_cur >= need)
        return;
    rlim_t want = lim.rlim_max == RLIM_INFINITY || lim.rlim_max >= need ? need : lim.rlim_max;
    struct rlimit raised = {want, lim.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) < 0)
        want = lim.rlim_cur;
    if (want < need)
        log_warn("agent.max_connections = %lld needs %llu file descriptors (with %llu for the "
                 "HTTP listeners), but the limit is %llu (hard limit %llu): connections past "
                 "about %llu will be refused by accept(); raise the limit (ulimit -n) or lower "
                 "agent.max_connections",
                 (long long)cfg->max_connections, (unsigned long long)need,
                 (unsigned long long)http, (unsigned long long)want,
                 (unsigned long long)lim.rlim_max,
                 (unsigned long long)(want > besides ? want - besides : 0));
}

/* The effective configuration (secrets masked) and the libraries in use,
 * at start, for whoever reads the log of a pod. */
static void main_log_setup(const struct config *cfg)
{
    char text[2048];
    const char *section;
    for (size_t i = 0; (section = config_section(i)) != NULL; i++)
        log_info("configuration [%s] %s", section,
                 config_describe_section(cfg, section, text, sizeof text));
    log_info("libraries: libevent %s, libcurl %s, msgpack-c %s, jansson %s", event_get_version(),
             curl_version_info(CURLVERSION_NOW)->version, msgpack_version(), jansson_version_str());
    config_warn_risks(cfg);
    int64_t limit = memlimit_bytes("/proc/self/cgroup", "/sys/fs/cgroup");
    if (limit > 0 && cfg->buffer_max_bytes > limit / 2)
        log_warn("buffer.max_bytes = %lld is more than half of this container's memory limit "
                 "of %lld bytes (its cgroup): a full buffer may get the agent OOM-killed; lower "
                 "buffer.max_bytes or raise the limit", (long long)cfg->buffer_max_bytes,
                 (long long)limit);
}

/* Batch and body buffers come and go by the hundred a second: the
 * allocator keeps what they free for the next ones, instead of giving it
 * back to the kernel and faulting fresh pages in again (the cost of a first
 * touch is most of a page's worth of events). Buffers up to a few MiB come
 * from the heap rather than mmap, and the heap is trimmed only past what
 * the buffer's bound may use. */
static void main_tune_allocator(const struct config *cfg)
{
    mallopt(M_MMAP_THRESHOLD, MAIN_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, (int)(cfg->buffer_max_bytes < INT_MAX ? cfg->buffer_max_bytes
                                                                     : INT_MAX));
}

static int main_start(struct agent *a)
{
    char err[CONFIG_ERR_LEN];
    /* a precise clock: the coarse one lets timers fire a few ms early, and a
     * Retry-After pause is a floor */
    struct event_config *ev_cfg = event_config_new();
    if (ev_cfg != NULL) {
        event_config_set_flag(ev_cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
        a->base = event_base_new_with_config(ev_cfg);
        event_config_free(ev_cfg);
    }
    if (a->base == NULL || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        log_error("cannot initialise the event loop or libcurl");
        return -1;
    }
    main_raise_fd_limit(&a->cfg);
    main_tune_allocator(&a->cfg);
    budget_init(&a->budget, (size_t)a->cfg.buffer_max_bytes);
    struct body_format *format = body_format_for(&a->cfg);
    struct transport *transport = transport_new(a->base, &a->cfg);
    size_t envelope = format ? body_envelope_bytes(format) : 0;
    if (format == NULL || transport == NULL ||
        (a->sender = sender_new(a->base, &a->cfg, &a->budget, transport, format)) == NULL) {
        if (a->sender == NULL) {
            body_format_free(format);
            transport_free(transport);
        }
        log_error("cannot set up delivery to the backend");
        return -1;
    }
    int spooled = a->cfg.spool_dir[0] != '\0';
    if (spooled && (a->spooler = spooler_open(a->base, &a->cfg, &a->budget, err, sizeof err)) ==
                       NULL) {
        log_error("%s", err);
        return -1;
    }
    struct batch_limits limits = batch_limits_for(&a->cfg, envelope, spooled);
    if (batcher_init(&a->batcher, a->base, &limits, &a->budget,
                     spooled ? spooler_sealed : sender_submit,
                     spooled ? (void *)a->spooler : (void *)a->sender) < 0) {
        log_error("cannot set up batching");
        return -1;
    }
    a->batcher_ready = 1;
    if (spooled)
        spooler_feed(a->spooler, &a->batcher, a->sender);
    if (pipeline_init(&a->pipeline, &a->cfg, a->registry, &a->batcher, a->spooler) < 0) {
        log_error("out of memory");
        return -1;
    }
    a->pipeline_ready = 1;
    /* Signals first: once the socket answers, a SIGTERM must mean shutdown. */
    a->grace_ev = evtimer_new(a->base, main_grace_cb, a);
    struct reload_targets reload = {&a->cfg, a->config_path, environ, &a->registry,
                                    &a->pipeline, &a->batcher, a->sender, spooled,
                                    &a->stopping};
    if (a->grace_ev == NULL || main_watch_signals(a) < 0 ||
        (a->reloader = reloader_new(a->base, &reload)) == NULL) {
        log_error("cannot handle signals");
        return -1;
    }
    if (a->cfg.http_listen[0] != '\0') {
        struct ops_sources src = {&a->cfg,       &a->budget,   a->sender,    a->spooler,
                                  &a->listener, &a->stopping, &a->pipeline};
        if ((a->ops = ops_open(a->base, &src, err, sizeof err)) == NULL) {
            log_error("%s", err);
            return -1;
        }
    }
    if (a->cfg.relay_listen[0] != '\0' &&
        (a->relay = relay_open(a->base, &a->cfg, &a->pipeline, err, sizeof err)) == NULL) {
        log_error("%s", err);
        return -1;
    }
    a->listener = listener_open(a->base, &a->cfg, &a->pipeline, err, sizeof err);
    if (a->listener == NULL) {
        log_error("%s", err);
        return -1;
    }
    return 0;
}

/* What became of the events, in words that match the counters. */
static void main_report(int started)
{
    const struct account *acc = account_now();
    uint64_t received = account_received_total();
    char summary[1024];
    metrics_format_summary(summary, sizeof summary);
    if (!started)
        log_error("did not start; nothing was received");
    else if (received == 0)
        log_info("no events were received");
    else if (acc->delivered == received && received == 1)
        log_info("the one event received was delivered");
    else if (acc->delivered == received)
        log_info("all %" PRIu64 " events received were delivered", received);
    else if (acc->delivered + acc->dropped[DROP_DISABLED] == received)
        log_info("%" PRIu64 " events received: %" PRIu64 " delivered, %" PRIu64
                 " discarded by agent.enabled = false",
                 received, acc->delivered, acc->dropped[DROP_DISABLED]);
    else
        log_warn("%" PRIu64 " events received: %" PRIu64 " delivered, %" PRIu64
                 " not delivered (the dropped_* counters below say why)",
                 received, acc->delivered, received - acc->delivered);
    if (!account_balanced())
        log_error("the counters do not add up: received != delivered + buffered + dropped; "
                  "this is a bug in the agent");
    log_with(NULL, LOG_INFO,
             LOG_FIELDS(LOG_NUMBER("received", received), LOG_NUMBER("delivered", acc->delivered),
                        LOG_NUMBER("buffered", acc->buffered),
                        LOG_NUMBER("dropped", account_dropped_total())),
             "stopped: %s", summary);
}

static void main_stop(struct agent *a, int started)
{
    reloader_free(a->reloader);
    a->reloader = NULL;
    relay_free(a->relay);
    a->relay = NULL;
    ops_free(a->ops);
    a->ops = NULL;
    if (a->listener)
        listener_free(a->listener);
    a->listener = NULL;
    if (a->batcher_ready)
        batcher_seal(&a->batcher);
    if (a->sender) {
        uint64_t lost = sender_abandon(a->sender);
        if (lost > 0)
            log_error("%" PRIu64 " events could not be delivered before exit: the backend did "
                      "not take them within agent.shutdown_grace_ms = %lld", lost,
                      (long long)a->cfg.shutdown_grace_ms);
        sender_free(a->sender);
    }
    if (a->batcher_ready)
        batcher_destroy(&a->batcher);
    spooler_close(a->spooler); /* the last checkpoint, with the final counters */
    if (a->pipeline_ready)
        pipeline_destroy(&a->pipeline);
    if (started)
        log_info("buffer: at most %zu bytes held of buffer.max_bytes = %lld", a->budget.peak,
                 (long long)a->cfg.buffer_max_bytes);
    main_report(started);
    for (size_t i = 0; i < MAIN_NSTOP; i++)
        if (a->stop_ev[i])
            event_free(a->stop_ev[i]);
    for (size_t i = 0; i < MAIN_NIGNORED; i++)
        if (a->ignored_ev[i])
            event_free(a->ignored_ev[i]);
    if (a->grace_ev)
        event_free(a->grace_ev);
    if (a->base)
        event_base_free(a->base);
    registry_free(a->registry);
    config_free(&a->cfg);
    curl_global_cleanup();
    log_close(MAIN_LOG_FLUSH_MS);
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
    if (argc > 1 && strcmp(argv[1], "status") == 0)
        return status_command(argc - 1, argv + 1, environ);
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
    a->config_path = config_path;
    if (config_load(&a->cfg, config_path, environ, err, sizeof err) < 0) {
        fprintf(stderr, "telemetry-agent: configuration error: %s\n", err);
        return 1;
    }
    log_set_level((enum log_level)a->cfg.log_level);
    log_set_json(a->cfg.log_format == LOG_FORMAT_JSON);
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
    main_ignore_quiet_signals();
    int started = main_start(a) == 0;
    if (started) {
        char names[96] = "any event name accepted";
        if (a->registry != NULL)
            snprintf(names, sizeof names, "event names checked against the registry (%zu names)",
                     registry_count(a->registry));
        char ops[256] = "";
        if (a->ops != NULL)
            snprintf(ops, sizeof ops, "; operator endpoints on http://%s", ops_address(a->ops));
        if (a->relay != NULL)
            snprintf(ops + strlen(ops), sizeof ops - strlen(ops), "; browser relay on http://%s%s",
                     relay_address(a->relay), a->cfg.relay_path);
        char url[512];
        config_mask_url(a->cfg.url, url, sizeof url);
        log_with(NULL, LOG_INFO,
                 LOG_FIELDS(LOG_TEXT("version", TELEMETRY_VERSION),
                            LOG_TEXT("socket", a->cfg.socket), LOG_TEXT("backend", url)),
                 "%s %s listening on %s; %s; backend %s%s%s", TELEMETRY_NAME, TELEMETRY_VERSION,
                 a->cfg.socket, names, url,
                 a->cfg.enabled ? "" : " (disabled: events are discarded)", ops);
        main_log_setup(&a->cfg);
        event_base_dispatch(a->base);
    }
    main_stop(a, started);
    return started ? 0 : 1;
}
