# cython: boundscheck=False, wraparound=False
"""Calico's natOutgoing, in the slow path of new flows.

An IPPool with `natOutgoing: true` masquerades traffic from its addresses to
destinations outside every IPPool: Felix's rule in the nat table's POSTROUTING chain,
`-s <natOutgoing pools> ! -d <all pools> -j MASQUERADE`, after kube-proxy's DNAT.
kdp applies it when a new flow is created (`natout_apply`, called by the pipeline's
slow path after the service decision):

  * the source is inside a natOutgoing pool (disabled pools count: disabling a pool
    only stops new allocations);
  * the destination after the service's DNAT is outside every pool and is not one of
    the node's own addresses (traffic to the node goes to INPUT, not POSTROUTING);
  * the flow is not masqueraded already (kube-proxy's masquerade came first).

Then the flow gets source NAT to the node's primary address of the family, with a
source port from the masquerade range for TCP, UDP, SCTP and ICMP echo (other
protocols keep their ports, as MASQUERADE does), exactly like kube-proxy's
masquerade: conntrack translates the replies back. `masqueraded` counts the flows.
"""
import ipaddress

import numpy as np
cimport numpy as cnp
from libc.string cimport memcpy, memset
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from kdp._fast.packet cimport pkt_meta_t, NO_ID
from kdp._fast.flow cimport nat_spec_t, NAT_DNAT, NAT_SNAT, NAT_SNAT_PORT

cnp.import_array()

POOL4_DTYPE = np.dtype([("b", "u1", sizeof(pool4_t))])
POOL6_DTYPE = np.dtype([("b", "u1", sizeof(pool6_t))])


cdef inline bint _in4(const pool4_t* a, Py_ssize_t n, uint32_t x, bint nat_only) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(n):
        if (x & a[k].mask) == a[k].net and (a[k].nat or not nat_only):
            return True
    return False


cdef inline bint _in6(const pool6_t* a, Py_ssize_t n, const uint8_t* x, bint nat_only) noexcept nogil:
    cdef Py_ssize_t k
    cdef int j
    cdef bint ok
    for k in range(n):
        if nat_only and not a[k].nat:
            continue
        ok = True
        for j in range(16):
            if (x[j] & a[k].mask[j]) != a[k].net[j]:
                ok = False
                break
        if ok:
            return True
    return False


cdef inline bint memcmp16(const uint8_t* a, const uint8_t* b) noexcept nogil:
    cdef int j
    for j in range(16):
        if a[j] != b[j]:
            return False
    return True


cdef class NatOutgoing:
    """pools: [(CIDR, nat_outgoing)]; node_addresses: the node's own (first of each
    family: the masquerade address); port_range: (lo, hi) for masqueraded ports."""

    def __init__(self, pools, node_addresses, port_range=(1024, 65535)):
        nets = [(ipaddress.ip_network(c, strict=False), bool(nat)) for c, nat in pools]
        v4 = [(n, nat) for n, nat in nets if n.version == 4]
        v6 = [(n, nat) for n, nat in nets if n.version == 6]
        self._p4 = np.zeros(max(1, len(v4)), dtype=POOL4_DTYPE)
        self._p6 = np.zeros(max(1, len(v6)), dtype=POOL6_DTYPE)
        cdef pool4_t* q4 = <pool4_t*>cnp.PyArray_DATA(self._p4)
        cdef pool6_t* q6 = <pool6_t*>cnp.PyArray_DATA(self._p6)
        cdef bytes b
        for k, (n, nat) in enumerate(v4):
            q4[k].net = int(n.network_address)
            q4[k].mask = int(n.netmask)
            q4[k].nat = nat
        for k, (n, nat) in enumerate(v6):
            b = n.network_address.packed
            memcpy(q6[k].net, <const char*>b, 16)
            b = n.netmask.packed
            memcpy(q6[k].mask, <const char*>b, 16)
            q6[k].nat = nat
        self.p4 = q4
        self.p6 = q6
        self.n4 = len(v4)
        self.n6 = len(v6)
        addrs = [ipaddress.ip_address(a) for a in node_addresses]
        a4 = [int(a) for a in addrs if a.version == 4]
        a6 = [a.packed for a in addrs if a.version == 6]
        self._a4 = np.array(a4 or [0], dtype=np.uint32)
        self._a6 = np.frombuffer(b"".join(a6) or bytes(16), dtype=np.uint8).copy()
        self.node4 = <const uint32_t*>cnp.PyArray_DATA(self._a4)
        self.node6 = <const uint8_t*>cnp.PyArray_DATA(self._a6)
        self.n_node4 = len(a4)
        self.n_node6 = len(a6)
        self.has4 = bool(a4)
        self.has6 = bool(a6)
        self.snat4 = a4[0] if a4 else 0
        memset(self.snat6, 0, 16)
        if a6:
            b = a6[0]
            memcpy(self.snat6, <const char*>b, 16)
        lo, hi = port_range
        if not 1 <= lo <= hi <= 65535:
            raise ValueError(f"bad port range {port_range!r}")
        self.port_lo = lo
        self.port_hi = hi
        self.masqueraded = 0

    def __repr__(self):
        return f"NatOutgoing({self.n4 + self.n6} pools)"


cdef bint natout_apply(NatOutgoing t, const pkt_meta_t* p, nat_spec_t* spec, bint has_spec) noexcept nogil:
    cdef uint32_t d4
    cdef const uint8_t* d6
    cdef Py_ssize_t k
    cdef bint dnat = has_spec and (spec.flags & NAT_DNAT) != 0
    if has_spec and (spec.flags & NAT_SNAT):
        return False
    if p.ip_ver == 4:
        if not t.has4 or not _in4(t.p4, t.n4, p.src4, True):
            return False
        d4 = spec.dnat4 if dnat else p.dst4
        if _in4(t.p4, t.n4, d4, False):
            return False
        for k in range(t.n_node4):
            if t.node4[k] == d4:
                return False
    elif p.ip_ver == 6:
        if not t.has6 or not _in6(t.p6, t.n6, p.src6, True):
            return False
        if dnat:
            d6 = &spec.dnat6[0]
        else:
            d6 = &p.dst6[0]
        if _in6(t.p6, t.n6, d6, False):
            return False
        for k in range(t.n_node6):
            if memcmp16(t.node6 + 16 * k, d6):
                return False
    else:
        return False
    if not has_spec:
        memset(spec, 0, sizeof(nat_spec_t))
        spec.svc_port = NO_ID
        spec.backend = NO_ID
    spec.ip_ver = p.ip_ver
    spec.flags |= NAT_SNAT
    if p.ip_ver == 4:
        spec.snat4 = t.snat4
    else:
        memcpy(spec.snat6, t.snat6, 16)
    if p.proto == 6 or p.proto == 17 or p.proto == 132 or p.proto == 1 or p.proto == 58:
        spec.flags |= NAT_SNAT_PORT
        spec.snat_port_lo = t.port_lo
        spec.snat_port_hi = t.port_hi
    t.masqueraded += 1
    return True


def apply(NatOutgoing t not None, meta):
    """natout_apply() for one META_DTYPE record (tests): the nat spec as a dict, or None."""
    cdef nat_spec_t spec
    cdef cnp.ndarray arr = np.ascontiguousarray(np.asarray(meta).reshape(1))
    cdef const pkt_meta_t* p = <const pkt_meta_t*>cnp.PyArray_DATA(arr)
    if not natout_apply(t, p, &spec, False):
        return None
    if spec.ip_ver == 4:
        snat = str(ipaddress.IPv4Address(spec.snat4))
    else:
        snat = str(ipaddress.IPv6Address(bytes(spec.snat6[:16])))
    return {"flags": spec.flags, "snat": snat, "ports": (spec.snat_port_lo, spec.snat_port_hi)}
