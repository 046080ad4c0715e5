"""--annotate: each written packet carries kdp's decision as a pcapng comment. The
reference reader is tshark (Wireshark's own dissector): it must read every comment
back, beside packets whose bytes are those of the same replay without --annotate."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.utils import rdpcap

from kdp.annotate import comment
from kdp.replay import replay

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "pcaps" / "sample.pcap"
CLUSTER = ROOT / "pcaps" / "sample-cluster"


def _tshark_comments(path):
    if shutil.which("tshark") is None:
        pytest.fail("tshark is not installed (run-tests.sh installs it)")
    run = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|",
                          "-e", "frame.number", "-e", "frame.comment"],
                         capture_output=True, text=True, timeout=60, check=True)
    out = {}
    for row in run.stdout.splitlines():
        number, _, text = row.partition("|")
        out[int(number)] = text
    return out


def test_every_written_packet_carries_its_log_lines_decision_and_the_bytes_stay(tmp_path):
    plain, annotated, log = tmp_path / "plain.pcapng", tmp_path / "notes.pcapng", tmp_path / "v.jsonl"
    replay(SAMPLE, plain, cluster=[CLUSTER], node="node-1")
    result = replay(SAMPLE, annotated, cluster=[CLUSTER], node="node-1", log=log, annotate=True)
    assert [bytes(p) for p in rdpcap(str(plain))] == [bytes(p) for p in rdpcap(str(annotated))]
    lines = [json.loads(l) for l in log.read_text().splitlines()]
    want = {l["frame"]: comment(l) for l in lines if l["frame"] is not None}
    got = _tshark_comments(annotated)
    assert len(got) == result.packets_out == len(want)
    assert got == want
    web = want[1]
    assert web.startswith("kdp: forward forwarded") and "service shop/web:http" in web
    assert "nat 10.244.1.50:41002 > 10.96.0.10:80 => 10.244.1.50:41002 > 10.244.1.10:8080" in web


def test_annotating_leaves_the_verdict_log_as_it_was(tmp_path):
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    replay(SAMPLE, tmp_path / "a.pcapng", cluster=[CLUSTER], node="node-1", log=a, log_only="drop,reject")
    replay(SAMPLE, tmp_path / "b.pcapng", cluster=[CLUSTER], node="node-1", log=b, log_only="drop,reject",
           annotate=True)
    assert a.read_text() == b.read_text() != ""


def test_annotate_needs_a_pcapng_output():
    run = subprocess.run([sys.executable, "-m", "kdp", "replay", str(SAMPLE), "--cluster", str(CLUSTER),
                          "-o", "/tmp/kdp-annotate-refused.pcap", "--annotate"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "pcapng" in run.stderr
    assert not Path("/tmp/kdp-annotate-refused.pcap").exists()
