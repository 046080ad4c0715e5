# cython: freethreading_compatible = False
"""Longest-prefix match for IPv4 and IPv6: prefix -> 32-bit value (a route id).

Classes
-------
``Lpm4``  IPv4 table (this module).  Addresses are ints / uint32 in host byte
          order.
``Lpm6``  IPv6 table (kdp/_fast/lpm6.pyx; ``kdp._fast.lpm.Lpm6`` names it
          too).  Addresses are ints (128-bit), (n, 16) uint8 arrays in network
          byte order, or (n, 2) uint64 arrays of host-order halves.

Both take prefixes as ``(prefix, length)`` (prefix an int, an ``ipaddress``
address, or an address string) or as one ``"10.0.0.0/8"`` string /
``ipaddress`` network object with the length argument left out::

    t = Lpm4()
    t.insert("10.0.0.0/8", 7)           # or t.insert(0x0A000000, 8, 7)
    t.lookup("10.1.2.3")  -> 7
    t.lookup_batch(np.array([...], np.uint32)) -> uint32 array
    t.delete("10.0.0.0/8")

A miss is ``MISS`` (0xFFFFFFFF), never an exception.  Host bits below the
length are ignored (the prefix is masked).  Values are any uint32 except
MISS; a table holds at most 65,279 distinct values (they are mapped to 16-bit
next-hop indices inside).

Files
-----
lpm.pyx / lpm.pxd            _LpmBase (the root, the rule list, bulk builds,
                             the writers' concurrency machinery) and Lpm4
lpm6.pyx / lpm6.pxd          Lpm6: IPv6 chunks, their builders and updates
lpm_kernels.h / .pxd         C primitives both use (atomics, epoch, memory, bits)
lpm4_kernels.h / .pxd        the IPv4 chunk layout (named offsets) and empty chunks
lpm4_lookup.pxd              the IPv4 lookup kernels (inline): one address, and
                             batches through either root with their prefetch rings
lpm6_kernels.h               the IPv6 chunk layout, empty chunks, vector batch steps

Structure
---------
A 65,536-entry root indexed by the top 16 address bits.  Each root entry packs
a handle of a "chunk" (low 48 bits: a pointer, its low 3 bits flags) with the
next-hop index of the longest prefix shorter than /16 that covers it (high 16
bits).  A chunk is the multibit trie (stride 8) of the rules of length >= 16
under that /16, leaf-pushed and popcount-compressed (Poptrie-style): a node is
a 256-bit bitmap with a bit where a run of equal leaves starts, the run counts
before each 64-bit word, then one leaf per run (layout: lpm4_kernels.h).
Leaves are next-hop indices (0 = "no rule of this chunk covers it: use the
root entry's default"; the others index the 32-bit value table) or name a
child node for the bits 24..31 of a slot holding longer prefixes.  Chunk
roots have 8-bit leaves after a 36-byte header.  In a table with fewer than
240 next hops they are next-hop indices.  In a bigger one whose /16s hold
few distinct next hops (a FIB: at most half as many distinct (/16, value)
pairs as rules) they index the chunk's palette (handle flag H_PALETTE), the
distinct next-hop indices of that /16 (uint16 each, entry 0 = 0), stored
between header and leaves (against 16-bit leaves, hit-heavy lookups +13-16%
on a 900,000-prefix table with 1,024 next hops: bench/README.md).  Other
big tables (route ids drawn at random) keep 16-bit leaves, smaller there.
A root node is placed so that it crosses no more cache lines than its size
needs: 28 bytes of palette and leaves (e.g. 3 next hops and 20 runs) fit the
header's line.  A /16 whose leaves do not fit 8
bits (a next-hop index >= 240 without a palette; 240 or more distinct next
hops, or 2 * (palette + 1) + runs > 256, with one), or with more than 16
children, gets 16-bit leaves holding next-hop indices (as do child nodes).

An IPv4 lookup is: root entry (512 KiB in all) -> the chunk's root node (one
or two lines: leaf, then palette) -> the value table, with one more node step only for prefixes
longer than /24.  Batches over tables bigger than 1 MiB of chunks run a
two-stage prefetch ring ahead of the lookups: the root entry of the address 24
ahead, then (that entry now cached) the chunk's first two lines for the
address 8 ahead.  A /16 holding many prefixes longer than /24 (e.g. a cluster
CIDR cut into /26 node blocks) is compiled "wide" instead: a direct table of
65,536 16-bit leaves for bits 16..31 (128 KiB), flagged in its handle, so
those lookups are one load.  Small tables (fewer than 4,096 non-empty /16s)
point their empty /16s at a shared wide empty chunk too, so every lookup takes
the same short path: root entry -> leaf -> value.  A /16 with no rules points
at one shared empty chunk.  Short prefixes (< /16) live only in root entries,
so inserting or deleting them never touches a chunk.  The default route /0 is
a short prefix like any other.

4-byte root (IPv4 tables with palettes and at least 4,096 non-empty /16s,
e.g. a BGP table with a thousand next hops): batch lookups read a second,
4-byte root (``t4``: 256 KiB instead of 512) whose entry is the chunk
handle's offset in one arena, the bulk region's mapping, with room reserved
after the bulk-built chunks for the chunks of later updates (freed blocks
are kept per size and reused).  The /16's default, which the 8-byte entry
packs, is kept in the chunk: palette entry 0 (so a palette leaf needs no
merge at all), the N16_DFLT field of a 16-bit root node, a wide table's
header line; an empty /16 names one small empty chunk per distinct default.
A short prefix's edit stores the new default into those chunks (a 16-bit
store each).  The 8-byte root stays, for single lookups and writers.  If
the arena runs out, batch lookups go back to the 8-byte root until the next
bulk build (``rebuild()``).  Against the 8-byte root over the same chunks,
uniform and hit-heavy lookups on the 900,000-prefix table with 1,024 next
hops ran ~7-13 % faster (bench/README.md, LPM); tables with direct 8-bit
leaves (fewer than 240 next hops) ran 0-10 % slower through it (their leaf 0
needs the merge) and keep the 8-byte root.

IPv6 uses the same root (top 16 bits); its chunks are leaf-pushed sorted
ranges (DXR-style) in three levels, each read with one vector compare: see
lpm6.pyx.

Memory (``memory()``): root 768 KiB (root entries + value table; + 256 KiB
with the 4-byte root), chunks
(about 5 MiB for the 900,000-prefix BGP-like table, 7.5 MiB for 200,000
IPv6 prefixes), and the rule list
(24 bytes a rule; cold, only writers read it).

The rule list (prefix, length -> value), kept per /16, is the truth; chunks
are derived from it and can be rebuilt from it (``rebuild()``).

Concurrency
-----------
Batch lookups release the GIL and may run from many threads at once.  One
writer at a time (writers are serialised by a lock) changes the table while
readers run, and a reader never sees a half-updated table:

* IPv4 chunks are immutable once published (but for the default a 4-byte
  root table keeps in them: one 16-bit store).  An insert/delete rebuilds the
  one chunk of the affected /16 aside (microseconds), then publishes it with
  a single atomic 64-bit store into the root (release ordering; and one
  32-bit store into the 4-byte root), so a reader sees either the whole old
  chunk or the whole new one;
* IPv6 updates rebuild less (``Lpm6._refresh_rule`` in lpm6.pyx): a C node or
  a B level built aside and published with one atomic 64-bit store, so every
  address sees its old or its new answer;
* whatever is replaced is freed only after every reader that might still
  hold it has left: readers announce themselves in a two-slot epoch counter,
  the writer flips the epoch and frees garbage retired before the last flip
  once the old slot has drained (it never blocks waiting for readers);
* a prefix shorter than /16 changes the default packed into each root entry
  it covers, one atomic store per /16: every answer is the old or the new
  value for its address;
* ``load(...)`` / ``build(...)`` compile a whole new table aside (in C, bulk,
  from numpy arrays) and publish it with one pointer store: a batch that
  started before sees only the old table, a batch after only the new one.

Lookups called from other Cython modules (see lpm.pxd: ``lookup_one``,
``lookup_n``, ``lookup_strided``) are ``noexcept nogil`` and do the same
epoch bracketing themselves.
"""
import ipaddress
import operator
import threading

import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, uintptr_t
from libc.stdlib cimport malloc, free
from libc.string cimport memset, memcpy, memmove

from kdp._fast.lpm_kernels cimport *
# the IPv4 chunk layout (lpm4_kernels.h) and the batch lookup kernels that read it
from kdp._fast.lpm4_kernels cimport *
from kdp._fast.lpm4_lookup cimport (PF_MIN_BYTES, lookup4_root8, lookup4_batch_root8,
                                    lookup4_batch_root4)
from kdp.errors import KdpError

cnp.import_array()

kdp_lpm4_init_empty()

MISS = 0xFFFFFFFF
MAX_VALUES = 0xFEFF

cdef enum:
    LEAF8_DIRECT = 1          # _build_root4's leaf8: 8-bit leaves are next-hop indices,
    LEAF8_PALETTE = 2         # ... or index the node's palette
    NH_LIMIT = 0xFF00         # next-hop indices are 1 .. NH_LIMIT-1 (leaves above name children)

# Bulk-built IPv4 tables with at least this many non-empty /16s get the
# 4-byte root (module docstring) if they have palettes; tests lower it to run small tables through it.
cdef size_t _root4_min = 4096
# Its arena reserves address space for the chunks of later updates (pages are
# only used once written): the bulk chunks' size again + 4 MiB, or (tests, >= 0)
# this many bytes.
cdef ssize_t _root4_slack = -1
# Tests: bulk builds give every 8-bit root a palette, whatever the values.
cdef bint _root4_palettes = False


def _set_root4(size_t min_nonempty, ssize_t slack=-1, bint palettes=False):
    """Set when a bulk-built IPv4 table with palettes gets the 4-byte root (at
    least min_nonempty non-empty /16s), its arena's room for updates (-1: the
    default), and whether every bulk build uses palettes; tests run small
    tables and a full arena this way.  Returns the previous triple."""
    global _root4_min, _root4_slack, _root4_palettes
    old = (_root4_min, _root4_slack, _root4_palettes)
    _root4_min = min_nonempty
    _root4_slack = slack
    _root4_palettes = palettes
    return old


rule_dtype = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("nh", "<u4"), ("len", "u1"),
                       ("pad", "u1", (3,))])
assert rule_dtype.itemsize == sizeof(lpm_rule_t)

# The named offsets as compiled, for tests/test_lpm_layout.py (which also
# decodes built chunks with them).
LAYOUT4 = {
    "starts": STARTS, "n16_runs": N16_RUNS, "n16_leaf": N16_LEAF,
    "n16_dflt": N16_DFLT, "wide_dflt": WIDE_DFLT,
    "n8_runs": N8_RUNS, "n8_leaf": N8_LEAF, "root_dist": ROOT_DIST, "root_kids": ROOT_KIDS,
    "wide_table": WIDE_TABLE, "wide_slots": WIDE_SLOTS,
    "flag_wide": H_WIDE, "flag_leaf16": H_LEAF16, "flag_palette": H_PALETTE, "flags": H_FLAGS,
    "child8": CHILD8, "child16": CHILD, "ptr_mask": PTR_MASK,
}


# --------------------------------------------------------------------------
# IPv4 chunk builder
# --------------------------------------------------------------------------
# Chunks are built from one /16's rules (sorted by prefix, then length, so a
# covering rule comes before the rules it covers) into an lpm_buf_t, then
# copied to their place: a block of their own (an update) or the bulk region.

cdef inline uint32_t _rule_byte(const lpm_rule_t *r, int d) noexcept nogil:
    # the address byte of an IPv4 rule at bit depth d (16: bits 16..23)
    return <uint32_t>((r.hi >> (56 - d)) & 255)


cdef int _node_slots(const lpm_rule_t *rules, size_t n, int d, int lo_len,
                     uint32_t inherit, uint32_t *slots, uint32_t *ch_s, uint32_t *ch_e,
                     uint32_t *ch_inh) noexcept nogil:
    """Leaf-push rules (sorted, all inside the node at bit depth d; those
    shorter than lo_len belong to ancestors) into the node's 256 slots: the
    nh of the longest rule of length <= d + 8 covering each slot, or
    CHILD + k for the k-th slot holding longer rules (rules[ch_s[k]:ch_e[k]],
    inheriting ch_inh[k]).  Returns the number of children."""
    cdef uint16_t ch_byte[256]
    cdef int nch = 0, p, ci, has_long
    cdef size_t k = 0, g
    cdef uint32_t bb, cnt, q
    cdef const lpm_rule_t *r
    for p in range(256):
        slots[p] = inherit
    while k < n:
        bb = _rule_byte(&rules[k], d)
        g = k
        has_long = 0
        while g < n and _rule_byte(&rules[g], d) == bb:
            r = &rules[g]
            if r.len >= lo_len:
                if r.len <= d + 8:
                    cnt = (<uint32_t>1) << (d + 8 - r.len)
                    for q in range(bb, bb + cnt):
                        slots[q] = r.nh
                else:
                    has_long = 1
            g += 1
        if has_long:
            ch_byte[nch] = <uint16_t>bb
            ch_s[nch] = <uint32_t>k
            ch_e[nch] = <uint32_t>g
            nch += 1
        k = g
    for ci in range(nch):
        ch_inh[ci] = slots[ch_byte[ci]]
        slots[ch_byte[ci]] = CHILD + ci
    return nch


cdef uint32_t _node_runs(const uint32_t *slots, uint64_t *bm, uint16_t *leaves) noexcept nogil:
    """The runs of equal leaves: bm gets a bit where one starts, leaves one
    leaf per run.  Returns the number of runs."""
    cdef uint32_t nruns = 0
    cdef int p
    bm[0] = bm[1] = bm[2] = bm[3] = 0
    for p in range(256):
        if p == 0 or slots[p] != slots[p - 1]:
            bm[p >> 6] |= (<uint64_t>1) << (p & 63)
            leaves[nruns] = <uint16_t>slots[p]
            nruns += 1
    return nruns


cdef void _write_node16(char *nd, const uint64_t *bm, const uint16_t *leaves,
                        uint32_t nruns) noexcept nogil:
    # a 16-bit node at nd (room for N16_LEAF + 2 * nruns bytes, zeroed)
    cdef uint32_t q = 0
    cdef int w
    memcpy(nd + STARTS, bm, 4 * sizeof(uint64_t))
    for w in range(4):
        (<uint16_t *>(nd + N16_RUNS))[w] = <uint16_t>q
        q += kdp_popcnt(bm[w])
    memcpy(nd + N16_LEAF, leaves, nruns * 2)


cdef ssize_t _build_child4(lpm_buf_t *b, size_t chunk0, const lpm_rule_t *rules, size_t n,
                           uint32_t inherit) noexcept nogil:
    """Append the child node (bits 24..31) for rules longer than /24 under one
    slot of a root node at offset chunk0.  Returns its offset from chunk0, or
    -1 when out of memory."""
    cdef uint32_t slots[256]
    cdef uint32_t ch_s[256]
    cdef uint32_t ch_e[256]
    cdef uint32_t ch_inh[256]
    cdef uint16_t leaves[256]
    cdef uint64_t bm[4]
    cdef size_t start
    cdef uint32_t nruns
    _node_slots(rules, n, 24, 25, inherit, slots, ch_s, ch_e, ch_inh)   # no children at /32
    nruns = _node_runs(slots, bm, leaves)
    if _buf_reserve(b, N16_LEAF + nruns * 2, 8, &start) < 0:
        return -1
    _write_node16(b.p + start, bm, leaves, nruns)
    return <ssize_t>(start - chunk0)


cdef int _build_root4(lpm_buf_t *b, const lpm_rule_t *rules, size_t n, size_t blk,
                      int leaf8, int dflt, size_t *off) noexcept nogil:
    """Append the root node (bits 16..23) of one /16's rules, preceded by its
    child offsets and its distance from blk (the start of the allocation),
    then its children.  leaf8: LEAF8_DIRECT or LEAF8_PALETTE for 8-bit leaves
    where they fit, 0 for 16-bit leaves.  dflt >= 0 (tables with a 4-byte
    root, whose 8-bit roots all have palettes): the /16's default, kept in the
    node (palette entry 0; N16_DFLT of a 16-bit node).  off = the node's
    offset.  Returns the handle flags (H_LEAF16, H_PALETTE or 0), or -1 when out of
    memory."""
    cdef uint32_t slots[256]
    cdef uint32_t ch_s[256]
    cdef uint32_t ch_e[256]
    cdef uint32_t ch_inh[256]
    cdef uint16_t leaves[256]
    cdef uint16_t pal[256]
    cdef uint8_t idx8[256]
    cdef uint64_t bm[4]
    cdef int nch, ci, w, leaf16
    cdef uint32_t nruns, r, q, npal, j, lv, pbytes
    cdef size_t node, start, size
    cdef ssize_t co
    cdef char *nd
    nch = _node_slots(rules, n, 16, 16, 0, slots, ch_s, ch_e, ch_inh)
    nruns = _node_runs(slots, bm, leaves)
    # 8-bit leaves where they fit: a leaf is 0 (the /16 default), names a
    # child (CHILD8 + k), or is the next-hop index itself (leaf8 == LEAF8_DIRECT:
    # a table of fewer than CHILD8 next hops) or an index into the node's
    # palette of next-hop indices (LEAF8_PALETTE: more; a /16 of a FIB holds a
    # few distinct next hops even when the table holds thousands, so nearly
    # every chunk fits and the lookup's width branch predicts).  The table
    # chooses, not each chunk, so that the palette branch predicts too.
    pal[0] = <uint16_t>dflt if dflt >= 0 else 0
    npal = 0
    leaf16 = not leaf8 or nch > 0x100 - CHILD8
    for r in range(nruns):
        lv = leaves[r]
        if lv == 0:
            idx8[r] = 0
        elif lv >= CHILD:
            idx8[r] = <uint8_t>(CHILD8 + lv - CHILD)
        elif leaf8 == LEAF8_DIRECT:
            if lv >= CHILD8:
                leaf16 = 1
                break
            idx8[r] = <uint8_t>lv
        else:
            j = 1
            while j <= npal and pal[j] != lv:
                j += 1
            if j > npal:
                if npal + 1 >= CHILD8:
                    leaf16 = 1
                    break
                npal = j
                pal[j] = <uint16_t>lv
            idx8[r] = <uint8_t>j
    pbytes = 2 * (npal + 1) if leaf8 == LEAF8_PALETTE else 0
    if pbytes + nruns > 0x100:             # run counts + the palette's bytes fit 8 bits
        leaf16 = 1
    # in front of the node: one uint32 offset per child and the uint32 distance
    if leaf16:
        # the child node format, 8-byte aligned: 16-bit leaves rarely fit one
        # line, and packing measured faster than line alignment for them
        size = N16_LEAF + 2 * nruns
        node = (b.n + 4 * <size_t>nch + 4 + 7) & ~(<size_t>7)
    else:
        # as few cache lines as its size allows: no more line boundaries
        # inside than needed (a line of padding at most)
        size = N8_LEAF + pbytes + nruns
        node = (b.n + 4 * <size_t>nch + 4 + 7) & ~(<size_t>7)
        if (node & 63) + size > ((size + 63) & ~(<size_t>63)):
            node = (node + 63) & ~(<size_t>63)
    if _buf_reserve(b, node - b.n + size, 1, &start) < 0:
        return -1
    nd = b.p + node
    if leaf16:
        _write_node16(nd, bm, leaves, nruns)
        if dflt >= 0:
            (<uint16_t *>(nd + N16_DFLT))[0] = <uint16_t>dflt
    else:
        # a palette (uint16, entry 0 = 0) at N8_LEAF, the leaves after it;
        # the run counts include the palette's bytes, so the leaf is read at
        # N8_LEAF - 1 + runs[w] + popcount, as if the leaves started there
        memcpy(nd + STARTS, bm, 4 * sizeof(uint64_t))
        q = pbytes
        for w in range(4):
            (<uint8_t *>(nd + N8_RUNS))[w] = <uint8_t>q
            q += kdp_popcnt(bm[w])
        memcpy(nd + N8_LEAF, pal, pbytes)
        memcpy(nd + N8_LEAF + pbytes, idx8, nruns)
    (<uint32_t *>(nd + ROOT_DIST))[0] = <uint32_t>(node - blk)
    for ci in range(nch):
        co = _build_child4(b, node, rules + ch_s[ci], ch_e[ci] - ch_s[ci], ch_inh[ci])
        if co < 0:
            return -1
        (<uint32_t *>(b.p + node + ROOT_KIDS))[-ci] = <uint32_t>co
    off[0] = node
    return H_LEAF16 if leaf16 else (H_PALETTE if leaf8 == LEAF8_PALETTE else 0)


cdef int _build_chunk4(lpm_buf_t *b, const lpm_rule_t *rules, size_t n, size_t *off,
                       int with_size, int leaf8, int dflt) noexcept nogil:
    """Append one chunk for the rules of one /16: an 8-byte header (the
    block's size; only for chunks allocated on their own, which are freed one
    by one), then the root node and its children (_build_root4).  off = the
    handle's offset: the root node's | its flags."""
    cdef size_t hdr = b.n
    cdef size_t node
    cdef int flags
    if with_size and _buf_reserve(b, sizeof(uint64_t), 64, &hdr) < 0:
        return -1
    flags = _build_root4(b, rules, n, hdr, leaf8, dflt, &node)
    if flags < 0:
        return -1
    off[0] = node | <size_t>flags
    if with_size:
        (<uint64_t *>(b.p + hdr))[0] = b.n - hdr
    return 0


cdef void _write_empty4(char *nd, uint16_t d) noexcept nogil:
    """An empty chunk for the 4-byte root at nd (64 zeroed bytes, a line): an
    8-bit root node of one run (slot 0) whose leaf 0 indexes palette entry 0,
    the /16's default d.  runs_before counts the palette's 2 bytes, and the
    run of slot 0 for words 1..3."""
    (<uint64_t *>(nd + STARTS))[0] = 1
    (<uint8_t *>(nd + N8_RUNS))[0] = 2
    (<uint8_t *>(nd + N8_RUNS))[1] = 3
    (<uint8_t *>(nd + N8_RUNS))[2] = 3
    (<uint8_t *>(nd + N8_RUNS))[3] = 3
    (<uint16_t *>(nd + N8_LEAF))[0] = d


cdef inline char *_block4(char *c) noexcept nogil:
    """Start of the allocation holding the IPv4 chunk whose handle (root entry
    pointer bits) is c."""
    cdef char *nd = <char *>((<uintptr_t>c) & ~(<uintptr_t>H_FLAGS))
    if (<uintptr_t>c) & H_WIDE:
        return nd - WIDE_TABLE
    return nd - (<uint32_t *>(nd + ROOT_DIST))[0]


cdef enum:
    WIDE_EMPTY_BELOW = 4096   # a bulk-built IPv4 table with fewer non-empty /16s uses
                              # the wide empty chunk (its lookups all take one path)
    WIDE_MIN = 24             # an IPv4 /16 with this many rules longer than /24 is built wide


cdef int _build_wide4(lpm_buf_t *b, const lpm_rule_t *rules, size_t n, size_t *off,
                      int dflt) noexcept nogil:
    """Append a wide IPv4 chunk (a direct table of 65,536 uint16 leaves for bits
    16..31) one line after an 8-byte size header (and, dflt >= 0, the /16's
    default at WIDE_DFLT); off = the handle's offset (the table's | H_WIDE)."""
    cdef size_t hdr, i, q, s0
    cdef uint32_t cnt
    cdef uint16_t *slots
    if _buf_reserve(b, WIDE_TABLE + 2 * WIDE_SLOTS, 64, &hdr) < 0:
        return -1
    slots = <uint16_t *>(b.p + hdr + WIDE_TABLE)
    for i in range(n):                     # sorted: covering rules come first
        s0 = <size_t>((rules[i].hi >> 32) & 0xFFFF)
        cnt = (<uint32_t>1) << (32 - rules[i].len)
        for q in range(s0, s0 + cnt):
            slots[q] = <uint16_t>rules[i].nh
    (<uint64_t *>(b.p + hdr))[0] = b.n - hdr
    if dflt >= 0:
        (<uint16_t *>(b.p + hdr + WIDE_TABLE + WIDE_DFLT))[0] = <uint16_t>dflt
    off[0] = hdr + WIDE_TABLE + H_WIDE
    return 0


cdef inline int _wants_wide4(const lpm_rule_t *rules, size_t n) noexcept nogil:
    # many rules longer than /24: a wide chunk (one load per lookup)
    cdef size_t i, k = 0
    for i in range(n):
        if rules[i].len > 24:
            k += 1
    return k >= WIDE_MIN


cdef int _build_any4(lpm_buf_t *b, const lpm_rule_t *rules, size_t n, size_t *off,
                     int with_size, int leaf8, int dflt) noexcept nogil:
    # the chunk of one /16's rules in the form that suits them: wide or a trie
    # (dflt >= 0: the /16's default kept in it, for the 4-byte root)
    if _wants_wide4(rules, n):
        return _build_wide4(b, rules, n, off, dflt)
    return _build_chunk4(b, rules, n, off, with_size, leaf8, dflt)


# --------------------------------------------------------------------------
# the rule list
# --------------------------------------------------------------------------

cdef inline int _rule_cmp(uint64_t hi, uint64_t lo, uint8_t ln,
                          const lpm_rule_t *r) noexcept nogil:
    # the rule list's order: by prefix (hi, lo), then length (covering rules first)
    if hi != r.hi:
        return -1 if hi < r.hi else 1
    if lo != r.lo:
        return -1 if lo < r.lo else 1
    if ln != r.len:
        return -1 if ln < r.len else 1
    return 0


cdef ssize_t _find_rule(const lpm_bucket_t *bk, uint64_t hi, uint64_t lo, uint8_t ln,
                        int *found) noexcept nogil:
    """Index of the rule, or of where it would go (binary search)."""
    cdef ssize_t a = 0, z = bk.n, m
    cdef int c
    while a < z:
        m = (a + z) >> 1
        c = _rule_cmp(hi, lo, ln, &bk.r[m])
        if c == 0:
            found[0] = 1
            return m
        if c > 0:
            a = m + 1
        else:
            z = m
    found[0] = 0
    return a


cdef int _bucket_reserve(lpm_bucket_t *bk, uint32_t need) noexcept nogil:
    # make the bucket own its rules (a bulk build lends it a slice of one
    # array) with room for `need`
    cdef uint32_t cap
    cdef lpm_rule_t *q
    if bk.cap >= need and bk.cap != 0:
        return 0
    cap = bk.cap if bk.cap else 4
    while cap < need or cap < bk.n:
        cap *= 2
    q = <lpm_rule_t *>malloc(cap * sizeof(lpm_rule_t))
    if q == NULL:
        return -1
    if bk.n:
        memcpy(q, bk.r, bk.n * sizeof(lpm_rule_t))
    if bk.cap:
        free(bk.r)
    bk.r = q
    bk.cap = cap
    return 0


cdef void _fill_defaults(const lpm_bucket_t *sh, uint32_t h0, uint32_t h1,
                         uint16_t *dflt) noexcept nogil:
    """dflt[h - h0] = nh of the longest short rule covering /16 number h."""
    cdef uint32_t i, rs, re, s, e
    cdef const lpm_rule_t *r
    for i in range(h1 - h0):
        dflt[i] = 0
    for i in range(sh.n):          # sorted: covering rules come first
        r = &sh.r[i]
        rs = <uint32_t>(r.hi >> 48)
        re = rs + ((<uint32_t>1) << (16 - r.len))
        s = rs if rs > h0 else h0
        e = re if re < h1 else h1
        while s < e:
            dflt[s - h0] = <uint16_t>r.nh
            s += 1


# --------------------------------------------------------------------------
# the table: what both families share
# --------------------------------------------------------------------------


def _distinct(values):
    """How many distinct values an array holds. Not np.unique: its plain form imports
    numpy.ma (6-13 ms of every replay's start-up, for one count)."""
    if values.shape[0] == 0:
        return 0
    s = np.sort(values)
    return int(np.count_nonzero(s[1:] != s[:-1])) + 1


cdef class _LpmBase:
    """Shared machinery of Lpm4 and Lpm6 (see the module docstring): the root,
    the rule list, bulk builds, epoch-based reclamation.  Abstract: a family
    defines the hooks (chunk form, static chunks, how one /16 is rebuilt)."""

    def __cinit__(self, *args, **kwargs):
        if type(self) is _LpmBase:
            raise TypeError("_LpmBase is abstract: use Lpm4 or Lpm6")
        self.root = <lpm_root_t *>kdp_map(sizeof(lpm_root_t))
        self.ep = <lpm_epoch_t *>kdp_alloc64(sizeof(lpm_epoch_t))
        self.buckets = <lpm_bucket_t *>malloc(65536 * sizeof(lpm_bucket_t))
        if self.root == NULL or self.ep == NULL or self.buckets == NULL:
            raise MemoryError()
        memset(self.ep, 0, sizeof(lpm_epoch_t))
        memset(self.buckets, 0, 65536 * sizeof(lpm_bucket_t))
        memset(&self.shorts, 0, sizeof(lpm_bucket_t))
        self.next_nh = 1
        self._nh_of = {}
        self._arena_free = {}
        self._empty4 = {}
        self._retired_old = []
        self._retired_new = []
        self._wlock = threading.Lock()
        # the family's __cinit__ (run next) sets bits and empty, then _init_root

    cdef void _init_root(self, lpm_root_t *rt) noexcept nogil:
        cdef uint64_t e = self.empty
        cdef int i
        for i in range(65536):
            rt.t0[i] = e
        memset(rt.nh_value, 0xFF, sizeof(rt.nh_value))
        memset(rt.t4, 0, sizeof(rt.t4))
        rt.base4 = NULL

    def __dealloc__(self):
        cdef int i
        cdef lpm_root_t *rt = self.root
        if rt != NULL:
            for i in range(65536):
                self._free_chunk(<char *>(<uintptr_t>(rt.t0[i] & PTR_MASK)))
            kdp_unmap(rt, sizeof(lpm_root_t))
            self.root = NULL
        if self._retired_old is not None:
            for item in self._retired_old + self._retired_new:
                self._free_garbage(item)
        kdp_unmap(self.region_base, self.region_map)
        self.region_base = NULL
        if self.buckets != NULL:
            for i in range(65536):
                if self.buckets[i].cap:
                    free(self.buckets[i].r)
            free(self.buckets)
            self.buckets = NULL
        if self.shorts.cap:
            free(self.shorts.r)
        free(self.ep)
        self.ep = NULL

    # ---- family hooks (abstract: Lpm4 and Lpm6 define them; lpm.pxd says what
    # each does; never called on the base, which cannot be created) ------------
    cdef bint _is_static(self, const char *c) noexcept nogil:
        return False

    cdef char *_block_of(self, char *c) noexcept nogil:
        return NULL

    cdef int _build_bulk_chunk(self, lpm_buf_t *b, const lpm_rule_t *rules, size_t n,
                               size_t *off, int leaf8, int dflt) noexcept nogil:
        return -1

    cdef void _place_bulk_chunk(self, char *c) noexcept nogil:
        pass

    cdef uint64_t _bulk_empty(self, size_t nonempty) noexcept nogil:
        return self.empty

    cdef _refresh_chunk(self, uint32_t h):
        raise NotImplementedError("_refresh_chunk")

    # ---- readers ---------------------------------------------------------
    cdef int _enter(self) noexcept nogil:
        return kdp_ep_enter(&self.ep.epoch, self.ep.active)

    cdef void _leave(self, int slot) noexcept nogil:
        kdp_ep_leave(self.ep.active, slot)

    # ---- memory reclamation ---------------------------------------------
    cdef bint _is_shared(self, char *c):
        # a chunk not allocated on its own: static, or in the bulk region's
        # mapping (bulk-built, or carved from its arena: freed with it)
        if self._is_static(c):
            return True
        if self.region_base != NULL and c >= self.region_base and c < self.region_base + self.region_map:
            return True
        return False

    cdef void _free_chunk(self, char *c):
        # (NULL: a root entry of a table whose construction failed)
        if c != NULL and not self._is_shared(c):
            free(self._block_of(c))

    cdef _free_garbage(self, item):
        kind, ptr, size = item
        if kind == 0:
            free(<void *>(<uintptr_t>ptr))
        elif kind == 1:
            kdp_unmap(<void *>(<uintptr_t>ptr), size)

    cdef _retire(self, int kind, uintptr_t ptr, size_t size):
        # kind 0: a malloc'd block; 1: a mapping of `size` bytes
        self._retired_new.append((kind, ptr, size))

    cdef _collect(self):
        """Free garbage no reader can still hold; never waits for readers."""
        cdef uint64_t e = self.ep.epoch
        if not self._retired_old and not self._retired_new:
            return
        if kdp_ld_active(&self.ep.active[(e + 1) & 1]) == 0:
            for item in self._retired_old:
                self._free_garbage(item)
            self._retired_old = self._retired_new
            self._retired_new = []
            kdp_st_epoch(&self.ep.epoch, e + 1)

    def reclaim(self):
        """Free replaced chunks once no reader can hold them (called after every
        write anyway; call it to release memory after the last write).
        Returns how many retired blocks still wait."""
        with self._wlock:
            self._collect()
            self._collect()
            return len(self._retired_old) + len(self._retired_new)

    # ---- next hops ---------------------------------------------------------
    cdef uint32_t _nh_index(self, value) except 0:
        # the next-hop index of a value, assigned on first use
        try:
            value = operator.index(value)
        except TypeError:
            raise KdpError(f"LPM value must be an int, got {value!r}") from None
        nh = self._nh_of.get(value)
        if nh is not None:
            return nh
        if value == MISS or not (0 <= value <= 0xFFFFFFFF):
            raise KdpError(f"LPM value must be an int in 0..0xFFFFFFFE, got {value!r}")
        if self.next_nh >= NH_LIMIT:
            self._rebuild_all()          # compacts next-hop indices
            if self.next_nh >= NH_LIMIT:
                raise KdpError(f"LPM table holds at most {MAX_VALUES} distinct values")
        cdef uint32_t h = self.next_nh
        self.root.nh_value[h] = <uint32_t>value
        self.next_nh += 1
        self._nh_of[value] = h
        return h

    # ---- rule edits ----------------------------------------------------------
    cdef object _edit(self, uint64_t hi, uint64_t lo, int ln, uint32_t nh, int mode):
        """mode 0: upsert nh; 1: replace existing only; 2: delete.  Returns the
        previous nh (0 if none)."""
        cdef lpm_bucket_t *bk
        cdef int found
        cdef ssize_t i
        cdef uint32_t old = 0
        cdef lpm_rule_t *r
        cdef uint32_t h = <uint32_t>(hi >> 48)
        bk = &self.shorts if ln < 16 else &self.buckets[h]
        i = _find_rule(bk, hi, lo, <uint8_t>ln, &found)
        if found:
            old = bk.r[i].nh
            if mode == 2:
                if _bucket_reserve(bk, bk.n) < 0:
                    raise MemoryError()
                memmove(&bk.r[i], &bk.r[i + 1], (bk.n - i - 1) * sizeof(lpm_rule_t))
                bk.n -= 1
                self.n_rules -= 1
            else:
                if old == nh:
                    return old
                if _bucket_reserve(bk, bk.n) < 0:
                    raise MemoryError()
                bk.r[i].nh = nh
        else:
            if mode != 0:
                return 0
            if _bucket_reserve(bk, bk.n + 1) < 0:
                raise MemoryError()
            memmove(&bk.r[i + 1], &bk.r[i], (bk.n - i) * sizeof(lpm_rule_t))
            r = &bk.r[i]
            memset(r, 0, sizeof(lpm_rule_t))
            r.hi = hi
            r.lo = lo
            r.len = <uint8_t>ln
            r.nh = nh
            bk.n += 1
            self.n_rules += 1
        if ln < 16:
            self._refresh_defaults(<uint32_t>(hi >> 48), <uint32_t>(hi >> 48) + ((<uint32_t>1) << (16 - ln)))
        else:
            self._refresh_rule(hi, lo, ln)
        self._collect()
        return old

    cdef _refresh_rule(self, uint64_t hi, uint64_t lo, int ln):
        """Bring the lookup structure up to date after rule (hi, lo, ln), ln >=
        16, changed in the rule list: rebuild its /16's chunk (Lpm6 does less)."""
        self._refresh_chunk(<uint32_t>(hi >> 48))

    cdef _refresh_defaults(self, uint32_t h0, uint32_t h1):
        # the defaults packed into root entries h0..h1-1, after a short rule changed
        cdef uint16_t *d = <uint16_t *>malloc((h1 - h0) * 2)
        cdef uint32_t h
        cdef uint64_t e
        if d == NULL:
            raise MemoryError()
        _fill_defaults(&self.shorts, h0, h1, d)
        for h in range(h0, h1):
            e = self.root.t0[h]
            if (e >> 48) != d[h - h0]:
                kdp_st64(&self.root.t0[h], (e & PTR_MASK) | (<uint64_t>d[h - h0] << 48))
        free(d)

    # ---- bulk build ----------------------------------------------------------
    cdef _load_sorted(self, object rules_, object nhv_, dict nh_of):
        """Publish a new table built from `rules` (rule_dtype, sorted by hi, lo,
        len, unique, nh assigned) and its next-hop value table `nhv`.  Everything
        is built aside (without the GIL), then swapped in with one pointer store."""
        cdef cnp.ndarray rules = rules_
        cdef cnp.ndarray nhv = nhv_
        cdef size_t n = rules.shape[0]
        cdef lpm_root_t *rt = <lpm_root_t *>kdp_map(sizeof(lpm_root_t))
        cdef lpm_bucket_t *bks = <lpm_bucket_t *>malloc(65536 * sizeof(lpm_bucket_t))
        cdef lpm_bucket_t sh
        cdef size_t *offs = <size_t *>malloc(65536 * sizeof(size_t))
        cdef uint16_t *dflt = <uint16_t *>malloc(65536 * 2)
        cdef lpm_rule_t *rr = NULL
        cdef lpm_buf_t b
        cdef size_t i, j, nshort = 0, nlong = 0
        cdef uint32_t h
        cdef int err = 0
        cdef char *reg = NULL
        cdef char *regbase = NULL
        cdef size_t regmap = 0
        cdef uint64_t ptr
        cdef uintptr_t HP = (<uintptr_t>2) << 20
        cdef uint64_t emp = self.empty
        cdef size_t nne
        cdef int leaf8 = LEAF8_DIRECT                # (the root nodes' leaves: _build_root4)
        cdef int leaf8_many = self.leaf8_many
        cdef int use4 = 0                            # a 4-byte root (module docstring)
        cdef uint32_t *eoff = NULL                   # 4-byte root: default -> its empty chunk
        cdef size_t slack = 0
        cdef int eflag = 0
        b.p = NULL
        b.n = b.cap = 0
        memset(&sh, 0, sizeof(sh))
        longs = rules
        if self.bits == 32 and n:
            # With CHILD8 or more next hops, palettes pay where a /16 holds few
            # distinct ones (a FIB: neighbours alike; 30% distinct (/16, value)
            # pairs in the bench's BGP table); where nearly every rule of a /16
            # has its own (route ids drawn at random), 16-bit leaves are smaller.
            lr = rules[rules["len"] >= 16]
            pairs = _distinct(((lr["hi"] >> np.uint64(48)) << np.uint64(32))
                              | lr["nh"].astype(np.uint64))
            leaf8_many = LEAF8_PALETTE if 2 * pairs <= lr.shape[0] else 0
            if len(nh_of) >= CHILD8:
                leaf8 = leaf8_many
            if _root4_palettes:
                leaf8 = leaf8_many = LEAF8_PALETTE
        if self.bits == 32:
            eoff = <uint32_t *>malloc(65536 * sizeof(uint32_t))
        if rt == NULL or bks == NULL or offs == NULL or dflt == NULL or (self.bits == 32 and eoff == NULL):
            err = 1
        else:
            lens = rules["len"]
            is_short = lens < 16
            nshort = int(np.count_nonzero(is_short))
            if nshort:
                shorts = np.ascontiguousarray(rules[is_short])
                longs = np.ascontiguousarray(rules[~is_short])
            nlong = n - nshort
            if nlong:
                rr = <lpm_rule_t *>cnp.PyArray_DATA(longs)
            memset(bks, 0, 65536 * sizeof(lpm_bucket_t))
            if nshort:
                sh.r = <lpm_rule_t *>malloc(nshort * sizeof(lpm_rule_t))
                if sh.r == NULL:
                    err = 1
                else:
                    sh.n = sh.cap = <uint32_t>nshort
                    memcpy(sh.r, cnp.PyArray_DATA(shorts), nshort * sizeof(lpm_rule_t))
        if not err:
            with nogil:
                self._init_root(rt)
                memcpy(rt.nh_value, cnp.PyArray_DATA(nhv), sizeof(rt.nh_value))
                _fill_defaults(&sh, 0, 65536, dflt)
                if self.bits == 32:
                    nne = 0
                    for i in range(1, nlong):
                        if (rr[i].hi >> 48) != (rr[i - 1].hi >> 48):
                            nne += 1
                    use4 = nlong > 0 and nne + 1 >= _root4_min and leaf8 == LEAF8_PALETTE
                i = 0
                while i < nlong and not err:
                    h = <uint32_t>(rr[i].hi >> 48)
                    j = i
                    while j < nlong and <uint32_t>(rr[j].hi >> 48) == h:
                        j += 1
                    bks[h].r = rr + i
                    bks[h].n = <uint32_t>(j - i)
                    if self._build_bulk_chunk(&b, rr + i, j - i, &offs[h], leaf8,
                                              dflt[h] if use4 else -1) < 0:
                        err = 1
                    i = j
                if use4 and not err:
                    # one empty chunk per distinct default of the empty /16s
                    eflag = H_PALETTE
                    memset(eoff, 0xFF, 65536 * sizeof(uint32_t))
                    for h in range(65536):
                        if bks[h].n == 0 and eoff[dflt[h]] == <uint32_t>0xFFFFFFFF:
                            if _buf_reserve(&b, 64, 64, &j) < 0:
                                err = 1
                                break
                            _write_empty4(b.p + j, dflt[h])
                            eoff[dflt[h]] = <uint32_t>j
                    # room for later updates' chunks (address space: pages
                    # untouched until used); offsets must fit 32 bits
                    slack = b.n + (4 << 20) if _root4_slack < 0 else <size_t>_root4_slack
                    if b.n + slack >= (<size_t>1 << 32):
                        use4 = 0
                        slack = 0
                if not err and b.n:
                    regmap = b.n + slack + HP + 4096
                    regbase = <char *>kdp_map(regmap)
                    if regbase == NULL:
                        err = 1
                    else:
                        reg = <char *>((<uintptr_t>regbase + (HP - 1)) & ~(HP - 1))
                        memcpy(reg, b.p, b.n)
                        for h in range(65536):
                            if bks[h].n:
                                self._place_bulk_chunk(reg + offs[h])
                if not err:
                    nne = 0
                    for h in range(65536):
                        if bks[h].n:
                            nne += 1
                    emp = self._bulk_empty(nne)
                    if emp == <uint64_t>(<uintptr_t>kdp_empty_chunk) and leaf8 == LEAF8_PALETTE:
                        # (the same static chunk, flagged: the palette branch keeps predicting)
                        emp = <uint64_t>(<uintptr_t>kdp_empty_chunk_palette)
                    for h in range(65536):
                        ptr = emp
                        if bks[h].n:
                            ptr = <uint64_t>(<uintptr_t>(reg + offs[h]))
                        rt.t0[h] = ptr | (<uint64_t>dflt[h] << 48)
                    if use4:
                        for h in range(65536):
                            rt.t4[h] = <uint32_t>offs[h] if bks[h].n else (eoff[dflt[h]] | <uint32_t>eflag)
                        rt.base4 = reg
        free(b.p)
        free(offs)
        free(dflt)
        empty4 = {}
        if use4 and not err:
            ea = np.asarray(<uint32_t[:65536]>eoff)
            for d in np.flatnonzero(ea != 0xFFFFFFFF).tolist():
                empty4[d] = int(ea[d]) | eflag
        free(eoff)
        if err:
            if rt != NULL:
                kdp_unmap(rt, sizeof(lpm_root_t))
            free(bks)
            if sh.cap:
                free(sh.r)
            kdp_unmap(regbase, regmap)
            raise MemoryError("LPM build ran out of memory")
        self._publish(rt, bks, sh, longs, reg, b.n, regbase, regmap, n)
        self.empty = emp
        self.leaf8_many = leaf8_many
        self._empty4 = empty4
        self.empty4_flag = eflag
        self._arena_free = {}
        self.arena_used = (b.n + 63) & ~(<size_t>63) if use4 else 0
        self.arena_cap = b.n + slack if use4 else 0
        self._nh_of = nh_of
        self.next_nh = len(nh_of) + 1

    cdef _publish(self, lpm_root_t *rt, lpm_bucket_t *bks, lpm_bucket_t sh, object bulk,
                  char *reg, size_t regsize, char *regbase, size_t regmap, size_t n):
        # swap in a bulk-built root (and its rule list and region)
        cdef lpm_root_t *old = self.root
        cdef int i
        cdef char *c
        kdp_stptr(<void **>&self.root, rt)
        # retire everything the old root referenced (after readers leave)
        for i in range(65536):
            c = <char *>(<uintptr_t>(old.t0[i] & PTR_MASK))
            if not self._is_shared(c):
                self._retire(0, <uintptr_t>self._block_of(c), 0)
        self._retire(1, <uintptr_t>old, sizeof(lpm_root_t))
        if self.region_base != NULL:
            self._retire(1, <uintptr_t>self.region_base, self.region_map)
        for i in range(65536):
            if self.buckets[i].cap:
                free(self.buckets[i].r)
        free(self.buckets)
        if self.shorts.cap:
            free(self.shorts.r)
        self.buckets = bks
        self.shorts = sh
        self._bulk = bulk
        self.region = reg
        self.region_size = regsize
        self.region_base = regbase
        self.region_map = regmap
        self.chunk_bytes = regsize
        self.n_rules = n
        self._collect()

    cdef object _export(self):
        """All rules (rule_dtype), sorted by (hi, lo, len)."""
        cdef cnp.ndarray out = np.zeros(self.n_rules, rule_dtype)
        cdef char *o = <char *>cnp.PyArray_DATA(out)
        cdef size_t k = 0
        cdef int h
        cdef lpm_bucket_t *bk
        # shorts and buckets interleave in sort order; sort at the end
        if self.shorts.n:
            memcpy(o, self.shorts.r, self.shorts.n * sizeof(lpm_rule_t))
            k = self.shorts.n
        for h in range(65536):
            bk = &self.buckets[h]
            if bk.n:
                memcpy(o + k * sizeof(lpm_rule_t), bk.r, bk.n * sizeof(lpm_rule_t))
                k += bk.n
        if self.shorts.n:
            out = out[np.lexsort((out["len"], out["lo"], out["hi"]))]
        return out

    cdef _prepare_and_load(self, hi, lo, lens, values):
        """Validate/mask/sort/dedupe (last wins) numpy columns, map values to
        next-hop indices, build and publish."""
        cdef int bits = self.bits
        lens = np.asarray(lens)
        values = np.asarray(values)
        n = hi.shape[0]
        if lens.shape != (n,) or values.shape != (n,) or lo.shape != (n,):
            raise KdpError("prefixes, lengths and values must have the same length")
        if n and (lens.min() < 0 or lens.max() > bits):
            raise KdpError(f"prefix length must be 0..{bits}")
        if n and (values.min() < 0 or values.max() >= MISS):
            raise KdpError("LPM values must be in 0..0xFFFFFFFE")
        ln = lens.astype(np.uint8)
        values = values.astype(np.uint32)
        hi, lo = _mask(hi, lo, ln)
        if bits == 32:
            order = np.argsort(hi | ln.astype(np.uint64), kind="stable")
        else:
            order = np.lexsort((ln, lo, hi))
        hi = hi[order]
        lo = lo[order]
        ln = ln[order]
        values = values[order]
        if n > 1:
            keep = np.ones(n, bool)
            keep[:-1] = (hi[:-1] != hi[1:]) | (lo[:-1] != lo[1:]) | (ln[:-1] != ln[1:])
            if not keep.all():
                hi, lo, ln, values = hi[keep], lo[keep], ln[keep], values[keep]
        uniq, inv = np.unique(values, return_inverse=True)
        if uniq.shape[0] > MAX_VALUES:
            raise KdpError(f"LPM table holds at most {MAX_VALUES} distinct values, "
                           f"got {uniq.shape[0]}")
        rules = np.zeros(hi.shape[0], rule_dtype)
        rules["hi"] = hi
        rules["lo"] = lo
        rules["len"] = ln
        rules["nh"] = inv.astype(np.uint32).reshape(-1) + 1
        nhv = np.full(65536, MISS, np.uint32)
        nhv[1:uniq.shape[0] + 1] = uniq
        nh_of = dict(zip(uniq.tolist(), range(1, uniq.shape[0] + 1)))
        self._load_sorted(rules, nhv, nh_of)

    cdef _rebuild_all(self):
        # a bulk build from the rule list (compacts next-hop indices too)
        r = self._export()
        cdef lpm_root_t *rt = self.root
        vals = np.asarray(<uint32_t[:65536]>rt.nh_value)[r["nh"]]
        self._prepare_and_load(r["hi"], r["lo"], r["len"], vals)

    # ---- Python API shared by both families ------------------------------------
    def __len__(self):
        return self.n_rules

    def rebuild(self):
        """Recompile every chunk from the rule list and swap it in whole
        (also compacts next-hop indices and memory after many edits)."""
        with self._wlock:
            self._rebuild_all()

    def memory(self):
        """Bytes used: root (top-16-bit table + value table, + the 4-byte
        root where the table has one: root4), chunks (the trie), rules (the
        rule list); lookup = root + chunks, batch = what batch lookups read
        (the 4-byte root instead of the 8-byte one where there is one)."""
        cdef size_t t4 = sizeof(self.root.t4) if self.root.base4 != NULL else 0
        rules = self.n_rules * sizeof(lpm_rule_t)
        d = {"root": sizeof(self.root.t0) + sizeof(self.root.nh_value) + t4,
             "root4": t4, "chunks": self.chunk_bytes, "rules": rules}
        d["lookup"] = d["root"] + d["chunks"]
        # what batch lookups read: the 4-byte root instead of t0 where there is one
        d["batch"] = d["lookup"] - (sizeof(self.root.t0) if t4 else 0)
        d["total"] = d["lookup"] + rules
        return d

    def _root_addresses(self):
        """(address of the root entries, address of the value table) of the
        published root, for tests that read the table's memory by the
        documented layout (tests/test_lpm_layout.py).  Valid until the next
        write."""
        return <uintptr_t>&self.root.t0[0], <uintptr_t>&self.root.nh_value[0]

    def _root4_addresses(self):
        """(address of the 4-byte root entries, the arena base they are
        offsets from; 0 without a 4-byte root), for the layout tests.  Valid
        until the next write."""
        return <uintptr_t>&self.root.t4[0], <uintptr_t>self.root.base4

    cdef _get_rule(self, uint64_t hi, uint64_t lo, int ln):
        # the value of rule (hi, lo, ln), or None
        cdef lpm_bucket_t *bk = &self.shorts if ln < 16 else &self.buckets[hi >> 48]
        cdef int found
        cdef ssize_t i = _find_rule(bk, hi, lo, <uint8_t>ln, &found)
        if not found:
            return None
        return self.root.nh_value[bk.r[i].nh]

    cdef _do_insert(self, uint64_t hi, uint64_t lo, int ln, value, int mode):
        # insert (mode 0) or replace (1) under the writers' lock; the previous value
        with self._wlock:
            if mode == 1 and self._get_rule(hi, lo, ln) is None:
                raise KeyError("no such prefix")
            prev = self._get_rule(hi, lo, ln)
            nh = self._nh_index(value)
            self._edit(hi, lo, ln, nh, mode)
            return prev

    cdef _do_delete(self, uint64_t hi, uint64_t lo, int ln):
        # delete under the writers' lock; the previous value or None
        with self._wlock:
            prev = self._get_rule(hi, lo, ln)
            if prev is None:
                return None
            self._edit(hi, lo, ln, 0, 2)
            return prev


def _mask(hi, lo, ln):
    """Clear host bits: hi/lo uint64 arrays, ln uint8 lengths (0..128 bit view
    where hi holds bits 0..63)."""
    hi = np.asarray(hi, np.uint64)
    lo = np.asarray(lo, np.uint64)
    L = ln.astype(np.int64)
    ones = np.uint64(0xFFFFFFFFFFFFFFFF)
    sh_hi = np.clip(64 - L, 0, 63).astype(np.uint64)
    mhi = np.where(L >= 64, ones, np.where(L == 0, np.uint64(0), ~((np.uint64(1) << sh_hi) - np.uint64(1))))
    sh_lo = np.clip(128 - L, 0, 63).astype(np.uint64)
    mlo = np.where(L >= 128, ones, np.where(L <= 64, np.uint64(0), ~((np.uint64(1) << sh_lo) - np.uint64(1))))
    return hi & mhi.astype(np.uint64), lo & mlo.astype(np.uint64)


# --------------------------------------------------------------------------
# address parsing (convenience, Python level; lpm6.pyx uses these too)
# --------------------------------------------------------------------------

def _result_array(out, size_t n):
    """The uint32 array batch lookups write: `out` when it fits, else a new one."""
    if out is None:
        return np.empty(n, np.uint32)
    if not isinstance(out, np.ndarray) or out.dtype != np.uint32 or out.ndim != 1 \
            or out.shape[0] != n or not out.flags.c_contiguous:
        raise KdpError("out must be a contiguous uint32 array of the same length")
    return out


def _net(prefix, length, bits):
    """-> (int prefix, int length) from (int|str|ipaddress, length) or a network."""
    if length is None:
        if isinstance(prefix, str):
            prefix = ipaddress.ip_network(prefix, strict=False)
        if isinstance(prefix, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
            if prefix.max_prefixlen != bits:
                raise KdpError(f"expected an IPv{4 if bits == 32 else 6} prefix, got {prefix}")
            return int(prefix.network_address), prefix.prefixlen
        raise KdpError(f"prefix {prefix!r} needs a length")
    length = int(length)
    if not 0 <= length <= bits:
        raise KdpError(f"prefix length must be 0..{bits}, got {length}")
    a = _addr(prefix, bits)
    if length < bits:
        a &= ~((1 << (bits - length)) - 1)
    return a, length


def _addr(a, bits):
    """-> int address from an int, a string or an ipaddress address."""
    if isinstance(a, int):
        if not 0 <= a < (1 << bits):
            raise KdpError(f"address {a} out of range for IPv{4 if bits == 32 else 6}")
        return a
    if isinstance(a, str):
        a = ipaddress.ip_address(a)
    if isinstance(a, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        if a.max_prefixlen != bits:
            raise KdpError(f"expected an IPv{4 if bits == 32 else 6} address, got {a}")
        return int(a)
    raise KdpError(f"not an address: {a!r}")


cdef _split_args(length, value):
    # insert("10.0.0.0/8", 5): the second positional is the value
    if value is None:
        return None, length
    return length, value


# --------------------------------------------------------------------------
# IPv4
# --------------------------------------------------------------------------

cdef class Lpm4(_LpmBase):
    """IPv4 longest-prefix match: prefix -> uint32 value; MISS (0xFFFFFFFF)
    for an address no prefix covers.  See the module docstring for the
    structure (and the "4-byte root" of big tables) and the concurrency
    contract."""

    MISS = MISS

    def __cinit__(self, *args, **kwargs):
        self.bits = 32
        self.empty = <uint64_t>(<uintptr_t>kdp_empty_chunk)
        self.leaf8_many = LEAF8_PALETTE
        self._init_root(self.root)

    # ---- family hooks ----------------------------------------------------------
    cdef bint _is_static(self, const char *c) noexcept nogil:
        return (c == <char *>kdp_empty_chunk or c == <char *>kdp_empty_wide
                or c == <char *>kdp_empty_chunk_palette)

    cdef char *_block_of(self, char *c) noexcept nogil:
        return _block4(c)

    cdef int _build_bulk_chunk(self, lpm_buf_t *b, const lpm_rule_t *rules, size_t n,
                               size_t *off, int leaf8, int dflt) noexcept nogil:
        return _build_any4(b, rules, n, off, 0, leaf8, dflt)

    cdef void _place_bulk_chunk(self, char *c) noexcept nogil:
        pass                               # IPv4 chunks hold offsets only

    cdef uint64_t _bulk_empty(self, size_t nonempty) noexcept nogil:
        if nonempty < WIDE_EMPTY_BELOW:
            return <uint64_t>(<uintptr_t>kdp_empty_wide)
        return <uint64_t>(<uintptr_t>kdp_empty_chunk)

    cdef _refresh_chunk(self, uint32_t h):
        # rebuild /16 number h's chunk aside and publish it with one atomic
        # store (two with the 4-byte root: t0 and t4 name equivalent chunks,
        # so a reader of either sees the old or the new answer)
        cdef lpm_bucket_t *bk = &self.buckets[h]
        cdef lpm_root_t *rt = self.root
        cdef lpm_buf_t b
        cdef size_t off
        cdef char *c
        cdef char *blk = NULL
        cdef char *old
        cdef uint64_t e = rt.t0[h]
        cdef bint four = rt.base4 != NULL
        cdef uint16_t d = <uint16_t>(e >> 48)
        if bk.n == 0:
            c = <char *>(<uintptr_t>self.empty)
            if four:
                self._t4_empty(h, d)
        else:
            b.p = NULL
            b.n = b.cap = 0
            # (with the 4-byte root every 8-bit root has a palette: its kernel
            # reads the leaf through it)
            if _build_any4(&b, bk.r, bk.n, &off, 1,
                           LEAF8_PALETTE if four else (
                               LEAF8_DIRECT if self.next_nh <= CHILD8 else self.leaf8_many),
                           d if four else -1) < 0:
                free(b.p)
                raise MemoryError()
            if four:
                blk = self._arena_alloc(b.n)
                if blk == NULL:
                    # the arena is full: batch lookups go back to t0 until
                    # the next bulk build (rebuild()) sizes a new one
                    kdp_stptr(<void **>&rt.base4, NULL)
                    four = False
            if blk == NULL:
                blk = <char *>kdp_alloc64(b.n)
                if blk == NULL:
                    free(b.p)
                    raise MemoryError()
            memcpy(blk, b.p, b.n)
            free(b.p)
            c = blk + off
            self.chunk_bytes += (<uint64_t *>_block4(c))[0]
        kdp_st64(&rt.t0[h], (e & ~PTR_MASK) | <uint64_t>(<uintptr_t>c))
        if four and bk.n:
            kdp_st32(&rt.t4[h], <uint32_t>(c - rt.base4))
        old = <char *>(<uintptr_t>(e & PTR_MASK))
        if not self._is_shared(old):
            self.chunk_bytes -= (<uint64_t *>_block4(old))[0]
            self._retire(0, <uintptr_t>_block4(old), 0)
        elif old >= self.region + self.region_size and old < self.region + self.arena_cap:
            blk = _block4(old)             # carved from the arena: back to its free list
            self.chunk_bytes -= (<uint64_t *>blk)[0]
            self._retire(2, <uintptr_t>blk, ((<uint64_t *>blk)[0] + 63) & ~(<uint64_t>63))

    cdef char *_arena_alloc(self, size_t size):
        # a 64-byte aligned block of the 4-byte root's arena (NULL: full);
        # freed blocks are kept per size (whole lines) for the next of that size
        cdef size_t cls = (size + 63) & ~(<size_t>63)
        cdef char *p
        free_list = self._arena_free.get(cls)
        if free_list:
            return self.region + <size_t>free_list.pop()
        if self.arena_used + cls > self.arena_cap:
            return NULL
        p = self.region + self.arena_used
        self.arena_used += cls
        return p

    cdef int _t4_empty(self, uint32_t h, uint32_t d) except -1:
        # point t4[h] (an empty /16) at the empty chunk of default d, made
        # on first use; arena full: give the 4-byte root up (t0 stays right)
        cdef lpm_root_t *rt = self.root
        cdef char *p
        ent = self._empty4.get(d)
        if ent is None:
            p = self._arena_alloc(64)
            if p == NULL:
                kdp_stptr(<void **>&rt.base4, NULL)
                return 0
            memset(p, 0, 64)
            _write_empty4(p, <uint16_t>d)
            ent = <size_t>(p - self.region) | <size_t>self.empty4_flag
            self._empty4[d] = ent
        kdp_st32(&rt.t4[h], <uint32_t>ent)
        return 0

    cdef _refresh_defaults(self, uint32_t h0, uint32_t h1):
        # t0's defaults (_LpmBase), then with the 4-byte root the copies
        # in the chunks (one 16-bit store each) and the empty /16s' entries
        cdef lpm_root_t *rt = self.root
        cdef uint32_t h
        cdef uint64_t e
        cdef uint16_t d
        cdef uintptr_t c
        cdef char *nd
        cdef uint16_t *slot
        _LpmBase._refresh_defaults(self, h0, h1)
        for h in range(h0, h1):
            if rt.base4 == NULL:
                return
            e = rt.t0[h]
            d = <uint16_t>(e >> 48)
            c = <uintptr_t>(e & PTR_MASK)
            if self._is_static(<char *>c):
                self._t4_empty(h, d)
                continue
            nd = <char *>(c & ~(<uintptr_t>H_FLAGS))
            if c & H_WIDE:
                slot = <uint16_t *>(nd + WIDE_DFLT)
            elif c & H_LEAF16:
                slot = <uint16_t *>(nd + N16_DFLT)
            else:
                slot = <uint16_t *>(nd + N8_LEAF)
            if slot[0] != d:
                kdp_st16(slot, d)

    cdef _free_garbage(self, item):
        # kind 2: a block of the current arena, back to its free list (one of
        # an arena replaced since by a bulk build goes with that mapping)
        cdef char *p
        kind, ptr, size = item
        if kind == 2:
            p = <char *>(<uintptr_t>ptr)
            if self._arena_free is not None and self.region != NULL \
                    and p >= self.region + self.region_size and p < self.region + self.arena_cap:
                self._arena_free.setdefault(size, []).append(<size_t>(p - self.region))
            return
        _LpmBase._free_garbage(self, item)

    # ---- Python API ------------------------------------------------------------
    @classmethod
    def build(cls, prefixes, lengths, values):
        """New table from numpy-compatible columns (prefixes: uint32 host order,
        lengths 0..32, values uint32 != MISS).  Duplicates: the last wins."""
        t = cls()
        t.load(prefixes, lengths, values)
        return t

    def load(self, prefixes, lengths, values):
        """Replace the whole content: compiled aside in bulk, swapped in whole."""
        p = np.asarray(prefixes)
        if p.ndim != 1:
            raise KdpError("prefixes must be a 1-d array")
        if p.shape[0] and p.dtype != np.uint32 and (p.min() < 0 or p.max() > 0xFFFFFFFF):
            raise KdpError("IPv4 prefixes must be in 0..2**32-1")
        hi = p.astype(np.uint64) << np.uint64(32)
        with self._wlock:
            self._prepare_and_load(hi, np.zeros(p.shape[0], np.uint64), lengths, values)

    def insert_many(self, prefixes, lengths, values):
        """Add/replace many rules at once: merged with the rule list and rebuilt
        in bulk (later duplicates win)."""
        p = np.asarray(prefixes)
        if p.ndim != 1 or (p.shape[0] and (p.min() < 0 or p.max() > 0xFFFFFFFF)):
            raise KdpError("IPv4 prefixes must be a 1-d array of 0..2**32-1")
        p = p.astype(np.uint64)
        with self._wlock:
            r = self._export()
            vals = np.asarray(<uint32_t[:65536]>self.root.nh_value)[r["nh"]]
            self._prepare_and_load(np.concatenate([r["hi"], p << np.uint64(32)]),
                                   np.zeros(r.shape[0] + p.shape[0], np.uint64),
                                   np.concatenate([r["len"], np.asarray(lengths)]),
                                   np.concatenate([vals, np.asarray(values)]))

    def insert(self, prefix, length, value=None):
        """Add or replace prefix/length -> value; returns the previous value or
        None.  insert(p, len, v) or insert("10.0.0.0/8", v)."""
        length, value = _split_args(length, value)
        a, ln = _net(prefix, length, 32)
        return self._do_insert(<uint64_t>a << 32, 0, ln, value, 0)

    def replace(self, prefix, length, value=None):
        """Change the value of an existing prefix (KeyError if absent); returns
        the previous value."""
        length, value = _split_args(length, value)
        a, ln = _net(prefix, length, 32)
        return self._do_insert(<uint64_t>a << 32, 0, ln, value, 1)

    def delete(self, prefix, length=None):
        """Remove prefix/length; returns its value, or None if it was absent."""
        a, ln = _net(prefix, length, 32)
        return self._do_delete(<uint64_t>a << 32, 0, ln)

    def get(self, prefix, length=None):
        """Exact match: the value stored for prefix/length, or None."""
        a, ln = _net(prefix, length, 32)
        return self._get_rule(<uint64_t>a << 32, 0, ln)

    def __contains__(self, prefix):
        return self.get(prefix) is not None

    def lookup(self, addr):
        """Longest-prefix match of one address (int host order, str, IPv4Address)
        -> value or MISS."""
        cdef uint32_t a
        if type(addr) is int:
            if 0 <= addr <= 0xFFFFFFFF:
                a = addr
                return lookup4_root8(self.root, a)
        return lookup4_root8(self.root, <uint32_t>_addr(addr, 32))

    def lookup_batch(self, addrs, out=None):
        """uint32 array of addresses (host order) -> uint32 array of values
        (MISS where nothing matches).  Runs without the GIL."""
        cdef cnp.ndarray a = np.asarray(addrs)
        if a.ndim != 1:
            raise KdpError("addresses must be a 1-d array")
        if a.dtype != np.uint32:
            if a.shape[0] and (a.dtype.kind not in "iu" or a.min() < 0 or a.max() > 0xFFFFFFFF):
                raise KdpError("IPv4 addresses must be integers in 0..2**32-1")
            a = a.astype(np.uint32)
        a = np.ascontiguousarray(a)
        cdef size_t n = a.shape[0]
        cdef cnp.ndarray o = _result_array(out, n)
        cdef const uint32_t *ap = <const uint32_t *>cnp.PyArray_DATA(a)
        cdef uint32_t *op = <uint32_t *>cnp.PyArray_DATA(o)
        with nogil:
            self.lookup_n(ap, op, n)
        return o

    def _use_root4(self, bint on):
        """Batch lookups through the 4-byte root (on; a table built with one)
        or the 8-byte one, over the same chunks: tests compare their answers,
        bench/README.md's A/B their speed.  Off until the next bulk build or
        write that finds it off; do not call while writers run."""
        with self._wlock:
            if on and self.arena_cap:
                kdp_stptr(<void **>&self.root.base4, self.region)
            else:
                kdp_stptr(<void **>&self.root.base4, NULL)

    def rules(self):
        """The rule list: (prefixes uint32, lengths uint8, values uint32), sorted."""
        r = self._export()
        vals = np.asarray(<uint32_t[:65536]>self.root.nh_value)[r["nh"]]
        return (r["hi"] >> np.uint64(32)).astype(np.uint32), r["len"].copy(), vals

    # ---- C level -------------------------------------------------------------
    cdef uint32_t lookup_one(self, uint32_t addr) noexcept nogil:
        cdef int s = self._enter()
        cdef uint32_t v = lookup4_root8(<const lpm_root_t *>kdp_ldptr(<void **>&self.root), addr)
        self._leave(s)
        return v

    cdef void lookup_n(self, const uint32_t *addrs, uint32_t *out, size_t n) noexcept nogil:
        self.lookup_strided(<const char *>addrs, 4, out, n)

    cdef void lookup_strided(self, const char *base, size_t stride, uint32_t *out,
                             size_t n) noexcept nogil:
        cdef int s = self._enter()
        cdef const lpm_root_t *rt = <const lpm_root_t *>kdp_ldptr(<void **>&self.root)
        cdef const char *b4 = <const char *>kdp_ldptr(<void **>&rt.base4)
        if b4 != NULL:
            lookup4_batch_root4(rt, b4, base, stride, out, n, self.chunk_bytes > PF_MIN_BYTES)
        else:
            lookup4_batch_root8(rt, base, stride, out, n, self.chunk_bytes > PF_MIN_BYTES)
        self._leave(s)


def __getattr__(name):
    # kdp._fast.lpm.Lpm6 names the IPv6 table (kdp/_fast/lpm6.pyx), looked up on
    # first use: lpm6 imports this module first thing, so an eager import here
    # would find lpm6 half-initialised whenever lpm6 is imported first.
    if name == "Lpm6":
        from kdp._fast.lpm6 import Lpm6
        return Lpm6
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
