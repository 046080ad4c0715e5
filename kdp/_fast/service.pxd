# Compiled service tables and the service decision (kube-proxy semantics).
#
# The control layer (kdp/control/compile.py) fills flat numpy arrays whose
# dtypes are built from the structs below (service.pyx: *_DTYPE), and
# ServiceTables copies them into C memory it owns. The pipeline's slow path
# calls svc_decide() (or svc_match() + svc_choose()) under nogil for packets
# that start a new flow, and hands the filled nat_spec_t to conntrack.
#
# Addresses follow pkt_meta_t: IPv4 as uint32 in host order, IPv6 as 16
# bytes in network order; ports in host order.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from kdp._fast.packet cimport pkt_meta_t
from kdp._fast.flow cimport nat_spec_t

# How a packet reached a service-port (which traffic policy applies).
cpdef enum FrontendKind:
    FK_CLUSTER_IP = 0       # internalTrafficPolicy
    FK_EXTERNAL_IP = 1      # externalTrafficPolicy
    FK_LOAD_BALANCER = 2    # externalTrafficPolicy + loadBalancerSourceRanges
    FK_NODE_PORT = 3        # externalTrafficPolicy

# What the service stage decided for a packet.
cpdef enum SvcResult:
    SVC_MISS = 0            # not addressed to a service: continue to routing
    SVC_HIT = 1             # nat_spec_t filled: DNAT (and maybe SNAT)
    SVC_DROP = 2            # drop, reason set
    SVC_REJECT = 3          # answer with TCP RST / ICMP unreachable, reason set

cpdef enum SvcType:
    SVC_TYPE_CLUSTER_IP = 0
    SVC_TYPE_NODE_PORT = 1
    SVC_TYPE_LOAD_BALANCER = 2

cpdef enum SvcFlags:
    SF_AFFINITY = 1         # sessionAffinity: ClientIP
    SF_ETP_LOCAL = 2        # externalTrafficPolicy: Local
    SF_ITP_LOCAL = 4        # internalTrafficPolicy: Local

cpdef enum TableMode:
    MODE_IPTABLES = 1       # unexposed ClusterIP ports / unallocated service IPs fall through
    MODE_MASQ_ALL = 2       # masqueradeAll: SNAT every ClusterIP flow
    MODE_NO_DETECTOR4 = 4   # IPv4 has no local-traffic detector (kube-proxy's no-op one): nothing is local
    MODE_LOCAL_PORT = 8     # InterfaceNamePrefix / BridgeInterface: local = arrived on a pod port
    MODE_NO_DETECTOR6 = 16  # the same for IPv6 (ClusterCIDR / NodeCIDR without a CIDR of the family)

# An address or a prefix (plen; 32/128 for a single address).
ctypedef struct addr_t:
    uint8_t ip_ver
    uint8_t plen
    uint16_t _pad
    uint32_t a4
    uint8_t a6[16]

# One backend (endpoint address + target port) of a service-port.
ctypedef struct backend_t:
    uint32_t id             # stable while the endpoint exists (conntrack flush-by-backend)
    uint8_t ip_ver
    uint8_t local           # on this node
    uint16_t port
    uint32_t a4
    uint8_t a6[16]

# A service-port's published backends: immutable once published, replaced
# whole (copy-on-write) when its endpoints change.
ctypedef struct bset_t:
    uint32_t n              # cluster-policy backends (ready, else serving+terminating)
    uint32_t n_local        # local-policy backends (node-local, same fallback)
    uint32_t m              # Maglev table size for `be` (prime; 0 when n == 0)
    uint32_t m_local
    backend_t* be
    backend_t* be_local
    uint32_t* lut           # m slots: index into be
    uint32_t* lut_local     # m_local slots: index into be_local

ctypedef struct svc_port_t:
    uint8_t proto
    uint8_t ip_ver
    uint8_t type            # SvcType
    uint8_t flags           # SvcFlags
    uint16_t port
    uint16_t node_port      # 0: none
    uint32_t affinity_timeout   # seconds
    uint32_t src_off        # loadBalancerSourceRanges: [src_off, src_off+src_n) of src_ranges
    uint32_t src_n
    uint32_t _pad
    bset_t* bs

# Frontend hash slot: (proto, address, port) -> service-port. Also used with
# proto = port = 0 for the set of live ClusterIPs.
ctypedef struct fe_entry_t:
    uint8_t used
    uint8_t proto
    uint8_t ip_ver
    uint8_t kind            # FrontendKind
    uint16_t port
    uint16_t _pad
    uint32_t svc
    uint32_t a4
    uint8_t a6[16]

# Session-affinity slot: (service-port, client address) -> backend until expiry.
ctypedef struct aff_entry_t:
    uint32_t svc            # NO_ID: empty
    uint32_t backend        # backend id
    uint32_t hint           # index of the backend in the set it was chosen from
    uint8_t ip_ver
    uint8_t _pad[3]
    uint32_t a4
    uint8_t a6[16]
    uint64_t expires_ns

ctypedef struct svc_tables_t:
    uint32_t mode           # TableMode
    uint32_t n_svc
    svc_port_t* svc
    fe_entry_t* fe
    uint32_t fe_mask
    fe_entry_t* vips
    uint32_t vip_mask
    uint32_t* nodeport      # [ip_ver 4/6][proto tcp/udp/sctp][port - np_lo] -> svc id
    uint16_t np_lo
    uint16_t np_hi
    uint32_t n_np_addrs
    addr_t* np_addrs        # node addresses NodePorts answer on
    uint32_t n_svc_cidrs
    addr_t* svc_cidrs
    uint32_t n_local_cidrs
    addr_t* local_cidrs     # local-traffic detection: cluster CIDRs or node pod CIDRs
    uint32_t n_node_addrs
    addr_t* node_addrs      # the node's own addresses (host-originated traffic)
    uint32_t n_pod_ports
    uint8_t* pod_ports      # MODE_LOCAL_PORT: [port id] -> 1 for a local pod's port
    uint32_t n_src_ranges
    addr_t* src_ranges
    uint32_t has_snat4
    uint32_t snat4
    uint32_t has_snat6
    uint8_t snat6[16]
    uint16_t snat_lo
    uint16_t snat_hi
    aff_entry_t* aff
    uint32_t aff_mask


# Frontend match: which service-port a new flow addresses. SVC_HIT sets *svc
# and *kind; SVC_DROP / SVC_REJECT set *reason (R_SVC_UNALLOCATED_IP,
# R_SVC_PORT_NOT_EXPOSED); SVC_MISS: not a service, continue to routing.
cdef int svc_match(const svc_tables_t* t, const pkt_meta_t* p, uint32_t* svc,
                   uint8_t* kind, uint16_t* reason) noexcept nogil

# Backend choice + masquerade decision for a matched service-port; fills nat.
# Returns SVC_HIT, or SVC_DROP / SVC_REJECT with *reason (R_SVC_SOURCE_RANGE,
# R_SVC_NO_ENDPOINTS, R_SVC_NO_LOCAL_ENDPOINTS). Updates the affinity table.
cdef int svc_choose(svc_tables_t* t, uint32_t svc, uint8_t kind, const pkt_meta_t* p,
                    nat_spec_t* nat, uint16_t* reason) noexcept nogil

# Prefetch what svc_choose will read for (svc, p): step 0 the record, 1 its backend
# set, 2 the Maglev slots, 3 the backends. Issue each step for a whole batch first.
cdef void svc_prefetch(const svc_tables_t* t, uint32_t svc, const pkt_meta_t* p,
                       int step) noexcept nogil

# The service-port whose frontend (proto, address, port) is (a ClusterIP, external or
# load-balancer IP with its port, or a NodePort on an address NodePorts answer on),
# NO_ID when none; whether an address is one of the node's own. Read only: flow
# sharding (kdp/_fast/shard.pyx) asks them of both ends of a tuple.
cdef uint32_t svc_frontend(const svc_tables_t* t, uint8_t proto, uint8_t ver, uint32_t a4,
                           const uint8_t* a6, uint16_t port) noexcept nogil
cdef bint svc_is_node_address(const svc_tables_t* t, uint8_t ver, uint32_t a4,
                              const uint8_t* a6) noexcept nogil

# svc_match then svc_choose.
cdef int svc_decide(svc_tables_t* t, const pkt_meta_t* p, nat_spec_t* nat,
                    uint16_t* reason) noexcept nogil

# Fill lut[0..m) with indices into be[0..n) (Maglev population). m prime, n >= 1.
cdef void maglev_fill(const backend_t* be, uint32_t n, uint32_t m, uint32_t* lut) noexcept nogil


cdef class ServiceTables:
    cdef svc_tables_t t
    cdef bset_t** retired           # replaced backend sets, freed at the next publish
    cdef Py_ssize_t n_retired
    cdef Py_ssize_t cap_retired
    cdef readonly uint32_t next_backend_id
    cdef void _free_retired(self) noexcept
    cdef object _ids(self, bset_t* bs)
