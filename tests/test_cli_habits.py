"""The command line behaves as users expect: --version, flags in any order with one
--cluster syntax, each command's own usage in its errors, data on stdout and
diagnostics on stderr, tables that do not wrap in a pipe, one JSON key style,
[IPv6]:port, and conntrack counters that add up."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from kdp import __version__
from kdp.commands.common import hostport, snake_keys
from kdptest import base_objects, endpoint, endpoint_slice, port, service, write_snapshot

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_PCAP = ROOT / "pcaps" / "sample.pcap"
SAMPLE_CLUSTER = ROOT / "pcaps" / "sample-cluster"


def kdp(*args):
    return subprocess.run([sys.executable, "-m", "kdp.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=120, cwd=ROOT)


def test_version_prints_the_package_version():
    run = kdp("--version")
    assert run.returncode == 0 and run.stdout.strip() == f"kdp {__version__}"


def test_python_dash_m_kdp_is_the_kdp_command():
    run = subprocess.run([sys.executable, "-m", "kdp", "--version"], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0 and run.stdout.strip() == f"kdp {__version__}"


def test_cluster_before_the_command_words_does_not_swallow_them():
    first = kdp("show", "--cluster", SAMPLE_CLUSTER, "services", "--node", "node-1", "--json")
    last = kdp("show", "services", "--json", "--node", "node-1", "--cluster", SAMPLE_CLUSTER)
    assert first.returncode == last.returncode == 0
    assert json.loads(first.stdout) == json.loads(last.stdout)


def test_cluster_is_repeated_for_several_paths(tmp_path):
    a = write_snapshot(tmp_path / "a", base_objects())
    b = write_snapshot(tmp_path / "b", [service("web", [port("http", 80, 8080)]),
                                        endpoint_slice("web", [("http", "TCP", 8080)],
                                                       [endpoint("10.244.1.10", "node-1")])])
    run = kdp("show", "services", "--cluster", a, "--cluster", b, "--node", "node-1", "--json")
    assert run.returncode == 0, run.stderr
    assert [r["name"] for r in json.loads(run.stdout)["services"]] == ["shop/web:http"]


@pytest.mark.parametrize("args, usage", [
    (("replay", SAMPLE_PCAP, "--cluster", "a", "b"), "usage: kdp replay"),
    (("show", "services", "--cluster", SAMPLE_CLUSTER, "extra"), "usage: kdp show"),
    (("show", "--nope"), "usage: kdp show"),
])
def test_a_commands_errors_print_that_commands_usage(args, usage):
    run = kdp(*args)
    assert run.returncode == 2 and usage in run.stderr and "Traceback" not in run.stderr


def test_replay_puts_data_on_stdout_and_notices_on_stderr(tmp_path):
    run = kdp("replay", SAMPLE_PCAP, "--cluster", SAMPLE_CLUSTER, "--node", "node-1", "-o", tmp_path / "o.pcap")
    assert run.returncode == 0
    assert "kdp: notice:" in run.stderr and "notice" not in run.stdout
    assert "packets in" in run.stdout


def test_a_table_written_to_a_pipe_is_not_wrapped():
    run = kdp("show", "services", "--cluster", SAMPLE_CLUSTER, "--node", "node-1")
    lines = run.stdout.splitlines()
    # the LoadBalancer row holds every option on one line, wider than a terminal's 80 columns
    row = next(line for line in lines if "shop/frontend:https" in line)
    assert len(row.rstrip()) > 80 and "sourceRanges=198.51.100.0/24,192.168.56.0/24,203.0.113.10/32" in row


def test_replay_and_show_json_share_the_snake_case_style(tmp_path):
    replay = json.loads(kdp("replay", SAMPLE_PCAP, "--cluster", SAMPLE_CLUSTER, "--node", "node-1",
                            "-o", tmp_path / "o.pcap", "--json").stdout)
    show = json.loads(kdp("show", "services", "--cluster", SAMPLE_CLUSTER, "--node", "node-1", "--json").stdout)

    def keys(v):
        if isinstance(v, dict):
            return set(v) | {k for x in v.values() for k in keys(x)}
        if isinstance(v, list):
            return {k for x in v for k in keys(x)}
        return set()
    for k in keys(replay) | keys(show):
        assert k == k.lower(), k
    assert "external_traffic_policy" in keys(show) and "packets_in" in keys(replay)


def test_snake_keys_and_hostport():
    assert snake_keys({"lbProxyIPs": [{"timeoutSeconds": 1}]}) == {"lb_proxy_ips": [{"timeout_seconds": 1}]}
    assert hostport("fd00:96::10", 80) == "[fd00:96::10]:80" and hostport("10.96.0.10", 80) == "10.96.0.10:80"


def test_show_writes_ipv6_frontends_in_brackets(tmp_path):
    objs = base_objects() + [service("web6", [port("http", 80, 8080)], cluster_ips=("fd00:96::10",)),
                             endpoint_slice("web6", [("http", "TCP", 8080)], [endpoint("fd00:244:1::10", "node-1")],
                                            family="IPv6")]
    run = kdp("show", "services", "--cluster", write_snapshot(tmp_path / "s", objs), "--node", "node-1")
    assert "ClusterIP [fd00:96::10]:80" in run.stdout
    run = kdp("show", "endpoints", "--cluster", write_snapshot(tmp_path / "s", objs), "--node", "node-1")
    assert "[fd00:244:1::10]:8080" in run.stdout


@pytest.mark.parametrize("capture", ["sample.pcap", "sample.pcapng"])
def test_the_conntrack_counters_of_a_replay_add_up(tmp_path, capture):
    run = kdp("replay", ROOT / "pcaps" / capture, "--cluster", SAMPLE_CLUSTER, "--node", "node-1",
              "-o", tmp_path / "o.pcap", "--json")
    ct = json.loads(run.stdout)["conntrack"]
    assert ct["lookups"] > 0
    assert ct["lookups"] == ct["hits"] + ct["misses"] + ct["related"] + ct["errors_no_flow"]
    assert ct["create_hits"] <= ct["misses"] and ct["inserts"] <= ct["misses"]


@pytest.mark.parametrize("capture", ["sample.pcap", "sample.pcapng"])
def test_each_log_line_names_its_time_and_its_frame_in_the_output(tmp_path, capture):
    from scapy.layers.inet import IP
    from scapy.utils import rdpcap
    out, log = tmp_path / "o.pcap", tmp_path / "v.jsonl"
    run = kdp("replay", ROOT / "pcaps" / capture, "--cluster", SAMPLE_CLUSTER, "--node", "node-1",
              "-o", out, "--log", log)
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    written = rdpcap(str(out))
    sent = [line for line in lines if line["frame"] is not None]
    assert [line["frame"] for line in sent] == list(range(1, len(written) + 1))
    assert all(line["verdict"] in ("forward", "reject", "reply") for line in sent)
    assert all(line["frame"] is None for line in lines if line["verdict"] in ("drop", "local"))
    for line in sent:
        frame = written[line["frame"] - 1]
        assert abs(float(frame.time) - line["ts"]) < 1e-6
        if line["verdict"] == "forward" and IP in frame and not line.get("tunnel"):
            assert (frame[IP].src, frame[IP].dst) == (line["src"], line["dst"])
