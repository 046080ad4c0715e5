"""Finished pods (status.phase Succeeded / Failed) own no address: the kubelet, kube-proxy
and the CNI ignore them, and their IP may already be a running pod's. Two running pods
with one address are a snapshot no cluster could hold."""
import subprocess
import sys

import pytest
from scapy.layers.inet import IP, TCP, UDP

from kdp.control import Cluster
from kdp.errors import ConfigError
from kdp.reasons import Reason, Verdict
from kdptest import CLIENT, WEB1, Harness, base_objects, pod, write_snapshot


def finished(doc, phase="Succeeded"):
    doc["status"]["phase"] = phase
    return doc


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_a_running_pod_that_reuses_a_finished_pods_ip_gets_its_traffic(tmp_path, phase):
    # job-1 finished on node-1 and gave 10.244.1.77 back; db-0 now has it
    objs = base_objects() + [finished(pod("shop", "job-1", "node-1", "10.244.1.77"), phase),
                             pod("shop", "db-0", "node-1", "10.244.1.77")]
    h = Harness(tmp_path, objs)
    sent = h.send(IP(src=CLIENT, dst="10.244.1.77") / UDP(sport=5000, dport=53))
    assert sent.verdict == Verdict.FORWARD and sent.out_port == "shop/db-0"
    assert "shop/job-1" not in h.dp.ports


def test_a_finished_pod_alone_has_no_route_and_no_port(tmp_path):
    objs = base_objects() + [finished(pod("shop", "job-1", "node-1", "10.244.1.77"), "Failed")]
    h = Harness(tmp_path, objs)
    sent = h.send(IP(src=CLIENT, dst="10.244.1.77") / UDP(sport=5000, dport=53))
    assert sent.out_port != "shop/job-1"
    assert "shop/job-1" not in h.dp.ports
    cluster = Cluster.load([write_snapshot(tmp_path / "s", objs)], node="node-1")
    assert [f"{p.namespace}/{p.name}" for p in cluster.local_pods()] == ["shop/client", "shop/web-1"]


def test_two_running_pods_with_one_ip_are_an_error_naming_both(tmp_path):
    objs = base_objects() + [pod("shop", "db-0", "node-2", WEB1)]
    with pytest.raises(ConfigError) as err:
        Cluster.load([write_snapshot(tmp_path / "s", objs)], node="node-1")
    text = str(err.value)
    assert "Pod shop/web-1" in text and "shop/db-0" in text and "status.podIPs[0].ip" in text


def test_the_cli_reports_two_pods_with_one_ip_cleanly(tmp_path):
    snap = write_snapshot(tmp_path / "s", base_objects() + [pod("shop", "db-0", "node-2", WEB1)])
    run = subprocess.run([sys.executable, "-m", "kdp.cli", "show", "routes", "--cluster", str(snap),
                          "--node", "node-1"], capture_output=True, text=True)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "10.244.1.10 is also the address of the running pod" in run.stderr


def test_a_reload_with_two_pods_on_one_ip_changes_nothing(tmp_path):
    h = Harness(tmp_path, base_objects())
    before = h.send(IP(src=CLIENT, dst=WEB1) / UDP(sport=5000, dport=53))
    with pytest.raises(ConfigError):
        h.reload(base_objects() + [pod("shop", "db-0", "node-1", WEB1)])
    after = h.send(IP(src=CLIENT, dst=WEB1) / UDP(sport=5001, dport=53))
    assert before.out_port == after.out_port == "shop/web-1"


def labelled(doc, **labels):
    doc["metadata"]["labels"] = labels
    return doc


@pytest.mark.parametrize("live_label, verdict", [("cache", Verdict.DROP), ("db", Verdict.FORWARD)])
def test_a_policy_judges_an_address_by_its_running_pod_not_a_finished_one(tmp_path, live_label, verdict):
    # web-1 admits app=db only; job-1 (app=db) finished and its address is db-or-cache-0's now
    objs = base_objects() + [
        labelled(finished(pod("shop", "job-1", "node-2", "10.244.2.77")), app="db"),
        labelled(pod("shop", "now-0", "node-2", "10.244.2.77"), app=live_label),
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
         "metadata": {"namespace": "shop", "name": "web"},
         "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "db"}}}]}]}}]
    labelled(objs[5], app="web")                     # web-1
    h = Harness(tmp_path, objs)
    sent = h.send(IP(src="10.244.2.77", dst=WEB1) / TCP(sport=40000, dport=8080, flags="S"))
    assert sent.verdict == verdict
    if verdict == Verdict.DROP:
        assert sent.reason == Reason.POLICY_DENIED_INGRESS


def test_a_finished_pod_is_not_a_policy_peer(tmp_path):
    # a policy allowing only app=db lets the running db-0 in, not a finished pod's old address
    from kdp.control.policy import live_pods
    objs = base_objects() + [finished(pod("shop", "job-1", "node-2", "10.244.2.77")),
                             pod("shop", "db-0", "node-2", "10.244.2.78")]
    cluster = Cluster.load([write_snapshot(tmp_path / "s", objs)], node="node-1")
    assert "job-1" not in {p.name for p in live_pods(cluster)}
    assert "db-0" in {p.name for p in live_pods(cluster)}
