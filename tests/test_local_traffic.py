"""Local traffic detection and localhost NodePorts as kube-proxy has them: which sources
count as the cluster's own (and so are not masqueraded on their way to a ClusterIP), and
NodePorts reached at 127.0.0.1 from the node itself (iptables mode)."""
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from kdp.reasons import Reason, Verdict
from kdptest import (CLIENT, CLIENT6, NODE1, NODE1_V6, OUTSIDE, WEB2, WEB2_6, Harness, base_objects,
                     endpoint, endpoint_slice, port, service)

VIP = "10.96.0.10"


def world(**config):
    return base_objects(**config) + [
        service("web", [port("http", 80, 8080, node_port=30080)], type="NodePort"),
        endpoint_slice("web", [("http", "TCP", 8080)], [endpoint(WEB2, "node-2")])]


def syn(src, dst, dport, sport=40000):
    return IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags="S")


@pytest.mark.parametrize("config", [{"localTrafficDetection": "None"}, {"clusterCIDRs": []}])
def test_without_a_detector_no_clusterip_flow_is_masqueraded(tmp_path, config):
    # kube-proxy's no-op detector: the "masquerade off-cluster traffic" rule is left out
    h = Harness(tmp_path, world(**config))
    for src in (CLIENT, OUTSIDE):
        sent = h.send(syn(src, VIP, 80))
        assert sent.verdict == Verdict.FORWARD and sent.ip.src == src and sent.ip.dst == WEB2


def test_with_a_cluster_cidr_off_cluster_sources_are_masqueraded(tmp_path):
    h = Harness(tmp_path, world())
    assert h.send(syn(CLIENT, VIP, 80)).ip.src == CLIENT
    assert h.send(syn(OUTSIDE, VIP, 80)).ip.src == NODE1


def dual_stack_world(**config):
    return world(**config) + [
        service("web6", [port("http", 80, 8080)], cluster_ips=("fd00:96::10",)),
        endpoint_slice("web6", [("http", "TCP", 8080)], [endpoint(WEB2_6, "node-2")], family="IPv6")]


@pytest.mark.parametrize("config", [{"clusterCIDRs": ["10.244.0.0/16"]},
                                    {"localTrafficDetection": "NodeCIDR", "podCIDRs": ["10.244.1.0/24"]}])
def test_a_family_without_a_cidr_of_its_own_has_no_detector(tmp_path, config):
    # kube-proxy builds one detector per family; IPv6 here gets the no-op one
    h = Harness(tmp_path, dual_stack_world(**config))
    for src in (CLIENT6, "2001:db8::7"):
        sent = h.send(IPv6(src=src, dst="fd00:96::10") / TCP(sport=40000, dport=80, flags="S"))
        assert sent.verdict == Verdict.FORWARD and sent.ip.src == src and sent.ip.dst == WEB2_6
    # IPv4 keeps its detector: off-cluster sources are masqueraded
    assert h.send(syn(OUTSIDE, VIP, 80)).ip.src == NODE1
    assert h.send(syn(CLIENT, VIP, 80)).ip.src == CLIENT
    field = "clusterCIDRs" if "clusterCIDRs" in config else "podCIDRs"
    assert any(f"no IPv6 prefix in spec.{field}" in n for n in h.dp.node.cluster.notices)


def test_both_families_with_a_cidr_masquerade_off_cluster_ipv6(tmp_path):
    h = Harness(tmp_path, dual_stack_world())
    sent = h.send(IPv6(src="2001:db8::7", dst="fd00:96::10") / TCP(sport=40000, dport=80, flags="S"))
    assert sent.ip.src == NODE1_V6
    assert not any("prefix in spec.clusterCIDRs" in n for n in h.dp.node.cluster.notices)


def test_an_empty_cluster_cidr_list_turns_detection_off_with_a_notice(tmp_path):
    h = Harness(tmp_path, world(clusterCIDRs=[]))
    assert any("local traffic detection is off" in n for n in h.dp.node.cluster.notices)


@pytest.mark.parametrize("mode", ["InterfaceNamePrefix", "BridgeInterface"])
def test_interface_modes_call_local_what_arrives_on_a_pod_port(tmp_path, mode):
    h = Harness(tmp_path, world(localTrafficDetection=mode))
    # the client pod's address from its own port: local, source kept
    assert h.send(syn(CLIENT, VIP, 80), in_port="shop/client").ip.src == CLIENT
    # the same address from the uplink (another node's pod routed here): not local
    assert h.send(syn(CLIENT, VIP, 80, sport=40001), in_port="uplink").ip.src == NODE1


def test_localhost_nodeport_from_the_host_is_served_and_masqueraded_in_iptables_mode(tmp_path):
    h = Harness(tmp_path, world(proxyMode="iptables"))
    sent = h.send(syn("127.0.0.1", "127.0.0.1", 30080), in_port="host")
    assert sent.verdict == Verdict.FORWARD and sent.service == "shop/web:http"
    assert (sent.ip.src, sent.ip.dst, sent.ip[TCP].dport) == (NODE1, WEB2, 8080)


@pytest.mark.parametrize("config", [{"proxyMode": "iptables", "localhostNodePorts": False},
                                    {"proxyMode": "nftables"},
                                    {"proxyMode": "iptables", "nodePortAddresses": ["primary"]}])
def test_localhost_nodeport_is_not_a_service_otherwise(tmp_path, config):
    h = Harness(tmp_path, world(**config))
    sent = h.send(syn("127.0.0.1", "127.0.0.1", 30080), in_port="host")
    assert sent.service is None


@pytest.mark.parametrize("addresses, served", [
    (None, {"127.0.0.1", "127.0.0.2"}),                 # --dst-type LOCAL: all of 127/8
    (["0.0.0.0/0"], {"127.0.0.1", "127.0.0.2"}),
    (["127.0.0.0/8", "192.168.56.0/24"], {"127.0.0.1"}),  # CIDRs: the rules name lo's address
])
def test_localhost_nodeports_answer_where_kube_proxys_rules_jump(tmp_path, addresses, served):
    config = {"proxyMode": "iptables"}
    if addresses is not None:
        config["nodePortAddresses"] = addresses
    h = Harness(tmp_path, world(**config))
    for k, dst in enumerate(("127.0.0.1", "127.0.0.2")):
        sent = h.send(syn("127.0.0.1", dst, 30080, sport=40000 + k), in_port="host")
        assert (sent.service == "shop/web:http") == (dst in served), dst


def test_localhost_nodeport_from_the_wire_is_still_a_martian(tmp_path):
    h = Harness(tmp_path, world(proxyMode="iptables"))
    sent = h.send(syn(OUTSIDE, "127.0.0.1", 30080), in_port="uplink")
    assert (sent.verdict, sent.reason) == (Verdict.DROP, Reason.MARTIAN_DESTINATION)


@pytest.mark.parametrize("config, short_circuit", [
    ({}, True), ({"localTrafficDetection": "None"}, False), ({"clusterCIDRs": []}, False),
    ({"clusterCIDRs": ["fd00:244::/32"]}, False),           # no IPv4 detector
])
def test_the_pod_short_circuit_of_local_external_policy_needs_a_detector(config, short_circuit):
    # a pod's flow to an externalTrafficPolicy: Local LoadBalancer IP with no endpoint on this
    # node: kube-proxy's detector sends it to the cluster endpoints; without one, the Local
    # rules apply and there is no local endpoint to take it
    from kdp._fast import service as fast
    from kdptest import base_docs, decide, tables_for
    got = decide(tables_for(base_docs(**config)), "10.244.1.50", "203.0.113.12", 443)
    if short_circuit:
        assert got["result"] == fast.SVC_HIT and got["dnat"] == "10.244.2.31" and not got["flags"] & 2
    else:
        assert (got["result"], Reason(got["reason"])) == (fast.SVC_DROP, Reason.SVC_NO_LOCAL_ENDPOINTS)
