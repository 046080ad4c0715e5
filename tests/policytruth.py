"""Truth-table harness for network policy: a two-node cluster, flows between its pods,
nodes and outside addresses, judged by kdp's data planes as a real cluster would:
the source's node first (its egress), then, when that node forwards the packet to
the other node, the destination's node (its ingress).

Two ways through kdp, that must agree with each table:
  * "api": Dataplane.process on batches (the Python API);
  * "replay": kdp.replay.replay on pcapng captures (one interface per ingress port),
    the verdict log read back (what `kdp replay --log` writes).

Endpoints of a row: "ns/name" (a pod; "ns/name@6" its IPv6 address), "svc:ns/name"
(its ClusterIP), "host:node-1" (the node itself: sent on its host port), or an address.
Protocols: "tcp/80", "udp/53", "sctp/3868", "icmp".
"""
from __future__ import annotations

import copy
import ipaddress
import json
from dataclasses import dataclass, field

from scapy.all import (ICMP, IP, SCTP, TCP, UDP, Ether, ICMPv6EchoRequest, IPv6, PcapNgWriter,
                       SCTPChunkInit, raw)

from kdp._fast.packet import Batch
from kdp.dataplane import Dataplane
from kdp.reasons import Reason, Verdict

NODES = {"node-1": ("192.168.56.11", "fd00:56::11", "10.244.1.0/24", "fd00:244:1::/64"),
         "node-2": ("192.168.56.12", "fd00:56::12", "10.244.2.0/24", "fd00:244:2::/64")}
T0 = 1_700_000_000 * 10**9


def base(namespaces, pods, *extra):
    """Objects of a two-node cluster: NodeConfigs and Nodes, Namespaces {name: labels},
    pods [(ns, name, node, ipv4, labels, named ports [(name, proto, port)], ipv6 or None,
    hostNetwork)], and any extra objects."""
    objs = []
    for name, (a4, a6, c4, c6) in NODES.items():
        objs.append({"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": name},
                     "spec": {"nodeAddresses": [a4, a6], "podCIDRs": [c4, c6],
                              "clusterCIDRs": ["10.244.0.0/16", "fd00:244::/48"],
                              "serviceCIDRs": ["10.96.0.0/16"]}})
        objs.append({"apiVersion": "v1", "kind": "Node",
                     "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                           "zone": "a" if name == "node-1" else "b"}},
                     "spec": {"podCIDRs": [c4, c6]},
                     "status": {"addresses": [{"type": "InternalIP", "address": a4},
                                              {"type": "InternalIP", "address": a6}]}})
    for name, labels in namespaces.items():
        objs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": dict(labels)}})
    for ns, name, node, ip4, labels, ports, ip6, hostnet in pods:
        ips = [ip4] + ([ip6] if ip6 else [])
        objs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"namespace": ns, "name": name, "labels": dict(labels)},
                     "spec": {"nodeName": node, "hostNetwork": hostnet,
                              "containers": [{"name": "main", "ports": [
                                  {"name": n, "protocol": p, "containerPort": c} for n, p, c in ports]}]},
                     "status": {"phase": "Running", "podIP": ip4, "podIPs": [{"ip": ip} for ip in ips]}})
    return objs + list(extra)


def pod(ns, name, node, ip4, labels=None, ports=(), ip6=None, host_network=False):
    return (ns, name, node, ip4, labels or {}, list(ports), ip6, host_network)


def np_(ns, name, spec):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": name}, "spec": spec}


def cnp(name, spec):
    return {"apiVersion": "policy.networking.k8s.io/v1alpha2", "kind": "ClusterNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


def anp(name, spec):
    return {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
            "metadata": {"name": name}, "spec": spec}


def banp(spec):
    return {"apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "BaselineAdminNetworkPolicy",
            "metadata": {"name": "default"}, "spec": spec}


def service(ns, name, cluster_ip, port, target, backends, protocol="TCP"):
    """A ClusterIP Service and its EndpointSlice: backends [(ip, node, target port number)]."""
    return [{"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": ns, "name": name},
             "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                      "ports": [{"name": "p", "protocol": protocol, "port": port, "targetPort": target}]}},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {"namespace": ns, "name": f"{name}-x", "labels": {"kubernetes.io/service-name": name}},
             "addressType": "IPv4",
             "ports": [{"name": "p", "protocol": protocol, "port": backends[0][2]}],
             "endpoints": [{"addresses": [ip], "nodeName": node, "conditions": {"ready": True}}
                           for ip, node, _p in backends]}]


@dataclass
class Row:
    src: str
    dst: str
    proto: str
    allow: bool
    expect: str = ""            # optional: a reason label ("policy_denied_ingress") or a text the
                                # policy field must contain


@dataclass
class Step:
    rows: list
    change: object = None       # callable(objects) -> objects, applied before the rows (cumulative)
    note: str = ""


@dataclass
class Scenario:
    name: str
    source: str                 # where the expected values come from
    objects: list
    steps: list = field(default_factory=list)

    def snapshots(self):
        """(step index, objects, step) with each step's change applied on top of the previous."""
        objs = copy.deepcopy(self.objects)
        for i, step in enumerate(self.steps):
            if step.change is not None:
                objs = step.change(copy.deepcopy(objs))
            yield i, objs, step


# ------------------------------------------------------------------ the cluster model

class World:
    """Where things are in one snapshot: pods, their nodes and ports, Services."""

    def __init__(self, objs):
        self.objs = objs
        self.pods = {}
        self.svcs = {}
        for o in objs:
            if o["kind"] == "Pod":
                key = f"{o['metadata']['namespace']}/{o['metadata']['name']}"
                self.pods[key] = o
            elif o["kind"] == "Service":
                self.svcs[f"{o['metadata']['namespace']}/{o['metadata']['name']}"] = o

    def address(self, ep, family=None):
        """(address, node the packet starts on or None, in_port name at that node)."""
        if ep.startswith("svc:"):
            return self.svcs[ep[4:]]["spec"]["clusterIP"], None, None
        if ep.startswith("host:"):
            node = ep[5:]
            return NODES[node][1 if family == 6 else 0], node, "host"
        name, _, fam = ep.partition("@")
        if name in self.pods:
            p = self.pods[name]
            ips = [x["ip"] for x in p["status"]["podIPs"]]
            ip = ips[1] if fam == "6" else ips[0]
            node = p["spec"]["nodeName"]
            port = "host" if p["spec"].get("hostNetwork") else name
            return ip, node, port
        return ep, None, None

    def node_of_address(self, ip):
        for key, p in self.pods.items():
            if not p["spec"].get("hostNetwork") and ip in [x["ip"] for x in p["status"]["podIPs"]]:
                return p["spec"]["nodeName"]
        for name, (a4, a6, *_c) in NODES.items():
            if ip in (a4, a6):
                return name
        for name, (_a4, _a6, c4, c6) in NODES.items():
            if ipaddress.ip_address(ip) in ipaddress.ip_network(c4 if ":" not in ip else c6):
                return name
        return None


def packet(src, dst, proto, sport):
    """The first packet of a flow, as scapy."""
    v6 = ":" in src
    ip = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
    kind, _, port = proto.partition("/")
    if kind == "tcp":
        l4 = TCP(sport=sport, dport=int(port), flags="S", seq=1)
    elif kind == "udp":
        l4 = UDP(sport=sport, dport=int(port)) / b"x"
    elif kind == "sctp":
        l4 = SCTP(sport=sport, dport=int(port)) / SCTPChunkInit(init_tag=1, a_rwnd=1500, n_out_streams=1,
                                                                  n_in_streams=1, init_tsn=1)
    elif kind == "icmp":
        l4 = ICMPv6EchoRequest(id=sport, seq=1) if v6 else ICMP(id=sport, seq=1)
    else:
        raise ValueError(proto)
    return Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") / ip / l4


@dataclass
class Hop:
    """What one node did with one packet."""
    verdict: Verdict
    reason: Reason
    out_port: str | None
    policy: dict | None
    sent: tuple                 # (proto, src, dst, sport, dport) as transmitted


class Judge:
    """Runs the rows of one snapshot through node-1's and node-2's data planes."""

    def __init__(self, tmp_path, objs, mode):
        self.world = World(objs)
        self.mode = mode
        self.tmp = tmp_path
        from kdptest import write_snapshot
        self.snap = write_snapshot(tmp_path / "snap", objs)
        self.dps = {}

    def _dp(self, node):
        if node not in self.dps:
            self.dps[node] = Dataplane.from_snapshot([self.snap], node)
        return self.dps[node]

    def run(self, rows):
        """[(allowed, [Hop, ...])] per row."""
        firsts = {}                                  # node -> [(row index, frame, in_port)]
        for k, row in enumerate(rows):
            fam = 6 if any(e.endswith("@6") or (":" in e and not e.startswith(("svc:", "host:")))
                           for e in (row.src, row.dst)) else None
            src, src_node, in_port = self.world.address(row.src, fam)
            dst, _n, _p = self.world.address(row.dst, fam)
            start = src_node or self.world.node_of_address(dst) or "node-1"
            firsts.setdefault(start, []).append((k, packet(src, dst, row.proto, 20000 + k), in_port or "uplink"))
        hops = {k: [] for k in range(len(rows))}
        seconds = {}
        for node, items in firsts.items():
            for (k, _f, _p), hop in zip(items, self._process(node, items)):
                hops[k].append((node, hop))
                nxt = self._next_node(node, hop)
                if nxt is not None:
                    seconds.setdefault(nxt, []).append((k, _rebuild(hop, items, k), "uplink"))
        for node, items in seconds.items():
            for (k, _f, _p), hop in zip(items, self._process(node, items)):
                hops[k].append((node, hop))
        out = []
        for k in range(len(rows)):
            last = hops[k][-1][1]
            ok = last.verdict in (Verdict.FORWARD, Verdict.LOCAL) and \
                (last.out_port != "uplink" or self._leaves_cluster(last))
            out.append((ok, [h for _n, h in hops[k]]))
        return out

    def _leaves_cluster(self, hop):
        return self.world.node_of_address(hop.sent[2]) is None

    def _next_node(self, node, hop):
        if hop.verdict != Verdict.FORWARD or hop.out_port != "uplink":
            return None
        other = self.world.node_of_address(hop.sent[2])
        return other if other not in (None, node) else None

    def _process(self, node, items):
        if self.mode == "api":
            return self._api(node, items)
        return self._replay(node, items)

    def _api(self, node, items):
        dp = self._dp(node)
        b = Batch(len(items))
        for n, (_k, frame, in_port) in enumerate(items):
            b.append(raw(frame), ts_ns=T0 + n * 1000, in_port=dp.ports.id_of(in_port))
        dp.process(b)
        names = dp.policy_names()
        out = []
        for i in range(len(b)):
            m = b.meta[i]
            port = None if m["out_port"] == 0xFFFF else dp.ports.name_of(int(m["out_port"]))
            eg, ing = int(m["pol_egress"]), int(m["pol_ingress"])
            pol = None if not eg and not ing else {"egress": names[eg] if eg else None,
                                                   "ingress": names[ing] if ing else None}
            out.append(Hop(Verdict(m["verdict"]), Reason(m["reason"]), port, pol, _sent(b.packet(i))))
        return out

    def _replay(self, node, items):
        from kdp.replay import replay
        n = len(list(self.tmp.glob("cap*.pcapng")))
        cap = self.tmp / f"cap{n}.pcapng"
        w = PcapNgWriter(str(cap))
        for i, (_k, frame, in_port) in enumerate(items):
            frame = frame.copy()
            frame.time = (T0 + i * 1000) / 1e9
            frame.sniffed_on = in_port
            w.write(frame)
        w.close()
        log = self.tmp / f"log{n}.jsonl"
        replay(cap, self.tmp / f"out{n}.pcap", cluster=[self.snap], node=node, log=log)
        out = []
        for line in log.read_text().splitlines():
            rec = json.loads(line)
            out.append(Hop(Verdict[rec["verdict"].upper()], Reason[rec["reason"].upper()], rec["out_port"],
                           rec["policy"], (rec["proto"], rec["src"], rec["dst"], rec["sport"], rec["dport"])))
        return out


def _sent(data):
    p = Ether(data)
    ip = p[IP] if IP in p else p[IPv6]
    l4 = ip.payload
    proto = {6: "tcp", 17: "udp", 132: "sctp"}.get(ip.proto if IP in p else ip.nh, "icmp")
    return (proto, ip.src, ip.dst, getattr(l4, "sport", None), getattr(l4, "dport", None))


def _rebuild(hop, items, k):
    """The packet the next node receives: the one this node transmitted."""
    frame = next(f for kk, f, _p in items if kk == k)
    proto, src, dst, sport, dport = hop.sent
    p = frame.copy()
    ip = p[IP] if IP in p else p[IPv6]
    ip.src, ip.dst = src, dst
    if sport is not None:
        ip.payload.sport, ip.payload.dport = sport, dport
    if IP in p:
        del p[IP].chksum
        p[IP].ttl -= 1
    else:
        p[IPv6].hlim -= 1
    for layer in (TCP, UDP, SCTP):
        if layer in p:
            del p[layer].chksum
    return Ether(raw(p))


def check(results, rows):
    """Problems: rows whose outcome differs from the table (empty: all agree)."""
    bad = []
    for row, (ok, hops) in zip(rows, results):
        if ok != row.allow:
            bad.append(f"{row}: got {'allow' if ok else 'deny'} ({_describe(hops)})")
            continue
        if row.expect:
            said = " | ".join(f"{h.reason.label} {h.policy}" for h in hops)
            if row.expect not in said:
                bad.append(f"{row}: expected {row.expect!r} in {said!r}")
    return bad


def _describe(hops):
    return "; ".join(f"{h.verdict.label}/{h.reason.label} out={h.out_port} policy={h.policy}" for h in hops)
