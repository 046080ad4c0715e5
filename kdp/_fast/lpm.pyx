# cython: freethreading_compatible = False
"""Longest-prefix match for IPv4 and IPv6: prefix -> 32-bit value (a route id).

Classes
-------
``Lpm4``  IPv4 table.  Addresses are ints / uint32 in host byte order.
``Lpm6``  IPv6 table.  Addresses are ints (128-bit), (n, 16) uint8 arrays in
          network byte order, or (n, 2) uint64 arrays of host-order halves.

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

Structure
---------
A 65,536-entry root indexed by the top 16 address bits.  Each root entry packs
a handle of a "chunk" (low 48 bits: a pointer, its low 3 bits flags) with the
next-hop index of the longest prefix shorter than /16 that covers it (high 16
bits).  A chunk is the multibit trie (stride 8) of the rules of length >= 16
under that /16, leaf-pushed and popcount-compressed (Poptrie-style): a node is
a 256-bit bitmap with a bit where a run of equal leaves starts, the run counts
before each 64-bit word, then one leaf per run.  Leaves are next-hop indices
(0 = "no rule of this chunk covers it: use the root entry's default"; the
others index the 32-bit value table) or name a child node for the bits 24..31
of a slot holding longer prefixes.  A table with fewer than 240 next hops (a
router's FIB: a few dozen peers) gives its chunk roots 8-bit leaves and a
36-byte header, placed so that they cross no more cache lines than their size
needs: a /16 with up to 28 runs of leaves is one cache line.  Tables with more
next hops use 16-bit leaves (as do child nodes).

An IPv4 lookup is: root entry (512 KiB in all) -> the chunk's root node (one
or two lines) -> the value table, with one more node step only for prefixes
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

IPv6 uses the same root (top 16 bits); its chunks are leaf-pushed sorted
ranges (DXR-style) in three levels, each read with one vector compare:

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
time with AVX-512 gathers and masks (an empty /16 reads a static zero
record, a leaf walks a static dummy C node, so no lane branches), and a
group whose addresses all fall in empty /16s skips the rest.

Memory (``memory()``): root 768 KiB (root entries + value table), chunks
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

* IPv4 chunks are immutable once published.  An insert/delete rebuilds the
  one chunk of the affected /16 aside (microseconds), then publishes it with
  a single atomic 64-bit store into the root (release ordering), so a
  reader sees either the whole old chunk or the whole new one;
* IPv6 updates rebuild less (``Lpm6._refresh_rule``): a rule longer than /32
  rebuilds its /32's C node aside and swaps the one B value naming it (an
  atomic 64-bit store), or, when the /32 gains its first or loses its last
  such rule, publishes a new B level (copied and patched) with one store
  into the root; a /16../32 rule re-sweeps its window of B keys, rebuilds
  the C nodes inside it, and publishes the spliced B level the same way
  (or, where only values changed, stores them in place, one atomic store
  each).  Every address reads one B value, so it sees its old or its new
  answer.  Empty /16s, and windows with more than max(64, rules of the /16
  / 16) C nodes, rebuild the whole chunk as IPv4 does;
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
cimport cython
from cpython.long cimport PyLong_AsUnsignedLongLongMask

cdef extern from "Python.h":
    size_t _PyLong_NumBits(object v) except? <size_t>-1
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, uintptr_t
from libc.stdlib cimport malloc, calloc, free, realloc
from libc.string cimport memset, memcpy, memmove, memcmp

from kdp.errors import KdpError

cnp.import_array()

cdef extern from *:
    """
    #include <stdlib.h>
    #include <string.h>
    #include <sched.h>
    #include <sys/mman.h>
    #include <stdint.h>
    static inline uint64_t kdp_ld64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
    static inline void kdp_st64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline void *kdp_ldptr(void *const *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void kdp_stptr(void **p, void *v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline int kdp_ep_enter(uint64_t *epoch, int64_t *active) {
        for (;;) {
            uint64_t x = __atomic_load_n(epoch, __ATOMIC_SEQ_CST);
            int s = (int)(x & 1);
            __atomic_fetch_add(&active[s], 1, __ATOMIC_SEQ_CST);
            if (__atomic_load_n(epoch, __ATOMIC_SEQ_CST) == x) return s;
            __atomic_fetch_sub(&active[s], 1, __ATOMIC_SEQ_CST);
        }
    }
    static inline void kdp_ep_leave(int64_t *active, int s) {
        __atomic_fetch_sub(&active[s], 1, __ATOMIC_RELEASE);
    }
    static inline int64_t kdp_ld_active(int64_t *a) { return __atomic_load_n(a, __ATOMIC_SEQ_CST); }
    static inline void kdp_st_epoch(uint64_t *e, uint64_t v) { __atomic_store_n(e, v, __ATOMIC_SEQ_CST); }
    static inline void *kdp_alloc64(size_t n) {
        void *p = NULL;
        n = (n + 64 + 63) & ~(size_t)63;   /* + slack: vector loads may read 4 bytes at the last leaf */
        if (posix_memalign(&p, 64, n ? n : 64)) return NULL;
        return p;
    }
    /* A mapping of whole 2 MiB-aligned huge-page frames, asked to use
       transparent huge pages: the root table and the chunks then cost no
       TLB misses (the root alone spans 192 small pages). */
    #define KDP_HP ((size_t)2 << 20)
    static inline size_t kdp_map_size(size_t n) { return (n + KDP_HP - 1) & ~(KDP_HP - 1); }
    static inline void *kdp_map(size_t n) {
        size_t m = kdp_map_size(n);
        char *p = (char *)mmap(NULL, m + KDP_HP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        char *a;
        if (p == (char *)MAP_FAILED) return NULL;
        a = (char *)(((uintptr_t)p + KDP_HP - 1) & ~(uintptr_t)(KDP_HP - 1));
        if (a > p) munmap(p, (size_t)(a - p));
        if (a + m < p + m + KDP_HP) munmap(a + m, (size_t)(p + m + KDP_HP - (a + m)));
    #ifdef MADV_HUGEPAGE
        madvise(a, m, MADV_HUGEPAGE);
    #endif
        return a;
    }
    static inline void kdp_unmap(void *p, size_t n) { if (p) munmap(p, kdp_map_size(n)); }
    #define kdp_popcnt(x) ((uint32_t)__builtin_popcountll(x))
    #define kdp_clz64(x) __builtin_clzll(x)
    #define kdp_ctz64(x) __builtin_ctzll(x)
    #include <immintrin.h>
    #if defined(__BMI2__)
    #define kdp_low(x, s) _bzhi_u64((x), (uint32_t)(s) + 1)   /* bits 0..s of x */
    #else
    #define kdp_low(x, s) ((x) & ((((uint64_t)2) << (s)) - 1))
    #endif
    #define kdp_prefetch(p) __builtin_prefetch((const void *)(p), 0, 3)
    #define kdp_bswap64(x) __builtin_bswap64(x)
    static inline uint64_t kdp_load64(const void *p) { uint64_t v; memcpy(&v, p, 8); return v; }
    static inline uint32_t kdp_load32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }
    static inline uint32_t kdp_load16(const void *p) { uint16_t v; memcpy(&v, p, 2); return v; }
    /* the chunk of a /16 without rules: a 64-byte line holding the block size
       (and, in its last 4 bytes, the distance from the block to the node),
       then a root node with a single run whose 8-bit leaf is 0 ("use the /16's
       default") */
    static unsigned char kdp_empty_block[128] __attribute__((aligned(64))) = {
        128, 0, 0, 0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,  0, 0, 0, 0, 64, 0, 0, 0,
        1 };
    #define kdp_empty_chunk (kdp_empty_block + 64)
    /* the same for IPv6 chunks (see _look6): a 64-byte header line (size,
       number of B values), then a one-line B level with no keys (pads only)
       and its one 64-bit value 0 */
    static unsigned char kdp_empty_block6[192] __attribute__((aligned(64)));
    #define kdp_empty_chunk6 (kdp_empty_block6 + 64)
    static void kdp_init_empty6(void) {
        memset(kdp_empty_block6, 0, sizeof(kdp_empty_block6));
        ((uint64_t *)kdp_empty_block6)[0] = sizeof(kdp_empty_block6);
        ((uint64_t *)kdp_empty_block6)[1] = 1;
        memset(kdp_empty_block6 + 64, 0xFF, 64);
    }
    /* rank of x in one 64-byte line of sorted keys: how many are < x
       (unused lanes hold the all-ones key, which is never < x) */
    static inline uint32_t kdp_rank16(const void *p, uint32_t x) {
    #if defined(__AVX512BW__)
        __m512i k = _mm512_load_si512(p);
        return (uint32_t)__builtin_popcount((uint32_t)_mm512_cmplt_epu16_mask(k, _mm512_set1_epi16((short)x)));
    #else
        const uint16_t *k = (const uint16_t *)p; uint32_t c = 0; int i;
        for (i = 0; i < 32; i++) c += k[i] < x;
        return c;
    #endif
    }
    static inline uint32_t kdp_rank32(const void *p, uint32_t x, uint32_t m) {
    #if defined(__AVX512F__)
        __m512i k = _mm512_load_si512(p);
        return (uint32_t)__builtin_popcount((uint32_t)_mm512_mask_cmplt_epu32_mask((__mmask16)m, k, _mm512_set1_epi32((int)x)));
    #else
        const uint32_t *k = (const uint32_t *)p; uint32_t c = 0; int i;
        for (i = 0; i < 16; i++) c += ((m >> i) & 1) & (k[i] < x);
        return c;
    #endif
    }
    /* a bitmap B record with one range (bit 0) followed by its value 0:
       batch lookups of addresses in empty /16s read it (a bitmap level's
       steps, no format branch) */
    static uint64_t kdp_zero_rec6[8] __attribute__((aligned(64))) = { 1, 0, 0 };
    /* a C node (format 0) with no keys and value 0: batch lookups of
       addresses whose B value is a leaf read it instead of branching */
    static const uint32_t kdp_dummy_c6[32] __attribute__((aligned(64))) = {
        0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu,
        0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu,
        0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu };
    /* IPv6 batch stages over 8 addresses at once (see _batch6_staged).
       s1: the 8 addresses at q (stride bytes apart; host-order (hi, lo)
       pairs or network-order bytes) -> HI, LO; their root entries E; the
       line each lane's B level reads first, R: its bitmap record, the zero
       record (empty /16), or the key line (line-format B; those lanes' bits
       are returned: they need the scalar step).  s2 (bitmap or empty lanes
       only): the B value slots S.  s3: the B values V, a leaf v turned into
       the dummy C node | v << 48; returns the leaf lanes' bits.  Each
       prefetches what the next reads, from registers (reloading a wide
       store in pieces, or a wide load of narrow stores, stalls). */
    #define KDP_PTR48 0xFFFFFFFFFFFFULL
    #if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
    static inline void kdp_pf8(__m512i v) {
        __m128i a = _mm512_castsi512_si128(v), b = _mm512_extracti64x2_epi64(v, 1);
        __m128i c = _mm512_extracti64x2_epi64(v, 2), d = _mm512_extracti64x2_epi64(v, 3);
        __builtin_prefetch((const void *)(uintptr_t)_mm_cvtsi128_si64(a), 0, 3);
        __builtin_prefetch((const void *)(uintptr_t)_mm_extract_epi64(a, 1), 0, 3);
        __builtin_prefetch((const void *)(uintptr_t)_mm_cvtsi128_si64(b), 0, 3);
        __builtin_prefetch((const void *)(uintptr_t)_mm_extract_epi64(b, 1), 0, 3);
        __builtin_prefetch((const void *)(uintptr_t)_mm_cvtsi128_si64(c), 0, 3);
        __builtin_prefetch((const void *)(uintptr_t)_mm_extract_epi64(c, 1), 0, 3);
        __builtin_prefetch((const void *)(uintptr_t)_mm_cvtsi128_si64(d), 0, 3);
        __builtin_prefetch((const void *)(uintptr_t)_mm_extract_epi64(d, 1), 0, 3);
    }
    static inline uint32_t kdp_v6_s1(const uint64_t *t0, const char *q, size_t stride, int hostpairs,
                                     uint64_t *HI, uint64_t *LO, uint64_t *E, uint64_t *R,
                                     uint64_t empty, uint64_t zrec) {
        __m512i hi, lo;
        if (stride == 16) {
            __m512i x = _mm512_loadu_si512(q), y = _mm512_loadu_si512(q + 64);
            hi = _mm512_permutex2var_epi64(x, _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0), y);
            lo = _mm512_permutex2var_epi64(x, _mm512_set_epi64(15, 13, 11, 9, 7, 5, 3, 1), y);
        } else {
            __m512i ix = _mm512_mullo_epi64(_mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi64((long long)stride));
            hi = _mm512_i64gather_epi64(ix, (const long long *)q, 1);
            lo = _mm512_i64gather_epi64(ix, (const long long *)(q + 8), 1);
        }
        if (!hostpairs) {
            __m512i bs = _mm512_set4_epi32(0x08090a0b, 0x0c0d0e0f, 0x00010203, 0x04050607);
            hi = _mm512_shuffle_epi8(hi, bs);
            lo = _mm512_shuffle_epi8(lo, bs);
        }
        __m512i e = _mm512_i64gather_epi64(_mm512_srli_epi64(hi, 48), (const long long *)t0, 8);
        __m512i h = _mm512_and_si512(e, _mm512_set1_epi64(KDP_PTR48));
        __m512i b = _mm512_andnot_si512(_mm512_set1_epi64(63), h);
        __mmask8 bm = _mm512_test_epi64_mask(h, _mm512_set1_epi64(1));
        __mmask8 em = _mm512_cmpeq_epi64_mask(h, _mm512_set1_epi64((long long)empty));
        __m512i off = _mm512_and_si512(_mm512_srli_epi64(hi, 34), _mm512_set1_epi64(0x3FF0));
        __m512i r = _mm512_mask_add_epi64(b, bm, b, off);
        r = _mm512_mask_mov_epi64(r, em, _mm512_set1_epi64((long long)zrec));
        kdp_pf8(r);
        _mm512_storeu_si512(HI, hi);
        _mm512_storeu_si512(LO, lo);
        _mm512_storeu_si512(E, e);
        _mm512_storeu_si512(R, r);
        return (uint32_t)(~bm & ~em & 0xFF) | ((uint32_t)em << 8);
    }
    static inline void kdp_v6_s2(const uint64_t *HI, const uint64_t *E, const uint64_t *R,
                                 uint64_t *S, uint64_t zrec) {
        __m512i r = _mm512_loadu_si512(R);
        __m512i bits = _mm512_i64gather_epi64(r, (const long long *)0, 1);
        __m512i cnt = _mm512_i64gather_epi64(_mm512_add_epi64(r, _mm512_set1_epi64(8)), (const long long *)0, 1);
        __m512i x = _mm512_and_si512(_mm512_srli_epi64(_mm512_loadu_si512(HI), 32), _mm512_set1_epi64(63));
        __m512i low = _mm512_sub_epi64(_mm512_sllv_epi64(_mm512_set1_epi64(2), x), _mm512_set1_epi64(1));
        __m512i idx = _mm512_add_epi64(_mm512_popcnt_epi64(_mm512_and_si512(bits, low)),
                                       _mm512_and_si512(cnt, _mm512_set1_epi64(0xFFFFFFFF)));
        __m512i vb = _mm512_add_epi64(_mm512_andnot_si512(_mm512_set1_epi64(63),
                         _mm512_and_si512(_mm512_loadu_si512(E), _mm512_set1_epi64(KDP_PTR48))),
                         _mm512_set1_epi64(16384 - 8));
        vb = _mm512_mask_mov_epi64(vb, _mm512_cmpeq_epi64_mask(r, _mm512_set1_epi64((long long)zrec)),
                                   _mm512_set1_epi64((long long)(zrec + 16 - 8)));
        __m512i sl = _mm512_add_epi64(vb, _mm512_slli_epi64(idx, 3));
        kdp_pf8(sl);
        _mm512_storeu_si512(S, sl);
    }
    static inline uint32_t kdp_v6_s3(const uint64_t *S, uint64_t *V, uint64_t dummy) {
        __m512i v = _mm512_i64gather_epi64(_mm512_loadu_si512(S), (const long long *)0, 1);
        __mmask8 lf = _mm512_cmple_epu64_mask(v, _mm512_set1_epi64(0xFFFF));
        __m512i d = _mm512_or_si512(_mm512_slli_epi64(v, 48), _mm512_set1_epi64((long long)dummy));
        v = _mm512_mask_mov_epi64(v, lf, d);
        if (lf != 0xFF) {
            __m512i nd = _mm512_and_si512(v, _mm512_set1_epi64(KDP_PTR48 & ~63ULL));
            kdp_pf8(nd);
            kdp_pf8(_mm512_add_epi64(nd, _mm512_set1_epi64(64)));
        }
        _mm512_storeu_si512(V, v);
        return (uint32_t)lf;
    }
    /* out[0..15] holds next-hop indices (0: use the /16 default, E >> 48):
       -> their values */
    static inline void kdp_v6_fin16(uint32_t *out, const uint64_t *E, const uint32_t *nhv) {
        __m512i r = _mm512_loadu_si512(out);
        __m256i d0 = _mm512_cvtepi64_epi32(_mm512_srli_epi64(_mm512_loadu_si512(E), 48));
        __m256i d1 = _mm512_cvtepi64_epi32(_mm512_srli_epi64(_mm512_loadu_si512(E + 8), 48));
        __m512i d = _mm512_inserti64x4(_mm512_castsi256_si512(d0), d1, 1);
        r = _mm512_mask_mov_epi32(r, _mm512_testn_epi32_mask(r, r), d);
        _mm512_storeu_si512(out, _mm512_i32gather_epi32(r, (const int *)nhv, 4));
    }
    #else
    static inline void kdp_v6_fin16(uint32_t *out, const uint64_t *E, const uint32_t *nhv) {
        int j;
        for (j = 0; j < 16; j++) {
            uint32_t r = out[j];
            out[j] = nhv[r ? r : (uint32_t)(E[j] >> 48)];
        }
    }
    static inline uint32_t kdp_v6_s1(const uint64_t *t0, const char *q, size_t stride, int hostpairs,
                                     uint64_t *HI, uint64_t *LO, uint64_t *E, uint64_t *R,
                                     uint64_t empty, uint64_t zrec) {
        uint32_t ln = 0; int j;
        for (j = 0; j < 8; j++) {
            uint64_t hi, lo, e, h;
            memcpy(&hi, q + j * stride, 8);
            memcpy(&lo, q + j * stride + 8, 8);
            if (!hostpairs) { hi = __builtin_bswap64(hi); lo = __builtin_bswap64(lo); }
            HI[j] = hi; LO[j] = lo;
            e = t0[hi >> 48]; h = e & KDP_PTR48;
            E[j] = e;
            R[j] = (h & ~(uint64_t)63) + ((h & 1) ? ((hi >> 34) & 0x3FF0) : 0);
            if (h == empty) { R[j] = zrec; ln |= 256u << j; }
            else if (!(h & 1)) ln |= 1u << j;
            __builtin_prefetch((const void *)(uintptr_t)R[j], 0, 3);
        }
        return ln;
    }
    static inline void kdp_v6_s2(const uint64_t *HI, const uint64_t *E, const uint64_t *R,
                                 uint64_t *S, uint64_t zrec) {
        int j;
        for (j = 0; j < 8; j++) {
            const uint64_t *rec = (const uint64_t *)(uintptr_t)R[j];
            uint64_t vb = ((E[j] & KDP_PTR48) & ~(uint64_t)63) + 16384;
            uint32_t s = (uint32_t)(HI[j] >> 32) & 63;
            uint64_t low = s == 63 ? ~(uint64_t)0 : (((uint64_t)2 << s) - 1);
            if (R[j] == zrec) vb = zrec + 16;
            S[j] = vb + 8 * ((uint64_t)(uint32_t)rec[1] - 1 + (uint64_t)__builtin_popcountll(rec[0] & low));
            __builtin_prefetch((const void *)(uintptr_t)S[j], 0, 3);
        }
    }
    static inline uint32_t kdp_v6_s3(const uint64_t *S, uint64_t *V, uint64_t dummy) {
        uint32_t lf = 0; int j;
        for (j = 0; j < 8; j++) {
            uint64_t v = *(const uint64_t *)(uintptr_t)S[j];
            if (v <= 0xFFFF) { lf |= 1u << j; v = (v << 48) | dummy; }
            V[j] = v;
            __builtin_prefetch((const void *)(uintptr_t)(v & KDP_PTR48 & ~63ULL), 0, 3);
            __builtin_prefetch((const void *)(uintptr_t)((v & KDP_PTR48 & ~63ULL) + 64), 0, 3);
        }
        return lf;
    }
    #endif
    /* the empty IPv4 chunk in wide form (a direct table of 65,536 zero
       leaves); small mostly-empty tables use it so that all their lookups take
       the same (wide) path */
    static unsigned char kdp_empty_wide_block[64 + 131072 + 64] __attribute__((aligned(64)));
    #define kdp_empty_wide (kdp_empty_wide_block + 65)   /* handle: table | WIDE */
    static void kdp_init_empty_wide(void) {
        *(uint64_t *)kdp_empty_wide_block = sizeof(kdp_empty_wide_block);
    }

    """
    uint64_t kdp_ld64(const uint64_t *p) nogil
    void kdp_st64(uint64_t *p, uint64_t v) nogil
    void *kdp_ldptr(void *const *p) nogil
    void kdp_stptr(void **p, void *v) nogil
    int kdp_ep_enter(uint64_t *epoch, int64_t *active) nogil
    void kdp_ep_leave(int64_t *active, int s) nogil
    int64_t kdp_ld_active(int64_t *a) nogil
    void kdp_st_epoch(uint64_t *e, uint64_t v) nogil
    void *kdp_alloc64(size_t n) nogil
    void *kdp_map(size_t n) nogil
    void kdp_unmap(void *p, size_t n) nogil
    uint32_t kdp_popcnt(uint64_t x) nogil
    int kdp_clz64(uint64_t x) nogil
    int kdp_ctz64(uint64_t x) nogil
    uint64_t kdp_low(uint64_t x, uint32_t s) nogil
    void kdp_prefetch(const void *p) nogil
    uint64_t kdp_bswap64(uint64_t x) nogil
    uint64_t kdp_load64(const void *p) nogil
    uint32_t kdp_load32(const void *p) nogil
    uint32_t kdp_load16(const void *p) nogil
    unsigned char *kdp_empty_chunk
    unsigned char *kdp_empty_chunk6
    unsigned char *kdp_empty_wide
    const uint32_t *kdp_dummy_c6
    uint64_t *kdp_zero_rec6
    void kdp_init_empty_wide()
    void kdp_init_empty6()
    uint32_t kdp_rank16(const void *p, uint32_t x) nogil
    uint32_t kdp_rank32(const void *p, uint32_t x, uint32_t m) nogil
    int sched_yield() nogil
    uint32_t kdp_v6_s1(const uint64_t *t0, const char *q, size_t stride, int hostpairs,
                       uint64_t *HI, uint64_t *LO, uint64_t *E, uint64_t *R,
                       uint64_t empty, uint64_t zrec) nogil
    void kdp_v6_s2(const uint64_t *HI, const uint64_t *E, const uint64_t *R, uint64_t *S,
                   uint64_t zrec) nogil
    uint32_t kdp_v6_s3(const uint64_t *S, uint64_t *V, uint64_t dummy) nogil
    void kdp_v6_fin16(uint32_t *out, const uint64_t *E, const uint32_t *nhv) nogil

kdp_init_empty_wide()
kdp_init_empty6()

MISS = 0xFFFFFFFF
MAX_VALUES = 0xFEFF

cdef extern from *:
    """
    #define KDP_PTR_MASK 0xFFFFFFFFFFFFULL
    """
    const uint64_t PTR_MASK "KDP_PTR_MASK"

cdef enum:
    H_WIDE = 1                # IPv4 handle flags (low bits of a root entry):
    H_LEAF16_SHIFT = 1        # ... the root node has 16-bit leaves
    H_LEAF16 = 2
    H_FLAGS = 7               # (chunk nodes are 8-byte aligned, wide tables 64)
    CHILD8 = 0xF0             # 8-bit leaves >= CHILD8 name child (leaf - CHILD8)
    CHILD = 0xFF00            # leaves >= CHILD name child node (leaf - CHILD)
    NH_LIMIT = 0xFF00         # next-hop indices are 1 .. NH_LIMIT-1
    PF_MIN_BYTES = 1 << 20    # ... when the chunks are bigger than this
    PF4 = 8                   # IPv4: the chunk lines of the address PF4 ahead,
    RD4 = 24                  # ... the root entry of the address RD4 ahead

rule_dtype = np.dtype([("hi", "<u8"), ("lo", "<u8"), ("nh", "<u4"), ("len", "u1"),
                       ("pad", "u1", (3,))])
assert rule_dtype.itemsize == sizeof(lpm_rule_t)

# --------------------------------------------------------------------------
# lookup kernels
# --------------------------------------------------------------------------
# IPv4 chunk (one /16): a root node for bits 16..23, child nodes for bits
# 24..31 under the slots holding rules longer than /24.  A node is a 256-bit
# bitmap with a bit set where a run of equal leaves starts (bit 0 always), run
# counts, one leaf per run; slot p's leaf is
# leaf[cnt[w] + popcount(bm[w] bits 0..p&63) - 1], w = p >> 6.
#   16-bit node (child nodes; root nodes of tables with many next hops,
#   handle flag H_LEAF16), 8-byte aligned:
#     uint64 bm[4] @0, uint16 cnt[4] @32, uint32 unused @40, uint16 leaf[] @44
#   8-bit root node (tables with < CHILD8 next hops: a router's FIB):
#     uint64 bm[4] @0, uint8 cnt[4] @32, uint8 leaf[] @36, leaves >= CHILD8
#     naming child (leaf - CHILD8); placed so that it crosses no more cache
#     lines than its size needs: up to 28 runs (most /16s of a BGP table)
#     are one line.
# In front of a root node: uint32 distance from the start of its allocation
# @-4, then the child offsets (from the root node) @-8, -12, ...

cdef inline uint32_t _leaf(const char *nd, uint32_t p) noexcept nogil:
    cdef uint32_t w = p >> 6
    cdef uint64_t bmw = (<const uint64_t *>nd)[w]
    cdef uint32_t k = (<const uint16_t *>(nd + 32))[w] + kdp_popcnt(kdp_low(bmw, p & 63))
    return (<const uint16_t *>(nd + 42))[k]


cdef inline uint32_t _look4(const lpm_root_t *rt, uint32_t a) noexcept nogil:
    # One predictable branch picks the format, the common one first: a FIB's
    # 8-bit roots.  (Branch-free variants, and one masked 16-bit load for both
    # leaf widths, measured slower: the branch lets the core run ahead.)
    cdef uint64_t e = kdp_ld64(&rt.t0[a >> 16])
    cdef const char *c = <const char *>(<uintptr_t>(e & PTR_MASK & ~(<uint64_t>H_FLAGS)))
    cdef uint32_t lf, w, k
    if (e & (H_WIDE | H_LEAF16)) == 0:
        # 8-bit root node: runs started at or before slot p = bits 16..23, the
        # word's bits 0..p&63 shifted to the top (one shift instead of a mask)
        w = (a >> 14) & 3
        k = (<const uint8_t *>(c + 32))[w] + kdp_popcnt((<const uint64_t *>c)[w] << ((~a >> 8) & 63))
        lf = (<const uint8_t *>(c + 35))[k]
        if lf >= CHILD8:
            lf = _leaf(c + (<const uint32_t *>(c - 8))[-<int>(lf - CHILD8)], a & 255)
    elif e & H_WIDE:
        # a /16 dense with prefixes longer than /24: a direct table of 65,536
        # uint16 leaves for bits 16..31 (128 KiB)
        lf = (<const uint16_t *>c)[a & 0xFFFF]
    else:                                      # 16-bit root node
        lf = _leaf(c, (a >> 8) & 255)
        if lf >= CHILD:
            lf = _leaf(c + (<const uint32_t *>(c - 8))[-<int>(lf - CHILD)], a & 255)
    lf |= <uint32_t>(e >> 48) & (0 - <uint32_t>(lf == 0))     # leaf 0: the /16 default
    return rt.nh_value[lf]


# IPv6 chunk (one /16; handle = B base | format of its B level; every block
# starts with a 64-byte header line {uint64 size, uint64 number of B values},
# the level it holds follows): leaf-pushed disjoint ranges, three levels.
#   B: bits 16..31.  format 0 (<= 32 range starts after the first): one line
#      of 32 uint16 keys (start - 1, sorted; unused lanes 0xFFFF), range r =
#      number of keys < x, values uint64 at base + 64 + 8r.  Format 1 (more):
#      a run bitmap of 1,024 16-byte records (uint64 bits: a range starts here;
#      uint32: ranges started before the word), values at base + 16384.
#      A B value <= 0xFFFF is a leaf (next-hop index; 0 = the /16's default),
#      else the address of a C node | its format (bits 1..0).  C nodes sit
#      behind their B level in the same block, or (after an incremental
#      update) in a block of their own; a writer swaps one B value with one
#      atomic store.
#   C: bits 32..63 of one /32 with rules longer than /32.  format 0 (<= 16
#      keys): one line of 16 uint32 keys (start - 1; unused 0xFFFFFFFF),
#      uint32 values at +64.  Format 1 (<= 256): a top line (15 keys: first
#      key of blocks 1..; lane 15 = block count nb), nb lines of 16 keys,
#      values at +64 + 64 nb.  Format 2: uint32 n, n uint32 starts at +8
#      (binary search), values after them.
#   D: bits 64..127 of one /64 with longer rules: uint32 n, n uint64 starts
#      at +8, n + 1 uint32 values after them (binary search; rare).
# A C value < 2^31 is a leaf, else bits 30..2 are the D child's offset in
# 64-byte units from the C node (same block).

cdef extern from *:
    """
    #define KDP_V6_NODE 0x80000000u
    #define KDP_V6_TAG 0x8000000000000000ULL
    """
    const uint32_t V6_NODE "KDP_V6_NODE"
    const uint64_t V6_TAG "KDP_V6_TAG"   # a B value being built: offset from the B base

cdef enum:
    B_LINE_MAX = 32           # keys of a one-line B level
    B_BITMAP = 16384          # bytes of a bitmap B level before its values
    SPLICE_MAX_NODES = 64     # a /16../32 update rebuilding more C nodes (and more than
                              # 1/16 of the /16's rules) rebuilds the whole /16
    LEAF_MAX = 0xFFFF         # B values above this are C node addresses
    C_LINE_MAX = 16
    C_TWO_MAX = 256


cdef inline bint _empty6(uintptr_t h) noexcept nogil:
    return h == <uintptr_t>kdp_empty_chunk6


cdef inline uint32_t _c_look(const char *nd, uint32_t f, uint32_t x) noexcept nogil:
    cdef uint32_t j, nb, a, z, m
    cdef uint32_t n
    cdef const uint32_t *k
    if f == 0:
        return (<const uint32_t *>(nd + 64))[kdp_rank32(nd, x, 0xFFFF)]
    if f == 1:
        j = kdp_rank32(nd, x, 0x7FFF)
        nb = (<const uint32_t *>nd)[15]
        j = 16 * j + kdp_rank32(nd + 64 + 64 * <size_t>j, x, 0xFFFF)
        return (<const uint32_t *>(nd + 64 + 64 * <size_t>nb))[j]
    n = (<const uint32_t *>nd)[0]
    k = <const uint32_t *>(nd + 8)
    a = 0
    z = n
    while a < z:               # a = number of starts <= x
        m = (a + z) >> 1
        if k[m] <= x:
            a = m + 1
        else:
            z = m
    return (<const uint32_t *>(nd + 8 + 4 * <size_t>n))[a]


cdef inline uint32_t _d_look(const char *nd, uint64_t x) noexcept nogil:
    cdef uint32_t n = (<const uint32_t *>nd)[0]
    cdef const uint64_t *k = <const uint64_t *>(nd + 8)
    cdef uint32_t a = 0, z = n, m
    while a < z:
        m = (a + z) >> 1
        if k[m] <= x:
            a = m + 1
        else:
            z = m
    return (<const uint32_t *>(nd + 8 + 8 * <size_t>n))[a]


cdef inline uint64_t *_b_slot(uintptr_t h, uint32_t x) noexcept nogil:
    # where the B level of handle h keeps the value of x (bits 16..31)
    cdef char *b = <char *>(h & ~(<uintptr_t>63))
    cdef const char *rec
    if h & 1:
        rec = b + ((x >> 6) << 4)
        return (<uint64_t *>(b + B_BITMAP)) + ((<const uint32_t *>(rec + 8))[0] - 1
                + kdp_popcnt(kdp_low((<const uint64_t *>rec)[0], x & 63)))
    return (<uint64_t *>(b + 64)) + kdp_rank16(b, x)


cdef inline uint32_t _c_value(uint64_t v, uint64_t hi, uint64_t lo) noexcept nogil:
    # the leaf of (hi, lo) under B value v (a leaf, or a C node and maybe a D)
    cdef const char *nd
    cdef uint32_t r
    if v <= LEAF_MAX:
        return <uint32_t>v
    nd = <const char *>(<uintptr_t>(v & ~(<uint64_t>63)))
    r = _c_look(nd, <uint32_t>v & 3, <uint32_t>hi)
    if r & V6_NODE:
        r = _d_look(nd + 64 * <size_t>((r >> 2) & 0x1FFFFFFF), lo)
    return r


cdef inline uint32_t _look6(const lpm_root_t *rt, uint64_t hi, uint64_t lo) noexcept nogil:
    cdef uint64_t e = kdp_ld64(&rt.t0[hi >> 48])
    cdef uint32_t v = _c_value(kdp_ld64(_b_slot(<uintptr_t>(e & PTR_MASK),
                                                <uint32_t>(hi >> 32) & 0xFFFF)), hi, lo)
    v |= <uint32_t>(e >> 48) & (0 - <uint32_t>(v == 0))
    return rt.nh_value[v]


cdef inline void _prefetch4(const lpm_root_t *rt, uint32_t a) noexcept nogil:
    # the first two lines of the chunk root node of a (its root entry must be
    # cached by now).  (Prefetching the second only where the node spans two,
    # from a handle flag, measured slower: the flag costs more instructions
    # than the spare prefetches cost bandwidth.)
    cdef const char *c = <const char *>(<uintptr_t>(kdp_ld64(&rt.t0[a >> 16]) & PTR_MASK
                                                    & ~(<uint64_t>H_FLAGS)))
    kdp_prefetch(c)
    kdp_prefetch(c + 64)


cdef void _batch4(const lpm_root_t *rt, const char *base, size_t stride,
                  uint32_t *out, size_t n, int pf) noexcept nogil:
    # One lookup per iteration, independent of each other, so the core keeps
    # many in flight.  For tables bigger than the L2 (pf) a two-stage ring of
    # prefetches runs ahead: the root entry of the address RD4 ahead, then (its
    # entry now cached) the chunk root node of the address PF4 ahead, so those
    # misses overlap this work.  (With only the chunk stage, 16 ahead, the root
    # entry load of the address ahead missed the L2 often enough to stall the
    # core: the root stage made bgp ~20-30% faster; the distances were tuned on
    # the 900,000-prefix table.)
    cdef size_t i = 0
    cdef size_t m = n - RD4 if (pf and n > RD4) else 0
    if m:                      # two per iteration: measured ~7% faster
        while i + 2 <= m:
            kdp_prefetch(&rt.t0[kdp_load32(base + (i + RD4) * stride) >> 16])
            kdp_prefetch(&rt.t0[kdp_load32(base + (i + RD4 + 1) * stride) >> 16])
            _prefetch4(rt, kdp_load32(base + (i + PF4) * stride))
            _prefetch4(rt, kdp_load32(base + (i + PF4 + 1) * stride))
            out[i] = _look4(rt, kdp_load32(base + i * stride))
            out[i + 1] = _look4(rt, kdp_load32(base + (i + 1) * stride))
            i += 2
        while i < m:
            kdp_prefetch(&rt.t0[kdp_load32(base + (i + RD4) * stride) >> 16])
            _prefetch4(rt, kdp_load32(base + (i + PF4) * stride))
            out[i] = _look4(rt, kdp_load32(base + i * stride))
            i += 1
        m = n - PF4            # the last RD4 - PF4: chunk stage only
        while i < m:
            _prefetch4(rt, kdp_load32(base + (i + PF4) * stride))
            out[i] = _look4(rt, kdp_load32(base + i * stride))
            i += 1
    while i + 4 <= n:          # unrolled: measured ~5% faster on cached tables
        out[i] = _look4(rt, kdp_load32(base + i * stride))
        out[i + 1] = _look4(rt, kdp_load32(base + (i + 1) * stride))
        out[i + 2] = _look4(rt, kdp_load32(base + (i + 2) * stride))
        out[i + 3] = _look4(rt, kdp_load32(base + (i + 3) * stride))
        i += 4
    while i < n:
        out[i] = _look4(rt, kdp_load32(base + i * stride))
        i += 1


cdef enum:
    G6 = 128                  # IPv6 batches walk in stages, that many addresses per group


cdef void _batch6_staged(const lpm_root_t *rt, const char *base, size_t stride,
                         uint32_t *out, size_t n, int hostpairs) noexcept nogil:
    # Groups of G6 addresses go through the levels in stages, each stage
    # prefetching what the next one reads, so the misses of a group overlap.
    # Stages 1-3 run 8 addresses at a time (kdp_v6_s1..s3: AVX-512 gathers,
    # masks instead of branches): root entries, B records (empty /16s read a
    # static zero record), B values (a leaf becomes the dummy C node, so
    # stage 4 does not branch on leaf or node).  Stage 4, one C-line compare
    # per address, is scalar.  A group with a line-format B level takes the
    # scalar B step; a group of leaves only (addresses outside the table) skips
    # the C stage.
    cdef uint64_t HI[G6]
    cdef uint64_t LO[G6]
    cdef uint64_t E[G6]
    cdef uint64_t R[G6]
    cdef uint64_t S[G6]
    cdef uint64_t V[G6]
    cdef uint64_t TAIL[2 * G6]
    cdef size_t g0 = 0, m, j
    cdef const char *q
    cdef const char *nd
    cdef uint64_t v
    cdef uint32_t r, k, nln, nleaf, nemp
    cdef uint64_t zrec = <uint64_t>(<uintptr_t>kdp_zero_rec6)
    cdef uint64_t emp = <uint64_t>(<uintptr_t>kdp_empty_chunk6)
    cdef uint64_t dummy = <uint64_t>(<uintptr_t>kdp_dummy_c6)
    while g0 < n:
        m = n - g0
        if m > G6:
            m = G6
        nln = 0
        nemp = 0
        if m == G6:
            for j in range(0, m, 8):
                k = kdp_v6_s1(rt.t0, base + (g0 + j) * stride, stride, hostpairs,
                              HI + j, LO + j, E + j, R + j, emp, zrec)
                nln |= k & 0xFF
                nemp += kdp_popcnt(k >> 8)
        else:                      # a short last group: copy it, padded to 8s
            for j in range((m + 7) & ~(<size_t>7)):
                if j < m:
                    memcpy(&TAIL[2 * j], base + (g0 + j) * stride, 16)
                else:
                    TAIL[2 * j] = 0
                    TAIL[2 * j + 1] = 0
            for j in range(0, m, 8):
                k = kdp_v6_s1(rt.t0, <const char *>&TAIL[2 * j], 16, hostpairs,
                              HI + j, LO + j, E + j, R + j, emp, zrec)
                k &= (0x101 << (m - j)) - 0x101 if m - j < 8 else 0xFFFF
                nln |= k & 0xFF
                nemp += kdp_popcnt(k >> 8)
        if nemp == m:              # all in empty /16s: their defaults
            for j in range(m):
                out[g0 + j] = rt.nh_value[<uint32_t>(E[j] >> 48)]
            g0 += m
            continue
        if nln == 0:
            for j in range(0, m, 8):
                kdp_v6_s2(HI + j, E + j, R + j, S + j, zrec)
        else:                      # (pad lanes too: stage 3 reads all 8 of a block)
            for j in range((m + 7) & ~(<size_t>7)):
                S[j] = <uint64_t>(<uintptr_t>_b_slot(<uintptr_t>(E[j] & PTR_MASK),
                                                    <uint32_t>(HI[j] >> 32) & 0xFFFF))
                kdp_prefetch(<const void *>(<uintptr_t>S[j]))
        nleaf = 0
        for j in range(0, m, 8):
            nleaf += kdp_popcnt(kdp_v6_s3(S + j, V + j, dummy) & ((1 << (m - j)) - 1 if m - j < 8 else 0xFF))
        if nleaf == m:             # leaves only (e.g. addresses outside the table)
            for j in range(m):
                r = <uint32_t>(V[j] >> 48)
                r |= <uint32_t>(E[j] >> 48) & (0 - <uint32_t>(r == 0))
                out[g0 + j] = rt.nh_value[r]
            g0 += m
            continue
        for j in range(m):
            v = V[j]
            nd = <const char *>(<uintptr_t>(v & PTR_MASK & ~(<uint64_t>63)))
            r = _c_look(nd, <uint32_t>v & 3, <uint32_t>HI[j])
            if r & V6_NODE:
                r = _d_look(nd + 64 * <size_t>((r >> 2) & 0x1FFFFFFF), LO[j])
            out[g0 + j] = r | <uint32_t>(v >> 48)      # (the leaf, for the dummy node)
        j = 0
        while j + 16 <= m:         # /16 defaults and values, 16 at a time
            kdp_v6_fin16(out + g0 + j, E + j, rt.nh_value)
            j += 16
        while j < m:
            r = out[g0 + j]
            r |= <uint32_t>(E[j] >> 48) & (0 - <uint32_t>(r == 0))
            out[g0 + j] = rt.nh_value[r]
            j += 1
        g0 += m


cdef void _batch6(const lpm_root_t *rt, const char *base, size_t stride,
                  uint32_t *out, size_t n, int hostpairs) noexcept nogil:
    # Batches of 8 or more go through the levels in stages (_batch6_staged:
    # faster at every table size measured, cache-resident ones too); shorter
    # ones one address at a time.
    cdef size_t i
    cdef const char *q
    cdef uint64_t hi, lo
    if n >= 8:
        _batch6_staged(rt, base, stride, out, n, hostpairs)
        return
    for i in range(n):
        q = base + i * stride
        if hostpairs:
            hi = kdp_load64(q)
            lo = kdp_load64(q + 8)
        else:
            hi = kdp_bswap64(kdp_load64(q))
            lo = kdp_bswap64(kdp_load64(q + 8))
        out[i] = _look6(rt, hi, lo)


# --------------------------------------------------------------------------
# chunk builder
# --------------------------------------------------------------------------

ctypedef struct buf_t:
    char *p
    size_t n
    size_t cap


cdef int _reserve(buf_t *b, size_t extra, size_t align, size_t *off) noexcept nogil:
    cdef size_t start = (b.n + align - 1) & ~(align - 1)
    cdef size_t need = start + extra
    cdef size_t cap
    cdef char *q
    if need > b.cap:
        cap = b.cap * 2 if b.cap else 4096
        while cap < need:
            cap *= 2
        q = <char *>realloc(b.p, cap)
        if q == NULL:
            return -1
        b.p = q
        b.cap = cap
    if start > b.n:
        memset(b.p + b.n, 0, start - b.n)
    memset(b.p + start, 0, extra)
    b.n = need
    off[0] = start
    return 0


cdef inline uint32_t _rbyte(const lpm_rule_t *r, int d) noexcept nogil:
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
        bb = _rbyte(&rules[k], d)
        g = k
        has_long = 0
        while g < n and _rbyte(&rules[g], d) == bb:
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


cdef void _put_node16(char *nd, const uint64_t *bm, const uint16_t *leaves,
                      uint32_t nruns) noexcept nogil:
    cdef uint32_t q = 0
    cdef int w
    memcpy(nd, bm, 32)
    for w in range(4):
        (<uint16_t *>(nd + 32))[w] = <uint16_t>q
        q += kdp_popcnt(bm[w])
    memcpy(nd + 44, leaves, nruns * 2)


cdef ssize_t _build_child(buf_t *b, size_t chunk0, const lpm_rule_t *rules, size_t n,
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
    if _reserve(b, 44 + nruns * 2, 8, &start) < 0:
        return -1
    _put_node16(b.p + start, bm, leaves, nruns)
    return <ssize_t>(start - chunk0)


cdef int _build_root4(buf_t *b, const lpm_rule_t *rules, size_t n, size_t blk,
                      int leaf8, size_t *off) noexcept nogil:
    """Append the root node (bits 16..23) of one /16's rules, preceded by its
    child offsets and its distance from blk (the start of the allocation),
    then its children.  leaf8: 8-bit leaves where they fit.  off = the node's
    offset.  Returns the handle flags (H_LEAF16 or 0), or -1 when out of
    memory."""
    cdef uint32_t slots[256]
    cdef uint32_t ch_s[256]
    cdef uint32_t ch_e[256]
    cdef uint32_t ch_inh[256]
    cdef uint16_t leaves[256]
    cdef uint64_t bm[4]
    cdef int nch, ci, w, leaf16
    cdef uint32_t nruns, r, q
    cdef size_t node, start, size
    cdef ssize_t co
    cdef char *nd
    nch = _node_slots(rules, n, 16, 16, 0, slots, ch_s, ch_e, ch_inh)
    nruns = _node_runs(slots, bm, leaves)
    # 8-bit leaves when the table asks for them (it has fewer than CHILD8 next
    # hops: a router's FIB) and they fit; the table decides rather than each
    # chunk, so that the lookup's width branch predicts
    leaf16 = not leaf8 or nch > 0x100 - CHILD8
    for r in range(nruns):
        if CHILD8 <= leaves[r] < CHILD:
            leaf16 = 1
    if leaf16:
        # the child node format, 8-byte aligned: 16-bit leaves rarely fit one
        # line, and packing measured faster than line alignment for them
        size = 44 + 2 * nruns
        node = (b.n + 4 * <size_t>nch + 4 + 7) & ~(<size_t>7)
    else:
        # as few cache lines as its size allows: no more line boundaries
        # inside than needed (a line of padding at most)
        size = 36 + nruns
        node = (b.n + 4 * <size_t>nch + 4 + 7) & ~(<size_t>7)
        if (node & 63) + size > ((size + 63) & ~(<size_t>63)):
            node = (node + 63) & ~(<size_t>63)
    if _reserve(b, node - b.n + size, 1, &start) < 0:
        return -1
    nd = b.p + node
    if leaf16:
        _put_node16(nd, bm, leaves, nruns)
    else:
        memcpy(nd, bm, 32)
        q = 0
        for w in range(4):
            (<uint8_t *>(nd + 32))[w] = <uint8_t>q
            q += kdp_popcnt(bm[w])
        for r in range(nruns):
            if leaves[r] >= CHILD:
                (<uint8_t *>(nd + 36))[r] = <uint8_t>(CHILD8 + leaves[r] - CHILD)
            else:
                (<uint8_t *>(nd + 36))[r] = <uint8_t>leaves[r]
    (<uint32_t *>(nd - 4))[0] = <uint32_t>(node - blk)
    for ci in range(nch):
        co = _build_child(b, node, rules + ch_s[ci], ch_e[ci] - ch_s[ci], ch_inh[ci])
        if co < 0:
            return -1
        (<uint32_t *>(b.p + node - 8))[-ci] = <uint32_t>co
    off[0] = node
    return H_LEAF16 if leaf16 else 0


ctypedef struct bnd_t:        # a range start, its value, its child group + 1 (0: none)
    uint64_t s
    uint32_t v
    uint32_t g

ctypedef struct grp_t:        # rules [a, b) of one child slot, the nh they inherit
    uint32_t a
    uint32_t b
    uint32_t inh
    uint32_t pad


cdef inline uint64_t _key6(const lpm_rule_t *r, int lvl) noexcept nogil:
    if lvl == 0:
        return (r.hi >> 32) & 0xFFFF
    if lvl == 1:
        return r.hi & (<uint64_t>0xFFFFFFFF)
    return r.lo


cdef inline int _emit6(buf_t *bd, uint64_t s, uint32_t v, uint32_t g) noexcept nogil:
    cdef size_t o
    cdef bnd_t *last
    if bd.n:
        last = <bnd_t *>(bd.p + bd.n - sizeof(bnd_t))
        if g == 0 and last.g == 0 and last.v == v:
            return 0
    if _reserve(bd, sizeof(bnd_t), 8, &o) < 0:
        return -1
    last = <bnd_t *>(bd.p + o)
    last.s = s
    last.v = v
    last.g = g
    return 0


cdef int _sweep6(const lpm_rule_t *rules, size_t n, int lvl, uint32_t inherit,
                 buf_t *bd, buf_t *gr) noexcept nogil:
    """The leaf-pushed disjoint ranges of level lvl (0: bits 16..31, 1: 32..63,
    2: 64..127) of rules (sorted by hi, lo, len; sharing the bits above the
    level; none shorter than the level's start): bd gets bnd_t in order of
    start (equal neighbours merged), a child slot (rules longer than the
    level under one key) gets value V6_NODE and g = its grp_t index + 1."""
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
    cdef grp_t *gp
    st_end[0] = maxk
    st_v[0] = inherit
    st_g[0] = 0
    while i < n:
        k = _key6(&rules[i], lvl)
        if rules[i].len <= le:
            s = k
            e = s | (((<uint64_t>1) << (le - rules[i].len)) - 1)
            v = rules[i].nh
            g = 0
            j = i + 1
        else:
            j = i
            while j < n and rules[j].len > le and _key6(&rules[j], lvl) == k:
                j += 1
            s = k
            e = k
            v = V6_NODE
            g = <uint32_t>(gr.n // sizeof(grp_t)) + 1
        while st_end[sp] < s:
            if pos <= st_end[sp]:
                if _emit6(bd, pos, st_v[sp], st_g[sp]) < 0:
                    return -1
                pos = st_end[sp] + 1
            sp -= 1
        if pos < s:
            if _emit6(bd, pos, st_v[sp], st_g[sp]) < 0:
                return -1
            pos = s
        if g:
            if _reserve(gr, sizeof(grp_t), 8, &o) < 0:
                return -1
            gp = <grp_t *>(gr.p + o)
            gp.a = <uint32_t>i
            gp.b = <uint32_t>j
            gp.inh = st_v[sp]
        sp += 1
        st_end[sp] = e
        st_v[sp] = v
        st_g[sp] = g
        i = j
    while True:
        if pos <= st_end[sp]:
            if _emit6(bd, pos, st_v[sp], st_g[sp]) < 0:
                return -1
            if st_end[sp] == maxk:
                break
            pos = st_end[sp] + 1
        sp -= 1
    return 0


cdef int _build6_node(buf_t *X, const lpm_rule_t *rules, size_t n, int lvl, uint32_t inh,
                      size_t *noff, uint32_t *nfmt) noexcept nogil:
    """Append the C (lvl 1) or D (lvl 2) node of rules (one /32 or /64, all
    longer than it) to X, 64-byte aligned, then its children; noff = its
    offset, nfmt = its format (C: 0..2, see above _c_look; D: 0)."""
    cdef buf_t bd, gr
    cdef size_t nb, nk, i, t, off, vo, nbk = 0, coff
    cdef uint32_t cf
    cdef int lay = 0, err = 0
    cdef char *nd
    cdef const bnd_t *B
    cdef const grp_t *G
    memset(&bd, 0, sizeof(bd))
    memset(&gr, 0, sizeof(gr))
    if _sweep6(rules, n, lvl, inh, &bd, &gr) < 0:
        err = -1
    else:
        nb = bd.n // sizeof(bnd_t)
        nk = nb - 1
        B = <const bnd_t *>bd.p
        if lvl == 2:
            lay = 3
            vo = 8 + 8 * nk
        elif nk <= C_LINE_MAX:
            lay = 0
            vo = 64
        elif nk <= C_TWO_MAX:
            lay = 1
            nbk = (nk + 15) // 16
            vo = 64 + 64 * nbk
        else:
            lay = 2
            vo = 8 + 4 * nk
        if _reserve(X, vo + 4 * nb, 64, &off) < 0:
            err = -1
        else:
            nd = X.p + off
            if lay == 3:
                (<uint32_t *>nd)[0] = <uint32_t>nk
                for i in range(nk):
                    (<uint64_t *>(nd + 8))[i] = B[i + 1].s
            elif lay == 2:
                (<uint32_t *>nd)[0] = <uint32_t>nk
                for i in range(nk):
                    (<uint32_t *>(nd + 8))[i] = <uint32_t>B[i + 1].s
            elif lay == 0:
                memset(nd, 0xFF, 64)
                for i in range(nk):
                    (<uint32_t *>nd)[i] = <uint32_t>(B[i + 1].s - 1)
            else:
                memset(nd, 0xFF, 64 + 64 * nbk)
                for t in range(1, nbk):
                    (<uint32_t *>nd)[t - 1] = <uint32_t>(B[16 * t + 1].s - 1)
                (<uint32_t *>nd)[15] = <uint32_t>nbk
                for i in range(nk):
                    (<uint32_t *>(nd + 64))[i] = <uint32_t>(B[i + 1].s - 1)
            for i in range(nb):
                (<uint32_t *>(nd + vo))[i] = B[i].v
            noff[0] = off
            nfmt[0] = <uint32_t>lay if lay < 3 else 0
            G = <const grp_t *>gr.p
            for i in range(nb):
                if B[i].g == 0:
                    continue
                t = B[i].g - 1
                if _build6_node(X, rules + G[t].a, G[t].b - G[t].a, lvl + 1, G[t].inh,
                                &coff, &cf) < 0:
                    err = -1
                    break
                if ((coff - off) >> 6) >= (<size_t>1 << 29):
                    err = -1
                    break
                (<uint32_t *>(X.p + off + vo))[i] = V6_NODE | <uint32_t>(((coff - off) >> 6) << 2)
    free(bd.p)
    free(gr.p)
    return err


cdef int _build_chunk6(buf_t *b, const lpm_rule_t *rules, size_t n, size_t *off) noexcept nogil:
    """Append one IPv6 chunk (64-byte aligned): a 64-byte header line {size,
    number of B values}, its B level, then its C and D nodes; off = its
    handle's offset (B base + format of B).  B values naming C nodes hold
    V6_TAG | their offset from the B base until _reloc6 makes them
    addresses (once the chunk is in its final place)."""
    cdef buf_t bd, gr, X
    cdef size_t nb, nk, i, t, hdr, sb, coff
    cdef uint32_t fb, cf
    cdef int err = 0
    cdef char *nd
    cdef const bnd_t *B
    cdef const grp_t *G
    cdef uint64_t *V = NULL
    cdef uint32_t *S = NULL
    memset(&bd, 0, sizeof(bd))
    memset(&gr, 0, sizeof(gr))
    memset(&X, 0, sizeof(X))
    if _sweep6(rules, n, 0, 0, &bd, &gr) < 0:
        err = -1
    else:
        nb = bd.n // sizeof(bnd_t)
        nk = nb - 1
        B = <const bnd_t *>bd.p
        G = <const grp_t *>gr.p
        V = <uint64_t *>malloc(nb * 8)
        S = <uint32_t *>malloc(nb * 4)
        if V == NULL or S == NULL:
            err = -1
        fb = 0 if nk <= B_LINE_MAX else 1
        sb = ((64 if fb == 0 else B_BITMAP) + 8 * nb + 63) & ~(<size_t>63)
        for i in range(nb):
            if err:
                break
            S[i] = <uint32_t>B[i].s
            V[i] = B[i].v
            if B[i].g == 0:
                continue
            t = B[i].g - 1
            if _build6_node(&X, rules + G[t].a, G[t].b - G[t].a, 1, G[t].inh, &coff, &cf) < 0:
                err = -1
                break
            V[i] = V6_TAG | <uint64_t>(sb + coff) | cf
        if err == 0 and _reserve(b, 64 + sb + X.n, 64, &hdr) < 0:
            err = -1
        if err == 0:
            nd = b.p + hdr + 64
            _b_encode(nd, fb, S, V, nb)
            if X.n:
                memcpy(nd + sb, X.p, X.n)
            (<uint64_t *>(b.p + hdr))[0] = b.n - hdr
            (<uint64_t *>(b.p + hdr))[1] = nb
            off[0] = hdr + 64 + fb
    free(V)
    free(S)
    free(bd.p)
    free(gr.p)
    free(X.p)
    return err


cdef void _b_encode(char *nd, uint32_t fb, const uint32_t *S, const uint64_t *V,
                    size_t nb) noexcept nogil:
    """Write a B level of nb ranges (starts S[i], S[0] = 0; values V[i]) at nd
    (zeroed, 64-byte aligned) in format fb."""
    cdef size_t i
    if fb == 0:
        memset(nd, 0xFF, 64)
        for i in range(1, nb):
            (<uint16_t *>nd)[i - 1] = <uint16_t>(S[i] - 1)
        memcpy(nd + 64, V, nb * 8)
    else:
        for i in range(nb):
            (<uint64_t *>(nd + 16 * (S[i] >> 6)))[0] |= (<uint64_t>1) << (S[i] & 63)
        memcpy(nd + B_BITMAP, V, nb * 8)
        _bm_counts(nd, 0)


cdef inline void _bm_counts(char *nd, uint32_t w0) noexcept nogil:
    # the "ranges started before" field of bitmap records w0 + 1 .. 1023
    cdef uint32_t w
    cdef uint32_t q = (<uint32_t *>(nd + 16 * w0 + 8))[0]
    for w in range(w0, 1024):
        (<uint32_t *>(nd + 16 * w + 8))[0] = q
        q += kdp_popcnt((<uint64_t *>(nd + 16 * w))[0])


cdef inline uint64_t _bm_word(const char *b, uint32_t w) noexcept nogil:
    return (<const uint64_t *>(b + 16 * w))[0]


cdef int _bm_prev(const char *b, int p) noexcept nogil:
    # the highest range start <= p in bitmap B level b (-1: none)
    cdef int w = p >> 6
    cdef uint64_t bits = kdp_low(_bm_word(b, w), p & 63)
    while True:
        if bits:
            return 64 * w + 63 - kdp_clz64(bits)
        w -= 1
        if w < 0:
            return -1
        bits = _bm_word(b, w)


cdef int _bm_next(const char *b, int p) noexcept nogil:
    # the lowest range start >= p in bitmap B level b (0x10000: none)
    cdef int w
    cdef uint64_t bits
    if p >= 0x10000:
        return 0x10000
    w = p >> 6
    bits = _bm_word(b, w) & ((<uint64_t>0xFFFFFFFFFFFFFFFF) << (p & 63))
    while True:
        if bits:
            return 64 * w + kdp_ctz64(bits)
        w += 1
        if w == 1024:
            return 0x10000
        bits = _bm_word(b, w)


cdef size_t _b_decode(const char *b, uint32_t fb, size_t nb, uint32_t *S) noexcept nogil:
    # the range starts of a B level (S[nb] = 0x10000); returns nb
    cdef size_t i, c = 0
    cdef uint32_t w
    cdef uint64_t bits
    if fb == 0:
        S[0] = 0
        for i in range(1, nb):
            S[i] = <uint32_t>(<const uint16_t *>b)[i - 1] + 1
    else:
        for w in range(1024):
            bits = _bm_word(b, w)
            while bits and c < nb:
                S[c] = 64 * w + kdp_ctz64(bits)
                c += 1
                bits &= bits - 1
    S[nb] = 0x10000
    return nb


cdef inline size_t _push6(uint32_t *ns, uint64_t *nvs, size_t c, uint32_t st, uint64_t v) noexcept nogil:
    # append range (st, v) unless it continues an equal leaf
    if c and v <= LEAF_MAX and nvs[c - 1] == v:
        return c
    ns[c] = st
    nvs[c] = v
    return c + 1


cdef size_t _win_splice(const uint32_t *ws, const uint64_t *wv, size_t m, uint32_t ks,
                        uint32_t ke, const uint32_t *Ws, const uint64_t *Wv, size_t nw,
                        uint32_t *ns, uint64_t *nvs) noexcept nogil:
    """Ranges [ws[i], ws[i+1]) -> wv[i] (i < m, covering ks..ke) with keys
    ks..ke replaced by the ranges Ws/Wv (nw of them, Ws[0] == ks): the new
    ranges (equal neighbouring leaves merged) in ns/nvs; returns their count
    (<= m + nw + 1).  ns[0] == ws[0]."""
    cdef size_t i, t, c = 0
    for i in range(m):
        if ws[i + 1] <= ks or ws[i] > ke:
            c = _push6(ns, nvs, c, ws[i], wv[i])
            continue
        if ws[i] < ks:
            c = _push6(ns, nvs, c, ws[i], wv[i])
        if ws[i] <= ks:
            for t in range(nw):
                c = _push6(ns, nvs, c, Ws[t], Wv[t])
        if ws[i + 1] - 1 > ke:
            c = _push6(ns, nvs, c, ke + 1, wv[i])
    return c


cdef void _reloc6(char *c) noexcept nogil:
    """Turn the V6_TAG offsets among the B values of chunk handle c into
    addresses (the chunk is in its final place)."""
    cdef char *b = <char *>((<uintptr_t>c) & ~(<uintptr_t>63))
    cdef uint64_t *V = <uint64_t *>(b + (B_BITMAP if (<uintptr_t>c) & 1 else 64))
    cdef size_t i, nb = (<uint64_t *>(b - 64))[1]
    for i in range(nb):
        if V[i] & V6_TAG:
            V[i] = <uint64_t>(<uintptr_t>b) + (V[i] & ~V6_TAG)


cdef int _build_chunk(buf_t *b, const lpm_rule_t *rules, size_t n, size_t *off,
                      int with_size, int leaf8) noexcept nogil:
    """Append one chunk for the rules of one /16: an 8-byte header (the
    block's size; only for chunks allocated on their own, which are freed one
    by one), then the root node and its children (_build_root4).  off = the
    handle's offset: the root node's | its flags."""
    cdef size_t hdr = b.n
    cdef size_t node
    cdef int flags
    if with_size and _reserve(b, 8, 64, &hdr) < 0:
        return -1
    flags = _build_root4(b, rules, n, hdr, leaf8, &node)
    if flags < 0:
        return -1
    off[0] = node | <size_t>flags
    if with_size:
        (<uint64_t *>(b.p + hdr))[0] = b.n - hdr
    return 0


cdef inline char *_block(char *c, int bits) noexcept nogil:
    """Start of the allocation holding the chunk whose handle (root entry
    pointer bits, bit 0 = wide) is c."""
    cdef char *nd
    if bits != 32:
        return <char *>((<uintptr_t>c) & ~(<uintptr_t>63)) - 64
    nd = <char *>((<uintptr_t>c) & ~(<uintptr_t>H_FLAGS))
    if (<uintptr_t>c) & H_WIDE:
        return nd - 64
    return nd - (<uint32_t *>(nd - 4))[0]


cdef enum:
    WIDE_EMPTY_BELOW = 4096   # a bulk-built IPv4 table with fewer non-empty /16s uses
                              # the wide empty chunk (its lookups all take one path)
    WIDE_MIN = 24             # an IPv4 /16 with this many rules longer than /24 is built wide


cdef int _build_wide(buf_t *b, const lpm_rule_t *rules, size_t n, size_t *off) noexcept nogil:
    """Append a wide IPv4 chunk (a direct table of 65,536 uint16 leaves for bits
    16..31) one line after an 8-byte size header; off = the handle's offset
    (the table's | H_WIDE)."""
    cdef size_t hdr, i, q, s0
    cdef uint32_t cnt
    cdef uint16_t *slots
    if _reserve(b, 64 + 131072, 64, &hdr) < 0:
        return -1
    slots = <uint16_t *>(b.p + hdr + 64)
    for i in range(n):                     # sorted: covering rules come first
        s0 = <size_t>((rules[i].hi >> 32) & 0xFFFF)
        cnt = (<uint32_t>1) << (32 - rules[i].len)
        for q in range(s0, s0 + cnt):
            slots[q] = <uint16_t>rules[i].nh
    (<uint64_t *>(b.p + hdr))[0] = b.n - hdr
    off[0] = hdr + 64 + H_WIDE
    return 0


cdef inline int _wants_wide(const lpm_rule_t *rules, size_t n, int bits) noexcept nogil:
    cdef size_t i, k = 0
    if bits != 32:
        return 0
    for i in range(n):
        if rules[i].len > 24:
            k += 1
    return k >= WIDE_MIN


cdef inline int _rule_cmp(uint64_t hi, uint64_t lo, uint8_t ln, const lpm_rule_t *r) noexcept nogil:
    if hi != r.hi:
        return -1 if hi < r.hi else 1
    if lo != r.lo:
        return -1 if lo < r.lo else 1
    if ln != r.len:
        return -1 if ln < r.len else 1
    return 0


cdef ssize_t _bfind(const lpm_bucket_t *bk, uint64_t hi, uint64_t lo, uint8_t ln,
                    int *found) noexcept nogil:
    """Index of the rule, or of where it would go."""
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


cdef int _bucket_own(lpm_bucket_t *bk, uint32_t need) noexcept nogil:
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
# the table
# --------------------------------------------------------------------------

cdef class _LpmBase:
    """Shared machinery of Lpm4 and Lpm6 (see the module docstring)."""

    def __cinit__(self, *args, **kwargs):
        self.root = <lpm_root_t *>kdp_map(sizeof(lpm_root_t))
        self.ep = <lpm_epoch_t *>kdp_alloc64(sizeof(lpm_epoch_t))
        self.buckets = <lpm_bucket_t *>malloc(65536 * sizeof(lpm_bucket_t))
        if self.root == NULL or self.ep == NULL or self.buckets == NULL:
            raise MemoryError()
        memset(self.ep, 0, sizeof(lpm_epoch_t))
        memset(self.buckets, 0, 65536 * sizeof(lpm_bucket_t))
        memset(&self.shorts, 0, sizeof(lpm_bucket_t))
        self.empty = <uint64_t>(<uintptr_t>kdp_empty_chunk)
        self._init_root(self.root)
        self.next_nh = 1
        self._nh_of = {}
        self._g_prev = []
        self._g_cur = []
        self._wlock = threading.Lock()

    cdef void _init_root(self, lpm_root_t *rt) noexcept nogil:
        cdef uint64_t e = self.empty
        cdef int i
        for i in range(65536):
            rt.t0[i] = e
        memset(rt.nh_value, 0xFF, sizeof(rt.nh_value))

    def __dealloc__(self):
        cdef int i
        cdef lpm_root_t *rt = self.root
        if rt != NULL:
            for i in range(65536):
                self._free_chunk(<char *>(<uintptr_t>(rt.t0[i] & PTR_MASK)))
            kdp_unmap(rt, sizeof(lpm_root_t))
            self.root = NULL
        if self._g_prev is not None:
            for item in self._g_prev + self._g_cur:
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

    # ---- readers ---------------------------------------------------------
    cdef int _enter(self) noexcept nogil:
        return kdp_ep_enter(&self.ep.epoch, self.ep.active)

    cdef void _leave(self, int slot) noexcept nogil:
        kdp_ep_leave(self.ep.active, slot)

    # ---- memory reclamation ---------------------------------------------
    cdef bint _is_shared(self, char *c):
        if (c == <char *>kdp_empty_chunk or c == <char *>kdp_empty_chunk6
                or c == <char *>kdp_empty_wide):
            return True
        if self.region != NULL and c >= self.region and c < self.region + self.region_size:
            return True
        return False

    cdef void _free_chunk(self, char *c):
        if not self._is_shared(c):
            free(_block(c, self.bits))

    cdef _free_garbage(self, item):
        kind, ptr, size = item
        if kind == 0:
            free(<void *>(<uintptr_t>ptr))
        elif kind == 1:
            kdp_unmap(<void *>(<uintptr_t>ptr), size)

    cdef _retire(self, int kind, uintptr_t ptr, size_t size):
        self._g_cur.append((kind, ptr, size))

    cdef _collect(self):
        """Free garbage no reader can still hold; never waits for readers."""
        cdef uint64_t e = self.ep.epoch
        if not self._g_prev and not self._g_cur:
            return
        if kdp_ld_active(&self.ep.active[(e + 1) & 1]) == 0:
            for item in self._g_prev:
                self._free_garbage(item)
            self._g_prev = self._g_cur
            self._g_cur = []
            kdp_st_epoch(&self.ep.epoch, e + 1)

    def reclaim(self):
        """Free replaced chunks once no reader can hold them (called after every
        write anyway; call it to release memory after the last write).
        Returns how many retired blocks still wait."""
        with self._wlock:
            self._collect()
            self._collect()
            return len(self._g_prev) + len(self._g_cur)

    # ---- next hops ---------------------------------------------------------
    cdef uint32_t _nh(self, value) except 0:
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
        i = _bfind(bk, hi, lo, <uint8_t>ln, &found)
        if found:
            old = bk.r[i].nh
            if mode == 2:
                if _bucket_own(bk, bk.n) < 0:
                    raise MemoryError()
                memmove(&bk.r[i], &bk.r[i + 1], (bk.n - i - 1) * sizeof(lpm_rule_t))
                bk.n -= 1
                self.n_rules -= 1
            else:
                if old == nh:
                    return old
                if _bucket_own(bk, bk.n) < 0:
                    raise MemoryError()
                bk.r[i].nh = nh
        else:
            if mode != 0:
                return 0
            if _bucket_own(bk, bk.n + 1) < 0:
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

    cdef _refresh_chunk(self, uint32_t h):
        # rebuild /16 number h's IPv4 chunk aside and publish it (Lpm6 has its own)
        cdef lpm_bucket_t *bk = &self.buckets[h]
        cdef buf_t b
        cdef size_t off
        cdef char *c
        cdef char *old
        cdef int wide = 0
        cdef uint64_t e = self.root.t0[h]
        if bk.n == 0:
            c = <char *>(<uintptr_t>self.empty)
        else:
            b.p = NULL
            b.n = b.cap = 0
            wide = _wants_wide(bk.r, bk.n, self.bits)
            if (_build_wide(&b, bk.r, bk.n, &off) if wide else
                    _build_chunk(&b, bk.r, bk.n, &off, 1, self.next_nh <= CHILD8)) < 0:
                free(b.p)
                raise MemoryError()
            c = <char *>kdp_alloc64(b.n)
            if c == NULL:
                free(b.p)
                raise MemoryError()
            memcpy(c, b.p, b.n)
            free(b.p)
            c += off
            self.chunk_bytes += (<uint64_t *>_block(c, self.bits))[0]
        kdp_st64(&self.root.t0[h], (e & ~PTR_MASK) | <uint64_t>(<uintptr_t>c))
        old = <char *>(<uintptr_t>(e & PTR_MASK))
        if not self._is_shared(old):
            self.chunk_bytes -= (<uint64_t *>_block(old, self.bits))[0]
            self._retire(0, <uintptr_t>_block(old, self.bits), 0)

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
        cdef buf_t b
        cdef size_t i, j, nshort = 0, nlong = 0
        cdef uint32_t h
        cdef int err = 0
        cdef char *reg = NULL
        cdef char *regbase = NULL
        cdef size_t regmap = 0
        cdef uint64_t ptr
        cdef uintptr_t HP = (<uintptr_t>2) << 20
        cdef int bits = self.bits
        cdef uint64_t emp = self.empty
        cdef size_t nne
        cdef int leaf8 = len(nh_of) < CHILD8      # next-hop indices 1..len fit in 8 bits
        b.p = NULL
        b.n = b.cap = 0
        memset(&sh, 0, sizeof(sh))
        longs = rules
        if rt == NULL or bks == NULL or offs == NULL or dflt == NULL:
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
                i = 0
                while i < nlong and not err:
                    h = <uint32_t>(rr[i].hi >> 48)
                    j = i
                    while j < nlong and <uint32_t>(rr[j].hi >> 48) == h:
                        j += 1
                    bks[h].r = rr + i
                    bks[h].n = <uint32_t>(j - i)
                    if _wants_wide(rr + i, j - i, bits):
                        if _build_wide(&b, rr + i, j - i, &offs[h]) < 0:
                            err = 1
                    elif bits == 128:
                        if _build_chunk6(&b, rr + i, j - i, &offs[h]) < 0:
                            err = 1
                    elif _build_chunk(&b, rr + i, j - i, &offs[h], 0, leaf8) < 0:
                        err = 1
                    i = j
                if not err and b.n:
                    regmap = b.n + HP + 4096
                    regbase = <char *>kdp_map(regmap)
                    if regbase == NULL:
                        err = 1
                    else:
                        reg = <char *>((<uintptr_t>regbase + (HP - 1)) & ~(HP - 1))
                        memcpy(reg, b.p, b.n)
                        if bits == 128:
                            for h in range(65536):
                                if bks[h].n:
                                    _reloc6(reg + offs[h])
                if not err:
                    _fill_defaults(&sh, 0, 65536, dflt)
                    nne = 0
                    for h in range(65536):
                        if bks[h].n:
                            nne += 1
                    if bits != 32:
                        emp = <uint64_t>(<uintptr_t>kdp_empty_chunk6)
                    elif nne < WIDE_EMPTY_BELOW:
                        emp = <uint64_t>(<uintptr_t>kdp_empty_wide)
                    else:
                        emp = <uint64_t>(<uintptr_t>kdp_empty_chunk)
                    for h in range(65536):
                        ptr = emp
                        if bks[h].n:
                            ptr = <uint64_t>(<uintptr_t>(reg + offs[h]))
                        rt.t0[h] = ptr | (<uint64_t>dflt[h] << 48)
        free(b.p)
        free(offs)
        free(dflt)
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
        self._nh_of = nh_of
        self.next_nh = len(nh_of) + 1

    cdef _publish(self, lpm_root_t *rt, lpm_bucket_t *bks, lpm_bucket_t sh, object bulk,
                  char *reg, size_t regsize, char *regbase, size_t regmap, size_t n):
        cdef lpm_root_t *old = self.root
        cdef int i
        cdef char *c
        kdp_stptr(<void **>&self.root, rt)
        # retire everything the old root referenced (after readers leave)
        for i in range(65536):
            c = <char *>(<uintptr_t>(old.t0[i] & PTR_MASK))
            if not self._is_shared(c):
                self._retire(0, <uintptr_t>_block(c, self.bits), 0)
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
        """Bytes used: root (top-16-bit table + value table), chunks (the trie),
        rules (the rule list)."""
        rules = self.n_rules * sizeof(lpm_rule_t)
        d = {"root": sizeof(lpm_root_t), "chunks": self.chunk_bytes, "rules": rules}
        d["lookup"] = d["root"] + d["chunks"]
        d["total"] = d["lookup"] + rules
        return d

    cdef _get_rule(self, uint64_t hi, uint64_t lo, int ln):
        cdef lpm_bucket_t *bk = &self.shorts if ln < 16 else &self.buckets[hi >> 48]
        cdef int found
        cdef ssize_t i = _bfind(bk, hi, lo, <uint8_t>ln, &found)
        if not found:
            return None
        return self.root.nh_value[bk.r[i].nh]

    cdef _do_insert(self, uint64_t hi, uint64_t lo, int ln, value, int mode):
        with self._wlock:
            if mode == 1 and self._get_rule(hi, lo, ln) is None:
                raise KeyError("no such prefix")
            prev = self._get_rule(hi, lo, ln)
            nh = self._nh(value)
            self._edit(hi, lo, ln, nh, mode)
            return prev

    cdef _do_delete(self, uint64_t hi, uint64_t lo, int ln):
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
# address parsing (convenience, Python level)
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


cdef inline _split_args(length, value):
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
    structure and the concurrency contract."""

    MISS = MISS

    def __cinit__(self, *args, **kwargs):
        self.bits = 32
        self.empty = <uint64_t>(<uintptr_t>kdp_empty_chunk)
        self._init_root(self.root)

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
                return _look4(self.root, a)
        return _look4(self.root, <uint32_t>_addr(addr, 32))

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

    def rules(self):
        """The rule list: (prefixes uint32, lengths uint8, values uint32), sorted."""
        r = self._export()
        vals = np.asarray(<uint32_t[:65536]>self.root.nh_value)[r["nh"]]
        return (r["hi"] >> np.uint64(32)).astype(np.uint32), r["len"].copy(), vals

    # ---- C level -------------------------------------------------------------
    cdef uint32_t lookup_one(self, uint32_t addr) noexcept nogil:
        cdef int s = self._enter()
        cdef uint32_t v = _look4(<const lpm_root_t *>kdp_ldptr(<void **>&self.root), addr)
        self._leave(s)
        return v

    cdef void lookup_n(self, const uint32_t *addrs, uint32_t *out, size_t n) noexcept nogil:
        self.lookup_strided(<const char *>addrs, 4, out, n)

    cdef void lookup_strided(self, const char *base, size_t stride, uint32_t *out,
                             size_t n) noexcept nogil:
        cdef int s = self._enter()
        _batch4(<const lpm_root_t *>kdp_ldptr(<void **>&self.root), base, stride, out, n,
                self.chunk_bytes > PF_MIN_BYTES)
        self._leave(s)


# --------------------------------------------------------------------------
# IPv6
# --------------------------------------------------------------------------

cdef inline uint64_t _hi(a):
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
        self.base6 = <uintptr_t *>calloc(65536, sizeof(uintptr_t))
        if self.base6 == NULL:
            raise MemoryError()

    def __dealloc__(self):
        # blocks only the B levels reference (the base class frees the B levels)
        cdef uint32_t h
        if self.base6 != NULL and self.root != NULL:
            for h in range(65536):
                if self.base6[h] or (self.root.t0[h] & PTR_MASK) != <uint64_t>(<uintptr_t>kdp_empty_chunk6):
                    self._extras6(h, self.root.t0[h], 1)
        free(self.base6)
        self.base6 = NULL

    # ---- writers: incremental updates -----------------------------------------
    # A /16's structure lives in: the bulk region (load/build), or one block
    # built by its last full rebuild (base6[h]: header, B level, C and D nodes),
    # plus blocks of their own for what incremental updates replaced since: a
    # C node (with its D nodes) named by one B value, or a new B level named by
    # the root entry (its C nodes stay where they were).  A block of its own is
    # retired (freed after an epoch) when it is replaced; the region and base
    # blocks only by a full rebuild of the /16 or a new table, so memory stays
    # under twice what a rebuild would use.

    cdef bint _in_block(self, uint32_t h, uintptr_t p):
        # p lies in the bulk region or in /16 h's base block (not freed on its own)
        cdef uintptr_t b = self.base6[h]
        if self.region != NULL and p >= <uintptr_t>self.region and \
                p < <uintptr_t>self.region + self.region_size:
            return True
        return b != 0 and p >= b and p < b + (<uint64_t *>b)[0]

    cdef _drop6(self, char *blk, bint now):
        self.chunk_bytes -= (<uint64_t *>blk)[0]
        if now:
            free(blk)
        else:
            self._retire(0, <uintptr_t>blk, 0)

    cdef _extras6(self, uint32_t h, uint64_t e, bint now):
        """Free (now) or retire the blocks of /16 h (root entry e) other than the
        one holding its B level: C nodes of their own, and its base block when
        the B level is elsewhere."""
        cdef uintptr_t hb = <uintptr_t>(e & PTR_MASK)
        cdef uintptr_t base = self.base6[h]
        cdef uintptr_t blk = 0
        cdef char *b
        cdef const uint64_t *V
        cdef size_t i, nb
        cdef uint64_t v
        if hb != <uintptr_t>kdp_empty_chunk6:
            b = <char *>(hb & ~(<uintptr_t>63))
            blk = <uintptr_t>(b - 64)
            nb = (<uint64_t *>(b - 64))[1]
            V = <const uint64_t *>(b + (B_BITMAP if hb & 1 else 64))
            for i in range(nb):
                v = V[i]
                if v > LEAF_MAX and not self._in_block(h, <uintptr_t>(v & ~(<uint64_t>63))):
                    self._drop6(<char *>(<uintptr_t>(v & ~(<uint64_t>63))) - 64, now)
        if base and base != blk:
            self._drop6(<char *>base, now)
        self.base6[h] = 0

    cdef _refresh_chunk(self, uint32_t h):
        """Full rebuild of /16 h's chunk from its rules, published with one
        atomic store into the root; the old structure is retired."""
        cdef lpm_bucket_t *bk = &self.buckets[h]
        cdef buf_t b
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
            _reloc6(c)
            self.chunk_bytes += (<uint64_t *>blk)[0]
        kdp_st64(&self.root.t0[h], (e & ~PTR_MASK) | <uint64_t>(<uintptr_t>c))
        self._extras6(h, e, 0)
        if not self._is_shared(old):
            self._drop6(_block(old, 128), 0)
        self.base6[h] = <uintptr_t>blk

    cdef _refresh_rule(self, uint64_t hi, uint64_t lo, int ln):
        """After rule (hi, lo, ln) changed, without rebuilding its /16's chunk:
        a rule longer than /32 rebuilds only its /32's C node (and D nodes)
        into a block of its own and swaps the B value naming it (one atomic
        store); when the /32 gains its first or loses its last such rule, the
        B level is re-cut around that /32 (_b_splice) and republished.  A
        rule /16../32 re-sweeps its window of B keys (bits 16..31): its ranges
        and the C nodes of the /32s inside it (they inherit its value) are
        rebuilt and spliced into a new B level.  Empty chunks, and windows
        holding more than max(SPLICE_MAX_NODES, rules of the /16 / 16) C nodes,
        take the full rebuild."""
        cdef uint32_t h = <uint32_t>(hi >> 48)
        cdef uint64_t e = self.root.t0[h]
        cdef uintptr_t hb = <uintptr_t>(e & PTR_MASK)
        cdef lpm_bucket_t *bk = &self.buckets[h]
        cdef uint32_t k = <uint32_t>(hi >> 32) & 0xFFFF
        cdef uint32_t ks, ke
        cdef uint64_t p32 = hi & (<uint64_t>0xFFFFFFFF00000000)
        cdef int found, L
        cdef ssize_t i0, i1, j
        cdef uint32_t inh = 0
        cdef uint64_t *slot
        cdef uint64_t cur, nv
        cdef uint32_t ws1
        if _empty6(hb) or bk.n == 0:
            self._refresh_chunk(h)
            return
        if ln <= 32:
            ks = k & ~(((<uint32_t>1) << (32 - ln)) - 1)
            ke = ks | (((<uint32_t>1) << (32 - ln)) - 1)
        else:
            ks = ke = k
        i0 = _bfind(bk, (hi & (<uint64_t>0xFFFF000000000000)) | (<uint64_t>ks << 32), 0, 0, &found)
        if ke == 0xFFFF:
            i1 = bk.n
        else:
            i1 = _bfind(bk, (hi & (<uint64_t>0xFFFF000000000000)) | (<uint64_t>(ke + 1) << 32), 0, 0, &found)
        L = ln if ln <= 32 else 33
        while i0 < i1 and bk.r[i0].len < L:   # the rules covering the whole window
            i0 += 1
        for L in range((ln if ln <= 32 else 33) - 1, 15, -1):
            j = _bfind(bk, hi & ((<uint64_t>0xFFFFFFFFFFFFFFFF) << (64 - L)), 0, <uint8_t>L, &found)
            if found:
                inh = bk.r[j].nh
                break
        if ln <= 32:
            if not self._window6(h, hb, ks, ke, bk.r + i0, <size_t>(i1 - i0), inh,
                                 max(<size_t>SPLICE_MAX_NODES, bk.n // 16)):
                self._refresh_chunk(h)
            return
        slot = _b_slot(hb, k)
        cur = slot[0]
        if i1 > i0:
            nv = self._node6(bk.r + i0, <size_t>(i1 - i0), inh)
            if cur > LEAF_MAX:
                kdp_st64(slot, nv)
            else:
                ws1 = k
                self._b_splice(h, k, k, &ws1, &nv, 1, 0)
        elif cur > LEAF_MAX:
            ws1 = k
            nv = inh
            self._b_splice(h, k, k, &ws1, &nv, 1, 0)
        if cur > LEAF_MAX and not self._in_block(h, <uintptr_t>(cur & ~(<uint64_t>63))):
            self._drop6(<char *>(<uintptr_t>(cur & ~(<uint64_t>63))) - 64, 0)

    cdef uint64_t _node6(self, const lpm_rule_t *rules, size_t n, uint32_t inh) except 0:
        """A block of its own holding the C node (and D nodes) of rules (one
        /32's rules longer than /32); returns the B value naming it."""
        cdef buf_t X
        cdef size_t noff
        cdef uint32_t nf
        cdef char *blk
        memset(&X, 0, sizeof(X))
        if _build6_node(&X, rules, n, 1, inh, &noff, &nf) < 0:
            free(X.p)
            raise MemoryError()
        blk = <char *>kdp_alloc64(64 + X.n)
        if blk == NULL:
            free(X.p)
            raise MemoryError()
        memset(blk, 0, 64)
        (<uint64_t *>blk)[0] = 64 + X.n
        memcpy(blk + 64, X.p, X.n)
        free(X.p)
        self.chunk_bytes += 64 + X.n
        return <uint64_t>(<uintptr_t>(blk + 64 + noff)) | nf

    cdef bint _window6(self, uint32_t h, uintptr_t hb, uint32_t ks, uint32_t ke,
                       const lpm_rule_t *rules, size_t n, uint32_t inh, size_t maxn) except -1:
        """Re-sweep keys ks..ke of /16 h's B level (handle hb) from rules (all
        inside the window, none covering all of it; inh = the value of the
        longest rule that does) and splice the result in; the C nodes inside
        are rebuilt, the old ones retired.  False (nothing changed) when the
        window holds more than maxn of them (one by one they cost ~2.5x what
        a full rebuild spends on each: a window with about a third of the
        /16's C nodes is no cheaper than rebuilding the /16)."""
        cdef buf_t bd, gr
        cdef const bnd_t *B
        cdef const grp_t *G
        cdef size_t nbd, i, nw = 0, ng, t
        cdef uint32_t *Ws = NULL
        cdef uint64_t *Wv = NULL
        cdef uint64_t e, v
        cdef char *b
        cdef const uint64_t *V
        cdef size_t ia, iz
        memset(&bd, 0, sizeof(bd))
        memset(&gr, 0, sizeof(gr))
        if _sweep6(rules, n, 0, inh, &bd, &gr) < 0:
            free(bd.p)
            free(gr.p)
            raise MemoryError()
        nbd = bd.n // sizeof(bnd_t)
        ng = gr.n // sizeof(grp_t)
        B = <const bnd_t *>bd.p
        G = <const grp_t *>gr.p
        if ng > maxn:
            free(bd.p)
            free(gr.p)
            return False
        Ws = <uint32_t *>malloc(nbd * 4)
        Wv = <uint64_t *>malloc(nbd * 8)
        if Ws == NULL or Wv == NULL:
            free(Ws)
            free(Wv)
            free(bd.p)
            free(gr.p)
            raise MemoryError()
        # the C nodes of their own the window names now (replaced below)
        b = <char *>(hb & ~(<uintptr_t>63))
        V = <const uint64_t *>(b + (B_BITMAP if hb & 1 else 64))
        ia = <size_t>(_b_slot(hb, ks) - <uint64_t *>V)
        iz = <size_t>(_b_slot(hb, ke) - <uint64_t *>V)
        old = []
        for i in range(ia, iz + 1):
            v = V[i]
            if v > LEAF_MAX and not self._in_block(h, <uintptr_t>(v & ~(<uint64_t>63))):
                old.append(<uintptr_t>(v & ~(<uint64_t>63)))
        try:
            for i in range(nbd):
                e = B[i + 1].s - 1 if i + 1 < nbd else 0xFFFF
                if e < ks or B[i].s > ke:
                    continue
                v = B[i].v
                if B[i].g:
                    t = B[i].g - 1
                    v = self._node6(rules + G[t].a, G[t].b - G[t].a, G[t].inh)
                Ws[nw] = <uint32_t>(B[i].s if B[i].s > ks else ks)
                Wv[nw] = v
                nw += 1
            self._b_splice(h, ks, ke, Ws, Wv, nw, 0)
        except MemoryError:
            for i in range(nw):        # not published: free what was built
                if Wv[i] > LEAF_MAX:
                    self._drop6(<char *>(<uintptr_t>(Wv[i] & ~(<uint64_t>63))) - 64, 1)
            raise
        finally:
            free(Ws)
            free(Wv)
            free(bd.p)
            free(gr.p)
        for nd in old:
            self._drop6(<char *>(<uintptr_t>nd) - 64, 0)
        return True

    cdef _b_splice(self, uint32_t h, uint32_t ks, uint32_t ke, const uint32_t *Ws,
                   const uint64_t *Wv, size_t nw, bint full):
        """Publish a new B level for /16 h: the current one with keys ks..ke
        (bits 16..31) replaced by the ranges Ws/Wv (Ws[0] == ks), equal
        neighbouring leaves merged.  If the ranges stay the same, only the
        changed values are stored (in place, atomically).  Else a big bitmap
        level is copied and patched (the ranges from the one before ks to the
        one after ke re-cut); a small one (or any, full) decoded and
        re-encoded."""
        cdef uint64_t e = self.root.t0[h]
        cdef uintptr_t hb = <uintptr_t>(e & PTR_MASK)
        cdef char *b = <char *>(hb & ~(<uintptr_t>63))
        cdef uint32_t fb = <uint32_t>(hb & 1), nfb
        cdef size_t nb = (<uint64_t *>(b - 64))[1]
        cdef const uint64_t *V = <const uint64_t *>(b + (B_BITMAP if fb else 64))
        cdef size_t ia = <size_t>(_b_slot(hb, ks) - <uint64_t *>V)
        cdef size_t iz = <size_t>(_b_slot(hb, ke) - <uint64_t *>V)
        cdef size_t a, z, m, c, nnb, i, sb
        cdef uint32_t *ws = NULL
        cdef uint32_t *ns = NULL
        cdef uint64_t *nvs = NULL
        cdef char *blk = NULL
        cdef char *nb_
        cdef int p
        cdef bint patch = not full and fb == 1 and nb >= B_LINE_MAX + 4
        if patch:
            a = ia - 1 if ia > 0 else 0
            z = iz + 2 if iz + 2 < nb else nb
        else:
            a = 0
            z = nb
        m = z - a
        ws = <uint32_t *>malloc((m + 1) * 4)
        ns = <uint32_t *>malloc((m + nw + 2) * 4)
        nvs = <uint64_t *>malloc((m + nw + 2) * 8)
        if ws == NULL or ns == NULL or nvs == NULL:
            free(ws)
            free(ns)
            free(nvs)
            raise MemoryError()
        if patch:                  # starts of ranges a .. z from the bitmap
            ws[ia - a] = <uint32_t>_bm_prev(b, <int>ks)
            if ia > a:
                ws[0] = <uint32_t>_bm_prev(b, <int>ws[1] - 1)
            p = <int>ws[ia - a] + 1
            for i in range(ia - a + 1, m + 1):
                ws[i] = <uint32_t>_bm_next(b, p)
                p = <int>ws[i] + 1
        else:
            _b_decode(b, fb, nb, ws)
        c = _win_splice(ws, V + a, m, ks, ke, Ws, Wv, nw, ns, nvs)
        if c == m and memcmp(ns, ws, m * 4) == 0:
            # the same ranges: store the changed values in place (each one
            # atomic; a reader sees the old or the new value of its range)
            for i in range(m):
                if nvs[i] != V[a + i]:
                    kdp_st64(<uint64_t *>V + a + i, nvs[i])
            free(ws)
            free(ns)
            free(nvs)
            return
        nnb = nb - m + c
        nfb = 1 if patch and nnb - 1 > B_LINE_MAX else (0 if nnb - 1 <= B_LINE_MAX else 1)
        if patch and nfb == 1:
            sb = (B_BITMAP + 8 * nnb + 63) & ~(<size_t>63)
            blk = <char *>kdp_alloc64(64 + sb)
            if blk != NULL:
                nb_ = blk + 64
                memset(blk, 0, 64)
                memcpy(nb_, b, B_BITMAP)
                for i in range(1, m):
                    (<uint64_t *>(nb_ + 16 * (ws[i] >> 6)))[0] &= ~((<uint64_t>1) << (ws[i] & 63))
                for i in range(1, c):
                    (<uint64_t *>(nb_ + 16 * (ns[i] >> 6)))[0] |= (<uint64_t>1) << (ns[i] & 63)
                _bm_counts(nb_, ws[0] >> 6)
                memcpy(nb_ + B_BITMAP, V, a * 8)
                memcpy(nb_ + B_BITMAP + a * 8, nvs, c * 8)
                memcpy(nb_ + B_BITMAP + (a + c) * 8, V + z, (nb - z) * 8)
        elif not patch:
            sb = ((64 if nfb == 0 else B_BITMAP) + 8 * nnb + 63) & ~(<size_t>63)
            blk = <char *>kdp_alloc64(64 + sb)
            if blk != NULL:
                memset(blk, 0, 64 + sb)
                _b_encode(blk + 64, nfb, ns, nvs, nnb)
        free(ws)
        free(ns)
        free(nvs)
        if blk == NULL:
            if patch and nfb == 0:         # shrank to one line: decode it all
                self._b_splice(h, ks, ke, Ws, Wv, nw, 1)
                return
            raise MemoryError()
        (<uint64_t *>blk)[0] = 64 + sb
        (<uint64_t *>blk)[1] = nnb
        self.chunk_bytes += 64 + sb
        kdp_st64(&self.root.t0[h], (e & ~PTR_MASK) | <uint64_t>(<uintptr_t>(blk + 64 + nfb)))
        if not self._in_block(h, <uintptr_t>b):
            self._drop6(b - 64, 0)

    cdef _publish(self, lpm_root_t *rt, lpm_bucket_t *bks, lpm_bucket_t sh, object bulk,
                  char *reg, size_t regsize, char *regbase, size_t regmap, size_t n):
        # retire what only the old B levels reference; the base class retires those
        cdef uint32_t h
        for h in range(65536):
            if self.base6[h] or (self.root.t0[h] & PTR_MASK) != <uint64_t>(<uintptr_t>kdp_empty_chunk6):
                self._extras6(h, self.root.t0[h], 0)
        _LpmBase._publish(self, rt, bks, sh, bulk, reg, regsize, regbase, regmap, n)

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
        return _look6(self.root, PyLong_AsUnsignedLongLongMask(addr >> 64),
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
            _batch6(<const lpm_root_t *>kdp_ldptr(<void **>&self.root), ap, stride, op, n, pairs)
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
        cdef uint32_t v = _look6(<const lpm_root_t *>kdp_ldptr(<void **>&self.root), hi, lo)
        self._leave(s)
        return v

    cdef void lookup_n(self, const uint8_t *addrs16, uint32_t *out, size_t n) noexcept nogil:
        self.lookup_strided(<const char *>addrs16, 16, out, n)

    cdef void lookup_strided(self, const char *base, size_t stride, uint32_t *out,
                             size_t n) noexcept nogil:
        cdef int s = self._enter()
        _batch6(<const lpm_root_t *>kdp_ldptr(<void **>&self.root), base, stride, out, n, 0)
        self._leave(s)

    cdef void lookup_hilo(self, const uint64_t *hilo, uint32_t *out, size_t n) noexcept nogil:
        cdef int s = self._enter()
        _batch6(<const lpm_root_t *>kdp_ldptr(<void **>&self.root), <const char *>hilo, 16,
                out, n, 1)
        self._leave(s)


def _hilo_cols(prefixes):
    p = np.asarray(prefixes)
    if p.ndim == 2 and p.shape[1] == 16 and p.dtype == np.uint8:
        be = np.ascontiguousarray(p).view(">u8")
        return be[:, 0].astype(np.uint64), be[:, 1].astype(np.uint64)
    if p.ndim == 2 and p.shape[1] == 2 and p.dtype == np.uint64:
        return p[:, 0].copy(), p[:, 1].copy()
    raise KdpError("IPv6 prefixes must be an (n, 16) uint8 or (n, 2) uint64 array")
