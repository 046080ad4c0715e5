"""`kdp bench SUITE --quick --json` runs and reports kdp beside its peers (the speed
figures themselves are judged in bench/, not here); a peer that is missing or fails is
left out with its reason, never a traceback."""
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kdp.benchmarks.peers import PeerFailed, attempt, linux_conntrack as lc, print_not_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("suite", ["lpm", "conntrack", "pipeline", "read", "dns", "policy", "replay", "attach"])
def test_bench_quick_prints_json_with_kdp_figures(suite, tmp_path):
    run = subprocess.run([sys.executable, "-m", "kdp.cli", "bench", suite, "--quick", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PATH": "/usr/local/bin:/usr/bin:/bin", "TMPDIR": str(tmp_path),
                              "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    CHECKS[suite](report)
    load = report["load"]                        # the machine's load while it ran
    assert load["wall_s"] > 0 and load["cpu_s"] > 0 and load["disturbed"] == (load["cpu_per_wall"] < 0.9)
    assert list(tmp_path.iterdir()) == []        # generated captures are removed


def check_lpm(r):
    tables = {row["table"] for row in r["batch"] if row["lookups_per_s"] > 0}
    assert {"k8s", "bgp", "v6"} <= tables


def check_conntrack(r):
    headline = r["results"][0]
    assert headline["measure"].startswith("new flows/s, whole pipeline") and headline["rate"] > 0
    kdp_rows = [row for row in r["results"] if row["impl"] == "kdp" and row["rate"] > 0]
    assert len(kdp_rows) >= 3 and 0 < r["bytes_per_flow"] <= 1024
    linux_rows = [row for row in r["results"] if row["impl"] == "linux nf_conntrack"]
    assert [row["rate"] > 0 for row in linux_rows] == [True, True]     # CI runs as root with nft


def check_replay(r):
    runs = {row["what"]: row for row in r["runs"]}
    assert runs["kdp replay -o out.pcap"]["packets_per_s"] > 0
    assert all(row["cpu_seconds"] > 0 for row in r["runs"])
    assert "tcpdump -r IN -w OUT" in runs                   # run-tests.sh installs tcpdump
    assert [s["what"] for s in r["startup"]] == ["no cluster", "the sample cluster (pcaps/sample-cluster)",
                                                 "1,000 Services (YAML)"]
    assert set(r["split_per_packet_ns"]) == {"read", "process", "write", "log"}
    assert all(v > 0 for v in r["split_per_packet_ns"].values())
    # --workers 1 against 2: both rows measured, and the workload really sharded (no notice
    # that it fell back to one worker)
    assert [w["what"] for w in r["workers"]] == ["kdp replay -o out.pcap", "kdp replay -o out.pcap --log LOG"]
    assert all(min(w["cli_seconds"]) > 0 and min(w["in_process_packets_per_s"]) > 0
               and min(w["in_process_cpu_seconds"]) > 0 for w in r["workers"])
    assert all(w["notices"] == [] for w in r["workers"]), r["workers"]
    assert r["two_threads_before"] > 0 and r["two_threads_after"] > 0


def check_attach(r):
    rows = {row["path"]: row for row in r["rows"]}
    assert set(rows) == {"kdp", "kdp --no-offloads", "kernel"}, r["peers_not_run"]   # CI: root, iperf3, nft
    for row in rows.values():
        assert row["gbit_per_s"] > 0 and row["packets_per_s"] > 0 and row["connections_per_s"] > 0
    # kdp's own summary: with offloads the kernel handed it super-frames, without none
    assert rows["kdp"]["gso_frames"] > 0 and rows["kdp --no-offloads"]["gso_frames"] == 0
    assert rows["kdp"]["bytes_per_frame"] > rows["kdp --no-offloads"]["bytes_per_frame"]
    # the cores each measurement kept busy: kdp's process did work during each, and no
    # more than the machine had; the kernel path has no kdp column
    for what in ("tcp", "udp", "conn"):
        for path in ("kdp", "kdp --no-offloads"):
            row = rows[path]
            assert 0 < row[f"{what}_kdp_cores"] <= row[f"{what}_machine_cores"] + 0.1 <= os.cpu_count() + 0.1
        assert 0 < rows["kernel"][f"{what}_machine_cores"] and f"{what}_kdp_cores" not in rows["kernel"]


def check_pipeline(r):
    p = r["pipeline"]
    assert p["packets"] == r["size"]["packets"] and p["loop_warm_s"] > 0
    assert p["reasons"] == {"forwarded": p["packets"]}     # the workload is all service traffic
    assert r["compile"]["compile_s"] > 0 and r["update"][0]["median_s"] > 0


def check_policy(r):
    sets = {s["policies"]: s for s in r["sets"]}
    assert set(sets) == {0, *r["size"]["sets"]}
    for s in sets.values():
        # every flow of the workload is allowed, whatever the set: the sets differ in cost only
        assert s["outcomes"] == {"forwarded": r["capture"]["packets"]} and s["process_s"] > 0
        assert s["syn_process_s"] > 0
    big = sets[max(sets)]
    assert big["policy_compile_s"] > 0 and big["memory"]["total"] > 0 and big["stats"]["identities"] > 1
    assert r["nca"][0]["seconds"] > 0 and r["peers_not_run"] == []   # nca answers on the smallest slice


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


CHECKS = {"lpm": check_lpm, "conntrack": check_conntrack, "pipeline": check_pipeline, "replay": check_replay, "attach": check_attach,
          "read": check_read, "dns": check_dns, "policy": check_policy}


def test_linux_conntrack_peer_tracks_every_flow_and_restores_host_limits():
    # the Linux reference of `kdp bench conntrack`: it must really track each flow it
    # times (and the notrack run none: the figure is their difference), measure a CPU
    # cost per packet, and leave the host's conntrack limits and namespaces as they were
    assert lc.available() is None, lc.available()
    before = host_limits()
    r = lc.measure(n=3_000, packets=3_000, repeats=1)
    run = r["runs"][0]
    assert run["flows_tracked"] >= 3_000 and run["flows_tracked_notrack"] == 0
    # a one-byte sendto over loopback costs the process microseconds of CPU: measured
    # at 3,000 packets, a clock of 10 ms ticks would give 0 or a multiple of 3.3 µs
    assert 100 < run["send_ns_untracked"] < 1_000_000
    assert host_limits() == before
    assert "kdpct-" not in namespaces()


def test_the_linux_peer_reads_a_cpu_clock_finer_than_a_millisecond():
    # 200 µs of work must show on the clock every time (os.times() ticks every 10 ms)
    for _ in range(5):
        t0 = lc.cpu_ns()
        end = time.perf_counter() + 200e-6
        while time.perf_counter() < end:
            pass
        assert 0 < lc.cpu_ns() - t0 < 50_000_000


def failing_nft(tmp_path):
    """A directory holding an `nft` that fails as nft does on a rule it cannot load."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    nft = bindir / "nft"
    nft.write_text("#!/bin/sh\necho 'Error: Could not process rule: simulated for the test' >&2\n"
                   "exit 1\n")
    nft.chmod(0o755)
    return bindir


def test_a_failing_linux_worker_raises_peer_failed_with_its_stderr(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{failing_nft(tmp_path)}:/usr/local/bin:/usr/bin:/bin")
    assert lc.available() is None
    before = host_limits()
    with pytest.raises(PeerFailed) as caught:
        lc.measure(n=1_000, packets=1_000, repeats=1)
    assert "the worker (notrack run, 1,000 flows, in network namespace kdpct-" in str(caught.value)
    assert "exited with status 1" in str(caught.value)
    # the worker names the command that failed and passes on what it said
    assert "nft table ip kdpbench" in caught.value.stderr
    assert "simulated for the test" in caught.value.stderr
    assert "Traceback" not in caught.value.stderr
    assert host_limits() == before
    assert "kdpct-" not in namespaces()


def test_bench_conntrack_leaves_a_failing_linux_peer_out_with_its_reason_and_stderr(tmp_path):
    run = subprocess.run([sys.executable, "-m", "kdp.cli", "bench", "conntrack", "--quick"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PATH": f"{failing_nft(tmp_path)}:/usr/local/bin:/usr/bin:/bin",
                              "TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Traceback" not in run.stdout + run.stderr
    out = run.stdout
    assert "bulk insert4" in out                                 # the kdp figures are there
    assert "CPU ns" not in out          # no row of the failed peer (its note starts so)
    assert ("linux nf_conntrack: failed, left out: the worker (notrack run, 131,072 flows, "
            "in network namespace kdpct-") in out
    assert "  | linux_conntrack worker: `" in out and "simulated for the test" in out


def test_bench_read_without_its_peers_reports_each_and_keeps_kdp_figures(tmp_path):
    # dpkt shadowed by a module that cannot be imported, tcpdump off PATH
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "dpkt.py").write_text("raise ImportError('blocked for the test')\n")
    run = subprocess.run([sys.executable, "-m", "kdp.cli", "bench", "read", "--quick", "--json"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={"PATH": str(tmp_path / "nothing"), "TMPDIR": str(tmp_path),
                              "PYTHONPATH": f"{blocked}:{ROOT}"})
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout)
    readers = [row["reader"] for row in report["results"]]
    assert readers == ["kdp read+parse", "kdp read only", "scapy read+dissect"]
    assert all(row["x_dpkt"] is None for row in report["results"])
    assert report["peers_not_run"] == [
        {"peer": "dpkt", "status": "unavailable", "stderr": "",
         "reason": "the Python package 'dpkt' is not installed (pip install 'kdp[bench]' brings it)"},
        {"peer": "tcpdump", "status": "unavailable", "stderr": "",
         "reason": "the program 'tcpdump' is not on PATH"}]


def test_attempt_records_each_peer_once_and_prints_its_stderr():
    not_run = []

    def fails():
        raise PeerFailed("exited with status 3", "line one\nline two\n")
    assert attempt("p", fails, not_run) is None
    assert attempt("p", fails, not_run) is None
    assert attempt("q", lambda: 42, not_run) == 42
    assert not_run == [{"peer": "p", "status": "failed", "reason": "exited with status 3",
                        "stderr": "line one\nline two\n"}]
    out = io.StringIO()
    print_not_run(not_run, file=out)
    assert out.getvalue() == ("p: failed, left out: exited with status 3\n  its stderr:\n"
                              "  | line one\n  | line two\n")


def host_limits():
    return {k: lc._read(k) for k in ("nf_conntrack_max", "nf_conntrack_buckets")}


def namespaces():
    return subprocess.run([lc._tool("ip"), "netns", "list"], capture_output=True, text=True).stdout


def test_bench_dns_reports_a_missing_dnspython_instead_of_failing(monkeypatch):
    from kdp.benchmarks.peers import attempt, dnspython_responder as peer
    monkeypatch.setattr(peer, "dns", None)          # as if the package were not installed
    not_run = []
    assert attempt("dnspython responder", lambda: peer.responder(None), not_run) is None
    assert not_run[0]["status"] == "unavailable" and "dnspython" in not_run[0]["reason"]
