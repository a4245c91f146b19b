/*
 * wire: the numbers and names of the wire protocol (PROTOCOL.md), in one
 * place for the agent, the client library and telemetry-send.
 *
 * The public header client/telemetry.h repeats some limits (it must stand
 * alone once installed); client/status.c asserts at compile time that they
 * are equal to these, and tests/integration/test_protocol_doc.py checks that
 * PROTOCOL.md states the same numbers and reason names.
 */
#ifndef PROTO_WIRE_H
#define PROTO_WIRE_H

#include <stdint.h>

#define WIRE_VERSION 1

/* Transport (PROTOCOL.md section 1). */
#define WIRE_DEFAULT_SOCKET "/run/telemetry/agent.sock"
#define WIRE_SOCKET_ENV "TELEMETRY_SOCKET"

/* Limits of one message and its fields (sections 2 and 3). */
#define WIRE_MAX_DEPTH 32              /* nested maps and arrays, the message itself included */
#define WIRE_NAME_MAX 200              /* event name, bytes */
#define WIRE_DISTINCT_ID_MAX 200       /* distinct_id, bytes */
#define WIRE_CHUNK_MAX 64              /* acknowledgement id, bytes */
#define WIRE_UUID_TEXT_LEN 36          /* 8-4-4-4-12 hex */
#define WIRE_DEFAULT_MAX_MESSAGE_BYTES (1024 * 1024) /* [agent] max_message_bytes */
#define WIRE_DEFAULT_MAX_EVENT_BYTES (32 * 1024)     /* [events] max_event_bytes (JSON) */

/* Timestamps (section 4): milliseconds from 1970-01-01T00:00:00.000Z to
 * 9999-12-31T23:59:59.999Z. */
#define WIRE_TIMESTAMP_MAX_MS INT64_C(253402300799999)

/* Why an event is refused, as the `reason` of an acknowledgement (section
 * 8). X(IDENTIFIER, "name"). The agent's own reasons for dropping an
 * accepted event extend this list (agent/reason.h). */
#define WIRE_REJECTION_REASONS(X)                                                                  \
    X(UNSUPPORTED_SHAPE, "unsupported_shape")                                                      \
    X(MISSING_EVENT, "missing_event")                                                              \
    X(BAD_EVENT, "bad_event")                                                                      \
    X(UNKNOWN_EVENT, "unknown_event")                                                              \
    X(BAD_PROPERTIES, "bad_properties")                                                            \
    X(BAD_TIMESTAMP, "bad_timestamp")                                                              \
    X(BAD_UUID, "bad_uuid")                                                                        \
    X(BAD_DISTINCT_ID, "bad_distinct_id")                                                          \
    X(UNKNOWN_KEY, "unknown_key")                                                                  \
    X(DUPLICATE_KEY, "duplicate_key")                                                              \
    X(BAD_CHUNK, "bad_chunk")                                                                      \
    X(BAD_FORWARD, "bad_forward")                                                                  \
    X(TOO_LARGE, "too_large")

/* The `error` of the last reply on a connection the agent closes (section
 * 2) or refuses (section 1). The first three are about a message: resending
 * that message cannot help. The others are about the agent: try again. */
#define WIRE_ERROR_TOO_LARGE "too_large"
#define WIRE_ERROR_TOO_DEEP "too_deep"
#define WIRE_ERROR_NOT_MSGPACK "not_msgpack"
#define WIRE_ERROR_NO_MEMORY "no_memory"
#define WIRE_ERROR_TIMEOUT "timeout"
#define WIRE_ERROR_NOT_ALLOWED "not_allowed"
#define WIRE_ERROR_MAX_CONNECTIONS "max_connections"

/* Keys of messages and replies. */
#define WIRE_KEY_EVENT "event"
#define WIRE_KEY_PROPERTIES "properties"
#define WIRE_KEY_TIMESTAMP "timestamp"
#define WIRE_KEY_UUID "uuid"
#define WIRE_KEY_DISTINCT_ID "distinct_id"
#define WIRE_KEY_CHUNK "chunk"
#define WIRE_KEY_ACK "ack"
#define WIRE_KEY_REJECTED "rejected"
#define WIRE_KEY_DEFERRED "deferred"
#define WIRE_KEY_REASON "reason"
#define WIRE_KEY_ERROR "error"
#define WIRE_KEY_DETAIL "detail"

#endif
