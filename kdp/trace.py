"""`kdp trace`: each stage's decision for chosen packets, as VPP's packet trace shows it.

How: the capture is replayed whole (so conntrack, affinity and neighbours evolve exactly
as in `kdp replay`), the chosen packets get the `trace` bit of their metadata (by index
with --packet, by --filter EXPR through libpcap's match), and a batch holding a traced
packet runs through Pipeline._run_traced: the same stages, with a Tracer called at each
stage boundary. The Tracer copies the metadata of the traced packets there (and reads the
conntrack record and the Service tables where a stage decided on them); `format_trace`
turns the differences between consecutive points into one line per stage. The stages
themselves are not instrumented: what a stage decided is what it wrote into the packet's
metadata (kdp/_fast/packet.pxd), conntrack and the tables. Batches without a traced
packet run the untraced pipeline, whose speed the trace does not touch.

Why a backend was chosen is reconstructed from the tables the choice read: the
traffic policy (cluster or node-local endpoints), topology (which endpoints are in use),
terminating fallback (the chosen endpoint's state), session affinity (a choice that is
not the flow hash's Maglev slot was the client's remembered backend).
"""
import ipaddress

import numpy as np

from kdp._fast.packet import LinkType
from kdp.observe import NO_ID
from kdp.reasons import CtState, Reason, Stage, Verdict

_PROTO = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}
_TUNNEL = {0: None, 1: "ipip", 2: "vxlan"}
_MASK = (1 << 64) - 1
_LINKTYPES = {int(v) for v in LinkType}


def _mix64(x):
    """kdp/_fast/mix.pxd mix64 (MurmurHash3's finaliser), for the Maglev slot of a flow."""
    x ^= x >> 33
    x = (x * 0xFF51AFD7ED558CCD) & _MASK
    x ^= x >> 33
    x = (x * 0xC4CEB9FE1A85EC53) & _MASK
    x ^= x >> 33
    return x


def _addr(row, which):
    if row["ip_ver"] == 4:
        return str(ipaddress.IPv4Address(int(row[which + "4"])))
    if row["ip_ver"] == 6:
        return str(ipaddress.IPv6Address(bytes(row[which + "6"])))
    return None


def _hp(addr, port):
    return f"[{addr}]:{port}" if ":" in addr else f"{addr}:{port}"


def _tuple_text(row):
    proto = int(row["proto"])
    src, dst = _addr(row, "src"), _addr(row, "dst")
    if proto in (6, 17, 132):
        return f"{_PROTO[proto]} {_hp(src, int(row['sport']))} -> {_hp(dst, int(row['dport']))}"
    if proto in (1, 58):
        return f"{_PROTO[proto]} {src} -> {dst} type {int(row['icmp_type'])} code {int(row['icmp_code'])}" \
               + (f" id {int(row['icmp_id'])}" if int(row["icmp_type"]) in (0, 8, 128, 129) else "")
    return f"proto {proto} {src} -> {dst}"


def _tcp_flags(f):
    names = [n for bit, n in ((2, "SYN"), (16, "ACK"), (1, "FIN"), (4, "RST"), (8, "PSH"), (32, "URG"))
             if f & bit]
    return ",".join(names) or "none"


class Tracer:
    """Collects, per traced packet, a copy of its metadata at each stage boundary."""

    def __init__(self, dp):
        self.dp = dp
        self.base = 0                   # input index of the current batch's first packet
        self.points = {}                # input index -> [(point, meta row, extra)]

    def point(self, name, batch, pipeline):
        n = len(batch)
        idx = np.flatnonzero(batch.meta["trace"][:n])
        if not len(idx):
            return
        ct = pipeline.conntrack
        for i in idx:
            row = batch.meta[i].copy()
            extra = {}
            if name in ("rx", "encap"):
                extra["frame"] = bytes(batch.packet(int(i)))
            if name in ("conntrack", "new_flow") and ct is not None and int(row["flow_id"]) != NO_ID:
                extra["flow"] = ct.flow(int(row["flow_id"]))
            self.points.setdefault(self.base + int(i), []).append((name, row, extra))


def _outer(frame, linktype):
    """(src, dst) of a frame's outer IP header (Ethernet or raw IP), None when not IP."""
    off = 0
    if linktype == 1:
        off = 14
        while off + 4 <= len(frame) and frame[off - 2:off] in (b"\x81\x00", b"\x88\xa8"):
            off += 4
    if off >= len(frame):
        return None
    v = frame[off] >> 4
    if v == 4 and len(frame) >= off + 20:
        return (str(ipaddress.IPv4Address(frame[off + 12:off + 16])),
                str(ipaddress.IPv4Address(frame[off + 16:off + 20])))
    if v == 6 and len(frame) >= off + 40:
        return (str(ipaddress.IPv6Address(frame[off + 8:off + 24])),
                str(ipaddress.IPv6Address(frame[off + 24:off + 40])))
    return None


class _Names:
    def __init__(self, dp):
        self.dp = dp
        self.services = dp.service_names()
        self.policies = dp.policy_names() if dp.policy is not None else []
        tables = dp.tables
        self.svc_view = {r["id"]: r for r in tables.services_view()} if tables is not None else {}
        self.ep_view = {r["id"]: r for r in tables.endpoints_view()} if tables is not None else {}

    def port(self, p):
        p = int(p)
        return None if p == 0xFFFF else self.dp.ports.name_of(p)

    def policy(self, i):
        i = int(i)
        return self.policies[i] if 0 < i < len(self.policies) else None


def _decided(prev, row):
    """The verdict a stage set (None: the packet went on undecided)."""
    if int(prev["verdict"]) == Verdict.PENDING and int(row["verdict"]) != Verdict.PENDING:
        return (f"{Verdict(int(row['verdict'])).label} ({Stage(int(row['stage'])).label} "
                f"{Reason(int(row['reason'])).label})")
    return None


def _why_backend(names, row, row_before, flow):
    """Why the service stage chose this backend, from the tables it read."""
    dp = names.dp
    svc = int(row["svc_port"])
    sv = names.svc_view.get(svc, {})
    ep = names.ep_view.get(svc, {})
    backend = flow["reply"][0], flow["reply"][2]
    local = [(b["address"], b["port"]) for b in ep.get("localBackends", [])]
    cluster = [(b["address"], b["port"]) for b in ep.get("backends", [])]
    why = []
    # which set svc_choose took: the frontend kind and the client (kdp/_fast/service.pyx)
    dst, dport = _addr(row_before, "dst"), int(row_before["dport"])
    kind = next((f["kind"] for f in sv.get("frontends", [])
                 if f["address"] == dst and int(f["port"]) == dport), "NodePort")
    in_port = int(row_before["in_port"])
    if kind == "ClusterIP":
        use_local = sv.get("internalTrafficPolicy") == "Local"
        if use_local:
            why.append("internalTrafficPolicy: Local (node-local endpoints only)")
    elif sv.get("externalTrafficPolicy") == "Local":
        # a pod (a pod port) short-circuits to the cluster's endpoints, the node itself
        # is masqueraded to them; a client from outside keeps its source: local ones
        use_local = in_port == 0
        why.append(f"{kind}, externalTrafficPolicy: Local: " +
                   ("a client from outside, node-local endpoints only" if use_local
                    else "a client on this node, the cluster's endpoints"))
    else:
        use_local = False
    pool = local if use_local else cluster
    why.append(f"{len(pool)} endpoint{'s' * (len(pool) != 1)} in the set")
    if ep.get("topology"):
        used = sum(1 for e in ep.get("endpoints", []) if e.get("inUse"))
        why.append(f"topology {ep['topology'].get('mode')}: {used} of {len(ep.get('endpoints', []))} "
                   "endpoints in use")
    state = next((e["state"] for e in ep.get("endpoints", [])
                  if (e["address"], e["port"]) == backend), None)
    if state and state != "ready":
        why.append(f"terminating fallback: no ready endpoint, the {state} ones serve")
    st = dp.pipeline.services
    try:
        lut = st.lut(svc, bool(use_local))
        bes = st.backends(svc, bool(use_local))
    except IndexError:
        lut, bes = None, None
    if lut is not None and len(lut) and bes is not None and len(bes):
        slot = _mix64(int(row["hash"])) % len(lut)
        b = bes[int(lut[slot])]
        hashed = (str(ipaddress.ip_address(int(b["a4"]))) if int(b["ip_ver"]) == 4
                  else str(ipaddress.IPv6Address(bytes(b["a6"]))), int(b["port"]))
        if sv.get("sessionAffinity"):
            timeout = sv["sessionAffinity"].get("timeoutSeconds")
            if hashed != backend:
                why.append(f"session affinity (ClientIP, {timeout}s): the client's earlier backend, "
                           f"not the flow hash's {_hp(*hashed)}")
            else:
                why.append(f"flow hash: Maglev slot {slot} of {len(lut)} (session affinity ClientIP, "
                           f"{timeout}s: remembered for this client)")
        else:
            why.append(f"flow hash: Maglev slot {slot} of {len(lut)}")
    return "; ".join(why)


def format_trace(index, points, names):
    """The lines of one traced packet."""
    byname = {name: (row, extra) for name, row, extra in points}
    rx, rx_extra = byname["rx"]
    ts = int(rx["ts_ns"])
    out = [f"Packet {index}", f"  {ts // 10**9}.{ts % 10**9:09d}"]

    def line(stage, text):
        out.append(f"  {stage:<10} {text}")

    lt = int(rx["linktype"])
    line("rx", f"{int(rx['len'])} bytes (wire {int(rx['wire_len'])}), "
               f"{LinkType(lt).name[3:].lower() if lt in _LINKTYPES else f'link type {lt}'}")
    prev = rx
    if int(rx["verdict"]) != Verdict.PENDING:
        line("rx", "decided at rx: " + _decided({"verdict": 0}, rx))
    order = ["parse", "ingress", "dns", "conntrack", "new_flow", "nat", "route", "encap", "tx"]
    for name in order:
        if name not in byname:
            continue
        row, extra = byname[name]
        decided = _decided(prev, row)
        if int(prev["verdict"]) != Verdict.PENDING and name not in ("route", "encap", "tx"):
            prev = row
            continue                    # decided earlier: the later stages skip it
        if name == "parse":
            text = decided
            if int(row["ip_ver"]):
                text = f"IPv{int(row['ip_ver'])} {_tuple_text(row)} ttl {int(row['ttl'])}"
                if int(row["proto"]) == 6:
                    text += f" flags {_tcp_flags(int(row['tcp_flags']))}"
                if int(row["frag"]):
                    text += f" fragment ({'first' if int(row['frag']) == 1 else 'later'}, id {int(row['frag_id'])})"
                if int(row["vlan"]) != 0xFFFF:
                    text += f" vlan {int(row['vlan'])}"
                text += f"; {decided}" if decided else ""
            elif not decided:
                text = f"not IP (ethertype 0x{int(row['ethertype']):04x})"
            line("parse", text)
            if decided:
                prev = row
                continue
            tun = _TUNNEL.get(int(row["decap"]))
            outer = _outer(rx_extra.get("frame", b""), int(rx["linktype"]))
            line("decap", f"{tun}: outer {outer[0]} -> {outer[1]}, inner as parsed" if tun and outer
                 else (tun or "none (not a tunnel to this node)"))
        elif name == "ingress":
            line("ingress", f"port {names.port(row['in_port'])}" + (f"; {decided}" if decided else ""))
        elif name == "dns":
            if decided:
                line("dns", "answered in place: " + decided)
        elif name == "conntrack":
            st = CtState(int(row["ct_state"]))
            flow = extra.get("flow")
            later = byname.get("new_flow", (row, {}))
            if names.dp.conntrack is None:
                text = "none (a plain router tracks no flows)"
            elif st == CtState.NEW and int(later[0]["ct_state"]) not in (CtState.NEW, CtState.NONE) \
                    and later[1].get("flow") is not None:
                f = later[1]["flow"]
                text = (f"hit {CtState(int(later[0]['ct_state'])).label}: flow {f['id']}, found in the slow "
                        "path (an earlier packet of this batch created it after the batch's lookup)")
            elif st == CtState.NEW:
                text = "miss: a new flow (slow path)"
            elif st == CtState.NONE:
                text = "untracked"
            elif flow is not None:
                text = (f"hit {st.label}: flow {flow['id']} "
                        f"{(flow['state'] or ('replied' if flow['seen_reply'] else 'unreplied')).lower()}"
                        f"{', assured' if flow['assured'] else ''}")
            else:
                text = f"{st.label}" + (" (the flow ended with this packet)" if int(row["flow_id"]) != NO_ID else "")
            line("conntrack", text + (f"; {decided}" if decided else ""))
        elif name == "new_flow":
            svc = int(row["svc_port"])
            flow = extra.get("flow")
            st = CtState(int(row["ct_state"]))
            new = st == CtState.NEW and int(prev["ct_state"]) == CtState.NEW
            if svc != NO_ID:
                sname = names.services[svc] if svc < len(names.services) else f"#{svc}"
                if new and flow is not None and flow["dnat"]:
                    backend = _hp(flow["reply"][0], flow["reply"][2]) if flow["proto"] not in (1, 58) \
                        else flow["reply"][0]
                    line("service", f"{sname} frontend {_hp(_addr(prev, 'dst'), int(prev['dport']))} "
                                    f"-> backend {backend} ({_why_backend(names, row, prev, flow)})")
                elif new:
                    line("service", f"{sname} frontend {_hp(_addr(prev, 'dst'), int(prev['dport']))}"
                                    + (f": refused, {decided}" if decided else ""))
                else:
                    line("service", f"{sname} (the flow's: backend chosen at its first packet)")
            elif new:
                line("service", "no Service frontend matched" + (f": {decided}" if decided and
                                                                 int(row["stage"]) == Stage.SERVICE
                                                                 else " (routed as addressed)"))
            refused = decided and int(row["stage"]) != Stage.POLICY
            if names.policies and not refused:
                if new or (st == CtState.NONE and int(prev["verdict"]) == Verdict.PENDING):
                    eg, ing = names.policy(row["pol_egress"]), names.policy(row["pol_ingress"])
                    verdict = decided if decided and int(row["stage"]) == Stage.POLICY else "allowed"
                    line("policy", f"{verdict}; egress: {eg or 'no policy'}; ingress: {ing or 'no policy'}")
                elif int(prev["verdict"]) == Verdict.PENDING:
                    line("policy", "not judged (a packet of an existing flow)")
            if new and flow is not None:
                line("conntrack", f"created flow {flow['id']}" + (", masquerade (SNAT)" if flow["snat"] else ""))
            elif decided and int(row["stage"]) not in (Stage.SERVICE, Stage.POLICY):
                line("new_flow", decided)
        elif name == "nat":
            before, after = _tuple_text(prev), _tuple_text(row)
            if int(row["ip_ver"]) and before != after:
                line("nat", f"{before}  =>  {after}")
            elif int(row["ip_ver"]) and int(row["verdict"]) == Verdict.PENDING:
                line("nat", "none")
            if decided:
                line("nat", decided)
        elif name == "route":
            rid = int(row["route_id"])
            routes = names.dp.pipeline.routes.routes
            if int(prev["verdict"]) not in (Verdict.PENDING, Verdict.REJECT, Verdict.REPLY):
                prev = row
                continue
            answer = (f"the {Verdict(int(prev['verdict'])).label} answer, back to the sender: "
                      if int(prev["verdict"]) != Verdict.PENDING else "")
            if rid != NO_ID and rid < len(routes):
                r = routes[rid]
                text = f"{answer}{r.prefix} ({r.note or r.kind.name}) -> " + \
                    (f"port {names.port(row['out_port'])}" if names.port(row["out_port"]) else "no port")
                if r.via is not None:
                    text += f" via {r.via}"
                if int(r.encap):
                    text += f" encap {r.encap.name.split('_')[-1].lower()}"
                if int(row["ttl"]) != int(prev["ttl"]):
                    text += f"; ttl {int(prev['ttl'])} -> {int(row['ttl'])}"
            else:
                text = "no route" if int(row["ip_ver"]) else "not routed"
            if decided and int(row["verdict"]) != Verdict.FORWARD:
                text += f"; {decided}"
            line("route", text)
        elif name == "encap":
            tun = _TUNNEL.get(int(row["encap"]))
            if tun:
                outer = _outer(extra.get("frame", b""), int(row["linktype"]))
                line("encap", f"{tun}: outer {outer[0]} -> {outer[1]}" if outer else tun)
            if decided:
                line("encap", decided)
        elif name == "tx":
            v = Verdict(int(row["verdict"]))
            text = f"{v.label}: {Stage(int(row['stage'])).label} {Reason(int(row['reason'])).label}"
            if names.port(row["out_port"]) is not None:
                text += f", out {names.port(row['out_port'])}"
            if int(row["ip_ver"]):
                text += f"; {_tuple_text(row)}"
            line("verdict", text)
        prev = row
    return out


def trace(capture, cluster=(), node=None, packets=None, filter=None, batch_size=256, links=None,
          ingress=None, all_directions=False):
    """Replay `capture` and return the trace lines of the chosen packets: `packets` (input
    indices) or those `filter` (a tcpdump expression) matches."""
    from kdp._fast.packet import Batch
    from kdp.dataplane import Dataplane
    from kdp.errors import KdpError
    from kdp.io.capture import ifindex_ports, interface_indexes, open_capture
    from kdp.replay import _packet_filter
    if (packets is None) == (filter is None):
        raise KdpError("kdp trace needs --packet N[,M...] or --filter EXPR (one of them)")
    flt = _packet_filter(filter)
    wanted = sorted(set(packets)) if packets is not None else None
    dp = Dataplane.from_snapshot(cluster, node)
    indexes = interface_indexes(links) if links is not None else None
    reader = open_capture(capture, ports=dp.ports, ingress=ingress,
                          ifindex_ports=ifindex_ports(dp.ports, indexes), all_directions=all_directions)
    tracer = Tracer(dp)
    batch = Batch(batch_size)
    base = 0
    try:
        while wanted is None or (wanted and base <= wanted[-1]):
            n = reader.fill(batch)
            if n == 0:
                break
            if flt is not None:
                flt.apply(batch, mark_trace=True)
            else:
                marks = batch.meta["trace"]
                for i in wanted:
                    if base <= i < base + n:
                        marks[i - base] = 1
            traced = bool(batch.meta["trace"][:n].any())
            tracer.base = base
            dp.pipeline.run(batch, None, 0, tracer if traced else None)
            base += n
    finally:
        reader.close()
    if wanted is not None:
        missing = [i for i in wanted if i not in tracer.points]
        if missing:
            raise KdpError(f"--packet {missing[0]}: the capture has {base} packets (0..{base - 1})")
    names = _Names(dp)
    lines = []
    for index in sorted(tracer.points):
        lines += format_trace(index, tracer.points[index], names)
        lines.append("")
    return lines, len(tracer.points)
