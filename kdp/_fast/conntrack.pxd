# The connection-tracking table: flow records, a two-direction hash index,
# TCP/UDP/ICMP/SCTP state, timeouts, early-drop eviction, incremental expiry,
# the SNAT port choice that keeps reply tuples unique, and a small fragment
# table. The packet rewrites themselves live in nat.pyx.
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

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from kdp._fast.packet cimport Batch, pkt_meta_t
from kdp._fast.flow cimport nat_spec_t

cdef enum:
    CT_MAX_CAPACITY = 1 << 30

# What ct_pkt_key found in a packet.
cdef enum KeyKind:
    K_NONE = 0          # not trackable
    K_FLOW = 1          # a tuple of its own
    K_ERROR = 2         # ICMP error: the key is the inverse of the quoted tuple
    K_FRAG = 3          # later fragment: addresses only (ports 0)
    K_SKIP = 4

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
    N_TIMEOUTS = 16

# ct_flow_t.flags
cdef enum:  # FlowFlag
    FL_USED = 1
    FL_ASSURED = 2
    FL_SEEN_REPLY = 4
    FL_STREAM = 8           # UDP: a packet came after the first reply
    FL_NAT = 16             # the flow rewrites packets (O != inverse of R)
    FL_UNASSURED_LISTED = 32
    FL_DNAT = 64
    FL_SNAT = 128

# Table-wide counters (ct_table_t.c).
cdef enum:  # CtCounter
    C_LOOKUPS = 0           # packets looked up (fast path)
    C_HITS = 1
    C_MISSES = 2
    C_INSERTS = 3
    C_EVICTIONS = 4         # early drops of non-assured flows on a full table
    C_EXPIRIES = 5          # flows removed because their timeout passed
    C_INVALID = 6           # packets that fit no TCP state
    C_TABLE_FULL = 7        # new flows refused: R_CT_TABLE_FULL
    C_PORTS_EXHAUSTED = 8   # new flows refused: R_NAT_PORTS_EXHAUSTED
    C_RELATED = 9           # ICMP errors matched to a flow
    C_FRAG_HITS = 10        # later fragments matched by IP ID
    C_FRAG_NO_FLOW = 11     # later fragments dropped: R_FRAG_NO_FLOW
    C_FLUSHED = 12          # flows removed by the flush API
    C_PORT_REMAPS = 13      # source ports changed to keep a reply tuple unique
    C_REOPENED = 14         # TCP flows in TIME_WAIT/CLOSE replaced by a new SYN
    C_CREATE_HITS = 15      # ct_create found the flow already there (same batch)
    N_CT_COUNTERS = 16

ctypedef struct ct_flow_t:
    # line 0
    uint32_t a4[4]          # v4: o_src, o_dst, r_src, r_dst (host order); v6: counter high halves
    uint16_t port[4]        # o_sport, o_dport, r_sport, r_dport
    uint8_t proto
    uint8_t ip_ver
    uint8_t state           # TcpState (0 for other protocols)
    uint8_t flags           # FlowFlag
    uint8_t nat             # NatFlags requested at creation
    uint8_t _pad
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
    uint64_t mutations      # flow deletions (index entries may have moved)
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

# A flush request (flush_* methods).
ctypedef struct flush_t:
    uint8_t mode            # 0 all, 1 address, 2 backend, 3 service port
    uint8_t ver
    uint8_t proto           # 0: any
    uint8_t has_port
    uint16_t port
    uint32_t addr[4]
    uint32_t svc_port


# now_ns value that asks the stages to age flows by each packet's own timestamp
# (replay): time is max(newest seen, ts_ns), so it never runs backwards.
cdef extern from *:
    """
    #define KDP_CT_PACKET_CLOCK 0xFFFFFFFFFFFFFFFFull
    """
    const uint64_t CT_PACKET_CLOCK "KDP_CT_PACKET_CLOCK"


cdef class Conntrack:
    cdef ct_table_t t
    cdef readonly object settings
    cdef _free(self)
    cdef Py_ssize_t _run_flush(self, flush_t* q)


# ---- stage entry points (the pipeline calls these) -------------------------

# Fast path over a batch: see Conntrack docs / conntrack.pyx for the contract.
cdef void ct_lookup_batch(Conntrack ct, Batch b, uint64_t now_ns) noexcept nogil
# Slow path for one packet after the service stage filled `spec` (NULL: no NAT).
# Returns the flow id, or NO_ID (then the packet is dropped with a reason, or
# is untrackable and left V_PENDING with ct_state CT_NONE / CT_INVALID).
cdef uint32_t ct_create(Conntrack ct, Batch b, Py_ssize_t i, const nat_spec_t* spec,
                        uint64_t now_ns) noexcept nogil
# Incremental expiry: examine at most max_work flow slots; returns flows removed.
cdef Py_ssize_t ct_expire(Conntrack ct, uint64_t now_ns, Py_ssize_t max_work) noexcept nogil

# Table-level helpers (also used by nat.pyx and the bulk APIs).
cdef uint32_t ct_find(ct_table_t* t, const ct_key_t* k, int* dir) noexcept nogil
cdef void ct_delete(ct_table_t* t, uint32_t fid) noexcept nogil
cdef void ct_flow_key(const ct_flow_t* f, int dir, ct_key_t* k) noexcept nogil
# The lookup key of packet p (pkt = its frame); returns a KeyKind.
cdef int ct_pkt_key(const pkt_meta_t* p, const uint8_t* pkt, ct_key_t* k) noexcept nogil
# Offset from the frame start of the L4 header quoted in an ICMP error (0: none).
cdef uint32_t ct_quote_l4(const pkt_meta_t* p, const uint8_t* pkt) noexcept nogil
