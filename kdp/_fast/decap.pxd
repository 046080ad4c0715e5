# The decap stage: strip IP-in-IP / VXLAN headers of tunnel packets addressed
# to this node and re-parse the inner packet. See decap.pyx for the contract.

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from kdp._fast.packet cimport Batch
from kdp._fast.tunnel_in cimport tunnel_set_t


# The node's own tunnel endpoint addresses, and optionally the peers (other
# nodes) tunnels may come from.
cdef class TunnelEndpoints:
    cdef readonly object local4     # numpy uint32, host order, sorted, unique
    cdef readonly object local6     # numpy uint8 (n, 16), network order, sorted, unique
    cdef readonly object peers4
    cdef readonly object peers6
    cdef readonly bint check_peers  # False: tunnels from any source are accepted
    cdef object peers4_set          # numpy uint32: the IPv4 peers, open addressing (0: empty)
    cdef tunnel_set_t s


cdef void decap_batch(Batch b, TunnelEndpoints t, uint16_t vxlan_port) noexcept nogil

# The parse stage and this one in one pass (see decap.pyx): what the pipeline runs
# when the node decapsulates.
cdef void parse_decap_batch(Batch b, uint16_t vxlan_port, TunnelEndpoints t) noexcept nogil
