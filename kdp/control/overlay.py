"""The network between the nodes, as one node sees it: addresses, subnets, pod blocks,
tunnels and MTUs, from NodeConfig, Calico's and flannel's Node annotations and Calico's
IPPool / BlockAffinity objects (kdp.control.calico).

What each setting comes from, first match wins (docs/nodeconfig.md lists the fields):

  a node's addresses     its NodeConfig spec.nodeAddresses; else its Node's InternalIPs,
                         then ExternalIPs; Calico's projectcalico.org/IPv4Address and
                         IPv6Address and flannel's public-ip / public-ipv6 are added
  tunnel endpoint        the NodeConfig's first address of the family; else Calico's
                         IPv4Address / IPv6Address; else flannel's public-ip; else the
                         first address of the family
  subnets (CrossSubnet)  NodeConfig spec.uplink.subnets and nodeAddresses written as
                         "ip/len"; else the prefix of Calico's IPv4Address / IPv6Address
                         (none known: every other node counts as in another subnet)
  pod blocks             the NodeConfig's spec.podCIDRs; else the Node's spec.podCIDRs
                         and the node's confirmed BlockAffinities (NodeConfig
                         spec.blockAffinities assigns a block to a node over them)
  tunnel addresses       NodeConfig spec.encapsulation.tunnelAddresses; else Calico's
                         IPv4IPIPTunnelAddr, IPv4VXLANTunnelAddr, IPv6VXLANTunnelAddr
                         (the node's own addresses: local delivery)
  VTEP MAC               NodeConfig spec.encapsulation.vtepMAC; else Calico's
                         VXLANTunnelMACAddr (V6); else flannel's backend-data VtepMAC;
                         else a placeholder (kdp._fast.route.placeholder_mac)
  uplink MAC             NodeConfig spec.uplink.mac; else the placeholder of the node's
                         primary address (so that nodes agree on each other's MACs)

How a packet reaches another node's block (the route's encapsulation): the IPPool that
holds the block decides (vxlanMode, else ipipMode: Always, CrossSubnet, Never, as
Calico); a block in no pool takes NodeConfig spec.encapsulation when its mode is given;
else, when the snapshot has no IPPool, what the annotations say (flannel's backend-type
vxlan / ipip / host-gw; Calico's VXLAN or IP-in-IP tunnel addresses); else no
encapsulation. CrossSubnet encapsulates
only towards a node whose tunnel endpoint is outside this node's subnets. IP-in-IP
carries IPv4 blocks over IPv4; IPv6 blocks go in VXLAN over IPv6, as Calico does (an
IP-in-IP mode on an IPv6 block routes it natively, with a notice). Without
encapsulation the next hop is the node's address of the block's family.

VXLAN ports and VNIs: NodeConfig's when given; else flannel's (port 8472, the
backend-data VNI); else Calico's defaults when the snapshot has Calico objects or
annotations (4789 / VNI 4096, IPv6 4790 / VNI 6096); else 4789 / VNI 1.

MTUs, as Calico computes them from the uplink's (spec.uplink.mtu, 1500): a tunnel route
carries uplink - 20 (IP-in-IP), - 50 (VXLAN over IPv4), - 70 (VXLAN over IPv6); a pod's
route the uplink's less the largest overhead in use (Calico's veth MTU); native routes
and the uplink the uplink's. spec.encapsulation.mtu caps the pod and tunnel MTUs.
"""
import dataclasses
import json
from typing import Optional

from kdp._fast.route import placeholder_mac
from kdp.control import addr
from kdp.control.calico import pool_fields
from kdp.control.model import IPPool

CALICO = "projectcalico.org/"
FLANNEL = "flannel.alpha.coreos.com/"
CALICO_PORT, CALICO_PORT_V6, CALICO_VNI, CALICO_VNI_V6 = 4789, 4790, 4096, 6096
FLANNEL_PORT = 8472
LINUX_VXLAN_PORT = 4789
OVERHEAD = {("IPIP", 4): 20, ("VXLAN", 4): 50, ("VXLAN", 6): 70}
POD_PORT_MAC = b"\xee\xee\xee\xee\xee\xee"     # Calico's host-side veth MAC
MODES = ("Always", "CrossSubnet", "Never")
# NodeConfig spec fields parse_network reads (besides encapsulation and ports' mac)
NODECONFIG_FIELDS = ("uplink", "ipPools", "blockAffinities", "neighbours", "martians")


# ------------------------------------------------------------------ parsing (validation)

def parse_mac(value):
    """'aa:bb:cc:dd:ee:ff' (or '-' separated) -> 6 bytes; ValueError otherwise."""
    if not isinstance(value, str):
        raise ValueError(f"not a MAC address: {value!r}")
    parts = value.replace("-", ":").split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {value!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not a MAC address: {value!r}") from None


def _mac(c, value, field):
    if value is None:
        return None
    try:
        return parse_mac(value)
    except ValueError:
        c.err(field, f"not a MAC address (aa:bb:cc:dd:ee:ff): {value!r}")
        return None


def _ip_and_subnet(text):
    """'192.168.56.11/24' -> (IP, Prefix or None for a host prefix); a bare address -> (IP, None)."""
    if not isinstance(text, str):
        raise ValueError(f"not an address: {text!r}")
    ip_text, sep, length = text.partition("/")
    ip = addr.parse_ip(ip_text.strip())
    if not sep:
        return ip, None
    prefix = addr.parse_prefix(text)
    return ip, (prefix if prefix[2] < (32 if ip[0] == 4 else 128) else None)


def addresses_with_subnets(c, value, field):
    """NodeConfig spec.nodeAddresses: addresses, each optionally "ip/len" naming its subnet."""
    ips, subnets = [], []
    for i, v in enumerate(c.seq(value, field)):
        try:
            ip, subnet = _ip_and_subnet(v)
        except ValueError:
            c.err(f"{field}[{i}]", f"not an IP address (or address/prefix length): {v!r}")
            continue
        ips.append(ip)
        if subnet is not None and subnet not in subnets:
            subnets.append(subnet)
    return ips, subnets


def node_overlay(meta, c):
    """What a Node's Calico and flannel annotations say, validated (errors name the
    annotation); {} when it has none of them."""
    ann = meta.get("annotations")
    if not isinstance(ann, dict):
        return {}
    out = {}

    def field(key):
        return f"metadata.annotations[{key}]"

    for key, name in (("IPv4Address", "calico_address4"), ("IPv6Address", "calico_address6")):
        v = ann.get(CALICO + key)
        if v is None:
            continue
        try:
            ip, subnet = _ip_and_subnet(v)
            if ip[0] != (4 if key.startswith("IPv4") else 6):
                raise ValueError
            out[name] = (ip, subnet)
        except ValueError:
            c.err(field(CALICO + key), f"not an address/prefix length of its family: {v!r}")
    tunnels = []
    for key in ("IPv4IPIPTunnelAddr", "IPv4VXLANTunnelAddr", "IPv6VXLANTunnelAddr"):
        v = ann.get(CALICO + key)
        if v is None:
            continue
        try:
            ip = addr.parse_ip(v)
            if ip[0] != (4 if key.startswith("IPv4") else 6):
                raise ValueError
        except ValueError:
            c.err(field(CALICO + key), f"not an address of its family: {v!r}")
            continue
        tunnels.append(ip)
        out["calico_ipip" if "IPIP" in key else "calico_vxlan"] = True
    if tunnels:
        out["calico_tunnels"] = tunnels
    for key, name in (("VXLANTunnelMACAddr", "calico_vtep_mac"), ("VXLANTunnelMACAddrV6", "calico_vtep_mac6")):
        mac = _mac(c, ann.get(CALICO + key), field(CALICO + key))
        if mac is not None:
            out[name] = mac
    backend = ann.get(FLANNEL + "backend-type")
    if backend is not None:
        if not isinstance(backend, str) or not backend:
            c.err(field(FLANNEL + "backend-type"), f"must be a backend name (got {backend!r})")
        else:
            out["flannel_backend"] = backend
    for key in ("backend-data", "backend-v6-data"):
        data = ann.get(FLANNEL + key)
        if data in (None, "", "null"):
            continue
        try:
            doc = json.loads(data) if isinstance(data, str) else None
            if not isinstance(doc, dict):
                raise ValueError
        except ValueError:
            c.err(field(FLANNEL + key), f"must be a JSON object (got {data!r})")
            continue
        vni = doc.get("VNI", doc.get("vni"))
        if vni is not None:
            if isinstance(vni, bool) or not isinstance(vni, int) or not 0 <= vni < (1 << 24):
                c.err(field(FLANNEL + key), f"VNI must be an integer in 0..16777215 (got {vni!r})")
            else:
                out["flannel_vni"] = vni
        mac = _mac(c, doc.get("VtepMAC"), field(FLANNEL + key))
        if mac is not None:
            out["flannel_vtep_mac6" if "v6" in key else "flannel_vtep_mac"] = mac
    for key, fam in (("public-ip", 4), ("public-ipv6", 6)):
        v = ann.get(FLANNEL + key)
        if v is None:
            continue
        try:
            ip = addr.parse_ip(v)
            if ip[0] != fam:
                raise ValueError
            out[f"flannel_public{fam}"] = ip
        except ValueError:
            c.err(field(FLANNEL + key), f"not an IPv{fam} address: {v!r}")
    return out


def parse_network(spec, c, nc):
    """The network fields of a NodeConfig spec (the others: kdp.control.validate)."""
    e = c.mapping(spec.get("encapsulation"), "spec.encapsulation")
    known = {"mode", "when", "vxlanPort", "vni", "vxlanPortV6", "vniV6", "mtu", "vtepMAC",
             "tunnelAddresses"}
    for k in e:
        if k not in known:
            c.err(f"spec.encapsulation.{k}", f"unknown field (known: {', '.join(sorted(known))})")
    nc.encapsulation_set = e.get("mode") is not None
    nc.vxlan_vni_set = e.get("vni") is not None
    nc.vxlan_port_set = e.get("vxlanPort") is not None
    nc.vxlan_port_v6 = c.integer(e.get("vxlanPortV6"), "spec.encapsulation.vxlanPortV6", 1, 65535)
    nc.vxlan_vni_v6 = c.integer(e.get("vniV6"), "spec.encapsulation.vniV6", 0, (1 << 24) - 1)
    nc.pod_mtu = c.integer(e.get("mtu"), "spec.encapsulation.mtu", 576, 65535)
    nc.vtep_mac = _mac(c, e.get("vtepMAC"), "spec.encapsulation.vtepMAC")
    nc.tunnel_addresses = c.ips(e.get("tunnelAddresses"), "spec.encapsulation.tunnelAddresses")
    up = c.mapping(spec.get("uplink"), "spec.uplink")
    for k in up:
        if k not in ("mtu", "mac", "gateway", "subnets"):
            c.err(f"spec.uplink.{k}", "unknown field (known: gateway, mac, mtu, subnets)")
    nc.uplink_mtu = c.integer(up.get("mtu"), "spec.uplink.mtu", 576, 65535, default=1500)
    nc.uplink_mac = _mac(c, up.get("mac"), "spec.uplink.mac")
    gw = up.get("gateway")
    nc.gateway = c.ip(gw, "spec.uplink.gateway") if gw is not None else None
    for p in c.prefixes(up.get("subnets"), "spec.uplink.subnets"):
        if p not in nc.node_subnets:
            nc.node_subnets.append(p)
    for i, p in enumerate(c.seq(spec.get("ipPools"), "spec.ipPools")):
        f = f"spec.ipPools[{i}]."
        pool = pool_fields(c.mapping(p, f[:-1]), c, f, origin=c.origin)
        if pool is not None:
            nc.ip_pools.append(pool)
    for i, a in enumerate(c.seq(spec.get("blockAffinities"), "spec.blockAffinities")):
        f = f"spec.blockAffinities[{i}]"
        a = c.mapping(a, f)
        node = c.string(a.get("node"), f + ".node", required=True)
        cidrs = c.prefixes([a.get("cidr")] if a.get("cidr") is not None else None, f + ".cidr")
        if a.get("cidr") is None:
            c.err(f + ".cidr", "is required")
        if node and cidrs:
            nc.block_affinities.append((node, cidrs[0]))
    for i, n in enumerate(c.seq(spec.get("neighbours"), "spec.neighbours")):
        f = f"spec.neighbours[{i}]"
        n = c.mapping(n, f)
        ip = c.ip(n.get("ip"), f + ".ip")
        mac = _mac(c, n.get("mac"), f + ".mac")
        if n.get("mac") is None:
            c.err(f + ".mac", "is required")
        if ip is not None and mac is not None:
            nc.neighbours.append((ip, mac))
    for i, p in enumerate(c.seq(spec.get("ports"), "spec.ports")):
        if isinstance(p, dict) and p.get("mac") is not None and i < len(nc.ports):
            nc.ports[i].mac = _mac(c, p.get("mac"), f"spec.ports[{i}].mac")
    nc.martians = c.boolean(spec.get("martians"), "spec.martians", True)


# ------------------------------------------------------------------ the derived view

@dataclasses.dataclass
class NodeView:
    """What one node knows about a node (itself or another)."""
    name: str
    addresses: list                 # [IP], primary of each family first
    endpoints: dict                 # {family: IP}: tunnel endpoints
    subnets: list                   # [Prefix]
    blocks: list                    # [Prefix]: its pod blocks
    tunnel_addresses: list          # [IP]
    vtep_mac: dict                  # {family: MAC bytes or None}
    mac: Optional[bytes]            # uplink MAC when configured
    flannel_backend: Optional[str] = None
    flannel_vni: Optional[int] = None
    calico_ipip: bool = False
    calico_vxlan: bool = False

    def address(self, family):
        return next((ip for ip in self.addresses if ip[0] == family), None)

    @property
    def uplink_mac(self):
        """The node's uplink MAC: configured, else the placeholder of its primary address."""
        if self.mac is not None:
            return self.mac
        return placeholder_mac(addr.format_ip(self.addresses[0])) if self.addresses else None


@dataclasses.dataclass
class Encapsulation:
    """How packets to one remote block travel."""
    mode: str                       # None | IPIP | VXLAN
    when: str = "Always"            # Always | CrossSubnet (Never: mode None)
    source: str = ""                # what decided: "IPPool x", "NodeConfig", "flannel", "Calico annotations"


@dataclasses.dataclass
class Network:
    """Everything kdp.control.routes needs about the cluster's network, for one node."""
    me: NodeView
    peers: dict                     # {name: NodeView} of the other nodes
    pools: list                     # [IPPool]: effective (objects + NodeConfig overrides)
    default: Encapsulation          # for blocks outside every pool
    vxlan_port: int
    vxlan_port_v6: int
    vni: int
    vni_v6: int
    uplink_mtu: int
    pod_mtu_cap: Optional[int]
    calico: bool                    # Calico objects or annotations in the snapshot
    notices: list

    def pool_of(self, prefix):
        best = None
        for p in self.pools:
            if p.cidr[0] == prefix[0] and p.cidr[2] <= prefix[2] and \
                    addr.prefix_contains(p.cidr, (prefix[0], prefix[1])):
                if best is None or p.cidr[2] > best.cidr[2]:
                    best = p
        return best

    def tunnel_mtu(self, mode, outer_family):
        mtu = self.uplink_mtu - OVERHEAD[(mode, outer_family)]
        return min(mtu, self.pod_mtu_cap) if self.pod_mtu_cap else mtu


def _view(cluster, name, affinities):
    me = name == cluster.node
    explicit = cluster.node_configs.get(name)
    cfg = cluster.config if me else explicit
    node = cluster.nodes.get(name)
    ov = node.overlay if node is not None else {}
    if explicit is not None and explicit.node_addresses:
        addresses = list(explicit.node_addresses)
    elif me:
        addresses = list(cfg.node_addresses)
    else:
        addresses = (node.internal_ips() + [ip for t, ip in node.addresses if t == "ExternalIP"]
                     if node is not None else [])
    endpoints = {}
    for fam in (4, 6):
        calico = ov.get(f"calico_address{fam}")
        cand = None
        if explicit is not None and explicit.node_addresses:
            cand = next((ip for ip in explicit.node_addresses if ip[0] == fam), None)
        if cand is None and calico is not None:
            cand = calico[0]
        if cand is None:
            cand = ov.get(f"flannel_public{fam}")
        if cand is None:
            cand = next((ip for ip in addresses if ip[0] == fam), None)
        if cand is not None:
            endpoints[fam] = cand
        for extra in (calico[0] if calico is not None else None, ov.get(f"flannel_public{fam}"), cand):
            if extra is not None and extra not in addresses:
                addresses.append(extra)
    subnets = list(cfg.node_subnets) if cfg is not None and cfg.node_subnets else \
        [ov[k][1] for k in ("calico_address4", "calico_address6") if k in ov and ov[k][1] is not None]
    if explicit is not None and explicit.pod_cidrs:
        blocks = list(explicit.pod_cidrs)
    else:
        blocks = list(cfg.pod_cidrs) if me else (list(node.pod_cidrs) if node is not None else [])
        for owner, cidr in affinities:
            if owner == name and cidr not in blocks:
                blocks.append(cidr)
    tunnels = list(cfg.tunnel_addresses) if cfg is not None and cfg.tunnel_addresses else \
        list(ov.get("calico_tunnels", ()))
    vtep = {4: None, 6: None}
    if cfg is not None and cfg.vtep_mac is not None:
        vtep = {4: cfg.vtep_mac, 6: cfg.vtep_mac}
    else:
        vtep[4] = ov.get("calico_vtep_mac") or ov.get("flannel_vtep_mac")
        vtep[6] = ov.get("calico_vtep_mac6") or ov.get("flannel_vtep_mac6") or vtep[4]
    return NodeView(name=name, addresses=addresses, endpoints=endpoints, subnets=subnets,
                    blocks=blocks, tunnel_addresses=tunnels, vtep_mac=vtep,
                    mac=cfg.uplink_mac if cfg is not None else None,
                    flannel_backend=ov.get("flannel_backend"), flannel_vni=ov.get("flannel_vni"),
                    calico_ipip=bool(ov.get("calico_ipip")), calico_vxlan=bool(ov.get("calico_vxlan")))


def _affinities(cluster):
    """(node, block) pairs: confirmed, live BlockAffinity objects, with the blocks this
    node's NodeConfig assigns (spec.blockAffinities) taking their CIDRs over."""
    override = {cidr: node for node, cidr in cluster.config.block_affinities}
    out = [(node, cidr) for cidr, node in override.items()]
    for a in sorted(cluster.block_affinities.values(), key=lambda a: a.name):
        if a.cidr is None or a.state != "confirmed" or a.deleted or a.cidr in override:
            continue
        out.append((a.node, a.cidr))
    return out


def _pools(cluster):
    by_cidr = {p.cidr: p for p in sorted(cluster.ippools.values(), key=lambda p: p.name)}
    for p in cluster.config.ip_pools:
        by_cidr[p.cidr] = IPPool(**{f.name: getattr(p, f.name) for f in dataclasses.fields(IPPool)})
    return [by_cidr[k] for k in sorted(by_cidr)]


def _default(cluster, me, peers, pools, notices):
    cfg = cluster.config
    if cfg.encapsulation_set:
        if cfg.encapsulation == "None":
            return Encapsulation("None", source="NodeConfig")
        return Encapsulation(cfg.encapsulation, cfg.encapsulation_when, "NodeConfig")
    if pools:
        # Calico routes its pools' blocks; a block outside them is not Calico's
        return Encapsulation("None", source="no IPPool")
    backends = {v.flannel_backend for v in [me, *peers.values()] if v.flannel_backend}
    if backends:
        backend = me.flannel_backend or sorted(backends)[0]
        if backend == "vxlan":
            return Encapsulation("VXLAN", "Always", "flannel")
        if backend == "ipip":
            return Encapsulation("IPIP", "Always", "flannel")
        if backend != "host-gw":
            notices.append(f"node {me.name}: flannel backend {backend!r} is not one kdp "
                           "encapsulates: blocks of the other nodes are routed natively")
        return Encapsulation("None", source="flannel")
    if me.calico_vxlan or any(v.calico_vxlan for v in peers.values()):
        return Encapsulation("VXLAN", "Always", "Calico annotations")
    if me.calico_ipip or any(v.calico_ipip for v in peers.values()):
        return Encapsulation("IPIP", "Always", "Calico annotations")
    return Encapsulation("None", source="default")


def network_of(cluster):
    """The Network of cluster.node (computed once per Cluster; its notices are added to
    cluster.notices)."""
    cached = getattr(cluster, "_network", None)
    if cached is not None:
        return cached
    cfg = cluster.config
    notices = []
    affinities = _affinities(cluster)
    me = _view(cluster, cluster.node, affinities)
    names = sorted(set(cluster.nodes) | set(cluster.node_configs) | {n for n, _ in affinities})
    peers = {n: _view(cluster, n, affinities) for n in names if n != cluster.node}
    pools = _pools(cluster)
    default = _default(cluster, me, peers, pools, notices)
    flannel = default.source == "flannel"
    calico = bool(pools) or bool(cluster.block_affinities) or default.source == "Calico annotations" or \
        any(v.calico_ipip or v.calico_vxlan for v in [me, *peers.values()])
    if cfg.vxlan_port_set:
        port = cfg.vxlan_port
    else:
        port = FLANNEL_PORT if flannel and default.mode == "VXLAN" else \
            (CALICO_PORT if calico else LINUX_VXLAN_PORT)
    if cfg.vxlan_vni_set:
        vni = cfg.vxlan_vni
    elif flannel and me.flannel_vni is not None:
        vni = me.flannel_vni
    else:
        vni = CALICO_VNI if calico else cfg.vxlan_vni
    port6 = cfg.vxlan_port_v6 or (CALICO_PORT_V6 if calico and not cfg.vxlan_port_set else port)
    vni6 = cfg.vxlan_vni_v6 if cfg.vxlan_vni_v6 is not None else \
        (CALICO_VNI_V6 if calico and not cfg.vxlan_vni_set else vni)
    net = Network(me=me, peers=peers, pools=pools, default=default, vxlan_port=port,
                  vxlan_port_v6=port6, vni=vni, vni_v6=vni6, uplink_mtu=cfg.uplink_mtu,
                  pod_mtu_cap=cfg.pod_mtu, calico=calico, notices=notices)
    cluster._network = net
    return net


def encapsulation_for(net, block):
    """(Encapsulation, pool name or None) for a remote block, before CrossSubnet."""
    pool = net.pool_of(block)
    if pool is None:
        return net.default, None
    if pool.vxlan_mode != "Never":
        return Encapsulation("VXLAN", pool.vxlan_mode, f"IPPool {pool.name}"), pool.name
    if pool.ipip_mode != "Never":
        return Encapsulation("IPIP", pool.ipip_mode, f"IPPool {pool.name}"), pool.name
    return Encapsulation("None", source=f"IPPool {pool.name}"), pool.name


def same_subnet(me, ip):
    return any(addr.prefix_contains(s, ip) for s in me.subnets)
