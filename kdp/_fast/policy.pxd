# Network policy tables and the policy decision of a new flow.
#
# The control layer (kdp/control/policy_compile.py) compiles every policy kind
# into the tables below; the pipeline's slow path calls pol_decide() once per
# new flow, after the service stage chose the backend and before conntrack
# creates the flow. Established, reply and related packets never look here
# (unless NodeConfig asks to re-check established flows after a reload:
# pol_recheck_batch, one array read per packet while nothing changed).
#
# Decision of one direction, a few lookups whatever the number of policies:
#   address -> identity   exact hash (pods, node addresses), else LPM (CIDR peers)
#   (profile, identity)   -> decision map   hash, else the profile's default map
#   (protocol, port) key  -> decision       binary search in the map's segments
#   decision              -> allow / deny   (and a label for the verdict log)
# A profile is the ordered rule list that applies to a local pod in one
# direction (admin tier, NetworkPolicy tier, baseline tier, and the pod's named
# ports); pods with the same rules share it.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from kdp._fast.packet cimport Batch, pkt_meta_t
from kdp._fast.flow cimport nat_spec_t
from kdp._fast.lpm cimport Lpm4
from kdp._fast.lpm6 cimport Lpm6
from kdp._fast.conntrack cimport Conntrack

cdef enum:  # direction: index of pol_endpoint_t.profile and .self_map
    POL_EGRESS = 0
    POL_INGRESS = 1

cdef enum:  # flags of an exact address
    PA_LOCAL_NODE = 1       # one of this node's addresses
    PA_USED = 0x80          # the hash slot holds an address

# Port keys: (protocol class << 16) | destination port; class 0 is every
# protocol without ports (ICMP, ...), always with port 0.
cdef enum:
    PK_OTHER = 0
    PK_TCP = 1
    PK_UDP = 2
    PK_SCTP = 3
    PK_LIMIT = 4 << 16      # keys are < PK_LIMIT

# An exact address (a pod's or a node's) and what it is, as the compiler hands it over
# (ADDR_DTYPE); PolicyTables keeps them in two compact hashes, one per family.
ctypedef struct pol_addr_t:
    uint8_t ip_ver
    uint8_t flags           # PA_LOCAL_NODE
    uint16_t _pad
    uint32_t identity
    uint32_t endpoint       # local pod index, NO_ID for any other address
    uint32_t self_map[2]    # [direction]: decision map of the pod's own traffic through a Service
    uint32_t a4             # host byte order
    uint8_t a6[16]          # network byte order

# Hash slots: 16 bytes for IPv4 (four a cache line), 32 for IPv6.
ctypedef struct pol_addr4_t:
    uint32_t a4
    uint32_t identity
    uint32_t endpoint
    uint32_t flags          # PA_USED | PA_LOCAL_NODE
ctypedef struct pol_addr6_t:
    uint8_t a6[16]
    uint32_t identity
    uint32_t endpoint
    uint32_t flags
    uint32_t _pad

# A local pod: the profile of each direction, NO_ID when no policy applies, and the
# decision maps of its own traffic through a Service, [family: 0 IPv4, 1 IPv6][direction].
ctypedef struct pol_endpoint_t:
    uint32_t profile[2]
    uint32_t self_map[2][2]

# (profile, identity) -> decision map, for identities not given the profile's default.
ctypedef struct pol_entry_t:
    uint64_t key            # profile << 32 | identity; POL_EMPTY_KEY: empty slot
    uint32_t map
    uint32_t _pad

# A decision map: segments [off, off + n) of seg_start (sorted, seg_start[off] == 0)
# and seg_dec: key k has the decision of the last segment starting at or below k.
ctypedef struct pol_map_t:
    uint32_t off
    uint32_t n

ctypedef struct pol_tables_t:
    pol_addr4_t* addrs4
    uint32_t mask4
    pol_addr6_t* addrs6
    uint32_t mask6
    uint32_t n_eps
    pol_endpoint_t* eps
    uint32_t n_profiles
    uint32_t n_maps
    uint32_t* prof_default  # [profile] -> map
    pol_entry_t* entries
    uint32_t entry_mask
    uint32_t n_identities
    pol_map_t* maps
    uint32_t* seg_start
    uint16_t* seg_dec
    uint8_t* dec_allow      # [decision] -> 1 allow, 0 deny
    uint32_t host_identity  # identity of packets from the host port
    uint32_t generation     # of this compile (re-checking established flows)


cdef class PolicyTables:
    cdef pol_tables_t t
    cdef readonly Lpm4 lpm4
    cdef readonly Lpm6 lpm6
    cdef object _arrays             # the numpy arrays t points into
    cdef readonly uint32_t generation


# Per flow id: the generation of the tables that last judged the flow (<< 3),
# bit 2: the flow came from the host port, bits 0-1: 0 allowed, 1 egress denied,
# 2 ingress denied. Kept across reloads (the pipeline owns it, like conntrack).
cdef class FlowPolicy:
    cdef uint32_t* state
    cdef readonly uint32_t capacity
    cdef object _array


# The decision for packet p of a new flow (spec: the service stage's NAT, NULL: none).
# Sets p.pol_egress / p.pol_ingress; returns 0 (allowed) or the drop reason
# (R_POLICY_DENIED_EGRESS, R_POLICY_DENIED_INGRESS).
cdef uint16_t pol_decide(PolicyTables pt, pkt_meta_t* p, const nat_spec_t* spec) noexcept nogil

# Record the generation that allowed flow fid (called after conntrack created it).
cdef void pol_flow_created(PolicyTables pt, FlowPolicy fp, uint32_t fid, bint from_host) noexcept nogil

# Established / reply / related packets of flows judged by older tables: judge the
# flow again from its conntrack record, drop the packet when it is now denied.
cdef void pol_recheck_batch(PolicyTables pt, FlowPolicy fp, Conntrack ct, Batch b) noexcept nogil
