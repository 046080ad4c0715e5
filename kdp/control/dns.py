"""Cluster DNS: the zone kdp answers, with the answers CoreDNS's kubernetes plugin gives.

    zone = build_zone(cluster)            # None: DNS off, or no address to answer at
    zone.lookup("web.shop.svc.cluster.local.", TYPE_A)   # -> Decision
    zone.names()                          # every name with records or flags

Sources: the Kubernetes DNS specification (kubernetes/dns docs/specification.md,
schema 1.1.0) and CoreDNS's plugin/kubernetes (handler.go, kubernetes.go
findServices/findPods, parse.go, reverse.go, ns.go) with plugin/backend_lookup.go,
read for their behaviour (no code taken). The rules, as kdp applies them:

Where: queries to NodeConfig `dns.listen` (default: every ClusterIP of
kube-system/kube-dns, port 53), UDP only. The zone is `dns.clusterDomain`
(cluster.local); reverse names (in-addr.arpa, ip6.arpa) are answered only
for the addresses below, anything else there passes on (CoreDNS's default
`fallthrough in-addr.arpa ip6.arpa`).

Names (lowercase; queries compare case-insensitively):
  <svc>.<ns>.svc.<zone>       ClusterIP Service: A/AAAA of its ClusterIPs (if it has
                              ports: none -> NXDOMAIN, as CoreDNS), SRV per port
                              (unnamed ones too) -> <svc>.<ns>.svc.<zone>.
                              Headless: A/AAAA of every ready endpoint address (all of
                              them with publishNotReadyAddresses), SRV per endpoint
                              and port -> <hostname>.<svc>.<ns>.svc.<zone>; no ready
                              endpoint -> NXDOMAIN.
                              ExternalName (a name, not an IP): CNAME; A/AAAA follow
                              the CNAME inside the zone (CoreDNS does, up to 10 links),
                              outside the zone the query passes on to the DNS pods
                              (only a recursive server can finish it).
  _<port>._<proto>.<svc>...   the same records restricted to that port (SRV, and A/AAAA
                              too, as CoreDNS); the port and protocol labels may also
                              be written without the underscore (CoreDNS strips it)
  <hostname>.<svc>...         an endpoint: its addresses (any Service type but
                              ExternalName); hostname = the endpoint's `hostname`, else
                              its address with '.'/':' -> '-' ("fd00--1" style)
  <d>.<c>.<b>.<a>.in-addr.arpa, ip6.arpa nibbles
                              PTR of a ClusterIP -> <svc>.<ns>.svc.<zone>; else of
                              ready endpoint addresses -> <hostname>.<svc>...
  <a-b-c-d>.<ns>.pod.<zone>   `pods: insecure` (default): the address the label spells
                              (IPv6 with '-' for ':'), when namespace <ns> exists;
                              up to two more labels in front are ignored (CoreDNS);
                              `pods: disabled`: NXDOMAIN
  dns-version.<zone>          TXT "1.1.0", TTL 28800
  <zone>                      SOA ns.dns.<zone> hostmaster.<zone> <serial> 7200 1800
                              86400 <ttl> (TTL min(ttl, 300)); NS ns.dns.<zone>
  ns.dns.<zone>               A/AAAA: the listen addresses
SRV: priority 0, weight floor(100 / records) (at least 1), the targets' A/AAAA
in the additional section. TTL: `dns.ttl` (5).

Negative answers carry the zone's SOA in authority. NXDOMAIN vs NODATA follows
CoreDNS's per-qtype paths, kept as three flags per name: `exists` (no name
error for A, AAAA, SRV, CNAME, MX, NS and every other type), `records` (TXT),
`records_ok` (PTR). SOA is answered at the apex only and is NODATA everywhere
else in the zone, even for names that do not exist (CoreDNS). Names of the
zone with none of this (search-path expansions such as
web.shop.svc.cluster.local.shop.svc.cluster.local) are NXDOMAIN.

Namespaces exist when a Namespace object, or any Service, EndpointSlice or Pod,
names them (a snapshot may leave the Namespace objects out).
"""
from __future__ import annotations

import ipaddress
from typing import NamedTuple

from kdp._fast.dns import FLAGS as _FLAGS
from kdp.control import addr

TYPE_A, TYPE_NS, TYPE_CNAME, TYPE_SOA, TYPE_PTR, TYPE_MX, TYPE_TXT = 1, 2, 5, 6, 12, 15, 16
TYPE_AAAA, TYPE_SRV, TYPE_OPT, TYPE_IXFR, TYPE_AXFR, TYPE_ANY = 28, 33, 41, 251, 252, 255
TYPE_NAMES = {1: "A", 2: "NS", 5: "CNAME", 6: "SOA", 12: "PTR", 15: "MX", 16: "TXT", 28: "AAAA",
              33: "SRV", 41: "OPT", 43: "DS", 46: "RRSIG", 48: "DNSKEY", 64: "SVCB", 65: "HTTPS",
              251: "IXFR", 252: "AXFR", 255: "ANY", 257: "CAA"}
RCODE_NAMES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED",
               16: "BADVERS"}

# name flags (the blob's: defined once, in kdp/_fast/dns.pyx)
F_EXISTS, F_RECORDS, F_RECORDS_OK, F_REVERSE, F_POD_NS = (
    _FLAGS["exists"], _FLAGS["records"], _FLAGS["records_ok"], _FLAGS["reverse"], _FLAGS["pod_ns"])

SCHEMA_VERSION = "1.1.0"
VERSION_TTL = 28800
MAX_CNAME_CHAIN = 10
PROTO_LABELS = {6: "tcp", 17: "udp", 132: "sctp"}
DEFAULT_DNS_SERVICE = ("kube-system", "kube-dns")

# items (CoreDNS's msg.Service): what a name resolves to
IP_ITEM, NAME_ITEM = 0, 1


class RR(NamedTuple):
    name: str           # owner, absolute, lowercase
    type: int
    ttl: int
    data: object        # A/AAAA: (ver, int); CNAME/PTR/NS: name; SRV: (prio, weight, port, target);
                        # TXT: str; SOA: (mname, rname, serial, refresh, retry, expire, minimum)


class Answer(NamedTuple):
    answer: tuple
    additional: tuple = ()
    pass_on: bool = False   # kdp passes the query on instead (ExternalName outside the zone)


class Decision(NamedTuple):
    """What kdp does with an in-zone IN query: `outcome` is "answer", "nodata",
    "nxdomain" or "pass"; `answer` the records of an answer."""
    outcome: str
    answer: Answer | None = None


def labels_of(name):
    return name.rstrip(".").split(".") if name.strip(".") else []


_DEC = [str(i) for i in range(256)]


def reverse_name(ip):
    ver, value = ip
    if ver == 4:
        d = _DEC
        return f"{d[value & 255]}.{d[(value >> 8) & 255]}.{d[(value >> 16) & 255]}.{d[value >> 24]}.in-addr.arpa."
    return ".".join(reversed(f"{value:032x}")) + ".ip6.arpa."


def endpoint_hostname(ep, ip):
    """CoreDNS's endpointHostname: the endpoint's hostname, else its address dashed."""
    if ep.hostname:
        return ep.hostname
    text = addr.format_ip(ip)
    if ip[0] == 4:
        return text.replace(".", "-")
    text = text.replace(":", "-")
    return text + "0" if text.endswith("-") else text


def pod_address(label):
    """The address a pod-name label spells, as CoreDNS `pods insecure` reads it
    (three dashes and no "--": IPv4, else '-' -> ':' and Go's net.ParseIP), or None."""
    if label.count("-") == 3 and "--" not in label:
        text = label.replace("-", ".")
        parts = text.split(".")
        if any(not p.isdigit() or not p.isascii() or (len(p) > 1 and p[0] == "0") for p in parts):
            return None
    else:
        text = label.replace("-", ":")
        if not all(c in "0123456789abcdefABCDEF:" for c in text):
            return None
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def default_listen(cluster):
    """The ClusterIPs of kube-system/kube-dns, port 53 (the DNS Service pods use)."""
    svc = cluster.services.get(DEFAULT_DNS_SERVICE)
    return [(ip, 53) for ip in svc.cluster_ips] if svc is not None else []


def namespaces_of(cluster):
    names = set(cluster.namespaces)
    names.update(ns for ns, _ in cluster.services)
    names.update(ns for ns, _ in cluster.pods)
    names.update(ns for ns, _ in cluster.slices)
    names.update(ns for ns, _ in cluster.endpoints)
    return names


class Zone:
    """The names kdp answers for one node, kept as CoreDNS keeps them: per name the
    items (address or name, port, SRV target) Records() would return."""

    def __init__(self, domain, listen, ttl, pods):
        self.domain = domain
        self.origin = domain + "."
        self.listen = list(listen)
        self.ttl = ttl
        self.pods = pods
        self.serial = 1                 # set by dnswire.encode (a checksum of the zone)
        self.items = {}                 # name -> [(kind, value, port, srv target)]
        self.flags = {}                 # name -> extra flags (names without items)
        self.fixed = {}                 # name -> {qtype: Answer} (apex, ns.dns, dns-version)
        self.reverse = {}               # reverse name -> [PTR targets]
        self.by_service = {}            # (ns, svc) -> names it contributes (items)
        self._endpoint_ptr = {}         # endpoint address -> [PTR targets]
        self._svc_ips = {}              # (ns, svc) -> endpoint addresses it lists (ready)
        self._cluster_ips = set()       # ClusterIPs: their PTR names a Service, never an endpoint
        self._externals = []            # names of ExternalName Services (they may follow others)
        self.aliases = {}               # SRV name spelled without '_' -> the _<port>._<proto> name

    # ---------------------------------------------------------------- building

    def _add_fixed(self, namespaces):
        o = self.origin
        t = self.ttl
        self.flags[o] = F_EXISTS | F_RECORDS_OK
        self.flags["svc." + o] = F_EXISTS | F_RECORDS_OK
        self.flags["pod." + o] = F_EXISTS | F_RECORDS_OK
        for ns in namespaces:
            self.flags[f"{ns}.svc.{o}"] = F_EXISTS | F_RECORDS_OK
            if self.pods == "insecure":
                self.flags[f"{ns}.pod.{o}"] = F_EXISTS | F_RECORDS_OK | F_POD_NS
        ns_name = "ns.dns." + o
        glue = tuple(RR(ns_name, TYPE_A if ip[0] == 4 else TYPE_AAAA, t, ip) for ip, _ in self.listen)
        self.fixed[o] = {TYPE_NS: Answer((RR(o, TYPE_NS, t, ns_name),), glue)}   # + SOA: soa()
        self.flags[ns_name] = F_EXISTS
        self.fixed[ns_name] = {}
        for fam, qt in ((4, TYPE_A), (6, TYPE_AAAA)):
            rrs = tuple(r._replace(type=qt) for r in glue if r.data[0] == fam)
            if rrs:
                self.fixed[ns_name][qt] = Answer(rrs)
        self.fixed["dns-version." + o] = {
            TYPE_TXT: Answer((RR("dns-version." + o, TYPE_TXT, VERSION_TTL, SCHEMA_VERSION),))}

    def add_service(self, svc, slices):
        """The names one Service contributes (CoreDNS findServices)."""
        base = f"{svc.name}.{svc.namespace}.svc.{self.origin}"
        names = []
        items = self.items

        def put(name, its):
            if name in items:
                items[name].extend(its)
            else:
                items[name] = list(its)
                names.append(name)

        if svc.type == "ExternalName":
            target = svc.external_name
            try:
                addr.parse_ip(target)
            except ValueError:
                put(base, [(NAME_ITEM, target.lower().rstrip(".") + ".", 0, base)])
                self._externals.append(base)
            self.by_service[svc.key] = names
            return
        eps = []            # (ip, hostname, [(port name, proto, port)])
        for sl in slices:
            ports = sl.ports or [("", 0, -1)]       # CoreDNS: a slice without ports has port -1
            for ep in sl.endpoints:
                if not (ep.ready or svc.publish_not_ready):
                    continue
                for ip in ep.addresses:
                    eps.append((ip, endpoint_hostname(ep, ip), ports))
        # PTR of endpoint addresses (ClusterIPs take precedence: add_reverse)
        rev = self._endpoint_ptr
        self._svc_ips[svc.key] = {ip for ip, _hn, _ports in eps}
        for ip, hn, _ports in eps:
            target = f"{hn}.{base}"
            lst = rev.get(ip)
            if lst is None:
                rev[ip] = [target]
            elif target not in lst:
                lst.append(target)
        if svc.headless:
            its = [(IP_ITEM, ip, port, f"{hn}.{base}") for ip, hn, ports in eps for _n, _p, port in ports]
            if its:
                put(base, its)
                pairs = []
                for _ip, _hn, ports in eps:
                    for pn, proto, _port in ports:
                        if (pn, proto) not in pairs:
                            pairs.append((pn, proto))
                for pn, proto in pairs:
                    sel = [(IP_ITEM, ip, port, f"{hn}.{base}") for ip, hn, ports in eps
                           for n, p, port in ports if n == pn and p == proto]
                    for name in self._srv_names(pn, proto, base):
                        put(name, sel)
        elif svc.ports:
            put(base, [(IP_ITEM, ip, p.port, base) for p in svc.ports for ip in svc.cluster_ips])
            for p in svc.ports:
                sel = [(IP_ITEM, ip, p.port, base) for ip in svc.cluster_ips]
                for name in self._srv_names(p.name, p.protocol, base):
                    put(name, sel)
        for ip, hn, ports in eps:
            name = f"{hn}.{base}"
            put(name, [(IP_ITEM, ip, port, name) for _n, _p, port in ports])
        self.by_service[svc.key] = names

    def _srv_names(self, port_name, proto, base):
        """_<port>._<proto>.<base> and the spellings without underscores CoreDNS takes too."""
        pl = PROTO_LABELS.get(proto)
        if pl is None:
            return []
        first = ["_" + port_name] + ([port_name] if port_name else [])
        names = [f"{a}.{b}.{base}" for a in first for b in ("_" + pl, pl)]
        for n in names[1:]:
            self.aliases[n] = names[0]
        return names

    def add_reverse(self, services):
        """PTR: a ClusterIP names its Service; other addresses the endpoints listing them."""
        o = self.origin
        cluster_ips = {}
        for key in sorted(services):
            svc = services[key]
            for ip in svc.cluster_ips:
                cluster_ips.setdefault(ip, f"{svc.name}.{svc.namespace}.svc.{o}")
        rev = self.reverse
        for ip, targets in self._endpoint_ptr.items():
            if ip not in cluster_ips:
                rev[reverse_name(ip)] = targets
        for ip, target in cluster_ips.items():
            rev[reverse_name(ip)] = [target]
        self._cluster_ips = set(cluster_ips)

    def update_service(self, cluster, key):
        """Recompute one Service's names after its endpoints changed (the Service itself
        unchanged). Returns the names whose answers may differ now, removed ones included:
        its own, the PTRs of the addresses it listed or lists, the ExternalNames (they
        may follow its names) and the apex (its SOA serial moves on)."""
        old_names = set(self.by_service.pop(key, ()))
        old_ips = self._svc_ips.pop(key, set())
        base = f"{key[1]}.{key[0]}.svc.{self.origin}"
        for n in old_names:
            self.items.pop(n, None)
            self.aliases.pop(n, None)
        self._externals = [e for e in self._externals if e != base]
        for ip in old_ips:
            lst = self._endpoint_ptr.get(ip)
            if lst is not None:
                lst[:] = [t for t in lst if not t.endswith("." + base)]
                if not lst:
                    del self._endpoint_ptr[ip]
        svc = cluster.services.get(key)
        if svc is not None:
            self.add_service(svc, cluster.slices_for(key))
        new_names = set(self.by_service.get(key, ()))
        changed = old_names | new_names | set(self._externals) | {self.origin}
        for ip in old_ips | self._svc_ips.get(key, set()):
            if ip in self._cluster_ips:
                continue
            name = reverse_name(ip)
            targets = self._endpoint_ptr.get(ip)
            if targets:
                self.reverse[name] = targets
            else:
                self.reverse.pop(name, None)
            changed.add(name)
        return changed

    # ---------------------------------------------------------------- answers

    def in_zone(self, name):
        return name == self.origin or name.endswith("." + self.origin)

    def _addresses(self, name, qtype, previous=()):
        """CoreDNS plugin.A / AAAA at `name`: (records or None for a name error, pass_on)."""
        its = self.items.get(name)
        if its is None:
            if name in self.fixed:
                a = self.fixed[name].get(qtype)
                return (list(a.answer) if a else []), False
            if name in self.flags:
                return [], False
            if self.in_zone(name) and self.pods == "insecure" and self._pod_like(name):
                return [], True         # a pod name: kdp's runtime rule, not followed here
            return None, False
        fam = 4 if qtype == TYPE_A else 6
        out, seen, pass_on = [], set(), False
        for kind, value, _port, _key in its:
            if kind == NAME_ITEM:
                if value == name or len(previous) > MAX_CNAME_CHAIN:
                    continue
                cname = RR(name, TYPE_CNAME, self.ttl, value)
                if cname in previous:
                    continue
                if self.in_zone(value):
                    nxt, p = self._addresses(value, qtype, previous + (cname,))
                    pass_on |= p
                    if nxt:
                        out.append(cname)
                        out.extend(nxt)
                else:
                    pass_on = True
                continue
            if value[0] == fam and value not in seen:
                seen.add(value)
                out.append(RR(name, qtype, self.ttl, value))
        return out, pass_on

    def _pod_like(self, name):
        ls = labels_of(name)
        n = len(ls) - len(labels_of(self.origin))
        return 3 <= n <= 5 and ls[n - 1] == "pod"

    def _srv(self, name):
        its = [i for i in self.items.get(name, ()) if i[0] == IP_ITEM]
        if not its:
            return None
        weight = max(1, 100 // len(its))
        recs, extra, seen = [], [], set()
        for _kind, ip, port, target in its:
            if port == -1:
                continue
            if (target, port) not in seen:
                seen.add((target, port))
                recs.append(RR(name, TYPE_SRV, self.ttl, (0, weight, port, target)))
            if (target, ip) not in seen:
                seen.add((target, ip))
                extra.append(RR(target, TYPE_A if ip[0] == 4 else TYPE_AAAA, self.ttl, ip))
        return Answer(tuple(recs), tuple(extra)) if recs else None

    def answers(self, name):
        """{qtype: Answer} and flags of a name (reverse names included), or None."""
        if name in self.reverse:
            targets = self.reverse[name]
            return {TYPE_PTR: Answer(tuple(RR(name, TYPE_PTR, self.ttl, t) for t in targets))}, F_REVERSE
        its = self.items.get(name)
        flags = self.flags.get(name, 0)
        out = dict(self.fixed.get(name, {}))
        if name == self.origin:
            out[TYPE_SOA] = Answer((self.soa(),))
        if its is None:
            if not out and name not in self.flags:
                return None
            return out, flags
        flags |= F_EXISTS | F_RECORDS_OK | (F_RECORDS if its else 0)
        for qt in (TYPE_A, TYPE_AAAA):
            rrs, pass_on = self._addresses(name, qt)
            if pass_on:
                out[qt] = Answer((), (), True)
            elif rrs:
                out[qt] = Answer(tuple(rrs))
        srv = self._srv(name)
        if srv is not None:
            out[TYPE_SRV] = srv
        if its and its[0][0] == NAME_ITEM:
            out[TYPE_CNAME] = Answer((RR(name, TYPE_CNAME, self.ttl, its[0][1]),))
        return out, flags

    def names(self):
        """Every name that has answers or flags, in a stable order."""
        seen = dict.fromkeys(self.flags)
        seen.update(dict.fromkeys(self.fixed))
        seen.update(dict.fromkeys(self.items))
        seen.update(dict.fromkeys(self.reverse))
        return list(seen)

    def soa(self):
        """The zone's SOA record (CoreDNS plugin.SOA), with the serial dnswire computed."""
        o = self.origin
        return RR(o, TYPE_SOA, min(self.ttl, 300),
                  ("ns.dns." + o, "hostmaster." + o, self.serial, 7200, 1800, 86400, self.ttl))

    def lookup(self, qname, qtype):
        """What kdp answers for an IN query of `qname` (lowercase, absolute) and `qtype`
        (AXFR/IXFR and names outside the zone and the reverse zones pass on)."""
        if qtype in (TYPE_AXFR, TYPE_IXFR):
            return Decision("pass")
        got = self.answers(qname)
        if not self.in_zone(qname):
            if got is not None and got[1] & F_REVERSE and qtype == TYPE_PTR:
                return Decision("answer", got[0][TYPE_PTR])
            return Decision("pass")
        if got is not None:
            ans, flags = got
            a = ans.get(qtype)
            if a is not None:
                if a.pass_on:
                    return Decision("pass")
                return Decision("answer", a)
            if qtype == TYPE_SOA:
                return Decision("nodata")
            need = {TYPE_TXT: F_RECORDS, TYPE_PTR: F_RECORDS_OK}.get(qtype, F_EXISTS)
            return Decision("nodata" if flags & need else "nxdomain")
        if qtype == TYPE_SOA:
            return Decision("nodata")
        if self.pods == "insecure":
            d = self._pod(qname, qtype)
            if d is not None:
                return d
        return Decision("nxdomain")

    def _pod(self, qname, qtype):
        ls = labels_of(qname)
        n = len(ls) - len(labels_of(self.origin))
        if not (3 <= n <= 5 and ls[n - 1] == "pod"):
            return None
        if not self.flags.get(".".join(ls[n - 2:]) + ".", 0) & F_POD_NS:
            return None
        ip = pod_address(ls[n - 3])
        if ip is None:
            return Decision("nxdomain")
        if qtype == TYPE_SRV:
            return Decision("pass")
        fam = TYPE_A if ip.version == 4 else TYPE_AAAA
        if qtype == fam:
            return Decision("answer", Answer((RR(qname, qtype, self.ttl, (ip.version, int(ip))),)))
        return Decision("nodata")


def rr_text(r):
    """A record's data in zone-file form."""
    t, d = r.type, r.data
    if t in (TYPE_A, TYPE_AAAA):
        return addr.format_ip(d)
    if t == TYPE_SRV:
        return f"{d[0]} {d[1]} {d[2]} {d[3]}"
    if t == TYPE_TXT:
        return f'"{d}"'
    if t == TYPE_SOA:
        return " ".join(str(x) for x in d)
    return str(d)


def zone_view(zone):
    """`kdp show dns`: every name kdp serves, its records by type, and what its
    other types get (NODATA / NXDOMAIN / passed on)."""
    rows = []
    for name in zone.names():
        got = zone.answers(name)
        if got is None:
            continue
        answers, flags = got
        records, additional, passed = [], [], []
        for qt in sorted(answers):
            a = answers[qt]
            if a.pass_on:
                passed.append(TYPE_NAMES.get(qt, f"TYPE{qt}"))
                continue
            for r in a.answer:
                records.append({"type": TYPE_NAMES[r.type], "ttl": r.ttl, "name": r.name, "data": rr_text(r)})
            for r in a.additional:
                additional.append({"type": TYPE_NAMES[r.type], "ttl": r.ttl, "name": r.name,
                                   "data": rr_text(r), "for": TYPE_NAMES[qt]})
        if flags & F_REVERSE:
            other = "passed on"
        else:
            base = "NODATA" if flags & F_EXISTS else "NXDOMAIN"
            odd = [t for t, f in (("TXT", F_RECORDS), ("PTR", F_RECORDS_OK))
                   if ("NODATA" if flags & f else "NXDOMAIN") != base and t not in {TYPE_NAMES[q] for q in answers}]
            if odd:
                other = f"{base} ({', '.join(odd)}: {'NXDOMAIN' if base == 'NODATA' else 'NODATA'})"
            else:
                other = base + (" (SOA: NODATA)" if base == "NXDOMAIN" else "")
        row = {"name": name, "records": records, "additional": additional, "passedOn": passed,
               "otherTypes": other, "podNames": bool(flags & F_POD_NS)}
        if name in zone.aliases:
            row["aliasOf"] = zone.aliases[name]
        rows.append(row)
    return {"zone": zone.origin, "listen": [f"{addr.format_ip(ip)}:{port}" for ip, port in zone.listen],
            "ttl": zone.ttl, "pods": zone.pods, "serial": zone.serial, "names": rows}


def build_zone(cluster):
    """The zone of a validated Cluster, or None when DNS is off or has no address to answer at."""
    cfg = cluster.config.dns
    if not cfg.enabled:
        return None
    listen = cfg.listen or default_listen(cluster)
    if not listen:
        return None
    zone = Zone(cfg.cluster_domain, listen, cfg.ttl, cfg.pods)
    zone._add_fixed(sorted(namespaces_of(cluster)))
    for key in sorted(cluster.services):
        zone.add_service(cluster.services[key], cluster.slices_for(key))
    zone.add_reverse(cluster.services)
    return zone
