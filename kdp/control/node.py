"""Node assembly: everything one node's pipeline needs, compiled from one Cluster.

    node = compile_node(cluster, ports)                  # NodeTables
    pipeline = node.new_pipeline()                       # the first pipeline (with its conntrack)
    new = compile_node(cluster2, ports, previous=node)   # a reload, compiled aside
    change = new.changes_from(node)                      # flows to flush, service-ports renumbered
    pipeline.swap(**new.pipeline.as_kwargs())            # swapped whole between batches

A NodeTables holds the service tables (CompiledTables), the pipeline's tables
(PipelineTables: route table, service tables, tunnel endpoints, the cluster
DNS table), the conntrack settings (ConntrackSettings), the DNS zone's
compiler, the network policy (CompiledPolicy: its tables and decision labels)
and the settings the pipeline is built with. kdp.dataplane.Dataplane only builds the pipeline from it, swaps it in
and flushes what `changes_from` / `update_endpoints` name.

Adding a table (policy rules, tunnel routes, DNS names, ...): a field in
PipelineTables, built in `compile_node`, and the same keyword taken by
`Pipeline.__init__` and `Pipeline.swap` (kdp/_fast/pipeline.pyx). Nothing else
changes: the Dataplane passes PipelineTables by keyword. What a reload must
do to existing flows because of the new table goes into NodeChange.
"""
import dataclasses
import warnings
from typing import NamedTuple, Optional

import numpy as np

from kdp._fast.conntrack import Conntrack, _mem_available
from kdp._fast.decap import TunnelEndpoints
from kdp._fast.natout import NatOutgoing
from kdp._fast.dns import DnsTable
from kdp._fast.parse import VXLAN_PORT
from kdp._fast.pipeline import Pipeline
from kdp._fast.policy import PolicyTables
from kdp._fast.route import Encap, Route, RouteKind, RouteTable
from kdp._fast.service import ServiceTables
from kdp.control import addr
from kdp.control.backends import backend_ip
from kdp.control.compile import compile_cluster, health_check_addresses
from kdp.control.dns import build_zone
from kdp.control.dnswire import DnsCompiler
from kdp.control.model import EndpointSlice
from kdp.control.overlay import network_of
from kdp.control.routes import host_addresses
from kdp.control.policy_compile import compile_policy
from kdp.control.tables import CompiledTables
from kdp.errors import KdpWarning
from kdp.ports import HOST, UPLINK

NO_ID = 0xFFFFFFFF

PLAIN_ROUTES = (Route("0.0.0.0/0", RouteKind.RT_UPLINK, UPLINK, note="default"),
                Route("::/0", RouteKind.RT_UPLINK, UPLINK, note="default"))

# kdp.control route kinds -> what the route stage does with them
ROUTE_KINDS = {
    "pod": RouteKind.RT_LOCAL_POD,
    "local-pods": RouteKind.RT_BLACKHOLE,    # this node's block, no such pod
    "node": RouteKind.RT_REMOTE_NODE,
    "service": RouteKind.RT_UPLINK,          # what the service stage lets through is routed on
    "host": RouteKind.RT_HOST,
    "subnet": RouteKind.RT_UPLINK,           # on-link: the next hop is the destination
    "default": RouteKind.RT_UPLINK,
}
ENCAP = {"None": Encap.ENCAP_NONE, "IPIP": Encap.ENCAP_IPIP, "VXLAN": Encap.ENCAP_VXLAN}


# ------------------------------------------------------------------ the pieces

def pod_port_names(config):
    """{"namespace/name": port name} for pods that NodeConfig names a port for."""
    return {p.pod: p.name for p in config.ports if p.kind == "Pod" and p.pod}


def compile_routes(services, ports):
    """The route stage's Route list for compiled tables (their NodeRoutes); pod
    ports are named by NodeConfig `ports` or else "namespace/name"."""
    config = services.cluster.config
    named = pod_port_names(config)
    out = []
    for r in services.routes:
        kind = ROUTE_KINDS[r.kind]
        port = UPLINK
        if kind == RouteKind.RT_LOCAL_POD:
            port = ports.id_of(named.get(r.target, r.target))
        elif kind == RouteKind.RT_HOST:
            port = HOST
        via = addr.format_ip(r.via) if r.via else None
        encap = ENCAP[r.encap] if kind == RouteKind.RT_REMOTE_NODE else Encap.ENCAP_NONE
        out.append(Route(addr.format_prefix(r.prefix), kind, port, via=via, encap=encap,
                         note=f"{r.kind} {r.target}", mtu=r.mtu, mac=r.mac, src_mac=r.src_mac,
                         onlink=r.onlink, vni=r.vni or 1, vxlan_port=r.vxlan_port or VXLAN_PORT,
                         vtep_mac=r.vtep_mac))
    return out


def pod_port_ids(services, ports):
    """The port ids of this node's pods: where kube-proxy's interface modes of local
    traffic detection (a pod interface name prefix, the pods' bridge) see local traffic."""
    named = pod_port_names(services.cluster.config)
    return [ports.id_of(named.get(r.target, r.target)) for r in services.routes
            if ROUTE_KINDS[r.kind] == RouteKind.RT_LOCAL_POD]


def route_table(services, ports):
    """The route stage's RouteTable of compiled tables: routes, the node's own
    addresses (martians, ICMP source, tunnel source), its VTEP MAC."""
    cluster = services.cluster
    me = network_of(cluster).me
    return RouteTable(compile_routes(services, ports),
                      node_addresses=[addr.format_ip(ip) for ip in host_addresses(cluster)],
                      vtep_mac=me.vtep_mac[4] or me.vtep_mac[6], martians=cluster.config.martians,
                      health_ports=sorted({s.health_check_node_port for s in cluster.services.values()
                                           if s.health_check_node_port}),
                      health_addresses=[addr.format_ip(ip) for ip in health_check_addresses(cluster)])


def tunnels_for(cluster, routes=()):
    """The node's tunnel endpoints when it encapsulates (None: no decapsulation):
    when a route to another node uses a tunnel, an IPPool enables one, or NodeConfig
    names a mode. Tunnels are accepted from the other nodes' addresses only, to any
    of this node's; VXLAN on the IPv6 port too when it differs, with the VNIs in use."""
    net = network_of(cluster)
    enabled = any(r.encap != "None" for r in routes) or net.default.mode != "None" or \
        any(p.ipip_mode != "Never" or p.vxlan_mode != "Never" for p in net.pools)
    if not enabled:
        return None
    peers = [addr.format_ip(ip) for v in net.peers.values() for ip in v.addresses]
    local = [addr.format_ip(ip) for ip in host_addresses(cluster)]
    extra = [net.vxlan_port_v6] if net.vxlan_port_v6 != net.vxlan_port else []
    return TunnelEndpoints(local, peers, vxlan_ports=extra, vnis={net.vni, net.vni_v6})


def nat_outgoing_for(cluster):
    """Calico's natOutgoing for the node's pools (None: no pool has it)."""
    pools = network_of(cluster).pools
    if not any(p.nat_outgoing for p in pools):
        return None
    cfg = cluster.config
    return NatOutgoing([(addr.format_prefix(p.cidr), p.nat_outgoing) for p in pools],
                       [addr.format_ip(ip) for ip in cfg.node_addresses], tuple(cfg.snat_port_range))


MAX_FLOW_MEMORY_SHARE = 0.25    # of MemAvailable: a flow table above it gets a warning


class ConntrackSettings(NamedTuple):
    """What the node's flow table is built with (NodeConfig spec.conntrack and
    the SNAT port range). The table is built once, with the first pipeline, and
    stays across reloads: established flows keep their translation."""
    max_flows: int
    timeouts: dict
    drop_invalid: bool
    port_range: tuple

    def build(self, prefault=True):
        # prefault: a node reserves its flow memory up front, so that new flows never
        # wait for page faults (see Conntrack's docstring); a replay's extra workers
        # (kdp/shards.py) do not: each holds a share of the flows, and faults in its own
        # thread what it touches
        self.warn_if_large()
        return Conntrack(self.max_flows, timeouts=dict(self.timeouts), drop_invalid=self.drop_invalid,
                         port_range=self.port_range, prefault=prefault)


    def warn_if_large(self, share=None):
        """A KdpWarning when the flow table would take more than `share` (default
        MAX_FLOW_MEMORY_SHARE) of the memory the kernel reports available: it is
        reserved whole when the data plane is built, whatever the traffic."""
        share = MAX_FLOW_MEMORY_SHARE if share is None else share
        avail = _mem_available()
        need = int(self.max_flows * Conntrack(4).bytes_per_flow)
        if avail and need > avail * share:
            warnings.warn(KdpWarning(
                f"spec.conntrack.maxFlows: {self.max_flows} flows reserve {need >> 20} MiB up front, "
                f"{100 * need // avail}% of the {avail >> 20} MiB available; the table needs one "
                f"flow per connection alive at once: a smaller maxFlows spares the memory"),
                stacklevel=3)


def conntrack_for(config):
    """ConntrackSettings of a NodeConfig."""
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
    return ConntrackSettings(ct.max_flows, timeouts, ct.drop_invalid, tuple(config.snat_port_range))


# ------------------------------------------------------------------ what changes flush

def listed_addresses(cluster):
    """Every address any endpoint of any Service lists, whatever its conditions."""
    return {ip for key in cluster.services for s in cluster.slices_for(key)
            for e in s.endpoints for ip in e.addresses}


def removed_backends(old, new):
    """(proto, address, port) whose flows must go when CompiledTables `new` replaces `old`.

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


def service_key(obj):
    """(namespace, Service name) an EndpointSlice / Endpoints (mapping or model) belongs
    to; None when the object does not say (validation then refuses it)."""
    if isinstance(obj, EndpointSlice):
        return (obj.namespace, obj.service)
    if not isinstance(obj, dict):
        return None
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    namespace = meta.get("namespace") or "default"
    if obj.get("kind") == "Endpoints":
        return (namespace, meta.get("name"))
    labels = meta.get("labels")
    return (namespace, (labels if isinstance(labels, dict) else {}).get("kubernetes.io/service-name"))


def _backends_of(services, key):
    """backend id -> (proto, ip, port) for the service-ports of one Service."""
    out = {}
    for sid in services.by_service.get(key, ()):
        proto = services.records[sid].protocol
        for local in (False, True):
            for b in services.backends(sid, local):
                out[int(b["id"])] = (proto, backend_ip(b), int(b["port"]))
    return out


# ------------------------------------------------------------------ the assembly

@dataclasses.dataclass(frozen=True)
class PipelineTables:
    """The tables a Pipeline runs on, swapped whole between batches.

    Field names are the keywords of kdp._fast.pipeline.Pipeline(...) and
    Pipeline.swap(...); `as_kwargs()` hands them over. A new table is a new
    field here (built in compile_node) and the same keyword there.
    """
    routes: RouteTable                          # the route stage's LPM and records
    services: Optional[ServiceTables] = None    # None: no Services
    tunnels: Optional[TunnelEndpoints] = None   # None: no decapsulation
    natout: Optional[NatOutgoing] = None        # None: no IPPool with natOutgoing
    dns: Optional[DnsTable] = None              # None: no DNS stage (kdp answers no DNS)
    policy: Optional[PolicyTables] = None       # None: no network policy in the snapshot

    def as_kwargs(self):
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


class NodeChange(NamedTuple):
    """What replacing one NodeTables by another does to existing flows."""
    flush: set                      # (proto, address, port) backends whose flows go
    renumber: Optional[object]      # uint32 old service-port id -> new id (None: no renumbering)


@dataclasses.dataclass(frozen=True)
class NodeTables:
    """Everything one node's pipeline needs (see the module docstring).

    `services` is None (and `cluster` too) for a plain router: everything to
    the uplink, no conntrack.
    """
    cluster: Optional[object]                   # kdp.control.Cluster compiled from
    services: Optional[CompiledTables]          # service-port records, backends, NodeRoutes
    pipeline: PipelineTables
    conntrack: Optional[ConntrackSettings]      # None: stateless (no NAT)
    vxlan_port: int = VXLAN_PORT
    dns: Optional[DnsCompiler] = None           # the cluster DNS zone and its table's compiler
    policy: Optional[object] = None             # CompiledPolicy (kdp.control.policy_compile)
    recheck: bool = False                       # NodeConfig networkPolicy.establishedFlows: Recheck

    @property
    def node(self):
        """This node's name (None: a plain router)."""
        return self.cluster.node if self.cluster is not None else None

    @property
    def notices(self):
        """What the snapshot held that was skipped (unknown kinds...)."""
        return list(self.cluster.notices) if self.cluster is not None else []

    def new_pipeline(self):
        """A Pipeline on these tables with a fresh flow table."""
        return Pipeline(conntrack=self.conntrack.build() if self.conntrack is not None else None,
                        vxlan_port=self.vxlan_port, recheck=self.recheck, **self.pipeline.as_kwargs())

    def policy_names(self):
        """Policy decision labels indexed by decision id (pkt_meta_t pol_egress / pol_ingress)."""
        return list(self.policy.decisions) if self.policy is not None else []

    def changes_from(self, previous):
        """NodeChange when these tables replace `previous` (compiled with previous=it)."""
        if previous.services is None or self.services is None:
            return NodeChange(set(), None)
        return NodeChange(removed_backends(previous.services, self.services),
                          service_renumbering(previous.services, self.services))

    def update_endpoints(self, obj):
        """Apply one new or changed EndpointSlice / v1 Endpoints to the service
        tables in place (CompiledTables.update_endpoints: ConfigError, changing
        nothing, for an invalid object). Returns the (proto, address, port)
        backends whose flows must go, by the rules of removed_backends."""
        before = _backends_of(self.services, service_key(obj))
        removed = self.services.update_endpoints(obj)
        if not removed:
            return set()
        listed = listed_addresses(self.services.cluster)
        gone = set()
        for _svc, ids in removed.items():
            for bid in ids:
                if bid in before:
                    proto, ip, port = before[bid]
                    if proto == 17 or ip not in listed:
                        gone.add((proto, addr.format_ip(ip), port))
        return gone

    def update_dns(self, key):
        """The DNS table after update_endpoints changed Service `key`'s endpoints
        (headless answers, endpoint names, PTRs), to swap into the pipeline; None
        when kdp answers no DNS. Only the names that changed are re-encoded, into a
        delta in front of the whole table (kdp.control.dnswire.DnsCompiler)."""
        if self.dns is None or key is None:
            return None
        return self.dns.update(self.dns.zone.update_service(self.services.cluster, key))


def policy_of(services):
    """The CompiledPolicy of compiled service tables' cluster (None: no policy in the
    snapshot), compiled once and kept with them (a Dataplane built again from the
    same tables does not compile it again)."""
    if not hasattr(services, "policy"):
        services.policy = compile_policy(services.cluster)
    return services.policy


def plain_router():
    """The NodeTables of a node without a snapshot: everything to the uplink."""
    return NodeTables(None, None, PipelineTables(RouteTable(PLAIN_ROUTES)), None)


def compile_node(cluster, ports, previous=None, services=None):
    """Compile a validated Cluster into NodeTables; pod ports are named in `ports`
    (kdp.ports.PortTable).

    `previous` (the NodeTables being replaced) keeps backend ids and Maglev
    tables stable across a reload (see kdp.control.compile). `services`: the
    CompiledTables of `cluster` when already compiled (skips that step).
    """
    if services is None:
        services = compile_cluster(cluster, previous=previous.services if previous is not None else None)
    config = cluster.config
    zone = build_zone(cluster)
    dns = DnsCompiler(zone) if zone is not None else None
    policy = policy_of(services)
    if config.local_traffic_detection in ("InterfaceNamePrefix", "BridgeInterface"):
        services.service.set_pod_ports(pod_port_ids(services, ports))
    tables = PipelineTables(routes=route_table(services, ports),
                            services=services.service,
                            tunnels=tunnels_for(cluster, services.routes),
                            dns=dns.full() if dns is not None else None,
                            natout=nat_outgoing_for(cluster),
                            policy=policy.tables if policy is not None else None)
    return NodeTables(cluster, services, tables, conntrack_for(config),
                      vxlan_port=network_of(cluster).vxlan_port, dns=dns, policy=policy,
                      recheck=config.policy_established == "Recheck")
