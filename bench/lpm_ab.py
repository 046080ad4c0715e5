"""A/B of IPv4 LPM batch lookups between two kdp trees, as bench/README.md's LPM
section measured the 4-byte root: one long-lived worker process per tree builds
the tables once, then the two take turns on the same queries (order swapped
every round), so both see the same minutes of a shared machine.

    python bench/lpm_ab.py --a /copy/of/main --b /work/wt/branch [--tables bgp,bgp32]
                           [--rounds 15] [--queries 10000000]

Tables: bgp (900,000 prefixes, 1,024 next hops), bgp32 (32 next hops), bgp4k
(4,096 random route ids), k8s (kdp/benchmarks/lpm.py).  Prints, per table and
query kind, each tree's median (best) M lookups/s by wall and CPU time, the
median of the per-round ratios b/a and the rounds b won; both trees' outputs
must checksum alike (else it stops).  --root4 off in a worker's argv runs it
with the 4-byte root turned off (Lpm4._use_root4), for a same-tree A/B."""
import argparse
import os
import statistics
import subprocess
import sys
import time


def worker(tables, nq, root4):
    import numpy as np
    from kdp._fast.lpm import Lpm4
    from kdp.benchmarks.lpm import bgp_table, k8s_table, queries4
    made = {}
    for name in tables:
        if name == "k8s":
            pre, lens, vals, _ = k8s_table()
        elif name == "bgp4k":
            pre, lens, vals, _ = bgp_table(900_000, values="random")
        else:
            pre, lens, vals, _ = bgp_table(900_000, hops=1024 if name == "bgp" else 32)
        t = Lpm4.build(pre, lens, vals)
        if not root4 and hasattr(t, "_use_root4"):
            t._use_root4(False)
        made[name] = (t, {k: queries4(pre, lens, nq, k) for k in ("uniform", "hit90")})
    out = np.empty(nq, np.uint32)
    print("ready", flush=True)
    for line in sys.stdin:
        name, kind = line.split()
        t, qs = made[name]
        t.lookup_batch(qs[kind], out)
        w0, c0 = time.perf_counter(), time.thread_time()
        t.lookup_batch(qs[kind], out)
        c1, w1 = time.thread_time(), time.perf_counter()
        print(w1 - w0, c1 - c0, int(out.astype(np.uint64).sum()), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="kdp tree A (PYTHONPATH)")
    ap.add_argument("--b", required=True, help="kdp tree B (PYTHONPATH)")
    ap.add_argument("--a-root4", default="on", choices=("on", "off"))
    ap.add_argument("--b-root4", default="on", choices=("on", "off"))
    ap.add_argument("--tables", default="bgp,bgp32")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--queries", type=int, default=10_000_000)
    ap.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        tables, nq, root4 = args.worker
        return worker(tables.split(","), int(nq), root4 == "on")
    procs = {}
    for k, root, r4 in (("a", args.a, args.a_root4), ("b", args.b, args.b_root4)):
        procs[k] = subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), "--a", "-", "--b", "-", "--worker",
             args.tables, str(args.queries), r4],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONPATH=root))
    for p in procs.values():
        if p.stdout.readline().strip() != "ready":
            sys.exit("a worker failed to start")
    load0 = open("/proc/loadavg").read().split()[:3]
    nq = args.queries
    for name in args.tables.split(","):
        for kind in ("uniform", "hit90"):
            rec = {"a": [], "b": []}
            ratios, sums = [], set()
            for r in range(args.rounds):
                got = {}
                for k in (("a", "b") if r % 2 == 0 else ("b", "a")):
                    p = procs[k]
                    p.stdin.write(f"{name} {kind}\n")
                    p.stdin.flush()
                    w, c, s = p.stdout.readline().split()
                    got[k] = (float(w), float(c))
                    rec[k].append(got[k])
                    sums.add(s)
                ratios.append(got["a"][0] / got["b"][0])
            if len(sums) != 1:
                sys.exit(f"{name} {kind}: the trees' answers differ")

            def rate(k, i):
                xs = [x[i] for x in rec[k]]
                return nq / statistics.median(xs) / 1e6, nq / min(xs) / 1e6
            print(f"{name:6s} {kind:8s} a {rate('a', 0)[0]:6.1f} ({rate('a', 0)[1]:6.1f})"
                  f"  b {rate('b', 0)[0]:6.1f} ({rate('b', 0)[1]:6.1f})  b/a {statistics.median(ratios):.3f}"
                  f"  b won {sum(x > 1 for x in ratios)}/{args.rounds}"
                  f"  | cpu a {rate('a', 1)[0]:6.1f} b {rate('b', 1)[0]:6.1f}", flush=True)
    for p in procs.values():
        p.stdin.close()
        p.wait()
    print("load", " ".join(load0), "->", " ".join(open("/proc/loadavg").read().split()[:3]))


if __name__ == "__main__":
    main()
