# cython: boundscheck=False, wraparound=False
"""Service tables and the service decision: kube-proxy semantics, in C.

Stage contract (the service step of the pipeline's slow path, for packets that
start a new flow):

  reads   pkt_meta_t: ip_ver, proto, src4/src6, dst4/dst6, sport, dport,
          hash (flow hash, for the Maglev slot), ts_ns (session affinity clock)
  sets    nat_spec_t: flags (NAT_DNAT, + NAT_SNAT|NAT_SNAT_PORT when the flow
          is masqueraded), ip_ver, dnat4/dnat6 + dnat_port (the backend),
          snat4/snat6 + snat_port_lo/hi (node address + configured range),
          svc_port, backend; it does not write the packet metadata
  returns SVC_MISS (not a service address: route it), SVC_HIT, SVC_DROP or
          SVC_REJECT with one of the reasons
          R_SVC_NO_ENDPOINTS (reject), R_SVC_PORT_NOT_EXPOSED (reject),
          R_SVC_UNALLOCATED_IP (drop), R_SVC_SOURCE_RANGE (drop),
          R_SVC_NO_LOCAL_ENDPOINTS (drop)

Semantics follow kube-proxy's nftables mode (kubernetes/kubernetes
pkg/proxy/nftables/proxier.go, syncProxyRules): see docs/nodeconfig.md for
the rules and where iptables mode differs.

Tables: a frontend hash (proto, VIP, port) -> service-port for ClusterIPs,
externalIPs and LoadBalancer ingress IPs; a NodePort array (family, proto,
port) -> service-port valid on the node's NodePort addresses; the set of live
ClusterIPs and the service CIDRs; per service-port a backend set with a
Maglev lookup table (published copy-on-write by ServiceTables.publish); a
bounded ClientIP affinity table.
"""
import numpy as np
cimport numpy as cnp
from kdp._fast.packet import struct_dtype
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memcpy, memset, memcmp
from libc.stdint cimport uintptr_t, int64_t
from kdp._fast.shardkey cimport shard_addr_key
from kdp._fast.mix cimport mix64
from kdp._fast.packet cimport (field_offset, NO_ID, R_SVC_NO_ENDPOINTS, R_SVC_PORT_NOT_EXPOSED,
                               R_SVC_UNALLOCATED_IP, R_SVC_SOURCE_RANGE,
                               R_SVC_NO_LOCAL_ENDPOINTS)
from kdp._fast.flow cimport NAT_DNAT, NAT_SNAT, NAT_SNAT_PORT, NAT_PORT_KEY
from kdp._fast.checksum cimport kdp_prefetch

cnp.import_array()

DEF_AFFINITY_SLOTS = 65536

# Maglev table sizes: primes, the smallest with M >= 100 * backends is used
# (capped at the largest). With M/N >= 100 the slot share of any backend stays
# within ~1% of 1/N and removing one backend moves only ~2-3% of the slots that
# point at survivors (tests/test_service_maglev.py); M = 251 serves up to 2 backends.
cdef uint32_t[12] _PRIMES = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749,
                             65521, 131071, 262139, 524287]
MAGLEV_PRIMES = tuple(_PRIMES[i] for i in range(12))
MAGLEV_FACTOR = 100


cdef inline uint32_t maglev_size(uint32_t n) noexcept nogil:
    cdef int i
    cdef uint64_t want = <uint64_t>n * 100
    for i in range(12):
        if _PRIMES[i] >= want:
            return _PRIMES[i]
    return _PRIMES[11]


cdef inline uint32_t maglev_size_keep(uint32_t n, uint32_t m_prev) noexcept nogil:
    # Hysteresis: an update keeps the table size while it stays within
    # [MIN_FACTOR*n, 4*FACTOR*n]; a new size would remap every slot.
    if m_prev and <uint64_t>m_prev >= <uint64_t>n * 50 and \
            (<uint64_t>m_prev <= <uint64_t>n * 400 or m_prev == _PRIMES[0]):
        return m_prev
    return maglev_size(n)


def maglev_table_size(n):
    """The Maglev table size (a prime) used for n backends."""
    if n <= 0:
        return 0
    return maglev_size(<uint32_t>min(int(n), 0xFFFFFFFF))


# ---------------------------------------------------------------- dtypes

cdef addr_t _pa
cdef backend_t _pb
cdef svc_port_t _ps
cdef fe_entry_t _pf
cdef nat_spec_t _pn


ADDR_DTYPE = struct_dtype([
    ("ip_ver", "u1", field_offset(&_pa.ip_ver, &_pa)), ("plen", "u1", field_offset(&_pa.plen, &_pa)),
    ("a4", "<u4", field_offset(&_pa.a4, &_pa)), ("a6", "16u1", field_offset(&_pa.a6[0], &_pa)),
], sizeof(addr_t))

BACKEND_DTYPE = struct_dtype([
    ("id", "<u4", field_offset(&_pb.id, &_pb)), ("ip_ver", "u1", field_offset(&_pb.ip_ver, &_pb)),
    ("local", "u1", field_offset(&_pb.local, &_pb)), ("port", "<u2", field_offset(&_pb.port, &_pb)),
    ("a4", "<u4", field_offset(&_pb.a4, &_pb)), ("a6", "16u1", field_offset(&_pb.a6[0], &_pb)),
], sizeof(backend_t))

# svc_port_t without its backend-set pointer (ServiceTables owns that).
SVC_DTYPE = struct_dtype([
    ("proto", "u1", field_offset(&_ps.proto, &_ps)), ("ip_ver", "u1", field_offset(&_ps.ip_ver, &_ps)),
    ("type", "u1", field_offset(&_ps.type, &_ps)), ("flags", "u1", field_offset(&_ps.flags, &_ps)),
    ("port", "<u2", field_offset(&_ps.port, &_ps)), ("node_port", "<u2", field_offset(&_ps.node_port, &_ps)),
    ("affinity_timeout", "<u4", field_offset(&_ps.affinity_timeout, &_ps)),
    ("src_off", "<u4", field_offset(&_ps.src_off, &_ps)), ("src_n", "<u4", field_offset(&_ps.src_n, &_ps)),
], sizeof(svc_port_t))

FRONTEND_DTYPE = struct_dtype([
    ("proto", "u1", field_offset(&_pf.proto, &_pf)), ("ip_ver", "u1", field_offset(&_pf.ip_ver, &_pf)),
    ("kind", "u1", field_offset(&_pf.kind, &_pf)), ("port", "<u2", field_offset(&_pf.port, &_pf)),
    ("svc", "<u4", field_offset(&_pf.svc, &_pf)), ("a4", "<u4", field_offset(&_pf.a4, &_pf)),
    ("a6", "16u1", field_offset(&_pf.a6[0], &_pf)),
], sizeof(fe_entry_t))

NAT_DTYPE = struct_dtype([
    ("flags", "u1", field_offset(&_pn.flags, &_pn)), ("ip_ver", "u1", field_offset(&_pn.ip_ver, &_pn)),
    ("dnat_port", "<u2", field_offset(&_pn.dnat_port, &_pn)), ("dnat4", "<u4", field_offset(&_pn.dnat4, &_pn)),
    ("dnat6", "16u1", field_offset(&_pn.dnat6[0], &_pn)), ("snat4", "<u4", field_offset(&_pn.snat4, &_pn)),
    ("snat6", "16u1", field_offset(&_pn.snat6[0], &_pn)),
    ("snat_port_lo", "<u2", field_offset(&_pn.snat_port_lo, &_pn)),
    ("snat_port_hi", "<u2", field_offset(&_pn.snat_port_hi, &_pn)),
    ("svc_port", "<u4", field_offset(&_pn.svc_port, &_pn)), ("backend", "<u4", field_offset(&_pn.backend, &_pn)),
], sizeof(nat_spec_t))

NO_ID_VALUE = <uint32_t>NO_ID


# ---------------------------------------------------------------- hashing



cdef inline uint64_t addr_hash(uint8_t ver, uint32_t a4, const uint8_t* a6) noexcept nogil:
    cdef uint64_t w0, w1
    if ver == 4:
        return mix64((<uint64_t>4 << 32) | a4)
    memcpy(&w0, a6, 8)
    memcpy(&w1, a6 + 8, 8)
    return mix64(w0 ^ mix64(w1 ^ <uint64_t>6))


cdef inline bint addr_eq(uint8_t ver, uint32_t a4, const uint8_t* a6,
                         uint8_t ver2, uint32_t b4, const uint8_t* b6) noexcept nogil:
    if ver != ver2:
        return False
    if ver == 4:
        return a4 == b4
    return memcmp(a6, b6, 16) == 0


cdef inline bint prefix_has(const addr_t* a, uint8_t ver, uint32_t a4, const uint8_t* a6) noexcept nogil:
    cdef uint32_t mask
    cdef int full, rem
    if a.ip_ver != ver:
        return False
    if ver == 4:
        if a.plen == 0:
            return True
        mask = <uint32_t>0xFFFFFFFF << (32 - a.plen)
        return (a4 & mask) == (a.a4 & mask)
    full = a.plen >> 3
    rem = a.plen & 7
    if full and memcmp(a6, a.a6, full) != 0:
        return False
    if rem:
        mask = (0xFF << (8 - rem)) & 0xFF
        return (a6[full] & mask) == (a.a6[full] & mask)
    return True


cdef inline bint list_has(const addr_t* lst, uint32_t n, uint8_t ver, uint32_t a4,
                          const uint8_t* a6) noexcept nogil:
    cdef uint32_t i
    for i in range(n):
        if prefix_has(&lst[i], ver, a4, a6):
            return True
    return False


cdef inline uint64_t fe_hash(uint8_t proto, uint8_t ver, uint32_t a4, const uint8_t* a6,
                             uint16_t port) noexcept nogil:
    return mix64(addr_hash(ver, a4, a6) ^ ((<uint64_t>proto << 16) | port) * <uint64_t>0x9E3779B97F4A7C15)


cdef inline const fe_entry_t* fe_find(const fe_entry_t* tab, uint32_t mask, uint8_t proto,
                                      uint8_t ver, uint32_t a4, const uint8_t* a6,
                                      uint16_t port) noexcept nogil:
    cdef uint32_t i = <uint32_t>fe_hash(proto, ver, a4, a6, port) & mask
    cdef const fe_entry_t* e
    while True:
        e = &tab[i]
        if not e.used:
            return NULL
        if e.proto == proto and e.port == port and addr_eq(ver, a4, a6, e.ip_ver, e.a4, e.a6):
            return e
        i = (i + 1) & mask


cdef inline int fe_insert(fe_entry_t* tab, uint32_t mask, const fe_entry_t* src) noexcept nogil:
    """Insert a copy of src; 0 when the key was already present (first one stays)."""
    cdef uint32_t i = <uint32_t>fe_hash(src.proto, src.ip_ver, src.a4, src.a6, src.port) & mask
    cdef fe_entry_t* e
    while True:
        e = &tab[i]
        if not e.used:
            memcpy(e, src, sizeof(fe_entry_t))
            e.used = 1
            return 1
        if e.proto == src.proto and e.port == src.port and \
                addr_eq(src.ip_ver, src.a4, src.a6, e.ip_ver, e.a4, e.a6):
            return 0
        i = (i + 1) & mask


# ---------------------------------------------------------------- Maglev

cdef inline uint64_t backend_hash(const backend_t* b) noexcept nogil:
    return mix64(addr_hash(b.ip_ver, b.a4, b.a6) ^ (<uint64_t>b.port * <uint64_t>0x100000001B3))


cdef inline void maglev_perm(const backend_t* b, uint32_t m, uint32_t* offset, uint32_t* skip) noexcept nogil:
    cdef uint64_t h = backend_hash(b)
    offset[0] = <uint32_t>(mix64(h ^ <uint64_t>0x5851F42D4C957F2D) % m)
    skip[0] = <uint32_t>(mix64(h ^ <uint64_t>0x14057B7EF767814F) % (m - 1)) + 1


cdef void maglev_fill(const backend_t* be, uint32_t n, uint32_t m, uint32_t* lut) noexcept nogil:
    # Maglev population (Eisenbud et al., NSDI 2016, section 3.4): each backend
    # walks its own permutation (offset + j * skip mod M, both from the
    # backend's identity, not its index) and takes the next free slot, in
    # turns, until the table is full. The permutation depends only on the
    # backend, so removing one mostly frees that backend's slots.
    cdef uint32_t* pos = <uint32_t*>malloc(n * 2 * sizeof(uint32_t))
    cdef uint32_t* skip
    cdef uint32_t i, c, filled = 0
    cdef uint64_t h
    if pos == NULL:
        for c in range(m):          # degrade, never crash: all slots to backend 0
            lut[c] = 0
        return
    skip = pos + n
    for i in range(n):
        maglev_perm(&be[i], m, &pos[i], &skip[i])
    for c in range(m):
        lut[c] = NO_ID
    while True:
        for i in range(n):
            c = pos[i]
            while lut[c] != NO_ID:
                c += skip[i]
                if c >= m:
                    c -= m
            lut[c] = i
            c += skip[i]
            if c >= m:
                c -= m
            pos[i] = c
            filled += 1
            if filled == m:
                free(pos)
                return


cdef void bset_free(bset_t* bs) noexcept nogil:
    if bs == NULL:
        return
    free(bs.be)
    free(bs.be_local)
    free(bs.lut)
    free(bs.lut_local)
    free(bs)


cdef void maglev_carry(const backend_t* be, uint32_t n, uint32_t m, uint32_t* lut,
                       const backend_t* pbe, uint32_t pn, uint32_t pm,
                       const uint32_t* plut) noexcept nogil:
    # Stable update, starting from the previous table (lut holds the fresh
    # Maglev table on entry, which stands if memory runs out):
    #  1. a slot keeps its previous backend if that backend stays;
    #  2. the slots left (their backend went away) are handed out by Maglev
    #     population (each backend walks its own permutation, in turns) to
    #     backends below their quota ceil(M/n); new backends start at zero,
    #     so they are served first;
    #  3. a new backend still short of floor(M/n) takes slots along its
    #     permutation from backends above the quota.
    # Hence no flow moves between two backends that both stay, and the shares
    # stay balanced. A backend is the same backend when its id is the same.
    cdef uint32_t cap = 16, mask, i, j, c, h, quota, floor_q, limit, left = 0
    cdef int k
    cdef uint32_t* keys
    cdef uint32_t* vals
    cdef uint32_t* omap
    cdef uint8_t* isnew
    cdef uint32_t* count
    cdef uint32_t* pos
    cdef uint32_t* skip
    if pn == 0 or n == 0 or pm != m or plut == NULL:
        return
    while cap < 2 * n:
        cap <<= 1
    mask = cap - 1
    keys = <uint32_t*>malloc(cap * sizeof(uint32_t))
    vals = <uint32_t*>malloc(cap * sizeof(uint32_t))
    omap = <uint32_t*>malloc(pn * sizeof(uint32_t))
    isnew = <uint8_t*>malloc(n)
    count = <uint32_t*>calloc(3 * n, sizeof(uint32_t))
    if keys == NULL or vals == NULL or omap == NULL or isnew == NULL or count == NULL:
        free(keys); free(vals); free(omap); free(isnew); free(count)
        return                      # the fresh table stands (more flows move, none break)
    pos = count + n
    skip = count + 2 * n
    memset(keys, 0xFF, cap * sizeof(uint32_t))
    memset(isnew, 1, n)
    for j in range(n):
        h = <uint32_t>mix64(be[j].id) & mask
        while keys[h] != NO_ID:
            h = (h + 1) & mask
        keys[h] = be[j].id
        vals[h] = j
    for i in range(pn):
        omap[i] = NO_ID
        h = <uint32_t>mix64(pbe[i].id) & mask
        while keys[h] != NO_ID:
            if keys[h] == pbe[i].id:
                omap[i] = vals[h]
                isnew[vals[h]] = 0
                break
            h = (h + 1) & mask
    for c in range(m):
        if omap[plut[c]] != NO_ID:
            lut[c] = omap[plut[c]]
            count[lut[c]] += 1
        else:
            lut[c] = NO_ID
            left += 1
    quota = (m + n - 1) / n
    if left:
        for j in range(n):
            maglev_perm(&be[j], m, &pos[j], &skip[j])
    while left:
        for j in range(n):
            if count[j] >= quota:
                continue
            c = pos[j]
            while lut[c] != NO_ID:
                c += skip[j]
                if c >= m:
                    c -= m
            lut[c] = j
            count[j] += 1
            c += skip[j]
            if c >= m:
                c -= m
            pos[j] = c
            left -= 1
            if left == 0:
                break
    # 4. a new backend still below floor(M/n) takes slots along its permutation
    #    from backends above ceil(M/n), then from backends above floor(M/n)
    #    (these moves go to the new backend only)
    floor_q = m / n
    for j in range(n):
        if not isnew[j]:
            continue
        for k in range(2):
            if count[j] >= floor_q:
                break
            limit = quota if k == 0 else floor_q
            maglev_perm(&be[j], m, &pos[j], &skip[j])
            c = pos[j]
            for i in range(m):
                if count[j] >= floor_q:
                    break
                h = lut[c]
                if h != j and not isnew[h] and count[h] > limit:
                    lut[c] = j
                    count[h] -= 1
                    count[j] += 1
                c += skip[j]
                if c >= m:
                    c -= m
    free(keys); free(vals); free(omap); free(isnew); free(count)


cdef bset_t* bset_new(const backend_t* be, uint32_t n, const backend_t* bl, uint32_t nl,
                      const bset_t* prev) noexcept nogil:
    """A backend set with its Maglev tables; `prev` (may be NULL): the set it
    replaces, whose tables are carried over (maglev_carry)."""
    cdef bset_t* bs = <bset_t*>calloc(1, sizeof(bset_t))
    if bs == NULL:
        return NULL
    bs.n = n
    bs.n_local = nl
    if n and _table_new(be, n, &bs.be, &bs.m, &bs.lut, prev.be if prev != NULL else NULL,
                        prev.n if prev != NULL else 0, prev.m if prev != NULL else 0,
                        prev.lut if prev != NULL else NULL) < 0:
        bset_free(bs)
        return NULL
    if nl and _table_new(bl, nl, &bs.be_local, &bs.m_local, &bs.lut_local,
                         prev.be_local if prev != NULL else NULL,
                         prev.n_local if prev != NULL else 0, prev.m_local if prev != NULL else 0,
                         prev.lut_local if prev != NULL else NULL) < 0:
        bset_free(bs)
        return NULL
    return bs


cdef int _table_new(const backend_t* src, uint32_t n, backend_t** be, uint32_t* m,
                    uint32_t** lut, const backend_t* prev_be, uint32_t prev_n, uint32_t prev_m,
                    const uint32_t* prev_lut) noexcept nogil:
    """One backend array and its Maglev table, carried over from the previous one
    when there is one (prev_lut not NULL). -1 when out of memory."""
    m[0] = maglev_size_keep(n, prev_m)
    be[0] = <backend_t*>malloc(n * sizeof(backend_t))
    lut[0] = <uint32_t*>malloc(m[0] * sizeof(uint32_t))
    if be[0] == NULL or lut[0] == NULL:
        return -1
    memcpy(be[0], src, n * sizeof(backend_t))
    maglev_fill(be[0], n, m[0], lut[0])
    if prev_lut != NULL:
        maglev_carry(be[0], n, m[0], lut[0], prev_be, prev_n, prev_m, prev_lut)
    return 0


# ---------------------------------------------------------------- affinity

cdef inline uint32_t aff_bucket(const svc_tables_t* t, uint32_t svc, uint8_t ver, uint32_t a4,
                                const uint8_t* a6) noexcept nogil:
    # 4-way buckets; from 256 slots up, bits 2..7 of the slot are the client's shard key, so
    # that a bucket holds the clients of one shard (replay --workers N keeps an affinity
    # table per worker: each bucket then sees the same clients, in the same order, as one
    # worker's)
    cdef uint32_t b = <uint32_t>mix64(addr_hash(ver, a4, a6) ^ (<uint64_t>svc * <uint64_t>0xD6E8FEB86659FD93)) \
        & t.aff_mask & ~(<uint32_t>3)
    if t.aff_mask >= 255:
        b = (b & ~(<uint32_t>255)) | (<uint32_t>shard_addr_key(ver, a4, a6) << 2)
    return b


cdef inline aff_entry_t* aff_find(svc_tables_t* t, uint32_t svc, uint8_t ver, uint32_t a4,
                                  const uint8_t* a6, uint64_t now) noexcept nogil:
    cdef uint32_t b = aff_bucket(t, svc, ver, a4, a6), k
    cdef aff_entry_t* e
    for k in range(4):
        e = &t.aff[b + k]
        if e.svc == svc and e.expires_ns > now and addr_eq(ver, a4, a6, e.ip_ver, e.a4, e.a6):
            return e
    return NULL


cdef inline void aff_store(svc_tables_t* t, uint32_t svc, uint8_t ver, uint32_t a4,
                           const uint8_t* a6, uint32_t backend, uint32_t hint,
                           uint64_t expires) noexcept nogil:
    cdef uint32_t b = aff_bucket(t, svc, ver, a4, a6), k
    cdef aff_entry_t* e
    cdef aff_entry_t* victim = &t.aff[b]
    for k in range(4):
        e = &t.aff[b + k]
        if e.svc == svc and addr_eq(ver, a4, a6, e.ip_ver, e.a4, e.a6):
            victim = e
            break
        if e.expires_ns < victim.expires_ns:    # empty slots have expires 0
            victim = e
    victim.svc = svc
    victim.backend = backend
    victim.hint = hint
    victim.ip_ver = ver
    victim.a4 = a4
    if ver == 6:
        memcpy(victim.a6, a6, 16)
    victim.expires_ns = expires


# ---------------------------------------------------------------- decision

cdef inline int proto_index(uint8_t proto) noexcept nogil:
    if proto == 6:
        return 0
    if proto == 17:
        return 1
    if proto == 132:
        return 2
    return -1


cdef int svc_match(const svc_tables_t* t, const pkt_meta_t* p, uint32_t* svc,
                   uint8_t* kind, uint16_t* reason) noexcept nogil:
    cdef uint8_t ver = p.ip_ver
    cdef const fe_entry_t* e
    cdef int pi
    cdef uint32_t s
    if ver != 4 and ver != 6:
        return SVC_MISS
    pi = proto_index(p.proto)
    if pi >= 0:
        e = fe_find(t.fe, t.fe_mask, p.proto, ver, p.dst4, p.dst6, p.dport)
        if e != NULL:
            svc[0] = e.svc
            kind[0] = e.kind
            return SVC_HIT
        if t.nodeport != NULL and p.dport >= t.np_lo and p.dport <= t.np_hi and \
                list_has(t.np_addrs, t.n_np_addrs, ver, p.dst4, p.dst6):
            s = t.nodeport[((ver == 6) * 3 + pi) * (<uint32_t>t.np_hi - t.np_lo + 1) + (p.dport - t.np_lo)]
            if s != NO_ID:
                svc[0] = s
                kind[0] = FK_NODE_PORT
                return SVC_HIT
    if not (t.mode & MODE_IPTABLES):
        # nftables mode: "cluster-ips" reject and service-CIDR drop
        if fe_find(t.vips, t.vip_mask, 0, ver, p.dst4, p.dst6, 0) != NULL:
            reason[0] = R_SVC_PORT_NOT_EXPOSED
            return SVC_REJECT
        if list_has(t.svc_cidrs, t.n_svc_cidrs, ver, p.dst4, p.dst6):
            reason[0] = R_SVC_UNALLOCATED_IP
            return SVC_DROP
    return SVC_MISS


cdef uint32_t svc_frontend(const svc_tables_t* t, uint8_t proto, uint8_t ver, uint32_t a4,
                           const uint8_t* a6, uint16_t port) noexcept nogil:
    # svc_match's first two tests, on one end of a tuple instead of a packet's destination
    cdef int pi = proto_index(proto)
    cdef const fe_entry_t* e
    if pi < 0 or (ver != 4 and ver != 6):
        return NO_ID
    e = fe_find(t.fe, t.fe_mask, proto, ver, a4, a6, port)
    if e != NULL:
        return e.svc
    if t.nodeport != NULL and port >= t.np_lo and port <= t.np_hi and \
            list_has(t.np_addrs, t.n_np_addrs, ver, a4, a6):
        return t.nodeport[((ver == 6) * 3 + pi) * (<uint32_t>t.np_hi - t.np_lo + 1) + (port - t.np_lo)]
    return NO_ID


cdef bint svc_is_node_address(const svc_tables_t* t, uint8_t ver, uint32_t a4,
                              const uint8_t* a6) noexcept nogil:
    return list_has(t.node_addrs, t.n_node_addrs, ver, a4, a6)


cdef void svc_prefetch(const svc_tables_t* t, uint32_t svc, const pkt_meta_t* p,
                       int step) noexcept nogil:
    # svc_choose walks four dependent loads (record -> backend set -> Maglev slot ->
    # backend); a batch issues step k for all its new flows before step k+1, so the
    # misses overlap instead of queueing.
    cdef const bset_t* bs
    if svc >= t.n_svc:
        return
    if step == 0:
        kdp_prefetch(&t.svc[svc])
        return
    bs = t.svc[svc].bs
    if bs == NULL:
        return
    if step == 1:
        kdp_prefetch(bs)
    elif step == 2:
        if bs.m:
            kdp_prefetch(&bs.lut[mix64(p.hash) % bs.m])
        if bs.m_local:
            kdp_prefetch(&bs.lut_local[mix64(p.hash) % bs.m_local])
    elif step == 3:
        if bs.m:
            kdp_prefetch(&bs.be[bs.lut[mix64(p.hash) % bs.m]])
        if bs.m_local:
            kdp_prefetch(&bs.be_local[bs.lut_local[mix64(p.hash) % bs.m_local]])


cdef int svc_choose(svc_tables_t* t, uint32_t svc, uint8_t kind, const pkt_meta_t* p,
                    nat_spec_t* nat, uint16_t* reason) noexcept nogil:
    cdef svc_port_t* sp
    cdef bset_t* bs
    cdef uint8_t ver = p.ip_ver
    cdef bint masq = False, use_local = False, src_pod, src_node, no_detector
    cdef const backend_t* be
    cdef const uint32_t* lut
    cdef uint32_t n, m, idx = NO_ID, k
    cdef aff_entry_t* ae
    cdef const backend_t* b
    if svc >= t.n_svc:
        reason[0] = R_SVC_NO_ENDPOINTS
        return SVC_REJECT
    sp = &t.svc[svc]
    bs = sp.bs
    # loadBalancerSourceRanges guard the LoadBalancer IPs only (not NodePorts).
    if kind == FK_LOAD_BALANCER and sp.src_n and \
            not list_has(t.src_ranges + sp.src_off, sp.src_n, ver, p.src4, p.src6):
        reason[0] = R_SVC_SOURCE_RANGE
        return SVC_DROP
    if bs == NULL or (bs.n == 0 and bs.n_local == 0):
        reason[0] = R_SVC_NO_ENDPOINTS
        return SVC_REJECT
    # kube-proxy has one detector per family; a family without one (no-op) calls nothing local
    no_detector = (t.mode & (MODE_NO_DETECTOR4 if ver == 4 else MODE_NO_DETECTOR6)) != 0
    if no_detector:
        src_pod = False
    elif t.mode & MODE_LOCAL_PORT:
        src_pod = p.in_port < t.n_pod_ports and t.pod_ports[p.in_port] != 0
    else:
        src_pod = list_has(t.local_cidrs, t.n_local_cidrs, ver, p.src4, p.src6)
    if kind == FK_CLUSTER_IP:
        use_local = (sp.flags & SF_ITP_LOCAL) != 0
        # without a detector kube-proxy writes no "masquerade off-cluster traffic" rule
        masq = (t.mode & MODE_MASQ_ALL) != 0 or (not src_pod and not no_detector)
    elif not (sp.flags & SF_ETP_LOCAL):
        masq = True                 # may cross nodes: always masquerade
    elif src_pod:
        pass                        # pod -> external VIP: short-circuit to cluster endpoints
    else:
        # the node's own addresses and loopback (iptables' --src-type LOCAL)
        src_node = list_has(t.node_addrs, t.n_node_addrs, ver, p.src4, p.src6) or \
            (ver == 4 and (p.src4 >> 24) == 127)
        if src_node:
            masq = True             # host-originated: masquerade, cluster endpoints
        else:
            use_local = True        # preserve the client source
    if use_local:
        be = bs.be_local
        n = bs.n_local
        lut = bs.lut_local
        m = bs.m_local
        if n == 0:
            reason[0] = R_SVC_NO_LOCAL_ENDPOINTS
            return SVC_DROP
    else:
        be = bs.be
        n = bs.n
        lut = bs.lut
        m = bs.m
        if n == 0:
            reason[0] = R_SVC_NO_ENDPOINTS
            return SVC_REJECT
    if sp.flags & SF_AFFINITY:
        ae = aff_find(t, svc, ver, p.src4, p.src6, p.ts_ns)
        if ae != NULL:
            if ae.hint < n and be[ae.hint].id == ae.backend:
                idx = ae.hint
            else:
                for k in range(n):
                    if be[k].id == ae.backend:
                        idx = k
                        break
    if idx == NO_ID:
        idx = lut[mix64(p.hash) % m]
    b = &be[idx]
    if sp.flags & SF_AFFINITY:
        aff_store(t, svc, ver, p.src4, p.src6, b.id, idx,
                  p.ts_ns + <uint64_t>sp.affinity_timeout * <uint64_t>1000000000)
    # hairpin: a pod reaching itself through its Service
    if addr_eq(ver, p.src4, p.src6, b.ip_ver, b.a4, b.a6):
        masq = True
    memset(nat, 0, sizeof(nat_spec_t))
    nat.flags = NAT_DNAT
    # a port masquerade picks carries the client's shard key (kdp/_fast/shard.pyx): the
    # client address's, or its port's when the node itself is the client
    nat.flags |= NAT_PORT_KEY
    if list_has(t.node_addrs, t.n_node_addrs, ver, p.src4, p.src6):
        nat.port_key = <uint8_t>(p.sport & 63)
    else:
        nat.port_key = shard_addr_key(ver, p.src4, p.src6)
    nat.ip_ver = ver
    nat.dnat_port = b.port
    nat.svc_port = svc
    nat.backend = b.id
    if ver == 4:
        nat.dnat4 = b.a4
    else:
        memcpy(nat.dnat6, b.a6, 16)
    if masq:
        if ver == 4 and t.has_snat4:
            nat.flags |= NAT_SNAT | NAT_SNAT_PORT
            nat.snat4 = t.snat4
        elif ver == 6 and t.has_snat6:
            nat.flags |= NAT_SNAT | NAT_SNAT_PORT
            memcpy(nat.snat6, t.snat6, 16)
        nat.snat_port_lo = t.snat_lo
        nat.snat_port_hi = t.snat_hi
    return SVC_HIT


cdef int svc_decide(svc_tables_t* t, const pkt_meta_t* p, nat_spec_t* nat,
                    uint16_t* reason) noexcept nogil:
    cdef uint32_t svc = NO_ID
    cdef uint8_t kind = 0
    cdef int r = svc_match(t, p, &svc, &kind, reason)
    if r != SVC_HIT:
        return r
    return svc_choose(t, svc, kind, p, nat, reason)


# ---------------------------------------------------------------- the tables

cdef uint32_t _pow2_at_least(Py_ssize_t n):
    cdef uint32_t c = 16
    while c < n:
        c <<= 1
    return c


cdef addr_t* _copy_addrs(object arr, uint32_t* n_out) except? NULL:
    if not isinstance(arr, np.ndarray):
        arr = np.zeros(0, dtype=ADDR_DTYPE) if len(arr) == 0 else np.array(arr, dtype=ADDR_DTYPE)
    a = np.ascontiguousarray(arr, dtype=ADDR_DTYPE)
    cdef Py_ssize_t n = a.shape[0]
    cdef addr_t* out = <addr_t*>calloc(<size_t>(n if n > 0 else 1), sizeof(addr_t))
    if out == NULL:
        raise MemoryError()
    if n:
        memcpy(out, <void*><uintptr_t>a.ctypes.data, n * sizeof(addr_t))
    n_out[0] = <uint32_t>n
    return out


cdef class ServiceTables:
    """One compiled, immutable-by-default set of service tables.

    Built by kdp.control.compile from numpy arrays (dtypes SVC_DTYPE,
    FRONTEND_DTYPE, ADDR_DTYPE, BACKEND_DTYPE). The only in-place change is
    `publish` (one service-port's backends, copy-on-write) and the affinity
    table the decision itself maintains. The pipeline uses `.t` (a
    svc_tables_t) with svc_decide(); Python uses the bulk `decide`.
    """

    def __cinit__(self):
        memset(&self.t, 0, sizeof(svc_tables_t))
        self.retired = NULL
        self.n_retired = 0
        self.cap_retired = 0

    def __init__(self, svc, frontends, vips, backends, cl_off, cl_n, lo_off, lo_n, *,
                 uint32_t mode=0, int np_lo=30000, int np_hi=32767, np_addrs=(),
                 svc_cidrs=(), local_cidrs=(), node_addrs=(), src_ranges=(),
                 snat4=None, snat6=None, int snat_lo=1024, int snat_hi=65535,
                 Py_ssize_t affinity_slots=DEF_AFFINITY_SLOTS, uint32_t next_backend_id=0,
                 ServiceTables previous=None, previous_ids=None):
        cdef Py_ssize_t i, n_svc, n_fe, n_vip
        cdef const uint32_t* pid = NULL
        cdef svc_port_t* psvc = NULL
        cdef uint32_t pn = 0
        cdef const bset_t* pbs
        cdef uint32_t cap, span, pi, k
        cdef fe_entry_t tmp
        cdef const backend_t* bep
        cdef const uint32_t* co
        cdef const uint32_t* cn
        cdef const uint32_t* lo
        cdef const uint32_t* ln
        cdef int failed = 0
        cdef svc_port_t* sp
        if self.t.svc != NULL:
            raise RuntimeError("ServiceTables is initialised once")
        if not (0 < np_lo <= np_hi <= 65535):
            raise ValueError("bad NodePort range")
        if not (0 < snat_lo <= snat_hi <= 65535):
            raise ValueError("bad SNAT port range")
        svc_a = np.ascontiguousarray(svc, dtype=SVC_DTYPE)
        fe_a = np.ascontiguousarray(frontends, dtype=FRONTEND_DTYPE)
        vip_a = np.ascontiguousarray(vips, dtype=ADDR_DTYPE)
        be_a = np.ascontiguousarray(backends, dtype=BACKEND_DTYPE)
        n_svc = svc_a.shape[0]
        offs = [np.ascontiguousarray(x, dtype=np.uint32) for x in (cl_off, cl_n, lo_off, lo_n)]
        for x in offs:
            if x.shape[0] != n_svc:
                raise ValueError("backend offsets must have one entry per service-port")
        if n_svc:
            if int((offs[0].astype(np.uint64) + offs[1]).max()) > be_a.shape[0] or \
                    int((offs[2].astype(np.uint64) + offs[3]).max()) > be_a.shape[0]:
                raise ValueError("backend offsets out of range")
            if int(fe_a["svc"].max(initial=0)) >= n_svc and fe_a.shape[0]:
                raise ValueError("frontend names a service-port that does not exist")
        if affinity_slots < 4 or affinity_slots > (1 << 20):
            raise ValueError("affinity_slots must be in [4, 2**20] (48 bytes each)")
        self.t.mode = mode
        self.t.n_svc = <uint32_t>n_svc
        self.t.svc = <svc_port_t*>calloc(n_svc if n_svc else 1, sizeof(svc_port_t))
        if self.t.svc == NULL:
            raise MemoryError()
        if n_svc:
            memcpy(self.t.svc, <void*><uintptr_t>svc_a.ctypes.data, n_svc * sizeof(svc_port_t))
        for i in range(n_svc):
            self.t.svc[i].bs = NULL
        # frontends
        n_fe = fe_a.shape[0]
        cap = _pow2_at_least(2 * n_fe)
        self.t.fe = <fe_entry_t*>calloc(cap, sizeof(fe_entry_t))
        if self.t.fe == NULL:
            raise MemoryError()
        self.t.fe_mask = cap - 1
        for i in range(n_fe):
            memcpy(&tmp, <void*>(<uintptr_t>fe_a.ctypes.data + i * sizeof(fe_entry_t)), sizeof(fe_entry_t))
            fe_insert(self.t.fe, self.t.fe_mask, &tmp)
        # live ClusterIPs
        n_vip = vip_a.shape[0]
        cap = _pow2_at_least(2 * n_vip)
        self.t.vips = <fe_entry_t*>calloc(cap, sizeof(fe_entry_t))
        if self.t.vips == NULL:
            raise MemoryError()
        self.t.vip_mask = cap - 1
        for i in range(n_vip):
            memset(&tmp, 0, sizeof(fe_entry_t))
            tmp.ip_ver = vip_a[i]["ip_ver"]
            tmp.a4 = vip_a[i]["a4"]
            if tmp.ip_ver == 6:
                memcpy(tmp.a6, <void*>(<uintptr_t>vip_a.ctypes.data + i * sizeof(addr_t)
                                       + field_offset(&_pa.a6[0], &_pa)), 16)
            fe_insert(self.t.vips, self.t.vip_mask, &tmp)
        # NodePorts
        self.t.np_lo = <uint16_t>np_lo
        self.t.np_hi = <uint16_t>np_hi
        span = <uint32_t>(np_hi - np_lo + 1)
        self.t.nodeport = <uint32_t*>malloc(6 * span * sizeof(uint32_t))
        if self.t.nodeport == NULL:
            raise MemoryError()
        memset(self.t.nodeport, 0xFF, 6 * span * sizeof(uint32_t))
        for i in range(n_svc):
            sp = &self.t.svc[i]
            pi = <uint32_t>proto_index(sp.proto)
            if sp.node_port and np_lo <= sp.node_port <= np_hi and proto_index(sp.proto) >= 0:
                k = ((sp.ip_ver == 6) * 3 + pi) * span + (sp.node_port - np_lo)
                if self.t.nodeport[k] == NO_ID:
                    self.t.nodeport[k] = <uint32_t>i
        self.t.np_addrs = _copy_addrs(np_addrs, &self.t.n_np_addrs)
        self.t.svc_cidrs = _copy_addrs(svc_cidrs, &self.t.n_svc_cidrs)
        self.t.local_cidrs = _copy_addrs(local_cidrs, &self.t.n_local_cidrs)
        self.t.node_addrs = _copy_addrs(node_addrs, &self.t.n_node_addrs)
        self.t.src_ranges = _copy_addrs(src_ranges, &self.t.n_src_ranges)
        for i in range(n_svc):
            if <uint64_t>self.t.svc[i].src_off + self.t.svc[i].src_n > self.t.n_src_ranges:
                raise ValueError("source-range offsets out of range")
        if snat4 is not None:
            self.t.has_snat4 = 1
            self.t.snat4 = <uint32_t>snat4
        if snat6 is not None:
            if len(snat6) != 16:
                raise ValueError("snat6 must be 16 bytes")
            self.t.has_snat6 = 1
            s6 = bytes(snat6)
            memcpy(self.t.snat6, <const char*>s6, 16)
        self.t.snat_lo = <uint16_t>snat_lo
        self.t.snat_hi = <uint16_t>snat_hi
        cap = _pow2_at_least(affinity_slots)
        self.t.aff = <aff_entry_t*>calloc(cap, sizeof(aff_entry_t))
        if self.t.aff == NULL:
            raise MemoryError()
        self.t.aff_mask = cap - 1
        self.next_backend_id = next_backend_id
        # backend sets + Maglev tables, all service-ports in one nogil pass
        bep = <const backend_t*><uintptr_t>be_a.ctypes.data
        co = <const uint32_t*><uintptr_t>offs[0].ctypes.data
        cn = <const uint32_t*><uintptr_t>offs[1].ctypes.data
        lo = <const uint32_t*><uintptr_t>offs[2].ctypes.data
        ln = <const uint32_t*><uintptr_t>offs[3].ctypes.data
        if previous is not None:
            # previous_ids[i]: the previous tables' id of service-port i (NO_ID: new)
            prev_a = np.ascontiguousarray(previous_ids, dtype=np.uint32)
            if prev_a.shape[0] != n_svc:
                raise ValueError("previous_ids must have one entry per service-port")
            pid = <const uint32_t*><uintptr_t>prev_a.ctypes.data
            psvc = previous.t.svc
            pn = previous.t.n_svc
        with nogil:
            for i in range(n_svc):
                pbs = NULL
                if pid != NULL and pid[i] < pn:
                    pbs = psvc[pid[i]].bs
                self.t.svc[i].bs = bset_new(bep + co[i], cn[i], bep + lo[i], ln[i], pbs)
                if self.t.svc[i].bs == NULL:
                    failed = 1
        if failed:
            raise MemoryError()

    def __dealloc__(self):
        cdef uint32_t i
        if self.t.svc != NULL:
            for i in range(self.t.n_svc):
                bset_free(self.t.svc[i].bs)
        free(self.t.svc)
        free(self.t.fe)
        free(self.t.vips)
        free(self.t.nodeport)
        free(self.t.np_addrs)
        free(self.t.svc_cidrs)
        free(self.t.local_cidrs)
        free(self.t.node_addrs)
        free(self.t.pod_ports)
        free(self.t.src_ranges)
        free(self.t.aff)
        self._free_retired()
        free(self.retired)

    cdef void _free_retired(self) noexcept:
        cdef Py_ssize_t i
        for i in range(self.n_retired):
            bset_free(self.retired[i])
        self.n_retired = 0

    # -------------------------------------------------------------- updates

    def publish(self, uint32_t svc, cluster, local):
        """Replace one service-port's backends (BACKEND_DTYPE arrays) and its
        Maglev tables, copy-on-write: a new set is built, then swapped in with
        one pointer store. The Maglev table keeps its size while that size
        stays between 50x and 400x the backend count, and starts from the old
        table: slots of backends that stay keep them (unless a newly added
        backend takes them), so no flow moves between two surviving backends.
        Backends are the same backend when their ids are equal. The replaced
        set is freed at the next publish (a
        batch running concurrently keeps a valid set). Returns the backend ids
        the old set held (uint32 array)."""
        cdef bset_t* nb
        cdef bset_t* old
        cdef bset_t** grown
        if svc >= self.t.n_svc:
            raise IndexError("no such service-port")
        c = np.ascontiguousarray(cluster, dtype=BACKEND_DTYPE)
        l = np.ascontiguousarray(local, dtype=BACKEND_DTYPE)
        cdef bset_t* cur = self.t.svc[svc].bs
        nb = bset_new(<const backend_t*><uintptr_t>c.ctypes.data, <uint32_t>c.shape[0],
                      <const backend_t*><uintptr_t>l.ctypes.data, <uint32_t>l.shape[0], cur)
        if nb == NULL:
            raise MemoryError()
        old_ids = self._ids(self.t.svc[svc].bs)
        self._free_retired()
        if self.n_retired == self.cap_retired:
            grown = <bset_t**>malloc((self.cap_retired + 8) * sizeof(bset_t*))
            if grown == NULL:
                bset_free(nb)
                raise MemoryError()
            free(self.retired)
            self.retired = grown
            self.cap_retired += 8
        old = self.t.svc[svc].bs
        self.t.svc[svc].bs = nb
        if old != NULL:
            self.retired[self.n_retired] = old
            self.n_retired += 1
        return old_ids

    def reclaim(self):
        """Free replaced backend sets now (call between batches)."""
        self._free_retired()

    def allocate_backend_ids(self, Py_ssize_t n):
        """n fresh backend ids (uint32 array); ids are never reused by one table lineage."""
        if n < 0 or <uint64_t>self.next_backend_id + n >= NO_ID:
            raise ValueError("backend id space exhausted")
        out = np.arange(self.next_backend_id, self.next_backend_id + n, dtype=np.uint32)
        self.next_backend_id += <uint32_t>n
        return out

    cdef object _ids(self, bset_t* bs):
        cdef uint32_t i
        if bs == NULL:
            return np.zeros(0, dtype=np.uint32)
        out = np.empty(bs.n + bs.n_local, dtype=np.uint32)
        cdef uint32_t[::1] v = out
        for i in range(bs.n):
            v[i] = bs.be[i].id
        for i in range(bs.n_local):
            v[bs.n + i] = bs.be_local[i].id
        return np.unique(out)

    # -------------------------------------------------------------- inspection

    @property
    def n_services(self):
        return self.t.n_svc

    @property
    def mode(self):
        return self.t.mode

    def records(self):
        """The service-port records (SVC_DTYPE copy)."""
        out = np.zeros(self.t.n_svc, dtype=SVC_DTYPE)
        if self.t.n_svc:
            memcpy(<void*><uintptr_t>out.ctypes.data, self.t.svc, self.t.n_svc * sizeof(svc_port_t))
        return out

    def set_pod_ports(self, ids):
        """The port ids of this node's pods (local traffic under the interface modes of
        local-traffic detection, MODE_LOCAL_PORT). Set once, before the tables are used."""
        cdef uint32_t n
        cdef uint8_t* table
        ids = [int(i) for i in ids]
        n = (max(ids) + 1) if ids else 0
        table = <uint8_t*>calloc(n if n else 1, 1)
        if table == NULL:
            raise MemoryError()
        for i in ids:
            table[i] = 1
        free(self.t.pod_ports)
        self.t.pod_ports = table
        self.t.n_pod_ports = n

    def backends(self, uint32_t svc, bint local=False):
        """The published backends of a service-port (BACKEND_DTYPE copy)."""
        if svc >= self.t.n_svc:
            raise IndexError("no such service-port")
        cdef bset_t* bs = self.t.svc[svc].bs
        cdef uint32_t n = (bs.n_local if local else bs.n) if bs != NULL else 0
        out = np.zeros(n, dtype=BACKEND_DTYPE)
        if n:
            memcpy(<void*><uintptr_t>out.ctypes.data, bs.be_local if local else bs.be,
                   n * sizeof(backend_t))
        return out

    def all_backends(self):
        """Every published backend in one pass: (service-port ids uint32[n],
        local-set flags uint8[n], BACKEND_DTYPE[n])."""
        cdef uint32_t i, k
        cdef Py_ssize_t total = 0, pos = 0
        cdef bset_t* bs
        for i in range(self.t.n_svc):
            bs = self.t.svc[i].bs
            if bs != NULL:
                total += bs.n + bs.n_local
        svc = np.empty(total, dtype=np.uint32)
        loc = np.empty(total, dtype=np.uint8)
        out = np.empty(total, dtype=BACKEND_DTYPE)
        cdef uint32_t[::1] sv = svc
        cdef uint8_t[::1] lv = loc
        cdef backend_t* ob = <backend_t*><uintptr_t>out.ctypes.data
        for i in range(self.t.n_svc):
            bs = self.t.svc[i].bs
            if bs == NULL:
                continue
            if bs.n:
                memcpy(ob + pos, bs.be, bs.n * sizeof(backend_t))
            for k in range(bs.n):
                sv[pos + k] = i
                lv[pos + k] = 0
            pos += bs.n
            if bs.n_local:
                memcpy(ob + pos, bs.be_local, bs.n_local * sizeof(backend_t))
            for k in range(bs.n_local):
                sv[pos + k] = i
                lv[pos + k] = 1
            pos += bs.n_local
        return svc, loc, out

    def lut(self, uint32_t svc, bint local=False):
        """The Maglev table of a service-port (uint32 indices into backends())."""
        if svc >= self.t.n_svc:
            raise IndexError("no such service-port")
        cdef bset_t* bs = self.t.svc[svc].bs
        cdef uint32_t m = (bs.m_local if local else bs.m) if bs != NULL else 0
        out = np.zeros(m, dtype=np.uint32)
        if m:
            memcpy(<void*><uintptr_t>out.ctypes.data, bs.lut_local if local else bs.lut,
                   m * sizeof(uint32_t))
        return out

    def affinity_entries(self, uint64_t now_ns=0):
        """Live affinity entries: list of (svc_port, backend_id, expires_ns)."""
        cdef uint32_t i
        out = []
        for i in range(self.t.aff_mask + 1):
            if self.t.aff[i].expires_ns > now_ns and self.t.aff[i].expires_ns:
                out.append((self.t.aff[i].svc, self.t.aff[i].backend, self.t.aff[i].expires_ns))
        return out

    def clear_affinity(self):
        memset(self.t.aff, 0, (self.t.aff_mask + 1) * sizeof(aff_entry_t))

    # -------------------------------------------------------------- bulk decision

    def decide(self, meta):
        """Run the service decision over pkt_meta_t records (packet.META_DTYPE).

        Returns (result uint8[n] of SvcResult, reason uint16[n] (0 unless
        SVC_DROP/SVC_REJECT), nat NAT_DTYPE[n]; nat.svc_port is NO_ID unless
        SVC_HIT). The affinity table is updated as the pipeline would."""
        from kdp._fast.packet import META_DTYPE
        if not isinstance(meta, np.ndarray) or meta.dtype != META_DTYPE or meta.ndim != 1:
            raise TypeError("meta must be a 1-d numpy array of packet.META_DTYPE")
        m = np.ascontiguousarray(meta)
        cdef Py_ssize_t n = m.shape[0], i
        result = np.zeros(n, dtype=np.uint8)
        reason = np.zeros(n, dtype=np.uint16)
        nat = np.zeros(n, dtype=NAT_DTYPE)
        nat["svc_port"] = NO_ID_VALUE
        nat["backend"] = NO_ID_VALUE
        cdef const pkt_meta_t* mp = <const pkt_meta_t*><uintptr_t>m.ctypes.data
        cdef nat_spec_t* np_ = <nat_spec_t*><uintptr_t>nat.ctypes.data
        cdef uint8_t[::1] rv = result
        cdef uint16_t[::1] rs = reason
        cdef uint16_t r
        with nogil:
            for i in range(n):
                r = 0
                rv[i] = <uint8_t>svc_decide(&self.t, &mp[i], &np_[i], &r)
                rs[i] = r
        return result, reason, nat


# The enum members as module constants too (kdp.control uses them by name).
for _enum in (FrontendKind, SvcResult, SvcType, SvcFlags, TableMode):
    globals().update({_m.name: int(_m) for _m in _enum})
