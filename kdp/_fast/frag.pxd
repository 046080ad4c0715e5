# IPv4 fragmentation of forwarded packets larger than their route's MTU (no DF).
from kdp._fast.packet cimport Batch
from kdp._fast.route cimport RouteTable
from kdp._fast.neigh cimport Neighbours

# Split every packet of b the encap stage marked R_FORWARDED_FRAGMENTED: the first
# fragment stays in its place in b, the others are appended to `out` (which must
# have room for the count encap_batch returned); then every piece goes through
# encap.egress_one (tunnel, Ethernet addresses). Returns the fragments appended.
cdef Py_ssize_t fragment_batch(RouteTable t, Neighbours n, Batch b, Batch out) noexcept nogil
