"""Replay a capture through a node's data plane: read, process, write, log, count."""
import time
from pathlib import Path

from kdp._fast.packet import Batch, LinkType
from kdp.dataplane import Dataplane
from kdp.io.capture import (CaptureWriter, LogFile, ifindex_ports, interface_indexes, open_capture,
                            refuse_same_file)
from kdp.io.annotate import AnnotatingWriter, CommentLog
from kdp.observe import FlowLog, ServiceCounts, log_keep, take_first
from kdp.summary import RunResult, dns_outcomes


def _output_linktype(reader):
    """Ethernet stays Ethernet; every other input link type is written as raw IP."""
    return LinkType.LT_ETHERNET if reader.linktype == LinkType.LT_ETHERNET else LinkType.LT_RAW


def replay(capture, output=None, cluster=(), node=None, log=None, ingress=None,
           batch_size=256, progress=False, dataplane=None, links=None,
           all_directions=False, filter=None, count=None, log_only=None,
           flows=None, annotate=False) -> RunResult:
    """Run `capture` through the data plane of `node` in the cluster snapshot `cluster`.

    Returns the run's counters. Forwarded (and rejected: the reply) packets go to
    `output`; `log` gets one JSON line per input packet. "-" is standard input for
    `capture`, standard output for `output` or `log`. `links`: the node's interfaces
    (`ip -j link` output) naming the interface indexes of an SLL2 capture;
    `all_directions`: packets the capture saw leaving the node are input too.
    `filter`: a tcpdump expression (or kdp.filter.PacketFilter): packets it does not
    match are counted (reason `filtered`) but not processed, written or logged.
    `count`: stop after this many packets (with a filter: matching packets), as tcpdump -c;
    `log_only`: the set of Verdict values the log keeps (kdp.observe.parse_log_only);
    `flows`: a path for the flow log (kdp.observe.FlowLog: one JSON line per flow as it ends).
    `annotate`: the output is pcapng with each packet's verdict, reason, Service and NAT as
    its comment (kdp.io.annotate).
    An output or log that is the capture (or each other) is refused before anything is
    written (KdpError).
    """
    refuse_same_file(input=capture, output=output, log=log, flows=flows)
    if annotate:
        _check_annotate(output)
    flt = _packet_filter(filter)
    dp = dataplane or Dataplane.from_snapshot(cluster, node)
    indexes = interface_indexes(links) if links is not None else None
    reader = open_capture(capture, ports=dp.ports, ingress=ingress,
                          ifindex_ports=ifindex_ports(dp.ports, indexes),
                          all_directions=all_directions)
    batch = Batch(batch_size)
    left = count                # -c: packets still to take (None: all)
    cut = 0                     # packets read past the -c limit (not processed, not counted)
    services = ServiceCounts()
    flow_log = None
    writer = None
    log_file = None
    vlog = None
    started = time.perf_counter()
    bar = _progress(reader) if progress and not reader.stream else None
    try:
        if log:
            log_file = LogFile(log)
            vlog = dp.verdict_log(log_file, batch_size)
        if flows:
            flow_log = FlowLog(flows, dp)
        comments = CommentLog(dp, batch_size, vlog) if annotate else None
        while left is None or left > 0:
            if left is not None and left < batch.capacity and flt is None:
                batch = Batch(left)
            n = reader.fill(batch)
            if n == 0:
                break
            if flt is not None:
                flt.apply(batch, drop_unmatched=True)
            if left is not None:
                cut += take_first(batch, left, flt.match if flt is not None else None)
                left -= int(flt.match[:len(batch)].sum()) if flt is not None else len(batch)
            dp.process(batch, comments if comments is not None else vlog)
            services.add(batch)
            if flow_log is not None:
                flow_log.after_batch(batch)
            first_frame = None
            if output is not None:
                if writer is None:
                    writer = AnnotatingWriter(output, dp.ports) if annotate else \
                        CaptureWriter(output, linktype=_output_linktype(reader), ports=dp.ports)
                first_frame = writer.packets
                if comments is not None:
                    writer.write(batch, comments.comments(batch))
                else:
                    writer.write(batch)
                if len(dp.extra):           # IPv4 fragments made from the batch, after it
                    writer.write(dp.extra)
            if vlog is not None:
                vlog.write(batch, first_frame=first_frame,
                           keep=log_keep(batch, log_only, flt.match if flt is not None else None))
            if bar is not None:
                bar.advance(reader.position)
        if output is not None and writer is None:
            writer = AnnotatingWriter(output, dp.ports) if annotate else \
                CaptureWriter(output, linktype=_output_linktype(reader), ports=dp.ports)
        if flow_log is not None:
            flow_log.at_exit()
    finally:
        if bar is not None:
            bar.stop()
        try:
            if writer is not None:
                writer.close()
            if log_file is not None:
                log_file.close()
            if flow_log is not None:
                flow_log.close()
        finally:
            reader.close()
    result = RunResult(
        packets_in=int(reader.packets) - cut,
        counters=dp.counters.copy(),
        verdicts=dp.verdicts.copy(),
        packets_out=int(writer.packets) if writer is not None else 0,
        input_path=str(capture),
        output_path=str(output) if output else None,
        warnings=list(reader.warnings),
        notices=list(dp.notices) + dp.traffic_notices(),
        seconds=time.perf_counter() - started,
        flows=dp.flow_counters(),
        dns=dns_outcomes(dp.dns_counters),
        services=services.by_name(dp.service_names()),
    )
    if flow_log is not None:
        result.warnings.extend(flow_log.warnings())
    result.dataplane = dp          # `kdp show flows`: conntrack as the replay left it
    return result


def _check_annotate(output):
    from kdp.errors import KdpError
    if output is None:
        raise KdpError("--annotate writes the comments into the output capture: give -o OUT.pcapng")
    if output != "-" and not str(output).lower().endswith(".pcapng"):
        raise KdpError(f"--annotate writes pcapng (packet comments need it): name the output "
                       f".pcapng, got {output}")


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
