"""pytest-benchmark: packets through the service path, compile and endpoint-update times.

The workload of `kdp bench pipeline` (kdp/benchmarks/pipeline.py) at its --quick size
for packets (1,000 Services / 10,000 endpoints, 100,000 packets in ~6,700 TCP flows
with replies from the chosen backends), and compile/update at 1,000 and 10,000
Services. Each packet benchmark records packets/s in extra_info["pps"]; compare rates
within one run (the machine is shared).

    python -m pytest bench/bench_pipeline.py --benchmark-only
"""
import numpy as np
import pytest

from kdp.benchmarks import pipeline as wl
from kdp.control import Cluster, compile as compile_cluster

PACKETS = 100_000
SERVICES = 1_000


@pytest.fixture(scope="module")
def small():
    docs = wl.cluster_docs(SERVICES, SERVICES * 10)
    return docs, compile_cluster(Cluster.from_documents(docs, node=wl.NODE))


@pytest.fixture(scope="module")
def large():
    docs = wl.cluster_docs(10_000, 100_000)
    return docs, compile_cluster(Cluster.from_documents(docs, node=wl.NODE))


@pytest.fixture(scope="module")
def capture(small, tmp_path_factory):
    docs, tables = small
    path = str(tmp_path_factory.mktemp("bench-pipeline") / "service-path.pcap")
    info = wl.synth_capture(path, PACKETS, tables, wl._targets(docs))
    return path, info


def _all_forwarded(dp, n):
    from kdp._fast.packet import Verdict
    assert int(dp.counters.sum()) == n
    assert int(dp.verdicts[int(Verdict.V_FORWARD)]) == n


def test_process_new_and_established_mix(benchmark, small, capture):
    _, tables = small
    path, info = capture
    batches = wl._load_batches(path)
    state = {}

    def setup():
        wl._load_batches(path, batches=batches)
        state["dp"] = wl._fresh_dp(tables)
        return (state["dp"], batches), {}

    benchmark.pedantic(lambda dp, bs: wl._time_process(dp, bs), setup=setup, rounds=5)
    _all_forwarded(state["dp"], PACKETS)
    states, _ = wl._ct_mix(batches)
    assert states["CT_NEW"] == info["flows"]           # one new flow per TCP flow, the rest known
    assert states["CT_REPLY"] == info["replies"]       # every reply found its (translated) flow
    benchmark.extra_info["pps"] = PACKETS / benchmark.stats.stats.min


def test_process_fast_path_only(benchmark, small, capture):
    _, tables = small
    path, _ = capture
    batches = wl._load_batches(path)
    state = {}

    def setup():
        dp = wl._fresh_dp(tables)
        wl._load_batches(path, batches=batches)
        wl._time_process(dp, batches)                  # first pass: every flow created
        wl._load_batches(path, batches=batches)
        state["dp"] = dp
        return (dp, batches), {}

    benchmark.pedantic(lambda dp, bs: wl._time_process(dp, bs), setup=setup, rounds=5)
    states, _ = wl._ct_mix(batches)
    assert "CT_NEW" not in states
    benchmark.extra_info["pps"] = PACKETS / benchmark.stats.stats.min


def test_replay_read_process_write(benchmark, small, capture, tmp_path):
    from kdp.replay import replay
    _, tables = small
    path, _ = capture
    out = str(tmp_path / "out.pcap")
    res = benchmark.pedantic(lambda: replay(path, out, dataplane=wl._fresh_dp(tables), batch_size=wl.BATCH),
                             rounds=3)
    assert res.packets_in == PACKETS and res.packets_out == PACKETS
    benchmark.extra_info["pps"] = PACKETS / benchmark.stats.stats.min


@pytest.mark.parametrize("size", ["small", "large"])
def test_compile_from_parsed_objects(benchmark, size, request):
    from kdp.dataplane import Dataplane
    docs, _ = request.getfixturevalue(size)

    def build():
        return Dataplane(compile_cluster(Cluster.from_documents(docs, node=wl.NODE)))

    dp = benchmark.pedantic(build, rounds=3)
    services = sum(1 for d in docs if d["kind"] == "Service")
    assert len(dp.tables.records) == services
    benchmark.extra_info["services"] = services


@pytest.mark.parametrize("size", ["small", "large"])
def test_update_one_endpoint(benchmark, size, request):
    docs, tables = request.getfixturevalue(size)
    slices = [d for d in docs if d["kind"] == "EndpointSlice"]
    k = [0]

    def setup():
        k[0] += 1
        d = slices[(k[0] * 37) % len(slices)]
        sl = {**d, "endpoints": [dict(e) for e in d["endpoints"]]}
        sl["endpoints"][0] = {**sl["endpoints"][0], "addresses": [f"10.126.{k[0] >> 8 & 255}.{1 + k[0] % 250}"]}
        return (sl,), {}

    benchmark.pedantic(tables.update_endpoints, setup=setup, rounds=100)
    # the last update is live: its new address is a backend of that service
    sid = tables.ids(f"{slices[(k[0] * 37) % len(slices)]['metadata']['namespace']}/"
                     f"{slices[(k[0] * 37) % len(slices)]['metadata']['labels']['kubernetes.io/service-name']}:http")[0]
    a4 = tables.backends(sid)["a4"]
    want = (10 << 24) | (126 << 16) | ((k[0] >> 8 & 255) << 8) | (1 + k[0] % 250)
    assert np.any(a4 == want)
    benchmark.extra_info["services"] = len(slices)


@pytest.fixture(scope="module")
def tunnel_captures(tmp_path_factory):
    from kdp.benchmarks import tunnels
    d = tmp_path_factory.mktemp("bench-tunnels")
    plan = tunnels._plan(PACKETS)
    paths = {}
    for _name, direction, _mode, tunnel, _reason in tunnels.CASES:
        if (direction, tunnel) not in paths:
            paths[(direction, tunnel)] = str(d / f"{direction}-{tunnel}.pcap")
            tunnels.write_capture(paths[(direction, tunnel)], plan, direction, tunnel)
    return paths, {m: tunnels._tables(m) for m in ("Never", "IPIP", "VXLAN")}


@pytest.mark.parametrize("case", [c[0] for c in __import__("kdp.benchmarks.tunnels", fromlist=["x"]).CASES])
def test_tunnels(benchmark, tunnel_captures, case):
    """Plain routing, encapsulation and decapsulation of the same pod-to-pod traffic
    (kdp/benchmarks/tunnels.py); compare the rates of one run."""
    from kdp.benchmarks import tunnels
    paths, tables = tunnel_captures
    _name, direction, mode, tunnel, reason = next(c for c in tunnels.CASES if c[0] == case)
    state = {}

    def run():
        state["s"], state["dp"] = tunnels._pass(paths[(direction, tunnel)], tables[mode])

    benchmark.pedantic(run, rounds=5)
    from kdp.reasons import Reason, Stage
    assert int(state["dp"].counters[Stage.TX, Reason[reason.upper()]]) == PACKETS
    benchmark.extra_info["pps"] = PACKETS / state["s"]
