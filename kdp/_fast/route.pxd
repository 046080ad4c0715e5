# Routing: where a packet goes once its (post-NAT) destination is known.
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from kdp._fast.packet cimport Batch
from kdp._fast.lpm cimport Lpm4
from kdp._fast.lpm6 cimport Lpm6

cpdef enum RouteKind:
    RT_BLACKHOLE = 0        # known but unreachable (unused pod addresses): drop R_NO_ROUTE
    RT_LOCAL_POD = 1        # a pod on this node: out on its port
    RT_HOST = 2             # the node itself: V_LOCAL
    RT_REMOTE_NODE = 3      # another node's pod block: out the uplink (encapsulated when set)
    RT_UPLINK = 4           # anything else through the uplink (default route)

cpdef enum Encap:
    ENCAP_NONE = 0
    ENCAP_IPIP = 1
    ENCAP_VXLAN = 2

ctypedef struct route_t:
    uint8_t kind            # RouteKind
    uint8_t encap           # Encap, for RT_REMOTE_NODE
    uint16_t port           # out port (RT_LOCAL_POD, RT_REMOTE_NODE, RT_UPLINK)
    uint8_t is_host         # a /32 or /128: the route of one address (a pod's own)
    uint8_t _pad[3]
    uint32_t via4           # the remote node's address (host order): tunnel endpoint
    uint8_t via6[16]

cdef class RouteTable:
    cdef readonly Lpm4 lpm4
    cdef readonly Lpm6 lpm6
    cdef readonly object records        # numpy array of route_t (as bytes records)
    cdef route_t* r
    cdef readonly Py_ssize_t n_routes
    cdef readonly list routes           # the Route objects it was built from
    cdef object scratch
    cdef uint32_t* ids

    cdef void classify_ingress(self, Batch b) noexcept nogil
    cdef void route_batch(self, Batch b) noexcept nogil
