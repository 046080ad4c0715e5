# What conntrack looks a packet up by: the lookup key of a packet (its tuple;
# for an ICMP error, the inverse of the tuple it quotes; for ICMP echo, the
# identifier and echo type; for a later fragment, its addresses), the ICMP
# classification behind it, and the fragment table through which later
# fragments find the flow of their first fragment (by addresses, protocol and
# IP ID; an entry lasts frag_timeout).

from libc.stdint cimport uint8_t, uint32_t, uint64_t

from kdp._fast.packet cimport pkt_meta_t
from kdp._fast.checksum cimport ld16
from kdp._fast.ct_table cimport ct_table_t, ct_flow_t, ct_key_t

# What ct_pkt_key found in a packet.
cdef enum KeyKind:
    K_NONE = 0          # not trackable
    K_FLOW = 1          # a tuple of its own
    K_ERROR = 2         # ICMP error: the key is the inverse of the quoted tuple
    K_FRAG = 3          # later fragment: addresses only (ports 0)
    K_SKIP = 4          # (the stage's own mark: not looked up)



# ---- in ct_keys.pyx

# The lookup key of packet p (pkt = its frame); returns a KeyKind.
cdef int ct_pkt_key(const pkt_meta_t* p, const uint8_t* pkt, ct_key_t* k) noexcept nogil
# Offset from the frame start of the L4 header quoted in an ICMP error (0: none).
cdef uint32_t ct_quote_l4(const pkt_meta_t* p, const uint8_t* pkt) noexcept nogil
# A first fragment (key k) of flow fid in direction dir: later fragments will find the flow.
cdef void ct_frag_note(ct_table_t* t, const pkt_meta_t* p, const ct_key_t* k, uint32_t fid,
                       int dir, uint64_t now) noexcept nogil
# The flow (and direction) of a later fragment, NO_ID when its first was not seen.
cdef uint32_t ct_frag_find(ct_table_t* t, const pkt_meta_t* p, const ct_key_t* k, uint64_t now,
                           int* dir) noexcept nogil


# ---- inline

cdef inline bint ct_is_echo(uint8_t ver, uint8_t typ) noexcept nogil:
    if ver == 4:
        return typ == 8 or typ == 0
    return typ == 128 or typ == 129


cdef inline bint ct_is_echo_request(uint8_t ver, uint8_t typ) noexcept nogil:
    return typ == 8 if ver == 4 else typ == 128


cdef inline uint8_t ct_echo_other(uint8_t ver, uint8_t typ) noexcept nogil:
    """Echo request type <-> echo reply type."""
    if ver == 4:
        return 0 if typ == 8 else 8
    return 129 if typ == 128 else 128


cdef inline bint ct_is_icmp_error(uint8_t ver, uint8_t typ) noexcept nogil:
    if ver == 4:
        return typ == 3 or typ == 4 or typ == 5 or typ == 11 or typ == 12
    return 1 <= typ <= 4


cdef inline uint32_t ct_ip_bytes(const pkt_meta_t* p, const uint8_t* pkt) noexcept nogil:
    cdef uint32_t l3 = p.l3_off
    if l3 + 6 <= p.len:
        if p.ip_ver == 4:
            return ld16(pkt + l3 + 2)
        return 40 + <uint32_t>ld16(pkt + l3 + 4)
    return p.wire_len - l3 if p.wire_len > l3 else 0
