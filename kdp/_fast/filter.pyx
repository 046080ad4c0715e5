# cython: boundscheck=False, wraparound=False
"""Runs a compiled packet filter over a batch (kdp replay / kdp trace --filter).

Stage contract (before the pipeline: on the frames as the reader delivered them, the
packet as it came in, as `tcpdump -r FILE EXPR` sees it):

  reads   pkt_meta_t: off, len, wire_len, linktype, verdict; the frame's bytes
  sets    match[i] (1: the expression matched packet i); with drop_unmatched, the
          packets it did not match that are still pending get V_DROP, ST_RX, R_FILTERED;
          with mark_trace, the packets it matched get trace = 1
  next    the pipeline (Pipeline.run)

The programs are classic BPF, compiled by libpcap from tcpdump's expression language
(kdp/filter.py does that, once per link type met); each packet runs libpcap's own
`bpf_filter` through a function pointer, so kdp and tcpdump agree by construction.
The BPF interpreter only reads the packet (bounded by its captured length), so it runs
without the GIL.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uintptr_t

from kdp._fast.packet cimport Batch, pkt_meta_t, drop, V_PENDING, ST_RX, R_FILTERED

cnp.import_array()

#: numpy dtype of one struct bpf_insn (what PacketFilter hands a program as)
BPF_INSN_DTYPE = np.dtype([("code", "<u2"), ("jt", "u1"), ("jf", "u1"), ("k", "<u4")])


cdef class BpfFilter:
    """Programs by link type, and the bpf_filter function that runs them.

    `bpf_filter_address`: the address of libpcap's bpf_filter (kdp/filter.py finds it).
    `compile(linktype)`: called (with the GIL) the first time a link type is met; returns
    a BPF_INSN_DTYPE array, or None when packets of that link type never match."""

    def __init__(self, uintptr_t bpf_filter_address, compile):
        if bpf_filter_address == 0:
            raise ValueError("no bpf_filter function")
        self.run_fn = <bpf_filter_fn>bpf_filter_address
        self.compile = compile
        self.n_programs = 0
        self.keep = []
        self.match = np.zeros(0, dtype=np.uint8)
        self.matched = 0
        self.seen = 0

    cdef int _find(self, uint16_t linktype) noexcept nogil:
        cdef int k
        for k in range(self.n_programs):
            if self.linktypes[k] == linktype:
                return k
        return -1

    def _add(self, uint16_t linktype):
        prog = self.compile(linktype)
        if self.n_programs >= FILTER_MAX_LINKTYPES:
            raise ValueError(f"a filter runs on at most {FILTER_MAX_LINKTYPES} link types")
        self.linktypes[self.n_programs] = linktype
        if prog is None or len(prog) == 0:
            self.progs[self.n_programs] = NULL
        else:
            prog = np.ascontiguousarray(prog, dtype=BPF_INSN_DTYPE)
            self.keep.append(prog)
            self.progs[self.n_programs] = <const bpf_insn_t*>cnp.PyArray_DATA(prog)
        self.n_programs += 1

    def apply(self, Batch b not None, bint drop_unmatched=False, bint mark_trace=False):
        """Test every packet of b; returns how many matched (`match` says which)."""
        cdef Py_ssize_t i, n = 0
        cdef int k, missing
        cdef pkt_meta_t* p
        cdef uint8_t* m
        if self.match.shape[0] < b.count:
            self.match = np.zeros(b.capacity, dtype=np.uint8)
        m = <uint8_t*>cnp.PyArray_DATA(self.match)
        while True:
            missing = -1
            with nogil:
                for i in range(b.count):
                    if self._find(b.m[i].linktype) < 0:
                        missing = b.m[i].linktype
                        break
            if missing < 0:
                break
            self._add(<uint16_t>missing)
        with nogil:
            for i in range(b.count):
                p = &b.m[i]
                k = self._find(p.linktype)
                if self.progs[k] != NULL and \
                        self.run_fn(self.progs[k], b.buf + p.off, p.wire_len, p.len) != 0:
                    m[i] = 1
                    n += 1
                    if mark_trace:
                        p.trace = 1
                else:
                    m[i] = 0
                    if drop_unmatched and p.verdict == V_PENDING:
                        drop(p, ST_RX, R_FILTERED)
        self.matched += n
        self.seen += b.count
        return n
