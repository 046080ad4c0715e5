# The flow table as a data structure: the flow record and its layout, lookup
# keys, the open-addressing index over both directions of every flow, the FIFO
# of non-assured flows, and a record's deletion. What fills it and when records
# go is elsewhere: ct_tcp.pxd (the TCP state machine), ct_expiry (timeouts,
# expiry, early drop), ct_keys (packet keys, fragments), conntrack.pyx (the
# stages and the Python face).
#
# Layout of a flow record (128 bytes, two cache lines; tests check it):
#   line 0: everything the fast path reads and writes for an IPv4 flow
#           (addresses, ports, state, time, service, the low halves of the
#           per-direction counters)
#   line 1: IPv6 addresses; for IPv4 flows the high halves of the counters
#           (IPv6 flows keep those in line 0, where IPv4 keeps addresses)
# A flow has two tuples. The original tuple O is the first packet as it
# arrived; the reply tuple R is what a reply arrives as, after translation.
# A packet arriving as tuple T_d (d = 0 original, 1 reply) leaves as the
# inverse of T_{1-d}: that one rule is DNAT, SNAT and their reversal.
# For ICMP/ICMPv6 echo the "ports" of a tuple are (identifier, echo type):
# the identifier is not swapped between directions.
#
# Index slots are (tag << 32) | (flow_id << 1 | dir) with tag the high 32 bits
# of the tuple hash and home slot (tag * nslots) >> 32; linear probing,
# deletion by backward shift (no tombstones). The helpers the per-packet path
# calls are inline here (no call across modules); the rest is in ct_table.pyx.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memcpy

from kdp._fast.mix cimport mix64, P_TCP
from kdp._fast.packet cimport NO_ID
from kdp._fast.checksum cimport kdp_prefetch, kdp_prefetch_w

cdef enum:
    CT_MAX_CAPACITY = 1 << 30

# TCP states, numbered as Linux's enum tcp_conntrack.
cdef enum:  # TcpState
    TCP_NONE = 0
    TCP_SYN_SENT = 1
    TCP_SYN_RECV = 2
    TCP_ESTABLISHED = 3
    TCP_FIN_WAIT = 4
    TCP_CLOSE_WAIT = 5
    TCP_LAST_ACK = 6
    TCP_TIME_WAIT = 7
    TCP_CLOSE = 8
    TCP_SYN_SENT2 = 9

# Timeout slots (index into ct_table_t.timeout_ns). TCP slots equal the state.
cdef enum:  # Timeout
    TO_TCP_NONE = 0
    TO_TCP_SYN_SENT = 1
    TO_TCP_SYN_RECV = 2
    TO_TCP_ESTABLISHED = 3
    TO_TCP_FIN_WAIT = 4
    TO_TCP_CLOSE_WAIT = 5
    TO_TCP_LAST_ACK = 6
    TO_TCP_TIME_WAIT = 7
    TO_TCP_CLOSE = 8
    TO_TCP_SYN_SENT2 = 9
    TO_UDP = 10
    TO_UDP_STREAM = 11
    TO_ICMP = 12
    TO_SCTP = 13
    TO_GENERIC = 14
    TO_FRAG = 15
    TO_TCP_UNACK = 16       # ESTABLISHED before assured (mid-stream pickup): min(established, unacknowledged)
    N_TIMEOUTS = 17

# ct_flow_t.flags
cdef enum:  # FlowFlag
    FL_USED = 1
    FL_ASSURED = 2
    FL_SEEN_REPLY = 4
    FL_STREAM = 8           # a packet came after the first reply (UDP: the stream timeout)
    FL_NAT = 16             # the flow rewrites packets (O != inverse of R)
    FL_UNASSURED_LISTED = 32
    FL_DNAT = 64
    FL_SNAT = 128

# ct_flow_t.tcp: what Linux keeps in ip_ct_tcp beside the state (last_index,
# last_dir, the CLOSE_INIT / SIMULTANEOUS_OPEN / CHALLENGE_ACK flags), in one
# byte; 0 for other protocols.
cdef enum:  # TcpTrack
    TT_LAST_KIND = 7        # bits 0-2: kind (syn, synack, fin, ack, rst, none) of the last accepted packet
    TT_LAST_REPLY = 8       # ... which came in the reply direction
    TT_CLOSE_INIT = 16      # a FIN moved the flow to FIN_WAIT (either direction)
    TT_SIMOPEN = 32         # simultaneous open (SYN_SENT2) seen
    TT_CHALLENGE = 64       # a SYN was ignored in LAST_ACK: a reply ACK may be a challenge ACK
    TT_DYING = 128          # a RST came before any reply: the flow ends once its batch is done

# Table-wide counters (ct_table_t.c).
cdef enum:  # CtCounter
    # the fast path sorts every packet it looks up into exactly one of hits, misses,
    # related and errors_no_flow: lookups is their sum
    C_LOOKUPS = 0           # packets looked up (fast path)
    C_HITS = 1              # packets of a known flow (later fragments matched by IP ID too)
    C_MISSES = 2            # packets of no known flow: the slow path (new flows)
    C_INSERTS = 3
    C_EVICTIONS = 4         # early drops of non-assured flows on a full table
    C_EXPIRIES = 5          # flows removed because their timeout passed
    C_INVALID = 6           # packets that fit no TCP state
    C_TABLE_FULL = 7        # new flows refused: R_CT_TABLE_FULL
    C_PORTS_EXHAUSTED = 8   # new flows refused: R_NAT_PORTS_EXHAUSTED
    C_RELATED = 9           # ICMP errors matched to a flow (fast path)
    C_FRAG_HITS = 10        # later fragments matched by IP ID (fast path: hits; slow path: create_hits)
    C_FRAG_NO_FLOW = 11     # later fragments dropped: R_FRAG_NO_FLOW
    C_FLUSHED = 12          # flows removed by the flush API
    C_PORT_REMAPS = 13      # source ports changed to keep a reply tuple unique
    C_REOPENED = 14         # TCP flows in TIME_WAIT/CLOSE replaced by a new SYN
    C_CREATE_HITS = 15      # of the misses: the slow path found the flow (made earlier in the batch)
    C_ERRORS_NO_FLOW = 16   # ICMP errors quoting no known flow (fast path)
    N_CT_COUNTERS = 17

ctypedef struct ct_flow_t:
    # line 0
    uint32_t a4[4]          # v4: o_src, o_dst, r_src, r_dst (host order); v6: counter high halves
    uint16_t port[4]        # o_sport, o_dport, r_sport, r_dport
    uint8_t proto
    uint8_t ip_ver
    uint8_t state           # TcpState (0 for other protocols)
    uint8_t flags           # FlowFlag
    uint8_t nat             # NatFlags requested at creation
    uint8_t tcp             # TcpTrack bits (TCP flows)
    uint16_t epoch          # low bits of the last batch that referred to the flow
    uint64_t last_ns        # last packet that refreshed the flow
    uint32_t svc_port       # service-port id, NO_ID when none
    uint32_t backend        # backend id, NO_ID when none
    uint32_t pkts_lo[2]     # per direction, low 32 bits
    uint32_t bytes_lo[2]    # IP bytes per direction, low 32 bits
    # line 1
    uint32_t a6[16]         # v6: o_src6, o_dst6, r_src6, r_dst6; v4: counter high halves

# A lookup key: one direction's tuple. v4 addresses in src[0]/dst[0].
ctypedef struct ct_key_t:
    uint32_t src[4]
    uint32_t dst[4]
    uint16_t sport
    uint16_t dport
    uint8_t proto
    uint8_t ver

# Fragment table entry: later fragments find their flow by (addresses, proto, IP ID).
ctypedef struct ct_frag_t:
    uint32_t src[4]
    uint32_t dst[4]
    uint32_t frag_id
    uint32_t flow_id        # NO_ID when empty
    uint64_t ts_ns
    uint8_t proto
    uint8_t ver
    uint8_t dir
    uint8_t _pad[5]

ctypedef struct ct_table_t:
    ct_flow_t* flows
    uint64_t* index         # (tag << 32) | (flow_id << 1 | dir); ~0 empty
    uint32_t* lru_prev      # FIFO of non-assured flows (oldest first)
    uint32_t* lru_next      # ... also the free list
    ct_frag_t* frags
    uint32_t capacity
    uint32_t nslots
    uint32_t hwm            # flow ids below this have been used at least once
    uint32_t free_head
    uint32_t n_flows
    uint32_t unas_head
    uint32_t unas_tail
    uint32_t sweep
    uint32_t frag_mask
    uint32_t nat_max_tries
    uint16_t port_lo        # range for implicit source-port remaps
    uint16_t port_hi
    uint8_t drop_invalid
    uint8_t tcp_loose
    uint16_t epoch16        # low 16 bits of epoch, stamped on flows a batch touches
    uint32_t epoch          # batches looked up
    uint64_t mutations      # index removals (index entries may have moved)
    uint64_t seed
    uint64_t clock          # newest packet time seen, for CT_PACKET_CLOCK
    uint64_t clock_base     # ... as it was when the current batch began
    uint64_t timeout_ns[N_TIMEOUTS]
    uint64_t c[N_CT_COUNTERS]
    # early drop looks two victims ahead and keeps their index tags (hash >> 32,
    # per direction) here, so their deletion does not hash them again
    uint32_t vfid[2]        # NO_ID: slot empty
    uint32_t vtag[4]        # [2 * slot + dir]
    uint32_t vslot
    # the flow log (Conntrack.enable_flow_log; NULL: off): a copy of each flow as it
    # ends, with why, drained between batches; per flow id, when it began and the
    # policy decisions of its first packet
    ct_flow_t* ended
    uint8_t* ended_why      # CtEnd
    uint64_t* ended_first
    uint32_t* ended_pol
    uint32_t* ended_id
    uint32_t n_ended
    uint32_t cap_ended
    uint64_t ended_lost     # flows that ended while the buffer was full (counted)
    uint64_t* first_ns      # [capacity]
    uint32_t* pol           # [capacity]: (egress decision << 16) | ingress decision


cdef extern from *:
    """
    #define KDP_CT_SLOT_EMPTY 0xFFFFFFFFFFFFFFFFULL
    """
    const uint64_t CT_SLOT_EMPTY "KDP_CT_SLOT_EMPTY"     # an unused index slot


# Why a flow ended (the flow log's "end").
cpdef enum CtEnd:
    END_EXPIRED = 0         # its timeout ran out
    END_EVICTED = 1         # early drop: the table was full
    END_FLUSHED = 2         # deleted by a flush (a backend or Service went away, flush API)
    END_REPLACED = 3        # TCP: a new connection reused its tuple (TIME_WAIT / CLOSE reopen)
    END_RESET = 4           # TCP: reset before any reply
    END_LIVE = 5            # still live when the replay ended

# ---- in ct_table.pyx

# The hash of an IPv6 key (ct_key_hash takes IPv4 keys inline).
cdef uint64_t ct_key_hash6(const ct_table_t* t, const ct_key_t* k) noexcept nogil
# The tuple of direction dir of flow f, as a key.
cdef void ct_flow_key(const ct_flow_t* f, int dir, ct_key_t* k) noexcept nogil
# The flow (and direction) whose tuple is k; NO_ID when none.
cdef uint32_t ct_find(ct_table_t* t, const ct_key_t* k, int* dir) noexcept nogil
# Remove the index entry (hash h, flow fid, direction dir).
cdef void ct_index_remove(ct_table_t* t, uint64_t h, uint32_t fid, int dir) noexcept nogil
# Remove both directions of flow fid from the index.
cdef void ct_index_remove_flow(ct_table_t* t, uint32_t fid) noexcept nogil
# Delete flow fid: index, FIFO, record back to the free list; the flow log (when on)
# gets it with why (CtEnd), unless ct_unlink gave it already.
cdef void ct_delete(ct_table_t* t, uint32_t fid, uint8_t why) noexcept nogil
# End TCP flow fid for every packet to come while a packet of the current batch
# still refers to it: out of the index now, the record freed later (TT_DYING).
cdef void ct_unlink(ct_table_t* t, uint32_t fid, uint8_t why) noexcept nogil


# ---- inline: the per-packet path

cdef inline uint64_t ct_hash4(uint64_t seed, uint32_t src, uint32_t dst, uint16_t sport,
                              uint16_t dport, uint8_t proto) noexcept nogil:
    """ct_key_hash of an IPv4 key, from its fields."""
    cdef uint64_t h = seed ^ ((<uint64_t>sport << 48) | (<uint64_t>dport << 32)
                              | (<uint64_t>proto << 8) | 4)
    return mix64(mix64(h) ^ ((<uint64_t>src << 32) | dst))


cdef inline uint64_t ct_key_hash(const ct_table_t* t, const ct_key_t* k) noexcept nogil:
    # small enough to inline everywhere; IPv6 keys take the out-of-line half
    if k.ver == 4:
        return ct_hash4(t.seed, k.src[0], k.dst[0], k.sport, k.dport, k.proto)
    return ct_key_hash6(t, k)


cdef inline uint32_t ct_home_slot(const ct_table_t* t, uint64_t h) noexcept nogil:
    return <uint32_t>(((h >> 32) * <uint64_t>t.nslots) >> 32)


cdef inline void ct_prefetch_run(const ct_table_t* t, uint32_t pos) noexcept nogil:
    """Prefetch the index line of slot pos and, when pos is among the last
    three slots of its line, the next line too: a probe run (~2 slots for a
    hit, ~3-5 for a miss at the index's load) often continues there."""
    kdp_prefetch(&t.index[pos])
    if (pos & 7) >= 5 and pos + 3 < t.nslots:
        kdp_prefetch(&t.index[pos + 3])


cdef inline bint ct_key_matches(const ct_flow_t* f, int dir, const ct_key_t* k) noexcept nogil:
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


cdef inline void ct_store_key(ct_flow_t* f, int dir, const ct_key_t* k) noexcept nogil:
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


cdef inline uint64_t ct_ld64(const void* a) noexcept nogil:
    cdef uint64_t v
    memcpy(&v, a, 8)
    return v


cdef inline uint32_t ct_ld32(const void* a) noexcept nogil:
    cdef uint32_t v
    memcpy(&v, a, 4)
    return v


cdef inline uint16_t ct_ld16(const void* a) noexcept nogil:
    cdef uint16_t v
    memcpy(&v, a, 2)
    return v


cdef inline uint32_t ct_find_from(const ct_table_t* t, const ct_key_t* k, uint64_t h,
                                  uint32_t pos, int* dir) noexcept nogil:
    cdef uint64_t s
    cdef uint32_t tag = <uint32_t>(h >> 32)
    cdef uint32_t fid
    while True:
        s = t.index[pos]
        if s == CT_SLOT_EMPTY:
            return NO_ID
        if <uint32_t>(s >> 32) == tag:
            fid = (<uint32_t>s) >> 1
            if ct_key_matches(&t.flows[fid], <int>(s & 1), k):
                dir[0] = <int>(s & 1)
                return fid
        pos += 1
        if pos == t.nslots:
            pos = 0


cdef inline uint32_t ct_find4(const ct_table_t* t, uint64_t ka, uint32_t kp, uint16_t kpv,
                              uint64_t h, uint32_t pos, int* dir) noexcept nogil:
    """ct_find_from for an IPv4 key given as words: ka = src | dst << 32, kp =
    sport | dport << 16, kpv = proto | 4 << 8 (the record's a4/port/proto+ip_ver
    pairs of one direction, as they lie in memory): three compares, one branch."""
    cdef uint64_t s
    cdef uint32_t tag = <uint32_t>(h >> 32)
    cdef uint32_t fid, d
    cdef const ct_flow_t* f
    while True:
        s = t.index[pos]
        if s == CT_SLOT_EMPTY:
            return NO_ID
        if <uint32_t>(s >> 32) == tag:
            fid = (<uint32_t>s) >> 1
            d = <uint32_t>s & 1
            f = &t.flows[fid]
            if ((ct_ld64(&f.a4[2 * d]) ^ ka) | (ct_ld32(&f.port[2 * d]) ^ kp)
                    | (ct_ld16(&f.proto) ^ kpv)) == 0:
                dir[0] = <int>d
                return fid
        pos += 1
        if pos == t.nslots:
            pos = 0


cdef inline void ct_index_insert(ct_table_t* t, uint64_t h, uint32_t fid, int dir) noexcept nogil:
    cdef uint32_t pos = ct_home_slot(t, h)
    while t.index[pos] != CT_SLOT_EMPTY:
        pos += 1
        if pos == t.nslots:
            pos = 0
    t.index[pos] = ((h >> 32) << 32) | ((<uint64_t>fid << 1) | <uint64_t>dir)


cdef inline void ct_probe_tag(ct_table_t* t, uint64_t h, uint32_t* pos, bint both_lines) noexcept nogil:
    """Advance pos to the first slot whose tag matches h (or an empty slot) and
    prefetch the flow record it names (its first cache line, or both)."""
    cdef uint32_t tag = <uint32_t>(h >> 32), i = pos[0]
    cdef uint64_t s
    while True:
        s = t.index[i]
        if s == CT_SLOT_EMPTY or <uint32_t>(s >> 32) == tag:
            break
        i += 1
        if i == t.nslots:
            i = 0
    pos[0] = i
    if s != CT_SLOT_EMPTY:
        kdp_prefetch_w(&t.flows[(<uint32_t>s) >> 1])
        if both_lines:
            kdp_prefetch_w(<uint8_t*>&t.flows[(<uint32_t>s) >> 1] + 64)


cdef inline void ct_unassured_push(ct_table_t* t, uint32_t fid) noexcept nogil:
    t.lru_prev[fid] = t.unas_tail
    t.lru_next[fid] = NO_ID
    if t.unas_tail != NO_ID:
        t.lru_next[t.unas_tail] = fid
    else:
        t.unas_head = fid
    t.unas_tail = fid
    t.flows[fid].flags |= FL_UNASSURED_LISTED


cdef inline void ct_unassured_unlink(ct_table_t* t, uint32_t fid) noexcept nogil:
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


cdef inline void ct_assure(ct_table_t* t, ct_flow_t* f, uint32_t fid) noexcept nogil:
    f.flags |= FL_ASSURED
    if f.flags & FL_UNASSURED_LISTED:
        ct_unassured_unlink(t, fid)


cdef inline bint ct_unindexed(const ct_flow_t* f) noexcept nogil:
    """A flow ct_unlink took out of the index (its record waits to be freed)."""
    return f.proto == P_TCP and (f.tcp & TT_DYING) != 0


cdef inline uint32_t* ct_counters_hi(ct_flow_t* f) noexcept nogil:
    """High halves: pkts_hi[0..1], bytes_hi[2..3] (in whichever line the version leaves free)."""
    return &f.a6[0] if f.ip_ver == 4 else &f.a4[0]


cdef inline uint64_t ct_flow_packets(ct_flow_t* f, int dir) noexcept nogil:
    return (<uint64_t>ct_counters_hi(f)[dir] << 32) | f.pkts_lo[dir]


cdef inline uint64_t ct_flow_bytes(ct_flow_t* f, int dir) noexcept nogil:
    return (<uint64_t>ct_counters_hi(f)[2 + dir] << 32) | f.bytes_lo[dir]
