"""
The agent's log as an operator reads it: text or JSON lines
(agent.log_format), the effective configuration at start with secrets and
URL credentials masked, and the libraries in use.
"""
import json

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
    assert all(set(o) == {"ts", "level", "msg"} for o in objects)
    assert all(o["ts"].endswith("Z") and o["level"] in ("error", "warn", "info", "debug")
               for o in objects)
    msgs = [o["msg"] for o in objects]
    assert any(m.startswith("telemetry-agent 0.1.0 listening on") for m in msgs)
    assert any("unknown_event" in m and o["level"] == "warn" for m, o in zip(msgs, objects))
    assert any(m.startswith("stopped: received=2 delivered=1") for m in msgs)


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
