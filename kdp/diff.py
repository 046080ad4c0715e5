"""`kdp diff`: one capture replayed under two configurations, and the flows whose fate
changes.

Each configuration replays the capture from a fresh data plane (`kdp.replay.replay`, its
verdict log kept aside); the two logs are read packet by packet (the same input, so line
i is packet i in both). A flow is the packets of one connection as they came in: protocol
and the two (address, port) ends, either direction (ICMP: the two addresses). A packet's
fate is what the log says of it: verdict, reason, Service, the backend it was sent to
(destination after DNAT), its source after NAT (masquerade), its out port and tunnel
(route), the policy decisions. A flow changed when one of its packets' fate did; the
kinds of change:

  allowed -> denied / allowed -> rejected / denied -> allowed / rejected -> allowed
      the verdict went between passing (forward, local, reply) and drop or reject
  backend changed      both pass, the destination after DNAT differs
  masquerade changed   both pass, the source address after NAT differs (a new SNAT
                       source port alone is not a change: ports follow allocation order)
  route changed        both pass to the same destination, the out port or the tunnel
                       differs (a moved backend's route is part of its backend change)
  service changed      the Service differs
  reason changed       anything else: the same verdict for another reason

Counts are kept per Service (the flow's, after or else before) and per policy decision
(the decision that denied or rejected the packet on the side where it did not pass).
"""
import json
import os
import tempfile
from collections import Counter

PASSING = ("forward", "local", "reply")


def _pair(proto, t):
    a, b = (t["src"], t["sport"]), (t["dst"], t["dport"])
    return (proto,) + ((a, b) if str(a) <= str(b) else (b, a))


def _flow_key(line):
    """The packet's ends as it came in, either direction; None for non-IP."""
    return _pair(line["proto"], line["orig"]) if line.get("orig") else None


def _sent_key(line):
    """Its ends as it left (after NAT): a reply comes back as these, reversed."""
    if line.get("orig") is None or line["verdict"] not in PASSING or line.get("tunnel"):
        return None
    return _pair(line["proto"], line)


def _fate(line):
    service = line.get("service")
    return {
        "verdict": line["verdict"],
        "reason": line["reason"],
        "service": service,
        "to": [line["dst"], line["dport"]],
        "from": [line["src"], line["sport"]],
        "out_port": line["out_port"],
        "tunnel": line.get("tunnel"),
        "policy": line.get("policy"),
    }


def _label(verdict):
    return "allowed" if verdict in PASSING else ("rejected" if verdict == "reject" else "denied")


def changes(before, after):
    """The kinds of change between two fates of one packet (empty: the same fate)."""
    out = []
    vb, va = before["verdict"], after["verdict"]
    pb, pa = vb in PASSING, va in PASSING
    if pb != pa or (not pb and vb != va):
        out.append(f"{_label(vb)} -> {_label(va)}")
    if pb and pa:
        if before["service"] != after["service"]:
            out.append("service changed")
        moved = bool(before["service"] and after["service"] and before["to"] != after["to"])
        if moved:
            out.append("backend changed")
        if before["from"][0] != after["from"][0]:
            out.append("masquerade changed")
        if not moved and (before["out_port"] != after["out_port"] or before["tunnel"] != after["tunnel"]):
            # (a new backend's own route is part of the backend change: its fate shows it)
            out.append("route changed")
    if not out and (vb, before["reason"]) != (va, after["reason"]):
        out.append("reason changed")
    return out


def _log_of(capture, paths, node, batch_size):
    from kdp.replay import replay
    fd, name = tempfile.mkstemp(prefix="kdp-diff-", suffix=".jsonl")
    os.close(fd)
    try:
        result = replay(capture, cluster=paths, node=node, log=name, batch_size=batch_size)
        with open(name, encoding="utf-8") as f:
            lines = [json.loads(x) for x in f]
    finally:
        os.unlink(name)
    return result, lines


def _deciders(policy):
    if not policy:
        return []
    return [v for v in (policy.get("egress"), policy.get("ingress")) if v and v.startswith("deny")]


def diff(capture, before, after, node=None, batch_size=256):
    """{flows: [...], by_service: {...}, by_policy: {...}, by_change: {...}, packets, ...}."""
    result_b, log_b = _log_of(capture, before, node, batch_size)
    result_a, log_a = _log_of(capture, after, node, batch_size)
    if len(log_b) != len(log_a):        # (the same input: never, unless the file changed)
        from kdp.errors import KdpError
        raise KdpError(f"{capture}: the two replays read {len(log_b)} and {len(log_a)} packets")
    flows = {}
    order = []
    alias = {}          # the ends a flow's packets left with (after NAT) -> its key
    for lb, la in zip(log_b, log_a):
        fb, fa = _fate(lb), _fate(la)
        kinds = changes(fb, fa)
        key = _flow_key(lb) or ("packet", lb["index"])
        key = alias.get(key, key)
        for sent in (_sent_key(lb), _sent_key(la)):
            if sent is not None and sent != key:
                alias.setdefault(sent, key)
        rec = flows.get(key)
        if rec is None:
            rec = flows[key] = {"proto": lb["proto"], "orig": lb["orig"], "first_packet": lb["index"],
                                "packets": 0, "packets_changed": 0, "changes": [], "before": None,
                                "after": None}
            order.append(key)
        rec["packets"] += 1
        if kinds:
            rec["packets_changed"] += 1
            for k in kinds:
                if k not in rec["changes"]:
                    rec["changes"].append(k)
            if rec["before"] is None:
                rec["before"], rec["after"] = fb, fa
                rec["changed_at"] = lb["index"]
    changed = [flows[k] for k in order if flows[k]["changes"]]
    by_service, by_policy, by_change = Counter(), Counter(), Counter()
    for rec in changed:
        svc = rec["after"]["service"] or rec["before"]["service"]
        if svc:
            by_service[svc] += 1
        for side in ("before", "after"):
            if rec[side]["verdict"] not in PASSING:
                for d in _deciders(rec[side]["policy"]):
                    by_policy[d] += 1
        for k in rec["changes"]:
            by_change[k] += 1
    return {
        "input": str(capture),
        "before": [str(p) for p in before],
        "after": [str(p) for p in after],
        "packets": len(log_b),
        "flows": len(flows),
        "flows_changed": len(changed),
        "by_change": dict(sorted(by_change.items())),
        "by_service": dict(sorted(by_service.items())),
        "by_policy": dict(sorted(by_policy.items())),
        "changed": changed,
        "notices": sorted(set(result_b.notices) | set(result_a.notices)),
    }


def _ends(orig, proto):
    if orig is None:
        return "(not IP)"
    if orig.get("sport") is None:
        return f"{proto} {orig['src']} -> {orig['dst']}"
    from kdp.commands.common import hostport
    return f"{proto} {hostport(orig['src'], orig['sport'])} -> {hostport(orig['dst'], orig['dport'])}"


def _fate_text(f):
    from kdp.commands.common import hostport
    text = f"{f['verdict']} ({f['reason']})"
    if f["verdict"] in PASSING:
        if f["service"]:
            text += f" {f['service']} -> {hostport(*f['to']) if f['to'][1] is not None else f['to'][0]}"
        if f["out_port"]:
            text += f" via {f['out_port']}"
        if f["tunnel"]:
            text += f" ({f['tunnel']['type']} to {f['tunnel']['dst']})"
    deciders = _deciders(f["policy"])
    if deciders:
        text += " [" + "; ".join(deciders) + "]"
    return text


def print_diff(report, console):
    from rich.table import Table
    t = Table(title=f"kdp diff: {report['input']}: {report['flows_changed']} of {report['flows']} flows change")
    for col in ("flow", "first packet", "change", "before", "after"):
        t.add_column(col)
    for rec in report["changed"]:
        t.add_row(_ends(rec["orig"], rec["proto"]), str(rec["changed_at"]), ", ".join(rec["changes"]),
                  _fate_text(rec["before"]), _fate_text(rec["after"]))
    console.print(t)
    for title, counts in (("per change", report["by_change"]), ("per Service", report["by_service"]),
                          ("per policy", report["by_policy"])):
        if counts:
            console.print(f"{title}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
