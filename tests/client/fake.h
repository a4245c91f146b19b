/*
 * fake: test doubles for the agent's side of the socket, for the client
 * library's tests.
 *
 * A fake_socket is a listening Unix socket at a fresh temporary path, with
 * helpers to accept and read. A fake_agent runs a thread around one: it
 * accepts connections one at a time, splits each into msgpack objects with
 * msgpack-c, logs every message (connection number, peer pid, the event's
 * properties.i, its chunk) and answers chunks as its policy says: ack,
 * reject, stay silent, close the connection, or close it after an error
 * reply as the agent does for a bad message. It can also refuse the next
 * connections at once, with an error reply (as an agent at max_connections)
 * or without (as one that dies). Tests inspect the log.
 */
#ifndef CLIENT_FAKE_H
#define CLIENT_FAKE_H

#include <msgpack.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "telemetry.h"

struct fake_socket {
    char dir[64];
    char path[108]; /* fits sun_path */
    int fd; /* listening; -1 when not */
};

/* A fresh temporary directory and a path in it (not listening yet). */
int fake_socket_init(struct fake_socket *s);
/* Listen at s->path. Returns 0 or -1. */
int fake_socket_listen(struct fake_socket *s);
/* Stop listening and remove the socket file. */
void fake_socket_unlisten(struct fake_socket *s);
/* Unlisten and remove the directory. */
void fake_socket_cleanup(struct fake_socket *s);
/* Accept one connection within timeout_ms; the fd, or -1. */
int fake_socket_accept(struct fake_socket *s, int timeout_ms);

struct fake_bytes {
    unsigned char *data;
    size_t len, cap;
};

/* Read from fd into b, at most max bytes more (0: no limit), until EOF or
 * until no byte came for idle_ms. Returns the bytes read. */
size_t fake_read(int fd, struct fake_bytes *b, size_t max, int idle_ms);
void fake_bytes_free(struct fake_bytes *b);

/* Walk the complete msgpack objects of data with msgpack-c, calling fn for
 * each (fn may be NULL). Returns how many; *used is the bytes they take
 * (data[*used..len) is an incomplete tail); -1 if msgpack-c refuses them. */
long fake_objects(const unsigned char *data, size_t len, size_t *used,
                  void (*fn)(const msgpack_object *obj, void *arg), void *arg);

/* The value of key in a map, or NULL. */
const msgpack_object *fake_map_get(const msgpack_object *map, const char *key);
/* properties.i of an event, or -1. */
int64_t fake_event_i(const msgpack_object *ev);

/* Send "debug-ping" with properties {"i": i, "pad": <pad bytes>}. */
tlm_status fake_send_indexed(tlm_client *c, int64_t i, size_t pad);
/* fake_send_indexed for i = from .. to-1; how many did not return TLM_OK. */
int fake_send_range(tlm_client *c, int64_t from, int64_t to, size_t pad);
/* The sum of st's dropped_* counters. */
uint64_t fake_dropped(const tlm_stats *st);
/* A client at path with options o, where a reconnect_max_ms left 0 is 100
 * (tests do not wait seconds for a reconnect); NULL if tlm_open fails. */
tlm_client *fake_client(const char *path, tlm_options o);

/* FAKE_ERROR: {"error": <fake_agent_error's reason>, "detail": ...}, then
 * close (the replies to the messages before it are written first). */
/* FAKE_DEFER: {"deferred": chunk, "reason": "buffer_full"} (not taken). */
enum fake_action { FAKE_ACK, FAKE_SILENT, FAKE_REJECT, FAKE_CLOSE, FAKE_ERROR, FAKE_DEFER };

struct fake_message {
    int conn;     /* 1, 2, ...: which connection it came on */
    pid_t pid;    /* the peer's pid on that connection */
    int64_t i;    /* properties.i, -1 if none */
    char chunk[65];
    int seen;     /* how many times this i had come before */
};

#define FAKE_LOG_MAX 20000

struct fake_agent {
    struct fake_socket sock;
    pthread_t thread;
    pthread_mutex_t lock;
    int stop;
    int read_delay_us; /* sleep before each read (a slow agent) */
    enum fake_action (*policy)(const struct fake_message *m, void *arg);
    void *policy_arg;
    /* guarded by lock */
    struct fake_message log[FAKE_LOG_MAX];
    int nlog;
    int conns;
    int torn;                 /* connections that ended inside an object */
    int refuse;               /* connections still to refuse (fake_agent_refuse) */
    const char *refuse_error; /* their reply's reason; NULL: none */
    int refused;              /* connections refused (counted once closed) */
    const char *error;        /* FAKE_ERROR's reason */
};

/* Start the thread (listening at a fresh path). policy NULL: always ack. */
int fake_agent_start(struct fake_agent *a,
                     enum fake_action (*policy)(const struct fake_message *m, void *arg),
                     void *arg);
/* The same at the path of s (initialized, not listening); a takes it over. */
int fake_agent_start_at(struct fake_agent *a, const struct fake_socket *s,
                        enum fake_action (*policy)(const struct fake_message *m, void *arg),
                        void *arg);
void fake_agent_stop(struct fake_agent *a);
/* Refuse the next n connections as soon as they are accepted, reading
 * nothing: write {"error": error, "detail": ...} (error NULL: no reply at
 * all) and close. */
void fake_agent_refuse(struct fake_agent *a, int n, const char *error);
/* The reason FAKE_ERROR replies with (static storage); "too_large" after
 * start. */
void fake_agent_error(struct fake_agent *a, const char *error);
/* Write {"error": error, "detail": "fake: <error>"} to fd. */
void fake_write_error(int fd, const char *error);
/* Wait until the log holds n messages (or timeout_ms); returns nlog. */
int fake_agent_wait(struct fake_agent *a, int n, int timeout_ms);
/* A copy of the log (malloc'd, *n entries). */
struct fake_message *fake_agent_log(struct fake_agent *a, int *n);

/* Milliseconds on the monotonic clock. */
int64_t fake_now_ms(void);
void fake_sleep_ms(int ms);

#endif
