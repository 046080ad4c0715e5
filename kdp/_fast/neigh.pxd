# The neighbour table: IP -> MAC learned from ARP and IPv6 neighbour discovery.
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from kdp._fast.packet cimport Batch

ctypedef struct neigh4_t:
    uint32_t ip             # host order; 0: empty slot
    uint8_t mac[6]
    uint8_t _pad[2]

ctypedef struct neigh6_t:
    uint8_t ip[16]          # network order; all zero: empty slot
    uint8_t mac[6]
    uint8_t used
    uint8_t _pad

cdef class Neighbours:
    cdef object _t4, _t6
    cdef neigh4_t* t4
    cdef neigh6_t* t6
    cdef readonly Py_ssize_t capacity
    cdef Py_ssize_t mask
    cdef readonly Py_ssize_t count4, count6
    cdef readonly uint64_t learned         # entries created or changed
    cdef readonly uint64_t refused         # not stored: the table was full

    cdef bint lookup4(self, uint32_t ip, uint8_t* mac) noexcept nogil
    cdef bint lookup6(self, const uint8_t* ip, uint8_t* mac) noexcept nogil
    cdef void learn4(self, uint32_t ip, const uint8_t* mac) noexcept nogil
    cdef void learn6(self, const uint8_t* ip, const uint8_t* mac) noexcept nogil

# Learn from the batch's ARP packets (parse marked them R_ARP) and ICMPv6 neighbour
# solicitations / advertisements. Reads only; sets nothing in the metadata.
cdef void neigh_learn_batch(Neighbours n, Batch b) noexcept nogil
