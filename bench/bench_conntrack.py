"""pytest-benchmark: the conntrack table, kdp beside a Python dict.

The workload of `kdp bench conntrack` (kdp/benchmarks/conntrack.py) on 262,144 live
flows (the CLI runs 1,048,576). Compare rates within one run: each benchmark records
operations/s in extra_info["rate"].

    python -m pytest bench/bench_conntrack.py --benchmark-only
"""
import numpy as np
import pytest

from kdp._fast.conntrack import Conntrack, NO_FLOW, TCP_STATES
from kdp.benchmarks import conntrack as wl

FLOWS = 1 << 18


@pytest.fixture(scope="module")
def tuples():
    return wl.flows(FLOWS)


@pytest.fixture(scope="module")
def table(tuples):
    ct = Conntrack(FLOWS)
    ids = ct.insert4(*tuples, 1, tcp_state=TCP_STATES["ESTABLISHED"])
    assert not np.any(ids == NO_FLOW)
    return ct, ids


def _rate(benchmark, n):
    benchmark.extra_info["count"] = n
    benchmark.extra_info["rate"] = n / benchmark.stats.stats.min


def test_kdp_bulk_insert_fill(benchmark, tuples):
    def fill():
        ct = Conntrack(FLOWS)
        return ct.insert4(*tuples, 1)
    ids = benchmark.pedantic(fill, rounds=3, iterations=1)
    assert not np.any(ids == NO_FLOW)
    _rate(benchmark, FLOWS)


def test_kdp_bulk_established_lookup(benchmark, tuples, table):
    ct, ids = table
    q = np.random.default_rng(1).integers(0, FLOWS, 4 * FLOWS)
    qa = [a[q] for a in tuples]
    out = np.empty(q.size, np.uint32)
    benchmark.pedantic(lambda: ct.lookup4(*qa, out=out), rounds=5, iterations=1, warmup_rounds=1)
    assert np.array_equal(out, ids[q])
    _rate(benchmark, q.size)


def test_kdp_stage_established_packets(benchmark, tuples, table):
    ct, _ = table
    tcp = np.flatnonzero(tuples[4] == 6)
    idx = tcp[np.random.default_rng(2).integers(0, tcp.size, 64 * 1024)]
    frames = wl.tcp_frames(tuples, idx, 0x10)
    spent = []

    def run():
        sec, hits, _ = wl.stage_rate(ct, frames, 2)
        assert hits == len(frames)
        spent.append(sec)
    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["count"] = len(frames)
    benchmark.extra_info["rate"] = len(frames) / min(spent)   # stage time only, not the refill


def test_python_dict_lookup(benchmark, tuples):
    m = 100_000
    keys = list(zip(*(a[:m].tolist() for a in tuples)))
    d = {k: i for i, k in enumerate(keys)}
    get = d.get
    res = benchmark.pedantic(lambda: [get(k) for k in keys], rounds=3, iterations=1)
    assert res[-1] == m - 1
    _rate(benchmark, m)


def test_kdp_stage_new_flows_prefaulted(benchmark, tuples):
    # SYNs of new tuples into a prefaulted table (as the Dataplane builds it) holding
    # the FLOWS flows: ct_lookup_batch misses, then ct_create per packet
    k = 32 * 1024
    src, dst, sport, _, _ = tuples
    alt = (np.uint32(0xAC100000) + np.random.default_rng(5).integers(0, 1 << 20, k, dtype=np.uint32)).astype(np.uint32)
    syn = (alt, dst[:k], sport[:k], np.full(k, 80, np.uint16), np.full(k, 6, np.uint8))
    frames = wl.tcp_frames(syn, np.arange(k), 0x02)
    spent = []

    def run():
        ct = Conntrack(FLOWS + k, prefault=True)
        ct.insert4(*tuples, 1)
        sec, _, made = wl.stage_rate(ct, frames, 5, create=True)
        assert made == k
        spent.append(sec)
    benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info["count"] = k
    benchmark.extra_info["rate"] = k / min(spent)     # stage time only
