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

# What one packet of a batch teaches, noted after parse, learned when the route stage
# reaches that packet (so a packet never uses what a later one taught).
ctypedef struct neigh_note_t:
    uint32_t index          # the packet's index in the batch
    uint8_t ver             # 4 or 6
    uint8_t mac[6]
    uint8_t _pad
    uint8_t ip[16]          # IPv4: the first 4 bytes, host order as a uint32_t

cdef class Neighbours:
    cdef object _t4, _t6
    cdef neigh4_t* t4
    cdef neigh6_t* t6
    cdef readonly Py_ssize_t capacity
    cdef Py_ssize_t mask
    cdef readonly Py_ssize_t count4, count6
    cdef readonly uint64_t learned         # entries created or changed
    cdef readonly uint64_t refused         # not stored: the table was full
    cdef object _notes
    cdef neigh_note_t* notes                # the current batch's, in packet order
    cdef Py_ssize_t n_notes, next_note

    cdef bint lookup4(self, uint32_t ip, uint8_t* mac) noexcept nogil
    cdef bint lookup6(self, const uint8_t* ip, uint8_t* mac) noexcept nogil
    cdef void learn4(self, uint32_t ip, const uint8_t* mac) noexcept nogil
    cdef void learn6(self, const uint8_t* ip, const uint8_t* mac) noexcept nogil

# Note what the batch's ARP packets (parse marked them R_ARP) and ICMPv6 neighbour
# solicitations / advertisements teach (after parse; Neighbours.ensure_notes(capacity)
# first). Reads only; sets nothing in the metadata.
cdef void neigh_note_batch(Neighbours n, Batch b) noexcept nogil
# Learn the notes of packets 0..i (inclusive; i >= count: all of them).
cdef void neigh_learn_upto(Neighbours n, Py_ssize_t i) noexcept nogil
# Both: learn from the whole batch at once.
cdef void neigh_learn_batch(Neighbours n, Batch b) noexcept nogil
