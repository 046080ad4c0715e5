# Routing: where a packet goes once its (post-NAT) destination is known.
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from kdp._fast.packet cimport Batch, pkt_meta_t
from kdp._fast.lpm cimport Lpm4
from kdp._fast.lpm6 cimport Lpm6
from kdp._fast.neigh cimport Neighbours

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

cdef enum RouteFlags:
    RF_HOST = 1             # a /32 or /128: the route of one address (a pod's own)
    RF_ONLINK = 2           # the next hop is the packet's own destination (a connected subnet)
    RF_NEXTHOP = 4          # via4/via6 hold the next hop (tunnel endpoint, gateway, the pod)
    RF_STATIC_MAC = 8       # dst_mac is configured: learned neighbours never replace it
    RF_VIA6 = 16            # the next hop is an IPv6 address (via6), else IPv4 (via4)

cdef enum TunnelFast:
    TF_NONE = 0             # the general case (encap.pyx: _encapsulate), or no tunnel
    TF_IPIP4 = 1            # IP-in-IP, IPv4 outer: tunnel_out.pxd for IPv4 in untagged Ethernet
    TF_VXLAN4 = 2           # VXLAN over IPv4: the same
    TMETA_LEN = 40          # route_t.tmeta

# One route record (route_id indexes them). Addresses: IPv4 host order, IPv6 network order.
ctypedef struct route_t:
    uint8_t kind            # RouteKind
    uint8_t encap           # Encap, for RT_REMOTE_NODE
    uint8_t flags           # RouteFlags
    uint8_t tfast           # TunnelFast: which inline case of tunnel_out.pxd the route's packets take
    uint16_t port           # out port (RT_LOCAL_POD, RT_REMOTE_NODE, RT_UPLINK)
    uint16_t mtu            # largest IP packet the route carries (inner, for tunnels); 0: no limit
    uint32_t via4           # the next hop (RF_NEXTHOP): remote node / tunnel endpoint, gateway, pod
    uint8_t via6[16]
    uint8_t dst_mac[6]      # the next hop's MAC: configured, else the placeholder for it
    uint8_t src_mac[6]      # the egress port's MAC
    uint8_t vtep_mac[6]     # VXLAN: the remote VTEP's MAC (inner Ethernet destination)
    uint16_t vxlan_port     # VXLAN: UDP destination port
    uint32_t vni            # VXLAN: network identifier
    # tunnels: the headers in front of the inner packet (outer Ethernet, outer IP, for VXLAN
    # UDP + VXLAN + the inner Ethernet header), with the per-packet fields zero; the encap
    # stage copies them and patches lengths, identification, TOS, TTL, ports, checksum
    uint16_t tmpl_len       # 34 (IP-in-IP), 64 (VXLAN over IPv4), 84 (VXLAN over IPv6)
    uint16_t _pad1
    uint32_t tmpl_sum       # IPv4: one's complement sum of the outer header's fixed words
    uint8_t tmpl[88]
    # IPv4-outer tunnels (tfast set): the metadata of a packet in this tunnel, pkt_meta_t's
    # bytes from l3_off to dst4 (TMETA_LEN), per-packet fields (ttl, frag_id, sport) zero
    uint8_t tmeta[40]

# What to do with a forwarded packet its route sends into a tunnel (the encap stage's
# egress_one), called by the route stage while the packet is in cache; NULL: leave it
# for the encap stage.
ctypedef void (*tunnel_fn_t)(RouteTable t, Neighbours n, Batch b, Py_ssize_t i) noexcept nogil

cdef class RouteTable:
    cdef readonly Lpm4 lpm4
    cdef readonly Lpm6 lpm6
    cdef readonly object records        # numpy array of route_t (as bytes records)
    cdef route_t* r
    cdef readonly Py_ssize_t n_routes
    cdef readonly list routes           # the Route objects it was built from
    cdef object scratch
    cdef uint32_t* ids                  # a batch's route ids by IPv4 address (scratch)
    cdef uint32_t* ids6                 # ... by IPv6 address
    # the node: its own addresses (martian checks), where its ICMP errors and tunnels come from
    cdef object local4_arr, local6_arr
    cdef const uint32_t* local4
    cdef const uint8_t* local6
    cdef Py_ssize_t n_local4, n_local6
    cdef readonly uint32_t src4         # the node's primary IPv4 address (0: none)
    cdef uint8_t src6[16]               # the node's primary IPv6 address
    cdef readonly bint has_src4, has_src6
    cdef uint8_t vtep_mac[6]            # this node's VXLAN VTEP MAC (inner Ethernet source)
    cdef readonly bint martians         # drop martian packets from the wire
    cdef readonly Py_ssize_t n_tunnels  # routes into a tunnel
    cdef object health_arr              # uint8[8192]: bit per TCP port, Services' healthCheckNodePorts
    cdef const uint8_t* health_ports
    cdef bint has_health_ports
    cdef bint health_any4, health_any6  # the health server listens on every address of the family
    cdef object health4_arr, health6_arr
    cdef const uint32_t* health4        # else on these (kube-proxy's NodePort addresses)
    cdef const uint8_t* health6
    cdef Py_ssize_t n_health4, n_health6

    cdef void classify_ingress(self, Batch b) noexcept nogil
    cdef uint32_t route_batch(self, Batch b, Neighbours n, tunnel_fn_t tunnel) noexcept nogil
    cdef bint route_answer(self, Batch b, Py_ssize_t i) noexcept nogil
    cdef void send_error(self, Batch b, Py_ssize_t i, uint8_t type, uint8_t code, uint32_t info,
                         uint8_t stage, uint16_t reason) noexcept nogil

# The Ethernet addresses of a frame leaving through route rec: source the egress
# port's MAC, destination the next hop's (configured, else learned in n, else the
# placeholder). Frames of other link types are left as they are.
cdef void set_link_addresses(const route_t* rec, Neighbours n, Batch b, pkt_meta_t* p) noexcept nogil
