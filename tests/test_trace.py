"""kdp trace: per-stage decisions of chosen packets of the sample, checked against the
verdict log of the same capture (the traced pipeline decides as the untraced one) and
against tcpdump's matching for --filter."""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.utils import rdpcap

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
SAMPLE = PCAPS / "sample.pcap"
CLUSTER = PCAPS / "sample-cluster"


def kdp(*args):
    return subprocess.run([sys.executable, "-m", "kdp", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def traces(*select):
    run = kdp("trace", SAMPLE, "--cluster", CLUSTER, "--node", "node-1", *select)
    assert run.returncode == 0, run.stderr
    out = {}
    for block in run.stdout.strip().split("\n\n"):
        lines = block.splitlines()
        index = int(lines[0].split()[1])
        stages = {}
        for line in lines[2:]:
            stage, text = line.strip().split(None, 1)
            stages.setdefault(stage, []).append(text)
        out[index] = stages
    return out


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    path = tmp_path_factory.mktemp("trace") / "log.jsonl"
    run = kdp("replay", SAMPLE, "--cluster", CLUSTER, "--node", "node-1", "--log", path, "--json")
    assert run.returncode == 0, run.stderr
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def every():
    return traces("--packet", ",".join(map(str, range(35))))


def test_every_traced_packet_ends_with_the_verdict_replay_gives_it(every, log):
    assert sorted(every) == list(range(35))
    for line in log:
        final = every[line["index"]]["verdict"][0]
        verdict, rest = final.split(": ", 1)
        assert verdict == line["verdict"], final
        assert rest.split(",")[0].split(";")[0].split()[1] == line["reason"], final
        if line["out_port"] is not None:
            assert f"out {line['out_port']};" in final
        if line["proto"] in ("tcp", "udp") and "tunnel" not in line:
            hp = "[{}]:{}" if ":" in line["src"] else "{}:{}"
            assert f"{hp.format(line['src'], line['sport'])} -> {hp.format(line['dst'], line['dport'])}" in final


def test_service_nat_and_route_of_a_clusterip_flow(every, log):
    t = every[0]
    assert t["parse"] == ["IPv4 tcp 10.244.1.50:41002 -> 10.96.0.10:80 ttl 64 flags SYN"]
    assert t["ingress"] == ["port default/client"]
    assert t["conntrack"][0] == "miss: a new flow (slow path)"
    assert t["service"][0].startswith("shop/web:http frontend 10.96.0.10:80 -> backend 10.244.1.10:8080 "
                                      "(2 endpoints in the set; flow hash: Maglev slot ")
    assert t["nat"] == ["tcp 10.244.1.50:41002 -> 10.96.0.10:80  =>  tcp 10.244.1.50:41002 -> 10.244.1.10:8080"]
    assert t["route"] == ["10.244.1.10/32 (pod shop/web-1) -> port web-1; ttl 64 -> 63"]
    assert (log[0]["dst"], log[0]["dport"]) == ("10.244.1.10", 8080)
    # a later packet of the flow: conntrack decides, no Service choice, no policy
    t = every[7]
    assert t["conntrack"][0].startswith("hit established: flow 0")
    assert t["service"] == ["shop/web:http (the flow's: backend chosen at its first packet)"]


def test_why_the_backend_and_the_masquerade(every):
    assert "masquerade (SNAT)" in every[12]["conntrack"][-1]
    assert every[12]["nat"] == ["tcp 198.51.100.7:50000 -> 192.168.56.11:30080  =>  "
                                "tcp 192.168.56.11:46144 -> 10.244.1.11:9090"]
    assert "LoadBalancer, externalTrafficPolicy: Local: a client from outside, node-local endpoints only; " \
           "1 endpoint in the set" in every[13]["service"][0]
    assert "session affinity ClientIP, 60s" in every[8]["service"][0]
    assert every[15]["service"] == ["shop/frontend:https frontend 203.0.113.10:443: refused, "
                                    "drop (service svc_source_range)"]
    assert "route" not in every[15]                 # decided: no later stage looked at it


def test_policy_route_encap_dns_and_parse_drops(every, log):
    assert every[31]["policy"] == ["allowed; egress: no policy; ingress: allow: NetworkPolicy data/db ingress[0]"]
    assert every[33]["policy"][0].startswith("drop (policy policy_denied_ingress); egress: no policy; "
                                             "ingress: deny: not allowed by NetworkPolicy data/db")
    assert every[18]["route"][0].startswith("10.244.2.0/24 (node node-2) -> port uplink via 192.168.56.12 encap ipip")
    tunnel = log[18]["tunnel"]
    assert every[18]["encap"] == [f"ipip: outer {tunnel['src']} -> {tunnel['dst']}"]
    assert every[28]["dns"] == ["answered in place: reply (dns dns_answered)"]
    assert every[16]["route"][0].startswith("the reject answer, back to the sender: 10.244.1.50/32")
    assert every[25]["parse"] == ["drop (parse bad_ipv4_checksum)"] and set(every[25]) == {"rx", "parse", "verdict"}


@pytest.mark.usefixtures("tcpdump")
@pytest.mark.parametrize("expression", ["host 8.8.8.8", "udp and not port 53", "tcp[tcpflags] & tcp-syn != 0"])
def test_filter_traces_exactly_the_packets_tcpdump_matches(expression, tmp_path):
    out = tmp_path / "m.pcap"
    subprocess.run(["tcpdump", "-r", str(SAMPLE), "-w", str(out), expression], check=True,
                   capture_output=True, timeout=60)
    frames = [bytes(p) for p in rdpcap(str(SAMPLE))]
    want = [bytes(p) for p in rdpcap(str(out))]
    got = traces("--filter", expression)
    assert want and [frames[i] for i in sorted(got)] == want


def test_bad_selections_are_errors():
    for args, message in ((["--packet", "99"], "the capture has 35 packets"),
                          (["--packet", "x"], "--packet takes packet indices"),
                          ([], "--packet N[,M...] or --filter EXPR"),
                          (["--packet", "1", "--filter", "tcp"], "one of them")):
        run = kdp("trace", SAMPLE, "--cluster", CLUSTER, "--node", "node-1", *args)
        assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr, args


def test_a_traced_batch_is_decided_byte_for_byte_as_an_untraced_one():
    import numpy as np
    from kdp import Batch
    from kdp.dataplane import Dataplane
    from kdp.io.capture import open_capture
    from kdp.trace import Tracer
    out = []
    for traced in (False, True):
        dp = Dataplane.from_snapshot([CLUSTER], "node-1")
        reader = open_capture(SAMPLE, ports=dp.ports)
        batch = Batch(64)
        reader.fill(batch)
        reader.close()
        tracer = Tracer(dp) if traced else None
        if traced:
            batch.meta["trace"][:len(batch)] = 1
        dp.pipeline.run(batch, None, 0, tracer)
        meta = batch.meta[:len(batch)]
        fields = {f: meta[f].tolist() for f in meta.dtype.names if f != "trace"}
        out.append((fields, [bytes(batch.packet(i)) for i in range(len(batch))],
                    dp.counters.copy(), dp.conntrack.flows()))
        if traced:
            assert len(tracer.points) == 35
    assert out[0][0] == out[1][0] and out[0][1] == out[1][1] and out[0][3] == out[1][3]
    assert np.array_equal(out[0][2], out[1][2])
