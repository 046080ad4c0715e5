"""Peers of `kdp bench lpm`: single lookups in other longest-prefix-match tries.

    pytricia   pytricia.PyTricia(32), keys are int addresses (a Patricia trie in C)
    py-radix   radix.Radix, keys are dotted strings (it takes no ints)

Each builder loads the IPv4 table (prefixes uint32, lengths, values) and returns
(lookup, key), where lookup(key(address)) is one best-match lookup; the suite times
lookup over pre-converted keys with the same Python loop it times kdp with.
PeerUnavailable when the package is missing.
"""
from kdp.benchmarks.peers import missing_package


def dotted(a: int) -> str:
    return f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.{a & 255}"


def _same(a):
    return a


def pytricia_table(pre, lens, vals):
    try:
        import pytricia
    except ImportError:
        raise missing_package("pytricia") from None
    pt = pytricia.PyTricia(32)
    for p, ln, v in zip(pre.tolist(), lens.tolist(), vals.tolist()):
        pt[f"{dotted(p)}/{ln}"] = v
    return pt.get, _same


def radix_table(pre, lens, vals):
    try:
        import radix
    except ImportError:
        raise missing_package("py-radix") from None
    rt = radix.Radix()
    for p, ln in zip(pre.tolist(), lens.tolist()):
        rt.add(dotted(p), ln)
    return rt.search_best, dotted
