"""Test helpers: small cluster snapshots as Python objects, and a harness that sends
scapy packets through a Dataplane and hands back what came out."""
import ipaddress
from dataclasses import dataclass
from pathlib import Path

import yaml
from scapy.all import IP, Ether, IPv6, raw

from kdp._fast.packet import Batch
from kdp.dataplane import Dataplane
from kdp.reasons import CtState, Reason, Verdict

NODE1, NODE2 = "192.168.56.11", "192.168.56.12"
NODE1_V6 = "fd00:56::11"
CLIENT, WEB1, WEB2 = "10.244.1.50", "10.244.1.10", "10.244.2.10"
CLIENT6, WEB1_6, WEB2_6 = "fd00:244:1::50", "fd00:244:1::10", "fd00:244:2::10"
OUTSIDE = "198.51.100.7"
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

    @property
    def ip(self):
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
            out.append(Sent(Verdict(m["verdict"]), Reason(m["reason"]), CtState(m["ct_state"]),
                            port, svc, as_ether(b.packet(i), int(m["linktype"]))))
        return out if len(out) > 1 else out[0]


def as_ether(data, linktype):
    """The frame as scapy Ether; raw IP frames (after decapsulation) get a blank Ethernet header."""
    if linktype == 1:
        return Ether(data)
    return Ether() / (IP(data) if data[0] >> 4 == 4 else IPv6(data))


def addr(text):
    return str(ipaddress.ip_address(text))
