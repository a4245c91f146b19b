/*
 * budget: the bound on the memory that undelivered events take
 * (buffer.max_bytes): batches, counted by what they have allocated, and the
 * request bodies being built, compressed and sent.
 *
 * Stages charge what they hold and release it when they let go. Charges are
 * never refused here: the stages that take new events ask first
 * (budget_full) and either wait for room (budget_wait: the on_room callback
 * runs once usage is back to three quarters of the bound, so waiting
 * producers resume in bulk rather than one event at a time) or drop.
 */
#ifndef TA_BUDGET_H
#define TA_BUDGET_H

#include <stddef.h>

struct budget {
    size_t used;
    size_t max;
    size_t peak;                 /* highest `used` so far */
    int wanted;                  /* someone waits for room */
    void (*on_room)(void *arg);  /* called when there is room again after budget_wait */
    void *room_arg;
    void (*on_release)(void *arg); /* called after every release (the spool reads ahead) */
    void *release_arg;
};

void budget_init(struct budget *b, size_t max);
/* No room left: takers of new events must wait or drop. */
int budget_full(const struct budget *b);
/* Would `bytes` more stay within the bound? */
int budget_fits(const struct budget *b, size_t bytes);
/* How many more bytes stay within the bound (0 when full). */
size_t budget_room(const struct budget *b);
void budget_charge(struct budget *b, size_t bytes);
void budget_release(struct budget *b, size_t bytes);
/* Ask for on_room(room_arg) once usage is down to 3/4 of the bound. */
void budget_wait(struct budget *b);

#endif
