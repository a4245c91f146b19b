"""
The browser relay ([relay] listen) with the real agent, a real backend and
Python's http.client: every answer it gives (202, 400, 403, 405, 413, 415,
429), CORS preflights, gzip and sendBeacon bodies, JSON edge cases, the
distinct_id rule, the counters by source, and the listener's own bounds
(relay.max_connections, relay.timeout_ms) against idle and slow clients. (A
real browser drives it in test_relay_browser.py.)
"""
import gzip
import http.client
import json
import socket
import time
import urllib.parse

import msgpack
import pytest

from collector import make_response
from conftest import backend, connect, read_to_close, read_until_closed, read_within


def relay_agent(make_agent, collector, **relay):
    keys = {"listen": "127.0.0.1:0"}
    keys.update({k: str(v) for k, v in relay.items()})
    return make_agent({"backend": backend(collector), "batch": {"max_age_ms": "50"},
                       "relay": keys})


def post(agent, body, content_type="application/json", headers=None, method="POST"):
    """(status, headers, parsed JSON or text) of one request to the relay."""
    u = urllib.parse.urlsplit(agent.relay_url())
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    h = {"Content-Type": content_type} if content_type else {}
    h.update(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    try:
        conn.request(method, u.path, body=body, headers=h)
        r = conn.getresponse()
        text = r.read().decode()
        try:
            parsed = json.loads(text)
        except ValueError:
            parsed = text
        return r.status, {k.lower(): v for k, v in r.getheaders()}, parsed
    finally:
        conn.close()


EVENT = {"event": "project:created", "properties": {"projects_count": 7}}


def test_one_event_an_array_and_a_batch_are_accepted(make_agent, collector):
    agent = relay_agent(make_agent, collector)
    assert post(agent, EVENT)[::2] == (202, {"accepted": 1, "rejected": []})
    status, _, body = post(agent, [EVENT, {"event": "no:such-event"}, 7, EVENT,
                                   {"event": "project:created", "surprise": 1}])
    assert status == 202 and body == {"accepted": 2, "rejected": [
        {"index": 1, "reason": "unknown_event"}, {"index": 2, "reason": "unsupported_shape"},
        {"index": 4, "reason": "unknown_key"}]}
    assert post(agent, {"batch": [EVENT, EVENT]})[2] == {"accepted": 2, "rejected": []}
    # navigator.sendBeacon's body, and a gzip one
    assert post(agent, json.dumps(EVENT), "text/plain;charset=UTF-8")[2]["accepted"] == 1
    assert post(agent, gzip.compress(json.dumps([EVENT] * 3).encode()),
                headers={"Content-Encoding": "gzip"})[2]["accepted"] == 3
    got = collector.wait_for_events(9, timeout=10)
    agent.stop()
    assert all(e["event"] == "project:created" for e in got)
    assert all(e["properties"]["$lib"] == "telemetry-agent" and e["uuid"] for e in got)
    stats = agent.stats()
    assert stats["received_http"] == 12 and stats["delivered"] == 9
    assert stats["dropped_unknown_event"] == 1 and stats["dropped_unknown_key"] == 1
    assert stats["dropped_unsupported_shape"] == 1
    assert stats["refused_http"] == 3 and "refused_native" not in stats


def test_a_browser_never_decides_distinct_id_unless_trusted(make_agent, collector):
    for trusted in (False, True):
        agent = relay_agent(make_agent, collector, trust_distinct_id=str(trusted).lower())
        e = dict(EVENT, distinct_id=f"browser-{trusted}")
        assert post(agent, e)[0] == 202
        got = collector.wait_for_events(1 + trusted, timeout=10)
        agent.stop()
    ids = [e["distinct_id"] for e in got]
    assert "browser-False" not in ids and "browser-True" in ids


@pytest.mark.parametrize("body,why", [
    (b"", "not JSON"),
    (b'{"event": ', "not JSON"),
    (b'{"event": "project:created", "properties": {"a": NaN}}', "not JSON"),
    (b'{"event": "project:created", "properties": {"a": 1e999}}', "not JSON"),
    (b'{"event": "project:created", "properties": {"a": 99999999999999999999}}', "not JSON"),
    (b'{"event": "project:created", "event": "x"}', "not JSON"),
    (b'{"event": "project:\xff"}', "not JSON"),
    (b'{"event": "project:created\\u0000"}', "not JSON"),
    (b"[" * 5000 + b"]" * 5000, "nests deeper than"),
    (b'"just a string"', "not an event"),
    (b'{"batch": {"event": "x"}}', "not an event"),
    (b'{"properties": {}}', "not an event"),
])
def test_bodies_that_are_not_json_or_not_the_shape_are_400(make_agent, collector, body, why):
    agent = relay_agent(make_agent, collector)
    status, _, answer = post(agent, body)
    assert status == 400 and why in answer["error"], answer
    assert post(agent, EVENT)[0] == 202  # and it goes on
    agent.stop()


def test_nesting_is_bounded_before_parsing(make_agent, collector):
    agent = relay_agent(make_agent, collector)
    deep = {"event": "project:created", "properties": {"a": json.loads("[" * 100 + "]" * 100)}}
    status, _, answer = post(agent, [deep, EVENT])
    assert status == 400 and "nests deeper than 34 levels" in answer["error"]
    # a gzip body of a few KB that inflates to 24,000 levels costs no parsing
    status, _, answer = post(agent, gzip.compress(b"[" * 24000 + b"]" * 24000),
                             headers={"Content-Encoding": "gzip"})
    assert status == 400 and "nests deeper" in answer["error"]
    # 30 levels inside properties fit (the socket's bound is 32 in all)
    fits = {"event": "project:created", "properties": {"a": json.loads("[" * 29 + "]" * 29)}}
    assert post(agent, fits)[2] == {"accepted": 1, "rejected": []}
    agent.stop()


def test_media_types_encodings_methods_and_paths(make_agent, collector):
    agent = relay_agent(make_agent, collector)
    status, _, answer = post(agent, "<xml/>", "application/xml")
    assert status == 415 and "application/json" in answer["error"]
    assert post(agent, json.dumps(EVENT), None)[0] == 415
    assert post(agent, json.dumps(EVENT), headers={"Content-Encoding": "br"})[0] == 415
    assert post(agent, b"not gzip", headers={"Content-Encoding": "gzip"})[0] == 400
    status, headers, _ = post(agent, None, None, method="GET")
    assert status == 405 and headers["allow"] == "POST, OPTIONS"
    u = urllib.parse.urlsplit(agent.relay_url())
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    # one connection for all: each answer is framed, and the next request is served
    for method, target, body in [("TRACE", u.path, None), ("CONNECT", u.path, None),
                                 ("CONNECT", u.netloc, None), ("PATCH", u.path, "{}"),
                                 ("DELETE", u.path, None), ("PUT", u.path, json.dumps(EVENT)),
                                 ("HEAD", u.path, None)]:
        conn.request(method, target, body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        text = r.read().decode()
        assert (r.status, r.getheader("Allow")) == (405, "POST, OPTIONS"), (method, r.status)
        assert text == ("" if method == "HEAD" else
                        '{"error":"method not allowed: POST events here"}\n'), (method, text)
    conn.request("POST", u.path, body=json.dumps(EVENT),
                 headers={"Content-Type": "application/json"})
    r = conn.getresponse()
    assert r.status == 202 and json.loads(r.read())["accepted"] == 1
    conn.close()
    # a method libevent 2.1 cannot parse stays its own 501
    assert post(agent, None, None, method="PROPFIND")[0] == 501
    u = urllib.parse.urlsplit(agent.relay_url())
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("POST", "/elsewhere", body="{}", headers={"Content-Type": "application/json"})
    assert conn.getresponse().status == 404
    conn.close()
    agent.stop()
    assert agent.stats()["received"] == 1


def test_bodies_past_the_bound_are_413_before_they_are_read(make_agent, collector):
    agent = relay_agent(make_agent, collector, max_body_bytes=4096,
                        cors_origins="https://app.example")
    u = urllib.parse.urlsplit(agent.relay_url())
    # the headers announce 10 MB; the answer comes without the body being sent
    with socket.create_connection((u.hostname, u.port), timeout=10) as s:
        s.sendall(f"POST {u.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  f"Content-Length: 10000000\r\n\r\n".encode() + b"[" * 1000)
        assert s.recv(100).startswith(b"HTTP/1.1 413")
    # one within a browser's own 64 KiB is read, and answered by the relay
    # with the CORS headers a page needs to read the 413
    status, headers, answer = post(agent, [EVENT] * 200, headers={"Origin": "https://app.example"})
    assert status == 413 and "relay.max_body_bytes = 4096" in answer["error"], answer
    assert headers["access-control-allow-origin"] == "https://app.example"
    # a gzip body that inflates past 16 times the bound
    bomb = gzip.compress(b'{"event": "project:created", "properties": {"p": "' + b"a" * 100000
                         + b'"}}')
    assert len(bomb) < 4096
    status, _, answer = post(agent, bomb, headers={"Content-Encoding": "gzip"})
    assert status == 413 and "inflates" in answer["error"]
    assert post(agent, EVENT)[0] == 202
    agent.stop()


def test_a_client_past_its_rate_gets_429_with_retry_after(make_agent, collector):
    # one event a second after a burst of ten; a request costs at least one
    agent = relay_agent(make_agent, collector, rate_limit=1, rate_burst=10)
    status, _, answer = post(agent, [EVENT] * 11)  # could never pass: more than a burst
    assert status == 413 and "relay.rate_burst" in answer["error"]
    assert post(agent, [EVENT] * 9)[2]["accepted"] == 9  # the burst's other nine
    status, headers, answer = post(agent, [EVENT] * 3)
    assert status == 429 and int(headers["retry-after"]) >= 1
    assert "relay.rate_limit" in answer["error"]
    time.sleep(3.5)  # three more
    assert post(agent, [EVENT] * 3)[0] == 202
    collector.wait_for_events(12, timeout=10)
    agent.stop()
    assert agent.stats()["received_http"] == 12  # refused requests are not events received


def test_a_full_buffer_answers_429(make_agent, collector):
    collector.policy = lambda record: make_response(action="hang", hang_timeout=5)
    agent = make_agent({"backend": backend(collector, timeout_ms=3000, max_in_flight=1),
                        "buffer": {"max_bytes": "65536"}, "events": {"max_event_bytes": "8192"},
                        "batch": {"max_age_ms": "20", "max_bytes": "16384"},
                        "relay": {"listen": "127.0.0.1:0"}})
    big = {"event": "project:created", "properties": {"pad": "x" * 2000}}
    with connect(agent) as s:
        s.setblocking(False)
        try:
            for i in range(200):
                s.send(msgpack.packb(big))
        except BlockingIOError:
            pass  # the agent stopped reading: the buffer is full
        time.sleep(0.5)
        status, headers, answer = post(agent, EVENT)
    assert status == 429 and headers["retry-after"] == "1" and "buffer" in answer["error"]
    collector.policy = None
    agent.stop(timeout=30)


def test_cors_preflight_and_origins(make_agent, collector):
    agent = relay_agent(make_agent, collector,
                        cors_origins="https://app.example, http://localhost:3000")
    status, headers, _ = post(agent, None, None, method="OPTIONS", headers={
        "Origin": "http://localhost:3000", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type"})
    assert status == 204
    assert headers["access-control-allow-origin"] == "http://localhost:3000"
    assert headers["access-control-allow-methods"] == "POST, OPTIONS"
    assert "Content-Type" in headers["access-control-allow-headers"]
    assert headers["access-control-max-age"] == "86400" and headers["vary"] == "Origin"
    assert "access-control-allow-credentials" not in headers
    status, headers, _ = post(agent, None, None, method="OPTIONS",
                              headers={"Origin": "https://evil.example"})
    assert status == 403 and "access-control-allow-origin" not in headers
    status, headers, _ = post(agent, EVENT, headers={"Origin": "https://app.example"})
    assert status == 202 and headers["access-control-allow-origin"] == "https://app.example"
    assert post(agent, EVENT, headers={"Origin": "https://evil.example"})[0] == 403
    agent.stop()
    assert agent.stats()["received_http"] == 1


CORS_HEADERS = ("access-control-allow-origin", "access-control-expose-headers",
                "access-control-allow-methods", "access-control-allow-headers",
                "access-control-max-age", "vary")


def test_without_cors_origins_only_the_relays_own_origin_may_post(make_agent, collector):
    agent = relay_agent(make_agent, collector)
    host = urllib.parse.urlsplit(agent.relay_url()).netloc
    # same-origin: browsers need no CORS headers for it, and none are sent
    status, headers, _ = post(agent, EVENT, headers={"Origin": f"http://{host}"})
    assert status == 202 and not [h for h in CORS_HEADERS if h in headers], headers
    status, headers, _ = post(agent, EVENT, headers={"Origin": "http://other.example"})
    assert status == 403 and not [h for h in CORS_HEADERS if h in headers], headers
    # no preflight is answered for any origin
    status, headers, _ = post(agent, None, None, method="OPTIONS", headers={
        "Origin": "http://other.example", "Access-Control-Request-Method": "POST"})
    assert status == 403 and not [h for h in CORS_HEADERS if h in headers], headers
    status, headers, _ = post(agent, None, None, method="OPTIONS",
                              headers={"Origin": f"http://{host}"})
    assert status == 204 and headers["allow"] == "POST, OPTIONS"
    assert not [h for h in CORS_HEADERS if h in headers], headers
    status, headers, _ = post(agent, EVENT)  # no Origin: not a browser page, no CORS at all
    assert status == 202 and not [h for h in CORS_HEADERS if h in headers], headers
    collector.wait_for_events(2, timeout=10)
    agent.stop()
    assert agent.stats()["received_http"] == 2


def test_a_listed_relay_gives_its_own_origin_no_cors_headers(make_agent, collector):
    agent = relay_agent(make_agent, collector, cors_origins="https://app.example")
    host = urllib.parse.urlsplit(agent.relay_url()).netloc
    status, headers, _ = post(agent, EVENT, headers={"Origin": f"http://{host}"})
    assert status == 202 and not [h for h in CORS_HEADERS if h in headers], headers
    status, headers, _ = post(agent, EVENT, headers={"Origin": "https://app.example"})
    assert status == 202 and headers["access-control-allow-origin"] == "https://app.example"
    assert headers["vary"] == "Origin" and headers["access-control-expose-headers"] == "Retry-After"
    agent.stop()


def test_the_relay_listener_is_bounded_and_cannot_stall_the_agent(make_agent, collector):
    agent = relay_agent(make_agent, collector, max_connections=4, timeout_ms=1500)
    u = urllib.parse.urlsplit(agent.relay_url())
    # headers past the bound are refused; the relay goes on
    assert post(agent, EVENT, headers={"X-Big": "x" * 20000})[0] in (400, 413, 431)
    assert post(agent, EVENT)[0] == 202
    # two idle connections, one trickling its headers and one its body (a
    # byte every 100 ms) fill every slot ...
    idle = [socket.create_connection((u.hostname, u.port)) for _ in range(2)]
    slow_headers = socket.create_connection((u.hostname, u.port))
    opened = time.monotonic()
    slow_headers.sendall(f"POST {u.path} HTTP/1.1\r\n".encode())
    slow_body = socket.create_connection((u.hostname, u.port))
    slow_body.sendall(f"POST {u.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Content-Length: 1000\r\n\r\n".encode())
    # ... socket producers are served all the while
    with connect(agent) as s:
        for i in range(10):
            s.sendall(msgpack.packb(dict(EVENT, chunk=f"c{i}")))
            slow_headers.sendall(b"X")
            slow_body.sendall(b" ")
            time.sleep(0.1)
        s.shutdown(socket.SHUT_WR)
        assert read_until_closed(s) == [{"ack": f"c{i}"} for i in range(10)]
    # a fifth connection waits for a free slot: no answer while all four are held
    body = json.dumps(EVENT).encode()
    waiting = socket.create_connection((u.hostname, u.port))
    waiting.sendall(f"POST {u.path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
    assert read_within(waiting, 0.3) == b"", "more connections were served than the bound"
    # the idle ones time out (relay.timeout_ms), and then it is answered
    for s in idle:
        assert read_to_close(s, timeout=5) == b""  # closed by the agent
    answer = read_to_close(waiting)
    assert answer.startswith(b"HTTP/1.1 202") and b'"accepted":1' in answer, answer
    # clients that trickle a byte now and then are cut at three timeouts (4.5 s)
    for slow in (slow_headers, slow_body):
        slow.settimeout(0.05)
        closed = False
        while not closed and time.monotonic() - opened < 10:
            try:
                slow.sendall(b" ")
                closed = slow.recv(1000) == b"" or closed
            except socket.timeout:
                time.sleep(0.5)
            except OSError:
                closed = True
        assert closed, "a trickling client kept its connection"
    for s in idle + [slow_headers, slow_body, waiting]:
        s.close()
    assert post(agent, EVENT)[0] == 202  # and the relay serves again
    collector.wait_for_events(13, timeout=10)
    agent.stop()
    stats = agent.stats()
    assert stats["received_http"] == 3 and stats["received_native"] == 10
