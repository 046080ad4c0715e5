"""The IPv4 header checksum check of the parser (kdp_csum16 in kdp/_fast/checksum.pxd:
8-byte loads, a fixed number of folds) and of the decap fast path, against RFC 1071's
sum computed here in plain Python, for any header bytes and any stored checksum."""
import struct

from hypothesis import given, strategies as st

from kdp._fast.decap import TunnelEndpoints, parse_and_decap
from kdp._fast.packet import Batch
from kdp._fast.parse import parse
from kdp.reasons import Reason

ETH = bytes.fromhex("020000000002" "020000000001" "0800")


def rfc1071_ok(header):
    s = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s == 0xFFFF


def header(ihl_words, tos, ident, ttl, src, dst, options, chksum):
    total = ihl_words * 4 + 8
    h = struct.pack("!BBHHHBBH4s4s", 0x40 | ihl_words, tos, total, ident, 0, ttl, 17, chksum, src, dst)
    return h + options[: ihl_words * 4 - 20]


def good_checksum(h):
    z = h[:10] + b"\0\0" + h[12:]
    s = sum(struct.unpack(f"!{len(z) // 2}H", z))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


fields = dict(ihl_words=st.integers(5, 15), tos=st.integers(0, 255), ident=st.integers(0, 0xFFFF),
              ttl=st.integers(1, 255), src=st.binary(min_size=4, max_size=4),
              dst=st.binary(min_size=4, max_size=4),
              options=st.binary(min_size=40, max_size=40).map(lambda o: o.replace(b"\0", b"\1")),
              chksum=st.integers(0, 0xFFFF), fix=st.booleans())


@given(**fields)
def test_parser_rejects_exactly_the_headers_whose_rfc1071_sum_is_wrong(ihl_words, tos, ident, ttl, src,
                                                                       dst, options, chksum, fix):
    h = header(ihl_words, tos, ident, ttl, src, dst, options, chksum)
    if fix:
        h = h[:10] + struct.pack("!H", good_checksum(h)) + h[12:]
    b = Batch(1)
    b.append(ETH + h + struct.pack("!HHHH", 1, 2, 8, 0))
    parse(b)
    bad = int(b.meta[0]["reason"]) == int(Reason.BAD_IPV4_CHECKSUM)
    assert bad == (not rfc1071_ok(h))


@given(ttl=st.integers(1, 255), ident=st.integers(0, 0xFFFF), chksum=st.integers(0, 0xFFFF), fix=st.booleans())
def test_decap_fast_path_takes_exactly_the_outer_headers_whose_sum_is_right(ttl, ident, chksum, fix):
    # an IP-in-IP frame to the node from a peer; the outer checksum decides between the
    # fast path (decapsulated) and the stage's own check (dropped, bad checksum)
    inner = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 28, 1, 0, 9, 17, 0, bytes([10, 244, 1, 5]),
                        bytes([10, 244, 2, 7]))
    inner = inner[:10] + struct.pack("!H", good_checksum(inner)) + inner[12:] + struct.pack("!HHHH", 1, 2, 8, 0)
    peer = bytes([192, 168, 0, 12])
    outer = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(inner), ident, 0, ttl, 4, chksum, peer,
                        bytes([192, 168, 0, 11]))
    if fix:
        outer = outer[:10] + struct.pack("!H", good_checksum(outer)) + outer[12:]
    b = Batch(1)
    b.append(ETH + outer + inner)
    parse_and_decap(b, TunnelEndpoints(local=["192.168.0.11"], peers=["192.168.0.12"]))
    m = b.meta[0]
    if rfc1071_ok(outer):
        assert int(m["decap"]) == 1 and int(m["dst4"]) == 0x0AF40207
    else:
        assert int(m["reason"]) == int(Reason.BAD_IPV4_CHECKSUM) and int(m["decap"]) == 0
