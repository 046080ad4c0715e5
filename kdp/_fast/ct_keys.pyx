# cython: boundscheck=False, wraparound=False, cdivision=True
"""Packet keys and the fragment table (see ct_keys.pxd)."""
from libc.string cimport memset, memcpy, memcmp
from libc.stdint cimport uint8_t, uint32_t, uint64_t

from kdp._fast.mix cimport mix64, P_ICMP, P_TCP, P_UDP, P_ICMPV6, P_SCTP
from kdp._fast.packet cimport NO_ID, FRAG_LATER
from kdp._fast.ct_table cimport FL_USED, TO_FRAG, ct_frag_t, ct_flow_key


cdef uint32_t ct_quote_l4(const pkt_meta_t* p, const uint8_t* pkt) noexcept nogil:
    """Offset (from the frame start) of the L4 header inside an ICMP error quote; 0 if none."""
    cdef uint32_t q = p.quote_off, lim = p.len
    cdef uint8_t nh
    cdef int it
    if q == 0:
        return 0
    if p.ip_ver == 4:
        if q + 20 > lim:
            return 0
        if ld16(pkt + q + 6) & 0x1FFF:
            return 0
        q += (pkt[q] & 15) * 4
        return q if q <= lim else 0
    if q + 40 > lim:
        return 0
    nh = pkt[q + 6]
    q += 40
    for it in range(8):
        if nh == 0 or nh == 43 or nh == 60:
            if q + 8 > lim:
                return 0
            nh = pkt[q]
            q += (pkt[q + 1] + 1) * 8
        elif nh == 44:
            if q + 8 > lim or (ld16(pkt + q + 2) & 0xFFF8):
                return 0
            nh = pkt[q]
            q += 8
        elif nh == 51:
            if q + 8 > lim:
                return 0
            nh = pkt[q]
            q += (pkt[q + 1] + 2) * 4
        else:
            return q if q <= lim else 0
    return 0


cdef inline void _key_addrs(ct_key_t* k, uint8_t ver, uint32_t src4, uint32_t dst4,
                            const uint8_t* src6, const uint8_t* dst6) noexcept nogil:
    if ver == 4:
        k.src[0] = src4
        k.dst[0] = dst4
    else:
        memcpy(k.src, src6, 16)
        memcpy(k.dst, dst6, 16)


cdef int ct_pkt_key(const pkt_meta_t* p, const uint8_t* pkt, ct_key_t* k) noexcept nogil:
    """The lookup key of packet p (pkt: its frame). Returns a K_* kind."""
    cdef uint8_t proto = p.proto, ver = p.ip_ver
    cdef uint32_t ql4
    memset(k, 0, sizeof(ct_key_t))
    k.ver = ver
    if ver != 4 and ver != 6:
        return K_NONE
    if p.frag == FRAG_LATER:
        k.proto = proto
        _key_addrs(k, ver, p.src4, p.dst4, p.src6, p.dst6)
        return K_FRAG
    if (proto == P_ICMP and ver == 4) or (proto == P_ICMPV6 and ver == 6):
        if ct_is_echo(ver, p.icmp_type):
            k.sport = p.icmp_id
            k.dport = p.icmp_type
        elif ct_is_icmp_error(ver, p.icmp_type) and p.q_proto != 0 and p.quote_off != 0:
            # key of the flow the quoted packet belongs to: the inverse of the quote
            k.proto = p.q_proto
            _key_addrs(k, ver, p.q_dst4, p.q_src4, p.q_dst6, p.q_src6)
            if p.q_proto == P_TCP or p.q_proto == P_UDP or p.q_proto == P_SCTP:
                k.sport = p.q_dport
                k.dport = p.q_sport
            elif p.q_proto == proto:
                ql4 = ct_quote_l4(p, pkt)
                if ql4 == 0 or ql4 + 8 > p.len or not ct_is_echo(ver, pkt[ql4]):
                    return K_NONE
                k.sport = ld16(pkt + ql4 + 4)
                k.dport = ct_echo_other(ver, pkt[ql4])
            return K_ERROR
        else:
            return K_NONE
    elif proto == P_TCP or proto == P_UDP or proto == P_SCTP:
        k.sport = p.sport
        k.dport = p.dport
    k.proto = proto
    _key_addrs(k, ver, p.src4, p.dst4, p.src6, p.dst6)
    return K_FLOW


cdef inline uint32_t _frag_slot(const ct_table_t* t, const ct_key_t* k, uint32_t frag_id) noexcept nogil:
    cdef uint64_t h = mix64(<uint64_t>frag_id ^ (<uint64_t>k.proto << 32) ^ t.seed)
    h = mix64(h ^ ((<uint64_t>k.src[0] << 32) | k.dst[0]))
    if k.ver == 6:
        h = mix64(h ^ ((<uint64_t>k.src[1] << 32) | k.dst[1]) ^ ((<uint64_t>k.src[2] << 32) | k.dst[2]) * 3
                 ^ ((<uint64_t>k.src[3] << 32) | k.dst[3]) * 5)
    return <uint32_t>h & t.frag_mask


cdef void ct_frag_note(ct_table_t* t, const pkt_meta_t* p, const ct_key_t* k, uint32_t fid,
                       int dir, uint64_t now) noexcept nogil:
    cdef ct_frag_t* e = &t.frags[_frag_slot(t, k, p.frag_id)]
    memcpy(e.src, k.src, 16)
    memcpy(e.dst, k.dst, 16)
    e.frag_id = p.frag_id
    e.flow_id = fid
    e.ts_ns = now
    e.proto = k.proto
    e.ver = k.ver
    e.dir = <uint8_t>dir


cdef inline bint _addr_eq(const ct_flow_t* f, int dir, const ct_key_t* k) noexcept nogil:
    cdef ct_key_t fk
    ct_flow_key(f, dir, &fk)
    return memcmp(fk.src, k.src, 16) == 0 and memcmp(fk.dst, k.dst, 16) == 0


cdef uint32_t ct_frag_find(ct_table_t* t, const pkt_meta_t* p, const ct_key_t* k, uint64_t now,
                           int* dir) noexcept nogil:
    cdef ct_frag_t* e = &t.frags[_frag_slot(t, k, p.frag_id)]
    cdef ct_flow_t* f
    if (e.flow_id == NO_ID or e.frag_id != p.frag_id or e.proto != k.proto or e.ver != k.ver
            or memcmp(e.src, k.src, 16) != 0 or memcmp(e.dst, k.dst, 16) != 0):
        return NO_ID
    if now >= e.ts_ns and now - e.ts_ns > t.timeout_ns[TO_FRAG]:
        return NO_ID
    f = &t.flows[e.flow_id]
    if not (f.flags & FL_USED) or f.proto != k.proto or not _addr_eq(f, e.dir, k):
        return NO_ID
    dir[0] = e.dir
    return e.flow_id
