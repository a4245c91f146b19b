/*
 * reload: SIGHUP and the file watch re-read the configuration (see
 * reload.h).
 */
#include "reload.h"

#include "body.h"
#include "log.h"
#include "metrics.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The files a reload reads: the config file, backend.api_key_file and
 * events.registry. */
enum { RELOAD_FILE_CONFIG, RELOAD_FILE_API_KEY, RELOAD_FILE_REGISTRY, RELOAD_NFILES };

/* What stat() says of a file (through symbolic links, as a ConfigMap's
 * ..data link is switched): any change of it means the file changed. */
struct reload_file_state {
    int missing;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
};

struct reload_file {
    char *path; /* as last looked at; NULL: none */
    struct reload_file_state state;
};

struct reloader {
    struct reload_targets t;
    struct event *hup;
    struct event *watch;
    int64_t watch_ms; /* what the watch timer was armed with; 0: not armed */
    struct reload_file files[RELOAD_NFILES];
};

static const char *reload_file_path(const struct reloader *r, int which)
{
    const char *path = which == RELOAD_FILE_CONFIG    ? r->t.config_path
                       : which == RELOAD_FILE_API_KEY ? r->t.cfg->api_key_file
                                                      : r->t.cfg->registry;
    return path != NULL && path[0] != '\0' ? path : NULL;
}

static void reload_file_state(const char *path, struct reload_file_state *out)
{
    struct stat st;
    memset(out, 0, sizeof *out);
    if (path == NULL || stat(path, &st) < 0) {
        out->missing = 1;
        return;
    }
    out->dev = st.st_dev;
    out->ino = st.st_ino;
    out->size = st.st_size;
    out->mtime = st.st_mtim;
}

/* Look at the files now. A file named by another path than last time (a
 * reload changed it, and read it) is only noted; returns whether a file
 * under the same path changed (with paths_only, only notes new paths). */
static int reload_look_at_files(struct reloader *r, int paths_only)
{
    int changed = 0;
    for (int i = 0; i < RELOAD_NFILES; i++) {
        struct reload_file *f = &r->files[i];
        const char *path = reload_file_path(r, i);
        int same_path = path == NULL ? f->path == NULL : f->path && strcmp(path, f->path) == 0;
        if (same_path && paths_only)
            continue;
        struct reload_file_state now;
        reload_file_state(path, &now);
        if (!same_path) {
            free(f->path);
            f->path = path ? strdup(path) : NULL; /* NULL when out of memory: looked at again */
        } else if (now.missing != f->state.missing || now.dev != f->state.dev ||
                   now.ino != f->state.ino || now.size != f->state.size ||
                   now.mtime.tv_sec != f->state.mtime.tv_sec ||
                   now.mtime.tv_nsec != f->state.mtime.tv_nsec) {
            changed = 1;
        }
        f->state = now;
    }
    return changed;
}

static void reload_report_change(void *arg, const char *section, const char *name,
                                 const char *from, const char *to, int needs_restart)
{
    const char *why = arg;
    if (name == NULL)
        log_info("reload (%s): [%s] changed", why, section);
    else if (needs_restart)
        log_warn("reload (%s): [%s] %s = %s is ignored until restart: the agent keeps running "
                 "with %s", why, section, name, to, from);
    else
        log_info("reload (%s): [%s] %s = %s (was %s)", why, section, name, to, from);
}

static void reload_refuse(const char *why, const char *err)
{
    metrics_add(METRIC_CONFIG_RELOAD_FAILURES, 1);
    log_with(NULL, LOG_ERROR, LOG_FIELDS(LOG_TEXT("reload", why), LOG_TEXT("result", "refused")),
             "reload (%s) refused: configuration error: %s; the running configuration stays",
             why, err);
}

static void reload_arm_watch(struct reloader *r)
{
    int64_t ms = r->t.cfg->watch_config_ms;
    if (ms == r->watch_ms)
        return;
    evtimer_del(r->watch);
    r->watch_ms = 0;
    if (ms == 0)
        return;
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (event_add(r->watch, &tv) < 0) {
        log_error("cannot arm the timer of agent.watch_config_ms: only SIGHUP reloads");
        return;
    }
    r->watch_ms = ms;
}

/* The running parts follow the configuration that was just changed. */
static void reload_apply(struct reloader *r, struct registry *registry)
{
    const struct config *cfg = r->t.cfg;
    log_set_level((enum log_level)cfg->log_level);
    log_set_json(cfg->log_format == LOG_FORMAT_JSON);
    config_warn_risks(cfg);
    struct registry *old = *r->t.registry;
    *r->t.registry = registry;
    pipeline_reconfigure(r->t.pipeline, registry);
    registry_free(old);
    struct body_format *format = body_format_for(cfg);
    if (format == NULL) {
        log_error("reload: out of memory: requests keep the backend settings they had");
    } else {
        struct batch_limits limits =
            batch_limits_for(cfg, body_envelope_bytes(format), r->t.spooled);
        if (sender_reconfigure(r->t.sender, format) < 0)
            log_error("reload: out of memory: requests keep the backend settings they had");
        else
            batcher_set_limits(r->t.batcher, &limits);
    }
    reload_arm_watch(r);
}

/* Read the configuration again; why names the cause in the log. */
static void reload_now(struct reloader *r, const char *why)
{
    if (*r->t.stopping) {
        log_warn("reload (%s): ignored while shutting down", why);
        return;
    }
    struct config next;
    char err[CONFIG_ERR_LEN];
    if (config_load(&next, r->t.config_path, r->t.envp, err, sizeof err) < 0) {
        reload_refuse(why, err);
        return;
    }
    struct registry *registry = NULL;
    if (next.registry[0] != '\0' &&
        (registry = registry_load(next.registry, err, sizeof err)) == NULL) {
        config_free(&next);
        reload_refuse(why, err);
        return;
    }
    int changed = config_reconcile(r->t.cfg, &next, reload_report_change, (void *)why, err,
                                   sizeof err);
    if (changed < 0) {
        registry_free(registry);
        config_free(&next);
        reload_refuse(why, err);
        return;
    }
    reload_apply(r, registry);
    config_free(&next); /* the replaced values: nothing points into them now */
    metrics_add(METRIC_CONFIG_RELOADS, 1);
    char names[64] = "any event name accepted";
    if (registry != NULL)
        snprintf(names, sizeof names, "the registry has %zu event name%s",
                 registry_count(registry), registry_count(registry) == 1 ? "" : "s");
    log_with(NULL, LOG_INFO,
             LOG_FIELDS(LOG_TEXT("reload", why), LOG_TEXT("result", "done"),
                        LOG_NUMBER("changed", changed)),
             "reload (%s): done, %d setting%s changed; %s", why, changed, changed == 1 ? "" : "s",
             names);
}

static void reload_hup_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    struct reloader *r = arg;
    reload_look_at_files(r, 0); /* what is read now need not be reloaded again */
    reload_now(r, "SIGHUP");
    reload_look_at_files(r, 1);
}

static void reload_watch_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct reloader *r = arg;
    if (reload_look_at_files(r, 0)) {
        reload_now(r, "a watched file changed");
        reload_look_at_files(r, 1);
    }
}

struct reloader *reloader_new(struct event_base *base, const struct reload_targets *targets)
{
    struct reloader *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL;
    r->t = *targets;
    r->hup = evsignal_new(base, SIGHUP, reload_hup_cb, r);
    r->watch = event_new(base, -1, EV_PERSIST, reload_watch_cb, r);
    if (r->hup == NULL || r->watch == NULL || evsignal_add(r->hup, NULL) < 0) {
        reloader_free(r);
        return NULL;
    }
    reload_look_at_files(r, 0);
    reload_arm_watch(r);
    return r;
}

void reloader_free(struct reloader *r)
{
    if (r == NULL)
        return;
    if (r->hup != NULL)
        event_free(r->hup);
    if (r->watch != NULL)
        event_free(r->watch);
    for (int i = 0; i < RELOAD_NFILES; i++)
        free(r->files[i].path);
    free(r);
}
