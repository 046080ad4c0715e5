"""The encap stage and the fragment pass: IP-in-IP and VXLAN outer headers as Linux's
tunnel devices write them, Ethernet addresses from the neighbour table, IPv4
fragmentation; everything decoded and checksummed by scapy."""
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR, IPOption_Security
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import ARP, Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw, bind_layers, raw

from kdp._fast import encap, frag
from kdp._fast.neigh import Neighbours
from kdp._fast.packet import Batch
from kdp._fast.parse import parse
from kdp._fast.route import Encap, Route, RouteKind, RouteTable, placeholder_mac
from kdp.dataplane import Dataplane
from kdp.ports import HOST, UPLINK
from kdp.reasons import Reason, Stage, Verdict

from kdptest import assert_checksums

bind_layers(UDP, VXLAN, dport=8472)
POD_PORT = 7
NODE4, NODE6, PEER4, PEER6 = "192.168.0.11", "fd00::11", "192.168.0.12", "fd00::12"
UPLINK_MAC, GW_MAC, PEER_MAC = "02:00:00:00:01:01", "02:00:00:00:01:fe", "02:00:00:00:01:12"
MY_VTEP, PEER_VTEP = "66:00:00:00:00:11", "66:00:00:00:00:12"
POD_MAC = "0a:58:0a:f4:01:05"


def table(mode=Encap.ENCAP_IPIP, mtu=1480, v6_mode=Encap.ENCAP_VXLAN, peer_mac=None):
    return RouteTable([
        Route("0.0.0.0/0", RouteKind.RT_UPLINK, UPLINK, mtu=1500, src_mac=UPLINK_MAC, mac=GW_MAC),
        Route("::/0", RouteKind.RT_UPLINK, UPLINK, mtu=1500, src_mac=UPLINK_MAC, mac=GW_MAC),
        Route("192.168.0.0/24", RouteKind.RT_UPLINK, UPLINK, mtu=1500, src_mac=UPLINK_MAC, onlink=True),
        Route("10.244.1.5/32", RouteKind.RT_LOCAL_POD, POD_PORT, mtu=mtu, src_mac="ee:ee:ee:ee:ee:ee"),
        Route("10.244.2.0/24", RouteKind.RT_REMOTE_NODE, UPLINK, via=PEER4, encap=mode, mtu=mtu,
              src_mac=UPLINK_MAC, mac=peer_mac, vni=4096, vxlan_port=4789, vtep_mac=PEER_VTEP),
        Route("10.244.3.0/24", RouteKind.RT_REMOTE_NODE, UPLINK, via=PEER4, encap=Encap.ENCAP_VXLAN,
              mtu=1450, src_mac=UPLINK_MAC, vni=1, vxlan_port=8472, vtep_mac=PEER_VTEP),
        Route("fd00:244:2::/64", RouteKind.RT_REMOTE_NODE, UPLINK, via=PEER6, encap=v6_mode, mtu=1430,
              src_mac=UPLINK_MAC, vni=6096, vxlan_port=4790, vtep_mac=PEER_VTEP),
        Route(NODE4 + "/32", RouteKind.RT_HOST, HOST),
    ], node_addresses=[NODE4, NODE6], vtep_mac=MY_VTEP)


def run(t, *packets, in_port=UPLINK, neigh=None, extra=None):
    b = Batch(max(1, len(packets)))
    for p in packets:
        b.append(raw(p if isinstance(p, Ether) else Ether(src="02:aa:00:00:00:01", dst="02:bb:00:00:00:01") / p),
                 in_port=in_port, ts_ns=5)
    parse(b)
    if neigh is not None:
        neigh.learn_batch(b)
    t.classify(b)
    t.route(b, neigh)
    need = encap.encap(b, t, neigh)
    if need:
        assert extra is not None, "fragments expected"
        assert frag.fragment(b, t, extra, neigh) <= need
    return b


def outcome(b, i=0):
    m = b.meta[i]
    return Verdict(m["verdict"]), Stage(m["stage"]), Reason(m["reason"])


def mac(text):
    return bytes(int(x, 16) for x in text.split(":"))


# ------------------------------------------------------------------ IP-in-IP

def test_ipip_outer_header_is_linuxs_tunl0_header():
    inner = IP(src="10.244.1.5", dst="10.244.2.7", ttl=30, id=0x1234, flags="DF", tos=0x2A | 3) / \
        TCP(sport=4000, dport=80, flags="S")
    b = run(table(), inner, in_port=POD_PORT)
    assert outcome(b) == (Verdict.FORWARD, Stage.TX, Reason.FORWARDED_IPIP)
    out = Ether(b.packet(0))
    o = out[IP]
    assert (o.src, o.dst, o.proto, o.ttl, o.id) == (NODE4, PEER4, 4, 29, 0x1234)
    assert int(o.flags) == 2                     # DF copied from the inner packet
    assert o.tos == 0x02                         # DSCP 0; ECN CE (3) becomes ECT(0)
    carried = o.payload
    assert (carried.src, carried.dst, carried.ttl, carried[TCP].dport) == ("10.244.1.5", "10.244.2.7", 29, 80)
    assert (out.src, out.dst) == (UPLINK_MAC, placeholder_mac(PEER4).hex(":"))
    assert b.meta[0]["encap"] == 1 and b.meta[0]["tunnel"] == 1
    assert (b.meta[0]["src4"], b.meta[0]["dst4"]) == (int(ipaddress.ip_address(NODE4)), int(ipaddress.ip_address(PEER4)))
    assert_checksums(b.packet(0))


def test_ipip_without_df_and_ect1_copies_both_and_trims_ethernet_padding():
    inner = IP(src="10.244.1.5", dst="10.244.2.7", flags=0, tos=1) / UDP(sport=1, dport=2)
    padded = Ether(raw(Ether(src="02:aa:00:00:00:01", dst="02:bb:00:00:00:01") / inner) + b"\x00" * 18)
    b = run(table(), padded, in_port=POD_PORT)
    o = Ether(b.packet(0))[IP]
    assert int(o.flags) == 0 and o.tos == 1 and o.len == 20 + len(inner)
    assert len(b.packet(0)) == 14 + 20 + len(inner)


# ------------------------------------------------------------------ VXLAN

def test_vxlan_over_ipv4_as_linuxs_vxlan_device_writes_it():
    inner = IP(src="10.244.1.5", dst="10.244.2.7", ttl=30, tos=0xB8 | 2) / TCP(sport=4000, dport=80)
    b = run(table(Encap.ENCAP_VXLAN), inner, in_port=POD_PORT)
    assert outcome(b) == (Verdict.FORWARD, Stage.TX, Reason.FORWARDED_VXLAN)
    out = Ether(b.packet(0))
    o, u = out[IP], out[UDP]
    assert (o.src, o.dst, o.proto, o.ttl, int(o.flags), o.tos) == (NODE4, PEER4, 17, 64, 0, 2)
    assert u.dport == 4789 and 32768 <= u.sport <= 60998 and u.chksum == 0
    assert out[VXLAN].vni == 4096 and out[VXLAN].flags & 0x08
    ie = out[VXLAN].payload
    assert (ie.dst, ie.src, ie.type) == (PEER_VTEP, MY_VTEP, 0x0800)
    assert (ie[IP].dst, ie[IP].ttl, ie[TCP].dport) == ("10.244.2.7", 29, 80)
    assert b.meta[0]["encap"] == 2 and (b.meta[0]["sport"], b.meta[0]["dport"]) == (u.sport, 4789)
    assert_checksums(b.packet(0))


def test_vxlan_source_port_is_the_same_both_ways_and_spreads_flows():
    t = table(Encap.ENCAP_VXLAN)
    ports = set()
    for sport in range(40000, 40040):
        fwd = run(t, IP(src="10.244.1.5", dst="10.244.2.7") / TCP(sport=sport, dport=80), in_port=POD_PORT)
        ports.add(Ether(fwd.packet(0))[UDP].sport)
    assert len(ports) > 30
    # the reverse direction, tunnelled the same way, picks the same port (Linux's hash is symmetric)
    t2 = RouteTable([Route("10.244.1.0/24", RouteKind.RT_REMOTE_NODE, UPLINK, via=PEER4,
                           encap=Encap.ENCAP_VXLAN)], node_addresses=[NODE4])
    a = run(t, IP(src="10.244.1.5", dst="10.244.2.7") / TCP(sport=1111, dport=80), in_port=POD_PORT)
    r = run(t2, IP(src="10.244.2.7", dst="10.244.1.5") / TCP(sport=80, dport=1111), in_port=POD_PORT)
    assert Ether(a.packet(0))[UDP].sport == Ether(r.packet(0))[UDP].sport


def test_vxlan_source_port_maps_the_hash_as_udp_flow_src_port_does():
    # (hash ^ hash << 16) * (60999 - 32768) >> 32, + 32768
    for h in (0, 1, 0xFFFF, 0x12345678, 0xFFFFFFFF):
        x = (h ^ (h << 16)) & 0xFFFFFFFF
        assert encap.source_port(h) == ((x * (60999 - 32768)) >> 32) + 32768


def test_vxlan_on_flannels_port_with_its_vni():
    b = run(table(), IP(src="10.244.1.5", dst="10.244.3.9") / UDP(sport=5, dport=53), in_port=POD_PORT)
    out = Ether(b.packet(0))
    assert out[UDP].dport == 8472 and out[VXLAN].vni == 1
    assert_checksums(b.packet(0))


def test_ipv6_pod_traffic_goes_in_vxlan_over_ipv6_with_a_udp_checksum():
    inner = IPv6(src="fd00:244:1::5", dst="fd00:244:2::9", hlim=9, tc=0x03) / UDP(sport=9, dport=53) / Raw(b"q" * 30)
    b = run(table(), inner, in_port=POD_PORT)
    assert outcome(b) == (Verdict.FORWARD, Stage.TX, Reason.FORWARDED_VXLAN)
    out = Ether(b.packet(0))
    o = out[IPv6]
    assert (o.src, o.dst, o.nh, o.hlim, o.tc, o.fl) == (NODE6, PEER6, 17, 64, 2, 0)
    assert out[UDP].dport == 4790 and out[UDP].chksum != 0 and out[VXLAN].vni == 6096
    assert out[VXLAN].payload[IPv6].hlim == 8
    assert_checksums(b.packet(0))


def test_encapsulated_raw_ip_packet_stays_raw_ip():
    b = Batch(1)
    b.append(raw(IP(src="10.244.1.5", dst="10.244.2.7") / UDP()), linktype=101, in_port=POD_PORT)
    t = table()
    parse(b)
    t.classify(b)
    t.route(b)
    encap.encap(b, t)
    o = IP(b.packet(0))
    assert (o.proto, o.dst, o[IP].payload.dst) == (4, PEER4, "10.244.2.7")
    assert b.meta[0]["linktype"] == 101 and b.meta[0]["l3_off"] == 0


# ------------------------------------------------------------------ Ethernet addresses

def test_forwarded_frames_get_the_ports_mac_and_the_next_hops():
    t = table()
    b = run(t, IP(src="8.8.8.8", dst="10.244.1.5") / TCP(),              # to the pod
            IP(src="10.244.1.5", dst="1.1.1.1") / TCP(),                 # default route: the gateway
            IP(src="10.244.1.5", dst="192.168.0.77") / TCP())            # on-link: the destination's own
    pod, gw, onlink = (Ether(b.packet(i)) for i in range(3))
    assert (pod.src, pod.dst) == ("ee:ee:ee:ee:ee:ee", placeholder_mac("10.244.1.5").hex(":"))
    assert (gw.src, gw.dst) == (UPLINK_MAC, GW_MAC)
    assert (onlink.src, onlink.dst) == (UPLINK_MAC, placeholder_mac("192.168.0.77").hex(":"))


def test_learned_neighbours_are_used_and_configured_ones_win():
    n = Neighbours()
    arp_pod = Ether(src=POD_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=POD_MAC, psrc="10.244.1.5", pdst="169.254.1.1")
    arp_gw = Ether(src="02:99:99:99:99:99") / ARP(op=2, hwsrc="02:99:99:99:99:99", psrc="192.168.0.12", pdst=NODE4)
    b = run(table(peer_mac=PEER_MAC), arp_pod, arp_gw, IP(src="8.8.8.8", dst="10.244.1.5") / TCP(),
            IP(src="10.244.1.5", dst="10.244.2.7") / TCP(), neigh=n)
    assert outcome(b, 0) == (Verdict.LOCAL, Stage.PARSE, Reason.ARP)
    assert n.get("10.244.1.5") == mac(POD_MAC) and n.get("192.168.0.12") == mac("02:99:99:99:99:99")
    assert Ether(b.packet(2)).dst == POD_MAC
    assert Ether(b.packet(3)).dst == PEER_MAC            # configured beats learned


def test_neighbour_discovery_teaches_ipv6_neighbours():
    from scapy.layers.inet6 import ICMPv6ND_NA, ICMPv6ND_NS, ICMPv6NDOptDstLLAddr, ICMPv6NDOptSrcLLAddr
    n = Neighbours()
    ns = Ether(src="02:00:00:00:06:01") / IPv6(src="fd00::21", dst="ff02::1:ff00:11") / \
        ICMPv6ND_NS(tgt=NODE6) / ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:06:01")
    na = Ether(src="02:00:00:00:06:02") / IPv6(src="fd00::22", dst=NODE6) / \
        ICMPv6ND_NA(tgt="fd00::22") / ICMPv6NDOptDstLLAddr(lladdr="02:00:00:00:06:02")
    dad = Ether() / IPv6(src="::", dst="ff02::1:ff00:23") / ICMPv6ND_NS(tgt="fd00::23") / \
        ICMPv6NDOptSrcLLAddr(lladdr="02:00:00:00:06:03")
    run(table(), ns, na, dad, neigh=n)
    assert n.entries() == {"fd00::21": mac("02:00:00:00:06:01"), "fd00::22": mac("02:00:00:00:06:02")}


# ------------------------------------------------------------------ fragmentation

def fragments_of(b, extra, i=0):
    return [b.packet(i)] + [extra.packet(k) for k in range(len(extra))]


def test_packet_without_df_over_the_mtu_is_fragmented_and_reassembles():
    payload = bytes(range(256)) * 8
    sent = IP(src="8.8.8.8", dst="10.244.1.5", flags=0, id=4242, ttl=9) / UDP(sport=7, dport=9) / Raw(payload)
    extra = Batch(8)
    b = run(table(mtu=600), sent, extra=extra)
    assert outcome(b) == (Verdict.FORWARD, Stage.TX, Reason.FORWARDED_FRAGMENTED)
    frames = fragments_of(b, extra)
    pieces = [Ether(f)[IP] for f in frames]
    assert all(p.len <= 600 for p in pieces) and all(p.id == 4242 and p.ttl == 8 for p in pieces)
    assert [int(p.flags) for p in pieces] == [1] * (len(pieces) - 1) + [0]
    data = b"".join(raw(p.payload) for p in sorted(pieces, key=lambda p: p.frag))
    assert data == raw(sent[UDP])
    assert [p.frag * 8 for p in pieces] == [sum(len(raw(q.payload)) for q in pieces[:k]) for k in range(len(pieces))]
    for f in frames:
        assert Ether(f).dst == placeholder_mac("10.244.1.5").hex(":")
        assert_checksums(f)
    assert extra.meta["verdict"][0] == Verdict.FORWARD and extra.meta["out_port"][0] == POD_PORT


def test_later_fragments_carry_only_the_copied_options():
    sent = IP(src="8.8.8.8", dst="10.244.1.5", flags=0,
              options=[IPOption_RR(routers=["1.1.1.1"]), IPOption_Security(length=11)]) / UDP() / Raw(b"o" * 700)
    extra = Batch(4)
    b = run(table(mtu=500), sent, extra=extra)
    first, later = Ether(b.packet(0))[IP], Ether(extra.packet(0))[IP]
    assert [o.option for o in first.options if o.option] == [7, 2]
    assert [o.option for o in later.options if o.option] == [2]          # security is copied, RR is not
    assert later.ihl * 4 == 20 + 12
    assert_checksums(b.packet(0))
    assert_checksums(extra.packet(0))


def test_fragments_of_a_tunnelled_packet_are_each_encapsulated():
    sent = IP(src="10.244.1.5", dst="10.244.2.7", flags=0) / UDP() / Raw(b"t" * 3000)
    extra = Batch(4)
    b = run(table(mtu=1480), sent, in_port=POD_PORT, extra=extra)
    frames = fragments_of(b, extra)
    assert len(frames) == 3
    for f in frames:
        o = Ether(f)[IP]
        assert o.proto == 4 and o.dst == PEER4 and o.len <= 1500
        assert_checksums(f)
    assert b.meta[0]["reason"] == Reason.FORWARDED_FRAGMENTED and b.meta[0]["encap"] == 1


@settings(max_examples=60, deadline=None)
@given(size=st.integers(600, 8800), mtu=st.integers(576, 1500), mf=st.booleans(),
       off=st.integers(0, 50))
def test_fragmentation_covers_the_payload_exactly_for_any_size_and_mtu(size, mtu, mf, off):
    sent = IP(src="8.8.8.8", dst="10.244.1.5", flags="MF" if mf else 0, frag=off, proto=253) / Raw(b"\xab" * size)
    extra = Batch(32)
    b = run(table(mtu=mtu), sent, extra=extra)
    pieces = [Ether(f)[IP] for f in fragments_of(b, extra)]
    assert all(p.len <= mtu for p in pieces)
    assert all(len(raw(p.payload)) % 8 == 0 for p in pieces[:-1])
    covered = sorted((p.frag * 8, p.frag * 8 + len(raw(p.payload))) for p in pieces)
    assert covered[0][0] == off * 8 and covered[-1][1] == off * 8 + size
    assert all(a[1] == b_[0] for a, b_ in zip(covered, covered[1:]))
    assert int(pieces[-1].flags) == (1 if mf else 0) and all(int(p.flags) == 1 for p in pieces[:-1])


def test_answer_larger_than_the_mtu_is_dropped():
    # an echo request that fits the uplink, its reply towards a pod route with a smaller MTU
    t = RouteTable([Route("10.244.1.5/32", RouteKind.RT_LOCAL_POD, POD_PORT, mtu=576),
                    Route(NODE4 + "/32", RouteKind.RT_HOST, HOST)], node_addresses=[NODE4])
    b = run(t, IP(src="10.244.1.5", dst=NODE4, flags=0) / ICMP(type=8) / Raw(b"p" * 1000), in_port=POD_PORT)
    assert outcome(b) == (Verdict.DROP, Stage.ENCAP, Reason.MTU_EXCEEDED)


def test_a_packet_is_addressed_with_what_packets_before_it_taught_not_later_ones():
    # the pod's ARP comes between two packets to it in one batch: the first still goes to
    # the placeholder (Linux would have had no entry yet), the second to the learned MAC
    arp_pod = Ether(src=POD_MAC, dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, hwsrc=POD_MAC, psrc="10.244.1.5", pdst="169.254.1.1")
    to_pod = IP(src="8.8.8.8", dst="10.244.1.5") / TCP()
    dp = Dataplane()
    dp.pipeline.swap(table())
    b = Batch(4)
    for p in (to_pod, arp_pod, to_pod):
        b.append(raw(p if isinstance(p, Ether) else Ether(src="02:aa:00:00:00:01", dst="02:bb:00:00:00:01") / p),
                 in_port=UPLINK, ts_ns=5)
    dp.process(b)
    assert Ether(b.packet(0)).dst == placeholder_mac("10.244.1.5").hex(":")
    assert Ether(b.packet(2)).dst == POD_MAC


@pytest.mark.parametrize("batch_size", [1, 3, 16])
def test_replay_output_does_not_depend_on_the_batch_size(tmp_path, batch_size):
    from kdp.replay import replay
    root = Path(__file__).resolve().parents[1]
    args = dict(cluster=[root / "pcaps" / "sample-cluster"], node="node-1")
    replay(root / "pcaps" / "sample.pcap", tmp_path / "a.pcap", **args, batch_size=256)
    replay(root / "pcaps" / "sample.pcap", tmp_path / "b.pcap", **args, batch_size=batch_size)
    assert (tmp_path / "a.pcap").read_bytes() == (tmp_path / "b.pcap").read_bytes()


OUTER_FIELDS = ("linktype", "l3_off", "l4_off", "inner_off", "quote_off", "ethertype", "vlan", "ip_ver",
                "proto", "ttl", "tcp_flags", "icmp_type", "icmp_code", "icmp_id", "frag", "tunnel",
                "sport", "dport", "src4", "dst4", "src6", "dst6")


@pytest.mark.parametrize("mode, inner", [
    (Encap.ENCAP_IPIP, IP(src="10.244.1.5", dst="10.244.2.7", ttl=30) / TCP(sport=4000, dport=80, flags="S")),
    (Encap.ENCAP_IPIP, IP(src="10.244.1.5", dst="10.244.2.7") / ICMP(type=8, id=77)),
    (Encap.ENCAP_VXLAN, IP(src="10.244.1.5", dst="10.244.2.7") / UDP(sport=5353, dport=53)),
    (Encap.ENCAP_VXLAN, IP(src="10.244.1.5", dst="10.244.2.7", flags=0) / TCP(sport=4000, dport=80, flags="PA")),
])
def test_the_metadata_of_an_encapsulated_packet_are_what_the_parser_reads_from_it(mode, inner):
    # the contract of the encap stage (module docstring): after it, the metadata describe
    # the packet as transmitted, as the parser would set them
    b = run(table(mode), inner, in_port=POD_PORT)
    assert b.meta[0]["encap"] != 0
    again = Batch(1)
    again.append(b.packet(0))
    parse(again, 4789)
    got, want = b.meta[0], again.meta[0]
    assert {f: got[f].tolist() for f in OUTER_FIELDS} == {f: want[f].tolist() for f in OUTER_FIELDS}
    assert got["frag_id"] == want["frag_id"] and got["len"] == want["len"]


# ------------------------------------------------------------------ every byte, every mode

def _ecn_out(tos):
    ecn = tos & 3
    return 2 if ecn == 3 else ecn


def _forwarded(inner):
    """The inner packet as kdp forwards it: TTL / hop limit one less, checksum redone."""
    pkt = inner.__class__(raw(inner))
    if isinstance(pkt, IPv6):
        pkt.hlim -= 1
    else:
        pkt.ttl -= 1
        del pkt.chksum
    return pkt.__class__(raw(pkt))


def _expected(mode, inner, sport, peer_mac):
    """The transmitted frame built by scapy from the tunnel's definition (module docstring
    of kdp/_fast/encap.pyx), all lengths and checksums computed by scapy."""
    fwd = _forwarded(inner)
    eth = Ether(src=UPLINK_MAC, dst=peer_mac)
    if isinstance(inner, IPv6):
        assert mode == Encap.ENCAP_VXLAN
        return raw(Ether(src=UPLINK_MAC, dst=placeholder_mac(PEER6).hex(":")) /
                   IPv6(src=NODE6, dst=PEER6, hlim=64, tc=_ecn_out(inner.tc), fl=0) /
                   UDP(sport=sport, dport=4790) / VXLAN(vni=6096, flags=0x08) /
                   Ether(src=MY_VTEP, dst=PEER_VTEP, type=0x86DD) / fwd)
    if mode == Encap.ENCAP_IPIP:
        return raw(eth / IP(src=NODE4, dst=PEER4, proto=4, ttl=fwd.ttl, id=fwd.id,
                            flags=int(fwd.flags) & 2, tos=_ecn_out(fwd.tos)) / fwd)
    return raw(eth / IP(src=NODE4, dst=PEER4, proto=17, ttl=64, id=fwd.id, flags=0, tos=_ecn_out(fwd.tos)) /
               UDP(sport=sport, dport=4789, chksum=0) / VXLAN(vni=4096, flags=0x08) /
               Ether(src=MY_VTEP, dst=PEER_VTEP, type=0x0800) / fwd)


INNERS = [
    IP(src="10.244.1.5", dst="10.244.2.7", ttl=30, id=0x1234, flags="DF", tos=0x2B) / TCP(sport=4000, dport=80, flags="S"),
    IP(src="10.244.1.5", dst="10.244.2.7", ttl=2, id=0, flags=0, tos=0x01) / UDP(sport=5353, dport=53) / Raw(b"x" * 900),
    IP(src="10.244.1.5", dst="10.244.2.200", ttl=255, id=0xFFFF, flags="DF", tos=0xFE) / ICMP(type=8, id=77) / Raw(b"p" * 19),
    IP(src="10.244.1.5", dst="10.244.2.7", ttl=64, id=0x8001, flags=0, tos=0x03) / TCP(sport=65535, dport=1, flags="PA") / Raw(b"d" * 1),
    IP(src="10.244.1.5", dst="10.244.2.7", ihl=6, options=[IPOption_RR()]) / UDP(sport=1, dport=2),
]


@pytest.mark.parametrize("learned", [False, True])
@pytest.mark.parametrize("mode", [Encap.ENCAP_IPIP, Encap.ENCAP_VXLAN])
@pytest.mark.parametrize("k", range(len(INNERS)))
def test_every_encapsulated_byte_is_scapys_build_of_the_same_tunnel_packet(mode, k, learned):
    # the outer headers (template copy and patches, in the short IPv4 paths and the
    # general one) against scapy's own build: every byte, lengths and checksums included;
    # then the metadata against what the parser reads from the result
    inner = INNERS[k]
    n = Neighbours() if learned else None
    packets = [inner]
    if learned:     # the remote node answers ARP first: its MAC replaces the placeholder
        packets.insert(0, Ether(src=PEER_MAC) / ARP(op=2, hwsrc=PEER_MAC, psrc=PEER4, pdst=NODE4))
    b = run(table(mode), *packets, in_port=POD_PORT, neigh=n)
    i = len(packets) - 1
    want_reason = Reason.FORWARDED_IPIP if mode == Encap.ENCAP_IPIP else Reason.FORWARDED_VXLAN
    assert outcome(b, i) == (Verdict.FORWARD, Stage.TX, want_reason)
    got = b.packet(i)
    sport = Ether(got)[UDP].sport if mode == Encap.ENCAP_VXLAN else 0
    peer_mac = PEER_MAC if learned else placeholder_mac(PEER4).hex(":")
    assert got == _expected(mode, inner, sport, peer_mac)
    assert_checksums(got)
    again = Batch(1)
    again.append(got)
    parse(again, 4789)
    m, want = b.meta[i], again.meta[0]
    assert {f: m[f].tolist() for f in OUTER_FIELDS} == {f: want[f].tolist() for f in OUTER_FIELDS}
    assert (m["frag_id"], m["len"], m["wire_len"], m["encap"]) == \
        (want["frag_id"], want["len"], want["wire_len"], want["tunnel"])


@pytest.mark.parametrize("tc", [0x00, 0x01, 0xB3])
def test_ipv6_in_vxlan_over_ipv6_every_byte_is_scapys_build(tc):
    inner = IPv6(src="fd00:244:1::5", dst="fd00:244:2::9", hlim=9, tc=tc) / TCP(sport=9, dport=53) / Raw(b"q" * 31)
    b = run(table(), inner, in_port=POD_PORT)
    got = b.packet(0)
    assert got == _expected(Encap.ENCAP_VXLAN, inner, Ether(got)[UDP].sport, None)
    assert_checksums(got)


@pytest.mark.parametrize("mode", [Encap.ENCAP_IPIP, Encap.ENCAP_VXLAN])
def test_a_vlan_tagged_or_padded_frame_is_encapsulated_as_scapy_builds_it(mode):
    # the general path (tagged frame: no short path) and the padding trim of the short one
    from scapy.layers.l2 import Dot1Q
    inner = IP(src="10.244.1.5", dst="10.244.2.7", ttl=7, tos=3, flags=0, id=9) / UDP(sport=3, dport=4)
    tagged = Ether(src="02:aa:00:00:00:01", dst="02:bb:00:00:00:01") / Dot1Q(vlan=5) / inner
    padded = Ether(raw(Ether(src="02:aa:00:00:00:01", dst="02:bb:00:00:00:01") / inner) + b"\x00" * 20)
    b = run(table(mode), tagged, padded, in_port=POD_PORT)
    for i in range(2):
        got = b.packet(i)
        sport = Ether(got)[UDP].sport if mode == Encap.ENCAP_VXLAN else 0
        assert got == _expected(mode, inner, sport, placeholder_mac(PEER4).hex(":"))
        assert_checksums(got)
