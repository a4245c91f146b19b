/*
 * budget: bytes held against buffer.max_bytes (see budget.h).
 */
#include "budget.h"

void budget_init(struct budget *b, size_t max)
{
    *b = (struct budget){.max = max};
}

int budget_full(const struct budget *b)
{
    return b->used >= b->max;
}

int budget_fits(const struct budget *b, size_t bytes)
{
    return bytes <= b->max && b->used <= b->max - bytes;
}

size_t budget_room(const struct budget *b)
{
    return b->used < b->max ? b->max - b->used : 0;
}

void budget_charge(struct budget *b, size_t bytes)
{
    b->used += bytes;
    if (b->used > b->peak)
        b->peak = b->used;
}

void budget_release(struct budget *b, size_t bytes)
{
    b->used = bytes > b->used ? 0 : b->used - bytes;
    if (b->on_release != NULL)
        b->on_release(b->release_arg);
    if (b->wanted && b->used <= b->max - b->max / 4) {
        b->wanted = 0;
        if (b->on_room != NULL)
            b->on_room(b->room_arg);
    }
}

void budget_wait(struct budget *b)
{
    b->wanted = 1;
}
