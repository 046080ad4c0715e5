# cython: boundscheck=False, wraparound=False
"""Live ports: frames read from and written to TAP devices a batch at a time, without
the GIL and without a Python object per frame (kdp attach's I/O).

Stage contract: `read_into` fills a Batch from every ready fd, one frame per fd per
round (no busy port starves the others), until the batch is full or no fd has a frame
(a port found empty is not asked again in that call: `reads_empty` counts those reads;
right after a `wait`, only the ports it found ready are asked);
each record gets in_port = the port of its fd and ts_ns = the caller's clock. `send`
writes what the pipeline transmitted: V_FORWARD, V_REJECT and V_REPLY to out_port;
V_LOCAL for the node (out_port the host port, an IP frame) to the host port's kernel
side, addressed to its MAC (`set_host_mac`: the kernel's IP input takes no frame for
another MAC). It leaves two kinds of frame to the caller, by index: `slow`, the ARP
requests and IPv6 neighbour solicitations kdp answers (rare; answered in Python), and
`held`, frames out a port marked with `hold_for_neighbours` whose destination has no
entry in the neighbour table yet (the pod did not answer kdp's ARP / solicitation:
the caller queues them, as Linux's neighbour queue does). `extra` (fragments, segments)
is written after the batch. `send` is `prepare` (where each frame goes, slow, held:
quick, with the caller's tables) then the writes (most of the time, in the kernel);
the caller may hand the writes to the native writer thread (`start_writer`, `submit`,
`finish`) while it reads and runs the next batch into another Batch (kdp/attach.py does
for large batches).

The fds are TAP devices opened with IFF_TAP | IFF_NO_PI | IFF_VNET_HDR and a 12-byte
virtio-net header (kdp/attach.py opens them) with the offloads TUN_F_CSUM, TUN_F_TSO4
and TUN_F_TSO6. So the kernel hands kdp:
  * frames whose L4 checksum is partial (VIRTIO_NET_HDR_F_NEEDS_CSUM: the field holds
    the pseudo-header sum, the rest is the receiver's work): kdp completes it as it
    reads the frame, as skb_checksum_help does, so every stage sees a full checksum and
    NAT's incremental updates stay right (`csum_completed`);
  * TCP super-frames of up to 64 KiB (gso_type TCPV4 / TCPV6, always with NEEDS_CSUM):
    kept whole, gso_size set in the metadata (`gso_frames`). The pipeline checks their
    segments against the MTU and cuts the ones bound for a tunnel (segment.pyx); the
    rest are written whole with a GSO header, their TCP checksum field set to the
    pseudo-header sum of the frame as it leaves (NAT changed the addresses), so the
    kernel behind the egress TAP segments them or hands them to its TCP whole. A
    super-frame of a type kdp never offered (UDP), or one that is not plain TCP behind
    an untagged Ethernet header with its partial checksum in the TCP header, is
    dropped and counted (`gso_refused`).
Everything else is written with a zero header: complete frames, nothing to do.

Writes: one writev a frame, or, after `use_io_uring`, a batch of URING_MIN frames or more
queued on an io_uring (tap_uring.h) and handed to the kernel in one io_uring_enter per
chunk of up to 256: the same writes in the same order, without a system call each (a TAP
write completes during the submission; io_uring reorders only writes it must retry in a
worker, which a TAP write never needs: its send buffer is unlimited, it never says EAGAIN;
the attach suite's 20,000-datagram burst arrives in order).
"""
import numpy as np
cimport numpy as cnp
from libc.string cimport memcpy, memset
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from kdp._fast.packet cimport (Batch, pkt_meta_t, meta_reset, HEADROOM, SLOT_ALIGN,
                               MAX_GSO_FRAME, LT_ETHERNET, V_FORWARD, V_REJECT, V_REPLY,
                               V_LOCAL, R_ARP, NO_PORT)
from kdp._fast.neigh cimport Neighbours
from kdp._fast.checksum cimport ld16, st16, cs_sum, cs_fold, kdp_csum16
from kdp._fast.tap_uring cimport (kdp_uring_init, kdp_uring_open, kdp_uring_close, kdp_uring_hdr,
                                  kdp_uring_writev, kdp_uring_submit, kdp_uring_wait, kdp_uring_reap)

cnp.import_array()

cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long nfds, int timeout)
    enum: POLLIN

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* ts)
    enum: CLOCK_MONOTONIC


cdef inline uint64_t _now_ns() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return <uint64_t>ts.tv_sec * 1000000000ULL + <uint64_t>ts.tv_nsec


cdef extern from "<pthread.h>" nogil:
    ctypedef struct pthread_attr_t:
        pass
    int pthread_create(pthread_t* t, const pthread_attr_t* attr, void* (*start)(void*) noexcept nogil, void* arg)
    int pthread_join(pthread_t t, void** ret)
    int pthread_mutex_init(pthread_mutex_t* m, const void* attr)
    int pthread_mutex_destroy(pthread_mutex_t* m)
    int pthread_mutex_lock(pthread_mutex_t* m)
    int pthread_mutex_unlock(pthread_mutex_t* m)
    int pthread_cond_init(pthread_cond_t* c, const void* attr)
    int pthread_cond_destroy(pthread_cond_t* c)
    int pthread_cond_wait(pthread_cond_t* c, pthread_mutex_t* m)
    int pthread_cond_signal(pthread_cond_t* c)

cdef extern from "<string.h>" nogil:
    char* strerror(int errnum)

cdef extern from "<sys/uio.h>" nogil:
    struct iovec:
        void* iov_base
        size_t iov_len
    ssize_t readv(int fd, const iovec* iov, int iovcnt)
    ssize_t writev(int fd, const iovec* iov, int iovcnt)

cdef enum:
    F_NEEDS_CSUM = 1        # VIRTIO_NET_HDR_F_NEEDS_CSUM
    GSO_TCPV4 = 1           # VIRTIO_NET_HDR_GSO_*
    GSO_TCPV6 = 4
    GSO_ECN = 0x80
    HOST_PORT = 1           # kdp.ports.HOST
    C_RX = 0                # counters per port id
    C_RX_BYTES = 1
    C_TX = 2
    C_TX_BYTES = 3
    C_TX_ERRORS = 4
    N_C = 5
    URING_ENTRIES = 256     # writes a submission at most
    URING_MIN = 4           # batches this large go through the ring (one write alone: writev is cheaper)
    W_IDLE = 0              # writer_t.state
    W_PENDING = 1
    W_RUNNING = 2

MAX_PORTS = MAX_TAP_PORTS
HEADER_BYTES = VNET_HDR_LEN


cdef bint complete_csum(uint8_t* frame, uint32_t n, const uint8_t* hdr) noexcept nogil:
    """Finish a partial checksum as skb_checksum_help does: the one's complement sum of
    the bytes from csum_start to the end (the field holds the pseudo-header sum),
    folded, complemented, stored at csum_start + csum_offset."""
    cdef uint32_t start = hdr[6] | (<uint32_t>hdr[7] << 8)      # little-endian (x86, virtio 1.0)
    cdef uint32_t where = start + (hdr[8] | (<uint32_t>hdr[9] << 8))
    cdef uint16_t c
    if start >= n or where + 2 > n:
        return False
    c = <uint16_t>~kdp_csum16(frame + start, n - start)
    st16(frame + where, c)
    return True


def complete_checksum(frame, const uint8_t[::1] vnet_header):
    """The frame (bytes) with its partial checksum completed as read_into completes it
    (for tests); None when the header's offsets do not fit the frame."""
    cdef bytearray out = bytearray(frame)
    cdef uint8_t[::1] view = out
    if vnet_header.shape[0] < VNET_HDR_LEN:
        raise ValueError(f"a vnet header has {VNET_HDR_LEN} bytes")
    if len(out) == 0 or not complete_csum(&view[0], <uint32_t>len(out), &vnet_header[0]):
        return None
    return bytes(out)


cdef bint _plain_tcp_super_frame(const uint8_t* f, uint32_t n, const uint8_t* hdr, uint16_t gso) noexcept nogil:
    """A super-frame kdp can carry: TCP over IPv4 (gso TCPV4) or IPv6 without extension
    headers (TCPV6) right after an untagged Ethernet header, its partial checksum at the
    TCP header's checksum field."""
    cdef uint32_t l4
    if not (hdr[0] & F_NEEDS_CSUM) or n < 14 + 40 + 20:
        return False
    if gso == GSO_TCPV4 and ld16(f + 12) == 0x0800 and (f[14] >> 4) == 4 and f[14 + 9] == 6:
        l4 = 14 + (f[14] & 15) * 4
    elif gso == GSO_TCPV6 and ld16(f + 12) == 0x86DD and (f[14] >> 4) == 6 and f[14 + 6] == 6:
        l4 = 14 + 40
    else:
        return False
    return (hdr[6] | (<uint32_t>hdr[7] << 8)) == l4 and (hdr[8] | (<uint32_t>hdr[9] << 8)) == 16 \
        and l4 + 20 <= n


cdef inline uint32_t _gso_header(const pkt_meta_t* p, uint8_t* f, uint8_t* hdr) noexcept nogil:
    """The vnet header of a super-frame that leaves whole (f its bytes), its TCP checksum
    field set to the pseudo-header sum of the addresses it leaves with; 0 when it cannot
    leave as one (not TCP any more, or its headers are not where parse found them)."""
    cdef uint8_t* ip = f + p.l3_off
    cdef uint8_t* th = f + p.l4_off
    cdef uint32_t l4 = <uint32_t>(p.l4_off - p.l3_off)
    cdef uint32_t tcp_len, thl
    cdef uint64_t s
    if p.proto != 6 or p.l4_off <= p.l3_off or p.l4_off + 20 > p.len:
        return 0
    if p.ip_ver == 4 and (ip[0] >> 4) == 4:
        tcp_len = ld16(ip + 2) - l4
        s = cs_sum(ip + 12, 8, 0)
        hdr[1] = GSO_TCPV4
    elif p.ip_ver == 6 and (ip[0] >> 4) == 6:
        tcp_len = 40 + ld16(ip + 4) - l4
        s = cs_sum(ip + 8, 32, 0)
        hdr[1] = GSO_TCPV6
    else:
        return 0
    thl = (th[12] >> 4) * 4
    st16(th + 16, cs_fold(s + 6 + tcp_len))         # the pseudo-header sum, not inverted
    hdr[0] = F_NEEDS_CSUM
    hdr[2] = <uint8_t>(p.l4_off + thl)               # hdr_len, little-endian
    hdr[3] = <uint8_t>((p.l4_off + thl) >> 8)
    hdr[4] = <uint8_t>p.gso_size                     # gso_size
    hdr[5] = <uint8_t>(p.gso_size >> 8)
    hdr[6] = <uint8_t>p.l4_off                       # csum_start
    hdr[7] = <uint8_t>(p.l4_off >> 8)
    hdr[8] = 16                                      # csum_offset: TCP's checksum field
    hdr[9] = 0
    return 1


cdef inline bint _tx_one(tx_port_t* tx, uint16_t port, const uint8_t* hdr, const uint8_t* frame,
                         uint32_t n) noexcept nogil:
    cdef iovec iov[2]
    iov[0].iov_base = <void*>hdr
    iov[0].iov_len = VNET_HDR_LEN
    iov[1].iov_base = <void*>frame
    iov[1].iov_len = n
    if writev(tx.fd_of_port[port], iov, 2) < 0:
        tx.ctr[port * N_C + C_TX_ERRORS] += 1      # the device is down or gone
        return False
    tx.ctr[port * N_C + C_TX] += 1
    tx.ctr[port * N_C + C_TX_BYTES] += n
    return True


cdef Py_ssize_t _tx_frames(tx_port_t* tx, uint8_t* buf, pkt_meta_t* m, Py_ssize_t count,
                           const uint16_t* dest, uint16_t* sent_p) noexcept nogil:
    """Write the frames prepare() chose (dest[i] != NO_PORT); sent_p (or NULL) gets the
    port each frame was written to. Plain C: the writer thread runs it too. With a ring
    (use_io_uring) and URING_MIN frames or more, the writes go to the kernel a chunk at a
    time, one system call each, else one writev a frame."""
    cdef uint8_t hdr_buf[VNET_HDR_LEN]
    cdef uint8_t* hdr
    cdef uint32_t tags[URING_ENTRIES]
    cdef Py_ssize_t i, sent = 0
    cdef unsigned k = 0
    cdef bint ring = tx.ring != NULL and count >= URING_MIN
    cdef pkt_meta_t* p
    cdef uint8_t* f
    for i in range(count):
        if sent_p != NULL:
            sent_p[i] = NO_PORT
        if dest[i] == NO_PORT:
            continue
        p = &m[i]
        f = buf + p.off
        hdr = kdp_uring_hdr(tx.ring, k) if ring else hdr_buf
        memset(hdr, 0, VNET_HDR_LEN)
        if p.gso_size and p.verdict != V_REJECT and p.verdict != V_REPLY:
            if not _gso_header(p, f, hdr):
                tx.gso_unsendable[0] += 1    # (read_into let only plain TCP in: never)
                continue
        if ring:
            kdp_uring_writev(tx.ring, k, tx.fd_of_port[dest[i]], f, p.len, <uint64_t>i)
            tags[k] = <uint32_t>i
            k += 1
            if k == tx.ring.entries or k == URING_ENTRIES:
                sent += _tx_ring_flush(tx, buf, m, k, tags, dest, sent_p)
                k = 0
        elif _tx_one(tx, dest[i], hdr, f, p.len):
            sent += 1
            if sent_p != NULL:
                sent_p[i] = dest[i]
    if k:
        sent += _tx_ring_flush(tx, buf, m, k, tags, dest, sent_p)
    return sent


cdef Py_ssize_t _tx_ring_flush(tx_port_t* tx, uint8_t* buf, pkt_meta_t* m, unsigned k, const uint32_t* tags,
                               const uint16_t* dest, uint16_t* sent_p) noexcept nogil:
    """Submit the k queued writes, count their completions as _tx_one counts a write; the
    ones the kernel did not take are written with writev (their headers are in the ring's
    slots)."""
    cdef int err = 0, res = 0
    cdef unsigned took = kdp_uring_submit(tx.ring, k, &err), got = 0, j
    cdef uint64_t tag = 0
    cdef Py_ssize_t sent = 0, i
    cdef uint16_t port
    while got < took:
        if not kdp_uring_reap(tx.ring, &tag, &res):
            if kdp_uring_wait(tx.ring, took - got) < 0:
                break                       # (never seen: the ring is gone)
            continue
        got += 1
        i = <Py_ssize_t>tag
        port = dest[i]
        if res < 0:
            tx.ctr[port * N_C + C_TX_ERRORS] += 1      # the device is down or gone
            continue
        tx.ctr[port * N_C + C_TX] += 1
        tx.ctr[port * N_C + C_TX_BYTES] += m[i].len
        sent += 1
        if sent_p != NULL:
            sent_p[i] = port
    for j in range(took, k):
        i = tags[j]
        if _tx_one(tx, dest[i], kdp_uring_hdr(tx.ring, j), buf + m[i].off, m[i].len):
            sent += 1
            if sent_p != NULL:
                sent_p[i] = dest[i]
    return sent


cdef void* _writer_main(void* arg) noexcept nogil:
    """The writer thread: wait for a batch, write it, say so; until stop. Holds no Python
    object and never the GIL."""
    cdef writer_t* w = <writer_t*>arg
    cdef Py_ssize_t sent
    pthread_mutex_lock(&w.mu)
    while True:
        while w.state != W_PENDING and not w.stop:
            pthread_cond_wait(&w.job_cv, &w.mu)
        if w.stop:
            break
        w.state = W_RUNNING
        pthread_mutex_unlock(&w.mu)
        sent = _tx_frames(&w.tx, w.buf, w.m, w.count, w.dest, NULL)
        pthread_mutex_lock(&w.mu)
        w.sent = sent
        w.state = W_IDLE
        pthread_cond_signal(&w.done_cv)
    pthread_mutex_unlock(&w.mu)
    return NULL


cdef class TapIO:
    """The attached ports: non-blocking TAP fds with vnet headers and their port ids."""

    def __cinit__(self, *args, **kwargs):
        kdp_uring_init(&self.ring)      # (fd -1: __dealloc__ closes nothing, even after a failed __init__)

    def __init__(self, fds, port_ids, own_mac, Neighbours neighbours=None, Py_ssize_t capacity=256):
        cdef Py_ssize_t i
        if len(fds) != len(port_ids) or not 0 < len(fds) <= MAX_TAP_PORTS:
            raise ValueError(f"1..{MAX_TAP_PORTS} ports, one id per fd")
        if len(own_mac) != 6:
            raise ValueError("a MAC is 6 bytes")
        for i in range(MAX_TAP_PORTS):
            self.fd_of_port[i] = -1
            self.hold_port[i] = 0
        self.n = len(fds)
        for i in range(self.n):
            if not 0 <= port_ids[i] < MAX_TAP_PORTS:
                raise ValueError(f"port id {port_ids[i]} out of 0..{MAX_TAP_PORTS - 1}")
            self.fds[i] = fds[i]
            self.ports[i] = port_ids[i]
            self.fd_of_port[port_ids[i]] = fds[i]
        cdef bytes mac = bytes(own_mac)
        memcpy(self.own_mac, <const char*>mac, 6)
        self.neigh = neighbours
        self._ctr = np.zeros((MAX_TAP_PORTS, N_C), dtype=np.uint64)
        self.ctr = <uint64_t*>cnp.PyArray_DATA(self._ctr)
        self._scratch(capacity)

    def _scratch(self, Py_ssize_t capacity):
        # (never while the writer thread writes: prepare and send come after finish)
        self._dest = np.full(capacity, NO_PORT, dtype=np.uint16)
        self.dest_p[0] = <uint16_t*>cnp.PyArray_DATA(self._dest)
        self._ensure_extra(capacity)
        self.slow = np.zeros(capacity, dtype=np.int32)
        self.held = np.zeros(capacity, dtype=np.int32)
        self.sent_port = np.full(capacity, NO_PORT, dtype=np.uint16)
        self.slow_p = <int*>cnp.PyArray_DATA(self.slow)
        self.held_p = <int*>cnp.PyArray_DATA(self.held)
        self.sent_p = <uint16_t*>cnp.PyArray_DATA(self.sent_port)

    def set_host_mac(self, mac):
        """The MAC of the host port's kernel side: frames for the node are sent to it."""
        if len(mac) != 6:
            raise ValueError("a MAC is 6 bytes")
        cdef bytes raw = bytes(mac)
        memcpy(self.host_mac, <const char*>raw, 6)
        self.has_host_mac = True

    def hold_for_neighbours(self, port_ids):
        """Frames out these ports (local pods') wait until their destination's MAC is
        known (send() lists them in `held`)."""
        cdef Py_ssize_t i
        for i in range(MAX_TAP_PORTS):
            self.hold_port[i] = 0
        for port in port_ids:
            if 0 <= port < MAX_TAP_PORTS:
                self.hold_port[port] = 1

    def counters(self, port_id):
        """(frames in, bytes in, frames out, bytes out, write errors) of a port id."""
        if not 0 <= port_id < MAX_TAP_PORTS:
            raise ValueError(f"port id {port_id} out of 0..{MAX_TAP_PORTS - 1}")
        return tuple(int(x) for x in self._ctr[port_id])

    def wait(self, int timeout_ms, uint32_t spin_us=0):
        """Block (without the GIL) until a port has a frame or timeout_ms passed; returns
        the number of ready ports (0: timed out or interrupted by a signal). With
        `spin_us`, first ask again and again without sleeping for up to that long: a
        frame that comes meanwhile is read at once instead of after the wake-up of a
        sleeping thread (busy polling, as Linux's busy_poll and DPDK do; it costs that
        much CPU after each burst, never more). The next read_into asks only the ports
        found ready."""
        cdef pollfd pfd[MAX_TAP_PORTS]
        cdef Py_ssize_t i
        cdef int r
        cdef uint64_t until
        for i in range(self.n):
            pfd[i].fd = self.fds[i]
            pfd[i].events = POLLIN
            pfd[i].revents = 0
        with nogil:
            r = 0
            if spin_us:
                until = _now_ns() + <uint64_t>spin_us * 1000
                r = poll(pfd, <unsigned long>self.n, 0)
                while r == 0 and _now_ns() < until:
                    r = poll(pfd, <unsigned long>self.n, 0)
            if r == 0:
                r = poll(pfd, <unsigned long>self.n, timeout_ms)
            # the next read_into asks only these ports (any event: an error shows in the read)
            self.ready_known = r > 0
            for i in range(self.n):
                self.ready[i] = pfd[i].revents != 0
        return r if r > 0 else 0

    def read_into(self, Batch b not None, uint64_t ts_ns):
        """Append frames from the ready fds (see the module docstring); returns how many."""
        cdef Py_ssize_t got
        if b.buf_size < HEADROOM + MAX_GSO_FRAME + SLOT_ALIGN:
            raise ValueError("the batch is too small for a 64 KiB frame (capacity >= 8)")
        with nogil:
            got = self._read(b, ts_ns)
        return got

    cdef Py_ssize_t _read(self, Batch b, uint64_t ts_ns) noexcept nogil:
        # A port that had nothing is not asked again in this call: on a busy port beside
        # an idle one, asking the idle one every round cost a failed readv (a syscall)
        # per frame read, half the reads. Its frames wait for the next call (the loop's
        # next poll), one batch at most. `live` holds the fds still asked, in round order.
        cdef uint8_t hdr[VNET_HDR_LEN]
        cdef uint16_t live[MAX_TAP_PORTS]
        cdef iovec iov[2]
        cdef Py_ssize_t got = 0, k, j = 0, n_live = self.n, start, i
        cdef ssize_t r
        cdef uint32_t n
        cdef pkt_meta_t* p
        cdef uint16_t port, gso
        # Right after a wait that found some ports ready, the others are not asked (on a
        # busy port beside an idle one that was a failed readv a call, most of a call's
        # reads when batches are a frame or two); a frame that came to one since waits for
        # the next call. In round order from next_fd either way.
        n_live = 0
        for i in range(self.n):
            k = (self.next_fd + i) % self.n
            if not self.ready_known or self.ready[k]:
                live[n_live] = <uint16_t>k
                n_live += 1
        self.ready_known = False
        while (b.count < b.capacity and n_live > 0
               and b.used + HEADROOM + MAX_GSO_FRAME + SLOT_ALIGN <= b.buf_size):
            if j >= n_live:
                j = 0
            k = live[j]
            port = self.ports[k]
            start = b.used + HEADROOM
            iov[0].iov_base = hdr
            iov[0].iov_len = VNET_HDR_LEN
            iov[1].iov_base = b.buf + start
            iov[1].iov_len = MAX_GSO_FRAME
            r = readv(self.fds[k], iov, 2)
            if r <= VNET_HDR_LEN:
                self.reads_empty += 1   # EAGAIN (nothing now), or an empty read
                n_live -= 1
                for i in range(j, n_live):
                    live[i] = live[i + 1]
                continue
            j += 1
            self.next_fd = (k + 1) % self.n
            n = <uint32_t>(r - VNET_HDR_LEN)
            self.ctr[port * N_C + C_RX] += 1
            self.ctr[port * N_C + C_RX_BYTES] += n
            gso = hdr[1] & ~GSO_ECN
            if gso != 0 and (hdr[4] | hdr[5]) == 0:
                gso = 0                 # no segment size: one frame, as the kernel reads it
            if gso != 0 and not _plain_tcp_super_frame(b.buf + start, n, hdr, gso):
                self.gso_refused += 1
                continue
            if gso == 0 and (hdr[0] & F_NEEDS_CSUM):
                if complete_csum(b.buf + start, n, hdr):
                    self.csum_completed += 1
            p = &b.m[b.count]
            meta_reset(p)
            p.off = <uint32_t>start
            p.len = n
            p.wire_len = n
            p.ts_ns = ts_ns
            p.linktype = LT_ETHERNET
            p.in_port = port
            if gso != 0:
                p.gso_size = hdr[4] | (<uint16_t>hdr[5] << 8)
                self.gso_frames += 1
            b.used = (start + n + SLOT_ALIGN - 1) & ~(<Py_ssize_t>SLOT_ALIGN - 1)
            b.count += 1
            got += 1
        return got

    def send(self, Batch b not None, Batch extra=None):
        """Write what the pipeline transmitted (see the module docstring), `extra` after
        the batch; returns the frames written. `slow` / `held` (n_slow / n_held) list the
        frames left to the caller."""
        cdef Py_ssize_t sent
        self.prepare(b)
        if extra is not None:
            self._ensure_extra(extra.capacity)
        with nogil:
            sent = self._transmit(b, self.dest_p[0], True)
            if extra is not None:
                self._prepare(extra, self.dest_p[1], False)
                sent += self._transmit(extra, self.dest_p[1], False)
        return sent

    def prepare(self, Batch b not None):
        """The first half of send (without `extra`): decide where each frame goes, fill
        `slow` and `held`, address frames for the node; returns how many frames are to be
        written (`submit` writes them on the writer thread)."""
        cdef Py_ssize_t n
        if self._job is not None:
            raise RuntimeError("a batch is still being written (finish first)")
        self._ensure(b.capacity)
        with nogil:
            n = self._prepare(b, self.dest_p[0], True)
        return n

    def use_io_uring(self, unsigned entries=URING_ENTRIES):
        """Write batches of URING_MIN frames or more through an io_uring (raw system
        calls): the writes of up to `entries` frames go to the kernel in one call instead
        of a writev each (a system call costs ~200-400 ns here). Raises OSError when the
        kernel refuses the ring (no io_uring, disabled by sysctl or seccomp, too many
        entries): the writes stay writev's. Before start_writer."""
        cdef int err
        if self.w.running:
            raise RuntimeError("use_io_uring comes before start_writer")
        if self.ring.fd >= 0:
            return
        err = kdp_uring_open(&self.ring, entries)
        if err != 0:
            raise OSError(err, f"io_uring refused ({strerror(err).decode()})")

    @property
    def io_uring(self):
        """Whether batches are written through the io_uring."""
        return self.ring.fd >= 0

    def start_writer(self):
        """Start the native writer thread (`submit` / `finish`): a pthread that holds no
        Python object, so a hand-off costs a mutex and a wake-up, not the GIL (a Python
        thread's hand-off cost ~24 us a batch here, more than a super-frame's write).
        Raises OSError when the thread cannot be made."""
        cdef int err
        if self.w.running:
            return
        pthread_mutex_init(&self.w.mu, NULL)
        pthread_cond_init(&self.w.job_cv, NULL)
        pthread_cond_init(&self.w.done_cv, NULL)
        self.w.state = W_IDLE
        self.w.stop = False
        self.w.tx.fd_of_port = self.fd_of_port
        self.w.tx.ctr = self.ctr
        self.w.tx.gso_unsendable = &self.gso_unsendable
        self.w.tx.ring = &self.ring if self.ring.fd >= 0 else NULL
        err = pthread_create(&self.w.thread, NULL, _writer_main, &self.w)
        if err != 0:
            pthread_cond_destroy(&self.w.done_cv)
            pthread_cond_destroy(&self.w.job_cv)
            pthread_mutex_destroy(&self.w.mu)
            raise OSError(err, f"cannot start the writer thread: {strerror(err).decode()}")
        self.w.running = True

    @property
    def writer_running(self):
        return bool(self.w.running)

    def submit(self, Batch b not None):
        """Hand the frames the last prepare() chose to the writer thread and return at
        once; `finish` waits for them. One batch at a time: the caller keeps b untouched
        and runs no prepare or send until finish returned."""
        if not self.w.running:
            raise RuntimeError("the writer thread is not running (start_writer)")
        if self._job is not None:
            raise RuntimeError("a batch is still being written (finish first)")
        self._job = b
        with nogil:
            pthread_mutex_lock(&self.w.mu)
            self.w.buf = b.buf
            self.w.m = b.m
            self.w.count = b.count
            self.w.dest = self.dest_p[0]
            self.w.state = W_PENDING
            pthread_cond_signal(&self.w.job_cv)
            pthread_mutex_unlock(&self.w.mu)
        self.handoffs += 1

    def finish(self):
        """Wait (without the GIL) for the submitted batch to be written; returns the frames
        written (0 when none was submitted)."""
        cdef Py_ssize_t sent
        if self._job is None:
            return 0
        with nogil:
            pthread_mutex_lock(&self.w.mu)
            while self.w.state != W_IDLE:
                pthread_cond_wait(&self.w.done_cv, &self.w.mu)
            sent = self.w.sent
            pthread_mutex_unlock(&self.w.mu)
        self._job = None
        return sent

    def stop_writer(self):
        """Finish the batch in hand, stop the writer thread and wait for it to end."""
        if not self.w.running:
            return
        self.finish()
        with nogil:
            self._end_writer()

    cdef void _end_writer(self) noexcept nogil:
        """Let the writer finish its batch, stop it, wait for it to end, free its sync."""
        pthread_mutex_lock(&self.w.mu)
        while self.w.state != W_IDLE:
            pthread_cond_wait(&self.w.done_cv, &self.w.mu)
        self.w.stop = True
        pthread_cond_signal(&self.w.job_cv)
        pthread_mutex_unlock(&self.w.mu)
        pthread_join(self.w.thread, NULL)
        pthread_cond_destroy(&self.w.done_cv)
        pthread_cond_destroy(&self.w.job_cv)
        pthread_mutex_destroy(&self.w.mu)
        self.w.running = False

    def __dealloc__(self):
        # the thread points into this object: it ends before the object goes
        if self.w.running:
            with nogil:
                self._end_writer()
        kdp_uring_close(&self.ring)

    def _ensure(self, Py_ssize_t capacity):
        if self.slow.shape[0] < capacity:
            self._scratch(capacity)

    def _ensure_extra(self, Py_ssize_t capacity):
        if self._dest_extra is None or self._dest_extra.shape[0] < capacity:
            self._dest_extra = np.full(capacity, NO_PORT, dtype=np.uint16)
            self.dest_p[1] = <uint16_t*>cnp.PyArray_DATA(self._dest_extra)

    cdef Py_ssize_t _prepare(self, Batch b, uint16_t* dest, bint main) noexcept nogil:
        cdef uint8_t mac[6]
        cdef Py_ssize_t i, count = 0
        cdef pkt_meta_t* p
        cdef uint8_t* f
        cdef uint16_t out, et
        cdef bint known
        cdef bint has_neigh = self.neigh is not None
        if main:
            self.n_slow = self.n_held = 0
        for i in range(b.count):
            p = &b.m[i]
            f = b.buf + p.off
            dest[i] = NO_PORT
            if p.verdict == V_FORWARD or p.verdict == V_REJECT or p.verdict == V_REPLY:
                out = p.out_port
                if out >= MAX_TAP_PORTS or self.fd_of_port[out] < 0:
                    self.no_device += 1
                    continue
                if main and self.hold_port[out] and has_neigh:
                    if p.ip_ver == 4:
                        known = self.neigh.lookup4(p.dst4, mac)
                    elif p.ip_ver == 6:
                        known = self.neigh.lookup6(p.dst6, mac)
                    else:
                        known = False
                    if known and p.linktype == LT_ETHERNET and p.len >= 14:
                        memcpy(f, mac, 6)   # (learned after the route stage addressed it: a later frame taught it)
                    elif p.ip_ver != 0:
                        self.held_p[self.n_held] = <int>i
                        self.n_held += 1
                        continue
            elif p.verdict == V_LOCAL and main:
                if p.reason == R_ARP or (p.ip_ver == 6 and p.proto == 58 and p.icmp_type == 135):
                    self.slow_p[self.n_slow] = <int>i
                    self.n_slow += 1
                    continue
                if p.out_port != HOST_PORT or not self.has_host_mac or self.fd_of_port[HOST_PORT] < 0 \
                        or p.len < 14:
                    continue
                et = ld16(f + 12)
                if et != 0x0800 and et != 0x86DD:
                    continue
                memcpy(f, self.host_mac, 6)
                memcpy(f + 6, self.own_mac, 6)
                out = HOST_PORT
            else:
                continue
            dest[i] = out
            count += 1
        return count

    cdef Py_ssize_t _transmit(self, Batch b, const uint16_t* dest, bint record) noexcept nogil:
        cdef tx_port_t tx
        tx.fd_of_port = self.fd_of_port
        tx.ctr = self.ctr
        tx.gso_unsendable = &self.gso_unsendable
        tx.ring = &self.ring if self.ring.fd >= 0 else NULL
        return _tx_frames(&tx, b.buf, b.m, b.count, dest, self.sent_p if record and self.recording else NULL)

    cdef bint _write(self, uint16_t port, const uint8_t* hdr, const uint8_t* frame, uint32_t n) noexcept nogil:
        cdef tx_port_t tx
        tx.fd_of_port = self.fd_of_port
        tx.ctr = self.ctr
        tx.gso_unsendable = &self.gso_unsendable
        tx.ring = NULL
        return _tx_one(&tx, port, hdr, frame, n)

    def write_frame(self, uint16_t port, frame):
        """Write one frame (bytes, complete) to a port's device; False when it has none or
        the write failed (counted)."""
        cdef bytes data = bytes(frame)
        cdef uint8_t hdr[VNET_HDR_LEN]
        if port >= MAX_TAP_PORTS or self.fd_of_port[port] < 0 or not data:
            return False
        memset(hdr, 0, VNET_HDR_LEN)
        return self._write(port, hdr, <const uint8_t*><const char*>data, <uint32_t>len(data))
