# The IPv6 longest-prefix-match table (the shared root, rule list and
# concurrency contract: lpm.pxd; the chunk layout: lpm6_kernels.h).

from libc.stdint cimport uint8_t, uint32_t, uint64_t, uintptr_t
from kdp._fast.lpm cimport _LpmBase, lpm_root_t, lpm_rule_t, lpm_bucket_t, lpm_buf_t


cdef class Lpm6(_LpmBase):
    cdef uintptr_t *home_block      # per /16: the block its last full rebuild put its
                                    # C nodes in (0: the bulk region or none)
    cdef bint _in_home_block(self, uint32_t h, uintptr_t p)
    cdef _drop_block(self, char *blk, bint now)
    cdef _drop_side_blocks(self, uint32_t h, uint64_t e, bint now)
    cdef _splice_b_level(self, uint32_t h, uint32_t ks, uint32_t ke, const uint32_t *win_starts,
                         const uint64_t *win_values, size_t nwin, bint full)
    cdef uint64_t _new_c_block(self, const lpm_rule_t *rules, size_t n, uint32_t inh) except 0
    cdef bint _resweep_window(self, uint32_t h, uintptr_t hb, uint32_t ks, uint32_t ke,
                              const lpm_rule_t *rules, size_t n, uint32_t inh,
                              size_t max_nodes) except -1

    cdef bint _is_static(self, const char *c) noexcept nogil
    cdef char *_block_of(self, char *c) noexcept nogil
    cdef int _build_bulk_chunk(self, lpm_buf_t *b, const lpm_rule_t *rules, size_t n,
                               size_t *off, int leaf8, int dflt) noexcept nogil
    cdef void _place_bulk_chunk(self, char *c) noexcept nogil
    cdef uint64_t _bulk_empty(self, size_t nonempty) noexcept nogil
    cdef _refresh_chunk(self, uint32_t h)
    cdef _refresh_rule(self, uint64_t hi, uint64_t lo, int ln)
    cdef _publish(self, lpm_root_t *rt, lpm_bucket_t *bks, lpm_bucket_t sh, object bulk,
                  char *reg, size_t regsize, char *regbase, size_t regmap, size_t n)

    # One IPv6 address as two host-order 64-bit halves -> value or KDP_LPM_MISS.
    cdef uint32_t lookup_one(self, uint64_t hi, uint64_t lo) noexcept nogil
    # n addresses of 16 network-order bytes each, packed -> out[n].
    cdef void lookup_n(self, const uint8_t *addrs16, uint32_t *out, size_t n) noexcept nogil
    # n addresses (16 network-order bytes) at base + i*stride (e.g. &meta[0].dst6).
    cdef void lookup_strided(self, const char *base, size_t stride, uint32_t *out,
                             size_t n) noexcept nogil
    # n addresses as host-order (hi, lo) pairs: hilo[2*i], hilo[2*i+1].
    cdef void lookup_hilo(self, const uint64_t *hilo, uint32_t *out, size_t n) noexcept nogil
