/*
 * account: where every event is. Every event that arrives leaves by
 * exactly one door, so at any moment
 *
 *     received = delivered + buffered + sum of dropped[reason]
 *
 * where buffered is what the agent holds and the backend has not confirmed.
 * The stages report each move here and nowhere else, so the equation is
 * kept in this one file; a stage never writes a counter itself.
 */
#ifndef TA_ACCOUNT_H
#define TA_ACCOUNT_H

#include "reason.h"

#include <stdint.h>

/* Where events come from. */
/* SOURCE_RECOVERED: events found in the spool at start that the counters
 * saved with it had not seen (received just before a crash). */
enum event_source { SOURCE_NATIVE, SOURCE_FORWARD, SOURCE_HTTP, SOURCE_RECOVERED, SOURCE_COUNT };

struct account {
    uint64_t received[SOURCE_COUNT];
    uint64_t buffered; /* a gauge: accepted, neither delivered nor dropped yet */
    uint64_t accepted; /* taken in since the agent started (not kept across restarts) */
    uint64_t refused[SOURCE_COUNT]; /* refused on arrival since the agent started, by
                                     * source (also in dropped[], by reason) */
    uint64_t delivered;
    uint64_t dropped[DROP_REASON_COUNT];
};

/* The counters now (read-only). */
const struct account *account_now(void);
const char *account_source_name(enum event_source source);

/* One event arrived from source (counted before it is checked). */
void account_received(enum event_source source);
/* An event that arrived from source leaves at once: refused, or
 * discarded by design. */
void account_refused(enum event_source source, enum drop_reason reason);
/* An event that arrived is now buffered. */
void account_buffered(void);
/* n buffered events were confirmed by the backend. */
void account_delivered(uint64_t n);
/* n buffered events were dropped. */
void account_dropped(enum drop_reason reason, uint64_t n);

uint64_t account_received_total(void);
uint64_t account_dropped_total(void);
/* Does the equation above hold? */
int account_balanced(void);
/* Take up counters saved by an earlier run (spool mode); buffered is what
 * the others leave. */
void account_restore(const struct account *saved);
/* n events found in the spool that the restored counters had not seen. */
void account_recovered(uint64_t n);
/* Forget everything (for tests). */
void account_reset(void);

#endif
