# cython: boundscheck=False, wraparound=False
"""A sharded replay in chunks (`kdp replay --workers N`, classic pcap from a file; the
output and the verdict log, when given, regular files): each worker reads, processes and
formats its own packets and their log lines, and the workers meet at two barriers a
chunk instead of handing packets to each other.

Per chunk (CHUNK_PACKETS, whole batches; kdp/shards.py ChunkedRun drives it):
  index   worker 0 (the replay's thread) finds the chunk's records in the mapped file
          (CaptureReader.index_c: their offsets, counted as fill() counts them) and
  key     keys them in input order straight from the mapped bytes (untagged Ethernet
          IPv4 TCP/UDP from their headers alone, _light_key; the rest through
          CaptureReader.meta_record and parse_frame into a metadata record on the stack, no
          copy; with tunnels, whose decapsulation rewrites packets, a copy parsed as
          Pipeline._parse does): each
          packet's worker and virtual shard (shard_one: the key shard.assign gives) and
          assign's checks (an IP fragment, a timestamp older than an earlier batch's newest).
          It does this for chunk c+1 while the others format chunk c's records, and takes
          fewer flows for it (ShardPlan first=).
  --- barrier ---
  process each worker copies its own packets (and the ARP and ND every worker learns
          from) of each input batch from the mapped file into its own batch, in input
          order, and runs them as one worker runs that batch (Pipeline._stages: one view of
          its packets of each input batch, so batch boundaries stay one worker's; with a
          log, their tuples as received are kept first), then notes each of its packets'
          output record length
  --- barrier ---
  format  every worker adds up the chunk's record lengths in input order (a prefix sum:
          each record's place) and formats its own records there, in the chunk's staging
          buffer; a writer thread writes that buffer with one pwrite(2) once every worker
          is done with it (write_loop), while the workers go on with the next chunk.
  lines   with a verdict log, every worker then formats its packets' lines, in input
          order, into its own line buffer (_lines: the same prefix sum gave each packet's
          frame number, batch by batch, as one worker numbers them); each line's length
          and worker go in two arrays at its input place, and the writer thread, after
          the records, writes the chunk's lines in input order with pwritev(2), a run of
          one worker's lines an iovec (_write_lines: the places follow from the lengths
          in order, so no third barrier is needed).
Only each packet's worker (a byte), each record's length and each line's length and
worker cross between the workers; a packet's bytes and metadata stay with the worker
that processes it until its record and line are formatted (bench/README.md, "A second
core", has what each step costs).

What makes sharding unsafe (shard.pxd U_*) is noted here and checked by the caller
between chunks (finish_chunk); the caller then replays from the start on one worker.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t
from libc.stdlib cimport realloc, free, calloc
from libc.string cimport memset
from libc.errno cimport errno, EINTR, EIO, ENOMEM

from kdp._fast.packet cimport (Batch, pkt_meta_t, drop, set_verdict, V_PENDING, V_LOCAL, ST_PARSE, R_ARP)
from kdp._fast.parse cimport parse_frame
from kdp._fast.pipeline cimport Pipeline
from kdp._fast.shard cimport ShardPlan, shard_one, shard_key, U_CLOCK, U_EXTRA
from kdp._fast.mix cimport P_TCP, P_UDP
from kdp._fast.packet cimport LT_ETHERNET, MAX_FRAME
from kdp._fast.neigh cimport neigh_note_batch
from kdp._fast.conntrack cimport ct_expire
from kdp._fast.dns cimport dns_note_t, dns_q_t
from kdp._fast.dns import NOTE_DTYPE
from kdp.io.pcap cimport CaptureReader
from kdp.io.pcapwrite cimport CaptureWriter, UNCONVERTIBLE
from kdp._fast.verdictlog cimport (VerdictLog, orig_tuple_t, line_state_t, log_line, snapshot_tuples,
                                   MAX_LINE, SLACK)
from kdp._fast.verdictlog import ORIG_TUPLE_DTYPE

cnp.import_array()

cdef extern from "pthread.h" nogil:
    int pthread_barrier_init(pthread_barrier_t* b, const void* attr, unsigned count)
    int pthread_barrier_wait(pthread_barrier_t* b)
    int pthread_barrier_destroy(pthread_barrier_t* b)

cdef extern from "time.h" nogil:
    ctypedef long time_t
    struct timespec:
        time_t tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* ts)
    int CLOCK_THREAD_CPUTIME_ID


cdef inline double _cpu() noexcept nogil:
    """This thread's CPU seconds (ChunkRun.phase_cpu: where a sharded replay's time goes)."""
    cdef timespec ts
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef extern from "sys/uio.h" nogil:
    struct iovec:
        void* iov_base
        size_t iov_len
    ssize_t pwritev(int fd, const iovec* iov, int iovcnt, long offset)

cdef enum:
    IOV_BATCH = 1024            # iovecs a pwritev(2) call (IOV_MAX on Linux)


cdef int _pwritev_all(int fd, iovec* iov, int cnt, uint64_t* offset) noexcept nogil:
    """pwritev(2) all of iov (changed on the way) at *offset, moved past them; 0 or the errno."""
    cdef ssize_t r
    while cnt > 0:
        r = pwritev(fd, iov, cnt, <long>offset[0])
        if r < 0:
            if errno == EINTR:
                continue
            return errno
        if r == 0:
            return EIO
        offset[0] += <uint64_t>r
        while cnt > 0 and <size_t>r >= iov[0].iov_len:
            r -= <ssize_t>iov[0].iov_len
            iov += 1
            cnt -= 1
        if cnt > 0 and r > 0:
            iov[0].iov_base = <char*>iov[0].iov_base + r
            iov[0].iov_len -= <size_t>r
    return 0


cdef extern from "semaphore.h" nogil:
    int sem_init(sem_t* s, int pshared, unsigned value)
    int sem_wait(sem_t* s)
    int sem_post(sem_t* s)
    int sem_destroy(sem_t* s)


cdef inline void _sem_wait(sem_t* s) noexcept nogil:
    while sem_wait(s) != 0:
        pass                # (EINTR: a signal; the wait goes on)


cdef inline void _sem_post(sem_t* s) noexcept nogil:
    sem_post(s)


cdef uint8_t ZERO16[16]


cdef inline bint _light_key(ShardPlan plan, const uint8_t* d, uint32_t cap, uint8_t* vshard) noexcept nogil:
    """The virtual shard of an untagged Ethernet frame holding a whole unfragmented IPv4
    TCP or UDP packet, read from its headers as parse_frame reads them; False for
    anything else (keyed after the full parse). (A packet parse_frame would drop, e.g. for
    a bad checksum, may get another worker here than after a full parse: it is dropped at
    parse there, touching no state.)"""
    cdef const uint8_t* ip
    cdef const uint8_t* l4
    cdef uint32_t ihl, tot
    if cap < 42 or cap > MAX_FRAME or d[12] != 0x08 or d[13] != 0x00:
        return False
    ip = d + 14
    if (ip[0] >> 4) != 4:
        return False
    ihl = (ip[0] & 15) * 4
    tot = (<uint32_t>ip[2] << 8) | ip[3]
    if ihl < 20 or tot < ihl + 8 or 14 + tot > cap:
        return False
    if ip[6] & 0x3F or ip[7]:                   # MF or a fragment offset
        return False
    if ip[9] != P_TCP and ip[9] != P_UDP:
        return False
    l4 = ip + ihl
    vshard[0] = shard_key(plan, 4, ip[9],
                          (<uint32_t>ip[12] << 24) | (<uint32_t>ip[13] << 16) | (<uint32_t>ip[14] << 8) | ip[15],
                          ZERO16,
                          (<uint32_t>ip[16] << 24) | (<uint32_t>ip[17] << 16) | (<uint32_t>ip[18] << 8) | ip[19],
                          ZERO16, (<uint16_t>l4[0] << 8) | l4[1], (<uint16_t>l4[2] << 8) | l4[3])
    return True


def light_key(ShardPlan plan not None, frame):
    """_light_key of an Ethernet frame (bytes): its virtual shard, or None where the full
    parse keys it (for tests: it must agree with shard.assign after parse)."""
    cdef const uint8_t[::1] d = memoryview(bytes(frame)).cast("B")
    cdef uint8_t v = 0
    if d.shape[0] == 0 or not _light_key(plan, &d[0], <uint32_t>d.shape[0], &v):
        return None
    return v


cdef class ChunkWorker:
    """One worker's own state: its pipeline (set_shard), the batch its packets of a chunk
    are copied into (input order), and per packet of it: its input place in the chunk,
    its virtual shard, whether it is this worker's (Pipeline.shard_mark), its DNS note,
    its record's offset in the chunk's output."""

    def __init__(self, Pipeline pipeline not None, int me, Py_ssize_t chunk, Py_ssize_t batch):
        if pipeline.shard is None or pipeline.shard_me != me:
            raise ValueError("a chunk worker's pipeline is sharded, as worker `me` (set_shard)")
        self.pipeline = pipeline
        self.me = me
        self.big = Batch(chunk)
        self.window = Batch(1)
        self.scratch = Batch(batch)
        idx = np.zeros(chunk, dtype=np.uint32)
        vs = np.zeros(chunk, dtype=np.uint8)
        mine = np.zeros(chunk, dtype=np.uint8)
        notes = np.zeros(chunk, dtype=NOTE_DTYPE)
        at = np.zeros(chunk, dtype=np.uint64)
        orig = np.zeros(chunk, dtype=ORIG_TUPLE_DTYPE)
        frame = np.zeros(chunk, dtype=np.int64)
        self.arrays = (idx, vs, mine, notes, at, orig, frame)
        self.orig = <orig_tuple_t*>cnp.PyArray_DATA(orig)
        self.frame = <int64_t*>cnp.PyArray_DATA(frame)
        self.idx = <uint32_t*>cnp.PyArray_DATA(idx)
        self.vs = <uint8_t*>cnp.PyArray_DATA(vs)
        self.mine = <uint8_t*>cnp.PyArray_DATA(mine)
        self.notes = <dns_note_t*>cnp.PyArray_DATA(notes)
        self.at = <uint64_t*>cnp.PyArray_DATA(at)
        # the scratch a batch's stages use, sized once (run_view sizes it every batch)
        pipeline.routes._ensure_scratch(batch)
        pipeline._ensure_scratch(batch)
        pipeline.neighbours.ensure_notes(batch)
        self.dns_ctr = <uint64_t*>cnp.PyArray_DATA(pipeline.dns_counters)
        self.dq = <dns_q_t*>cnp.PyArray_DATA(pipeline.dns_scratch) if pipeline.dns is not None else NULL


cdef class ChunkRun:
    """The chunks of one sharded replay: `reader` (a classic pcap file), `writer` (a
    classic pcap CaptureWriter, None: no output), the workers' pipelines (worker w's
    sharded as w of `plan`), batches of `batch` packets, chunks of `chunk` packets (a
    multiple of batch). Each worker's thread calls chunk(me) until it returns 0; worker
    0's thread calls next_chunk() before each of its chunk(0) calls and finish_chunk()
    after (end() then chunk(0) lets the others end early), a writer thread calls
    write_loop() (end_writes() ends it, after the workers).

    `log` (a VerdictLog, for its names; None: no verdict log): each packet's line goes to
    the file descriptor `log_fd` (a regular file, written from offset 0 with pwritev(2));
    `keep` (the verdicts whose packets get a line, --log-only; None: every packet)."""

    def __init__(self, CaptureReader reader not None, CaptureWriter writer, ShardPlan plan not None,
                 pipelines, Py_ssize_t batch, Py_ssize_t chunk, bint light_key=True,
                 VerdictLog log=None, int log_fd=-1, keep=None):
        cdef int k
        if not reader.classic_file:
            raise ValueError("chunks are read from a classic pcap file")
        if batch < 1 or chunk < batch:
            raise ValueError("a chunk holds at least one batch")
        if len(pipelines) != plan.workers:
            raise ValueError("one pipeline per worker of the plan")
        chunk -= chunk % batch
        self.reader = reader
        self.writer = writer
        self.plan = plan
        self.workers = plan.workers
        self.batch = batch
        self.chunk_size = chunk
        self.wk = [ChunkWorker(p, w, chunk, batch) for w, p in enumerate(pipelines)]
        self.offs_arr = (np.zeros(chunk, dtype=np.uint64), np.zeros(chunk, dtype=np.uint64))
        who = np.zeros(chunk, dtype=np.uint8)
        vshard = np.zeros(chunk, dtype=np.uint8)
        olen = np.zeros(chunk, dtype=np.uint32)
        self.errs_arr = np.zeros(self.workers, dtype=np.intc)
        self.arrays = (who, vshard, olen)
        self.offs_pair[0] = <uint64_t*>cnp.PyArray_DATA(self.offs_arr[0])
        self.offs_pair[1] = <uint64_t*>cnp.PyArray_DATA(self.offs_arr[1])
        self.offs = self.offs_pair[0]
        self.who = <uint8_t*>cnp.PyArray_DATA(who)
        self.vshard = <uint8_t*>cnp.PyArray_DATA(vshard)
        self.olen = <uint32_t*>cnp.PyArray_DATA(olen)
        self.errs = <int*>cnp.PyArray_DATA(self.errs_arr)
        # the light key: classic pcap of Ethernet frames (whose rx stage drops only frames
        # past MAX_FRAME, which _light_key leaves to the full parse)
        self.light = reader.interfaces[0]["linktype"] == LT_ETHERNET and light_key
        if pthread_barrier_init(&self.bar, NULL, <unsigned>self.workers) != 0:
            raise OSError("pthread_barrier_init failed")
        self.bar_ready = True
        for k in range(2):
            sem_init(&self.stage_full[k], 0, 0)
            sem_init(&self.stage_free[k], 0, <unsigned>self.workers)
        if log is not None:
            if log_fd < 0:
                raise ValueError("a verdict log needs its file descriptor")
            self.log = log
            self.log_fd = log_fd
            log.refresh_names()     # (a classic pcap's ports are known once it is open)
            if keep is not None:
                self.keep_some = True
                for v in keep:
                    self.keepv[<uint8_t>v] = 1
            self.lbuf = <char**>calloc(2 * self.workers, sizeof(char*))
            self.lcap = <uint64_t*>calloc(2 * self.workers, sizeof(uint64_t))
            self.lpos = <uint64_t*>calloc(self.workers, sizeof(uint64_t))
            if self.lbuf == NULL or self.lcap == NULL or self.lpos == NULL:
                raise MemoryError()
            lines = (np.zeros(chunk, dtype=np.uint32), np.zeros(chunk, dtype=np.uint32),
                     np.zeros(chunk, dtype=np.uint8), np.zeros(chunk, dtype=np.uint8))
            self.arrays += lines
            for k in range(2):
                self.llen_pair[k] = <uint32_t*>cnp.PyArray_DATA(lines[k])
                self.lw_pair[k] = <uint8_t*>cnp.PyArray_DATA(lines[2 + k])
        if writer is not None:
            writer.begin_placed()

    def __dealloc__(self):
        cdef int k
        if self.bar_ready:
            pthread_barrier_destroy(&self.bar)
            for k in range(2):
                sem_destroy(&self.stage_full[k])
                sem_destroy(&self.stage_free[k])
        free(self.stage[0])
        free(self.stage[1])
        if self.lbuf != NULL:
            for k in range(2 * self.workers):
                free(self.lbuf[k])
            free(self.lbuf)
        free(self.lcap)
        free(self.lpos)

    # ------------------------------------------------------------------ worker 0's thread

    def next_chunk(self):
        """The next chunk: the one worker 0 indexed during the last (CaptureReader.index_c,
        after the workers were done reading the last one's records), or indexed now.
        Returns its packets (0: the end). An error of the reader (a damaged file) is
        raised after the chunk before it: call end() then, so that the other workers end
        too."""
        cdef double t0 = _cpu()
        cdef Py_ssize_t k
        cdef ChunkWorker w0 = self.wk[0]
        self.n = 0
        if self.ahead:
            self.ahead = False
            k = self.reader.index_end(self.ahead_status, self.ahead_n)
            self.offs = self.offs_pair[self.ahead_slot]
        else:
            k = self.reader.index(self.offs_arr[self.ahead_slot], self.batch)
            self.offs = self.offs_pair[self.ahead_slot]
            self.index_cpu += _cpu() - t0
            t0 = _cpu()
            if k:
                with nogil:
                    self._key(w0, w0.pipeline, w0.scratch, self.offs, self.reader.window(), k)
            w0.cpu[0] += _cpu() - t0
        self.n = k
        self.base = self.reader.window()
        # the chunk after it: indexed by worker 0 during this one, when the file goes on
        self.ahead_slot ^= 1
        self.index_ahead = k > 0 and not self.reader.done
        if self.writer is not None:
            self.out_pos = self.writer.bytes_written
        return self.n

    @property
    def phase_cpu(self):
        """CPU seconds by phase: {"index" and "key": worker 0's finding and keying of the
        records, "process", "format" and "lines": a list by worker (the stages; the prefix
        sum and the records put in place; the verdict log's lines formatted), "write": the
        writer thread's pwrite(2) of the records, "log write": its pwritev(2) of the lines}
        (bench/shards_cpu.py)."""
        cdef ChunkWorker w
        cdef ChunkWorker w0 = self.wk[0]
        return {"index": self.index_cpu + w0.cpu[3],
                "key": w0.cpu[0],
                "process": [w.cpu[1] for w in self.wk],
                "format": [w.cpu[2] - w.cpu[4] for w in self.wk],
                "lines": [w.cpu[4] for w in self.wk],
                "write": self.write_cpu - self.log_write_cpu,
                "log write": self.log_write_cpu}

    def end(self):
        """No more chunks: the next chunk(me) of every worker returns 0."""
        self.n = 0

    def finish_chunk(self):
        """After worker 0's chunk(0): count the chunk's records in the writer, raise a
        write error, return the shard.pxd U_* bits that make the run unsafe (clock: a
        batch older than an earlier one's newest; the key's fragments; each pipeline's
        own)."""
        cdef uint32_t bits = 0
        cdef Py_ssize_t k
        cdef ChunkWorker w
        if self.writer is not None:
            self.writer.placed_chunk(self.out_bytes, self.out_packets, self.out_bad)
            if self.werr:
                self.writer.raise_errno(self.werr)
        for w in self.wk:
            bits |= w.key_unsafe | w.pipeline.shard_unsafe
        return bits

    @property
    def log_errno(self):
        """The verdict log's first error (0: none): a write's errno, or ENOMEM for the
        workers' line buffers (the caller names the file: kdp/shards.py)."""
        return self.lerr

    def check_writes(self):
        """Raise the first write error of any worker (after every worker has ended)."""
        cdef int k
        if self.writer is not None:
            for k in range(self.workers):
                if self.errs[k]:
                    self.writer.raise_errno(self.errs[k])
            if self.werr:
                self.writer.raise_errno(self.werr)

    # ------------------------------------------------------------------ every worker's thread

    def chunk(self, int me):
        """Worker `me`'s part of the current chunk (the GIL released throughout); returns
        the chunk's packets (0: the end, this worker's thread ends)."""
        cdef ChunkWorker w = self.wk[me]
        cdef Pipeline pl = w.pipeline
        cdef Batch big = w.big, win = w.window, scratch = w.scratch
        cdef Py_ssize_t n
        with nogil:
            n = self._chunk(w, pl, big, win, scratch)
        return n

    cdef Py_ssize_t _chunk(self, ChunkWorker w, Pipeline pl, Batch big, Batch win,
                           Batch scratch) except -1 nogil:
        cdef Py_ssize_t n
        cdef double t0, t1, t2
        pthread_barrier_wait(&self.bar)             # the chunk is indexed and keyed
        n = self.n
        if n == 0:
            return 0
        t0 = _cpu()
        self._process(w, pl, big, win, n)
        t1 = _cpu()
        w.cpu[1] += t1 - t0
        pthread_barrier_wait(&self.bar)             # every record has its length
        if (self.writer is not None or self.log is not None) and not self.halt:
            self._write(w, big, n)
        t2 = _cpu()
        w.cpu[2] += t2 - t1
        if w.me == 0 and self.index_ahead:
            # the next chunk's records, found and keyed while the others format this one's
            # (nobody reads this chunk's input any more: the reader may map on)
            self.ahead_n = self.reader.index_c(self.offs_pair[self.ahead_slot], self.chunk_size,
                                               self.batch, &self.ahead_status)
            self.ahead = True
            t0 = _cpu()
            w.cpu[3] += t0 - t2
            if self.ahead_n:
                self._key(w, pl, scratch, self.offs_pair[self.ahead_slot], self.reader.window(),
                          self.ahead_n)
            w.cpu[0] += _cpu() - t0
        return n

    cdef void _key(self, ChunkWorker w, Pipeline pl, Batch s, const uint64_t* offs, const uint8_t* base,
                   Py_ssize_t n) noexcept nogil:
        """Key the n records at `offs` (worker 0, every packet of a chunk, in input order):
        each packet's worker and virtual shard (shard_one), and the checks assign makes: an
        IP fragment, a packet older than an earlier batch's newest (U_CLOCK)."""
        cdef Py_ssize_t k, i, lo, hi
        cdef Py_ssize_t nb = (n + self.batch - 1) // self.batch
        cdef pkt_meta_t m
        cdef pkt_meta_t* p
        cdef const uint8_t* pkt
        cdef uint16_t r
        cdef uint64_t before
        cdef uint32_t unsafe = 0
        cdef bint copy = pl.tunnels is not None
        cdef bint light = not copy and self.light
        cdef uint32_t caplen
        cdef uint64_t ts
        for k in range(nb):
            lo = k * self.batch
            hi = lo + self.batch if lo + self.batch < n else n
            before = self.newest
            if copy:
                # decapsulation rewrites a packet: parsed in a copy, as the pipeline does
                s.count = 0
                s.used = 0
                for i in range(lo, hi):
                    self.reader.push_record(s, base + offs[i])
                pl._parse(s)
            for i in range(lo, hi):
                if light:
                    pkt = self.reader.record_data(base + offs[i], &caplen, &ts)
                    if _light_key(self.plan, pkt, caplen, &self.vshard[i]):
                        # (the common packet, read as parse_frame would read it)
                        self.who[i] = self.plan.owner[self.vshard[i]]
                        if ts < before:
                            unsafe |= U_CLOCK
                        if ts > self.newest:
                            self.newest = ts
                        continue
                if copy:
                    p = &s.m[i - lo]
                else:
                    p = &m
                    pkt = self.reader.meta_record(p, base + offs[i])
                    if p.verdict == V_PENDING:
                        # as parse_batch: from the mapped bytes, nothing copied
                        r = parse_frame(p, pkt, pl.vxlan_port)
                        if r == R_ARP:
                            set_verdict(p, V_LOCAL, ST_PARSE, R_ARP)
                        elif r != 0:
                            drop(p, ST_PARSE, r)
                self.who[i] = shard_one(self.plan, p, &self.vshard[i], &unsafe)
                if p.ts_ns < before:
                    unsafe |= U_CLOCK
                if p.ts_ns > self.newest:
                    self.newest = p.ts_ns
        w.key_unsafe |= unsafe

    cdef int _process(self, ChunkWorker w, Pipeline pl, Batch big, Batch win, Py_ssize_t n) except -1 nogil:
        """Copy this worker's packets in, run each input batch's share of them through the
        stages as run_view did, and note each of its packets' record length."""
        cdef Py_ssize_t k, i, j, start, lo, hi
        cdef Py_ssize_t nb = (n + self.batch - 1) // self.batch
        cdef uint8_t me = <uint8_t>w.me, x
        big.count = 0
        big.used = 0
        for k in range(nb):
            lo = k * self.batch
            hi = lo + self.batch if lo + self.batch < n else n
            start = big.count
            for i in range(lo, hi):
                x = self.who[i]
                if (x & 0x7F) == me or (x & 0x80):
                    self.reader.push_record(big, self.base + self.offs[i])
                    w.idx[big.count - 1] = <uint32_t>i
                    w.vs[big.count - 1] = self.vshard[i]
            # the view: this worker's packets of input batch k (the buffer's free end
            # after them is its own, for DNS answers too big for their slot)
            win.m = big.m + start
            win.count = big.count - start
            win.capacity = self.batch
            win.buf = big.buf
            win.buf_size = big.buf_size
            win.used = big.used
            pl.vs = w.vs + start
            pl.mine = w.mine + start
            pl._parse(win)
            neigh_note_batch(pl.neighbours, win)
            pl.shard_mark(win)
            pl.routes.classify_ingress(win)
            pl._advance_clock(win, 0)
            if self.log is not None:
                snapshot_tuples(win, w.orig + start)    # the tuples as received
            if pl._stages(win, w.dns_ctr, w.notes + start, w.dq, None):
                # IPv4 fragments or TCP segments: written after their batch by one worker
                pl.shard_unsafe |= U_EXTRA
                self.halt = True
                return 0
            pl.account(win)
            if pl.conntrack is not None:
                ct_expire(pl.conntrack, pl.clock_ns, pl.expire_work)
            big.used = win.used
        if self.writer is not None:
            for j in range(big.count):
                if w.mine[j]:
                    self.olen[w.idx[j]] = self.writer.record_size(big, &big.m[j])
        return 0

    cdef void _write(self, ChunkWorker w, Batch big, Py_ssize_t n) noexcept nogil:
        """The prefix sum of the chunk's record lengths (each of this worker's records'
        place, and with a log each of its packets' frame number), its records formatted
        there, in the staging buffer the writer thread writes (write_loop) while the
        workers go on with the next chunk; with a log, its packets' lines (_lines)."""
        cdef Py_ssize_t i, j = 0, left = 0
        cdef uint64_t at = 0, packets = 0, bad = 0, first = 0, tx = 0
        cdef uint32_t length
        cdef uint8_t* grown
        cdef int sb = <int>(w.wseq & 1)
        cdef bint log = self.log is not None
        cdef double t0
        w.wseq += 1
        if self.writer is not None:
            for i in range(n):
                if left == 0:
                    # an input batch begins (chunks hold whole batches): one worker's log
                    # numbers its frames from the output's packets before it
                    left = self.batch
                    first = w.frames + packets
                    tx = 0
                left -= 1
                while j < big.count and (not w.mine[j] or w.idx[j] < <uint32_t>i):
                    j += 1
                length = self.olen[i]
                if length != 0:
                    tx += 1                     # (transmitted: counted as the log counts it)
                if j < big.count and w.idx[j] == <uint32_t>i:
                    w.at[j] = at
                    if log:
                        w.frame[j] = <int64_t>(first + tx) if length != 0 else -1
                if length == UNCONVERTIBLE:
                    bad += 1
                elif length:
                    at += length
                    packets += 1
            w.frames += packets
        _sem_wait(&self.stage_free[sb])             # the writer is done with its last chunk
        if self.writer is not None:
            if at > self.stage_cap[sb]:
                # (every worker sees the same total: all of them wait here, or none)
                pthread_barrier_wait(&self.bar)
                if w.me == 0:
                    grown = <uint8_t*>realloc(self.stage[sb], 2 * at)
                    if grown != NULL:
                        self.stage[sb] = grown
                        self.stage_cap[sb] = 2 * at
                pthread_barrier_wait(&self.bar)
            if at <= self.stage_cap[sb]:
                for j in range(big.count):
                    if w.mine[j]:
                        length = self.olen[w.idx[j]]
                        if length != 0 and length != UNCONVERTIBLE:
                            self.writer.put_record(big, &big.m[j], self.stage[sb] + w.at[j])
            if w.me == 0:
                self.out_bytes = at
                self.out_packets = packets
                self.out_bad = bad
                self.stage_len[sb] = at
                self.stage_pos[sb] = self.out_pos
                if at > self.stage_cap[sb]:
                    self.stage_len[sb] = 0
                    self.errs[0] = 12           # ENOMEM
        if log:
            t0 = _cpu()
            self._lines(w, big, n, sb)
            w.cpu[4] += _cpu() - t0
        if w.me == 0:
            self.stage_n[sb] = n
        w.first_index += <uint64_t>n
        _sem_post(&self.stage_full[sb])             # this worker's records are in place

    cdef void _lines(self, ChunkWorker w, Batch big, Py_ssize_t n, int sb) noexcept nogil:
        """This worker's packets' verdict log lines, in input order, into its line buffer
        of staging buffer sb; each line's length and this worker's number at its input
        place of the chunk (0: no line), for the writer thread (_write_lines)."""
        cdef Py_ssize_t j, i
        cdef Py_ssize_t k = sb * self.workers + w.me
        cdef uint64_t need = <uint64_t>big.count * MAX_LINE + SLACK, pos = 0
        cdef char* grown
        cdef char* out
        cdef uint32_t* llen = self.llen_pair[sb]
        cdef uint8_t* lw = self.lw_pair[sb]
        cdef pkt_meta_t* p
        cdef line_state_t st
        cdef bint writer = self.writer is not None
        cdef bint dns = w.dq != NULL
        memset(&st, 0, sizeof(st))
        if need > self.lcap[k]:
            grown = <char*>realloc(self.lbuf[k], need)
            if grown == NULL:
                self.lerr = ENOMEM
                for j in range(big.count):
                    if w.mine[j]:
                        llen[w.idx[j]] = 0
                return
            self.lbuf[k] = grown
            self.lcap[k] = need
        out = self.lbuf[k]
        for j in range(big.count):
            if not w.mine[j]:
                continue
            i = w.idx[j]
            p = &big.m[j]
            if self.keep_some and not self.keepv[p.verdict]:
                llen[i] = 0
                continue
            llen[i] = <uint32_t>log_line(self.log, big, j, &w.orig[j], &w.notes[j] if dns else NULL,
                                         w.first_index + <uint64_t>i, w.frame[j] if writer else -1, 0,
                                         out + pos, &st)
            lw[i] = <uint8_t>w.me
            pos += llen[i]

    cdef int _write_lines(self, int sb) noexcept nogil:
        """The writer thread: the lines of staging buffer sb's chunk, in input order, from
        the workers' line buffers, with pwritev(2) (runs of one worker's lines are one
        iovec: they follow each other in its buffer). Returns 0 or the errno."""
        cdef Py_ssize_t i, n = self.stage_n[sb]
        cdef uint32_t* llen = self.llen_pair[sb]
        cdef uint8_t* lw = self.lw_pair[sb]
        cdef iovec iov[IOV_BATCH]
        cdef int cnt = 0, err
        cdef uint32_t length
        cdef uint8_t k
        cdef char* at
        for i in range(self.workers):
            self.lpos[i] = 0
        for i in range(n):
            length = llen[i]
            if length == 0:
                continue
            k = lw[i]
            at = self.lbuf[sb * self.workers + k] + self.lpos[k]
            self.lpos[k] += length
            if cnt and <char*>iov[cnt - 1].iov_base + iov[cnt - 1].iov_len == at:
                iov[cnt - 1].iov_len += length
                continue
            if cnt == IOV_BATCH:
                err = _pwritev_all(self.log_fd, iov, cnt, &self.log_pos)
                if err:
                    return err
                cnt = 0
            iov[cnt].iov_base = at
            iov[cnt].iov_len = length
            cnt += 1
        if cnt:
            return _pwritev_all(self.log_fd, iov, cnt, &self.log_pos)
        return 0

    def write_loop(self):
        """The writer thread: each chunk's staging buffer, once every worker's records are in
        it, written with one pwrite(2) (one writer at a time: a file's writes take its
        inode's lock, two threads writing at once spin on it), until end_writes()."""
        cdef int sb, k, err
        cdef uint64_t seq = 0
        if self.writer is None and self.log is None:
            return
        cdef double t0, t1
        cdef bint log = self.log is not None
        with nogil:
            t0 = _cpu()
            while True:
                sb = <int>(seq & 1)
                seq += 1
                for k in range(self.workers):
                    _sem_wait(&self.stage_full[sb])
                if self.writes_end and self.writes_end_seq < seq:
                    break
                if self.writer is not None and self.stage_len[sb]:
                    err = self.writer.pwrite_all(self.stage[sb], self.stage_len[sb], self.stage_pos[sb])
                    if err:
                        self.werr = err
                if log and not self.lerr:
                    t1 = _cpu()
                    err = self._write_lines(sb)
                    if err:
                        self.lerr = err
                    self.log_write_cpu += _cpu() - t1
                for k in range(self.workers):
                    _sem_post(&self.stage_free[sb])
            self.write_cpu = _cpu() - t0

    def end_writes(self):
        """After the last chunk (every worker ended): write_loop returns once it has written
        every chunk."""
        cdef int k, sb
        cdef ChunkWorker w = self.wk[0]
        if self.writer is None and self.log is None:
            return
        self.writes_end_seq = w.wseq
        self.writes_end = True
        sb = <int>(w.wseq & 1)
        for k in range(self.workers):
            _sem_post(&self.stage_full[sb])
