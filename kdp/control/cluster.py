"""The Cluster: a validated snapshot, seen from one node.

``Cluster.load(paths, node="node-1")`` reads files/directories, validates every
object and the snapshot as a whole (duplicates, NodePort clashes, frontends two
Services claim, this node's settings), and raises one ConfigError listing every
problem. ``cluster.notices`` lists what was skipped (unknown kinds...).

This node's settings come from its NodeConfig (kdp.dev/v1alpha1); fields it
leaves out are filled from the v1 Node object of the same name
(spec.podCIDRs, status.addresses), see docs/nodeconfig.md.
"""
import contextlib
import copy
import gc

from kdp.control import addr, apirules
from kdp.control.calico import check_pools
from kdp.control.loader import load_documents, read_texts
from kdp.control.model import NodeConfig, Origin
from kdp.control.policy import CLUSTER_KINDS
from kdp.control.validate import Problems, parse_object


@contextlib.contextmanager
def paused_gc():
    """Bulk building allocates ~10 objects per endpoint and none of them are
    garbage; the cyclic collector would rescan them all many times over (it
    doubled load times). Paused for the duration, restored after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Cluster:
    """Model objects keyed by (namespace, name) (Nodes, Namespaces, NodeConfigs by name)."""

    def __init__(self):
        self.node = None                # this node's name
        self.config = None              # effective NodeConfig for this node
        self.services = {}
        self.slices = {}                # (ns, service) -> {slice name: EndpointSlice}
        self.endpoints = {}             # (ns, service) -> [EndpointSlice from a v1 Endpoints]
        self.pods = {}
        self.namespaces = {}
        self.nodes = {}
        self.policies = {}              # (ns, name) -> NetworkPolicy (kdp.control.policy.Policy)
        self.cluster_policies = {}      # (kind, name) -> AdminNetworkPolicy, ClusterNetworkPolicy, ...
        self.node_configs = {}
        self.ippools = {}               # Calico IPPool by name (kdp.control.calico)
        self.block_affinities = {}      # Calico BlockAffinity by name
        self.notices = []

    # -------------------------------------------------------------- building

    @classmethod
    def load(cls, paths, node=None):
        """Read and validate a snapshot (files and/or directories) for `node`; one that
        validated before, file for file, is read back (kdp.control.snapshotcache)."""
        from kdp.control import snapshotcache
        texts = read_texts(paths)
        if texts is None:               # unreadable: load_documents says why
            return cls.from_documents(load_documents(paths), node=node)
        snapshot_key = snapshotcache.key(texts, node)
        cached = snapshotcache.load(snapshot_key)
        if cached is not None:
            return cached
        cluster = cls.from_documents(load_documents(paths, texts), node=node)
        snapshotcache.store(snapshot_key, cluster)
        return cluster

    @classmethod
    def from_documents(cls, docs, node=None):
        """Validate raw objects: an iterable of mappings or of (Origin, mapping)."""
        with paused_gc():
            return cls._from_documents(docs, node)

    @classmethod
    def _from_documents(cls, docs, node):
        problems = Problems()
        self = cls()
        seen = {}
        for i, item in enumerate(docs):
            if isinstance(item, tuple):
                origin, doc = item
            else:
                origin, doc = Origin("<objects>", f"[{i}]"), item
            parsed = parse_object(origin, doc, problems)
            if parsed is None:
                continue
            kind, obj = parsed
            self._add(kind, obj, origin, seen, problems)
        self.notices = problems.notices
        check_pools(self.ippools.values(), problems)
        self._resolve_node(node, problems)
        if self.config is not None:
            self._check_services(problems)
            self._check_addresses(problems)
            self._note_missing_hints()
        problems.raise_if_any()
        return self

    def _add(self, kind, obj, origin, seen, problems):
        if obj is None:                 # invalid beyond use: its errors are recorded
            return
        if kind == "Endpoints":
            key = (obj[0].namespace, obj[0].service) if obj else None
            if key is None:
                return
            ident = ("Endpoints", key)
            if ident in seen:
                problems.error(origin, f"Endpoints {key[0]}/{key[1]}", "metadata.name",
                               f"duplicate object (also in {seen[ident]})")
                return
            seen[ident] = origin
            self.endpoints[key] = obj
            return
        if kind in CLUSTER_KINDS:
            key = (kind, obj.name)
            label = f"{kind} {obj.name}"
        elif kind in ("Namespace", "Node", "NodeConfig", "IPPool", "BlockAffinity"):
            key = obj.node_name if kind == "NodeConfig" else obj.name
            label = f"{kind} {key}"
        else:
            key = (obj.namespace, obj.name)
            label = f"{kind} {key[0]}/{key[1]}"
        ident = (kind, key)
        if ident in seen:
            problems.error(origin, label, "metadata.name", f"duplicate object (also in {seen[ident]})")
            return
        seen[ident] = origin
        if kind == "Service":
            self.services[key] = obj
        elif kind == "EndpointSlice":
            if obj.service:
                self.slices.setdefault((obj.namespace, obj.service), {})[obj.name] = obj
        elif kind == "Pod":
            self.pods[key] = obj
        elif kind == "Namespace":
            self.namespaces[key] = obj
        elif kind == "Node":
            self.nodes[key] = obj
        elif kind == "NetworkPolicy":
            self.policies[key] = obj
        elif kind == "NodeConfig":
            self.node_configs[key] = obj
        elif kind in CLUSTER_KINDS:
            self.cluster_policies[key] = obj
        elif kind == "IPPool":
            self.ippools[key] = obj
        elif kind == "BlockAffinity":
            self.block_affinities[key] = obj

    def _resolve_node(self, node, problems):
        here = Origin("<snapshot>")
        if node is None:
            names = list(self.node_configs) or list(self.nodes)
            if len(names) != 1:
                problems.error(here, "node", "--node",
                               "name the node to compile for (the snapshot has "
                               f"{len(names)} NodeConfig/Node objects)")
                return
            node = names[0]
        self.node = node
        nc = self.node_configs.get(node)
        kobj = self.nodes.get(node)
        if nc is None and kobj is None:
            problems.error(here, f"node {node}", "--node",
                           "no NodeConfig (kdp.dev/v1alpha1) or v1 Node object names this node")
            return
        cfg = copy.deepcopy(nc) if nc is not None else NodeConfig(node_name=node, origin=here)
        ref = f"NodeConfig {node}"
        if kobj is not None:
            if not cfg.pod_cidrs:
                cfg.pod_cidrs = list(kobj.pod_cidrs)
            if not cfg.node_addresses:
                cfg.node_addresses = [ip for t, ip in kobj.addresses if t == "InternalIP"] + \
                                     [ip for t, ip in kobj.addresses if t == "ExternalIP"]
        if not cfg.node_addresses:
            problems.error(cfg.origin, ref, "spec.nodeAddresses",
                           "is required when no v1 Node object gives status.addresses")
        if not cfg.cluster_cidrs and not cfg.cluster_cidrs_set:
            # kube-proxy needs --cluster-cidr for ClusterCIDR detection; a snapshot does not
            # hold kube-proxy's flags, so unless NodeConfig says (`clusterCIDRs: []`: kube-proxy
            # runs without one) we take every node's pod CIDRs as the cluster's.
            seen = []
            for n in self.nodes.values():
                seen.extend(p for p in n.pod_cidrs if p not in seen)
            seen.extend(p for p in cfg.pod_cidrs if p not in seen)
            # Calico's pools hold the pods' addresses (its IPAM need not use podCIDRs)
            seen.extend(p.cidr for p in list(self.ippools.values()) + cfg.ip_pools if p.cidr not in seen)
            cfg.cluster_cidrs = seen
        if cfg.local_traffic_detection == "ClusterCIDR" and not cfg.cluster_cidrs:
            # kube-proxy then runs a no-op detector: no source is local
            self.notices.append(f"NodeConfig {self.node}: no cluster CIDR (spec.clusterCIDRs): local "
                                f"traffic detection is off, as kube-proxy's without --cluster-cidr "
                                f"(localTrafficDetection: None)")
            cfg.local_traffic_detection = "None"
        elif cfg.local_traffic_detection in ("ClusterCIDR", "NodeCIDR"):
            # kube-proxy builds one detector per family: a family of the node's without a
            # CIDR gets the no-op one (its ClusterIP traffic is never masqueraded for
            # coming from outside the cluster)
            field = "clusterCIDRs" if cfg.local_traffic_detection == "ClusterCIDR" else "podCIDRs"
            have = {p[0] for p in (cfg.cluster_cidrs if field == "clusterCIDRs" else cfg.pod_cidrs)}
            for fam in sorted({ip[0] for ip in cfg.node_addresses} - have if have else ()):
                self.notices.append(f"NodeConfig {self.node}: no IPv{fam} prefix in spec.{field}: no "
                                    f"IPv{fam} traffic is local ({cfg.local_traffic_detection} detection "
                                    f"has no detector for the family, as kube-proxy)")
        if cfg.localhost_node_ports_set and cfg.localhost_node_ports and cfg.proxy_mode != "iptables":
            self.notices.append(f"NodeConfig {self.node}: spec.localhostNodePorts applies to the iptables "
                                f"proxy mode only (kube-proxy ignores it in {cfg.proxy_mode} mode)")
        if cfg.local_traffic_detection == "NodeCIDR" and not cfg.pod_cidrs:
            problems.error(cfg.origin, ref, "spec.localTrafficDetection",
                           "NodeCIDR needs this node's podCIDRs (spec.podCIDRs or the Node's spec.podCIDRs)")
        self.config = cfg

    def _check_services(self, problems):
        lo, hi = self.config.node_port_range
        node_ports, frontends, cluster_ips = {}, {}, {}
        for key in sorted(self.services):
            svc = self.services[key]
            ref = f"Service {key[0]}/{key[1]}"
            for ip in svc.cluster_ips:
                other = cluster_ips.setdefault(ip, key)
                if other != key:
                    problems.error(svc.origin, ref, "spec.clusterIPs",
                                   f"{addr.format_ip(ip)} is also the ClusterIP of {other[0]}/{other[1]}")
            if svc.health_check_node_port:
                # allocated from the NodePort range, so it never shares a port with a NodePort
                hc = svc.health_check_node_port
                if not lo <= hc <= hi:
                    problems.error(svc.origin, ref, "spec.healthCheckNodePort",
                                   f"{hc} is outside the NodePort range {lo}-{hi}")
                other = node_ports.setdefault((6, hc), key)
                if other != key:
                    problems.error(svc.origin, ref, "spec.healthCheckNodePort",
                                   f"{hc} is also used by {other[0]}/{other[1]}")
            for i, p in enumerate(svc.ports):
                if p.node_port:
                    if not lo <= p.node_port <= hi:
                        problems.error(svc.origin, ref, f"spec.ports[{i}].nodePort",
                                       f"{p.node_port} is outside the NodePort range {lo}-{hi}")
                    other = node_ports.setdefault((p.protocol, p.node_port), key)
                    if other != key:
                        problems.error(svc.origin, ref, f"spec.ports[{i}].nodePort",
                                       f"{p.node_port} is also used by {other[0]}/{other[1]}")
                vips = [("spec.clusterIPs", ip) for ip in svc.cluster_ips]
                vips += [("spec.externalIPs", ip) for ip in svc.external_ips]
                if svc.type == "LoadBalancer":
                    vips += [("status.loadBalancer.ingress", ip) for ip, mode in svc.lb_ingress
                             if mode == "VIP"]
                for field, ip in vips:
                    fe = (p.protocol, ip, p.port)
                    other = frontends.setdefault(fe, key)
                    if other != key:
                        problems.error(svc.origin, ref, field,
                                       f"{addr.format_ip(ip)}:{p.port} is also a frontend of "
                                       f"{other[0]}/{other[1]}")

    # -------------------------------------------------------------- queries

    def _note_missing_hints(self):
        """A Service that asks for topology-aware routing whose ready endpoints carry no
        hints: kube-proxy follows only the hints the EndpointSlice controller writes (it
        reads neither trafficDistribution nor the annotation), so every endpoint serves;
        a hand-written snapshot may lack what the controller would have written."""
        for key in sorted(self.services):
            svc = self.services[key]
            if not svc.topology_request:
                continue
            ready = [ep for sl in self.slices_for(key) for ep in sl.endpoints if ep.ready and ep.addresses]
            if ready and not any(ep.zone_hints or ep.node_hints for ep in ready):
                self.notices.append(f"Service {key[0]}/{key[1]}: {svc.topology_request} asks for "
                                    f"topology-aware routing, but no ready endpoint in its EndpointSlices "
                                    f"has hints (the EndpointSlice controller writes them; kube-proxy "
                                    f"follows only hints): every ready endpoint serves")

    def slices_for(self, key):
        """The EndpointSlices of a Service; its v1 Endpoints only when it has no slice."""
        got = self.slices.get(key)
        if got:
            return [got[name] for name in sorted(got)]
        return list(self.endpoints.get(key, ()))

    def local_pods(self):
        """Pods scheduled on this node (not hostNetwork, not finished), sorted by
        namespace/name."""
        return [self.pods[k] for k in sorted(self.pods)
                if self.pods[k].node_name == self.node and not self.pods[k].host_network
                and not self.pods[k].finished]

    def zone(self):
        """This node's topology.kubernetes.io/zone label ("" when none): topology hints."""
        node = self.nodes.get(self.node)
        return node.labels.get("topology.kubernetes.io/zone", "") if node is not None else ""

    def primary_addresses(self):
        """{family: IP}: the first node address of each family."""
        out = {}
        for ip in self.config.node_addresses:
            out.setdefault(ip[0], ip)
        return out

    # -------------------------------------------------------------- API server rules

    def _check_pod_addresses(self, problems):
        """Two running pods with one address: the CNI's IPAM never hands an address out
        twice, so the snapshot is inconsistent (finished and hostNetwork pods own none)."""
        owner = {}
        for key in sorted(self.pods):
            pod = self.pods[key]
            if pod.host_network or pod.finished:
                continue
            for i, ip in enumerate(pod.ips):
                first = owner.setdefault(ip, pod)
                if first is not pod:
                    problems.error(pod.origin, f"Pod {pod.namespace}/{pod.name}", f"status.podIPs[{i}].ip",
                                   f"{addr.format_ip(ip)} is also the address of the running pod "
                                   f"{first.namespace}/{first.name}"
                                   + (f" ({first.origin})" if first.origin else ""))

    def _check_addresses(self, problems):
        """What the API server (its IP allocator, node IPAM) and kubelet would never let
        coexist: ClusterIPs outside the service CIDRs or on a node's address, pod CIDRs
        of two nodes that overlap, a NodeConfig port named like another local pod."""
        cfg = self.config
        owners = {}
        for name in sorted(self.nodes):
            for _t, ip in self.nodes[name].addresses:
                owners.setdefault(ip, f"Node {name}")
        for ip in cfg.node_addresses:
            owners.setdefault(ip, f"NodeConfig {self.node} spec.nodeAddresses")
        for key in sorted(self.services):
            svc = self.services[key]
            ref = f"Service {key[0]}/{key[1]}"
            for i, ip in enumerate(svc.cluster_ips):
                if ip in owners:
                    problems.error(svc.origin, ref, f"spec.clusterIPs[{i}]",
                                   f"{addr.format_ip(ip)} is an address of {owners[ip]}")
                if cfg.service_cidrs:
                    problem = apirules.range_problem(ip, cfg.service_cidrs)
                    if problem:
                        problems.error(svc.origin, ref, f"spec.clusterIPs[{i}]",
                                       f"{addr.format_ip(ip)} {problem} (NodeConfig spec.serviceCIDRs)")
        # pod CIDRs of two nodes overlap: reported on the object of the second (in prefix order)
        blocks = {(f"Node {name}", n.origin): list(n.pod_cidrs)
                  for name, n in self.nodes.items() if name != self.node}
        this = self.nodes.get(self.node)
        from_node = this is not None and not (self.node_configs.get(self.node) and
                                              self.node_configs[self.node].pod_cidrs)
        here = (f"Node {self.node}", this.origin) if from_node else (f"NodeConfig {self.node}", cfg.origin)
        blocks[here] = list(cfg.pod_cidrs)
        for (a, _oa), pa, (b, ob), pb in apirules.overlapping(blocks):
            problems.error(ob, b, "spec.podCIDRs", f"{addr.format_prefix(pb)} overlaps the pod CIDR "
                                                   f"{addr.format_prefix(pa)} of {a}")
        self._check_pod_addresses(problems)
        local = {f"{p.namespace}/{p.name}" for p in self.local_pods()}
        for i, port in enumerate(cfg.ports):
            if port.name in local and port.name != port.pod:
                problems.error(cfg.origin, f"NodeConfig {self.node}", f"spec.ports[{i}].name",
                               f"{port.name!r} is the port name of the local pod {port.name} "
                               f"(a pod's port is named namespace/name unless NodeConfig names it)")

