/*
 * hello: emit one event with libtelemetry.
 *
 * Sends "debug-ping" with a string, an integer, a double, a boolean, a
 * null, a nested map and an array to the agent at $TELEMETRY_SOCKET (else
 * /run/telemetry/agent.sock), waits up to two seconds for it to be written,
 * and prints the client's counters. An optional argument is the event name.
 * Exits 0 when the event was written, 1 otherwise.
 *
 *     TELEMETRY_SOCKET=/tmp/agent.sock ./telemetry-hello [EVENT]
 */
#include <telemetry.h>

#include <inttypes.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    const char *name = argc > 1 ? argv[1] : "debug-ping"; /* in proto/events.txt */
    tlm_client *client;
    tlm_status st = tlm_open(&client, NULL, NULL);
    if (st != TLM_OK) {
        fprintf(stderr, "hello: tlm_open: %s\n", tlm_strerror(st));
        return 1;
    }
    tlm_event *ev;
    st = tlm_event_new(&ev, name);
    if (st != TLM_OK) {
        fprintf(stderr, "hello: event '%s': %s\n", name, tlm_strerror(st));
        tlm_close(client);
        return 1;
    }
    /* builder errors are kept in the event; tlm_send reports the first */
    tlm_event_add_str(ev, "greeting", "hello, world");
    tlm_event_add_int(ev, "answer", 42);
    tlm_event_add_double(ev, "ratio", 0.25);
    tlm_event_add_bool(ev, "ok", 1);
    tlm_event_add_null(ev, "nothing");
    tlm_event_begin_map(ev, "library");
    tlm_event_add_str(ev, "name", "libtelemetry");
    tlm_event_add_str(ev, "version", tlm_version());
    tlm_event_end(ev);
    static const int64_t primes[] = {2, 3, 5, 7, 11};
    tlm_event_begin_array(ev, "primes");
    for (size_t i = 0; i < sizeof primes / sizeof primes[0]; i++)
        tlm_event_add_int(ev, NULL, primes[i]);
    tlm_event_end(ev);
    st = tlm_send(client, ev);
    tlm_event_free(ev);
    if (st == TLM_OK)
        st = tlm_flush(client, 2000);
    tlm_stats stats;
    tlm_get_stats(client, &stats);
    printf("%s: %s (socket %s; sent %" PRIu64 ", queued %" PRIu64 ")\n", name, tlm_strerror(st),
           tlm_socket_path(client), stats.sent, stats.queued);
    tlm_close(client);
    return st == TLM_OK ? 0 : 1;
}
