"""`kdp bench pipeline`, the tunnel rows: the same pod-to-pod traffic routed plainly, in
IP-in-IP and in VXLAN, out of the node (encapsulation) and into it (decapsulation).

Cluster (generated): node-0 (192.168.0.10/24, the node measured) with 250 pods
(10.64.0.1-250) and 63 other nodes (192.168.0.11-73, blocks 10.64.k.0/24), one Calico
IPPool 10.64.0.0/10 whose mode makes the case: Never (plain routing to the node as next
hop), ipipMode Always, vxlanMode Always.

Captures (generated with numpy into a temporary directory): UDP flows (one per 50
packets, at least 200) between node-0's pods and pods of the other nodes, IP packets of 48..1400 bytes (all fit the
VXLAN MTU of 1450, so every case forwards every packet):
  out        Ethernet/IPv4/UDP from a local pod to a remote pod: routed plainly, or
             encapsulated by kdp
  in, plain  the answers, Ethernet/IPv4/UDP from the remote pods, as plain routing brings them
  in, IPIP   the same inner packets inside IPv4 from their node to node-0, protocol 4
  in, VXLAN  the same inside UDP to 4789 / VXLAN VNI 4096 / an inner Ethernet header
Each case: Dataplane.process over the capture read batch by batch (Batch(256)), a fresh
data plane per pass (conntrack sees each flow's first packet as new), best of `repeat`
passes in CPU seconds of the process. The ratios compare each tunnel case with the plain
case of the same direction, measured in the same run.
"""
from __future__ import annotations

import os
import time

import numpy as np

from kdp.benchmarks.synth import T0, _be, _fold, _le32, _words

NODE = "node-0"
PEERS = 63
PODS = 250
BATCH = 256
CLOCK = time.process_time
VNI, PORT = 4096, 4789


def _ip(s):
    a, b, c, d = (int(x) for x in s.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def cluster_docs(mode):
    """The benchmark cluster with the pool in `mode`: "Never", "IPIP" or "VXLAN"."""
    docs = [{"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": NODE},
             "spec": {"nodeAddresses": ["192.168.0.10/24"], "podCIDRs": ["10.64.0.0/24"],
                      "clusterCIDRs": ["10.64.0.0/10"]}},
            {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "pool"},
             "spec": {"cidr": "10.64.0.0/10", "ipipMode": "Always" if mode == "IPIP" else "Never",
                      "vxlanMode": "Always" if mode == "VXLAN" else "Never"}}]
    for k in range(1, PEERS + 1):
        docs.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{k}"},
                     "spec": {"podCIDRs": [f"10.64.{k}.0/24"]},
                     "status": {"addresses": [{"type": "InternalIP", "address": f"192.168.0.{10 + k}"}]}})
    for p in range(PODS):
        docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{p}", "namespace": "bench"},
                     "spec": {"nodeName": NODE}, "status": {"phase": "Running", "podIP": f"10.64.0.{p + 1}"}})
    return docs


def flows_for(n):
    return max(200, n // 50)


def _plan(n, seed=5):
    rng = np.random.default_rng(seed)
    flows = flows_for(n)
    flow = np.sort(rng.integers(0, flows, n))            # flows start in order, interleave
    rng.shuffle(flow[flows:])
    f_local = (_ip("10.64.0.1") + rng.integers(0, PODS, flows)).astype(np.uint64)
    peer = rng.integers(1, PEERS + 1, flows).astype(np.uint64)
    f_remote = (np.uint64(_ip("10.64.0.0")) + (peer << np.uint64(8)) + np.uint64(1)
                + rng.integers(0, 250, flows).astype(np.uint64))
    f_sport = rng.integers(32768, 61000, flows).astype(np.uint64)
    size = rng.integers(48, 1401, n)                     # IP packet bytes
    usec = np.arange(n, dtype=np.int64) * 2
    return {"flow": flow, "local": f_local[flow], "remote": f_remote[flow], "peer": peer[flow],
            "sport": f_sport[flow], "size": size, "usec": usec}


def write_capture(path, plan, direction, tunnel=None) -> int:
    """Write one capture of the plan (see the module docstring); returns its size."""
    n = len(plan["usec"])
    ip_len = plan["size"].astype(np.int64)
    outer = {None: 0, "IPIP": 20, "VXLAN": 20 + 8 + 8 + 14}[tunnel]
    frame = 14 + outer + ip_len
    rec = 16 + frame
    offs = 24 + np.concatenate(([0], np.cumsum(rec[:-1])))
    buf = np.zeros(int(24 + rec.sum()), dtype=np.uint8)
    buf[:24] = np.frombuffer(np.array([0xA1B2C3D4, 0x00040002, 0, 0, 65535, 1], dtype="<u4").tobytes(),
                             dtype=np.uint8)
    hdr = 16 + 14 + outer + 28
    h = np.zeros((n, hdr), dtype=np.uint8)
    _le32(h, 0, T0 + plan["usec"] // 1_000_000)
    _le32(h, 4, plan["usec"] % 1_000_000)
    _le32(h, 8, frame)
    _le32(h, 12, frame)
    h[:, 16:22] = (0x02, 0, 0, 0, 0, 0x02)
    h[:, 22:28] = (0x02, 0, 0, 0, 0, 0x01)
    h[:, 28] = 0x08
    if direction == "out":
        src, dst, sport, dport = plan["local"], plan["remote"], plan["sport"], np.full(n, 5353)
    else:
        src, dst, sport, dport = plan["remote"], plan["local"], np.full(n, 5353), plan["sport"]
    o = 30
    if tunnel is not None:
        node = np.full(n, _ip("192.168.0.10"), dtype=np.uint64)
        peer = np.uint64(_ip("192.168.0.10")) + plan["peer"]
        h[:, o] = 0x45
        _be(h, o + 2, outer + ip_len, 2)
        h[:, o + 8] = 64
        h[:, o + 9] = 4 if tunnel == "IPIP" else 17
        _be(h, o + 12, peer, 4)
        _be(h, o + 16, node, 4)
        _be(h, o + 10, ~_fold(_words(h, o, 20)) & np.uint64(0xFFFF), 2)
        if tunnel == "VXLAN":
            u = o + 20
            _be(h, u, 32768 + (plan["flow"] % 28000), 2)
            _be(h, u + 2, np.full(n, PORT), 2)
            _be(h, u + 4, 8 + 8 + 14 + ip_len, 2)
            h[:, u + 8] = 0x08
            _be(h, u + 12, np.full(n, VNI << 8), 4)
            e = u + 16
            h[:, e:e + 6] = (0x66, 0, 0, 0, 0, 0x10)
            h[:, e + 6:e + 12] = (0x66, 0, 0, 0, 0, 0x11)
            h[:, e + 12] = 0x08
        o += outer
    i = o
    h[:, i] = 0x45
    _be(h, i + 2, ip_len, 2)
    _be(h, i + 4, np.arange(n) & 0xFFFF, 2)
    h[:, i + 8] = 64
    h[:, i + 9] = 17
    _be(h, i + 12, src, 4)
    _be(h, i + 16, dst, 4)
    _be(h, i + 10, ~_fold(_words(h, i, 20)) & np.uint64(0xFFFF), 2)
    _be(h, i + 20, sport, 2)
    _be(h, i + 22, dport, 2)
    _be(h, i + 24, ip_len - 20, 2)                       # UDP checksum 0: none (IPv4)
    col = np.arange(hdr, dtype=np.int64)
    buf[(offs[:, None] + col).ravel()] = h.ravel()
    with open(path, "wb") as f:
        buf.tofile(f)
    return buf.size


def _tables(mode):
    from kdp.control import Cluster, compile as compile_cluster
    return compile_cluster(Cluster.from_documents(cluster_docs(mode), node=NODE))


def _pass(path, tables):
    """CPU seconds of Dataplane.process over the capture, read batch by batch."""
    from kdp._fast.packet import Batch
    from kdp.dataplane import Dataplane
    from kdp.io.pcap import CaptureReader
    dp = Dataplane(tables)
    reader = CaptureReader(path)
    batch = Batch(BATCH)
    total = 0.0
    while reader.fill(batch):
        t = CLOCK()
        dp.process(batch)
        total += CLOCK() - t
    reader.close()
    return total, dp


CASES = (  # name, direction, pool mode, tunnel in the capture, the reason every packet must get
    ("out, plain routing", "out", "Never", None, "forwarded"),
    ("out, IP-in-IP encap", "out", "IPIP", None, "forwarded_ipip"),
    ("out, VXLAN encap", "out", "VXLAN", None, "forwarded_vxlan"),
    ("in, plain routing", "in", "Never", None, "forwarded"),
    ("in, IP-in-IP decap", "in", "IPIP", "IPIP", "forwarded"),
    ("in, VXLAN decap", "in", "VXLAN", "VXLAN", "forwarded"),
)


def measure(packets, tmpdir, repeat=3) -> dict:
    """Seconds per case (best of `repeat`), and each tunnel case's rate over plain's."""
    from kdp.reasons import Reason, Stage
    plan = _plan(packets)
    tables = {m: _tables(m) for m in ("Never", "IPIP", "VXLAN")}
    paths = {}
    for _name, direction, _mode, tunnel, _reason in CASES:
        key = (direction, tunnel)
        if key not in paths:
            paths[key] = os.path.join(tmpdir, f"tunnel-{direction}-{tunnel or 'plain'}.pcap")
            write_capture(paths[key], plan, direction, tunnel)
    best = {name: None for name, *_ in CASES}
    for _ in range(repeat):
        for name, direction, mode, tunnel, reason in CASES:
            s, dp = _pass(paths[(direction, tunnel)], tables[mode])
            counters = dp.counters
            ok = int(counters[Stage.TX, Reason[reason.upper()]])
            if ok != packets:
                raise RuntimeError(f"tunnel bench {name}: {ok} of {packets} packets {reason}")
            best[name] = s if best[name] is None or s < best[name] else best[name]
    out = {"packets": packets, "flows": flows_for(packets), "seconds": best}
    out["ratio"] = {name: best[f"{direction}, plain routing"] / best[name]
                    for name, direction, mode, *_ in CASES if mode != "Never"}
    return out
