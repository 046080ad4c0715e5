"""A node's data plane: its compiled tables, its conntrack, and the pipeline.

    dp = Dataplane.from_snapshot(["cluster/"], node="node-1")
    dp.process(batch)          # one batch, in place
    dp.reload(["cluster/"])    # compile aside, swap whole between batches

A snapshot that fails validation raises ConfigError and changes nothing.
Without a snapshot the data plane is a plain router: everything to the uplink.
Cluster DNS (NodeConfig `dns`) is compiled with the other tables: dp.dns_zone is
the zone (kdp.control.dns), None when kdp answers no DNS.
"""
import numpy as np

from kdp._fast.conntrack import Conntrack
from kdp._fast.decap import TunnelEndpoints
from kdp._fast.pipeline import Pipeline
from kdp._fast.route import Encap, Route, RouteKind, RouteTable
from kdp._fast.verdictlog import VerdictLog
from kdp.control import Cluster, compile as compile_cluster
from kdp.control import addr
from kdp.control.dns import build_zone
from kdp.control.dnswire import DnsCompiler
from kdp.errors import ConfigError
from kdp.ports import HOST, UPLINK, PortTable
from kdp.reasons import Reason

NO_ID = 0xFFFFFFFF

_DEFAULT_ROUTES = (Route("0.0.0.0/0", RouteKind.RT_UPLINK, UPLINK, note="default"),
                   Route("::/0", RouteKind.RT_UPLINK, UPLINK, note="default"))

# kdp.control route kinds -> what the route stage does with them
_ROUTE_KINDS = {
    "pod": RouteKind.RT_LOCAL_POD,
    "local-pods": RouteKind.RT_BLACKHOLE,    # this node's block, no such pod
    "node": RouteKind.RT_REMOTE_NODE,
    "service": RouteKind.RT_UPLINK,          # what the service stage lets through is routed on
    "host": RouteKind.RT_HOST,
    "default": RouteKind.RT_UPLINK,
}
_ENCAP = {"None": Encap.ENCAP_NONE, "IPIP": Encap.ENCAP_IPIP, "VXLAN": Encap.ENCAP_VXLAN}


def pod_port_names(config):
    """{"namespace/name": port name} for pods that NodeConfig names a port for."""
    return {p.pod: p.name for p in config.ports if p.kind == "Pod" and p.pod}


def compile_routes(tables, ports):
    """The route stage's Route list for compiled tables; pod ports are named by
    NodeConfig `ports` or else "namespace/name"."""
    config = tables.cluster.config
    named = pod_port_names(config)
    encap = _ENCAP.get(config.encapsulation, Encap.ENCAP_NONE)
    out = []
    for r in tables.routes:
        kind = _ROUTE_KINDS[r.kind]
        port = UPLINK
        if kind == RouteKind.RT_LOCAL_POD:
            port = ports.id_of(named.get(r.target, r.target))
        elif kind == RouteKind.RT_HOST:
            port = HOST
        via = addr.format_ip(r.via) if r.via else None
        out.append(Route(addr.format_prefix(r.prefix), kind, port, via=via,
                         encap=encap if kind == RouteKind.RT_REMOTE_NODE else Encap.ENCAP_NONE,
                         note=f"{r.kind} {r.target}"))
    return out


def tunnels_for(tables):
    """The node's tunnel endpoints when it encapsulates (None: no decapsulation).
    Tunnels are accepted from the other nodes' addresses only."""
    cluster = tables.cluster
    if cluster.config.encapsulation == "None":
        return None
    peers = [addr.format_ip(ip) for name, n in cluster.nodes.items() if name != cluster.node
             for _type, ip in n.addresses if _type in ("InternalIP", "ExternalIP")]
    return TunnelEndpoints([addr.format_ip(ip) for ip in cluster.config.node_addresses], peers)


def conntrack_for(config):
    ct = config.conntrack
    timeouts = {
        "tcp_timeout_established": ct.tcp_established_timeout,
        "tcp_timeout_close_wait": ct.tcp_close_wait_timeout,
        "tcp_timeout_syn_sent": ct.tcp_syn_timeout,
        "tcp_timeout_time_wait": ct.tcp_time_wait_timeout,
        "udp_timeout": ct.udp_timeout,
        "udp_timeout_stream": ct.udp_stream_timeout,
        "icmp_timeout": ct.icmp_timeout,
        "generic_timeout": ct.generic_timeout,
    }
    # prefault: a node reserves its flow memory up front, so that new flows never
    # wait for page faults (see Conntrack's docstring)
    return Conntrack(ct.max_flows, timeouts=timeouts, drop_invalid=ct.drop_invalid,
                     port_range=tuple(config.snat_port_range), prefault=True)


def removed_backends(old, new):
    """(proto, address, port) whose flows must go when `new` replaces `old`.

    As kube-proxy: a UDP (connectionless) backend that left a service-port's usable set
    (ready, or the serving-terminating fallback) has its flows flushed, so they choose
    again. TCP and SCTP flows stay with a terminating backend (graceful termination) and
    go only when the backend is gone: its address listed by no endpoint any more.
    """
    gone = set(old._backend_id_map()) - set(new._backend_id_map())
    listed = listed_addresses(new.cluster)
    return {(proto, addr.format_ip(ip), port) for _name, _fam, proto, ip, port in gone
            if proto == 17 or ip not in listed}


def service_renumbering(old, new):
    """uint32 array: old service-port id -> new id (NO_ID where the service-port is gone)."""
    new_ids = {(r.name, r.ip_ver): r.id for r in new.records}
    return np.array([new_ids.get((r.name, r.ip_ver), NO_ID) for r in old.records], dtype=np.uint32)


def _service_key(obj):
    """(namespace, Service name) an EndpointSlice / Endpoints (mapping or model) belongs to."""
    if not isinstance(obj, dict):
        return (obj.namespace, obj.service)
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    if obj.get("kind") == "Endpoints":
        return (namespace, meta.get("name"))
    return (namespace, (meta.get("labels") or {}).get("kubernetes.io/service-name"))


def listed_addresses(cluster):
    """Every address any endpoint of any Service lists, whatever its conditions."""
    return {ip for key in cluster.services for s in cluster.slices_for(key)
            for e in s.endpoints for ip in e.addresses}


class Dataplane:
    def __init__(self, tables=None, ports=None):
        self.ports = ports or PortTable()
        self.tables = tables
        self.notices = []
        self.dns_zone = None
        self._dns = None                # DnsCompiler of dns_zone
        if tables is None:
            self.pipeline = Pipeline(RouteTable(_DEFAULT_ROUTES))
            return
        config = tables.cluster.config
        self.notices = list(tables.cluster.notices)
        self.dns_zone = build_zone(tables.cluster)
        self._dns = DnsCompiler(self.dns_zone) if self.dns_zone is not None else None
        self.pipeline = Pipeline(RouteTable(compile_routes(tables, self.ports)), tables.service,
                                 conntrack_for(config), vxlan_port=config.vxlan_port,
                                 tunnels=tunnels_for(tables),
                                 dns=self._dns.full() if self._dns is not None else None)

    @classmethod
    def from_snapshot(cls, paths=(), node=None, ports=None):
        """The data plane of `node` in the snapshot at `paths` (none: a plain router)."""
        if not paths:
            return cls(ports=ports)
        return cls(compile_cluster(Cluster.load(paths, node=node)), ports=ports)

    def reload(self, paths, node=None):
        """Compile a new snapshot aside and swap it in whole.

        Conntrack stays: established flows keep their backend while it still
        serves. Flows to backends that went away are flushed (UDP ones then pick
        a new backend with their next packet), whatever mix of Service and
        endpoint changes the new snapshot holds: old and new states are compared
        whole. Returns the number of flows flushed. Raises ConfigError, changing
        nothing, when the snapshot is invalid.
        """
        node = node or (self.tables.cluster.node if self.tables else None)
        tables = compile_cluster(Cluster.load(paths, node=node), previous=self.tables)
        routes = RouteTable(compile_routes(tables, self.ports))
        zone = build_zone(tables.cluster)
        compiler = DnsCompiler(zone) if zone is not None else None
        dns = compiler.full() if compiler is not None else None
        gone = removed_backends(self.tables, tables) if self.tables is not None else set()
        renumbered = service_renumbering(self.tables, tables) if self.tables is not None else None
        if self.pipeline.conntrack is None:
            self.pipeline = Pipeline(routes, tables.service, conntrack_for(tables.cluster.config),
                                     vxlan_port=tables.cluster.config.vxlan_port,
                                     tunnels=tunnels_for(tables), dns=dns)
        else:
            self.pipeline.swap(routes, tables.service, tunnels_for(tables), dns)
        self.dns_zone, self._dns = zone, compiler
        if renumbered is not None and self.pipeline.conntrack is not None:
            self.pipeline.conntrack.renumber_services(renumbered)
        self.tables = tables
        self.notices = list(tables.cluster.notices)
        return self.flush_backends(gone)

    def update_endpoints(self, obj):
        """Apply one new or changed EndpointSlice (or v1 Endpoints) without a full compile.

        Only that Service's tables are rebuilt (cost independent of the number of
        Services). Flows to backends it lost are flushed as on reload: UDP ones at
        once, TCP/SCTP ones when the backend is gone. Returns the flows flushed.
        ConfigError, changing nothing, for an invalid object.
        """
        if self.tables is None:
            raise ConfigError("update_endpoints needs a data plane built from a snapshot")
        key = _service_key(obj)
        before = self._backends_of(key)
        removed = self.tables.update_endpoints(obj)
        self._update_dns(key)
        if not removed:
            return 0
        listed = listed_addresses(self.tables.cluster)
        gone = set()
        for _svc, ids in removed.items():
            for bid in ids:
                if bid in before:
                    proto, ip, port = before[bid]
                    if proto == 17 or ip not in listed:
                        gone.add((proto, addr.format_ip(ip), port))
        return self.flush_backends(gone)

    def _update_dns(self, key):
        """The DNS names of one Service after an endpoint change (headless answers,
        endpoint names, PTRs): only those names are re-encoded, into a delta table
        swapped in front of the whole one (kdp.control.dnswire.DnsCompiler)."""
        if self._dns is None:
            return
        changed = self.dns_zone.update_service(self.tables.cluster, key)
        self.pipeline.swap_dns(self._dns.update(changed))

    def _backends_of(self, key):
        """backend id -> (proto, ip, port) for the service-ports of one Service."""
        out = {}
        for sid in self.tables.by_service.get(key, ()):
            proto = self.tables.records[sid].protocol
            for local in (False, True):
                for b in self.tables.backends(sid, local):
                    ip = (4, int(b["a4"])) if int(b["ip_ver"]) == 4 else \
                        (6, int.from_bytes(bytes(b["a6"]), "big"))
                    out[int(b["id"])] = (proto, ip, int(b["port"]))
        return out

    def flush_backends(self, backends):
        """Delete the flows translated to each (proto, address, port); returns how many."""
        ct = self.pipeline.conntrack
        if ct is None:
            return 0
        return sum(ct.flush_backend(ip, port, proto) for proto, ip, port in sorted(backends))

    @property
    def conntrack(self):
        return self.pipeline.conntrack

    @property
    def counters(self):
        """uint64 [stage, reason]: every packet processed, counted once."""
        return self.pipeline.counters

    @property
    def dns_counters(self):
        """uint64 [DnsOutcome + truncated]: what the DNS stage did with the queries it saw."""
        return self.pipeline.dns_counters

    @property
    def verdicts(self):
        """uint64 [Verdict]: packets processed, by final verdict."""
        return self.pipeline.verdicts

    def process(self, batch, log=None):
        self.pipeline.run(batch, log)

    def service_names(self):
        """Service-port names indexed by service-port id ("namespace/name:port")."""
        if self.tables is None:
            return []
        return [r.name for r in self.tables.records]

    def verdict_log(self, fileobj, batch_size):
        ports = [name for _id, name in self.ports]
        return VerdictLog(fileobj, ports, self.service_names(),
                          [r.label for r in Reason], batch_size)
