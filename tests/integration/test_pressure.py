"""
Delivery under pressure, with the real agent and a real HTTP backend: a
burst far faster than the backend, outages of every kind under steady load,
SIGTERM right after recovery, Retry-After, a wrong API key, 413, and a
backend slower than the timeout. In each, nothing that could be delivered
is lost, and received = delivered + buffered + dropped.
"""
import os
import re
import signal
import subprocess
import threading
import time

import msgpack
import pytest

from collector import make_response
from conftest import backend, connect
from test_c_client import PRODUCER, Run

SANITIZED = os.environ.get("TELEMETRY_TEST_SANITIZED") == "1"
# Under the sanitizers or valgrind the agent runs several times slower and
# most of its RSS is the tool's: memory bounds are checked on RSS only
# without them, and the longest runs are shortened.
INSTRUMENTED = SANITIZED or os.environ.get("TELEMETRY_TEST_VALGRIND") == "1"
MIB = 1024 * 1024


def event(i, pad=0):
    return msgpack.packb({"event": "project:created", "properties": {"i": i, "pad": "p" * pad}})


def numbers(collector):
    """The "i" of every event the backend took (counting mode)."""
    return [n for r in collector.requests() if r["response"]["status"] == 200
            for n in r["json"]["batch"]]


def wait_numbers(collector, total, timeout):
    """Wait until the backend took `total` events (polled: a predicate run
    on every one of thousands of requests would cost more than the test)."""
    deadline = time.monotonic() + timeout
    while len(numbers(collector)) < total:
        assert time.monotonic() < deadline, \
            f"the backend took {len(numbers(collector))} of {total} events in {timeout} s"
        time.sleep(0.5)


def count_by_i(collector):
    collector.count_event = lambda e: e["properties"]["i"]


def balanced(stats):
    dropped = sum(v for k, v in stats.items() if k.startswith("dropped_"))
    assert stats["received"] == stats["delivered"] + stats["buffered"] + dropped, stats
    assert stats["dropped"] == dropped


def peak_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) * 1024


def buffer_peak(agent):
    m = re.search(r"buffer: at most (\d+) bytes held", agent.stderr)
    assert m, agent.stderr
    return int(m.group(1))


class Steady(threading.Thread):
    """Writes event(i) for i = 0, 1, ... at `rate` a second on one blocking
    connection (a fire-and-forget producer that simply waits when the agent
    does not read)."""

    def __init__(self, agent, rate):
        super().__init__(daemon=True)
        self.sock = connect(agent)
        self.rate, self.sent, self.stop = rate, 0, threading.Event()

    def run(self):
        start = time.monotonic()
        while not self.stop.is_set():
            due = int((time.monotonic() - start) * self.rate)
            if due > self.sent:
                self.sock.sendall(self.messages(self.sent, due))
                self.sent = due
            time.sleep(0.01)

    def messages(self, first, end):
        """What goes out for events first .. end - 1."""
        return b"".join(event(i) for i in range(first, end))

    def finish(self):
        self.stop.set()
        self.join()
        self.sock.close()
        return self.sent


def test_a_burst_far_faster_than_the_backend_is_delivered_whole(make_agent, collector):
    # 1,000,000 events from 4 blocking writers, default settings: the agent
    # reads only as fast as its buffer drains, so nothing is dropped.
    count_by_i(collector)
    agent = make_agent({"backend": backend(collector)})
    writers, per = 4, 250_000

    def write(k):
        with connect(agent) as s:
            for start in range(k * per, (k + 1) * per, 5000):
                s.sendall(b"".join(event(i) for i in range(start, start + 5000)))

    threads = [threading.Thread(target=write, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    wait_numbers(collector, writers * per, 300)
    rss = peak_rss(agent.proc.pid)
    agent.stop()
    got = numbers(collector)
    assert sorted(set(got)) == list(range(writers * per))
    stats = agent.stats()
    assert stats["received"] == stats["delivered"] == writers * per
    assert stats["dropped"] == 0 and stats["connections_paused"] > 0
    balanced(stats)
    assert buffer_peak(agent) <= 8 * MIB + 1 * MIB  # the bound, plus at most one message
    if not INSTRUMENTED:
        # buffer.max_bytes + one message + the documented constant (README)
        assert rss < 8 * MIB + 1 * MIB + 20 * MIB, f"peak RSS {rss} bytes"


def test_a_burst_through_the_c_library_in_reliable_mode_is_delivered_whole(tmp_path,
                                                                          make_agent, collector):
    count_by_i(collector)
    agent = make_agent({"backend": backend(collector)})
    total = 1_000_000
    out = tmp_path / "producer.txt"
    with open(out, "w") as f:
        proc = subprocess.Popen([PRODUCER, "0", "0", "reliable", "30000"], stdout=f,
                                env=dict(os.environ, TELEMETRY_SOCKET=agent.socket,
                                         PRODUCER_QUEUE_BYTES="0", PRODUCER_COUNT=str(total),
                                         PRODUCER_FLUSH_MS="120000"))
    assert proc.wait(timeout=300) == 0, out.read_text()[-2000:]
    run = Run(out.read_text())
    assert run.stats["attempted"] == run.stats["acked"] == total, run.stats
    assert run.stats["dropped"] == 0 and run.stats["resent"] == 0, run.stats
    wait_numbers(collector, total, 120)
    agent.stop()
    assert sorted(set(numbers(collector))) == list(range(total))
    stats = agent.stats()
    assert stats["received"] == stats["delivered"] == total and stats["dropped"] == 0
    balanced(stats)
    assert buffer_peak(agent) <= 8 * MIB + 1 * MIB


def test_one_event_batches_through_an_outage_stay_within_the_bound(make_agent, collector):
    # Many tiny batches cost more than their bytes; the bound still holds,
    # and the producer is held back, not dropped.
    count_by_i(collector)
    collector.policy = lambda record: make_response(503)
    agent = make_agent({"backend": backend(collector), "batch": {"max_events": "1"}})
    total = 30000
    written = threading.Event()

    def write():
        with connect(agent) as s:
            s.sendall(b"".join(event(i, pad=200) for i in range(total)))
        written.set()

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(5)
    assert not written.is_set(), "the agent took 30,000 events into 8 MiB: it did not push back"
    collector.policy = None
    writer.join(timeout=120)
    wait_numbers(collector, total, 120)
    rss = peak_rss(agent.proc.pid)
    agent.stop()
    assert sorted(set(numbers(collector))) == list(range(total))
    stats = agent.stats()
    assert stats["delivered"] == total and stats["dropped"] == 0
    balanced(stats)
    assert buffer_peak(agent) <= 8 * MIB + 1 * MIB
    if not INSTRUMENTED:
        assert rss < 8 * MIB + 1 * MIB + 20 * MIB, f"peak RSS {rss} bytes"


def outage_503(collector):
    collector.policy = lambda record: make_response(503)
    return lambda: setattr(collector, "policy", None)


def outage_refused(collector):
    collector.stop()
    return collector.start


def outage_hang(collector):
    collector.policy = lambda record: make_response(action="hang", hang_timeout=3)
    return lambda: setattr(collector, "policy", None)


@pytest.mark.parametrize("outage", [outage_503, outage_refused, outage_hang])
def test_an_outage_under_steady_load_loses_nothing_and_sigterm_after_it_delivers(
        make_agent, collector, outage):
    count_by_i(collector)
    agent = make_agent({"backend": backend(collector, timeout_ms=1000),
                        "batch": {"max_age_ms": "100"},
                        "agent": {"shutdown_grace_ms": "20000"}})
    producer = Steady(agent, rate=1000)
    producer.start()
    time.sleep(1)
    before = len(collector.requests())
    recover = outage(collector)
    time.sleep(30)
    during = len(collector.requests()) - before
    recover()
    time.sleep(1)  # recovered, and a second later: SIGTERM
    sent = producer.finish()
    rss = peak_rss(agent.proc.pid)
    agent.stop(timeout=30)
    got = numbers(collector)
    assert set(got) == set(range(sent))
    stats = agent.stats()
    assert stats["received"] == stats["delivered"] == sent and stats["dropped"] == 0
    balanced(stats)
    # one probe at a time, at least retry_initial_ms (100) apart: not thousands
    assert during <= 30 / 0.1 + 10, during
    assert buffer_peak(agent) <= 8 * MIB + 1 * MIB
    if not INSTRUMENTED:
        assert rss < 8 * MIB + 1 * MIB + 20 * MIB, f"peak RSS {rss} bytes"


def test_retry_after_pauses_the_whole_backend_within_its_bound(make_agent, collector):
    collector.plan(503, retry_after="2")
    collector.plan(503, retry_after="3600")
    # one request at a time: with a timer per batch the next batch would go
    # out at once; with the backend paused, nothing goes out
    agent = make_agent({"backend": backend(collector, retry_after_max_ms=3000, max_in_flight=1),
                        "batch": {"max_events": "1", "max_age_ms": "10"}})
    with connect(agent) as s:
        s.sendall(b"".join(event(i) for i in range(20)))
    collector.wait_for_events(20, timeout=20)
    agent.stop()
    times = [r["received_at"] for r in collector.requests()]
    # after the first 503 (Retry-After: 2) nothing for 2 s, from any batch
    assert times[1] - times[0] >= 1.9
    # the second asked for an hour; backend.retry_after_max_ms holds it to 3 s
    assert 2.9 <= times[2] - times[1] < 6
    assert agent.stats()["delivered"] == 20
    balanced(agent.stats())


def test_a_wrong_api_key_keeps_every_batch_until_it_is_fixed(make_agent, collector):
    fixed_at = time.monotonic() + 10
    collector.policy = lambda record: (make_response(401, body={"error": "bad key"})
                                       if time.monotonic() < fixed_at else None)
    agent = make_agent({"backend": backend(collector, misconfigured_retry_ms=500),
                        "batch": {"max_age_ms": "50"}})
    with connect(agent) as s:
        for i in range(50):
            s.sendall(event(i))
            time.sleep(0.1)
    collector.wait_for_events(50, timeout=20)
    agent.stop()
    assert sorted(e["properties"]["i"] for e in collector.events()) == list(range(50))
    stats = agent.stats()
    assert stats["delivered"] == 50 and stats["dropped"] == 0
    balanced(stats)
    assert "configuration error" in agent.stderr and "401" in agent.stderr
    failed = [r for r in collector.requests() if r["response"]["status"] == 401]
    assert 5 <= len(failed) <= 10 / 0.5 + 5  # retried slowly, not dropped, not hammered


def test_413_halves_batches_until_the_backend_takes_them(make_agent, collector):
    def too_large(record):
        batch = record["json"]["batch"]
        if len(batch) > 8 or any(e["properties"]["pad"] for e in batch):
            return make_response(413)
        return None
    collector.policy = too_large
    agent = make_agent({"backend": backend(collector),
                        "batch": {"max_events": "100", "max_age_ms": "200"}})
    with connect(agent) as s:
        s.sendall(b"".join(event(i) for i in range(100)) + event(100, pad=10))
    collector.wait_for_events(100, timeout=20)
    agent.stop()
    assert sorted(e["properties"]["i"] for e in collector.events()) == list(range(100))
    stats = agent.stats()
    assert stats["delivered"] == 100 and stats["batches_split"] >= 7
    assert stats["dropped_backend_rejected"] == 1  # the one event that is too large alone
    balanced(stats)


def test_a_backend_slower_than_the_timeout_gets_everything_with_few_duplicates(make_agent,
                                                                                collector):
    collector.policy = lambda record: make_response(delay=3)
    agent = make_agent({"backend": backend(collector, timeout_ms=2000, max_in_flight=2),
                        "batch": {"max_events": "100", "max_age_ms": "50"}})
    with connect(agent) as s:
        s.sendall(b"".join(event(i) for i in range(1000)))
    collector.wait_for(lambda r: {e["properties"]["i"] for e in collector.events()} >=
                       set(range(1000)), timeout=60, what="every event")
    agent.stop(timeout=30)
    got = [e["properties"]["i"] for e in collector.events()]
    assert set(got) == set(range(1000))
    assert len(got) <= 1000 + 2 * 100  # only the batches in flight at the first timeout
    assert "slower than that" in agent.stderr
    assert agent.stats()["delivered"] == 1000 and agent.stats()["requests_timed_out"] >= 1
    balanced(agent.stats())
