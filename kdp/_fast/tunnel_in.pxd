# The decap stage's view of the node's tunnels (tunnel_set_t) and its fast path for the
# common tunnel frame, inline: the parser's loop (parse.pyx: parse_decap_loop) runs it on
# every candidate frame while the frame is in cache, without a call; decap.pyx's stage
# uses the same checks. See decap.pyx for the contract.

from libc.string cimport memcpy
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from kdp._fast.packet cimport pkt_meta_t, TUN_IPIP, TUN_VXLAN, LT_ETHERNET
from kdp._fast.checksum cimport kdp_csum16


# What the stage checks tunnels against, as C views (the arrays belong to a
# TunnelEndpoints): the node's addresses (sorted, bisected), the peers (IPv4 in an
# open-addressing set, IPv6 sorted), the extra VXLAN ports and the VNIs accepted.
ctypedef struct tunnel_set_t:
    const uint32_t* l4
    const uint8_t* l6
    const uint32_t* ps4             # IPv4 peers, open addressing (0: empty slot)
    const uint8_t* p6
    Py_ssize_t n_l4, n_l6, n_p6
    uint32_t ps4_mask
    bint check_peers                # False: tunnels from any source are accepted
    uint16_t port                   # the parser's VXLAN port (set for each batch)
    uint16_t vxlan_ports[4]         # VXLAN ports besides the parser's (0: unused)
    uint32_t vnis[8]                # accepted VNIs (n_vnis 0: any)
    Py_ssize_t n_vnis


cdef inline bint tunnel_has4(const uint32_t* a, Py_ssize_t n, uint32_t x) noexcept nogil:
    # branch-free bisection: a mispredicted branch per step cost more than the search
    cdef const uint32_t* base = a
    cdef Py_ssize_t half
    if n == 0:
        return False
    while n > 1:
        half = n >> 1
        base = base + half if base[half] <= x else base
        n -= half
    return base[0] == x


cdef inline bint tunnel_in_set4(const uint32_t* t, uint32_t mask, uint32_t x) noexcept nogil:
    """x in an open-addressing set of IPv4 addresses (0 marks an empty slot): one
    multiplicative hash and, at most half full, about one probe."""
    cdef uint32_t k = (x * 2654435761U) & mask
    if x == 0:
        return False
    while t[k] != 0:
        if t[k] == x:
            return True
        k = (k + 1) & mask
    return False


cdef inline bint tunnel_vni_ok(const tunnel_set_t* t, const uint8_t* vx) noexcept nogil:
    cdef uint32_t vni = (<uint32_t>vx[4] << 16) | (<uint32_t>vx[5] << 8) | vx[6]
    cdef Py_ssize_t k
    if t.n_vnis == 0:
        return True
    for k in range(t.n_vnis):
        if t.vnis[k] == vni:
            return True
    return False


cdef inline uint16_t _tin_rd16(const uint8_t* a) noexcept nogil:
    return <uint16_t>((<uint16_t>a[0] << 8) | a[1])


cdef inline uint32_t _tin_rd32(const uint8_t* a) noexcept nogil:
    return (<uint32_t>a[0] << 24) | (<uint32_t>a[1] << 16) | (<uint32_t>a[2] << 8) | a[3]


cdef inline uint32_t _tin_fast_tunnel(const tunnel_set_t* t, const pkt_meta_t* p, const uint8_t* pkt,
                                  uint16_t vxlan_port, uint8_t* kind) noexcept nogil:
    """The common tunnel frame, recognised without parsing its outer headers as a packet
    of their own: untagged Ethernet, IPv4 without options, unfragmented, with a valid
    header checksum, from a known peer to one of the node's addresses, IP-in-IP or VXLAN
    on the parser's port (I flag, an accepted VNI), the inner headers captured. Returns
    where the inner packet starts (its IP header for IP-in-IP, its Ethernet header for
    VXLAN), or 0: then parse and the stage decide, with the same outcome for every
    frame this accepts (it only skips work).
    The caller checked the frame's first words (parse.pyx: parse_decap_loop): untagged
    Ethernet, IPv4 without options, protocol 4 or UDP to vxlan_port."""
    cdef const uint8_t* ip = pkt + 14
    cdef uint32_t n = p.len, wire
    cdef uint32_t tot, ulen, lim
    if n < 14 + 20 + 20:
        return 0
    wire = p.wire_len if p.wire_len > p.len else p.len
    tot = _tin_rd16(ip + 2)
    if tot < 40 or 14 + tot > wire or (_tin_rd16(ip + 6) & 0x3FFF) != 0:
        return 0
    lim = 14 + tot if 14 + tot < n else n
    if not tunnel_has4(t.l4, t.n_l4, _tin_rd32(ip + 16)):
        return 0
    if ip[9] == 4:
        kind[0] = TUN_IPIP
        if 34 + 20 > lim:
            return 0
        tot = 34
    elif vxlan_port != 0:                   # UDP to the VXLAN port (checked above)
        kind[0] = TUN_VXLAN
        ulen = _tin_rd16(ip + 24)
        if ulen < 8 + 8 + 14 or 34 + ulen > 14 + tot or 34 + 8 + 8 + 14 > lim \
                or not (ip[28] & 0x08) or not tunnel_vni_ok(t, ip + 28):
            return 0
        tot = 34 + 16
    else:
        return 0
    if t.check_peers and not tunnel_in_set4(t.ps4, t.ps4_mask, _tin_rd32(ip + 12)):
        return 0
    if kdp_csum16(ip, 20) != 0xFFFF:
        return 0
    return tot


cdef inline int tunnel_fast_in(const tunnel_set_t* t, uint8_t* buf, pkt_meta_t* p) noexcept nogil:
    """The common tunnel frame (_tin_fast_tunnel) moved to its inner packet, which the
    parser's loop then parses: returns its Tunnel kind; 0 for any other frame (parsed
    as usual). For the frames parse_decap_loop hands it (see _tin_fast_tunnel)."""
    cdef uint8_t* pkt = buf + p.off
    cdef uint8_t kind = 0
    cdef uint32_t inner = _tin_fast_tunnel(t, p, pkt, t.port, &kind)
    if not inner:
        return 0
    if kind == TUN_IPIP:
        inner -= 14
        memcpy(pkt + inner, pkt, 12)    # (inner >= 20: no overlap)
        # the ethertype as one 2-byte store: the parser reads it next as one 2-byte
        # load, which two 1-byte stores could not forward to (a store-forwarding stall)
        memcpy(pkt + inner + 12, b"\x08\x00", 2)
    p.off += inner
    p.len -= inner
    p.wire_len = p.wire_len - inner if p.wire_len >= inner else 0
    return kind
