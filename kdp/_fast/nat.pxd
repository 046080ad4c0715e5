# The NAT stage: rewrites packets of tracked flows per the translation stored
# on their flow, with incremental checksum updates. See nat.pyx.

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from kdp._fast.packet cimport Batch, pkt_meta_t
from kdp._fast.conntrack cimport Conntrack
from kdp._fast.ct_table cimport ct_key_t

cdef void nat_batch(Conntrack ct, Batch b) noexcept nogil

# Rewrite one packet (frame `pkt`) that arrived as tuple `cur` so that it
# leaves as the inverse of `other` (the flow's tuple of the other direction).
# `later`: a later fragment (addresses only). Updates p's tuple fields.
cdef void nat_rewrite(pkt_meta_t* p, uint8_t* pkt, const ct_key_t* cur, const ct_key_t* other,
                      bint later) noexcept nogil
