"""This node's routes as plain records (NodeRoute); the node assembly
(kdp.control.node.compile_routes) turns them into the route stage's
kdp._fast.route.Route entries, from which the pipeline builds its LPM.

kinds (most specific prefix wins in the LPM):
  pod        a local pod's address (/32, /128)  -> target "namespace/name" (deliver to its port)
  local-pods this node's pod CIDR               -> target node name (no such pod: the lead's choice)
  node       another node's pod CIDR            -> target node name, via its InternalIP (encap later)
  service    a service CIDR                     -> target "services" (service stage owns these)
  host       one of this node's addresses       -> target node name (local delivery)
  default    0.0.0.0/0 and ::/0                 -> target "uplink"
"""
from typing import NamedTuple, Optional

from kdp.control import addr


class NodeRoute(NamedTuple):
    """One route of this node in Kubernetes terms: prefix -> kind and target."""
    prefix: tuple            # (version, network int, length)
    kind: str
    target: str
    via: Optional[tuple] = None   # IP of the remote node (kind "node")

    @property
    def cidr(self):
        return addr.format_prefix(self.prefix)

    def as_dict(self):
        return {"prefix": self.cidr, "kind": self.kind, "target": self.target,
                "via": addr.format_ip(self.via) if self.via else None}


def node_routes(cluster):
    """Routes for cluster.node, in a stable order (kind, then prefix)."""
    cfg = cluster.config
    out = []
    for pod in cluster.local_pods():
        for ip in pod.ips:
            out.append(NodeRoute(addr.host_prefix(ip), "pod", f"{pod.namespace}/{pod.name}"))
    for p in cfg.pod_cidrs:
        out.append(NodeRoute(p, "local-pods", cluster.node))
    for name in sorted(cluster.nodes):
        if name == cluster.node:
            continue
        node = cluster.nodes[name]
        internal = node.internal_ips() or [ip for _, ip in node.addresses]
        for p in node.pod_cidrs:
            via = next((ip for ip in internal if ip[0] == p[0]), internal[0] if internal else None)
            out.append(NodeRoute(p, "node", name, via))
    for p in cfg.service_cidrs:
        out.append(NodeRoute(p, "service", "services"))
    for ip in cfg.node_addresses:
        out.append(NodeRoute(addr.host_prefix(ip), "host", cluster.node))
    fams = {ip[0] for ip in cfg.node_addresses} | {p[0] for p in cfg.pod_cidrs}
    for fam in sorted(fams or {4}):
        out.append(NodeRoute((fam, 0, 0), "default", "uplink"))
    order = {"pod": 0, "local-pods": 1, "node": 2, "service": 3, "host": 4, "default": 5}
    seen, unique = set(), []
    for r in sorted(out, key=lambda r: (order[r.kind], r.prefix)):
        if (r.prefix, r.kind) not in seen:
            seen.add((r.prefix, r.kind))
            unique.append(r)
    return unique
