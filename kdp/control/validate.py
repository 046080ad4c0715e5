"""Validation: raw Kubernetes mappings -> model objects, every problem named.

Each error names the file (and document), the object (Kind namespace/name) and
the field, e.g.::

    snap/svc.yaml#2: Service default/web: spec.ports[0].port: must be an integer in 1..65535

All problems of a snapshot are collected and raised together as one
kdp.errors.ConfigError; nothing is applied from a snapshot that fails.
Unknown kinds are skipped with a notice (Cluster.notices).
"""
import re
import socket

from kdp.control import addr, apirules, calico, overlay
from kdp.control import policy
from kdp.control.model import (PROTOCOLS, Conntrack, Dns, Endpoint, EndpointSlice, Namespace,
                               Node, NodeConfig, Pod, Port, Service, ServicePort)
from kdp.errors import ConfigError

SERVICE_NAME_LABEL = "kubernetes.io/service-name"
_AF = {4: socket.AF_INET, 6: socket.AF_INET6}
_pton = socket.inet_pton
_from_bytes = int.from_bytes
_SLOW_ENDPOINT_KEYS = frozenset(("targetRef", "hostname", "hints"))
_IANA_SVC_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,13}[a-z0-9])?")
_DNS1123_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
DEFAULT_AFFINITY_TIMEOUT = 10800       # seconds (Kubernetes default)
MAX_AFFINITY_TIMEOUT = 86400

# (apiVersion, kind) -> parser name; kinds with another apiVersion are errors.
KINDS = {
    "Service": "v1",
    "Endpoints": "v1",
    "EndpointSlice": "discovery.k8s.io/v1",
    "Pod": "v1",
    "Namespace": "v1",
    "Node": "v1",
    "NodeConfig": "kdp.dev/v1alpha1",
    **policy.API_VERSIONS,
    **calico.API_VERSIONS,
}


TRAFFIC_DISTRIBUTION = ("PreferClose", "PreferSameZone", "PreferSameNode")
TOPOLOGY_MODE = "service.kubernetes.io/topology-mode"
TOPOLOGY_HINTS = "service.kubernetes.io/topology-aware-hints"     # its name before 1.27


# kube-proxy's --detect-local-mode values (the interface modes: a packet from a pod port is local)
LOCAL_TRAFFIC_DETECTION = ("ClusterCIDR", "NodeCIDR", "None", "InterfaceNamePrefix", "BridgeInterface")


class Problems:
    """Errors and notices collected while reading one snapshot (or one update)."""

    def __init__(self):
        self.errors = []
        self.notices = []

    def error(self, origin, ref, field, message):
        self.errors.append(f"{origin}: {ref}: {field}: {message}")

    def raise_if_any(self, what="cluster snapshot"):
        if self.errors:
            n = len(self.errors)
            raise ConfigError(f"{what} is invalid ({n} problem{'s' * (n != 1)}):\n  "
                              + "\n  ".join(self.errors))


class _Ctx:
    """Field access for one object: records errors with the object's origin and name."""
    __slots__ = ("origin", "ref", "p")

    def __init__(self, origin, ref, problems):
        self.origin, self.ref, self.p = origin, ref, problems

    def err(self, field, message):
        self.p.error(self.origin, self.ref, field, message)

    def mapping(self, value, field, required=False):
        if value is None:
            if required:
                self.err(field, "is required")
            return {}
        if not isinstance(value, dict):
            self.err(field, "must be a mapping")
            return {}
        return value

    def seq(self, value, field):
        if value is None:
            return []
        if not isinstance(value, list):
            self.err(field, "must be a list")
            return []
        return value

    def string(self, value, field, required=False, default=None):
        if value is None:
            if required:
                self.err(field, "is required")
            return default
        if not isinstance(value, str):
            self.err(field, "must be a string")
            return default
        return value

    def choice(self, value, field, choices, default):
        if value is None or value == "":
            return default
        if value not in choices:
            self.err(field, f"must be one of {', '.join(choices)} (got {value!r})")
            return default
        return value

    def integer(self, value, field, lo, hi, required=False, default=None):
        if value is None:
            if required:
                self.err(field, "is required")
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.err(field, f"must be an integer in {lo}..{hi} (got {value!r})")
            return default
        return value

    def boolean(self, value, field, default):
        if value is None:
            return default
        if not isinstance(value, bool):
            self.err(field, f"must be true or false (got {value!r})")
            return default
        return value

    def ip(self, value, field):
        try:
            return addr.parse_ip(value)
        except ValueError:
            self.err(field, f"not an IP address: {value!r}")
            return None

    def ips(self, value, field):
        out = []
        for i, v in enumerate(self.seq(value, field)):
            ip = self.ip(v, f"{field}[{i}]")
            if ip is not None:
                out.append(ip)
        return out

    def prefixes(self, value, field):
        out = []
        for i, v in enumerate(self.seq(value, field)):
            try:
                out.append(addr.parse_prefix(v))
            except ValueError:
                self.err(f"{field}[{i}]", f"not a CIDR: {v!r}")
        return out

    def protocol(self, value, field):
        name = self.choice(value, field, tuple(PROTOCOLS), "TCP")
        return PROTOCOLS[name]

    def port_range(self, value, field, default):
        if value is None:
            return default
        text = str(value)
        lo, sep, hi = text.partition("-")
        try:
            lo_i, hi_i = int(lo), int(hi if sep else lo)
        except ValueError:
            lo_i = hi_i = -1
        if not (1 <= lo_i <= hi_i <= 65535):
            self.err(field, f"must be a port range like 30000-32767 (got {value!r})")
            return default
        return (lo_i, hi_i)


def _meta(doc, ctx, namespaced):
    meta = ctx.mapping(doc.get("metadata"), "metadata", required=True)
    name = ctx.string(meta.get("name"), "metadata.name", required=True, default="")
    ns = ctx.string(meta.get("namespace"), "metadata.namespace", default="default") if namespaced else ""
    return meta, name, ns or "default" if namespaced else ""


def _ref(kind, doc, namespaced):
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    name = meta.get("name", "?")
    if namespaced:
        return f"{kind} {meta.get('namespace') or 'default'}/{name}"
    return f"{kind} {name}"


# ------------------------------------------------------------------ objects

def parse_service(doc, c):
    meta, name, ns = _meta(doc, c, True)
    spec = c.mapping(doc.get("spec"), "spec", required=True)
    status = c.mapping(doc.get("status"), "status")
    svc = Service(namespace=ns, name=name, origin=c.origin,
                  type=c.choice(spec.get("type"), "spec.type",
                                ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"), "ClusterIP"))
    svc.publish_not_ready = c.boolean(spec.get("publishNotReadyAddresses"),
                                      "spec.publishNotReadyAddresses", False)
    if svc.type == "ExternalName":
        ext = c.string(spec.get("externalName"), "spec.externalName", required=True)
        if ext is not None and not is_dns_subdomain(ext.removesuffix(".")):
            c.err("spec.externalName", f"must be a DNS name (RFC 1123 subdomain, lowercase, "
                                       f"at most 253 characters) (got {ext!r})")
        svc.external_name = ext
        return svc
    ips = spec.get("clusterIPs")
    one = spec.get("clusterIP")
    if ips is None and one is not None:
        ips = [one]
    ips = c.seq(ips, "spec.clusterIPs")
    if one is not None and ips and ips[0] != one:
        c.err("spec.clusterIP", f"must equal spec.clusterIPs[0] ({one!r} vs {ips[0]!r})")
    if ips and ips[0] == "None":
        svc.headless = True
        if len(ips) > 1:
            c.err("spec.clusterIPs", "a headless Service has only \"None\"")
    elif ips and ips[0] == "":
        pass                                 # not allocated: no ClusterIP record
    else:
        svc.cluster_ips = c.ips(ips, "spec.clusterIPs")
        fams = [ip[0] for ip in svc.cluster_ips]
        if len(fams) != len(set(fams)):
            c.err("spec.clusterIPs", "at most one address per IP family")
        apirules.check_cluster_ips(c, spec, svc.cluster_ips)
    typed_node_ports = svc.type in ("NodePort", "LoadBalancer")
    seen = {}
    for i, p in enumerate(c.seq(spec.get("ports"), "spec.ports")):
        f = f"spec.ports[{i}]"
        p = c.mapping(p, f)
        pname = c.string(p.get("name"), f + ".name", default="") or ""
        proto = c.protocol(p.get("protocol"), f + ".protocol")
        port = c.integer(p.get("port"), f + ".port", 1, 65535, required=True)
        tp = p.get("targetPort")
        if tp is None or tp == 0:
            target = port
        elif isinstance(tp, str) and not (tp.isascii() and tp.isdigit()):
            if not _IANA_SVC_NAME.fullmatch(tp) or "--" in tp or not any(ch.isalpha() for ch in tp):
                c.err(f + ".targetPort", f"must be a port number or a port name (IANA_SVC_NAME: "
                                         f"1-15 of a-z, 0-9, '-', with a letter) (got {tp!r})")
            target = tp
        else:
            target = c.integer(int(tp) if isinstance(tp, str) else tp, f + ".targetPort", 1, 65535)
        node_port = 0
        if p.get("nodePort") is not None:
            node_port = c.integer(p.get("nodePort"), f + ".nodePort", 1, 65535, default=0)
            if node_port and not typed_node_ports:
                c.err(f + ".nodePort", f"only NodePort and LoadBalancer Services have one (type {svc.type})")
                node_port = 0
        if port is None:
            continue
        if (pname, ) in seen:
            c.err(f + ".name", f"duplicate port name {pname!r}")
        if (proto, port) in seen:
            c.err(f + ".port", f"duplicate port {port}/{proto}")
        seen[(pname,)] = seen[(proto, port)] = i
        svc.ports.append(ServicePort(pname, proto, port, target, node_port))
    if len(svc.ports) > 1 and any(not p.name for p in svc.ports):
        c.err("spec.ports", "every port needs a name when a Service has more than one")
    sel = spec.get("selector")
    svc.selector = c.mapping(sel, "spec.selector") if sel is not None else None
    svc.external_ips = c.ips(spec.get("externalIPs"), "spec.externalIPs")
    lb = c.mapping(status.get("loadBalancer"), "status.loadBalancer")
    for i, ing in enumerate(c.seq(lb.get("ingress"), "status.loadBalancer.ingress")):
        f = f"status.loadBalancer.ingress[{i}]"
        ing = c.mapping(ing, f)
        if ing.get("ip") is None:
            continue                         # hostname-only ingress: nothing to capture
        ip = c.ip(ing.get("ip"), f + ".ip")
        mode = c.choice(ing.get("ipMode"), f + ".ipMode", ("VIP", "Proxy"), "VIP")
        if ip is not None:
            svc.lb_ingress.append((ip, mode))
    svc.lb_source_ranges = c.prefixes(spec.get("loadBalancerSourceRanges"), "spec.loadBalancerSourceRanges")
    aff = c.choice(spec.get("sessionAffinity"), "spec.sessionAffinity", ("None", "ClientIP"), "None")
    svc.affinity_client_ip = aff == "ClientIP"
    cfg = c.mapping(c.mapping(spec.get("sessionAffinityConfig"), "spec.sessionAffinityConfig")
                    .get("clientIP"), "spec.sessionAffinityConfig.clientIP")
    svc.affinity_timeout = c.integer(cfg.get("timeoutSeconds"),
                                     "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                                     1, MAX_AFFINITY_TIMEOUT, default=DEFAULT_AFFINITY_TIMEOUT)
    etp = c.choice(spec.get("externalTrafficPolicy"), "spec.externalTrafficPolicy",
                   ("Cluster", "Local"), "Cluster")
    itp = c.choice(spec.get("internalTrafficPolicy"), "spec.internalTrafficPolicy",
                   ("Cluster", "Local"), "Cluster")
    svc.external_policy_local = etp == "Local"
    svc.internal_policy_local = itp == "Local"
    if spec.get("healthCheckNodePort") is not None:
        # the API server allocates it for LoadBalancer Services with the Local policy only
        svc.health_check_node_port = c.integer(spec.get("healthCheckNodePort"), "spec.healthCheckNodePort",
                                               1, 65535, default=0)
        if svc.type != "LoadBalancer" or not svc.external_policy_local:
            c.err("spec.healthCheckNodePort", "may only be set when type is LoadBalancer and "
                                              "externalTrafficPolicy is Local")
    # the values the API server accepts (PreferSameZone / PreferSameNode since 1.33)
    td = c.choice(spec.get("trafficDistribution"), "spec.trafficDistribution", TRAFFIC_DISTRIBUTION, "")
    annotations = c.mapping(meta.get("annotations"), "metadata.annotations")
    mode = annotations.get(TOPOLOGY_MODE) or annotations.get(TOPOLOGY_HINTS)
    svc.topology_request = td or (f"{TOPOLOGY_MODE}: {mode}" if mode in ("Auto", "auto") else "")
    return svc


def _conditions(c, cond, f):
    cond = c.mapping(cond, f)
    ready = c.boolean(cond.get("ready"), f + ".ready", True)
    serving = c.boolean(cond.get("serving"), f + ".serving", ready)
    terminating = c.boolean(cond.get("terminating"), f + ".terminating", False)
    return ready, serving, terminating


def parse_endpointslice(doc, c):
    meta, name, ns = _meta(doc, c, True)
    labels = c.mapping(meta.get("labels"), "metadata.labels")
    service = labels.get(SERVICE_NAME_LABEL)
    if not isinstance(service, str) or not service:
        c.err(f"metadata.labels[{SERVICE_NAME_LABEL}]", "is required (the Service this slice belongs to)")
        service = ""
    elif apirules.label_value_problem(service):
        c.err(f"metadata.labels[{SERVICE_NAME_LABEL}]", apirules.label_value_problem(service))
    atype = c.choice(doc.get("addressType"), "addressType", ("IPv4", "IPv6", "FQDN"), None)
    if atype is None:
        c.err("addressType", "is required (IPv4, IPv6 or FQDN)")
    fam = {"IPv4": 4, "IPv6": 6}.get(atype, 0)
    sl = EndpointSlice(namespace=ns, name=name, service=service, address_type=fam, origin=c.origin)
    for i, p in enumerate(c.seq(doc.get("ports"), "ports")):
        f = f"ports[{i}]"
        p = c.mapping(p, f)
        pname = c.string(p.get("name"), f + ".name", default="") or ""
        proto = c.protocol(p.get("protocol"), f + ".protocol")
        port = c.integer(p.get("port"), f + ".port", 1, 65535)
        if port is not None:                 # a nil port means "all ports": unused by kube-proxy
            sl.ports.append((pname, proto, port))
    af = _AF.get(fam)
    append = sl.endpoints.append
    for i, e in enumerate(c.seq(doc.get("endpoints"), "endpoints")):
        # fast path: the shape kubectl prints, checked as strictly as the slow path
        if af is not None and type(e) is dict:
            addrs, cond, node = e.get("addresses"), e.get("conditions"), e.get("nodeName")
            # (targetRef, hostname, hints present, even as null: the slow path)
            if type(addrs) is list and addrs and (node is None or type(node) is str) and \
                    (cond is None or type(cond) is dict) and e.keys().isdisjoint(_SLOW_ENDPOINT_KEYS):
                try:
                    if len(addrs) == 1:
                        ips = [(fam, _from_bytes(_pton(af, addrs[0]), "big"))]
                    else:
                        ips = [(fam, _from_bytes(_pton(af, a), "big")) for a in addrs]
                except (OSError, TypeError, ValueError):     # (ValueError: a NUL in the text)
                    ips = None
                if ips is not None:
                    if cond is None:
                        append(Endpoint(ips, True, True, False, node))
                        continue
                    ready = cond.get("ready", True)
                    serving = cond.get("serving", ready)
                    terminating = cond.get("terminating", False)
                    if ready is None:
                        ready = True
                    if serving is None:
                        serving = ready
                    if terminating is None:
                        terminating = False
                    if ready.__class__ is bool and serving.__class__ is bool and terminating.__class__ is bool:
                        append(Endpoint(ips, ready, serving, terminating, node))
                        continue
        f = f"endpoints[{i}]"
        e = c.mapping(e, f)
        addrs = c.seq(e.get("addresses"), f + ".addresses")
        if not addrs:
            c.err(f + ".addresses", "needs at least one address")
            continue
        ips = []
        if fam:
            ips = c.ips(addrs, f + ".addresses")
            for j, ip in enumerate(ips):
                if ip[0] != fam:
                    c.err(f"{f}.addresses[{j}]", f"is not an {atype} address")
        ready, serving, terminating = _conditions(c, e.get("conditions"), f + ".conditions")
        ref = c.mapping(e.get("targetRef"), f + ".targetRef")
        target = f"{ref.get('namespace') or ns}/{ref['name']}" if ref.get("kind") == "Pod" and ref.get("name") else None
        zones, nodes = _hints(c, e.get("hints"), f + ".hints")
        sl.endpoints.append(Endpoint(ips, ready, serving, terminating,
                                     c.string(e.get("nodeName"), f + ".nodeName"), target,
                                     _hostname(c, e.get("hostname"), f + ".hostname"), zones, nodes))
    return sl


def _hints(c, value, field):
    """(zone names, node names) of an endpoint's topology hints (forZones, forNodes)."""
    hints = c.mapping(value, field)
    out = []
    for key in ("forZones", "forNodes"):
        names = set()
        for i, h in enumerate(c.seq(hints.get(key), f"{field}.{key}")):
            name = c.string(c.mapping(h, f"{field}.{key}[{i}]").get("name"), f"{field}.{key}[{i}].name")
            if not name:
                c.err(f"{field}.{key}[{i}].name", "is required")
            else:
                names.add(name)
        out.append(frozenset(names))
    return out


def is_dns_subdomain(name):
    """A DNS-1123 subdomain: dot-separated DNS-1123 labels, 253 characters at most."""
    return 0 < len(name) <= 253 and all(_DNS1123_LABEL.fullmatch(x) for x in name.split("."))


def _hostname(c, value, field):
    """An endpoint's DNS hostname (a DNS-1123 label), or None."""
    h = c.string(value, field)
    if h is not None and not _DNS1123_LABEL.fullmatch(h):
        c.err(field, f"must be a DNS label (1-63 of a-z, 0-9, '-', starting and ending "
                     f"alphanumeric) (got {h!r})")
        return None
    return h or None


def parse_endpoints(doc, c):
    """A v1 Endpoints becomes one EndpointSlice-like object per address family."""
    meta, name, ns = _meta(doc, c, True)
    by_fam = {}
    for i, s in enumerate(c.seq(doc.get("subsets"), "subsets")):
        f = f"subsets[{i}]"
        s = c.mapping(s, f)
        ports = []
        for j, p in enumerate(c.seq(s.get("ports"), f + ".ports")):
            pf = f"{f}.ports[{j}]"
            p = c.mapping(p, pf)
            port = c.integer(p.get("port"), pf + ".port", 1, 65535, required=True)
            if port is not None:
                ports.append((c.string(p.get("name"), pf + ".name", default="") or "",
                              c.protocol(p.get("protocol"), pf + ".protocol"), port))
        for key, ready in (("addresses", True), ("notReadyAddresses", False)):
            for j, a in enumerate(c.seq(s.get(key), f"{f}.{key}")):
                af = f"{f}.{key}[{j}]"
                a = c.mapping(a, af)
                ip = c.ip(a.get("ip"), af + ".ip")
                if ip is None:
                    continue
                ref = c.mapping(a.get("targetRef"), af + ".targetRef")
                target = f"{ref.get('namespace') or ns}/{ref['name']}" if ref.get("name") else None
                bucket = by_fam.setdefault((ip[0], tuple(ports)), [])
                bucket.append(Endpoint([ip], ready, ready, False,
                                       c.string(a.get("nodeName"), af + ".nodeName"), target,
                                       _hostname(c, a.get("hostname"), af + ".hostname")))
    out = []
    for k, ((fam, ports), eps) in enumerate(sorted(by_fam.items(), key=lambda kv: kv[0])):
        out.append(EndpointSlice(namespace=ns, name=f"{name}/endpoints-{k}", service=name,
                                 address_type=fam, ports=list(ports), endpoints=eps,
                                 from_endpoints=True, origin=c.origin))
    return out


def parse_pod(doc, c):
    meta, name, ns = _meta(doc, c, True)
    spec = c.mapping(doc.get("spec"), "spec")
    status = c.mapping(doc.get("status"), "status")
    ips = []
    pod_ips = status.get("podIPs")
    if pod_ips is not None:
        for i, p in enumerate(c.seq(pod_ips, "status.podIPs")):
            p = c.mapping(p, f"status.podIPs[{i}]")
            ip = c.ip(p.get("ip"), f"status.podIPs[{i}].ip")
            if ip is not None:
                ips.append(ip)
    elif status.get("podIP"):
        ip = c.ip(status.get("podIP"), "status.podIP")
        if ip is not None:
            ips.append(ip)
    return Pod(namespace=ns, name=name, node_name=c.string(spec.get("nodeName"), "spec.nodeName"),
               ips=ips, host_network=c.boolean(spec.get("hostNetwork"), "spec.hostNetwork", False),
               labels=dict(c.mapping(meta.get("labels"), "metadata.labels")),
               phase=c.string(status.get("phase"), "status.phase", default="") or "", origin=c.origin,
               ports=_container_ports(c, spec))


def _container_ports(c, spec):
    """Named container ports (name, protocol, port) of the containers and of the sidecar
    (restartPolicy Always) init containers: what NetworkPolicy named ports resolve against."""
    out = []
    for key in ("containers", "initContainers"):
        for i, ctr in enumerate(c.seq(spec.get(key), f"spec.{key}")):
            f = f"spec.{key}[{i}]"
            ctr = c.mapping(ctr, f)
            if key == "initContainers" and ctr.get("restartPolicy") != "Always":
                continue
            for j, p in enumerate(c.seq(ctr.get("ports"), f + ".ports")):
                pf = f"{f}.ports[{j}]"
                p = c.mapping(p, pf)
                name = p.get("name")
                number = c.integer(p.get("containerPort"), pf + ".containerPort", 1, 65535, required=True)
                proto = c.protocol(p.get("protocol"), pf + ".protocol")
                if name is None:
                    continue
                if not isinstance(name, str) or not _IANA_SVC_NAME.fullmatch(name) or "--" in name \
                        or not any(ch.isalpha() for ch in name):
                    c.err(pf + ".name", f"must be a port name (IANA_SVC_NAME: 1-15 of a-z, 0-9, '-', "
                                        f"with a letter) (got {name!r})")
                elif number is not None:
                    out.append((name, proto, number))
    return out


def parse_namespace(doc, c):
    meta, name, _ = _meta(doc, c, False)
    labels = dict(c.mapping(meta.get("labels"), "metadata.labels"))
    labels[policy.NS_NAME_LABEL] = name        # as the API server sets it (immutable)
    return Namespace(name=name, labels=labels, origin=c.origin)


def parse_node(doc, c):
    meta, name, _ = _meta(doc, c, False)
    spec = c.mapping(doc.get("spec"), "spec")
    status = c.mapping(doc.get("status"), "status")
    cidrs = spec.get("podCIDRs")
    if cidrs is None and spec.get("podCIDR"):
        cidrs = [spec.get("podCIDR")]
    node = Node(name=name, pod_cidrs=c.prefixes(cidrs, "spec.podCIDRs"), origin=c.origin,
                labels=dict(c.mapping(meta.get("labels"), "metadata.labels")))
    node.overlay = overlay.node_overlay(meta, c)
    for i, a in enumerate(c.seq(status.get("addresses"), "status.addresses")):
        f = f"status.addresses[{i}]"
        a = c.mapping(a, f)
        kind = c.string(a.get("type"), f + ".type", required=True, default="")
        if kind in ("InternalIP", "ExternalIP"):
            ip = c.ip(a.get("address"), f + ".address")
            if ip is not None:
                node.addresses.append((kind, ip))
    apirules.check_subnets(c, cidrs, "spec.podCIDRs", node=True)
    return node


def _listen_address(text):
    """(IP, port) from "10.96.0.10", "10.96.0.10:53", "fd00::10" or "[fd00::10]:53"."""
    port = 53
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(text)
        if rest:
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = int(p)
    else:
        host = text
    if not 1 <= port <= 65535:
        raise ValueError(text)
    return addr.parse_ip(host), port


def _dns_settings(c, d):
    """NodeConfig spec.dns (docs/nodeconfig.md)."""
    known = ("enabled", "clusterDomain", "listen", "ttl", "pods")
    for k in d:
        if k not in known:
            c.err(f"spec.dns.{k}", f"unknown field (known: {', '.join(known)})")
    out = Dns()
    out.enabled = c.boolean(d.get("enabled"), "spec.dns.enabled", True)
    domain = c.string(d.get("clusterDomain"), "spec.dns.clusterDomain", default="cluster.local")
    if domain is not None:
        domain = domain.lower().removesuffix(".")
        if not is_dns_subdomain(domain) or domain.endswith("in-addr.arpa") or domain.endswith("ip6.arpa"):
            c.err("spec.dns.clusterDomain", f"must be a DNS name outside the reverse zones, like "
                                            f"cluster.local (got {d.get('clusterDomain')!r})")
        else:
            out.cluster_domain = domain
    for i, v in enumerate(c.seq(d.get("listen"), "spec.dns.listen")):
        try:
            out.listen.append(_listen_address(str(v)))
        except ValueError:
            c.err(f"spec.dns.listen[{i}]", f"must be an address, address:port or [IPv6]:port (got {v!r})")
    out.ttl = c.integer(d.get("ttl"), "spec.dns.ttl", 0, 3600, default=5)
    out.pods = c.choice(d.get("pods"), "spec.dns.pods", ("insecure", "disabled"), "insecure")
    return out


_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}
MAX_DURATION = 10 ** 9      # seconds (~31 years): the most the conntrack stage keeps a timer for


def _seconds(c, value, field, default):
    """A duration in seconds, bounded here so that no later stage meets one it refuses."""
    seconds = None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str) and 1 < len(value) <= 24 and value[:-1].isascii() and value[:-1].isdigit() \
            and value[-1:] in _DURATION_UNITS:
        seconds = int(value[:-1]) * _DURATION_UNITS[value[-1]]
    if value is None:
        return default
    if seconds is not None and 0 < seconds <= MAX_DURATION:
        return seconds
    c.err(field, f"must be a duration of 1 s to {MAX_DURATION} s: seconds, or like 30s, 5m, 24h "
                 f"(got {value!r})")
    return default


def parse_nodeconfig(doc, c):
    meta, name, _ = _meta(doc, c, False)
    spec = c.mapping(doc.get("spec"), "spec", required=True)
    known = {"localhostNodePorts", "nodeName", "nodeAddresses", "podCIDRs", "clusterCIDRs", "serviceCIDRs",
             "nodePortRange", "nodePortAddresses", "masquerade", "encapsulation",
             "localTrafficDetection", "proxyMode", "conntrack", "ports", "sessionAffinityMaxEntries",
             "networkPolicy", "dns", *overlay.NODECONFIG_FIELDS}
    for k in spec:
        if k not in known:
            c.err(f"spec.{k}", f"unknown field (known: {', '.join(sorted(known))})")
    nc = NodeConfig(node_name=c.string(spec.get("nodeName"), "spec.nodeName", default=name) or name,
                    origin=c.origin)
    nc.node_addresses, nc.node_subnets = overlay.addresses_with_subnets(c, spec.get("nodeAddresses"),
                                                                        "spec.nodeAddresses")
    nc.pod_cidrs = c.prefixes(spec.get("podCIDRs"), "spec.podCIDRs")
    nc.cluster_cidrs = c.prefixes(spec.get("clusterCIDRs"), "spec.clusterCIDRs")
    nc.service_cidrs = c.prefixes(spec.get("serviceCIDRs"), "spec.serviceCIDRs")
    apirules.check_subnets(c, spec.get("podCIDRs"), "spec.podCIDRs", node=True)
    apirules.check_subnets(c, spec.get("clusterCIDRs"), "spec.clusterCIDRs")
    apirules.check_subnets(c, spec.get("serviceCIDRs"), "spec.serviceCIDRs")
    nc.node_port_range = c.port_range(spec.get("nodePortRange"), "spec.nodePortRange", (30000, 32767))
    npa = c.seq(spec.get("nodePortAddresses"), "spec.nodePortAddresses")
    for i, v in enumerate(npa):
        if v in ("primary", "all"):
            nc.node_port_addresses.append(v)
        else:
            try:
                nc.node_port_addresses.append(addr.parse_prefix(v))
            except ValueError:
                c.err(f"spec.nodePortAddresses[{i}]", f"must be \"primary\", \"all\" or a CIDR (got {v!r})")
    m = c.mapping(spec.get("masquerade"), "spec.masquerade")
    for k in m:
        if k not in ("masqueradeAll", "snatPortRange"):
            c.err(f"spec.masquerade.{k}", "unknown field (known: masqueradeAll, snatPortRange)")
    nc.masquerade_all = c.boolean(m.get("masqueradeAll"), "spec.masquerade.masqueradeAll", False)
    nc.snat_port_range = c.port_range(m.get("snatPortRange"), "spec.masquerade.snatPortRange", (1024, 65535))
    e = c.mapping(spec.get("encapsulation"), "spec.encapsulation")
    nc.encapsulation = c.choice(e.get("mode"), "spec.encapsulation.mode", ("None", "IPIP", "VXLAN"), "None")
    nc.encapsulation_when = c.choice(e.get("when"), "spec.encapsulation.when",
                                     ("Always", "CrossSubnet"), "Always")
    nc.vxlan_port = c.integer(e.get("vxlanPort"), "spec.encapsulation.vxlanPort", 1, 65535, default=4789)
    nc.vxlan_vni = c.integer(e.get("vni"), "spec.encapsulation.vni", 0, (1 << 24) - 1, default=1)
    nc.local_traffic_detection = c.choice(spec.get("localTrafficDetection"), "spec.localTrafficDetection",
                                          LOCAL_TRAFFIC_DETECTION, "ClusterCIDR")
    nc.cluster_cidrs_set = spec.get("clusterCIDRs") is not None
    nc.localhost_node_ports = c.boolean(spec.get("localhostNodePorts"), "spec.localhostNodePorts", True)
    nc.localhost_node_ports_set = spec.get("localhostNodePorts") is not None
    nc.proxy_mode = c.choice(spec.get("proxyMode"), "spec.proxyMode", ("nftables", "iptables"), "nftables")
    nc.session_affinity_slots = c.integer(spec.get("sessionAffinityMaxEntries"),
                                          "spec.sessionAffinityMaxEntries", 4, 1 << 20, default=65536)
    ct = c.mapping(spec.get("conntrack"), "spec.conntrack")
    d = Conntrack()
    fields = {"maxFlows": "max_flows", "tcpEstablishedTimeout": "tcp_established_timeout",
              "tcpCloseWaitTimeout": "tcp_close_wait_timeout", "tcpSynTimeout": "tcp_syn_timeout",
              "tcpTimeWaitTimeout": "tcp_time_wait_timeout", "udpTimeout": "udp_timeout",
              "udpStreamTimeout": "udp_stream_timeout", "icmpTimeout": "icmp_timeout",
              "genericTimeout": "generic_timeout", "dropInvalid": "drop_invalid"}
    for k in ct:
        if k not in fields:
            c.err(f"spec.conntrack.{k}", f"unknown field (known: {', '.join(fields)})")
    d.max_flows = c.integer(ct.get("maxFlows"), "spec.conntrack.maxFlows", 1, 1 << 26, default=d.max_flows)
    for k, attr in fields.items():
        if k.endswith("Timeout"):
            setattr(d, attr, _seconds(c, ct.get(k), f"spec.conntrack.{k}", getattr(d, attr)))
    d.drop_invalid = c.boolean(ct.get("dropInvalid"), "spec.conntrack.dropInvalid", True)
    nc.conntrack = d
    npol = c.mapping(spec.get("networkPolicy"), "spec.networkPolicy")
    for k in npol:
        if k != "establishedFlows":
            c.err(f"spec.networkPolicy.{k}", "unknown field (known: establishedFlows)")
    nc.policy_established = c.choice(npol.get("establishedFlows"), "spec.networkPolicy.establishedFlows",
                                     ("Continue", "Recheck"), "Continue")
    nc.dns = _dns_settings(c, c.mapping(spec.get("dns"), "spec.dns"))
    for i, p in enumerate(c.seq(spec.get("ports"), "spec.ports")):
        f = f"spec.ports[{i}]"
        p = c.mapping(p, f)
        pname = c.string(p.get("name"), f + ".name", required=True, default="")
        kind = c.choice(p.get("kind"), f + ".kind", ("Pod", "Uplink", "Host"), "Pod")
        pod = c.string(p.get("pod"), f + ".pod")
        if kind == "Pod" and not pod:
            c.err(f + ".pod", "is required for a Pod port (namespace/name)")
        nc.ports.append(Port(pname, kind, pod, c.string(p.get("interface"), f + ".interface")))
    apirules.check_ports(c, nc.ports, spec.get("ports"))
    overlay.parse_network(spec, c, nc)
    return nc


PARSERS = {
    "Service": (parse_service, True),
    "Endpoints": (parse_endpoints, True),
    "EndpointSlice": (parse_endpointslice, True),
    "Pod": (parse_pod, True),
    "Namespace": (parse_namespace, False),
    "Node": (parse_node, False),
    "NodeConfig": (parse_nodeconfig, False),
    "NetworkPolicy": (policy.parse_networkpolicy, True),
    **{kind: (policy.cluster_policy_parser(kind), False) for kind in policy.CLUSTER_KINDS},
    **calico.PARSERS,
}


def parse_object(origin, doc, problems):
    """(kind, model object or list of them) for one raw mapping, or None when skipped."""
    if not isinstance(doc, dict):
        problems.error(origin, "document", "(top level)", "must be a Kubernetes object (a mapping)")
        return None
    kind, api = doc.get("kind"), doc.get("apiVersion")
    if kind is None or kind == "":
        problems.error(origin, "object", "kind", "is required")
        return None
    if not isinstance(kind, str):
        problems.error(origin, "object", "kind", f"must be a string naming the kind, like Service "
                                                 f"(got {kind!r})")
        return None
    if kind not in PARSERS:
        problems.notices.append(f"{origin}: skipped {_ref(kind, doc, True)} ({api}): "
                                "kdp does not use this kind")
        return None
    parser, namespaced = PARSERS[kind]
    ctx = _Ctx(origin, _ref(kind, doc, namespaced), problems)
    if api != KINDS[kind]:
        ctx.err("apiVersion", f"must be {KINDS[kind]} for {kind} (got {api!r})")
        return None
    apirules.check_names(kind, doc, ctx, namespaced)
    return kind, parser(doc, ctx)
