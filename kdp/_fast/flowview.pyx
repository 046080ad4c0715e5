# cython: boundscheck=False, wraparound=False
"""Flow records as tools see them: a copy of a conntrack record (ct_flow_t), taken when a
trace point passed or when the flow ended, turned into the dict Conntrack.flow() gives
(without its timeout, which needs the live table). Not on the per-packet path."""
import ipaddress

from libc.string cimport memcpy
from libc.stdint cimport uint8_t, uint32_t

from kdp._fast.packet cimport NO_ID
from kdp._fast.mix cimport P_TCP
from kdp._fast.ct_table cimport (ct_flow_t, ct_key_t, ct_flow_key, ct_flow_packets, ct_flow_bytes,
                                 FL_ASSURED, FL_SEEN_REPLY, FL_NAT, FL_DNAT, FL_SNAT, FL_STREAM)
from kdp._fast.conntrack import TCP_STATE_NAMES

#: bytes of one flow record (what FLOW_RECORD_BYTES-long copies hold)
FLOW_RECORD_BYTES = sizeof(ct_flow_t)


cdef object _addr(const uint32_t* w, uint8_t ver):
    if ver == 4:
        return str(ipaddress.IPv4Address(w[0]))
    return str(ipaddress.IPv6Address((<const char*>w)[:16]))


cdef dict flow_dict(const ct_flow_t* f, uint32_t fid):
    cdef ct_key_t o, r
    cdef ct_flow_t c
    memcpy(&c, f, sizeof(ct_flow_t))
    ct_flow_key(&c, 0, &o)
    ct_flow_key(&c, 1, &r)
    return {
        "id": fid, "ip_ver": c.ip_ver, "proto": c.proto,
        "orig": (_addr(o.src, c.ip_ver), _addr(o.dst, c.ip_ver), o.sport, o.dport),
        "reply": (_addr(r.src, c.ip_ver), _addr(r.dst, c.ip_ver), r.sport, r.dport),
        "state": TCP_STATE_NAMES[c.state] if c.proto == P_TCP else "",
        "assured": bool(c.flags & FL_ASSURED), "seen_reply": bool(c.flags & FL_SEEN_REPLY),
        "stream": bool(c.flags & FL_STREAM),
        "nat": bool(c.flags & FL_NAT), "dnat": bool(c.flags & FL_DNAT), "snat": bool(c.flags & FL_SNAT),
        "packets": (ct_flow_packets(&c, 0), ct_flow_packets(&c, 1)),
        "bytes": (ct_flow_bytes(&c, 0), ct_flow_bytes(&c, 1)),
        "last_ns": c.last_ns,
        "svc_port": None if c.svc_port == NO_ID else c.svc_port,
        "backend": None if c.backend == NO_ID else c.backend,
    }


def decode_flow(record, uint32_t fid=NO_ID):
    """The dict of a flow record copy (FLOW_RECORD_BYTES bytes-like)."""
    cdef const uint8_t[::1] view = memoryview(bytes(record)).cast("B")
    if view.shape[0] < sizeof(ct_flow_t):
        raise ValueError("a flow record is %d bytes" % sizeof(ct_flow_t))
    return flow_dict(<const ct_flow_t*>&view[0], fid)
