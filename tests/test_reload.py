"""Reloading a snapshot: tables swap whole, conntrack stays, stale flows go."""
import pytest
from scapy.all import IP, TCP, UDP

from kdptest import CLIENT, WEB1, WEB2, Harness, base_objects, endpoint, endpoint_slice, port, service
from kdp.errors import ConfigError
from kdp.reasons import CtState, Verdict


def web(endpoints, extra_port=False):
    ports = [port("http", 80, 8080)] + ([port("alt", 81, 8081)] if extra_port else [])
    slice_ports = [("http", "TCP", 8080)] + ([("alt", "TCP", 8081)] if extra_port else [])
    return base_objects() + [service("web", ports), endpoint_slice("web", slice_ports, endpoints)]


def dns(endpoints, port_number=53):
    return base_objects() + [service("dns", [port("dns", port_number, 53, "UDP")]),
                             endpoint_slice("dns", [("dns", "UDP", 53)], endpoints)]


def handshake(h, sport=40000):
    syn = h.send(IP(src=CLIENT, dst="10.96.0.10") / TCP(sport=sport, dport=80, flags="S", seq=1))
    ip, p = syn.dst
    h.send(IP(src=ip, dst=CLIENT) / TCP(sport=p, dport=sport, flags="SA", seq=100, ack=2))
    return syn.dst


def data(h, sport=40000):
    return h.send(IP(src=CLIENT, dst="10.96.0.10") / TCP(sport=sport, dport=80, flags="A", seq=2, ack=101))


def query(h, sport=35000, dport=53):
    return h.send(IP(src=CLIENT, dst="10.96.0.10") / UDP(sport=sport, dport=dport) / b"q")


def test_established_flow_keeps_its_backend_across_an_unrelated_change(tmp_path):
    both = [endpoint(WEB1, "node-1"), endpoint(WEB2, "node-2")]
    h = Harness(tmp_path, web(both))
    backend = handshake(h)
    h.reload(web(both, extra_port=True))
    out = data(h)
    assert (out.ct, out.dst) == (CtState.ESTABLISHED, backend)


def test_tcp_flow_stays_with_a_terminating_backend_while_it_serves(tmp_path):
    h = Harness(tmp_path, web([endpoint(WEB1, "node-1"), endpoint(WEB2, "node-2")]))
    backend = handshake(h)
    other = WEB2 if backend[0] == WEB1 else WEB1
    node = {WEB1: "node-1", WEB2: "node-2"}
    h.reload(web([endpoint(backend[0], node[backend[0]], ready=False, serving=True, terminating=True),
                  endpoint(other, node[other])]))
    out = data(h)
    assert (out.ct, out.dst) == (CtState.ESTABLISHED, backend)


def test_tcp_flow_to_a_deleted_backend_is_never_sent_there_again(tmp_path):
    h = Harness(tmp_path, web([endpoint(WEB1, "node-1"), endpoint(WEB2, "node-2")]))
    backend = handshake(h)
    other = WEB2 if backend[0] == WEB1 else WEB1
    flushed = h.reload(web([endpoint(other, "node-2" if other == WEB2 else "node-1")]))
    assert flushed == 1
    out = data(h)
    assert out.dst != backend


def test_udp_flow_to_a_removed_backend_is_flushed_and_chooses_again(tmp_path):
    h = Harness(tmp_path, dns([endpoint(WEB1, "node-1"), endpoint(WEB2, "node-2")]))
    first = query(h)
    other = WEB2 if first.dst[0] == WEB1 else WEB1
    assert query(h).ct == CtState.ESTABLISHED
    h.reload(dns([endpoint(other, "node-2" if other == WEB2 else "node-1")]))
    again = query(h)
    assert again.ct == CtState.NEW and again.dst == (other, 53)


@pytest.mark.parametrize("order", ["endpoints-first", "service-first"])
def test_stale_udp_flows_go_whatever_order_the_changes_arrive_in(tmp_path, order):
    both = [endpoint(WEB1, "node-1"), endpoint(WEB2, "node-2")]
    h = Harness(tmp_path, dns(both))
    first = query(h)
    survivor = WEB2 if first.dst[0] == WEB1 else WEB1
    only = [endpoint(survivor, "node-2" if survivor == WEB2 else "node-1")]
    if order == "endpoints-first":
        steps = [dns(only), dns(only) + [service("other", [port("x", 9, 9)], cluster_ips=("10.96.0.77",))]]
    else:
        steps = [dns(both) + [service("other", [port("x", 9, 9)], cluster_ips=("10.96.0.77",))], dns(only)]
    for objects in steps:
        h.reload(objects)
    again = query(h)
    assert again.dst == (survivor, 53)


def test_invalid_snapshot_changes_nothing(tmp_path):
    both = [endpoint(WEB1, "node-1"), endpoint(WEB2, "node-2")]
    h = Harness(tmp_path, web(both))
    backend = handshake(h)
    broken = web([]) + [service("bad", [port("p", 70000, 1)], cluster_ips=("10.96.0.88",))]
    with pytest.raises(ConfigError):
        h.reload(broken)
    assert data(h).dst == backend
    fresh = h.send(IP(src=CLIENT, dst="10.96.0.10") / TCP(sport=40001, dport=80, flags="S"))
    assert fresh.verdict == Verdict.FORWARD and fresh.dst in {(WEB1, 8080), (WEB2, 8080)}


def test_established_flows_keep_naming_their_service_when_ids_are_renumbered(tmp_path):
    both = [endpoint(WEB1, "node-1"), endpoint(WEB2, "node-2")]
    h = Harness(tmp_path, web(both))
    handshake(h)
    assert data(h).service == "shop/web:http"
    # a Service sorting before shop/web takes service-port id 0 on the next compile
    earlier = service("aaa", [port("p", 7, 7)], namespace="default", cluster_ips=("10.96.0.5",))
    h.reload(web(both) + [earlier])
    assert h.dp.service_names()[0] == "default/aaa:p"
    out = data(h)
    assert (out.ct, out.service) == (CtState.ESTABLISHED, "shop/web:http")


def test_endpoint_update_flushes_udp_flows_of_the_removed_backend(tmp_path):
    h = Harness(tmp_path, dns([endpoint(WEB1, "node-1"), endpoint(WEB2, "node-2")]))
    first = query(h)
    survivor = WEB2 if first.dst[0] == WEB1 else WEB1
    changed = endpoint_slice("dns", [("dns", "UDP", 53)],
                             [endpoint(survivor, "node-2" if survivor == WEB2 else "node-1")])
    assert h.dp.update_endpoints(changed) == 1
    again = query(h)
    assert (again.ct, again.dst) == (CtState.NEW, (survivor, 53))


def test_endpoint_update_keeps_tcp_flows_of_a_terminating_backend(tmp_path):
    h = Harness(tmp_path, web([endpoint(WEB1, "node-1"), endpoint(WEB2, "node-2")]))
    backend = handshake(h)
    node = {WEB1: "node-1", WEB2: "node-2"}
    other = WEB2 if backend[0] == WEB1 else WEB1
    changed = endpoint_slice("web", [("http", "TCP", 8080)],
                             [endpoint(backend[0], node[backend[0]], ready=False, serving=True,
                                       terminating=True), endpoint(other, node[other])])
    assert h.dp.update_endpoints(changed) == 0
    assert data(h).dst == backend


def test_invalid_endpoint_update_changes_nothing(tmp_path):
    h = Harness(tmp_path, web([endpoint(WEB1, "node-1")]))
    bad = endpoint_slice("web", [("http", "TCP", 99999)], [endpoint(WEB2, "node-2")])
    with pytest.raises(ConfigError):
        h.dp.update_endpoints(bad)
    out = h.send(IP(src=CLIENT, dst="10.96.0.10") / TCP(sport=40001, dport=80, flags="S"))
    assert out.dst == (WEB1, 8080)


@pytest.mark.parametrize("bad", [
    "not an object",
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": "web-a"},
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
     "metadata": {"name": "web-a", "namespace": "shop", "labels": ["web"]}},
])
def test_malformed_endpoint_update_is_a_config_error_and_changes_nothing(tmp_path, bad):
    h = Harness(tmp_path, web([endpoint(WEB1, "node-1")]))
    with pytest.raises(ConfigError):
        h.dp.update_endpoints(bad)
    out = h.send(IP(src=CLIENT, dst="10.96.0.10") / TCP(sport=40001, dport=80, flags="S"))
    assert out.dst == (WEB1, 8080)
