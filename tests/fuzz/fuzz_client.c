/*
 * Fuzz target: what the agent writes back, as the client library reads it.
 * A reliable client (no thread) writes three events with chunk ids to a
 * socket the test plays the agent on; the input is everything the "agent"
 * answers before it closes the connection: acknowledgements, deferrals,
 * refusals, errors, or anything at all. The client must never crash, leak
 * or count more events than it was given.
 */
#include "telemetry.h"

#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char path[108];
static int listener = -1;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/fuzz-client-XXXXXX";
    if (mkdtemp(dir) == NULL)
        abort();
    snprintf(path, sizeof path, "%s/agent.sock", dir);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path);
    listener = socket(AF_UNIX, SOCK_STREAM, 0);
    if (listener < 0 || bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0 ||
        listen(listener, 8) < 0)
        abort();
    return 0;
}

/* Let the client do what it can now. */
static void turn(tlm_client *c)
{
    for (int i = 0; i < 3; i++)
        tlm_poll(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tlm_options opt;
    tlm_options_init(&opt);
    opt.no_thread = 1;
    opt.reliable = 1;
    tlm_client *c;
    if (tlm_open(&c, path, &opt) != TLM_OK)
        abort();
    static const unsigned char event[] = "\x81\xa5" "event\xafproject:created";
    for (int i = 0; i < 3; i++)
        tlm_send_raw(c, event, sizeof event - 1);
    turn(c);
    struct pollfd p = {listener, POLLIN, 0};
    if (poll(&p, 1, 1000) != 1)
        abort(); /* the client did not connect */
    int agent = accept(listener, NULL, NULL);
    if (agent < 0)
        abort();
    char sink[4096];
    turn(c);
    while (poll(&(struct pollfd){agent, POLLIN, 0}, 1, 0) == 1 &&
           read(agent, sink, sizeof sink) > 0)
        ; /* what the client wrote */
    size_t off = 0;
    while (off < size) {
        ssize_t n = send(agent, data + off, size - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        turn(c); /* it reads as the replies come */
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    close(agent);
    turn(c);
    tlm_stats st;
    if (tlm_get_stats(c, &st) == TLM_OK && st.acked + st.dropped_rejected > 3)
        abort(); /* more events answered for than were sent */
    tlm_close(c);
    /* a reconnect the client tried after the close waits in the backlog */
    while (poll(&p, 1, 0) == 1) {
        int extra = accept(listener, NULL, NULL);
        if (extra < 0)
            break;
        close(extra);
    }
    return 0;
}
