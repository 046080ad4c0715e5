"""A real resolver (glibc's getaddrinfo, with ndots:5 and a pod's search path) asking
kdp: the same sequence of queries and the same final answers as asking CoreDNS
(the reference responder standing in for it, with the names outside the cluster
forwarded to a fixed upstream). Runs in its own network namespace (root, ip netns);
tests/dns_bridge.py is the server on the namespace's 127.0.0.1:53."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dnstest import cluster_objects
from kdptest import write_snapshot

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
NAMES = ["web", "web.shop", "db-0.db", "db", "kube-dns.kube-system", "www.example.com", "nope",
         "10-244-1-7.shop.pod"]
RESOLV = ("nameserver 127.0.0.1\nsearch shop.svc.cluster.local svc.cluster.local cluster.local\n"
          "options ndots:5 timeout:2 attempts:1\n")
CLIENT = """
import json, socket, sys
out = {}
for name in sys.argv[1:]:
    try:
        got = socket.getaddrinfo(name, None, socket.AF_UNSPEC, socket.SOCK_STREAM)
        out[name] = sorted({a[4][0] for a in got})
    except socket.gaierror as e:
        out[name] = socket.EAI_NONAME == e.errno and "NONAME" or f"error {e.errno}"
print(json.dumps(out))
"""


@pytest.fixture
def netns():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("the resolver test needs root and iproute2 (ip netns)")
    name = f"kdpdns{os.getpid()}"
    etc = Path("/etc/netns") / name
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "resolv.conf").write_text(RESOLV)
        (etc / "hosts").write_text("127.0.0.1 localhost\n")
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
        shutil.rmtree(etc, ignore_errors=True)


def resolve_through(netns, mode, snap, tmp_path):
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}"}
    log = tmp_path / f"{mode}.jsonl"
    server = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, str(HERE / "dns_bridge.py"),
                               mode, str(snap), str(log)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert server.stdout.readline().strip() == "ready"
        run = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", CLIENT, *NAMES],
                             capture_output=True, text=True, timeout=60, env=env)
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout), [json.loads(l) for l in log.read_text().splitlines()]
    finally:
        server.kill()
        server.wait(timeout=10)


def test_a_resolvers_search_path_sequence_ends_as_it_does_against_coredns(netns, tmp_path):
    snap = write_snapshot(tmp_path / "snap", cluster_objects())
    kdp_answers, kdp_log = resolve_through(netns, "kdp", snap, tmp_path)
    ref_answers, ref_log = resolve_through(netns, "coredns", snap, tmp_path)
    assert kdp_answers == ref_answers
    assert kdp_answers["web"] == kdp_answers["web.shop"] == ["10.96.0.10"]
    assert kdp_answers["db-0.db"] == ["10.244.1.20", "fd00:244:1::20"]
    assert kdp_answers["kube-dns.kube-system"] == ["10.96.0.53", "fd00:96::53"]
    assert kdp_answers["www.example.com"] == ["93.184.216.34"]
    assert kdp_answers["10-244-1-7.shop.pod"] == ["10.244.1.7"]
    assert kdp_answers["nope"] == "NONAME"
    key = lambda e: (e["name"].lower(), e["type"], e.get("rcode"))
    # the same questions got the same answers (a resolver that timed out on a loaded
    # machine asks again: repeats are not a difference)
    assert sorted(set(map(key, kdp_log))) == sorted(set(map(key, ref_log)))
    # kdp answered every query inside the cluster zone itself, at once; only the
    # names outside it (the resolver's last, absolute tries) went to the DNS pods
    assert {e["who"] for e in kdp_log if e["name"].lower().endswith("cluster.local.")} == {"kdp"}
    assert {(e["name"], e["who"]) for e in kdp_log if not e["name"].lower().endswith("cluster.local.")} == {
        ("www.example.com.", "coredns"), ("nope.", "coredns")}
    # the search path's expansions of www.example.com were NXDOMAIN from kdp
    expansions = [e for e in kdp_log if e["name"].startswith("www.example.com.") and e["name"] != "www.example.com."]
    assert len(expansions) >= 3 and all(e["rcode"] == "NXDOMAIN" for e in expansions)
