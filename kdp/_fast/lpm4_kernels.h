/* The IPv4 chunk layout (kdp/_fast/lpm.pyx builds and reads it; included by
   that module only, so the static chunks below exist once).

   A root entry names the chunk of its /16 by a handle: the address of the
   chunk's root node (8-byte aligned) or of its wide table (64-byte aligned),
   whose low 3 bits are the flags KDP_LPM4_WIDE / KDP_LPM4_LEAF16 /
   KDP_LPM4_PALETTE.

   Chunk = a multibit trie of stride 8, leaf-pushed and popcount-compressed:
   a root node for bits 16..23 of the address; a child node for bits 24..31
   under every root slot that holds prefixes longer than /24.  A node is a
   256-bit bitmap with a bit set where a run of equal leaves starts (bit 0
   always), the number of runs started before each 64-bit word, then one leaf
   per run.  The leaf of slot p (w = p >> 6) is
       leaf[runs_before[w] + popcount(starts[w] & bits 0..p%64) - 1].
   A leaf is a next-hop index (0: "no rule of this chunk covers it", the /16's
   default in the root entry applies) or names a child node.

   In front of a root node (growing down): its distance from the start of its
   block (uint32 at node - 4), then the offsets of its children from the node
   (uint32, child k at node - 8 - 4k).  A block allocated on its own starts with
   an 8-byte size; bulk-built chunks share one region and have no size.

   A wide chunk (a /16 dense with prefixes longer than /24): a 64-byte header
   line (uint64 size first), then a direct table of 65,536 uint16 leaves for
   bits 16..31; the handle names the table | KDP_LPM4_WIDE.

   The 4-byte root (palette tables with many non-empty /16s; lpm.pyx): a
   root entry of 4 bytes names the chunk by its offset in one arena, and the
   /16's default (the next hop of the longest prefix shorter than /16
   covering it) lives in the chunk: palette entry 0 of an 8-bit root node
   (every 8-bit root of such a table has a palette), the uint16 at
   KDP_LPM4_N16_DFLT of a 16-bit root node, the uint16 at KDP_LPM4_WIDE_DFLT
   (in the header line) of a wide table.  Empty /16s name one small empty
   chunk per distinct default. */
#ifndef KDP_LPM4_KERNELS_H
#define KDP_LPM4_KERNELS_H

#include "lpm_kernels.h"

/* A node with 16-bit leaves: every child node, and the root nodes of tables
   with many next hops (handle flag KDP_LPM4_LEAF16). */
typedef struct {
    uint64_t starts[4];         /* bit p set: a run of equal leaves starts at slot p */
    uint16_t runs_before[4];    /* runs started in the words before word w */
    uint16_t dflt;              /* root nodes of 4-byte-root tables: the /16's default */
    uint16_t unused;
    uint16_t leaf[];            /* one per run; >= KDP_LPM4_CHILD16 names child (leaf - it) */
} kdp_lpm4_node16_t;

/* A root node with 8-bit leaves: one uint8 leaf per run, 0 (the /16
   default), KDP_LPM4_CHILD8 + k naming child k, or else
   - (tables of fewer than KDP_LPM4_CHILD8 next hops) the next-hop index;
   - (more; handle flag KDP_LPM4_PALETTE) an index 1..P into the node's
     palette: P + 1 uint16 next-hop indices (entry 0 = 0) between the header
     and the leaves.  runs_before[w] counts the palette's 2 (P + 1) bytes too,
     so the leaf of slot p is read as if the leaves started at the palette:
     leaf[runs_before[w] + popcount(starts[w] & bits 0..p%64) - 1].
   Placed so that it crosses no more cache lines than its size needs. */
typedef struct {
    uint64_t starts[4];
    uint8_t runs_before[4];     /* runs started before word w (+ 2 (P + 1)) */
    uint8_t leaf[];             /* (uint16 palette[P + 1]), then the uint8 leaves */
} kdp_lpm4_node8_t;

enum {
    /* byte offsets inside a node */
    KDP_LPM4_STARTS = offsetof(kdp_lpm4_node16_t, starts),
    KDP_LPM4_N16_RUNS = offsetof(kdp_lpm4_node16_t, runs_before),
    KDP_LPM4_N16_LEAF = offsetof(kdp_lpm4_node16_t, leaf),
    KDP_LPM4_N16_DFLT = offsetof(kdp_lpm4_node16_t, dflt),
    KDP_LPM4_N8_RUNS = offsetof(kdp_lpm4_node8_t, runs_before),
    KDP_LPM4_N8_LEAF = offsetof(kdp_lpm4_node8_t, leaf),
    /* in front of a root node */
    KDP_LPM4_ROOT_DIST = -4,    /* uint32: distance from the start of its block */
    KDP_LPM4_ROOT_KIDS = -8,    /* uint32: child k's offset from the node, at node - 8 - 4k */
    /* a wide chunk: its table one line after the start of its block */
    KDP_LPM4_WIDE_TABLE = 64,
    KDP_LPM4_WIDE_SLOTS = 65536,
    KDP_LPM4_WIDE_DFLT = -2,    /* a wide table's default (4-byte root), from the table */
    /* handle flags (low bits of the pointer in a root entry) */
    KDP_LPM4_WIDE = 1,          /* a wide table */
    KDP_LPM4_LEAF16 = 2,        /* a root node with 16-bit leaves (else 8-bit) */
    KDP_LPM4_PALETTE = 4,       /* an 8-bit root node whose leaves index its palette */
    KDP_LPM4_FLAGS = 7,         /* (nodes are 8-byte aligned, wide tables 64) */
    /* leaves naming a child: child k is leaf CHILD8 + k (8-bit) or CHILD16 + k */
    KDP_LPM4_CHILD8 = 0xF0,
    KDP_LPM4_CHILD16 = 0xFF00
};

_Static_assert(KDP_LPM4_STARTS == 0 && KDP_LPM4_N16_RUNS == 32 && KDP_LPM4_N16_LEAF == 44,
               "16-bit node layout");
_Static_assert(KDP_LPM4_N16_DFLT == 40, "16-bit node default");
_Static_assert(KDP_LPM4_N8_RUNS == 32 && KDP_LPM4_N8_LEAF == 36, "8-bit node layout");
_Static_assert(KDP_LPM4_N8_LEAF + 28 == 64, "an 8-bit root node of 28 bytes of palette and leaves is one line");

/* The chunk of a /16 without rules: a 64-byte line holding the block size
   (and, in its last 4 bytes, the distance from the block to the node), then
   an 8-bit root node with a palette of one entry (0) and a single run whose
   leaf is 0 ("use the /16's default").  Its handle: kdp_empty_chunk (no
   flags). */
static unsigned char kdp_empty_block[128] __attribute__((aligned(64)));
#define kdp_empty_chunk (kdp_empty_block + 64)
/* The same chunk read as a palette node (its palette [0] and its leaf 0 read
   the same either way): the empty /16s of tables with palettes. */
#define kdp_empty_chunk_palette (kdp_empty_chunk + KDP_LPM4_PALETTE)

/* The same in wide form (a direct table of 65,536 zero leaves): bulk-built
   tables with few non-empty /16s point their empty ones at it, so that all
   their lookups take the same (wide) path.  Its handle: the table | WIDE. */
static unsigned char kdp_empty_wide_block[KDP_LPM4_WIDE_TABLE + 2 * KDP_LPM4_WIDE_SLOTS + 64]
    __attribute__((aligned(64)));
#define kdp_empty_wide (kdp_empty_wide_block + KDP_LPM4_WIDE_TABLE + KDP_LPM4_WIDE)

static void kdp_lpm4_init_empty(void) {
    kdp_lpm4_node8_t *nd = (kdp_lpm4_node8_t *)kdp_empty_chunk;
    memset(kdp_empty_block, 0, sizeof(kdp_empty_block));
    *(uint64_t *)kdp_empty_block = sizeof(kdp_empty_block);
    *(uint32_t *)(kdp_empty_chunk + KDP_LPM4_ROOT_DIST) = (uint32_t)(kdp_empty_chunk - kdp_empty_block);
    nd->starts[0] = 1;          /* one run from slot 0, whose leaf 0 follows a palette of one entry (0) */
    memset(nd->runs_before, 2, sizeof(nd->runs_before));
    *(uint64_t *)kdp_empty_wide_block = sizeof(kdp_empty_wide_block);
}

/* a chunk's default, changed in place while readers run (4-byte root) */
static inline void kdp_st16(uint16_t *p, uint16_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }
static inline void kdp_st32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline uint32_t kdp_ld32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

#endif
