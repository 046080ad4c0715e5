# Capture files: classic pcap and pcapng, read into batches.
#
# The reader walks records under nogil over a sliding mmap window of the file
# (bounded memory whatever the file size) and copies each frame into a Batch
# with Batch.push. The writer is kdp/io/pcapwrite.pxd.

cimport cython
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, int32_t
from kdp._fast.packet cimport Batch, pkt_meta_t

cdef enum:
    PCAP_MAX_RECORD = 262144        # largest classic record kdp accepts (libpcap's limit)
    PCAPNG_MAX_BLOCK = 16777216     # largest pcapng block kdp accepts (16 MiB)
    PCAPNG_MAX_IFACES = 65536       # interfaces per section
    MAP_WINDOW = 67108864           # bytes of the file mapped at once (64 MiB)

# magics as read in host order
cdef enum:
    PCAP_USEC = 0xA1B2C3D4
    PCAP_USEC_SWAPPED = 0xD4C3B2A1
    PCAP_NSEC = 0xA1B23C4D
    PCAP_NSEC_SWAPPED = 0x4D3CB2A1
    NG_SHB = 0x0A0D0D0A
    NG_BOM = 0x1A2B3C4D
    NG_BOM_SWAPPED = 0x4D3C2B1A
    NG_IDB = 1
    NG_PB = 2
    NG_SPB = 3
    NG_EPB = 6

# file formats
cdef enum:
    FMT_PCAP = 1
    FMT_PCAPNG = 2

# what one walk over the file stopped at
cdef enum WalkStatus:
    WS_BATCH_FULL = 0       # the batch is full; call again
    WS_EOF = 1              # clean end of file
    WS_TRUNCATED = 2        # the file ends inside a record: everything before it was delivered
    WS_CORRUPT = 3          # a header that cannot be right (length, magic, version)
    WS_NEW_IFACE = 4        # a pcapng IDB was read: its name needs a port id (GIL)
    WS_IO_ERROR = 5         # mmap failed, or read(2) failed on a stream
    WS_EINTR = 6            # a read on a stream was interrupted by a signal: check it, go on

# One pcapng interface (or the single "interface" of a classic pcap file).
ctypedef struct iface_t:
    uint16_t linktype
    uint16_t port           # ingress port id of its packets (NO_PORT: none)
    uint32_t snaplen
    int32_t tsshift         # >= 0: resolution 2^-tsshift s; -1: power of ten
    uint32_t _pad
    uint64_t tsmul          # power of ten <= ns: ticks * tsmul
    uint64_t tsdiv          # power of ten finer than ns: ticks / tsdiv (0: always 0)
    int64_t tsoffset_ns     # if_tsoffset, in nanoseconds
    uint8_t tsresol         # the raw if_tsresol byte
    uint8_t has_name        # an if_name option was present (copied to the reader's name_buf)
    uint16_t name_len       # bytes of the if_name value
    uint32_t _pad2


@cython.final                       # its per-record methods are called directly (and inlined)
cdef class CaptureReader:
    cdef readonly object path
    cdef int fd
    cdef readonly uint64_t size             # bytes in the file (a stream: bytes read so far)
    cdef readonly bint stream               # reading a pipe (standard input, a FIFO), not a file
    cdef uint8_t* sbuf                      # stream: bytes [sbuf_off, sbuf_off + sbuf_len)
    cdef uint64_t sbuf_cap
    cdef uint64_t sbuf_off
    cdef uint64_t sbuf_len
    cdef bint eof                           # stream: read(2) returned 0
    cdef int read_errno
    cdef uint8_t* name_buf                  # the if_name of the IDB just read
    cdef uint32_t* ifx_index                # SLL2 interface index -> port, sorted by index
    cdef uint16_t* ifx_port
    cdef uint32_t n_ifx
    cdef readonly bint all_directions       # outgoing / other-host packets are input too
    cdef readonly uint64_t outgoing         # packets the capture saw leaving (not input)
    cdef readonly uint64_t otherhost        # packets the capture saw addressed to another host
    cdef readonly uint64_t unported         # interfaces whose name got no port (port table full)
    cdef readonly uint64_t interfaces_seen  # interface descriptions read (`interfaces` keeps the first 4096)
    cdef uint64_t pos                       # offset of the next record / block
    cdef const uint8_t* win                 # mapped window
    cdef uint64_t win_off
    cdef uint64_t win_len
    cdef int fmt
    cdef bint swap                          # current section is the other byte order
    cdef bint nsec                          # classic: nanosecond magic
    cdef iface_t* ifaces                    # pcapng: this section's interfaces; classic: one
    cdef uint32_t n_if
    cdef uint32_t cap_if
    cdef uint32_t section
    cdef uint16_t ingress                   # fixed ingress port (NO_PORT: none)
    cdef uint64_t last_ts
    cdef readonly uint64_t packets          # packets delivered so far
    cdef readonly uint64_t skipped          # records skipped (counted, e.g. unknown interface)
    cdef readonly uint64_t unsupported      # packets of a link type the pipeline cannot parse
    cdef readonly uint64_t blocks_skipped   # pcapng blocks of other types (NRB, ISB, custom, ...)
    cdef int status                         # WalkStatus of the last walk
    cdef uint64_t err_off                   # where it stopped
    cdef uint64_t err_a                     # detail values for the message
    cdef uint64_t err_b
    cdef int err_kind
    cdef readonly bint done
    cdef object pending_error
    cdef readonly list warnings
    cdef readonly list interfaces           # Python view of every interface seen
    cdef readonly object ports

    cdef int _map(self, uint64_t off, uint64_t need, const uint8_t** out) noexcept nogil
    cdef int64_t _need(self, uint64_t off, uint64_t n) noexcept nogil
    cdef uint16_t _ifindex_port(self, uint32_t ifindex) noexcept nogil
    cdef int _walk(self, Batch b) noexcept nogil
    cdef int _fail(self, int status, int kind, uint64_t off, uint64_t a, uint64_t b) noexcept nogil
    cdef int _walk_pcap(self, Batch b) noexcept nogil
    cdef int _walk_pcapng(self, Batch b) noexcept nogil
    cdef int _read_shb(self, uint64_t off) noexcept nogil
    cdef int _read_idb(self, const uint8_t* p, uint32_t blen) noexcept nogil
    cdef int _deliver(self, Batch b, const uint8_t* data, uint32_t caplen, uint32_t wire_len,
                      uint64_t ts_ns, iface_t* f, uint32_t epb_flags) noexcept nogil
    cdef int _direction(self, const uint8_t* data, uint32_t caplen, iface_t* f, uint32_t epb_flags,
                        uint16_t* port_out, uint16_t* reason_out) noexcept nogil
    cdef uint64_t _record_ts(self, const uint8_t* rec) noexcept nogil
    # a sharded replay's chunks (index(): the records' offsets in window())
    cdef int push_record(self, Batch b, const uint8_t* rec) noexcept nogil
    cdef const uint8_t* meta_record(self, pkt_meta_t* p, const uint8_t* rec) noexcept nogil
    cdef const uint8_t* window(self) noexcept nogil
    cdef const uint8_t* record_data(self, const uint8_t* rec, uint32_t* caplen, uint64_t* ts) noexcept nogil
    cdef Py_ssize_t index_c(self, uint64_t* ov, Py_ssize_t cap, Py_ssize_t batch, int* status) noexcept nogil

