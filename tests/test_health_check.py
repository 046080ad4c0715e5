"""A LoadBalancer Service with externalTrafficPolicy: Local has a healthCheckNodePort:
kube-proxy's health server answers there on every node (200 with local ready endpoints,
503 without), and its filter rules accept the traffic."""
import json
import subprocess
import sys

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from kdp.control import Cluster
from kdp.errors import ConfigError
from kdp.reasons import Reason, Verdict
from kdptest import (NODE1, NODE1_V6, OUTSIDE, WEB1, WEB2, Harness, base_objects, endpoint, endpoint_slice, port,
                     service, write_snapshot)

HC = 31555


def lb(name="lb", vip="10.96.0.40", hc=HC, endpoints=(), **spec):
    spec.setdefault("externalTrafficPolicy", "Local")
    svc = service(name, [port("http", 80, 8080, node_port=30081 if name == "lb" else 30082)],
                  cluster_ips=(vip,), type="LoadBalancer", healthCheckNodePort=hc, **spec)
    return [svc, endpoint_slice(name, [("http", "TCP", 8080)], list(endpoints))]


def test_health_check_packets_are_delivered_to_the_node_with_their_own_reason(tmp_path):
    h = Harness(tmp_path, base_objects() + lb(endpoints=[endpoint(WEB1, "node-1")]))
    syn = h.send(IP(src=OUTSIDE, dst=NODE1) / TCP(sport=50000, dport=HC, flags="S"))
    assert (syn.verdict, syn.reason, syn.out_port) == (Verdict.LOCAL, Reason.SVC_HEALTH_CHECK, "host")
    h.send(IP(src=NODE1, dst=OUTSIDE) / TCP(sport=HC, dport=50000, flags="SA"), in_port="host")
    ack = h.send(IP(src=OUTSIDE, dst=NODE1) / TCP(sport=50000, dport=HC, flags="A"))
    assert (ack.verdict, ack.reason) == (Verdict.LOCAL, Reason.SVC_HEALTH_CHECK)
    # another port of the node, or UDP to the health port, is plain local delivery
    assert h.send(IP(src=OUTSIDE, dst=NODE1) / TCP(sport=50001, dport=HC + 1, flags="S")).reason \
        == Reason.LOCAL_DELIVERY
    assert h.send(IP(src=OUTSIDE, dst=NODE1) / UDP(sport=50002, dport=HC)).reason == Reason.LOCAL_DELIVERY


def show_services(tmp_path, objects):
    snap = write_snapshot(tmp_path / "snap", objects)
    run = subprocess.run([sys.executable, "-m", "kdp.cli", "show", "services", "--cluster", str(snap),
                          "--node", "node-1", "--json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return {r["name"]: r for r in json.loads(run.stdout)["services"]}


def test_show_services_reports_what_the_health_server_answers(tmp_path):
    objs = base_objects() + lb(endpoints=[endpoint(WEB1, "node-1"), endpoint(WEB2, "node-2")]) \
        + lb("lb2", "10.96.0.41", HC + 1, endpoints=[endpoint(WEB2, "node-2"),
                                                      endpoint(WEB1, "node-1", ready=False, serving=True,
                                                               terminating=True)])
    rows = show_services(tmp_path, objs)
    assert rows["shop/lb:http"]["health_check"] == {"node_port": HC, "local_endpoints": 1, "status": 200}
    # a terminating local endpoint does not make the node healthy (kube-proxy counts ready ones)
    assert rows["shop/lb2:http"]["health_check"] == {"node_port": HC + 1, "local_endpoints": 0, "status": 503}


def test_a_local_pod_serving_two_ports_is_one_endpoint_to_the_health_server(tmp_path):
    # kube-proxy's LocalReadyEndpoints counts distinct addresses over the Service's ports
    svc = service("lb", [port("http", 80, 8080, node_port=30081), port("https", 443, 8443, node_port=30082)],
                  cluster_ips=("10.96.0.40",), type="LoadBalancer", externalTrafficPolicy="Local",
                  healthCheckNodePort=HC)
    sl = endpoint_slice("lb", [("http", "TCP", 8080), ("https", "TCP", 8443)],
                        [endpoint(WEB1, "node-1"), endpoint("10.244.1.11", "node-1"), endpoint(WEB2, "node-2")])
    rows = show_services(tmp_path, base_objects() + [svc, sl])
    for name in ("shop/lb:http", "shop/lb:https"):
        assert rows[name]["health_check"] == {"node_port": HC, "local_endpoints": 2, "status": 200}


@pytest.mark.parametrize("config, served", [
    ({}, {NODE1}),                                      # nftables: the primary address only
    ({"nodePortAddresses": ["all"]}, {NODE1, "10.0.0.11"}),
    ({"proxyMode": "iptables"}, {NODE1, "10.0.0.11"}),  # unset in iptables mode: every address
    ({"nodePortAddresses": ["10.0.0.0/8"]}, {"10.0.0.11"}),
])
def test_the_health_server_listens_on_the_nodeport_addresses(tmp_path, config, served):
    # kube-proxy's health server binds the NodePort addresses (every address when they
    # match all); on another node address nothing listens: plain local delivery
    objs = base_objects(nodeAddresses=[NODE1, "10.0.0.11"], **config) + lb(endpoints=[endpoint(WEB1, "node-1")])
    h = Harness(tmp_path, objs)
    for k, dst in enumerate((NODE1, "10.0.0.11")):
        sent = h.send(IP(src=OUTSIDE, dst=dst) / TCP(sport=50000 + k, dport=HC, flags="S"))
        assert sent.verdict == Verdict.LOCAL
        assert sent.reason == (Reason.SVC_HEALTH_CHECK if dst in served else Reason.LOCAL_DELIVERY), dst


def test_a_family_no_nodeport_cidr_names_listens_everywhere(tmp_path):
    # nodePortAddresses [10.0.0.0/8]: kube-proxy's IPv6 side gets ::/0 (every IPv6 address)
    objs = base_objects(nodeAddresses=[NODE1, "10.0.0.11", NODE1_V6], nodePortAddresses=["10.0.0.0/8"]) \
        + lb(endpoints=[endpoint(WEB1, "node-1")])
    h = Harness(tmp_path, objs)
    v6 = h.send(IPv6(src="2001:db8::7", dst=NODE1_V6) / TCP(sport=50000, dport=HC, flags="S"))
    assert (v6.verdict, v6.reason) == (Verdict.LOCAL, Reason.SVC_HEALTH_CHECK)
    v4 = h.send(IP(src=OUTSIDE, dst=NODE1) / TCP(sport=50001, dport=HC, flags="S"))
    assert (v4.verdict, v4.reason) == (Verdict.LOCAL, Reason.LOCAL_DELIVERY)


def test_the_text_table_shows_the_health_state(tmp_path):
    snap = write_snapshot(tmp_path / "snap", base_objects() + lb(endpoints=[endpoint(WEB2, "node-2")]))
    run = subprocess.run([sys.executable, "-m", "kdp.cli", "show", "services", "--cluster", str(snap),
                          "--node", "node-1"], capture_output=True, text=True)
    assert "healthCheck=31555:503 (0 local ready endpoints)" in run.stdout


@pytest.mark.parametrize("spec, message", [
    ({"externalTrafficPolicy": "Cluster"}, "may only be set when type is LoadBalancer"),
    ({"hc": 80}, "outside the NodePort range"),
    ({"hc": 30082}, "is also used by"),      # lb2's NodePort
])
def test_a_health_check_node_port_the_api_server_would_refuse_is_an_error(tmp_path, spec, message):
    hc = spec.pop("hc", HC)
    objs = base_objects() + lb(hc=hc, **spec) + lb("lb2", "10.96.0.41", HC + 1)
    with pytest.raises(ConfigError, match=message):
        Cluster.load([write_snapshot(tmp_path / "s", objs)], node="node-1")
