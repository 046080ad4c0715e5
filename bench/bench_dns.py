"""pytest-benchmark: cluster DNS answers through the pipeline, beside the dnspython responder.

The workload of `kdp bench dns` (kdp/benchmarks/dns.py) at its --quick size: 1,000
Services / 10,000 endpoints, 100,000 queries of the A / AAAA / SRV / NXDOMAIN /
search-path mix, all answered by kdp; the peer answers the first 5,000. Each
benchmark records answers/s in extra_info["aps"]; compare rates within one run.

    python -m pytest bench/bench_dns.py --benchmark-only
"""
import pytest

from kdp.benchmarks import dns as wl
from kdp.control import Cluster, compile as compile_cluster

QUERIES = 100_000
SERVICES = 1_000
PEER = 5_000


@pytest.fixture(scope="module")
def cluster():
    c = Cluster.from_documents(wl.cluster_docs(SERVICES, SERVICES * 10), node=wl.NODE)
    return c, compile_cluster(c)


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    msgs = wl.queries(QUERIES, SERVICES)
    path = str(tmp_path_factory.mktemp("bench-dns") / "queries.pcap")
    wl.write_capture(path, msgs)
    return path, msgs


def _batches(path, dp):
    from kdp._fast.packet import Batch
    from kdp.io.capture import open_capture
    reader = open_capture(path, ports=dp.ports)
    out = []
    while True:
        b = Batch(wl.BATCH)
        if not reader.fill(b):
            break
        out.append((b, b.buffer.copy(), b.meta.copy(), b.used))
    reader.close()
    return out


def test_answers_through_the_pipeline(benchmark, cluster, workload):
    from kdp.dataplane import Dataplane
    _, tables = cluster
    path, _ = workload
    dp = Dataplane(tables)
    batches = _batches(path, dp)

    def setup():                        # answers are written in place: restore the queries
        for b, buf, meta, used in batches:
            b.buffer[:] = buf
            b.meta[:] = meta
            b.used = used
        return (), {}

    def run():
        for b, _, _, _ in batches:
            dp.process(b)

    benchmark.pedantic(run, setup=setup, rounds=5)
    assert sum(int((b.meta[:b.count]["verdict"] == 5).sum()) for b, _, _, _ in batches) == QUERIES
    benchmark.extra_info["aps"] = QUERIES / benchmark.stats.stats.min


def test_dnspython_responder_peer(benchmark, cluster, workload):
    from kdp.control.dns import build_zone
    from kdp.control.dnswire import encode
    from kdp.benchmarks.peers.dnspython_responder import Responder
    c, _ = cluster
    zone = build_zone(c)
    encode(zone)
    responder = Responder(zone, cache=True)
    msgs = [m for m, _ in workload[1][:PEER]]
    benchmark.pedantic(lambda: [responder.respond(m) for m in msgs], rounds=3)
    benchmark.extra_info["aps"] = PEER / benchmark.stats.stats.min
    assert all(responder.respond(m)[0] == "reply" for m in msgs[:100])
