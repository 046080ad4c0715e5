"""kdp._fast.lpm against the naive reference (kdp.reference.lpm)."""
import contextlib
import ctypes
import ipaddress
import random

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kdp._fast.lpm import Lpm4, Lpm6, MISS
from kdp.errors import KdpError
from kdp.reference.lpm import RefLpm

V4 = 32
V6 = 128


# ---- strategies ---------------------------------------------------------------

def _lengths(bits):
    edges = [0, 1, 7, 8, 15, 16, 17, 23, 24, 25, 31, 32] if bits == 32 else \
        [0, 1, 15, 16, 17, 24, 32, 40, 44, 47, 48, 56, 63, 64, 65, 96, 120, 127, 128]
    return st.one_of(st.sampled_from(edges), st.integers(0, bits))


def _prefix(bits):
    # addresses built from a few shared "bases" so prefixes overlap and nest
    bases = [0, (1 << bits) - 1, 0x0A000000 << (bits - 32), 0x0A010200 << (bits - 32),
             0xC0A80000 << (bits - 32), 0x20010DB8 << (bits - 32)]
    return st.tuples(st.sampled_from(bases), st.integers(0, (1 << bits) - 1),
                     st.integers(0, bits)).map(lambda t: t[0] ^ (t[1] >> t[2]))


def _rules(bits, max_size=40):
    return st.lists(st.tuples(_prefix(bits), _lengths(bits), st.integers(0, 50)),
                    max_size=max_size)


def _probes(bits, rules, rng, extra=64):
    out = set()
    top = (1 << bits) - 1
    for p, ln, _ in rules:
        m = top ^ ((1 << (bits - ln)) - 1)
        first = p & m
        last = first | (top ^ m)
        for a in (first, last, first - 1, last + 1, first | rng.getrandbits(bits - ln) if ln < bits else first):
            if 0 <= a <= top:
                out.add(a)
    for _ in range(extra):
        out.add(rng.getrandbits(bits))
    out.update((0, top))
    return sorted(out)


def _table(bits):
    return Lpm4() if bits == 32 else Lpm6()


def _batch(t, bits, addrs):
    if bits == 32:
        return t.lookup_batch(np.array(addrs, np.uint32))
    arr = np.array([[a >> 64, a & 0xFFFFFFFFFFFFFFFF] for a in addrs], np.uint64).reshape(-1, 2)
    r1 = t.lookup_batch(arr)
    b = np.frombuffer(b"".join(a.to_bytes(16, "big") for a in addrs), np.uint8).reshape(-1, 16)
    r2 = t.lookup_batch(b)
    assert np.array_equal(r1, r2)
    rec = np.zeros((len(addrs), 40), np.uint8)      # rows 40 bytes apart, read in place
    rec[:, 8:24] = b
    assert np.array_equal(t.lookup_batch(rec[:, 8:24]), r1)
    for k in range(1, 8):            # batches under 8 take the one-at-a-time loop
        assert np.array_equal(t.lookup_batch(arr[:k]), r1[:k])
        assert np.array_equal(t.lookup_batch(b[k:2 * k]), r1[k:2 * k])
    return r1


def _check(t, ref, bits, addrs):
    want = [ref.lookup(a) for a in addrs]
    single = [t.lookup(a) for a in addrs]
    assert single == want
    assert _batch(t, bits, addrs).tolist() == want


# ---- differential tests ------------------------------------------------------------

@pytest.mark.parametrize("bits", [V4, V6])
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_lookups_match_reference_after_inserts(bits, data):
    rules = data.draw(_rules(bits))
    t, ref = _table(bits), RefLpm(bits)
    for p, ln, v in rules:
        assert t.insert(p, ln, v) == ref.insert(p, ln, v)
    _check(t, ref, bits, _probes(bits, rules, random.Random(len(rules))))
    for (p, ln), v in ref.rules.items():
        assert t.get(p, ln) == v
    assert len(t) == len(ref.rules)


@pytest.mark.parametrize("bits", [V4, V6])
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_lookups_stay_correct_through_insert_delete_replace_sequences(bits, data):
    pool = data.draw(_rules(bits, max_size=25))
    ops = data.draw(st.lists(st.tuples(st.sampled_from("idr"), st.integers(0, 1000),
                                       st.integers(0, 60)), max_size=60))
    t, ref = _table(bits), RefLpm(bits)
    probes = _probes(bits, pool, random.Random(7), extra=16)
    for op, k, v in ops:
        if not pool:
            break
        p, ln, _ = pool[k % len(pool)]
        if op == "i":
            assert t.insert(p, ln, v) == ref.insert(p, ln, v)
        elif op == "d":
            assert t.delete(p, ln) == ref.delete(p, ln)
        else:
            if ref.get(p, ln) is None:
                with pytest.raises(KeyError):
                    t.replace(p, ln, v)
            else:
                assert t.replace(p, ln, v) == ref.insert(p, ln, v)
        assert t.get(p, ln) == ref.get(p, ln)
        _check(t, ref, bits, probes)
    t.rebuild()
    _check(t, ref, bits, probes)


@pytest.mark.parametrize("bits", [V4, V6])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_bulk_build_matches_reference_and_incremental(bits, data):
    rules = data.draw(_rules(bits, max_size=80))
    ref = RefLpm(bits)
    for p, ln, v in rules:
        ref.insert(p, ln, v)          # later duplicates win, as in build()
    lens = np.array([r[1] for r in rules], np.uint8)
    vals = np.array([r[2] for r in rules], np.uint32)
    if bits == 32:
        pref = np.array([r[0] for r in rules], np.uint32)
    else:
        pref = np.array([[r[0] >> 64, r[0] & 0xFFFFFFFFFFFFFFFF] for r in rules],
                        np.uint64).reshape(-1, 2)
    t = (Lpm4 if bits == 32 else Lpm6).build(pref, lens, vals)
    assert len(t) == len(ref.rules)
    _check(t, ref, bits, _probes(bits, rules, random.Random(3)))
    # the rule list comes back out exactly
    p2, l2, v2 = t.rules()
    if bits == 128:
        p2 = [int(h) << 64 | int(lo) for h, lo in p2]
    got = {(int(p), int(ln)): int(v) for p, ln, v in zip(p2, l2, v2)}
    assert got == ref.rules
    # then incremental edits on a bulk-built table
    for p, ln, v in rules[: len(rules) // 2]:
        assert t.delete(p, ln) == ref.delete(p, ln)
    _check(t, ref, bits, _probes(bits, rules, random.Random(4)))


# ---- behaviours ---------------------------------------------------------------------

def test_deleting_a_more_specific_prefix_restores_the_covering_one():
    t = Lpm4()
    t.insert("10.0.0.0/8", 1)
    t.insert("10.1.0.0/16", 2)
    t.insert("10.1.2.0/24", 3)
    t.insert("10.1.2.64/26", 4)
    assert t.lookup("10.1.2.70") == 4
    t.delete("10.1.2.64/26")
    assert t.lookup("10.1.2.70") == 3
    t.delete("10.1.2.0/24")
    assert t.lookup("10.1.2.70") == 2
    t.delete("10.1.0.0/16")
    assert t.lookup("10.1.2.70") == 1
    t.delete("10.0.0.0/8")
    assert t.lookup("10.1.2.70") == MISS


def test_ipv6_deleting_a_more_specific_prefix_restores_the_covering_one():
    t = Lpm6()
    t.insert("::/0", 9)
    t.insert("2001:db8::/32", 1)
    t.insert("2001:db8:1::/48", 2)
    t.insert("2001:db8:1::1/128", 3)
    assert t.lookup("2001:db8:1::1") == 3
    t.delete("2001:db8:1::1/128")
    assert t.lookup("2001:db8:1::1") == 2
    t.delete("2001:db8:1::/48")
    assert t.lookup("2001:db8:1::1") == 1
    t.delete("2001:db8::/32")
    assert t.lookup(ipaddress.IPv6Address("2001:db8:1::1")) == 9


def test_edges_default_route_and_host_routes():
    t = Lpm4()
    assert t.lookup(0) == MISS and t.lookup(0xFFFFFFFF) == MISS
    t.insert(0, 0, 5)
    t.insert(0xFFFFFFFF, 32, 6)
    t.insert(0, 32, 7)
    assert t.lookup(0) == 7 and t.lookup(1) == 5 and t.lookup(0xFFFFFFFF) == 6
    assert t.lookup(0xFFFFFFFE) == 5
    s = Lpm6()
    s.insert(0, 0, 5)
    s.insert((1 << 128) - 1, 128, 6)
    assert s.lookup((1 << 128) - 1) == 6 and s.lookup((1 << 128) - 2) == 5


def test_input_forms_are_equivalent():
    t = Lpm4()
    t.insert("192.168.0.0/16", 1)
    t.insert(ipaddress.ip_network("192.168.1.0/24"), 2)
    t.insert(ipaddress.ip_address("192.168.2.0"), 24, 3)
    t.insert(0xC0A80300, 24, 4)
    assert [t.lookup(a) for a in ("192.168.0.1", "192.168.1.1", "192.168.2.1", "192.168.3.1")] \
        == [1, 2, 3, 4]
    assert t.get("192.168.1.0/24") == 2 and t.get("192.168.1.0", 24) == 2
    assert t.get("192.168.1.0/25") is None
    assert "192.168.0.0/16" in t


def test_host_bits_are_masked():
    t = Lpm4()
    t.insert("10.1.2.3", 8, 1)
    assert t.get("10.0.0.0/8") == 1 and t.lookup("10.200.0.1") == 1


def test_bad_input_raises_clear_errors():
    t = Lpm4()
    with pytest.raises(KdpError):
        t.insert("10.0.0.0", 33, 1)
    with pytest.raises(KdpError):
        t.insert("10.0.0.0/8", MISS)
    with pytest.raises(KdpError):
        t.insert("2001:db8::/32", 1)
    with pytest.raises(KdpError):
        t.lookup_batch(np.array([-1, 5]))
    with pytest.raises(KdpError):
        Lpm6().lookup_batch(np.zeros((3, 15), np.uint8))
    with pytest.raises(KdpError):
        Lpm4.build(np.array([1], np.uint32), np.array([40]), np.array([1]))
    assert t.lookup_batch(np.array([], np.uint32)).shape == (0,)


def test_too_many_distinct_values_is_refused():
    n = 0xFEFF + 1
    with pytest.raises(KdpError):
        Lpm4.build(np.arange(n, dtype=np.uint32) << 8, np.full(n, 24), np.arange(n))


def test_value_churn_beyond_next_hop_space_compacts_itself():
    t = Lpm4()
    ref = RefLpm(32)
    t.insert("10.0.0.0/8", 1)
    ref.insert(0x0A000000, 8, 1)
    for i in range(0xFF00 + 50):
        t.insert("10.1.0.0/16", i + 2)
    ref.insert(0x0A010000, 16, 0xFF00 + 51)
    for a in (0x0A010203, 0x0A020000, 0):
        assert t.lookup(a) == ref.lookup(a)


def test_insert_many_merges_with_existing_rules():
    rng = np.random.default_rng(1)
    t, ref = Lpm4(), RefLpm(32)
    t.insert("10.0.0.0/8", 1)
    ref.insert(0x0A000000, 8, 1)
    p = rng.integers(0, 2**32, 300, dtype=np.uint64).astype(np.uint32)
    ln = rng.integers(0, 33, 300)
    v = rng.integers(0, 100, 300)
    t.insert_many(p, ln, v)
    for a, b, c in zip(p.tolist(), ln.tolist(), v.tolist()):
        ref.insert(a, b, c)
    q = np.concatenate([p, rng.integers(0, 2**32, 500, dtype=np.uint64).astype(np.uint32)])
    assert t.lookup_batch(q).tolist() == [ref.lookup(int(a)) for a in q]


def test_memory_report_counts_chunks_and_frees_them():
    t = Lpm4()
    base = t.memory()["chunks"]
    t.insert("10.1.2.0/24", 1)
    assert t.memory()["chunks"] > base
    t.delete("10.1.2.0/24")
    assert t.memory()["chunks"] == base
    assert t.reclaim() == 0


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_dense_slash16_with_many_long_prefixes_matches_reference(data):
    # a /16 with many prefixes longer than /24 is compiled as one wide node;
    # edits move it between the wide and the two-level form
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = random.Random(seed)
    t, ref = Lpm4(), RefLpm(32)
    rules = []
    for _ in range(rng.randint(20, 60)):
        ln = rng.choice([16, 17, 20, 24, 25, 26, 28, 30, 31, 32])
        p = 0x0AF40000 | rng.getrandbits(16)
        rules.append((p, ln, rng.randint(0, 9)))
    rules.append((0x0A000000, 8, 77))
    for p, ln, v in rules:
        t.insert(p, ln, v)
        ref.insert(p, ln, v)
    probes = _probes(32, rules, rng, extra=8) + [0x0AF40000 | rng.getrandbits(16) for _ in range(200)]
    _check(t, ref, 32, probes)
    t2 = Lpm4.build(*t.rules())
    _check(t2, ref, 32, probes)
    for p, ln, _ in rules[::2]:
        t.delete(p, ln)
        ref.delete(p, ln)
    _check(t, ref, 32, probes)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_ipv4_8_and_16_bit_leaf_chunks_match_reference(data):
    # Chunk roots store 8-bit leaves (next-hop indices, or indices into the
    # chunk's palette in a FIB of 240 or more next hops) or 16-bit ones (a
    # bigger table of mostly distinct values; a /16 with 240 or more distinct
    # next hops, e.g. the 0x0B00 /16 of "many", too many runs with them, or
    # more than 16 child nodes).  "grow" starts with few values and crosses the limit by
    # inserts, so chunks of both widths serve lookups side by side.
    mode = data.draw(st.sampled_from(["few", "many", "grow"]))
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1)))
    values = 30 if mode == "few" else 2_000
    rules = []
    for base in (0x0A010000, 0x0A020000, 0xC0A80000):
        rules.append((base, 16, rng.randrange(values)))
        for s in rng.sample(range(256), rng.randint(1, 120)):      # /24 runs
            rules.append((base | s << 8, rng.choice([17, 20, 22, 24]), rng.randrange(values)))
        for s in rng.sample(range(256), rng.choice([3, 16, 17, 23])):  # child slots, not wide
            rules.append((base | s << 8 | rng.getrandbits(8), rng.randint(25, 32),
                          rng.randrange(values)))
    if mode != "few":                  # enough distinct values for 16-bit leaves
        rules += [(0x0B000000 | i << 8, 24, 10_000 + i) for i in range(300)]
    rules.append((0x0A000000, 8, 7))
    ref = RefLpm(32)
    for p, ln, v in rules:
        ref.insert(p, ln, v)
    probes = _probes(32, rules, rng, extra=16)
    if mode == "grow":
        t = Lpm4.build(*_arrays([r for r in rules if r[2] < 200 and r[0] >> 24 != 0x0B]))
        for p, ln, v in rules:
            t.insert(p, ln, v)
    else:
        t = Lpm4.build(*_arrays(rules))
    _check(t, ref, 32, probes)
    for p, ln, _ in rules[::3]:
        t.delete(p, ln)
        ref.delete(p, ln)
    _check(t, ref, 32, probes)


def _arrays(rules):
    return (np.array([r[0] for r in rules], np.uint32), np.array([r[1] for r in rules]),
            np.array([r[2] for r in rules]))


def _ref_from(rules_bits, pre, lens, vals):
    ref = RefLpm(rules_bits)
    for p, ln, v in zip(pre, lens, vals):
        ref.insert(p, int(ln), int(v))
    return ref


@pytest.mark.parametrize("hops", [1024, 32])
def test_bgp_sized_ipv4_table_batch_agrees_with_single_and_reference(hops):
    from kdp.benchmarks.lpm import bgp_table, queries4
    pre, lens, vals, _ = bgp_table(60_000, seed=3, hops=hops)
    assert len(set(vals.tolist())) > hops * 0.9          # the bench's next hops are all used
    t = Lpm4.build(pre, lens, vals)
    assert len(t) == pre.shape[0]
    q = np.concatenate([queries4(pre, lens, 20_000, "hit90", seed=4),
                        queries4(pre, lens, 5_000, "uniform", seed=5)])
    got = t.lookup_batch(q)
    assert got.tolist() == [t.lookup(int(a)) for a in q]
    ref = _ref_from(32, pre.tolist(), lens.tolist(), vals.tolist())
    sample = q[:: len(q) // 25]
    assert [t.lookup(int(a)) for a in sample] == [ref.lookup(int(a)) for a in sample]


def test_ipv6_table_bigger_than_cache_batch_agrees_with_single_and_reference():
    # bigger than the L2: batches (in stages) agree with single lookups
    from kdp.benchmarks.lpm import v6_table, queries6
    pre, lens, vals, _ = v6_table(100_000, seed=8)
    t = Lpm6.build(pre, lens, vals)
    assert t.memory()["chunks"] > 2 << 20
    q = np.concatenate([queries6(pre, lens, 20_000, "hit90", seed=4),
                        queries6(pre, lens, 3_000, "uniform", seed=5)])
    got = t.lookup_batch(q)
    ints = [(int(h) << 64) | int(lo) for h, lo in q]
    assert got.tolist() == [t.lookup(a) for a in ints]
    b = np.frombuffer(b"".join(a.to_bytes(16, "big") for a in ints), np.uint8).reshape(-1, 16)
    assert np.array_equal(t.lookup_batch(b), got)
    from kdp.benchmarks.lpm import raw16
    assert np.array_equal(raw16(q), b)          # the bench's raw keys are the packets' bytes
    ref = _ref_from(128, [(int(h) << 64) | int(lo) for h, lo in pre], lens.tolist(), vals.tolist())
    sample = ints[:: len(ints) // 25]
    assert [t.lookup(a) for a in sample] == [ref.lookup(a) for a in sample]


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_ipv6_crowded_slash16_slash32_and_slash64_match_reference(data):
    # one /16 with many /17../32 rules (its bits 16..31 become a run bitmap),
    # one /32 with many /33../64 rules (one line of keys, two levels, or a
    # searched array, by count), one /64 with rules up to /128, plus short
    # prefixes; built incrementally and in bulk, then half deleted
    seed = data.draw(st.integers(0, 2**32 - 1))
    n32 = data.draw(st.sampled_from([3, 12, 40, 200]))
    rng = random.Random(seed)
    t, ref = Lpm6(), RefLpm(128)
    base16 = 0x2001 << 112
    base32 = 0x20010DB8 << 96
    base64 = base32 | (0x12345678 << 64)
    rules = [(0, 0, 1), (0x2000 << 112, 8, 2), (base16, 16, 3)]
    for _ in range(rng.randint(10, 60)):
        rules.append((base16 | (rng.getrandbits(16) << 96), rng.randint(17, 32), rng.randint(0, 9)))
    for _ in range(n32):
        rules.append((base32 | (rng.getrandbits(32) << 64), rng.randint(33, 64), rng.randint(0, 9)))
    for _ in range(rng.randint(1, 30)):
        ln = rng.choice([65, 80, 96, 120, 127, 128, 128])
        rules.append((base64 | rng.getrandbits(64), ln, rng.randint(0, 9)))
    rules.append(((1 << 128) - 1, 128, 4))
    for p, ln, v in rules:
        t.insert(p, ln, v)
        ref.insert(p, ln, v)
    probes = _probes(128, rules, rng, extra=8)
    probes += [base32 | (rng.getrandbits(32) << 64) | rng.getrandbits(64) for _ in range(100)]
    probes += [base64 | rng.getrandbits(64) for _ in range(50)]
    _check(t, ref, 128, probes)
    t2 = Lpm6.build(*t.rules())
    _check(t2, ref, 128, probes)
    for p, ln, _ in rules[::2]:
        t.delete(p, ln)
        ref.delete(p, ln)
    _check(t, ref, 128, probes)


def _v6_allocations(rng, base16, n32):
    # n32 distinct /32s under the /16 base16
    keys = rng.sample(range(1 << 16), n32)
    return [base16 | (k << 96) for k in keys]


def _v6_long_rule(rng, a, lens=(33, 40, 44, 47, 48, 48, 48, 49, 56, 64, 65, 96, 127, 128)):
    ln = rng.choice(lens)
    return (a | (rng.getrandbits(96) & ~((1 << (128 - ln)) - 1)), ln, rng.randint(0, 9))


@contextlib.contextmanager
def _scribbled_free():
    # glibc fills freed (and fresh) heap memory with a byte pattern, so a
    # block freed while still in use gives wrong answers instead of old ones
    libc = ctypes.CDLL(None)
    libc.mallopt(-6, 0xA5)           # M_PERTURB
    try:
        yield
    finally:
        libc.mallopt(-6, 0)


@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_ipv6_update_sequences_in_a_bulk_built_slash16_match_reference(data):
    # single inserts/deletes/replaces of /33../128 rules (only their /32's C node
    # is rebuilt, or the B level re-cut around that /32 when it gains its first
    # or loses its last such rule) and of /16../32 rules (their window of the B
    # level re-swept, the C nodes in it rebuilt; more than max(64, rules/16)
    # of those: the whole /16 rebuilt), in a /16 whose B level is one line, near the
    # line/bitmap limit, a big bitmap, or one with more /32s than a window may
    # rebuild; replaced blocks are freed as soon as possible and freed memory
    # is scribbled; checked against the reference along the way and rebuilt
    with _scribbled_free():
        _update_sequence(data)


def _update_sequence(data):
    seed = data.draw(st.integers(0, 2**32 - 1))
    n32 = data.draw(st.sampled_from([3, 12, 17, 20, 60, 150]))
    rng = random.Random(seed)
    base16 = 0x2A00 << 112
    allocs = _v6_allocations(rng, base16, n32 + 8)
    used, fresh = allocs[:n32], allocs[n32:]
    rules = [(0, 0, 1), (base16, 16, 2)]
    for a in used:
        if rng.random() < 0.5:
            rules.append((a, 32, rng.randint(0, 9)))
        for _ in range(rng.randint(1, 4)):
            rules.append(_v6_long_rule(rng, a))
    ref = RefLpm(128)
    for p, ln, v in rules:
        ref.insert(p, ln, v)
    pre = np.array([[p >> 64, p & (2**64 - 1)] for p, _, _ in rules], np.uint64)
    t = Lpm6.build(pre, [ln for _, ln, _ in rules], [v for _, _, v in rules])
    probes = set()
    for step in range(60):
        live = [k for k in ref.rules if k[1] > 32]
        op = rng.random()
        if op < 0.45:
            p, ln, v = _v6_long_rule(rng, rng.choice(used + fresh))
            assert t.insert(p, ln, v) == ref.insert(p, ln, v)
        elif op < 0.8 and live:
            p, ln = rng.choice(live)
            assert t.delete(p, ln) == ref.delete(p, ln)
        elif op < 0.85 and live:
            p, ln = rng.choice(live)
            v = rng.randint(0, 9)
            assert t.replace(p, ln, v) == ref.insert(p, ln, v)
        else:                    # a /16../32 rule
            ln = rng.choice([16, 17, 20, 24, 28, 31, 32, 32, 32])
            p = rng.choice(used + fresh) & ~((1 << (128 - ln)) - 1)
            r = rng.random()
            if (p, ln) in ref.rules and r < 0.4:
                assert t.delete(p, ln) == ref.delete(p, ln)
            elif (p, ln) in ref.rules and r < 0.7:
                v = rng.randint(0, 9)
                assert t.replace(p, ln, v) == ref.insert(p, ln, v)
            else:
                v = rng.randint(0, 9)
                assert t.insert(p, ln, v) == ref.insert(p, ln, v)
        t.reclaim()
        if step % 15 == 14:
            rl = [(p, ln, v) for (p, ln), v in ref.rules.items()]
            probes.update(_probes(128, rl, rng, extra=8))
            probes.update(a | rng.getrandbits(96) for a in used + fresh)
            _check(t, ref, 128, sorted(probes))
    rl = [(p, ln, v) for (p, ln), v in ref.rules.items()]
    probes = sorted(set(_probes(128, rl, rng, extra=8)) | probes)
    _check(t, ref, 128, probes)
    _check(Lpm6.build(*t.rules()), ref, 128, probes)
    t.rebuild()
    _check(t, ref, 128, probes)


def test_ipv6_update_under_a_crowded_slash16_replaces_only_a_c_node():
    # a /48 under a /32 that already has longer rules: one small block (the
    # /32's C node), not a rebuilt chunk; after the delete and a rebuild the
    # memory is what a bulk build of the same rules takes
    rng = random.Random(11)
    base16 = 0x2600 << 112
    allocs = _v6_allocations(rng, base16, 300)
    rules = [(a, 48, 1 + i % 7) for i, a in enumerate(allocs)]
    pre = np.array([[p >> 64, p & (2**64 - 1)] for p, _, _ in rules], np.uint64)
    t = Lpm6.build(pre, [ln for _, ln, _ in rules], [v for _, _, v in rules])
    built = t.memory()["chunks"]
    assert built > 16384                 # a bitmap B level
    target = allocs[7] | (0x1234 << 80)          # another /48 of that /32
    t.insert(target, 48, 99)
    assert 0 < t.memory()["chunks"] - built <= 256
    assert t.lookup(target | 5) == 99
    t.delete(target, 48)
    assert t.lookup(target | 5) == MISS
    assert t.lookup(allocs[7] | 5) == 1 + 7 % 7
    for i in range(200):                 # churn: memory stays bounded
        a = allocs[i] | (rng.getrandbits(16) << 64)
        t.insert(a, 56, 5)
        t.insert(allocs[-1 - i] ^ (1 << 100), 64, 6)     # /32s without rules: B re-cut
        t.delete(a, 56)
        t.delete(allocs[-1 - i] ^ (1 << 100), 64)
    assert t.memory()["chunks"] <= 2 * built + 65536
    assert t.reclaim() == 0
    t.rebuild()
    assert t.memory()["chunks"] == built


def test_every_ipv6_walk_copy_this_cpu_runs_gives_the_same_answers():
    # the IPv6 walk is compiled once per instruction set and chosen at run time: each
    # copy the CPU can run must agree with the others and with single lookups
    from kdp._fast import lpm6
    from kdp.benchmarks.lpm import queries6, raw16, v6_table
    pre, lens, vals, _ = v6_table(30_000, seed=11)
    t = Lpm6.build(pre, lens, vals)
    q = np.concatenate([queries6(pre, lens, 20_000, "hit90", seed=12), queries6(pre, lens, 5_000, "uniform", seed=13)])
    want = [t.lookup((int(h) << 64) | int(lo)) for h, lo in q]
    copies = [name for name in ("generic", "avx2", "avx512") if lpm6.kernel_runs(name)]
    assert "generic" in copies
    try:
        for name in copies:
            lpm6.use_kernel(name)
            assert lpm6.kernel() == name
            assert t.lookup_batch(q).tolist() == want, name
            assert t.lookup_batch(raw16(q)).tolist() == want, name
    finally:
        lpm6.use_kernel(None)
    assert lpm6.kernel() == copies[-1]          # the best this CPU runs is chosen again
