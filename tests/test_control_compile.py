"""Compilation into service-port records, frontends, backends; incremental
endpoint updates (copy-on-write, removed backends reported, nothing half-applied)."""
import time

import numpy as np
import pytest

from kdp._fast import service as fast
from kdp.benchmarks import cluster as synth
from kdp.control import Cluster, compile
from kdp.control import addr
from kdp.errors import ConfigError

from kdptest import NODE, base_docs, decide, slice_doc, svc_doc, tables_for


@pytest.fixture(scope="module")
def tables():
    return tables_for(base_docs())


def rec(tables, name, fam=4):
    ids = [i for i in tables.ids(name) if tables.records[i].ip_ver == fam]
    assert len(ids) == 1, name
    return tables.records[ids[0]]


def addrs(tables, sid, local=False):
    return sorted(addr.format_ip((int(b["ip_ver"]), int(b["a4"]) if b["ip_ver"] == 4
                                  else int.from_bytes(bytes(b["a6"]), "big")))
                  for b in tables.backends(sid, local))


def test_one_record_per_service_port_and_cluster_ip_family(tables):
    assert sorted(r.ip_ver for r in tables.records if r.name == "shop/web:p") == [4, 6]
    assert rec(tables, "shop/web:p", 6).cluster_ip == addr.parse_ip("fd00:96::10")
    names = {r.name for r in tables.records}
    assert names == {"shop/web:p", "shop/np:p", "shop/lb:p", "shop/lbnolocal:p", "shop/ext:p",
                     "shop/empty:p", "shop/itp:p", "shop/aff:p", "shop/named:p", "shop/term:p"}


def test_record_fields_follow_service_type_and_flags(tables):
    r = rec(tables, "shop/lb:p")
    assert r.type == "LoadBalancer" and r.node_port == 30443 and r.port == 443 and r.protocol == 6
    assert r.flags == fast.SF_ETP_LOCAL
    assert r.lb_ips == (addr.parse_ip("203.0.113.10"),)
    assert r.lb_proxy_ips == (addr.parse_ip("203.0.113.11"),)
    assert r.source_ranges == (addr.parse_prefix("198.51.100.0/24"),)
    assert rec(tables, "shop/np:p").type == "NodePort" and rec(tables, "shop/np:p").node_port == 30080
    assert rec(tables, "shop/web:p").node_port == 0
    assert rec(tables, "shop/itp:p").flags == fast.SF_ITP_LOCAL
    a = rec(tables, "shop/aff:p")
    assert a.flags == fast.SF_AFFINITY and a.affinity_timeout == 30
    assert rec(tables, "shop/ext:p").external_ips == (addr.parse_ip("198.18.0.40"),)
    c = tables.service.records()
    assert int(c[a.id]["affinity_timeout"]) == 30 and int(c[r.id]["node_port"]) == 30443


def test_default_affinity_timeout_is_10800_seconds():
    docs = base_docs() + [svc_doc("aff2", "10.96.0.71", sessionAffinity="ClientIP")]
    assert rec(tables_for(docs), "shop/aff2:p").affinity_timeout == 10800


def test_local_backends_are_kept_separately_for_local_policies(tables):
    r = rec(tables, "shop/lb:p")
    assert addrs(tables, r.id) == ["10.244.1.30", "10.244.2.30"]
    assert addrs(tables, r.id, local=True) == ["10.244.1.30"]
    w = rec(tables, "shop/web:p")
    assert tables.backends(w.id, local=True).shape[0] == 0     # Cluster policies: no local table
    assert [bool(b["local"]) for b in tables.backends(w.id)] == [True, False]


def test_local_fallback_is_decided_separately_from_cluster_fallback():
    docs = base_docs() + [
        svc_doc("mix", "10.96.0.95", externalTrafficPolicy="Local", type="NodePort", nodePort=30095),
        slice_doc("mix", [("10.244.2.95", "node-2"), ("10.244.1.95", NODE, False, True, True),
                       ("10.244.1.96", NODE, False, False, True)])]
    t = tables_for(docs)
    r = rec(t, "shop/mix:p")
    assert addrs(t, r.id) == ["10.244.2.95"]
    assert addrs(t, r.id, local=True) == ["10.244.1.95"]


def test_named_target_port_via_slice_port_name_and_service_port_name(tables):
    r = rec(tables, "shop/named:p")
    assert [int(b["port"]) for b in tables.backends(r.id)] == [8081]
    assert r.target_port == "web"


def test_slice_ports_of_another_protocol_do_not_serve():
    docs = base_docs() + [svc_doc("udp", "10.96.0.96", protocol="UDP"),
                          slice_doc("udp", [("10.244.2.97", "node-2")], proto="TCP")]
    t = tables_for(docs)
    assert t.backends(rec(t, "shop/udp:p").id).shape[0] == 0


def test_slices_win_over_v1_endpoints():
    eps = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "shop"},
           "subsets": [{"addresses": [{"ip": "10.244.2.222"}], "ports": [{"name": "p", "port": 1}]}]}
    t = tables_for(base_docs() + [eps])
    assert "10.244.2.222" not in addrs(t, rec(t, "shop/web:p").id)


def test_endpoint_without_node_name_is_local_when_it_is_a_local_pod():
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "namespace": "shop"},
           "spec": {"nodeName": NODE}, "status": {"podIPs": [{"ip": "10.244.1.98"}]}}
    docs = base_docs() + [pod, svc_doc("nn", "10.96.0.98", internalTrafficPolicy="Local"),
                          slice_doc("nn", [("10.244.1.98", None), ("10.244.2.98", None)])]
    t = tables_for(docs)
    assert addrs(t, rec(t, "shop/nn:p").id, local=True) == ["10.244.1.98"]


# ------------------------------------------------------------------ updates

def test_update_changes_only_the_affected_service_port(tables):
    t = tables_for(base_docs())
    others = {r.id: (t.backends(r.id).tobytes(), t.service.lut(r.id).tobytes())
              for r in t.records if r.name != "shop/web:p"}
    web = rec(t, "shop/web:p")
    old_ids = {addr.format_ip((4, int(b["a4"]))): int(b["id"]) for b in t.backends(web.id)}
    removed = t.update_endpoints(slice_doc("web", [("10.244.1.10", NODE), ("10.244.2.11", "node-2")]))
    assert removed == {web.id: [old_ids["10.244.2.10"]]}
    assert addrs(t, web.id) == ["10.244.1.10", "10.244.2.11"]
    new_ids = {addr.format_ip((4, int(b["a4"]))): int(b["id"]) for b in t.backends(web.id)}
    assert new_ids["10.244.1.10"] == old_ids["10.244.1.10"]            # unchanged endpoint keeps its id
    assert new_ids["10.244.2.11"] not in old_ids.values()
    assert all((t.backends(i).tobytes(), t.service.lut(i).tobytes()) == v for i, v in others.items())
    d = decide(t, "10.244.1.50", "10.96.0.10", 80)
    assert d["dnat"] in {"10.244.1.10", "10.244.2.11"}


def test_update_turns_a_rejecting_service_into_a_serving_one():
    t = tables_for(base_docs())
    assert decide(t, "10.244.1.50", "10.96.0.50", 80)["result"] == fast.SVC_REJECT
    assert t.update_endpoints(slice_doc("empty", [("10.244.2.55", "node-2")])) == {}
    assert decide(t, "10.244.1.50", "10.96.0.50", 80)["dnat"] == "10.244.2.55"


def test_deleting_a_slice_removes_its_backends():
    t = tables_for(base_docs())
    r = rec(t, "shop/np:p")
    ids = [int(b["id"]) for b in t.backends(r.id)]
    assert t.delete_endpoints("shop", "np-ipv4", service="np") == {r.id: ids}
    assert decide(t, "192.0.2.7", "192.168.56.11", 30080)["result"] == fast.SVC_REJECT


def test_invalid_update_changes_nothing():
    t = tables_for(base_docs())
    before = [(t.backends(r.id).tobytes(), t.service.lut(r.id).tobytes()) for r in t.records]
    bad = slice_doc("web", [("10.244.1.10", NODE), ("not-an-ip", NODE)])
    with pytest.raises(ConfigError, match="EndpointSlice shop/web-ipv4: endpoints\\[1\\].addresses\\[0\\]"):
        t.update_endpoints(bad)
    with pytest.raises(ConfigError):
        t.update_endpoints({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {}})
    assert [(t.backends(r.id).tobytes(), t.service.lut(r.id).tobytes()) for r in t.records] == before
    assert sorted(t.cluster.slices[("shop", "web")]) == ["web-ipv4", "web-ipv6"]


def test_v1_endpoints_update_applies_when_service_has_no_slice():
    t = tables_for(base_docs())
    eps = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "empty", "namespace": "shop"},
           "subsets": [{"addresses": [{"ip": "10.244.2.56", "nodeName": "node-2"}],
                        "ports": [{"name": "p", "port": 8080}]}]}
    t.update_endpoints(eps)
    assert decide(t, "10.244.1.50", "10.96.0.50", 80)["dnat"] == "10.244.2.56"


def test_recompile_with_previous_tables_keeps_backend_ids():
    c = Cluster.from_documents(base_docs(), node=NODE)
    first = compile(c)
    second = compile(Cluster.from_documents(base_docs(), node=NODE), previous=first)
    for r in first.records:
        assert first.backends(r.id)["id"].tolist() == second.backends(r.id)["id"].tolist()
    assert second.service.next_backend_id == first.service.next_backend_id


def test_update_cost_does_not_grow_with_the_number_of_services():
    def median_update(n_services):
        docs = synth.generate(services=n_services, endpoints=n_services * 5, nodes=10)
        t = compile(Cluster.from_documents(docs, node="node-0"))
        times = []
        for k in range(60):
            sl = synth.changed_slice(docs, service=k % n_services, new_ip=f"10.126.0.{1 + k}")
            t0 = time.perf_counter()
            t.update_endpoints(sl)
            times.append(time.perf_counter() - t0)
        return sorted(times)[len(times) // 2]
    small, large = median_update(50), median_update(3000)
    assert large < 0.010
    assert large < small * 3 + 0.0005, (small, large)


def test_synthetic_cluster_is_deterministic():
    assert synth.generate(services=30, endpoints=90, nodes=4) == synth.generate(services=30, endpoints=90, nodes=4)
    t = compile(Cluster.from_documents(synth.generate(services=30, endpoints=90, nodes=4), node="node-0"))
    assert sum(t.backends(r.id).shape[0] for r in t.records) == 90


def test_endpoint_turning_not_ready_is_reported_removed():
    t = tables_for(base_docs())
    web = rec(t, "shop/web:p")
    ids = {addr.format_ip((4, int(b["a4"]))): int(b["id"]) for b in t.backends(web.id)}
    removed = t.update_endpoints(slice_doc("web", [("10.244.1.10", NODE),
                                                ("10.244.2.10", "node-2", False, False, False)]))
    assert removed == {web.id: [ids["10.244.2.10"]]}
    assert addrs(t, web.id) == ["10.244.1.10"]


def test_deleting_v1_endpoints_empties_the_service():
    eps = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "empty", "namespace": "shop"},
           "subsets": [{"addresses": [{"ip": "10.244.2.56"}], "ports": [{"name": "p", "port": 8080}]}]}
    t = tables_for(base_docs() + [eps])
    sid = rec(t, "shop/empty:p").id
    assert addrs(t, sid) == ["10.244.2.56"]
    assert list(t.delete_endpoints("shop", "empty", kind="Endpoints")) == [sid]
    assert t.backends(sid).shape[0] == 0
