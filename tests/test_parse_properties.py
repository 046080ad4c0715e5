"""Property tests of the parse stage against scapy's dissection of the same bytes.

Random well-formed packets (Ethernet with stacked VLAN tags, every link type,
IPv4 with options and fragments, IPv6 with extension chains, TCP/UDP/SCTP,
ICMP/ICMPv6 echo and errors, IP-in-IP, VXLAN) are built with scapy
(kdptest.frame); the expected metadata is read off scapy's dissection of the
bytes (kdptest.expected), never off the values the generator chose.
"""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdp._fast import packet, parse
from kdp.reasons import Verdict

from kdptest import ADDR16, FIELDS, expected, frame


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
