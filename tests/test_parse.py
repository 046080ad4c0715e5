"""The parse stage: link layers, verdicts, and one test per malformation reason."""
import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import (
    ICMPv6DestUnreach, ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
)
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1Q, Ether
from scapy.layers.sctp import SCTP
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw

from kdp._fast import packet, parse
from kdp.reasons import Reason, Stage, Verdict

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
V4 = IP(src="10.0.0.1", dst="10.0.0.2")
V6 = IPv6(src="fd00::1", dst="fd00::2")


def run(*frames, vxlan_port=4789):
    """Parse frames given as bytes-like or (bytes, linktype[, wire_len]); returns the batch."""
    b = packet.Batch(max(1, len(frames)))
    for f in frames:
        if isinstance(f, tuple):
            data, lt, *rest = f
            b.append(bytes(data), linktype=lt, wire_len=rest[0] if rest else None)
        else:
            b.append(bytes(f))
    parse.parse(b, vxlan_port=vxlan_port)
    return b


def outcome(b, i=0):
    r = b.meta[i]
    return Verdict(int(r["verdict"])), Stage(int(r["stage"])), Reason(int(r["reason"]))


def dropped(reason):
    return (Verdict.DROP, Stage.PARSE, reason)


PENDING = (Verdict.PENDING, Stage.RX, Reason.FORWARDED)


def set_byte(data, i, v):
    data = bytearray(bytes(data))
    data[i] = v
    return bytes(data)


# ---------------------------------------------------------------- link layers

def test_ethernet_udp_is_left_pending_with_its_tuple():
    b = run(ETH / V4 / UDP(sport=1234, dport=53))
    r = b.meta[0]
    assert outcome(b) == PENDING
    assert (r["l3_off"], r["l4_off"], r["ethertype"], r["vlan"]) == (14, 34, 0x0800, packet.NO_PORT_ID)
    assert (r["sport"], r["dport"], r["proto"], r["ip_ver"]) == (1234, 53, 17, 4)


def test_outermost_vlan_id_is_kept_under_stacked_tags():
    f = Ether(type=0x88A8) / Dot1Q(vlan=100, type=0x8100) / Dot1Q(vlan=200, type=0x0800) / V4 / UDP()
    b = run(f)
    assert outcome(b) == PENDING
    assert (b.meta[0]["vlan"], b.meta[0]["ethertype"], b.meta[0]["l3_off"]) == (100, 0x0800, 22)


@pytest.mark.parametrize("af, order", [(2, "<I"), (2, ">I"), (10, "<I"), (24, ">I"), (28, "<I"), (30, "<I")])
def test_bsd_null_address_family_is_read_in_either_byte_order(af, order):
    ip = V4 / UDP() if af == 2 else V6 / UDP()
    b = run((struct.pack(order, af) + bytes(ip), 0))
    assert outcome(b) == PENDING
    assert b.meta[0]["ip_ver"] == (4 if af == 2 else 6) and b.meta[0]["l3_off"] == 4


def test_openbsd_loop_address_family_is_network_order():
    b = run((struct.pack(">I", 24) + bytes(V6 / UDP()), 108))
    assert outcome(b) == PENDING and b.meta[0]["ip_ver"] == 6


def test_raw_ip_link_type_takes_the_version_nibble():
    b = run((V4 / UDP(), 101), (V6 / UDP(), 101), (V4 / UDP(), 228), (V6 / UDP(), 229))
    assert [int(b.meta[i]["ip_ver"]) for i in range(4)] == [4, 6, 4, 6]
    assert all(b.meta[i]["l3_off"] == 0 for i in range(4))


def test_linux_cooked_headers_are_skipped():
    b = run((CookedLinux(proto=0x0800) / V4 / TCP(), 113), (CookedLinuxV2(proto=0x86DD) / V6 / TCP(), 276))
    assert outcome(b, 0) == PENDING and outcome(b, 1) == PENDING
    assert (b.meta[0]["l3_off"], b.meta[1]["l3_off"]) == (16, 20)


def test_unknown_link_type_is_dropped_as_unsupported():
    b = run((V4 / UDP(), 147))
    assert outcome(b) == dropped(Reason.UNSUPPORTED_LINKTYPE)


def test_packet_already_dropped_is_left_untouched():
    b = packet.Batch(2)
    b.append(bytes(ETH / V4 / UDP()))
    b.meta[0]["verdict"] = Verdict.DROP
    b.meta[0]["stage"] = Stage.RX
    b.meta[0]["reason"] = Reason.UNSUPPORTED_LINKTYPE
    before = b.meta[0].copy()
    parse.parse(b)
    assert b.meta[0] == before


def test_arp_goes_to_the_node_as_local():
    b = run(ETH / ARP(pdst="10.0.0.9"))
    assert outcome(b) == (Verdict.LOCAL, Stage.PARSE, Reason.ARP)
    assert b.meta[0]["ethertype"] == 0x0806 and b.meta[0]["l3_off"] == 14


def test_parsing_twice_gives_the_same_metadata():
    b = run(ETH / Dot1Q(vlan=7) / V6 / IPv6ExtHdrFragment(m=1) / UDP(dport=9))
    first = b.meta[0].copy()
    parse.parse(b)
    assert b.meta[0] == first


def test_vxlan_port_is_configurable_and_zero_disables_it():
    f = ETH / V4 / UDP(sport=1, dport=8472) / VXLAN(vni=5) / ETH / V4 / UDP()
    assert run(f, vxlan_port=8472).meta[0]["tunnel"] == 2
    assert run(f, vxlan_port=4789).meta[0]["tunnel"] == 0
    assert run(f, vxlan_port=0).meta[0]["tunnel"] == 0


def test_vxlan_port_out_of_range_is_an_error():
    with pytest.raises(ValueError):
        parse.parse(packet.Batch(1), vxlan_port=70000)


def test_fragmented_tunnel_is_not_recognised():
    b = run(ETH / IP(dst="10.0.0.2", flags="MF") / IP() / UDP())
    assert b.meta[0]["frag"] == 1 and b.meta[0]["tunnel"] == 0


def test_later_fragment_has_no_ports_and_no_l4_offset():
    b = run(ETH / IP(frag=100, proto=6, id=777) / Raw(b"\x01\x02\x03\x04" * 8))
    r = b.meta[0]
    assert outcome(b) == PENDING
    assert (r["frag"], r["frag_id"], r["sport"], r["dport"], r["l4_off"], r["proto"]) == (2, 777, 0, 0, 0, 6)


def test_first_fragment_udp_length_may_exceed_the_fragment():
    udp = bytearray(bytes(UDP(sport=5, dport=6) / Raw(b"x" * 16)))
    udp[4:6] = struct.pack(">H", 4000)
    b = run(ETH / IP(flags="MF", proto=17) / Raw(bytes(udp)))
    assert outcome(b) == PENDING and b.meta[0]["frag"] == 1 and b.meta[0]["dport"] == 6


def test_capture_cut_by_snaplen_is_not_a_malformation():
    full = bytes(ETH / V4 / TCP(sport=80, dport=81) / Raw(b"y" * 500))
    b = run((full[:80], 1, len(full)))
    assert outcome(b) == PENDING and b.meta[0]["dport"] == 81


def test_hash_ignores_link_layer_and_payload_but_not_direction():
    a = run(ETH / V4 / TCP(sport=1, dport=2) / Raw(b"a"),
            (bytes(V4 / TCP(sport=1, dport=2) / Raw(b"bb")), 228),
            ETH / IP(src="10.0.0.2", dst="10.0.0.1") / TCP(sport=2, dport=1))
    h = [int(a.meta[i]["hash"]) for i in range(3)]
    assert h[0] == h[1] and h[0] != h[2] and h[0] != 0


def test_echo_request_and_reply_share_the_identifier_as_ports():
    b = run(ETH / V4 / ICMP(type=8, id=4242), ETH / V6 / ICMPv6EchoRequest(id=99))
    assert (b.meta[0]["icmp_id"], b.meta[0]["sport"], b.meta[0]["dport"]) == (4242, 4242, 4242)
    assert (b.meta[1]["icmp_id"], b.meta[1]["sport"], b.meta[1]["dport"]) == (99, 99, 99)


def test_malformed_packet_does_not_disturb_its_neighbours():
    good = ETH / V4 / UDP(sport=7, dport=8)
    bad = set_byte(bytes(good), 14, 0x44)      # IHL 4
    b = run(good, bad, good)
    assert outcome(b, 1) == dropped(Reason.BAD_IPV4_IHL)
    for i in (0, 2):
        assert outcome(b, i) == PENDING and b.meta[i]["dport"] == 8


# ---------------------------------------------------------------- one test per malformation

@pytest.mark.parametrize("data, lt", [
    (bytes(13), 1), (bytes(15), 113), (bytes(19), 276), (bytes(3), 0), (bytes(3), 108), (b"", 101),
])
def test_frame_shorter_than_its_link_header_is_truncated_l2(data, lt):
    assert outcome(run((data, lt))) == dropped(Reason.TRUNCATED_L2)


def test_vlan_tag_cut_off_is_truncated_vlan():
    assert outcome(run(bytes(Ether(type=0x8100)) + b"\x00\x05")) == dropped(Reason.TRUNCATED_VLAN)


def test_non_ip_ethertype_is_unsupported():
    assert outcome(run(Ether(type=0x88CC) / Raw(b"x" * 40))) == dropped(Reason.UNSUPPORTED_ETHERTYPE)


def test_unknown_bsd_address_family_is_unsupported():
    assert outcome(run((struct.pack("<I", 7) + bytes(V4), 0))) == dropped(Reason.UNSUPPORTED_ETHERTYPE)


def test_arp_cut_before_its_addresses_is_truncated_arp():
    assert outcome(run(bytes(ETH / ARP())[:14 + 20])) == dropped(Reason.TRUNCATED_ARP)


def test_ipv4_shorter_than_twenty_bytes_is_truncated():
    assert outcome(run(bytes(ETH / V4)[:14 + 19])) == dropped(Reason.TRUNCATED_IPV4)


def test_ipv4_options_cut_by_the_capture_are_truncated():
    full = bytes(ETH / IP(options=[Raw(b"\x01" * 8)]) / UDP())
    assert outcome(run((full[:14 + 22], 1, len(full)))) == dropped(Reason.TRUNCATED_IPV4)


def test_ethertype_ipv4_carrying_version_six_is_bad_ip_version():
    f = bytes(Ether(type=0x0800)) + bytes(V6 / UDP())
    assert outcome(run(f)) == dropped(Reason.BAD_IP_VERSION)


@pytest.mark.parametrize("lt, data", [(101, set_byte(bytes(V4), 0, 0x55)), (229, bytes(V4 / Raw(b"x" * 40)))])
def test_raw_link_version_mismatch_is_bad_ip_version(lt, data):
    assert outcome(run((data, lt))) == dropped(Reason.BAD_IP_VERSION)


def test_ipv4_header_length_below_five_is_bad_ihl():
    assert outcome(run(ETH / IP(ihl=4) / UDP())) == dropped(Reason.BAD_IPV4_IHL)


def test_ipv4_total_length_beyond_the_wire_is_bad_total_length():
    assert outcome(run(ETH / IP(len=200) / UDP())) == dropped(Reason.BAD_IPV4_TOTAL_LENGTH)


def test_ipv4_total_length_below_the_header_is_bad_total_length():
    assert outcome(run(ETH / IP(options=[Raw(b"\x01" * 4)], len=20) / UDP())) == dropped(Reason.BAD_IPV4_TOTAL_LENGTH)


def test_ipv4_total_length_within_the_wire_length_of_a_cut_capture_is_fine():
    full = bytes(ETH / V4 / UDP() / Raw(b"z" * 100))
    assert outcome(run((full[:60], 1, len(full)))) == PENDING
    assert outcome(run((full[:60], 1, len(full) - 1))) == dropped(Reason.BAD_IPV4_TOTAL_LENGTH)


def test_ipv4_wrong_header_checksum_is_bad_checksum():
    assert outcome(run(ETH / IP(chksum=0x1234) / UDP())) == dropped(Reason.BAD_IPV4_CHECKSUM)


def test_ipv6_shorter_than_forty_bytes_is_truncated():
    assert outcome(run(bytes(ETH / V6)[:14 + 39])) == dropped(Reason.TRUNCATED_IPV6)


def test_ipv6_payload_length_beyond_the_wire_is_bad():
    assert outcome(run(ETH / IPv6(plen=100) / UDP())) == dropped(Reason.BAD_IPV6_PAYLOAD_LENGTH)


def test_ipv6_extension_header_past_the_payload_is_truncated():
    raw = bytearray(bytes(ETH / V6 / IPv6ExtHdrHopByHop() / UDP()))
    raw[14 + 41] = 3            # hop-by-hop claims 32 bytes, 16 remain
    assert outcome(run(bytes(raw))) == dropped(Reason.TRUNCATED_IPV6_EXT)


def test_ipv6_extension_header_cut_by_the_capture_is_truncated():
    full = bytes(ETH / V6 / IPv6ExtHdrDestOpt() / IPv6ExtHdrDestOpt() / UDP())
    assert outcome(run((full[:14 + 40 + 12], 1, len(full)))) == dropped(Reason.TRUNCATED_IPV6_EXT)


def test_ipv6_with_more_than_eight_extension_headers_is_too_many():
    def chain(n):
        p = V6
        for _ in range(n):
            p = p / IPv6ExtHdrDestOpt()
        return ETH / p / UDP(dport=5)
    assert outcome(run(chain(8))) == PENDING
    assert outcome(run(chain(9))) == dropped(Reason.TOO_MANY_IPV6_EXT)


def test_tcp_shorter_than_twenty_bytes_is_truncated():
    raw = bytes(ETH / V4 / TCP())[:-1]
    f = ETH / IP(proto=6) / Raw(raw[34:])
    assert outcome(run(f)) == dropped(Reason.TRUNCATED_TCP)


def test_tcp_options_cut_by_the_capture_are_truncated():
    full = bytes(ETH / V4 / TCP(options=[("MSS", 1460), ("SAckOK", b""), ("NOP", None)] * 3))
    assert outcome(run((full[:14 + 20 + 24], 1, len(full)))) == dropped(Reason.TRUNCATED_TCP)


def test_tcp_data_offset_below_five_is_bad():
    assert outcome(run(ETH / V4 / TCP(dataofs=4))) == dropped(Reason.BAD_TCP_DATA_OFFSET)


def test_tcp_data_offset_past_the_ip_payload_is_bad():
    assert outcome(run(ETH / V4 / TCP(dataofs=15))) == dropped(Reason.BAD_TCP_DATA_OFFSET)


def test_udp_shorter_than_eight_bytes_is_truncated():
    assert outcome(run(ETH / IP(proto=17) / Raw(b"\x00" * 7))) == dropped(Reason.TRUNCATED_UDP)


def test_udp_length_below_eight_is_bad():
    assert outcome(run(ETH / V4 / UDP(len=7))) == dropped(Reason.BAD_UDP_LENGTH)


def test_udp_length_past_the_ip_payload_is_bad():
    assert outcome(run(ETH / V4 / UDP(len=40) / Raw(b"x" * 4))) == dropped(Reason.BAD_UDP_LENGTH)
    assert outcome(run(ETH / V6 / UDP(len=40) / Raw(b"x" * 4))) == dropped(Reason.BAD_UDP_LENGTH)


def test_sctp_shorter_than_its_common_header_is_truncated():
    assert outcome(run(ETH / IP(proto=132) / Raw(bytes(SCTP())[:11]))) == dropped(Reason.TRUNCATED_SCTP)


@pytest.mark.parametrize("ip, proto", [(V4, 1), (V6, 58)])
def test_icmp_shorter_than_eight_bytes_is_truncated(ip, proto):
    p = ip.copy()
    if proto == 1:
        p.proto = 1
    else:
        p.nh = 58
    assert outcome(run(ETH / p / Raw(b"\x08\x00\x00\x00\x00\x01\x00"))) == dropped(Reason.TRUNCATED_ICMP)


def test_icmp_error_quoting_a_cut_ip_header_is_truncated_quote():
    quote = bytes(IP() / TCP())[:19]
    assert outcome(run(ETH / V4 / ICMP(type=3) / Raw(quote))) == dropped(Reason.TRUNCATED_ICMP_QUOTE)


def test_icmp_error_quoting_too_few_port_bytes_is_truncated_quote():
    quote = bytes(IP() / TCP())[:24]
    assert outcome(run(ETH / V4 / ICMP(type=11) / Raw(quote))) == dropped(Reason.TRUNCATED_ICMP_QUOTE)
    quote6 = bytes(IPv6() / UDP())[:44]
    assert outcome(run(ETH / V6 / ICMPv6DestUnreach() / Raw(quote6))) == dropped(Reason.TRUNCATED_ICMP_QUOTE)


def test_icmp_error_quote_total_length_is_not_checked():
    quote = bytes(IP(len=1400) / UDP(sport=3, dport=4))
    b = run(ETH / V4 / ICMP(type=3) / Raw(quote))
    assert outcome(b) == PENDING and (b.meta[0]["q_sport"], b.meta[0]["q_dport"]) == (3, 4)


def test_icmpv4_error_quoting_ipv6_is_bad_quote():
    assert outcome(run(ETH / V4 / ICMP(type=3) / V6 / UDP())) == dropped(Reason.BAD_ICMP_QUOTE)


def test_icmp_error_quoting_ihl_below_five_is_bad_quote():
    quote = set_byte(bytes(IP() / UDP()), 0, 0x44)
    assert outcome(run(ETH / V4 / ICMP(type=3) / Raw(quote))) == dropped(Reason.BAD_ICMP_QUOTE)


def test_ipip_with_cut_inner_header_is_truncated_tunnel():
    assert outcome(run(ETH / IP(proto=4) / Raw(bytes(IP())[:10]))) == dropped(Reason.TRUNCATED_TUNNEL)
    assert outcome(run(ETH / IPv6(nh=41) / Raw(bytes(IPv6())[:30]))) == dropped(Reason.TRUNCATED_TUNNEL)


def test_vxlan_cut_by_the_capture_before_its_inner_ethernet_is_truncated_tunnel():
    f = bytes(ETH / V4 / UDP(dport=4789) / Raw(bytes(VXLAN(vni=1)) + bytes(14)))
    assert outcome(run((f[:-1], 1, len(f)))) == dropped(Reason.TRUNCATED_TUNNEL)


def test_udp_to_the_vxlan_port_too_short_for_vxlan_is_plain_udp():
    # an application's datagram on port 4789 (found by a random hypothesis seed: an empty
    # one to a Service was dropped as a tunnel instead of being load-balanced)
    for payload in (b"", bytes(VXLAN(vni=1)) + bytes(13)):
        b = run(ETH / V4 / UDP(sport=4789, dport=4789) / Raw(payload))
        assert outcome(b) == PENDING and b.meta[0]["tunnel"] == 0
        assert (b.meta[0]["sport"], b.meta[0]["dport"]) == (4789, 4789)


# ---------------------------------------------------------------- parse_ip, field ownership

def test_parse_ip_at_an_inner_offset_yields_the_inner_tuple():
    inner = IP(src="10.1.1.1", dst="10.2.2.2") / TCP(sport=1111, dport=2222, flags="S")
    b = run(ETH / IP(src="192.168.0.1", dst="192.168.0.2", proto=4) / inner)
    assert b.meta[0]["tunnel"] == 1 and b.meta[0]["inner_off"] == 34
    assert parse.parse_ip_at(b, 0, 34) == Reason.FORWARDED
    r = b.meta[0]
    assert (r["l3_off"], r["l4_off"], r["tunnel"], r["inner_off"]) == (34, 54, 0, 0)
    assert (r["src4"], r["dst4"], r["sport"], r["dport"], r["tcp_flags"]) == (
        0x0A010101, 0x0A020202, 1111, 2222, 0x02)
    assert r["ethertype"] == 0x0800          # link-layer fields are kept
    alone = run(ETH / inner)
    assert r["hash"] == alone.meta[0]["hash"]


def test_parse_ip_at_reports_the_reason_without_a_verdict():
    b = run(ETH / IP(proto=4) / Raw(bytes(IP(ihl=4) / UDP())))
    assert parse.parse_ip_at(b, 0, 34, 4) == Reason.BAD_IPV4_IHL
    assert outcome(b) == PENDING
    assert parse.parse_ip_at(b, 0, 34, 6) == Reason.TRUNCATED_IPV6


def test_parse_sets_only_parse_fields():
    b = packet.Batch(1)
    b.append(bytes(ETH / V4 / UDP()), ts_ns=99, in_port=3)
    keep = {"ts_ns": 99, "in_port": 3, "out_port": 5, "ct_state": 2, "trace": 1,
            "flow_id": 7, "svc_port": 8, "route_id": 9}
    for k, v in keep.items():
        b.meta[0][k] = v
    parse.parse(b)
    assert outcome(b) == PENDING
    assert {k: int(b.meta[0][k]) for k in keep} == keep
