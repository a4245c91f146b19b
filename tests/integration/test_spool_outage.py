"""
A backend outage of five minutes at 5,000 events a second with the disk
spool: nothing is lost, the agent's memory stays at its bound while the
spool grows on disk, and the spool drains once the backend is back.

SPOOL_OUTAGE_SECONDS sets the outage's length (default 300 s in the release
build; 30 s under the sanitizers or valgrind, which slow the agent several
times over).
"""
import os
import re
import time

from collector import make_response
from test_pressure import MIB, INSTRUMENTED, Steady, numbers, wait_numbers
from test_spool import segments, spool_agent, stats_balanced


def rss(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024


def spool_bytes(spool_dir):
    return sum(os.path.getsize(os.path.join(spool_dir, p)) for p in segments(spool_dir))


def test_a_long_outage_costs_disk_not_memory(make_agent, collector, tmp_path, capsys):
    seconds = int(os.environ.get("SPOOL_OUTAGE_SECONDS", "30" if INSTRUMENTED else "300"))
    rate = 5000
    collector.count_event = lambda e: e["properties"]["i"]
    collector.policy = lambda record: make_response(503)
    spool_dir = tmp_path / "spool"
    agent = spool_agent(make_agent, collector, spool_dir,
                        backend={"retry_max_ms": "2000"}, spool={"max_bytes": "4G"},
                        agent={"shutdown_grace_ms": "60000"})
    producer = Steady(agent, rate=rate)
    producer.start()
    samples = []  # (seconds into the outage, RSS, spool bytes)
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        time.sleep(min(10, seconds / 10))
        samples.append((time.monotonic() - start, rss(agent.proc.pid), spool_bytes(spool_dir)))
    collector.policy = None
    sent = producer.finish()
    wait_numbers(collector, sent, timeout=300)
    agent.stop(timeout=60)
    with capsys.disabled():  # the figures show in the suite's output
        print("\noutage: seconds, RSS MiB, spool MiB: " + ", ".join(
            f"({t:.0f}, {r / MIB:.1f}, {b / MIB:.1f})" for t, r, b in samples))
    assert sorted(set(numbers(collector))) == list(range(sent))
    assert sent >= rate * seconds * 0.9
    stats = stats_balanced(agent)
    assert stats["delivered"] >= sent and stats["buffered"] == 0 and stats["dropped"] == 0
    # the spool grew all along the outage ...
    assert samples[-1][2] > samples[0][2] * 5 and samples[-1][2] > sent * 100 * 0.8
    # ... and drained: one (nearly empty) segment is left
    assert len(segments(spool_dir)) == 1
    # memory stayed at its bound while the disk took the backlog
    late = [r for t, r, b in samples if t >= seconds / 2]
    early = [r for t, r, b in samples if t < seconds / 2]
    if not INSTRUMENTED:
        assert max(r for t, r, b in samples) < 8 * MIB + 20 * MIB, samples
        assert max(late) <= max(early) + 2 * MIB, f"RSS grew during the outage: {samples}"


