"""Multi-node replay: a Service flow from a pod on node-1 to its backend on node-2 and back,
followed through both nodes; the verdict log says at which node each step happened."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw, raw

from kdp.io.capture import read_packets, write_packets
from kdp.multinode import MAX_HOPS, replay_nodes
from kdp.reasons import Reason, Stage, Verdict

from kdptest import (CLIENT, NODE1, NODE2, WEB2, assert_checksums, base_objects, endpoint,
                     endpoint_slice, port, service, write_snapshot)

ROOT = Path(__file__).resolve().parents[1]
CALICO = "crd.projectcalico.org/v1"


def node2_config(**spec):
    base = {"nodeAddresses": [NODE2], "clusterCIDRs": ["10.244.0.0/16"], "serviceCIDRs": ["10.96.0.0/16"],
            "masquerade": {"snatPortRange": "32768-60999"}}
    base.update(spec)
    return {"apiVersion": "kdp.dev/v1alpha1", "kind": "NodeConfig", "metadata": {"name": "node-2"}, "spec": base}


def snapshot(tmp_path, *extra, mode="ipipMode"):
    objs = base_objects() + [
        node2_config(),
        {"apiVersion": CALICO, "kind": "IPPool", "metadata": {"name": "pool"},
         "spec": {"cidr": "10.244.0.0/16", mode: "Always"}},
        service("web", [port("http", 80, 8080)]),
        endpoint_slice("web", [("http", "TCP", 8080)], [endpoint(WEB2, "node-2")]),
        *extra]
    return write_snapshot(tmp_path / "snap", objs)


def capture(tmp_path, packets):
    path = tmp_path / "in.pcap"
    write_packets(path, [(1_700_000_000 * 10**9 + k * 1000, raw(Ether(src="02:00:00:00:00:50", dst="ee:ee:ee:ee:ee:ee") / p))
                         for k, p in enumerate(packets)])
    return path


def lines(path):
    return [json.loads(l) for l in Path(path).read_text().splitlines()]


@pytest.mark.parametrize("mode, tunnel", [("ipipMode", "ipip"), ("vxlanMode", "vxlan")])
def test_service_flow_is_followed_through_both_nodes_and_back(tmp_path, mode, tunnel):
    snap = snapshot(tmp_path, mode=mode)
    cap = capture(tmp_path, [
        IP(src=CLIENT, dst="10.96.0.10") / TCP(sport=41000, dport=80, flags="S", seq=1),
        IP(src=WEB2, dst=CLIENT) / TCP(sport=8080, dport=41000, flags="SA", seq=9, ack=2),
        IP(src=CLIENT, dst="10.96.0.10") / TCP(sport=41000, dport=80, flags="A", seq=2, ack=10)])
    out, log = tmp_path / "out.pcapng", tmp_path / "log.jsonl"
    result = replay_nodes(cap, output=out, cluster=[snap], nodes=["node-1", "node-2"], log=log)
    steps = [(l["index"], l["node"], l["hop"], l["verdict"], l["reason"], l["out_port"]) for l in lines(log)]
    encap = f"forwarded_{tunnel}"
    assert steps == [
        (0, "node-1", 0, "forward", encap, "uplink"),          # service, DNAT, tunnel
        (0, "node-2", 1, "forward", "forwarded", "shop/web-2"),  # decap, delivery
        (1, "node-2", 0, "forward", encap, "uplink"),          # the backend answers
        (1, "node-1", 1, "forward", "forwarded", "shop/client"),  # decap, reverse NAT, delivery
        (2, "node-1", 0, "forward", encap, "uplink"),
        (2, "node-2", 1, "forward", "forwarded", "shop/web-2")]
    log_lines = lines(log)
    first = log_lines[0]
    assert first["tunnel"]["type"] == tunnel and (first["tunnel"]["src"], first["tunnel"]["dst"]) == (NODE1, NODE2)
    assert (first["dst"], first["dport"], first["service"]) == (WEB2, 8080, "shop/web:http")
    assert log_lines[1]["decap"] == tunnel and log_lines[1]["dst"] == WEB2
    back = log_lines[3]
    assert (back["src"], back["sport"], back["ct"]) == ("10.96.0.10", 80, "reply")   # reverse NAT on node-1
    # counted once each where they ended; each node counts what it processed
    assert result.packets_in == 3 and int(result.counters.sum()) == 3
    assert int(result.counters[Stage.TX, Reason.FORWARDED]) == 3
    assert result.nodes["node-1"]["packets"] == 3 and result.nodes["node-2"]["packets"] == 3
    assert result.transits == 3
    written = read_packets(out)
    assert len(written) == result.packets_out == 6
    for p in written:
        assert_checksums(p.data)


def test_outside_client_to_a_nodeport_enters_that_node_and_the_reply_goes_back_out(tmp_path):
    snap = snapshot(tmp_path, service("np", [port("http", 80, 8080, node_port=30080)], cluster_ips=("10.96.0.20",),
                                      type="NodePort"),
                    endpoint_slice("np", [("http", "TCP", 8080)], [endpoint(WEB2, "node-2")]))
    cap = capture(tmp_path, [IP(src="198.51.100.7", dst=NODE1) / TCP(sport=5000, dport=30080, flags="S")])
    log = tmp_path / "log.jsonl"
    replay_nodes(cap, cluster=[snap], nodes=["node-1", "node-2"], log=log)
    steps = [(l["node"], l["hop"], l["reason"], l["src"], l["dst"]) for l in lines(log)]
    assert steps[0][:3] == ("node-1", 0, "forwarded_ipip") and steps[0][3] == NODE1      # masqueraded
    assert steps[1][:3] == ("node-2", 1, "forwarded") and steps[1][4] == WEB2


def test_ttl_running_out_on_the_second_node_is_answered_back_through_the_first(tmp_path):
    snap = snapshot(tmp_path)
    cap = capture(tmp_path, [IP(src=CLIENT, dst=WEB2, ttl=2) / UDP(sport=33434, dport=33434)])
    log = tmp_path / "log.jsonl"
    result = replay_nodes(cap, cluster=[snap], nodes=["node-1", "node-2"], log=log)
    steps = [(l["node"], l["hop"], l["verdict"], l["reason"], l["out_port"]) for l in lines(log)]
    assert steps == [("node-1", 0, "forward", "forwarded_ipip", "uplink"),
                     ("node-2", 1, "reject", "ttl_exceeded", "uplink"),       # time exceeded, tunnelled back
                     ("node-1", 2, "forward", "forwarded", "shop/client")]
    # the packet ended where it was answered
    assert int(result.counters[Stage.ROUTE, Reason.TTL_EXCEEDED]) == 1 and int(result.counters.sum()) == 1


def test_a_routing_loop_between_nodes_ends_at_the_hop_limit(tmp_path):
    loop = "10.244.9.0/24"
    snap = snapshot(tmp_path)
    objs = base_objects(blockAffinities=[{"node": "node-2", "cidr": loop}]) + [
        node2_config(blockAffinities=[{"node": "node-1", "cidr": loop}]),
        {"apiVersion": CALICO, "kind": "IPPool", "metadata": {"name": "pool"},
         "spec": {"cidr": "10.244.0.0/16", "ipipMode": "Always"}}]
    snap = write_snapshot(tmp_path / "loop", objs)
    cap = capture(tmp_path, [IP(src=CLIENT, dst="10.244.9.9", ttl=255) / UDP(sport=1, dport=2)])
    log = tmp_path / "log.jsonl"
    result = replay_nodes(cap, cluster=[snap], nodes="all", log=log)
    assert result.hop_limited == 1
    assert int(result.counters[Stage.TX, Reason.UNDERLAY_HOP_LIMIT]) == 1 and int(result.counters.sum()) == 1
    last = lines(log)[-1]
    assert (last["reason"], last["hop"]) == ("underlay_hop_limit", MAX_HOPS)
    assert len(lines(log)) == MAX_HOPS + 1


def test_replay_command_takes_several_nodes_and_all(tmp_path):
    snap = snapshot(tmp_path)
    cap = capture(tmp_path, [IP(src=CLIENT, dst=WEB2) / ICMP(type=8)])
    for how in (["--node", "node-1,node-2"], ["--nodes", "all"]):
        run = subprocess.run([sys.executable, "-m", "kdp.cli", "replay", str(cap), "--cluster", str(snap), *how,
                              "--json", "--log", str(tmp_path / "l.jsonl")], cwd=ROOT, capture_output=True,
                             text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        summary = json.loads(run.stdout)
        assert set(summary["nodes"]) == {"node-1", "node-2"} and summary["packets_in"] == 1
        assert summary["underlay"]["transits"] == 1
    run = subprocess.run([sys.executable, "-m", "kdp.cli", "replay", str(cap), "--cluster", str(snap),
                          "--nodes", "all", "--no-progress"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "node node-1" in run.stdout and "node node-2" in run.stdout and "underlay: 1 packets" in run.stdout
    run = subprocess.run([sys.executable, "-m", "kdp.cli", "replay", str(cap), "--cluster", str(snap),
                          "--node", "node-1,node-9"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "node-9" in run.stderr and "Traceback" not in run.stderr
