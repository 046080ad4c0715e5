"""--filter: tcpdump's expression language, compiled by libpcap, matched on the packets as
they came in. The reference is tcpdump itself (`tcpdump -r FILE -w OUT EXPR`) on the real
captures of ../shared/captures and on the sample; and replay's own rules: filtered packets
are counted `filtered`, not processed, written or logged."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP
from scapy.layers.inet6 import IPv6
from scapy.utils import PcapReader

from kdp import Batch
from kdp.errors import CaptureError, KdpError
from kdp.filter import PARSED_LINKTYPES, PacketFilter
from kdp.io import CaptureReader, read_packets
from kdp.reasons import Reason, Stage
from kdptest import shared_capture_files

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"


def _parsed_link_type(path):
    r = CaptureReader(path)
    batch = Batch(1)
    try:
        return r.fill(batch) == 1 and int(batch.meta["linktype"][0]) in PARSED_LINKTYPES
    except CaptureError:
        return False
    finally:
        r.close()


FILES = shared_capture_files()
# the captures whose link types kdp parses (Ethernet, Linux cooked, raw IP): the filter
# runs on them; other link types are dropped at rx and never match
IP_FILES = [p for p in FILES if _parsed_link_type(p)] + [PCAPS / "sample.pcap", PCAPS / "sample.pcapng"]

# every word the issue names, alone and combined
EXPRESSIONS = [
    "tcp", "udp", "sctp", "icmp", "ip6", "ip", "arp",
    "port 53", "src port 80", "dst port 80", "tcp port 80 or tcp port 443",
    "portrange 1-1023", "udp portrange 1024-65535", "tcp dst portrange 8000-8100",
    "net 10.0.0.0/8", "src net 192.168.0.0/16", "dst net 172.16.0.0/12", "net 2001:db8::/32",
    "not tcp", "tcp and not port 80", "(udp or icmp) and not port 53",
    "ip6 and (tcp or udp)", "not (tcp or udp or icmp)", "icmp6",
]


def _first_addresses(path):
    """The source and destination of the first IPv4 or IPv6 packet scapy finds."""
    try:
        with PcapReader(str(path)) as r:
            for pkt in r:
                for layer in (IP, IPv6):
                    if layer in pkt:
                        return pkt[layer].src, pkt[layer].dst
    except Exception:   # noqa: BLE001 - a damaged tail: what was read so far counts
        pass
    return None


def _expressions(path):
    out = list(EXPRESSIONS)
    addrs = _first_addresses(path)
    if addrs:
        src, dst = addrs
        out += [f"host {src}", f"src host {dst}", f"dst {dst}", f"host {src} and host {dst}",
                f"src {src} and not dst port 22", f"not host {dst}"]
    return out


def tcpdump_matches(path, expression, tmp_path):
    """The frames (bytes, in order) tcpdump writes when it reads `path` through `expression`."""
    out = tmp_path / "tcpdump.pcap"
    run = subprocess.run(["tcpdump", "-r", str(path), "-w", str(out), expression],
                         capture_output=True, text=True, timeout=120)
    if "expression rejects all packets" in run.stderr:
        return []           # nothing of this link type can match (tcpdump refuses to run)
    # a capture cut short: tcpdump writes what came before and says so
    assert run.returncode == 0 or "truncated" in run.stderr, run.stderr
    return [p.data for p in read_packets(out)]


def kdp_matches(path, expression):
    flt = PacketFilter(expression)
    r = CaptureReader(path)
    batch = Batch(64)
    out = []
    try:
        while True:
            try:
                n = r.fill(batch)
            except CaptureError:
                break
            if n == 0:
                break
            flt.apply(batch)
            out += [batch.packet(i) for i in range(len(batch)) if flt.match[i]]
    finally:
        r.close()
    return out


@pytest.mark.usefixtures("tcpdump")
@pytest.mark.parametrize("path", IP_FILES, ids=[p.name for p in IP_FILES])
def test_filter_matches_what_tcpdump_matches_on_real_captures(path, tmp_path):
    assert len(IP_FILES) >= 30
    matched_any = 0
    for expression in _expressions(path):
        ours = kdp_matches(path, expression)
        assert ours == tcpdump_matches(path, expression, tmp_path), expression
        matched_any += bool(ours)
    assert matched_any, "no expression matched anything: the comparison proved nothing"


def test_an_expression_that_can_match_nothing_is_an_error_as_in_tcpdump():
    with pytest.raises(KdpError, match="rejects all packets"):
        PacketFilter("tcp and udp")


def test_a_wrong_expression_is_an_error_with_libpcaps_message():
    with pytest.raises(KdpError, match="--filter 'tcp prot 80'.*syntax error"):
        PacketFilter("tcp prot 80")
    with pytest.raises(KdpError, match="needs an expression"):
        PacketFilter("  ")


def kdp(*args):
    return subprocess.run([sys.executable, "-m", "kdp.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_replay_with_a_bad_filter_exits_2_and_writes_nothing(tmp_path):
    run = kdp("replay", PCAPS / "sample.pcap", "--cluster", PCAPS / "sample-cluster", "--node", "node-1",
              "-o", tmp_path / "out.pcap", "--log", tmp_path / "log.jsonl", "--filter", "port eighty")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "--filter 'port eighty'" in run.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.usefixtures("tcpdump")
def test_replay_with_a_filter_counts_every_packet_but_logs_and_writes_only_matches(tmp_path):
    expression = "host 10.244.1.50 or icmp"
    run = kdp("replay", PCAPS / "sample.pcap", "--cluster", PCAPS / "sample-cluster", "--node", "node-1",
              "-o", tmp_path / "out.pcap", "--log", tmp_path / "log.jsonl", "--filter", expression,
              "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    full = kdp("replay", PCAPS / "sample.pcap", "--cluster", PCAPS / "sample-cluster", "--node", "node-1",
               "--json")
    assert summary["packets_in"] == json.loads(full.stdout)["packets_in"] == 35
    counted = {(c["stage"], c["reason"]): c["packets"] for c in summary["counters"]}
    assert sum(counted.values()) == 35
    # the reference: which input frames tcpdump keeps (the sample's frames are all distinct)
    frames = [p.data for p in read_packets(PCAPS / "sample.pcap")]
    kept = tcpdump_matches(PCAPS / "sample.pcap", expression, tmp_path)
    kept_index = [frames.index(f) for f in kept]
    assert 0 < len(kept_index) < 35
    assert counted[(Stage.RX.label, Reason.FILTERED.label)] == 35 - len(kept_index)
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [line["index"] for line in lines] == kept_index
    assert all(line["reason"] != "filtered" for line in lines)
    written = read_packets(tmp_path / "out.pcap")
    transmitted = [line for line in lines if line["verdict"] in ("forward", "reject", "reply")]
    assert len(written) == len(transmitted) == summary["packets_out"]
    assert [line["frame"] for line in transmitted] == list(range(1, len(written) + 1))
