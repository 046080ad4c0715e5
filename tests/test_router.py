"""The route stage as a router: martians, link-scope destinations, ICMP time exceeded,
fragmentation needed / packet too big, echo replies; packets built and checked with scapy."""
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, IPOption_RR
from scapy.layers.inet6 import (ICMPv6EchoReply, ICMPv6EchoRequest, ICMPv6PacketTooBig,
                                ICMPv6TimeExceeded, IPerror6, IPv6)
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw, raw

from kdp._fast import icmp
from kdp._fast.packet import Batch
from kdp._fast.parse import parse
from kdp._fast.route import Route, RouteKind, RouteTable
from kdp.ports import HOST, UPLINK
from kdp.reasons import Reason, Stage, Verdict

from kdptest import assert_checksums

POD_PORT = 7
NODE4, NODE6 = "192.168.0.11", "fd00::11"
MACS = dict(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b")
TABLE = RouteTable([
    Route("0.0.0.0/0", RouteKind.RT_UPLINK, UPLINK, mtu=1500),
    Route("::/0", RouteKind.RT_UPLINK, UPLINK, mtu=1500),
    Route("10.244.1.0/24", RouteKind.RT_BLACKHOLE),
    Route("10.244.1.5/32", RouteKind.RT_LOCAL_POD, POD_PORT, mtu=1480),
    Route("10.244.2.0/24", RouteKind.RT_REMOTE_NODE, UPLINK, via="192.168.0.12", mtu=1480),
    Route("fd00:1::5/128", RouteKind.RT_LOCAL_POD, POD_PORT, mtu=1480),
    Route(NODE4 + "/32", RouteKind.RT_HOST, HOST),
    Route(NODE6 + "/128", RouteKind.RT_HOST, HOST),
], node_addresses=[NODE4, NODE6])


def run(*packets, in_port=UPLINK):
    b = Batch(len(packets))
    for p in packets:
        b.append(raw(Ether(**MACS) / p if not isinstance(p, Ether) else p), in_port=in_port)
    parse(b)
    TABLE.classify(b)
    TABLE.route(b)
    return b


def outcome(b, i=0):
    m = b.meta[i]
    return Verdict(m["verdict"]), Stage(m["stage"]), Reason(m["reason"])


# ------------------------------------------------------------------ martians

@pytest.mark.parametrize("src, dst, reason", [
    ("127.0.0.1", "10.244.1.5", Reason.MARTIAN_SOURCE),
    ("224.0.0.5", "10.244.1.5", Reason.MARTIAN_SOURCE),
    ("255.255.255.255", "10.244.1.5", Reason.MARTIAN_SOURCE),
    ("0.1.2.3", "10.244.1.5", Reason.MARTIAN_SOURCE),
    (NODE4, "10.244.1.5", Reason.MARTIAN_LOCAL_SOURCE),
    ("8.8.8.8", "127.0.0.1", Reason.MARTIAN_DESTINATION),
    ("8.8.8.8", "127.10.0.1", Reason.MARTIAN_DESTINATION),
    ("8.8.8.8", "0.0.0.9", Reason.MARTIAN_DESTINATION),
    ("::1", "fd00:1::5", Reason.MARTIAN_SOURCE),
    ("ff02::1", "fd00:1::5", Reason.MARTIAN_SOURCE),
    (NODE6, "fd00:1::5", Reason.MARTIAN_LOCAL_SOURCE),
    ("2001:db8::1", "::1", Reason.MARTIAN_DESTINATION),
])
def test_martian_packet_from_the_wire_is_dropped_with_its_reason(src, dst, reason):
    ipc = IPv6 if ":" in src else IP
    b = run(ipc(src=src, dst=dst) / UDP(dport=30080))
    assert outcome(b) == (Verdict.DROP, Stage.ROUTE, reason)


def test_martian_checks_use_the_tuple_before_nat_and_spare_the_host():
    # from the host port 127.0.0.1 is kube-proxy's localhostNodePorts business, not a martian
    b = run(IP(src="127.0.0.1", dst="127.0.0.1") / TCP(dport=30080), in_port=HOST)
    assert outcome(b)[2] not in (Reason.MARTIAN_SOURCE, Reason.MARTIAN_DESTINATION)


def test_a_packet_from_the_nodes_own_address_without_a_port_is_the_host_sending():
    b = Batch(1)
    b.append(raw(Ether(**MACS) / IP(src=NODE4, dst="10.244.1.5", ttl=1) / TCP()))
    parse(b)
    TABLE.classify(b)
    TABLE.route(b)
    assert b.meta[0]["in_port"] == HOST and outcome(b) == (Verdict.FORWARD, Stage.TX, Reason.FORWARDED)


def test_multicast_and_link_local_destinations_are_for_the_node_never_forwarded():
    b = run(IP(src="8.8.8.8", dst="224.0.0.251") / UDP(dport=5353),
            IP(src="192.168.0.9", dst="255.255.255.255") / UDP(dport=67),
            IPv6(src="fe80::1", dst="ff02::1:ff00:11") / UDP(),
            IPv6(src="fe80::1", dst="fe80::2") / UDP())
    for i in range(4):
        assert outcome(b, i) == (Verdict.LOCAL, Stage.ROUTE, Reason.LINK_LOCAL)


# ------------------------------------------------------------------ TTL

def test_ttl_one_is_answered_with_time_exceeded_from_the_node_quoting_the_packet():
    sent = IP(src="8.8.8.8", dst="10.244.1.5", ttl=1, id=77) / TCP(sport=1234, dport=80) / Raw(b"x" * 40)
    b = run(sent)
    assert outcome(b) == (Verdict.REJECT, Stage.ROUTE, Reason.TTL_EXCEEDED)
    assert b.meta[0]["out_port"] == UPLINK
    out = Ether(b.packet(0))
    assert (out[IP].src, out[IP].dst, out[IP].ttl, out[IP].proto) == (NODE4, "8.8.8.8", 64, 1)
    assert (out[ICMP].type, out[ICMP].code) == (11, 0)
    assert raw(out[IPerror]) == raw(sent)          # the whole packet fits the 548-byte quote
    assert_checksums(b.packet(0))


def test_time_exceeded_quotes_at_most_548_bytes_and_v6_at_most_1232():
    big4 = IP(src="8.8.8.8", dst="10.244.1.5", ttl=1) / UDP() / Raw(b"y" * 1200)
    big6 = IPv6(src="2001:db8::1", dst="fd00:1::5", hlim=1) / UDP() / Raw(b"y" * 1400)
    b = run(big4, big6)
    v4, v6 = Ether(b.packet(0)), Ether(b.packet(1))
    assert len(v4[IP]) == 576 and b.packet(0)[14 + 28:] == raw(big4)[:548]
    assert len(v6[IPv6]) == 1280 and b.packet(1)[14 + 48:] == raw(big6)[:1232]
    assert (v6[IPv6].src, v6[IPv6].dst, v6[IPv6].hlim) == (NODE6, "2001:db8::1", 64)
    for i in (0, 1):
        assert outcome(b, i) == (Verdict.REJECT, Stage.ROUTE, Reason.TTL_EXCEEDED)
        assert_checksums(b.packet(i))


def test_no_icmp_error_about_an_icmp_error_or_a_later_fragment():
    err = IP(src="8.8.8.8", dst="10.244.1.5", ttl=1) / ICMP(type=3, code=1) / IPerror(src="10.244.1.5", dst="8.8.8.8") / UDP()
    later = IP(src="8.8.8.8", dst="10.244.1.5", ttl=1, frag=10, proto=17) / Raw(b"z" * 16)
    b = run(err, later)
    assert outcome(b, 0) == outcome(b, 1) == (Verdict.DROP, Stage.ROUTE, Reason.TTL_EXCEEDED)


def test_ttl_is_decremented_with_a_valid_checksum_and_the_host_is_not_aged():
    b = run(IP(src="8.8.8.8", dst="10.244.1.5", ttl=9) / TCP())
    assert Ether(b.packet(0))[IP].ttl == 8
    assert_checksums(b.packet(0))
    b = run(IP(src=NODE4, dst="10.244.1.5", ttl=1) / TCP(), in_port=HOST)
    assert outcome(b)[0] == Verdict.FORWARD and Ether(b.packet(0))[IP].ttl == 1


# ------------------------------------------------------------------ MTU

def test_too_big_with_df_gets_fragmentation_needed_with_the_routes_mtu():
    sent = IP(src="8.8.8.8", dst="10.244.2.7", flags="DF", ttl=20) / UDP() / Raw(b"a" * 1472)
    b = run(sent)
    assert outcome(b) == (Verdict.REJECT, Stage.ROUTE, Reason.MTU_EXCEEDED)
    out = Ether(b.packet(0))
    assert (out[ICMP].type, out[ICMP].code, out[ICMP].nexthopmtu) == (3, 4, 1480)
    assert out[IPerror].ttl == 20                 # checked before the TTL is decremented
    assert_checksums(b.packet(0))


def test_packet_exactly_at_the_mtu_passes_and_ipv6_over_it_gets_packet_too_big():
    fits = IP(src="8.8.8.8", dst="10.244.2.7", flags="DF") / UDP() / Raw(b"a" * 1452)
    big6 = IPv6(src="2001:db8::1", dst="fd00:1::5") / UDP() / Raw(b"b" * 1433)
    b = run(fits, big6)
    assert outcome(b, 0) == (Verdict.FORWARD, Stage.TX, Reason.FORWARDED)
    assert outcome(b, 1) == (Verdict.REJECT, Stage.ROUTE, Reason.MTU_EXCEEDED)
    out = Ether(b.packet(1))
    assert out[ICMPv6PacketTooBig].mtu == 1480 and out[IPv6].dst == "2001:db8::1"
    assert_checksums(b.packet(1))


def test_too_big_without_df_is_left_for_fragmentation():
    b = run(IP(src="8.8.8.8", dst="10.244.2.7", flags=0) / UDP() / Raw(b"a" * 1600))
    assert outcome(b) == (Verdict.FORWARD, Stage.TX, Reason.FORWARDED)


# ------------------------------------------------------------------ echo

def test_echo_request_to_the_node_is_answered_from_the_address_asked():
    b = run(IP(src="8.8.8.8", dst=NODE4, ttl=5, flags="DF") / ICMP(type=8, id=9, seq=3) / Raw(b"ping"),
            IPv6(src="2001:db8::1", dst=NODE6) / ICMPv6EchoRequest(id=4, seq=5, data=b"pong"))
    for i in (0, 1):
        assert outcome(b, i) == (Verdict.REPLY, Stage.ROUTE, Reason.ECHO_REPLIED)
        assert b.meta[i]["out_port"] == UPLINK
        assert_checksums(b.packet(i))
    v4, v6 = Ether(b.packet(0)), Ether(b.packet(1))
    assert (v4[IP].src, v4[IP].dst, v4[IP].ttl, int(v4[IP].flags)) == (NODE4, "8.8.8.8", 64, 0)
    assert (v4[ICMP].type, v4[ICMP].id, v4[ICMP].seq, raw(v4[ICMP].payload)) == (0, 9, 3, b"ping")
    assert (v6[IPv6].src, v6[IPv6].dst) == (NODE6, "2001:db8::1")
    assert (v6[ICMPv6EchoReply].id, v6[ICMPv6EchoReply].seq, v6[ICMPv6EchoReply].data) == (4, 5, b"pong")


def test_echo_with_ip_options_keeps_them_and_a_valid_checksum():
    b = run(IP(src="8.8.8.8", dst=NODE4, options=[IPOption_RR(routers=["1.1.1.1"])]) / ICMP(type=8))
    assert outcome(b)[0] == Verdict.REPLY
    assert_checksums(b.packet(0))


def test_other_packets_to_the_node_and_echo_from_the_host_are_local():
    b = run(IP(src="8.8.8.8", dst=NODE4) / TCP(dport=22))
    assert outcome(b) == (Verdict.LOCAL, Stage.ROUTE, Reason.LOCAL_DELIVERY)
    b = run(IP(src=NODE4, dst=NODE4) / ICMP(type=8), in_port=HOST)
    assert outcome(b) == (Verdict.LOCAL, Stage.ROUTE, Reason.LOCAL_DELIVERY)


# ------------------------------------------------------------------ tunnels nobody decapsulates

@pytest.mark.parametrize("port", [4789, 8472, 4790])
def test_vxlan_to_the_node_that_nothing_decapsulates_is_local_with_its_own_reason(port):
    inner = Ether() / IP(src="10.244.2.3", dst="10.244.1.5") / UDP()
    b = run(IP(src="192.168.0.12", dst=NODE4) / UDP(sport=40000, dport=port) / VXLAN(vni=1) / inner,
            IP(src="192.168.0.12", dst=NODE4, proto=4) / IP(src="10.244.2.3", dst="10.244.1.5") / UDP(),
            IP(src="192.168.0.12", dst=NODE4) / UDP(sport=40000, dport=port) / Raw(b"\x00" * 40))
    assert outcome(b, 0) == outcome(b, 1) == (Verdict.LOCAL, Stage.ROUTE, Reason.TUNNEL_NOT_DECAPSULATED)
    if port != 4789:            # the parser's own VXLAN port is a tunnel whatever its flags
        assert outcome(b, 2) == (Verdict.LOCAL, Stage.ROUTE, Reason.LOCAL_DELIVERY)   # no I flag


# ------------------------------------------------------------------ the generator alone

def test_icmp_error_refuses_sources_that_are_not_unicast():
    b = Batch(3)
    for src in ("8.8.8.8", "0.0.0.0", "224.1.1.1"):
        b.append(raw(Ether(**MACS) / IP(src=src, dst="10.244.1.5") / UDP()))
    parse(b)
    assert [icmp.allowed(b, i) for i in range(3)] == [True, False, False]


def test_icmp_error_needs_headroom_in_front_of_the_packet():
    b = Batch(2)
    b.append(raw(Ether(**MACS) / IP(src="8.8.8.8", dst="10.244.1.5") / UDP()))
    b.append(raw(Ether(**MACS) / IP(src="8.8.8.8", dst="10.244.1.5") / UDP()))
    parse(b)
    meta = b.meta
    # pretend the first packet grew up to 10 bytes before the second
    meta["len"][0] = int(meta["off"][1]) - int(meta["off"][0]) - 10
    assert icmp.error(b, 1, 11, 0, 0, "192.168.0.11") == Reason.NO_HEADROOM
