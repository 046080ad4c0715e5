# cython: boundscheck=False, wraparound=False
"""The decap stage: tunnel packets addressed to this node lose their outer headers.

Stage contract (``decap_batch`` / Python ``decap(batch, endpoints, vxlan_port=4789)``)
-------------------------------------------------------------------------------------
Runs after parse, on packets whose verdict is V_PENDING and whose ``tunnel``
is not TUN_NONE (parse recognises tunnels on unfragmented packets only).
Others, and tunnel packets whose outer destination is not one of the node's
addresses (transit traffic), are left untouched.

Reads: tunnel, inner_off, ip_ver, proto, dst4/dst6 (the outer destination),
src4/src6 (the outer source, for the peer check), off, len, wire_len.

For a tunnel to this node: ``off`` advances to the inner packet (``len`` and
``wire_len`` shrink by as much; the outer headers become headroom),
``linktype`` becomes LT_ETHERNET (VXLAN: the inner Ethernet frame),
LT_IPV4 (IPIP, outer protocol 4) or LT_IPV6 (outer protocol 41), and every
parse field is re-computed for the inner packet by parse.parse_frame (so
``tunnel`` is TUN_NONE again unless the inner packet is itself a tunnel: one
level is removed per pass).

Verdicts (stage ST_DECAP):
  R_UNKNOWN_TUNNEL_PEER  drop: the endpoints list peers and the outer source
                         is none of them
  R_BAD_VXLAN            drop: VXLAN header without the I (valid VNI) flag
  R_ARP                  V_LOCAL: the inner frame is ARP (neighbour handling)
  any parse reason       drop: the inner packet is malformed (see parse.pyx)

Next stage: conntrack.
"""
import ipaddress

import numpy as np
cimport numpy as cnp
from libc.string cimport memcmp
from libc.stdint cimport uint8_t, uint16_t, uint32_t

from kdp._fast.packet cimport (
    Batch, pkt_meta_t, drop, set_verdict, V_PENDING, V_LOCAL, ST_DECAP,
    TUN_NONE, TUN_VXLAN, LT_ETHERNET, LT_IPV4, LT_IPV6,
    R_ARP, R_BAD_VXLAN, R_UNKNOWN_TUNNEL_PEER,
)
from kdp._fast.parse cimport parse_frame, DEFAULT_VXLAN_PORT

cnp.import_array()


cdef inline bint _has4(const uint32_t* a, Py_ssize_t n, uint32_t x) noexcept nogil:
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo < n and a[lo] == x


cdef inline bint _has6(const uint8_t* a, Py_ssize_t n, const uint8_t* x) noexcept nogil:
    cdef Py_ssize_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if memcmp(a + mid * 16, x, 16) < 0:
            lo = mid + 1
        else:
            hi = mid
    return lo < n and memcmp(a + lo * 16, x, 16) == 0


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
    """

    def __init__(self, local=(), peers=None):
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
        self.n_l4 = self.local4.shape[0]
        self.n_l6 = self.local6.shape[0]
        self.n_p4 = self.peers4.shape[0]
        self.n_p6 = self.peers6.shape[0]
        self.l4 = <const uint32_t*>cnp.PyArray_DATA(self.local4)
        self.l6 = <const uint8_t*>cnp.PyArray_DATA(self.local6)
        self.p4 = <const uint32_t*>cnp.PyArray_DATA(self.peers4)
        self.p6 = <const uint8_t*>cnp.PyArray_DATA(self.peers6)

    def __repr__(self):
        return (f"TunnelEndpoints(local={self.n_l4 + self.n_l6} addresses, "
                f"peers={'any' if not self.check_peers else self.n_p4 + self.n_p6})")


cdef void decap_batch(Batch b, TunnelEndpoints t, uint16_t vxlan_port) noexcept nogil:
    cdef Py_ssize_t i
    cdef pkt_meta_t* p
    cdef uint32_t shift
    cdef uint16_t r
    cdef bint mine, known
    for i in range(b.count):
        p = &b.m[i]
        if p.verdict != V_PENDING or p.tunnel == TUN_NONE:
            continue
        if p.ip_ver == 4:
            mine = _has4(t.l4, t.n_l4, p.dst4)
            known = _has4(t.p4, t.n_p4, p.src4)
        else:
            mine = _has6(t.l6, t.n_l6, p.dst6)
            known = _has6(t.p6, t.n_p6, p.src6)
        if not mine:
            continue
        if t.check_peers and not known:
            drop(p, ST_DECAP, R_UNKNOWN_TUNNEL_PEER)
            continue
        shift = p.inner_off
        if p.tunnel == TUN_VXLAN:
            # parse checked that the 8-byte VXLAN header lies before inner_off
            if not (b.buf[p.off + shift - 8] & 0x08):
                drop(p, ST_DECAP, R_BAD_VXLAN)
                continue
            p.linktype = LT_ETHERNET
        else:
            p.linktype = LT_IPV4 if p.proto == 4 else LT_IPV6
        p.off += shift
        p.len -= shift
        p.wire_len = p.wire_len - shift if p.wire_len >= shift else 0
        r = parse_frame(p, b.buf + p.off, vxlan_port)
        if r == R_ARP:
            set_verdict(p, V_LOCAL, ST_DECAP, R_ARP)
        elif r:
            drop(p, ST_DECAP, r)


def decap(Batch b not None, TunnelEndpoints endpoints not None, vxlan_port=DEFAULT_VXLAN_PORT):
    """Run the decap stage over batch `b` (see the module docstring)."""
    if not (0 <= vxlan_port <= 0xFFFF):
        raise ValueError(f"vxlan_port must be 0..65535, got {vxlan_port}")
    cdef uint16_t port = vxlan_port
    with nogil:
        decap_batch(b, endpoints, port)
