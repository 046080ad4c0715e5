"""ServiceTables built directly from arrays: layouts, the frontend hash against a
dict, NodePort table, bad input refused (never a crash)."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kdp._fast import service as fast
from kdp._fast.packet import META_DTYPE, NO_ID_VALUE


def test_dtypes_cover_their_structs_without_overlap():
    for dt in (fast.ADDR_DTYPE, fast.BACKEND_DTYPE, fast.SVC_DTYPE, fast.FRONTEND_DTYPE, fast.NAT_DTYPE):
        spans = sorted((dt.fields[n][1], dt.fields[n][1] + dt.fields[n][0].itemsize) for n in dt.names)
        assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
        assert spans[-1][1] <= dt.itemsize
    assert fast.NO_ID_VALUE == NO_ID_VALUE == 0xFFFFFFFF


def empty(n):
    return np.zeros(n, dtype=np.uint32)


def build(n_svc, frontends, **kw):
    svc = np.zeros(n_svc, dtype=fast.SVC_DTYPE)
    svc["proto"], svc["ip_ver"] = 6, 4
    be = np.zeros(n_svc, dtype=fast.BACKEND_DTYPE)
    be["ip_ver"] = 4
    be["a4"] = np.arange(n_svc) + 1
    be["port"] = 1000
    be["id"] = np.arange(n_svc)
    if "svc" in kw:
        svc = kw.pop("svc")
    return fast.ServiceTables(svc, frontends, np.zeros(0, fast.ADDR_DTYPE), be,
                              np.arange(n_svc, dtype=np.uint32), np.ones(n_svc, dtype=np.uint32),
                              empty(n_svc), empty(n_svc), **kw)


def queries(rows):
    m = np.zeros(len(rows), dtype=META_DTYPE)
    for i, (proto, a4, port) in enumerate(rows):
        m[i]["ip_ver"], m[i]["proto"], m[i]["dst4"], m[i]["dport"] = 4, proto, a4, port
        m[i]["src4"] = 0x0A000001
        m[i]["hash"] = i
    return m


key = st.tuples(st.sampled_from([6, 17, 132]), st.integers(1, 2**32 - 1), st.integers(1, 65535))


@settings(max_examples=60, deadline=None)
@given(st.lists(key, min_size=1, max_size=300, unique=True), st.lists(key, max_size=100))
def test_frontend_hash_agrees_with_a_dict(keys, probes):
    ref = {k: i for i, k in enumerate(keys)}
    fe = np.zeros(len(keys), dtype=fast.FRONTEND_DTYPE)
    for i, (proto, a4, port) in enumerate(keys):
        fe[i]["proto"], fe[i]["ip_ver"], fe[i]["a4"], fe[i]["port"], fe[i]["svc"] = proto, 4, a4, port, i
    t = build(len(keys), fe)
    rows = keys + probes
    result, _, nat = t.decide(queries(rows))
    for k, r, n in zip(rows, result, nat):
        if k in ref:
            assert r == fast.SVC_HIT and n["svc_port"] == ref[k] and n["dnat4"] == ref[k] + 1
        else:
            assert r == fast.SVC_MISS


def test_node_port_table_is_per_family_and_protocol():
    svc = np.zeros(2, dtype=fast.SVC_DTYPE)
    svc["proto"] = [6, 17]
    svc["ip_ver"] = 4
    svc["node_port"] = [30001, 30001]
    np_addrs = np.zeros(1, dtype=fast.ADDR_DTYPE)
    np_addrs["ip_ver"], np_addrs["plen"], np_addrs["a4"] = 4, 32, 0xC0A80001
    t = build(2, np.zeros(0, fast.FRONTEND_DTYPE), svc=svc, np_addrs=np_addrs, snat4=0xC0A80001)
    res, _, nat = t.decide(queries([(6, 0xC0A80001, 30001), (17, 0xC0A80001, 30001),
                                    (132, 0xC0A80001, 30001), (6, 0xC0A80002, 30001),
                                    (6, 0xC0A80001, 30002)]))
    assert res.tolist() == [fast.SVC_HIT, fast.SVC_HIT, fast.SVC_MISS, fast.SVC_MISS, fast.SVC_MISS]
    assert nat["svc_port"][:2].tolist() == [0, 1]
    # DNAT | SNAT | SNAT_PORT, and PORT_KEY (8): the masquerade port carries the client's
    # shard key (kdp/_fast/shard.pyx)
    assert nat["snat4"][0] == 0xC0A80001 and nat["flags"][0] == 7 | 8


def test_bad_arrays_are_refused():
    fe = np.zeros(1, dtype=fast.FRONTEND_DTYPE)
    fe["svc"] = 5
    with pytest.raises(ValueError):
        build(2, fe)
    svc = np.zeros(1, dtype=fast.SVC_DTYPE)
    be = np.zeros(1, dtype=fast.BACKEND_DTYPE)
    with pytest.raises(ValueError):
        fast.ServiceTables(svc, np.zeros(0, fast.FRONTEND_DTYPE), np.zeros(0, fast.ADDR_DTYPE), be,
                           np.array([1], np.uint32), np.array([1], np.uint32), empty(1), empty(1))
    with pytest.raises(ValueError):
        fast.ServiceTables(svc, np.zeros(0, fast.FRONTEND_DTYPE), np.zeros(0, fast.ADDR_DTYPE), be,
                           empty(2), empty(2), empty(2), empty(2))
    with pytest.raises(ValueError):
        build(1, np.zeros(0, fast.FRONTEND_DTYPE), np_lo=40000, np_hi=30000)
    svc["src_n"] = 3
    with pytest.raises(ValueError):
        build(1, np.zeros(0, fast.FRONTEND_DTYPE), svc=svc)
    t = build(1, np.zeros(0, fast.FRONTEND_DTYPE))
    with pytest.raises(IndexError):
        t.publish(7, np.zeros(0, fast.BACKEND_DTYPE), np.zeros(0, fast.BACKEND_DTYPE))
    with pytest.raises(IndexError):
        t.backends(7)


def test_empty_tables_miss_everything():
    t = build(0, np.zeros(0, fast.FRONTEND_DTYPE))
    res, reason, _ = t.decide(queries([(6, 1, 1), (17, 2, 2)]))
    assert res.tolist() == [fast.SVC_MISS, fast.SVC_MISS] and reason.tolist() == [0, 0]


def test_backend_ids_are_never_reused():
    t = build(1, np.zeros(0, fast.FRONTEND_DTYPE), next_backend_id=10)
    a = t.allocate_backend_ids(3)
    b = t.allocate_backend_ids(2)
    assert a.tolist() == [10, 11, 12] and b.tolist() == [13, 14]
