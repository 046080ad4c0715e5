"""Captures as people take them: `tcpdump -i any` (Linux cooked SLL / SLL2) holds every
packet once per interface it crossed, with its direction; pcapng holds several interfaces.
A packet the node sent is its output, not its input: one DNS lookup is one flow.

The packets are built with scapy (the independent reference for the bytes the node sends),
and one test takes a real `tcpdump -i any` capture of a DNS lookup through a kernel that
DNATs it (network namespaces, nftables) and checks that kdp transmits exactly what the
kernel transmitted."""
import json
import subprocess
import sys
import time

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import CookedLinux, CookedLinuxV2, Ether
from scapy.packet import raw
from scapy.utils import PcapWriter, rdpcap

from kdp import Batch
from kdp.dataplane import Dataplane
from kdp.errors import KdpError
from kdp.io import open_capture, read_packets
from kdp.io.capture import ifindex_ports, interface_indexes
from kdp.reasons import Reason, Stage
from kdp.replay import replay

from kdptest import NG, write_snapshot

POD, BACKEND, VIP, NODE_IP, NODE2_IP = "10.244.1.5", "10.244.2.3", "10.96.0.10", "192.168.56.11", "192.168.56.12"
LO_IDX, ETH0_IDX, CALI_IDX = 1, 2, 7
CALI = "cali1a2b3c4d5e6"
HOST, BROADCAST, MULTICAST, OTHERHOST, OUTGOING = 0, 1, 2, 3, 4
MAC = b"\x02\x00\x00\x00\x00\x01"


def cluster_objects(ports=True):
    # dns disabled: the node these captures come from forwards DNS to CoreDNS through
    # kube-proxy's DNAT, and kdp is checked against that node
    spec = {"nodeAddresses": [NODE_IP], "podCIDRs": ["10.244.1.0/24"],
            "clusterCIDRs": ["10.244.0.0/16"], "serviceCIDRs": ["10.96.0.0/16"],
            "dns": {"enabled": False}}
    if ports:
        spec["ports"] = [{"name": "uplink", "kind": "Uplink", "interface": "eth0"},
                         {"name": "client", "kind": "Pod", "pod": "shop/client", "interface": CALI}]
    return [
        {"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": "node-1"},
         "spec": spec},
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-2"},
         "spec": {"podCIDRs": ["10.244.2.0/24"]},
         "status": {"addresses": [{"type": "InternalIP", "address": NODE2_IP}]}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "shop", "name": "client"},
         "spec": {"nodeName": "node-1"}, "status": {"phase": "Running", "podIP": POD}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"namespace": "kube-system", "name": "kube-dns"},
         "spec": {"clusterIP": VIP, "clusterIPs": [VIP],
                  "ports": [{"name": "dns", "protocol": "UDP", "port": 53, "targetPort": 53}]}},
        {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
         "metadata": {"namespace": "kube-system", "name": "kube-dns-a",
                      "labels": {"kubernetes.io/service-name": "kube-dns"}},
         "addressType": "IPv4", "ports": [{"name": "dns", "protocol": "UDP", "port": 53}],
         "endpoints": [{"addresses": [BACKEND], "nodeName": "node-2"}]},
    ]


@pytest.fixture
def snapshot(tmp_path):
    return write_snapshot(tmp_path / "snap", cluster_objects())


def dns_lookup():
    """The four copies `tcpdump -i any` records of one lookup: the query coming in on the
    pod's veth, leaving on eth0 (DNAT to the CoreDNS pod, TTL - 1), the answer coming in on
    eth0, leaving on the veth (reverse-translated). Returns [(ifindex, pkttype, IP bytes)]."""
    name = "web.shop.svc.cluster.local"
    query = DNS(id=0x1234, rd=1, qd=DNSQR(qname=name))
    answer = DNS(id=0x1234, qr=1, aa=1, rd=1, ra=1, qd=DNSQR(qname=name),
                 an=DNSRR(rrname=name, ttl=5, rdata="10.96.0.20"))
    q = UDP(sport=38786, dport=53) / query
    a = UDP(sport=53, dport=38786) / answer
    return [(CALI_IDX, HOST, raw(IP(src=POD, dst=VIP, ttl=64, id=7) / q)),
            (ETH0_IDX, OUTGOING, raw(IP(src=POD, dst=BACKEND, ttl=63, id=7) / q)),
            (ETH0_IDX, HOST, raw(IP(src=BACKEND, dst=POD, ttl=63, id=9) / a)),
            (CALI_IDX, OUTGOING, raw(IP(src=VIP, dst=POD, ttl=62, id=9) / a))]


def write_cooked(path, records, version=2):
    """A classic pcap of Linux cooked captures (SLL2: linktype 276, SLL: 113), by scapy."""
    w = PcapWriter(str(path), linktype=276 if version == 2 else 113, sync=True)
    for i, (ifindex, ptype, ip) in enumerate(records):
        if version == 2:
            hdr = CookedLinuxV2(proto=0x0800, ifindex=ifindex, pkttype=ptype, lladdrtype=1,
                                lladdrlen=6, src=MAC)
        else:
            hdr = CookedLinux(pkttype=ptype, lladdrtype=1, lladdrlen=6, src=MAC, proto=0x0800)
        p = hdr / IP(ip)
        p.time = 1_700_000_000 + i / 1000
        w.write(p)
    w.close()
    return path


def write_links(path):
    path.write_text(json.dumps([{"ifindex": LO_IDX, "ifname": "lo"}, {"ifindex": ETH0_IDX, "ifname": "eth0"},
                                {"ifindex": 5, "ifname": "docker0"}, {"ifindex": CALI_IDX, "ifname": CALI}]))
    return path


def log_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def ip_bytes_written(path):
    """The IP packets of a kdp output capture (raw IP link type)."""
    return [raw(p) for p in rdpcap(str(path))]


def test_one_dns_lookup_seen_on_the_pods_veth_and_the_uplink_is_one_flow(tmp_path, snapshot):
    records = dns_lookup()
    cap = write_cooked(tmp_path / "any.pcap", records)
    out, log = tmp_path / "out.pcap", tmp_path / "v.jsonl"
    result = replay(cap, output=out, cluster=[snapshot], node="node-1", log=log,
                    links=write_links(tmp_path / "links.json"))
    rows = {(s.label, r.label): c for s, r, c in result.rows()}
    assert rows == {("rx", "captured_outgoing"): 2, ("tx", "forwarded"): 2}
    assert result.flows["inserts"] == 1 and result.flows["flows"] == 1
    got = [(e["verdict"], e["reason"], e["in_port"], e["out_port"], e["ct"], e["service"]) for e in log_lines(log)]
    assert got == [("forward", "forwarded", "client", "uplink", "new", "kube-system/kube-dns:dns"),
                   ("drop", "captured_outgoing", None, None, None, None),
                   ("forward", "forwarded", "uplink", "client", "reply", "kube-system/kube-dns:dns"),
                   ("drop", "captured_outgoing", None, None, None, None)]
    # what kdp transmits is, byte for byte, what the node sent (the capture's outgoing copies)
    assert ip_bytes_written(out) == [records[1][2], records[3][2]]


def test_sll_v1_capture_uses_direction_and_takes_ports_by_source_address(tmp_path, snapshot):
    records = dns_lookup()
    cap = write_cooked(tmp_path / "any1.pcap", records, version=1)
    log = tmp_path / "v.jsonl"
    result = replay(cap, output=tmp_path / "o.pcap", cluster=[snapshot], node="node-1", log=log)
    assert result.flows["inserts"] == 1
    assert [(e["reason"], e["in_port"]) for e in log_lines(log)] == [
        ("forwarded", "client"), ("captured_outgoing", None), ("forwarded", "uplink"), ("captured_outgoing", None)]
    assert ip_bytes_written(tmp_path / "o.pcap") == [records[1][2], records[3][2]]


def test_interface_index_names_the_port_not_the_source_address(tmp_path, snapshot):
    """A packet from the pod's address that came in on eth0 entered from the uplink: with
    the interface list, the index decides; without it, the source address does."""
    records = [(ETH0_IDX, HOST, dns_lookup()[0][2])]
    cap = write_cooked(tmp_path / "spoof.pcap", records)
    with_links, without = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    replay(cap, cluster=[snapshot], node="node-1", log=with_links, links=write_links(tmp_path / "l.json"))
    replay(cap, cluster=[snapshot], node="node-1", log=without)
    assert log_lines(with_links)[0]["in_port"] == "uplink"
    assert log_lines(without)[0]["in_port"] == "client"


def test_interfaces_no_port_knows_are_left_to_the_source_address(tmp_path, snapshot):
    dp = Dataplane.from_snapshot([snapshot], "node-1")
    mapping = ifindex_ports(dp.ports, {1: "lo", 2: "eth0", 5: "docker0", 7: CALI, 9: "any"})
    assert mapping == {1: dp.ports.get("host"), 2: dp.ports.get("uplink"), 7: dp.ports.get("client")}
    assert "docker0" not in dp.ports


def test_all_directions_takes_the_outgoing_copies_as_input(tmp_path, snapshot):
    cap = write_cooked(tmp_path / "any.pcap", dns_lookup())
    log = tmp_path / "v.jsonl"
    result = replay(cap, cluster=[snapshot], node="node-1", log=log, all_directions=True,
                    links=write_links(tmp_path / "links.json"))
    assert int(result.counters[Stage.RX, Reason.CAPTURED_OUTGOING]) == 0
    assert int(result.counters.sum()) == 4
    lines = log_lines(log)
    # the outgoing copy entered nowhere the capture says: its port comes from its source
    assert lines[1]["in_port"] == "client" and lines[1]["verdict"] == "forward"
    # each outgoing copy is a flow of its own, as it would be in Linux conntrack: the
    # translated query (pod -> backend) and answer (VIP -> pod) match neither the flow's
    # original tuple (pod -> VIP) nor its reply tuple (backend -> pod)
    assert result.flows["inserts"] == 3


@pytest.mark.parametrize("ptype, reason", [(HOST, "forwarded"), (BROADCAST, "forwarded"),
                                           (MULTICAST, "forwarded"), (OTHERHOST, "otherhost"),
                                           (OUTGOING, "captured_outgoing"), (5, "captured_outgoing")])
def test_packet_type_decides_what_is_input(tmp_path, snapshot, ptype, reason):
    ip = raw(IP(src="198.51.100.7", dst=NODE2_IP) / UDP(sport=1000, dport=2000))
    for version in (1, 2):
        cap = write_cooked(tmp_path / f"t{version}.pcap", [(ETH0_IDX, ptype, ip)], version=version)
        log = tmp_path / f"t{version}.jsonl"
        result = replay(cap, cluster=[snapshot], node="node-1", log=log)
        assert log_lines(log)[0]["reason"] == reason
        assert int(result.counters.sum()) == 1


def test_loopback_index_is_the_host(tmp_path, snapshot):
    ip = raw(IP(src=NODE_IP, dst=NODE_IP) / UDP(sport=1000, dport=2000))
    cap = write_cooked(tmp_path / "lo.pcap", [(LO_IDX, HOST, ip)])
    log = tmp_path / "v.jsonl"
    replay(cap, cluster=[snapshot], node="node-1", log=log)
    assert log_lines(log)[0]["in_port"] == "host"


def pcapng_of(records, names, linktype=1, flags=True):
    """A pcapng with one IDB per name; records (iface, direction 1 in / 2 out, frame)."""
    ng = NG().shb()
    for name in names:
        ng.idb(linktype=linktype, name=name, tsresol=9)
    for i, (ifid, direction, data) in enumerate(records):
        ng.epb(ifid, 1_700_000_000 * 10**9 + i * 10**6, data, flags=direction if flags else None)
    return ng


def test_pcapng_with_several_interfaces_maps_names_and_honours_epb_direction(tmp_path, snapshot):
    eth = lambda ip: raw(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(ip))
    order = {CALI_IDX: 0, ETH0_IDX: 1}
    records = [(order[idx], 2 if ptype == OUTGOING else 1, eth(ip)) for idx, ptype, ip in dns_lookup()]
    cap = pcapng_of(records, [CALI, "eth0"]).save(tmp_path / "two.pcapng")
    log = tmp_path / "v.jsonl"
    result = replay(cap, cluster=[snapshot], node="node-1", log=log, output=tmp_path / "o.pcapng")
    assert result.flows["inserts"] == 1
    assert [(e["reason"], e["in_port"], e["out_port"]) for e in log_lines(log)] == [
        ("forwarded", "client", "uplink"), ("captured_outgoing", None, None),
        ("forwarded", "uplink", "client"), ("captured_outgoing", None, None)]


def test_pcapng_any_interface_is_no_port_and_sll2_indexes_name_the_ports(tmp_path, snapshot):
    recs = [(0, None, raw(CookedLinuxV2(proto=0x0800, ifindex=idx, pkttype=pt, lladdrtype=1,
                                        lladdrlen=6, src=MAC) / IP(ip))) for idx, pt, ip in dns_lookup()]
    ng = NG().shb().idb(linktype=276, name="any", tsresol=9)
    for i, (_ifid, _d, data) in enumerate(recs):
        ng.epb(0, 1_700_000_000 * 10**9 + i, data)
    cap = ng.save(tmp_path / "any.pcapng")
    log = tmp_path / "v.jsonl"
    dp = Dataplane.from_snapshot([snapshot], "node-1")
    result = replay(cap, dataplane=dp, log=log, links=write_links(tmp_path / "links.json"))
    assert "any" not in dp.ports
    assert result.flows["inserts"] == 1
    assert [e["in_port"] for e in log_lines(log)] == ["client", None, "uplink", None]


def test_verdict_log_names_ports_created_while_the_capture_is_read(tmp_path, snapshot):
    """The log is opened before the reader meets the interface "tap9" (no port by that
    name until then): its lines still name it."""
    frame = raw(Ether() / IP(src="198.51.100.7", dst=NODE2_IP) / UDP(sport=1, dport=2))
    cap = pcapng_of([(0, 1, frame), (1, 1, frame), (1, 1, frame)], ["eth0", "tap9"]).save(tmp_path / "n.pcapng")
    dp = Dataplane.from_snapshot([snapshot], "node-1")
    with open(tmp_path / "v.jsonl", "wb") as f:
        vlog = dp.verdict_log(f, 8)
        reader = open_capture(cap, ports=dp.ports)
        b = Batch(8)
        while reader.fill(b):
            dp.process(b, vlog)
            vlog.write(b)
    assert [e["in_port"] for e in log_lines(tmp_path / "v.jsonl")] == ["uplink", "tap9", "tap9"]
    # and through replay (a new interface in the second batch)
    log = tmp_path / "r.jsonl"
    replay(cap, cluster=[snapshot], node="node-1", log=log, batch_size=1)
    assert [e["in_port"] for e in log_lines(log)] == ["uplink", "tap9", "tap9"]


# ------------------------------------------------------------------ the interface list

def test_interface_list_is_read_from_ip_link_json_and_text(tmp_path):
    j = write_links(tmp_path / "l.json")
    assert interface_indexes(j) == {1: "lo", 2: "eth0", 5: "docker0", 7: CALI}
    t = tmp_path / "l.txt"
    t.write_text("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN mode DEFAULT\n"
                 "    link/loopback 00:00:00:00:00:00 brd 00:00:00:00:00:00\n"
                 f"7: {CALI}@if3: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue\n"
                 "    link/ether ee:ee:ee:ee:ee:ee brd ff:ff:ff:ff:ff:ff link-netns pod\n"
                 "2: eth0: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500\n")
    assert interface_indexes(t) == {1: "lo", 7: CALI, 2: "eth0"}


@pytest.mark.parametrize("text, where", [("[{\"ifindex\": 0, \"ifname\": \"x\"}]", "[0]"),
                                         ("[{\"ifname\": \"x\"}]", "[0]"), ("[1,", "JSON"),
                                         ("lo up\n", ":1:")])
def test_bad_interface_list_is_an_error_naming_the_file(tmp_path, text, where):
    path = tmp_path / "links"
    path.write_text(text)
    with pytest.raises(KdpError, match=f"{path}.*{__import__('re').escape(where)}"):
        interface_indexes(path)


# ------------------------------------------------------------------ standard input and output

def cli(*args, **kw):
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    return subprocess.run([sys.executable, "-m", "kdp.cli", *map(str, args)], **kw)


def test_replay_reads_standard_input_and_writes_standard_output(tmp_path, snapshot):
    records = dns_lookup()
    cap = write_cooked(tmp_path / "any.pcap", records)
    common = ["--cluster", snapshot, "--node", "node-1", "--no-progress"]
    r = cli("replay", "-", "-o", "-", "--log", tmp_path / "v.jsonl", "--json", *common,
            stdin=open(cap, "rb"))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "stdout.pcap"
    out.write_bytes(r.stdout)
    assert ip_bytes_written(out) == [records[1][2], records[3][2]]
    summary = json.loads(r.stderr)          # stdout holds the capture: the summary is on stderr
    assert summary["packets_in"] == 4 and summary["packets_out"] == 2
    r2 = cli("replay", cap, "--log", "-", *common)
    assert r2.returncode == 0, r2.stderr
    assert [json.loads(x)["reason"] for x in r2.stdout.decode().splitlines()] == [
        "forwarded", "captured_outgoing", "forwarded", "captured_outgoing"]


def test_stdin_is_streamed_across_reads_that_split_records(tmp_path, snapshot):
    """A pipe that delivers a pcapng (two sections, named interfaces) a few bytes at a time
    gives the same verdicts as the file."""
    eth = raw(Ether() / IP(src="198.51.100.7", dst=NODE2_IP) / UDP(sport=1, dport=2) / (b"x" * 300))
    ng = pcapng_of([(0, 1, eth), (1, 1, eth), (1, 2, eth)], ["eth0", "tap9"])
    ng.shb(endian=">").idb(name="tap7").epb(0, 5, eth)
    cap = ng.save(tmp_path / "s.pcapng")
    common = ["--cluster", snapshot, "--node", "node-1", "--log", "-"]
    want = cli("replay", cap, *common)
    proc = subprocess.Popen([sys.executable, "-m", "kdp.cli", "replay", "-", *map(str, common)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    data = cap.read_bytes()
    for i in range(0, len(data), 7):
        proc.stdin.write(data[i:i + 7])
        proc.stdin.flush()
        if i % 700 == 0:
            time.sleep(0.01)
    proc.stdin.close()
    out, err = proc.stdout.read(), proc.stderr.read()
    assert proc.wait(timeout=60) == 0, err
    assert out == want.stdout and len(out.splitlines()) == 4
    assert [json.loads(x)["in_port"] for x in out.decode().splitlines()] == ["uplink", "tap9", None, "tap7"]


def test_truncated_stream_keeps_complete_packets_and_warns(tmp_path, snapshot):
    cap = write_cooked(tmp_path / "any.pcap", dns_lookup())
    data = cap.read_bytes()[:-10]
    r = cli("replay", "-", "--cluster", snapshot, "--node", "node-1", "--json", input=data)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["packets_in"] == 3 and "ends inside a packet record" in summary["warnings"][0]


def test_terminal_as_standard_input_or_output_is_refused(tmp_path, snapshot):
    import os
    import pty
    master, slave = pty.openpty()
    try:
        r = cli("replay", "-", stdin=slave)
        assert r.returncode == 2 and b"standard input is a terminal" in r.stderr
        cap = write_cooked(tmp_path / "any.pcap", dns_lookup())
        r = cli("replay", cap, "-o", "-", stdout=slave, stderr=subprocess.PIPE)
        assert r.returncode == 2 and b"standard output is a terminal" in r.stderr
    finally:
        os.close(master)
        os.close(slave)


def test_stdout_for_both_capture_and_log_is_refused(tmp_path, snapshot):
    cap = write_cooked(tmp_path / "any.pcap", dns_lookup())
    r = cli("replay", cap, "-o", "-", "--log", "-")
    assert r.returncode == 2 and b"same file" in r.stderr and b"Traceback" not in r.stderr


def test_fifo_capture_waits_for_its_writer_and_ctrl_c_ends_the_wait(tmp_path, snapshot):
    """A FIFO is read as tcpdump -r reads one: kdp waits for the writer (mkfifo f;
    kdp replay f & tcpdump -w f), and SIGINT ends the wait cleanly."""
    import os
    import signal
    fifo = tmp_path / "cap.fifo"
    os.mkfifo(fifo)
    args = [sys.executable, "-m", "kdp.cli", "replay", str(fifo), "--cluster", str(snapshot),
            "--node", "node-1", "--json"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(0.5)
    assert proc.poll() is None                  # waiting for a writer
    with open(fifo, "wb") as w:
        w.write(write_cooked(tmp_path / "any.pcap", dns_lookup()).read_bytes())
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json.loads(out)["packets_in"] == 4
    # (SIGINT as a terminal delivers it: a runner started in the background by a shell
    # passes SIGINT on ignored, and a program that inherits it ignored keeps ignoring it)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 30
    while not _has_open(proc.pid, fifo) and time.monotonic() < deadline:
        time.sleep(0.02)                        # until kdp itself (not the interpreter start) waits
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:         # (a failed wait leaves no process behind)
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130 and b"Traceback" not in err


def _has_open(pid, path):
    import os
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == str(path):
                return True
        except OSError:
            pass
    return False


# ------------------------------------------------------------------ a real kernel

NETNS_SCRIPT = r"""
set -e
S=$1; OUT=$2
ip netns add ${S}n; ip netns add ${S}p; ip netns add ${S}u
ip link add %(cali)s netns ${S}n type veth peer name eth0 netns ${S}p
ip link add eth0 netns ${S}n type veth peer name eth0 netns ${S}u
for ns in n p u; do ip -n ${S}$ns link set lo up; done
ip -n ${S}n link set %(cali)s up; ip -n ${S}n link set eth0 up
ip -n ${S}p link set eth0 up; ip -n ${S}u link set eth0 up
ip -n ${S}n addr add %(node)s/24 dev eth0
ip -n ${S}u addr add %(node2)s/24 dev eth0
ip -n ${S}u addr add %(backend)s/32 dev eth0
ip -n ${S}p addr add %(pod)s/32 dev eth0
ip -n ${S}p route add 169.254.1.1 dev eth0
ip -n ${S}p route add default via 169.254.1.1 dev eth0
ip -n ${S}n route add %(pod)s/32 dev %(cali)s
ip -n ${S}n route add default via %(node2)s
ip -n ${S}u route add 10.244.1.0/24 via %(node)s
ip netns exec ${S}n sysctl -qw net.ipv4.ip_forward=1
ip netns exec ${S}n sysctl -qw net.ipv4.conf.%(cali)s.proxy_arp=1
echo 'table ip kp { chain pre { type nat hook prerouting priority -100; ip daddr %(vip)s udp dport 53 dnat to %(backend)s:53; }; }' | ip netns exec ${S}n nft -f -
ip -n ${S}n -j link > $OUT/links.json
"""

RESPONDER = ("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('%s',53));"
             "s.settimeout(10)\nd,a=s.recvfrom(2000);s.sendto(d[:2]+b'\\x81\\x80'+d[4:],a)" % BACKEND)
CLIENT = ("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(5)\n"
          "s.sendto(bytes.fromhex('123401000001000000000000037765620000010001'),('%s',53));"
          "print(s.recvfrom(2000)[1])" % VIP)


def test_real_tcpdump_any_capture_replays_to_what_the_kernel_sent(tmp_path, snapshot):
    """A pod's DNS lookup through a node whose kernel DNATs it (nftables, as kube-proxy
    does), captured with `tcpdump -i any`: kdp's transmitted packets are the kernel's
    outgoing copies, byte for byte, and the lookup is one flow."""
    import os
    ns = f"kdpt{os.getpid()}x"
    names = [ns + s for s in "npu"]
    subs = dict(cali=CALI, node=NODE_IP, node2=NODE2_IP, backend=BACKEND, pod=POD, vip=VIP)
    responder = dump = None
    try:
        subprocess.run(["bash", "-c", NETNS_SCRIPT % subs, "x", ns, str(tmp_path)], check=True,
                       capture_output=True, timeout=60)
        responder = subprocess.Popen(["ip", "netns", "exec", names[2], sys.executable, "-c", RESPONDER])
        cap = tmp_path / "any.pcap"
        dump_err = tmp_path / "tcpdump.err"
        with open(dump_err, "wb") as err:
            dump = subprocess.Popen(["ip", "netns", "exec", names[0], "tcpdump", "-i", "any", "-U",
                                     "--immediate-mode", "-c", "4", "-w", str(cap), "udp", "port", "53"], stderr=err)
        deadline = time.monotonic() + 10
        while b"listening" not in dump_err.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.05)
        client = subprocess.run(["ip", "netns", "exec", names[1], sys.executable, "-c", CLIENT],
                                capture_output=True, timeout=30)
        assert client.returncode == 0, client.stderr
        dump.wait(timeout=20)               # -c 4: it stops after the lookup's four copies
        responder.wait(timeout=10)
    finally:
        for proc in (dump, responder):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
        for name in names:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    packets = rdpcap(str(cap))
    assert len(packets) == 4 and all(CookedLinuxV2 in p for p in packets)
    sent = [no_udp_checksum(raw(p[IP])) for p in packets if p[CookedLinuxV2].pkttype == OUTGOING]
    out, log = tmp_path / "out.pcap", tmp_path / "v.jsonl"
    result = replay(cap, output=out, cluster=[snapshot], node="node-1", log=log,
                    links=tmp_path / "links.json")
    assert result.flows["inserts"] == 1
    assert [(e["reason"], e["in_port"]) for e in log_lines(log)] == [
        ("forwarded", "client"), ("captured_outgoing", None), ("forwarded", "uplink"), ("captured_outgoing", None)]
    assert [no_udp_checksum(b) for b in ip_bytes_written(out)] == sent


def no_udp_checksum(ip):
    """The packet with its UDP checksum zeroed: veth offloads transmit checksums, so the
    capture holds the partial (pseudo-header) sums the kernel keeps for the device to finish,
    and it updates those by other rules than a full checksum; nobody completes them. Every
    other byte, the IP header checksum included, is compared."""
    ihl = (ip[0] & 15) * 4
    return ip[:ihl + 6] + b"\0\0" + ip[ihl + 8:]
