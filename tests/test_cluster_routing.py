"""A node's data plane as a Calico node's kernel: capture-level tests through the whole
pipeline (snapshot -> Dataplane -> scapy), for every encapsulation mode and edge:
IP-in-IP, VXLAN, CrossSubnet both ways, natOutgoing in and out of pools, MTU with and
without DF, TTL 1, decapsulation from an unknown node, martians, echo; every checksum
against scapy's."""
import json

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw, raw

from kdp._fast.route import placeholder_mac
from kdp.io.capture import write_packets, read_packets
from kdp.replay import replay
from kdp.reasons import CtState, Reason, Stage, Verdict

from kdptest import (CLIENT, NODE1, NODE2, OUTSIDE, WEB1, WEB2, Harness, assert_checksums, base_objects,
                     endpoint, endpoint_slice, node, port, service, write_snapshot)

CALICO = "crd.projectcalico.org/v1"
FAR_NODE = "10.0.9.13"
FAR_POD = "10.244.3.7"


def pool(name, cidr, **spec):
    return {"apiVersion": CALICO, "kind": "IPPool", "metadata": {"name": name}, "spec": {"cidr": cidr, **spec}}


def affinity(node_name, cidr):
    return {"apiVersion": CALICO, "kind": "BlockAffinity", "metadata": {"name": f"{node_name}-b"},
            "spec": {"node": node_name, "cidr": cidr, "state": "confirmed", "deleted": "false"}}


def cluster(pools=(), subnet=True, **config):
    """node-1 (192.168.56.11/24), node-2 (192.168.56.12, same subnet), node-3 (10.0.9.13,
    another subnet, block 10.244.3.0/26); a Service web with backends on node-1 and node-2."""
    if subnet:
        config.setdefault("nodeAddresses", [NODE1 + "/24", "fd00:56::11"])
    objs = base_objects(**config) + list(pools) + [
        node("node-3", FAR_NODE, []), affinity("node-3", "10.244.3.0/26"),
        service("web", [port("http", 80, 8080)]),
        endpoint_slice("web", [("http", "TCP", 8080)], [endpoint(WEB2, "node-2")])]
    return objs


def pod_send(h, *packets, **kw):
    return h.send(*packets, in_port="shop/client", **kw)


def outer(sent):
    return sent.packet[IP]


# ------------------------------------------------------------------ modes

def test_ipip_always_wraps_pod_traffic_to_every_other_node(tmp_path):
    h = Harness(tmp_path, cluster([pool("p", "10.244.0.0/16", ipipMode="Always")]))
    near, far = pod_send(h, IP(src=CLIENT, dst="10.244.2.99", ttl=64) / TCP(sport=1000, dport=80, flags="S"),
                         IP(src=CLIENT, dst=FAR_POD, ttl=64) / TCP(sport=1001, dport=80, flags="S"))
    for sent, peer in ((near, NODE2), (far, FAR_NODE)):
        assert (sent.verdict, sent.reason, sent.out_port) == (Verdict.FORWARD, Reason.FORWARDED_IPIP, "uplink")
        o = outer(sent)
        assert (o.src, o.dst, o.proto, o.ttl) == (NODE1, peer, 4, 63)
        assert sent.ip.ttl == 63 and sent.ip[TCP].dport == 80
        assert sent.packet.src == placeholder_mac(NODE1).hex(":")
        assert sent.packet.dst == placeholder_mac(peer).hex(":")
        assert_checksums(raw(sent.packet))


@pytest.mark.parametrize("mode, near_encap, far_encap", [
    ("CrossSubnet", None, "VXLAN"), ("Always", "VXLAN", "VXLAN"), ("Never", None, None)])
def test_vxlan_modes_as_calico_programs_them(tmp_path, mode, near_encap, far_encap):
    h = Harness(tmp_path, cluster([pool("p", "10.244.0.0/16", vxlanMode=mode)]))
    near, far = pod_send(h, IP(src=CLIENT, dst="10.244.2.99") / UDP(sport=5, dport=53),
                         IP(src=CLIENT, dst=FAR_POD) / UDP(sport=5, dport=53))
    for sent, peer, encap in ((near, NODE2, near_encap), (far, FAR_NODE, far_encap)):
        assert sent.verdict == Verdict.FORWARD
        if encap is None:
            # native routing: the pod's packet itself, to the node's MAC as next hop
            assert sent.reason == Reason.FORWARDED and sent.inner is None
            assert sent.packet.dst == placeholder_mac(peer).hex(":")
            assert sent.packet[IP].dst in ("10.244.2.99", FAR_POD)
        else:
            assert sent.reason == Reason.FORWARDED_VXLAN
            assert (outer(sent).dst, sent.packet[UDP].dport, sent.packet[VXLAN].vni) == (peer, 4789, 4096)
            inner_eth = sent.packet[VXLAN].payload
            assert inner_eth.dst == placeholder_mac(peer).hex(":") and inner_eth.src == placeholder_mac(NODE1).hex(":")
        assert_checksums(raw(sent.packet))


def test_service_traffic_to_a_backend_on_another_node_is_translated_then_encapsulated(tmp_path):
    h = Harness(tmp_path, cluster([pool("p", "10.244.0.0/16", ipipMode="Always")]))
    sent = pod_send(h, IP(src=CLIENT, dst="10.96.0.10") / TCP(sport=2000, dport=80, flags="S"))
    assert (sent.verdict, sent.reason, sent.service) == (Verdict.FORWARD, Reason.FORWARDED_IPIP, "shop/web:http")
    assert (sent.ip.dst, sent.ip[TCP].dport, outer(sent).dst) == (WEB2, 8080, NODE2)
    assert_checksums(raw(sent.packet))


# ------------------------------------------------------------------ decapsulation

def test_tunnel_from_a_known_node_is_decapsulated_and_delivered_to_the_pod(tmp_path):
    h = Harness(tmp_path, cluster([pool("p", "10.244.0.0/16", ipipMode="Always")]))
    inner = IP(src=WEB2, dst=WEB1, ttl=10) / TCP(sport=8080, dport=3000, flags="S")
    sent = h.send(Ether(src="02:00:00:00:00:12", dst=placeholder_mac(NODE1).hex(":")) /
                  IP(src=NODE2, dst=NODE1, proto=4) / inner, in_port="uplink")
    assert (sent.verdict, sent.reason, sent.out_port) == (Verdict.FORWARD, Reason.FORWARDED, "shop/web-1")
    assert sent.packet[IP].ttl == 9 and sent.packet[IP].src == WEB2
    assert sent.packet.src == "ee:ee:ee:ee:ee:ee" and sent.packet.dst == placeholder_mac(WEB1).hex(":")
    assert_checksums(raw(sent.packet))


def test_tunnel_from_an_unknown_node_is_dropped(tmp_path):
    h = Harness(tmp_path, cluster([pool("p", "10.244.0.0/16", ipipMode="Always")]))
    sent = h.send(IP(src="192.168.56.66", dst=NODE1, proto=4) / IP(src=WEB2, dst=WEB1) / TCP(), in_port="uplink")
    assert (sent.verdict, sent.reason) == (Verdict.DROP, Reason.UNKNOWN_TUNNEL_PEER)
    vx = IP(src="192.168.56.66", dst=NODE1) / UDP(sport=1, dport=4789) / VXLAN(vni=4096) / \
        Ether() / IP(src=WEB2, dst=WEB1) / TCP()
    h2 = Harness(tmp_path / "vx", cluster([pool("p", "10.244.0.0/16", vxlanMode="Always")]))
    assert h2.send(vx, in_port="uplink").reason == Reason.UNKNOWN_TUNNEL_PEER


def test_vxlan_with_another_vni_is_refused_as_linux_refuses_it(tmp_path):
    h = Harness(tmp_path, cluster([pool("p", "10.244.0.0/16", vxlanMode="Always")]))
    vx = lambda vni: IP(src=NODE2, dst=NODE1) / UDP(sport=1, dport=4789) / VXLAN(vni=vni) / \
        Ether() / IP(src=WEB2, dst=WEB1) / TCP(sport=8080, dport=1)
    good, bad = h.send(vx(4096), vx(1), in_port="uplink")
    assert good.reason == Reason.FORWARDED and good.out_port == "shop/web-1"
    assert (bad.verdict, bad.reason) == (Verdict.DROP, Reason.BAD_VXLAN)


# ------------------------------------------------------------------ natOutgoing

def test_nat_outgoing_masquerades_pod_traffic_leaving_every_pool(tmp_path):
    h = Harness(tmp_path, cluster([pool("p", "10.244.0.0/16", natOutgoing=True, ipipMode="Always")]))
    out, in_pool, to_node = pod_send(
        h, IP(src=CLIENT, dst="8.8.8.8") / TCP(sport=3000, dport=443, flags="S"),
        IP(src=CLIENT, dst=FAR_POD) / TCP(sport=3001, dport=443, flags="S"),
        IP(src=CLIENT, dst=NODE2) / TCP(sport=3002, dport=443, flags="S"))
    assert out.ip.src == NODE1 and 32768 <= out.ip[TCP].sport <= 60999 and out.ip.dst == "8.8.8.8"
    assert in_pool.ip.src == CLIENT                     # destination inside a pool: untouched
    assert to_node.ip.src == NODE1                      # another node's address is outside the pools
    assert h.dp.pipeline.natout.masqueraded == 2 and h.dp.flow_counters()["nat_outgoing"] == 2
    reply = h.send(IP(src="8.8.8.8", dst=NODE1) / TCP(sport=443, dport=out.ip[TCP].sport, flags="SA"),
                   in_port="uplink")
    assert (reply.ct, reply.ip.dst, reply.ip[TCP].dport, reply.out_port) == \
        (CtState.REPLY, CLIENT, 3000, "shop/client")
    assert_checksums(raw(out.packet))


def test_pool_without_nat_outgoing_and_traffic_to_the_node_keep_their_source(tmp_path):
    h = Harness(tmp_path, cluster([pool("a", "10.244.0.0/17", natOutgoing=False),
                                   pool("b", "10.250.0.0/16", natOutgoing=True)]))
    out, local = pod_send(h, IP(src=CLIENT, dst="8.8.8.8") / UDP(sport=5, dport=53),
                          IP(src=CLIENT, dst=NODE1) / UDP(sport=5, dport=53))
    assert out.ip.src == CLIENT and local.verdict == Verdict.LOCAL
    assert h.dp.pipeline.natout.masqueraded == 0


# ------------------------------------------------------------------ MTU and TTL

def test_df_packet_over_the_tunnel_mtu_gets_fragmentation_needed_back_to_the_pod(tmp_path):
    h = Harness(tmp_path, cluster([pool("p", "10.244.0.0/16", ipipMode="Always")]))
    fits, big = pod_send(h, IP(src=CLIENT, dst="10.244.2.99", flags="DF") / UDP() / Raw(b"a" * 1452),
                         IP(src=CLIENT, dst="10.244.2.99", flags="DF") / UDP() / Raw(b"a" * 1453))
    assert fits.reason == Reason.FORWARDED_IPIP and len(outer(fits)) == 1500
    assert (big.verdict, big.reason, big.out_port) == (Verdict.REJECT, Reason.MTU_EXCEEDED, "shop/client")
    err = big.packet
    assert (err[IP].src, err[IP].dst, err[ICMP].type, err[ICMP].code, err[ICMP].nexthopmtu) == \
        (NODE1, CLIENT, 3, 4, 1480)
    assert err.dst == placeholder_mac(CLIENT).hex(":") and err.src == "ee:ee:ee:ee:ee:ee"
    assert_checksums(raw(err))


def test_packet_without_df_over_the_pod_mtu_is_fragmented_to_the_pod(tmp_path):
    h = Harness(tmp_path, cluster([pool("p", "10.244.0.0/16", vxlanMode="Always")]))
    original = IP(src=OUTSIDE, dst=CLIENT, flags=0, id=99) / UDP(sport=1, dport=2) / Raw(bytes(range(256)) * 6)
    sent = h.send(original, in_port="uplink")
    assert (sent.verdict, sent.reason, sent.out_port) == (Verdict.FORWARD, Reason.FORWARDED_FRAGMENTED, "shop/client")
    frames = [raw(sent.packet)] + [h.dp.extra.packet(k) for k in range(len(h.dp.extra))]
    pieces = [Ether(f)[IP] for f in frames]
    assert len(pieces) == 2 and all(p.len <= 1450 for p in pieces)
    assert b"".join(raw(p.payload) for p in pieces) == raw(original)[20:]
    for f in frames:
        assert_checksums(f)


def test_ttl_one_from_a_remote_pod_gets_time_exceeded_back_through_the_tunnel(tmp_path):
    h = Harness(tmp_path, cluster([pool("p", "10.244.0.0/16", ipipMode="Always")]))
    sent = h.send(IP(src=NODE2, dst=NODE1, proto=4) / IP(src=WEB2, dst=WEB1, ttl=1) / UDP(sport=33434, dport=33434),
                  in_port="uplink")
    assert (sent.verdict, sent.reason, sent.out_port) == (Verdict.REJECT, Reason.TTL_EXCEEDED, "uplink")
    o, err = outer(sent), sent.ip
    assert (o.proto, o.dst) == (4, NODE2)
    assert (err.src, err.dst, err[ICMP].type, err[IPerror].dst) == (NODE1, WEB2, 11, WEB1)
    assert_checksums(raw(sent.packet))


# ------------------------------------------------------------------ the node's own addresses

def test_echo_to_the_node_from_a_remote_pod_is_answered_through_the_tunnel(tmp_path):
    h = Harness(tmp_path, cluster([pool("p", "10.244.0.0/16", vxlanMode="Always")]))
    req = IP(src=NODE2, dst=NODE1) / UDP(sport=40000, dport=4789) / VXLAN(vni=4096) / \
        Ether() / IP(src=WEB2, dst=NODE1) / ICMP(type=8, id=5, seq=1) / Raw(b"hello")
    sent = h.send(req, in_port="uplink")
    assert (sent.verdict, sent.reason) == (Verdict.REPLY, Reason.ECHO_REPLIED)
    assert outer(sent).dst == NODE2 and sent.packet[UDP].dport == 4789
    assert (sent.ip.src, sent.ip.dst, sent.ip[ICMP].type, bytes(sent.ip[ICMP].payload)) == (NODE1, WEB2, 0, b"hello")
    assert_checksums(raw(sent.packet))


def test_martian_from_the_wire_to_a_localhost_nodeport_is_dropped_before_any_service(tmp_path):
    h = Harness(tmp_path, cluster())
    sent = h.send(IP(src=OUTSIDE, dst="127.0.0.1") / TCP(sport=1, dport=30080, flags="S"), in_port="uplink")
    assert (sent.verdict, sent.reason) == (Verdict.DROP, Reason.MARTIAN_DESTINATION)
    sent = h.send(IP(src="127.0.0.1", dst=WEB1) / TCP(sport=1, dport=80, flags="S"), in_port="uplink")
    assert (sent.verdict, sent.reason) == (Verdict.DROP, Reason.MARTIAN_SOURCE)
    sent = h.send(IP(src=NODE1, dst=WEB1) / TCP(sport=1, dport=80, flags="S"), in_port="uplink")
    assert (sent.verdict, sent.reason) == (Verdict.DROP, Reason.MARTIAN_LOCAL_SOURCE)


def test_martian_checks_can_be_turned_off(tmp_path):
    h = Harness(tmp_path, cluster(martians=False))
    sent = h.send(IP(src=NODE1, dst=WEB1) / TCP(sport=1, dport=80, flags="S"), in_port="uplink")
    assert sent.verdict == Verdict.FORWARD


# ------------------------------------------------------------------ replay: log and notices

def test_replay_logs_the_tunnel_and_writes_the_fragments(tmp_path):
    snap = write_snapshot(tmp_path / "snap", cluster([pool("p", "10.244.0.0/16", ipipMode="Always")]))
    frames = [Ether(src="02:00:00:00:00:50", dst="ee:ee:ee:ee:ee:ee") / p for p in (
        IP(src=CLIENT, dst="10.244.2.99") / TCP(sport=1000, dport=80, flags="S"),
        IP(src=CLIENT, dst="10.244.2.99", flags=0) / UDP(sport=1, dport=2) / Raw(b"f" * 2000),
        IP(src=NODE2, dst=NODE1, proto=4) / IP(src="10.244.2.99", dst=CLIENT) / TCP(sport=80, dport=1000, flags="SA"))]
    cap = tmp_path / "in.pcap"
    write_packets(cap, [(k * 1000, raw(f)) for k, f in enumerate(frames)])
    out, log = tmp_path / "out.pcap", tmp_path / "log.jsonl"
    result = replay(cap, output=out, cluster=[snap], node="node-1", log=log)
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    assert lines[0]["tunnel"] == {"type": "ipip", "src": NODE1, "dst": NODE2}
    assert (lines[0]["proto"], lines[0]["src"], lines[0]["dst"], lines[0]["dport"]) == ("tcp", CLIENT, "10.244.2.99", 80)
    assert lines[1]["reason"] == "forwarded_fragmented" and lines[1]["tunnel"]["type"] == "ipip"
    assert lines[2]["decap"] == "ipip" and lines[2]["out_port"] == "shop/client"
    written = read_packets(out)
    assert result.packets_out == len(written) == 4          # the SYN, two fragments, the SYN-ACK
    assert sum(result.counters.sum(axis=0)) == 3


def test_tunnel_traffic_nothing_decapsulates_is_counted_and_said(tmp_path):
    objs = base_objects()          # no encapsulation, no pools, no annotations
    snap = write_snapshot(tmp_path / "snap", objs)
    frames = [Ether() / IP(src=NODE2, dst=NODE1) / UDP(sport=40000, dport=8472) / VXLAN(vni=1) /
              Ether() / IP(src=WEB2, dst=WEB1) / TCP(),
              Ether() / IP(src=NODE2, dst=NODE1, proto=4) / IP(src=WEB2, dst=WEB1) / TCP()]
    cap = tmp_path / "in.pcap"
    write_packets(cap, [(k, raw(f)) for k, f in enumerate(frames)])
    result = replay(cap, cluster=[snap], node="node-1")
    assert result.counters[Stage.ROUTE, Reason.TUNNEL_NOT_DECAPSULATED] == 2
    assert any("2 packets to this node were IP-in-IP or VXLAN" in n for n in result.notices)
