"""Which cache lines IPv4 batch lookups read, by chunk format: a model that
walks a built table's memory through the 4-byte root by the named layout
(kdp._fast.lpm.LAYOUT4, as tests/test_lpm_layout.py's reader does), for the
bench's bgp table (900,000 prefixes, 1,024 next hops) and its queries, and
counts per lookup the chunk lines it touches and those the batch prefetch
(the first two lines of the chunk's root node) did not fetch.  bench/README.md
(LPM) quotes its output; this VM has no hardware counters to count misses.

    PYTHONPATH=TREE python bench/lpm4_lines.py [--kind hit90|uniform] [--queries 200000]
"""
import argparse
import collections
import ctypes

from kdp._fast.lpm import LAYOUT4 as L4, Lpm4
from kdp.benchmarks.lpm import bgp_table, queries4


def u8(a):
    return ctypes.c_uint8.from_address(a).value


def u16(a):
    return ctypes.c_uint16.from_address(a).value


def u32(a):
    return ctypes.c_uint32.from_address(a).value


def u64(a):
    return ctypes.c_uint64.from_address(a).value


def node_leaf(nd, p, leaf16, read):
    # slot p's leaf of a node; every address read is appended to `read`
    w = p >> 6
    read.append(nd + L4["starts"] + 8 * w)
    k = bin(u64(nd + L4["starts"] + 8 * w) & ((2 << (p & 63)) - 1)).count("1")
    if leaf16:
        read.append(nd + L4["n16_runs"] + 2 * w)
        a = nd + L4["n16_leaf"] + 2 * (u16(nd + L4["n16_runs"] + 2 * w) + k - 1)
        read.append(a)
        return u16(a)
    read.append(nd + L4["n8_runs"] + w)
    a = nd + L4["n8_leaf"] + u8(nd + L4["n8_runs"] + w) + k - 1
    read.append(a)
    return u8(a)


def walk(t4, base, a):
    """(format, the chunk addresses read, the node's address) of address a."""
    h = base + u32(t4 + 4 * (a >> 16))
    c = h & ~L4["flags"]
    read = []
    if h & L4["flag_wide"]:
        read.append(c + 2 * (a & 0xFFFF))
        return "wide", read, c
    leaf16 = bool(h & L4["flag_leaf16"])
    fmt = "16-bit root" if leaf16 else "8-bit palette root"
    leaf = node_leaf(c, (a >> 8) & 255, leaf16, read)
    child = L4["child16"] if leaf16 else L4["child8"]
    if leaf >= child:
        kid = c + L4["root_kids"] - 4 * (leaf - child)
        read.append(kid)
        node_leaf(c + u32(kid), a & 255, True, read)
        return fmt + " + child", read, c
    if not leaf16:
        read.append(c + L4["n8_leaf"] + 2 * leaf)    # the palette entry
    return fmt, read, c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", default="hit90", choices=("hit90", "uniform"))
    ap.add_argument("--queries", type=int, default=200_000)
    args = ap.parse_args()
    if args.queries < 1:
        ap.error("--queries must be at least 1")
    pre, lens, vals, _ = bgp_table(900_000, hops=1024)
    t = Lpm4.build(pre, lens, vals)
    t4, base = t._root4_addresses()
    if not base:
        raise SystemExit("lpm4_lines: the table has no 4-byte root")
    q = queries4(pre, lens, args.queries, args.kind)
    n = len(q)
    by_fmt = collections.Counter()
    lines = collections.defaultdict(collections.Counter)   # fmt -> (lines, not prefetched) -> count
    where = collections.Counter()          # unprefetched lines by their offset from the node's first
    for a in q.tolist():
        fmt, read, c = walk(t4, base, a)
        touched = {x >> 6 for x in read}
        missed = touched - {c >> 6, (c + 64) >> 6}
        by_fmt[fmt] += 1
        lines[fmt][len(touched), len(missed)] += 1
        for x in missed:
            where[("child line " if "child" in fmt else "line ") + f"{x - (c >> 6):+d}"] += 1
    print(f"bgp 900k, 1,024 next hops, {n:,} {args.kind} queries; memory {t.memory()}")
    for fmt, k in by_fmt.most_common():
        split = ", ".join(f"{a} lines ({b} not prefetched) {m / n:.1%}"
                          for (a, b), m in sorted(lines[fmt].items()))
        print(f"  {fmt}: {k / n:.1%} of lookups: {split}")
    tot = sum(a * m for f in lines for (a, b), m in lines[f].items())
    miss = sum(b * m for f in lines for (a, b), m in lines[f].items())
    print(f"  chunk lines a lookup {tot / n:.2f}, of them not prefetched {miss / n:.3f}")
    print("  unprefetched lines, from the node's first line: "
          + ", ".join(f"{k} {m / n:.2%}" for k, m in where.most_common()))


if __name__ == "__main__":
    main()
