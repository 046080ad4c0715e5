"""Shared fixtures. Tools the end-to-end tests need are required, not optional: a missing
one fails the test (with the package to install) instead of skipping it."""
import os
import shutil
import sys
from pathlib import Path

import pytest
from hypothesis import settings

# Hypothesis profiles (README, "Property tests"):
#   ci       the same examples on every run (a failure there reproduces); chosen when CI is set
#   dev      hypothesis's defaults: new random examples on every run (the local default)
#   explore  random examples, no deadline, and every property test's own example count
#            multiplied by KDP_HYPOTHESIS_SCALE (default 20); pick a seed with
#            --hypothesis-seed=N to repeat a run
# KDP_HYPOTHESIS_PROFILE names one explicitly (it wins over CI).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("dev")
settings.register_profile("explore", derandomize=False, deadline=None, print_blob=True)
PROFILE, SCALE = "dev", 1


def pytest_configure(config):
    global PROFILE, SCALE
    # the parsed-snapshot cache of this run (kdp/control/parsecache.py) lives in a private
    # temporary directory, not the user's ~/.cache (subprocesses inherit it)
    if "KDP_CACHE_DIR" not in os.environ:
        import atexit
        import tempfile
        cache = tempfile.mkdtemp(prefix="kdp-test-cache-")
        os.environ["KDP_CACHE_DIR"] = cache
        atexit.register(shutil.rmtree, cache, True)
    PROFILE = os.environ.get("KDP_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    if PROFILE not in ("ci", "dev", "explore"):
        raise pytest.UsageError(f"KDP_HYPOTHESIS_PROFILE={PROFILE!r}: use ci, dev or explore")
    scale = os.environ.get("KDP_HYPOTHESIS_SCALE", "20" if PROFILE == "explore" else "1")
    if not scale.isdigit() or int(scale) < 1:
        raise pytest.UsageError(f"KDP_HYPOTHESIS_SCALE={scale!r}: a whole number >= 1")
    settings.load_profile(PROFILE)
    SCALE = int(scale)


def pytest_report_header(config):
    return f"kdp hypothesis profile: {PROFILE}, examples x{SCALE}"


def pytest_collection_modifyitems(config, items):
    """Scale the example count each property test sets itself (an explicit
    @settings(max_examples=...) wins over any profile, so the profile alone
    cannot raise it)."""
    if SCALE == 1:
        return
    done = set()
    for item in items:
        fn = getattr(item, "obj", None)
        own = getattr(fn, "_hypothesis_internal_use_settings", None)
        if own is None or id(fn) in done:      # parametrized tests share one function
            continue
        done.add(id(fn))
        fn._hypothesis_internal_use_settings = settings(
            own, max_examples=own.max_examples * SCALE, deadline=None, derandomize=False)

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
