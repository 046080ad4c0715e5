"""What replay shows beside its verdicts: per-Service counts, the restricted log
(`--log-only`), the flow log (`--flows`). Each part reads a processed batch's
metadata with numpy (no Python per packet) or conntrack's ended flows; none of it
runs unless asked for.
"""
import json

import numpy as np

from kdp.errors import KdpError
from kdp.reasons import CtState, Verdict

NO_ID = 0xFFFFFFFF

#: the verdicts --log-only takes
LOG_ONLY_WORDS = {v.label: int(v) for v in (Verdict.FORWARD, Verdict.DROP, Verdict.REJECT,
                                            Verdict.LOCAL, Verdict.REPLY)}


def parse_log_only(text):
    """'drop,reject' -> the set of Verdict values; KdpError naming a wrong word."""
    words = [w.strip().lower() for w in str(text).split(",") if w.strip()]
    if not words:
        raise KdpError("--log-only needs verdicts, e.g. drop,reject (known: "
                       + ", ".join(LOG_ONLY_WORDS) + ")")
    bad = [w for w in words if w not in LOG_ONLY_WORDS]
    if bad:
        raise KdpError(f"--log-only: unknown verdict {bad[0]!r} (known: {', '.join(LOG_ONLY_WORDS)})")
    return {LOG_ONLY_WORDS[w] for w in words}


def log_keep(batch, verdicts=None, matched=None):
    """uint8 per packet of the batch: 1 for the lines the log keeps (None: all of them).
    `verdicts`: the set of Verdict values --log-only keeps; `matched`: the filter's
    per-packet match (uint8), or None."""
    if verdicts is None:
        return matched
    n = len(batch)
    keep = np.isin(batch.meta["verdict"][:n], np.fromiter(verdicts, dtype=np.uint8)).astype(np.uint8)
    if matched is not None:
        keep &= np.asarray(matched[:n], dtype=np.uint8)
    return keep


class ServiceCounts:
    """Per service-port id: packets, new flows, rejects (and drops) of the packets
    the Service's frontend matched. A packet counts for the Service whose frontend it
    matched (its flow's, for later packets): svc_port in the metadata."""

    FIELDS = ("packets", "new_flows", "rejects", "drops")

    def __init__(self):
        self.counts = np.zeros((len(self.FIELDS), 0), dtype=np.uint64)

    def add(self, batch):
        n = len(batch)
        if n == 0:
            return
        m = batch.meta[:n]
        svc = m["svc_port"]
        sel = svc != NO_ID
        if not sel.any():
            return
        svc = svc[sel].astype(np.int64)
        size = int(svc.max()) + 1
        if size > self.counts.shape[1]:
            grown = np.zeros((len(self.FIELDS), size), dtype=np.uint64)
            grown[:, :self.counts.shape[1]] = self.counts
            self.counts = grown
        verdict = m["verdict"][sel]
        new = (m["ct_state"][sel] == CtState.NEW) & (m["flow_id"][sel] != NO_ID)
        for row, weights in enumerate((None, new, verdict == Verdict.REJECT, verdict == Verdict.DROP)):
            self.counts[row, :size] += np.bincount(svc, weights=weights, minlength=size).astype(np.uint64)[:size]

    def by_name(self, names):
        """{service-port name: {packets, new_flows, rejects, drops}} of the Services that saw
        packets, in name order. `names`: service-port names indexed by id."""
        out = {}
        for sid in np.nonzero(self.counts[0])[0]:
            name = names[sid] if sid < len(names) else f"#{sid}"
            out[name] = {f: int(self.counts[r, sid]) for r, f in enumerate(self.FIELDS)}
        return dict(sorted(out.items()))


def take_first(batch, n, matched=None):
    """Keep the first n packets of the batch (with `matched`: up to the n-th matching
    one), as tcpdump -c stops; returns how many packets were cut off the end."""
    count = len(batch)
    if matched is None:
        keep = min(n, count)
    else:
        hits = np.flatnonzero(np.asarray(matched[:count]))
        keep = count if len(hits) <= n else int(hits[n - 1]) + 1
    batch.count = keep
    return count - keep


_PROTO = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}


def _tuple(t, proto):
    src, dst, sport, dport = t
    if proto in (1, 58):
        return {"src": src, "dst": dst, "id": sport}
    if proto in (6, 17, 132):
        return {"src": src, "dst": dst, "sport": sport, "dport": dport}
    return {"src": src, "dst": dst}


def _hostport(addr, port):
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def flow_record(f, first_ns, pol_egress, pol_ingress, why, services, policies):
    """The flow log's record of one flow (a Conntrack flow dict and the log's extras).

    orig: the first packet's tuple as it came in (before NAT); nat: the same direction
    as it left (after DNAT / SNAT); reply: the tuple replies arrive with. backend: the
    address and port the flow was translated to (DNAT); masquerade: the source was
    rewritten (SNAT). policy: null without network policy, else the policies' decisions
    that let the flow in (a denied first packet makes no flow: denied traffic is in the
    verdict log). end: why the flow ended (expired, evicted, flushed, reopened, reset) or
    `active` when the replay ended with it live."""
    proto = f["proto"]
    rsrc, rdst, rsport, rdport = f["reply"]
    after = (rdst, rsrc, rdport, rsport) if proto not in (1, 58) else (rdst, rsrc, rsport, f["orig"][3])
    svc = f["svc_port"]
    if f["state"]:
        state = f["state"].lower()
    else:
        state = "replied" if f["seen_reply"] else "unreplied"
    policy = None
    if policies:
        def label(i):
            return policies[i] if 0 < i < len(policies) else None
        policy = {"verdict": "allowed", "egress": label(pol_egress), "ingress": label(pol_ingress)}
    return {
        "proto": _PROTO.get(proto, str(proto)),
        "orig": _tuple(f["orig"], proto),
        "nat": _tuple(after, proto),
        "reply": _tuple(f["reply"], proto),
        "service": (services[svc] if svc < len(services) else f"#{svc}") if svc is not None else None,
        "backend": _hostport(rsrc, rsport) if f["dnat"] and proto not in (1, 58) else
                   (rsrc if f["dnat"] else None),
        "masquerade": bool(f["snat"]),
        "policy": policy,
        "packets": {"orig": int(f["packets"][0]), "reply": int(f["packets"][1])},
        "bytes": {"orig": int(f["bytes"][0]), "reply": int(f["bytes"][1])},
        "first_ts": round(first_ns / 1e9, 9),
        "last_ts": round(f["last_ns"] / 1e9, 9),
        "state": state,
        "assured": bool(f["assured"]),
        "end": why,
    }


class FlowLog:
    """`--flows FILE.jsonl`: one JSON line per flow when it ends (expiry, early drop,
    flush, reopen, reset) and, at exit, one per flow still live (end `active`), in the
    order they ended. Needs conntrack (a plain router tracks no flows: the file stays
    empty)."""

    def __init__(self, path, dp):
        from kdp.io.capture import LogFile
        self.dp = dp
        self.ct = dp.conntrack
        self.file = LogFile(path, what="flow log")
        self.records = 0
        if self.ct is not None:
            self.ct.enable_flow_log()

    def _names(self):
        return self.dp.service_names(), self.dp.policy_names() if self.dp.policy is not None else []

    def _write(self, items):
        if not items:
            return
        services, policies = self._names()
        lines = [json.dumps(flow_record(f, first, eg, ing, why, services, policies)) + "\n"
                 for f, first, eg, ing, why in items]
        self.file.write("".join(lines).encode())
        self.records += len(lines)

    def after_batch(self, batch):
        if self.ct is not None:
            self._write(self.ct.take_ended())

    def at_exit(self):
        """The flows that ended last, then every live flow (end `active`)."""
        if self.ct is None:
            return
        self._write(self.ct.take_ended())
        live = []
        for f in self.ct.flows():
            first, eg, ing = self.ct.flow_aux(f["id"])
            live.append((f, first, eg, ing, "active"))
        self._write(live)

    def warnings(self):
        lost = self.ct.ended_lost if self.ct is not None else 0
        return [f"flow log: {lost} ended flows were not recorded (buffer full)"] if lost else []

    def close(self):
        self.file.close()
