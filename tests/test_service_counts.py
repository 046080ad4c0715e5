"""Per-Service counts in the replay summary: packets of each Service port's flows, the
flows it created and the packets it rejected, checked against the verdict log of the
same replay (an independent record: one line per packet with its service and ct state)."""
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from kdp.dataplane import Dataplane
from kdp.replay import replay
from kdptest import base_docs, write_snapshot

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PCAP = ROOT / "pcaps" / "sample.pcap"
SAMPLE_CLUSTER = ROOT / "pcaps" / "sample-cluster"


def _from_log(path):
    counts = {}
    for line in Path(path).read_text().splitlines():
        rec = json.loads(line)
        if rec["service"] is None:
            continue
        c = counts.setdefault(rec["service"], Counter())
        c["packets"] += 1
        c["new_flows"] += rec["ct"] == "new" and rec["verdict"] not in ("drop", "reject")
        c["rejects"] += rec["verdict"] == "reject"
    return {k: {"packets": v["packets"], "new_flows": v["new_flows"], "rejects": v["rejects"]}
            for k, v in counts.items()}


def test_sample_replay_counts_each_service_as_its_log_lines_say(tmp_path):
    log = tmp_path / "v.jsonl"
    result = replay(SAMPLE_PCAP, cluster=[SAMPLE_CLUSTER], log=log)
    assert result.services, "the sample reaches Services"
    assert result.services == _from_log(log)
    total_new = sum(c["new_flows"] for c in result.services.values())
    assert 0 < total_new <= result.flows["inserts"]


def _frame(src, dst, dport, sport=40000, proto="tcp", flags="S"):
    l4 = TCP(sport=sport, dport=dport, flags=flags) if proto == "tcp" else UDP(sport=sport, dport=dport)
    return Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") / IP(src=src, dst=dst) / l4


def test_a_service_without_endpoints_counts_its_rejects_and_the_log_names_it(tmp_path):
    snap = write_snapshot(tmp_path / "snap", base_docs())
    cap = tmp_path / "in.pcap"
    wrpcap(str(cap), [_frame("10.244.1.5", "10.96.0.50", 80, sport=40000 + k) for k in range(3)]
           + [_frame("10.244.1.5", "10.96.0.10", 80, sport=41000 + k) for k in range(2)])
    log = tmp_path / "v.jsonl"
    result = replay(cap, cluster=[snap], node="node-1", log=log)
    assert result.services["shop/empty:p"] == {"packets": 3, "new_flows": 0, "rejects": 3}
    assert result.services["shop/web:p"] == {"packets": 2, "new_flows": 2, "rejects": 0}
    assert result.services == _from_log(log)


def test_counts_survive_a_reload_that_renumbers_the_service_ports(tmp_path):
    docs = base_docs()
    snap = write_snapshot(tmp_path / "snap", docs)
    dp = Dataplane.from_snapshot([snap], "node-1")
    cap = tmp_path / "in.pcap"
    wrpcap(str(cap), [_frame("10.244.1.5", "10.96.0.10", 80, sport=40000 + k) for k in range(4)])
    replay(cap, dataplane=dp)
    # a Service whose name sorts first: every other service port moves to a new id
    from kdptest import slice_doc, svc_doc
    write_snapshot(tmp_path / "snap", [*docs, svc_doc("aaa", "10.96.0.99"),
                                       slice_doc("aaa", [("10.244.2.99", "node-2")])])
    dp.reload([snap])
    wrpcap(str(cap), [_frame("10.244.1.5", "10.96.0.10", 80, sport=42000 + k) for k in range(2)]
           + [_frame("10.244.1.5", "10.96.0.99", 80)])
    replay(cap, dataplane=dp)
    counts = dp.service_counts()
    assert counts["shop/web:p"] == {"packets": 6, "new_flows": 6, "rejects": 0}
    assert counts["shop/aaa:p"] == {"packets": 1, "new_flows": 1, "rejects": 0}


def test_json_summary_lists_services_and_the_table_names_them(tmp_path):
    args = [sys.executable, "-m", "kdp", "replay", str(SAMPLE_PCAP), "--cluster", str(SAMPLE_CLUSTER)]
    run = subprocess.run([*args, "--json"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    services = json.loads(run.stdout)["services"]
    names = [s["service"] for s in services]
    assert names == sorted(names) and "shop/web:http" in names
    assert all(set(s) == {"service", "packets", "new_flows", "rejects"} for s in services)
    table = subprocess.run(args, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert "per Service port" in table.stdout and "shop/web:http" in table.stdout
