"""Shared fixtures. Tools the end-to-end tests need are required, not optional: a missing
one fails the test (with the package to install) instead of skipping it."""
import os
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# CI runs the same examples every time (a failure there reproduces); locally
# hypothesis explores new ones on every run.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

sys.path.insert(0, str(Path(__file__).resolve().parent))    # tests/kdptest.py


def require_tool(name):
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (.ci/run installs it: apt-get install {name})")
    return path


@pytest.fixture
def tshark():
    return require_tool("tshark")


@pytest.fixture
def tcpdump():
    return require_tool("tcpdump")
