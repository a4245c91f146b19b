"""
The agent's log as an operator reads it: text or JSON lines
(agent.log_format), the effective configuration at start with secrets and
URL credentials masked, and the libraries in use.
"""
import json
import time

from conftest import backend, send_events


def test_json_lines_carry_ts_level_and_msg(make_agent, collector):
    agent = make_agent({"backend": backend(collector), "agent": {"log_format": "json"},
                        "batch": {"max_age_ms": "50"}})
    send_events(agent, [{"event": "project:created"}, {"event": "no:such-event"}])
    collector.wait_for_events(1, timeout=10)
    agent.stop()
    lines = agent.stderr.splitlines()
    assert len(lines) > 5
    objects = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "msg"} <= set(o) for o in objects)
    assert all(o["ts"].endswith("Z") and o["level"] in ("error", "warn", "info", "debug")
               for o in objects)
    msgs = [o["msg"] for o in objects]
    assert any(m.startswith("telemetry-agent 0.1.0 listening on") for m in msgs)
    # the lines a collector filters or counts by carry fields besides msg
    start = [o for o in objects if o["msg"].startswith("telemetry-agent 0.1.0 listening on")][0]
    assert start["socket"] == agent.socket and start["backend"] == collector.url
    assert start["version"] == "0.1.0"
    drop = [o for o in objects if "unknown_event" in o["msg"]][0]
    assert drop["level"] == "warn" and drop["reason"] == "unknown_event"
    assert drop["peer"] in drop["msg"]
    stopped = [o for o in objects if o["msg"].startswith("stopped: received=2 delivered=1")][0]
    assert (stopped["received"], stopped["delivered"], stopped["dropped"],
            stopped["buffered"]) == (2, 1, 1, 0)
    plain = [o for o in objects if o["msg"].startswith("configuration [batch]")][0]
    assert set(plain) == {"ts", "level", "msg"}


def test_repeated_errors_are_summarised_with_a_count(make_agent, collector):
    agent = make_agent({"backend": backend(collector), "agent": {"log_format": "json"}})
    send_events(agent, [{"event": "no:such-event"}] * 40)
    time.sleep(0.3)
    send_events(agent, [{"event": "project:created"}])
    collector.wait_for_events(1, timeout=10)
    agent.stop()
    objects = [json.loads(line) for line in agent.stderr.splitlines()]
    drops = [o for o in objects if o.get("reason") == "unknown_event"]
    # a burst of lines, then the rest are counted, not repeated
    assert 1 <= len(drops) <= 6, len(drops)
    assert agent.stats()["dropped_unknown_event"] == 40


def test_start_up_shows_the_configuration_without_secrets(make_agent, collector):
    url = collector.url.replace("http://", "http://someone:hunter2@")
    agent = make_agent({"backend": backend(collector, url=url, api_key="phc_very_secret")})
    agent.stop()
    log = agent.stderr
    assert "phc_very_secret" not in log and "hunter2" not in log
    assert "configuration [backend] url=http://***@" in log and "api_key=***" in log
    assert "configuration [buffer] max_bytes=8388608 overflow=block" in log
    assert "configuration [agent] enabled=true socket=" in log
    assert "libraries: libevent 2.1" in log and "libcurl" in log and "msgpack-c" in log
    # text lines: "<time> <level>: <message>"
    first = log.splitlines()[0]
    assert first[23:].startswith("Z info: telemetry-agent")


def test_a_backend_answer_is_escaped_and_never_shows_the_key(make_agent, collector):
    # a backend may echo the key, and send anything at all
    collector.plan(status=401, count=1,
                   body=b'{"detail": "bad key phc_test_key\n\x1b[31mFAKE LOG LINE"}')
    agent = make_agent({"backend": backend(collector, misconfigured_retry_ms=100),
                        "batch": {"max_age_ms": "50"}})
    send_events(agent, [{"event": "project:created"}])
    collector.wait_for_events(1, timeout=10)
    status = json.dumps(agent.status())
    agent.stop()
    assert "phc_test_key" not in agent.stderr and "phc_test_key" not in status
    assert "bad key ***\\x0a\\x1b[31mFAKE LOG LINE" in agent.stderr
    assert "\nFAKE" not in agent.stderr and "\x1b" not in agent.stderr
