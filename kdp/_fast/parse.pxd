# The packet parser: link layer, IPv4/IPv6 (+ extension headers), L4 ports,
# ICMP error quotes, tunnel recognition and the flow hash. See parse.pyx for
# the stage contract.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from kdp._fast.packet cimport (Batch, pkt_meta_t, drop, set_verdict, V_PENDING, V_LOCAL, ST_PARSE,
                               ST_DECAP, TUN_NONE, LT_ETHERNET, R_ARP)

cdef enum:
    MAX_IPV6_EXT = 8            # extension headers followed before R_TOO_MANY_IPV6_EXT
    DEFAULT_VXLAN_PORT = 4789

# The stage: parse every V_PENDING packet of the batch.
cdef void parse_batch(Batch b, uint16_t vxlan_port) noexcept nogil

# Parse one frame that starts at `pkt` (= batch buffer + p.off), by p.linktype,
# using p.len (captured) and p.wire_len. Resets and fills every parse field.
# Returns 0 (R_FORWARDED) when the packet parsed and continues, R_ARP for an
# ARP packet (the caller hands it to the node: V_LOCAL), otherwise the drop
# reason. Sets no verdict: the caller decides the stage that drops.
cdef uint16_t parse_frame(pkt_meta_t* p, const uint8_t* pkt, uint16_t vxlan_port) noexcept nogil

# Parse from an IP header at offset `l3` of `pkt`. `cap_end` is the number of
# bytes present from `pkt` on (reads never pass it), `wire_end` the length
# on the wire (>= cap_end; the IP length fields are checked against it).
# `ver` 4 or 6, or 0 to take the version nibble. Resets the L3/L4 fields
# (not ethertype/vlan), sets l3_off = l3 and everything after it, and the
# hash. Returns 0 (R_FORWARDED) or the drop reason; sets no verdict.
cdef uint16_t parse_ip(pkt_meta_t* p, const uint8_t* pkt, uint32_t l3,
                       uint32_t cap_end, uint32_t wire_end, uint8_t ver,
                       uint16_t vxlan_port) noexcept nogil

# The flow hash of the tuple held in p (ip_ver, proto, src, dst, sport, dport).
cdef uint64_t flow_hash(const pkt_meta_t* p) noexcept nogil

# Internet checksum helper: one's complement sum of n bytes folded to 16
# bits (not inverted). A valid IPv4 header sums to 0xFFFF.
cdef uint16_t csum_fold(const uint8_t* b, uint32_t n) noexcept nogil

# A stage that works on a packet inside the parser's loop (decap): called with the
# stage's context, the batch buffer and the packet.
ctypedef int (*parse_hook_t)(void* ctx, uint8_t* buf, pkt_meta_t* p) noexcept nogil

# parse_batch with two hooks: `before` sees each pending untagged Ethernet/IPv4 frame
# (no options) carrying IP-in-IP or UDP to vxlan_port before it is parsed, and returns
# 0 (parse it), < 0 (it decided the packet itself) or a Tunnel kind: it moved the
# packet to its inner packet, which the loop parses and marks as decapsulated (`decap`;
# a malformed inner packet is dropped at ST_DECAP with the parse reason, inner ARP goes
# to the node). `after` sees each packet that parsed and is a recognised tunnel or UDP
# to one of udp_ports[0..4) (0: unused); its result is not used.
# Inline: the stage that uses it compiles the loop with its own hooks, which the C
# compiler then calls directly or inlines (the decap stage's fast path runs in the
# loop, no call through a pointer per tunnel packet).
cdef extern from *:
    """
    #if defined(__GNUC__) || defined(__clang__)
    #define KDP_HOOKED_PREFETCH(p) __builtin_prefetch((const void*)(p), 0, 3)
    #else
    #define KDP_HOOKED_PREFETCH(p) ((void)0)
    #endif
    """
    void KDP_HOOKED_PREFETCH(const void* p) noexcept nogil

cdef enum:
    HOOKED_PREFETCH_AHEAD = 4   # as parse_batch's


cdef inline void parse_batch_hooked(Batch b, uint16_t vxlan_port, parse_hook_t before,
                                    parse_hook_t after, void* ctx,
                                    const uint16_t* udp_ports) noexcept nogil:
    cdef Py_ssize_t i
    cdef pkt_meta_t* p
    cdef const uint8_t* pkt
    cdef uint16_t r
    cdef int h
    cdef Py_ssize_t n = b.count
    for i in range(n):
        if i + 2 * HOOKED_PREFETCH_AHEAD < n:
            KDP_HOOKED_PREFETCH(&b.m[i + 2 * HOOKED_PREFETCH_AHEAD])
        if i + HOOKED_PREFETCH_AHEAD < n:
            KDP_HOOKED_PREFETCH(b.buf + b.m[i + HOOKED_PREFETCH_AHEAD].off)
            KDP_HOOKED_PREFETCH(b.buf + b.m[i + HOOKED_PREFETCH_AHEAD].off + 64)
        p = &b.m[i]
        if p.verdict != V_PENDING:
            continue
        pkt = b.buf + p.off
        h = 0
        # untagged Ethernet, IPv4 without options, IP-in-IP or UDP to the VXLAN port
        if p.len >= 38 and pkt[12] == 0x08 and pkt[13] == 0x00 and pkt[14] == 0x45 \
                and (pkt[23] == 4 or (pkt[23] == 17 and ((<uint16_t>pkt[36] << 8) | pkt[37]) == vxlan_port)) \
                and p.linktype == LT_ETHERNET:
            h = before(ctx, b.buf, p)
            if h < 0:
                continue
        r = parse_frame(p, b.buf + p.off, vxlan_port)
        if h > 0:
            p.decap = <uint8_t>h        # the hook decapsulated it: this was the inner packet
            if r == R_ARP:
                set_verdict(p, V_LOCAL, ST_DECAP, R_ARP)
            elif r:
                drop(p, ST_DECAP, r)
            continue
        if r == 0:
            if p.tunnel != TUN_NONE or (p.proto == 17 and udp_ports[0] != 0 and
                                        (p.dport == udp_ports[0] or p.dport == udp_ports[1] or
                                         p.dport == udp_ports[2] or p.dport == udp_ports[3])):
                after(ctx, b.buf, p)
        elif r == R_ARP:
            set_verdict(p, V_LOCAL, ST_PARSE, R_ARP)
        else:
            drop(p, ST_PARSE, r)
