"""kdp diff: one capture under two snapshots, the flows whose fate changes. The
reference for which flows must be reported is the before-replay's own verdict log
(which backend each flow had), and a change built to touch exactly one flow."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from kdp.diff import diff
from kdp.replay import replay

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "pcaps" / "sample.pcap"
CLUSTER = ROOT / "pcaps" / "sample-cluster"

DENY_FRONTEND = {
    "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "frontend-internal", "namespace": "shop"},
    "spec": {"podSelector": {"matchLabels": {"app": "frontend"}}, "policyTypes": ["Ingress"],
             "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "data"}}}]}]},
}


def _copy(tmp_path, name):
    out = tmp_path / name
    shutil.copytree(CLUSTER, out)
    return out


def test_a_policy_that_denies_one_flow_reports_exactly_that_flow(tmp_path):
    before = _copy(tmp_path, "before")
    after = _copy(tmp_path, "after")
    (after / "frontend-policy.yaml").write_text(yaml.safe_dump(DENY_FRONTEND))
    result = diff(SAMPLE, [before], [after], node="node-1")
    assert [(c.key, c.change) for c in result.changes] == \
        [(("tcp", "198.51.100.7", "203.0.113.10", 50001, 443), "allowed -> denied")]
    change = result.changes[0]
    assert change.packets == 2                      # the SYN and the backend's answer
    assert change.after["reason"] == "policy_denied_ingress"
    assert result.by_service() == {"shop/frontend:https": 1}
    assert result.by_policy() == {"deny: not allowed by NetworkPolicy shop/frontend-internal": 1}


def _web_flows(path, n):
    frames = []
    for k in range(n):
        f = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") / \
            IP(src="10.244.1.50", dst="10.96.0.10") / TCP(sport=20000 + k, dport=80, flags="S")
        f.time = 1_763_700_000 + k / 1000
        frames.append(f)
    wrpcap(str(path), frames)


def test_removing_a_backend_reports_exactly_the_flows_that_had_it(tmp_path):
    cap = tmp_path / "web.pcap"
    _web_flows(cap, 60)
    before = _copy(tmp_path, "before")
    after = _copy(tmp_path, "after")
    slices = list(yaml.safe_load_all((after / "endpointslices.yaml").read_text()))
    web = next(s for s in slices if s["metadata"]["name"] == "web-abc12")
    web["endpoints"] = [e for e in web["endpoints"] if e["addresses"] != ["10.244.1.10"]]
    (after / "endpointslices.yaml").write_text(yaml.safe_dump_all(slices))
    log = tmp_path / "before.jsonl"
    replay(cap, cluster=[before], node="node-1", log=log)
    had_it = {json.loads(l)["orig"]["sport"] for l in log.read_text().splitlines()
              if json.loads(l)["dst"] == "10.244.1.10"}
    assert 0 < len(had_it) < 60                     # the Service spread them over both backends
    result = diff(cap, [before], [after], node="node-1")
    assert {c.key[3] for c in result.changes} == had_it
    assert all(c.change == "backend" and c.after["to"] == ["10.244.2.10", 8080] for c in result.changes)
    assert result.by_service() == {"shop/web:http": len(had_it)}


def test_the_same_snapshot_twice_changes_nothing_and_the_cli_prints_json(tmp_path):
    run = subprocess.run([sys.executable, "-m", "kdp", "diff", str(SAMPLE), "--before", str(CLUSTER),
                          "--after", str(CLUSTER), "--node", "node-1", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert out["changed"] == 0 and out["changes"] == [] and out["packets"] == 35 and out["flows"] > 0


def test_diff_table_names_the_change_and_standard_input_is_refused(tmp_path):
    after = _copy(tmp_path, "after")
    (after / "frontend-policy.yaml").write_text(yaml.safe_dump(DENY_FRONTEND))
    run = subprocess.run([sys.executable, "-m", "kdp", "diff", str(SAMPLE), "--before", str(CLUSTER),
                          "--after", str(after), "--node", "node-1"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "1 change fate" in run.stdout and "allowed -> denied" in run.stdout
    run = subprocess.run([sys.executable, "-m", "kdp", "diff", "-", "--before", str(CLUSTER),
                          "--after", str(CLUSTER)], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 2 and "standard input" in run.stderr
