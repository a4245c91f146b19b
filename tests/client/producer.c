/*
 * producer: a steady libtelemetry producer for the integration tests
 * (tests/integration/test_c_client.py), which kill and restart the real
 * agent under it.
 *
 *     TELEMETRY_SOCKET=PATH test_client_producer SECONDS RATE [MODE [ACK_TIMEOUT_MS [NAME]]]
 *
 * MODE is "reliable" or anything else for fire-and-forget. Sends NAME
 * (default "debug-ping") events {"i": n, "pad": ~200 bytes} with distinct_id
 * "c-producer" at RATE per second for SECONDS, then flushes (up to 30 s).
 * Prints, one per line:
 *     event N START_MS STATUS      start: CLOCK_MONOTONIC milliseconds
 *     tick MS acked=A sent=S disconnects=D   every 20 ms from a side thread
 *     slowest_us N                 the slowest tlm_send
 *     flush STATUS
 *     stats attempted=.. sent=.. acked=.. queued=.. dropped=.. connects=.. agent_errors=..
 *           error=REASON (the agent's last error reply, "-" if none)
 * Exits 0 if every send returned TLM_OK and the flush succeeded.
 * The environment may set PRODUCER_QUEUE_BYTES (default 4 MiB; 0 for the
 * library's default) and PRODUCER_FLUSH_MS (default 30000). With
 * PRODUCER_COUNT=N it sends exactly N events as fast as the queue takes
 * them (waiting for room before each, as a producer that must not lose
 * any would), SECONDS and RATE aside, and prints no "event" lines.
 */
#include "telemetry.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double producer_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int producer_done; /* __atomic */
static pthread_mutex_t producer_out = PTHREAD_MUTEX_INITIALIZER;

static void *producer_ticker(void *arg)
{
    tlm_client *c = arg;
    while (!__atomic_load_n(&producer_done, __ATOMIC_RELAXED)) {
        tlm_stats st;
        tlm_get_stats(c, &st);
        pthread_mutex_lock(&producer_out);
        printf("tick %.3f acked=%" PRIu64 " sent=%" PRIu64 " disconnects=%" PRIu64 "\n",
               producer_now_ms(), st.acked, st.sent, st.disconnects);
        pthread_mutex_unlock(&producer_out);
        struct timespec ts = {0, 20 * 1000000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s SECONDS RATE [MODE [ACK_TIMEOUT_MS [NAME]]]\n", argv[0]);
        return 2;
    }
    double seconds = atof(argv[1]);
    double rate = atof(argv[2]);
    tlm_options o;
    tlm_options_init(&o);
    const char *queue_bytes = getenv("PRODUCER_QUEUE_BYTES");
    const char *flush_ms = getenv("PRODUCER_FLUSH_MS");
    o.queue_bytes = queue_bytes ? (size_t)atol(queue_bytes) : 4 << 20;
    const char *count_text = getenv("PRODUCER_COUNT");
    int64_t count = count_text ? atoll(count_text) : -1;
    size_t room_needed = (o.queue_bytes ? o.queue_bytes : TLM_DEFAULT_QUEUE_BYTES) - 4096;
    o.reconnect_max_ms = 200;
    o.reliable = argc > 3 && strcmp(argv[3], "reliable") == 0;
    if (argc > 4)
        o.ack_timeout_ms = (unsigned)atoi(argv[4]);
    const char *name = argc > 5 ? argv[5] : "debug-ping";
    tlm_client *c;
    if (tlm_open(&c, NULL, &o) != TLM_OK)
        return 2;
    pthread_t ticker;
    pthread_create(&ticker, NULL, producer_ticker, c);
    char pad[200];
    memset(pad, 'p', sizeof pad);
    double start = producer_now_ms(), next = start, slowest = 0;
    int failures = 0;
    for (int64_t i = 0; count >= 0 ? i < count : producer_now_ms() - start < seconds * 1000.0;
         i++) {
        if (count >= 0) {
            tlm_stats now;
            while (tlm_get_stats(c, &now) == TLM_OK && now.queued_bytes > room_needed) {
                struct timespec ts = {0, 1000000};
                nanosleep(&ts, NULL);
            }
        }
        tlm_event *ev;
        if (tlm_event_new(&ev, name) != TLM_OK)
            return 2;
        tlm_event_add_int(ev, "i", i);
        tlm_event_add_strn(ev, "pad", pad, sizeof pad);
        tlm_event_set_distinct_id(ev, "c-producer");
        double t0 = producer_now_ms();
        tlm_status st = tlm_send(c, ev);
        double took = producer_now_ms() - t0;
        tlm_event_free(ev);
        slowest = took > slowest ? took : slowest;
        failures += st != TLM_OK;
        if (count >= 0)
            continue;
        pthread_mutex_lock(&producer_out);
        printf("event %" PRId64 " %.3f %s\n", i, t0, tlm_strerror(st));
        pthread_mutex_unlock(&producer_out);
        next += 1000.0 / rate;
        double wait = next - producer_now_ms();
        if (wait > 0) {
            struct timespec ts = {(time_t)(wait / 1000), (long)(wait * 1e6) % 1000000000};
            nanosleep(&ts, NULL);
        }
    }
    tlm_status flushed = tlm_flush(c, flush_ms ? atoi(flush_ms) : 30000);
    __atomic_store_n(&producer_done, 1, __ATOMIC_RELAXED);
    pthread_join(ticker, NULL);
    tlm_stats st;
    tlm_get_stats(c, &st);
    printf("slowest_us %.0f\nflush %s\n", slowest * 1000, tlm_strerror(flushed));
    printf("stats attempted=%" PRIu64 " sent=%" PRIu64 " acked=%" PRIu64 " resent=%" PRIu64
           " queued=%" PRIu64 " dropped=%" PRIu64 " rejected=%" PRIu64 " connects=%" PRIu64
           " disconnects=%" PRIu64 " agent_errors=%" PRIu64 " reason=%s error=%s\n",
           st.attempted, st.sent, st.acked, st.resent, st.queued,
           st.dropped_queue_full + st.dropped_too_large + st.dropped_invalid +
               st.dropped_rejected + st.dropped_connection,
           st.dropped_rejected, st.connects, st.disconnects, st.agent_errors,
           st.last_reject_reason[0] ? st.last_reject_reason : "-",
           st.last_error_reason[0] ? st.last_error_reason : "-");
    tlm_close(c);
    return failures == 0 && flushed == TLM_OK ? 0 : 1;
}
