"""
The agent under valgrind's memcheck through a day in its life, in small:
native events with acknowledgements, Fluent Forward messages, refused and
malformed input, the relay, the operator endpoints, a reload, the disk
spool, a backend that fails and recovers, and a graceful stop. Memcheck
must report no error and no leak. Suppressions (tests/valgrind.supp) are
for libraries only, each with its reason. Skipped, NOT RUN, in the
sanitizer build (valgrind and AddressSanitizer do not mix).
"""
import json
import re
import shutil
import signal
import time
import urllib.request

import msgpack
import pytest

from conftest import HERE, ROOT, backend, connect, send_acked, send_events
from test_pressure import SANITIZED

pytestmark = pytest.mark.skipif(
    SANITIZED or shutil.which("valgrind") is None,
    reason="NOT RUN: needs valgrind and a build without AddressSanitizer")


def test_memcheck_finds_no_error_and_no_leak(collector, make_agent, tmp_path):
    log = tmp_path / "memcheck.txt"
    agent = make_agent({"backend": backend(collector, retry_initial_ms=50, retry_max_ms=200),
                        "batch": {"max_age_ms": "50"},
                        "spool": {"dir": str(tmp_path / "spool")},
                        "relay": {"listen": "127.0.0.1:0"},
                        "agent": {"shutdown_grace_ms": "10000"}}, start=False)
    agent.wrapper = ["valgrind", "--tool=memcheck", "--leak-check=full",
                     "--show-leak-kinds=definite,indirect", "--errors-for-leak-kinds=definite,indirect",
                     "--error-exitcode=99", "--track-fds=no", f"--log-file={log}",
                     f"--suppressions={ROOT}/tests/valgrind.supp"]
    agent.start()
    collector.plan(status=503, count=2)  # fails, then recovers
    with connect(agent) as s:
        unpacker = msgpack.Unpacker(raw=False)
        for i in range(20):
            reply = send_acked(s, unpacker, {"event": "project:created",
                                             "properties": {"i": i, "note": "a@b.example"}},
                               f"c{i}", timeout=30)
            assert reply == {"ack": f"c{i}"}, reply
        assert "rejected" in send_acked(s, unpacker, {"event": "no:such-event"}, "bad", timeout=30)
    send_events(agent, [["orchest", 1700000000, {"event": "project:created", "n": 1}]])
    with connect(agent) as s:
        s.sendall(b"\xc1")  # not msgpack: closed
    body = json.dumps({"event": "project:created", "properties": {"relay": True}}).encode()
    request = urllib.request.Request(agent.relay_url(), data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 202
    for path in ("/metrics", "/status", "/healthz"):
        with urllib.request.urlopen(agent.ops_url() + path, timeout=30) as r:
            r.read()
    agent.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 30
    while "reload (SIGHUP): done" not in agent.read_stderr():
        assert time.monotonic() < deadline, agent.read_stderr()
        time.sleep(0.1)
    collector.wait_for_events(22, timeout=60)
    agent.stop(timeout=60)
    report = log.read_text()
    assert re.search(r"ERROR SUMMARY: 0 errors", report), report[-4000:]
    assert "definitely lost" not in report or "definitely lost: 0 bytes" in report, report[-4000:]
    assert agent.stats()["delivered"] == 22
