/*
 * budget: bytes held against buffer.max_bytes (see budget.h).
 */
#include "budget.h"

void budget_init(struct budget *b, size_t max)
{
    b->used = 0;
    b->max = max;
}

int budget_fits(const struct budget *b, size_t bytes)
{
    return bytes <= b->max && b->used <= b->max - bytes;
}

void budget_charge(struct budget *b, size_t bytes)
{
    b->used += bytes;
}

void budget_release(struct budget *b, size_t bytes)
{
    b->used = bytes > b->used ? 0 : b->used - bytes;
}
