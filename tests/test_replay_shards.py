"""--workers N shards flows over N pipelines (kdp/shards.py): the output capture, the
verdict log, the counters and the summary must be identical to one worker's, on every
capture at hand, on the benchmark's workload and on random traffic mixes; and where
sharding could change the result the replay starts again on one worker and says so."""
import ipaddress
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcap

from kdp.replay import replay
from kdp._fast.shard import ShardPlan
from kdp.dataplane import Dataplane
from kdptest import shared_capture_files

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "pcaps" / "sample-cluster"
CAPTURES = shared_capture_files()
SAMPLES = [ROOT / "pcaps" / "sample.pcap", ROOT / "pcaps" / "sample.pcapng"]

NOT_SHARDED = "could not be sharded"


def _run(tmp_path, capture, workers, cluster=True, with_log=True, out_suffix=None, **kw):
    """The replay's files and numbers, and its notices other than the workers' one
    (cluster: True the sample cluster, False none, or a snapshot's path; with_log: False,
    the output capture alone; a classic pcap input runs in chunks either way,
    kdp.shards.ChunkedRun; out_suffix: the output's, else the input's)."""
    suffix = out_suffix or (Path(capture).suffix if str(capture).endswith('.pcapng') else '.pcap')
    out = tmp_path / f"out{workers}{suffix}"
    log = tmp_path / f"log{workers}.jsonl" if with_log else None
    extra = dict(cluster=[CLUSTER if cluster is True else cluster], node="node-1") if cluster else {}
    r = replay(capture, out, log=log, workers=workers, **extra, **kw)
    mine = [n for n in r.notices if n.startswith("--workers")]
    rest = [n for n in r.notices if not n.startswith("--workers")]
    facts = (out.read_bytes(), log.read_bytes() if log else None, r.packets_in, r.packets_out,
             r.counters.tolist(), r.verdicts.tolist(), r.flows, r.dns, r.services, rest, r.warnings)
    return facts, mine


def _same_on(tmp_path, capture, cluster=True, workers=(2, 3), with_log=True, out_suffix=None, **kw):
    """Replays on 1 and on each of `workers`; returns the sharded runs' workers notices."""
    one, none = _run(tmp_path, capture, 1, cluster, with_log, out_suffix, **kw)
    assert none == []
    notes = []
    for w in workers:
        facts, mine = _run(tmp_path, capture, w, cluster, with_log, out_suffix, **kw)
        for name, a, b in zip(("output", "log", "packets in", "packets out", "counters", "verdicts",
                               "conntrack", "dns", "services", "notices", "warnings"), one, facts):
            assert a == b, f"{Path(capture).name}, {w} workers: the {name} differs from one worker's"
        notes.append(mine)
    return notes


@pytest.fixture
def chunked(monkeypatch):
    """Counts the sharded replays that ran in chunks (kdp.shards.ChunkedRun), with chunks of
    a few batches (CHUNK_PACKETS 8: flows span chunks, a chunk holds 1 to 8 batches)."""
    import kdp.shards
    runs = []
    real = kdp.shards.ChunkedRun.replay

    def counted(self, *a, **kw):
        runs.append(self.chunk)
        return real(self, *a, **kw)
    monkeypatch.setattr(kdp.shards.ChunkedRun, "replay", counted)
    monkeypatch.setattr(kdp.shards.ChunkedRun, "CHUNK_PACKETS", 8)
    return runs


@pytest.mark.parametrize("capture", SAMPLES + CAPTURES, ids=lambda p: p.name)
@pytest.mark.parametrize("cluster", [True, False], ids=["sample-cluster", "no-cluster"])
@pytest.mark.parametrize("with_log, batch_size", [(True, 256), (False, 256), (True, 2)],
                         ids=["log", "output-only", "log-chunks-of-8"])
def test_every_capture_is_the_same_on_two_and_three_workers(tmp_path, capture, cluster, with_log, batch_size,
                                                            chunked):
    # (a classic pcap in chunks of 8 packets, or of one batch of 256; batch 2: 4 batches a chunk)
    notes = _same_on(tmp_path, capture, cluster, with_log=with_log, batch_size=batch_size)
    for mine in notes:
        # sharded, or fallen back and saying why: never silently something else
        assert mine == [] or NOT_SHARDED in mine[0], mine
    from kdp.io.capture import open_capture
    reader = open_capture(capture)
    classic = reader.classic_file           # (some .pcap files hold pcapng)
    reader.close()
    if classic and all(mine == [] for mine in notes):
        assert chunked, "a classic pcap file, sharded, runs in chunks (with its log too)"


def test_the_sample_is_sharded_not_fallen_back(tmp_path, chunked):
    # its ClientIP-affinity UDP flows, ICMP error, NodePort, LoadBalancer, DNS and ARP all shard
    for batch_size in (1, 2, 5, 256):
        chunked.clear()
        notes = _same_on(tmp_path, SAMPLES[0], batch_size=batch_size)
        assert notes == [[], []], (batch_size, notes)
        # (with its log: in chunks of 8 packets' whole batches, kdp.shards.ChunkedRun)
        assert chunked == [max(batch_size, 8 - 8 % batch_size)] * 2
    # in chunks of 8 packets, of 1 (a chunk of one packet), of 2 batches of 5, of one batch
    # of 256 (the whole sample), with the output alone and with the log
    for batch_size, chunk in ((1, 8), (1, 1), (5, 10), (256, 256)):
        for with_log in (False, True):
            chunked.clear()
            import kdp.shards
            kdp.shards.ChunkedRun.CHUNK_PACKETS = chunk
            notes = _same_on(tmp_path, SAMPLES[0], batch_size=batch_size, with_log=with_log)
            assert notes == [[], []], (batch_size, notes)
            assert chunked == [max(batch_size, chunk)] * 2, chunked


def test_the_benchmark_workload_is_sharded_and_the_same(tmp_path):
    from kdp.benchmarks.pipeline import NODE, _targets, cluster_docs, synth_capture
    from kdp.control import Cluster, compile as compile_cluster
    import yaml
    docs = cluster_docs(100, 1000)
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    tables = compile_cluster(Cluster.from_documents(docs, node=NODE))
    cap = tmp_path / "in.pcap"
    info = synth_capture(cap, 30_000, tables, _targets(docs))
    assert info["replies"] > 5000 and min(info["flow_kinds"].values()) > 0
    for with_log in (True, False):          # (in chunks of 4,096 packets, 8 batches)
        runs = {}
        for w in (1, 2, 3):
            out, log = tmp_path / f"o{w}.pcap", (tmp_path / f"l{w}.jsonl" if with_log else None)
            r = replay(cap, out, cluster=[cluster], node=NODE, log=log, workers=w, batch_size=512)
            runs[w] = (out.read_bytes(), log.read_bytes() if log else None, r.counters.tolist(), r.flows,
                       r.services, r.dns, r.verdicts.tolist(), r.packets_out)
            assert not [n for n in r.notices if n.startswith("--workers")], r.notices
        assert runs[1] == runs[2] == runs[3]


def test_a_fragment_makes_the_replay_start_again_on_one_worker(tmp_path):
    frames = [Ether() / IP(src="10.244.1.50", dst="10.96.0.10") / TCP(sport=41000 + k, dport=80, flags="S")
              for k in range(5)]
    frames.insert(3, Ether() / IP(src="10.244.1.50", dst="10.244.2.10", flags="MF", id=7) / UDP(sport=5, dport=9)
                  / (b"x" * 64))
    cap = tmp_path / "frag.pcap"
    wrpcap(str(cap), frames)
    for with_log in (True, False):
        notes = _same_on(tmp_path, cap, with_log=with_log)
        assert all(NOT_SHARDED in m[0] and "fragment" in m[0] for m in notes), notes


@pytest.mark.parametrize("kw, why", [({"count": 3}, "-c"), ({"filter": "tcp"}, "--filter"),
                                     ({"flows": "FLOWS"}, "--flows")])
def test_options_that_run_on_one_worker_say_so(tmp_path, kw, why):
    if kw.get("flows"):
        kw = {"flows": tmp_path / "flows.jsonl"}
    facts1, _ = _run(tmp_path, SAMPLES[0], 1, **kw)
    facts2, mine = _run(tmp_path, SAMPLES[0], 2, **kw)
    assert facts1 == facts2 and len(mine) == 1 and why in mine[0] and "one worker" in mine[0]


def test_the_shard_key_is_symmetric_through_the_sample_services():
    dp = Dataplane.from_snapshot([CLUSTER], node="node-1")
    plan = ShardPlan(dp.pipeline.services, 2)
    a = ipaddress.ip_address
    # client -> ClusterIP and the backend's answer: the client's address decides
    assert plan.key(4, 6, a("10.244.1.50"), a("10.96.0.10"), 41002, 80) == \
        plan.key(4, 6, a("10.244.1.10"), a("10.244.1.50"), 8080, 41002)
    # pod to pod: the ports, either way
    assert plan.key(4, 17, a("10.244.1.50"), a("10.244.2.99"), 1000, 2000) == \
        plan.key(4, 17, a("10.244.2.99"), a("10.244.1.50"), 2000, 1000) == (1000 ^ 2000) & 63
    # an answer to a masqueraded flow (to the node's address): its port
    assert plan.key(4, 6, a("10.244.1.11"), a("192.168.56.11"), 9090, 40001) == 40001 & 63
    # ICMP: the echo identifier
    assert plan.key(4, 1, a("10.244.1.50"), a("8.8.8.8"), 4660, 8) == 4660 & 63


# ------------------------------------------------------------------- random traffic mixes

NODE = "192.168.56.11"
CLIENTS = ["10.244.1.50", "10.244.1.51", "10.244.1.52", "203.0.113.7", "198.51.100.9"]
MAC_A, MAC_B = "02:00:00:00:00:0a", "02:00:00:00:00:0b"


def _eth():
    return Ether(src=MAC_A, dst=MAC_B)


def _flow(kind, client, port, backend_pick, flags_pick):
    """Frames of one piece of traffic of the sample cluster (see pcaps/sample.txt)."""
    if kind == "clusterip":         # shop/web: ClusterIP 10.96.0.10:80 -> 10.244.{1,2}.10:8080
        be = ["10.244.1.10", "10.244.2.10"][backend_pick]
        return [_eth() / IP(src=client, dst="10.96.0.10") / TCP(sport=port, dport=80, flags="S"),
                _eth() / IP(src=be, dst=client) / TCP(sport=8080, dport=port, flags="SA"),
                _eth() / IP(src=client, dst="10.96.0.10") / TCP(sport=port, dport=80, flags="A")]
    if kind == "nodeport":          # shop/api NodePort 30080 (masqueraded): answers to guessed ports
        return [_eth() / IP(src=client, dst=NODE) / TCP(sport=port, dport=30080, flags="S"),
                _eth() / IP(src="10.244.1.11", dst=NODE) / TCP(sport=9090, dport=port ^ backend_pick,
                                                                flags="SA")]
    if kind == "affinity":          # shop/cache UDP, ClientIP affinity, and its ICMP error
        frames = [_eth() / IP(src=client, dst="10.96.0.40") / UDP(sport=port, dport=11211) / b"get k"]
        if flags_pick:
            frames.append(_eth() / IP(src="10.244.1.40", dst=client) / ICMP(type=3, code=3)
                          / IP(src=client, dst="10.244.1.40") / UDP(sport=port, dport=11211))
        return frames
    if kind == "podpod":
        return [_eth() / IP(src=client, dst="10.244.2.77") / UDP(sport=port, dport=7000) / b"hi",
                _eth() / IP(src="10.244.2.77", dst=client) / UDP(sport=7000, dport=port) / b"ho"]
    if kind == "echo":
        return [_eth() / IP(src=client, dst="8.8.8.8") / ICMP(type=8, id=port & 0xFFFF, seq=1),
                _eth() / IP(src="8.8.8.8", dst=client) / ICMP(type=0, id=port & 0xFFFF, seq=1)]
    if kind == "arp":
        return [Ether(src=MAC_B, dst="ff:ff:ff:ff:ff:ff") /
                ARP(op=1 + flags_pick, hwsrc=MAC_B, psrc="10.244.1.1", pdst=client)]
    raise AssertionError(kind)


traffic = st.lists(st.tuples(st.sampled_from(["clusterip", "nodeport", "affinity", "podpod", "echo", "arp"]),
                             st.sampled_from(CLIENTS),
                             st.sampled_from([1024, 1088, 33000, 33064, 40000, 51327, 65535]),
                             st.integers(0, 1), st.integers(0, 1)),
                   min_size=1, max_size=40)


@pytest.fixture(scope="module")
def narrow_cluster(tmp_path_factory):
    """The sample cluster with 192 masquerade ports (3 for each shard key): masquerade's
    port choice meets taken ports, and runs out of them."""
    import shutil
    path = tmp_path_factory.mktemp("narrow") / "cluster"
    shutil.copytree(CLUSTER, path)
    config = path / "nodeconfig.yaml"
    text = config.read_text()
    assert "snatPortRange: 32768-60999" in text
    config.write_text(text.replace("snatPortRange: 32768-60999", "snatPortRange: 40000-40191"))
    return path


@settings(max_examples=25, deadline=None)
@given(mix=traffic, batch_size=st.sampled_from([1, 3, 64]), fragment=st.booleans(), narrow=st.booleans(),
       with_log=st.booleans(), chunk=st.sampled_from([1, 7, 4096]))
def test_random_traffic_is_the_same_on_two_and_three_workers(tmp_path_factory, narrow_cluster, mix, batch_size,
                                                             fragment, narrow, with_log, chunk):
    # (in chunks of `chunk` packets or the batch, with the log or the output alone)
    import kdp.shards
    kdp.shards.ChunkedRun.CHUNK_PACKETS = chunk
    try:
        _random_traffic(tmp_path_factory, narrow_cluster, mix, batch_size, fragment, narrow, with_log)
    finally:
        kdp.shards.ChunkedRun.CHUNK_PACKETS = CHUNK_PACKETS


CHUNK_PACKETS = __import__("kdp.shards").shards.ChunkedRun.CHUNK_PACKETS


def _random_traffic(tmp_path_factory, narrow_cluster, mix, batch_size, fragment, narrow, with_log):
    tmp = tmp_path_factory.mktemp("mix")
    frames = [f for piece in mix for f in _flow(*piece)]
    if fragment:
        frames.insert(len(frames) // 2, _eth() / IP(src="10.244.1.50", dst="10.244.2.10", flags="MF", id=9)
                      / UDP(sport=5, dport=9) / (b"x" * 64))
    for k, f in enumerate(frames):
        f.time = 1_763_700_000 + k / 1000
    cap = tmp / "mix.pcap"
    wrpcap(str(cap), frames)
    notes = _same_on(tmp, cap, narrow_cluster if narrow else True, batch_size=batch_size, with_log=with_log)
    for mine in notes:
        if fragment:
            assert mine and NOT_SHARDED in mine[0] and "fragment" in mine[0], mine
        else:
            assert mine == [] or NOT_SHARDED in mine[0], mine


@pytest.mark.parametrize("value, message", [("0", "--workers must be at least 1, got 0"),
                                            ("-3", "--workers must be at least 1, got -3"),
                                            ("two", "--workers takes a number of cores (1..64), got 'two'"),
                                            ("65", "--workers is at most 64")])
def test_a_bad_workers_value_is_one_line_and_exit_2(value, message):
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-m", "kdp", "replay", str(SAMPLES[0]), f"--workers={value}"],
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and message in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr


def test_standard_output_is_not_sharded(tmp_path):
    # what went to stdout cannot be taken back if sharding turned out unsafe
    import subprocess
    import sys
    base = [sys.executable, "-m", "kdp", "replay", str(SAMPLES[0]), "--cluster", str(CLUSTER),
            "--node", "node-1", "-o", "-", "--no-progress"]
    one = subprocess.run(base, capture_output=True, timeout=60)
    two = subprocess.run(base + ["--workers", "2"], capture_output=True, timeout=60)
    assert one.returncode == two.returncode == 0 and one.stdout == two.stdout and len(one.stdout) > 24
    assert b"standard output" in two.stderr and b"not sharded" in two.stderr


def test_a_log_selection_is_the_same_when_sharded(tmp_path, chunked):
    # --log-only: the lines of the kept verdicts, their index and frame numbers those of
    # every packet; in chunks of 8 (batches of 1 and 3), with and without the output
    for batch_size in (1, 3):
        notes = _same_on(tmp_path, SAMPLES[0], log_only="drop,reject", batch_size=batch_size)
        assert notes == [[], []]
    assert chunked == [8, 8, 6, 6]
    files = {}
    for w in (1, 2):
        log = tmp_path / f"only{w}.jsonl"
        replay(SAMPLES[0], None, log=log, log_only="forward", workers=w, cluster=[CLUSTER], node="node-1",
               batch_size=2)
        files[w] = log.read_bytes()
    assert files[1] == files[2] and files[1].count(b"\n") > 5 and b'"frame":null' in files[1]
    assert chunked[-1] == 8
    import json
    lines = [json.loads(x) for x in files[1].splitlines()]
    assert {x["verdict"] for x in lines} == {"forward"} and lines[-1]["index"] > len(lines) - 1


def test_a_multi_node_replay_says_it_ran_on_one_worker(tmp_path):
    import subprocess
    import sys
    run = subprocess.run([sys.executable, "-m", "kdp", "replay", str(SAMPLES[0]), "--cluster", str(CLUSTER),
                          "--node", "node-1,node-2", "--workers", "2", "--no-progress", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    import json
    notices = json.loads(run.stdout)["notices"]
    assert any("multi-node replay runs on one worker" in n for n in notices), notices


def test_a_client_keeps_the_whole_masquerade_range_and_sharding_falls_back(tmp_path, narrow_cluster):
    # 192 ports, 3 of them with the client's key: its 10 connections to one NodePort backend
    # take 7 ports outside the key (one worker as Linux would: a free port of the range, not
    # a refusal), and a sharded replay sees those answers' other key and starts again on one
    import json
    frames = [_eth() / IP(src="10.244.1.50", dst=NODE) / TCP(sport=41000 + k, dport=30080, flags="S")
              for k in range(10)]
    for k, f in enumerate(frames):
        f.time = 1_763_700_000 + k / 1000
    cap = tmp_path / "many.pcap"
    wrpcap(str(cap), frames)
    (out, log, *_), _ = _run(tmp_path, cap, 1, narrow_cluster)
    lines = [json.loads(x) for x in log.splitlines()]
    assert [x["reason"] for x in lines] == ["forwarded"] * 10
    ports = [x["sport"] for x in lines]
    assert len(set(ports)) == 10 and all(40000 <= p <= 40191 for p in ports)
    notes = _same_on(tmp_path, cap, narrow_cluster)
    assert all(mine and NOT_SHARDED in mine[0] for mine in notes), notes


# ------------------------------------------------------------ the workers write in place


def test_the_workers_write_a_pcap_output_and_the_log_in_place(tmp_path, monkeypatch):
    # a pcapng input (handed over, kdp.shards.ShardedRun) with a classic pcap output and a
    # log in regular files: the workers put each batch's records and lines where they go
    # (kdp.shards.PlacedOutput), a group of batches at a time, group k on worker k mod N;
    # the bytes are one worker's, at batch sizes that split the sample's flows over many
    # batches and groups
    import kdp.shards
    puts = []
    real = kdp.shards.PlacedOutput.put

    def counted(self, slot, items):
        puts.extend(placing[0] for _batch, placing in items)
        return real(self, slot, items)
    monkeypatch.setattr(kdp.shards.PlacedOutput, "put", counted)
    for group_packets in (2048, 4):         # (4: many groups of 1 to 4 batches in flight)
        monkeypatch.setattr(kdp.shards.ShardedRun, "GROUP_PACKETS", group_packets)
        for batch_size in (1, 3, 256):
            puts.clear()
            notes = _same_on(tmp_path, SAMPLES[1], batch_size=batch_size, out_suffix=".pcap")
            assert notes == [[], []]
            assert puts and sorted(puts) == sorted(list(range(max(puts) + 1)) * 2), "every batch put once per run"


def test_the_log_alone_and_the_output_alone_are_written_in_place_too(tmp_path):
    for output, log in ((None, "log"), ("out.pcap", None)):
        files = {}
        for w in (1, 2):
            out = tmp_path / f"{w}{output}" if output else None
            lg = tmp_path / f"{w}{log}" if log else None
            r = replay(SAMPLES[0], out, log=lg, workers=w, cluster=[CLUSTER], node="node-1", batch_size=4)
            assert not [n for n in r.notices if n.startswith("--workers")], r.notices
            files[w] = ((out.read_bytes() if out else None), (lg.read_bytes() if lg else None), r.packets_out)
        assert files[1] == files[2], (output, log)


def test_pcapng_and_files_that_are_not_regular_are_written_by_the_replays_thread(tmp_path):
    from kdp.replay import _placeable
    from kdp.io.capture import LogFile
    assert _placeable(tmp_path / "new.pcap", None)          # (created as a regular file)
    assert not _placeable(tmp_path / "new.pcapng", None)    # interface blocks go in order
    assert not _placeable("/dev/null", None)                # pwrite(2) wants a file
    log = LogFile("/dev/null")
    try:
        assert not _placeable(None, log)
    finally:
        log.close()
    # and such a replay is sharded all the same, its files one worker's
    notes = _same_on(tmp_path, SAMPLES[1])                  # (.pcapng in, .pcapng out)
    assert notes == [[], []]


def test_a_log_that_cannot_be_written_is_one_error_and_no_worker_waits_for_ever(tmp_path):
    import os
    import threading
    import numpy as np
    from kdp.errors import KdpError
    from kdp.shards import PlacedOutput
    dp = Dataplane.from_snapshot([CLUSTER], "node-1")
    from kdp._fast.packet import Batch
    from kdp.io.capture import open_capture
    reader = open_capture(SAMPLES[0], ports=dp.ports)
    batches = [Batch(8) for _ in range(3)]
    for b in batches:
        assert reader.fill(b) == 8
    reader.close()
    fd = os.open(tmp_path / "ro.jsonl", os.O_RDONLY | os.O_CREAT)      # pwrite: EBADF
    try:
        placed = PlacedOutput(lambda: None, fd, "ro.jsonl", lambda b: None, 3)
        plans = []
        for k, b in enumerate(batches):
            dp.process(b, None)
            log = dp.verdict_log(None, 8)
            log.capture_orig(b)
            plans.append(placed.plan(b, log, 8 * k))
        errors = []

        def put(k):
            try:
                placed.put(k, [(batches[k], plans[k])])
            except KdpError as exc:
                errors.append(str(exc))
        threads = [threading.Thread(target=put, args=(k,)) for k in (2, 1, 0)]   # out of order
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in threads)
        assert len(errors) == 3 and all(e.startswith("ro.jsonl: cannot write the verdict log: ") for e in errors)
    finally:
        os.close(fd)


def test_run_view_refuses_a_pipeline_that_is_not_sharded_and_arrays_too_small():
    # Pipeline.run_view (a worker's start_view and run in one GIL release) checks what it
    # is given, with an error rather than a write past an array
    import numpy as np
    from kdp._fast.packet import Batch
    from kdp._fast.shard import share_buffer
    dp = Dataplane.from_snapshot([CLUSTER], "node-1")
    base, view = Batch(8), Batch(8)
    share_buffer(view, base)
    ok = dict(who=np.zeros(8, np.uint8), vshards=np.zeros(8, np.uint8), index=np.zeros(8, np.uint32),
              view_vshards=np.zeros(8, np.uint8), mine=np.zeros(8, np.uint8), notes=None)
    with pytest.raises(ValueError, match="sharded pipeline"):
        dp.pipeline.run_view(view, base, **ok)
    dp.pipeline.set_shard(ShardPlan(dp.pipeline.services, 2), 0)
    for name, bad in (("index", np.zeros(8, np.uint8)), ("mine", np.zeros(4, np.uint8))):
        with pytest.raises(ValueError, match="contiguous arrays"):
            dp.pipeline.run_view(view, base, **{**ok, name: bad})
    with pytest.raises(ValueError, match="does not share"):
        dp.pipeline.run_view(Batch(8), base, **ok)


def test_a_damaged_capture_is_written_up_to_the_damage_then_the_same_error(tmp_path):
    # the reader raises after delivering every packet before the damage (kdp.io.capture):
    # the sharded replay processes and writes those first, as one worker does, whatever
    # is still in flight, and reports the same error
    import struct
    from kdp.errors import CaptureError
    cap = tmp_path / "damaged.pcap"
    cap.write_bytes(SAMPLES[0].read_bytes() + struct.pack("=IIII", 1, 0, 0x7FFFFFFF, 0x7FFFFFFF) + b"x" * 64)
    files = {}
    for w in (1, 2, 3):
        out, log = tmp_path / f"o{w}.pcap", tmp_path / f"l{w}.jsonl"
        with pytest.raises(CaptureError) as err:
            replay(cap, out, log=log, workers=w, cluster=[CLUSTER], node="node-1", batch_size=4)
        files[w] = (out.read_bytes(), log.read_bytes(), str(err.value))
    assert files[1][0] and files[1][1] and "record length" in files[1][2]
    assert files[1] == files[2] == files[3]


# ------------------------------------------------- in chunks: each worker reads its own packets


def test_a_damaged_capture_in_chunks_is_written_up_to_the_damage_then_the_same_error(tmp_path, chunked):
    # the damage in the middle of a chunk (the sample's 35 packets, chunks of 8): the
    # packets before it are processed and written, then the reader's error is raised
    import struct
    from kdp.errors import CaptureError
    cap = tmp_path / "damaged.pcap"
    cap.write_bytes(SAMPLES[0].read_bytes() + struct.pack("=IIII", 1, 0, 0x7FFFFFFF, 0x7FFFFFFF) + b"x" * 64)
    for with_log in (False, True):
        files = {}
        for w in (1, 2, 3):
            out = tmp_path / f"o{w}.pcap"
            log = tmp_path / f"l{w}.jsonl" if with_log else None
            with pytest.raises(CaptureError) as err:
                replay(cap, out, log=log, workers=w, cluster=[CLUSTER], node="node-1", batch_size=2)
            files[w] = (out.read_bytes(), log.read_bytes() if log else None, str(err.value))
        assert len(files[1][0]) > 24 and "record length" in files[1][2]
        if with_log:
            assert files[1][1].count(b"\n") == 35          # (every packet before the damage)
        assert files[1] == files[2] == files[3]
    assert chunked == [8, 8] * 2


def test_a_truncated_capture_in_chunks_warns_as_one_worker(tmp_path, chunked):
    cap = tmp_path / "cut.pcap"
    cap.write_bytes(SAMPLES[0].read_bytes()[:-30])          # the last record cut short
    (facts1, none), (facts2, mine) = (_run(tmp_path, cap, w, with_log=False, batch_size=3) for w in (1, 2))
    assert none == mine == [] and facts1 == facts2
    assert facts1[2] == 34 and any("ends inside a packet record" in x for x in facts1[-1]), facts1[-1]
    assert chunked == [6]                   # (chunks of whole batches)


def test_arp_every_worker_learns_from_sits_at_chunk_boundaries(tmp_path, chunked):
    # a neighbour learned from an ARP reply (processed by worker 0, seen by every worker at
    # its place) decides where the packets after it go: ARP first, last and inside chunks
    frames = []
    for k in range(12):
        frames.append(_eth() / IP(src="10.244.1.50", dst="10.96.0.10") / TCP(sport=41000 + k, dport=80, flags="S"))
        if k % 3 == 0:
            frames.append(Ether(src=MAC_B, dst="ff:ff:ff:ff:ff:ff") /
                          ARP(op=2, hwsrc=f"02:00:00:00:01:{k:02x}", psrc="10.244.1.10", pdst="10.244.1.1"))
    for k, f in enumerate(frames):
        f.time = 1_763_700_000 + k / 1000
    cap = tmp_path / "arp.pcap"
    wrpcap(str(cap), frames)
    for batch_size in (1, 2, 4):
        notes = _same_on(tmp_path, cap, batch_size=batch_size, with_log=False)
        assert notes == [[], []]
    assert chunked == [8, 8] * 3


def test_pcapng_and_a_log_to_a_pipe_are_not_run_in_chunks(tmp_path, chunked):
    # (pcapng: its interface blocks; a log that is a pipe: pwritev(2) cannot seek it, the
    # replay's thread writes it, kdp.shards.ShardedRun)
    import os
    import threading
    assert _same_on(tmp_path, SAMPLES[1], with_log=False) == [[], []]
    assert _same_on(tmp_path, SAMPLES[1], with_log=True) == [[], []]
    assert chunked == []
    logs = {}
    for w in (1, 2):
        r, wfd = os.pipe()
        got = []
        reader = threading.Thread(target=lambda: got.append(b"".join(iter(lambda: os.read(r, 65536), b""))))
        reader.start()
        try:
            res = replay(SAMPLES[0], tmp_path / f"p{w}.pcap", log=f"/proc/self/fd/{wfd}", workers=w,
                         cluster=[CLUSTER], node="node-1", batch_size=4)
        finally:
            os.close(wfd)
            reader.join(timeout=60)
            os.close(r)
        assert not [n for n in res.notices if n.startswith("--workers")], res.notices
        logs[w] = got[0]
    assert chunked == []
    assert logs[1] == logs[2] and logs[1].count(b"\n") == 35
    replay(SAMPLES[0], tmp_path / "f.pcap", log=tmp_path / "f.jsonl", cluster=[CLUSTER], node="node-1",
           batch_size=4)
    assert logs[1] == (tmp_path / "f.jsonl").read_bytes()      # (what one worker writes to a file)
    assert _same_on(tmp_path, SAMPLES[0], with_log=True, workers=(2,)) == [[]]
    assert chunked == [256]                 # (a regular log file: in chunks; at least a batch)


def test_a_log_that_cannot_be_written_in_chunks_is_one_line_and_exit_2(tmp_path):
    # a file size limit (RLIMIT_FSIZE) the output fits in and the log does not: pwritev(2)
    # fails (EFBIG), the replay says so in one line and exits 2, as one worker does
    import resource
    import subprocess
    import sys
    limit = 8192
    runs = {}
    for w in (1, 2):
        out, log = tmp_path / f"o{w}.pcap", tmp_path / f"l{w}.jsonl"
        run = subprocess.run([sys.executable, "-m", "kdp", "replay", str(SAMPLES[0]), "--cluster", str(CLUSTER),
                              "--node", "node-1", "-o", str(out), "--log", str(log), "--no-progress",
                              "--workers", str(w), "--batch-size", "4"],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path,
                             preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
        runs[w] = run
        assert run.returncode == 2, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr, run.stderr
        assert f"{log}: cannot write the verdict log: File too large" in run.stderr, run.stderr
        assert out.stat().st_size > 24
    assert runs[1].stderr == runs[2].stderr.replace("l2.jsonl", "l1.jsonl")



def test_a_log_that_cannot_be_created_is_the_same_error_in_chunks(tmp_path):
    # a log in a folder that does not exist: the same one-line error as one worker's, and
    # no output written before it
    from kdp.errors import KdpError
    errors = {}
    for w in (1, 2):
        out = tmp_path / f"o{w}.pcap"
        with pytest.raises(KdpError) as err:
            replay(SAMPLES[0], out, log=tmp_path / "missing" / "l.jsonl", workers=w, cluster=[CLUSTER],
                   node="node-1")
        errors[w] = (str(err.value), out.exists())
    assert errors[1] == errors[2] and "cannot create the verdict log" in errors[1][0] and not errors[1][1]


def test_the_reader_indexes_whole_batches_as_fill_reads_them():
    # CaptureReader.index: the records' offsets in its mapped window, a chunk a multiple of
    # the batch but at the end, counted as fill() counts them
    import numpy as np
    from kdp._fast.packet import Batch
    from kdp.io.capture import open_capture
    data = SAMPLES[0].read_bytes()
    a, b = open_capture(SAMPLES[0]), open_capture(SAMPLES[0])
    try:
        offsets = np.zeros(10, dtype=np.uint64)
        sizes = []
        while True:
            n = a.index(offsets, 4)                 # (10 offsets: chunks of 8)
            if not n:
                break
            sizes.append(n)
        assert sizes == [8, 8, 8, 8, 3] and a.packets == 35
        batch = Batch(64)
        assert b.fill(batch) == 35
        assert (a.packets, a.outgoing, a.otherhost, a.unsupported) == (b.packets, b.outgoing, b.otherhost,
                                                                      b.unsupported)
        with pytest.raises(ValueError, match="at least one batch"):
            a.index(np.zeros(3, dtype=np.uint64), 4)
    finally:
        a.close()
        b.close()
    # the first record's offset: right after the 24-byte file header
    c = open_capture(SAMPLES[0])
    try:
        offsets = np.zeros(4, dtype=np.uint64)
        assert c.index(offsets, 1) == 4
        first = int(offsets[0])
        incl = int.from_bytes(data[24 + 8:24 + 12], "little")
        assert int(offsets[1]) - first == 16 + incl
    finally:
        c.close()


def test_a_capture_larger_than_the_readers_map_is_the_same_in_chunks(tmp_path, monkeypatch):
    # 70 MB: the reader maps 64 MiB at a time; a chunk ends where the map does (in whole
    # batches) and the next one maps on from there
    import struct
    import kdp.shards
    monkeypatch.setattr(kdp.shards.ChunkedRun, "CHUNK_PACKETS", 20000)     # (27 MB: the third passes the map's end)
    frame = bytes(Ether(src=MAC_A, dst=MAC_B) / IP(src="10.244.1.50", dst="10.244.2.77") / UDP(sport=1, dport=7)
                  / (b"x" * 1300))
    n = 70 * 1024 * 1024 // (16 + len(frame)) + 1
    head = struct.pack("=IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    recs = bytearray()
    for k in range(n):
        f = bytearray(frame)
        f[34:36] = (1024 + k % 60000).to_bytes(2, "big")    # (the UDP source port: many flows)
        recs += struct.pack("=IIII", 1_763_700_000 + k // 1000, k % 1000, len(f), len(f)) + f
    cap = tmp_path / "big.pcap"
    cap.write_bytes(head + bytes(recs))
    assert cap.stat().st_size > 64 * 1024 * 1024
    one, _ = _run(tmp_path, cap, 1, cluster=True, with_log=False, batch_size=100)
    two, mine = _run(tmp_path, cap, 2, cluster=True, with_log=False, batch_size=100)
    assert mine == [] and one == two and one[2] == n
    # (the chunks: one ends short, at the map's end, in whole batches)
    import numpy as np
    from kdp.io.capture import open_capture
    reader = open_capture(cap)
    try:
        offsets = np.zeros(20000, dtype=np.uint64)
        sizes = []
        while k := reader.index(offsets, 100):
            sizes.append(k)
    finally:
        reader.close()
    assert sum(sizes) == n and any(k < 20000 and k % 100 == 0 for k in sizes[:-1]), sizes


def test_the_light_key_agrees_with_the_full_parse():
    # chunk.pyx keys untagged Ethernet IPv4 TCP/UDP from their headers alone; every other
    # frame (and a fragment, which must make the replay fall back) goes through parse_frame
    import numpy as np
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q
    from kdp._fast.chunk import light_key
    from kdp._fast.packet import Batch
    from kdp._fast.shard import assign
    dp = Dataplane.from_snapshot([CLUSTER], node="node-1")
    plan = ShardPlan(dp.pipeline.services, 2)
    frames = []
    for client in CLIENTS + [NODE, "10.244.1.10", "10.244.1.11"]:
        for port in (80, 1024, 8080, 9090, 30080, 33000, 51327, 65535):
            for dst, dport in (("10.96.0.10", 80), ("10.244.1.10", 8080), (NODE, 30080), (NODE, port),
                               ("10.244.2.77", 7000), ("10.96.0.40", 11211)):
                frames.append(_eth() / IP(src=client, dst=dst) / TCP(sport=port, dport=dport))
                frames.append(_eth() / IP(src=dst, dst=client) / UDP(sport=dport, dport=port))
    light_only = len(frames)
    frames += [_eth() / IP(src="10.244.1.50", dst="10.96.0.10", options=b"\x01" * 4) / TCP(sport=1, dport=80),
               _eth() / IP(src="10.244.1.50", dst="10.244.2.10", flags="MF") / UDP(sport=5, dport=9),
               _eth() / IP(src="10.244.1.50", dst="8.8.8.8") / ICMP(type=8, id=77),
               Ether(src=MAC_A, dst=MAC_B) / Dot1Q(vlan=5) / IP(src="10.244.1.50", dst="10.96.0.10") / TCP(dport=80),
               _eth() / IPv6(src="fd00:244::5", dst="fd00:96::10") / TCP(sport=4, dport=80),
               Ether(src=MAC_B, dst="ff:ff:ff:ff:ff:ff") / ARP(psrc="10.244.1.1", pdst="10.244.1.50")]
    keyed = 0
    for k in range(0, len(frames), 64):
        part = frames[k:k + 64]
        b = Batch(64)
        for f in part:
            b.append(bytes(f))
        dp.pipeline.parse(b)
        who, vs = np.zeros(64, np.uint8), np.zeros(64, np.uint8)
        assign(plan, b, who, vs, 0)
        for j, f in enumerate(part):
            v = light_key(plan, bytes(f))
            if v is not None:
                keyed += 1
                assert v == vs[j] and who[j] == plan.owner_of(v), f.summary()
            else:
                assert k + j >= light_only, f.summary()     # (only the unusual ones go the long way)
    assert keyed == light_only + 1                          # (+ the IPv4 options: its ports are read too)
