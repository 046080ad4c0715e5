# cython: boundscheck=False, wraparound=False
"""The encap stage: tunnels towards other nodes, and the Ethernet addresses of every
transmitted packet.

Stage contract (`encap_batch`, Python `encap(batch, routes, neighbours)`)
-------------------------------------------------------------------------
Runs after route, on packets it transmits: V_FORWARD, V_REJECT and V_REPLY with a
route (route_id) whose out_port is not the host.
Reads: route_id, off, len, wire_len, linktype, l3_off, ip_ver, src/dst, sport/dport,
proto, frag, hash; the route record (kdp/_fast/route.pxd).

  MTU: a forwarded IPv4 packet without DF larger than the route's MTU (route.pyx
       answered those with DF) gets reason R_FORWARDED_FRAGMENTED and is left for the
       fragment pass (frag.pyx), which splits it and then calls egress_one on every
       piece; an answer kdp built that is larger than the MTU is dropped R_MTU_EXCEEDED.
  GSO: a TCP super-frame from a TAP (gso_size set: kdp attach with TSO) is checked
       against the MTU by its segments' size; one bound for a tunnel gets reason
       R_FORWARDED_SEGMENTED and is left for the segment pass (segment.pyx), which cuts
       it and calls egress_one on every segment (no tunnel offload exists for TAPs);
       one whose segments do not fit is never fragmented: dropped R_MTU_EXCEEDED (or
       answered by the route stage when it has DF, as TCP's always has).
  Tunnel (route encap, RT_REMOTE_NODE), the outer headers written into the headroom in
       front of the packet (no payload copy), as Linux's tunnel devices write them:
    IP-in-IP (Calico's tunl0, `ttl inherit nopmtudisc`): outer IPv4 from the node's
       primary address to the route's next hop (the remote node), protocol 4 (41 for
       IPv6 inside), TTL = the inner TTL / hop limit (already decremented), DF = the
       inner IPv4 DF, DSCP 0 and ECN copied from the inner header (CE becomes ECT(0):
       RFC 6040's normal mode, Linux's INET_ECN_encapsulate), identification = the
       inner IPv4 identification (Linux draws one; kdp stays reproducible; IPv6
       inside: the flow hash). Reason R_FORWARDED_IPIP.
    VXLAN (RFC 7348; Linux's vxlan device with default settings): outer IPv4 or IPv6
       (the route's next hop's family) + UDP + VXLAN header (I flag, the route's VNI) +
       the inner Ethernet frame (destination the remote VTEP's MAC, source this node's,
       untagged). UDP destination the route's VXLAN port, source port from a hash of
       the inner flow as Linux's udp_flow_src_port picks it (32768..60998: the hash
       scaled onto the local port range; kdp's hash is symmetric, as Linux's flow
       hash, and leaves out ports for fragments). Outer TTL / hop limit 64, DF clear,
       DSCP 0, ECN copied as above; UDP checksum 0 over IPv4, computed over IPv6
       (RFC 6935/6936: Linux sets it unless udp6zerocsumtx). Reason R_FORWARDED_VXLAN.
    Ethernet padding after the inner IP packet is not carried. `encap` is set to the
    tunnel type; the metadata then describe the packet as transmitted (outer
    addresses and protocol, l3_off at the outer header, tunnel and inner_off as the
    parser would set them).
  Addresses (Ethernet frames): source = the egress port's MAC (the route's src_mac);
       destination = the next hop's MAC: configured for the route (RF_STATIC_MAC),
       else learned (neigh.pyx), else the route's placeholder (route.set_link_addresses).
       A forwarded packet that needs no fragments, and every answer kdp built, was
       addressed (and put in its tunnel: tunnel_out.pxd's inline cases, else egress_one)
       by the route stage already, while
       it was in cache and with the neighbours the packets before it taught, and is
       skipped here; this stage runs only when the route stage left it work (in the
       pipeline: fragments; stage by stage, `encap()`: the answers too). Other
       link types are left as they are (a capture of raw IP stays raw IP; an
       encapsulated packet on a non-Ethernet link is written as raw IP).
Drops (stage ST_ENCAP): R_NO_HEADROOM (outer headers do not fit in front of the
packet: cannot happen with HEADROOM 128), R_MTU_EXCEEDED (an answer over the MTU).
Next stage: account (the fragment pass first when encap_batch returned > 0).
"""
import numpy as np
cimport numpy as cnp
from libc.string cimport memcpy, memmove, memset
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from kdp._fast.packet cimport (Batch, pkt_meta_t, drop, NO_ID, V_FORWARD, V_REJECT, V_REPLY,
                               ST_ENCAP, LT_ETHERNET, LT_RAW, NO_PORT, FRAG_NONE,
                               TUN_IPIP, TUN_VXLAN, R_FORWARDED, R_FORWARDED_IPIP,
                               R_FORWARDED_VXLAN, R_FORWARDED_FRAGMENTED, R_NO_HEADROOM,
                               R_MTU_EXCEEDED, R_FORWARDED_SEGMENTED, ip_length, segment_ip_length)
from kdp._fast.segment cimport gso_segments, gso_complete
from kdp._fast.route cimport (RouteTable, route_t, set_link_addresses, RT_REMOTE_NODE,
                              ENCAP_NONE, ENCAP_IPIP, ENCAP_VXLAN, RF_STATIC_MAC, RF_VIA6)
from kdp._fast.neigh cimport Neighbours
from kdp._fast.checksum cimport ld16, st16, st32, cs_sum, cs_fold, kdp_prefetch_w
from kdp._fast.headroom cimport batch_floor
from kdp._fast.tunnel_out cimport tunnel_fast, vxlan_sport, symmetric_hash, ecn_encap

cnp.import_array()

cdef enum:
    HOST_PORT = 1               # kdp.ports.HOST
    PREFETCH_AHEAD = 16
    VXLAN_TTL = 64              # Linux: ip4_dst_hoplimit / ip6_dst_hoplimit by default


cdef inline uint16_t _encapsulate(RouteTable t, Neighbours n, Batch b, Py_ssize_t i,
                                  const route_t* rec) noexcept nogil:
    """Prepend the tunnel headers to packet i: the route's template (route.pxd: tmpl)
    copied in front of the inner packet, its per-packet fields patched. Returns 0 or a
    drop reason.

    Every field of the metadata, the route and the inner header it needs is read into a
    local before the first byte is written: the packet bytes are written through a
    uint8_t pointer, which the compiler must assume can alias any of them (it would
    reload each after every store)."""
    cdef pkt_meta_t* p = &b.m[i]
    cdef uint32_t l3 = p.l3_off
    cdef uint32_t ip_at = p.off + l3
    cdef uint8_t* ip = b.buf + ip_at
    cdef uint8_t inner_ver = p.ip_ver
    cdef uint32_t iplen = ip_length(p, ip)
    cdef uint32_t plen = p.len, wire = p.wire_len
    cdef uint32_t present = plen - l3
    cdef uint32_t cut = wire - plen if wire > plen else 0
    cdef bint eth = p.linktype == LT_ETHERNET and l3 >= 14
    cdef uint8_t encap = rec.encap
    cdef uint8_t flags = rec.flags
    cdef bint v6out = (flags & RF_VIA6) != 0
    cdef uint32_t link = 14 if eth else 0
    cdef uint32_t oip = 40 if v6out else 20
    cdef uint32_t hdr = rec.tmpl_len, new_off, udp_len = 0
    cdef uint32_t tsum = rec.tmpl_sum
    cdef uint32_t via4 = rec.via4
    cdef uint16_t vport = rec.vxlan_port
    cdef uint16_t reason = p.reason
    cdef uint8_t ecn, inner_ttl, proto
    cdef uint16_t ident, sport = 0, frag = 0
    cdef bint learn
    cdef uint8_t* f
    cdef uint8_t* o
    cdef uint8_t* u
    cdef uint64_t s
    cdef uint16_t c
    if present > iplen:
        present = iplen                 # Ethernet padding is not carried
    if inner_ver == 4:
        ecn = ecn_encap(ip[1])
        inner_ttl = ip[8]
        ident = ld16(ip + 4)
        frag = ld16(ip + 6) & 0x4000
    else:
        ecn = ecn_encap(ip[1] >> 4)
        inner_ttl = ip[7]
        ident = <uint16_t>p.hash
    if hdr == 0 or ip_at < hdr or ip_at - hdr < batch_floor(b, i):
        return R_NO_HEADROOM        # (the template's bytes all land in this packet's headroom)
    if encap != ENCAP_IPIP:
        sport = vxlan_sport(symmetric_hash(p))
        udp_len = 8 + 8 + 14 + iplen
    learn = eth and not (flags & RF_STATIC_MAC) and n is not None and (n.count4 != 0 or n.count6 != 0)
    # the template starts with the outer Ethernet header; other link types start at the IP
    new_off = ip_at - hdr + 14 - link
    f = b.buf + ip_at - hdr
    if encap == ENCAP_IPIP:
        proto = 4 if inner_ver == 4 else 41
        memcpy(f, rec.tmpl, 34)
        o = f + 14
        o[1] = ecn
        st16(o + 2, <uint16_t>(20 + iplen))
        st16(o + 4, ident)
        st16(o + 6, frag)               # DF as the inner IPv4's (tunl0: nopmtudisc)
        o[8] = inner_ttl                # ttl inherit
        o[9] = proto
        st16(o + 10, <uint16_t>~cs_fold(tsum + ecn + 20 + iplen + ident + frag
                                        + ((<uint32_t>inner_ttl << 8) | proto)))
    else:
        proto = 17
        if v6out:
            memcpy(f, rec.tmpl, 84)
        else:
            memcpy(f, rec.tmpl, 64)
        o = f + 14
        u = o + oip
        st16(u, sport)
        st16(u + 4, <uint16_t>udp_len)
        if inner_ver == 6:
            st16(ip - 2, 0x86DD)
        if v6out:
            o[0] = 0x60 | (ecn >> 4)
            o[1] = <uint8_t>((ecn & 0x0F) << 4)
            st16(o + 4, <uint16_t>udp_len)
            # the UDP checksum is mandatory over IPv6; the inner bytes cut by the capture
            # are unknown, so such a packet keeps 0 (it could not be sent whole anyway)
            if cut == 0:
                s = cs_sum(u, 16 + 14 + present, cs_sum(o + 8, 32, udp_len + 17))
                c = <uint16_t>~cs_fold(s)
                st16(u + 6, c if c else 0xFFFF)
        else:
            o[1] = ecn
            st16(o + 2, <uint16_t>(20 + udp_len))
            st16(o + 4, ident)
            st16(o + 10, <uint16_t>~cs_fold(tsum + ecn + 20 + udp_len + ident))
    if learn:
        # a learned MAC for the remote node replaces the template's placeholder
        if v6out:
            n.lookup6(rec.via6, f)
        else:
            n.lookup4(via4, f)
    # the metadata now describe the outer packet, as the parser would
    if encap == ENCAP_IPIP:
        p.sport = 0
        p.dport = 0
        p.tunnel = TUN_IPIP
        p.encap = TUN_IPIP
        p.reason = R_FORWARDED_IPIP if reason == R_FORWARDED else reason
        p.ttl = inner_ttl
        p.l4_off = <uint16_t>(link + 20)
        p.inner_off = <uint16_t>(link + 20)
        p.frag_id = ident
    else:
        p.sport = sport
        p.dport = vport
        p.tunnel = TUN_VXLAN
        p.encap = TUN_VXLAN
        p.reason = R_FORWARDED_VXLAN if reason == R_FORWARDED else reason
        p.ttl = VXLAN_TTL
        p.l4_off = <uint16_t>(link + oip)
        p.inner_off = <uint16_t>(link + oip + 16)
        p.frag_id = 0 if v6out else ident
    p.off = new_off
    plen = link + hdr - 14 + present
    p.len = plen
    p.wire_len = plen + (iplen - present) + cut
    p.linktype = LT_ETHERNET if eth else LT_RAW
    p.ethertype = 0x86DD if v6out else 0x0800
    p.vlan = NO_PORT
    p.l3_off = <uint16_t>link
    p.ip_ver = 6 if v6out else 4
    p.proto = proto
    p.frag = FRAG_NONE
    p.icmp_type = 0
    p.icmp_code = 0
    p.icmp_id = 0
    p.quote_off = 0
    p.tcp_flags = 0
    if v6out:
        memcpy(p.src6, t.src6, 16)
        memcpy(p.dst6, rec.via6, 16)
        p.src4 = p.dst4 = 0
    else:
        p.src4 = t.src4
        p.dst4 = via4
        if inner_ver == 6:          # an IPv4 packet's IPv6 fields are already zero
            memset(p.src6, 0, 16)
            memset(p.dst6, 0, 16)
    return 0


cdef void egress_one(RouteTable t, Neighbours n, Batch b, Py_ssize_t i) noexcept nogil:
    cdef pkt_meta_t* p = &b.m[i]
    cdef const route_t* rec = &t.r[p.route_id]
    cdef uint16_t r
    if rec.encap != ENCAP_NONE and rec.kind == RT_REMOTE_NODE:
        # the common cases inline (tunnel_out.pxd, as the route stage runs them)
        if not tunnel_fast(n, b, i, p, rec):
            r = _encapsulate(t, n, b, i, rec)
            if r:
                drop(p, ST_ENCAP, r)
        return                      # the template carries the outer Ethernet addresses
    set_link_addresses(rec, n, b, p)


cdef uint32_t encap_batch(RouteTable t, Neighbours n, Batch b, bint answered) noexcept nogil:
    cdef Py_ssize_t i
    cdef pkt_meta_t* p
    cdef const route_t* rec
    cdef uint32_t extra = 0, n_ip, mtu, piece
    cdef const uint8_t* ip
    cdef Py_ssize_t count = b.count
    cdef pkt_meta_t* q
    for i in range(count):
        if i + PREFETCH_AHEAD < count:
            # the header and the headroom line the outer headers go into (never touched
            # since the packet was copied in: cold), a few packets ahead
            q = &b.m[i + PREFETCH_AHEAD]
            kdp_prefetch_w(b.buf + q.off + q.l3_off)
            kdp_prefetch_w(b.buf + q.off - 64)
        p = &b.m[i]
        if (p.verdict != V_FORWARD and (answered or (p.verdict != V_REJECT and p.verdict != V_REPLY))) \
                or p.route_id == NO_ID or p.out_port == HOST_PORT or p.ip_ver == 0 \
                or p.route_id >= <uint32_t>t.n_routes:
            continue
        rec = &t.r[p.route_id]
        mtu = rec.mtu
        ip = b.buf + p.off + p.l3_off
        n_ip = segment_ip_length(p, ip) if mtu else 0
        if p.verdict == V_FORWARD and (p.encap != 0 or (rec.encap == ENCAP_NONE and n_ip <= mtu)):
            continue                # the route stage addressed (or encapsulated) it already
        if mtu:
            if n_ip > mtu:
                if p.verdict == V_FORWARD and p.ip_ver == 4 and not (ip[6] & 0x40) and p.gso_size == 0:
                    piece = (mtu - (ip[0] & 15) * 4) & ~7u
                    if mtu > <uint32_t>(ip[0] & 15) * 4 + 8:
                        p.reason = R_FORWARDED_FRAGMENTED
                        extra += (n_ip - (ip[0] & 15) * 4 + piece - 1) // piece - 1
                        continue
                drop(p, ST_ENCAP, R_MTU_EXCEEDED)
                continue
        if p.gso_size and p.verdict == V_FORWARD and rec.encap != ENCAP_NONE and rec.kind == RT_REMOTE_NODE:
            piece = gso_segments(p, ip)
            if piece > 1:
                p.reason = R_FORWARDED_SEGMENTED
                extra += piece - 1
                continue
            gso_complete(p, b.buf + p.off + p.l3_off)   # one segment: a plain packet now
        egress_one(t, n, b, i)
    return extra


def encap(Batch b not None, RouteTable routes not None, Neighbours neighbours=None):
    """Run the encap stage over a routed batch (see the module docstring); returns the
    number of extra packets the fragment pass must make."""
    cdef uint32_t extra
    with nogil:
        extra = encap_batch(routes, neighbours, b, False)
    return extra


def source_port(uint32_t hash):
    """The VXLAN source port of a 32-bit flow hash (tunnel_out.vxlan_sport; for tests)."""
    return vxlan_sport(hash)
