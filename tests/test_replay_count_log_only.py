"""-c N stops a replay as tcpdump's -c does (with --filter: after N matches), and
--log-only keeps the log to the verdicts asked for. References: the full replay of the
same capture (a shorter replay must be its prefix) and tcpdump itself."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.utils import rdpcap

from kdp.replay import replay

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "pcaps" / "sample.pcap"
CLUSTER = ROOT / "pcaps" / "sample-cluster"
HTTP = ROOT.parent / "shared" / "captures" / "http.pcap"


def _lines(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.mark.parametrize("n", [1, 7, 34, 35, 500])
def test_count_replays_the_first_n_packets_exactly_as_the_full_replay_did(tmp_path, n):
    full_log, log = tmp_path / "full.jsonl", tmp_path / "n.jsonl"
    full = replay(SAMPLE, tmp_path / "full.pcap", cluster=[CLUSTER], node="node-1", log=full_log)
    part = replay(SAMPLE, tmp_path / "n.pcap", cluster=[CLUSTER], node="node-1", log=log, count=n)
    want = min(n, full.packets_in)
    assert part.packets_in == want == int(part.counters.sum())
    assert _lines(log) == _lines(full_log)[:want]
    written = [bytes(p) for p in rdpcap(str(tmp_path / "n.pcap"))] if part.packets_out else []
    assert written == [bytes(p) for p in rdpcap(str(tmp_path / "full.pcap"))][:part.packets_out]


def test_count_with_a_filter_stops_at_the_nth_match_as_tcpdump_does(tmp_path):
    if shutil.which("tcpdump") is None:
        pytest.fail("tcpdump is not installed (run-tests.sh installs it)")
    expr, n = "tcp and src port 80", 5
    ref = tmp_path / "ref.pcap"
    subprocess.run(["tcpdump", "-r", str(HTTP), "-c", str(n), "-w", str(ref), expr],
                   check=True, capture_output=True, timeout=60)
    log = tmp_path / "v.jsonl"
    result = replay(HTTP, log=log, filter=expr, count=n)
    lines = _lines(log)
    packets = rdpcap(str(HTTP))
    assert [bytes(packets[r["index"]]) for r in lines] == [bytes(p) for p in rdpcap(str(ref))]
    # it read up to and including the n-th match, not one packet more
    assert result.packets_in == lines[-1]["index"] + 1


def test_log_only_keeps_exactly_the_lines_of_those_verdicts(tmp_path):
    full_log, log = tmp_path / "full.jsonl", tmp_path / "some.jsonl"
    replay(SAMPLE, cluster=[CLUSTER], node="node-1", log=full_log)
    result = replay(SAMPLE, cluster=[CLUSTER], node="node-1", log=log, log_only="drop,reject")
    want = [r for r in _lines(full_log) if r["verdict"] in ("drop", "reject")]
    assert want and _lines(log) == [{**r, "frame": None} if r["frame"] is None else r for r in want]
    assert result.packets_in == 35          # every packet still counted


@pytest.mark.parametrize("args, message", [
    (["-c", "0"], "must be at least 1"),
    (["-c", "x"], "invalid int value"),
    (["--log-only", "drop,nope", "--log", "/dev/null"], "got nope"),
    (["--log-only", "drop"], "give --log FILE too"),
])
def test_bad_count_or_verdicts_are_a_clear_error(tmp_path, args, message):
    run = subprocess.run([sys.executable, "-m", "kdp", "replay", str(SAMPLE), *args],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and message in run.stderr and "Traceback" not in run.stderr
