"""Print the compiled tables of a cluster snapshot, as one node sees them.

  kdp show services  --cluster snapshot/ --node node-1   service-ports, frontends, policies
  kdp show endpoints --cluster snapshot/ --node node-1   backends per service-port
  kdp show routes    --cluster snapshot/ --node node-1   this node's route records
  kdp show dns       --cluster snapshot/ --node node-1   the names kdp answers (cluster DNS)
  kdp show policy    --cluster snapshot/ --node node-1 [--pod NS/NAME]
                     per local pod and direction: isolated or not, the rules that
                     apply (admin tier, NetworkPolicy, baseline tier, in evaluation
                     order) and what happens to flows no rule decides

--cluster takes files and/or directories (repeatable). Objects of kinds kdp
does not use are skipped with a notice on stderr. --json prints JSON.
"""
import json
import sys

WHAT = ("services", "endpoints", "routes", "dns", "policy")


def add_arguments(parser):
    parser.add_argument("what", choices=WHAT, help="which table to print")
    parser.add_argument("--cluster", nargs="+", action="extend", required=True, metavar="PATH",
                        help="snapshot files or directories (YAML or JSON)")
    parser.add_argument("--node", help="the node to compile for (default: the snapshot's only NodeConfig/Node)")
    parser.add_argument("--pod", metavar="NS/NAME", help="policy: only this local pod")
    parser.add_argument("--json", action="store_true", help="print JSON")


def _services_text(rows):
    out = []
    for r in rows:
        fronts = ", ".join(f"{f['kind']} {f['address']}:{f['port']}" for f in r["frontends"])
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
        out.append(f"{r['id']:>5}  {r['name']:<40} {r['type']:<12} {r['family']} {r['protocol']:<4} "
                   f"backends={r['backends']}" + (f" local={r['localBackends']}" if r["localBackends"] else "")
                   + (f"  [{' '.join(flags)}]" if flags else ""))
        out.append(f"       {fronts}")
    return out


def _endpoints_text(rows):
    out = []
    for r in rows:
        out.append(f"{r['id']:>5}  {r['name']} ({r['family']}, maglev {r['maglevSize']})")
        if not r["backends"] and not r["localBackends"]:
            out.append("       (no endpoints: rejects)")
        for b in r["backends"]:
            out.append(f"       #{b['id']:<6} {b['address']}:{b['port']}" + ("  local" if b["local"] else ""))
        if r["localBackends"]:
            out.append("       local-policy set: " + ", ".join(f"#{b['id']}" for b in r["localBackends"]))
    return out


def _routes_text(rows):
    out = []
    for r in rows:
        line = f"{r['prefix']:<28} {r['kind']:<10} {r['target']}" + (f" via {r['via']}" if r["via"] else "")
        if r.get("encap", "None") != "None":
            line += f" encap {r['encap']}"
            if r["encap"] == "VXLAN":
                line += f" (port {r['vxlanPort']}, vni {r['vni']})"
        if r.get("ipPool"):
            line += f" pool {r['ipPool']}"
        if r.get("onlink"):
            line += " onlink"
        if r.get("mtu"):
            line += f" mtu {r['mtu']}"
        out.append(line)
    return out


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
            json.dump({"node": cluster.node, "dns": None, "why": why}, sys.stdout, indent=2)
            sys.stdout.write("\n")
        else:
            print(f"# node {cluster.node}: cluster DNS is not answered by kdp ({why})")
        return 0
    encode(zone)                                    # the serial
    view = zone_view(zone)
    if as_json:
        json.dump({"node": cluster.node, "dns": view}, sys.stdout, indent=2)
        sys.stdout.write("\n")
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
    tables = compile(cluster)
    if args.what == "policy":
        rows = _policy_rows(cluster, tables, args.pod)
        if args.json:
            json.dump({"node": cluster.node, "policy": rows}, sys.stdout, indent=2)
            sys.stdout.write("\n")
            return 0
        print(f"# node {cluster.node}: {len(rows)} local pods")
        for line in _policy_text(rows):
            print(line)
        return 0
    rows = {"services": tables.services_view, "endpoints": tables.endpoints_view,
            "routes": tables.routes_view}[args.what]()
    if args.json:
        json.dump({"node": cluster.node, args.what: rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    text = {"services": _services_text, "endpoints": _endpoints_text, "routes": _routes_text}[args.what](rows)
    print(f"# node {cluster.node}: {len(rows)} {args.what}")
    for line in text:
        print(line)
    return 0
