"""pytest-benchmark: NetworkPolicy decisions and compile, at two policy counts.

The workload of `kdp bench policy` (kdp/benchmarks/policy.py) at its --quick size:
2,000 pods in 20 namespaces seen from node-0, 10, 1,000 and 10,000 NetworkPolicies. The
decision is timed in bulk (PolicyTables.decide_many over 100,000 flows between node-0's
pods and pods of the namespaces both sets cover, both ways), and the compile of each set. Compare
the counts within one run: the decision costs what the node's profiles, identities and
segments ask, not what the number of policies does (bench/README.md: 21 ns at 10 or 100
policies, 27-29 ns at 1,000 or 10,000).

    python -m pytest bench/bench_policy.py --benchmark-only
"""
import ipaddress

import numpy as np
import pytest

from kdp.benchmarks import policy as wl
from kdp.control import Cluster
from kdp.control.policy_compile import compile_policy

NAMESPACES = 20
FLOWS = 100_000


@pytest.fixture(scope="module")
def base():
    return wl.cluster_docs(NAMESPACES, 100, 100)


def _flows(where):
    rng = np.random.default_rng(3)
    # as `kdp bench policy`: namespaces every set covers, so every flow is judged at both counts
    local = [ip for (n, _j), (ip, node) in where.items() if node == 0 and n < wl.TRAFFIC_NS]
    peers = [ip for (n, _j), (ip, _node) in where.items() if n < wl.TRAFFIC_NS]
    src = np.array([int(ipaddress.ip_address(x)) for x in local], np.uint32)[rng.integers(0, len(local), FLOWS)]
    dst = np.array([int(ipaddress.ip_address(x)) for x in peers], np.uint32)[rng.integers(0, len(peers), FLOWS)]
    swap = rng.random(FLOWS) < 0.5
    return np.where(swap, dst, src), np.where(swap, src, dst)


@pytest.mark.parametrize("count", [10, 1_000, 10_000])
def test_decisions(benchmark, base, count):
    docs, where = base
    compiled = compile_policy(Cluster.from_documents(docs + wl.policy_docs(count, NAMESPACES), node=wl.NODE))
    src, dst = _flows(where)
    z16 = np.zeros((FLOWS, 16), np.uint8)
    cols = (np.full(FLOWS, 4, np.uint8), src, dst, z16, z16, np.full(FLOWS, 6, np.uint8),
            np.full(FLOWS, 8080, np.uint16), np.zeros(FLOWS, np.uint8), np.zeros(FLOWS, np.uint8))
    reason, _eg, _ing = benchmark(compiled.tables.decide_many, *cols)
    assert (reason == 0).all()                 # the workload is all allowed (zz-allow-bench)
    benchmark.extra_info["decisions_per_s"] = FLOWS / benchmark.stats.stats.min


@pytest.mark.parametrize("count", [10, 1_000])
def test_compile(benchmark, base, count):
    docs, _ = base
    cluster = Cluster.from_documents(docs + wl.policy_docs(count, NAMESPACES), node=wl.NODE)
    compiled = benchmark(compile_policy, cluster)
    assert compiled.stats["policies"] == count
