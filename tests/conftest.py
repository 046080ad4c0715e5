"""Shared fixtures. Tools the end-to-end tests need are required, not optional: a missing
one fails the test (with the package to install) instead of skipping it."""
import shutil
import sys
from pathlib import Path

import pytest

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
