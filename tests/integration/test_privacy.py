"""
[privacy], the last line of defence for personal data: the shipped rules
leave Orchest's events untouched; keys dropped and values hashed at any
depth, e-mail and IP addresses and a regular expression's matches
redacted, each action counted per rule in /metrics, rules changed by a
reload, and bad rules refused at start with what is allowed.
"""
import hashlib
import hmac
import re
import signal
import subprocess
import time
import urllib.request

from conftest import AGENT_BIN, backend, load_payloads, send_events

LIB = {"$lib", "$lib_version"}


def test_the_shipped_rules_leave_orchests_events_alone(collector, make_agent):
    payloads = load_payloads()
    agent = make_agent({"backend": backend(collector), "events": {"max_event_bytes": "8192"},
                        "batch": {"max_age_ms": "50"}})
    send_events(agent, payloads)
    got = collector.wait_for_events(len(payloads), timeout=15)
    agent.stop()
    for sent, arrived in zip(payloads, got):
        props = {k: v for k, v in arrived["properties"].items() if k not in LIB}
        assert props == sent["properties"]


def test_rules_at_every_depth_counted_and_reloaded(collector, make_agent, tmp_path):
    key_file = tmp_path / "hash.key"
    key_file.write_text("a-hash-key-of-32-bytes-at-least!\n")
    privacy = {"hash_keys": "user_id, *_email_hash", "hash_key_file": str(key_file),
               "redact_regex": "sk-[a-z0-9]{6,}"}
    agent = make_agent({"backend": backend(collector), "privacy": privacy,
                        "batch": {"max_age_ms": "50"}})
    event = {"event": "project:created", "properties": {
        "user_id": "u-42", "contact_email_hash": {"a": 1},
        "Auth_Token": "t0p", "settings": {"db_password": "pw", "plan": "pro",
                                          "servers": [{"ip": "10.1.2.3", "secret_key": "x"},
                                                      "ask bob@example.org via 2001:db8::7"]},
        "note": "key sk-abcdef123 rotated", "count": 3}}
    send_events(agent, [event])
    [got] = collector.wait_for_events(1, timeout=10)
    props = got["properties"]
    mac = hmac.new(b"a-hash-key-of-32-bytes-at-least!", b"u-42", hashlib.sha256).hexdigest()
    assert props["user_id"] == mac
    assert props["contact_email_hash"] == hmac.new(
        b"a-hash-key-of-32-bytes-at-least!", b'{"a":1}', hashlib.sha256).hexdigest()
    assert "Auth_Token" not in props
    assert props["settings"] == {"plan": "pro", "servers": [
        {"ip": "[redacted]"}, "ask [redacted] via [redacted]"]}
    assert props["note"] == "key [redacted] rotated" and props["count"] == 3
    raw = collector.requests()[0]["body"]
    for secret in (b"u-42", b"t0p", b"pw", b"10.1.2.3", b"bob@", b"sk-abcdef123"):
        assert secret not in raw

    counts = dict(re.findall(r'^telemetry_agent_privacy_actions_total\{rule="(.*)"\} (\d+)$',
                             metrics(agent), re.M))
    assert counts["hash_keys user_id"] == "1" and counts["hash_keys *_email_hash"] == "1"
    assert counts["drop_keys *token*"] == "1" and counts["drop_keys *password*"] == "1"
    assert counts["drop_keys *secret*"] == "1"
    assert counts["redact_values ipv4"] == "1" and counts["redact_values ipv6"] == "1"
    assert counts["redact_values email"] == "1"
    assert counts["redact_regex sk-[a-z0-9]{6,}"] == "1"

    # a reload changes the rules for the next event; counts of rules kept go on
    agent.config.write_text(agent.config_text({
        "backend": backend(collector), "batch": {"max_age_ms": "50"},
        "privacy": dict(privacy, drop_keys="plan, *token*")}))
    agent.proc.send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 10
    while "reload (SIGHUP): done" not in agent.read_stderr():
        assert time.monotonic() < deadline, agent.read_stderr()
        time.sleep(0.02)
    send_events(agent, [event])
    got = collector.wait_for_events(2, timeout=10)[1]["properties"]
    assert got["settings"]["db_password"] == "pw"  # *password* is no longer a rule
    assert "plan" not in got["settings"] and "Auth_Token" not in got
    counts = dict(re.findall(r'^telemetry_agent_privacy_actions_total\{rule="(.*)"\} (\d+)$',
                             metrics(agent), re.M))
    assert counts["drop_keys *token*"] == "2" and counts["drop_keys plan"] == "1"
    assert "drop_keys *password*" not in counts
    agent.stop()


def metrics(agent):
    with urllib.request.urlopen(agent.ops_url() + "/metrics", timeout=5) as r:
        return r.read().decode()


def check_refused(tmp_path, privacy_lines, expected):
    ini = tmp_path / "agent.ini"
    ini.write_text("[events]\nregistry =\n[privacy]\n" + privacy_lines)
    out = subprocess.run([AGENT_BIN, "--check-config", "-c", str(ini)], capture_output=True,
                         text=True)
    assert out.returncode == 1 and expected in out.stderr, out.stderr


def test_bad_rules_are_refused_at_start(tmp_path):
    check_refused(tmp_path, "redact_values = email, phone\n",
                  "[privacy] redact_values: 'phone' is not allowed (allowed: email, ipv4, ipv6")
    check_refused(tmp_path, "redact_regex = ([a-z]\n",
                  "[privacy] redact_regex = '([a-z]' is not allowed: ")
    check_refused(tmp_path, "hash_keys = user_id\nhash_key = short\n",
                  "[privacy] hash_keys = 'user_id' needs hash_key (allowed: a key of at least "
                  "16 bytes")
    out = subprocess.run([AGENT_BIN, "--check-config", "-c", str(tmp_path / "agent.ini")],
                         capture_output=True, text=True)
    assert "short" not in out.stderr  # the key is a secret
