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

/* The D node C value r (KDP_LPM6_C_CHILD set) names: bits 30..2 are its
   distance from the C node nd in lines. */
static inline const char *kdp_lpm6_d_node(const char *nd, uint32_t r) {
    return nd + KDP_LPM6_LINE * (size_t)((r >> 2) & 0x1FFFFFFF);
}

/* Batch lookups walk in stages, this many addresses per group. */
#define KDP_LPM6_GROUP 128

/* The locality hint of the C nodes' prefetches (__builtin_prefetch: 1 is
   PREFETCHT2).  A group prefetches 256 C lines, half the L1 data cache of
   the CPUs measured, 128 lookups before the C stage reads them; fetched to
   all levels (3, PREFETCHT0) they evict from L1 the group's records, B values
   and stack arrays still in use.  On the AMD EPYC (Zen 4) of bench/README.md
   (LPM section, 2026-12-04), A/B against hint 3, hit90 on the 200k table:
   hint 1 +4-18 % in five of six sessions (-2 % in one under load 3.3),
   hint 2 +11 %, 0 (non-temporal) +-0; uniform unchanged.  The records' and
   B values' prefetches keep hint 3 (with 1 they ran no faster, uniform
   -2-8 %). */
#define KDP_LPM6_C_LOCALITY 1

/* ---- the lookup walk, one copy per instruction set --------------------- */
/* lpm6_walk.h, compiled three times: for the build's baseline target
   (generic), for AVX2 + BMI2 (x86-64-v3's vector set), and with the AVX-512
   steps.  kdp_lpm6_batch points at the best one the CPU runs.  The generic
   copy's b_value_slot and lookup1 also serve the table's updates and single
   lookups (one address: the vector steps gain nothing measurable there). */
#define KDP_L6_CAT2(a, b) a##b
#define KDP_L6_CAT(a, b) KDP_L6_CAT2(a, b)
#define KDP_L6(name) KDP_L6_CAT(KDP_L6_CAT(kdp_lpm6_, name), KDP_L6_SUFFIX)

#define KDP_L6_SUFFIX _generic
#define KDP_L6_TARGET
#define KDP_L6_AVX512 0
#include "lpm6_walk.h"
#undef KDP_L6_SUFFIX
#undef KDP_L6_TARGET
#undef KDP_L6_AVX512

#if defined(__x86_64__)
#define KDP_LPM6_X86 1
#define KDP_L6_SUFFIX _avx2
#define KDP_L6_TARGET __attribute__((target("avx2,bmi,bmi2,popcnt,lzcnt")))
#define KDP_L6_AVX512 0
#include "lpm6_walk.h"
#undef KDP_L6_SUFFIX
#undef KDP_L6_TARGET
#undef KDP_L6_AVX512

#define KDP_L6_SUFFIX _avx512
#define KDP_L6_TARGET __attribute__((target("avx2,bmi,bmi2,popcnt,lzcnt,avx512f,avx512bw,avx512dq,avx512vl,avx512vpopcntdq")))
#define KDP_L6_AVX512 1
#include "lpm6_walk.h"
#undef KDP_L6_SUFFIX
#undef KDP_L6_TARGET
#undef KDP_L6_AVX512
#else
#define KDP_LPM6_X86 0
#endif

/* ---- choosing a copy at run time --------------------------------------- */
typedef void (*kdp_lpm6_batch_fn)(const uint64_t *t0, const uint32_t *nh_value, const char *base,
                                  size_t stride, uint32_t *out, size_t n, int hostpairs);
static kdp_lpm6_batch_fn kdp_lpm6_batch_impl = kdp_lpm6_batch_generic;
static const char *kdp_lpm6_kernel_name = "generic";

/* Whether this CPU (and its OS: the AVX state saved on context switches,
   which __builtin_cpu_supports checks through XGETBV) runs copy `name`. */
static int kdp_lpm6_kernel_runs(const char *name) {
    if (!strcmp(name, "generic")) return 1;
#if KDP_LPM6_X86
    __builtin_cpu_init();
    if (!strcmp(name, "avx2"))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2")
               && __builtin_cpu_supports("popcnt");
    if (!strcmp(name, "avx512"))
        return kdp_lpm6_kernel_runs("avx2") && __builtin_cpu_supports("avx512f")
               && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq")
               && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vpopcntdq");
#endif
    return 0;
}

/* Use copy `name` ("generic", "avx2", "avx512"; NULL: the best this CPU
   runs).  0 done, -1 no such copy in this build, -2 the CPU does not run it.
   Called at import (and by tests, between lookups: not while other threads
   look up). */
static int kdp_lpm6_use_kernel(const char *name) {
    if (name == NULL) {
        name = kdp_lpm6_kernel_runs("avx512") ? "avx512" : kdp_lpm6_kernel_runs("avx2") ? "avx2" : "generic";
    }
    if (strcmp(name, "generic") && !(KDP_LPM6_X86 && (!strcmp(name, "avx2") || !strcmp(name, "avx512"))))
        return -1;
    if (!kdp_lpm6_kernel_runs(name)) return -2;
#if KDP_LPM6_X86
    if (!strcmp(name, "avx512")) { kdp_lpm6_batch_impl = kdp_lpm6_batch_avx512; kdp_lpm6_kernel_name = "avx512"; return 0; }
    if (!strcmp(name, "avx2")) { kdp_lpm6_batch_impl = kdp_lpm6_batch_avx2; kdp_lpm6_kernel_name = "avx2"; return 0; }
#endif
    kdp_lpm6_batch_impl = kdp_lpm6_batch_generic;
    kdp_lpm6_kernel_name = "generic";
    return 0;
}

static inline void kdp_lpm6_batch(const uint64_t *t0, const uint32_t *nh_value, const char *base,
                                  size_t stride, uint32_t *out, size_t n, int hostpairs) {
    kdp_lpm6_batch_impl(t0, nh_value, base, stride, out, n, hostpairs);
}

#endif
