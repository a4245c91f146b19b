/*
 * What the fuzz targets share: the agent's configuration for them (the
 * given environment over the defaults), and a pipeline whose batches are
 * checked as the backend would read them: valid JSON, no repeated key, as
 * many events as counted, then let go as delivered.
 */
#ifndef FUZZ_HARNESS_H
#define FUZZ_HARNESS_H

#include "batch.h"
#include "budget.h"
#include "config.h"
#include "pipeline.h"

#include <event2/event.h>

struct harness {
    struct event_base *base;
    struct config cfg;
    struct budget budget;
    struct batcher batcher;
    struct pipeline pipeline;
};

/* Set up h with env (NULL-terminated "NAME=value") over the defaults;
 * aborts when it cannot. */
void harness_init(struct harness *h, char **env);
/* Seal the open batch (checked), and abort if any byte stays charged. */
void harness_settle(struct harness *h);

#endif
