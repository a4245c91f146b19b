"""
The operator endpoints ([http] listen) with the real agent, a real backend
and Python's http.client: /metrics in Prometheus text format whose figures
match what producers sent and the backend received (on the happy path, and
through 503s, a timeout, 413s, a batch given up, a refused connection and
rejected events), 405 for every method not served, /healthz, /readyz (and
why it says no), /status as JSON, `telemetry-agent status`, and the bounds
on the listener: connections, header sizes, timeouts, slow clients.
"""
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import msgpack

from collector import make_response
from test_pressure import MIB, INSTRUMENTED
from conftest import (AGENT_BIN, backend, connect, read_to_close, read_until_closed, read_within,
                      send_acked)


def get(agent_or_url, path, method="GET", headers=None, timeout=10):
    """(status, headers, body text) of one request to the operator endpoints."""
    url = agent_or_url if isinstance(agent_or_url, str) else agent_or_url.ops_url()
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        conn.request(method, path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read().decode()
    finally:
        conn.close()


def metrics(agent):
    """{(name, frozenset(labels)): value} of /metrics, checking the format."""
    status, headers, text = get(agent, "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    out, typed = {}, set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            assert kind in ("counter", "gauge", "histogram"), line
            typed.add(name)
            continue
        if line.startswith("# HELP ") or not line:
            continue
        m = re.fullmatch(r'([a-z_]+)(?:\{(.*)\})? (\S+)', line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.groups()
        assert name.startswith("telemetry_agent_"), name
        assert re.sub(r"_(bucket|sum|count)$", "", name) in typed or name in typed, name
        pairs = frozenset(re.findall(r'(\w+)="([^"]*)"', labels or ""))
        out[(name, pairs)] = float(value)
    return out


def m(values, name, **labels):
    return values[("telemetry_agent_" + name, frozenset(labels.items()))]


def ops_agent(make_agent, collector, **sections):
    config = {"backend": backend(collector), "batch": {"max_age_ms": "50"}}
    for name, keys in sections.items():
        config.setdefault(name, {}).update(keys)
    return make_agent(config)


def native(i, name="project:created", chunk=None):
    e = {"event": name, "properties": {"i": i}}
    if chunk:
        e["chunk"] = chunk
    return msgpack.packb(e)


def test_metrics_match_what_producers_sent_and_the_backend_received(make_agent, collector):
    agent = ops_agent(make_agent, collector)
    with connect(agent) as s:
        s.sendall(b"".join(native(i) for i in range(300)))
        s.sendall(b"".join(native(i, name="no:such-event") for i in range(7)))
        forward = ["orchest.project:created", [[1700000000, {"event": "project:created",
                                                             "n": k}] for k in range(20)],
                   {"chunk": "f1"}]
        s.sendall(msgpack.packb(forward))
        s.shutdown(socket.SHUT_WR)
        assert read_until_closed(s) == [{"ack": "f1"}]
    collector.wait_for_events(320, timeout=10)
    time.sleep(0.3)
    held = [connect(agent), connect(agent)]  # two producers connected
    time.sleep(0.2)
    v = metrics(agent)
    requests = [r for r in collector.requests() if r["path"] == "/batch"]
    assert m(v, "events_received_total", source="native") == 307
    assert m(v, "events_received_total", source="forward") == 20
    assert m(v, "events_received_total", source="http") == 0
    assert m(v, "events_rejected_total", reason="unknown_event") == 7
    assert m(v, "events_refused_total", source="native") == 7
    assert m(v, "events_refused_total", source="forward") == 0
    assert m(v, "events_accepted_total") == 320
    assert m(v, "events_delivered_total") == 320 == len(collector.events())
    assert m(v, "events_buffered") == 0
    assert sum(val for (name, _), val in v.items()
               if name == "telemetry_agent_events_dropped_total") == 0
    assert m(v, "batches_sent_total") == len(requests)
    assert m(v, "backend_answers_total", **{"class": "2xx"}) == len(requests)
    assert m(v, "backend_answers_total", **{"class": "5xx"}) == 0
    assert m(v, "bytes_sent_total", encoding="wire") == sum(r["body_length"] for r in requests)
    assert m(v, "bytes_sent_total", encoding="identity") == sum(len(r["body"]) for r in requests)
    assert m(v, "backend_request_duration_seconds_count") == len(requests)
    assert m(v, "backend_request_duration_seconds_bucket", le="+Inf") == len(requests)
    assert m(v, "requests_in_flight") == 0 and m(v, "backend_up") == 1
    assert m(v, "connections_open") == 2
    assert m(v, "connections_accepted_total") == 4  # and the start-up probe's
    builds = [labels for (name, labels) in v if name == "telemetry_agent_build_info"]
    assert len(builds) == 1 and ("version", "0.1.0") in builds[0]
    assert {k for k, _ in builds[0]} == {"version", "libevent", "libcurl", "msgpack"}
    assert m(v, "process_open_fds") > 3 and m(v, "process_resident_memory_bytes") > 1e6
    assert abs(m(v, "process_start_time_seconds") - time.time()) < 60
    for s in held:
        s.close()
    agent.stop()


def test_healthz_readyz_and_status(make_agent, collector):
    collector.policy = lambda record: make_response(503)
    agent = ops_agent(make_agent, collector, http={"ready_max_backlog": "10"},
                      agent={"shutdown_grace_ms": "3000"})
    assert get(agent, "/healthz")[:1] == (200,) and get(agent, "/healthz")[2] == "ok\n"
    assert get(agent, "/readyz")[0] == 200
    with connect(agent) as s:
        s.sendall(b"".join(native(i) for i in range(50)))
    time.sleep(0.5)
    status, _, body = get(agent, "/readyz")
    assert status == 503 and "backlog of 50 undelivered events" in body, body
    status, headers, body = get(agent, "/status")
    st = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert st["ready"] is False and "ready_max_backlog" in st["not_ready_because"]
    assert st["events"]["received"] == 50 and st["events"]["buffered"] == 50
    assert st["backend"]["state"] in ("backing_off", "probing")
    assert "503" in st["backend"]["last_error"] and st["backend"]["last_error_at"]
    assert st["backend"]["url"] == collector.url and st["spool"] is None
    collector.policy = None
    collector.wait_for_events(50, timeout=10)
    time.sleep(0.3)
    assert get(agent, "/readyz")[0] == 200
    st = json.loads(get(agent, "/status")[2])
    assert st["ready"] is True and st["events"]["delivered"] == 50
    assert st["backend"]["state"] == "up"

    # stopping: not ready, still alive, while it delivers what it holds
    collector.policy = lambda record: make_response(503)
    with connect(agent) as s:
        s.sendall(native(99))
    time.sleep(0.3)
    url = agent.ops_url()
    agent.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    status, _, body = get(url, "/readyz")
    assert status == 503 and body == "shutting down\n"
    assert get(url, "/healthz")[0] == 200
    agent.stop()


def test_status_shows_the_spool_and_the_status_command_prints_it(make_agent, collector,
                                                                 tmp_path):
    collector.policy = lambda record: make_response(503)
    agent = ops_agent(make_agent, collector, spool={"dir": str(tmp_path / "spool")},
                      backend={"url": collector.url.replace("http://", "http://user:pw@")})
    with connect(agent) as s:
        s.sendall(b"".join(native(i) for i in range(40)))
    time.sleep(1.5)
    st = json.loads(get(agent, "/status")[2])
    assert st["spool"]["undelivered"] == 40 and st["spool"]["segments"] == 1
    assert st["spool"]["bytes"] > 40 * 50 and st["spool"]["failing"] is False
    assert st["spool"]["oldest_undelivered_at"] is not None
    assert "pw" not in st["backend"]["url"] and "***@" in st["backend"]["url"]
    v = metrics(agent)
    assert m(v, "spool_segments") == 1 and m(v, "spool_bytes") == st["spool"]["bytes"]
    assert 0 < m(v, "spool_oldest_undelivered_age_seconds") < 60

    # the tests give each agent a free port: the command is told which
    env = dict(os.environ, TELEMETRY_AGENT_HTTP_LISTEN=agent.ops_url()[len("http://"):])
    out = subprocess.run([AGENT_BIN, "status", "-c", str(agent.config)], capture_output=True,
                         text=True, timeout=30, env=env)
    assert out.returncode == 0, out.stderr
    assert re.search(r"received\s+40", out.stdout) and re.search(r"buffered\s+40", out.stdout)
    assert "503" in out.stdout and "spool" in out.stdout and "pw" not in out.stdout
    collector.policy = None
    collector.wait_for_events(40, timeout=10)
    agent.stop()
    out = subprocess.run([AGENT_BIN, "status", "-c", str(agent.config)], capture_output=True,
                         text=True, timeout=30, env=env)
    assert out.returncode == 1 and "cannot reach the agent" in out.stderr, out.stderr


def test_wrong_paths_and_methods(make_agent, collector):
    agent = ops_agent(make_agent, collector)
    status, _, body = get(agent, "/nothing")
    assert status == 404 and "/metrics" in body
    status, headers, _ = get(agent, "/metrics", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, _, body = get(agent, "/healthz", method="HEAD")
    assert status == 200 and body == ""
    agent.stop()


def test_every_method_not_served_is_405_with_allow(make_agent, collector):
    agent = ops_agent(make_agent, collector)
    u = urllib.parse.urlsplit(agent.ops_url())
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    # one connection for all: each answer is framed, and the next request is served
    for method, target, body in [("TRACE", "/metrics", None), ("CONNECT", "/healthz", None),
                                 ("CONNECT", "127.0.0.1:9464", None), ("PATCH", "/status", "{}"),
                                 ("DELETE", "/readyz", None), ("PUT", "/metrics", "x" * 100),
                                 ("OPTIONS", "/metrics", None), ("POST", "/healthz", "")]:
        conn.request(method, target, body=body)
        r = conn.getresponse()
        text = r.read().decode()
        assert (r.status, r.getheader("Allow")) == (405, "GET, HEAD"), (method, r.status, text)
        assert text == "method not allowed: GET or HEAD\n"
    conn.request("GET", "/healthz")
    assert conn.getresponse().read() == b"ok\n"
    conn.close()
    # a method libevent 2.1 cannot parse stays its own 501
    assert get(agent, "/metrics", method="PROPFIND")[0] == 501
    assert get(agent, "/healthz")[0] == 200
    agent.stop()


def test_the_listener_is_bounded_and_cannot_stall_the_agent(make_agent, collector):
    agent = ops_agent(make_agent, collector,
                      http={"max_connections": "4", "timeout_ms": "1500"})
    url = urllib.parse.urlsplit(agent.ops_url())
    # headers past the bound are refused; the agent goes on
    status = get(agent, "/healthz", headers={"X-Big": "x" * 20000})[0]
    assert status in (400, 413, 431)
    # a slow client (a byte every 100 ms) and idle connections fill every slot ...
    idle = [socket.create_connection((url.hostname, url.port)) for _ in range(3)]
    slow = socket.create_connection((url.hostname, url.port))
    slow.sendall(b"GET /healthz HTTP/1.1\r\n")
    # ... producers are served all the while
    with connect(agent) as s:
        for i in range(10):
            s.sendall(native(i, chunk=f"c{i}"))
            slow.sendall(b"X")
            time.sleep(0.1)
        s.shutdown(socket.SHUT_WR)
        assert read_until_closed(s) == [{"ack": f"c{i}"} for i in range(10)]
    # a fifth connection waits for a free slot: no answer while all four are held
    waiting = socket.create_connection((url.hostname, url.port))
    waiting.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert read_within(waiting, 0.3) == b"", "more connections were served than the bound"
    # the held ones time out (http.timeout_ms), and then it is answered
    for s in idle:
        assert read_to_close(s, timeout=5) == b""  # closed by the agent
    answer = read_to_close(waiting)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    # a client that trickles a byte a second is cut at three timeouts (4.5 s)
    started = time.monotonic()
    slow.settimeout(0.05)
    closed = False
    while not closed and time.monotonic() - started < 10:
        try:
            slow.sendall(b"X")
            closed = slow.recv(100) == b""
        except socket.timeout:
            time.sleep(1)
        except OSError:
            closed = True
    assert closed, "a trickling client kept its connection"
    for s in idle + [slow, waiting]:
        s.close()
    collector.wait_for_events(10, timeout=10)
    agent.stop()


def test_a_client_that_never_reads_cannot_make_the_agent_buffer_without_end(make_agent,
                                                                           collector):
    # requests pipelined by a client that reads no answer, then megabytes of
    # more: each connection reads only what a request may hold
    agent = ops_agent(make_agent, collector)
    u = urllib.parse.urlsplit(agent.ops_url())
    rss = lambda: int(re.search(r"VmRSS:\s+(\d+)", open(f"/proc/{agent.proc.pid}/status").read())[1]) * 1024  # noqa: E731,E501
    before = rss()
    hogs = []
    for _ in range(4):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((u.hostname, u.port))
        s.setblocking(False)
        hogs.append(s)
    junk = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 2000 + b"x" * (8 * MIB)
    deadline = time.monotonic() + 5
    sent = [0] * len(hogs)
    while time.monotonic() < deadline and min(sent) < len(junk):
        for i, s in enumerate(hogs):
            try:
                sent[i] += s.send(junk[sent[i]:sent[i] + 65536])
            except (BlockingIOError, OSError):
                pass
        time.sleep(0.01)
    assert min(sent) < len(junk), "the agent read everything a client that reads nothing sent"
    with connect(agent) as p:  # producers are still served
        p.sendall(native(1, chunk="c1"))
        p.shutdown(socket.SHUT_WR)
        assert read_until_closed(p) == [{"ack": "c1"}]
    if not INSTRUMENTED:
        assert rss() - before < 32 * MIB, f"RSS grew by {(rss() - before) / MIB:.0f} MiB"
    for s in hogs:
        s.close()
    agent.stop()


def test_a_producer_connecting_right_after_a_scrape_is_served(make_agent, collector):
    # Regression: evhttp closed a finished request's socket while the
    # agent's reference kept the bufferevent's events registered for that
    # descriptor, so a producer whose connection got the same number was
    # never polled.
    agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": "50"}})
    url = agent.ops_url() + "/metrics"
    unpacker = msgpack.Unpacker(raw=False)
    for i in range(20):
        with urllib.request.urlopen(url, timeout=5) as r:
            r.read()
        time.sleep(0.02)  # evhttp sees the close and lets the connection go
        with connect(agent) as s:
            reply = send_acked(s, unpacker, {"event": "project:created"}, f"c{i}", timeout=3)
            assert reply == {"ack": f"c{i}"}
    collector.wait_for_events(20, timeout=10)
    agent.stop()


def settle(agent, timeout=20):
    """Until every event taken in is delivered or dropped, and no request is
    on its way or waiting."""
    deadline = time.monotonic() + timeout
    while True:
        st = agent.status()
        if st["events"]["buffered"] == 0 and st["backend"]["requests_in_flight"] == 0 and \
                st["backend"]["batches_waiting"] == 0:
            return
        assert time.monotonic() < deadline, f"the agent never settled: {st}"
        time.sleep(0.05)


def answer_class(record):
    """The status class of the collector's answer to a request, or "none"."""
    response = record["response"]
    return f"{response['status'] // 100}xx" if response["action"] == "respond" else "none"


def test_failure_path_counters_match_what_happened(make_agent, collector):
    # a request times out at 500 ms, a batch is given up after 2 s of
    # failures; two producer connections at most
    agent = ops_agent(make_agent, collector, agent={"max_connections": "2"},
                      backend={"timeout_ms": "500", "timeout_max_ms": "500",
                               "retry_max_elapsed_ms": "2000"},
                      relay={"listen": "127.0.0.1:0"})
    sent_native, connections = 0, 1  # the start-up probe's connection
    unpacker = msgpack.Unpacker(raw=False)

    def acked(*events):
        """Send events on a connection of their own; the agent's replies."""
        nonlocal sent_native, connections
        replies = []
        with connect(agent) as s:
            connections += 1
            for e in events:
                sent_native += 1
                replies.append(send_acked(s, unpacker, e, f"c{sent_native}"))
                assert replies[-1]["ack"] == f"c{sent_native}"
        settle(agent)
        return replies

    event = {"event": "project:created", "properties": {"n": 1}}
    collector.plan(status=503)  # 503, then 200 when it is sent again
    acked(event)
    collector.plan(action="hang", hang_timeout=3)  # no answer: timed out, then 200
    acked(event)
    collector.plan(status=413)  # a single event too large for the backend: dropped
    acked(event)
    collector.policy = lambda record: make_response(503)  # failing past 2 s: dropped
    acked(event)
    collector.policy = None
    collector.plan(status=413)  # a batch of two: halved, then each half is taken
    with connect(agent) as s:
        connections += 1
        s.sendall(native(1, chunk="p1") + native(2, chunk="p2"))  # one batch
        s.shutdown(socket.SHUT_WR)
        assert read_until_closed(s) == [{"ack": "p1"}, {"ack": "p2"}]
    sent_native += 2
    settle(agent)
    # a connection past agent.max_connections is refused
    time.sleep(0.3)  # the agent has seen the others close
    held = [connect(agent), connect(agent)]
    connections += 2
    time.sleep(0.2)
    with connect(agent) as extra:
        assert read_until_closed(extra, timeout=5)[0]["error"] == "max_connections"
    for s in held:
        s.close()
    time.sleep(0.3)
    # an event the registry does not know, from a producer and from the relay
    assert acked({"event": "no:such-event"}, event) == [
        {"ack": "c7", "rejected": 1, "reason": "unknown_event"}, {"ack": "c8"}]
    u = urllib.parse.urlsplit(agent.relay_url())
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("POST", u.path, body=json.dumps([event, {"event": "no:such-event"}, event]),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 202 and json.loads(r.read()) == {
        "accepted": 2, "rejected": [{"index": 1, "reason": "unknown_event"}]}
    conn.close()
    settle(agent)

    v = metrics(agent)
    records = [r for r in collector.requests() if r["path"] == "/batch"]
    classes = [answer_class(r) for r in records]
    sizes = [len(r["json"]["batch"]) for r in records]
    # what the test made happen ...
    expiring = classes.count("5xx") - 1  # the 503s of the batch that was given up
    assert expiring >= 3 and classes.count("none") == 1
    assert [(c, n) for c, n in zip(classes, sizes) if c == "4xx"] == [("4xx", 1), ("4xx", 2)]
    # ... is what /metrics says, request by request
    assert m(v, "batches_sent_total") == len(records) == 10 + expiring
    for cls in ("2xx", "3xx", "4xx", "5xx", "none"):
        assert m(v, "backend_answers_total", **{"class": cls}) == classes.count(cls), cls
        if cls != "2xx":
            assert m(v, "batches_failed_total", **{"class": cls}) == classes.count(cls), cls
    assert ("telemetry_agent_batches_failed_total", frozenset({("class", "2xx")})) not in v
    assert m(v, "batches_delivered_total") == classes.count("2xx") == 6
    # every failed request but the last of the expired batch put its batch back
    assert m(v, "batches_retried_total") == classes.count("5xx") + classes.count("none") - 1
    assert m(v, "batches_split_total") == 1
    assert m(v, "batches_dropped_total") == 2
    assert m(v, "events_dropped_total", reason="retry_expired") == 1
    assert m(v, "requests_timed_out_total") == 1
    assert m(v, "backend_request_duration_seconds_count") == len(records)
    # ... and event by event
    delivered = collector.events()
    assert m(v, "events_received_total", source="native") == sent_native == 8
    assert m(v, "events_received_total", source="http") == 3
    assert m(v, "events_rejected_total", reason="unknown_event") == 2
    assert m(v, "events_refused_total", source="native") == 1
    assert m(v, "events_refused_total", source="http") == 1
    assert m(v, "events_accepted_total") == 8 - 1 + 2
    assert m(v, "events_dropped_total", reason="backend_rejected") == 1
    assert m(v, "events_delivered_total") == len(delivered) == 8 - 1 + 2 - 2
    assert m(v, "events_buffered") == 0
    assert m(v, "connections_refused_total") == 1
    assert m(v, "connections_accepted_total") == connections
    agent.stop()
    stats = agent.stats()
    assert stats["requests_failed"] == 4 + expiring and stats["batches_retried"] == 1 + expiring
