# cython: boundscheck=False, wraparound=False, cdivision=True
"""Expiry and early drop: the clock-hand sweep, and making room in a full table (see ct_expiry.pxd)."""
from libc.stdint cimport uint8_t

from kdp._fast.checksum cimport kdp_prefetch
from kdp._fast.ct_table cimport (
    ct_key_t, FL_USED, C_EXPIRIES, C_EVICTIONS, END_EXPIRED, END_EVICTED,
    ct_flow_key, ct_key_hash, ct_home_slot, ct_delete, ct_unassured_unlink, ct_unassured_push,
)

cdef enum:
    EARLY_DROP_SCAN = 16    # FIFO heads skipped (in use by the batch) before giving up on early drop


cdef Py_ssize_t ct_sweep(ct_table_t* t, uint64_t now, Py_ssize_t max_work) noexcept nogil:
    cdef Py_ssize_t w, n = 0
    cdef uint32_t fid
    cdef ct_flow_t* f
    for w in range(max_work):
        if t.hwm == 0:
            break
        if t.sweep >= t.hwm:
            t.sweep = 0
        fid = t.sweep
        t.sweep += 1
        f = &t.flows[fid]
        if (f.flags & FL_USED) and ct_expired(t, f, now):
            ct_delete(t, fid, END_EXPIRED)
            t.c[C_EXPIRIES] += 1
            n += 1
    return n


cdef inline void _prefetch_victims(ct_table_t* t) noexcept nogil:
    """Under eviction pressure, warm what the next early drops will touch, two
    evictions ahead: the index lines (the slot's and the next, where the
    backward shift of a deletion continues) of the victim after the next one,
    whose record was prefetched one eviction ago, and the record of the victim
    after that. (The next victim's lines were warmed one eviction ago.)"""
    cdef uint32_t v1 = t.unas_head, v2, v3
    cdef ct_key_t k
    cdef uint32_t pos
    cdef uint64_t h
    cdef int d
    if v1 == NO_ID:
        return
    v2 = t.lru_next[v1]
    if v2 == NO_ID:
        return
    if t.vfid[0] != v2 and t.vfid[1] != v2:
        t.vslot ^= 1
        t.vfid[t.vslot] = v2
        for d in range(2):
            ct_flow_key(&t.flows[v2], d, &k)
            h = ct_key_hash(t, &k)
            t.vtag[2 * t.vslot + d] = <uint32_t>(h >> 32)
            pos = ct_home_slot(t, h)
            kdp_prefetch_w(&t.index[pos])
            if pos + 8 < t.nslots:
                kdp_prefetch_w(&t.index[pos + 8])
    v3 = t.lru_next[v2]
    if v3 != NO_ID:
        kdp_prefetch_w(&t.flows[v3])    # (IPv6 keys also need line 1: not worth a guess)
        kdp_prefetch(&t.lru_next[v3])


cdef void ct_make_room(ct_table_t* t, uint64_t now) noexcept nogil:
    """The table is full: early drop (the oldest non-assured flows first, never
    one that a packet of the current batch refers to), else reclaim expired
    flows (bounded work)."""
    cdef uint32_t cand = t.unas_head
    cdef int scan = 0
    while cand != NO_ID and scan < EARLY_DROP_SCAN:
        if t.flows[cand].epoch != t.epoch16:
            if ct_expired(t, &t.flows[cand], now):
                t.c[C_EXPIRIES] += 1
                ct_delete(t, cand, END_EXPIRED)
            else:
                t.c[C_EVICTIONS] += 1
                ct_delete(t, cand, END_EVICTED)
            _prefetch_victims(t)
            break
        # in use by the current batch: it is the most recently seen, to the back
        ct_unassured_unlink(t, cand)
        ct_unassured_push(t, cand)
        cand = t.unas_head
        scan += 1
    if t.free_head == NO_ID:
        # no non-assured flow can go: reclaim expired flows
        ct_sweep(t, now, 256)
