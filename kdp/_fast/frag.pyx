# cython: boundscheck=False, wraparound=False
"""IPv4 fragmentation (RFC 791 3.2 "Fragmentation", RFC 1812 5.2.6) of forwarded packets.

The route stage answered packets with DF that do not fit their route's MTU (ICMP
fragmentation needed); IPv6 routers never fragment. An IPv4 packet without DF that
does not fit is marked by the encap stage (R_FORWARDED_FRAGMENTED) and split here, as
Linux's ip_fragment does:

  * every fragment but the last carries a multiple of 8 payload bytes, as many as the
    MTU allows; offsets count from the packet's own offset (a fragment can be
    fragmented again), MF is set on all but the last, which keeps the packet's MF;
  * the first fragment keeps all IP options, the others only those with the "copied"
    flag (RFC 791), padded to a multiple of 4 bytes;
  * identification, TOS, TTL and protocol are the packet's; each header gets its own
    length and checksum.

The first fragment stays in the packet's place in its batch (verdict, counters and
log line are the packet's); the others go to a second batch (the pipeline's `extra`,
written after the batch by replay), each a copy of the packet's metadata with the
fragment's offsets. Every piece then goes through the encap stage's egress (tunnel
and Ethernet addresses): a tunnel carries fragments, as Linux fragments before the
tunnel device encapsulates. A packet cut short by the capture is fragmented as far as
its bytes go; the pieces past them are written with their wire length only.
"""
from libc.string cimport memcpy, memset
from libc.stdint cimport uint8_t, uint16_t, uint32_t

from kdp._fast.packet cimport (Batch, pkt_meta_t, HEADROOM, SLOT_ALIGN, MAX_FRAME, V_FORWARD,
                               FRAG_NONE, FRAG_FIRST, FRAG_LATER, TUN_NONE,
                               R_FORWARDED_FRAGMENTED)
from kdp._fast.route cimport RouteTable
from kdp._fast.neigh cimport Neighbours
from kdp._fast.encap cimport egress_one
from kdp._fast.checksum cimport ld16, st16, cs_sum, cs_fold


cdef uint32_t _copied_options(const uint8_t* ip, uint32_t ihl, uint8_t* out) noexcept nogil:
    """The options of the header at ip (ihl bytes) that later fragments carry, written
    after out[20]; returns the new header length (a multiple of 4)."""
    cdef uint32_t k = 20, n = 20, olen
    cdef uint8_t t
    while k < ihl:
        t = ip[k]
        if t == 0:                      # end of options
            break
        if t == 1:                      # no-operation: not copied
            k += 1
            continue
        if k + 1 >= ihl:
            break
        olen = ip[k + 1]
        if olen < 2 or k + olen > ihl:
            break                       # malformed: copy nothing more
        if t & 0x80:
            memcpy(out + n, ip + k, olen)
            n += olen
        k += olen
    while n & 3:
        out[n] = 0                      # end of options, padding
        n += 1
    return n


cdef inline void _finish_header(uint8_t* h, uint32_t hl, uint32_t total, uint16_t frag_word) noexcept nogil:
    h[0] = <uint8_t>(0x40 | (hl >> 2))
    st16(h + 2, <uint16_t>total)
    st16(h + 6, frag_word)
    st16(h + 10, 0)
    st16(h + 10, <uint16_t>~cs_fold(cs_sum(h, hl, 0)))


cdef Py_ssize_t fragment_batch(RouteTable t, Neighbours n, Batch b, Batch out) noexcept nogil:
    cdef Py_ssize_t i, made = 0, j
    cdef pkt_meta_t* p
    cdef pkt_meta_t* q
    cdef uint8_t* ip
    cdef uint8_t* dst
    cdef uint8_t hdr2[60]
    cdef uint32_t l3, ihl, hl2, tot, payload, present, mtu, piece, first, a, size, have
    cdef uint32_t start, cut
    cdef uint16_t fw, base_off, last_mf
    for i in range(b.count):
        p = &b.m[i]
        if p.verdict != V_FORWARD or p.reason != R_FORWARDED_FRAGMENTED:
            continue
        l3 = p.l3_off
        ip = b.buf + p.off + l3
        ihl = (ip[0] & 15) * 4
        tot = ld16(ip + 2)
        payload = tot - ihl
        present = p.len - l3 - ihl if p.len >= l3 + ihl else 0
        if present > payload:
            present = payload           # Ethernet padding is not part of any fragment
        mtu = t.r[p.route_id].mtu
        fw = ld16(ip + 6)
        base_off = fw & 0x1FFF
        last_mf = fw & 0x2000
        # the later fragments' header: the copied options only
        memcpy(hdr2, ip, 20)
        hl2 = _copied_options(ip, ihl, hdr2)
        first = (mtu - ihl) & ~7u
        a = first
        while a < payload:
            piece = (mtu - hl2) & ~7u
            size = payload - a if payload - a < piece else piece
            have = present - a if present > a else 0
            if have > size:
                have = size
            # a slot in `out`, laid out as Batch.push lays it out
            if out.count >= out.capacity:
                break                   # never: the pipeline sized `out` from encap_batch
            start = <uint32_t>(out.used + HEADROOM)
            q = &out.m[out.count]
            memcpy(q, p, sizeof(pkt_meta_t))
            dst = out.buf + start
            memcpy(dst, b.buf + p.off, l3)                  # the link header
            memcpy(dst + l3, hdr2, hl2)
            if have:
                memcpy(dst + l3 + hl2, ip + ihl + a, have)
            fw = <uint16_t>((fw & 0x4000) | (base_off + a // 8))
            if a + size < payload or last_mf:
                fw |= 0x2000
            _finish_header(dst + l3, hl2, hl2 + size, fw)
            q.off = start
            q.len = l3 + hl2 + have
            q.wire_len = l3 + hl2 + size
            q.frag = FRAG_LATER
            q.l4_off = 0
            q.sport = 0
            q.dport = 0
            q.tcp_flags = 0
            q.icmp_type = 0
            q.icmp_code = 0
            q.icmp_id = 0
            q.quote_off = 0
            q.q_proto = 0
            q.inner_off = 0
            q.tunnel = TUN_NONE
            out.used = (start + q.len + SLOT_ALIGN - 1) & ~(<Py_ssize_t>SLOT_ALIGN - 1)
            out.count += 1
            made += 1
            egress_one(t, n, out, out.count - 1)
            a += size
        # the first fragment, in place
        fw = ld16(ip + 6)
        _finish_header(ip, ihl, ihl + first, <uint16_t>(fw | 0x2000))
        cut = p.wire_len - p.len if p.wire_len > p.len else 0
        have = present if present < first else first
        p.len = l3 + ihl + have
        p.wire_len = l3 + ihl + first
        if p.frag == FRAG_NONE:
            p.frag = FRAG_FIRST
        egress_one(t, n, b, i)
    return made


def fragment(Batch b not None, RouteTable routes not None, Batch out not None,
             Neighbours neighbours=None):
    """Run the fragment pass over b (after encap); returns the fragments appended to out."""
    cdef Py_ssize_t made
    with nogil:
        made = fragment_batch(routes, neighbours, b, out)
    return made
