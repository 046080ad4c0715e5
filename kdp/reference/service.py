"""The service decision for a new flow, read straight off the validated model.

Slow and obvious on purpose: no compiled tables, no ids, no hashing. Tests
check the compiled decision (kdp._fast.service through CompiledTables.decide)
against it. What it models is kube-proxy's handling of the first packet of a
flow arriving at one node (nftables mode unless NodeConfig says iptables):

* frontends: a Service port answers on its ClusterIP(s) and externalIPs at
  its port, on VIP-mode LoadBalancer ingress IPs (LoadBalancer Services), and
  on the node's NodePort addresses at its nodePort (NodePort and LoadBalancer
  Services). Headless and ExternalName Services have none. NodePort
  addresses (--nodeport-addresses): unset -> each family's primary node
  address in nftables mode, every node address in iptables mode; "primary",
  "all", or node addresses inside the listed CIDRs; per family: a family no
  CIDR (nor "primary") names, or a /0 one, takes every address.
* no frontend matched: in nftables mode a packet to a live ClusterIP is
  rejected (port not exposed, any protocol) and one to an unallocated
  address of a service CIDR is dropped; otherwise it is not a service packet.
* loadBalancerSourceRanges (to an LB ingress IP): the source must be inside
  one of them, else drop; when a range holds a node address, the LB IPs
  themselves are allowed too (the node reaching its own LB loops back).
* endpoints of the port: slices of the address family whose port has the
  Service port's name (else its named targetPort's name); ready endpoints
  serve, and when none is ready serving-and-terminating ones do; the same,
  separately, for this node's endpoints (nodeName, or else the address of a
  pod on this node).
* traffic policy: ClusterIP traffic uses the local set under
  internalTrafficPolicy Local; external traffic (externalIP, LB, NodePort)
  under externalTrafficPolicy Local uses the local set and keeps the client
  address, except traffic from a local pod (cluster set, no masquerade) and
  from the node itself (cluster set, masqueraded).
* local traffic (localTrafficDetection): a source inside the cluster CIDRs
  (ClusterCIDR) or this node's pod CIDRs (NodeCIDR), a packet that arrived on a
  pod's interface (InterfaceNamePrefix, BridgeInterface), nothing (None: the
  no-op detector, whose rules are left out). One detector per IP family: under
  ClusterCIDR / NodeCIDR a family without a CIDR of its own has the no-op one.
* masquerade: ClusterIP traffic when masqueradeAll or the source is not local
  (never for that reason without a detector); external traffic under the Cluster
  policy; always when the chosen backend is the client itself (hairpin). The
  node's own sources include loopback (iptables' --src-type LOCAL).
* localhostNodePorts (iptables mode, IPv4): NodePorts answer on 127.0.0.0/8 too
  (on 127.0.0.1 only when the NodePort addresses are CIDRs, one holding it).
* topology hints (EndpointSlice hints.forNodes / forZones, which the EndpointSlice
  controller writes for trafficDistribution and topology-mode Auto): the cluster set
  keeps the ready endpoints hinted for this node when every ready endpoint has node
  hints and one is for this node, else those hinted for this node's zone label when
  every ready endpoint has zone hints and one is for the zone; else no filtering.
* no endpoint at all: reject; none in the local set it must use: drop.
"""
from typing import NamedTuple, Optional

from kdp.control import addr
from kdp.reasons import Reason

MISS, HIT, DROP, REJECT = "miss", "hit", "drop", "reject"


class Decision(NamedTuple):
    """What the reference decides for one packet."""
    result: str                     # MISS, HIT, DROP or REJECT
    reason: Optional[Reason]        # why DROP / REJECT (None otherwise)
    service_port: Optional[str]     # "namespace/name:port" of the matched service-port
    backends: frozenset             # HIT: the (IP, port) backends the flow may go to
    masquerade: bool                # HIT: masqueraded whatever the backend
    hairpin: frozenset              # HIT: backends that are the client itself (masqueraded too)

    def masquerades(self, backend):
        """Whether a flow sent to `backend` ((IP, port)) is masqueraded."""
        return self.masquerade or backend in self.hairpin


def _verdict(result, reason=None, name=None):
    return Decision(result, reason, name, frozenset(), False, frozenset())


def _family_matches_all(cfg, fam):
    """kube-proxy's NodePortAddresses of one family: does it match every local address?
    Yes for "all" (iptables' empty default), a /0 CIDR of the family, or when nothing
    names the family (no CIDR of it, no "primary": kube-proxy adds 0.0.0.0/0 or ::/0)."""
    setting = cfg.node_port_addresses or (["primary"] if cfg.proxy_mode == "nftables" else ["all"])
    if "all" in setting:
        return True
    mine = [p for p in setting if p != "primary" and p[0] == fam]
    if any(p[2] == 0 for p in mine):
        return True
    has_primary = "primary" in setting and any(ip[0] == fam for ip in cfg.node_addresses)
    return not mine and not has_primary


def node_port_addresses(cfg):
    """The node addresses NodePorts answer on, as a set."""
    primary = {}
    for ip in cfg.node_addresses:
        primary.setdefault(ip[0], ip)
    setting = cfg.node_port_addresses or (["primary"] if cfg.proxy_mode == "nftables" else ["all"])
    out = set()
    for ip in cfg.node_addresses:
        if _family_matches_all(cfg, ip[0]):
            out.add(ip)
        elif "primary" in setting and primary[ip[0]] == ip:
            out.add(ip)
        elif any(p not in ("all", "primary") and addr.prefix_contains(p, ip) for p in setting):
            out.add(ip)
    return out


def _localhost_node_port(cfg, dst_ip):
    """kube-proxy's --iptables-localhost-nodeports (iptables mode, IPv4): is dst_ip a
    loopback address NodePorts answer on? Any of 127.0.0.0/8 when the IPv4 NodePort
    addresses match every local address; 127.0.0.1 (lo's address) when one of their
    CIDRs holds it."""
    if cfg.proxy_mode != "iptables" or not cfg.localhost_node_ports or dst_ip[0] != 4 or dst_ip[1] >> 24 != 127:
        return False
    if _family_matches_all(cfg, 4):
        return True
    return dst_ip == (4, 0x7F000001) and any(item not in ("all", "primary") and addr.prefix_contains(item, dst_ip)
                                             for item in cfg.node_port_addresses)


def _match(cluster, proto, fam, dst_ip, dport, np_addrs):
    """(Service, ServicePort, frontend kind) a packet of family `fam` is addressed
    to, or None; and the set of ClusterIPs of Services that have some."""
    match = None
    live_vips = set()
    for _key, svc in sorted(cluster.services.items()):
        if svc.type == "ExternalName" or svc.headless:
            continue
        live_vips |= set(svc.cluster_ips)
        for cip in svc.cluster_ips:
            if cip[0] != fam:
                continue
            for sp in svc.ports:
                if sp.protocol != proto:
                    continue
                kinds = []
                if dst_ip == cip and dport == sp.port:
                    kinds.append("cluster")
                if dst_ip in svc.external_ips and dport == sp.port:
                    kinds.append("external")
                if svc.type == "LoadBalancer" and dport == sp.port and (dst_ip, "VIP") in svc.lb_ingress:
                    kinds.append("lb")
                if svc.type in ("NodePort", "LoadBalancer") and sp.node_port == dport and dst_ip in np_addrs:
                    kinds.append("nodeport")
                if kinds:
                    match = (svc, sp, kinds[0])
    return match, live_vips


def _endpoint_sets(cluster, svc, sp, fam):
    """(cluster set, local set) of (IP, port) serving one Service port and family."""
    all_ready, all_term, loc_ready, loc_term = set(), set(), set(), set()
    local_pod_ips = {ip for p in cluster.local_pods() for ip in p.ips}
    ready_with_hints = []
    for sl in cluster.slices_for((svc.namespace, svc.name)):
        if sl.address_type != fam:
            continue
        ports = [pn for (nm, pr, pn) in sl.ports if pr == sp.protocol and nm == sp.name]
        if not ports and isinstance(sp.target_port, str):
            ports = [pn for (nm, pr, pn) in sl.ports if pr == sp.protocol and nm == sp.target_port]
        if not ports:
            continue
        for ep in sl.endpoints:
            e = (ep.addresses[0], ports[0])
            is_local = (ep.node_name == cluster.node) if ep.node_name else ep.addresses[0] in local_pod_ips
            if ep.ready:
                all_ready.add(e)
                ready_with_hints.append((e, ep.zone_hints, ep.node_hints))
                if is_local:
                    loc_ready.add(e)
            elif ep.serving and ep.terminating:
                all_term.add(e)
                if is_local:
                    loc_term.add(e)
    return _follow_hints(cluster, all_ready, ready_with_hints) or all_term, loc_ready or loc_term


def _follow_hints(cluster, all_ready, ready_with_hints):
    """kube-proxy's topology-aware routing of the cluster set: follow the node hints
    when every ready endpoint has some and one names this node; else the zone hints when
    every ready endpoint has some and one names this node's zone; else all of them."""
    node = cluster.node
    zone = cluster.nodes[node].labels.get("topology.kubernetes.io/zone", "") if node in cluster.nodes else ""
    for hint in (2, 1):                     # node hints first, then zone hints
        want = node if hint == 2 else zone
        if not want or not ready_with_hints:
            continue
        complete = True
        for item in ready_with_hints:
            if not item[hint]:
                complete = False
        if not complete:
            continue
        kept = {item[0] for item in ready_with_hints if want in item[hint]}
        if kept:
            return kept
    return all_ready


def decide(cluster, proto, src, dst, dport, from_pod_port=False):
    """The Decision for a new flow of protocol number `proto` from address `src` to
    `dst`:`dport` (addresses as text) on cluster.node; `from_pod_port`: it arrived on a
    local pod's interface (what the interface modes of local traffic detection see)."""
    cfg = cluster.config
    src_ip, dst_ip = addr.parse_ip(src), addr.parse_ip(dst)
    fam = src_ip[0]
    nft = cfg.proxy_mode == "nftables"
    np_addrs = node_port_addresses(cfg)
    if _localhost_node_port(cfg, dst_ip):
        np_addrs = np_addrs | {dst_ip}
    match, live_vips = _match(cluster, proto, fam, dst_ip, dport, np_addrs)
    if match is None:                  # any protocol, as nftables' cluster-ips set
        if nft and dst_ip in live_vips:
            return _verdict(REJECT, Reason.SVC_PORT_NOT_EXPOSED)
        if nft and any(addr.prefix_contains(p, dst_ip) for p in cfg.service_cidrs):
            return _verdict(DROP, Reason.SVC_UNALLOCATED_IP)
        return _verdict(MISS)
    svc, sp, kind = match
    name = f"{svc.namespace}/{svc.name}:{sp.name}"
    if kind == "lb" and svc.lb_source_ranges:
        ranges = [p for p in svc.lb_source_ranges if p[0] == fam]
        if any(addr.prefix_contains(p, ip) for p in ranges for ip in cfg.node_addresses):
            ranges += [addr.host_prefix(ip) for ip, m in svc.lb_ingress if m == "VIP" and ip[0] == fam]
        if not any(addr.prefix_contains(p, src_ip) for p in ranges):
            return _verdict(DROP, Reason.SVC_SOURCE_RANGE, name)
    cluster_set, local_set = _endpoint_sets(cluster, svc, sp, fam)
    if not cluster_set and not local_set:
        return _verdict(REJECT, Reason.SVC_NO_ENDPOINTS, name)
    detection = cfg.local_traffic_detection
    local_cidrs = [p for p in (cfg.pod_cidrs if detection == "NodeCIDR" else cfg.cluster_cidrs) if p[0] == fam]
    if detection in ("InterfaceNamePrefix", "BridgeInterface"):
        detector = True
        from_pod = from_pod_port
    elif detection in ("ClusterCIDR", "NodeCIDR") and local_cidrs:
        detector = True                # one detector per family, from a CIDR of the family
        from_pod = any(addr.prefix_contains(p, src_ip) for p in local_cidrs)
    else:
        detector = from_pod = False    # None, or no CIDR of the family: the no-op detector
    from_node = src_ip in cfg.node_addresses or (fam == 4 and src_ip[1] >> 24 == 127)
    masq, use_local = False, False
    if kind == "cluster":
        use_local = svc.internal_policy_local
        masq = cfg.masquerade_all or (not from_pod and detector)
    elif not svc.external_policy_local:
        masq = True
    elif from_pod:
        pass
    elif from_node:
        masq = True
    else:
        use_local = True
    chosen = local_set if use_local else cluster_set
    if not chosen:
        if use_local:
            return _verdict(DROP, Reason.SVC_NO_LOCAL_ENDPOINTS, name)
        return _verdict(REJECT, Reason.SVC_NO_ENDPOINTS, name)
    hairpin = frozenset(e for e in chosen if e[0] == src_ip)
    return Decision(HIT, None, name, frozenset(chosen), masq, hairpin)
