"""
telemetry-send, the command-line producer, against the real agent and the HTTP
test collector: every argument form arrives with the right JSON types,
--json and NDJSON on stdin (the Orchest payloads) arrive whole, --wait waits
for acknowledgements and reports rejections, and every error (bad arguments,
bad JSON, an absent agent, a full agent buffer) gives a clear message and its
own exit status quickly.

The binary is taken from $TELEMETRY_BUILD_DIR (set by ctest), else build/.
"""
import json
import os
import socket
import subprocess
import tempfile
import time

import pytest

from conftest import ROOT, backend, connect, load_payloads

import msgpack

BUILD = os.environ.get("TELEMETRY_BUILD_DIR", os.path.join(ROOT, "build"))
PAYLOADS = os.path.join(ROOT, "tests", "integration", "orchest-payloads.ndjson")
UUID = "0190f3a0-7c1e-7b3a-9c1d-2f4e5a6b7c8d"

EXIT_USAGE, EXIT_DATA, EXIT_UNREACHABLE, EXIT_NOT_ACKED, EXIT_REJECTED = 2, 3, 4, 5, 6


def tool():
    for path in (os.path.join(BUILD, "client", "telemetry-send"),
                 os.path.join(BUILD, "telemetry-send")):
        if os.access(path, os.X_OK):
            return path
    pytest.fail(f"telemetry-send is not built in {BUILD}")


def run(*args, agent=None, stdin=None, env=None, timeout=30):
    """Run telemetry-send (with -s agent.socket when agent is given)."""
    argv = [tool()] + (["-s", agent.socket] if agent else []) + list(args)
    full_env = dict(os.environ)
    full_env.pop("TELEMETRY_SOCKET", None)
    full_env.update(env or {})
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, env=full_env,
                          timeout=timeout)


def ok(r):
    assert r.returncode == 0, f"exit {r.returncode}: {r.stderr}"
    assert r.stderr == ""
    return r


def own(props):
    """Properties without the ones the agent adds."""
    return {k: v for k, v in props.items() if k not in ("$lib", "$lib_version")}


@pytest.fixture
def agent(collector, make_agent):
    return make_agent({"backend": backend(collector), "batch": {"max_age_ms": 50}})


def one_event(collector):
    events = collector.wait_for_events(1, timeout=10)
    assert len(events) == 1, events
    return events[0]


# ------------------------------------------------------------------ argument forms

def test_strings_and_typed_values_keep_their_json_types(collector, agent):
    ok(run("project:created", "plan=pro", "empty=", "seven=7",
           "n:=7", "neg:=-9223372036854775808", "big:=18446744073709551615",
           "f:=2.5", "tiny:=1e-3", "tenth:=0.1", "huge:=1e300", "t:=true", "no:=false",
           "nothing:=null", 's:="quoted"', "list:=[1, \"a\", null, [true]]",
           'obj:={"k": {"x": [1.5]}, "e": {}}', "emptylist:=[]", "unicode=héllo ✓",
           'esc:="tab\\tnew\\nline \\u00e9 \\ud83d\\ude00"', 'nul:="a\\u0000b"',
           agent=agent))
    e = one_event(collector)
    p = own(e["properties"])
    assert p == {
        "plan": "pro", "empty": "", "seven": "7", "n": 7, "neg": -9223372036854775808,
        "big": 18446744073709551615, "f": 2.5, "tiny": 0.001, "tenth": 0.1, "huge": 1e300,
        "t": True, "no": False, "nothing": None, "s": "quoted", "list": [1, "a", None, [True]],
        "obj": {"k": {"x": [1.5]}, "e": {}}, "emptylist": [], "unicode": "héllo ✓",
        "esc": "tab\tnew\nline é \U0001F600", "nul": "a\x00b"}
    assert list(p) == ["plan", "empty", "seven", "n", "neg", "big", "f", "tiny", "tenth", "huge",
                       "t", "no", "nothing", "s", "list", "obj", "emptylist", "unicode", "esc",
                       "nul"]
    for key, kind in [("seven", str), ("n", int), ("neg", int), ("big", int), ("f", float),
                      ("tiny", float), ("huge", float), ("t", bool), ("nothing", type(None))]:
        assert type(p[key]) is kind, key
    assert e["event"] == "project:created"


def test_dotted_keys_nest_and_merge(collector, agent):
    ok(run("project:created", "a.b.c=x", "a.b.d:=1", "a.e:={\"f\": true}", "a.e.g=h",
           "top=1", "a.b.list:=[2]", agent=agent))
    p = own(one_event(collector)["properties"])
    assert p == {"a": {"b": {"c": "x", "d": 1, "list": [2]}, "e": {"f": True, "g": "h"}},
                 "top": "1"}


def test_escapes_in_keys_and_values_taken_as_is(collector, agent):
    ok(run("project:created", r"k\.dot=1", r"k\=eq=2", r"k\:=3", r"back\\slash=4",
           r"a\.b.c=5", "url=http://h/p?a=b&c:=d", "ratio:x=6", "spaced key=  v  ",
           r"v=\.not an escape in a value", agent=agent))
    p = own(one_event(collector)["properties"])
    assert p == {"k.dot": "1", "k=eq": "2", "k:": "3", "back\\slash": "4", "a.b": {"c": "5"},
                 "url": "http://h/p?a=b&c:=d", "ratio:x": "6", "spaced key": "  v  ",
                 "v": r"\.not an escape in a value"}


def test_uuid_timestamp_and_distinct_id_options(collector, agent):
    ok(run("--uuid", UUID.upper(), "--timestamp", "2026-11-28T13:00:00.5+01:00",
           "--distinct-id", "host-1", "debug-ping", agent=agent))
    e = one_event(collector)
    assert e["uuid"] == UUID
    assert e["timestamp"] == "2026-11-28T12:00:00.500Z"
    assert e["distinct_id"] == "host-1"


@pytest.mark.parametrize("given,expected", [
    ("1795867200123", "2026-11-28T12:00:00.123Z"),
    ("2026-11-28T12:00:00Z", "2026-11-28T12:00:00.000Z"),
    ("2026-11-28t12:00:00.123456z", "2026-11-28T12:00:00.123Z"),
    ("2026-11-28 07:30:00-04:30", "2026-11-28T12:00:00.000Z"),
    ("2016-12-31T23:59:60Z", "2016-12-31T23:59:59.999Z"),
    ("9999-12-31T23:59:59.999Z", "9999-12-31T23:59:59.999Z"),
])
def test_timestamp_forms(collector, agent, given, expected):
    ok(run("--timestamp", given, "debug-ping", agent=agent))
    assert one_event(collector)["timestamp"] == expected


def test_defaults_uuidv7_now_and_agent_distinct_id(collector, make_agent):
    agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": 50},
                        "agent": {"distinct_id": "agent-default"}})
    before = time.time()
    ok(run("debug-ping", agent=agent))
    e = one_event(collector)
    assert e["distinct_id"] == "agent-default"
    assert e["uuid"][14] == "7", e["uuid"]
    ts = time.mktime(time.strptime(e["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert before - 2 <= ts <= time.time() + 1


def test_json_option_sends_one_whole_event(collector, agent):
    event = {"event": "project:created", "uuid": UUID, "distinct_id": "d-1",
             "timestamp": "2026-11-28T12:00:00.250Z",
             "properties": {"n": 1, "big": 18446744073709551615, "f": -0.5, "s": "x",
                            "nested": {"a": [1, {"b": None}]}, "dotted.key": True}}
    ok(run("--json", json.dumps(event), agent=agent))
    e = one_event(collector)
    assert own(e["properties"]) == event["properties"]
    assert (e["event"], e["uuid"], e["distinct_id"], e["timestamp"]) == \
        ("project:created", UUID, "d-1", "2026-11-28T12:00:00.250Z")


def test_json_option_integer_timestamp_and_option_defaults(collector, agent):
    ok(run("--distinct-id", "from-option", "--json",
           '{"event": "debug-ping", "timestamp": 1795867200123, "properties": null}', agent=agent))
    e = one_event(collector)
    assert e["timestamp"] == "2026-11-28T12:00:00.123Z"
    assert e["distinct_id"] == "from-option"
    assert own(e["properties"]) == {}


@pytest.mark.parametrize("how", [["-"], ["--json", "-"], ["--wait", "-"]])
def test_stdin_replays_every_orchest_payload(collector, agent, how):
    payloads = load_payloads()
    with open(PAYLOADS) as f:
        text = f.read()
    ok(run(*how, "--distinct-id", "replay", agent=agent, stdin=text))
    events = collector.wait_for_events(len(payloads), timeout=10)
    assert len(events) == len(payloads)
    assert [e["event"] for e in events] == [p["event"] for p in payloads]
    for e, p in zip(events, payloads):
        assert own(e["properties"]) == p["properties"]
        assert e["distinct_id"] == "replay"
    assert len({e["uuid"] for e in events}) == len(events)


def test_stdin_bad_lines_are_reported_by_number_and_the_rest_sent(collector, agent):
    lines = [
        '{"event": "debug-ping", "properties": {"i": 1}}',
        '',
        '{"event": "debug-ping", "properties": {"i": 2,}}',
        '[1, 2]',
        '{"properties": {}}',
        '{"event": "debug-ping", "colour": "red"}',
        '{"event": "debug-ping", "timestamp": "yesterday"}',
        '{"event": "debug-ping", "uuid": "not-a-uuid"}',
        '{"event": "debug-ping", "properties": {"a": 1, "a": 2}}',
        '{"event": "debug-ping", "properties": {"n": 123456789012345678901234}}',
        '   ',
        '{"event": "debug-ping", "properties": {"i": 3}}',
    ]
    r = run("-", agent=agent, stdin="\n".join(lines) + "\n")
    assert r.returncode == EXIT_DATA, r.stderr
    err = r.stderr
    assert "line 3, column 47: bad JSON: expected a \"quoted\" key, found '}'" in err
    assert "line 4: expected a JSON object" in err
    assert "line 5: \"event\" (the event's name) is missing" in err
    assert "line 6: unknown key \"colour\"" in err
    assert "line 7: \"timestamp\" must be milliseconds since the epoch or an RFC 3339" in err
    assert "line 8: \"uuid\" \"not-a-uuid\" is not a UUID" in err
    assert "line 9, column 48: bad JSON: duplicate key \"a\"" in err
    assert "line 10, column 45: bad JSON: integer 123456789012345678901234 is out of range" in err
    assert "8 of 10 event(s) failed" in err
    for n in (1, 2, 11, 12):
        assert f"line {n}:" not in err and f"line {n}," not in err
    events = collector.wait_for_events(2, timeout=10)
    time.sleep(0.3)
    assert [own(e["properties"]) for e in collector.events()] == [{"i": 1}, {"i": 3}]


def test_event_larger_than_the_protocol_allows_is_not_sent(collector, agent):
    big = json.dumps({"event": "debug-ping", "properties": {"blob": "x" * (1100 * 1024)}})
    small = json.dumps({"event": "debug-ping", "properties": {"after": True}})
    r = run("-", agent=agent, stdin=big + "\n" + small + "\n")
    assert r.returncode == EXIT_DATA
    assert "line 1 (event 'debug-ping'): not sent: the event is" in r.stderr
    assert "more than the 1048576" in r.stderr
    assert [own(e["properties"]) for e in collector.wait_for_events(1)] == [{"after": True}]


# ------------------------------------------------------------------ --wait

def test_wait_returns_after_the_ack(collector, agent):
    start = time.monotonic()
    ok(run("--wait", "project:created", "n:=1", agent=agent))
    assert time.monotonic() - start < 5
    assert own(one_event(collector)["properties"]) == {"n": 1}


def test_wait_reports_an_event_the_agent_rejects(collector, agent):
    r = run("--wait", "no-such:event", "n:=1", agent=agent)
    assert r.returncode == EXIT_REJECTED, r.stderr
    assert ("event 'no-such:event': rejected by the agent: unknown_event: the event name is not "
            "in the agent's registry") in r.stderr
    agent.stop()
    assert agent.stats()["dropped"] == 1
    assert collector.events() == []


def test_wait_names_the_rejected_stdin_line(collector, agent):
    lines = ['{"event": "debug-ping", "properties": {"i": 1}}',
             '{"event": "no-such:event"}',
             '{"event": "debug-ping", "properties": {"i": 3}}']
    r = run("--wait", "-", agent=agent, stdin="\n".join(lines))
    assert r.returncode == EXIT_REJECTED, r.stderr
    assert "line 2 (event 'no-such:event'): rejected by the agent: unknown_event" in r.stderr
    assert "1 of 3 event(s) failed" in r.stderr
    collector.wait_for_events(2)
    assert [own(e["properties"]) for e in collector.events()] == [{"i": 1}, {"i": 3}]


def test_without_wait_a_rejection_is_not_known(collector, agent):
    ok(run("no-such:event", agent=agent))
    agent.stop()
    assert agent.stats()["dropped"] == 1


def test_wait_gives_up_when_the_agent_buffer_is_full(collector, make_agent):
    collector.plan(action="hang", count=100, hang_timeout=30)
    agent = make_agent({"backend": backend(collector, max_in_flight=1, timeout_ms=60000),
                        "buffer": {"max_bytes": "64KiB"}, "events": {"max_event_bytes": 4096},
                        "batch": {"max_age_ms": 20, "max_bytes": "16KiB"}})
    # Fill the buffer until the agent stops reading (buffer.overflow = block)
    # and the socket takes no more; then let the last sealed batches settle.
    filler = connect(agent)
    filler.setblocking(False)
    event = msgpack.packb({"event": "debug-ping", "properties": {"pad": "p" * 200}})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            filler.send(event * 64)
        except BlockingIOError:
            time.sleep(0.3)
            try:
                filler.send(event * 64)
            except BlockingIOError:
                break
    else:
        pytest.fail("the agent never stopped reading")
    time.sleep(0.5)
    start = time.monotonic()
    r = run("--wait", "--timeout", "1500", "debug-ping", "last:=true", agent=agent)
    elapsed = time.monotonic() - start
    assert r.returncode == EXIT_NOT_ACKED, r.stderr
    assert f"event 'debug-ping': not acknowledged by the agent at {agent.socket} within 1500 ms" \
        in r.stderr
    assert "buffer may be full" in r.stderr
    assert 1.4 < elapsed < 6
    filler.close()


# ------------------------------------------------------------------ an absent agent

def stale_socket():
    """A socket file nothing listens on (a dead agent's), in a fresh directory."""
    path = os.path.join(tempfile.mkdtemp(prefix="ts-"), "agent.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()
    return path


@pytest.mark.parametrize("wait", [[], ["--wait"]])
@pytest.mark.parametrize("kind,reason", [("missing", "No such file or directory"),
                                         ("stale", "Connection refused")])
def test_absent_agent_fails_fast_and_says_why(wait, kind, reason):
    path = (os.path.join(tempfile.mkdtemp(prefix="ts-"), "none.sock") if kind == "missing"
            else stale_socket())
    start = time.monotonic()
    r = run(*wait, "-s", path, "debug-ping", "a=1")
    elapsed = time.monotonic() - start
    assert r.returncode == EXIT_UNREACHABLE, r.stderr
    assert f"the agent at {path} is unreachable: {reason}" in r.stderr
    assert "is telemetry-agent running?" in r.stderr
    assert elapsed < 5


def test_absent_agent_stdin_stops_at_once():
    path = os.path.join(tempfile.mkdtemp(prefix="ts-"), "none.sock")
    with open(PAYLOADS) as f:
        text = f.read()
    start = time.monotonic()
    r = run("-s", path, "-", stdin=text)
    assert r.returncode == EXIT_UNREACHABLE
    assert r.stderr.count("unreachable") == 1
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("wait,message", [
    ([], "telemetry-send: 1 event(s) not sent: the agent at {} is unreachable: "),
    (["--wait"], "telemetry-send: line 2 (event 'debug-ping'): not acknowledged: the agent at {} "
                 "is unreachable: "),
])
def test_agent_going_away_midway_is_reported(collector, make_agent, wait, message):
    agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": 50}})
    p = subprocess.Popen([tool(), "-s", agent.socket, "--timeout", "1500"] + wait + ["-"],
                         stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        p.stdin.write('{"event": "debug-ping"}\n')
        p.stdin.flush()
        collector.wait_for_events(1)
        agent.stop(check=False)
        start = time.monotonic()
        p.stdin.write('{"event": "debug-ping"}\n')
        p.stdin.close()
        assert p.wait(timeout=10) == EXIT_UNREACHABLE
        assert time.monotonic() - start < 5
        assert message.format(agent.socket) in p.stderr.read()
    finally:
        p.kill()
        p.wait()


def test_socket_from_environment_and_option_precedence(collector, agent):
    ok(run("debug-ping", "via=env", env={"TELEMETRY_SOCKET": agent.socket}))
    ok(run("-s", agent.socket, "debug-ping", "via=option",
           env={"TELEMETRY_SOCKET": "/nonexistent/agent.sock"}))
    r = run("debug-ping", env={"TELEMETRY_SOCKET": "/nonexistent/agent.sock"})
    assert r.returncode == EXIT_UNREACHABLE
    assert "the agent at /nonexistent/agent.sock is unreachable" in r.stderr
    events = collector.wait_for_events(2)
    assert sorted(e["properties"]["via"] for e in events) == ["env", "option"]


def test_default_socket_when_nothing_is_set():
    r = run("debug-ping", env={"TELEMETRY_SOCKET": ""})
    if r.returncode == 0:  # an agent listens on the default socket here: it was used
        assert os.path.exists("/run/telemetry/agent.sock")
        return
    assert r.returncode == EXIT_UNREACHABLE
    assert "the agent at /run/telemetry/agent.sock is unreachable" in r.stderr


# ------------------------------------------------------------------ errors

def refused(code, args, message):
    """The arguments are refused with code and message before any agent is tried."""
    r = run(*args, env={"TELEMETRY_SOCKET": "/nonexistent/agent.sock"})
    assert r.returncode == code, r.stderr
    assert message in r.stderr
    assert "unreachable" not in r.stderr


@pytest.mark.parametrize("args,message", [
    ([], "missing EVENT (the event's name), --json or - (events from stdin)"),
    (["debug-ping", "foo"], "argument 'foo': expected key=value (a string) or key:=JSON"),
    (["debug-ping", "=x"], "argument '=x': part 1 of the key is empty"),
    (["debug-ping", "a..b=1"], "argument 'a..b=1': part 2 of the key is empty (write a literal "
                               "dot as \\.)"),
    (["debug-ping", r"a\q=1"], r"argument 'a\q=1': '\q' is not an escape in a key"),
    (["debug-ping", "a=1", "a.b=2"], "conflicting properties: 'a.b=2' needs 'a' to be an "
                                     "object, but 'a=1' already set it to a string"),
    (["debug-ping", "a.b=2", "a:=1"], "conflicting properties: 'a:=1' sets 'a' to an integer, "
                                      "but 'a.b=2' already set it to an object"),
    (["debug-ping", "x.y=1", "x.y=2"], "conflicting properties: 'x.y=2' sets 'x.y' to a string, "
                                       "but 'x.y=1' already set it to a string"),
    (["debug-ping", 'a:={"b": {"c": 1}}', "a.b.c.d=2"],
     "conflicting properties: 'a.b.c.d=2' needs 'a.b.c' to be an object, but "
     "'a:={\"b\": {\"c\": 1}}' already set it to an integer"),
    (["debug-ping", "a.b=1", 'a:={"b": []}'], "conflicting properties: 'a:={\"b\": []}' sets "
                                               "'a.b' to an array, but 'a.b=1' already set it"),
    (["--json", "{}", "debug-ping"], "--json gives the whole event: no EVENT ('debug-ping')"),
    (["-", "a=1"], "'a=1': key=value arguments do not go with - (events from stdin)"),
    (["--uuid", UUID, "-"], "--uuid names one event; with - (stdin) every event needs its own"),
    (["--timeout", "5s", "debug-ping"], "--timeout: '5s' is not a number of milliseconds"),
    (["--timeout", "-1", "debug-ping"], "--timeout: '-1' is not a number of milliseconds"),
    (["-s", "", "debug-ping"], "-s/--socket: the path is empty"),
    (["--bogus", "debug-ping"], "unrecognized option '--bogus'"),
    (["debug-ping", "--uuid"], "option '--uuid' requires an argument"),
])
def test_usage_errors_exit_2_with_a_message(args, message):
    refused(EXIT_USAGE, args, message)


@pytest.mark.parametrize("args,message", [
    (["debug-ping", "x:=[1,"], "argument 'x:=[1,': bad JSON after ':=', at column 4: expected a "
                               "JSON value, found the end of the input"),
    (["debug-ping", "x:=bob"], "argument 'x:=bob': bad JSON after ':=', at column 1: expected a "
                               "JSON value"),
    (["debug-ping", "x:=18446744073709551616"], "integer 18446744073709551616 is out of range"),
    (["debug-ping", "x:=-9223372036854775809"], "integer -9223372036854775809 is out of range"),
    (["debug-ping", "x:=1e999"], "number 1e999 is too large for a double"),
    (["debug-ping", "x:=NaN"], "at column 1: expected a JSON value"),
    (["debug-ping", "x:=01"], "at column 2: a number with a leading zero"),
    (["debug-ping", 'x:="\\ud800"'], "a high surrogate \\uD800 not followed by a low one"),
    (["debug-ping", 'x:={"a\\u0000b": 1}'], "at column 2: a key containing \\u0000 (not "
                                             "supported)"),
    (["debug-ping", "x:=" + "[" * 40 + "]" * 40], "nested deeper than 32 levels"),
    (["debug-ping", "x:=" + "[" * 31 + "]" * 31], "property 'x' nests deeper than 32 levels"),
    (["--uuid", "xyz", "debug-ping"], "--uuid: 'xyz' is not a UUID (expected 8-4-4-4-12 hex"),
    (["--timestamp", "2026-02-30T00:00:00Z", "debug-ping"],
     "--timestamp: '2026-02-30T00:00:00Z' is neither an RFC 3339 time"),
    (["--timestamp", "1969-12-31T23:59:59Z", "debug-ping"],
     "--timestamp: -1000 ms is outside 1970-01-01 to 9999-12-31"),
    (["--timestamp", "soon", "debug-ping"], "--timestamp: 'soon' is neither"),
    (["--distinct-id", "", "debug-ping"], "--distinct-id: must be 1 to 200 bytes (it is 0)"),
    (["--distinct-id", "d" * 201, "debug-ping"], "--distinct-id: must be 1 to 200 bytes (it is "
                                                 "201)"),
    (["e" * 201], "event name '" + "e" * 40 + "...' is 201 bytes; at most 200 are allowed"),
    (["--json", '{"event": "debug-ping",\n "properties": [1]}'],
     "--json: \"properties\" must be an object, found an array"),
    (["--json", '{"event": "debug-ping",\n  "x" 1}'],
     "--json, line 2, column 7: bad JSON: expected ':' after an object key, found '1'"),
    (["--json", '{"event": "debug-ping"} {}'],
     "--json, column 25: bad JSON: expected nothing more after the JSON value, found '{'"),
    (["--json", '{"event": ""}'], "event name '': must not be empty"),
])
def test_bad_values_exit_3_with_a_message(args, message):
    refused(EXIT_DATA, args, message)


def test_invalid_utf8_in_json_is_refused(agent):
    r = subprocess.run([tool(), "-s", agent.socket, "-"], input=b'{"event": "debug-ping\xff"}\n',
                       capture_output=True, timeout=30)
    assert r.returncode == EXIT_DATA
    assert b"line 1, column 22: bad JSON: byte 0xff that is not valid UTF-8" in r.stderr


def test_help_and_version():
    r = ok(run("--help"))
    for text in ["Usage: telemetry-send", "key:=JSON", "--wait", "--timeout", "--json",
                 "$TELEMETRY_SOCKET", "Exit status:", "4 the agent is unreachable",
                 "Examples:", "telemetry-send --wait - < events.ndjson"]:
        assert text in r.stdout, text
    r = ok(run("--version"))
    assert r.stdout.startswith("telemetry-send 0.1.0 (libtelemetry ")


def test_install_puts_the_tool_in_bin(tmp_path):
    prefix = tmp_path / "prefix"
    r = subprocess.run(["cmake", "--install", BUILD, "--prefix", str(prefix)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    installed = prefix / "bin" / "telemetry-send"
    assert installed.is_file()
    r = subprocess.run([str(installed), "--version"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and r.stdout.startswith("telemetry-send ")
