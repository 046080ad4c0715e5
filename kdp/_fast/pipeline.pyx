# cython: boundscheck=False, wraparound=False
"""Runs one batch through the stages, in order, and counts the outcome.

  parse -> ingress classification -> route -> account

(conntrack, services, NAT, policy and encapsulation slot in between as they
land; see DESIGN.md.) Every stage skips packets that already have a verdict.
`account` adds each packet once to counters[stage, reason] and verdicts[verdict],
so the counters of a run add up to the packets that came in.

Tables are swapped whole between batches (`set_routes`): a batch never sees
half of a configuration change.
"""
import numpy as np
cimport numpy as cnp
from libc.stdint cimport uint16_t, uint64_t

from kdp._fast.packet cimport (Batch, pkt_meta_t, drop, V_PENDING, N_STAGES, N_REASONS,
                               ST_TX, R_NO_ROUTE)
from kdp._fast.parse cimport parse_batch, DEFAULT_VXLAN_PORT
from kdp._fast.route cimport RouteTable

cnp.import_array()


cdef class Pipeline:
    def __init__(self, RouteTable routes, uint16_t vxlan_port=DEFAULT_VXLAN_PORT):
        self.counters = np.zeros((N_STAGES, N_REASONS), dtype=np.uint64)
        self.verdicts = np.zeros(5, dtype=np.uint64)
        self.ctr = <uint64_t*>cnp.PyArray_DATA(self.counters)
        self.vctr = <uint64_t*>cnp.PyArray_DATA(self.verdicts)
        self.vxlan_port = vxlan_port
        self.routes = routes
        self.packets = 0

    def set_routes(self, RouteTable routes):
        """Swap in a new route table (between batches)."""
        self.routes = routes

    cdef void account(self, Batch b) noexcept nogil:
        cdef Py_ssize_t i
        cdef pkt_meta_t* p
        for i in range(b.count):
            p = &b.m[i]
            if p.verdict == V_PENDING:
                # no stage decided: nothing may leave undecided, so it is dropped here
                drop(p, ST_TX, R_NO_ROUTE)
            self.ctr[p.stage * N_REASONS + p.reason] += 1
            self.vctr[p.verdict] += 1
        self.packets += b.count

    def run(self, Batch b, log=None):
        """Process one batch in place. `log`, when given, gets the tuples as received."""
        cdef RouteTable routes = self.routes
        routes._ensure_scratch(b.capacity)
        with nogil:
            parse_batch(b, self.vxlan_port)
            routes.classify_ingress(b)
        if log is not None:
            log.capture_orig(b)
        with nogil:
            routes.route_batch(b)
            self.account(b)
