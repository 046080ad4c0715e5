# Connection tracking: the Conntrack table object, the stage entry points the
# pipeline calls, and (re-exported here, so the stages' users cimport one
# module) the table types and helpers nat.pyx and pipeline.pyx use. The parts:
# ct_table (records, index, deletion), ct_tcp (TCP state machine), ct_expiry
# (timeouts, expiry, early drop), ct_keys (packet keys, fragments); see
# conntrack.pyx's docstring for the stage contracts.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from kdp._fast.packet cimport Batch
from kdp._fast.flow cimport nat_spec_t
from kdp._fast.ct_table cimport (
    ct_table_t, ct_flow_t, ct_key_t, ct_flow_key, ct_find, ct_delete, FL_USED, FL_NAT,
)
from kdp._fast.ct_keys cimport ct_pkt_key, ct_quote_l4, K_NONE, K_FLOW, K_ERROR, K_FRAG

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
    cdef object _flow_log               # numpy arrays behind t.ended... (None: the flow log is off)
    cdef dict _flow_dict(self, const ct_flow_t* f, uint32_t fid)
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
