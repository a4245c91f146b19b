/*
 * The fuzz targets' shared set-up (see harness.h).
 */
#include "harness.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The sender's place: check the batch, then let it go as delivered. */
static void harness_check_batch(struct batch *batch, void *arg)
{
    struct harness *h = arg;
    size_t len = batch->events.len + 2;
    char *text = malloc(len);
    if (text == NULL)
        abort();
    text[0] = '[';
    memcpy(text + 1, batch->events.data, batch->events.len);
    text[len - 1] = ']';
    json_error_t err;
    /* integers as reals: JSON has no bound on them, jansson's are 64-bit signed */
    json_t *root = json_loadb(text, len,
                              JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL,
                              &err);
    /* "\u0000" in a key is valid JSON that jansson cannot hold: not a fault */
    int jansson_limit = root == NULL && strstr(err.text, "NUL byte in object key") != NULL;
    if (!jansson_limit && (root == NULL || json_array_size(root) != batch->count)) {
        /* the agent would send the backend something broken */
        fprintf(stderr, "batch of %u events: %s\n%.*s\n", batch->count,
                root ? "a different number of events" : err.text, (int)len, text);
        abort();
    }
    json_decref(root);
    free(text);
    batch_done(batch, &h->budget, 1, 0);
}

void harness_init(struct harness *h, char **env)
{
    char err[CONFIG_ERR_LEN];
    log_set_level(LOG_ERROR);
    if (config_load(&h->cfg, NULL, env, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        abort();
    }
    h->base = event_base_new();
    budget_init(&h->budget, (size_t)h->cfg.buffer_max_bytes);
    struct batch_limits limits = batch_limits_for(&h->cfg, 200, 0);
    if (h->base == NULL ||
        batcher_init(&h->batcher, h->base, &limits, &h->budget, harness_check_batch, h) < 0 ||
        pipeline_init(&h->pipeline, &h->cfg, NULL, &h->batcher, NULL) < 0)
        abort();
}

void harness_settle(struct harness *h)
{
    batcher_seal(&h->batcher);
    if (h->budget.used != 0)
        abort(); /* bytes charged and never released */
}
