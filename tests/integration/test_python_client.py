"""
The Python producer client (client/python/telemetry_client.py) against a
fake agent written here: a Unix socket server in a thread that records every
msgpack object of every connection and answers chunks as each test says.

Covers the encoder (round trips through python3-msgpack), the queue bound
and drop counting, short writes and resets in the middle of an event,
reliable mode (resend after a close, after the ack timeout, rejections,
replies split anyhow), the agent's last {"error": ...} reply (an event given
up only for an error about a message, never for a close without one, a
max_connections refusal or no_memory), thread and fork safety, never
blocking and never raising whatever the other end does.
"""
import ast
import collections
import datetime
import enum
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import types
import uuid

import msgpack
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT_DIR = os.path.join(os.path.dirname(os.path.dirname(HERE)), "client", "python")
sys.path.insert(0, CLIENT_DIR)

import telemetry_client as tc  # noqa: E402

LOOSE = 0.5  # "returns at once", on a noisy machine (the promise is < 50 ms)


# -- the fake agent ----------------------------------------------------------

class Conn:
    """What one connection carried: whole objects, and bytes left over."""

    def __init__(self, sock):
        self.sock = sock
        self.objects = []
        self.leftover = b""
        self.pid = struct.unpack("3i", sock.getsockopt(
            socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))[0]
        self.closed = threading.Event()


def error_reply(reason, detail="fake agent"):
    return msgpack.packb({"error": reason, "detail": detail})


class FakeAgent:
    """reply(agent, conn_index, obj) returns bytes to send back (or None);
    the default acks every chunk. on_object may close the connection by
    returning "close", or a reason (str) to close it after the error reply
    {"error": reason, ...} as the real agent does. close_on: bytes that make
    it close the connection at once (after close_error's reply, if given).
    greet(agent, conn_index): None serves the connection; bytes are written
    (b"": nothing) and it is closed at once, unread (max_connections).
    read_size/read_delay make a slow reader."""

    def __init__(self, reply=None, on_object=None, read_size=65536, read_delay=0.0,
                 rcvbuf=None, accept=True, reading=True, close_on=None, close_error=None,
                 greet=None):
        self.dir = tempfile.mkdtemp(prefix="tc-")
        self.path = os.path.join(self.dir, "agent.sock")
        self.reply = reply if reply is not None else ack_all
        self.on_object = on_object
        self.read_size = read_size
        self.read_delay = read_delay
        self.rcvbuf = rcvbuf
        self.close_on = close_on  # bytes that make it close the connection at once
        self.close_error = close_error
        self.greet = greet
        self.conns = []
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.stopping = False
        self.reading = threading.Event()
        if reading:
            self.reading.set()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(64)
        self.threads = []
        if accept:
            self._spawn(self._accept_loop)

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def _accept_loop(self):
        self.listener.settimeout(0.05)
        while not self.stopping:
            try:
                s, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.setblocking(True)
            if self.rcvbuf:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            with self.lock:
                conn = Conn(s)
                index = len(self.conns)
                self.conns.append(conn)
                self.changed.notify_all()
            self._spawn(self._serve, conn, index)

    def _serve(self, conn, index):
        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
        s = conn.sock
        s.settimeout(0.1)
        greeting = self.greet(self, index) if self.greet else None
        if greeting is not None:
            try:
                s.sendall(greeting)
            except OSError:
                pass
            conn.closed.set()
        tail = b""  # close_on may straddle two reads
        try:
            while not self.stopping and not conn.closed.is_set():
                if not self.reading.wait(0.1):
                    continue
                try:
                    data = s.recv(self.read_size)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not data:
                    break
                last_words = None
                if self.close_on:
                    window = tail + data
                    if self.close_on in window:
                        data = data[:max(0, window.index(self.close_on) - len(tail))]
                        conn.closed.set()
                        last_words = self.close_error
                    tail = window[max(0, len(window) - len(self.close_on) + 1):]
                unpacker.feed(data)
                for obj in unpacker:
                    with self.lock:
                        conn.objects.append(obj)
                        self.changed.notify_all()
                    action = self.on_object(self, index, obj) if self.on_object else None
                    if action is not None:
                        conn.closed.set()
                        last_words = None if action == "close" else action
                        break
                    out = self.reply(self, index, obj)
                    try:
                        if out:
                            s.sendall(out)
                    except OSError:
                        pass  # the client went away: still record what it wrote
                if last_words is not None:
                    try:
                        s.sendall(error_reply(last_words))
                    except OSError:
                        pass
                if self.read_delay:
                    time.sleep(self.read_delay)
        finally:
            rest = bytearray()
            try:
                # the unpacker holds a partial object, if any: read it back out
                rest = unpacker.read_bytes(1 << 30)
            except Exception:
                pass
            with self.lock:
                conn.leftover = bytes(rest)
                conn.closed.set()
                self.changed.notify_all()
            try:
                s.close()
            except OSError:
                pass

    def objects(self):
        with self.lock:
            return [o for c in self.conns for o in c.objects]

    def wait(self, predicate, timeout=10.0, what="condition"):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("fake agent: timed out waiting for %s; conns=%s" % (
                        what, [len(c.objects) for c in self.conns]))
                self.changed.wait(left)

    def wait_last(self, seq, timeout=10.0):
        """Wait until the newest connection's last event has properties.seq == seq."""
        def done(a):
            objects = a.conns[-1].objects if a.conns else []
            return bool(objects) and objects[-1]["properties"]["seq"] == seq
        self.wait(done, timeout, "the event with seq %d last" % seq)
        return self.objects()

    def wait_objects(self, n, timeout=10.0):
        self.wait(lambda a: sum(len(c.objects) for c in a.conns) >= n, timeout,
                  "%d objects" % n)
        return self.objects()

    def close_connections(self):
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            c.closed.set()
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        self.stopping = True
        self.close_connections()
        self.listener.close()
        for t in self.threads:
            t.join(2)
        try:
            os.unlink(self.path)
        except OSError:
            pass


def ack_all(agent, index, obj):
    if isinstance(obj, dict) and "chunk" in obj:
        return msgpack.packb({"ack": obj["chunk"]})
    return None


def no_reply(agent, index, obj):
    return None


@pytest.fixture
def fake():
    agents = []

    def make(**kw):
        a = FakeAgent(**kw)
        agents.append(a)
        return a

    yield make
    for a in agents:
        a.stop()


@pytest.fixture
def clients():
    made = []

    def make(*args, **kw):
        kw.setdefault("atexit_timeout", 0)
        c = tc.Client(*args, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close(0.1)


def check_accounting(stats):
    dropped = sum(stats["dropped"].values())
    assert stats["attempted"] == stats["sent"] + dropped + stats["pending"], stats


def seqs(objects):
    return [o["properties"]["seq"] for o in objects]


def timed(fn, *args, **kw):
    start = time.monotonic()
    result = fn(*args, **kw)
    return result, time.monotonic() - start


# -- encoding ----------------------------------------------------------------

SAMPLES = [
    None, True, False, 0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32,
    2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, -1, -32, -33, -128, -129, -32768, -32769, -2 ** 31,
    -2 ** 31 - 1, -2 ** 63, 0.0, -0.0, 1.5, -2.25e300, 5e-324, float("inf"), float("-inf"),
    "", "a", "a" * 31, "a" * 32, "a" * 255, "a" * 256, "a" * 65535, "a" * 65536,
    "é", "日本語", "😀 emoji", "e\u0301 combining", "\u0000nul", "\uffff",
    b"", b"\x00\xff", b"x" * 255, b"x" * 256, b"x" * 65536,
    [], [1, "two", 3.0, None], list(range(15)), list(range(16)), list(range(65536)),
    {}, {"a": 1}, {str(i): i for i in range(15)}, {str(i): i for i in range(16)},
    {str(i): i for i in range(65536)},
    {"nested": {"list": [{"deep": [1, {"x": [True, None, b"b"]}]}]}},
]


@pytest.mark.parametrize("value", SAMPLES, ids=lambda v: repr(v)[:30])
def test_encoder_matches_msgpack(value):
    data = tc.packb(value)
    assert data == msgpack.packb(value, use_bin_type=True)
    assert msgpack.unpackb(data, raw=False, strict_map_key=False) == value
    assert tc._scan(data) == len(data)


class Level(enum.IntEnum):
    HIGH = 3


class Colour(str, enum.Enum):
    RED = "red"


class Text(str):
    def __str__(self):
        return "not this"


class Items(list):
    pass


def test_encoder_conversions():
    utc = datetime.timezone.utc
    value = {
        "tuple": (1, (2, 3)),
        "dt": datetime.datetime(2026, 11, 28, 12, 0, 0, 123456, tzinfo=utc),
        "dt_whole": datetime.datetime(2026, 11, 28, 12, 0, 0, tzinfo=utc),
        "dt_offset": datetime.datetime(2026, 11, 28, 13, 0, tzinfo=datetime.timezone(
            datetime.timedelta(hours=1))),
        "date": datetime.date(2026, 1, 2),
        "uuid": uuid.UUID("01234567-89ab-7def-8123-456789abcdef"),
        "bytearray": bytearray(b"ab"),
        "memoryview": memoryview(b"cd"),
        1: "int key", None: "none key", (1, 2): "tuple key", "b": {True: "bool key"},
        "sub": {"bool_int": [True, 1, False, 0]},
        "int_enum": Level.HIGH, "str_enum": Colour.RED, "str_sub": Text("sub"),
        "ordered": collections.OrderedDict([("b", 1), ("a", 2)]),
        "mapping": types.MappingProxyType({"m": [1]}), "list_sub": Items([1, 2]),
    }
    got = msgpack.unpackb(tc.packb(value), raw=False)
    assert got == {
        "tuple": [1, [2, 3]],
        "dt": "2026-11-28T12:00:00.123456Z",
        "dt_whole": "2026-11-28T12:00:00Z",
        "dt_offset": "2026-11-28T12:00:00Z",
        "date": "2026-01-02",
        "uuid": "01234567-89ab-7def-8123-456789abcdef",
        "bytearray": b"ab", "memoryview": b"cd",
        "1": "int key", "None": "none key", "(1, 2)": "tuple key", "b": {"True": "bool key"},
        "sub": {"bool_int": [True, 1, False, 0]},
        "int_enum": 3, "str_enum": "red", "str_sub": "sub",
        "ordered": {"b": 1, "a": 2}, "mapping": {"m": [1]}, "list_sub": [1, 2],
    }
    assert type(got["sub"]["bool_int"][0]) is bool and type(got["sub"]["bool_int"][1]) is int


def test_encoder_refuses_what_it_cannot_encode():
    too_deep = []
    inner = too_deep
    for _ in range(tc.MAX_DEPTH):
        inner.append([])
        inner = inner[0]
    cyclic = {}
    cyclic["self"] = cyclic
    for bad in [2 ** 64, -2 ** 63 - 1, "\ud800", {"k": "\udfff"}, object(), {1, 2},
                too_deep, cyclic]:
        with pytest.raises(tc.EncodeError):
            tc.packb(bad)
    just_deep_enough = too_deep[0]
    assert tc._scan(tc.packb(just_deep_enough)) > 0


def test_scanner_finds_boundaries_and_refuses_garbage():
    data = msgpack.packb({"a": [1, 2, {"b": b"x" * 300}]}) + msgpack.packb("next")
    first = len(msgpack.packb({"a": [1, 2, {"b": b"x" * 300}]}))
    assert tc._scan(data) == first
    assert tc._scan(data, first) == len(data)
    for cut in range(first):
        assert tc._scan(data[:cut]) == -1
    with pytest.raises(ValueError):
        tc._scan(b"\xc1")
    with pytest.raises(ValueError):
        tc._scan(b"\x91" * 33 + b"\x00")
    assert tc._scan(b"\x91" * 32 + b"\x00") == 33


def test_uuid7_layout():
    ms = 1_790_000_000_123
    ids = {tc.uuid7(ms) for _ in range(1000)}
    assert len(ids) == 1000
    for text in ids:
        u = uuid.UUID(text)
        assert str(u) == text
        assert u.version == 7
        assert u.variant == uuid.RFC_4122
        assert u.int >> 80 == ms
    now = int(time.time() * 1000)
    assert abs((uuid.UUID(tc.uuid7()).int >> 80) - now) < 5000


def test_module_code_is_python_3_7():
    with open(tc.__file__) as f:
        ast.parse(f.read(), feature_version=(3, 7))


# -- events on the wire ------------------------------------------------------

def test_capture_writes_native_events(fake, clients):
    agent = fake()
    client = clients(agent.path, distinct_id="instance-1")
    before = int(time.time() * 1000)
    assert client.capture("project:created", {"n": 1, "when": datetime.date(2026, 1, 1)})
    after = int(time.time() * 1000)
    given_uuid = str(uuid.uuid4())
    assert client.capture("project:deleted", None, timestamp=1_700_000_000_000, uuid=given_uuid,
                          distinct_id="someone")
    dt = datetime.datetime(2026, 5, 6, 7, 8, 9, 999999, tzinfo=datetime.timezone.utc)
    assert client.capture("project:updated", {}, timestamp=dt, uuid=uuid.UUID(given_uuid))
    assert client.capture("project:updated", timestamp="2026-05-06T07:08:09Z")
    assert client.send_raw(msgpack.packb({"event": "raw:event"}))
    assert client.flush(5)
    first, second, third, fourth, raw = agent.wait_objects(5)
    assert set(first) == {"event", "properties", "timestamp", "uuid", "distinct_id"}
    assert first["event"] == "project:created"
    assert first["properties"] == {"n": 1, "when": "2026-01-01"}
    assert before <= first["timestamp"] <= after
    u = uuid.UUID(first["uuid"])
    assert u.version == 7 and u.int >> 80 == first["timestamp"]
    assert first["distinct_id"] == "instance-1"
    assert second == {"event": "project:deleted", "timestamp": 1_700_000_000_000,
                      "uuid": given_uuid, "distinct_id": "someone"}
    assert third["timestamp"] == int(dt.timestamp()) * 1000 + 999
    assert third["uuid"] == given_uuid and third["properties"] == {}
    assert fourth["timestamp"] == "2026-05-06T07:08:09Z"
    assert raw == {"event": "raw:event"}
    stats = client.stats()
    assert stats["sent"] == stats["written"] == stats["attempted"] == 5
    assert stats["pending"] == 0 and stats["acked"] == 0
    check_accounting(stats)


def test_enum_event_names(fake, clients):
    class Event(enum.Enum):
        PROJECT_CREATED = "project:created"

    class StrEvent(str, enum.Enum):
        PROJECT_DELETED = "project:deleted"

    agent = fake()
    client = clients(agent.path)
    assert client.capture(Event.PROJECT_CREATED)
    assert client.capture(StrEvent.PROJECT_DELETED, {"kind": StrEvent.PROJECT_DELETED})
    got = agent.wait_objects(2)
    assert [o["event"] for o in got] == ["project:created", "project:deleted"]
    assert got[1]["properties"] == {"kind": "project:deleted"}


def test_socket_path_from_environment(fake, monkeypatch):
    agent = fake()
    monkeypatch.setenv("TELEMETRY_SOCKET", agent.path)
    client = tc.Client(atexit_timeout=0)
    assert client.socket_path == agent.path
    client.capture("project:created")
    client.close(5)
    assert len(agent.wait_objects(1)) == 1
    monkeypatch.delenv("TELEMETRY_SOCKET")
    assert tc.Client(atexit_timeout=0).socket_path == tc.DEFAULT_SOCKET == \
        "/run/telemetry/agent.sock"
    assert tc.Client("/x/y.sock", atexit_timeout=0).socket_path == "/x/y.sock"


def test_bad_events_are_counted_not_raised(fake, clients):
    agent = fake()
    client = clients(agent.path, max_event_bytes=2000, queue_bytes=100000)
    deep = {}
    inner = deep
    for _ in range(tc.MAX_DEPTH - 1):  # with the event map and properties: one too many
        inner["d"] = {}
        inner = inner["d"]
    ok_deep = {}
    inner = ok_deep
    for _ in range(tc.MAX_DEPTH - 2):  # exactly MAX_DEPTH levels in all
        inner["d"] = {}
        inner = inner["d"]

    class Weird:
        def __str__(self):
            raise RuntimeError("no")

    invalid = [
        ("", None), ("x" * 201, None), (42, None), (None, None), ("\ud800", None),
        ("project:created", [1, 2]), ("project:created", "props"),
        ("project:created", {"big": 2 ** 64}), ("project:created", {"small": -2 ** 63 - 1}),
        ("project:created", {"s": "\udc80"}), ("project:created", {"o": object()}),
        ("project:created", {"set": {1}}), ("project:created", deep),
        ("project:created", {Weird(): 1}),
    ]
    for event, props in invalid:
        assert client.capture(event, props) is False, (event, props)
    assert client.capture("project:created", uuid="not-a-uuid") is False
    assert client.capture("project:created", timestamp=-1) is False
    assert client.capture("project:created", timestamp=tc.MAX_TIMESTAMP_MS + 1) is False
    assert client.capture("project:created", timestamp=1.5) is False
    assert client.capture("project:created", timestamp=True) is False
    assert client.capture("project:created", distinct_id="") is False
    assert client.capture("project:created", distinct_id="d" * 201) is False
    assert client.send_raw(b"\xc1") is False
    assert client.send_raw(msgpack.packb({"a": 1})[:-1]) is False
    assert client.send_raw(msgpack.packb(1) + msgpack.packb(2)) is False
    assert client.send_raw(b"\x91" * 33 + b"\x00") is False
    assert client.send_raw("not bytes") is False
    n_invalid = len(invalid) + 12
    assert client.capture("project:created", {"pad": "x" * 3000}) is False  # too_large
    assert client.send_raw(msgpack.packb({"pad": "x" * 3000})) is False
    assert client.capture("project:created", ok_deep)
    assert client.capture("x" * 200, {"fine": True})
    assert client.flush(5)
    stats = client.stats()
    assert stats["dropped"]["invalid"] == n_invalid
    assert stats["dropped"]["too_large"] == 2
    assert stats["sent"] == 2 and stats["last_error"]
    check_accounting(stats)
    got = agent.wait_objects(2)
    assert got[0]["properties"] == ok_deep
    with pytest.raises(ValueError):
        tc.Client(agent.path, queue_bytes=0)
    with pytest.raises(ValueError):
        tc.Client(agent.path, distinct_id="")


# -- the queue bound ---------------------------------------------------------

def test_no_agent_queue_bound_and_drops(clients, tmp_path):
    client = clients(str(tmp_path / "nobody.sock"), queue_bytes=4096)
    accepted = 0
    slowest = 0.0
    for i in range(500):
        ok, took = timed(client.capture, "project:created", {"seq": i, "pad": "x" * 50})
        accepted += ok
        slowest = max(slowest, took)
        assert client.stats()["queued_bytes"] <= 4096
    assert slowest < LOOSE
    stats = client.stats()
    assert 0 < accepted < 500
    assert stats["pending"] == accepted
    assert stats["dropped"]["queue_full"] == 500 - accepted
    assert stats["queued_bytes"] > 4096 - 200
    check_accounting(stats)
    ok, took = timed(client.flush, 0.2)
    assert ok is False and took < 0.2 + LOOSE
    assert client.stats()["connect_failures"] >= 1
    ok, took = timed(client.close, 0.1)
    assert ok is False and took < 0.1 + LOOSE
    stats = client.stats()
    assert stats["pending"] == 0 and stats["dropped"]["closed"] == accepted
    assert client.capture("project:created") is False
    assert client.stats()["dropped"]["closed"] == accepted + 1
    check_accounting(client.stats())


def test_queued_events_are_delivered_when_the_agent_appears(clients, tmp_path):
    path = str(tmp_path / "later.sock")
    client = clients(path, reconnect_max=0.2)
    for i in range(50):
        assert client.capture("project:created", {"seq": i})
    time.sleep(0.3)
    agent = FakeAgent()
    try:
        os.rename(agent.path, path)
        assert client.flush(5)
        assert seqs(agent.wait_objects(50)) == list(range(50))
    finally:
        agent.stop()


# -- short writes and resets -------------------------------------------------

class ShortSocket:
    """A socket whose send() writes 1 to 3 bytes, and that can fail once
    fail_after bytes went out on it."""

    def __init__(self, sock, fail_after=None, error=BrokenPipeError):
        self._sock = sock
        self.fail_after = fail_after
        self.error = error
        self.written = 0

    def send(self, data, flags=0):
        if self.fail_after is not None and self.written >= self.fail_after:
            raise self.error(32, "injected failure")
        n = self._sock.send(bytes(data[:random.randint(1, 3)]), flags)
        self.written += n
        return n

    def __getattr__(self, name):
        return getattr(self._sock, name)


class ShortClient(tc.Client):
    def __init__(self, *args, fail_after=(), error=BrokenPipeError, **kw):
        self.fail_after = list(fail_after)
        self.error = error
        super().__init__(*args, **kw)

    def _new_socket(self):
        limit = self.fail_after.pop(0) if self.fail_after else None
        return ShortSocket(super()._new_socket(), limit, self.error)


def test_short_writes_deliver_whole_events_in_order(fake):
    agent = fake()
    client = ShortClient(agent.path, atexit_timeout=0)
    try:
        for i in range(200):
            assert client.capture("project:created", {"seq": i, "pad": "p" * (i % 40)})
        assert client.flush(20)
        got = agent.wait_objects(200)
        assert seqs(got) == list(range(200))
        assert len(agent.conns) == 1
        check_accounting(client.stats())
    finally:
        client.close(1)


def test_tiny_kernel_buffers_and_a_slow_reader(fake, clients):
    agent = fake(read_size=97, read_delay=0.0005, rcvbuf=1024)
    client = clients(agent.path, sndbuf=1024, queue_bytes=1 << 20)
    for i in range(400):
        assert client.capture("project:created", {"seq": i, "pad": "q" * 700})
    assert client.flush(30)
    got = agent.wait_objects(400, timeout=30)
    assert seqs(got) == list(range(400))
    assert agent.conns[0].leftover == b""
    assert client.stats()["sent"] == 400


@pytest.mark.parametrize("reliable", [False, True])
def test_a_reset_mid_event_never_starts_a_connection_torn(fake, reliable):
    agent = fake()
    size = len(tc._encode_event("project:created", {"seq": 10, "pad": "r" * 40}, None, None,
                                None, "1" if reliable else None))
    client = ShortClient(agent.path, fail_after=[int(size * 2.5)], reliable=reliable,
                         reconnect_min=0.01, atexit_timeout=0)
    try:
        for i in range(20):
            assert client.capture("project:created", {"seq": i, "pad": "r" * 40})
        assert client.flush(20)
        agent.wait_last(19)
        agent.wait(lambda a: a.conns[0].closed.is_set(), what="the first connection closed")
        torn, fresh = agent.conns
        assert torn.leftover, "the first connection should end inside an event"
        assert fresh.leftover == b""
        assert seqs(torn.objects) == [0, 1]
        # Unreliable: resumed at the torn event. Reliable: at the oldest unacked one.
        resumed = seqs(fresh.objects)[0]
        assert resumed == 2 or reliable and resumed <= 2
        assert seqs(fresh.objects) == list(range(resumed, 20))
        stats = client.stats()
        assert stats["sent"] == 20 and stats["disconnects"] == 1
        check_accounting(stats)
    finally:
        client.close(1)


def test_agent_closing_mid_stream_then_whole_events_on_the_next(fake, clients):
    def close_early(agent, index, obj):
        return "close" if index == 0 and len(agent.conns[0].objects) == 5 else None

    agent = fake(on_object=close_early)
    client = clients(agent.path, reconnect_min=0.01, sndbuf=4096)
    for i in range(300):
        assert client.capture("project:created", {"seq": i, "pad": "s" * 200})
        if i == 10:
            agent.wait(lambda a: a.conns and a.conns[0].closed.is_set(), what="first close")
    assert client.flush(20)
    agent.wait_last(299)
    later = [o for c in agent.conns[1:] for o in c.objects]
    for c in agent.conns[1:]:
        assert c.leftover == b""
    s = seqs(later)
    # what the agent had not read when it closed is lost (unreliable mode);
    # from the first event not written whole on, nothing is
    assert s == list(range(s[0], 300)), "events lost or reordered after the reconnect"
    assert s[0] >= 5
    check_accounting(client.stats())


# -- reliable mode -----------------------------------------------------------

def test_reliable_acks_and_flush(fake, clients):
    agent = fake()
    client = clients(agent.path, reliable=True)
    for i in range(100):
        assert client.capture("project:created", {"seq": i})
    assert client.flush(10)
    stats = client.stats()
    assert stats["sent"] == stats["acked"] == 100 and stats["pending"] == 0
    assert stats["resent"] == 0
    got = agent.objects()
    assert seqs(got) == list(range(100))
    assert len({o["chunk"] for o in got}) == 100
    assert all(isinstance(o["chunk"], str) and 1 <= len(o["chunk"]) <= 64 for o in got)


def test_reliable_flush_waits_for_acks_not_writes(fake, clients):
    held = []

    def late(agent, index, obj):
        held.append(obj["chunk"])
        return None

    agent = fake(reply=late)
    client = clients(agent.path, reliable=True, ack_timeout=30)
    for i in range(3):
        client.capture("project:created", {"seq": i})
    agent.wait_objects(3)
    ok, took = timed(client.flush, 0.3)
    assert ok is False and 0.25 < took < 0.3 + LOOSE
    assert client.stats()["pending"] == 3
    conn = agent.conns[0].sock
    conn.sendall(b"".join(msgpack.packb({"ack": c}) for c in held))
    assert client.flush(5)
    assert client.stats()["sent"] == 3


def test_reliable_resends_after_the_connection_closes(fake, clients):
    def silent_first(agent, index, obj):
        return None if index == 0 else ack_all(agent, index, obj)

    def close_at_ten(agent, index, obj):
        return "close" if index == 0 and len(agent.conns[0].objects) == 10 else None

    agent = fake(reply=silent_first, on_object=close_at_ten)
    client = clients(agent.path, reliable=True, ack_timeout=60, reconnect_min=0.01)
    for i in range(30):
        assert client.capture("project:created", {"seq": i})
    assert client.flush(10)
    stats = client.stats()
    assert stats["sent"] == 30 and stats["resent"] >= 10 and stats["ack_timeouts"] == 0
    assert len(agent.conns) == 2
    assert seqs(agent.conns[1].objects) == list(range(30)), "not all resent, or not in order"
    check_accounting(stats)


def test_reliable_resends_after_the_ack_timeout(fake, clients):
    agent = fake(reply=lambda a, index, obj: None if index == 0 else ack_all(a, index, obj))
    client = clients(agent.path, reliable=True, ack_timeout=0.3, reconnect_min=0.01)
    for i in range(20):
        assert client.capture("project:created", {"seq": i})
    assert client.flush(10)
    stats = client.stats()
    assert stats["ack_timeouts"] == 1 and stats["resent"] == 20 and stats["sent"] == 20
    assert stats["written"] == stats["acked"] == 20
    assert seqs(agent.conns[0].objects) == list(range(20))
    assert seqs(agent.conns[1].objects) == list(range(20))
    ids = [o["uuid"] for o in agent.conns[0].objects]
    assert [o["uuid"] for o in agent.conns[1].objects] == ids, "a resend must be identical"


def test_reliable_resends_only_the_unanswered(fake, clients):
    def skip_seq_3(agent, index, obj):
        if index == 0 and obj["properties"]["seq"] == 3:
            return None  # the agent could not take it then
        return ack_all(agent, index, obj)

    agent = fake(reply=skip_seq_3)
    client = clients(agent.path, reliable=True, ack_timeout=0.3, reconnect_min=0.01)
    for i in range(10):
        client.capture("project:created", {"seq": i})
    assert client.flush(10)
    assert seqs(agent.conns[1].objects) == [3]
    assert client.stats()["sent"] == 10


def test_reliable_rejections_are_dropped_not_resent(fake, clients):
    def reject_odd(agent, index, obj):
        if obj["properties"]["seq"] % 2:
            return msgpack.packb({"ack": obj["chunk"], "rejected": 1, "reason": "unknown_event"})
        return ack_all(agent, index, obj)

    agent = fake(reply=reject_odd)
    client = clients(agent.path, reliable=True, ack_timeout=0.3)
    for i in range(10):
        client.capture("project:created", {"seq": i})
    assert client.flush(5)
    time.sleep(0.5)
    stats = client.stats()
    assert stats["sent"] == 5 and stats["dropped"]["rejected"] == 5
    assert stats["rejected_reasons"] == {"unknown_event": 5}
    assert stats["resent"] == 0 and len(agent.conns) == 1
    check_accounting(stats)


def test_reliable_replies_split_and_joined_anyhow(fake, clients):
    pending = []

    def dribble(agent, index, obj):
        pending.append(msgpack.packb({"ack": obj["chunk"]}))
        if len(pending) < 7:
            return None
        data = b"".join(pending)
        pending.clear()
        for b in data[:-1]:  # all but the last byte one at a time...
            agent.conns[index].sock.sendall(bytes([b]))
        return data[-1:]

    agent = fake(reply=dribble)
    client = clients(agent.path, reliable=True, ack_timeout=30)
    for i in range(70):
        client.capture("project:created", {"seq": i})
    assert client.flush(20)
    assert client.stats()["sent"] == 70 and client.stats()["bad_replies"] == 0


def test_send_raw_in_reliable_mode_is_not_tracked(fake, clients):
    agent = fake()
    client = clients(agent.path, reliable=True)
    assert client.send_raw(msgpack.packb({"event": "project:created"}))
    assert client.flush(5)
    assert client.stats()["sent"] == 1 and client.stats()["acked"] == 0


# -- the agent's last word: {"error": reason, "detail": text} ----------------

POISON = "POISON" + "x" * 300000  # written in part before the agent closes (sndbuf 4096)


def capture_poisoned(client, poison=None):
    """seq 0 (flushed), seq 1 with the poison, seqs 2 to 4."""
    client.capture("project:created", {"seq": 0})
    assert client.flush(5)
    client.capture("project:created", {"seq": 1, "pad": POISON} if poison is None else
                   {"seq": 1, poison: True})
    for i in range(2, 5):
        client.capture("project:created", {"seq": i})


@pytest.mark.parametrize("reliable", [False, True])
def test_an_event_the_agent_keeps_closing_on_is_given_up(fake, clients, reliable):
    # The agent closes while the event is half written, saying too_large, as
    # the real one does for a message over its max_message_bytes.
    agent = fake(close_on=b"POISON", close_error="too_large")
    client = clients(agent.path, sndbuf=4096, queue_bytes=1 << 20, reconnect_min=0.01,
                     reconnect_max=0.05, reliable=reliable)
    capture_poisoned(client)
    assert client.flush(20)
    assert seqs(agent.wait_last(4)) == [0, 2, 3, 4]
    stats = client.stats()
    assert stats["dropped"]["connection"] == 1 and stats["sent"] == 4
    # Unreliable: on the first connection seq 0, written whole before it,
    # may be the one at fault (no acks say otherwise): the event is blamed
    # from the next connection on, where it is written first. Reliable:
    # seq 0 was acknowledged, so it is blamed at once.
    breaks = 8 if reliable else 9
    assert stats["disconnects"] == breaks and "given up" in stats["last_error"]
    assert stats["agent_errors"] == {"too_large": breaks}
    assert stats["last_agent_error"] == {"error": "too_large", "detail": "fake agent"}
    check_accounting(stats)


@pytest.mark.parametrize("reason", ["too_large", "too_deep", "not_msgpack"])
def test_reliable_an_event_the_agent_keeps_closing_on_is_given_up(fake, clients, reason):
    def poison(agent, index, obj):
        return reason if "poison" in obj["properties"] else None

    agent = fake(on_object=poison)
    client = clients(agent.path, reliable=True, reconnect_min=0.01, reconnect_max=0.05)
    capture_poisoned(client, "poison")
    assert client.flush(20)
    got = seqs(agent.objects())
    # After the first error, with other events in flight, which one was at
    # fault is unknown; then the event goes alone and is at fault 8 times.
    # (With none after it in flight the first error is already its own.)
    assert got.count(1) in (8, 9) and got.count(0) == 1
    assert seqs(agent.conns[-1].objects) == [2, 3, 4]
    stats = client.stats()
    assert stats["dropped"]["connection"] == 1 and stats["sent"] == stats["acked"] == 4
    assert stats["agent_errors"] == {reason: got.count(1)}
    check_accounting(stats)


def test_reliable_an_event_not_taken_is_never_blamed_for_the_next_ones_fault(fake, clients):
    # The agent's buffer is full at first: seq 0 gets no reply (resent after
    # the ack timeout), and seq 1 right behind it makes the agent close with
    # too_large. seq 0 is the oldest event unacknowledged each time, but
    # only seq 1 may be given up.
    def full_at_first(agent, index, obj):
        if obj["properties"]["seq"] == 0 and index < 6:
            return None
        return ack_all(agent, index, obj)

    def poison(agent, index, obj):
        return "too_large" if "poison" in obj["properties"] else None

    agent = fake(reply=full_at_first, on_object=poison)
    client = clients(agent.path, reliable=True, ack_timeout=0.1, reconnect_min=0.01,
                     reconnect_max=0.05)
    client.capture("project:created", {"seq": 0})
    client.capture("project:created", {"seq": 1, "poison": True})
    for i in range(2, 4):
        client.capture("project:created", {"seq": i})
    assert client.flush(20)
    stats = client.stats()
    assert stats["dropped"]["connection"] == 1 and stats["sent"] == stats["acked"] == 3
    assert stats["agent_errors"] == {"too_large": 9}
    assert stats["ack_timeouts"] == 5
    assert seqs(agent.conns[6].objects) == [0, 1]
    assert seqs(agent.conns[-1].objects) == [2, 3]
    check_accounting(stats)


def greet_first(n, words):
    """Connections 0 to n-1 get words and are closed at once, unread."""
    return lambda agent, index: words if index < n else None


@pytest.mark.parametrize("words", [error_reply("max_connections"), b""],
                         ids=["max_connections", "no_reply"])
def test_reliable_refused_connections_drop_nothing(fake, clients, words):
    agent = fake(greet=greet_first(20, words))
    client = clients(agent.path, reliable=True, reconnect_min=0.001, reconnect_max=0.01)
    for i in range(50):
        assert client.capture("project:created", {"seq": i})
    assert client.flush(20)
    assert seqs(agent.objects()) == list(range(50))
    stats = client.stats()
    assert sum(stats["dropped"].values()) == 0
    assert stats["sent"] == stats["acked"] == 50
    assert stats["connects"] == 21 and stats["disconnects"] == 20
    if words:
        assert stats["agent_errors"] == {"max_connections": 20}
        assert stats["last_agent_error"] == {"error": "max_connections", "detail": "fake agent"}
    else:
        assert stats["agent_errors"] == {} and stats["last_agent_error"] is None
    check_accounting(stats)


@pytest.mark.parametrize("reliable", [False, True])
@pytest.mark.parametrize("last_words", [None, "no_memory", "max_connections"])
def test_closes_without_an_error_about_a_message_never_give_an_event_up(fake, clients,
                                                                       reliable, last_words):
    # The agent closes the connection under the same event 20 times (a
    # restart, or no_memory), more than enough to give it up were it at
    # fault; then it takes it.
    def closing_20_times(agent, index):
        if index >= 20:
            agent.close_on = None
        return None

    agent = fake(close_on=b"POISON", close_error=last_words, greet=closing_20_times)
    client = clients(agent.path, sndbuf=4096, queue_bytes=1 << 20, reconnect_min=0.001,
                     reconnect_max=0.01, reliable=reliable)
    capture_poisoned(client)
    assert client.flush(20)
    assert seqs(agent.wait_last(4)) == [0, 1, 2, 3, 4]
    stats = client.stats()
    assert sum(stats["dropped"].values()) == 0 and stats["sent"] == 5
    assert stats["disconnects"] == 20
    assert stats["agent_errors"] == ({} if last_words is None else {last_words: 20})
    check_accounting(stats)


def test_fire_and_forget_reads_the_agents_error(fake, clients):
    agent = fake(greet=greet_first(1, error_reply("max_connections", "agent.max_connections")))
    client = clients(agent.path)
    client.capture("project:created", {"seq": 0})  # written on the refused connection: lost
    deadline = time.monotonic() + 5
    while client.stats()["connected"] or not client.stats()["disconnects"]:
        assert time.monotonic() < deadline, client.stats()
        time.sleep(0.01)
    stats = client.stats()
    assert stats["agent_errors"] == {"max_connections": 1}
    assert stats["last_agent_error"] == {"error": "max_connections",
                                         "detail": "agent.max_connections"}
    assert "max_connections" in stats["last_error"]
    client.capture("project:created", {"seq": 1})
    assert client.flush(5)
    # (seq 0 comes again only if the refusal came before it was written)
    assert seqs(agent.wait_last(1)) in ([1], [0, 1])


# -- never raise, never block ------------------------------------------------

@pytest.mark.parametrize("reliable", [False, True])
def test_garbage_replies_never_raise(fake, clients, reliable):
    def garbage(agent, index, obj):
        if index == 0:
            return b"\xc1\xc1 not msgpack \xff" * 10
        return ack_all(agent, index, obj)

    agent = fake(reply=garbage)
    client = clients(agent.path, reliable=reliable, ack_timeout=1, reconnect_min=0.01)
    for i in range(50):
        assert client.capture("project:created", {"seq": i}) is True
    assert client.flush(10)
    stats = client.stats()
    assert stats["sent"] == 50 and stats["internal_errors"] == 0
    if reliable:
        assert stats["bad_replies"] >= 1 and len(agent.conns) >= 2
    check_accounting(stats)


def test_well_formed_nonsense_replies_are_counted(fake, clients):
    def nonsense(agent, index, obj):
        return (msgpack.packb(42) + msgpack.packb({"ack": "nobody"}) + msgpack.packb([1, 2])
                + msgpack.packb({"ack": obj["chunk"], "rejected": "lots"}) + msgpack.packb(None))

    agent = fake(reply=nonsense)
    client = clients(agent.path, reliable=True, ack_timeout=5)
    for i in range(5):
        client.capture("project:created", {"seq": i})
    assert client.flush(5)
    stats = client.stats()
    assert stats["sent"] == stats["acked"] == 5 and stats["bad_replies"] == 5 * 4
    assert len(agent.conns) == 1


def test_socket_errors_and_bugs_in_the_writer_never_escape(fake):
    agent = fake()
    client = ShortClient(agent.path, fail_after=[50, 10, 0], error=RuntimeError,
                         reconnect_min=0.01, atexit_timeout=0)
    try:
        for i in range(30):
            assert client.capture("project:created", {"seq": i}) is True
        assert client.flush(20)
        stats = client.stats()
        assert stats["internal_errors"] == 3 and stats["sent"] == 30
        assert "RuntimeError" in stats["last_error"]
        assert seqs(agent.wait_last(29)) == list(range(30))
    finally:
        client.close(1)


def test_a_writer_that_could_not_start_is_started_again(fake, clients, monkeypatch):
    agent = fake()
    real = tc._Poller
    failures = []

    def failing_once():
        if not failures:
            failures.append(1)
            raise OSError(24, "Too many open files")
        return real()

    monkeypatch.setattr(tc, "_Poller", failing_once)
    client = clients(agent.path)
    assert client.capture("project:created", {"seq": 0})
    deadline = time.monotonic() + 5
    while client._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = client.stats()
    assert stats["pending"] == 1, "an event was dropped with the writer"
    assert stats["internal_errors"] == 1 and "Too many open files" in stats["last_error"]
    assert client.capture("project:created", {"seq": 1})
    assert client.flush(5)
    assert seqs(agent.wait_objects(2)) == [0, 1]
    check_accounting(client.stats())


@pytest.mark.parametrize("reliable", [False, True])
def test_a_full_socket_never_blocks(fake, clients, reliable):
    agent = fake(reply=no_reply, reading=False, rcvbuf=1024)
    client = clients(agent.path, sndbuf=4096, queue_bytes=64 * 1024, reliable=reliable,
                     ack_timeout=60)
    slowest = 0.0
    results = []
    for i in range(2000):
        ok, took = timed(client.capture, "project:created", {"seq": i, "pad": "f" * 100})
        results.append(ok)
        slowest = max(slowest, took)
    assert slowest < LOOSE, slowest
    stats = client.stats()
    assert stats["dropped"]["queue_full"] > 0
    assert stats["queued_bytes"] <= 64 * 1024
    check_accounting(stats)
    ok, took = timed(client.flush, 0.2)
    assert ok is False and took < 0.2 + LOOSE
    ok, took = timed(client.close, 0.2)
    assert ok is False and took < 0.2 + LOOSE
    check_accounting(client.stats())
    assert client.stats()["pending"] == 0


def test_a_listener_that_never_accepts_never_blocks(fake, clients):
    agent = fake(accept=False)
    backlog = []
    try:
        for _ in range(200):  # fill the accept queue: connect() then fails with EAGAIN
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.setblocking(False)
            try:
                s.connect(agent.path)
            except OSError:
                s.close()
                break
            backlog.append(s)
        client = clients(agent.path, queue_bytes=8192)
        slowest = 0.0
        for i in range(300):
            _, took = timed(client.capture, "project:created", {"seq": i})
            slowest = max(slowest, took)
        assert slowest < LOOSE
        ok, took = timed(client.flush, 0.2)
        assert ok is False and took < 0.2 + LOOSE
        check_accounting(client.stats())
    finally:
        for s in backlog:
            s.close()


# -- threads and processes ---------------------------------------------------

@pytest.mark.parametrize("reliable", [False, True])
def test_many_threads_one_client_every_event_once(fake, clients, reliable):
    agent = fake()
    # the fake agent shares the GIL with the eight producing threads: under
    # the sanitizers on a busy machine its acks can take seconds, and an ack
    # timeout resends (a duplicate), which is not what this test is about
    client = clients(agent.path, reliable=reliable, queue_bytes=16 << 20, ack_timeout=60)
    threads, per_thread = 8, 500
    start = threading.Barrier(threads)
    refused = []

    def produce(t):
        start.wait()
        for i in range(per_thread):
            if not client.capture("project:created", {"seq": i, "thread": t}):
                refused.append((t, i))

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert refused == []
    assert client.flush(90), client.stats()
    got = agent.wait_objects(threads * per_thread, timeout=30)
    keys = [(o["properties"]["thread"], o["properties"]["seq"]) for o in got]
    assert len(keys) == len(set(keys)) == threads * per_thread
    for t in range(threads):  # one thread's events stay in its order
        assert [s for th, s in keys if th == t] == list(range(per_thread))
    stats = client.stats()
    assert stats["sent"] == stats["attempted"] == threads * per_thread
    assert len({o["uuid"] for o in got}) == len(got)


def wait_child(pid, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError("the child hung (a lock or thread inherited from the parent?)")


@pytest.mark.parametrize("reliable", [False, True])
def test_fork_child_uses_its_own_connection(fake, clients, reliable):
    agent = fake()
    client = clients(agent.path, reliable=reliable)
    for i in range(10):
        client.capture("project:created", {"seq": i, "who": "parent"})
    assert client.flush(5)
    # Fork while another thread holds the client's lock: the child must not
    # deadlock on it, nor use the parent's connection or writer thread.
    holding, release = threading.Event(), threading.Event()

    def hold():
        with client._lock:
            holding.set()
            release.wait()

    holder = threading.Thread(target=hold)
    holder.start()
    holding.wait()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            s = client.stats()
            fresh = s["attempted"] == 0 and s["pending"] == 0 and not s["connected"]
            sent = all(client.capture("project:created", {"seq": i, "who": "child"})
                       for i in range(10))
            code = 0 if fresh and sent and client.flush(10) else 3
        finally:
            os._exit(code)
    release.set()
    holder.join()
    for i in range(10, 20):
        client.capture("project:created", {"seq": i, "who": "parent"})
    assert wait_child(pid) == 0
    assert client.flush(10)
    got = agent.wait_objects(30)
    by_pid = {}
    for c in agent.conns:
        by_pid.setdefault(c.pid, []).extend(c.objects)
    assert sorted(by_pid) == sorted([os.getpid(), pid])
    assert seqs(by_pid[pid]) == list(range(10))
    assert {o["properties"]["who"] for o in by_pid[pid]} == {"child"}
    assert seqs(by_pid[os.getpid()]) == list(range(20))
    stats = client.stats()
    assert stats["attempted"] == stats["sent"] == 20
    assert len({o["uuid"] for o in got}) == 30


def test_fork_with_a_backlog_child_does_not_send_the_parents_events(fake, clients, tmp_path):
    path = str(tmp_path / "late.sock")
    client = clients(path, reconnect_max=0.1)
    for i in range(5):
        client.capture("project:created", {"seq": i, "who": "parent"})
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            s = client.stats()
            code = 0 if s["pending"] == 0 and s["attempted"] == 0 else 2
            client.capture("project:created", {"seq": 100, "who": "child"})
            code = code or (0 if client.flush(10) else 3)
        finally:
            os._exit(code)
    agent = FakeAgent()
    try:
        os.rename(agent.path, path)
        assert wait_child(pid) == 0
        assert client.flush(10)
        got = agent.wait_objects(6)
        time.sleep(0.2)
        got = agent.objects()
        assert sorted(seqs(got)) == [0, 1, 2, 3, 4, 100]
    finally:
        agent.stop()


# -- the module-level drop-in and exit ---------------------------------------

def run_python(code, env):
    return subprocess.run([sys.executable, "-c", code], env=dict(os.environ, **env),
                          cwd=CLIENT_DIR, capture_output=True, text=True, timeout=30)


def test_a_child_of_a_c_level_fork_lets_go_of_the_parents_state(fake):
    """A fork() that runs no Python at-fork hook (a C library's): the client
    must still see it is in a child (with the C encoder, by the count the
    C module's at-fork hook keeps, without a getpid() per event; else by the
    process id) and let go of its parent's connection, queue and counts.
    (Only that: a child of such a fork cannot start Python threads, so it
    cannot send.) In a process of its own, whose only other thread is the
    client's, idle at the fork: a thread waiting for the GIL then would
    never give it back to the child."""
    agent = fake()
    code = (
        "import ctypes, os, time, telemetry_client as t\n"
        "c = t.Client(os.environ['TELEMETRY_SOCKET'], atexit_timeout=0)\n"
        "for i in range(5): c.capture('project:created', {'seq': i})\n"
        "assert c.flush(5) and c.stats()['connected']\n"
        "time.sleep(0.2)\n"
        "r, w = os.pipe()\n"
        "pid = ctypes.PyDLL(None).fork()  # the GIL held, as a C extension's is\n"
        "if pid == 0:\n"
        "    s = c.stats()\n"
        "    os.write(w, b'%d %d %d' % (s['attempted'], s['sent'], s['connected']))\n"
        "    os._exit(0)\n"
        "assert os.waitpid(pid, 0)[1] == 0\n"
        "print('child', os.read(r, 100).decode())\n"
        "c.capture('project:created', {'seq': 5})  # the parent's goes on\n"
        "assert c.flush(5)\n"
        "print('parent', c.stats()['attempted'], c.stats()['sent'])\n"
        "os._exit(0)\n"
    )
    result = run_python(code, {"TELEMETRY_SOCKET": agent.path})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["child 0 0 0", "parent 6 6"]
    assert seqs(agent.wait_objects(6)) == list(range(6))


def test_send_event_drop_in_and_exit_flush(fake):
    agent = fake()
    code = (
        "import telemetry_client as t\n"
        "ok = t.send_event('project:created', {'uuid': 'p1'}, {'projects_count': 3})\n"
        "ok2 = t.send_event('project:deleted')\n"
        "assert ok is True and ok2 is True\n"
        "assert t.default_client() is t.default_client()\n"
        # no flush: the atexit hook sends what is queued
    )
    result = run_python(code, {"TELEMETRY_SOCKET": agent.path})
    assert result.returncode == 0, result.stderr
    first, second = agent.wait_objects(2)
    assert first["event"] == "project:created"
    assert first["properties"] == {"event_properties": {"uuid": "p1"},
                                   "derived_properties": {"projects_count": 3}}
    assert second["properties"] == {"event_properties": {}, "derived_properties": {}}


def test_exit_is_bounded_without_an_agent(tmp_path):
    code = ("import telemetry_client as t\n"
            "c = t.Client(atexit_timeout=0.3)\n"
            "assert c.capture('project:created')\n"
            "assert t.send_event('project:created') is True\n")
    start = time.monotonic()
    result = run_python(code, {"TELEMETRY_SOCKET": str(tmp_path / "nobody.sock")})
    took = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert took < 0.3 + 1.0 + 3 * LOOSE  # 1 s: the default client's own bound


def test_context_manager_closes(fake):
    agent = fake()
    with tc.Client(agent.path, atexit_timeout=0) as client:
        client.capture("project:created", {"seq": 0})
    assert agent.wait_objects(1)
    assert client.capture("project:created") is False
    assert client.stats()["dropped"]["closed"] == 1
    assert client._thread is None


def test_a_child_of_a_c_level_fork_draws_uuids_of_its_own(clients):
    """A fork() that runs no at-fork hook (a C library's): the child must not
    draw the random bits its parent draws next, or two events of one
    millisecond would share a uuid and the backend would keep one."""
    import ctypes
    tc.uuid7(0)  # the pool is read now, before the fork
    r, w = os.pipe()
    pid = ctypes.CDLL(None).fork()
    if pid == 0:  # the child: its next uuid of millisecond 1234, to the parent
        try:
            os.write(w, tc.uuid7(1234).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        assert wait_child(pid) == 0
        child = os.read(r, 100).decode()
    finally:
        os.close(r)
    mine = tc.uuid7(1234)
    assert len(child) == 36 and child[:14] == mine[:14]  # the same millisecond
    assert child != mine
