# Declarations of lpm4_kernels.h: the IPv4 chunk layout (named offsets,
# handle flags, child-leaf bases), its static empty chunks and the 16/32-bit
# atomics the 4-byte root uses.  The C is in the header; see its comment for
# the layout.  The header defines static data (the empty chunks), which must
# exist once: only lpm.pyx cimports this, directly and through
# lpm4_lookup.pxd (both end up in one compiled module).

from libc.stdint cimport uint16_t, uint32_t

# The IPv4 chunk layout, defined once in lpm4_kernels.h (see its comment).
cdef extern from "lpm4_kernels.h" nogil:
    enum:
        STARTS "KDP_LPM4_STARTS"        # node: uint64 run-start bitmap[4]
        N16_RUNS "KDP_LPM4_N16_RUNS"    # 16-bit node: uint16 runs_before[4]
        N16_LEAF "KDP_LPM4_N16_LEAF"    # 16-bit node: uint16 leaf[]
        N16_DFLT "KDP_LPM4_N16_DFLT"    # 16-bit root node: uint16 default (4-byte root)
        N8_RUNS "KDP_LPM4_N8_RUNS"      # 8-bit root node: uint8 runs_before[4]
        N8_LEAF "KDP_LPM4_N8_LEAF"      # 8-bit root node: uint8 leaf[]
        ROOT_DIST "KDP_LPM4_ROOT_DIST"  # in front of a root node: uint32 distance to its block
        ROOT_KIDS "KDP_LPM4_ROOT_KIDS"  # ... then uint32 child offsets, growing down
        WIDE_TABLE "KDP_LPM4_WIDE_TABLE"    # a wide chunk's table, after its header line
        WIDE_SLOTS "KDP_LPM4_WIDE_SLOTS"
        WIDE_DFLT "KDP_LPM4_WIDE_DFLT"  # a wide table's uint16 default, from the table (4-byte root)
        H_WIDE "KDP_LPM4_WIDE"          # handle flags
        H_LEAF16 "KDP_LPM4_LEAF16"
        H_PALETTE "KDP_LPM4_PALETTE"
        H_FLAGS "KDP_LPM4_FLAGS"
        CHILD8 "KDP_LPM4_CHILD8"        # 8-bit leaves >= CHILD8 name child (leaf - CHILD8)
        CHILD "KDP_LPM4_CHILD16"        # 16-bit leaves >= CHILD name child (leaf - CHILD)
    unsigned char *kdp_empty_chunk
    unsigned char *kdp_empty_chunk_palette
    unsigned char *kdp_empty_wide
    void kdp_lpm4_init_empty()
    void kdp_st16(uint16_t *p, uint16_t v)
    void kdp_st32(uint32_t *p, uint32_t v)
    uint32_t kdp_ld32(const uint32_t *p)
