/*
 * telemetry.h: libtelemetry, the C producer library for telemetry-agent.
 *
 * A program makes one client (tlm_open), builds events (tlm_event_new and the
 * tlm_event_add_* calls) and sends them (tlm_send). The client writes each
 * event as one msgpack map (wire protocol v1) to the agent's Unix socket and
 * never makes the caller wait for the agent:
 *
 *   - Sending never blocks and never raises SIGPIPE. When the agent is not
 *     there, or its socket buffer is full, the event waits in a bounded
 *     in-process queue (tlm_options.queue_bytes); past the bound it is
 *     dropped and counted (tlm_get_stats).
 *   - The client connects lazily (on the first send) and reconnects with
 *     bounded exponential backoff plus jitter when the agent goes away.
 *   - Draining: a send only queues the event; a background I/O thread, which
 *     the client starts on the first send and stops in tlm_close, writes the
 *     queue, many events to a system call. A send hands its event to the
 *     thread under a lock of its own, held for a few stores: it never waits
 *     while the thread works. The thread keeps 256 KiB of memory touched
 *     ready for queued events, so that a send does not fault pages in. While events flow it looks at the
 *     queue again every millisecond on its own, so a send makes no system
 *     call; once idle it sleeps in poll() until a send wakes it, the socket
 *     drains, a reply comes, or a reconnect or ack deadline is due. With
 *     tlm_options.no_thread, the client starts no thread: a send writes
 *     straight to the socket when nothing is queued ahead of it, and the
 *     queue drains only inside tlm_send*, tlm_flush and tlm_poll.
 *   - An event is written whole or, if the connection breaks half-way, the
 *     connection is dropped and the event is written again from its start on
 *     the next one: the agent never sees a torn event followed by another.
 *   - Reliable mode (tlm_options.reliable): every event carries a `chunk` id
 *     and is kept until the agent acknowledges it; unacknowledged events are
 *     resent, in order, after a reconnect or after the ack timeout; one the
 *     agent answers {"deferred": chunk} (not taken: its buffer was full) is
 *     written again after a short pause (50 ms, doubling to 1 s). Delivery
 *     is at least once; the event's uuid lets the backend drop duplicates.
 *   - An event is given up only on the agent's word: when it closes the
 *     connection with an error about that message (too large, too deep, not
 *     msgpack) again and again. In reliable mode an agent that refuses
 *     connections (max_connections), restarts or is killed costs no event:
 *     the events wait for it, within the queue's bound (fire-and-forget mode
 *     cannot know what a connection that closed had taken). tlm_stats keeps
 *     the agent's last error.
 *
 * Threads: one client may be shared by any number of threads; every tlm_*
 * call on a client is thread-safe unless it says otherwise. An event
 * (tlm_event) belongs to one thread at a time. Do not cancel a thread
 * (pthread_cancel) while it is inside a tlm_* call: it may hold the client's
 * lock, and every other thread would then wait for it for ever.
 *
 * fork(): a child process gets a client of its own: it never writes to the
 * parent's connection, starts with an empty queue and zero counters (what
 * the parent queued stays the parent's to send) and connects afresh on its
 * first send. fork() is safe even while other threads are inside tlm_* calls.
 *
 * Errors: every call that can fail returns a tlm_status; tlm_strerror names
 * it. Nothing in the library prints, aborts or exits.
 *
 * Limits (from the wire protocol): an event name and a distinct_id hold 1 to
 * 200 bytes; the whole event nests at most 32 levels of maps and arrays (the
 * event map and its properties map count as two); one event is at most
 * tlm_options.max_event_bytes (default 1 MiB, the agent's default
 * agent.max_message_bytes).
 *
 * Build with `pkg-config --cflags --libs telemetry`, or in CMake
 * `find_package(telemetry)` and link `telemetry::telemetry`.
 */
#ifndef TELEMETRY_H
#define TELEMETRY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TLM_API __attribute__((visibility("default")))
#else
#define TLM_API
#endif

#define TLM_VERSION_MAJOR 0
#define TLM_VERSION_MINOR 1
#define TLM_VERSION_PATCH 0

/* Protocol limits the library enforces before anything reaches the agent. */
#define TLM_NAME_MAX 200        /* event name, bytes */
#define TLM_DISTINCT_ID_MAX 200 /* distinct_id, bytes */
#define TLM_MAX_DEPTH 32        /* nested maps and arrays in one event, in total */
#define TLM_UUID_LEN 36         /* canonical 8-4-4-4-12 text */

/* Defaults of tlm_options (a field left 0 takes these). */
#define TLM_DEFAULT_SOCKET "/run/telemetry/agent.sock"
#define TLM_DEFAULT_QUEUE_BYTES (8 * 1024 * 1024)
#define TLM_DEFAULT_MAX_EVENT_BYTES (1024 * 1024)
#define TLM_DEFAULT_ACK_TIMEOUT_MS 5000
#define TLM_DEFAULT_RECONNECT_MIN_MS 50
#define TLM_DEFAULT_RECONNECT_MAX_MS 5000

typedef enum tlm_status {
    TLM_OK = 0,          /* done (for a send: written, or queued to be written) */
    TLM_EINVAL,          /* a bad argument: NULL where an object is needed, a key where an
                            array element goes, an empty name, a malformed uuid, ... */
    TLM_ENOMEM,          /* out of memory */
    TLM_ETOOLONG,        /* a name or distinct_id over 200 bytes, a socket path that does not
                            fit in sockaddr_un */
    TLM_ETOODEEP,        /* more than TLM_MAX_DEPTH levels of nesting */
    TLM_ESTATE,          /* the call does not fit the event's state: tlm_event_end with nothing
                            open, sending an event whose maps or arrays are still open */
    TLM_EINVALID,        /* tlm_send_raw: the bytes are not exactly one complete msgpack object
                            (or, in reliable mode, not a map without a `chunk` key);
                            the event is dropped and counted as invalid */
    TLM_ETOOLARGE,       /* the event is larger than max_event_bytes or queue_bytes; dropped and
                            counted as too_large */
    TLM_EQUEUE_FULL,     /* the queue has no room for the event; dropped and counted as
                            queue_full */
    TLM_ETIMEOUT,        /* tlm_flush: the timeout passed with events still pending */
    TLM_ESYS,            /* a system resource could not be had (a pipe, a mutex) */
    TLM_STATUS_COUNT_    /* not a status: the number of them */
} tlm_status;

/* A short, static, English description of a status ("queue full"). Never
 * NULL; an unknown value gives "unknown status". Thread-safe. */
TLM_API const char *tlm_strerror(tlm_status status);

/* The library's version as "MAJOR.MINOR.PATCH" (static storage). */
TLM_API const char *tlm_version(void);

/* ---------------------------------------------------------------- client */

typedef struct tlm_client tlm_client;

/* Options for tlm_open. Zero every field (tlm_options_init) and set the ones
 * you care about; a 0 field takes its default. */
typedef struct tlm_options {
    size_t queue_bytes;         /* bound on the bytes of events held: queued and, in reliable
                                   mode, sent but not yet acknowledged (default 8 MiB: over
                                   10 s of agent absence at 1,000 typical events a second) */
    size_t max_event_bytes;     /* largest event sent (default 1 MiB); match it to the agent's
                                   agent.max_message_bytes if that is lower */
    int reliable;               /* non-zero: chunk ids, acknowledgements, resends */
    unsigned ack_timeout_ms;    /* reliable mode: how long to wait for an ack before the
                                   connection is dropped and the unacked events resent on a
                                   new one (default 5000) */
    unsigned reconnect_min_ms;  /* first reconnect delay (default 50); doubles per failure */
    unsigned reconnect_max_ms;  /* reconnect delay ceiling (default 5000); each delay is drawn
                                   between half the nominal delay and the full one */
    int no_thread;              /* non-zero: start no background thread; events queued while
                                   the agent is away are written only during tlm_send*,
                                   tlm_flush and tlm_poll calls */
    unsigned reserved_[8];      /* zero */
} tlm_options;

/* Set every field of *opts to 0 (= the defaults). */
TLM_API void tlm_options_init(tlm_options *opts);

/* Make a client for the agent socket at socket_path: when NULL, the
 * environment's TELEMETRY_SOCKET, else TLM_DEFAULT_SOCKET. opts may be NULL
 * for all defaults. Nothing is connected yet: the first send connects, so
 * tlm_open succeeds whether or not the agent runs. The path and options are
 * copied. On success *out owns the client until tlm_close.
 * Errors: TLM_EINVAL (out NULL, empty path, reconnect_min_ms > reconnect_max_ms),
 * TLM_ETOOLONG (path longer than a Unix socket address holds), TLM_ENOMEM,
 * TLM_ESYS (a mutex or wake-up pipe could not be made). */
TLM_API tlm_status tlm_open(tlm_client **out, const char *socket_path, const tlm_options *opts);

/* Stop the client's thread, close its connection and free it. Events still
 * queued or unacknowledged are discarded: call tlm_flush first to wait for
 * them. NULL is ignored. No other thread may use the client during or after
 * this call. */
TLM_API void tlm_close(tlm_client *client);

/* The socket path the client writes to (owned by the client). */
TLM_API const char *tlm_socket_path(const tlm_client *client);

/* Wait until every event sent before this call has been written to the
 * socket (reliable mode: acknowledged, or refused by the agent), for at most
 * timeout_ms milliseconds (0: what can be done now: without the I/O thread,
 * the writes that need no waiting; with it, its next write, a millisecond or
 * two; -1: no limit). Returns TLM_OK when nothing sent before the call is pending,
 * TLM_ETIMEOUT otherwise (the events stay queued and are still sent later),
 * TLM_EINVAL if client is NULL. Thread-safe; events other threads send
 * meanwhile are not waited for. */
TLM_API tlm_status tlm_flush(tlm_client *client, int timeout_ms);

/* Do whatever I/O can be done now, without waiting: connect if due, write
 * queued events, read acknowledgements. Needed only with no_thread (the
 * background thread does it otherwise), and harmless without. */
TLM_API tlm_status tlm_poll(tlm_client *client);

/* Counters since tlm_open (or since fork() in a child). With
 *   delivered = sent (fire-and-forget) or acked (reliable mode),
 *   dropped   = the sum of the dropped_* fields,
 * attempted = delivered + dropped + queued holds whenever the counters are
 * read (they are read under the client's lock, all at one instant). */
typedef struct tlm_stats {
    uint64_t attempted;          /* tlm_send / tlm_send_raw calls with a client and an event */
    uint64_t sent;               /* events written whole to the socket (once each) */
    uint64_t acked;              /* reliable: events the agent acknowledged as accepted */
    uint64_t resent;             /* reliable: events written again after a reconnect */
    uint64_t queued;             /* events held now: not yet written, or (reliable) unacked */
    uint64_t queued_bytes;       /* their bytes, counted against queue_bytes */
    uint64_t dropped_queue_full; /* no room in the queue (or no memory to hold the event) */
    uint64_t dropped_too_large;  /* larger than max_event_bytes or queue_bytes */
    uint64_t dropped_invalid;    /* a malformed event: a builder error, bad raw msgpack */
    uint64_t dropped_rejected;   /* reliable: refused by the agent in its ack reply */
    uint64_t dropped_connection; /* given up after the agent closed the connection with an
                                    error about a message (too_large, too_deep, not_msgpack)
                                    8 times while it was the event in flight (reliable: the
                                    only one; fire-and-forget: the one half written). A close
                                    without an error reply (the agent restarting or killed) or
                                    with max_connections or no_memory never counts */
    uint64_t connects;           /* connections made */
    uint64_t connect_failures;   /* connection attempts that failed */
    uint64_t disconnects;        /* connections lost or dropped (peer closed, write error,
                                    ack timeout, a reply that is not msgpack, an error reply) */
    char last_reject_reason[32]; /* reliable: the reason of the last rejected reply ("") */
    uint64_t agent_errors;       /* connections the agent ended with an {"error": reason,
                                    "detail": text} reply (in either mode) */
    char last_error_reason[32];  /* the last such reason ("too_large", "max_connections", ...;
                                    "" before any), truncated to fit */
    char last_error_detail[128]; /* its detail, for a person ("agent.max_connections = 1024
                                    are open"), truncated to fit */
    uint64_t deferred;           /* reliable: times the agent did not take an event for want
                                    of room ({"deferred": chunk}) and it was queued again */
    uint64_t reserved_[7];
} tlm_stats;

/* Copy the client's counters into *out. Errors: TLM_EINVAL (a NULL). */
TLM_API tlm_status tlm_get_stats(tlm_client *client, tlm_stats *out);

/* ---------------------------------------------------------------- events */

typedef struct tlm_event tlm_event;

/* Make an event named name (1 to 200 bytes, copied). The event gets a fresh
 * UUIDv7 and the current wall-clock time in milliseconds as its uuid and
 * timestamp; the tlm_event_set_* calls replace them. On success *out owns
 * the event until tlm_event_free.
 * Errors: TLM_EINVAL (a NULL, an empty name), TLM_ETOOLONG, TLM_ENOMEM. */
TLM_API tlm_status tlm_event_new(tlm_event **out, const char *name);

/* Free an event (NULL is ignored). */
TLM_API void tlm_event_free(tlm_event *event);

/* Replace the event's uuid: canonical 8-4-4-4-12 hex text (any case).
 * Errors: TLM_EINVAL. */
TLM_API tlm_status tlm_event_set_uuid(tlm_event *event, const char *uuid);
/* Replace the event's timestamp: milliseconds since the epoch, from 1970 to
 * the end of 9999. Errors: TLM_EINVAL (out of range). */
TLM_API tlm_status tlm_event_set_timestamp_ms(tlm_event *event, int64_t ms);
/* Leave uuid / timestamp out, so the agent fills them in on receipt. */
TLM_API tlm_status tlm_event_clear_uuid(tlm_event *event);
TLM_API tlm_status tlm_event_clear_timestamp(tlm_event *event);
/* Set the distinct_id (1 to 200 bytes, copied); without it the agent uses
 * its configured one. Errors: TLM_EINVAL, TLM_ETOOLONG, TLM_ENOMEM. */
TLM_API tlm_status tlm_event_set_distinct_id(tlm_event *event, const char *distinct_id);

/*
 * Properties. The event's properties map is filled in order with typed
 * values. `key` names the value in the map being filled; inside an array
 * (tlm_event_begin_array) the key must be NULL. tlm_event_begin_map /
 * tlm_event_begin_array open a nested container under key; the values added
 * next go into it until the matching tlm_event_end. Strings are copied
 * (UTF-8 is expected and not checked). A key added twice is sent twice.
 *
 *     tlm_event_add_str(ev, "plan", "pro");
 *     tlm_event_begin_map(ev, "gpu");
 *       tlm_event_add_int(ev, "count", 2);
 *       tlm_event_begin_array(ev, "models");
 *         tlm_event_add_str(ev, NULL, "A100");
 *       tlm_event_end(ev);
 *     tlm_event_end(ev);
 *
 * gives properties {"plan": "pro", "gpu": {"count": 2, "models": ["A100"]}}.
 *
 * Errors: TLM_EINVAL (event NULL, key NULL in a map or set in an array,
 * value NULL for a string), TLM_ETOODEEP (a
 * container opened past TLM_MAX_DEPTH), TLM_ESTATE (tlm_event_end with
 * nothing open), TLM_ENOMEM. The first error is also kept in the event:
 * sending it then fails with that error and counts it as invalid, so a
 * caller may check only the result of tlm_send.
 */
TLM_API tlm_status tlm_event_add_str(tlm_event *event, const char *key, const char *value);
TLM_API tlm_status tlm_event_add_strn(tlm_event *event, const char *key, const char *value,
                                      size_t len);
TLM_API tlm_status tlm_event_add_int(tlm_event *event, const char *key, int64_t value);
TLM_API tlm_status tlm_event_add_uint(tlm_event *event, const char *key, uint64_t value);
TLM_API tlm_status tlm_event_add_double(tlm_event *event, const char *key, double value);
TLM_API tlm_status tlm_event_add_bool(tlm_event *event, const char *key, int value);
TLM_API tlm_status tlm_event_add_null(tlm_event *event, const char *key);
TLM_API tlm_status tlm_event_begin_map(tlm_event *event, const char *key);
TLM_API tlm_status tlm_event_begin_array(tlm_event *event, const char *key);
TLM_API tlm_status tlm_event_end(tlm_event *event);

/* The event as the msgpack map it is sent as (without the `chunk` key that
 * reliable mode adds). *data points into the event and stays valid until
 * the event is next changed or freed. Errors: TLM_EINVAL (a NULL), the
 * event's kept builder error, TLM_ESTATE (containers still open), TLM_ENOMEM. */
TLM_API tlm_status tlm_event_encode(tlm_event *event, const void **data, size_t *len);

/* ---------------------------------------------------------------- sending */

/* Send the event: written to the socket now if it can be, else queued (see
 * the top of this file). The event is not consumed: the caller still owns
 * it and frees it; sending it again sends the same uuid (a duplicate the
 * backend removes), so make a new event for each occurrence.
 * Returns TLM_OK (written or queued), or why the event was dropped:
 * TLM_EQUEUE_FULL, TLM_ETOOLARGE, the event's kept builder error or
 * TLM_ESTATE (counted as invalid); TLM_EINVAL for a NULL (not counted);
 * TLM_ENOMEM. Never blocks on the agent. Thread-safe. */
TLM_API tlm_status tlm_send(tlm_client *client, tlm_event *event);

/* Send len bytes of caller-encoded msgpack as one event, unchanged (in
 * reliable mode a `chunk` key is added to the map). The bytes must be
 * exactly one complete msgpack object nested at most TLM_MAX_DEPTH levels,
 * else TLM_EINVALID (counted as invalid); in reliable mode it must also be a
 * map without a `chunk` key. Nothing else is checked: the agent validates
 * the event. The bytes are copied. Other errors as for tlm_send. */
TLM_API tlm_status tlm_send_raw(tlm_client *client, const void *data, size_t len);

#ifdef __cplusplus
}
#endif

#endif
