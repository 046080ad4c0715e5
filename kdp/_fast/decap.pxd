# The decap stage: strip IP-in-IP / VXLAN headers of tunnel packets addressed
# to this node and re-parse the inner packet. See decap.pyx for the contract.

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from kdp._fast.packet cimport Batch


# The node's own tunnel endpoint addresses, and optionally the peers (other
# nodes) tunnels may come from. Sorted arrays, searched by bisection.
cdef class TunnelEndpoints:
    cdef readonly object local4     # numpy uint32, host order, sorted, unique
    cdef readonly object local6     # numpy uint8 (n, 16), network order, sorted, unique
    cdef readonly object peers4
    cdef readonly object peers6
    cdef readonly bint check_peers  # False: tunnels from any source are accepted
    cdef const uint32_t* l4
    cdef const uint8_t* l6
    cdef const uint32_t* p4
    cdef const uint8_t* p6
    cdef Py_ssize_t n_l4, n_l6, n_p4, n_p6
    cdef object peers4_set          # numpy uint32: the IPv4 peers, open addressing (0: empty)
    cdef const uint32_t* ps4
    cdef uint32_t ps4_mask
    cdef uint16_t vxlan_ports[4]    # VXLAN ports besides the parser's (0: unused)
    cdef uint32_t vnis[8]           # accepted VNIs (n_vnis 0: any)
    cdef Py_ssize_t n_vnis


cdef void decap_batch(Batch b, TunnelEndpoints t, uint16_t vxlan_port) noexcept nogil

# The parse stage and this one in one pass (see decap.pyx): what the pipeline runs
# when the node decapsulates.
cdef void parse_decap_batch(Batch b, uint16_t vxlan_port, TunnelEndpoints t) noexcept nogil
