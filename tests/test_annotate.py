"""replay --annotate: a pcapng whose packets carry kdp's verdict, reason, Service and NAT
as packet comments, read back by tshark (Wireshark's frame.comment) and scapy; the
packets are the ones the plain output holds."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.utils import PcapNgReader, rdpcap

from kdp.io.annotate import comment_of

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"
CLUSTER = PCAPS / "sample-cluster"


def kdp(*args):
    return subprocess.run([sys.executable, "-m", "kdp", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.usefixtures("tshark")
@pytest.mark.parametrize("capture", ["sample.pcap", "sample.pcapng"])
def test_annotated_output_carries_each_packets_decision_as_its_comment(tmp_path, capture):
    out, plain, log = tmp_path / "a.pcapng", tmp_path / "p.pcapng", tmp_path / "log.jsonl"
    run = kdp("replay", PCAPS / capture, "--cluster", CLUSTER, "--node", "node-1", "-o", out,
              "--annotate", "--log", log)
    assert run.returncode == 0, run.stderr
    run = kdp("replay", PCAPS / capture, "--cluster", CLUSTER, "--node", "node-1", "-o", plain)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    sent = [x for x in lines if x["frame"] is not None]
    assert [x["frame"] for x in sent] == list(range(1, len(sent) + 1))
    read = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.comment"],
                          capture_output=True, text=True, timeout=60)
    assert read.returncode == 0 and "warning" not in read.stderr.lower(), read.stderr
    comments = read.stdout.splitlines()
    assert comments == [comment_of(x) for x in sent]
    assert "kdp: forward (forwarded), service shop/web:http, nat 10.244.1.50:41002 -> 10.96.0.10:80 => " \
           "10.244.1.50:41002 -> 10.244.1.10:8080" in comments
    assert any(c.startswith("kdp: reject (svc_port_not_exposed)") for c in comments)
    # scapy reads the same comments, and the packets are the plain output's
    with PcapNgReader(str(out)) as r:
        pkts = list(r)
    assert [p.comment.decode() for p in pkts] == comments
    assert [bytes(p) for p in pkts] == [bytes(p) for p in rdpcap(str(plain))]


def test_annotate_needs_a_pcapng_output(tmp_path):
    run = kdp("replay", PCAPS / "sample.pcap", "--annotate")
    assert run.returncode == 2 and "-o OUT.pcapng" in run.stderr
    run = kdp("replay", PCAPS / "sample.pcap", "--annotate", "-o", tmp_path / "x.pcap")
    assert run.returncode == 2 and "name the output .pcapng" in run.stderr
    assert not (tmp_path / "x.pcap").exists()
