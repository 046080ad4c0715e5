"""LPM benchmarks under pytest-benchmark (the same workloads as `kdp bench lpm`).

    python -m pytest bench/bench_lpm.py --benchmark-only            # full sizes
    KDP_BENCH_QUICK=1 python -m pytest bench/bench_lpm.py ...        # small

Each batch benchmark reports one lookup_batch call over the whole query set;
lookups/s = queries / mean (printed in extra_info).  test_insert_delete times
the insert+delete pairs of `kdp bench lpm` (µs per pair in extra_info).
"""
import functools
import os

import numpy as np
import pytest

from kdp._fast.lpm import Lpm4, Lpm6
from kdp.benchmarks import lpm as W
from kdp.benchmarks.peers import lpm_tries

QUICK = os.environ.get("KDP_BENCH_QUICK", "") not in ("", "0")
NQ = 1_000_000 if QUICK else 10_000_000
NSINGLE = 20_000 if QUICK else 200_000


@functools.lru_cache(None)
def table(name):
    if name == "k8s":
        return W.k8s_table()
    if name == "bgp":
        return W.bgp_table(100_000 if QUICK else 900_000)
    return W.v6_table(50_000 if QUICK else 200_000)


@functools.lru_cache(None)
def built(name):
    pre, lens, vals, _ = table(name)
    return (Lpm6 if name == "v6" else Lpm4).build(pre, lens, vals)


@functools.lru_cache(None)
def queries(name, kind):
    pre, lens, _, _ = table(name)
    return (W.queries6 if name == "v6" else W.queries4)(pre, lens, NQ, kind)


@pytest.mark.parametrize("kind", ["uniform", "hit90"])
@pytest.mark.parametrize("name", ["k8s", "bgp", "v6"])
def test_batch_lookups(benchmark, name, kind):
    t = built(name)
    q = queries(name, kind)
    out = np.empty(q.shape[0], np.uint32)
    benchmark.pedantic(t.lookup_batch, args=(q, out), rounds=7, iterations=1, warmup_rounds=1)
    benchmark.extra_info["lookups_per_s"] = q.shape[0] / benchmark.stats.stats.median
    benchmark.extra_info["memory"] = t.memory()


@pytest.mark.parametrize("name", ["k8s", "bgp", "v6"])
def test_build_from_arrays(benchmark, name):
    pre, lens, vals, _ = table(name)
    cls = Lpm6 if name == "v6" else Lpm4
    t = benchmark.pedantic(cls.build, args=(pre, lens, vals), rounds=3, iterations=1)
    benchmark.extra_info["prefixes"] = len(t)
    benchmark.extra_info["memory"] = t.memory()


def _single_keys(name):
    pre, lens, _, _ = table(name)
    return W.queries4(pre, lens, NSINGLE, "hit90", seed=9).tolist()


def _loop(fn, keys):
    for k in keys:
        fn(k)


@pytest.mark.parametrize("peer", ["kdp", "pytricia", "py-radix"])
@pytest.mark.parametrize("name", ["k8s", "bgp"])
def test_single_lookups_from_python(benchmark, name, peer):
    keys = _single_keys(name)
    pre, lens, vals, _ = table(name)
    if peer == "kdp":
        fn = built(name).lookup
    else:
        pytest.importorskip({"pytricia": "pytricia", "py-radix": "radix"}[peer])
        build = lpm_tries.pytricia_table if peer == "pytricia" else lpm_tries.radix_table
        fn, key = build(pre, lens, vals)
        keys = [key(a) for a in keys]
    benchmark.pedantic(_loop, args=(fn, keys), rounds=3, iterations=1)
    benchmark.extra_info["calls_per_s"] = len(keys) / benchmark.stats.stats.median


@pytest.mark.parametrize("name", ["k8s", "bgp", "v6"])
def test_insert_delete(benchmark, name):
    # the edits of `kdp bench lpm`: IPv4 2,000 random /24 and /28; v6 /48, /56,
    # /128 inside random table prefixes; each inserted and deleted again
    t = built(name)
    if name == "v6":
        pre, lens, _, _ = table(name)
        edits = W.updates6(pre, lens)
    else:
        ups = np.random.default_rng(5).integers(0, 1 << 32, 2000, dtype=np.uint64)
        edits = [(a, 24 if i & 1 else 28) for i, a in enumerate(ups.tolist())]
    benchmark.pedantic(W.time_updates, args=(t, edits), rounds=3, iterations=1)
    benchmark.extra_info["us_per_insert_delete"] = benchmark.stats.stats.median / len(edits) * 1e6
