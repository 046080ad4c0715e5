# Checksum helpers shared by the stages that rewrite packets (inline, no .pyx).
#
# Internet checksum (RFC 1071) arithmetic on 16-bit words read big-endian,
# incremental updates per RFC 1624 (HC' = ~(~HC + ~m + m'), eqn. 3), full
# sums for recomputation, and CRC32c (Castagnoli, RFC 3309/9260 appendix) for
# SCTP, using the SSE4.2 crc32 instruction when the build target has it.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

cdef extern from *:
    """
    #include <stdint.h>
    #include <stddef.h>
    #if defined(__SSE4_2__)
    #include <nmmintrin.h>
    #endif
    #define kdp_prefetch(p) __builtin_prefetch((const void*)(p))
    #define kdp_prefetch_w(p) __builtin_prefetch((const void*)(p), 1)

    /* loads and stores in the machine's byte order (no byte assembly: one instruction
       each), and a 16-bit byte swap written as shifts (gcc turned __builtin_bswap16
       into a store and a reload through the stack in the route stage's loop) */
    static inline uint16_t kdp_ld16_ne(const uint8_t* p) { uint16_t v; __builtin_memcpy(&v, p, 2); return v; }
    static inline uint32_t kdp_ld32_ne(const uint8_t* p) { uint32_t v; __builtin_memcpy(&v, p, 4); return v; }
    static inline void kdp_st16_ne(uint8_t* p, uint16_t v) { __builtin_memcpy(p, &v, 2); }
    static inline void kdp_st64_ne(uint8_t* p, uint64_t v) { __builtin_memcpy(p, &v, 8); }
    static inline uint16_t kdp_bswap16(uint16_t x) { uint32_t y = x; return (uint16_t)((y >> 8) | (y << 8)); }

    static uint32_t kdp_crc32c_tab[256];
    static int kdp_crc32c_tab_ready = 0;

    static inline void kdp_crc32c_tab_init(void) {
        uint32_t i, j, c;
        for (i = 0; i < 256; i++) {
            c = i;
            for (j = 0; j < 8; j++)
                c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : (c >> 1);
            kdp_crc32c_tab[i] = c;
        }
        kdp_crc32c_tab_ready = 1;
    }

    /* CRC32c register update over n bytes (no initial/final inversion). */
    static inline uint32_t kdp_crc32c_update(uint32_t crc, const uint8_t* p, size_t n) {
    #if defined(__SSE4_2__)
        while (n >= 8) {
            uint64_t w;
            __builtin_memcpy(&w, p, 8);
            crc = (uint32_t)_mm_crc32_u64(crc, w);
            p += 8; n -= 8;
        }
        while (n--) crc = _mm_crc32_u8(crc, *p++);
        return crc;
    #else
        if (!kdp_crc32c_tab_ready) kdp_crc32c_tab_init();
        while (n--) crc = kdp_crc32c_tab[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
        return crc;
    #endif
    }

    /* The CRC32c of a buffer as SCTP defines it (init ~0, final ~). */
    static inline uint32_t kdp_crc32c(const uint8_t* p, size_t n) {
        return ~kdp_crc32c_update(0xFFFFFFFFu, p, n);
    }

    /* The one's complement sum of n bytes as big-endian 16-bit words (odd tail padded
       with 0), folded, not inverted: cs_fold(cs_sum(p, n, 0)), 8 bytes a step. The sum
       of native-order words is the byte swap of the big-endian sum (RFC 1071 2(B)). */
    static inline uint16_t kdp_csum16(const uint8_t* p, size_t n) {
    #if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        uint64_t s = 0, w, t;
        uint32_t h;
        while (n >= 8) {
            __builtin_memcpy(&w, p, 8);
            t = s + w;
            s = t + (t < w);            /* end-around carry */
            p += 8; n -= 8;
        }
        s = (s & 0xFFFFFFFFull) + (s >> 32);
        if (n >= 4) { __builtin_memcpy(&h, p, 4); s += h; p += 4; n -= 4; }
        if (n >= 2) { uint16_t q; __builtin_memcpy(&q, p, 2); s += q; p += 2; n -= 2; }
        if (n) s += *p;
        /* s < 2^35 here: four folds always suffice, and a fold of a 16-bit value
           changes nothing; no loop whose trip count (a mispredicted branch) varies */
        s = (s & 0xFFFF) + (s >> 16);
        s = (s & 0xFFFF) + (s >> 16);
        s = (s & 0xFFFF) + (s >> 16);
        s = (s & 0xFFFF) + (s >> 16);
        return (uint16_t)((s >> 8) | ((s & 0xFF) << 8));
    #else
        uint64_t s = 0;
        size_t i = 0;
        for (; i + 1 < n; i += 2) s += ((uint32_t)p[i] << 8) | p[i + 1];
        if (i < n) s += (uint32_t)p[i] << 8;
        while (s >> 16) s = (s & 0xFFFF) + (s >> 16);
        return (uint16_t)s;
    #endif
    }
    """
    void kdp_prefetch(const void* p) nogil
    void kdp_prefetch_w(const void* p) nogil
    uint16_t kdp_ld16_ne(const uint8_t* p) nogil
    uint32_t kdp_ld32_ne(const uint8_t* p) nogil
    void kdp_st16_ne(uint8_t* p, uint16_t v) nogil
    void kdp_st64_ne(uint8_t* p, uint64_t v) nogil
    uint16_t kdp_bswap16(uint16_t x) nogil
    uint32_t kdp_crc32c_update(uint32_t crc, const uint8_t* p, size_t n) nogil
    uint32_t kdp_crc32c(const uint8_t* p, size_t n) nogil
    uint16_t kdp_csum16(const uint8_t* p, size_t n) nogil


cdef inline uint16_t ld16(const uint8_t* b) noexcept nogil:
    return (<uint16_t>b[0] << 8) | b[1]


cdef inline uint32_t ld32(const uint8_t* b) noexcept nogil:
    return (<uint32_t>b[0] << 24) | (<uint32_t>b[1] << 16) | (<uint32_t>b[2] << 8) | b[3]


cdef inline void st16(uint8_t* b, uint16_t v) noexcept nogil:
    b[0] = <uint8_t>(v >> 8)
    b[1] = <uint8_t>v


cdef inline void st32(uint8_t* b, uint32_t v) noexcept nogil:
    b[0] = <uint8_t>(v >> 24)
    b[1] = <uint8_t>(v >> 16)
    b[2] = <uint8_t>(v >> 8)
    b[3] = <uint8_t>v


cdef inline uint16_t cs_fold(uint64_t s) noexcept nogil:
    """Fold a one's complement sum to 16 bits (not inverted)."""
    s = (s & 0xFFFFFFFFULL) + (s >> 32)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return <uint16_t>s


cdef inline uint64_t cs_sum(const uint8_t* b, Py_ssize_t n, uint64_t acc) noexcept nogil:
    """Add n bytes as big-endian 16-bit words to acc (odd tail padded with 0)."""
    cdef Py_ssize_t i = 0
    while i + 1 < n:
        acc += (<uint64_t>b[i] << 8) | b[i + 1]
        i += 2
    if i < n:
        acc += <uint64_t>b[i] << 8
    return acc


# Incremental update (RFC 1624): collect ~m + m' for every changed 16-bit word
# in `acc`, then apply it once to the stored checksum.
cdef inline uint64_t cs_d16(uint64_t acc, uint16_t old, uint16_t new) noexcept nogil:
    return acc + (<uint16_t>~old) + new


cdef inline uint64_t cs_d32(uint64_t acc, uint32_t old, uint32_t new) noexcept nogil:
    return (acc + (<uint16_t>~(old >> 16)) + (new >> 16)
            + (<uint16_t>~(old & 0xFFFF)) + (new & 0xFFFF))


cdef inline uint64_t cs_dbytes(uint64_t acc, const uint8_t* old, const uint8_t* new,
                               Py_ssize_t n) noexcept nogil:
    """Delta for n (even) bytes changing from old to new."""
    cdef Py_ssize_t i = 0
    while i < n:
        acc += (<uint16_t>~(((<uint16_t>old[i]) << 8) | old[i + 1]))
        acc += ((<uint16_t>new[i]) << 8) | new[i + 1]
        i += 2
    return acc


cdef inline uint16_t cs_apply(uint16_t check, uint64_t acc) noexcept nogil:
    """The stored checksum after the changes collected in acc."""
    return <uint16_t>~cs_fold((<uint16_t>~check) + acc)
