"""kdp's NetworkPolicy decisions against an independent analyzer: network-config-analyzer
(IBM, `nca`, https://github.com/IBM/network-config-analyzer) computes the allowed
connections of a policy set from the manifests alone.

Hypothesis draws clusters (namespaces with labels, pods with labels and named ports,
NetworkPolicies with every selector form, ipBlocks with exceptions, named ports, port
ranges, TCP/UDP/SCTP); nca's connectivity map (`--output_format txt_no_fw_rules`: one
line per source, destination and connection set) is compared with kdp's compiled
tables for every ordered pair of pods and for outside addresses both ways, at every
port where an answer can change (every port the objects name, its neighbours, the
ends of the range) and for ICMP.

Every pod is on the node kdp compiles for, so kdp judges both ends of each flow, as
nca does. nca is not a Kubernetes API implementation; where the two readings of the
API differ, kdp follows the API reference and the difference is kept out of the
drawn clusters on purpose and documented (docs/policy.md, "kdp and nca"):
  * ipBlocks: nca never matches a pod with an ipBlock, kdp (the API reference and the
    upstream e2e tests) does: drawn ipBlocks cover either no pod or none once their
    `except`s are applied (`pod_safe_blocks`).
  * Exists / DoesNotExist in the podSelector of a peer that also has a namespaceSelector:
    nca (2.1.0) looks for such pods in the policy's own namespace only; the API applies
    the podSelector in every namespace the namespaceSelector selects (`nca_safe`).
  * the node's own traffic, hostNetwork pods, Services: not in nca's model; not drawn.

nca runs in a virtualenv of its own (it pins PyYAML 6.0.2, kdp uses newer):
run-tests.sh makes it at .venv-nca; KDP_NCA names another `nca` executable.
"""
import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import policygen
from kdp.control import Cluster
from kdp.control.policy_compile import compile_policy

ROOT = Path(__file__).resolve().parent.parent
# examples of CLUSTERS_PER_RUN clusters each (one run of nca per example)
EXAMPLES = int(os.environ.get("KDP_NCA_EXAMPLES", "6"))
PROTO_NUMBERS = {"TCP": 6, "UDP": 17, "SCTP": 132, "ICMP": 1}
NS_NAME = "kubernetes.io/metadata.name"


def nca_command():
    explicit = os.environ.get("KDP_NCA")
    for cand in (explicit, str(ROOT / ".venv-nca" / "bin" / "nca"), shutil.which("nca")):
        if cand and os.path.exists(cand):
            return cand
    pytest.fail("nca (network-config-analyzer) is not installed: ./run-tests.sh makes .venv-nca "
                "(python3 -m venv .venv-nca && .venv-nca/bin/pip install network-config-analyzer==2.1.0), "
                "or set KDP_NCA")


# ------------------------------------------------------------------ nca's output

def _ranges(text):
    """'80-90,8080' -> [(80, 90), (8080, 8080)]"""
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.append((int(lo), int(hi or lo)))
    return out


def _cube(body):
    """'protocols:TCP, SCTP,dst_ports:80-90,8080' -> predicate(proto, port)."""
    fields, key = {}, None
    for token in body.split(","):
        token = token.strip()
        if ":" in token:
            key, _, token = token.partition(":")
            fields[key] = []
        if token:
            fields[key].append(token)
    unknown = set(fields) - {"protocols", "dst_ports"}
    if unknown:
        raise ValueError(f"nca connection field(s) this test does not read: {unknown}")
    protos = None
    if "protocols" in fields:
        protos = set()
        for t in fields["protocols"]:
            if t in PROTO_NUMBERS:
                protos.add(PROTO_NUMBERS[t])
            else:
                for lo, hi in _ranges(t):
                    protos.update(range(lo, hi + 1))
    ports = _ranges(",".join(fields["dst_ports"])) if "dst_ports" in fields else None

    def match(proto, port):
        if protos is not None and proto not in protos:
            return False
        if ports is not None:
            return proto in (6, 17, 132) and any(lo <= port <= hi for lo, hi in ports)
        return True
    return match


def connections(text):
    """nca's connection text -> predicate(proto, port)."""
    text = text.strip()
    if text == "All connections":
        return lambda proto, port: True
    if text == "No connections":
        return lambda proto, port: False
    negate = text.startswith("All but ")
    if negate:
        text = text[len("All but "):]
    cubes = [_cube(b) for b in re.findall(r"\{([^}]*)\}", text)]

    def pred(proto, port):
        hit = any(c(proto, port) for c in cubes)
        return not hit if negate else hit
    return pred


def _endpoint(text, prefix=""):
    """'ns/name[Pod]' -> ('pod', 'ns/name') (without `prefix`); 'a.b.c.d-e.f.g.h' -> ('range', (lo, hi))."""
    if text.endswith("]"):
        name = text[:text.index("[")]
        return "pod", name[len(prefix):] if name.startswith(prefix) else name
    lo, _, hi = text.partition("-")
    return "range", (ipaddress.ip_address(lo), ipaddress.ip_address(hi or lo))


def run_nca(tmp_path, objs):
    """[(src endpoint, dst endpoint, predicate)] from nca's connectivity map of one cluster."""
    return run_nca_many(tmp_path, [objs])[0]


def run_nca_many(tmp_path, clusters):
    """nca's connectivity maps of several clusters, in one run of nca (a scheme file with
    one network configuration and one connectivityMap query per cluster)."""
    # a directory of its own per run: nca appends to an output file that exists
    d = Path(tempfile.mkdtemp(prefix="nca-", dir=tmp_path))
    configs, queries = [], []
    for k, objs in enumerate(clusters):
        # nca shares pods and namespaces of the same name between the configurations of
        # one run: each cluster's namespaces get a prefix of their own (removed on reading)
        objs = _renamed(objs, f"c{k}-")
        files = {}
        for kind, key in (("Namespace", "namespaceList"), ("Pod", "podList"),
                          ("NetworkPolicy", "networkPolicyList")):
            items = [o for o in objs if o["kind"] == kind]
            if kind == "Namespace":             # as the API server labels every namespace
                items = [{**o, "metadata": {**o["metadata"], "labels": {
                    **o["metadata"].get("labels", {}), "kubernetes.io/metadata.name": o["metadata"]["name"]}}}
                    for o in items]
            path = d / f"{key}-{k}.yaml"
            path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": items}))
            files[key] = str(path)
        configs.append({"name": f"c{k}", **files})
        queries.append({"name": f"q{k}", "connectivityMap": [f"c{k}"],
                        "outputConfiguration": {"outputFormat": "txt_no_fw_rules",
                                                "outputPath": str(d / f"out-{k}.txt")}})
    scheme = d / "scheme.yaml"
    scheme.write_text(yaml.safe_dump({"networkConfigList": configs, "queries": queries}))
    run = subprocess.run([nca_command(), "--scheme", str(scheme)], capture_output=True, text=True,
                         timeout=300, cwd=d)
    assert run.returncode == 0, run.stderr + run.stdout
    out = []
    for k in range(len(clusters)):
        lines = []
        for line in (d / f"out-{k}.txt").read_text().splitlines():
            m = re.match(r"^(\S+) => (\S+) : (.*)$", line)
            if m:
                lines.append((_endpoint(m.group(1), f"c{k}-"), _endpoint(m.group(2), f"c{k}-"),
                              connections(m.group(3))))
        out.append(lines)
    return out


def _renamed(objs, prefix):
    """The objects with every namespace name (and kubernetes.io/metadata.name selector
    value) prefixed."""
    def walk(o):
        if isinstance(o, dict):
            out = {}
            for key, v in o.items():
                if key == "namespace" and isinstance(v, str):
                    out[key] = prefix + v
                elif key == NS_NAME and isinstance(v, str):
                    out[key] = prefix + v
                else:
                    out[key] = walk(v)
            if out.get("key") == NS_NAME and "values" in out:
                out["values"] = [prefix + v for v in o["values"]]
            return out
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o
    out = []
    for o in objs:
        o = walk(o)
        if o["kind"] == "Namespace":
            o["metadata"]["name"] = prefix + o["metadata"]["name"]
        out.append(o)
    return out


def nca_allows(lines, src, dst, proto, port):
    """src/dst: ('pod', 'ns/name') or ('addr', ip)."""
    def hits(ep, want):
        kind, val = ep
        if want[0] == "pod":
            return kind == "pod" and val == want[1]
        return kind == "range" and val[0] <= want[1] <= val[1]
    return any(hits(s, src) and hits(d, dst) and pred(proto, port) for s, d, pred in lines)


# ------------------------------------------------------------------ the comparison

def compare(objs, lines):
    """Disagreements between nca (its connectivity map `lines`) and kdp on one cluster,
    as text (empty: none); and the number of flows compared."""
    cluster = Cluster.from_documents(objs, node="node-1")
    compiled = compile_policy(cluster)
    pods = {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["status"]["podIP"]
            for o in objs if o["kind"] == "Pod"}
    keys = policygen.probe_ports(objs)

    def kdp_allows(src, dst, proto, port):
        return compiled is None or compiled.decide(src, dst, proto, port)[0]
    flows = []
    for a in pods:
        for b in pods:
            if a != b:
                flows.append((("pod", a), ("pod", b), pods[a], pods[b]))
        for x in policygen.EXTERNAL_PROBES:
            ip = ipaddress.ip_address(x)
            flows.append((("addr", ip), ("pod", a), x, pods[a]))
            flows.append((("pod", a), ("addr", ip), pods[a], x))
    bad, n = [], 0
    for s, d, sip, dip in flows:
        for proto, port in keys:
            n += 1
            want = nca_allows(lines, s, d, proto, port)
            got = kdp_allows(sip, dip, proto, port)
            if want != got:
                bad.append(f"{s[1]} -> {d[1]} proto {proto} port {port}: nca {want}, kdp {got}")
    return bad, n


CLUSTERS_PER_RUN = 10


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture])
@given(clusters=st.lists(policygen.cluster_objects(admin=False, v6=False, remote=False, pod_safe_blocks=True,
                                                   host_network=False, max_pods=6, max_policies=5, nca_safe=True),
                        min_size=CLUSTERS_PER_RUN, max_size=CLUSTERS_PER_RUN))
def test_kdp_and_nca_allow_the_same_connections(tmp_path, clusters):
    for k, (objs, lines) in enumerate(zip(clusters, run_nca_many(tmp_path, clusters))):
        bad, n = compare(objs, lines)
        assert n > 0
        assert not bad, f"cluster {k}: {len(bad)} of {n} flows differ:\n  " + "\n  ".join(bad[:20])


def test_nca_ignores_ipblocks_for_pods_where_kdp_follows_the_api(tmp_path):
    """The one knowing difference: an ipBlock covering a pod's address. The API reference
    and the upstream e2e tests ("should allow ingress access from updated pod ... ipBlock",
    policies with a pod's IP/32) treat the pod as inside the block; nca does not."""
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ns0", "labels": {}}},
            {"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": "node-1"},
             "spec": {"nodeAddresses": [policygen.NODE1], "clusterCIDRs": [policygen.POD_RANGE]}}]
    for i, ip in enumerate(("10.244.1.1", "10.244.1.2")):
        objs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "ns0", "name": f"p{i}", "labels": {}},
                     "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
                     "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
    objs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"namespace": "ns0", "name": "from-p0"},
                 "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.1.1/32"}}]}]}})
    lines = run_nca(tmp_path, objs)
    assert not nca_allows(lines, ("pod", "ns0/p0"), ("pod", "ns0/p1"), 6, 80)
    compiled = compile_policy(Cluster.from_documents(objs, node="node-1"))
    assert compiled.decide("10.244.1.1", "10.244.1.2", 6, 80)[0]


def test_nca_reads_exists_in_a_peer_with_both_selectors_in_one_namespace_only(tmp_path):
    """The second difference: a peer {namespaceSelector, podSelector: tier Exists} selects
    the pods having a tier label in the selected namespaces (API reference:
    NetworkPolicyPeer); nca 2.1.0 finds none outside the policy's own namespace."""
    objs = [{"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": "node-1"},
             "spec": {"nodeAddresses": [policygen.NODE1], "clusterCIDRs": [policygen.POD_RANGE]}}]
    for ns in ("a", "b"):
        objs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {}}})
    for ns, name, ip, labels in (("a", "client", "10.244.1.1", {"tier": "front"}),
                                 ("b", "server", "10.244.1.2", {})):
        objs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": ns, "name": name, "labels": labels},
                     "spec": {"nodeName": "node-1", "containers": [{"name": "c"}]},
                     "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}})
    objs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"namespace": "b", "name": "from-tiered"},
                 "spec": {"podSelector": {}, "ingress": [{"from": [{
                     "namespaceSelector": {}, "podSelector": {"matchExpressions": [{"key": "tier", "operator": "Exists"}]}}]}]}})
    lines = run_nca(tmp_path, objs)
    assert not nca_allows(lines, ("pod", "a/client"), ("pod", "b/server"), 6, 80)
    compiled = compile_policy(Cluster.from_documents(objs, node="node-1"))
    assert compiled.decide("10.244.1.1", "10.244.1.2", 6, 80)[0]
