"""`kdp bench policy`: what NetworkPolicy costs per packet, per new flow and to compile.

Cluster (deterministic): 100 namespaces (labels team, env) of 100 pods each, 10,000
pods on 100 nodes (node k owns 10.(64+k>>8).(k&255).0/24; pod (n, j) runs on node
(37 n + j) mod 100, so node-0 hosts one pod of each namespace); pod labels app (10
per namespace, named after it: 1,000 apps), tier, version; named container ports
http 8080, metrics 9090, and grpc 9000 on half of them.
--quick: 20 namespaces, 2,000 pods.

Policy sets: policy k lives in namespace k mod 100 (mod 20 with --quick), so N
policies give every namespace N/100 of them. The first of each namespace lets every
pod and every outside address in and out ("allow-bench": the benchmark's flows are
all allowed, whatever N; named to sort last, so that where another rule allows a
flow its label says so); the others cycle through the shapes real clusters use:
ingress to every pod of the namespace from one of its apps on the named port http,
ingress from other
namespaces' pods on a port range, egress to pods of prod namespaces and to DNS,
ingress from an ipBlock with an exception, egress to the internet (0.0.0.0/0 except
10.0.0.0/8). Sets: none, 10, 1,000 and 10,000 (--quick: 10, 200, 1,000).

Capture (numpy, in /tmp, removed after): 1,000,000 packets (100,000 with --quick) of
TCP flows of 10 packets (SYN, SYN-ACK, ACK, data both ways, FIN both ways), 10,000
new flows/s, between pods of the namespaces every set covers (ns-0..ns-9) with one
end on node-0 (45 % from a local pod, 45 % to one, 10 % local to local), plus 10 %
from outside addresses to local pods. A second capture holds only the flows' SYNs:
every packet a new flow.

Measured (CPU time of this process, best of 3, the pipeline benchmark's method):
packets/s through Dataplane.process for each set (fresh conntrack: the capture's
new/established mix) and new flows/s (the SYN capture); per set the compile time
(validate + compile the policies), the compiled tables' memory, identities,
profiles. Beside it, `nca --connectivity` on the same manifests (namespaces, pods,
policies), growing: 2 namespaces (200 pods, 20 policies), 10 (1,000 pods, 100
policies), 50 (5,000 pods, 500 policies), then the 1,000 set on all 10,000 pods
(--quick: 200 on 2,000); its wall
time to an answer, or the time it was given (300 s; 10 s with --quick) when it gives
none; a failing run is left out, its stderr shown (kdp/benchmarks/peers/nca.py: nca
comes from .venv-nca, which run-tests.sh makes, KDP_NCA or PATH).
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from kdp.benchmarks.pipeline import CLOCK, SYN, ACK, PSH, FIN, _cost, write_pcap

NODE = "node-0"
FULL = {"namespaces": 100, "pods_per_ns": 100, "nodes": 100, "packets": 1_000_000,
        "sets": (10, 1_000, 10_000), "main": 1_000, "nca_timeout_s": 300}
QUICK = {"namespaces": 20, "pods_per_ns": 100, "nodes": 100, "packets": 100_000,
         "sets": (10, 200, 1_000), "main": 200, "nca_timeout_s": 10}
FLOW_LEN = 10
FLOWS_PER_S = 10_000
TRAFFIC_NS = 10                 # flows stay in ns-0 .. ns-9 (covered by every set)


def _node_of(n, j, nodes):
    return (37 * n + j) % nodes


def _pod_ip(node, i):
    return f"10.{64 + (node >> 8)}.{node & 255}.{1 + i}"


def cluster_docs(namespaces=100, pods_per_ns=100, nodes=100):
    """NodeConfig, Nodes, Namespaces and Pods (no policies), and {pod key: (ip, node)}."""
    docs = [{"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": NODE},
             "spec": {"clusterCIDRs": ["10.64.0.0/10"], "serviceCIDRs": ["10.96.0.0/12"]}}]
    for k in range(nodes):
        docs.append({"apiVersion": "v1", "kind": "Node", "metadata": {"name": f"node-{k}"},
                     "spec": {"podCIDRs": [f"10.{64 + (k >> 8)}.{k & 255}.0/24"]},
                     "status": {"addresses": [{"type": "InternalIP", "address": f"192.168.{k >> 8}.{1 + (k & 255)}"}]}})
    where = {}
    count = [0] * nodes
    for n in range(namespaces):
        docs.append({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": f"ns-{n}", "labels": {"team": f"t{n % 10}",
                                                               "env": "prod" if n % 2 == 0 else "dev"}}})
        for j in range(pods_per_ns):
            node = _node_of(n, j, nodes)
            ip = _pod_ip(node, count[node])
            count[node] += 1
            ports = [{"name": "http", "containerPort": 8080}, {"name": "metrics", "containerPort": 9090}]
            if j % 10 < 5:
                ports.append({"name": "grpc", "containerPort": 9000})
            docs.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"namespace": f"ns-{n}", "name": f"p-{j}",
                                      "labels": {"app": f"n{n}-a{j % 10}", "tier": ("web", "api", "db")[j % 3],
                                                 "version": f"v{j % 2}"}},
                         "spec": {"nodeName": f"node-{node}", "containers": [{"name": "main", "ports": ports}]},
                         "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
            where[(n, j)] = (ip, node)
    return docs, where


def _allow_bench(ns):
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"namespace": ns, "name": "zz-allow-bench"},   # last: the others label first
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"],
                     "ingress": [{"from": [{"namespaceSelector": {}}, {"ipBlock": {"cidr": "0.0.0.0/0"}}]}],
                     "egress": [{"to": [{"namespaceSelector": {}}, {"ipBlock": {"cidr": "0.0.0.0/0"}}]}]}}


def policy_docs(count, namespaces=100):
    """`count` NetworkPolicies (see the module docstring)."""
    out = []
    for k in range(count):
        n, r = k % namespaces, k // namespaces
        ns = f"ns-{n}"
        if r == 0:
            out.append(_allow_bench(ns))
            continue
        app, other = f"n{n}-a{r % 10}", f"n{n}-a{(r + 1) % 10}"
        shape = r % 5
        if shape == 1:
            spec = {"podSelector": {},
                    "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": other}}}], "ports": [{"port": "http"}]}]}
        elif shape == 2:
            spec = {"podSelector": {"matchLabels": {"app": app}},
                    "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": f"t{r % 10}"}},
                                           "podSelector": {"matchLabels": {"tier": "web"}}}],
                                 "ports": [{"port": 8080, "endPort": 8090}]}]}
        elif shape == 3:
            spec = {"podSelector": {"matchLabels": {"app": app}}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"namespaceSelector": {"matchLabels": {"env": "prod"}},
                                        "podSelector": {"matchLabels": {"app": f"n{(n + r) % namespaces}-a{(r + 3) % 10}"}}}],
                                "ports": [{"port": 8080}]},
                               {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
                                "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}]}
        elif shape == 4:
            spec = {"podSelector": {"matchExpressions": [{"key": "app", "operator": "In", "values": [app, other]}]},
                    "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8", "except": [f"10.{64 + r % 30}.0.0/16"]}}],
                                 "ports": [{"port": 443}]}]}
        else:
            spec = {"podSelector": {"matchLabels": {"tier": "db"}}, "policyTypes": ["Egress"],
                    "egress": [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8"]}}],
                                "ports": [{"port": 443}, {"port": 5432}]}]}
        out.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                    "metadata": {"namespace": ns, "name": f"p{k}"}, "spec": spec})
    return out


# ------------------------------------------------------------------ captures

def _ip(s):
    a, b, c, d = (int(x) for x in s.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def write_captures(path, syn_path, where, nodes, n_packets, seed=7):
    """The flow capture and the SYN-only capture (see the module docstring)."""
    rng = np.random.default_rng(seed)
    local = [ip for (n, j), (ip, node) in where.items() if node == 0 and n < TRAFFIC_NS]
    peers = [ip for (n, j), (ip, node) in where.items() if n < TRAFFIC_NS]
    local = np.array([_ip(x) for x in local], np.uint64)
    peers = np.array([_ip(x) for x in peers], np.uint64)
    nf = n_packets // FLOW_LEN
    kind = rng.choice(4, nf, p=(0.40, 0.40, 0.10, 0.10))        # out, in, local-local, outside-in
    li = rng.integers(0, len(local), nf)
    loc = local[li]
    peer = peers[rng.integers(0, len(peers), nf)]
    loc2 = local[(li + rng.integers(1, len(local), nf)) % len(local)]     # another local pod
    outside = np.uint64(_ip("198.18.0.0")) + rng.integers(0, 1 << 16, nf).astype(np.uint64)
    src = np.select([kind == 0, kind == 1, kind == 2], [loc, peer, loc], outside)
    dst = np.select([kind == 0, kind == 1, kind == 2], [peer, loc, loc2], loc)
    kind[src == dst] = 2                    # a local pod drawn as its own peer: count it local-local
    sport = rng.integers(32768, 61000, nf).astype(np.uint64)
    dport = np.full(nf, 8080, np.uint64)
    start = np.sort(rng.integers(0, max(1, nf * 1_000_000 // FLOWS_PER_S), nf)).astype(np.int64)
    k = np.tile(np.arange(FLOW_LEN), nf)
    flow = np.repeat(np.arange(nf), FLOW_LEN)
    rev = np.isin(k, (1, 4, 6, 9))
    flags = np.full(nf * FLOW_LEN, ACK, np.uint64)
    flags[k == 0] = SYN
    flags[k == 1] = SYN | ACK
    flags[(k >= 3) & (k <= 7)] = PSH | ACK
    flags[k >= 8] = FIN | ACK
    payload = np.where((k >= 3) & (k <= 7), 200, 0)
    usec = start[flow] + k * 500
    order = np.argsort(usec, kind="stable")
    s = np.where(rev, dst[flow], src[flow])
    d = np.where(rev, src[flow], dst[flow])
    sp = np.where(rev, dport[flow], sport[flow])
    dp = np.where(rev, sport[flow], dport[flow])
    seq = (np.uint64(1000) * k.astype(np.uint64) + flow.astype(np.uint64)) & np.uint64(0xFFFFFFFF)
    write_pcap(path, usec[order], s[order], d[order], sp[order], dp[order], flags[order], payload[order], seq[order])
    z = np.zeros(nf, np.int64)
    write_pcap(syn_path, start, src, dst, sport, dport, np.full(nf, SYN), z, z.astype(np.uint64))
    return {"packets": nf * FLOW_LEN, "flows": int(nf), "local_pods": int(len(local)),
            "peer_pods": int(len(peers)), "kinds": {k_: int((kind == i).sum()) for i, k_ in
                                                    enumerate(("local->pod", "pod->local", "local->local", "outside->local"))}}


# ------------------------------------------------------------------ measurements

def _loop(path, dp):
    from kdp._fast.packet import Batch
    from kdp.io.pcap import CaptureReader
    c = _cost()
    reader = CaptureReader(path)
    batch = Batch(256)
    total = 0.0
    while reader.fill(batch):
        t = CLOCK()
        dp.process(batch)
        total += CLOCK() - t - c
    reader.close()
    return total


def _outcomes(dp):
    from kdp.reasons import Reason
    c = dp.counters
    return {Reason(rs).label: int(c[:, rs].sum()) for rs in range(c.shape[1]) if c[:, rs].sum()}


def measure_set(base_docs, n_policies, namespaces, path, syn_path, repeat=3):
    """Compile and packet figures of one policy set."""
    from kdp.control import Cluster, compile as compile_cluster
    from kdp.control.policy_compile import compile_policy
    from kdp.dataplane import Dataplane
    pols = policy_docs(n_policies, namespaces)
    docs = base_docs + pols
    t0 = CLOCK()
    cluster = Cluster.from_documents(docs, node=NODE)
    t1 = CLOCK()
    compiled = compile_policy(cluster)
    t2 = CLOCK()
    tables = compile_cluster(cluster)
    tables.policy = compiled
    res = {"policies": n_policies, "validate_all_s": t1 - t0, "policy_compile_s": t2 - t1}
    # validating the policies alone (the rest of the snapshot is the same for every set)
    t = CLOCK()
    Cluster.from_documents(base_docs[:2] + pols, node=NODE)        # NodeConfig and Node of node-0
    res["policy_validate_s"] = CLOCK() - t
    if compiled is not None:
        res["stats"] = {k: v for k, v in compiled.stats.items() if k != "compile_s"}
        res["memory"] = compiled.tables.memory()
    best, best_syn, outcomes = None, None, None
    for _ in range(repeat):
        dp = Dataplane(tables)
        s = _loop(path, dp)
        if best is None or s < best:
            best = s
            outcomes = _outcomes(dp)
        dp = Dataplane(tables)
        s = _loop(syn_path, dp)
        best_syn = s if best_syn is None or s < best_syn else best_syn
    res.update({"process_s": best, "syn_process_s": best_syn, "outcomes": outcomes})
    return res


def measure_nca(size, tmpdir, not_run):
    """nca --connectivity on growing slices of the benchmark (namespaces of 100 pods, 10
    policies each), up to the main set; stops at the first that gives no answer in time
    (a failing or missing nca is recorded in `not_run`)."""
    from kdp.benchmarks.peers import attempt
    from kdp.benchmarks.peers import nca
    steps = [(2, 20), (10, 100), (50, 500), (size["namespaces"], size["main"])]
    steps = [st for st in steps if st[0] < size["namespaces"]] + [(size["namespaces"], size["main"])]
    out = []
    for namespaces, n_policies in steps:
        docs, _where = cluster_docs(namespaces, 100, size["nodes"])

        def run():
            return {"answer": nca.connectivity([d for d in docs if d["kind"] == "Namespace"],
                                               [d for d in docs if d["kind"] == "Pod"],
                                               policy_docs(n_policies, namespaces), tmpdir,
                                               size["nca_timeout_s"])}
        got = attempt(f"nca ({namespaces * 100:,} pods, {n_policies:,} policies)", run, not_run)
        if got is None:
            break
        row = {"pods": namespaces * 100, "namespaces": namespaces, "policies": n_policies}
        if got["answer"] is None:
            out.append({**row, "seconds": None, "note": f"no answer within {size['nca_timeout_s']} s (stopped)"})
            break
        out.append({**row, "seconds": got["answer"][0], "lines": got["answer"][1]})
    return out


def measure(quick=False, repeat=3, nca=True):
    size = QUICK if quick else FULL
    res = {"size": {k: v for k, v in size.items()}}
    with tempfile.TemporaryDirectory(prefix="kdp-bench-policy-") as tmp:
        base, where = cluster_docs(size["namespaces"], size["pods_per_ns"], size["nodes"])
        res["pods"] = len(where)
        path = os.path.join(tmp, "flows.pcap")
        syn_path = os.path.join(tmp, "syns.pcap")
        res["capture"] = write_captures(path, syn_path, where, size["nodes"], size["packets"])
        for p in (path, syn_path):
            with open(p, "rb") as f:
                while f.read(1 << 24):
                    pass
        res["sets"] = [measure_set(base, 0, size["namespaces"], path, syn_path, repeat)]
        for n in size["sets"]:
            res["sets"].append(measure_set(base, n, size["namespaces"], path, syn_path, repeat))
        res["peers_not_run"] = []
        if nca:
            res["nca"] = measure_nca(size, tmp, res["peers_not_run"])
        os.unlink(path)
        os.unlink(syn_path)
    return res


def main(args) -> int:
    quick = bool(getattr(args, "quick", False))
    res = measure(quick=quick)
    if getattr(args, "json", False):
        print(json.dumps(res, indent=2))
        return 0
    from kdp.commands.common import console
    from rich.table import Table
    con = console()
    cap = res["capture"]
    n, flows = cap["packets"], cap["flows"]
    base = res["sets"][0]
    t = Table(title=f"NetworkPolicy: {res['pods']:,} pods in {res['size']['namespaces']} namespaces; "
                    f"{n:,} packets in {flows:,} TCP flows of {FLOW_LEN} (node-0: {cap['local_pods']} local pods "
                    f"in the flows), batch 256")
    for col in ("policies", "M packets/s", "vs none", "ns/packet", "new flows/s", "ns/new flow",
                "compile s", "tables MiB", "identities", "profiles"):
        t.add_column(col, justify="right")
    for s in res["sets"]:
        mem = s.get("memory", {}).get("total", 0) / (1 << 20)
        st = s.get("stats", {})
        t.add_row(f"{s['policies']:,}", f"{n / s['process_s'] / 1e6:.2f}",
                  f"{base['process_s'] / s['process_s'] * 100:.0f} %",
                  f"{s['process_s'] / n * 1e9:.0f}", f"{flows / s['syn_process_s']:,.0f}",
                  f"{s['syn_process_s'] / flows * 1e9:.0f}",
                  f"{s['policy_compile_s']:.3f}" if s["policies"] else "-",
                  f"{mem:.1f}" if mem else "-", f"{st.get('identities', 0):,}" if st else "-",
                  f"{st.get('profiles', 0):,}" if st else "-")
    con.print(t)
    for s in res["sets"][1:]:
        print(f"{s['policies']:,} policies: validate {s['policy_validate_s']:.3f} s, compile "
              f"{s['policy_compile_s']:.3f} s; outcomes {s['outcomes']}; memory "
              + ", ".join(f"{k} {v / 1024:.0f} KiB" for k, v in s.get("memory", {}).items() if k != "total"))
    for nc in res.get("nca", []):
        what = (f"nca --connectivity, {nc['pods']:,} pods in {nc['namespaces']} namespaces, "
                f"{nc['policies']:,} policies")
        if nc["seconds"] is not None:
            print(f"{what}: {nc['seconds']:.1f} s wall ({nc['lines']:,} lines of connections)")
        else:
            print(f"{what}: {nc['note']}")
    from kdp.benchmarks.peers import print_not_run
    print_not_run(res.get("peers_not_run", []))
    return 0
