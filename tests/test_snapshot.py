"""`kdp snapshot` against a fake API server on loopback that serves recorded list
responses (what an API server returns: items without kind / apiVersion, managedFields,
404 for kinds not installed). The snapshot it writes must load as the cluster it came from."""
import http.server
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from kdp._fast import service as fast
from kdp.control import Cluster, compile
from kdptest import decide

ROOT = Path(__file__).resolve().parent.parent

MANAGED = [{"manager": "kubectl", "operation": "Update"}]


def items(*objs):
    return {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": list(objs)}


RESPONSES = {
    "/api/v1/namespaces": items({"metadata": {"name": "shop", "managedFields": MANAGED}}),
    "/api/v1/nodes": items(
        {"metadata": {"name": "node-1", "labels": {"topology.kubernetes.io/zone": "a"}},
         "spec": {"podCIDRs": ["10.244.1.0/24"]},
         "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.11"}]}},
        {"metadata": {"name": "node-2"}, "spec": {"podCIDRs": ["10.244.2.0/24"]},
         "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.12"}]}}),
    "/api/v1/services": items(
        {"metadata": {"name": "web", "namespace": "shop", "managedFields": MANAGED},
         "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                  "ipFamilies": ["IPv4"], "ports": [{"name": "http", "port": 80, "targetPort": 8080,
                                                     "protocol": "TCP"}]}}),
    "/apis/discovery.k8s.io/v1/endpointslices": items(
        {"metadata": {"name": "web-abc", "namespace": "shop",
                      "labels": {"kubernetes.io/service-name": "web"}},
         "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
         "endpoints": [{"addresses": ["10.244.2.10"], "nodeName": "node-2", "conditions": {"ready": True}}]}),
    "/api/v1/pods": items(
        {"metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"}},
         "spec": {"nodeName": "node-2"},
         "status": {"phase": "Running", "podIP": "10.244.2.10", "podIPs": [{"ip": "10.244.2.10"}]}}),
    "/apis/networking.k8s.io/v1/networkpolicies": items(),
    "/apis/crd.projectcalico.org/v1/ippools": items(
        {"metadata": {"name": "default-ipv4-ippool"},
         "spec": {"cidr": "10.244.0.0/16", "blockSize": 24, "ipipMode": "Always", "natOutgoing": True}}),
    "/apis/crd.projectcalico.org/v1/blockaffinities": items(),
    "/apis/networking.k8s.io/v1/servicecidrs": items(
        {"metadata": {"name": "kubernetes"}, "spec": {"cidrs": ["10.96.0.0/16"]}}),
    "/api/v1/namespaces/kube-system/configmaps/kube-proxy": {
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "data": {"config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n"
                                "mode: iptables\nclusterCIDR: 10.244.0.0/16\niptables:\n  masqueradeAll: false\n"
                                "  localhostNodePorts: false\n"}},
}


class _Handler(http.server.BaseHTTPRequestHandler):
    seen = []

    def do_GET(self):  # noqa: N802 - http.server's name
        path = self.path.split("?")[0]
        self.seen.append((path, self.headers.get("Authorization")))
        body = RESPONSES.get(path)
        if body is None:
            self.send_response(404)
            data = json.dumps({"kind": "Status", "code": 404}).encode()
        else:
            self.send_response(200)
            data = json.dumps(body).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def api_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def kubeconfig(tmp_path, server):
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": {"token": "secret-token"}}],
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}]}))
    return path


def kdp(*args):
    return subprocess.run([sys.executable, "-m", "kdp.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)


def test_snapshot_writes_what_kdp_reads_and_it_loads(tmp_path, api_server):
    out = tmp_path / "snap"
    run = kdp("snapshot", "--kubeconfig", kubeconfig(tmp_path, api_server), "-o", out, "--node", "node-1")
    assert run.returncode == 0, run.stderr
    assert "AdminNetworkPolicy: not served" in run.stderr
    assert all(auth == "Bearer secret-token" for _p, auth in _Handler.seen)
    svc = yaml.safe_load((out / "services.yaml").read_text())["items"][0]
    assert (svc["apiVersion"], svc["kind"]) == ("v1", "Service") and "managedFields" not in svc["metadata"]
    config = yaml.safe_load((out / "nodeconfig.yaml").read_text())["spec"]
    assert config == {"nodeName": "node-1", "serviceCIDRs": ["10.96.0.0/16"], "proxyMode": "iptables",
                      "clusterCIDRs": ["10.244.0.0/16"], "localhostNodePorts": False}
    cluster = Cluster.load([out], node="node-1")
    assert set(cluster.services) == {("shop", "web")} and ("shop", "web-1") in cluster.pods
    assert cluster.config.proxy_mode == "iptables" and cluster.zone() == "a"
    assert [p.cidr for p in cluster.ippools.values()]


KUBE_PROXY = "/api/v1/namespaces/kube-system/configmaps/kube-proxy"


def kube_proxy_config(text):
    return {"metadata": {"name": "kube-proxy", "namespace": "kube-system"},
            "data": {"config.conf": "apiVersion: kubeproxy.config.k8s.io/v1alpha1\n"
                                    "kind: KubeProxyConfiguration\n" + text}}


@pytest.mark.parametrize("conf, cidrs, masqueraded", [
    ("mode: nftables\n", [], False),                                  # no --cluster-cidr: no detector
    ("mode: nftables\ndetectLocalMode: ClusterCIDR\n", [], False),
    ("mode: nftables\ndetectLocal:\n  clusterCIDRs: [10.244.0.0/16]\n", ["10.244.0.0/16"], True),
    ("mode: nftables\nclusterCIDR: 10.244.0.0/16\n", ["10.244.0.0/16"], True),
])
def test_snapshot_says_when_kube_proxy_has_no_cluster_cidr(tmp_path, api_server, monkeypatch, conf, cidrs,
                                                            masqueraded):
    # without a cluster CIDR kube-proxy's detector is a no-op: off-cluster ClusterIP traffic
    # keeps its source; kdp must not guess a CIDR from the Nodes then
    monkeypatch.setitem(RESPONSES, KUBE_PROXY, kube_proxy_config(conf))
    out = tmp_path / "snap"
    run = kdp("snapshot", "--kubeconfig", kubeconfig(tmp_path, api_server), "-o", out, "--node", "node-1")
    assert run.returncode == 0, run.stderr
    config = yaml.safe_load((out / "nodeconfig.yaml").read_text())["spec"]
    assert config["clusterCIDRs"] == cidrs
    assert ("sets no clusterCIDR" in run.stderr) == (not cidrs)
    cluster = Cluster.load([out], node="node-1")
    got = decide(compile(cluster), "198.51.100.7", "10.96.0.10", 80)
    assert got["result"] == fast.SVC_HIT and bool(got["flags"] & 2) == masqueraded


def test_snapshot_refuses_a_non_empty_directory_without_force(tmp_path, api_server):
    out = tmp_path / "snap"
    out.mkdir()
    (out / "mine.yaml").write_text("keep: me\n")
    run = kdp("snapshot", "--kubeconfig", kubeconfig(tmp_path, api_server), "-o", out)
    assert run.returncode == 2 and "not empty" in run.stderr and (out / "mine.yaml").read_text() == "keep: me\n"
    assert kdp("snapshot", "--kubeconfig", kubeconfig(tmp_path, api_server), "-o", out, "--force").returncode == 0


@pytest.mark.parametrize("case", ["unreachable", "bad kubeconfig", "unknown node"])
def test_snapshot_errors_are_clean(tmp_path, api_server, case):
    if case == "unreachable":
        config = kubeconfig(tmp_path, "http://127.0.0.1:9")      # discard port: nothing listens
        args, want = (), "cannot reach the API server"
    elif case == "bad kubeconfig":
        config = tmp_path / "bad"
        config.write_text("not: a kubeconfig\n")
        args, want = (), "cannot use this kubeconfig"
    else:
        config = kubeconfig(tmp_path, api_server)
        args, want = ("--node", "node-9"), "no such Node"
    run = kdp("snapshot", "--kubeconfig", config, "-o", tmp_path / "out", *args)
    assert run.returncode == 2 and want in run.stderr and "Traceback" not in run.stderr
