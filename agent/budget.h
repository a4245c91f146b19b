/*
 * budget: the bound on the memory that undelivered events take
 * (buffer.max_bytes). Stages charge what they hold and release it when
 * they let go; the batcher asks before it takes an event.
 */
#ifndef TA_BUDGET_H
#define TA_BUDGET_H

#include <stddef.h>

struct budget {
    size_t used;
    size_t max;
};

void budget_init(struct budget *b, size_t max);
/* Would `bytes` more fit? */
int budget_fits(const struct budget *b, size_t bytes);
void budget_charge(struct budget *b, size_t bytes);
void budget_release(struct budget *b, size_t bytes);

#endif
