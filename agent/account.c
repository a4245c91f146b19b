/*
 * account: the event ledger (see account.h).
 */
#include "account.h"

#include <string.h>

static struct account ledger;

const struct account *account_now(void)
{
    return &ledger;
}

const char *account_source_name(enum event_source source)
{
    static const char *const names[SOURCE_COUNT] = {"native", "forward", "http", "recovered"};
    return (unsigned)source < SOURCE_COUNT ? names[source] : "unknown";
}

void account_received(enum event_source source)
{
    ledger.received[source]++;
}

void account_refused(enum event_source source, enum drop_reason reason)
{
    ledger.dropped[reason]++;
    ledger.refused[source]++;
}

void account_buffered(void)
{
    ledger.buffered++;
    ledger.accepted++;
}

void account_delivered(uint64_t n)
{
    ledger.buffered -= n;
    ledger.delivered += n;
}

void account_dropped(enum drop_reason reason, uint64_t n)
{
    ledger.buffered -= n;
    ledger.dropped[reason] += n;
}

uint64_t account_received_total(void)
{
    uint64_t total = 0;
    for (int i = 0; i < SOURCE_COUNT; i++)
        total += ledger.received[i];
    return total;
}

uint64_t account_dropped_total(void)
{
    uint64_t total = 0;
    for (int i = 0; i < DROP_REASON_COUNT; i++)
        total += ledger.dropped[i];
    return total;
}

int account_balanced(void)
{
    return account_received_total() ==
           ledger.delivered + ledger.buffered + account_dropped_total();
}

void account_restore(const struct account *saved)
{
    ledger = *saved;
    ledger.buffered = account_received_total() - ledger.delivered - account_dropped_total();
}

void account_recovered(uint64_t n)
{
    ledger.received[SOURCE_RECOVERED] += n;
    ledger.buffered += n;
}

void account_reset(void)
{
    memset(&ledger, 0, sizeof ledger);
}
