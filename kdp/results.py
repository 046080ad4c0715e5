"""Per-packet results of a processed Batch, readable: enums instead of integers, ipaddress
objects instead of packed words, port and service names instead of ids.

    dp.process(batch)
    for r in results(batch, dp):
        print(r.verdict, r.reason, r.src, r.dst, r.out_port, r.service)

For bulk work read `batch.meta` (a numpy structured array) directly: this walks the
packets in Python, one object each.
"""
import ipaddress
from typing import NamedTuple, Optional

from kdp.ports import NO_PORT
from kdp.reasons import CtState, Reason, Stage, Verdict

NO_ID = 0xFFFFFFFF


class PacketResult(NamedTuple):
    """What the pipeline decided for one packet, and the packet as it left (or as it
    stood when it was dropped)."""
    index: int
    verdict: Verdict
    stage: Stage
    reason: Reason
    ct: CtState
    src: Optional[ipaddress._BaseAddress]
    dst: Optional[ipaddress._BaseAddress]
    proto: int
    sport: int
    dport: int
    in_port: Optional[str]
    out_port: Optional[str]
    service: Optional[str]


def packet_address(row, which):
    """The source ("src") or destination ("dst") of a metadata row as an ipaddress object
    (None for packets that are not IP)."""
    if row["ip_ver"] == 4:
        return ipaddress.IPv4Address(int(row[which + "4"]))
    if row["ip_ver"] == 6:
        return ipaddress.IPv6Address(bytes(row[which + "6"]))
    return None


def results(batch, dataplane=None):
    """PacketResult of every packet of a processed batch; with the Dataplane that
    processed it, ports and services are named."""
    ports = dataplane.ports if dataplane is not None else None
    services = dataplane.service_names() if dataplane is not None else []
    out = []
    for i in range(len(batch)):
        m = batch.meta[i]

        def port(p):
            p = int(p)
            if p == NO_PORT:
                return None
            return ports.name_of(p) if ports is not None else str(p)
        svc = int(m["svc_port"])
        out.append(PacketResult(
            i, Verdict(int(m["verdict"])), Stage(int(m["stage"])), Reason(int(m["reason"])),
            CtState(int(m["ct_state"])), packet_address(m, "src"), packet_address(m, "dst"),
            int(m["proto"]), int(m["sport"]), int(m["dport"]), port(m["in_port"]), port(m["out_port"]),
            services[svc] if svc != NO_ID and svc < len(services) else None))
    return out
