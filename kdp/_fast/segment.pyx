# cython: boundscheck=False, wraparound=False
"""TCP segmentation offload done in kdp: GSO super-frames cut before a tunnel.

`kdp attach` lets the kernel hand it TCP super-frames of up to 64 KiB (TAP with TSO:
gso_size set, the TCP checksum field holding the pseudo-header sum only). One that
leaves on a plain route is written whole and the kernel behind the egress TAP
segments it; one bound for an IP-in-IP or VXLAN tunnel cannot be (a TAP's virtio
header has no GSO type for them), so the encap stage marks it R_FORWARDED_SEGMENTED
and this pass cuts it as Linux's tcp_gso_segment does:

  * segment k carries payload bytes [k * gso_size, (k + 1) * gso_size) after a copy of
    the link, IP and TCP headers;
  * sequence number + k * gso_size; FIN and PSH only on the last segment, CWR only on
    the first; IPv4 identification + k, total length and header checksum per
    segment; IPv6 payload length per segment;
  * the TCP checksum computed in full over each segment (pseudo-header included).

The first segment stays in the packet's place in its batch (verdict, counters and log
line are the packet's); the others go to the pipeline's `extra`, each a copy of the
packet's metadata with its own offsets, as IPv4 fragments do (frag.pyx). Every segment
then goes through the encap stage's egress (tunnel and Ethernet addresses).
"""
from libc.string cimport memcpy
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from kdp._fast.packet cimport (Batch, pkt_meta_t, HEADROOM, SLOT_ALIGN, V_FORWARD,
                               R_FORWARDED_SEGMENTED, ip_length, tcp_headers_length)
from kdp._fast.route cimport RouteTable
from kdp._fast.neigh cimport Neighbours
from kdp._fast.encap cimport egress_one
from kdp._fast.checksum cimport ld16, ld32, st16, st32, cs_sum, cs_fold, kdp_csum16

cdef enum:
    TCP_FIN = 0x01
    TCP_PSH = 0x08
    TCP_CWR = 0x80


cdef uint32_t gso_segments(const pkt_meta_t* p, const uint8_t* ip) noexcept nogil:
    cdef uint32_t hdr, total
    if p.gso_size == 0 or p.l4_off <= p.l3_off:
        return 1
    hdr = tcp_headers_length(p, ip)
    total = ip_length(p, ip)
    if total <= hdr + p.gso_size:
        return 1
    return (total - hdr + p.gso_size - 1) // p.gso_size


cdef void _finish(const pkt_meta_t* p, uint8_t* ip, uint32_t hdr, uint32_t size, uint32_t k,
                  uint32_t last, uint32_t seq, uint32_t mss, uint16_t ip_id) noexcept nogil:
    """Headers of segment k (of segments 0..last, mss payload bytes each but the last)
    carrying `size` payload bytes after them."""
    cdef uint32_t l4 = <uint32_t>(p.l4_off - p.l3_off)
    cdef uint8_t* th = ip + l4
    cdef uint32_t tcp_len = hdr - l4 + size
    cdef uint64_t s
    if p.ip_ver == 4:
        st16(ip + 2, <uint16_t>(hdr + size))
        st16(ip + 4, <uint16_t>(ip_id + k))
        st16(ip + 10, 0)
        st16(ip + 10, <uint16_t>~cs_fold(cs_sum(ip, (ip[0] & 15) * 4, 0)))
        s = cs_sum(ip + 12, 8, 0)
    else:
        st16(ip + 4, <uint16_t>(hdr + size - 40))
        s = cs_sum(ip + 8, 32, 0)
    st32(th + 4, seq + k * mss)
    if k != last:
        th[13] &= ~(TCP_FIN | TCP_PSH)
    if k != 0:
        th[13] &= ~TCP_CWR
    st16(th + 16, 0)
    s += 6 + tcp_len + kdp_csum16(th, tcp_len)
    st16(th + 16, <uint16_t>~cs_fold(s))


cdef void gso_complete(pkt_meta_t* p, uint8_t* ip) noexcept nogil:
    cdef uint32_t hdr = tcp_headers_length(p, ip)
    _finish(p, ip, hdr, ip_length(p, ip) - hdr, 0, 0,
            ld32(ip + (p.l4_off - p.l3_off) + 4), p.gso_size, ld16(ip + 4) if p.ip_ver == 4 else 0)
    p.gso_size = 0


cdef Py_ssize_t segment_batch(RouteTable t, Neighbours n, Batch b, Batch out) noexcept nogil:
    cdef Py_ssize_t i, made = 0
    cdef pkt_meta_t* p
    cdef pkt_meta_t* q
    cdef uint8_t* ip
    cdef uint8_t* dst
    cdef uint32_t l3, hdr, total, payload, mss, nseg, k, size, head, start, seq
    cdef uint16_t ip_id
    for i in range(b.count):
        p = &b.m[i]
        if p.verdict != V_FORWARD or p.reason != R_FORWARDED_SEGMENTED:
            continue
        l3 = p.l3_off
        ip = b.buf + p.off + l3
        nseg = gso_segments(p, ip)
        mss = p.gso_size
        p.gso_size = 0
        total = ip_length(p, ip)
        if p.len < l3 + total:          # never: a super-frame from a TAP is whole
            egress_one(t, n, b, i)
            continue
        hdr = tcp_headers_length(p, ip)
        head = l3 + hdr                 # link + IP + TCP header bytes
        payload = total - hdr
        seq = ld32(ip + (p.l4_off - l3) + 4)
        ip_id = ld16(ip + 4) if p.ip_ver == 4 else 0
        for k in range(1, nseg):
            if out.count >= out.capacity:
                break                   # never: the pipeline sized `out` from encap_batch
            size = payload - k * mss if payload - k * mss < mss else mss
            start = <uint32_t>(out.used + HEADROOM)
            q = &out.m[out.count]
            memcpy(q, p, sizeof(pkt_meta_t))
            dst = out.buf + start
            memcpy(dst, b.buf + p.off, head)
            memcpy(dst + head, b.buf + p.off + head + k * mss, size)
            _finish(q, dst + l3, hdr, size, k, nseg - 1, seq, mss, ip_id)
            q.off = start
            q.len = head + size
            q.wire_len = q.len
            out.used = (start + q.len + SLOT_ALIGN - 1) & ~(<Py_ssize_t>SLOT_ALIGN - 1)
            out.count += 1
            made += 1
            egress_one(t, n, out, out.count - 1)
        _finish(p, ip, hdr, mss, 0, nseg - 1, seq, mss, ip_id)
        p.len = head + mss
        p.wire_len = p.len
        egress_one(t, n, b, i)
    return made


def segment(Batch b not None, RouteTable routes not None, Batch out not None,
            Neighbours neighbours=None):
    """Run the segment pass over b (after encap); returns the segments appended to out."""
    cdef Py_ssize_t made
    with nogil:
        made = segment_batch(routes, neighbours, b, out)
    return made
