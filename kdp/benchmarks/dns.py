"""`kdp bench dns`: DNS answers/s per core through the pipeline, beside a dnspython responder.

Cluster: the synthetic cluster of kdp/benchmarks/cluster.py (10,000 Services with
100,000 endpoints on 100 nodes; 1,000 / 10,000 with --quick) seen from node-0, plus
kube-system/kube-dns at 10.100.0.10 (CoreDNS pods on node-1 and node-2) and Pod
objects for node-0's 250 pod addresses (the clients).

Queries (generated into /tmp, never committed): 1,000,000 (100,000 with --quick)
Ethernet/IPv4/UDP queries from node-0's pods to 10.100.0.10:53, half of them with
an EDNS OPT record (payload 1232, as systemd-resolved and Go send), random IDs and
source ports. The Service of each query is drawn uniformly from all of them:
  35 %  A     <svc>.<ns>.svc.cluster.local               (its ClusterIP)
  15 %  AAAA  <svc>.<ns>.svc.cluster.local               (NODATA: an IPv4 cluster)
  15 %  SRV   _http._tcp.<svc>.<ns>.svc.cluster.local    (SRV + A additional)
  15 %  A     a Service that does not exist             (NXDOMAIN)
  20 %  A/AAAA search-path expansions a pod's resolver sends with ndots:5
        (<svc>.<ns>.bench.svc.cluster.local, <svc>.<ns>.svc.cluster.local.bench.svc.cluster.local:
        NXDOMAIN)
Every query is one kdp answers itself (none is passed on).

Measured in one process, CPU time of this process (time.process_time minus one clock
reading's cost per interval; the machine is shared), best of `repeat` passes:
  process, read loop     Dataplane.process on the capture read batch by batch (Batch(256),
                         replay's size), only process timed: parse, ingress, DNS stage,
                         account (answers skip conntrack, NAT and route)
  dns stage alone        kdp._fast.dns.dns_stage over the parsed batches
  replay()               read + process + write the answers to a pcap
  peer                   kdp/benchmarks/peers/dnspython_responder.py (dnspython parses the query and
                         renders the answer from the same zone; the records of each
                         name and type built once, as a server would keep them), in
                         process, on the first `peer` queries: no sockets on either side
Each of the peer's queries is also checked: kdp's answer and the peer's, parsed with
dnspython, must carry the same rcode, flags and records.
Compile: the zone (kdp.control.dns) and its table (kdp.control.dnswire), CPU seconds.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
import time

import numpy as np

from kdp.benchmarks import cluster as synth

FULL = {"services": 10_000, "endpoints": 100_000, "queries": 1_000_000, "peer": 20_000}
QUICK = {"services": 1_000, "endpoints": 10_000, "queries": 100_000, "peer": 5_000}
NODE = "node-0"
BATCH = 256
DNS_IP = "10.100.0.10"
MIX = (("A", 0.35), ("AAAA", 0.15), ("SRV", 0.15), ("NXDOMAIN", 0.15), ("search", 0.20))
# published sizing of one managed CoreDNS replica, in-cluster names (Alibaba Cloud ACK,
# "CoreDNS managed edition performance": 5,000 QPS per replica, 2 replicas 10,000)
COREDNS_REPLICA_QPS = 5_000
CLOCK = time.process_time


def _clock_cost(samples=2001):
    d = []
    for _ in range(samples):
        t0 = CLOCK()
        d.append(CLOCK() - t0)
    d.sort()
    return d[len(d) // 2]


def cluster_docs(services, endpoints):
    """The synthetic cluster, kube-dns, and node-0's pods."""
    docs = synth.generate(services, endpoints)
    docs.append({"apiVersion": "v1", "kind": "Service",
                 "metadata": {"name": "kube-dns", "namespace": "kube-system"},
                 "spec": {"clusterIP": DNS_IP, "clusterIPs": [DNS_IP], "selector": {"k8s-app": "kube-dns"},
                          "ports": [{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53},
                                    {"name": "dns-tcp", "protocol": "TCP", "port": 53, "targetPort": 53}]}})
    docs.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": {"name": "kube-dns-x", "namespace": "kube-system",
                              "labels": {"kubernetes.io/service-name": "kube-dns"}},
                 "addressType": "IPv4",
                 "ports": [{"name": "dns", "protocol": "UDP", "port": 53},
                           {"name": "dns-tcp", "protocol": "TCP", "port": 53}],
                 "endpoints": [{"addresses": ["10.64.1.253"], "nodeName": "node-1"},
                               {"addresses": ["10.64.2.253"], "nodeName": "node-2"}]})
    for k in range(250):
        docs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"pod-{k}", "namespace": "bench"},
                     "spec": {"nodeName": NODE}, "status": {"phase": "Running", "podIP": f"10.64.0.{k + 1}"}})
    return docs


def _wire(name):
    out = bytearray()
    for label in name.rstrip(".").split("."):
        out.append(len(label))
        out += label.encode()
    return bytes(out + b"\0")


_OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
_QT = {"A": 1, "AAAA": 28, "SRV": 33}


def queries(n, services, seed=7):
    """(DNS message bytes, kind) for n queries of the mix."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(len(MIX), n, p=[p for _, p in MIX])
    svc = rng.integers(0, services, n)
    edns = rng.random(n) < 0.5
    ids = rng.integers(0, 65536, n)
    aaaa = rng.random(n) < 0.5
    form = rng.random(n) < 0.5
    out = []
    for k in range(n):
        i = int(svc[k])
        ns = f"ns-{i % 50}"
        kind = MIX[kinds[k]][0]
        qt = 1
        if kind == "A":
            name = f"svc-{i}.{ns}.svc.cluster.local"
        elif kind == "AAAA":
            name, qt = f"svc-{i}.{ns}.svc.cluster.local", 28
        elif kind == "SRV":
            name, qt = f"_http._tcp.svc-{i}.{ns}.svc.cluster.local", 33
        elif kind == "NXDOMAIN":
            name = f"svc-{services + i}.{ns}.svc.cluster.local"
        else:
            name = (f"svc-{i}.{ns}.bench.svc.cluster.local" if form[k]
                    else f"svc-{i}.{ns}.svc.cluster.local.bench.svc.cluster.local")
            qt = 28 if aaaa[k] else 1
        head = struct.pack(">HHHHHH", int(ids[k]), 0x0100, 1, 0, 0, 1 if edns[k] else 0)
        out.append((head + _wire(name) + struct.pack(">HH", qt, 1) + (_OPT if edns[k] else b""), kind))
    return out


def _ip(text):
    a, b, c, d = (int(x) for x in text.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


_ETH = bytes.fromhex("020000000002" "020000000001" "0800")


def _frame(msg, src_host, sport):
    """Ethernet/IPv4/UDP from pod 10.64.0.<src_host> to the DNS address (UDP checksum 0,
    as IPv4 allows)."""
    ip = bytearray(struct.pack(">BBHHHBBHII", 0x45, 0, 28 + len(msg), 0, 0, 64, 17, 0,
                               _ip("10.64.0.0") + src_host, _ip(DNS_IP)))
    c = sum(struct.unpack(">10H", ip))
    c = (c & 0xFFFF) + (c >> 16)
    c = (c & 0xFFFF) + (c >> 16)
    ip[10:12] = struct.pack(">H", ~c & 0xFFFF)
    return _ETH + ip + struct.pack(">HHHH", sport, 53, 8 + len(msg), 0) + msg


def write_capture(path, msgs, seed=8):
    """The queries as an Ethernet/IPv4/UDP classic pcap."""
    rng = np.random.default_rng(seed)
    src = rng.integers(1, 251, len(msgs))
    sport = rng.integers(32768, 61000, len(msgs))
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
    for k, (msg, _kind) in enumerate(msgs):
        frame = _frame(msg, int(src[k]), int(sport[k]))
        out += struct.pack("<IIII", 1_700_000_000 + k // 1_000_000, k % 1_000_000, len(frame), len(frame))
        out += frame
    with open(path, "wb") as f:
        f.write(out)
    return len(out)


def _process_loop(path, dp, cost):
    from kdp._fast.packet import Batch
    from kdp.io.capture import open_capture
    reader = open_capture(path, ports=dp.ports)
    batch = Batch(BATCH)
    total, answered = 0.0, 0
    while reader.fill(batch):
        t = CLOCK()
        dp.process(batch)
        total += CLOCK() - t - cost
        answered += int((batch.meta[:batch.count]["verdict"] == 5).sum())
    reader.close()
    return total, answered


def _stage_loop(path, dp, cost):
    from kdp._fast.dns import NOTE_DTYPE, QUERY_SCRATCH_BYTES, dns_stage
    from kdp._fast.packet import Batch
    from kdp._fast.parse import parse
    from kdp.io.capture import open_capture
    reader = open_capture(path, ports=dp.ports)
    batch = Batch(BATCH)
    notes = np.zeros(BATCH, dtype=NOTE_DTYPE)
    scratch = np.zeros(BATCH * QUERY_SCRATCH_BYTES, dtype=np.uint8)
    counters = np.zeros(len(dp.dns_counters), dtype=np.uint64)
    table = dp.pipeline.dns
    total = 0.0
    while reader.fill(batch):
        parse(batch)
        t = CLOCK()
        dns_stage(batch, table, counters, notes, scratch)
        total += CLOCK() - t - cost
    reader.close()
    return total


def _kdp_answers(dp, msgs):
    """kdp's answer bytes to each DNS message (None where kdp did not answer)."""
    from kdp._fast.packet import Batch
    out = []
    for a in range(0, len(msgs), BATCH):
        b = Batch(BATCH)
        for k, (msg, _) in enumerate(msgs[a:a + BATCH]):
            b.append(_frame(msg, 9, 40000 + k))
        dp.process(b)
        for i in range(b.count):
            m = b.meta[i]
            out.append(b.packet(i)[int(m["l4_off"]) + 8:] if m["verdict"] == 5 else None)
    return out


def measure(quick=False, repeat=3):
    from kdp.control import Cluster
    from kdp.control.dns import build_zone
    from kdp.control.dnswire import compile_dns
    from kdp.dataplane import Dataplane
    from kdp.control import compile as compile_cluster
    size = QUICK if quick else FULL
    cost = _clock_cost()
    res = {"size": size, "load_before": os.getloadavg()}
    cluster = Cluster.from_documents(cluster_docs(size["services"], size["endpoints"]), node=NODE)
    t = CLOCK()
    zone = build_zone(cluster)
    t1 = CLOCK()
    table = compile_dns(zone)
    t2 = CLOCK()
    res["compile"] = {"zone_s": t1 - t, "table_s": t2 - t1, "names": len(table),
                      "blob_mb": table.blob.nbytes / 1e6}
    tables = compile_cluster(cluster)
    msgs = queries(size["queries"], size["services"])
    res["mix"] = {k: sum(1 for _, kk in msgs if kk == k) for k, _ in MIX}
    with tempfile.TemporaryDirectory(prefix="kdp-bench-dns-") as tmp:
        path = os.path.join(tmp, "queries.pcap")
        t = time.perf_counter()
        res["capture_bytes"] = write_capture(path, msgs)
        res["generate_s"] = time.perf_counter() - t
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass
        # answering keeps no state (no conntrack flow): one data plane serves every pass
        dp = Dataplane(tables)
        best = stage = replay_s = None
        for _ in range(repeat):
            before = dp.dns_counters.copy()
            s, answered = _process_loop(path, dp, cost)
            if best is None or s < best:
                best, res["answered"] = s, answered
                res["outcomes"] = {k: int(v) for k, v in zip(_labels(), dp.dns_counters - before) if v}
            s = _stage_loop(path, dp, cost)
            stage = s if stage is None or s < stage else stage
            from kdp.replay import replay
            t = CLOCK()
            r = replay(path, os.path.join(tmp, "out.pcap"), dataplane=dp, batch_size=BATCH)
            s = CLOCK() - t
            replay_s = s if replay_s is None or s < replay_s else replay_s
            res["replay_out"] = r.packets_out
        res["process_s"], res["stage_s"], res["replay_s"] = best, stage, replay_s
    # the peer, on the first `peer` queries; and both answers compared
    from kdp.benchmarks.peers import attempt
    res["peers_not_run"] = []
    res["peer"] = attempt("dnspython responder", lambda: _peer(zone, dp, msgs[:size["peer"]], repeat),
                          res["peers_not_run"])
    res["load_after"] = os.getloadavg()
    return res


def _peer(zone, dp, msgs, repeat):
    from kdp.benchmarks.peers import dnspython_responder as peer
    responder = peer.responder(zone)
    sample = [m for m, _ in msgs]
    best = None
    for _ in range(repeat):
        t = CLOCK()
        ref = [responder.respond(m)[1] for m in sample]
        s = CLOCK() - t
        best = s if best is None or s < best else best
    mine = _kdp_answers(dp, msgs)
    return {"queries": len(sample), "seconds": best,
            "mismatches": sum(1 for a, b in zip(mine, ref)
                              if a is None or b is None or not peer.same_answer(a, b))}


def _labels():
    from kdp._fast.dns import OUTCOME_LABELS
    return OUTCOME_LABELS


def main(args) -> int:
    quick = bool(getattr(args, "quick", False))
    res = measure(quick=quick)
    if getattr(args, "json", False):
        print(json.dumps(res, indent=2))
        return 0
    from kdp.commands.common import console
    from rich.table import Table
    n = res["size"]["queries"]
    t = Table(title=f"Cluster DNS: {n:,} queries ({', '.join(f'{k} {v:,}' for k, v in res['mix'].items())}), "
                    f"{res['size']['services']:,} Services / {res['size']['endpoints']:,} endpoints, batch {BATCH}")
    t.add_column("what")
    t.add_column("CPU seconds", justify="right")
    t.add_column("M answers/s", justify="right")
    t.add_column("ns/answer", justify="right")
    t.add_column("× peer", justify="right")
    p = res["peer"]
    peer_rate = p["queries"] / p["seconds"] if p else None
    rows = [("kdp: process (parse, ingress, DNS stage, account), read loop", res["process_s"], n),
            ("kdp: DNS stage alone", res["stage_s"], n),
            ("kdp: replay() read + process + write", res["replay_s"], n)]
    if p:
        rows.append((f"peer: dnspython responder, in process ({p['queries']:,} queries)", p["seconds"],
                     p["queries"]))
    for name, s, count in rows:
        rate = count / s
        t.add_row(name, f"{s:.3f}", f"{rate / 1e6:.3f}", f"{s / count * 1e9:,.0f}",
                  f"{rate / peer_rate:,.0f}" if peer_rate else "")
    console().print(t)
    from kdp.benchmarks.peers import print_not_run
    print_not_run(res["peers_not_run"])
    rate = res["answered"] / res["process_s"]
    print(f"answered by kdp: {res['answered']:,} of {n:,} ({res['outcomes']}); replay wrote {res['replay_out']:,}")
    if p:
        print(f"kdp and the peer gave the same answer to {p['queries'] - p['mismatches']:,} of "
              f"{p['queries']:,} queries")
    print(f"target >= 3 M answers/s per core: {'met' if rate >= 3e6 else 'not met'} ({rate / 1e6:.2f} M/s); "
          f"a managed CoreDNS replica is sized at ~{COREDNS_REPLICA_QPS:,} in-cluster queries/s: "
          f"one kdp core answers {rate / COREDNS_REPLICA_QPS:,.0f}× that")
    c = res["compile"]
    print(f"compile: zone {c['zone_s']:.2f} s + table {c['table_s']:.2f} s CPU, {c['names']:,} names, "
          f"{c['blob_mb']:.1f} MB; capture {res['capture_bytes'] / 1e6:.0f} MB generated in {res['generate_s']:.1f} s")
    print(f"load average before / after: {' '.join(f'{x:.2f}' for x in res['load_before'])} / "
          f"{' '.join(f'{x:.2f}' for x in res['load_after'])}")
    return 0
