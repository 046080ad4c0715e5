# The shard key of a client address (flow sharding, shard.pyx): Services with ClientIP
# affinity shard their flows by it, their affinity buckets hold one key's clients
# (service.pyx aff_bucket), and their masquerade ports carry it (conntrack.pyx).
# Definitions only: inline, no .pyx.
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.string cimport memcpy
from kdp._fast.mix cimport mix64

cdef inline uint8_t shard_addr_key(uint8_t ver, uint32_t a4, const uint8_t* a6) noexcept nogil:
    """0..63 from an address (host-order IPv4 a4, or the 16 bytes at a6)."""
    cdef uint64_t w0, w1, h
    if ver == 4:
        h = mix64(<uint64_t>a4 ^ (<uint64_t>0x5348 << 32))
    else:
        memcpy(&w0, a6, 8)
        memcpy(&w1, a6 + 8, 8)
        h = mix64(w0 ^ mix64(w1 ^ <uint64_t>0x5348))
    return <uint8_t>(h >> 58)
