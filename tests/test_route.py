"""The route stage: LPM on the destination, TTL, local delivery, ingress by source."""
from scapy.all import IP, IPv6, TCP, UDP, Ether, raw

from kdp._fast.packet import Batch
from kdp._fast.parse import parse
from kdp._fast.route import Route, RouteKind, RouteTable
from kdp.ports import HOST, UPLINK
from kdp.reasons import Reason, Stage, Verdict

POD_PORT = 7

TABLE = RouteTable([
    Route("0.0.0.0/0", RouteKind.RT_UPLINK, UPLINK),
    Route("::/0", RouteKind.RT_UPLINK, UPLINK),
    Route("10.244.1.0/24", RouteKind.RT_BLACKHOLE),
    Route("10.244.1.5/32", RouteKind.RT_LOCAL_POD, POD_PORT),
    Route("10.244.2.0/24", RouteKind.RT_REMOTE_NODE, UPLINK, via="192.168.0.12"),
    Route("192.168.0.11/32", RouteKind.RT_HOST, HOST),
    Route("fd00:1::5/128", RouteKind.RT_LOCAL_POD, POD_PORT),
])


def run(*packets, in_port=None):
    b = Batch(len(packets))
    for p in packets:
        b.append(raw(p), in_port=in_port)
    parse(b)
    TABLE.classify(b)
    TABLE.route(b)
    return b


def outcome(b, i=0):
    m = b.meta[i]
    return Verdict(m["verdict"]), Stage(m["stage"]), Reason(m["reason"]), int(m["out_port"])


def test_packet_to_local_pod_leaves_on_its_port_with_ttl_decremented_and_valid_checksum():
    b = run(Ether() / IP(src="8.8.8.8", dst="10.244.1.5", ttl=10) / TCP(dport=80))
    assert outcome(b) == (Verdict.FORWARD, Stage.TX, Reason.FORWARDED, POD_PORT)
    out = Ether(b.packet(0))
    assert out[IP].ttl == 9
    recomputed = IP(raw(out[IP]))
    del recomputed.chksum
    assert out[IP].chksum == IP(raw(recomputed))[IP].chksum


def test_unused_address_in_local_block_is_blackholed():
    b = run(Ether() / IP(src="8.8.8.8", dst="10.244.1.9") / UDP())
    assert outcome(b)[:3] == (Verdict.DROP, Stage.ROUTE, Reason.NO_ROUTE)


def test_remote_node_block_goes_out_the_uplink():
    b = run(Ether() / IP(src="10.244.1.5", dst="10.244.2.7") / UDP())
    assert outcome(b) == (Verdict.FORWARD, Stage.TX, Reason.FORWARDED, UPLINK)
    assert TABLE.routes[b.meta[0]["route_id"]].via.exploded == "192.168.0.12"


def test_node_address_is_local_delivery_without_ttl_change():
    b = run(Ether() / IP(src="8.8.8.8", dst="192.168.0.11", ttl=1) / TCP())
    assert outcome(b) == (Verdict.LOCAL, Stage.ROUTE, Reason.LOCAL_DELIVERY, HOST)
    assert Ether(b.packet(0))[IP].ttl == 1


def test_ttl_one_cannot_be_forwarded():
    b = run(Ether() / IP(src="8.8.8.8", dst="10.244.1.5", ttl=1) / TCP())
    assert outcome(b)[:3] == (Verdict.DROP, Stage.ROUTE, Reason.TTL_EXCEEDED)


def test_ipv6_hop_limit_is_decremented():
    b = run(Ether() / IPv6(src="2001:db8::1", dst="fd00:1::5", hlim=3) / UDP())
    assert outcome(b) == (Verdict.FORWARD, Stage.TX, Reason.FORWARDED, POD_PORT)
    assert Ether(b.packet(0))[IPv6].hlim == 2


def test_packets_from_the_host_are_not_aged():
    b = run(Ether() / IP(src="192.168.0.11", dst="10.244.1.5", ttl=1) / TCP(), in_port=HOST)
    assert outcome(b)[0] == Verdict.FORWARD
    assert Ether(b.packet(0))[IP].ttl == 1


def test_ingress_port_comes_from_a_local_pods_source_address():
    b = run(Ether() / IP(src="10.244.1.5", dst="8.8.8.8") / UDP(),
            Ether() / IP(src="10.244.1.9", dst="8.8.8.8") / UDP(),
            Ether() / IPv6(src="fd00:1::5", dst="2001:db8::1") / UDP(),
            Ether() / IP(src="1.2.3.4", dst="8.8.8.8") / UDP())
    assert list(b.meta["in_port"][:4]) == [POD_PORT, UPLINK, POD_PORT, UPLINK]


def test_given_ingress_port_is_kept():
    b = run(Ether() / IP(src="10.244.1.5", dst="8.8.8.8") / UDP(), in_port=3)
    assert b.meta[0]["in_port"] == 3


def test_lookup_returns_the_most_specific_route():
    assert TABLE.lookup("10.244.1.5").kind == RouteKind.RT_LOCAL_POD
    assert TABLE.lookup("10.244.1.6").kind == RouteKind.RT_BLACKHOLE
    assert TABLE.lookup("9.9.9.9").kind == RouteKind.RT_UPLINK
