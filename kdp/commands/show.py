"""Print the compiled tables of a cluster snapshot, as one node sees them.

  kdp show services  --cluster snapshot/ --node node-1   service-ports, frontends, policies
  kdp show endpoints --cluster snapshot/ --node node-1   backends per service-port
  kdp show routes    --cluster snapshot/ --node node-1   this node's route records
  kdp show dns       --cluster snapshot/ --node node-1   the names kdp answers (cluster DNS)
  kdp show policy    --cluster snapshot/ --node node-1 [--pod NS/NAME]
                     per local pod and direction: isolated or not, the rules that
                     apply (admin tier, NetworkPolicy, baseline tier, in evaluation
                     order) and what happens to flows no rule decides
  kdp show flows     --cluster snapshot/ --node node-1 --capture IN
                     conntrack after replaying IN, one line a flow as `conntrack -L`
                     prints it (seconds left, state, both tuples with packets and
                     bytes, [UNREPLIED] / [ASSURED]), then the Service and backend

--cluster takes a file or a directory; repeat it for several. Objects of kinds kdp
does not use are skipped with a notice on stderr. --json prints JSON (snake_case keys,
as kdp replay --json).
"""
import json
import sys

from kdp.commands.common import add_cluster_option, console, hostport, snake_keys

WHAT = ("services", "endpoints", "routes", "dns", "policy", "flows")


def add_arguments(parser):
    parser.add_argument("what", choices=WHAT, help="which table to print")
    add_cluster_option(parser, required=True)
    parser.add_argument("--node", help="the node to compile for (default: the snapshot's only NodeConfig/Node)")
    parser.add_argument("--pod", metavar="NS/NAME", help="policy: only this local pod")
    parser.add_argument("--capture", metavar="IN", help="flows: the capture to replay first")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _services_table(rows):
    from rich.table import Table
    t = Table(box=None, pad_edge=False)
    for col in ("id", "service-port", "type", "family", "proto", "frontends", "backends", "local", "options"):
        t.add_column(col, justify="right" if col in ("id", "backends", "local") else "left")
    for r in rows:
        fronts = "\n".join(f"{f['kind']} {hostport(f['address'], f['port'])}" for f in r["frontends"])
        flags = []
        if r["externalTrafficPolicy"] == "Local":
            flags.append("eTP=Local")
        if r["internalTrafficPolicy"] == "Local":
            flags.append("iTP=Local")
        if r["sessionAffinity"]:
            flags.append(f"affinity=ClientIP/{r['sessionAffinity']['timeoutSeconds']}s")
        if r["loadBalancerSourceRanges"]:
            flags.append("sourceRanges=" + ",".join(r["loadBalancerSourceRanges"]))
        hc = r["healthCheck"]
        if hc:
            flags.append(f"healthCheck={hc['nodePort']}:{hc['status']} "
                         f"({hc['localEndpoints']} local ready endpoint{'s' * (hc['localEndpoints'] != 1)})")
        topo = r["topology"]
        if topo:
            flags.append(f"topology={topo['mode']}"
                         f"({topo['node'] if topo['mode'] == 'PreferSameNode' else topo['zone']})")
        t.add_row(str(r["id"]), r["name"], r["type"], r["family"], r["protocol"], fronts,
                  str(r["backends"]), str(r["localBackends"]) if r["localBackends"] else "", " ".join(flags))
    return t


def _endpoints_table(rows):
    from rich.table import Table
    t = Table(box=None, pad_edge=False)
    for col in ("id", "service-port", "endpoint", "node", "state", "backend"):
        t.add_column(col, justify="right" if col == "id" else "left")
    for r in rows:
        ids = {(b["address"], b["port"]): b["id"] for b in r["backends"] + r["localBackends"]}
        local = {(b["address"], b["port"]) for b in r["localBackends"]}
        if not r["endpoints"]:
            t.add_row(str(r["id"]), r["name"], "(no endpoints: rejects)", "", "", "")
        for k, e in enumerate(r["endpoints"]):
            key = (e["address"], e["port"])
            use = f"#{ids[key]}" + (" local-policy set" if key in local else "") if e["inUse"] else \
                ("not used (topology: " + r["topology"]["mode"] + ")" if r["topology"] and e["state"] == "ready"
                 else "not used")
            t.add_row(str(r["id"]) if k == 0 else "", r["name"] if k == 0 else "",
                      hostport(e["address"], e["port"]), e["node"] or "", e["state"], use)
    return t


def _routes_table(rows):
    from rich.table import Table
    t = Table(box=None, pad_edge=False)
    for col in ("prefix", "kind", "target", "via", "details"):
        t.add_column(col)
    for r in rows:
        details = []
        if r.get("encap", "None") != "None":
            details.append(f"encap {r['encap']}" + (f" (port {r['vxlanPort']}, vni {r['vni']})"
                                                      if r["encap"] == "VXLAN" else ""))
        if r.get("ipPool"):
            details.append(f"pool {r['ipPool']}")
        if r.get("onlink"):
            details.append("onlink")
        if r.get("mtu"):
            details.append(f"mtu {r['mtu']}")
        t.add_row(r["prefix"], r["kind"], r["target"], r["via"] or "", " ".join(details))
    return t


def _policy_text(rows):
    out = []
    for r in rows:
        out.append(f"{r['pod']} ({', '.join(r['addresses'])})")
        for d in ("ingress", "egress"):
            v = r[d]
            if v["isolated"]:
                head = "isolated by " + ", ".join(v["isolatedBy"])
            else:
                head = "not isolated"
            if not v["rules"]:
                head += ", no policy"
            out.append(f"  {d}: {head}")
            for rule in v["rules"]:
                who = f"{rule['policy']}" + (f" (priority {rule['priority']})" if rule["priority"] is not None else "")
                name = f" \"{rule['name']}\"" if rule["name"] else ""
                peers = "every peer" if rule["peers"] is None else "; ".join(rule["peers"])
                ports = "every port" if rule["ports"] is None else ", ".join(rule["ports"])
                out.append(f"    {rule['tier']:<13} {rule['action']:<5} {who} {d}[{rule['rule']}]{name}: "
                           f"{'from' if d == 'ingress' else 'to'} {peers}; {ports}")
            if v["rules"]:
                out.append(f"    {'otherwise':<13} {v['otherwise']}")
    return out


def _policy_rows(cluster, tables, pod):
    from kdp.control.node import policy_of
    from kdp.errors import KdpError
    local = {f"{p.namespace}/{p.name}" for p in cluster.local_pods()}
    if pod is not None and pod not in local:
        raise KdpError(f"--pod {pod}: no such pod on node {cluster.node}")
    compiled = policy_of(tables)
    if compiled is None:
        return [{"pod": f"{p.namespace}/{p.name}", "addresses": [addr_text(ip) for ip in p.ips],
                 **{d: {"isolated": False, "isolatedBy": [], "rules": [], "otherwise": "allow"}
                    for d in ("ingress", "egress")}}
                for p in cluster.local_pods() if pod is None or f"{p.namespace}/{p.name}" == pod]
    return compiled.view(pod)


def addr_text(ip):
    from kdp.control import addr
    return addr.format_ip(ip)


def _dns_text(view):
    out = []
    for row in view["names"]:
        if "aliasOf" in row:
            continue
        name = row["name"]
        for r in row["records"]:
            owner = "" if r["name"] == name else f"  ({r['name']})"
            out.append(f"{name:<48} {r['ttl']:>5} {r['type']:<5} {r['data']}{owner}")
        for r in row["additional"]:
            out.append(f"{'':<48} {r['ttl']:>5} {r['type']:<5} {r['data']}  (additional for {r['for']}: "
                       f"{r['name']})")
        rest = row["otherTypes"] + (": pod names below" if row["podNames"] else "")
        if row["passedOn"]:
            rest = f"{'/'.join(row['passedOn'])} passed on (ExternalName outside the zone); others {rest}"
        out.append(f"{name:<48} {'':>5} {'*':<5} {rest}")
    return out


def _dns(cluster, as_json):
    from kdp.control.dns import build_zone, zone_view
    from kdp.control.dnswire import encode
    zone = build_zone(cluster)
    if zone is None:
        cfg = cluster.config.dns
        why = ("dns.enabled is false" if not cfg.enabled else
               "no dns.listen and no kube-system/kube-dns Service to take the address from")
        if as_json:
            _json({"node": cluster.node, "dns": None, "why": why})
        else:
            print(f"# node {cluster.node}: cluster DNS is not answered by kdp ({why})")
        return 0
    encode(zone)                                    # the serial
    view = zone_view(zone)
    if as_json:
        _json({"node": cluster.node, "dns": view})
        return 0
    print(f"# node {cluster.node}: zone {view['zone']} answered at {', '.join(view['listen'])} "
          f"(UDP), ttl {view['ttl']}, pods {view['pods']}, serial {view['serial']}: "
          f"{len(view['names'])} names; names of the zone not listed are NXDOMAIN, "
          f"SOA NODATA; other queries pass on to the DNS Service; _<port>._<proto> names are also "
          f"answered with either label written without '_' (as CoreDNS does)")
    for line in _dns_text(view):
        print(line)
    return 0


def run(args):
    from kdp.control import Cluster, compile
    cluster = Cluster.load(args.cluster, node=args.node)
    for notice in cluster.notices:
        print(f"kdp: notice: {notice}", file=sys.stderr)
    if args.what == "dns":
        return _dns(cluster, args.json)
    if args.what == "flows":
        return _flows(args)
    tables = compile(cluster)
    if args.what == "policy":
        rows = _policy_rows(cluster, tables, args.pod)
        if args.json:
            _json({"node": cluster.node, "policy": rows})
            return 0
        print(f"# node {cluster.node}: {len(rows)} local pods")
        for line in _policy_text(rows):
            print(line)
        return 0
    rows = {"services": tables.services_view, "endpoints": tables.endpoints_view,
            "routes": tables.routes_view}[args.what]()
    if args.json:
        _json({"node": cluster.node, args.what: rows})
        return 0
    table = {"services": _services_table, "endpoints": _endpoints_table, "routes": _routes_table}[args.what](rows)
    out = console()
    out.print(f"# node {cluster.node}: {len(rows)} {args.what}", highlight=False)
    out.print(table)
    return 0


def _flows(args):
    from kdp.dataplane import Dataplane
    from kdp.errors import KdpError
    from kdp.flowlog import flow_record
    from kdp.replay import replay
    if not args.capture:
        raise KdpError("kdp show flows needs --capture IN: conntrack after replaying it")
    dp = Dataplane.from_snapshot(args.cluster, args.node)
    if dp.conntrack is None:
        raise KdpError("this snapshot's data plane tracks no flows")
    result = replay(args.capture, dataplane=dp)
    flows = dp.conntrack.live_flows()
    now = dp.pipeline.clock_ns
    services, policies = dp.service_names(), dp.policy_names()
    if args.json:
        _json({"node": dp.node.node, "capture": str(args.capture), "packets": result.packets_in,
               "flows": [dict(flow_record(f, services, policies), timeout_s=round(f["timeout_s"], 3))
                         for f in flows]})
        return 0
    for f in flows:
        print(conntrack_line(f, flow_record(f, services, policies), now))
    print(f"kdp show flows: {len(flows)} flow entries after {result.packets_in} packets of "
          f"{args.capture}", file=sys.stderr)
    return 0


def conntrack_line(flow, record, now_ns):
    """One flow as `conntrack -L` prints it (with accounting on): protocol name and
    number, seconds left, TCP state, the original then the reply tuple, each with its
    packets and bytes, [UNREPLIED] before the reply tuple when no answer came,
    [ASSURED] after it; then kdp's Service and backend."""
    left = max(0, int(flow["last_ns"] / 1e9 + flow["timeout_s"] - now_ns / 1e9))
    words = [f"{record['proto']:<8} {flow['proto']:<2} {left}"]
    if flow["state"]:
        words.append(flow["state"])

    def tuple_words(t, packets, nbytes):
        ports = f" type={t[3]} code=0 id={t[2]}" if record["proto"].startswith("icmp") \
            else f" sport={t[2]} dport={t[3]}"
        return f"src={t[0]} dst={t[1]}{ports} packets={packets} bytes={nbytes}"

    words.append(tuple_words(flow["orig"], flow["packets"][0], flow["bytes"][0]))
    if not flow["seen_reply"]:
        words.append("[UNREPLIED]")
    words.append(tuple_words(flow["reply"], flow["packets"][1], flow["bytes"][1]))
    if flow["assured"]:
        words.append("[ASSURED]")
    if record["service"]:
        words.append(f"service={record['service']} backend={record['backend']}")
    return " ".join(words)


def _json(value):
    """--json: kdp's JSON key style (snake_case) on standard output."""
    json.dump(snake_keys(value), sys.stdout, indent=2)
    sys.stdout.write("\n")
