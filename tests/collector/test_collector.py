"""Tests for the fake backend in collector.py.

Run: /usr/bin/python3 -m pytest -q tests/collector/test_collector.py
"""

import gzip
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from collector import Collector  # noqa: E402


@pytest.fixture
def backend():
    with Collector() as c:
        yield c


def send(port, method="POST", path="/batch", body=None, headers=None, timeout=5,
         conn=None):
    """One request via http.client; returns (status, headers, body bytes).

    Uses (and leaves open) `conn` if given, else a fresh connection it closes.
    """
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        if own:
            conn.close()


def post_json(port, value, **kwargs):
    return send(port, body=json.dumps(value).encode(),
                headers={"Content-Type": "application/json"}, **kwargs)


def batch(*names):
    return {"api_key": "phc_test", "batch": [{"event": name} for name in names]}


def test_gzip_json_post_is_recorded_decompressed(backend):
    payload = batch("gz1", "gz2")
    raw = json.dumps(payload).encode()
    compressed = gzip.compress(raw)
    request = urllib.request.Request(
        backend.url, data=compressed, method="POST",
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200
        assert json.loads(response.read()) == {"status": 1}

    [record] = backend.requests()
    assert record["method"] == "POST"
    assert record["path"] == "/batch"
    assert record["headers"]["content-encoding"] == "gzip"
    assert record["body_length"] == len(compressed)
    assert record["body"] == raw
    assert record["body_error"] is None
    assert record["json"] == payload
    assert record["json_error"] is None
    assert record["response"]["status"] == 200
    assert backend.events() == payload["batch"]


def test_plain_json_post_is_recorded(backend):
    before = time.monotonic()
    body = json.dumps(batch("plain")).encode()
    status, _, _ = send(backend.port, body=body,
                        headers={"Content-Type": "application/json", "X-Custom": "yes"})
    assert status == 200

    [record] = backend.requests()
    assert record["headers"]["content-type"] == "application/json"
    assert record["headers"]["x-custom"] == "yes"
    assert all(name == name.lower() for name in record["headers"])
    assert record["body_length"] == len(body)
    assert record["body"] == body
    assert record["chunked"] is False
    assert record["json"] == batch("plain")
    assert before <= record["received_at"] <= time.monotonic()
    assert record["seq"] == 1


def test_undecodable_bodies_are_recorded_not_raised(backend):
    status, _, _ = send(backend.port, body=b"definitely not gzip",
                        headers={"Content-Encoding": "gzip"})
    assert status == 200
    status, _, _ = send(backend.port, body=b"{not json")
    assert status == 200

    bad_gzip, bad_json = backend.requests()
    assert "gzip" in bad_gzip["body_error"]
    assert bad_gzip["body"] is None and bad_gzip["json"] is None
    assert bad_json["body_error"] is None
    assert bad_json["body"] == b"{not json"
    assert bad_json["json"] is None
    assert "invalid JSON" in bad_json["json_error"]
    assert backend.events() == []


def test_plan_503_twice_then_200(backend):
    backend.plan(status=503, count=2)
    statuses = [post_json(backend.port, batch(f"e{i}"))[0] for i in range(3)]
    assert statuses == [503, 503, 200]
    assert [r["response"]["status"] for r in backend.requests()] == [503, 503, 200]
    # Only the accepted (2xx) request contributes events.
    assert backend.events() == [{"event": "e2"}]
    assert backend.pending() == 0


def test_plans_are_consumed_in_order(backend):
    backend.plan(status=500)
    backend.plan(status=502, count=2)
    statuses = [post_json(backend.port, batch("x"))[0] for _ in range(4)]
    assert statuses == [500, 502, 502, 200]


def test_429_carries_retry_after(backend):
    backend.plan(status=429, count=1, retry_after="2")
    status, headers, _ = post_json(backend.port, batch("limited"))
    assert status == 429
    assert headers["Retry-After"] == "2"
    assert backend.requests()[0]["response"]["retry_after"] == "2"

    status, headers, _ = post_json(backend.port, batch("limited"))
    assert status == 200
    assert headers.get("Retry-After") is None


def test_400_with_json_body(backend):
    error = {"type": "validation_error", "detail": "bad batch"}
    backend.plan(status=400, body=error)
    status, headers, body = post_json(backend.port, batch("bad"))
    assert status == 400
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == error
    assert json.loads(backend.requests()[0]["response"]["body"]) == error


def test_close_drops_connection_without_response(backend):
    backend.plan(action="close")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError)):
        post_json(backend.port, batch("dropped"))
    [record] = backend.requests()
    assert record["json"] == batch("dropped")  # the request was fully read
    assert record["response"]["action"] == "close"
    assert backend.events() == []
    assert post_json(backend.port, batch("retry"))[0] == 200


def test_hang_does_not_block_other_connections(backend):
    backend.plan(action="hang")
    outcome = {}

    def hung_client():
        try:
            outcome["result"] = post_json(backend.port, batch("hung"), timeout=1)
        except Exception as exc:  # noqa: BLE001 -- recorded for the assertion below
            outcome["error"] = exc

    started = time.monotonic()
    thread = threading.Thread(target=hung_client)
    thread.start()
    backend.wait_for_requests(1, timeout=2)

    status, _, _ = post_json(backend.port, batch("concurrent"), timeout=2)
    assert status == 200
    assert thread.is_alive(), "hung request was answered"

    thread.join(timeout=3)
    assert isinstance(outcome.get("error"), (TimeoutError, socket.timeout))
    assert time.monotonic() - started < 2.5
    assert [r["response"]["action"] for r in backend.requests()] == ["hang", "respond"]
    assert backend.events() == [{"event": "concurrent"}]


def test_stop_releases_hung_requests_quickly():
    c = Collector().start()
    c.plan(action="hang")
    errors = []

    def hung_client():
        try:
            post_json(c.port, batch("hung"), timeout=10)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=hung_client)
    thread.start()
    c.wait_for_requests(1, timeout=2)
    started = time.monotonic()
    c.stop()
    thread.join(timeout=3)
    assert time.monotonic() - started < 1.5
    assert not thread.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], ConnectionError)


def test_keep_alive_two_requests_on_one_connection(backend):
    conn = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=5)
    try:
        first = send(backend.port, body=json.dumps(batch("k1")), conn=conn)
        sock = conn.sock
        second = send(backend.port, body=json.dumps(batch("k2")), conn=conn)
        assert conn.sock is sock  # http.client did not reconnect
    finally:
        conn.close()
    assert first[0] == second[0] == 200
    records = backend.requests()
    assert [r["json"]["batch"][0]["event"] for r in records] == ["k1", "k2"]
    assert records[0]["connection"] == records[1]["connection"]


def test_chunked_request_body_is_decoded(backend):
    pieces = [b'{"api_key": "phc_test", ', b'"batch": [{"event": "chunky"}]', b"}"]
    conn = http.client.HTTPConnection("127.0.0.1", backend.port, timeout=5)
    try:
        conn.request("POST", "/batch", body=iter(pieces), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        response = conn.getresponse()
        assert response.status == 200
        response.read()
        # The chunked framing must be consumed exactly: keep-alive still works.
        assert send(backend.port, body=b"{}", conn=conn)[0] == 200
    finally:
        conn.close()

    chunked, plain = backend.requests()
    assert chunked["chunked"] is True
    assert chunked["headers"]["transfer-encoding"] == "chunked"
    assert chunked["body"] == b"".join(pieces)
    assert chunked["body_length"] == len(b"".join(pieces))
    assert chunked["json"] == batch("chunky")
    assert plain["json"] == {} and plain["connection"] == chunked["connection"]


def test_http_control_endpoints(backend):
    status, _, body = send(backend.port, path="/_control/plan",
                           body=json.dumps({"status": 503, "count": 1}))
    assert status == 200 and json.loads(body) == {"ok": True, "pending": 1}
    assert post_json(backend.port, batch("c1"))[0] == 503
    assert post_json(backend.port, batch("c2"))[0] == 200

    status, _, body = send(backend.port, method="GET", path="/_control/requests")
    assert status == 200
    recorded = json.loads(body)
    # Control requests themselves are not recorded.
    assert [r["response"]["status"] for r in recorded] == [503, 200]
    assert json.loads(recorded[1]["body"]) == batch("c2")
    assert recorded[1]["headers"]["content-type"] == "application/json"

    status, _, body = send(backend.port, method="GET", path="/_control/events")
    assert json.loads(body) == [{"event": "c2"}]

    status, _, body = send(backend.port, path="/_control/plan",
                           body=json.dumps({"action": "explode"}))
    assert status == 400 and "action" in json.loads(body)["error"]
    status, _, _ = send(backend.port, path="/_control/plan", body=json.dumps({"bogus": 1}))
    assert status == 400
    assert backend.pending() == 0

    assert send(backend.port, path="/_control/clear")[0] == 200
    assert backend.requests() == []
    assert send(backend.port, method="GET", path="/_control/nope")[0] == 404


def test_wait_for_times_out_with_clear_message(backend):
    post_json(backend.port, batch("only"))
    with pytest.raises(AssertionError, match=r"(?s)timed out after 0.2s.*2 request.*#1 POST /batch"):
        backend.wait_for_requests(2, timeout=0.2)
    records = backend.wait_for(lambda rs: rs and rs[0]["json"] == batch("only"), timeout=1)
    assert len(records) == 1


def test_wait_for_wakes_up_on_new_request(backend):
    timer = threading.Timer(0.1, post_json, args=(backend.port, batch("late")))
    timer.start()
    try:
        assert backend.wait_for_events(1, timeout=3) == [{"event": "late"}]
    finally:
        timer.join()


def test_wait_idle_returns_once_every_connection_is_answered_and_closed(backend):
    backend.wait_idle(quiet=0.05, timeout=1)  # nothing open: at once
    backend.plan(status=503)
    conn = socket.create_connection(("127.0.0.1", backend.port))
    body = json.dumps(batch("late")).encode()
    conn.sendall(b"POST /batch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
                 + body)
    conn.close()  # gone before its answer, as a killed client
    with pytest.raises(AssertionError, match="still open"):
        with socket.create_connection(("127.0.0.1", backend.port)):
            backend.wait_idle(quiet=0.05, timeout=0.3)
    backend.wait_idle(quiet=0.2, timeout=5)
    assert [r["response"]["status"] for r in backend.requests()] == [503]
    assert backend.events() == []


def test_restart_keeps_port_and_stop_refuses_connections():
    c = Collector().start()
    port = c.port
    c.stop()
    with pytest.raises(ConnectionRefusedError):
        send(port, method="GET", path="/batch", timeout=1)
    with c:
        assert c.port == port
        assert c.url == f"http://127.0.0.1:{port}/batch"
        assert send(port, method="GET", path="/batch")[0] == 200


def test_script_mode(tmp_path):
    port_file = tmp_path / "port"
    process = subprocess.Popen(
        ["/usr/bin/python3", os.path.join(HERE, "collector.py"),
         "--port", "0", "--port-file", str(port_file)],
        stdout=subprocess.PIPE, text=True)
    try:
        printed = int(process.stdout.readline())
        assert int(port_file.read_text()) == printed
        assert post_json(printed, batch("script"))[0] == 200
        status, _, body = send(printed, method="GET", path="/_control/events")
        assert status == 200 and json.loads(body) == [{"event": "script"}]
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()
