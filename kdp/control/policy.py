"""Network policies: the model of every policy kind kdp enforces, and its validation.

Kinds (all normalised into one `Policy` shape: a tier, a subject, ordered rules):

* networking.k8s.io/v1 ``NetworkPolicy`` (namespaced; tier "networkpolicy"):
  podSelector picks pods of its namespace; a policy isolates them in each
  direction named by policyTypes (default: Ingress, plus Egress when spec.egress
  has rules, as the API server defaults it); its rules allow, and a rule without
  from/to allows every peer, without ports every port (and protocol).
* policy.networking.k8s.io/v1alpha1 ``AdminNetworkPolicy`` (tier "admin",
  ``priority`` 0..1000) and ``BaselineAdminNetworkPolicy`` (tier "baseline", the
  singleton named "default"): network-policy-api v0.1.x; actions Allow / Deny /
  Pass (Baseline: Allow / Deny).
* policy.networking.k8s.io/v1alpha2 ``ClusterNetworkPolicy`` (``tier`` Admin or
  Baseline, ``priority``): the kind that replaced both in network-policy-api
  (blog "API update for v1alpha2", 2025); actions Accept / Deny / Pass, ports as
  ``protocols`` (tcp / udp / sctp destinationPort, destinationNamedPort).

Rule actions are normalised to "Allow" (Accept), "Deny" and "Pass". Peers are
normalised to `Peer`: pods (namespace selector or the policy's own namespace,
plus a pod selector), a CIDR with exceptions (NetworkPolicy ipBlock, admin
`networks`), nodes (by label), or "none" (a peer kdp cannot evaluate:
``domainNames``, or a peer of a future version with no field kdp knows; it
fails closed as the API asks: it matches nothing in an Allow rule, everything
in a Deny or Pass rule). Ports are normalised to `PortMatch`: a protocol and an
inclusive port range, or a container port name.

Validation follows the API server (NetworkPolicy: pkg/apis/networking/validation;
the cluster kinds: their CRD schemas and CEL rules): every problem names the
file, the object and the field. Unknown fields inside a spec are errors.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional

from kdp.control import addr
from kdp.control.model import PROTOCOLS, Origin
from kdp.control.selectors import ALL, Selector, parse_selector

NS_NAME_LABEL = "kubernetes.io/metadata.name"
ANY_PORT = (0, 65535)
_IANA_SVC_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,13}[a-z0-9])?")

TIER_ADMIN, TIER_NP, TIER_BASELINE = "admin", "networkpolicy", "baseline"


@dataclass(frozen=True, slots=True)
class Peer:
    kind: str                           # "pods" | "cidr" | "nodes" | "none"
    namespaces: Optional[Selector] = None   # pods: matching namespaces (None: `namespace` only)
    namespace: Optional[str] = None     # pods: the policy's own namespace
    pods: Selector = ALL                # pods: the pod selector
    cidr: Optional[tuple] = None        # cidr: a Prefix
    excepts: tuple = ()                 # cidr: Prefixes inside it that are not part of it
    nodes: Optional[Selector] = None    # nodes: the node selector

    def describe(self):
        if self.kind == "pods":
            where = f"namespace {self.namespace}" if self.namespaces is None else \
                f"namespaces {self.namespaces.describe()}"
            return f"pods {self.pods.describe()} in {where}"
        if self.kind == "cidr":
            text = addr.format_prefix(self.cidr)
            if self.excepts:
                text += " except " + ", ".join(addr.format_prefix(p) for p in self.excepts)
            return text
        if self.kind == "nodes":
            return f"nodes {self.nodes.describe()}"
        return "(unsupported peer: fails closed)"


@dataclass(frozen=True, slots=True)
class PortMatch:
    protocol: Optional[int]             # 6 / 17 / 132; None: the named container port's own protocol
    lo: int = 0                         # inclusive range (ANY_PORT: every port of the protocol)
    hi: int = 65535
    name: Optional[str] = None          # a container port name (resolved per destination pod)

    def describe(self):
        proto = {6: "TCP", 17: "UDP", 132: "SCTP"}.get(self.protocol, "any")
        if self.name is not None:
            return f"{proto}/{self.name}" if self.protocol else f"port {self.name}"
        if (self.lo, self.hi) == ANY_PORT:
            return f"{proto}/*"
        return f"{proto}/{self.lo}" if self.lo == self.hi else f"{proto}/{self.lo}-{self.hi}"


@dataclass(frozen=True, slots=True)
class Rule:
    action: str                         # "Allow" | "Deny" | "Pass"
    peers: Optional[tuple]              # None: every peer
    ports: Optional[tuple]              # None: every port and protocol
    index: int
    name: str = ""


@dataclass(slots=True)
class Policy:
    kind: str
    tier: str                           # TIER_ADMIN | TIER_NP | TIER_BASELINE
    name: str
    namespace: Optional[str] = None     # NetworkPolicy only
    priority: int = 0
    subject_namespaces: Optional[Selector] = None   # None: `namespace` only (NetworkPolicy)
    subject_pods: Selector = ALL
    ingress: Optional[list] = None      # None: the policy does not affect this direction
    egress: Optional[list] = None
    origin: Optional[Origin] = None

    @property
    def ref(self):
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"

    @property
    def key(self):
        return (self.kind, self.namespace or "", self.name)

    def order(self):
        """Evaluation order inside its tier: priority, then (same priority: the API leaves
        the choice to the implementation) the older kind first, then the name."""
        kind_rank = {"AdminNetworkPolicy": 0, "ClusterNetworkPolicy": 1,
                     "BaselineAdminNetworkPolicy": 2}.get(self.kind, 0)
        if self.kind == "BaselineAdminNetworkPolicy":
            return (1001, kind_rank, self.name)     # after every Baseline ClusterNetworkPolicy
        return (self.priority, kind_rank, self.namespace or "", self.name)

    def rules(self, direction):
        return self.ingress if direction == "ingress" else self.egress

    def rule_label(self, direction, rule):
        text = f"{self.ref} {direction}[{rule.index}]"
        return f"{text} \"{rule.name}\"" if rule.name else text


# Decision labels (the verdict log's `policy` field, `kdp show policy`): one text per
# way a direction of a flow can be decided. A direction no policy decided has none.
LABEL_NODE = "allow: the node's own traffic (NetworkPolicy cannot block it)"
LABEL_SELF = "allow: the pod's own traffic to itself"


def rule_decision(policy, direction, rule):
    return f"{'allow' if rule.action == 'Allow' else 'deny'}: {policy.rule_label(direction, rule)}"


def isolation_decision(isolating):
    """The deny of a pod isolated by NetworkPolicies none of whose rules allows the flow."""
    return "deny: not allowed by NetworkPolicy " + ", ".join(f"{p.namespace}/{p.name}" for p in isolating)


def live_pods(cluster):
    """Pods that own their addresses: with IPs, not hostNetwork (those have the node's
    address), not finished (Succeeded/Failed pods may have given their IP away).
    Sorted by namespace/name; no two of them share an address (Cluster validation)."""
    return [cluster.pods[k] for k in sorted(cluster.pods)
            if cluster.pods[k].ips and not cluster.pods[k].host_network
            and not cluster.pods[k].finished]


def node_addresses(cluster):
    """{node name: [IP]}: the addresses a `nodes` peer selects (status.addresses; this
    node's NodeConfig addresses too)."""
    out = {}
    for name, n in cluster.nodes.items():
        ips = [ip for _t, ip in n.addresses]
        if name == cluster.node and cluster.config is not None:
            ips += [ip for ip in cluster.config.node_addresses if ip not in ips]
        out[name] = ips
    return out


def namespace_labels(cluster, namespace):
    """A namespace's labels, with kubernetes.io/metadata.name as the API server sets it
    (also for namespaces the snapshot names only through their pods)."""
    ns = cluster.namespaces.get(namespace)
    labels = dict(ns.labels) if ns is not None else {}
    labels[NS_NAME_LABEL] = namespace
    return labels


# ------------------------------------------------------------------ field helpers

def _known(c, raw, field, known):
    for k in raw:
        if k not in known:
            c.err(f"{field}.{k}" if field else k, f"unknown field (known: {', '.join(known)})")


def _mapping(c, raw, field, required=False):
    if raw is None:
        if required:
            c.err(field, "is required")
        return None
    if not isinstance(raw, dict):
        c.err(field, "must be a mapping")
        return None
    return raw


def _list(c, raw, field, lo=0, hi=None):
    if raw is None:
        return None
    if not isinstance(raw, list):
        c.err(field, "must be a list")
        return None
    if len(raw) < lo:
        c.err(field, f"must have at least {lo} item{'s' * (lo != 1)}")
    if hi is not None and len(raw) > hi:
        c.err(field, f"must have at most {hi} items (got {len(raw)})")
    return raw


def _port_number(c, value, field):
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        c.err(field, f"must be an integer in 1..65535 (got {value!r})")
        return None
    return value


def _port_name(c, value, field):
    if not isinstance(value, str) or not _IANA_SVC_NAME.fullmatch(value) or "--" in value \
            or not any(ch.isalpha() for ch in value):
        c.err(field, f"must be a port name (IANA_SVC_NAME: 1-15 of a-z, 0-9, '-', with a letter) "
                     f"(got {value!r})")
        return None
    return value


def _protocol(c, value, field):
    if value is None:
        return 6
    if value not in PROTOCOLS:
        c.err(field, f"must be one of TCP, UDP, SCTP (got {value!r})")
        return None
    return PROTOCOLS[value]


def _cidr(c, value, field):
    try:
        return addr.parse_prefix(value)
    except ValueError:
        c.err(field, f"not a CIDR: {value!r}")
        return None


def _inside(inner, outer):
    """Is prefix `inner` a strict subset of `outer`?"""
    return inner[0] == outer[0] and inner[2] > outer[2] and addr.prefix_contains(outer, (inner[0], inner[1]))


def _name_and_meta(doc, c, namespaced):
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        c.err("metadata", "is required")
        meta = {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        c.err("metadata.name", "is required")
        name = ""
    ns = None
    if namespaced:
        ns = meta.get("namespace") or "default"
        if not isinstance(ns, str):
            c.err("metadata.namespace", "must be a string")
            ns = "default"
    return name, ns


# ------------------------------------------------------------------ NetworkPolicy

def _np_peer(c, raw, field, namespace):
    raw = _mapping(c, raw, field)
    if raw is None:
        return None
    _known(c, raw, field, ("podSelector", "namespaceSelector", "ipBlock"))
    if "ipBlock" in raw:
        if "podSelector" in raw or "namespaceSelector" in raw:
            c.err(field, "may not specify both ipBlock and another peer (podSelector / namespaceSelector)")
            return None
        block = _mapping(c, raw["ipBlock"], f"{field}.ipBlock", required=True)
        if block is None:
            return None
        _known(c, block, f"{field}.ipBlock", ("cidr", "except"))
        if block.get("cidr") is None:
            c.err(f"{field}.ipBlock.cidr", "is required")
            return None
        cidr = _cidr(c, block.get("cidr"), f"{field}.ipBlock.cidr")
        excepts = []
        for i, e in enumerate(_list(c, block.get("except"), f"{field}.ipBlock.except") or ()):
            p = _cidr(c, e, f"{field}.ipBlock.except[{i}]")
            if p is not None and cidr is not None:
                if not _inside(p, cidr):
                    c.err(f"{field}.ipBlock.except[{i}]",
                          f"must be a strict subset of cidr {addr.format_prefix(cidr)} "
                          f"(got {addr.format_prefix(p)})")
                else:
                    excepts.append(p)
        if cidr is None:
            return None
        return Peer("cidr", cidr=cidr, excepts=tuple(sorted(set(excepts))))
    if "podSelector" not in raw and "namespaceSelector" not in raw:
        c.err(field, "must specify a peer: podSelector, namespaceSelector or ipBlock")
        return None
    pods = parse_selector(c, raw.get("podSelector"), f"{field}.podSelector")
    if "namespaceSelector" in raw:
        nss = parse_selector(c, raw.get("namespaceSelector"), f"{field}.namespaceSelector")
        return Peer("pods", namespaces=nss, pods=pods)
    return Peer("pods", namespace=namespace, pods=pods)


def _np_ports(c, raw, field):
    raw = _list(c, raw, field)
    if not raw:
        return None                     # absent or empty: every port
    out = []
    for i, p in enumerate(raw):
        f = f"{field}[{i}]"
        p = _mapping(c, p, f)
        if p is None:
            continue
        _known(c, p, f, ("protocol", "port", "endPort"))
        proto = _protocol(c, p.get("protocol"), f + ".protocol")
        port, end = p.get("port"), p.get("endPort")
        if port is None:
            if end is not None:
                c.err(f + ".endPort", "may not be specified when port is not specified")
            if proto is not None:
                out.append(PortMatch(proto, *ANY_PORT))
            continue
        if isinstance(port, str):
            name = _port_name(c, port, f + ".port")
            if end is not None:
                c.err(f + ".endPort", "may not be specified when port is a named port")
            if name is not None and proto is not None:
                out.append(PortMatch(proto, 0, 0, name))
            continue
        lo = _port_number(c, port, f + ".port")
        hi = lo
        if end is not None:
            hi = _port_number(c, end, f + ".endPort")
            if lo is not None and hi is not None and hi < lo:
                c.err(f + ".endPort", f"must be greater than or equal to port ({end} < {port})")
                hi = None
        if lo is not None and hi is not None and proto is not None:
            out.append(PortMatch(proto, lo, hi))
    return tuple(out)


def _np_rules(c, raw, field, peers_key, namespace):
    raw = _list(c, raw, field)
    rules = []
    for i, r in enumerate(raw or ()):
        f = f"{field}[{i}]"
        r = _mapping(c, r, f)
        if r is None:
            continue
        _known(c, r, f, (peers_key, "ports"))
        plist = _list(c, r.get(peers_key), f"{f}.{peers_key}")
        peers = None
        if plist:
            peers = tuple(p for j, item in enumerate(plist)
                          if (p := _np_peer(c, item, f"{f}.{peers_key}[{j}]", namespace)) is not None)
        rules.append(Rule("Allow", peers, _np_ports(c, r.get("ports"), f"{f}.ports"), i))
    return rules, bool(raw)


def parse_networkpolicy(doc, c):
    name, ns = _name_and_meta(doc, c, True)
    spec = _mapping(c, doc.get("spec"), "spec", required=True) or {}
    _known(c, spec, "spec", ("podSelector", "policyTypes", "ingress", "egress"))
    subject = parse_selector(c, spec.get("podSelector"), "spec.podSelector")
    ingress, _ = _np_rules(c, spec.get("ingress"), "spec.ingress", "from", ns)
    egress, has_egress = _np_rules(c, spec.get("egress"), "spec.egress", "to", ns)
    types = _list(c, spec.get("policyTypes"), "spec.policyTypes", hi=2)
    if not types:
        # the API server's default: Ingress always, Egress when the policy has egress rules
        types = ["Ingress"] + (["Egress"] if has_egress else [])
    seen = set()
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            c.err(f"spec.policyTypes[{i}]", f"must be Ingress or Egress (got {t!r})")
        elif t in seen:
            c.err(f"spec.policyTypes[{i}]", f"duplicate value {t!r}")
        seen.add(t)
    return Policy("NetworkPolicy", TIER_NP, name, namespace=ns, subject_pods=subject,
                  ingress=ingress if "Ingress" in seen else None,
                  egress=egress if "Egress" in seen else None, origin=c.origin)


# ------------------------------------------------------------------ cluster-scoped kinds

def _namespaced_pod(c, raw, field):
    """NamespacedPod: {namespaceSelector (default: all namespaces), podSelector (required)}."""
    raw = _mapping(c, raw, field)
    if raw is None:
        return ALL, ALL
    _known(c, raw, field, ("namespaceSelector", "podSelector"))
    if "podSelector" not in raw:
        c.err(f"{field}.podSelector", "is required")
    return (parse_selector(c, raw.get("namespaceSelector"), f"{field}.namespaceSelector"),
            parse_selector(c, raw.get("podSelector"), f"{field}.podSelector"))


def _namespaces_selector(c, raw, field):
    """`namespaces` of a subject or peer: a label selector. The nested form of
    network-policy-api v0.1.0 ({namespaceSelector: ...}) is read as that selector;
    its sameLabels / notSameLabels were removed from the API and are refused."""
    if isinstance(raw, dict) and "namespaceSelector" in raw:
        for k in raw:
            if k != "namespaceSelector":
                c.err(f"{field}.{k}", "not supported (removed from network-policy-api after v0.1.0)")
        return parse_selector(c, raw.get("namespaceSelector"), f"{field}.namespaceSelector")
    return parse_selector(c, raw if raw is not None else {}, field)


def _subject(c, raw, field):
    raw = _mapping(c, raw, field, required=True)
    if raw is None:
        return ALL, ALL
    _known(c, raw, field, ("namespaces", "pods"))
    if len(raw) != 1:
        c.err(field, "must set exactly one of namespaces, pods")
    if "pods" in raw:
        return _namespaced_pod(c, raw["pods"], f"{field}.pods")
    return _namespaces_selector(c, raw.get("namespaces"), f"{field}.namespaces"), ALL


def _admin_peer(c, raw, field, egress, problems_notice):
    raw = _mapping(c, raw, field)
    if raw is None:
        return None
    known = ("namespaces", "pods") + (("nodes", "networks", "domainNames") if egress else ())
    present = [k for k in known if k in raw]
    unknown = [k for k in raw if k not in known]
    if not raw:
        c.err(field, f"must set exactly one of {', '.join(known)}")
        return None
    if len(present) > 1:
        c.err(field, f"must set exactly one of {', '.join(known)} (got {', '.join(present)})")
        return None
    if not present and any(k in ("nodes", "networks", "domainNames") for k in unknown):
        c.err(f"{field}.{unknown[0]}", "unknown field (an egress peer: ingress peers are namespaces and pods)")
        return None
    if not present:
        # a peer type of a newer API version: fail closed (the API's instruction)
        problems_notice(f"{field}: peer with unknown field(s) {', '.join(unknown)}: fails closed "
                        "(matches nothing in an Allow rule, everything in a Deny/Pass rule)")
        return Peer("none")
    if unknown:
        _known(c, raw, field, known)
    kind = present[0]
    f = f"{field}.{kind}"
    if kind == "namespaces":
        return Peer("pods", namespaces=_namespaces_selector(c, raw[kind], f), pods=ALL)
    if kind == "pods":
        nss, pods = _namespaced_pod(c, raw[kind], f)
        return Peer("pods", namespaces=nss, pods=pods)
    if kind == "nodes":
        return Peer("nodes", nodes=parse_selector(c, raw[kind] if raw[kind] is not None else {}, f))
    if kind == "domainNames":
        _list(c, raw[kind], f, lo=1, hi=25)
        problems_notice(f"{f}: domain-name peers are not supported by kdp: the peer matches nothing")
        return Peer("none")
    nets = _list(c, raw[kind], f, lo=1, hi=25) or ()
    cidrs = tuple(Peer("cidr", cidr=p) for i, v in enumerate(nets)
                  if (p := _cidr(c, v, f"{f}[{i}]")) is not None)
    return cidrs or None


def _anp_ports(c, raw, field):
    """v1alpha1 ports: [{portNumber: {protocol, port}} | {namedPort} | {portRange: {protocol, start, end}}]."""
    if raw is None:
        return None
    raw = _list(c, raw, field, lo=1, hi=100) or ()
    out = []
    for i, p in enumerate(raw):
        f = f"{field}[{i}]"
        p = _mapping(c, p, f)
        if p is None:
            continue
        _known(c, p, f, ("portNumber", "namedPort", "portRange"))
        if len(p) != 1:
            c.err(f, "must set exactly one of portNumber, namedPort, portRange")
            continue
        if "namedPort" in p:
            name = _port_name(c, p["namedPort"], f + ".namedPort")
            if name is not None:
                out.append(PortMatch(None, 0, 0, name))
        elif "portNumber" in p:
            pn = _mapping(c, p["portNumber"], f + ".portNumber", required=True) or {}
            _known(c, pn, f + ".portNumber", ("protocol", "port"))
            proto = _protocol(c, pn.get("protocol"), f + ".portNumber.protocol")
            port = _port_number(c, pn.get("port"), f + ".portNumber.port")
            if proto is not None and port is not None:
                out.append(PortMatch(proto, port, port))
        elif "portRange" in p:
            pr = _mapping(c, p["portRange"], f + ".portRange", required=True) or {}
            _known(c, pr, f + ".portRange", ("protocol", "start", "end"))
            proto = _protocol(c, pr.get("protocol"), f + ".portRange.protocol")
            lo = _port_number(c, pr.get("start"), f + ".portRange.start")
            hi = _port_number(c, pr.get("end"), f + ".portRange.end")
            if lo is not None and hi is not None and lo >= hi:
                c.err(f + ".portRange", f"start must be less than end (got {lo}-{hi})")
            elif proto is not None and lo is not None and hi is not None:
                out.append(PortMatch(proto, lo, hi))
    return tuple(out)


def _cnp_protocols(c, raw, field):
    """v1alpha2 protocols: [{tcp|udp|sctp: {destinationPort: {number} | {range: {start, end}}}}
    | {destinationNamedPort}]. A protocol without destinationPort matches all its ports."""
    if raw is None:
        return None
    raw = _list(c, raw, field, lo=1, hi=25) or ()
    out = []
    names = {"tcp": 6, "udp": 17, "sctp": 132}
    for i, p in enumerate(raw):
        f = f"{field}[{i}]"
        p = _mapping(c, p, f)
        if p is None:
            continue
        _known(c, p, f, ("tcp", "udp", "sctp", "destinationNamedPort"))
        if len(p) != 1:
            c.err(f, "must set exactly one of tcp, udp, sctp, destinationNamedPort")
            continue
        key = next(iter(p))
        if key == "destinationNamedPort":
            name = _port_name(c, p[key], f"{f}.{key}")
            if name is not None:
                out.append(PortMatch(None, 0, 0, name))
            continue
        proto = names[key]
        body = _mapping(c, p[key], f"{f}.{key}") or {}
        _known(c, body, f"{f}.{key}", ("destinationPort",))
        dp = _mapping(c, body.get("destinationPort"), f"{f}.{key}.destinationPort")
        if dp is None:
            out.append(PortMatch(proto, *ANY_PORT))
            continue
        fp = f"{f}.{key}.destinationPort"
        _known(c, dp, fp, ("number", "range"))
        if len(dp) != 1:
            c.err(fp, "must set exactly one of number, range")
            continue
        if "number" in dp:
            n = _port_number(c, dp["number"], fp + ".number")
            if n is not None:
                out.append(PortMatch(proto, n, n))
        else:
            r = _mapping(c, dp["range"], fp + ".range", required=True) or {}
            _known(c, r, fp + ".range", ("start", "end"))
            lo = _port_number(c, r.get("start"), fp + ".range.start")
            hi = _port_number(c, r.get("end"), fp + ".range.end")
            if lo is not None and hi is not None and lo >= hi:
                c.err(fp + ".range", f"start must be less than end (got {lo}-{hi})")
            elif lo is not None and hi is not None:
                out.append(PortMatch(proto, lo, hi))
    return tuple(out)


def _admin_rules(c, raw, field, egress, actions, ports_key, max_rules, max_peers, notice):
    raw = _list(c, raw, field, hi=max_rules)
    rules = []
    peers_key = "to" if egress else "from"
    for i, r in enumerate(raw or ()):
        f = f"{field}[{i}]"
        r = _mapping(c, r, f)
        if r is None:
            continue
        _known(c, r, f, ("name", "action", peers_key, ports_key))
        name = r.get("name") or ""
        if not isinstance(name, str) or len(name) > 100:
            c.err(f + ".name", "must be a string of at most 100 characters")
            name = ""
        action = r.get("action")
        if action not in actions:
            c.err(f + ".action", f"must be one of {', '.join(actions)} (got {action!r})")
            action = None
        plist = r.get(peers_key)
        if plist is None:
            c.err(f"{f}.{peers_key}", "is required (at least one peer)")
        plist = _list(c, plist, f"{f}.{peers_key}", lo=1, hi=max_peers) or ()
        peers = []
        for j, item in enumerate(plist):
            got = _admin_peer(c, item, f"{f}.{peers_key}[{j}]", egress, notice)
            if isinstance(got, tuple):
                peers.extend(got)
            elif got is not None:
                peers.append(got)
        if ports_key == "ports":
            ports = _anp_ports(c, r.get("ports"), f + ".ports")
        else:
            ports = _cnp_protocols(c, r.get("protocols"), f + ".protocols")
        if egress and ports and any(p.name for p in ports) and \
                any(p.kind in ("cidr", "nodes") for p in peers):
            c.err(f + "." + ports_key, "named ports cannot be used with networks or nodes peers "
                                       "(they have no named ports)")
        if action is None:
            continue
        rules.append(Rule("Allow" if action == "Accept" else action, tuple(peers), ports, i, name))
    return rules or None


def _cluster_policy(doc, c, kind, notice):
    name, _ = _name_and_meta(doc, c, False)
    spec = _mapping(c, doc.get("spec"), "spec", required=True) or {}
    if kind == "ClusterNetworkPolicy":
        _known(c, spec, "spec", ("tier", "priority", "subject", "ingress", "egress"))
        tier_name = spec.get("tier")
        if tier_name not in ("Admin", "Baseline"):
            c.err("spec.tier", f"must be Admin or Baseline (got {tier_name!r})")
        tier = TIER_BASELINE if tier_name == "Baseline" else TIER_ADMIN
        actions, ports_key, max_rules, max_peers = ("Accept", "Deny", "Pass"), "protocols", 25, 25
    elif kind == "AdminNetworkPolicy":
        _known(c, spec, "spec", ("priority", "subject", "ingress", "egress"))
        tier = TIER_ADMIN
        actions, ports_key, max_rules, max_peers = ("Allow", "Deny", "Pass"), "ports", 100, 100
    else:
        _known(c, spec, "spec", ("subject", "ingress", "egress"))
        if name and name != "default":
            c.err("metadata.name", "must be \"default\" (BaselineAdminNetworkPolicy is a singleton)")
        tier = TIER_BASELINE
        actions, ports_key, max_rules, max_peers = ("Allow", "Deny"), "ports", 100, 100
    priority = 0
    if kind != "BaselineAdminNetworkPolicy":
        p = spec.get("priority")
        if p is None:
            c.err("spec.priority", "is required (0..1000)")
        elif isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= 1000:
            c.err("spec.priority", f"must be an integer in 0..1000 (got {p!r})")
        else:
            priority = p
    nss, pods = _subject(c, spec.get("subject"), "spec.subject")

    def note(text):
        notice(f"{c.origin}: {c.ref}: {text}")
    ingress = _admin_rules(c, spec.get("ingress"), "spec.ingress", False, actions, ports_key,
                           max_rules, max_peers, note)
    egress = _admin_rules(c, spec.get("egress"), "spec.egress", True, actions, ports_key,
                          max_rules, max_peers, note)
    return Policy(kind, tier, name, priority=priority, subject_namespaces=nss, subject_pods=pods,
                  ingress=ingress, egress=egress, origin=c.origin)


def cluster_policy_parser(kind):
    """A parser (doc, ctx) -> Policy for one cluster-scoped kind; notices (fail-closed
    peers) go to the ctx's problem list."""
    def parse(doc, c):
        return _cluster_policy(doc, c, kind, c.p.notices.append)
    parse.__name__ = f"parse_{kind.lower()}"
    return parse


# apiVersion of each kind kdp enforces
API_VERSIONS = {
    "NetworkPolicy": "networking.k8s.io/v1",
    "AdminNetworkPolicy": "policy.networking.k8s.io/v1alpha1",
    "BaselineAdminNetworkPolicy": "policy.networking.k8s.io/v1alpha1",
    "ClusterNetworkPolicy": "policy.networking.k8s.io/v1alpha2",
}
CLUSTER_KINDS = ("AdminNetworkPolicy", "BaselineAdminNetworkPolicy", "ClusterNetworkPolicy")


def all_policies(cluster):
    """Every policy of a Cluster: its NetworkPolicies and its cluster-scoped policies."""
    return list(cluster.policies.values()) + list(getattr(cluster, "cluster_policies", {}).values())
