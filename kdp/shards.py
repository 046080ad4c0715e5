"""`kdp replay --workers N`: flows sharded over N pipelines, one thread each, as RSS
spreads them over a NIC's queues; the output identical, packet for packet, to one
worker's.

    run = ShardedRun(dp, ShardPlan(dp.pipeline.services, n), batch_size, log_file)
    packets = run.replay(reader, write)     # raises Unsafe: start again on one worker

The compiled tables (routes, services and their Maglev tables, policy, DNS, tunnels)
are shared, read only; each worker has its own conntrack, neighbour table, ClientIP
affinity table, counters and scratch (a Pipeline of its own, worker 0's the data
plane's; its RouteTable a copy sharing the tables with its own scratch). The replay's
thread reads each batch, parses it once (Pipeline.parse: decapsulation rewrites
packets, so no worker may parse a packet another one is already translating) and gives
each packet its worker (kdp._fast.shard.assign). Each worker builds a view of its
packets (the buffer shared, their metadata copied, input order) and runs it with
`parsed=True`, translating them in place. ARP and ND are in every worker's view: each
notes what they teach and learns it at its place in the input; worker 0 processes them
(the others give them V_ELSEWHERE, which no stage touches and account does not count).
The replay's thread takes the verdict log's tuples right after parse, gathers the
workers' metadata back into the batch it read, in input order, and writes it as one
worker's batch: the output capture and the verdict log are the same bytes. Counters
add up.

What would make the result depend on the sharding stops it (Unsafe): a flow whose
reply tuple has another key than its first packet, an IP fragment, a packet older
than an earlier batch's newest (conntrack's clock), a ClientIP-affinity flow whose
entry no one worker owns, IPv4 fragments or TCP segments kdp made (`extra`, written
after the batch), flows enough to fill one conntrack table (early drop would choose
among all of them). The caller (kdp/replay.py) then replays from the start on one
worker and says so; it also lists the options it never shards.
"""
import queue
import threading

import numpy as np

from kdp._fast.pipeline import Pipeline
from kdp._fast.packet import Batch
from kdp._fast.dns import NOTE_DTYPE
from kdp._fast.shard import ShardPlan, assign, gather, share_buffer, start_view

#: Pipeline.shard_unsafe bits (kdp/_fast/shard.pxd U_*) and what they mean
UNSAFE_REASONS = {
    1: "an IP fragment (later fragments carry no ports)",
    2: "a flow whose answers have another shard key than its first packet "
       "(an end that is both a client and a Service endpoint?)",
    4: "packet timestamps that go back in time across batches",
    8: "a new flow to a Service with ClientIP session affinity from the node itself, or with "
       "fewer than 256 affinity slots (sessionAffinityMaxEntries)",
}


class Unsafe(Exception):
    """The sharded run met something whose outcome could depend on the sharding."""


def _reasons(bits):
    return "; ".join(why for bit, why in UNSAFE_REASONS.items() if bits & bit)


class _Worker:
    """One pipeline in its thread: takes (batch, slot) jobs and processes its packets of
    the replay's batch in that slot, through a view of them (the buffer shared)."""

    def __init__(self, dp, plan, me, depth, batch_size, raw, who, vshards):
        # raw: the replay's batches, whose buffers this worker's views share; who and
        # vshards: each batch's packets' workers and virtual shards (kdp._fast.shard.assign)
        node = dp.node
        self.me = me
        if me == 0:
            self.pipeline = dp.pipeline          # worker 0 is the data plane's own pipeline
        else:
            kw = node.pipeline.as_kwargs()
            kw["routes"] = kw["routes"].for_worker()
            ct = node.conntrack
            self.pipeline = Pipeline(conntrack=ct.build(prefault=False) if ct is not None else None,
                                     vxlan_port=node.vxlan_port, recheck=node.recheck, **kw)
        self.pipeline.set_shard(plan, me)
        self.workers = plan.workers
        self.who = who
        self.batch_vshards = vshards
        self.batches = [Batch(batch_size) for _ in range(depth)]
        for view, base in zip(self.batches, raw):
            share_buffer(view, base)
        self.index = [np.zeros(batch_size, dtype=np.uint32) for _ in range(depth)]
        self.vshards = [np.zeros(batch_size, dtype=np.uint8) for _ in range(depth)]
        self.mine = [np.zeros(batch_size, dtype=np.uint8) for _ in range(depth)]
        self.notes = [None] * depth
        self.jobs = queue.SimpleQueue()
        self.done = threading.Semaphore(0)
        self.error = None
        self.thread = threading.Thread(target=self._run, name=f"kdp-worker-{me}", daemon=True)

    def _run(self):
        pipeline = self.pipeline
        while True:
            job = self.jobs.get()
            if job is None:
                return
            raw, slot = job
            try:
                if self.error is None:
                    view = self.batches[slot]
                    n = start_view(view, raw, self.me, self.workers, self.who[slot],
                                   self.batch_vshards[slot], self.index[slot], self.vshards[slot])
                    pipeline.shard_view(self.vshards[slot])
                    pipeline.run(view, None, parsed=True)
                    if pipeline.dns is not None:
                        # the DNS stage's notes, kept (the pipeline's array is the next batch's)
                        self.notes[slot] = pipeline.dns_notes[:n].copy()
                    self.mine[slot][:n] = pipeline.shard_mine[:n]
            except BaseException as exc:     # handed to the replay's thread
                self.error = exc
            finally:
                self.done.release()


class ShardedRun:
    """A replay's batches through `plan.workers` pipelines of data plane `dp`."""

    DEPTH = 3       # batches in flight: read, processed, gathered and written

    def __init__(self, dp, plan, batch_size, log_file=None):
        self.dp = dp
        self.plan = plan
        # the batches read: parsed and assigned here, then each worker processes its own
        # packets in place through a view (the buffer shared, the metadata its own)
        self.raw = [Batch(batch_size) for _ in range(self.DEPTH)]
        self.who = [np.zeros(batch_size, dtype=np.uint8) for _ in range(self.DEPTH)]
        self.vshards = [np.zeros(batch_size, dtype=np.uint8) for _ in range(self.DEPTH)]
        self.logs = [dp.verdict_log(log_file, batch_size) for _ in range(self.DEPTH)] if log_file else None
        self.newest = 0
        self.parser = dp.pipeline
        self.workers = [_Worker(dp, plan, w, self.DEPTH, batch_size, self.raw, self.who, self.vshards)
                        for w in range(plan.workers)]
        ct = dp.conntrack
        self.capacity = ct.capacity if ct is not None else 0
        for w in self.workers:
            w.thread.start()

    def replay(self, reader, write, after=None):
        """Read every batch of `reader`, process it on the workers, and call
        write(batch, log, base) with each gathered batch in input order (log: its
        VerdictLog, None without a log file; base: its first packet's input index).
        after(): called after each batch is written (progress). Returns the packets read.
        Raises Unsafe (nothing more is written) when the sharding could change the result."""
        k = 0
        done = 0
        packets = 0
        bases = [0] * self.DEPTH
        try:
            while True:
                slot = k % self.DEPTH
                if k >= self.DEPTH:
                    self._finish(done, bases, write)
                    done += 1
                    if after is not None:
                        after()
                raw = self.raw[slot]
                n = reader.fill(raw)
                if n == 0:
                    break
                bases[slot] = packets
                packets += n
                self.parser.parse(raw)
                unsafe, self.newest = assign(self.plan, raw, self.who[slot], self.vshards[slot], self.newest)
                if unsafe:
                    raise Unsafe(_reasons(unsafe))
                if self.logs is not None:
                    self.logs[slot].capture_orig(raw)     # the tuples as received
                for w in self.workers:
                    w.jobs.put((raw, slot))
                k += 1
            while done < k:
                self._finish(done, bases, write)
                done += 1
        finally:
            self.stop()
        return packets

    def _finish(self, k, bases, write):
        slot = k % self.DEPTH
        for w in self.workers:
            w.done.acquire()
        for w in self.workers:
            if w.error is not None:
                raise w.error
        self._check()
        batch = self.raw[slot]
        log = self.logs[slot] if self.logs is not None else None
        notes = np.zeros(len(batch), dtype=NOTE_DTYPE) if log is not None and self.parser.dns is not None else None
        for w in self.workers:
            view = w.batches[slot]
            gather(batch, view, w.mine[slot], w.index[slot])
            if notes is not None:
                # the DNS stage's notes, at their packets' input places
                n = len(view)
                take = w.mine[slot][:n].astype(bool)
                notes[w.index[slot][:n][take]] = w.notes[slot][take]
        if log is not None:
            log.capture_dns(notes)
        write(batch, log, bases[slot])

    def _check(self):
        bits = 0
        inserts = 0
        for w in self.workers:
            p = w.pipeline
            bits |= p.shard_unsafe
            if len(p.extra):
                raise Unsafe("kdp made IPv4 fragments or TCP segments (written after their batch)")
            if p.conntrack is not None:
                inserts += p.conntrack.inserts
        if bits:
            raise Unsafe(_reasons(bits))
        if self.capacity and inserts >= self.capacity:
            raise Unsafe(f"{inserts:,} flows: enough to fill the conntrack table "
                         f"({self.capacity:,}), whose early drop chooses among them all")

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
