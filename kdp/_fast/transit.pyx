# cython: boundscheck=False, wraparound=False
"""Moving packets between batches for the multi-node replay (kdp.multinode).

A packet node A transmits towards node B enters B as B's input: its bytes as
transmitted (outer headers and all), its timestamp, link type and wire length; the
metadata are reset as a capture reader leaves them, with the ingress port given.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint16_t, uint32_t

from kdp._fast.packet cimport Batch, pkt_meta_t

cnp.import_array()


cdef Py_ssize_t transit_copy(Batch src, const uint32_t* idx, Py_ssize_t n, Batch dst,
                             uint16_t port) noexcept nogil:
    cdef Py_ssize_t k, done = 0
    cdef pkt_meta_t* p
    for k in range(n):
        if idx[k] >= <uint32_t>src.count:
            continue
        p = &src.m[idx[k]]
        if dst.push(src.buf + p.off, p.len, p.wire_len, p.ts_ns, p.linktype, port) < 0:
            break
        done += 1
    return done


def copy(Batch src not None, indices, Batch dst not None, uint16_t in_port):
    """Append packets `indices` of src to dst (see transit_copy); returns how many fit."""
    cdef cnp.ndarray arr = np.ascontiguousarray(indices, dtype=np.uint32)
    cdef Py_ssize_t n = arr.shape[0], done
    with nogil:
        done = transit_copy(src, <const uint32_t*>cnp.PyArray_DATA(arr), n, dst, in_port)
    return done
