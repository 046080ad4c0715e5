# cython: boundscheck=False, wraparound=False
"""The parse stage: link layer, IP, extension headers, L4, ICMP quotes, tunnels.

Stage contract (``parse_batch`` / Python ``parse(batch, vxlan_port=4789)``)
--------------------------------------------------------------------------
Walks every packet whose verdict is V_PENDING; packets already decided (for
example R_UNSUPPORTED_LINKTYPE at RX) are left untouched. One pass per packet,
no Python objects, and no byte at or beyond ``meta.len`` is ever read whatever
the length fields say.

Reads: off, len, wire_len (``len < wire_len`` means the capture was cut by the
snaplen: that alone is no malformation; the IP length fields are checked
against the wire length, reads are bounded by the captured length), linktype.

Sets (offsets relative to ``off``; every field below is reset first):
  ethertype   the ethertype after VLAN tags; for link types without one (raw
              IP, BSD null/loop) 0x0800 / 0x86DD as decided by the link layer
  vlan        outermost 802.1Q/802.1ad/0x9100 VLAN id, NO_PORT when untagged
  l3_off      the IP (or ARP) header
  ip_ver, ttl, src4/dst4 (host order), src6/dst6 (network order)
  proto       the upper-layer protocol (after IPv6 extension headers)
  frag        FRAG_NONE / FRAG_FIRST (offset 0, more fragments) / FRAG_LATER
  frag_id     IPv4 identification (always), IPv6 fragment identification
              (when a fragment header is present, else 0)
  l4_off      the L4 header (for any protocol, 0 for FRAG_LATER packets)
  sport/dport TCP/UDP/SCTP ports; for ICMP/ICMPv6 echo request and reply
              both are the echo identifier (so echo flows have a 5-tuple);
              0 otherwise and for FRAG_LATER packets
  tcp_flags   byte 13 of the TCP header (CWR ECE URG ACK PSH RST SYN FIN)
  icmp_type, icmp_code; icmp_id for echo request/reply
  quote_off, q_proto, q_src4/q_dst4, q_src6/q_dst6, q_sport/q_dport: the IP
              header quoted by an ICMP error (ICMPv4 3, 4, 5, 11, 12; ICMPv6
              1, 2, 3, 4) and the ports of its first 8 payload bytes (a quoted
              echo gives its identifier as both ports); the quote's own length
              fields are not checked (quotes are cut short by design)
  tunnel, inner_off  TUN_IPIP (IPv4/IPv6 next header 4 or 41; inner_off = the
              inner IP header, which is also l4_off) or TUN_VXLAN (UDP to
              vxlan_port, 0 disables; inner_off = inner Ethernet header after the
              8-byte VXLAN header). Only unfragmented packets are recognised.
  hash        flow_hash(): a fixed 64-bit mix of ip_ver, proto, src, dst, sport,
              dport; no seed, identical across runs and machines (0 when not IP)

Verdicts: ARP -> V_LOCAL, stage ST_PARSE, R_ARP (for the node's neighbour
handling). Drops (stage ST_PARSE):
  R_UNSUPPORTED_LINKTYPE   linktype the parser does not know
  R_TRUNCATED_L2           frame shorter than its link header (raw IP: empty)
  R_TRUNCATED_VLAN         VLAN tag cut off
  R_UNSUPPORTED_ETHERTYPE  not IPv4/IPv6/ARP (also unknown BSD address family)
  R_TRUNCATED_ARP          ARP header or its addresses cut off
  R_TRUNCATED_IPV4         < 20 bytes, or the options cut off
  R_BAD_IP_VERSION         version nibble disagrees with the link layer
  R_BAD_IPV4_IHL           IHL < 5
  R_BAD_IPV4_TOTAL_LENGTH  total length < IHL*4 or > bytes on the wire
  R_BAD_IPV4_CHECKSUM      header checksum wrong
  R_TRUNCATED_IPV6         < 40 bytes
  R_BAD_IPV6_PAYLOAD_LENGTH 40 + payload length > bytes on the wire
  R_TRUNCATED_IPV6_EXT     an extension header passes the payload/capture end
  R_TOO_MANY_IPV6_EXT      more than MAX_IPV6_EXT (8) extension headers
  R_TRUNCATED_TCP          < 20 bytes of TCP, or its options cut by the capture
  R_BAD_TCP_DATA_OFFSET    data offset < 5 or past the IP payload
  R_TRUNCATED_UDP          < 8 bytes of UDP
  R_BAD_UDP_LENGTH         UDP length < 8, or > IP payload (unfragmented)
  R_TRUNCATED_SCTP         < 12 bytes of SCTP common header
  R_TRUNCATED_ICMP         < 8 bytes of ICMP / ICMPv6
  R_TRUNCATED_ICMP_QUOTE   the quoted IP header, or the 8 bytes after it that
                           hold ports/echo id, cut off
  R_BAD_ICMP_QUOTE         quoted header of the wrong IP version, IHL < 5 or
                           more than MAX_IPV6_EXT extension headers
  R_TRUNCATED_TUNNEL       IPIP: inner IP header (20/40 bytes) cut off; VXLAN:
                           VXLAN header + 14-byte inner Ethernet header cut off
                           by the capture (a datagram too short to hold them is
                           plain UDP, as an application on that port sends it)
L4 headers are bounded by the end of the IP payload as declared and by the
capture, whichever comes first.

Next stage: decap (tunnel != TUN_NONE), else conntrack.
"""
from libc.string cimport memcpy, memset
from posix.mman cimport (mmap, munmap, mprotect, PROT_READ, PROT_WRITE, PROT_NONE,
                         MAP_PRIVATE, MAP_ANONYMOUS, MAP_FAILED)
import mmap as _mmap
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from kdp._fast.mix cimport mix64
from kdp._fast.checksum cimport kdp_csum16, kdp_ld16_ne, kdp_ld32_ne
from kdp._fast.tunnel_in cimport tunnel_set_t, tunnel_fast_in
from kdp._fast.packet cimport (
    Batch, pkt_meta_t, drop, set_verdict, meta_reset, NO_PORT, MAX_FRAME,
    V_PENDING, V_LOCAL, ST_PARSE, ST_DECAP, FRAG_NONE, FRAG_FIRST, FRAG_LATER,
    TUN_NONE, TUN_IPIP, TUN_VXLAN,
    LT_NULL, LT_ETHERNET, LT_RAW, LT_LOOP, LT_LINUX_SLL, LT_IPV4, LT_IPV6,
    LT_LINUX_SLL2,
    R_UNSUPPORTED_LINKTYPE, R_TRUNCATED_L2, R_TRUNCATED_VLAN,
    R_UNSUPPORTED_ETHERTYPE, R_ARP, R_TRUNCATED_ARP, R_TRUNCATED_IPV4,
    R_BAD_IP_VERSION, R_BAD_IPV4_IHL, R_BAD_IPV4_TOTAL_LENGTH,
    R_BAD_IPV4_CHECKSUM, R_TRUNCATED_IPV6, R_BAD_IPV6_PAYLOAD_LENGTH,
    R_TRUNCATED_IPV6_EXT, R_TOO_MANY_IPV6_EXT, R_TRUNCATED_TCP,
    R_BAD_TCP_DATA_OFFSET, R_TRUNCATED_UDP, R_BAD_UDP_LENGTH,
    R_TRUNCATED_SCTP, R_TRUNCATED_ICMP, R_TRUNCATED_ICMP_QUOTE,
    R_TRUNCATED_TUNNEL, R_BAD_ICMP_QUOTE,
)

from kdp._fast.packet import META_DTYPE

cnp.import_array()

cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define KDP_PREFETCH(p) __builtin_prefetch((const void*)(p), 0, 3)
    #else
    #define KDP_PREFETCH(p) ((void)0)
    #endif
    """
    void KDP_PREFETCH(const void* p) noexcept nogil

MAX_IPV6_EXT_HEADERS = MAX_IPV6_EXT
VXLAN_PORT = DEFAULT_VXLAN_PORT

cdef enum:
    ET_IPV4 = 0x0800
    ET_IPV6 = 0x86DD
    ET_ARP = 0x0806
    ET_VLAN = 0x8100
    ET_QINQ = 0x88A8
    ET_QINQ_OLD = 0x9100
    P_ICMP = 1
    P_IPIP = 4
    P_TCP = 6
    P_UDP = 17
    P_IPV6 = 41
    P_ICMPV6 = 58
    P_SCTP = 132
    WALK_OK = 0
    WALK_TRUNCATED = 1
    WALK_TOO_MANY = 2
    PREFETCH_AHEAD = 4


cdef inline uint16_t rd16(const uint8_t* b) noexcept nogil:
    return <uint16_t>((<uint16_t>b[0] << 8) | b[1])


cdef inline uint32_t rd32(const uint8_t* b) noexcept nogil:
    return ((<uint32_t>b[0] << 24) | (<uint32_t>b[1] << 16)
            | (<uint32_t>b[2] << 8) | <uint32_t>b[3])


cdef inline uint64_t rd64(const uint8_t* b) noexcept nogil:
    return (<uint64_t>rd32(b) << 32) | rd32(b + 4)


cdef uint16_t csum_fold(const uint8_t* b, uint32_t n) noexcept nogil:
    # the folded sum, 8 bytes a load (checksum.pxd): every IPv4 header is checked with
    # it, a tunnel frame's twice (outer and inner)
    return kdp_csum16(b, n)


# ---------------------------------------------------------------- flow hash



cdef uint64_t flow_hash(const pkt_meta_t* p) noexcept nogil:
    cdef uint64_t k = ((<uint64_t>p.ip_ver << 48) | (<uint64_t>p.proto << 32)
                       | (<uint64_t>p.sport << 16) | <uint64_t>p.dport)
    cdef uint64_t h = mix64(k ^ 0x9E3779B97F4A7C15ULL)
    if p.ip_ver == 4:
        h = mix64(h ^ ((<uint64_t>p.src4 << 32) | p.dst4))
    else:
        # four independent chains, then folded: shorter dependency than a
        # sequential walk over the 32 address bytes
        h = mix64(h ^ mix64(rd64(p.src6) + 0x243F6A8885A308D3ULL)
                 ^ mix64(rd64(p.src6 + 8) + 0x13198A2E03707344ULL) * 3
                 ^ mix64(rd64(p.dst6) + 0xA4093822299F31D0ULL) * 5
                 ^ mix64(rd64(p.dst6 + 8) + 0x082EFA98EC4E6C89ULL) * 7)
    return h


# ---------------------------------------------------------------- helpers

cdef inline void _reset_l3(pkt_meta_t* p) noexcept nogil:
    # ip_ver .. q_dst6 are contiguous (packet.pxd); verdict follows q_dst6
    memset(&p.ip_ver, 0, <size_t>(<char*>&p.verdict - <char*>&p.ip_ver))
    p.l3_off = 0
    p.l4_off = 0
    p.inner_off = 0
    p.quote_off = 0
    p.hash = 0


cdef inline int _walk_v6(const uint8_t* pkt, uint32_t* cur, uint32_t lim,
                         uint8_t* nh, uint8_t* frag, uint32_t* frag_id) noexcept nogil:
    """Follow IPv6 extension headers from cur[0] (next header nh[0]) up to lim.

    Stops at the first upper-layer header, or after a fragment header of a
    later fragment. Leaves cur/nh at the upper-layer header.
    """
    cdef uint32_t c = cur[0]
    cdef uint8_t n = nh[0]
    cdef uint32_t hl
    cdef uint16_t fo
    cdef int count = 0
    while n == 0 or n == 43 or n == 60 or n == 44 or n == 51:
        count += 1
        if count > MAX_IPV6_EXT:
            return WALK_TOO_MANY
        if c + 8 > lim:             # every extension header has >= 8 bytes
            return WALK_TRUNCATED
        if n == 44:
            hl = 8
            fo = rd16(pkt + c + 2)
            frag_id[0] = rd32(pkt + c + 4)
            if fo & 0xFFF8:
                frag[0] = FRAG_LATER
            elif fo & 1:
                frag[0] = FRAG_FIRST
        elif n == 51:
            hl = (<uint32_t>pkt[c + 1] + 2) * 4
        else:
            hl = (<uint32_t>pkt[c + 1] + 1) * 8
        if c + hl > lim:
            return WALK_TRUNCATED
        n = pkt[c]
        c += hl
        if frag[0] == FRAG_LATER:
            break
    cur[0] = c
    nh[0] = n
    return WALK_OK


cdef inline bint _icmp_is_error(uint8_t ver, uint8_t t) noexcept nogil:
    if ver == 4:
        return t == 3 or t == 4 or t == 5 or t == 11 or t == 12
    return 1 <= t <= 4


cdef inline bint _icmp_is_echo(uint8_t ver, uint8_t t) noexcept nogil:
    if ver == 4:
        return t == 0 or t == 8
    return t == 128 or t == 129


cdef uint16_t _parse_quote(pkt_meta_t* p, const uint8_t* pkt, uint32_t q,
                           uint32_t lim, uint8_t ver) noexcept nogil:
    """The IP header quoted by an ICMP error at offset q (bounded by lim)."""
    cdef uint32_t ihl, ql4
    cdef uint8_t qp, fr = FRAG_NONE
    cdef uint32_t fid = 0
    cdef bint later
    cdef int w
    p.quote_off = <uint16_t>q
    if ver == 4:
        if q + 20 > lim:
            return R_TRUNCATED_ICMP_QUOTE
        if (pkt[q] >> 4) != 4:
            return R_BAD_ICMP_QUOTE
        ihl = (pkt[q] & 15) * 4
        if ihl < 20:
            return R_BAD_ICMP_QUOTE
        if q + ihl > lim:
            return R_TRUNCATED_ICMP_QUOTE
        qp = pkt[q + 9]
        p.q_src4 = rd32(pkt + q + 12)
        p.q_dst4 = rd32(pkt + q + 16)
        later = (rd16(pkt + q + 6) & 0x1FFF) != 0
        ql4 = q + ihl
    else:
        if q + 40 > lim:
            return R_TRUNCATED_ICMP_QUOTE
        if (pkt[q] >> 4) != 6:
            return R_BAD_ICMP_QUOTE
        memcpy(p.q_src6, pkt + q + 8, 16)
        memcpy(p.q_dst6, pkt + q + 24, 16)
        qp = pkt[q + 6]
        ql4 = q + 40
        w = _walk_v6(pkt, &ql4, lim, &qp, &fr, &fid)
        if w == WALK_TRUNCATED:
            return R_TRUNCATED_ICMP_QUOTE
        if w == WALK_TOO_MANY:
            return R_BAD_ICMP_QUOTE
        later = fr == FRAG_LATER
    p.q_proto = qp
    if later:
        return 0
    if qp == P_TCP or qp == P_UDP or qp == P_SCTP:
        if ql4 + 8 > lim:
            return R_TRUNCATED_ICMP_QUOTE
        p.q_sport = rd16(pkt + ql4)
        p.q_dport = rd16(pkt + ql4 + 2)
    elif (ver == 4 and qp == P_ICMP) or (ver == 6 and qp == P_ICMPV6):
        if ql4 + 8 > lim:
            return R_TRUNCATED_ICMP_QUOTE
        if _icmp_is_echo(ver, pkt[ql4]):
            p.q_sport = rd16(pkt + ql4 + 4)
            p.q_dport = p.q_sport
    return 0


cdef uint16_t _parse_l4(pkt_meta_t* p, const uint8_t* pkt, uint32_t l4,
                        uint32_t ip_end, uint32_t cap_end, uint8_t ver,
                        uint16_t vxlan_port) noexcept nogil:
    """L4 of an IP packet whose payload starts at l4 and (as declared) ends at ip_end."""
    cdef uint32_t lim = ip_end if ip_end < cap_end else cap_end
    cdef uint32_t n, ulen
    cdef uint8_t proto = p.proto
    cdef uint8_t t
    p.l4_off = <uint16_t>l4
    if proto == P_TCP:
        if l4 + 20 > lim:
            return R_TRUNCATED_TCP
        n = (pkt[l4 + 12] >> 4) * 4
        if n < 20 or l4 + n > ip_end:
            return R_BAD_TCP_DATA_OFFSET
        if l4 + n > cap_end:
            return R_TRUNCATED_TCP
        p.sport = rd16(pkt + l4)
        p.dport = rd16(pkt + l4 + 2)
        p.tcp_flags = pkt[l4 + 13]
    elif proto == P_UDP:
        if l4 + 8 > lim:
            return R_TRUNCATED_UDP
        ulen = rd16(pkt + l4 + 4)
        if ulen < 8 or (p.frag == FRAG_NONE and l4 + ulen > ip_end):
            return R_BAD_UDP_LENGTH
        p.sport = rd16(pkt + l4)
        p.dport = rd16(pkt + l4 + 2)
        if p.dport == vxlan_port and vxlan_port != 0 and p.frag == FRAG_NONE \
                and ulen >= 8 + 8 + 14:
            # a datagram too short to hold a VXLAN header and an inner Ethernet header is
            # plain UDP (an application may use the port: to a pod it is forwarded);
            # one whose capture was cut before them is a truncated tunnel
            if l4 + 8 + 8 + 14 > cap_end:
                return R_TRUNCATED_TUNNEL
            p.tunnel = TUN_VXLAN
            p.inner_off = <uint16_t>(l4 + 16)
    elif proto == P_SCTP:
        if l4 + 12 > lim:
            return R_TRUNCATED_SCTP
        p.sport = rd16(pkt + l4)
        p.dport = rd16(pkt + l4 + 2)
    elif (ver == 4 and proto == P_ICMP) or (ver == 6 and proto == P_ICMPV6):
        if l4 + 8 > lim:
            return R_TRUNCATED_ICMP
        t = pkt[l4]
        p.icmp_type = t
        p.icmp_code = pkt[l4 + 1]
        if _icmp_is_echo(ver, t):
            p.icmp_id = rd16(pkt + l4 + 4)
            p.sport = p.icmp_id
            p.dport = p.icmp_id
        elif _icmp_is_error(ver, t):
            return _parse_quote(p, pkt, l4 + 8, lim, ver)
    elif proto == P_IPIP or proto == P_IPV6:
        if p.frag == FRAG_NONE:
            if l4 + (20 if proto == P_IPIP else 40) > lim:
                return R_TRUNCATED_TUNNEL
            p.tunnel = TUN_IPIP
            p.inner_off = <uint16_t>l4
    return 0


cdef uint16_t _parse_ip(pkt_meta_t* p, const uint8_t* pkt, uint32_t l3,
                        uint32_t cap_end, uint32_t wire_end, uint8_t ver,
                        uint16_t vxlan_port) noexcept nogil:
    cdef const uint8_t* h
    cdef uint32_t ihl, tot, plen, cur, lim
    cdef uint16_t fo, r
    cdef uint8_t nh
    cdef int w
    if wire_end < cap_end:
        wire_end = cap_end
    p.l3_off = <uint16_t>l3
    if ver == 0:
        if l3 >= cap_end:
            return R_TRUNCATED_L2
        ver = pkt[l3] >> 4
        if ver != 4 and ver != 6:
            return R_BAD_IP_VERSION
    h = pkt + l3
    if ver == 4:
        if l3 + 20 > cap_end:
            return R_TRUNCATED_IPV4
        if (h[0] >> 4) != 4:
            return R_BAD_IP_VERSION
        ihl = (h[0] & 15) * 4
        if ihl < 20:
            return R_BAD_IPV4_IHL
        tot = rd16(h + 2)
        if tot < ihl or l3 + tot > wire_end:
            return R_BAD_IPV4_TOTAL_LENGTH
        if l3 + ihl > cap_end:
            return R_TRUNCATED_IPV4
        if kdp_csum16(h, ihl) != 0xFFFF:
            return R_BAD_IPV4_CHECKSUM
        p.ip_ver = 4
        p.ttl = h[8]
        p.proto = h[9]
        p.src4 = rd32(h + 12)
        p.dst4 = rd32(h + 16)
        p.frag_id = rd16(h + 4)
        fo = rd16(h + 6)
        if fo & 0x1FFF:
            p.frag = FRAG_LATER
        elif fo & 0x2000:
            p.frag = FRAG_FIRST
        cur = l3 + ihl
        lim = l3 + tot
    else:
        if l3 + 40 > cap_end:
            return R_TRUNCATED_IPV6
        if (h[0] >> 4) != 6:
            return R_BAD_IP_VERSION
        plen = rd16(h + 4)
        if l3 + 40 + plen > wire_end:
            return R_BAD_IPV6_PAYLOAD_LENGTH
        p.ip_ver = 6
        p.ttl = h[7]
        memcpy(p.src6, h + 8, 16)
        memcpy(p.dst6, h + 24, 16)
        nh = h[6]
        cur = l3 + 40
        lim = cur + plen
        w = _walk_v6(pkt, &cur, lim if lim < cap_end else cap_end, &nh,
                     &p.frag, &p.frag_id)
        if w == WALK_TRUNCATED:
            return R_TRUNCATED_IPV6_EXT
        if w == WALK_TOO_MANY:
            return R_TOO_MANY_IPV6_EXT
        p.proto = nh
    if p.frag != FRAG_LATER:
        r = _parse_l4(p, pkt, cur, lim, cap_end, ver, vxlan_port)
        if r:
            return r
    p.hash = flow_hash(p)
    return 0


cdef uint16_t parse_ip(pkt_meta_t* p, const uint8_t* pkt, uint32_t l3,
                       uint32_t cap_end, uint32_t wire_end, uint8_t ver,
                       uint16_t vxlan_port) noexcept nogil:
    _reset_l3(p)
    return _parse_ip(p, pkt, l3, cap_end, wire_end, ver, vxlan_port)


cdef inline uint16_t _af_ethertype(uint32_t af) noexcept nogil:
    if af == 2:
        return ET_IPV4
    if af == 10 or af == 24 or af == 28 or af == 30:
        return ET_IPV6
    return 0


cdef uint16_t parse_frame(pkt_meta_t* p, const uint8_t* pkt, uint16_t vxlan_port) noexcept nogil:
    cdef uint32_t n = p.len
    cdef uint32_t l3 = 0
    cdef uint16_t et = 0
    cdef uint16_t lt = p.linktype
    cdef uint32_t af
    cdef bint tagged = False
    _reset_l3(p)
    p.ethertype = 0
    p.vlan = NO_PORT
    if lt == LT_ETHERNET:
        if n < 14:
            return R_TRUNCATED_L2
        et = rd16(pkt + 12)
        l3 = 14
        tagged = True
    elif lt == LT_RAW:
        if n < 1:
            return R_TRUNCATED_L2
        if (pkt[0] >> 4) == 4:
            et = ET_IPV4
        elif (pkt[0] >> 4) == 6:
            et = ET_IPV6
        else:
            return R_BAD_IP_VERSION
    elif lt == LT_IPV4:
        et = ET_IPV4
    elif lt == LT_IPV6:
        et = ET_IPV6
    elif lt == LT_LINUX_SLL:
        if n < 16:
            return R_TRUNCATED_L2
        et = rd16(pkt + 14)
        l3 = 16
        tagged = True
    elif lt == LT_LINUX_SLL2:
        if n < 20:
            return R_TRUNCATED_L2
        et = rd16(pkt)
        l3 = 20
        tagged = True
    elif lt == LT_NULL or lt == LT_LOOP:
        if n < 4:
            return R_TRUNCATED_L2
        af = rd32(pkt)
        et = _af_ethertype(af)
        if et == 0 and lt == LT_NULL:
            # written in the capturing host's order: try little-endian too
            af = (<uint32_t>pkt[3] << 24) | (<uint32_t>pkt[2] << 16) | (<uint32_t>pkt[1] << 8) | pkt[0]
            et = _af_ethertype(af)
        if et == 0:
            return R_UNSUPPORTED_ETHERTYPE
        l3 = 4
    else:
        return R_UNSUPPORTED_LINKTYPE
    if tagged:
        while et == ET_VLAN or et == ET_QINQ or et == ET_QINQ_OLD:
            if l3 + 4 > n:
                return R_TRUNCATED_VLAN
            if p.vlan == NO_PORT:
                p.vlan = rd16(pkt + l3) & 0x0FFF
            et = rd16(pkt + l3 + 2)
            l3 += 4
    p.ethertype = et
    if et == ET_IPV4:
        return _parse_ip(p, pkt, l3, n, p.wire_len, 4, vxlan_port)
    if et == ET_IPV6:
        return _parse_ip(p, pkt, l3, n, p.wire_len, 6, vxlan_port)
    if et == ET_ARP:
        p.l3_off = <uint16_t>l3
        if l3 + 8 > n or l3 + 8 + 2 * (<uint32_t>pkt[l3 + 4] + pkt[l3 + 5]) > n:
            return R_TRUNCATED_ARP
        return R_ARP
    return R_UNSUPPORTED_ETHERTYPE


cdef void parse_batch(Batch b, uint16_t vxlan_port) noexcept nogil:
    cdef Py_ssize_t i
    cdef pkt_meta_t* p
    cdef uint16_t r
    cdef Py_ssize_t n = b.count
    for i in range(n):
        # fetch the headers a few packets ahead (VPP-style): a cold batch
        # otherwise pays one memory latency per packet in turn
        if i + 2 * PREFETCH_AHEAD < n:
            KDP_PREFETCH(&b.m[i + 2 * PREFETCH_AHEAD])
        if i + PREFETCH_AHEAD < n:
            KDP_PREFETCH(b.buf + b.m[i + PREFETCH_AHEAD].off)
            KDP_PREFETCH(b.buf + b.m[i + PREFETCH_AHEAD].off + 64)
        p = &b.m[i]
        if p.verdict != V_PENDING:
            continue
        r = parse_frame(p, b.buf + p.off, vxlan_port)
        if r == 0:
            continue
        if r == R_ARP:
            set_verdict(p, V_LOCAL, ST_PARSE, R_ARP)
        else:
            drop(p, ST_PARSE, r)


cdef void parse_decap_loop(Batch b, uint16_t vxlan_port, const tunnel_set_t* t,
                           parse_hook_t after) noexcept nogil:
    """parse_batch and the decap stage in one loop (parse.pxd): the stage decides tunnels
    while their packets are in cache, without a pass of its own."""
    cdef Py_ssize_t i
    cdef pkt_meta_t* p
    cdef const uint8_t* pkt
    cdef const uint16_t* udp_ports = t.vxlan_ports
    cdef uint16_t port_ne = <uint16_t>((vxlan_port >> 8) | (vxlan_port << 8))   # as on the wire
    cdef uint8_t proto
    cdef uint16_t r
    cdef int h
    cdef Py_ssize_t n = b.count
    for i in range(n):
        if i + 2 * PREFETCH_AHEAD < n:
            KDP_PREFETCH(&b.m[i + 2 * PREFETCH_AHEAD])
        if i + PREFETCH_AHEAD < n:
            KDP_PREFETCH(b.buf + b.m[i + PREFETCH_AHEAD].off)
            KDP_PREFETCH(b.buf + b.m[i + PREFETCH_AHEAD].off + 64)
        p = &b.m[i]
        if p.verdict != V_PENDING:
            continue
        pkt = b.buf + p.off
        h = 0
        # untagged Ethernet, IPv4 without options, IP-in-IP or UDP to the VXLAN port: the
        # protocol first (most packets leave there), the rest in one word (bytes 12-14)
        proto = pkt[23]
        if (proto == P_IPIP or (proto == P_UDP and kdp_ld16_ne(pkt + 36) == port_ne)) \
                and (kdp_ld32_ne(pkt + 12) & 0x00FFFFFFU) == 0x00450008U \
                and p.len >= 38 and p.linktype == LT_ETHERNET:
            h = tunnel_fast_in(t, b.buf, p)
        r = parse_frame(p, b.buf + p.off, vxlan_port)
        if h > 0:
            p.decap = <uint8_t>h        # the fast path decapsulated it: this was the inner packet
            if r == R_ARP:
                set_verdict(p, V_LOCAL, ST_DECAP, R_ARP)
            elif r:
                drop(p, ST_DECAP, r)
            continue
        if r == 0:
            if p.tunnel != TUN_NONE or (p.proto == P_UDP and udp_ports[0] != 0 and
                                        (p.dport == udp_ports[0] or p.dport == udp_ports[1] or
                                         p.dport == udp_ports[2] or p.dport == udp_ports[3])):
                after(<void*>t, b.buf, p)
        elif r == R_ARP:
            set_verdict(p, V_LOCAL, ST_PARSE, R_ARP)
        else:
            drop(p, ST_PARSE, r)


def parse(Batch b not None, vxlan_port=DEFAULT_VXLAN_PORT):
    """Run the parse stage over batch `b` (see the module docstring).

    `vxlan_port`: UDP destination port recognised as VXLAN (0: none).
    """
    if not (0 <= vxlan_port <= 0xFFFF):
        raise ValueError(f"vxlan_port must be 0..65535, got {vxlan_port}")
    cdef uint16_t port = vxlan_port
    with nogil:
        parse_batch(b, port)


def parse_ip_at(Batch b not None, Py_ssize_t i, uint32_t l3, uint8_t ver=0,
                vxlan_port=DEFAULT_VXLAN_PORT):
    """parse_ip() on packet i from the IP header at offset l3 (relative to off).

    Re-computes the L3/L4 fields in place and returns the Reason (0: parsed);
    sets no verdict, keeps ethertype/vlan. For tools and tests: stages cimport
    parse_ip itself.
    """
    if i < 0 or i >= b.count:
        raise IndexError(i)
    if ver not in (0, 4, 6):
        raise ValueError(f"IP version must be 0, 4 or 6, got {ver}")
    if not (0 <= vxlan_port <= 0xFFFF):
        raise ValueError(f"vxlan_port must be 0..65535, got {vxlan_port}")
    cdef pkt_meta_t* p = &b.m[i]
    return parse_ip(p, b.buf + p.off, l3, p.len, p.wire_len, ver, <uint16_t>vxlan_port)


def hash_of(Batch b not None, Py_ssize_t i):
    """flow_hash() recomputed from packet i's current tuple (for tests/tools)."""
    if i < 0 or i >= b.count:
        raise IndexError(i)
    return flow_hash(&b.m[i])


def parse_guarded(data, uint16_t linktype=LT_ETHERNET, wire_len=None, vxlan_port=DEFAULT_VXLAN_PORT):
    """Parse one frame laid flush against an unreadable page (a fuzzing aid).

    Any read past the frame's last captured byte faults (SIGSEGV) instead of
    passing unnoticed. Returns the packet's metadata as a META_DTYPE record,
    with off = 0, after the same verdict rules as parse().
    """
    cdef bytes raw = bytes(data)
    cdef Py_ssize_t n = len(raw)
    cdef Py_ssize_t page = _mmap.PAGESIZE
    cdef Py_ssize_t size
    cdef uint8_t* mem
    cdef uint8_t* start
    cdef pkt_meta_t* p
    cdef uint16_t r
    if n > MAX_FRAME:
        raise ValueError(f"frame of {n} bytes is larger than {MAX_FRAME}")
    if not (0 <= vxlan_port <= 0xFFFF):
        raise ValueError(f"vxlan_port must be 0..65535, got {vxlan_port}")
    size = ((n + page - 1) // page + 1) * page
    mem = <uint8_t*>mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if <void*>mem == MAP_FAILED:
        raise MemoryError("mmap failed")
    out = np.zeros(1, dtype=META_DTYPE)
    try:
        if mprotect(mem + size - page, page, PROT_NONE) != 0:
            raise OSError("mprotect failed")
        start = mem + size - page - n
        if n:
            memcpy(start, <const char*>raw, n)
        p = <pkt_meta_t*>cnp.PyArray_DATA(out)
        meta_reset(p)
        p.len = <uint32_t>n
        p.wire_len = <uint32_t>(n if wire_len is None or wire_len < n else wire_len)
        p.linktype = linktype
        r = parse_frame(p, start, <uint16_t>vxlan_port)
        if r == R_ARP:
            set_verdict(p, V_LOCAL, ST_PARSE, R_ARP)
        elif r:
            drop(p, ST_PARSE, r)
    finally:
        munmap(mem, size)
    return out[0]
