"""Property tests of the parse stage against scapy's dissection of the same bytes.

Random well-formed packets (Ethernet with stacked VLAN tags, every link type,
IPv4 with options and fragments, IPv6 with extension chains, TCP/UDP/SCTP,
ICMP/ICMPv6 echo and errors, IP-in-IP, VXLAN) are built with scapy; the
expected metadata is read off scapy's dissection of the bytes, never off the
values the generator chose.
"""
import ipaddress
import struct

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, TCPerror, UDPerror, ICMPerror
from scapy.layers.inet6 import (
    IPv6, IPerror6, ICMPv6DestUnreach, ICMPv6PacketTooBig, ICMPv6TimeExceeded,
    ICMPv6ParamProblem, ICMPv6EchoRequest, ICMPv6EchoReply,
    IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.sctp import SCTP, SCTPerror
from scapy.layers.vxlan import VXLAN
from scapy.layers.inet import IPOption_NOP, IPOption_RR
from scapy.packet import Raw, bind_layers

from kdp._fast import packet, parse
from kdp.reasons import Verdict

# 0x9100 (old QinQ) is not bound in scapy by default
bind_layers(Ether, Dot1Q, type=0x9100)
bind_layers(Dot1Q, Dot1Q, type=0x9100)
bind_layers(Dot1AD, Dot1Q, type=0x9100)
bind_layers(Dot1Q, Dot1AD, type=0x88A8)
bind_layers(Dot1AD, Dot1AD, type=0x88A8)

M64 = (1 << 64) - 1
NO_PORT = packet.NO_PORT_ID
LINKTYPES = [0, 1, 101, 108, 113, 228, 229, 276]
IPV4_ONLY_LT = 228
IPV6_ONLY_LT = 229


# ------------------------------------------------------------- hash reference

def _mix(x):
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & M64
    x ^= x >> 33
    return x


def reference_hash(ip_ver, proto, src, dst, sport, dport):
    """Plain-Python flow hash: src/dst are ints (IPv4) or 16-byte strings (IPv6)."""
    k = (ip_ver << 48) | (proto << 32) | (sport << 16) | dport
    h = _mix(k ^ 0x9E3779B97F4A7C15)
    if ip_ver == 4:
        return _mix(h ^ ((src << 32) | dst))
    s0, s1 = struct.unpack(">QQ", src)
    d0, d1 = struct.unpack(">QQ", dst)
    return _mix(h ^ _mix((s0 + 0x243F6A8885A308D3) & M64)
                ^ (_mix((s1 + 0x13198A2E03707344) & M64) * 3 & M64)
                ^ (_mix((d0 + 0xA4093822299F31D0) & M64) * 5 & M64)
                ^ (_mix((d1 + 0x082EFA98EC4E6C89) & M64) * 7 & M64))


# ------------------------------------------------------------- reference dissection

V6_EXT = (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, AH)
UPPER_BY_NUMBER = {6: TCP, 17: UDP, 132: SCTP}
QUOTED_BY_NUMBER = {6: TCPerror, 17: UDPerror, 132: SCTPerror}
ICMP4_ERRORS = {3, 4, 5, 11, 12}
ICMP6_ERRORS = {1, 2, 3, 4}


def _ip4(a):
    return int(ipaddress.IPv4Address(a))


def _ip6(a):
    return ipaddress.IPv6Address(a).packed


def _offset(frame, layer):
    return len(frame) - len(bytes(layer))


def _walk_ext(layer):
    """Follow scapy's IPv6 extension layers: (upper layer, proto, frag, frag_id)."""
    frag, frag_id, proto = 0, 0, None
    while isinstance(layer, V6_EXT):
        proto = layer.nh
        if isinstance(layer, IPv6ExtHdrFragment):
            frag_id = layer.id
            if layer.offset:
                return None, proto, 2, frag_id
            frag = 1 if layer.m else 0
        if isinstance(layer, AH):
            # scapy leaves AH's payload undissected
            layer = UPPER_BY_NUMBER[layer.nh](bytes(layer.payload))
            break
        layer = layer.payload
    return layer, proto, frag, frag_id


def expected(frame, linktype, vxlan_port=4789):
    """Every parse field, from scapy's dissection of `frame`."""
    e = dict(l3_off=0, l4_off=0, inner_off=0, quote_off=0, ethertype=0, vlan=NO_PORT,
             ip_ver=0, proto=0, ttl=0, tcp_flags=0, icmp_type=0, icmp_code=0, icmp_id=0,
             frag=0, tunnel=0, sport=0, dport=0, frag_id=0, src4=0, dst4=0,
             src6=bytes(16), dst6=bytes(16), q_proto=0, q_sport=0, q_dport=0,
             q_src4=0, q_dst4=0, q_src6=bytes(16), q_dst6=bytes(16))
    if linktype == 1:
        layer = Ether(frame)
        et = layer.type
        layer = layer.payload
        while isinstance(layer, (Dot1Q, Dot1AD)):
            if e["vlan"] == NO_PORT:
                e["vlan"] = layer.vlan
            et = layer.type
            layer = layer.payload
    else:
        if linktype in (0, 108):
            (af,) = struct.unpack(">I", frame[:4])
            if linktype == 0 and af not in (2, 10, 24, 28, 30):
                (af,) = struct.unpack("<I", frame[:4])
            et = 0x0800 if af == 2 else 0x86DD
            rest = frame[4:]
        elif linktype == 113:
            et = CookedLinux(frame).proto
            rest = frame[16:]
        elif linktype == 276:
            et = CookedLinuxV2(frame).proto
            rest = frame[20:]
        else:
            et = {4: 0x0800, 6: 0x86DD}[frame[0] >> 4]
            rest = frame
        layer = (IP if et == 0x0800 else IPv6)(rest)
    e["ethertype"] = et
    e["l3_off"] = _offset(frame, layer)
    if isinstance(layer, IP):
        e.update(ip_ver=4, ttl=layer.ttl, proto=layer.proto, src4=_ip4(layer.src),
                 dst4=_ip4(layer.dst), frag_id=layer.id)
        if layer.frag:
            e["frag"] = 2
        elif layer.flags.MF:
            e["frag"] = 1
        l4 = layer.payload if not layer.frag else None
        if isinstance(l4, AH):
            l4, _, _, _ = _walk_ext(l4)
    else:
        e.update(ip_ver=6, ttl=layer.hlim, src6=_ip6(layer.src), dst6=_ip6(layer.dst),
                 proto=layer.nh)
        l4, proto, frag, frag_id = _walk_ext(layer.payload)
        if proto is not None:
            e.update(proto=proto, frag=frag, frag_id=frag_id)
    if l4 is not None:
        e["l4_off"] = _offset(frame, l4)
        _expected_l4(e, frame, l4, vxlan_port)
    src = e["src4"] if e["ip_ver"] == 4 else e["src6"]
    dst = e["dst4"] if e["ip_ver"] == 4 else e["dst6"]
    e["hash"] = reference_hash(e["ip_ver"], e["proto"], src, dst, e["sport"], e["dport"])
    return e


def _expected_l4(e, frame, l4, vxlan_port):
    if isinstance(l4, (TCP, UDP, SCTP)):
        e["sport"], e["dport"] = l4.sport, l4.dport
    if isinstance(l4, TCP):
        e["tcp_flags"] = int(l4.flags) & 0xFF
    if isinstance(l4, UDP) and l4.dport == vxlan_port and e["frag"] == 0:
        # scapy binds UDP payloads by source port first (sport 161 dissects as SNMP),
        # so the inner frame's place comes from the headers' fixed sizes
        e["tunnel"] = 2
        e["inner_off"] = e["l4_off"] + 8 + 8        # UDP header, VXLAN header
    if isinstance(l4, (IP, IPv6)) and e["frag"] == 0:
        e["tunnel"] = 1
        e["inner_off"] = _offset(frame, l4)
    if isinstance(l4, ICMP) or (e["ip_ver"] == 6 and e["proto"] == 58):
        # (some scapy ICMPv6 classes have no `code` field, short ND messages stay Raw)
        e["icmp_type"], e["icmp_code"] = bytes(l4)[0], bytes(l4)[1]
        if isinstance(l4, (ICMP, ICMPv6EchoRequest, ICMPv6EchoReply)) and l4.type in (0, 8, 128, 129):
            e["icmp_id"] = e["sport"] = e["dport"] = l4.id
        errors = ICMP4_ERRORS if e["ip_ver"] == 4 else ICMP6_ERRORS
        if e["icmp_type"] in errors:
            q = l4.payload
            e["quote_off"] = _offset(frame, q)
            if isinstance(q, IPerror):
                e.update(q_proto=q.proto, q_src4=_ip4(q.src), q_dst4=_ip4(q.dst))
                ql = q.payload if not q.frag else None
            else:
                assert isinstance(q, IPerror6)
                e.update(q_proto=q.nh, q_src6=_ip6(q.src), q_dst6=_ip6(q.dst))
                ql, proto, _, _ = _walk_ext(q.payload)
                if proto is not None:
                    e["q_proto"] = proto
            if isinstance(ql, Raw) and e["q_proto"] in QUOTED_BY_NUMBER:
                # scapy leaves a quote shorter than a full header as Raw (and cannot
                # dissect a partial header: pad it; the ports are in the first 4 bytes)
                ql = QUOTED_BY_NUMBER[e["q_proto"]](bytes(ql) + bytes(20))
            if isinstance(ql, (TCPerror, UDPerror, SCTPerror, TCP, UDP, SCTP)):
                e["q_sport"], e["q_dport"] = ql.sport, ql.dport
            elif isinstance(ql, ICMPerror) and ql.type in (0, 8):
                e["q_sport"] = e["q_dport"] = ql.id
            elif isinstance(ql, (ICMPv6EchoRequest, ICMPv6EchoReply)):
                e["q_sport"] = e["q_dport"] = ql.id


# ------------------------------------------------------------- generators

ports = st.integers(0, 65535)
ip4s = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ip6s = st.binary(min_size=16, max_size=16).map(lambda b: str(ipaddress.IPv6Address(b)))
payloads = st.binary(max_size=48)
ECHO_ID = st.integers(0, 65535)


@st.composite
def ipv4_header(draw):
    opts = draw(st.lists(st.one_of(
        st.just(IPOption_NOP()),
        st.lists(ip4s, min_size=1, max_size=2).map(lambda r: IPOption_RR(routers=r)),
    ), max_size=3))
    return IP(src=draw(ip4s), dst=draw(ip4s), ttl=draw(st.integers(0, 255)),
              id=draw(st.integers(0, 65535)), options=opts)


@st.composite
def ipv6_header(draw, fragment_ok=True):
    base = IPv6(src=draw(ip6s), dst=draw(ip6s), hlim=draw(st.integers(0, 255)))
    chain = []
    for kind in draw(st.lists(st.sampled_from(["hbh", "rt", "dst", "frag", "ah"]), max_size=4)):
        if kind == "hbh":
            chain.append(IPv6ExtHdrHopByHop())
        elif kind == "rt":
            chain.append(IPv6ExtHdrRouting(addresses=draw(st.lists(ip6s, max_size=2))))
        elif kind == "dst":
            chain.append(IPv6ExtHdrDestOpt())
        elif kind == "frag" and fragment_ok and not any(isinstance(c, IPv6ExtHdrFragment) for c in chain):
            chain.append(IPv6ExtHdrFragment(id=draw(st.integers(0, 2**32 - 1)),
                                            m=draw(st.integers(0, 1))))
        elif kind == "ah":
            chain.append("ah")
    return base, chain


def _ah(nh):
    return AH(nh=nh, payloadlen=4, spi=7, icv=b"\x11" * 12)


def _stack_v6(base, chain, upper, upper_nh):
    pkt = base
    for i, c in enumerate(chain):
        if c == "ah":
            # scapy does not chain AH's next header by itself, and does not
            # dissect past it: only put it last, before TCP/UDP/SCTP
            if i != len(chain) - 1 or upper_nh not in UPPER_BY_NUMBER:
                continue
            c = _ah(upper_nh)
        pkt = pkt / c
    return pkt / upper


@st.composite
def quoted(draw, ver):
    """An ICMP error's quote: an IP header and >= 8 bytes of what followed."""
    kind = draw(st.sampled_from(["tcp", "udp", "sctp", "echo", "later"]))
    if ver == 4:
        ip = IP(src=draw(ip4s), dst=draw(ip4s), proto=6)
    else:
        ip = IPv6(src=draw(ip6s), dst=draw(ip6s))
    if kind == "tcp":
        inner = ip / TCP(sport=draw(ports), dport=draw(ports))
    elif kind == "udp":
        inner = ip / UDP(sport=draw(ports), dport=draw(ports))
    elif kind == "sctp":
        inner = ip / SCTP(sport=draw(ports), dport=draw(ports))
    elif kind == "echo":
        inner = ip / (ICMP(type=8, id=draw(ECHO_ID)) if ver == 4 else ICMPv6EchoRequest(id=draw(ECHO_ID)))
    else:
        if ver == 4:
            inner = IP(src=ip.src, dst=ip.dst, proto=17, frag=draw(st.integers(1, 100))) / Raw(b"x" * 8)
        else:
            inner = ip / IPv6ExtHdrFragment(offset=draw(st.integers(1, 100)), nh=17) / Raw(b"x" * 8)
    raw = bytes(inner)
    hdr_len = len(raw) - len(bytes(inner.lastlayer())) if kind != "later" else len(raw) - 8
    cut = draw(st.integers(hdr_len + 8, len(raw)))
    return raw[:cut]


@st.composite
def l4_layer(draw, ver):
    """(layer, protocol number) for the upper layer of a packet of version ver."""
    kind = draw(st.sampled_from(["tcp", "udp", "sctp", "echo", "icmp_other", "icmp_err",
                                 "ipip", "vxlan"]))
    pay = Raw(draw(payloads))
    if kind == "tcp":
        opts = draw(st.sampled_from([[], [("MSS", 1460)], [("NOP", None), ("WScale", 7)],
                                     [("SAckOK", b""), ("Timestamp", (1, 2))]]))
        return TCP(sport=draw(ports), dport=draw(ports), flags=draw(st.integers(0, 255)),
                   options=opts) / pay, 6
    if kind == "udp":
        return UDP(sport=draw(ports), dport=draw(ports.filter(lambda p: p != 4789))) / pay, 17
    if kind == "sctp":
        return SCTP(sport=draw(ports), dport=draw(ports)) / pay, 132
    if kind == "echo":
        t = draw(st.sampled_from([0, 8] if ver == 4 else [128, 129]))
        if ver == 4:
            return ICMP(type=t, id=draw(ECHO_ID)) / pay, 1
        cls = ICMPv6EchoRequest if t == 128 else ICMPv6EchoReply
        return cls(id=draw(ECHO_ID)) / pay, 58
    if kind == "icmp_other":
        if ver == 4:
            return ICMP(type=draw(st.sampled_from([9, 10, 13, 14]))) / pay, 1
        return ICMPv6EchoRequest(type=draw(st.sampled_from([133, 135, 143]))) / pay, 58
    if kind == "icmp_err":
        q = Raw(draw(quoted(ver)))
        if ver == 4:
            return ICMP(type=draw(st.sampled_from(sorted(ICMP4_ERRORS))), code=draw(st.integers(0, 15))) / q, 1
        cls = draw(st.sampled_from([ICMPv6DestUnreach, ICMPv6PacketTooBig, ICMPv6TimeExceeded,
                                    ICMPv6ParamProblem]))
        return cls(code=draw(st.integers(0, 6))) / q, 58
    if kind == "ipip":
        if draw(st.booleans()):
            return IP(src=draw(ip4s), dst=draw(ip4s)) / UDP(sport=draw(ports), dport=53) / pay, 4
        return IPv6(src=draw(ip6s), dst=draw(ip6s)) / TCP(sport=draw(ports)) / pay, 41
    inner = Ether() / IP(src=draw(ip4s), dst=draw(ip4s)) / UDP(dport=draw(ports)) / pay
    return UDP(sport=draw(ports), dport=4789) / VXLAN(vni=draw(st.integers(0, 2**24 - 1))) / inner, 17


@st.composite
def ip_packet(draw, ver):
    later = draw(st.integers(0, 9)) == 0
    if ver == 4:
        ip = draw(ipv4_header())
        if later:
            ip.frag = draw(st.integers(1, 8191))
            ip.flags = draw(st.sampled_from([0, 1]))
            ip.proto = draw(st.sampled_from([6, 17, 1, 4]))
            return ip / Raw(draw(payloads))
        upper, _ = draw(l4_layer(4))
        if draw(st.integers(0, 5)) == 0:
            ip.flags = "MF"
        return ip / upper
    base, chain = draw(ipv6_header())
    if later:
        return base / IPv6ExtHdrFragment(offset=draw(st.integers(1, 8191)), nh=17,
                                         id=draw(st.integers(0, 2**32 - 1))) / Raw(draw(payloads))
    upper, nh = draw(l4_layer(6))
    return _stack_v6(base, chain, upper, nh)


@st.composite
def frame(draw):
    lt = draw(st.sampled_from(LINKTYPES))
    ver = 4 if lt == IPV4_ONLY_LT else 6 if lt == IPV6_ONLY_LT else draw(st.sampled_from([4, 6]))
    ip = bytes(draw(ip_packet(ver)))
    et = 0x0800 if ver == 4 else 0x86DD
    if lt == 1:
        tags = draw(st.lists(st.tuples(st.sampled_from([0x8100, 0x88A8, 0x9100]),
                                       st.integers(0, 4095)), max_size=3))
        hdr = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        pkt = hdr
        types = [t for t, _ in tags] + [et]
        pkt.type = types[0]
        for k, (_, vid) in enumerate(tags):
            pkt = pkt / Dot1Q(vlan=vid, type=types[k + 1])
        head = bytes(pkt)
        trailer = draw(st.binary(max_size=8))      # Ethernet padding / FCS-like junk
        return lt, head + ip + trailer
    if lt == 0:
        af = 2 if ver == 4 else draw(st.sampled_from([10, 24, 28, 30]))
        return lt, struct.pack(draw(st.sampled_from(["<I", ">I"])), af) + ip
    if lt == 108:
        af = 2 if ver == 4 else draw(st.sampled_from([24, 28, 30]))
        return lt, struct.pack(">I", af) + ip
    if lt == 113:
        return lt, bytes(CookedLinux(proto=et)) + ip
    if lt == 276:
        return lt, bytes(CookedLinuxV2(proto=et)) + ip
    return lt, ip


FIELDS = ["l3_off", "l4_off", "inner_off", "quote_off", "ethertype", "vlan", "ip_ver",
          "proto", "ttl", "tcp_flags", "icmp_type", "icmp_code", "icmp_id", "frag",
          "tunnel", "sport", "dport", "frag_id", "src4", "dst4", "q_proto", "q_sport",
          "q_dport", "q_src4", "q_dst4", "hash"]
ADDR16 = ["src6", "dst6", "q_src6", "q_dst6"]


def check_against_scapy(b, i, lt, data):
    rec = b.meta[i]
    want = expected(data, lt)
    assert rec["verdict"] == Verdict.PENDING, (rec["verdict"], rec["reason"])
    got = {f: int(rec[f]) for f in FIELDS}
    got.update({f: bytes(rec[f]) for f in ADDR16})
    assert got == want


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame())
def test_well_formed_packets_parse_as_scapy_dissects_them(f):
    lt, data = f
    b = packet.Batch(2)
    b.append(data, linktype=lt)
    parse.parse(b)
    check_against_scapy(b, 0, lt, data)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame(), min_size=2, max_size=12), st.data())
def test_batch_of_mixed_packets_each_parses_as_alone(frames, data):
    """A malformed neighbour (truncated or corrupted copy) leaves the others intact."""
    b = packet.Batch(len(frames) * 2)
    idx = []
    for lt, raw in frames:
        idx.append((b.append(raw, linktype=lt), lt, raw))
        bad = bytearray(raw[: data.draw(st.integers(0, len(raw)))])
        if bad:
            k = data.draw(st.integers(0, len(bad) - 1))
            bad[k] ^= data.draw(st.integers(1, 255))
        b.append(bytes(bad), linktype=lt)
    parse.parse(b)
    for i, lt, raw in idx:
        check_against_scapy(b, i, lt, raw)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame(), st.data())
def test_capture_cut_after_headers_parses_like_the_whole_packet(f, data):
    """A snaplen cut below the wire length is not a malformation by itself."""
    lt, raw = f
    b = packet.Batch(2)
    b.append(raw, linktype=lt)
    parse.parse(b)
    rec = b.meta[0]
    # the headers the parser reads end at the quote's ports, the inner tunnel
    # header, or the L4 header; keep everything up to 64 bytes past l4_off
    keep = min(len(raw), max(int(rec["l4_off"]), int(rec["l3_off"])) + 64)
    cut = packet.Batch(2)
    cut.append(raw[:keep], linktype=lt, wire_len=len(raw))
    parse.parse(cut)
    assert cut.meta[0]["verdict"] == Verdict.PENDING
    for f_ in FIELDS + ADDR16:
        assert np.array_equal(cut.meta[0][f_], rec[f_]), f_


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(frame(), min_size=1, max_size=6))
def test_hash_is_a_pure_function_of_the_tuple(frames):
    b = packet.Batch(len(frames))
    for lt, raw in frames:
        b.append(raw, linktype=lt)
    parse.parse(b)
    for i in range(len(b)):
        assert parse.hash_of(b, i) == int(b.meta[i]["hash"])
