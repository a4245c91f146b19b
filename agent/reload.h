/*
 * reload: the configuration changed while the agent runs.
 *
 * On SIGHUP, or when agent.watch_config_ms notices that the config file,
 * backend.api_key_file or events.registry changed (a mounted ConfigMap or
 * Secret is updated in place), the agent reads its configuration again
 * exactly as at start: the same file, the same environment, the same
 * checks. A configuration that fails them is refused with the message
 * start-up would print, and the running one stays. Otherwise the settings
 * that can change while running take effect at once: batch limits for the
 * next batch (the open one is sealed), the backend's URL, key, gzip and
 * timeouts for the next request (a backoff ends: a fixed key is tried at
 * once), the event registry, properties, distinct_id and forward tag prefix
 * for the next event, log level and format for the next line. Those that
 * would need the socket, the listeners or the spool opened anew (the
 * config table marks them) keep their running value and are reported as
 * waiting for a restart. No connection is closed and no event is dropped.
 */
#ifndef TA_RELOAD_H
#define TA_RELOAD_H

#include "batch.h"
#include "config.h"
#include "pipeline.h"
#include "registry.h"
#include "sender.h"

#include <event2/event.h>

/* What a reload changes. */
struct reload_targets {
    struct config *cfg;           /* the running configuration, updated in place */
    const char *config_path;      /* NULL: defaults and environment only */
    char *const *envp;
    struct registry **registry;   /* the running registry (NULL: any name), replaced */
    struct pipeline *pipeline;
    struct batcher *batcher;
    struct sender *sender;
    int spooled;                  /* batches come from the disk spool */
    const int *stopping;          /* no reload once shutdown began */
};

struct reloader;

/* Reload on SIGHUP and, with agent.watch_config_ms, when a file changes.
 * NULL when out of memory. */
struct reloader *reloader_new(struct event_base *base, const struct reload_targets *targets);
void reloader_free(struct reloader *r);

#endif
