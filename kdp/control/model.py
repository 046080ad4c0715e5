"""The validated model of a cluster snapshot: plain Python objects.

Addresses are kept parsed: an IP is ``(version, int)`` and a prefix is
``(version, network int, prefix length)``; ``kdp.control.addr`` converts.
The model is the desired state ("rules are the truth"): every compiled table
can be rebuilt from it. Objects are built by kdp.control.validate only.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field, fields
from typing import Optional

IP = tuple  # (version, int)
Prefix = tuple  # (version, network int, prefix length)

def _pickled_as_fields(cls):
    """Pickle (and copy) objects of a dataclass as cls(*fields): a snapshot holds one
    Endpoint per backend, and this is about twice as fast to load as pickle's default
    for slotted classes, and a third smaller (kdp.control.snapshotcache keeps them).
    Only for classes whose every field is an __init__ argument, with no __post_init__."""
    names = [f.name for f in fields(cls)]
    assert all(f.init for f in fields(cls)) and not hasattr(cls, "__post_init__"), cls
    get = operator.attrgetter(*names)

    def __reduce__(self):
        return cls, get(self)
    cls.__reduce__ = __reduce__
    return cls


PROTOCOLS = {"TCP": 6, "UDP": 17, "SCTP": 132}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOLS.items()}


@_pickled_as_fields
@dataclass(frozen=True, slots=True)
class Origin:
    """Where an object came from: the file and the document (and List item)."""
    path: str
    where: str = ""

    def __str__(self):
        return f"{self.path}{self.where}"


@_pickled_as_fields
@dataclass(slots=True)
class ServicePort:
    name: str
    protocol: int           # IP protocol number (6, 17, 132)
    port: int
    target_port: object     # int, or str (a named port)
    node_port: int = 0      # 0: none


@_pickled_as_fields
@dataclass(slots=True)
class Service:
    namespace: str
    name: str
    type: str                               # ClusterIP | NodePort | LoadBalancer | ExternalName
    cluster_ips: list = field(default_factory=list)      # [IP]; [] when headless / unallocated
    headless: bool = False
    ports: list = field(default_factory=list)            # [ServicePort]
    selector: Optional[dict] = None
    external_ips: list = field(default_factory=list)     # [IP]
    lb_ingress: list = field(default_factory=list)       # [(IP, ipMode "VIP" | "Proxy")]
    lb_source_ranges: list = field(default_factory=list)  # [Prefix]
    affinity_client_ip: bool = False
    affinity_timeout: int = 10800
    external_policy_local: bool = False
    internal_policy_local: bool = False
    external_name: Optional[str] = None
    origin: Optional[Origin] = None
    publish_not_ready: bool = False         # spec.publishNotReadyAddresses (DNS: not-ready endpoints too)
    health_check_node_port: int = 0         # spec.healthCheckNodePort (LoadBalancer, externalTrafficPolicy Local)
    # topology-aware routing asked for (spec.trafficDistribution, else the topology-mode
    # annotation "Auto"; "" when neither): the EndpointSlice controller's cue to write hints
    topology_request: str = ""

    @property
    def key(self):
        return (self.namespace, self.name)


@_pickled_as_fields
@dataclass(slots=True)
class Endpoint:
    addresses: list           # [IP] (kube-proxy uses the first)
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: Optional[str] = None
    target: Optional[str] = None   # "namespace/name" of the Pod, when given
    hostname: Optional[str] = None  # DNS: <hostname>.<service>.<ns>.svc.<zone>
    zone_hints: frozenset = frozenset()  # hints.forZones[].name (topology-aware routing)
    node_hints: frozenset = frozenset()  # hints.forNodes[].name (trafficDistribution PreferSameNode)


@_pickled_as_fields
@dataclass(slots=True)
class EndpointSlice:
    """An EndpointSlice, or the equivalent of one v1 Endpoints subset family."""
    namespace: str
    name: str
    service: str
    address_type: int                          # 4, 6, or 0 (FQDN: not used)
    ports: list = field(default_factory=list)   # [(name, protocol int, port int)]
    endpoints: list = field(default_factory=list)  # [Endpoint]
    from_endpoints: bool = False               # converted from a v1 Endpoints
    origin: Optional[Origin] = None


@dataclass(slots=True)
class Pod:
    namespace: str
    name: str
    node_name: Optional[str]
    ips: list                  # [IP]
    host_network: bool = False
    labels: dict = field(default_factory=dict)
    phase: str = ""
    origin: Optional[Origin] = None
    ports: list = field(default_factory=list)   # [(name, protocol int, port)]: named container ports

    @property
    def finished(self):
        """Succeeded or Failed: its containers are gone and its IP may be another pod's
        (kubelet, kube-proxy and the CNI ignore it)."""
        return self.phase in ("Succeeded", "Failed")


@dataclass(slots=True)
class Namespace:
    name: str
    labels: dict = field(default_factory=dict)
    origin: Optional[Origin] = None


@dataclass(slots=True)
class Node:
    name: str
    pod_cidrs: list = field(default_factory=list)   # [Prefix]
    addresses: list = field(default_factory=list)   # [(type, IP)]: InternalIP, ExternalIP, ...
    origin: Optional[Origin] = None
    labels: dict = field(default_factory=dict)       # (AdminNetworkPolicy node peers)
    overlay: dict = field(default_factory=dict)  # what its Calico / flannel annotations say (kdp.control.overlay)

    def internal_ips(self):
        return [ip for t, ip in self.addresses if t == "InternalIP"]


@dataclass(slots=True)
class IPPool:
    """crd.projectcalico.org/v1 IPPool (kdp.control.calico), or a NodeConfig spec.ipPools entry."""
    name: str
    cidr: Prefix
    block_size: int
    ipip_mode: str = "Never"        # Always | CrossSubnet | Never
    vxlan_mode: str = "Never"
    nat_outgoing: bool = False
    disabled: bool = False
    origin: Optional[Origin] = None


@dataclass(slots=True)
class BlockAffinity:
    """crd.projectcalico.org/v1 BlockAffinity: a pool block claimed by a node."""
    name: str
    node: str
    cidr: Optional[Prefix]
    state: str = "confirmed"        # confirmed | pending | pendingDeletion
    deleted: bool = False
    origin: Optional[Origin] = None


@dataclass(slots=True)
class Conntrack:
    max_flows: int = 262144
    tcp_established_timeout: int = 86400
    tcp_close_wait_timeout: int = 3600
    tcp_syn_timeout: int = 120
    tcp_time_wait_timeout: int = 120
    udp_timeout: int = 30
    udp_stream_timeout: int = 120
    icmp_timeout: int = 30
    generic_timeout: int = 600
    drop_invalid: bool = True


@dataclass(slots=True)
class Dns:
    """Cluster DNS answered in the data plane (docs/nodeconfig.md, `dns`)."""
    enabled: bool = True
    cluster_domain: str = "cluster.local"   # lowercase, no trailing dot
    listen: list = field(default_factory=list)   # [(IP, port)]; []: the ClusterIPs of kube-system/kube-dns, 53
    ttl: int = 5
    pods: str = "insecure"                  # insecure | disabled (CoreDNS `pods`)


@dataclass(slots=True)
class Port:
    """A data-plane port of the node: names a pod's port, and ties a Linux interface (the
    uplink's eth0, a pod's host-side veth) to it for captures (kdp.ports.PortTable)."""
    name: str
    kind: str                  # Pod | Uplink | Host
    pod: Optional[str] = None  # "namespace/name" for kind Pod
    interface: Optional[str] = None   # the Linux interface a capture names
    mac: Optional[bytes] = None    # the port's own MAC (source of frames kdp sends out of it)


@dataclass(slots=True)
class NodeConfig:
    """kdp.dev/v1alpha1 NodeConfig: this node's data-plane settings (docs/nodeconfig.md)."""
    node_name: str
    node_addresses: list = field(default_factory=list)   # [IP]
    pod_cidrs: list = field(default_factory=list)        # [Prefix]
    cluster_cidrs: list = field(default_factory=list)    # [Prefix]
    service_cidrs: list = field(default_factory=list)    # [Prefix]
    node_port_range: tuple = (30000, 32767)
    node_port_addresses: list = field(default_factory=list)  # ["primary"] | [Prefix ...]; [] = mode default
    masquerade_all: bool = False
    snat_port_range: tuple = (1024, 65535)
    encapsulation: str = "None"         # None | IPIP | VXLAN
    encapsulation_when: str = "Always"  # Always | CrossSubnet
    vxlan_port: int = 4789
    vxlan_vni: int = 1
    local_traffic_detection: str = "ClusterCIDR"   # ClusterCIDR | NodeCIDR | None | InterfaceNamePrefix | BridgeInterface
    cluster_cidrs_set: bool = False                # spec.clusterCIDRs was given (even empty)
    localhost_node_ports: bool = True              # kube-proxy --iptables-localhost-nodeports
    localhost_node_ports_set: bool = False         # spec.localhostNodePorts was given
    proxy_mode: str = "nftables"                   # nftables | iptables
    session_affinity_slots: int = 65536
    conntrack: Conntrack = field(default_factory=Conntrack)
    policy_established: str = "Continue"           # Continue | Recheck (established flows on reload)
    dns: Dns = field(default_factory=Dns)
    ports: list = field(default_factory=list)      # [Port]
    origin: Optional[Origin] = None
    # the node's network (kdp.control.overlay; docs/nodeconfig.md); None: derived or default
    encapsulation_set: bool = False     # spec.encapsulation.mode was given
    vxlan_vni_set: bool = False         # spec.encapsulation.vni was given
    vxlan_port_set: bool = False        # spec.encapsulation.vxlanPort was given
    vxlan_port_v6: Optional[int] = None
    vxlan_vni_v6: Optional[int] = None
    pod_mtu: Optional[int] = None       # spec.encapsulation.mtu
    vtep_mac: Optional[bytes] = None    # spec.encapsulation.vtepMAC
    tunnel_addresses: list = field(default_factory=list)  # [IP] spec.encapsulation.tunnelAddresses
    uplink_mtu: int = 1500              # spec.uplink.mtu
    uplink_mac: Optional[bytes] = None  # spec.uplink.mac
    gateway: Optional[IP] = None        # spec.uplink.gateway
    node_subnets: list = field(default_factory=list)      # [Prefix] spec.uplink.subnets / nodeAddresses "ip/len"
    ip_pools: list = field(default_factory=list)          # [IPPool] spec.ipPools (by CIDR over IPPool objects)
    block_affinities: list = field(default_factory=list)  # [(node, Prefix)] spec.blockAffinities
    neighbours: list = field(default_factory=list)        # [(IP, MAC bytes)] spec.neighbours
    martians: bool = True               # spec.martians: drop martian packets from the wire
