# cython: boundscheck=False, wraparound=False
"""Capture files, compiled: classic pcap and pcapng written from batches (the reader is
kdp/io/pcap.pyx).

Writer contract -- `CaptureWriter.write(batch)`:
  reads   verdict (only transmitted packets -- V_FORWARD; V_REJECT: the reject reply;
          V_REPLY: kdp's own answer, e.g. DNS -- unless all_packets), off, len, wire_len, ts_ns,
          linktype, out_port (pcapng interface), ip_ver and l3_off (link conversion);
  sets    nothing; packets that cannot be expressed in the file's link type are skipped and
          counted in `writer.unconvertible`.
Placed records (classic pcap, writers in several threads): plan claims a batch's place in
the file and put_at writes it there with pwrite(2); a sharded replay's chunks format each
record in place (record_size, put_record) and write a chunk with pwrite_all.
"""
import os
import struct

import numpy as np
cimport numpy as cnp

from cpython.bytes cimport PyBytes_AS_STRING
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy, memset
from libc.errno cimport errno, EINTR, EFBIG, EPIPE

from kdp._fast.packet cimport (Batch, pkt_meta_t, NO_PORT, NO_ID, V_FORWARD, V_REJECT, V_REPLY,
                               LT_ETHERNET, LT_RAW, LT_IPV4, LT_IPV6)
from kdp.io.pcap cimport NG_SHB, NG_IDB, NG_EPB
from kdp.errors import CaptureError

cnp.import_array()

cdef extern from "unistd.h" nogil:
    ssize_t c_write "write"(int fd, const void* buf, size_t count)
    ssize_t c_pwrite "pwrite"(int fd, const void* buf, size_t count, long offset)

cdef uint64_t NS = 1000000000ULL


# the synthetic Ethernet addresses of converted packets (locally administered)
SYNTH_DST_MAC = b"\x02\x6b\x64\x70\x00\x02"
SYNTH_SRC_MAC = b"\x02\x6b\x64\x70\x00\x01"
cdef uint8_t SYNTH_ETH[12]
for _k, _v in enumerate(SYNTH_DST_MAC + SYNTH_SRC_MAC):
    SYNTH_ETH[_k] = _v
WRITE_SNAPLEN = 262144


cdef inline bint _transmitted(const pkt_meta_t* p) noexcept nogil:
    """A packet the output capture gets (forwarded, the reject's reply, a local reply)."""
    return p.verdict == V_FORWARD or p.verdict == V_REJECT or p.verdict == V_REPLY


cdef inline int _record_source(Batch b, const pkt_meta_t* p, uint16_t lt, const uint8_t** src,
                               uint32_t* n) noexcept nogil:
    """The bytes of packet p written in link type lt (*src, *n). Returns 0 (as they are),
    1 (a synthetic Ethernet header goes in front) or -1 (unconvertible: skipped)."""
    cdef uint32_t l3
    src[0] = b.buf + p.off
    n[0] = p.len
    if p.linktype == lt:
        return 0
    l3 = p.l3_off
    if (p.ip_ver != 4 and p.ip_ver != 6) or l3 > p.len:
        return -1
    if lt == LT_RAW or (lt == LT_IPV4 and p.ip_ver == 4) or (lt == LT_IPV6 and p.ip_ver == 6):
        src[0] += l3
        n[0] -= l3
        return 0
    if lt == LT_ETHERNET:
        src[0] += l3
        n[0] -= l3
        return 1
    return -1


cdef inline int64_t _wire_len(const pkt_meta_t* p, uint32_t out_len) noexcept nogil:
    """The record's length on the wire: the bytes the capture cut off stay cut off."""
    cdef int64_t wire = <int64_t>(p.wire_len if p.wire_len >= p.len else p.len)
    wire += <int64_t>out_len - <int64_t>p.len
    if wire < out_len:
        wire = out_len
    if wire > <int64_t>0xFFFFFFFFU:
        wire = <int64_t>0xFFFFFFFFU
    return wire


cdef inline void _synth_eth(uint8_t* h, uint8_t ip_ver) noexcept nogil:
    memcpy(h, SYNTH_ETH, 12)
    if ip_ver == 4:
        h[12] = 0x08
        h[13] = 0x00
    else:
        h[12] = 0x86
        h[13] = 0xDD


cdef class CaptureWriter:
    """Writes the packets of batches to a pcap or pcapng file.

    CaptureWriter(path, linktype=LT_ETHERNET, ports=None, format=None, all_packets=False)
      linktype     the file's link type (classic header / every pcapng IDB)
      ports        kdp.ports.PortTable naming the pcapng interfaces (one IDB per out_port,
                   "none" for packets without one)
      format       'pcap' or 'pcapng'; None: 'pcapng' when the path ends in .pcapng
      all_packets  write every packet, not only those with verdict V_FORWARD
    The path "-" is standard output (classic pcap unless `format` says otherwise; refused
    when it is a terminal); a closed pipe (EPIPE) raises BrokenPipeError.

    Classic pcap is written with the nanosecond magic (0xa1b23c4d), snaplen 262144; pcapng
    with if_tsresol 9. Both in host byte order.

    Each packet's current bytes [off, off+len) are written with its ts_ns. Its length on
    the wire is written as wire_len + (bytes written - len), never less than the bytes
    written: a stage that changes `len` should move `wire_len` by the same amount, so that
    wire_len - len (the bytes the capture cut off) stays what the reader found.

    Link conversion, when a packet's linktype differs from the file's and it is IPv4/IPv6
    (ip_ver set by the parser): to raw IP (101; 228 for IPv4, 229 for IPv6) the bytes
    from l3_off are written; to Ethernet a synthetic 14-byte header (02:6b:64:70:00:01 ->
    02:6b:64:70:00:02, ethertype from ip_ver) goes in front of them. Anything else is
    skipped and counted in `unconvertible`.
    """

    def __cinit__(self, path, int linktype=LT_ETHERNET, ports=None, format=None,
                  bint all_packets=False):
        self.fd = -1
        self.out = NULL
        self.port_if = NULL
        self.path = os.fspath(path)
        if format is None:
            format = "pcapng" if str(self.path).lower().endswith(".pcapng") else "pcap"
        if format not in ("pcap", "pcapng"):
            raise ValueError(f"format must be 'pcap' or 'pcapng', got {format!r}")
        if not 0 <= linktype <= 0xFFFF:
            raise ValueError(f"link type must be 0..65535, got {linktype}")
        self.format = format
        self.ng = format == "pcapng"
        self.linktype = linktype
        self.all_packets = all_packets
        if ports is None:
            from kdp.ports import PortTable
            ports = PortTable()
        self.ports = ports
        self.out = <uint8_t*>malloc(WRITE_BUFFER)
        self.port_if = <uint32_t*>malloc(65536 * sizeof(uint32_t))
        if self.out == NULL or self.port_if == NULL:
            raise MemoryError()
        memset(self.port_if, 0xFF, 65536 * sizeof(uint32_t))
        if self.path == "-":
            self.path = "<stdout>"
            try:
                self.fd = os.dup(1)
                os.set_inheritable(self.fd, False)
            except OSError as exc:
                raise CaptureError(f"<stdout>: cannot write standard output: {exc.strerror}") from None
            if os.isatty(self.fd):
                raise CaptureError("<stdout>: standard output is a terminal; redirect the capture "
                                   "(kdp replay ... -o - | tcpdump -r -)")
        else:
            try:
                self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                                  | getattr(os, "O_CLOEXEC", 0), 0o644)
            except OSError as exc:
                raise CaptureError(f"{self.path}: cannot create capture: {exc.strerror}") from None
        if format == "pcap":
            hdr = struct.pack("=IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, WRITE_SNAPLEN, linktype)
        else:
            opt = _ng_option(4, b"kdp")
            body = struct.pack("=IHHq", 0x1A2B3C4D, 1, 0, -1) + opt + struct.pack("=HH", 0, 0)
            hdr = _ng_block(NG_SHB, body)
        self._put_py(hdr)

    def __dealloc__(self):
        if self.fd >= 0:
            if not self.closed:
                self._flush()
            os.close(self.fd)
            self.fd = -1
        free(self.out)
        free(self.port_if)
        self.out = NULL
        self.port_if = NULL

    def _put_py(self, bytes data):
        if self._put(PyBytes_AS_STRING(data), len(data)) < 0:
            self._raise()

    def _raise(self):
        if self.err_no == EPIPE:
            raise BrokenPipeError(self.err_no, f"{self.path}: {os.strerror(self.err_no)}")
        raise CaptureError(f"{self.path}: cannot write: {os.strerror(self.err_no)}")

    cdef int _flush(self) noexcept nogil:
        cdef Py_ssize_t done = 0
        cdef ssize_t n
        while done < self.out_used:
            n = c_write(self.fd, self.out + done, self.out_used - done)
            if n < 0:
                if errno == EINTR:
                    continue
                self.err_no = errno
                return -1
            done += n
        self.bytes_written += self.out_used
        self.out_used = 0
        return 0

    cdef int _put(self, const void* data, Py_ssize_t n) noexcept nogil:
        if self.out_used + n > WRITE_BUFFER:
            if self._flush() < 0:
                return -1
        if n > WRITE_BUFFER:        # never: frames are <= MAX_FRAME
            self.err_no = EFBIG
            return -1
        memcpy(self.out + self.out_used, data, n)
        self.out_used += n
        return 0

    cdef Py_ssize_t _write_batch(self, Batch b, Py_ssize_t start, uint32_t* need_port) noexcept nogil:
        """Write packets start.. of b. Returns b.count when done, the index of a packet whose
        out_port needs an IDB first (*need_port set), or -1 on a write error."""
        cdef Py_ssize_t i
        cdef pkt_meta_t* p
        cdef const uint8_t* src
        cdef uint32_t n, out_len
        cdef int64_t wire
        cdef bint eth
        cdef uint16_t lt = <uint16_t>self.linktype
        cdef bint ng = self.ng
        cdef uint8_t hdr[32]
        cdef uint8_t ethhdr[14]
        cdef uint32_t w32[8]
        cdef uint64_t ts
        cdef uint32_t pad = 0
        cdef uint32_t zero = 0
        cdef uint32_t ifid
        cdef uint32_t c_len, c_pad, opts
        cdef int conv
        for i in range(start, b.count):
            p = &b.m[i]
            if not self.all_packets and not _transmitted(p):
                continue
            conv = _record_source(b, p, lt, &src, &n)
            if conv < 0:
                self.unconvertible += 1
                continue
            eth = conv == 1
            out_len = n + (14 if eth else 0)
            wire = _wire_len(p, out_len)
            ts = p.ts_ns
            if not ng:
                # classic pcap, nanosecond magic
                w32[0] = <uint32_t>(ts // NS)
                w32[1] = <uint32_t>(ts % NS)
                w32[2] = out_len
                w32[3] = <uint32_t>wire
                if self._put(w32, 16) < 0:
                    return -1
            else:
                ifid = self.port_if[p.out_port]
                if ifid == NO_ID:
                    need_port[0] = p.out_port
                    return i
                pad = (4 - (out_len & 3)) & 3
                c_len = 0
                opts = 0
                if self.comment_off != NULL:
                    c_len = self.comment_off[i + 1] - self.comment_off[i]
                    if c_len > 0xFFFF:
                        c_len = 0xFFFF
                    c_pad = (4 - (c_len & 3)) & 3
                    if c_len:
                        opts = 4 + c_len + c_pad + 4        # opt_comment, then opt_endofopt
                w32[0] = NG_EPB
                w32[1] = 32 + out_len + pad + opts
                w32[2] = ifid
                w32[3] = <uint32_t>(ts >> 32)
                w32[4] = <uint32_t>ts
                w32[5] = out_len
                w32[6] = <uint32_t>wire
                if self._put(w32, 28) < 0:
                    return -1
            if eth:
                _synth_eth(ethhdr, p.ip_ver)
                if self._put(ethhdr, 14) < 0:
                    return -1
            if self._put(src, n) < 0:
                return -1
            if ng:
                if pad and self._put(&zero, pad) < 0:
                    return -1
                if opts:
                    (<uint16_t*>&hdr[0])[0] = 1         # opt_comment, host byte order
                    (<uint16_t*>&hdr[2])[0] = <uint16_t>c_len
                    if self._put(hdr, 4) < 0 or \
                            self._put(self.comment_text + self.comment_off[i], c_len) < 0:
                        return -1
                    if c_pad and self._put(&zero, c_pad) < 0:
                        return -1
                    if self._put(&zero, 4) < 0:
                        return -1
                w32[7] = 32 + out_len + pad + opts
                if self._put(&w32[7], 4) < 0:
                    return -1
            self.packets += 1
        return b.count

    def write(self, Batch batch not None, comments=None):
        """Write the batch's transmitted packets (V_FORWARD, V_REJECT, V_REPLY; all with all_packets); return how many.
        `comments` (pcapng only): a text or None per packet of the batch, written as the
        packet's opt_comment (Wireshark shows it beside the packet)."""
        cdef Py_ssize_t start = 0, r
        cdef uint32_t need = 0
        cdef uint64_t before = self.packets
        if self.closed:
            raise ValueError("write to a closed CaptureWriter")
        if self.placed:
            raise ValueError("write after plan: this writer's records are placed with put_at")
        if comments is not None:
            if not self.ng:
                raise ValueError("packet comments need a pcapng output")
            if len(comments) < batch.count:
                raise ValueError("fewer comments than packets")
            texts = [(c or "").encode("utf-8") for c in comments[:batch.count]]
            text = b"".join(texts) or b"\0"
            offsets = np.zeros(batch.count + 1, dtype=np.uint32)
            np.cumsum([len(t) for t in texts], out=offsets[1:])
            self.comment_text = <const uint8_t*><const char*>text
            self.comment_off = <const uint32_t*>cnp.PyArray_DATA(offsets)
        try:
            while True:
                with nogil:
                    r = self._write_batch(batch, start, &need)
                if r < 0:
                    self._raise()
                if r < batch.count:
                    self._add_iface(need)
                    start = r
                    continue
                break
        finally:
            self.comment_text = NULL
            self.comment_off = NULL
        return self.packets - before

    def plan(self, Batch batch not None):
        """Classic pcap, for writers in several threads: claim the place of `batch`'s
        records in the file now (the next bytes, in call order) and count its packets
        (`packets`, `unconvertible`) as write does; put_at, from any thread, then writes
        them there. Returns (file offset, bytes). The file's header is written first;
        write() is refused after plan (its bytes would go after the header)."""
        cdef Py_ssize_t i
        cdef uint32_t size
        cdef uint64_t nbytes = 0, packets = 0, bad = 0, offset
        if self.closed:
            raise ValueError("plan on a closed CaptureWriter")
        if self.ng:
            raise ValueError("plan/put_at write classic pcap only (pcapng adds interface blocks in order)")
        self.begin_placed()
        with nogil:
            for i in range(batch.count):
                size = self.record_size(batch, &batch.m[i])
                if size == UNCONVERTIBLE:
                    bad += 1
                elif size:
                    nbytes += size
                    packets += 1
        offset = self.bytes_written
        self.placed_chunk(nbytes, packets, bad)
        return offset, nbytes

    def put_at(self, Batch batch not None, uint64_t offset, uint64_t nbytes, scratch):
        """Write the records plan(batch) placed at `offset` (`nbytes` of them), formatted
        in `scratch` (a uint8 array of at least `nbytes`), with pwrite(2), the GIL
        released: several threads may put their batches at once."""
        cdef uint8_t[::1] sv = scratch
        cdef uint8_t* out = &sv[0]
        cdef Py_ssize_t i
        cdef uint32_t size
        cdef int err = 0
        cdef bint mismatch = False
        cdef uint64_t k = 0
        if <uint64_t>sv.shape[0] < nbytes:
            raise ValueError("the scratch array is smaller than the batch's records")
        with nogil:
            for i in range(batch.count):
                size = self.record_size(batch, &batch.m[i])
                if size == 0 or size == UNCONVERTIBLE:
                    continue
                if k + size > nbytes:
                    mismatch = True     # not the batch plan() measured
                    break
                k += self.put_record(batch, &batch.m[i], out + k)
            if k != nbytes:
                mismatch = True
            if not mismatch:
                err = self.pwrite_all(out, nbytes, offset)
        if mismatch:
            raise ValueError("put_at: the batch's records are not the ones plan() measured")
        if err != 0:
            self.raise_errno(err)

    # ------------------------------------------------- a sharded replay's chunks (classic pcap)

    cdef uint32_t record_size(self, Batch b, const pkt_meta_t* p) noexcept nogil:
        """The bytes of packet p's classic pcap record (0: not written; UNCONVERTIBLE: in
        no way expressible in this link type, skipped and counted as write does)."""
        cdef const uint8_t* src
        cdef uint32_t n
        cdef int conv
        if not self.all_packets and not _transmitted(p):
            return 0
        conv = _record_source(b, p, <uint16_t>self.linktype, &src, &n)
        if conv < 0:
            return UNCONVERTIBLE
        return 16 + n + (14 if conv == 1 else 0)

    cdef uint32_t put_record(self, Batch b, const pkt_meta_t* p, uint8_t* out) noexcept nogil:
        """Format packet p's record (record_size's bytes) at out, as write() and put_at do."""
        cdef const uint8_t* src
        cdef uint32_t n, out_len, k = 16
        cdef uint32_t w32[4]
        cdef int conv = _record_source(b, p, <uint16_t>self.linktype, &src, &n)
        out_len = n + (14 if conv == 1 else 0)
        w32[0] = <uint32_t>(p.ts_ns // NS)
        w32[1] = <uint32_t>(p.ts_ns % NS)
        w32[2] = out_len
        w32[3] = <uint32_t>_wire_len(p, out_len)
        memcpy(out, w32, 16)
        if conv == 1:
            _synth_eth(out + 16, p.ip_ver)
            k += 14
        memcpy(out + k, src, n)
        return k + n

    cdef int pwrite_all(self, const uint8_t* data, uint64_t n, uint64_t offset) noexcept nogil:
        """pwrite(2) all n bytes at offset; returns 0 or the errno (raise it with
        raise_errno, holding the GIL)."""
        cdef uint64_t done = 0
        cdef ssize_t r
        while done < n:
            r = c_pwrite(self.fd, data + done, n - done, <long>(offset + done))
            if r < 0:
                if errno == EINTR:
                    continue
                return errno
            if r == 0:
                return EFBIG
            done += <uint64_t>r
        return 0

    def begin_placed(self):
        """Classic pcap records placed by their writers (a sharded replay's chunks): the
        file's header is written now, write() is refused from now on."""
        if self.ng:
            raise ValueError("placed records are classic pcap only")
        if not self.placed:
            self.placed = True
            if self._flush() < 0:
                self._raise()

    def placed_chunk(self, uint64_t nbytes, uint64_t packets, uint64_t unconvertible):
        """Count a chunk of placed records (put at bytes_written: the caller wrote them)."""
        self.bytes_written += nbytes
        self.packets += packets
        self.unconvertible += unconvertible

    def raise_errno(self, int err):
        if err == EPIPE:
            raise BrokenPipeError(err, f"{self.path}: {os.strerror(err)}")
        raise CaptureError(f"{self.path}: cannot write: {os.strerror(err)}")

    def _add_iface(self, uint32_t port):
        if port == NO_PORT:
            name = "none"
        else:
            try:
                name = self.ports.name_of(port)
            except (KeyError, IndexError):
                name = f"port{port}"
        opts = (_ng_option(2, name.encode("utf-8")) + _ng_option(9, b"\x09")
                + struct.pack("=HH", 0, 0))
        body = struct.pack("=HHI", self.linktype, 0, WRITE_SNAPLEN) + opts
        self._put_py(_ng_block(NG_IDB, body))
        self.port_if[port] = self.n_if
        self.n_if += 1

    def flush(self):
        if self.fd >= 0 and self._flush() < 0:
            self._raise()

    def close(self):
        """Flush and close the file (idempotent)."""
        if self.closed:
            return
        self.closed = True
        try:
            if self._flush() < 0:
                self._raise()
        finally:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _ng_option(int code, bytes value):
    pad = (4 - len(value) % 4) % 4
    return struct.pack("=HH", code, len(value)) + value + b"\0" * pad


def _ng_block(uint32_t btype, bytes body):
    total = 12 + len(body)
    return struct.pack("=II", btype, total) + body + struct.pack("=I", total)
