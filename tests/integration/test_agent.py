"""
The agent as a process: socket creation and safety, framing across reads,
validation and its counters, bad input isolation, the disabled switch,
standard-output mode, buffer bounds, configuration errors and secrets.
"""
import os
import socket
import stat
import subprocess
import sys
import time

import msgpack

from conftest import AGENT_BIN, ROOT, Agent, backend, connect, read_until_closed, send_events

VALID = {"event": "project:created", "properties": {"n": 1}}


def run_agent(*args, env=None):
    return subprocess.run([AGENT_BIN, *args], capture_output=True, text=True, timeout=30,
                          env=env)


def test_socket_created_with_mode_and_parent_directory(make_agent):
    agent = make_agent()
    st = os.stat(agent.socket)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660
    agent.stop()
    assert not os.path.exists(agent.socket), "socket file left behind"


def test_socket_mode_and_group_are_applied(make_agent):
    agent = make_agent({"agent": {"socket_mode": "0600", "socket_group": str(os.getgid() + 1)}})
    st = os.stat(agent.socket)
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert st.st_gid == os.getgid() + 1
    agent.stop()


def test_stale_socket_is_replaced(make_agent):
    agent = make_agent(start=False)
    os.makedirs(os.path.dirname(agent.socket))
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(agent.socket)
    stale.close()  # bound but nobody listening: stale
    agent.start()
    send_events(agent, [VALID])
    agent.stop()
    assert agent.stats()["received"] == 1
    assert "removing stale socket" in agent.stderr


def test_second_agent_on_a_live_socket_refuses(make_agent, tmp_path):
    first = make_agent()
    second = Agent(tmp_path, {})
    second.socket = first.socket
    second.config.write_text(first.config.read_text())
    second.start(wait=False)
    assert second.proc.wait(timeout=10) != 0
    assert "another agent is already listening" in second.read_stderr()
    second.proc = None
    send_events(first, [VALID])  # the first one is unharmed
    first.stop()
    assert first.stats()["received"] == 1


def test_path_that_is_not_a_socket_is_left_alone(make_agent):
    agent = make_agent(start=False)
    os.makedirs(os.path.dirname(agent.socket))
    with open(agent.socket, "w") as f:
        f.write("precious")
    agent.start(wait=False)
    assert agent.proc.wait(timeout=10) != 0
    assert "not a socket" in agent.read_stderr()
    agent.proc = None
    assert open(agent.socket).read() == "precious"


def test_objects_split_across_reads_and_many_per_read(collector, make_agent):
    agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": 50}})
    events = [{"event": "project:created", "properties": {"i": i, "pad": "x" * 300}}
              for i in range(50)]
    data = b"".join(msgpack.packb(e) for e in events)
    with connect(agent) as s:
        first = msgpack.packb(events[0])
        for b in first:  # one byte at a time
            s.sendall(bytes([b]))
            time.sleep(0.001)
        s.sendall(data[len(first):])  # the other 49 in one write
    got = collector.wait_for_events(50, timeout=10)
    agent.stop()
    assert sorted(e["properties"]["i"] for e in got) == list(range(50))


def test_rejections_are_counted_and_the_connection_goes_on(collector, make_agent):
    agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": 50}})
    bad = [
        {"event": "no:such:event"},
        {"properties": {}},
        {"event": "project:created", "colour": "red"},
        {"event": "project:created", "timestamp": "yesterday"},
        {"event": "project:created", "uuid": "not-a-uuid"},
        {"event": "project:created", "properties": [1, 2]},
        {"event": "project:created", "distinct_id": 5},
        "a string",
        [1, 2, 3],
        {"event": "project:created", "properties": {"big": "x" * 40000}},
    ]
    send_events(agent, bad + [VALID])
    collector.wait_for_events(1, timeout=10)
    agent.stop()
    stats = agent.stats()
    for reason in ["unknown_event", "missing_event", "unknown_key", "bad_timestamp", "bad_uuid",
                   "bad_properties", "bad_distinct_id", "unsupported_shape", "bad_forward",
                   "too_large"]:
        assert stats.get(f"dropped_{reason}") == 1, (reason, stats)
    assert stats["received"] == len(bad) + 1 and stats["delivered"] == 1
    assert "no:such:event" in agent.stderr


def test_rejection_logging_is_rate_limited(make_agent):
    agent = make_agent()
    send_events(agent, [{"event": "no:such:event"}] * 2000)
    time.sleep(0.3)
    agent.stop()
    assert agent.stats()["dropped_unknown_event"] == 2000
    assert agent.stderr.count("not in the registry") < 20


def test_garbage_closes_only_that_connection(collector, make_agent):
    agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": 50}})
    good = connect(agent)
    good.sendall(msgpack.packb(dict(VALID, properties={"n": 1})))
    bad = connect(agent)
    bad.sendall(msgpack.packb(VALID) + b"\xc1garbage")
    assert read_until_closed(bad, timeout=5) == [
        {"error": "not_msgpack", "detail": "bytes that are not msgpack"}]
    bad.close()
    good.sendall(msgpack.packb(dict(VALID, properties={"n": 2})))
    good.close()
    got = collector.wait_for_events(3, timeout=10)
    agent.stop()
    assert sorted(e["properties"]["n"] for e in got) == [1, 1, 2]
    assert "not msgpack" in agent.stderr


def test_oversized_message_closes_the_connection(make_agent):
    agent = make_agent({"agent": {"max_message_bytes": "4096"}})
    s = connect(agent)
    s.sendall(b"\xdb\x00\x10\x00\x00" + b"a" * 5000)  # a str claiming 1 MiB
    assert read_until_closed(s, timeout=5) == [
        {"error": "too_large", "detail": "message larger than agent.max_message_bytes = 4096"}]
    agent.stop()
    assert "max_message_bytes" in agent.stderr


def test_too_many_connections_are_refused(make_agent):
    agent = make_agent({"agent": {"max_connections": "2"}})
    time.sleep(0.3)  # let the agent see the start-up probe's connection close
    held = [connect(agent), connect(agent)]
    time.sleep(0.2)
    extra = connect(agent)
    assert read_until_closed(extra, timeout=5) == [
        {"error": "max_connections", "detail": "agent.max_connections = 2 are open"}]
    for s in held:
        s.close()
    agent.stop()
    assert "max_connections" in agent.stderr


def test_disabled_accepts_and_sends_nothing(collector, make_agent):
    agent = make_agent({"agent": {"enabled": "false"}, "backend": backend(collector),
                        "batch": {"max_age_ms": 20}})
    send_events(agent, [VALID] * 25)
    time.sleep(1.0)
    agent.stop()
    assert collector.requests() == []
    stats = agent.stats()
    assert stats["received"] == 25 and stats["dropped_disabled"] == 25


def test_stdout_backend_prints_one_line_per_batch(make_agent):
    agent = make_agent({"backend": {"url": "stdout", "api_key": "secret-key-123"},
                        "batch": {"max_events": 10, "max_age_ms": 50}})
    send_events(agent, [dict(VALID, properties={"n": i}) for i in range(25)])
    time.sleep(0.5)
    agent.stop()
    import json
    lines = agent.stdout.splitlines()
    batches = [json.loads(line)["batch"] for line in lines]
    assert [len(b) for b in batches] == [10, 10, 5]
    assert [e["properties"]["n"] for b in batches for e in b] == list(range(25))
    assert "secret-key-123" not in agent.stdout + agent.stderr


def test_buffer_bound_drops_and_counts_with_drop_newest(collector, make_agent):
    collector.plan(action="hang", count=100)
    agent = make_agent({"backend": backend(collector, max_in_flight=1, timeout_ms=60000),
                        "buffer": {"max_bytes": "64KiB", "overflow": "drop_newest"},
                        "batch": {"max_bytes": "16KiB", "max_age_ms": 20},
                        "events": {"max_event_bytes": "4KiB"}})
    send_events(agent, [dict(VALID, properties={"pad": "y" * 1000})] * 200)
    time.sleep(0.5)
    agent.proc.kill()  # the hung backend would hold shutdown for the whole grace
    agent.proc.wait()
    agent.proc = None
    log = agent.read_stderr()
    assert "buffer.max_bytes" in log and "buffer_full" in log


def test_bad_config_names_file_line_key_and_allowed(tmp_path):
    cases = {
        "[batch]\nmax_events = lots\n": ("line 2", "max_events", "lots", "allowed"),
        "[batch]\nmax_events = 0\n": ("line 2", "max_events", "1 to 100000"),
        "[agent]\n\n\ncolour = red\n": ("line 4", "colour", "allowed"),
        "[nosuch]\n": ("line 1", "nosuch", "allowed"),
        "[backend]\nurl = ftp://x\n": ("url", "ftp://x", "allowed"),
        "[agent]\nenabled = maybe\n": ("line 2", "enabled", "maybe", "true, false"),
    }
    for text, expected in cases.items():
        path = tmp_path / "bad.ini"
        path.write_text(text)
        for args in (["--check-config", "-c", str(path)], ["-c", str(path)]):
            r = run_agent(*args)
            assert r.returncode != 0, text
            for piece in expected:
                piece = piece.replace("line ", f"{path}:") if piece.startswith("line ") else piece
                assert piece in r.stderr, (text, piece, r.stderr)


def test_check_config_accepts_a_good_file(tmp_path):
    path = tmp_path / "good.ini"
    path.write_text(f"[events]\nregistry = {ROOT}/proto/events.txt\n[batch]\nmax_events = 7\n")
    r = run_agent("--check-config", "-c", str(path))
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout


def test_api_key_sources_and_secrecy(collector, make_agent, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text("phc_from_file\n")
    section = backend(collector)
    del section["api_key"]
    section["api_key_file"] = str(key_file)
    agent = make_agent({"backend": section, "batch": {"max_age_ms": 50},
                        "agent": {"log_level": "debug"}})
    send_events(agent, [VALID])
    reqs = collector.wait_for_requests(1, timeout=10)
    agent.stop()
    assert reqs[0]["json"]["api_key"] == "phc_from_file"
    assert "phc_from_file" not in agent.stderr

    del section["api_key_file"]
    agent = make_agent({"backend": section, "batch": {"max_age_ms": 50}},
                       env={"TELEMETRY_AGENT_API_KEY": "phc_from_env"})
    send_events(agent, [VALID])
    reqs = collector.wait_for_requests(2, timeout=10)
    agent.stop()
    assert reqs[1]["json"]["api_key"] == "phc_from_env"
    assert "phc_from_env" not in agent.stderr

    path = tmp_path / "nokey.ini"
    path.write_text(f"[backend]\nurl = {collector.url}\n")
    r = run_agent("--check-config", "-c", str(path), env={"PATH": "/usr/bin"})
    assert r.returncode != 0 and "api_key" in r.stderr


def test_environment_overrides_config(tmp_path):
    path = tmp_path / "a.ini"
    path.write_text(f"[events]\nregistry = {ROOT}/proto/events.txt\n")
    r = run_agent("--check-config", "-c", str(path),
                  env={"TELEMETRY_AGENT_BATCH_MAX_EVENTS": "0"})
    assert r.returncode != 0
    assert "TELEMETRY_AGENT_BATCH_MAX_EVENTS" in r.stderr and "allowed" in r.stderr


def test_shipped_config_documents_every_default(tmp_path):
    generated = run_agent("--print-default-config").stdout
    shipped = open(os.path.join(ROOT, "etc", "telemetry-agent.ini")).read()
    # The registry default is the install prefix's data directory.
    r = run_agent("--help")
    assert r.returncode == 0 and "--check-config" in r.stdout
    for line in generated.splitlines():
        if line.startswith("registry = "):
            generated = generated.replace(line, "registry = /usr/local/share/telemetry-agent/events.txt")
    assert shipped == generated, "etc/telemetry-agent.ini is out of date: regenerate it with " \
                                 "telemetry-agent --print-default-config"
    for key in ["enabled", "socket", "socket_mode", "socket_group", "distinct_id", "log_level",
                "shutdown_grace_ms", "registry", "max_event_bytes", "max_events", "max_bytes",
                "max_age_ms", "url", "format", "api_key", "api_key_file", "gzip",
                "max_in_flight", "timeout_ms", "retry_initial_ms", "retry_max_ms",
                "retry_max_elapsed_ms"]:
        assert f"\n{key} =" in shipped, key
    path = tmp_path / "shipped.ini"
    path.write_text(shipped.replace("/usr/local/share/telemetry-agent/events.txt",
                                    f"{ROOT}/proto/events.txt"))
    assert run_agent("--check-config", "-c", str(path)).returncode == 0


def test_sigpipe_does_not_kill_the_agent(collector, make_agent):
    agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": 50}})
    for _ in range(20):
        s = connect(agent)
        s.sendall(msgpack.packb(VALID)[:3])
        s.close()
    send_events(agent, [VALID])
    collector.wait_for_events(1, timeout=10)
    assert agent.proc.poll() is None
    assert agent.stop() == 0


def test_hundreds_of_connections_at_once(collector, make_agent):
    agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": 50}})
    conns = [connect(agent) for _ in range(300)]
    for i, s in enumerate(conns):  # every connection open before any sends
        s.sendall(msgpack.packb(dict(VALID, properties={"conn": i, "half": 0}))
                  + msgpack.packb(dict(VALID, properties={"conn": i, "half": 1}))[:5])
    for i, s in enumerate(conns):  # finish each second event
        s.sendall(msgpack.packb(dict(VALID, properties={"conn": i, "half": 1}))[5:])
        s.close()
    got = collector.wait_for_events(600, timeout=20)
    agent.stop()
    assert sorted((e["properties"]["conn"], e["properties"]["half"]) for e in got) == \
        [(i, h) for i in range(300) for h in (0, 1)]


def test_log_level_controls_what_is_logged(make_agent):
    quiet = make_agent({"agent": {"log_level": "warn"}})
    loud = make_agent({"agent": {"log_level": "debug"}})
    for agent in (quiet, loud):
        send_events(agent, [VALID])
        time.sleep(0.2)
        agent.stop()
    assert "debug: connection" in loud.stderr
    assert "debug:" not in quiet.stderr and "info:" not in quiet.stderr
    assert "stopped:" in loud.stderr


def test_install_puts_files_in_place(tmp_path):
    build = os.path.dirname(AGENT_BIN)
    prefix = tmp_path / "prefix"
    r = subprocess.run(["cmake", "--install", build, "--prefix", str(prefix)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for path in ["bin/telemetry-agent", "etc/telemetry-agent.ini",
                 "share/telemetry-agent/events.txt", "bin/telemetry-send", "include/telemetry.h",
                 "lib/libtelemetry.a", "lib/pkgconfig/telemetry.pc",
                 "lib/cmake/telemetry/telemetryConfig.cmake",
                 "lib/python%d.%d/dist-packages/telemetry_client.py" % sys.version_info[:2]]:
        assert (prefix / path).is_file(), path
    names = (prefix / "share/telemetry-agent/events.txt").read_text().split()
    assert len(names) == 66 and "project:pipeline:saved" in names
    ini = (prefix / "etc/telemetry-agent.ini").read_text()
    assert "url = stdout" in ini
