/* The IPv6 lookup walk (layout: lpm6_kernels.h; how the stages fit:
   "IPv6 lookup kernels" in lpm6.pyx), written once and compiled once per
   instruction set.  lpm6_kernels.h includes this file (no include guard, on
   purpose) once per copy, with
     KDP_L6(name)    this copy's name for name (kdp_lpm6_<name>_<isa>)
     KDP_L6_TARGET   its functions' attribute: __attribute__((target(...))),
                     or nothing for the copy built for the baseline
     KDP_L6_AVX512   1: the AVX-512 steps (gathers, masked compares), 0: the
                     scalar steps (which the compiler vectorises as the
                     copy's target allows)
   and kdp_lpm6_use_kernel() points kdp_lpm6_batch at the best copy the CPU
   runs (__builtin_cpu_supports), so a portable build keeps the AVX-512 speed
   where there is AVX-512 and runs everywhere else.  Every helper here is
   static inline with the copy's target, so the whole walk of one copy is
   compiled for one target (a helper of another target would not be inlined). */

/* Rank of x in one 64-byte line of sorted keys: how many are < x (unused
   lanes hold the all-ones key, which is never < x).  B lines: 32 uint16. */
static inline KDP_L6_TARGET uint32_t KDP_L6(rank16)(const void *p, uint32_t x) {
#if KDP_L6_AVX512
    __m512i k = _mm512_load_si512(p);
    return (uint32_t)__builtin_popcount((uint32_t)_mm512_cmplt_epu16_mask(k, _mm512_set1_epi16((short)x)));
#else
    const uint16_t *k = (const uint16_t *)p; uint32_t c = 0; int i;
    for (i = 0; i < 32; i++) c += k[i] < x;
    return c;
#endif
}
/* C lines: 16 uint32, the lanes in mask m only. */
static inline KDP_L6_TARGET uint32_t KDP_L6(rank32)(const void *p, uint32_t x, uint32_t m) {
#if KDP_L6_AVX512
    __m512i k = _mm512_load_si512(p);
    return (uint32_t)__builtin_popcount((uint32_t)_mm512_mask_cmplt_epu32_mask((__mmask16)m, k, _mm512_set1_epi32((int)x)));
#else
    const uint32_t *k = (const uint32_t *)p; uint32_t c = 0; int i;
    for (i = 0; i < 16; i++) c += ((m >> i) & 1) & (k[i] < x);
    return c;
#endif
}

/* The C value of x (bits 32..63) in C node nd of format f. */
static inline KDP_L6_TARGET uint32_t KDP_L6(c_node_lookup)(const char *nd, uint32_t f, uint32_t x) {
    const uint32_t *k;
    uint32_t j, nb, a, z, m, n;
    if (f == 0)                 /* one line of keys, then the values */
        return ((const uint32_t *)(nd + KDP_LPM6_LINE))[KDP_L6(rank32)(nd, x, 0xFFFF)];
    if (f == 1) {               /* top line -> block j -> key within it */
        j = KDP_L6(rank32)(nd, x, 0x7FFF);
        nb = ((const uint32_t *)nd)[KDP_LPM6_CTWO_NBLOCKS];
        j = KDP_LPM6_CLINE_KEYS * j + KDP_L6(rank32)(nd + KDP_LPM6_LINE + KDP_LPM6_LINE * (size_t)j, x, 0xFFFF);
        return ((const uint32_t *)(nd + KDP_LPM6_LINE + KDP_LPM6_LINE * (size_t)nb))[j];
    }
    n = ((const kdp_lpm6_sorted_t *)nd)->n;      /* a searched array */
    k = (const uint32_t *)(nd + KDP_LPM6_SORTED_KEYS);
    a = 0; z = n;
    while (a < z) {             /* a = number of starts <= x */
        m = (a + z) >> 1;
        if (k[m] <= x) a = m + 1; else z = m;
    }
    return ((const uint32_t *)(nd + KDP_LPM6_SORTED_KEYS + 4 * (size_t)n))[a];
}

/* The leaf of x (bits 64..127) in D node nd: binary search. */
static inline KDP_L6_TARGET uint32_t KDP_L6(d_node_lookup)(const char *nd, uint64_t x) {
    uint32_t n = ((const kdp_lpm6_sorted_t *)nd)->n, a = 0, z = n, m;
    const uint64_t *k = (const uint64_t *)(nd + KDP_LPM6_SORTED_KEYS);
    while (a < z) {
        m = (a + z) >> 1;
        if (k[m] <= x) a = m + 1; else z = m;
    }
    return ((const uint32_t *)(nd + KDP_LPM6_SORTED_KEYS + 8 * (size_t)n))[a];
}

/* Where the B level of handle h keeps the value of x (bits 16..31): the
   value index counts the ranges started at or before x (from 1). */
static inline KDP_L6_TARGET uint64_t *KDP_L6(b_value_slot)(uintptr_t h, uint32_t x) {
    char *b = (char *)(h & ~(uintptr_t)63);
    if (h & KDP_LPM6_B_BITMAP) {
        const char *rec = b + ((size_t)(x >> 6) << KDP_LPM6_BREC_SHIFT);     /* its kdp_lpm6_brec_t */
        uint32_t i = *(const uint32_t *)(rec + KDP_LPM6_BREC_RUNS) - 1
                     + kdp_popcnt(kdp_low(*(const uint64_t *)rec, x & 63));
        return (uint64_t *)(b + KDP_LPM6_BBITMAP_VALUES) + i;
    }
    return (uint64_t *)(b + KDP_LPM6_BLINE_VALUES) + KDP_L6(rank16)(b, x);
}

/* The leaf of (hi, lo) under B value v (a leaf, or a C node and maybe a D). */
static inline KDP_L6_TARGET uint32_t KDP_L6(resolve_b_value)(uint64_t v, uint64_t hi, uint64_t lo) {
    const char *nd;
    uint32_t r;
    if (v <= KDP_LPM6_LEAF_MAX) return (uint32_t)v;
    nd = (const char *)(uintptr_t)(v & ~(uint64_t)63);
    r = KDP_L6(c_node_lookup)(nd, (uint32_t)v & KDP_LPM6_C_FORMAT, (uint32_t)hi);
    if (r & KDP_LPM6_C_CHILD) r = KDP_L6(d_node_lookup)(kdp_lpm6_d_node(nd, r), lo);
    return r;
}

/* One address (host-order halves) -> value: root entry, B value, C and D. */
static inline KDP_L6_TARGET uint32_t KDP_L6(lookup1)(const uint64_t *t0, const uint32_t *nh_value,
                                                      uint64_t hi, uint64_t lo) {
    uint64_t e = kdp_ld64(&t0[hi >> 48]);
    uint32_t v = KDP_L6(resolve_b_value)(
        kdp_ld64(KDP_L6(b_value_slot)((uintptr_t)(e & KDP_LPM_PTR_MASK), (uint32_t)(hi >> 32) & 0xFFFF)), hi, lo);
    v |= (uint32_t)(e >> 48) & (0u - (uint32_t)(v == 0));      /* leaf 0: the /16 default */
    return nh_value[v];
}

/* ---- batch lookup stages, 8 addresses at a time ------------------------ */
/* roots: the 8 addresses at q (stride bytes apart; host-order (hi, lo) pairs
     or network-order bytes) -> his, los; their root entries; the line each
     lane's B level reads first: its bitmap record, the zero record (empty
     /16), or the key line (line-format B level: those lanes' bits are
     returned, bits 0..7: they need the scalar step; empty lanes bits 8..15).
   slots (bitmap or empty lanes only): the addresses of the B values.
   values: the B values, a leaf v turned into the dummy C node | v << 48;
     returns the leaf lanes' bits; prefetches the C nodes' two lines with
     KDP_LPM6_C_LOCALITY.
   Each prefetches what the next reads, from registers (reloading a wide
   store in pieces, or a wide load of narrow stores, stalls).
   A bitmap record's offset is (bits 16..31 >> 6) * 16 = (hi >> 34) & 0x3FF0;
   a B value index counts the ranges started up to the key (1-based), hence
   the values' base - 8. */
#if KDP_L6_AVX512
/* Prefetch the 8 addresses of v with locality hint L (3: every level, the
   default; KDP_LPM6_C_LOCALITY for the C nodes' lines). */
#define KDP_L6_PREFETCH8(v, L) do {                                                             \
    __m512i v_ = (v);                                                                           \
    __m128i a_ = _mm512_castsi512_si128(v_), b_ = _mm512_extracti64x2_epi64(v_, 1);             \
    __m128i c_ = _mm512_extracti64x2_epi64(v_, 2), d_ = _mm512_extracti64x2_epi64(v_, 3);       \
    __builtin_prefetch((const void *)(uintptr_t)_mm_cvtsi128_si64(a_), 0, L);                   \
    __builtin_prefetch((const void *)(uintptr_t)_mm_extract_epi64(a_, 1), 0, L);                \
    __builtin_prefetch((const void *)(uintptr_t)_mm_cvtsi128_si64(b_), 0, L);                   \
    __builtin_prefetch((const void *)(uintptr_t)_mm_extract_epi64(b_, 1), 0, L);                \
    __builtin_prefetch((const void *)(uintptr_t)_mm_cvtsi128_si64(c_), 0, L);                   \
    __builtin_prefetch((const void *)(uintptr_t)_mm_extract_epi64(c_, 1), 0, L);                \
    __builtin_prefetch((const void *)(uintptr_t)_mm_cvtsi128_si64(d_), 0, L);                   \
    __builtin_prefetch((const void *)(uintptr_t)_mm_extract_epi64(d_, 1), 0, L);                \
} while (0)
static inline KDP_L6_TARGET uint32_t KDP_L6(stage_roots)(const uint64_t *t0, const char *q, size_t stride,
                                                         int hostpairs, uint64_t *his, uint64_t *los,
                                                         uint64_t *entries, uint64_t *lines,
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
    __m512i h = _mm512_and_si512(e, _mm512_set1_epi64(KDP_LPM_PTR_MASK));
    __m512i b = _mm512_andnot_si512(_mm512_set1_epi64(63), h);
    __mmask8 bm = _mm512_test_epi64_mask(h, _mm512_set1_epi64(KDP_LPM6_B_BITMAP));
    __mmask8 em = _mm512_cmpeq_epi64_mask(h, _mm512_set1_epi64((long long)empty));
    __m512i off = _mm512_and_si512(_mm512_srli_epi64(hi, 34), _mm512_set1_epi64(0x3FF0));
    __m512i r = _mm512_mask_add_epi64(b, bm, b, off);
    r = _mm512_mask_mov_epi64(r, em, _mm512_set1_epi64((long long)zrec));
    KDP_L6_PREFETCH8(r, 3);
    _mm512_storeu_si512(his, hi);
    _mm512_storeu_si512(los, lo);
    _mm512_storeu_si512(entries, e);
    _mm512_storeu_si512(lines, r);
    return (uint32_t)(~bm & ~em & 0xFF) | ((uint32_t)em << 8);
}
static inline KDP_L6_TARGET void KDP_L6(stage_slots)(const uint64_t *his, const uint64_t *entries,
                                                     const uint64_t *lines, uint64_t *slots, uint64_t zrec) {
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
    KDP_L6_PREFETCH8(sl, 3);
    _mm512_storeu_si512(slots, sl);
}
static inline KDP_L6_TARGET uint32_t KDP_L6(stage_values)(const uint64_t *slots, uint64_t *values, uint64_t dummy) {
    __m512i v = _mm512_i64gather_epi64(_mm512_loadu_si512(slots), (const long long *)0, 1);
    __mmask8 lf = _mm512_cmple_epu64_mask(v, _mm512_set1_epi64(KDP_LPM6_LEAF_MAX));
    __m512i d = _mm512_or_si512(_mm512_slli_epi64(v, 48), _mm512_set1_epi64((long long)dummy));
    v = _mm512_mask_mov_epi64(v, lf, d);
    if (lf != 0xFF) {
        __m512i nd = _mm512_and_si512(v, _mm512_set1_epi64(KDP_LPM_PTR_MASK & ~63ULL));
        KDP_L6_PREFETCH8(nd, KDP_LPM6_C_LOCALITY);
        KDP_L6_PREFETCH8(_mm512_add_epi64(nd, _mm512_set1_epi64(64)), KDP_LPM6_C_LOCALITY);
    }
    _mm512_storeu_si512(values, v);
    return (uint32_t)lf;
}
/* out[0..15] holds next-hop indices (0: use the /16 default, entry >> 48):
   -> their values */
static inline KDP_L6_TARGET void KDP_L6(finish16)(uint32_t *out, const uint64_t *entries, const uint32_t *nh_value) {
    __m512i r = _mm512_loadu_si512(out);
    __m256i d0 = _mm512_cvtepi64_epi32(_mm512_srli_epi64(_mm512_loadu_si512(entries), 48));
    __m256i d1 = _mm512_cvtepi64_epi32(_mm512_srli_epi64(_mm512_loadu_si512(entries + 8), 48));
    __m512i d = _mm512_inserti64x4(_mm512_castsi256_si512(d0), d1, 1);
    r = _mm512_mask_mov_epi32(r, _mm512_testn_epi32_mask(r, r), d);
    _mm512_storeu_si512(out, _mm512_i32gather_epi32(r, (const int *)nh_value, 4));
}
#else
static inline KDP_L6_TARGET void KDP_L6(finish16)(uint32_t *out, const uint64_t *entries, const uint32_t *nh_value) {
    int j;
    for (j = 0; j < 16; j++) {
        uint32_t r = out[j];
        out[j] = nh_value[r ? r : (uint32_t)(entries[j] >> 48)];
    }
}
static inline KDP_L6_TARGET uint32_t KDP_L6(stage_roots)(const uint64_t *t0, const char *q, size_t stride,
                                                         int hostpairs, uint64_t *his, uint64_t *los,
                                                         uint64_t *entries, uint64_t *lines,
                                                         uint64_t empty, uint64_t zrec) {
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
static inline KDP_L6_TARGET void KDP_L6(stage_slots)(const uint64_t *his, const uint64_t *entries,
                                                     const uint64_t *lines, uint64_t *slots, uint64_t zrec) {
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
static inline KDP_L6_TARGET uint32_t KDP_L6(stage_values)(const uint64_t *slots, uint64_t *values, uint64_t dummy) {
    uint32_t lf = 0; int j;
    for (j = 0; j < 8; j++) {
        uint64_t v = *(const uint64_t *)(uintptr_t)slots[j];
        if (v <= KDP_LPM6_LEAF_MAX) { lf |= 1u << j; v = (v << 48) | dummy; }
        values[j] = v;
        __builtin_prefetch((const void *)(uintptr_t)(v & KDP_LPM_PTR_MASK & ~63ULL), 0, KDP_LPM6_C_LOCALITY);
        __builtin_prefetch((const void *)(uintptr_t)((v & KDP_LPM_PTR_MASK & ~63ULL) + 64), 0, KDP_LPM6_C_LOCALITY);
    }
    return lf;
}
#endif

/* n >= 8 addresses at base + i * stride -> out[i].  Groups of
   KDP_LPM6_GROUP addresses go through the levels in stages, each stage
   prefetching what the next one reads, so the misses of a group overlap.
   Stages 1-3 run 8 addresses at a time: root entries, B records (empty /16s
   read a static zero record), B values (a leaf becomes the dummy C node, so
   stage 4 does not branch on leaf or node).  Stage 4, one C-line compare per
   address, runs per address.  A group with a line-format B level takes the
   scalar B step; a group of leaves only (addresses outside the table) skips
   the C stage. */
static inline KDP_L6_TARGET void KDP_L6(staged)(const uint64_t *t0, const uint32_t *nh_value, const char *base,
                                                size_t stride, uint32_t *out, size_t n, int hostpairs) {
    uint64_t his[KDP_LPM6_GROUP];         /* the addresses' high halves */
    uint64_t los[KDP_LPM6_GROUP];         /* ... low halves */
    uint64_t entries[KDP_LPM6_GROUP];     /* their root entries */
    uint64_t lines[KDP_LPM6_GROUP];       /* the B line each reads first (a record, the key line) */
    uint64_t slots[KDP_LPM6_GROUP];       /* the addresses of their B values */
    uint64_t bvalues[KDP_LPM6_GROUP];     /* their B values (leaves: dummy C node | leaf << 48) */
    uint64_t tail[2 * KDP_LPM6_GROUP];    /* a short last group, copied and padded */
    const uint64_t zrec = (uint64_t)(uintptr_t)kdp_lpm6_zero_record;
    const uint64_t emp = (uint64_t)(uintptr_t)kdp_empty_chunk6;
    const uint64_t dummy = (uint64_t)(uintptr_t)kdp_lpm6_dummy_c;
    size_t g0 = 0, m, m8, j;
    while (g0 < n) {
        uint32_t nln = 0, nemp = 0, nleaf = 0, k, r;     /* line-format lanes, empty-/16 and leaf counts */
        m = n - g0;
        if (m > KDP_LPM6_GROUP) m = KDP_LPM6_GROUP;
        m8 = (m + 7) & ~(size_t)7;
        if (m == KDP_LPM6_GROUP) {
            for (j = 0; j < m; j += 8) {
                k = KDP_L6(stage_roots)(t0, base + (g0 + j) * stride, stride, hostpairs,
                                        his + j, los + j, entries + j, lines + j, emp, zrec);
                nln |= k & 0xFF;
                nemp += kdp_popcnt(k >> 8);
            }
        } else {                  /* a short last group: copy it, padded to 8s */
            for (j = 0; j < m8; j++) {
                if (j < m) memcpy(&tail[2 * j], base + (g0 + j) * stride, 16);
                else tail[2 * j] = tail[2 * j + 1] = 0;
            }
            for (j = 0; j < m; j += 8) {
                k = KDP_L6(stage_roots)(t0, (const char *)&tail[2 * j], 16, hostpairs,
                                        his + j, los + j, entries + j, lines + j, emp, zrec);
                k &= m - j < 8 ? (0x101u << (m - j)) - 0x101u : 0xFFFFu;
                nln |= k & 0xFF;
                nemp += kdp_popcnt(k >> 8);
            }
        }
        if (nemp == m) {          /* all in empty /16s: their defaults */
            for (j = 0; j < m; j++) out[g0 + j] = nh_value[(uint32_t)(entries[j] >> 48)];
            g0 += m;
            continue;
        }
        if (nln == 0) {
            for (j = 0; j < m; j += 8) KDP_L6(stage_slots)(his + j, entries + j, lines + j, slots + j, zrec);
        } else {                  /* (pad lanes too: stage 3 reads all 8 of a block) */
            for (j = 0; j < m8; j++) {
                slots[j] = (uint64_t)(uintptr_t)KDP_L6(b_value_slot)((uintptr_t)(entries[j] & KDP_LPM_PTR_MASK),
                                                                     (uint32_t)(his[j] >> 32) & 0xFFFF);
                kdp_prefetch((const void *)(uintptr_t)slots[j]);
            }
        }
        for (j = 0; j < m; j += 8)
            nleaf += kdp_popcnt(KDP_L6(stage_values)(slots + j, bvalues + j, dummy)
                                & (m - j < 8 ? (1u << (m - j)) - 1 : 0xFFu));
        if (nleaf == m) {         /* leaves only (e.g. addresses outside the table) */
            for (j = 0; j < m; j++) {
                r = (uint32_t)(bvalues[j] >> 48);
                r |= (uint32_t)(entries[j] >> 48) & (0u - (uint32_t)(r == 0));
                out[g0 + j] = nh_value[r];
            }
            g0 += m;
            continue;
        }
        for (j = 0; j < m; j++) {
            uint64_t v = bvalues[j];
            const char *nd = (const char *)(uintptr_t)(v & KDP_LPM_PTR_MASK & ~(uint64_t)63);
            r = KDP_L6(c_node_lookup)(nd, (uint32_t)v & KDP_LPM6_C_FORMAT, (uint32_t)his[j]);
            if (r & KDP_LPM6_C_CHILD) r = KDP_L6(d_node_lookup)(kdp_lpm6_d_node(nd, r), los[j]);
            out[g0 + j] = r | (uint32_t)(v >> 48);       /* (the leaf, for the dummy node) */
        }
        j = 0;
        while (j + 16 <= m) {     /* /16 defaults and values, 16 at a time */
            KDP_L6(finish16)(out + g0 + j, entries + j, nh_value);
            j += 16;
        }
        for (; j < m; j++) {
            r = out[g0 + j];
            r |= (uint32_t)(entries[j] >> 48) & (0u - (uint32_t)(r == 0));
            out[g0 + j] = nh_value[r];
        }
        g0 += m;
    }
}

/* The entry point of this copy: n addresses at base + i * stride -> out[i]
   (hostpairs: host-order (hi, lo) pairs, else 16 network-order bytes).
   Batches of 8 or more go through the stages (faster at every table size
   measured, cache-resident ones too); shorter ones one address at a time. */
static KDP_L6_TARGET void KDP_L6(batch)(const uint64_t *t0, const uint32_t *nh_value, const char *base,
                                        size_t stride, uint32_t *out, size_t n, int hostpairs) {
    size_t i;
    if (n >= 8) {
        KDP_L6(staged)(t0, nh_value, base, stride, out, n, hostpairs);
        return;
    }
    for (i = 0; i < n; i++) {
        const char *q = base + i * stride;
        uint64_t hi = kdp_load64(q), lo = kdp_load64(q + 8);
        if (!hostpairs) { hi = kdp_bswap64(hi); lo = kdp_bswap64(lo); }
        out[i] = KDP_L6(lookup1)(t0, nh_value, hi, lo);
    }
}
