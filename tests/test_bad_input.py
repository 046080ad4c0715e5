"""Bad input that used to get through: each case ends in a clear error (exit status 2, the
file / object / field named, no traceback) or a documented, counted behaviour. Driven
through the command line (`python -m kdp.cli` in a subprocess) where a user meets it, and
through the API where a library user does (Dataplane.reload)."""
import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from kdp.control import Cluster
from kdp.dataplane import Dataplane
from kdp.errors import ConfigError, KdpWarning
from kdp.io import write_packets

from kdptest import NG, NODE1, base_objects, node, pod, service, write_snapshot

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_PCAP = ROOT / "pcaps" / "sample.pcap"
SAMPLE_CLUSTER = ROOT / "pcaps" / "sample-cluster"


def cli(*args, timeout=120, **kw):
    return subprocess.run([sys.executable, "-m", "kdp.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, **kw)


def refused(run, *needles):
    """Exit status 2, one clean error naming what is wrong, no traceback."""
    assert run.returncode == 2, (run.returncode, run.stdout[-500:], run.stderr[-2000:])
    assert "Traceback" not in run.stderr and run.stderr.startswith("kdp: error: "), run.stderr
    for needle in needles:
        assert needle in run.stderr, (needle, run.stderr)
    return run.stderr


def config_error(objs, node="node-1"):
    """The ConfigError message validating `objs` raises (the API path)."""
    with pytest.raises(ConfigError) as info:
        Cluster.from_documents(objs, node=node)
    return str(info.value)


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def capture(tmp_path):
    path = tmp_path / "in.pcap"
    shutil.copy(SAMPLE_PCAP, path)
    return path


# ------------------------------------------------------------------ data loss

@pytest.mark.parametrize("how", ["same name", "other spelling", "symlink", "hard link"])
@pytest.mark.parametrize("flag", ["-o", "--log"])
def test_output_or_log_that_is_the_input_is_refused_and_the_input_is_untouched(tmp_path, capture, how, flag):
    before = digest(capture)
    target = {"same name": capture, "other spelling": tmp_path / "." / "in.pcap"}.get(how)
    if how == "symlink":
        target = tmp_path / "link.pcap"
        target.symlink_to(capture)
    elif how == "hard link":
        target = tmp_path / "hard.pcap"
        os.link(capture, target)
    run = cli("replay", capture, "--cluster", SAMPLE_CLUSTER, "--node", "node-1", flag, target)
    refused(run, "same file as the input", "refusing to overwrite")
    assert digest(capture) == before


def test_output_and_log_that_are_one_file_are_refused(tmp_path, capture):
    out = tmp_path / "out.pcap"
    out.write_bytes(b"keep")
    refused(cli("replay", capture, "-o", out, "--log", tmp_path / "." / "out.pcap"), "same file as the output")
    assert out.read_bytes() == b"keep"
    fresh = tmp_path / "new.pcap"          # neither exists yet: compared by resolved path
    refused(cli("replay", capture, "-o", fresh, "--log", tmp_path / "x" / ".." / "new.pcap"), "same file")
    assert not fresh.exists()


# ------------------------------------------------------------------ hangs

def test_fifo_in_a_snapshot_directory_is_refused_without_opening_it(tmp_path):
    snap = write_snapshot(tmp_path / "snap", base_objects())
    os.mkfifo(snap / "zz-pipe.yaml")
    for args in (("replay", SAMPLE_PCAP, "--cluster", snap, "--node", "node-1"),
                 ("show", "services", "--cluster", snap, "--node", "node-1"),
                 ("replay", SAMPLE_PCAP, "--cluster", snap / "zz-pipe.yaml", "--node", "node-1")):
        refused(cli(*args, timeout=30), "zz-pipe.yaml: is a FIFO, not a regular file")


def test_device_named_as_a_snapshot_is_refused(tmp_path):
    refused(cli("show", "services", "--cluster", "/dev/zero", timeout=30), "/dev/zero: is a character device")


# ------------------------------------------------------------------ silent misrouting: ports

def with_ports(*ports):
    objs = copy.deepcopy(base_objects())
    objs[0]["spec"]["ports"] = list(ports)
    return objs


PORT_CASES = [
    ([{"name": "uplink", "kind": "Pod", "pod": "shop/web-1"}], "spec.ports[0].name", "Uplink port's name"),
    ([{"name": "host", "kind": "Pod", "pod": "shop/web-1"}], "spec.ports[0].name", "Host port's name"),
    ([{"name": "", "kind": "Pod", "pod": "shop/web-1"}], "spec.ports[0].name", "must not be empty"),
    ([{"name": "a", "kind": "Pod", "pod": "shop/web-1"}, {"name": "a", "kind": "Pod", "pod": "shop/client"}],
     "spec.ports[1].name", "duplicate port name 'a'"),
    ([{"name": "eth", "kind": "Uplink"}], "spec.ports[0].name", "the Uplink port is named 'uplink'"),
    ([{"name": "shop/client", "kind": "Pod", "pod": "shop/web-1"}], "spec.ports[0].name",
     "port name of the local pod shop/client"),
    ([{"name": "a", "kind": "Pod", "pod": "shop/web-1", "interface": "eth0"},
      {"name": "uplink", "kind": "Uplink", "interface": "eth0"}], "spec.ports[1].interface", "also spec.ports[0]"),
    ([{"name": "a", "kind": "Pod", "pod": "shop/web-1", "interface": "any"}], "spec.ports[0].interface", "any"),
    ([{"name": "a", "kind": "Pod", "pod": "shop/web-1", "interface": "a-very-long-name0"}],
     "spec.ports[0].interface", "Linux interface name"),
    ([{"name": "a", "kind": "Pod", "pod": "shop/web-1"}, {"name": "b", "kind": "Pod", "pod": "shop/web-1"}],
     "spec.ports[1].pod", "already has a port"),
]


@pytest.mark.parametrize("ports, field, message", [PORT_CASES[0], PORT_CASES[2]])
def test_bad_nodeconfig_port_is_a_config_error_in_the_cli(tmp_path, ports, field, message):
    snap = write_snapshot(tmp_path / "snap", with_ports(*ports))
    refused(cli("replay", SAMPLE_PCAP, "--cluster", snap, "--node", "node-1"),
            "cluster.yaml", "NodeConfig node-1", field, message)


@pytest.mark.parametrize("ports, field, message", PORT_CASES)
def test_bad_nodeconfig_port_in_a_reload_is_a_config_error_that_changes_nothing(tmp_path, ports, field, message):
    dp = Dataplane.from_snapshot([write_snapshot(tmp_path / "a", base_objects())], "node-1")
    node_before, ports_before = dp.node, dp.ports.items()
    with pytest.raises(ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        dp.reload([write_snapshot(tmp_path / "b", with_ports(*ports))])
    assert dp.node is node_before and dp.ports.items() == ports_before


# ------------------------------------------------------------------ ClusterIPs, pod CIDRs, names

def svc_with(ip, **spec):
    return service("odd", [{"name": "p", "protocol": "TCP", "port": 80, "targetPort": 8080}],
                   cluster_ips=(ip,), **spec)


@pytest.mark.parametrize("obj, field, message", [
    (svc_with(NODE1), "spec.clusterIPs[0]", f"{NODE1} is an address of Node node-1"),
    (svc_with("10.97.0.1"), "spec.clusterIPs[0]", "outside the service CIDRs (10.96.0.0/16)"),
    (svc_with("10.96.0.0"), "spec.clusterIPs[0]", "network address of the service CIDR"),
    (svc_with("10.96.255.255"), "spec.clusterIPs[0]", "broadcast address of the service CIDR"),
    (svc_with("0.0.0.0"), "spec.clusterIPs[0]", "may not be unspecified"),
    (svc_with("255.255.255.255"), "spec.clusterIPs[0]", "may not be the broadcast address"),
    (svc_with("224.0.0.5"), "spec.clusterIPs[0]", "may not be a multicast address"),
    (svc_with("127.0.0.1"), "spec.clusterIPs[0]", "may not be a loopback address"),
    (svc_with("169.254.1.1"), "spec.clusterIPs[0]", "may not be a link-local address"),
    (svc_with("::"), "spec.clusterIPs[0]", "may not be unspecified"),
    (svc_with("10.96.0.77", ipFamilies=["IPv6"]), "spec.clusterIPs[0]", "is not an IPv6 address as spec.ipFamilies[0] says"),
    (svc_with("10.96.0.77", ipFamilies=["IPv4", "IPv4"]), "spec.ipFamilies[1]", "duplicate family"),
    (svc_with("fd00:97::1", ipFamilies=["IPv6"]), "spec.clusterIPs[0]", "outside the service CIDRs (fd00:96::/112)"),
])
def test_cluster_ip_the_api_server_would_refuse_is_a_config_error(obj, field, message):
    error = config_error(base_objects() + [obj])
    assert f"Service shop/odd: {field}: " in error and message in error, error


def test_cluster_ip_error_in_the_cli_names_file_object_and_field(tmp_path):
    snap = write_snapshot(tmp_path / "snap", base_objects() + [svc_with("10.97.0.1")])
    refused(cli("show", "services", "--cluster", snap, "--node", "node-1"),
            "cluster.yaml#7: Service shop/odd: spec.clusterIPs[0]: 10.97.0.1 is outside the service CIDRs")


def test_without_service_cidrs_an_ordinary_cluster_ip_is_accepted(tmp_path):
    objs = base_objects()
    del objs[0]["spec"]["serviceCIDRs"]
    cluster = Cluster.from_documents(objs + [svc_with("10.97.0.1")], node="node-1")
    assert ("shop", "odd") in cluster.services


def nodes_with(**cidrs):
    objs = [o for o in base_objects() if o["kind"] != "Node"]
    return objs + [node(name, f"192.168.56.{20 + i}", c) for i, (name, c) in enumerate(cidrs.items())]


@pytest.mark.parametrize("objs, needles", [
    (nodes_with(**{"node-1": ["10.244.1.0/24"], "node-2": ["10.244.1.128/25"]}),
     ["Node node-2: spec.podCIDRs: 10.244.1.128/25 overlaps the pod CIDR 10.244.1.0/24 of Node node-1"]),
    (nodes_with(**{"node-1": ["10.244.1.0/24"], "node-2": ["10.244.2.0/24"], "node-3": ["10.244.0.0/16"]}),
     ["Node node-1: spec.podCIDRs: 10.244.1.0/24 overlaps the pod CIDR 10.244.0.0/16 of Node node-3",
      "Node node-2: spec.podCIDRs: 10.244.2.0/24 overlaps the pod CIDR 10.244.0.0/16 of Node node-3"]),
    (nodes_with(**{"node-1": ["10.244.1.0/24"], "node-2": ["0.0.0.0/0"]}),
     ["Node node-2: spec.podCIDRs[0]: 0.0.0.0/0 would make every address this node's pod address"]),
    (nodes_with(**{"node-1": ["10.244.1.0/24"], "node-2": ["10.244.2.5/24"]}),
     ["Node node-2: spec.podCIDRs[0]: 10.244.2.5/24 has host bits set (the subnet is 10.244.2.0/24)"]),
    (nodes_with(**{"node-1": ["10.244.1.0/24"], "node-2": ["10.244.2.0/24", "10.244.3.0/24"]}),
     ["Node node-2: spec.podCIDRs: may hold at most one CIDR per IP family"]),
])
def test_pod_cidrs_no_node_ipam_would_give_are_config_errors(objs, needles):
    error = config_error(objs)
    for needle in needles:
        assert needle in error, error


def test_pod_cidr_error_in_the_cli_names_file_object_and_field(tmp_path):
    snap = write_snapshot(tmp_path / "snap", nodes_with(**{"node-1": ["10.244.1.0/24"], "node-2": ["10.244.1.0/23"]}))
    refused(cli("show", "routes", "--cluster", snap, "--node", "node-1"),
            "cluster.yaml#", "Node node-1: spec.podCIDRs: 10.244.1.0/24 overlaps the pod CIDR 10.244.0.0/23 of Node node-2")


@pytest.mark.parametrize("kind_obj, field, message", [
    ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n" * 64}}, "metadata.name",
     "no more than 63 characters"),
    ({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "Shop"}}, "metadata.name", "DNS-1123 label"),
    (svc_with("10.96.0.77") | {"metadata": {"namespace": "shop", "name": "s" * 64}}, "metadata.name",
     "no more than 63 characters"),
    (svc_with("10.96.0.77") | {"metadata": {"namespace": "shop", "name": "1web"}}, "metadata.name", "DNS-1035 label"),
    (svc_with("10.96.0.77") | {"metadata": {"namespace": "s" * 64, "name": "web"}}, "metadata.namespace",
     "no more than 63 characters"),
    (pod("shop", "p" * 254, "node-1", "10.244.1.99"), "metadata.name", "no more than 253 characters"),
    (pod("shop", "web_1", "node-1", "10.244.1.99"), "metadata.name", "DNS-1123 subdomain"),
    ({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n." * 127 + "n"}}, "metadata.name",
     "no more than 253 characters"),
])
def test_names_over_the_api_limits_are_config_errors(kind_obj, field, message):
    error = config_error(base_objects() + [kind_obj])
    assert f"{kind_obj['kind']} " in error and f": {field}: " in error and message in error, error


def test_name_error_in_the_cli_names_file_object_and_field(tmp_path):
    snap = write_snapshot(tmp_path / "snap", base_objects() + [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n" * 64}}])
    refused(cli("show", "services", "--cluster", snap, "--node", "node-1"),
            f"cluster.yaml#7: Namespace {'n' * 64}: metadata.name: must be no more than 63 characters")


def test_names_at_the_api_limits_are_accepted():
    long_label, long_sub = "a" * 63, ".".join(["b" * 63] * 3) + "." + "c" * 61
    assert len(long_sub) == 253
    objs = base_objects() + [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": long_label}},
                             pod("shop", long_sub, "node-1", "10.244.1.99"),
                             svc_with("10.96.0.77") | {"metadata": {"namespace": long_label, "name": "x" + "1" * 62}}]
    cluster = Cluster.from_documents(objs, node="node-1")
    assert ("shop", long_sub) in cluster.pods


def test_duplicate_yaml_and_json_keys_are_config_errors_with_the_line(tmp_path):
    snap = write_snapshot(tmp_path / "snap", base_objects())
    (snap / "dup.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  name: b\n")
    refused(cli("show", "services", "--cluster", snap, "--node", "node-1"),
            "dup.yaml: line 5, column 3: the key 'name' appears twice")
    (snap / "dup.yaml").unlink()
    (snap / "dup.json").write_text('{"apiVersion": "v1", "kind": "Namespace", "kind": "Pod", "metadata": {"name": "a"}}')
    refused(cli("show", "services", "--cluster", snap, "--node", "node-1"), "dup.json: the key 'kind' appears twice")


def test_kind_that_is_not_a_string_says_so(tmp_path):
    snap = write_snapshot(tmp_path / "snap", base_objects() + [{"apiVersion": "v1", "kind": 7}])
    refused(cli("show", "services", "--cluster", snap, "--node", "node-1"),
            "kind: must be a string naming the kind, like Service (got 7)")


# ------------------------------------------------------------------ tracebacks

DURATION_ERROR = "NodeConfig node-1: spec.conntrack.tcpEstablishedTimeout: must be a duration of 1 s to 1000000000 s"


@pytest.mark.parametrize("value", ["99999999999999999h", 10**20, "0s", -5, "9" * 5000 + "s", 1.5, "1d"])
def test_durations_out_of_bounds_are_refused_at_validation(value):
    objs = base_objects()
    objs[0]["spec"]["conntrack"] = {"tcpEstablishedTimeout": value}
    assert DURATION_ERROR in config_error(objs)


def test_duration_error_in_the_cli_names_the_field(tmp_path):
    objs = base_objects()
    objs[0]["spec"]["conntrack"] = {"tcpEstablishedTimeout": "99999999999999999h"}
    snap = write_snapshot(tmp_path / "snap", objs)
    refused(cli("replay", SAMPLE_PCAP, "--cluster", snap, "--node", "node-1"), DURATION_ERROR)


def test_largest_duration_replays(tmp_path):
    objs = base_objects()
    objs[0]["spec"]["conntrack"] = {"tcpEstablishedTimeout": "277777h", "udpTimeout": 10**9}
    snap = write_snapshot(tmp_path / "snap", objs)
    assert cli("replay", SAMPLE_PCAP, "--cluster", snap, "--node", "node-1", "--json").returncode == 0


@pytest.mark.parametrize("where", ["missing folder", "a directory", "/dev/full"])
def test_unwritable_log_is_a_clean_error(tmp_path, capture, where):
    log = {"missing folder": tmp_path / "nope" / "v.jsonl", "a directory": tmp_path, "/dev/full": "/dev/full"}[where]
    refused(cli("replay", capture, "--cluster", SAMPLE_CLUSTER, "--node", "node-1", "--log", log),
            f"{log}: cannot ", "verdict log")


def test_log_and_output_on_a_full_disk_are_clean_errors(tmp_path):
    """A 64 KiB tmpfs (in a private mount namespace) fills up during the replay."""
    frames = [(i * 1000, raw(Ether() / IP(src="198.51.100.7", dst="10.244.2.10") / UDP(sport=i, dport=53)))
              for i in range(1, 2000)]
    cap = tmp_path / "many.pcap"
    write_packets(cap, frames)
    small = tmp_path / "small"
    small.mkdir()
    for flag, name in (("--log", "v.jsonl"), ("-o", "out.pcap")):
        script = (f"mount -t tmpfs -o size=64k tmpfs {small} && exec {sys.executable} -m kdp.cli replay {cap} "
                  f"--cluster {SAMPLE_CLUSTER} --node node-1 {flag} {small / name}")
        run = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                             capture_output=True, text=True, timeout=120, cwd=ROOT)
        refused(run, f"{small / name}: cannot write", "No space left on device")


def test_pcapng_with_more_interface_names_than_ports_is_counted_not_a_crash(tmp_path):
    """Names are never released: 70,000 distinct names over two sections fill the port
    table (65,535 ids); the rest get no port (classified by source), with a warning, and
    every packet is still counted."""
    frame = raw(Ether() / IP(src="198.51.100.7", dst="10.244.2.10") / UDP(sport=1, dport=2))
    ng = NG().shb()
    for i in range(40_000):
        ng.idb(name=f"if{i}")
    ng.epb(39_999, 1, frame)
    ng.shb()
    for i in range(40_000, 70_000):
        ng.idb(name=f"if{i}")
    ng.epb(0, 2, frame).epb(29_999, 3, frame)
    cap = ng.save(tmp_path / "many.pcapng")
    log = tmp_path / "v.jsonl"
    run = cli("replay", cap, "--cluster", SAMPLE_CLUSTER, "--node", "node-1", "--json", "--log", log, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads(run.stdout)
    assert summary["packets_in"] == 3 and sum(c["packets"] for c in summary["counters"]) == 3
    assert any("port table was full" in w for w in summary["warnings"])
    in_ports = [json.loads(line)["in_port"] for line in log.read_text().splitlines()]
    assert in_ports == ["if39999", "if40000", "uplink"]      # the last one by source address


# ------------------------------------------------------------------ unhelpful

def test_unknown_ingress_port_is_an_error_naming_the_known_ports(capture):
    err = refused(cli("replay", capture, "--cluster", SAMPLE_CLUSTER, "--node", "node-1", "--ingress", "eht0"),
                  "--ingress eht0: no such port", "uplink, host")
    assert "shop/" in err or "default/" in err or "/" in err


def test_large_flow_table_warns_on_stderr_relative_to_available_memory(tmp_path, monkeypatch):
    import kdp.control.node as node_module
    snap = write_snapshot(tmp_path / "snap", base_objects())
    monkeypatch.setattr(node_module, "MAX_FLOW_MEMORY_SHARE", 1e-9)
    with pytest.warns(KdpWarning, match=r"spec.conntrack.maxFlows: 262144 flows reserve \d+ MiB up front, "
                                        r"\d+% of the \d+ MiB available"):
        Dataplane.from_snapshot([snap], "node-1")
    monkeypatch.setattr(node_module, "MAX_FLOW_MEMORY_SHARE", 0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Dataplane.from_snapshot([snap], "node-1")       # 40 MiB: no warning
    code = ("import sys, kdp.control.node as n; n.MAX_FLOW_MEMORY_SHARE = 1e-9; from kdp.cli import main; "
            f"sys.exit(main(['replay', {str(SAMPLE_PCAP)!r}, '--cluster', {str(snap)!r}, '--node', 'node-1', '--json']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0
    assert run.stderr.startswith("kdp: warning: spec.conntrack.maxFlows: 262144 flows reserve")
    json.loads(run.stdout)                              # stdout stays the summary alone
