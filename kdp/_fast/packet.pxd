# The packet batch: the one structure every stage of kdp works on.
#
# A batch is one contiguous byte buffer plus one metadata record per packet.
# Packets sit back to back in the buffer, each with HEADROOM free bytes in
# front of it, so encapsulation (and reject replies) can prepend headers by
# moving `off` back instead of copying the payload.
#
# Offsets inside a packet (l3_off, l4_off, ...) are relative to `off`, so
# prepending a header means: off -= n, and every inner offset += n.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t

cdef enum:
    HEADROOM = 128          # bytes free in front of every packet
    MAX_FRAME = 9216        # largest frame a batch holds (jumbo)
    MAX_GSO_FRAME = 65600   # largest TCP super-frame (gso_size set): Ethernet, 2 VLAN tags, IPv6, 64 KiB
    SLOT_ALIGN = 64         # packets start on cache lines
    DEFAULT_BATCH = 256
    NO_PORT = 0xFFFF
    NO_ID = 0xFFFFFFFF

# Link types (tcpdump.org LINKTYPE_ values) the core knows.
cpdef enum LinkType:
    LT_NULL = 0             # BSD loopback, host-order AF word
    LT_ETHERNET = 1
    LT_RAW = 101            # raw IPv4 or IPv6
    LT_LOOP = 108           # OpenBSD loopback, network-order AF word
    LT_LINUX_SLL = 113
    LT_IPV4 = 228
    LT_IPV6 = 229
    LT_LINUX_SLL2 = 276

cpdef enum Verdict:
    V_PENDING = 0           # still travelling through the pipeline
    V_FORWARD = 1           # transmitted on out_port
    V_DROP = 2
    V_REJECT = 3            # answered with a TCP RST / ICMP unreachable
    V_LOCAL = 4             # delivered to the node itself
    V_REPLY = 5             # answered by kdp itself (a DNS answer, an ICMP echo reply); the route
                            # stage routes the reply to its destination (out_port = in_port but
                            # for a sender behind a tunnel: the tunnel's)
    N_VERDICTS = 6

cpdef enum Stage:
    ST_RX = 0
    ST_PARSE = 1
    ST_DECAP = 2
    ST_CONNTRACK = 3
    ST_SERVICE = 4
    ST_POLICY = 5
    ST_NAT = 6
    ST_ROUTE = 7
    ST_ENCAP = 8
    ST_TX = 9
    ST_DNS = 10             # cluster DNS answered in the data plane (after ingress, before conntrack)
    N_STAGES = 11

# Every packet ends with exactly one reason, drop or not, and the counters
# array is indexed [stage, reason]: a run's counters add up to its input.
# kdp/reasons.py mirrors this enum (tests/test_reasons.py checks it).
# Append new reasons at the end; names are part of the log format.
cpdef enum Reason:
    R_FORWARDED = 0
    R_LOCAL_DELIVERY = 1
    # rx
    R_UNSUPPORTED_LINKTYPE = 2
    R_OVERSIZE_FRAME = 3
    # parse: link layer
    R_TRUNCATED_L2 = 4
    R_TRUNCATED_VLAN = 5
    R_UNSUPPORTED_ETHERTYPE = 6
    R_ARP = 7                   # ARP is for the node's neighbour handling
    R_TRUNCATED_ARP = 8
    # parse: IPv4
    R_TRUNCATED_IPV4 = 9
    R_BAD_IP_VERSION = 10
    R_BAD_IPV4_IHL = 11
    R_BAD_IPV4_TOTAL_LENGTH = 12
    # parse: IPv6
    R_TRUNCATED_IPV6 = 13
    R_BAD_IPV6_PAYLOAD_LENGTH = 14
    R_TRUNCATED_IPV6_EXT = 15
    R_TOO_MANY_IPV6_EXT = 16
    # parse: L4
    R_TRUNCATED_TCP = 17
    R_BAD_TCP_DATA_OFFSET = 18
    R_TRUNCATED_UDP = 19
    R_BAD_UDP_LENGTH = 20
    R_TRUNCATED_SCTP = 21
    R_TRUNCATED_ICMP = 22
    R_TRUNCATED_ICMP_QUOTE = 23
    R_TRUNCATED_TUNNEL = 24
    # decap
    R_BAD_VXLAN = 25
    R_UNKNOWN_TUNNEL_PEER = 26
    # conntrack / nat
    R_CT_INVALID = 27
    R_CT_TABLE_FULL = 28
    R_NAT_PORTS_EXHAUSTED = 29
    R_FRAG_NO_FLOW = 30
    # service
    R_SVC_NO_ENDPOINTS = 31
    R_SVC_PORT_NOT_EXPOSED = 32
    R_SVC_UNALLOCATED_IP = 33
    R_SVC_SOURCE_RANGE = 34
    R_SVC_NO_LOCAL_ENDPOINTS = 35
    # policy
    R_POLICY_DENIED_INGRESS = 36
    R_POLICY_DENIED_EGRESS = 37
    # route / encap / tx
    R_NO_ROUTE = 38
    R_TTL_EXCEEDED = 39
    R_MTU_EXCEEDED = 40
    R_NO_HEADROOM = 41
    R_NOT_TRANSMITTED = 42      # no output attached for out_port
    R_BAD_IPV4_CHECKSUM = 43
    R_BAD_ICMP_QUOTE = 44       # ICMP error quoting a header of the wrong IP version / IHL < 5
    # dns
    R_DNS_ANSWERED = 45         # a query answered from the compiled zone (NOERROR, NXDOMAIN or NODATA)
    R_DNS_FORMERR = 46          # a malformed query answered with FORMERR (or BADVERS)
    R_DNS_MALFORMED = 47        # dropped: shorter than a DNS header, or a response (QR set)
    # router behaviour, encapsulation, MTU (route / encap stages)
    R_MARTIAN_SOURCE = 48       # from the wire: loopback, multicast, broadcast or 0.0.0.0/8 source
    R_MARTIAN_LOCAL_SOURCE = 49 # from the wire with one of the node's own addresses as source
    R_MARTIAN_DESTINATION = 50  # from the wire to a loopback (127/8, ::1) or 0.0.0.0/8 destination
    R_LINK_LOCAL = 51           # multicast, broadcast or IPv6 link-local destination: for the node, never forwarded
    R_ECHO_REPLIED = 52         # ICMP / ICMPv6 echo request to a node address, answered (V_REPLY)
    R_FORWARDED_IPIP = 53       # forwarded, encapsulated IP-in-IP to another node
    R_FORWARDED_VXLAN = 54      # forwarded, encapsulated in VXLAN to another node
    R_FORWARDED_FRAGMENTED = 55 # forwarded as IPv4 fragments (no DF, larger than the route's MTU)
    R_TUNNEL_NOT_DECAPSULATED = 56  # V_LOCAL: IP-in-IP or VXLAN to the node that no tunnel settings decapsulate
    R_UNDERLAY_HOP_LIMIT = 57   # multi-node replay: crossed too many nodes (a routing loop)
    # rx: the capture's own record of a packet's direction (Linux cooked, pcapng epb_flags)
    R_CAPTURED_OUTGOING = 58    # the capture saw the node send it: output, not input
    R_OTHERHOST = 59            # a frame for another host's MAC (the kernel drops it before IP)
    # route: kube-proxy's health check server
    R_SVC_HEALTH_CHECK = 60     # V_LOCAL: TCP to a Service's healthCheckNodePort on a node address
    # rx: kdp replay --filter EXPR
    R_FILTERED = 61             # the filter expression did not match it: counted, not processed
    # encap: a TCP super-frame a TAP handed over (GSO) cut into segments before its tunnel
    R_FORWARDED_SEGMENTED = 62
    N_REASONS = 63

# Fragment position of an IP packet.
cdef enum Frag:
    FRAG_NONE = 0
    FRAG_FIRST = 1
    FRAG_LATER = 2

cdef enum Tunnel:
    TUN_NONE = 0
    TUN_IPIP = 1            # IPv4 protocol 4 (or 41: IPv6 in IPv4)
    TUN_VXLAN = 2           # UDP to the VXLAN port

# Connection-tracking state of a packet, as the log reports it.
cpdef enum CtState:
    CT_NONE = 0
    CT_NEW = 1
    CT_ESTABLISHED = 2
    CT_REPLY = 3
    CT_RELATED = 4
    CT_INVALID = 5

# One record per packet. Layout is defined here only; packet.pyx builds the
# matching numpy dtype from it and tests/test_packet.py checks the offsets.
ctypedef struct pkt_meta_t:
    # where the packet is
    uint64_t ts_ns          # capture timestamp, nanoseconds since the epoch
    uint32_t off            # first byte of the frame in the batch buffer
    uint32_t len            # bytes of the frame present in the buffer
    uint32_t wire_len       # length on the wire (>= len when the capture was cut)
    uint16_t linktype       # LinkType of the frame at `off`
    uint16_t in_port
    # parse results (offsets relative to `off`; 0 = absent, except l3_off for raw IP)
    uint16_t l3_off
    uint16_t l4_off
    uint16_t inner_off      # tunnel payload: inner IP (IPIP) or inner Ethernet (VXLAN)
    uint16_t quote_off      # IP header quoted by an ICMP error
    uint16_t ethertype      # after VLAN tags
    uint16_t vlan           # outermost VLAN id, NO_PORT when untagged
    uint8_t ip_ver          # 4, 6, or 0 when not IP
    uint8_t proto           # L4 protocol (after IPv6 extension headers)
    uint8_t ttl             # TTL / hop limit
    uint8_t tcp_flags
    uint8_t icmp_type
    uint8_t icmp_code
    uint16_t icmp_id        # echo identifier
    uint8_t frag            # Frag
    uint8_t tunnel          # Tunnel
    uint16_t sport          # host byte order
    uint16_t dport
    uint8_t encap           # Tunnel kdp put the packet in on its way out (TUN_NONE: none)
    uint8_t _pad0
    uint32_t frag_id        # IPv4 ID or IPv6 fragment identification
    uint32_t src4           # IPv4 addresses, host byte order
    uint32_t dst4
    uint8_t src6[16]        # IPv6 addresses, network byte order
    uint8_t dst6[16]
    # the header quoted inside an ICMP / ICMPv6 error (q_proto 0: none)
    uint8_t q_proto
    uint8_t decap           # Tunnel the packet arrived through (decapsulated by kdp; TUN_NONE: none)
    uint16_t q_sport
    uint16_t q_dport
    uint16_t _pad2
    uint32_t q_src4
    uint32_t q_dst4
    uint8_t q_src6[16]
    uint8_t q_dst6[16]
    # what the pipeline decided
    uint8_t verdict         # Verdict
    uint8_t stage           # Stage that set the verdict
    uint16_t reason         # Reason
    uint16_t out_port
    uint8_t ct_state        # CtState
    uint8_t trace           # 1: record this packet's path
    uint32_t flow_id        # conntrack flow, NO_ID when none
    uint32_t svc_port       # service-port id, NO_ID when none
    uint32_t route_id       # route the destination matched, NO_ID when none
    uint16_t pol_egress     # policy decision of a new flow's egress (kdp/_fast/policy.pyx), 0: none
    uint16_t pol_ingress    # ... and of its ingress
    uint64_t hash           # flow hash (symmetric in neither direction: of the tuple as seen)
    # a TCP super-frame from a TAP with TSO (kdp attach; 0 in replay): the payload bytes of
    # each segment it stands for. Its L4 checksum field holds the pseudo-header sum only
    # (VIRTIO_NET_HDR_F_NEEDS_CSUM); whoever transmits it recomputes that sum.
    uint16_t gso_size
    uint8_t _pad3[6]


cdef class Batch:
    cdef readonly object buffer         # numpy uint8, the bytes
    cdef readonly object meta           # numpy structured array, one record per packet
    cdef uint8_t* buf
    cdef pkt_meta_t* m
    cdef readonly Py_ssize_t capacity   # packets
    cdef readonly Py_ssize_t buf_size   # bytes
    cdef public Py_ssize_t count        # packets present
    cdef public Py_ssize_t used         # bytes of the buffer in use

    cdef int push(self, const uint8_t* data, uint32_t caplen, uint32_t wire_len,
                  uint64_t ts_ns, uint16_t linktype, uint16_t in_port) noexcept nogil


cdef void meta_reset(pkt_meta_t* p) noexcept nogil
cdef inline void set_verdict(pkt_meta_t* p, uint8_t verdict, uint8_t stage, uint16_t reason) noexcept nogil:
    p.verdict = verdict
    p.stage = stage
    p.reason = reason

cdef inline uint32_t ip_length(const pkt_meta_t* p, const uint8_t* ip) noexcept nogil:
    """The IP packet's length from its header at ip (IPv4 total length, IPv6 40 + payload)."""
    if p.ip_ver == 4:
        return (<uint32_t>ip[2] << 8) | ip[3]
    return 40 + ((<uint32_t>ip[4] << 8) | ip[5])

cdef inline uint32_t tcp_headers_length(const pkt_meta_t* p, const uint8_t* ip) noexcept nogil:
    """IP and TCP header bytes of a TCP packet whose IP header is at ip (up to its payload)."""
    cdef uint32_t l4 = <uint32_t>(p.l4_off - p.l3_off)
    return l4 + (ip[l4 + 12] >> 4) * 4

cdef inline uint32_t segment_ip_length(const pkt_meta_t* p, const uint8_t* ip) noexcept nogil:
    """The IP length an MTU is checked against: the packet's, or for a GSO super-frame its
    largest segment's (headers + gso_size), as Linux's skb_gso_validate_network_len
    checks it."""
    cdef uint32_t total = ip_length(p, ip), seg
    if p.gso_size == 0 or p.l4_off <= p.l3_off:
        return total
    seg = tcp_headers_length(p, ip) + p.gso_size
    return seg if seg < total else total

cdef inline void drop(pkt_meta_t* p, uint8_t stage, uint16_t reason) noexcept nogil:
    p.verdict = V_DROP
    p.stage = stage
    p.reason = reason


cdef inline Py_ssize_t field_offset(const void* field, const void* base) noexcept nogil:
    """The byte offset of a struct's field (for numpy dtypes that share the C layout)."""
    return <Py_ssize_t>(<uintptr_t>field - <uintptr_t>base)
