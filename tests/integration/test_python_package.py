"""
The Python client as a package (client/python/pyproject.toml): installed by
pip, offline, into a fresh virtualenv, it imports from that virtualenv with
its metadata, and an event sent through it with the virtualenv's Python
reaches the collector through the real agent.

Offline means --no-index and --no-build-isolation: the build backend must
already be in the virtualenv. Its setuptools comes from the venv module
(ensurepip installs setuptools into the venvs of Python 3.11 and older;
Debian's from python3-setuptools-whl), and wheel, which setuptools older than
70.1 needs to build a wheel, from Debian's wheel of it (python3-wheel-whl in
/usr/share/python-wheels). A virtualenv made with --system-site-packages would
see Debian's python3-setuptools instead, but also everything else installed
system-wide, which this test wants to keep out.

Twice: with a virtualenv of Debian's /usr/bin/python3 (always), and with one
of the other python3 first on PATH (pyenv's, say) when there is one, else
that half is skipped. Debian's setuptools wheel is built for Debian's Python
only (its install_layout option), so when the other Python's venv has no
setuptools of its own (3.12 and later) or one older than 61 (before the
[project] table), the package is built into a wheel in Debian's virtualenv
and that wheel is installed instead: what a user without the network does.

pip builds in the source directory, so each build works on a fresh copy of
client/python (what a checkout has): setuptools would pack whatever an earlier
build left in its build/ directory, and the test would pass on a stale build.
What the build leaves there must be ignored by git (.gitignore).

pip's configuration on the machine (PIP_* variables, pip.conf) is ignored,
so that its find-links or index cannot stand in for a missing package.
"""
import json
import os
import re
import shutil
import subprocess

import pytest

from conftest import ROOT, backend

PACKAGE_DIR = os.path.join(ROOT, "client", "python")
DEBIAN_PYTHON = "/usr/bin/python3"
DEBIAN_WHEELS = "/usr/share/python-wheels"  # python3-setuptools-whl, python3-wheel-whl
DIST_NAME = "telemetry-client"


def project_version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        m = re.search(r"project\(\s*telemetry-agent\s+VERSION\s+([0-9.]+)", f.read())
    assert m, "no project(telemetry-agent VERSION ...) in CMakeLists.txt"
    return m.group(1)


def clean_env(**extra):
    """The environment without pip's settings or a Python path of the caller."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PIP_") and k not in (
               "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV",
               "__PYVENV_LAUNCHER__", "TELEMETRY_CLIENT_PURE_PYTHON")}
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1",
               PYTHONNOUSERSITE="1")
    env.update(extra)
    return env


def run(cmd, cwd, timeout=300, **env):
    """Run cmd; fail the test with its output unless it exits 0."""
    p = subprocess.run(cmd, cwd=cwd, env=clean_env(**env), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, timeout=timeout)
    if p.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {p.returncode} (in {cwd}):\n{p.stdout}")
    return p.stdout


def source_copy(base):
    """A copy of client/python as a fresh checkout has it, at base/client/python."""
    dest = os.path.join(base, "client", "python")
    shutil.copytree(PACKAGE_DIR, dest, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", "__pycache__", "*.pyc"))
    return dest


def files_under(top):
    return {os.path.relpath(os.path.join(d, f), top) for d, _, fs in os.walk(top) for f in fs}


def describe(python):
    """(real executable, (major, minor)) of an interpreter, or None if it does not run."""
    try:
        p = subprocess.run([python, "-c", "import os, sys; print(os.path.realpath(sys.executable));"
                            " print('%d %d' % sys.version_info[:2])"],
                           env=clean_env(), cwd="/", stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    executable, version = p.stdout.split("\n")[:2]
    return executable, tuple(int(x) for x in version.split())


def other_python():
    """The python3 first on PATH when it is not Debian's /usr/bin/python3
    (itself or a virtualenv of it): (path, version), or (None, why not)."""
    found = shutil.which("python3")
    if found is None:
        return None, "no python3 on PATH"
    debian = describe(DEBIAN_PYTHON)
    other = describe(found)
    if other is None:
        return None, f"{found} (first python3 on PATH) does not run"
    if debian is not None and other[0] == debian[0]:
        return None, f"the python3 on PATH ({found}) is Debian's {debian[0]}"
    if other[1] < (3, 7):
        return None, f"the python3 on PATH ({other[0]}) is {other[1]}, the package needs 3.7+"
    return other[0], other[1]


class Venv:
    def __init__(self, name, directory):
        self.name = name
        self.dir = directory
        self.python = os.path.join(directory, "bin", "python")
        self.pip = os.path.join(directory, "bin", "pip")

    def setuptools_version(self):
        p = subprocess.run([self.python, "-c", "import setuptools; print(setuptools.__version__)"],
                           env=clean_env(), cwd=self.dir, stdout=subprocess.PIPE,
                           stderr=subprocess.DEVNULL, text=True)
        if p.returncode != 0:
            return None
        return tuple(int(x) for x in re.findall(r"\d+", p.stdout)[:2])


def make_venv(name, python, directory):
    """A fresh virtualenv with pip (from the venv module), no system site packages."""
    run([python, "-m", "venv", directory], cwd=os.path.dirname(directory))
    venv = Venv(name, directory)
    assert os.path.exists(venv.pip), f"{python} -m venv made no pip: {os.listdir(directory)}"
    return venv


def install_from_source(venv, base):
    """What the README says, offline: the backend into the venv from Debian's
    wheels, then the package from (a copy of) the source tree. Records what
    the build left in that tree."""
    source = source_copy(base)
    before = files_under(source)
    run([venv.pip, "install", "--no-index", "--find-links", DEBIAN_WHEELS, "wheel"], cwd=base)
    run([venv.pip, "install", "--no-build-isolation", "--no-index", "./client/python"], cwd=base)
    venv.left_behind = files_under(source) - before
    venv.route = "source"


@pytest.fixture(scope="module")
def debian_venv(tmp_path_factory):
    """A virtualenv of Debian's python3, the package installed from source."""
    base = tmp_path_factory.mktemp("venv-debian")
    venv = make_venv("debian", DEBIAN_PYTHON, str(base / "venv"))
    install_from_source(venv, str(base))
    return venv


@pytest.fixture(scope="module", params=["debian", "path"])
def installed(request, tmp_path_factory):
    if request.param == "debian":
        return request.getfixturevalue("debian_venv")
    python, version = other_python()
    if python is None:
        pytest.skip(version)
    base = tmp_path_factory.mktemp("venv-path")
    venv = make_venv("path", python, str(base / "venv"))
    setuptools = venv.setuptools_version()
    if setuptools is not None and setuptools >= (61, 0):
        install_from_source(venv, str(base))
    else:
        # No setuptools that reads [project] in this venv, and Debian's wheel
        # of it only works with Debian's Python: build the wheel there.
        debian = request.getfixturevalue("debian_venv")
        source = source_copy(str(base))
        before = files_under(source)
        # without the C encoder, which would tie the wheel to Debian's Python
        run([debian.pip, "wheel", "--no-build-isolation", "--no-index", "--no-deps",
             "-w", "dist", "./client/python"], cwd=str(base), TELEMETRY_CLIENT_PURE_PYTHON="1")
        venv.left_behind = files_under(source) - before
        wheels = sorted((base / "dist").glob("telemetry_client-*.whl"))
        assert len(wheels) == 1, f"pip wheel made {wheels}"
        run([venv.pip, "install", "--no-index", str(wheels[0])], cwd=str(base))
        venv.route = "wheel"
    return venv


PROBE = r"""
import json, os, sys, sysconfig
import telemetry_client
out = {"file": telemetry_client.__file__, "purelib": sysconfig.get_paths()["purelib"],
       "prefix": sys.prefix, "has_client": hasattr(telemetry_client, "Client"),
       "encoder": telemetry_client.ENCODER}
try:
    import importlib.metadata as md
except ImportError:  # Python 3.7
    md = None
if md is not None:
    meta = md.metadata("telemetry-client")
    out.update(version=md.version("telemetry-client"), requires=md.requires("telemetry-client"),
               requires_python=meta["Requires-Python"], summary=meta["Summary"],
               files=[str(f) for f in md.files("telemetry-client")])
print(json.dumps(out))
"""


def test_pyproject_has_the_project_version():
    import tomllib
    with open(os.path.join(PACKAGE_DIR, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["version"] == project_version()
    assert project["name"] == DIST_NAME
    assert project["requires-python"] == ">=3.7"
    assert not project.get("dependencies")


def test_the_module_imports_from_the_venv(installed, tmp_path):
    # Run outside the source tree, so that only the venv can supply the module.
    got = json.loads(run([installed.python, "-c", PROBE], cwd=str(tmp_path)))
    where = os.path.realpath(got["file"])
    venv = os.path.realpath(installed.dir)
    assert os.path.realpath(got["prefix"]) == venv
    assert os.path.dirname(where) == os.path.realpath(got["purelib"])
    assert where.startswith(venv + os.sep), where
    assert not where.startswith(os.path.realpath(ROOT) + os.sep), where
    assert not where.startswith("/usr/local/"), where
    assert got["has_client"]
    if "version" in got:
        assert got["version"] == project_version()
        assert got["requires"] is None  # standard library only
        assert got["requires_python"] == ">=3.7"
        assert got["summary"]
        # One top-level module and its C encoder: nothing else lands in
        # site-packages.
        tops = {f.split("/")[0] for f in got["files"]}
        speedups = {t for t in tops if re.match(r"_telemetry_speedups\.cpython-.*\.so$", t)}
        assert tops - speedups <= {"telemetry_client.py", "__pycache__",
                                   "telemetry_client-%s.dist-info" % project_version()}, tops
        assert "telemetry_client.py" in tops
        # built from source here (a compiler and the headers are at hand);
        # the wheel for another Python is made without it
        assert len(speedups) == (installed.route != "wheel"), tops
    assert got["encoder"] == ("python" if installed.route == "wheel" else "c")
    show = run([installed.pip, "show", DIST_NAME], cwd=str(tmp_path))
    assert re.search(r"^Version: %s$" % re.escape(project_version()), show, re.M), show


def test_building_leaves_nothing_for_git(installed):
    if shutil.which("git") is None or subprocess.run(
            ["git", "-C", ROOT, "rev-parse", "--git-dir"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode != 0:
        pytest.skip("the source tree is not a git work tree")
    assert installed.left_behind, "the build left nothing in the source directory?"
    paths = sorted("client/python/" + p for p in installed.left_behind)
    p = subprocess.run(["git", "-C", ROOT, "check-ignore", "--no-index", "--stdin"],
                       input="\n".join(paths) + "\n", stdout=subprocess.PIPE, text=True)
    assert p.returncode in (0, 1), p
    ignored = set(p.stdout.splitlines())
    assert [x for x in paths if x not in ignored] == [], (
        "building leaves files git would pick up: add them to .gitignore")


SEND = r"""
import sys
import telemetry_client
client = telemetry_client.Client(reliable=True, atexit_timeout=0)
ok = client.capture("project:created", {"projects_count": 7, "python": sys.argv[1],
                                        "client_file": telemetry_client.__file__})
flushed = client.flush(10)
stats = client.stats()
client.close()
print(stats)
sys.exit(0 if ok and flushed and stats["sent"] == 1 else 1)
"""


def test_an_event_reaches_the_collector(installed, make_agent, collector, tmp_path):
    agent = make_agent({"backend": backend(collector), "batch": {"max_age_ms": 20}})
    label = "%s python, installed from %s" % (installed.name, installed.route)
    run([installed.python, "-c", SEND, label], cwd=str(tmp_path), TELEMETRY_SOCKET=agent.socket)
    events = collector.wait_for_events(1, timeout=10)
    agent.stop()
    assert len(events) == 1, events
    event = events[0]
    assert event["event"] == "project:created"
    props = event["properties"]
    assert props["projects_count"] == 7 and props["python"] == label
    assert os.path.realpath(props["client_file"]).startswith(os.path.realpath(installed.dir))
    assert props["$lib"] == "telemetry-agent"
