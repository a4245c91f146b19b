"""
The image, built for real (docker/build: buildah and podman, no Docker
engine) and smoke-tested: two containers share a volume for the socket, as
an emptyDir would; one runs the agent as its non-root user, the other
telemetry-send; the event reaches the test backend, /healthz answers,
SIGHUP reloads the configuration of the agent as PID 1, and SIGTERM ends the agent within its grace period with everything delivered.

Building takes minutes, so the suite runs it only where buildah, podman and
mmdebstrap are installed (TELEMETRY_TEST_DOCKER=1 also installs them);
elsewhere it is reported as skipped, NOT RUN, never as passed.
"""
import os
import shutil
import subprocess
import time
import urllib.request
import uuid

import pytest

from conftest import ROOT

TOOLS = ("buildah", "podman", "mmdebstrap")
PODMAN = ["podman", "--runtime", "runc"]
LIMITS = ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"]


def tools_ready():
    return all(shutil.which(t) for t in TOOLS) or os.environ.get("TELEMETRY_TEST_DOCKER") == "1"


@pytest.mark.skipif(not tools_ready(), reason="NOT RUN: buildah, podman and mmdebstrap are not "
                    "installed (set TELEMETRY_TEST_DOCKER=1 to install them and build the image)")
def test_the_image_runs_the_agent_beside_a_producer(collector, capsys):
    build = subprocess.run([os.path.join(ROOT, "docker", "build")], capture_output=True,
                           text=True, timeout=1800)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    size = [line for line in build.stdout.splitlines() if line.startswith("telemetry-agent image")]
    with capsys.disabled():
        print("\n" + (size[-1] if size else "image size unknown"))
    volume = "ta-socket-" + uuid.uuid4().hex[:8]
    name = "ta-agent-" + uuid.uuid4().hex[:8]
    port = collector.url.rsplit(":", 1)[1].split("/")[0]
    subprocess.run(PODMAN + ["volume", "create", volume], check=True, capture_output=True)
    try:
        run = subprocess.run(PODMAN + ["run", "-d", "--name", name, *LIMITS, "--network", "host",
                                       "-v", f"{volume}:/run/telemetry",
                                       "-e", f"TELEMETRY_AGENT_BACKEND_URL=http://127.0.0.1:{port}/batch",
                                       "-e", "TELEMETRY_AGENT_API_KEY=phc_image_test",
                                       "-e", "TELEMETRY_AGENT_HTTP_LISTEN=127.0.0.1:19466",
                                       "-e", "TELEMETRY_AGENT_BATCH_MAX_AGE_MS=100",
                                       "telemetry-agent:latest"],
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen("http://127.0.0.1:19466/healthz", timeout=2) as r:
                    assert r.status == 200
                    break
            except OSError:
                assert time.monotonic() < deadline, "the agent's /healthz never answered"
                time.sleep(0.5)
        user = subprocess.run(PODMAN + ["exec", name, "id", "-u"], capture_output=True,
                              text=True, timeout=60).stdout.strip()
        assert user == "10001", "the agent does not run as its non-root user"
        send = subprocess.run(PODMAN + ["run", "--rm", *LIMITS, "-v", f"{volume}:/run/telemetry",
                                        "--entrypoint", "telemetry-send",
                                        "-e", "TELEMETRY_SOCKET=/run/telemetry/agent.sock",
                                        "telemetry-agent:latest", "--wait", "project:created",
                                        "source=image-test"],
                              capture_output=True, text=True, timeout=120)
        assert send.returncode == 0, send.stdout + send.stderr
        got = collector.wait_for_events(1, timeout=30)
        assert got[0]["properties"]["source"] == "image-test"
        # the agent is PID 1 and SIGHUP reloads its configuration there
        comm = subprocess.run(PODMAN + ["exec", name, "cat", "/proc/1/comm"],
                              capture_output=True, text=True, timeout=60).stdout.strip()
        assert comm == "telemetry-agent"
        subprocess.run(PODMAN + ["kill", "--signal", "HUP", name], check=True,
                       capture_output=True, timeout=60)
        deadline = time.monotonic() + 30
        while "reload (SIGHUP): done" not in subprocess.run(
                PODMAN + ["logs", name], capture_output=True, text=True).stderr:
            assert time.monotonic() < deadline, "SIGHUP did not reload the configuration"
            time.sleep(0.5)
        started = time.monotonic()
        stop = subprocess.run(PODMAN + ["stop", "-t", "30", name], capture_output=True,
                              text=True, timeout=60)
        assert stop.returncode == 0 and time.monotonic() - started < 15
        logs = subprocess.run(PODMAN + ["logs", name], capture_output=True, text=True).stderr
        assert "the one event received was delivered" in logs, logs
    finally:
        subprocess.run(PODMAN + ["rm", "-f", name], capture_output=True)
        subprocess.run(PODMAN + ["volume", "rm", "-f", volume], capture_output=True)
