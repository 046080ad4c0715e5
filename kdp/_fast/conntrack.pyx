# cython: boundscheck=False, wraparound=False, cdivision=True
"""Connection tracking: the flow table and the two conntrack stages.

Table
-----
Fixed capacity (``capacity`` flows, default 1,048,576), allocated once:
128-byte flow records, an open-addressing index of ``3 * capacity`` 8-byte
slots holding both directions of every flow (load <= 2/3), two uint32 links
per flow for the FIFO of non-assured flows, and a small fragment table. No
allocation per packet; nothing an input does can grow it.

Index slots are ``(tag << 32) | (flow_id << 1 | dir)`` with ``tag`` the high 32
bits of the tuple hash and home slot ``(tag * nslots) >> 32``; linear probing,
deletion by backward shift (no tombstones).

Stage ``ct_lookup_batch(ct, b, now_ns)`` (Python: ``Conntrack.lookup_batch``)
---------------------------------------------------------------------------
Time: ``now_ns``, or with ``now_ns = CT_PACKET_CLOCK`` (Python ``PACKET_CLOCK``)
each packet's own timestamp, never running backwards (replay: a flow ages by the
gaps between its packets even inside one batch). ``ct_create`` takes the same.
Reads every V_PENDING IP packet's tuple (ip_ver, proto, src/dst, sport/dport,
tcp_flags, icmp_type/icmp_id, frag/frag_id, quote fields q_* of ICMP errors).
Sets ``flow_id`` and ``ct_state``:
  CT_ESTABLISHED  packet of a tracked flow, original direction
  CT_REPLY        packet of a tracked flow, reply direction
  CT_RELATED      ICMP/ICMPv6 error quoting a packet of a tracked flow
  CT_INVALID      TCP packet fitting no state of its flow (flow_id still set:
                  the packet is still translated by nat_batch unless dropped)
  CT_NEW          miss (flow_id NO_ID): the slow path decides
  CT_NONE         untrackable (not IP, ICMP informational other than echo,
                  ICMP error quoting no tracked flow)
Also sets ``svc_port`` from the flow (the service-port id it was created for,
NO_ID when none). Advances TCP state, counts packets/bytes per direction,
refreshes the flow (last-seen = now_ns). Later fragments find their flow by IP ID (fragment
table filled from first fragments). Drops (stage ST_CONNTRACK): R_CT_INVALID
only when ``drop_invalid`` is set. Next: service (CT_NEW) / nat.

Stage ``ct_create(ct, b, i, spec, now_ns)`` (Python: ``Conntrack.create``)
-------------------------------------------------------------------------
Slow path for one CT_NEW packet: looks the tuple up again first (an earlier
packet of the same batch may have created the flow: both then share it and
its translation), validates that the packet may open a flow (TCP: SYN, or an
ACK when ``tcp_loose``; ICMP: echo request), builds the reply tuple from the
nat_spec_t, picks a source port when asked (or when the reply tuple collides)
so the reply tuple is unique, evicts the oldest non-assured flow when the
table is full, inserts both directions. Sets flow_id and ct_state = CT_NEW.
Drops: R_CT_INVALID (ST_CONNTRACK, only with drop_invalid), R_CT_TABLE_FULL
(ST_CONNTRACK), R_NAT_PORTS_EXHAUSTED (ST_NAT), R_FRAG_NO_FLOW (ST_CONNTRACK,
a later fragment whose first fragment was not seen).

Expiry ``ct_expire(ct, now_ns, max_work)``: a clock hand over the flow
records, at most max_work records per call; expired flows met by a lookup are
removed on the spot too. Never a stop-the-world sweep. Call it between
batches (after NAT): it starts a new batch epoch.

Batch epochs: every flow a packet of the current batch refers to is stamped
with the batch's epoch; early drop and expiry never remove such a flow (its
id is in a packet's metadata, and NAT will read it). ct_lookup_batch and
ct_expire start new epochs.

Early drop: when the table is full, the oldest non-assured flow goes (the
FIFO of non-assured flows, in creation order; flows that become assured leave
it). If none can go, up to 256 records are swept for expired flows; else the
new flow is refused with R_CT_TABLE_FULL. Assured = replied (UDP, ICMP,
others), or TCP established after a reply was seen.

Not modelled (known gaps): TCP sequence-window tracking (Linux's
tcp_in_window: out-of-window packets are not detected, only packets whose
flags fit no state), the SCTP state machine (SCTP flows use one timeout),
connection-tracking helpers (FTP, SIP, ...).
"""
import ipaddress

import numpy as np
cimport numpy as cnp
from libc.stdlib cimport malloc, calloc, free
from libc.string cimport memset, memcpy, memcmp
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, int8_t

from kdp._fast.mix cimport mix64, P_ICMP, P_TCP, P_UDP, P_ICMPV6, P_SCTP
from kdp._fast.packet cimport (
    Batch, pkt_meta_t, drop, NO_ID, V_PENDING,
    ST_CONNTRACK, ST_NAT, FRAG_NONE, FRAG_FIRST, FRAG_LATER,
    CT_NONE, CT_NEW, CT_ESTABLISHED, CT_REPLY, CT_RELATED, CT_INVALID,
    R_CT_INVALID, R_CT_TABLE_FULL, R_NAT_PORTS_EXHAUSTED, R_FRAG_NO_FLOW,
)
from kdp._fast.flow cimport nat_spec_t, NAT_NONE, NAT_DNAT, NAT_SNAT, NAT_SNAT_PORT
from kdp._fast.checksum cimport kdp_prefetch, kdp_prefetch_w, ld16

from kdp.errors import KdpError

cnp.import_array()

cdef enum:
    S_IV = 20           # invalid transition
    S_IG = 21           # ignored (accepted, no state change)
    DIST = 12           # pipeline distance (packets) between stages
    RING = 32           # > 2 * DIST, a power of two
    CDIST = 1           # ct_lookup_batch: chunks between its passes
    NCS = 2 * CDIST + 1 # chunks of state kept
    CHUNK = 8          # ct_lookup_batch: packets per pass
    EARLY_DROP_SCAN = 16
    T_SYN = 0
    T_SYNACK = 1
    T_FIN = 2
    T_ACK = 3
    T_RST = 4
    T_NONE = 5
    K_FLOW4 = 5         # ct_lookup_batch: an IPv4 K_FLOW key kept as words (ka, kp, kpv)
    T_BAD = 6           # a flag combination no TCP stack sends: invalid in every state
    N_TKIND = 7
    HIT_OK = 0
    HIT_GONE = 1        # flow removed (reopened or expired): treat as a miss

cdef extern from *:
    """
    #define KDP_CT_EMPTY 0xFFFFFFFFFFFFFFFFULL
    #include <sys/mman.h>
    /* Zeroed, lazily backed memory on transparent huge pages where the kernel
       allows it (fewer TLB misses for a table of 150+ MB). NULL on failure. */
    static void* kdp_big_alloc(size_t n) {
        void* p;
        if (n == 0) n = 1;
        p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) return NULL;
    #ifdef MADV_HUGEPAGE
        if (n >= (2u << 20)) madvise(p, n, MADV_HUGEPAGE);
    #endif
        return p;
    }
    static void kdp_big_free(void* p, size_t n) {
        if (p != NULL) munmap(p, n == 0 ? 1 : n);
    }
    /* Back [p, p + n) with memory now (the page faults and the zeroing happen
       here, not under the first packets that use it), on the huge pages asked
       for above. 0 on success, -1 when the memory cannot be had. */
    #include <errno.h>
    #include <unistd.h>
    static int kdp_big_populate(void* p, size_t n) {
        size_t off, step;
    #ifdef MADV_POPULATE_WRITE
        if (madvise(p, n, MADV_POPULATE_WRITE) == 0) return 0;
        if (errno != EINVAL) return -1;      /* ENOMEM, EFAULT, ...; EINVAL: kernel < 5.14 */
    #endif
        step = (size_t)sysconf(_SC_PAGESIZE);
        if (step == 0 || step > 65536) step = 4096;
        for (off = 0; off < n; off += step) ((volatile char*)p)[off] = 0;
        return 0;
    }
    """
    const uint64_t EMPTY "KDP_CT_EMPTY"
    void* kdp_big_alloc(size_t n) nogil
    void kdp_big_free(void* p, size_t n) nogil
    int kdp_big_populate(void* p, size_t n) nogil

NO_FLOW = <uint32_t>NO_ID

# ---------------------------------------------------------------- TCP table
# Transitions as Linux nf_conntrack_proto_tcp.c defines them (states in
# enum TcpState order: NONE SS SR ES FW CW LA TW CL S2), for the packet kinds
# SYN, SYN/ACK, FIN, ACK, RST, none, (bad flags); [direction][kind][old state].
# _tcp_kind maps the flags (& 0x37) to the kind, so the per-packet state step
# is two table loads and no flag branches.
cdef uint8_t _tcp_tr[2 * N_TKIND * 10]
cdef uint8_t _tcp_valid[64]
cdef uint8_t _tcp_kind[64]

def _init_tables():
    NO, SS, SR, ES, FW, CW, LA, TW, CL, S2 = range(10)
    IV, IG = S_IV, S_IG
    rows = [
        # original direction
        [SS, SS, IG, IG, IG, IG, IG, SS, SS, S2],   # syn
        [IV, IV, SR, IV, IV, IV, IV, IV, IV, SR],   # synack (simultaneous open)
        [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],   # fin
        [ES, IV, ES, ES, CW, CW, TW, TW, CL, IV],   # ack
        [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],   # rst
        [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],   # none
        [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],   # bad flags
        # reply direction
        [IV, S2, IV, IV, IV, IV, IV, SS, IV, S2],   # syn
        [IV, SR, IG, IG, IG, IG, IG, IG, IG, SR],   # synack
        [IV, IV, FW, FW, LA, LA, LA, TW, CL, IV],   # fin
        [IV, IG, SR, ES, CW, CW, TW, TW, CL, IG],   # ack
        [IV, CL, CL, CL, CL, CL, CL, CL, CL, CL],   # rst
        [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],   # none
        [IV, IV, IV, IV, IV, IV, IV, IV, IV, IV],   # bad flags
    ]
    cdef int r, s
    for r in range(2 * N_TKIND):
        for s in range(10):
            _tcp_tr[r * 10 + s] = rows[r][s]
    # flag combinations (FIN 1, SYN 2, RST 4, ACK 16, URG 32) a TCP stack sends
    for r in range(64):
        _tcp_valid[r] = 0
    for r in (2, 2 | 32, 2 | 16, 4, 4 | 16, 1 | 16, 1 | 16 | 32, 16, 16 | 32):
        _tcp_valid[r] = 1
    for r in range(64):
        if not _tcp_valid[r]:
            _tcp_kind[r] = T_BAD
        elif r & 4:
            _tcp_kind[r] = T_RST
        elif r & 2:
            _tcp_kind[r] = T_SYNACK if r & 16 else T_SYN
        elif r & 1:
            _tcp_kind[r] = T_FIN
        elif r & 16:
            _tcp_kind[r] = T_ACK
        else:
            _tcp_kind[r] = T_NONE

_init_tables()

TCP_STATE_NAMES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
                   "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2")

# Timeout names are nf_conntrack's sysctl names without the prefix
# "nf_conntrack_"; defaults are the kernel's (seconds).
TIMEOUT_DEFAULTS = {
    "tcp_timeout_syn_sent": 120,
    "tcp_timeout_syn_recv": 60,
    "tcp_timeout_established": 432000,
    "tcp_timeout_fin_wait": 120,
    "tcp_timeout_close_wait": 60,
    "tcp_timeout_last_ack": 30,
    "tcp_timeout_time_wait": 120,
    "tcp_timeout_close": 10,
    "udp_timeout": 30,
    "udp_timeout_stream": 120,
    "icmp_timeout": 30,
    "sctp_timeout_established": 210,
    "generic_timeout": 600,
    "frag_timeout": 30,          # like ipfrag_time: how long an IP ID maps to a flow
}
_TIMEOUT_SLOT = {
    "tcp_timeout_syn_sent": (TO_TCP_SYN_SENT, TO_TCP_SYN_SENT2),
    "tcp_timeout_syn_recv": (TO_TCP_SYN_RECV,),
    "tcp_timeout_established": (TO_TCP_ESTABLISHED, TO_TCP_NONE),
    "tcp_timeout_fin_wait": (TO_TCP_FIN_WAIT,),
    "tcp_timeout_close_wait": (TO_TCP_CLOSE_WAIT,),
    "tcp_timeout_last_ack": (TO_TCP_LAST_ACK,),
    "tcp_timeout_time_wait": (TO_TCP_TIME_WAIT,),
    "tcp_timeout_close": (TO_TCP_CLOSE,),
    "udp_timeout": (TO_UDP,),
    "udp_timeout_stream": (TO_UDP_STREAM,),
    "icmp_timeout": (TO_ICMP,),
    "sctp_timeout_established": (TO_SCTP,),
    "generic_timeout": (TO_GENERIC,),
    "frag_timeout": (TO_FRAG,),
}
COUNTER_NAMES = ("lookups", "hits", "misses", "inserts", "evictions", "expiries",
                 "invalid", "table_full", "ports_exhausted", "related", "frag_hits",
                 "frag_no_flow", "flushed", "port_remaps", "reopened", "create_hits")


class ConntrackConfigError(KdpError):
    """Conntrack settings out of range."""


# ---------------------------------------------------------------- hashing



cdef inline uint64_t _hash4(uint64_t seed, uint32_t src, uint32_t dst, uint16_t sport,
                           uint16_t dport, uint8_t proto) noexcept nogil:
    """_key_hash of an IPv4 key, from its fields."""
    cdef uint64_t h = seed ^ ((<uint64_t>sport << 48) | (<uint64_t>dport << 32)
                              | (<uint64_t>proto << 8) | 4)
    return mix64(mix64(h) ^ ((<uint64_t>src << 32) | dst))


cdef uint64_t _key_hash6(const ct_table_t* t, const ct_key_t* k) noexcept nogil:
    cdef uint64_t h = t.seed ^ ((<uint64_t>k.sport << 48) | (<uint64_t>k.dport << 32)
                                | (<uint64_t>k.proto << 8) | k.ver)
    cdef const uint64_t* s = <const uint64_t*>k.src
    cdef const uint64_t* d = <const uint64_t*>k.dst
    return mix64(mix64(h) ^ mix64(s[0] + 0x243F6A8885A308D3ULL) ^ (mix64(s[1] + 0x13198A2E03707344ULL) * 3)
                ^ (mix64(d[0] + 0xA4093822299F31D0ULL) * 5) ^ (mix64(d[1] + 0x082EFA98EC4E6C89ULL) * 7))


cdef inline uint64_t _key_hash(const ct_table_t* t, const ct_key_t* k) noexcept nogil:
    # small enough to inline everywhere; IPv6 keys take the out-of-line half
    if k.ver == 4:
        return _hash4(t.seed, k.src[0], k.dst[0], k.sport, k.dport, k.proto)
    return _key_hash6(t, k)


cdef inline uint32_t _home(const ct_table_t* t, uint64_t h) noexcept nogil:
    return <uint32_t>(((h >> 32) * <uint64_t>t.nslots) >> 32)


cdef inline void _prefetch_run(const ct_table_t* t, uint32_t pos) noexcept nogil:
    """Prefetch the index line of slot pos and, when pos is among the last
    three slots of its line, the next line too: a probe run (~2 slots for a
    hit, ~3-5 for a miss at the index's load) often continues there."""
    kdp_prefetch(&t.index[pos])
    if (pos & 7) >= 5 and pos + 3 < t.nslots:
        kdp_prefetch(&t.index[pos + 3])


cdef inline bint _key_eq(const ct_flow_t* f, int dir, const ct_key_t* k) noexcept nogil:
    cdef const uint32_t* w
    if f.proto != k.proto or f.ip_ver != k.ver:
        return 0
    if f.port[2 * dir] != k.sport or f.port[2 * dir + 1] != k.dport:
        return 0
    if k.ver == 4:
        return f.a4[2 * dir] == k.src[0] and f.a4[2 * dir + 1] == k.dst[0]
    w = &f.a6[8 * dir]
    return (w[0] == k.src[0] and w[1] == k.src[1] and w[2] == k.src[2] and w[3] == k.src[3]
            and w[4] == k.dst[0] and w[5] == k.dst[1] and w[6] == k.dst[2] and w[7] == k.dst[3])


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


cdef inline void _store_key(ct_flow_t* f, int dir, const ct_key_t* k) noexcept nogil:
    cdef uint32_t* w
    f.port[2 * dir] = k.sport
    f.port[2 * dir + 1] = k.dport
    if k.ver == 4:
        f.a4[2 * dir] = k.src[0]
        f.a4[2 * dir + 1] = k.dst[0]
    else:
        w = &f.a6[8 * dir]
        memcpy(w, k.src, 16)
        memcpy(w + 4, k.dst, 16)


# ---------------------------------------------------------------- index

cdef inline uint32_t _find_from(const ct_table_t* t, const ct_key_t* k, uint64_t h,
                                uint32_t pos, int* dir) noexcept nogil:
    cdef uint64_t s
    cdef uint32_t tag = <uint32_t>(h >> 32)
    cdef uint32_t fid
    while True:
        s = t.index[pos]
        if s == EMPTY:
            return NO_ID
        if <uint32_t>(s >> 32) == tag:
            fid = (<uint32_t>s) >> 1
            if _key_eq(&t.flows[fid], <int>(s & 1), k):
                dir[0] = <int>(s & 1)
                return fid
        pos += 1
        if pos == t.nslots:
            pos = 0


cdef inline uint64_t _ld64(const void* a) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, a, 8)
    return v


cdef inline uint32_t _ld32(const void* a) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, a, 4)
    return v


cdef inline uint16_t _ldh(const void* a) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, a, 2)
    return v


cdef inline uint32_t _find4(const ct_table_t* t, uint64_t ka, uint32_t kp, uint16_t kpv,
                            uint64_t h, uint32_t pos, int* dir) noexcept nogil:
    """_find_from for an IPv4 key given as words: ka = src | dst << 32, kp =
    sport | dport << 16, kpv = proto | 4 << 8 (the record's a4/port/proto+ip_ver
    pairs of one direction, as they lie in memory): three compares, one branch."""
    cdef uint64_t s
    cdef uint32_t tag = <uint32_t>(h >> 32)
    cdef uint32_t fid, d
    cdef const ct_flow_t* f
    while True:
        s = t.index[pos]
        if s == EMPTY:
            return NO_ID
        if <uint32_t>(s >> 32) == tag:
            fid = (<uint32_t>s) >> 1
            d = <uint32_t>s & 1
            f = &t.flows[fid]
            if ((_ld64(&f.a4[2 * d]) ^ ka) | (_ld32(&f.port[2 * d]) ^ kp)
                    | (_ldh(&f.proto) ^ kpv)) == 0:
                dir[0] = <int>d
                return fid
        pos += 1
        if pos == t.nslots:
            pos = 0


cdef uint32_t ct_find(ct_table_t* t, const ct_key_t* k, int* dir) noexcept nogil:
    cdef uint64_t h = _key_hash(t, k)
    return _find_from(t, k, h, _home(t, h), dir)


cdef inline void _index_insert(ct_table_t* t, uint64_t h, uint32_t fid, int dir) noexcept nogil:
    cdef uint32_t pos = _home(t, h)
    while t.index[pos] != EMPTY:
        pos += 1
        if pos == t.nslots:
            pos = 0
    t.index[pos] = ((h >> 32) << 32) | ((<uint64_t>fid << 1) | <uint64_t>dir)


cdef void _index_remove(ct_table_t* t, uint64_t h, uint32_t fid, int dir) noexcept nogil:
    cdef uint64_t want = ((h >> 32) << 32) | ((<uint64_t>fid << 1) | <uint64_t>dir)
    cdef uint32_t i = _home(t, h)
    cdef uint32_t j, k, dk, di, n = t.nslots
    cdef uint64_t e, mv
    while t.index[i] != want:
        if t.index[i] == EMPTY:
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
        if e == EMPTY:
            break
        k = <uint32_t>(((e >> 32) * <uint64_t>n) >> 32)
        dk = j - k + (n if j < k else 0)
        di = j - i + (n if j < i else 0)
        mv = <uint64_t>0 - <uint64_t>(dk >= di)
        t.index[i] = (e & mv) | (t.index[i] & ~mv)
        i = (i & ~<uint32_t>mv) | (j & <uint32_t>mv)
    t.index[i] = EMPTY


# ---------------------------------------------------------------- flow lists

cdef inline void _unas_push(ct_table_t* t, uint32_t fid) noexcept nogil:
    t.lru_prev[fid] = t.unas_tail
    t.lru_next[fid] = NO_ID
    if t.unas_tail != NO_ID:
        t.lru_next[t.unas_tail] = fid
    else:
        t.unas_head = fid
    t.unas_tail = fid
    t.flows[fid].flags |= FL_UNASSURED_LISTED


cdef inline void _unas_unlink(ct_table_t* t, uint32_t fid) noexcept nogil:
    cdef uint32_t p = t.lru_prev[fid], n = t.lru_next[fid]
    if p != NO_ID:
        t.lru_next[p] = n
    else:
        t.unas_head = n
    if n != NO_ID:
        t.lru_prev[n] = p
    else:
        t.unas_tail = p
    t.flows[fid].flags &= ~FL_UNASSURED_LISTED


cdef inline void _assure(ct_table_t* t, ct_flow_t* f, uint32_t fid) noexcept nogil:
    f.flags |= FL_ASSURED
    if f.flags & FL_UNASSURED_LISTED:
        _unas_unlink(t, fid)


cdef void ct_delete(ct_table_t* t, uint32_t fid) noexcept nogil:
    cdef ct_flow_t* f = &t.flows[fid]
    cdef ct_key_t k
    cdef int d, s
    if not (f.flags & FL_USED):
        return
    for s in range(2):
        if t.vfid[s] == fid:
            # tags kept by _prefetch_victims (the flow has not changed since: a
            # flow's tuples are fixed for its life, and its deletion ends here)
            t.vfid[s] = NO_ID
            for d in range(2):
                _index_remove(t, <uint64_t>t.vtag[2 * s + d] << 32, fid, d)
            break
    else:
        for d in range(2):
            ct_flow_key(f, d, &k)
            _index_remove(t, _key_hash(t, &k), fid, d)
    if f.flags & FL_UNASSURED_LISTED:
        _unas_unlink(t, fid)
    f.flags = 0
    t.mutations += 1
    t.lru_next[fid] = t.free_head
    t.free_head = fid
    t.n_flows -= 1


# ---------------------------------------------------------------- time

cdef inline uint64_t _timeout(const ct_table_t* t, const ct_flow_t* f) noexcept nogil:
    if f.proto == P_TCP:
        return t.timeout_ns[f.state]
    if f.proto == P_UDP:
        return t.timeout_ns[TO_UDP_STREAM if f.flags & FL_STREAM else TO_UDP]
    if f.proto == P_ICMP or f.proto == P_ICMPV6:
        return t.timeout_ns[TO_ICMP]
    if f.proto == P_SCTP:
        return t.timeout_ns[TO_SCTP]
    return t.timeout_ns[TO_GENERIC]


cdef inline bint _expired(const ct_table_t* t, const ct_flow_t* f, uint64_t now) noexcept nogil:
    if f.epoch == t.epoch16:
        return 0            # touched by this batch: a packet of it is in flight
    return now >= f.last_ns and now - f.last_ns >= _timeout(t, f)


cdef Py_ssize_t _sweep(ct_table_t* t, uint64_t now, Py_ssize_t max_work) noexcept nogil:
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
        if (f.flags & FL_USED) and _expired(t, f, now):
            ct_delete(t, fid)
            t.c[C_EXPIRIES] += 1
            n += 1
    return n


cdef Py_ssize_t ct_expire(Conntrack ct, uint64_t now_ns, Py_ssize_t max_work) noexcept nogil:
    # called between batches: the packets of the last batch are done with
    # their flows, so a new epoch starts (flows they touched may go now)
    ct.t.epoch += 1
    ct.t.epoch16 = <uint16_t>ct.t.epoch
    return _sweep(&ct.t, now_ns, max_work)


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
            h = _key_hash(t, &k)
            t.vtag[2 * t.vslot + d] = <uint32_t>(h >> 32)
            pos = _home(t, h)
            kdp_prefetch_w(&t.index[pos])
            if pos + 8 < t.nslots:
                kdp_prefetch_w(&t.index[pos + 8])
    v3 = t.lru_next[v2]
    if v3 != NO_ID:
        kdp_prefetch_w(&t.flows[v3])    # (IPv6 keys also need line 1: not worth a guess)
        kdp_prefetch(&t.lru_next[v3])


cdef uint32_t _alloc(ct_table_t* t, uint64_t now) noexcept nogil:
    """A free flow record, evicting when full (NO_ID when nothing can go)."""
    cdef uint32_t fid, cand
    cdef int scan
    if t.free_head == NO_ID and t.hwm >= t.capacity:
        # early drop: the oldest non-assured flows first, never one that a
        # packet of the current batch refers to
        cand = t.unas_head
        scan = 0
        while cand != NO_ID and scan < EARLY_DROP_SCAN:
            if t.flows[cand].epoch != t.epoch16:
                if _expired(t, &t.flows[cand], now):
                    t.c[C_EXPIRIES] += 1
                else:
                    t.c[C_EVICTIONS] += 1
                ct_delete(t, cand)
                _prefetch_victims(t)
                break
            # in use by the current batch: it is the most recently seen, to the back
            _unas_unlink(t, cand)
            _unas_push(t, cand)
            cand = t.unas_head
            scan += 1
        if t.free_head == NO_ID:
            # no non-assured flow can go: reclaim expired flows, bounded work
            _sweep(t, now, 256)
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


# ---------------------------------------------------------------- packet keys

cdef inline bint _is_echo(uint8_t ver, uint8_t typ) noexcept nogil:
    if ver == 4:
        return typ == 8 or typ == 0
    return typ == 128 or typ == 129


cdef inline bint _is_echo_request(uint8_t ver, uint8_t typ) noexcept nogil:
    return typ == 8 if ver == 4 else typ == 128


cdef inline uint8_t _echo_other(uint8_t ver, uint8_t typ) noexcept nogil:
    """Echo request type <-> echo reply type."""
    if ver == 4:
        return 0 if typ == 8 else 8
    return 129 if typ == 128 else 128


cdef inline bint _is_icmp_error(uint8_t ver, uint8_t typ) noexcept nogil:
    if ver == 4:
        return typ == 3 or typ == 4 or typ == 5 or typ == 11 or typ == 12
    return 1 <= typ <= 4


cdef uint32_t ct_quote_l4(const pkt_meta_t* p, const uint8_t* pkt) noexcept nogil:
    """Offset (from the frame start) of the L4 header inside an ICMP error quote; 0 if none."""
    cdef uint32_t q = p.quote_off, lim = p.len
    cdef uint8_t nh
    cdef int it
    if q == 0:
        return 0
    if p.ip_ver == 4:
        if q + 20 > lim:
            return 0
        if ld16(pkt + q + 6) & 0x1FFF:
            return 0
        q += (pkt[q] & 15) * 4
        return q if q <= lim else 0
    if q + 40 > lim:
        return 0
    nh = pkt[q + 6]
    q += 40
    for it in range(8):
        if nh == 0 or nh == 43 or nh == 60:
            if q + 8 > lim:
                return 0
            nh = pkt[q]
            q += (pkt[q + 1] + 1) * 8
        elif nh == 44:
            if q + 8 > lim or (ld16(pkt + q + 2) & 0xFFF8):
                return 0
            nh = pkt[q]
            q += 8
        elif nh == 51:
            if q + 8 > lim:
                return 0
            nh = pkt[q]
            q += (pkt[q + 1] + 2) * 4
        else:
            return q if q <= lim else 0
    return 0


cdef inline void _key_addrs(ct_key_t* k, uint8_t ver, uint32_t src4, uint32_t dst4,
                            const uint8_t* src6, const uint8_t* dst6) noexcept nogil:
    if ver == 4:
        k.src[0] = src4
        k.dst[0] = dst4
    else:
        memcpy(k.src, src6, 16)
        memcpy(k.dst, dst6, 16)


cdef int ct_pkt_key(const pkt_meta_t* p, const uint8_t* pkt, ct_key_t* k) noexcept nogil:
    """The lookup key of packet p (pkt: its frame). Returns a K_* kind."""
    cdef uint8_t proto = p.proto, ver = p.ip_ver
    cdef uint32_t ql4
    memset(k, 0, sizeof(ct_key_t))
    k.ver = ver
    if ver != 4 and ver != 6:
        return K_NONE
    if p.frag == FRAG_LATER:
        k.proto = proto
        _key_addrs(k, ver, p.src4, p.dst4, p.src6, p.dst6)
        return K_FRAG
    if (proto == P_ICMP and ver == 4) or (proto == P_ICMPV6 and ver == 6):
        if _is_echo(ver, p.icmp_type):
            k.sport = p.icmp_id
            k.dport = p.icmp_type
        elif _is_icmp_error(ver, p.icmp_type) and p.q_proto != 0 and p.quote_off != 0:
            # key of the flow the quoted packet belongs to: the inverse of the quote
            k.proto = p.q_proto
            _key_addrs(k, ver, p.q_dst4, p.q_src4, p.q_dst6, p.q_src6)
            if p.q_proto == P_TCP or p.q_proto == P_UDP or p.q_proto == P_SCTP:
                k.sport = p.q_dport
                k.dport = p.q_sport
            elif p.q_proto == proto:
                ql4 = ct_quote_l4(p, pkt)
                if ql4 == 0 or ql4 + 8 > p.len or not _is_echo(ver, pkt[ql4]):
                    return K_NONE
                k.sport = ld16(pkt + ql4 + 4)
                k.dport = _echo_other(ver, pkt[ql4])
            return K_ERROR
        else:
            return K_NONE
    elif proto == P_TCP or proto == P_UDP or proto == P_SCTP:
        k.sport = p.sport
        k.dport = p.dport
    k.proto = proto
    _key_addrs(k, ver, p.src4, p.dst4, p.src6, p.dst6)
    return K_FLOW


cdef inline uint32_t _ip_bytes(const pkt_meta_t* p, const uint8_t* pkt) noexcept nogil:
    cdef uint32_t l3 = p.l3_off
    if l3 + 6 <= p.len:
        if p.ip_ver == 4:
            return ld16(pkt + l3 + 2)
        return 40 + <uint32_t>ld16(pkt + l3 + 4)
    return p.wire_len - l3 if p.wire_len > l3 else 0


# ---------------------------------------------------------------- fragments

cdef inline uint32_t _frag_slot(const ct_table_t* t, const ct_key_t* k, uint32_t frag_id) noexcept nogil:
    cdef uint64_t h = mix64(<uint64_t>frag_id ^ (<uint64_t>k.proto << 32) ^ t.seed)
    h = mix64(h ^ ((<uint64_t>k.src[0] << 32) | k.dst[0]))
    if k.ver == 6:
        h = mix64(h ^ ((<uint64_t>k.src[1] << 32) | k.dst[1]) ^ ((<uint64_t>k.src[2] << 32) | k.dst[2]) * 3
                 ^ ((<uint64_t>k.src[3] << 32) | k.dst[3]) * 5)
    return <uint32_t>h & t.frag_mask


cdef void _frag_note(ct_table_t* t, const pkt_meta_t* p, const ct_key_t* k, uint32_t fid,
                     int dir, uint64_t now) noexcept nogil:
    cdef ct_frag_t* e = &t.frags[_frag_slot(t, k, p.frag_id)]
    memcpy(e.src, k.src, 16)
    memcpy(e.dst, k.dst, 16)
    e.frag_id = p.frag_id
    e.flow_id = fid
    e.ts_ns = now
    e.proto = k.proto
    e.ver = k.ver
    e.dir = <uint8_t>dir


cdef inline bint _addr_eq(const ct_flow_t* f, int dir, const ct_key_t* k) noexcept nogil:
    cdef ct_key_t fk
    ct_flow_key(f, dir, &fk)
    return memcmp(fk.src, k.src, 16) == 0 and memcmp(fk.dst, k.dst, 16) == 0


cdef uint32_t _frag_find(ct_table_t* t, const pkt_meta_t* p, const ct_key_t* k, uint64_t now,
                         int* dir) noexcept nogil:
    cdef ct_frag_t* e = &t.frags[_frag_slot(t, k, p.frag_id)]
    cdef ct_flow_t* f
    if (e.flow_id == NO_ID or e.frag_id != p.frag_id or e.proto != k.proto or e.ver != k.ver
            or memcmp(e.src, k.src, 16) != 0 or memcmp(e.dst, k.dst, 16) != 0):
        return NO_ID
    if now >= e.ts_ns and now - e.ts_ns > t.timeout_ns[TO_FRAG]:
        return NO_ID
    f = &t.flows[e.flow_id]
    if not (f.flags & FL_USED) or f.proto != k.proto or not _addr_eq(f, e.dir, k):
        return NO_ID
    dir[0] = e.dir
    return e.flow_id


# ---------------------------------------------------------------- per-packet state

cdef inline uint32_t* _counters_hi(ct_flow_t* f) noexcept nogil:
    """High halves: pkts_hi[0..1], bytes_hi[2..3] (in whichever line the version leaves free)."""
    return &f.a6[0] if f.ip_ver == 4 else &f.a4[0]


cdef inline void _account(ct_flow_t* f, int dir, const pkt_meta_t* p, const uint8_t* pkt) noexcept nogil:
    cdef uint32_t n = _ip_bytes(p, pkt)
    cdef uint32_t b = f.bytes_lo[dir] + n
    f.pkts_lo[dir] += 1
    if f.pkts_lo[dir] == 0:
        _counters_hi(f)[dir] += 1
    if b < n:
        _counters_hi(f)[2 + dir] += 1
    f.bytes_lo[dir] = b


cdef inline uint64_t _pkts(ct_flow_t* f, int dir) noexcept nogil:
    return (<uint64_t>_counters_hi(f)[dir] << 32) | f.pkts_lo[dir]


cdef inline uint64_t _bytes(ct_flow_t* f, int dir) noexcept nogil:
    return (<uint64_t>_counters_hi(f)[2 + dir] << 32) | f.bytes_lo[dir]


cdef inline int _hit(ct_table_t* t, ct_flow_t* f, uint32_t fid, int dir, pkt_meta_t* p,
                     const uint8_t* pkt, uint64_t now) noexcept nogil:
    """A packet of flow fid in direction dir: state, counters, verdict fields."""
    cdef uint8_t old, new
    if _expired(t, f, now):
        ct_delete(t, fid)
        t.c[C_EXPIRIES] += 1
        return HIT_GONE
    if f.proto == P_TCP:
        old = f.state
        new = _tcp_tr[(dir * N_TKIND + _tcp_kind[p.tcp_flags & 0x37]) * 10 + old]
        if new == S_IV:
            t.c[C_INVALID] += 1
            f.epoch = t.epoch16
            p.flow_id = fid
            p.svc_port = f.svc_port
            p.ct_state = CT_INVALID
            if t.drop_invalid:
                drop(p, ST_CONNTRACK, R_CT_INVALID)
            return HIT_OK
        if new == TCP_SYN_SENT and dir == 0 and (old == TCP_TIME_WAIT or old == TCP_CLOSE):
            # a new connection reusing the tuple of a closed one
            ct_delete(t, fid)
            t.c[C_REOPENED] += 1
            return HIT_GONE
        if new != S_IG:
            f.state = new
            if dir == 1:
                f.flags |= FL_SEEN_REPLY
            if new == TCP_ESTABLISHED and (f.flags & FL_SEEN_REPLY) and not (f.flags & FL_ASSURED):
                _assure(t, f, fid)
            f.last_ns = now
    else:
        if dir == 1:
            if f.flags & FL_SEEN_REPLY:
                f.flags |= FL_STREAM
            else:
                f.flags |= FL_SEEN_REPLY
                _assure(t, f, fid)
        elif f.flags & FL_SEEN_REPLY:
            f.flags |= FL_STREAM
        f.last_ns = now
    _account(f, dir, p, pkt)
    f.epoch = t.epoch16
    p.flow_id = fid
    p.svc_port = f.svc_port
    p.ct_state = CT_REPLY if dir else CT_ESTABLISHED
    return HIT_OK


cdef inline void _related(ct_table_t* t, ct_flow_t* f, uint32_t fid, pkt_meta_t* p) noexcept nogil:
    f.epoch = t.epoch16
    p.flow_id = fid
    p.svc_port = f.svc_port
    p.ct_state = CT_RELATED
    t.c[C_RELATED] += 1


cdef void _one(ct_table_t* t, pkt_meta_t* p, const uint8_t* pkt, int kind, const ct_key_t* k,
               uint64_t h, uint32_t pos, uint64_t now) noexcept nogil:
    """Resolve one packet whose index probe starts at pos (lookup and re-lookup)."""
    cdef int dir = 0
    cdef uint32_t fid
    cdef ct_flow_t* f
    if kind == K_FRAG:
        fid = _frag_find(t, p, k, now, &dir)
        if fid != NO_ID:
            f = &t.flows[fid]
            t.c[C_FRAG_HITS] += 1
            _account(f, dir, p, pkt)
            f.epoch = t.epoch16
            p.flow_id = fid
            p.svc_port = f.svc_port
            p.ct_state = CT_REPLY if dir else CT_ESTABLISHED
        else:
            p.ct_state = CT_NEW
        return
    fid = _find_from(t, k, h, pos, &dir)
    if fid != NO_ID:
        f = &t.flows[fid]
        if kind == K_ERROR:
            if _expired(t, f, now):
                p.ct_state = CT_NONE
            else:
                _related(t, f, fid, p)
            return
        if _hit(t, f, fid, dir, p, pkt, now) == HIT_OK:
            t.c[C_HITS] += 1
            if p.frag == FRAG_FIRST:
                _frag_note(t, p, k, fid, dir, now)
            return
    if kind == K_ERROR:
        p.ct_state = CT_NONE
        return
    p.ct_state = CT_NEW


cdef inline void _probe_tag(ct_table_t* t, uint64_t h, uint32_t* pos, bint both_lines) noexcept nogil:
    """Advance pos to the first slot whose tag matches h (or an empty slot) and
    prefetch the flow record it names (its first cache line, or both)."""
    cdef uint32_t tag = <uint32_t>(h >> 32), i = pos[0]
    cdef uint64_t s
    while True:
        s = t.index[i]
        if s == EMPTY or <uint32_t>(s >> 32) == tag:
            break
        i += 1
        if i == t.nslots:
            i = 0
    pos[0] = i
    if s != EMPTY:
        kdp_prefetch_w(&t.flows[(<uint32_t>s) >> 1])
        if both_lines:
            kdp_prefetch_w(<uint8_t*>&t.flows[(<uint32_t>s) >> 1] + 64)


cdef inline void _prefetch_inverse(ct_table_t* t, const ct_key_t* k) noexcept nogil:
    cdef ct_key_t r
    memcpy(&r, k, sizeof(ct_key_t))
    memcpy(r.src, k.dst, 16)
    memcpy(r.dst, k.src, 16)
    if k.proto == P_ICMP or k.proto == P_ICMPV6:
        r.dport = _echo_other(k.ver, <uint8_t>k.dport)
    else:
        r.sport = k.dport
        r.dport = k.sport
    _prefetch_run(t, _home(t, _key_hash(t, &r)))


cdef inline uint64_t _now(ct_table_t* t, const pkt_meta_t* p, uint64_t now_ns) noexcept nogil:
    # A packet's time is its timestamp, but never before what earlier batches saw.
    if now_ns != CT_PACKET_CLOCK:
        return now_ns
    if p.ts_ns > t.clock:
        t.clock = p.ts_ns
    return p.ts_ns if p.ts_ns > t.clock_base else t.clock_base


cdef inline bint _fast_v4(const pkt_meta_t* p) noexcept nogil:
    """A packet whose key is its own IPv4 5-tuple (ct_pkt_key would return K_FLOW
    with ports): built inline by the stage, without the general key code."""
    return (p.ip_ver == 4 and p.frag == FRAG_NONE
            and (p.proto == P_TCP or p.proto == P_UDP or p.proto == P_SCTP))


cdef void ct_lookup_batch(Conntrack ct, Batch b, uint64_t now_ns) noexcept nogil:
    # A software pipeline over chunks of CHUNK packets, three passes each:
    # (1) key, hash and prefetch of the home index slot of every packet of
    # chunk c; (2) tag probe in the index and prefetch of the flow record it
    # names, chunk c - 1; (3) resolve (verify the key, state step, counters),
    # chunk c - 2, in batch order. Each pass is a tight loop, so many index
    # and record misses (and, in a VM, their page walks) are in flight at once,
    # and a whole chunk of work separates a prefetch from its use.
    # IPv4 TCP/UDP/SCTP packets (not later fragments) take an inline path: key
    # from the metadata, lookup, state step; everything else goes through
    # ct_pkt_key and _one. Lookup/hit/miss counts are kept in locals.
    cdef ct_table_t* t = &ct.t
    cdef Py_ssize_t n = b.count, nch, ci, cc, base, m, i, q
    cdef ct_key_t keys[NCS * CHUNK]
    cdef uint64_t hs[NCS * CHUNK]
    cdef uint32_t pos[NCS * CHUNK]
    cdef int kinds[NCS * CHUNK]
    cdef uint64_t ka[NCS * CHUNK]
    cdef uint32_t kp[NCS * CHUNK]
    cdef uint16_t kpv[NCS * CHUNK]
    cdef uint64_t muts[NCS]
    cdef int dir
    cdef uint32_t fid
    cdef uint64_t n_look = 0, n_hit = 0, n_miss = 0
    cdef pkt_meta_t* p
    cdef ct_key_t* k
    t.epoch += 1
    t.epoch16 = <uint16_t>t.epoch
    t.clock_base = t.clock
    nch = (n + CHUNK - 1) // CHUNK
    for ci in range(nch + 2 * CDIST):
        # pass 1: chunk ci
        if ci < nch:
            base = ci * CHUNK
            m = n - base if n - base < CHUNK else CHUNK
            q = (ci % NCS) * CHUNK
            for i in range(q, q + m):
                p = &b.m[base + i - q]
                kinds[i] = K_SKIP
                if p.verdict == V_PENDING:
                    k = &keys[i]
                    if _fast_v4(p):
                        p.flow_id = NO_ID
                        kinds[i] = K_FLOW4
                        ka[i] = p.src4 | (<uint64_t>p.dst4 << 32)
                        kp[i] = p.sport | (<uint32_t>p.dport << 16)
                        kpv[i] = p.proto | (4 << 8)
                        hs[i] = _hash4(t.seed, p.src4, p.dst4, p.sport, p.dport, p.proto)
                        pos[i] = _home(t, hs[i])
                        _prefetch_run(t, pos[i])
                    elif p.ip_ver != 4 and p.ip_ver != 6:
                        p.ct_state = CT_NONE
                    else:
                        p.flow_id = NO_ID
                        kinds[i] = ct_pkt_key(p, b.buf + p.off, k)
                        if kinds[i] == K_FLOW or kinds[i] == K_ERROR:
                            hs[i] = _key_hash(t, k)
                            pos[i] = _home(t, hs[i])
                            _prefetch_run(t, pos[i])
        # pass 2: chunk ci - CDIST
        cc = ci - CDIST
        if 0 <= cc < nch:
            base = cc * CHUNK
            m = n - base if n - base < CHUNK else CHUNK
            q = (cc % NCS) * CHUNK
            for i in range(q, q + m):
                if kinds[i] == K_FLOW4:
                    _probe_tag(t, hs[i], &pos[i], 0)
                elif kinds[i] == K_FLOW or kinds[i] == K_ERROR:
                    _probe_tag(t, hs[i], &pos[i], keys[i].ver == 6)
            muts[cc % NCS] = t.mutations
        # pass 3: chunk ci - 2 * CDIST
        cc = ci - 2 * CDIST
        if 0 <= cc < nch:
            base = cc * CHUNK
            m = n - base if n - base < CHUNK else CHUNK
            q = (cc % NCS) * CHUNK
            for i in range(q, q + m):
                if kinds[i] == K_SKIP:
                    continue
                p = &b.m[base + i - q]
                if kinds[i] == K_NONE:
                    p.ct_state = CT_NONE
                    continue
                n_look += 1
                if muts[cc % NCS] != t.mutations:
                    pos[i] = _home(t, hs[i])    # the index moved since the probe
                if kinds[i] == K_FLOW4:
                    fid = _find4(t, ka[i], kp[i], kpv[i], hs[i], pos[i], &dir)
                    if fid != NO_ID and _hit(t, &t.flows[fid], fid, dir, p, b.buf + p.off,
                                             _now(t, p, now_ns)) == HIT_OK:
                        n_hit += 1
                        continue
                    p.ct_state = CT_NEW
                    n_miss += 1
                    # warm the reply tuple's slot (see below), from the words: a
                    # key built here would be read back wider than it was written
                    _prefetch_run(t, _home(t, _hash4(t.seed, <uint32_t>(ka[i] >> 32), <uint32_t>ka[i],
                                                     <uint16_t>(kp[i] >> 16), <uint16_t>kp[i],
                                                     <uint8_t>kpv[i])))
                    continue
                if kinds[i] == K_FLOW:
                    # inline: find, then the hit's state step (what _one does for K_FLOW)
                    fid = _find_from(t, &keys[i], hs[i], pos[i], &dir)
                    if fid != NO_ID and _hit(t, &t.flows[fid], fid, dir, p, b.buf + p.off,
                                             _now(t, p, now_ns)) == HIT_OK:
                        n_hit += 1
                        if p.frag == FRAG_FIRST:
                            _frag_note(t, p, &keys[i], fid, dir, _now(t, p, now_ns))
                        continue
                    p.ct_state = CT_NEW
                else:
                    _one(t, p, b.buf + p.off, kinds[i], &keys[i], hs[i], pos[i], _now(t, p, now_ns))
                if p.ct_state == CT_NEW:
                    n_miss += 1
                    if kinds[i] == K_FLOW:
                        # the slow path will check the reply tuple; without NAT it is
                        # the inverse of this one: warm its home slot now
                        _prefetch_inverse(t, &keys[i])
    t.c[C_LOOKUPS] += n_look
    t.c[C_HITS] += n_hit
    t.c[C_MISSES] += n_miss


# ---------------------------------------------------------------- new flows

cdef inline bint _ports_tracked(uint8_t proto) noexcept nogil:
    return proto == P_TCP or proto == P_UDP or proto == P_SCTP or proto == P_ICMP or proto == P_ICMPV6


cdef inline uint16_t* _snat_field(ct_key_t* r) noexcept nogil:
    """The field of a reply tuple that a source-port translation changes."""
    if r.proto == P_ICMP or r.proto == P_ICMPV6:
        return &r.sport         # echo identifier
    return &r.dport


cdef uint32_t _new_flow(ct_table_t* t, const ct_key_t* k, uint64_t h, const nat_spec_t* spec,
                        uint8_t state, uint64_t now, uint16_t* reason,
                        const uint64_t* hr_swapped=NULL) noexcept nogil:
    """Create the flow of key k (known absent). NO_ID with *reason when refused.
    hr_swapped: the hash of k with addresses and ports swapped when the caller has
    it (the reply tuple of a TCP/UDP/SCTP flow without translation)."""
    cdef ct_key_t r
    cdef uint64_t hr
    cdef uint8_t flags = NAT_NONE
    cdef uint16_t lo, hi, orig_port
    cdef uint16_t* pf
    cdef uint32_t size, start, tries, nn, fid
    cdef int dir
    cdef bint found
    cdef ct_flow_t* f
    if spec != NULL and (spec.ip_ver == 0 or spec.ip_ver == k.ver):
        flags = spec.flags
    # the reply tuple: from the (translated) destination to the (translated) source
    # (built field by field: a copy of k as a whole would read its narrow stores
    # back with wide loads, which the store buffer cannot forward)
    memset(&r, 0, sizeof(ct_key_t))
    r.proto = k.proto
    r.ver = k.ver
    if k.ver == 4:
        r.src[0] = spec.dnat4 if flags & NAT_DNAT else k.dst[0]
        r.dst[0] = spec.snat4 if flags & NAT_SNAT else k.src[0]
    else:
        if flags & NAT_DNAT:
            memcpy(r.src, spec.dnat6, 16)
        else:
            memcpy(r.src, k.dst, 16)
        if flags & NAT_SNAT:
            memcpy(r.dst, spec.snat6, 16)
        else:
            memcpy(r.dst, k.src, 16)
    if k.proto == P_ICMP or k.proto == P_ICMPV6:
        r.sport = k.sport
        r.dport = _echo_other(k.ver, <uint8_t>k.dport)
    else:
        r.sport = spec.dnat_port if (flags & NAT_DNAT) and spec.dnat_port != 0 else k.dport
        r.dport = k.sport
    pf = _snat_field(&r)
    if hr_swapped != NULL and flags == NAT_NONE and k.proto != P_ICMP and k.proto != P_ICMPV6:
        hr = hr_swapped[0]
    else:
        hr = _key_hash(t, &r)
    found = _find_from(t, &r, hr, _home(t, hr), &dir) != NO_ID
    if (flags & NAT_SNAT_PORT) or found:
        if not _ports_tracked(k.proto):
            t.c[C_PORTS_EXHAUSTED] += 1
            reason[0] = R_NAT_PORTS_EXHAUSTED
            return NO_ID
        if (flags & NAT_SNAT_PORT) and spec.snat_port_lo != 0 and spec.snat_port_lo <= spec.snat_port_hi:
            lo = spec.snat_port_lo
            hi = spec.snat_port_hi
        else:
            lo = t.port_lo
            hi = t.port_hi
        size = <uint32_t>hi - lo + 1
        tries = size if size < t.nat_max_tries else t.nat_max_tries
        start = <uint32_t>((h >> 16) % size)
        orig_port = pf[0]
        found = 1
        for nn in range(tries):
            pf[0] = <uint16_t>(lo + (start + nn) % size)
            hr = _key_hash(t, &r)
            if _find_from(t, &r, hr, _home(t, hr), &dir) == NO_ID:
                found = 0
                break
        if found:
            t.c[C_PORTS_EXHAUSTED] += 1
            reason[0] = R_NAT_PORTS_EXHAUSTED
            return NO_ID
        if not (flags & NAT_SNAT_PORT) and pf[0] != orig_port:
            t.c[C_PORT_REMAPS] += 1
    fid = _alloc(t, now)
    if fid == NO_ID:
        t.c[C_TABLE_FULL] += 1
        reason[0] = R_CT_TABLE_FULL
        return NO_ID
    f = &t.flows[fid]
    memset(f, 0, sizeof(ct_flow_t))
    f.proto = k.proto
    f.ip_ver = k.ver
    _store_key(f, 0, k)
    _store_key(f, 1, &r)
    f.state = state
    f.flags = FL_USED
    f.nat = flags
    if flags & NAT_DNAT:
        f.flags |= FL_DNAT
    if flags & NAT_SNAT:
        f.flags |= FL_SNAT
    # does the flow rewrite anything? (O == inverse of R means no)
    if ((r.src[0] != k.dst[0] or r.dst[0] != k.src[0] if k.ver == 4 else
            memcmp(r.src, k.dst, 16) != 0 or memcmp(r.dst, k.src, 16) != 0)
            or (k.proto != P_ICMP and k.proto != P_ICMPV6 and (r.sport != k.dport or r.dport != k.sport))
            or ((k.proto == P_ICMP or k.proto == P_ICMPV6) and r.sport != k.sport)):
        f.flags |= FL_NAT
    f.last_ns = now
    f.epoch = t.epoch16
    f.svc_port = spec.svc_port if spec != NULL else NO_ID
    f.backend = spec.backend if spec != NULL else NO_ID
    _index_insert(t, h, fid, 0)
    _index_insert(t, hr, fid, 1)
    _unas_push(t, fid)
    t.n_flows += 1
    t.c[C_INSERTS] += 1
    return fid


cdef uint32_t ct_create(Conntrack ct, Batch b, Py_ssize_t i, const nat_spec_t* spec,
                        uint64_t now_ns) noexcept nogil:
    cdef ct_table_t* t = &ct.t
    cdef pkt_meta_t* p
    cdef const uint8_t* pkt
    cdef ct_key_t k
    cdef int kind, dir = 0
    cdef uint64_t h
    cdef uint32_t fid
    cdef uint8_t state = 0, fl
    cdef uint16_t reason = 0
    if i < 0 or i >= b.count:
        return NO_ID
    p = &b.m[i]
    if p.verdict != V_PENDING:
        return NO_ID
    if p.flow_id != NO_ID and p.ct_state != CT_NEW:
        return p.flow_id
    now_ns = _now(t, p, now_ns)
    pkt = b.buf + p.off
    kind = ct_pkt_key(p, pkt, &k)
    if kind == K_NONE:
        p.ct_state = CT_NONE
        return NO_ID
    if kind == K_FRAG:
        fid = _frag_find(t, p, &k, now_ns, &dir)
        if fid == NO_ID:
            t.c[C_FRAG_NO_FLOW] += 1
            drop(p, ST_CONNTRACK, R_FRAG_NO_FLOW)
            return NO_ID
        _one(t, p, pkt, kind, &k, 0, 0, now_ns)
        return p.flow_id
    h = _key_hash(t, &k)
    # the flow may exist by now (an earlier packet of this batch created it)
    _one(t, p, pkt, kind, &k, h, _home(t, h), now_ns)
    if kind == K_ERROR or p.flow_id != NO_ID:
        if p.flow_id != NO_ID and kind == K_FLOW:
            t.c[C_CREATE_HITS] += 1
        return p.flow_id
    # may this packet open a flow?
    if k.proto == P_TCP:
        fl = p.tcp_flags & 0x37
        state = S_IV
        if _tcp_valid[fl] and not (fl & 4):
            if (fl & 2) and not (fl & 16):
                state = TCP_SYN_SENT
            elif fl == 16 or fl == (16 | 32):
                if t.tcp_loose:
                    state = TCP_ESTABLISHED
        if state == S_IV:
            t.c[C_INVALID] += 1
            p.ct_state = CT_INVALID
            if t.drop_invalid:
                drop(p, ST_CONNTRACK, R_CT_INVALID)
            return NO_ID
    elif k.proto == P_ICMP or k.proto == P_ICMPV6:
        if not _is_echo_request(k.ver, <uint8_t>k.dport):
            t.c[C_INVALID] += 1
            p.ct_state = CT_INVALID
            if t.drop_invalid:
                drop(p, ST_CONNTRACK, R_CT_INVALID)
            return NO_ID
    fid = _new_flow(t, &k, h, spec, state, now_ns, &reason)
    if fid == NO_ID:
        drop(p, ST_NAT if reason == R_NAT_PORTS_EXHAUSTED else ST_CONNTRACK, reason)
        return NO_ID
    _account(&t.flows[fid], 0, p, pkt)
    p.flow_id = fid
    p.svc_port = t.flows[fid].svc_port
    p.ct_state = CT_NEW
    if p.frag == FRAG_FIRST:
        _frag_note(t, p, &k, fid, 0, now_ns)
    return fid


# ---------------------------------------------------------------- flush

cdef bint _flush_match(const ct_flow_t* f, const flush_t* q) noexcept nogil:
    cdef ct_key_t o, r
    if q.mode == 0:
        return 1
    if q.mode == 3:
        return f.svc_port == q.svc_port
    if f.ip_ver != q.ver or (q.proto != 0 and f.proto != q.proto):
        return 0
    ct_flow_key(f, 0, &o)
    ct_flow_key(f, 1, &r)
    if q.mode == 1:
        return (memcmp(o.src, q.addr, 16) == 0 or memcmp(o.dst, q.addr, 16) == 0
                or memcmp(r.src, q.addr, 16) == 0 or memcmp(r.dst, q.addr, 16) == 0)
    # backend: the reply comes from it
    return memcmp(r.src, q.addr, 16) == 0 and (not q.has_port or r.sport == q.port)


cdef Py_ssize_t _flush(ct_table_t* t, const flush_t* q) noexcept nogil:
    cdef uint32_t fid
    cdef Py_ssize_t n = 0
    for fid in range(t.hwm):
        if (t.flows[fid].flags & FL_USED) and _flush_match(&t.flows[fid], q):
            ct_delete(t, fid)
            n += 1
    t.c[C_FLUSHED] += n
    return n


# ---------------------------------------------------------------- Python API

cdef void _addr_words(object addr, uint8_t* ver, uint32_t* out) except *:
    a = ipaddress.ip_address(addr) if not isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)) else addr
    memset(out, 0, 16)
    cdef bytes raw
    if a.version == 4:
        ver[0] = 4
        out[0] = int(a)
    else:
        ver[0] = 6
        raw = a.packed
        memcpy(out, <const char*>raw, 16)


cdef object _addr_str(const uint32_t* w, uint8_t ver):
    if ver == 4:
        return str(ipaddress.IPv4Address(w[0]))
    return str(ipaddress.IPv6Address((<const char*>w)[:16]))


cdef void _fill_spec(nat_spec_t* s, object spec) except *:
    """nat_spec_t from a dict (keys as the struct's fields; addresses as strings/ints)."""
    cdef uint8_t v
    cdef uint32_t w[4]
    memset(s, 0, sizeof(nat_spec_t))
    s.svc_port = NO_ID
    s.backend = NO_ID
    get = spec.get
    s.flags = get("flags", 0)
    s.ip_ver = get("ip_ver", 0)
    for name in ("dnat", "snat"):
        val = get(name)
        if val is None:
            continue
        _addr_words(val, &v, w)
        if s.ip_ver == 0:
            s.ip_ver = v
        elif s.ip_ver != v:
            raise ConntrackConfigError(f"nat spec: {name} {val} is not IPv{s.ip_ver}")
        if name == "dnat":
            if v == 4:
                s.dnat4 = w[0]
            else:
                memcpy(s.dnat6, w, 16)
        else:
            if v == 4:
                s.snat4 = w[0]
            else:
                memcpy(s.snat6, w, 16)
    s.dnat_port = get("dnat_port", 0)
    lo, hi = get("snat_ports", (0, 0))
    if not (0 <= lo <= hi <= 65535):
        raise ConntrackConfigError(f"nat spec: bad snat_ports {lo}..{hi}")
    s.snat_port_lo = lo
    s.snat_port_hi = hi
    sp = get("svc_port")
    s.svc_port = NO_ID if sp is None else sp
    be = get("backend")
    s.backend = NO_ID if be is None else be


def _tuple_arrays(name, src, dst, sport, dport, proto):
    """IPv4 tuples as contiguous arrays of the core's types, all of one length."""
    arrays = (np.ascontiguousarray(src, dtype=np.uint32), np.ascontiguousarray(dst, dtype=np.uint32),
              np.ascontiguousarray(sport, dtype=np.uint16), np.ascontiguousarray(dport, dtype=np.uint16),
              np.ascontiguousarray(proto, dtype=np.uint8))
    if len({a.shape[0] for a in arrays}) != 1:
        raise ValueError(f"{name}: arrays of different lengths")
    return arrays


PACKET_CLOCK = CT_PACKET_CLOCK


def _mem_available():
    """Bytes of memory the kernel reports available (MemAvailable), None if unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


cdef class Conntrack:
    """The flow table. See the module docstring for the stage contracts.

    Conntrack(capacity=1048576, *, timeouts=None, drop_invalid=False,
              tcp_loose=True, port_range=(1024, 65535), nat_max_tries=128,
              frag_slots=4096, seed=..., prefault=False)

    ``timeouts``: {name: seconds} overriding TIMEOUT_DEFAULTS (nf_conntrack
    sysctl names, e.g. "tcp_timeout_established": 86400 as kube-proxy sets).
    ``port_range``: where a source port is chosen when a reply tuple collides
    and the flow asked for no explicit range. ``nat_max_tries``: ports tried
    per new flow before R_NAT_PORTS_EXHAUSTED (all of them when the range is
    smaller).

    ``prefault``: back the flow records and their list links with memory when
    the table is built (on transparent huge pages where the kernel grants
    them) instead of on first use. New flows then never take a page fault or
    wait for page zeroing (in a VM whose host backs memory lazily that is most
    of the cost of a new flow on a never-used record page); the table costs
    its full size (``memory_bytes``) in resident memory from the start, and
    construction takes the zeroing time (~3 ms per 262,144 flows when the
    memory is already backed by the host, up to ~20x more on first use).
    MemoryError when the memory cannot be had or the table is larger than the
    memory the kernel reports available. The default (False) keeps
    construction cheap for tools and tests; the Dataplane prefaults (a node
    reserves its flow memory up front). The index is always touched at
    construction (it is filled with empty slots).
    """

    def __cinit__(self):
        memset(&self.t, 0, sizeof(ct_table_t))

    def __init__(self, capacity=1 << 20, *, timeouts=None, drop_invalid=False, tcp_loose=True,
                 port_range=(1024, 65535), nat_max_tries=128, frag_slots=4096,
                 seed=0x6B64705F63742121, prefault=False):
        if not isinstance(capacity, int) or not (1 <= capacity <= CT_MAX_CAPACITY):
            raise ConntrackConfigError(f"conntrack capacity must be 1..{CT_MAX_CAPACITY}, got {capacity!r}")
        lo, hi = port_range
        if not (1 <= lo <= hi <= 65535):
            raise ConntrackConfigError(f"conntrack port_range must be within 1..65535, got {port_range!r}")
        if not (1 <= nat_max_tries <= 65536):
            raise ConntrackConfigError(f"nat_max_tries must be 1..65536, got {nat_max_tries!r}")
        if frag_slots < 1 or frag_slots > (1 << 20) or (frag_slots & (frag_slots - 1)):
            raise ConntrackConfigError(f"frag_slots must be a power of two 1..1048576, got {frag_slots!r}")
        tos = dict(TIMEOUT_DEFAULTS)
        for name, val in (timeouts or {}).items():
            if name not in tos:
                raise ConntrackConfigError(f"unknown conntrack timeout {name!r} (known: {', '.join(tos)})")
            if not isinstance(val, (int, float)) or val < 0 or val > 10 ** 9:
                raise ConntrackConfigError(f"conntrack timeout {name} must be 0..1e9 seconds, got {val!r}")
            tos[name] = val
        if prefault:
            # reserving more than the machine has would summon the OOM killer, not fail
            need = capacity * (sizeof(ct_flow_t) + 2 * sizeof(uint32_t) + 3 * sizeof(uint64_t))
            avail = _mem_available()
            if avail is not None and need > avail:
                raise MemoryError(f"conntrack: reserving {capacity} flows (prefault) needs "
                                  f"{need >> 20} MiB, {avail >> 20} MiB available")
        self._free()
        cdef ct_table_t* t = &self.t
        memset(t, 0, sizeof(ct_table_t))
        t.capacity = capacity
        t.nslots = 3 * capacity if capacity >= 4 else 12
        t.frag_mask = frag_slots - 1
        t.flows = <ct_flow_t*>kdp_big_alloc(capacity * sizeof(ct_flow_t))
        t.index = <uint64_t*>kdp_big_alloc(t.nslots * sizeof(uint64_t))
        t.lru_prev = <uint32_t*>kdp_big_alloc(capacity * sizeof(uint32_t))
        t.lru_next = <uint32_t*>kdp_big_alloc(capacity * sizeof(uint32_t))
        t.frags = <ct_frag_t*>kdp_big_alloc(frag_slots * sizeof(ct_frag_t))
        if not (t.flows and t.index and t.lru_prev and t.lru_next and t.frags):
            self._free()
            raise MemoryError(f"conntrack: cannot allocate a table of {capacity} flows")
        cdef bint ok = True
        if prefault:
            with nogil:
                ok = (kdp_big_populate(t.flows, <size_t>t.capacity * sizeof(ct_flow_t)) == 0
                      and kdp_big_populate(t.lru_prev, <size_t>t.capacity * sizeof(uint32_t)) == 0
                      and kdp_big_populate(t.lru_next, <size_t>t.capacity * sizeof(uint32_t)) == 0)
            if not ok:
                self._free()
                raise MemoryError(f"conntrack: cannot reserve the memory of {capacity} flows (prefault)")
        memset(t.index, 0xFF, t.nslots * sizeof(uint64_t))
        memset(t.frags, 0xFF, frag_slots * sizeof(ct_frag_t))
        t.frag_mask = frag_slots - 1
        t.hwm = 0
        t.free_head = NO_ID
        t.unas_head = NO_ID
        t.unas_tail = NO_ID
        t.port_lo = lo
        t.port_hi = hi
        t.nat_max_tries = nat_max_tries
        t.drop_invalid = bool(drop_invalid)
        t.tcp_loose = bool(tcp_loose)
        t.seed = seed & 0xFFFFFFFFFFFFFFFF
        t.epoch = 0
        t.epoch16 = 0
        t.vfid[0] = NO_ID
        t.vfid[1] = NO_ID
        for name, slots in _TIMEOUT_SLOT.items():
            for s in slots:
                t.timeout_ns[s] = <uint64_t>(tos[name] * 1_000_000_000)
        self.settings = {
            "capacity": capacity, "timeouts": tos, "drop_invalid": bool(drop_invalid),
            "tcp_loose": bool(tcp_loose), "port_range": (lo, hi), "nat_max_tries": nat_max_tries,
            "frag_slots": frag_slots, "seed": t.seed, "prefault": bool(prefault),
        }

    cdef _free(self):
        cdef ct_table_t* t = &self.t
        kdp_big_free(t.flows, t.capacity * sizeof(ct_flow_t))
        kdp_big_free(t.index, t.nslots * sizeof(uint64_t))
        kdp_big_free(t.lru_prev, t.capacity * sizeof(uint32_t))
        kdp_big_free(t.lru_next, t.capacity * sizeof(uint32_t))
        kdp_big_free(t.frags, (t.frag_mask + 1) * sizeof(ct_frag_t))
        self.t.flows = NULL
        self.t.index = NULL
        self.t.lru_prev = NULL
        self.t.lru_next = NULL
        self.t.frags = NULL

    def __dealloc__(self):
        self._free()

    # -- properties
    @property
    def capacity(self):
        return self.t.capacity

    def __len__(self):
        return self.t.n_flows

    @property
    def memory_bytes(self):
        """Bytes allocated for the table (records, index, links, fragment table)."""
        return (self.t.capacity * (sizeof(ct_flow_t) + 2 * sizeof(uint32_t))
                + self.t.nslots * sizeof(uint64_t) + (self.t.frag_mask + 1) * sizeof(ct_frag_t))

    @property
    def bytes_per_flow(self):
        """Bytes per flow of capacity, index and links included (not the fragment table)."""
        return (sizeof(ct_flow_t) + 2 * sizeof(uint32_t)
                + <double>self.t.nslots * sizeof(uint64_t) / self.t.capacity)

    def counters(self):
        """Table counters as a dict, plus the current number of flows ("flows")."""
        d = {name: self.t.c[i] for i, name in enumerate(COUNTER_NAMES)}
        d["flows"] = self.t.n_flows
        return d

    # -- stages
    def lookup_batch(self, Batch b not None, uint64_t now_ns):
        """Run the fast-path stage over batch b (see module docstring)."""
        with nogil:
            ct_lookup_batch(self, b, now_ns)

    def create(self, Batch b not None, Py_ssize_t i, spec=None, uint64_t now_ns=0):
        """Slow path for packet i. spec: None or a dict with flags, dnat, dnat_port,
        snat, snat_ports=(lo, hi), svc_port, backend. Returns the flow id or None."""
        cdef nat_spec_t s
        cdef nat_spec_t* sp = NULL
        cdef uint32_t fid
        if i < 0 or i >= b.count:
            raise IndexError(i)
        if spec is not None:
            _fill_spec(&s, spec)
            sp = &s
        with nogil:
            fid = ct_create(self, b, i, sp, now_ns)
        return None if fid == NO_ID else fid

    def create_all(self, Batch b not None, uint64_t now_ns=0):
        """The slow path without translation for every CT_NEW packet of b, in
        order (tools and benchmarks; the pipeline calls ct_create itself).
        Returns the number of packets that got a flow."""
        cdef Py_ssize_t i, n = 0
        with nogil:
            for i in range(b.count):
                if b.m[i].verdict == V_PENDING and b.m[i].ct_state == CT_NEW:
                    if ct_create(self, b, i, NULL, now_ns) != NO_ID:
                        n += 1
        return n

    def expire(self, uint64_t now_ns, Py_ssize_t max_work=1024):
        """Incremental expiry: examine at most max_work records; returns flows removed."""
        cdef Py_ssize_t n
        if max_work < 0:
            raise ValueError("max_work must be >= 0")
        with nogil:
            n = ct_expire(self, now_ns, max_work)
        return n

    # -- single items and inspection
    def lookup(self, proto, src, dst, sport=0, dport=0):
        """(flow_id, dir) of the tuple as a packet would carry it, or (None, None).
        For ICMP echo pass sport = identifier, dport = echo type."""
        cdef ct_key_t k
        cdef uint8_t v1, v2
        cdef int dir = 0
        cdef uint32_t fid
        memset(&k, 0, sizeof(k))
        _addr_words(src, &v1, k.src)
        _addr_words(dst, &v2, k.dst)
        if v1 != v2:
            raise ValueError("source and destination are of different IP versions")
        k.ver = v1
        k.proto = proto
        k.sport = sport
        k.dport = dport
        fid = ct_find(&self.t, &k, &dir)
        if fid == NO_ID:
            return (None, None)
        return (fid, dir)

    def flow(self, uint32_t fid):
        """One flow as a dict (None when the id is not a live flow)."""
        if fid >= self.t.hwm or not (self.t.flows[fid].flags & FL_USED):
            return None
        cdef ct_flow_t* f = &self.t.flows[fid]
        cdef ct_key_t o, r
        ct_flow_key(f, 0, &o)
        ct_flow_key(f, 1, &r)
        return {
            "id": fid, "ip_ver": f.ip_ver, "proto": f.proto,
            "orig": (_addr_str(o.src, f.ip_ver), _addr_str(o.dst, f.ip_ver), o.sport, o.dport),
            "reply": (_addr_str(r.src, f.ip_ver), _addr_str(r.dst, f.ip_ver), r.sport, r.dport),
            "state": TCP_STATE_NAMES[f.state] if f.proto == P_TCP else "",
            "assured": bool(f.flags & FL_ASSURED), "seen_reply": bool(f.flags & FL_SEEN_REPLY),
            "nat": bool(f.flags & FL_NAT), "dnat": bool(f.flags & FL_DNAT), "snat": bool(f.flags & FL_SNAT),
            "packets": (_pkts(f, 0), _pkts(f, 1)), "bytes": (_bytes(f, 0), _bytes(f, 1)),
            "last_ns": f.last_ns, "timeout_s": _timeout(&self.t, f) / 1e9, "epoch": f.epoch,
            "svc_port": None if f.svc_port == NO_ID else f.svc_port,
            "backend": None if f.backend == NO_ID else f.backend,
        }

    def flows(self):
        """Every live flow, as dicts (see flow()), in id order."""
        return [self.flow(i) for i in range(self.t.hwm) if self.t.flows[i].flags & FL_USED]

    def unassured_order(self):
        """Ids of the non-assured flows, oldest first (the early-drop order)."""
        out = []
        cdef uint32_t f = self.t.unas_head
        while f != NO_ID:
            out.append(f)
            f = self.t.lru_next[f]
        return out

    # -- flush
    def flush_all(self):
        """Delete every flow; returns how many."""
        cdef flush_t q
        memset(&q, 0, sizeof(q))
        return self._run_flush(&q)

    def flush_address(self, addr, proto=0):
        """Delete flows with addr in either tuple (any side); returns how many."""
        cdef flush_t q
        memset(&q, 0, sizeof(q))
        q.mode = 1
        q.proto = proto
        _addr_words(addr, &q.ver, q.addr)
        return self._run_flush(&q)

    def flush_backend(self, addr, port=None, proto=0):
        """Delete flows translated to (or replying from) backend addr[:port], e.g.
        the UDP flows of an endpoint that went away (proto=17); returns how many."""
        cdef flush_t q
        memset(&q, 0, sizeof(q))
        q.mode = 2
        q.proto = proto
        _addr_words(addr, &q.ver, q.addr)
        if port is not None:
            q.has_port = 1
            q.port = port
        return self._run_flush(&q)

    def flush_service(self, uint32_t svc_port):
        """Delete the flows created for service-port id svc_port; returns how many."""
        cdef flush_t q
        memset(&q, 0, sizeof(q))
        q.mode = 3
        q.svc_port = svc_port
        return self._run_flush(&q)

    def renumber_services(self, mapping):
        """Give every flow its service-port id under a new configuration.

        `mapping[old id]` is the new id (NO_ID: the service-port is gone); ids past its
        end become NO_ID. The control layer renumbers service-ports on a full compile;
        flows keep their translation but must name the right service. O(flows), nogil.
        """
        cdef const uint32_t[::1] m = np.ascontiguousarray(mapping, dtype=np.uint32)
        cdef Py_ssize_t n = m.shape[0]
        cdef uint32_t fid, sp
        cdef ct_flow_t* f
        with nogil:
            for fid in range(self.t.hwm):
                f = &self.t.flows[fid]
                if not (f.flags & FL_USED) or f.svc_port == NO_ID:
                    continue
                sp = f.svc_port
                f.svc_port = m[sp] if sp < n else NO_ID

    cdef Py_ssize_t _run_flush(self, flush_t* q):
        cdef Py_ssize_t n
        with nogil:
            n = _flush(&self.t, q)
        return n

    # -- bulk APIs over numpy arrays (IPv4), for benchmarks and tools
    def lookup4(self, src, dst, sport, dport, proto, out=None):
        """Flow ids (uint32, NO_ID for a miss) of IPv4 tuples given as numpy arrays
        (src/dst uint32 host order, ports uint16, proto uint8). No state change."""
        src, dst, sport, dport, proto = _tuple_arrays("lookup4", src, dst, sport, dport, proto)
        cdef const uint32_t[::1] s = src
        cdef const uint32_t[::1] d = dst
        cdef const uint16_t[::1] sp = sport
        cdef const uint16_t[::1] dp = dport
        cdef const uint8_t[::1] pr = proto
        cdef Py_ssize_t n = s.shape[0]
        if out is None:
            out = np.empty(n, dtype=np.uint32)
        cdef uint32_t[::1] o = out
        if o.shape[0] < n:
            raise ValueError("lookup4: out is too short")
        if n:
            with nogil:
                _lookup4(&self.t, &s[0], &d[0], &sp[0], &dp[0], &pr[0], &o[0], n)
        return out

    def insert4(self, src, dst, sport, dport, proto, uint64_t now_ns=0, tcp_state=TCP_SYN_SENT):
        """Create flows (no NAT) for IPv4 tuples; TCP flows start in tcp_state (as
        after a SYN by default). Returns their ids (NO_ID where refused: table
        full). Existing tuples give their flow."""
        if not (1 <= tcp_state <= 9):
            raise ValueError("tcp_state must be 1..9")
        cdef uint8_t st = tcp_state
        src, dst, sport, dport, proto = _tuple_arrays("insert4", src, dst, sport, dport, proto)
        cdef const uint32_t[::1] s = src
        cdef const uint32_t[::1] d = dst
        cdef const uint16_t[::1] sp = sport
        cdef const uint16_t[::1] dp = dport
        cdef const uint8_t[::1] pr = proto
        cdef Py_ssize_t n = s.shape[0]
        out = np.empty(n, dtype=np.uint32)
        cdef uint32_t[::1] o = out
        if n:
            with nogil:
                _insert4(&self.t, &s[0], &d[0], &sp[0], &dp[0], &pr[0], &o[0], n, now_ns, st)
        return out


cdef void _lookup4(ct_table_t* t, const uint32_t* s, const uint32_t* d, const uint16_t* sp,
                   const uint16_t* dp, const uint8_t* pr, uint32_t* out, Py_ssize_t n) noexcept nogil:
    cdef ct_key_t keys[RING]
    cdef uint64_t hs[RING]
    cdef uint32_t pos[RING]
    cdef Py_ssize_t j, a, c
    cdef int r, dir
    for j in range(n + 2 * DIST):
        if j < n:
            r = j & (RING - 1)
            memset(&keys[r], 0, sizeof(ct_key_t))
            keys[r].src[0] = s[j]
            keys[r].dst[0] = d[j]
            keys[r].sport = sp[j]
            keys[r].dport = dp[j]
            keys[r].proto = pr[j]
            keys[r].ver = 4
            hs[r] = _key_hash(t, &keys[r])
            pos[r] = _home(t, hs[r])
            _prefetch_run(t, pos[r])
        a = j - DIST
        if 0 <= a < n:
            r = a & (RING - 1)
            _probe_tag(t, hs[r], &pos[r], 0)    # IPv4 flows live in the first line
        c = j - 2 * DIST
        if 0 <= c < n:
            r = c & (RING - 1)
            out[c] = _find_from(t, &keys[r], hs[r], pos[r], &dir)


cdef void _insert4(ct_table_t* t, const uint32_t* s, const uint32_t* d, const uint16_t* sp,
                   const uint16_t* dp, const uint8_t* pr, uint32_t* out, Py_ssize_t n,
                   uint64_t now, uint8_t tcp_state) noexcept nogil:
    # pipelined: tuple j hashes its key and the reply key (no NAT: the swapped
    # tuple) and prefetches both home slots; tuple j - DIST is inserted
    cdef ct_key_t keys[RING]
    cdef ct_key_t rk
    cdef uint64_t hs[RING]
    cdef uint64_t hrs[RING]
    cdef Py_ssize_t j, c
    cdef int r, dir
    cdef uint32_t fid
    cdef uint16_t reason
    memset(&rk, 0, sizeof(rk))
    rk.ver = 4
    t.epoch += 1
    t.epoch16 = <uint16_t>t.epoch
    for j in range(n + DIST):
        if j < n:
            r = j & (RING - 1)
            memset(&keys[r], 0, sizeof(ct_key_t))
            keys[r].ver = 4
            keys[r].src[0] = s[j]
            keys[r].dst[0] = d[j]
            keys[r].sport = sp[j]
            keys[r].dport = dp[j]
            keys[r].proto = pr[j]
            hs[r] = _key_hash(t, &keys[r])
            _prefetch_run(t, _home(t, hs[r]))
            rk.src[0] = d[j]
            rk.dst[0] = s[j]
            rk.sport = dp[j]
            rk.dport = sp[j]
            rk.proto = pr[j]
            hrs[r] = _key_hash(t, &rk)
            _prefetch_run(t, _home(t, hrs[r]))
        c = j - DIST
        if c >= 0:
            r = c & (RING - 1)
            fid = _find_from(t, &keys[r], hs[r], _home(t, hs[r]), &dir)
            if fid == NO_ID:
                fid = _new_flow(t, &keys[r], hs[r], NULL, tcp_state if keys[r].proto == P_TCP else 0,
                                now, &reason, &hrs[r])
            out[c] = fid

TCP_STATES = {name: i for i, name in enumerate(TCP_STATE_NAMES)}

cdef ct_flow_t _probe_flow


def flow_layout():
    """{field: byte offset} of ct_flow_t plus "sizeof" (tests check the cache-line plan)."""
    cdef ct_flow_t* f = &_probe_flow
    base = <size_t>f
    return {
        "a4": <size_t>&f.a4[0] - base, "port": <size_t>&f.port[0] - base,
        "proto": <size_t>&f.proto - base, "state": <size_t>&f.state - base,
        "flags": <size_t>&f.flags - base, "epoch": <size_t>&f.epoch - base,
        "last_ns": <size_t>&f.last_ns - base, "svc_port": <size_t>&f.svc_port - base,
        "backend": <size_t>&f.backend - base, "pkts_lo": <size_t>&f.pkts_lo[0] - base,
        "bytes_lo": <size_t>&f.bytes_lo[0] - base, "a6": <size_t>&f.a6[0] - base,
        "sizeof": sizeof(ct_flow_t),
    }
