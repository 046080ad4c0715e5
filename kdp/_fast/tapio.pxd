# Live ports: the per-frame I/O of `kdp attach` on TAP file descriptors (kdp/_fast/tapio.pyx).
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from kdp._fast.packet cimport Batch, pkt_meta_t
from kdp._fast.neigh cimport Neighbours
from kdp._fast.tap_uring cimport kdp_uring_t

cdef extern from "<pthread.h>" nogil:
    ctypedef unsigned long pthread_t
    ctypedef struct pthread_mutex_t:
        pass
    ctypedef struct pthread_cond_t:
        pass

cdef struct tx_port_t:
    # what a write needs, in C (the writer thread holds no Python object): TapIO's own arrays
    const int* fd_of_port
    uint64_t* ctr
    uint64_t* gso_unsendable
    kdp_uring_t* ring                         # batched writes through io_uring; NULL: a writev a frame

cdef struct writer_t:
    # the native writer thread's hand-off: one batch at a time, guarded by mu
    pthread_t thread
    pthread_mutex_t mu
    pthread_cond_t job_cv                     # the thread waits here for a batch (or stop)
    pthread_cond_t done_cv                    # the loop waits here for the batch to be written
    int state                                 # W_IDLE, W_PENDING, W_RUNNING
    bint stop
    bint running                              # the thread exists (joined at stop)
    tx_port_t tx
    uint8_t* buf                              # the batch being written (the caller keeps it alive)
    pkt_meta_t* m
    Py_ssize_t count
    const uint16_t* dest
    Py_ssize_t sent

cdef enum:
    VNET_HDR_LEN = 12       # struct virtio_net_hdr_mrg_rxbuf (TUNSETVNETHDRSZ 12)
    MAX_TAP_PORTS = 1024    # port ids 0..1023

cdef class TapIO:
    cdef int fds[MAX_TAP_PORTS]               # the attached fds, in attach order
    cdef uint16_t ports[MAX_TAP_PORTS]        # port id of each fd
    cdef int fd_of_port[MAX_TAP_PORTS]        # port id -> fd (-1: not attached)
    cdef uint8_t hold_port[MAX_TAP_PORTS]     # 1: frames out this port wait for their neighbour
    cdef Py_ssize_t n
    cdef Py_ssize_t next_fd                   # where the next read round starts (fairness)
    cdef uint8_t ready[MAX_TAP_PORTS]         # per fd index: the last wait found it ready
    cdef bint ready_known                     # a wait found ports ready since the last read: ask only those
    cdef object _ctr                          # numpy uint64 [MAX_TAP_PORTS, 5]
    cdef uint64_t* ctr                        # per port id: rx, rx bytes, tx, tx bytes, tx errors
    cdef uint8_t own_mac[6]                   # kdp's side of every port
    cdef uint8_t host_mac[6]                  # the host port's kernel side (local delivery goes to it)
    cdef bint has_host_mac
    cdef Neighbours neigh                     # the pipeline's: is a held frame's neighbour known?
    cdef readonly object slow                 # numpy int32: indices send() left to Python (ARP, ND)
    cdef readonly object held                 # numpy int32: indices held for an unknown neighbour
    cdef readonly object sent_port            # numpy uint16 per index: port written to (recording)
    cdef object _dest                         # numpy uint16 per index: where prepare() sends each frame
    cdef object _dest_extra                   # ... and each frame of the pipeline's `extra`
    cdef uint16_t* dest_p[2]                  # the batch's, extra's
    cdef int* slow_p
    cdef int* held_p
    cdef uint16_t* sent_p
    cdef readonly Py_ssize_t n_slow, n_held
    cdef public bint recording                # fill sent_port
    cdef readonly uint64_t csum_completed     # frames whose partial checksum kdp completed on reading
    cdef readonly uint64_t gso_frames         # TCP super-frames read whole (TSO)
    cdef readonly uint64_t gso_refused        # super-frames of a type kdp never offered: dropped, counted
    cdef readonly uint64_t gso_unsendable     # super-frames a stage left without their TCP header: not written
    cdef readonly uint64_t reads_empty        # readv calls that found no frame (one per idle port per read_into)
    cdef readonly uint64_t no_device          # transmitted to a port without a device

    cdef kdp_uring_t ring                     # use_io_uring: the batches' writes, one system call a chunk
    cdef writer_t w                           # the native writer thread (start_writer)
    cdef object _job                          # the Batch it is writing (kept alive until finish)
    cdef readonly uint64_t handoffs           # batches handed to the writer thread

    cdef Py_ssize_t _read(self, Batch b, uint64_t ts_ns) noexcept nogil
    cdef Py_ssize_t _prepare(self, Batch b, uint16_t* dest, bint main) noexcept nogil
    cdef Py_ssize_t _transmit(self, Batch b, const uint16_t* dest, bint record) noexcept nogil
    cdef bint _write(self, uint16_t port, const uint8_t* hdr, const uint8_t* frame, uint32_t n) noexcept nogil
    cdef void _end_writer(self) noexcept nogil
