"""`kdp bench lpm`: routing-table lookups/s, kdp beside pytricia and py-radix.

Tables (deterministic, seeded):

* k8s   a Kubernetes node's view: cluster CIDR 10.244.0.0/16 split into 1,000
        /26 pod blocks (one route id per node), plus 50 other routes: default
        route, service CIDR 10.96.0.0/12, node subnet, node host routes /32,
        a few load-balancer /32s and /28 pools.
* bgp   the headline: ~900,000 IPv4 prefixes with a real table's length mix
        (mostly /24, then /22, /23, /21, /20, /19, /16 ...; a few shorter than
        /16, a few /25../32), 80% clustered under ~6,000 allocation blocks like
        real announcements; values are 1,024 next hops, as many as a large
        router's FIB holds (Zipf-skewed; 90% of a block's prefixes share its
        next hop).
* bgp-32nh (friendlier) the same prefixes with 32 next hops (fewer distinct
        values: the compressed levels are smaller). Extra row.
* bgp-4k the same prefixes with 4,096 route ids drawn uniformly (full run
        only; batch lookups only).
* v6    ~200,000 IPv6 prefixes (mostly /48, /32, /44, /40 ...) under
        ~40,000 /32 allocations inside the RIRs' 2001::/16, 2400::/12,
        2600::/12, 2800::/12, 2a00::/12, 2c00::/12; 4,096 route ids drawn
        uniformly.

Query sets: `uniform` (uniformly random addresses) and `hit90` (90% chosen
inside a random table prefix, 10% uniform). IPv6 headline queries are raw
16-byte network-order addresses, what a packet holds (`raw16`): their
conversion to the table's host-order halves is inside the timed region; the
pre-converted (hi, lo) pairs are an extra, labelled row (`hilo`, friendlier).

Measured: kdp batch lookups/s on one core (median of repeats), build time and
memory ("lookup": everything lookups use; "batch": what batch lookups read,
less where a big IPv4 table's batches use the 4-byte root instead of the
8-byte one), incremental insert+delete time, and single lookups from Python per
call: kdp.lookup(int) vs pytricia.get(int) vs radix.search_best(str) (radix
takes no int keys). The peers live in kdp/benchmarks/peers/lpm_tries.py; a missing
one is left out (its column shows "-") and why is printed under the table.
"""
import json
import statistics
import sys
import time

import numpy as np

SEED = 20240611

# share of each prefix length in a full IPv4 table (approximately the public
# BGP table of recent years; the rest of /8../15 and /25../31 are small)
V4_LEN_MIX = {24: 0.590, 22: 0.110, 23: 0.100, 21: 0.050, 20: 0.045, 19: 0.016,
              16: 0.013, 18: 0.011, 17: 0.007, 15: 0.0012, 14: 0.0010, 13: 0.0007,
              12: 0.0005, 11: 0.0002, 10: 0.0001, 9: 0.00005, 8: 0.00005,
              25: 0.0012, 26: 0.0010, 27: 0.0008, 28: 0.0008, 29: 0.0010, 30: 0.0010,
              31: 0.0002, 32: 0.0030}
V6_LEN_MIX = {48: 0.50, 32: 0.13, 44: 0.10, 40: 0.07, 36: 0.03, 29: 0.02, 46: 0.02,
              47: 0.02, 42: 0.02, 45: 0.015, 56: 0.015, 64: 0.01, 28: 0.01, 33: 0.01,
              34: 0.01, 35: 0.005, 38: 0.005, 30: 0.005, 31: 0.005, 128: 0.005}


def _pick_lengths(rng, mix, n):
    lens = np.array(list(mix), np.int64)
    p = np.array(list(mix.values()), float)
    return rng.choice(lens, size=n, p=p / p.sum())


def _mask32(p, lens):
    p = p.astype(np.uint64)
    m = (np.uint64(0xFFFFFFFF) << (np.uint64(32) - lens.astype(np.uint64))) & np.uint64(0xFFFFFFFF)
    return (p & m).astype(np.uint32)


def k8s_table():
    """(prefixes uint32, lengths, values, description)."""
    pre, ln, val = [], [], []

    def add(a, n, v):
        pre.append(a)
        ln.append(n)
        val.append(v)
    cluster = 0x0AF40000                      # 10.244.0.0/16
    for i in range(1000):                     # node i's pod block -> route id 100+i
        add(cluster + (i << 6), 26, 100 + i)
    add(0, 0, 1)                              # default route -> uplink
    add(0x0A600000, 12, 2)                    # 10.96.0.0/12 service CIDR
    add(0xC0A80000, 24, 3)                    # 192.168.0.0/24 node subnet
    for i in range(30):                       # node host routes
        add(0xC0A80000 + 10 + i, 32, 10 + i)
    for i in range(10):                       # load-balancer VIPs
        add(0xCB007100 + i, 32, 50 + i)       # 203.0.113.x/32
    for i in range(6):                        # LB pools /28
        add(0xC6336400 + (i << 4), 28, 70 + i)  # 198.51.100.x/28
    add(0x0A000000, 8, 4)                     # 10/8 corporate
    add(0xAC100000, 12, 5)                    # 172.16/12
    return (np.array(pre, np.uint32), np.array(ln, np.uint8), np.array(val, np.uint32),
            "k8s: 1,000 /26 pod blocks in 10.244.0.0/16 + 50 routes")


def bgp_table(n=900_000, seed=SEED, values="peers", hops=1024):
    """values="peers": route ids are `hops` next hops, Zipf-skewed, and 90% of
    the prefixes inside an allocation block share its next hop (a router's FIB:
    neighbours often alike).  values="random": 4,096 route ids drawn uniformly
    (no two neighbours alike; pessimistic)."""
    rng = np.random.default_rng(seed)
    # allocation blocks /12../16 in unicast space (1..223, not 10/8, 127/8)
    nb = max(50, n // 150)
    firsts = rng.integers(1, 224, nb * 2)
    firsts = firsts[(firsts != 10) & (firsts != 127)][:nb].astype(np.uint64)
    blen = rng.integers(12, 17, nb)
    bbase = _mask32((firsts << np.uint64(24)) | rng.integers(0, 1 << 24, nb).astype(np.uint64), blen)
    want = int(n * 1.08) + 100
    lens = _pick_lengths(rng, V4_LEN_MIX, want)
    inside = rng.random(want) < 0.8
    blk = rng.integers(0, nb, want)
    span = (np.uint64(1) << (np.uint64(32) - blen[blk].astype(np.uint64))) - np.uint64(1)
    r = rng.integers(0, 1 << 32, want, dtype=np.uint64)
    addr_in = bbase[blk].astype(np.uint64) | (r & span)
    uni_first = rng.integers(1, 224, want).astype(np.uint64)
    addr_un = (uni_first << np.uint64(24)) | (r & np.uint64(0xFFFFFF))
    addr = np.where(inside & (lens >= blen[blk]), addr_in, addr_un)
    pre = _mask32(addr, lens)
    key = (pre.astype(np.uint64) << np.uint64(8)) | lens.astype(np.uint64)
    _, first = np.unique(key, return_index=True)
    first = np.sort(first)[:n]
    pre, lens = pre[first], lens[first].astype(np.uint8)
    if values == "random":
        vals = rng.integers(1, 4097, pre.shape[0]).astype(np.uint32)
        return pre, lens, vals, f"bgp-4k: {pre.shape[0]:,} IPv4 prefixes, 4,096 random route ids"
    w = 1.0 / np.arange(1, hops + 1)
    block_peer = rng.choice(hops, size=nb, p=w / w.sum())
    own = rng.choice(hops, size=pre.shape[0], p=w / w.sum())
    same = inside[first].copy()
    same &= rng.random(pre.shape[0]) < 0.9
    vals = (np.where(same, block_peer[blk[first]], own) + 1).astype(np.uint32)
    name = "bgp" if hops >= 1000 else f"bgp-{hops}nh (friendlier)"
    return pre, lens, vals, f"{name}: {pre.shape[0]:,} IPv4 prefixes, {hops:,} next hops"



def v6_table(n=200_000, seed=SEED + 6):
    """(prefixes (n, 2) uint64 hi/lo, lengths, values, description)."""
    rng = np.random.default_rng(seed)
    rir = np.array([0x2001, 0x2400, 0x2600, 0x2800, 0x2A00, 0x2C00], np.uint64)
    rir_len = np.array([16, 12, 12, 12, 12, 12])
    na = max(100, n // 5)
    k = rng.integers(0, rir.shape[0], na)
    sh = np.uint64(48)
    free_bits = (np.uint64(32) - rir_len[k].astype(np.uint64))
    alloc = (rir[k] << sh) | ((rng.integers(0, 1 << 32, na, dtype=np.uint64)
                               & ((np.uint64(1) << free_bits) - np.uint64(1))) << np.uint64(32))
    want = int(n * 1.05) + 100
    lens = _pick_lengths(rng, V6_LEN_MIX, want)
    a = alloc[rng.integers(0, na, want)]
    r1 = rng.integers(0, 1 << 63, want, dtype=np.uint64) << np.uint64(1)
    r2 = rng.integers(0, 1 << 63, want, dtype=np.uint64) << np.uint64(1)
    hi = np.where(lens >= 32, a | (r1 & np.uint64(0xFFFFFFFF)), a | (r1 & np.uint64(0xFFFFFFFF)))
    kk = rng.integers(0, rir.shape[0], want)
    short_hi = (rir[kk] << sh) | (r1 & ((np.uint64(1) << (np.uint64(64) - rir_len[kk].astype(np.uint64))) - np.uint64(1)))
    hi = np.where(lens >= 32, hi, short_hi)
    lo = r2
    L = lens.astype(np.int64)
    mhi = np.where(L >= 64, np.uint64(0xFFFFFFFFFFFFFFFF),
                   ~((np.uint64(1) << np.clip(64 - L, 0, 63).astype(np.uint64)) - np.uint64(1)))
    mlo = np.where(L >= 128, np.uint64(0xFFFFFFFFFFFFFFFF),
                   np.where(L <= 64, np.uint64(0),
                            ~((np.uint64(1) << np.clip(128 - L, 0, 63).astype(np.uint64)) - np.uint64(1))))
    hi, lo = hi & mhi, lo & mlo
    rec = np.zeros(want, [("hi", "<u8"), ("lo", "<u8"), ("len", "u1")])
    rec["hi"], rec["lo"], rec["len"] = hi, lo, lens
    _, first = np.unique(rec, return_index=True)
    first = np.sort(first)[:n]
    pref = np.stack([hi[first], lo[first]], axis=1)
    vals = rng.integers(1, 4097, first.shape[0]).astype(np.uint32)
    return pref, lens[first].astype(np.uint8), vals, f"v6: {first.shape[0]:,} IPv6 prefixes"


def queries4(pre, lens, n, kind, seed=SEED + 1):
    rng = np.random.default_rng(seed)
    uni = rng.integers(0, 1 << 32, n, dtype=np.uint64)
    if kind == "uniform":
        return uni.astype(np.uint32)
    idx = rng.integers(0, pre.shape[0], n)
    host = (np.uint64(1) << (np.uint64(32) - lens[idx].astype(np.uint64))) - np.uint64(1)
    inside = pre[idx].astype(np.uint64) | (rng.integers(0, 1 << 32, n, dtype=np.uint64) & host)
    return np.where(rng.random(n) < 0.9, inside, uni).astype(np.uint32)


def queries6(pref, lens, n, kind, seed=SEED + 2):
    """(n, 2) uint64 host-order (hi, lo)."""
    rng = np.random.default_rng(seed)
    hi = rng.integers(0, 1 << 63, n, dtype=np.uint64) << np.uint64(1) | rng.integers(0, 2, n, dtype=np.uint64)
    lo = rng.integers(0, 1 << 63, n, dtype=np.uint64) << np.uint64(1)
    if kind != "uniform":
        idx = rng.integers(0, pref.shape[0], n)
        L = lens[idx].astype(np.int64)
        hmask = np.where(L >= 64, np.uint64(0),
                         (np.uint64(1) << np.clip(64 - L, 0, 63).astype(np.uint64)) - np.uint64(1))
        hmask = np.where(L == 0, np.uint64(0xFFFFFFFFFFFFFFFF), hmask)
        lmask = np.where(L <= 64, np.uint64(0xFFFFFFFFFFFFFFFF),
                         np.where(L >= 128, np.uint64(0),
                                  (np.uint64(1) << np.clip(128 - L, 0, 63).astype(np.uint64)) - np.uint64(1)))
        sel = rng.random(n) < 0.9
        hi = np.where(sel, pref[idx, 0] | (hi & hmask), hi)
        lo = np.where(sel, pref[idx, 1] | (lo & lmask), lo)
    return np.ascontiguousarray(np.stack([hi, lo], axis=1))


def raw16(hilo):
    """(n, 2) host-order (hi, lo) -> (n, 16) uint8 network-order addresses (as packets hold them)."""
    return np.ascontiguousarray(hilo.astype(">u8")).view(np.uint8).reshape(-1, 16)


def updates6(pref, lens, n=2000, seed=5):
    """n (address int, length) edits for the v6 table: /48, /56 and /128 in turn,
    each inside a randomly chosen table prefix (so in the crowded /16s and
    /32s where the table's rules are, not in empty space)."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, pref.shape[0], n)
    r = rng.integers(0, 1 << 63, (n, 2), dtype=np.uint64)
    out = []
    for i, k in enumerate(idx.tolist()):
        host = (1 << (128 - int(lens[k]))) - 1
        a = ((int(pref[k, 0]) << 64) | int(pref[k, 1])) | (((int(r[i, 0]) << 65) | int(r[i, 1])) & host)
        out.append((a, (48, 56, 128)[i % 3]))
    return out


def time_updates(t, edits, value=7):
    """Microseconds per insert+delete pair of each (prefix, length) in edits."""
    t0 = time.perf_counter()
    for a, ln in edits:
        t.insert(a, ln, value)
        t.delete(a, ln)
    return (time.perf_counter() - t0) / len(edits) * 1e6


def _rates(fn, count, repeats):
    """(median, best) calls/s over repeats."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return count / statistics.median(times), count / min(times)


def _per_call(fn, keys, repeats=3):
    """Median calls/s of fn over keys (a Python loop, the same for every peer)."""
    best = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for k in keys:
            fn(k)
        best.append(time.perf_counter() - t0)
    return len(keys) / statistics.median(best)


def run(quick=False):
    from kdp._fast.lpm import Lpm4, Lpm6
    from kdp.benchmarks.peers import attempt, lpm_tries as tries
    nq = 1_000_000 if quick else 10_000_000
    nsingle = 50_000 if quick else 300_000
    reps = 3 if quick else 7
    res = {"batch": [], "build": [], "single": [], "update": [], "queries": nq,
           "peers_not_run": []}
    nb = 100_000 if quick else 900_000
    tables4 = [bgp_table(nb), k8s_table(), bgp_table(nb, hops=32)]
    if not quick:
        tables4.append(bgp_table(900_000, values="random"))
    for pre, lens, vals, desc in tables4:
        name = desc.split(":")[0]
        t0 = time.perf_counter()
        t = Lpm4.build(pre, lens, vals)
        build_s = time.perf_counter() - t0
        mem = t.memory()
        res["build"].append({"table": name, "desc": desc, "prefixes": len(t), "build_s": build_s,
                             "lookup_bytes": mem["lookup"], "batch_bytes": mem["batch"],
                             "rules_bytes": mem["rules"]})
        for kind in ("uniform", "hit90"):
            q = queries4(pre, lens, nq, kind)
            out = np.empty(nq, np.uint32)
            t.lookup_batch(q, out)
            rate, best = _rates(lambda: t.lookup_batch(q, out), nq, reps)
            res["batch"].append({"table": name, "queries": kind, "lookups_per_s": rate,
                                 "best_lookups_per_s": best})
        # incremental updates: insert then delete a /24 and a /28 at random places
        rng = np.random.default_rng(5)
        ups = rng.integers(0, 1 << 32, 2000, dtype=np.uint64)
        t0 = time.perf_counter()
        for i, a in enumerate(ups.tolist()):
            ln = 24 if i & 1 else 28
            t.insert(a, ln, 7)
            t.delete(a, ln)
        res["update"].append({"table": name, "us_per_insert_delete": (time.perf_counter() - t0) / len(ups) * 1e6})
        if name in ("bgp-4k", "bgp-32nh (friendlier)"):
            continue
        # single lookups from Python vs peers
        single_q = queries4(pre, lens, nsingle, "hit90", seed=9).tolist()
        row = {"table": name, "kdp": _per_call(t.lookup, single_q)}
        for peer, build in (("pytricia", tries.pytricia_table), ("py-radix", tries.radix_table)):
            def timed(build=build):
                lookup, key = build(pre, lens, vals)
                return _per_call(lookup, [key(a) for a in single_q])
            rate = attempt(peer, timed, res["peers_not_run"])
            if rate is not None:
                row[peer] = rate
        res["single"].append(row)
        del t
    pref6, lens6, vals6, desc6 = v6_table(50_000 if quick else 200_000)
    t0 = time.perf_counter()
    t6 = Lpm6.build(pref6, lens6, vals6)
    build_s = time.perf_counter() - t0
    mem = t6.memory()
    res["build"].append({"table": "v6", "desc": desc6, "prefixes": len(t6), "build_s": build_s,
                         "lookup_bytes": mem["lookup"], "batch_bytes": mem["batch"],
                             "rules_bytes": mem["rules"]})
    for kind in ("hit90", "uniform"):
        q = queries6(pref6, lens6, nq, kind)
        raw = raw16(q)
        out = np.empty(nq, np.uint32)
        for keys, label in ((raw, f"{kind} raw16"), (q, f"{kind} hilo (friendlier)")):
            t6.lookup_batch(keys, out)
            rate, best = _rates(lambda: t6.lookup_batch(keys, out), nq, reps)
            res["batch"].append({"table": "v6", "queries": label, "lookups_per_s": rate,
                                 "best_lookups_per_s": best})
    res["update"].append({"table": "v6", "us_per_insert_delete": time_updates(t6, updates6(pref6, lens6))})
    q6 = queries6(pref6, lens6, nsingle, "hit90", seed=9)
    keys6 = [(int(h) << 64) | int(lo) for h, lo in q6]
    res["single"].append({"table": "v6", "kdp": _per_call(t6.lookup, keys6)})
    return res


def main(args):
    res = run(quick=getattr(args, "quick", False))
    if getattr(args, "json", False):
        print(json.dumps(res, indent=2))
        return 0
    from kdp.commands.common import console
    from rich.table import Table
    con = console()
    tb = Table(title=f"LPM batch lookups, one core ({res['queries']:,} queries, median)")
    for c in ("table", "queries", "M lookups/s", "best"):
        tb.add_column(c, justify="left" if c in ("table", "queries") else "right")
    for r in res["batch"]:
        tb.add_row(r["table"], r["queries"], f"{r['lookups_per_s'] / 1e6:,.1f}",
                   f"{r['best_lookups_per_s'] / 1e6:,.1f}")
    con.print(tb)
    tb = Table(title="LPM build (bulk, from numpy arrays) and updates")
    for c in ("table", "prefixes", "build s", "lookup MiB", "batch MiB", "rules MiB",
              "insert+delete µs"):
        tb.add_column(c, justify="left" if c == "table" else "right")
    upd = {u["table"]: u["us_per_insert_delete"] for u in res["update"]}
    for r in res["build"]:
        u = upd.get(r["table"])
        tb.add_row(r["table"], f"{r['prefixes']:,}", f"{r['build_s']:.3f}",
                   f"{r['lookup_bytes'] / 2**20:.2f}", f"{r['batch_bytes'] / 2**20:.2f}",
                   f"{r['rules_bytes'] / 2**20:.2f}",
                   "-" if u is None else f"{u:.1f}")
    con.print(tb)
    tb = Table(title="Single lookups from Python (M calls/s; same loop for each)")
    peers = ["kdp", "pytricia", "py-radix"]
    tb.add_column("table")
    for p in peers:
        tb.add_column(p, justify="right")
    tb.add_column("kdp / pytricia", justify="right")
    for r in res["single"]:
        cells = [f"{r[p] / 1e6:.2f}" if r.get(p) else "-" for p in peers]
        ratio = f"{r['kdp'] / r['pytricia']:.2f}x" if r.get("pytricia") else "-"
        tb.add_row(r["table"], *cells, ratio)
    con.print(tb)
    from kdp.benchmarks.peers import print_not_run
    print_not_run(res["peers_not_run"])
    return 0


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--json", action="store_true")
    sys.exit(main(ap.parse_args()))
