"""`kdp attach --metrics HOST:PORT`: Prometheus metrics, served by prometheus-client.

A collector reads the live loop's counters when Prometheus scrapes (nothing is counted
twice and the packet path pays nothing): packets and bytes per port and direction,
packets per pipeline stage and reason (drops among them), packets, new flows and
rejects per Service port, conntrack's live flows and its counters, ARP answers, and
reloads by result. Names follow Prometheus' conventions (`kdp_..._total` counters).
"""
from kdp.errors import KdpError
from kdp.reasons import Reason, Stage


class Collector:
    """Builds the metric families of an attach.Attached loop at scrape time."""

    def __init__(self, loop):
        self.loop = loop

    def collect(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        loop, dp = self.loop, self.loop.dp
        packets = CounterMetricFamily("kdp_port_packets", "Frames kdp read from (rx) or wrote to (tx) a port",
                                      labels=["port", "device", "direction"])
        octets = CounterMetricFamily("kdp_port_bytes", "Bytes of the frames kdp read or wrote, per port",
                                     labels=["port", "device", "direction"])
        for p in loop.ports:
            packets.add_metric([p.name, p.device, "rx"], p.rx)
            packets.add_metric([p.name, p.device, "tx"], p.tx)
            octets.add_metric([p.name, p.device, "rx"], p.rx_bytes)
            octets.add_metric([p.name, p.device, "tx"], p.tx_bytes)
        yield packets
        yield octets
        stages = CounterMetricFamily("kdp_pipeline_packets", "Packets by the stage and reason that decided them",
                                     labels=["stage", "reason"])
        counters = dp.counters
        for s, r in zip(*counters.nonzero()):
            stages.add_metric([Stage(int(s)).label, Reason(int(r)).label], int(counters[s, r]))
        yield stages
        svc_packets = CounterMetricFamily("kdp_service_packets", "Packets of each Service port's flows",
                                          labels=["service"])
        svc_flows = CounterMetricFamily("kdp_service_new_flows", "Flows each Service port created",
                                        labels=["service"])
        svc_rejects = CounterMetricFamily("kdp_service_rejects", "Packets each Service port rejected",
                                          labels=["service"])
        for name, c in dp.service_counts().items():
            svc_packets.add_metric([name], c["packets"])
            svc_flows.add_metric([name], c["new_flows"])
            svc_rejects.add_metric([name], c["rejects"])
        yield svc_packets
        yield svc_flows
        yield svc_rejects
        ct = dp.flow_counters()
        if ct:
            yield GaugeMetricFamily("kdp_conntrack_flows", "Flows in the conntrack table", value=ct["flows"])
            for key in ("inserts", "expiries", "evictions", "table_full", "invalid", "flushed"):
                yield CounterMetricFamily(f"kdp_conntrack_{key}", f"Conntrack counter {key}", value=ct[key])
        yield CounterMetricFamily("kdp_arp_answered", "ARP requests kdp answered", value=loop.arp_answered)
        yield CounterMetricFamily("kdp_unresolved_dropped", "frames dropped waiting for a local pod's MAC "
                                  "(beyond three a pod, or no answer in 3 s)", value=loop.unresolved_dropped)
        reloads = CounterMetricFamily("kdp_reloads", "Snapshot reloads by result", labels=["result"])
        ok = sum(1 for _t, r in loop.reloads if r.startswith("ok"))
        reloads.add_metric(["ok"], ok)
        reloads.add_metric(["failed"], len(loop.reloads) - ok)
        yield reloads


def serve(loop, where):
    """Serve the loop's metrics on HOST:PORT (a thread of prometheus-client's)."""
    try:
        from prometheus_client import start_http_server
        from prometheus_client.core import CollectorRegistry
    except ImportError:
        raise KdpError("--metrics needs prometheus-client: pip install 'kdp[attach]'") from None
    host, sep, port = where.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise KdpError(f"--metrics takes HOST:PORT, got {where!r}")
    registry = CollectorRegistry()
    registry.register(Collector(loop))
    try:
        return start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=registry)
    except OSError as exc:
        raise KdpError(f"--metrics {where}: cannot listen: {exc.strerror or exc}") from None
