# Longest-prefix match: the root, the rule list and the writer's machinery
# both families share (_LpmBase), and the IPv4 table (Lpm4).  The IPv6 table,
# Lpm6, is in lpm6.pxd.  Other Cython modules cimport them from here.
#
# Structure: a 65,536-entry root indexed by the top 16 address bits; each entry
# packs the handle of the chunk of that /16 (low 48 bits: a pointer, its low
# bits the family's flags) with the next-hop index of the longest prefix
# shorter than /16 covering it (high 16 bits).  Leaf 0 in a chunk means "use
# that default", so short prefixes never touch chunks.  Leaves are next-hop
# indices (0 = none, 1..0xFEFF = an index into nh_value[]).  A chunk holds the
# rules of one /16: the layouts are defined once, in lpm4_kernels.h (IPv4:
# a multibit trie of stride 8, or a wide table) and lpm6_kernels.h (IPv6:
# sorted ranges in three levels); tests/test_lpm_layout.py checks them.

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
from libc.stdlib cimport realloc
from libc.string cimport memset

cdef extern from *:
    """
    #define KDP_LPM_MISS 0xFFFFFFFFu
    """
    # The value every lookup returns for an address no prefix covers.
    const uint32_t KDP_LPM_MISS

ctypedef struct lpm_root_t:
    uint64_t t0[65536]              # (default nh << 48) | chunk handle
    uint32_t nh_value[65536]        # next-hop index -> 32-bit value; [0] = miss
    # IPv4 tables with a 4-byte root (lpm.pyx, "4-byte root"): t4[h] = the
    # offset of /16 h's chunk handle from base4 (flags in the low 3 bits);
    # base4 NULL: batch lookups read t0 (small tables, Lpm6, or t4 given up)
    uint32_t t4[65536]
    const char *base4

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

ctypedef struct lpm_buf_t:          # the builders' growable buffer (offsets, not
    char *p                         # pointers: it moves as it grows); chunks are
    size_t n                        # built in it, then copied to their place
    size_t cap


cdef inline int _buf_reserve(lpm_buf_t *b, size_t extra, size_t align, size_t *off) noexcept nogil:
    # Append `extra` zeroed bytes at the next multiple of `align` (a power of
    # two; the gap is zeroed too); off = where they start.  -1: out of memory.
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


# The rule of bucket bk equal to (hi, lo, ln) (found = 1), or where it would go.
cdef ssize_t _find_rule(const lpm_bucket_t *bk, uint64_t hi, uint64_t lo, uint8_t ln,
                        int *found) noexcept nogil
# insert("10.0.0.0/8", 5): the second positional argument is the value.
cdef _split_args(length, value)


cdef class _LpmBase:
    # Abstract: Lpm4 and Lpm6 define the family hooks below.
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
    # the 4-byte root's arena: the bulk region's mapping past the bulk-built
    # chunks (region_size); chunks of later updates are carved from it
    cdef size_t arena_used          # bytes of the mapping handed out (from region)
    cdef size_t arena_cap           # bytes of the mapping usable (from region)
    cdef dict _arena_free           # block size -> offsets (from region) of freed blocks
    cdef dict _empty4               # default next-hop index -> t4 entry of its empty chunk
    cdef int empty4_flag            # handle flag of the empty chunks t4 names (H_PALETTE)
    cdef int leaf8_many             # IPv4 root leaves with >= 240 next hops: palette (2) or 16-bit (0)
    cdef object _nh_of              # value -> nh index
    cdef object _bulk               # numpy array the non-owned buckets point into
    cdef list _retired_old          # retired before the last epoch flip
    cdef list _retired_new          # retired since
    cdef object _wlock

    cdef int _enter(self) noexcept nogil
    cdef void _leave(self, int slot) noexcept nogil
    cdef void _init_root(self, lpm_root_t *rt) noexcept nogil
    cdef bint _is_shared(self, char *c)
    cdef void _free_chunk(self, char *c)
    cdef _free_garbage(self, item)
    cdef _retire(self, int kind, uintptr_t ptr, size_t size)
    cdef _collect(self)
    cdef uint32_t _nh_index(self, value) except 0
    cdef object _edit(self, uint64_t hi, uint64_t lo, int ln, uint32_t nh, int mode)
    cdef _refresh_defaults(self, uint32_t h0, uint32_t h1)
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

    # ---- family hooks ----
    # c is one of the family's static chunks (the empty ones: never freed)
    cdef bint _is_static(self, const char *c) noexcept nogil
    # the start of the allocation holding the chunk of handle c
    cdef char *_block_of(self, char *c) noexcept nogil
    # append the chunk of one /16's rules to a bulk build; off = its handle's
    # offset in b; leaf8: the table has few enough next hops for 8-bit leaves
    cdef int _build_bulk_chunk(self, lpm_buf_t *b, const lpm_rule_t *rules, size_t n,
                               size_t *off, int leaf8, int dflt) noexcept nogil
    # a bulk-built chunk is in its final place (handle c): fix what needs addresses
    cdef void _place_bulk_chunk(self, char *c) noexcept nogil
    # the handle for empty /16s of a bulk-built table with `nonempty` non-empty ones
    cdef uint64_t _bulk_empty(self, size_t nonempty) noexcept nogil
    # rebuild /16 number h's chunk from its rules aside, publish it, retire the old
    cdef _refresh_chunk(self, uint32_t h)


cdef class Lpm4(_LpmBase):
    cdef bint _is_static(self, const char *c) noexcept nogil
    cdef char *_block_of(self, char *c) noexcept nogil
    cdef int _build_bulk_chunk(self, lpm_buf_t *b, const lpm_rule_t *rules, size_t n,
                               size_t *off, int leaf8, int dflt) noexcept nogil
    cdef void _place_bulk_chunk(self, char *c) noexcept nogil
    cdef uint64_t _bulk_empty(self, size_t nonempty) noexcept nogil
    cdef _refresh_chunk(self, uint32_t h)
    cdef _refresh_defaults(self, uint32_t h0, uint32_t h1)
    cdef _free_garbage(self, item)
    cdef char *_arena_alloc(self, size_t size)
    cdef int _t4_empty(self, uint32_t h, uint32_t d) except -1

    # One IPv4 address (host byte order) -> value or KDP_LPM_MISS.
    cdef uint32_t lookup_one(self, uint32_t addr) noexcept nogil
    # n addresses (host byte order) -> out[n].
    cdef void lookup_n(self, const uint32_t *addrs, uint32_t *out, size_t n) noexcept nogil
    # n addresses at base + i*stride (e.g. &meta[0].dst4, sizeof(pkt_meta_t)).
    cdef void lookup_strided(self, const char *base, size_t stride, uint32_t *out,
                             size_t n) noexcept nogil
