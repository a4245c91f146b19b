"""
telemetry_client: send analytics events to the local telemetry-agent.

    import telemetry_client; telemetry_client.Client().capture("project:created", {"projects_count": 7})

One module, standard library only (Python 3.7+). Events are encoded to
msgpack here (no msgpack package needed), by _telemetry_speedups (the same
encoder in C, about ten times faster) when it can be imported, and written
to the agent's Unix socket: the path given, else $TELEMETRY_SOCKET, else
/run/telemetry/agent.sock. ENCODER says which encoder runs ("c" or
"python"); TELEMETRY_CLIENT_PURE_PYTHON=1 in the environment picks Python.

Promises, the same as the C library's:

- capture() never blocks and never raises on agent trouble (absent,
  restarting, slow, socket full, garbage replies). It encodes the event,
  puts the bytes on a bounded in-process queue (queue_bytes, 8 MiB by
  default: over 10 s of agent absence at 1,000 typical events a second) and
  returns True; it returns False when the event is dropped,
  and counts why: queue_full, invalid (an unsupported type, a bad field, an
  int out of the int64/uint64 range, nesting deeper than the agent takes),
  too_large (bigger than max_event_bytes or than the whole queue), rejected
  (the agent refused it in reliable mode), connection (the agent closed the
  connection with an error about that very message, 8 times over: e.g. it
  is over the agent's max_message_bytes) or closed (captured after close(),
  or still queued when close() gave up). A connection closed without such
  an error (the agent restarting, killed, or over its max_connections)
  never counts against an event: it is only reconnected, with backoff.
  Only the constructor raises (ValueError, for bad arguments);
  stats()["last_error"] says what went wrong last, and
  stats()["last_agent_error"] the agent's last {"error", "detail"} reply.
- A daemon thread per client, started on the first event, writes the queue
  to the socket when it is writable, reconnects with exponential backoff and
  jitter, and reads the agent's replies. An event is written whole or the
  connection is dropped before anything else is written: a new connection
  never starts in the middle of an event.
- Thread-safe; fork-safe: a child process starts with an empty queue, zero
  counters and no connection, and uses its own socket and thread. A child
  that ends with os._exit() (multiprocessing's do) skips the exit flush:
  call flush() first.
- Each client holds a socket and a thread: make one per process and share
  it, or close() the ones you are done with.
- Every event gets a UUIDv7 and a millisecond timestamp unless given, so
  the backend can remove the duplicates a resend makes.
- reliable=True adds a `chunk` id to every event; the agent answers
  {"ack": chunk} once the event is in its buffer. Events are kept until
  acknowledged and written again after a reconnect, or when no answer came
  within ack_timeout seconds (on a new connection); an event the agent
  answers {"deferred": chunk} (its buffer was full, with
  buffer.overflow = drop_newest) is written again first after a short
  pause (50 ms, doubling to 1 s while it keeps deferring). Delivery to the agent is
  then at least once; "in its buffer" means in its memory, so an agent
  killed outright (SIGKILL, OOM) still loses the acked events it had not
  delivered yet. Without reliable, an event counts as sent once written to
  the socket: the ones still unread in the kernel when the agent dies are
  lost (sndbuf=... bounds how many).
- flush(timeout) waits until every event captured before the call is sent
  (written; acknowledged in reliable mode) or dropped, and says whether that
  happened in time. At interpreter exit each client is flushed for at most
  atexit_timeout seconds (1 s by default, shared by all clients; 0 skips it).
- stats() counts: attempted = sent + pending + sum(dropped.values()), always.

send_event(event, event_properties, derived_properties) is a drop-in for
Orchest's analytics.send_event on a module-level client made on first use.
"""

import atexit
import collections
import collections.abc
import datetime
import itertools
import os
import random
import re
import select
import socket
import struct
import threading
import time
import uuid as _uuid
import weakref

__all__ = ["Client", "EncodeError", "packb", "uuid7", "send_event", "default_client",
           "DEFAULT_SOCKET", "MAX_DEPTH", "ENCODER"]

DEFAULT_SOCKET = "/run/telemetry/agent.sock"
MAX_DEPTH = 32  # containers nested in one message, the event map included (agent's limit)
MAX_MESSAGE_BYTES = 1024 * 1024  # agent.max_message_bytes default: larger closes the connection
MAX_NAME_BYTES = 200  # event and distinct_id
MAX_TIMESTAMP_MS = 253402300799999  # 9999-12-31T23:59:59.999Z
DROP_REASONS = ("queue_full", "invalid", "too_large", "rejected", "connection", "closed")

_WRITE_BATCH_BYTES = 64 * 1024  # bytes joined into one send()
_READ_BYTES = 64 * 1024
_LONG_LIVED = 1.0  # a connection up this long resets the reconnect backoff
_LINGER = 0.001  # the writer, woken for new events, waits this long for more
_MAX_BREAKS = 8  # closes for a fault in an event (same as the C library) before it is dropped
_DEFER_MIN = 0.05  # after {"deferred"} (the agent's buffer was full) writing pauses this long,
_DEFER_MAX = 1.0   # doubling up to this while the agent keeps deferring
# The agent's last reply before it closes a connection, {"error": reason, ...}:
# these reasons mean a message on the connection was at fault; any other
# (max_connections, no_memory) says nothing about the events.
_MESSAGE_FAULTS = frozenset(("too_large", "too_deep", "not_msgpack"))
_MSG_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)
_UUID_TEXT = re.compile(r"\A[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                        r"[0-9a-fA-F]{12}\Z")


class EncodeError(ValueError):
    """A value this module cannot encode (packb only; capture counts it)."""


# -- msgpack encoding --------------------------------------------------------
#
# One recursive function with the common types first and inline: a pure
# Python encoder spends its time in calls and lookups. Map keys, which
# repeat from event to event, are encoded once and kept (a bounded cache).

_pack_be16 = struct.Struct(">BH").pack
_pack_be32 = struct.Struct(">BI").pack
_pack_u64 = struct.Struct(">BQ").pack
_pack_i8 = struct.Struct(">Bb").pack
_pack_i16 = struct.Struct(">Bh").pack
_pack_i32 = struct.Struct(">Bi").pack
_pack_i64 = struct.Struct(">Bq").pack
_pack_f64 = struct.Struct(">Bd").pack
_KEY_CACHE_MAX = 4096
_key_cache = {}


def _str_header(n, out):
    if n < 32:
        out.append(0xa0 | n)
    elif n < 0x100:
        out += bytes((0xd9, n))
    else:
        _long_header(n, out, 0xda, 0xdb, "str")


def _long_header(n, out, code16, code32, what):
    if n < 0x10000:
        out += _pack_be16(code16, n)
    elif n < 0x100000000:
        out += _pack_be32(code32, n)
    else:
        raise EncodeError("%s of %d elements or bytes is too long for msgpack" % (what, n))


def _container_header(n, out, depth, fix, code16, code32):
    """A map's or an array's header; returns the depth of its elements."""
    if depth >= MAX_DEPTH:
        raise EncodeError("nested deeper than %d levels" % MAX_DEPTH)
    if n < 16:
        out.append(fix | n)
    else:
        _long_header(n, out, code16, code32, "map" if fix == 0x80 else "array")
    return depth + 1


def _pack_int(n, out):
    if n >= 0:
        if n < 0x80:
            out.append(n)
        elif n < 0x100:
            out += bytes((0xcc, n))
        elif n < 0x10000:
            out += _pack_be16(0xcd, n)
        elif n < 0x100000000:
            out += _pack_be32(0xce, n)
        elif n < 0x10000000000000000:
            out += _pack_u64(0xcf, n)
        else:
            raise EncodeError("int %d is larger than uint64" % n)
    elif n >= -32:
        out.append(n & 0xff)
    elif n >= -0x80:
        out += _pack_i8(0xd0, n)
    elif n >= -0x8000:
        out += _pack_i16(0xd1, n)
    elif n >= -0x80000000:
        out += _pack_i32(0xd2, n)
    elif n >= -0x8000000000000000:
        out += _pack_i64(0xd3, n)
    else:
        raise EncodeError("int %d is smaller than int64" % n)


def _key_bytes(key):
    """A map key as msgpack: a str, or str() of anything else."""
    if type(key) is str:
        cached = _key_cache.get(key)
        if cached is not None:
            return cached
    out = bytearray()
    _pack(key if type(key) is str else str(key), out, 0)
    data = bytes(out)
    if type(key) is str and len(data) <= 64:
        if len(_key_cache) >= _KEY_CACHE_MAX:
            _key_cache.clear()
        _key_cache[key] = data
    return data


def _pack(obj, out, depth):
    t = type(obj)
    if t is str:
        data = obj.encode("utf-8")
        _str_header(len(data), out)
        out += data
    elif t is dict:
        depth = _container_header(len(obj), out, depth, 0x80, 0xde, 0xdf)
        cache = _key_cache
        for key, value in obj.items():
            data = cache.get(key) if type(key) is str else None
            out += _key_bytes(key) if data is None else data
            _pack(value, out, depth)
    elif t is int:
        _pack_int(obj, out)
    elif obj is None:
        out.append(0xc0)
    elif t is bool:
        out.append(0xc3 if obj else 0xc2)
    elif t is float:
        out += _pack_f64(0xcb, obj)
    elif t is list or t is tuple:
        depth = _container_header(len(obj), out, depth, 0x90, 0xdc, 0xdd)
        for item in obj:
            _pack(item, out, depth)
    elif isinstance(obj, (bytes, bytearray, memoryview)):
        data = bytes(obj)
        if len(data) < 0x100:
            out += bytes((0xc4, len(data)))
        else:
            _long_header(len(data), out, 0xc5, 0xc6, "bytes")
        out += data
    else:
        _pack(_convert(obj), out, depth)


def _convert(obj):
    """Anything but the exact built-in types: the built-in value it stands for
    (never something _convert would be asked about again)."""
    if isinstance(obj, bool):
        return bool(obj)
    if isinstance(obj, int):
        return int(obj)  # IntEnum, IntFlag
    if isinstance(obj, str):
        return str.__str__(obj)  # str subclasses and str Enums: their value
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, datetime.datetime):
        return _datetime_text(obj)
    if isinstance(obj, datetime.date):
        return obj.isoformat()
    if isinstance(obj, _uuid.UUID):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return list(obj)
    if isinstance(obj, collections.abc.Mapping):
        return dict(obj.items())
    raise EncodeError("cannot encode a value of type %s" % type(obj).__name__)


def _datetime_text(dt):
    """RFC 3339 in UTC; naive datetimes are local time, as in datetime.timestamp()."""
    dt = dt.astimezone(datetime.timezone.utc)
    text = "%04d-%02d-%02dT%02d:%02d:%02d" % (dt.year, dt.month, dt.day, dt.hour, dt.minute,
                                              dt.second)
    if dt.microsecond:
        text += ".%06d" % dt.microsecond
    return text + "Z"


def _packb_python(obj, depth=0):
    out = bytearray()
    _pack(obj, out, depth)
    return bytes(out)


def _load_speedups():
    """The same encoder in C (_telemetry_speedups.c, built with the project
    or by pip where a compiler is found), unless it is absent or
    $TELEMETRY_CLIENT_PURE_PYTHON is 1."""
    if os.environ.get("TELEMETRY_CLIENT_PURE_PYTHON") == "1":
        return None
    try:
        import _telemetry_speedups as speedups
    except ImportError:
        return None
    if not hasattr(speedups, "forks"):  # built from an older source: not this one's
        return None
    speedups.configure(_convert, EncodeError, MAX_DEPTH, MAX_NAME_BYTES)
    return speedups


_speedups = _load_speedups()
ENCODER = "python" if _speedups is None else "c"  # which encoder this process uses
# fork()s in this process's line, counted by the C module's at-fork hook
# (always 0 without it: the process id tells a child then)
_fork_count = (lambda: 0) if _speedups is None else _speedups.forks
_packb = _packb_python if _speedups is None else _speedups.packb


def packb(obj):
    """Encode obj as msgpack bytes. Supported: None, bool, int (int64 and
    uint64 range), float, str, bytes, list/tuple, dict (keys become str),
    datetime (RFC 3339 string, UTC), date (YYYY-MM-DD), uuid.UUID (string),
    and subclasses of these (IntEnum, str Enum, ...). Raises EncodeError (a
    ValueError) for anything else, a str that is not valid Unicode, or
    containers nested deeper than MAX_DEPTH."""
    try:
        return _packb(obj)
    except UnicodeEncodeError as exc:
        raise EncodeError("a str is not valid Unicode (a lone surrogate?): %s" % exc) from None
    except RecursionError:
        raise EncodeError("nested too deeply") from None


# -- msgpack scanning and decoding (agent replies, send_raw checks) ----------

class _Incomplete(Exception):
    pass


def _header(buf, pos):
    """(header length, payload bytes, container elements) of the element at
    pos; raises _Incomplete or ValueError."""
    b = buf[pos]
    if b <= 0x7f or b >= 0xe0 or b in (0xc0, 0xc2, 0xc3):
        return 1, 0, -1
    if 0x80 <= b <= 0x8f:
        return 1, 0, 2 * (b & 0x0f)
    if 0x90 <= b <= 0x9f:
        return 1, 0, b & 0x0f
    if 0xa0 <= b <= 0xbf:
        return 1, b & 0x1f, -1
    if b == 0xc1:
        raise ValueError("byte 0xc1 is not msgpack")
    if 0xca <= b <= 0xd3:
        return 1, (4, 8, 1, 2, 4, 8, 1, 2, 4, 8)[b - 0xca], -1
    if 0xd4 <= b <= 0xd8:
        return 1, 1 + (1 << (b - 0xd4)), -1
    width = 1 if b in (0xc4, 0xc7, 0xd9) else 2 if b in (0xc5, 0xc8, 0xda, 0xdc, 0xde) else 4
    if pos + 1 + width > len(buf):
        raise _Incomplete
    n = int.from_bytes(buf[pos + 1:pos + 1 + width], "big")
    if b in (0xc7, 0xc8, 0xc9):
        return 1 + width, n + 1, -1
    if b in (0xdc, 0xdd):
        return 1 + width, 0, n
    if b in (0xde, 0xdf):
        return 1 + width, 0, 2 * n
    return 1 + width, n, -1


def _scan(buf, pos=0):
    """End of the msgpack object starting at pos, or -1 if buf stops before
    it does. Raises ValueError for bytes that are not msgpack or an object
    nested deeper than MAX_DEPTH (both close the agent's connection)."""
    remaining = []
    try:
        while True:
            if pos >= len(buf):
                return -1
            h, payload, elements = _header(buf, pos)
            pos += h + payload
            if pos > len(buf):
                return -1
            if elements >= 0 and len(remaining) == MAX_DEPTH:
                raise ValueError("nested deeper than %d levels" % MAX_DEPTH)
            if elements > 0:
                remaining.append(elements)
                continue
            while remaining:
                remaining[-1] -= 1
                if remaining[-1]:
                    break
                remaining.pop()
            if not remaining:
                return pos
    except _Incomplete:
        return -1


def _unpack(buf, pos):
    """Decode one complete object (already found whole by _scan)."""
    h, payload, elements = _header(buf, pos)
    b = buf[pos]
    start = pos + h
    if elements >= 0:
        items = []
        pos = start
        for _ in range(elements):
            item, pos = _unpack(buf, pos)
            items.append(item)
        if 0x90 <= b <= 0x9f or b in (0xdc, 0xdd):
            return items, pos
        return {_hashable(items[i]): items[i + 1] for i in range(0, len(items), 2)}, pos
    end = start + payload
    raw = bytes(buf[start:end])
    if b <= 0x7f:
        value = b
    elif b >= 0xe0:
        value = b - 0x100
    elif b in (0xc0, 0xc2, 0xc3):
        value = (None, None, False, True)[b - 0xc0]
    elif 0xa0 <= b <= 0xbf or b in (0xd9, 0xda, 0xdb):
        value = raw.decode("utf-8", "replace")
    elif b == 0xca:
        value = struct.unpack(">f", raw)[0]
    elif b == 0xcb:
        value = struct.unpack(">d", raw)[0]
    elif 0xcc <= b <= 0xcf:
        value = int.from_bytes(raw, "big")
    elif 0xd0 <= b <= 0xd3:
        value = int.from_bytes(raw, "big", signed=True)
    else:
        value = raw  # bin and ext: the bytes are enough here
    return value, end


def _hashable(key):
    return tuple(key) if isinstance(key, list) else repr(key) if isinstance(key, dict) else key


# -- UUIDv7 ------------------------------------------------------------------

def _now_ms():
    return time.time_ns() // 1000000


_RANDOM_POOL_BYTES = 4000  # random bytes read at once: one getrandom() per 400 uuids
_random_lock = threading.Lock()
_random_pool = b""
_random_pos = 0
_random_pid = 0  # the process that read the pool: a forked child reads its own


def _random10():
    """10 bytes from the operating system's CSPRNG, read in bulk."""
    global _random_pool, _random_pos, _random_pid
    pid = os.getpid()  # a C-level fork() runs no at-fork hook
    with _random_lock:
        pos = _random_pos
        if pos + 10 > len(_random_pool) or pid != _random_pid:
            _random_pool, pos, _random_pid = os.urandom(_RANDOM_POOL_BYTES), 0, pid
        _random_pos = pos + 10
        return _random_pool[pos:pos + 10]


def _forget_random_pool():
    """After fork(): a child must not draw the bytes its parent draws too (a
    new lock too: the parent's may have been held at the fork)."""
    global _random_pool, _random_pos, _random_lock
    _random_lock = threading.Lock()
    _random_pool, _random_pos = b"", 0


def uuid7(ms=None):
    """A UUIDv7 string: 48-bit Unix milliseconds, version 7, 12 random bits,
    the RFC 9562 variant, 62 random bits."""
    if ms is None:
        ms = _now_ms()
    ms &= 0xFFFFFFFFFFFF
    r = int.from_bytes(_random10(), "big")  # 80 bits: 12 for rand_a, 62 (of 64) for rand_b
    return "%08x-%04x-%04x-%04x-%012x" % (ms >> 16, ms & 0xFFFF, 0x7000 | r >> 68,
                                          0x8000 | (r >> 48) & 0x3FFF, r & 0xFFFFFFFFFFFF)


# -- event fields ------------------------------------------------------------

def _name(value, what):
    if not isinstance(value, str) and isinstance(getattr(value, "value", None), str):
        value = value.value  # an Enum of event names, as Orchest's analytics.Event
    if not isinstance(value, str):
        raise EncodeError("%s is a %s, not a str" % (what, type(value).__name__))
    size = len(value.encode("utf-8", "surrogatepass"))
    if not 1 <= size <= MAX_NAME_BYTES:
        raise EncodeError("%s is %d bytes, not 1 to %d" % (what, size, MAX_NAME_BYTES))
    return value


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_MILLISECOND = datetime.timedelta(milliseconds=1)


def _timestamp(value):
    if isinstance(value, datetime.datetime):
        value = (value.astimezone(datetime.timezone.utc) - _EPOCH) // _MILLISECOND
    elif isinstance(value, str):
        return value  # RFC 3339: the agent parses it
    elif isinstance(value, bool) or not isinstance(value, int):
        raise EncodeError("timestamp is a %s, not int milliseconds, datetime or RFC 3339 str"
                          % type(value).__name__)
    if not 0 <= value <= MAX_TIMESTAMP_MS:
        raise EncodeError("timestamp %d ms is not in 1970..9999" % value)
    return value


def _uuid_text(value):
    if isinstance(value, _uuid.UUID):
        return str(value)
    if not isinstance(value, str) or not _UUID_TEXT.match(value):
        raise EncodeError("uuid %r is not an 8-4-4-4-12 hex string" % (value,))
    return value


_KEY = {k: packb(k) for k in ("event", "properties", "timestamp", "uuid", "distinct_id", "chunk")}


def _encode_event(event, properties, timestamp, uuid, distinct_id, chunk):
    """The native event map: event, timestamp, uuid, then the optional keys."""
    if _speedups is not None and timestamp is None and uuid is None:
        data = _speedups.encode_event(event, properties, distinct_id, chunk)
        if data is not None:
            return data  # else a type only the Python encoder takes (an Enum name, ...)
    event = _name(event, "event")
    ms = _now_ms() if timestamp is None else _timestamp(timestamp)
    uuid = uuid7(ms if type(ms) is int else None) if uuid is None else _uuid_text(uuid)
    if properties is not None and not isinstance(properties, collections.abc.Mapping):
        raise EncodeError("properties is a %s, not a dict" % type(properties).__name__)
    if distinct_id is not None:
        distinct_id = _name(distinct_id, "distinct_id")
    out = bytearray((0x83 + (properties is not None) + (distinct_id is not None)
                     + (chunk is not None),))
    for key, value in (("event", event), ("timestamp", ms), ("uuid", uuid),
                       ("properties", properties), ("distinct_id", distinct_id),
                       ("chunk", chunk)):
        if value is not None:
            out += _KEY[key]
            out += _packb(value, 1)
    return bytes(out)


# -- the client --------------------------------------------------------------

class _Entry:
    """One queued message: its bytes, its chunk id (reliable mode), its place
    in capture order, when it was last written whole (0: never)."""
    __slots__ = ("seq", "data", "chunk", "written_at", "breaks")

    def __init__(self, data, chunk):
        self.seq = 0
        self.data = data
        self.chunk = chunk
        self.written_at = 0.0
        self.breaks = 0  # connections the agent closed for a fault in it


_clients = weakref.WeakSet()  # for the fork and exit hooks
_clients_lock = threading.Lock()


class Client:
    """A connection to the agent with its own queue and writer thread.

    Client(socket_path=None, queue_bytes=8388608, reliable=False,
           ack_timeout=5.0, distinct_id=None, max_event_bytes=1048576,
           reconnect_min=0.05, reconnect_max=5.0, sndbuf=None,
           atexit_timeout=1.0)

    max_event_bytes should not exceed the agent's agent.max_message_bytes
    (a larger message makes it close the connection). sndbuf sets the
    socket's SO_SNDBUF: what the kernel holds is what a dying agent can take
    with it in the default (unreliable) mode.
    """

    def __init__(self, socket_path=None, queue_bytes=8388608, reliable=False, ack_timeout=5.0,
                 distinct_id=None, max_event_bytes=MAX_MESSAGE_BYTES, reconnect_min=0.05,
                 reconnect_max=5.0, sndbuf=None, atexit_timeout=1.0):
        if socket_path is None:
            socket_path = os.environ.get("TELEMETRY_SOCKET") or DEFAULT_SOCKET
        if not isinstance(socket_path, (str, bytes, os.PathLike)):
            raise ValueError("socket_path must be a path")
        for name, value in (("queue_bytes", queue_bytes), ("max_event_bytes", max_event_bytes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError("%s must be a positive int, not %r" % (name, value))
        for name, value in (("ack_timeout", ack_timeout), ("reconnect_min", reconnect_min),
                            ("reconnect_max", reconnect_max), ("atexit_timeout", atexit_timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError("%s must be a number >= 0, not %r" % (name, value))
        if ack_timeout <= 0 or reconnect_min <= 0 or reconnect_max < reconnect_min:
            raise ValueError("need ack_timeout > 0 and 0 < reconnect_min <= reconnect_max")
        if sndbuf is not None and (isinstance(sndbuf, bool) or not isinstance(sndbuf, int)
                                   or sndbuf < 1):
            raise ValueError("sndbuf must be None or a positive int, not %r" % (sndbuf,))
        if distinct_id is not None:
            try:
                distinct_id = _name(distinct_id, "distinct_id")
            except EncodeError as exc:
                raise ValueError(str(exc)) from None
        self.socket_path = os.fsdecode(socket_path)
        self.queue_bytes = queue_bytes
        self.reliable = bool(reliable)
        self.ack_timeout = float(ack_timeout)
        self.distinct_id = distinct_id
        self.max_event_bytes = max_event_bytes
        self.reconnect_min = float(reconnect_min)
        self.reconnect_max = float(reconnect_max)
        self.sndbuf = sndbuf
        self.atexit_timeout = float(atexit_timeout)
        self._chunk_ids = itertools.count(1)
        self._closed = False
        self._reset_state()
        with _clients_lock:
            _clients.add(self)

    def _reset_state(self):
        """Everything a process owns alone: set at start and in a forked child."""
        self._pid = os.getpid()
        self._forks = _fork_count()
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)  # pending entries finished
        self._queue = collections.deque()  # entries waiting to be written, in order
        self._pending = collections.OrderedDict()  # seq -> entry, every unfinished one
        self._pending_bytes = 0
        self._seq = 0
        self._counts = dict.fromkeys(("attempted", "sent", "written", "acked", "resent", "connects",
                                      "disconnects", "connect_failures", "ack_timeouts",
                                      "deferred", "bad_replies", "internal_errors"), 0)
        self._deferred_back = []  # entries the agent did not take, to resend
        self._hold_until = 0.0  # no writing before this (the agent deferred an event)
        self._defer_delay = _DEFER_MIN
        self._dropped = dict.fromkeys(DROP_REASONS, 0)
        self._rejected_reasons = collections.Counter()
        self._agent_errors = collections.Counter()
        self._last_error = None
        self._last_agent_error = None
        self._thread = None
        self._stopping = False
        self._sleeping = False  # the writer waits for the wake pipe only
        self._wake_r = self._wake_w = -1
        # Owned by the writer thread alone:
        self._sock = None
        self._poller = None
        self._out = b""  # bytes being written: whole entries joined
        self._out_pos = 0
        self._out_entries = collections.deque()  # (entry, end offset in _out)
        self._inflight = collections.OrderedDict()  # chunk -> entry written, not yet acked
        self._rbuf = bytearray()
        self._answered_seq = 0  # this connection: the newest entry the agent answered
        self._whole_seq = 0  # this connection: the newest untracked entry written whole
        self._probe_until = 0  # reliable: entries up to this seq go one at a time (_culprit)
        self._attempt = 0
        self._next_connect = 0.0
        self._connected_at = 0.0

    def _after_fork_in_child(self):
        sock, wake = self._sock, (self._wake_r, self._wake_w)
        self._reset_state()  # new locks: the parent's may have been held at fork
        for fd in wake:
            if fd >= 0:
                _close_quietly(fd)
        if sock is not None:
            _close_quietly_sock(sock)  # our copy only: the parent's connection stays up

    def _check_pid(self):
        """A child forked without Python's at-fork hook (a C-level fork()):
        seen by the C module's hook with no system call (getpid() costs a
        microsecond on some virtual machines), else by the process id."""
        if _speedups is not None:
            if self._forks == _fork_count():
                return
        elif self._pid == os.getpid():
            return
        with _clients_lock:
            if self._pid != os.getpid():
                self._after_fork_in_child()
            self._forks = _fork_count()

    # -- producing -----------------------------------------------------------

    def capture(self, event, properties=None, timestamp=None, uuid=None, distinct_id=None):
        """Queue one event; True if queued, False if dropped (and counted).

        event: the name (str, 1..200 bytes, or an Enum whose value is one);
        properties: a dict or None; timestamp: int ms since the epoch, a
        datetime or an RFC 3339 str (default: now); uuid: str or uuid.UUID
        (default: a new UUIDv7); distinct_id: str (default: the client's,
        else the agent's)."""
        self._check_pid()  # a C-level fork() runs no at-fork hook
        chunk = "%x" % next(self._chunk_ids) if self.reliable else None
        try:
            data = _encode_event(event, properties, timestamp, uuid,
                                 self.distinct_id if distinct_id is None else distinct_id, chunk)
        except (EncodeError, RecursionError, TypeError, ValueError) as exc:
            return self._refuse("invalid", "event %.60r: %s" % (event, exc))
        except Exception as exc:  # a property's __str__ or items() that raised
            return self._refuse("invalid", "event %.60r: %s: %s"
                                % (event, type(exc).__name__, exc))
        return self._enqueue(_Entry(data, chunk))

    def send_raw(self, data):
        """Queue one message already encoded as msgpack (an event map, or a
        Fluent Forward array). It must be exactly one whole object nested at
        most MAX_DEPTH deep, else it is dropped as invalid. It is written as
        is: even in reliable mode it is not tracked for an ack (counted sent
        once written), so it should not carry a chunk of its own."""
        self._check_pid()
        try:
            data = bytes(data)
            end = _scan(data)
            if end != len(data):
                raise ValueError("not exactly one msgpack object (%s)"
                                 % ("incomplete" if end < 0 else "bytes after it"))
        except (TypeError, ValueError) as exc:
            return self._refuse("invalid", "send_raw: %s" % exc)
        return self._enqueue(_Entry(data, None))

    def _refuse(self, reason, why):
        with self._lock:
            self._counts["attempted"] += 1
            self._dropped[reason] += 1
            self._last_error = why
        return False

    def _enqueue(self, entry):
        size = len(entry.data)
        if size > min(self.max_event_bytes, self.queue_bytes):
            return self._refuse("too_large", "a %d-byte message is over the %d-byte limit"
                                % (size, min(self.max_event_bytes, self.queue_bytes)))
        start = False
        with self._lock:
            self._counts["attempted"] += 1
            if self._closed:
                self._dropped["closed"] += 1
                return False
            if self._pending_bytes + size > self.queue_bytes:
                self._dropped["queue_full"] += 1
                return False
            self._seq += 1
            entry.seq = self._seq
            self._pending[entry.seq] = entry
            self._pending_bytes += size
            self._queue.append(entry)
            if self._thread is None:
                self._thread = start = True
            elif self._sleeping:
                self._sleeping = False
                self._wake()
        if start:
            self._start_thread()
        return True

    def _start_thread(self):
        try:
            if self._wake_r < 0:
                self._wake_r, self._wake_w = os.pipe()
                for fd in (self._wake_r, self._wake_w):
                    os.set_blocking(fd, False)
            thread = threading.Thread(target=self._run, name="telemetry-client", daemon=True)
            thread.start()
        except Exception as exc:  # e.g. at interpreter shutdown: events stay queued
            with self._lock:
                self._thread = None
                self._counts["internal_errors"] += 1
                self._last_error = "cannot start the writer thread: %s" % exc
            return
        with self._lock:
            if self._thread is True:
                self._thread = thread

    def _wake(self):
        try:
            os.write(self._wake_w, b"!")
        except OSError:
            pass  # full: a wake-up is already waiting

    # -- waiting -------------------------------------------------------------

    def flush(self, timeout=5.0):
        """Wait until every event captured before this call is sent (written
        to the socket; acknowledged by the agent in reliable mode) or
        dropped. True if that happened within timeout seconds (None: no
        limit), else False."""
        self._check_pid()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            target = self._seq
            while self._pending and next(iter(self._pending)) <= target:
                if self._thread is None and not self._closed:
                    return False  # no writer: it could not be started
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._progress.wait(remaining)
        return True

    def close(self, timeout=1.0):
        """Flush for up to timeout seconds, then stop the writer and close the
        socket. Events still queued then are dropped (counted as closed), as
        are events captured afterwards. True if nothing was left behind."""
        self._check_pid()
        ok = self.flush(timeout)
        with self._lock:
            self._closed = self._stopping = True
            thread = self._thread
            if isinstance(thread, threading.Thread) and thread is not threading.current_thread():
                self._wake()
            else:
                thread = None
        if thread is not None:
            thread.join(5.0)
        with self._lock:
            if self._thread is None or thread is not None and not thread.is_alive():
                self._drop_pending_locked()
        return ok

    def _drop_pending_locked(self):
        self._dropped["closed"] += len(self._pending)
        self._pending.clear()
        self._queue.clear()
        self._pending_bytes = 0
        self._progress.notify_all()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def stats(self):
        """A snapshot of the counters, all read at one instant:
        attempted  capture/send_raw calls
        sent       events done with: written whole (acknowledged as
                   accepted, in reliable mode)
        pending    events held: not yet written (or not yet acked)
        dropped    by reason: queue_full, invalid, too_large, rejected,
                   connection (the agent closed the connection for a fault
                   in it 8 times), closed
        attempted == sent + pending + sum(dropped.values()) always.
        written    events written whole at least once (the C library's sent)
        acked      reliable: events the agent acknowledged as accepted
        resent     events written whole before, put back after a reconnect
                   or a deferral
        deferred   reliable: times the agent did not take an event (its
                   buffer was full) and it was queued again
        queued_bytes, connects, disconnects, connect_failures, ack_timeouts,
        bad_replies (replies that are not a known ack), internal_errors,
        rejected_reasons (the agent's reason -> count), agent_errors (the
        reasons of the agent's error replies, each the last word on a
        connection it closed: too_large, too_deep, not_msgpack, no_memory,
        max_connections -> count), last_agent_error (the last one,
        {"error": reason, "detail": text}, or None), connected,
        last_error (text, or None)."""
        self._check_pid()
        with self._lock:
            s = dict(self._counts)
            s["pending"] = len(self._pending)
            s["queued_bytes"] = self._pending_bytes
            s["dropped"] = dict(self._dropped)
            s["rejected_reasons"] = dict(self._rejected_reasons)
            s["agent_errors"] = dict(self._agent_errors)
            s["last_agent_error"] = (None if self._last_agent_error is None
                                     else dict(self._last_agent_error))
            s["connected"] = self._sock is not None
            s["last_error"] = self._last_error
        return s

    # -- the writer thread ---------------------------------------------------

    def _run(self):
        try:
            self._poller = _Poller()
            self._poller.register(self._wake_r)
            while not self._stopping:
                try:
                    self._step()
                except Exception as exc:  # a bug here must not stop delivery for good
                    self._disconnect("internal error")
                    self._internal_error(exc)
                    time.sleep(0.05)
        except Exception as exc:  # no poller: end quietly, the next capture tries again
            self._internal_error(exc)
        finally:
            if self._pid == os.getpid():
                if self._sock is not None:
                    self._disconnect("closed")
                with self._lock:
                    self._thread = None  # if not closing, the next capture starts another
                    if self._stopping:
                        self._drop_pending_locked()

    def _internal_error(self, exc):
        with self._lock:
            self._counts["internal_errors"] += 1
            self._last_error = "writer: %s: %s" % (type(exc).__name__, exc)

    def _step(self):
        now = time.monotonic()
        if self._sock is None:
            with self._lock:
                idle = not self._queue and not self._out_entries
                self._sleeping = idle
            if idle:
                self._wait(None)
            elif now < self._next_connect:
                self._wait(self._next_connect - now)
            else:
                self._connect()
            return
        held = now < self._hold_until and not self._out_entries
        if not self._out_entries and not held:
            self._refill()
        if self._out_entries:
            self._write()
            if self._sock is None:
                return
        timeout = self._hold_until - now if held else None
        if self._inflight:
            oldest = next(iter(self._inflight.values()))
            left = oldest.written_at + self.ack_timeout - now
            timeout = left if timeout is None else min(timeout, left)
            if left <= 0:
                with self._lock:
                    self._counts["ack_timeouts"] += 1
                    self._last_error = "no ack within %.3g s" % self.ack_timeout
                self._disconnect("ack timeout")
                return
        if not self._out_entries and not held:
            with self._lock:
                if self._queue and not self._must_wait(self._queue[0]):
                    return  # refill at once
                self._sleeping = True
        self._poller.modify(self._sock.fileno(), writable=bool(self._out_entries))
        for fd, readable, writable in self._wait(timeout):
            if fd != self._wake_r and self._sock is not None:
                if readable:
                    self._read()
                if writable and self._sock is not None and self._out_entries:
                    self._write()

    def _wait(self, timeout):
        ready = self._poller.poll(timeout)
        with self._lock:
            self._sleeping = False
        for fd, readable, _ in ready:
            if fd == self._wake_r and readable:
                try:
                    while os.read(self._wake_r, 512):
                        pass
                except OSError:
                    pass
                # Woken by a capture: let a burst gather so that one pass
                # writes many events (the GIL makes each pass costly for
                # the capturing threads).
                time.sleep(_LINGER)
        return ready

    def _connect(self):
        sock = None
        try:
            sock = self._new_socket()
            sock.setblocking(False)
            if self.sndbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.sndbuf)
            sock.connect(self.socket_path)
        except OSError as exc:
            _close_quietly_sock(sock)
            self._attempt += 1
            self._next_connect = time.monotonic() + self._backoff()
            with self._lock:
                self._counts["connect_failures"] += 1
                self._last_error = "connect %s: %s" % (self.socket_path,
                                                       exc.strerror or exc)
            return
        self._sock = sock
        self._connected_at = time.monotonic()
        self._poller.register(sock.fileno())
        with self._lock:
            self._counts["connects"] += 1

    def _new_socket(self):
        """The connection's socket (a seam for tests to wrap)."""
        return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)

    def _backoff(self):
        delay = min(self.reconnect_max, self.reconnect_min * 2 ** min(self._attempt, 30))
        return random.uniform(delay / 2, delay)

    def _disconnect(self, why, fault=False):
        """Drop the connection; what it did not finish goes back to the front
        of the queue, in order, to be written whole on the next one. fault:
        the agent closed it with an error about a message on it; an event
        found at fault again and again (e.g. over the agent's
        max_message_bytes) is given up. Any other end of a connection (no
        error reply, max_connections, no_memory, ack timeout, ...) never
        counts against an event."""
        sock, self._sock = self._sock, None
        if sock is not None:
            self._poller.unregister(sock.fileno())
            _close_quietly_sock(sock)
        now = time.monotonic()
        if sock is not None and now - self._connected_at >= _LONG_LIVED:
            self._attempt = 0
        else:
            self._attempt += 1
        self._next_connect = now + self._backoff()
        culprit = self._culprit() if fault and sock is not None else None
        back = list(self._inflight.values()) + [e for e, _ in self._out_entries]
        self._inflight.clear()
        self._out_entries.clear()
        self._out, self._out_pos = b"", 0
        self._rbuf.clear()
        self._answered_seq = self._whole_seq = 0
        with self._lock:
            if sock is not None:
                self._counts["disconnects"] += 1
                if why != "closed":
                    self._last_error = "connection dropped: %s" % why
            if culprit is not None:
                culprit.breaks += 1
                if culprit.breaks >= _MAX_BREAKS:
                    back.remove(culprit)
                    self._finish_locked(culprit, "connection")
                    self._last_error = ("the agent closed the connection for a fault in the "
                                        "same event %d times (%s): event given up"
                                        % (_MAX_BREAKS, why))
                    self._progress.notify_all()
            self._counts["resent"] += sum(1 for e in back if e.written_at)
            # deferred entries put back earlier wait at the front: keep seq order
            while self._queue and self._queue[0].written_at:
                back.append(self._queue.popleft())
            back.sort(key=lambda e: e.seq)
            self._queue.extendleft(reversed(back))

    def _culprit(self):
        """The event at fault when the agent closed the connection for a
        fault in a message, if that is certain; else None.

        The agent handles messages in order, and writes the replies it owes
        before its error: by now every message before the last one answered
        was handled (acknowledged, or silently not taken), so the fault is in
        one written after it: an event written whole and not answered, the
        first of the entries being written if it is started, or an untracked
        message written whole (send_raw's; every message in unreliable mode:
        done with, never written again). One such message: that is the
        culprit. More than one: unknown. Reliable mode then writes these
        events one at a time, each answered before anything after it is
        written (the probe, up to _probe_until), so that a fault is pinned
        on one. In unreliable mode the started entry is written first on the
        next connection, where it is alone if it is at fault."""
        suspects = [e for e in self._inflight.values() if e.seq > self._answered_seq]
        if self._out_entries:
            entry, end = self._out_entries[0]
            if self._out_pos > end - len(entry.data):
                suspects.append(entry)
        untracked = self._whole_seq > self._answered_seq
        if len(suspects) == 1 and not untracked:
            return suspects[0]
        if self.reliable and suspects:
            self._probe_until = max(self._probe_until, suspects[-1].seq)
        return None

    def _must_wait(self, head):
        """Reliable, probing (see _culprit): an event up to _probe_until is
        written alone and answered before anything after it is written. True
        if head, the next entry, must wait for an answer."""
        limit = self._probe_until
        if not self._inflight or not limit:
            return False
        return next(reversed(self._inflight.values())).seq <= limit or head.seq <= limit

    def _refill(self):
        entries, size = [], 0
        limit = self._probe_until
        with self._lock:
            if self._queue and self._must_wait(self._queue[0]):
                return
            while self._queue:
                entry = self._queue[0]
                if entries and (size + len(entry.data) > _WRITE_BATCH_BYTES
                                or entry.seq <= limit or entries[-1].seq <= limit):
                    break  # a batch is full, and a probed event goes alone
                entries.append(self._queue.popleft())
                size += len(entry.data)
        end = 0
        for entry in entries:
            end += len(entry.data)
            self._out_entries.append((entry, end))
        self._out = memoryview(b"".join(e.data for e in entries))
        self._out_pos = 0

    def _write(self):
        start, error = self._out_pos, None
        try:
            while self._out_pos < len(self._out):
                try:
                    self._out_pos += self._sock.send(self._out[self._out_pos:], _MSG_NOSIGNAL)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    error = exc
                    break
        finally:  # whatever went wrong, what was written whole is done
            self._written(self._out_pos - start)
        if error is not None:
            # The agent may have closed it after saying why: read that first
            # (all it wrote is in the socket once it is gone; never blocks).
            self._read()
            if self._sock is not None:
                self._disconnect("send: %s" % (error.strerror or error))

    def _written(self, nbytes):
        """Finish the entries the last writes completed."""
        if not nbytes:
            return
        now = time.monotonic()
        done, first_time = [], 0
        while self._out_entries and self._out_entries[0][1] <= self._out_pos:
            entry = self._out_entries.popleft()[0]
            first_time += not entry.written_at
            entry.written_at = now
            if entry.chunk is not None:
                self._inflight[entry.chunk] = entry
            else:
                self._whole_seq = entry.seq
                done.append(entry)
        if not self._out_entries:
            self._out, self._out_pos = b"", 0
        with self._lock:
            self._counts["written"] += first_time
            for entry in done:
                self._finish_locked(entry, "sent")
            if done:
                self._progress.notify_all()

    def _finish_locked(self, entry, outcome):
        if self._pending.pop(entry.seq, None) is None:
            return
        self._pending_bytes -= len(entry.data)
        if outcome == "sent":
            self._counts["sent"] += 1
        else:
            self._dropped[outcome] += 1

    def _read(self):
        """Read and handle what the agent wrote, in both modes (its last
        reply on a connection it closes may be an error saying why), until
        nothing more is there now or the connection is dropped."""
        while self._sock is not None:
            try:
                data = self._sock.recv(_READ_BYTES)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # ECONNRESET comes only after the data before it
                self._disconnect("recv: %s" % (exc.strerror or exc))
                return
            if not data:
                self._disconnect("closed by the agent without an error reply")
                return
            self._rbuf += data
            self._replies()

    def _replies(self):
        """Handle every whole reply in the read buffer, in order; an error
        reply (always the agent's last) drops the connection."""
        pos, replies = 0, []
        try:
            while pos < len(self._rbuf):
                end = _scan(self._rbuf, pos)
                if end < 0:
                    break
                replies.append(_unpack(self._rbuf, pos)[0])
                pos = end
        except (ValueError, IndexError, struct.error) as exc:
            with self._lock:
                self._counts["bad_replies"] += 1
                self._last_error = "the agent sent bytes that are not msgpack: %s" % exc
            self._disconnect("bad reply")
            return
        del self._rbuf[:pos]
        if len(self._rbuf) > MAX_MESSAGE_BYTES:
            self._disconnect("reply too large")
            return
        error = None
        with self._lock:
            for reply in replies:
                if isinstance(reply, dict) and "error" in reply:
                    error = self._agent_error_locked(reply)
                    break
                self._reply_locked(reply)
            if self._deferred_back:
                # not taken for want of room: first in line again, after a pause
                back = sorted(self._deferred_back, key=lambda e: e.seq)
                self._deferred_back = []
                self._queue.extendleft(reversed(back))
                self._hold_until = time.monotonic() + self._defer_delay
                self._defer_delay = min(_DEFER_MAX, self._defer_delay * 2)
            self._progress.notify_all()
        if error is not None:
            reason, detail = error
            self._disconnect("the agent's error: %s: %s" % (reason, detail),
                             fault=reason in _MESSAGE_FAULTS)

    def _agent_error_locked(self, reply):
        """Note {"error": reason, "detail": text}; (reason, detail)."""
        reason, detail = reply.get("error"), reply.get("detail")
        reason = reason if isinstance(reason, str) else "unknown"
        detail = detail if isinstance(detail, str) else None
        self._agent_errors[reason] += 1
        self._last_agent_error = {"error": reason, "detail": detail}
        return reason, detail

    def _reply_locked(self, reply):
        deferred = reply.get("deferred") if isinstance(reply, dict) else None
        if isinstance(deferred, str) and deferred in self._inflight:
            entry = self._inflight.pop(deferred)
            self._answered_seq = max(self._answered_seq, entry.seq)
            self._counts["deferred"] += 1
            self._counts["resent"] += 1
            self._deferred_back.append(entry)
            return
        chunk = reply.get("ack") if isinstance(reply, dict) else None
        entry = self._inflight.pop(chunk, None) if isinstance(chunk, str) else None
        if entry is None:
            self._counts["bad_replies"] += 1
            self._last_error = "a reply that acknowledges nothing in flight: %.80r" % (reply,)
            return
        self._answered_seq = max(self._answered_seq, entry.seq)
        rejected = reply.get("rejected", 0)
        if isinstance(rejected, int) and not isinstance(rejected, bool) and rejected > 0:
            reason = reply.get("reason")
            reason = reason if isinstance(reason, str) else "unknown"
            self._rejected_reasons[reason] += 1
            self._last_error = "the agent rejected an event: %s" % reason
            self._finish_locked(entry, "rejected")
        else:
            self._counts["acked"] += 1
            self._defer_delay = _DEFER_MIN
            self._finish_locked(entry, "sent")


# -- helpers -----------------------------------------------------------------

class _Poller:
    """poll() over a few descriptors: (fd, readable, writable) results;
    hang-ups and errors read as readable so that recv() reports them."""

    def __init__(self):
        self._poll = select.poll()

    def register(self, fd):
        self._poll.register(fd, select.POLLIN)

    def modify(self, fd, writable):
        self._poll.modify(fd, select.POLLIN | (select.POLLOUT if writable else 0))

    def unregister(self, fd):
        try:
            self._poll.unregister(fd)
        except (KeyError, ValueError):
            pass

    def poll(self, timeout):
        ms = None if timeout is None else max(0, int(timeout * 1000) + 1)
        try:
            ready = self._poll.poll(ms)
        except InterruptedError:
            return []
        readable = select.POLLIN | select.POLLHUP | select.POLLERR | select.POLLNVAL
        return [(fd, bool(ev & readable), bool(ev & select.POLLOUT)) for fd, ev in ready]


def _close_quietly(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def _close_quietly_sock(sock):
    if sock is None:
        return
    try:
        sock.close()
    except OSError:
        pass


def _after_fork_in_child():
    global _clients_lock, _default_lock
    _clients_lock = threading.Lock()
    _default_lock = threading.Lock()
    _forget_random_pool()
    for client in list(_clients):
        client._after_fork_in_child()


def _at_exit():
    """Give every client's queued events a short, shared time to reach the agent."""
    clients = [c for c in list(_clients) if c._pid == os.getpid() and not c._closed]
    if not clients:
        return
    deadline = time.monotonic() + max(c.atexit_timeout for c in clients)
    for client in clients:
        remaining = min(client.atexit_timeout, deadline - time.monotonic())
        if remaining > 0:
            try:
                client.flush(remaining)
            except Exception:
                pass


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(_at_exit)


# -- Orchest drop-in ---------------------------------------------------------

_default_client = None
_default_lock = threading.Lock()


def default_client():
    """The module-level client send_event uses, made on first use from the
    environment ($TELEMETRY_SOCKET)."""
    global _default_client
    client = _default_client
    if client is None:
        with _default_lock:
            if _default_client is None:
                _default_client = Client()
            client = _default_client
    return client


def send_event(event, event_properties=None, derived_properties=None):
    """Drop-in for Orchest's analytics.send_event: sends `event` (a name or an
    Enum of names) with properties {"event_properties": ...,
    "derived_properties": ...}; the agent adds app and system properties and
    the distinct_id. True if the event was queued for the agent."""
    try:
        return default_client().capture(event, {
            "event_properties": {} if event_properties is None else event_properties,
            "derived_properties": {} if derived_properties is None else derived_properties})
    except Exception:
        return False
