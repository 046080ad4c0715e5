"""TCP super-frames (GSO) and partial checksums, as a TAP with offloads hands them to kdp
attach: the checksum kdp completes is scapy's; a super-frame is checked against the MTU
by its segments, crosses a plain route whole, and is cut into segments before a tunnel
exactly as the kernel's TSO would cut it (scapy decodes and checksums every segment,
and the payloads put back together are the original)."""
import struct

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw, raw

from kdp._fast import encap, segment
from kdp._fast.packet import Batch
from kdp._fast.parse import parse
from kdp._fast.tapio import complete_checksum
from kdp.ports import UPLINK
from kdp.reasons import Reason, Verdict

from kdptest import assert_checksums
from test_encap import POD_PORT, table

ETH = Ether(src="0a:58:0a:f4:01:05", dst="ee:ee:ee:ee:ee:ee")


def _fold(total):
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def _sum16(data):
    data = data + b"\0" * (len(data) % 2)
    return sum(struct.unpack(f"!{len(data) // 2}H", data))


def partial(frame_pkt):
    """The frame as a kernel with checksum offload hands it over: the L4 checksum field
    holding the pseudo-header sum only (not inverted), and the vnet header saying where."""
    pkt = Ether(raw(frame_pkt))
    ip = pkt[IP] if IP in pkt else pkt[IPv6]
    l4 = ip.payload
    l4_len = len(raw(l4))
    if isinstance(ip, IP):
        pseudo = _sum16(raw(ip)[12:20]) + ip.proto + l4_len
    else:
        pseudo = _sum16(raw(ip)[8:40]) + ip.nh + l4_len
    where = 16 if isinstance(l4, TCP) else 6
    start = len(raw(pkt)) - len(raw(ip)) + (len(raw(ip)) - len(raw(l4)))
    data = bytearray(raw(pkt))
    struct.pack_into("!H", data, start + where, _fold(pseudo))
    header = struct.pack("<BBHHHHH", 1, 0, 0, 0, start, where, 0)
    return bytes(data), header


@settings(max_examples=200)
@given(size=st.integers(0, 3000), v6=st.booleans(), tcp=st.booleans(), options=st.integers(0, 3))
def test_a_completed_partial_checksum_is_scapys(size, v6, tcp, options):
    payload = bytes((i * 7 + size) & 0xFF for i in range(size))
    l4 = TCP(sport=40000, dport=8080, flags="PA", options=[("NOP", None)] * options) if tcp else \
        UDP(sport=40000, dport=53)
    ip = IPv6(src="fd00::5", dst="fd00::9") if v6 else IP(src="10.244.1.5", dst="10.96.0.10")
    whole = ETH / ip / l4 / Raw(payload)
    frame, header = partial(whole)
    assert frame != raw(whole) or _fold(0) == 0
    assert complete_checksum(frame, header) == raw(Ether(raw(whole)))


def test_a_checksum_offset_past_the_frame_is_refused():
    frame, header = partial(ETH / IP(src="10.244.1.5", dst="10.96.0.10") / UDP() / Raw(b"x"))
    bad = header[:6] + struct.pack("<H", len(frame)) + header[8:]
    assert complete_checksum(frame, bad) is None


def super_frame(dst, size, mss, flags="PA", v6=False, seq=1000):
    """A TCP super-frame as the kernel's TSO path hands it to a TAP: headers of one
    segment, the whole payload, the checksum field holding the pseudo-header sum."""
    payload = bytes((i * 13 + 5) & 0xFF for i in range(size))
    ip = IPv6(src="fd00:244:1::5", dst=dst, hlim=64) if v6 else \
        IP(src="10.244.1.5", dst=dst, id=100, flags="DF", ttl=64)
    pkt = ETH / ip / TCP(sport=40000, dport=8080, seq=seq, ack=77, flags=flags, window=500) / Raw(payload)
    frame, _header = partial(pkt)
    return frame, payload


def run_gso(frame, mss, in_port=POD_PORT, extra_capacity=64):
    t = table()
    b = Batch(16)
    b.append(frame, in_port=in_port, ts_ns=5, gso_size=mss)
    parse(b)
    t.classify(b)
    t.route(b)
    need = encap.encap(b, t)
    extra = Batch(max(1, extra_capacity))
    made = segment.segment(b, t, extra) if need else 0
    assert made == need
    return b, extra


def segments(b, extra):
    return [b.packet(0)] + [extra.packet(i) for i in range(len(extra))]


def test_a_super_frame_for_a_tunnel_is_cut_as_the_kernels_tso_cuts_it():
    frame, payload = super_frame("10.244.2.7", 10000, 1440, flags="FPA")
    b, extra = run_gso(frame, 1440)
    assert Reason(b.meta[0]["reason"]) == Reason.FORWARDED_SEGMENTED
    segs = [Ether(s) for s in segments(b, extra)]
    assert len(segs) == 7                              # ceil(10000 / 1440)
    got = b""
    for k, seg in enumerate(segs):
        assert seg[IP].proto == 4 and seg[IP].dst == "192.168.0.12"   # IP-in-IP to the peer node
        inner = seg[IP].payload
        assert isinstance(inner, IP) and inner.id == 100 + k and inner.flags == "DF" and inner.ttl == 63
        assert inner.len <= 1480 and len(raw(seg)) - 14 <= 1500
        assert inner[TCP].seq == 1000 + k * 1440 and inner[TCP].ack == 77
        last = k == len(segs) - 1
        assert str(inner[TCP].flags) == ("FPA" if last else "A")
        assert_checksums(raw(seg))
        got += bytes(inner[TCP].payload)
    assert got == payload


def test_cwr_stays_on_the_first_segment_only():
    frame, _payload = super_frame("10.244.2.7", 4000, 1440, flags="CA")
    b, extra = run_gso(frame, 1440)
    flags = [str(Ether(s)[IP].payload[TCP].flags) for s in segments(b, extra)]
    assert flags == ["AC", "A", "A"]


def test_an_ipv6_super_frame_in_vxlan_is_cut_with_udp_checksums():
    frame, payload = super_frame("fd00:244:2::9", 5000, 1300, v6=True)
    b, extra = run_gso(frame, 1300)
    segs = [Ether(s) for s in segments(b, extra)]
    assert len(segs) == 4
    got = b""
    for k, seg in enumerate(segs):
        inner = seg[VXLAN].payload[IPv6]
        assert 40 + inner.plen <= 1430 and inner[TCP].seq == 1000 + k * 1300
        assert_checksums(raw(seg))
        got += bytes(inner[TCP].payload)
    assert got == payload


def test_a_super_frame_on_a_plain_route_leaves_whole():
    frame, _payload = super_frame("10.244.1.5", 20000, 1400)
    b, extra = run_gso(frame, 1400, in_port=UPLINK)
    m = b.meta[0]
    assert Verdict(m["verdict"]) == Verdict.FORWARD and Reason(m["reason"]) == Reason.FORWARDED
    assert int(m["gso_size"]) == 1400 and len(extra) == 0
    assert len(b.packet(0)) == len(frame)              # whole: the egress kernel segments it


def test_segments_over_the_mtu_get_fragmentation_needed_with_df():
    frame, _payload = super_frame("10.244.1.5", 20000, 1460)       # 1500-byte segments, route MTU 1480
    b, _extra = run_gso(frame, 1460, in_port=UPLINK)
    m = b.meta[0]
    assert Verdict(m["verdict"]) == Verdict.REJECT and Reason(m["reason"]) == Reason.MTU_EXCEEDED
    answer = Ether(b.packet(0))
    assert answer[ICMP].type == 3 and answer[ICMP].code == 4 and answer[ICMP].nexthopmtu == 1480


def test_a_super_frame_without_df_is_never_fragmented():
    pkt = ETH / IP(src="192.168.0.99", dst="10.244.1.5", id=1, flags=0) / TCP(flags="A") / Raw(bytes(8000))
    frame, _header = partial(pkt)
    b, extra = run_gso(frame, 1460, in_port=UPLINK)
    m = b.meta[0]
    assert Verdict(m["verdict"]) == Verdict.DROP and Reason(m["reason"]) == Reason.MTU_EXCEEDED
    assert len(extra) == 0


@settings(max_examples=60, deadline=None)
@given(size=st.integers(1, 30000), mss=st.integers(536, 1440), v6=st.booleans())
def test_segments_cover_the_payload_exactly_in_order(size, mss, v6):
    if v6:
        mss = min(mss, 1430 - 60)       # segments within the IPv6 route's MTU (larger: packet too big)
    frame, payload = super_frame("fd00:244:2::9" if v6 else "10.244.2.7", size, mss, v6=v6)
    b, extra = run_gso(frame, mss, extra_capacity=size // mss + 1)
    got, seqs = b"", []
    for seg in segments(b, extra):
        pkt = Ether(seg)
        inner = pkt[VXLAN].payload[IPv6] if v6 else pkt[IP].payload
        seqs.append(inner[TCP].seq)
        data = bytes(inner[TCP].payload)
        assert 0 < len(data) <= mss
        got += data
        assert_checksums(seg)
    assert got == payload and seqs == [1000 + k * mss for k in range(len(seqs))]
