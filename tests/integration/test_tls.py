"""
The way to the backend: HTTPS with the certificate always verified (a
backend whose certificate no trusted authority signed gets nothing),
backend.ca_file for a private authority, backend.tls_insecure only with a
warning, and proxies, from backend.proxy or from curl's environment
variables. The backend is the test collector serving HTTPS with a
certificate made here by openssl; the proxy is a small forwarding one.
"""
import http.client
import http.server
import ssl
import subprocess
import threading
import time
import urllib.parse

import pytest

from collector import Collector
from conftest import backend, send_events


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def certificates(tmp_path):
    """A private CA and a certificate for 127.0.0.1 signed by it."""
    d = tmp_path / "pki"
    d.mkdir()
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=telemetry test CA", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "san.ext").write_text("subjectAltName = IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    return d


@pytest.fixture
def https_collector(certificates):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates / "server.pem", certificates / "server.key")
    with Collector(tls=context) as c:
        yield c


EVENTS = [{"event": "project:created", "properties": {"seq": i}} for i in range(5)]


def test_an_unverified_backend_gets_nothing(https_collector, make_agent):
    agent = make_agent({"backend": backend(https_collector, retry_initial_ms=50),
                        "batch": {"max_age_ms": "50"}, "agent": {"shutdown_grace_ms": "300"}})
    send_events(agent, EVENTS)
    deadline = time.monotonic() + 10
    while "certificate" not in agent.read_stderr():
        assert time.monotonic() < deadline, agent.read_stderr()
        time.sleep(0.05)
    agent.stop()
    assert https_collector.events() == []
    assert agent.stats()["delivered"] == 0
    assert agent.stats()["dropped_shutdown"] == 5


def test_a_private_authority_from_ca_file(https_collector, make_agent, certificates):
    agent = make_agent({"backend": backend(https_collector, ca_file=certificates / "ca.pem"),
                        "batch": {"max_age_ms": "50"}})
    send_events(agent, EVENTS)
    https_collector.wait_for_events(5, timeout=10)
    agent.stop()
    assert agent.stats()["delivered"] == 5
    assert "tls_insecure" not in agent.stderr.split("configuration [backend]")[0]


def test_tls_insecure_works_and_says_so(https_collector, make_agent):
    agent = make_agent({"backend": backend(https_collector, tls_insecure="true"),
                        "batch": {"max_age_ms": "50"}})
    send_events(agent, EVENTS)
    https_collector.wait_for_events(5, timeout=10)
    agent.stop()
    assert "warn: backend.tls_insecure = true: the backend's certificate and name are not " \
           "verified" in agent.stderr


def test_an_unreadable_ca_file_stops_start_up(make_agent, collector, tmp_path):
    agent = make_agent({"backend": backend(collector, ca_file=tmp_path / "missing.pem")},
                       start=False)
    agent.start(wait=False)
    assert agent.proc.wait(timeout=10) == 1
    assert "[backend] ca_file = '" in agent.read_stderr()
    assert "missing.pem': cannot read it: No such file or directory" in agent.read_stderr()
    agent.proc = None


class ForwardingProxy(http.server.ThreadingHTTPServer):
    """An HTTP proxy for plain http:// targets: it forwards each request
    (absolute URI) and counts what it forwarded."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.forwarded = 0
        self.credentials = []
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (the name http.server calls)
        target = urllib.parse.urlsplit(self.path)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("proxy-connection", "proxy-authorization", "host")}
        self.server.credentials.append(self.headers.get("Proxy-Authorization"))
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        conn.request("POST", target.path, body=body, headers=headers)
        answer = conn.getresponse()
        data = answer.read()
        self.server.forwarded += 1
        self.send_response(answer.status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("how", ["setting", "environment"])
def test_requests_go_through_the_proxy(collector, make_agent, how):
    proxy = ForwardingProxy()
    try:
        if how == "setting":
            url = proxy.url.replace("http://", "http://user:s3cret@")
            agent = make_agent({"backend": backend(collector, proxy=url),
                                "batch": {"max_age_ms": "50"}})
        else:
            agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": "50"}},
                               env={"http_proxy": proxy.url})
        send_events(agent, EVENTS)
        collector.wait_for_events(5, timeout=10)
        agent.stop()
        assert proxy.forwarded >= 1
        if how == "setting":
            assert proxy.credentials[0].startswith("Basic ")
            assert "s3cret" not in agent.stderr and "proxy=http://***@127.0.0.1" in agent.stderr
    finally:
        proxy.shutdown()
        proxy.server_close()
