# cython: boundscheck=False, wraparound=False
"""ICMP and ICMPv6 answers of a router, built in place of the packet they answer.

Errors (RFC 792, RFC 1812 4.3.2.3, RFC 4443): the original IP packet, cut so that
the error fits the minimum MTU (548 bytes quoted for IPv4, as Linux's icmp_send;
1232 for IPv6), becomes the quote; the new IP and ICMP headers go into the headroom
in front of it. The route stage sends "time exceeded" (TTL / hop limit ran out) and
"fragmentation needed" / "packet too big" (larger than the route's MTU) with these;
reject.pyx builds the service stage's port unreachable the same way.

As Linux sets them: an IPv4 error has TTL 64, TOS = the original's TOS bits with
precedence "internetwork control" (0xC0), DF clear; an IPv6 error hop limit 64,
traffic class 0. The IPv4 identification is the low 16 bits of the offending flow's
hash (Linux draws it at random; kdp stays reproducible).

Echo replies (RFC 792 "Echo or Echo Reply", RFC 4443 4.2): an echo request to one of
the node's addresses is answered by swapping the addresses, TTL / hop limit 64,
type 0 / 129; identifier, sequence number and data are echoed unchanged, DF is clear
(Linux's ICMP socket does not set it). IPv4 options are echoed as they came.
"""
from libc.string cimport memcpy, memmove
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from kdp._fast.packet cimport (Batch, pkt_meta_t, LT_ETHERNET, LT_RAW, NO_PORT, FRAG_NONE,
                               FRAG_LATER, TUN_NONE, R_NO_HEADROOM)
from kdp._fast.checksum cimport ld16, st16, st32, cs_sum, cs_fold, cs_apply, cs_d16
from kdp._fast.headroom cimport batch_floor


cdef inline bint _v4_unicast(uint32_t a) noexcept nogil:
    cdef uint32_t top = a >> 24
    return top != 0 and top != 127 and top < 224


cdef inline bint _v6_unicast(const uint8_t* a) noexcept nogil:
    cdef int k
    if a[0] == 0xFF:
        return False                    # multicast
    for k in range(15):
        if a[k]:
            return True
    return a[15] > 1                    # :: (unspecified) and ::1 (loopback) are not


cdef bint icmp_error_allowed(const pkt_meta_t* p, bint too_big) noexcept nogil:
    cdef uint8_t t = p.icmp_type
    if p.ip_ver == 4:
        if p.frag == FRAG_LATER or not _v4_unicast(p.src4):
            return False
        if (p.dst4 >> 28) >= 0xE:        # multicast, reserved, and 255.255.255.255
            return False
        if p.proto == 1 and (t == 3 or t == 4 or t == 5 or t == 11 or t == 12):
            return False                # never an error about an error
        return True
    if p.ip_ver == 6:
        if not _v6_unicast(p.src6):
            return False
        if p.dst6[0] == 0xFF and not too_big:
            return False
        if p.proto == 58 and (t < 128 or t == 137):
            return False                # errors and redirects are ineligible
        return True
    return False


cdef uint16_t icmp_error(Batch b, Py_ssize_t i, uint8_t type, uint8_t code, uint32_t info,
                         uint32_t src4, const uint8_t* src6) noexcept nogil:
    cdef pkt_meta_t* p = &b.m[i]
    cdef uint32_t l3 = p.l3_off
    cdef bint eth = p.linktype == LT_ETHERNET and l3 >= 14
    cdef uint32_t link = 14 if eth else 0
    cdef uint32_t hdr = 28 if p.ip_ver == 4 else 48
    cdef uint8_t* ip = b.buf + p.off + l3
    cdef uint32_t quote = p.len - l3
    cdef uint32_t iplen, new_ip, new_off
    cdef uint8_t* nip
    cdef uint8_t* icmp
    cdef uint64_t s
    cdef uint8_t tos
    if p.ip_ver == 4:
        iplen = ld16(ip + 2)
        tos = (ip[1] & 0x1E) | 0xC0
        if quote > ICMP_ERR4_QUOTE:
            quote = ICMP_ERR4_QUOTE
    else:
        iplen = 40 + ld16(ip + 4)
        tos = 0
        if quote > ICMP_ERR6_QUOTE:
            quote = ICMP_ERR6_QUOTE
    if quote > iplen:
        quote = iplen                   # not the Ethernet padding after the IP packet
    new_ip = p.off + l3 - hdr
    new_off = new_ip - link
    if p.off + l3 < hdr + link or new_off < batch_floor(b, i):
        return R_NO_HEADROOM
    if eth:
        memmove(b.buf + new_off, b.buf + p.off, 12)     # the addresses; the egress stage rewrites them
        b.buf[new_off + 12] = 0x08 if p.ip_ver == 4 else 0x86
        b.buf[new_off + 13] = 0x00 if p.ip_ver == 4 else 0xDD
    nip = b.buf + new_ip
    # the quote keeps the original tuple
    p.q_proto = p.proto
    p.q_sport = p.sport
    p.q_dport = p.dport
    p.q_src4 = p.src4
    p.q_dst4 = p.dst4
    memcpy(p.q_src6, p.src6, 16)
    memcpy(p.q_dst6, p.dst6, 16)
    if p.ip_ver == 4:
        p.dst4 = p.src4
        p.src4 = src4
        p.frag_id = <uint16_t>p.hash
        nip[0] = 0x45
        nip[1] = tos
        st16(nip + 2, <uint16_t>(hdr + quote))
        st16(nip + 4, <uint16_t>p.frag_id)
        st16(nip + 6, 0)
        nip[8] = ICMP_TTL
        nip[9] = 1
        st16(nip + 10, 0)
        st32(nip + 12, p.src4)
        st32(nip + 16, p.dst4)
        st16(nip + 10, <uint16_t>~cs_fold(cs_sum(nip, 20, 0)))
        icmp = nip + 20
        icmp[0] = type
        icmp[1] = code
        st16(icmp + 2, 0)
        st32(icmp + 4, info)
        st16(icmp + 2, <uint16_t>~cs_fold(cs_sum(icmp, 8 + quote, 0)))
        p.proto = 1
    else:
        memcpy(p.dst6, p.src6, 16)
        memcpy(p.src6, src6, 16)
        p.frag_id = 0
        nip[0] = 0x60
        nip[1] = 0
        nip[2] = 0
        nip[3] = 0
        st16(nip + 4, <uint16_t>(8 + quote))
        nip[6] = 58
        nip[7] = ICMP_TTL
        memcpy(nip + 8, p.src6, 16)
        memcpy(nip + 24, p.dst6, 16)
        icmp = nip + 40
        icmp[0] = type
        icmp[1] = code
        st16(icmp + 2, 0)
        st32(icmp + 4, info)
        # pseudo-header: addresses, upper-layer length, next header
        s = cs_sum(icmp, 8 + quote, cs_sum(nip + 8, 32, 8 + quote + 58))
        st16(icmp + 2, <uint16_t>~cs_fold(s))
        p.proto = 58
    p.off = new_off
    p.len = link + hdr + quote
    p.wire_len = p.len
    p.linktype = LT_ETHERNET if eth else LT_RAW
    p.ethertype = 0x0800 if p.ip_ver == 4 else 0x86DD
    p.vlan = NO_PORT
    p.l3_off = <uint16_t>link
    p.l4_off = <uint16_t>(link + hdr - 8)
    p.quote_off = <uint16_t>(link + hdr)
    p.inner_off = 0
    p.tunnel = TUN_NONE
    p.ttl = ICMP_TTL
    p.icmp_type = type
    p.icmp_code = code
    p.icmp_id = 0
    p.frag = FRAG_NONE
    p.sport = 0
    p.dport = 0
    p.tcp_flags = 0
    return 0


cdef bint icmp_is_echo_request(const pkt_meta_t* p, const uint8_t* pkt) noexcept nogil:
    if p.frag != FRAG_NONE or p.l4_off == 0:
        return False
    if p.ip_ver == 4:
        return p.proto == 1 and p.icmp_type == ICMP4_ECHO and p.icmp_code == 0
    if p.ip_ver == 6:
        return p.proto == 58 and p.icmp_type == ICMP6_ECHO and p.icmp_code == 0
    return False


cdef void icmp_echo_reply(Batch b, pkt_meta_t* p) noexcept nogil:
    cdef uint8_t* ip = b.buf + p.off + p.l3_off
    cdef uint8_t* icmp = b.buf + p.off + p.l4_off
    cdef uint8_t tmp[16]
    cdef uint32_t t4
    cdef uint16_t old = ld16(icmp)
    cdef uint32_t ihl, n, end
    cdef uint64_t s
    if p.ip_ver == 4:
        ihl = (ip[0] & 15) * 4
        memcpy(tmp, ip + 12, 4)
        memcpy(ip + 12, ip + 16, 4)
        memcpy(ip + 16, tmp, 4)
        st16(ip + 6, 0)
        ip[8] = ICMP_TTL
        st16(ip + 10, 0)
        st16(ip + 10, <uint16_t>~cs_fold(cs_sum(ip, ihl, 0)))
        icmp[0] = ICMP4_ECHO_REPLY
        t4 = p.src4
        p.src4 = p.dst4
        p.dst4 = t4
    else:
        memcpy(tmp, ip + 8, 16)
        memcpy(ip + 8, ip + 24, 16)
        memcpy(ip + 24, tmp, 16)
        ip[7] = ICMP_TTL
        icmp[0] = ICMP6_ECHO_REPLY
        memcpy(tmp, p.src6, 16)
        memcpy(p.src6, p.dst6, 16)
        memcpy(p.dst6, tmp, 16)
    # recomputed whole when the capture holds the whole message (exactly the sum a
    # sender computes); else updated for the type change (the swapped addresses leave
    # the pseudo-header sum as it was)
    end = p.l3_off + (ld16(ip + 2) if p.ip_ver == 4 else 40 + <uint32_t>ld16(ip + 4))
    n = end - p.l4_off
    if end <= p.len and n >= 8:
        st16(icmp + 2, 0)
        if p.ip_ver == 4:
            s = cs_sum(icmp, n, 0)
        else:
            s = cs_sum(icmp, n, cs_sum(ip + 8, 32, n + 58))
        st16(icmp + 2, <uint16_t>~cs_fold(s))
    else:
        st16(icmp + 2, cs_apply(ld16(icmp + 2), cs_d16(0, old, ld16(icmp))))
    p.icmp_type = icmp[0]
    p.ttl = ICMP_TTL


# ---------------------------------------------------------------- Python entry points (tests, tools)

def error(Batch b not None, Py_ssize_t i, uint8_t type, uint8_t code, uint32_t info=0,
          source=None):
    """Turn packet i (parsed) into an ICMP error to its sender (see icmp_error);
    `source` is the error's source address (ipaddress-compatible). Returns the Reason
    (0: built)."""
    import ipaddress
    if i < 0 or i >= b.count:
        raise IndexError(i)
    cdef pkt_meta_t* p = &b.m[i]
    if p.ip_ver not in (4, 6):
        raise ValueError("only IP packets get ICMP errors")
    a = ipaddress.ip_address(source)
    if a.version != p.ip_ver:
        raise ValueError("the error's source must be of the packet's IP version")
    cdef uint8_t s6[16]
    cdef uint32_t s4 = 0
    if a.version == 4:
        s4 = int(a)
    else:
        memcpy(s6, <const char*>a.packed, 16)
    return icmp_error(b, i, type, code, info, s4, s6)


def allowed(Batch b not None, Py_ssize_t i, bint too_big=False):
    """icmp_error_allowed() for packet i."""
    if i < 0 or i >= b.count:
        raise IndexError(i)
    return icmp_error_allowed(&b.m[i], too_big)


def echo_reply(Batch b not None, Py_ssize_t i):
    """Answer packet i, an echo request, in place; False (unchanged) when it is none."""
    if i < 0 or i >= b.count:
        raise IndexError(i)
    cdef pkt_meta_t* p = &b.m[i]
    if not icmp_is_echo_request(p, b.buf + p.off):
        return False
    icmp_echo_reply(b, p)
    return True
