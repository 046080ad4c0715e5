"""kdp attach, end to end: real kernels in network namespaces the test makes talk through
kdp's TAP ports. The client's TCP stack, the backend's http.server and urllib are the
references: an HTTP request through a ClusterIP or a NodePort must be answered, a
Service without endpoints must refuse at once, a NetworkPolicy must block, and a
reload must undo it. Each test builds its own namespaces and snapshot and removes them
(and stops kdp) whatever happens; every wait is bounded."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from kdptest import NODE1, endpoint, endpoint_slice, node, node_config, port, service

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: network namespaces and TAP devices")

CLIENT, WEB, OUTSIDE = "10.244.1.50", "10.244.1.10", "192.168.56.99"
SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = self.client_address[0].encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(http.server.HTTPServer):
    server_bind = http.server.socketserver.TCPServer.server_bind   # (no getfqdn: no DNS here)
    address_family = __import__("socket").AF_INET6 if ":" in sys.argv[1] else __import__("socket").AF_INET
s = S((sys.argv[1], 8080), H); print('ready', flush=True); s.serve_forever()
"""
GET = "import urllib.request, sys; print(urllib.request.urlopen(sys.argv[1], timeout=4).read().decode())"
# A bulk TCP exchange: the client sends N bytes, the server answers with the SHA-256 of
# what it got and then N bytes of its own; the client checks both. Big enough for the
# kernels on both sides to hand kdp 64 KiB super-frames (TSO) when offloads are on.
BULK_SERVER = """
import hashlib, random, socket, sys
s = socket.create_server((sys.argv[1], int(sys.argv[2])), family=socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
print('ready', flush=True)
while True:
    c, _ = s.accept()
    with c:
        n = int.from_bytes(c.recv(8, socket.MSG_WAITALL), 'big')
        h, got = hashlib.sha256(), 0
        while got < n:
            chunk = c.recv(1 << 16)
            if not chunk: break
            h.update(chunk); got += len(chunk)
        c.sendall(h.digest() + random.Random(n).randbytes(n))
"""
BULK_CLIENT = """
import hashlib, random, socket, sys
n = int(sys.argv[3])
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=20)
data = random.Random(n + 1).randbytes(n)
c.sendall(n.to_bytes(8, 'big') + data)
digest = c.recv(32, socket.MSG_WAITALL)
h, got = hashlib.sha256(), 0
while got < n:
    chunk = c.recv(1 << 16)
    if not chunk: break
    h.update(chunk); got += len(chunk)
up = digest == hashlib.sha256(data).digest()
down = h.digest() == hashlib.sha256(random.Random(n).randbytes(n)).digest()
print('up', 'ok' if up else 'corrupt', 'down', 'ok' if down and got == n else 'corrupt', got)
"""
CONNECT = """
import socket, sys, time
t = time.monotonic()
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=4); print('connected')
except ConnectionRefusedError: print('refused %.3f' % (time.monotonic() - t))
except OSError as e: print('failed %s %.3f' % (e, time.monotonic() - t))
"""


def _pod(ns, name, ip, app):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": ns, "name": name, "labels": {"app": app}},
            "spec": {"nodeName": "node-1"}, "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}]}}


def cluster(policy=False, gateway=None):
    uplink = {"uplink": {"gateway": gateway}} if gateway else {}
    objs = [node_config(nodeAddresses=[f"{NODE1}/24"], clusterCIDRs=["10.244.0.0/16"], serviceCIDRs=["10.96.0.0/16"],
                        **uplink),
            node("node-1", NODE1, ["10.244.1.0/24"]),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop", "labels": {"kubernetes.io/metadata.name": "shop"}}},
            _pod("shop", "client", CLIENT, "client"), _pod("shop", "web-1", WEB, "web"),
            service("web", [port("http", 80, 8080, node_port=30080)], type="NodePort"),
            endpoint_slice("web", [("http", "TCP", 8080)], [endpoint(WEB, "node-1")]),
            service("empty", [port("http", 80, 8080)], cluster_ips=("10.96.0.20",))]
    if policy:
        objs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                     "metadata": {"name": "web-closed", "namespace": "shop"},
                     "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}})
    return objs


def sh(*cmd, timeout=20, check=True):
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and run.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)}: {run.stderr.strip()}")
    return run


def pod_namespace(ns, dev, ip):
    """Namespace `ns` with TAP device `dev` as a pod's interface, Calico style: the pod's
    /32 and a default route through 169.254.1.1, which kdp answers ARP for."""
    sh("ip", "netns", "add", ns)
    sh("ip", "link", "set", dev, "netns", ns)
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "link", "set", dev, "up")
    sh("ip", "-n", ns, "addr", "add", f"{ip}/32", "dev", dev)
    sh("ip", "-n", ns, "route", "add", "169.254.1.1", "dev", dev)
    sh("ip", "-n", ns, "route", "add", "default", "via", "169.254.1.1", "dev", dev)


def stop_all(procs, namespaces):
    """SIGTERM every process (SIGKILL after 15 s), then delete the namespaces."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            p.kill()
    for ns in namespaces:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


class Node:
    """kdp attached to TAP ports, each moved into a namespace with its address."""

    def __init__(self, tmp_path, policy=False, extra_args=(), pcap=True, gateway=None):
        if shutil.which("ip") is None:
            pytest.fail("the ip command (iproute2) is not installed (run-tests.sh installs it)")
        tag = uuid.uuid4().hex[:6]
        self.tag = tag
        self.snap = tmp_path / "snap"
        self.snap.mkdir()
        self.gateway = gateway
        self.write(policy)
        self.spaces = {"client": (f"kc{tag}", CLIENT), "web": (f"kw{tag}", WEB), "out": (f"ko{tag}", OUTSIDE)}
        self.devices = {"client": f"tc{tag}", "web": f"tw{tag}", "out": f"tu{tag}"}
        ports = {"client": "shop/client", "web": "shop/web-1", "out": "uplink"}
        self.log = tmp_path / "kdp.out"
        self.metrics_port = 20000 + int(tag, 16) % 20000
        self.kdp = subprocess.Popen([sys.executable, "-m", "kdp", "attach", "--cluster", str(self.snap), "--node", "node-1",
                                     "--json", "--metrics", f"127.0.0.1:{self.metrics_port}",
                                     *(("--pcap-out", str(tmp_path / "pcap")) if pcap else ()), *extra_args]
                                    + [a for k in ports for a in ("--port", f"{ports[k]}={self.devices[k]}")],
                                    stdout=open(self.log, "w"), stderr=subprocess.PIPE, text=True)
        self.servers = []
        ready = self.kdp.stderr.readline()
        assert "ready" in ready, ready + self.kdp.stderr.read()
        for key, (ns, ip) in self.spaces.items():
            dev = self.devices[key]
            if key != "out":
                pod_namespace(ns, dev, ip)
                continue
            # a host on the node's subnet, beyond the uplink
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", dev, "netns", ns)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)

    def write(self, policy):
        (self.snap / "cluster.yaml").write_text(yaml.safe_dump_all(cluster(policy, self.gateway), sort_keys=False))

    def serve(self):
        ns = self.spaces["web"][0]
        srv = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, WEB],
                               stdout=subprocess.PIPE, text=True)
        self.servers.append(srv)
        assert srv.stdout.readline().strip() == "ready"

    def serve_bulk(self):
        srv = subprocess.Popen(["ip", "netns", "exec", self.spaces["web"][0], sys.executable, "-c", BULK_SERVER, WEB, "8080"],
                               stdout=subprocess.PIPE, text=True)
        self.servers.append(srv)
        assert srv.stdout.readline().strip() == "ready"

    def run_in(self, key, code, *args, timeout=15):
        return sh("ip", "netns", "exec", self.spaces[key][0], sys.executable, "-c", code, *args,
                  timeout=timeout, check=False)

    def reload(self, policy, signal_it=True):
        self.write(policy)
        if signal_it:
            self.kdp.send_signal(signal.SIGHUP)
            time.sleep(0.5)             # the loop reloads between batches (it polls every 0.1 s)
        else:
            time.sleep(2.5)             # kdp sees the changed file within a second

    def stop(self):
        for srv in self.servers:
            srv.kill()
            srv.wait(timeout=10)
        if self.kdp.poll() is None:
            self.kdp.send_signal(signal.SIGTERM)
            try:
                self.kdp.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kdp.kill()
                self.kdp.wait(timeout=5)
        for ns, _ip in self.spaces.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


@pytest.fixture
def attached(tmp_path):
    nodes = []

    def make(**kw):
        nodes.append(Node(tmp_path, **kw))
        return nodes[-1]
    yield make
    for n in nodes:
        n.stop()


def test_a_pod_reaches_a_clusterip_and_the_backend_sees_the_pods_address(attached):
    n = attached()
    n.serve()
    run = n.run_in("client", GET, "http://10.96.0.10/")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == CLIENT            # no masquerade for a pod's own request


def test_an_outside_host_reaches_the_nodeport_and_the_backend_sees_the_node(attached):
    n = attached()
    n.serve()
    run = n.run_in("out", GET, f"http://{NODE1}:30080/")
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == NODE1             # externalTrafficPolicy Cluster: masqueraded


def test_a_service_without_endpoints_refuses_at_once(attached):
    n = attached()
    run = n.run_in("client", CONNECT, "10.96.0.20", "80")
    word, seconds = run.stdout.split()[0], float(run.stdout.split()[-1])
    assert word == "refused" and seconds < 1.0


@pytest.mark.parametrize("signal_it", [True, False], ids=["SIGHUP", "changed file"])
def test_a_network_policy_blocks_and_a_reload_without_it_restores(attached, signal_it):
    n = attached(policy=True)
    n.serve()
    blocked = n.run_in("client", CONNECT, "10.96.0.10", "80")
    assert blocked.stdout.startswith("failed") and "timed out" in blocked.stdout
    n.reload(policy=False, signal_it=signal_it)
    run = n.run_in("client", GET, "http://10.96.0.10/")
    assert run.returncode == 0 and run.stdout.strip() == CLIENT, run.stderr


def test_stopping_prints_the_summary_and_removes_the_devices(attached, tmp_path):
    import json
    n = attached()
    n.serve()
    assert n.run_in("client", GET, "http://10.96.0.10/").returncode == 0
    n.kdp.send_signal(signal.SIGTERM)
    assert n.kdp.wait(timeout=15) == 0
    summary = json.loads(n.log.read_text())
    assert summary["ports"]["shop/client"]["rx"] > 0 and summary["arp_answered"] >= 1
    assert {"service": "shop/web:http", "packets": summary["services"][0]["packets"], "new_flows": 1,
            "rejects": 0} in summary["services"]
    ns = n.spaces["client"][0]
    assert n.devices["client"] not in sh("ip", "-n", ns, "link").stdout   # gone with kdp's descriptor
    # --pcap-out: tshark reads each frame with its interface and direction
    rows = sh("tshark", "-r", str(tmp_path / "pcap" / "attach.pcapng"), "-T", "fields",
              "-e", "frame.interface_name", "-e", "frame.packet_flags_direction").stdout.split("\n")
    seen = {(name, int(flags, 0) & 3) for name, flags in (r.split("\t") for r in rows if r)}
    client_if = f"shop/client ({n.devices['client']})"
    assert {(client_if, 1), (client_if, 2)} <= seen       # 1 inbound, 2 outbound
    counts = summary["ports"]["shop/client"]
    assert sum(1 for r in rows if r.startswith(client_if)) == counts["rx"] + counts["tx"]


@pytest.mark.parametrize("offloads", [True, False], ids=["offloads", "no-offloads"])
def test_a_bulk_tcp_exchange_crosses_a_clusterip_intact(attached, offloads):
    """8 MB each way through the ClusterIP's NAT: with offloads the kernels hand kdp
    64 KiB super-frames, which cross whole (their checksums left to the receiving
    kernel, which TCP's SHA-256 check here would catch); without, one frame a segment."""
    import json
    n = attached(extra_args=() if offloads else ("--no-offloads",))
    n.serve_bulk()
    run = n.run_in("client", BULK_CLIENT, "10.96.0.10", "80", str(8 << 20), timeout=60)
    assert run.stdout.split()[:4] == ["up", "ok", "down", "ok"], run.stdout + run.stderr
    n.kdp.send_signal(signal.SIGTERM)
    assert n.kdp.wait(timeout=15) == 0
    off = json.loads(n.log.read_text())["offloads"]
    if offloads:
        assert off["gso_frames"] > 0 and off["gso_refused"] == off["gso_unsendable"] == 0
    else:
        assert off == {"gso_frames": 0, "segments_cut": 0, "checksums_completed": 0, "gso_refused": 0,
                       "gso_unsendable": 0}


UDP_SINK = """
import hashlib, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)    # SO_RCVBUFFORCE (root: past rmem_max)
s.bind((sys.argv[1], 8080)); s.settimeout(5); print('ready', flush=True)
seen = []
try:
    while len(seen) < int(sys.argv[2]):
        seen.append(s.recv(2048))
except socket.timeout:
    pass
print(len(seen), hashlib.sha256(b''.join(seen)).hexdigest(), flush=True)
"""
UDP_BURST = """
import hashlib, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
data = [i.to_bytes(4, 'big') * 100 for i in range(int(sys.argv[2]))]
for d in data:
    s.sendto(d, (sys.argv[1], 80))
print(hashlib.sha256(b''.join(data)).hexdigest())
"""


def test_a_burst_crosses_in_order_with_batches_written_by_the_second_thread(attached, tmp_path):
    """20,000 UDP datagrams to a ClusterIP, queued in the client's TAP while kdp is
    stopped (SIGSTOP), then read in full batches when it goes on (SIGCONT): the writer
    thread writes each while the loop reads and runs the next; every datagram arrives
    once, intact and in order (the sink's SHA-256 over all of them)."""
    import json
    n = attached(pcap=False)            # (recording writes every batch on the loop's thread)
    (n.snap / "cluster.yaml").write_text(yaml.safe_dump_all(
        cluster() + [service("dgram", [port("d", 80, 8080, protocol="UDP")], cluster_ips=("10.96.0.30",)),
                     endpoint_slice("dgram", [("d", "UDP", 8080)], [endpoint(WEB, "node-1")])], sort_keys=False))
    n.kdp.send_signal(signal.SIGHUP)
    time.sleep(0.5)
    count = 20000
    # the client TAP's queue holds the whole burst: nothing is dropped before kdp reads it
    sh("ip", "-n", n.spaces["client"][0], "link", "set", n.devices["client"], "txqueuelen", "30000")
    sink = subprocess.Popen(["ip", "netns", "exec", n.spaces["web"][0], sys.executable, "-c", UDP_SINK, WEB,
                             str(count)], stdout=subprocess.PIPE, text=True)
    n.servers.append(sink)
    assert sink.stdout.readline().strip() == "ready"
    # the client learns its gateway's MAC and kdp the backend's first (while kdp runs):
    # a datagram to a closed port of the backend pod
    assert n.run_in("client", f"import socket; socket.socket(2, 2).sendto(b'x', ('{WEB}', 9))").returncode == 0
    time.sleep(0.5)
    n.kdp.send_signal(signal.SIGSTOP)
    try:
        sent = n.run_in("client", UDP_BURST, "10.96.0.30", str(count), timeout=30).stdout.strip()
    finally:
        n.kdp.send_signal(signal.SIGCONT)
    got, digest = sink.stdout.readline().split()
    n.kdp.send_signal(signal.SIGTERM)
    assert n.kdp.wait(timeout=15) == 0
    summary = json.loads(n.log.read_text())
    assert summary["batches_written_aside"] > 0 and summary["unresolved_dropped"] == 0, json.dumps(summary)
    # every datagram, in order: the digest of what came is the digest of what was sent
    assert int(got) == count and digest == sent, (got, summary["ports"])


ARP_ASK = """
import sys
from scapy.all import ARP, Ether, conf, srp
conf.verb = 0
dev, mine, target = sys.argv[1:4]
answered, _ = srp(Ether(dst="ff:ff:ff:ff:ff:ff") / ARP(op=1, psrc=mine, pdst=target), iface=dev, timeout=1)
print(len(answered))
"""


def test_on_the_uplink_kdp_answers_arp_for_the_nodes_address_only(attached):
    """The uplink is a network others share: kdp claims the node's own address there,
    not every address (as it does towards a pod, for the gateway address)."""
    n = attached()
    ns, dev = n.spaces["out"][0], n.devices["out"]
    ask = lambda target: sh("ip", "netns", "exec", ns, sys.executable, "-c", ARP_ASK, dev, OUTSIDE, target,
                            timeout=30).stdout.strip()
    assert ask(NODE1) == "1"
    assert ask("192.168.56.77") == "0"


def test_kdp_resolves_its_gateway_on_the_uplink_with_the_nodes_address(attached):
    """The default route's next hop (NodeConfig uplink.gateway) is a host on the uplink:
    kdp asks for its MAC from the node's address and the uplink's MAC (the host's kernel
    learns them), and a pod's request to an address beyond it arrives: that kernel takes
    only frames addressed to its own MAC."""
    from kdp._fast.route import placeholder_mac
    n = attached(gateway=OUTSIDE)
    ns, dev = n.spaces["out"][0], n.devices["out"]
    sh("ip", "-n", ns, "addr", "add", "203.0.113.5/32", "dev", dev)
    sh("ip", "-n", ns, "route", "add", "10.244.0.0/16", "via", NODE1)
    srv = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER, "203.0.113.5"],
                           stdout=subprocess.PIPE, text=True)
    n.servers.append(srv)
    assert srv.stdout.readline().strip() == "ready"
    run = n.run_in("client", GET, "http://203.0.113.5:8080/")
    assert run.returncode == 0 and run.stdout.strip() == CLIENT, run.stderr
    neigh = sh("ip", "-n", ns, "neigh", "show", NODE1).stdout
    assert placeholder_mac(NODE1).hex(":") in neigh, neigh


def _two_node_cluster(tmp_path):
    from kdptest import base_objects
    objs = base_objects() + [
        {"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": "node-2"},
         "spec": {"nodeAddresses": ["192.168.56.12"], "clusterCIDRs": ["10.244.0.0/16"],
                  "serviceCIDRs": ["10.96.0.0/16"]}},
        {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "pool"},
         "spec": {"cidr": "10.244.0.0/16", "ipipMode": "Always"}},
        service("web", [port("http", 80, 8080)]),
        endpoint_slice("web", [("http", "TCP", 8080)], [endpoint("10.244.2.10", "node-2")])]
    snap = tmp_path / "two"
    snap.mkdir()
    (snap / "cluster.yaml").write_text(yaml.safe_dump_all(objs, sort_keys=False))
    return snap


def test_two_kdp_nodes_carry_a_service_flow_over_ip_in_ip(tmp_path):
    """Two kdp instances as node-1 and node-2, their uplinks bridged in an underlay
    namespace: a pod on node-1 reaches a ClusterIP whose backend runs on node-2, and a
    pod directly; the packets between the nodes are IP-in-IP (kdp encapsulates, the other
    kdp decapsulates), and the backend sees the client pod's address."""
    snap = _two_node_cluster(tmp_path)
    tag = uuid.uuid4().hex[:6]
    ns = {"client": f"kc{tag}", "web": f"kw{tag}", "under": f"ku{tag}"}
    dev = {"client": f"tc{tag}", "web": f"tw{tag}", "up1": f"ua{tag}", "up2": f"ub{tag}"}
    procs, logs = [], [tmp_path / "node-1.jsonl", tmp_path / "node-2.jsonl"]
    summaries = [tmp_path / "node-1.json", tmp_path / "node-2.json"]
    try:
        for node_name, pod, pdev, up, log, out in (
                ("node-1", "shop/client", dev["client"], dev["up1"], logs[0], summaries[0]),
                ("node-2", "shop/web-2", dev["web"], dev["up2"], logs[1], summaries[1])):
            p = subprocess.Popen([sys.executable, "-m", "kdp", "attach", "--cluster", str(snap), "--node", node_name,
                                  "--port", f"{pod}={pdev}", "--port", f"uplink={up}", "--log", str(log), "--json"],
                                 stdout=open(out, "w"), stderr=subprocess.PIPE, text=True)
            procs.append(p)
            assert "ready" in p.stderr.readline()
        sh("ip", "netns", "add", ns["under"])
        sh("ip", "-n", ns["under"], "link", "add", "br0", "type", "bridge")
        for up in (dev["up1"], dev["up2"]):
            sh("ip", "link", "set", up, "netns", ns["under"])
            sh("ip", "-n", ns["under"], "link", "set", up, "master", "br0")
            sh("ip", "-n", ns["under"], "link", "set", up, "up")
        sh("ip", "-n", ns["under"], "link", "set", "br0", "up")
        for key, ip in (("client", CLIENT), ("web", "10.244.2.10")):
            pod_namespace(ns[key], dev[key], ip)
        srv = subprocess.Popen(["ip", "netns", "exec", ns["web"], sys.executable, "-c", SERVER, "10.244.2.10"],
                               stdout=subprocess.PIPE, text=True)
        procs.append(srv)
        assert srv.stdout.readline().strip() == "ready"
        for url in ("http://10.96.0.10/", "http://10.244.2.10:8080/"):
            run = sh("ip", "netns", "exec", ns["client"], sys.executable, "-c", GET, url, timeout=15, check=False)
            assert run.returncode == 0 and run.stdout.strip() == CLIENT, (url, run.stderr)
        bulk = subprocess.Popen(["ip", "netns", "exec", ns["web"], sys.executable, "-c", BULK_SERVER, "10.244.2.10", "9000"],
                                stdout=subprocess.PIPE, text=True)
        procs.append(bulk)
        assert bulk.stdout.readline().strip() == "ready"
        # 4 MB each way: the pods' super-frames are cut into segments before the tunnel
        run = sh("ip", "netns", "exec", ns["client"], sys.executable, "-c", BULK_CLIENT, "10.244.2.10", "9000",
                 str(4 << 20), timeout=60, check=False)
        assert run.stdout.split()[:4] == ["up", "ok", "down", "ok"], run.stdout + run.stderr
    finally:
        stop_all(procs, ns.values())
    import json
    for out in summaries:
        off = json.loads(out.read_text())["offloads"]
        assert off["gso_frames"] > 0 and off["segments_cut"] > 0, off
    node1 = [json.loads(l) for l in logs[0].read_text().splitlines()]
    node2 = [json.loads(l) for l in logs[1].read_text().splitlines()]
    assert any(l["reason"] == "forwarded_ipip" and l["tunnel"]["dst"] == "192.168.56.12" for l in node1)
    assert any(l.get("decap") == "ipip" and l["dst"] == "10.244.2.10" for l in node2)
    assert any(l.get("decap") == "ipip" and l["dst"] == CLIENT for l in node1)


def test_metrics_count_what_crossed_kdp(attached):
    import urllib.request
    from prometheus_client.parser import text_string_to_metric_families
    n = attached()
    n.serve()
    assert n.run_in("client", GET, "http://10.96.0.10/").returncode == 0
    n.run_in("client", CONNECT, "10.96.0.20", "80")
    text = urllib.request.urlopen(f"http://127.0.0.1:{n.metrics_port}/metrics", timeout=5).read().decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for fam in text_string_to_metric_families(text) for s in fam.samples}
    rx = samples[("kdp_port_packets_total", (("device", n.devices["client"]), ("direction", "rx"), ("port", "shop/client")))]
    assert rx >= 5                                   # ARP, SYN, ACK, request, FIN...
    assert samples[("kdp_service_new_flows_total", (("service", "shop/web:http"),))] == 1
    assert samples[("kdp_service_rejects_total", (("service", "shop/empty:http"),))] == 1
    assert samples[("kdp_pipeline_packets_total", (("reason", "svc_no_endpoints"), ("stage", "service")))] == 1
    assert samples[("kdp_conntrack_flows", ())] >= 1
    assert samples[("kdp_reloads_total", (("result", "ok"),))] == 0


WHO = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'
    def do_GET(self):
        body = sys.argv[1].encode()
        self.send_response(200); self.send_header('Content-Length', str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(http.server.ThreadingHTTPServer):
    server_bind = http.server.socketserver.TCPServer.server_bind   # (no getfqdn: no DNS here)
s = S((sys.argv[1], 8080), H); print('ready', flush=True); s.serve_forever()
"""
KEEP = """
import http.client, sys, urllib.request
c = http.client.HTTPConnection('10.96.0.10', 80, timeout=5)
c.request('GET', '/'); print(c.getresponse().read().decode(), flush=True)
sys.stdin.readline()
c.request('GET', '/'); print(c.getresponse().read().decode(), flush=True)
print(urllib.request.urlopen('http://10.96.0.10/', timeout=5).read().decode(), flush=True)
"""


def test_a_reload_moves_new_connections_while_an_established_one_keeps_working(tmp_path):
    web3 = "10.244.1.11"

    def snapshot(rolled):
        # the rollout: web-1 terminating (still listed, not ready), web-3 ready
        objs = cluster() + [_pod("shop", "web-3", web3, "web")]
        for o in objs:
            if o["kind"] == "EndpointSlice":
                o["endpoints"] = [endpoint(WEB, "node-1", ready=False, serving=False, terminating=True),
                                  endpoint(web3, "node-1")] if rolled else [endpoint(WEB, "node-1")]
        (tmp_path / "snap" / "cluster.yaml").write_text(yaml.safe_dump_all(objs, sort_keys=False))

    (tmp_path / "snap").mkdir()
    snapshot(False)
    tag = uuid.uuid4().hex[:6]
    spaces = {"client": (f"kc{tag}", CLIENT), "web": (f"kw{tag}", WEB), "web3": (f"kx{tag}", web3)}
    devs = {"client": f"tc{tag}", "web": f"tw{tag}", "web3": f"tx{tag}"}
    names = {"client": "shop/client", "web": "shop/web-1", "web3": "shop/web-3"}
    procs = []
    try:
        kdp = subprocess.Popen([sys.executable, "-m", "kdp", "attach", "--cluster", str(tmp_path / "snap"),
                                "--node", "node-1"] + [a for k in names for a in ("--port", f"{names[k]}={devs[k]}")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(kdp)
        assert "ready" in kdp.stderr.readline()
        for key, (ns, ip) in spaces.items():
            pod_namespace(ns, devs[key], ip)
        for key in ("web", "web3"):
            srv = subprocess.Popen(["ip", "netns", "exec", spaces[key][0], sys.executable, "-c", WHO, spaces[key][1]],
                                   stdout=subprocess.PIPE, text=True)
            procs.append(srv)
            assert srv.stdout.readline().strip() == "ready"
        client = subprocess.Popen(["ip", "netns", "exec", spaces["client"][0], sys.executable, "-c", KEEP],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        procs.append(client)
        assert client.stdout.readline().strip() == WEB          # the connection is web-1's
        snapshot(True)                                          # web-1 terminating, web-3 ready
        kdp.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        client.stdin.write("\n")
        client.stdin.flush()
        out, err = client.communicate(timeout=20)
        assert out.split() == [WEB, web3], err                  # established: web-1; new: web-3
    finally:
        stop_all(procs, [ns for ns, _ip in spaces.values()])


def test_a_pod_reaches_an_ipv6_clusterip_through_kdps_neighbour_discovery(tmp_path):
    """IPv6: the pods' default route points at kdp's link-local address, which kdp answers
    neighbour solicitations for; kdp solicits the backend's MAC itself. Then 4 MB each
    way through the ClusterIP: IPv6 TCP super-frames (TSO6) cross kdp's NAT whole."""
    from kdptest import CLIENT6, WEB1_6
    objs = [node_config(clusterCIDRs=["10.244.0.0/16", "fd00:244::/32"]),
            node("node-1", NODE1, ["10.244.1.0/24", "fd00:244:1::/64"]),
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
            _pod("shop", "client", CLIENT6, "client"), _pod("shop", "web-1", WEB1_6, "web"),
            service("web6", [port("http", 80, 8080)], cluster_ips=("fd00:96::10",)),
            endpoint_slice("web6", [("http", "TCP", 8080)], [endpoint(WEB1_6, "node-1")], family="IPv6")]
    snap = tmp_path / "snap6"
    snap.mkdir()
    (snap / "cluster.yaml").write_text(yaml.safe_dump_all(objs, sort_keys=False))
    tag = uuid.uuid4().hex[:6]
    spaces = {"client": (f"kc{tag}", CLIENT6), "web": (f"kw{tag}", WEB1_6)}
    devs = {"client": f"tc{tag}", "web": f"tw{tag}"}
    procs = []
    summary = tmp_path / "summary.json"
    try:
        kdp = subprocess.Popen([sys.executable, "-m", "kdp", "attach", "--cluster", str(snap), "--node", "node-1",
                                "--port", f"shop/client={devs['client']}", "--port", f"shop/web-1={devs['web']}",
                                "--json"], stdout=open(summary, "w"), stderr=subprocess.PIPE, text=True)
        procs.append(kdp)
        assert "ready" in kdp.stderr.readline()
        for key, (ns, ip) in spaces.items():
            dev = devs[key]
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "set", dev, "netns", ns)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "-6", "addr", "add", f"{ip}/128", "dev", dev, "nodad")
            sh("ip", "-n", ns, "-6", "route", "add", "default", "via", "fe80::ecee:eeff:feee:eeee", "dev", dev)
        srv = subprocess.Popen(["ip", "netns", "exec", spaces["web"][0], sys.executable, "-c", SERVER, WEB1_6],
                               stdout=subprocess.PIPE, text=True)
        procs.append(srv)
        assert srv.stdout.readline().strip() == "ready"
        run = sh("ip", "netns", "exec", spaces["client"][0], sys.executable, "-c", GET, "http://[fd00:96::10]/",
                 timeout=15, check=False)
        assert run.returncode == 0 and run.stdout.strip() == CLIENT6, run.stderr
        srv.kill()
        bulk = subprocess.Popen(["ip", "netns", "exec", spaces["web"][0], sys.executable, "-c", BULK_SERVER,
                                 WEB1_6, "8080"], stdout=subprocess.PIPE, text=True)
        procs.append(bulk)
        assert bulk.stdout.readline().strip() == "ready"
        run = sh("ip", "netns", "exec", spaces["client"][0], sys.executable, "-c", BULK_CLIENT, "fd00:96::10", "80",
                 str(4 << 20), timeout=60, check=False)
        assert run.stdout.split()[:4] == ["up", "ok", "down", "ok"], run.stdout + run.stderr
        kdp.send_signal(signal.SIGTERM)
        assert kdp.wait(timeout=15) == 0
        off = json.loads(summary.read_text())["offloads"]
        assert off["gso_frames"] > 0 and off["gso_refused"] == off["gso_unsendable"] == 0, off
    finally:
        stop_all(procs, [ns for ns, _ip in spaces.values()])


def test_the_health_check_node_port_answers_200_then_503_as_local_endpoints_go(tmp_path):
    """kube-proxy's health server: kdp runs in a node namespace whose host port carries the
    node's address; an outside host probes NODE:healthCheckNodePort through the uplink and
    gets 200 while this node has a ready endpoint of the Service, 503 after a reload
    without one."""
    def snapshot(local):
        objs = cluster()
        for o in objs:
            if o["kind"] == "Service" and o["metadata"]["name"] == "web":
                o["spec"].update(type="LoadBalancer", externalTrafficPolicy="Local", healthCheckNodePort=31555)
            if o["kind"] == "EndpointSlice":
                o["endpoints"] = [endpoint(WEB, "node-1")] if local else [endpoint("10.244.2.10", "node-2")]
        objs.append(node("node-2", "192.168.56.12", ["10.244.2.0/24"]))
        (tmp_path / "snap" / "cluster.yaml").write_text(yaml.safe_dump_all(objs, sort_keys=False))

    (tmp_path / "snap").mkdir()
    snapshot(True)
    tag = uuid.uuid4().hex[:6]
    node_ns, out_ns = f"kn{tag}", f"ko{tag}"
    host_dev, up_dev, web_dev = f"th{tag}", f"tu{tag}", f"tw{tag}"
    probe = "import urllib.request, urllib.error, sys\ntry:\n    r = urllib.request.urlopen(sys.argv[1], timeout=4); print(r.status, r.read().decode())\nexcept urllib.error.HTTPError as e:\n    print(e.code, e.read().decode())"
    procs = []
    try:
        sh("ip", "netns", "add", node_ns)
        sh("ip", "-n", node_ns, "link", "set", "lo", "up")
        kdp = subprocess.Popen(["ip", "netns", "exec", node_ns, sys.executable, "-m", "kdp", "attach",
                                "--cluster", str(tmp_path / "snap"), "--node", "node-1", "--port", f"host={host_dev}",
                                "--port", f"uplink={up_dev}", "--port", f"shop/web-1={web_dev}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        procs.append(kdp)
        assert "ready" in kdp.stderr.readline()
        # the node's own stack behind the host port: its address, and the subnet through kdp
        sh("ip", "-n", node_ns, "addr", "add", f"{NODE1}/32", "dev", host_dev)
        sh("ip", "-n", node_ns, "route", "add", "192.168.56.0/24", "dev", host_dev)
        sh("ip", "netns", "add", out_ns)
        sh("ip", "-n", node_ns, "link", "set", up_dev, "netns", out_ns)
        sh("ip", "-n", out_ns, "link", "set", up_dev, "up")
        sh("ip", "-n", out_ns, "addr", "add", f"{OUTSIDE}/24", "dev", up_dev)
        url = f"http://{NODE1}:31555/healthz"
        run = sh("ip", "netns", "exec", out_ns, sys.executable, "-c", probe, url, timeout=15, check=False)
        status, body = run.stdout.split(" ", 1)
        assert status == "200", run.stdout + run.stderr
        assert '"localEndpoints": 1' in body and '"name": "web"' in body
        snapshot(False)
        kdp.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        run = sh("ip", "netns", "exec", out_ns, sys.executable, "-c", probe, url, timeout=15, check=False)
        assert run.stdout.startswith("503 ") and '"localEndpoints": 0' in run.stdout, run.stdout + run.stderr
    finally:
        stop_all(procs, (node_ns, out_ns))


def test_a_snapshot_that_fails_validation_changes_nothing(attached):
    n = attached()
    n.serve()
    (n.snap / "cluster.yaml").write_text("kind: Service\nmetadata: {name: broken}\nspec: {ports: [{port: 99999}]}\n")
    time.sleep(2.5)                     # kdp saw the change and refused it
    assert n.kdp.poll() is None
    run = n.run_in("client", GET, "http://10.96.0.10/")
    assert run.returncode == 0 and run.stdout.strip() == CLIENT, run.stderr
    n.kdp.send_signal(signal.SIGTERM)
    assert n.kdp.wait(timeout=15) == 0
    import json
    assert any("invalid" in r or "problem" in r for r in json.loads(n.log.read_text())["reloads"])


@pytest.mark.parametrize("args, message", [
    (["--port", "bogus"], "--port takes NAME=TAPDEV"),
    (["--port", "nope=tq0"], "no port 'nope' in the snapshot"),
    (["--port", "shop/client=averyveryverylongname"], "at most 15 bytes"),
    (["--port", "shop/client=tq0", "--metrics", "nonsense"], "--metrics takes HOST:PORT"),
    (["--port", "shop/client=tq0", "--pcap-out", "/proc/kdp-nope"], "--pcap-out /proc/kdp-nope"),
    (["--port", "shop/client=tq0", "--busy-poll", "-1"], "--busy-poll must be 0..1000000"),
])
def test_bad_attach_arguments_are_clear_errors_and_leave_no_device(tmp_path, args, message):
    snap = tmp_path / "snap"
    snap.mkdir()
    (snap / "cluster.yaml").write_text(yaml.safe_dump_all(cluster(), sort_keys=False))
    run = subprocess.run([sys.executable, "-m", "kdp", "attach", "--cluster", str(snap), "--node", "node-1",
                          "--duration", "0.2", *args], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr
    assert "tq0" not in sh("ip", "link").stdout
