/* C primitives shared by the IPv4 and IPv6 longest-prefix-match tables
   (kdp/_fast/lpm.pyx, lpm6.pyx; declared for Cython in lpm_kernels.pxd).

   Atomic loads and stores (readers run without the GIL while one writer
   publishes), the two-slot epoch counter readers announce themselves in,
   aligned and huge-page memory, bit operations and unaligned loads.

   Static inline functions and macros only, no data.  Only lpm.pyx and
   lpm6.pyx include it (lpm.pxd and lpm6.pxd do not, so the modules that
   cimport the tables do not get these names).  The per-family layouts and
   static chunks live in lpm4_kernels.h and lpm6_kernels.h, each included by
   one module only. */
#ifndef KDP_LPM_KERNELS_H
#define KDP_LPM_KERNELS_H

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <stdint.h>
#include <stddef.h>
#include <immintrin.h>

/* The value every lookup returns for an address no prefix covers (lpm.pxd
   defines it too, for the modules that cimport the tables). */
#ifndef KDP_LPM_MISS
#define KDP_LPM_MISS 0xFFFFFFFFu
#endif

/* A root entry (and an IPv6 B value naming a C node) keeps a pointer in its
   low 48 bits; the root entry keeps the /16's default next hop in the high 16. */
#define KDP_LPM_PTR_MASK 0xFFFFFFFFFFFFULL

/* ---- atomics ----------------------------------------------------------- */
/* Writers publish with release stores (what a published pointer names is
   complete before it); readers load root entries and B values relaxed and
   reach the data through them (an address dependency). */
static inline uint64_t kdp_ld64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline void kdp_st64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void *kdp_ldptr(void *const *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void kdp_stptr(void **p, void *v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }

/* ---- the epoch counter ------------------------------------------------- */
/* A reader adds itself to the active count of the current epoch's slot (and
   retries if the epoch flipped meanwhile); the writer flips the epoch and
   frees what it retired before the previous flip once the other slot is 0. */
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

/* ---- memory ------------------------------------------------------------ */
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

/* ---- bits and loads ---------------------------------------------------- */
#define kdp_popcnt(x) ((uint32_t)__builtin_popcountll(x))
#define kdp_clz64(x) __builtin_clzll(x)
#define kdp_ctz64(x) __builtin_ctzll(x)
#if defined(__BMI2__)
#define kdp_low(x, s) _bzhi_u64((x), (uint32_t)(s) + 1)   /* bits 0..s of x */
#else
#define kdp_low(x, s) ((x) & ((((uint64_t)2) << (s)) - 1))
#endif
#define kdp_prefetch(p) __builtin_prefetch((const void *)(p), 0, 3)
#define kdp_bswap64(x) __builtin_bswap64(x)
static inline uint64_t kdp_load64(const void *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static inline uint32_t kdp_load32(const void *p) { uint32_t v; memcpy(&v, p, 4); return v; }

#endif
