# The one 64-bit mixing function of the core (flow hash, conntrack index, Maglev).
# Definitions only: inline, no .pyx.
from libc.stdint cimport uint64_t

cdef inline uint64_t mix64(uint64_t x) noexcept nogil:
    # the 64-bit finaliser of MurmurHash3: a bijection with full avalanche
    x ^= x >> 33
    x *= <uint64_t>0xFF51AFD7ED558CCD
    x ^= x >> 33
    x *= <uint64_t>0xC4CEB9FE1A85EC53
    x ^= x >> 33
    return x

# IP protocol numbers the stages switch on.
cdef enum:
    P_ICMP = 1
    P_TCP = 6
    P_UDP = 17
    P_ICMPV6 = 58
    P_SCTP = 132
