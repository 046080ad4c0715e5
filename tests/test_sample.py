"""The shipped sample, end to end through the `kdp` command: golden verdicts, a capture
tshark reads, counters that add up."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PCAPS = ROOT / "pcaps"


def kdp(*args):
    return subprocess.run([sys.executable, "-m", "kdp.cli", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def replayed(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("sample")
    out, log = out_dir / "out.pcap", out_dir / "verdicts.jsonl"
    run = kdp("replay", PCAPS / "sample.pcap", "--cluster", PCAPS / "sample-cluster",
              "--node", "node-1", "-o", out, "--log", log, "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout), out, log


def test_sample_replay_gives_the_golden_verdict_of_every_packet(replayed):
    _summary, _out, log = replayed
    got = [json.loads(line) for line in log.read_text().splitlines()]
    want = [json.loads(line) for line in (PCAPS / "sample.verdicts.jsonl").read_text().splitlines()]
    assert got == want


def test_sample_counters_add_up_to_the_packets_read(replayed):
    summary, _out, log = replayed
    assert summary["packets_in"] == 35 == len(log.read_text().splitlines())
    assert sum(c["packets"] for c in summary["counters"]) == summary["packets_in"]
    assert sum(summary["verdicts"].values()) == summary["packets_in"]


def test_sample_output_is_read_by_tshark_without_warnings(replayed):
    summary, out, _log = replayed
    if shutil.which("tshark") is None:
        pytest.fail("tshark is not installed (.ci/run installs it)")
    run = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    assert [l for l in run.stderr.splitlines() if "Running as user" not in l] == []
    assert len(run.stdout.split()) == summary["packets_out"] == \
        summary["verdicts"]["forward"] + summary["verdicts"]["reject"] + summary["verdicts"]["reply"]


def test_sample_dns_answers_are_read_by_tshark_with_valid_checksums(replayed):
    _summary, out, _log = replayed
    run = subprocess.run(["tshark", "-r", str(out), "-o", "ip.check_checksum:TRUE", "-o",
                          "udp.check_checksum:TRUE", "-Y", "dns.flags.response == 1", "-T", "fields",
                          "-e", "dns.qry.name", "-e", "dns.flags.rcode", "-e", "dns.a",
                          "-e", "ip.checksum.status", "-e", "udp.checksum.status"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    rows = [line.split("\t") for line in run.stdout.splitlines()]
    # checksum status 1: "good" (tshark verified them)
    assert rows == [["web.shop.svc.cluster.local", "0", "10.96.0.10", "1", "1"],
                    ["web.shop.svc.cluster.local.shop.svc.cluster.local", "3", "", "1", "1"]]


def test_pcapng_sample_gives_the_same_verdicts(tmp_path, replayed):
    _summary, _out, log = replayed
    ng_log = tmp_path / "ng.jsonl"
    run = kdp("replay", PCAPS / "sample.pcapng", "--cluster", PCAPS / "sample-cluster",
              "--node", "node-1", "-o", tmp_path / "out.pcapng", "--log", ng_log)
    assert run.returncode == 0, run.stderr
    strip = lambda text: [{k: v for k, v in json.loads(l).items() if k != "in_port"}
                          for l in text.splitlines()]
    assert strip(ng_log.read_text()) == strip(log.read_text())


def test_replay_without_a_cluster_routes_everything_to_the_uplink(tmp_path):
    run = kdp("replay", PCAPS / "sample.pcap", "-o", tmp_path / "o.pcap", "--json")
    assert run.returncode == 0, run.stderr
    summary = json.loads(run.stdout)
    assert summary["packets_in"] == 35
    assert {c["reason"] for c in summary["counters"]} <= {
        "forwarded", "arp", "bad_ipv4_checksum", "truncated_ipv4", "bad_tcp_data_offset"}


def test_replay_of_a_missing_file_is_a_clear_error(tmp_path):
    run = kdp("replay", tmp_path / "nope.pcap", "-o", tmp_path / "o.pcap")
    assert run.returncode == 2
    assert "nope.pcap" in run.stderr and "Traceback" not in run.stderr


def test_invalid_cluster_is_a_clear_error_naming_the_file(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "svc.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
                                  "spec: {ports: [{port: 99999}]}\n")
    run = kdp("replay", PCAPS / "sample.pcap", "--cluster", bad, "--node", "node-1",
              "-o", tmp_path / "o.pcap")
    assert run.returncode == 2
    assert "svc.yaml" in run.stderr and "Traceback" not in run.stderr


@pytest.mark.parametrize("name", ["sample.pcap", "sample.pcapng"])
def test_kdp_reads_as_many_packets_of_each_sample_as_tshark(tshark, name):
    from kdp.io import read_packets
    run = subprocess.run([tshark, "-r", str(PCAPS / name), "-T", "fields", "-e", "frame.number"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    assert len(read_packets(PCAPS / name)) == len(run.stdout.split()) == 35


def test_running_out_of_memory_is_a_clear_error_not_a_traceback(monkeypatch, capsys):
    # e.g. a NodeConfig conntrack.maxFlows whose flow table the machine cannot reserve
    from kdp import cli
    from kdp.commands import replay

    def run(args):
        raise MemoryError("conntrack: reserving 67108864 flows (prefault) needs 10240 MiB, 900 MiB available")
    monkeypatch.setattr(replay, "run", run)
    assert cli.main(["replay", "in.pcap", "-o", "out.pcap"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("kdp: error: out of memory: conntrack: reserving") and "Traceback" not in err
