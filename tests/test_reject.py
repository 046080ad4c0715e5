"""Reject: the ICMP port-unreachable reply kube-proxy sends, checked with scapy."""
from scapy.all import ICMP, IP, TCP, UDP, Ether, ICMPv6DestUnreach, IPv6, IPerror, raw

from kdp._fast.packet import Batch
from kdp._fast.parse import parse
from kdp._fast.reject import reject
from kdp.reasons import Reason, Stage, Verdict


def rejected(pkt, in_port=4):
    b = Batch(2)
    b.append(raw(pkt), in_port=in_port)
    parse(b)
    reject(b, 0, Stage.SERVICE, Reason.SVC_NO_ENDPOINTS)
    return b


def test_tcp_syn_to_a_service_without_endpoints_gets_icmp_port_unreachable():
    syn = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="10.244.1.5", dst="10.96.0.20") / TCP(sport=40000, dport=80, flags="S")
    b = rejected(syn)
    m = b.meta[0]
    assert (m["verdict"], m["stage"], m["reason"]) == (Verdict.REJECT, Stage.SERVICE, Reason.SVC_NO_ENDPOINTS)
    assert m["out_port"] == 4
    reply = Ether(b.packet(0))
    assert reply.dst == "02:00:00:00:00:01" and reply.src == "02:00:00:00:00:02"
    assert (reply[IP].src, reply[IP].dst) == ("10.96.0.20", "10.244.1.5")
    assert (reply[ICMP].type, reply[ICMP].code) == (3, 3)
    assert raw(reply[IPerror])[: len(raw(syn[IP]))] == raw(syn[IP])
    # checksums equal scapy's recomputation
    again = Ether(raw(reply))
    del again[IP].chksum, again[ICMP].chksum
    again = Ether(raw(again))
    assert again[IP].chksum == reply[IP].chksum and again[ICMP].chksum == reply[ICMP].chksum


def test_large_udp_datagram_is_quoted_only_up_to_the_minimum_mtu():
    big = Ether() / IP(src="1.2.3.4", dst="10.96.0.30") / UDP(sport=5, dport=53) / (b"x" * 1400)
    reply = Ether(rejected(big).packet(0))
    assert reply[IP].len == 576
    assert (reply[ICMP].type, reply[ICMP].code) == (3, 3)


def test_ipv6_reject_is_icmpv6_port_unreachable_with_valid_checksum():
    pkt = Ether() / IPv6(src="fd00::5", dst="fd00:96::20") / UDP(sport=5353, dport=53) / b"q"
    b = rejected(pkt)
    reply = Ether(b.packet(0))
    assert (reply[IPv6].src, reply[IPv6].dst) == ("fd00:96::20", "fd00::5")
    unreach = reply[ICMPv6DestUnreach]
    assert (unreach.type, unreach.code) == (1, 4)
    again = Ether(raw(reply))
    del again[ICMPv6DestUnreach].cksum
    assert Ether(raw(again))[ICMPv6DestUnreach].cksum == unreach.cksum
    assert b.meta[0]["proto"] == 58
