/*
 * clock: the two clocks the agent uses. Monotonic milliseconds for timers,
 * ages and backoff; wall-clock milliseconds since the epoch for event
 * timestamps and sent_at.
 */
#ifndef PROTO_CLOCK_H
#define PROTO_CLOCK_H

#include <stdint.h>

int64_t clock_monotonic_ms(void);
int64_t clock_wall_ms(void);

#endif
