"""The flow log (--flows): one record per flow when it ends, and per flow live at the end.
Checked against the verdict log of the same replay (each packet's tuple as received and
its ct state: an independent record of what each flow carried) and, for each way a
flow ends, against a capture built to end it that way."""
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from kdp.dataplane import Dataplane
from kdp.flowlog import FlowLog
from kdp.replay import replay
from kdptest import base_docs, write_snapshot

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "pcaps" / "sample.pcap"
CLUSTER = ROOT / "pcaps" / "sample-cluster"
T0 = 1_763_700_000


def _lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _key(d):
    return (d["src"], d["dst"], d["sport"], d["dport"])


def test_sample_flows_carry_the_packets_the_verdict_log_gives_them(tmp_path):
    flows, log = tmp_path / "flows.jsonl", tmp_path / "v.jsonl"
    result = replay(SAMPLE, cluster=[CLUSTER], node="node-1", log=log, flows=flows)
    records = _lines(flows)
    assert len(records) == result.flows["inserts"] == result.flows["flows"]   # nothing ended early
    seen = Counter()
    for line in _lines(log):
        # (conntrack counts a packet that a later stage drops, as Linux's does)
        if line["ct"] in ("new", "established", "reply") and line["orig"]["sport"] is not None:
            seen[(line["proto"], _key(line["orig"]))] += 1
    for r in records:
        if r["proto"] in ("icmp", "icmpv6"):
            continue                    # (the log gives ICMP no ports to match on)
        assert r["packets"]["orig"] == seen[(r["proto"], _key(r["orig"]))], r
        assert r["packets"]["reply"] == seen[(r["proto"], _key(r["reply"]))], r
        assert r["end"] == "live" and r["first_ts"] <= r["last_ts"]
    web = next(r for r in records if r["service"] == "shop/web:http")
    assert web["orig"]["dst"] == "10.96.0.10" and web["translated"]["dst"] == web["backend"].split(":")[0]
    assert web["translated"]["dport"] == 8080 and web["state"] == "TIME_WAIT"
    db = next(r for r in records if r["orig"]["dport"] == 5432)
    assert db["policy"] == {"egress": None, "ingress": "allow: NetworkPolicy data/db ingress[0]"}


def _eth(pkt, t):
    frame = Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") / pkt
    frame.time = T0 + t
    return frame


def _replay_flows(tmp_path, packets, **nodeconfig):
    snap = write_snapshot(tmp_path / "snap", base_docs(**nodeconfig))
    cap, flows = tmp_path / "in.pcap", tmp_path / "flows.jsonl"
    wrpcap(str(cap), packets)
    result = replay(cap, cluster=[snap], node="node-1", flows=flows, batch_size=1)
    return result, _lines(flows)


def test_a_udp_flow_past_its_timeout_ends_expired_when_time_moves_on(tmp_path):
    a, b = "10.244.1.5", "10.244.2.9"
    _result, records = _replay_flows(tmp_path, [
        _eth(IP(src=a, dst=b) / UDP(sport=1000, dport=53), 0),
        _eth(IP(src=b, dst=a) / UDP(sport=53, dport=1000), 1),
        _eth(IP(src=a, dst=b) / UDP(sport=2000, dport=53), 100),     # 99 s later: past udpTimeout 30 s
    ])
    first = records[0]
    assert (first["orig"]["sport"], first["end"]) == (1000, "expired")
    assert first["packets"] == {"orig": 1, "reply": 1} and first["last_ts"] == T0 + 1
    assert [r["end"] for r in records[1:]] == ["live"]


def test_a_new_syn_on_a_time_wait_tuple_ends_the_old_flow_replaced(tmp_path):
    a, b = "10.244.1.5", "10.244.2.9"
    c2s = lambda flags, t: _eth(IP(src=a, dst=b) / TCP(sport=1000, dport=80, flags=flags), t)
    s2c = lambda flags, t: _eth(IP(src=b, dst=a) / TCP(sport=80, dport=1000, flags=flags), t)
    _result, records = _replay_flows(tmp_path, [
        c2s("S", 0), s2c("SA", 0.1), c2s("A", 0.2), c2s("FA", 0.3), s2c("FA", 0.4), c2s("A", 0.5),
        c2s("S", 1),
    ])
    assert [r["end"] for r in records] == ["replaced", "live"]
    assert records[0]["packets"] == {"orig": 4, "reply": 2} and records[0]["state"] == "TIME_WAIT"


def test_a_reset_before_any_reply_ends_the_flow_reset(tmp_path):
    a, b = "10.244.1.5", "10.244.2.9"
    _result, records = _replay_flows(tmp_path, [
        _eth(IP(src=a, dst=b) / TCP(sport=1000, dport=80, flags="S"), 0),
        _eth(IP(src=a, dst=b) / TCP(sport=1000, dport=80, flags="R"), 0.1),
    ])
    assert [(r["end"], r["packets"]["orig"]) for r in records] == [("reset", 2)]


def test_a_full_table_evicts_the_oldest_unanswered_flow(tmp_path):
    a, b = "10.244.1.5", "10.244.2.9"
    _result, records = _replay_flows(tmp_path, [
        _eth(IP(src=a, dst=b) / UDP(sport=1000 + k, dport=53), k * 0.01) for k in range(3)
    ], conntrack={"maxFlows": 2})
    assert sorted((r["orig"]["sport"], r["end"]) for r in records) == \
        [(1000, "evicted"), (1001, "live"), (1002, "live")]


def test_flows_to_a_backend_that_went_away_end_flushed(tmp_path):
    docs = base_docs()
    snap = write_snapshot(tmp_path / "snap", docs)
    dp = Dataplane.from_snapshot([snap], "node-1")
    flows = tmp_path / "flows.jsonl"
    log = FlowLog(flows, dp)
    cap = tmp_path / "in.pcap"
    wrpcap(str(cap), [_eth(IP(src="10.244.1.5", dst="10.96.0.10") / TCP(sport=1000 + k, dport=80, flags="S"), k)
                      for k in range(4)])
    replay(cap, dataplane=dp)
    gone = sorted({f["reply"][0] for f in dp.conntrack.live_flows()})[0]
    # the same snapshot without that backend
    for d in docs:
        if d.get("kind") == "EndpointSlice" and d["metadata"]["name"] == "web-ipv4":
            d["endpoints"] = [e for e in d["endpoints"] if e["addresses"][0] != gone]
    write_snapshot(tmp_path / "snap", docs)
    flushed = dp.reload([snap])
    log.close()
    records = _lines(flows)
    assert flushed >= 1
    assert sorted(r["backend"].split(":")[0] for r in records if r["end"] == "flushed") == [gone] * flushed
    assert all(r["end"] == "live" for r in records if r["end"] != "flushed")
    assert len(records) == 4


def test_flows_needs_conntrack_and_a_file_that_is_not_the_input(tmp_path):
    run = subprocess.run([sys.executable, "-m", "kdp", "replay", str(SAMPLE), "--flows", str(tmp_path / "f")],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--flows needs conntrack" in run.stderr
    run = subprocess.run([sys.executable, "-m", "kdp", "replay", str(SAMPLE), "--cluster", str(CLUSTER),
                          "--flows", str(SAMPLE)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "same file" in run.stderr


def test_show_flows_prints_conntrack_L_lines_of_the_live_flows(tmp_path):
    import re
    flows = tmp_path / "flows.jsonl"
    replay(SAMPLE, cluster=[CLUSTER], node="node-1", flows=flows)
    live = _lines(flows)
    run = subprocess.run([sys.executable, "-m", "kdp", "show", "flows", "--cluster", str(CLUSTER),
                          "--capture", str(SAMPLE)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == len(live)
    pattern = re.compile(r"^(\w+) +(\d+) +(\d+) (?:([A-Z_]+) )?src=(\S+) dst=(\S+) (?:sport=(\d+) dport=(\d+)|type=\d+ code=0 id=\d+) "
                         r"packets=(\d+) bytes=(\d+) (\[UNREPLIED\] )?src=(\S+) dst=(\S+) .*?packets=(\d+) bytes=(\d+)")
    for line, rec in zip(lines, live):
        m = pattern.match(line)
        assert m, line
        assert m.group(1) == rec["proto"] and (m.group(4) or None) == rec["state"]
        assert (m.group(5), m.group(6)) == (rec["orig"]["src"], rec["orig"]["dst"])
        assert (m.group(12), m.group(13)) == (rec["reply"]["src"], rec["reply"]["dst"])
        assert (int(m.group(9)), int(m.group(14))) == (rec["packets"]["orig"], rec["packets"]["reply"])
        assert bool(m.group(11)) == (rec["packets"]["reply"] == 0)
        assert ("[ASSURED]" in line) == rec["assured"]
