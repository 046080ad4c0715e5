# The IPv4 batch lookup kernels: the hot path that walks addresses through
# the 8-byte root (t0) or the 4-byte root (t4, base4) to their chunks and
# values, with the prefetch rings that run ahead of a batch.  Inline C only,
# no state: lpm.pyx (the table, its builders and writers) cimports them, and
# Lpm4.lookup_one / lookup_strided call them inside the epoch bracket.  The
# chunk layout they read is lpm4_kernels.h (declared in lpm4_kernels.pxd);
# why the root has two formats: "4-byte root" in lpm.pyx's docstring.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t

from kdp._fast.lpm cimport lpm_root_t
from kdp._fast.lpm_kernels cimport *
from kdp._fast.lpm4_kernels cimport *

cdef enum:
    PF_MIN_BYTES = 1 << 20    # IPv4 batches prefetch when the chunks are bigger than this:
    PF_CHUNK_AHEAD = 8        # ... the chunk lines of the address that far ahead,
    PF_ROOT_AHEAD = 24        # ... the root entry of the address that far ahead


# A root entry names the chunk of its /16; a chunk is a root node for bits
# 16..23 (8- or 16-bit leaves, handle flag H_LEAF16), child nodes for bits
# 24..31, or a wide table (H_WIDE).  Layouts: lpm4_kernels.h.

cdef inline uint32_t node16_leaf(const char *nd, uint32_t p) noexcept nogil:
    # The leaf of slot p of a 16-bit node.  k = runs started at or before p
    # (>= 1: slot 0 always starts one), so the leaf is leaf[k - 1], read as
    # (leaf - 1)[k] to save the subtraction.
    cdef uint32_t w = p >> 6
    cdef uint64_t bmw = (<const uint64_t *>(nd + STARTS))[w]
    cdef uint32_t k = (<const uint16_t *>(nd + N16_RUNS))[w] + kdp_popcnt(kdp_low(bmw, p & 63))
    return (<const uint16_t *>(nd + (N16_LEAF - 2)))[k]


cdef inline uint32_t lookup4_root8(const lpm_root_t *rt, uint32_t a) noexcept nogil:
    # One predictable branch picks the format, the common one first: a FIB's
    # 8-bit roots.  (Branch-free variants, and one masked 16-bit load for both
    # leaf widths, measured slower: the branch lets the core run ahead.)
    cdef uint64_t e = kdp_ld64(&rt.t0[a >> 16])
    cdef const char *c = <const char *>(<uintptr_t>(e & PTR_MASK & ~(<uint64_t>H_FLAGS)))
    cdef uint32_t lf, w, k
    if (e & (H_WIDE | H_LEAF16)) == 0:
        # 8-bit root node: runs started at or before slot p = bits 16..23, the
        # word's bits 0..p&63 shifted to the top (one shift instead of a mask);
        # leaf[k - 1] read as (leaf - 1)[k]
        w = (a >> 14) & 3
        k = (<const uint8_t *>(c + N8_RUNS))[w] + kdp_popcnt(
            (<const uint64_t *>(c + STARTS))[w] << ((~a >> 8) & 63))
        lf = (<const uint8_t *>(c + (N8_LEAF - 1)))[k]
        if lf >= CHILD8:
            lf = node16_leaf(c + (<const uint32_t *>(c + ROOT_KIDS))[-<int>(lf - CHILD8)], a & 255)
        elif e & H_PALETTE:                    # (one table: predicts) the next-hop index
            lf = (<const uint16_t *>(c + N8_LEAF))[lf]
    elif e & H_WIDE:
        # a /16 dense with prefixes longer than /24: a direct table of 65,536
        # uint16 leaves for bits 16..31 (128 KiB)
        lf = (<const uint16_t *>c)[a & 0xFFFF]
    else:                                      # 16-bit root node
        lf = node16_leaf(c, (a >> 8) & 255)
        if lf >= CHILD:
            lf = node16_leaf(c + (<const uint32_t *>(c + ROOT_KIDS))[-<int>(lf - CHILD)], a & 255)
    lf |= <uint32_t>(e >> 48) & (0 - <uint32_t>(lf == 0))     # leaf 0: the /16 default
    return rt.nh_value[lf]


cdef inline void prefetch_chunk_root8(const lpm_root_t *rt, uint32_t a) noexcept nogil:
    # the first two lines of the chunk root node of a (its root entry must be
    # cached by now).  (Prefetching the second only where the node spans two,
    # from a handle flag, measured slower: the flag costs more instructions
    # than the spare prefetches cost bandwidth.)
    cdef const char *c = <const char *>(<uintptr_t>(kdp_ld64(&rt.t0[a >> 16]) & PTR_MASK
                                                    & ~(<uint64_t>H_FLAGS)))
    kdp_prefetch(c)
    kdp_prefetch(c + 64)


cdef inline void lookup4_batch_root8(const lpm_root_t *rt, const char *base, size_t stride,
                                     uint32_t *out, size_t n, int pf) noexcept nogil:
    # n addresses at base + i * stride -> out[i].  One lookup per iteration,
    # independent of each other, so the core keeps many in flight.  For tables
    # bigger than the L2 (pf) a two-stage ring of prefetches runs ahead: the
    # root entry of the address PF_ROOT_AHEAD ahead, then (its entry now
    # cached) the chunk root node of the address PF_CHUNK_AHEAD ahead, so those
    # misses overlap this work.  (With only the chunk stage, 16 ahead, the root
    # entry load of the address ahead missed the L2 often enough to stall the
    # core: the root stage made bgp ~20-30% faster; the distances were tuned on
    # the 900,000-prefix table.)
    cdef size_t i = 0
    cdef size_t m = n - PF_ROOT_AHEAD if (pf and n > PF_ROOT_AHEAD) else 0
    if m:                      # two per iteration: measured ~7% faster
        while i + 2 <= m:
            kdp_prefetch(&rt.t0[kdp_load32(base + (i + PF_ROOT_AHEAD) * stride) >> 16])
            kdp_prefetch(&rt.t0[kdp_load32(base + (i + PF_ROOT_AHEAD + 1) * stride) >> 16])
            prefetch_chunk_root8(rt, kdp_load32(base + (i + PF_CHUNK_AHEAD) * stride))
            prefetch_chunk_root8(rt, kdp_load32(base + (i + PF_CHUNK_AHEAD + 1) * stride))
            out[i] = lookup4_root8(rt, kdp_load32(base + i * stride))
            out[i + 1] = lookup4_root8(rt, kdp_load32(base + (i + 1) * stride))
            i += 2
        while i < m:
            kdp_prefetch(&rt.t0[kdp_load32(base + (i + PF_ROOT_AHEAD) * stride) >> 16])
            prefetch_chunk_root8(rt, kdp_load32(base + (i + PF_CHUNK_AHEAD) * stride))
            out[i] = lookup4_root8(rt, kdp_load32(base + i * stride))
            i += 1
        m = n - PF_CHUNK_AHEAD     # the last PF_ROOT_AHEAD - PF_CHUNK_AHEAD: chunk stage only
        while i < m:
            prefetch_chunk_root8(rt, kdp_load32(base + (i + PF_CHUNK_AHEAD) * stride))
            out[i] = lookup4_root8(rt, kdp_load32(base + i * stride))
            i += 1
    while i + 4 <= n:          # unrolled: measured ~5% faster on cached tables
        out[i] = lookup4_root8(rt, kdp_load32(base + i * stride))
        out[i + 1] = lookup4_root8(rt, kdp_load32(base + (i + 1) * stride))
        out[i + 2] = lookup4_root8(rt, kdp_load32(base + (i + 2) * stride))
        out[i + 3] = lookup4_root8(rt, kdp_load32(base + (i + 3) * stride))
        i += 4
    while i < n:
        out[i] = lookup4_root8(rt, kdp_load32(base + i * stride))
        i += 1


# The same lookup through the 4-byte root (t4, base4: palette tables with many
# non-empty /16s, see "4-byte root" in the module docstring).  The entry is the chunk
# handle's offset from base4, and the /16's default is read from the chunk
# (the line the lookup reads anyway): palette entry 0 of an 8-bit root node,
# N16_DFLT of a 16-bit one, WIDE_DFLT of a wide table.  Why: the 8-byte
# entries are 512 KiB, which with the chunk lines overflow the 1-2 MiB L2;
# 4-byte ones are 256 KiB.

cdef inline uint32_t lookup4_root4(const lpm_root_t *rt, const char *base, uint32_t a) noexcept nogil:
    # Leaf 0 ("no rule of the chunk") takes the default from the chunk; a
    # palette leaf needs no merge (palette entry 0 is the default), so the
    # common path of a FIB's table has none: the merge measured ~10% of a
    # lookup when done on every path (an extra load on the leaf's chain), and
    # tables without palettes (direct 8-bit leaves) measured 0-10% slower
    # through this root than through t0, so only palette tables get it.
    cdef uint32_t e = kdp_ld32(&rt.t4[a >> 16])
    cdef const char *c = base + (e & ~(<uint32_t>H_FLAGS))
    cdef uint32_t lf, w, k
    if (e & (H_WIDE | H_LEAF16)) == 0:
        w = (a >> 14) & 3
        k = (<const uint8_t *>(c + N8_RUNS))[w] + kdp_popcnt(
            (<const uint64_t *>(c + STARTS))[w] << ((~a >> 8) & 63))
        lf = (<const uint8_t *>(c + (N8_LEAF - 1)))[k]
        if lf >= CHILD8:
            lf = node16_leaf(c + (<const uint32_t *>(c + ROOT_KIDS))[-<int>(lf - CHILD8)], a & 255)
            lf |= (<const uint16_t *>(c + N8_LEAF))[0] & (0 - <uint32_t>(lf == 0))
        else:                                  # (every 8-bit root of such a table has a palette)
            lf = (<const uint16_t *>(c + N8_LEAF))[lf]
    elif e & H_WIDE:
        lf = (<const uint16_t *>c)[a & 0xFFFF]
        lf |= (<const uint16_t *>(c + WIDE_DFLT))[0] & (0 - <uint32_t>(lf == 0))
    else:
        lf = node16_leaf(c, (a >> 8) & 255)
        if lf >= CHILD:
            lf = node16_leaf(c + (<const uint32_t *>(c + ROOT_KIDS))[-<int>(lf - CHILD)], a & 255)
        lf |= (<const uint16_t *>(c + N16_DFLT))[0] & (0 - <uint32_t>(lf == 0))
    return rt.nh_value[lf]


cdef inline void prefetch_chunk_root4(const lpm_root_t *rt, const char *base, uint32_t a) noexcept nogil:
    cdef const char *c = base + (kdp_ld32(&rt.t4[a >> 16]) & ~(<uint32_t>H_FLAGS))
    kdp_prefetch(c)
    kdp_prefetch(c + 64)


cdef inline void lookup4_batch_root4(const lpm_root_t *rt, const char *base, const char *bs,
                                     size_t stride, uint32_t *out, size_t n, int pf) noexcept nogil:
    # lookup4_batch_root8 through the 4-byte root (same ring, same distances)
    cdef size_t i = 0
    cdef size_t m = n - PF_ROOT_AHEAD if (pf and n > PF_ROOT_AHEAD) else 0
    if m:
        while i + 2 <= m:
            kdp_prefetch(&rt.t4[kdp_load32(bs + (i + PF_ROOT_AHEAD) * stride) >> 16])
            kdp_prefetch(&rt.t4[kdp_load32(bs + (i + PF_ROOT_AHEAD + 1) * stride) >> 16])
            prefetch_chunk_root4(rt, base, kdp_load32(bs + (i + PF_CHUNK_AHEAD) * stride))
            prefetch_chunk_root4(rt, base, kdp_load32(bs + (i + PF_CHUNK_AHEAD + 1) * stride))
            out[i] = lookup4_root4(rt, base, kdp_load32(bs + i * stride))
            out[i + 1] = lookup4_root4(rt, base, kdp_load32(bs + (i + 1) * stride))
            i += 2
        while i < m:
            kdp_prefetch(&rt.t4[kdp_load32(bs + (i + PF_ROOT_AHEAD) * stride) >> 16])
            prefetch_chunk_root4(rt, base, kdp_load32(bs + (i + PF_CHUNK_AHEAD) * stride))
            out[i] = lookup4_root4(rt, base, kdp_load32(bs + i * stride))
            i += 1
        m = n - PF_CHUNK_AHEAD
        while i < m:
            prefetch_chunk_root4(rt, base, kdp_load32(bs + (i + PF_CHUNK_AHEAD) * stride))
            out[i] = lookup4_root4(rt, base, kdp_load32(bs + i * stride))
            i += 1
    while i + 4 <= n:
        out[i] = lookup4_root4(rt, base, kdp_load32(bs + i * stride))
        out[i + 1] = lookup4_root4(rt, base, kdp_load32(bs + (i + 1) * stride))
        out[i + 2] = lookup4_root4(rt, base, kdp_load32(bs + (i + 2) * stride))
        out[i + 3] = lookup4_root4(rt, base, kdp_load32(bs + (i + 3) * stride))
        i += 4
    while i < n:
        out[i] = lookup4_root4(rt, base, kdp_load32(bs + i * stride))
        i += 1
