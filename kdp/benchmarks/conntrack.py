"""`kdp bench conntrack`: the flow table at 1 M live flows.

Workload (deterministic, seeded): 1,048,576 distinct IPv4 flows (131,072 with
`--quick`), 80 % TCP / 20 % UDP, client addresses in 10.0.0.0/8 with random
ports, servers among 4,096 pod addresses on ports 80/443/53/8080. The table's
capacity equals the flow count, so the last measurements run on a full table.

Measured on one core, best of repeats:

* new flows/s, bulk (``Conntrack.insert4``) while filling the table 0 -> N
  (lookup of the tuple, reply-tuple uniqueness check, allocation, both
  directions indexed, FIFO of non-assured flows);
* new flows/s at N live flows: every insert evicts the oldest non-assured flow
  (the steady state of a SYN flood against a full table);
* new flows/s through the whole pipeline, the headline: batches of 256 SYNs from
  node-0's pods to the ClusterIPs of the pipeline suite's cluster (1,000 Services),
  run by Dataplane.process: parse, ingress, conntrack miss, Service choice, the flow
  created, NAT, route and the frame rewritten, on a fresh data plane (its conntrack
  prefaulted, as always);
* new flows/s through the stage alone (labelled so): batches of 256 parsed SYN packets,
  ``ct_lookup_batch`` then ``ct_create`` for each (what the pipeline runs), on a
  prefaulted table (as the Dataplane builds it) and on a lazily backed one;
* established lookups/s, bulk (``Conntrack.lookup4``: hash, index, verify);
* established packets/s through the stage: ``ct_lookup_batch`` over batches of
  256 parsed TCP ACK packets of random live flows (lookup, TCP state,
  per-direction packet/byte counters, last-seen time);
* bytes of memory per flow: allocated (records + index + links) / capacity,
  and the resident-set growth while filling the table.

Peers in the same run: a Python dict keyed by 5-tuples (inserts and lookups of
the same tuples, on a subset: it is the naive reference), and Linux
nf_conntrack at the same number of live flows when the run has root, `ip`
and `nft` (kdp/benchmarks/peers/linux_conntrack.py: the CPU time conntrack adds to
a UDP packet over loopback in a private namespace, new and established
flows, by difference with a notrack run; reported as packets/s per core).
Its per-flow memory is read from /proc/slabinfo when the module is loaded
(the nf_conntrack slab object size; the hash-bucket heads add 8 bytes per
bucket on top). When the Linux peer cannot run or fails, it is left out of the
table and the reason (with its worker's stderr) is printed under it and given
in "peers_not_run" (kdp/benchmarks/peers/__init__.py).
"""
import json
import resource
import time

import numpy as np

SEED = 20261121
DEFAULT_FLOWS = 1 << 20
QUICK_FLOWS = 1 << 17
BATCH = 256
TARGETS = {"lookup": 20e6, "insert": 4e6, "bytes_per_flow": 160}


def flows(n, seed=SEED):
    """(src, dst, sport, dport, proto) numpy arrays of n distinct IPv4 tuples."""
    rng = np.random.default_rng(seed)
    m = int(n * 1.05) + 1024
    src = (np.uint32(0x0A000000) + rng.integers(0, 1 << 24, m, dtype=np.uint32)).astype(np.uint32)
    pods = (np.uint32(0x0AF40000) + rng.integers(0, 1 << 16, 4096, dtype=np.uint32)).astype(np.uint32)
    dst = pods[rng.integers(0, 4096, m)]
    sport = rng.integers(1024, 65536, m, dtype=np.uint32).astype(np.uint16)
    dport = np.array([80, 443, 53, 8080], np.uint16)[rng.integers(0, 4, m)]
    proto = np.where(rng.random(m) < 0.8, 6, 17).astype(np.uint8)
    key = ((src.astype(np.uint64) << np.uint64(32)) | (sport.astype(np.uint64) << np.uint64(16))
           | (dport.astype(np.uint64) ^ (proto.astype(np.uint64) << np.uint64(8)))) ^ (dst.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))
    _, first = np.unique(key, return_index=True)
    first = np.sort(first)[:n]
    if first.size < n:
        raise RuntimeError("not enough distinct tuples")
    perm = rng.permutation(n)
    return tuple(a[first][perm] for a in (src, dst, sport, dport, proto))


def tcp_frames(tup, idx, flags):
    """(k, 54) uint8 array: Ethernet/IPv4/TCP frames (valid IPv4 header checksum,
    TCP checksum not filled: nothing here checks it) for the tuples at idx."""
    src, dst, sport, dport, _ = tup
    k = len(idx)
    f = np.zeros((k, 54), np.uint8)
    f[:, 0:6] = [2, 0, 0, 0, 0, 2]
    f[:, 6:12] = [2, 0, 0, 0, 0, 1]
    f[:, 12:14] = [8, 0]
    f[:, 14] = 0x45
    f[:, 16:18] = [0, 40]
    f[:, 22] = 64
    f[:, 23] = 6
    be = lambda a, n: a.astype(">u%d" % n).view(np.uint8).reshape(-1, n)
    f[:, 26:30] = be(src[idx], 4)
    f[:, 30:34] = be(dst[idx], 4)
    f[:, 34:36] = be(sport[idx], 2)
    f[:, 36:38] = be(dport[idx], 2)
    f[:, 46] = 0x50
    f[:, 47] = flags
    f[:, 48:50] = [0xFF, 0xFF]
    words = f[:, 14:34].reshape(k, 10, 2).astype(np.uint32)
    sm = (words[:, :, 0] << 8 | words[:, :, 1]).sum(axis=1)
    sm = (sm & 0xFFFF) + (sm >> 16)
    sm = (sm & 0xFFFF) + (sm >> 16)
    f[:, 24:26] = be((~sm & 0xFFFF).astype(np.uint16), 2)
    return f


def stage_rate(ct, frames, now_ns, create=False, group=16):
    """Seconds spent in the conntrack stage(s) over all frames, in batches of
    BATCH: `group` batches are filled and parsed (not timed), then run."""
    from kdp._fast.packet import Batch
    from kdp._fast.parse import parse
    bs = [Batch(BATCH) for _ in range(group)]
    spent = 0.0
    done = made = 0
    step = BATCH * group
    for g in range(0, len(frames), step):
        used = []
        for j, b in enumerate(bs):
            lo = g + j * BATCH
            if lo >= len(frames):
                break
            b.clear()
            for row in frames[lo:lo + BATCH]:
                b.append(row.tobytes())
            parse(b)
            used.append(b)
        t0 = time.perf_counter()
        if create:
            for b in used:
                ct.lookup_batch(b, now_ns)
                made += ct.create_all(b, now_ns)
        else:
            for b in used:
                ct.lookup_batch(b, now_ns)
        spent += time.perf_counter() - t0
        for b in used:
            st = b.meta["ct_state"][:len(b)]
            done += int(np.count_nonzero((st == 2) | (st == 3)))
    return spent, done, made


def _best(fn, repeats):
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def _rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def linux_slab_object_size():
    """Object size of the nf_conntrack slab (bytes), None when not readable."""
    try:
        with open("/proc/slabinfo") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] == "nf_conntrack":
                    return int(parts[3])
    except OSError:
        return None
    return None


def _linux_peer(res, add, n, quick):
    from kdp.benchmarks.peers import attempt, linux_conntrack
    lx = attempt("linux nf_conntrack",
                 lambda: linux_conntrack.measure(n, packets=100_000 if quick else 500_000,
                                                 repeats=1 if quick else 3),
                 res["peers_not_run"])
    if lx is None:
        return
    res["linux"] = lx
    note = (f"CPU ns conntrack adds per packet (tracked - notrack), median of "
            f"{len(lx['runs'])}; UDP over loopback, {n:,} live flows")
    add("new flows/s (first packet of a flow)", "linux nf_conntrack", n,
        n * lx["new_ns"] / 1e9, note)
    add("established packets/s", "linux nf_conntrack", lx["packets"],
        lx["packets"] * lx["established_ns"] / 1e9, note)


def measure(n=DEFAULT_FLOWS, quick=False):
    from kdp._fast.conntrack import Conntrack, TCP_STATES, NO_FLOW
    tup = flows(n)
    src, dst, sport, dport, proto = tup
    repeats = 2 if quick else 3
    res = {"flows": n, "capacity": n, "results": [], "peers_not_run": []}

    def add(what, impl, count, seconds, note=""):
        res["results"].append({"measure": what, "impl": impl, "count": count, "seconds": seconds,
                               "rate": count / seconds if seconds else None, "note": note})

    # -- the headline: a new flow through the whole pipeline
    _pipeline_new_flows(add, (128 if not quick else 16) * 1024, repeats)

    # -- fill 0 -> N (fresh table each repeat)
    ins_best = float("inf")
    ct = None
    for _ in range(repeats):
        ct = None
        ct = Conntrack(n)
        rss0 = _rss_kib()
        t0 = time.perf_counter()
        ids = ct.insert4(src, dst, sport, dport, proto, 1, tcp_state=TCP_STATES["ESTABLISHED"])
        ins_best = min(ins_best, time.perf_counter() - t0)
        rss1 = _rss_kib()
    assert len(ct) == n and not np.any(ids == NO_FLOW)
    add("new flows/s (bulk insert4, fill 0 -> N)", "kdp", n, ins_best)
    res["bytes_per_flow"] = ct.bytes_per_flow
    res["rss_per_flow"] = (rss1 - rss0) * 1024 / n

    # -- established lookups, bulk
    q = np.random.default_rng(SEED + 1).integers(0, n, 4 * n if not quick else n)
    qa = [a[q] for a in tup]
    out = np.empty(q.size, np.uint32)
    sec = _best(lambda: ct.lookup4(*qa, out=out), repeats)
    assert np.array_equal(out, ids[q])
    add("established lookups/s (bulk lookup4)", "kdp", q.size, sec)

    # -- established packets through the stage (TCP ACKs of random live TCP flows;
    #    a working set far larger than the caches)
    k = (256 if not quick else 32) * 1024
    tcp_ids = np.flatnonzero(proto == 6)
    pidx = tcp_ids[np.random.default_rng(SEED + 2).integers(0, tcp_ids.size, k)]
    frames = tcp_frames(tup, pidx, 0x10)
    sec = float("inf")
    for _ in range(repeats):
        s1, hits, _ = stage_rate(ct, frames, 2)
        sec = min(sec, s1)
    add("established packets/s (ct_lookup_batch, 256/batch)", "kdp", k, sec,
        f"{hits:,}/{k:,} established; TCP state + counters updated")

    # -- python dict peer (subset)
    m = min(n, 200_000)
    keys = list(zip(src[:m].tolist(), dst[:m].tolist(), sport[:m].tolist(), dport[:m].tolist(),
                    proto[:m].tolist()))
    d = {}
    t0 = time.perf_counter()
    for i, key in enumerate(keys):
        d[key] = i
    add("new flows/s", "python dict", m, time.perf_counter() - t0, "5-tuple keys, one direction")
    qk = [keys[i] for i in np.random.default_rng(SEED + 3).integers(0, m, m).tolist()]
    get = d.get
    sec = _best(lambda: [get(x) for x in qk], repeats)
    add("established lookups/s", "python dict", m, sec, "5-tuple keys")
    del d, keys, qk

    # -- new flows at N live: each evicts the oldest non-assured flow
    c = n // 4
    rng = np.random.default_rng(SEED + 4)
    nsrc = (np.uint32(0xAC100000) + rng.integers(0, 1 << 20, c, dtype=np.uint32)).astype(np.uint32)
    ev0 = ct.counters()["evictions"]
    t0 = time.perf_counter()
    nid = ct.insert4(nsrc, dst[:c], sport[:c], dport[:c], proto[:c], 3)
    sec = time.perf_counter() - t0
    assert not np.any(nid == NO_FLOW) and len(ct) == n, (int(np.count_nonzero(nid == NO_FLOW)), len(ct), ct.counters())
    add("new flows/s at N live (each evicts the oldest non-assured)", "kdp", c, sec,
        f"{ct.counters()['evictions'] - ev0:,} evictions")

    # -- new flows through the stage: SYNs of new tuples (clients in 172.16/12),
    #    lookup miss then ct_create, into a table that holds the N flows already.
    #    Twice, on a fresh table each time: lazily backed (prefault=False: every new flow
    #    takes a never-used record, and in this VM the first touch of a page, zeroed at
    #    ~0.45 GB/s when the host has not backed it yet, then dominates; run first, so
    #    that it meets such pages), then prefaulted (Conntrack(prefault=True), as the
    #    Dataplane builds it: the record memory is backed at construction, whose time
    #    the note gives; on memory the host has not backed yet it is ~0.1-0.4 s here).
    k2 = (128 if not quick else 16) * 1024
    alt = (np.uint32(0xAC100000) + np.random.default_rng(SEED + 5).integers(0, 1 << 20, k2, dtype=np.uint32)).astype(np.uint32)
    syn = (alt, dst[:k2], sport[:k2], np.full(k2, 80, np.uint16), np.full(k2, 6, np.uint8))
    frames = tcp_frames(syn, np.arange(k2), 0x02)
    for label, prefault in (("lazily backed table (first touch of record pages)", False),
                            ("prefaulted table (as the Dataplane)", True)):
        t0 = time.perf_counter()
        ct3 = Conntrack(n + k2, prefault=prefault)
        built = time.perf_counter() - t0
        ct3.insert4(src, dst, sport, dport, proto, 1)
        sec, _, made = stage_rate(ct3, frames, 5, create=True)
        add(f"new flows/s, conntrack stage alone (ct_lookup_batch + ct_create), {label}", "kdp", made, sec,
            f"{made:,} flows created at {n:,} live; Conntrack({n + k2:,}) built in {built * 1e3:.0f} ms")
        del ct3

    _linux_peer(res, add, n, quick)
    obj = linux_slab_object_size()
    res["linux_slab_object_size"] = obj
    res["memory_bytes"] = ct.memory_bytes
    return res


def _pipeline_new_flows(add, k, repeats):
    """The headline: what a new flow costs through the whole pipeline (see the docstring)."""
    from kdp._fast.packet import Batch
    from kdp.benchmarks.pipeline import NODE, _targets, cluster_docs
    from kdp.control import Cluster, compile as compile_cluster
    from kdp.dataplane import Dataplane
    docs = cluster_docs(1_000, 10_000)
    tables = compile_cluster(Cluster.from_documents(docs, node=NODE))
    cips = _targets(docs)["cips"]
    rng = np.random.default_rng(SEED + 6)
    pods = (np.uint32(0x0A400001) + rng.integers(0, 250, k, dtype=np.uint32)).astype(np.uint32)
    tup = (pods, cips[rng.integers(0, cips.size, k)], np.arange(k, dtype=np.uint32) % 60000 + 1024,
           np.full(k, 80, np.uint16), np.full(k, 6, np.uint8))
    tup = (tup[0], tup[1], tup[2].astype(np.uint16), tup[3], tup[4])
    frames = tcp_frames(tup, np.arange(k), 0x02)
    batches = []
    for lo in range(0, k, BATCH):
        b = Batch(BATCH)
        for row in frames[lo:lo + BATCH]:
            b.append(row.tobytes(), ts_ns=1)
        batches.append(b)
    best, made = float("inf"), 0
    for _ in range(repeats):
        dp = Dataplane(tables)
        copies = []
        for b in batches:               # (process rewrites the frames: run on copies)
            c = Batch(BATCH)
            for i in range(len(b)):
                c.append(b.packet(i), ts_ns=1, in_port=None)
            copies.append(c)
        t0 = time.perf_counter()
        for c in copies:
            dp.process(c)
        best = min(best, time.perf_counter() - t0)
        made = dp.flow_counters()["inserts"]
    add("new flows/s, whole pipeline (parse, Service choice, NAT, route; SYNs to ClusterIPs)",
        "kdp", made, best, f"{made:,} flows created from {k:,} SYNs, 1,000 Services; fresh data plane")


def main(args) -> int:
    quick = bool(getattr(args, "quick", False))
    res = measure(QUICK_FLOWS if quick else DEFAULT_FLOWS, quick=quick)
    if getattr(args, "json", False):
        print(json.dumps(res, indent=2))
        return 0
    from kdp.commands.common import console
    from rich.table import Table
    table = Table(title=f"Conntrack: {res['flows']:,} live IPv4 flows, capacity {res['capacity']:,}, one core")
    table.add_column("measure")
    table.add_column("impl")
    table.add_column("count", justify="right")
    table.add_column("seconds", justify="right")
    table.add_column("M/s", justify="right")
    table.add_column("note")
    for r in res["results"]:
        table.add_row(r["measure"], r["impl"], f"{r['count']:,}", f"{r['seconds']:.3f}",
                      f"{r['rate'] / 1e6:.2f}", r["note"])
    table.add_row("bytes per flow (allocated / capacity)", "kdp", "", "", "",
                  f"{res['bytes_per_flow']:.0f} B (target <= {TARGETS['bytes_per_flow']}); "
                  f"RSS growth while filling: {res['rss_per_flow']:.0f} B/flow")
    obj = res["linux_slab_object_size"]
    table.add_row("bytes per flow", "linux nf_conntrack", "", "", "",
                  f"slab object {obj} B + 8 B per hash bucket (this kernel's /proc/slabinfo)"
                  if obj else "nf_conntrack slab not readable here")
    console().print(table)
    print(f"targets per core: >= {TARGETS['lookup'] / 1e6:.0f} M established lookups/s, "
          f">= {TARGETS['insert'] / 1e6:.0f} M new flows/s, <= {TARGETS['bytes_per_flow']} B/flow.")
    from kdp.benchmarks.peers import print_not_run
    print_not_run(res["peers_not_run"])
    return 0
