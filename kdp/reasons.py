"""Verdicts, stages and the one reason enum, as Python sees them.

The fast core defines these (kdp/_fast/packet.pxd); this module mirrors them so
that Python code, the log format and the docs do not depend on the compiled
module's names. tests/test_reasons.py checks that the two agree. A reason's
log name is its lower-case enum name (``Reason.CT_INVALID.label == "ct_invalid"``).
"""
from enum import IntEnum


class _Labelled(IntEnum):
    @property
    def label(self) -> str:
        return self.name.lower()


class Verdict(_Labelled):
    PENDING = 0
    FORWARD = 1
    DROP = 2
    REJECT = 3
    LOCAL = 4
    REPLY = 5


class Stage(_Labelled):
    RX = 0
    PARSE = 1
    DECAP = 2
    CONNTRACK = 3
    SERVICE = 4
    POLICY = 5
    NAT = 6
    ROUTE = 7
    ENCAP = 8
    TX = 9
    DNS = 10


class Reason(_Labelled):
    FORWARDED = 0
    LOCAL_DELIVERY = 1
    UNSUPPORTED_LINKTYPE = 2
    OVERSIZE_FRAME = 3
    TRUNCATED_L2 = 4
    TRUNCATED_VLAN = 5
    UNSUPPORTED_ETHERTYPE = 6
    ARP = 7
    TRUNCATED_ARP = 8
    TRUNCATED_IPV4 = 9
    BAD_IP_VERSION = 10
    BAD_IPV4_IHL = 11
    BAD_IPV4_TOTAL_LENGTH = 12
    TRUNCATED_IPV6 = 13
    BAD_IPV6_PAYLOAD_LENGTH = 14
    TRUNCATED_IPV6_EXT = 15
    TOO_MANY_IPV6_EXT = 16
    TRUNCATED_TCP = 17
    BAD_TCP_DATA_OFFSET = 18
    TRUNCATED_UDP = 19
    BAD_UDP_LENGTH = 20
    TRUNCATED_SCTP = 21
    TRUNCATED_ICMP = 22
    TRUNCATED_ICMP_QUOTE = 23
    TRUNCATED_TUNNEL = 24
    BAD_VXLAN = 25
    UNKNOWN_TUNNEL_PEER = 26
    CT_INVALID = 27
    CT_TABLE_FULL = 28
    NAT_PORTS_EXHAUSTED = 29
    FRAG_NO_FLOW = 30
    SVC_NO_ENDPOINTS = 31
    SVC_PORT_NOT_EXPOSED = 32
    SVC_UNALLOCATED_IP = 33
    SVC_SOURCE_RANGE = 34
    SVC_NO_LOCAL_ENDPOINTS = 35
    POLICY_DENIED_INGRESS = 36
    POLICY_DENIED_EGRESS = 37
    NO_ROUTE = 38
    TTL_EXCEEDED = 39
    MTU_EXCEEDED = 40
    NO_HEADROOM = 41
    NOT_TRANSMITTED = 42
    BAD_IPV4_CHECKSUM = 43
    BAD_ICMP_QUOTE = 44
    DNS_ANSWERED = 45
    DNS_FORMERR = 46
    DNS_MALFORMED = 47
    MARTIAN_SOURCE = 48
    MARTIAN_LOCAL_SOURCE = 49
    MARTIAN_DESTINATION = 50
    LINK_LOCAL = 51
    ECHO_REPLIED = 52
    FORWARDED_IPIP = 53
    FORWARDED_VXLAN = 54
    FORWARDED_FRAGMENTED = 55
    TUNNEL_NOT_DECAPSULATED = 56
    UNDERLAY_HOP_LIMIT = 57
    CAPTURED_OUTGOING = 58
    OTHERHOST = 59
    SVC_HEALTH_CHECK = 60
    FILTERED = 61
    FORWARDED_SEGMENTED = 62


class CtState(_Labelled):
    NONE = 0
    NEW = 1
    ESTABLISHED = 2
    REPLY = 3
    RELATED = 4
    INVALID = 5
