# Headroom: how far in front of its first byte a packet of a batch may grow.
#
# Batch.push leaves HEADROOM free bytes in front of every packet; stages that
# prepend headers (ICMP answers, encapsulation) move `off` back into them. A
# packet never grows past its own end and the packets of a batch lie in index
# order, so packet i may use every byte after the current end of packet i-1:
# its own headroom (and alignment gap), less what earlier stages already used.

from libc.stdint cimport uint32_t
from kdp._fast.packet cimport Batch


cdef inline uint32_t batch_floor(Batch b, Py_ssize_t i) noexcept nogil:
    """The lowest buffer offset packet i may start at."""
    if i <= 0:
        return 0
    return b.m[i - 1].off + b.m[i - 1].len
