"""Test helpers shared by the test files (no test module imports another).

* small cluster snapshots as Python objects, and a Harness that sends scapy
  packets through a Dataplane and hands back what came out;
* the service-decision snapshot (base_docs) and a one-packet decide() over
  CompiledTables;
* conntrack stage runs: scapy packets -> parse -> lookup -> create -> NAT;
* the parse reference: scapy packet generators (frame) and the metadata
  scapy's dissection of the same bytes gives (expected);
* NG: a pcapng file crafted block by block.
"""
import ipaddress
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from hypothesis import strategies as st
from scapy.layers.inet import (ICMP, IP, TCP, UDP, ICMPerror, IPerror, IPOption_NOP, IPOption_RR,
                               TCPerror, UDPerror)
from scapy.layers.inet6 import (
    IPv6, IPerror6, ICMPv6DestUnreach, ICMPv6PacketTooBig, ICMPv6TimeExceeded,
    ICMPv6ParamProblem, ICMPv6EchoRequest, ICMPv6EchoReply,
    IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.sctp import SCTP, SCTPerror
from scapy.layers.vxlan import VXLAN
from scapy.packet import Raw, bind_layers, raw

from kdp._fast.nat import nat
from kdp._fast.packet import META_DTYPE, NO_PORT_ID, Batch
from kdp._fast.parse import parse
from kdp.control import Cluster, compile
from kdp.dataplane import Dataplane
from kdp.reasons import CtState, Reason, Verdict

NODE1, NODE2 = "192.168.56.11", "192.168.56.12"
NODE1_V6 = "fd00:56::11"
CLIENT, WEB1, WEB2 = "10.244.1.50", "10.244.1.10", "10.244.2.10"
CLIENT6, WEB1_6, WEB2_6 = "fd00:244:1::50", "fd00:244:1::10", "fd00:244:2::10"
OUTSIDE = "198.51.100.7"

# the real captures of other projects (CI clones the project with shared/ beside it;
# test_real_captures.py fails when they are missing)
SHARED_CAPTURES = Path(__file__).resolve().parents[1].parent / "shared" / "captures"


def shared_capture_files():
    """The .pcap and .pcapng files of SHARED_CAPTURES, sorted (none when it is missing)."""
    if not SHARED_CAPTURES.is_dir():
        return []
    return sorted(p for p in SHARED_CAPTURES.glob("*") if p.suffix in (".pcap", ".pcapng"))
MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def node_config(**spec):
    base = {"clusterCIDRs": ["10.244.0.0/16", "fd00:244::/48"],
            "serviceCIDRs": ["10.96.0.0/16", "fd00:96::/112"],
            "nodeAddresses": [NODE1, NODE1_V6],
            "masquerade": {"snatPortRange": "32768-60999"}}
    base.update(spec)
    return {"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig",
            "metadata": {"name": "node-1"}, "spec": base}


def node(name, address, cidrs):
    return {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
            "spec": {"podCIDRs": cidrs},
            "status": {"addresses": [{"type": "InternalIP", "address": address}]}}


def pod(namespace, name, node_name, *ips):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": namespace, "name": name},
            "spec": {"nodeName": node_name},
            "status": {"phase": "Running", "podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]}}


def service(name, ports, cluster_ips=("10.96.0.10",), namespace="shop", **spec):
    s = {"type": "ClusterIP", "clusterIP": cluster_ips[0], "clusterIPs": list(cluster_ips),
         "ipFamilies": ["IPv6" if ":" in ip else "IPv4" for ip in cluster_ips],
         "ports": ports, "selector": {"app": name}}
    status = spec.pop("status", {})
    s.update(spec)
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": namespace, "name": name},
            "spec": s, "status": status}


def port(name, number, target, protocol="TCP", node_port=None):
    p = {"name": name, "protocol": protocol, "port": number, "targetPort": target}
    if node_port:
        p["nodePort"] = node_port
    return p


def endpoint(address, node_name, ready=True, serving=None, terminating=False):
    cond = {"ready": ready, "serving": ready if serving is None else serving, "terminating": terminating}
    return {"addresses": [address], "conditions": cond, "nodeName": node_name}


def endpoint_slice(service_name, ports, endpoints, namespace="shop", family="IPv4", suffix="a"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"namespace": namespace, "name": f"{service_name}-{suffix}",
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": family,
            "ports": [{"name": n, "protocol": proto, "port": p} for n, proto, p in ports],
            "endpoints": endpoints}


def base_objects(**config):
    return [
        node_config(**config),
        node("node-1", NODE1, ["10.244.1.0/24", "fd00:244:1::/64"]),
        node("node-2", NODE2, ["10.244.2.0/24", "fd00:244:2::/64"]),
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
        pod("shop", "client", "node-1", CLIENT, CLIENT6),
        pod("shop", "web-1", "node-1", WEB1, WEB1_6),
        pod("shop", "web-2", "node-2", WEB2, WEB2_6),
    ]


def write_snapshot(directory: Path, objects) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "cluster.yaml"
    path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    return directory


@dataclass
class Sent:
    """What became of one packet."""
    verdict: Verdict
    reason: Reason
    ct: CtState
    out_port: str | None
    service: str | None
    packet: object          # the packet as transmitted (scapy Ether), or as it stood when dropped
    inner: object = None    # encapsulated by kdp: the packet inside the tunnel (scapy IP / IPv6)

    @property
    def ip(self):
        """The IP packet carried: the inner one when kdp encapsulated it."""
        if self.inner is not None:
            return self.inner
        return self.outer

    @property
    def outer(self):
        """The outermost IP header as transmitted."""
        return self.packet[IP] if IP in self.packet else self.packet[IPv6]

    @property
    def dst(self):
        return (self.ip.dst, self.ip.payload.dport)

    @property
    def src(self):
        return (self.ip.src, self.ip.payload.sport)


class Harness:
    """Sends scapy packets through a Dataplane, one batch per send()."""

    def __init__(self, tmp_path, objects, node_name="node-1"):
        self.tmp_path = tmp_path
        self.dp = Dataplane.from_snapshot([write_snapshot(tmp_path / "snap0", objects)], node_name)
        self.clock = 1_700_000_000 * 10**9
        self.reloads = 0

    def reload(self, objects):
        self.reloads += 1
        return self.dp.reload([write_snapshot(self.tmp_path / f"snap{self.reloads}", objects)])

    def send(self, *packets, advance_s=0.001, in_port=None):
        """Process the packets as one batch; returns a Sent per packet."""
        b = Batch(max(len(packets), 1))
        for p in packets:
            if not isinstance(p, Ether):
                p = Ether(src=MAC_A, dst=MAC_B) / p
            self.clock += int(advance_s * 1e9)
            port = None if in_port is None else self.dp.ports.id_of(in_port)
            b.append(raw(p), ts_ns=self.clock, in_port=port)
        self.dp.process(b)
        names = self.dp.service_names()
        out = []
        for i in range(len(b)):
            m = b.meta[i]
            svc = None if m["svc_port"] == 0xFFFFFFFF else names[m["svc_port"]]
            port = None if m["out_port"] == 0xFFFF else self.dp.ports.name_of(int(m["out_port"]))
            data = b.packet(i)
            out.append(Sent(Verdict(m["verdict"]), Reason(m["reason"]), CtState(m["ct_state"]),
                            port, svc, as_ether(data, int(m["linktype"])), inner_packet(data, m)))
        return out if len(out) > 1 else out[0]


def inner_packet(data, m):
    """The IP packet inside a tunnel kdp put a packet in (meta `encap`), else None."""
    if not m["encap"]:
        return None
    at = int(m["inner_off"]) + (14 if int(m["encap"]) == 2 else 0)     # VXLAN: inner Ethernet
    inner = data[at:]
    return IP(inner) if inner[0] >> 4 == 4 else IPv6(inner)


def as_ether(data, linktype):
    """The frame as scapy Ether; raw IP frames (after decapsulation) get a blank Ethernet header."""
    if linktype == 1:
        return Ether(data)
    return Ether() / (IP(data) if data[0] >> 4 == 4 else IPv6(data))


def addr(text):
    return str(ipaddress.ip_address(text))


# ------------------------------------------------------------------ service decision

NODE = "node-1"


def svc_doc(name, ip, port=80, target=8080, ns="shop", **spec):
    ips = ip if isinstance(ip, list) else [ip]
    p = {"name": "p", "protocol": spec.pop("protocol", "TCP"), "port": port, "targetPort": target}
    if "nodePort" in spec:
        p["nodePort"] = spec.pop("nodePort")
    status = spec.pop("status", None)
    doc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
           "spec": {"clusterIP": ips[0], "clusterIPs": ips, "ports": [p], **spec}}
    if status:
        doc["status"] = status
    return doc


def slice_doc(svc, eps, port=8080, fam="IPv4", ns="shop", name=None, pname="p", proto="TCP"):
    """eps: [(address, node, ready, serving, terminating)] (conditions default ready)."""
    out = []
    for e in eps:
        addr, node, *cond = e
        ready, serving, terminating = (cond + [True, True, False][len(cond):]) if cond else (True, True, False)
        out.append({"addresses": [addr], "nodeName": node,
                    "conditions": {"ready": ready, "serving": serving, "terminating": terminating}})
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name or f"{svc}-{fam.lower()}", "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": fam, "ports": [{"name": pname, "protocol": proto, "port": port}],
            "endpoints": out}


def base_docs(**nodeconfig):
    spec = {"nodeAddresses": ["192.168.56.11", "10.0.0.11", "fd00::11"],
            "podCIDRs": ["10.244.1.0/24", "fd00:244:1::/64"],
            "clusterCIDRs": ["10.244.0.0/16", "fd00:244::/32"],
            "serviceCIDRs": ["10.96.0.0/16", "fd00:96::/112"],
            "masquerade": {"snatPortRange": "32768-60999"}}
    spec.update(nodeconfig)
    docs = [
        {"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": NODE}, "spec": spec},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-2"},
         "spec": {"podCIDRs": ["10.244.2.0/24"]},
         "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.12"}]}},
        svc_doc("web", ["10.96.0.10", "fd00:96::10"], ipFamilyPolicy="PreferDualStack"),
        slice_doc("web", [("10.244.1.10", NODE), ("10.244.2.10", "node-2")]),
        slice_doc("web", [("fd00:244:1::10", NODE)], fam="IPv6"),
        svc_doc("np", "10.96.0.20", type="NodePort", nodePort=30080),
        slice_doc("np", [("10.244.2.20", "node-2")]),
        svc_doc("lb", "10.96.0.30", port=443, target=8443, type="LoadBalancer", nodePort=30443,
             externalTrafficPolicy="Local", loadBalancerSourceRanges=["198.51.100.0/24"],
             status={"loadBalancer": {"ingress": [{"ip": "203.0.113.10"},
                                                  {"ip": "203.0.113.11", "ipMode": "Proxy"}]}}),
        slice_doc("lb", [("10.244.1.30", NODE), ("10.244.2.30", "node-2")], port=8443),
        svc_doc("lbnolocal", "10.96.0.31", port=443, target=8443, type="LoadBalancer", nodePort=30444,
             externalTrafficPolicy="Local",
             status={"loadBalancer": {"ingress": [{"ip": "203.0.113.12"}]}}),
        slice_doc("lbnolocal", [("10.244.2.31", "node-2")], port=8443),
        svc_doc("ext", "10.96.0.40", externalIPs=["198.18.0.40"]),
        slice_doc("ext", [("10.244.2.40", "node-2")]),
        svc_doc("empty", "10.96.0.50"),
        svc_doc("itp", "10.96.0.60", internalTrafficPolicy="Local"),
        slice_doc("itp", [("10.244.2.60", "node-2")]),
        svc_doc("aff", "10.96.0.70", sessionAffinity="ClientIP",
             sessionAffinityConfig={"clientIP": {"timeoutSeconds": 30}}),
        slice_doc("aff", [(f"10.244.2.{70 + k}", "node-2") for k in range(5)]),
        svc_doc("named", "10.96.0.80", target="web"),
        slice_doc("named", [("10.244.2.80", "node-2")], port=8081, pname="web"),
        svc_doc("term", "10.96.0.90"),
        slice_doc("term", [("10.244.2.90", "node-2", False, False, False),
                        ("10.244.2.91", "node-2", False, True, True)]),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "headless", "namespace": "shop"},
         "spec": {"clusterIP": "None", "ports": [{"name": "p", "port": 80}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "extname", "namespace": "shop"},
         "spec": {"type": "ExternalName", "externalName": "db.example.com"}},
    ]
    return docs


# ------------------------------------------------------------------ topology hints

def hinted(address, zones=(), nodes=(), ready=True, terminating=False):
    hints = {}
    if zones:
        hints["forZones"] = [{"name": z} for z in zones]
    if nodes:
        hints["forNodes"] = [{"name": n} for n in nodes]
    return {"addresses": [address], "nodeName": "node-2", "hints": hints,
            "conditions": {"ready": ready, "serving": ready or terminating, "terminating": terminating}}


# Services whose EndpointSlices carry topology hints (as the EndpointSlice controller writes
# them for trafficDistribution PreferClose / PreferSameZone / PreferSameNode, topology-mode Auto)
TOPOLOGY = {
    "10.96.0.100": [hinted("10.244.2.100", ["zone-a"]), hinted("10.244.2.101", ["zone-b"])],
    "10.96.0.101": [hinted("10.244.2.102", ["zone-a"]), hinted("10.244.2.103")],        # incomplete
    "10.96.0.102": [hinted("10.244.2.104", ["zone-b"]), hinted("10.244.2.105", ["zone-c"])],
    "10.96.0.103": [hinted("10.244.2.106", ["zone-a"], [NODE]), hinted("10.244.2.107", ["zone-a"], ["node-2"])],
    "10.96.0.104": [hinted("10.244.2.108", ["zone-a"], ["node-2"]), hinted("10.244.2.109", ["zone-b"], ["node-2"])],
    "10.96.0.105": [hinted("10.244.2.110", ["zone-b"]),
                    hinted("10.244.2.111", ["zone-a"], ready=False, terminating=True)],
    "10.96.0.106": [hinted("10.244.2.112", ["zone-a"], ready=False, terminating=True),
                    hinted("10.244.2.113", ["zone-b"], ready=False, terminating=True)],
}
def topology_docs(zone):
    labels = {"topology.kubernetes.io/zone": zone} if zone else {}
    docs = [{"apiVersion": "v1", "kind": "Node", "metadata": {"name": NODE, "labels": labels},
             "spec": {"podCIDRs": ["10.244.1.0/24", "fd00:244:1::/64"]},
             "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.11"}]}}]
    for k, (ip, eps) in enumerate(TOPOLOGY.items()):
        name = f"topo-{k}"
        sl = slice_doc(name, [])
        sl["endpoints"] = eps
        docs += [svc_doc(name, ip), sl]
    return docs


def tables_for(docs):
    return compile(Cluster.from_documents(docs, node=NODE))


def meta(src, dst, dport, proto=6, sport=40000, h=1, ts=0, in_port=0):
    m = np.zeros(1, dtype=META_DTYPE)
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    r = m[0]
    r["in_port"] = in_port
    r["ip_ver"] = s.version
    r["proto"] = proto
    r["sport"], r["dport"] = sport, dport
    r["hash"] = h
    r["ts_ns"] = ts
    if s.version == 4:
        r["src4"], r["dst4"] = int(s), int(d)
    else:
        r["src6"] = np.frombuffer(s.packed, dtype=np.uint8)
        r["dst6"] = np.frombuffer(d.packed, dtype=np.uint8)
    return m


def decide(tables, *args, **kw):
    res, reason, nat = tables.decide(meta(*args, **kw))
    n = nat[0]
    out = {"result": int(res[0]), "reason": int(reason[0]), "flags": int(n["flags"]),
           "svc": int(n["svc_port"]), "backend": int(n["backend"]),
           "snat_lo": int(n["snat_port_lo"]), "snat_hi": int(n["snat_port_hi"])}
    if int(n["ip_ver"]) == 6:
        out["dnat"] = str(ipaddress.ip_address(bytes(n["dnat6"])))
        out["snat"] = str(ipaddress.ip_address(bytes(n["snat6"])))
    else:
        out["dnat"] = str(ipaddress.ip_address(int(n["dnat4"])))
        out["snat"] = str(ipaddress.ip_address(int(n["snat4"])))
    out["dport"] = int(n["dnat_port"])
    return out


# ------------------------------------------------------------------ conntrack stage runs

S = 1_000_000_000   # ns per second


def eth():
    # explicit MACs: scapy would otherwise try to resolve IPv6 neighbours
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")


# nat_spec_t flags (kdp/_fast/flow.pxd) for Conntrack.create's spec
DNAT, SNAT, SNAT_PORT = 1, 2, 4


def run(ct, pkts, now_ns=0, spec=None, specs=None, do_nat=True):
    """One batch through lookup -> create (for CT_NEW) -> nat. Returns the batch."""
    b = Batch(max(1, len(pkts)))
    for p in pkts:
        b.append(raw(p), ts_ns=now_ns)
    parse(b, vxlan_port=0)      # plain UDP on every port, 4789 too: no tunnels here
    assert all(b.meta["verdict"][: len(b)] == Verdict.PENDING), "test packet failed to parse"
    ct.lookup_batch(b, now_ns)
    for i in range(len(b)):
        m = b.meta[i]
        if m["verdict"] == Verdict.PENDING and m["ct_state"] == CtState.NEW:
            ct.create(b, i, specs[i] if specs is not None else spec, now_ns)
    if do_nat:
        nat(ct, b)
    return b


def state_of(b, i=0):
    return CtState(int(b.meta[i]["ct_state"]))


def tcp(src, dst, sport, dport, flags, **kw):
    ipc = IPv6 if ":" in src else IP
    return eth() / ipc(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags, **kw)


# ------------------------------------------------------------------ parse reference (scapy)

# 0x9100 (old QinQ) is not bound in scapy by default
bind_layers(Ether, Dot1Q, type=0x9100)
bind_layers(Dot1Q, Dot1Q, type=0x9100)
bind_layers(Dot1AD, Dot1Q, type=0x9100)
bind_layers(Dot1Q, Dot1AD, type=0x88A8)
bind_layers(Dot1AD, Dot1AD, type=0x88A8)

M64 = (1 << 64) - 1
NO_PORT = NO_PORT_ID
LINKTYPES = [0, 1, 101, 108, 113, 228, 229, 276]
IPV4_ONLY_LT = 228
IPV6_ONLY_LT = 229


# ------------------------------------------------------------- hash reference

def _mix(x):
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & M64
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & M64
    x ^= x >> 33
    return x


def reference_hash(ip_ver, proto, src, dst, sport, dport):
    """Plain-Python flow hash: src/dst are ints (IPv4) or 16-byte strings (IPv6)."""
    k = (ip_ver << 48) | (proto << 32) | (sport << 16) | dport
    h = _mix(k ^ 0x9E3779B97F4A7C15)
    if ip_ver == 4:
        return _mix(h ^ ((src << 32) | dst))
    s0, s1 = struct.unpack(">QQ", src)
    d0, d1 = struct.unpack(">QQ", dst)
    return _mix(h ^ _mix((s0 + 0x243F6A8885A308D3) & M64)
                ^ (_mix((s1 + 0x13198A2E03707344) & M64) * 3 & M64)
                ^ (_mix((d0 + 0xA4093822299F31D0) & M64) * 5 & M64)
                ^ (_mix((d1 + 0x082EFA98EC4E6C89) & M64) * 7 & M64))


# ------------------------------------------------------------- reference dissection

V6_EXT = (IPv6ExtHdrHopByHop, IPv6ExtHdrRouting, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, AH)
UPPER_BY_NUMBER = {6: TCP, 17: UDP, 132: SCTP}
QUOTED_BY_NUMBER = {6: TCPerror, 17: UDPerror, 132: SCTPerror}
ICMP4_ERRORS = {3, 4, 5, 11, 12}
ICMP6_ERRORS = {1, 2, 3, 4}


def _ip4(a):
    return int(ipaddress.IPv4Address(a))


def _ip6(a):
    return ipaddress.IPv6Address(a).packed


def _offset(frame, layer):
    return len(frame) - len(bytes(layer))


def _walk_ext(layer):
    """Follow scapy's IPv6 extension layers: (upper layer, proto, frag, frag_id)."""
    frag, frag_id, proto = 0, 0, None
    while isinstance(layer, V6_EXT):
        proto = layer.nh
        if isinstance(layer, IPv6ExtHdrFragment):
            frag_id = layer.id
            if layer.offset:
                return None, proto, 2, frag_id
            frag = 1 if layer.m else 0
        if isinstance(layer, AH):
            # scapy leaves AH's payload undissected
            layer = UPPER_BY_NUMBER[layer.nh](bytes(layer.payload))
            break
        layer = layer.payload
    return layer, proto, frag, frag_id


def expected(frame, linktype, vxlan_port=4789):
    """Every parse field, from scapy's dissection of `frame`."""
    e = dict(l3_off=0, l4_off=0, inner_off=0, quote_off=0, ethertype=0, vlan=NO_PORT,
             ip_ver=0, proto=0, ttl=0, tcp_flags=0, icmp_type=0, icmp_code=0, icmp_id=0,
             frag=0, tunnel=0, sport=0, dport=0, frag_id=0, src4=0, dst4=0,
             src6=bytes(16), dst6=bytes(16), q_proto=0, q_sport=0, q_dport=0,
             q_src4=0, q_dst4=0, q_src6=bytes(16), q_dst6=bytes(16))
    if linktype == 1:
        layer = Ether(frame)
        et = layer.type
        layer = layer.payload
        while isinstance(layer, (Dot1Q, Dot1AD)):
            if e["vlan"] == NO_PORT:
                e["vlan"] = layer.vlan
            et = layer.type
            layer = layer.payload
    else:
        if linktype in (0, 108):
            (af,) = struct.unpack(">I", frame[:4])
            if linktype == 0 and af not in (2, 10, 24, 28, 30):
                (af,) = struct.unpack("<I", frame[:4])
            et = 0x0800 if af == 2 else 0x86DD
            rest = frame[4:]
        elif linktype == 113:
            et = CookedLinux(frame).proto
            rest = frame[16:]
        elif linktype == 276:
            et = CookedLinuxV2(frame).proto
            rest = frame[20:]
        else:
            et = {4: 0x0800, 6: 0x86DD}[frame[0] >> 4]
            rest = frame
        layer = (IP if et == 0x0800 else IPv6)(rest)
    e["ethertype"] = et
    e["l3_off"] = _offset(frame, layer)
    if isinstance(layer, IP):
        e.update(ip_ver=4, ttl=layer.ttl, proto=layer.proto, src4=_ip4(layer.src),
                 dst4=_ip4(layer.dst), frag_id=layer.id)
        if layer.frag:
            e["frag"] = 2
        elif layer.flags.MF:
            e["frag"] = 1
        l4 = layer.payload if not layer.frag else None
        if isinstance(l4, AH):
            l4, _, _, _ = _walk_ext(l4)
    else:
        e.update(ip_ver=6, ttl=layer.hlim, src6=_ip6(layer.src), dst6=_ip6(layer.dst),
                 proto=layer.nh)
        l4, proto, frag, frag_id = _walk_ext(layer.payload)
        if proto is not None:
            e.update(proto=proto, frag=frag, frag_id=frag_id)
    if l4 is not None:
        e["l4_off"] = _offset(frame, l4)
        _expected_l4(e, frame, l4, vxlan_port)
    src = e["src4"] if e["ip_ver"] == 4 else e["src6"]
    dst = e["dst4"] if e["ip_ver"] == 4 else e["dst6"]
    e["hash"] = reference_hash(e["ip_ver"], e["proto"], src, dst, e["sport"], e["dport"])
    return e


def _expected_l4(e, frame, l4, vxlan_port):
    if isinstance(l4, (TCP, UDP, SCTP)):
        e["sport"], e["dport"] = l4.sport, l4.dport
    if isinstance(l4, TCP):
        e["tcp_flags"] = int(l4.flags) & 0xFF
    if isinstance(l4, UDP) and l4.dport == vxlan_port and e["frag"] == 0:
        # scapy binds UDP payloads by source port first (sport 161 dissects as SNMP),
        # so the inner frame's place comes from the headers' fixed sizes
        e["tunnel"] = 2
        e["inner_off"] = e["l4_off"] + 8 + 8        # UDP header, VXLAN header
    if isinstance(l4, (IP, IPv6)) and e["frag"] == 0:
        e["tunnel"] = 1
        e["inner_off"] = _offset(frame, l4)
    if isinstance(l4, ICMP) or (e["ip_ver"] == 6 and e["proto"] == 58):
        # (some scapy ICMPv6 classes have no `code` field, short ND messages stay Raw)
        e["icmp_type"], e["icmp_code"] = bytes(l4)[0], bytes(l4)[1]
        if isinstance(l4, (ICMP, ICMPv6EchoRequest, ICMPv6EchoReply)) and l4.type in (0, 8, 128, 129):
            e["icmp_id"] = e["sport"] = e["dport"] = l4.id
        errors = ICMP4_ERRORS if e["ip_ver"] == 4 else ICMP6_ERRORS
        if e["icmp_type"] in errors:
            q = l4.payload
            e["quote_off"] = _offset(frame, q)
            if isinstance(q, IPerror):
                e.update(q_proto=q.proto, q_src4=_ip4(q.src), q_dst4=_ip4(q.dst))
                ql = q.payload if not q.frag else None
            else:
                assert isinstance(q, IPerror6)
                e.update(q_proto=q.nh, q_src6=_ip6(q.src), q_dst6=_ip6(q.dst))
                ql, proto, _, _ = _walk_ext(q.payload)
                if proto is not None:
                    e["q_proto"] = proto
            if isinstance(ql, Raw) and e["q_proto"] in QUOTED_BY_NUMBER:
                # scapy leaves a quote shorter than a full header as Raw (and cannot
                # dissect a partial header: pad it; the ports are in the first 4 bytes)
                ql = QUOTED_BY_NUMBER[e["q_proto"]](bytes(ql) + bytes(20))
            if isinstance(ql, (TCPerror, UDPerror, SCTPerror, TCP, UDP, SCTP)):
                e["q_sport"], e["q_dport"] = ql.sport, ql.dport
            elif isinstance(ql, ICMPerror) and ql.type in (0, 8):
                e["q_sport"] = e["q_dport"] = ql.id
            elif isinstance(ql, (ICMPv6EchoRequest, ICMPv6EchoReply)):
                e["q_sport"] = e["q_dport"] = ql.id


# ------------------------------------------------------------- generators

ports = st.integers(0, 65535)
ip4s = st.integers(0, 2**32 - 1).map(lambda n: str(ipaddress.IPv4Address(n)))
ip6s = st.binary(min_size=16, max_size=16).map(lambda b: str(ipaddress.IPv6Address(b)))
payloads = st.binary(max_size=48)
ECHO_ID = st.integers(0, 65535)


@st.composite
def ipv4_header(draw):
    opts = draw(st.lists(st.one_of(
        st.just(IPOption_NOP()),
        st.lists(ip4s, min_size=1, max_size=2).map(lambda r: IPOption_RR(routers=r)),
    ), max_size=3))
    return IP(src=draw(ip4s), dst=draw(ip4s), ttl=draw(st.integers(0, 255)),
              id=draw(st.integers(0, 65535)), options=opts)


@st.composite
def ipv6_header(draw, fragment_ok=True):
    base = IPv6(src=draw(ip6s), dst=draw(ip6s), hlim=draw(st.integers(0, 255)))
    chain = []
    for kind in draw(st.lists(st.sampled_from(["hbh", "rt", "dst", "frag", "ah"]), max_size=4)):
        if kind == "hbh":
            chain.append(IPv6ExtHdrHopByHop())
        elif kind == "rt":
            chain.append(IPv6ExtHdrRouting(addresses=draw(st.lists(ip6s, max_size=2))))
        elif kind == "dst":
            chain.append(IPv6ExtHdrDestOpt())
        elif kind == "frag" and fragment_ok and not any(isinstance(c, IPv6ExtHdrFragment) for c in chain):
            chain.append(IPv6ExtHdrFragment(id=draw(st.integers(0, 2**32 - 1)),
                                            m=draw(st.integers(0, 1))))
        elif kind == "ah":
            chain.append("ah")
    return base, chain


def _ah(nh):
    return AH(nh=nh, payloadlen=4, spi=7, icv=b"\x11" * 12)


def _stack_v6(base, chain, upper, upper_nh):
    pkt = base
    for i, c in enumerate(chain):
        if c == "ah":
            # scapy does not chain AH's next header by itself, and does not
            # dissect past it: only put it last, before TCP/UDP/SCTP
            if i != len(chain) - 1 or upper_nh not in UPPER_BY_NUMBER:
                continue
            c = _ah(upper_nh)
        pkt = pkt / c
    return pkt / upper


@st.composite
def quoted(draw, ver):
    """An ICMP error's quote: an IP header and >= 8 bytes of what followed."""
    kind = draw(st.sampled_from(["tcp", "udp", "sctp", "echo", "later"]))
    if ver == 4:
        ip = IP(src=draw(ip4s), dst=draw(ip4s), proto=6)
    else:
        ip = IPv6(src=draw(ip6s), dst=draw(ip6s))
    if kind == "tcp":
        inner = ip / TCP(sport=draw(ports), dport=draw(ports))
    elif kind == "udp":
        inner = ip / UDP(sport=draw(ports), dport=draw(ports))
    elif kind == "sctp":
        inner = ip / SCTP(sport=draw(ports), dport=draw(ports))
    elif kind == "echo":
        inner = ip / (ICMP(type=8, id=draw(ECHO_ID)) if ver == 4 else ICMPv6EchoRequest(id=draw(ECHO_ID)))
    else:
        if ver == 4:
            inner = IP(src=ip.src, dst=ip.dst, proto=17, frag=draw(st.integers(1, 100))) / Raw(b"x" * 8)
        else:
            inner = ip / IPv6ExtHdrFragment(offset=draw(st.integers(1, 100)), nh=17) / Raw(b"x" * 8)
    raw = bytes(inner)
    hdr_len = len(raw) - len(bytes(inner.lastlayer())) if kind != "later" else len(raw) - 8
    cut = draw(st.integers(hdr_len + 8, len(raw)))
    return raw[:cut]


@st.composite
def l4_layer(draw, ver):
    """(layer, protocol number) for the upper layer of a packet of version ver."""
    kind = draw(st.sampled_from(["tcp", "udp", "sctp", "echo", "icmp_other", "icmp_err",
                                 "ipip", "vxlan"]))
    pay = Raw(draw(payloads))
    if kind == "tcp":
        opts = draw(st.sampled_from([[], [("MSS", 1460)], [("NOP", None), ("WScale", 7)],
                                     [("SAckOK", b""), ("Timestamp", (1, 2))]]))
        return TCP(sport=draw(ports), dport=draw(ports), flags=draw(st.integers(0, 255)),
                   options=opts) / pay, 6
    if kind == "udp":
        return UDP(sport=draw(ports), dport=draw(ports.filter(lambda p: p != 4789))) / pay, 17
    if kind == "sctp":
        return SCTP(sport=draw(ports), dport=draw(ports)) / pay, 132
    if kind == "echo":
        t = draw(st.sampled_from([0, 8] if ver == 4 else [128, 129]))
        if ver == 4:
            return ICMP(type=t, id=draw(ECHO_ID)) / pay, 1
        cls = ICMPv6EchoRequest if t == 128 else ICMPv6EchoReply
        return cls(id=draw(ECHO_ID)) / pay, 58
    if kind == "icmp_other":
        if ver == 4:
            return ICMP(type=draw(st.sampled_from([9, 10, 13, 14]))) / pay, 1
        return ICMPv6EchoRequest(type=draw(st.sampled_from([133, 135, 143]))) / pay, 58
    if kind == "icmp_err":
        q = Raw(draw(quoted(ver)))
        if ver == 4:
            return ICMP(type=draw(st.sampled_from(sorted(ICMP4_ERRORS))), code=draw(st.integers(0, 15))) / q, 1
        cls = draw(st.sampled_from([ICMPv6DestUnreach, ICMPv6PacketTooBig, ICMPv6TimeExceeded,
                                    ICMPv6ParamProblem]))
        return cls(code=draw(st.integers(0, 6))) / q, 58
    if kind == "ipip":
        if draw(st.booleans()):
            return IP(src=draw(ip4s), dst=draw(ip4s)) / UDP(sport=draw(ports), dport=53) / pay, 4
        return IPv6(src=draw(ip6s), dst=draw(ip6s)) / TCP(sport=draw(ports)) / pay, 41
    inner = Ether() / IP(src=draw(ip4s), dst=draw(ip4s)) / UDP(dport=draw(ports)) / pay
    return UDP(sport=draw(ports), dport=4789) / VXLAN(vni=draw(st.integers(0, 2**24 - 1))) / inner, 17


@st.composite
def ip_packet(draw, ver):
    later = draw(st.integers(0, 9)) == 0
    if ver == 4:
        ip = draw(ipv4_header())
        if later:
            ip.frag = draw(st.integers(1, 8191))
            ip.flags = draw(st.sampled_from([0, 1]))
            ip.proto = draw(st.sampled_from([6, 17, 1, 4]))
            return ip / Raw(draw(payloads))
        upper, _ = draw(l4_layer(4))
        if draw(st.integers(0, 5)) == 0:
            ip.flags = "MF"
        return ip / upper
    base, chain = draw(ipv6_header())
    if later:
        return base / IPv6ExtHdrFragment(offset=draw(st.integers(1, 8191)), nh=17,
                                         id=draw(st.integers(0, 2**32 - 1))) / Raw(draw(payloads))
    upper, nh = draw(l4_layer(6))
    return _stack_v6(base, chain, upper, nh)


@st.composite
def frame(draw):
    lt = draw(st.sampled_from(LINKTYPES))
    ver = 4 if lt == IPV4_ONLY_LT else 6 if lt == IPV6_ONLY_LT else draw(st.sampled_from([4, 6]))
    ip = bytes(draw(ip_packet(ver)))
    et = 0x0800 if ver == 4 else 0x86DD
    if lt == 1:
        tags = draw(st.lists(st.tuples(st.sampled_from([0x8100, 0x88A8, 0x9100]),
                                       st.integers(0, 4095)), max_size=3))
        hdr = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
        pkt = hdr
        types = [t for t, _ in tags] + [et]
        pkt.type = types[0]
        for k, (_, vid) in enumerate(tags):
            pkt = pkt / Dot1Q(vlan=vid, type=types[k + 1])
        head = bytes(pkt)
        trailer = draw(st.binary(max_size=8))      # Ethernet padding / FCS-like junk
        return lt, head + ip + trailer
    if lt == 0:
        af = 2 if ver == 4 else draw(st.sampled_from([10, 24, 28, 30]))
        return lt, struct.pack(draw(st.sampled_from(["<I", ">I"])), af) + ip
    if lt == 108:
        af = 2 if ver == 4 else draw(st.sampled_from([24, 28, 30]))
        return lt, struct.pack(">I", af) + ip
    if lt == 113:
        return lt, bytes(CookedLinux(proto=et)) + ip
    if lt == 276:
        return lt, bytes(CookedLinuxV2(proto=et)) + ip
    return lt, ip


FIELDS = ["l3_off", "l4_off", "inner_off", "quote_off", "ethertype", "vlan", "ip_ver",
          "proto", "ttl", "tcp_flags", "icmp_type", "icmp_code", "icmp_id", "frag",
          "tunnel", "sport", "dport", "frag_id", "src4", "dst4", "q_proto", "q_sport",
          "q_dport", "q_src4", "q_dst4", "hash"]
ADDR16 = ["src6", "dst6", "q_src6", "q_dst6"]


# ------------------------------------------------------------------ checksums (scapy as the reference)

_QUOTED = ("IPerror", "TCPerror", "UDPerror", "ICMPerror", "SCTPerror", "IPerror6")


def assert_checksums(data, linktype=1):
    """Every checksum of the frame (IPv4 header, TCP, UDP, ICMP, ICMPv6, at every
    tunnel level; not the headers an ICMP error quotes) is the one scapy computes.
    A UDP checksum 0 over IPv4 means "none" (RFC 768) and is accepted as such. Inside
    a fragment only the IPv4 header's checksum is checked (the L4 checksum covers the
    whole datagram)."""
    pkt = as_ether(data, linktype) if linktype == 1 else (IP(data) if data[0] >> 4 == 4 else IPv6(data))
    fresh = pkt.copy()
    layer, under_v4 = fresh, False
    while layer is not None and not isinstance(layer, (Raw, type(None))) and layer.name != "NoPayload":
        if type(layer).__name__ in _QUOTED:
            break
        fragment = False
        if isinstance(layer, IP):
            under_v4 = True
            fragment = bool(layer.frag) or bool(int(layer.flags) & 1)
        elif isinstance(layer, IPv6):
            under_v4 = False
        elif isinstance(layer, IPv6ExtHdrFragment):
            break
        for field in ("chksum", "cksum"):
            if field in layer.fields_desc_names if hasattr(layer, "fields_desc_names") else \
                    any(f.name == field for f in layer.fields_desc):
                if isinstance(layer, UDP) and under_v4 and layer.chksum == 0:
                    continue
                setattr(layer, field, None)
        if fragment:
            break
        layer = layer.payload if layer.payload else None
    rebuilt = raw(fresh)
    original = raw(pkt)
    assert rebuilt == original, f"checksums differ from scapy's:\n{pkt.show(dump=True)}"


# ------------------------------------------------------------------ pcapng crafting

SHB, IDB, PB, SPB, EPB = 0x0A0D0D0A, 1, 2, 3, 6


class NG:
    """A pcapng file crafted block by block, in one byte order per section."""

    def __init__(self, endian="<"):
        self.e = endian
        self.out = b""

    def raw(self, data):
        self.out += data
        return self

    def block(self, btype, body, total=None, trailer=None):
        body += b"\0" * ((4 - len(body) % 4) % 4)
        n = 12 + len(body) if total is None else total
        self.out += struct.pack(self.e + "II", btype, n) + body + struct.pack(
            self.e + "I", n if trailer is None else trailer)
        return self

    def opt(self, code, value):
        return struct.pack(self.e + "HH", code, len(value)) + value + b"\0" * ((4 - len(value) % 4) % 4)

    def shb(self, endian=None, version=(1, 0), bom=0x1A2B3C4D):
        if endian:
            self.e = endian
        return self.block(SHB, struct.pack(self.e + "IHHq", bom, version[0], version[1], -1))

    def idb(self, linktype=1, snaplen=0, name=None, tsresol=None, tsoffset=None):
        opts = b""
        if name is not None:
            opts += self.opt(2, name.encode())
        if tsresol is not None:
            opts += self.opt(9, bytes([tsresol]))
        if tsoffset is not None:
            opts += self.opt(14, struct.pack(self.e + "q", tsoffset))
        if opts:
            opts += self.opt(0, b"")
        return self.block(IDB, struct.pack(self.e + "HHI", linktype, 0, snaplen) + opts)

    def epb(self, ifid, ticks, data, orig=None, caplen=None, flags=None):
        """An EPB; `flags`: an epb_flags option (bits 0-1 direction: 1 in, 2 out)."""
        head = struct.pack(self.e + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF,
                           len(data) if caplen is None else caplen,
                           len(data) if orig is None else orig)
        if flags is None:
            return self.block(EPB, head + data)
        padded = data + b"\0" * ((4 - len(data) % 4) % 4)
        return self.block(EPB, head + padded + self.opt(2, struct.pack(self.e + "I", flags))
                          + self.opt(0, b""))

    def pb(self, ifid, ticks, data, orig=None):
        return self.block(PB, struct.pack(self.e + "HHIIII", ifid, 0, ticks >> 32, ticks & 0xFFFFFFFF,
                                          len(data), len(data) if orig is None else orig) + data)

    def spb(self, data, orig=None):
        return self.block(SPB, struct.pack(self.e + "I", len(data) if orig is None else orig) + data)

    def save(self, path):
        path.write_bytes(self.out)
        return path
