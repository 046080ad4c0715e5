"""Conntrack, as Python sees it: the table class, its settings, and a text dump.

The stages are in kdp/_fast/conntrack.pyx (lookup, create, expiry; the table,
the TCP state machine, expiry and packet keys in its ct_*.pxd/.pyx parts) and
kdp/_fast/nat.pyx (rewrites); kdp/reference/conntrack.py states the semantics in
plain Python. This module adds what tools print:
``format_flows(ct, now_ns)`` gives one line per flow in the shape of
``conntrack -L`` (protocol, seconds left, TCP state, the original tuple with its
counters, the reply tuple with its counters, [ASSURED] / [UNREPLIED]).
"""
from kdp._fast.conntrack import (
    COUNTER_NAMES, NO_FLOW, TCP_STATES, TIMEOUT_DEFAULTS, Conntrack, ConntrackConfigError,
)

# nat_spec_t flags (kdp/_fast/flow.pxd), for the `spec` dict of Conntrack.create
NAT_DNAT = 1
NAT_SNAT = 2
NAT_SNAT_PORT = 4

_PROTO = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}

__all__ = ["COUNTER_NAMES", "NO_FLOW", "NAT_DNAT", "NAT_SNAT", "NAT_SNAT_PORT", "TCP_STATES",
           "TIMEOUT_DEFAULTS", "Conntrack", "ConntrackConfigError", "format_flow", "format_flows"]


def format_flow(f, now_ns=None):
    """One flow dict (Conntrack.flow) as a conntrack -L style line."""
    name = _PROTO.get(f["proto"], "unknown")
    parts = [f"{name:<7} {f['proto']:>3}"]
    if now_ns is not None:
        left = f["timeout_s"] - (now_ns - f["last_ns"]) / 1e9
        parts.append(f"{max(0, int(left))}")
    if f["state"]:
        parts.append(f["state"])
    for (src, dst, sp, dp), pk, by in ((f["orig"], f["packets"][0], f["bytes"][0]),
                                       (f["reply"], f["packets"][1], f["bytes"][1])):
        if f["proto"] in (1, 58):
            parts.append(f"src={src} dst={dst} id={sp}")
        elif f["proto"] in (6, 17, 132):
            parts.append(f"src={src} dst={dst} sport={sp} dport={dp}")
        else:
            parts.append(f"src={src} dst={dst}")
        parts.append(f"packets={pk} bytes={by}")
        if not f["seen_reply"] and (src, dst, sp, dp) == f["orig"]:
            parts.append("[UNREPLIED]")
    if f["assured"]:
        parts.append("[ASSURED]")
    if f["svc_port"] is not None:
        parts.append(f"svc_port={f['svc_port']}")
    return " ".join(parts)


def format_flows(ct, now_ns=None, limit=None):
    """Lines for the live flows of ct (id order), at most `limit` of them."""
    out = []
    for f in ct.flows():
        if limit is not None and len(out) >= limit:
            break
        out.append(format_flow(f, now_ns))
    return out
