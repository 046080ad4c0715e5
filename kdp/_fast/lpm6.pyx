# cython: freethreading_compatible = False
"""Longest-prefix match for IPv6: the Lpm6 table (prefix -> 32-bit value).

Lpm6 shares the root, the rule list, bulk builds and the concurrency machinery
with Lpm4 (``_LpmBase``, kdp/_fast/lpm.pyx: its docstring describes the API,
the root and the concurrency contract).  This module holds what is IPv6's own:
its chunks, their builders, their lookups and its incremental updates.
``kdp._fast.lpm.Lpm6`` and ``kdp.Lpm6`` name this class too.

Addresses are ints (128-bit), (n, 16) uint8 arrays in network byte order, or
(n, 2) uint64 arrays of host-order (high, low) halves.

Structure
---------
The root (top 16 bits) is the shared one; an IPv6 chunk holds the rules of one
/16 as leaf-pushed sorted ranges (DXR-style) in three levels, each read with
one vector compare (layout, defined once: lpm6_kernels.h):

* B, bits 16..31 of the /16: up to 33 ranges are one 64-byte line of 16-bit
  range starts (rank = how many are below the address, one AVX-512 compare)
  and a value array; more are a run bitmap of 1,024 16-byte records (64 bits
  + the runs before them: one record load, one popcount) and a value array;
* C, bits 32..63 of a /32 holding longer prefixes: up to 17 ranges are one
  line of 32-bit starts + values (the common case: a /32 holds ~4 rules);
  up to 257 a top line and 16-key blocks (two compares); more a sorted
  array (binary search);
* D, bits 64..127 of a /64 holding longer prefixes (/65../128, rare): a
  sorted array of 64-bit starts (binary search).

A B value (64 bits) is a leaf (next-hop index) or the address of a C node
and its format; a C value is a leaf or the offset of a D node.  A /48 is:
root entry -> B record -> B value -> C line -> C value -> value table.
IPv6 batches (8 addresses or more) go through these levels in stages, in
groups of 128 addresses, each stage prefetching what the next reads so the
cache misses of a group overlap; the first three stages run 8 addresses at a
time with AVX-512 gathers and masks (lpm6_kernels.h; an empty /16 reads a
static zero record, a leaf walks a static dummy C node, so no lane
branches), and a group whose addresses all fall in empty /16s skips the rest.

Updates
-------
IPv6 updates rebuild less than a chunk (``Lpm6._refresh_rule``): a rule longer
than /32 rebuilds its /32's C node aside and swaps the one B value naming it
(an atomic 64-bit store), or, when the /32 gains its first or loses its last
such rule, publishes a new B level (copied and patched) with one store into
the root; a /16../32 rule re-sweeps its window of B keys, rebuilds the C nodes
inside it, and publishes the spliced B level the same way (or, where only
values changed, stores them in place, one atomic store each).  Every address
reads one B value, so it sees its old or its new answer.  Empty /16s, and
windows with more than max(64, rules of the /16 / 16) C nodes, rebuild the
whole chunk as IPv4 does.
"""
import numpy as np
cimport numpy as cnp
from cpython.long cimport PyLong_AsUnsignedLongLongMask
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset, memcpy, memcmp

from kdp._fast.lpm_kernels cimport *
from kdp._fast.lpm cimport (_LpmBase, lpm_root_t, lpm_rule_t, lpm_bucket_t, lpm_buf_t,
                            _buf_reserve, _find_rule, _split_args)
from kdp._fast.lpm import MISS, _addr, _net, _result_array
from kdp.errors import KdpError

cdef extern from "Python.h":
    size_t _PyLong_NumBits(object v) except? <size_t>-1

cnp.import_array()

# The IPv6 chunk layout, defined once in lpm6_kernels.h (see its comment).
cdef extern from "lpm6_kernels.h" nogil:
    ctypedef struct kdp_lpm6_header_t:      # the first line of every block
        uint64_t size
        uint64_t nvalues                    # blocks holding a B level: its values
    ctypedef struct kdp_lpm6_brec_t:        # bitmap B level: one per 64 keys
        uint64_t starts
        uint32_t runs_before
    ctypedef struct kdp_lpm6_sorted_t:      # C format 2, D: searched arrays
        uint32_t n
    enum:
        LINE "KDP_LPM6_LINE"
        HEADER "KDP_LPM6_HEADER"
        HEADER_NVALUES "KDP_LPM6_NVALUES"
        B_BITMAP "KDP_LPM6_B_BITMAP"        # handle bit: the B level is a bitmap
        BLINE_KEYS "KDP_LPM6_BLINE_KEYS"
        BLINE_VALUES "KDP_LPM6_BLINE_VALUES"
        BRECORDS "KDP_LPM6_BRECORDS"
        BREC_SHIFT "KDP_LPM6_BREC_SHIFT"
        BREC_RUNS "KDP_LPM6_BREC_RUNS"
        BBITMAP_VALUES "KDP_LPM6_BBITMAP_VALUES"
        LEAF_MAX "KDP_LPM6_LEAF_MAX"        # B values above are C node addresses
        C_FORMAT "KDP_LPM6_C_FORMAT"
        CLINE_KEYS "KDP_LPM6_CLINE_KEYS"
        CTWO_KEYS "KDP_LPM6_CTWO_KEYS"
        CTWO_NBLOCKS "KDP_LPM6_CTWO_NBLOCKS"
        SORTED_KEYS "KDP_LPM6_SORTED_KEYS"
    const uint32_t C_CHILD "KDP_LPM6_C_CHILD"     # a C value naming a D node
    const uint64_t B_TAG "KDP_LPM6_B_TAG"         # a B value being built: offset from the B level

    unsigned char *kdp_empty_chunk6
    uint64_t *kdp_lpm6_zero_record
    const uint32_t *kdp_lpm6_dummy_c
    void kdp_lpm6_init_empty()
    # the lookup walk (lpm6_walk.h): its copy for the build's baseline target serves
    # updates and single lookups; batches go through the copy chosen at import
    uint64_t *_b_value_slot "kdp_lpm6_b_value_slot_generic"(uintptr_t h, uint32_t x)
    uint32_t kdp_lpm6_lookup1_generic(const uint64_t *t0, const uint32_t *nh_value, uint64_t hi, uint64_t lo)
    void kdp_lpm6_batch(const uint64_t *t0, const uint32_t *nh_value, const char *base, size_t stride,
                        uint32_t *out, size_t n, int hostpairs)
    int kdp_lpm6_use_kernel(const char *name)
    int kdp_lpm6_kernel_runs(const char *name)
    const char *kdp_lpm6_kernel_name

kdp_lpm6_init_empty()

cdef enum:
    SPLICE_MAX_NODES = 64     # a /16../32 update rebuilding more C nodes (and more than
                              # 1/16 of the /16's rules) rebuilds the whole /16

# The named offsets as compiled, for tests/test_lpm_layout.py (which also
# decodes built chunks with them).
LAYOUT6 = {
    "line": LINE, "header": HEADER, "header_nvalues": HEADER_NVALUES, "b_bitmap": B_BITMAP,
    "bline_keys": BLINE_KEYS, "bline_values": BLINE_VALUES,
    "brecords": BRECORDS, "brec_size": sizeof(kdp_lpm6_brec_t), "brec_runs": BREC_RUNS,
    "bbitmap_values": BBITMAP_VALUES, "leaf_max": LEAF_MAX, "c_format": C_FORMAT,
    "cline_keys": CLINE_KEYS, "ctwo_keys": CTWO_KEYS, "ctwo_nblocks": CTWO_NBLOCKS,
    "sorted_keys": SORTED_KEYS, "c_child": C_CHILD, "ptr_mask": PTR_MASK,
}


# --------------------------------------------------------------------------
# IPv6 lookup kernels
# --------------------------------------------------------------------------
# handle (root entry pointer bits) = B level address | B_BITMAP if a bitmap;
# B value = leaf (<= LEAF_MAX) or C node address | C format;
# C value = leaf, or C_CHILD | D node offset.  Layouts: lpm6_kernels.h.

cdef inline bint _is_empty6(uintptr_t h) noexcept nogil:
    # handle h is the shared chunk of /16s without rules
    return h == <uintptr_t>kdp_empty_chunk6


cdef inline uint32_t _lookup6(const lpm_root_t *rt, uint64_t hi, uint64_t lo) noexcept nogil:
    # one address (host-order halves) -> value: root entry, B value, C and D
    return kdp_lpm6_lookup1_generic(rt.t0, rt.nh_value, hi, lo)


cdef inline void _lookup6_batch(const lpm_root_t *rt, const char *base, size_t stride,
                                uint32_t *out, size_t n, int hostpairs) noexcept nogil:
    # n addresses at base + i * stride -> out[i] (hostpairs: host-order (hi, lo)
    # pairs, else 16 network-order bytes), by the walk's copy chosen at import
    kdp_lpm6_batch(rt.t0, rt.nh_value, base, stride, out, n, hostpairs)


KERNELS = ("generic", "avx2", "avx512")


def kernel():
    """The copy of the IPv6 batch walk in use: "avx512", "avx2" or "generic" (the
    build's baseline target).  The best this CPU runs is chosen at import;
    KDP_LPM6_KERNEL=NAME chooses another (for comparisons)."""
    return (<bytes>kdp_lpm6_kernel_name).decode()


def kernel_runs(name):
    """Whether this CPU runs the copy `name` of the IPv6 batch walk."""
    if name not in KERNELS:
        raise KdpError(f"no IPv6 lookup kernel {name!r} (kernels: {', '.join(KERNELS)})")
    return bool(kdp_lpm6_kernel_runs(name.encode()))


def use_kernel(name=None):
    """Use the copy `name` of the IPv6 batch walk (None: the best this CPU runs) for
    every Lpm6 table.  Not while other threads look up (tests and benchmarks)."""
    cdef int rc
    if name is None:
        rc = kdp_lpm6_use_kernel(NULL)
    else:
        rc = kdp_lpm6_use_kernel(str(name).encode())
    if rc == -1:
        raise KdpError(f"no IPv6 lookup kernel {name!r} in this build (kernels: {', '.join(KERNELS)})")
    if rc == -2:
        raise KdpError(f"this CPU does not run the IPv6 lookup kernel {name!r}")


def _choose_kernel():
    import os
    name = os.environ.get("KDP_LPM6_KERNEL") or None
    try:
        use_kernel(name)
    except KdpError as exc:
        raise KdpError(f"KDP_LPM6_KERNEL={name}: {exc}") from None


_choose_kernel()


# --------------------------------------------------------------------------
# IPv6 chunk builder
# --------------------------------------------------------------------------
# A level is built in two steps: _sweep_ranges turns a /16's (or /32's, /64's)
# sorted rules into its disjoint ranges (start, value), the ranges that hold
# longer rules marked as children with the rules they hold; then the level is
# encoded (_write_b_level; _build_cd_node for C and D nodes, which also
# builds their children).

ctypedef struct range6_t:     # one range of a level being built
    uint64_t start
    uint32_t value            # leaf, or C_CHILD for a range holding longer rules
    uint32_t child            # that child's index in the child list + 1 (0: none)

ctypedef struct child6_t:     # the rules [a, b) under one child range
    uint32_t a
    uint32_t b
    uint32_t inherit          # the nh they inherit from the level's ranges
    uint32_t pad


cdef inline kdp_lpm6_header_t *_header(const char *level) noexcept nogil:
    # the header line in front of a B level or C node at the start of its block
    return <kdp_lpm6_header_t *>(level - HEADER)


cdef inline kdp_lpm6_brec_t *_brec(const char *b, uint32_t w) noexcept nogil:
    # record w of the bitmap B level at b
    return <kdp_lpm6_brec_t *>(b + (<size_t>w << BREC_SHIFT))


cdef inline uint64_t *_b_values(uintptr_t hb) noexcept nogil:
    # the value array of the B level of handle hb
    cdef char *b = <char *>(hb & ~(<uintptr_t>63))
    return <uint64_t *>(b + (BBITMAP_VALUES if hb & B_BITMAP else BLINE_VALUES))


cdef inline char *_block6(char *c) noexcept nogil:
    # the start of the block holding the B level of chunk handle c
    return <char *>((<uintptr_t>c) & ~(<uintptr_t>63)) - HEADER


cdef inline char *_c_block(uint64_t v) noexcept nogil:
    # the block of its own a C node named by B value v starts at: its header
    # line is right in front of it (see Lpm6._new_c_block)
    return <char *>(<uintptr_t>(v & ~(<uint64_t>63))) - HEADER


cdef inline uint64_t _level_key(const lpm_rule_t *r, int lvl) noexcept nogil:
    # the bits of rule r a level sorts by: 0 (B) 16..31, 1 (C) 32..63, 2 (D) 64..127
    if lvl == 0:
        return (r.hi >> 32) & 0xFFFF
    if lvl == 1:
        return r.hi & (<uint64_t>0xFFFFFFFF)
    return r.lo


cdef inline int _emit_range(lpm_buf_t *ranges_buf, uint64_t s, uint32_t v,
                            uint32_t g) noexcept nogil:
    # append range (start s, value v, child g) unless it continues an equal leaf
    cdef size_t o
    cdef range6_t *last
    if ranges_buf.n:
        last = <range6_t *>(ranges_buf.p + ranges_buf.n - sizeof(range6_t))
        if g == 0 and last.child == 0 and last.value == v:
            return 0
    if _buf_reserve(ranges_buf, sizeof(range6_t), 8, &o) < 0:
        return -1
    last = <range6_t *>(ranges_buf.p + o)
    last.start = s
    last.value = v
    last.child = g
    return 0


cdef int _sweep_ranges(const lpm_rule_t *rules, size_t n, int lvl, uint32_t inherit,
                       lpm_buf_t *ranges_buf, lpm_buf_t *children_buf) noexcept nogil:
    """The leaf-pushed disjoint ranges of level lvl (0: bits 16..31, 1: 32..63,
    2: 64..127) of rules (sorted by hi, lo, len; sharing the bits above the
    level; none shorter than the level's start): ranges_buf gets range6_t in
    order of start (equal neighbours merged), a child range (rules longer
    than the level under one key) gets value C_CHILD and child = its child6_t
    index in children_buf + 1.  One walk over the sorted rules, with a stack
    of the covering rules' ends and values."""
    cdef int le = 32 if lvl == 0 else (64 if lvl == 1 else 128)
    cdef int w = 16 if lvl == 0 else (32 if lvl == 1 else 64)
    cdef uint64_t maxk = (<uint64_t>0xFFFFFFFFFFFFFFFF) >> (64 - w)
    cdef uint64_t st_end[132]
    cdef uint32_t st_v[132]
    cdef uint32_t st_g[132]
    cdef int sp = 0
    cdef uint64_t pos = 0, s, e, k
    cdef size_t i = 0, j, o
    cdef uint32_t v, g
    cdef child6_t *gp
    st_end[0] = maxk
    st_v[0] = inherit
    st_g[0] = 0
    while i < n:
        k = _level_key(&rules[i], lvl)
        if rules[i].len <= le:
            s = k
            e = s | (((<uint64_t>1) << (le - rules[i].len)) - 1)
            v = rules[i].nh
            g = 0
            j = i + 1
        else:
            j = i
            while j < n and rules[j].len > le and _level_key(&rules[j], lvl) == k:
                j += 1
            s = k
            e = k
            v = C_CHILD
            g = <uint32_t>(children_buf.n // sizeof(child6_t)) + 1
        while st_end[sp] < s:
            if pos <= st_end[sp]:
                if _emit_range(ranges_buf, pos, st_v[sp], st_g[sp]) < 0:
                    return -1
                pos = st_end[sp] + 1
            sp -= 1
        if pos < s:
            if _emit_range(ranges_buf, pos, st_v[sp], st_g[sp]) < 0:
                return -1
            pos = s
        if g:
            if _buf_reserve(children_buf, sizeof(child6_t), 8, &o) < 0:
                return -1
            gp = <child6_t *>(children_buf.p + o)
            gp.a = <uint32_t>i
            gp.b = <uint32_t>j
            gp.inherit = st_v[sp]
        sp += 1
        st_end[sp] = e
        st_v[sp] = v
        st_g[sp] = g
        i = j
    while True:
        if pos <= st_end[sp]:
            if _emit_range(ranges_buf, pos, st_v[sp], st_g[sp]) < 0:
                return -1
            if st_end[sp] == maxk:
                break
            pos = st_end[sp] + 1
        sp -= 1
    return 0


cdef int _build_cd_node(lpm_buf_t *nodes, const lpm_rule_t *rules, size_t n, int lvl, uint32_t inh,
                        size_t *noff, uint32_t *nfmt) noexcept nogil:
    """Append the C (lvl 1) or D (lvl 2) node of rules (one /32 or /64, all
    longer than it) to nodes, 64-byte aligned, then its children; noff = its
    offset, nfmt = its format (C: 0 line, 1 two levels, 2 searched; D: 0)."""
    cdef lpm_buf_t ranges_buf, children_buf
    cdef size_t nb, nk, i, t, off, vo, nbk = 0, coff
    cdef uint32_t cf
    cdef int lay = 0, err = 0
    cdef char *nd
    cdef const range6_t *ranges
    cdef const child6_t *children
    cdef const child6_t *kid
    memset(&ranges_buf, 0, sizeof(ranges_buf))
    memset(&children_buf, 0, sizeof(children_buf))
    if _sweep_ranges(rules, n, lvl, inh, &ranges_buf, &children_buf) < 0:
        err = -1
    else:
        nb = ranges_buf.n // sizeof(range6_t)
        nk = nb - 1                    # keys: the starts after the first
        ranges = <const range6_t *>ranges_buf.p
        if lvl == 2:                   # lay: the layout; C formats 0..2, 3 = D
            lay = 3
            vo = SORTED_KEYS + 8 * nk
        elif nk <= CLINE_KEYS:
            lay = 0
            vo = LINE
        elif nk <= CTWO_KEYS:
            lay = 1
            nbk = (nk + CLINE_KEYS - 1) // CLINE_KEYS      # lines of keys under the top line
            vo = LINE + LINE * nbk
        else:
            lay = 2
            vo = SORTED_KEYS + 4 * nk
        if _buf_reserve(nodes, vo + 4 * nb, 64, &off) < 0:
            err = -1
        else:
            nd = nodes.p + off
            if lay == 3:
                (<kdp_lpm6_sorted_t *>nd).n = <uint32_t>nk
                for i in range(nk):
                    (<uint64_t *>(nd + SORTED_KEYS))[i] = ranges[i + 1].start
            elif lay == 2:
                (<kdp_lpm6_sorted_t *>nd).n = <uint32_t>nk
                for i in range(nk):
                    (<uint32_t *>(nd + SORTED_KEYS))[i] = <uint32_t>ranges[i + 1].start
            elif lay == 0:             # keys: start - 1, so that rank = "keys < x"
                memset(nd, 0xFF, LINE)
                for i in range(nk):
                    (<uint32_t *>nd)[i] = <uint32_t>(ranges[i + 1].start - 1)
            else:
                memset(nd, 0xFF, LINE + LINE * nbk)
                for t in range(1, nbk):
                    (<uint32_t *>nd)[t - 1] = <uint32_t>(ranges[CLINE_KEYS * t + 1].start - 1)
                (<uint32_t *>nd)[CTWO_NBLOCKS] = <uint32_t>nbk
                for i in range(nk):
                    (<uint32_t *>(nd + LINE))[i] = <uint32_t>(ranges[i + 1].start - 1)
            for i in range(nb):
                (<uint32_t *>(nd + vo))[i] = ranges[i].value
            noff[0] = off
            nfmt[0] = <uint32_t>lay if lay < 3 else 0
            children = <const child6_t *>children_buf.p
            for i in range(nb):
                if ranges[i].child == 0:
                    continue
                kid = &children[ranges[i].child - 1]
                if _build_cd_node(nodes, rules + kid.a, kid.b - kid.a, lvl + 1, kid.inherit,
                                  &coff, &cf) < 0:
                    err = -1
                    break
                if ((coff - off) >> 6) >= (<size_t>1 << 29):
                    err = -1
                    break
                # C value naming the D node: its distance in lines, bits 30..2
                (<uint32_t *>(nodes.p + off + vo))[i] = (C_CHILD
                                                          | <uint32_t>(((coff - off) >> 6) << 2))
    free(ranges_buf.p)
    free(children_buf.p)
    return err


cdef int _build_chunk6(lpm_buf_t *b, const lpm_rule_t *rules, size_t n,
                       size_t *off) noexcept nogil:
    """Append one IPv6 chunk (64-byte aligned): a header line {size, number of
    B values}, its B level, then its C and D nodes; off = its handle's offset
    (B level + B_BITMAP if a bitmap).  B values naming C nodes hold B_TAG |
    their offset from the B level until _relocate_b_values makes them
    addresses (once the chunk is in its final place)."""
    cdef lpm_buf_t ranges_buf, children_buf, nodes
    cdef size_t nb, nk, i, hdr, sb, coff
    cdef uint32_t fb, cf
    cdef int err = 0
    cdef char *nd
    cdef const range6_t *ranges
    cdef const child6_t *children
    cdef const child6_t *kid
    cdef uint64_t *bvalues = NULL
    cdef uint32_t *bstarts = NULL
    memset(&ranges_buf, 0, sizeof(ranges_buf))
    memset(&children_buf, 0, sizeof(children_buf))
    memset(&nodes, 0, sizeof(nodes))
    if _sweep_ranges(rules, n, 0, 0, &ranges_buf, &children_buf) < 0:
        err = -1
    else:
        nb = ranges_buf.n // sizeof(range6_t)
        nk = nb - 1
        ranges = <const range6_t *>ranges_buf.p
        children = <const child6_t *>children_buf.p
        bvalues = <uint64_t *>malloc(nb * 8)          # the B values
        bstarts = <uint32_t *>malloc(nb * 4)          # the range starts
        if bvalues == NULL or bstarts == NULL:
            err = -1
        fb = 0 if nk <= BLINE_KEYS else B_BITMAP
        sb = ((BLINE_VALUES if fb == 0 else BBITMAP_VALUES) + 8 * nb + 63) & ~(<size_t>63)
        for i in range(nb):
            if err:
                break
            bstarts[i] = <uint32_t>ranges[i].start
            bvalues[i] = ranges[i].value
            if ranges[i].child == 0:
                continue
            kid = &children[ranges[i].child - 1]
            if _build_cd_node(&nodes, rules + kid.a, kid.b - kid.a, 1, kid.inherit, &coff, &cf) < 0:
                err = -1
                break
            bvalues[i] = B_TAG | <uint64_t>(sb + coff) | cf
        if err == 0 and _buf_reserve(b, HEADER + sb + nodes.n, 64, &hdr) < 0:
            err = -1
        if err == 0:
            nd = b.p + hdr + HEADER
            _write_b_level(nd, fb, bstarts, bvalues, nb)
            if nodes.n:
                memcpy(nd + sb, nodes.p, nodes.n)
            _header(nd).size = b.n - hdr
            _header(nd).nvalues = nb
            off[0] = hdr + HEADER + fb
    free(bvalues)
    free(bstarts)
    free(ranges_buf.p)
    free(children_buf.p)
    free(nodes.p)
    return err


cdef void _write_b_level(char *nd, uint32_t fb, const uint32_t *starts, const uint64_t *values,
                         size_t nb) noexcept nogil:
    """Write a B level of nb ranges (starts starts[i], starts[0] = 0; values values[i]) at nd
    (zeroed, 64-byte aligned) in format fb (0 line, B_BITMAP bitmap)."""
    cdef size_t i
    if fb == 0:                    # keys: start - 1, so that rank = "keys < x"
        memset(nd, 0xFF, BLINE_VALUES)
        for i in range(1, nb):
            (<uint16_t *>nd)[i - 1] = <uint16_t>(starts[i] - 1)
        memcpy(nd + BLINE_VALUES, values, nb * 8)
    else:
        for i in range(nb):
            _brec(nd, starts[i] >> 6).starts |= (<uint64_t>1) << (starts[i] & 63)
        memcpy(nd + BBITMAP_VALUES, values, nb * 8)
        _bitmap_fill_runs(nd, 0)


cdef inline void _bitmap_fill_runs(char *nd, uint32_t w0) noexcept nogil:
    # the runs_before field of bitmap records w0 + 1 .. (from record w0's)
    cdef uint32_t w
    cdef uint32_t q = _brec(nd, w0).runs_before
    for w in range(w0, <uint32_t>BRECORDS):
        _brec(nd, w).runs_before = q
        q += kdp_popcnt(_brec(nd, w).starts)


cdef inline uint64_t _bitmap_word(const char *b, uint32_t w) noexcept nogil:
    # the run starts of keys 64 w .. 64 w + 63 of bitmap B level b
    return _brec(b, w).starts


cdef int _bitmap_start_at_or_before(const char *b, int p) noexcept nogil:
    # the highest range start <= p in bitmap B level b (-1: none)
    cdef int w = p >> 6
    cdef uint64_t bits = kdp_low(_bitmap_word(b, w), p & 63)
    while True:
        if bits:
            return 64 * w + 63 - kdp_clz64(bits)
        w -= 1
        if w < 0:
            return -1
        bits = _bitmap_word(b, w)


cdef int _bitmap_start_at_or_after(const char *b, int p) noexcept nogil:
    # the lowest range start >= p in bitmap B level b (0x10000: none)
    cdef int w
    cdef uint64_t bits
    if p >= 0x10000:
        return 0x10000
    w = p >> 6
    bits = _bitmap_word(b, w) & ((<uint64_t>0xFFFFFFFFFFFFFFFF) << (p & 63))
    while True:
        if bits:
            return 64 * w + kdp_ctz64(bits)
        w += 1
        if w == BRECORDS:
            return 0x10000
        bits = _bitmap_word(b, w)


cdef size_t _read_b_starts(const char *b, uint32_t fb, size_t nb, uint32_t *starts) noexcept nogil:
    # the range starts of a B level (starts[nb] = 0x10000); returns nb
    cdef size_t i, c = 0
    cdef uint32_t w
    cdef uint64_t bits
    if fb == 0:
        starts[0] = 0
        for i in range(1, nb):
            starts[i] = <uint32_t>(<const uint16_t *>b)[i - 1] + 1
    else:
        for w in range(<uint32_t>BRECORDS):
            bits = _bitmap_word(b, w)
            while bits and c < nb:
                starts[c] = 64 * w + kdp_ctz64(bits)
                c += 1
                bits &= bits - 1
    starts[nb] = 0x10000
    return nb


cdef inline size_t _append_range(uint32_t *starts, uint64_t *values, size_t c, uint32_t st,
                                 uint64_t v) noexcept nogil:
    # append range (st, v) unless it continues an equal leaf
    if c and v <= LEAF_MAX and values[c - 1] == v:
        return c
    starts[c] = st
    values[c] = v
    return c + 1


cdef size_t _splice_ranges(const uint32_t *old_starts, const uint64_t *old_values, size_t m,
                           uint32_t ks, uint32_t ke, const uint32_t *win_starts,
                           const uint64_t *win_values, size_t nwin,
                           uint32_t *new_starts, uint64_t *new_values) noexcept nogil:
    """Ranges [old_starts[i], old_starts[i+1]) -> old_values[i] (i < m, covering
    ks..ke) with keys ks..ke replaced by the window's ranges (nwin of them,
    win_starts[0] == ks): the new ranges (equal neighbouring leaves merged) in
    new_starts/new_values; returns their count (<= m + nwin + 1).
    new_starts[0] == old_starts[0]."""
    cdef size_t i, t, c = 0
    for i in range(m):
        if old_starts[i + 1] <= ks or old_starts[i] > ke:
            c = _append_range(new_starts, new_values, c, old_starts[i], old_values[i])
            continue
        if old_starts[i] < ks:
            c = _append_range(new_starts, new_values, c, old_starts[i], old_values[i])
        if old_starts[i] <= ks:
            for t in range(nwin):
                c = _append_range(new_starts, new_values, c, win_starts[t], win_values[t])
        if old_starts[i + 1] - 1 > ke:
            c = _append_range(new_starts, new_values, c, ke + 1, old_values[i])
    return c


cdef void _relocate_b_values(char *c) noexcept nogil:
    """Turn the B_TAG offsets among the B values of chunk handle c into
    addresses (the chunk is in its final place)."""
    cdef char *b = <char *>((<uintptr_t>c) & ~(<uintptr_t>63))
    cdef uint64_t *values = _b_values(<uintptr_t>c)
    cdef size_t i, nb = _header(b).nvalues
    for i in range(nb):
        if values[i] & B_TAG:
            values[i] = <uint64_t>(<uintptr_t>b) + (values[i] & ~B_TAG)


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------

cdef inline uint64_t _hi(a):
    # the high / low 64 bits of a 128-bit int
    return <uint64_t>(a >> 64)


cdef inline uint64_t _lo(a):
    return <uint64_t>(a & 0xFFFFFFFFFFFFFFFF)


cdef class Lpm6(_LpmBase):
    """IPv6 longest-prefix match: prefix -> uint32 value; MISS (0xFFFFFFFF)
    for an address no prefix covers.  Batch addresses are an (n, 16) uint8
    array (network byte order) or an (n, 2) uint64 array of host-order
    (high, low) halves."""

    MISS = MISS

    def __cinit__(self, *args, **kwargs):
        self.bits = 128
        self.empty = <uint64_t>(<uintptr_t>kdp_empty_chunk6)
        self._init_root(self.root)
        self.home_block = <uintptr_t *>calloc(65536, sizeof(uintptr_t))
        if self.home_block == NULL:
            raise MemoryError()

    def __dealloc__(self):
        # blocks only the B levels reference (the base class frees the B levels)
        cdef uint32_t h
        if self.home_block != NULL and self.root != NULL:
            for h in range(65536):
                if self.home_block[h] or not _is_empty6(<uintptr_t>(self.root.t0[h] & PTR_MASK)):
                    self._drop_side_blocks(h, self.root.t0[h], 1)
        free(self.home_block)
        self.home_block = NULL

    # ---- family hooks ----------------------------------------------------------
    cdef bint _is_static(self, const char *c) noexcept nogil:
        return c == <char *>kdp_empty_chunk6

    cdef char *_block_of(self, char *c) noexcept nogil:
        return _block6(c)

    cdef int _build_bulk_chunk(self, lpm_buf_t *b, const lpm_rule_t *rules, size_t n,
                               size_t *off, int leaf8, int dflt) noexcept nogil:
        return _build_chunk6(b, rules, n, off)

    cdef void _place_bulk_chunk(self, char *c) noexcept nogil:
        _relocate_b_values(c)

    cdef uint64_t _bulk_empty(self, size_t nonempty) noexcept nogil:
        return <uint64_t>(<uintptr_t>kdp_empty_chunk6)

    # ---- writers: incremental updates -----------------------------------------
    # A /16's structure lives in: the bulk region (load/build), or one block
    # built by its last full rebuild (home_block[h]: header, B level, C and D
    # nodes), plus blocks of their own for what incremental updates replaced
    # since: a C node (with its D nodes) named by one B value, or a new B level
    # named by the root entry (its C nodes stay where they were).  A block of
    # its own is retired (freed after an epoch) when it is replaced; the region
    # and home blocks only by a full rebuild of the /16 or a new table, so
    # memory stays under twice what a rebuild would use.

    cdef bint _in_home_block(self, uint32_t h, uintptr_t p):
        # p lies in the bulk region or in /16 h's home block (not freed on its own)
        cdef uintptr_t b = self.home_block[h]
        if self.region != NULL and p >= <uintptr_t>self.region and \
                p < <uintptr_t>self.region + self.region_size:
            return True
        return b != 0 and p >= b and p < b + (<kdp_lpm6_header_t *>b).size

    cdef _drop_block(self, char *blk, bint now):
        # free (now) or retire a block of its own
        self.chunk_bytes -= (<kdp_lpm6_header_t *>blk).size
        if now:
            free(blk)
        else:
            self._retire(0, <uintptr_t>blk, 0)

    cdef _drop_side_blocks(self, uint32_t h, uint64_t e, bint now):
        """Free (now) or retire the blocks of /16 h (root entry e) other than the
        one holding its B level: C nodes of their own, and its home block when
        the B level is elsewhere."""
        cdef uintptr_t hb = <uintptr_t>(e & PTR_MASK)
        cdef uintptr_t home = self.home_block[h]
        cdef uintptr_t blk = 0
        cdef const uint64_t *values
        cdef size_t i, nb
        cdef uint64_t v
        if not _is_empty6(hb):
            blk = <uintptr_t>_block6(<char *>hb)
            nb = (<kdp_lpm6_header_t *>blk).nvalues
            values = _b_values(hb)
            for i in range(nb):
                v = values[i]
                if v > LEAF_MAX and not self._in_home_block(h, <uintptr_t>(v & ~(<uint64_t>63))):
                    self._drop_block(_c_block(v), now)
        if home and home != blk:
            self._drop_block(<char *>home, now)
        self.home_block[h] = 0

    cdef _refresh_chunk(self, uint32_t h):
        """Full rebuild of /16 h's chunk from its rules, published with one
        atomic store into the root; the old structure is retired."""
        cdef lpm_bucket_t *bk = &self.buckets[h]
        cdef lpm_buf_t b
        cdef size_t off
        cdef char *c
        cdef char *blk = NULL
        cdef uint64_t e = self.root.t0[h]
        cdef char *old = <char *>(<uintptr_t>(e & PTR_MASK))
        if bk.n == 0:
            c = <char *>kdp_empty_chunk6
        else:
            b.p = NULL
            b.n = b.cap = 0
            if _build_chunk6(&b, bk.r, bk.n, &off) < 0:
                free(b.p)
                raise MemoryError()
            blk = <char *>kdp_alloc64(b.n)
            if blk == NULL:
                free(b.p)
                raise MemoryError()
            memcpy(blk, b.p, b.n)
            free(b.p)
            c = blk + off
            _relocate_b_values(c)
            self.chunk_bytes += (<kdp_lpm6_header_t *>blk).size
        kdp_st64(&self.root.t0[h], (e & ~PTR_MASK) | <uint64_t>(<uintptr_t>c))
        self._drop_side_blocks(h, e, 0)
        if not self._is_shared(old):
            self._drop_block(_block6(old), 0)
        self.home_block[h] = <uintptr_t>blk

    cdef _refresh_rule(self, uint64_t hi, uint64_t lo, int ln):
        """After rule (hi, lo, ln) changed, without rebuilding its /16's chunk:
        a rule longer than /32 rebuilds only its /32's C node (and D nodes)
        into a block of its own and swaps the B value naming it (one atomic
        store); when the /32 gains its first or loses its last such rule, the
        B level is re-cut around that /32 (_splice_b_level) and republished.
        A rule /16../32 re-sweeps its window of B keys (bits 16..31): its
        ranges and the C nodes of the /32s inside it (they inherit its value)
        are rebuilt and spliced into a new B level (_resweep_window).  Empty
        chunks, and windows holding more than max(SPLICE_MAX_NODES, rules of
        the /16 / 16) C nodes, take the full rebuild."""
        cdef uint32_t h = <uint32_t>(hi >> 48)
        cdef uint64_t e = self.root.t0[h]
        cdef uintptr_t hb = <uintptr_t>(e & PTR_MASK)
        cdef lpm_bucket_t *bk = &self.buckets[h]
        cdef uint32_t k = <uint32_t>(hi >> 32) & 0xFFFF
        cdef uint32_t ks, ke               # the window of B keys the rule covers
        cdef int found, L
        cdef ssize_t i0, i1, j
        cdef uint32_t inh = 0              # the nh the window inherits
        cdef uint64_t *slot
        cdef uint64_t cur, nv
        cdef uint32_t start1
        if _is_empty6(hb) or bk.n == 0:
            self._refresh_chunk(h)
            return
        if ln <= 32:
            ks = k & ~(((<uint32_t>1) << (32 - ln)) - 1)
            ke = ks | (((<uint32_t>1) << (32 - ln)) - 1)
        else:
            ks = ke = k
        # the rules inside the window: bk.r[i0:i1]
        i0 = _find_rule(bk, (hi & (<uint64_t>0xFFFF000000000000)) | (<uint64_t>ks << 32), 0, 0, &found)
        if ke == 0xFFFF:
            i1 = bk.n
        else:
            i1 = _find_rule(bk, (hi & (<uint64_t>0xFFFF000000000000)) | (<uint64_t>(ke + 1) << 32),
                            0, 0, &found)
        L = ln if ln <= 32 else 33
        while i0 < i1 and bk.r[i0].len < L:   # the rules covering the whole window
            i0 += 1
        for L in range((ln if ln <= 32 else 33) - 1, 15, -1):
            j = _find_rule(bk, hi & ((<uint64_t>0xFFFFFFFFFFFFFFFF) << (64 - L)), 0, <uint8_t>L, &found)
            if found:
                inh = bk.r[j].nh
                break
        if ln <= 32:
            if not self._resweep_window(h, hb, ks, ke, bk.r + i0, <size_t>(i1 - i0), inh,
                                        max(<size_t>SPLICE_MAX_NODES, <size_t>(bk.n // 16))):
                self._refresh_chunk(h)
            return
        slot = _b_value_slot(hb, k)
        cur = slot[0]
        if i1 > i0:
            nv = self._new_c_block(bk.r + i0, <size_t>(i1 - i0), inh)
            if cur > LEAF_MAX:
                kdp_st64(slot, nv)
            else:
                start1 = k
                self._splice_b_level(h, k, k, &start1, &nv, 1, 0)
        elif cur > LEAF_MAX:
            start1 = k
            nv = inh
            self._splice_b_level(h, k, k, &start1, &nv, 1, 0)
        if cur > LEAF_MAX and not self._in_home_block(h, <uintptr_t>(cur & ~(<uint64_t>63))):
            self._drop_block(_c_block(cur), 0)

    cdef uint64_t _new_c_block(self, const lpm_rule_t *rules, size_t n, uint32_t inh) except 0:
        """A block of its own holding the C node (and D nodes) of rules (one
        /32's rules longer than /32) one header line in; returns the B value
        naming it."""
        cdef lpm_buf_t nodes
        cdef size_t noff
        cdef uint32_t nf
        cdef char *blk
        memset(&nodes, 0, sizeof(nodes))
        if _build_cd_node(&nodes, rules, n, 1, inh, &noff, &nf) < 0:
            free(nodes.p)
            raise MemoryError()
        blk = <char *>kdp_alloc64(HEADER + nodes.n)
        if blk == NULL:
            free(nodes.p)
            raise MemoryError()
        memset(blk, 0, HEADER)
        (<kdp_lpm6_header_t *>blk).size = HEADER + nodes.n
        memcpy(blk + HEADER, nodes.p, nodes.n)
        free(nodes.p)
        self.chunk_bytes += HEADER + nodes.n
        return <uint64_t>(<uintptr_t>(blk + HEADER + noff)) | nf

    cdef bint _resweep_window(self, uint32_t h, uintptr_t hb, uint32_t ks, uint32_t ke,
                              const lpm_rule_t *rules, size_t n, uint32_t inh,
                              size_t max_nodes) except -1:
        """Re-sweep keys ks..ke of /16 h's B level (handle hb) from rules (all
        inside the window, none covering all of it; inh = the value of the
        longest rule that does) and splice the result in; the C nodes inside
        are rebuilt, the old ones retired.  False (nothing changed) when the
        window holds more than max_nodes of them (one by one they cost ~2.5x
        what a full rebuild spends on each: a window with about a third of the
        /16's C nodes is no cheaper than rebuilding the /16)."""
        cdef lpm_buf_t ranges_buf, children_buf
        cdef const range6_t *ranges
        cdef const child6_t *children
        cdef const child6_t *kid
        cdef size_t nbd, i, nwin = 0, ng
        cdef uint32_t *win_starts = NULL
        cdef uint64_t *win_values = NULL
        cdef uint64_t e, v
        cdef const uint64_t *values
        cdef size_t ia, iz
        memset(&ranges_buf, 0, sizeof(ranges_buf))
        memset(&children_buf, 0, sizeof(children_buf))
        if _sweep_ranges(rules, n, 0, inh, &ranges_buf, &children_buf) < 0:
            free(ranges_buf.p)
            free(children_buf.p)
            raise MemoryError()
        nbd = ranges_buf.n // sizeof(range6_t)
        ng = children_buf.n // sizeof(child6_t)
        ranges = <const range6_t *>ranges_buf.p
        children = <const child6_t *>children_buf.p
        if ng > max_nodes:
            free(ranges_buf.p)
            free(children_buf.p)
            return False
        win_starts = <uint32_t *>malloc(nbd * 4)
        win_values = <uint64_t *>malloc(nbd * 8)
        if win_starts == NULL or win_values == NULL:
            free(win_starts)
            free(win_values)
            free(ranges_buf.p)
            free(children_buf.p)
            raise MemoryError()
        # the C nodes of their own the window names now (replaced below)
        values = _b_values(hb)
        ia = <size_t>(_b_value_slot(hb, ks) - <uint64_t *>values)
        iz = <size_t>(_b_value_slot(hb, ke) - <uint64_t *>values)
        old = []
        for i in range(ia, iz + 1):
            v = values[i]
            if v > LEAF_MAX and not self._in_home_block(h, <uintptr_t>(v & ~(<uint64_t>63))):
                old.append(<uintptr_t>_c_block(v))
        try:
            for i in range(nbd):
                e = ranges[i + 1].start - 1 if i + 1 < nbd else 0xFFFF
                if e < ks or ranges[i].start > ke:
                    continue
                v = ranges[i].value
                if ranges[i].child:
                    kid = &children[ranges[i].child - 1]
                    v = self._new_c_block(rules + kid.a, kid.b - kid.a, kid.inherit)
                win_starts[nwin] = <uint32_t>(ranges[i].start if ranges[i].start > ks else ks)
                win_values[nwin] = v
                nwin += 1
            self._splice_b_level(h, ks, ke, win_starts, win_values, nwin, 0)
        except MemoryError:
            for i in range(nwin):      # not published: free what was built
                if win_values[i] > LEAF_MAX:
                    self._drop_block(_c_block(win_values[i]), 1)
            raise
        finally:
            free(win_starts)
            free(win_values)
            free(ranges_buf.p)
            free(children_buf.p)
        for blk in old:
            self._drop_block(<char *>(<uintptr_t>blk), 0)
        return True

    cdef _splice_b_level(self, uint32_t h, uint32_t ks, uint32_t ke, const uint32_t *win_starts,
                         const uint64_t *win_values, size_t nwin, bint full):
        """Publish a new B level for /16 h: the current one with keys ks..ke
        (bits 16..31) replaced by the window's ranges (win_starts[0] == ks),
        equal neighbouring leaves merged.  If the ranges stay the same, only
        the changed values are stored (in place, atomically).  Else a big
        bitmap level is copied and patched (the ranges from the one before ks
        to the one after ke re-cut); a small one (or any, full) read and
        written anew."""
        cdef uint64_t e = self.root.t0[h]
        cdef uintptr_t hb = <uintptr_t>(e & PTR_MASK)
        cdef char *b = <char *>(hb & ~(<uintptr_t>63))
        cdef uint32_t fb = <uint32_t>(hb & B_BITMAP), nfb
        cdef size_t nb = _header(b).nvalues
        cdef const uint64_t *values = _b_values(hb)
        cdef size_t ia = <size_t>(_b_value_slot(hb, ks) - <uint64_t *>values)
        cdef size_t iz = <size_t>(_b_value_slot(hb, ke) - <uint64_t *>values)
        cdef size_t a, z, m, c, nnb, i, sb
        cdef uint32_t *old_starts = NULL    # ranges a..z-1 of the current level
        cdef uint32_t *new_starts = NULL    # ... and what replaces them
        cdef uint64_t *new_values = NULL
        cdef char *blk = NULL
        cdef char *level
        cdef int p
        cdef bint patch = not full and fb == B_BITMAP and nb >= BLINE_KEYS + 4
        if patch:
            a = ia - 1 if ia > 0 else 0
            z = iz + 2 if iz + 2 < nb else nb
        else:
            a = 0
            z = nb
        m = z - a
        old_starts = <uint32_t *>malloc((m + 1) * 4)
        new_starts = <uint32_t *>malloc((m + nwin + 2) * 4)
        new_values = <uint64_t *>malloc((m + nwin + 2) * 8)
        if old_starts == NULL or new_starts == NULL or new_values == NULL:
            free(old_starts)
            free(new_starts)
            free(new_values)
            raise MemoryError()
        if patch:                  # starts of ranges a .. z from the bitmap
            old_starts[ia - a] = <uint32_t>_bitmap_start_at_or_before(b, <int>ks)
            if ia > a:
                old_starts[0] = <uint32_t>_bitmap_start_at_or_before(b, <int>old_starts[1] - 1)
            p = <int>old_starts[ia - a] + 1
            for i in range(ia - a + 1, m + 1):
                old_starts[i] = <uint32_t>_bitmap_start_at_or_after(b, p)
                p = <int>old_starts[i] + 1
        else:
            _read_b_starts(b, fb, nb, old_starts)
        c = _splice_ranges(old_starts, values + a, m, ks, ke, win_starts, win_values, nwin,
                           new_starts, new_values)
        if c == m and memcmp(new_starts, old_starts, m * 4) == 0:
            # the same ranges: store the changed values in place (each one
            # atomic; a reader sees the old or the new value of its range)
            for i in range(m):
                if new_values[i] != values[a + i]:
                    kdp_st64(<uint64_t *>values + a + i, new_values[i])
            free(old_starts)
            free(new_starts)
            free(new_values)
            return
        nnb = nb - m + c
        nfb = B_BITMAP if patch and nnb - 1 > BLINE_KEYS else (0 if nnb - 1 <= BLINE_KEYS else B_BITMAP)
        if patch and nfb == B_BITMAP:
            sb = (BBITMAP_VALUES + 8 * nnb + 63) & ~(<size_t>63)
            blk = <char *>kdp_alloc64(HEADER + sb)
            if blk != NULL:
                level = blk + HEADER
                memset(blk, 0, HEADER)
                memcpy(level, b, BBITMAP_VALUES)
                for i in range(1, m):
                    _brec(level, old_starts[i] >> 6).starts &= \
                        ~((<uint64_t>1) << (old_starts[i] & 63))
                for i in range(1, c):
                    _brec(level, new_starts[i] >> 6).starts |= \
                        (<uint64_t>1) << (new_starts[i] & 63)
                _bitmap_fill_runs(level, old_starts[0] >> 6)
                memcpy(level + BBITMAP_VALUES, values, a * 8)
                memcpy(level + BBITMAP_VALUES + a * 8, new_values, c * 8)
                memcpy(level + BBITMAP_VALUES + (a + c) * 8, values + z, (nb - z) * 8)
        elif not patch:
            sb = ((BLINE_VALUES if nfb == 0 else BBITMAP_VALUES) + 8 * nnb + 63) & ~(<size_t>63)
            blk = <char *>kdp_alloc64(HEADER + sb)
            if blk != NULL:
                memset(blk, 0, HEADER + sb)
                _write_b_level(blk + HEADER, nfb, new_starts, new_values, nnb)
        free(old_starts)
        free(new_starts)
        free(new_values)
        if blk == NULL:
            if patch and nfb == 0:         # shrank to one line: write it anew
                self._splice_b_level(h, ks, ke, win_starts, win_values, nwin, 1)
                return
            raise MemoryError()
        (<kdp_lpm6_header_t *>blk).size = HEADER + sb
        (<kdp_lpm6_header_t *>blk).nvalues = nnb
        self.chunk_bytes += HEADER + sb
        kdp_st64(&self.root.t0[h], (e & ~PTR_MASK) | <uint64_t>(<uintptr_t>(blk + HEADER + nfb)))
        if not self._in_home_block(h, <uintptr_t>b):
            self._drop_block(b - HEADER, 0)

    cdef _publish(self, lpm_root_t *rt, lpm_bucket_t *bks, lpm_bucket_t sh, object bulk,
                  char *reg, size_t regsize, char *regbase, size_t regmap, size_t n):
        # retire what only the old B levels reference; the base class retires those
        cdef uint32_t h
        for h in range(65536):
            if self.home_block[h] or not _is_empty6(<uintptr_t>(self.root.t0[h] & PTR_MASK)):
                self._drop_side_blocks(h, self.root.t0[h], 0)
        _LpmBase._publish(self, rt, bks, sh, bulk, reg, regsize, regbase, regmap, n)

    # ---- Python API ------------------------------------------------------------
    @classmethod
    def build(cls, prefixes, lengths, values):
        """New table; prefixes as (n, 16) uint8 or (n, 2) uint64 (see load)."""
        t = cls()
        t.load(prefixes, lengths, values)
        return t

    def load(self, prefixes, lengths, values):
        """Replace the whole content: compiled aside in bulk, swapped in whole.
        prefixes: (n, 16) uint8 network order, or (n, 2) uint64 (hi, lo)."""
        hi, lo = _hilo_cols(prefixes)
        with self._wlock:
            self._prepare_and_load(hi, lo, lengths, values)

    def insert_many(self, prefixes, lengths, values):
        """Add/replace many rules at once (merged, rebuilt in bulk)."""
        hi, lo = _hilo_cols(prefixes)
        with self._wlock:
            r = self._export()
            vals = np.asarray(<uint32_t[:65536]>self.root.nh_value)[r["nh"]]
            self._prepare_and_load(np.concatenate([r["hi"], hi]), np.concatenate([r["lo"], lo]),
                                   np.concatenate([r["len"], np.asarray(lengths)]),
                                   np.concatenate([vals, np.asarray(values)]))

    def insert(self, prefix, length, value=None):
        """Add or replace; returns the previous value or None."""
        length, value = _split_args(length, value)
        a, ln = _net(prefix, length, 128)
        return self._do_insert(_hi(a), _lo(a), ln, value, 0)

    def replace(self, prefix, length, value=None):
        """Change the value of an existing prefix (KeyError if absent)."""
        length, value = _split_args(length, value)
        a, ln = _net(prefix, length, 128)
        return self._do_insert(_hi(a), _lo(a), ln, value, 1)

    def delete(self, prefix, length=None):
        """Remove prefix/length; returns its value, or None if absent."""
        a, ln = _net(prefix, length, 128)
        return self._do_delete(_hi(a), _lo(a), ln)

    def get(self, prefix, length=None):
        """Exact match: the value stored for prefix/length, or None."""
        a, ln = _net(prefix, length, 128)
        return self._get_rule(_hi(a), _lo(a), ln)

    def __contains__(self, prefix):
        return self.get(prefix) is not None

    def lookup(self, addr):
        """Longest-prefix match of one address (128-bit int, str, IPv6Address)."""
        if type(addr) is not int or addr < 0 or _PyLong_NumBits(addr) > 128:
            addr = _addr(addr, 128)
        return _lookup6(self.root, PyLong_AsUnsignedLongLongMask(addr >> 64),
                        PyLong_AsUnsignedLongLongMask(addr))

    def lookup_batch(self, addrs, out=None):
        """(n, 16) uint8 (network order) or (n, 2) uint64 (host-order hi, lo)
        -> uint32 array of values (MISS where nothing matches).  No GIL.
        (n, 16) uint8 rows may lie any distance apart (e.g. a field of a
        structured array): read in place."""
        cdef cnp.ndarray a = np.asarray(addrs)
        cdef int pairs
        cdef size_t stride = 16
        if (a.ndim == 2 and a.shape[1] == 16 and a.dtype == np.uint8 and a.strides[1] == 1
                and a.strides[0] >= 16):
            stride = a.strides[0]
        else:
            a = np.ascontiguousarray(a)
        if a.ndim == 2 and a.shape[1] == 16 and a.dtype == np.uint8:
            pairs = 0
        elif a.ndim == 2 and a.shape[1] == 2 and a.dtype == np.uint64:
            pairs = 1
        else:
            raise KdpError("IPv6 addresses must be an (n, 16) uint8 or (n, 2) uint64 array")
        cdef size_t n = a.shape[0]
        cdef cnp.ndarray o = _result_array(out, n)
        cdef const char *ap = <const char *>cnp.PyArray_DATA(a)
        cdef uint32_t *op = <uint32_t *>cnp.PyArray_DATA(o)
        cdef int s
        with nogil:
            s = self._enter()
            _lookup6_batch(<const lpm_root_t *>kdp_ldptr(<void **>&self.root), ap, stride, op, n, pairs)
            self._leave(s)
        return o

    def rules(self):
        """The rule list: (prefixes (n, 2) uint64 hi/lo, lengths uint8, values uint32)."""
        r = self._export()
        vals = np.asarray(<uint32_t[:65536]>self.root.nh_value)[r["nh"]]
        return np.stack([r["hi"], r["lo"]], axis=1), r["len"].copy(), vals

    # ---- C level -------------------------------------------------------------
    cdef uint32_t lookup_one(self, uint64_t hi, uint64_t lo) noexcept nogil:
        cdef int s = self._enter()
        cdef uint32_t v = _lookup6(<const lpm_root_t *>kdp_ldptr(<void **>&self.root), hi, lo)
        self._leave(s)
        return v

    cdef void lookup_n(self, const uint8_t *addrs16, uint32_t *out, size_t n) noexcept nogil:
        self.lookup_strided(<const char *>addrs16, 16, out, n)

    cdef void lookup_strided(self, const char *base, size_t stride, uint32_t *out,
                             size_t n) noexcept nogil:
        cdef int s = self._enter()
        _lookup6_batch(<const lpm_root_t *>kdp_ldptr(<void **>&self.root), base, stride, out, n, 0)
        self._leave(s)

    cdef void lookup_hilo(self, const uint64_t *hilo, uint32_t *out, size_t n) noexcept nogil:
        cdef int s = self._enter()
        _lookup6_batch(<const lpm_root_t *>kdp_ldptr(<void **>&self.root), <const char *>hilo, 16,
                       out, n, 1)
        self._leave(s)


def _hilo_cols(prefixes):
    # IPv6 prefix columns -> (hi, lo) uint64 arrays
    p = np.asarray(prefixes)
    if p.ndim == 2 and p.shape[1] == 16 and p.dtype == np.uint8:
        be = np.ascontiguousarray(p).view(">u8")
        return be[:, 0].astype(np.uint64), be[:, 1].astype(np.uint64)
    if p.ndim == 2 and p.shape[1] == 2 and p.dtype == np.uint64:
        return p[:, 0].copy(), p[:, 1].copy()
    raise KdpError("IPv6 prefixes must be an (n, 16) uint8 or (n, 2) uint64 array")
