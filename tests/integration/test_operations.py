"""
The agent as operators meet it: redirects from the backend, signals a
process manager or a person sends, standard error and standard output that
are read slowly or not at all (and left as they were found), truthful exit
logs, the file descriptor limit, and producer text in log lines.
"""
import fcntl
import os
import re
import resource
import signal
import socket
import subprocess
import threading
import time

import msgpack
import pytest

from conftest import AGENT_BIN, backend, connect, not_under_valgrind, send_events

# valgrind holds its client to the open-file limit it started with (it
# refuses setrlimit above it and keeps the top descriptors for itself)
NOT_UNDER_VALGRIND = not_under_valgrind("it fixes the agent's open-file limit at its start value")

EVENT = {"event": "project:created", "properties": {"n": 1}}
F_SETPIPE_SZ = 1031


def events(n, start=0):
    return [{"event": "project:created", "properties": {"seq": start + i}} for i in range(n)]


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_followed_with_method_and_body(collector, make_agent, status):
    moved = collector.base_url + "/moved"
    collector.plan(status, count=2, headers={"Location": moved}, body=b"")
    agent = make_agent({"backend": backend(collector, gzip="false")})
    send_events(agent, events(3))
    got = collector.wait_for_events(3)
    assert [e["properties"]["seq"] for e in got] == [0, 1, 2]
    first, second = collector.requests()[:2]
    assert first["path"] == "/batch" and second["path"] == "/moved"
    assert second["method"] == "POST"
    assert second["body"] == first["body"]
    # a second redirect to the same place is not logged again
    send_events(agent, events(2, 3))
    collector.wait_for_events(5)
    agent.stop()
    stats = agent.stats()
    assert stats["delivered"] == 5 and stats["dropped"] == 0
    lines = [l for l in agent.stderr.splitlines() if "with Location:" in l]
    assert len(lines) == 1, agent.stderr
    assert f"answered {status} (" in lines[0] and moved in lines[0]
    assert "set [backend] url" in lines[0]


def test_redirect_without_location_is_retried_not_dropped(collector, make_agent):
    collector.plan(301, count=2, body=b"")
    agent = make_agent({"backend": backend(collector)})
    send_events(agent, [EVENT])
    collector.wait_for_events(1, timeout=10)
    agent.stop()
    assert agent.stats()["delivered"] == 1
    assert agent.stats()["dropped"] == 0
    assert "301 (Moved Permanently)" in agent.stderr


def test_redirect_loop_is_bounded_and_retried(collector, make_agent):
    loop = collector.base_url + "/batch"
    collector.plan(307, count=6, headers={"Location": loop}, body=b"")
    agent = make_agent({"backend": backend(collector)})
    send_events(agent, [EVENT])
    collector.wait_for_events(1, timeout=10)
    agent.stop()
    assert agent.stats()["delivered"] == 1 and agent.stats()["dropped"] == 0
    assert re.search(r"[Mm]aximum.*redirects|redirects", agent.stderr), agent.stderr


def test_signals_a_manager_may_send_are_logged_and_ignored(collector, make_agent):
    agent = make_agent({"backend": backend(collector)})
    for sig in (signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGPWR,
                signal.SIGRTMIN, signal.SIGPIPE):
        agent.proc.send_signal(sig)
        time.sleep(0.1)
        assert agent.proc.poll() is None, f"the agent died of {sig!r}"
    send_events(agent, events(10))
    collector.wait_for_events(10)
    agent.stop()
    assert agent.stats()["delivered"] == 10
    for name in ("SIGUSR1", "SIGUSR2", "SIGALRM", "SIGPWR"):
        assert f"{name}: ignored" in agent.stderr, name
    # SIGHUP reloads the configuration (test_reload.py): here, the same file
    assert "reload (SIGHUP): done, 0 settings changed" in agent.stderr
    assert "stopped:" in agent.stderr
    assert not os.path.exists(agent.socket)


def test_sigquit_shuts_down_like_sigterm(collector, make_agent):
    agent = make_agent({"backend": backend(collector)})
    send_events(agent, events(4))
    agent.stop(signal.SIGQUIT)
    assert agent.stats()["delivered"] == 4
    assert "SIGQUIT: shutting down" in agent.stderr


def start_raw(tmp_path, sections, wait=True, **popen):
    """An agent started with the caller's stdout/stderr (the Agent fixture
    writes them to files), waited for until its socket (the one sections
    give, else one in tmp_path) is there unless wait is False. Returns
    (proc, socket path)."""
    lines = []
    base = {"agent": {"socket": os.path.join(str(tmp_path), "s", "agent.sock")}}
    for name, keys in sections.items():
        base.setdefault(name, {}).update(keys)
    for name, keys in base.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {v}" for k, v in keys.items()]
    config = tmp_path / "raw.ini"
    config.write_text("\n".join(lines) + "\n")
    sock = base["agent"]["socket"]
    proc = subprocess.Popen([AGENT_BIN, "-c", str(config)], **popen)
    deadline = time.monotonic() + 30
    while wait and not os.path.exists(sock):
        assert proc.poll() is None, f"agent exited {proc.returncode}"
        assert time.monotonic() < deadline, "agent did not start"
        time.sleep(0.02)
    return proc, sock


def send_acked(sock_path, items, chunk_prefix="c"):
    """Send each event with a chunk on one connection and wait for every ack."""
    import socket as socketlib
    with socketlib.socket(socketlib.AF_UNIX) as s:
        s.connect(sock_path)
        s.settimeout(30)
        payload = b"".join(msgpack.packb(dict(e, chunk=f"{chunk_prefix}{i}"))
                           for i, e in enumerate(items))
        s.sendall(payload)
        unpacker = msgpack.Unpacker(raw=False)
        acks = 0
        while acks < len(items):
            data = s.recv(65536)
            assert data, f"connection closed after {acks} acks"
            unpacker.feed(data)
            for reply in unpacker:
                assert "rejected" not in reply and "error" not in reply, reply
                acks += 1
    return acks


def drain(fd, sink, pause=0.0, chunk=65536):
    """Read fd to its end into the bytearray sink, pausing between reads."""
    while True:
        data = os.read(fd, chunk)
        if not data:
            return
        sink.extend(data)
        if pause:
            time.sleep(pause)


def test_unread_stderr_never_blocks_the_agent(collector, tmp_path):
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, 4096)
    proc, sock = start_raw(tmp_path, {"agent": {"log_level": "debug"},
                                      "events": {"registry": ""},
                                      "backend": backend(collector)},
                           stdout=subprocess.DEVNULL, stderr=w)
    try:
        # 300 connections: 600 debug lines, far more than the pipe holds
        for i in range(300):
            send_events_path(sock, events(10, i * 10))
        collector.wait_for_events(3000, timeout=30)
        proc.send_signal(signal.SIGTERM)
        # nobody reads: the agent still exits, within its log flush bound
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(w)
    err = bytearray()
    drain(r, err)
    os.close(r)
    assert len(collector.events()) == 3000


def test_stderr_read_late_gets_a_summary_of_lost_lines(collector, tmp_path):
    r, w = os.pipe()
    fcntl.fcntl(w, F_SETPIPE_SZ, 4096)
    proc, sock = start_raw(tmp_path, {"agent": {"log_level": "debug", "max_connections": "8192"},
                                      "events": {"registry": ""},
                                      "backend": backend(collector)},
                           stdout=subprocess.DEVNULL, stderr=w)
    os.close(w)
    err = bytearray()
    try:
        # 4000 connections: 8000 debug lines, more than the agent queues
        for i in range(4000):
            send_events_path(sock, events(1, i))
        collector.wait_for_events(4000, timeout=60)
        reader = threading.Thread(target=drain, args=(r, err))
        reader.start()  # the stream drains
        time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.decode(errors="replace")
    m = re.search(r"(\d+) log lines were not written: standard error was not being read", text)
    assert m and int(m.group(1)) > 0, text[-2000:]
    assert "stopped:" in text
    assert "all 4000 events received were delivered" in text


def send_events_path(sock_path, items):
    import socket as socketlib
    with socketlib.socket(socketlib.AF_UNIX) as s:
        s.connect(sock_path)
        s.sendall(b"".join(msgpack.packb(e) for e in items))


def test_stdout_backend_delivers_everything_to_a_slow_reader(tmp_path):
    r, w = os.pipe()
    out = bytearray()
    reader = threading.Thread(target=drain, args=(r, out, 0.01, 4096))
    reader.start()
    proc, sock = start_raw(tmp_path, {"batch": {"max_events": "1"},
                                      "events": {"registry": ""}},
                           stdout=w, stderr=subprocess.PIPE)
    try:
        assert send_acked(sock, events(3000)) == 3000
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    flags = fcntl.fcntl(w, fcntl.F_GETFL)
    os.close(w)
    reader.join(timeout=30)
    os.close(r)
    lines = out.decode().splitlines()
    assert len(lines) == 3000, stderr.decode()[-2000:]
    seqs = sorted(msgpack_free_seq(line) for line in lines)
    assert seqs == list(range(3000))
    assert proc.returncode == 0
    assert "delivered=3000" in stderr.decode()
    # the pipe the agent shared with this process is still blocking
    assert not flags & os.O_NONBLOCK


def msgpack_free_seq(line):
    import json
    body = json.loads(line)
    assert "api_key" not in body
    (event,) = body["batch"]
    return event["properties"]["seq"]


def test_shared_stdout_and_stderr_are_left_blocking(collector, tmp_path):
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    sinks = (bytearray(), bytearray())
    readers = [threading.Thread(target=drain, args=(fd, sink))
               for fd, sink in ((out_r, sinks[0]), (err_r, sinks[1]))]
    for t in readers:
        t.start()
    proc, sock = start_raw(tmp_path, {"events": {"registry": ""}}, stdout=out_w, stderr=err_w)
    send_events_path(sock, events(5))
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    for fd in (out_w, err_w):
        assert not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK
        os.close(fd)
    for t in readers:
        t.join(timeout=10)
    assert len(sinks[0].decode().splitlines()) >= 1
    assert "stopped:" in sinks[1].decode()


def test_start_up_failure_says_nothing_was_delivered(tmp_path):
    sock = tmp_path / "not-a-socket"
    sock.write_text("a file")
    config = tmp_path / "a.ini"
    config.write_text(f"[agent]\nsocket = {sock}\n[events]\nregistry =\n")
    res = subprocess.run([AGENT_BIN, "-c", str(config)], capture_output=True, text=True,
                         timeout=30)
    assert res.returncode == 1
    assert "is not a socket" in res.stderr
    assert "did not start" in res.stderr
    assert "were delivered" not in res.stderr
    assert sock.read_text() == "a file"


def test_exit_log_matches_the_counters_after_a_rejected_batch(collector, make_agent):
    collector.plan(400, body=b'{"error": "bad"}')
    agent = make_agent({"backend": backend(collector)})
    send_events(agent, events(3))
    collector.wait_for_requests(1)
    time.sleep(0.2)
    agent.stop()
    stats = agent.stats()
    assert stats["dropped_backend_rejected"] == 3 and stats["delivered"] == 0
    assert "were delivered" not in agent.stderr
    assert "3 events received: 0 delivered, 3 not delivered" in agent.stderr
    assert "400 (Bad Request)" in agent.stderr


@NOT_UNDER_VALGRIND
def test_fd_limit_is_raised_to_fit_max_connections(make_agent):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    conns = 2000 if hard == resource.RLIM_INFINITY else min(2000, hard - 64)
    assert conns > 256, f"the hard limit of open files here is only {hard}"
    agent = make_agent({"agent": {"max_connections": str(conns)}}, start=False)
    agent.preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    agent.start()
    limits = open(f"/proc/{agent.proc.pid}/limits").read()
    soft = int(re.search(r"Max open files\s+(\d+)", limits).group(1))
    assert soft >= conns + 64
    agent.stop()
    assert "file descriptors" not in agent.stderr


@NOT_UNDER_VALGRIND
def test_fd_limit_too_low_is_said_at_start_up(make_agent):
    agent = make_agent({"agent": {"max_connections": "2000"}}, start=False)
    agent.preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (128, 256))
    agent.start()
    agent.stop()
    # 64 of the agent's own, and the operator endpoints' http.max_connections = 64
    assert ("agent.max_connections = 2000 needs 2128 file descriptors (with 64 for the HTTP "
            "listeners)") in agent.stderr
    assert "hard limit 256" in agent.stderr


def test_a_socket_path_one_byte_too_long_stops_start_up(tmp_path):
    # the socket is bound as PATH~ before it is linked into place, so a path
    # takes one byte less than sun_path's 107: 106 bytes work, 107 do not
    base = str(tmp_path) + "/"
    for length, works in ((106, True), (107, False)):
        sock = base + "s" * (length - len(base))
        proc, _ = start_raw(tmp_path, {"agent": {"socket": sock}, "events": {"registry": ""},
                                       "backend": {"url": "stdout"}},
                            wait=works, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
        if works:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(sock)  # listening the moment the path is there
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            assert not os.path.exists(sock) and not os.path.exists(sock + "~")
        else:
            assert proc.wait(timeout=30) != 0
            err = proc.stderr.read()
            assert (f"[agent] socket = '{sock}' is not allowed (allowed: a path of at most "
                    "106 bytes)") in err, err
        proc.stderr.close()


def test_unknown_environment_setting_stops_start_up(tmp_path):
    env = dict(os.environ, TELEMETRY_AGENT_EVENTS_REGISTRY="", TELEMETRY_AGENT_BATCH_MAX_EVENT="5",
               TELEMETRY_AGENT_SERVICE_HOST="10.0.0.1")
    res = subprocess.run([AGENT_BIN, "--check-config"], capture_output=True, text=True,
                         timeout=30, env=env)
    assert res.returncode == 1
    assert "TELEMETRY_AGENT_BATCH_MAX_EVENT: no such setting" in res.stderr
    env = dict(os.environ, TELEMETRY_AGENT_EVENTS_REGISTRY="", TELEMETRY_AGENT_BATCH_MAX_EVENTS="5",
               TELEMETRY_AGENT_SERVICE_HOST="10.0.0.1",
               TELEMETRY_AGENT_PROPERTY_V="app_properties.orchest_version=v2023.06.1")
    res = subprocess.run([AGENT_BIN, "--check-config"], capture_output=True, text=True,
                         timeout=30, env=env)
    assert res.returncode == 0, res.stderr


def test_properties_from_the_environment_reach_events(collector, make_agent):
    agent = make_agent({"backend": backend(collector)},
                       env={"TELEMETRY_AGENT_PROPERTY_V":
                            "app_properties.orchest_version=v2023.06.1"})
    send_events(agent, [EVENT])
    (event,) = collector.wait_for_events(1)
    agent.stop()
    assert event["properties"]["app_properties"] == {"orchest_version": "v2023.06.1"}


def test_producer_text_is_escaped_in_log_lines(make_agent):
    agent = make_agent()
    forged = "x\n2026-01-01T00:00:00.000Z error: forged line\x1b[2J"
    send_events(agent, [{"event": forged}, {"event": "project:created", forged: 1}])
    time.sleep(0.3)
    agent.stop()
    assert "\nforged" not in agent.stderr and "\n2026-01-01T00:00:00.000Z error: forged" \
        not in agent.stderr
    assert "\x1b" not in agent.stderr
    assert "x\\x0a2026-01-01T00:00:00.000Z error: forged line\\x1b[2J" in agent.stderr
    assert agent.stats()["dropped_unknown_event"] == 1
    assert agent.stats()["dropped_unknown_key"] == 1
