"""
The Python client's C encoder (client/python/_telemetry_speedups.c) against
its Python encoder: the same bytes for every kind of value the client takes
(built-in types, their subclasses, the types it converts, non-str map keys,
every msgpack size boundary), the same errors for what it refuses, events
that decode to what was captured with a valid UUIDv7, fresh random bits in
a forked child, and no crash when a callback changes a container while it
is being encoded. Loads the encoder from $TELEMETRY_BUILD_DIR/python (the
suite puts it on PYTHONPATH): a build without it fails here.
"""
import collections
import datetime
import enum
import os
import random
import re
import sys
import time
import uuid

import msgpack
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "client", "python"))

import telemetry_client as tc  # noqa: E402

UUID7 = re.compile(r"\A[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\Z")


def c_packb(obj, depth=0):
    return tc._speedups.packb(obj, depth)


def python_packb(obj, depth=0):
    return tc._packb_python(obj, depth)


def outcome(pack, obj):
    """The bytes, or the exception's type and message."""
    try:
        return pack(obj)
    except Exception as exc:  # compared, never swallowed
        return (type(exc).__name__, str(exc))


def test_the_suite_uses_the_c_encoder():
    built = os.path.join(os.environ["TELEMETRY_BUILD_DIR"], "python")
    names = [n for n in os.listdir(built) if n.startswith("_telemetry_speedups")]
    assert names, "no _telemetry_speedups in %s" % built
    assert tc.ENCODER == "c"
    assert os.path.dirname(sys.modules["_telemetry_speedups"].__file__) == built


class Colour(enum.IntEnum):
    RED = 1


class Kind(str, enum.Enum):
    PIPELINE = "pipeline"


class Text(str):
    pass


class Number(float):
    pass


class Items(list):
    pass


class Props(dict):
    pass


class Frozen(collections.abc.Mapping):
    def __init__(self, data):
        self._data = dict(data)

    def __getitem__(self, key):
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self):
        return len(self._data)


BOUNDARY_INTS = [0, 1, 0x7f, 0x80, 0xff, 0x100, 0xffff, 0x10000, 0xffffffff, 0x100000000,
                 2**63 - 1, 2**63, 2**64 - 1, -1, -32, -33, -0x80, -0x81, -0x8000, -0x8001,
                 -0x80000000, -0x80000001, -2**63]
BOUNDARY_SIZES = [0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536]


def random_value(rng, depth=0):
    kind = rng.randrange(20 if depth < 6 else 12)
    if kind == 0:
        return rng.choice(BOUNDARY_INTS)
    if kind == 1:
        return rng.randrange(-2**63, 2**64)
    if kind == 2:
        return rng.choice([None, True, False, 0.0, -1.5, float("inf"), 1e308, Number(2.5)])
    if kind == 3:
        return "".join(rng.choice("aZ9 \"\\\n\u00e9\u4e2d\U0001f600")
                       for _ in range(rng.choice(BOUNDARY_SIZES[:8])))
    if kind == 4:
        return rng.choice([Colour.RED, Kind.PIPELINE, Text("sub"), True])
    if kind == 5:
        return rng.choice([b"", b"\x00\xff", bytearray(b"ab"), memoryview(b"mv"),
                           bytes(rng.choice(BOUNDARY_SIZES))])
    if kind == 6:
        return rng.choice([datetime.datetime(2024, 5, 6, 7, 8, 9, 123456,
                                             tzinfo=datetime.timezone.utc),
                           datetime.datetime(2024, 5, 6, 7, 8, 9), datetime.date(2020, 2, 29),
                           uuid.UUID(int=rng.getrandbits(128))])
    if kind < 12:
        return "key-%d" % rng.randrange(1000)
    if kind < 15:
        return [random_value(rng, depth + 1) for _ in range(rng.choice([0, 1, 3, 15, 16, 17]))]
    if kind == 15:
        return tuple(random_value(rng, depth + 1) for _ in range(rng.randrange(4)))
    if kind == 16:
        return Items(random_value(rng, depth + 1) for _ in range(rng.randrange(3)))
    keys = [rng.choice(["k%d" % i, i, None, 1.5, (1, 2), Kind.PIPELINE, Text("t%d" % i),
                        "\u00e9%d" % i]) for i in range(rng.choice([0, 1, 5, 15, 16, 17]))]
    mapping = {key: random_value(rng, depth + 1) for key in keys}
    return rng.choice([mapping, Props(mapping), Frozen(mapping),
                       collections.OrderedDict(mapping)])


def test_the_same_bytes_as_the_python_encoder_for_random_values():
    rng = random.Random(20261203)
    for _ in range(3000):
        value = random_value(rng)
        assert c_packb(value) == python_packb(value), value


@pytest.mark.parametrize("size", BOUNDARY_SIZES + [2**16 + 1, 100000])
def test_the_same_bytes_at_every_size_boundary(size):
    for value in ("x" * size, b"y" * size, list(range(size)),
                  {"k%d" % i: i for i in range(size)}):
        assert c_packb(value) == python_packb(value)


def test_the_same_bytes_for_every_boundary_int_and_depth():
    for n in BOUNDARY_INTS:
        assert c_packb(n) == python_packb(n) == msgpack.packb(n)
    deepest = 1
    for _ in range(tc.MAX_DEPTH - 1):
        deepest = [deepest]
    assert c_packb(deepest) == python_packb(deepest)
    assert c_packb({"a": 1}, tc.MAX_DEPTH - 1) == python_packb({"a": 1}, tc.MAX_DEPTH - 1)


class Unprintable:
    def __str__(self):
        raise KeyError("no str for you")


class BrokenMapping(collections.abc.Mapping):
    def __getitem__(self, key):
        raise LookupError(key)

    def __iter__(self):
        raise OSError("items() of a mapping that fails")

    def __len__(self):
        return 1


def too_deep(levels, container):
    value = 1
    for _ in range(levels):
        value = container(value)
    return value


@pytest.mark.parametrize("value", [
    2**64, -2**63 - 1, object(), {1, 2}, "lone \udc80 surrogate", {"\ud800": 1},
    {Unprintable(): 1}, BrokenMapping(), too_deep(tc.MAX_DEPTH + 1, lambda v: [v]),
    too_deep(tc.MAX_DEPTH + 1, lambda v: {"k": v}), [1, 2, {"a": [object()]}],
    datetime.time(12, 0), complex(1, 2),
], ids=repr)
def test_the_same_error_for_what_it_refuses(value):
    c, python = outcome(c_packb, value), outcome(python_packb, value)
    assert isinstance(c, tuple), "C encoded what it should refuse: %r" % (c,)
    assert c == python
    assert isinstance(outcome(tc.packb, value), tuple)


def test_packb_raises_encode_error_the_same_way_with_either_encoder():
    for value in (2**64, object(), too_deep(tc.MAX_DEPTH + 1, lambda v: [v]), "\udc80"):
        with pytest.raises(tc.EncodeError) as c_error:
            tc.packb(value)
        saved = tc._packb
        try:
            tc._packb = tc._packb_python
            with pytest.raises(tc.EncodeError) as python_error:
                tc.packb(value)
        finally:
            tc._packb = saved
        assert str(c_error.value) == str(python_error.value)


def test_a_container_changed_while_it_is_encoded_is_an_error_not_a_crash():
    victim = {"a": 1, "b": 2}

    class Grows:
        def __str__(self):
            victim.clear()
            victim.update({"x%d" % i: "y" * 100 for i in range(100)})
            return "grew"

    victim[Grows()] = 3
    with pytest.raises(RuntimeError, match="changed size"):
        c_packb(victim)

    items = [1, 2]

    class Shrinks:
        def __str__(self):
            items.clear()
            return "shrank"

    items.append({Shrinks(): "v"})
    items.append("tail")
    with pytest.raises(RuntimeError, match="changed size"):
        c_packb(items)


def test_an_event_from_c_is_the_event_python_would_encode():
    rng = random.Random(7)
    before = time.time_ns() // 1000000
    for i in range(500):
        props = random_value(rng)
        props = props if type(props) is dict else {"value": props}
        distinct_id = rng.choice([None, "user-%d" % i])
        chunk = rng.choice([None, "%x" % i])
        data = tc._speedups.encode_event("event:%d" % i, props, distinct_id, chunk)
        fields = msgpack.unpackb(data, raw=False, strict_map_key=False)
        assert list(fields)[:3] == ["event", "timestamp", "uuid"]
        assert UUID7.match(fields["uuid"])
        assert before <= fields["timestamp"] <= time.time_ns() // 1000000
        assert int(fields["uuid"].replace("-", "")[:12], 16) == fields["timestamp"]
        saved = tc._speedups
        try:
            tc._speedups = None  # the Python encoder, with the same time and uuid
            expected = tc._encode_event("event:%d" % i, props, fields["timestamp"],
                                        fields["uuid"], distinct_id, chunk)
        finally:
            tc._speedups = saved
        assert data == expected


@pytest.mark.parametrize("event,distinct_id,message", [
    ("", None, "event is 0 bytes, not 1 to 200"),
    ("e" * 201, None, "event is 201 bytes, not 1 to 200"),
    ("ok", "", "distinct_id is 0 bytes, not 1 to 200"),
    ("ok", "\u00e9" * 101, "distinct_id is 202 bytes, not 1 to 200"),
])
def test_names_are_checked_as_in_python(event, distinct_id, message):
    with pytest.raises(tc.EncodeError, match=message):
        tc._speedups.encode_event(event, {}, distinct_id, None)
    with pytest.raises(tc.EncodeError, match=message):
        tc._encode_event(event, {}, 1, str(uuid.uuid4()), distinct_id, None)


def test_what_c_does_not_take_is_left_to_python():
    for args in ((Kind.PIPELINE, {}, None, None), ("e", Frozen({"a": 1}), None, None),
                 ("e", {}, Text("id"), None), ("e", {}, None, 5)):
        assert tc._speedups.encode_event(*args) is None
    data = tc._encode_event(Kind.PIPELINE, Frozen({"a": 1}), None, None, None, None)
    assert msgpack.unpackb(data)["event"] == "pipeline"
    assert msgpack.unpackb(data)["properties"] == {"a": 1}


def test_uuids_are_unique_and_a_forked_child_draws_its_own_random_bits():
    def random_bits(text):
        return text.replace("-", "")[12:]  # all but the milliseconds

    seen = {random_bits(msgpack.unpackb(tc._speedups.encode_event("e", None, None, None))["uuid"])
            for _ in range(20000)}
    assert len(seen) == 20000
    tc._speedups.encode_event("e", None, None, None)  # the pool is part drawn
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            drawn = [msgpack.unpackb(tc._speedups.encode_event("e", None, None, None))["uuid"]
                     for _ in range(5)]
            os.write(write_fd, " ".join(random_bits(u) for u in drawn).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    child = os.read(read_fd, 4096).decode().split()
    os.close(read_fd)
    os.waitpid(pid, 0)
    parent = [random_bits(msgpack.unpackb(tc._speedups.encode_event("e", None, None, None))
                          ["uuid"]) for _ in range(5)]
    assert len(child) == 5
    assert not set(child) & set(parent)
