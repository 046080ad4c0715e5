# Moving packets between batches: what the multi-node replay's simulated underlay
# does with a packet one node transmits towards another.
from libc.stdint cimport uint16_t, uint32_t
from kdp._fast.packet cimport Batch

# Append packets idx[0..n) of src to dst as fresh input (bytes, timestamp, link type,
# wire length; in_port `port`, every other field reset). Returns how many fit.
cdef Py_ssize_t transit_copy(Batch src, const uint32_t* idx, Py_ssize_t n, Batch dst,
                             uint16_t port) noexcept nogil
