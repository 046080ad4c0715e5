# cython: boundscheck=False, wraparound=False, cdivision=True
"""The NAT stage: apply each flow's stored translation to its packets.

Stage contract (``nat_batch(ct, b)`` / Python ``nat(ct, batch)``)
----------------------------------------------------------------
Walks every V_PENDING packet with a flow (``flow_id`` set by conntrack) whose
flow translates (DNAT, SNAT, or a source port changed to keep the reply tuple
unique). The packet's direction is re-derived from its tuple (original or
reply; for TCP/UDP/SCTP by comparing the metadata tuple with the flow
record directly, without building keys), so a packet arriving as tuple T_d leaves as the inverse of the flow's
other tuple T_(1-d): DNAT/SNAT in the original direction, their reversal for
replies. Packets marked CT_INVALID are translated too (a packet of a
translated flow never leaves untranslated).

Reads: flow_id, ct_state, ip_ver, proto, frag, l3_off, l4_off, quote_off, the
tuple fields, the frame bytes.
Rewrites: IPv4/IPv6 addresses, TCP/UDP/SCTP ports, the ICMP/ICMPv6 echo
identifier; checksums incrementally (RFC 1624): IPv4 header, TCP, UDP (a zero
UDP checksum over IPv4 stays zero), ICMP, ICMPv6 (pseudo-header); SCTP's
CRC32c is recomputed (not for a first fragment: it covers bytes not here).
Later fragments get their addresses rewritten (their L4 checksum lives in the
first fragment, which carries the pseudo-header change).
ICMP errors (CT_RELATED): the outer addresses the flow translates in that
direction, and the quoted header (addresses, ports / echo id, its IPv4 header
checksum, its UDP/TCP/ICMP checksum when present in the quote); the ICMP
checksum is then recomputed over the message (as Linux does).
Sets: src4/dst4 or src6/dst6, sport/dport (icmp_id), q_* for errors: to the
translated values, so routing sees the post-NAT destination.
Drops: R_CT_INVALID (stage ST_NAT) when the packet's tuple matches neither
direction of its flow (the flow went away between conntrack and NAT).
Next: route.
"""
from libc.string cimport memcpy, memcmp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from kdp._fast.mix cimport P_ICMP, P_TCP, P_UDP, P_ICMPV6, P_SCTP
from kdp._fast.packet cimport (
    Batch, pkt_meta_t, drop, NO_ID, V_PENDING, ST_NAT, FRAG_FIRST, FRAG_LATER, CT_RELATED, R_CT_INVALID,
)
from kdp._fast.conntrack cimport Conntrack
from kdp._fast.ct_table cimport ct_table_t, ct_flow_t, ct_key_t, ct_flow_key, FL_USED, FL_NAT
from kdp._fast.ct_keys cimport ct_pkt_key, ct_quote_l4, K_FLOW, K_ERROR, K_FRAG
from kdp._fast.checksum cimport (
    ld16, ld32, st16, st32, cs_sum, cs_fold, cs_d16, cs_d32, cs_dbytes, cs_apply,
    kdp_crc32c_update, kdp_prefetch,
)

cdef enum:
    NAT_AHEAD = 8       # packets between a flow-record prefetch and its use



cdef inline uint32_t _ip_end(const pkt_meta_t* p, const uint8_t* pkt) noexcept nogil:
    cdef uint32_t l3 = p.l3_off
    if p.ip_ver == 4:
        return l3 + ld16(pkt + l3 + 2)
    return l3 + 40 + ld16(pkt + l3 + 4)


cdef void _sctp_crc(uint8_t* l4, uint32_t n) noexcept nogil:
    cdef uint8_t zero[4]
    cdef uint32_t c
    zero[0] = zero[1] = zero[2] = zero[3] = 0
    c = kdp_crc32c_update(0xFFFFFFFF, l4, 8)
    c = kdp_crc32c_update(c, zero, 4)
    c = ~kdp_crc32c_update(c, l4 + 12, n - 12)
    # stored least significant byte first (RFC 9260 appendix A)
    l4[8] = <uint8_t>c
    l4[9] = <uint8_t>(c >> 8)
    l4[10] = <uint8_t>(c >> 16)
    l4[11] = <uint8_t>(c >> 24)


cdef inline uint64_t _addr_delta(uint64_t acc, uint8_t ver, const uint32_t* old, const uint32_t* new) noexcept nogil:
    if ver == 4:
        return cs_d32(acc, old[0], new[0])
    return cs_dbytes(acc, <const uint8_t*>old, <const uint8_t*>new, 16)


cdef inline void _put_addr(uint8_t* at, uint8_t ver, const uint32_t* a) noexcept nogil:
    if ver == 4:
        st32(at, a[0])
    else:
        memcpy(at, a, 16)


cdef inline bint _addr_ne(uint8_t ver, const uint32_t* a, const uint32_t* b) noexcept nogil:
    if ver == 4:
        return a[0] != b[0]
    return memcmp(a, b, 16) != 0


cdef inline void _l4_finish(pkt_meta_t* p, uint8_t* pkt, uint8_t ver, uint8_t proto, uint64_t acc,
                            uint16_t csp, uint16_t cdp, uint16_t nsp, uint16_t ndp) noexcept nogil:
    """TCP/UDP/SCTP: ports (csp, cdp) become (nsp, ndp); acc holds the address delta."""
    cdef uint8_t* l4 = pkt + p.l4_off
    cdef uint32_t avail = p.len - p.l4_off, end
    cdef uint16_t c
    if avail < 4:
        return
    if nsp != csp:
        acc = cs_d16(acc, csp, nsp)
        st16(l4, nsp)
    if ndp != cdp:
        acc = cs_d16(acc, cdp, ndp)
        st16(l4 + 2, ndp)
    p.sport = nsp
    p.dport = ndp
    if proto == P_TCP:
        if acc and avail >= 18:
            st16(l4 + 16, cs_apply(ld16(l4 + 16), acc))
    elif proto == P_UDP:
        if acc and avail >= 8:
            c = ld16(l4 + 6)
            if not (ver == 4 and c == 0):
                c = cs_apply(c, acc)
                st16(l4 + 6, 0xFFFF if c == 0 else c)
    else:  # P_SCTP
        if (nsp != csp or ndp != cdp) and p.frag != FRAG_FIRST:
            end = _ip_end(p, pkt)
            if end <= p.len and end >= p.l4_off + 12:
                _sctp_crc(l4, end - p.l4_off)


cdef void nat_rewrite(pkt_meta_t* p, uint8_t* pkt, const ct_key_t* cur, const ct_key_t* other,
                      bint later) noexcept nogil:
    cdef uint8_t ver = cur.ver, proto = cur.proto
    cdef uint8_t* l3 = pkt + p.l3_off
    cdef uint8_t* l4
    cdef uint32_t avail
    cdef uint64_t acc = 0, acc4
    cdef uint16_t nsp
    cdef bint src_ch = _addr_ne(ver, cur.src, other.dst)
    cdef bint dst_ch = _addr_ne(ver, cur.dst, other.src)
    # addresses: leave as the inverse of the other direction's tuple
    if src_ch:
        acc = _addr_delta(acc, ver, cur.src, other.dst)
        _put_addr(l3 + (12 if ver == 4 else 8), ver, other.dst)
    if dst_ch:
        acc = _addr_delta(acc, ver, cur.dst, other.src)
        _put_addr(l3 + (16 if ver == 4 else 24), ver, other.src)
    if ver == 4:
        if acc:
            st16(l3 + 10, cs_apply(ld16(l3 + 10), acc))
        p.src4 = other.dst[0]
        p.dst4 = other.src[0]
    else:
        memcpy(p.src6, other.dst, 16)
        memcpy(p.dst6, other.src, 16)
    if later or p.l4_off == 0 or p.l4_off >= p.len:
        return
    l4 = pkt + p.l4_off
    avail = p.len - p.l4_off
    if proto == P_ICMP or proto == P_ICMPV6:
        # echo: the identifier is the "port"; ICMPv6 also sums the pseudo-header
        acc4 = acc if ver == 6 else 0
        nsp = other.sport
        if nsp != cur.sport and avail >= 6:
            acc4 = cs_d16(acc4, cur.sport, nsp)
            st16(l4 + 4, nsp)
        if acc4 and avail >= 4:
            st16(l4 + 2, cs_apply(ld16(l4 + 2), acc4))
        p.icmp_id = nsp
        p.sport = nsp
        p.dport = nsp
        return
    if proto == P_TCP or proto == P_UDP or proto == P_SCTP:
        _l4_finish(p, pkt, ver, proto, acc, cur.sport, cur.dport, other.dport, other.sport)
    # other protocols: addresses only (no L4 checksum over them that we know)


cdef void _nat_error(pkt_meta_t* p, uint8_t* pkt, const ct_key_t* td, const ct_key_t* x) noexcept nogil:
    """An ICMP error related to a flow: td = the flow tuple the quote inverts
    (direction d), x = the tuple of direction 1-d."""
    cdef uint8_t ver = td.ver, qp = td.proto
    cdef uint8_t* l3 = pkt + p.l3_off
    cdef uint8_t* q = pkt + p.quote_off
    cdef uint8_t* ql
    cdef uint8_t* l4 = pkt + p.l4_off
    cdef uint32_t ql4, end, n
    cdef uint32_t osrc[4]
    cdef uint32_t odst[4]
    cdef uint64_t acc = 0, accq = 0, accl = 0
    cdef uint16_t c
    cdef uint64_t s
    # outer header: rewritten where the flow translates in direction d
    if ver == 4:
        osrc[0] = p.src4
        odst[0] = p.dst4
    else:
        memcpy(osrc, p.src6, 16)
        memcpy(odst, p.dst6, 16)
    if _addr_ne(ver, td.src, x.dst) and _addr_ne(ver, osrc, x.dst):
        acc = _addr_delta(acc, ver, osrc, x.dst)
        _put_addr(l3 + (12 if ver == 4 else 8), ver, x.dst)
        memcpy(osrc, x.dst, 16)
    if _addr_ne(ver, td.dst, x.src) and _addr_ne(ver, odst, x.src):
        acc = _addr_delta(acc, ver, odst, x.src)
        _put_addr(l3 + (16 if ver == 4 else 24), ver, x.src)
        memcpy(odst, x.src, 16)
    if ver == 4:
        if acc:
            st16(l3 + 10, cs_apply(ld16(l3 + 10), acc))
        p.src4 = osrc[0]
        p.dst4 = odst[0]
    else:
        memcpy(p.src6, osrc, 16)
        memcpy(p.dst6, odst, 16)
    # quoted header: was inverse(td) = (td.dst -> td.src); becomes x
    if _addr_ne(ver, td.dst, x.src):
        accq = _addr_delta(accq, ver, td.dst, x.src)
        _put_addr(q + (12 if ver == 4 else 8), ver, x.src)
    if _addr_ne(ver, td.src, x.dst):
        accq = _addr_delta(accq, ver, td.src, x.dst)
        _put_addr(q + (16 if ver == 4 else 24), ver, x.dst)
    if ver == 4:
        if accq:
            st16(q + 10, cs_apply(ld16(q + 10), accq))
        p.q_src4 = x.src[0]
        p.q_dst4 = x.dst[0]
    else:
        memcpy(p.q_src6, x.src, 16)
        memcpy(p.q_dst6, x.dst, 16)
    ql4 = ct_quote_l4(p, pkt)
    if ql4 != 0 and ql4 + 8 <= p.len:
        ql = pkt + ql4
        if qp == P_TCP or qp == P_UDP or qp == P_SCTP:
            accl = accq         # pseudo-header
            if td.dport != x.sport:
                accl = cs_d16(accl, td.dport, x.sport)
                st16(ql, x.sport)
            if td.sport != x.dport:
                accl = cs_d16(accl, td.sport, x.dport)
                st16(ql + 2, x.dport)
            p.q_sport = x.sport
            p.q_dport = x.dport
            if accl:
                if qp == P_TCP and ql4 + 18 <= p.len:
                    st16(ql + 16, cs_apply(ld16(ql + 16), accl))
                elif qp == P_UDP:
                    c = ld16(ql + 6)
                    if not (ver == 4 and c == 0):
                        c = cs_apply(c, accl)
                        st16(ql + 6, 0xFFFF if c == 0 else c)
        elif qp == P_ICMP or qp == P_ICMPV6:
            accl = accq if ver == 6 else 0
            if td.sport != x.sport:
                accl = cs_d16(accl, td.sport, x.sport)
                st16(ql + 4, x.sport)
            if accl:
                st16(ql + 2, cs_apply(ld16(ql + 2), accl))
            p.q_sport = x.sport
            p.q_dport = x.sport
    # the ICMP checksum over the whole message, recomputed
    end = _ip_end(p, pkt)
    if end > p.len or end < p.l4_off + 4:
        return
    n = end - p.l4_off
    l4[2] = 0
    l4[3] = 0
    s = 0
    if ver == 6:
        s = cs_sum(l3 + 8, 32, s)
        s += n
        s += P_ICMPV6
    s = cs_sum(l4, n, s)
    st16(l4 + 2, <uint16_t>~cs_fold(s))


cdef inline int _nat4_ports(pkt_meta_t* p, uint8_t* pkt, const ct_flow_t* f) noexcept nogil:
    """The common case, without building keys: an IPv4 TCP/UDP/SCTP packet (not a
    later fragment, not an ICMP error) of an IPv4 flow of the same protocol. Its
    tuple (as ct_pkt_key would key it) is compared with both flow tuples; it
    leaves as the inverse of the other one. Returns 0 when the tuple matches
    neither direction (the caller drops the packet)."""
    cdef int o
    cdef uint8_t* l3
    cdef uint32_t ns, nd
    cdef uint64_t acc = 0
    if (p.src4 == f.a4[0] and p.dst4 == f.a4[1]
            and p.sport == f.port[0] and p.dport == f.port[1]):
        o = 1
    elif (p.src4 == f.a4[2] and p.dst4 == f.a4[3]
            and p.sport == f.port[2] and p.dport == f.port[3]):
        o = 0
    else:
        return 0
    l3 = pkt + p.l3_off
    ns = f.a4[2 * o + 1]
    nd = f.a4[2 * o]
    if ns != p.src4:
        acc = cs_d32(acc, p.src4, ns)
        st32(l3 + 12, ns)
    if nd != p.dst4:
        acc = cs_d32(acc, p.dst4, nd)
        st32(l3 + 16, nd)
    if acc:
        st16(l3 + 10, cs_apply(ld16(l3 + 10), acc))
    p.src4 = ns
    p.dst4 = nd
    if p.l4_off == 0 or p.l4_off >= p.len:
        return 1
    _l4_finish(p, pkt, 4, p.proto, acc, p.sport, p.dport, f.port[2 * o + 1], f.port[2 * o])
    return 1


cdef inline int _nat6_ports(pkt_meta_t* p, uint8_t* pkt, const ct_flow_t* f) noexcept nogil:
    """As _nat4_ports, for an IPv6 TCP/UDP/SCTP packet of an IPv6 flow."""
    cdef int o
    cdef uint8_t* l3
    cdef const uint32_t* w
    cdef uint64_t acc = 0
    if (p.sport == f.port[0] and p.dport == f.port[1]
            and memcmp(p.src6, &f.a6[0], 16) == 0 and memcmp(p.dst6, &f.a6[4], 16) == 0):
        o = 1
    elif (p.sport == f.port[2] and p.dport == f.port[3]
            and memcmp(p.src6, &f.a6[8], 16) == 0 and memcmp(p.dst6, &f.a6[12], 16) == 0):
        o = 0
    else:
        return 0
    l3 = pkt + p.l3_off
    w = &f.a6[8 * o]        # the other tuple: src w[0:4], dst w[4:8]
    if memcmp(p.src6, w + 4, 16) != 0:
        acc = cs_dbytes(acc, p.src6, <const uint8_t*>(w + 4), 16)
        memcpy(l3 + 8, w + 4, 16)
        memcpy(p.src6, w + 4, 16)
    if memcmp(p.dst6, w, 16) != 0:
        acc = cs_dbytes(acc, p.dst6, <const uint8_t*>w, 16)
        memcpy(l3 + 24, w, 16)
        memcpy(p.dst6, w, 16)
    if p.l4_off == 0 or p.l4_off >= p.len:
        return 1
    _l4_finish(p, pkt, 6, p.proto, acc, p.sport, p.dport, f.port[2 * o + 1], f.port[2 * o])
    return 1


cdef void nat_batch(Conntrack ct, Batch b) noexcept nogil:
    cdef ct_table_t* t = &ct.t
    cdef Py_ssize_t i
    cdef pkt_meta_t* p
    cdef ct_flow_t* f
    cdef uint8_t* pkt
    cdef ct_key_t k, o, r
    cdef int kind, d
    cdef uint32_t ahead
    for i in range(b.count):
        if i + NAT_AHEAD < b.count:
            # the flow record a few packets on (it may have left L1/L2 since lookup)
            ahead = b.m[i + NAT_AHEAD].flow_id
            if ahead < t.capacity:
                kdp_prefetch(&t.flows[ahead])
        p = &b.m[i]
        if p.verdict != V_PENDING or p.flow_id == NO_ID or p.flow_id >= t.capacity:
            continue
        f = &t.flows[p.flow_id]
        if not (f.flags & FL_NAT):
            continue
        pkt = b.buf + p.off
        if p.l3_off + (20 if p.ip_ver == 4 else 40) > p.len:
            continue            # no IP header to rewrite (cannot come from the parser)
        if (p.ip_ver == f.ip_ver and p.frag != FRAG_LATER and p.proto == f.proto
                and (p.proto == P_TCP or p.proto == P_UDP or p.proto == P_SCTP)):
            # the common case, without building keys
            if not (_nat4_ports(p, pkt, f) if p.ip_ver == 4 else _nat6_ports(p, pkt, f)):
                drop(p, ST_NAT, R_CT_INVALID)
            continue
        kind = ct_pkt_key(p, pkt, &k)
        ct_flow_key(f, 0, &o)
        ct_flow_key(f, 1, &r)
        if kind == K_FRAG:
            if memcmp(k.src, o.src, 16) == 0 and memcmp(k.dst, o.dst, 16) == 0:
                d = 0
            elif memcmp(k.src, r.src, 16) == 0 and memcmp(k.dst, r.dst, 16) == 0:
                d = 1
            else:
                d = -1
        elif kind == K_FLOW or kind == K_ERROR:
            if memcmp(&k, &o, sizeof(ct_key_t)) == 0:
                d = 0
            elif memcmp(&k, &r, sizeof(ct_key_t)) == 0:
                d = 1
            else:
                d = -1
        else:
            d = -1
        if d < 0:
            drop(p, ST_NAT, R_CT_INVALID)
            continue
        if kind == K_ERROR:
            if p.quote_off + (20 if p.ip_ver == 4 else 40) > p.len or p.l4_off + 8 > p.len:
                drop(p, ST_NAT, R_CT_INVALID)   # a quote we cannot rewrite: never leak it
                continue
            _nat_error(p, pkt, &r if d else &o, &o if d else &r)
        else:
            nat_rewrite(p, pkt, &k, &o if d else &r, kind == K_FRAG)


def nat(Conntrack ct not None, Batch b not None):
    """Run the NAT stage over batch b (see the module docstring)."""
    with nogil:
        nat_batch(ct, b)
