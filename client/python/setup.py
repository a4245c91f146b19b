# The package's metadata is in pyproject.toml; this adds the optional C
# encoder (_telemetry_speedups.c). Where it cannot be built (no compiler,
# no Python headers) the package installs without it and encodes in Python;
# TELEMETRY_CLIENT_PURE_PYTHON=1 leaves it out on purpose (a wheel for any
# Python 3.7+, not one version and machine).
import os

from setuptools import Extension, setup

pure = os.environ.get("TELEMETRY_CLIENT_PURE_PYTHON") == "1"
setup(ext_modules=[] if pure else [
    Extension("_telemetry_speedups", ["_telemetry_speedups.c"], optional=True)])
