"""Hypothesis strategies for network-policy tests: small clusters (namespaces, pods
with labels and named ports, on this node or another) with policies of every kind.

`cluster_objects(...)` draws a list of raw objects (as kubectl prints them) that a
Cluster accepts. Options narrow it to what an outside analyzer understands
(`admin=False`: NetworkPolicy only; `v6=False`; `remote=False`: every pod on
node-1; `pod_safe_blocks=True`: ipBlocks never cover a pod address unless an
`except` removes the whole pod range, so that "does an ipBlock match pods?" has
the same answer under every reading of the API; `nca_safe=True`: no Exists /
DoesNotExist in the pod selector of a peer that also has a namespace selector).
"""
from hypothesis import strategies as st

NODE1, NODE2 = "192.168.56.11", "192.168.56.12"
POD_RANGE = "10.244.0.0/16"
NS_LABELS = {"team": ("a", "b"), "env": ("prod", "dev")}
POD_LABELS = {"app": ("web", "db", "api"), "tier": ("front", "back")}
NAMED_PORTS = [("http", "TCP", 8080), ("http", "TCP", 80), ("dns", "UDP", 53), ("dns", "TCP", 53),
               ("metrics", "TCP", 9090), ("sctp", "SCTP", 3868)]
PORT_NAMES = ("http", "dns", "metrics", "sctp", "nope")
PORTS = (53, 80, 443, 3868, 8080, 9090)
# ipBlocks: external ranges, and ranges over pods (with or without exceptions)
EXTERNAL_BLOCKS = [("192.168.0.0/16", ["192.168.56.0/24"]), ("192.168.56.0/24", []),
                   ("8.8.8.0/24", ["8.8.8.8/32"]), ("172.16.0.0/12", []),
                   ("0.0.0.0/0", ["10.244.0.0/16"]), ("0.0.0.0/0", ["10.244.0.0/16", "172.16.0.0/12"])]
POD_BLOCKS = [("10.244.1.0/24", []), ("10.244.0.0/16", ["10.244.2.0/24"]), ("0.0.0.0/0", []),
              ("10.244.1.0/28", ["10.244.1.4/30"])]
V6_BLOCKS = [("fd00:244::/32", ["fd00:244:2::/48"]), ("::/0", []), ("2001:db8::/32", [])]
EXTERNAL_PROBES = ["8.8.8.8", "8.8.8.9", "192.168.1.1", "172.16.5.5", "1.1.1.1"]


def _selector(draw, vocab, allow_exprs=True, ops=("In", "NotIn", "Exists", "DoesNotExist")):
    sel = {}
    if draw(st.integers(0, 2)) == 0:
        return sel                      # empty: selects everything (common in real policies)
    keys = draw(st.lists(st.sampled_from(sorted(vocab)), max_size=2, unique=True))
    if keys:
        sel["matchLabels"] = {k: draw(st.sampled_from(vocab[k])) for k in keys}
    if allow_exprs and draw(st.integers(0, 2)) == 0:
        exprs = []
        for _ in range(draw(st.integers(1, 2))):
            k = draw(st.sampled_from(sorted(vocab)))
            op = draw(st.sampled_from(list(ops)))
            e = {"key": k, "operator": op}
            if op in ("In", "NotIn"):
                e["values"] = draw(st.lists(st.sampled_from(vocab[k]), min_size=1, max_size=2, unique=True))
            exprs.append(e)
        sel["matchExpressions"] = exprs
    return sel


def _np_peer(draw, namespaces, blocks, nca_safe=False):
    kind = draw(st.sampled_from(["pod", "ns", "both", "ns-name", "ip"] if blocks else ["pod", "ns", "both", "ns-name"]))
    if kind == "pod":
        return {"podSelector": _selector(draw, POD_LABELS)}
    if kind == "ns":
        return {"namespaceSelector": _selector(draw, NS_LABELS)}
    if kind == "ns-name":
        return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": draw(st.sampled_from(namespaces))}}}
    if kind == "both":
        # nca_safe: no Exists / DoesNotExist in the pod selector of such a peer (nca reads them in
        # the policy's own namespace only: docs/policy.md, "kdp and nca")
        ops = ("In", "NotIn") if nca_safe else ("In", "NotIn", "Exists", "DoesNotExist")
        return {"namespaceSelector": _selector(draw, NS_LABELS), "podSelector": _selector(draw, POD_LABELS, ops=ops)}
    cidr, exc = draw(st.sampled_from(blocks))
    block = {"cidr": cidr}
    if exc:
        block["except"] = list(exc)
    return {"ipBlock": block}


def _np_port(draw):
    kind = draw(st.sampled_from(["num", "named", "range", "proto-only"]))
    proto = draw(st.sampled_from(["TCP", "UDP", "SCTP", None]))
    p = {} if proto is None else {"protocol": proto}
    if kind == "num":
        p["port"] = draw(st.sampled_from(PORTS))
    elif kind == "named":
        p["port"] = draw(st.sampled_from(PORT_NAMES))
    elif kind == "range":
        lo = draw(st.sampled_from(PORTS))
        p["port"] = lo
        p["endPort"] = lo + draw(st.sampled_from([0, 1, 100, 9000]))
    return p


def _np_rules(draw, namespaces, blocks, key, nca_safe=False):
    rules = []
    for _ in range(draw(st.integers(0, 2))):
        r = {}
        if draw(st.integers(0, 3)):
            r[key] = [_np_peer(draw, namespaces, blocks, nca_safe) for _ in range(draw(st.integers(1, 2)))]
        if draw(st.booleans()):
            r["ports"] = [_np_port(draw) for _ in range(draw(st.integers(1, 2)))]
        rules.append(r)
    return rules


def network_policy(draw, name, namespaces, blocks, nca_safe=False):
    spec = {"podSelector": _selector(draw, POD_LABELS)}
    shape = draw(st.sampled_from(["ingress", "egress", "both", "default"]))
    if shape in ("ingress", "both", "default"):
        rules = _np_rules(draw, namespaces, blocks, "from", nca_safe)
        if rules or shape != "default":
            spec["ingress"] = rules
    if shape in ("egress", "both", "default"):
        rules = _np_rules(draw, namespaces, blocks, "to", nca_safe)
        if rules or shape != "default":
            spec["egress"] = rules
    if shape != "default":
        spec["policyTypes"] = {"ingress": ["Ingress"], "egress": ["Egress"], "both": ["Ingress", "Egress"]}[shape]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": draw(st.sampled_from(namespaces))}, "spec": spec}


def _admin_peer(draw, egress, v1alpha2):
    kinds = ["namespaces", "pods"] + (["networks", "nodes"] if egress else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "namespaces":
        return {"namespaces": _selector(draw, NS_LABELS)}
    if kind == "pods":
        return {"pods": {"namespaceSelector": _selector(draw, NS_LABELS), "podSelector": _selector(draw, POD_LABELS)}}
    if kind == "nodes":
        return {"nodes": draw(st.sampled_from([{}, {"matchLabels": {"zone": "a"}}]))}
    return {"networks": draw(st.lists(st.sampled_from(["10.244.1.0/24", "0.0.0.0/0", "8.8.8.0/24",
                                                       "192.168.56.0/24", "fd00:244:1::/48"]),
                                      min_size=1, max_size=2, unique=True))}


def _admin_ports(draw, v1alpha2, named_ok):
    out = []
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["num", "range", "named"] if named_ok else ["num", "range"]))
        proto = draw(st.sampled_from(["TCP", "UDP", "SCTP"]))
        if v1alpha2:
            if kind == "named":
                out.append({"destinationNamedPort": draw(st.sampled_from(PORT_NAMES))})
            elif kind == "num":
                out.append({proto.lower(): {"destinationPort": {"number": draw(st.sampled_from(PORTS))}}})
            else:
                lo = draw(st.sampled_from(PORTS))
                out.append({proto.lower(): {"destinationPort": {"range": {"start": lo, "end": lo + 50}}}})
        else:
            if kind == "named":
                out.append({"namedPort": draw(st.sampled_from(PORT_NAMES))})
            elif kind == "num":
                out.append({"portNumber": {"protocol": proto, "port": draw(st.sampled_from(PORTS))}})
            else:
                lo = draw(st.sampled_from(PORTS))
                out.append({"portRange": {"protocol": proto, "start": lo, "end": lo + 50}})
    return out


def admin_policy(draw, name, kind):
    v1alpha2 = kind == "ClusterNetworkPolicy"
    baseline = kind == "BaselineAdminNetworkPolicy" or (v1alpha2 and draw(st.booleans()))
    actions = (["Accept", "Deny", "Pass"] if v1alpha2 else
               (["Allow", "Deny"] if kind == "BaselineAdminNetworkPolicy" else ["Allow", "Deny", "Pass"]))
    subject = draw(st.sampled_from(["ns", "pods"]))
    spec = {"subject": {"namespaces": _selector(draw, NS_LABELS)} if subject == "ns" else
            {"pods": {"namespaceSelector": _selector(draw, NS_LABELS), "podSelector": _selector(draw, POD_LABELS)}}}
    if kind != "BaselineAdminNetworkPolicy":
        spec["priority"] = draw(st.integers(0, 3))
    if v1alpha2:
        spec["tier"] = "Baseline" if baseline else "Admin"
    for direction, key in (("ingress", "from"), ("egress", "to")):
        rules = []
        for i in range(draw(st.integers(0, 2))):
            peers = [_admin_peer(draw, direction == "egress", v1alpha2) for _ in range(draw(st.integers(1, 2)))]
            r = {"name": f"r{i}", "action": draw(st.sampled_from(actions)), key: peers}
            if draw(st.booleans()):
                named_ok = not any("networks" in p or "nodes" in p for p in peers)
                r["protocols" if v1alpha2 else "ports"] = _admin_ports(draw, v1alpha2, named_ok)
            rules.append(r)
        if rules:
            spec[direction] = rules
    api = "policy.networking.k8s.io/v1alpha2" if v1alpha2 else "policy.networking.k8s.io/v1alpha1"
    return {"apiVersion": api, "kind": kind, "metadata": {"name": name}, "spec": spec}


@st.composite
def cluster_objects(draw, admin=True, v6=True, remote=True, pod_safe_blocks=False, host_network=True,
                    max_pods=7, max_policies=4, nca_safe=False):
    namespaces = [f"ns{i}" for i in range(draw(st.integers(1, 3)))]
    objs = [{"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": "node-1"},
             "spec": {"nodeAddresses": [NODE1] + (["fd00:56::11"] if v6 else []),
                      "clusterCIDRs": [POD_RANGE]}},
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "labels": {"zone": "a"}},
             "spec": {"podCIDRs": ["10.244.1.0/24"]},
             "status": {"addresses": [{"type": "InternalIP", "address": NODE1}]}},
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-2", "labels": {"zone": "b"}},
             "spec": {"podCIDRs": ["10.244.2.0/24"]},
             "status": {"addresses": [{"type": "InternalIP", "address": NODE2}]}}]
    for ns in namespaces:
        objs.append({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": ns, "labels": {k: draw(st.sampled_from(v)) for k, v in NS_LABELS.items()
                                                         if draw(st.booleans())}}})
    n = draw(st.integers(2, max_pods))
    for i in range(n):
        local = not remote or i == 0 or draw(st.booleans())
        node = 1 if local else 2
        hostnet = host_network and i > 0 and draw(st.integers(0, 9)) == 0
        ips = [NODE1 if node == 1 else NODE2] if hostnet else [f"10.244.{node}.{i + 1}"]
        if v6 and not hostnet and draw(st.booleans()):
            ips.append(f"fd00:244:{node}::{i + 1:x}")
        ports = draw(st.lists(st.sampled_from(NAMED_PORTS), max_size=2, unique_by=lambda t: (t[0], t[1])))
        ports = [p for k, p in enumerate(ports) if p[0] not in [q[0] for q in ports[:k]]]   # names unique
        objs.append({"apiVersion": "v1", "kind": "Pod",
                     "metadata": {"namespace": draw(st.sampled_from(namespaces)), "name": f"p{i}",
                                  "labels": {k: draw(st.sampled_from(v)) for k, v in POD_LABELS.items()
                                             if draw(st.booleans())}},
                     "spec": {"nodeName": f"node-{node}", "hostNetwork": hostnet,
                              "containers": [{"name": "c", "ports": [
                                  {"name": nm, "protocol": pr, "containerPort": num} for nm, pr, num in ports]}]},
                     "status": {"phase": "Running", "podIP": ips[0], "podIPs": [{"ip": ip} for ip in ips]}})
    blocks = list(EXTERNAL_BLOCKS) + ([] if pod_safe_blocks else POD_BLOCKS) + (V6_BLOCKS if v6 else [])
    for i in range(draw(st.integers(0, max_policies))):
        objs.append(network_policy(draw, f"np{i}", namespaces, blocks, nca_safe))
    if admin:
        kinds = draw(st.lists(st.sampled_from(["AdminNetworkPolicy", "ClusterNetworkPolicy",
                                               "BaselineAdminNetworkPolicy"]), max_size=3))
        banp = False
        for i, kind in enumerate(kinds):
            if kind == "BaselineAdminNetworkPolicy":
                if banp:
                    continue
                banp = True
                objs.append(admin_policy(draw, "default", kind))
            else:
                objs.append(admin_policy(draw, f"a{i}", kind))
    return objs


def addresses(objs):
    """Every address worth asking about: pods, nodes, and a few outside ones."""
    out = []
    for o in objs:
        if o["kind"] == "Pod":
            out.extend(ip["ip"] for ip in o["status"]["podIPs"])
    out += [NODE1, NODE2, "fd00:56::11"] + EXTERNAL_PROBES + ["fd00:244:2::99", "2001:db8::1"]
    return list(dict.fromkeys(out))


def probe_ports(objs):
    """(protocol number, port) pairs that cover every segment the objects can cut:
    every port they name, its neighbours, and ICMP."""
    nums = {1, 65535}
    for o in objs:
        _collect(o, nums)
    keys = [(1, 0)]
    for proto in (6, 17, 132):
        for n in sorted(nums):
            for p in (n - 1, n, n + 1):
                if 1 <= p <= 65535:
                    keys.append((proto, p))
    return sorted(set(keys))


def _collect(o, nums):
    if isinstance(o, dict):
        for k, v in o.items():
            if k in ("port", "endPort", "containerPort", "number", "start", "end") and isinstance(v, int):
                nums.add(v)
            else:
                _collect(v, nums)
    elif isinstance(o, list):
        for v in o:
            _collect(v, nums)
