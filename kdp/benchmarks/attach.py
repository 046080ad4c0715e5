"""`kdp bench attach`: kdp live on TAP devices against the kernel doing the same job.

Both paths carry client -> Service VIP (10.96.0.10:5201) -> backend (10.244.1.10:5201)
between two network namespaces this suite makes (and removes):

  kdp     `kdp attach` with the client's and the backend's TAP devices; the Service is a
          ClusterIP of a one-node snapshot (DNAT in kdp's conntrack). Twice: with the
          TAP offloads (partial checksums, TCP super-frames) and with --no-offloads;
          kdp's own summary gives the frames it read and their mean size.
  kernel  a router namespace between two veth pairs, IP forwarding on, and kube-proxy's
          iptables-mode rule as nftables states it: DNAT of the VIP's port to the backend
          in prerouting, conntrack doing the rest.

Measured in one run, the same tools for both: iperf3 TCP, one stream (Gbit/s the
receiver counted); iperf3 UDP with 64-byte payloads sent as fast as the sender can
(packets/s received, and the loss); new TCP connections per second (a bounded
connect/accept/close loop). Beside each, the cores in use over its steady middle: the
machine's and kdp's own process (where a second loop could help: multiqueue TAP). Needs root, `ip`, `nft` and iperf3; a tool that is missing
leaves its rows out with the reason.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

import yaml

SECONDS = 3
VIP, BACKEND, CLIENT = "10.96.0.10", "10.244.1.10", "10.244.1.50"
CONNECT_LOOP = """
import socket, sys, time
n, end = 0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    s = socket.create_connection((sys.argv[1], 5202), timeout=2)
    s.close()
    n += 1
print(n / float(sys.argv[2]))
"""
ACCEPT_LOOP = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5202)); s.listen(1024); print('ready', flush=True)
while True:
    c, _ = s.accept(); c.close()
"""


def _tool(name):
    # root's tools live in sbin, which a user's PATH may leave out
    return shutil.which(name, path=os.environ.get("PATH", os.defpath) + ":/usr/sbin:/sbin")


def _sh(*cmd, timeout=30, check=True):
    cmd = (_tool(cmd[0]) or cmd[0],) + cmd[1:]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and run.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {run.stderr.strip()}")
    return run


def _cluster(path):
    objs = [
        {"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": "node-1"},
         "spec": {"nodeAddresses": ["192.168.56.11"], "clusterCIDRs": ["10.244.0.0/16"],
                  "serviceCIDRs": ["10.96.0.0/16"], "conntrack": {"dropInvalid": False}}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1"}, "spec": {"podCIDRs": ["10.244.1.0/24"]},
         "status": {"addresses": [{"type": "InternalIP", "address": "192.168.56.11"}]}},
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}},
    ]
    for name, ip in (("client", CLIENT), ("server", BACKEND)):
        objs.append({"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "bench", "name": name},
                     "spec": {"nodeName": "node-1"}, "status": {"phase": "Running", "podIP": ip}})
    objs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "bench", "name": "iperf"},
                 "spec": {"type": "ClusterIP", "clusterIP": VIP, "ports": [
                     {"name": "tcp", "protocol": "TCP", "port": 5201, "targetPort": 5201},
                     {"name": "udp", "protocol": "UDP", "port": 5201, "targetPort": 5201},
                     {"name": "conn", "protocol": "TCP", "port": 5202, "targetPort": 5202}]}})
    objs.append({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                 "metadata": {"namespace": "bench", "name": "iperf-a", "labels": {"kubernetes.io/service-name": "iperf"}},
                 "addressType": "IPv4",
                 "ports": [{"name": "tcp", "protocol": "TCP", "port": 5201}, {"name": "udp", "protocol": "UDP", "port": 5201},
                           {"name": "conn", "protocol": "TCP", "port": 5202}],
                 "endpoints": [{"addresses": [BACKEND], "conditions": {"ready": True}, "nodeName": "node-1"}]})
    with open(path, "w") as f:
        yaml.safe_dump_all(objs, f)


class _Path:
    """Two namespaces (client, server) and what joins them; `close()` removes it all."""

    def __init__(self, kind, tmp):
        tag = uuid.uuid4().hex[:6]
        self.client, self.server = f"bc{tag}", f"bs{tag}"
        self.spaces = [self.client, self.server]
        self.procs = []
        self.summary_path = None
        self.kdp_pid = None
        try:
            if kind.startswith("kdp"):
                self._kdp(tag, tmp, offloads=kind == "kdp")
            else:
                self._kernel(tag)
        except BaseException:
            self.close()                # what was made before the failure goes too
            raise

    def _pod(self, ns, dev, ip, via):
        _sh("ip", "netns", "add", ns)
        _sh("ip", "link", "set", dev, "netns", ns)
        _sh("ip", "-n", ns, "link", "set", "lo", "up")
        _sh("ip", "-n", ns, "link", "set", dev, "up")
        _sh("ip", "-n", ns, "addr", "add", f"{ip}/32", "dev", dev)
        _sh("ip", "-n", ns, "route", "add", via, "dev", dev)
        _sh("ip", "-n", ns, "route", "add", "default", "via", via, "dev", dev)

    def _kdp(self, tag, tmp, offloads):
        snap = os.path.join(tmp, "cluster.yaml")
        _cluster(snap)
        cdev, sdev = f"bkc{tag}", f"bks{tag}"
        self.summary_path = os.path.join(tmp, "kdp.json")
        kdp = subprocess.Popen([sys.executable, "-m", "kdp", "attach", "--cluster", snap, "--node", "node-1", "--json",
                                "--port", f"bench/client={cdev}", "--port", f"bench/server={sdev}"]
                               + ([] if offloads else ["--no-offloads"]),
                               stdout=open(self.summary_path, "w"), stderr=subprocess.PIPE, text=True)
        self.procs.append(kdp)
        self.kdp_pid = kdp.pid
        line = kdp.stderr.readline()
        if "ready" not in line:
            raise RuntimeError(f"kdp attach did not start: {line}{kdp.stderr.read()[-500:]}")
        self._pod(self.client, cdev, CLIENT, "169.254.1.1")
        self._pod(self.server, sdev, BACKEND, "169.254.1.1")

    def _kernel(self, tag):
        router = f"br{tag}"
        self.spaces.append(router)
        _sh("ip", "netns", "add", router)
        _sh("ip", "-n", router, "link", "set", "lo", "up")
        for ns, ip, peer in ((self.client, CLIENT, f"rc{tag}"), (self.server, BACKEND, f"rs{tag}")):
            dev = f"v{ns}"
            _sh("ip", "link", "add", dev, "type", "veth", "peer", "name", peer)
            _sh("ip", "link", "set", peer, "netns", router)
            _sh("ip", "-n", router, "link", "set", peer, "up")
            _sh("ip", "-n", router, "addr", "add", "169.254.1.1/32", "dev", peer)
            _sh("ip", "-n", router, "route", "add", f"{ip}/32", "dev", peer)
            self._pod(ns, dev, ip, "169.254.1.1")
            _sh("ip", "netns", "exec", router, _tool("sysctl") or "sysctl", "-qw", f"net.ipv4.conf.{peer}.proxy_arp=1")
        _sh("ip", "netns", "exec", router, _tool("sysctl") or "sysctl", "-qw", "net.ipv4.ip_forward=1")
        rules = (f"table ip kdpbench {{\n chain pre {{\n  type nat hook prerouting priority -100;\n"
                 f"  ip daddr {VIP} tcp dport {{ 5201, 5202 }} dnat to {BACKEND}\n"
                 f"  ip daddr {VIP} udp dport 5201 dnat to {BACKEND}\n }}\n}}\n")
        run = subprocess.run([_tool("ip"), "netns", "exec", router, _tool("nft"), "-f", "-"], input=rules, text=True,
                             capture_output=True, timeout=30)
        if run.returncode != 0:
            raise RuntimeError(f"nft: {run.stderr.strip()}")

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
        for ns in self.spaces:
            subprocess.run([_tool("ip") or "ip", "netns", "del", ns], capture_output=True, timeout=20)

    def kdp_frames(self):
        """kdp's own count once it stopped: frames read, mean bytes a frame, super-frames."""
        with open(self.summary_path) as f:
            summary = json.load(f)
        rx = sum(p["rx"] for p in summary["ports"].values())
        rx_bytes = sum(p["rx_bytes"] for p in summary["ports"].values())
        return {"frames_read": rx, "bytes_per_frame": rx_bytes / rx if rx else 0.0,
                "gso_frames": summary["offloads"]["gso_frames"]}


def _cpu_ticks(pid=None):
    """Busy clock ticks of the whole machine (/proc/stat: every state but idle and
    iowait) and its total, or of one process and its threads (utime + stime)."""
    if pid is not None:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


class _CpuUse:
    """Cores kept busy while a measurement ran: the machine's (what every process and
    the kernel's softirq work took: with two cores, 2.0 means no core was left over, so
    a second kdp loop could not have added anything) and kdp's own (its loop, its
    writer thread and the kernel work they do, such as the receiving namespace's
    input path that runs in a TAP write)."""

    def __init__(self, kdp_pid):
        self.pid = kdp_pid
        self.machine, self.kdp = 0.0, None

    def measure(self, seconds):
        """Sample over `seconds` of the steady state (the caller's load is running)."""
        t0, m0 = time.monotonic(), _cpu_ticks()
        k0 = _cpu_ticks(self.pid) if self.pid else None
        time.sleep(seconds)
        wall = time.monotonic() - t0
        busy, total = (a - b for a, b in zip(_cpu_ticks(), m0))
        self.machine = os.cpu_count() * busy / total if total else 0.0
        if self.pid:
            self.kdp = (_cpu_ticks(self.pid) - k0) / os.sysconf("SC_CLK_TCK") / wall

    def columns(self, what):
        out = {f"{what}_machine_cores": round(self.machine, 2)}
        if self.kdp is not None:
            out[f"{what}_kdp_cores"] = round(self.kdp, 2)
        return out


def _iperf(path, udp):
    server = subprocess.Popen([_tool("ip"), "netns", "exec", path.server, _tool("iperf3"), "-s", "-1", "-J"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    path.procs.append(server)
    time.sleep(0.5)
    args = ["-c", VIP, "-t", str(SECONDS), "-J"] + (["-u", "-l", "64", "-b", "0"] if udp else [])
    client, cpu = _steady(path, [_tool("iperf3"), *args])
    out, _ = server.communicate(timeout=SECONDS + 30)
    if client.returncode != 0:
        raise RuntimeError(f"iperf3 client: {client.stdout[-300:]}{client.stderr[-300:]}")
    report = json.loads(out)["end"]
    if udp:
        s = report["sum"]
        return {"packets_per_s": (s["packets"] - s["lost_packets"]) / s["seconds"], "lost_percent": s["lost_percent"],
                **cpu.columns("udp")}
    return {"gbit_per_s": report["sum_received"]["bits_per_second"] / 1e9, **cpu.columns("tcp")}


def _steady(path, cmd):
    """Run the client command in the client namespace (it runs SECONDS), measuring the
    cores in use over its middle: the first and last half second left out."""
    client = subprocess.Popen([_tool("ip"), "netns", "exec", path.client, *cmd],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    cpu = _CpuUse(path.kdp_pid)
    try:
        time.sleep(0.5)
        cpu.measure(SECONDS - 1.0)
        out, err = client.communicate(timeout=SECONDS + 30)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    return subprocess.CompletedProcess(cmd, client.returncode, out, err), cpu


def _connections(path):
    server = subprocess.Popen([_tool("ip"), "netns", "exec", path.server, sys.executable, "-c", ACCEPT_LOOP, BACKEND],
                              stdout=subprocess.PIPE, text=True)
    path.procs.append(server)
    if server.stdout.readline().strip() != "ready":
        raise RuntimeError("the accept loop did not start")
    run, cpu = _steady(path, [sys.executable, "-c", CONNECT_LOOP, VIP, str(SECONDS)])
    if run.returncode != 0:
        raise RuntimeError(f"connect loop: {run.stderr[-300:]}")
    return {"connections_per_s": float(run.stdout), **cpu.columns("conn")}


def run(quick=False):
    from kdp.benchmarks.peers import PeerUnavailable, attempt
    res = {"seconds": SECONDS, "rows": [], "peers_not_run": []}
    missing = [t for t in ("ip", "nft", "iperf3") if _tool(t) is None]
    if os.geteuid() != 0 or missing:
        why = "needs root" if os.geteuid() != 0 else f"{', '.join(missing)} not on PATH"
        attempt("attach (kdp and kernel)", lambda: (_ for _ in ()).throw(PeerUnavailable(why)), res["peers_not_run"])
        return res
    for kind in ("kdp", "kdp --no-offloads", "kernel"):
        with tempfile.TemporaryDirectory(prefix="kdp-bench-attach-") as tmp:
            path = None
            try:
                path = _Path(kind, tmp)
                row = {"path": kind}
                row.update(_iperf(path, udp=False))
                row.update(_iperf(path, udp=True))
                row.update(_connections(path))
                path.close()
                if path.summary_path:
                    row.update(path.kdp_frames())
                res["rows"].append(row)
            except (RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError, OSError) as exc:
                res["peers_not_run"].append({"peer": kind, "status": "failed", "reason": str(exc), "stderr": ""})
            finally:
                if path is not None:
                    path.close()
    return res


def main(args):
    res = run(quick=getattr(args, "quick", False))
    if getattr(args, "json", False):
        print(json.dumps(res, indent=2))
        return 0
    from kdp.commands.common import console
    from rich.table import Table
    tb = Table(title=f"client -> Service VIP -> backend, {SECONDS} s each (kdp attach against the kernel)")
    # cores: busy on the machine / kdp's own, over each measurement's steady middle;
    # kdp's columns: frames it read, their mean size, TCP super-frames among them
    for c in ("path", "TCP Gbit/s", "cores", "UDP 64 B pkt/s", "loss %", "cores", "TCP conn/s", "cores",
              "frames in", "B/frame", "GSO frames"):
        tb.add_column(c, justify="left" if c == "path" else "right")

    def cores(r, what):
        kdp = r.get(f"{what}_kdp_cores")
        return f"{r[f'{what}_machine_cores']:.2f}" + (f" / {kdp:.2f}" if kdp is not None else "")

    for r in res["rows"]:
        mine = [f"{r['frames_read']:,}", f"{r['bytes_per_frame']:,.0f}", f"{r['gso_frames']:,}"] \
            if "frames_read" in r else ["", "", ""]
        tb.add_row(r["path"], f"{r['gbit_per_s']:.3f}", cores(r, "tcp"), f"{r['packets_per_s']:,.0f}",
                   f"{r['lost_percent']:.1f}", cores(r, "udp"), f"{r['connections_per_s']:,.0f}", cores(r, "conn"),
                   *mine)
    console().print(tb)
    print(f"cores: busy on the machine ({os.cpu_count()} cores) / kdp's process, over the middle of each "
          "measurement; a machine with no core left over gains nothing from a second kdp loop")
    from kdp.benchmarks.peers import print_not_run
    print_not_run(res["peers_not_run"])
    return 0
