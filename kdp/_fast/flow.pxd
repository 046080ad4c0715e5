# Shared flow-level records: what the service stage decides for a new flow and
# conntrack records on it. Definitions only (no .pyx): conntrack, nat and
# service cimport them so that the slow path passes one struct between them.

from libc.stdint cimport uint8_t, uint16_t, uint32_t

cdef enum NatFlags:
    NAT_NONE = 0
    NAT_DNAT = 1            # rewrite the destination (service -> backend)
    NAT_SNAT = 2            # rewrite the source to snat4/snat6 (masquerade)
    NAT_SNAT_PORT = 4       # ... and pick a source port in [snat_port_lo, snat_port_hi]
    NAT_PORT_KEY = 8        # a source port picked (masquerade, or a taken reply tuple) has port_key as its low 6 bits when one is free

# A new flow's translation, filled by the service stage, consumed by conntrack
# when it creates the flow. Addresses as in pkt_meta_t: IPv4 host order,
# IPv6 network order; ports host order.
ctypedef struct nat_spec_t:
    uint8_t flags           # NatFlags
    uint8_t ip_ver
    uint16_t dnat_port
    uint32_t dnat4
    uint8_t dnat6[16]
    uint32_t snat4
    uint8_t snat6[16]
    uint16_t snat_port_lo
    uint16_t snat_port_hi
    uint32_t svc_port       # service-port id, NO_ID when none (flush by service)
    uint32_t backend        # backend id, NO_ID when none (flush by backend)
    uint8_t port_key        # NAT_PORT_KEY: the client's shard key (kdp/_fast/shard.pyx)
