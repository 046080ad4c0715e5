"""Topology-aware routing as kube-proxy does it (pkg/proxy/topology.go): the cluster
endpoints follow the EndpointSlice hints that the EndpointSlice controller writes for
trafficDistribution (PreferClose, PreferSameZone, PreferSameNode) and topology-mode Auto,
with kube-proxy's fall-backs when the hints are incomplete."""
import pytest

from kdp.control import Cluster, compile
from kdptest import NODE, TOPOLOGY, base_docs, slice_doc, svc_doc, topology_docs

# what kube-proxy on node-1 (zone-a) sends each topology Service's traffic to
EXPECTED_IN_ZONE_A = {
    "10.96.0.100": {"10.244.2.100"},                    # zone hints: the zone-a endpoint only
    "10.96.0.101": {"10.244.2.102", "10.244.2.103"},    # one endpoint without hints: ignored
    "10.96.0.102": {"10.244.2.104", "10.244.2.105"},    # no hint for zone-a: ignored
    "10.96.0.103": {"10.244.2.106"},                    # node hints, one for node-1: same node
    "10.96.0.104": {"10.244.2.108"},                    # node hints none for node-1: zone hints
    "10.96.0.105": {"10.244.2.110"},                    # only ready endpoints count: zone-b's
    "10.96.0.106": {"10.244.2.112", "10.244.2.113"},    # terminating fall-back ignores hints
}


def cluster_backends(zone):
    c = Cluster.from_documents(base_docs() + topology_docs(zone), node=NODE)
    view = {r["name"]: r for r in compile(c).endpoints_view()}
    out = {}
    for k, ip in enumerate(TOPOLOGY):
        out[ip] = {b["address"] for b in view[f"shop/topo-{k}:p"]["backends"]}
    return out


def test_cluster_endpoints_follow_the_hints_for_this_nodes_zone_and_name():
    assert cluster_backends("zone-a") == EXPECTED_IN_ZONE_A


def test_a_node_without_a_zone_label_ignores_zone_hints_but_not_node_hints():
    got = cluster_backends("")
    assert got["10.96.0.100"] == {"10.244.2.100", "10.244.2.101"}
    assert got["10.96.0.103"] == {"10.244.2.106"}


def test_an_endpoint_update_applies_the_same_rules(tmp_path):
    c = Cluster.from_documents(base_docs() + topology_docs("zone-a"), node=NODE)
    tables = compile(c)
    sl = slice_doc("topo-2", [])
    # zone-b / zone-c only -> add a zone-a hinted endpoint: now only it serves node-1
    sl["endpoints"] = TOPOLOGY["10.96.0.102"] + [
        {"addresses": ["10.244.2.120"], "nodeName": "node-2", "hints": {"forZones": [{"name": "zone-a"}]},
         "conditions": {"ready": True}}]
    tables.update_endpoints(sl)
    view = {r["name"]: r for r in tables.endpoints_view()}
    assert {b["address"] for b in view["shop/topo-2:p"]["backends"]} == {"10.244.2.120"}


def test_local_traffic_policy_endpoints_ignore_hints():
    docs = base_docs() + topology_docs("zone-a") + [
        svc_doc("itp-topo", "10.96.0.107", internalTrafficPolicy="Local"),
        {**slice_doc("itp-topo", []), "endpoints": [
            {"addresses": ["10.244.1.107"], "nodeName": NODE, "hints": {"forZones": [{"name": "zone-b"}]},
             "conditions": {"ready": True}},
            {"addresses": ["10.244.2.107"], "nodeName": "node-2", "hints": {"forZones": [{"name": "zone-a"}]},
             "conditions": {"ready": True}}]}]
    view = {r["name"]: r for r in compile(Cluster.from_documents(docs, node=NODE)).endpoints_view()}
    row = view["shop/itp-topo:p"]
    # the node's own endpoint serves internalTrafficPolicy: Local although hinted for zone-b
    assert {b["address"] for b in row["localBackends"]} == {"10.244.1.107"}


@pytest.mark.parametrize("hints, field", [({"forZones": [{}]}, "hints.forZones[0].name"),
                                          ({"forNodes": "node-1"}, "hints.forNodes")])
def test_malformed_hints_are_errors_naming_the_field(hints, field):
    from kdp.errors import ConfigError
    sl = slice_doc("topo-0", [])
    sl["endpoints"] = [{"addresses": ["10.244.2.130"], "hints": hints}]
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        Cluster.from_documents(base_docs() + [svc_doc("topo-0", "10.96.0.100"), sl], node=NODE)


def test_an_unknown_traffic_distribution_is_an_error_naming_the_field():
    from kdp.errors import ConfigError
    docs = base_docs() + [svc_doc("td", "10.96.0.120", trafficDistribution="PreferFar")]
    with pytest.raises(ConfigError, match=r"spec\.trafficDistribution: must be one of PreferClose"):
        Cluster.from_documents(docs, node=NODE)


@pytest.mark.parametrize("spec, meta, asked", [
    ({"trafficDistribution": "PreferClose"}, {}, True),
    ({"trafficDistribution": "PreferSameNode"}, {}, True),
    ({}, {"annotations": {"service.kubernetes.io/topology-mode": "Auto"}}, True),
    ({}, {"annotations": {"service.kubernetes.io/topology-mode": "Disabled"}}, False),
    ({}, {}, False),
])
def test_a_service_asking_for_topology_without_hints_gets_a_notice(spec, meta, asked):
    # kube-proxy reads only the hints; a hand-written snapshot may lack them
    svc = svc_doc("td", "10.96.0.120", **spec)
    svc["metadata"].update(meta)
    docs = base_docs() + [svc, slice_doc("td", [("10.244.2.120", "node-2"), ("10.244.2.121", "node-2")])]
    c = Cluster.from_documents(docs, node=NODE)
    assert any("shop/td" in n and "no ready endpoint in its EndpointSlices has hints" in n
               for n in c.notices) == asked
    # and every ready endpoint serves, as kube-proxy does without hints
    view = {r["name"]: r for r in compile(c).endpoints_view()}
    assert {b["address"] for b in view["shop/td:p"]["backends"]} == {"10.244.2.120", "10.244.2.121"}


def test_hinted_services_say_no_notice():
    c = Cluster.from_documents(base_docs() + [
        svc_doc("td", "10.96.0.120", trafficDistribution="PreferClose"),
        {**slice_doc("td", []), "endpoints": TOPOLOGY["10.96.0.100"]}], node=NODE)
    assert not any("shop/td" in n for n in c.notices)


def test_show_names_the_topology_kube_proxy_applies(tmp_path):
    import json
    import subprocess
    import sys

    import yaml
    path = tmp_path / "snap.yaml"
    path.write_text(yaml.safe_dump_all(base_docs() + topology_docs("zone-a")))

    def show(what, *extra):
        run = subprocess.run([sys.executable, "-m", "kdp.cli", "show", what, "--cluster", str(path),
                              "--node", NODE, *extra], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return run.stdout

    rows = {r["name"]: r for r in json.loads(show("services", "--json"))["services"]}
    assert rows["shop/topo-0:p"]["topology"] == {"mode": "PreferSameZone", "node": NODE, "zone": "zone-a"}
    assert rows["shop/topo-3:p"]["topology"]["mode"] == "PreferSameNode"
    for k in (1, 2, 6):                        # incomplete hints, none for zone-a, no ready endpoint
        assert rows[f"shop/topo-{k}:p"]["topology"] is None
    assert "topology=PreferSameZone(zone-a)" in show("services")
    lines = [ln for ln in show("endpoints").splitlines() if "10.244.2.101" in ln]
    assert lines and "not used (topology: PreferSameZone)" in lines[0]
