/*
 * event: what the rest of the library needs from the event builder besides
 * the public tlm_event_* calls: uuids, and the fork handlers for the lock
 * around the agent's uuid generator.
 */
#ifndef TLM_EVENT_H
#define TLM_EVENT_H

#include "telemetry.h"

#include <stdint.h>

/* A UUIDv7 for time ms, distinct across threads and forked processes. */
void tlm_event_new_uuid(int64_t ms, char out[TLM_UUID_LEN + 1]);

/* Around fork(): hold the uuid lock, then release it in parent and child. */
void tlm_event_fork_prepare(void);
void tlm_event_fork_release(void);

#endif
