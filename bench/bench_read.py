"""pytest-benchmark: reading (and parsing) a capture, kdp beside dpkt, scapy and tcpdump.

The same workload as `kdp bench read` (kdp/benchmarks/read.py), on a 200,000-packet capture
generated once per session into a temporary directory. Compare rates within one run:
each benchmark records packets/s in extra_info["pps"].

    python -m pytest bench/bench_read.py --benchmark-only
"""
import shutil

import pytest

from kdp.benchmarks import read as wl
from kdp.benchmarks.peers import capture_readers as peers

PACKETS = 200_000


@pytest.fixture(scope="module")
def capture(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench-read") / "synth.pcap"
    wl.synth_capture(path, PACKETS)
    wl._warm(path)
    return path


def _run(benchmark, fn, rounds):
    n = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1 if rounds > 1 else 0)
    benchmark.extra_info["packets"] = n
    benchmark.extra_info["pps"] = n / benchmark.stats.stats.min
    return n


def test_kdp_read_and_parse(benchmark, capture):
    assert _run(benchmark, lambda: wl.run_kdp(capture, parse=True), 5) == PACKETS


def test_kdp_read_only(benchmark, capture):
    assert _run(benchmark, lambda: wl.run_kdp(capture, parse=False), 5) == PACKETS


def test_dpkt_read_and_decode_first_20k(benchmark, capture):
    pytest.importorskip("dpkt")
    assert _run(benchmark, lambda: peers.run_dpkt(capture, 20_000), 3) == 20_000


def test_scapy_read_and_dissect_first_2k(benchmark, capture):
    pytest.importorskip("scapy")
    assert _run(benchmark, lambda: peers.run_scapy(capture, 2_000), 1) == 2_000


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
def test_tcpdump_read_and_dump(benchmark, capture):
    benchmark.pedantic(lambda: peers.run_tcpdump(capture), rounds=3, iterations=1)
    benchmark.extra_info["packets"] = PACKETS
    benchmark.extra_info["pps"] = PACKETS / benchmark.stats.stats.min
