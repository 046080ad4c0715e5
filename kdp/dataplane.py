"""A node's data plane: its pipeline, the swap of its tables, the flush of flows.

    dp = Dataplane.from_snapshot(["cluster/"], node="node-1")
    dp.process(batch)          # one batch, in place
    dp.reload(["cluster/"])    # compile aside, swap whole between batches

What the pipeline runs on is compiled by the control layer
(kdp.control.node.compile_node: routes, service tables, tunnel endpoints,
conntrack settings in one NodeTables); this class builds the pipeline from it,
swaps new tables in between batches and flushes the flows a change leaves
behind. A snapshot that fails validation raises ConfigError and changes nothing.
Without a snapshot the data plane is a plain router: everything to the uplink.
Cluster DNS (NodeConfig `dns`) is compiled with the other tables: dp.dns_zone is
the zone (kdp.control.dns), None when kdp answers no DNS. Network policy too:
dp.policy is the CompiledPolicy (kdp.control.policy_compile), None without policies.
"""
from kdp._fast.verdictlog import VerdictLog
from kdp.control import Cluster, compile as compile_cluster
from kdp.control.node import compile_node, plain_router, service_key
from kdp.errors import ConfigError
from kdp.ports import PortTable
from kdp.reasons import Reason, Stage


class Dataplane:
    """One node's data plane: the pipeline, its tables, conntrack and counters.

    Dataplane.from_snapshot(paths, node) compiles a snapshot; `process(batch)` runs a
    batch; `reload(paths)` swaps new tables in between batches; `verdict_log(file, n)`
    makes the JSON Lines writer replay uses. Direct construction: `tables` are the
    node's CompiledTables (None: a plain router), `ports` a kdp.ports.PortTable."""

    def __init__(self, tables=None, ports=None):
        self.ports = ports or PortTable()
        self.node = plain_router() if tables is None else \
            compile_node(tables.cluster, self.ports, services=tables)
        self._name_interfaces()
        self.pipeline = self.node.new_pipeline()
        self._service_counts = {}       # counts of service-port tables swapped out, by name

    def _name_interfaces(self):
        """Capture interfaces -> ports, from NodeConfig `ports[].interface`."""
        cluster = self.node.cluster
        config = cluster.config if cluster is not None else None
        self.ports.set_interfaces({p.interface: p.name for p in config.ports if p.interface}
                                  if config is not None else {})

    @property
    def tables(self):
        """The CompiledTables (service tables) in use; None for a plain router."""
        return self.node.services

    @property
    def notices(self):
        """What the snapshot held that was skipped (unknown kinds...)."""
        return self.node.notices

    @property
    def dns_zone(self):
        """The cluster DNS zone kdp answers (kdp.control.dns.Zone), None when it answers none."""
        return self.node.dns.zone if self.node.dns is not None else None

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
        whole. New flows see the new network policy at once; established ones
        continue, or are judged again at their next packet when NodeConfig sets
        networkPolicy.establishedFlows: Recheck. Returns the number of flows
        flushed. Raises ConfigError, changing nothing, when the snapshot is invalid.
        """
        old = self.node
        new = compile_node(Cluster.load(paths, node=node or old.node), self.ports, previous=old)
        change = new.changes_from(old)
        self._service_counts = self.service_counts()      # the swap numbers service ports anew
        if self.pipeline.conntrack is None:
            self.pipeline = new.new_pipeline()
        else:
            self.pipeline.swap(**new.pipeline.as_kwargs())
            self.pipeline.set_recheck(new.recheck)
        if change.renumber is not None and self.pipeline.conntrack is not None:
            self.pipeline.conntrack.renumber_services(change.renumber)
        self.node = new
        self._name_interfaces()
        return self.flush_backends(change.flush)

    def update_endpoints(self, obj):
        """Apply one new or changed EndpointSlice (or v1 Endpoints) without a full compile.

        Only that Service's tables are rebuilt (cost independent of the number of
        Services). Flows to backends it lost are flushed as on reload: UDP ones at
        once, TCP/SCTP ones when the backend is gone. Returns the flows flushed.
        ConfigError, changing nothing, for an invalid object.
        """
        if self.node.services is None:
            raise ConfigError("update_endpoints needs a data plane built from a snapshot")
        gone = self.node.update_endpoints(obj)
        dns = self.node.update_dns(service_key(obj))
        if dns is not None:
            self.pipeline.swap_dns(dns)
        return self.flush_backends(gone)

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

    def service_counts(self):
        """{"namespace/name:port": {"packets", "new_flows", "rejects"}} for every Service port
        that saw traffic (both IP families of a dual-stack port together), across reloads:
        packets of its flows both ways (and those it rejected), flows it created, packets it
        rejected (no endpoints)."""
        return self.add_service_counters(self.pipeline.service_counters)

    def add_service_counters(self, live):
        """service_counts with `live` (a pipeline's service_counters, or several added)
        as the current tables' counters."""
        from kdp._fast.pipeline import SERVICE_COUNTER_NAMES
        out = {name: dict(c) for name, c in self._service_counts.items()}
        for sid, name in enumerate(self.service_names()):
            if sid >= live.shape[0] or not live[sid].any():
                continue
            c = out.setdefault(name, dict.fromkeys(SERVICE_COUNTER_NAMES, 0))
            for k, key in enumerate(SERVICE_COUNTER_NAMES):
                c[key] += int(live[sid, k])
        return out

    @property
    def verdicts(self):
        """uint64 [Verdict]: packets processed, by final verdict."""
        return self.pipeline.verdicts

    def process(self, batch, log=None, trace=None):
        """Run one Batch through the node's pipeline, in place.

        Every packet gets a verdict, a stage and a reason in `batch.meta` (read them with
        kdp.results), and its bytes are rewritten as it leaves (NAT, TTL, tunnel headers,
        Ethernet addresses); IPv4 fragments kdp makes go to `self.extra`. The counters
        (`self.counters[stage, reason]`) grow by exactly the batch's packet count.
        `log`: a VerdictLog (`verdict_log`) that records the tuples as received; write
        the batch's lines with `log.write(batch)` afterwards. `trace`: a kdp.trace.Tracer
        shown the batch after each stage."""
        self.pipeline.run(batch, log, 0, trace)

    def flow_counters(self):
        """Conntrack's counters, and the flows Calico's natOutgoing masqueraded ({}: no conntrack)."""
        if self.conntrack is None:
            return {}
        out = self.conntrack.counters()
        if self.pipeline.natout is not None:
            out["nat_outgoing"] = int(self.pipeline.natout_flows)
        return out

    @property
    def extra(self):
        """The IPv4 fragments (after the first) the last `process` made: transmitted
        after the batch's own packets, not counted as input."""
        return self.pipeline.extra

    def traffic_notices(self):
        """What the packets processed so far showed that the snapshot did not say."""
        out = []
        n = int(self.counters[Stage.ROUTE, Reason.TUNNEL_NOT_DECAPSULATED])
        if n:
            out.append(f"{n} packet{'s' * (n != 1)} to this node were IP-in-IP or VXLAN (UDP 4789, "
                       "8472 or 4790) that no tunnel settings decapsulate: delivered to the node as "
                       "they came (reason tunnel_not_decapsulated). Set NodeConfig spec.encapsulation "
                       "(mode, vxlanPort, vni), or give the Nodes their Calico / flannel annotations, "
                       "for kdp to decapsulate and route them.")
        return out

    def service_names(self):
        """Service-port names indexed by service-port id ("namespace/name:port")."""
        if self.tables is None:
            return []
        return [r.name for r in self.tables.records]

    @property
    def policy(self):
        """The CompiledPolicy in use (None: no network policy)."""
        return self.node.policy

    def policy_names(self):
        """Policy decision labels indexed by decision id (pkt_meta_t pol_egress / pol_ingress)."""
        return self.node.policy_names()

    def verdict_log(self, fileobj, batch_size, node=None):
        """A VerdictLog writing to `fileobj` (binary). It reads the port table live: ports
        created after it was made (a capture's interfaces, met while reading) are named."""
        return VerdictLog(fileobj, self.ports, self.service_names(),
                          [r.label for r in Reason], batch_size, node=node,
                          policy_names=self.policy_names())
