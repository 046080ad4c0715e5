"""The decap stage against scapy-built IP-in-IP and VXLAN packets."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP, IPOption_NOP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from kdp._fast import decap, packet, parse
from kdp.reasons import Reason, Stage, Verdict

from kdptest import ADDR16, FIELDS, expected, frame

NODE4, NODE6 = "192.168.1.10", "fd00:1::10"
PEER4, PEER6 = "192.168.1.20", "fd00:1::20"
OTHER4 = "192.168.1.30"
ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
EP = decap.TunnelEndpoints(local=[NODE4, NODE6])


def run(frames, endpoints=EP, vxlan_port=4789):
    b = packet.Batch(max(1, len(frames)))
    for f in frames:
        b.append(bytes(f))
    parse.parse(b, vxlan_port=vxlan_port)
    decap.decap(b, endpoints, vxlan_port=vxlan_port)
    return b


def outcome(b, i=0):
    r = b.meta[i]
    return Verdict(int(r["verdict"])), Stage(int(r["stage"])), Reason(int(r["reason"]))


def assert_parsed_as(b, i, inner, lt):
    """Packet i now is `inner` on link type lt, parsed exactly as if it had come in alone."""
    assert b.packet(i) == inner
    assert b.meta[i]["linktype"] == lt
    want = expected(inner, lt)
    got = {f: int(b.meta[i][f]) for f in FIELDS}
    got.update({f: bytes(b.meta[i][f]) for f in ADDR16})
    assert got == want


def vxlan(inner, src=PEER4, dst=NODE4, flags=0x08):
    outer = IP(src=src, dst=dst) if ":" not in dst else IPv6(src=src, dst=dst)
    return ETH / outer / UDP(sport=12345, dport=4789) / VXLAN(vni=42, flags=flags) / Raw(inner)


def ipip(inner, src=PEER4, dst=NODE4):
    proto = 4 if inner[0] >> 4 == 4 else 41
    if ":" in dst:
        return ETH / IPv6(src=src, dst=dst, nh=proto) / Raw(inner)
    return ETH / IP(src=src, dst=dst, proto=proto) / Raw(inner)


@st.composite
def inner_ethernet(draw):
    lt, data = draw(frame().filter(lambda f: f[0] == 1))
    return data


@st.composite
def inner_ip(draw):
    lt, data = draw(frame().filter(lambda f: f[0] in (101, 228, 229)))
    return data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(inner_ethernet(), st.sampled_from([(PEER4, NODE4), (PEER6, NODE6)]))
def test_vxlan_to_the_node_becomes_its_inner_frame(inner, addrs):
    b = run([vxlan(inner, *addrs)])
    assert outcome(b) == (Verdict.PENDING, Stage.RX, Reason.FORWARDED)
    assert_parsed_as(b, 0, inner, 1)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(inner_ip(), st.sampled_from([(PEER4, NODE4), (PEER6, NODE6)]))
def test_ip_in_ip_to_the_node_becomes_its_inner_packet_in_an_ethernet_frame(inner, addrs):
    b = run([ipip(inner, *addrs)])
    assert outcome(b) == (Verdict.PENDING, Stage.RX, Reason.FORWARDED)
    # the outer frame's addresses, the inner packet's ethertype, untagged
    ethertype = b"\x08\x00" if inner[0] >> 4 == 4 else b"\x86\xdd"
    assert_parsed_as(b, 0, bytes(ETH)[:12] + ethertype + inner, 1)
    assert b.meta[0]["decap"] == 1


def test_ip_in_ip_on_a_raw_ip_link_becomes_the_raw_inner_packet():
    inner = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP())
    b = packet.Batch(1)
    b.append(bytes(IP(src=PEER4, dst=NODE4, proto=4) / Raw(inner)), linktype=101)
    parse.parse(b)
    decap.decap(b, EP)
    assert_parsed_as(b, 0, inner, 228)


def test_vxlan_decapsulation_is_marked_and_checks_the_vni_when_given():
    inner = bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2") / UDP())
    ep = decap.TunnelEndpoints(local=[NODE4], vnis=[42])
    b = run([vxlan(inner), ETH / IP(src=PEER4, dst=NODE4) / UDP(sport=1, dport=4789) / VXLAN(vni=7) / Raw(inner)],
            endpoints=ep)
    assert outcome(b, 0)[0] == Verdict.PENDING and b.meta[0]["decap"] == 2
    assert outcome(b, 1) == (Verdict.DROP, Stage.DECAP, Reason.BAD_VXLAN)


def test_vxlan_on_an_extra_port_is_decapsulated_and_short_udp_there_is_left_alone():
    inner = bytes(ETH / IPv6(src="fd00::1", dst="fd00::2") / UDP())
    ep = decap.TunnelEndpoints(local=[NODE6], vxlan_ports=[4790])
    on_4790 = ETH / IPv6(src=PEER6, dst=NODE6) / UDP(sport=1, dport=4790) / VXLAN(vni=6096) / Raw(inner)
    short = ETH / IPv6(src=PEER6, dst=NODE6) / UDP(sport=1, dport=4790) / Raw(b"x" * 8)
    b = run([on_4790, short], endpoints=ep)
    assert_parsed_as(b, 0, inner, 1)
    assert outcome(b, 1)[0] == Verdict.PENDING and b.meta[1]["decap"] == 0 and b.meta[1]["dport"] == 4790


def test_tunnel_to_another_address_is_left_as_is():
    inner = bytes(ETH / IP(src="10.0.0.1", dst="10.0.0.2") / TCP())
    f = bytes(vxlan(inner, dst=OTHER4))
    b = run([f, ipip(bytes(IP() / UDP()), dst=OTHER4)])
    assert b.packet(0) == f
    assert b.meta[0]["tunnel"] == 2 and b.meta[1]["tunnel"] == 1
    assert outcome(b, 0)[0] == Verdict.PENDING and b.meta[0]["linktype"] == 1


def test_vxlan_without_the_i_flag_is_bad_vxlan():
    inner = bytes(ETH / IP() / UDP())
    b = run([vxlan(inner, flags=0x00)])
    assert outcome(b) == (Verdict.DROP, Stage.DECAP, Reason.BAD_VXLAN)


def test_tunnel_from_an_unknown_peer_is_dropped_when_peers_are_listed():
    ep = decap.TunnelEndpoints(local=[NODE4, NODE6], peers=[PEER4, PEER6])
    inner = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP())
    b = run([ipip(inner), ipip(inner, src=OTHER4), ipip(inner, src="fd00::99", dst=NODE6)], endpoints=ep)
    assert outcome(b, 0)[0] == Verdict.PENDING and b.packet(0)[14:] == inner
    assert outcome(b, 1) == (Verdict.DROP, Stage.DECAP, Reason.UNKNOWN_TUNNEL_PEER)
    assert outcome(b, 2) == (Verdict.DROP, Stage.DECAP, Reason.UNKNOWN_TUNNEL_PEER)


def test_malformed_inner_packet_is_dropped_by_decap_with_the_parse_reason():
    bad = bytes(IP(chksum=0x1111) / UDP())
    b = run([ipip(bad), vxlan(bytes(ETH / IP(ihl=4) / UDP()))])
    assert outcome(b, 0) == (Verdict.DROP, Stage.DECAP, Reason.BAD_IPV4_CHECKSUM)
    assert outcome(b, 1) == (Verdict.DROP, Stage.DECAP, Reason.BAD_IPV4_IHL)


def test_arp_inside_vxlan_goes_to_the_node():
    b = run([vxlan(bytes(ETH / ARP()))])
    assert outcome(b) == (Verdict.LOCAL, Stage.DECAP, Reason.ARP)


def test_decapsulated_packet_keeps_the_outer_headers_as_headroom():
    inner = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / UDP())
    f = bytes(ipip(inner))
    b = packet.Batch(1)
    b.append(f, wire_len=len(f) + 100)
    off0 = int(b.meta[0]["off"])
    parse.parse(b)
    decap.decap(b, EP)
    # the outer headers are headroom now (their last 14 bytes hold the Ethernet header
    # that moved in front of the inner packet)
    assert int(b.meta[0]["off"]) == off0 + 20
    assert int(b.meta[0]["wire_len"]) == len(f) + 100 - 20
    assert bytes(b.buffer[off0:off0 + 20]) == f[:20]
    assert b.packet(0) == f[:12] + b"\x08\x00" + inner


def test_packets_without_tunnel_or_already_decided_are_untouched():
    plain = ETH / IP(dst=NODE4) / UDP(dport=53)
    b = packet.Batch(2)
    b.append(bytes(plain))
    b.append(bytes(ipip(bytes(IP() / UDP()))))
    parse.parse(b)
    b.meta[1]["verdict"] = Verdict.DROP
    before = b.meta[:2].copy()
    decap.decap(b, EP)
    assert np.array_equal(b.meta[:2], before)


def test_bad_endpoint_address_is_a_value_error():
    with pytest.raises(ValueError):
        decap.TunnelEndpoints(local=["not-an-address"])


# ------------------------------------------------------------------ the one-pass parse + decap

@st.composite
def tunnel_frame(draw):
    """Tunnel frames to the node (and near misses): IP-in-IP or VXLAN, with the damage and
    variants the one-pass fast path must hand to the normal path."""
    inner_ip = IP(src="10.0.0.1", dst="10.0.0.2", ttl=draw(st.integers(1, 255))) / \
        UDP(sport=draw(st.integers(1, 65535)), dport=53) / Raw(draw(st.binary(max_size=40)))
    src = draw(st.sampled_from([PEER4, OTHER4]))
    dst = draw(st.sampled_from([NODE4, NODE4, OTHER4]))
    kind = draw(st.sampled_from(["ipip", "vxlan", "vxlan-other-port", "udp"]))
    opts = draw(st.sampled_from([[], [IPOption_NOP()] * 4]))
    frag = draw(st.sampled_from([0, 0, 0, 1, 5]))
    flags = draw(st.sampled_from([0, 0, "MF", "DF"]))
    outer = IP(src=src, dst=dst, options=opts, frag=frag, flags=flags)
    if kind == "ipip":
        pkt = outer / inner_ip
    elif kind == "udp":
        pkt = outer / UDP(sport=1, dport=53) / Raw(b"x" * 30)
    else:
        port = 4789 if kind == "vxlan" else 8472
        pkt = outer / UDP(sport=1, dport=port) / VXLAN(vni=draw(st.sampled_from([42, 7])),
                                                       flags=draw(st.sampled_from([0x08, 0x08, 0x00]))) / \
            Ether(src="02:00:00:00:00:07", dst="02:00:00:00:00:08") / inner_ip
    eth = ETH / pkt if not draw(st.booleans()) else ETH / Dot1Q(vlan=5) / pkt
    data = bytearray(bytes(eth))
    damage = draw(st.sampled_from(["none", "none", "checksum", "cut", "length"]))
    l3 = 18 if Dot1Q in eth else 14
    if damage == "checksum":
        data[l3 + 10] ^= 0x5A
    elif damage == "cut":
        data = data[:draw(st.integers(l3, len(data)))]
    elif damage == "length":
        data[l3 + 2:l3 + 4] = (len(data) - l3 + draw(st.integers(-30, 30))).to_bytes(2, "big")
    return bytes(data), draw(st.integers(0, 40))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(tunnel_frame(), min_size=1, max_size=6))
def test_one_pass_parse_and_decap_equals_parse_then_decap(frames):
    ep = decap.TunnelEndpoints(local=[NODE4, NODE6], peers=[PEER4, PEER6], vnis=[42])
    two, one = packet.Batch(len(frames)), packet.Batch(len(frames))
    for data, extra in frames:
        for b in (two, one):
            b.append(data, wire_len=len(data) + extra)
    parse.parse(two)
    decap.decap(two, ep)
    decap.parse_and_decap(one, ep)
    for i in range(len(frames)):
        assert one.packet(i) == two.packet(i)
        assert one.meta[i].tobytes() == two.meta[i].tobytes()
