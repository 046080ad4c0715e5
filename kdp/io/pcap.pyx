# cython: boundscheck=False, wraparound=False
"""Capture files, compiled: classic pcap and pcapng, read into batches.

Stage contract (rx from a file or a pipe) -- `CaptureReader.fill(batch)`:
  reads   nothing of the batch (it is cleared first);
  sets    for every packet: off, len, wire_len (>= len), ts_ns (uint64 ns since the
          epoch), linktype (lower 16 bits of the file's link type), in_port; every other
          field as meta_reset leaves it. in_port is, in this order: the fixed ingress port
          when one was given; NO_PORT for a packet the capture saw leaving (taken as input
          with all_directions: the ingress classifier decides); for Linux cooked v2 (SLL2)
          the port `ifindex_ports` gives its interface index; the port of the pcapng
          interface's if_name (`ports.port_of_interface`: NO_PORT for "any"); NO_PORT.
  drops   at ST_RX: R_UNSUPPORTED_LINKTYPE (a link type the parser does not know: the
          packet is still in the batch and counted), R_OVERSIZE_FRAME (set by Batch.push
          for frames longer than MAX_FRAME), and unless all_directions:
          R_CAPTURED_OUTGOING (the capture saw the packet leave the node: Linux cooked
          packet type OUTGOING or LOOPBACK, or a pcapng epb_flags direction "outbound"),
          R_OTHERHOST (a frame for another host's MAC: cooked packet type OTHERHOST, or a
          pcapng reception type "promiscuous"; the kernel drops these before IP).

Direction: `tcpdump -i any` (SLL, SLL2) records every packet once per interface it crossed,
with its direction. A packet the node sent is the node's output, not its input, so only
packets the node received (host, broadcast, multicast) are input.

Damage policy (documented in kdp/io/capture.py too):
  * the file ends inside a record or block (a cut-short capture): every complete packet
    before it is delivered, then reading stops and a message is appended to
    `reader.warnings` (no exception);
  * a header that cannot be right (bad magic / byte-order mark / version, a record longer
    than 256 KiB, a block shorter than 12 bytes, longer than 16 MiB, not a multiple of 4, or
    whose trailing length differs): CaptureError naming the file and byte offset, raised by
    the `fill` call after the one that delivered every packet before the damage;
  * an EPB/SPB/PB for an interface that no IDB described is skipped and counted
    (`reader.skipped`, with one warning at the end).
Nothing is allocated from a length read in the file: records are read in place through a
sliding mmap window of at most 64 MiB (MAP_POPULATE, MADV_SEQUENTIAL), so memory stays
bounded whatever the file size, and lengths are capped before they are used. (As with any
mmap reader, a file truncated by another process while it is being read raises SIGBUS.)
A pipe (path "-": standard input; a FIFO, which kdp waits on for a writer as tcpdump -r
does; /dev/fd/N) is streamed instead: read(2) into a buffer that holds the current record
or block (at most 16 MiB), so `tcpdump -w - | kdp replay -` processes packets as they
come, with the same damage policy (the end of the stream is the end of the file). A
terminal as standard input is refused.

The writer is kdp/io/pcapwrite.pyx.
"""
import os
import stat

import numpy as np
cimport numpy as cnp

from cpython.bytes cimport PyBytes_AS_STRING
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, int32_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memcpy, memset, memmove
from libc.errno cimport errno, EINTR, EAGAIN, ENOMEM
from cpython.exc cimport PyErr_CheckSignals

from kdp._fast.packet cimport (Batch, pkt_meta_t, drop, meta_reset, NO_PORT, ST_RX, MAX_FRAME,
                               R_UNSUPPORTED_LINKTYPE, R_OVERSIZE_FRAME, V_PENDING,
                               LT_NULL, LT_ETHERNET, LT_RAW, LT_LOOP, LT_LINUX_SLL,
                               LT_IPV4, LT_IPV6, LT_LINUX_SLL2,
                               R_CAPTURED_OUTGOING, R_OTHERHOST)

from kdp._fast.checksum cimport kdp_prefetch, kdp_bswap16
from kdp.errors import CaptureError

cnp.import_array()

cdef extern from "sys/mman.h" nogil:
    void* mmap(void* addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void* addr, size_t length)
    int madvise(void* addr, size_t length, int advice)
    int PROT_READ
    int MAP_PRIVATE
    int MAP_POPULATE
    int MADV_SEQUENTIAL
    void* MAP_FAILED

cdef extern from "unistd.h" nogil:
    long sysconf(int name)
    int _SC_PAGESIZE
    ssize_t c_read "read"(int fd, void* buf, size_t count)

cdef extern from "poll.h" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long nfds, int timeout)
    short POLLIN

cdef extern from *:
    """
    static inline uint32_t kdp_bswap32(uint32_t v) { return __builtin_bswap32(v); }
    static inline uint64_t kdp_bswap64(uint64_t v) { return __builtin_bswap64(v); }
    """
    uint32_t kdp_bswap32(uint32_t v) nogil
    uint64_t kdp_bswap64(uint64_t v) nogil

cdef uint64_t PAGE = <uint64_t>sysconf(_SC_PAGESIZE)
cdef uint64_t PREFETCH_AHEAD = 2048      # bytes: 1-4 KiB ahead all gave ~15 ns a packet

# what a WS_CORRUPT / WS_TRUNCATED / WS_IO_ERROR was about (err_kind)
cdef enum:
    E_RECORD_LEN = 1
    E_BLOCK_LEN = 2
    E_BLOCK_TRAILER = 3
    E_BOM = 4
    E_VERSION = 5
    E_SHORT_BLOCK = 6
    E_CAPLEN = 7
    E_TOO_MANY_IFACES = 8
    E_MMAP = 9
    E_NOMEM = 10
    E_TRUNC_HEADER = 11
    E_TRUNC_BODY = 12
    E_READ = 13

# Linux cooked capture packet types (libpcap's LINUX_SLL_*, the kernel's PACKET_*)
cdef enum:
    SLL_HOST = 0
    SLL_BROADCAST = 1
    SLL_MULTICAST = 2
    SLL_OTHERHOST = 3
    SLL_OUTGOING = 4
    SLL_LOOPBACK = 5        # a multicast the node sent, looped back to itself

# pcapng option codes, and the EPB flags word's fields
cdef enum:
    NG_OPT_EPB_FLAGS = 2
    EPB_DIR_MASK = 3
    EPB_DIR_OUTBOUND = 2
    EPB_RECEPTION_SHIFT = 2
    EPB_RECEPTION_MASK = 7
    EPB_RECEPTION_PROMISCUOUS = 4

STREAM_BUFFER = 1048576         # first size of a stream's buffer (grows to the largest block)
MAX_INTERFACE_INFO = 4096       # `interfaces` keeps this many descriptions (memory stays bounded)

cdef uint64_t NS = 1000000000ULL


cdef inline uint16_t rd16(const uint8_t* p, bint swap) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, p, 2)
    return kdp_bswap16(v) if swap else v


cdef inline uint32_t rd32(const uint8_t* p, bint swap) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, p, 4)
    return kdp_bswap32(v) if swap else v


cdef inline uint64_t rd64(const uint8_t* p, bint swap) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, p, 8)
    return kdp_bswap64(v) if swap else v


cdef inline bint linktype_supported(uint16_t lt) noexcept nogil:
    return (lt == LT_ETHERNET or lt == LT_RAW or lt == LT_IPV4 or lt == LT_IPV6
            or lt == LT_LINUX_SLL or lt == LT_LINUX_SLL2 or lt == LT_NULL or lt == LT_LOOP)


cdef inline void rx_drop(pkt_meta_t* p, uint16_t linktype, uint16_t reason) noexcept nogil:
    """A read packet's drop at rx, if any: a link type kdp cannot parse, or the reason
    its direction gave (CaptureReader._direction); the first drop stays."""
    if p.verdict != V_PENDING:
        return
    if not linktype_supported(linktype):
        drop(p, ST_RX, R_UNSUPPORTED_LINKTYPE)
    elif reason != 0:
        drop(p, ST_RX, reason)


cdef inline uint32_t be32(const uint8_t* p) noexcept nogil:
    return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]


cdef uint32_t epb_flags_of(const uint8_t* q, const uint8_t* end, bint swap) noexcept nogil:
    """The epb_flags option among the options in [q, end) of an EPB (0: absent)."""
    cdef uint16_t code, olen
    while end - q >= 4:
        code = rd16(q, swap)
        olen = rd16(q + 2, swap)
        if code == 0 or olen > end - q - 4:
            break
        if code == NG_OPT_EPB_FLAGS and olen == 4:
            return rd32(q + 4, swap)
        q += 4 + ((<uint32_t>olen + 3) & ~3u)
    return 0


cdef void iface_set_tsresol(iface_t* f, uint8_t r) noexcept nogil:
    """Precompute the tick -> ns conversion for an if_tsresol byte."""
    cdef int e = r & 0x7F
    cdef int k
    f.tsresol = r
    f.tsmul = 1
    f.tsdiv = 1
    if r & 0x80:
        f.tsshift = e
        return
    f.tsshift = -1
    if e <= 9:
        for k in range(9 - e):
            f.tsmul *= 10
    elif e - 9 <= 19:
        for k in range(e - 9):
            f.tsdiv *= 10
    else:
        f.tsdiv = 0     # finer than 1e-28 s: every uint64 tick count is < 1 ns


cdef inline uint64_t ticks_to_ns(const iface_t* f, uint64_t t) noexcept nogil:
    cdef uint64_t ns, frac
    cdef int e = f.tsshift
    if e < 0:
        if f.tsdiv == 1:
            ns = t * f.tsmul
        elif f.tsdiv == 0:
            ns = 0
        else:
            ns = t // f.tsdiv
    elif e == 0:
        ns = t * NS
    elif e >= 64:
        # whole seconds are 0; keep the top 34 fraction bits
        if e - 34 >= 64:
            ns = 0
        else:
            ns = ((t >> (e - 34)) * NS) >> 34
    else:
        frac = t & ((<uint64_t>1 << e) - 1)
        ns = (t >> e) * NS
        if e > 34:
            ns += ((frac >> (e - 34)) * NS) >> 34
        else:
            ns += (frac * NS) >> e
    return ns + <uint64_t>f.tsoffset_ns


def _wait_for_writer(int fd):
    """Wait until a FIFO opened without blocking has a writer that wrote or came and went.
    In 100 ms steps with the signals checked between: a blocking open() would miss a
    Ctrl-C that came just before it (no Python runs between the check and the call)."""
    import select
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    while not poller.poll(100):
        PyErr_CheckSignals()


cdef class CaptureReader:
    """Reads a pcap or pcapng file (or a pipe) into batches, a batch at a time.

    CaptureReader(path, ports=None, ingress=None, ifindex_ports=None, all_directions=False)
      path      a file; "-" reads standard input; a FIFO or other pipe is streamed too
      ports     a kdp.ports.PortTable: pcapng if_name -> in_port through its
                `port_of_interface` (a new table when None)
      ingress   a port id given to every packet (overrides everything else); None: see
                the module docstring
      ifindex_ports  {interface index: port id} for Linux cooked v2 (SLL2) packets, whose
                header carries the index of the interface they crossed
      all_directions  take packets the capture saw leaving the node, or addressed to
                another host, as input too (by default they are dropped at RX, counted)

    fill(batch) -> int clears the batch, pushes up to batch.capacity packets and returns
    how many (0 at the end). See the module docstring for what happens on damage.
    """

    def __cinit__(self, path, ports=None, ingress=None, ifindex_ports=None,
                  bint all_directions=False):
        self.fd = -1
        self.win = NULL
        self.ifaces = NULL
        self.sbuf = NULL
        self.name_buf = NULL
        self.ifx_index = NULL
        self.ifx_port = NULL
        self.path = os.fspath(path)
        self.warnings = []
        self.interfaces = []
        self.pending_error = None
        self.all_directions = all_directions
        if ports is None:
            from kdp.ports import PortTable
            ports = PortTable()
        self.ports = ports
        if ingress is None:
            self.ingress = NO_PORT
        else:
            if not 0 <= int(ingress) < NO_PORT:
                raise ValueError(f"ingress port id must be 0..{NO_PORT - 1}, got {ingress}")
            self.ingress = <uint16_t>int(ingress)
        self._set_ifindex_ports(ifindex_ports or {})
        self.name_buf = <uint8_t*>malloc(65536)
        self.cap_if = 4
        self.ifaces = <iface_t*>malloc(self.cap_if * sizeof(iface_t))
        if self.ifaces == NULL or self.name_buf == NULL:
            raise MemoryError()
        self._open_input()
        self._open_header()

    def _open_input(self):
        """Open the file (mmap) or the pipe (stream). The path is opened without blocking
        and checked first; on a named FIFO kdp then waits for its writer, as `tcpdump -r`
        and `cat` do (Ctrl-C interrupts the wait)."""
        if self.path == "-":
            self.path = "<stdin>"
            try:
                self.fd = os.dup(0)
                os.set_inheritable(self.fd, False)
            except OSError as exc:
                raise CaptureError(f"<stdin>: cannot read standard input: {exc.strerror}") from None
            if os.isatty(self.fd):
                raise CaptureError("<stdin>: standard input is a terminal; pipe a capture into "
                                   "kdp (tcpdump -w - ... | kdp replay - ...)")
        else:
            try:
                self.fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
            except OSError as exc:
                raise CaptureError(f"{self.path}: cannot open capture: {exc.strerror}") from None
        st = os.fstat(self.fd)
        if stat.S_ISREG(st.st_mode):
            self.size = st.st_size
            return
        if stat.S_ISDIR(st.st_mode):
            raise CaptureError(f"{self.path}: is a directory, not a capture file")
        if not (stat.S_ISFIFO(st.st_mode) or stat.S_ISSOCK(st.st_mode) or stat.S_ISCHR(st.st_mode)) \
                or os.isatty(self.fd):
            raise CaptureError(f"{self.path}: not a regular file, pipe or FIFO")
        if stat.S_ISFIFO(st.st_mode) and self.path != "<stdin>":
            _wait_for_writer(self.fd)
        os.set_blocking(self.fd, True)
        self.stream = True
        self.sbuf_cap = STREAM_BUFFER
        self.sbuf = <uint8_t*>malloc(self.sbuf_cap)
        if self.sbuf == NULL:
            raise MemoryError()

    def _set_ifindex_ports(self, mapping):
        cdef uint32_t i
        items = sorted((int(k), int(v)) for k, v in mapping.items())
        for k, v in items:
            if not 0 <= k <= 0xFFFFFFFF or not 0 <= v <= NO_PORT:
                raise ValueError(f"ifindex_ports: {k} -> {v} is out of range")
        n = len(items)
        self.ifx_index = <uint32_t*>malloc(max(n, 1) * sizeof(uint32_t))
        self.ifx_port = <uint16_t*>malloc(max(n, 1) * sizeof(uint16_t))
        if self.ifx_index == NULL or self.ifx_port == NULL:
            raise MemoryError()
        for i in range(n):
            self.ifx_index[i] = items[i][0]
            self.ifx_port[i] = items[i][1]
        self.n_ifx = n

    def _release(self):
        if self.win != NULL:
            munmap(<void*>self.win, self.win_len)
            self.win = NULL
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        free(self.sbuf)
        self.sbuf = NULL
        self.sbuf_len = 0

    def __dealloc__(self):
        self._release()
        free(self.ifaces)
        self.ifaces = NULL
        free(self.name_buf)
        self.name_buf = NULL
        free(self.ifx_index)
        free(self.ifx_port)
        self.ifx_index = NULL
        self.ifx_port = NULL

    def close(self):
        """Release the file and its mapping (fill then returns 0)."""
        self._release()
        self.done = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    cdef int _map(self, uint64_t off, uint64_t need, const uint8_t** out) noexcept nogil:
        """Point *out at file bytes [off, off+need). Caller made sure they are there (_need).
        Returns 0, or -1 when mmap fails."""
        cdef uint64_t start, length
        cdef void* m
        if self.stream:
            if off < self.sbuf_off or off + need > self.sbuf_off + self.sbuf_len:
                return -1       # never: _need buffered them
            out[0] = self.sbuf + (off - self.sbuf_off)
            return 0
        if off >= self.win_off and off + need <= self.win_off + self.win_len and self.win != NULL:
            out[0] = self.win + (off - self.win_off)
            return 0
        if self.win != NULL:
            munmap(<void*>self.win, self.win_len)
            self.win = NULL
        start = off & ~(PAGE - 1)
        length = self.size - start
        if length > MAP_WINDOW:
            length = MAP_WINDOW
        if off + need > start + length:     # cannot happen with the length caps
            return -1
        m = mmap(NULL, length, PROT_READ, MAP_PRIVATE | MAP_POPULATE, self.fd, <long>start)
        if m == MAP_FAILED:
            return -1
        madvise(m, length, MADV_SEQUENTIAL)
        self.win = <const uint8_t*>m
        self.win_off = start
        self.win_len = length
        out[0] = self.win + (off - start)
        return 0

    cdef int64_t _need(self, uint64_t off, uint64_t n) noexcept nogil:
        """How many of the bytes [off, off+n) the input holds (at most n); a stream is read
        as far as that takes (n is at most a block's capped length). -1: read(2) failed
        (read_errno); -2: a signal interrupted it (nothing was consumed: call again)."""
        cdef uint64_t end, have, keep, cap
        cdef uint8_t* grown
        cdef ssize_t r
        cdef pollfd pfd
        if not self.stream:
            if off >= self.size:
                return 0
            have = self.size - off
            return <int64_t>(n if have > n else have)
        while True:
            end = self.sbuf_off + self.sbuf_len
            have = end - off if end > off else 0
            if have >= n:
                return <int64_t>n
            if self.eof:
                return <int64_t>have
            # keep only what lies at or after `off` (records are consumed in order), and
            # make room for n bytes
            if off > self.sbuf_off:
                keep = have
                if keep:
                    memmove(self.sbuf, self.sbuf + (off - self.sbuf_off), keep)
                self.sbuf_off = off
                self.sbuf_len = keep
            if n > self.sbuf_cap:
                cap = self.sbuf_cap
                while cap < n:
                    cap *= 2
                grown = <uint8_t*>realloc(self.sbuf, cap)
                if grown == NULL:
                    self.read_errno = ENOMEM
                    return -1
                self.sbuf = grown
                self.sbuf_cap = cap
            r = c_read(self.fd, self.sbuf + self.sbuf_len, self.sbuf_cap - self.sbuf_len)
            if r > 0:
                self.sbuf_len += <uint64_t>r
                self.size = self.sbuf_off + self.sbuf_len
            elif r == 0:
                self.eof = True
            elif errno == EINTR:
                return -2
            elif errno == EAGAIN:
                pfd.fd = self.fd
                pfd.events = POLLIN
                pfd.revents = 0
                poll(&pfd, 1, -1)
            else:
                self.read_errno = errno
                return -1

    cdef int _fail(self, int status, int kind, uint64_t off, uint64_t a, uint64_t b) noexcept nogil:
        self.status = status
        self.err_kind = kind
        self.err_off = off
        self.err_a = a
        self.err_b = b
        return status

    def _need_py(self, uint64_t off, uint64_t n):
        """_need with the GIL: signals are handled, a read error raises CaptureError."""
        cdef int64_t got
        while True:
            with nogil:
                got = self._need(off, n)
            if got == -2:
                PyErr_CheckSignals()
                continue
            if got == -1:
                raise CaptureError(f"{self.path}: cannot read: {os.strerror(self.read_errno)}")
            return got

    def _open_header(self):
        cdef const uint8_t* p
        cdef uint32_t magic
        cdef uint16_t major
        cdef iface_t* f
        cdef int st
        cdef int64_t got = self._need_py(0, 24)
        if got < 4:
            raise CaptureError(f"{self.path}: {got} bytes is too short to be a capture file")
        if self._map(0, 4, &p) < 0:
            raise CaptureError(f"{self.path}: cannot map the file: {os.strerror(errno)}")
        memcpy(&magic, p, 4)
        if magic in (PCAP_USEC, PCAP_USEC_SWAPPED, PCAP_NSEC, PCAP_NSEC_SWAPPED):
            self.fmt = FMT_PCAP
            self.swap = magic in (PCAP_USEC_SWAPPED, PCAP_NSEC_SWAPPED)
            self.nsec = magic in (PCAP_NSEC, PCAP_NSEC_SWAPPED)
            if got < 24:
                raise CaptureError(f"{self.path}: the file ends inside the pcap file header "
                                   f"(at byte offset {got} of 24)")
            self._map(0, 24, &p)
            major = rd16(p + 4, self.swap)
            if major != 2:
                raise CaptureError(f"{self.path}: unsupported pcap version {major}."
                                   f"{rd16(p + 6, self.swap)} at byte offset 4")
            f = &self.ifaces[0]
            memset(f, 0, sizeof(iface_t))
            f.snaplen = rd32(p + 16, self.swap)
            f.linktype = <uint16_t>(rd32(p + 20, self.swap) & 0xFFFF)
            f.port = self.ingress
            iface_set_tsresol(f, 9 if self.nsec else 6)
            self.n_if = 1
            self.pos = 24
            self.interfaces.append(self._iface_info(0, None))
            self.interfaces_seen = 1
        elif magic == NG_SHB:
            self.fmt = FMT_PCAPNG
            while True:
                with nogil:
                    st = self._read_shb(0)
                if st != WS_EINTR:
                    break
                PyErr_CheckSignals()
            if st >= 0:
                raise self._error()
        else:
            raise CaptureError(f"{self.path}: not a pcap or pcapng file "
                               f"(magic 0x{magic:08x} at byte offset 0)")

    def _iface_info(self, uint32_t i, name):
        cdef iface_t* f = &self.ifaces[i]
        r = f.tsresol
        return {
            "section": self.section - 1 if self.fmt == FMT_PCAPNG else 0,
            "index": i,
            "name": name,
            "linktype": f.linktype,
            "snaplen": f.snaplen,
            "tsresol": (f"2^-{r & 0x7F}" if r & 0x80 else f"10^-{r}"),
            "tsoffset": f.tsoffset_ns // 1000000000,
            "port": None if f.port == NO_PORT else f.port,
        }

    def _error(self):
        """The CaptureError for the walk status that stopped reading."""
        k = self.err_kind
        off = self.err_off
        a = self.err_a
        b = self.err_b
        where = f"at byte offset {off}"
        if k == E_TRUNC_HEADER or k == E_TRUNC_BODY:
            return CaptureError(self._truncation_warning())
        if k == E_RECORD_LEN:
            what = f"record length {a} {where} exceeds the {PCAP_MAX_RECORD}-byte limit (damaged file?)"
        elif k == E_BLOCK_LEN:
            what = (f"pcapng block length {a} {where} is invalid (must be 12..{PCAPNG_MAX_BLOCK} "
                    f"and a multiple of 4; damaged file?)")
        elif k == E_BLOCK_TRAILER:
            what = f"pcapng block {where} has length {a} but its trailing length says {b}"
        elif k == E_BOM:
            what = f"pcapng section header {where} has an unknown byte-order mark 0x{a:08x}"
        elif k == E_VERSION:
            what = f"pcapng section header {where} has unsupported version {a}.{b}"
        elif k == E_SHORT_BLOCK:
            what = f"pcapng block of type {a} {where} is too short ({b} bytes) for its fields"
        elif k == E_CAPLEN:
            what = f"pcapng packet block {where} says {a} captured bytes but holds only {b}"
        elif k == E_TOO_MANY_IFACES:
            what = f"pcapng section describes more than {PCAPNG_MAX_IFACES} interfaces ({where})"
        elif k == E_MMAP:
            what = f"cannot map the file {where}"
        elif k == E_NOMEM:
            what = f"out of memory for the interface table {where}"
        elif k == E_READ:
            what = f"cannot read {where}: {os.strerror(self.read_errno)}"
        else:
            what = f"unreadable {where}"
        return CaptureError(f"{self.path}: {what}")

    def _truncation_warning(self):
        if self.err_kind == E_TRUNC_HEADER:
            detail = f"{self.err_a} bytes left, less than a record/block header"
        else:
            detail = f"{self.err_a} bytes left of a {self.err_b}-byte record/block"
        return (f"{self.path}: the file ends inside a packet record at byte offset {self.err_off} "
                f"({detail}); the {self.packets} complete packets before it were read")

    cdef uint16_t _ifindex_port(self, uint32_t ifindex) noexcept nogil:
        """The port `ifindex_ports` gives an interface index (binary search), or NO_PORT."""
        cdef uint32_t lo = 0, hi = self.n_ifx, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if self.ifx_index[mid] < ifindex:
                lo = mid + 1
            else:
                hi = mid
        if lo < self.n_ifx and self.ifx_index[lo] == ifindex:
            return self.ifx_port[lo]
        return NO_PORT

    cdef int _direction(self, const uint8_t* data, uint32_t caplen, iface_t* f, uint32_t epb_flags,
                        uint16_t* port_out, uint16_t* reason_out) noexcept nogil:
        """A packet's ingress port and rx drop reason (0: none) from its direction, when the
        capture recorded it (Linux cooked packet type, pcapng epb_flags). Returns 1: the
        node sent it, 2: addressed to another host, 0: neither. Reads only the reader's
        settings (the sharded replay's workers call it at once, kdp/_fast/chunk.pyx)."""
        cdef uint16_t port = f.port
        cdef uint16_t by_index
        cdef uint16_t reason = 0
        cdef int ptype = -1
        cdef int kind = 0
        if f.linktype == LT_LINUX_SLL and caplen >= 16:
            ptype = (<int>data[0] << 8) | data[1]
        elif f.linktype == LT_LINUX_SLL2 and caplen >= 20:
            ptype = data[10]
            if self.n_ifx:
                by_index = self._ifindex_port(be32(data + 4))
                if by_index != NO_PORT:
                    port = by_index
        if ptype == SLL_OUTGOING or ptype == SLL_LOOPBACK or \
                (epb_flags & EPB_DIR_MASK) == EPB_DIR_OUTBOUND:
            # the node sent it: as input (all_directions) it entered somewhere else
            kind = 1
            port = NO_PORT
            if not self.all_directions:
                reason = R_CAPTURED_OUTGOING
        elif ptype == SLL_OTHERHOST or \
                ((epb_flags >> EPB_RECEPTION_SHIFT) & EPB_RECEPTION_MASK) == EPB_RECEPTION_PROMISCUOUS:
            kind = 2
            if not self.all_directions:
                reason = R_OTHERHOST
        if self.ingress != NO_PORT:
            port = self.ingress
        port_out[0] = port
        reason_out[0] = reason
        return kind

    cdef int _deliver(self, Batch b, const uint8_t* data, uint32_t caplen, uint32_t wire_len,
                      uint64_t ts_ns, iface_t* f, uint32_t epb_flags) noexcept nogil:
        """Push one packet: its ingress port, and its direction when the capture recorded it
        (Linux cooked packet type, pcapng epb_flags). See the module docstring."""
        cdef uint16_t port, reason
        cdef int kind = self._direction(data, caplen, f, epb_flags, &port, &reason)
        if kind == 1:
            self.outgoing += 1
        elif kind == 2:
            self.otherhost += 1
        b.push(data, caplen, wire_len, ts_ns, f.linktype, port)
        rx_drop(&b.m[b.count - 1], f.linktype, reason)
        if not linktype_supported(f.linktype):
            self.unsupported += 1
        self.packets += 1
        self.last_ts = ts_ns
        return 0

    # ------------------------------------------------- a sharded replay's chunks (classic pcap)

    @property
    def classic_file(self):
        """A classic pcap file (not a stream): what index() reads."""
        return self.fmt == FMT_PCAP and not self.stream

    cdef uint64_t _record_ts(self, const uint8_t* rec) noexcept nogil:
        return <uint64_t>rd32(rec, self.swap) * NS + <uint64_t>rd32(rec + 4, self.swap) * \
            (1 if self.nsec else 1000)

    cdef int push_record(self, Batch b, const uint8_t* rec) noexcept nogil:
        """Push the classic pcap record at `rec` (index()'s window) into b as fill() would
        (without counting it: index() did). Returns -1 when b is full. Reads only the
        reader's settings: the workers of a sharded replay call it at once."""
        cdef iface_t* f = &self.ifaces[0]
        cdef uint32_t incl = rd32(rec + 8, self.swap)
        cdef uint16_t port, reason
        self._direction(rec + 16, incl, f, 0, &port, &reason)
        if b.push(rec + 16, incl, rd32(rec + 12, self.swap), self._record_ts(rec), f.linktype, port) < 0:
            return -1
        rx_drop(&b.m[b.count - 1], f.linktype, reason)
        return 0

    cdef const uint8_t* meta_record(self, pkt_meta_t* p, const uint8_t* rec) noexcept nogil:
        """The metadata push_record would give the record at `rec`, without copying its
        bytes (the frame stays where it is: returned; p.off is 0). For the shard key."""
        cdef iface_t* f = &self.ifaces[0]
        cdef uint32_t incl = rd32(rec + 8, self.swap)
        cdef uint32_t wire = rd32(rec + 12, self.swap)
        cdef uint16_t port, reason
        self._direction(rec + 16, incl, f, 0, &port, &reason)
        meta_reset(p)
        p.off = 0
        p.len = incl if incl <= MAX_FRAME else MAX_FRAME
        p.wire_len = wire if wire >= incl else incl
        p.ts_ns = self._record_ts(rec)
        p.linktype = f.linktype
        p.in_port = port
        if incl > MAX_FRAME:
            drop(p, ST_RX, R_OVERSIZE_FRAME)
        rx_drop(p, f.linktype, reason)
        return rec + 16

    cdef const uint8_t* record_data(self, const uint8_t* rec, uint32_t* caplen, uint64_t* ts) noexcept nogil:
        """The frame of the classic pcap record at `rec` (index()'s window), its captured
        length and its timestamp; nothing copied, nothing counted."""
        caplen[0] = rd32(rec + 8, self.swap)
        ts[0] = self._record_ts(rec)
        return rec + 16

    cdef const uint8_t* window(self) noexcept nogil:
        """The mapped bytes index()'s offsets are relative to."""
        return self.win

    cdef Py_ssize_t index_c(self, uint64_t* ov, Py_ssize_t cap, Py_ssize_t batch, int* status) noexcept nogil:
        """index() without the GIL (a worker indexes the next chunk while the others write
        this one's records): at most cap - cap % batch offsets into ov, the walk's status
        into *status (WS_BATCH_FULL: more to come; -1: a batch larger than the window);
        index_end(status, count) then does what needs the GIL. The caller checked that the
        reader is not done and has no pending error."""
        cdef Py_ssize_t k = 0
        cdef uint64_t pos, rem, end, q
        cdef const uint8_t* p
        cdef uint32_t incl
        cdef int st = WS_BATCH_FULL
        cdef uint16_t port, reason
        cdef int kind
        cdef iface_t* f = &self.ifaces[0]
        cdef bint supported = linktype_supported(f.linktype)
        # the counts at the last whole batch (a chunk that stops inside one goes back there)
        cdef uint64_t out_b, other_b, unsup_b, ts_b, pos_b
        cdef uint64_t outgoing = self.outgoing, otherhost = self.otherhost, unsup = self.unsupported
        cdef uint64_t last_ts = self.last_ts
        cap -= cap % batch
        pos = self.pos
        # the chunk's records all in one window: it starts at the chunk's first record
        # (remapped there when less than an eighth of a window is left of it)
        rem = self.size - pos if pos < self.size else 0
        if rem > MAP_WINDOW // 8:
            rem = MAP_WINDOW // 8
        if rem and self._map(pos, rem, &p) < 0:
            st = self._fail(WS_IO_ERROR, E_MMAP, pos, 0, 0)
        end = self.win_off + self.win_len
        out_b, other_b, unsup_b, ts_b, pos_b = outgoing, otherhost, unsup, last_ts, pos
        while st == WS_BATCH_FULL and k < cap:
            if k % batch == 0:
                out_b, other_b, unsup_b, ts_b, pos_b = outgoing, otherhost, unsup, last_ts, pos
            rem = self.size - pos if pos < self.size else 0
            if rem == 0:
                st = WS_EOF
                break
            if rem < 16:
                st = self._fail(WS_TRUNCATED, E_TRUNC_HEADER, pos, rem, 16)
                break
            if pos + 16 > end:
                break                       # past the window: the next chunk maps it
            p = self.win + (pos - self.win_off)
            incl = rd32(p + 8, self.swap)
            if incl > PCAP_MAX_RECORD:
                st = self._fail(WS_CORRUPT, E_RECORD_LEN, pos, incl, 0)
                break
            if rem < 16 + <uint64_t>incl:
                st = self._fail(WS_TRUNCATED, E_TRUNC_BODY, pos, rem, 16 + <uint64_t>incl)
                break
            if pos + 16 + incl > end:
                break
            # the records a few KiB ahead, whole: the header chain is a load after a
            # load, and the workers key and copy the bodies next
            for q in range(0, 16 + incl if incl < PREFETCH_AHEAD else PREFETCH_AHEAD, 64):
                kdp_prefetch(p + PREFETCH_AHEAD + q)
            ov[k] = pos - self.win_off
            k += 1
            pos += 16 + <uint64_t>incl
            # counted as _deliver counts
            kind = self._direction(p + 16, incl, f, 0, &port, &reason)
            if kind == 1:
                outgoing += 1
            elif kind == 2:
                otherhost += 1
            if not supported:
                unsup += 1
            last_ts = self._record_ts(p)
        if st == WS_BATCH_FULL and k % batch:
            # the window ended inside a batch: those records go in the next chunk
            k -= k % batch
            outgoing, otherhost, unsup, last_ts, pos = out_b, other_b, unsup_b, ts_b, pos_b
        if st == WS_BATCH_FULL and k == 0 and cap > 0:
            st = -1                         # a batch larger than the window
        self.outgoing = outgoing
        self.otherhost = otherhost
        self.unsupported = unsup
        self.last_ts = last_ts
        self.pos = pos
        self.packets += k
        status[0] = st
        return k

    def index(self, offsets, Py_ssize_t batch):
        """A sharded replay's chunk (classic pcap files): the offsets of the next records
        (at most len(offsets)), relative to window(), each record whole in the mapped
        window; counted as fill() counts them. A chunk ends at a multiple of `batch`
        records (so that the batches fill() would make stay whole) unless the file ends
        (or its damage starts) there. Returns how many (0: the end; a damaged file's
        error is raised by the call after its last packets, as fill() does)."""
        cdef uint64_t[::1] ov = offsets
        cdef Py_ssize_t k
        cdef int st
        if not self.classic_file:
            raise ValueError("index() reads classic pcap files")
        if batch < 1 or ov.shape[0] < batch:
            raise ValueError("offsets must hold at least one batch")
        self._raise_pending()
        if self.done:
            return 0
        with nogil:
            k = self.index_c(&ov[0], ov.shape[0], batch, &st)
        return self.index_end(st, k)

    def _raise_pending(self):
        """Raise the damage a call before found after its last packets (fill, index)."""
        if self.pending_error is not None:
            err = self.pending_error
            self.pending_error = None
            raise err

    def index_end(self, int st, Py_ssize_t k):
        """The end of an index_c: `k` (its count), or the end of the file (a truncated last
        record: a warning), or its damage (raised now when no record came before it, else
        by the next index()). Returns k."""
        if st == -1:
            raise ValueError("a batch of records larger than the reader's window")
        if st == WS_BATCH_FULL:
            return k
        # as fill(): the end, a truncated last record (a warning) or damage (raised
        # now when nothing came before it, else by the next call)
        self.done = True
        if st == WS_TRUNCATED:
            self.warnings.append(self._truncation_warning())
        elif st != WS_EOF:
            err = self._error()
            if k == 0:
                self._end_warnings()
                raise err
            self.pending_error = err
        self._end_warnings()
        return k

    cdef int _walk(self, Batch b) noexcept nogil:
        if self.fmt == FMT_PCAP:
            return self._walk_pcap(b)
        return self._walk_pcapng(b)

    cdef int _walk_pcap(self, Batch b) noexcept nogil:
        cdef const uint8_t* p
        cdef uint64_t rem, ts
        cdef int64_t got
        cdef uint32_t sec, frac, incl, orig
        cdef bint swap = self.swap
        cdef iface_t* f = &self.ifaces[0]
        cdef uint64_t frac_mul = 1 if self.nsec else 1000
        cdef uint32_t k
        while b.count < b.capacity:
            got = self._need(self.pos, 16)
            if got < 0:
                return WS_EINTR if got == -2 else self._fail(WS_IO_ERROR, E_READ, self.pos, 0, 0)
            rem = <uint64_t>got
            if rem == 0:
                return WS_EOF
            if rem < 16:
                return self._fail(WS_TRUNCATED, E_TRUNC_HEADER, self.pos, rem, 16)
            if self._map(self.pos, 16, &p) < 0:
                return self._fail(WS_IO_ERROR, E_MMAP, self.pos, 0, 0)
            incl = rd32(p + 8, swap)
            if incl > PCAP_MAX_RECORD:
                return self._fail(WS_CORRUPT, E_RECORD_LEN, self.pos, incl, 0)
            got = self._need(self.pos, 16 + <uint64_t>incl)
            if got < 0:
                return WS_EINTR if got == -2 else self._fail(WS_IO_ERROR, E_READ, self.pos, 0, 0)
            if <uint64_t>got < 16 + <uint64_t>incl:
                return self._fail(WS_TRUNCATED, E_TRUNC_BODY, self.pos, <uint64_t>got, 16 + <uint64_t>incl)
            if self._map(self.pos, 16 + <uint64_t>incl, &p) < 0:
                return self._fail(WS_IO_ERROR, E_MMAP, self.pos, 0, 0)
            sec = rd32(p, swap)
            frac = rd32(p + 4, swap)
            orig = rd32(p + 12, swap)
            ts = <uint64_t>sec * NS + <uint64_t>frac * frac_mul
            # the records a few KiB ahead: their lines come from memory while this one is
            # copied (a prefetch past the mapped window does not fault)
            for k in range(0, 16 + incl if incl < PREFETCH_AHEAD else PREFETCH_AHEAD, 64):
                kdp_prefetch(p + PREFETCH_AHEAD + k)
            self._deliver(b, p + 16, incl, orig, ts, f, 0)
            self.pos += 16 + <uint64_t>incl
        return WS_BATCH_FULL

    cdef int _read_shb(self, uint64_t off) noexcept nogil:
        """Start a section at `off`. Returns -1 to go on, or a WalkStatus."""
        cdef const uint8_t* p
        cdef uint32_t bom, blen
        cdef int64_t got = self._need(off, 12)
        cdef uint64_t rem
        if got < 0:
            return WS_EINTR if got == -2 else self._fail(WS_IO_ERROR, E_READ, off, 0, 0)
        rem = <uint64_t>got
        if rem < 12:
            return self._fail(WS_TRUNCATED, E_TRUNC_HEADER, off, rem, 12)
        if self._map(off, 12, &p) < 0:
            return self._fail(WS_IO_ERROR, E_MMAP, off, 0, 0)
        memcpy(&bom, p + 8, 4)
        if bom == NG_BOM:
            self.swap = False
        elif bom == NG_BOM_SWAPPED:
            self.swap = True
        else:
            return self._fail(WS_CORRUPT, E_BOM, off + 8, bom, 0)
        blen = rd32(p + 4, self.swap)
        if blen < 28 or blen % 4 != 0 or blen > PCAPNG_MAX_BLOCK:
            return self._fail(WS_CORRUPT, E_BLOCK_LEN, off, blen, 0)
        got = self._need(off, blen)
        if got < 0:
            return WS_EINTR if got == -2 else self._fail(WS_IO_ERROR, E_READ, off, 0, 0)
        if <uint64_t>got < blen:
            return self._fail(WS_TRUNCATED, E_TRUNC_BODY, off, <uint64_t>got, blen)
        if self._map(off, blen, &p) < 0:
            return self._fail(WS_IO_ERROR, E_MMAP, off, 0, 0)
        if rd16(p + 12, self.swap) != 1:
            return self._fail(WS_CORRUPT, E_VERSION, off + 12, rd16(p + 12, self.swap),
                              rd16(p + 14, self.swap))
        if rd32(p + blen - 4, self.swap) != blen:
            return self._fail(WS_CORRUPT, E_BLOCK_TRAILER, off, blen, rd32(p + blen - 4, self.swap))
        self.n_if = 0
        self.section += 1
        self.pos = off + blen
        return -1

    cdef int _read_idb(self, const uint8_t* p, uint32_t blen) noexcept nogil:
        """Append the interface described by the IDB at p. Returns -1 or a WalkStatus."""
        cdef bint swap = self.swap
        cdef iface_t* f
        cdef iface_t* grown
        cdef const uint8_t* q
        cdef const uint8_t* end
        cdef uint16_t code, olen
        cdef uint64_t secs
        if blen < 20:
            return self._fail(WS_CORRUPT, E_SHORT_BLOCK, self.pos, NG_IDB, blen)
        if self.n_if >= PCAPNG_MAX_IFACES:
            return self._fail(WS_CORRUPT, E_TOO_MANY_IFACES, self.pos, 0, 0)
        if self.n_if >= self.cap_if:
            grown = <iface_t*>realloc(self.ifaces, 2 * self.cap_if * sizeof(iface_t))
            if grown == NULL:
                return self._fail(WS_IO_ERROR, E_NOMEM, self.pos, 0, 0)
            self.ifaces = grown
            self.cap_if *= 2
        f = &self.ifaces[self.n_if]
        memset(f, 0, sizeof(iface_t))
        f.linktype = rd16(p + 8, swap)
        f.snaplen = rd32(p + 12, swap)
        f.port = self.ingress
        iface_set_tsresol(f, 6)
        q = p + 16
        end = p + blen - 4
        while end - q >= 4:
            code = rd16(q, swap)
            olen = rd16(q + 2, swap)
            if code == 0 or olen > end - q - 4:
                break       # end of options, or a malformed option: ignore the rest
            if code == 2 and olen > 0:
                f.has_name = 1
                f.name_len = olen
                memcpy(self.name_buf, q + 4, olen)     # read by _register_iface next
            elif code == 9 and olen >= 1:
                iface_set_tsresol(f, q[4])
            elif code == 14 and olen >= 8:
                secs = rd64(q + 4, swap)
                f.tsoffset_ns = <int64_t>(secs * NS)
            q += 4 + ((<uint32_t>olen + 3) & ~3u)
        self.n_if += 1
        return -1

    cdef int _walk_pcapng(self, Batch b) noexcept nogil:
        cdef const uint8_t* p
        cdef uint64_t rem, ts
        cdef int64_t got
        cdef uint32_t btype, blen, ifid, caplen, olen
        cdef uint32_t k
        cdef int st
        cdef iface_t* f
        while b.count < b.capacity:
            got = self._need(self.pos, 12)
            if got < 0:
                return WS_EINTR if got == -2 else self._fail(WS_IO_ERROR, E_READ, self.pos, 0, 0)
            rem = <uint64_t>got
            if rem == 0:
                return WS_EOF
            if rem < 12:
                return self._fail(WS_TRUNCATED, E_TRUNC_HEADER, self.pos, rem, 12)
            if self._map(self.pos, 8, &p) < 0:
                return self._fail(WS_IO_ERROR, E_MMAP, self.pos, 0, 0)
            btype = rd32(p, self.swap)
            if btype == NG_SHB:
                st = self._read_shb(self.pos)
                if st >= 0:
                    return st
                continue
            blen = rd32(p + 4, self.swap)
            if blen < 12 or blen % 4 != 0 or blen > PCAPNG_MAX_BLOCK:
                return self._fail(WS_CORRUPT, E_BLOCK_LEN, self.pos, blen, 0)
            got = self._need(self.pos, blen)
            if got < 0:
                return WS_EINTR if got == -2 else self._fail(WS_IO_ERROR, E_READ, self.pos, 0, 0)
            if <uint64_t>got < blen:
                return self._fail(WS_TRUNCATED, E_TRUNC_BODY, self.pos, <uint64_t>got, blen)
            if self._map(self.pos, blen, &p) < 0:
                return self._fail(WS_IO_ERROR, E_MMAP, self.pos, 0, 0)
            if rd32(p + blen - 4, self.swap) != blen:
                return self._fail(WS_CORRUPT, E_BLOCK_TRAILER, self.pos, blen,
                                  rd32(p + blen - 4, self.swap))
            for k in range(0, blen if blen < PREFETCH_AHEAD else PREFETCH_AHEAD, 64):   # as in _walk_pcap
                kdp_prefetch(p + PREFETCH_AHEAD + k)
            if btype == NG_EPB or btype == NG_PB:
                # the obsolete Packet Block is an EPB with a 16-bit interface id
                # (and a drops count in the other 16 bits)
                if blen < 32:
                    return self._fail(WS_CORRUPT, E_SHORT_BLOCK, self.pos, btype, blen)
                caplen = rd32(p + 20, self.swap)
                if caplen > blen - 32:
                    return self._fail(WS_CORRUPT, E_CAPLEN, self.pos, caplen, blen - 32)
                ifid = rd32(p + 8, self.swap) if btype == NG_EPB else rd16(p + 8, self.swap)
                if ifid >= self.n_if:
                    self.skipped += 1
                else:
                    f = &self.ifaces[ifid]
                    ts = (<uint64_t>rd32(p + 12, self.swap) << 32) | rd32(p + 16, self.swap)
                    self._deliver(b, p + 28, caplen, rd32(p + 24, self.swap), ticks_to_ns(f, ts), f,
                                  epb_flags_of(p + 28 + ((caplen + 3) & ~3u), p + blen - 4, self.swap))
            elif btype == NG_SPB:
                if blen < 16:
                    return self._fail(WS_CORRUPT, E_SHORT_BLOCK, self.pos, btype, blen)
                if self.n_if == 0:
                    self.skipped += 1
                else:
                    f = &self.ifaces[0]
                    olen = rd32(p + 8, self.swap)
                    caplen = olen
                    if caplen > blen - 16:
                        caplen = blen - 16
                    if f.snaplen != 0 and caplen > f.snaplen:
                        caplen = f.snaplen
                    # an SPB has no timestamp: it shares the previous packet's
                    self._deliver(b, p + 12, caplen, olen, self.last_ts, f, 0)
            elif btype == NG_IDB:
                st = self._read_idb(p, blen)
                if st >= 0:
                    return st
                self.pos += blen
                return WS_NEW_IFACE
            else:
                self.blocks_skipped += 1
            self.pos += blen
        return WS_BATCH_FULL

    def _register_iface(self):
        """With the GIL: name the interface the walk just added and give it a port."""
        cdef uint32_t i = self.n_if - 1
        cdef iface_t* f = &self.ifaces[i]
        name = None
        if f.has_name:
            raw = (<char*>self.name_buf)[:f.name_len]
            name = raw.split(b"\0", 1)[0].decode("utf-8", "replace") or None
        if name is not None and self.ingress == NO_PORT:
            port = self._port_of(name)
            f.port = NO_PORT if port is None else <uint16_t>port
        self.interfaces_seen += 1
        if len(self.interfaces) < MAX_INTERFACE_INFO:
            self.interfaces.append(self._iface_info(i, name))

    def _port_of(self, name):
        """The port of an interface name (None: none). Names are never released, so a
        capture with more distinct names than the port table holds leaves the rest without
        a port (counted in `unported`; their packets are classified by source address)."""
        lookup = getattr(self.ports, "port_of_interface", None)
        try:
            return lookup(name) if lookup is not None else self.ports.id_of(name)
        except ValueError:          # the port table is full
            self.unported += 1
            return None

    def fill(self, Batch batch not None):
        """Clear `batch` and fill it with the next packets; return how many (0: end)."""
        cdef int st
        batch.count = 0
        batch.used = 0
        self._raise_pending()
        if self.done:
            return 0
        while True:
            with nogil:
                st = self._walk(batch)
            if st == WS_NEW_IFACE:
                self._register_iface()
                continue
            if st == WS_EINTR:
                PyErr_CheckSignals()        # raises KeyboardInterrupt on Ctrl-C
                continue
            break
        if st == WS_BATCH_FULL:
            return batch.count
        self.done = True
        if st == WS_TRUNCATED:
            self.warnings.append(self._truncation_warning())
        elif st != WS_EOF:
            err = self._error()
            if batch.count == 0:
                self._end_warnings()
                raise err
            self.pending_error = err
        self._end_warnings()
        if self.win != NULL:
            munmap(<void*>self.win, self.win_len)
            self.win = NULL
        return batch.count

    def _end_warnings(self):
        if self.skipped:
            self.warnings.append(f"{self.path}: {self.skipped} packets referred to an interface "
                                 f"no interface description block had described; skipped")
        if self.unported:
            self.warnings.append(f"{self.path}: {self.unported} interface descriptions named a new "
                                 f"interface after the port table was full ({NO_PORT} ports); "
                                 f"their packets got an ingress port by source address")

    @property
    def format(self):
        """'pcap' or 'pcapng'."""
        return "pcap" if self.fmt == FMT_PCAP else "pcapng"

    @property
    def position(self):
        """Bytes of the file consumed so far (for a progress bar, against `size`)."""
        return self.pos

    @property
    def bytes_read(self):
        return self.pos

    @property
    def byte_order(self):
        """Byte order of the current section ('little' or 'big')."""
        import sys
        if self.swap:
            return "big" if sys.byteorder == "little" else "little"
        return sys.byteorder

    @property
    def linktype(self):
        """The link type of a classic pcap file (of the first interface for pcapng; None
        before any)."""
        if self.interfaces:
            return self.interfaces[0]["linktype"]
        return None
