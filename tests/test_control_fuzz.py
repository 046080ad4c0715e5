"""Bad input never crashes the control layer: arbitrary values in any field of
any kind give a ConfigError or a valid model (that then compiles)."""
import copy

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kdp._fast.packet import META_DTYPE
from kdp.control import Cluster, compile
from kdp.errors import ConfigError

from kdptest import base_docs

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True) |
    st.text(max_size=12) | st.sampled_from(["10.0.0.1", "fd00::1", "10.0.0.0/8", "TCP", "Local",
                                            "None", "ClientIP", "VIP", "Proxy", "30000-32767", "http"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)

BASE = base_docs()


def paths(obj, prefix=()):
    """Every (path) into a nested mapping/list."""
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += paths(v, prefix + (i,))
    return out


def check(docs):
    try:
        c = Cluster.from_documents(docs, node="node-1")
    except ConfigError as exc:
        assert str(exc)
        return
    t = compile(c)
    m = np.zeros(4, dtype=META_DTYPE)
    m["ip_ver"], m["proto"], m["dport"], m["dst4"], m["src4"] = 4, 6, 80, 0x0A60000A, 0x0AF40132
    t.decide(m)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(BASE) - 1), st.data(), json_values)
def test_any_field_replaced_by_any_value_is_an_error_or_valid(which, data, value):
    docs = copy.deepcopy(BASE)
    target = docs[which]
    p = data.draw(st.sampled_from(paths(target)[1:]))
    node = target
    for k in p[:-1]:
        node = node[k]
    node[p[-1]] = value
    check(docs)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["Service", "EndpointSlice", "Endpoints", "Pod", "Node", "Namespace",
                        "NetworkPolicy", "NodeConfig"]), json_values, json_values)
def test_random_objects_of_known_kinds_never_crash(kind, spec, meta):
    api = {"EndpointSlice": "discovery.k8s.io/v1", "NetworkPolicy": "networking.k8s.io/v1",
           "NodeConfig": "kdp.dev/v1alpha1"}.get(kind, "v1")
    obj = {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec,
           "endpoints": spec, "subsets": spec, "status": meta}
    check(copy.deepcopy(BASE[:1]) + [obj])
