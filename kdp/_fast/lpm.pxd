# Longest-prefix match, IPv4 and IPv6: declarations other Cython modules cimport.
#
# Structure: a 65,536-entry root indexed by the top 16 address bits; each entry
# packs a chunk pointer (low 48 bits; bit 0 = IPv4 "wide" chunk) with the
# next-hop index of the longest prefix shorter than /16 covering it (high 16
# bits).  Leaf 0 in a chunk means "use that default", so short prefixes never
# touch chunks.  Leaves are 16-bit next-hop indices (0 = none, 1..0xFEFF = an
# index into nh_value[]).  A chunk holds the rules of one /16 as a multibit
# trie of stride 8 (IPv4) or sorted ranges (IPv6), leaf-pushed; layouts below.

# Readers (lookup_one / lookup_n / lookup_strided) may run without the GIL
# from any number of threads while one writer changes the table: a writer
# builds a new piece aside (an IPv4 chunk; an IPv6 C node or B level),
# publishes it with one atomic 64-bit store (into the root, or into the one
# IPv6 B value naming the C node), and frees the old one only after every
# reader that could have seen it has left (two-slot epoch counter).
# A whole-table rebuild publishes a new root with one pointer store.
# Callers from other modules must hold a reference to the table object for
# the duration of the call (that keeps it alive); they need not hold the GIL.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int64_t, uintptr_t

cdef extern from *:
    """
    #define KDP_LPM_MISS 0xFFFFFFFFu
    """
    # The value every lookup returns for an address no prefix covers.
    const uint32_t KDP_LPM_MISS

# IPv4 node (variable size, 8-byte aligned; offsets count from the chunk's root node):
#   uint32 kid[nch] just before the node, child k's offset at node - 4 * (k + 1)
#   uint64 bm[4]   @0   bit p set where a run of equal leaves starts (bit 0 always)
#   uint8  cnt[4]  @32  runs started in the words before word w
#   uint32 tbytes  @36  bytes of the child table in front of the node (8-aligned)
#   uint16 leaf[]  @40  one leaf per run
# The leaf of slot p (w = p >> 6) is leaf[cnt[w] + popcount(bm[w] & bits 0..p%64) - 1];
# leaves >= 0xFF00 name child k = leaf - 0xFF00.  A chunk is an 8-byte header
# (its size), then its root node (bits 16..23) and
# descendants, depth first.
# IPv4 wide chunk (a /16 with many prefixes longer than /24): a direct table of
# 65,536 uint16 leaves for bits 16..31 (128 KiB).
# IPv6 chunk: a 64-byte line holding its size and number of B values, then
# leaf-pushed sorted ranges in three levels (B: bits 16..31, C: 32..63 per
# /32, D: 64..127 per /64); the root entry's pointer bits are the B base | its
# format (0: one line of uint16 range starts + uint64 values at +64; 1: 1,024
# 16-byte bitmap records {uint64 run starts, uint32 runs before} + uint64
# values at +16384).  A B value is a leaf (<= 0xFFFF) or a C node's address |
# its format; C nodes replaced by updates live in blocks of their own.
# Layouts of C and D: see the comment above _c_look in lpm.pyx.

ctypedef struct lpm_root_t:
    uint64_t t0[65536]              # (default nh << 48) | chunk pointer
    uint32_t nh_value[65536]        # next-hop index -> 32-bit value; [0] = miss

ctypedef struct lpm_epoch_t:
    uint64_t epoch
    int64_t active[2]
    char pad[40]

ctypedef struct lpm_rule_t:         # the rule list: the truth tables are built from
    uint64_t hi                     # IPv4: prefix << 32; IPv6: first 8 bytes
    uint64_t lo                     # IPv6: last 8 bytes
    uint32_t nh
    uint8_t len
    uint8_t pad[3]

ctypedef struct lpm_bucket_t:
    lpm_rule_t *r
    uint32_t n
    uint32_t cap                    # 0: r points into the bulk array (not owned)


cdef class _LpmBase:
    cdef lpm_root_t *root           # published root (readers load it once per call)
    cdef lpm_epoch_t *ep
    cdef lpm_bucket_t *buckets      # 65,536 buckets of rules with len >= 16
    cdef lpm_bucket_t shorts        # rules with len < 16
    cdef char *region               # bulk-built chunks live here (one mapping)
    cdef size_t region_size
    cdef char *region_base
    cdef size_t region_map
    cdef size_t chunk_bytes         # bytes of chunks in use
    cdef size_t n_rules
    cdef int bits                   # 32 or 128
    cdef uint64_t empty             # chunk handle of a /16 without rules
    cdef uint32_t next_nh
    cdef object _nh_of              # value -> nh index
    cdef object _bulk               # numpy array the non-owned buckets point into
    cdef list _g_prev, _g_cur       # garbage waiting for readers to leave
    cdef object _wlock

    cdef int _enter(self) noexcept nogil
    cdef void _leave(self, int slot) noexcept nogil
    cdef void _init_root(self, lpm_root_t *rt) noexcept nogil
    cdef bint _is_shared(self, char *c)
    cdef void _free_chunk(self, char *c)
    cdef _free_garbage(self, item)
    cdef _retire(self, int kind, uintptr_t ptr, size_t size)
    cdef _collect(self)
    cdef uint32_t _nh(self, value) except 0
    cdef object _edit(self, uint64_t hi, uint64_t lo, int ln, uint32_t nh, int mode)
    cdef _refresh_defaults(self, uint32_t h0, uint32_t h1)
    cdef _refresh_chunk(self, uint32_t h)
    cdef _refresh_rule(self, uint64_t hi, uint64_t lo, int ln)
    cdef _load_sorted(self, object rules_, object nhv_, dict nh_of)
    cdef _publish(self, lpm_root_t *rt, lpm_bucket_t *bks, lpm_bucket_t sh, object bulk,
                  char *reg, size_t regsize, char *regbase, size_t regmap, size_t n)
    cdef object _export(self)
    cdef _prepare_and_load(self, hi, lo, lens, values)
    cdef _rebuild_all(self)
    cdef _get_rule(self, uint64_t hi, uint64_t lo, int ln)
    cdef _do_insert(self, uint64_t hi, uint64_t lo, int ln, value, int mode)
    cdef _do_delete(self, uint64_t hi, uint64_t lo, int ln)


cdef class Lpm4(_LpmBase):
    # One IPv4 address (host byte order) -> value or KDP_LPM_MISS.
    cdef uint32_t lookup_one(self, uint32_t addr) noexcept nogil
    # n addresses (host byte order) -> out[n].
    cdef void lookup_n(self, const uint32_t *addrs, uint32_t *out, size_t n) noexcept nogil
    # n addresses at base + i*stride (e.g. &meta[0].dst4, sizeof(pkt_meta_t)).
    cdef void lookup_strided(self, const char *base, size_t stride, uint32_t *out,
                             size_t n) noexcept nogil


cdef class Lpm6(_LpmBase):
    cdef uintptr_t *base6           # per /16: the block its last full build put its C nodes
                                    # in (0: the bulk region or none); see _refresh_rule
    cdef bint _in_block(self, uint32_t h, uintptr_t p)
    cdef _drop6(self, char *blk, bint now)
    cdef _extras6(self, uint32_t h, uint64_t e, bint now)
    cdef _b_splice(self, uint32_t h, uint32_t ks, uint32_t ke, const uint32_t *Ws,
                   const uint64_t *Wv, size_t nw, bint full)
    cdef uint64_t _node6(self, const lpm_rule_t *rules, size_t n, uint32_t inh) except 0
    cdef bint _window6(self, uint32_t h, uintptr_t hb, uint32_t ks, uint32_t ke,
                       const lpm_rule_t *rules, size_t n, uint32_t inh, size_t maxn) except -1
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
