# Declarations of lpm_kernels.h: the C primitives lpm.pyx and lpm6.pyx share
# (atomics, the epoch counter, memory, bit operations).  The C is in the
# header; see it for what each one does.  Only those two modules cimport this
# (lpm.pxd and lpm6.pxd do not: other modules keep their own kdp_* names).

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, uintptr_t

cdef extern from "lpm_kernels.h" nogil:
    # Pointer bits of a root entry (and of an IPv6 B value naming a C node).
    const uint64_t PTR_MASK "KDP_LPM_PTR_MASK"

    uint64_t kdp_ld64(const uint64_t *p)
    void kdp_st64(uint64_t *p, uint64_t v)
    void *kdp_ldptr(void *const *p)
    void kdp_stptr(void **p, void *v)
    int kdp_ep_enter(uint64_t *epoch, int64_t *active)
    void kdp_ep_leave(int64_t *active, int s)
    int64_t kdp_ld_active(int64_t *a)
    void kdp_st_epoch(uint64_t *e, uint64_t v)

    void *kdp_alloc64(size_t n)
    void *kdp_map(size_t n)
    void kdp_unmap(void *p, size_t n)

    uint32_t kdp_popcnt(uint64_t x)
    int kdp_clz64(uint64_t x)
    int kdp_ctz64(uint64_t x)
    uint64_t kdp_low(uint64_t x, uint32_t s)
    void kdp_prefetch(const void *p)
    uint64_t kdp_bswap64(uint64_t x)
    uint64_t kdp_load64(const void *p)
    uint32_t kdp_load32(const void *p)
