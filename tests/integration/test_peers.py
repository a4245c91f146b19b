"""
Peers that hold resources: a connection that holds part of a message and
sends nothing (slowloris) is closed after agent.idle_timeout_ms, one idle
between messages stays open; a producer that asks for acknowledgements and
never reads them stops being read at agent.max_pending_reply_bytes and is
closed after agent.write_timeout_ms; with every slot of max_connections
held by silent connections a new producer gets in once they time out.
"""
import socket
import threading
import time
import uuid

import msgpack

from conftest import backend, connect, read_until_closed, send_acked


def wait_open(agent, n):
    deadline = time.monotonic() + 5
    while agent.status()["connections"]["open"] != n:
        assert time.monotonic() < deadline, f"never {n} connections open"
        time.sleep(0.02)


def event(i, chunk=None):
    e = {"event": "project:created", "uuid": str(uuid.uuid4()), "properties": {"seq": i}}
    if chunk:
        e["chunk"] = chunk
    return e


def test_slowloris_connections_time_out_and_free_their_slots(collector, make_agent):
    agent = make_agent({"backend": backend(collector),
                        "agent": {"max_connections": "4", "idle_timeout_ms": "600"},
                        "batch": {"max_age_ms": "50"}})
    whole = msgpack.packb(event(0))
    wait_open(agent, 0)  # the start-up check's connection is gone
    silent = []
    for _ in range(4):  # every slot: half a message each, then nothing
        s = connect(agent)
        s.sendall(whole[:len(whole) // 2])
        silent.append(s)
    wait_open(agent, 4)
    with connect(agent) as extra:  # no slot left: refused at once
        replies = read_until_closed(extra, timeout=5)
    assert replies and replies[-1]["error"] == "max_connections"

    for s in silent:  # each is told why, then closed
        replies = read_until_closed(s, timeout=5)
        assert replies[-1]["error"] == "timeout", replies
        assert "idle_timeout_ms" in replies[-1]["detail"]
        s.close()
    with connect(agent) as s:  # the slots are free again
        assert send_acked(s, msgpack.Unpacker(raw=False), event(1), "after") == {"ack": "after"}
    collector.wait_for_events(1, timeout=10)
    assert agent.metric("connections_closed_idle_total") == 4
    agent.stop()
    assert agent.stats()["delivered"] == 1  # the halves were never events


def test_a_connection_idle_between_messages_stays_open(collector, make_agent):
    agent = make_agent({"backend": backend(collector), "agent": {"idle_timeout_ms": "300"},
                        "batch": {"max_age_ms": "50"}})
    with connect(agent) as s:
        unpacker = msgpack.Unpacker(raw=False)
        for i in range(3):
            assert send_acked(s, unpacker, event(i), f"c{i}") == {"ack": f"c{i}"}
            time.sleep(1.0)  # three times the idle timeout, between messages
    collector.wait_for_events(3, timeout=10)
    assert agent.metric("connections_closed_idle_total") == 0
    agent.stop()


def test_a_producer_that_never_reads_its_acks_is_bounded_then_closed(collector, make_agent):
    agent = make_agent({"backend": backend(collector),
                        "agent": {"max_pending_reply_bytes": "4096", "write_timeout_ms": "800"},
                        "batch": {"max_age_ms": "50"}})
    deaf = connect(agent)
    deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sent = [0]

    def flood():  # acks of ~20 bytes each: far more than the socket buffers hold
        try:
            for i in range(200000):
                deaf.sendall(msgpack.packb(event(i, chunk=f"chunk-{i:08d}")))
                sent[0] += 1
        except OSError:
            pass  # the agent closed it

    writer = threading.Thread(target=flood, daemon=True)
    writer.start()
    # meanwhile a well-behaved producer is served as usual
    with connect(agent) as good:
        unpacker = msgpack.Unpacker(raw=False)
        for i in range(20):
            assert send_acked(good, unpacker, event(i), f"good{i}") == {"ack": f"good{i}"}
    writer.join(timeout=20)
    assert not writer.is_alive(), "the agent never closed the producer that does not read"
    assert sent[0] < 200000, "the agent kept reading a producer that does not read its acks"
    deaf.close()
    assert agent.metric("connections_closed_unread_total") == 1
    agent.stop()
    stats = agent.stats()
    # whatever it accepted from the deaf producer was delivered all the same
    assert stats["received"] == stats["delivered"]
    assert 20 < stats["delivered"] < 20 + sent[0] + 1
    assert "read none of its acknowledgements" in agent.stderr
