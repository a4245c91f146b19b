"""
Writes the fuzz targets' seed corpora (tests/fuzz/corpus/<target>/) from
real messages of every shape: Orchest's events as native msgpack maps, with
and without chunks, uuids, timestamps (msgpack ext and strings) and
distinct_ids; Fluent Forward messages in each mode (Message, Forward,
PackedForward, CompressedPackedForward, with chunk options, EventTime and
Fluent Bit's metadata entries); heartbeats; for the configuration, the
shipped INI files with environment overrides; and for the relay, JSON
bodies (one event, an array, {"batch": [...]}, odd ones). Run with Debian's python3:

    /usr/bin/python3 tests/fuzz/make_corpus.py
"""
import gzip
import hashlib
import json
import os
import struct

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def write(target, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def event_time(seconds, nanos=0):
    return msgpack.ExtType(0, struct.pack(">II", seconds, nanos))


def producer_seeds():
    with open(os.path.join(ROOT, "tests", "integration", "orchest-payloads.ndjson")) as f:
        payloads = [json.loads(line) for line in f if line.strip()][:12]
    first = payloads[0]
    seeds = [
        msgpack.packb(first),
        msgpack.packb(dict(first, chunk="c1", uuid="01890a5d-ac96-774b-bcce-b302099a8057",
                           distinct_id="user-1", timestamp="2026-12-02T12:00:00.123Z")),
        msgpack.packb(dict(first, timestamp=msgpack.Timestamp(1700000000, 5000))),
        msgpack.packb({"event": "project:created", "properties": {
            "user_id": "u1", "note": "a.b@example.com 10.0.0.1 fe80::1 sk-abcd1234",
            "password": "x", "list": [{"token": 1}, [1.5, None, True, b"\x00\xff"]]}}),
        b"\xc0" + msgpack.packb(first) + b"\xc0",
        b"".join(msgpack.packb(p) for p in payloads),
        msgpack.packb(["orchest.project:created", 1700000000, {"n": 1}]),
        msgpack.packb(["t", event_time(1700000000, 5), {"event": "e", "n": 1}, {"chunk": "a"}]),
        msgpack.packb(["t", [[1700000000, {"n": 1}], [[event_time(1700000001), {"m": 1}],
                                                     {"n": 2}]], {"chunk": "b"}]),
    ]
    entries = b"".join(msgpack.packb([1700000000 + i, {"event": "e", "i": i}]) for i in range(5))
    seeds.append(msgpack.packb(["t", entries, {"chunk": "p", "size": 5}]))
    seeds.append(msgpack.packb(["t", gzip.compress(entries),
                                {"chunk": "z", "compressed": "gzip", "size": 5}]))
    seeds.append(msgpack.packb(["t", [[-1, {}], [-2, {}]]]))  # group markers
    for seed in seeds:
        write("producer", seed)


def config_seeds():
    files = [os.path.join(ROOT, "etc", "telemetry-agent.ini"),
             os.path.join(ROOT, "docker", "k8s", "base", "telemetry-agent.ini")]
    for path in files:
        with open(path, "rb") as f:
            write("config", f.read())
    write("config", b"[batch]\nmax_events = 10\n[properties]\napp.version = v1\n\0"
                    b"TELEMETRY_AGENT_BACKEND_URL=http://127.0.0.1:1/batch\n"
                    b"TELEMETRY_AGENT_API_KEY=k\nTELEMETRY_AGENT_PROPERTY_X=a.b=1\n")
    write("config", b"[privacy]\nhash_keys = user_*\nhash_key = 0123456789abcdef\n"
                    b"redact_regex = (a|b)+\n[agent]\nallowed_uids = root, 1000\n")
    write("config", b"[spool]\ndir = /var/lib/x\nmax_bytes = 64 MiB\n[relay]\n"
                    b"listen = [::1]:8080\ncors_origins = https://a.example\n")


def relay_seeds():
    """A flag byte (1: gzip it, 2: text/plain), then the body."""
    with open(os.path.join(ROOT, "tests", "integration", "orchest-payloads.ndjson")) as f:
        payloads = [json.loads(line) for line in f if line.strip()][:5]
    bodies = [json.dumps(payloads[0]), json.dumps(payloads), json.dumps({"batch": payloads}),
              '{"event": "project:created", "distinct_id": "b", "properties": {"a": [1, 2.5, '
              'null, true, "x"]}}', '[{"event": "no:such"}, 7, "x", {"event": "project:created"}]',
              '{"event": "project:created", "properties": {"a": 1, "a": 2}}']
    for i, body in enumerate(bodies):
        write("relay", bytes([i % 4]) + body.encode())


def client_seeds():
    """What an agent answers a reliable client: acks, deferrals, refusals,
    errors (the chunk ids are the client's: 1, 2, 3 for its first events)."""
    p = msgpack.packb
    seeds = [
        p({"ack": "1"}) + p({"ack": "2"}) + p({"ack": "3"}),
        p({"ack": "1", "rejected": 1, "reason": "unknown_event"}) + p({"deferred": "2",
                                                                       "reason": "buffer_full"}),
        p({"ack": "1"}) + p({"error": "too_large", "detail": "message larger than 1 MiB"}),
        p({"error": "max_connections", "detail": "agent.max_connections = 1024 are open"}),
        p({"error": "not_msgpack", "detail": "bytes that are not msgpack"}),
        p({"ack": "x" * 64}) + b"\xc1",
        p({"error": "timeout", "detail": "idle"}),
    ]
    for seed in seeds:
        write("client", seed)


if __name__ == "__main__":
    producer_seeds()
    config_seeds()
    relay_seeds()
    client_seeds()
