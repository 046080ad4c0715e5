"""The LPM chunk layouts, defined once in kdp/_fast/lpm4_kernels.h and
lpm6_kernels.h (LAYOUT4 / LAYOUT6 are those names as compiled): the named
offsets are the documented ones, and a plain Python reader that walks a table's
memory by them alone (root entry, chunk nodes, value table) finds the answer
the naive reference gives, for tables built in bulk and edited one rule at a
time.  If a builder or a lookup kernel stopped following the named layout,
the reader here would disagree with it."""
import ctypes
import random

import numpy as np
from hypothesis import given, settings, strategies as st

import kdp
from kdp._fast import lpm, lpm6
from kdp._fast.lpm import LAYOUT4 as L4, Lpm4
from kdp._fast.lpm6 import LAYOUT6 as L6, Lpm6
from kdp.reference.lpm import RefLpm

M64 = (1 << 64) - 1
MISS32 = 0xFFFFFFFF


def u8(a):
    return ctypes.c_uint8.from_address(a).value


def u16(a):
    return ctypes.c_uint16.from_address(a).value


def u32(a):
    return ctypes.c_uint32.from_address(a).value


def u64(a):
    return ctypes.c_uint64.from_address(a).value


# ---- the named offsets ------------------------------------------------------------

def test_ipv4_node_fields_follow_each_other_as_documented():
    # uint64 starts[4], then the run counts, then the leaves (16-bit: after a
    # uint32 gap that keeps the leaves 4-byte aligned)
    assert L4["starts"] == 0
    assert L4["n16_runs"] == L4["n8_runs"] == 4 * 8
    assert L4["n16_leaf"] == L4["n16_runs"] + 4 * 2 + 4
    assert L4["n8_leaf"] == L4["n8_runs"] + 4 * 1
    # an 8-bit root node with 28 bytes of palette and leaves (3 next hops, 20
    # runs) is one cache line (the docstring's promise)
    assert L4["n8_leaf"] + 28 == 64
    # in front of a root node: its distance, then child offsets growing down
    assert (L4["root_dist"], L4["root_kids"]) == (-4, -8)
    # a wide chunk: a header line, then 65,536 uint16 leaves (bits 16..31)
    assert (L4["wide_table"], L4["wide_slots"]) == (64, 1 << 16)


def test_ipv4_leaf_codes_and_handle_flags_do_not_overlap():
    # leaves below CHILD8 / CHILD16 are next-hop indices, those above name
    # children; every value index fits under CHILD16 and 256 - CHILD8 children
    # fit an 8-bit root
    assert lpm.MAX_VALUES < L4["child16"] <= 0xFFFF
    assert 0 < L4["child8"] < 0x100
    # the flags live in the low bits nodes (8-byte aligned) leave free
    flags = (L4["flag_wide"], L4["flag_leaf16"], L4["flag_palette"])
    assert sum(flags) == L4["flag_wide"] | L4["flag_leaf16"] | L4["flag_palette"]
    assert sum(flags) & ~L4["flags"] == 0 and L4["flags"] < 8
    assert L4["ptr_mask"] == (1 << 48) - 1


def test_ipv6_levels_are_the_documented_lines_and_records():
    assert L6["line"] == 64 and L6["header"] == L6["line"] and L6["header_nvalues"] == 8
    # B line: 32 uint16 keys fill one line, the values follow it
    assert L6["bline_keys"] * 2 == L6["bline_values"] == L6["line"]
    # B bitmap: one 16-byte record per 64 keys covers bits 16..31, the values follow
    assert L6["brecords"] * 64 == 1 << 16 and L6["brec_size"] == 16 and L6["brec_runs"] == 8
    assert L6["bbitmap_values"] == L6["brecords"] * L6["brec_size"]
    # C: a line of 16 uint32 keys; two levels: 15 top keys + the block count
    assert L6["cline_keys"] * 4 == L6["line"]
    assert L6["ctwo_keys"] == L6["cline_keys"] * (L6["ctwo_nblocks"] + 1)
    assert L6["sorted_keys"] == 8
    # leaves fit 16 bits, below any C node address; C leaves below the child bit
    assert L6["leaf_max"] == 0xFFFF and L6["c_child"] == 1 << 31 and L6["c_format"] == 3


def test_the_ipv6_class_is_named_by_every_import_path():
    assert lpm.Lpm6 is lpm6.Lpm6 is kdp.Lpm6
    assert kdp.Lpm4 is lpm.Lpm4
    assert issubclass(Lpm6, lpm._LpmBase) and issubclass(Lpm4, lpm._LpmBase)


# ---- a reader of the memory, by the named layout alone ----------------------------

def _node_leaf(nd, p, leaf16):
    # slot p's leaf: leaf[runs before word w + runs started in w up to p - 1]
    w = p >> 6
    k = bin(u64(nd + L4["starts"] + 8 * w) & ((2 << (p & 63)) - 1)).count("1")
    if leaf16:
        return u16(nd + L4["n16_leaf"] + 2 * (u16(nd + L4["n16_runs"] + 2 * w) + k - 1))
    return u8(nd + L4["n8_leaf"] + u8(nd + L4["n8_runs"] + w) + k - 1)


def _child(root_node, k):
    return root_node + u32(root_node + L4["root_kids"] - 4 * k)


def read4(t, a):
    t0, values = t._root_addresses()
    e = u64(t0 + 8 * (a >> 16))
    h = e & L4["ptr_mask"]
    c = h & ~L4["flags"]
    if h & L4["flag_wide"]:
        leaf = u16(c + 2 * (a & 0xFFFF))
    elif h & L4["flag_leaf16"]:
        leaf = _node_leaf(c, (a >> 8) & 255, True)
        if leaf >= L4["child16"]:
            leaf = _node_leaf(_child(c, leaf - L4["child16"]), a & 255, True)
    else:
        leaf = _node_leaf(c, (a >> 8) & 255, False)
        if leaf >= L4["child8"]:
            leaf = _node_leaf(_child(c, leaf - L4["child8"]), a & 255, True)
        elif h & L4["flag_palette"]:                # the node's palette of next-hop indices
            leaf = u16(c + L4["n8_leaf"] + 2 * leaf)
    return u32(values + 4 * (leaf or e >> 48))       # leaf 0: the /16's default


def read4s(t, a):
    # through the 4-byte root: the entry is the handle's offset from the arena
    # base, and the /16's default is in the chunk (palette entry 0 of an 8-bit
    # root, every one of which has a palette; n16_dflt of a 16-bit root;
    # wide_dflt from a wide table)
    t4, base = t._root4_addresses()
    _, values = t._root_addresses()
    h = base + u32(t4 + 4 * (a >> 16))
    c = h & ~L4["flags"]
    if h & L4["flag_wide"]:
        leaf, dflt = u16(c + 2 * (a & 0xFFFF)), u16(c + L4["wide_dflt"])
    elif h & L4["flag_leaf16"]:
        leaf, dflt = _node_leaf(c, (a >> 8) & 255, True), u16(c + L4["n16_dflt"])
        if leaf >= L4["child16"]:
            leaf = _node_leaf(_child(c, leaf - L4["child16"]), a & 255, True)
    else:
        assert h & L4["flag_palette"]
        leaf, dflt = _node_leaf(c, (a >> 8) & 255, False), u16(c + L4["n8_leaf"])
        if leaf >= L4["child8"]:
            leaf = _node_leaf(_child(c, leaf - L4["child8"]), a & 255, True)
        else:
            leaf = u16(c + L4["n8_leaf"] + 2 * leaf)
    return u32(values + 4 * (leaf or dflt))


def _rank(addr, count, width, x):
    read = {2: u16, 4: u32}[width]
    return sum(read(addr + width * i) < x for i in range(count))


def _searched(nd, width, x):
    # sorted_t {n}, n starts, n + 1 values: the range of x
    n = u32(nd)
    read = {4: u32, 8: u64}[width]
    r = sum(read(nd + L6["sorted_keys"] + width * i) <= x for i in range(n))
    return u32(nd + L6["sorted_keys"] + width * n + 4 * r)


def read6(t, a):
    hi, lo = a >> 64, a & M64
    t0, values = t._root_addresses()
    e = u64(t0 + 8 * (hi >> 48))
    h = e & L6["ptr_mask"]
    b = h & ~63
    x = (hi >> 32) & 0xFFFF
    if h & L6["b_bitmap"]:
        rec = b + (x >> 6) * L6["brec_size"]
        runs = u32(rec + L6["brec_runs"]) + bin(u64(rec) & ((2 << (x & 63)) - 1)).count("1")
        v = u64(b + L6["bbitmap_values"] + 8 * (runs - 1))
    else:
        v = u64(b + L6["bline_values"] + 8 * _rank(b, L6["bline_keys"], 2, x))
    if v > L6["leaf_max"]:
        nd, fmt, y = v & ~63, v & L6["c_format"], hi & 0xFFFFFFFF
        if fmt == 0:
            v = u32(nd + L6["line"] + 4 * _rank(nd, L6["cline_keys"], 4, y))
        elif fmt == 1:
            nb = u32(nd + 4 * L6["ctwo_nblocks"])
            j = _rank(nd, L6["ctwo_nblocks"], 4, y)
            r = L6["cline_keys"] * j + _rank(nd + L6["line"] * (1 + j), L6["cline_keys"], 4, y)
            v = u32(nd + L6["line"] * (1 + nb) + 4 * r)
        else:
            v = _searched(nd, 4, y)
        if v & L6["c_child"]:                        # a D node, (v >> 2) lines on
            v = _searched(nd + L6["line"] * ((v >> 2) & 0x1FFFFFFF), 8, lo)
    return u32(values + 4 * (v or e >> 48))


def _b_levels_count_their_values(t, slash16s):
    # every B level's header holds its number of values: one more than the keys
    # of a line, the run starts of a bitmap
    t0, _ = t._root_addresses()
    for s in slash16s:
        h = u64(t0 + 8 * s) & L6["ptr_mask"]
        b = h & ~63
        nvalues = u64(b - L6["header"] + L6["header_nvalues"])
        if h & L6["b_bitmap"]:
            starts = sum(bin(u64(b + L6["brec_size"] * r)).count("1") for r in range(L6["brecords"]))
        else:
            starts = 1 + sum(u16(b + 2 * i) != 0xFFFF for i in range(L6["bline_keys"]))
        assert nvalues == starts


# ---- tables that use every form ---------------------------------------------------

def _v4_rules(rng, many_values):
    nv = 2000 if many_values else 30
    rules = [(0, 0, rng.randrange(nv)), (0x0A000000, 8, rng.randrange(nv))]
    for base in (0x0A010000, 0x0A020000, 0xC0A80000):     # trie chunks with children
        rules.append((base, 16, rng.randrange(nv)))
        for s in rng.sample(range(256), rng.randint(1, 60)):
            rules.append((base | s << 8, rng.choice([17, 20, 23, 24]), rng.randrange(nv)))
        for s in rng.sample(range(256), rng.choice([1, 5, 17])):
            rules.append((base | s << 8 | rng.getrandbits(8), rng.randint(25, 32), rng.randrange(nv)))
    for _ in range(40):                                   # a wide chunk
        rules.append((0x0AF40000 | rng.getrandbits(16), rng.choice([25, 26, 28, 32]),
                      rng.randrange(nv)))
    if many_values:                                       # enough for 16-bit leaves
        rules += [(0x0B000000 | i << 8, 24, 10_000 + i) for i in range(300)]
    return rules


def _probes(rules, bits, rng, extra):
    top = (1 << bits) - 1
    out = {0, top}
    for p, ln, _ in rules:
        first = p & (top ^ ((1 << (bits - ln)) - 1))
        last = first | ((1 << (bits - ln)) - 1)
        out.update(a for a in (first, last, first - 1, last + 1) if 0 <= a <= top)
    for p, ln, _ in rng.sample(rules, min(len(rules), extra)):
        out.add(p | (rng.getrandbits(bits - ln) if ln < bits else 0))
    return sorted(out)


def _ref(rules, bits):
    ref = RefLpm(bits)
    for p, ln, v in rules:
        ref.insert(p, ln, v)
    return ref


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), many_values=st.booleans(), bulk=st.booleans())
def test_ipv4_memory_read_by_the_named_layout_matches_the_reference(seed, many_values, bulk):
    rng = random.Random(seed)
    rules = _v4_rules(rng, many_values)
    ref = _ref(rules, 32)
    if bulk:
        t = Lpm4.build(np.array([r[0] for r in rules], np.uint32), [r[1] for r in rules],
                       [r[2] for r in rules])
    else:
        t = Lpm4()
        for p, ln, v in rules:
            t.insert(p, ln, v)
    probes = _probes(rules, 32, rng, 200)
    assert [read4(t, a) for a in probes] == [ref.lookup(a) for a in probes]
    if not bulk:
        # blocks of their own: the size at the start of each (found from the
        # root node by the distance in front of it) adds up to memory()
        t0, _ = t._root_addresses()
        total = 0
        for s in {p >> 16 for p, ln, _ in rules if ln >= 16}:
            h = u64(t0 + 8 * s) & L4["ptr_mask"]
            c = h & ~L4["flags"]
            start = c - L4["wide_table"] if h & L4["flag_wide"] else c - u32(c + L4["root_dist"])
            total += u64(start)
        assert total == t.memory()["chunks"]



def _leaf16(t, slash16):
    t0, _ = t._root_addresses()
    return bool(u64(t0 + 8 * slash16) & L4["flag_leaf16"])


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), many_values=st.booleans())
def test_ipv4_4_byte_root_read_by_the_named_layout_matches_the_reference(seed, many_values):
    # a bulk build forced through the 4-byte root (and palettes), then edits
    # that change defaults (short prefixes) and chunks; the reader follows t4
    rng = random.Random(seed)
    rules = _v4_rules(rng, many_values)
    ref = _ref(rules, 32)
    old = lpm._set_root4(1, -1, True)
    try:
        t = Lpm4.build(np.array([r[0] for r in rules], np.uint32), [r[1] for r in rules],
                       [r[2] for r in rules])
    finally:
        lpm._set_root4(*old)
    assert t._root4_addresses()[1] != 0
    probes = _probes(rules, 32, rng, 200)
    assert [read4s(t, a) for a in probes] == [ref.lookup(a) for a in probes]
    for p, ln, v in [(0x0A000000, 9, 5), (0, 0, 6), (0x0AF40000, 30, 7), (0x0C000000, 16, 8),
                     (0xC0A80000, 12, 9)]:
        t.insert(p, ln, v)
        ref.insert(p, ln, v)
    t.delete(0x0A000000, 8)
    ref.delete(0x0A000000, 8)
    probes = _probes([(p, ln, v) for (p, ln), v in ref.rules.items()], 32, rng, 200)
    assert [read4s(t, a) for a in probes] == [ref.lookup(a) for a in probes]


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bulk=st.booleans())
def test_ipv4_chunk_palettes_keep_8_bit_leaves_in_a_table_of_thousands_of_next_hops(seed, bulk):
    # A chunk root stores 8-bit leaves indexing its own palette of next-hop
    # indices, so a table of thousands of next hops keeps 8-bit leaves in
    # every /16 holding few distinct ones (a table whose /16s hold mostly
    # distinct values has 16-bit leaves instead); a /16 with 240 or more
    # distinct next hops (or too many runs with them, or more than 16 child
    # nodes) takes 16-bit leaves.  Inserts
    # carry a /16 across that limit and deletes carry it back; answers follow
    # the reference all the way (read through the layout and by the lookups).
    rng = random.Random(seed)
    rules = [(0, 0, 1), (0x0A000000, 8, 2)]
    for i in range(60):                  # many values overall; a FIB's /16s: neighbours alike
        rules += [(0x0B000000 | i << 16 | sl << 8, 24, 3_000 + i) for sl in range(0, 200, 20)]
    few = [0x0A010000, 0x0A020000, 0xC0A80000]
    for base in few:                     # <= 20 values over <= 60 prefixes, <= 16 children
        vals = [rng.randrange(4_000) for _ in range(rng.randint(1, 20))]
        rules.append((base, rng.choice([16, 17]), rng.choice(vals)))
        for sl in rng.sample(range(256), rng.randint(1, 40)):
            rules.append((base | sl << 8, rng.choice([18, 22, 24]), rng.choice(vals)))
        for sl in rng.sample(range(256), rng.randint(0, 16)):
            rules.append((base | sl << 8 | rng.getrandbits(8), rng.randint(25, 32), rng.choice(vals)))
    crowded = 0xC6120000                 # every /24 its own next hop: 256 distinct
    crowd = [(crowded | sl << 8, 24, 10_000 + sl) for sl in range(256)]
    if bulk:
        t = Lpm4.build(*map(np.array, zip(*(rules + crowd))))
    else:
        t = Lpm4()
        for p, ln, v in rules + crowd:
            t.insert(p, ln, v)
    ref = _ref(rules + crowd, 32)
    probes = _probes(rules + crowd, 32, rng, 200)

    def agree():
        want = [ref.lookup(a) for a in probes]
        assert [read4(t, a) for a in probes] == want
        assert t.lookup_batch(np.array(probes, np.uint32)).tolist() == [MISS32 if w is None else w for w in want]

    agree()
    assert not any(_leaf16(t, b >> 16) for b in few)
    assert _leaf16(t, crowded >> 16)
    if bulk:                             # thousands of next hops: the few-value /16s' palettes
        t0, _ = t._root_addresses()
        assert all(u64(t0 + 8 * (b >> 16)) & L4["flag_palette"] for b in few)
        # the same prefixes with a route id of its own each (most rules of a
        # /16 with their own value): 16-bit leaves, which are smaller then
        own = [(p, ln, 50_000 + i) for i, (p, ln, _) in enumerate(rules)]
        t2, ref2 = Lpm4.build(*map(np.array, zip(*own))), _ref(own, 32)
        assert [read4(t2, a) for a in probes] == [ref2.lookup(a) for a in probes]
        assert all(_leaf16(t2, p >> 16) for p, ln, _ in own if ln >= 16)
    # 8-bit run counts hold the palette's bytes too: P next hops and R runs fit
    # when 2 (P + 1) + R <= 256, so 56 distinct /24s left: 8-bit again
    for p, ln, _ in rng.sample(crowd, 200):
        t.delete(p, ln)
        ref.delete(p, ln)
    agree()
    assert not _leaf16(t, crowded >> 16)
    for sl in range(256):                             # back over 240 by replacing values
        t.insert(crowded | sl << 8, 24, 20_000 + sl)
        ref.insert(crowded | sl << 8, 24, 20_000 + sl)
    agree()
    assert _leaf16(t, crowded >> 16)
    assert not any(_leaf16(t, b >> 16) for b in few)


def _v6_rules(rng):
    rules = [(0, 0, 1), (0x2001 << 112, 16, 2)]
    base32 = 0x20010DB8 << 96
    for _ in range(rng.choice([5, 40])):                  # /17../32: a line or a bitmap B
        rules.append(((0x2001 << 112) | rng.getrandbits(16) << 96, rng.randint(17, 32),
                      rng.randint(0, 9)))
    for n, base in ((rng.choice([3, 12]), base32),         # C line
                    (rng.choice([20, 120]), base32 ^ 1 << 96),   # C two levels
                    (300, base32 ^ 2 << 96)):             # C searched
        rules += [(base | rng.getrandbits(32) << 64, rng.randint(33, 64), rng.randint(0, 9))
                  for _ in range(n)]
    base64 = base32 | 0x12345678 << 64                    # D
    rules += [(base64 | rng.getrandbits(64), rng.choice([65, 96, 127, 128]), rng.randint(0, 9))
              for _ in range(rng.randint(1, 20))]
    rules += [((0x2A00 << 112) | rng.getrandbits(16) << 96, 48, rng.randint(0, 9))
              for _ in range(rng.randint(1, 30))]          # another /16
    return rules


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), bulk=st.booleans())
def test_ipv6_memory_read_by_the_named_layout_matches_the_reference(seed, bulk):
    rng = random.Random(seed)
    rules = _v6_rules(rng)
    ref = _ref(rules, 128)
    if bulk:
        pre = np.array([[p >> 64, p & M64] for p, _, _ in rules], np.uint64)
        t = Lpm6.build(pre, [r[1] for r in rules], [r[2] for r in rules])
    else:
        t = Lpm6()
        for p, ln, v in rules:
            t.insert(p, ln, v)
    probes = _probes(rules, 128, rng, 300)
    assert [read6(t, a) for a in probes] == [ref.lookup(a) for a in probes]
    _b_levels_count_their_values(t, {p >> 112 for p, ln, _ in rules if ln >= 16})
    # edits that re-cut B levels and replace C nodes in blocks of their own
    for p, ln, v in rng.sample(rules, len(rules) // 3):
        t.delete(p, ln)
        ref.delete(p, ln)
    for _ in range(30):
        p = rng.choice(rules)[0] | rng.getrandbits(32) << 32
        ln = rng.choice([24, 32, 40, 48, 56, 128])
        p &= ~((1 << (128 - ln)) - 1)
        t.insert(p, ln, 7)
        ref.insert(p, ln, 7)
    probes = _probes([(p, ln, v) for (p, ln), v in ref.rules.items()], 128, rng, 300)
    assert [read6(t, a) for a in probes] == [ref.lookup(a) for a in probes]
    _b_levels_count_their_values(t, {p >> 112 for p, ln, _ in rules if ln >= 16})
