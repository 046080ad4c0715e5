"""kdp's tunnels against the Linux kernel's own, in network namespaces the test creates.

    pod ns                 kdp ns (node-1's data plane)              node-2 ns (a Linux node)
    eth0 10.244.1.50 ─ veth ─ cali0 ┐                     ┌ up0 ─ veth ─ eth0 192.168.56.12/24
                                    └─ kdp (this process) ─┘        vxlan.calico (VNI 4096, 4789)
                                                                    or tunl0 (IP-in-IP), as Calico
                                                                    sets them up; "pod" 10.244.2.10

The test process is node-1: a loop reads the frames of cali0 and up0 (AF_PACKET), runs
them through a kdp Dataplane compiled from a snapshot that describes exactly this setup
(an IPPool, node-2's Calico annotations), and sends what kdp transmits out of the port
kdp chose. The pod's kernel and node-2's kernel are real: a ping and a TCP connection
must work both ways, so the kernel's vxlan (ipip) device must accept kdp's tunnel
packets, and kdp must decapsulate what the kernel's device sends. The loop answers the
pod's ARP for its gateway 169.254.1.1 as Calico's proxy ARP on cali0 does (kdp learns the
pod's MAC from that ARP, as the kernel's neighbour table would).

Needs root, ip (iproute2) and a kernel with veth and vxlan; IP-in-IP needs CONFIG_NET_IPIP
(the test says so and is skipped on a kernel built without it). Every command is bounded
by a timeout, and the namespaces are deleted whatever happens.

IPv6 (Topology6): VXLAN over IPv6 with the kernel's vxlan device as Calico's vxlan-v6.calico,
IPv6 pods on both sides: a ping and a TCP connection each way.

Where the kernel has no ipip device, the IPIP-stack case still puts kdp's IP-in-IP through
the kernel: node-2's tunnel end is a raw IPPROTO_IPIP socket and a TUN device. The
kernel's IP input accepts (or drops) kdp's outer header before the socket sees it, the
inner packet is handed to node-2's stack through the TUN device, and the other way the
kernel writes the outer header itself (a raw socket without IP_HDRINCL). The only work
outside the kernel is taking the outer header off by its IHL and checking that it came
from node-1, as an ipip device configured with that remote does.
"""
import contextlib
import ctypes
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid

import pytest
import yaml
from scapy.layers.l2 import ARP, Ether
from scapy.packet import raw

from kdp._fast.packet import Batch
from kdp.dataplane import Dataplane
from kdp.reasons import Verdict

NODE1, NODE2 = "192.168.56.11", "192.168.56.12"
POD1, POD2 = "10.244.1.50", "10.244.2.10"
GATEWAY = "169.254.1.1"
KDP_VTEP = "66:6b:64:00:00:11"
UPLINK_MAC = "02:6b:64:00:01:11"
CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4

pytestmark = pytest.mark.e2e


def sh(*args, check=True, timeout=20):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, check=check)


def ns(name, *cmd, check=True, timeout=20):
    return sh("ip", "netns", "exec", name, *cmd, check=check, timeout=timeout)


def mac_of(netns, dev):
    out = sh("ip", "-n", netns, "-o", "link", "show", dev).stdout
    return out.split("link/ether ")[1].split()[0]


def _plain_frames(netns, dev):
    """Whole frames on the veth, as on a wire: checksums computed (no TX checksum offload,
    which would hand AF_PACKET a partial checksum) and no segmentation offloads (no
    frames larger than the MTU, no merged ones)."""
    if shutil.which("ethtool") is None:
        pytest.fail("ethtool is not installed (run-tests.sh installs it)")
    ns(netns, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso", "off", "gro", "off")


def kernel_has(kind):
    probe = f"kdpp{uuid.uuid4().hex[:6]}"
    sh("ip", "netns", "add", probe)
    try:
        args = {"vxlan": ["type", "vxlan", "id", "1", "dstport", "4789"], "ipip": ["type", "ipip"]}[kind]
        return sh("ip", "-n", probe, "link", "add", "p0", *args, check=False).returncode == 0
    finally:
        sh("ip", "netns", "del", probe, check=False)


class Topology:
    """The three namespaces and their links; `close()` deletes them."""

    def __init__(self, mode):
        if os.geteuid() != 0:
            pytest.fail("the kernel interop tests need root (CI runs them as root)")
        if shutil.which("ip") is None:
            pytest.fail("iproute2 (ip) is not installed (run-tests.sh installs it)")
        tag = uuid.uuid4().hex[:6]
        self.pod, self.kdp, self.node2 = f"kdpt-pod-{tag}", f"kdpt-kdp-{tag}", f"kdpt-n2-{tag}"
        self.mode = mode
        self.made = []
        self.tunnel_end = None
        try:
            self._build()
        except BaseException:
            self.close()
            raise

    def _build(self):
        for n in (self.pod, self.kdp, self.node2):
            sh("ip", "netns", "add", n)
            self.made.append(n)
            ns(n, "sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1")
            ns(n, "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1")
            ns(n, "ip", "link", "set", "lo", "up")
        sh("ip", "-n", self.kdp, "link", "add", "cali0", "type", "veth", "peer", "name", "eth0", "netns", self.pod)
        sh("ip", "-n", self.kdp, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", self.node2)
        sh("ip", "-n", self.kdp, "link", "set", "up0", "address", UPLINK_MAC)
        for dev in ("cali0", "up0"):
            sh("ip", "-n", self.kdp, "link", "set", dev, "up")
            _plain_frames(self.kdp, dev)
        # the pod, as Calico's CNI plumbs it
        sh("ip", "-n", self.pod, "link", "set", "eth0", "mtu", "1450", "up")
        _plain_frames(self.pod, "eth0")
        sh("ip", "-n", self.pod, "addr", "add", POD1 + "/32", "dev", "eth0")
        sh("ip", "-n", self.pod, "route", "add", GATEWAY, "dev", "eth0", "scope", "link")
        sh("ip", "-n", self.pod, "route", "add", "default", "via", GATEWAY, "dev", "eth0")
        # node-2: a Linux node with Calico's tunnel device, and a "pod" address of its own
        n2 = self.node2
        sh("ip", "-n", n2, "link", "set", "eth0", "up")
        _plain_frames(n2, "eth0")
        sh("ip", "-n", n2, "addr", "add", NODE2 + "/24", "dev", "eth0")
        sh("ip", "-n", n2, "addr", "add", POD2 + "/32", "dev", "lo")
        sh("ip", "-n", n2, "neigh", "add", NODE1, "lladdr", UPLINK_MAC, "dev", "eth0", "nud", "permanent")
        if self.mode == "VXLAN":
            sh("ip", "-n", n2, "link", "add", "vxlan.calico", "type", "vxlan", "id", "4096", "dstport", "4789",
               "local", NODE2, "dev", "eth0", "nolearning")
            sh("ip", "-n", n2, "link", "set", "vxlan.calico", "mtu", "1450", "up")
            sh("ip", "-n", n2, "addr", "add", "10.244.2.1/32", "dev", "vxlan.calico")
            sh("ip", "-n", n2, "neigh", "add", "10.244.1.1", "lladdr", KDP_VTEP, "dev", "vxlan.calico",
               "nud", "permanent")
            sh("ip", "-n", n2, "route", "add", "10.244.1.0/24", "via", "10.244.1.1", "dev", "vxlan.calico", "onlink")
            sh("bridge", "-n", n2, "fdb", "add", KDP_VTEP, "dev", "vxlan.calico", "dst", NODE1)
            self.vtep2 = mac_of(n2, "vxlan.calico")
        elif self.mode == "IPIP":
            # Calico uses the ipip module's fallback device, "ttl inherit nopmtudisc"
            sh("ip", "-n", n2, "link", "set", "tunl0", "mtu", "1480", "up")
            sh("ip", "-n", n2, "addr", "add", "10.244.2.1/32", "dev", "tunl0")
            sh("ip", "-n", n2, "route", "add", "10.244.1.0/24", "via", NODE1, "dev", "tunl0", "onlink")
            self.vtep2 = None
        else:
            self.tunnel_end = _start_tunnel_end(n2)
            self.vtep2 = None
        self.node2_mac = mac_of(n2, "eth0")
        self.pod_mac = mac_of(self.pod, "eth0")

    def snapshot(self, directory):
        """node-1's NodeConfig, both Nodes (node-2 with its Calico annotations), the pod, the pool."""
        annotations = {"projectcalico.org/IPv4Address": NODE2 + "/24"}
        if self.mode == "VXLAN":
            annotations["projectcalico.org/IPv4VXLANTunnelAddr"] = "10.244.2.1"
            annotations["projectcalico.org/VXLANTunnelMACAddr"] = self.vtep2
        else:
            annotations["projectcalico.org/IPv4IPIPTunnelAddr"] = "10.244.2.1"
        pool = {"cidr": "10.244.0.0/16", "ipipMode": "Never" if self.mode == "VXLAN" else "Always",
                "vxlanMode": "Always" if self.mode == "VXLAN" else "Never"}
        return _write_snapshot(directory, self, node1=NODE1 + "/24", node2=NODE2, pod1=POD1,
                               blocks=("10.244.1.0/24", "10.244.2.0/24"), cluster="10.244.0.0/16",
                               tunnel1="10.244.1.1", annotations=annotations, pool=pool)

    def close(self):
        if self.tunnel_end is not None:
            self.tunnel_end.stdin.close()          # its loop ends on EOF
            try:
                self.tunnel_end.wait(5)
            except subprocess.TimeoutExpired:
                self.tunnel_end.kill()
                self.tunnel_end.wait(5)
            self.tunnel_end = None
        for n in self.made:
            sh("ip", "netns", "del", n, check=False)
        self.made = []


TUNNEL_END = """
import fcntl, os, select, socket, struct, subprocess, sys, time
TUNSETIFF, IFF_TUN, IFF_NO_PI = 0x400454CA, 0x0001, 0x1000
local, remote, tunnel_addr, remote_block, lifetime = sys.argv[1:6]
tun = os.open("/dev/net/tun", os.O_RDWR)
fcntl.ioctl(tun, TUNSETIFF, struct.pack("16sH", b"tun0", IFF_TUN | IFF_NO_PI))
for cmd in (["link", "set", "tun0", "mtu", "1480", "up"], ["addr", "add", tunnel_addr + "/32", "dev", "tun0"],
            ["route", "add", remote_block, "dev", "tun0"]):
    subprocess.run(["ip", *cmd], check=True, timeout=10)
outer = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_IPIP)
outer.bind((local, 0))
print("ready", flush=True)
deadline = time.monotonic() + float(lifetime)
while time.monotonic() < deadline:
    readable, _, _ = select.select([tun, outer, sys.stdin], [], [], 0.2)
    if sys.stdin in readable and not sys.stdin.buffer.read1(1):
        break
    if outer in readable:
        packet, (source, _) = outer.recvfrom(65535)     # the kernel accepted its outer header
        if source == remote:                             # as an ipip device with this remote
            os.write(tun, packet[(packet[0] & 15) * 4:])
    if tun in readable:
        inner = os.read(tun, 65535)
        if inner[0] >> 4 == 4:
            outer.sendto(inner, (remote, 0))             # the kernel writes the outer header
"""


def _start_tunnel_end(netns):
    """node-2's IP-in-IP end on a kernel without the ipip device (see the module's text)."""
    proc = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", TUNNEL_END,
                             NODE2, NODE1, "10.244.2.1", "10.244.1.0/24", "300"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ready, _, _ = select.select([proc.stdout], [], [], 15)
    if not ready or proc.stdout.readline().strip() != b"ready":
        proc.kill()
        proc.wait(5)
        raise RuntimeError("the raw-socket tunnel end did not start: " + proc.stderr.read().decode())
    return proc


def _write_snapshot(directory, topo, *, node1, node2, pod1, blocks, cluster, tunnel1, annotations, pool):
    """node-1's NodeConfig, both Nodes (node-2 with its Calico annotations), the pod and the
    pool, for one address family; the directory holding them."""
    docs = [
        {"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": "node-1"},
         "spec": {"nodeAddresses": [node1], "podCIDRs": [blocks[0]], "clusterCIDRs": [cluster],
                  "uplink": {"mac": UPLINK_MAC},
                  "encapsulation": {"vtepMAC": KDP_VTEP, "tunnelAddresses": [tunnel1]},
                  # as Calico's CNI: a permanent neighbour entry for the pod on its veth
                  "neighbours": [{"ip": node2, "mac": topo.node2_mac}, {"ip": pod1, "mac": topo.pod_mac}],
                  "ports": [{"name": "cali0", "kind": "Pod", "pod": "default/pod"},
                            {"name": "uplink", "kind": "Uplink"}]}},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-2", "annotations": annotations},
         "spec": {"podCIDRs": [blocks[1]]},
         "status": {"addresses": [{"type": "InternalIP", "address": node2}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "default", "name": "pod"},
         "spec": {"nodeName": "node-1"}, "status": {"phase": "Running", "podIP": pod1, "podIPs": [{"ip": pod1}]}},
        {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "pool"}, "spec": pool},
    ]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "cluster.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return directory


def _enter(netns):
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = os.open(f"/var/run/netns/{netns}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns failed")
    finally:
        os.close(fd)


class Bridge(threading.Thread):
    """node-1: frames of cali0 and up0 through kdp, and out of the port kdp chose.

    Runs in its own thread, which enters the kdp namespace (setns is per thread)."""

    def __init__(self, topo, snapshot):
        super().__init__(daemon=True)
        self.topo = topo
        self.dp = Dataplane.from_snapshot([snapshot], "node-1")
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.error = None
        self.seen = {"uplink": 0, "cali0": 0}
        self.verdicts = []

    def run(self):
        try:
            _enter(self.topo.kdp)
            socks = {}
            for dev, port in (("cali0", "cali0"), ("up0", "uplink")):
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                s.bind((dev, 0))
                socks[port] = s
            self.ready.set()
            by_fd = {s.fileno(): (port, s) for port, s in socks.items()}
            while not self.stop.is_set():
                readable, _, _ = select.select(list(by_fd), [], [], 0.1)
                for fd in readable:
                    port, s = by_fd[fd]
                    data, meta = s.recvfrom(65535)
                    if meta[2] == PACKET_OUTGOING:
                        continue                # what this loop itself sent
                    self._frame(port, data, socks)
        except BaseException as exc:           # reported by the test, never lost
            self.error = exc
            self.ready.set()

    def _frame(self, port, data, socks):
        self.seen[port] += 1
        frame = Ether(data)
        if port == "cali0" and ARP in frame and frame[ARP].op == 1 and frame[ARP].pdst == GATEWAY:
            # Calico's proxy ARP on the host side of the pod's veth
            reply = Ether(src="ee:ee:ee:ee:ee:ee", dst=frame.src) / ARP(
                op=2, hwsrc="ee:ee:ee:ee:ee:ee", psrc=GATEWAY, hwdst=frame[ARP].hwsrc, pdst=frame[ARP].psrc)
            socks["cali0"].send(raw(reply))
        b = Batch(1)
        b.append(data, ts_ns=time.time_ns(), in_port=self.dp.ports.id_of(port))
        self.dp.process(b)
        for batch in (b, self.dp.extra):
            for i in range(len(batch)):
                m = batch.meta[i]
                v = int(m["verdict"])
                if v in (Verdict.FORWARD, Verdict.REJECT, Verdict.REPLY):
                    out = self.dp.ports.name_of(int(m["out_port"]))
                    if out in socks:
                        socks[out].send(batch.packet(i))
                if batch is b:
                    self.verdicts.append((port, v, int(m["reason"])))


@pytest.fixture(params=["VXLAN", "IPIP", "IPIP-stack"])
def linked(request, tmp_path):
    mode = request.param
    if mode == "IPIP" and not kernel_has("ipip"):
        pytest.skip("this kernel has no IP-in-IP (CONFIG_NET_IPIP is not set): the ipip interop case "
                    "runs where the kernel has it; VXLAN runs everywhere")
    if not kernel_has("vxlan"):
        pytest.fail("the kernel has no vxlan device support (CONFIG_VXLAN)")
    with _running(Topology(mode), tmp_path) as linked_pair:
        yield linked_pair


@contextlib.contextmanager
def _running(topo, tmp_path):
    """The topology with node-1's bridge running on it; both gone afterwards."""
    bridge = None
    try:
        bridge = Bridge(topo, topo.snapshot(tmp_path / "snap"))
        bridge.start()
        assert bridge.ready.wait(10) and bridge.error is None, bridge.error
        yield topo, bridge
    finally:
        if bridge is not None:
            bridge.stop.set()
            bridge.join(5)
        topo.close()


PING = """
import os, select, socket, struct, sys, time
# an ICMP echo over a raw socket (the kernel answers and checks it; no ping binary needed)
def csum(b):
    b += b"\\0" * (len(b) & 1)
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s & 0xFFFF) + (s >> 16); s += s >> 16
    return ~s & 0xFFFF
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
ident = os.getpid() & 0xFFFF
got = 0
for seq in (1, 2):
    body = b"kdp-interop" * 8
    hdr = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
    s.sendto(struct.pack("!BBHHH", 8, 0, csum(hdr + body), ident, seq) + body, (sys.argv[1], 0))
    end = time.time() + 3
    while time.time() < end:
        r, _, _ = select.select([s], [], [], end - time.time())
        if not r:
            break
        pkt, src = s.recvfrom(2048)
        ihl = (pkt[0] & 15) * 4
        t, _c, _k, i, q = struct.unpack("!BBHHH", pkt[ihl:ihl + 8])
        if t == 0 and i == ident and q == seq and src[0] == sys.argv[1] and pkt[ihl + 8:] == body:
            got += 1
            break
print(f"{got} of 2 answered")
sys.exit(0 if got == 2 else 1)
"""


def _ping(netns, target):
    return ns(netns, sys.executable, "-c", PING, target, check=False, timeout=30)


SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 8080)); s.listen(1); s.settimeout(15)
c, peer = s.accept(); c.settimeout(10)
data = b""
while not data.endswith(b"\\n"):
    chunk = c.recv(65536)
    if not chunk: break
    data += chunk
c.sendall(b"echo:" + str(len(data)).encode() + b":" + peer[0].encode() + b"\\n"); c.close()
"""

CLIENT = """
import socket, sys, time
for attempt in range(50):          # the server may still be starting: a refusal comes back fast
    try:
        c = socket.create_connection((sys.argv[1], 8080), timeout=10)
        break
    except ConnectionRefusedError:
        time.sleep(0.1)
else:
    sys.exit("the server never listened")
c.sendall(b"x" * 4000 + b"\\n")      # several segments: the MSS follows the 1450 MTU
print(c.recv(200).decode().strip())
"""


def _tcp(server_ns, server_ip, client_ns, expect_peer):
    server = subprocess.Popen(["ip", "netns", "exec", server_ns, sys.executable, "-c", SERVER, server_ip],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        client = ns(client_ns, sys.executable, "-c", CLIENT, server_ip, check=False, timeout=30)
        server.wait(timeout=20)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(5)
    assert client.returncode == 0, client.stderr
    assert client.stdout.strip() == f"echo:4001:{expect_peer}", (client.stdout, server.stderr.read())


def test_ping_from_a_kdp_pod_to_a_pod_behind_the_kernels_tunnel(linked):
    topo, bridge = linked
    run = _ping(topo.pod, POD2)
    assert run.returncode == 0, run.stdout + run.stderr + f"\nkdp saw {bridge.seen}, verdicts {bridge.verdicts}"
    assert bridge.error is None
    # kdp learned the pod's MAC from its ARP for the gateway
    assert bridge.dp.pipeline.neighbours.get(POD1) is not None


def test_ping_from_the_kernels_side_to_the_kdp_pod(linked):
    topo, bridge = linked
    run = _ping(topo.node2, POD1)
    assert run.returncode == 0, run.stdout + run.stderr + f"\nkdp saw {bridge.seen}, verdicts {bridge.verdicts}"


def test_tcp_from_a_kdp_pod_to_the_kernels_side(linked):
    topo, bridge = linked
    _tcp(topo.node2, POD2, topo.pod, expect_peer=POD1)


def test_tcp_from_the_kernels_side_to_the_kdp_pod(linked):
    topo, bridge = linked
    # node-2 reaches node-1's block from its tunnel device address
    _tcp(topo.pod, POD1, topo.node2, expect_peer="10.244.2.1")


# IPv6: VXLAN over IPv6 between kdp and the kernel's vxlan device, as Calico's vxlan-v6.calico
# (VNI 6096, port 4790). Over IPv6 a UDP checksum is mandatory (RFC 8200 8.1): the kernel
# drops an outer datagram whose checksum is zero or wrong, so this checks kdp's.
NODE1_6, NODE2_6 = "fd00:56::11", "fd00:56::12"
POD1_6, POD2_6 = "fd00:10:244:1::50", "fd00:10:244:2::10"
TUNNEL1_6, TUNNEL2_6 = "fd00:10:244:1::1", "fd00:10:244:2::1"
GATEWAY6 = "fe80::ecee:eeff:feee:eeee"      # Calico's IPv6 gateway for its pods


class Topology6(Topology):
    """The same three namespaces, IPv6 on, the pods' and nodes' IPv6 addresses only."""

    def __init__(self):
        super().__init__("VXLAN6")

    def _build(self):
        for n in (self.pod, self.kdp, self.node2):
            sh("ip", "netns", "add", n)
            self.made.append(n)
            ns(n, "ip", "link", "set", "lo", "up")
        # kdp's namespace only carries frames (AF_PACKET): its own stack stays quiet
        ns(self.kdp, "sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1")
        sh("ip", "-n", self.kdp, "link", "add", "cali0", "type", "veth", "peer", "name", "eth0", "netns", self.pod)
        sh("ip", "-n", self.kdp, "link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", self.node2)
        sh("ip", "-n", self.kdp, "link", "set", "up0", "address", UPLINK_MAC)
        for dev in ("cali0", "up0"):
            ns(self.kdp, "sysctl", "-q", "-w", f"net.ipv6.conf.{dev}.disable_ipv6=1")
            sh("ip", "-n", self.kdp, "link", "set", dev, "up")
            _plain_frames(self.kdp, dev)
        pod, n2 = self.pod, self.node2
        sh("ip", "-n", pod, "link", "set", "eth0", "mtu", "1430", "up")
        _plain_frames(pod, "eth0")
        sh("ip", "-n", pod, "-6", "addr", "add", POD1_6 + "/128", "dev", "eth0", "nodad")
        # as Calico's CNI: the gateway's neighbour entry is written, not asked for
        sh("ip", "-n", pod, "-6", "neigh", "add", GATEWAY6, "lladdr", "ee:ee:ee:ee:ee:ee", "dev", "eth0",
           "nud", "permanent")
        sh("ip", "-n", pod, "-6", "route", "add", "default", "via", GATEWAY6, "dev", "eth0")
        sh("ip", "-n", n2, "link", "set", "eth0", "up")
        _plain_frames(n2, "eth0")
        sh("ip", "-n", n2, "-6", "addr", "add", NODE2_6 + "/64", "dev", "eth0", "nodad")
        sh("ip", "-n", n2, "-6", "addr", "add", POD2_6 + "/128", "dev", "lo")
        sh("ip", "-n", n2, "-6", "neigh", "add", NODE1_6, "lladdr", UPLINK_MAC, "dev", "eth0", "nud", "permanent")
        sh("ip", "-n", n2, "link", "add", "vxlan-v6.calico", "type", "vxlan", "id", "6096", "dstport", "4790",
           "local", NODE2_6, "dev", "eth0", "nolearning")
        sh("ip", "-n", n2, "link", "set", "vxlan-v6.calico", "mtu", "1430", "up")
        sh("ip", "-n", n2, "-6", "addr", "add", TUNNEL2_6 + "/128", "dev", "vxlan-v6.calico", "nodad")
        sh("ip", "-n", n2, "-6", "neigh", "add", TUNNEL1_6, "lladdr", KDP_VTEP, "dev", "vxlan-v6.calico",
           "nud", "permanent")
        sh("ip", "-n", n2, "-6", "route", "add", "fd00:10:244:1::/64", "via", TUNNEL1_6, "dev", "vxlan-v6.calico",
           "onlink")
        sh("bridge", "-n", n2, "fdb", "add", KDP_VTEP, "dev", "vxlan-v6.calico", "dst", NODE1_6)
        self.vtep2 = mac_of(n2, "vxlan-v6.calico")
        self.node2_mac = mac_of(n2, "eth0")
        self.pod_mac = mac_of(pod, "eth0")

    def snapshot(self, directory):
        annotations = {"projectcalico.org/IPv6Address": NODE2_6 + "/64",
                       "projectcalico.org/IPv6VXLANTunnelAddr": TUNNEL2_6,
                       "projectcalico.org/VXLANTunnelMACAddrV6": self.vtep2}
        pool = {"cidr": "fd00:10:244::/48", "blockSize": 122, "vxlanMode": "Always", "ipipMode": "Never"}
        return _write_snapshot(directory, self, node1=NODE1_6 + "/64", node2=NODE2_6, pod1=POD1_6,
                               blocks=("fd00:10:244:1::/64", "fd00:10:244:2::/64"), cluster="fd00:10:244::/48",
                               tunnel1=TUNNEL1_6, annotations=annotations, pool=pool)


@pytest.fixture
def linked6(tmp_path):
    if not kernel_has("vxlan"):
        pytest.fail("the kernel has no vxlan device support (CONFIG_VXLAN)")
    with _running(Topology6(), tmp_path) as linked_pair:
        yield linked_pair


PING6 = """
import os, select, socket, struct, sys, time
# ICMPv6 echo over a raw socket: the kernel fills in the checksum (RFC 3542) and checks
# the answer's
s = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
ident, got = os.getpid() & 0xFFFF, 0
for seq in (1, 2):
    body = b"kdp-interop6" * 8
    s.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, seq) + body, (sys.argv[1], 0))
    end = time.time() + 3
    while time.time() < end:
        r, _, _ = select.select([s], [], [], end - time.time())
        if not r:
            break
        pkt, src = s.recvfrom(2048)
        t, _c, _k, i, q = struct.unpack("!BBHHH", pkt[:8])
        if t == 129 and i == ident and q == seq and src[0] == sys.argv[1] and pkt[8:] == body:
            got += 1
            break
print(f"{got} of 2 answered")
sys.exit(0 if got == 2 else 1)
"""


def test_ipv6_ping_both_ways_through_vxlan_over_ipv6(linked6):
    topo, bridge = linked6
    for netns, target in ((topo.pod, POD2_6), (topo.node2, POD1_6)):
        run = ns(netns, sys.executable, "-c", PING6, target, check=False, timeout=30)
        assert run.returncode == 0, run.stdout + run.stderr + f"\nkdp saw {bridge.seen}, verdicts {bridge.verdicts}"
    assert bridge.error is None


def test_ipv6_tcp_both_ways_through_vxlan_over_ipv6(linked6):
    topo, bridge = linked6
    _tcp(topo.node2, POD2_6, topo.pod, expect_peer=POD1_6)
    # node-2 reaches node-1's block from its tunnel device's address
    _tcp(topo.pod, POD1_6, topo.node2, expect_peer=TUNNEL2_6)
