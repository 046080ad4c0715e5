"""NAT: translations applied both ways, checksums equal to scapy's full recomputation.

Every translated packet is parsed back with scapy; its checksums are compared
with the ones scapy computes after the checksum fields are deleted. Replies
must come back as the exact inverse of what the client sent.
"""
import ipaddress

import numpy as np

import pytest
from hypothesis import given, settings, strategies as st, assume
from scapy.all import (
    Ether, IP, IPv6, TCP, UDP, SCTP, ICMP, ICMPv6EchoRequest, ICMPv6EchoReply,
    ICMPv6PacketTooBig, ICMPv6DestUnreach, ICMPv6TimeExceeded, SCTPChunkData, Raw, raw,
)

from kdp._fast.conntrack import Conntrack, NO_FLOW
from kdp.reasons import CtState, Reason, Stage, Verdict

from kdptest import DNAT, SNAT, SNAT_PORT, S, eth, run, state_of, tcp

CSUM_FIELDS = [(IP, "chksum"), (TCP, "chksum"), (UDP, "chksum"), (SCTP, "chksum"), (ICMP, "chksum"),
               (ICMPv6EchoRequest, "cksum"), (ICMPv6EchoReply, "cksum")]


def assert_checksums_match_scapy(frame):
    """Every checksum in frame equals scapy's recomputation (a zero UDP/IPv4 checksum stays zero)."""
    got = Ether(frame)
    ref = Ether(frame)
    zero_udp = UDP in got and IP in got and got[UDP].chksum == 0
    for layer, field in CSUM_FIELDS:
        if layer in ref and not (layer is UDP and zero_udp):
            setattr(ref[layer], field, None)
    ref = Ether(raw(ref))
    checked = 0
    for layer, field in CSUM_FIELDS:
        if layer in got and not (layer is UDP and zero_udp):
            assert getattr(got[layer], field) == getattr(ref[layer], field), f"{layer.__name__} checksum"
            checked += 1
    assert checked >= 1


def l3(pkt):
    return pkt[IP] if IP in pkt else pkt[IPv6]


def tuple_of(pkt):
    """(src, dst, sport, dport) of a packet as scapy reads it; echo: (src, dst, id, id).
    Addresses in canonical text form."""
    ip = l3(pkt)
    src, dst = str(ipaddress.ip_address(ip.src)), str(ipaddress.ip_address(ip.dst))
    for layer in (TCP, UDP, SCTP):
        if layer in pkt:
            return (src, dst, pkt[layer].sport, pkt[layer].dport)
    for layer in (ICMP, ICMPv6EchoRequest, ICMPv6EchoReply):
        if layer in pkt:
            return (src, dst, pkt[layer].id, pkt[layer].id)
    raise AssertionError("no L4")


def build(ver, proto, src, dst, sport, dport, payload=b"", reply=False, zero_udp=False):
    ipl = IP(src=src, dst=dst) if ver == 4 else IPv6(src=src, dst=dst)
    if proto == "tcp":
        l4 = TCP(sport=sport, dport=dport, flags="SA" if reply else "S", seq=1000, ack=7 if reply else 0)
    elif proto == "udp":
        l4 = UDP(sport=sport, dport=dport)
        if zero_udp:
            l4.chksum = 0
    elif proto == "sctp":
        # payload as a DATA chunk: scapy checksums chunks, not trailing bytes
        return eth() / ipl / SCTP(sport=sport, dport=dport) / SCTPChunkData(data=payload or b"x")
    elif ver == 4:
        l4 = ICMP(type=0 if reply else 8, id=sport, seq=3)
    else:
        l4 = ICMPv6EchoReply(id=sport, seq=3) if reply else ICMPv6EchoRequest(id=sport, seq=3)
    return eth() / ipl / l4 / Raw(payload)


def addr(ver, n):
    return str(ipaddress.IPv4Address(n & 0xFFFFFFFF)) if ver == 4 else str(ipaddress.IPv6Address(n))


# ---------------------------------------------------------------- property

@settings(max_examples=150, deadline=None)
@given(
    ver=st.sampled_from([4, 6]),
    proto=st.sampled_from(["tcp", "udp", "sctp", "echo"]),
    hosts=st.lists(st.integers(1, 2 ** 128 - 1), min_size=4, max_size=4, unique=True),
    cport=st.integers(1, 65535), vport=st.integers(1, 65535), bport=st.integers(0, 65535),
    do_dnat=st.booleans(), do_snat=st.booleans(), snat_port=st.booleans(),
    lo=st.integers(1, 65535), span=st.integers(0, 300),
    payload=st.binary(max_size=40), zero_udp=st.booleans(),
)
def test_translate_then_reply_restores_the_original_tuple_and_checksums_are_exact(
        ver, proto, hosts, cport, vport, bport, do_dnat, do_snat, snat_port, lo, span, payload, zero_udp):
    client, vip, backend, node = (addr(ver, h) for h in hosts)
    assume(len({client, vip, backend, node}) == 4)
    hi = min(65535, lo + span)
    flags = (DNAT if do_dnat else 0) | (SNAT if do_snat else 0) | (SNAT_PORT if snat_port else 0)
    spec = {"flags": flags, "dnat": backend, "dnat_port": bport, "snat": node, "snat_ports": (lo, hi)}
    zero = zero_udp and ver == 4 and proto == "udp"
    ct = Conntrack(64)
    out = run(ct, [build(ver, proto, client, vip, cport, vport, payload, zero_udp=zero)], spec=spec, now_ns=S)
    assert out.meta[0]["verdict"] == Verdict.PENDING
    fwd = Ether(out.packet(0))
    assert_checksums_match_scapy(out.packet(0))
    if zero:
        assert fwd[UDP].chksum == 0
    s, d, sp, dp = tuple_of(fwd)
    assert d == (backend if do_dnat else vip)
    assert s == (node if do_snat else client)
    if proto == "echo":
        assert (sp == cport) if not snat_port else (lo <= sp <= hi)
    else:
        assert dp == (bport if do_dnat and bport else vport)
        assert (sp == cport) if not snat_port else (lo <= sp <= hi)
    # the meta tuple is the translated one (routing sees the post-NAT destination)
    m = out.meta[0]
    if ver == 4:
        assert (str(ipaddress.IPv4Address(int(m["src4"]))), str(ipaddress.IPv4Address(int(m["dst4"])))) == (s, d)
    else:
        assert str(ipaddress.IPv6Address(bytes(m["dst6"]))) == str(ipaddress.IPv6Address(d))
    if proto != "echo":
        assert (int(m["sport"]), int(m["dport"])) == (sp, dp)
    # the reply, as the far end sends it
    back = run(ct, [build(ver, proto, d, s, dp, sp, payload[::-1], reply=True, zero_udp=zero)], now_ns=2 * S)
    assert state_of(back) == CtState.REPLY and back.meta[0]["verdict"] == Verdict.PENDING
    assert_checksums_match_scapy(back.packet(0))
    rs, rd, rsp, rdp = tuple_of(Ether(back.packet(0)))
    if proto == "echo":
        assert (rs, rd, rsp) == (vip, client, cport)
    else:
        assert (rs, rd, rsp, rdp) == (vip, client, vport, cport)


# ---------------------------------------------------------------- specific cases

def test_udp_to_the_vxlan_port_is_translated_like_any_udp():
    # found with a random seed: the stage helper parsed UDP to 4789 as VXLAN (and
    # dropped it as an unknown tunnel peer); conntrack and NAT see plain UDP
    ct = Conntrack(64)
    spec = {"flags": DNAT, "dnat": "10.244.0.9", "dnat_port": 4789}
    out = run(ct, [build(4, "udp", "10.0.0.1", "10.96.0.1", 4789, 4789)], spec=spec, now_ns=S)
    fwd = Ether(out.packet(0))
    assert (fwd[IP].dst, fwd[UDP].dport) == ("10.244.0.9", 4789)
    assert_checksums_match_scapy(out.packet(0))


def test_zero_udp_checksum_over_ipv4_stays_zero():
    ct = Conntrack(16)
    p = eth() / IP(src="10.0.0.1", dst="10.96.0.10") / UDP(sport=5, dport=53, chksum=0) / Raw(b"q")
    b = run(ct, [p], spec={"flags": DNAT | SNAT, "dnat": "10.244.0.2", "snat": "192.168.0.1"})
    out = Ether(b.packet(0))
    assert out[UDP].chksum == 0 and out[IP].dst == "10.244.0.2"
    assert_checksums_match_scapy(b.packet(0))


def test_sctp_crc32c_is_recomputed_after_port_translation():
    ct = Conntrack(16)
    p = eth() / IP(src="10.0.0.1", dst="10.96.0.10") / SCTP(sport=5000, dport=36412) / Raw(b"\x01" * 20)
    b = run(ct, [p], spec={"flags": DNAT, "dnat": "10.244.0.2", "dnat_port": 38412})
    out = Ether(b.packet(0))
    assert out[SCTP].dport == 38412
    ref = out.copy()
    ref[SCTP].chksum = None
    assert Ether(raw(ref))[SCTP].chksum == out[SCTP].chksum != p[SCTP].chksum


def test_invalid_packet_of_a_translated_flow_is_still_translated():
    """kubernetes#74839: an out-of-state packet must not leak with the backend's address."""
    ct = Conntrack(16)
    spec = {"flags": DNAT, "dnat": "10.244.0.2", "dnat_port": 8080}
    run(ct, [tcp("10.0.0.1", "10.96.0.10", 4000, 80, "S")], spec=spec)
    run(ct, [tcp("10.244.0.2", "10.0.0.1", 8080, 4000, "SA")])
    run(ct, [tcp("10.0.0.1", "10.96.0.10", 4000, 80, "A")])
    # a SYN from the backend on an established connection fits no state
    b = run(ct, [tcp("10.244.0.2", "10.0.0.1", 8080, 4000, "S")])
    assert state_of(b) == CtState.INVALID and b.meta[0]["verdict"] == Verdict.PENDING
    out = Ether(b.packet(0))
    assert (out[IP].src, out[TCP].sport) == ("10.96.0.10", 80)
    assert_checksums_match_scapy(b.packet(0))


def test_reply_tuple_collision_is_resolved_by_a_new_source_port():
    """Two services DNAT one client's port to one backend: the second flow's source port moves."""
    ct = Conntrack(16, port_range=(20000, 20010))
    b1 = run(ct, [eth() / IP(src="10.0.0.1", dst="10.96.0.1") / UDP(sport=1000, dport=53)],
             spec={"flags": DNAT, "dnat": "10.244.0.2", "dnat_port": 5353})
    b2 = run(ct, [eth() / IP(src="10.0.0.1", dst="10.96.0.2") / UDP(sport=1000, dport=53)],
             spec={"flags": DNAT, "dnat": "10.244.0.2", "dnat_port": 5353})
    o1, o2 = Ether(b1.packet(0)), Ether(b2.packet(0))
    assert o1[UDP].sport == 1000 and 20000 <= o2[UDP].sport <= 20010
    assert ct.counters()["port_remaps"] == 1
    for o, vip in ((o1, "10.96.0.1"), (o2, "10.96.0.2")):
        r = run(ct, [eth() / IP(src="10.244.0.2", dst="10.0.0.1") / UDP(sport=5353, dport=o[UDP].sport)])
        back = Ether(r.packet(0))
        assert (back[IP].src, back[UDP].sport, back[UDP].dport) == (vip, 53, 1000)


def test_masquerade_ports_are_unique_and_exhaustion_drops_with_a_reason():
    ct = Conntrack(64)
    spec = {"flags": SNAT | SNAT_PORT, "snat": "192.168.1.1", "snat_ports": (30000, 30003)}
    b = run(ct, [eth() / IP(src=f"10.0.0.{i}", dst="8.8.8.8") / UDP(sport=5000, dport=53) for i in range(1, 6)],
            spec=spec)
    ports = [Ether(b.packet(i))[UDP].sport for i in range(4)]
    assert sorted(ports) == [30000, 30001, 30002, 30003]
    m = b.meta[4]
    assert (m["verdict"], m["stage"], m["reason"]) == (Verdict.DROP, Stage.NAT, Reason.NAT_PORTS_EXHAUSTED)
    assert ct.counters()["ports_exhausted"] == 1 and len(ct) == 4


def test_echo_identifier_is_translated_under_masquerade():
    ct = Conntrack(16)
    spec = {"flags": SNAT | SNAT_PORT, "snat": "192.168.1.1", "snat_ports": (100, 100)}
    b = run(ct, [eth() / IP(src="10.0.0.1", dst="8.8.8.8") / ICMP(type=8, id=77, seq=1)], spec=spec)
    out = Ether(b.packet(0))
    assert (out[IP].src, out[ICMP].id) == ("192.168.1.1", 100)
    assert_checksums_match_scapy(b.packet(0))
    r = run(ct, [eth() / IP(src="8.8.8.8", dst="192.168.1.1") / ICMP(type=0, id=100, seq=1)])
    back = Ether(r.packet(0))
    assert (back[IP].dst, back[ICMP].id) == ("10.0.0.1", 77)
    assert_checksums_match_scapy(r.packet(0))


def test_flow_without_translation_leaves_packets_untouched():
    ct = Conntrack(16)
    p = eth() / IP(src="10.0.0.1", dst="10.0.0.2") / TCP(sport=1, dport=2, flags="S")
    b = run(ct, [p])
    assert b.packet(0) == raw(p)


# ---------------------------------------------------------------- ICMP errors

ERRORS4 = [("unreach", dict(type=3, code=1)), ("frag_needed", dict(type=3, code=4, nexthopmtu=1400)),
           ("time_exceeded", dict(type=11, code=0))]


def _flow(ver, proto, quote_len=None):
    """A DNAT+masquerade flow; returns (ct, original packet, translated packet, backend reply)."""
    if ver == 4:
        client, vip, backend, node = "10.0.0.1", "10.96.0.10", "10.244.3.3", "192.168.0.1"
    else:
        client, vip, backend, node = "fd00::1", "fd00:96::10", "fd00:244::3", "fd00:192::1"
    spec = {"flags": DNAT | SNAT | SNAT_PORT, "dnat": backend, "dnat_port": 8443, "snat": node,
            "snat_ports": (40000, 40000)}
    ct = Conntrack(16)
    orig = build(ver, proto, client, vip, 5555, 443, b"hello, world")
    b = run(ct, [orig], spec=spec, now_ns=S)
    fwd = Ether(b.packet(0))
    s, d, sp, dp = tuple_of(fwd)
    rep = build(ver, proto, d, s, dp, sp, b"answer", reply=True)
    return ct, orig, fwd, rep, (client, vip, backend, node)


def _error(ver, src, dst, quoted, kind):
    q = raw(l3(quoted))
    if ver == 4:
        return eth() / IP(src=src, dst=dst) / ICMP(**kind) / Raw(q)
    return eth() / IPv6(src=src, dst=dst) / kind / Raw(q)


def _check_icmp_checksums(frame, ver):
    got = Ether(frame)
    ref = Ether(frame)
    if ver == 4:
        ref[IP].chksum = None
        ref[ICMP].chksum = None
        ref = Ether(raw(ref))
        assert (got[IP].chksum, got[ICMP].chksum) == (ref[IP].chksum, ref[ICMP].chksum)
    else:
        icmp = got[IPv6].payload
        ref_icmp = ref[IPv6].payload
        ref_icmp.cksum = None
        ref = Ether(raw(ref))
        assert icmp.cksum == ref[IPv6].payload.cksum


@pytest.mark.parametrize("proto", ["tcp", "udp", "echo"])
@pytest.mark.parametrize("kind", [k for _, k in ERRORS4], ids=[n for n, _ in ERRORS4])
def test_icmp_error_from_the_backend_side_reaches_the_client_with_its_own_packet_quoted(proto, kind):
    ct, orig, fwd, rep, (client, vip, backend, node) = _flow(4, proto)
    err = _error(4, "172.16.0.254", fwd[IP].src, fwd, kind)
    b = run(ct, [err], now_ns=2 * S)
    assert state_of(b) == CtState.RELATED and b.meta[0]["verdict"] == Verdict.PENDING
    out = Ether(b.packet(0))
    assert (out[IP].src, out[IP].dst) == (vip, client)
    # the quote is now exactly the packet the client sent, checksums included
    assert raw(out[ICMP].payload) == raw(orig[IP])
    _check_icmp_checksums(b.packet(0), 4)
    m = b.meta[0]
    assert (int(m["q_sport"]), int(m["q_dport"])) == ((5555, 443) if proto != "echo" else (5555, 5555))


@pytest.mark.parametrize("proto", ["tcp", "udp"])
def test_icmp_error_about_a_reply_reaches_the_backend_with_its_reply_quoted(proto):
    ct, orig, fwd, rep, (client, vip, backend, node) = _flow(4, proto)
    back = run(ct, [rep], now_ns=2 * S)
    replied = Ether(back.packet(0))
    err = _error(4, "10.0.0.254", vip, replied, dict(type=3, code=3))
    b = run(ct, [err], now_ns=3 * S)
    assert state_of(b) == CtState.RELATED
    out = Ether(b.packet(0))
    assert (out[IP].src, out[IP].dst) == (node, backend)
    assert raw(out[ICMP].payload) == raw(rep[IP])
    _check_icmp_checksums(b.packet(0), 4)


def test_icmp_error_with_a_short_quote_gets_addresses_ports_and_checksums_right():
    ct, orig, fwd, rep, (client, vip, backend, node) = _flow(4, "tcp")
    short = raw(fwd[IP])[:28]           # IP header + 8 bytes, as most routers quote
    err = eth() / IP(src="172.16.0.254", dst=node) / ICMP(type=11, code=0) / Raw(short)
    b = run(ct, [err], now_ns=2 * S)
    assert state_of(b) == CtState.RELATED
    out = Ether(b.packet(0))
    assert raw(out[ICMP].payload) == raw(orig[IP])[:28]
    _check_icmp_checksums(b.packet(0), 4)


ERRORS6 = [("too_big", ICMPv6PacketTooBig(mtu=1280)), ("unreach", ICMPv6DestUnreach(code=4)),
           ("time_exceeded", ICMPv6TimeExceeded(code=0))]


@pytest.mark.parametrize("proto", ["tcp", "udp", "echo"])
@pytest.mark.parametrize("kind", [k for _, k in ERRORS6], ids=[n for n, _ in ERRORS6])
def test_icmpv6_error_is_translated_with_its_quote_and_pseudo_header_checksum(proto, kind):
    ct, orig, fwd, rep, (client, vip, backend, node) = _flow(6, proto)
    err = _error(6, "fd00:ff::fe", fwd[IPv6].src, fwd, kind.copy())
    b = run(ct, [err], now_ns=2 * S)
    assert state_of(b) == CtState.RELATED
    out = Ether(b.packet(0))
    assert (out[IPv6].src, out[IPv6].dst) == (vip, client)
    assert raw(out[IPv6].payload)[8:] == raw(orig[IPv6])
    _check_icmp_checksums(b.packet(0), 6)


def test_icmp_error_quoting_no_tracked_flow_is_left_alone():
    ct = Conntrack(16)
    stray = eth() / IP(src="10.0.0.9", dst="10.1.1.1") / UDP(sport=1, dport=2)
    err = _error(4, "172.16.0.254", "10.0.0.9", stray, dict(type=3, code=1))
    b = run(ct, [err])
    assert state_of(b) == CtState.NONE and b.meta[0]["flow_id"] == NO_FLOW
    assert b.packet(0) == raw(err) and len(ct) == 0


@settings(max_examples=100, deadline=None)
@given(seeds=st.lists(st.tuples(st.sampled_from(["tcp", "udp", "sctp", "echo"]), st.sampled_from([4, 6]),
                                st.integers(0, 200), st.integers(0, 255), st.integers(1, 120)),
                      min_size=1, max_size=12),
       flags=st.integers(0, 7))
def test_damaged_packets_never_crash_and_end_pending_or_dropped_with_a_reason(seeds, flags):
    """Valid packets with one byte changed and the tail cut: whatever the parser lets
    through, conntrack and NAT handle without crashing or writing outside the packet."""
    from kdp._fast.packet import Batch
    from kdp._fast.parse import parse
    from kdp._fast.nat import nat
    ct = Conntrack(8)
    b = Batch(len(seeds) * 2)
    originals = []
    for proto, ver, pos, val, cut in seeds:
        a, z = ("10.0.0.1", "10.96.0.1") if ver == 4 else ("fd00::1", "fd00:96::1")
        good = raw(build(ver, proto, a, z, 1234, 80, b"x" * 20))
        bad = bytearray(good)
        bad[14 + pos % (len(good) - 14)] = val
        for fr in (good, bytes(bad[: max(15, len(bad) - cut)])):
            b.append(fr)
            originals.append(fr)
    parse(b)
    ct.lookup_batch(b, S)
    spec = {"flags": flags, "dnat": "10.244.0.5", "snat": "192.168.0.1", "dnat_port": 8080,
            "snat_ports": (40000, 40003)}
    spec6 = {"flags": flags, "dnat": "fd00:244::5", "snat": "fd00:192::1", "dnat_port": 8080,
             "snat_ports": (40000, 40003)}
    for i in range(len(b)):
        m = b.meta[i]
        if m["verdict"] == Verdict.PENDING and m["ct_state"] == CtState.NEW:
            ct.create(b, i, spec if m["ip_ver"] == 4 else spec6, S)
    nat(ct, b)
    inside = np.zeros(b.buffer.size, bool)
    for i in range(len(b)):
        m = b.meta[i]
        assert m["verdict"] in (Verdict.PENDING, Verdict.DROP)
        if m["verdict"] == Verdict.DROP:
            assert m["reason"] != 0
        inside[int(m["off"]): int(m["off"]) + int(m["len"])] = True
    # nothing was written outside the packets (the buffer starts zeroed)
    assert not np.any(b.buffer[~inside])


@settings(max_examples=60, deadline=None)
@given(ver=st.sampled_from([4, 6]), proto=st.sampled_from(["tcp", "udp", "echo"]),
       hosts=st.lists(st.integers(1, 2 ** 32 - 1), min_size=5, max_size=5, unique=True),
       do_dnat=st.booleans(), do_snat=st.booleans(), snat_port=st.booleans(),
       short=st.booleans(), about_reply=st.booleans(), kind=st.integers(0, 2))
def test_icmp_errors_for_random_translations_restore_the_quoted_packet(
        ver, proto, hosts, do_dnat, do_snat, snat_port, short, about_reply, kind):
    client, vip, backend, node, router = (addr(ver, h if ver == 4 else h << 64) for h in hosts)
    flags = (DNAT if do_dnat else 0) | (SNAT if do_snat else 0) | (SNAT_PORT if snat_port else 0)
    spec = {"flags": flags, "dnat": backend, "dnat_port": 8443, "snat": node, "snat_ports": (50000, 50009)}
    ct = Conntrack(16)
    orig = build(ver, proto, client, vip, 5555, 443, b"payload!")
    fwd = Ether(run(ct, [orig], spec=spec, now_ns=S).packet(0))
    s, d, sp, dp = tuple_of(fwd)
    rep = build(ver, proto, d, s, dp, sp, b"answer!!", reply=True)
    if about_reply:     # an error about the translated reply, on its way to the client
        quoted, sent_as, to = Ether(run(ct, [rep], now_ns=S).packet(0)), rep, vip
    else:               # an error about the translated packet, on its way to the backend
        quoted, sent_as, to = fwd, orig, s
    q = raw(l3(quoted))
    q = q[: (28 if ver == 4 else 48)] if short else q
    if ver == 4:
        err = eth() / IP(src=router, dst=to) / ICMP(**ERRORS4[kind][1]) / Raw(q)
    else:
        err = eth() / IPv6(src=router, dst=to) / ERRORS6[kind][1].copy() / Raw(q)
    b = run(ct, [err], now_ns=2 * S)
    assert state_of(b) == CtState.RELATED and b.meta[0]["verdict"] == Verdict.PENDING
    out = Ether(b.packet(0))
    inner = raw(out[ICMP].payload) if ver == 4 else raw(out[IPv6].payload)[8:]
    want = raw(l3(sent_as))
    assert inner == want[: len(inner)] and len(inner) == len(q)
    # the error now goes to whoever sent the quoted packet
    assert str(ipaddress.ip_address(l3(out).dst)) == str(ipaddress.ip_address(l3(sent_as).src))
    _check_icmp_checksums(b.packet(0), ver)
    if ver == 4:
        ref = out.copy()
        ref[IP].chksum = None
        assert Ether(raw(ref))[IP].chksum == out[IP].chksum
