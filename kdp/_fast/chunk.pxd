# A sharded replay in chunks (kdp replay --workers N, classic pcap from a file): each
# worker reads, keys, processes and writes its own packets (chunk.pyx; driven by
# kdp/shards.py ChunkedRun).
from libc.stdint cimport uint8_t, uint32_t, uint64_t, int64_t
from kdp._fast.packet cimport Batch
from kdp._fast.pipeline cimport Pipeline
from kdp._fast.shard cimport ShardPlan
from kdp._fast.dns cimport dns_note_t, dns_q_t
from kdp.io.pcap cimport CaptureReader
from kdp.io.pcapwrite cimport CaptureWriter
from kdp._fast.verdictlog cimport VerdictLog, orig_tuple_t

cdef extern from "pthread.h" nogil:
    ctypedef struct pthread_barrier_t:
        pass

cdef extern from "semaphore.h" nogil:
    ctypedef struct sem_t:
        pass

cdef class ChunkWorker:
    cdef Pipeline pipeline
    cdef int me
    cdef Batch big          # this worker's packets of the chunk
    cdef Batch window       # one input batch's share of `big` (its pointers moved along big)
    cdef Batch scratch      # keying with tunnels: a batch copied and parsed
    cdef object arrays      # (keeps the arrays below)
    cdef uint32_t* idx
    cdef uint8_t* vs
    cdef uint8_t* mine
    cdef dns_note_t* notes
    cdef uint64_t* at
    cdef uint64_t* dns_ctr
    cdef dns_q_t* dq
    cdef orig_tuple_t* orig                 # (a verdict log) each packet's tuple as received
    cdef int64_t* frame                     # ... its frame number in the output (-1: none)
    cdef uint32_t key_unsafe
    cdef double cpu[5]                      # CPU seconds: key, process, format, index, log lines (phase_cpu)
    cdef uint64_t wseq                      # chunks this worker has written (their staging buffer)
    cdef uint64_t first_index               # the input index of the current chunk's first packet
    cdef uint64_t frames                    # the output's packets before the current chunk


cdef class ChunkRun:
    cdef CaptureReader reader
    cdef CaptureWriter writer
    cdef ShardPlan plan
    cdef readonly int workers
    cdef readonly Py_ssize_t chunk_size
    cdef readonly Py_ssize_t batch
    cdef list wk
    cdef object arrays
    cdef uint64_t* offs                     # the current chunk's records (offs_pair[0] or [1])
    cdef uint64_t* offs_pair[2]
    cdef object offs_arr
    cdef bint index_ahead                   # worker 0 indexes the next chunk during this one
    cdef bint ahead                         # ... and did: ahead_n records, ahead_status
    cdef Py_ssize_t ahead_n
    cdef int ahead_status
    cdef int ahead_slot
    cdef uint8_t* who
    cdef uint8_t* vshard
    cdef uint32_t* olen
    cdef int* errs
    cdef object errs_arr
    cdef Py_ssize_t n                   # packets of the current chunk (0: the end)
    cdef const uint8_t* base            # the mapped bytes their offsets are relative to
    cdef uint64_t newest                # the newest timestamp of the chunks before
    cdef uint64_t out_pos               # where the chunk's records go in the output file
    cdef uint64_t out_bytes             # the chunk's records: bytes, packets, unconvertible
    cdef uint64_t out_packets
    cdef uint64_t out_bad
    # the chunks' records, formatted in place (two buffers: the writer thread writes one
    # while the workers fill the other)
    cdef uint8_t* stage[2]
    cdef uint64_t stage_cap[2]
    cdef uint64_t stage_len[2]
    cdef uint64_t stage_pos[2]              # ... their place in the file
    cdef sem_t stage_full[2]                # a post per worker: its records are in
    cdef sem_t stage_free[2]                # a post per worker: the writer is done with it
    cdef bint writes_end
    cdef uint64_t writes_end_seq
    cdef int werr                           # the writer thread's errno
    cdef double index_cpu                   # CPU seconds (phase_cpu)
    cdef double write_cpu
    # the verdict log (None: none): each worker formats its packets' lines into its own
    # buffer (lbuf[sb * workers + w]), each line's length and worker go in llen / lw at its
    # input place, the writer thread writes them in input order with pwritev(2)
    cdef VerdictLog log
    cdef int log_fd
    cdef bint keep_some                     # --log-only: lines only for the verdicts in keepv
    cdef uint8_t keepv[256]
    cdef char** lbuf
    cdef uint64_t* lcap
    cdef uint64_t* lpos                     # (the writer thread's place in each worker's lines)
    cdef uint32_t* llen_pair[2]
    cdef uint8_t* lw_pair[2]
    cdef Py_ssize_t stage_n[2]              # the packets of the chunk in each staging buffer
    cdef uint64_t log_pos                   # where the next lines go in the log
    cdef int lerr                           # the log's errno (a write; ENOMEM: its buffers)
    cdef double log_write_cpu
    cdef pthread_barrier_t bar
    cdef bint bar_ready
    cdef bint light                         # keyed by _light_key where it can (Ethernet)
    cdef bint halt                      # a worker stopped processing the chunk (U_EXTRA)

    cdef Py_ssize_t _chunk(self, ChunkWorker w, Pipeline pl, Batch big, Batch win,
                           Batch scratch) except -1 nogil
    cdef void _key(self, ChunkWorker w, Pipeline pl, Batch s, const uint64_t* offs, const uint8_t* base,
                   Py_ssize_t n) noexcept nogil
    cdef int _process(self, ChunkWorker w, Pipeline pl, Batch big, Batch win, Py_ssize_t n) except -1 nogil
    cdef void _write(self, ChunkWorker w, Batch big, Py_ssize_t n) noexcept nogil
    cdef void _lines(self, ChunkWorker w, Batch big, Py_ssize_t n, int sb) noexcept nogil
    cdef int _write_lines(self, int sb) noexcept nogil
