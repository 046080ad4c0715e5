# The capture writer: formats the packets of a batch into a fixed output buffer under
# nogil and flushes it with write(2); or (classic pcap, from several threads) plans
# each batch's place in the file and puts it there with pwrite(2).

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from kdp._fast.packet cimport Batch, pkt_meta_t

cdef enum:
    WRITE_BUFFER = 1048576          # output buffer
    UNCONVERTIBLE = 0xFFFFFFFF      # CaptureWriter.record_size of a packet the link type cannot hold


cdef class CaptureWriter:
    cdef readonly object path
    cdef int fd
    cdef readonly int linktype
    cdef readonly str format
    cdef readonly bint all_packets
    cdef bint ng
    cdef readonly object ports
    cdef uint8_t* out
    cdef Py_ssize_t out_used
    cdef uint32_t* port_if                  # pcapng: out_port -> interface id (NO_ID: none yet)
    cdef uint32_t n_if
    cdef readonly uint64_t packets          # packets written
    cdef readonly uint64_t bytes_written
    cdef readonly uint64_t unconvertible    # packets skipped: no way to express them in linktype
    cdef int err_no
    cdef bint closed
    cdef bint placed                        # plan() was called: records go in with put_at
    # pcapng packet comments of the batch being written (write(batch, comments)): the
    # text of packet i is comment_text[comment_off[i]:comment_off[i + 1]]
    cdef const uint8_t* comment_text
    cdef const uint32_t* comment_off

    cdef int _flush(self) noexcept nogil
    cdef int _put(self, const void* data, Py_ssize_t n) noexcept nogil
    cdef Py_ssize_t _write_batch(self, Batch b, Py_ssize_t start, uint32_t* need_port) noexcept nogil
    # a sharded replay's chunks (classic pcap): each packet's record, formatted in place
    cdef uint32_t record_size(self, Batch b, const pkt_meta_t* p) noexcept nogil
    cdef uint32_t put_record(self, Batch b, const pkt_meta_t* p, uint8_t* out) noexcept nogil
    cdef int pwrite_all(self, const uint8_t* data, uint64_t n, uint64_t offset) noexcept nogil
