"""
Live reload: SIGHUP, and agent.watch_config_ms following a ConfigMap and a
Secret updated in place. A producer keeps one connection open and sends
steadily, asking for an ack for every event, across several reloads (one of
them a bad file): every event is acknowledged, the connection stays open,
everything accepted is delivered, and each change shows in what the backend
receives from the next batch on.
"""
import copy
import os
import re
import subprocess
import threading
import time
import uuid

import msgpack
import pytest

from conftest import AGENT_BIN, backend, connect


class SteadyProducer(threading.Thread):
    """One connection for the whole test: an event with a chunk id every
    few milliseconds, names taken in turn from `names`; a second thread
    reads the acks."""

    def __init__(self, agent, names, every=0.004):
        super().__init__(daemon=True)
        self.sock = connect(agent)
        self.names = names
        self.every = every
        self.sent = []          # the events, in order; event i has chunk "c<i>"
        self.replies = {}       # chunk -> reply
        self.closed_by_agent = False
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self.read_acks, daemon=True)

    def start(self):
        self.reader.start()
        super().start()

    def read_acks(self):
        unpacker = msgpack.Unpacker(raw=False)
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                self.closed_by_agent = not self.stopping.is_set()
                return
            unpacker.feed(data)
            with self.lock:
                for reply in unpacker:
                    self.replies[reply["ack"]] = reply

    def send_one(self):
        i = len(self.sent)
        e = {"event": self.names[i % len(self.names)], "uuid": str(uuid.uuid4()),
             "properties": {"seq": i}, "chunk": f"c{i}"}
        self.sent.append(e)
        self.sock.sendall(msgpack.packb(e))

    def run(self):
        while not self.stopping.is_set():
            self.send_one()
            time.sleep(self.every)

    def count(self):
        return len(self.sent)

    def finish(self, timeout=15):
        """Stop sending; wait for every ack; the connection must still
        carry one more event; then close it."""
        self.stopping.set()
        self.join()
        self.send_one()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.replies) == len(self.sent):
                    break
            time.sleep(0.02)
        self.sock.close()
        self.reader.join(timeout=5)
        assert not self.closed_by_agent, "the agent closed the producer's connection"
        missing = [e["chunk"] for e in self.sent if e["chunk"] not in self.replies]
        assert not missing, f"{len(missing)} events never acknowledged, first {missing[:5]}"


def reload(agent, sections=None, text=None, expect="done"):
    """Write the agent's config file (sections over the tests' base, or the
    raw text), send SIGHUP and wait for the reload's last line."""
    agent.config.write_text(text if text is not None else agent.config_text(sections))
    pattern = r"reload \(SIGHUP\)" + (r": done" if expect == "done" else r" refused")
    before = len(re.findall(pattern, agent.read_stderr()))
    agent.proc.send_signal(1)  # SIGHUP
    deadline = time.monotonic() + 10
    while len(re.findall(pattern, agent.read_stderr())) == before:
        assert time.monotonic() < deadline, f"no '{pattern}' in:\n{agent.read_stderr()}"
        time.sleep(0.02)


def delivered_events(collector):
    """(api_key, event) for every event the backend received, in order."""
    return [(r["json"]["api_key"], e) for r in collector.requests()
            for e in r["json"]["batch"]]


@pytest.mark.parametrize("mode", ["memory", "spool"])
def test_reload_under_steady_traffic(collector, make_agent, tmp_path, mode):
    registry = tmp_path / "events.txt"
    registry.write_text("project:created\nproject:deleted\n")
    sections = {"backend": backend(collector),
                "spool": {"dir": str(tmp_path / "spool")} if mode == "spool" else {},
                "events": {"registry": str(registry)},
                "batch": {"max_events": "50", "max_age_ms": "100"},
                "properties": {"release": "one"}}
    agent = make_agent(sections)
    producer = SteadyProducer(agent, ["project:created", "project:deleted"])
    producer.start()
    time.sleep(0.6)

    # 1. Batches, properties and the key change; the socket waits for a restart.
    second = copy.deepcopy(sections)
    second["batch"]["max_events"] = "7"
    second["properties"]["release"] = "two"
    second["backend"]["api_key"] = "phc_second_key"
    second["agent"] = {"socket": str(tmp_path / "elsewhere.sock")}
    before_first = producer.count()
    reload(agent, second)
    after_first = producer.count()
    time.sleep(0.6)

    # 2. A bad file: refused with start-up's message, the running one stays.
    bad = copy.deepcopy(second)
    bad["batch"]["max_events"] = "lots"
    bad_text = agent.config_text(bad)
    reload(agent, text=bad_text, expect="refused")
    time.sleep(0.4)

    # 3. The registry loses a name, and the log turns to JSON.
    registry.write_text("project:created\n")
    third = copy.deepcopy(second)
    third["agent"]["log_format"] = "json"
    before_third = producer.count()
    reload(agent, third)
    after_third = producer.count()
    time.sleep(0.6)
    reloads, failures = agent.metric("config_reloads_total"), \
        agent.metric("config_reload_failures_total")

    producer.finish()
    accepted = [e for e in producer.sent if "rejected" not in producer.replies[e["chunk"]]]
    rejected = [e for e in producer.sent if "rejected" in producer.replies[e["chunk"]]]
    collector.wait_for_events(len(accepted), timeout=15)
    agent.stop()
    log = agent.stderr

    # The connection lived through every reload and every event was acked
    # (finish() checked); everything accepted arrived, once.
    got = delivered_events(collector)
    assert sorted(e["uuid"] for _, e in got) == sorted(e["uuid"] for e in accepted)
    stats = agent.stats()
    assert stats["delivered"] == len(accepted)
    assert stats["received"] == len(producer.sent)
    assert stats["dropped"] == len(rejected)

    # Properties and the key follow the reload from the next batch on: in
    # order, "one" up to the reload, "two" after it, never mixed back.
    by_seq = {e["properties"]["seq"]: (key, e) for key, e in got}
    releases = [by_seq[s][1]["properties"]["release"] for s in sorted(by_seq)]
    switch = releases.index("two")
    assert set(releases[:switch]) == {"one"} and set(releases[switch:]) == {"two"}
    assert before_first <= switch <= after_first + 1
    for key, e in got:
        if e["properties"]["release"] == "two":
            assert key == "phc_second_key"
    # batch.max_events: batches of up to 50 before, of up to 7 after.
    sizes = [(r["json"]["batch"][0]["properties"]["release"], len(r["json"]["batch"]))
             for r in collector.requests()]
    assert max(n for release, n in sizes if release == "one") > 7
    assert max(n for release, n in sizes if release == "two") <= 7

    # The registry: project:deleted is refused only after the third reload.
    assert rejected, "no event refused after the registry lost a name"
    assert all(e["event"] == "project:deleted" for e in rejected)
    first_rejected = min(e["properties"]["seq"] for e in rejected)
    assert before_third <= first_rejected <= after_third + 1
    assert all(producer.replies[e["chunk"]]["reason"] == "unknown_event" for e in rejected)
    assert len([e for e in rejected if e["properties"]["seq"] > after_third + 1]) > 0

    # The socket stayed where it was (the producer kept using it) and the
    # log says why.
    assert re.search(r"\[agent\] socket = \S*elsewhere.sock is ignored until restart: the agent "
                     r"keeps running with " + re.escape(agent.socket), log)
    assert "reload (SIGHUP): [batch] max_events = 7 (was 50)" in log
    assert "reload (SIGHUP): [properties] changed" in log
    assert "reload (SIGHUP): [backend] api_key = *** (was ***)" in log
    assert "phc_second_key" not in log

    # The bad file: the message start-up gives for it, and nothing changed.
    bad_file = tmp_path / "bad.ini"
    bad_file.write_text(bad_text)
    check = subprocess.run([AGENT_BIN, "--check-config", "-c", str(bad_file)],
                           capture_output=True, text=True)
    assert check.returncode == 1
    message = check.stderr.strip().split("configuration error: ", 1)[1]
    message = message.replace(str(bad_file), str(agent.config))
    assert "[batch] max_events = 'lots' is not allowed" in message
    assert (f"reload (SIGHUP) refused: configuration error: {message}; the running "
            "configuration stays") in log
    assert (reloads, failures) == (2, 1)

    # After the third reload the log is JSON, a line an object (the lines
    # that list the changes come before it takes effect).
    switched = log.index("[agent] log_format = json (was text)")
    tail = log[switched:].splitlines()[1:]
    assert tail and all(line.startswith('{"ts":') for line in tail), tail[:3]


def publish(directory, files, version):
    """Update a mounted ConfigMap or Secret the way the kubelet does: the
    files of a new version in a directory of their own, then one rename
    that points ..data at it; the names seen are links through ..data."""
    directory.mkdir(exist_ok=True)
    target = directory / f"..{version}"
    target.mkdir()
    for name, text in files.items():
        (target / name).write_text(text)
        link = directory / name
        if not link.is_symlink():
            link.symlink_to(f"..data/{name}")
    tmp = directory / "..data_tmp"
    tmp.symlink_to(target.name)
    os.rename(tmp, directory / "..data")


def wait_for_log(agent, text, count=1, timeout=10):
    deadline = time.monotonic() + timeout
    while agent.read_stderr().count(text) < count:
        assert time.monotonic() < deadline, f"no {text!r} x{count} in:\n{agent.read_stderr()}"
        time.sleep(0.02)


def test_watch_follows_configmap_and_secret_updates(collector, make_agent, tmp_path):
    configmap, secret = tmp_path / "configmap", tmp_path / "secret"
    agent = make_agent(start=False)
    agent.config = configmap / "agent.ini"

    def ini(release, max_events="lots"):
        return agent.config_text({
            "agent": {"watch_config_ms": "100"},
            "backend": {"url": collector.url, "api_key_file": str(secret / "api-key")},
            "batch": {"max_events": max_events, "max_age_ms": "100"},
            "properties": {"release": release}})

    publish(secret, {"api-key": "phc_key_one\n"}, 1)
    publish(configmap, {"agent.ini": ini("one", "50")}, 1)
    agent.start()

    def deliver(n, seq):
        with connect(agent) as s:
            s.sendall(b"".join(msgpack.packb(
                {"event": "project:created", "properties": {"seq": seq + i}})
                for i in range(n)))
        collector.wait_for_events(seq + n, timeout=10)

    deliver(20, 0)
    publish(configmap, {"agent.ini": ini("two", "50")}, 2)
    wait_for_log(agent, "reload (a watched file changed): done")
    deliver(20, 20)
    publish(secret, {"api-key": "phc_key_two\n"}, 2)  # a rotated Secret
    wait_for_log(agent, "reload (a watched file changed): done", 2)
    deliver(20, 40)
    publish(configmap, {"agent.ini": ini("three")}, 3)  # max_events = lots
    wait_for_log(agent, "reload (a watched file changed) refused: configuration error: ")
    deliver(20, 60)
    time.sleep(0.5)  # the watch does not retry a file that has not changed again
    agent.stop()

    assert agent.stderr.count("reload (") - agent.stderr.count("reload (a watched file "
                                                                   "changed): [") == 3
    got = sorted(delivered_events(collector), key=lambda ke: ke[1]["properties"]["seq"])
    assert len(got) == 80
    expected = [("phc_key_one", "one")] * 20 + [("phc_key_one", "two")] * 20 + \
        [("phc_key_two", "two")] * 40
    assert [(key, e["properties"]["release"]) for key, e in got] == expected
    assert "phc_key" not in agent.stderr
