"""What a configuration change does to real traffic: one capture replayed under two
snapshots (`kdp diff`), its flows compared.

Both replays see the same packets, so a flow is the same conversation in both: the
packets whose tuple as received (the verdict log's `orig`) is its first packet's, the
reverse of it, or the reverse of that packet as either snapshot translated it (the
answers of a NATed flow), keyed by the tuple of its first packet. A flow's fate is what became of
that first packet: its verdict and reason, the Service and backend it was sent to
(the destination after NAT), the source it left with (masquerade), the port and
tunnel it left through, the policy decisions on it. A change is named by the first
of these that differs:

  allowed -> denied / denied -> allowed   a policy drop appeared or went away
  rejected / no longer rejected           a reject (no endpoints, a closed port) came or went
  dropped / no longer dropped             another drop reason came or went
  verdict                                 another verdict change (e.g. local -> forward)
  backend                                 sent to another backend (or Service)
  masquerade                              left with another source address or port
  route                                   left through another port or tunnel
  policy                                  still allowed, by another rule

Counts per Service and per policy decision (either side's) go with the list.
"""
import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field

from kdp.errors import KdpError
from kdp.io.capture import STDIO

POLICY_DROPS = ("policy_denied_ingress", "policy_denied_egress")


@dataclass
class FlowChange:
    key: tuple                      # (proto, src, dst, sport, dport) of the flow's first packet
    first_index: int                # that packet's index in the capture
    packets: int                    # packets of the flow in the capture
    change: str
    before: dict
    after: dict


@dataclass
class DiffResult:
    flows: int                      # flows in the capture
    packets: int
    changes: list = field(default_factory=list)
    notices: list = field(default_factory=list)     # the replays' ("before: ...")

    def by_service(self):
        out = Counter()
        for c in self.changes:
            for name in {c.before["service"], c.after["service"]} - {None}:
                out[name] += 1
        return dict(sorted(out.items()))

    def by_policy(self):
        out = Counter()
        for c in self.changes:
            labels = set()
            for side in (c.before, c.after):
                labels |= {v for v in (side["policy"] or {}).values() if v}
            for label in labels:
                out[label] += 1
        return dict(sorted(out.items()))

    def by_change(self):
        return dict(sorted(Counter(c.change for c in self.changes).items()))

    def to_json(self):
        return {"flows": self.flows, "packets": self.packets, "changed": len(self.changes),
                "by_change": self.by_change(), "by_service": self.by_service(),
                "by_policy": self.by_policy(),
                "changes": [{"flow": dict(zip(("proto", "src", "dst", "sport", "dport"), c.key)),
                             "first_index": c.first_index, "packets": c.packets,
                             "change": c.change, "before": c.before, "after": c.after}
                            for c in self.changes]}


def _fate(line):
    """What became of one packet, from its verdict log line."""
    tunnel = line.get("tunnel")
    return {"verdict": line["verdict"], "reason": line["reason"], "service": line["service"],
            "to": [line["dst"], line["dport"]], "from": [line["src"], line["sport"]],
            "out_port": line["out_port"],
            "tunnel": f"{tunnel['type']} {tunnel['dst']}" if tunnel else None,
            "policy": line["policy"]}


def _change(a, b):
    """The name of the first difference between two fates (None: the same fate)."""
    sent = a["verdict"] in ("forward", "reply")      # (their reasons name the tunnel: route)
    if a["verdict"] != b["verdict"] or (not sent and a["reason"] != b["reason"]):
        pa, pb = a["reason"] in POLICY_DROPS, b["reason"] in POLICY_DROPS
        if pa != pb:
            return "allowed -> denied" if pb else "denied -> allowed"
        ra, rb = a["verdict"] == "reject", b["verdict"] == "reject"
        if ra != rb:
            return "rejected" if rb else "no longer rejected"
        da, db = a["verdict"] == "drop", b["verdict"] == "drop"
        if da != db:
            return "dropped" if db else "no longer dropped"
        return "verdict"
    if a["service"] != b["service"] or a["to"] != b["to"]:
        return "backend"
    if a["from"] != b["from"]:
        return "masquerade"
    if a["out_port"] != b["out_port"] or a["tunnel"] != b["tunnel"]:
        return "route"
    if a["policy"] != b["policy"]:
        return "policy"
    return None


def _flow_key(orig, proto):
    return (proto, orig["src"], orig["dst"], orig["sport"], orig["dport"])


def _reverse(key):
    proto, src, dst, sport, dport = key
    return (proto, dst, src, dport, sport)


def compare_logs(before_lines, after_lines):
    """DiffResult of two verdict logs (iterables of parsed lines) of one capture."""
    flows = {}                      # key of the first packet -> [first index, packets, fate a, fate b]
    owner = {}                      # either direction's key -> the flow's key
    packets = 0
    for a, b in zip(before_lines, after_lines):
        if a["index"] != b["index"]:
            raise KdpError("the two replays disagree on the packets read (not one capture?)")
        packets += 1
        if a["orig"] is None:       # not IP (ARP, a damaged header): a flow of its own
            key = (a["proto"] or "other", f"packet {a['index']}", "", None, None)
        else:
            key = _flow_key(a["orig"], a["proto"])
        flow = owner.get(key)
        if flow is None:
            fa, fb = _fate(a), _fate(b)
            owner[key] = owner[_reverse(key)] = key
            for f in (fa, fb):      # the answers come to the tuple after NAT, under either snapshot
                if f["verdict"] == "forward" and a["orig"] is not None:
                    owner.setdefault((a["proto"], f["to"][0], f["from"][0], f["to"][1], f["from"][1]), key)
            flows[key] = [a["index"], 1, fa, fb]
        else:
            flows[flow][1] += 1
    changes = []
    for key, (first, count, fa, fb) in flows.items():
        what = _change(fa, fb)
        if what is not None:
            changes.append(FlowChange(key, first, count, what, fa, fb))
    changes.sort(key=lambda c: c.first_index)
    return DiffResult(flows=len(flows), packets=packets, changes=changes)


def _lines(path):
    with open(path, encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def diff(capture, before, after, node=None, batch_size=256) -> DiffResult:
    """Replay `capture` under the snapshots `before` and `after` (lists of paths) as
    `node`, and compare the fates of its flows."""
    from kdp.replay import replay
    if os.fspath(capture) == STDIO:
        raise KdpError("kdp diff reads the capture twice: give a file, not standard input")
    with tempfile.TemporaryDirectory(prefix="kdp-diff-") as tmp:
        logs, notices = [], []
        for name, cluster in (("before", before), ("after", after)):
            log = os.path.join(tmp, f"{name}.jsonl")
            result = replay(capture, cluster=cluster, node=node, log=log, batch_size=batch_size)
            logs.append(log)
            notices += [f"{name}: {n}" for n in result.notices]
        out = compare_logs(_lines(logs[0]), _lines(logs[1]))
        out.notices = list(dict.fromkeys(notices))
        return out
