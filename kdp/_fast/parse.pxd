# The packet parser: link layer, IPv4/IPv6 (+ extension headers), L4 ports,
# ICMP error quotes, tunnel recognition and the flow hash. See parse.pyx for
# the stage contract.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from kdp._fast.packet cimport Batch, pkt_meta_t
from kdp._fast.tunnel_in cimport tunnel_set_t

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

# parse_batch with the decap stage in the same loop: each pending untagged
# Ethernet/IPv4 frame (no options) carrying IP-in-IP or UDP to vxlan_port first goes
# through the fast path of tunnel_in.pxd (inline: no call); when that moved the packet
# to its inner packet, the loop parses the inner one and marks it decapsulated
# (`decap`; a malformed inner packet is dropped at ST_DECAP with the parse reason, inner
# ARP goes to the node). `after` (the stage, with t as its context) sees each packet
# that parsed and is a recognised tunnel or UDP to one of t.vxlan_ports (0: unused);
# its result is not used.
cdef void parse_decap_loop(Batch b, uint16_t vxlan_port, const tunnel_set_t* t,
                           parse_hook_t after) noexcept nogil
