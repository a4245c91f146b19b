"""
docker/: the Kubernetes manifests and the image's files, checked offline
(no cluster runs here): Kustomize renders the base and the example overlay;
every workload decodes with kubectl's own API types, with no field kubectl
does not know (a field it drops is a typo); the agent is a native sidecar
(restartPolicy: Always, which no validator checks) and agrees with its
configuration: socket path, port, probe paths, grace period, spool
directory, the user the image runs as; the ConfigMap's INI passes
--check-config; the runtime packages cover what the binaries link; the
compose file builds every image from the repository and configures a valid
agent that reaches the collector through the shared socket volume.
"""
import configparser
import json
import os
import re
import subprocess

import pytest
import yaml

from conftest import AGENT_BIN, EVENTS_FILE, ROOT

DOCKER = os.path.join(ROOT, "docker")
K8S = os.path.join(DOCKER, "k8s")


def render(where):
    out = subprocess.run(["kubectl", "kustomize", os.path.join(K8S, where)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return list(yaml.safe_load_all(out.stdout))


def missing(given, decoded, path=""):
    """Paths in `given` that `decoded` lacks: fields kubectl does not know."""
    if isinstance(given, dict):
        if not isinstance(decoded, dict):
            return [path]
        return [p for k, v in given.items()
                for p in (missing(v, decoded[k], f"{path}.{k}") if k in decoded
                          else [f"{path}.{k}"])]
    if isinstance(given, list):
        if not isinstance(decoded, list) or len(decoded) != len(given):
            return [path]
        return [p for i, v in enumerate(given) for p in missing(v, decoded[i], f"{path}[{i}]")]
    return []


def decode(obj, tmp_path):
    """The object as kubectl decodes it with its API types (offline)."""
    f = tmp_path / "object.yaml"
    f.write_text(yaml.safe_dump(obj))
    out = subprocess.run(["kubectl", "set", "image", "--local", "-f", str(f), "*=unchanged",
                          "-o", "json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def ini_of(docs):
    cm = [d for d in docs if d["kind"] == "ConfigMap"]
    assert len(cm) == 1
    config = configparser.ConfigParser(inline_comment_prefixes=(";",))
    config.read_string(cm[0]["data"]["telemetry-agent.ini"])
    return cm[0], config


@pytest.mark.parametrize("where", ["base", "overlays/example"])
def test_the_manifests_decode_and_the_sidecar_agrees_with_its_configuration(tmp_path, where):
    docs = render(where)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == (["ConfigMap", "Deployment", "Job"] if where == "base"
                     else ["ConfigMap", "Deployment", "Job", "Secret"])
    cm, ini = ini_of(docs)
    socket_path = ini["agent"]["socket"]
    grace_ms = int(ini["agent"]["shutdown_grace_ms"])
    port = int(ini["http"]["listen"].rsplit(":", 1)[1])
    for w in (d for d in docs if d["kind"] in ("Deployment", "Job")):
        decoded = decode(w, tmp_path)
        assert missing(w, decoded) == [], "fields kubectl does not know"
        pod = w["spec"]["template"]["spec"]
        agent = pod["initContainers"][0]
        assert agent["name"] == "telemetry-agent" and agent["restartPolicy"] == "Always"
        assert pod["terminationGracePeriodSeconds"] * 1000 > grace_ms
        ops = {p["name"]: p["containerPort"] for p in agent["ports"]}
        assert ops["ops"] == port == 9464
        assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "ops"}
        assert agent["startupProbe"]["httpGet"]["path"] == "/readyz"
        env = {e["name"]: e for e in agent["env"]}
        assert env["TELEMETRY_AGENT_API_KEY"]["valueFrom"]["secretKeyRef"]["key"] == "api-key"
        volumes = {v["name"]: v for v in pod["volumes"]}
        mounts = {m["name"]: m["mountPath"] for m in agent["volumeMounts"]}
        assert mounts["telemetry-socket"] == os.path.dirname(socket_path)
        assert "emptyDir" in volumes["telemetry-socket"] and "emptyDir" in volumes["telemetry-spool"]
        assert mounts["telemetry-spool"] == ini["spool"]["dir"]
        assert volumes["telemetry-config"]["configMap"]["name"] == cm["metadata"]["name"]
        assert agent["args"] == ["-c", mounts["telemetry-config"] + "/telemetry-agent.ini"]
        # Kubernetes updates a ConfigMap mounted as a directory in place (never
        # one mounted with subPath), and the agent watches its file
        assert not any("subPath" in m for m in agent["volumeMounts"])
        assert int(ini["agent"]["watch_config_ms"]) > 0
        for c in [agent] + pod["containers"]:
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] and sc["readOnlyRootFilesystem"]
            assert sc["capabilities"]["drop"] == ["ALL"] and not sc["allowPrivilegeEscalation"]
            assert sc["runAsUser"] == 10001
            assert c["resources"]["limits"]["memory"]
        app = pod["containers"][0]
        assert {m["name"]: m["mountPath"] for m in app["volumeMounts"]}["telemetry-socket"] == \
            os.path.dirname(socket_path)
        assert {e["name"]: e.get("value") for e in app["env"]}["TELEMETRY_SOCKET"] == socket_path
        if where != "base":
            assert agent["image"] == "registry.example.com/telemetry-agent:0.1.0"


def test_the_overlay_changes_only_the_image_the_backend_and_the_secret(tmp_path):
    _, base = ini_of(render("base"))
    docs = render("overlays/example")
    _, overlay = ini_of(docs)
    assert {s: dict(base[s]) for s in base.sections() if s != "backend"} == \
        {s: dict(overlay[s]) for s in overlay.sections() if s != "backend"}
    assert overlay["backend"]["url"] != base["backend"]["url"]
    secret = [d for d in docs if d["kind"] == "Secret"][0]
    assert "api-key" in secret["data"]


def test_the_configmaps_ini_is_a_valid_configuration(tmp_path):
    cm, _ = ini_of(render("overlays/example"))
    f = tmp_path / "telemetry-agent.ini"
    f.write_text(cm["data"]["telemetry-agent.ini"])
    out = subprocess.run([AGENT_BIN, "--check-config", "-c", str(f)], capture_output=True,
                         text=True, timeout=30,
                         env=dict(os.environ, TELEMETRY_AGENT_API_KEY="phc_test",
                                  TELEMETRY_AGENT_EVENTS_REGISTRY=""))
    assert out.returncode == 0, out.stderr
    # and it matches the agent's defaults where the pod relies on them
    defaults = configparser.ConfigParser(inline_comment_prefixes=(";",))
    defaults.read_string(subprocess.run([AGENT_BIN, "--print-default-config"],
                                        capture_output=True, text=True).stdout)
    assert defaults["agent"]["socket"] == "/run/telemetry/agent.sock"
    assert defaults["http"]["listen"].endswith(":9464")


def test_the_image_agrees_with_the_manifests():
    dockerfile = open(os.path.join(DOCKER, "Dockerfile")).read()
    assert re.search(r"^USER 10001:10001$", dockerfile, re.M)
    assert re.search(r"^EXPOSE 9464$", dockerfile, re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM$", dockerfile, re.M)
    assert 'VOLUME ["/run/telemetry", "/var/lib/telemetry-agent/spool"]' in dockerfile
    assert "HEALTHCHECK" in dockerfile and "org.opencontainers.image.version" in dockerfile
    assert "$(grep -v '^#' /tmp/runtime-packages)" in dockerfile  # the one list


def test_the_build_stage_copies_every_directory_the_build_reads():
    """The image's build stage COPYs each top-level directory the build
    reads: those the top-level CMakeLists.txt names (add_subdirectory, source
    paths) and those any CMakeLists.txt reaches from the source root. One
    missing stops the image's build, in CI too, where no image is built."""
    tops = {d for d in os.listdir(ROOT)
            if os.path.isdir(os.path.join(ROOT, d)) and not d.startswith(".")}
    top_cmake = open(os.path.join(ROOT, "CMakeLists.txt")).read()
    read = {d for d in tops
            if re.search(r"(?<![\w/${.-])" + re.escape(d) + r"(?=[/)\s])", top_cmake)}
    for where, _, files in os.walk(ROOT):
        if "CMakeLists.txt" in files and "build" not in os.path.relpath(where, ROOT):
            text = open(os.path.join(where, "CMakeLists.txt")).read()
            read |= set(re.findall(r"_SOURCE_DIR\}/(\w+)", text)) & tops
    assert {"agent", "client", "proto", "tests", "bench"} <= read  # the reading works
    build_stage = open(os.path.join(DOCKER, "Dockerfile")).read().split("\nFROM ")[1]
    copied = set(re.findall(r"^COPY (\S+) \1$", build_stage, re.M))
    assert read <= copied, f"the build stage does not COPY {sorted(read - copied)}"
    assert "COPY CMakeLists.txt ./" in build_stage


def test_the_runtime_packages_cover_what_the_binaries_link():
    """Every shared library the agent and telemetry-send link directly comes
    from a package of docker/runtime-packages (or the C library itself)."""
    listed = {line.strip() for line in open(os.path.join(DOCKER, "runtime-packages"))
              if line.strip() and not line.startswith("#")}
    build = os.path.dirname(AGENT_BIN)
    for binary in (AGENT_BIN, os.path.join(build, "client", "telemetry-send")):
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]",
                            subprocess.run(["readelf", "-d", binary], capture_output=True,
                                           text=True).stdout)
        assert needed, binary
        paths = dict(re.findall(r"^\s*(\S+) => (\S+)", subprocess.run(
            ["ldd", binary], capture_output=True, text=True).stdout, re.M))
        for lib in needed:
            if lib.startswith(("libc.so", "libm.so", "ld-linux", "libasan", "libubsan",
                               "libstdc++", "libgcc_s")):
                continue  # the C library (its loader, for thread-local data, too), the sanitizers
            owner = subprocess.run(["dpkg", "-S", os.path.realpath(paths[lib])],
                                   capture_output=True, text=True).stdout.split(":")[0]
            assert owner in listed, f"{binary} links {lib} from {owner}, not in runtime-packages"


def test_the_compose_file_builds_from_the_repo_and_configures_a_valid_agent():
    with open(os.path.join(DOCKER, "compose.yaml")) as f:
        compose = yaml.safe_load(f)
    services = compose["services"]
    assert set(services) == {"agent", "producer", "collector"}
    for name, service in services.items():
        if "build" in service:  # every image builds from this repository, offline
            context = os.path.normpath(os.path.join(DOCKER, service["build"]["context"]))
            assert os.path.isfile(os.path.join(context, service["build"]["dockerfile"])), name
        else:
            assert service["image"] == services["agent"]["image"], name
    # the agent's environment is a valid configuration, pointing at the collector
    env = dict(os.environ, **services["agent"]["environment"])
    env.pop("TELEMETRY_AGENT_HTTP_LISTEN", None)
    env["TELEMETRY_AGENT_EVENTS_REGISTRY"] = EVENTS_FILE  # installed in the image
    out = subprocess.run([AGENT_BIN, "--check-config"], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    url = services["agent"]["environment"]["TELEMETRY_AGENT_BACKEND_URL"]
    with open(os.path.join(DOCKER, "collector.Dockerfile")) as f:
        dockerfile = f.read()
    port = re.search(r'"--port", "(\d+)"', dockerfile).group(1)
    assert url == f"http://collector:{port}/batch"
    # producer and agent share the socket's volume, at the agent's socket path
    socket_path = services["producer"]["environment"]["TELEMETRY_SOCKET"]
    for name in ("agent", "producer"):
        assert f"telemetry-socket:{os.path.dirname(socket_path)}" in services[name]["volumes"]
