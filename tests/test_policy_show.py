"""`kdp show policy` over the sample snapshot (pcaps/sample-cluster/networkpolicies.yaml)."""
import json
import os

from kdp.cli import main

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "pcaps", "sample-cluster")


def run(capsys, *argv):
    rc = main(["show", "policy", *argv, "--cluster", SAMPLE, "--node", "node-1"])
    out, err = capsys.readouterr()
    return rc, out, err


def test_show_policy_json_gives_isolation_and_rules_per_local_pod(capsys):
    rc, out, _ = run(capsys, "--json")
    assert rc == 0
    pods = {r["pod"]: r for r in json.loads(out)["policy"]}
    assert set(pods) == {"data/db-0", "default/client", "shop/api-1", "shop/cache-1", "shop/frontend-1", "shop/web-1"}
    db = pods["data/db-0"]
    assert db["ingress"]["isolated"] and db["ingress"]["isolated_by"] == ["NetworkPolicy data/db"]
    rule = db["ingress"]["rules"][0]
    assert rule["peers"] == ["pods app=api in namespaces kubernetes.io/metadata.name=shop"]
    assert rule["ports"] == ["TCP/pg (5432)"]               # the named port as this pod has it
    assert db["ingress"]["otherwise"] == "deny"
    assert db["egress"] == {"isolated": False, "isolated_by": [], "rules": [], "otherwise": "allow"}
    web = pods["shop/web-1"]["egress"]
    assert not web["isolated"] and web["otherwise"] == "allow"
    assert [(r["tier"], r["action"], r["policy"], r["priority"], r["name"]) for r in web["rules"]] == [
        ("admin", "Deny", "ClusterNetworkPolicy metadata-guard", 10, "no-cloud-metadata")]
    assert pods["default/client"]["ingress"]["rules"] == []


def test_show_policy_text_for_one_pod(capsys):
    rc, out, _ = run(capsys, "--pod", "data/db-0")
    assert rc == 0
    assert "data/db-0 (10.244.1.30)" in out and "isolated by NetworkPolicy data/db" in out
    assert "otherwise     deny" in out and "shop/web-1" not in out


def test_show_policy_of_an_unknown_pod_is_an_error(capsys):
    rc, _out, err = run(capsys, "--pod", "data/nope")
    assert rc == 2 and "--pod data/nope: no such pod on node node-1" in err
