# The verdict log: one JSON object per packet, formatted in C.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from kdp._fast.packet cimport Batch, pkt_meta_t

# The tuple a packet had when it came in (after parse/decap), kept so the log
# can show what NAT changed.
ctypedef struct orig_tuple_t:
    uint32_t src4
    uint32_t dst4
    uint8_t src6[16]
    uint8_t dst6[16]
    uint16_t sport
    uint16_t dport
    uint8_t ip_ver
    uint8_t proto
    uint16_t _pad

cdef void snapshot_tuples(Batch b, orig_tuple_t* out) noexcept nogil
