"""Loading snapshots (YAML, JSON, Lists, directories) and validation errors that
name the file, the object and the field."""
import json
import os
import shutil

import pytest
import yaml

from kdp.control import Cluster, compile
from kdp.control import addr
from kdp.errors import ConfigError

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "pcaps", "sample-cluster")

NODECONFIG = {"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": "n1"},
              "spec": {"nodeAddresses": ["192.168.0.1"], "podCIDRs": ["10.1.1.0/24"]}}


def svc(name, ip, port=80, ns="default", **spec):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": [{"name": "p", "port": port}], **spec}}


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    return path


def ip(text):
    return addr.parse_ip(text)


# ------------------------------------------------------------------ formats

def test_multi_document_yaml_loads_every_object(tmp_path):
    p = write(str(tmp_path / "all.yaml"), yaml.safe_dump_all([NODECONFIG, svc("a", "10.96.0.1"),
                                                                 None, svc("b", "10.96.0.2")]))
    c = Cluster.load([p], node="n1")
    assert set(c.services) == {("default", "a"), ("default", "b")}


def test_kind_list_items_are_loaded(tmp_path):
    doc = {"apiVersion": "v1", "kind": "List", "items": [svc("a", "10.96.0.1"), svc("b", "10.96.0.2")]}
    p = write(str(tmp_path / "list.yaml"), yaml.safe_dump_all([NODECONFIG, doc]))
    c = Cluster.load(p, node="n1")
    assert len(c.services) == 2
    assert str(c.services[("default", "b")].origin).endswith("list.yaml#1.items[1]")


def test_json_object_and_json_list_are_loaded(tmp_path):
    write(str(tmp_path / "nc.json"), json.dumps(NODECONFIG))
    write(str(tmp_path / "svcs.json"), json.dumps({"apiVersion": "v1", "kind": "ServiceList",
                                                   "items": [svc("a", "10.96.0.1")]}))
    c = Cluster.load([str(tmp_path)], node="n1")
    assert ("default", "a") in c.services and c.config.node_name == "n1"


def test_directories_are_read_recursively_and_other_files_ignored(tmp_path):
    write(str(tmp_path / "a" / "nc.yaml"), yaml.safe_dump(NODECONFIG))
    write(str(tmp_path / "a" / "b" / "s.yml"), yaml.safe_dump(svc("deep", "10.96.0.9")))
    write(str(tmp_path / "notes.txt"), "not: [yaml")
    c = Cluster.load([str(tmp_path)], node="n1")
    assert ("default", "deep") in c.services


def test_unknown_kinds_are_skipped_with_a_notice(tmp_path):
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "x"}}
    p = write(str(tmp_path / "s.yaml"), yaml.safe_dump_all([NODECONFIG, dep]))
    c = Cluster.load(p, node="n1")
    assert len(c.notices) == 1 and "Deployment" in c.notices[0] and "s.yaml#1" in c.notices[0]


def test_sample_cluster_loads_with_node_addresses_and_pod_cidrs_from_node_object():
    c = Cluster.load([SAMPLE], node="node-1")
    assert c.config.node_addresses == [ip("192.168.56.11")]
    assert c.config.pod_cidrs == [addr.parse_prefix("10.244.1.0/24")]
    assert c.config.service_cidrs == [addr.parse_prefix("10.96.0.0/16")]
    assert c.config.encapsulation == "IPIP" and c.config.snat_port_range == (32768, 60999)
    assert c.config.conntrack.tcp_established_timeout == 86400
    assert {p.name for p in c.local_pods()} >= {"web-1", "api-1", "client"}
    assert any("Deployment" in n for n in c.notices)


def test_node_config_defaults_follow_kube_proxy():
    c = Cluster.from_documents([NODECONFIG], node="n1")
    cfg = c.config
    assert cfg.node_port_range == (30000, 32767)
    assert cfg.proxy_mode == "nftables" and cfg.local_traffic_detection == "ClusterCIDR"
    assert cfg.masquerade_all is False and cfg.encapsulation == "None"
    assert cfg.conntrack.drop_invalid is True
    assert cfg.cluster_cidrs == [addr.parse_prefix("10.1.1.0/24")]


def test_every_node_config_field_is_read():
    nc = {"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": "cfg"},
          "spec": {"nodeName": "n9", "nodeAddresses": ["192.168.0.9", "fd00::9"],
                   "podCIDRs": ["10.9.0.0/24"], "clusterCIDRs": ["10.0.0.0/8"],
                   "serviceCIDRs": ["10.96.0.0/12", "fd00:96::/112"], "nodePortRange": "31000-31999",
                   "nodePortAddresses": ["primary", "192.168.0.0/16"],
                   "masquerade": {"masqueradeAll": True, "snatPortRange": "40000-50000"},
                   "encapsulation": {"mode": "VXLAN", "when": "CrossSubnet", "vxlanPort": 8472, "vni": 7},
                   "localTrafficDetection": "NodeCIDR", "proxyMode": "iptables",
                   "sessionAffinityMaxEntries": 1024,
                   "conntrack": {"maxFlows": 1000, "tcpEstablishedTimeout": "1h", "udpTimeout": 10,
                                 "dropInvalid": False},
                   "ports": [{"name": "p1", "kind": "Pod", "pod": "ns/a", "interface": "cali9"},
                             {"name": "uplink", "kind": "Uplink", "interface": "eth0"}]}}
    c = Cluster.from_documents([nc], node="n9")
    cfg = c.config
    assert cfg.node_addresses == [ip("192.168.0.9"), ip("fd00::9")]
    assert cfg.node_port_range == (31000, 31999)
    assert cfg.node_port_addresses == ["primary", addr.parse_prefix("192.168.0.0/16")]
    assert cfg.masquerade_all and cfg.snat_port_range == (40000, 50000)
    assert (cfg.encapsulation, cfg.encapsulation_when, cfg.vxlan_port, cfg.vxlan_vni) == ("VXLAN", "CrossSubnet", 8472, 7)
    assert cfg.local_traffic_detection == "NodeCIDR" and cfg.proxy_mode == "iptables"
    assert cfg.session_affinity_slots == 1024
    assert cfg.conntrack.max_flows == 1000 and cfg.conntrack.tcp_established_timeout == 3600
    assert cfg.conntrack.udp_timeout == 10 and cfg.conntrack.drop_invalid is False
    assert [(p.name, p.kind, p.pod, p.interface) for p in cfg.ports] == [
        ("p1", "Pod", "ns/a", "cali9"), ("uplink", "Uplink", None, "eth0")]


def test_other_nodes_pod_cidrs_route_via_their_internal_ip():
    t = compile(Cluster.load([SAMPLE], node="node-1"))
    routes = {r["prefix"]: r for r in t.routes_view()}
    assert routes["10.244.2.0/24"]["kind"] == "node" and routes["10.244.2.0/24"]["via"] == "192.168.56.12"
    assert routes["10.244.1.0/24"]["kind"] == "local-pods"
    assert routes["10.244.2.0/24"]["encap"] == "IPIP" and routes["10.244.2.0/24"]["mtu"] == 1480
    # the sample's NodeConfig says IP-in-IP: pods get the tunnel's MTU, as Calico sizes them
    assert routes["10.244.1.10/32"] == {"prefix": "10.244.1.10/32", "kind": "pod", "target": "shop/web-1",
                                        "via": None, "encap": "None", "mtu": 1480}
    assert routes["10.96.0.0/16"]["kind"] == "service"
    assert routes["192.168.56.11/32"]["kind"] == "host"
    assert routes["0.0.0.0/0"]["target"] == "uplink"
    assert "10.244.2.10/32" not in routes     # pods of other nodes go by their node's CIDR


def test_the_other_node_sees_its_own_routes():
    c = Cluster.load([SAMPLE], node="node-2")
    t = compile(c)
    kinds = {r["prefix"]: r["kind"] for r in t.routes_view()}
    assert kinds["10.244.2.0/24"] == "local-pods" and kinds["10.244.1.0/24"] == "node"
    assert c.config.node_addresses == [ip("192.168.56.12")]


def test_v1_endpoints_are_used_when_a_service_has_no_slice():
    eps = {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "a", "namespace": "default"},
           "subsets": [{"addresses": [{"ip": "10.1.1.5", "nodeName": "n1"}],
                        "notReadyAddresses": [{"ip": "10.1.1.6"}],
                        "ports": [{"name": "p", "port": 9000}]}]}
    c = Cluster.from_documents([NODECONFIG, svc("a", "10.96.0.1", selector=None), eps], node="n1")
    t = compile(c)
    b = t.backends(t.ids("default/a:p")[0])
    assert [(int(x["a4"]), int(x["port"])) for x in b] == [(ip("10.1.1.5")[1], 9000)]


# ------------------------------------------------------------------ validation errors

def _error(docs, node="n1"):
    with pytest.raises(ConfigError) as exc:
        Cluster.from_documents(docs, node=node)
    return str(exc.value)


def test_error_names_file_object_and_field(tmp_path):
    bad = svc("web", "10.96.0.1", ns="shop")
    bad["spec"]["ports"][0]["port"] = 70000
    p = write(str(tmp_path / "svc.yaml"), yaml.safe_dump_all([NODECONFIG, bad]))
    with pytest.raises(ConfigError) as exc:
        Cluster.load(p, node="n1")
    msg = str(exc.value)
    assert "svc.yaml#1" in msg and "Service shop/web" in msg and "spec.ports[0].port" in msg


def test_all_problems_are_listed_together():
    a = svc("a", "not-an-ip")
    b = svc("b", "10.96.0.2", type="Bogus")
    sl = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": {"name": "s", "namespace": "default", "labels": {"kubernetes.io/service-name": "b"}},
          "addressType": "IPv4", "endpoints": [{"addresses": ["fd00::1"]}]}
    msg = _error([NODECONFIG, a, b, sl])
    assert "Service default/a: spec.clusterIPs[0]" in msg
    assert "Service default/b: spec.type" in msg
    assert "EndpointSlice default/s: endpoints[0].addresses[0]: is not an IPv4 address" in msg
    assert "3 problems" in msg


def test_unparsable_yaml_names_the_file(tmp_path):
    p = write(str(tmp_path / "broken.yaml"), "kind: Service\nspec: [unclosed\n")
    with pytest.raises(ConfigError, match="broken.yaml"):
        Cluster.load(p, node="n1")


def test_missing_path_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        Cluster.load([str(tmp_path / "nope")], node="n1")


def test_wrong_api_version_is_an_error():
    s = svc("a", "10.96.0.1")
    s["apiVersion"] = "v2"
    assert "Service default/a: apiVersion: must be v1" in _error([NODECONFIG, s])


def test_duplicate_objects_are_an_error():
    assert "duplicate object" in _error([NODECONFIG, svc("a", "10.96.0.1"), svc("a", "10.96.0.2")])


def test_node_port_outside_the_range_and_clashing_node_ports_are_errors():
    p1 = svc("a", "10.96.0.1", type="NodePort")
    p1["spec"]["ports"][0]["nodePort"] = 29999
    p2 = svc("b", "10.96.0.2", type="NodePort")
    p2["spec"]["ports"][0]["nodePort"] = 30001
    p3 = svc("c", "10.96.0.3", type="NodePort")
    p3["spec"]["ports"][0]["nodePort"] = 30001
    msg = _error([NODECONFIG, p1, p2, p3])
    assert "Service default/a: spec.ports[0].nodePort: 29999 is outside the NodePort range 30000-32767" in msg
    assert "Service default/c: spec.ports[0].nodePort: 30001 is also used by default/b" in msg


def test_two_services_claiming_one_frontend_is_an_error():
    msg = _error([NODECONFIG, svc("a", "10.96.0.1", externalIPs=["198.18.0.1"]),
                  svc("b", "10.96.0.2", externalIPs=["198.18.0.1"])])
    assert "Service default/b: spec.externalIPs: 198.18.0.1:80 is also a frontend of default/a" in msg


def test_shared_cluster_ip_is_an_error():
    assert "is also the ClusterIP of default/a" in _error([NODECONFIG, svc("a", "10.96.0.1"),
                                                          svc("b", "10.96.0.1", )])


def test_slice_without_service_label_is_an_error():
    sl = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
          "metadata": {"name": "s", "namespace": "default"}, "addressType": "IPv4", "endpoints": []}
    assert "kubernetes.io/service-name" in _error([NODECONFIG, sl])


def test_unknown_node_config_field_is_an_error():
    nc = {**NODECONFIG, "spec": {**NODECONFIG["spec"], "masqueradeAl": True}}
    assert "NodeConfig n1: spec.masqueradeAl: unknown field" in _error([nc])


def test_node_without_settings_is_an_error():
    assert "no NodeConfig" in _error([NODECONFIG], node="other")


def test_node_without_addresses_is_an_error():
    nc = {"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": "n1"}, "spec": {}}
    assert "spec.nodeAddresses: is required" in _error([nc])


def test_non_mapping_document_is_an_error(tmp_path):
    p = write(str(tmp_path / "x.yaml"), "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="must be a Kubernetes object"):
        Cluster.load(p, node="n1")


def test_a_failed_reload_leaves_the_running_tables_intact(tmp_path):
    snap = tmp_path / "snap"
    shutil.copytree(SAMPLE, snap)
    tables = compile(Cluster.load([str(snap)], node="node-1"))
    before = [tables.backends(i).tobytes() for i in range(len(tables.records))]
    write(str(snap / "bad.yaml"), yaml.safe_dump(svc("bad", "10.96.0.77", port=0)))
    with pytest.raises(ConfigError):
        tables = compile(Cluster.load([str(snap)], node="node-1"))
    assert [tables.backends(i).tobytes() for i in range(len(tables.records))] == before
    assert len(tables.records) == 6


def test_non_ascii_digits_are_errors_not_crashes():
    s = svc("a", "10.96.0.1")
    s["spec"]["ports"][0]["targetPort"] = "²"
    nc = {**NODECONFIG, "spec": {**NODECONFIG["spec"], "conntrack": {"udpTimeout": "²s"}}}
    s2 = svc("b", "10.96.0.2")
    s2["spec"]["ports"][0]["targetPort"] = "٣"
    msg = _error([NODECONFIG, s, s2])
    assert "Service default/a: spec.ports[0].targetPort: must be a port number or a port name" in msg
    assert "Service default/b: spec.ports[0].targetPort" in msg
    assert "spec.conntrack.udpTimeout" in _error([nc])
