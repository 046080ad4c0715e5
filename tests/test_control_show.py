"""`kdp show services|endpoints|routes` over the sample snapshot."""
import json
import os

from kdp.cli import main

SAMPLE = os.path.join(os.path.dirname(__file__), "..", "pcaps", "sample-cluster")


def run(capsys, *argv):
    rc = main(["show", *argv, "--cluster", SAMPLE, "--node", "node-1"])
    out, err = capsys.readouterr()
    return rc, out, err


def test_show_services_json_lists_frontends_and_policies(capsys):
    rc, out, err = run(capsys, "services", "--json")
    assert rc == 0
    rows = {r["name"]: r for r in json.loads(out)["services"]}
    assert set(rows) == {"shop/web:http", "shop/api:grpc", "shop/frontend:https", "shop/cache:memcache",
                         "kube-system/kube-dns:dns", "kube-system/kube-dns:dns-tcp"}
    fe = rows["shop/frontend:https"]
    assert {(f["kind"], f["address"], f["port"]) for f in fe["frontends"]} == {
        ("ClusterIP", "10.96.0.30", 443), ("LoadBalancer", "203.0.113.10", 443),
        ("NodePort", "192.168.56.11", 30443)}
    assert fe["external_traffic_policy"] == "Local" and fe["local_backends"] == 1
    assert rows["shop/cache:memcache"]["session_affinity"] == {"client_ip": True, "timeout_seconds": 60}
    assert "Deployment shop/web" in err and "notice" in err


def test_show_endpoints_lists_every_endpoint_with_its_state_and_use(capsys):
    rc, out, _ = run(capsys, "endpoints")
    assert rc == 0
    rows = [line.split() for line in out.splitlines()]
    assert ["10.244.1.10:8080", "node-1", "ready", "#6"] in [r[-4:] for r in rows]
    # cache's terminating endpoint is shown, with its state, as a fall-back not in use
    assert any(r[:5] == ["10.244.2.40:11211", "node-2", "terminating", "not", "used"] for r in rows)


def test_show_endpoints_json_has_the_conditions(capsys):
    rc, out, _ = run(capsys, "endpoints", "--json")
    rows = {r["name"]: r for r in json.loads(out)["endpoints"]}
    assert {"address": "10.244.2.40", "port": 11211, "node": "node-2", "state": "terminating",
            "in_use": False} in rows["shop/cache:memcache"]["endpoints"]


def test_show_routes_json(capsys):
    rc, out, _ = run(capsys, "routes", "--json")
    routes = json.loads(out)["routes"]
    assert {"prefix": "10.244.2.0/24", "kind": "node", "target": "node-2", "via": "192.168.56.12",
            "encap": "IPIP", "mtu": 1480} in routes


def test_show_reports_invalid_snapshot_as_error(capsys, tmp_path):
    (tmp_path / "bad.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {type: Nope}\n")
    rc = main(["show", "services", "--cluster", str(tmp_path), "--node", "n"])
    _, err = capsys.readouterr()
    assert rc == 2 and "Service default/x: spec.type" in err
