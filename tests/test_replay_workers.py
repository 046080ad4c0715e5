"""--workers 2: the output capture and the verdict log are written on a second core while
the pipeline runs the next batch. The reference is the same replay on one core: the
files must be the same bytes, whatever the batch size, filter or log selection; an
error in the writer thread is reported, not lost or hung on."""
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from kdp.errors import KdpError
from kdp.replay import replay

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "pcaps" / "sample.pcap"
CLUSTER = ROOT / "pcaps" / "sample-cluster"


def _both(tmp_path, capture, **kw):
    files = []
    for w in (1, 2):
        out, log = tmp_path / f"o{w}.pcapng", tmp_path / f"l{w}.jsonl"
        result = replay(capture, out, cluster=[CLUSTER], node="node-1", log=log, workers=w, **kw)
        files.append((out.read_bytes(), log.read_bytes(), result.counters.tolist(), result.packets_out))
    return files


@pytest.mark.parametrize("batch_size", [1, 2, 5, 256])
def test_two_workers_write_the_same_bytes_as_one(tmp_path, batch_size):
    one, two = _both(tmp_path, SAMPLE, batch_size=batch_size)
    assert one == two and one[3] > 0


def test_same_bytes_with_a_filter_a_log_selection_and_fragments(tmp_path):
    # big UDP datagrams to a remote pod without DF: kdp fragments them (the extra batch)
    frames = [Ether(src="02:00:00:00:00:0a", dst="02:00:00:00:00:0b") /
              IP(src="10.244.1.50", dst="10.244.2.10", flags=0) / UDP(sport=3000 + k, dport=9) / (b"x" * 1600)
              for k in range(40)]
    cap = tmp_path / "frag.pcap"
    wrpcap(str(cap), frames)
    one, two = _both(tmp_path, cap, batch_size=4, log_only="forward")
    assert one == two and one[3] > 40          # fragments were written
    one, two = _both(tmp_path, SAMPLE, batch_size=3, filter="tcp", log_only="drop,forward")
    assert one == two


def test_an_error_in_the_writer_thread_is_reported(tmp_path):
    if not Path("/dev/full").exists():
        pytest.fail("/dev/full is missing")
    with pytest.raises(KdpError, match="/dev/full"):
        replay(SAMPLE, cluster=[CLUSTER], node="node-1", log="/dev/full", workers=2, batch_size=1)


def test_workers_flag_is_checked():
    run = subprocess.run([sys.executable, "-m", "kdp", "replay", str(SAMPLE), "--workers", "0"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and "--workers must be at least 1" in run.stderr
