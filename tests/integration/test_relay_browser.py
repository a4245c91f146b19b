"""
The browser relay driven by a real browser: Debian's headless Chromium
(through puppeteer-core from the npm registry) loads pages from one origin
that send events with client/js/telemetry.js to the relay on another. The
events of an allowed origin arrive at the test backend, by fetch() and by
navigator.sendBeacon when the page is closed; a page of an origin the relay
does not allow is refused by the browser's own CORS check; events of
non-ASCII text, together far past a request's 64 KiB, all arrive in requests
the client bounds by their bytes (halved after a relay with a lower bound
answers 413), and one too large for any request is dropped and reported,
not retried for ever.
"""
import functools
import http.server
import json
import os
import shutil
import subprocess
import threading

import pytest

from conftest import HERE, ROOT, backend

CHROMIUM = "/usr/bin/chromium"
DRIVER = os.path.join(HERE, "browser", "drive.js")
UNICODE_EVENTS = 50  # of 4,500 bytes each: 225,000 in all


class Pages:
    """A static web server for the test page and the client module, on an
    origin of its own (127.0.0.1:PORT)."""

    def __init__(self, directory):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (signature from the base class)
        pass


def test_a_browser_page_sends_events_through_the_relay(make_agent, collector, tmp_path):
    assert os.path.exists(CHROMIUM), "chromium is not installed (.ci/install-deps installs it)"
    site = tmp_path / "site"
    site.mkdir()
    shutil.copy(os.path.join(HERE, "browser", "page.html"), site / "index.html")
    shutil.copy(os.path.join(ROOT, "client", "js", "telemetry.js"), site / "telemetry.js")
    allowed, denied = Pages(site), Pages(site)
    try:
        agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": "50"},
                            "relay": {"listen": "127.0.0.1:0", "cors_origins": allowed.origin}})
        # a relay whose bound is below the client's: it answers 413 until the
        # client's requests are small enough
        narrow = make_agent({"backend": backend(collector), "batch": {"max_age_ms": "50"},
                             "relay": {"listen": "127.0.0.1:0", "cors_origins": allowed.origin,
                                       "max_body_bytes": "16384"}})
        relay = agent.relay_url()
        page = "{}/index.html?relay={}&tag={}&flush={}"
        out = subprocess.run(
            ["node", DRIVER, CHROMIUM, page.format(allowed.origin, relay, "fetch", 50),
             page.format(allowed.origin, relay, "beacon", 600000),
             page.format(denied.origin, relay, "denied", 50),
             page.format(allowed.origin, relay, "unicode", 50) + f"&unicode={UNICODE_EVENTS}",
             page.format(allowed.origin, narrow.relay_url(), "narrow", 50) +
             f"&unicode={UNICODE_EVENTS}"],
            capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stdout + out.stderr
        seen = json.loads(out.stdout.strip().splitlines()[-1])
        got = collector.wait_for_events(20 + 2 * UNICODE_EVENTS, timeout=20)
        agent.stop()
        narrow.stop()
    finally:
        allowed.close()
        denied.close()
    tags = sorted((e["properties"]["tag"], e["properties"]["n"]) for e in collector.events())
    assert tags == [("beacon", n) for n in range(5)] + [("fetch", n) for n in range(5)] + \
        [("narrow", n) for n in range(5 + UNICODE_EVENTS)] + \
        [("unicode", n) for n in range(5 + UNICODE_EVENTS)], tags
    assert seen["fetch_pending"] == 0 and seen["beacon_pending_before_close"] == 5
    # the non-ASCII events, together far past a request's bound, arrived
    # whole; the one too large for any request (and the two that cannot be
    # serialised) were dropped and reported
    text = seen["drained"][0]["text"]
    assert len(text.encode()) == 4500 and len(text) == 1500  # code points (2,000 in UTF-16)
    assert len(text.encode()) * UNICODE_EVENTS > 3 * 65536
    wide = [e for e in got if "text" in e["properties"]]
    assert len(wide) == 2 * UNICODE_EVENTS and all(e["properties"]["text"] == text for e in wide)
    for drained in seen["drained"]:
        assert drained["drops"] == [["not_json", 1], ["not_json", 1], ["too_large", 1]], seen
        assert drained["dropped"] == 3
    # the narrow relay's 413s made the client halve its requests
    assert any("413" in line for line in seen["drained"][1]["console"]), seen
    # the browser refused the other origin's requests: its events wait, unsent
    assert seen["denied_pending"] == 5, seen
    assert any("CORS" in line or "Access-Control" in line for line in seen["denied_console"]), seen
    for e in got:
        assert e["event"] == "project:created" and e["uuid"] and e["timestamp"]
        assert e["properties"]["$lib"] == "telemetry-agent"
    stats = agent.stats()
    total = 15 + UNICODE_EVENTS
    assert stats["received_http"] == total and stats["delivered"] == total, stats
    stats = narrow.stats()
    total = 5 + UNICODE_EVENTS
    assert stats["received_http"] == total and stats["delivered"] == total, stats


@pytest.mark.parametrize("origin", ["http://127.0.0.1:1", "null"])
def test_a_disallowed_origin_is_refused_by_the_relay_itself(make_agent, collector, origin):
    # what a browser would not stop: a beacon (text/plain, no preflight)
    import http.client
    import urllib.parse
    agent = make_agent({"backend": backend(collector),
                        "relay": {"listen": "127.0.0.1:0", "cors_origins": "http://ok.example"}})
    u = urllib.parse.urlsplit(agent.relay_url())
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    conn.request("POST", u.path, body='{"event": "project:created"}',
                 headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": origin})
    r = conn.getresponse()
    body = r.read().decode()
    assert r.status == 403 and "relay.cors_origins" in body
    assert r.getheader("Access-Control-Allow-Origin") is None
    conn.close()
    agent.stop()
    assert agent.stats()["received"] == 0
