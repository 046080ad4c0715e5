"""Endpoint updates change the DNS table by its changed names only (a delta in front
of the whole table), and answer exactly as a table compiled whole from the same
cluster does: checked after random sequences of EndpointSlice changes, on every
name of both zones (order of records and the SOA serial aside)."""
import copy
import functools
import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from kdp.control import Cluster
from kdp.control.dns import build_zone
from kdp.control.dnswire import DnsCompiler

from dnstest import cluster_objects, ep, fast_frame, frame, make_query, run_stage
from kdptest import endpoint_slice

QTYPES = ["A", "SRV", "PTR", "TXT"]
SERVICES = {"db": ("pg", 5432), "web": ("http", 8080), "big": ("p", 7000), "all": ("pg", 5432),
            "noport": (None, None)}


def _flat(msg):
    out = {}
    for sec in ("answer", "authority", "additional"):
        lines = []
        for rrs in getattr(msg, sec):
            for line in rrs.to_text().split("\n"):
                f = line.lower().split()
                if f[3] == "soa":
                    f[6] = "serial"
                lines.append(" ".join(f))
        out[sec] = sorted(lines)
    return msg.rcode(), msg.flags, out


@functools.lru_cache(maxsize=None)
def _query(name, qtype):
    return fast_frame(make_query(name, qtype, edns=0))


def answers(table, names):
    out = {}
    frames = [_query(n, qt) for n in names for qt in QTYPES]
    for k in range(0, len(frames), 256):
        replies, _, _ = run_stage(table, frames[k:k + 256])
        for j, r in enumerate(replies):
            n, qt = names[(k + j) // len(QTYPES)], QTYPES[(k + j) % len(QTYPES)]
            out[(n, qt)] = (r.outcome, _flat(r.msg) if r.msg is not None else None)
    return out


@st.composite
def slice_change(draw):
    svc = draw(st.sampled_from(sorted(SERVICES)))
    pname, pnum = SERVICES[svc]
    eps = []
    for _ in range(draw(st.integers(0, 4))):
        a = str(ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.244.1.0")) + draw(st.integers(1, 60))))
        eps.append(ep(a, ready=draw(st.booleans()),
                      hostname=draw(st.sampled_from([None, "h-0", "h-1", "db-0"]))))
    ports = [(pname, "TCP", pnum)] if pname else []
    return endpoint_slice(svc, ports, eps, suffix=draw(st.sampled_from(["a", "z"])))


@settings(max_examples=10, deadline=None)
@given(st.lists(slice_change(), min_size=1, max_size=5))
def test_updated_tables_answer_as_a_fresh_compile_does(changes):
    objs = cluster_objects(big=5)
    cluster = Cluster.from_documents(copy.deepcopy(objs), node="node-1")
    zone = build_zone(cluster)
    compiler = DnsCompiler(zone)
    table = compiler.full()
    from kdp.control.compile import compile_cluster
    tables = compile_cluster(cluster)
    for sl in changes:
        tables.update_endpoints(sl)
        key = ("shop", sl["metadata"]["labels"]["kubernetes.io/service-name"])
        table = compiler.update(zone.update_service(tables.cluster, key))
        objs = [o for o in objs if not (o["kind"] == "EndpointSlice" and
                                        o["metadata"]["name"] == sl["metadata"]["name"])] + [sl]
    fresh_zone = build_zone(Cluster.from_documents(copy.deepcopy(objs), node="node-1"))
    fresh = DnsCompiler(fresh_zone).full()
    names = sorted(set(zone.names()) | set(fresh_zone.names()))
    assert answers(table, names) == answers(fresh, names)
    # only the changed Services' names, the PTRs of their addresses, the ExternalNames
    # (they may follow them) and the apex were re-encoded
    bases = tuple(f".{sl['metadata']['labels']['kubernetes.io/service-name']}.shop.svc.{zone.origin}"
                  for sl in changes)
    for name in compiler.chunks:
        assert ("." + name).endswith(bases) or name.endswith((".in-addr.arpa.", ".ip6.arpa.")) or \
            name in zone._externals, name
    assert table.n_delta == len(compiler.chunks) + 1


def test_an_update_re_encodes_the_same_few_names_in_a_large_zone():
    """The cost of an update does not grow with the zone: a Service's names, the
    PTRs of its addresses, the apex."""
    from kdp.benchmarks.cluster import generate
    docs = generate(3000, 6000, nodes=10)
    docs[0]["spec"]["dns"] = {"listen": ["10.111.0.10"]}
    cluster = Cluster.from_documents(docs, node="node-0")
    zone = build_zone(cluster)
    compiler = DnsCompiler(zone)
    base = compiler.full()
    from kdp.control.compile import compile_cluster
    tables = compile_cluster(cluster)
    sl = [d for d in docs if d["kind"] == "EndpointSlice"][7]
    sl = {**sl, "endpoints": sl["endpoints"][:1] + [{"addresses": ["10.126.0.9"], "conditions": {"ready": True}}]}
    tables.update_endpoints(sl)
    changed = zone.update_service(tables.cluster, ("ns-7", "svc-7"))
    table = compiler.update(changed)
    assert table.n_names == base.n_names and table.blob is base.blob     # shared, not copied
    assert len(changed) < 20 and table.n_delta == len(changed)
    dst = {"dst": "10.111.0.10"}
    msg = run_stage(table, [frame(make_query("9.0.126.10.in-addr.arpa", "PTR"), **dst)])[0][0].msg
    assert [r.to_text() for r in msg.answer] == [
        "9.0.126.10.in-addr.arpa. 5 IN PTR 10-126-0-9.svc-7.ns-7.svc.cluster.local."]
    gone = sl["endpoints"]  # the second endpoint of the original slice is no longer listed
    old = [d for d in docs if d["kind"] == "EndpointSlice"][7]["endpoints"][1]["addresses"][0]
    r = run_stage(table, [frame(make_query(ipaddress.ip_address(old).reverse_pointer, "PTR"), **dst)])[0][0]
    assert r.msg is None and r.outcome.name == "DNS_PASS_REVERSE" and gone   # kdp has no PTR for it now
