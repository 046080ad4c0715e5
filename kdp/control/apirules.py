"""The Kubernetes API server's own rules for the fields kdp reads, applied to a snapshot.

A snapshot is usually what the API server accepted, but a hand-written or edited one can
hold what no cluster could: these checks refuse it as the API server would, so that kdp
never routes by an object the cluster could not have. Each rule cites where it comes from
(k8s.io/kubernetes `pkg/apis/core/validation`, `apimachinery/pkg/util/validation`, the
Service IP allocator `pkg/registry/core/service/ipallocator`, KEP-4858 for CIDRs), and
each check records its errors through the object's validation context (`c.err(field,
message)`), so the message names file, object and field.

Object names (ValidateObjectMeta with each kind's name rule):
  Service                  DNS-1035 label: 1-63 of a-z, 0-9, '-', starting with a letter
  Namespace                DNS-1123 label: 1-63 of a-z, 0-9, '-', alphanumeric at both ends
  metadata.namespace       DNS-1123 label
  every other kind         DNS-1123 subdomain: dot-separated DNS-1123 labels, 253 at most
ClusterIPs (ValidateServiceClusterIPsRelatedFields and the allocator):
  clusterIPs[i] is of the family ipFamilies[i]; ipFamilies holds IPv4 / IPv6, no repeat;
  an address the allocator can never hand out is refused: unspecified, loopback,
  link-local, multicast, the IPv4 limited broadcast (and, with the snapshot's service
  CIDRs, one outside them or their network / IPv4 broadcast address: Cluster checks).
CIDRs (podCIDRs, KEP-4858 strict subnet form): no host bits set; Node podCIDRs: at most
  one per family, not a default route (/0).
"""
import ipaddress
import re

from kdp.control import addr

_DNS1123_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z](?:[-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
LABEL_MAX, SUBDOMAIN_MAX = 63, 253

FAMILIES = {"IPv4": 4, "IPv6": 6}


def dns1123_label_problem(name):
    """Why `name` is not a DNS-1123 label (None: it is one)."""
    if len(name) > LABEL_MAX:
        return f"must be no more than {LABEL_MAX} characters (got {len(name)})"
    if not _DNS1123_LABEL.fullmatch(name):
        return ("must be a DNS-1123 label: lower-case letters, digits and '-', starting and "
                f"ending with a letter or digit (got {name!r})")
    return None


def dns1035_label_problem(name):
    if len(name) > LABEL_MAX:
        return f"must be no more than {LABEL_MAX} characters (got {len(name)})"
    if not _DNS1035_LABEL.fullmatch(name):
        return ("must be a DNS-1035 label: lower-case letters, digits and '-', starting with a "
                f"letter and ending with a letter or digit (got {name!r})")
    return None


def dns1123_subdomain_problem(name):
    if len(name) > SUBDOMAIN_MAX:
        return f"must be no more than {SUBDOMAIN_MAX} characters (got {len(name)})"
    if not all(_DNS1123_LABEL.fullmatch(part) for part in name.split(".")):
        return ("must be a DNS-1123 subdomain: lower-case letters, digits, '-' and '.', each "
                f"dot-separated part starting and ending with a letter or digit (got {name!r})")
    return None


def label_value_problem(value):
    if len(value) > LABEL_MAX:
        return f"must be no more than {LABEL_MAX} characters (got {len(value)})"
    if not _LABEL_VALUE.fullmatch(value):
        return ("must be a label value: letters, digits, '-', '_' and '.', starting and ending "
                f"with a letter or digit (got {value!r})")
    return None


#: kind -> the rule its metadata.name follows (the rest: DNS-1123 subdomain)
NAME_RULES = {"Service": dns1035_label_problem, "Namespace": dns1123_label_problem}


def check_names(kind, doc, c, namespaced):
    """metadata.name and metadata.namespace of one object, by its kind's rule. Missing or
    non-string names are left to the parser (it reports them as required)."""
    meta = doc.get("metadata")
    if not isinstance(meta, dict):
        return
    name = meta.get("name")
    if isinstance(name, str) and name:
        problem = NAME_RULES.get(kind, dns1123_subdomain_problem)(name)
        if problem:
            c.err("metadata.name", problem)
    ns = meta.get("namespace")
    if namespaced and isinstance(ns, str) and ns:
        problem = dns1123_label_problem(ns)
        if problem:
            c.err("metadata.namespace", problem)


# ------------------------------------------------------------------ addresses

def special_address_problem(ip):
    """Why an address can never be a ClusterIP (None: it can), ip = (version, int)."""
    if ip[0] == 4 and 0 < ip[1] < 0xE0000000 and ip[1] >> 24 != 127 and ip[1] >> 16 != 0xA9FE:
        return None     # the common case, without building an address object (start-up)
    a = ipaddress.ip_address(ip[1]) if ip[0] == 4 else ipaddress.IPv6Address(ip[1])
    if a.is_unspecified:
        return "may not be unspecified"
    if a.is_loopback:
        return "may not be a loopback address"
    if a.is_multicast:
        return "may not be a multicast address"
    if a.is_link_local:
        return "may not be a link-local address"
    if ip[0] == 4 and ip[1] == 0xFFFFFFFF:
        return "may not be the broadcast address"
    return None


def check_cluster_ips(c, spec, cluster_ips, field="spec.clusterIPs"):
    """ClusterIPs by themselves and against spec.ipFamilies (the API server's rules)."""
    for i, ip in enumerate(cluster_ips):
        problem = special_address_problem(ip)
        if problem:
            c.err(f"{field}[{i}]", f"{addr.format_ip(ip)} {problem} (a ClusterIP comes from "
                                   "the service CIDR)")
    families = spec.get("ipFamilies")
    if families is None:
        return
    if not isinstance(families, list):
        c.err("spec.ipFamilies", "must be a list")
        return
    seen = set()
    for i, fam in enumerate(families):
        if fam not in FAMILIES:
            c.err(f"spec.ipFamilies[{i}]", f"must be IPv4 or IPv6 (got {fam!r})")
        elif fam in seen:
            c.err(f"spec.ipFamilies[{i}]", f"duplicate family {fam}")
        seen.add(fam)
    if len(families) > 2:
        c.err("spec.ipFamilies", "may hold at most two families")
    for i, ip in enumerate(cluster_ips[:len(families)]):
        want = FAMILIES.get(families[i])
        if want is not None and ip[0] != want:
            c.err(f"{field}[{i}]", f"{addr.format_ip(ip)} is not an {families[i]} address as "
                                   f"spec.ipFamilies[{i}] says")


def range_problem(ip, cidrs):
    """Why the allocator of `cidrs` (the service CIDRs) could not have given `ip` (None:
    it could): outside every CIDR of its family, or a CIDR's network address, or an IPv4
    CIDR's broadcast address."""
    same = [p for p in cidrs if p[0] == ip[0]]
    if not same:
        return f"is an IPv{ip[0]} address and no service CIDR is IPv{ip[0]}"
    for prefix in same:
        if addr.prefix_contains(prefix, ip):
            bits = 32 if ip[0] == 4 else 128
            last = prefix[1] | ((1 << (bits - prefix[2])) - 1)
            if ip[1] == prefix[1]:
                return f"is the network address of the service CIDR {addr.format_prefix(prefix)}"
            if ip[0] == 4 and ip[1] == last:
                return f"is the broadcast address of the service CIDR {addr.format_prefix(prefix)}"
            return None
    return ("is outside the service CIDRs ("
            + ", ".join(addr.format_prefix(p) for p in same) + ")")


# ------------------------------------------------------------------ CIDRs

def check_subnets(c, values, field, node=False):
    """CIDRs that must be subnets (no host bits: KEP-4858), as given in the raw list
    `values`. `node`: a Node's podCIDRs (also: at most one per family, not /0)."""
    if not isinstance(values, list):
        return
    families = {}
    for i, text in enumerate(values):
        if not isinstance(text, str):
            continue            # the parser reports it
        try:
            net = ipaddress.ip_network(text.strip(), strict=False)
        except ValueError:
            continue
        if "/" in text and int(net.network_address) != int(ipaddress.ip_interface(text.strip()).ip):
            c.err(f"{field}[{i}]", f"{text} has host bits set (the subnet is {net})")
        if node and net.prefixlen == 0:
            c.err(f"{field}[{i}]", f"{text} would make every address this node's pod address")
        if node:
            if net.version in families:
                c.err(field, f"may hold at most one CIDR per IP family ({values[families[net.version]]} "
                             f"and {text} are both IPv{net.version})")
            families.setdefault(net.version, i)


def overlapping(prefixes_by_owner):
    """[(owner a, prefix a, owner b, prefix b)]: each prefix b that overlaps an earlier
    prefix a (in address order) of another owner; prefixes_by_owner: {owner: [Prefix]}.
    One sweep over the sorted prefixes (CIDRs nest or are apart), O(n log n)."""
    flat = sorted(((p, owner) for owner, ps in prefixes_by_owner.items() for p in ps),
                  key=lambda item: item[0])
    out = []
    widest = None           # (version, last address, prefix, owner) reaching furthest so far
    for p, owner in flat:
        bits = 32 if p[0] == 4 else 128
        last = p[1] | ((1 << (bits - p[2])) - 1)
        if widest is not None and widest[0] == p[0] and p[1] <= widest[1] and widest[3] != owner:
            out.append((widest[3], widest[2], owner, p))
        if widest is None or widest[0] != p[0] or last > widest[1]:
            widest = (p[0], last, p, owner)
    return out


# ------------------------------------------------------------------ NodeConfig ports

RESERVED_PORTS = {"uplink": "Uplink", "host": "Host"}
_IFNAME_BAD = re.compile(r"[/:\s]")
IFNAMSIZ = 16           # Linux: interface names hold at most 15 bytes


def interface_name_problem(name):
    """Why `name` cannot be a Linux interface name (dev_valid_name), or "any"."""
    if name in (".", "..") or _IFNAME_BAD.search(name) or len(name.encode()) >= IFNAMSIZ:
        return (f"must be a Linux interface name: 1-{IFNAMSIZ - 1} bytes, no '/', ':' or "
                f"white space (got {name!r})")
    if name == "any":
        return "\"any\" is libpcap's every-interface device, not an interface"
    return None


def check_ports(c, ports, raw=(), field="spec.ports"):
    """NodeConfig ports: names non-empty and unique; `uplink` and `host` are the Uplink and
    Host ports' names and no one else's; interfaces and pods named once. `raw`: the ports
    as written (a missing name is already reported as required)."""
    names, interfaces, pods = {}, {}, {}
    raw = raw if isinstance(raw, list) else []
    for i, p in enumerate(ports):
        f = f"{field}[{i}]"
        missing = i < len(raw) and isinstance(raw[i], dict) and raw[i].get("name") is None
        if p.name == "" and missing:
            pass
        elif p.name == "":
            c.err(f + ".name", "must not be empty")
        elif p.name in RESERVED_PORTS and p.kind != RESERVED_PORTS[p.name]:
            c.err(f + ".name", f"{p.name!r} is the {RESERVED_PORTS[p.name]} port's name; a "
                               f"{p.kind} port needs another")
        elif p.kind in ("Uplink", "Host") and p.name != p.kind.lower():
            c.err(f + ".name", f"the {p.kind} port is named {p.kind.lower()!r} (got {p.name!r})")
        if p.name in names:
            c.err(f + ".name", f"duplicate port name {p.name!r} (also {field}[{names[p.name]}])")
        names.setdefault(p.name, i)
        if p.interface is not None:
            problem = interface_name_problem(p.interface)
            if problem:
                c.err(f + ".interface", problem)
            elif p.interface in interfaces:
                c.err(f + ".interface", f"interface {p.interface!r} is also {field}"
                                        f"[{interfaces[p.interface]}]'s")
            interfaces.setdefault(p.interface, i)
        if p.pod:
            if p.pod in pods:
                c.err(f + ".pod", f"pod {p.pod!r} already has a port ({field}[{pods[p.pod]}])")
            pods.setdefault(p.pod, i)
