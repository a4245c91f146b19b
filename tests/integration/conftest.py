"""
Shared fixtures for the integration tests: the real telemetry-agent binary,
started with a config written per test, the HTTP test collector as its
backend, and small producer helpers that write msgpack to the agent's socket.

The binary is taken from $TELEMETRY_TEST_AGENT_BIN (set by ctest), else build/.
"""
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

import msgpack
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "collector"))

from collector import Collector  # noqa: E402

AGENT_BIN = os.environ.get("TELEMETRY_TEST_AGENT_BIN", os.path.join(ROOT, "build", "telemetry-agent"))
# Every agent the tests start serves its operator endpoints on a free port of
# its own (the default, 0.0.0.0:9464, would make agents started at once
# collide); Agent.ops_url() says which.
os.environ["TELEMETRY_AGENT_HTTP_LISTEN"] = "127.0.0.1:0"
EVENTS_FILE = os.path.join(ROOT, "proto", "events.txt")
# TELEMETRY_TEST_VALGRIND=1: every agent runs under valgrind's memcheck, and
# an error or a leak makes it exit 99 (Agent.stop() then fails the test).
VALGRIND = ["valgrind", "--tool=memcheck", "--leak-check=full", "--quiet",
            "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
            "--error-exitcode=99", f"--suppressions={ROOT}/tests/valgrind.supp"] \
    if os.environ.get("TELEMETRY_TEST_VALGRIND") == "1" else []


# The exit status that ctest reads as "skipped" (SKIP_RETURN_CODE in
# CMakeLists.txt).
EXIT_ALL_SKIPPED = 77


def pytest_sessionfinish(session, exitstatus):
    """A run in which every test was skipped (the image test where buildah
    is not installed, say) is reported to ctest as not run, not as passed."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    stats = reporter.stats if reporter is not None else {}
    if exitstatus == 0 and stats.get("skipped") and not stats.get("passed"):
        session.exitstatus = EXIT_ALL_SKIPPED


def not_under_valgrind(why):
    """Marks a test left to the plain and sanitized builds: under memcheck
    what it checks would be valgrind's doing, not the agent's (why says how).
    pytest reports it as skipped there."""
    return pytest.mark.skipif(bool(VALGRIND), reason="under valgrind: " + why)


def load_payloads():
    """Realistic Orchest-shaped events ({"event", "properties"}), 100 B to 1.5 KB."""
    import json
    with open(os.path.join(HERE, "orchest-payloads.ndjson")) as f:
        return [json.loads(line) for line in f if line.strip()]


class Agent:
    """One agent process with its own config file and socket."""

    def __init__(self, tmp_path, sections, env=None):
        self.dir = tmp_path
        # sun_path holds 107 bytes: keep the socket path short
        self.socket = os.path.join(tempfile.mkdtemp(prefix="ta-"), "run", "agent.sock")
        self.config = tmp_path / "agent.ini"
        self.config.write_text(self.config_text(sections))
        self.env = dict(os.environ)
        self.env.update(env or {})
        self.proc = None
        self.preexec = None  # run in the child before exec (e.g. setrlimit)
        self.wrapper = list(VALGRIND)  # a command the agent runs under
        self.stdout = self.stderr = ""
        self.returncode = None

    def config_text(self, sections):
        """The INI text of sections over the tests' base (the agent's own
        socket, a short grace, the registry)."""
        base = {"agent": {"socket": self.socket, "shutdown_grace_ms": "5000"},
                "events": {"registry": EVENTS_FILE}}
        for name, keys in sections.items():
            base.setdefault(name, {}).update(keys)
        lines = []
        for name, keys in base.items():
            lines.append(f"[{name}]")
            lines += [f"{k} = {v}" for k, v in keys.items()]
        return "\n".join(lines) + "\n"

    def start(self, wait=True):
        self.stdout_path = self.dir / "stdout.txt"
        self.stderr_path = self.dir / "stderr.txt"
        self.proc = subprocess.Popen(
            [*self.wrapper, AGENT_BIN, "-c", str(self.config)], env=self.env,
            stdout=open(self.stdout_path, "wb"), stderr=open(self.stderr_path, "wb"),
            preexec_fn=self.preexec)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited {self.proc.returncode}: {self.read_stderr()}")
            try:
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(self.socket)
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("agent did not start listening: " + self.read_stderr())

    def logged_url(self, what, timeout=10):
        """The http:// URL the start-up line gives after `what` (it may be
        written a moment after the socket answers)."""
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(what + r" on (http://[^\s;]+)", self.read_stderr())
            if m:
                return m.group(1)
            assert time.monotonic() < deadline, f"no {what} in:\n" + self.read_stderr()
            time.sleep(0.05)

    def ops_url(self):
        """http://HOST:PORT of the operator endpoints."""
        return self.logged_url("operator endpoints")

    def relay_url(self):
        """http://HOST:PORT/PATH of the browser relay."""
        return self.logged_url("browser relay")

    def metric(self, name):
        """The value of telemetry_agent_<name> (no labels) in /metrics now."""
        import urllib.request
        with urllib.request.urlopen(self.ops_url() + "/metrics", timeout=5) as r:
            text = r.read().decode()
        m = re.search(rf"^telemetry_agent_{name} (\d+)$", text, re.M)
        assert m, f"no {name} in /metrics"
        return int(m.group(1))

    def status(self):
        """/status, parsed."""
        import json
        import urllib.request
        with urllib.request.urlopen(self.ops_url() + "/status", timeout=5) as r:
            return json.loads(r.read())

    def wait_received(self, n, timeout=20):
        """Until the agent has taken n events in (whatever became of them)."""
        deadline = time.monotonic() + timeout
        while self.status()["events"]["received"] < n:
            assert time.monotonic() < deadline, f"the agent never received {n} events"
            time.sleep(0.02)

    def read_stderr(self):
        return self.stderr_path.read_text(errors="replace")

    def read_stdout(self):
        return self.stdout_path.read_text(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=20, check=True):
        """Signal the agent and wait; with check, it must exit 0 (a sanitizer
        finding at exit makes it fail)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.returncode = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("agent did not exit after the signal: " + self.read_stderr())
        self.stderr = self.read_stderr()
        self.stdout = self.read_stdout()
        self.proc = None
        if check:
            assert self.returncode == 0, f"agent exited {self.returncode}:\n{self.stderr}"
        return self.returncode

    def stats(self):
        """Counters from the agent's final 'stopped:' log line."""
        m = re.search(r"stopped: (.*)", self.stderr)
        assert m, "no stopped: line in agent log:\n" + self.stderr
        return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(1))}


@pytest.fixture
def collector():
    with Collector() as c:
        yield c


@pytest.fixture
def make_agent(tmp_path):
    agents = []

    def make(sections=None, env=None, start=True, subdir=None):
        d = tmp_path / (subdir or f"agent{len(agents)}")
        d.mkdir()
        a = Agent(d, sections or {}, env)
        agents.append(a)
        if start:
            a.start()
        return a

    yield make
    for a in agents:
        if a.proc is not None:
            a.proc.kill()
            a.proc.wait()


def backend(collector, **keys):
    """[backend] section pointing at the collector."""
    section = {"url": collector.url, "api_key": "phc_test_key", "retry_initial_ms": "100",
               "retry_max_ms": "400"}
    section.update({k: str(v) for k, v in keys.items()})
    return section


def connect(agent):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(agent.socket)
    return s


def send_events(agent, events):
    """Send events (dicts) on one connection, then close it."""
    with connect(agent) as s:
        s.sendall(b"".join(msgpack.packb(e) for e in events))


def send_acked(sock, unpacker, event, chunk, timeout=5):
    """Send event with chunk on sock and return the agent's reply to it."""
    sock.settimeout(timeout)
    sock.sendall(msgpack.packb(dict(event, chunk=chunk)))
    for reply in unpacker:
        return reply
    while True:
        unpacker.feed(sock.recv(4096))
        for reply in unpacker:
            return reply


def read_until_closed(sock, timeout=10):
    """Every msgpack reply the agent writes on sock until it closes it."""
    sock.settimeout(timeout)
    unpacker = msgpack.Unpacker(raw=False)
    replies = []
    while True:
        data = sock.recv(65536)
        if not data:
            return replies
        unpacker.feed(data)
        replies.extend(unpacker)


def read_to_close(sock, timeout=10):
    """Every byte the peer writes on sock until it closes it."""
    sock.settimeout(timeout)
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def read_within(sock, seconds):
    """What the peer writes on sock within seconds (b"" if nothing)."""
    sock.settimeout(seconds)
    try:
        return sock.recv(4096)
    except socket.timeout:
        return b""
