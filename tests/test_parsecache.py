"""The parsed-snapshot cache: the same objects come back as the YAML loader made them,
a cached file means what its text means, and a cache that others could have written is
not trusted."""
import datetime
import math
import os

import pytest
import yaml

from kdp.control import Cluster, compile as compile_cluster
from kdp.control import parsecache

TEXT = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop, creationTimestamp: 2024-05-01T10:00:00Z}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 80, protocol: TCP}]
other: {day: 2024-05-01, blob: !!binary aGVsbG8=, some: !!set {a, b}, nan: .nan, inf: -.inf}
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
"""


@pytest.fixture
def cache(tmp_path, monkeypatch):
    where = tmp_path / "cache"
    monkeypatch.setenv("KDP_CACHE_DIR", str(where))
    return where


def test_a_cached_parse_is_the_yaml_loaders_own(cache):
    want = list(yaml.load_all(TEXT, Loader=yaml.CSafeLoader))
    assert parsecache.load(TEXT) is None
    parsecache.store(TEXT, want)
    (entry,) = cache.iterdir()
    assert entry.read_bytes()[:1] == b"T"       # tagged: timestamps, bytes, a set, NaN
    got = parsecache.load(TEXT)
    other = got[0].pop("other")
    expect = want[0].pop("other")
    assert got == want
    assert other["day"] == expect["day"] == datetime.date(2024, 5, 1)
    assert other["blob"] == b"hello" and other["some"] == {"a", "b"}
    assert math.isnan(other["nan"]) and other["inf"] == float("-inf")
    assert isinstance(got[0]["metadata"]["creationTimestamp"], datetime.datetime)


def test_the_second_load_reads_the_cache_and_compiles_the_same_tables(cache, tmp_path, monkeypatch):
    from kdptest import base_docs, write_snapshot
    snap = write_snapshot(tmp_path / "snap", base_docs())
    first = compile_cluster(Cluster.load([snap], node="node-1")).services_view()
    assert len(list(cache.glob("*.json"))) == 1     # (and the validated snapshot: snapshotcache)

    def no_yaml(*args, **kwargs):
        raise AssertionError("parsed again")
    monkeypatch.setattr(yaml, "load_all", no_yaml)
    assert compile_cluster(Cluster.load([snap], node="node-1")).services_view() == first
    path = snap / "cluster.yaml"
    path.write_text(path.read_text().replace("10.96.0.10", "10.96.0.11"))
    with pytest.raises(AssertionError, match="parsed again"):
        Cluster.load([snap], node="node-1")     # another text: another entry


def test_entries_others_could_write_and_broken_entries_are_not_used(cache):
    docs = [{"kind": "Namespace", "metadata": {"name": "a"}}]
    parsecache.store(TEXT, docs)
    (entry,) = cache.iterdir()
    assert entry.read_bytes()[:1] == b"P"       # plain JSON: read without a decoding hook
    os.chmod(entry, 0o666)
    assert parsecache.load(TEXT) is None
    os.chmod(entry, 0o600)
    assert parsecache.load(TEXT) == docs
    entry.write_text("{not json")
    assert parsecache.load(TEXT) is None
    os.chmod(cache, 0o777)
    parsecache.store(TEXT, docs)
    assert parsecache.load(TEXT) is None


def test_the_cache_can_be_turned_off_and_keeps_a_bounded_number_of_entries(cache, monkeypatch):
    monkeypatch.setattr(parsecache, "MAX_ENTRIES", 3)
    for k in range(5):
        parsecache.store(f"text {k}", [{"k": k}])
    assert len(list(cache.iterdir())) == 3 and parsecache.load("text 4") == [{"k": 4}]
    monkeypatch.setenv("KDP_CACHE_DIR", "off")
    parsecache.store("text 9", [{"k": 9}])
    assert parsecache.load("text 4") is None and len(list(cache.iterdir())) == 3
