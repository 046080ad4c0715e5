"""`kdp bench SUITE --quick --json` runs and reports kdp beside its peers (the speed
figures themselves are judged in bench/, not here)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("suite", ["lpm", "conntrack", "pipeline", "read", "dns"])
def test_bench_quick_prints_json_with_kdp_figures(suite, tmp_path):
    run = subprocess.run([sys.executable, "-m", "kdp.cli", "bench", suite, "--quick", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/local/bin:/usr/bin:/bin", "TMPDIR": str(tmp_path),
                              "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    CHECKS[suite](report)
    assert list(tmp_path.iterdir()) == []        # generated captures are removed


def check_lpm(r):
    tables = {row["table"] for row in r["batch"] if row["lookups_per_s"] > 0}
    assert {"k8s", "bgp", "v6"} <= tables


def check_conntrack(r):
    kdp_rows = [row for row in r["results"] if row["impl"] == "kdp" and row["rate"] > 0]
    assert len(kdp_rows) >= 3 and 0 < r["bytes_per_flow"] <= 1024
    linux_rows = [row for row in r["results"] if row["impl"] == "linux nf_conntrack"]
    assert [row["rate"] > 0 for row in linux_rows] == [True, True]     # CI runs as root with nft


def check_pipeline(r):
    p = r["pipeline"]
    assert p["packets"] == r["size"]["packets"] and p["loop_warm_s"] > 0
    assert p["reasons"] == {"forwarded": p["packets"]}     # the workload is all service traffic
    assert r["compile"]["compile_s"] > 0 and r["update"][0]["median_s"] > 0


def check_read(r):
    readers = {row["reader"]: row for row in r["results"]}
    assert readers["kdp read+parse"]["packets"] == r["capture"]["packets"]
    assert "dpkt read+decode" in {name.split(" (")[0] for name in readers} or \
        any(name.startswith("dpkt") for name in readers)


def check_dns(r):
    n = r["size"]["queries"]
    assert r["answered"] == n == sum(r["outcomes"].values())     # every query of the mix is kdp's
    assert set(r["outcomes"]) == {"answer", "nodata", "nxdomain"}
    assert r["process_s"] > 0 and r["stage_s"] > 0 and r["replay_out"] == n
    assert r["peer"]["queries"] > 0 and r["peer"]["mismatches"] == 0
    assert r["compile"]["names"] > r["size"]["services"]


CHECKS = {"lpm": check_lpm, "conntrack": check_conntrack, "pipeline": check_pipeline,
          "read": check_read, "dns": check_dns}


def test_linux_conntrack_peer_tracks_every_flow_and_restores_host_limits():
    # the Linux reference of `kdp bench conntrack`: it must really
    # track each flow it times, and leave the host's conntrack limits as they were
    from kdp.benchmarks import linux_conntrack as lc
    assert lc.available() is None, lc.available()
    before = {k: lc._read(k) for k in ("nf_conntrack_max", "nf_conntrack_buckets")}
    r = lc.measure(n=3_000, packets=3_000, repeats=1)
    assert r["runs"][0]["send_ns_untracked"] > 0
    assert {k: lc._read(k) for k in before} == before
    netns = subprocess.run([lc._tool("ip"), "netns", "list"], capture_output=True, text=True).stdout
    assert "kdpct-" not in netns
