# TCP segmentation of GSO super-frames (what a NIC's TSO does) before a tunnel.
from libc.stdint cimport uint8_t, uint32_t
from kdp._fast.packet cimport Batch, pkt_meta_t
from kdp._fast.route cimport RouteTable
from kdp._fast.neigh cimport Neighbours

# How many segments the super-frame p (its IP header at ip) is cut into (>= 1).
cdef uint32_t gso_segments(const pkt_meta_t* p, const uint8_t* ip) noexcept nogil

# A super-frame of one segment (gso_segments 1): its TCP checksum completed, gso_size 0.
cdef void gso_complete(pkt_meta_t* p, uint8_t* ip) noexcept nogil

# Cut every packet of b the encap stage marked R_FORWARDED_SEGMENTED: the first segment
# stays in its place in b, the others are appended to `out` (which must have room for
# the count encap_batch returned); then every segment goes through encap.egress_one.
# Returns the segments appended.
cdef Py_ssize_t segment_batch(RouteTable t, Neighbours n, Batch b, Batch out) noexcept nogil
