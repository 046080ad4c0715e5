# The common tunnel cases of the encap stage, inline: an IPv4 packet in an untagged
# Ethernet frame into IP-in-IP, or into VXLAN over IPv4, on a route whose template
# (route.pxd: tmpl, tmeta) says how. The route stage runs them in its own loop, while
# the packet is in cache and without a call; the encap stage's egress_one (fragments,
# answers, the stages one by one) runs the same code. Every other case is
# encap.pyx's general _encapsulate; both write the same bytes and metadata
# (tests/test_encap.py compares them with scapy's build and with the parser).
#
# Written for few instructions and few stores: the outer header and the metadata are
# copied from the route's templates in wide stores, the per-packet fields merged into
# 8-byte words in registers; values are loaded where they are used, so that few are
# live at once (inlined into the route stage's loop, more would be spilled).

from libc.string cimport memcpy
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from kdp._fast.packet cimport (Batch, pkt_meta_t, drop, ST_ENCAP, LT_ETHERNET, FRAG_NONE,
                               R_FORWARDED, R_FORWARDED_IPIP, R_FORWARDED_VXLAN, R_NO_HEADROOM)
from kdp._fast.route cimport route_t, RF_STATIC_MAC, TF_NONE, TF_IPIP4, TF_VXLAN4, TMETA_LEN
from kdp._fast.neigh cimport Neighbours
from kdp._fast.checksum cimport ld16, kdp_ld32_ne, kdp_st16_ne, kdp_st64_ne, kdp_bswap16
from kdp._fast.headroom cimport batch_floor
from kdp._fast.mix cimport mix64

cdef enum:
    VXLAN_SPORT_MIN = 32768     # Linux's default local port range, the VXLAN source ports
    VXLAN_SPORT_MAX = 60999


cdef inline uint16_t vxlan_sport(uint32_t hash) noexcept nogil:
    """Linux's udp_flow_src_port() on kdp's symmetric hash of the inner flow."""
    hash ^= hash << 16          # Linux obfuscates the hash: only its upper 16 bits count
    return <uint16_t>(((<uint64_t>hash * (VXLAN_SPORT_MAX - VXLAN_SPORT_MIN)) >> 32) + VXLAN_SPORT_MIN)


cdef inline uint64_t _be64_bytes(const uint8_t* a) noexcept nogil:
    cdef uint64_t v = 0
    cdef int k
    for k in range(8):
        v = (v << 8) | a[k]
    return v


cdef inline uint32_t symmetric_hash(const pkt_meta_t* p) noexcept nogil:
    """A hash of the inner flow that is the same both ways (Linux's flow hash is)."""
    cdef uint64_t x, y
    cdef uint16_t sp = p.sport, dp = p.dport
    if p.frag != FRAG_NONE:
        sp = dp = 0             # Linux's flow dissector reads no ports of fragments
    if p.ip_ver == 4:
        x = (<uint64_t>p.src4 << 16) | sp
        y = (<uint64_t>p.dst4 << 16) | dp
    else:
        x = (_be64_bytes(p.src6) * 0x9E3779B97F4A7C15ULL) ^ _be64_bytes(p.src6 + 8) ^ sp
        y = (_be64_bytes(p.dst6) * 0x9E3779B97F4A7C15ULL) ^ _be64_bytes(p.dst6 + 8) ^ dp
    # x + y and x ^ y are the same both ways: one mix of the two
    x = mix64((x + y) ^ ((x ^ y) * 0xC2B2AE3D27D4EB4FULL) ^ (<uint64_t>p.proto << 56))
    return <uint32_t>(x >> 32) ^ <uint32_t>x


cdef inline uint8_t ecn_encap(uint8_t inner_ds) noexcept nogil:
    """Outer DS byte: DSCP 0, ECN of the inner (CE becomes ECT(0))."""
    cdef uint8_t ecn = inner_ds & 3
    return 2 if ecn == 3 else ecn


cdef inline uint16_t _fold_small(uint32_t s) noexcept nogil:
    """Fold a one's complement sum below 2^32 to 16 bits (two steps suffice)."""
    s = (s & 0xFFFF) + (s >> 16)
    return <uint16_t>((s & 0xFFFF) + (s >> 16))


cdef inline uint32_t _meta_lengths(pkt_meta_t* p, uint32_t hdr, uint32_t iplen) noexcept nogil:
    """The outer packet's len and wire_len (hdr bytes of headers in front of the inner IP
    packet, whose Ethernet padding is not carried)."""
    cdef uint32_t plen = p.len, wire = p.wire_len
    cdef uint32_t present = plen - 14
    cdef uint32_t cut = wire - plen if wire > plen else 0
    if present > iplen:
        present = iplen
    p.len = hdr + present
    p.wire_len = hdr + iplen + cut
    return 0


cdef inline void _learned_mac(Neighbours n, const route_t* rec, uint8_t* f) noexcept nogil:
    """A learned MAC for the remote node replaces the template's placeholder."""
    if not (rec.flags & RF_STATIC_MAC) and n is not None and (n.count4 != 0 or n.count6 != 0):
        n.lookup4(rec.via4, f)


cdef inline void _ipip4_out(Neighbours n, Batch b, Py_ssize_t i, pkt_meta_t* p,
                            const route_t* rec) noexcept nogil:
    cdef uint32_t off = p.off
    cdef uint8_t* ip = b.buf + off + 14
    cdef uint8_t* f
    cdef uint32_t iplen, w4
    cdef uint8_t ecn, ttl
    cdef uint16_t ident, frag
    cdef uint64_t w
    if off < 34 - 14 or off - 20 < batch_floor(b, i):
        drop(p, ST_ENCAP, R_NO_HEADROOM)
        return
    iplen = ld16(ip + 2)
    ecn = ecn_encap(ip[1])
    w4 = kdp_ld32_ne(ip + 4)            # identification and flags, as on the wire
    ident = kdp_bswap16(<uint16_t>w4)
    ttl = ip[8]                         # ttl inherit (the route stage decremented it)
    frag = <uint16_t>((w4 >> 16) & 0x40) << 8   # DF as the inner's (tunl0: nopmtudisc)
    f = b.buf + off - 20
    # outer Ethernet, then IPv4 bytes 0-7 (version/IHL, DS, length, id, flags) and
    # 8-15 (TTL, protocol, checksum, source), then the destination
    memcpy(f, rec.tmpl, 16)
    w = (0x45 | (<uint64_t>ecn << 8) | (<uint64_t>kdp_bswap16(<uint16_t>(20 + iplen)) << 16)
         | (<uint64_t>(w4 & 0x0040FFFFU) << 32))
    kdp_st64_ne(f + 14, w)
    w = (ttl | (4 << 8) | (<uint64_t>kdp_bswap16(<uint16_t>~_fold_small(
            rec.tmpl_sum + ecn + 20 + iplen + ident + frag + ((<uint32_t>ttl << 8) | 4))) << 16)
         | (<uint64_t>kdp_ld32_ne(rec.tmpl + 26) << 32))
    kdp_st64_ne(f + 22, w)
    memcpy(f + 30, rec.tmpl + 30, 4)
    # the metadata now describe the outer packet, as the parser would
    _meta_lengths(p, 34, iplen)
    memcpy(&p.l3_off, rec.tmeta, TMETA_LEN)
    p.ttl = ttl
    p.frag_id = ident
    p.reason = R_FORWARDED_IPIP if p.reason == R_FORWARDED else p.reason
    p.off = off - 20
    _learned_mac(n, rec, f)


cdef inline void _vxlan4_out(Neighbours n, Batch b, Py_ssize_t i, pkt_meta_t* p,
                             const route_t* rec) noexcept nogil:
    # the source port first: the hash's temporaries are gone before the rest is loaded
    cdef uint16_t sport = vxlan_sport(symmetric_hash(p))
    cdef uint32_t off = p.off
    cdef uint8_t* ip = b.buf + off + 14
    cdef uint8_t* f
    cdef uint32_t iplen, udp_len, w4
    cdef uint8_t ecn
    cdef uint16_t ident
    cdef uint64_t w
    if off < 64 - 14 or off - 50 < batch_floor(b, i):
        drop(p, ST_ENCAP, R_NO_HEADROOM)
        return
    iplen = ld16(ip + 2)
    udp_len = 8 + 8 + 14 + iplen
    ecn = ecn_encap(ip[1])
    w4 = kdp_ld32_ne(ip + 4)
    ident = kdp_bswap16(<uint16_t>w4)
    f = b.buf + off - 50
    # outer Ethernet, IPv4 (TTL 64, DF clear), UDP, VXLAN, inner Ethernet from the
    # template, then IPv4 bytes 0-7, the checksum, UDP bytes 0-7 (checksum 0)
    memcpy(f, rec.tmpl, 64)
    w = (0x45 | (<uint64_t>ecn << 8) | (<uint64_t>kdp_bswap16(<uint16_t>(20 + udp_len)) << 16)
         | (<uint64_t>(w4 & 0xFFFFU) << 32))
    kdp_st64_ne(f + 14, w)
    kdp_st16_ne(f + 24, kdp_bswap16(<uint16_t>~_fold_small(rec.tmpl_sum + ecn + 20 + udp_len + ident)))
    w = (kdp_bswap16(sport) | (<uint64_t>kdp_ld32_ne(rec.tmpl + 34) & 0xFFFF0000U)
         | (<uint64_t>kdp_bswap16(<uint16_t>udp_len) << 32))
    kdp_st64_ne(f + 34, w)
    _meta_lengths(p, 64, iplen)
    memcpy(&p.l3_off, rec.tmeta, TMETA_LEN)
    p.sport = sport
    p.frag_id = ident
    p.reason = R_FORWARDED_VXLAN if p.reason == R_FORWARDED else p.reason
    p.off = off - 50
    _learned_mac(n, rec, f)


cdef inline bint tunnel_fast(Neighbours n, Batch b, Py_ssize_t i, pkt_meta_t* p,
                             const route_t* rec) noexcept nogil:
    """Put packet i into its route's tunnel when it is one of the common cases (see the
    top of this file): True when done (or dropped R_NO_HEADROOM), False when the
    general _encapsulate must do it. The checks are the route's (rec.tfast, set when
    the route is built) and the packet's."""
    cdef uint8_t fast = rec.tfast
    if fast == TF_NONE or p.ip_ver != 4 or p.linktype != LT_ETHERNET or p.l3_off != 14:
        return False
    if fast == TF_IPIP4:
        _ipip4_out(n, b, i, p, rec)
    else:
        _vxlan4_out(n, b, i, p, rec)
    return True
