# Packet filters: tcpdump expressions compiled by libpcap into classic BPF (kdp/filter.py),
# run over a batch by libpcap's own bpf_filter, without the GIL.
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from kdp._fast.packet cimport Batch

# struct bpf_insn of <pcap/bpf.h>
ctypedef struct bpf_insn_t:
    uint16_t code
    uint8_t jt
    uint8_t jf
    uint32_t k

# u_int bpf_filter(const struct bpf_insn *pc, const u_char *p, u_int wirelen, u_int buflen)
ctypedef unsigned int (*bpf_filter_fn)(const bpf_insn_t* pc, const uint8_t* p,
                                       unsigned int wirelen, unsigned int buflen) noexcept nogil

cdef enum:
    FILTER_MAX_LINKTYPES = 16   # link types one filter holds programs for

cdef class BpfFilter:
    cdef bpf_filter_fn run_fn
    cdef uint16_t linktypes[FILTER_MAX_LINKTYPES]
    cdef const bpf_insn_t* progs[FILTER_MAX_LINKTYPES]   # NULL: this link type never matches
    cdef int n_programs
    cdef object compile                 # linktype -> program (kdp/filter.py), with the GIL
    cdef list keep                      # the instruction arrays progs[] point into
    cdef readonly object match          # uint8 per packet of the last batch: 1 matched
    cdef readonly unsigned long long matched    # packets matched, all batches
    cdef readonly unsigned long long seen       # packets tested, all batches

    cdef int _find(self, uint16_t linktype) noexcept nogil
