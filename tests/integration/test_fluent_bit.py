"""
Fluent Bit as a producer: the exact bytes that Fluent Bit's `forward` output
wrote to a Unix socket (captured from a real run, see fixtures/fluent-bit/),
replayed to the real agent connection by connection. Every record must reach
the backend with its own time, the metadata map never becomes a property,
and every message that asks for an ack gets one.
"""
import datetime
import gzip
import os
import struct

import msgpack
import pytest

from conftest import HERE, backend, connect, read_until_closed

FIXTURES = os.path.join(HERE, "fixtures", "fluent-bit")
CONFIGS = sorted(d for d in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, d)))
RECORDS_PER_CONFIG = 4  # every capture ran the dummy input with samples=4


def streams(config):
    folder = os.path.join(FIXTURES, config)
    names = sorted(n for n in os.listdir(folder) if n.startswith("conn-"))
    return [open(os.path.join(folder, n), "rb").read() for n in names]


def iso_ms(seconds, nanos):
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{nanos // 1_000_000:03d}Z"


def entry_time(time):
    """Fluent Bit's time as an ISO 8601 string with milliseconds."""
    if isinstance(time, list):  # [time, metadata], Fluent Bit 2.1 and later
        time = time[0]
    if isinstance(time, msgpack.ExtType):
        assert time.code == 0 and len(time.data) == 8
        return iso_ms(*struct.unpack(">II", time.data))
    return iso_ms(time, 0)


def expected(stream):
    """(timestamps of the records, chunk ids that ask for an ack) in one stream,
    decoded here independently of the agent."""
    times, chunks = [], []
    for message in _messages(stream):
        options = {}
        if isinstance(message[1], list):  # Forward: [tag, [entries], options?]
            entries = [(e[0], e[1]) for e in message[1]]
            options = message[2] if len(message) > 2 else {}
        elif isinstance(message[1], bytes):  # (Compressed)PackedForward
            packed = message[1]
            options = message[2] if len(message) > 2 else {}
            if options.get("compressed") == "gzip":
                packed = gzip.decompress(packed)
            entries = [(e[0], e[1]) for e in _messages(packed)]
        else:  # Message: [tag, time, record, options?]
            entries = [(message[1], message[2])]
            options = message[3] if len(message) > 3 else {}
        times += [entry_time(t) for t, _ in entries]
        if "chunk" in options:
            chunks.append(options["chunk"])
    return times, chunks


def _messages(data):
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    return list(unpacker)


def test_every_capture_holds_the_records_it_was_made_with():
    for config in CONFIGS:
        times = [t for s in streams(config) for t in expected(s)[0]]
        assert len(times) == RECORDS_PER_CONFIG, config


@pytest.mark.parametrize("config", CONFIGS)
def test_fluent_bit_forward_output_is_delivered(make_agent, collector, config):
    agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": "50"}})
    want_times = []
    for stream in streams(config):
        times, chunks = expected(stream)
        want_times += times
        with connect(agent) as s:
            s.sendall(stream)
            s.shutdown(1)  # Fluent Bit closes after its flush; the agent answers first
            replies = read_until_closed(s)
        assert replies == [{"ack": c} for c in chunks], config

    got = collector.wait_for_events(RECORDS_PER_CONFIG, timeout=10)
    agent.stop()
    assert len(got) == RECORDS_PER_CONFIG
    assert sorted(e["timestamp"] for e in got) == sorted(want_times)
    for e in got:
        assert e["event"] == "project:created"
        assert e["properties"]["n"] == 1
        # the metadata map ({"src": "dummy", "k": 1} in the g* captures) is not a property
        assert "src" not in e["properties"] and "k" not in e["properties"]
        assert "event" not in e["properties"]
    stats = agent.stats()
    assert stats["received"] == RECORDS_PER_CONFIG
    assert stats["delivered"] == RECORDS_PER_CONFIG
    assert not any(v for k, v in stats.items() if k.startswith("dropped")), stats
