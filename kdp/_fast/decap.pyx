# cython: boundscheck=False, wraparound=False
"""The decap stage: tunnel packets addressed to this node lose their outer headers.

Stage contract (``decap_batch`` / Python ``decap(batch, endpoints, vxlan_port=4789)``)
-------------------------------------------------------------------------------------
Runs after parse, on packets whose verdict is V_PENDING and whose ``tunnel``
is not TUN_NONE (parse recognises tunnels on unfragmented packets only), or
that are unfragmented UDP to one of the endpoints' extra VXLAN ports (Calico's
IPv6 VXLAN port 4790 beside the parser's, for instance). Others, and tunnel
packets whose outer destination is not one of the node's addresses (transit
traffic), are left untouched.

Reads: tunnel, inner_off, ip_ver, proto, dst4/dst6 (the outer destination),
src4/src6 (the outer source, for the peer check), off, len, wire_len.

For a tunnel to this node: ``off`` advances to the inner packet (``len`` and
``wire_len`` shrink by as much; the outer headers become headroom). VXLAN: the
inner Ethernet frame, LT_ETHERNET. IP-in-IP: the inner IP packet gets the outer
frame's Ethernet addresses in a plain 14-byte Ethernet header in front of it
(LT_ETHERNET, as a packet received on a tunnel device is forwarded as an
Ethernet frame; the egress rewrites the addresses); on other link types it
becomes LT_IPV4 (outer protocol 4) or LT_IPV6 (41). Every parse field is
re-computed for the inner packet by parse.parse_frame (so ``tunnel`` is
TUN_NONE again unless the inner packet is itself a tunnel: one level is removed
per pass), and ``decap`` says which tunnel it came through.

Verdicts (stage ST_DECAP):
  R_UNKNOWN_TUNNEL_PEER  drop: the endpoints list peers and the outer source
                         is none of them
  R_BAD_VXLAN            drop: VXLAN header without the I (valid VNI) flag, or
                         a VNI the endpoints do not accept (when they list VNIs:
                         Linux's vxlan device takes its own VNI only)
  R_ARP                  V_LOCAL: the inner frame is ARP (neighbour handling)
  any parse reason       drop: the inner packet is malformed (see parse.pyx)

Next stage: conntrack.

`parse_decap_batch` runs the parse stage and this one in one pass (the pipeline uses it
when the node decapsulates): the parser's loop (parse.pyx: parse_decap_loop, with
tunnel_in.pxd's fast path compiled into it) hands this stage each packet in turn
while it is in cache. The common tunnel frame (untagged
Ethernet, IPv4 without options to the node from a known peer, IP-in-IP or VXLAN on the
parser's port, inner headers captured) is recognised from its headers directly and
only its inner packet is parsed; every other tunnel is parsed, then decapsulated as
above; the outcome is the same as parse, then decap.
"""
import ipaddress

import numpy as np
cimport numpy as cnp
from libc.string cimport memcmp, memcpy, memmove, memset
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from kdp._fast.packet cimport (
    Batch, pkt_meta_t, drop, set_verdict, V_PENDING, V_LOCAL, ST_DECAP, ST_PARSE,
    TUN_NONE, TUN_IPIP, TUN_VXLAN, LT_ETHERNET, LT_IPV4, LT_IPV6, FRAG_NONE,
    R_ARP, R_BAD_VXLAN, R_UNKNOWN_TUNNEL_PEER,
)
from kdp._fast.parse cimport parse_frame, parse_decap_loop, DEFAULT_VXLAN_PORT
from kdp._fast.tunnel_in cimport tunnel_set_t, tunnel_has4, tunnel_in_set4, tunnel_vni_ok
from kdp._fast.checksum cimport kdp_csum16





cnp.import_array()


def _set4(values):
    n = 2
    while n < 2 * max(1, len(values)):
        n <<= 1
    table = np.zeros(n, dtype=np.uint32)
    for v in (int(x) for x in values):
        if v == 0:
            continue
        k = (v * 2654435761) & (n - 1)
        while table[k] not in (0, v):
            k = (k + 1) & (n - 1)
        table[k] = v
    return table


cdef inline uint64_t _be64(const uint8_t* b) noexcept nogil:
    cdef uint64_t v = 0
    cdef int k
    for k in range(8):
        v = (v << 8) | b[k]
    return v


cdef inline bint _le16(const uint8_t* a, uint64_t hi, uint64_t lo) noexcept nogil:
    """The 16-byte address at a <= (hi, lo)."""
    cdef uint64_t ahi = _be64(a)
    return ahi < hi or (ahi == hi and _be64(a + 8) <= lo)


cdef inline bint _has6(const uint8_t* a, Py_ssize_t n, const uint8_t* x) noexcept nogil:
    cdef const uint8_t* base = a
    cdef Py_ssize_t half
    cdef uint64_t hi = _be64(x), lo = _be64(x + 8)
    if n == 0:
        return False
    while n > 1:
        half = n >> 1
        base = base + 16 * half if _le16(base + 16 * half, hi, lo) else base
        n -= half
    return memcmp(base, x, 16) == 0


def _sorted4(addrs):
    vals = sorted({int(ipaddress.IPv4Address(a)) for a in addrs})
    return np.ascontiguousarray(np.array(vals, dtype=np.uint32))


def _sorted6(addrs):
    vals = sorted({ipaddress.IPv6Address(a).packed for a in addrs})
    arr = np.frombuffer(b"".join(vals), dtype=np.uint8).reshape(len(vals), 16)
    return np.ascontiguousarray(arr)


cdef class TunnelEndpoints:
    """The node's tunnel addresses and (optionally) the peers allowed to send.

    Addresses are anything ``ipaddress`` accepts: strings, integers (IPv4 in
    host order), packed bytes. ``local`` holds IPv4 and IPv6 addresses mixed;
    ``peers`` None accepts tunnels from any source, a list (even empty)
    restricts them. A malformed address raises ValueError.

    ``vxlan_ports``: UDP ports decapsulated as VXLAN besides the parser's (up to 4);
    ``vnis``: the VNIs accepted (up to 8; empty: any).
    """

    def __init__(self, local=(), peers=None, vxlan_ports=(), vnis=()):
        l4, l6, p4, p6 = [], [], [], []
        for a in local:
            (l4 if ipaddress.ip_address(a).version == 4 else l6).append(a)
        if peers is not None:
            for a in peers:
                (p4 if ipaddress.ip_address(a).version == 4 else p6).append(a)
        self.check_peers = peers is not None
        self.local4 = _sorted4(l4)
        self.local6 = _sorted6(l6)
        self.peers4 = _sorted4(p4)
        self.peers6 = _sorted6(p6)
        self.peers4_set = _set4(self.peers4)
        memset(&self.s, 0, sizeof(tunnel_set_t))
        self.s.l4 = <const uint32_t*>cnp.PyArray_DATA(self.local4)
        self.s.l6 = <const uint8_t*>cnp.PyArray_DATA(self.local6)
        self.s.ps4 = <const uint32_t*>cnp.PyArray_DATA(self.peers4_set)
        self.s.p6 = <const uint8_t*>cnp.PyArray_DATA(self.peers6)
        self.s.n_l4 = self.local4.shape[0]
        self.s.n_l6 = self.local6.shape[0]
        self.s.n_p6 = self.peers6.shape[0]
        self.s.ps4_mask = self.peers4_set.shape[0] - 1
        self.s.check_peers = self.check_peers
        ports = [int(x) for x in vxlan_ports]
        if len(ports) > 4 or any(not 0 < x <= 0xFFFF for x in ports):
            raise ValueError(f"vxlan_ports: at most 4 ports in 1..65535, got {ports}")
        vni_list = sorted({int(x) for x in vnis})
        if len(vni_list) > 8 or any(not 0 <= x < (1 << 24) for x in vni_list):
            raise ValueError(f"vnis: at most 8 VNIs in 0..16777215, got {vni_list}")
        for k in range(4):
            self.s.vxlan_ports[k] = ports[k] if k < len(ports) else 0
        for k in range(len(vni_list)):
            self.s.vnis[k] = vni_list[k]
        self.s.n_vnis = len(vni_list)

    def __repr__(self):
        return (f"TunnelEndpoints(local={self.s.n_l4 + self.s.n_l6} addresses, peers="
                f"{'any' if not self.check_peers else self.peers4.shape[0] + self.peers6.shape[0]})")


cdef inline bint _extra_vxlan(const tunnel_set_t* t, pkt_meta_t* p) noexcept nogil:
    """UDP to one of the extra VXLAN ports: mark it as the parser marks VXLAN."""
    cdef int k
    if p.proto != 17 or p.frag != FRAG_NONE or p.l4_off == 0 or t.vxlan_ports[0] == 0:
        return False
    for k in range(4):
        if t.vxlan_ports[k] != 0 and p.dport == t.vxlan_ports[k]:
            if <uint32_t>p.l4_off + 8 + 8 + 14 > p.len:
                return False            # too short to be VXLAN: plain UDP it stays
            p.tunnel = TUN_VXLAN
            p.inner_off = <uint16_t>(p.l4_off + 16)
            return True
    return False


cdef int _decap_one(void* ctx, uint8_t* buf, pkt_meta_t* p) noexcept nogil:
    """The stage for one parsed, pending packet (see the module docstring); ctx is the
    tunnel_set_t. (Its signature is parse.pxd's parse_hook_t.)"""
    cdef const tunnel_set_t* t = <const tunnel_set_t*>ctx
    cdef uint32_t shift
    cdef uint16_t r
    cdef uint8_t kind
    cdef bint mine, known
    cdef uint8_t* pkt
    if p.tunnel == TUN_NONE and not _extra_vxlan(t, p):
        return False
    if p.ip_ver == 4:
        mine = tunnel_has4(t.l4, t.n_l4, p.dst4)
        known = tunnel_in_set4(t.ps4, t.ps4_mask, p.src4)
    else:
        mine = _has6(t.l6, t.n_l6, p.dst6)
        known = _has6(t.p6, t.n_p6, p.src6)
    if not mine:
        return False
    if t.check_peers and not known:
        drop(p, ST_DECAP, R_UNKNOWN_TUNNEL_PEER)
        return True
    shift = p.inner_off
    pkt = buf + p.off
    kind = p.tunnel
    if kind == TUN_VXLAN:
        # parse checked that the 8-byte VXLAN header lies before inner_off
        if not (pkt[shift - 8] & 0x08) or not tunnel_vni_ok(t, pkt + shift - 8):
            drop(p, ST_DECAP, R_BAD_VXLAN)
            return True
        p.linktype = LT_ETHERNET
    elif p.linktype == LT_ETHERNET and p.l3_off >= 14:
        # a plain Ethernet header in front of the inner IP packet, with the outer
        # frame's addresses (the egress rewrites them when it forwards the packet)
        shift -= 14
        memmove(pkt + shift, pkt, 12)
        pkt[shift + 12] = 0x08 if p.proto == 4 else 0x86
        pkt[shift + 13] = 0x00 if p.proto == 4 else 0xDD
    else:
        p.linktype = LT_IPV4 if p.proto == 4 else LT_IPV6
    _inner(p, buf, shift, kind, t.port)
    return True


cdef inline void _inner(pkt_meta_t* p, uint8_t* buf, uint32_t shift, uint8_t kind,
                        uint16_t vxlan_port) noexcept nogil:
    """Move to the inner packet (shift bytes on) and parse it."""
    cdef uint16_t r
    p.off += shift
    p.len -= shift
    p.wire_len = p.wire_len - shift if p.wire_len >= shift else 0
    r = parse_frame(p, buf + p.off, vxlan_port)
    p.decap = kind
    if r == R_ARP:
        set_verdict(p, V_LOCAL, ST_DECAP, R_ARP)
    elif r:
        drop(p, ST_DECAP, r)


cdef void decap_batch(Batch b, TunnelEndpoints t, uint16_t vxlan_port) noexcept nogil:
    cdef Py_ssize_t i
    cdef pkt_meta_t* p
    cdef tunnel_set_t s = t.s
    s.port = vxlan_port
    for i in range(b.count):
        p = &b.m[i]
        if p.verdict == V_PENDING:
            _decap_one(&s, b.buf, p)


cdef void parse_decap_batch(Batch b, uint16_t vxlan_port, TunnelEndpoints t) noexcept nogil:
    cdef tunnel_set_t s = t.s
    s.port = vxlan_port
    # the parser's own loop: the fast path (tunnel_in.pxd) sees IP-in-IP and VXLAN
    # frames first, the stage every tunnel the parser recognised and UDP to the extra
    # VXLAN ports
    parse_decap_loop(b, vxlan_port, &s, _decap_one)


def parse_and_decap(Batch b not None, TunnelEndpoints endpoints not None, vxlan_port=DEFAULT_VXLAN_PORT):
    """parse_decap_batch over b: the parse stage and this one in one pass."""
    if not (0 <= vxlan_port <= 0xFFFF):
        raise ValueError(f"vxlan_port must be 0..65535, got {vxlan_port}")
    cdef uint16_t port = vxlan_port
    with nogil:
        parse_decap_batch(b, port, endpoints)


def decap(Batch b not None, TunnelEndpoints endpoints not None, vxlan_port=DEFAULT_VXLAN_PORT):
    """Run the decap stage over batch `b` (see the module docstring)."""
    if not (0 <= vxlan_port <= 0xFFFF):
        raise ValueError(f"vxlan_port must be 0..65535, got {vxlan_port}")
    cdef uint16_t port = vxlan_port
    with nogil:
        decap_batch(b, endpoints, port)
