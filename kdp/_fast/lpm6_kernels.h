/* The IPv6 chunk layout and the vector steps of IPv6 batch lookups
   (kdp/_fast/lpm6.pyx builds and reads them; included by that module only,
   so the static chunks below exist once).

   An IPv6 chunk holds the rules of one /16 as leaf-pushed disjoint ranges
   (each range: a start and the value of the longest rule covering it), in
   three levels, each read with one vector compare or one bitmap step:

     B  bits 16..31 of the /16;
     C  bits 32..63 of one /32 that holds rules longer than /32;
     D  bits 64..127 of one /64 that holds rules longer than /64 (rare).

   Every block (a bulk-built chunk, a chunk rebuilt on its own, a C node or B
   level replaced by an update) starts with a 64-byte header line,
   kdp_lpm6_header_t; what it holds follows.  A root entry names the chunk by
   a handle: the address of its B level | its format (bit 0).

   B level, format 0 (line; at most KDP_LPM6_BLINE_KEYS range starts after
   the first): one line of 32 uint16 keys, key i = start of range i+1 minus 1,
   sorted, unused lanes 0xFFFF; the range of x is the number of keys < x;
   uint64 values at +KDP_LPM6_BLINE_VALUES.
   B level, format 1 (bitmap): 1,024 records kdp_lpm6_brec_t, one per 64
   keys (bit: a range starts at this key; the ranges started before the
   record), uint64 values at +KDP_LPM6_BBITMAP_VALUES.
   A B value <= KDP_LPM6_LEAF_MAX is a leaf (next-hop index; 0: the /16's
   default), else the address of a C node (64-byte aligned) | its format.

   C node (keys: bits 32..63 of the address; values uint32):
     format 0, <= KDP_LPM6_CLINE_KEYS keys: one line of 16 uint32 keys (start
       minus 1; unused 0xFFFFFFFF), values at +64 (one line on);
     format 1, <= KDP_LPM6_CTWO_KEYS keys: a top line (the first key of
       blocks 1.. in lanes 0..14, the number of blocks nb in lane 15), nb
       lines of 16 keys, values at +64 + 64 nb;
     format 2: kdp_lpm6_sorted_t {n}, n uint32 range starts at
       +KDP_LPM6_SORTED_KEYS (binary search), n + 1 values after them.
   D node: kdp_lpm6_sorted_t {n}, n uint64 starts at +KDP_LPM6_SORTED_KEYS,
   n + 1 uint32 values after them.
   A C value with KDP_LPM6_C_CHILD set names a D node: bits 30..2 are its
   offset from the C node in 64-byte units (same block); else it is a leaf. */
#ifndef KDP_LPM6_KERNELS_H
#define KDP_LPM6_KERNELS_H

#include "lpm_kernels.h"

typedef struct {
    uint64_t size;              /* bytes of the block, header included */
    uint64_t nvalues;           /* blocks holding a B level: its number of values */
    unsigned char unused[48];
} kdp_lpm6_header_t;

typedef struct {                /* one per 64 keys of a bitmap B level */
    uint64_t starts;            /* bit k: a range starts at key 64 r + k */
    uint32_t runs_before;       /* ranges started in the records before this one */
    uint32_t unused;
} kdp_lpm6_brec_t;

typedef struct {                /* C format 2 and D nodes: searched arrays */
    uint32_t n;                 /* range starts after the first */
    uint32_t unused;
} kdp_lpm6_sorted_t;

enum {
    KDP_LPM6_LINE = 64,                 /* a cache line: the unit of B and C layouts */
    KDP_LPM6_HEADER = sizeof(kdp_lpm6_header_t),
    KDP_LPM6_NVALUES = offsetof(kdp_lpm6_header_t, nvalues),
    KDP_LPM6_B_BITMAP = 1,              /* handle / format bit: a bitmap B level */
    KDP_LPM6_BLINE_KEYS = 32,
    KDP_LPM6_BLINE_VALUES = 64,
    KDP_LPM6_BRECORDS = 1024,
    KDP_LPM6_BREC_SHIFT = 4,            /* log2 sizeof(kdp_lpm6_brec_t) */
    KDP_LPM6_BREC_RUNS = offsetof(kdp_lpm6_brec_t, runs_before),
    KDP_LPM6_BBITMAP_VALUES = KDP_LPM6_BRECORDS * sizeof(kdp_lpm6_brec_t),
    KDP_LPM6_LEAF_MAX = 0xFFFF,         /* B values above are C node addresses */
    KDP_LPM6_C_FORMAT = 3,              /* low bits of a B value naming a C node */
    KDP_LPM6_CLINE_KEYS = 16,
    KDP_LPM6_CTWO_KEYS = 256,
    KDP_LPM6_CTWO_NBLOCKS = 15,         /* the lane of a format-1 top line holding nb */
    KDP_LPM6_SORTED_KEYS = sizeof(kdp_lpm6_sorted_t)
};
/* a C value naming a D node */
#define KDP_LPM6_C_CHILD 0x80000000u
/* a B value while its chunk is being built: the C node's offset from the B
   level (made an address once the chunk is in its final place) */
#define KDP_LPM6_B_TAG 0x8000000000000000ULL

_Static_assert(KDP_LPM6_HEADER == 64 && KDP_LPM6_NVALUES == 8, "block header line");
_Static_assert(KDP_LPM6_BLINE_KEYS * 2 == KDP_LPM6_BLINE_VALUES, "B keys: one line of uint16");
_Static_assert(sizeof(kdp_lpm6_brec_t) == 16 && 1 << KDP_LPM6_BREC_SHIFT == 16 && KDP_LPM6_BREC_RUNS == 8,
               "B bitmap record");
_Static_assert(KDP_LPM6_BRECORDS * 64 == 65536 && KDP_LPM6_BBITMAP_VALUES == 16384,
               "B bitmap: one bit per key of bits 16..31");
_Static_assert(KDP_LPM6_CLINE_KEYS * 4 == KDP_LPM6_LINE && KDP_LPM6_SORTED_KEYS == 8, "C and D nodes");
_Static_assert(KDP_LPM6_CTWO_KEYS == KDP_LPM6_CLINE_KEYS * (KDP_LPM6_CTWO_NBLOCKS + 1),
               "C format 1: the top line's 15 lanes name blocks 1..15");

/* Rank of x in one 64-byte line of sorted keys: how many are < x (unused
   lanes hold the all-ones key, which is never < x).  B lines: 32 uint16. */
static inline uint32_t kdp_lpm6_rank16(const void *p, uint32_t x) {
#if defined(__AVX512BW__)
    __m512i k = _mm512_load_si512(p);
    return (uint32_t)__builtin_popcount((uint32_t)_mm512_cmplt_epu16_mask(k, _mm512_set1_epi16((short)x)));
#else
    const uint16_t *k = (const uint16_t *)p; uint32_t c = 0; int i;
    for (i = 0; i < 32; i++) c += k[i] < x;
    return c;
#endif
}
/* C lines: 16 uint32, the lanes in mask m only. */
static inline uint32_t kdp_lpm6_rank32(const void *p, uint32_t x, uint32_t m) {
#if defined(__AVX512F__)
    __m512i k = _mm512_load_si512(p);
    return (uint32_t)__builtin_popcount((uint32_t)_mm512_mask_cmplt_epu32_mask((__mmask16)m, k, _mm512_set1_epi32((int)x)));
#else
    const uint32_t *k = (const uint32_t *)p; uint32_t c = 0; int i;
    for (i = 0; i < 16; i++) c += ((m >> i) & 1) & (k[i] < x);
    return c;
#endif
}

/* ---- static chunks ----------------------------------------------------- */
/* The chunk of a /16 without rules: a header line (size, one B value), then
   a line-format B level with no keys (pads only) and its one value 0. */
static unsigned char kdp_empty_block6[192] __attribute__((aligned(64)));
#define kdp_empty_chunk6 (kdp_empty_block6 + KDP_LPM6_HEADER)

/* A bitmap B record with one range (bit 0) followed by its value 0: batch
   lookups of addresses in empty /16s read it (the bitmap level's steps, no
   format branch). */
static uint64_t kdp_lpm6_zero_record[8] __attribute__((aligned(64))) = { 1, 0, 0 };

/* A C node (format 0) with no keys and value 0: batch lookups of addresses
   whose B value is a leaf read it instead of branching. */
static const uint32_t kdp_lpm6_dummy_c[32] __attribute__((aligned(64))) = {
    0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu,
    0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu,
    0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu };

static void kdp_lpm6_init_empty(void) {
    kdp_lpm6_header_t *h = (kdp_lpm6_header_t *)kdp_empty_block6;
    memset(kdp_empty_block6, 0, sizeof(kdp_empty_block6));
    h->size = sizeof(kdp_empty_block6);
    h->nvalues = 1;
    memset(kdp_empty_chunk6, 0xFF, KDP_LPM6_BLINE_VALUES);
}

/* ---- batch lookup stages, 8 addresses at a time ------------------------ */
/* (see _lookup6_staged in lpm6.pyx)
   roots: the 8 addresses at q (stride bytes apart; host-order (hi, lo) pairs
     or network-order bytes) -> his, los; their root entries; the line each
     lane's B level reads first: its bitmap record, the zero record (empty
     /16), or the key line (line-format B level: those lanes' bits are
     returned, bits 0..7: they need the scalar step; empty lanes bits 8..15).
   slots (bitmap or empty lanes only): the addresses of the B values.
   values: the B values, a leaf v turned into the dummy C node | v << 48;
     returns the leaf lanes' bits.
   Each prefetches what the next reads, from registers (reloading a wide
   store in pieces, or a wide load of narrow stores, stalls).
   A bitmap record's offset is (bits 16..31 >> 6) * 16 = (hi >> 34) & 0x3FF0;
   a B value index counts the ranges started up to the key (1-based), hence
   the values' base - 8. */
#if defined(__AVX512F__) && defined(__AVX512VPOPCNTDQ__) && defined(__AVX512BW__) && defined(__AVX512DQ__)
static inline void kdp_prefetch8(__m512i v) {
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
static inline uint32_t kdp_lpm6_stage_roots(const uint64_t *t0, const char *q, size_t stride, int hostpairs,
                                            uint64_t *his, uint64_t *los, uint64_t *entries,
                                            uint64_t *lines, uint64_t empty, uint64_t zrec) {
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
    __m512i h = _mm512_and_si512(e, _mm512_set1_epi64(KDP_LPM_PTR_MASK));
    __m512i b = _mm512_andnot_si512(_mm512_set1_epi64(63), h);
    __mmask8 bm = _mm512_test_epi64_mask(h, _mm512_set1_epi64(KDP_LPM6_B_BITMAP));
    __mmask8 em = _mm512_cmpeq_epi64_mask(h, _mm512_set1_epi64((long long)empty));
    __m512i off = _mm512_and_si512(_mm512_srli_epi64(hi, 34), _mm512_set1_epi64(0x3FF0));
    __m512i r = _mm512_mask_add_epi64(b, bm, b, off);
    r = _mm512_mask_mov_epi64(r, em, _mm512_set1_epi64((long long)zrec));
    kdp_prefetch8(r);
    _mm512_storeu_si512(his, hi);
    _mm512_storeu_si512(los, lo);
    _mm512_storeu_si512(entries, e);
    _mm512_storeu_si512(lines, r);
    return (uint32_t)(~bm & ~em & 0xFF) | ((uint32_t)em << 8);
}
static inline void kdp_lpm6_stage_slots(const uint64_t *his, const uint64_t *entries, const uint64_t *lines,
                                        uint64_t *slots, uint64_t zrec) {
    __m512i r = _mm512_loadu_si512(lines);
    __m512i bits = _mm512_i64gather_epi64(r, (const long long *)0, 1);
    __m512i cnt = _mm512_i64gather_epi64(_mm512_add_epi64(r, _mm512_set1_epi64(KDP_LPM6_BREC_RUNS)),
                                         (const long long *)0, 1);
    __m512i x = _mm512_and_si512(_mm512_srli_epi64(_mm512_loadu_si512(his), 32), _mm512_set1_epi64(63));
    __m512i low = _mm512_sub_epi64(_mm512_sllv_epi64(_mm512_set1_epi64(2), x), _mm512_set1_epi64(1));
    __m512i idx = _mm512_add_epi64(_mm512_popcnt_epi64(_mm512_and_si512(bits, low)),
                                   _mm512_and_si512(cnt, _mm512_set1_epi64(0xFFFFFFFF)));
    __m512i vb = _mm512_add_epi64(_mm512_andnot_si512(_mm512_set1_epi64(63),
                     _mm512_and_si512(_mm512_loadu_si512(entries), _mm512_set1_epi64(KDP_LPM_PTR_MASK))),
                     _mm512_set1_epi64(KDP_LPM6_BBITMAP_VALUES - 8));
    vb = _mm512_mask_mov_epi64(vb, _mm512_cmpeq_epi64_mask(r, _mm512_set1_epi64((long long)zrec)),
                               _mm512_set1_epi64((long long)(zrec + sizeof(kdp_lpm6_brec_t) - 8)));
    __m512i sl = _mm512_add_epi64(vb, _mm512_slli_epi64(idx, 3));
    kdp_prefetch8(sl);
    _mm512_storeu_si512(slots, sl);
}
static inline uint32_t kdp_lpm6_stage_values(const uint64_t *slots, uint64_t *values, uint64_t dummy) {
    __m512i v = _mm512_i64gather_epi64(_mm512_loadu_si512(slots), (const long long *)0, 1);
    __mmask8 lf = _mm512_cmple_epu64_mask(v, _mm512_set1_epi64(KDP_LPM6_LEAF_MAX));
    __m512i d = _mm512_or_si512(_mm512_slli_epi64(v, 48), _mm512_set1_epi64((long long)dummy));
    v = _mm512_mask_mov_epi64(v, lf, d);
    if (lf != 0xFF) {
        __m512i nd = _mm512_and_si512(v, _mm512_set1_epi64(KDP_LPM_PTR_MASK & ~63ULL));
        kdp_prefetch8(nd);
        kdp_prefetch8(_mm512_add_epi64(nd, _mm512_set1_epi64(64)));
    }
    _mm512_storeu_si512(values, v);
    return (uint32_t)lf;
}
/* out[0..15] holds next-hop indices (0: use the /16 default, entry >> 48):
   -> their values */
static inline void kdp_lpm6_finish16(uint32_t *out, const uint64_t *entries, const uint32_t *nh_value) {
    __m512i r = _mm512_loadu_si512(out);
    __m256i d0 = _mm512_cvtepi64_epi32(_mm512_srli_epi64(_mm512_loadu_si512(entries), 48));
    __m256i d1 = _mm512_cvtepi64_epi32(_mm512_srli_epi64(_mm512_loadu_si512(entries + 8), 48));
    __m512i d = _mm512_inserti64x4(_mm512_castsi256_si512(d0), d1, 1);
    r = _mm512_mask_mov_epi32(r, _mm512_testn_epi32_mask(r, r), d);
    _mm512_storeu_si512(out, _mm512_i32gather_epi32(r, (const int *)nh_value, 4));
}
#else
static inline void kdp_lpm6_finish16(uint32_t *out, const uint64_t *entries, const uint32_t *nh_value) {
    int j;
    for (j = 0; j < 16; j++) {
        uint32_t r = out[j];
        out[j] = nh_value[r ? r : (uint32_t)(entries[j] >> 48)];
    }
}
static inline uint32_t kdp_lpm6_stage_roots(const uint64_t *t0, const char *q, size_t stride, int hostpairs,
                                            uint64_t *his, uint64_t *los, uint64_t *entries,
                                            uint64_t *lines, uint64_t empty, uint64_t zrec) {
    uint32_t ln = 0; int j;
    for (j = 0; j < 8; j++) {
        uint64_t hi, lo, e, h;
        memcpy(&hi, q + j * stride, 8);
        memcpy(&lo, q + j * stride + 8, 8);
        if (!hostpairs) { hi = __builtin_bswap64(hi); lo = __builtin_bswap64(lo); }
        his[j] = hi; los[j] = lo;
        e = t0[hi >> 48]; h = e & KDP_LPM_PTR_MASK;
        entries[j] = e;
        lines[j] = (h & ~(uint64_t)63) + ((h & KDP_LPM6_B_BITMAP) ? ((hi >> 34) & 0x3FF0) : 0);
        if (h == empty) { lines[j] = zrec; ln |= 256u << j; }
        else if (!(h & KDP_LPM6_B_BITMAP)) ln |= 1u << j;
        __builtin_prefetch((const void *)(uintptr_t)lines[j], 0, 3);
    }
    return ln;
}
static inline void kdp_lpm6_stage_slots(const uint64_t *his, const uint64_t *entries, const uint64_t *lines,
                                        uint64_t *slots, uint64_t zrec) {
    int j;
    for (j = 0; j < 8; j++) {
        const kdp_lpm6_brec_t *rec = (const kdp_lpm6_brec_t *)(uintptr_t)lines[j];
        uint64_t vb = ((entries[j] & KDP_LPM_PTR_MASK) & ~(uint64_t)63) + KDP_LPM6_BBITMAP_VALUES;
        uint32_t s = (uint32_t)(his[j] >> 32) & 63;
        uint64_t low = s == 63 ? ~(uint64_t)0 : (((uint64_t)2 << s) - 1);
        if (lines[j] == zrec) vb = zrec + sizeof(kdp_lpm6_brec_t);
        slots[j] = vb + 8 * ((uint64_t)rec->runs_before - 1 + (uint64_t)__builtin_popcountll(rec->starts & low));
        __builtin_prefetch((const void *)(uintptr_t)slots[j], 0, 3);
    }
}
static inline uint32_t kdp_lpm6_stage_values(const uint64_t *slots, uint64_t *values, uint64_t dummy) {
    uint32_t lf = 0; int j;
    for (j = 0; j < 8; j++) {
        uint64_t v = *(const uint64_t *)(uintptr_t)slots[j];
        if (v <= KDP_LPM6_LEAF_MAX) { lf |= 1u << j; v = (v << 48) | dummy; }
        values[j] = v;
        __builtin_prefetch((const void *)(uintptr_t)(v & KDP_LPM_PTR_MASK & ~63ULL), 0, 3);
        __builtin_prefetch((const void *)(uintptr_t)((v & KDP_LPM_PTR_MASK & ~63ULL) + 64), 0, 3);
    }
    return lf;
}
#endif

#endif
