# The verdict log: one JSON object per packet, formatted in C.
cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from kdp._fast.packet cimport Batch, pkt_meta_t
from kdp._fast.dns cimport dns_note_t

cdef enum:
    MAX_LABEL = 2 * 320 + 32    # the policy field: two labels of at most 320 bytes each
    MAX_LINE = 2560 + MAX_LABEL # longest line one packet can produce (a DNS name escaped, the
                                # policy labels), with room to spare
    SLACK = 64                  # bytes past a line the appenders may write (then overwrite)

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

# The seconds' digits of the last line's timestamp (packets of one second share them).
ctypedef struct line_state_t:
    uint64_t last_sec
    Py_ssize_t sec_len
    char sec_text[32]

cdef void snapshot_tuples(Batch b, orig_tuple_t* out) noexcept nogil
cdef void snapshot_tuple(const pkt_meta_t* p, orig_tuple_t* out) noexcept nogil


@cython.final
cdef class NameTable:
    cdef bytes blob
    cdef object offsets
    cdef const char* base
    cdef const int64_t* off
    cdef Py_ssize_t n
    cdef inline const char* get(self, Py_ssize_t i) noexcept nogil
    cdef inline Py_ssize_t put(self, char* out, Py_ssize_t i) noexcept nogil


cdef class VerdictLog:
    cdef object fileobj
    cdef object scratch
    cdef readonly object orig
    cdef public NameTable ports
    cdef public NameTable services
    cdef NameTable reasons
    cdef public NameTable policies
    cdef public uint64_t lines
    cdef object port_table
    cdef Py_ssize_t port_count
    cdef bytes node                     # JSON string of the node (multi-node replay), or None
    cdef const char* node_c             # ... its bytes (NULL: None)
    cdef object dns_notes               # the DNS stage's notes of the batch (None: no DNS stage)


# One packet's line (b.m[j]) at out (MAX_LINE + SLACK writable bytes): its input `index`,
# `frame` (its frame number in the output capture; -1: null), `orig` its tuple as
# received, `note` its DNS note (NULL: null), `hop` (multi-node). Returns its length.
# (A sharded replay's chunks format each worker's lines with it: kdp/_fast/chunk.pyx.)
cdef Py_ssize_t log_line(VerdictLog log, Batch b, Py_ssize_t j, const orig_tuple_t* orig,
                         const dns_note_t* note, uint64_t index, int64_t frame, uint8_t hop,
                         char* out, line_state_t* st) noexcept nogil
