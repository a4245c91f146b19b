#!/usr/bin/python3
"""Fake PostHog-compatible backend for the agent's integration tests.

It accepts HTTP/1.1 requests (keep-alive, Content-Length or chunked bodies,
optional gzip), records every one of them, and answers with 200
{"status": 1} unless told otherwise.  Standard library only (Python 3.11).

As a module (pytest):

    from collector import Collector
    with Collector() as c:                 # or c = Collector().start() ... c.stop()
        c.plan(status=503, count=2)        # next 2 requests get 503, then 200 again
        c.plan(status=429, retry_after="2")
        c.plan(action="hang")              # read the request, never answer
        c.plan(action="close")             # read the request, drop the connection
        ... point the agent at c.url ...
        c.wait_for_requests(3, timeout=5)
        assert [e["event"] for e in c.events()] == [...]

As a script (e.g. from a shell-driven test):

    /usr/bin/python3 collector.py --port 0 --port-file /tmp/port
    # prints the bound port, runs until SIGTERM/SIGINT.  Control it over HTTP:
    #   POST /_control/plan      {"status": 503, "count": 2}  (or a list of these)
    #   GET  /_control/requests  recorded requests as JSON
    #   GET  /_control/events    events of all 2xx-answered requests
    #   POST /_control/clear     forget recordings and pending plans

Requests under /_control/ are never recorded and never consume a plan.
"""

import argparse
import dataclasses
import gzip
import http.server
import json
import os
import signal
import socket
import sys
import threading
import time
import zlib
from urllib.parse import urlsplit

CONTROL_PREFIX = "/_control/"
ACTIONS = ("respond", "hang", "close")
DEFAULT_OK_BODY = b'{"status": 1}'
MAX_LINE = 65536


@dataclasses.dataclass(frozen=True)
class Response:
    """One way of answering a request (see Collector.plan)."""

    action: str = "respond"
    status: int = 200
    body: bytes = DEFAULT_OK_BODY
    retry_after: str | None = None
    headers: tuple = ()  # extra (name, value) response headers
    content_type: str = "application/json"
    hang_timeout: float | None = None  # None: the collector's default
    delay: float = 0.0  # respond: wait this long first

    def describe(self):
        """The JSON-friendly summary stored in a request record."""
        if self.action != "respond":
            return {"action": self.action, "status": None, "body": None, "retry_after": None}
        return {
            "action": "respond",
            "status": self.status,
            "body": self.body.decode("utf-8", "replace"),
            "retry_after": self.retry_after,
        }


DEFAULT_RESPONSE = Response()


def make_response(status=200, *, body=None, retry_after=None, action="respond",
                  headers=None, content_type="application/json", hang_timeout=None, delay=0.0):
    """Validate plan() arguments and build a Response."""
    if action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS}, not {action!r}")
    if not isinstance(status, int) or not 200 <= status <= 599:
        raise ValueError(f"status must be an int in 200..599, not {status!r}")
    if body is None:
        body = DEFAULT_OK_BODY if 200 <= status < 300 else b""
    elif isinstance(body, str):
        body = body.encode()
    elif not isinstance(body, bytes):
        body = json.dumps(body).encode()
    return Response(
        action=action,
        status=status,
        body=body,
        retry_after=None if retry_after is None else str(retry_after),
        headers=tuple((headers or {}).items()),
        content_type=content_type,
        hang_timeout=hang_timeout,
        delay=delay,
    )


@dataclasses.dataclass
class _PlanEntry:
    response: Response
    remaining: int


class _BodyError(Exception):
    """The request body could not be framed (bad chunking, short read...)."""


def _read_exact(rfile, size):
    data = rfile.read(size)
    if len(data) != size:
        raise _BodyError(f"connection closed after {len(data)} of {size} body bytes")
    return data


def _read_chunked(rfile):
    parts = []
    while True:
        line = rfile.readline(MAX_LINE)
        if not line.endswith(b"\n"):
            raise _BodyError(f"truncated chunk-size line {line!r}")
        size_field = line.split(b";", 1)[0].strip()  # drop chunk extensions
        try:
            size = int(size_field, 16)
        except ValueError:
            raise _BodyError(f"bad chunk size {size_field!r}") from None
        if size < 0:
            raise _BodyError(f"bad chunk size {size_field!r}")
        if size == 0:
            break
        parts.append(_read_exact(rfile, size))
        if rfile.readline(MAX_LINE).rstrip(b"\r\n") != b"":
            raise _BodyError("chunk data not followed by CRLF")
    while rfile.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
        pass  # skip trailer fields
    return b"".join(parts)


def read_body(rfile, headers):
    """Return (raw_body, chunked) for a request, raising _BodyError on bad framing."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        return _read_chunked(rfile), True
    length_field = headers.get("Content-Length", "0").strip()
    if not length_field.isdigit():
        raise _BodyError(f"bad Content-Length {length_field!r}")
    return _read_exact(rfile, int(length_field)), False


def decode_body(raw, content_encoding):
    """Return (body, error): the gunzipped body, or None and why it failed."""
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw, None
    if encoding not in ("gzip", "x-gzip"):
        return None, f"unsupported Content-Encoding {content_encoding!r}"
    try:
        return gzip.decompress(raw), None
    except (OSError, EOFError, zlib.error) as exc:
        return None, f"gzip decompression failed: {exc}"


def parse_json(body):
    """Return (value, error) for json.loads(body)."""
    if body is None:
        return None, "body not available"
    try:
        return json.loads(body), None
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        return None, f"invalid JSON: {exc}"


def events_of(records):
    """Flatten the `batch` lists of all requests answered with a 2xx status."""
    events = []
    for record in records:
        status = record["response"]["status"]
        payload = record["json"]
        if status and 200 <= status < 300 and isinstance(payload, dict):
            batch = payload.get("batch")
            if isinstance(batch, list):
                events.extend(batch)
    return events


def record_to_json(record):
    """A copy of a record that json.dumps accepts (the body becomes text)."""
    result = dict(record)
    if result["body"] is not None:
        result["body"] = result["body"].decode("utf-8", "replace")
    return result


def _summarize(records, limit=20):
    lines = [
        f"  #{r['seq']} {r['method']} {r['path']} -> "
        f"{r['response']['status'] or r['response']['action']}"
        for r in records[-limit:]
    ]
    return "\n".join(lines) if lines else "  (none)"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TelemetryTestCollector/1"
    # Headers and body go out in two writes: with Nagle's algorithm the body
    # waits for the client's delayed ACK (40 ms a response on keep-alive).
    disable_nagle_algorithm = True

    @property
    def collector(self):
        return self.server.collector

    def setup(self):
        super().setup()
        self.connection_id = self.collector._connection_opened(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.collector._connection_closed(self.connection)

    def log_message(self, format, *args):  # noqa: A002 (signature from base class)
        if self.collector.verbose:
            sys.stderr.write(f"collector: {self.address_string()} {format % args}\n")

    def handle_any(self):
        try:
            raw, chunked = read_body(self.rfile, self.headers)
            framing_error = None
        except _BodyError as exc:
            raw, chunked, framing_error = b"", False, str(exc)

        if self.path.startswith(CONTROL_PREFIX):
            self.handle_control(raw, framing_error)
            return

        record = self._make_record(raw, chunked, framing_error)
        if framing_error:
            self.close_connection = True
            response = make_response(400, body={"error": framing_error})
        else:
            response = self.collector._next_response(record)
        record["response"] = response.describe()
        self.collector._record(record)
        self.perform(response)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any

    def _make_record(self, raw, chunked, framing_error):
        body, body_error = decode_body(raw, self.headers.get("Content-Encoding", ""))
        if framing_error:
            body, body_error = None, f"bad request framing: {framing_error}"
        parsed, json_error = parse_json(body)
        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        return {
            "method": self.command,
            "path": self.path,
            "headers": headers,
            "body_length": len(raw),
            "chunked": chunked,
            "body": body,
            "body_error": body_error,
            "json": parsed,
            "json_error": json_error,
            "received_at": time.monotonic(),
            "connection": self.connection_id,
        }

    def perform(self, response):
        if response.action == "close":
            self.close_connection = True  # socketserver closes it, nothing sent
        elif response.action == "hang":
            timeout = response.hang_timeout
            if timeout is None:
                timeout = self.collector.hang_timeout
            self.collector._stopping.wait(timeout)
            self.close_connection = True
        else:
            if response.delay > 0:
                self.collector._stopping.wait(response.delay)
            headers = list(response.headers)
            if response.retry_after is not None:
                headers.append(("Retry-After", response.retry_after))
            self.send(response.status, response.body, headers, response.content_type)

    def send(self, status, body, headers=(), content_type="application/json"):
        has_body = status not in (204, 304)
        self.send_response(status)
        if has_body:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        if has_body and self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, status, value):
        self.send(status, json.dumps(value).encode())

    def handle_control(self, raw, framing_error):
        if framing_error:
            self.close_connection = True
            self.send_json(400, {"error": framing_error})
            return
        route = (self.command, urlsplit(self.path).path)
        collector = self.collector
        if route == ("GET", "/_control/requests"):
            self.send_json(200, [record_to_json(r) for r in collector.requests()])
        elif route == ("GET", "/_control/events"):
            self.send_json(200, collector.events())
        elif route == ("POST", "/_control/clear"):
            collector.clear()
            self.send_json(200, {"ok": True})
        elif route == ("POST", "/_control/plan"):
            try:
                entries = json.loads(raw)
                if isinstance(entries, dict):
                    entries = [entries]
                if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
                    raise ValueError("expected a JSON object or a list of objects")
                for entry in entries:
                    collector.plan(**entry)
            except (TypeError, ValueError) as exc:
                self.send_json(400, {"error": str(exc)})
                return
            self.send_json(200, {"ok": True, "pending": collector.pending()})
        else:
            self.send_json(404, {"error": f"no control endpoint {route[0]} {route[1]}"})


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Peers resetting connections (and stop() shutting them down) are normal here.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class Collector:
    """The fake backend.  Every public method is safe to call from any thread."""

    def __init__(self, host="127.0.0.1", port=0, path="/batch", hang_timeout=60.0,
                 verbose=False, tls=None):
        self.host = host
        self.tls = tls  # an ssl.SSLContext: serve HTTPS
        self.port = port  # the real port once started; kept across stop()/start()
        self.path = path
        self.hang_timeout = hang_timeout
        self.verbose = verbose
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._generation = 0  # bumped on every change waiters may care about
        self._records = []
        self._plans = []
        self._connections = set()
        self._connection_count = 0
        self._stopping = threading.Event()  # hung handlers wait on this
        self._server = None
        self._thread = None
        # When no plan covers a request: policy(record) -> Response or None
        # (None: 200), e.g. a status that depends on the batch's size.
        self.policy = None
        # counting: keep no bodies (a million events would not fit in a
        # test's memory); events_of() then sees only what count_event keeps.
        self.count_event = None  # count_event(event) -> small value to keep

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        """Bind and serve in a daemon thread.  Restarting reuses the same port."""
        if self._server is not None:
            raise RuntimeError("collector already started")
        self._stopping.clear()
        server = _Server((self.host, self.port), _Handler)
        server.collector = self
        if self.tls is not None:
            server.socket = self.tls.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05},
            name=f"collector-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        """Stop serving, release hung requests and drop open connections."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            self._stopping.set()
            self._bump_locked()
            connections = list(self._connections)
        if server is None:
            return
        server.shutdown()
        server.server_close()
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed
        thread.join(timeout=5)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def base_url(self):
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    @property
    def url(self):
        return self.base_url + self.path

    # -- planned responses -------------------------------------------------

    def plan(self, status=200, *, count=1, body=None, retry_after=None, action="respond",
             headers=None, content_type="application/json", hang_timeout=None):
        """Answer the next `count` requests this way, after earlier plans run out.

        action: "respond" (status/body/retry_after/headers), "hang" (never
        answer until stop() or hang_timeout seconds) or "close" (drop the
        connection without a response).  body may be bytes, str or a
        JSON-serializable value; it defaults to {"status": 1} for 2xx and to
        empty otherwise.
        """
        if not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive int, not {count!r}")
        response = make_response(status, body=body, retry_after=retry_after, action=action,
                                 headers=headers, content_type=content_type,
                                 hang_timeout=hang_timeout)
        with self._lock:
            self._plans.append(_PlanEntry(response, count))

    def pending(self):
        """How many requests are still covered by plans."""
        with self._lock:
            return sum(entry.remaining for entry in self._plans)

    def _next_response(self, record):
        with self._lock:
            if not self._plans:
                policy = self.policy
                answer = policy(record) if policy is not None else None
                return answer if answer is not None else DEFAULT_RESPONSE
            entry = self._plans[0]
            entry.remaining -= 1
            if entry.remaining == 0:
                self._plans.pop(0)
            return entry.response

    # -- recordings --------------------------------------------------------

    def _bump_locked(self):
        self._generation += 1
        self._changed.notify_all()

    def _record(self, record):
        if self.count_event is not None:
            batch = record["json"].get("batch") if isinstance(record["json"], dict) else None
            record["json"] = {"batch": [self.count_event(e) for e in batch or []]}
            record["body"] = None
        with self._lock:
            record["seq"] = len(self._records) + 1
            self._records.append(record)
            self._bump_locked()

    def _connection_opened(self, sock):
        with self._lock:
            self._connections.add(sock)
            self._connection_count += 1
            self._bump_locked()
            return self._connection_count

    def _connection_closed(self, sock):
        with self._lock:
            self._connections.discard(sock)
            self._bump_locked()

    def requests(self):
        """Snapshot of the recorded requests, oldest first (treat as read-only)."""
        with self._lock:
            return list(self._records)

    def events(self):
        """All events from the `batch` lists of requests answered with 2xx."""
        return events_of(self.requests())

    def clear(self):
        """Forget recorded requests and pending plans."""
        with self._lock:
            self._records.clear()
            self._plans.clear()
            self._bump_locked()

    def wait_for(self, predicate, timeout=5.0, what=None):
        """Block until predicate(requests()) is true and return that snapshot.

        Raises AssertionError describing what was received on timeout.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                generation = self._generation
                snapshot = list(self._records)
            if predicate(snapshot):
                return snapshot
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                what = what or getattr(predicate, "__name__", repr(predicate))
                raise AssertionError(
                    f"collector: timed out after {timeout}s waiting for {what}; "
                    f"{len(snapshot)} request(s) recorded:\n{_summarize(snapshot)}")
            with self._changed:
                self._changed.wait_for(lambda: self._generation != generation, remaining)

    def wait_idle(self, quiet=0.3, timeout=10.0):
        """Block until no connection has been open for `quiet` seconds.

        Every request a client sent before the call (a client killed a
        moment ago, say) is then answered and recorded, under the plans and
        policy of that moment.  A connection still in the listen queue is
        taken up within the accept loop's poll (50 ms), well inside `quiet`.
        """
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                generation = self._generation
                if not self._connections:
                    if not self._changed.wait_for(lambda: self._generation != generation, quiet):
                        return
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"collector: {len(self._connections)} connection(s) "
                                         f"still open after {timeout}s")
                self._changed.wait_for(lambda: self._generation != generation, remaining)

    def wait_for_requests(self, n, timeout=5.0):
        """Block until at least n requests are recorded; return the snapshot."""
        return self.wait_for(lambda records: len(records) >= n, timeout,
                             what=f"at least {n} request(s)")

    def wait_for_events(self, n, timeout=5.0):
        """Block until at least n events were accepted (2xx); return events()."""
        snapshot = self.wait_for(lambda records: len(events_of(records)) >= n, timeout,
                                 what=f"at least {n} accepted event(s)")
        return events_of(snapshot)


def _write_atomically(path, text):
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description="Fake PostHog backend for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="also write the bound port to this file")
    parser.add_argument("--path", default="/batch", help="path used to build the URL")
    parser.add_argument("--hang-timeout", type=float, default=60.0)
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    args = parser.parse_args(argv)

    # Block the stop signals before any thread exists so that only sigwait sees them.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    collector = Collector(args.host, args.port, args.path, args.hang_timeout,
                          args.verbose).start()
    if args.port_file:  # written before printing, so either one signals readiness
        _write_atomically(args.port_file, f"{collector.port}\n")
    print(collector.port, flush=True)
    signal.sigwait(stop_signals)
    collector.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
