"""The flow log (`kdp replay --flows FILE.jsonl`): one JSON object per conntrack flow
when it ends, as conntrack's own event log would give it.

A flow ends when its timeout runs out ("expired"), when the full table drops it early
("evicted"), when a flush deletes it ("flushed": its backend or Service went away),
when a new TCP connection reuses its tuple ("replaced"), when a TCP reset comes before
any reply ("reset"), or, for the flows still live when the replay ends, "live". The
records come from conntrack's own copy of each flow as it ended (Conntrack
.enable_flow_log / drain_ended), written after every batch; a flow that ended while
that buffer was full is counted (`lost`), never silently missing.

Fields: `proto`, `orig` (the tuple as the first packet came: before NAT), `translated`
(the same direction after NAT: what the backend saw), `reply` (the answer's tuple as
conntrack expects it), `service` and `backend` (`address:port`, null when no Service
translated it), `policy` (the decisions that admitted its first packet, as the verdict
log names them; null when no policy judged it), `packets` and `bytes` each way
(`orig`, `reply`; bytes of IP packets), `first_ts` / `last_ts` (seconds since the epoch,
capture time), `state` (TCP's), `assured`, `end`.
"""
import json

from kdp.io.capture import LogFile

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}


def _endpoint(t):
    src, dst, sport, dport = t
    return {"src": src, "dst": dst, "sport": sport, "dport": dport}


def _seconds(ns):
    """Nanoseconds since the epoch as seconds, the float nearest the exact decimal (its
    repr has no rounding noise: 1763700000.009, not 1763700000.0089998)."""
    return float(f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}")


def flow_record(flow, service_names, policy_names):
    """The flow log's object for one flow dict of Conntrack.drain_ended() / live_flows()."""
    orig, reply = flow["orig"], flow["reply"]
    icmp = flow["proto"] in (1, 58)
    # the original direction as translated is the reply tuple turned round
    translated = (reply[1], reply[0], reply[3], reply[2]) if not icmp else (reply[1], reply[0], orig[2], orig[3])
    sid = flow["svc_port"]
    egress, ingress = flow["policy"]
    policy = None
    if egress or ingress:
        policy = {"egress": policy_names[egress] if egress else None,
                  "ingress": policy_names[ingress] if ingress else None}
    first = flow.get("first_ns")
    return {
        "proto": PROTO_NAMES.get(flow["proto"], flow["proto"]),
        "orig": _endpoint(orig),
        "translated": _endpoint(translated),
        "reply": _endpoint(reply),
        "service": service_names[sid] if sid is not None and sid < len(service_names) else None,
        "backend": (f"[{reply[0]}]:{reply[2]}" if ":" in reply[0] else f"{reply[0]}:{reply[2]}")
                   if flow["dnat"] else None,
        "policy": policy,
        "packets": {"orig": flow["packets"][0], "reply": flow["packets"][1]},
        "bytes": {"orig": flow["bytes"][0], "reply": flow["bytes"][1]},
        "first_ts": _seconds(first) if first else None,
        "last_ts": _seconds(flow["last_ns"]),
        "state": flow["state"] or None,
        "assured": flow["assured"],
        "end": flow["end"],
    }


class FlowLog:
    """Writes the flow log of one data plane's conntrack to `path` ("-": standard output)."""

    def __init__(self, path, dataplane, buffer=65536):
        if dataplane.conntrack is None:
            from kdp.errors import KdpError
            raise KdpError("--flows needs conntrack: give --cluster (a plain router tracks no flows)")
        self.dp = dataplane
        self.conntrack = dataplane.conntrack
        self.buffer = buffer
        self.conntrack.enable_flow_log(buffer)
        self.file = LogFile(path, what="flow log")
        self.flows = 0

    def drain(self):
        """Write the flows that ended since the last call (after each batch)."""
        self._write(self.conntrack.drain_ended())

    def close(self):
        """Write the flows that ended, then those still live, and close the file."""
        try:
            self.drain()
            self._write(self.conntrack.live_flows())
        finally:
            self.file.close()

    @property
    def lost(self):
        return int(self.conntrack.flow_log_lost)

    def _write(self, flows):
        if not flows:
            return
        services, policies = self.dp.service_names(), self.dp.policy_names()
        lines = [json.dumps(flow_record(f, services, policies), separators=(",", ":")) for f in flows]
        self.file.write(("\n".join(lines) + "\n").encode())
        self.flows += len(lines)
