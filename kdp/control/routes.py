"""This node's routes as plain records (NodeRoute), as Calico programs a node's kernel;
the node assembly (kdp.control.node.compile_routes) turns them into the route stage's
kdp._fast.route.Route entries, from which the pipeline builds its LPM.

kinds (most specific prefix wins in the LPM):
  pod        a local pod's address (/32, /128)  -> target "namespace/name" (deliver to its port)
  local-pods this node's pod blocks             -> target node name (blackhole: no such pod,
                                                   as Calico's blackhole route for its blocks)
  node       another node's pod block           -> target node name, via its address: in a
                                                   tunnel (encap IPIP / VXLAN) or natively
  service    a service CIDR                     -> target "services" (service stage owns these)
  host       one of this node's addresses       -> target node name (local delivery); its
                                                   tunnel addresses too
  subnet     one of this node's subnets         -> target "uplink", on-link (the next hop is
                                                   the destination itself)
  default    0.0.0.0/0 and ::/0                 -> target "uplink", via the gateway when known

Where each node's blocks, addresses and tunnels come from, and the MTUs: kdp.control.overlay.
"""
from typing import NamedTuple, Optional

from kdp.control import addr
from kdp.control.overlay import OVERHEAD, POD_PORT_MAC, encapsulation_for, network_of, same_subnet

ORDER = {"pod": 0, "local-pods": 1, "node": 2, "service": 3, "host": 4, "subnet": 5, "default": 6}


class NodeRoute(NamedTuple):
    """One route of this node in Kubernetes terms: prefix -> kind and target."""
    prefix: tuple                   # (version, network int, length)
    kind: str
    target: str
    via: Optional[tuple] = None     # the next hop: the remote node (kind "node"), the gateway
    encap: str = "None"             # None | IPIP | VXLAN (kind "node")
    mtu: int = 0                    # largest IP packet (inside the tunnel for tunnels); 0: none
    vni: int = 0                    # VXLAN
    vxlan_port: int = 0             # VXLAN
    vtep_mac: Optional[bytes] = None  # VXLAN: the remote VTEP's MAC (None: placeholder)
    mac: Optional[bytes] = None     # the next hop's configured MAC (None: learned or placeholder)
    src_mac: Optional[bytes] = None  # the egress port's MAC
    onlink: bool = False            # kind "subnet": the next hop is the destination
    pool: Optional[str] = None      # the IPPool the block belongs to

    @property
    def cidr(self):
        return addr.format_prefix(self.prefix)

    def as_dict(self):
        out = {"prefix": self.cidr, "kind": self.kind, "target": self.target,
               "via": addr.format_ip(self.via) if self.via else None,
               "encap": self.encap, "mtu": self.mtu}
        if self.encap == "VXLAN":
            out["vni"] = self.vni
            out["vxlanPort"] = self.vxlan_port
        if self.pool:
            out["ipPool"] = self.pool
        if self.mac:
            out["mac"] = self.mac.hex(":")
        if self.onlink:
            out["onlink"] = True
        return out


def _remote(net, cluster, neigh, uplink_mac, notices):
    """The routes to the other nodes' blocks, and the (mode, outer family) tunnels they use."""
    out, used = [], set()
    me = net.me
    for name in sorted(net.peers):
        peer = net.peers[name]
        for block in peer.blocks:
            enc, pool = encapsulation_for(net, block)
            mode, fam = enc.mode, block[0]
            outer = 4 if mode == "IPIP" else fam
            if mode == "IPIP" and fam == 6:
                notices.append(f"node {name}: IPv6 block {addr.format_prefix(block)} is routed natively "
                               f"({enc.source}: IP-in-IP; Calico carries IPv6 in VXLAN only)")
                mode = "None"
            endpoint = peer.endpoints.get(outer) if mode != "None" else None
            if mode != "None" and endpoint is None:
                notices.append(f"node {name} has no IPv{outer} address for a {mode} tunnel: its block "
                               f"{addr.format_prefix(block)} is routed natively")
                mode = "None"
            if mode != "None" and enc.when == "CrossSubnet" and same_subnet(me, endpoint):
                mode = "None"
            if mode == "None":
                via = peer.address(fam)        # none of the family: no next hop known
                mtu = net.uplink_mtu
                vni = port = 0
                vtep = None
            else:
                used.add((mode, outer))
                via = endpoint
                mtu = net.tunnel_mtu(mode, outer)
                vni = net.vni if outer == 4 else net.vni_v6
                port = net.vxlan_port if outer == 4 else net.vxlan_port_v6
                vtep = peer.vtep_mac[outer]
            mac = neigh.get(via) or (peer.mac if via is not None and peer.mac is not None else None)
            out.append(NodeRoute(block, "node", name, via, encap=mode, mtu=mtu, vni=vni, vxlan_port=port,
                                 vtep_mac=vtep, mac=mac, src_mac=uplink_mac, pool=pool))
    return out, used


def _enabled_overheads(net, used):
    """The encapsulations enabled for this node's pods (Calico's MTU auto-detection
    sizes pod interfaces for every one enabled, used or not)."""
    enabled = set(used)
    for pool in net.pools:
        if pool.vxlan_mode != "Never":
            enabled.add(("VXLAN", pool.cidr[0]))
        elif pool.ipip_mode != "Never" and pool.cidr[0] == 4:
            enabled.add(("IPIP", 4))
    if net.default.mode != "None":
        for fam in {b[0] for v in net.peers.values() for b in v.blocks}:
            if not (net.default.mode == "IPIP" and fam == 6):
                enabled.add((net.default.mode, 4 if net.default.mode == "IPIP" else fam))
    return [OVERHEAD[k] for k in enabled]


def node_routes(cluster):
    """Routes for cluster.node, in a stable order (kind, then prefix)."""
    cfg = cluster.config
    net = network_of(cluster)
    me = net.me
    neigh = {ip: mac for ip, mac in cfg.neighbours}
    notices = []
    uplink_mac = me.uplink_mac
    remote, used = _remote(net, cluster, neigh, uplink_mac, notices)
    overheads = _enabled_overheads(net, used)
    pod_mtu = net.uplink_mtu - max(overheads, default=0)
    if net.pod_mtu_cap:
        pod_mtu = min(pod_mtu, net.pod_mtu_cap)
    port_macs = {p.pod: p.mac for p in cfg.ports if p.kind == "Pod" and p.pod and p.mac}
    out = []
    for pod in cluster.local_pods():
        target = f"{pod.namespace}/{pod.name}"
        for ip in pod.ips:
            out.append(NodeRoute(addr.host_prefix(ip), "pod", target, mtu=pod_mtu, mac=neigh.get(ip),
                                 src_mac=port_macs.get(target, POD_PORT_MAC)))
    for p in me.blocks:
        out.append(NodeRoute(p, "local-pods", cluster.node))
    out.extend(remote)
    for p in cfg.service_cidrs:
        out.append(NodeRoute(p, "service", "services", mtu=net.uplink_mtu, src_mac=uplink_mac))
    for ip in host_addresses(cluster):
        out.append(NodeRoute(addr.host_prefix(ip), "host", cluster.node))
    for p in me.subnets:
        out.append(NodeRoute(p, "subnet", "uplink", mtu=net.uplink_mtu, src_mac=uplink_mac, onlink=True))
    fams = {ip[0] for ip in cfg.node_addresses} | {p[0] for p in cfg.pod_cidrs}
    for fam in sorted(fams or {4}):
        gw = cfg.gateway if cfg.gateway is not None and cfg.gateway[0] == fam else None
        out.append(NodeRoute((fam, 0, 0), "default", "uplink", gw, mtu=net.uplink_mtu,
                             mac=neigh.get(gw) if gw else None, src_mac=uplink_mac))
    seen, unique = set(), []
    for r in sorted(out, key=lambda r: (ORDER[r.kind], r.prefix)):
        if (r.prefix, r.kind) not in seen:
            seen.add((r.prefix, r.kind))
            unique.append(r)
    for n in net.notices + notices:
        if n not in cluster.notices:
            cluster.notices.append(n)
    return unique


def host_addresses(cluster):
    """The node's own addresses: NodeConfig's (primary of each family first), then the
    tunnel endpoint and tunnel device addresses the annotations add."""
    net = network_of(cluster)
    out = list(cluster.config.node_addresses)
    for ip in net.me.addresses + net.me.tunnel_addresses:
        if ip not in out:
            out.append(ip)
    return out
