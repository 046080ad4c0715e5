# cython: boundscheck=False, wraparound=False
"""The packet batch: one byte buffer plus one metadata record per packet.

See packet.pxd for the layout. `Batch.meta` is a numpy structured array whose
dtype is built from the C struct's own offsets, so Python and the core read
the same bytes.
"""
import numpy as np
cimport numpy as cnp
from libc.string cimport memcpy, memset

cnp.import_array()

cdef pkt_meta_t _probe


def struct_dtype(fields, itemsize):
    """The numpy dtype of a C struct from its (name, numpy type, offset) fields."""
    return np.dtype({"names": [f[0] for f in fields], "formats": [f[1] for f in fields],
                     "offsets": [f[2] for f in fields], "itemsize": itemsize})


def _meta_fields():
    """(name, numpy type, offset) for every field of pkt_meta_t."""
    p = &_probe
    return [
        ("ts_ns", "<u8", field_offset(&p.ts_ns, p)),
        ("off", "<u4", field_offset(&p.off, p)),
        ("len", "<u4", field_offset(&p.len, p)),
        ("wire_len", "<u4", field_offset(&p.wire_len, p)),
        ("linktype", "<u2", field_offset(&p.linktype, p)),
        ("in_port", "<u2", field_offset(&p.in_port, p)),
        ("l3_off", "<u2", field_offset(&p.l3_off, p)),
        ("l4_off", "<u2", field_offset(&p.l4_off, p)),
        ("inner_off", "<u2", field_offset(&p.inner_off, p)),
        ("quote_off", "<u2", field_offset(&p.quote_off, p)),
        ("ethertype", "<u2", field_offset(&p.ethertype, p)),
        ("vlan", "<u2", field_offset(&p.vlan, p)),
        ("ip_ver", "u1", field_offset(&p.ip_ver, p)),
        ("proto", "u1", field_offset(&p.proto, p)),
        ("ttl", "u1", field_offset(&p.ttl, p)),
        ("tcp_flags", "u1", field_offset(&p.tcp_flags, p)),
        ("icmp_type", "u1", field_offset(&p.icmp_type, p)),
        ("icmp_code", "u1", field_offset(&p.icmp_code, p)),
        ("icmp_id", "<u2", field_offset(&p.icmp_id, p)),
        ("frag", "u1", field_offset(&p.frag, p)),
        ("tunnel", "u1", field_offset(&p.tunnel, p)),
        ("sport", "<u2", field_offset(&p.sport, p)),
        ("dport", "<u2", field_offset(&p.dport, p)),
        ("encap", "u1", field_offset(&p.encap, p)),
        ("frag_id", "<u4", field_offset(&p.frag_id, p)),
        ("src4", "<u4", field_offset(&p.src4, p)),
        ("dst4", "<u4", field_offset(&p.dst4, p)),
        ("src6", "16u1", field_offset(&p.src6[0], p)),
        ("dst6", "16u1", field_offset(&p.dst6[0], p)),
        ("q_proto", "u1", field_offset(&p.q_proto, p)),
        ("decap", "u1", field_offset(&p.decap, p)),
        ("q_sport", "<u2", field_offset(&p.q_sport, p)),
        ("q_dport", "<u2", field_offset(&p.q_dport, p)),
        ("q_src4", "<u4", field_offset(&p.q_src4, p)),
        ("q_dst4", "<u4", field_offset(&p.q_dst4, p)),
        ("q_src6", "16u1", field_offset(&p.q_src6[0], p)),
        ("q_dst6", "16u1", field_offset(&p.q_dst6[0], p)),
        ("verdict", "u1", field_offset(&p.verdict, p)),
        ("stage", "u1", field_offset(&p.stage, p)),
        ("reason", "<u2", field_offset(&p.reason, p)),
        ("out_port", "<u2", field_offset(&p.out_port, p)),
        ("ct_state", "u1", field_offset(&p.ct_state, p)),
        ("trace", "u1", field_offset(&p.trace, p)),
        ("flow_id", "<u4", field_offset(&p.flow_id, p)),
        ("svc_port", "<u4", field_offset(&p.svc_port, p)),
        ("route_id", "<u4", field_offset(&p.route_id, p)),
        ("pol_egress", "<u2", field_offset(&p.pol_egress, p)),
        ("pol_ingress", "<u2", field_offset(&p.pol_ingress, p)),
        ("hash", "<u8", field_offset(&p.hash, p)),
        ("gso_size", "<u2", field_offset(&p.gso_size, p)),
    ]


META_SIZE = sizeof(pkt_meta_t)
META_DTYPE = struct_dtype(_meta_fields(), sizeof(pkt_meta_t))
HEADROOM_BYTES = HEADROOM
MAX_FRAME_BYTES = MAX_FRAME
NO_PORT_ID = NO_PORT
NO_ID_VALUE = <uint32_t>NO_ID


cdef void meta_reset(pkt_meta_t* p) noexcept nogil:
    memset(p, 0, sizeof(pkt_meta_t))
    p.vlan = NO_PORT
    p.out_port = NO_PORT
    p.in_port = NO_PORT
    p.flow_id = NO_ID
    p.svc_port = NO_ID
    p.route_id = NO_ID


cdef class Batch:
    """Up to `capacity` packets in one buffer, with metadata records.

    The buffer is sized so that `capacity` frames of MAX_FRAME bytes always fit:
    a batch is full by packet count, never by bytes.
    """

    def __cinit__(self, Py_ssize_t capacity=DEFAULT_BATCH):
        if capacity < 1 or capacity > 1 << 20:
            raise ValueError(f"batch capacity must be 1..1048576, got {capacity}")
        self.capacity = capacity
        self.buf_size = capacity * (HEADROOM + MAX_FRAME + SLOT_ALIGN)
        self.buffer = np.zeros(self.buf_size, dtype=np.uint8)
        self.meta = np.zeros(capacity, dtype=META_DTYPE)
        self.buf = <uint8_t*>cnp.PyArray_DATA(self.buffer)
        self.m = <pkt_meta_t*>cnp.PyArray_DATA(self.meta)
        self.count = 0
        self.used = 0

    def clear(self):
        """Empty the batch (the buffer is reused, not zeroed)."""
        self.count = 0
        self.used = 0

    cdef int push(self, const uint8_t* data, uint32_t caplen, uint32_t wire_len,
                  uint64_t ts_ns, uint16_t linktype, uint16_t in_port) noexcept nogil:
        """Copy one frame in. Returns -1 when the batch is full.

        Frames longer than MAX_FRAME keep only their first MAX_FRAME bytes and are
        marked dropped as R_OVERSIZE_FRAME (they still count as read).
        """
        cdef pkt_meta_t* p
        cdef Py_ssize_t start
        cdef uint32_t keep = caplen
        if self.count >= self.capacity:
            return -1
        if keep > MAX_FRAME:
            keep = MAX_FRAME
        start = self.used + HEADROOM
        p = &self.m[self.count]
        meta_reset(p)
        memcpy(self.buf + start, data, keep)
        p.off = <uint32_t>start
        p.len = keep
        p.wire_len = wire_len if wire_len >= caplen else caplen
        p.ts_ns = ts_ns
        p.linktype = linktype
        p.in_port = in_port
        if caplen > MAX_FRAME:
            drop(p, ST_RX, R_OVERSIZE_FRAME)
        self.used = (start + keep + SLOT_ALIGN - 1) & ~(<Py_ssize_t>SLOT_ALIGN - 1)
        self.count += 1
        return 0

    def append(self, data, uint64_t ts_ns=0, uint16_t linktype=LT_ETHERNET,
               in_port=None, wire_len=None, uint16_t gso_size=0):
        """Copy one frame (bytes-like) into the batch; returns its index.

        gso_size: the frame is a TCP super-frame as a TAP with TSO hands it over (up to
        MAX_GSO_FRAME bytes, kept whole while the buffer has room), cut into segments
        of gso_size payload bytes on its way out. A convenience for tests and tools;
        readers fill batches in the core.
        """
        cdef const uint8_t[::1] view = memoryview(bytes(data)).cast("B")
        cdef uint32_t n = <uint32_t>view.shape[0]
        cdef uint16_t port = NO_PORT if in_port is None else <uint16_t>in_port
        cdef uint32_t wl = n if wire_len is None else <uint32_t>wire_len
        cdef pkt_meta_t* p
        if self.count >= self.capacity:
            raise OverflowError("batch is full")
        if gso_size:
            if n > MAX_GSO_FRAME or self.used + HEADROOM + n + SLOT_ALIGN > self.buf_size:
                raise OverflowError(f"no room for a super-frame of {n} bytes")
            self.push(&view[0], MAX_FRAME if n > MAX_FRAME else n, n, ts_ns, linktype, port)
            p = &self.m[self.count - 1]
            memcpy(self.buf + p.off, &view[0], n)
            p.len = n
            p.gso_size = gso_size
            self.used = (p.off + n + SLOT_ALIGN - 1) & ~(<Py_ssize_t>SLOT_ALIGN - 1)
            return self.count - 1
        if n == 0:
            self.push(<const uint8_t*>"", 0, wl, ts_ns, linktype, port)
        else:
            self.push(&view[0], n, wl, ts_ns, linktype, port)
        return self.count - 1

    def truncate(self, Py_ssize_t n):
        """Keep the first n packets (0 <= n <= count): the rest are forgotten."""
        if n < 0 or n > self.count:
            raise ValueError(f"truncate to {n} of {self.count} packets")
        self.count = n

    def packet(self, Py_ssize_t i):
        """The bytes of packet i as it stands now (after any rewrite)."""
        if i < 0 or i >= self.count:
            raise IndexError(i)
        cdef pkt_meta_t* p = &self.m[i]
        return bytes(self.buffer[p.off:p.off + p.len])

    def __len__(self):
        return self.count
