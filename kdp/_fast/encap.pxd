# The encap stage: what a transmitted packet needs on its way out of its route:
# IP-in-IP / VXLAN outer headers towards another node, and its Ethernet addresses.
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from kdp._fast.packet cimport Batch
from kdp._fast.route cimport RouteTable
from kdp._fast.neigh cimport Neighbours

# The stage over a batch. Returns the number of extra packets the fragment pass
# must make (IPv4 packets without DF larger than their route's MTU are left with
# reason R_FORWARDED_FRAGMENTED for it, not yet encapsulated). answered: the route
# stage sent kdp's answers (rejects, replies) out already (route_batch with egress_one).
cdef uint32_t encap_batch(RouteTable t, Neighbours n, Batch b, bint answered) noexcept nogil

# Encapsulate (when the route says so) and address one transmitted packet whose
# route_id is set. Sets the verdict only to drop it (R_NO_HEADROOM).
cdef void egress_one(RouteTable t, Neighbours n, Batch b, Py_ssize_t i) noexcept nogil
