# cython: boundscheck=False, wraparound=False
"""The packet batch: one byte buffer plus one metadata record per packet.

See packet.pxd for the layout. `Batch.meta` is a numpy structured array whose
dtype is built from the C struct's own offsets, so Python and the core read
the same bytes.
"""
import numpy as np
cimport numpy as cnp
from libc.string cimport memcpy, memset
from libc.stdint cimport uintptr_t

cnp.import_array()

cdef pkt_meta_t _probe


cdef Py_ssize_t _offset(void* field):
    return <Py_ssize_t>(<uintptr_t>field - <uintptr_t>&_probe)


def _meta_fields():
    """(name, numpy type, offset) for every field of pkt_meta_t."""
    p = &_probe
    return [
        ("ts_ns", "<u8", _offset(&p.ts_ns)),
        ("off", "<u4", _offset(&p.off)),
        ("len", "<u4", _offset(&p.len)),
        ("wire_len", "<u4", _offset(&p.wire_len)),
        ("linktype", "<u2", _offset(&p.linktype)),
        ("in_port", "<u2", _offset(&p.in_port)),
        ("l3_off", "<u2", _offset(&p.l3_off)),
        ("l4_off", "<u2", _offset(&p.l4_off)),
        ("inner_off", "<u2", _offset(&p.inner_off)),
        ("quote_off", "<u2", _offset(&p.quote_off)),
        ("ethertype", "<u2", _offset(&p.ethertype)),
        ("vlan", "<u2", _offset(&p.vlan)),
        ("ip_ver", "u1", _offset(&p.ip_ver)),
        ("proto", "u1", _offset(&p.proto)),
        ("ttl", "u1", _offset(&p.ttl)),
        ("tcp_flags", "u1", _offset(&p.tcp_flags)),
        ("icmp_type", "u1", _offset(&p.icmp_type)),
        ("icmp_code", "u1", _offset(&p.icmp_code)),
        ("icmp_id", "<u2", _offset(&p.icmp_id)),
        ("frag", "u1", _offset(&p.frag)),
        ("tunnel", "u1", _offset(&p.tunnel)),
        ("sport", "<u2", _offset(&p.sport)),
        ("dport", "<u2", _offset(&p.dport)),
        ("encap", "u1", _offset(&p.encap)),
        ("frag_id", "<u4", _offset(&p.frag_id)),
        ("src4", "<u4", _offset(&p.src4)),
        ("dst4", "<u4", _offset(&p.dst4)),
        ("src6", "16u1", _offset(&p.src6[0])),
        ("dst6", "16u1", _offset(&p.dst6[0])),
        ("q_proto", "u1", _offset(&p.q_proto)),
        ("decap", "u1", _offset(&p.decap)),
        ("q_sport", "<u2", _offset(&p.q_sport)),
        ("q_dport", "<u2", _offset(&p.q_dport)),
        ("q_src4", "<u4", _offset(&p.q_src4)),
        ("q_dst4", "<u4", _offset(&p.q_dst4)),
        ("q_src6", "16u1", _offset(&p.q_src6[0])),
        ("q_dst6", "16u1", _offset(&p.q_dst6[0])),
        ("verdict", "u1", _offset(&p.verdict)),
        ("stage", "u1", _offset(&p.stage)),
        ("reason", "<u2", _offset(&p.reason)),
        ("out_port", "<u2", _offset(&p.out_port)),
        ("ct_state", "u1", _offset(&p.ct_state)),
        ("trace", "u1", _offset(&p.trace)),
        ("flow_id", "<u4", _offset(&p.flow_id)),
        ("svc_port", "<u4", _offset(&p.svc_port)),
        ("route_id", "<u4", _offset(&p.route_id)),
        ("pol_egress", "<u2", _offset(&p.pol_egress)),
        ("pol_ingress", "<u2", _offset(&p.pol_ingress)),
        ("hash", "<u8", _offset(&p.hash)),
        ("gso_size", "<u2", _offset(&p.gso_size)),
    ]


META_SIZE = sizeof(pkt_meta_t)
META_DTYPE = np.dtype({
    "names": [f[0] for f in _meta_fields()],
    "formats": [f[1] for f in _meta_fields()],
    "offsets": [f[2] for f in _meta_fields()],
    "itemsize": sizeof(pkt_meta_t),
})
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
