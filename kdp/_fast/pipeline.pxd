# The pipeline: runs a batch through the stages, and counts every packet once.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from kdp._fast.packet cimport Batch, pkt_meta_t
from kdp._fast.route cimport RouteTable
from kdp._fast.conntrack cimport Conntrack
from kdp._fast.service cimport ServiceTables, svc_tables_t
from kdp._fast.decap cimport TunnelEndpoints
from kdp._fast.neigh cimport Neighbours
from kdp._fast.natout cimport NatOutgoing
from kdp._fast.dns cimport DnsTable, dns_note_t, dns_q_t
from kdp._fast.policy cimport PolicyTables, FlowPolicy
from kdp._fast.shard cimport ShardPlan

# The service frontend a new flow matched (the slow path matches a whole batch first).
ctypedef struct new_flow_t:
    uint32_t svc
    int res
    uint16_t reason
    uint8_t kind
    uint8_t _pad

cdef class Pipeline:
    cdef readonly object counters       # uint64 [N_STAGES, N_REASONS]
    cdef readonly object verdicts       # uint64 [N_VERDICTS], by Verdict
    cdef uint64_t* ctr
    cdef uint64_t* vctr
    cdef readonly object service_counters   # uint64 [service-port id, SC_*]
    cdef uint64_t* sctr
    cdef uint32_t n_sctr
    cdef public uint16_t vxlan_port
    cdef readonly RouteTable routes
    cdef readonly ServiceTables services    # None: no Services
    cdef readonly Conntrack conntrack       # None: stateless (no NAT)
    cdef readonly TunnelEndpoints tunnels   # None: no decapsulation
    cdef readonly NatOutgoing natout        # None: no IPPool with natOutgoing
    cdef readonly PolicyTables policy       # None: no network policy
    cdef readonly FlowPolicy flow_policy    # None: established flows continue across reloads
    cdef readonly Neighbours neighbours     # learned from ARP / ND; kept across swaps
    cdef readonly Batch extra               # the IPv4 fragments / TCP segments (after the first) of the last batch
    cdef readonly uint64_t fragments        # fragments made into `extra`, all batches
    cdef readonly uint64_t segments         # TCP segments cut from GSO frames into `extra` (segment.pyx)
    cdef readonly uint64_t packets
    cdef readonly uint64_t clock_ns         # newest time seen (expiry runs on it)
    cdef uint64_t ct_now                    # time handed to conntrack (CT_PACKET_CLOCK: per packet)
    cdef public bint packet_clock           # True: time from packet timestamps (replay)
    cdef object nf_scratch                  # new_flow_t per packet of a batch
    cdef new_flow_t* nf
    cdef readonly DnsTable dns              # None: no DNS stage
    cdef readonly object dns_counters       # uint64 [N_DNS_COUNTERS], by DnsOutcome (+ truncated)
    cdef readonly object dns_notes          # dns.NOTE_DTYPE per packet of the last batch (the log's)
    cdef object dns_scratch                 # dns_q_t per packet of a batch
    cdef readonly uint64_t natout_flows     # new flows natOutgoing masqueraded (this pipeline's)
    cdef Py_ssize_t expire_work             # flow records the expiry hand examines a batch
    # flow sharding (replay --workers N, kdp/shards.py): None: this pipeline takes every packet
    cdef readonly ShardPlan shard
    cdef readonly int shard_me              # this pipeline's worker number
    cdef uint8_t* vs                        # run_view's view_vshards: each view packet's virtual shard
    cdef uint8_t* mine                      # run_view's mine: 1 where this worker processed the packet
    cdef public uint32_t shard_unsafe       # shard.pxd U_* bits: what made sharding unsafe
    cdef svc_tables_t st_own                # sharded: the service tables with an affinity table
    cdef object aff_own                     # of this worker's own (aff_own holds it)

    cdef void new_flows(self, Batch b, PolicyTables pt, FlowPolicy fp) noexcept nogil
    cdef bint _known_now(self, Batch b, pkt_meta_t* p) noexcept nogil
    cdef void account(self, Batch b) noexcept nogil
    cdef void _advance_clock(self, Batch b, uint64_t now_ns) noexcept nogil
    cdef Py_ssize_t _stages(self, Batch b, uint64_t* dns_ctr, dns_note_t* notes, dns_q_t* dq,
                            object trace) except -1 nogil
    cdef void _parse(self, Batch b) noexcept nogil
    cdef void shard_mark(self, Batch b) noexcept nogil
    cdef void shard_check_flow(self, Py_ssize_t i, uint32_t fid) noexcept nogil
