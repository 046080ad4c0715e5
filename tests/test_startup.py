"""Start-up. A snapshot read from the caches imports no PyYAML. The CLI's replay builds its data plane with the cyclic collector paused and then
freezes it (gc.freeze): that is only free of cost when the build leaves no garbage
cycles behind and the data plane holds none (else freezing would keep them for the
life of the process), and it must change no result."""
import gc
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdp.benchmarks.pipeline import NODE, cluster_docs
from kdp.control import Cluster, compile as compile_cluster
from kdp.dataplane import Dataplane
from kdp.replay import replay

ROOT = Path(__file__).resolve().parent.parent
SAMPLE, CLUSTER = ROOT / "pcaps" / "sample.pcap", ROOT / "pcaps" / "sample-cluster"


@pytest.fixture
def paused_collector():
    gc.collect()
    gc.disable()
    yield
    gc.enable()


@pytest.mark.parametrize("cache", ["off", "on"])
def test_building_the_sample_dataplane_makes_and_holds_no_reference_cycles(paused_collector, cache,
                                                                           tmp_path, monkeypatch):
    monkeypatch.setenv("KDP_CACHE_DIR", "off" if cache == "off" else str(tmp_path / "cache"))
    Dataplane.from_snapshot([CLUSTER], "node-1")            # (fills the cache when on)
    gc.collect()
    dp = Dataplane.from_snapshot([CLUSTER], "node-1")
    assert gc.collect() == 0                                # no garbage cycles made
    del dp
    assert gc.collect() == 0                                # none held: all freed by refcount


def test_a_bench_clusters_dataplane_makes_and_holds_no_reference_cycles(paused_collector):
    dp = Dataplane(compile_cluster(Cluster.from_documents(cluster_docs(200, 2_000), node=NODE)))
    assert dp.tables is not None and len(dp.tables.records) >= 200
    assert gc.collect() == 0
    del dp
    assert gc.collect() == 0


def test_the_cli_replay_with_the_frozen_dataplane_writes_what_the_library_writes(tmp_path):
    out, log = tmp_path / "cli.pcap", tmp_path / "cli.jsonl"
    run = subprocess.run([sys.executable, "-m", "kdp", "replay", str(SAMPLE), "--cluster", str(CLUSTER),
                          "--node", "node-1", "-o", str(out), "--log", str(log), "--no-progress"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "KDP_CACHE_DIR": "off"})
    assert run.returncode == 0, run.stderr
    lib_out, lib_log = tmp_path / "lib.pcap", tmp_path / "lib.jsonl"
    replay(str(SAMPLE), output=str(lib_out), cluster=[str(CLUSTER)], node="node-1", log=str(lib_log))
    assert out.read_bytes() == lib_out.read_bytes() and out.stat().st_size > 24
    assert log.read_bytes() == lib_log.read_bytes() and log.stat().st_size > 0


def test_a_snapshot_read_from_the_caches_imports_no_yaml_and_a_miss_does(tmp_path):
    code = ("import sys; from kdp.control import Cluster; "
            "c = Cluster.load([sys.argv[1]], node='node-1'); "
            "print(len(c.services), 'yaml' in sys.modules)")
    env = {**os.environ, "KDP_CACHE_DIR": str(tmp_path / "cache")}

    def load():
        run = subprocess.run([sys.executable, "-c", code, str(CLUSTER)], capture_output=True, text=True,
                             timeout=120, env=env, cwd=ROOT)
        assert run.returncode == 0, run.stderr
        return run.stdout.split()

    cold, warm = load(), load()
    assert cold[1] == "True" and warm[1] == "False"
    assert cold[0] == warm[0] and int(warm[0]) > 0


def test_on_ready_is_called_once_after_the_dataplane_is_built_and_before_the_first_packet(tmp_path,
                                                                                            monkeypatch):
    replay_module = sys.modules["kdp.replay"]      # (kdp.replay is also the function's name)
    events = []
    build = replay_module._build_dataplane

    def recording_build(*a, **kw):
        dp = build(*a, **kw)
        events.append("built")
        return dp
    monkeypatch.setattr(replay_module, "_build_dataplane", recording_build)
    out = tmp_path / "o.pcap"
    result = replay(str(SAMPLE), output=str(out), cluster=[str(CLUSTER)], node="node-1",
                    on_ready=lambda: events.append(("ready", out.exists())))
    assert events == ["built", ("ready", False)] and result.packets_in > 0


def test_the_sample_replay_imports_no_numpy_ma_and_warms_rich_on_another_thread(tmp_path):
    # numpy.ma cost 6-13 ms of start-up (a plain np.unique imports it); the summary's rich
    # import runs on the warm-up thread (named), not after the last packet
    code = ("import sys, threading; from kdp.cli import main; names = set(); "
            "orig = threading.Thread.start\n"
            "def start(t): names.add(t.name); orig(t)\n"
            "threading.Thread.start = start\n"
            "rc = main(sys.argv[1:]); "
            "print('MA', 'numpy.ma' in sys.modules, 'WARM', 'kdp-summary-warm-up' in names, file=sys.stderr)")
    run = subprocess.run([sys.executable, "-c", code, "replay", str(SAMPLE), "--cluster", str(CLUSTER),
                          "--node", "node-1", "-o", str(tmp_path / "o.pcap"), "--no-progress"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "MA False WARM True" in run.stderr
