# cython: boundscheck=False, wraparound=False
"""Rejecting a packet: the ICMP port-unreachable reply, as kube-proxy's reject does.

kube-proxy (nftables mode: `reject` in an inet table; iptables mode: REJECT with
its default icmp-port-unreachable) answers traffic to a Service with no endpoints
with ICMP / ICMPv6 port unreachable, for TCP as well as UDP and SCTP; a TCP client
sees ECONNREFUSED at once. kdp does the same.

The reply is built in place: the original IP packet, cut to what fits the minimum
MTU, becomes the quote; the new IP and ICMP headers go into the headroom in front
of it, and the link header moves back with them (Ethernet addresses swapped).
"""
from libc.string cimport memmove, memcpy
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from kdp._fast.packet cimport (Batch, pkt_meta_t, drop, set_verdict, V_REJECT,
                               LT_ETHERNET, R_NO_HEADROOM, NO_PORT)
from kdp._fast.checksum cimport st16, cs_sum, cs_fold


cdef void reject_port_unreachable(Batch b, pkt_meta_t* p, uint8_t stage, uint16_t reason) noexcept nogil:
    cdef uint32_t hdr = 28 if p.ip_ver == 4 else 48
    cdef uint32_t l3 = p.l3_off
    cdef uint32_t avail = p.len - l3
    cdef uint32_t quote = avail
    cdef uint32_t new_off, total
    cdef uint64_t s
    cdef uint8_t* ip
    cdef uint8_t* icmp
    cdef uint8_t mac[6]
    cdef uint8_t tmp6[16]
    cdef uint32_t tmp4
    cdef uint8_t orig_proto = p.proto
    if p.ip_ver == 4:
        if quote > ICMP4_QUOTE_MAX:
            quote = ICMP4_QUOTE_MAX
    else:
        if quote > ICMP6_QUOTE_MAX:
            quote = ICMP6_QUOTE_MAX
    if p.off < hdr + 64:    # never reach into the previous packet's bytes
        drop(p, stage, R_NO_HEADROOM)
        return
    new_off = p.off - hdr
    memmove(b.buf + new_off, b.buf + p.off, l3)
    if p.linktype == LT_ETHERNET and l3 >= 12:
        memcpy(mac, b.buf + new_off, 6)
        memmove(b.buf + new_off, b.buf + new_off + 6, 6)
        memcpy(b.buf + new_off + 6, mac, 6)
    ip = b.buf + new_off + l3
    total = hdr + quote
    if p.ip_ver == 4:
        ip[0] = 0x45
        ip[1] = 0
        st16(ip + 2, <uint16_t>total)
        st16(ip + 4, 0)
        st16(ip + 6, 0)
        ip[8] = 64
        ip[9] = 1
        st16(ip + 10, 0)
        tmp4 = p.dst4                   # the reply comes from the address the client asked for
        p.dst4 = p.src4
        p.src4 = tmp4
        ip[12] = <uint8_t>(p.src4 >> 24); ip[13] = <uint8_t>(p.src4 >> 16)
        ip[14] = <uint8_t>(p.src4 >> 8); ip[15] = <uint8_t>p.src4
        ip[16] = <uint8_t>(p.dst4 >> 24); ip[17] = <uint8_t>(p.dst4 >> 16)
        ip[18] = <uint8_t>(p.dst4 >> 8); ip[19] = <uint8_t>p.dst4
        st16(ip + 10, <uint16_t>~cs_fold(cs_sum(ip, 20, 0)))
        icmp = ip + 20
        icmp[0] = 3                     # destination unreachable
        icmp[1] = 3                     # port unreachable
        st16(icmp + 2, 0)
        st16(icmp + 4, 0)
        st16(icmp + 6, 0)
        st16(icmp + 2, <uint16_t>~cs_fold(cs_sum(icmp, 8 + quote, 0)))
        p.proto = 1
    else:
        ip[0] = 0x60
        ip[1] = 0
        ip[2] = 0
        ip[3] = 0
        st16(ip + 4, <uint16_t>(8 + quote))
        ip[6] = 58
        ip[7] = 64
        memcpy(tmp6, p.dst6, 16)
        memcpy(p.dst6, p.src6, 16)
        memcpy(p.src6, tmp6, 16)
        memcpy(ip + 8, p.src6, 16)
        memcpy(ip + 24, p.dst6, 16)
        icmp = ip + 40
        icmp[0] = 1                     # destination unreachable
        icmp[1] = 4                     # port unreachable
        st16(icmp + 2, 0)
        st16(icmp + 4, 0)
        st16(icmp + 6, 0)
        # pseudo-header: addresses, upper-layer length, next header
        s = cs_sum(icmp, 8 + quote, cs_sum(ip + 8, 32, 8 + quote + 58))
        st16(icmp + 2, <uint16_t>~cs_fold(s))
        p.proto = 58
    p.off = new_off
    p.len = l3 + total
    p.wire_len = p.len
    p.l4_off = <uint16_t>(l3 + hdr - 8)
    p.quote_off = <uint16_t>(l3 + hdr)
    p.ttl = 64
    p.icmp_type = icmp[0]
    p.icmp_code = icmp[1]
    # the quote is the original packet: its tuple is the reply's, reversed
    p.q_sport = p.sport
    p.q_dport = p.dport
    p.q_proto = orig_proto
    p.q_src4 = p.dst4
    p.q_dst4 = p.src4
    memcpy(p.q_src6, p.dst6, 16)
    memcpy(p.q_dst6, p.src6, 16)
    p.sport = 0
    p.dport = 0
    p.tcp_flags = 0
    p.out_port = p.in_port
    set_verdict(p, V_REJECT, stage, reason)


def reject(Batch b not None, Py_ssize_t i, uint8_t stage, uint16_t reason):
    """Turn packet i (parsed) into its ICMP port-unreachable reply (see the module doc)."""
    if i < 0 or i >= b.count:
        raise IndexError(i)
    if b.m[i].ip_ver == 0:
        raise ValueError("only IP packets can be rejected")
    reject_port_unreachable(b, &b.m[i], stage, reason)
