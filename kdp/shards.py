"""`kdp replay --workers N`: flows sharded over N pipelines, one thread each, as RSS
spreads them over a NIC's queues; the output identical, packet for packet, to one
worker's. Two ways to get there:

    run = ChunkedRun(dp, ShardPlan(dp.pipeline.services, n), batch_size)
    packets = run.replay(reader, writer)               # raises Unsafe: start again on one worker

a classic pcap file whose output and verdict log (each when given) are regular files,
in chunks (kdp._fast.chunk): each worker reads, processes and formats its own packets
and their log lines, the workers meet at two barriers a chunk, worker 0 finds and keys
the records, a writer thread writes each chunk's records with one pwrite(2) and its
lines with pwritev(2) (ChunkedRun); and

    run = ShardedRun(dp, ShardPlan(dp.pipeline.services, n), batch_size, log_file)
    packets = run.replay(reader, write, placed=None)   # raises Unsafe: start again on one worker

everything else that is sharded (a pcapng input or output, an output or a log that is
a pipe or a device), handed over in batches: the rest of this docstring.

The compiled tables (routes, services and their Maglev tables, policy, DNS, tunnels)
are shared, read only; each worker has its own conntrack, neighbour table, ClientIP
affinity table, counters and scratch (a Pipeline of its own, worker 0's the data
plane's; its RouteTable a copy sharing the tables with its own scratch). The replay's
thread reads each batch, parses it once (Pipeline.parse: decapsulation rewrites
packets, so no worker may parse a packet another one is already translating) and gives
each packet its worker (kdp._fast.shard.assign); the batches go to the workers a group
(~GROUP_PACKETS packets) at a time, each batch still run on its own. For each batch a
worker builds a view of its packets (the buffer shared, their metadata copied, input
order) and runs it as run(parsed=True) does, translating them in place, both in one
GIL release (Pipeline.run_view). ARP and ND are in every worker's view: each
notes what they teach and learns it at its place in the input; worker 0 processes them
(the others give them V_ELSEWHERE, which no stage touches and account does not count).
The replay's thread takes the verdict log's tuples right after parse and gathers the
workers' metadata back into the batch it read, in input order. With a classic pcap
output and a log in regular files (PlacedOutput; a pcapng input: a classic pcap input
runs in chunks then) it only claims the batch's place in
them (a pass over its verdicts: the capture's file offset, the log's frame numbers) and
a worker, group k on worker k mod N, formats the records and the lines and writes them
there with pwrite(2) while the others go on; otherwise (pcapng, a pipe) it writes the
batch itself as one worker's. Either way the output capture and the verdict log are the
same bytes as one worker's. Counters add up.

What would make the result depend on the sharding stops it (Unsafe): a flow whose
reply tuple has another key than its first packet, an IP fragment, a packet older
than an earlier batch's newest (conntrack's clock), a ClientIP-affinity flow whose
entry no one worker owns, IPv4 fragments or TCP segments kdp made (`extra`, written
after the batch), flows enough to fill one conntrack table (early drop would choose
among all of them). The caller (kdp/replay.py) then replays from the start on one
worker and says so; it also lists the options it never shards.
"""
import os
import queue
import threading

import numpy as np

from kdp._fast.pipeline import Pipeline
from kdp._fast.packet import Batch
from kdp._fast.dns import NOTE_DTYPE
from kdp._fast.shard import ShardPlan, assign, gather, share_buffer

N_VSHARDS = 64       # kdp/_fast/shard.pxd: the virtual shards a key falls in
from kdp.errors import KdpError

#: Pipeline.shard_unsafe bits (kdp/_fast/shard.pxd U_*) and what they mean
UNSAFE_REASONS = {
    1: "an IP fragment (later fragments carry no ports)",
    2: "a flow whose answers have another shard key than its first packet "
       "(an end that is both a client and a Service endpoint?)",
    4: "packet timestamps that go back in time across batches",
    8: "a new flow to a Service with ClientIP session affinity from the node itself, or with "
       "fewer than 256 affinity slots (sessionAffinityMaxEntries)",
    16: "kdp made IPv4 fragments or TCP segments (written after their batch)",
}


class Unsafe(Exception):
    """The sharded run met something whose outcome could depend on the sharding."""


def _reasons(bits):
    return "; ".join(why for bit, why in UNSAFE_REASONS.items() if bits & bit)


def worker_pipeline(dp, plan, me):
    """Worker `me`'s pipeline: worker 0's is the data plane's own; the others' share its
    compiled tables, with their own conntrack (not prefaulted), neighbours, counters,
    scratch (RouteTable.for_worker) and affinity table (set_shard)."""
    node = dp.node
    if me == 0:
        pipeline = dp.pipeline
    else:
        kw = node.pipeline.as_kwargs()
        kw["routes"] = kw["routes"].for_worker()
        ct = node.conntrack
        pipeline = Pipeline(conntrack=ct.build(prefault=False) if ct is not None else None,
                            vxlan_port=node.vxlan_port, recheck=node.recheck, **kw)
    pipeline.set_shard(plan, me)
    return pipeline


def _unsafe_pipelines(pipelines, capacity):
    """Raise Unsafe for what the pipelines noted (shard_unsafe) or for flows enough to fill
    one conntrack table (`capacity`; 0: no conntrack)."""
    bits = 0
    inserts = 0
    for p in pipelines:
        bits |= p.shard_unsafe
        if p.conntrack is not None:
            inserts += p.conntrack.inserts
    if bits:
        raise Unsafe(_reasons(bits))
    if capacity and inserts >= capacity:
        raise Unsafe(f"{inserts:,} flows: enough to fill the conntrack table "
                     f"({capacity:,}), whose early drop chooses among them all")


class _Totals:
    """The run's totals, added over the workers' pipelines."""

    def finish_flows(self):
        """Expire, in every worker, the flows expired at the end (Conntrack.expire_all)."""
        clock = max(p.clock_ns for p in self.pipelines)
        for p in self.pipelines:
            if p.conntrack is not None:
                p.conntrack.expire_all(clock)

    @property
    def counters(self):
        return sum(p.counters for p in self.pipelines)

    @property
    def verdicts(self):
        return sum(p.verdicts for p in self.pipelines)

    @property
    def dns_counters(self):
        return sum(p.dns_counters for p in self.pipelines)

    def flow_counters(self):
        """Dataplane.flow_counters, added over the workers."""
        if self.dp.conntrack is None:
            return {}
        out = {}
        for p in self.pipelines:
            for key, value in p.conntrack.counters().items():
                out[key] = out.get(key, 0) + value
        if self.dp.pipeline.natout is not None:
            out["nat_outgoing"] = sum(int(p.natout_flows) for p in self.pipelines)
        return out

    def service_counts(self):
        """Dataplane.service_counts, added over the workers."""
        return self.dp.add_service_counters(sum(p.service_counters for p in self.pipelines))


class ChunkedRun(_Totals):
    """A replay of a classic pcap file on `plan.workers` pipelines in chunks
    (kdp._fast.chunk): worker 0 (the caller's thread) finds and keys each chunk's
    records in the mapped file; each worker reads, processes and formats the output
    records of its own packets at their places in the chunk's staging buffer, then
    their verdict log lines into its own buffer; the workers meet at two barriers a
    chunk; a writer thread writes each chunk's records (a classic pcap output in a
    regular file) with one pwrite(2) and its lines (a log in a regular file) with
    pwritev(2), in input order, while the workers go on.

    CHUNK_PACKETS: a chunk's packets (rounded down to whole batches): enough that the
    barriers are rare, few enough that a worker's packets of a chunk stay in its cache
    (4,096: 1,024 to 65,536 measured, bench/README.md, "A second core")."""

    CHUNK_PACKETS = 4096
    FIRST_SHARE = 0.5       # worker 0's flows, of an even share (it also finds and keys every packet)

    def __init__(self, dp, plan, batch_size, chunk_packets=None):
        self.dp = dp
        self.plan = plan
        self.batch_size = batch_size
        chunk = chunk_packets or self.CHUNK_PACKETS
        self.chunk = max(batch_size, chunk - chunk % batch_size)     # (whole batches)
        # worker 0 also finds and keys every packet: it takes fewer flows
        n = plan.workers
        self.plan = plan = ShardPlan(plan.services, n, first=max(1, round(N_VSHARDS / n * self.FIRST_SHARE)))
        self.pipelines = [worker_pipeline(dp, plan, w) for w in range(n)]
        ct = dp.conntrack
        self.capacity = ct.capacity if ct is not None else 0

    def replay(self, reader, writer, after=None, log_file=None, keep=None):
        """Every packet of `reader` (a classic pcap file), its output records into `writer`
        (a classic pcap CaptureWriter of a regular file; None: no output), its verdict log
        line into `log_file` (a kdp.io.capture.LogFile of a regular file, empty; None: no
        log; `keep`: the Verdict values whose packets get a line, --log-only). after():
        called after each chunk (progress). Returns the packets read. Raises Unsafe when
        the sharding could change the result (the files are then written again); a damaged
        capture's error after every packet before the damage is written, as one worker."""
        from kdp._fast.chunk import ChunkRun
        vlog = self.dp.verdict_log(None, 1) if log_file is not None else None
        run = ChunkRun(reader, writer, self.plan, self.pipelines, self.batch_size, self.chunk,
                       log=vlog, log_fd=log_file.f.fileno() if log_file is not None else -1,
                       keep=None if keep is None else [int(v) for v in keep])
        self.run = run

        def log_error():
            if run.log_errno:
                raise KdpError(f"{log_file.path}: cannot write the verdict log: {os.strerror(run.log_errno)}")
        threads = [threading.Thread(target=self._worker, args=(run, w), name=f"kdp-worker-{w}", daemon=True)
                   for w in range(1, self.plan.workers)]
        writer_thread = threading.Thread(target=run.write_loop, name="kdp-writer", daemon=True)
        for t in threads:
            t.start()
        writer_thread.start()
        packets = 0
        failure = None
        released = False

        def release():
            # the other workers wait at the next chunk's start: the end lets them return
            nonlocal released
            if not released:
                released = True
                run.end()
                run.chunk(0)
        try:
            while True:
                try:
                    n = run.next_chunk()
                except ValueError as exc:       # (a batch of records larger than the map)
                    raise Unsafe(str(exc)) from None
                except Exception as exc:        # noqa: BLE001 (a damaged capture: raised below)
                    failure = exc
                    n = 0
                if n == 0:
                    break
                run.chunk(0)
                packets += n
                bits = run.finish_chunk()
                log_error()
                if bits:
                    raise Unsafe(_reasons(bits))
                _unsafe_pipelines(self.pipelines, self.capacity)
                if after is not None:
                    after()
        finally:
            release()
            for t in threads:
                t.join()
            run.end_writes()
            writer_thread.join()
        run.check_writes()
        log_error()
        if failure is not None:
            raise failure
        return packets

    @staticmethod
    def _worker(run, me):
        while run.chunk(me):
            pass


_PUT = object()      # a worker's job: put a gathered batch in place (PlacedOutput.put)


class PlacedOutput:
    """The output capture (classic pcap) and the verdict log of a sharded replay, each a
    regular file, written by the workers: the replay's thread claims each gathered
    batch's place in input order (plan: the capture's file offset and bytes, the log's
    frame numbers; a pass over the batch's verdicts), then a worker formats a group of
    batches' records and lines and writes them with pwrite(2) where they go (put),
    while the other workers go on with the next groups. A log line has its length only
    once formatted: each group's lines take their offset after the group before has
    taken its own (a counter under a lock; the formatting of both goes on at once). The
    files are the bytes one writer makes.

    open_writer(): the CaptureWriter (None: no output capture), called at the first
    batch; log_fd, log_path: the log's file descriptor and name (None: no log);
    keep(batch): the log's per-packet keep mask or None (--log-only)."""

    def __init__(self, open_writer, log_fd, log_path, keep, depth):
        self.open_writer = open_writer
        self.writer = None
        self.opened = False
        self.log_fd = log_fd
        self.log_path = log_path
        self.keep = keep
        self.scratch = [None] * depth       # a slot's formatted records (one worker puts a slot at a time)
        self.lock = threading.Condition()
        self.next_log = 0                   # the batch whose lines take the next place in the log
        self.log_end = 0                    # ... and that place
        self.batches = 0

    def plan(self, batch, log, base):
        """The replay's thread, batches in input order: their places."""
        if not self.opened:
            self.opened = True
            self.writer = self.open_writer()
        k = self.batches
        self.batches += 1
        if self.writer is None:
            return (k, base, None, 0, 0, log)
        first_frame = self.writer.packets
        offset, nbytes = self.writer.plan(batch)
        return (k, base, first_frame, offset, nbytes, log)

    def put(self, slot, items):
        """A worker: a group of batches (items: (batch, plan's placing) in input order),
        its records and log lines written where plan put them (the formatting and the
        writes release the GIL)."""
        scratch = self.scratch[slot]
        for batch, (k, base, first_frame, offset, nbytes, log) in items:
            if nbytes:
                if scratch is None or len(scratch) < nbytes:
                    scratch = self.scratch[slot] = np.empty(2 * max(nbytes, 1 << 20), dtype=np.uint8)
                self.writer.put_at(batch, offset, nbytes, scratch)
        if items[0][1][5] is None:
            return
        first = items[0][1][0]
        lines = []
        try:
            for batch, (k, base, first_frame, offset, nbytes, log) in items:
                lines.append(log.format(batch, first_frame=first_frame, keep=self.keep(batch),
                                        indices=np.arange(base, base + len(batch), dtype=np.uint64)))
        finally:
            # the next group's lines wait for this one's place: taken even after an
            # error, so that no worker waits for ever
            size = sum(len(x) for x in lines)
            with self.lock:
                while self.next_log != first:
                    self.lock.wait()
                at = self.log_end
                self.log_end += size
                self.next_log += len(items)
                self.lock.notify_all()
        try:
            while lines:
                n = os.pwritev(self.log_fd, lines, at)
                at += n
                while lines and n >= len(lines[0]):
                    n -= len(lines[0])
                    lines.pop(0)
                if lines and n:
                    lines[0] = lines[0][n:]
        except OSError as exc:
            raise KdpError(f"{self.log_path}: cannot write the verdict log: {exc.strerror or exc}") from None


class _Worker:
    """One pipeline in its thread: takes (slot, count) jobs and processes, batch by batch,
    its packets of the replay's `count` batches in that slot, each through a view of it
    (the buffer shared); and (_PUT, ...) jobs: a gathered group written in place."""

    def __init__(self, dp, plan, me, cells, batch_size, raw, who, vshards):
        # raw: the replay's batches (a slot's group of them, cell = slot * group + j), whose
        # buffers this worker's views share; who and vshards: each batch's packets' workers
        # and virtual shards (kdp._fast.shard.assign)
        self.me = me
        self.pipeline = worker_pipeline(dp, plan, me)
        self.workers = plan.workers
        self.raw = raw
        self.who = who
        self.batch_vshards = vshards
        self.batches = [Batch(batch_size) for _ in range(cells)]
        for view, base in zip(self.batches, raw):
            share_buffer(view, base)
        self.index = [np.zeros(batch_size, dtype=np.uint32) for _ in range(cells)]
        self.vshards = [np.zeros(batch_size, dtype=np.uint8) for _ in range(cells)]
        self.mine = [np.zeros(batch_size, dtype=np.uint8) for _ in range(cells)]
        # the DNS stage's notes of each batch (its pipeline writes them here: run_view)
        self.notes = [np.zeros(batch_size, dtype=NOTE_DTYPE) if self.pipeline.dns is not None else None
                      for _ in range(cells)]
        self.made_extra = False     # kdp made IPv4 fragments or TCP segments (`extra`)
        self.jobs = queue.SimpleQueue()
        self.done = threading.Semaphore(0)
        self.error = None
        self.put_done = None        # ShardedRun's per-slot semaphores (its output's put jobs)
        self.put_error = None
        self.thread = threading.Thread(target=self._run, name=f"kdp-worker-{me}", daemon=True)

    def _run(self):
        pipeline = self.pipeline
        while True:
            job = self.jobs.get()
            if job is None:
                return
            if job[0] is _PUT:
                # a gathered group's records and log lines, put in place (PlacedOutput)
                _, out, slot, items = job
                try:
                    out.put(slot, items)
                except BaseException as exc:     # handed to the replay's thread
                    self.put_error = exc
                finally:
                    self.put_done[slot].release()
                continue
            first, count = job
            try:
                for cell in range(first, first + count):
                    if self.error is not None:
                        break
                    # (shard.start_view and the stages, the GIL released once)
                    pipeline.run_view(self.batches[cell], self.raw[cell], self.who[cell],
                                      self.batch_vshards[cell], self.index[cell], self.vshards[cell],
                                      self.mine[cell], self.notes[cell])
                    if len(pipeline.extra):
                        self.made_extra = True      # (emptied by the next run: noted now)
            except BaseException as exc:     # handed to the replay's thread
                self.error = exc
            finally:
                self.done.release()


class ShardedRun(_Totals):
    """A replay's batches through `plan.workers` pipelines of data plane `dp`.

    The batches go to the workers a group at a time (GROUP_PACKETS packets' worth, each
    batch still run on its own, at the caller's batch size): each hand-over (a queue
    put and a semaphore per worker, a thread woken on another core) costs microseconds,
    per group rather than per batch."""

    DEPTH = 4       # groups in flight: read, processed, gathered, written
    LAG = 2         # a group is gathered two groups after it was read (its workers are done)
    GROUP_PACKETS = 2048

    def __init__(self, dp, plan, batch_size, log_file=None):
        self.dp = dp
        self.plan = plan
        self.group = max(1, min(64, self.GROUP_PACKETS // batch_size))
        cells = self.DEPTH * self.group
        # the batches read: parsed and assigned here, then each worker processes its own
        # packets in place through a view (the buffer shared, the metadata its own)
        self.raw = [Batch(batch_size) for _ in range(cells)]
        self.who = [np.zeros(batch_size, dtype=np.uint8) for _ in range(cells)]
        self.vshards = [np.zeros(batch_size, dtype=np.uint8) for _ in range(cells)]
        self.logs = [dp.verdict_log(log_file, batch_size) for _ in range(cells)] if log_file else None
        self.newest = 0
        self.parser = dp.pipeline
        self.workers = [_Worker(dp, plan, w, cells, batch_size, self.raw, self.who, self.vshards)
                        for w in range(plan.workers)]
        ct = dp.conntrack
        self.capacity = ct.capacity if ct is not None else 0
        # a slot's group is being put in place by a worker (PlacedOutput) until released
        self.put_done = [threading.Semaphore(1) for _ in range(self.DEPTH)]
        for w in self.workers:
            w.put_done = self.put_done
            w.thread.start()

    def replay(self, reader, write, after=None, placed=None):
        """Read every batch of `reader`, process it on the workers, and write each
        gathered batch in input order: with `placed` (a PlacedOutput), the workers put
        the batches' records and log lines in place, a group each in turn (group k:
        worker k mod N), in parallel; else this thread calls write(batch, log, base)
        (log: the batch's VerdictLog, None without a log file; base: its first packet's
        input index). after(): called after each group is handed to be written
        (progress). Returns the packets read. Raises Unsafe (nothing more is written)
        when the sharding could change the result; an error of the reader (a damaged
        capture) after every packet before it is written, as one worker does."""
        k = 0
        done = 0
        packets = 0
        g = self.group
        counts = [0] * self.DEPTH
        bases = [0] * (self.DEPTH * g)
        failure = None
        try:
            end = False
            while not end:
                slot = k % self.DEPTH
                if k >= self.LAG:
                    self._finish(done, counts, bases, write, placed)
                    done += 1
                    if after is not None:
                        after()
                self._slot_free(slot)       # (its group's put: handed over LAG groups ago)
                count = 0
                for cell in range(slot * g, slot * g + g):
                    raw = self.raw[cell]
                    try:
                        n = reader.fill(raw)
                    except Exception as exc:        # noqa: BLE001 (raised below)
                        # a damaged capture: the packets before the damage are processed
                        # and written first, as one worker does, then the error is raised
                        failure = exc
                        n = 0
                    if n == 0:
                        end = True
                        break
                    bases[cell] = packets
                    packets += n
                    count += 1
                    self.parser.parse(raw)
                    unsafe, self.newest = assign(self.plan, raw, self.who[cell], self.vshards[cell],
                                                 self.newest)
                    if unsafe:
                        raise Unsafe(_reasons(unsafe))
                    if self.logs is not None:
                        self.logs[cell].capture_orig(raw)     # the tuples as received
                if count == 0:
                    self.put_done[slot].release()
                    break
                counts[slot] = count
                for w in self.workers:
                    w.jobs.put((slot * g, count))
                k += 1
            while done < k:
                self._finish(done, counts, bases, write, placed)
                done += 1
            for slot in range(self.DEPTH):
                self._slot_free(slot)
                self.put_done[slot].release()
        finally:
            self.stop()
        if failure is not None:
            raise failure
        return packets

    def _slot_free(self, slot):
        """Wait until the slot's last group is written (its put job done)."""
        self.put_done[slot].acquire()
        for w in self.workers:
            if w.put_error is not None:
                raise w.put_error

    def _finish(self, k, counts, bases, write, placed):
        slot = k % self.DEPTH
        for w in self.workers:
            w.done.acquire()
        for w in self.workers:
            if w.error is not None:
                raise w.error
        self._check()
        items = []
        for cell in range(slot * self.group, slot * self.group + counts[slot]):
            batch = self.raw[cell]
            log = self.logs[cell] if self.logs is not None else None
            notes = np.zeros(len(batch), dtype=NOTE_DTYPE) if log is not None and self.parser.dns is not None \
                else None
            for w in self.workers:
                view = w.batches[cell]
                gather(batch, view, w.mine[cell], w.index[cell])
                if notes is not None:
                    # the DNS stage's notes, at their packets' input places
                    n = len(view)
                    take = w.mine[cell][:n].astype(bool)
                    notes[w.index[cell][:n][take]] = w.notes[cell][:n][take]
            if log is not None:
                log.capture_dns(notes)
            if placed is None:
                write(batch, log, bases[cell])
            else:
                # this thread only claims the batch's places (file offsets, frame numbers)
                items.append((batch, placed.plan(batch, log, bases[cell])))
        if placed is None:
            self.put_done[slot].release()
            return
        # a worker formats and writes the group while the next groups run, and frees the slot
        self.workers[k % len(self.workers)].jobs.put((_PUT, placed, slot, items))

    def _check(self):
        if any(w.made_extra for w in self.workers):
            raise Unsafe("kdp made IPv4 fragments or TCP segments (written after their batch)")
        _unsafe_pipelines(self.pipelines, self.capacity)

    def stop(self):
        """End the worker threads (after their current batch)."""
        for w in self.workers:
            if w.thread.is_alive():
                w.jobs.put(None)
        for w in self.workers:
            w.thread.join()

    # ---------------------------------------------------------------- the run's totals

    @property
    def pipelines(self):
        return [w.pipeline for w in self.workers]
