"""Replay a capture through a node's data plane: read, process, write, log, count."""
import gc
import os
import stat
import time
from pathlib import Path

import numpy as np

from kdp._fast.packet import Batch, LinkType
from kdp.control.cluster import paused_gc
from kdp.dataplane import Dataplane
from kdp.errors import KdpError
from kdp.output import Output
from kdp.io.capture import (CaptureWriter, LogFile, ifindex_ports, interface_indexes, open_capture,
                            refuse_same_file, unlink_for_replacement)
from kdp.summary import RunResult, dns_outcomes


def _output_linktype(reader):
    """Ethernet stays Ethernet; every other input link type is written as raw IP."""
    return LinkType.LT_ETHERNET if reader.linktype == LinkType.LT_ETHERNET else LinkType.LT_RAW


def _build_dataplane(cluster, node, freeze_gc):
    if not freeze_gc:
        return Dataplane.from_snapshot(cluster, node)
    with paused_gc():
        dp = Dataplane.from_snapshot(cluster, node)
        gc.freeze()                     # (built without reference cycles: nothing is kept longer)
    return dp


def replay(capture, output=None, cluster=(), node=None, log=None, ingress=None,
           batch_size=256, progress=False, dataplane=None, links=None,
           all_directions=False, filter=None, count=None, log_only=None, flows=None,
           annotate=False, workers=1, freeze_gc=False, on_ready=None) -> RunResult:
    """Run `capture` through the data plane of `node` in the cluster snapshot `cluster`.

    Returns the run's counters. Forwarded (and rejected: the reply) packets go to
    `output`; `log` gets one JSON line per input packet. "-" is standard input for
    `capture`, standard output for `output` or `log`. `links`: the node's interfaces
    (`ip -j link` output) naming the interface indexes of an SLL2 capture;
    `all_directions`: packets the capture saw leaving the node are input too.
    `filter`: a tcpdump expression (or kdp.filter.PacketFilter): packets it does not
    match are counted (reason `filtered`) but not processed, written or logged.
    `count`: stop after this many packets (with a filter: this many matches), as
    tcpdump's -c. `log_only`: verdict labels ("drop", "reject", ...) the log keeps; the
    other packets get no line. `flows`: the flow log's path (kdp.flowlog: one line per
    flow when it ends, and per flow still live at the end). `annotate`: each written
    packet gets its verdict, reason, Service and NAT as a pcapng comment (kdp.annotate;
    `output` must be pcapng). `workers` (1..64): 2 or more shard the flows over that many
    pipelines (kdp.shards: a classic pcap file in chunks, each worker reading its own
    packets and writing their records and log lines, when the output and the log are
    regular files; otherwise handed over in batches; the same output, log and counters
    as one), or, for the options
    _why_one_worker names (or when sharding turns out unsafe, from the start again), run
    one pipeline and write the output and the log on a second core (kdp.output); a
    notice says which.
    `freeze_gc`: for a one-shot process (the CLI): the data plane is built with Python's
    cyclic collector paused and its objects then frozen out of it (gc.freeze), so no
    collection rescans the snapshot's million objects (~0.15 s of a 10,000-Service start).
    `on_ready`: called once the data plane is built, before the first packet (the CLI
    starts the summary's warm-up there: kdp.summary.warm_in_background).
    An output or log that is the capture (or each other) is refused before anything is
    written (KdpError).
    """
    refuse_same_file(input=capture, output=output, log=log, flows=flows)
    if not 1 <= workers <= 64:
        raise KdpError(f"workers must be 1..64, got {workers}")
    if count is not None and count < 1:
        raise KdpError(f"the packet count (-c) must be at least 1, got {count}")
    log_verdicts = _log_verdicts(log_only)
    if log_verdicts is not None and not log:
        raise KdpError("--log-only chooses the verdict log's lines: give --log FILE too")
    if annotate and (output is None or not _is_pcapng(output)):
        raise KdpError("--annotate writes pcapng packet comments: give an output ending in .pcapng")
    flt = _packet_filter(filter)
    dp = dataplane or _build_dataplane(cluster, node, freeze_gc)
    if on_ready is not None:
        on_ready()
    notices = []
    if workers >= 2:
        why = _why_one_worker(capture, output, log, dataplane, annotate, count, flt, flows)
        plan = None
        if why is None:
            from kdp._fast.shard import ShardPlan
            plan = ShardPlan(dp.pipeline.services, workers)
        if plan is not None:
            from kdp.shards import Unsafe
            try:
                return _replay_sharded(dp, plan, capture, output, log, ingress, batch_size, progress,
                                       links, all_directions, log_verdicts)
            except Unsafe as exc:
                notices.append(f"--workers {workers}: flows could not be sharded ({exc}); "
                               "replayed again from the start on one worker")
                dp.pipeline = dp.node.new_pipeline()      # fresh conntrack, neighbours, counters
        else:
            second = " (the output and the log were written on a second core)" \
                if not annotate and (output is not None or log is not None) else ""
            notices.append(f"--workers {workers}: flows are not sharded when {why}: one worker "
                           f"processed them{second}")
    return _replay_one(dp, capture, output, log, ingress, batch_size, progress, links, all_directions,
                       flt, count, log_verdicts, flows, annotate, workers, notices)


def _why_one_worker(capture, output, log, dataplane, annotate, count, flt, flows):
    """Why a replay with these options is not sharded (None: it is)."""
    if str(capture) == "-":
        return "the capture is standard input (a stream cannot be read again if sharding fails)"
    if "-" in (str(output), str(log)):
        return "the output or the log is standard output (what is written cannot be taken back if sharding fails)"
    if dataplane is not None:
        return "the caller gives its own data plane"
    if annotate:
        return "--annotate is given"
    if count is not None:
        return "-c is given"
    if flt is not None:
        return "--filter is given"
    if flows:
        return "--flows is given (flow records are written as each batch's flows end)"
    return None


def _replay_one(dp, capture, output, log, ingress, batch_size, progress, links, all_directions,
                flt, count, log_verdicts, flows, annotate, workers, notices):
    reader = _open_reader(dp, capture, ingress, links, all_directions)
    threaded = workers >= 2 and not annotate and (output is not None or log is not None)
    batches = [Batch(batch_size) for _ in range(2 if threaded else 1)]
    out = None
    writer = None
    log_file = None
    vlog = None
    flow_log = None
    notes = None
    started = time.perf_counter()
    bar = _progress(reader) if progress and not reader.stream else None
    packets_in = 0
    left = count
    try:
        if log:
            unlink_for_replacement(log)
            log_file = LogFile(log)
            vlog = dp.verdict_log(log_file, batch_size)
        if annotate:
            from kdp.annotate import Annotations
            notes = Annotations(dp, batch_size, user_log=log_file)
            vlog = notes.log        # its lines become the comments (and the log's lines)
        if flows:
            from kdp.flowlog import FlowLog
            flow_log = FlowLog(flows, dp)
        logs = None
        if vlog is not None:
            logs = [vlog, dp.verdict_log(log_file, batch_size)] if threaded else [vlog]
        out = Output(lambda: _open_output(output, reader, dp), logs=logs, notes=notes, threaded=threaded)
        k = 0
        while left is None or left > 0:
            slot = k % len(batches)
            batch = batches[slot]
            out.slot_free(slot)
            n = reader.fill(batch)
            if n == 0:
                break
            if flt is not None:
                flt.apply(batch, drop_unmatched=True)
            if left is not None:
                left = _take(batch, flt, left)
            lg = logs[k % len(logs)] if logs is not None else None
            dp.process(batch, lg)
            if threaded and lg is not None:
                lg.detach_dns()
            keep = _log_keep(batch, flt, log_verdicts) if lg is not None else None
            out.submit(slot, batch, lg, None if keep is None else np.array(keep, copy=True),
                       packets_in, dp.extra if len(dp.extra) else None)   # (extra: IPv4 fragments)
            packets_in += len(batch)
            k += 1
            if flow_log is not None:
                flow_log.drain()
            if bar is not None:
                bar.advance(reader.position)
        writer = out.close()
        if dp.conntrack is not None:
            dp.conntrack.expire_all(dp.pipeline.clock_ns)
        if output is not None and writer is None:
            writer = _open_output(output, reader, dp)
    finally:
        if bar is not None:
            bar.stop()
        try:
            if out is not None and writer is None:
                # an error stopped the replay: stop the writer thread, close what is open
                # (the error already on its way is the one reported)
                try:
                    out.close()
                except Exception:       # noqa: BLE001
                    pass
                writer = out.writer
            if writer is not None:
                writer.close()
            if log_file is not None:
                log_file.close()
            if flow_log is not None:
                flow_log.close()
        finally:
            reader.close()
    result = RunResult(
        packets_in=packets_in,
        counters=dp.counters.copy(),
        verdicts=dp.verdicts.copy(),
        packets_out=int(writer.packets) if writer is not None else 0,
        input_path=str(capture),
        output_path=str(output) if output else None,
        warnings=list(reader.warnings),
        notices=list(dp.notices) + notices + dp.traffic_notices() + _flow_log_notices(flow_log),
        seconds=time.perf_counter() - started,
        flows=dp.flow_counters(),
        dns=dns_outcomes(dp.dns_counters),
        services=dp.service_counts(),
    )
    return result


def _replay_sharded(dp, plan, capture, output, log, ingress, batch_size, progress, links,
                    all_directions, log_verdicts):
    """The replay on plan.workers pipelines (kdp.shards); raises kdp.shards.Unsafe when
    the result could depend on the sharding (the files are then written again)."""
    from kdp.shards import ShardedRun
    reader = _open_reader(dp, capture, ingress, links, all_directions)
    if reader.classic_file and _placeable(output, None) and (log is None or _regular_or_new(log)):
        return _replay_chunked(dp, plan, reader, capture, output, log, batch_size, progress, log_verdicts)
    bar = _progress(reader) if progress and not reader.stream else None
    log_file = None
    run = None
    state = {"writer": None}
    try:
        if log:
            unlink_for_replacement(log)
            log_file = LogFile(log)
        run = ShardedRun(dp, plan, batch_size, log_file)
        started = time.perf_counter()       # (as one worker's: its data plane is built before)

        def write(batch, vlog, base):
            writer = state["writer"]
            if writer is None and output is not None:
                writer = state["writer"] = _open_output(output, reader, dp)
            first_frame = None
            if writer is not None:
                first_frame = writer.packets
                writer.write(batch)
            if vlog is not None:
                keep = _log_keep(batch, None, log_verdicts)
                vlog.write(batch, first_frame=first_frame, keep=keep,
                           indices=np.arange(base, base + len(batch), dtype=np.uint64))

        placed = None
        if _placeable(output, log_file):
            from kdp.shards import PlacedOutput

            def open_writer():
                if output is None:
                    return None
                state["writer"] = _open_output(output, reader, dp)
                return state["writer"]
            placed = PlacedOutput(open_writer, log_file.f.fileno() if log_file is not None else None,
                                  log, lambda batch: _log_keep(batch, None, log_verdicts), run.DEPTH)
        after = (lambda: bar.advance(reader.position)) if bar is not None else None
        packets_in = run.replay(reader, write, after, placed)
        run.finish_flows()
        if output is not None and state["writer"] is None:
            state["writer"] = _open_output(output, reader, dp)
    finally:
        if bar is not None:
            bar.stop()
        try:
            if run is not None:
                run.stop()
            if state["writer"] is not None:
                state["writer"].close()
            if log_file is not None:
                log_file.close()
        finally:
            reader.close()
    return _sharded_result(dp, run, reader, state["writer"], capture, output, packets_in, started)


def _replay_chunked(dp, plan, reader, capture, output, log, batch_size, progress, log_verdicts):
    """_replay_sharded of a classic pcap file in chunks (kdp.shards.ChunkedRun: each
    worker reads, keys, processes and writes its own packets and their log lines)."""
    from kdp.shards import ChunkedRun
    bar = _progress(reader) if progress else None
    writer = None
    log_file = None
    try:
        run = ChunkedRun(dp, plan, batch_size)
        started = time.perf_counter()       # (as one worker's: its data plane is built before)
        if log:                             # (first, as one worker: a log it cannot create leaves no output)
            unlink_for_replacement(log)
            log_file = LogFile(log)
        writer = _open_output(output, reader, dp)
        after = (lambda: bar.advance(reader.position)) if bar is not None else None
        packets_in = run.replay(reader, writer, after, log_file, log_verdicts)
        run.finish_flows()
    finally:
        if bar is not None:
            bar.stop()
        try:
            if writer is not None:
                writer.close()
            if log_file is not None:
                log_file.close()
        finally:
            reader.close()
    return _sharded_result(dp, run, reader, writer, capture, output, packets_in, started)


def _sharded_result(dp, run, reader, writer, capture, output, packets_in, started):
    """The RunResult of a sharded replay: `run`'s counters are the workers' merged."""
    return RunResult(
        packets_in=packets_in,
        counters=run.counters,
        verdicts=run.verdicts,
        packets_out=int(writer.packets) if writer is not None else 0,
        input_path=str(capture),
        output_path=str(output) if output else None,
        warnings=list(reader.warnings),
        notices=list(dp.notices) + Dataplane.traffic_notices(run),
        seconds=time.perf_counter() - started,
        flows=run.flow_counters(),
        dns=dns_outcomes(run.dns_counters),
        services=run.service_counts(),
    )


def _regular_or_new(path):
    """Whether `path` is a regular file or none yet (created as one): a sharded replay's
    chunks write the verdict log there with pwritev(2); a pipe, a device or standard
    output keeps the replay's thread writing it (kdp.shards.ShardedRun)."""
    if str(path) == "-":
        return False
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        return True
    except OSError:
        return False


def _placeable(output, log_file):
    """Whether the workers of a sharded replay may write the output and the log in place
    (kdp.shards.PlacedOutput): classic pcap and regular files (pwrite(2) needs a file;
    pcapng adds each interface's block where its first packet goes, in order)."""
    if output is not None:
        if _is_pcapng(output):
            return False
        try:
            if not stat.S_ISREG(os.stat(output).st_mode):
                return False
        except FileNotFoundError:
            pass                        # (created as a regular file)
        except OSError:
            return False
    if log_file is not None and not stat.S_ISREG(os.fstat(log_file.f.fileno()).st_mode):
        return False
    return True


def _open_reader(dp, capture, ingress, links, all_directions):
    """The capture's reader, its packets' ingress ports named by the data plane's ports."""
    indexes = interface_indexes(links) if links is not None else None
    return open_capture(capture, ports=dp.ports, ingress=ingress,
                        ifindex_ports=ifindex_ports(dp.ports, indexes), all_directions=all_directions)


def _open_output(output, reader, dp):
    """The output capture's writer (None: no output), created anew (unlink_for_replacement)."""
    if output is None:
        return None
    unlink_for_replacement(output)
    return CaptureWriter(output, linktype=_output_linktype(reader), ports=dp.ports)


def _is_pcapng(path):
    return str(path).endswith(".pcapng")


def _flow_log_notices(flow_log):
    if flow_log is None or not flow_log.lost:
        return []
    return [f"the flow log missed {flow_log.lost} flows that ended while its buffer was full "
            f"(more than {flow_log.buffer:,} ended in one batch)"]


def _take(batch, flt, left):
    """-c: keep the packets of `batch` up to the `left`-th one (with a filter: the
    `left`-th match); returns how many are still to take after it."""
    n = len(batch)
    if flt is None:
        if n > left:
            batch.truncate(left)
        return left - len(batch)
    matched = np.cumsum(flt.match[:n] != 0)
    if n and matched[-1] >= left:
        batch.truncate(int(np.searchsorted(matched, left)) + 1)
        return 0
    return left - (int(matched[-1]) if n else 0)


def _log_verdicts(labels):
    """--log-only: the Verdict values the log keeps (None: all)."""
    if labels is None:
        return None
    from kdp.reasons import Verdict
    names = {v.label: v for v in Verdict if v != Verdict.PENDING}
    wanted = [x.strip() for x in (labels.split(",") if isinstance(labels, str) else labels)]
    unknown = [x for x in wanted if x not in names]
    if unknown or not wanted:
        raise KdpError(f"--log-only takes verdicts among {', '.join(names)}; got {', '.join(unknown) or 'none'}")
    return np.array(sorted(int(names[x]) for x in wanted), dtype=np.uint8)


def _log_keep(batch, flt, verdicts):
    """The per-packet keep mask of the log (None: every packet gets a line)."""
    if verdicts is None:
        return flt.match if flt is not None else None
    keep = np.isin(batch.meta["verdict"][:len(batch)], verdicts).astype(np.uint8)
    if flt is not None:
        keep &= flt.match[:len(batch)]
    return keep


def _packet_filter(expression):
    if expression is None:
        return None
    from kdp.filter import PacketFilter
    return expression if isinstance(expression, PacketFilter) else PacketFilter(expression)


class _progress:
    """A rich progress bar over the bytes of the input file."""

    def __init__(self, reader):
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn
        self.progress = Progress("[progress.description]{task.description}", BarColumn(),
                                 DownloadColumn(), TimeRemainingColumn(), transient=True)
        self.task = self.progress.add_task(Path(str(reader.path)).name, total=reader.size)
        self.progress.start()

    def advance(self, position):
        self.progress.update(self.task, completed=position)

    def stop(self):
        self.progress.stop()
