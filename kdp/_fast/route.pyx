# cython: boundscheck=False, wraparound=False
"""The route stage, and ingress classification with the martian checks.

Stage contract (`RouteTable.route_batch`, Python `route(batch)`)
----------------------------------------------------------------
Reads: verdict, ip_ver, dst4/dst6 (post-NAT), src4/src6, l3_off, l4_off, ttl,
in_port, proto, icmp_type/code, tunnel, dport, frag.

For every V_PENDING IP packet, as Linux's ip_forward / ip6_forward decide:
  multicast, broadcast or IPv6 link-local destination (not from the host)
                          -> V_LOCAL, R_LINK_LOCAL: for the node, never forwarded
  no match, RT_BLACKHOLE  -> drop R_NO_ROUTE
  RT_HOST                 -> V_LOCAL, R_LOCAL_DELIVERY (out_port host); R_SVC_HEALTH_CHECK for
                             TCP to a Service's healthCheckNodePort (`health_ports`) on an
                             address the health server listens on (`health_addresses`); an echo request
                             (not from the host) is answered: V_REPLY, R_ECHO_REPLIED,
                             the reply routed back to its sender; IP-in-IP or VXLAN
                             that nothing decapsulated (see decap.pyx) is V_LOCAL with
                             R_TUNNEL_NOT_DECAPSULATED, so that a run can say so
  RT_LOCAL_POD, RT_REMOTE_NODE, RT_UPLINK (forwarding), unless from the host:
    TTL / hop limit <= 1  -> ICMP time exceeded to the sender (V_REJECT, R_TTL_EXCEEDED)
                             or, when no error may be sent, drop R_TTL_EXCEEDED
    larger than the route's MTU: IPv4 with DF -> ICMP fragmentation needed with the
                             route's MTU; IPv6 -> ICMPv6 packet too big (V_REJECT,
                             R_MTU_EXCEEDED; or drop when no error may be sent); IPv4
                             without DF goes on and is fragmented by the encap stage
    then TTL / hop limit decremented (IPv4 checksum updated incrementally, RFC 1624)
                          -> V_FORWARD, R_FORWARDED (stage ST_TX), out_port set
Answers built by earlier stages (V_REJECT, V_REPLY without a route) are routed back
to their destination the same way (out_port, route_id), without TTL handling.
Every ICMP answer goes out through the route of its own destination: a sender behind
a tunnel gets it encapsulated by the next stage. ICMP errors come from the node's
primary address of the family (kdp/_fast/icmp.pyx builds them).
Sets: route_id, out_port, verdict, stage, reason; TTL bytes in the packet. While the
packet is in cache, a forwarded packet that needs no fragments gets its Ethernet
addresses (set_link_addresses), or, when its route is a tunnel and the caller passes
the encap stage's egress_one, its tunnel headers as well: the common cases (IPv4 in
untagged Ethernet into IP-in-IP or VXLAN over IPv4) inline in this loop
(tunnel_out.pxd), the others through egress_one.
Returns the number of packets the encap stage still has work for (fragments, answers,
tunnels when no egress function was passed); none: the pipeline skips it.
Next stage: encap.

Ingress (`classify_ingress`), after decap, before conntrack
-----------------------------------------------------------
A packet with in_port NO_PORT gets the port of the local pod whose address is its
source (RT_LOCAL_POD host route), the host when its source is one of the node's
addresses (the node sent it), else the uplink; a packet dropped at rx (a copy the
capture saw leaving the node: captured_outgoing, otherhost) entered nowhere and keeps
NO_PORT. Then packets that did not come from
the host are checked as Linux's ip_route_input / ip6_rcv_core check packets from the
wire (stage ST_ROUTE):
  R_MARTIAN_SOURCE        source loopback (127/8, ::1), multicast, 255.255.255.255
                          or 0.0.0.0/8
  R_MARTIAN_LOCAL_SOURCE  source one of the node's own addresses
  R_MARTIAN_DESTINATION   destination loopback (127/8, ::1) or 0.0.0.0/8
These checks use the tuple as received: they run before any NAT. Packets from the
host port are exempt (kube-proxy's localhostNodePorts reach 127.0.0.1 from there).
"""
import ipaddress

import numpy as np
cimport numpy as cnp
from libc.string cimport memcpy, memset, memcmp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from kdp._fast.packet cimport (Batch, pkt_meta_t, drop, set_verdict, NO_PORT, NO_ID,
                               V_PENDING, V_FORWARD, V_LOCAL, V_REJECT, V_REPLY, ST_RX, ST_ROUTE, ST_TX, ST_ENCAP,
                               R_FORWARDED, R_LOCAL_DELIVERY, R_NO_ROUTE, R_TTL_EXCEEDED,
                               R_MTU_EXCEEDED, R_MARTIAN_SOURCE, R_MARTIAN_LOCAL_SOURCE,
                               R_MARTIAN_DESTINATION, R_LINK_LOCAL, R_ECHO_REPLIED,
                               R_TUNNEL_NOT_DECAPSULATED, R_SVC_HEALTH_CHECK, TUN_NONE, LT_ETHERNET,
                               FRAG_LATER, ip_length, segment_ip_length)
from kdp._fast.packet cimport FRAG_NONE, TUN_IPIP, TUN_VXLAN
from kdp._fast.tunnel_out cimport tunnel_fast
from kdp._fast.lpm cimport Lpm4, KDP_LPM_MISS
from kdp._fast.lpm6 cimport Lpm6
from kdp._fast.neigh cimport Neighbours, neigh_learn_upto
from kdp._fast.checksum cimport ld16, st16, st32, cs_apply, cs_d16, kdp_prefetch_w
from kdp._fast.icmp cimport (icmp_error, icmp_error_allowed, icmp_is_echo_request, icmp_echo_reply,
                             ICMP4_DEST_UNREACH, ICMP4_FRAG_NEEDED, ICMP4_TIME_EXCEEDED,
                             ICMP6_PKT_TOO_BIG, ICMP6_TIME_EXCEEDED)

cnp.import_array()

ROUTE_DTYPE = np.dtype([("b", "u1", sizeof(route_t))])

# route_t.tmeta is pkt_meta_t's bytes from l3_off to dst4 (tunnel_out.pxd copies it whole)
cdef pkt_meta_t _layout
if <size_t>(<char*>&_layout.dst4 - <char*>&_layout.l3_off) + 4 != TMETA_LEN:
    raise ImportError("pkt_meta_t: l3_off..dst4 is not TMETA_LEN bytes (route.pxd)")
ROUTE_SIZE = sizeof(route_t)

cdef enum:
    UPLINK_PORT = 0         # kdp.ports.UPLINK
    HOST_PORT = 1           # kdp.ports.HOST
    IPV6_MIN_MTU = 1280

# MACs a route uses when the configuration names none (kdp.control documents them):
# the egress port's own address, and the next hop's: "02:6b" + the last 4 bytes of
# the next hop's IP, or PLACEHOLDER_DST when the route has no next hop.
PLACEHOLDER_SRC = b"\x02\x6b\x64\x70\x00\x01"
PLACEHOLDER_DST = b"\x02\x6b\x64\x70\x00\x02"


def placeholder_mac(address):
    """The placeholder MAC of a next hop without a known one: 02:6b + its last 4 address bytes."""
    return b"\x02\x6b" + ipaddress.ip_address(address).packed[-4:]


def _mac(value, default):
    if value is None:
        return default
    if isinstance(value, (bytes, bytearray)) and len(value) == 6:
        return bytes(value)
    text = str(value).replace("-", ":")
    parts = text.split(":")
    if len(parts) != 6 or not all(len(x) == 2 for x in parts):
        raise ValueError(f"not a MAC address: {value!r}")
    return bytes(int(x, 16) for x in parts)


class Route:
    """One route: prefix -> kind, out port, next hop and what leaving through it takes.

    via          the next hop: the remote node (RT_REMOTE_NODE: the tunnel endpoint, or the
                 native next hop), a gateway (RT_UPLINK); pod host routes use the pod itself
    onlink       the next hop is each packet's own destination (a connected subnet)
    mtu          largest IP packet the route carries, inner for tunnels (0: no limit)
    mac          the next hop's MAC when configured (learned neighbours never replace it)
    src_mac      the egress port's MAC
    encap, vni, vxlan_port, vtep_mac   the tunnel to the remote node
    """
    __slots__ = ("prefix", "kind", "port", "via", "encap", "note", "mtu", "mac", "src_mac",
                 "onlink", "vni", "vxlan_port", "vtep_mac")

    def __init__(self, prefix, kind, port=UPLINK_PORT, via=None, encap=ENCAP_NONE, note="",
                 mtu=0, mac=None, src_mac=None, onlink=False, vni=1, vxlan_port=4789,
                 vtep_mac=None):
        self.prefix = ipaddress.ip_network(prefix, strict=False)
        self.kind = RouteKind(kind)
        self.port = int(port)
        self.via = ipaddress.ip_address(via) if via is not None else None
        self.encap = Encap(encap)
        self.note = note
        if not 0 <= int(mtu) <= 0xFFFF:
            raise ValueError(f"mtu must be 0..65535, got {mtu}")
        self.mtu = int(mtu)
        self.mac = _mac(mac, None)
        self.src_mac = _mac(src_mac, PLACEHOLDER_SRC)
        self.onlink = bool(onlink)
        if not 0 <= int(vni) < (1 << 24):
            raise ValueError(f"vni must be 0..16777215, got {vni}")
        self.vni = int(vni)
        if not 0 < int(vxlan_port) <= 0xFFFF:
            raise ValueError(f"vxlan_port must be 1..65535, got {vxlan_port}")
        self.vxlan_port = int(vxlan_port)
        self.vtep_mac = _mac(vtep_mac, None)
        if self.encap != ENCAP_NONE and self.via is None:
            raise ValueError(f"route {self.prefix}: a tunnel needs the remote node's address (via)")

    def next_hop(self):
        """The next hop's address (None: per packet, or none)."""
        if self.via is not None:
            return self.via
        if self.kind == RT_LOCAL_POD and self.prefix.prefixlen == self.prefix.max_prefixlen:
            return self.prefix.network_address
        return None

    def __repr__(self):
        via = f" via {self.via}" if self.via else ""
        enc = f" {self.encap.name}" if self.encap != ENCAP_NONE else ""
        return f"Route({self.prefix} {self.kind.name}{via}{enc} port={self.port})"


cdef inline void _dec_ttl(uint8_t* ip, uint8_t ver) noexcept nogil:
    cdef uint16_t old_word
    if ver == 6:
        ip[7] -= 1
        return
    old_word = ld16(ip + 8)             # TTL and protocol share a 16-bit word
    ip[8] -= 1
    st16(ip + 10, cs_apply(ld16(ip + 10), cs_d16(0, old_word, ld16(ip + 8))))


cdef inline bint _v6_loopback(const uint8_t* a) noexcept nogil:
    cdef int k
    for k in range(15):
        if a[k]:
            return False
    return a[15] == 1


cdef inline bint _has4(const uint32_t* a, Py_ssize_t n, uint32_t x) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(n):
        if a[k] == x:
            return True
    return False


cdef inline bint _has6(const uint8_t* a, Py_ssize_t n, const uint8_t* x) noexcept nogil:
    cdef Py_ssize_t k
    for k in range(n):
        if memcmp(a + 16 * k, x, 16) == 0:
            return True
    return False


cdef inline uint16_t _martian(RouteTable t, const pkt_meta_t* p, bint own_checked) noexcept nogil:
    """own_checked: the source's route was looked up already (one of the node's own
    addresses would have made the host the ingress port)."""
    cdef uint32_t s, d
    if p.ip_ver == 4:
        s = p.src4 >> 24
        d = p.dst4 >> 24
        if s == 127 or s == 0 or (s >> 4) == 0xE or p.src4 == 0xFFFFFFFFU:
            return R_MARTIAN_SOURCE
        if d == 127 or d == 0:
            return R_MARTIAN_DESTINATION
        if not own_checked and _has4(t.local4, t.n_local4, p.src4):
            return R_MARTIAN_LOCAL_SOURCE
    elif p.ip_ver == 6:
        if p.src6[0] == 0xFF or _v6_loopback(p.src6):
            return R_MARTIAN_SOURCE
        if _v6_loopback(p.dst6):
            return R_MARTIAN_DESTINATION
        if not own_checked and _has6(t.local6, t.n_local6, p.src6):
            return R_MARTIAN_LOCAL_SOURCE
    return 0


cdef inline bint _link_scope(const pkt_meta_t* p) noexcept nogil:
    if p.ip_ver == 4:
        return (p.dst4 >> 28) == 0xE or p.dst4 == 0xFFFFFFFFU
    return p.dst6[0] == 0xFF or (p.dst6[0] == 0xFE and (p.dst6[1] & 0xC0) == 0x80)


cdef inline bint _looks_like_tunnel(const pkt_meta_t* p, const uint8_t* pkt) noexcept nogil:
    """IP-in-IP, or UDP to a VXLAN port with a VXLAN header with the I flag."""
    if p.tunnel != TUN_NONE:
        return True
    if p.proto != 17 or p.l4_off == 0 or p.l4_off + 16 > p.len:
        return False
    # IANA's port, Linux's default (flannel, Cilium), Calico's IPv6 port
    if p.dport == 4789 or p.dport == 8472 or p.dport == 4790:
        return (pkt[p.l4_off + 8] & 0x08) != 0
    return False


cdef void _lookup_batch(RouteTable t, Batch b, bint sources) noexcept nogil:
    """Route ids of the batch's destinations (sources: of its sources) into t.ids (IPv4)
    and t.ids6 (IPv6), each family in one pass when the batch has packets of it (sources:
    packets without an ingress port). The entries of other packets are meaningless."""
    cdef Py_ssize_t i
    cdef bint v4 = False, v6 = False
    for i in range(b.count):
        if sources and b.m[i].in_port != NO_PORT:
            continue                    # its port is known: no source lookup needed
        if b.m[i].ip_ver == 4:
            v4 = True
        elif b.m[i].ip_ver == 6:
            v6 = True
    if v4:
        t.lpm4.lookup_strided(<const char*>(&b.m[0].src4 if sources else &b.m[0].dst4),
                              sizeof(pkt_meta_t), t.ids, b.count)
    if v6:
        t.lpm6.lookup_strided(<const char*>(&b.m[0].src6[0] if sources else &b.m[0].dst6[0]),
                              sizeof(pkt_meta_t), t.ids6, b.count)


cdef uint32_t _answer_out(RouteTable t, Neighbours nb, Batch b, Py_ssize_t i,
                          tunnel_fn_t tunnel) noexcept nogil:
    """An answer kdp built (route_id set): addressed (and put in its tunnel) now, with
    the neighbours packets up to this one taught, when the pipeline handed the route
    stage the encap stage's egress_one; an answer over its route's MTU is dropped
    R_MTU_EXCEEDED as the encap stage drops it. Returns 1 when it is left to the encap
    stage (no tunnel function: the stages run one by one), else 0."""
    cdef pkt_meta_t* p = &b.m[i]
    cdef const route_t* rec
    if tunnel == NULL:
        return 1
    if p.out_port == HOST_PORT or p.ip_ver == 0 or p.route_id >= <uint32_t>t.n_routes:
        return 0
    rec = &t.r[p.route_id]
    if rec.mtu and segment_ip_length(p, b.buf + p.off + p.l3_off) > rec.mtu:
        drop(p, ST_ENCAP, R_MTU_EXCEEDED)
        return 0
    tunnel(t, nb, b, i)
    return 0


cdef inline uint32_t _lookup_dst(RouteTable t, const pkt_meta_t* p) noexcept nogil:
    if p.ip_ver == 4:
        return t.lpm4.lookup_one(p.dst4)
    return t.lpm6.lookup_one(_be64(p.dst6), _be64(p.dst6 + 8))


cdef inline void _placeholder(uint8_t* mac, const pkt_meta_t* p) noexcept nogil:
    mac[0] = 0x02
    mac[1] = 0x6B
    if p.ip_ver == 4:
        st32(mac + 2, p.dst4)
    else:
        memcpy(mac + 2, p.dst6 + 12, 4)


cdef void set_link_addresses(const route_t* rec, Neighbours n, Batch b, pkt_meta_t* p) noexcept nogil:
    """The Ethernet addresses of a frame leaving through rec (route.pxd)."""
    cdef uint8_t* eth = b.buf + p.off
    cdef bint found = False
    if p.linktype != LT_ETHERNET or p.len < 14:
        return
    if not (rec.flags & RF_STATIC_MAC):
        if n is not None and (n.count4 != 0 or n.count6 != 0):
            if rec.flags & RF_NEXTHOP:
                if rec.flags & RF_VIA6:
                    found = n.lookup6(rec.via6, eth)
                else:
                    found = n.lookup4(rec.via4, eth)
            elif rec.flags & RF_ONLINK:
                found = n.lookup6(p.dst6, eth) if p.ip_ver == 6 else n.lookup4(p.dst4, eth)
        if not found and (rec.flags & RF_ONLINK):
            _placeholder(eth, p)
            found = True
    if not found:
        memcpy(eth, rec.dst_mac, 6)
    memcpy(eth + 6, rec.src_mac, 6)


cdef int _template(RouteTable t, route_t* rec, object route) except -1:
    """The tunnel headers of a route (route.pxd: tmpl), per-packet fields zero."""
    cdef uint8_t* h = rec.tmpl
    cdef uint8_t* o = h + 14
    cdef uint8_t* u
    cdef bint v6 = route.via.version == 6
    cdef uint32_t dst4
    if route.encap == ENCAP_IPIP and v6:
        raise ValueError(f"route {route.prefix}: IP-in-IP runs over IPv4 (via {route.via})")
    if (v6 and not t.has_src6) or (not v6 and not t.has_src4):
        raise ValueError(f"route {route.prefix}: the node has no IPv{route.via.version} "
                         "address to send its tunnel from")
    memset(h, 0, sizeof(rec.tmpl))
    memcpy(h, rec.dst_mac, 6)
    memcpy(h + 6, rec.src_mac, 6)
    h[12] = 0x86 if v6 else 0x08
    h[13] = 0xDD if v6 else 0x00
    if v6:
        o[0] = 0x60
        o[6] = 17
        o[7] = 64                       # Linux's default hop limit (vxlan ttl 0)
        memcpy(o + 8, t.src6, 16)
        memcpy(o + 24, rec.via6, 16)
        u = o + 40
    else:
        dst4 = rec.via4
        o[0] = 0x45
        o[12] = <uint8_t>(t.src4 >> 24); o[13] = <uint8_t>(t.src4 >> 16)
        o[14] = <uint8_t>(t.src4 >> 8); o[15] = <uint8_t>t.src4
        o[16] = <uint8_t>(dst4 >> 24); o[17] = <uint8_t>(dst4 >> 16)
        o[18] = <uint8_t>(dst4 >> 8); o[19] = <uint8_t>dst4
        rec.tmpl_sum = (0x4500 + (t.src4 >> 16) + (t.src4 & 0xFFFF)
                        + (dst4 >> 16) + (dst4 & 0xFFFF))
        u = o + 20
    if route.encap == ENCAP_IPIP:
        rec.tmpl_len = 34               # TTL, protocol, DF: per packet
        _tunnel_meta(t, rec)
        return 0
    if not v6:
        o[8] = 64                       # Linux's default TTL (vxlan ttl 0)
        o[9] = 17
        rec.tmpl_sum += (64 << 8) | 17
    u[2] = <uint8_t>(rec.vxlan_port >> 8)
    u[3] = <uint8_t>rec.vxlan_port
    u[8] = 0x08                         # VXLAN: I flag
    u[12] = <uint8_t>(rec.vni >> 16)
    u[13] = <uint8_t>(rec.vni >> 8)
    u[14] = <uint8_t>rec.vni
    memcpy(u + 16, rec.vtep_mac, 6)     # the inner Ethernet header
    memcpy(u + 22, t.vtep_mac, 6)
    u[28] = 0x08                        # IPv4 inside unless the packet says otherwise
    rec.tmpl_len = 84 if v6 else 64
    if not v6:
        _tunnel_meta(t, rec)
    return 0


cdef void _tunnel_meta(RouteTable t, route_t* rec) noexcept:
    """An IPv4-outer tunnel route's metadata template (route.pxd: tmeta), filled field
    by field as the encap stage's general case writes them, and its tfast."""
    cdef pkt_meta_t m
    cdef bint ipip = rec.encap == ENCAP_IPIP
    if rec.kind != RT_REMOTE_NODE:
        return                          # (egress_one only encapsulates towards nodes)
    memset(&m, 0, sizeof(m))
    m.l3_off = 14
    m.l4_off = 34
    m.inner_off = 34 if ipip else 50
    m.quote_off = 0
    m.ethertype = 0x0800
    m.vlan = NO_PORT
    m.ip_ver = 4
    m.proto = 4 if ipip else 17
    m.ttl = 0 if ipip else 64           # IP-in-IP: the inner's, per packet
    m.frag = FRAG_NONE
    m.tunnel = m.encap = TUN_IPIP if ipip else TUN_VXLAN
    m.dport = 0 if ipip else rec.vxlan_port
    m.src4 = t.src4
    m.dst4 = rec.via4
    memcpy(rec.tmeta, &m.l3_off, TMETA_LEN)
    rec.tfast = TF_IPIP4 if ipip else TF_VXLAN4


cdef class RouteTable:
    """The node's routes compiled into LPM tables plus route records.

    Built whole from a list of `Route`s and swapped whole by the data plane.
    A packet's route_id is the index of its route in `routes`.

    node_addresses   the node's own addresses (martian checks; the first of each
                     family is the primary: ICMP errors come from it)
    vtep_mac         this node's VXLAN VTEP MAC (inner Ethernet source of VXLAN)
    martians         drop martian packets from the wire (see the module docstring)
    health_ports     TCP ports of kube-proxy's health check server (Services'
                     healthCheckNodePorts): R_SVC_HEALTH_CHECK
    health_addresses the addresses that server listens on (None: all; 0.0.0.0 / ::
                     every address of the family)
    """

    def __init__(self, routes=(), node_addresses=(), vtep_mac=None, martians=True, health_ports=(),
                 health_addresses=None):
        self.routes = list(routes)
        self.health_arr = np.zeros(8192, dtype=np.uint8)
        for hp in health_ports:
            if not 0 < hp < 65536:
                raise ValueError(f"health check port out of range: {hp}")
            self.health_arr[hp >> 3] |= 1 << (hp & 7)
        self.health_ports = <const uint8_t*>cnp.PyArray_DATA(self.health_arr)
        self.has_health_ports = len(health_ports) != 0
        haddrs = [ipaddress.ip_address(a) for a in (health_addresses or ())]
        self.health_any4 = health_addresses is None or ipaddress.IPv4Address(0) in haddrs
        self.health_any6 = health_addresses is None or ipaddress.IPv6Address(0) in haddrs
        h4 = [int(a) for a in haddrs if a.version == 4]
        h6 = [a.packed for a in haddrs if a.version == 6]
        self.health4_arr = np.array(h4 or [0], dtype=np.uint32)
        self.health6_arr = np.frombuffer(b"".join(h6) or bytes(16), dtype=np.uint8).copy()
        self.health4 = <const uint32_t*>cnp.PyArray_DATA(self.health4_arr)
        self.health6 = <const uint8_t*>cnp.PyArray_DATA(self.health6_arr)
        self.n_health4 = len(h4)
        self.n_health6 = len(h6)
        self.n_routes = len(self.routes)
        if self.n_routes >= 0xFFFF0000:
            raise ValueError("too many routes")
        self.records = np.zeros(max(self.n_routes, 1), dtype=ROUTE_DTYPE)
        self.r = <route_t*>cnp.PyArray_DATA(self.records)
        self.lpm4 = Lpm4()
        self.lpm6 = Lpm6()
        self.scratch = np.zeros(0, dtype=np.uint32)
        self.ids = NULL
        self.martians = martians
        self.n_tunnels = 0
        cdef route_t* rec
        cdef bytes mac
        addrs = [ipaddress.ip_address(a) for a in node_addresses]
        v4 = [int(a) for a in addrs if a.version == 4]
        v6 = [a.packed for a in addrs if a.version == 6]
        self.local4_arr = np.array(v4 or [0], dtype=np.uint32)
        self.local6_arr = np.frombuffer(b"".join(v6) or bytes(16), dtype=np.uint8).copy()
        self.local4 = <const uint32_t*>cnp.PyArray_DATA(self.local4_arr)
        self.local6 = <const uint8_t*>cnp.PyArray_DATA(self.local6_arr)
        self.n_local4 = len(v4)
        self.n_local6 = len(v6)
        self.has_src4 = bool(v4)
        self.has_src6 = bool(v6)
        self.src4 = v4[0] if v4 else 0
        memset(self.src6, 0, 16)
        if v6:
            memcpy(self.src6, <const char*>v6[0], 16)
        mac = _mac(vtep_mac, None) or (placeholder_mac(addrs[0]) if addrs else PLACEHOLDER_SRC)
        memcpy(self.vtep_mac, <const char*>mac, 6)
        for i, route in enumerate(self.routes):
            rec = &self.r[i]
            rec.kind = <uint8_t>route.kind
            rec.encap = <uint8_t>route.encap
            rec.port = <uint16_t>route.port
            rec.mtu = <uint16_t>route.mtu
            rec.vni = route.vni
            rec.vxlan_port = route.vxlan_port
            rec.flags = 0
            if route.prefix.prefixlen == route.prefix.max_prefixlen:
                rec.flags |= RF_HOST
            if route.onlink:
                rec.flags |= RF_ONLINK
            hop = route.next_hop()
            if hop is not None:
                rec.flags |= RF_NEXTHOP
                if hop.version == 4:
                    rec.via4 = int(hop)
                else:
                    rec.flags |= RF_VIA6
                    memcpy(rec.via6, <const char*>hop.packed, 16)
            if route.mac is not None:
                rec.flags |= RF_STATIC_MAC
                mac = route.mac
            elif hop is not None:
                mac = placeholder_mac(hop)
            else:
                mac = PLACEHOLDER_DST
            memcpy(rec.dst_mac, <const char*>mac, 6)
            mac = route.src_mac
            memcpy(rec.src_mac, <const char*>mac, 6)
            mac = route.vtep_mac if route.vtep_mac is not None else \
                (placeholder_mac(route.via) if route.via is not None else PLACEHOLDER_DST)
            memcpy(rec.vtep_mac, <const char*>mac, 6)
            if route.encap != ENCAP_NONE:
                _template(self, rec, route)
                self.n_tunnels += 1
            table = self.lpm4 if route.prefix.version == 4 else self.lpm6
            table.insert(route.prefix, i)

    def for_worker(self):
        """A RouteTable on the same tables (shared, read only) with its own scratch: for a
        pipeline in another thread (replay --workers N, kdp/shards.py)."""
        cdef RouteTable c = RouteTable.__new__(RouteTable)
        c.lpm4 = self.lpm4
        c.lpm6 = self.lpm6
        c.records = self.records
        c.r = self.r
        c.n_routes = self.n_routes
        c.routes = self.routes
        c.scratch = np.zeros(0, dtype=np.uint32)
        c.ids = NULL
        c.ids6 = NULL
        c.local4_arr = self.local4_arr
        c.local6_arr = self.local6_arr
        c.local4 = self.local4
        c.local6 = self.local6
        c.n_local4 = self.n_local4
        c.n_local6 = self.n_local6
        c.src4 = self.src4
        memcpy(c.src6, self.src6, 16)
        c.has_src4 = self.has_src4
        c.has_src6 = self.has_src6
        memcpy(c.vtep_mac, self.vtep_mac, 6)
        c.martians = self.martians
        c.n_tunnels = self.n_tunnels
        c.health_arr = self.health_arr
        c.health_ports = self.health_ports
        c.has_health_ports = self.has_health_ports
        c.health_any4 = self.health_any4
        c.health_any6 = self.health_any6
        c.health4_arr = self.health4_arr
        c.health6_arr = self.health6_arr
        c.health4 = self.health4
        c.health6 = self.health6
        c.n_health4 = self.n_health4
        c.n_health6 = self.n_health6
        return c

    @property
    def node_addresses(self):
        """The node's own addresses (ipaddress objects), primary of each family first."""
        out = [ipaddress.IPv4Address(int(a)) for a in self.local4_arr[:self.n_local4]]
        out += [ipaddress.IPv6Address(bytes(self.local6_arr[16 * k:16 * k + 16]))
                for k in range(self.n_local6)]
        return out

    @property
    def node_vtep_mac(self):
        return bytes(self.vtep_mac[:6])

    def _ensure_scratch(self, Py_ssize_t n):
        if self.scratch.shape[0] < 2 * n:
            self.scratch = np.zeros(2 * n, dtype=np.uint32)
        self.ids = <uint32_t*>cnp.PyArray_DATA(self.scratch)
        self.ids6 = self.ids + <Py_ssize_t>(self.scratch.shape[0] // 2)

    def lookup(self, address):
        """The Route for an address, or None."""
        addr = ipaddress.ip_address(address)
        rid = (self.lpm4 if addr.version == 4 else self.lpm6).lookup(addr)
        return None if rid == KDP_LPM_MISS or rid < 0 else self.routes[rid]

    cdef void classify_ingress(self, Batch b) noexcept nogil:
        cdef Py_ssize_t i
        cdef pkt_meta_t* p
        cdef uint32_t rid
        cdef uint16_t m
        cdef bint looked_up
        # the sources in one batch lookup a family: one pass under the table's read
        # guard, not a guarded lookup (atomic enter and leave) a packet (ids, ids6:
        # route_batch's scratch, refilled there with destinations)
        _lookup_batch(self, b, True)
        for i in range(b.count):
            p = &b.m[i]
            looked_up = False
            if p.in_port == NO_PORT and not (p.verdict != V_PENDING and p.stage == ST_RX):
                # every packet gets a port, decided or not (the log names it), but one the
                # capture saw leaving (dropped at rx) entered nowhere
                p.in_port = UPLINK_PORT
                if p.ip_ver == 4 or p.ip_ver == 6:
                    rid = self.ids[i] if p.ip_ver == 4 else self.ids6[i]
                    looked_up = True
                    if rid != KDP_LPM_MISS and (self.r[rid].flags & RF_HOST):
                        if self.r[rid].kind == RT_LOCAL_POD:
                            p.in_port = self.r[rid].port
                        elif self.r[rid].kind == RT_HOST:
                            p.in_port = HOST_PORT
            if p.verdict != V_PENDING or p.ip_ver == 0:
                continue
            if self.martians and p.in_port != HOST_PORT:
                m = _martian(self, p, looked_up)
                if m:
                    drop(p, ST_ROUTE, m)

    cdef bint route_answer(self, Batch b, Py_ssize_t i) noexcept nogil:
        """Route an answer kdp built (ICMP error, echo reply, reject) to its destination:
        sets route_id and out_port. False when no route leads there."""
        cdef pkt_meta_t* p = &b.m[i]
        cdef uint32_t rid = _lookup_dst(self, p)
        cdef route_t* rec
        if rid == KDP_LPM_MISS:
            return False
        rec = &self.r[rid]
        if rec.kind == RT_BLACKHOLE:
            return False
        p.route_id = rid
        p.out_port = HOST_PORT if rec.kind == RT_HOST else rec.port
        return True

    cdef void send_error(self, Batch b, Py_ssize_t i, uint8_t type, uint8_t code, uint32_t info,
                         uint8_t stage, uint16_t reason) noexcept nogil:
        """Answer packet i with an ICMP error (V_REJECT at stage with reason), routed back
        to its sender; drop it with the reason when no error may or can be sent."""
        cdef pkt_meta_t* p = &b.m[i]
        cdef uint16_t r
        if not icmp_error_allowed(p, type == ICMP6_PKT_TOO_BIG and p.ip_ver == 6) or \
                (p.ip_ver == 4 and not self.has_src4) or (p.ip_ver == 6 and not self.has_src6):
            drop(p, stage, reason)
            return
        r = icmp_error(b, i, type, code, info, self.src4, self.src6)
        if r:
            drop(p, stage, r)
            return
        if not self.route_answer(b, i):
            drop(p, stage, reason)
            return
        set_verdict(p, V_REJECT, stage, reason)

    cdef uint32_t route_batch(self, Batch b, Neighbours nb, tunnel_fn_t tunnel) noexcept nogil:
        cdef Py_ssize_t i
        cdef pkt_meta_t* p
        cdef uint32_t rid, mtu, n
        cdef uint32_t egress = 0
        cdef route_t* rec
        cdef uint8_t* ip
        cdef bint whole
        _lookup_batch(self, b, False)
        for i in range(b.count):
            if nb is not None and nb.next_note < nb.n_notes and nb.notes[nb.next_note].index <= i:
                neigh_learn_upto(nb, i)             # what packets up to this one taught
            if tunnel != NULL and self.n_tunnels and i + 4 < b.count:
                # the headroom line a tunnel's headers go into, cold since the packet was
                # copied in: fetched a few packets ahead while routes send some into tunnels
                kdp_prefetch_w(b.buf + b.m[i + 4].off - 64)
            p = &b.m[i]
            if p.verdict != V_PENDING:
                if (p.verdict == V_REJECT or p.verdict == V_REPLY) and p.route_id == NO_ID \
                        and p.ip_ver != 0:
                    if self.route_answer(b, i):     # else it leaves as its stage sent it
                        egress += _answer_out(self, nb, b, i, tunnel)
                continue
            if p.ip_ver == 0:
                continue
            if p.in_port != HOST_PORT and _link_scope(p):
                set_verdict(p, V_LOCAL, ST_ROUTE, R_LINK_LOCAL)
                p.out_port = HOST_PORT
                continue
            rid = self.ids6[i] if p.ip_ver == 6 else self.ids[i]
            p.route_id = rid
            if rid == KDP_LPM_MISS:
                drop(p, ST_ROUTE, R_NO_ROUTE)
                continue
            rec = &self.r[rid]
            if rec.kind == RT_HOST:
                p.out_port = HOST_PORT
                if p.in_port != HOST_PORT and icmp_is_echo_request(p, b.buf + p.off):
                    icmp_echo_reply(b, p)
                    p.route_id = NO_ID
                    if self.route_answer(b, i):
                        set_verdict(p, V_REPLY, ST_ROUTE, R_ECHO_REPLIED)
                        egress += _answer_out(self, nb, b, i, tunnel)
                    else:
                        drop(p, ST_ROUTE, R_NO_ROUTE)
                elif _looks_like_tunnel(p, b.buf + p.off):
                    set_verdict(p, V_LOCAL, ST_ROUTE, R_TUNNEL_NOT_DECAPSULATED)
                elif self.has_health_ports and p.proto == 6 and p.frag != FRAG_LATER and \
                        (self.health_ports[p.dport >> 3] >> (p.dport & 7)) & 1 and \
                        ((self.health_any4 or _has4(self.health4, self.n_health4, p.dst4)) if p.ip_ver == 4
                         else (self.health_any6 or _has6(self.health6, self.n_health6, p.dst6))):
                    # kube-proxy accepts these in its filter rules: its health server answers
                    # (on its NodePort addresses; elsewhere nothing listens)
                    set_verdict(p, V_LOCAL, ST_ROUTE, R_SVC_HEALTH_CHECK)
                else:
                    set_verdict(p, V_LOCAL, ST_ROUTE, R_LOCAL_DELIVERY)
                continue
            if rec.kind == RT_BLACKHOLE:
                drop(p, ST_ROUTE, R_NO_ROUTE)
                continue
            ip = b.buf + p.off + p.l3_off
            if p.in_port != HOST_PORT:
                if p.ttl <= 1:
                    self.send_error(b, i, ICMP4_TIME_EXCEEDED if p.ip_ver == 4 else ICMP6_TIME_EXCEEDED,
                                    0, 0, ST_ROUTE, R_TTL_EXCEEDED)
                    if p.verdict == V_REJECT:
                        egress += _answer_out(self, nb, b, i, tunnel)
                    continue
            mtu = rec.mtu
            # a GSO super-frame goes into a tunnel as segments: kdp cuts it (segment.pyx)
            whole = p.gso_size == 0 or rec.encap == ENCAP_NONE
            if mtu:
                n = segment_ip_length(p, ip)
                if n > mtu:
                    whole = False
                    if p.ip_ver == 6:
                        self.send_error(b, i, ICMP6_PKT_TOO_BIG, 0,
                                        mtu if mtu >= IPV6_MIN_MTU else IPV6_MIN_MTU,
                                        ST_ROUTE, R_MTU_EXCEEDED)
                        if p.verdict == V_REJECT:
                            egress += _answer_out(self, nb, b, i, tunnel)
                        continue
                    if ip[6] & 0x40:        # DF
                        self.send_error(b, i, ICMP4_DEST_UNREACH, ICMP4_FRAG_NEEDED, mtu,
                                        ST_ROUTE, R_MTU_EXCEEDED)
                        if p.verdict == V_REJECT:
                            egress += _answer_out(self, nb, b, i, tunnel)
                        continue
            if p.in_port != HOST_PORT:
                _dec_ttl(ip, p.ip_ver)
                p.ttl -= 1
            p.out_port = rec.port
            set_verdict(p, V_FORWARD, ST_TX, R_FORWARDED)
            if not whole:
                egress += 1                             # fragments: the encap stage
            elif rec.encap:
                if tunnel != NULL:
                    # in the tunnel now, while in cache: the common cases inline
                    if not tunnel_fast(nb, b, i, p, rec):
                        tunnel(self, nb, b, i)
                else:
                    egress += 1
            elif p.out_port != HOST_PORT:
                set_link_addresses(rec, nb, b, p)       # its header is in cache now
        if nb is not None:
            neigh_learn_upto(nb, b.count)           # (the encap stage's packets see it all)
        return egress

    def classify(self, Batch b):
        """Assign in_port by source address where the capture gave none; drop martians."""
        self._ensure_scratch(b.capacity)
        with nogil:
            self.classify_ingress(b)

    def route(self, Batch b, Neighbours neighbours=None):
        """Run the route stage over a batch (see the module docstring); returns how many
        packets the encap stage has work for."""
        cdef uint32_t egress
        self._ensure_scratch(b.capacity)
        with nogil:
            egress = self.route_batch(b, neighbours, NULL)
        return egress

    def record(self, Py_ssize_t rid):
        """The compiled record of route `rid` as a dict (for tests and `kdp show`)."""
        if rid < 0 or rid >= self.n_routes:
            raise IndexError(rid)
        cdef route_t* rec = &self.r[rid]
        return {"kind": RouteKind(rec.kind), "encap": Encap(rec.encap), "port": rec.port,
                "mtu": rec.mtu, "flags": rec.flags, "dst_mac": bytes(rec.dst_mac[:6]),
                "src_mac": bytes(rec.src_mac[:6]), "vtep_mac": bytes(rec.vtep_mac[:6]),
                "vni": rec.vni, "vxlan_port": rec.vxlan_port}


cdef inline uint64_t _be64(const uint8_t* a) noexcept nogil:
    cdef uint64_t v = 0
    cdef int k
    for k in range(8):
        v = (v << 8) | a[k]
    return v
