"""`kdp trace`: what each stage of the pipeline decided for chosen packets, as VPP's
packet trace shows it.

The whole capture is replayed (conntrack, affinity and neighbours need every packet
before the traced ones); for the batches that hold a chosen packet, the pipeline is
handed a Tracer (Pipeline.run(..., trace=...)), which it shows the batch after each
stage: rx, parse (decapsulation included: one pass), ingress (port, martians), dns,
conntrack, new flow (Service frontend and backend, policy, the flow created), nat,
route (route, next hop, encapsulation), tx. The Tracer copies the chosen packets'
metadata and bytes at each point; `describe` turns two consecutive copies into what
that stage did. Without a Tracer the pipeline runs as before (one test a stage per
batch: bench/README.md has the measurement).

Why a backend was chosen is read from the Service's compiled view (session affinity,
traffic policies, topology, terminating endpoints), not recorded by the stage.
"""
import ipaddress
import json

import numpy as np

from kdp._fast.packet import Batch
from kdp.reasons import CtState, Reason, Stage, Verdict

PROTO = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP", 4: "IPIP", 41: "IPv6"}
TUNNEL = {0: None, 1: "IP-in-IP", 2: "VXLAN"}
TCP_FLAGS = "FSRPAUEC"


class Tracer:
    """Copies of the chosen packets of one batch (positions in it) after each stage."""

    def __init__(self, positions):
        self.positions = list(positions)
        self.steps = {j: [] for j in self.positions}

    def snap(self, stage, batch):
        meta = batch.meta
        for j in self.positions:
            if j < len(batch):
                self.steps[j].append((stage, meta[j].copy(), batch.packet(j)))


def _addr(m, which):
    if m["ip_ver"] == 4:
        return str(ipaddress.IPv4Address(int(m[which + "4"])))
    if m["ip_ver"] == 6:
        return str(ipaddress.IPv6Address(bytes(m[which + "6"])))
    return None


def _ep(addr, port, with_port=True):
    if addr is None:
        return "?"
    text = f"[{addr}]" if ":" in addr and with_port else addr
    return f"{text}:{int(port)}" if with_port else text


def _tuple(m):
    ports = int(m["proto"]) in (6, 17, 132)
    return f"{_ep(_addr(m, 'src'), m['sport'], ports)} > {_ep(_addr(m, 'dst'), m['dport'], ports)}"


def _headers(m):
    if m["ip_ver"] == 0:
        return f"not IP (ethertype 0x{int(m['ethertype']):04x})"
    proto = int(m["proto"])
    text = f"IPv{int(m['ip_ver'])} {PROTO.get(proto, proto)} {_tuple(m)} ttl {int(m['ttl'])}"
    if proto == 6:
        flags = "".join(c for k, c in enumerate(TCP_FLAGS) if int(m["tcp_flags"]) >> k & 1)
        text += f" [{flags}]"
    if proto in (1, 58):
        text += f" type {int(m['icmp_type'])} code {int(m['icmp_code'])}"
    if int(m["frag"]):
        text += f" fragment ({'first' if int(m['frag']) == 1 else 'later'}, id {int(m['frag_id'])})"
    return text


def _decided(before, after):
    """The verdict a stage set ("" when it set none)."""
    if int(after["verdict"]) != int(before["verdict"]) or int(after["reason"]) != int(before["reason"]):
        return f"{Verdict(int(after['verdict'])).label}: {Reason(int(after['reason'])).label}"
    return ""


class Describer:
    """Turns a packet's stage copies into lines, with the data plane's names."""

    def __init__(self, dp):
        self.dp = dp
        self.services = dp.service_names()
        self.policies = dp.policy_names()
        tables = dp.tables
        self.svc_view = {r["id"]: r for r in tables.services_view()} if tables is not None else {}
        self.ep_view = {r["id"]: r for r in tables.endpoints_view()} if tables is not None else {}

    def port(self, p):
        p = int(p)
        if p == 0xFFFF:
            return "none"
        try:
            return self.dp.ports.name_of(p)
        except (KeyError, IndexError):
            return f"port {p}"

    def stage_text(self, stage, before, after, data):
        decided = _decided(before, after)
        if stage == "rx":
            return f"{len(data)} bytes" + (f", {decided}" if decided else "")
        if stage == "parse":
            text = _headers(after)
            if int(after["decap"]):
                text = f"decapsulated {TUNNEL.get(int(after['decap']))}; inner {text}"
            return text + (f"; {decided}" if decided else "")
        if stage == "ingress":
            return f"in on {self.port(after['in_port'])}" + (f"; {decided}" if decided else "")
        if stage == "dns":
            return decided or "-"
        if stage == "conntrack":
            if int(before["verdict"]):
                return f"- (decided at {Stage(int(before['stage'])).label})"
            state = int(after["ct_state"])
            fid = int(after["flow_id"])
            if state == int(CtState.NEW):
                text = "miss: no flow (new)"
            elif state == int(CtState.NONE):
                text = "untracked"
            else:
                text = f"{CtState(state).label}" + (f", flow {fid}" if fid != 0xFFFFFFFF else "")
            return text + (f"; {decided}" if decided else "")
        if stage == "new flow":
            if int(before["verdict"]) or int(before["ct_state"]) != int(CtState.NEW):
                return "-"
            return "; ".join(x for x in (self._new_flow(before, after), decided) if x) or \
                "no Service, no policy decision"
        if stage == "nat":
            if _tuple(before) != _tuple(after):
                return f"{_tuple(before)} => {_tuple(after)}"
            return "-"
        if stage == "route":
            if int(before["verdict"]) and int(before["verdict"]) != int(Verdict.REJECT) \
                    and int(before["verdict"]) != int(Verdict.REPLY):
                return f"- (decided at {Stage(int(before['stage'])).label})"
            return self._route(after) + (f"; {decided}" if decided else "")
        if stage == "tx":
            return f"{Verdict(int(after['verdict'])).label}: {Reason(int(after['reason'])).label} " \
                   f"(decided at {Stage(int(after['stage'])).label}), {len(data)} bytes"
        return decided

    def _new_flow(self, before, after):
        parts = []
        sid = int(after["svc_port"])
        if int(after["ct_state"]) != int(CtState.NEW):
            # conntrack looked before an earlier packet of the batch made the flow
            return f"{CtState(int(after['ct_state'])).label} of flow {int(after['flow_id'])}, " \
                   f"made by an earlier packet of the batch"
        if sid != 0xFFFFFFFF and sid < len(self.services):
            parts.append(self._service(sid, before, after))
        egress, ingress = int(after["pol_egress"]), int(after["pol_ingress"])
        if egress or ingress:
            parts.append("policy " + "; ".join(f"{side} {self.policies[d]}" for side, d in
                                                (("egress", egress), ("ingress", ingress)) if d))
        fid = int(after["flow_id"])
        if fid != 0xFFFFFFFF:
            parts.append(f"flow {fid} created")
        return "; ".join(parts)

    def _service(self, sid, before, after):
        view = self.svc_view.get(sid, {})
        dst, dport = _addr(before, "dst"), int(before["dport"])
        kind = next((f["kind"] for f in view.get("frontends", ())
                     if f["address"] == dst and f["port"] == dport), None)
        if kind is None and view.get("nodePort") == dport:
            kind = "NodePort"
        text = f"{kind or 'frontend'} {_ep(dst, dport)} of {self.services[sid]}"
        flow = self.dp.conntrack.flow(int(after["flow_id"])) if int(after["flow_id"]) != 0xFFFFFFFF else None
        if flow is not None and flow["dnat"]:
            backend = (flow["reply"][0], flow["reply"][2])
            text += f" -> backend {_ep(*backend)}"
            why = self._why(sid, backend, kind)
            if why:
                text += f" ({why})"
        return text

    def _why(self, sid, backend, kind):
        view, eps = self.svc_view.get(sid, {}), self.ep_view.get(sid, {})
        reasons = []
        state = next((e["state"] for e in eps.get("endpoints", ())
                      if e["address"] == backend[0] and e["port"] == backend[1]), None)
        if state == "terminating":
            reasons.append("no ready endpoint: terminating fallback")
        if view.get("sessionAffinity"):
            reasons.append(f"session affinity ClientIP, {view['sessionAffinity']['timeoutSeconds']} s")
        external = kind in ("NodePort", "LoadBalancer", "ExternalIP")
        if external and view.get("externalTrafficPolicy") == "Local":
            reasons.append("externalTrafficPolicy Local: this node's endpoints")
        if not external and view.get("internalTrafficPolicy") == "Local":
            reasons.append("internalTrafficPolicy Local: this node's endpoints")
        if view.get("topology"):
            reasons.append(f"topology {view['topology']['mode']}")
        if not reasons:
            n = view.get("backends")
            reasons.append(f"Maglev hash of the flow over {n} ready endpoint{'s' * (n != 1)}" if n else "")
        return "; ".join(r for r in reasons if r)

    def _route(self, m):
        rid = int(m["route_id"])
        routes = self.dp.pipeline.routes
        if rid == 0xFFFFFFFF or rid >= len(routes.routes):
            return "no route"
        route = routes.routes[rid]
        text = f"{route.prefix} ({route.kind.name[3:].lower().replace('_', ' ')})"
        if route.via:
            text += f" via {route.via}"
        text += f" out {self.port(m['out_port'])}"
        if int(m["encap"]):
            text += f", in {TUNNEL.get(int(m['encap']))} to {_addr(m, 'dst')}"
        return text

    def packet(self, index, steps):
        """[(stage, text)] of one traced packet, and its JSON form."""
        rows = []
        for k, (stage, meta, data) in enumerate(steps):
            before = steps[k - 1][1] if k else meta
            rows.append((stage, self.stage_text(stage, before, meta, data)))
        return {"index": index, "stages": [{"stage": s, "decision": t} for s, t in rows]}


def trace(capture, cluster=(), node=None, packets=None, filter=None, limit=100, batch_size=256):
    """Replay `capture` and trace the packets at the input indices `packets` (or those
    matching the tcpdump expression `filter`), at most `limit` of them. Returns
    (traces, matched): the traces in input order and how many packets were chosen."""
    from kdp.dataplane import Dataplane
    from kdp.io.capture import open_capture
    from kdp.replay import _packet_filter
    dp = Dataplane.from_snapshot(cluster, node)
    flt = _packet_filter(filter)
    wanted = sorted(set(packets or ()))
    reader = open_capture(capture, ports=dp.ports)
    batch = Batch(batch_size)
    describer = Describer(dp)
    out, chosen, base = [], 0, 0
    try:
        while True:
            n = reader.fill(batch)
            if n == 0:
                break
            if flt is not None:
                flt.apply(batch)
                positions = [int(j) for j in np.nonzero(flt.match[:n])[0]]
            else:
                positions = [i - base for i in wanted if base <= i < base + n]
            chosen += len(positions)
            positions = positions[:max(0, limit - len(out))]
            tracer = Tracer(positions) if positions else None
            dp.process(batch, trace=tracer)
            if tracer is not None:
                out += [describer.packet(base + j, tracer.steps[j]) for j in positions]
            base += n
    finally:
        reader.close()
    missing = [i for i in wanted if i >= base]
    if missing:
        from kdp.errors import KdpError
        raise KdpError(f"{capture}: has {base} packets; no packet {', '.join(map(str, missing))} "
                       f"(indices count from 0, as the verdict log's)")
    return out, chosen


def to_text(traces):
    lines = []
    for t in traces:
        lines.append(f"packet {t['index']}")
        for s in t["stages"]:
            lines.append(f"  {s['stage']:<10} {s['decision']}")
    return "\n".join(lines)


def to_json(traces):
    return json.dumps(traces, indent=2)
