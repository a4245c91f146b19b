"""
Delivery to the backend: exactly-once arrival under concurrency, batch
limits, the request format, retries that resend identical events, the
Retry-After floor, dropping on 4xx, and delivery during shutdown.
"""
import datetime
import re
import socket
import threading
import time
import uuid

import msgpack

from conftest import backend, connect, load_payloads, send_events

ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def event(i, **extra):
    e = {"event": "project:created", "uuid": str(uuid.uuid4()),
         "properties": {"seq": i, "name": f"p{i}"}}
    e.update(extra)
    return e


def uuids_of(batch):
    return [(e["uuid"], e["timestamp"]) for e in batch]


def test_concurrent_producers_every_event_exactly_once(collector, make_agent):
    max_events, max_bytes = 100, 32768
    agent = make_agent({
        "backend": backend(collector), "events": {"max_event_bytes": 8192},
        "batch": {"max_events": max_events, "max_bytes": max_bytes, "max_age_ms": 200},
        "properties": {"app_properties.orchest_version": "v2023.06.1"}})
    payloads = load_payloads()
    producers, per_producer = 8, 1250
    sent = {}
    lock = threading.Lock()

    def produce(p):
        with connect(agent) as s:
            for i in range(per_producer):
                e = dict(payloads[i % len(payloads)])
                e["uuid"] = str(uuid.uuid4())
                e["distinct_id"] = f"producer-{p}"
                s.sendall(msgpack.packb(e))
                with lock:
                    sent[e["uuid"]] = e

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    collector.wait_for_events(producers * per_producer, timeout=30)
    agent.stop()
    assert agent.returncode == 0

    received = collector.events()
    assert len(received) == producers * per_producer
    assert len({e["uuid"] for e in received}) == len(received), "an event arrived twice"
    assert {e["uuid"] for e in received} == set(sent)
    for e in received:
        original = sent[e["uuid"]]
        assert e["event"] == original["event"]
        assert e["distinct_id"] == original["distinct_id"]
        assert ISO_MS.match(e["timestamp"]), e["timestamp"]
        props = e["properties"]
        for k, v in original["properties"].items():
            assert props[k] == v
        assert props["app_properties"]["orchest_version"] == "v2023.06.1"
        assert props["$lib"] == "telemetry-agent"
        assert props["$lib_version"]
    for r in collector.requests():
        assert len(r["json"]["batch"]) <= max_events
        assert len(r["body"]) <= max_bytes
        assert r["headers"]["content-type"] == "application/json"
        assert r["headers"]["content-encoding"] == "gzip"
        assert r["json"]["api_key"] == "phc_test_key"
        assert ISO_MS.match(r["json"]["sent_at"])
    assert agent.stats()["delivered"] == producers * per_producer


def test_503_then_200_resends_identical_events(collector, make_agent):
    collector.plan(status=503, count=2)
    agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": 100}})
    send_events(agent, [event(i) for i in range(20)])
    reqs = collector.wait_for(lambda rs: any(r["response"]["status"] == 200 for r in rs),
                              timeout=10, what="a 200 after two 503s")
    agent.stop()
    assert [r["response"]["status"] for r in reqs[:3]] == [503, 503, 200]
    first = uuids_of(reqs[0]["json"]["batch"])
    assert len(first) == 20
    assert uuids_of(reqs[1]["json"]["batch"]) == first
    assert uuids_of(reqs[2]["json"]["batch"]) == first
    sent_ats = [r["json"]["sent_at"] for r in reqs[:3]]
    assert len(set(sent_ats)) == 3, f"sent_at not refreshed per attempt: {sent_ats}"
    assert len(collector.events()) == 20
    assert agent.stats()["delivered"] == 20


def test_429_retry_after_is_a_floor(collector, make_agent):
    collector.plan(status=429, count=1, retry_after="2")
    agent = make_agent({"backend": backend(collector, retry_initial_ms=50, retry_max_ms=100),
                        "batch": {"max_age_ms": 50}})
    send_events(agent, [event(0)])
    reqs = collector.wait_for_requests(2, timeout=10)
    agent.stop()
    waited = reqs[1]["received_at"] - reqs[0]["received_at"]
    assert waited >= 2.0, f"retried after {waited:.2f} s despite Retry-After: 2"
    assert uuids_of(reqs[1]["json"]["batch"]) == uuids_of(reqs[0]["json"]["batch"])


def test_400_drops_that_batch_only(collector, make_agent):
    collector.plan(status=400, count=1, body={"type": "validation_error"})
    agent = make_agent({"backend": backend(collector, max_in_flight=1),
                        "batch": {"max_events": 5, "max_age_ms": 5000}})
    send_events(agent, [event(i) for i in range(15)])
    collector.wait_for(lambda rs: len(rs) >= 3, timeout=10)
    time.sleep(0.5)  # a wrongly retried batch would show up here
    agent.stop()
    reqs = collector.requests()
    assert len(reqs) == 3
    assert reqs[0]["response"]["status"] == 400
    dropped = {e["properties"]["seq"] for e in reqs[0]["json"]["batch"]}
    delivered = {e["properties"]["seq"] for e in collector.events()}
    assert len(dropped) == 5 and len(delivered) == 10
    assert dropped | delivered == set(range(15))
    stats = agent.stats()
    assert stats["dropped_backend_rejected"] == 5
    assert stats["delivered"] == 10
    assert "400" in agent.stderr and "validation_error" in agent.stderr


def test_connection_failures_and_timeouts_are_retried(collector, make_agent):
    collector.plan(action="close", count=1)
    collector.plan(action="hang", count=1)
    agent = make_agent({"backend": backend(collector, timeout_ms=500),
                        "batch": {"max_age_ms": 50}})
    send_events(agent, [event(i) for i in range(3)])
    reqs = collector.wait_for(lambda rs: any(r["response"]["status"] == 200 for r in rs),
                              timeout=15, what="delivery after close and hang")
    agent.stop()
    assert [r["response"]["action"] for r in reqs[:3]] == ["close", "hang", "respond"]
    assert len(collector.events()) == 3
    assert uuids_of(reqs[2]["json"]["batch"]) == uuids_of(reqs[0]["json"]["batch"])


def test_sigterm_delivers_buffered_and_retrying_events(collector, make_agent):
    collector.plan(status=503, count=1)
    agent = make_agent({"backend": backend(collector, retry_initial_ms=300, retry_max_ms=300),
                        "batch": {"max_events": 10, "max_age_ms": 60000}})
    send_events(agent, [event(i) for i in range(25)])  # 2 full batches + 5 in the open one
    collector.wait_for_requests(1, timeout=10)
    assert agent.stop() == 0
    seqs = sorted(e["properties"]["seq"] for e in collector.events())
    assert seqs == list(range(25))
    assert agent.stats()["delivered"] == 25
    assert "all 25 events received were delivered" in agent.stderr


def test_a_producer_that_takes_no_acks_still_has_its_events_delivered(collector, make_agent):
    # a producer asks for acknowledgements but shuts down its reading side
    # (as one that closes before reading them does): the agent cannot send
    # them, keeps none, and still reads and delivers all the producer sends
    agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": 50}})
    with connect(agent) as s:
        s.shutdown(socket.SHUT_RD)
        for half in (range(0, 300), range(300, 600)):
            s.sendall(b"".join(msgpack.packb({"event": "project:created", "chunk": f"c{i}",
                                              "properties": {"seq": i}}) for i in half))
            agent.wait_received(half.stop)  # its acknowledgements could not go
    delivered = collector.wait_for_events(600, timeout=20)
    assert sorted(e["properties"]["seq"] for e in delivered) == list(range(600))
    assert agent.stop() == 0
    assert agent.stats()["delivered"] == 600
    assert "takes no acknowledgements any more (Broken pipe)" in agent.stderr


def test_shutdown_grace_bounds_the_wait_and_reports_losses(collector, make_agent):
    collector.plan(status=503, count=1000)
    agent = make_agent({"agent": {"shutdown_grace_ms": "700"},
                        "backend": backend(collector), "batch": {"max_age_ms": 50}})
    send_events(agent, [event(i) for i in range(7)])
    collector.wait_for_requests(1, timeout=10)
    started = time.monotonic()
    assert agent.stop() == 0
    assert time.monotonic() - started < 5
    assert "7 events could not be delivered" in agent.stderr
    assert agent.stats()["dropped_shutdown"] == 7


def test_retry_max_elapsed_gives_up(collector, make_agent):
    collector.plan(status=500, count=1000)
    agent = make_agent({"backend": backend(collector, retry_max_elapsed_ms=600),
                        "batch": {"max_age_ms": 50}})
    send_events(agent, [event(i) for i in range(4)])
    time.sleep(1.5)
    agent.stop()
    assert agent.stats()["dropped_retry_expired"] == 4
    # backoff of at least retry_initial_ms (100) between attempts: no tight loop
    assert 2 <= len(collector.requests()) <= 8
    assert "giving up" in agent.stderr


def test_timestamps_and_ids_are_kept_and_filled(collector, make_agent):
    agent = make_agent({"agent": {"distinct_id": "instance-42"},
                        "backend": backend(collector), "batch": {"max_age_ms": 50}})
    given = str(uuid.uuid4())
    before = datetime.datetime.now(datetime.timezone.utc)
    send_events(agent, [
        {"event": "project:created", "uuid": given, "timestamp": 1700000000123,
         "distinct_id": "me"},
        {"event": "project:deleted", "timestamp": "2026-11-28T12:00:00.5+01:00"},
        {"event": "project:updated"},
    ])
    events = {e["event"]: e for e in collector.wait_for_events(3, timeout=10)}
    agent.stop()
    assert events["project:created"]["uuid"] == given
    assert events["project:created"]["timestamp"] == "2023-11-14T22:13:20.123Z"
    assert events["project:created"]["distinct_id"] == "me"
    assert events["project:deleted"]["timestamp"] == "2026-11-28T11:00:00.500Z"
    filled = events["project:updated"]
    assert filled["distinct_id"] == "instance-42"
    assert uuid.UUID(filled["uuid"]).version == 7
    ts = datetime.datetime.strptime(filled["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc)
    assert abs((ts - before).total_seconds()) < 10


def test_gzip_off_sends_plain_json(collector, make_agent):
    agent = make_agent({"backend": backend(collector, gzip="false"), "batch": {"max_age_ms": 50}})
    send_events(agent, [event(0)])
    reqs = collector.wait_for_requests(1, timeout=10)
    agent.stop()
    assert "content-encoding" not in reqs[0]["headers"]
    assert reqs[0]["json"]["batch"][0]["properties"]["seq"] == 0


def test_requests_in_flight_are_bounded_and_connections_reused(collector, make_agent):
    agent = make_agent({"backend": backend(collector, max_in_flight=2, timeout_ms=60000),
                        "batch": {"max_events": 1, "max_age_ms": 50}})
    collector.plan(action="hang", count=2)
    send_events(agent, [event(i) for i in range(6)])
    time.sleep(1.0)
    assert len(collector.requests()) == 2, "more requests than backend.max_in_flight"
    agent.proc.kill()
    agent.proc.wait()
    agent.proc = None

    collector.clear()
    agent = make_agent({"backend": backend(collector, max_in_flight=1),
                        "batch": {"max_events": 1, "max_age_ms": 50}})
    send_events(agent, [event(i) for i in range(5)])
    reqs = collector.wait_for_requests(5, timeout=10)
    agent.stop()
    assert len({r["connection"] for r in reqs}) == 1, "the connection was not kept alive"
