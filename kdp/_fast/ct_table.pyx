# cython: boundscheck=False, wraparound=False, cdivision=True
"""The flow table's out-of-line operations: IPv6 hashing, a flow's keys, lookup
by key, index removal (backward shift), and deleting or unlinking a flow.

See ct_table.pxd for the record layout and the index; the inline helpers the
per-packet path uses live there.
"""
from libc.string cimport memcpy, memset


cdef uint64_t ct_key_hash6(const ct_table_t* t, const ct_key_t* k) noexcept nogil:
    cdef uint64_t h = t.seed ^ ((<uint64_t>k.sport << 48) | (<uint64_t>k.dport << 32)
                                | (<uint64_t>k.proto << 8) | k.ver)
    cdef const uint64_t* s = <const uint64_t*>k.src
    cdef const uint64_t* d = <const uint64_t*>k.dst
    return mix64(mix64(h) ^ mix64(s[0] + 0x243F6A8885A308D3ULL) ^ (mix64(s[1] + 0x13198A2E03707344ULL) * 3)
                ^ (mix64(d[0] + 0xA4093822299F31D0ULL) * 5) ^ (mix64(d[1] + 0x082EFA98EC4E6C89ULL) * 7))


cdef void ct_flow_key(const ct_flow_t* f, int dir, ct_key_t* k) noexcept nogil:
    cdef const uint32_t* w
    memset(k, 0, sizeof(ct_key_t))
    k.proto = f.proto
    k.ver = f.ip_ver
    k.sport = f.port[2 * dir]
    k.dport = f.port[2 * dir + 1]
    if f.ip_ver == 4:
        k.src[0] = f.a4[2 * dir]
        k.dst[0] = f.a4[2 * dir + 1]
    else:
        w = &f.a6[8 * dir]
        memcpy(k.src, w, 16)
        memcpy(k.dst, w + 4, 16)


cdef uint32_t ct_find(ct_table_t* t, const ct_key_t* k, int* dir) noexcept nogil:
    cdef uint64_t h = ct_key_hash(t, k)
    return ct_find_from(t, k, h, ct_home_slot(t, h), dir)


cdef void ct_index_remove(ct_table_t* t, uint64_t h, uint32_t fid, int dir) noexcept nogil:
    cdef uint64_t want = ((h >> 32) << 32) | ((<uint64_t>fid << 1) | <uint64_t>dir)
    cdef uint32_t i = ct_home_slot(t, h)
    cdef uint32_t j, k, dk, di, n = t.nslots
    cdef uint64_t e, mv
    while t.index[i] != want:
        if t.index[i] == CT_SLOT_EMPTY:
            return          # not indexed (cannot happen for a live flow)
        i += 1
        if i == n:
            i = 0
    # backward-shift deletion: pull later entries of the run into the hole. The
    # entry at j (home k) moves into the hole at i unless k lies cyclically in
    # (i, j], i.e. when dist(k -> j) >= dist(i -> j); done without branches (the
    # outcome is data-dependent), only the end of the run is a branch.
    j = i
    while True:
        j += 1
        if j == n:
            j = 0
        e = t.index[j]
        if e == CT_SLOT_EMPTY:
            break
        k = <uint32_t>(((e >> 32) * <uint64_t>n) >> 32)
        dk = j - k + (n if j < k else 0)
        di = j - i + (n if j < i else 0)
        mv = <uint64_t>0 - <uint64_t>(dk >= di)
        t.index[i] = (e & mv) | (t.index[i] & ~mv)
        i = (i & ~<uint32_t>mv) | (j & <uint32_t>mv)
    t.index[i] = CT_SLOT_EMPTY


cdef void ct_index_remove_flow(ct_table_t* t, uint32_t fid) noexcept nogil:
    """Remove both directions of flow fid from the index."""
    cdef ct_key_t k
    cdef int d, s
    for s in range(2):
        if t.vfid[s] == fid:
            # tags kept by _prefetch_victims (the flow has not changed since: a
            # flow's tuples are fixed for its life)
            t.vfid[s] = NO_ID
            for d in range(2):
                ct_index_remove(t, <uint64_t>t.vtag[2 * s + d] << 32, fid, d)
            break
    else:
        for d in range(2):
            ct_flow_key(&t.flows[fid], d, &k)
            ct_index_remove(t, ct_key_hash(t, &k), fid, d)
    t.mutations += 1


cdef inline void _log_end(ct_table_t* t, uint32_t fid, uint8_t why) noexcept nogil:
    cdef uint32_t k
    if t.ended == NULL:
        return
    if t.n_ended >= t.cap_ended:
        t.ended_lost += 1
        return
    k = t.n_ended
    memcpy(&t.ended[k], &t.flows[fid], sizeof(ct_flow_t))
    t.ended_why[k] = why
    t.ended_first[k] = t.first_ns[fid]
    t.ended_pol[k] = t.pol[fid]
    t.ended_id[k] = fid
    t.n_ended = k + 1


cdef void ct_delete(ct_table_t* t, uint32_t fid, uint8_t why) noexcept nogil:
    cdef ct_flow_t* f = &t.flows[fid]
    cdef int s
    if not (f.flags & FL_USED):
        return
    if not ct_unindexed(f):
        _log_end(t, fid, why)
    if ct_unindexed(f):
        for s in range(2):
            if t.vfid[s] == fid:
                t.vfid[s] = NO_ID
    else:
        ct_index_remove_flow(t, fid)
        t.n_flows -= 1
    if f.flags & FL_UNASSURED_LISTED:
        ct_unassured_unlink(t, fid)
    f.flags = 0
    t.lru_next[fid] = t.free_head
    t.free_head = fid


cdef void ct_unlink(ct_table_t* t, uint32_t fid, uint8_t why) noexcept nogil:
    """End TCP flow fid now for every packet still to come (it leaves the index)
    while its record stays: a packet of the current batch refers to it and NAT
    will read it. With TT_DYING its timeout is 0, so expiry or early drop frees
    the record once the batch is done with it; until then len(), flow() and
    flows() leave it out."""
    cdef ct_flow_t* f = &t.flows[fid]
    if ct_unindexed(f):
        return
    _log_end(t, fid, why)
    ct_index_remove_flow(t, fid)
    f.tcp |= TT_DYING
    t.n_flows -= 1          # gone for every purpose but the record
