# The pipeline: runs a batch through the stages, and counts every packet once.
from libc.stdint cimport uint16_t, uint64_t
from kdp._fast.packet cimport Batch
from kdp._fast.route cimport RouteTable

cdef class Pipeline:
    cdef readonly object counters       # uint64 [N_STAGES, N_REASONS]
    cdef readonly object verdicts       # uint64 [5], by Verdict
    cdef uint64_t* ctr
    cdef uint64_t* vctr
    cdef public uint16_t vxlan_port
    cdef readonly RouteTable routes
    cdef readonly uint64_t packets

    cdef void account(self, Batch b) noexcept nogil
