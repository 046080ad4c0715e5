"""The IPv4 4-byte root (kdp/_fast/lpm.pyx, "4-byte root"): bulk-built tables
with many non-empty /16s have batch lookups read 4-byte root entries (chunk
offsets in one arena) and each /16's default from its chunk.  Here small
tables are forced through it, with palettes whatever their values
(kdp._fast.lpm._set_root4), and checked against the
naive reference through bulk builds, inserts, deletes and replacements that
cross chunk formats (8-bit direct or palette leaves, 16-bit leaves, wide
tables, empty /16s) and change defaults (prefixes shorter than /16)."""
import contextlib
import random

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from kdp._fast import lpm as lpm_mod
from kdp._fast.lpm import Lpm4
from kdp.reference.lpm import RefLpm

from test_lpm import _arrays, _check, _probes, _rules


@contextlib.contextmanager
def _root4(min_nonempty=1, slack=-1):
    old = lpm_mod._set_root4(min_nonempty, slack, True)
    try:
        yield
    finally:
        lpm_mod._set_root4(*old)


def _has_root4(t):
    return t.memory()["root4"] > 0


def _format_rules(rng, many_values):
    # /16s of every chunk format: 8-bit roots (direct or palette), a /16 with
    # children, a wide one (>= 24 rules longer than /24), one of 16-bit leaves
    # (240+ distinct values), and short prefixes whose defaults the chunks copy
    nv = 2_000 if many_values else 40
    rules = [(0, 0, 1), (0x0A000000, 8, 2), (0xC0000000, 4, 3), (0x0B000000, 12, 4)]
    for top in rng.sample(range(0x0100, 0xDFFF), 40):
        base = top << 16
        for _ in range(rng.randint(1, 12)):
            rules.append((base | rng.getrandbits(16), rng.choice([16, 18, 20, 22, 24, 24, 26, 32]),
                          rng.randrange(nv)))
    wide = 0x0A140000
    rules += [(wide | rng.getrandbits(16), rng.choice([25, 26, 28, 32]), rng.randrange(nv))
              for _ in range(30)]
    rules += [(0x0B050000 | i << 8, 24, 10_000 + i) for i in range(260)]   # 16-bit leaves
    return rules


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), many_values=st.booleans())
def test_root4_bulk_build_and_edits_across_formats_match_reference(seed, many_values):
    rng = random.Random(seed)
    rules = _format_rules(rng, many_values)
    ref = RefLpm(32)
    for p, ln, v in rules:
        ref.insert(p, ln, v)
    probes = _probes(32, rules, rng, extra=64)
    with _root4():
        t = Lpm4.build(*_arrays(rules))
    assert _has_root4(t)
    _check(t, ref, 32, probes)
    # edits: long rules flip a /16 between formats (new /16s, empty again),
    # short ones change the defaults kept in the chunks and the empty /16s'
    pool = rules + [(0x0A140000 | rng.getrandbits(16), 32, 5), (0x7F000000, 16, 6),
                    (0x0A000000, 7, 8), (0x0A000000, 9, 9), (0, 0, 10), (0x0B050000, 16, 11)]
    for i in range(40):
        p, ln, _v = rng.choice(pool)
        v = rng.randrange(3_000 if many_values else 50)
        op = rng.random()
        if op < 0.45:
            assert t.insert(p, ln, v) == ref.insert(p, ln, v)
        elif op < 0.9:
            assert t.delete(p, ln) == ref.delete(p, ln)
        elif ref.get(p, ln) is not None:
            assert t.replace(p, ln, v) == ref.insert(p, ln, v)
        if i % 4 == 3:
            _check(t, ref, 32, probes)
    _check(t, ref, 32, probes)
    assert _has_root4(t)          # the arena had room: batch lookups still use it
    with _root4():
        t.rebuild()
    assert _has_root4(t)
    _check(t, ref, 32, probes)


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_root4_random_rules_built_in_bulk_then_edited_match_reference(data):
    rules = data.draw(_rules(32, max_size=80))
    ops = data.draw(st.lists(st.tuples(st.booleans(), st.integers(0, 1000), st.integers(0, 60)),
                             max_size=30))
    ref = RefLpm(32)
    for p, ln, v in rules:
        ref.insert(p, ln, v)
    with _root4():
        t = Lpm4.build(*_arrays(rules)) if rules else Lpm4()
    probes = _probes(32, rules, random.Random(5))
    _check(t, ref, 32, probes)
    for ins, k, v in ops:
        if not rules:
            break
        p, ln, _ = rules[k % len(rules)]
        if ins:
            assert t.insert(p, ln, v) == ref.insert(p, ln, v)
        else:
            assert t.delete(p, ln) == ref.delete(p, ln)
        _check(t, ref, 32, probes)


def test_root4_full_arena_falls_back_to_the_8_byte_root_and_rebuild_restores_it():
    rng = random.Random(11)
    rules = _format_rules(rng, True)
    ref = RefLpm(32)
    for p, ln, v in rules:
        ref.insert(p, ln, v)
    probes = _probes(32, rules, rng, extra=64)
    with _root4(slack=0):
        t = Lpm4.build(*_arrays(rules))
        assert _has_root4(t)
        t.insert(0x0A140000, 30, 77)           # no room for the new chunk
        ref.insert(0x0A140000, 30, 77)
        assert not _has_root4(t)
        _check(t, ref, 32, probes)
        t.insert(0x30000000, 6, 78)            # defaults change without it
        ref.insert(0x30000000, 6, 78)
        _check(t, ref, 32, probes)
    with _root4():
        t.rebuild()
    assert _has_root4(t)
    _check(t, ref, 32, probes)


def test_root4_arena_reuses_freed_blocks_over_many_insert_delete_pairs():
    # 2,000 insert+delete pairs in a /16 of the table need ~2,000 chunk blocks;
    # the arena has room for ~100: without reuse it would fill and give the
    # 4-byte root up
    rng = random.Random(12)
    rules = _format_rules(rng, False)
    ref = RefLpm(32)
    for p, ln, v in rules:
        ref.insert(p, ln, v)
    with _root4(slack=64 * 100):
        t = Lpm4.build(*_arrays(rules))
    probes = _probes(32, rules, rng, extra=64)
    for i in range(2_000):
        p = rules[5 + i % 40][0] & 0xFFFFFF00
        t.insert(p, 28, i)
        t.delete(p, 28)
    assert _has_root4(t)
    _check(t, ref, 32, probes)


def test_root4_empty_slash16s_take_their_default_from_their_own_empty_chunk():
    # /16s without rules under different short prefixes answer their own
    # default; a short prefix inserted later over empty /16s gets an empty
    # chunk of its own
    rules = [(0x01000000 | i << 16, 16, i) for i in range(64)] + [(0, 0, 100), (0x50000000, 8, 101)]
    with _root4():
        t = Lpm4.build(*_arrays(rules))
    assert _has_root4(t)
    q = np.array([0x50010203, 0x60010203, 0x01400000, 0x01020304], np.uint32)
    assert t.lookup_batch(q).tolist() == [101, 100, 100, 2]
    t.insert(0x60000000, 10, 102)
    assert t.lookup_batch(q).tolist() == [101, 102, 100, 2]
    t.delete(0, 0)
    assert t.lookup_batch(q).tolist() == [101, 102, lpm_mod.MISS, 2]
    assert _has_root4(t)


def test_small_and_insert_built_tables_keep_the_8_byte_root():
    t = Lpm4()
    t.insert("10.0.0.0/8", 1)
    assert not _has_root4(t)
    t2 = Lpm4.build(*_arrays([(0x0A000000 | i << 16, 16, i) for i in range(100)]))
    assert not _has_root4(t2)        # 100 non-empty /16s: under the threshold
    assert t2.memory()["batch"] == t2.memory()["lookup"]


@pytest.mark.parametrize("hops", [1024, 32])
def test_bgp_sized_table_root_choice_and_both_roots_agree(hops):
    # 1,024 next hops: palettes, the 4-byte root; 32: direct 8-bit leaves, t0.
    # Through either root the same chunks give the same answers, as do single
    # lookups (always t0)
    from kdp.benchmarks.lpm import bgp_table, queries4
    pre, lens, vals, _ = bgp_table(100_000, seed=6, hops=hops)
    t = Lpm4.build(pre, lens, vals)
    assert _has_root4(t) == (hops == 1024)
    m = t.memory()
    assert m["batch"] == m["lookup"] - (65536 * 8 if hops == 1024 else 0)
    q = np.concatenate([queries4(pre, lens, 30_000, "hit90", seed=7),
                        queries4(pre, lens, 10_000, "uniform", seed=8)])
    got = t.lookup_batch(q)
    assert got.tolist() == [t.lookup(int(a)) for a in q]
    t._use_root4(False)
    assert not _has_root4(t)
    assert np.array_equal(t.lookup_batch(q), got)
    t._use_root4(True)
    assert _has_root4(t) == (hops == 1024)
    assert np.array_equal(t.lookup_batch(q), got)


@pytest.mark.parametrize("hops", [1024, 32])
def test_batches_of_every_length_through_the_prefetch_ring_agree_with_single_lookups(hops):
    # A table over the ring's threshold (1 MiB of chunks): batches run two
    # lookups an iteration, then one at a time, then the chunk-only tail,
    # then four at a time without prefetches (kdp/_fast/lpm4_lookup.pxd).
    # Every batch length around those boundaries (the ring's 24 and 8
    # ahead, the groups of 2 and 4), through the 4-byte
    # root (1,024 next hops) and the 8-byte one (32; and 1,024 with it off),
    # gives the single lookups' answers: no address skipped or answered in
    # another's slot.
    from kdp.benchmarks.lpm import bgp_table, queries4
    pre, lens, vals, _ = bgp_table(100_000, seed=9, hops=hops)
    t = Lpm4.build(pre, lens, vals)
    assert t.memory()["chunks"] > 1 << 20
    assert _has_root4(t) == (hops == 1024)
    q = np.concatenate([queries4(pre, lens, 600, "hit90", seed=10),
                        queries4(pre, lens, 200, "uniform", seed=11)])
    want = np.array([t.lookup(int(a)) for a in q], np.uint32)
    for root4 in ([True, False] if hops == 1024 else [False]):
        t._use_root4(root4)
        assert _has_root4(t) == root4
        for n in list(range(0, 70)) + [101, 255, 256, 257, 799, 800]:
            off = (n * 7) % (len(q) - n + 1)
            assert np.array_equal(t.lookup_batch(q[off:off + n]), want[off:off + n]), (root4, n)
