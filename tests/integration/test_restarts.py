"""
Producers riding out agent restarts: the agent is stopped with SIGTERM and
started again five times while the C library and the Python client send
2,000 events a second, with their default queues. Reliable mode loses
nothing; fire-and-forget mode drops nothing from its queue (the restarts fit
its bound) and loses at most what each old connection held unread in the
kernel when the agent closed it.
"""
import os
import signal
import socket
import subprocess
import time

import pytest

from conftest import backend
from test_c_client import PRODUCER, Run
from test_python_agent import SteadyProducer, check_producer, kernel_buffer_bytes, \
    smallest_event_bytes
from test_python_client import clients  # noqa: F401 (a fixture)

RATE = 2000
RESTARTS = 5
PYTHON_SNDBUF = 8192


def restart_five_times(agent):
    """SIGTERM, 0.3 s away, start again; five times, a second apart."""
    for _ in range(RESTARTS):
        time.sleep(1.0)
        agent.stop(sig=signal.SIGTERM)
        time.sleep(0.3)
        agent.start()
    time.sleep(1.0)


def restarting_agent(make_agent, collector):
    """The agent, started, and the seconds starting it took (under valgrind,
    about a second and a half: the producers must outlive five of them)."""
    agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": 50}}, start=False)
    began = time.monotonic()
    agent.start()
    return agent, time.monotonic() - began


def delivered(collector, agent, key, at_least):
    collector.wait_for_events(at_least, timeout=60)
    time.sleep(0.5)
    agent.stop()
    return [key(e) for e in collector.events()]


@pytest.mark.parametrize("reliable", [True, False], ids=["reliable", "fire_and_forget"])
def test_c_library_rides_out_five_restarts(tmp_path, collector, make_agent, reliable):
    agent, start_seconds = restarting_agent(make_agent, collector)
    out = tmp_path / "producer.txt"
    seconds = RESTARTS * (1.3 + start_seconds) + 2
    mode = ["reliable", "5000"] if reliable else ["fire-and-forget"]
    with open(out, "w") as f:
        # PRODUCER_QUEUE_BYTES=0: the library's default queue
        proc = subprocess.Popen([PRODUCER, str(seconds), str(RATE), *mode], stdout=f,
                                env=dict(os.environ, TELEMETRY_SOCKET=agent.socket,
                                         PRODUCER_QUEUE_BYTES="0"))
    restart_five_times(agent)
    assert proc.wait(timeout=120) == 0, out.read_text()[-2000:]
    run = Run(out.read_text())
    captured = run.captured()
    assert len(captured) == run.stats["attempted"] >= RATE * seconds * 0.8
    assert run.stats["dropped"] == 0 and run.stats["queued"] == 0, run.stats
    assert run.stats["connects"] >= RESTARTS + 1
    if reliable:
        got = delivered(collector, agent, lambda e: e["properties"]["i"], len(captured))
        assert set(got) == set(captured), \
            "reliable mode lost %d events" % len(set(captured) - set(got))
    else:
        # what each closed connection still held unread: at most a kernel
        # socket buffer's worth of events per restart
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            default_sndbuf = s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        per_restart = default_sndbuf // 200 + 1  # the producer's events are over 200 bytes
        got = delivered(collector, agent, lambda e: e["properties"]["i"],
                        len(captured) - RESTARTS * per_restart)
        assert len(got) == len(set(got))
        assert len(set(captured) - set(got)) <= RESTARTS * per_restart


@pytest.mark.parametrize("reliable", [True, False], ids=["reliable", "fire_and_forget"])
def test_python_client_rides_out_five_restarts(collector, make_agent, clients, reliable):
    agent, _ = restarting_agent(make_agent, collector)
    options = {"reliable": True, "ack_timeout": 5} if reliable else {"sndbuf": PYTHON_SNDBUF}
    client = clients(agent.socket, reconnect_max=0.2, **options)  # the default queue
    producer = SteadyProducer(client, rate=RATE)
    producer.start()
    restart_five_times(agent)
    producer.stop()
    assert client.flush(30), client.stats()
    check_producer(producer, client)
    captured = producer.captured()
    assert len(captured) >= RATE * RESTARTS * 1.3 * 0.5
    if reliable:
        got = delivered(collector, agent, lambda e: e["uuid"], len(captured))
        assert set(got) == set(captured), \
            "reliable mode lost %d events" % len(set(captured) - set(got))
    else:
        per_restart = kernel_buffer_bytes(PYTHON_SNDBUF) // smallest_event_bytes() + 1
        got = delivered(collector, agent, lambda e: e["uuid"],
                        len(captured) - RESTARTS * per_restart)
        assert len(got) == len(set(got))
        assert len(set(captured) - set(got)) <= RESTARTS * per_restart
