# Time and room in the flow table: each flow's timeout, the expiry test, the
# clock-hand sweep that removes expired flows a bounded number at a time, and
# allocation of a record, with early drop when the table is full.
#
# A flow expires when its timeout (by protocol and state: nf_conntrack's
# timeouts) has passed since its last refreshing packet, unless a packet of the
# current batch refers to it (its epoch is the batch's: NAT will still read
# it). Early drop: the oldest non-assured flow goes (the FIFO of non-assured
# flows, creation order; flows that become assured leave it); when none can
# go, up to 256 records are swept for expired flows; else there is no room.

from libc.stdint cimport uint8_t, uint32_t, uint64_t

from kdp._fast.mix cimport P_ICMP, P_TCP, P_UDP, P_ICMPV6, P_SCTP
from kdp._fast.packet cimport NO_ID
from kdp._fast.checksum cimport kdp_prefetch_w
from kdp._fast.ct_table cimport (
    ct_table_t, ct_flow_t, TCP_ESTABLISHED, FL_ASSURED, FL_STREAM, TT_DYING,
    TO_TCP_UNACK, TO_UDP, TO_UDP_STREAM, TO_ICMP, TO_SCTP, TO_GENERIC,
)


# ---- in ct_expiry.pyx

# Remove expired flows among the next max_work records of the clock hand; returns how many.
cdef Py_ssize_t ct_sweep(ct_table_t* t, uint64_t now, Py_ssize_t max_work) noexcept nogil
# The table is full: evict the oldest non-assured flow that can go (early drop),
# else reclaim expired flows among the next 256 records.
cdef void ct_make_room(ct_table_t* t, uint64_t now) noexcept nogil


# ---- inline: the per-packet path

cdef inline uint64_t ct_timeout_ns(const ct_table_t* t, const ct_flow_t* f) noexcept nogil:
    if f.proto == P_TCP:
        if f.tcp & TT_DYING:
            return 0
        if f.state == TCP_ESTABLISHED and not (f.flags & FL_ASSURED):
            return t.timeout_ns[TO_TCP_UNACK]
        return t.timeout_ns[f.state]
    if f.proto == P_UDP:
        return t.timeout_ns[TO_UDP_STREAM if f.flags & FL_STREAM else TO_UDP]
    if f.proto == P_ICMP or f.proto == P_ICMPV6:
        return t.timeout_ns[TO_ICMP]
    if f.proto == P_SCTP:
        return t.timeout_ns[TO_SCTP]
    return t.timeout_ns[TO_GENERIC]


cdef inline bint ct_expired(const ct_table_t* t, const ct_flow_t* f, uint64_t now) noexcept nogil:
    if f.epoch == t.epoch16:
        return 0            # touched by this batch: a packet of it is in flight
    return now >= f.last_ns and now - f.last_ns >= ct_timeout_ns(t, f)


cdef inline uint32_t ct_alloc(ct_table_t* t, uint64_t now) noexcept nogil:
    """A free flow record, making room when the table is full (NO_ID when
    nothing can go). Inline: the common case is a pop from the free list."""
    cdef uint32_t fid
    if t.free_head == NO_ID and t.hwm >= t.capacity:
        ct_make_room(t, now)
    if t.free_head != NO_ID:
        fid = t.free_head
        t.free_head = t.lru_next[fid]
        if t.free_head != NO_ID:
            # the next new flow's record (a freed one is anywhere in the table)
            kdp_prefetch_w(&t.flows[t.free_head])
            kdp_prefetch_w(<uint8_t*>&t.flows[t.free_head] + 64)
        return fid
    if t.hwm < t.capacity:
        fid = t.hwm
        t.hwm += 1
        return fid
    return NO_ID
