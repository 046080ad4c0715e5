# Reject: answer a packet with ICMP / ICMPv6 port unreachable, built in place.
from libc.stdint cimport uint8_t, uint16_t
from kdp._fast.packet cimport Batch, pkt_meta_t

cdef enum:
    ICMP4_QUOTE_MAX = 548       # 576 - 20 - 8: the reply fits the IPv4 minimum MTU (RFC 1812 4.3.2.3)
    ICMP6_QUOTE_MAX = 1232      # 1280 - 40 - 8: fits the IPv6 minimum MTU (RFC 4443 2.4 (c))

# Turn packet i into the ICMP port-unreachable reply to its sender, sent back on
# its ingress port: verdict V_REJECT at `stage` with `reason`. Drops it with
# R_NO_HEADROOM when the headers do not fit in front of it.
cdef void reject_port_unreachable(Batch b, pkt_meta_t* p, uint8_t stage, uint16_t reason) noexcept nogil
