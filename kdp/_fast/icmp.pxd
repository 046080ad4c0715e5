# ICMP / ICMPv6 answers a router sends, built in place of the packet they answer:
# errors (time exceeded, fragmentation needed, packet too big) and echo replies.
from libc.stdint cimport uint8_t, uint16_t, uint32_t
from kdp._fast.packet cimport Batch, pkt_meta_t

cdef enum:
    ICMP_ERR4_QUOTE = 548       # 576 - 20 - 8: the error fits the IPv4 minimum MTU (RFC 1812 4.3.2.3)
    ICMP_ERR6_QUOTE = 1232      # 1280 - 40 - 8: fits the IPv6 minimum MTU (RFC 4443 2.4 (c))
    ICMP_TTL = 64               # TTL / hop limit of kdp's own answers (Linux's default)
    # types and codes (RFC 792, RFC 4443)
    ICMP4_ECHO_REPLY = 0
    ICMP4_DEST_UNREACH = 3
    ICMP4_FRAG_NEEDED = 4       # code of ICMP4_DEST_UNREACH
    ICMP4_ECHO = 8
    ICMP4_TIME_EXCEEDED = 11
    ICMP6_PKT_TOO_BIG = 2
    ICMP6_TIME_EXCEEDED = 3
    ICMP6_ECHO = 128
    ICMP6_ECHO_REPLY = 129

# May an ICMP error be sent about packet p (parsed)? Not about an ICMP error, a
# later IPv4 fragment, a multicast/broadcast destination (IPv6: except packet too
# big) or a source that is not a unicast address (RFC 1122 3.2.2, RFC 1812
# 4.3.2.7, RFC 4443 2.4 (e)).
cdef bint icmp_error_allowed(const pkt_meta_t* p, bint too_big) noexcept nogil

# Turn packet i of b into an ICMP (ip_ver 4) / ICMPv6 (6) error of `type`/`code` to
# its sender, in place: the original IP packet, cut to ICMP_ERR4/6_QUOTE bytes, is the
# quote; `info` is the 32-bit field after the checksum (the next-hop MTU of
# "fragmentation needed", the MTU of "packet too big", else 0); the error comes
# from src4 / src6 (host order / network order). Ethernet frames keep an Ethernet
# header (addresses as they were: the egress stage writes them), other link
# types become raw IP. Sets the metadata of the new packet (tuple, quote fields,
# offsets) but no verdict. Returns 0, or R_NO_HEADROOM when the headers do not
# fit in front of the packet (the packet is then unchanged).
cdef uint16_t icmp_error(Batch b, Py_ssize_t i, uint8_t type, uint8_t code, uint32_t info,
                         uint32_t src4, const uint8_t* src6) noexcept nogil

# Is packet p an echo request kdp may answer (unfragmented ICMP type 8 code 0 /
# ICMPv6 type 128)?
cdef bint icmp_is_echo_request(const pkt_meta_t* p, const uint8_t* pkt) noexcept nogil

# Turn an echo request (icmp_is_echo_request) into its echo reply, in place: the
# addresses swap (the reply comes from the address asked), TTL / hop limit
# ICMP_TTL, DF cleared, type 0 / 129, checksums updated. Sets no verdict.
cdef void icmp_echo_reply(Batch b, pkt_meta_t* p) noexcept nogil
