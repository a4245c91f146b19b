"""
Fluent Forward compatibility and acknowledgements, against the real agent:
a stock Forward client (fluent-logger from the npm registry, unchanged) in
each of its modes with acks on; hand-built messages for every mode, time
form and fault; native events with a chunk; the bound on replies a
producer does not read; replies still owed when a producer stops sending
(half-close) or sends bad bytes; and gzip messages that unpack to many
events not holding up other producers.
"""
import fcntl
import gzip
import json
import os
import socket
import struct
import subprocess
import termios
import threading
import time

import msgpack
import pytest

from collector import events_of
from conftest import HERE, backend, connect, read_until_closed, send_events

FLUENT_CLIENT = os.path.join(HERE, "fluent", "send.js")
UUID = "018bcfe5-6a00-7abc-8def-0123456789ab"


def event_time(seconds, nanos=0):
    return msgpack.ExtType(0, struct.pack(">II", seconds, nanos))


def read_replies(sock, count, timeout=10):
    """Read `count` msgpack replies from sock."""
    sock.settimeout(timeout)
    unpacker = msgpack.Unpacker(raw=False)
    replies = []
    while len(replies) < count:
        data = sock.recv(65536)
        assert data, f"connection closed after {len(replies)} replies"
        unpacker.feed(data)
        replies.extend(unpacker)
    return replies


def assert_no_reply(sock, wait=0.5):
    sock.settimeout(wait)
    with pytest.raises(socket.timeout):
        data = sock.recv(1)
        raise AssertionError(f"unexpected reply bytes {data!r}")


def forward_agent(make_agent, collector, **forward):
    return make_agent({"backend": backend(collector), "batch": {"max_age_ms": "50"},
                       "forward": forward})


@pytest.mark.parametrize("mode", ["Message", "PackedForward", "CompressedPackedForward"])
def test_stock_fluent_logger_with_acks(make_agent, collector, mode):
    agent = forward_agent(make_agent, collector, tag_prefix="orchest.")
    events = [{"label": "project:created", "record": {"project_uuid": f"p{i}", "n": i}}
              for i in range(20)]
    events.append({"label": "anything", "time": 1700000000,
                   "record": {"event": "project:one-off-job:created", "uuid": UUID,
                              "distinct_id": "instance-7", "steps": [1, 2]}})
    out = subprocess.run(["node", FLUENT_CLIENT, agent.socket, mode, "orchest",
                          json.dumps(events)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result == {"acked": len(events), "errors": []}

    got = collector.wait_for_events(len(events), timeout=10)
    agent.stop()
    created = sorted((e for e in got if e["event"] == "project:created"),
                     key=lambda e: e["properties"]["n"])
    assert [e["properties"]["project_uuid"] for e in created] == [f"p{i}" for i in range(20)]
    assert all("event" not in e["properties"] for e in got)
    started = [e for e in got if e["event"] == "project:one-off-job:created"]
    assert len(started) == 1
    assert started[0]["uuid"] == UUID and started[0]["distinct_id"] == "instance-7"
    assert started[0]["timestamp"] == "2023-11-14T22:13:20.000Z"
    assert started[0]["properties"]["steps"] == [1, 2]
    assert "uuid" not in started[0]["properties"] and "distinct_id" not in started[0]["properties"]
    stats = agent.stats()
    assert stats["received"] == len(events) and stats["delivered"] == len(events)


def test_every_forward_mode_and_time_form(make_agent, collector):
    agent = forward_agent(make_agent, collector)
    entries = [[1700000000, {"event": "project:created", "i": 0}],
               [event_time(1700000000, 250_000_000), {"event": "project:created", "i": 1}],
               [1700000000.5, {"event": "project:created", "i": 2}]]
    packed = b"".join(msgpack.packb(e) for e in entries)
    messages = [
        ["project:created", 1700000000, {"i": 10}],  # Message, tag as the name
        ["project:created", event_time(1700000001, 5_000_000), {"i": 11}, {"chunk": "m"}],
        ["ignored", entries, {"chunk": "f"}],  # Forward
        ["ignored", packed, {"chunk": "p"}],  # PackedForward, bin
        ["ignored", msgpack.ExtType(1, b"")],  # not a Forward shape: refused
        ["ignored", gzip.compress(packed[:20]) + gzip.compress(packed[20:]),
         {"chunk": "z", "compressed": "gzip"}],  # two gzip members
    ]
    with connect(agent) as s:
        s.sendall(b"".join(msgpack.packb(m, use_bin_type=True) for m in messages))
        s.sendall(msgpack.packb(["ignored", packed, {"chunk": "s"}],
                                use_bin_type=False))  # packed entries as a (raw) str
        replies = read_replies(s, 5)
    assert replies == [{"ack": c} for c in ["m", "f", "p", "z", "s"]]
    got = collector.wait_for_events(2 + 4 * 3, timeout=10)
    agent.stop()
    by_i = {}
    for e in got:
        by_i.setdefault(e["properties"]["i"], []).append(e["timestamp"])
    assert by_i[10] == ["2023-11-14T22:13:20.000Z"]
    assert by_i[11] == ["2023-11-14T22:13:21.005Z"]
    assert by_i[0] == ["2023-11-14T22:13:20.000Z"] * 4
    assert by_i[1] == ["2023-11-14T22:13:20.250Z"] * 4
    assert by_i[2] == ["2023-11-14T22:13:20.500Z"] * 4
    assert agent.stats()["dropped_bad_forward"] == 1


def test_tag_prefix_names_records_without_an_event(make_agent, collector):
    agent = forward_agent(make_agent, collector, tag_prefix="app.")
    send_events(agent, [["app.project:created", 1700000000, {"a": 1}],
                        ["project:deleted", 1700000000, {"a": 2}],  # no prefix: the whole tag
                        ["app.", 1700000000, {"a": 3}]])  # nothing left: refused
    got = collector.wait_for_events(2, timeout=10)
    agent.stop()
    assert sorted(e["event"] for e in got) == ["project:created", "project:deleted"]
    assert agent.stats()["dropped_bad_event"] == 1


def test_rejected_entries_are_acked_with_the_reason(make_agent, collector):
    agent = forward_agent(make_agent, collector)
    with connect(agent) as s:
        s.sendall(msgpack.packb(["t", [[1700000000, {"event": "project:created"}],
                                       [1700000000, {"event": "no:such:event"}],
                                       [1700000000, {"event": "no:such:event"}],
                                       [1700000000, "not a record"]], {"chunk": "c1"}]))
        assert read_replies(s, 1) == [{"ack": "c1", "rejected": 3, "reason": "unknown_event"}]
    collector.wait_for_events(1, timeout=10)
    agent.stop()
    stats = agent.stats()
    assert stats["received"] == 4 and stats["delivered"] == 1
    assert stats["dropped_unknown_event"] == 2 and stats["dropped_bad_properties"] == 1


def test_heartbeats_are_ignored(make_agent, collector):
    agent = forward_agent(make_agent, collector)
    with connect(agent) as s:
        s.sendall(msgpack.packb(None) * 3 + msgpack.packb(
            {"event": "project:created", "chunk": "after-heartbeats"}) + msgpack.packb(None))
        assert read_replies(s, 1) == [{"ack": "after-heartbeats"}]
    collector.wait_for_events(1, timeout=10)
    agent.stop()
    stats = agent.stats()
    assert stats["received"] == 1 and stats["dropped"] == 0


def test_malformed_forward_messages_are_refused_and_the_connection_goes_on(make_agent, collector):
    agent = forward_agent(make_agent, collector)
    bad = [
        [1, 2, 3],  # tag not a string
        ["t"],  # too short
        ["t", 1700000000],  # Message mode without a record
        ["t", [], {"chunk": "x"}, 4],  # Forward mode with four elements
        ["t", [], "not an option"],
        ["t", [], {"chunk": 17}],  # a chunk that is not a string
        ["t", [], {"chunk": "x" * 65}],
        ["t", b"\x92\xce", {"compressed": "gzip"}],  # not gzip
        ["t", b"\x92\xce"],  # packed entries cut short
        ["t", b"\xc1"],  # packed entries that are not msgpack
        ["t", b"", {"compressed": "zstd"}],
    ]
    with connect(agent) as s:
        s.sendall(b"".join(msgpack.packb(m, use_bin_type=True) for m in bad))
        s.sendall(msgpack.packb({"event": "project:created", "chunk": "ok"}))
        assert read_replies(s, 1) == [{"ack": "ok"}]
    collector.wait_for_events(1, timeout=10)
    agent.stop()
    stats = agent.stats()
    assert stats["dropped_bad_forward"] == 9 and stats["dropped_bad_chunk"] == 2
    assert stats["received"] == len(bad) + 1 and stats["delivered"] == 1


def test_a_refused_message_with_a_chunk_is_acked_with_the_reason(make_agent, collector):
    agent = forward_agent(make_agent, collector)
    with connect(agent) as s:
        s.sendall(msgpack.packb(["", [[1700000000, {"event": "project:created"}]],
                                 {"chunk": "empty-tag"}]))
        s.sendall(msgpack.packb([5, 1700000000, {"a": 1}, {"chunk": "bad-tag"}]))
        s.sendall(msgpack.packb(["t", b"", {"chunk": "zstd", "compressed": "zstd"}],
                                use_bin_type=True))
        # a record's own "chunk" key is data, not a request for a reply
        s.sendall(msgpack.packb(["", 1700000000, {"chunk": "record-key"}]))
        s.sendall(msgpack.packb({"event": "project:created", "chunk": "last"}))
        assert read_replies(s, 4) == [
            {"ack": "empty-tag", "rejected": 1, "reason": "bad_forward"},
            {"ack": "bad-tag", "rejected": 1, "reason": "bad_forward"},
            {"ack": "zstd", "rejected": 1, "reason": "bad_forward"},
            {"ack": "last"}]
    collector.wait_for_events(1, timeout=10)
    agent.stop()


def test_acks_before_a_fault_are_still_sent(make_agent, collector):
    agent = forward_agent(make_agent, collector)
    with connect(agent) as s:
        s.sendall(msgpack.packb({"event": "project:created", "chunk": "a"}) +
                  msgpack.packb(["project:created", 1700000000, {}, {"chunk": "b"}]) + b"\xc1")
        assert read_until_closed(s) == [
            {"ack": "a"}, {"ack": "b"},
            {"error": "not_msgpack", "detail": "bytes that are not msgpack"}]
    collector.wait_for_events(2, timeout=10)
    agent.stop()
    stats = agent.stats()
    assert stats["connections_closed_bad_input"] == 1 and stats["acks"] == 2


def test_gzip_that_unpacks_beyond_the_message_limit_is_refused(make_agent, collector):
    agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": "50"},
                        "agent": {"max_message_bytes": "65536"}})
    entry = msgpack.packb([1700000000, {"event": "project:created", "pad": "x" * 1000}])
    bomb = gzip.compress(entry * 100)  # ~100 KB unpacked from ~1 KB
    small = gzip.compress(entry * 10)
    with connect(agent) as s:
        s.sendall(msgpack.packb(["t", bomb, {"compressed": "gzip", "chunk": "big"}]))
        s.sendall(msgpack.packb(["t", small, {"compressed": "gzip", "chunk": "small"}]))
        assert read_replies(s, 2) == [{"ack": "big", "rejected": 1, "reason": "too_large"},
                                      {"ack": "small"}]
    collector.wait_for_events(10, timeout=10)
    agent.stop()
    assert agent.stats()["dropped_too_large"] == 1


def test_native_chunks_are_acked_in_order(make_agent, collector):
    agent = forward_agent(make_agent, collector)
    with connect(agent) as s:
        s.sendall(b"".join(msgpack.packb(m) for m in [
            {"event": "project:created"},  # no chunk: no reply
            {"event": "project:created", "chunk": "a"},
            {"event": "no:such:event", "chunk": "b"},
            {"event": "project:created", "colour": "red", "chunk": "c"},
            {"event": "project:created", "chunk": ""},  # an empty chunk: refused, no reply
            {"event": "project:created", "chunk": "d"},
        ]))
        assert read_replies(s, 4) == [
            {"ack": "a"},
            {"ack": "b", "rejected": 1, "reason": "unknown_event"},
            {"ack": "c", "rejected": 1, "reason": "unknown_key"},
            {"ack": "d"}]
        assert_no_reply(s)
    collector.wait_for_events(3, timeout=10)
    agent.stop()
    assert agent.stats()["dropped_bad_chunk"] == 1


def test_a_full_buffer_defers_native_events_and_leaves_forward_unanswered(make_agent,
                                                                          collector):
    collector.plan(action="hang", count=1000)
    agent = make_agent({"backend": backend(collector, timeout_ms=60000, max_in_flight=1),
                        "buffer": {"max_bytes": "65536", "overflow": "drop_newest"},
                        "events": {"max_event_bytes": "8192"},
                        "batch": {"max_age_ms": "20", "max_bytes": "16384"}})
    pad = "x" * 1000
    send_events(agent, [{"event": "project:created", "properties": {"pad": pad}}] * 200)
    agent.wait_received(200)
    with connect(agent) as s:
        # nothing leaves (the backend hangs): once an event finds no room,
        # none does; the room the open batch left when it was sealed may
        # take a few events first
        for i in range(100):
            s.sendall(msgpack.packb({"event": "project:created", "chunk": f"e{i}",
                                     "properties": {"pad": pad}}))
            [reply] = read_replies(s, 1)
            if "deferred" in reply:
                break
        assert reply == {"deferred": f"e{i}", "reason": "buffer_full"}
        s.sendall(msgpack.packb(["project:created", 1700000000, {"pad": pad}, {"chunk": "fwd"}]))
        assert_no_reply(s)
    agent.stop(check=False, timeout=30)
    assert agent.stats()["dropped_buffer_full"] > 0


def test_an_acking_fluent_client_waits_out_a_full_buffer(make_agent, collector):
    # buffer.overflow = block: the agent stops reading the Fluent client
    # while its 64 KiB buffer is full behind a stalled backend; the client's
    # acks come late, never a refusal, and every record arrives once.
    collector.plan(action="hang", count=1, hang_timeout=2)
    agent = make_agent({"backend": backend(collector, timeout_ms=1000, max_in_flight=1),
                        "buffer": {"max_bytes": "65536"}, "events": {"max_event_bytes": "8192"},
                        "batch": {"max_age_ms": "20", "max_bytes": "16384"},
                        "forward": {"tag_prefix": "orchest."}})
    events = [{"label": "project:created", "record": {"n": i, "pad": "x" * 300}}
              for i in range(300)]
    out = subprocess.run(["node", FLUENT_CLIENT, agent.socket, "Message", "orchest",
                          json.dumps(events)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == {"acked": 300, "errors": []}
    collector.wait_for_events(300, timeout=20)
    agent.stop()
    got = sorted(e["properties"]["n"] for e in collector.events())
    assert got == list(range(300))
    stats = agent.stats()
    assert stats["connections_paused"] >= 1 and stats["dropped"] == 0


def test_unread_acks_pause_only_that_producer(make_agent, collector):
    agent = forward_agent(make_agent, collector)
    count = 100000  # megabytes of replies: more than the socket buffers hold
    chunk = "c" * 50
    data = b"".join(msgpack.packb({"event": "project:created", "chunk": f"{chunk}{i:05d}"})
                    for i in range(count))
    lazy = connect(agent)
    writer = threading.Thread(target=lazy.sendall, args=(data,))
    writer.start()
    time.sleep(1.0)  # replies pile up: the agent stops reading this producer...
    assert writer.is_alive(), "the agent kept reading a producer that does not read its acks"
    send_events(agent, [{"event": "project:deleted"}])  # ...and no other
    collector.wait_for(lambda records: any(e["event"] == "project:deleted"
                                           for e in events_of(records)), timeout=10)
    replies = read_replies(lazy, count, timeout=30)  # reading lets it go on
    writer.join(timeout=30)
    lazy.close()
    assert [r["ack"] for r in replies] == [f"{chunk}{i:05d}" for i in range(count)]
    collector.wait_for_events(count + 1, timeout=30)
    agent.stop()


def queued(sock):
    """Bytes waiting in sock's receive queue."""
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0]


def fill_until_the_agent_holds_replies(sock):
    """Send chunked events, a batch at a time and reading nothing, until a
    batch's replies no longer reach sock: the socket buffers are full and the
    agent keeps the last batch's replies (less than it takes to pause
    reading). Returns the chunks sent, in order."""
    chunks = []
    before = queued(sock)
    for batch in range(1000):
        names = [f"{batch:04d}-{i:03d}-" + "c" * 50 for i in range(150)]  # ~10 KB of replies
        sock.sendall(b"".join(msgpack.packb({"event": "project:created", "chunk": c})
                              for c in names))
        chunks += names
        now, settled = queued(sock), 0
        while settled < 3:  # until the agent has answered the whole batch
            time.sleep(0.02)
            later = queued(sock)
            settled = settled + 1 if later == now else 0
            now = later
        if now == before:
            return chunks
        before = now
    raise AssertionError("the replies never filled the socket")


def test_acks_are_written_after_the_producer_stops_sending(make_agent, collector):
    agent = forward_agent(make_agent, collector)
    with connect(agent) as s:
        chunks = fill_until_the_agent_holds_replies(s)
        s.shutdown(socket.SHUT_WR)  # done sending, still reading
        time.sleep(0.3)
        assert [r["ack"] for r in read_until_closed(s)] == chunks
    collector.wait_for_events(len(chunks), timeout=30)
    agent.stop()
    assert agent.stats()["acks"] == len(chunks)


def test_every_ack_before_a_fault_is_written(make_agent, collector):
    agent = forward_agent(make_agent, collector)
    with connect(agent) as s:
        chunks = fill_until_the_agent_holds_replies(s)
        s.sendall(b"\xc1")
        time.sleep(0.3)
        replies = read_until_closed(s)
        assert [r["ack"] for r in replies[:-1]] == chunks
        assert replies[-1] == {"error": "not_msgpack", "detail": "bytes that are not msgpack"}
    collector.wait_for_events(len(chunks), timeout=30)
    agent.stop()
    stats = agent.stats()
    assert stats["acks"] == len(chunks) and stats["connections_closed_bad_input"] == 1


def test_gzip_messages_of_many_events_do_not_hold_up_other_producers(make_agent, collector):
    agent = forward_agent(make_agent, collector)
    entry = msgpack.packb([1700000000, {}])
    packed = entry * ((1 << 20) // len(entry) - 16)  # ~150,000 events a message...
    heavy_message = msgpack.packb(["no:such:event", gzip.compress(packed, 9),
                                   {"compressed": "gzip", "chunk": "h"}], use_bin_type=True)
    assert len(heavy_message) < 4096  # ...from a few kilobytes
    count = 30
    heavy, probe = connect(agent), connect(agent)
    started = time.monotonic()
    heavy.sendall(heavy_message * count)  # all in the socket buffer at once
    asked = time.monotonic()
    probe.sendall(msgpack.packb({"event": "project:created", "chunk": "probe"}))
    assert read_replies(probe, 1, timeout=600) == [{"ack": "probe"}]
    probe_wait = time.monotonic() - asked
    assert len(read_replies(heavy, count, timeout=600)) == count
    heavy_total = time.monotonic() - started
    heavy.close()
    probe.close()
    agent.stop()
    # the probe waits for a message or two of the heavy producer, not all of them
    assert probe_wait < heavy_total / 4, (probe_wait, heavy_total)
    stats = agent.stats()
    assert stats["received"] == count * (len(packed) // len(entry)) + 1
