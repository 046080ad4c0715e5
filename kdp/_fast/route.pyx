# cython: boundscheck=False, wraparound=False
"""The route stage, and ingress classification by source address.

Stage contract (`RouteTable.route_batch`, Python `route(batch)`)
----------------------------------------------------------------
Reads: verdict, ip_ver, dst4/dst6 (post-NAT), l3_off, ttl, in_port.
For every V_PENDING IP packet, looks the destination up (LPM) and:
  RT_HOST                 -> V_LOCAL, R_LOCAL_DELIVERY (stage ST_ROUTE)
  RT_LOCAL_POD, RT_REMOTE_NODE, RT_UPLINK
                          -> V_FORWARD, R_FORWARDED (stage ST_TX), out_port set;
                             TTL / hop limit decremented (IPv4 header checksum
                             updated incrementally, RFC 1624) unless the packet
                             came from the host itself
  RT_BLACKHOLE, no match  -> drop R_NO_ROUTE (stage ST_ROUTE)
  TTL <= 1 when forwarding-> drop R_TTL_EXCEEDED (stage ST_ROUTE)
Sets: route_id, out_port, verdict, stage, reason; TTL bytes in the packet.
Non-IP packets still pending (none today: the parser decides them) are left.

Ingress (`classify_ingress`): a packet with in_port NO_PORT gets the port of the
local pod whose address is its source (RT_LOCAL_POD host route), else the uplink.
"""
import ipaddress

import numpy as np
cimport numpy as cnp
from libc.string cimport memcpy, memset
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from kdp._fast.packet cimport (Batch, pkt_meta_t, drop, set_verdict, NO_PORT, NO_ID,
                               V_PENDING, V_FORWARD, V_LOCAL, ST_ROUTE, ST_TX,
                               R_FORWARDED, R_LOCAL_DELIVERY, R_NO_ROUTE, R_TTL_EXCEEDED)
from kdp._fast.lpm cimport Lpm4, KDP_LPM_MISS
from kdp._fast.lpm6 cimport Lpm6
from kdp._fast.checksum cimport ld16, st16, cs_apply, cs_d16

cnp.import_array()

ROUTE_DTYPE = np.dtype([("b", "u1", sizeof(route_t))])

cdef enum:
    UPLINK_PORT = 0         # kdp.ports.UPLINK
    HOST_PORT = 1           # kdp.ports.HOST


class Route:
    """One route: prefix -> kind, out port, and (for remote nodes) the node address."""
    __slots__ = ("prefix", "kind", "port", "via", "encap", "note")

    def __init__(self, prefix, kind, port=UPLINK_PORT, via=None, encap=ENCAP_NONE, note=""):
        self.prefix = ipaddress.ip_network(prefix, strict=False)
        self.kind = RouteKind(kind)
        self.port = int(port)
        self.via = ipaddress.ip_address(via) if via is not None else None
        self.encap = Encap(encap)
        self.note = note

    def __repr__(self):
        via = f" via {self.via}" if self.via else ""
        return f"Route({self.prefix} {self.kind.name}{via} port={self.port})"


cdef inline void _dec_ttl(uint8_t* ip, uint8_t ver) noexcept nogil:
    cdef uint16_t old_word
    if ver == 6:
        ip[7] -= 1
        return
    old_word = ld16(ip + 8)             # TTL and protocol share a 16-bit word
    ip[8] -= 1
    st16(ip + 10, cs_apply(ld16(ip + 10), cs_d16(0, old_word, ld16(ip + 8))))


cdef class RouteTable:
    """The node's routes compiled into LPM tables plus route records.

    Built whole from a list of `Route`s and swapped whole by the data plane.
    A packet's route_id is the index of its route in `routes`.
    """

    def __init__(self, routes=()):
        self.routes = list(routes)
        self.n_routes = len(self.routes)
        if self.n_routes >= 0xFFFF0000:
            raise ValueError("too many routes")
        self.records = np.zeros(max(self.n_routes, 1), dtype=ROUTE_DTYPE)
        self.r = <route_t*>cnp.PyArray_DATA(self.records)
        self.lpm4 = Lpm4()
        self.lpm6 = Lpm6()
        self.scratch = np.zeros(0, dtype=np.uint32)
        self.ids = NULL
        cdef route_t* rec
        for i, route in enumerate(self.routes):
            rec = &self.r[i]
            rec.kind = <uint8_t>route.kind
            rec.encap = <uint8_t>route.encap
            rec.port = <uint16_t>route.port
            rec.is_host = route.prefix.prefixlen == route.prefix.max_prefixlen
            if route.via is not None:
                if route.via.version == 4:
                    rec.via4 = int(route.via)
                else:
                    memcpy(rec.via6, <const char*>route.via.packed, 16)
            table = self.lpm4 if route.prefix.version == 4 else self.lpm6
            table.insert(route.prefix, i)

    def _ensure_scratch(self, Py_ssize_t n):
        if self.scratch.shape[0] < n:
            self.scratch = np.zeros(n, dtype=np.uint32)
        self.ids = <uint32_t*>cnp.PyArray_DATA(self.scratch)

    def lookup(self, address):
        """The Route for an address, or None."""
        addr = ipaddress.ip_address(address)
        rid = (self.lpm4 if addr.version == 4 else self.lpm6).lookup(addr)
        return None if rid == KDP_LPM_MISS or rid < 0 else self.routes[rid]

    cdef void classify_ingress(self, Batch b) noexcept nogil:
        cdef Py_ssize_t i
        cdef pkt_meta_t* p
        cdef uint32_t rid
        cdef uint64_t hi, lo
        for i in range(b.count):
            p = &b.m[i]
            if p.in_port != NO_PORT:
                continue
            p.in_port = UPLINK_PORT
            if p.ip_ver == 4:
                rid = self.lpm4.lookup_one(p.src4)
            elif p.ip_ver == 6:
                hi = _be64(p.src6)
                lo = _be64(p.src6 + 8)
                rid = self.lpm6.lookup_one(hi, lo)
            else:
                continue
            if rid != KDP_LPM_MISS and self.r[rid].kind == RT_LOCAL_POD and self.r[rid].is_host:
                p.in_port = self.r[rid].port

    cdef void route_batch(self, Batch b) noexcept nogil:
        cdef Py_ssize_t i
        cdef pkt_meta_t* p
        cdef uint32_t rid
        cdef route_t* rec
        cdef bint any6 = False
        cdef uint64_t hi, lo
        self.lpm4.lookup_strided(<const char*>&b.m[0].dst4, sizeof(pkt_meta_t), self.ids, b.count)
        for i in range(b.count):
            p = &b.m[i]
            if p.verdict != V_PENDING or p.ip_ver == 0:
                continue
            if p.ip_ver == 6:
                rid = self.lpm6.lookup_one(_be64(p.dst6), _be64(p.dst6 + 8))
            else:
                rid = self.ids[i]
            p.route_id = rid
            if rid == KDP_LPM_MISS:
                drop(p, ST_ROUTE, R_NO_ROUTE)
                continue
            rec = &self.r[rid]
            if rec.kind == RT_HOST:
                set_verdict(p, V_LOCAL, ST_ROUTE, R_LOCAL_DELIVERY)
                p.out_port = HOST_PORT
            elif rec.kind == RT_BLACKHOLE:
                drop(p, ST_ROUTE, R_NO_ROUTE)
            else:
                if p.in_port != HOST_PORT:
                    if p.ttl <= 1:
                        drop(p, ST_ROUTE, R_TTL_EXCEEDED)
                        continue
                    _dec_ttl(b.buf + p.off + p.l3_off, p.ip_ver)
                    p.ttl -= 1
                p.out_port = rec.port
                set_verdict(p, V_FORWARD, ST_TX, R_FORWARDED)

    def classify(self, Batch b):
        """Assign in_port by source address where the capture gave none."""
        with nogil:
            self.classify_ingress(b)

    def route(self, Batch b):
        """Run the route stage over a batch (see the module docstring)."""
        self._ensure_scratch(b.capacity)
        with nogil:
            self.route_batch(b)


cdef inline uint64_t _be64(const uint8_t* a) noexcept nogil:
    cdef uint64_t v = 0
    cdef int k
    for k in range(8):
        v = (v << 8) | a[k]
    return v

