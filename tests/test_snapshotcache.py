"""The validated-snapshot cache: a snapshot that validated comes back as the same
Cluster (the same replay, byte for byte, and the same notices), any change to its files
or to the node validates afresh, an invalid snapshot is never kept and says the same
every time, and an entry that others could have written or that is damaged is not used."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kdp.control import Cluster, compile as compile_cluster
from kdp.control import snapshotcache
from kdp.control.loader import read_texts
from kdp.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SAMPLE, CLUSTER = ROOT / "pcaps" / "sample.pcap", ROOT / "pcaps" / "sample-cluster"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    where = tmp_path / "cache"
    monkeypatch.setenv("KDP_CACHE_DIR", str(where))
    return where


def replay(tmp_path, tag, cache_dir):
    out, log = tmp_path / f"{tag}.pcap", tmp_path / f"{tag}.jsonl"
    run = subprocess.run([sys.executable, "-m", "kdp", "replay", str(SAMPLE), "--cluster", str(CLUSTER),
                          "--node", "node-1", "-o", str(out), "--log", str(log), "--no-progress"],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, "KDP_CACHE_DIR": cache_dir})
    assert run.returncode == 0, run.stderr
    return out.read_bytes(), log.read_bytes(), run.stderr


def test_a_replay_is_the_same_with_the_cache_cold_warm_and_off(tmp_path):
    cache_dir = str(tmp_path / "cache")
    cold = replay(tmp_path, "cold", cache_dir)
    assert list(Path(cache_dir).glob("*" + snapshotcache.SUFFIX))        # kept
    warm = replay(tmp_path, "warm", cache_dir)
    off = replay(tmp_path, "off", "off")
    assert cold == warm == off                  # output, verdict log and notices
    assert "skipped Deployment shop/web" in warm[2]


def test_a_warm_load_validates_nothing(cache, monkeypatch):
    first = Cluster.load([CLUSTER], node="node-1")
    from kdp.control import cluster as cluster_module

    def no_validation(*args, **kwargs):
        raise AssertionError("validated again")
    monkeypatch.setattr(cluster_module.Cluster, "from_documents", no_validation)
    again = Cluster.load([CLUSTER], node="node-1")
    assert again is not first and set(again.services) == set(first.services)
    assert compile_cluster(again).services_view() == compile_cluster(first).services_view()
    with pytest.raises(AssertionError, match="validated again"):
        Cluster.load([CLUSTER], node="node-2")     # another node: another key


def test_a_changed_added_or_renamed_file_validates_afresh(cache, tmp_path):
    snap = tmp_path / "snap"
    shutil.copytree(CLUSTER, snap)
    keys = {snapshotcache.key(read_texts([snap]), "node-1")}
    Cluster.load([snap], node="node-1")
    svc = next(snap.glob("*.yaml"))
    svc.write_text(svc.read_text() + "\n")
    keys.add(snapshotcache.key(read_texts([snap]), "node-1"))
    (snap / "extra.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: extra}\n")
    with_extra = Cluster.load([snap], node="node-1")
    assert "extra" in with_extra.namespaces
    keys.add(snapshotcache.key(read_texts([snap]), "node-1"))
    (snap / "extra.yaml").rename(snap / "more.yaml")
    keys.add(snapshotcache.key(read_texts([snap]), "node-1"))
    assert len(keys) == 4


def test_an_invalid_snapshot_is_never_kept_and_says_the_same_every_time(cache, tmp_path):
    snap = tmp_path / "bad"
    shutil.copytree(CLUSTER, snap)
    svc = snap / "bad.yaml"
    svc.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: broken, namespace: shop}\n"
                   "spec: {ports: [{port: 70000}]}\n")
    errors = []
    for _ in range(2):
        with pytest.raises(ConfigError) as exc:
            Cluster.load([snap], node="node-1")
        errors.append(str(exc.value))
    assert errors[0] == errors[1] and "spec.ports[0].port" in errors[0]
    assert not list(cache.glob("*" + snapshotcache.SUFFIX))


def test_entries_others_could_write_or_damaged_ones_are_not_used(cache, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(CLUSTER, other)
    (other / "ns.yaml").write_text("apiVersion: v1\nkind: Namespace\nmetadata: {name: planted}\n")
    planted = Cluster.load([other], node="node-1")
    key = snapshotcache.key(read_texts([CLUSTER]), "node-1")
    for stale in cache.glob("*" + snapshotcache.SUFFIX):
        stale.unlink()
    snapshotcache.store(key, planted)
    (entry,) = cache.glob("*" + snapshotcache.SUFFIX)
    # the mechanism: whatever the entry under a snapshot's key holds is what loads
    assert "planted" in Cluster.load([CLUSTER], node="node-1").namespaces
    os.chmod(entry, 0o666)                      # others may write it: not used
    assert "planted" not in Cluster.load([CLUSTER], node="node-1").namespaces
    os.chmod(entry, 0o600)
    snapshotcache.store(key, planted)
    os.chmod(cache, 0o777)                      # a directory others may write: not used
    assert "planted" not in Cluster.load([CLUSTER], node="node-1").namespaces
    os.chmod(cache, 0o700)
    entry.write_bytes(b"\x80\x05garbage")       # damaged: ignored, validated afresh, replaced
    assert "shop" in Cluster.load([CLUSTER], node="node-1").namespaces
    assert snapshotcache.load(key) is not None
