# Calico's natOutgoing: masquerade pod traffic from a natOutgoing pool to
# destinations outside every pool.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from kdp._fast.packet cimport pkt_meta_t
from kdp._fast.flow cimport nat_spec_t

ctypedef struct pool4_t:
    uint32_t net            # host order
    uint32_t mask
    uint32_t nat            # 1: natOutgoing
    uint32_t _pad

ctypedef struct pool6_t:
    uint8_t net[16]
    uint8_t mask[16]
    uint32_t nat
    uint32_t _pad

cdef class NatOutgoing:
    cdef object _p4, _p6, _a4, _a6
    cdef const pool4_t* p4
    cdef const pool6_t* p6
    cdef Py_ssize_t n4, n6
    cdef const uint32_t* node4          # the node's own addresses: traffic to them is not NATed
    cdef const uint8_t* node6
    cdef Py_ssize_t n_node4, n_node6
    cdef uint32_t snat4
    cdef uint8_t snat6[16]
    cdef bint has4, has6
    cdef uint16_t port_lo, port_hi
    cdef public uint64_t masqueraded    # flows natOutgoing masqueraded

# For a new flow of packet p (post-DNAT destination in spec when has_spec and it
# has NAT_DNAT): when Calico's rule applies, add the masquerade to spec (filling it
# when has_spec is false) and return True.
cdef bint natout_apply(NatOutgoing t, const pkt_meta_t* p, nat_spec_t* spec, bint has_spec) noexcept nogil
