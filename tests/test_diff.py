"""kdp diff: a policy change that denies exactly one flow of the sample reports exactly
that flow; removing a backend reports exactly the flows that were on it (the before
run's own log says which), as backend changes; identical configurations change nothing."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
SAMPLE = PCAPS / "sample.pcap"
CLUSTER = PCAPS / "sample-cluster"


def kdp(*args):
    return subprocess.run([sys.executable, "-m", "kdp", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def diff(capture, before, after):
    run = kdp("diff", capture, "--before", before, "--after", after, "--node", "node-1", "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def test_a_policy_denying_one_flow_reports_exactly_that_flow(tmp_path):
    after = tmp_path / "after"
    shutil.copytree(CLUSTER, after)
    with open(after / "networkpolicies.yaml", "a") as f:
        f.write("---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\n"
                "metadata: {name: frontend-closed, namespace: shop}\n"
                "spec:\n  podSelector: {matchLabels: {app: frontend}}\n  policyTypes: [Ingress]\n")
    report = diff(SAMPLE, CLUSTER, after)
    assert report["flows_changed"] == 1 and len(report["changed"]) == 1
    flow = report["changed"][0]
    assert flow["orig"] == {"src": "198.51.100.7", "dst": "203.0.113.10", "sport": 50001, "dport": 443}
    assert flow["changes"] == ["allowed -> denied"] and flow["changed_at"] == 13
    # the SYN and its SYN-ACK: one connection, both changed (the reply finds no flow)
    assert flow["packets"] == 2 == flow["packets_changed"]
    assert flow["before"]["verdict"] == "forward" and flow["after"]["reason"] == "policy_denied_ingress"
    assert report["by_service"] == {"shop/frontend:https": 1}
    assert report["by_policy"] == {"deny: not allowed by NetworkPolicy shop/frontend-closed": 1}
    assert report["packets"] == 35


def test_the_same_configuration_changes_nothing():
    report = diff(SAMPLE, CLUSTER, CLUSTER)
    assert report["flows_changed"] == 0 and report["changed"] == [] and report["flows"] > 20


def test_removing_a_backend_reports_exactly_the_flows_that_move(tmp_path):
    frames = []
    for i in range(60):
        f = Ether() / IP(src="10.244.1.50", dst="10.96.0.10") / TCP(sport=20000 + i, dport=80, flags="S")
        f.time = 1763700000 + i * 0.01
        frames.append(f)
    capture = tmp_path / "web.pcap"
    wrpcap(str(capture), frames)
    after = tmp_path / "after"
    shutil.copytree(CLUSTER, after)
    text = (after / "endpointslices.yaml").read_text()
    web1 = ("- addresses: [10.244.1.10]\n  conditions: {ready: true, serving: true, terminating: false}\n"
            "  nodeName: node-1\n  targetRef: {kind: Pod, name: web-1, namespace: shop}\n")
    assert web1 in text
    (after / "endpointslices.yaml").write_text(text.replace(web1, ""))
    # which flows were on web-1: the before configuration's own verdict log
    log = tmp_path / "before.jsonl"
    run = kdp("replay", capture, "--cluster", CLUSTER, "--node", "node-1", "--log", log)
    assert run.returncode == 0, run.stderr
    on_web1 = {line["orig"]["sport"] for line in map(json.loads, log.read_text().splitlines())
               if line["dst"] == "10.244.1.10"}
    assert 0 < len(on_web1) < 60
    report = diff(capture, CLUSTER, after)
    assert {f["orig"]["sport"] for f in report["changed"]} == on_web1
    assert all(f["changes"] == ["backend changed"] and f["packets_changed"] == 1 for f in report["changed"])
    assert all(f["after"]["to"] == ["10.244.2.10", 8080] for f in report["changed"])
    assert report["by_service"] == {"shop/web:http": len(on_web1)} and report["by_policy"] == {}


def test_diff_table_and_errors(tmp_path):
    run = kdp("diff", SAMPLE, "--before", CLUSTER, "--after", CLUSTER, "--node", "node-1")
    assert run.returncode == 0 and "0 of" in run.stdout
    run = kdp("diff", SAMPLE, "--before", tmp_path / "missing", "--after", CLUSTER, "--node", "node-1")
    assert run.returncode == 2 and "missing" in run.stderr and "Traceback" not in run.stderr
